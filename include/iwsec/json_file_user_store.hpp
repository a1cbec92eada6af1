#pragma once
/// @file
/// @brief A UserStore kept in a users file (a snapshot and its change
/// journal) that several processes (the server and iwsec-admin) share safely.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "detail/change_watch.hpp"
#include "detail/file.hpp"
#include "detail/json.hpp"
#include "detail/log.hpp"
#include "detail/thread_safety.hpp"
#include "detail/users_file.hpp"
#include "errors.hpp"
#include "user_store.hpp"

namespace iwsec {

namespace detail {

/// @brief A lock a thread can wait for with a deadline, on a mutex and a
/// condition variable (std::timed_mutex's try_lock_for goes through
/// pthread_mutex_clocklock, which ThreadSanitizer in GCC 12 does not see).
/// A lock for the thread-safety analysis, held for a scope by waitable_guard.
class IWSEC_CAPABILITY("mutex") waitable_lock {
 public:
  void lock() IWSEC_ACQUIRE() {
    Lock guard(mutex_);
    guard.wait(released_, [this]() IWSEC_REQUIRES(mutex_) { return !held_; });
    held_ = true;
  }
  template <typename Rep, typename Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& patience) IWSEC_TRY_ACQUIRE(true) {
    Lock guard(mutex_);
    if (!guard.wait_for(released_, patience, [this]() IWSEC_REQUIRES(mutex_) { return !held_; })) return false;
    held_ = true;
    return true;
  }
  bool try_lock() IWSEC_TRY_ACQUIRE(true) { return try_lock_for(std::chrono::seconds(0)); }
  void unlock() IWSEC_RELEASE() {
    {
      Lock guard(mutex_);
      held_ = false;
    }
    released_.notify_one();
  }

 private:
  Mutex mutex_;
  std::condition_variable released_;
  bool held_ IWSEC_GUARDED_BY(mutex_) = false;
};

/// Holds a waitable_lock for its scope: taking it, or (with
/// std::adopt_lock) one a successful try_lock_for() took.
class IWSEC_SCOPED_CAPABILITY waitable_guard {
 public:
  explicit waitable_guard(waitable_lock& l) IWSEC_ACQUIRE(l) : lock_(l) { lock_.lock(); }
  waitable_guard(waitable_lock& l, std::adopt_lock_t) IWSEC_REQUIRES(l) : lock_(l) {}
  ~waitable_guard() IWSEC_RELEASE() { lock_.unlock(); }
  waitable_guard(const waitable_guard&) = delete;
  waitable_guard& operator=(const waitable_guard&) = delete;

 private:
  waitable_lock& lock_;
};

}  // namespace detail

/// @brief Users in a users file: a snapshot (`users.json`) and an
/// append-only change journal beside it (`users.json.journal`), in the
/// format of detail/users_file.hpp.
///
/// A write takes an exclusive lock on `<file>.lock`, catches up with the
/// files, and appends one line to the journal, fsynced before it returns
/// (the first change after a compaction creates the journal atomically:
/// exclusive temporary, fsync, rename, fsync the directory). Past a size
/// (a quarter of the snapshot, at least 64 KiB) the write compacts instead:
/// it writes the whole snapshot atomically (owner and mode kept), then
/// removes the journal. So concurrent writers never lose each other's
/// changes, and a crash at any point loses nothing a write acknowledged.
///
/// Reads check both files' identities (two stats) and catch up when either
/// changed: lines appended to the journal are parsed and applied to a copy
/// of the users that shares them with the live copy, and swapped in; a
/// compaction is recognised from the line it leaves in the journal, without
/// reading the new snapshot. So a change made by another process applies to
/// every request that starts after that process's write returned, and costs
/// the requests of this one the parse of that change, not of the file.
///
/// Only a snapshot this store did not see coming (a hand edit, a file
/// written by an earlier version, a restored backup) is read in full, which
/// the log says. Journal lines that the edited snapshot's journal header
/// does not name are not applied: the edited snapshot wins, and the next
/// write moves that journal aside to `users.json.journal.stale-<time>`
/// (kept, never read). `iwsec-admin compact` before editing by hand folds
/// the journal into users.json, so nothing is set aside.
///
/// Fails closed: when a file changed but cannot be read (permission
/// denied, descriptors exhausted, invalid content), every read throws
/// StateUnavailable (the routes answer 503) instead of answering from the
/// stale copy, one line saying why goes to the log, and the store recovers
/// by itself once the files can be read. Loading and every write cost time
/// linear in the number of users; applying another process's change costs
/// time linear in the size of that change.
///
/// Locking: state_mutex_ guards what reads use (the users, the file
/// versions they reflect, the last error); sync_lock_ lets one thread at a
/// time catch up with the files or write, and guards how the copy relates
/// to the files; a writer takes the cross-process lock first, then
/// sync_lock_, then state_mutex_ only to publish. Readers take sync_lock_
/// only when the files changed.
class JsonFileUserStore : public UserStore {
 public:
  /// @brief Receives one line (no newline) about the files: why they cannot
  /// be reloaded, that they can again, a snapshot read in full, a journal set
  /// aside, a write whose directory fsync failed. Never holds a secret.
  using Log = detail::Log;

