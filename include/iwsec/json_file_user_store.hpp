#pragma once
/// @file
/// @brief A UserStore kept in one JSON file that several processes (the
/// server and iwsec-admin) share safely.

#include <cerrno>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
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
#include "errors.hpp"
#include "user_store.hpp"

namespace iwsec {

/// @brief Thrown when a users file exists but cannot be read or understood.
class store_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

/// @brief A lock a thread can wait for with a deadline, on a mutex and a
/// condition variable (std::timed_mutex's try_lock_for goes through
/// pthread_mutex_clocklock, which ThreadSanitizer in GCC 12 does not see).
class waitable_lock {
 public:
  void lock() {
    std::unique_lock<std::mutex> guard(mutex_);
    released_.wait(guard, [this] { return !held_; });
    held_ = true;
  }
  template <typename Rep, typename Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& patience) {
    std::unique_lock<std::mutex> guard(mutex_);
    if (!released_.wait_for(guard, patience, [this] { return !held_; })) return false;
    held_ = true;
    return true;
  }
  bool try_lock() { return try_lock_for(std::chrono::seconds(0)); }
  void unlock() {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      held_ = false;
    }
    released_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  bool held_ = false;
};

}  // namespace detail

/// @brief Users in a JSON file (`users.json`).
///
/// Writes take an exclusive lock on `<file>.lock`, re-read the file if
/// another process changed it, and replace it atomically (an exclusive
/// temporary, fsync, rename, fsync the directory; owner and mode kept), so
/// concurrent writers never lose each other's changes. Reads check the
/// file's identity (one stat) and reload it when it changed, so a change
/// made by another process applies to every request that starts after that
/// process's write returned. The reload is prepared beside the live copy
/// and swapped in under the lock; when the file is as this store writes it,
/// only the lines that changed are parsed, so applying another process's
/// change to 10^5 users costs one read of the file, not a parse of it.
///
/// Fails closed: when the file changed but cannot be reloaded (permission
/// denied, descriptors exhausted, invalid content), every read throws
/// StateUnavailable (the routes answer 503) instead of answering from the
/// stale copy, one line saying why goes to the log, and the store recovers
/// by itself once the file can be read. Loading and every write cost time
/// linear in the number of users.
class JsonFileUserStore : public UserStore {
 public:
  /// @brief Receives one line (no newline) about the file: why it cannot be
  /// reloaded, that it can again, a write whose directory fsync failed.
  /// Never holds a secret.
  using Log = std::function<void(const std::string& line)>;

  /// @brief The default log: "iwsec: LINE" on standard error.
  static Log stderr_log() {
    return [](const std::string& line) {
      const std::string text = "iwsec: " + line + "\n";
      std::fwrite(text.data(), 1, text.size(), stderr);
      std::fflush(stderr);
    };
  }

