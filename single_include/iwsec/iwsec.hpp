// iwsec 0.1.0: the Infoworks REST API v3 security endpoints for cpp-httplib.
//
// GENERATED FILE, DO NOT EDIT. This is the amalgamation of include/iwsec/,
// made by scripts/amalgamate.py; edit the headers under include/ and run
//     python3 scripts/amalgamate.py
//
// It needs only what the headers need: <httplib.h> (with the host's
// CPPHTTPLIB_* flags, see the README), <picojson.h> and OpenSSL's libcrypto.
#pragma once

// ----- begin iwsec/iwsec.hpp -----
/// @file
/// @brief iwsec: the Infoworks REST API v3 security endpoints for any
/// cpp-httplib service. Include this one header.

// ----- begin iwsec/version.hpp -----
/// @file
/// @brief The library's version: the single source of truth for every build system.

#define IWSEC_VERSION_MAJOR 0
#define IWSEC_VERSION_MINOR 1
#define IWSEC_VERSION_PATCH 0
#define IWSEC_VERSION_STRING "0.1.0"
// ----- end iwsec/version.hpp -----
// ----- begin iwsec/clock.hpp -----
/// @file
/// @brief The injectable clock: whole seconds since the Unix epoch.

#include <chrono>
#include <cstdint>
#include <functional>

namespace iwsec {

/// @brief A source of "now" in seconds since 1970-01-01T00:00:00Z. Tests pass
/// their own to move time without sleeping.
using Clock = std::function<std::int64_t()>;

/// @brief The wall clock (std::chrono::system_clock).
inline std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace iwsec
// ----- end iwsec/clock.hpp -----
// ----- begin iwsec/errors.hpp -----
/// @file
/// @brief StateUnavailable: what a store throws when it cannot show that its
/// state is current, so the routes fail closed with a 503.

#include <cstdint>
#include <stdexcept>
#include <string>

namespace iwsec {

/// @brief Thrown by a UserStore, RevocationStore or lockout backend when it
/// cannot answer from state it can show to be current (a users file that
/// changed but cannot be reloaded, a cluster replica past its staleness
/// bound, a database that cannot be reached). The security routes and the
/// guard answer it with 503, the `IW10002` envelope and `Retry-After`; the
/// message is for the host's log and never reaches the client.
class StateUnavailable : public std::runtime_error {
 public:
  explicit StateUnavailable(const std::string& what, std::int64_t retry_after_seconds = 1)
      : std::runtime_error(what), retry_after_(retry_after_seconds < 1 ? 1 : retry_after_seconds) {}

  /// @brief Whole seconds a client should wait before trying again (at least 1).
  std::int64_t retry_after() const noexcept { return retry_after_; }

 private:
  std::int64_t retry_after_;
};

}  // namespace iwsec
// ----- end iwsec/errors.hpp -----
// ----- begin iwsec/signer.hpp -----
/// @file
/// @brief HS256 access tokens: minting and strict verification, in-house on
/// OpenSSL (no JWT library), shaped like the tokens Infoworks issues.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// ----- begin iwsec/detail/base64.hpp -----
/// @file
/// @brief Strict base64url (JWS) and standard base64 (HTTP Basic) codecs.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace iwsec {
namespace detail {

/// @brief Maps an ASCII byte to its 6-bit value in the given alphabet, or -1.
inline int base64_value(unsigned char c, bool url) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (url) {
    if (c == '-') return 62;
    if (c == '_') return 63;
  } else {
    if (c == '+') return 62;
    if (c == '/') return 63;
  }
  return -1;
}

/// @brief Decodes unpadded symbols; rejects foreign bytes, impossible lengths
/// and non-zero trailing bits, so every byte string has exactly one encoding.
inline bool base64_decode_symbols(std::string_view in, bool url, std::string& out) {
  if (in.size() % 4 == 1) return false;
  out.clear();
  out.reserve(in.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    const int v = base64_value(c, url);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero: "Xl", "Xm", "Xn" are not aliases of "Xk".
  return (acc & ((1u << bits) - 1u)) == 0;
}

inline std::string base64_encode_impl(std::string_view in, bool url, bool pad) {
  const char* alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t n = (static_cast<unsigned char>(in[i]) << 16) |
                            (static_cast<unsigned char>(in[i + 1]) << 8) |
                            static_cast<unsigned char>(in[i + 2]);
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.push_back(alphabet[(n >> 6) & 63]);
    out.push_back(alphabet[n & 63]);
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    std::uint32_t n = static_cast<unsigned char>(in[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    if (rest == 2) out.push_back(alphabet[(n >> 6) & 63]);
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

/// @brief The length of the unpadded base64 encoding of @p n bytes.
constexpr std::size_t base64_unpadded_size(std::size_t n) noexcept { return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0); }

/// @brief Writes the unpadded base64url encoding of @p n bytes at @p in to
/// @p out (base64_unpadded_size(n) chars); returns the end of what it wrote.
/// @brief Every 12-bit value as its two base64url symbols: two lookups per
/// three input bytes instead of four.
struct base64url_pair_table {
  char pairs[4096][2];
  constexpr base64url_pair_table() : pairs() {
    constexpr const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 4096; ++i) {
      pairs[i][0] = alphabet[i >> 6];
      pairs[i][1] = alphabet[i & 63];
    }
  }
};

inline char* base64url_encode_to(char* out, const unsigned char* in, std::size_t n) noexcept {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static constexpr base64url_pair_table table{};
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    std::memcpy(out, table.pairs[v >> 12], 2);
    std::memcpy(out + 2, table.pairs[v & 4095], 2);
    out += 4;
  }
  if (n - i == 1) {
    const std::uint32_t v = std::uint32_t{in[i]} << 16;
    *out++ = alphabet[v >> 18];
    *out++ = alphabet[(v >> 12) & 63];
  } else if (n - i == 2) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
    *out++ = alphabet[v >> 18];
    *out++ = alphabet[(v >> 12) & 63];
    *out++ = alphabet[(v >> 6) & 63];
  }
  return out;
}

/// @brief base64url symbol values; 0xFF for every byte outside the alphabet.
/// `at[k]` holds each value already shifted into position k of a 4-symbol
/// group (18, 12, 6, 0 bits), with bit 31 set for a foreign byte.
struct base64url_table {
  unsigned char v[256];
  std::uint32_t at[4][256];
  constexpr base64url_table() : v(), at() {
    for (int i = 0; i < 256; ++i) v[i] = 0xFF;
    for (int i = 0; i < 26; ++i) {
      v['A' + i] = static_cast<unsigned char>(i);
      v['a' + i] = static_cast<unsigned char>(26 + i);
    }
    for (int i = 0; i < 10; ++i) v['0' + i] = static_cast<unsigned char>(52 + i);
    v[static_cast<unsigned char>('-')] = 62;
    v[static_cast<unsigned char>('_')] = 63;
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 256; ++i)
        at[k][i] = v[i] == 0xFF ? 0x80000000u : static_cast<std::uint32_t>(v[i]) << (18 - 6 * k);
  }
};

/// @brief Strict unpadded base64url decode of @p in into @p out, which has
/// room for in.size() / 4 * 3 + 2 bytes; the same rules as base64url_decode
/// (no padding or foreign byte, no impossible length, zero trailing bits).
/// Returns the decoded length, or -1.
inline long base64url_decode_to(std::string_view in, unsigned char* out) noexcept {
  static constexpr base64url_table table{};
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  if (n % 4 == 1) return -1;
  unsigned char* o = out;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const std::uint32_t v = table.at[0][p[i]] | table.at[1][p[i + 1]] | table.at[2][p[i + 2]] | table.at[3][p[i + 3]];
    if (v & 0x80000000u) return -1;
    o[0] = static_cast<unsigned char>(v >> 16);
    o[1] = static_cast<unsigned char>(v >> 8);
    o[2] = static_cast<unsigned char>(v);
    o += 3;
  }
  const std::size_t rest = n - i;
  if (rest >= 2) {
    const std::uint32_t a = table.v[p[i]], b = table.v[p[i + 1]], c = rest == 3 ? table.v[p[i + 2]] : 0u;
    if ((a | b | c) & 0x80) return -1;
    if (rest == 2) {
      if (b & 0x0F) return -1;  // "Xl", "Xm", "Xn" are not aliases of "Xk"
      *o++ = static_cast<unsigned char>((a << 2) | (b >> 4));
    } else {
      if (c & 0x03) return -1;
      const std::uint32_t v = (a << 18) | (b << 12) | (c << 6);
      *o++ = static_cast<unsigned char>(v >> 16);
      *o++ = static_cast<unsigned char>(v >> 8);
    }
  }
  return static_cast<long>(o - out);
}

}  // namespace detail

/// @brief base64url without padding (RFC 7515 §2).
inline std::string base64url_encode(std::string_view in) {
  return detail::base64_encode_impl(in, true, false);
}

/// @brief Strict base64url decode: no padding, no '+', '/', whitespace, and
/// no non-zero trailing bits. Returns nothing on any violation.
inline std::optional<std::string> base64url_decode(std::string_view in) {
  std::string out;
  if (!detail::base64_decode_symbols(in, true, out)) return std::nullopt;
  return out;
}

/// @brief Standard base64 with padding (RFC 4648 §4), as HTTP Basic uses it.
inline std::string base64_encode(std::string_view in) {
  return detail::base64_encode_impl(in, false, true);
}

/// @brief Strict standard base64 decode: padding required to a multiple of
/// four, canonical trailing bits, nothing outside the alphabet.
inline std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  std::string out;
  if (!detail::base64_decode_symbols(in.substr(0, in.size() - pad), false, out)) return std::nullopt;
  return out;
}

}  // namespace iwsec
// ----- end iwsec/detail/base64.hpp -----
// ----- begin iwsec/detail/crypto.hpp -----
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
      throw std::runtime_error("iwsec: HMAC-SHA256 failed");
  }

 private:
  static void absorb(EVP_MD_CTX* ctx, const std::array<unsigned char, 64>& pad) {
    if (EVP_DigestInit_ex(ctx, sha256_md(), nullptr) != 1 || EVP_DigestUpdate(ctx, pad.data(), pad.size()) != 1)
      throw std::runtime_error("iwsec: HMAC-SHA256 key setup failed");
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
    throw std::runtime_error("iwsec: PBKDF2 failed");
#if IWSEC_LOW_LEVEL_SHA256
  if (length == 0) return;
  hmac_sha256_key(password).pbkdf2(reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), rounds, out,
                                   length);
#else
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        static_cast<int>(rounds), sha256_md(), static_cast<int>(length), out) != 1)
    throw std::runtime_error("iwsec: PBKDF2 failed");
#endif
}

/// @brief Writes a random (version 4) UUID in lower-case canonical form to
/// @p out (36 chars) and returns a view of it.
inline std::string_view uuid_v4_to(char* out) {
  static const char digits[] = "0123456789abcdef";
  unsigned char b[16];
  random_bytes(b, sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  char* w = out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *w++ = '-';
    *w++ = digits[b[i] >> 4];
    *w++ = digits[b[i] & 15];
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
    const char c = s[i];
    unsigned d;
    if (c >= '0' && c <= '9') {
      d = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<unsigned>(c - 'a' + 10);
    } else {
      return false;
    }
    half[digits >> 4] = (half[digits >> 4] << 4) | d;
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
// ----- end iwsec/detail/crypto.hpp -----
// ----- begin iwsec/detail/json.hpp -----
/// @file
/// @brief picojson with the strictness a token verifier needs: duplicate keys,
/// non-finite numbers and deep nesting are parse errors, never exceptions.

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include <picojson.h>

// iwsec reads every JSON number as a double and checks integrality itself, so
// it works whether or not the host compiles picojson with PICOJSON_USE_INT64;
// the only requirement is that picojson's own parse entry points exist.

namespace iwsec {
namespace detail {

/// @brief A picojson parse context that refuses what RFC 8725 says to refuse.
class strict_json_context {
 public:
  strict_json_context(picojson::value* out, std::size_t depth_left, bool* rejected)
      : out_(out), depth_left_(depth_left), rejected_(rejected) {}
  strict_json_context(const strict_json_context&) = delete;
  strict_json_context& operator=(const strict_json_context&) = delete;

  bool set_null() {
    *out_ = picojson::value();
    return true;
  }
  bool set_bool(bool b) {
    *out_ = picojson::value(b);
    return true;
  }
#ifdef PICOJSON_USE_INT64
  bool set_int64(std::int64_t i) {
    *out_ = picojson::value(static_cast<double>(i));
    return true;
  }
#endif
  bool set_number(double f) {
    // picojson's value(double) throws on inf/nan ("1e309"), and picojson
    // ignores this function's result, so the refusal is recorded on the side.
    if (!std::isfinite(f)) {
      *rejected_ = true;
      return false;
    }
    *out_ = picojson::value(f);
    return true;
  }
  template <typename Iter>
  bool parse_string(picojson::input<Iter>& in) {
    *out_ = picojson::value(picojson::string_type, false);
    return picojson::_parse_string(out_->get<std::string>(), in);
  }
  bool parse_array_start() {
    if (depth_left_ == 0) return false;
    --depth_left_;
    *out_ = picojson::value(picojson::array_type, false);
    return true;
  }
  template <typename Iter>
  bool parse_array_item(picojson::input<Iter>& in, std::size_t) {
    auto& a = out_->get<picojson::array>();
    a.emplace_back();
    strict_json_context ctx(&a.back(), depth_left_, rejected_);
    return picojson::_parse(ctx, in);
  }
  bool parse_array_stop(std::size_t) {
    ++depth_left_;
    return true;
  }
  bool parse_object_start() {
    if (depth_left_ == 0) return false;
    --depth_left_;
    *out_ = picojson::value(picojson::object_type, false);
    return true;
  }
  template <typename Iter>
  bool parse_object_item(picojson::input<Iter>& in, const std::string& key) {
    auto& o = out_->get<picojson::object>();
    auto inserted = o.emplace(key, picojson::value());
    if (!inserted.second) return false;  // duplicate member name
    strict_json_context ctx(&inserted.first->second, depth_left_, rejected_);
    return picojson::_parse(ctx, in);
  }
  bool parse_object_stop() {
    ++depth_left_;
    return true;
  }

 private:
  picojson::value* out_;
  std::size_t depth_left_;
  bool* rejected_;
};

/// @brief Length of the valid UTF-8 sequence starting at @p i (a byte >= 0x80),
/// or 0: no overlong forms, no surrogates, nothing above U+10FFFF.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  const unsigned c = byte(i);
  const auto cont = [&](std::size_t k) { return (byte(k) & 0xC0u) == 0x80u; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;   // overlong
    if (c == 0xED && c1 >= 0xA0) return 0;  // UTF-16 surrogate
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 >= 0x90) return 0;  // above U+10FFFF
    return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

/// @brief Whether @p s is entirely valid UTF-8.
inline bool is_valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
    } else {
      const std::size_t n = utf8_sequence_length(s, i);
      if (n == 0) return false;
      i += n;
    }
  }
  return true;
}

/// @brief What picojson lets through and RFC 8259 does not: numbers such as
/// `01`, `1.`, `.5`, `-` or `1e`, and invalid UTF-8 inside strings. With
/// @p integers_only, a number may not have a fraction or an exponent either.
inline bool json_text_is_strict(std::string_view text, bool integers_only) noexcept {
  const auto digit = [&](std::size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"') {
      for (++i; i < text.size() && text[i] != '"';) {
        const auto b = static_cast<unsigned char>(text[i]);
        if (b == '\\') {
          i += 2;  // picojson checks the escape itself
        } else if (b < 0x80) {
          ++i;
        } else {
          const std::size_t n = utf8_sequence_length(text, i);
          if (n == 0) return false;
          i += n;
        }
      }
      ++i;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t j = i + (c == '-' ? 1 : 0);
      if (!digit(j)) return false;
      if (text[j] == '0') {
        ++j;
      } else {
        while (digit(j)) ++j;
      }
      if (j < text.size() && text[j] == '.') {
        if (integers_only || !digit(++j)) return false;
        while (digit(j)) ++j;
      }
      if (j < text.size() && (text[j] == 'e' || text[j] == 'E')) {
        if (integers_only) return false;
        ++j;
        if (j < text.size() && (text[j] == '+' || text[j] == '-')) ++j;
        if (!digit(j)) return false;
        while (digit(j)) ++j;
      }
      // Whatever picojson would still swallow as part of this number ("01", "1.2.3", "1e5e5").
      if (j < text.size() && (digit(j) || text[j] == '.' || text[j] == 'e' || text[j] == 'E' || text[j] == '+' ||
                              text[j] == '-'))
        return false;
      i = j;
    } else {
      ++i;
    }
  }
  return true;
}

/// @brief Parses one complete JSON text strictly; trailing bytes other than
/// whitespace, duplicate keys, non-finite numbers or nesting deeper than
/// @p max_depth make it fail, as do the forms json_text_is_strict refuses.
inline std::optional<picojson::value> parse_json_strict(std::string_view text, std::size_t max_depth = 16,
                                                        bool integers_only = false) {
  if (!json_text_is_strict(text, integers_only)) return std::nullopt;
  picojson::value out;
  bool rejected = false;
  strict_json_context ctx(&out, max_depth, &rejected);
  picojson::input<std::string_view::const_iterator> in(text.begin(), text.end());
  try {
    if (!picojson::_parse(ctx, in) || rejected) return std::nullopt;
  } catch (...) {  // allocation failure or a picojson invariant: a parse error to us
    return std::nullopt;
  }
  in.skip_ws();
  if (in.getc() != -1) return std::nullopt;
  return out;
}


