#pragma once
/// @file
/// @brief ChangeWatch: whether any of a set of files may have changed, told
/// by one inotify descriptor per process instead of a stat per file per
/// request.
///
/// Why: a validation used to stat the keyring, the users file and its
/// journal (three system calls) to keep "an admin change applies to the next
/// request" (SPEC, "Bundled programs"). A change to a watched name queues an
/// inotify event inside the very system call that makes it (rename, write,
/// link, unlink), before the program that made it returns; so a request
/// that starts after the change finds the event queued, and one FIONREAD
/// ioctl on the shared descriptor tells whether anything is queued at all.
/// Only then do the stores stat their files, as before.
///
/// The watch never decides that a file is unchanged when it cannot know:
/// a relative path (a chdir() would move it), a file that is a symbolic
/// link or has a second hard link, a directory reached through a link, a
/// file system whose changes inotify may not see (NFS and other network or
/// FUSE file systems: only local ones are trusted), a directory on the path
/// deleted, moved or replaced while watched (the directories above are
/// watched for that), a queue overflow, a child of fork(), no inotify at
/// all: each makes the trackers concerned fall back to a stat per check.
/// Not seen: a file system mounted over the path while watched, a second
/// hard link made in another directory after the watch began, and writes
/// through a shared memory mapping; iwsec's writers and editors do none of
/// these.

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <pthread.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#endif

#include "file.hpp"
#include "thread_safety.hpp"

namespace iwsec {
namespace detail {

/// @brief The process's one inotify descriptor, its watched directories and
/// the generation that counts the events naming a watched file.
class ChangeWatch {
 public:
  /// @brief One watched directory: a file's own (its names), or one above
  /// a file's (it guards the path down to it). Dead once it, or a directory
  /// on the way to it, is deleted, moved, replaced or unmounted, or one of
  /// its watched names turns into a symbolic link: trackers on a dead
  /// directory stat on every check.
  struct Directory {
    std::string path;  // absolute, no link on the way
    int wd = -1;
    std::map<std::string, std::size_t> names;  // watched name -> trackers on it (under the watch's mutex)
    std::size_t below = 0;                     // trackers on files below it (under the watch's mutex)
    bool kernel_gone = false;                  // IN_IGNORED seen: no watch left to remove (under the mutex)
    std::atomic<bool> alive{true};
  };

  /// @brief What watch() hands out: the file's directory and those above it.
  struct Registration {
    std::shared_ptr<Directory> directory;
    std::vector<std::shared_ptr<Directory>> above;
    std::string name;
  };

  /// @brief The process-wide watch (its descriptor is opened on first use;
  /// never destroyed, so threads still reading at exit find it).
  static ChangeWatch& instance() {
    static ChangeWatch* watch = new ChangeWatch;
    return *watch;
  }

  /// @brief The current generation: every event naming a watched file
  /// queued before this call is counted in it. 0 when there is no watch.
  /// One ioctl when nothing is queued.
  std::uint64_t generation() IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    const int fd = fd_number_.load();
    if (fd < 0 || forked().load()) return 0;
    int queued = 0;
    // A drain in progress has taken the events off the queue but not yet
    // counted them: wait for it rather than answer the old generation.
    if (::ioctl(fd, FIONREAD, &queued) == 0 && queued == 0 && !draining_.load()) return generation_.load();
    Lock lock(mutex_);
    draining_.store(true);
    try {
      drain();
    } catch (...) {  // events taken and not counted: trust no watch from here on
      kill_under("/");
      generation_.fetch_add(1);
    }
    draining_.store(false);
    return generation_.load();
#else
    return 0;
#endif
  }

  /// @brief Watches @p path's name in its directory, and the path down to
  /// it; nothing when it cannot be watched (see the file comment; a
  /// relative path too: a chdir() would move it). The caller gives it back
  /// to unwatch().
  std::optional<Registration> watch(const std::string& path) IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    if (path.empty() || path[0] != '/' || forked().load()) return std::nullopt;
    const std::string dir = parent_directory(path);
    const std::string name = base_name(path);
    if (name.empty() || name == "." || name == "..") return std::nullopt;
    if (!one_name(path) || !reached_directly(dir) || !local_file_system(dir)) return std::nullopt;
    Lock lock(mutex_);
    if (!fd_) {
      fd_ = unique_fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
      if (!fd_) return std::nullopt;  // e.g. the per-user instance limit: stat instead
      fd_number_.store(fd_.get());
    }
    // From "/" down: a component swapped while this runs raises an event on
    // a directory already watched, and kills what is registered below it.
    std::vector<std::string> chain;
    for (std::string at = dir;; at = parent_directory(at)) {
      chain.push_back(at);
      if (at == "/") break;
    }
    Registration r;
    r.name = name;
    for (auto at = chain.rbegin(); at != chain.rend(); ++at) {
      const bool own = at + 1 == chain.rend();
      const int wd = ::inotify_add_watch(fd_.get(), at->c_str(), (own ? own_events : above_events) | IN_MASK_ADD | IN_ONLYDIR);
      if (wd < 0) {  // e.g. the watch limit: give back what was taken
        release(r);
        return std::nullopt;
      }
      std::shared_ptr<Directory>& slot = directories_[wd];
      if (slot && slot->alive.load() && slot->path != *at) {
        // The inode watched under another path (moved, or reached twice):
        // what hung on the old path can no longer be trusted.
        kill_under(slot->path);
        generation_.fetch_add(1);
      }
      if (!slot || !slot->alive.load() || slot->path != *at) {
        slot = std::make_shared<Directory>();
        slot->path = *at;
        slot->wd = wd;
      }
      if (own) {
        ++slot->names[name];
        r.directory = slot;
      } else {
        ++slot->below;
        r.above.push_back(slot);
      }
    }
    // Swapped for a link, or moved, between the checks above and the watches.
    if (!one_name(path) || !reached_directly(dir)) r.directory->alive.store(false);
    return r;
#else
    (void)path;
    return std::nullopt;
#endif
  }

