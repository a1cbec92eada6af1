/// @brief The audit trail's file: AuditFile (a server's writer), append_audit_line (an admin tool's), parse_audit_line (reading it back).
/// @file
#pragma once
// The file of docs/operations.md "The audit trail": JSON lines (audit.hpp's
// audit_json_line) appended with O_APPEND, mode 0600, owned like the data
// directory's other files.
//
// AuditFile is a server's writer (iwsec-server's; a host's Options::on_audit
// can hand it audit_json_line(e)): a bounded buffer drained by one writer
// thread. Unlike the access log it never drops a line: a full buffer makes
// the request wait. Lines reach the file within a second (the writer wakes
// on the first line and at least every 200 ms) and before exit (stop()
// drains). reopen() (SIGHUP, SIGUSR1) makes the writer open the path again
// for logrotate. Behind the small AuditSink interface, so another writer
// (the access log's) can take its place.
//
// append_audit_line() is an admin tool's (iwsec-admin's): one whole line, one
// write(2). parse_audit_line() reads a line back (`iwsec-admin audit`).

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <picojson.h>

#include "audit.hpp"
#include "detail/file.hpp"
#include "detail/thread_safety.hpp"

namespace iwsec {

/// @brief Where audit lines go.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  /// One whole line (newline included); may block, never drops.
  virtual void write(std::string line) = 0;
  /// Open the file again (after logrotate moved it).
  virtual void reopen() = 0;
  /// Everything written so far reaches the file; the writer ends.
  virtual void stop() = 0;
};

namespace detail {

/// Opens @p path for appending (created 0600; when root creates it, given
/// to the owner of @p owner_dir, so the account that owns the data
/// directory can still write it). Invalid fd and errno on failure.
inline unique_fd open_for_append(const std::string& path, const std::string& owner_dir) {
  auto fd = open_fd(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0600);
  if (!fd) return fd;
  struct stat owner;
  if (!owner_dir.empty() && ::stat(owner_dir.c_str(), &owner) == 0 && !give_to_owner(fd.get(), owner)) {
    const int e = errno;
    fd.reset();
    errno = e;
  }
  return fd;
}

}  // namespace detail

/// @brief A server's audit writer (see the file comment): never drops a line.
class AuditFile : public AuditSink {
 public:
  static constexpr std::size_t max_buffered_lines = 4096;

  /// Opens @p path now (so a start that cannot write its trail fails;
  /// error() says why when ok() is false). @p owner_dir: a file this
  /// creates as root is given to that directory's owner (empty: kept).
  /// @p log: where write failures are told (nullptr: nowhere).
  AuditFile(std::string path, std::string owner_dir, std::function<void(const std::string&)> log)
      : path_(std::move(path)), owner_dir_(std::move(owner_dir)), log_(std::move(log)) {
    fd_ = detail::open_for_append(path_, owner_dir_);
    if (!fd_) error_ = "cannot open audit log " + path_ + ": " + std::strerror(errno);
    if (fd_) writer_ = std::thread([this] { run(); });
  }

  /// The same, the file owned like the directory it is in (as the data
  /// directory's other files are).
  AuditFile(std::string path, std::function<void(const std::string&)> log)
      : AuditFile(path, detail::parent_directory(path), std::move(log)) {}

  ~AuditFile() override { stop(); }

  bool ok() const { return static_cast<bool>(fd_); }
  const std::string& error() const { return error_; }

  void write(std::string line) override {
    detail::Lock lock(mutex_);
    lock.wait(room_, [this]() IWSEC_REQUIRES(mutex_) { return lines_.size() < max_buffered_lines || stopping_; });
    if (writer_done_) {
      // After stop() no thread drains the queue: the line goes out now.
      if (fd_ && !detail::write_all(fd_.get(), line) && log_)
        log_("cannot write audit log " + path_ + ": " + std::strerror(errno));
      return;
    }
    lines_.push_back(std::move(line));
    if (lines_.size() == 1) wake_.notify_one();
  }

  void reopen() override {
    detail::Lock lock(mutex_);
    reopen_ = true;
    wake_.notify_one();
  }

  void stop() override {
    {
      detail::Lock lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      wake_.notify_one();
    }
    if (writer_.joinable()) writer_.join();
  }