// ---- The verifier's parser -------------------------------------------------
//
// parse_json_strict builds a picojson DOM; the token verifier instead walks
// the text once with flat_json_parser, which accepts and refuses exactly what
// parse_json_strict(text, max_depth, /*integers_only=*/true) does: RFC 8259
// syntax (whitespace " \t\n\r" only), integers only (no fraction or exponent,
// no leading zero, nothing that overflows a double), strings of valid UTF-8
// without raw control characters, the escapes \" \\ \/ \b \f \n \r \t \uXXXX
// with surrogates only in valid pairs, no duplicate member names (compared
// after unescaping) in any object, and nesting no deeper than max_depth. It
// reports the top-level members of an object to a callback, with strings
// already unescaped, and allocates nothing for an object of up to 16 members
// per level.

/// @brief What a JSON value is, as flat_json_parser reports it.
enum class json_kind : unsigned char { string, number, object, array, literal };

/// @brief One member value: its kind, its text as written, and for a string
/// its unescaped contents.
struct json_value_view {
  json_kind kind = json_kind::literal;
  std::string_view raw;   ///< the value's text, as in the input
  std::string_view text;  ///< strings only: the contents, unescaped
};

/// @brief Member names of one object, for the duplicate check.
class json_key_set {
 public:
  json_key_set() = default;
  json_key_set(const json_key_set&) = delete;
  json_key_set& operator=(const json_key_set&) = delete;
  /// @brief False when @p key was already there.
  bool insert(std::string_view key) {
    if (big_) return big_->insert(key).second;
    for (std::size_t i = 0; i < n_; ++i)
      if (size_[i] == key.size() && (key.empty() || (data_[i][0] == key[0] &&
                                                     std::memcmp(data_[i], key.data(), key.size()) == 0)))
        return false;
    if (n_ < small_capacity) {
      data_[n_] = key.data();
      size_[n_++] = key.size();
      return true;
    }
    big_ = std::make_unique<std::unordered_set<std::string_view>>();
    for (std::size_t i = 0; i < n_; ++i) big_->insert(std::string_view(data_[i], size_[i]));
    return big_->insert(key).second;
  }

 private:
  static constexpr std::size_t small_capacity = 16;
  const char* data_[small_capacity];  // left uninitialised: only [0, n_) is read
  std::size_t size_[small_capacity];
  std::size_t n_ = 0;
  std::unique_ptr<std::unordered_set<std::string_view>> big_;
};

/// @brief A strict single-pass JSON parser for one object (see above).
class flat_json_parser {
 public:
  /// @param scratch room for text.size() bytes: unescaped strings go there
  /// (an unescaped string is never longer than its escaped form).
  flat_json_parser(std::string_view text, char* scratch) noexcept
      : p_(text.data()), end_(text.data() + text.size()), scratch_(scratch) {}

  /// @brief Parses the whole text as one object nested at most @p max_depth
  /// deep, calling on_member(std::string_view name, const json_value_view&)
  /// for each top-level member. False on any violation (the callback may
  /// already have run for earlier members).
  template <typename OnMember>
  bool parse_object(std::size_t max_depth, OnMember&& on_member) {
    skip_ws();
    if (p_ == end_ || *p_ != '{') return false;
    if (!object(max_depth, on_member)) return false;
    skip_ws();
    return p_ == end_;
  }

 private:
  struct ignore_members {
    void operator()(std::string_view, const json_value_view&) const noexcept {}
  };

  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  /// @brief A byte that stands for itself inside a string: ASCII, not a
  /// control character, quote or backslash.
  static bool plain_ascii(char ch) noexcept {
    struct table {
      bool plain[256];
      constexpr table() : plain() {
        for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
      }
    };
    static constexpr table t{};
    return t.plain[static_cast<unsigned char>(ch)];
  }

  /// @brief The first byte at or after @p p that is not plain_ascii (or @p end),
  /// eight bytes at a time while none of them needs a look.
  static const char* skip_plain(const char* p, const char* end) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
      std::uint64_t x;
      std::memcpy(&x, p, 8);
      const std::uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
      // Exact "is any byte ...": < 0x20, == '"', == '\\', or >= 0x80.
      const std::uint64_t flags = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) |
                                  ((backslash - ones) & ~backslash) | x;
      if (flags & highs) break;
      p += 8;
    }
    while (p != end && plain_ascii(*p)) ++p;
    return p;
  }

  void skip_ws() noexcept {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  template <typename OnMember>
  bool object(std::size_t depth_left, OnMember& on_member) {
    if (depth_left == 0) return false;
    ++p_;  // '{'
    skip_ws();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    json_key_set keys;
    for (;;) {
      skip_ws();
      std::string_view key;
      if (p_ == end_ || *p_ != '"' || !string(key)) return false;
      skip_ws();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      if (!keys.insert(key)) return false;
      json_value_view v;
      if (!value(depth_left - 1, v)) return false;
      on_member(key, static_cast<const json_value_view&>(v));
      skip_ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != '}') return false;
      ++p_;
      return true;
    }
  }

  bool array(std::size_t depth_left) {
    if (depth_left == 0) return false;
    ++p_;  // '['
    skip_ws();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      json_value_view v;
      if (!value(depth_left - 1, v)) return false;
      skip_ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != ']') return false;
      ++p_;
      return true;
    }
  }

  bool literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  bool value(std::size_t depth_left, json_value_view& v) {
    skip_ws();
    if (p_ == end_) return false;
    const char* start = p_;
    switch (*p_) {
      case '"':
        v.kind = json_kind::string;
        if (!string(v.text)) return false;
        break;
      case '{': {
        v.kind = json_kind::object;
        ignore_members ignore;
        if (!object(depth_left, ignore)) return false;
        break;
      }
      case '[':
        v.kind = json_kind::array;
        if (!array(depth_left)) return false;
        break;
      case 't':
        if (!literal("true")) return false;
        break;
      case 'f':
        if (!literal("false")) return false;
        break;
      case 'n':
        if (!literal("null")) return false;
        break;
      default:
        v.kind = json_kind::number;
        if (!number()) return false;
    }
    v.raw = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  // -?(0|[1-9][0-9]*), not followed by a fraction, an exponent or more of a
  // number, and finite as a double.
  bool number() {
    const char* start = p_;
    if (*p_ == '-') ++p_;
    if (p_ == end_ || !is_digit(*p_)) return false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (p_ != end_ && (is_digit(*p_) || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' || *p_ == '-'))
      return false;
    // Up to 308 digits is always finite; beyond, ask strtod as picojson does.
    if (p_ - start > 300) {
      const std::string digits(start, p_);
      if (!std::isfinite(std::strtod(digits.c_str(), nullptr))) return false;
    }
    return true;
  }

  static int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  bool quad_hex(unsigned& out) noexcept {
    if (end_ - p_ < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex_value(p_[i]);
      if (h < 0) return false;
      v = (v << 4) | static_cast<unsigned>(h);
    }
    p_ += 4;
    out = v;
    return true;
  }

  static char* put_utf8(char* w, unsigned cp) noexcept {
    if (cp < 0x80) {
      *w++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *w++ = static_cast<char>(0xC0 | (cp >> 6));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *w++ = static_cast<char>(0xE0 | (cp >> 12));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *w++ = static_cast<char>(0xF0 | (cp >> 18));
      *w++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
    return w;
  }

  /// @brief At a '"': the string's contents, unescaped (a view of the input
  /// when it holds no escape, else of the scratch area).
  bool string(std::string_view& out) {
    ++p_;  // '"'
    const char* start = p_;
    for (;;) {  // the common case: no escape at all
      p_ = skip_plain(p_, end_);
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        out = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c == '\\') break;
      if (c < 0x20) return false;
      if (c < 0x80) {
        ++p_;
      } else {
        const std::size_t n = utf8_sequence_length(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
        if (n == 0) return false;
        p_ += n;
      }
    }
    char* const begin = scratch_;
    char* w = begin;
    std::memcpy(w, start, static_cast<std::size_t>(p_ - start));
    w += p_ - start;
    for (;;) {
      while (p_ != end_ && plain_ascii(*p_)) *w++ = *p_++;  // runs between escapes are short
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        out = std::string_view(begin, static_cast<std::size_t>(w - begin));
        scratch_ = w;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++p_ == end_) return false;
        switch (*p_++) {
          case '"': *w++ = '"'; break;
          case '\\': *w++ = '\\'; break;
          case '/': *w++ = '/'; break;
          case 'b': *w++ = '\b'; break;
          case 'f': *w++ = '\f'; break;
          case 'n': *w++ = '\n'; break;
          case 'r': *w++ = '\r'; break;
          case 't': *w++ = '\t'; break;
          case 'u': {
            unsigned cp = 0;
            if (!quad_hex(cp)) return false;
            if (cp >= 0xD800 && cp <= 0xDFFF) {
              if (cp >= 0xDC00) return false;  // a low surrogate first
              unsigned low = 0;
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
              p_ += 2;
              if (!quad_hex(low) || low < 0xDC00 || low > 0xDFFF) return false;
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            w = put_utf8(w, cp);
            break;
          }
          default: return false;
        }
      } else if (c < 0x80) {
        *w++ = static_cast<char>(c);
        ++p_;
      } else {
        const std::size_t n = utf8_sequence_length(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
        if (n == 0) return false;
        std::memcpy(w, p_, n);
        w += n;
        p_ += n;
      }
    }
  }

  const char* p_;
  const char* end_;
  char* scratch_;
};

/// @brief A number member that is an integer in [0, 2^53), from its text:
/// what json_non_negative_integer accepts of the same value ("-0" included
/// among the refused).
inline std::optional<std::int64_t> json_non_negative_integer(const json_value_view& v) noexcept {
  if (v.kind != json_kind::number || v.raw.empty() || v.raw[0] == '-' || v.raw.size() > 16) return std::nullopt;
  std::int64_t n = 0;
  for (char c : v.raw) n = n * 10 + (c - '0');
  if (n >= (std::int64_t{1} << 53)) return std::nullopt;
  return n;
}

/// @brief Copies @p s to @p w; returns the end.
inline char* put(char* w, std::string_view s) noexcept {
  std::memcpy(w, s.data(), s.size());
  return w + s.size();
}

/// @brief Writes @p v in decimal (at most 20 chars); returns the end.
inline char* put_int(char* w, std::int64_t v) noexcept { return std::to_chars(w, w + 20, v).ptr; }

/// @brief Writes @p s JSON-escaped, without quotes (at most 6 chars per
/// byte); returns the end. The one escaping rule of iwsec's JSON output.
inline char* put_json_escaped(char* w, std::string_view s) noexcept {
  static const char hex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) {
      *w++ = static_cast<char>(c);
      continue;
    }
    *w++ = '\\';
    switch (c) {
      case '"': *w++ = '"'; break;
      case '\\': *w++ = '\\'; break;
      case '\b': *w++ = 'b'; break;
      case '\f': *w++ = 'f'; break;
      case '\n': *w++ = 'n'; break;
      case '\r': *w++ = 'r'; break;
      case '\t': *w++ = 't'; break;
      default:
        w = put(w, "u00");
        *w++ = hex[c >> 4];
        *w++ = hex[c & 15];
    }
  }
  return w;
}

/// @brief Appends @p s as a JSON string literal (quotes included), escaped
/// by put_json_escaped.
inline void append_json_string(std::string& out, std::string_view s) {
  const std::size_t at = out.size();
  out.resize(at + 2 + 6 * s.size());  // put_json_escaped writes at most 6 chars per byte
  char* w = &out[at];
  *w++ = '"';
  w = put_json_escaped(w, s);
  *w++ = '"';
  out.resize(static_cast<std::size_t>(w - out.data()));
}

/// @brief Writes @p s JSON-escaped and then escaped again (a string inside a
/// JSON string), at most 7 chars per byte; returns the end.
inline char* put_json_escaped_twice(char* w, std::string_view s) noexcept {
  for (unsigned char c : s) {
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) {
      *w++ = static_cast<char>(c);
      continue;
    }
    char once[6];
    const char* end = put_json_escaped(once, std::string_view(reinterpret_cast<const char*>(&c), 1));
    w = put_json_escaped(w, std::string_view(once, static_cast<std::size_t>(end - once)));
  }
  return w;
}

/// @brief A JSON number that is an integer in [0, 2^53): the only NumericDate
/// (and counter) form iwsec accepts.
inline std::optional<std::int64_t> json_non_negative_integer(const picojson::value& v) {
  if (!v.is<double>()) return std::nullopt;
  const double d = v.get<double>();
  // ">=": every text above 2^53 - 1 rounds to at least 2^53, so none slips in.
  if (!(d >= 0.0) || std::signbit(d) || d >= 9007199254740992.0 || std::floor(d) != d) return std::nullopt;
  return static_cast<std::int64_t>(d);
}