  /// @brief Opens (or, on first write, creates) the users file at @p path.
  /// Throws store_error when the file exists but is unreadable or invalid.
  /// @p log may be empty (no log).
  explicit JsonFileUserStore(std::string path, Log log = stderr_log())
      : path_(std::move(path)), lock_path_(path_ + ".lock"), log_(std::move(log)) {
    // A missing directory fails here, by name, not as an I/O error on the first write.
    const std::string dir = detail::parent_directory(path_);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      const int e = ::stat(dir.c_str(), &st) != 0 ? errno : ENOTDIR;
      throw store_error("iwsec: cannot use users file " + path_ + ": directory " + dir + ": " + std::strerror(e));
    }
    bool unstamped = false;
    {
      std::lock_guard<detail::waitable_lock> loading(load_mutex_);
      std::string error;
      if (!load_and_swap_loading(error)) throw store_error("iwsec: cannot load " + path_ + ": " + error);
      unstamped = unstamped_;
      constructed_ = true;
    }
    // Users from before issue times were kept got this load's time as their
    // refresh token's issue time: keep it (one write), so a restart does not
    // start their tokens' clocks again. A store that cannot write now keeps
    // it in memory and writes it with its next change.
    if (unstamped) write([](detail::user_index&) { return StoreStatus::ok; });
  }

  JsonFileUserStore(const JsonFileUserStore&) = delete;
  JsonFileUserStore& operator=(const JsonFileUserStore&) = delete;

  const std::string& path() const noexcept { return path_; }

  /// @brief Why the last failed write or reload failed (path and strerror
  /// text), for a program to print; empty when nothing failed yet.
  std::string last_error() const {
    std::lock_guard<std::mutex> lock(error_mutex_);
    return last_error_;
  }

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
    std::string out;
    begin_file(out, users.size());
    for (std::size_t i = 0; i < users.size(); ++i) append_user(out, users[i], i == 0);
    end_file(out, users.empty());
    return out;
  }

  /// @brief Parses the file's text; nothing (and a reason in @p error) when invalid.
  static std::optional<std::vector<User>> parse(std::string_view text, std::string& error) {
    std::vector<User> out;
    if (!parse_users(text, error, [&](User&& u) {
          out.push_back(std::move(u));
          return true;
        }))
      return std::nullopt;
    return out;
  }

 private:
  static constexpr std::size_t bytes_per_user_estimate = 320;
  // Readers wait this long for a reload, then fail closed (503): never an
  // answer from a copy known to be stale.
  static constexpr std::chrono::milliseconds reload_wait{2000};
  // Up to this many changed lines, a reload patches the live copy.
  static constexpr std::size_t max_patched_lines = 512;

  static void begin_file(std::string& out, std::size_t users) {
    out.reserve(64 + users * bytes_per_user_estimate);
    out += "{\n  \"version\": 1,\n  \"users\": [";
  }

  static void end_file(std::string& out, bool empty) { out += empty ? "]\n}\n" : "\n  ]\n}\n"; }

  // One user per line: the format version 1 has always had.
  static void append_user(std::string& out, const User& u, bool first) {
    out += first ? "\n    {" : ",\n    {";
    out += "\"user_id\": ";
    detail::append_json_string(out, u.user_id);
    out += ", \"email\": ";
    detail::append_json_string(out, u.email);
    out += ", \"password_hash\": ";
    detail::append_json_string(out, u.password_hash);
    out += ", \"refresh_token_sha256\": ";
    detail::append_json_string(out, u.refresh_token_sha256);
    out += ", \"refresh_generation\": " + std::to_string(u.refresh_generation);
    out += u.disabled ? ", \"disabled\": true" : ", \"disabled\": false";
    // Added later: files without it still load (see parse_users).
    if (u.refresh_token_issued_at) out += ", \"refresh_token_issued_at\": " + std::to_string(u.refresh_token_issued_at);
    out += '}';
  }

  static std::string serialize_index(const detail::user_index& index) {
    std::string out;
    begin_file(out, index.size());
    bool first = true;
    index.for_each([&](const User& u) {
      append_user(out, u, first);
      first = false;
    });
    end_file(out, first);
    return out;
  }

  // The text of each element of @p array (a JSON array the strict parser
  // already accepted) that is an object; false at the first that is not.
  template <typename OnObject>
  static bool for_each_object(std::string_view array, OnObject&& on_object) {
    const char* p = array.data() + 1;  // past '['
    const char* const end = array.data() + array.size();
    const auto skip_ws = [&] {
      while (p != end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
    };
    skip_ws();
    if (p != end && *p == ']') return true;
    for (;;) {
      skip_ws();
      if (p == end || *p != '{') return false;
      const char* start = p;
      std::size_t depth = 0;
      for (; p != end; ++p) {
        if (*p == '"') {
          for (++p; p != end && *p != '"'; ++p)
            if (*p == '\\') ++p;
        } else if (*p == '{' || *p == '[') {
          ++depth;
        } else if ((*p == '}' || *p == ']') && --depth == 0) {
          ++p;
          break;
        }
      }
      if (!on_object(std::string_view(start, static_cast<std::size_t>(p - start)))) return false;
      skip_ws();
      if (p == end) return false;
      if (*p == ']') return true;
      ++p;  // ','
    }
  }

  // Walks the text once to check it (strict JSON, no duplicate key), then
  // each user object once more: no DOM, so 10^5 users parse in well under
  // a second. Calls on_user(User&&) for each; false (and @p error) when the
  // text is not a users file or on_user refused one.
  template <typename OnUser>
  static bool parse_users(std::string_view text, std::string& error, OnUser&& on_user, bool* unstamped = nullptr,
                          std::int64_t loaded_at = 0) {
    // A user without "refresh_token_issued_at" (written before it existed)
    // gets @p loaded_at: the store passes the time it loads the file, so the
    // refresh token's clock starts when it is first loaded (parse() leaves 0).
    std::string scratch(text.size(), '\0');
    std::optional<std::int64_t> version;
    std::string_view users;
    bool users_is_array = false;
    detail::flat_json_parser root(text, &scratch[0]);
    if (!root.parse_object(4, [&](std::string_view name, const detail::json_value_view& v) {
          if (name == "version") version = detail::json_non_negative_integer(v);
          if (name == "users") {
            users = v.raw;
            users_is_array = v.kind == detail::json_kind::array;
          }
        })) {
      error = "not a JSON object (or a duplicate key)";
      return false;
    }
    if (version != std::optional<std::int64_t>(1)) {
      error = "\"version\" must be 1";
      return false;
    }
    if (!users_is_array) {
      error = "\"users\" must be an array";
      return false;
    }
    std::size_t count = 0;
    bool refused = false;
    const bool objects = for_each_object(users, [&](std::string_view object) {
      ++count;
      User u;
      bool have_id = false, have_email = false, have_hash = false, have_token = false, have_disabled = false;
      std::optional<std::int64_t> generation;
      std::optional<std::int64_t> issued_at;
      bool have_issued_at = false;
      const auto text_field = [](const detail::json_value_view& v, std::string& field, bool& have) {
        have = v.kind == detail::json_kind::string;
        if (have) field.assign(v.text.data(), v.text.size());
      };
      detail::flat_json_parser parser(object, &scratch[0]);
      const bool parsed = parser.parse_object(2, [&](std::string_view name, const detail::json_value_view& v) {
        if (name == "user_id") {
          text_field(v, u.user_id, have_id);
        } else if (name == "email") {
          text_field(v, u.email, have_email);
        } else if (name == "password_hash") {
          text_field(v, u.password_hash, have_hash);
        } else if (name == "refresh_token_sha256") {
          text_field(v, u.refresh_token_sha256, have_token);
        } else if (name == "refresh_generation") {
          generation = detail::json_non_negative_integer(v);
        } else if (name == "disabled") {
          have_disabled = v.kind == detail::json_kind::literal && (v.raw == "true" || v.raw == "false");
          u.disabled = v.raw == "true";
        } else if (name == "refresh_token_issued_at") {
          have_issued_at = true;
          issued_at = detail::json_non_negative_integer(v);
        }
      });
      if (!parsed || !have_id || !have_email || !have_hash || !have_token || !generation || !have_disabled ||
          (have_issued_at && !issued_at)) {
        error = "user #" + std::to_string(count) + " lacks a field or has one of the wrong type";
        return false;
      }
      u.refresh_generation = *generation;
      u.refresh_token_issued_at = issued_at && *issued_at ? *issued_at : loaded_at;
      if ((!issued_at || !*issued_at) && unstamped) *unstamped = true;
      if (!on_user(std::move(u))) {
        error = "user #" + std::to_string(count) + " has an empty or duplicate email, user id or refresh token";
        refused = true;
        return false;
      }
      return true;
    });
    if (!objects && !refused && error.empty()) error = "each user must be an object";
    return objects;
  }

  static constexpr std::string_view frame_head[3] = {"{", "  \"version\": 1,", "  \"users\": ["};
  static constexpr std::string_view frame_tail[3] = {"  ]", "}", ""};

  static std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> out;
    out.reserve(text.size() / bytes_per_user_estimate + 8);
    for (;;) {
      const auto nl = text.find('\n');
      out.push_back(text.substr(0, nl));
      if (nl == std::string_view::npos) return out;
      text.remove_prefix(nl + 1);
    }
  }

  // Whether @p lines are serialize()'s frame around at least one user line,
  // each of the form it writes ("    {...}," and "    {...}" for the last).
  static bool canonical_shape(const std::vector<std::string_view>& lines) {
    if (lines.size() < 7) return false;
    for (std::size_t i = 0; i < 3; ++i)
      if (lines[i] != frame_head[i] || lines[lines.size() - 3 + i] != frame_tail[i]) return false;
    const std::size_t last = lines.size() - 4;
    for (std::size_t i = 3; i <= last; ++i) {
      const std::string_view l = lines[i];
      const std::string_view end = i == last ? "}" : "},";
      if (l.size() < 6 + end.size() || l.compare(0, 5, "    {") != 0 || l.compare(l.size() - end.size(), end.size(), end) != 0)
        return false;
    }
    return true;
  }

  // One user line of a canonical file, parsed like the whole file would be.
  static bool parse_user_line(std::string_view line, std::string& error, User& out, std::int64_t loaded_at = 0) {
    if (line.back() == ',') line.remove_suffix(1);
    std::string text = "{\"version\":1,\"users\":[";
    text.append(line.data(), line.size());
    text += "]}";
    bool got = false;
    return parse_users(
               text, error,
               [&](User&& u) {
                 out = std::move(u);
                 got = true;
                 return true;
               },
               nullptr, loaded_at) &&
           got;
  }

  enum class patch { applied, not_applicable, invalid };

  // Patches @p index (a copy of the users of @p old_text, a canonical file)
  // into the users of @p new_text when the new text is canonical too and
  // differs from the old in at most max_patched_lines lines between a common
  // beginning and a common end (what any iwsec write of one user produces):
  // the users of the old lines in between are removed and those of the new
  // ones added, with every check a full load makes. O(file size) to find the
  // lines, O(changed users) to parse and index.
  static patch apply_changed_lines(std::string_view old_text, std::string_view new_text, detail::user_index& index,
                                   std::string& error) {
    const auto old_lines = lines_of(old_text);
    const auto new_lines = lines_of(new_text);
    if (!canonical_shape(old_lines) || !canonical_shape(new_lines)) return patch::not_applicable;
    const std::size_t common = std::min(old_lines.size(), new_lines.size());
    std::size_t head = 0;
    while (head < common && old_lines[head] == new_lines[head]) ++head;
    std::size_t tail = 0;
    while (tail < common - head && old_lines[old_lines.size() - 1 - tail] == new_lines[new_lines.size() - 1 - tail])
      ++tail;
    const std::size_t old_end = old_lines.size() - tail, new_end = new_lines.size() - tail;
    if ((old_end - head) + (new_end - head) > max_patched_lines) return patch::not_applicable;
    for (std::size_t i = head; i < old_end; ++i) {
      User gone;
      if (!parse_user_line(old_lines[i], error, gone) || index.remove(gone.email) != StoreStatus::ok)
        return patch::not_applicable;
    }
    for (std::size_t i = head; i < new_end; ++i) {
      User added;
      std::string reason;
      const std::string which = "user #" + std::to_string(i - 2);
      if (!parse_user_line(new_lines[i], reason, added, system_now())) {
        error = which + " lacks a field or has one of the wrong type";
        return patch::invalid;
      }
      if (index.add(std::move(added)) != StoreStatus::ok) {
        error = which + " has an empty or duplicate email, user id or refresh token";
        return patch::invalid;
      }
    }
    return patch::applied;
  }

  template <typename F>
  auto read(F&& f) -> decltype(f(std::declval<const detail::user_index&>())) {
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      if (current_locked()) return f(index_);
    }
    refresh_for_reader();
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return f(index_);
  }

  // The file changed: load it beside the live copy (requests that arrived
  // before go on reading that copy) and swap it in. Requests that arrive
  // meanwhile wait for the new copy rather than answer from the old one; a
  // change made by iwsec-admin costs one read of the file and the parse of
  // the users it changed (see apply_changed_lines). Throws StateUnavailable
  // when the file cannot be loaded, or is still loading after reload_wait.
  void refresh_for_reader() {
    std::unique_lock<detail::waitable_lock> loading(load_mutex_, std::defer_lock);
    if (!loading.try_lock_for(reload_wait))
      throw StateUnavailable("iwsec: " + path_ + " changed and is still being reloaded");
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      if (current_locked()) return;  // loaded while we waited
    }
    std::string error;
    if (!load_and_swap_loading(error)) throw StateUnavailable("iwsec: cannot reload " + path_ + ": " + error);
  }

  template <typename F>
  StoreStatus write(F&& mutate) {
    std::lock_guard<std::mutex> one_writer(write_mutex_);
    detail::file_lock cross_process(lock_path_);
    if (!cross_process) return failed(cross_process.error());
    // Held through the write, so readers that notice the rename wait for
    // the swap below rather than parse the file this write produced.
    std::lock_guard<detail::waitable_lock> loading(load_mutex_);
    bool current;
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      current = current_locked();
    }
    std::string error;
    if (!current && !load_and_swap_loading(error)) return failed(error);
    detail::user_index next;
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      next = index_;
    }
    const StoreStatus status = mutate(next);
    if (status != StoreStatus::ok) return status;
    std::string text = serialize_index(next);
    detail::replace_result replaced = detail::replace_file(path_, text, 0600);
    if (!replaced.replaced) return failed(replaced.error);
    text_ = std::move(text);
    canonical_ = true;
    // The new file is in place and every later read sees it: the write is
    // done, whatever the directory fsync said (reporting a failure now
    // would be untrue), so that goes to the log.
    if (!replaced.warning.empty() && log_) log_(replaced.warning + " after replacing " + path_);
    struct stat st;
    const bool known = ::fstat(replaced.fd.get(), &st) == 0;
    {
      std::unique_lock<std::shared_mutex> lock(mutex_);
      std::swap(index_, next);
      loaded_ = known ? std::optional<detail::file_identity>(detail::file_identity::of(st)) : std::nullopt;
      exists_ = known;
      loaded_fd_ = std::move(replaced.fd);
    }
    return StoreStatus::ok;  // the previous index is freed here, outside the lock
  }

  StoreStatus failed(const std::string& error) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    last_error_ = error;
    return StoreStatus::io_error;
  }

  // Whether the loaded copy is the file's current version (one stat).
  bool current_locked() const {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) return errno == ENOENT && !exists_;
    return exists_ && loaded_ && detail::file_identity::of(st) == *loaded_;
  }

  // Loads the file beside the live copy and swaps it in; on failure keeps
  // the live copy (reads then throw) and logs the reason once. Caller holds
  // load_mutex_ (not mutex_).
  bool load_and_swap_loading(std::string& error) {
    detail::user_index next;
    std::optional<detail::file_identity> identity;
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY);
    if (!fd && errno != ENOENT) {
      error = detail::errno_text("cannot open " + path_);
    } else if (fd) {
      struct stat st;
      std::string text;
      if (::fstat(fd.get(), &st) != 0) {
        error = detail::errno_text("cannot stat " + path_);
      } else if (bad_content_ && *bad_content_ == detail::file_identity::of(st)) {
        error = bad_content_error_;  // this version was tried: do not parse it again per request
      } else if (text.reserve(static_cast<std::size_t>(st.st_size) + 1), !detail::read_all(fd.get(), text)) {
        error = detail::errno_text("cannot read " + path_);
      } else {
        identity = detail::file_identity::of(st);
        std::string reason;
        patch result = patch::not_applicable;
        if (canonical_ && exists_) {
          {
            std::shared_lock<std::shared_mutex> lock(mutex_);
            next = index_;  // cheap: shares the users with the live copy
          }
          result = apply_changed_lines(text_, text, next, reason);
        }
        bool canonical = result == patch::applied;
        if (result == patch::not_applicable) {
          next = detail::user_index();
          next.reserve(text.size() / bytes_per_user_estimate + 1);
          if (parse_users(
                  text, reason, [&](User&& u) { return next.add(std::move(u)) == StoreStatus::ok; }, &unstamped_,
                  system_now())) {
            result = patch::applied;
            canonical = text == serialize_index(next);
          } else {
            result = patch::invalid;
          }
        }
        if (result == patch::invalid) {
          bad_content_ = identity;
          bad_content_error_ = "invalid content: " + reason;
          error = bad_content_error_;
          identity.reset();
        } else {
          text_ = std::move(text);
          canonical_ = canonical;
        }
      }
    }
    if (!error.empty()) {
      failed(error);
      if (constructed_ && error != failing_ && log_) log_("cannot reload " + path_ + " (" + error + "); answering 503 until it can be read");
      failing_ = error;
      return false;
    }
    if (!fd) {
      text_.clear();
      canonical_ = false;
    }
    {
      std::unique_lock<std::shared_mutex> lock(mutex_);
      std::swap(index_, next);
      loaded_ = identity;
      exists_ = static_cast<bool>(fd);
      loaded_fd_ = std::move(fd);  // holds the inode, so its identity cannot be reused meanwhile
    }
    bad_content_.reset();
    if (!failing_.empty() && log_) log_("reloaded " + path_ + " again");
    failing_.clear();
    return true;  // the previous index is freed here, outside the lock
  }

  std::string path_;
  std::string lock_path_;
  Log log_;
  std::shared_mutex mutex_;     // guards index_, loaded_, exists_, loaded_fd_
  detail::waitable_lock load_mutex_;  // one load or write at a time; guards text_, canonical_, bad_content_*, failing_
  std::string text_;             // the loaded version's text, to find what the next version changed
  bool canonical_ = false;       // text_ is exactly what serialize would write for index_
  std::mutex write_mutex_;      // one writer at a time inside this process
  detail::user_index index_;
  std::optional<detail::file_identity> loaded_;
  bool exists_ = false;
  detail::unique_fd loaded_fd_;
  std::optional<detail::file_identity> bad_content_;
  std::string bad_content_error_;
  std::string failing_;  // the reason last logged, until a load succeeds
  bool unstamped_ = false;  // a load gave users without an issue time this load's time
  bool constructed_ = false;  // the constructor reports its failure by throwing, not in the log
  mutable std::mutex error_mutex_;
  std::string last_error_;
};

}  // namespace iwsec
