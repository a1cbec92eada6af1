#pragma once
/// @file
/// @brief Users, their password hashes and refresh tokens: the UserStore
/// interface and its in-memory implementation.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "clock.hpp"
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
  /// user. Required (since 0.x): a default that removed nothing would let a
  /// store skip the rule that a deleted user's tokens stop working.
  virtual StoreStatus delete_user(std::string_view email) = 0;

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
  std::string error;          ///< why status is invalid, when a check said so (for a program to print)
};

namespace detail {

/// @brief Whether @p text holds a control character: C0 (0x00-0x1F), DEL,
/// or, in UTF-8, C1 (U+0080-U+009F).
inline bool holds_control_character(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x20 || b == 0x7F) return true;
    if (b == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9F &&
        static_cast<unsigned char>(text[i + 1]) >= 0x80)
      return true;
  }
  return false;
}

}  // namespace detail

/// @brief Why no login could use @p email as its user name, or nullptr when
/// one can. HTTP Basic ends the user name at the first colon and cannot
/// carry control characters; an email has one '@' with text on both sides.
inline const char* email_problem(std::string_view email) noexcept {
  if (email.empty()) return "the email is empty";
  if (email.size() > 254) return "the email is longer than 254 bytes";
  if (!detail::is_valid_utf8(email)) return "the email is not valid UTF-8";
  if (detail::holds_control_character(email)) return "the email holds a control character";
  if (email.find(' ') != std::string_view::npos) return "the email holds a space";
  if (email.find(':') != std::string_view::npos)
    return "the email holds a ':', where HTTP Basic credentials end the user name";
  const auto at = email.find('@');
  if (at == std::string_view::npos || email.find('@', at + 1) != std::string_view::npos)
    return "the email must hold exactly one '@'";
  if (at == 0 || at + 1 == email.size()) return "the email needs text on both sides of its '@'";
  return nullptr;
}

/// @brief Why no login could send @p password, or nullptr when one can: it
/// must not be empty nor hold a control character (a tab, say), which Basic
/// credentials cannot carry. Any other UTF-8, colons included, is fine.
inline const char* password_problem(std::string_view password) noexcept {
  if (password.empty()) return "the password is empty";
  if (detail::holds_control_character(password))
    return "the password holds a control character (a tab, say), which no login can send";
  return nullptr;
}

/// @brief Gives the user a new refresh token and bumps their generation, so
/// the old refresh token and every access token minted before stop working.
/// @p now is the new token's issue time (its lifetime counts from it).
inline IssuedRefreshToken rotate_refresh_token(UserStore& users, std::string_view email,
                                               std::int64_t now = system_now()) {
  IssuedRefreshToken out;
  std::string token = generate_refresh_token();
  const std::string hash = refresh_token_hash(token);
  out.status = users.update_user(email, [&](User& u) {
    u.refresh_token_sha256 = hash;
    u.refresh_token_issued_at = now;
    ++u.refresh_generation;
    out.user_id = u.user_id;
  });
  if (out.status == StoreStatus::ok) out.refresh_token = std::move(token);
  return out;
}

/// @brief Replaces the user's password. Unless @p keep_sessions, it also
/// ends every session, as a reset after a leak must: a new refresh token
/// (returned, shown once; the old one stops working) and a generation bump
/// (every access token minted before stops working). With @p keep_sessions
/// only the hash changes and the result carries no refresh token. invalid
/// (nothing changed) for a password no login could present. @p now is the
/// new refresh token's issue time.
inline IssuedRefreshToken set_password(UserStore& users, std::string_view email, std::string_view password,
                                       std::uint32_t rounds = default_pbkdf2_rounds, bool keep_sessions = false,
                                       std::int64_t now = system_now()) {
  IssuedRefreshToken out;
  if (const char* problem = password_problem(password)) {
    out.error = problem;
    return out;
  }
  const std::string hash = hash_password(password, rounds);  // before the write: it takes a while
  std::string token = keep_sessions ? std::string() : generate_refresh_token();
  const std::string token_hash = keep_sessions ? std::string() : refresh_token_hash(token);
  out.status = users.update_user(email, [&](User& u) {
    u.password_hash = hash;
    if (!keep_sessions) {
      u.refresh_token_sha256 = token_hash;
      u.refresh_token_issued_at = now;
      ++u.refresh_generation;
    }
    out.user_id = u.user_id;
  });
  if (out.status == StoreStatus::ok) out.refresh_token = std::move(token);
  return out;
}