/// @brief The member @p key of object @p obj, or null when absent.
inline const picojson::value* json_member(const picojson::object& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &it->second;
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/json.hpp -----

namespace iwsec {

/// @brief How an access token was obtained (the `scope.action` inside `sub`).
enum class TokenAction { password, refresh_token };

/// @brief The wire name of a TokenAction: "password" or "refresh_token".
inline const char* to_string(TokenAction a) noexcept {
  return a == TokenAction::password ? "password" : "refresh_token";
}

/// @brief Why a token was not accepted. Every rejection has exactly one.
enum class VerifyError {
  none,                   ///< accepted
  too_large,              ///< longer than Signer::max_token_bytes; nothing was parsed
  malformed,              ///< not three canonical unpadded base64url segments
  bad_header,             ///< header not a JSON object of only alg, typ, kid
  unsupported_algorithm,  ///< alg is anything but exactly "HS256"
  unknown_key,            ///< kid names no key this signer holds
  bad_signature,          ///< MAC mismatch (compared in constant time)
  bad_payload,            ///< payload not a strict JSON object (integers only, valid UTF-8, no duplicate keys)
  bad_claims,             ///< a required claim missing or of the wrong type
  expired,                ///< now >= exp + leeway
  not_yet_valid,          ///< nbf or iat later than now + leeway
};

/// @brief A short, stable, lower-case name for a VerifyError (for logs and tests).
inline const char* to_string(VerifyError e) noexcept {
  switch (e) {
    case VerifyError::none: return "none";
    case VerifyError::too_large: return "too_large";
    case VerifyError::malformed: return "malformed";
    case VerifyError::bad_header: return "bad_header";
    case VerifyError::unsupported_algorithm: return "unsupported_algorithm";
    case VerifyError::unknown_key: return "unknown_key";
    case VerifyError::bad_signature: return "bad_signature";
    case VerifyError::bad_payload: return "bad_payload";
    case VerifyError::bad_claims: return "bad_claims";
    case VerifyError::expired: return "expired";
    case VerifyError::not_yet_valid: return "not_yet_valid";
  }
  return "unknown";
}

/// @brief What a new access token says; Signer::sign turns it into a JWS.
struct AccessClaims {
  std::string email;
  TokenAction action = TokenAction::refresh_token;
  std::int64_t issued_at = 0;           ///< `iat`
  std::int64_t expires_at = 0;          ///< `exp`
  std::string jti;                      ///< lower-case UUID v4; Signer::sign makes one when empty
  std::int64_t refresh_generation = 0;  ///< `gen`: the user's refresh-token generation
};

class Signer;

/// @brief Claims of a token whose signature, header and times all checked
/// out. Only Signer can make one, so it cannot be confused with input.
class VerifiedToken {
 public:
  const std::string& email() const noexcept { return email_; }
  TokenAction action() const noexcept { return action_; }
  std::int64_t issued_at() const noexcept { return issued_at_; }
  std::int64_t expires_at() const noexcept { return expires_at_; }
  const std::string& jti() const noexcept { return jti_; }
  std::int64_t refresh_generation() const noexcept { return refresh_generation_; }
  /// @brief The `kid` the token named, empty when it named none.
  const std::string& key_id() const noexcept { return key_id_; }

 private:
  friend class Signer;
  VerifiedToken() = default;
  std::string email_;
  TokenAction action_ = TokenAction::refresh_token;
  std::int64_t issued_at_ = 0;
  std::int64_t expires_at_ = 0;
  std::string jti_;
  std::int64_t refresh_generation_ = 0;
  std::string key_id_;
};

/// @brief The outcome of Signer::verify: a VerifiedToken or a VerifyError.
class VerifyResult {
 public:
  bool ok() const noexcept { return error_ == VerifyError::none; }
  explicit operator bool() const noexcept { return ok(); }
  VerifyError error() const noexcept { return error_; }
  /// @brief The verified claims; throws std::logic_error when !ok().
  const VerifiedToken& token() const {
    if (!ok()) throw std::logic_error("iwsec: VerifyResult::token() on a rejected token");
    return *token_;
  }

 private:
  friend class Signer;
  explicit VerifyResult(VerifyError e) : error_(e) {}
  explicit VerifyResult(VerifiedToken t) : error_(VerifyError::none), token_(std::move(t)) {}
  VerifyError error_;
  std::optional<VerifiedToken> token_;
};

/// @brief One HMAC key with its identifier (`kid`).
struct SigningKey {
  std::string key_id;  ///< may be empty only when it is the signer's sole key
  std::string secret;  ///< raw bytes, at least Signer::min_key_bytes
};

/// @brief Thrown by Signer's constructors for unusable key material.
class key_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// @brief HS256 signer and strict verifier. Holds one or more keys: signs with
/// the newest (the last given) and verifies with the one the token's `kid`
/// names. Immutable after construction, so one instance serves all threads.
class Signer {
 public:
  static constexpr std::size_t min_key_bytes = 32;
  static constexpr std::size_t max_keys = 16;
  static constexpr std::size_t max_token_bytes = 8192;

  /// Immutable: copies and moves construct new signers, but a signer is never
  /// assigned over, so what mounted routes verified with (and cached) stays
  /// what they verify with. To change keys, mount routes with a new Signer.
  Signer(const Signer&) = default;
  Signer(Signer&&) = default;
  Signer& operator=(const Signer&) = delete;
  Signer& operator=(Signer&&) = delete;

  /// @brief A fresh random key of min_key_bytes bytes from the CSPRNG.
  static std::string generate_secret() { return detail::random_string(min_key_bytes); }

  /// @brief A signer with one key and no `kid`; throws key_error when the key
  /// is shorter than 32 bytes.
  explicit Signer(std::string_view secret) : Signer(std::vector<SigningKey>{SigningKey{"", std::string(secret)}}) {}

  /// @brief A signer holding several keys for rotation; the last one signs.
  /// With more than one key each needs a distinct, non-empty `kid`.
  explicit Signer(const std::vector<SigningKey>& keys) {
    if (keys.empty()) throw key_error("iwsec: a Signer needs at least one key");
    if (keys.size() > max_keys) throw key_error("iwsec: a Signer holds at most 16 keys");
    for (const auto& k : keys) {
      if (k.secret.size() < min_key_bytes) throw key_error("iwsec: HS256 keys must be at least 32 bytes");
      if (keys.size() > 1 && k.key_id.empty()) throw key_error("iwsec: with several keys each needs a kid");
      if (k.key_id.size() > 128) throw key_error("iwsec: kid longer than 128 bytes");
      for (const auto& other : keys_)
        if (other.key_id == k.key_id) throw key_error("iwsec: duplicate kid");
      keys_.push_back(entry{k.key_id, std::make_shared<detail::hmac_sha256_key>(k.secret)});
    }
    const auto& newest = keys_.back();
    std::string header = "{\"alg\":\"HS256\"";
    if (keys_.size() > 1) {
      header += ",\"kid\":";
      detail::append_json_string(header, newest.key_id);
    }
    header += '}';
    encoded_header_ = base64url_encode(header) + '.';
  }

  /// @brief Mints a compact JWS for @p claims (makes a `jti` when empty).
  /// The payload has a fixed layout, written straight into one buffer:
  /// {"iat":N,"sub":"<sub JSON as a string>","jti":"...","exp":N,"gen":N}.
  std::string sign(const AccessClaims& claims) const {
    char jti_buf[36];
    std::string_view jti = claims.jti;
    if (jti.empty()) jti = detail::uuid_v4_to(jti_buf);
    const std::string_view action = to_string(claims.action);

    static constexpr std::string_view p_iat = R"({"iat":)";
    static constexpr std::string_view p_sub = R"(,"sub":"{\n  \"email\" : \")";
    static constexpr std::string_view p_scope = R"(\",\n  \"scope\" : {\n    \"action\" : \")";
    static constexpr std::string_view p_jti = R"(\"\n  }\n}","jti":")";
    static constexpr std::string_view p_exp = R"(","exp":)";
    static constexpr std::string_view p_gen = R"(,"gen":)";
    // Worst cases: an email byte escaped twice is 7 bytes (\\u00XX), a jti
    // byte escaped once 6, an int64 20.
    const std::size_t bound = p_iat.size() + p_sub.size() + p_scope.size() + p_jti.size() + p_exp.size() +
                              p_gen.size() + 1 + 7 * claims.email.size() + action.size() + 6 * jti.size() + 3 * 20;
    char stack_buf[1024];
    std::unique_ptr<char[]> heap_buf;
    char* const payload = bound <= sizeof stack_buf ? stack_buf : (heap_buf.reset(new char[bound]), heap_buf.get());
    char* w = payload;
    w = detail::put(w, p_iat);
    w = detail::put_int(w, claims.issued_at);
    w = detail::put(w, p_sub);
    w = detail::put_json_escaped_twice(w, claims.email);
    w = detail::put(w, p_scope);
    w = detail::put(w, action);
    w = detail::put(w, p_jti);
    w = detail::put_json_escaped(w, jti);
    w = detail::put(w, p_exp);
    w = detail::put_int(w, claims.expires_at);
    w = detail::put(w, p_gen);
    w = detail::put_int(w, claims.refresh_generation);
    *w++ = '}';
    const auto payload_size = static_cast<std::size_t>(w - payload);

    const std::size_t input_size = encoded_header_.size() + detail::base64_unpadded_size(payload_size);
    std::string token(input_size + 1 + detail::base64_unpadded_size(32), '\0');
    char* t = &token[0];
    std::memcpy(t, encoded_header_.data(), encoded_header_.size());
    detail::base64url_encode_to(t + encoded_header_.size(), reinterpret_cast<const unsigned char*>(payload),
                                payload_size);
    unsigned char mac[32];
    keys_.back().hmac->mac(reinterpret_cast<const unsigned char*>(t), input_size, mac);
    t[input_size] = '.';
    detail::base64url_encode_to(t + input_size + 1, mac, sizeof mac);
    return token;
  }

  /// @brief Full verification: size, shape, header (alg pinned to HS256, only
  /// alg/typ/kid), signature in constant time, then claims and times.
  /// @param now seconds since the epoch; @param leeway_seconds clock skew allowed.
  VerifyResult verify(std::string_view token, std::int64_t now, std::int64_t leeway_seconds = 0) const {
    return verify_impl(token, now, leeway_seconds, true);
  }

  /// @brief Everything verify() checks except `exp`, `nbf` and `iat` against
  /// the clock: "is this a genuine token of ours?" Revocation uses it, since
  /// revoking an expired genuine token is a harmless success. Never use it to
  /// grant access.
  VerifyResult verify_ignoring_lifetime(std::string_view token) const { return verify_impl(token, 0, 0, false); }

  /// @brief The `kid` new tokens carry (empty with a single key).
  const std::string& signing_key_id() const noexcept { return keys_.back().key_id; }

 private:
  VerifyResult verify_impl(std::string_view token, std::int64_t now, std::int64_t leeway_seconds,
                           bool check_lifetime) const {
    if (token.size() > max_token_bytes) return VerifyResult(VerifyError::too_large);
    const auto dot1 = token.find('.');
    if (dot1 == std::string_view::npos) return VerifyResult(VerifyError::malformed);
    const auto dot2 = token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
      return VerifyResult(VerifyError::malformed);
    const std::string_view header_b64 = token.substr(0, dot1);
    const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
    const std::string_view signature_b64 = token.substr(dot2 + 1);
    if (header_b64.empty() || payload_b64.empty() || signature_b64.empty()) return VerifyResult(VerifyError::malformed);

    // Decoded segments and the parsers' scratch (unescaped strings) share one
    // buffer: on the stack for tokens up to ~1 KiB, else on the heap.
    const std::size_t need = 4 * token.size() + 64;
    unsigned char stack_buf[4096];
    std::unique_ptr<unsigned char[]> heap_buf;
    unsigned char* const buf =
        need <= sizeof stack_buf ? stack_buf : (heap_buf.reset(new unsigned char[need]), heap_buf.get());

    // Header first: the algorithm is pinned before any MAC work.
    const long header_size = detail::base64url_decode_to(header_b64, buf);
    if (header_size < 0) return VerifyResult(VerifyError::malformed);
    const auto header_len = static_cast<std::size_t>(header_size);
    bool header_ok = true, alg_ok = false, kid_seen = false, kid_is_string = false;
    std::string_view kid;
    detail::flat_json_parser header_parser(std::string_view(reinterpret_cast<const char*>(buf), header_len),
                                           reinterpret_cast<char*>(buf + header_len));
    const bool header_parsed =
        header_parser.parse_object(2, [&](std::string_view name, const detail::json_value_view& v) {
          if (name == "alg") {
            alg_ok = v.kind == detail::json_kind::string && v.text == "HS256";
          } else if (name == "kid") {
            kid_seen = true;
            kid_is_string = v.kind == detail::json_kind::string;
            kid = v.text;
          } else if (name == "typ") {
            if (v.kind != detail::json_kind::string || v.text != "JWT") header_ok = false;
          } else {
            header_ok = false;  // crit, jku, jwk, x5u, x5c, ...
          }
        });
    if (!header_parsed || !header_ok) return VerifyResult(VerifyError::bad_header);
    if (!alg_ok) return VerifyResult(VerifyError::unsupported_algorithm);
    if (kid_seen && !kid_is_string) return VerifyResult(VerifyError::bad_header);

    // 32 bytes are exactly 43 symbols; decoding checks alphabet and trailing bits.
    unsigned char signature[32];
    if (signature_b64.size() != 43 || detail::base64url_decode_to(signature_b64, signature) != 32)
      return VerifyResult(VerifyError::malformed);

    const std::string_view signing_input = token.substr(0, dot2);
    const entry* key = nullptr;
    if (kid_seen) {
      for (const auto& k : keys_)
        if (!k.key_id.empty() && k.key_id == kid) key = &k;
      if (!key) return VerifyResult(VerifyError::unknown_key);
      if (!mac_matches(*key, signing_input, signature)) return VerifyResult(VerifyError::bad_signature);
    } else {
      // A token minted while the signer held a single key carries no kid;
      // after a rotation adds keys it must still verify under its own key.
      for (const auto& k : keys_)
        if (mac_matches(k, signing_input, signature)) key = &k;
      if (!key) return VerifyResult(VerifyError::bad_signature);
    }

    unsigned char* const payload = buf + 2 * header_len;
    const long payload_size = detail::base64url_decode_to(payload_b64, payload);
    if (payload_size < 0) return VerifyResult(VerifyError::malformed);
    const auto payload_len = static_cast<std::size_t>(payload_size);
    char* const payload_scratch = reinterpret_cast<char*>(payload + payload_len);
    detail::json_value_view exp, iat, jti, gen, sub, nbf;
    bool has_exp = false, has_iat = false, has_jti = false, has_gen = false, has_sub = false, has_nbf = false;
    detail::flat_json_parser payload_parser(std::string_view(reinterpret_cast<const char*>(payload), payload_len),
                                            payload_scratch);
    const bool payload_parsed =
        payload_parser.parse_object(8, [&](std::string_view name, const detail::json_value_view& v) {
          if (name.size() != 3) return;
          if (name == "exp") {
            exp = v, has_exp = true;
          } else if (name == "iat") {
            iat = v, has_iat = true;
          } else if (name == "jti") {
            jti = v, has_jti = true;
          } else if (name == "gen") {
            gen = v, has_gen = true;
          } else if (name == "sub") {
            sub = v, has_sub = true;
          } else if (name == "nbf") {
            nbf = v, has_nbf = true;
          }
        });
    if (!payload_parsed) return VerifyResult(VerifyError::bad_payload);

    VerifiedToken out;
    if (!has_exp || !has_iat || !has_jti || !has_gen || !has_sub) return VerifyResult(VerifyError::bad_claims);
    const auto exp_v = detail::json_non_negative_integer(exp);
    const auto iat_v = detail::json_non_negative_integer(iat);
    const auto gen_v = detail::json_non_negative_integer(gen);
    if (!exp_v || !iat_v || !gen_v) return VerifyResult(VerifyError::bad_claims);
    std::optional<std::int64_t> nbf_v;
    if (has_nbf) {
      nbf_v = detail::json_non_negative_integer(nbf);
      if (!nbf_v) return VerifyResult(VerifyError::bad_claims);
    }
    if (jti.kind != detail::json_kind::string || !detail::is_canonical_uuid(jti.text))
      return VerifyResult(VerifyError::bad_claims);
    if (sub.kind != detail::json_kind::string ||
        !parse_subject(sub.text, payload_scratch + payload_len, out))
      return VerifyResult(VerifyError::bad_claims);

    if (check_lifetime) {
      // A year of skew is already absurd; the bound keeps the sums below in range.
      leeway_seconds = std::min<std::int64_t>(std::max<std::int64_t>(leeway_seconds, 0), 366 * 24 * 3600);
      if (now >= *exp_v + leeway_seconds) return VerifyResult(VerifyError::expired);
      if (*iat_v > now + leeway_seconds || (nbf_v && *nbf_v > now + leeway_seconds))
        return VerifyResult(VerifyError::not_yet_valid);
    }

    out.issued_at_ = *iat_v;
    out.expires_at_ = *exp_v;
    out.refresh_generation_ = *gen_v;
    out.jti_.assign(jti.text.data(), jti.text.size());
    if (kid_seen) out.key_id_.assign(kid.data(), kid.size());
    return VerifyResult(std::move(out));
  }

  struct entry {
    std::string key_id;
    std::shared_ptr<const detail::hmac_sha256_key> hmac;
  };

  static bool mac_matches(const entry& k, std::string_view signing_input, const unsigned char* signature) {
    unsigned char mac[32];
    k.hmac->mac(reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac);
    return CRYPTO_memcmp(mac, signature, sizeof mac) == 0;
  }

  // `sub` is itself JSON: {"email": "...", "scope": {"action": "..."}}.
  // @p scratch has room for 2 * text.size() bytes.
  static bool parse_subject(std::string_view text, char* scratch, VerifiedToken& out) {
    bool email_ok = false, scope_is_object = false;
    std::string_view email, scope;
    detail::flat_json_parser parser(text, scratch);
    const bool parsed = parser.parse_object(4, [&](std::string_view name, const detail::json_value_view& v) {
      if (name == "email") {
        email_ok = v.kind == detail::json_kind::string && !v.text.empty();
        email = v.text;
      } else if (name == "scope") {
        scope_is_object = v.kind == detail::json_kind::object;
        scope = v.raw;
      }
    });
    if (!parsed || !email_ok || !scope_is_object) return false;
    // `scope` was checked whole (one level down) above; read its members.
    bool action_is_string = false;
    std::string_view action;
    detail::flat_json_parser scope_parser(scope, scratch + text.size());
    const bool scope_parsed = scope_parser.parse_object(3, [&](std::string_view name, const detail::json_value_view& v) {
      if (name == "action") {
        action_is_string = v.kind == detail::json_kind::string;
        action = v.text;
      }
    });
    if (!scope_parsed || !action_is_string) return false;
    if (action == "password") {
      out.action_ = TokenAction::password;
    } else if (action == "refresh_token") {
      out.action_ = TokenAction::refresh_token;
    } else {
      return false;
    }
    out.email_.assign(email.data(), email.size());
    return true;
  }

  std::vector<entry> keys_;
  std::string encoded_header_;  // base64url(header) + '.', fixed per signer
};

}  // namespace iwsec
// ----- end iwsec/signer.hpp -----
// ----- begin iwsec/password.hpp -----
/// @file
/// @brief Password hashes in passlib's `$pbkdf2-sha256$rounds$salt$checksum`
/// format (PBKDF2-HMAC-SHA256 from precomputed HMAC states; the same bytes as
/// OpenSSL's PKCS5_PBKDF2_HMAC), verified in constant time.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <openssl/evp.h>


namespace iwsec {

/// @brief The current OWASP recommendation for PBKDF2-HMAC-SHA256.
constexpr std::uint32_t default_pbkdf2_rounds = 600000;

namespace detail {

/// @brief passlib's "adapted base64": standard alphabet with '.' for '+', no padding.
inline std::string ab64_encode(std::string_view raw) {
  std::string s = base64_encode(raw);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (auto& c : s)
    if (c == '+') c = '.';
  return s;
}

inline std::optional<std::string> ab64_decode(std::string_view text) {
  std::string s(text);
  for (auto& c : s) {
    if (c == '.') {
      c = '+';
    } else if (c == '+' || c == '=') {
      return std::nullopt;
    }
  }
  std::string out;
  if (!base64_decode_symbols(s, false, out)) return std::nullopt;
  return out;
}

/// @brief Calls of pbkdf2_sha256 since the process started: lets tests
/// prove that refusals cost the same number of key derivations.
inline std::atomic<std::uint64_t> kdf_calls{0};
inline std::uint64_t kdf_call_count() noexcept { return kdf_calls.load(std::memory_order_relaxed); }

inline std::string pbkdf2_sha256(std::string_view password, std::string_view salt, std::uint32_t rounds,
                                 std::size_t length = 32) {
  kdf_calls.fetch_add(1, std::memory_order_relaxed);
  std::string out(length, '\0');
  pbkdf2_hmac_sha256(password, salt, rounds, reinterpret_cast<unsigned char*>(&out[0]), length);
  return out;
}

}  // namespace detail

/// @brief A parsed `$pbkdf2-sha256$...` string.
struct Pbkdf2Hash {
  static constexpr std::uint32_t max_rounds = 100000000;  // bounds work a hostile file can ask for
  std::uint32_t rounds = 0;
  std::string salt;      ///< raw bytes
  std::string checksum;  ///< raw bytes, 32 of them

  /// @brief Parses the passlib format; nothing on any deviation.
  static std::optional<Pbkdf2Hash> parse(std::string_view text) {
    constexpr std::string_view prefix = "$pbkdf2-sha256$";
    if (text.size() > 512 || text.substr(0, prefix.size()) != prefix) return std::nullopt;
    text.remove_prefix(prefix.size());
    const auto d1 = text.find('$');
    if (d1 == std::string_view::npos) return std::nullopt;
    const auto d2 = text.find('$', d1 + 1);
    if (d2 == std::string_view::npos || text.find('$', d2 + 1) != std::string_view::npos) return std::nullopt;
    const auto rounds_text = text.substr(0, d1);
    if (rounds_text.empty() || rounds_text.size() > 9 || rounds_text[0] == '0') return std::nullopt;
    std::uint64_t rounds = 0;
    for (char c : rounds_text) {
      if (c < '0' || c > '9') return std::nullopt;
      rounds = rounds * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (rounds == 0 || rounds > max_rounds) return std::nullopt;
    auto salt = detail::ab64_decode(text.substr(d1 + 1, d2 - d1 - 1));
    auto checksum = detail::ab64_decode(text.substr(d2 + 1));
    if (!salt || !checksum || checksum->size() != 32) return std::nullopt;
    return Pbkdf2Hash{static_cast<std::uint32_t>(rounds), std::move(*salt), std::move(*checksum)};
  }

  std::string to_string() const {
    return "$pbkdf2-sha256$" + std::to_string(rounds) + '$' + detail::ab64_encode(salt) + '$' +
           detail::ab64_encode(checksum);
  }
};

/// @brief Hashes @p password with a fresh 16-byte salt.
inline std::string hash_password(std::string_view password, std::uint32_t rounds = default_pbkdf2_rounds) {
  if (rounds == 0 || rounds > Pbkdf2Hash::max_rounds) throw std::invalid_argument("iwsec: PBKDF2 rounds out of range");
  Pbkdf2Hash h;
  h.rounds = rounds;
  h.salt = detail::random_string(16);
  h.checksum = detail::pbkdf2_sha256(password, h.salt, rounds);
  return h.to_string();
}

/// @brief True when @p password matches @p stored (compared in constant
/// time); false for a wrong password and for an unparseable hash.
inline bool verify_password(std::string_view password, std::string_view stored) {
  const auto h = Pbkdf2Hash::parse(stored);
  if (!h) return false;
  return detail::constant_time_equal(detail::pbkdf2_sha256(password, h->salt, h->rounds), h->checksum);
}

/// @brief Spends the work of one verify_password at @p rounds and returns
/// false: what a login for an unknown user costs, so timing hides who exists.
inline bool verify_password_decoy(std::string_view password, std::uint32_t rounds = default_pbkdf2_rounds) {
  static const std::string salt = detail::random_string(16);
  static const std::string checksum = detail::random_string(32);
  const bool equal = detail::constant_time_equal(detail::pbkdf2_sha256(password, salt, rounds), checksum);
  (void)equal;
  return false;
}

}  // namespace iwsec
// ----- end iwsec/password.hpp -----
// ----- begin iwsec/user_store.hpp -----
/// @file
/// @brief Users, their password hashes and refresh tokens: the UserStore
/// interface and its in-memory implementation.

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>


namespace iwsec {

/// @brief One account. Secrets are stored only as hashes.
struct User {
  std::string user_id;               ///< opaque, stable, a string on the wire
  std::string email;                 ///< as entered; looked up case-insensitively
  std::string password_hash;         ///< `$pbkdf2-sha256$...`
  std::string refresh_token_sha256;  ///< hex SHA-256 of the current refresh token
  std::int64_t refresh_generation = 0;  ///< bumped by each refresh-token rotation
  bool disabled = false;
};

/// @brief What an access-token check needs to know about its user, cheaply.
struct UserStatus {
  std::int64_t refresh_generation = 0;
  bool disabled = false;
};

/// @brief The outcome of a UserStore write.
enum class StoreStatus { ok, not_found, already_exists, invalid, io_error };

/// @brief A short name for a StoreStatus.
inline const char* to_string(StoreStatus s) noexcept {
  switch (s) {
    case StoreStatus::ok: return "ok";
    case StoreStatus::not_found: return "not found";
    case StoreStatus::already_exists: return "already exists";
    case StoreStatus::invalid: return "invalid";
    case StoreStatus::io_error: return "I/O error";
  }
  return "unknown";
}

/// @brief The user database the security routes read and write. Every method
/// may be called from many threads at once.
class UserStore {
 public:
  virtual ~UserStore() = default;

  /// @brief The user with this email (ASCII case-insensitive), if any.
  virtual std::optional<User> find_by_email(std::string_view email) = 0;

  /// @brief The user whose current refresh token hashes to @p token_sha256 (hex).
  virtual std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) = 0;

  /// @brief Adds @p user; already_exists when the email (case-insensitively),
  /// the user id or the refresh-token hash is taken; invalid when the email or
  /// id is empty or a text field is not valid UTF-8.
  virtual StoreStatus add_user(const User& user) = 0;

  /// @brief Applies @p change to the user with this email, atomically with
  /// respect to every other write (and, for durable stores, durably). The
  /// change must not alter the email or the user id.
  virtual StoreStatus update_user(std::string_view email, const std::function<void(User&)>& change) = 0;

  /// @brief Every user, in a stable order.
  virtual std::vector<User> list_users() = 0;

  /// @brief Generation and disabled flag of a user: the hot path of every
  /// access-token check. Override when a cheaper answer than a copy exists.
  virtual std::optional<UserStatus> status_of(std::string_view email) {
    auto u = find_by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled};
  }
};

/// @brief A new opaque refresh token: 32 bytes (256 bits) from the CSPRNG, base64url.
inline std::string generate_refresh_token() {
  return base64url_encode(detail::random_string(32));
}

/// @brief The form a refresh token is stored in: lower-case hex SHA-256.
inline std::string refresh_token_hash(std::string_view token) { return detail::sha256_hex(token); }

/// @brief A new user id: 24 lower-case hex digits (Infoworks ids look like that).
inline std::string generate_user_id() {
  const std::string raw = detail::random_string(12);
  return detail::hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

/// @brief A refresh token shown once, with the outcome of the write that stored its hash.
struct IssuedRefreshToken {
  StoreStatus status = StoreStatus::invalid;
  std::string user_id;
  std::string refresh_token;  ///< empty unless status is ok
};

/// @brief Gives the user a new refresh token and bumps their generation, so
/// the old refresh token and every access token minted before stop working.
inline IssuedRefreshToken rotate_refresh_token(UserStore& users, std::string_view email) {
  IssuedRefreshToken out;
  std::string token = generate_refresh_token();
  const std::string hash = refresh_token_hash(token);
  out.status = users.update_user(email, [&](User& u) {
    u.refresh_token_sha256 = hash;
    ++u.refresh_generation;
    out.user_id = u.user_id;
  });
  if (out.status == StoreStatus::ok) out.refresh_token = std::move(token);
  return out;
}

/// @brief Creates an enabled user with a hashed password and a first
/// refresh token (returned, shown once).
inline IssuedRefreshToken create_user(UserStore& users, std::string_view email, std::string_view password,
                                      std::uint32_t rounds = default_pbkdf2_rounds) {
  IssuedRefreshToken out;
  User user;
  user.user_id = generate_user_id();
  user.email = std::string(email);
  user.password_hash = hash_password(password, rounds);
  std::string token = generate_refresh_token();
  user.refresh_token_sha256 = refresh_token_hash(token);
  out.status = users.add_user(user);
  if (out.status == StoreStatus::ok) {
    out.user_id = user.user_id;
    out.refresh_token = std::move(token);
  }
  return out;
}

namespace detail {

/// @brief Users indexed by lower-cased email and by refresh-token hash. Not
/// synchronised: the stores wrap it in their own locking.
class user_index {
 public:
  const User* by_email(std::string_view email) const {
    auto it = by_email_.find(ascii_lower(email));
    return it == by_email_.end() ? nullptr : &it->second;
  }

  const User* by_refresh_token_hash(std::string_view token_sha256) const {
    auto it = by_token_.find(std::string(token_sha256));
    return it == by_token_.end() ? nullptr : by_email(it->second);
  }

  /// @brief Fields every stored user must have: text a JSON file can hold.
  static bool storable(const User& u) {
    return !u.email.empty() && !u.user_id.empty() && is_valid_utf8(u.email) && is_valid_utf8(u.user_id) &&
           is_valid_utf8(u.password_hash) && is_valid_utf8(u.refresh_token_sha256) && u.refresh_generation >= 0;
  }

  StoreStatus add(const User& user) {
    if (!storable(user)) return StoreStatus::invalid;
    const std::string key = ascii_lower(user.email);
    if (by_email_.count(key)) return StoreStatus::already_exists;
    for (const auto& entry : by_email_)
      if (entry.second.user_id == user.user_id) return StoreStatus::already_exists;
    if (!user.refresh_token_sha256.empty() && by_token_.count(user.refresh_token_sha256))
      return StoreStatus::already_exists;
    if (!user.refresh_token_sha256.empty()) by_token_.emplace(user.refresh_token_sha256, key);
    by_email_.emplace(key, user);
    order_.push_back(key);
    return StoreStatus::ok;
  }

  /// @brief Applies @p change to a copy; commits it only if the identity is
  /// unchanged and the new refresh-token hash is not someone else's.
  StoreStatus update(std::string_view email, const std::function<void(User&)>& change) {
    auto it = by_email_.find(ascii_lower(email));
    if (it == by_email_.end()) return StoreStatus::not_found;
    User updated = it->second;
    change(updated);
    if (ascii_lower(updated.email) != it->first || updated.user_id != it->second.user_id || !storable(updated))
      return StoreStatus::invalid;
    if (updated.refresh_token_sha256 != it->second.refresh_token_sha256) {
      if (!updated.refresh_token_sha256.empty() && by_token_.count(updated.refresh_token_sha256))
        return StoreStatus::already_exists;
      by_token_.erase(it->second.refresh_token_sha256);
      if (!updated.refresh_token_sha256.empty()) by_token_.emplace(updated.refresh_token_sha256, it->first);
    }
    it->second = std::move(updated);
    return StoreStatus::ok;
  }

  std::vector<User> list() const {
    std::vector<User> out;
    out.reserve(order_.size());
    for (const auto& key : order_) out.push_back(by_email_.at(key));
    return out;
  }

 private:
  std::unordered_map<std::string, User> by_email_;
  std::unordered_map<std::string, std::string> by_token_;  // hash -> lower-cased email
  std::vector<std::string> order_;                          // insertion order
};

}  // namespace detail

/// @brief A UserStore in process memory: for tests and hosts that keep users
/// elsewhere and load them at start.
class MemoryUserStore : public UserStore {
 public:
  std::optional<User> find_by_email(std::string_view email) override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const User* u = index_.by_email(email);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const User* u = index_.by_refresh_token_hash(token_sha256);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  StoreStatus add_user(const User& user) override {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    return index_.add(user);
  }

  StoreStatus update_user(std::string_view email, const std::function<void(User&)>& change) override {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    return index_.update(email, change);
  }

  std::vector<User> list_users() override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return index_.list();
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const User* u = index_.by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled};
  }

 private:
  std::shared_mutex mutex_;
  detail::user_index index_;
};

}  // namespace iwsec
// ----- end iwsec/user_store.hpp -----
// ----- begin iwsec/json_file_user_store.hpp -----
/// @file
/// @brief A UserStore kept in one JSON file that several processes (the
/// server and iwsec-admin) share safely.

