#pragma once
/// @file
/// @brief A UserStore kept in one JSON file that several processes (the
/// server and iwsec-admin) share safely.

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include "detail/file.hpp"
#include "detail/json.hpp"
#include "user_store.hpp"

namespace iwsec {

/// @brief Thrown when a users file exists but cannot be read or understood.
class store_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief Users in a JSON file (`users.json`).
///
/// Writes take an exclusive lock on `<file>.lock`, re-read the file if
/// another process changed it, and replace it atomically (write, fsync,
/// rename, fsync the directory), so concurrent writers never lose each
/// other's changes. Reads check the file's identity (one stat) and reload it
/// when it changed, so a change made by another process applies to every
/// request that starts after that process's write returned.
class JsonFileUserStore : public UserStore {
 public:
  /// @brief Opens (or, on first write, creates) the users file at @p path.
  /// Throws store_error when the file exists but is unreadable or invalid.
  explicit JsonFileUserStore(std::string path) : path_(std::move(path)), lock_path_(path_ + ".lock") {
    // A missing directory fails here, by name, not as an I/O error on the first write.
    const std::string dir = detail::parent_directory(path_);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      const int e = ::stat(dir.c_str(), &st) != 0 ? errno : ENOTDIR;
      throw store_error("iwsec: cannot use users file " + path_ + ": directory " + dir + ": " + std::strerror(e));
    }
    std::unique_lock<std::shared_mutex> lock(mutex_);
    std::string error;
    if (!reload_locked(error)) throw store_error("iwsec: cannot load " + path_ + ": " + error);
  }

  const std::string& path() const noexcept { return path_; }

  std::optional<User> find_by_email(std::string_view email) override {
    return read([&](const detail::user_index& index) {
      const User* u = index.by_email(email);
      return u ? std::optional<User>(*u) : std::nullopt;
    });
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    return read([&](const detail::user_index& index) {
      const User* u = index.by_refresh_token_hash(token_sha256);
      return u ? std::optional<User>(*u) : std::nullopt;
    });
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    return read([&](const detail::user_index& index) -> std::optional<UserStatus> {
      const User* u = index.by_email(email);
      if (!u) return std::nullopt;
      return UserStatus{u->refresh_generation, u->disabled, u->user_id};
    });
  }

  std::vector<User> list_users() override {
    return read([](const detail::user_index& index) { return index.list(); });
  }

  StoreStatus add_user(const User& user) override {
    return write([&](detail::user_index& index) { return index.add(user); });
  }

  StoreStatus update_user(std::string_view email, const std::function<void(User&)>& change) override {
    return write([&](detail::user_index& index) { return index.update(email, change); });
  }

  StoreStatus delete_user(std::string_view email) override {
    return write([&](detail::user_index& index) { return index.remove(email); });
  }

  /// @brief The file's text for @p users (the format this store reads).
  static std::string serialize(const std::vector<User>& users) {
    std::string out = "{\n  \"version\": 1,\n  \"users\": [";
    for (std::size_t i = 0; i < users.size(); ++i) {
      const User& u = users[i];
      out += i ? ",\n    {" : "\n    {";
      out += "\"user_id\": ";
      detail::append_json_string(out, u.user_id);
      out += ", \"email\": ";
      detail::append_json_string(out, u.email);
      out += ", \"password_hash\": ";
      detail::append_json_string(out, u.password_hash);
      out += ", \"refresh_token_sha256\": ";
      detail::append_json_string(out, u.refresh_token_sha256);
      out += ", \"refresh_generation\": " + std::to_string(u.refresh_generation);
      out += u.disabled ? ", \"disabled\": true}" : ", \"disabled\": false}";
    }
    out += users.empty() ? "]\n}\n" : "\n  ]\n}\n";
    return out;
  }