 private:
  void run() {
    detail::Lock lock(mutex_);
    for (;;) {
      lock.wait_for(wake_, std::chrono::milliseconds(200),
                    [this]() IWSEC_REQUIRES(mutex_) { return !lines_.empty() || reopen_ || stopping_; });
      std::deque<std::string> batch;
      batch.swap(lines_);
      const bool reopen = reopen_;
      reopen_ = false;
      const bool last = stopping_;
      room_.notify_all();
      lock.unlock();
      if (reopen) {
        auto fresh = detail::open_for_append(path_, owner_dir_);
        if (fresh) {
          fd_ = std::move(fresh);
        } else if (log_) {
          log_("cannot reopen audit log " + path_ + " (" + std::strerror(errno) + "); writing on to the old file");
        }
      }
      std::string text;
      for (auto& line : batch) text += line;
      // A write that fails is retried: an audit line is never dropped.
      while (!text.empty() && !detail::write_all(fd_.get(), text)) {
        if (log_) log_("cannot write audit log " + path_ + ": " + std::strerror(errno) + "; retrying");
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      lock.lock();
      if (last && lines_.empty()) {
        writer_done_ = true;
        return;
      }
    }
  }

  std::string path_;
  std::string owner_dir_;
  std::function<void(const std::string&)> log_;
  std::string error_;
  detail::unique_fd fd_;
  detail::Mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable room_;
  std::deque<std::string> lines_ IWSEC_GUARDED_BY(mutex_);
  bool reopen_ IWSEC_GUARDED_BY(mutex_) = false;
  bool stopping_ IWSEC_GUARDED_BY(mutex_) = false;
  bool writer_done_ IWSEC_GUARDED_BY(mutex_) = false;  // set by the writer as it ends; write() then writes itself
  std::thread writer_;
};

/// @brief The OS account running this program (an admin event's `actor`):
/// SUDO_USER when run through sudo, else the effective user's name (its
/// number if it has none).
inline std::string audit_actor() {
  const char* sudo_user = std::getenv("SUDO_USER");
  if (sudo_user && *sudo_user) return sudo_user;
  const uid_t uid = ::geteuid();
  struct passwd pw;
  struct passwd* found = nullptr;
  char buffer[4096];
  if (::getpwuid_r(uid, &pw, buffer, sizeof buffer, &found) == 0 && found && found->pw_name)
    return found->pw_name;
  return "uid " + std::to_string(uid);
}

/// @brief An admin tool's append: one whole line in one write(2). Empty on
/// success, else the reason (with the path).
inline std::string append_audit_line(const std::string& path, const std::string& owner_dir, const std::string& line) {
  auto fd = detail::open_for_append(path, owner_dir);
  if (!fd) return "cannot open audit log " + path + ": " + std::strerror(errno);
  if (!detail::write_all(fd.get(), line)) return "cannot write audit log " + path + ": " + std::strerror(errno);
  return "";
}

/// @brief The same, the file owned like the directory it is in.
inline std::string append_audit_line(const std::string& path, const std::string& line) {
  return append_audit_line(path, detail::parent_directory(path), line);
}

/// @brief One event of a trail as read back: its JSON object and the fields
/// the filters of `iwsec-admin audit` look at.
struct AuditRecord {
  std::string json;  // the line, without its newline
  std::string time;
  std::string email;
  std::string text;  // one human-readable line
};

/// @brief Parses one JSON line of a trail; false when it is not an audit event.
inline bool parse_audit_line(const std::string& line, AuditRecord& out) {
  picojson::value v;
  const std::string err = picojson::parse(v, line);
  if (!err.empty() || !v.is<picojson::object>()) return false;
  const auto& o = v.get<picojson::object>();
  const auto get = [&o](const char* key) -> std::string {
    auto it = o.find(key);
    return it != o.end() && it->second.is<std::string>() ? it->second.get<std::string>() : std::string();
  };
  out.json = line;
  out.time = get("time");
  out.email = get("email");
  if (out.time.empty() || get("event").empty()) return false;
  out.text = out.time + ' ' + get("event");
  for (const char* key : {"email", "user_id", "kid", "client", "request_id", "actor", "result", "reason", "until"}) {
    const std::string value = get(key);
    if (!value.empty()) out.text += std::string(" ") + key + '=' + value;
  }
  return true;
}

}  // namespace iwsec
