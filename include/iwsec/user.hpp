/// @brief One account and the outcome of a store write: User, UserStatus, StoreStatus, StoreResult.
/// @file
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace iwsec {

/// @brief One account. Secrets are stored only as hashes.
struct User {
  std::string user_id;               ///< opaque, stable, a string on the wire
  std::string email;                 ///< as entered; looked up case-insensitively
  std::string password_hash;         ///< `$pbkdf2-sha256$...`
  std::string refresh_token_sha256;  ///< hex SHA-256 of the current refresh token
  std::int64_t refresh_generation = 0;  ///< bumped by each refresh-token rotation
  bool disabled = false;
  /// @brief When the current refresh token was issued (seconds since the
  /// epoch; Options::refresh_token_lifetime counts from it). 0: unknown (a
  /// token from before issue times were kept: the stores shipped here set it
  /// to the time they first load such a user, and keep that time).
  std::int64_t refresh_token_issued_at = 0;
};

/// @brief What an access-token check needs to know about its user, cheaply.
struct UserStatus {
  std::int64_t refresh_generation = 0;
  bool disabled = false;
  /// @brief The current holder of the email: an access token whose `user_id`
  /// differs is invalid. A store that overrides status_of must fill it (an
  /// empty id matches no token minted for a user with an id).
  std::string user_id;
};

/// @brief What became of a UserStore write (StoreResult carries it, with the reason).
enum class StoreStatus { ok, not_found, already_exists, invalid, io_error };

/// @brief A short name for a StoreStatus.
inline const char* to_string(StoreStatus s) noexcept {
  switch (s) {
    case StoreStatus::ok: return "ok";
    case StoreStatus::not_found: return "not found";
    case StoreStatus::already_exists: return "already exists";
    case StoreStatus::invalid: return "invalid";
    case StoreStatus::io_error: return "I/O error";
  }
  return "unknown";
}

/// @brief The outcome of a UserStore write: a StoreStatus and, when it is
/// not ok, why in the store's own words (an I/O error's path and the
/// system's reason, the rule a user broke; never a secret). Compares with a
/// StoreStatus (`store.add_user(u) == StoreStatus::ok`) and converts to one.
class StoreResult {
 public:
  StoreResult(StoreStatus status = StoreStatus::ok) noexcept : status_(status) {}  // NOLINT: implicit on purpose
  StoreResult(StoreStatus status, std::string reason) : status_(status), reason_(std::move(reason)) {}

  StoreStatus status() const noexcept { return status_; }
  bool ok() const noexcept { return status_ == StoreStatus::ok; }
  operator StoreStatus() const noexcept { return status_; }  // NOLINT: implicit on purpose

  /// @brief Why the write did not happen: the store's words, else
  /// to_string(status()); empty when it is ok.
  std::string reason() const {
    if (ok()) return {};
    return reason_.empty() ? std::string(to_string(status_)) : reason_;
  }

 private:
  StoreStatus status_;
  std::string reason_;
};

/// @brief "ok", or the reason of a write that did not happen.
inline std::string to_string(const StoreResult& r) { return r.ok() ? std::string("ok") : r.reason(); }

}  // namespace iwsec
