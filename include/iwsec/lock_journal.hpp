/// @brief The lock journal: how an administrator sees and lifts the account locks of a running process.
/// @file
#pragma once

// DATA/lockouts.journal. A process keeps its account locks in memory
// (LockoutTracker); an administrator's tool (iwsec-admin show-user, unlock)
// reaches them through this file, as it reaches the users through
// users.json: no port, no credentials, and the directory's permissions
// (0700, owner only) already say who may administer it. Lines, each
// appended with one write(2) of O_APPEND (short, so whole lines, never
// interleaved):
//
//   start PID EPOCH          the process (re)started: every lock before is void
//   lock KEY UNTIL           the process locked account KEY until UNTIL (epoch s)
//   unlock KEY EMAILHEX      an administrator asks to unlock that account
//   stop PID EPOCH           the process stopped cleanly: no lock is in force
//
// KEY is the account's Lockout::Key in hex (its two 64-bit halves, each
// most significant digit first; the key is 128 bits of SHA-256 of "a" and
// the lower-cased email), so an email a stranger typed into a login (an
// unknown email gets locked too) is never written; the unlock line carries
// the email (hex) because the tracker needs it. The process reads the lines
// appended since its last look, with one stat(2), before every password
// check (JournaledLockout::begin): so an unlock is in force for every login
// that starts after the tool returns. It starts the journal afresh at
// start-up (its memory holds no lock then) and compacts it past max_bytes
// (1 MiB; or twice its size after the last compaction) under the journal's
// flock, which an unlock takes too.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "detail/file.hpp"
#include "detail/hex.hpp"
#include "detail/log.hpp"
#include "detail/thread_safety.hpp"
#include "lockout_interface.hpp"

namespace iwsec {

/// @brief The lock journal of one data directory: the running process's side
/// (start, locked, apply_unlocks, stop) and the administrator's (locked_until,
/// request_unlock). One instance per process; every method may be called
/// from many threads at once.
class LockJournal {
 public:
  static constexpr off_t default_max_bytes = 1 << 20;
  /// @brief Receives one line (no newline) when the journal cannot be
  /// written; never holds an email or a secret.
  using Log = detail::Log;

  /// @brief The journal of data directory @p data_dir.
  static std::string path_in(const std::string& data_dir) { return data_dir + "/lockouts.journal"; }

  /// @brief The journal's KEY of @p email (any case): its Lockout::Key in hex.
  static std::string key_of(std::string_view email) { return key_hex(Lockout::account_key(email)); }

