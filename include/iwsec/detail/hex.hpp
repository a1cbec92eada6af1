/// @brief Lower-case hexadecimal: the one digit table iwsec writes hex with, and its reader.
/// @file
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iwsec {
namespace detail {

/// @brief The lower-case hex digit of the low four bits of @p v.
constexpr char hex_digit(std::uint64_t v) noexcept { return "0123456789abcdef"[v & 15]; }

/// @brief The upper-case hex digit of @p v's low four bits (percent-escapes, RFC 3986).
constexpr char hex_digit_upper(std::uint64_t v) noexcept { return "0123456789ABCDEF"[v & 15]; }

/// @brief @p n bytes as 2n lower-case hex digits.
inline std::string hex_encode(const unsigned char* data, std::size_t n) {
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = hex_digit(data[i] >> 4);
    out[2 * i + 1] = hex_digit(data[i]);
  }
  return out;
}

/// @brief The value of lower-case hex digit @p c (what hex_digit writes);
/// -1 for any other character, upper-case digits included.
constexpr int hex_nibble(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/// @brief The bytes of lower-case hex @p hex (what hex_encode writes);
/// nothing for an odd length or any other character.
inline std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_nibble(hex[i]), lo = hex_nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace detail
}  // namespace iwsec