  /// @brief The default log: "iwsec: LINE" on standard error.
  static Log stderr_log() { return detail::stderr_log(); }

  /// @brief How this store has read the files since it was opened.
  struct ReadCounts {
    std::uint64_t snapshot_loads = 0;   ///< whole reads of the snapshot (the first included)
    std::uint64_t journal_changes = 0;  ///< changes applied from the journal
  };

  /// @brief Opens (or, on first write, creates) the users file at @p path
  /// and its journal at `<path>.journal`. Throws store_error when they exist
  /// but are unreadable or invalid. @p log may be empty (no log).
  explicit JsonFileUserStore(std::string path, Log log = stderr_log())
      : path_(std::move(path)),
        journal_path_(path_ + ".journal"),
        lock_path_(path_ + ".lock"),
        log_(std::move(log)),
        changes_({path_, journal_path_}) {
    // A missing directory fails here, by name, not as an I/O error on the first write.
    const std::string dir = detail::parent_directory(path_);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      const int e = ::stat(dir.c_str(), &st) != 0 ? errno : ENOTDIR;
      throw store_error("iwsec: cannot use users file " + path_ + ": directory " + dir + ": " + std::strerror(e));
    }
    bool stamp = false;
    {
      detail::waitable_guard sync(sync_lock_);
      std::string error;
      if (!catch_up(error)) throw store_error("iwsec: cannot load " + path_ + ": " + error);
      stamp = needs_compaction_;
      constructed_ = true;
    }
    // Users from before issue times were kept got this load's time as their
    // refresh token's issue time: keep it (one compaction), so a restart does
    // not start their tokens' clocks again. A store that cannot write now
    // keeps it in memory and writes it with its next change.
    if (stamp) compact();
  }

  JsonFileUserStore(const JsonFileUserStore&) = delete;
  JsonFileUserStore& operator=(const JsonFileUserStore&) = delete;

  const std::string& path() const noexcept { return path_; }
  const std::string& journal_path() const noexcept { return journal_path_; }

  /// @brief Why the last failed write or reload failed (path and strerror
  /// text), for a program to print; empty when nothing failed yet.
  std::string last_error() const {
    detail::ReaderLock lock(state_mutex_);
    return last_error_;
  }

  /// @brief Whole-snapshot reads and journal changes applied so far.
  ReadCounts read_counts() const {
    detail::ReaderLock lock(state_mutex_);
    return counts_;
  }

  /// @brief Folds the journal into the snapshot: writes users.json whole
  /// (atomically, owner and mode kept) and removes the journal (setting a
  /// stale one aside first). What `iwsec-admin compact` does.
  StoreResult compact() {
    return change_current([&](detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) -> StoreResult {
      if (!compact_into(next, error)) return failed(error);
      publish(std::move(next));
      return StoreStatus::ok;
    });
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

  StoreResult add_user(const User& user) override {
    return write(user.email, [&](detail::user_index& index) { return index.add(user); });
  }

  StoreResult update_user(std::string_view email, const std::function<void(User&)>& change) override {
    return write(email, [&](detail::user_index& index) { return index.update(email, change); });
  }

  StoreResult delete_user(std::string_view email) override {
    return write(email, [&](detail::user_index& index) { return index.remove(email); });
  }

  /// @brief The snapshot's text for @p users (see detail/users_file.hpp).
  static std::string serialize(const std::vector<User>& users) { return detail::users_file::serialize(users); }

  /// @brief Parses a snapshot's text; nothing (and a reason in @p error) when invalid.
  static std::optional<std::vector<User>> parse(std::string_view text, std::string& error) {
    std::vector<User> out;
    if (!detail::users_file::parse_snapshot(text, error, [&](User&& u) {
          out.push_back(std::move(u));
          return true;
        }))
      return std::nullopt;
    return out;
  }

 private:
  // Readers wait this long for a catch-up, then fail closed (503): never an
  // answer from a copy known to be stale.
  static constexpr std::chrono::milliseconds reload_wait{2000};
  static constexpr off_t min_compaction_bytes = 64 * 1024;

  // The versions of the two files a copy reflects (nothing: no such file).
  struct versions {
    std::optional<detail::file_identity> snapshot, journal;
    bool operator==(const versions& o) const { return snapshot == o.snapshot && journal == o.journal; }
  };

  enum class outcome { applied, load_in_full, failed };

  static std::int64_t nanoseconds(const timespec& t) {
    return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
  }

  // Whether @p st is the file a compacted line named (a rename keeps these).
  static bool names(const detail::users_file::snapshot_ref& ref, const struct stat& st) {
    return ref.inode == static_cast<std::int64_t>(st.st_ino) && ref.size == static_cast<std::int64_t>(st.st_size) &&
           ref.modified_ns == nanoseconds(st.st_mtim);
  }

  static std::string changes(std::size_t n) { return std::to_string(n) + (n == 1 ? " change" : " changes"); }

  static std::optional<detail::file_identity> identity_of(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return std::nullopt;
    return detail::file_identity::of(st);
  }

  // One stat of each file; false (and @p error) unless each is there or missing.
  // read() skips it while the change watch has seen no event naming either.
  bool observe(versions& now, std::string& error) const {
    const auto one = [&](const std::string& path, std::optional<detail::file_identity>& out) {
      struct stat st;
      if (::stat(path.c_str(), &st) == 0) {
        out = detail::file_identity::of(st);
        return true;
      }
      if (errno == ENOENT) return true;
      error = detail::errno_text("cannot stat " + path);
      return false;
    };
    return one(path_, now.snapshot) && one(journal_path_, now.journal);
  }

  template <typename F>
  auto read(F&& f) -> decltype(f(std::declval<const detail::user_index&>())) {
    const std::uint64_t generation = changes_.now();
    if (changes_.unchanged(generation)) {  // no event names either file: no stat
      detail::ReaderLock lock(state_mutex_);
      return f(index_);
    }
    versions now;
    std::string ignored;
    if (observe(now, ignored)) {
      detail::ReaderLock lock(state_mutex_);
      if (now == seen_) {
        changes_.checked(generation);
        return f(index_);
      }
    }
    refresh_for_reader();
    changes_.checked(generation);
    detail::ReaderLock lock(state_mutex_);
    return f(index_);
  }

  // A file changed: catch up beside the live copy (requests that arrived
  // before go on reading it) and swap. Requests that arrive meanwhile wait
  // for the new copy rather than answer from the old one. Throws
  // StateUnavailable when the files cannot be read, or after reload_wait.
  void refresh_for_reader() {
    if (!sync_lock_.try_lock_for(reload_wait))
      throw StateUnavailable("iwsec: " + path_ + " changed and is still being reloaded");
    detail::waitable_guard sync(sync_lock_, std::adopt_lock);
    std::string error;
    if (!catch_up(error)) throw StateUnavailable("iwsec: cannot reload " + path_ + ": " + error);
  }

  // Brings the live copy up to the files.
  bool catch_up(std::string& error) IWSEC_REQUIRES(sync_lock_) {
    versions now;
    if (!observe(now, error)) return fail_reading(error);
    if (loaded_) {
      detail::ReaderLock lock(state_mutex_);
      if (now == seen_) return true;
    }
    if (bad_version_ && *bad_version_ == now) {
      error = last_error();  // this version was tried: do not parse it again per request
      return false;
    }
    detail::user_index next;
    versions reflected;
    outcome result = outcome::load_in_full;
    const bool followed = loaded_;
    if (followed) {
      {
        detail::ReaderLock lock(state_mutex_);
        next = index_;  // cheap: shares the users with the live copy
      }
      result = follow_journal(now, next, reflected, error);
    }
    if (result == outcome::load_in_full) {
      next = detail::user_index();
      result = load_in_full(now, next, reflected, error, /*unannounced=*/followed);
    }
    if (result == outcome::failed) {
      loaded_ = false;  // what was half read is read again, whole, next time
      return fail_reading(error);
    }
    {
      detail::WriterLock lock(state_mutex_);
      std::swap(index_, next);
      seen_ = reflected;
    }
    loaded_ = true;
    bad_version_.reset();
    if (reads_failing_ && log_) log_("reloaded " + path_ + " again" + load_note_);
    reads_failing_ = false;
    load_note_.clear();
    return true;  // the previous copy is freed here, outside the lock
  }

  // Applies what was appended to the journal since the last look, follows a
  // compaction the journal announced, and a journal started since. Anything
  // else (a snapshot nobody announced, a journal cut short) needs a whole load.
  outcome follow_journal(const versions& now, detail::user_index& next, versions& reflected, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    if (journal_fd_) {
      const outcome drained = read_journal(next, error);
      if (drained != outcome::applied) return drained;
    }
    reflected.snapshot = seen_by_syncer().snapshot;
    if (now.snapshot != reflected.snapshot) {
      if (!now.snapshot || !compacted_) return outcome::load_in_full;
      detail::unique_fd fd = detail::open_fd(path_, O_RDONLY);
      struct stat st;
      if (!fd || ::fstat(fd.get(), &st) != 0) {
        error = detail::errno_text("cannot open " + path_);
        return outcome::failed;
      }
      if (!names(*compacted_, st)) return outcome::load_in_full;
      snapshot_ = *compacted_;  // what this copy already holds: nothing to read
      snapshot_fd_ = std::move(fd);
      reflected.snapshot = detail::file_identity::of(st);
      changes_since_snapshot_ = 0;
      compacted_.reset();
    }
    const bool same_journal = journal_fd_ && now.journal && now.journal->device == journal_device_ &&
                              now.journal->inode == journal_inode_;
    if (!same_journal) {
      // The journal read from was compacted away or set aside: only a copy
      // that holds no change on top of the snapshot may go on to a new one.
      if (changes_since_snapshot_ != 0) return outcome::load_in_full;
      close_journal();
      if (now.journal) {
        if (!open_journal(error)) return outcome::failed;
        const outcome read = read_journal(next, error);
        if (read != outcome::applied) return read;
        if (!journal_extends_) return outcome::load_in_full;  // a journal for another snapshot
      }
    }
    reflected.journal = journal_fd_ ? journal_version_ : std::nullopt;
    return outcome::applied;
  }

  bool open_journal(std::string& error) IWSEC_REQUIRES(sync_lock_) {
    journal_fd_ = detail::open_fd(journal_path_, O_RDONLY);
    struct stat st;
    if (!journal_fd_ || ::fstat(journal_fd_.get(), &st) != 0) {
      error = detail::errno_text("cannot open " + journal_path_);
      journal_fd_.reset();
      return false;
    }
    journal_device_ = st.st_dev;
    journal_inode_ = st.st_ino;
    return true;
  }

  void close_journal() IWSEC_REQUIRES(sync_lock_) {
    journal_fd_.reset();
    journal_read_ = 0;
    journal_extends_ = false;
    compacted_.reset();
  }

  // Reads journal_fd_ from journal_read_ on and applies each whole line
  // (a line without its newline yet is left for later, or for the next
  // writer to cut off). The first line must be the header: whether it names
  // the snapshot decides whether the changes apply.
  outcome read_journal(detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    const std::optional<detail::file_identity> before = identity_of(journal_fd_.get());
    if (!before) {
      error = detail::errno_text("cannot stat " + journal_path_);
      return outcome::failed;
    }
    if (before->size < journal_read_) return outcome::load_in_full;  // cut short by someone else
    std::string text;
    text.reserve(static_cast<std::size_t>(before->size - journal_read_));
    char block[65536];
    for (off_t at = journal_read_;;) {
      const ssize_t n = ::pread(journal_fd_.get(), block, sizeof block, at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = detail::errno_text("cannot read " + journal_path_);
        return outcome::failed;
      }
      if (n == 0) break;
      text.append(block, static_cast<std::size_t>(n));
      at += n;
    }
    journal_version_ = before;
    std::string_view rest(text);
    detail::users_file::journal_record record;
    const std::int64_t now = system_now();
    for (std::size_t nl; (nl = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(nl + 1)) {
      std::string reason;
      if (!detail::users_file::parse_journal_line(rest.substr(0, nl), record, reason, now) ||
          (journal_read_ == 0) != (record.kind == detail::users_file::record_kind::header))
        return outcome::load_in_full;  // which says what is wrong with it
      journal_read_ += static_cast<off_t>(nl + 1);
      if (!apply(record, next)) return outcome::load_in_full;
      if (journal_extends_ && (record.kind == detail::users_file::record_kind::put ||
                               record.kind == detail::users_file::record_kind::remove)) {
        detail::WriterLock lock(state_mutex_);
        ++counts_.journal_changes;
      }
    }
    return outcome::applied;
  }

  // Applies one journal record to @p next; false when it cannot apply (a
  // duplicate, a removal of nobody).
  bool apply(detail::users_file::journal_record& record, detail::user_index& next) IWSEC_REQUIRES(sync_lock_) {
    using detail::users_file::record_kind;
    switch (record.kind) {
      case record_kind::header:
        journal_extends_ = record.snapshot.sha256 == snapshot_.sha256 && record.snapshot.size == snapshot_.size;
        return true;
      case record_kind::compacted:
        if (journal_extends_) compacted_ = record.snapshot;
        return true;
      case record_kind::put:
      case record_kind::remove:
        if (!journal_extends_) {
          ++stale_changes_;
          return true;
        }
        compacted_.reset();
        ++changes_since_snapshot_;
        if (record.kind == record_kind::remove) return next.remove(record.email) == StoreStatus::ok;
        if (next.by_email(record.user.email)) {
          User& put = record.user;
          return next.update(put.email, [&](User& u) { u = std::move(put); }) == StoreStatus::ok;
        }
        return next.add(std::move(record.user)) == StoreStatus::ok;
    }
    return false;
  }

  // Reads the snapshot whole, then the journal: the changes after the last
  // line that names this snapshot (its header, or a compacted line) apply;
  // if none names it, the snapshot was replaced behind the journal's back
  // and none apply.
  // @p unannounced: the copy was current, and the files changed in a way
  // no write of this format announces (which the log then says).
  outcome load_in_full(const versions& now, detail::user_index& next, versions& reflected, std::string& error,
                       bool unannounced) IWSEC_REQUIRES(sync_lock_) {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY);
    struct stat st;
    std::string text;
    if (!fd && errno != ENOENT) {
      error = detail::errno_text("cannot open " + path_);
      return outcome::failed;
    }
    if (fd && ::fstat(fd.get(), &st) != 0) {
      error = detail::errno_text("cannot stat " + path_);
      return outcome::failed;
    }
    if (fd && (text.reserve(static_cast<std::size_t>(st.st_size) + 1), !detail::read_all(fd.get(), text))) {
      error = detail::errno_text("cannot read " + path_);
      return outcome::failed;
    }
    std::string reason;
    bool unstamped = false;
    next.reserve(text.size() / detail::users_file::bytes_per_user_estimate + 1);
    if (fd && !detail::users_file::parse_snapshot(
                  text, reason, [&](User&& u) { return next.add(std::move(u)) == StoreStatus::ok; }, system_now(),
                  &unstamped))
      return bad_content(now, path_ + ": " + reason, error);
    snapshot_ = detail::users_file::snapshot_ref();
    if (fd) {
      snapshot_.sha256 = detail::sha256_hex(text);
      snapshot_.size = static_cast<std::int64_t>(text.size());
      snapshot_.inode = static_cast<std::int64_t>(st.st_ino);
      snapshot_.modified_ns = nanoseconds(st.st_mtim);
    }
    reflected.snapshot = fd ? std::optional<detail::file_identity>(detail::file_identity::of(st)) : std::nullopt;
    snapshot_fd_ = std::move(fd);  // holds the inode, so its identity cannot be reused meanwhile
    text = std::string();
    needs_compaction_ = needs_compaction_ || unstamped;

    close_journal();
    changes_since_snapshot_ = 0;
    stale_changes_ = 0;
    reflected.journal.reset();
    detail::unique_fd probe = detail::open_fd(journal_path_, O_RDONLY);
    if (!probe && errno != ENOENT) {
      error = detail::errno_text("cannot open " + journal_path_);
      return outcome::failed;
    }
    if (probe) {
      probe.reset();
      if (!open_journal(error)) return outcome::failed;
      // Find where the changes this snapshot lacks begin: after the last
      // line that names it. Then read from there.
      std::string all;
      if (!detail::read_all(journal_fd_.get(), all)) {
        error = detail::errno_text("cannot read " + journal_path_);
        return outcome::failed;
      }
      off_t start = -1, at = 0;
      std::size_t line_number = 0;
      detail::users_file::journal_record record;
      std::string_view rest(all);
      for (std::size_t nl; (nl = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(nl + 1)) {
        ++line_number;
        if (!detail::users_file::parse_journal_line(rest.substr(0, nl), record, reason) ||
            (line_number == 1) != (record.kind == detail::users_file::record_kind::header))
          return bad_content(now, journal_path_ + " line " + std::to_string(line_number) + ": " +
                                      (reason.empty() ? "the first line must be the header, and only it" : reason),
                             error);
        at += static_cast<off_t>(nl + 1);
        if ((record.kind == detail::users_file::record_kind::header ||
             record.kind == detail::users_file::record_kind::compacted) &&
            record.snapshot.sha256 == snapshot_.sha256 && record.snapshot.size == snapshot_.size)
          start = at;
      }
      // Read again through read_journal, from the header (for the
      // stale-or-not decision) or from where this snapshot's changes start.
      if (start > 0) {
        journal_read_ = start;
        journal_extends_ = true;
      }
      const outcome read = read_journal(next, error);
      if (read == outcome::failed) return read;
      if (read == outcome::load_in_full)
        return bad_content(now, journal_path_ + ": a change that cannot apply (a duplicate, or a removal of nobody)",
                           error);
      reflected.journal = journal_version_;
    }
    {
      detail::WriterLock lock(state_mutex_);
      ++counts_.snapshot_loads;
    }
    // One log line says it: this one, or (after a failure) the one saying
    // the files load again.
    load_note_.clear();
    if (stale_changes_)
      load_note_ = "; " + changes(stale_changes_) + " in " + journal_path_ +
                   " made before it not in it, and not applied (the next change moves that file to " + journal_path_ +
                   ".stale-<time>)";
    if (unannounced && log_) {
      log_(path_ + " was replaced by another program: loaded it in full (" + std::to_string(next.size()) + " users)" +
           load_note_);
    } else if (!reads_failing_ && !load_note_.empty() && log_) {
      log_("loaded " + path_ + load_note_);
    }
    return outcome::applied;
  }

  outcome bad_content(const versions& now, const std::string& reason, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    bad_version_ = now;
    error = "invalid content: " + reason;
    return outcome::failed;
  }

  // Records why reads fail; logs it once per reason. Returns false.
  bool fail_reading(const std::string& error) IWSEC_REQUIRES(sync_lock_) {
    bool changed;
    {
      detail::WriterLock lock(state_mutex_);
      changed = last_error_ != error;
      last_error_ = error;
    }
    if (constructed_ && (changed || !reads_failing_) && log_)
      log_("cannot reload " + path_ + " (" + error + "); answering 503 until it can be read");
    reads_failing_ = true;
    return false;
  }

  StoreResult failed(const std::string& error) {
    detail::WriterLock lock(state_mutex_);
    last_error_ = error;
    return StoreResult(StoreStatus::io_error, error);
  }

  // Takes the cross-process lock, then sync_lock_, catches up with the
  // files, and calls change(next, error) with a copy of the users.
  template <typename F>
  StoreResult change_current(F&& change) {
    detail::file_lock cross_process(lock_path_);
    if (!cross_process) return failed(cross_process.error());
    detail::waitable_guard sync(sync_lock_);
    std::string error;
    if (!catch_up(error)) return failed(error);
    detail::user_index next;
    {
      detail::ReaderLock lock(state_mutex_);
      next = index_;
    }
    return change(next, error);
  }

  template <typename F>
  StoreResult write(std::string_view email, F&& mutate) {
    return change_current([&](detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) -> StoreResult {
      return append_change(email, mutate(next), next, error);
    });
  }

  // Makes @p next (the users after a change to @p email whose outcome is
  // @p status) durable: one journal line, or a compaction.
  StoreResult append_change(std::string_view email, StoreResult status, detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    if (status != StoreStatus::ok) return status;
    const User* changed = next.by_email(email);
    const std::string line =
        changed ? detail::users_file::put_line(*changed) : detail::users_file::remove_line(email);
    if (!snapshot_fd_ || needs_compaction_) {
      // No snapshot yet, or one whose users got this load's issue time:
      // the change goes into a whole new snapshot.
      if (!compact_into(next, error)) return failed(error);
    } else {
      if (journal_fd_ && !journal_extends_ && !set_aside_stale_journal(error)) return failed(error);
      if (!journal_fd_ ? !start_journal(line, error) : !append(line, error)) return failed(error);
      ++changes_since_snapshot_;
      // The change is durable. Past a size the journal is folded into the
      // snapshot; if that fails, the journal stays in use as it is.
      const off_t compact_after = std::max<off_t>(min_compaction_bytes, static_cast<off_t>(snapshot_.size / 4));
      if (journal_read_ > compact_after && !compact_into(next, error) && log_)
        log_("cannot compact " + journal_path_ + " into " + path_ + " (" + error + "); appending to it still");
    }
    publish(std::move(next));
    return StoreStatus::ok;
  }

  // The first change on top of the snapshot: a journal holding its header
  // and @p line, put in place atomically.
  bool start_journal(const std::string& line, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    const std::string text = detail::users_file::header_line(snapshot_) + line;
    detail::replace_result replaced = detail::replace_file(journal_path_, text, 0600);
    if (!replaced.replaced) {
      error = replaced.error;
      return false;
    }
    if (!replaced.warning.empty() && log_) log_(replaced.warning + " after replacing " + journal_path_);
    // The change is durable; tracking the journal needs a descriptor that
    // reads it. Without one, the next read loads both files whole.
    if (!open_journal(error)) {
      loaded_ = false;
      error.clear();
      return true;
    }
    journal_read_ = static_cast<off_t>(text.size());
    journal_extends_ = true;
    journal_version_ = identity_of(journal_fd_.get());
    return true;
  }

  // Appends @p line to the journal and fsyncs it; on failure cuts the
  // journal back, so a half-written line cannot join (and spoil) the next.
  bool append(const std::string& line, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    detail::unique_fd fd = detail::open_fd(journal_path_, O_WRONLY | O_APPEND | O_NOFOLLOW);
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0) {
      error = detail::errno_text("cannot open " + journal_path_);
      return false;
    }
    if (st.st_dev != journal_device_ || st.st_ino != journal_inode_) {
      error = journal_path_ + " was replaced during the write";
      return false;
    }
    // A line a crash left half written (no newline) goes first.
    if (st.st_size != journal_read_ && ::ftruncate(fd.get(), journal_read_) != 0) {
      error = detail::errno_text("cannot truncate " + journal_path_);
      return false;
    }
    if (!detail::write_all(fd.get(), line) || detail::durable_fsync(fd.get()) != 0) {
      error = detail::errno_text("cannot append to " + journal_path_);
      if (::ftruncate(fd.get(), journal_read_) != 0 || detail::durable_fsync(fd.get()) != 0) loaded_ = false;
      return false;
    }
    journal_read_ += static_cast<off_t>(line.size());
    journal_version_ = identity_of(fd.get());
    return true;
  }

  // Moves a journal that does not extend the snapshot (it was replaced by
  // hand) aside, kept for the operator, never read again.
  bool set_aside_stale_journal(std::string& error) IWSEC_REQUIRES(sync_lock_) {
    std::string aside = journal_path_ + ".stale-" + std::to_string(system_now());
    for (int n = 1; ::access(aside.c_str(), F_OK) == 0; ++n)
      aside = journal_path_ + ".stale-" + std::to_string(system_now()) + "-" + std::to_string(n);
    if (::rename(journal_path_.c_str(), aside.c_str()) != 0) {
      error = detail::errno_text("cannot rename " + journal_path_ + " to " + aside);
      return false;
    }
    // (The load that found it stale said so in the log, and where it goes.)
    std::string warning;
    const detail::directory_handle dir(detail::parent_directory(journal_path_));
    if (dir) dir.sync(warning);
    close_journal();
    stale_changes_ = 0;
    return true;
  }

  // Writes @p next as the whole snapshot and removes the journal. When
  // @p next is exactly the snapshot plus the journal's changes, the journal
  // first gets a compacted line naming the new snapshot (before the rename),
  // so other processes take it without reading it, and a crash between
  // leaves files that load to the same users. Caller publishes @p next.
  bool compact_into(const detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    if (journal_fd_ && !journal_extends_ && !set_aside_stale_journal(error)) return false;
    std::string text = detail::users_file::serialize_each(next.size(), [&](const auto& each) { next.for_each(each); });
    const detail::directory_handle dir(detail::parent_directory(path_));
    if (!dir) {
      error = dir.error();
      return false;
    }
    const std::string base = detail::base_name(path_);
    detail::temp_file tmp(dir, base);
    if (!tmp) {
      error = tmp.error();
      return false;
    }
    struct stat st;
    if (!detail::write_all(tmp.fd(), text)) {
      error = detail::errno_text("cannot write a temporary file in " + dir.path());
      return false;
    }
    if (!tmp.prepare(base, 0600, error)) return false;
    if (::fstat(tmp.fd(), &st) != 0) {
      error = detail::errno_text("cannot stat a temporary file in " + dir.path());
      return false;
    }
    detail::users_file::snapshot_ref ref;
    ref.sha256 = detail::sha256_hex(text);
    ref.size = static_cast<std::int64_t>(text.size());
    ref.inode = static_cast<std::int64_t>(st.st_ino);
    ref.modified_ns = nanoseconds(st.st_mtim);
    text = std::string();
    if (journal_fd_ && !needs_compaction_ && !append(detail::users_file::compacted_line(ref), error)) return false;
    std::string warning;
    if (!tmp.rename_over(base, error, warning)) return false;
    // The new snapshot is in place and every later read sees it: the write
    // is done, whatever the directory fsync said (reporting a failure now
    // would be untrue), so that goes to the log.
    if (!warning.empty() && log_) log_(warning + " after replacing " + path_);
    snapshot_ = ref;
    snapshot_fd_ = tmp.release();
    changes_since_snapshot_ = 0;
    compacted_.reset();
    needs_compaction_ = false;
    // Its changes are all in the snapshot now. If it cannot be removed, its
    // compacted line keeps it harmless: loads start after that line.
    if (journal_fd_ && ::unlink(journal_path_.c_str()) == 0) {
      close_journal();
      if (!dir.sync(warning) && log_) log_(warning + " after removing " + journal_path_);
    }
    return true;
  }

  // Swaps in the copy a write made, with the versions of the files it wrote.
  void publish(detail::user_index next) IWSEC_REQUIRES(sync_lock_) {
    versions reflected;
    reflected.snapshot = snapshot_fd_ ? identity_of(snapshot_fd_.get()) : std::nullopt;
    reflected.journal = journal_fd_ ? journal_version_ : std::nullopt;
    detail::WriterLock lock(state_mutex_);
    std::swap(index_, next);
    seen_ = reflected;
  }

  // seen_ changes only with sync_lock_ held as well as state_mutex_
  // exclusively, so a thread holding sync_lock_ reads it without
  // state_mutex_. The analysis cannot say "either lock for reading", so
  // this says it once, for the analysis.
  const versions& seen_by_syncer() const IWSEC_REQUIRES(sync_lock_) IWSEC_NO_THREAD_SAFETY_ANALYSIS { return seen_; }

  const std::string path_;
  const std::string journal_path_;
  const std::string lock_path_;
  const Log log_;
  // Lets read() skip its two stats while no event names either file.
  detail::ChangeTracker changes_;

  // What reads use. Guarded by state_mutex_ (taken after sync_lock_).
  mutable detail::SharedMutex state_mutex_;
  detail::user_index index_ IWSEC_GUARDED_BY(state_mutex_);
  versions seen_ IWSEC_GUARDED_BY(state_mutex_);           // the files' versions index_ reflects
  std::string last_error_ IWSEC_GUARDED_BY(state_mutex_);  // why the last write or catch-up failed
  ReadCounts counts_ IWSEC_GUARDED_BY(state_mutex_);

  // How the copy relates to the files. Guarded by sync_lock_.
  detail::waitable_lock sync_lock_ IWSEC_ACQUIRED_BEFORE(state_mutex_);
  // index_ reflects seen_ (else the next catch-up loads whole)
  bool loaded_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // the snapshot reflected (holds its inode)
  detail::unique_fd snapshot_fd_ IWSEC_GUARDED_BY(sync_lock_);
  // its digest, size, inode and modification time
  detail::users_file::snapshot_ref snapshot_ IWSEC_GUARDED_BY(sync_lock_);
  // the journal read from: kept open to drain it after a compaction
  detail::unique_fd journal_fd_ IWSEC_GUARDED_BY(sync_lock_);
  dev_t journal_device_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  ino_t journal_inode_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // as it was before it was last read or appended to
  std::optional<detail::file_identity> journal_version_ IWSEC_GUARDED_BY(sync_lock_);
  // its bytes read: whole lines only
  off_t journal_read_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // its header names the snapshot (else its changes do not apply)
  bool journal_extends_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // changes index_ holds on top of the snapshot
  std::size_t changes_since_snapshot_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // changes in a journal that does not extend the snapshot
  std::size_t stale_changes_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // a compaction announced, no change after it
  std::optional<detail::users_file::snapshot_ref> compacted_ IWSEC_GUARDED_BY(sync_lock_);
  // files whose content was invalid: not parsed again
  std::optional<versions> bad_version_ IWSEC_GUARDED_BY(sync_lock_);
  // the log said reads fail, and not yet that they work again
  bool reads_failing_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // what the last whole load adds to its log line
  std::string load_note_ IWSEC_GUARDED_BY(sync_lock_);
  // users got this load's time as their issue time: write it
  bool needs_compaction_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // the constructor reports failure by throwing, not in the log
  bool constructed_ IWSEC_GUARDED_BY(sync_lock_) = false;
};

}  // namespace iwsec
