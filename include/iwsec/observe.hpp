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

#include "signer.hpp"

namespace iwsec {

/// @brief Why an access-token check refused a token: the token itself
/// (VerifyError's reasons, one for one) or what the stores say of it since.
enum class Rejection {
  none,                   ///< accepted
  too_large,              ///< VerifyError::too_large
  malformed,              ///< VerifyError::malformed
  bad_header,             ///< VerifyError::bad_header
  unsupported_algorithm,  ///< VerifyError::unsupported_algorithm
  unknown_key,            ///< VerifyError::unknown_key
  bad_signature,          ///< VerifyError::bad_signature
  bad_payload,            ///< VerifyError::bad_payload
  bad_claims,             ///< VerifyError::bad_claims
  expired,                ///< VerifyError::expired
  not_yet_valid,          ///< VerifyError::not_yet_valid
  revoked,                ///< its `jti` was revoked
  unknown_user,           ///< no user has its email and `user_id` (deleted, or deleted and re-created)
  disabled,               ///< its user is disabled
  rotated,                ///< minted before its user's refresh-token generation changed
};

/// @brief The Rejection for a signer's VerifyError.
inline Rejection rejection_of(VerifyError e) noexcept {
  switch (e) {
    case VerifyError::none: return Rejection::none;
    case VerifyError::too_large: return Rejection::too_large;
    case VerifyError::malformed: return Rejection::malformed;
    case VerifyError::bad_header: return Rejection::bad_header;
    case VerifyError::unsupported_algorithm: return Rejection::unsupported_algorithm;
    case VerifyError::unknown_key: return Rejection::unknown_key;
    case VerifyError::bad_signature: return Rejection::bad_signature;
    case VerifyError::bad_payload: return Rejection::bad_payload;
    case VerifyError::bad_claims: return Rejection::bad_claims;
    case VerifyError::expired: return Rejection::expired;
    case VerifyError::not_yet_valid: return Rejection::not_yet_valid;
  }
  return Rejection::malformed;
}

/// @brief A short, stable, lower-case name (the access log's `reason`):
/// VerifyError's names for those reasons, then `revoked`, `unknown_user`,
/// `disabled`, `rotated`.
inline const char* to_string(Rejection r) noexcept {
  switch (r) {
    case Rejection::none: return "none";
    case Rejection::too_large: return "too_large";
    case Rejection::malformed: return "malformed";
    case Rejection::bad_header: return "bad_header";
    case Rejection::unsupported_algorithm: return "unsupported_algorithm";
    case Rejection::unknown_key: return "unknown_key";
    case Rejection::bad_signature: return "bad_signature";
    case Rejection::bad_payload: return "bad_payload";
    case Rejection::bad_claims: return "bad_claims";
    case Rejection::expired: return "expired";
    case Rejection::not_yet_valid: return "not_yet_valid";
    case Rejection::revoked: return "revoked";
    case Rejection::unknown_user: return "unknown_user";
    case Rejection::disabled: return "disabled";
    case Rejection::rotated: return "rotated";
  }
  return "unknown";
}

/// @brief The outcome of an access-token check (token/validate, the guard).
struct TokenCheck {
  bool valid = false;
  /// @brief Why the token was refused (Rejection::none when valid);
  /// to_string() names it. Never the token.
  Rejection rejection = Rejection::none;
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