#include <cerrno>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/stat.h>

// ----- begin iwsec/detail/file.hpp -----
/// @file
/// @brief POSIX file helpers for durable state: whole-file reads, atomic
/// replacement (write, fsync, rename, fsync the directory), advisory locks.

#include <cerrno>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace iwsec {
namespace detail {

/// @brief Closes a file descriptor on scope exit.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~unique_fd() { reset(); }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

inline unique_fd open_fd(const std::string& path, int flags, mode_t mode = 0600) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return unique_fd(fd);
}

inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// @brief Reads everything from @p fd (from its current offset).
inline bool read_all(int fd, std::string& out) {
  out.clear();
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return true;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

/// @brief The directory part of @p path ("." when there is none).
inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// @brief fsyncs a directory, making a rename or creation inside it durable.
inline bool fsync_directory(const std::string& dir) {
  unique_fd fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
  return fd && ::fsync(fd.get()) == 0;
}

/// @brief Replaces @p path with @p content so that a crash leaves either the
/// old or the new file, never a mix: write a temporary, fsync, rename, fsync
/// the directory.
inline bool write_file_atomically(const std::string& path, std::string_view content, mode_t mode = 0600) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    unique_fd fd = open_fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (!fd) return false;
    if (::fchmod(fd.get(), mode) != 0 || !write_all(fd.get(), content) || ::fsync(fd.get()) != 0) {
      ::unlink(tmp.c_str());
      return false;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return fsync_directory(parent_directory(path));
}

/// @brief An exclusive advisory lock (flock) on a lock file, held for the
/// object's lifetime. Serialises writers across processes.
class file_lock {
 public:
  explicit file_lock(const std::string& lock_path) : fd_(open_fd(lock_path, O_RDWR | O_CREAT, 0600)) {
    if (!fd_) return;
    int rc;
    do {
      rc = ::flock(fd_.get(), LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) fd_.reset();
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

 private:
  unique_fd fd_;  // closing it releases the lock
};

/// @brief Identity of a file version: replacing or editing it changes this.
struct file_identity {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = -1;
  timespec modified{};

  static file_identity of(const struct stat& st) {
    return file_identity{st.st_dev, st.st_ino, st.st_size, st.st_mtim};
  }
  bool operator==(const file_identity& o) const noexcept {
    return device == o.device && inode == o.inode && size == o.size && modified.tv_sec == o.modified.tv_sec &&
           modified.tv_nsec == o.modified.tv_nsec;
  }
  bool operator!=(const file_identity& o) const noexcept { return !(*this == o); }
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/file.hpp -----

namespace iwsec {

/// @brief Thrown when a users file exists but cannot be read or understood.
class store_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief Users in a JSON file (`users.json`).
///
/// Writes take an exclusive lock on `<file>.lock`, re-read the file if
/// another process changed it, and replace it atomically (write, fsync,
/// rename, fsync the directory), so concurrent writers never lose each
/// other's changes. Reads check the file's identity (one stat) and reload it
/// when it changed, so a change made by another process applies to every
/// request that starts after that process's write returned.
class JsonFileUserStore : public UserStore {
 public:
  /// @brief Opens (or, on first write, creates) the users file at @p path.
  /// Throws store_error when the file exists but is unreadable or invalid.
  explicit JsonFileUserStore(std::string path) : path_(std::move(path)), lock_path_(path_ + ".lock") {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    std::string error;
    if (!reload_locked(error)) throw store_error("iwsec: cannot load " + path_ + ": " + error);
  }

  const std::string& path() const noexcept { return path_; }

  std::optional<User> find_by_email(std::string_view email) override {
    return read([&](const detail::user_index& index) {
      const User* u = index.by_email(email);
      return u ? std::optional<User>(*u) : std::nullopt;
    });
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    return read([&](const detail::user_index& index) {
      const User* u = index.by_refresh_token_hash(token_sha256);
      return u ? std::optional<User>(*u) : std::nullopt;
    });
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    return read([&](const detail::user_index& index) -> std::optional<UserStatus> {
      const User* u = index.by_email(email);
      if (!u) return std::nullopt;
      return UserStatus{u->refresh_generation, u->disabled};
    });
  }

  std::vector<User> list_users() override {
    return read([](const detail::user_index& index) { return index.list(); });
  }

  StoreStatus add_user(const User& user) override {
    return write([&](detail::user_index& index) { return index.add(user); });
  }

  StoreStatus update_user(std::string_view email, const std::function<void(User&)>& change) override {
    return write([&](detail::user_index& index) { return index.update(email, change); });
  }

  /// @brief The file's text for @p users (the format this store reads).
  static std::string serialize(const std::vector<User>& users) {
    std::string out = "{\n  \"version\": 1,\n  \"users\": [";
    for (std::size_t i = 0; i < users.size(); ++i) {
      const User& u = users[i];
      out += i ? ",\n    {" : "\n    {";
      out += "\"user_id\": ";
      detail::append_json_string(out, u.user_id);
      out += ", \"email\": ";
      detail::append_json_string(out, u.email);
      out += ", \"password_hash\": ";
      detail::append_json_string(out, u.password_hash);
      out += ", \"refresh_token_sha256\": ";
      detail::append_json_string(out, u.refresh_token_sha256);
      out += ", \"refresh_generation\": " + std::to_string(u.refresh_generation);
      out += u.disabled ? ", \"disabled\": true}" : ", \"disabled\": false}";
    }
    out += users.empty() ? "]\n}\n" : "\n  ]\n}\n";
    return out;
  }

  /// @brief Parses the file's text; nothing (and a reason in @p error) when invalid.
  static std::optional<std::vector<User>> parse(std::string_view text, std::string& error) {
    const auto doc = detail::parse_json_strict(text, 4, true);
    if (!doc || !doc->is<picojson::object>()) {
      error = "not a JSON object (or a duplicate key)";
      return std::nullopt;
    }
    const auto& root = doc->get<picojson::object>();
    const auto* version = detail::json_member(root, "version");
    const auto* users = detail::json_member(root, "users");
    if (!version || detail::json_non_negative_integer(*version) != std::optional<std::int64_t>(1)) {
      error = "\"version\" must be 1";
      return std::nullopt;
    }
    if (!users || !users->is<picojson::array>()) {
      error = "\"users\" must be an array";
      return std::nullopt;
    }
    std::vector<User> out;
    for (const auto& item : users->get<picojson::array>()) {
      if (!item.is<picojson::object>()) {
        error = "each user must be an object";
        return std::nullopt;
      }
      const auto& o = item.get<picojson::object>();
      User u;
      const auto text_field = [&](const char* name, std::string& field) {
        const auto* v = detail::json_member(o, name);
        if (!v || !v->is<std::string>()) return false;
        field = v->get<std::string>();
        return true;
      };
      const auto* generation = detail::json_member(o, "refresh_generation");
      const auto* disabled = detail::json_member(o, "disabled");
      const auto gen = generation ? detail::json_non_negative_integer(*generation) : std::nullopt;
      if (!text_field("user_id", u.user_id) || !text_field("email", u.email) ||
          !text_field("password_hash", u.password_hash) ||
          !text_field("refresh_token_sha256", u.refresh_token_sha256) || !gen || !disabled || !disabled->is<bool>()) {
        error = "user #" + std::to_string(out.size() + 1) + " lacks a field or has one of the wrong type";
        return std::nullopt;
      }
      u.refresh_generation = *gen;
      u.disabled = disabled->get<bool>();
      out.push_back(std::move(u));
    }
    return out;
  }

 private:
  template <typename F>
  auto read(F&& f) -> decltype(f(std::declval<const detail::user_index&>())) {
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      if (!changed_on_disk_locked()) return f(index_);
    }
    std::unique_lock<std::shared_mutex> lock(mutex_);
    if (changed_on_disk_locked()) {
      std::string ignored;  // a broken file on disk: keep serving the last good state
      reload_locked(ignored);
    }
    return f(index_);
  }

  template <typename F>
  StoreStatus write(F&& mutate) {
    std::lock_guard<std::mutex> one_writer(write_mutex_);
    detail::file_lock cross_process(lock_path_);
    if (!cross_process) return StoreStatus::io_error;
    detail::user_index next;
    {
      std::unique_lock<std::shared_mutex> lock(mutex_);
      std::string error;
      if (changed_on_disk_locked() && !reload_locked(error)) return StoreStatus::io_error;
      next = index_;
    }
    const StoreStatus status = mutate(next);
    if (status != StoreStatus::ok) return status;
    if (!detail::write_file_atomically(path_, serialize(next.list()), 0600)) return StoreStatus::io_error;
    std::unique_lock<std::shared_mutex> lock(mutex_);
    index_ = std::move(next);
    std::string error;
    adopt_current_file_locked(error);
    return StoreStatus::ok;
  }

  bool changed_on_disk_locked() const {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) return loaded_.has_value();
    return !loaded_ || detail::file_identity::of(st) != *loaded_;
  }

  // Holds the loaded file open: its inode cannot be reused while we compare
  // against it, so "same identity" really means "same file version".
  bool adopt_current_file_locked(std::string& error, std::string* text = nullptr) {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY);
    if (!fd) {
      if (errno == ENOENT) {
        loaded_fd_.reset();
        loaded_.reset();
        if (text) text->clear();
        return true;
      }
      error = "cannot open";
      return false;
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) {
      error = "cannot stat";
      return false;
    }
    if (text && !detail::read_all(fd.get(), *text)) {
      error = "cannot read";
      return false;
    }
    loaded_ = detail::file_identity::of(st);
    loaded_fd_ = std::move(fd);
    return true;
  }

  bool reload_locked(std::string& error) {
    std::string text;
    auto previous = loaded_;
    // Keep the served version open until a new one is accepted, so that its
    // inode cannot be reused while loaded_ still names it.
    detail::unique_fd previous_fd = std::move(loaded_fd_);
    if (!adopt_current_file_locked(error, &text)) {
      loaded_fd_ = std::move(previous_fd);
      return false;
    }
    detail::user_index next;
    if (loaded_) {
      auto users = parse(text, error);
      if (!users) {
        loaded_ = previous;  // retry on the next request
        loaded_fd_ = std::move(previous_fd);
        return false;
      }
      for (const auto& u : *users) {
        if (next.add(u) != StoreStatus::ok) {
          error = "duplicate or empty email, user id or refresh token in the file";
          loaded_ = previous;
          loaded_fd_ = std::move(previous_fd);
          return false;
        }
      }
    }
    index_ = std::move(next);
    return true;
  }

  std::string path_;
  std::string lock_path_;
  std::shared_mutex mutex_;  // guards index_, loaded_, loaded_fd_
  std::mutex write_mutex_;   // one writer at a time inside this process
  detail::user_index index_;
  std::optional<detail::file_identity> loaded_;
  detail::unique_fd loaded_fd_;
};

}  // namespace iwsec
// ----- end iwsec/json_file_user_store.hpp -----
// ----- begin iwsec/revocation_store.hpp -----
/// @file
/// @brief Revoked ("blacklisted") access tokens: the RevocationStore
/// interface, an in-memory store and a durable journal.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <sys/mman.h>
#include <sys/stat.h>


namespace iwsec {

/// @brief Where revoked token ids live until their tokens expire.
class RevocationStore {
 public:
  virtual ~RevocationStore() = default;

  /// @brief Revokes the token @p jti until @p expires_at. Returns true only
  /// once the revocation is as durable as this store promises.
  virtual bool revoke(std::string_view jti, std::int64_t expires_at) = 0;

  /// @brief Whether @p jti is revoked.
  virtual bool is_revoked(std::string_view jti) = 0;
};

namespace detail {

/// @brief Appends the canonical text of a key made by parse_uuid_key.
inline void append_uuid_key(std::string& out, std::uint64_t hi, std::uint64_t lo) {
  static const char hex[] = "0123456789abcdef";
  char text[36];
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) text[pos++] = '-';
    const std::uint64_t half = i < 16 ? hi : lo;
    text[pos++] = hex[(half >> (60 - 4 * (i % 16))) & 15];
  }
  out.append(text, sizeof text);
}

/// @brief Zero-filled pages straight from the kernel, given back whole when
/// freed: a large table costs memory only while it is in use.
class zeroed_pages {
 public:
  zeroed_pages() = default;
  explicit zeroed_pages(std::size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = p;
#ifdef MADV_HUGEPAGE
    // A large table is probed at random: huge pages spare most TLB misses.
    if (bytes >= (std::size_t{4} << 20)) ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
  }
  zeroed_pages(zeroed_pages&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  zeroed_pages& operator=(zeroed_pages&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  zeroed_pages(const zeroed_pages&) = delete;
  zeroed_pages& operator=(const zeroed_pages&) = delete;
  ~zeroed_pages() { release(); }
  void* data() const noexcept { return data_; }

 private:
  void release() noexcept {
    if (data_) ::munmap(data_, bytes_);
    data_ = nullptr;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

/// @brief Open addressing (linear probing) from a 128-bit UUID to the time
/// its revocation may be forgotten: 24 bytes a slot, at most 3/4 full, no
/// per-entry allocation. Not synchronised; removal happens only by
/// rebuilding (see MemoryRevocationStore), so there are no tombstones.
class uuid_table {
 public:
  uuid_table() = default;
  /// @brief An empty table with room for @p entries before it must grow.
  explicit uuid_table(std::size_t entries) {
    std::size_t capacity = 16;
    while (capacity * 3 / 4 < entries) capacity *= 2;
    pages_ = zeroed_pages(capacity * sizeof(slot));
    slots_ = static_cast<slot*>(pages_.data());
    mask_ = capacity - 1;
    // Hash seeds per table: probe sequences cannot be predicted from outside.
    random_bytes(reinterpret_cast<unsigned char*>(seed_), sizeof seed_);
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }
  /// @brief Whether one more entry fits without passing 3/4 full.
  bool has_room_for_one_more() const noexcept { return size_ + 1 <= capacity() * 3 / 4; }

  bool contains(std::uint64_t hi, std::uint64_t lo) const noexcept {
    if (!slots_) return false;
    for (std::size_t i = index_of(hi, lo);; i = (i + 1) & mask_) {
      const slot& s = slots_[i];
      if (s.expires_at == 0) return false;
      if (s.hi == hi && s.lo == lo) return true;
    }
  }

  /// @brief Adds the key, or raises its expiry; true when it was new. The
  /// caller made sure there is room.
  bool insert(std::uint64_t hi, std::uint64_t lo, std::int64_t expires_at) noexcept {
    // 0 marks an empty slot; an expiry at or before the epoch is just as expired at 1.
    expires_at = std::max<std::int64_t>(expires_at, 1);
    for (std::size_t i = index_of(hi, lo);; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (s.expires_at == 0) {
        s.hi = hi;
        s.lo = lo;
        s.expires_at = expires_at;
        ++size_;
        return true;
      }
      if (s.hi == hi && s.lo == lo) {
        s.expires_at = std::max(s.expires_at, expires_at);
        return false;
      }
    }
  }

  template <typename F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < capacity(); ++i)
      if (slots_[i].expires_at != 0) f(slots_[i].hi, slots_[i].lo, slots_[i].expires_at);
  }

 private:
  struct slot {
    std::uint64_t hi, lo;
    std::int64_t expires_at;  // 0: empty
  };

  std::size_t index_of(std::uint64_t hi, std::uint64_t lo) const noexcept {
    std::uint64_t h = (hi ^ seed_[0]) * 0x9E3779B97F4A7C15ULL;
    h ^= (lo ^ seed_[1] ^ (h >> 29)) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 32;
    return static_cast<std::size_t>(h) & mask_;
  }

  zeroed_pages pages_;
  slot* slots_ = nullptr;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::uint64_t seed_[2] = {0, 0};
};

}  // namespace detail

/// @brief Revocations in process memory; entries are dropped once their
/// token has expired (an expired token fails verification on its own).
///
/// A jti in canonical UUID form (what Signer issues) is kept as 16 bytes in
/// an open-addressing table, so a million revocations cost about 48 MB and a
/// lookup one or two cache misses; any other jti text is kept in a map.
/// Lookups only share a reader lock with each other. Writers are serialised
/// among themselves; growing the table or sweeping expired entries builds the
/// new table beside the live one, so readers wait only for the swap.
class MemoryRevocationStore : public RevocationStore {
 public:
  explicit MemoryRevocationStore(Clock clock = system_now) : clock_(std::move(clock)) {}

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    std::lock_guard<std::mutex> writing(write_mutex_);
    insert_writing(jti, expires_at);
    return true;
  }

  bool is_revoked(std::string_view jti) override {
    std::uint64_t hi, lo;
    const bool uuid = detail::parse_uuid_key(jti, hi, lo);
    std::shared_lock<std::shared_mutex> lock(mutex_);
    if (uuid) return table_.contains(hi, lo);
    return !others_.empty() && others_.find(std::string(jti)) != others_.end();
  }

  /// @brief How many revocations are held (expired ones may linger until the next sweep).
  std::size_t size() {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return table_.size() + others_.size();
  }

 protected:
  /// @brief Adds or extends a revocation; true when @p jti was not held yet.
  /// Sweeps expired entries when the store has doubled since the last sweep
  /// (unless @p may_sweep is false). Caller holds write_mutex_.
  bool insert_writing(std::string_view jti, std::int64_t expires_at, bool may_sweep = true) {
    std::uint64_t hi, lo;
    bool added;
    if (detail::parse_uuid_key(jti, hi, lo)) {
      if (!table_.has_room_for_one_more()) rebuild_writing(1);
      std::unique_lock<std::shared_mutex> lock(mutex_);
      added = table_.insert(hi, lo, expires_at);
    } else {
      std::unique_lock<std::shared_mutex> lock(mutex_);
      auto inserted = others_.emplace(std::string(jti), expires_at);
      if (!inserted.second) inserted.first->second = std::max(inserted.first->second, expires_at);
      added = inserted.second;
    }
    if (may_sweep && table_.size() + others_.size() >= next_sweep_) sweep_writing();
    return added;
  }

  /// @brief Drops expired entries now (rebuilding only when there are
  /// some). Caller holds write_mutex_.
  void sweep_writing() {
    const std::int64_t now = clock_();
    bool expired = false;
    table_.for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { expired |= exp <= now; });
    for (const auto& entry : others_) expired |= entry.second <= now;
    if (expired) rebuild_writing(0);
    schedule_sweep_writing();
  }

  /// @brief Schedules the next sweep for when the store has doubled (after a
  /// bulk load made with @p may_sweep false). Caller holds write_mutex_.
  void schedule_sweep_writing() { next_sweep_ = std::max<std::size_t>(1024, (table_.size() + others_.size()) * 2); }

  /// @brief Makes room for @p entries without growing. Caller holds write_mutex_.
  void reserve_writing(std::size_t entries) {
    if (entries > table_.capacity() * 3 / 4) rebuild_writing(entries - std::min(entries, table_.size()));
  }

  /// @brief Calls @p f(jti_text_appender, expires_at) for every entry; @p f
  /// gets a callable that appends the jti to a string. Caller holds write_mutex_.
  template <typename F>
  void for_each_writing(F&& f) const {
    table_.for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      f([hi, lo](std::string& out) { detail::append_uuid_key(out, hi, lo); }, exp);
    });
    for (const auto& entry : others_) f([&entry](std::string& out) { out += entry.first; }, entry.second);
  }

  Clock clock_;
  std::mutex write_mutex_;  // one writer at a time: guards changes to table_, others_, next_sweep_

 private:
  // Builds a table of the live entries with room for @p extra more beside the
  // current one (readers keep using it), then swaps it in.
  void rebuild_writing(std::size_t extra) {
    const std::int64_t now = clock_();
    std::size_t live = 0;
    table_.for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { live += exp > now; });
    detail::uuid_table next((live + extra) * 3 / 2 + 1);  // at most about half full
    table_.for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      if (exp > now) next.insert(hi, lo, exp);
    });
    std::unique_lock<std::shared_mutex> lock(mutex_);
    std::swap(table_, next);
    for (auto it = others_.begin(); it != others_.end();) it = it->second <= now ? others_.erase(it) : ++it;
    lock.unlock();
    // The old table is unmapped here, outside the lock.
  }

  std::shared_mutex mutex_;  // readers share it; writers hold it only to change or swap
  detail::uuid_table table_;
  std::unordered_map<std::string, std::int64_t> others_;  // jtis that are not canonical UUIDs
  std::size_t next_sweep_ = 1024;
};

