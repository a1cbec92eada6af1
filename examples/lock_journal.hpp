#pragma once
// The lock journal, DATA/lockouts.journal: how iwsec-admin sees and lifts the
// account locks of a RUNNING iwsec-server (single node), whose lock state
// lives in its memory.
//
// Why a file in the data directory: iwsec-admin already reaches the server
// only through the data directory (users.json is re-read on the next
// request), it needs no port, no credentials and no running admin listener,
// and the directory's permissions (0700, owner only) already say who may
// administer it. Lines, each appended with one write(2) of O_APPEND (short,
// so whole lines, never interleaved):
//
//   start PID EPOCH          the server (re)started: every lock before is void
//   lock KEY UNTIL           the server locked account KEY until UNTIL (epoch s)
//   unlock KEY EMAILHEX      iwsec-admin asks to unlock that account
//   stop PID EPOCH           the server stopped cleanly: no lock is in force
//
// KEY is sha256hex(lower-cased email), so an email a stranger typed into a
// login (an unknown account gets locked too) is never written; the unlock
// line carries the email (hex) because the server's tracker needs it.
// The server reads the lines appended since its last look, with one stat(2),
// before every password login (authenticate, token/refresh): so an unlock
// is in force for every login that starts after `iwsec-admin unlock`
// returns. It starts the journal afresh at start-up (its memory holds no
// lock then) and compacts it past max_bytes (1 MiB; or twice its
// size after the last compaction) under the journal's flock.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

namespace lock_journal {

inline std::string path_in(const std::string& data_dir) { return data_dir + "/lockouts.journal"; }
inline std::string lock_path_of(const std::string& journal) { return journal + ".lock"; }

/// The journal key of an email: sha256hex of its lower-cased form.
inline std::string key_of(std::string_view email) {
  return iwsec::detail::sha256_hex(iwsec::LockoutTracker::normalise_account(email));
}

inline std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  std::string out;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

/// The words of one line.
inline std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    const auto space = line.find(' ');
    out.push_back(line.substr(0, space));
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
  }
  return out;
}

