#pragma once
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