/// @brief Revocations in memory, backed by an append-only journal file
/// (`<jti> <exp>` per line). revoke() returns only after the line is written
/// and fsynced; the constructor replays the journal, tolerating a torn last
/// line, drops expired entries and, when the journal held anything else
/// than distinct live entries, rewrites it compactly. Lookups never wait for
/// the disk.
class JournalRevocationStore : public MemoryRevocationStore {
 public:
  /// @brief Opens or creates the journal at @p path; throws std::runtime_error
  /// when it cannot be read or written.
  explicit JournalRevocationStore(std::string path, Clock clock = system_now)
      : MemoryRevocationStore(std::move(clock)), path_(std::move(path)) {
    std::lock_guard<std::mutex> appending(append_mutex_);
    std::lock_guard<std::mutex> writing(write_mutex_);
    bool clean = false;
    off_t bytes = 0;
    std::size_t lines = 0;
    {
      detail::unique_fd in = detail::open_fd(path_, O_RDONLY);
      // Only a missing journal starts empty: one that exists but cannot be
      // read must not be replaced by an empty one.
      if (!in && errno != ENOENT) throw std::runtime_error("iwsec: cannot read " + path_);
      if (in && !replay(in.get(), clean, bytes, lines)) throw std::runtime_error("iwsec: cannot read " + path_);
    }
    schedule_sweep_writing();
    if (clean) {
      // Nothing to drop: append to the journal as it is (a restart then costs
      // one read, not a rewrite of every entry).
      journal_ = detail::open_fd(path_, O_WRONLY | O_APPEND);
      struct stat st;
      if (journal_ && ::fchmod(journal_.get(), 0600) == 0 && ::fstat(journal_.get(), &st) == 0 &&
          st.st_size == bytes) {
        journal_bytes_ = bytes;
        journal_lines_ = lines;
        return;
      }
      journal_.reset();
    }
    if (!compact_appending_locked()) throw std::runtime_error("iwsec: cannot write " + path_);
  }

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    if (jti.empty() || jti.size() > 256 || jti.find_first_of(" \t\r\n") != std::string_view::npos) return false;
    std::string line(jti);
    line += ' ';
    line += std::to_string(expires_at);
    line += '\n';
    // Writers queue here; readers (is_revoked) never wait for the disk.
    std::lock_guard<std::mutex> appending(append_mutex_);
    if (!journal_ && !compact_appending_locked_writing()) return false;
    if (!append_durably(line)) return false;
    bool compact;
    {
      std::lock_guard<std::mutex> writing(write_mutex_);
      insert_writing(jti, expires_at);
      compact = journal_lines_ > 4096 && journal_lines_ > 2 * size();
    }
    if (compact) compact_appending_locked_writing();  // on failure the current journal stays in use
    return true;
  }

  const std::string& path() const noexcept { return path_; }

 private:
  // Reads the journal in blocks and applies every complete, well-formed, live
  // line. @p clean: the file holds only such lines, each jti once, and ends
  // with a newline (so it can be appended to as it is).
  bool replay(int fd, bool& clean, off_t& bytes, std::size_t& lines) {
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0)
      reserve_writing(static_cast<std::size_t>(st.st_size) / 48);  // the shortest live UUID line
    const std::int64_t now = clock_();
    clean = true;
    bytes = 0;
    lines = 0;
    std::string pending;  // the start of a line cut by the block boundary
    std::string block(1 << 20, '\0');
    for (;;) {
      const ssize_t n = ::read(fd, &block[0], block.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (n == 0) break;
      bytes += n;
      std::string_view text(block.data(), static_cast<std::size_t>(n));
      if (!pending.empty()) {
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
          pending.append(text.data(), text.size());
          continue;
        }
        pending.append(text.data(), nl);
        clean &= apply_line(pending, now);
        ++lines;
        pending.clear();
        text.remove_prefix(nl + 1);
      }
      for (;;) {
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) break;
        clean &= apply_line(text.substr(0, nl), now);
        ++lines;
        text.remove_prefix(nl + 1);
      }
      pending.assign(text.data(), text.size());
    }
    if (!pending.empty()) clean = false;  // a torn last line: never acknowledged
    return true;
  }

  // One `<jti> <exp>` line; true when it was well formed, live and new.
  bool apply_line(std::string_view line, std::int64_t now) {
    const auto space = line.find(' ');
    if (space == std::string_view::npos || space == 0) return false;
    const std::string_view exp_text = line.substr(space + 1);
    if (exp_text.empty() || exp_text.size() > 18) return false;
    std::int64_t exp = 0;
    for (char c : exp_text) {
      if (c < '0' || c > '9') return false;  // stop here: a non-digit could push exp past int64 (UB)
      exp = exp * 10 + (c - '0');
    }
    if (exp <= now) return false;
    return insert_writing(line.substr(0, space), exp, false);
  }

  // Appends one record and fsyncs it. On failure the journal is cut back to
  // its last acknowledged length, so a partial record can never merge with
  // (and spoil) the next one; if even that fails, appending stops until a
  // compaction rewrites the journal.
  bool append_durably(const std::string& line) {
    if (detail::write_all(journal_.get(), line) && ::fdatasync(journal_.get()) == 0) {
      journal_bytes_ += static_cast<off_t>(line.size());
      ++journal_lines_;
      return true;
    }
    if (::ftruncate(journal_.get(), journal_bytes_) != 0 || ::fdatasync(journal_.get()) != 0) journal_.reset();
    return false;
  }

  bool compact_appending_locked_writing() {
    std::lock_guard<std::mutex> writing(write_mutex_);
    return compact_appending_locked();
  }

  // Rewrites the journal with only live entries (written in blocks to a
  // temporary file, fsynced, renamed over the journal, directory fsynced) and
  // appends to the new file from then on. Caller holds append_mutex_ and
  // write_mutex_ (lookups go on meanwhile).
  bool compact_appending_locked() {
    const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
    std::size_t lines = 0;
    off_t bytes = 0;
    bool written = false;
    {
      detail::unique_fd out = detail::open_fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (out && ::fchmod(out.get(), 0600) == 0) {
        const std::int64_t now = clock_();
        std::string block;
        block.reserve((1 << 20) + 512);
        bool ok = true;
        for_each_writing([&](const auto& append_jti, std::int64_t exp) {
          if (!ok || exp <= now) return;
          append_jti(block);
          block += ' ';
          block += std::to_string(exp);
          block += '\n';
          ++lines;
          if (block.size() >= (1 << 20)) {
            ok = detail::write_all(out.get(), block);
            bytes += static_cast<off_t>(block.size());
            block.clear();
          }
        });
        ok = ok && detail::write_all(out.get(), block);
        bytes += static_cast<off_t>(block.size());
        written = ok && ::fsync(out.get()) == 0;
      }
    }
    if (!written || ::rename(tmp.c_str(), path_.c_str()) != 0) {
      ::unlink(tmp.c_str());
      return false;  // the journal in use, if any, is untouched
    }
    if (!detail::fsync_directory(detail::parent_directory(path_))) {
      // The rename may not be durable: keep appending only if the path still
      // names the file we hold.
      struct stat held, named;
      if (journal_ && (::fstat(journal_.get(), &held) != 0 || ::stat(path_.c_str(), &named) != 0 ||
                       held.st_ino != named.st_ino || held.st_dev != named.st_dev))
        journal_.reset();
      return false;
    }
    journal_ = detail::open_fd(path_, O_WRONLY | O_APPEND, 0600);
    if (!journal_) return false;
    journal_bytes_ = bytes;
    journal_lines_ = lines;
    return true;
  }

  std::string path_;
  std::mutex append_mutex_;  // guards journal_, journal_bytes_, journal_lines_; taken before write_mutex_
  detail::unique_fd journal_;
  off_t journal_bytes_ = 0;
  std::size_t journal_lines_ = 0;
};

}  // namespace iwsec
// ----- end iwsec/revocation_store.hpp -----
// ----- begin iwsec/lockout.hpp -----
/// @file
/// @brief Brute-force defence, modelled on Keycloak's: failed credential
/// checks counted per account and per client, temporary locks answered 429.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <arpa/inet.h>

