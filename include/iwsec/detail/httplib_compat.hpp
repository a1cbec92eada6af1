#pragma once
/// @file
/// @brief The one place where the library meets differences between
/// cpp-httplib releases (0.11.4 to the newest): decided by the version
/// number `CPPHTTPLIB_VERSION`, parsed at compile time, never by whether an
/// API happens to compile (the same call can change meaning between
/// releases).

#include <cstddef>
#include <iterator>
#include <string>

#include <httplib.h>

#ifndef CPPHTTPLIB_VERSION
#error "iwsec needs cpp-httplib 0.11.4 or newer (CPPHTTPLIB_VERSION is not defined)"
#endif

namespace iwsec {
namespace detail {

/// @brief A release number as one comparable integer: major * 10^6 + minor * 10^3 + patch.
constexpr unsigned long version_number(unsigned long major, unsigned long minor, unsigned long patch) noexcept {
  return major * 1000000UL + minor * 1000UL + patch;
}

/// @brief Parses "A.B.C" (digits and dots; anything after the third number
/// is ignored) into version_number(A, B, C); 0 for text that is not a version.
constexpr unsigned long parse_version(const char* text) noexcept {
  unsigned long parts[3] = {0, 0, 0};
  int part = 0;
  bool digit_seen = false;
  for (const char* p = text; *p != '\0' && part < 3; ++p) {
    if (*p >= '0' && *p <= '9') {
      parts[part] = parts[part] * 10 + static_cast<unsigned long>(*p - '0');
      digit_seen = true;
    } else if (*p == '.' && digit_seen) {
      ++part;
      digit_seen = false;
    } else {
      break;
    }
  }
  return version_number(parts[0], parts[1], parts[2]);
}

/// @brief The cpp-httplib release this translation unit is compiled against.
constexpr unsigned long httplib_version = parse_version(CPPHTTPLIB_VERSION);

static_assert(parse_version("0.11.4") == version_number(0, 11, 4), "parse_version");
static_assert(parse_version("0.41.0") == version_number(0, 41, 0), "parse_version");
static_assert(parse_version("1.2.3-rc1") == version_number(1, 2, 3), "parse_version");
static_assert(httplib_version >= version_number(0, 11, 4),
              "iwsec needs cpp-httplib 0.11.4 or newer");

/// @brief The values of a request header, however this release keeps
/// `httplib::Headers` (a case-insensitive `std::multimap` up to 0.17, an
/// `unordered_multimap` after): equal keys form one range, in the order
/// cpp-httplib's own `get_header_value(key, id)` counts them.
inline auto header_values(const httplib::Headers& headers, const std::string& name) {
  return headers.equal_range(name);
}

/// @brief The @p index-th value of header @p name, or nullptr; the pointer
/// stays valid as long as @p headers.
inline const std::string* find_header(const httplib::Headers& headers, const std::string& name,
                                      std::size_t index = 0) {
  auto range = header_values(headers, name);
  for (auto it = range.first; it != range.second; ++it, --index) {
    if (index == 0) return &it->second;
  }
  return nullptr;
}

/// @brief How many values header @p name has.
inline std::size_t count_header(const httplib::Headers& headers, const std::string& name) {
  auto range = header_values(headers, name);
  return static_cast<std::size_t>(std::distance(range.first, range.second));
}

}  // namespace detail
}  // namespace iwsec
