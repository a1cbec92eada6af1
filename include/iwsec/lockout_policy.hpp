/// @brief LockoutPolicy: when failed logins lock an account or a client out, and its valid ranges.
/// @file
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

// httplib::Request: LockoutPolicy::client_key reads the request.
#include <httplib.h>

#include "client_address.hpp"
#include "clock.hpp"
#include "detail/httplib_compat.hpp"

namespace iwsec {

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

/// @brief A LockoutPolicy::client_key for a server behind a reverse proxy
/// that always sets @p header (`X-Forwarded-For`, `X-Real-IP`): the address
/// in its last value (the one the nearest proxy appended), keyed by
/// forwarded_address_key and prefixed `proxied:`. A request without the
/// header counts under its peer address, so stripping the header gains a
/// client nothing. What `iwsec-server --lockout-client-header` does.
inline std::function<std::string(const httplib::Request&)> client_key_from_header(std::string header) {
  return [header = std::move(header)](const httplib::Request& req) {
    const std::size_t n = detail::count_header(req.headers, header);
    if (n == 0) return client_address_key(req.remote_addr);
    return "proxied:" + forwarded_address_key(*detail::find_header(req.headers, header, n - 1));
  };
}

namespace detail {

/// @brief Refuses a policy that would silently not protect (or never let
/// anyone in); used by validate_options.
inline const char* lockout_policy_error(const LockoutPolicy& p) {
  constexpr std::int64_t max_seconds = max_duration_seconds;
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
