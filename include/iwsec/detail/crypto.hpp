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

#include <climits>
#include <cstring>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "../errors.hpp"
#include "hex.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// HMAC and PBKDF2 run the SHA-256 compression function directly from
// precomputed key states (SHA256_Transform: OpenSSL's assembly, SHA-NI where the
// CPU has it). OpenSSL 3.0 deprecates that low-level API, so it is used only
// while the headers still declare it: a build with OPENSSL_NO_DEPRECATED (which
// makes <openssl/macros.h> define OPENSSL_NO_DEPRECATED_3_0), or one that
// defines IWSEC_NO_LOW_LEVEL_SHA256, takes the EVP path instead, with the same
// results. Every translation unit of a program must make the same choice.
#if !defined(IWSEC_NO_LOW_LEVEL_SHA256) && !defined(OPENSSL_NO_DEPRECATED_3_0)
#define IWSEC_LOW_LEVEL_SHA256 1
#else
#define IWSEC_LOW_LEVEL_SHA256 0
#endif

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
  if (n > 0 && RAND_bytes(out, static_cast<int>(n)) != 1) throw crypto_error("iwsec: RAND_bytes failed");
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
    throw crypto_error("iwsec: SHA-256 failed");
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

/// @brief True when HMAC and PBKDF2 use the low-level SHA-256 compression
/// function; false on the EVP path (see IWSEC_LOW_LEVEL_SHA256).
constexpr bool sha256_low_level = IWSEC_LOW_LEVEL_SHA256 != 0;

inline void store_be32(unsigned char* p, std::uint32_t v) noexcept {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

/// @brief An HMAC-SHA256 key as one 64-byte block: a longer key is hashed
/// first (RFC 2104), a shorter one padded with zeros.
inline std::array<unsigned char, 64> hmac_key_block(std::string_view key) {
  std::array<unsigned char, 64> block{};
  if (key.size() > block.size()) {
    const auto d = sha256(key);
    std::copy(d.begin(), d.end(), block.begin());
  } else {
    std::copy(key.begin(), key.end(), block.begin());
  }
  return block;
}

#if IWSEC_LOW_LEVEL_SHA256

/// @brief The eight chaining words of SHA-256 between blocks.
struct sha256_state {
  std::uint32_t h[8];
};

/// @brief Runs the compression function over @p blocks 64-byte blocks. With
/// sha256_iterate, the only code calling OpenSSL's deprecated SHA-256 API; the
/// warning is silenced around those calls alone.
inline void sha256_compress(sha256_state& st, const unsigned char* data, std::size_t blocks) noexcept {
  SHA256_CTX ctx;
  static_assert(sizeof ctx.h == sizeof st.h, "SHA256_CTX chaining state is eight 32-bit words");
  std::memcpy(ctx.h, st.h, sizeof st.h);
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
  if (blocks == 1) {
    SHA256_Transform(&ctx, data);
  } else if (blocks > 1) {
    // SHA256_Update hands whole blocks to the block function in one call.
    ctx.Nl = ctx.Nh = 0;
    ctx.num = 0;
    SHA256_Update(&ctx, data, 64 * blocks);
  }
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
  std::memcpy(st.h, ctx.h, sizeof st.h);
}

/// @brief SHA-256's initial chaining value (FIPS 180-4 5.3.3).
inline sha256_state sha256_initial_state() noexcept {
  return sha256_state{{0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu,
                       0x5be0cd19u}};
}

/// @brief Hashes the final, partial block: @p tail (< 64 bytes) plus the
/// padding for a message of @p total_bytes, continuing from @p st.
inline void sha256_finish(sha256_state& st, const unsigned char* tail, std::size_t tail_len,
                          std::uint64_t total_bytes) noexcept {
  unsigned char block[128];
  std::memcpy(block, tail, tail_len);
  block[tail_len] = 0x80;
  const std::size_t blocks = tail_len < 56 ? 1 : 2;
  std::memset(block + tail_len + 1, 0, blocks * 64 - 8 - tail_len - 1);
  const std::uint64_t bits = total_bytes * 8;
  store_be32(block + blocks * 64 - 8, static_cast<std::uint32_t>(bits >> 32));
  store_be32(block + blocks * 64 - 4, static_cast<std::uint32_t>(bits));
  sha256_compress(st, block, blocks);
}

inline void sha256_state_bytes(const sha256_state& st, unsigned char* out) noexcept {
  for (int i = 0; i < 8; ++i) store_be32(out + 4 * i, st.h[i]);
}

/// @brief PBKDF2's inner loop, @p iterations times: U = HMAC(U) from the
/// precomputed pad states, T ^= U. Each of @p inner_block and @p outer_block
/// holds the padding for a 32-byte message after one pad block; the loop
/// only rewrites their first 32 bytes.
inline void sha256_iterate(const sha256_state& inner, const sha256_state& outer, sha256_state& u, sha256_state& t,
                           std::uint32_t iterations, unsigned char* inner_block, unsigned char* outer_block) noexcept {
  SHA256_CTX ctx;
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
#if defined(__SSE2__)
  // The chaining words become the next block's first 32 bytes in two 16-byte
  // stores, so the compression function's 16-byte loads are forwarded from
  // them instead of stalling on eight 4-byte stores.
  const auto bswap32x4 = [](__m128i x) {
    x = _mm_or_si128(_mm_slli_epi16(x, 8), _mm_srli_epi16(x, 8));
    return _mm_shufflehi_epi16(_mm_shufflelo_epi16(x, 0xB1), 0xB1);
  };
  const auto put = [&](unsigned char* block, const std::uint32_t* h) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(block),
                     bswap32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(block + 16),
                     bswap32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 4))));
  };
  __m128i t0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.h));
  __m128i t1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.h + 4));
  put(inner_block, u.h);
  for (std::uint32_t r = 0; r < iterations; ++r) {
    std::memcpy(ctx.h, inner.h, sizeof ctx.h);
    SHA256_Transform(&ctx, inner_block);
    put(outer_block, ctx.h);
    std::memcpy(ctx.h, outer.h, sizeof ctx.h);
    SHA256_Transform(&ctx, outer_block);
    put(inner_block, ctx.h);
    t0 = _mm_xor_si128(t0, _mm_loadu_si128(reinterpret_cast<const __m128i*>(ctx.h)));
    t1 = _mm_xor_si128(t1, _mm_loadu_si128(reinterpret_cast<const __m128i*>(ctx.h + 4)));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(t.h), t0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(t.h + 4), t1);
  std::memcpy(u.h, ctx.h, sizeof u.h);