/// @brief Replaces a user's password hash by @p new_hash (the same password
/// hashed again with other rounds, after a successful login) without ending
/// any session: the refresh token and the generation stay. Only while the
/// user is still @p user_id with @p old_hash (a password changed meanwhile
/// wins); not_found otherwise.
inline StoreStatus upgrade_password_hash(UserStore& users, std::string_view email, std::string_view user_id,
                                         std::string_view old_hash, const std::string& new_hash) {
  bool replaced = false;
  const StoreStatus status = users.update_user(email, [&](User& u) {
    if (u.user_id != user_id || u.password_hash != old_hash) return;
    u.password_hash = new_hash;
    replaced = true;
  });
  return status == StoreStatus::ok && !replaced ? StoreStatus::not_found : status;
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
/// refresh token (returned, shown once). Refuses (status invalid, the
/// reason in `error`) an email or password no login could use: see
/// email_problem() and password_problem(). @p now is the first refresh
/// token's issue time.
inline IssuedRefreshToken create_user(UserStore& users, std::string_view email, std::string_view password,
                                      std::uint32_t rounds = default_pbkdf2_rounds, std::int64_t now = system_now()) {
  IssuedRefreshToken out;
  const char* problem = email_problem(email);
  if (!problem) problem = password_problem(password);
  if (problem) {
    out.error = problem;
    return out;
  }
  User user;
  user.user_id = generate_user_id();
  user.email = std::string(email);
  user.password_hash = hash_password(password, rounds);
  std::string token = generate_refresh_token();
  user.refresh_token_sha256 = refresh_token_hash(token);
  user.refresh_token_issued_at = now;
  out.status = users.add_user(user);
  if (out.status == StoreStatus::ok) {
    out.user_id = user.user_id;
    out.refresh_token = std::move(token);
  }
  return out;
}

namespace detail {

/// @brief Users indexed by lower-cased email, user id and refresh-token
/// hash. Not synchronised: the stores wrap it in their own locking.
///
/// Every operation costs constant time (expected), so loading n users is
/// O(n), and so is copying: a copy shares the bulk of the users (an
/// immutable base) with the original and carries only the changes made
/// since (an overlay, folded into a new base once it grows past a sixteenth
/// of the users). A store can thus prepare a write on a copy while readers
/// go on using the original, without copying 10^5 users per write.
class user_index {
 public:
  const User* by_email(std::string_view email) const { return by_key(ascii_lower(email)); }

  const User* by_refresh_token_hash(std::string_view token_sha256) const {
    const std::string token(token_sha256);
    if (!overlay_tokens_.empty()) {
      auto o = overlay_tokens_.find(token);
      if (o != overlay_tokens_.end()) return by_key(o->second);
    }
    auto it = base_->by_token.find(token);
    if (it == base_->by_token.end() || overridden(it->second)) return nullptr;
    return &base_->by_email.at(it->second);
  }

  /// @brief Fields every stored user must have: text a JSON file can hold.
  static bool storable(const User& u) {
    return !u.email.empty() && !u.user_id.empty() && is_valid_utf8(u.email) && is_valid_utf8(u.user_id) &&
           is_valid_utf8(u.password_hash) && is_valid_utf8(u.refresh_token_sha256) && u.refresh_generation >= 0 &&
           u.refresh_token_issued_at >= 0;
  }

  StoreStatus add(const User& user) { return add(User(user)); }

  /// @brief Adds @p user (moved in); already_exists when its email, id or
  /// refresh-token hash is taken, invalid when not storable.
  StoreStatus add(User&& user) {
    if (!storable(user)) return StoreStatus::invalid;
    std::string key = ascii_lower(user.email);
    if (by_key(key) || id_taken(user.user_id) || token_taken(user.refresh_token_sha256))
      return StoreStatus::already_exists;
    ++size_;
    if (base_is_mine()) {
      base_data& b = *base_;
      b.ids.insert(user.user_id);
      if (!user.refresh_token_sha256.empty()) b.by_token.emplace(user.refresh_token_sha256, key);
      b.order.push_back(key);
      b.by_email.emplace(std::move(key), std::move(user));
      return StoreStatus::ok;
    }
    if (base_->by_email.count(key)) {
      removed_ids_.erase(user.user_id);  // re-added where it was removed: back at its old place
    } else {
      overlay_ids_.insert(user.user_id);
      if (!overlay_.count(key)) added_order_.push_back(key);
    }
    if (!user.refresh_token_sha256.empty()) overlay_tokens_[user.refresh_token_sha256] = key;
    overlay_[key] = std::move(user);
    compact_if_large();
    return StoreStatus::ok;
  }

  /// @brief Applies @p change to a copy; commits it only if the identity is
  /// unchanged and the new refresh-token hash is not someone else's.
  StoreStatus update(std::string_view email, const std::function<void(User&)>& change) {
    const std::string key = ascii_lower(email);
    const User* current = by_key(key);
    if (!current) return StoreStatus::not_found;
    User updated = *current;
    change(updated);
    if (ascii_lower(updated.email) != key || updated.user_id != current->user_id || !storable(updated))
      return StoreStatus::invalid;
    const bool new_token = updated.refresh_token_sha256 != current->refresh_token_sha256;
    if (new_token && token_taken(updated.refresh_token_sha256)) return StoreStatus::already_exists;
    if (base_is_mine()) {
      base_data& b = *base_;
      auto it = b.by_email.find(key);
      if (new_token) {
        b.by_token.erase(it->second.refresh_token_sha256);
        if (!updated.refresh_token_sha256.empty()) b.by_token.emplace(updated.refresh_token_sha256, key);
      }
      it->second = std::move(updated);
      return StoreStatus::ok;
    }
    overlay_tokens_.erase(current->refresh_token_sha256);
    if (!updated.refresh_token_sha256.empty()) overlay_tokens_[updated.refresh_token_sha256] = key;
    overlay_[key] = std::move(updated);
    compact_if_large();
    return StoreStatus::ok;
  }

  /// @brief Removes the user with this email; not_found when there is none.
  StoreStatus remove(std::string_view email) {
    const std::string key = ascii_lower(email);
    const User* current = by_key(key);
    if (!current) return StoreStatus::not_found;
    --size_;
    if (!base_is_mine() || !base_->by_email.count(key)) {
      overlay_tokens_.erase(current->refresh_token_sha256);
      if (base_->by_email.count(key)) {
        removed_ids_.insert(current->user_id);
      } else {
        overlay_ids_.erase(current->user_id);
      }
      overlay_[key] = std::nullopt;
      compact_if_large();
      return StoreStatus::ok;
    }
    // Only in place in a base this index alone holds (rare: the stores
    // remove through copies); the order list is rebuilt without it.
    base_data& b = *base_;
    auto it = b.by_email.find(key);
    b.by_token.erase(it->second.refresh_token_sha256);
    b.ids.erase(it->second.user_id);
    b.by_email.erase(it);
    b.order.erase(std::find(b.order.begin(), b.order.end(), key));
    return StoreStatus::ok;
  }

  /// @brief Room for @p n users without rehashing (for a load).
  void reserve(std::size_t n) {
    if (!base_is_mine()) return;
    base_->by_email.reserve(n);
    base_->by_token.reserve(n);
    base_->ids.reserve(n);
    base_->order.reserve(n);
  }

  std::size_t size() const noexcept { return size_; }

  /// @brief Calls @p f(const User&) for every user, in insertion order.
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& key : base_->order) {
      if (!overlay_.empty()) {
        auto o = overlay_.find(key);
        if (o != overlay_.end()) {
          if (o->second) f(*o->second);
          continue;
        }
      }
      f(base_->by_email.at(key));
    }
    for (const auto& key : added_order_) {
      const auto& o = overlay_.at(key);
      if (o) f(*o);
    }
  }

  std::vector<User> list() const {
    std::vector<User> out;
    out.reserve(size_);
    for_each([&](const User& u) { out.push_back(u); });
    return out;
  }

 private:
  struct base_data {
    std::unordered_map<std::string, User> by_email;         // lower-cased email -> user
    std::unordered_map<std::string, std::string> by_token;  // hash -> lower-cased email
    std::unordered_set<std::string> ids;                    // every user id, for uniqueness
    std::vector<std::string> order;                         // insertion order
  };

  // A base no copy shares can change in place (loading, MemoryUserStore).
  bool base_is_mine() const noexcept { return overlay_.empty() && base_.use_count() == 1; }

  bool overridden(const std::string& key) const { return !overlay_.empty() && overlay_.count(key); }

  const User* by_key(const std::string& key) const {
    if (!overlay_.empty()) {
      auto o = overlay_.find(key);
      if (o != overlay_.end()) return o->second ? &*o->second : nullptr;
    }
    auto it = base_->by_email.find(key);
    return it == base_->by_email.end() ? nullptr : &it->second;
  }

  bool id_taken(const std::string& id) const {
    return overlay_ids_.count(id) || (base_->ids.count(id) && !removed_ids_.count(id));
  }

  bool token_taken(const std::string& token) const {
    if (token.empty()) return false;
    if (overlay_tokens_.count(token)) return true;
    auto it = base_->by_token.find(token);
    return it != base_->by_token.end() && !overridden(it->second);
  }

  // Folds the overlay into a new base once it holds more than a sixteenth
  // of the users: O(n) once per n/16 changes.
  void compact_if_large() {
    if (overlay_.size() <= 256 + base_->by_email.size() / 16) return;
    user_index fresh;
    fresh.reserve(size_);
    for_each([&](const User& u) { fresh.add(User(u)); });
    *this = std::move(fresh);
  }

  std::shared_ptr<base_data> base_ = std::make_shared<base_data>();
  std::unordered_map<std::string, std::optional<User>> overlay_;  // changed since base_; nullopt: removed
  std::unordered_map<std::string, std::string> overlay_tokens_;   // current hashes of overlay users -> key
  std::unordered_set<std::string> overlay_ids_;                   // ids of users not in base_
  std::unordered_set<std::string> removed_ids_;                   // ids of base_ users removed
  std::vector<std::string> added_order_;                          // keys not in base_, in insertion order
  std::size_t size_ = 0;
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
