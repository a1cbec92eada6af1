/// @brief Lower-case hexadecimal: the one digit table iwsec writes hex with.
/// @file
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace iwsec {
namespace detail {

/// @brief The lower-case hex digit of the low four bits of @p v.
constexpr char hex_digit(std::uint64_t v) noexcept { return "0123456789abcdef"[v & 15]; }

/// @brief @p n bytes as 2n lower-case hex digits.
inline std::string hex_encode(const unsigned char* data, std::size_t n) {
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = hex_digit(data[i] >> 4);
    out[2 * i + 1] = hex_digit(data[i]);
  }
  return out;
}

}  // namespace detail
}  // namespace iwsec