#else
  for (std::uint32_t r = 0; r < iterations; ++r) {
    sha256_state_bytes(u, inner_block);
    std::memcpy(ctx.h, inner.h, sizeof ctx.h);
    SHA256_Transform(&ctx, inner_block);
    for (int i = 0; i < 8; ++i) store_be32(outer_block + 4 * i, ctx.h[i]);
    std::memcpy(ctx.h, outer.h, sizeof ctx.h);
    SHA256_Transform(&ctx, outer_block);
    std::memcpy(u.h, ctx.h, sizeof u.h);
    for (int i = 0; i < 8; ++i) t.h[i] ^= u.h[i];
  }
#endif
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
  OPENSSL_cleanse(&ctx, sizeof ctx);
}

/// @brief HMAC-SHA256 under one key, kept as the SHA-256 states after the
/// inner and outer pad blocks: a MAC of n bytes costs ceil((n + 9) / 64) + 1
/// compression calls and no allocation. Read-only after construction, so
/// threads may share one.
class hmac_sha256_key {
 public:
  explicit hmac_sha256_key(std::string_view key) {
    std::array<unsigned char, 64> block = hmac_key_block(key);  // cleansed below
    std::array<unsigned char, 64> pad{};
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x36;
    inner_ = sha256_initial_state();
    sha256_compress(inner_, pad.data(), 1);
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x5c;
    outer_ = sha256_initial_state();
    sha256_compress(outer_, pad.data(), 1);
    OPENSSL_cleanse(block.data(), block.size());
    OPENSSL_cleanse(pad.data(), pad.size());
  }
  ~hmac_sha256_key() { OPENSSL_cleanse(this, sizeof *this); }
  hmac_sha256_key(const hmac_sha256_key&) = default;
  hmac_sha256_key& operator=(const hmac_sha256_key&) = default;