inline bool append_line(const std::string& path, const std::string& line, std::string& error) {
  iwsec::detail::unique_fd fd = iwsec::detail::open_fd(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0600);
  if (!fd || !iwsec::detail::write_all(fd.get(), line)) {
    error = "cannot append to " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

/// What the journal says of one account now: locked until (0: not locked).
/// Read by iwsec-admin show-user and unlock.
inline bool locked_until(const std::string& path, std::string_view email, std::int64_t now, std::int64_t& until,
                         std::string& error) {
  until = 0;
  iwsec::detail::unique_fd fd = iwsec::detail::open_fd(path, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (errno == ENOENT) return true;  // no server ever ran here
    error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  std::string text;
  if (!iwsec::detail::read_all(fd.get(), text)) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  const std::string key = key_of(email);
  std::size_t begin = 0;
  for (std::size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
    const auto w = words(std::string_view(text).substr(begin, end - begin));
    if (w.empty()) continue;
    if (w[0] == "start" || w[0] == "stop") {
      until = 0;
    } else if (w[0] == "lock" && w.size() == 3 && w[1] == key) {
      until = std::strtoll(std::string(w[2]).c_str(), nullptr, 10);
    } else if (w[0] == "unlock" && w.size() >= 2 && w[1] == key) {
      until = 0;
    }
  }
  if (until <= now) until = 0;
  return true;
}

/// iwsec-admin unlock: asks the running server to unlock @p email.
inline bool request_unlock(const std::string& path, std::string_view email, std::string& error) {
  const std::string lower = iwsec::LockoutTracker::normalise_account(email);
  const std::string line = "unlock " + key_of(lower) + ' ' +
                           iwsec::detail::hex_encode(reinterpret_cast<const unsigned char*>(lower.data()), lower.size()) +
                           '\n';
  iwsec::detail::file_lock lock(lock_path_of(path));  // not during a compaction
  if (!lock) {
    error = "cannot lock " + lock_path_of(path) + ": " + std::strerror(errno);
    return false;
  }
  return append_line(path, line, error);
}

/// The server's side.
class ServerJournal {
 public:
  static constexpr off_t default_max_bytes = 1 << 20;

  explicit ServerJournal(std::string path, off_t max_bytes = default_max_bytes)
      : path_(std::move(path)), max_bytes_(max_bytes) {}

  /// Starts the journal afresh (nothing is locked in a new process).
  bool start(std::string& error) {
    iwsec::detail::Lock guard(mutex_);
    iwsec::detail::file_lock lock(lock_path_of(path_));
    if (!lock) {
      error = "cannot lock " + lock_path_of(path_) + ": " + std::strerror(errno);
      return false;
    }
    return rewrite(error);
  }

  /// Records a clean stop: no lock is in force any more.
  void stop() {
    iwsec::detail::Lock guard(mutex_);
    std::string ignored;
    append_line(path_, "stop " + std::to_string(::getpid()) + ' ' + std::to_string(std::time(nullptr)) + '\n', ignored);
  }

  /// Records that @p email (lower-cased) got locked until @p until.
  void locked(std::string_view email, std::int64_t until) {
    iwsec::detail::Lock guard(mutex_);
    const std::string key = key_of(email);
    locks_[key] = until;
    std::string error;
    if (!append_line(path_, "lock " + key + ' ' + std::to_string(until) + '\n', error))
      std::fprintf(stderr, "iwsec-server: %s\n", error.c_str());
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0 && st.st_size > compact_at_) compact();
  }

  /// Before a password login: applies the unlocks appended since the last
  /// look (one stat when there are none) through @p unlock(email).
  template <typename Unlock>
  void apply_unlocks(Unlock&& unlock) {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) return;
    std::vector<std::string> emails;
    {
      iwsec::detail::Lock guard(mutex_);
      if (st.st_ino == inode_ && st.st_size == offset_ && pending_.empty()) return;
      read_new_lines();
      emails.swap(pending_);
    }
    for (const auto& e : emails) unlock(e);
  }

 private:
  // Reads the complete lines past offset_ (from 0 if the file was replaced).
  void read_new_lines() IWSEC_REQUIRES(mutex_) {
    iwsec::detail::unique_fd fd = iwsec::detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
    struct stat now_st;
    if (!fd || ::fstat(fd.get(), &now_st) != 0) return;
    if (now_st.st_ino != inode_) {
      inode_ = now_st.st_ino;
      offset_ = 0;
    }
    if (::lseek(fd.get(), offset_, SEEK_SET) < 0) return;
    std::string text;
    if (!iwsec::detail::read_all(fd.get(), text)) return;
    const auto last = text.rfind('\n');
    if (last == std::string::npos) return;
    offset_ += static_cast<off_t>(last + 1);
    std::size_t begin = 0;
    for (std::size_t end; begin <= last && (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
      const auto w = words(std::string_view(text).substr(begin, end - begin));
      if (w.size() == 3 && w[0] == "unlock") {
        if (const auto email = hex_decode(w[2])) {
          locks_.erase(std::string(w[1]));
          pending_.push_back(*email);
        }
      }
    }
  }

  // Rewrites the journal: a start line and the locks still in force.
  // Callers hold the journal's flock too (a file_lock on lock_path_of).
  bool rewrite(std::string& error) IWSEC_REQUIRES(mutex_) {
    const std::int64_t now = std::time(nullptr);
    std::string text = "start " + std::to_string(::getpid()) + ' ' + std::to_string(now) + '\n';
    for (auto it = locks_.begin(); it != locks_.end();) {
      if (it->second <= now) {
        it = locks_.erase(it);
      } else {
        text += "lock " + it->first + ' ' + std::to_string(it->second) + '\n';
        ++it;
      }
    }
    if (!iwsec::detail::write_file_atomically(path_, text)) {
      error = "cannot write " + path_ + ": " + std::strerror(errno);
      return false;
    }
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) {
      error = "cannot stat " + path_ + ": " + std::strerror(errno);
      return false;
    }
    inode_ = st.st_ino;
    offset_ = st.st_size;
    compact_at_ = std::max(max_bytes_, 2 * offset_);  // many live locks: not a rewrite per lock
    return true;
  }

  // Past max_bytes: under the journal's flock (no unlock is appended
  // meanwhile), read the unlocks not yet seen, then rewrite. The unlocks
  // read here are applied on the next apply_unlocks (kept in pending_).
  void compact() IWSEC_REQUIRES(mutex_) {
    iwsec::detail::file_lock lock(lock_path_of(path_));
    if (!lock) return;
    read_new_lines();
    std::string error;
    if (!rewrite(error)) std::fprintf(stderr, "iwsec-server: %s\n", error.c_str());
  }

  std::string path_;
  off_t max_bytes_;
  iwsec::detail::Mutex mutex_;
  off_t compact_at_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::map<std::string, std::int64_t> locks_ IWSEC_GUARDED_BY(mutex_);  // key -> until, as written
  std::vector<std::string> pending_ IWSEC_GUARDED_BY(mutex_);           // unlocks read, not yet applied
  ino_t inode_ IWSEC_GUARDED_BY(mutex_) = 0;
  off_t offset_ IWSEC_GUARDED_BY(mutex_) = 0;
};

}  // namespace lock_journal
