#pragma once
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
