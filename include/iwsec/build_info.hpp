#pragma once
/// @file
/// @brief What this build of iwsec was compiled with: iwsec's own version,
/// the cpp-httplib release (`CPPHTTPLIB_VERSION`) and OpenSSL's version —
/// the first thing anyone asks in a bug report. `iwsec-server --version`
/// and `iwsec-admin --version` print build_description().
/// (Cluster mode adds libpq's: iwsec/postgres/build_info.hpp.)

#include <string>

#include <openssl/opensslv.h>

#include "detail/httplib_compat.hpp"
#include "version.hpp"

namespace iwsec {

/// @brief iwsec's version, "X.Y.Z" (IWSEC_VERSION_STRING).
inline constexpr const char* version_string = IWSEC_VERSION_STRING;

/// @brief The cpp-httplib release this translation unit is compiled with
/// (its `CPPHTTPLIB_VERSION`, e.g. "0.41.0").
inline constexpr const char* httplib_version_string = CPPHTTPLIB_VERSION;

/// @brief The OpenSSL release whose headers this translation unit is compiled
/// with (`OPENSSL_VERSION_STR`, e.g. "3.0.17").
inline constexpr const char* openssl_version_string = OPENSSL_VERSION_STR;

/// @brief "iwsec X.Y.Z (cpp-httplib A.B.C, OpenSSL D.E.F)"; @p more, when
/// not empty, goes inside the parentheses after OpenSSL's version
/// (", " + more), e.g. "libpq 15.8".
inline std::string build_description(const std::string& more = std::string()) {
  std::string text = std::string("iwsec ") + version_string + " (cpp-httplib " + httplib_version_string +
                     ", OpenSSL " + openssl_version_string;
  if (!more.empty()) text += ", " + more;
  text += ")";
  return text;
}

}  // namespace iwsec
