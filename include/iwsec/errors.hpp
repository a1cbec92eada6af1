#pragma once
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
