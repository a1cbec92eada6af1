#pragma once
/// @file
/// @brief Cluster mode's part of the build description: libpq's version.

#include <string>

#include <libpq-fe.h>

#include "../build_info.hpp"

namespace iwsec {
namespace postgres {

/// @brief The version of the libpq this program runs with (`PQlibVersion()`),
/// as PostgreSQL writes it: "15.8" from 150008 (10 and later), "9.6.24"
/// from 90624 (before 10).
inline std::string libpq_version() {
  const int v = PQlibVersion();
  if (v >= 100000) return std::to_string(v / 10000) + "." + std::to_string(v % 10000);
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

/// @brief "iwsec X.Y.Z (cpp-httplib A.B.C, OpenSSL D.E.F, libpq G.H)".
inline std::string build_description() { return iwsec::build_description("libpq " + libpq_version()); }

}  // namespace postgres
}  // namespace iwsec
