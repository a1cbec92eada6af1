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
/// a file that is a symbolic link, a directory reached through one, a file
/// system whose changes inotify may not see (NFS and other network or FUSE
/// file systems: only local ones are trusted), a directory deleted or moved
/// while watched, a queue overflow, no inotify at all: each makes the
/// trackers concerned fall back to a stat per check. Writes through a
/// shared memory mapping or through a hard link in another directory raise
/// no event in the watched directory; iwsec's own writers and editors use
/// neither.

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
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
  /// @brief One watched directory. Dead once it is deleted, moved, unmounted
  /// or one of its watched names turns into a symbolic link: trackers on a
  /// dead directory stat again on every check.
  struct Directory {
    std::string path;
    int wd = -1;
    std::map<std::string, std::size_t> names;  // watched name -> trackers on it (guarded by the watch's mutex)
    std::atomic<bool> alive{true};
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
    if (fd < 0) return 0;
    int queued = 0;
    // A drain in progress has taken the events off the queue but not yet
    // counted them: wait for it rather than answer the old generation.
    if (::ioctl(fd, FIONREAD, &queued) == 0 && queued == 0 && !draining_.load()) return generation_.load();
    Lock lock(mutex_);
    draining_.store(true);
    drain();
    draining_.store(false);
    return generation_.load();
#else
    return 0;
#endif
  }

  /// @brief Watches @p path's name in its directory; nothing when it cannot
  /// be watched (see the file comment). The caller gives it back to
  /// unwatch().
  std::shared_ptr<Directory> watch(const std::string& path) IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    const std::string dir = parent_directory(path);
    const std::string name = base_name(path);
    if (name.empty() || name == "." || name == "..") return nullptr;
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) return nullptr;
    if (!reached_directly(dir) || !local_file_system(dir)) return nullptr;
    Lock lock(mutex_);
    if (!fd_) {
      if (open_failed_) return nullptr;
      fd_ = unique_fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
      if (!fd_) {
        open_failed_ = true;  // e.g. the per-user instance limit: stat instead
        return nullptr;
      }
      fd_number_.store(fd_.get());
    }
    const int wd = ::inotify_add_watch(fd_.get(), dir.c_str(), events | IN_ONLYDIR);
    if (wd < 0) return nullptr;
    std::shared_ptr<Directory>& d = directories_[wd];
    if (!d || !d->alive.load()) {
      d = std::make_shared<Directory>();
      d->path = dir;
      d->wd = wd;
    }
    ++d->names[name];
    // The name may have become a link between the check above and the watch.
    if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) d->alive.store(false);
    return d;
#else
    (void)path;
    return nullptr;
#endif
  }

  /// @brief Gives back what watch() returned for @p path.
  void unwatch(const std::shared_ptr<Directory>& d, const std::string& path) IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    if (!d) return;
    Lock lock(mutex_);
    auto name = d->names.find(base_name(path));
    if (name != d->names.end() && --name->second == 0) d->names.erase(name);
    if (!d->names.empty()) return;
    auto it = directories_.find(d->wd);
    if (it != directories_.end() && it->second == d) {
      if (d->alive.load()) ::inotify_rm_watch(fd_.get(), d->wd);
      directories_.erase(it);
    }
    d->alive.store(false);
#else
    (void)d;
    (void)path;
#endif
  }

 private:
#if defined(__linux__)
  static constexpr std::uint32_t events = IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE |
                                          IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF;

  // Takes every queued event and counts those that name a watched file.
  void drain() IWSEC_REQUIRES(mutex_) {
    alignas(inotify_event) char buffer[16384];
    bool changed = false;
    for (;;) {
      const ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {  // cannot read the queue: trust it no more
        for (auto& entry : directories_) entry.second->alive.store(false);
        changed = true;
        break;
      }
      for (ssize_t at = 0; at < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buffer + at);
        at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
        if (e->mask & IN_Q_OVERFLOW) {  // events were lost: every tracker checks its files once
          changed = true;
          continue;
        }
        auto it = directories_.find(e->wd);
        if (it == directories_.end()) continue;
        Directory& d = *it->second;
        if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
          d.alive.store(false);
          changed = true;
          continue;
        }
        if (e->len == 0) {  // the directory's own mode or owner: its files may have become unreadable
          changed = true;
          continue;
        }
        const std::string name(e->name);  // NUL-padded to len
        if (d.names.find(name) == d.names.end()) continue;
        changed = true;
        struct stat st;
        if ((e->mask & (IN_CREATE | IN_MOVED_TO)) && ::lstat((d.path + "/" + name).c_str(), &st) == 0 &&
            S_ISLNK(st.st_mode))
          d.alive.store(false);
      }
    }
    if (changed) generation_.fetch_add(1);
  }

  // Whether @p dir names its directory without a symbolic link on the way
  // (a link swapped later would not be seen).
  static bool reached_directly(const std::string& dir) {
    std::string absolute = dir;
    if (dir.empty() || dir[0] != '/') {
      char cwd[PATH_MAX];
      if (!::getcwd(cwd, sizeof cwd)) return false;
      absolute = std::string(cwd) + "/" + dir;
    }
    std::vector<std::string> parts;
    for (std::size_t at = 0; at <= absolute.size();) {
      std::size_t slash = absolute.find('/', at);
      if (slash == std::string::npos) slash = absolute.size();
      const std::string part = absolute.substr(at, slash - at);
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!part.empty() && part != ".") {
        parts.push_back(part);
      }
      at = slash + 1;
    }
    std::string lexical;
    for (const auto& p : parts) lexical += "/" + p;
    if (lexical.empty()) lexical = "/";
    char* real = ::realpath(absolute.c_str(), nullptr);
    if (!real) return false;
    const bool same = lexical == real;
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
  bool open_failed_ IWSEC_GUARDED_BY(mutex_) = false;
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
  explicit ChangeTracker(std::vector<std::string> paths) : paths_(std::move(paths)) {
    for (const auto& p : paths_) {
      auto d = ChangeWatch::instance().watch(p);
      directories_.push_back(d);
      if (!d) watched_ = false;
    }
  }
  ~ChangeTracker() {
    for (std::size_t i = 0; i < paths_.size(); ++i) ChangeWatch::instance().unwatch(directories_[i], paths_[i]);
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
    for (const auto& d : directories_)
      if (!d->alive.load()) return false;
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
  const std::vector<std::string> paths_;
  std::vector<std::shared_ptr<ChangeWatch::Directory>> directories_;
  bool watched_ = true;
  std::atomic<std::uint64_t> checked_{0};
};

}  // namespace detail
}  // namespace iwsec