#include <httplib.h>


namespace iwsec {

/// @brief The client-throttle key of a peer address: an IPv4 address as it
/// is (an IPv4-mapped IPv6 address as its IPv4 form); an IPv6 address as its
/// /64 prefix, since one subscriber usually holds a whole /64 and could
/// otherwise take a fresh address for every 99 failures; anything else (a
/// text that is not an address) unchanged.
inline std::string client_address_key(std::string_view address) {
  if (address.find(':') == std::string_view::npos || address.size() >= INET6_ADDRSTRLEN) return std::string(address);
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, address.data(), address.size());
  unsigned char bytes[16];
  if (::inet_pton(AF_INET6, text, bytes) != 1) return std::string(address);
  static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, mapped_prefix, sizeof mapped_prefix) == 0) {
    char v4[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, bytes + 12, v4, sizeof v4)) return v4;
  }
  static const char hex[] = "0123456789abcdef";
  std::string key = "ipv6/64:";
  for (int i = 0; i < 8; ++i) {
    key += hex[bytes[i] >> 4];
    key += hex[bytes[i] & 15];
  }
  return key;
}

/// @brief When failed logins lock an account or a client out. Keycloak's
/// defaults: after `account_failures` (30) failures an account is locked for
/// `account_wait_increment` (60 s) × ⌊failures / 30⌋, at most
/// `account_max_wait` (900 s); `account_failure_reset` (12 h) without a
/// failure, or a successful login, resets the count. A client with
/// `client_failures` (100) failures within `client_window` (15 min) is
/// refused until that window has passed.
struct LockoutPolicy {
  /// @brief Off: nothing is counted and nothing is ever refused with 429.
  bool enabled = true;

  /// @brief Failures of one account (its email, lower-cased) that lock it.
  std::uint32_t account_failures = 30;
  /// @brief Lock length per multiple of account_failures.
  std::chrono::seconds account_wait_increment{60};
  /// @brief Longest lock.
  std::chrono::seconds account_max_wait{900};
  /// @brief Quiet time after which an account's failures are forgotten.
  std::chrono::seconds account_failure_reset{12 * 3600};

  /// @brief Failures from one client, within client_window, that block it.
  std::uint32_t client_failures = 100;
  /// @brief The client window; it opens at the client's first failure.
  std::chrono::seconds client_window{15 * 60};

  /// @brief Most accounts tracked at once (each entry about 100 bytes).
  std::size_t max_tracked_accounts = 100000;
  /// @brief Most clients tracked at once (each entry about 100 bytes).
  std::size_t max_tracked_clients = 100000;

  /// @brief Who the client is. Empty: the peer address (`req.remote_addr`).
  /// Behind a reverse proxy every request comes from the proxy's address:
  /// return the address the proxy vouches for (e.g. the last hop it
  /// appended to `X-Forwarded-For`), never a header a client can set
  /// freely. An empty string exempts the request from the client throttle.
  std::function<std::string(const httplib::Request&)> client_key;
};

/// @brief The lockout seam: where failed credential checks are counted and
/// locks kept. LockoutTracker counts in process memory (the default);
/// a cluster backend (iwsec/postgres/backend.hpp) counts in its database, so
/// that every replica sees the same counts. Set Options::lockout_state to
/// replace the tracker the routes would otherwise make from Options::lockout.
/// Every method may be called from many threads at once.
class Lockout {
 public:
  /// @brief 128 bits of SHA-256("a" + lower-cased email) or ("c" + client).
  struct Key {
    std::uint64_t hi = 0, lo = 0;
    bool operator==(const Key& o) const noexcept { return hi == o.hi && lo == o.lo; }
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept { return static_cast<std::size_t>(k.lo); }
  };

  virtual ~Lockout() = default;

  /// @brief The account key of an email: lower-cased (ASCII), as the user
  /// stores match it.
  static std::string normalise_account(std::string_view email) { return detail::ascii_lower(email); }
  static Key account_key(std::string_view email) { return make_key('a', normalise_account(email)); }
  static Key client_key(std::string_view client) { return make_key('c', client); }

  /// @brief One credential check in progress; see begin().
  class Attempt {
   public:
    Attempt(Attempt&& other) noexcept { *this = std::move(other); }
    Attempt& operator=(Attempt&& other) noexcept {
      if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        account_ = other.account_;
        client_ = other.client_;
        wait_ = other.wait_;
      }
      return *this;
    }
    ~Attempt() { release(); }

    /// @brief True when the check may run; false when it must be refused.
    explicit operator bool() const noexcept { return wait_ == 0; }
    /// @brief Seconds to wait (>= 1) when refused; 0 when admitted.
    std::int64_t wait() const noexcept { return wait_; }

    /// @brief The credentials were wrong: counts a failure for the account
    /// and the client, locking or blocking them at their thresholds.
    void failed(std::int64_t now) {
      if (owner_) std::exchange(owner_, nullptr)->finish(account_, client_, now, false);
    }
    /// @brief The credentials were right: the account's count and lock are
    /// reset; the client's failures stay (a success does not wipe them, or
    /// one valid account would let a client guess at the others freely).
    void succeeded(std::int64_t now) {
      if (owner_) std::exchange(owner_, nullptr)->finish(account_, client_, now, true);
    }

   private:
    friend class Lockout;
    Attempt(Lockout* owner, std::optional<Key> account, std::optional<Key> client, std::int64_t wait)
        : owner_(owner), account_(account), client_(client), wait_(wait) {}
    void release() noexcept {
      if (owner_) std::exchange(owner_, nullptr)->abandon(account_, client_);
    }
    Lockout* owner_ = nullptr;  // set while admitted and unfinished
    std::optional<Key> account_, client_;
    std::int64_t wait_ = 0;
  };

  /// @brief The policy counts are judged by.
  virtual const LockoutPolicy& policy() const = 0;

  /// @brief Starts a credential check for @p account (an email; nothing for
  /// a refresh token) from @p client (empty: not tracked); see
  /// LockoutTracker::begin. May throw StateUnavailable (the routes answer 503).
  virtual Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) = 0;
  /// @brief Seconds @p account must still wait (0: none), without counting.
  virtual std::int64_t account_wait(std::string_view account, std::int64_t now) = 0;
  /// @brief Seconds @p client must still wait (0: none), without counting.
  virtual std::int64_t client_wait(std::string_view client, std::int64_t now) = 0;
  /// @brief Forgets @p account's failures and lifts its lock.
  virtual void unlock_account(std::string_view account) = 0;
  /// @brief Forgets every failure of @p client.
  virtual void unlock_client(std::string_view client) = 0;

 protected:
  static Key make_key(char kind, std::string_view text) {
    std::string input(1, kind);
    input += text;
    const auto digest = detail::sha256(input);
    Key k;
    std::memcpy(&k.hi, digest.data(), 8);
    std::memcpy(&k.lo, digest.data() + 8, 8);
    return k;
  }
  /// @brief An admitted attempt that reports to finish() / abandon().
  Attempt admitted(std::optional<Key> account, std::optional<Key> client) { return Attempt(this, account, client, 0); }
  /// @brief A refused attempt (@p wait >= 1 seconds) or, with 0, one admitted that reports nothing.
  static Attempt refused(std::int64_t wait) { return Attempt(nullptr, std::nullopt, std::nullopt, wait); }
  /// @brief An admitted attempt ended with a verdict.
  virtual void finish(const std::optional<Key>& account, const std::optional<Key>& client, std::int64_t now,
                      bool success) = 0;
  /// @brief An admitted attempt dropped unfinished (an exception): neither failure nor success.
  virtual void abandon(const std::optional<Key>& account, const std::optional<Key>& client) noexcept = 0;
};

/// @brief Counts failures and answers "wait N seconds" for locked accounts
/// and blocked clients. Thread-safe. Keys are kept as 128-bit SHA-256
/// prefixes, so no email is held in memory and a long one costs no more.
///
/// A credential check is bracketed by begin() and the Attempt's failed() or
/// succeeded(). Attempts still running are counted too: no more attempts
/// for an account (or client) may run at once than failures are left before
/// its threshold (at least one; 30 for a fresh account, 100 for a fresh
/// client under the defaults), so parallel guesses cannot slip
/// past the threshold while their password hashes run, not even in the
/// first burst, nor past a lock that just ended. The refused extra attempts
/// get a 429 with `Retry-After: 1` and are not counted.
///
/// Memory stays bounded: each table holds at most its `max_tracked_*`
/// entries. A full table first drops entries that no longer matter (quiet
/// for account_failure_reset, or past their client window); if that frees
/// less than an eighth of it, the entries that protect least go next:
/// unlocked ones before locked ones, fewest failures first, oldest first.
/// So spraying random emails or addresses evicts other sprayed one-failure
/// entries long before it could release a lock or a real count.
class LockoutTracker : public Lockout {
  using key = Key;
  using key_hash = KeyHash;

 public:
  explicit LockoutTracker(LockoutPolicy policy = LockoutPolicy()) : policy_(std::move(policy)) {}
  LockoutTracker(const LockoutTracker&) = delete;
  LockoutTracker& operator=(const LockoutTracker&) = delete;

  const LockoutPolicy& policy() const override { return policy_; }