  sha256_digest mac(std::string_view data) const noexcept {
    sha256_digest out{};
    mac(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
    return out;
  }

  /// @brief The MAC of @p n bytes at @p data into @p out (32 bytes).
  void mac(const unsigned char* data, std::size_t n, unsigned char* out) const noexcept {
    sha256_state st = inner_;
    const std::size_t full = n / 64;
    sha256_compress(st, data, full);
    sha256_finish(st, data + full * 64, n - full * 64, 64 + static_cast<std::uint64_t>(n));
    outer_digest(st, out);
  }

  /// @brief PBKDF2-HMAC-SHA256 (RFC 8018) with this object's key as the
  /// password: two compression calls per iteration, on pre-padded blocks.
  void pbkdf2(const unsigned char* salt, std::size_t salt_len, std::uint32_t rounds, unsigned char* out,
              std::size_t length) const {
    std::string first(salt_len + 4, '\0');
    if (salt_len) std::memcpy(&first[0], salt, salt_len);
    // Both blocks of an iteration hash 32 bytes after a 64-byte pad block.
    unsigned char inner_block[64] = {};
    unsigned char outer_block[64] = {};
    for (unsigned char* b : {inner_block, outer_block}) {
      b[32] = 0x80;
      store_be32(b + 60, (64 + 32) * 8);
    }
    for (std::uint32_t index = 1; length > 0; ++index) {
      store_be32(reinterpret_cast<unsigned char*>(&first[salt_len]), index);
      unsigned char u[32];
      mac(reinterpret_cast<const unsigned char*>(first.data()), first.size(), u);
      sha256_state t{};
      sha256_state prev{};
      for (int i = 0; i < 8; ++i) {
        t.h[i] = prev.h[i] = (std::uint32_t{u[4 * i]} << 24) | (std::uint32_t{u[4 * i + 1]} << 16) |
                             (std::uint32_t{u[4 * i + 2]} << 8) | std::uint32_t{u[4 * i + 3]};
      }
      sha256_iterate(inner_, outer_, prev, t, rounds - 1, inner_block, outer_block);
      unsigned char block_out[32];
      sha256_state_bytes(t, block_out);
      const std::size_t take = std::min<std::size_t>(length, 32);
      std::memcpy(out, block_out, take);
      out += take;
      length -= take;
      OPENSSL_cleanse(block_out, sizeof block_out);
      OPENSSL_cleanse(&t, sizeof t);
      OPENSSL_cleanse(&prev, sizeof prev);
      OPENSSL_cleanse(u, sizeof u);
    }
    OPENSSL_cleanse(inner_block, sizeof inner_block);
    OPENSSL_cleanse(outer_block, sizeof outer_block);
  }

 private:
  void outer_digest(const sha256_state& inner_hash, unsigned char* out) const noexcept {
    unsigned char block[64];
    sha256_state_bytes(inner_hash, block);
    block[32] = 0x80;
    std::memset(block + 33, 0, 64 - 33 - 4);
    store_be32(block + 60, (64 + 32) * 8);
    sha256_state st = outer_;
    sha256_compress(st, block, 1);
    sha256_state_bytes(st, out);
  }

  sha256_state inner_{};
  sha256_state outer_{};
};

#else  // EVP path: no deprecated OpenSSL call.

/// @brief HMAC-SHA256 under one key, with the inner and outer pad blocks
/// absorbed once at construction; each MAC copies those states. The object is
/// read-only after construction, so threads may share it.
class hmac_sha256_key {
 public:
  explicit hmac_sha256_key(std::string_view key) : inner_(new_md_ctx()), outer_(new_md_ctx()) {
    std::array<unsigned char, 64> block = hmac_key_block(key);  // cleansed below
    std::array<unsigned char, 64> pad{};
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x36;
    absorb(inner_.get(), pad);
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x5c;
    absorb(outer_.get(), pad);
    OPENSSL_cleanse(block.data(), block.size());
    OPENSSL_cleanse(pad.data(), pad.size());
  }