  /// @brief What the journal at @p path says of @p email at @p now: the
  /// epoch second its lock ends (0: not locked). False, with @p error
  /// naming the path and the reason, when the journal cannot be read; a
  /// missing journal (no process ever ran there) locks nothing.
  static bool locked_until(const std::string& path, std::string_view email, std::int64_t now, std::int64_t& until,
                           std::string& error) {
    until = 0;
    detail::unique_fd fd = detail::open_fd(path, O_RDONLY | O_NOFOLLOW);
    if (!fd) {
      if (errno == ENOENT) return true;
      error = "cannot open " + path + ": " + std::strerror(errno);
      return false;
    }
    std::string text;
    if (!detail::read_all(fd.get(), text)) {
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

  /// @brief Asks the process running on the journal at @p path to unlock
  /// @p email (a user's or not: unknown emails are locked alike). In force
  /// for every password check that starts after this returns true.
  static bool request_unlock(const std::string& path, std::string_view email, std::string& error) {
    const std::string lower = Lockout::normalise_account(email);
    const std::string line =
        "unlock " + key_of(lower) + ' ' +
        detail::hex_encode(reinterpret_cast<const unsigned char*>(lower.data()), lower.size()) + '\n';
    detail::file_lock lock(lock_path_of(path));  // not during a compaction
    if (!lock) {
      error = "cannot lock " + lock_path_of(path) + ": " + std::strerror(errno);
      return false;
    }
    return append_line(path, line, error);
  }

  /// @brief The journal at @p path (see path_in), compacted past @p max_bytes.
  explicit LockJournal(std::string path, off_t max_bytes = default_max_bytes, Log log = stderr_log())
      : path_(std::move(path)), max_bytes_(max_bytes), log_(std::move(log)) {}
  LockJournal(const LockJournal&) = delete;
  LockJournal& operator=(const LockJournal&) = delete;

  const std::string& path() const noexcept { return path_; }
  /// @brief Gives @p line to the journal's Log (if any).
  void log(const std::string& line) const {
    if (log_) log_(line);
  }

  /// @brief Starts the journal afresh (nothing is locked in a new process).
  /// False, with @p error naming the path and the reason, when it cannot.
  bool start(std::string& error) {
    detail::Lock guard(mutex_);
    detail::file_lock lock(lock_path_of(path_));
    if (!lock) {
      error = "cannot lock " + lock_path_of(path_) + ": " + std::strerror(errno);
      return false;
    }
    return rewrite(error);
  }

  /// @brief Records a clean stop: no lock is in force any more.
  void stop() {
    detail::Lock guard(mutex_);
    std::string ignored;
    append_line(path_, "stop " + std::to_string(::getpid()) + ' ' + std::to_string(std::time(nullptr)) + '\n', ignored);
  }

  /// @brief Records that the account @p account got locked until @p until.
  void locked(const Lockout::Key& account, std::int64_t until) {
    detail::Lock guard(mutex_);
    const std::string key = key_hex(account);
    locks_[key] = until;
    std::string error;
    if (!append_line(path_, "lock " + key + ' ' + std::to_string(until) + '\n', error) && log_) log_(error);
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0 && st.st_size > compact_at_) compact();
  }
  /// @brief Records that @p email's account got locked until @p until.
  void locked(std::string_view email, std::int64_t until) { locked(Lockout::account_key(email), until); }

  /// @brief Applies the unlocks appended since the last look (one stat when
  /// there are none) through @p unlock(email), each exactly once. Returns
  /// only once every unlock appended before the call was applied, by this
  /// thread or by another one, so a check that follows sees them all. An
  /// unlock that throws stays pending (and the exception goes on).
  template <typename Unlock>
  void apply_unlocks(Unlock&& unlock) {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) return;
    {
      detail::Lock guard(mutex_);
      if (st.st_ino == inode_ && st.st_size == offset_ && pending_.empty()) return;
    }
    // One thread applies at a time; pending_ keeps an unlock until it has
    // been applied, so a thread arriving meanwhile waits here instead of
    // going on before it.
    detail::Lock applying(apply_mutex_);
    std::vector<std::string> emails;
    {
      detail::Lock guard(mutex_);
      read_new_lines();
      emails = pending_;
    }
    std::size_t applied = 0;
    const auto forget_applied = [&] {
      detail::Lock guard(mutex_);  // compaction only appends to pending_
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(applied));
    };
    try {
      for (const auto& e : emails) {
        unlock(e);
        ++applied;
      }
    } catch (...) {
      forget_applied();
      throw;
    }
    forget_applied();
  }

  /// @brief The default log: "iwsec: LINE" on standard error.
  static Log stderr_log() { return detail::stderr_log(); }

 private:
  static std::string lock_path_of(const std::string& journal) { return journal + ".lock"; }

  static std::string key_hex(const Lockout::Key& k) {
    unsigned char bytes[16];
    for (int i = 0; i < 8; ++i) {
      bytes[i] = static_cast<unsigned char>(k.hi >> (56 - 8 * i));
      bytes[8 + i] = static_cast<unsigned char>(k.lo >> (56 - 8 * i));
    }
    return detail::hex_encode(bytes, sizeof bytes);
  }