  /// @brief Starts a credential check for @p account (an email; nothing for
  /// a refresh token, which names no account) from @p client (empty: not
  /// tracked). Refused (the Attempt is false, wait() >= 1 seconds) while the
  /// account is locked, the client blocked, or too many of their attempts
  /// run at once; nothing is counted then. Always admitted when the policy
  /// is disabled. An admitted Attempt dropped unfinished (an exception)
  /// counts as neither failure nor success.
  Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) override {
    if (!policy_.enabled) return refused(0);
    std::optional<key> account_key, client_key;
    if (account) account_key = make_key('a', normalise_account(*account));
    if (!client.empty()) client_key = make_key('c', client);
    std::lock_guard<std::mutex> account_lock(accounts_mutex_);
    std::lock_guard<std::mutex> client_lock(clients_mutex_);
    std::int64_t wait = 0;
    if (account_key) wait = std::max(wait, account_wait(*account_key, now, true));
    if (client_key) wait = std::max(wait, client_wait(*client_key, now, true));
    if (wait > 0) return refused(wait);
    if (account_key) ++account_entry_for(*account_key, now).pending;
    if (client_key) ++client_entry_for(*client_key, now).pending;
    return admitted(account_key, client_key);
  }

  /// @brief Seconds @p account must still wait (0: none), without counting.
  std::int64_t account_wait(std::string_view account, std::int64_t now) override {
    if (!policy_.enabled) return 0;
    const key k = make_key('a', normalise_account(account));
    std::lock_guard<std::mutex> lock(accounts_mutex_);
    return account_wait(k, now, false);
  }

  /// @brief Seconds @p client must still wait (0: none), without counting.
  std::int64_t client_wait(std::string_view client, std::int64_t now) override {
    if (!policy_.enabled || client.empty()) return 0;
    const key k = make_key('c', client);
    std::lock_guard<std::mutex> lock(clients_mutex_);
    return client_wait(k, now, false);
  }

  /// @brief Forgets @p account's failures and lifts its lock (an
  /// administrator's "unlock").
  void unlock_account(std::string_view account) override {
    const key k = make_key('a', normalise_account(account));
    std::lock_guard<std::mutex> lock(accounts_mutex_);
    accounts_.erase(k);
  }

  /// @brief Forgets every failure of @p client.
  void unlock_client(std::string_view client) override {
    const key k = make_key('c', client);
    std::lock_guard<std::mutex> lock(clients_mutex_);
    clients_.erase(k);
  }

  /// @brief Entries held (for tests and monitoring).
  std::size_t tracked_accounts() const {
    std::lock_guard<std::mutex> lock(accounts_mutex_);
    return accounts_.size();
  }
  std::size_t tracked_clients() const {
    std::lock_guard<std::mutex> lock(clients_mutex_);
    return clients_.size();
  }

 private:
  struct account_entry {
    std::uint32_t failures = 0;
    std::uint32_t pending = 0;  // admitted attempts still running
    std::int64_t last_failure = 0;
    std::int64_t locked_until = 0;
  };
  struct client_entry {
    std::uint32_t failures = 0;
    std::uint32_t pending = 0;
    std::int64_t window_start = 0;
  };

  std::int64_t reset_after() const { return static_cast<std::int64_t>(policy_.account_failure_reset.count()); }
  std::int64_t window_end(const client_entry& e) const {
    return e.window_start + static_cast<std::int64_t>(policy_.client_window.count());
  }
  bool account_expired(const account_entry& e, std::int64_t now) const {
    return e.failures == 0 || (now - e.last_failure >= reset_after() && now >= e.locked_until);
  }
  bool client_expired(const client_entry& e, std::int64_t now) const { return e.failures == 0 || now >= window_end(e); }

  // Attempts that may run at once: the failures left before the threshold
  // (at least one). Every running attempt may be a failure, so no burst can
  // take the count past the threshold, not even the first one.
  static bool too_many_running(std::uint32_t failures, std::uint32_t pending, std::uint32_t threshold) {
    const std::uint32_t allowed = failures >= threshold ? 1 : threshold - failures;
    return pending >= allowed;
  }

  std::int64_t account_wait(const key& k, std::int64_t now, bool starting) const {
    auto it = accounts_.find(k);
    if (it == accounts_.end()) return 0;
    const account_entry& e = it->second;
    if (e.locked_until > now) return e.locked_until - now;
    // Failures past their 12 quiet hours no longer count (account_failed
    // starts again from zero), but the attempts running still do.
    const std::uint32_t failures = account_expired(e, now) ? 0 : e.failures;
    if (starting && too_many_running(failures, e.pending, policy_.account_failures)) return 1;
    return 0;
  }

  std::int64_t client_wait(const key& k, std::int64_t now, bool starting) const {
    auto it = clients_.find(k);
    if (it == clients_.end()) return 0;
    const client_entry& e = it->second;
    const bool expired = client_expired(e, now);
    if (!expired && e.failures >= policy_.client_failures) return window_end(e) - now;
    if (starting && too_many_running(expired ? 0 : e.failures, e.pending, policy_.client_failures)) return 1;
    return 0;
  }

  account_entry& account_entry_for(const key& k, std::int64_t now) {
    auto it = accounts_.find(k);
    if (it == accounts_.end()) {
      if (accounts_.size() >= policy_.max_tracked_accounts) evict_accounts(now);
      it = accounts_.emplace(k, account_entry{}).first;
    }
    return it->second;
  }

  client_entry& client_entry_for(const key& k, std::int64_t now) {
    auto it = clients_.find(k);
    if (it == clients_.end()) {
      if (clients_.size() >= policy_.max_tracked_clients) evict_clients(now);
      it = clients_.emplace(k, client_entry{0, 0, now}).first;
    }
    return it->second;
  }

  void finish(const std::optional<key>& account, const std::optional<key>& client, std::int64_t now,
              bool success) override {
    std::lock_guard<std::mutex> account_lock(accounts_mutex_);
    std::lock_guard<std::mutex> client_lock(clients_mutex_);
    if (account) {
      account_entry& e = account_entry_for(*account, now);  // evicted meanwhile: counted afresh
      if (e.pending > 0) --e.pending;
      if (success) {
        e.failures = 0;
        e.locked_until = 0;
      } else {
        account_failed(e, now);
      }
      if (e.failures == 0 && e.pending == 0) accounts_.erase(*account);
    }
    if (client) {
      client_entry& e = client_entry_for(*client, now);
      if (e.pending > 0) --e.pending;
      if (!success) client_failed(e, now);
      if (e.failures == 0 && e.pending == 0) clients_.erase(*client);
    }
  }

  void abandon(const std::optional<key>& account, const std::optional<key>& client) noexcept override {
    std::lock_guard<std::mutex> account_lock(accounts_mutex_);
    std::lock_guard<std::mutex> client_lock(clients_mutex_);
    if (account) {
      auto it = accounts_.find(*account);
      if (it != accounts_.end() && it->second.pending > 0) --it->second.pending;
    }
    if (client) {
      auto it = clients_.find(*client);
      if (it != clients_.end() && it->second.pending > 0) --it->second.pending;
    }
  }

  void account_failed(account_entry& e, std::int64_t now) {
    if (e.failures > 0 && account_expired(e, now)) {  // 12 quiet hours: start again
      e.failures = 0;
      e.locked_until = 0;
    }
    if (e.failures < UINT32_MAX) ++e.failures;
    e.last_failure = now;
    if (e.failures >= policy_.account_failures) {
      const std::int64_t multiples = e.failures / policy_.account_failures;
      const std::int64_t increment = static_cast<std::int64_t>(policy_.account_wait_increment.count());
      const std::int64_t max_wait = static_cast<std::int64_t>(policy_.account_max_wait.count());
      const std::int64_t wait = std::min(max_wait, multiples * increment);  // no overflow: < 2^32 * 2^25
      e.locked_until = std::max(e.locked_until, now + wait);
    }
  }

  void client_failed(client_entry& e, std::int64_t now) {
    if (e.failures == 0 || now >= window_end(e)) {  // the window opens at the first failure
      e.failures = 0;
      e.window_start = now;
    }
    if (e.failures < UINT32_MAX) ++e.failures;
  }

  std::size_t eviction_target(std::size_t cap) const { return cap - std::max<std::size_t>(1, cap / 8); }

  void evict_accounts(std::int64_t now) {
    for (auto it = accounts_.begin(); it != accounts_.end();)
      it = account_expired(it->second, now) && it->second.pending == 0 ? accounts_.erase(it) : std::next(it);
    const std::size_t target = eviction_target(policy_.max_tracked_accounts);
    if (accounts_.size() <= target) return;
    // Least protective first: unlocked, fewest failures, longest quiet.
    using rank = std::pair<std::pair<std::int64_t, std::int64_t>, std::int64_t>;
    std::vector<std::pair<rank, key>> ranked;
    ranked.reserve(accounts_.size());
    for (const auto& [k, e] : accounts_) {
      if (e.pending > 0) continue;  // attempts in flight keep their entry (and its cap)
      const std::int64_t locked = e.locked_until > now ? e.locked_until : 0;  // sooner unlock goes first
      ranked.push_back({{{locked, e.failures}, e.last_failure}, k});
    }
    const std::size_t drop = std::min(accounts_.size() - target, ranked.size());
    if (drop == 0) return;  // every entry has attempts in flight: the table overshoots for now
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(drop - 1), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < drop; ++i) accounts_.erase(ranked[i].second);
  }

  void evict_clients(std::int64_t now) {
    for (auto it = clients_.begin(); it != clients_.end();)
      it = client_expired(it->second, now) && it->second.pending == 0 ? clients_.erase(it) : std::next(it);
    const std::size_t target = eviction_target(policy_.max_tracked_clients);
    if (clients_.size() <= target) return;
    // Least protective first: not blocked, fewest failures, oldest window.
    using rank = std::pair<std::pair<std::int64_t, std::int64_t>, std::int64_t>;
    std::vector<std::pair<rank, key>> ranked;
    ranked.reserve(clients_.size());
    for (const auto& [k, e] : clients_) {
      if (e.pending > 0) continue;
      const std::int64_t blocked = e.failures >= policy_.client_failures ? window_end(e) : 0;
      ranked.push_back({{{blocked, e.failures}, e.window_start}, k});
    }
    const std::size_t drop = std::min(clients_.size() - target, ranked.size());
    if (drop == 0) return;  // every entry has attempts in flight: the table overshoots for now
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(drop - 1), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < drop; ++i) clients_.erase(ranked[i].second);
  }

  LockoutPolicy policy_;
  mutable std::mutex accounts_mutex_;  // always taken before clients_mutex_
  mutable std::mutex clients_mutex_;
  std::unordered_map<key, account_entry, key_hash> accounts_;
  std::unordered_map<key, client_entry, key_hash> clients_;
};

namespace detail {

/// @brief Refuses a policy that would silently not protect (or never let
/// anyone in); used by validate_options.
inline const char* lockout_policy_error(const LockoutPolicy& p) {
  constexpr std::int64_t max_seconds = 366LL * 24 * 3600;
  if (!p.enabled) return nullptr;
  if (p.account_failures < 1 || p.account_failures > 1000000) return "account_failures must be 1 to 1000000";
  if (p.account_wait_increment.count() < 1 || p.account_wait_increment.count() > max_seconds)
    return "account_wait_increment must be 1 s to 366 days";
  if (p.account_max_wait < p.account_wait_increment || p.account_max_wait.count() > max_seconds)
    return "account_max_wait must be account_wait_increment to 366 days";
  if (p.account_failure_reset < p.account_max_wait || p.account_failure_reset.count() > max_seconds)
    return "account_failure_reset must be account_max_wait to 366 days";
  if (p.client_failures < 1 || p.client_failures > 100000000) return "client_failures must be 1 to 100000000";
  if (p.client_window.count() < 1 || p.client_window.count() > max_seconds) return "client_window must be 1 s to 366 days";
  if (p.max_tracked_accounts < 16 || p.max_tracked_accounts > 100000000)
    return "max_tracked_accounts must be 16 to 100000000";
  if (p.max_tracked_clients < 16 || p.max_tracked_clients > 100000000)
    return "max_tracked_clients must be 16 to 100000000";
  return nullptr;
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/lockout.hpp -----
// ----- begin iwsec/options.hpp -----
/// @file
/// @brief Options for mount_security_routes; every field has a sane default.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>


namespace iwsec {

/// @brief How the security routes behave. A default-constructed Options is
/// what `mount_security_routes(server, users, signer)` uses.
struct Options {
  /// @brief Lifetime of each access token (`exp` = `iat` + this).
  std::chrono::seconds token_lifetime{900};

  /// @brief Clock skew tolerated when checking `exp`, `nbf` and `iat`.
  std::chrono::seconds leeway{0};

  /// @brief Source of "now"; tests inject their own.
  Clock clock = system_now;

  /// @brief Where revoked access tokens are kept. Null: an in-memory store
  /// owned by the routes (revocations then do not survive a restart; pass a
  /// JournalRevocationStore for that).
  std::shared_ptr<RevocationStore> revocations;

  /// @brief Base of the `help` link in error envelopes: `<base>/<iw_code>`.
  std::string help_url_base = "https://docs.infoworks.io/api/errors";

  /// @brief The realm named in `WWW-Authenticate` challenges.
  std::string realm = "iwsec";

  /// @brief PBKDF2 rounds spent on a login for an unknown email, so it costs
  /// what a wrong password costs. Match the rounds your users' hashes use.
  std::uint32_t password_rounds = default_pbkdf2_rounds;

  /// @brief Longest `Authorization` header value accepted; longer is a 400.
  std::size_t max_authorization_bytes = 4096;

  /// @brief Brute-force defence (on by default, Keycloak's figures): failed
  /// logins and refresh-token exchanges counted per account and per client,
  /// answered 429 with `Retry-After` while locked. See LockoutPolicy.
  LockoutPolicy lockout;

  /// @brief Where the lockout counts live. Null: a LockoutTracker made from
  /// `lockout` (in process memory). A cluster backend passes its shared
  /// counter here (see iwsec/postgres/backend.hpp); `lockout.client_key`
  /// still names the client either way.
  std::shared_ptr<Lockout> lockout_state;
};

}  // namespace iwsec
// ----- end iwsec/options.hpp -----
// ----- begin iwsec/routes.hpp -----
/// @file
/// @brief mount_security_routes: the five `/v3/security` endpoints on a
/// host's httplib::Server, and a guard for the host's own routes.

#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <httplib.h>

// ----- begin iwsec/detail/http.hpp -----
/// @file
/// @brief HTTP plumbing of the security routes: reading `Authorization`
/// (RFC 7617, RFC 6750) and writing Infoworks-shaped JSON answers.

#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include <httplib.h>


namespace iwsec {
namespace detail {

constexpr const char* json_content_type = "application/json; charset=utf-8";

/// @brief What a request's `Authorization` header holds.
struct authorization {
  enum class kind {
    none,       ///< absent, empty, or a scheme with empty credentials
    basic,      ///< scheme "Basic" (any case)
    bearer,     ///< scheme "Bearer" (any case)
    other,      ///< some other scheme
    duplicate,  ///< more than one Authorization header
    too_long,   ///< value longer than the configured bound
  };
  kind type = kind::none;
  std::string_view credentials;  ///< a view into the request's header value
};

inline bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

/// @brief Reads the request's `Authorization` header; the credentials view
/// stays valid as long as @p req.
inline authorization read_authorization(const httplib::Request& req, std::size_t max_bytes) {
  authorization out;
  // One case-insensitive search: the first header of that name, and a second
  // one would be the next element (equal keys are adjacent in the multimap).
  const auto found = req.headers.lower_bound("Authorization");
  if (found == req.headers.end() || !iequals(found->first, "Authorization")) return out;
  const auto next = std::next(found);
  if (next != req.headers.end() && iequals(next->first, "Authorization")) {
    out.type = authorization::kind::duplicate;
    return out;
  }
  const std::string& raw = found->second;
  if (raw.size() > max_bytes) {
    out.type = authorization::kind::too_long;
    return out;
  }
  std::string_view v(raw);
  while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
  std::size_t scheme_end = 0;
  while (scheme_end < v.size() && !is_ows(v[scheme_end])) ++scheme_end;
  const std::string_view scheme = v.substr(0, scheme_end);
  std::string_view credentials = v.substr(scheme_end);
  while (!credentials.empty() && is_ows(credentials.front())) credentials.remove_prefix(1);
  if (scheme.empty() || credentials.empty()) return out;  // "Basic " counts as no credentials
  if (iequals(scheme, "Basic")) {
    out.type = authorization::kind::basic;
  } else if (iequals(scheme, "Bearer")) {
    out.type = authorization::kind::bearer;
  } else {
    out.type = authorization::kind::other;
  }
  out.credentials = credentials;
  return out;
}

/// @brief The user and password of HTTP Basic credentials (RFC 7617).
struct basic_credentials {
  std::string user;      ///< everything before the first colon (may be empty)
  std::string password;  ///< everything after it, colons included
};

/// @brief Splits Basic credentials: strict padded base64, then user up to the
/// *first* colon and the password after it. Nothing (a 400, before any
/// password check) when the text is not base64, its decoding holds no colon,
/// or it holds a control byte (0x00-0x1F, 0x7F), which RFC 7617 §2 forbids
/// in both user-id and password. That matters: PBKDF2-HMAC pads its key with
/// zeros, so "pw" + NUL would otherwise log in as "pw". Other bytes, invalid
/// UTF-8 included, are not judged: they simply match no account.
inline std::optional<basic_credentials> parse_basic_credentials(std::string_view encoded) {
  auto decoded = base64_decode(encoded);
  if (!decoded) return std::nullopt;
  for (const char ch : *decoded) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) return std::nullopt;
  }
  const auto colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  basic_credentials out;
  out.password = decoded->substr(colon + 1);
  decoded->resize(colon);
  out.user = std::move(*decoded);
  return out;
}

/// @brief Writes a JSON body with the headers every security answer carries.
inline void send_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body, json_content_type);
}

