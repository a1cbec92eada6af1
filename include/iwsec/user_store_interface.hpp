/// @brief The UserStore interface: the user database the security routes read and write.
/// @file
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "user.hpp"

namespace iwsec {

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
  virtual StoreResult add_user(const User& user) = 0;

  /// @brief Applies @p change to the user with this email, atomically with
  /// respect to every other write (and, for durable stores, durably). The
  /// change must not alter the email or the user id.
  virtual StoreResult update_user(std::string_view email, const std::function<void(User&)>& change) = 0;

  /// @brief Every user, in a stable order.
  virtual std::vector<User> list_users() = 0;

  /// @brief Removes the user with this email (ASCII case-insensitive): their
  /// refresh token stops working at once, and so do their access tokens
  /// (a token names its holder by `user_id`, which a user created later
  /// under the same email does not share). not_found when there is no such
  /// user. Required (since 0.x): a default that removed nothing would let a
  /// store skip the rule that a deleted user's tokens stop working.
  virtual StoreResult delete_user(std::string_view email) = 0;

  /// @brief Generation and disabled flag of a user: the hot path of every
  /// access-token check. Override when a cheaper answer than a copy exists.
  virtual std::optional<UserStatus> status_of(std::string_view email) {
    auto u = find_by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled, std::move(u->user_id)};
  }
};

}  // namespace iwsec
