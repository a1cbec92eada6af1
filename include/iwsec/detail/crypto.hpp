#pragma once
/// @file
/// @brief The OpenSSL primitives iwsec is built on: CSPRNG, SHA-256, HMAC with
/// precomputed key states, constant-time comparison, UUID v4.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace iwsec {
namespace detail {

struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_deleter>;

/// @brief SHA-256, fetched once: OpenSSL 3 spends more time looking an
/// algorithm up by name than hashing a short input.
inline const EVP_MD* sha256_md() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched ? fetched : EVP_sha256();
  }();
  return md;
}

inline md_ctx_ptr new_md_ctx() {
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx) throw std::bad_alloc();
  return ctx;
}

/// @brief A per-thread scratch digest context, reused across calls.
inline EVP_MD_CTX* thread_md_ctx() {
  thread_local md_ctx_ptr ctx = new_md_ctx();
  return ctx.get();
}

using sha256_digest = std::array<unsigned char, 32>;

/// @brief Fills @p out with @p n bytes from OpenSSL's CSPRNG; throws if the
/// generator cannot deliver (never silently weak randomness).
inline void random_bytes(unsigned char* out, std::size_t n) {
  if (n > 0 && RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("iwsec: RAND_bytes failed");
}

inline std::string random_string(std::size_t n) {
  std::string s(n, '\0');
  random_bytes(reinterpret_cast<unsigned char*>(&s[0]), n);
  return s;
}

inline sha256_digest sha256(std::string_view data) {
  sha256_digest out{};
  EVP_MD_CTX* ctx = thread_md_ctx();
  unsigned int len = 0;
  if (EVP_DigestInit_ex(ctx, sha256_md(), nullptr) != 1 || EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, out.data(), &len) != 1)
    throw std::runtime_error("iwsec: SHA-256 failed");
  return out;
}

inline std::string hex_encode(const unsigned char* data, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 15];
  }
  return out;
}

inline std::string sha256_hex(std::string_view data) {
  const auto d = sha256(data);
  return hex_encode(d.data(), d.size());
}

/// @brief Equality in time that depends only on the lengths.
inline bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

/// @brief HMAC-SHA256 under one key, with the inner and outer pad blocks
/// absorbed once at construction; each MAC copies those states. The object is
/// read-only after construction, so threads may share it.
class hmac_sha256_key {
 public:
  explicit hmac_sha256_key(std::string_view key) : inner_(new_md_ctx()), outer_(new_md_ctx()) {
    std::array<unsigned char, 64> block{};
    if (key.size() > block.size()) {
      const auto d = sha256(key);
      std::copy(d.begin(), d.end(), block.begin());
    } else {
      std::copy(key.begin(), key.end(), block.begin());
    }
    std::array<unsigned char, 64> pad{};
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x36;
    absorb(inner_.get(), pad);
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x5c;
    absorb(outer_.get(), pad);
    OPENSSL_cleanse(block.data(), block.size());
    OPENSSL_cleanse(pad.data(), pad.size());
  }

  sha256_digest mac(std::string_view data) const {
    sha256_digest inner_hash{};
    sha256_digest out{};
    unsigned int len = 0;
    EVP_MD_CTX* work = thread_md_ctx();
    if (EVP_MD_CTX_copy_ex(work, inner_.get()) != 1 || EVP_DigestUpdate(work, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(work, inner_hash.data(), &len) != 1 || EVP_MD_CTX_copy_ex(work, outer_.get()) != 1 ||
        EVP_DigestUpdate(work, inner_hash.data(), inner_hash.size()) != 1 ||
        EVP_DigestFinal_ex(work, out.data(), &len) != 1)
      throw std::runtime_error("iwsec: HMAC-SHA256 failed");
    return out;
  }

 private:
  static void absorb(EVP_MD_CTX* ctx, const std::array<unsigned char, 64>& pad) {
    if (EVP_DigestInit_ex(ctx, sha256_md(), nullptr) != 1 || EVP_DigestUpdate(ctx, pad.data(), pad.size()) != 1)
      throw std::runtime_error("iwsec: HMAC-SHA256 key setup failed");
  }

  md_ctx_ptr inner_;
  md_ctx_ptr outer_;
};

/// @brief A random (version 4) UUID in lower-case canonical form.
inline std::string uuid_v4() {
  unsigned char b[16];
  random_bytes(b, sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  const std::string hex = hex_encode(b, sizeof b);
  return hex.substr(0, 8) + '-' + hex.substr(8, 4) + '-' + hex.substr(12, 4) + '-' + hex.substr(16, 4) + '-' +
         hex.substr(20, 12);
}

/// @brief True for a version 4 (random) UUID in canonical lower-case
/// 8-4-4-4-12 hex form: what uuid_v4() makes.
inline bool is_canonical_uuid(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
}

/// @brief ASCII lower-casing (bytes >= 0x80 untouched), how emails are keyed.
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace detail
}  // namespace iwsec
