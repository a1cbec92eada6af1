#pragma once
/// @file
/// @brief What a host can observe of the security routes for its own logs,
/// without the library taking over the host's logger: the outcome of the
/// token check of a request, and the lockout events.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <httplib.h>

namespace iwsec {

/// @brief The outcome of an access-token check (token/validate, the guard).
struct TokenCheck {
  bool valid = false;
  /// @brief Why the token was refused (null when valid), a static string:
  /// one of Signer's to_string(VerifyError) names (`malformed`,
  /// `bad_signature`, `expired`, `not_yet_valid`, `unknown_key`, ...), or
  /// `revoked`, `unknown_user`, `disabled`, `rotated` (minted before the
  /// user's refresh-token generation changed). Never the token.
  const char* rejection = nullptr;
};

/// @brief A lock that started: an account locked (`account` is its
/// lower-cased email, known or not) or a client blocked (`client` is its
/// key: the address, or what LockoutPolicy::client_key returned), until
/// `until` (seconds since the epoch, the routes' clock).
struct LockoutEvent {
  enum class Kind { account, client } kind = Kind::account;
  std::string subject;
  std::int64_t until = 0;
};

/// @brief Called by the routes when an account gets locked or a client
/// blocked (Options::on_lockout), on the request's thread, after the lock is
/// in force. Must not throw (what it throws is dropped).
using LockoutHook = std::function<void(const LockoutEvent&)>;

namespace detail {

struct token_check_record {
  const httplib::Request* request = nullptr;
  TokenCheck check;
};

inline token_check_record& current_token_check() noexcept {
  static thread_local token_check_record record;
  return record;
}

/// @brief Records @p check as the outcome for @p req on this thread.
inline void record_token_check(const httplib::Request& req, TokenCheck check) noexcept {
  token_check_record& r = current_token_check();
  r.request = &req;
  r.check = check;
}

}  // namespace detail

/// @brief The outcome of the access-token check the security routes (or the
/// guard) made for @p req, and forgets it; nothing when they checked no
/// token for it. Call it from the host's logger (httplib calls the logger on
/// the thread that ran the handler): cpp-httplib's Response has no field for
/// such data that would not reach the client, so the outcome waits in a
/// thread-local slot tagged with the request. Taking it clears the slot, so
/// a logger that calls this for every request never sees a stale outcome.
inline std::optional<TokenCheck> take_token_check(const httplib::Request& req) noexcept {
  detail::token_check_record& r = detail::current_token_check();
  if (r.request != &req) return std::nullopt;
  r.request = nullptr;
  return r.check;
}

}  // namespace iwsec
