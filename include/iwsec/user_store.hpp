#pragma once
/// @file
/// @brief Users, their password hashes and refresh tokens: the UserStore
/// interface and its in-memory implementation.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "detail/base64.hpp"
#include "detail/crypto.hpp"
#include "detail/json.hpp"
#include "password.hpp"

namespace iwsec {

/// @brief One account. Secrets are stored only as hashes.
struct User {
  std::string user_id;               ///< opaque, stable, a string on the wire
  std::string email;                 ///< as entered; looked up case-insensitively
  std::string password_hash;         ///< `$pbkdf2-sha256$...`
  std::string refresh_token_sha256;  ///< hex SHA-256 of the current refresh token
  std::int64_t refresh_generation = 0;  ///< bumped by each refresh-token rotation
  bool disabled = false;
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

/// @brief The outcome of a UserStore write.
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

/// @brief The user database the security routes read and write. Every method
/// may be called from many threads at once.
class UserStore {
 public:
  virtual ~UserStore() = default;

  /// @brief The user with this email (ASCII case-insensitive), if any.
  virtual std::optional<User> find_by_email(std::string_view email) = 0;

  /// @brief The user whose current refresh token hashes to @p token_sha256 (hex).
  virtual std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) = 0;

  /// @brief Adds @p user; already_exists when the email (case-insensitively),
  /// the user id or the refresh-token hash is taken; invalid when the email or
  /// id is empty or a text field is not valid UTF-8.
  virtual StoreStatus add_user(const User& user) = 0;

  /// @brief Applies @p change to the user with this email, atomically with
  /// respect to every other write (and, for durable stores, durably). The
  /// change must not alter the email or the user id.
  virtual StoreStatus update_user(std::string_view email, const std::function<void(User&)>& change) = 0;

  /// @brief Every user, in a stable order.
  virtual std::vector<User> list_users() = 0;

  /// @brief Removes the user with this email (ASCII case-insensitive): their
  /// refresh token stops working at once, and so do their access tokens
  /// (a token names its holder by `user_id`, which a user created later
  /// under the same email does not share). not_found when there is no such
  /// user. Not pure, so host stores written before it keep compiling; this
  /// default removes nothing and answers invalid ("this store cannot delete").
  virtual StoreStatus delete_user(std::string_view email) {
    (void)email;
    return StoreStatus::invalid;
  }

  /// @brief Generation and disabled flag of a user: the hot path of every
  /// access-token check. Override when a cheaper answer than a copy exists.
  virtual std::optional<UserStatus> status_of(std::string_view email) {
    auto u = find_by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled, std::move(u->user_id)};
  }
};

/// @brief A new opaque refresh token: 32 bytes (256 bits) from the CSPRNG, base64url.
inline std::string generate_refresh_token() {
  return base64url_encode(detail::random_string(32));
}

/// @brief The form a refresh token is stored in: lower-case hex SHA-256.
inline std::string refresh_token_hash(std::string_view token) { return detail::sha256_hex(token); }

/// @brief A new user id: 24 lower-case hex digits (Infoworks ids look like that).
inline std::string generate_user_id() {
  const std::string raw = detail::random_string(12);
  return detail::hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

/// @brief A refresh token shown once, with the outcome of the write that stored its hash.
struct IssuedRefreshToken {
  StoreStatus status = StoreStatus::invalid;
  std::string user_id;
  std::string refresh_token;  ///< empty unless status is ok
};

/// @brief Gives the user a new refresh token and bumps their generation, so
/// the old refresh token and every access token minted before stop working.
inline IssuedRefreshToken rotate_refresh_token(UserStore& users, std::string_view email) {
  IssuedRefreshToken out;
  std::string token = generate_refresh_token();
  const std::string hash = refresh_token_hash(token);
  out.status = users.update_user(email, [&](User& u) {
    u.refresh_token_sha256 = hash;
    ++u.refresh_generation;
    out.user_id = u.user_id;
  });
  if (out.status == StoreStatus::ok) out.refresh_token = std::move(token);
  return out;
}

/// @brief Whether a login could ever present @p password: not empty, and no
/// control character (RFC 7617 Basic credentials cannot carry one).
inline bool usable_password(std::string_view password) noexcept {
  if (password.empty()) return false;
  for (const char c : password) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F) return false;
  }
  return true;
}

/// @brief Replaces the user's password. Unless @p keep_sessions, it also
/// ends every session, as a reset after a leak must: a new refresh token
/// (returned, shown once; the old one stops working) and a generation bump
/// (every access token minted before stops working). With @p keep_sessions
/// only the hash changes and the result carries no refresh token. invalid
/// (nothing changed) for a password no login could present.
inline IssuedRefreshToken set_password(UserStore& users, std::string_view email, std::string_view password,
                                       std::uint32_t rounds = default_pbkdf2_rounds, bool keep_sessions = false) {
  IssuedRefreshToken out;
  if (!usable_password(password)) return out;
  const std::string hash = hash_password(password, rounds);  // before the write: it takes a while
  std::string token = keep_sessions ? std::string() : generate_refresh_token();
  const std::string token_hash = keep_sessions ? std::string() : refresh_token_hash(token);
  out.status = users.update_user(email, [&](User& u) {
    u.password_hash = hash;
    if (!keep_sessions) {
      u.refresh_token_sha256 = token_hash;
      ++u.refresh_generation;
    }
    out.user_id = u.user_id;
  });
  if (out.status == StoreStatus::ok) out.refresh_token = std::move(token);
  return out;
}