/// @brief The Infoworks error envelope.
inline std::string error_envelope(std::string_view message, std::string_view details, std::string_view iw_code,
                                  std::string_view help_base) {
  std::string body = "{\"message\":";
  append_json_string(body, message);
  body += ",\"details\":";
  append_json_string(body, details);
  body += ",\"iw_code\":";
  append_json_string(body, iw_code);
  body += ",\"help\":";
  std::string help(help_base);
  if (!help.empty() && help.back() != '/') help += '/';
  help += iw_code;
  append_json_string(body, help);
  body += '}';
  return body;
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/http.hpp -----

namespace iwsec {

namespace detail {

// The error answers of the security routes, one per row of SPEC "Errors".
enum class failure { bad_request, no_credentials, invalid_token, rejected, internal, unavailable };

/// @brief The claims of access tokens that passed Signer::verify, by their
/// exact bytes, so that a client presenting the same token again is not
/// verified again: the signer is immutable (it cannot be assigned over), so
/// the same bytes verify the same way, and only the lifetime depends on the
/// time of the check. A hit
/// re-checks it: now < exp + leeway, and now is not earlier than the time of
/// the verification (so `nbf` and `iat`, already satisfied then, still are;
/// after the clock went back the token is verified again). Revocation and
/// the user's status are never cached. Only verified tokens get in, so
/// forged ones cannot fill it; a fixed number of slots bounds its memory.
class verified_token_cache {
 public:
  static constexpr std::size_t slot_count = 1024;  // a power of two
  static constexpr std::size_t max_token_bytes = 2048;

  verified_token_cache() : slots_(new slot[slot_count]) {
    random_bytes(reinterpret_cast<unsigned char*>(&seed_), sizeof seed_);
  }

  /// @brief The cached claims of exactly @p token, if they are still within
  /// their lifetime at @p now.
  std::shared_ptr<const VerifiedToken> find(std::string_view token, std::int64_t now, std::int64_t leeway) const {
    if (token.size() > max_token_bytes) return nullptr;
    slot& s = slots_[index_of(token)];
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      // Compared in constant time: a near miss must not tell how near.
      if (!s.claims || !same_bytes(s.token, token)) return nullptr;
      claims = s.claims;
      verified_at = s.verified_at;
    }
    if (now < verified_at || now >= claims->expires_at() + leeway) return nullptr;
    return claims;
  }

  /// @brief Remembers that @p token verified at @p verified_at with @p claims.
  void store(std::string_view token, std::shared_ptr<const VerifiedToken> claims, std::int64_t verified_at) {
    if (token.size() > max_token_bytes) return;
    slot& s = slots_[index_of(token)];
    std::lock_guard<std::mutex> lock(s.mutex);
    s.token.assign(token.data(), token.size());
    s.claims = std::move(claims);
    s.verified_at = verified_at;
  }

 private:
  struct slot {
    std::mutex mutex;
    std::string token;
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
  };

  // Equality in time that depends only on the lengths, a word at a time
  // (CRYPTO_memcmp goes byte by byte: 7 times slower on a 330-byte token).
  static bool same_bytes(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    std::uint64_t diff = 0;
    std::size_t i = 0;
    for (; i + 8 <= a.size(); i += 8) {
      std::uint64_t x, y;
      std::memcpy(&x, a.data() + i, 8);
      std::memcpy(&y, b.data() + i, 8);
      diff |= x ^ y;
    }
    for (; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
  }

  // A seeded hash of the whole token (its time does not depend on its content).
  std::size_t index_of(std::string_view token) const noexcept {
    std::uint64_t h = seed_ ^ (token.size() * 0x9E3779B97F4A7C15ULL);
    std::size_t i = 0;
    for (; i + 8 <= token.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, token.data() + i, 8);
      h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
      h ^= h >> 31;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, token.data() + i, token.size() - i);
    h = (h ^ tail) * 0x94D049BB133111EBULL;
    h ^= h >> 29;
    return static_cast<std::size_t>(h) & (slot_count - 1);
  }

  std::unique_ptr<slot[]> slots_;
  std::uint64_t seed_ = 0;
};

/// @brief The state and the logic behind the routes, shared by every handler
/// and by the guard (so they see the same revocations).
class security_core {
 public:
  security_core(UserStore& users, const Signer& signer, Options options)
      : users_(users), signer_(signer), options_(std::move(options)) {
    validate_options(options_);
    if (!options_.clock) options_.clock = system_now;
    lockout_ = options_.lockout_state ? options_.lockout_state : std::make_shared<LockoutTracker>(options_.lockout);
    revocations_ = options_.revocations ? options_.revocations
                                        : std::make_shared<MemoryRevocationStore>(options_.clock);
  }

  /// @brief Refuses options that would silently break the contract.
  static void validate_options(const Options& o) {
    constexpr std::int64_t max_seconds = 366LL * 24 * 3600;
    if (o.token_lifetime.count() <= 0 || o.token_lifetime.count() > max_seconds)
      throw std::invalid_argument("iwsec: Options::token_lifetime must be 1 s to 366 days");
    if (o.leeway.count() < 0 || o.leeway.count() > max_seconds)
      throw std::invalid_argument("iwsec: Options::leeway must be 0 s to 366 days");
    if (o.password_rounds < 1 || o.password_rounds > Pbkdf2Hash::max_rounds)
      throw std::invalid_argument("iwsec: Options::password_rounds out of range");
    if (o.max_authorization_bytes < 64)
      throw std::invalid_argument("iwsec: Options::max_authorization_bytes below 64");
    if (const char* error = lockout_policy_error(o.lockout))
      throw std::invalid_argument(std::string("iwsec: Options::lockout.") + error);
  }

  RevocationStore& revocations() const { return *revocations_; }
  Lockout& lockout() const { return *lockout_; }
  const Options& options() const { return options_; }

  std::int64_t now() const { return options_.clock(); }

  /// @brief Full access check: signature, claims, times, revocation, user
  /// still enabled and of the same refresh-token generation. Null when any fails.
  std::shared_ptr<const VerifiedToken> check_access(std::string_view token) const {
    const std::int64_t at = now();
    const auto leeway = static_cast<std::int64_t>(options_.leeway.count());
    auto t = verified_tokens_.find(token, at, leeway);
    if (!t) {
      auto result = signer_.verify(token, at, leeway);
      if (!result) return nullptr;
      t = std::make_shared<const VerifiedToken>(result.token());
      verified_tokens_.store(token, t, at);
    }
    if (revocations_->is_revoked(t->jti())) return nullptr;
    const auto status = users_.status_of(t->email());
    if (!status || status->disabled || status->refresh_generation != t->refresh_generation()) return nullptr;
    return t;
  }

  /// @brief check_access() as a copy of the claims.
  std::optional<VerifiedToken> check_access_token(std::string_view token) const {
    const auto t = check_access(token);
    if (!t) return std::nullopt;
    return *t;
  }

  // ---- answers --------------------------------------------------------------

  void fail(httplib::Response& res, failure f, const char* challenge_scheme) const {
    std::string details, code;
    int status = 500;
    switch (f) {
      case failure::bad_request:
        status = 400;
        code = "IW10006";
        details = "Bad Request: unusable Authorization header or query parameter";
        break;
      case failure::no_credentials:
        status = 401;
        code = "IW10004";
        details = "Authentication Required: missing or unsupported credentials";
        break;
      case failure::invalid_token:
        status = 401;
        code = "IW10004";
        details = "Authentication Required: invalid or expired access token";
        break;
      case failure::rejected:
        status = 406;
        code = "IW10031";
        details = "Authentication Failed: Incorrect user credentials";
        break;
      case failure::internal:
        status = 500;
        code = "IW10002";
        details = "Internal Server Error";
        break;
      case failure::unavailable:
        status = 503;
        code = "IW10002";
        details = "Service Unavailable: shared state cannot be read, retry later";
        if (!res.has_header("Retry-After")) res.set_header("Retry-After", "1");
        break;
    }
    if (status == 401) res.set_header("WWW-Authenticate", challenge(challenge_scheme, f == failure::invalid_token));
    send_json(res, status,
              error_envelope(status >= 500 ? "Security Server Errors" : "Security Client Errors", details, code,
                             options_.help_url_base));
  }

  std::string challenge(const char* scheme, bool invalid_token) const {
    std::string c = scheme;
    c += " realm=";
    append_json_string(c, options_.realm);
    if (std::string_view(scheme) == "Basic") c += ", charset=\"UTF-8\"";
    if (invalid_token) c += ", error=\"invalid_token\"";
    return c;
  }

  void send_token(httplib::Response& res, const std::string& token, const std::string* user_id) const {
    std::string body = "{\"message\":\"Authentication Success\",\"result\":{\"authentication_token\":";
    append_json_string(body, token);
    body += ",\"is_authenticated\":true";
    if (user_id) {
      body += ",\"user_id\":";
      append_json_string(body, *user_id);
    }
    body += "}}";
    send_json(res, 200, body);
  }

  std::string mint(const User& user, TokenAction action) const {
    AccessClaims claims;
    claims.email = user.email;
    claims.action = action;
    claims.issued_at = now();
    claims.expires_at = claims.issued_at + static_cast<std::int64_t>(options_.token_lifetime.count());
    claims.refresh_generation = user.refresh_generation;
    return signer_.sign(claims);
  }

  /// @brief 429 with `Retry-After` (whole seconds, at least 1): the same
  /// answer for a locked account, a blocked client, a known or unknown email.
  void too_many_attempts(httplib::Response& res, std::int64_t wait_seconds) const {
    res.set_header("Retry-After", std::to_string(wait_seconds < 1 ? 1 : wait_seconds));
    send_json(res, 429,
              error_envelope("Security Client Errors", "Authentication Failed: Too many failed attempts, retry later",
                             "IW10031", options_.help_url_base));
  }

  /// @brief The client a request's failures are counted under: the host's
  /// LockoutPolicy::client_key, or the peer address.
  std::string client_of(const httplib::Request& req) const {
    return options_.lockout.client_key ? options_.lockout.client_key(req) : client_address_key(req.remote_addr);
  }

  // ---- credentials ----------------------------------------------------------

  /// @brief The credentials of the @p wanted scheme, or nothing after
  /// answering: 400 for a duplicate or over-long header, 401 otherwise.
  std::optional<std::string> credentials(const httplib::Request& req, httplib::Response& res,
                                         authorization::kind wanted, const char* scheme) const {
    const auto view = credentials_view(req, res, wanted, scheme);
    if (!view) return std::nullopt;
    return std::string(*view);
  }

  /// @brief credentials() without a copy: a view into @p req's header.
  std::optional<std::string_view> credentials_view(const httplib::Request& req, httplib::Response& res,
                                                   authorization::kind wanted, const char* scheme) const {
    const auto auth = read_authorization(req, options_.max_authorization_bytes);
    if (auth.type == authorization::kind::duplicate || auth.type == authorization::kind::too_long) {
      fail(res, failure::bad_request, scheme);
      return std::nullopt;
    }
    if (auth.type != wanted) {
      fail(res, failure::no_credentials, scheme);
      return std::nullopt;
    }
    return auth.credentials;
  }

  // ---- Basic username:password ---------------------------------------------

  /// @brief Checks Basic credentials; the user on success. Always spends one
  /// password hash, whether or not the email exists, except while the
  /// account (its lower-cased email, known or not) is locked or the client
  /// blocked: then a 429 before any hashing.
  std::optional<User> password_login(const httplib::Request& req, httplib::Response& res) const {
    const auto basic = credentials(req, res, authorization::kind::basic, "Basic");
    if (!basic) return std::nullopt;
    const auto pair = parse_basic_credentials(*basic);
    if (!pair) {
      fail(res, failure::bad_request, "Basic");
      return std::nullopt;
    }
    const std::string_view email = pair->user;
    const std::string_view password = pair->password;
    const std::string client = client_of(req);
    auto attempt = lockout_->begin(email, client, now());
    if (!attempt) {
      too_many_attempts(res, attempt.wait());
      return std::nullopt;
    }
    auto user = email.empty() ? std::nullopt : users_.find_by_email(email);
    bool ok;
    if (user && Pbkdf2Hash::parse(user->password_hash)) {
      ok = verify_password(password, user->password_hash) && !user->disabled;
    } else {
      // Unknown email (or a stored hash that cannot match): the same work as a wrong password.
      ok = verify_password_decoy(password, options_.password_rounds);
    }
    if (!ok) {
      attempt.failed(now());
      fail(res, failure::rejected, "Basic");
      return std::nullopt;
    }
    attempt.succeeded(now());
    return user;
  }

  // ---- the five endpoints --------------------------------------------------

  void authenticate(const httplib::Request& req, httplib::Response& res) const {
    if (req.params.count("service_id")) {
      const auto range = req.params.equal_range("service_id");
      const std::string& value = range.first->second;
      bool numeric = req.params.count("service_id") == 1 && !value.empty() && value.size() <= 18;
      for (char c : value) numeric = numeric && c >= '0' && c <= '9';
      if (!numeric) return fail(res, failure::bad_request, "Basic");
    }
    const auto user = password_login(req, res);
    if (!user) return;
    send_token(res, mint(*user, TokenAction::password), &user->user_id);
  }

  void access_token(const httplib::Request& req, httplib::Response& res) const {
    const auto refresh_token = credentials(req, res, authorization::kind::basic, "Basic");
    if (!refresh_token) return;
    // Counted per client only: a refresh token names no account until it
    // matches, and a 256-bit token is not guessable, so an account lock
    // (which would let anyone knowing an email cut off that user's SDK
    // sessions) buys nothing here.
    const std::string client = client_of(req);
    auto attempt = lockout_->begin(std::nullopt, client, now());
    if (!attempt) return too_many_attempts(res, attempt.wait());
    const auto user = users_.find_by_refresh_token_hash(refresh_token_hash(*refresh_token));
    if (!user || user->disabled) {
      attempt.failed(now());
      return fail(res, failure::rejected, "Basic");
    }
    attempt.succeeded(now());
    send_token(res, mint(*user, TokenAction::refresh_token), nullptr);
  }

  void revoke_access_token(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const auto result = signer_.verify_ignoring_lifetime(*token);
    if (!result) return fail(res, failure::invalid_token, "Bearer");
    const VerifiedToken& t = result.token();
    // Kept until the token would fail verification on its own; an expired
    // token needs no entry, it can never be valid again.
    const std::int64_t usable_until = t.expires_at() + static_cast<std::int64_t>(options_.leeway.count());
    if (usable_until > now() && !revocations_->revoke(t.jti(), usable_until))
      return fail(res, failure::internal, "Bearer");
    send_json(res, 200, "{\"message\":\"Logout Success\",\"result\":\"Token successfully blacklisted\"}");
  }

  void validate(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials_view(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const bool valid = check_access(*token) != nullptr;
    send_json(res, 200, valid ? "{\"message\":\"\",\"result\":{\"is_valid\":true}}"
                              : "{\"message\":\"\",\"result\":{\"is_valid\":false}}");
  }

  void rotate_refresh_token(const httplib::Request& req, httplib::Response& res) const {
    const auto user = password_login(req, res);
    if (!user) return;
    const auto rotated = iwsec::rotate_refresh_token(users_, user->email);
    if (rotated.status == StoreStatus::not_found) return fail(res, failure::rejected, "Basic");  // deleted meanwhile
    if (rotated.status != StoreStatus::ok) return fail(res, failure::internal, "Basic");
    std::string body =
        "{\"message\":\"Refresh Token Rotated\",\"result\":\"Successfully Blacklisted Refresh Token.\","
        "\"refresh_token\":";
    append_json_string(body, rotated.refresh_token);
    body += '}';
    send_json(res, 200, body);
  }

  /// @brief cpp-httplib slices the body of a routed answer by the request's
  /// `Range` header (a 206 with half a token, or a 416 with no envelope).
  /// Our answers are whole JSON documents, so the ranges are dropped. The
  /// Request is a mutable object inside httplib, handed to handlers as const.
  static void ignore_ranges(const httplib::Request& req) { const_cast<httplib::Request&>(req).ranges.clear(); }

  /// @brief Runs @p body, turning any escaping exception into the 500
  /// envelope (StateUnavailable into the 503 one, with its `Retry-After`):
  /// the host's exception handler is never involved, and no exception text
  /// reaches the client.
  template <typename F>
  void shielded(httplib::Response& res, const char* scheme, F&& body) const {
    try {
      body();
    } catch (const StateUnavailable& e) {
      res.headers.clear();
      res.set_header("Retry-After", std::to_string(e.retry_after()));
      fail(res, failure::unavailable, scheme);
    } catch (...) {
      res.headers.clear();
      fail(res, failure::internal, scheme);
    }
  }

 private:
  UserStore& users_;
  const Signer& signer_;
  Options options_;
  std::shared_ptr<RevocationStore> revocations_;
  std::shared_ptr<Lockout> lockout_;
  mutable verified_token_cache verified_tokens_;
};

}  // namespace detail

/// @brief What mount_security_routes returns: a handle to the mounted routes'
/// state, used to guard the host's own routes. Cheap to copy; keeps that
/// state alive for as long as any copy (or the server's handlers) exist.
class SecurityRoutes {
 public:
  /// @brief A handler that receives the verified claims of the request's token.
  using GuardedHandler = std::function<void(const httplib::Request&, httplib::Response&, const VerifiedToken&)>;

  /// @brief Wraps @p handler so that it runs only for a request bearing a
  /// valid, unrevoked access token; other requests get the same 401 (or
  /// 400) envelope as the security routes.
  httplib::Server::Handler guard(GuardedHandler handler) const {
    auto core = core_;
    return [core, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      std::shared_ptr<const VerifiedToken> token;
      core->shielded(res, "Bearer", [&] {
        const auto bearer = core->credentials_view(req, res, detail::authorization::kind::bearer, "Bearer");
        if (bearer && !(token = core->check_access(*bearer)))
          core->fail(res, detail::failure::invalid_token, "Bearer");
      });
      // Only with a verified token: a fault in the check above (already
      // answered 500) must not run the host's handler on an empty token.
      if (token) {
        handler(req, res, *token);  // the host's own exceptions (and Range handling) stay the host's
      } else {
        detail::security_core::ignore_ranges(req);  // our refusal goes out whole
      }
    };
  }

  /// @brief The same check as guard(), without HTTP: the claims when @p req
  /// bears a valid access token.
  std::optional<VerifiedToken> verify_request(const httplib::Request& req) const {
    const auto auth = detail::read_authorization(req, core_->options().max_authorization_bytes);
    if (auth.type != detail::authorization::kind::bearer) return std::nullopt;
    return core_->check_access_token(auth.credentials);
  }

  /// @brief The revocation store the routes use.
  RevocationStore& revocations() const { return core_->revocations(); }

  /// @brief The brute-force counter the routes use (e.g. to unlock an
  /// account): Options::lockout_state, or the LockoutTracker they made.
  Lockout& lockout() const { return core_->lockout(); }

 private:
  friend SecurityRoutes mount_security_routes(httplib::Server&, UserStore&, const Signer&, const Options&);
  explicit SecurityRoutes(std::shared_ptr<detail::security_core> core) : core_(std::move(core)) {}
  std::shared_ptr<detail::security_core> core_;
};

/// @brief Deleted: the routes keep a reference to the signer, so a temporary
/// one would dangle. Keep the Signer alive as long as the server.
SecurityRoutes mount_security_routes(httplib::Server&, UserStore&, Signer&&, const Options& = Options()) = delete;

/// @brief Adds the Infoworks v3 security endpoints under `/v3/security` to
/// @p server. It only adds routes: the host's error, exception, pre-routing
/// handlers and logger stay untouched. @p users and @p signer must outlive
/// the server's use of the routes. Throws std::invalid_argument for options
/// out of range (a non-positive lifetime, a negative leeway, ...).
inline SecurityRoutes mount_security_routes(httplib::Server& server, UserStore& users, const Signer& signer,
                                            const Options& options = Options()) {
  auto core = std::make_shared<detail::security_core>(users, signer, options);
  using member = void (detail::security_core::*)(const httplib::Request&, httplib::Response&) const;
  const auto route = [core](member endpoint, const char* scheme) {
    return [core, endpoint, scheme](const httplib::Request& req, httplib::Response& res) {
      detail::security_core::ignore_ranges(req);
      core->shielded(res, scheme, [&] { ((*core).*endpoint)(req, res); });
    };
  };
  const auto wrong_method = [core](const char* allow) {
    return [core, allow](const httplib::Request& req, httplib::Response& res) {
      detail::security_core::ignore_ranges(req);
      res.set_header("Allow", allow);
      detail::send_json(res, 405,
                        detail::error_envelope("Security Client Errors", "Method Not Allowed", "IW10006",
                                               core->options().help_url_base));
    };
  };

  // httplib tries a method's routes in the order they were added, with a
  // regex match each: the most frequent request comes first.
  server.Get("/v3/security/token/validate", route(&detail::security_core::validate, "Bearer"));
  server.Get("/v3/security/authenticate", route(&detail::security_core::authenticate, "Basic"));
  server.Get("/v3/security/token/access", route(&detail::security_core::access_token, "Basic"));
  server.Delete("/v3/security/token/access", route(&detail::security_core::revoke_access_token, "Bearer"));
  server.Delete("/v3/security/token/refresh", route(&detail::security_core::rotate_refresh_token, "Basic"));

  // Other methods on these paths: a 405 in the same envelope, not the host's 404.
  const struct {
    const char* path;
    const char* allow;
  } paths[] = {{"/v3/security/authenticate", "GET"},
               {"/v3/security/token/access", "GET, DELETE"},
               {"/v3/security/token/validate", "GET"},
               {"/v3/security/token/refresh", "DELETE"}};
  for (const auto& p : paths) {
    server.Options(p.path, [allow = std::string(p.allow) + ", OPTIONS"](const httplib::Request&, httplib::Response& res) {
      res.status = 204;
      res.set_header("Allow", allow);
    });
    server.Post(p.path, wrong_method(p.allow));
    server.Put(p.path, wrong_method(p.allow));
    server.Patch(p.path, wrong_method(p.allow));
    if (std::string_view(p.allow).find("DELETE") == std::string_view::npos) server.Delete(p.path, wrong_method(p.allow));
    if (std::string_view(p.allow).find("GET") == std::string_view::npos) server.Get(p.path, wrong_method(p.allow));
  }
  return SecurityRoutes(std::move(core));
}

}  // namespace iwsec
// ----- end iwsec/routes.hpp -----
// ----- end iwsec/iwsec.hpp -----