  static std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> out;
    while (!line.empty()) {
      const auto space = line.find(' ');
      out.push_back(line.substr(0, space));
      if (space == std::string_view::npos) break;
      line.remove_prefix(space + 1);
    }
    return out;
  }

  static bool append_line(const std::string& path, const std::string& line, std::string& error) {
    detail::unique_fd fd = detail::open_fd(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0600);
    if (!fd || !detail::write_all(fd.get(), line)) {
      error = "cannot append to " + path + ": " + std::strerror(errno);
      return false;
    }
    return true;
  }

  // Reads the complete lines past offset_ (from 0 if the file was replaced).
  void read_new_lines() IWSEC_REQUIRES(mutex_) {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
    struct stat now_st;
    if (!fd || ::fstat(fd.get(), &now_st) != 0) return;
    if (now_st.st_ino != inode_) {
      inode_ = now_st.st_ino;
      offset_ = 0;
    }
    if (::lseek(fd.get(), offset_, SEEK_SET) < 0) return;
    std::string text;
    if (!detail::read_all(fd.get(), text)) return;
    const auto last = text.rfind('\n');
    if (last == std::string::npos) return;
    offset_ += static_cast<off_t>(last + 1);
    std::size_t begin = 0;
    for (std::size_t end; begin <= last && (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
      const auto w = words(std::string_view(text).substr(begin, end - begin));
      if (w.size() == 3 && w[0] == "unlock") {
        if (const auto email = detail::hex_decode(w[2])) {
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
    if (!detail::write_file_atomically(path_, text)) {
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
    detail::file_lock lock(lock_path_of(path_));
    if (!lock) return;
    read_new_lines();
    std::string error;
    if (!rewrite(error) && log_) log_(error);
  }

  const std::string path_;
  const off_t max_bytes_;
  const Log log_;
  detail::Mutex apply_mutex_ IWSEC_ACQUIRED_BEFORE(mutex_);  // held while unlocks are applied
  detail::Mutex mutex_;
  off_t compact_at_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::map<std::string, std::int64_t> locks_ IWSEC_GUARDED_BY(mutex_);  // key -> until, as written
  std::vector<std::string> pending_ IWSEC_GUARDED_BY(mutex_);           // unlocks read, not yet applied (in order)
  ino_t inode_ IWSEC_GUARDED_BY(mutex_) = 0;
  off_t offset_ IWSEC_GUARDED_BY(mutex_) = 0;
};

/// @brief A Lockout that keeps another's counts and locks (usually a
/// LockoutTracker) and meets an administrator through a LockJournal: every
/// account lock it starts is written to the journal (so `show-user` sees
/// it), and before every password check it applies the unlocks appended
/// since (so `unlock` is in force for the next login). What iwsec-server
/// does on a data directory; a host does the same with
///
///     auto journal = std::make_shared<iwsec::LockJournal>(iwsec::LockJournal::path_in(dir));
///     std::string error;
///     if (!journal->start(error)) ...;  // at start-up; journal->stop() at a clean exit
///     options.lockout_state = std::make_shared<iwsec::JournaledLockout>(
///         std::make_shared<iwsec::LockoutTracker>(options.lockout), journal);
class JournaledLockout : public Lockout {
 public:
  JournaledLockout(std::shared_ptr<Lockout> inner, std::shared_ptr<LockJournal> journal)
      : inner_(std::move(inner)), journal_(std::move(journal)) {}

  const LockoutPolicy& policy() const override { return inner_->policy(); }

  Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) override {
    if (account) apply_unlocks();
    return adopt(*inner_, inner_->begin(account, client, now));
  }
  std::int64_t account_wait(std::string_view account, std::int64_t now) override {
    apply_unlocks();
    return inner_->account_wait(account, now);
  }
  std::int64_t client_wait(std::string_view client, std::int64_t now) override {
    return inner_->client_wait(client, now);
  }
  /// @brief Unlocks in the inner Lockout and says so in the journal (so
  /// show-user agrees); the line is applied once more later, harmlessly.
  void unlock_account(std::string_view account) override {
    inner_->unlock_account(account);
    std::string error;
    if (!LockJournal::request_unlock(journal_->path(), account, error)) journal_->log(error);
  }
  void unlock_client(std::string_view client) override { inner_->unlock_client(client); }

  const std::shared_ptr<Lockout>& inner() const noexcept { return inner_; }
  const std::shared_ptr<LockJournal>& journal() const noexcept { return journal_; }

 protected:
  LockTransition finish(const std::optional<Key>& account, const std::optional<Key>& client, std::int64_t now,
                        bool success) override {
    const LockTransition t = finish_on(*inner_, account, client, now, success);
    // The lock holds in memory whatever happens to its journal line; a line
    // that cannot be written must not turn the answer into a failure.
    if (account && t.account_locked_until != 0) {
      try {
        journal_->locked(*account, t.account_locked_until);
      } catch (...) {
      }
    }
    return t;
  }
  void abandon(const std::optional<Key>& account, const std::optional<Key>& client) noexcept override {
    abandon_on(*inner_, account, client);
  }

 private:
  void apply_unlocks() {
    journal_->apply_unlocks([this](const std::string& email) { inner_->unlock_account(email); });
  }

  const std::shared_ptr<Lockout> inner_;
  const std::shared_ptr<LockJournal> journal_;
};

}  // namespace iwsec
