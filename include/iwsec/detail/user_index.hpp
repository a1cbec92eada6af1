/// @brief detail::user_index: users indexed by email, id and refresh-token hash, copied on write.
/// @file
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../user.hpp"
#include "crypto.hpp"
#include "json.hpp"

namespace iwsec {
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

  /// @brief Why a write is refused, in the words every store uses (the
  /// PostgreSQL store keeps the same rules with the same reasons).
  static constexpr const char* not_storable =
      "a user needs an email and a user id, all text in valid UTF-8, and no negative generation or issue time";
  static constexpr const char* no_such_user = "no user with this email";
  static constexpr const char* token_held = "another user holds this refresh token";

  /// @brief Whether the change of @p before (found by @p key, its lower-cased
  /// email) into @p after may be stored: the identity (email, user id)
  /// unchanged and the result storable. ok, or invalid with the reason.
  static StoreResult change_problem(std::string_view key, const User& before, const User& after) {
    if (ascii_lower(after.email) != key || after.user_id != before.user_id)
      return StoreResult(StoreStatus::invalid, "a change may not alter a user's email or user id");
    if (!storable(after)) return StoreResult(StoreStatus::invalid, not_storable);
    return StoreStatus::ok;
  }

  /// @brief Fields every stored user must have: text a JSON file can hold.
  static bool storable(const User& u) {
    return !u.email.empty() && !u.user_id.empty() && is_valid_utf8(u.email) && is_valid_utf8(u.user_id) &&
           is_valid_utf8(u.password_hash) && is_valid_utf8(u.refresh_token_sha256) && u.refresh_generation >= 0 &&
           u.refresh_token_issued_at >= 0;
  }

  StoreResult add(const User& user) { return add(User(user)); }

  /// @brief Adds @p user (moved in); already_exists when its email, id or
  /// refresh-token hash is taken, invalid when not storable.
  StoreResult add(User&& user) {
    if (!storable(user)) return StoreResult(StoreStatus::invalid, not_storable);
    std::string key = ascii_lower(user.email);
    if (by_key(key)) return StoreResult(StoreStatus::already_exists, "a user with this email exists");
    if (id_taken(user.user_id)) return StoreResult(StoreStatus::already_exists, "a user with this user id exists");
    if (token_taken(user.refresh_token_sha256))
      return StoreResult(StoreStatus::already_exists, token_held);
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
  StoreResult update(std::string_view email, const std::function<void(User&)>& change) {
    const std::string key = ascii_lower(email);
    const User* current = by_key(key);
    if (!current) return StoreResult(StoreStatus::not_found, no_such_user);
    User updated = *current;
    change(updated);
    if (StoreResult problem = change_problem(key, *current, updated); !problem.ok()) return problem;
    const bool new_token = updated.refresh_token_sha256 != current->refresh_token_sha256;
    if (new_token && token_taken(updated.refresh_token_sha256))
      return StoreResult(StoreStatus::already_exists, token_held);
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
  StoreResult remove(std::string_view email) {
    const std::string key = ascii_lower(email);
    const User* current = by_key(key);
    if (!current) return StoreResult(StoreStatus::not_found, no_such_user);
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
}  // namespace iwsec
