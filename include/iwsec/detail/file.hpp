#pragma once
/// @file
/// @brief POSIX file helpers for durable state: whole-file reads, atomic
/// replacement (exclusive temporary, fsync, rename, fsync the directory,
/// owner and mode kept), advisory locks, the ownership check for state and
/// key files.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hex.hpp"

namespace iwsec {
namespace detail {

/// @brief Closes a file descriptor on scope exit.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~unique_fd() { reset(); }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

inline unique_fd open_fd(const std::string& path, int flags, mode_t mode = 0600) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return unique_fd(fd);
}

inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// @brief Reads everything from @p fd (from its current offset).
inline bool read_all(int fd, std::string& out) {
  out.clear();
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return true;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

/// @brief The directory part of @p path ("." when there is none).
inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// @brief Test seam: when set, every fsync iwsec makes for durability goes
/// through this function instead of ::fsync (a test injects failures with it).
inline std::atomic<int (*)(int)> fsync_hook{nullptr};

/// @brief fsync(2), or the test seam when one is set.
inline int durable_fsync(int fd) {
  int (*hook)(int) = fsync_hook.load();
  return hook ? hook(fd) : ::fsync(fd);
}

/// @brief "what: strerror(errno)", the shape of every file error iwsec reports.
inline std::string errno_text(const std::string& what, int error_number = errno) {
  return what + ": " + std::strerror(error_number);
}

/// @brief fsyncs a directory, making a rename or creation inside it durable.
inline bool fsync_directory(const std::string& dir) {
  unique_fd fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
  return fd && durable_fsync(fd.get()) == 0;
}

/// @brief The last component of @p path.
inline std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// @brief Why @p path must not be trusted with iwsec's state or keys, or
/// nothing when it may: it has to belong to the user running the program and
/// carry no group or other permission bits (the rule ssh applies to its
/// keys). With @p root_may_manage, root may also use a path another account
/// owns (iwsec-admin run by root on a service account's data directory).
inline std::optional<std::string> check_private(const std::string& path, bool root_may_manage = false) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno_text("cannot use " + path);
  const uid_t me = ::geteuid();
  if (st.st_uid != me && !(root_may_manage && me == 0))
    return path + " belongs to uid " + std::to_string(st.st_uid) + ", not to the user running this program (uid " +
           std::to_string(me) + "); refusing to trust it";
  if (st.st_mode & 077) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return path + " is open to other users (mode " + mode + "); refusing to trust it (chmod go= " + path + ")";
  }
  return std::nullopt;
}

/// @brief Gives a file iwsec just created to @p owner when root creates it
/// in another account's directory, so that account (the server) can still
/// open it. Nothing to do, and true, for anyone else.
inline bool give_to_owner(int fd, const struct stat& owner) {
  if (::geteuid() != 0) return true;
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;
  if (st.st_uid == owner.st_uid && st.st_gid == owner.st_gid) return true;
  return ::fchown(fd, owner.st_uid, owner.st_gid) == 0;
}