  /// @brief Gives back what watch() returned.
  void unwatch(Registration& r) IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    if (forked().load()) return;
    Lock lock(mutex_);
    release(r);
#else
    (void)r;
#endif
  }

 private:
#if defined(__linux__)
  // A directory above a watched file: only what changes the names on the
  // path, and its own mode (writes to files in it, such as logs, raise no
  // event). A watched file's own directory: everything.
  static constexpr std::uint32_t above_events =
      IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB;
  static constexpr std::uint32_t own_events = above_events | IN_MODIFY;

  // Set in a child of fork(); not a member, so the handler never waits for
  // instance() (a fork during its first call).
  static std::atomic<bool>& forked() {
    static std::atomic<bool> flag{false};
    return flag;
  }

  ChangeWatch() {
    // A child of fork() shares the parent's queue but not its count: it
    // stats on every check rather than take events the parent needs.
    ::pthread_atfork(nullptr, nullptr, [] { forked().store(true); });
  }

  void release(Registration& r) IWSEC_REQUIRES(mutex_) {
    const auto done_with = [this](const std::shared_ptr<Directory>& d) IWSEC_REQUIRES(mutex_) {
      if (!d->names.empty() || d->below != 0) return;
      auto it = directories_.find(d->wd);
      if (it == directories_.end() || it->second != d) return;
      if (!d->kernel_gone) ::inotify_rm_watch(fd_.get(), d->wd);
      directories_.erase(it);
      d->alive.store(false);
    };
    if (r.directory) {
      auto it = r.directory->names.find(r.name);
      if (it != r.directory->names.end() && --it->second == 0) r.directory->names.erase(it);
      done_with(r.directory);
    }
    for (const auto& d : r.above) {
      if (d->below > 0) --d->below;
      done_with(d);
    }
    r.directory.reset();
    r.above.clear();
  }

  // Marks dead every watched directory at or below @p prefix; true when one was alive.
  bool kill_under(const std::string& prefix) IWSEC_REQUIRES(mutex_) {
    bool killed = false;
    for (auto& entry : directories_) {
      Directory& d = *entry.second;
      const bool under = prefix == "/" || d.path == prefix ||
                         (d.path.size() > prefix.size() && d.path.compare(0, prefix.size(), prefix) == 0 &&
                          d.path[prefix.size()] == '/');
      if (under && d.alive.exchange(false)) killed = true;
    }
    return killed;
  }

  // Takes every queued event and counts those that can change what a
  // watched path names.
  void drain() IWSEC_REQUIRES(mutex_) {
    alignas(inotify_event) char buffer[16384];
    bool changed = false;
    for (;;) {
      const ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {  // cannot read the queue: trust it no more
        kill_under("/");
        changed = true;
        break;
      }
      for (ssize_t at = 0; at < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buffer + at);
        at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
        if (e->mask & IN_Q_OVERFLOW) {  // events were lost, a move among them perhaps: trust no watch
          kill_under("/");
          changed = true;
          continue;
        }
        auto it = directories_.find(e->wd);
        if (it == directories_.end()) continue;
        const std::shared_ptr<Directory> d = it->second;
        if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
          if (e->mask & IN_IGNORED) d->kernel_gone = true;
          kill_under(d->path);
          changed = true;
          continue;
        }
        if (e->len == 0) {  // the directory's own mode or owner: its files may have become unreadable
          changed = true;
          continue;
        }
        const std::string name(e->name);  // NUL-padded to len
        const std::string child = d->path == "/" ? "/" + name : d->path + "/" + name;
        // A directory on a watched path removed, moved or replaced.
        if ((e->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) && kill_under(child)) changed = true;
        if (d->names.find(name) == d->names.end()) continue;
        changed = true;
        if ((e->mask & (IN_CREATE | IN_MOVED_TO)) && !one_name(child)) d->alive.store(false);
      }
    }
    if (changed) generation_.fetch_add(1);
  }

  // False when @p path is a symbolic link or a file with other names (a
  // write through another directory's link raises no event here).
  static bool one_name(const std::string& path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
    return !S_ISLNK(st.st_mode) && (S_ISDIR(st.st_mode) || st.st_nlink <= 1);
  }

  // Whether @p dir is spelled as its canonical path: no symbolic link on
  // the way (a link swapped later would not be seen), and no ".", ".." or
  // repeated slash (the stores would go through directories not watched).
  static bool reached_directly(const std::string& dir) {
    char* real = ::realpath(dir.c_str(), nullptr);
    if (!real) return false;
    const bool same = dir == real;
    std::free(real);
    return same;
  }

  // Whether inotify sees every change to files in @p dir: local file
  // systems only (a network file system's other clients raise no event).
  static bool local_file_system(const std::string& dir) {
    struct statfs fs;
    if (::statfs(dir.c_str(), &fs) != 0) return false;
    switch (static_cast<unsigned long>(fs.f_type)) {
      case 0xEF53UL:      // ext2, ext3, ext4
      case 0x58465342UL:  // xfs
      case 0x9123683EUL:  // btrfs
      case 0x01021994UL:  // tmpfs
      case 0xF2F52010UL:  // f2fs
      case 0x2FC12FC1UL:  // zfs
      case 0x794C7630UL:  // overlayfs (containers)
        return true;
      default:
        return false;
    }
  }

  Mutex mutex_;
  unique_fd fd_ IWSEC_GUARDED_BY(mutex_);  // opened once, kept to the end
  std::atomic<int> fd_number_{-1};         // its number, for generation()'s one ioctl
  std::map<int, std::shared_ptr<Directory>> directories_ IWSEC_GUARDED_BY(mutex_);
  std::atomic<std::uint64_t> generation_{1};
  std::atomic<bool> draining_{false};