/// @brief Disables or enables the user. Disabling ends every session (a
/// generation bump), so a later enable does not bring old access tokens
/// back; the refresh token works again once the user is enabled.
inline StoreStatus set_user_disabled(UserStore& users, std::string_view email, bool disabled) {
  return users.update_user(email, [&](User& u) {
    if (disabled) ++u.refresh_generation;
    u.disabled = disabled;
  });
}

/// @brief Creates an enabled user with a hashed password and a first
/// refresh token (returned, shown once).
inline IssuedRefreshToken create_user(UserStore& users, std::string_view email, std::string_view password,
                                      std::uint32_t rounds = default_pbkdf2_rounds) {
  IssuedRefreshToken out;
  User user;
  user.user_id = generate_user_id();
  user.email = std::string(email);
  user.password_hash = hash_password(password, rounds);
  std::string token = generate_refresh_token();
  user.refresh_token_sha256 = refresh_token_hash(token);
  out.status = users.add_user(user);
  if (out.status == StoreStatus::ok) {
    out.user_id = user.user_id;
    out.refresh_token = std::move(token);
  }
  return out;
}

namespace detail {

/// @brief Users indexed by lower-cased email and by refresh-token hash. Not
/// synchronised: the stores wrap it in their own locking.
class user_index {
 public:
  const User* by_email(std::string_view email) const {
    auto it = by_email_.find(ascii_lower(email));
    return it == by_email_.end() ? nullptr : &it->second;
  }

  const User* by_refresh_token_hash(std::string_view token_sha256) const {
    auto it = by_token_.find(std::string(token_sha256));
    return it == by_token_.end() ? nullptr : by_email(it->second);
  }

  /// @brief Fields every stored user must have: text a JSON file can hold.
  static bool storable(const User& u) {
    return !u.email.empty() && !u.user_id.empty() && is_valid_utf8(u.email) && is_valid_utf8(u.user_id) &&
           is_valid_utf8(u.password_hash) && is_valid_utf8(u.refresh_token_sha256) && u.refresh_generation >= 0;
  }

  StoreStatus add(const User& user) {
    if (!storable(user)) return StoreStatus::invalid;
    const std::string key = ascii_lower(user.email);
    if (by_email_.count(key)) return StoreStatus::already_exists;
    for (const auto& entry : by_email_)
      if (entry.second.user_id == user.user_id) return StoreStatus::already_exists;
    if (!user.refresh_token_sha256.empty() && by_token_.count(user.refresh_token_sha256))
      return StoreStatus::already_exists;
    if (!user.refresh_token_sha256.empty()) by_token_.emplace(user.refresh_token_sha256, key);
    by_email_.emplace(key, user);
    order_.push_back(key);
    return StoreStatus::ok;
  }

  /// @brief Applies @p change to a copy; commits it only if the identity is
  /// unchanged and the new refresh-token hash is not someone else's.
  StoreStatus update(std::string_view email, const std::function<void(User&)>& change) {
    auto it = by_email_.find(ascii_lower(email));
    if (it == by_email_.end()) return StoreStatus::not_found;
    User updated = it->second;
    change(updated);
    if (ascii_lower(updated.email) != it->first || updated.user_id != it->second.user_id || !storable(updated))
      return StoreStatus::invalid;
    if (updated.refresh_token_sha256 != it->second.refresh_token_sha256) {
      if (!updated.refresh_token_sha256.empty() && by_token_.count(updated.refresh_token_sha256))
        return StoreStatus::already_exists;
      by_token_.erase(it->second.refresh_token_sha256);
      if (!updated.refresh_token_sha256.empty()) by_token_.emplace(updated.refresh_token_sha256, it->first);
    }
    it->second = std::move(updated);
    return StoreStatus::ok;
  }

  /// @brief Removes the user with this email and their refresh-token hash.
  StoreStatus remove(std::string_view email) {
    auto it = by_email_.find(ascii_lower(email));
    if (it == by_email_.end()) return StoreStatus::not_found;
    if (!it->second.refresh_token_sha256.empty()) by_token_.erase(it->second.refresh_token_sha256);
    order_.erase(std::find(order_.begin(), order_.end(), it->first));
    by_email_.erase(it);
    return StoreStatus::ok;
  }

  std::vector<User> list() const {
    std::vector<User> out;
    out.reserve(order_.size());
    for (const auto& key : order_) out.push_back(by_email_.at(key));
    return out;
  }

 private:
  std::unordered_map<std::string, User> by_email_;
  std::unordered_map<std::string, std::string> by_token_;  // hash -> lower-cased email
  std::vector<std::string> order_;                          // insertion order
};

}  // namespace detail

/// @brief A UserStore in process memory: for tests and hosts that keep users
/// elsewhere and load them at start.
class MemoryUserStore : public UserStore {
 public:
  std::optional<User> find_by_email(std::string_view email) override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const User* u = index_.by_email(email);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const User* u = index_.by_refresh_token_hash(token_sha256);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  StoreStatus add_user(const User& user) override {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    return index_.add(user);
  }

  StoreStatus update_user(std::string_view email, const std::function<void(User&)>& change) override {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    return index_.update(email, change);
  }

  std::vector<User> list_users() override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return index_.list();
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const User* u = index_.by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled, u->user_id};
  }

  StoreStatus delete_user(std::string_view email) override {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    return index_.remove(email);
  }

 private:
  std::shared_mutex mutex_;
  detail::user_index index_;
};

}  // namespace iwsec
