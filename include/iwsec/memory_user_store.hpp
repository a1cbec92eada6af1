/// @brief MemoryUserStore: a UserStore in process memory.
/// @file
#pragma once

#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "detail/thread_safety.hpp"
#include "detail/user_index.hpp"
#include "user.hpp"
#include "user_store_interface.hpp"

namespace iwsec {

/// @brief A UserStore in process memory: for tests and hosts that keep users
/// elsewhere and load them at start.
class MemoryUserStore : public UserStore {
 public:
  std::optional<User> find_by_email(std::string_view email) override {
    detail::ReaderLock lock(mutex_);
    const User* u = index_.by_email(email);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    detail::ReaderLock lock(mutex_);
    const User* u = index_.by_refresh_token_hash(token_sha256);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  StoreResult add_user(const User& user) override {
    detail::WriterLock lock(mutex_);
    return index_.add(user);
  }

  StoreResult update_user(std::string_view email, const std::function<void(User&)>& change) override {
    detail::WriterLock lock(mutex_);
    return index_.update(email, change);
  }

  std::vector<User> list_users() override {
    detail::ReaderLock lock(mutex_);
    return index_.list();
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    detail::ReaderLock lock(mutex_);
    const User* u = index_.by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled, u->user_id};
  }

  StoreResult delete_user(std::string_view email) override {
    detail::WriterLock lock(mutex_);
    return index_.remove(email);
  }

 private:
  detail::SharedMutex mutex_;
  detail::user_index index_ IWSEC_GUARDED_BY(mutex_);
};

}  // namespace iwsec