/// @brief A directory opened once and checked to be one; files are then
/// created, renamed and fsynced relative to its descriptor, so a path
/// component swapped meanwhile cannot redirect them.
class directory_handle {
 public:
  /// @brief Opens @p path; on failure the handle is false and error() says why.
  explicit directory_handle(const std::string& path) : path_(path) {
    fd_ = open_fd(path, O_RDONLY | O_DIRECTORY);
    if (!fd_) {
      error_ = errno_text("cannot open directory " + path);
    } else if (::fstat(fd_.get(), &st_) != 0) {
      error_ = errno_text("cannot stat directory " + path);
      fd_.reset();
    }
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  int fd() const noexcept { return fd_.get(); }
  const std::string& path() const noexcept { return path_; }
  const struct stat& status() const noexcept { return st_; }
  const std::string& error() const noexcept { return error_; }

  /// @brief fsyncs the directory, retrying a failure twice (a rename inside
  /// it that already happened cannot be undone, so it is worth the try).
  bool sync(std::string& error) const {
    for (int attempt = 0; attempt < 3; ++attempt)
      if (durable_fsync(fd_.get()) == 0) return true;
    error = errno_text("cannot fsync directory " + path_);
    return false;
  }

 private:
  std::string path_;
  unique_fd fd_;
  struct stat st_ {};
  std::string error_;
};

/// @brief A temporary file created exclusively (O_EXCL, no symlink followed,
/// an unpredictable name) inside a directory_handle, to be renamed over its
/// target by commit_temp_file(); removed unless committed.
class temp_file {
 public:
  temp_file(const directory_handle& dir, const std::string& target_base, mode_t mode = 0600) : dir_(&dir) {
    for (int attempt = 0; attempt < 16 && !fd_; ++attempt) {
      unsigned char random[8] = {};
      if (::getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
        const auto mix = static_cast<unsigned long long>(::getpid()) * 0x9E3779B97F4A7C15ull ^
                         static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
        std::memcpy(random, &mix, sizeof random);
      }
      name_ = "." + target_base + ".tmp." + hex_encode(random, sizeof random);
      int fd;
      do {
        fd = ::openat(dir.fd(), name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
      } while (fd < 0 && errno == EINTR);
      fd_.reset(fd);
      if (!fd_ && errno != EEXIST) break;
    }
    if (!fd_) error_ = errno_text("cannot create a temporary file in " + dir.path());
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() {
    if (!committed_ && !name_.empty() && fd_) ::unlinkat(dir_->fd(), name_.c_str(), 0);
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  int fd() const noexcept { return fd_.get(); }
  const std::string& error() const noexcept { return error_; }

  /// @brief Gives the file the owner a replaced file had (or, for a new
  /// file, the directory's owner when root writes there) and @p mode (with
  /// @p keep_mode, the replaced file's mode when there is one), fsyncs it and
  /// renames it over @p target_base. False (and the target
  /// untouched) on any failure before the rename. After the rename the
  /// replacement is in place whatever else happens, so it reports true; a
  /// directory fsync that failed even when retried is left in @p warning.
  bool commit(const std::string& target_base, mode_t mode, std::string& error, std::string& warning,
              bool keep_mode = true) {
    return prepare(target_base, mode, error, keep_mode) && rename_over(target_base, error, warning);
  }

  /// @brief commit()'s first half: owner, mode and fsync, so the file is
  /// final (its inode, size and modification time are what the target will
  /// have) before rename_over() puts it in place.
  bool prepare(const std::string& target_base, mode_t mode, std::string& error, bool keep_mode = true) {
    struct stat old;
    const bool replacing = ::fstatat(dir_->fd(), target_base.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (!replacing && errno != ENOENT) {
      error = errno_text("cannot stat " + dir_->path() + "/" + target_base);
      return false;
    }
    if (replacing && !S_ISREG(old.st_mode)) {
      error = dir_->path() + "/" + target_base + " is not a regular file; refusing to replace it";
      return false;
    }
    const struct stat& owner = replacing ? old : dir_->status();
    if (!give_to_owner(fd_.get(), owner)) {
      error = errno_text("cannot give " + dir_->path() + "/" + target_base + " to uid " + std::to_string(owner.st_uid));
      return false;
    }
    if (::fchmod(fd_.get(), replacing && keep_mode ? (old.st_mode & 0777) : mode) != 0) {
      error = errno_text("cannot chmod a temporary file in " + dir_->path());
      return false;
    }
    if (durable_fsync(fd_.get()) != 0) {
      error = errno_text("cannot fsync a temporary file in " + dir_->path());
      return false;
    }
    return true;
  }

  /// @brief commit()'s second half: the rename over @p target_base and the
  /// directory fsync (a failure of which is left in @p warning).
  bool rename_over(const std::string& target_base, std::string& error, std::string& warning) {
    if (::renameat(dir_->fd(), name_.c_str(), dir_->fd(), target_base.c_str()) != 0) {
      error = errno_text("cannot rename a temporary file over " + dir_->path() + "/" + target_base);
      return false;
    }
    committed_ = true;
    dir_->sync(warning);
    return true;
  }

  /// @brief The open descriptor, now naming the committed file.
  unique_fd release() noexcept { return std::move(fd_); }

 private:
  const directory_handle* dir_;
  std::string name_;
  unique_fd fd_;
  std::string error_;
  bool committed_ = false;
};

/// @brief The outcome of replace_file(): whether the path now holds the new
/// content, why not, and a descriptor of the new version (for its identity).
struct replace_result {
  bool replaced = false;
  std::string error;    ///< why not replaced (the target is then untouched)
  std::string warning;  ///< replaced, but the directory fsync failed
  unique_fd fd;         ///< the new version, while replaced
};

/// @brief Replaces @p path with @p content so that a crash leaves either the
/// old or the new file, never a mix: an exclusive temporary beside it,
/// written, fsynced, renamed over it, the directory fsynced. The new file
/// keeps the owner and mode of the one it replaces (so root editing a
/// service account's file leaves it readable by that account); a new file
/// gets @p mode and the directory's owner.
inline replace_result replace_file(const std::string& path, std::string_view content, mode_t mode = 0600) {
  replace_result out;
  const directory_handle dir(parent_directory(path));
  if (!dir) {
    out.error = dir.error();
    return out;
  }
  const std::string base = base_name(path);
  temp_file tmp(dir, base);
  if (!tmp) {
    out.error = tmp.error();
    return out;
  }
  if (!write_all(tmp.fd(), content)) {
    out.error = errno_text("cannot write a temporary file in " + dir.path());
    return out;
  }
  out.replaced = tmp.commit(base, mode, out.error, out.warning);
  if (out.replaced) out.fd = tmp.release();
  return out;
}

/// @brief replace_file() for callers that only need to know whether @p path
/// now holds @p content.
inline bool write_file_atomically(const std::string& path, std::string_view content, mode_t mode = 0600) {
  return replace_file(path, content, mode).replaced;
}

/// @brief An exclusive advisory lock (flock) on a lock file, held for the
/// object's lifetime. Serialises writers across processes.
class file_lock {
 public:
  explicit file_lock(const std::string& lock_path)
      : fd_(open_fd(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600)) {
    if (!fd_) {
      error_ = errno_text("cannot open lock file " + lock_path);
      return;
    }
    // root creating the lock in a service account's directory gives it to
    // that account, whose server must open it too.
    struct stat dir;
    if (::stat(parent_directory(lock_path).c_str(), &dir) == 0) give_to_owner(fd_.get(), dir);
    int rc;
    do {
      rc = ::flock(fd_.get(), LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      error_ = errno_text("cannot lock " + lock_path);
      fd_.reset();
    }
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  /// @brief Why the lock is not held (empty when it is).
  const std::string& error() const noexcept { return error_; }

 private:
  unique_fd fd_;  // closing it releases the lock
  std::string error_;
};

/// @brief Identity of a file version: replacing or editing it changes this.
struct file_identity {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = -1;
  timespec modified{};
  timespec changed{};  // a chmod or chown (that may make it readable again) changes this

  static file_identity of(const struct stat& st) {
    return file_identity{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
  }
  bool operator==(const file_identity& o) const noexcept {
    return device == o.device && inode == o.inode && size == o.size && modified.tv_sec == o.modified.tv_sec &&
           modified.tv_nsec == o.modified.tv_nsec && changed.tv_sec == o.changed.tv_sec &&
           changed.tv_nsec == o.changed.tv_nsec;
  }
  bool operator!=(const file_identity& o) const noexcept { return !(*this == o); }
};

}  // namespace detail
}  // namespace iwsec