#endif
};

/// @brief One reader's files under the process's ChangeWatch: tells when
/// they cannot have changed since the reader last checked them by stat.
///
///     const auto g = changes_.now();
///     if (changes_.unchanged(g)) return fast();   // no stat
///     ... stat and compare (or reload) as before ...
///     changes_.checked(g);                       // only once that succeeded
class ChangeTracker {
 public:
  explicit ChangeTracker(const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
      auto r = ChangeWatch::instance().watch(p);
      if (!r) {  // one file unwatched: stat them all, and hold no watch for nothing
        watched_ = false;
        for (auto& held : registrations_) ChangeWatch::instance().unwatch(held);
        registrations_.clear();
        return;
      }
      registrations_.push_back(std::move(*r));
    }
  }
  ~ChangeTracker() {
    for (auto& r : registrations_) ChangeWatch::instance().unwatch(r);
  }
  ChangeTracker(const ChangeTracker&) = delete;
  ChangeTracker& operator=(const ChangeTracker&) = delete;

  /// @brief Whether every file is watched (else unchanged() is always false).
  bool watched() const noexcept { return watched_; }

  /// @brief The generation to test and record: the one a Scope on this
  /// thread took when there is one, else the watch's current one.
  std::uint64_t now() const {
    if (!watched_) return 0;
    const std::uint64_t scoped = Scope::current();
    return scoped != 0 ? scoped : ChangeWatch::instance().generation();
  }

  /// @brief True when the files were checked at generation @p g or later
  /// and nothing since made the watch untrustworthy: no stat is needed.
  bool unchanged(std::uint64_t g) const noexcept {
    if (!watched_ || g == 0 || g > checked_.load(std::memory_order_acquire)) return false;
    for (const auto& r : registrations_)
      if (!r.directory->alive.load()) return false;
    return true;
  }

  /// @brief The files were found as the reader's copy reflects them (or it
  /// was brought up to them) by a stat made after now() returned @p g.
  void checked(std::uint64_t g) noexcept {
    std::uint64_t seen = checked_.load(std::memory_order_relaxed);
    while (g > seen && !checked_.compare_exchange_weak(seen, g, std::memory_order_release)) {
    }
  }

  /// @brief For one request: every tracker on this thread uses one
  /// generation, taken when the scope opens (one ioctl per request, not
  /// one per file). Changes queued after it apply from the next request.
  class Scope {
   public:
    Scope() : outer_(slot()) { slot() = ChangeWatch::instance().generation(); }
    ~Scope() { slot() = outer_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    static std::uint64_t current() noexcept { return slot(); }

   private:
    static std::uint64_t& slot() noexcept {
      static thread_local std::uint64_t generation = 0;
      return generation;
    }
    std::uint64_t outer_;
  };

 private:
  std::vector<ChangeWatch::Registration> registrations_;
  bool watched_ = true;
  std::atomic<std::uint64_t> checked_{0};
};

}  // namespace detail
}  // namespace iwsec
