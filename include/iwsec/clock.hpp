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

/// @brief The longest duration any setting may have, in seconds: 366 days
/// (token lifetime, leeway, lock lengths, the client window). A year of
/// clock skew is already absurd; the bound keeps sums of times in range.
inline constexpr std::int64_t max_duration_seconds = 366LL * 24 * 3600;

/// @brief The longest refresh-token lifetime, in seconds: ten times
/// max_duration_seconds. Refresh tokens are long-lived by design; the bound
/// keeps issue time + lifetime in range.
inline constexpr std::int64_t max_refresh_token_lifetime_seconds = 10 * max_duration_seconds;

}  // namespace iwsec