  /// @brief Parses the file's text; nothing (and a reason in @p error) when invalid.
  static std::optional<std::vector<User>> parse(std::string_view text, std::string& error) {
    const auto doc = detail::parse_json_strict(text, 4, true);
    if (!doc || !doc->is<picojson::object>()) {
      error = "not a JSON object (or a duplicate key)";
      return std::nullopt;
    }
    const auto& root = doc->get<picojson::object>();
    const auto* version = detail::json_member(root, "version");
    const auto* users = detail::json_member(root, "users");
    if (!version || detail::json_non_negative_integer(*version) != std::optional<std::int64_t>(1)) {
      error = "\"version\" must be 1";
      return std::nullopt;
    }
    if (!users || !users->is<picojson::array>()) {
      error = "\"users\" must be an array";
      return std::nullopt;
    }
    std::vector<User> out;
    for (const auto& item : users->get<picojson::array>()) {
      if (!item.is<picojson::object>()) {
        error = "each user must be an object";
        return std::nullopt;
      }
      const auto& o = item.get<picojson::object>();
      User u;
      const auto text_field = [&](const char* name, std::string& field) {
        const auto* v = detail::json_member(o, name);
        if (!v || !v->is<std::string>()) return false;
        field = v->get<std::string>();
        return true;
      };
      const auto* generation = detail::json_member(o, "refresh_generation");
      const auto* disabled = detail::json_member(o, "disabled");
      const auto gen = generation ? detail::json_non_negative_integer(*generation) : std::nullopt;
      if (!text_field("user_id", u.user_id) || !text_field("email", u.email) ||
          !text_field("password_hash", u.password_hash) ||
          !text_field("refresh_token_sha256", u.refresh_token_sha256) || !gen || !disabled || !disabled->is<bool>()) {
        error = "user #" + std::to_string(out.size() + 1) + " lacks a field or has one of the wrong type";
        return std::nullopt;
      }
      u.refresh_generation = *gen;
      u.disabled = disabled->get<bool>();
      out.push_back(std::move(u));
    }
    return out;
  }

 private:
  template <typename F>
  auto read(F&& f) -> decltype(f(std::declval<const detail::user_index&>())) {
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      if (!changed_on_disk_locked()) return f(index_);
    }
    std::unique_lock<std::shared_mutex> lock(mutex_);
    if (changed_on_disk_locked()) {
      std::string ignored;  // a broken file on disk: keep serving the last good state
      reload_locked(ignored);
    }
    return f(index_);
  }

  template <typename F>
  StoreStatus write(F&& mutate) {
    std::lock_guard<std::mutex> one_writer(write_mutex_);
    detail::file_lock cross_process(lock_path_);
    if (!cross_process) return StoreStatus::io_error;
    detail::user_index next;
    {
      std::unique_lock<std::shared_mutex> lock(mutex_);
      std::string error;
      if (changed_on_disk_locked() && !reload_locked(error)) return StoreStatus::io_error;
      next = index_;
    }
    const StoreStatus status = mutate(next);
    if (status != StoreStatus::ok) return status;
    if (!detail::write_file_atomically(path_, serialize(next.list()), 0600)) return StoreStatus::io_error;
    std::unique_lock<std::shared_mutex> lock(mutex_);
    index_ = std::move(next);
    std::string error;
    adopt_current_file_locked(error);
    return StoreStatus::ok;
  }

  bool changed_on_disk_locked() const {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) return loaded_.has_value();
    return !loaded_ || detail::file_identity::of(st) != *loaded_;
  }

  // Holds the loaded file open: its inode cannot be reused while we compare
  // against it, so "same identity" really means "same file version".
  bool adopt_current_file_locked(std::string& error, std::string* text = nullptr) {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY);
    if (!fd) {
      if (errno == ENOENT) {
        loaded_fd_.reset();
        loaded_.reset();
        if (text) text->clear();
        return true;
      }
      error = std::string("cannot open: ") + std::strerror(errno);
      return false;
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) {
      error = std::string("cannot stat: ") + std::strerror(errno);
      return false;
    }
    if (text && !detail::read_all(fd.get(), *text)) {
      error = std::string("cannot read: ") + std::strerror(errno);
      return false;
    }
    loaded_ = detail::file_identity::of(st);
    loaded_fd_ = std::move(fd);
    return true;
  }

  bool reload_locked(std::string& error) {
    std::string text;
    auto previous = loaded_;
    // Keep the served version open until a new one is accepted, so that its
    // inode cannot be reused while loaded_ still names it.
    detail::unique_fd previous_fd = std::move(loaded_fd_);
    if (!adopt_current_file_locked(error, &text)) {
      loaded_fd_ = std::move(previous_fd);
      return false;
    }
    detail::user_index next;
    if (loaded_) {
      auto users = parse(text, error);
      if (!users) {
        loaded_ = previous;  // retry on the next request
        loaded_fd_ = std::move(previous_fd);
        return false;
      }
      for (const auto& u : *users) {
        if (next.add(u) != StoreStatus::ok) {
          error = "duplicate or empty email, user id or refresh token in the file";
          loaded_ = previous;
          loaded_fd_ = std::move(previous_fd);
          return false;
        }
      }
    }
    index_ = std::move(next);
    return true;
  }

  std::string path_;
  std::string lock_path_;
  std::shared_mutex mutex_;  // guards index_, loaded_, loaded_fd_
  std::mutex write_mutex_;   // one writer at a time inside this process
  detail::user_index index_;
  std::optional<detail::file_identity> loaded_;
  detail::unique_fd loaded_fd_;
};

}  // namespace iwsec