  sha256_digest mac(std::string_view data) const {
    sha256_digest out{};
    mac(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
    return out;
  }

  void mac(const unsigned char* data, std::size_t n, unsigned char* out) const {
    sha256_digest inner_hash{};
    unsigned int len = 0;
    EVP_MD_CTX* work = thread_md_ctx();
    if (EVP_MD_CTX_copy_ex(work, inner_.get()) != 1 || EVP_DigestUpdate(work, data, n) != 1 ||
        EVP_DigestFinal_ex(work, inner_hash.data(), &len) != 1 || EVP_MD_CTX_copy_ex(work, outer_.get()) != 1 ||
        EVP_DigestUpdate(work, inner_hash.data(), inner_hash.size()) != 1 || EVP_DigestFinal_ex(work, out, &len) != 1)
      throw crypto_error("iwsec: HMAC-SHA256 failed");
  }

 private:
  static void absorb(EVP_MD_CTX* ctx, const std::array<unsigned char, 64>& pad) {
    if (EVP_DigestInit_ex(ctx, sha256_md(), nullptr) != 1 || EVP_DigestUpdate(ctx, pad.data(), pad.size()) != 1)
      throw crypto_error("iwsec: HMAC-SHA256 key setup failed");
  }

  md_ctx_ptr inner_;
  md_ctx_ptr outer_;
};

#endif  // IWSEC_LOW_LEVEL_SHA256

/// @brief PBKDF2-HMAC-SHA256 into @p out: the same bytes as OpenSSL's
/// PKCS5_PBKDF2_HMAC, from precomputed key states where the low-level
/// compression function is available, else from PKCS5_PBKDF2_HMAC itself.
inline void pbkdf2_hmac_sha256(std::string_view password, std::string_view salt, std::uint32_t rounds,
                               unsigned char* out, std::size_t length) {
  if (rounds == 0 || rounds > static_cast<std::uint32_t>(INT_MAX) || length > static_cast<std::size_t>(INT_MAX))
    throw crypto_error("iwsec: PBKDF2 failed");
#if IWSEC_LOW_LEVEL_SHA256
  if (length == 0) return;
  hmac_sha256_key(password).pbkdf2(reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), rounds, out,
                                   length);
#else
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        static_cast<int>(rounds), sha256_md(), static_cast<int>(length), out) != 1)
    throw crypto_error("iwsec: PBKDF2 failed");
#endif
}

/// @brief Writes a random (version 4) UUID in lower-case canonical form to
/// @p out (36 chars) and returns a view of it.
inline std::string_view uuid_v4_to(char* out) {
  unsigned char b[16];
  random_bytes(b, sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  char* w = out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *w++ = '-';
    *w++ = hex_digit(b[i] >> 4);
    *w++ = hex_digit(b[i]);
  }
  return std::string_view(out, 36);
}

/// @brief A random (version 4) UUID in lower-case canonical form.
inline std::string uuid_v4() {
  char buf[36];
  return std::string(uuid_v4_to(buf));
}

/// @brief The 128 bits of a jti in canonical UUID text form (8-4-4-4-12
/// lower-case hex digits, which is what Signer issues and accepts); false
/// for any other text. The mapping is one-to-one both ways.
inline bool parse_uuid_key(std::string_view s, std::uint64_t& hi, std::uint64_t& lo) noexcept {
  if (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
  std::uint64_t half[2] = {0, 0};
  int digits = 0;
  for (std::size_t i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    const int d = hex_nibble(s[i]);
    if (d < 0) return false;
    half[digits >> 4] = (half[digits >> 4] << 4) | static_cast<unsigned>(d);
    ++digits;
  }
  hi = half[0];
  lo = half[1];
  return true;
}

/// @brief True for a version 4 (random) UUID in canonical lower-case
/// 8-4-4-4-12 hex form: what uuid_v4() makes.
inline bool is_canonical_uuid(std::string_view s) noexcept {
  std::uint64_t hi = 0, lo = 0;
  return parse_uuid_key(s, hi, lo) && s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
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
