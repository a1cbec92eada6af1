#pragma once
/// @file
/// @brief POSIX file helpers for durable state: whole-file reads, atomic
/// replacement (write, fsync, rename, fsync the directory), advisory locks.

#include <cerrno>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

/// @brief fsyncs a directory, making a rename or creation inside it durable.
inline bool fsync_directory(const std::string& dir) {
  unique_fd fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
  return fd && ::fsync(fd.get()) == 0;
}

/// @brief Replaces @p path with @p content so that a crash leaves either the
/// old or the new file, never a mix: write a temporary, fsync, rename, fsync
/// the directory.
inline bool write_file_atomically(const std::string& path, std::string_view content, mode_t mode = 0600) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    unique_fd fd = open_fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (!fd) return false;
    if (::fchmod(fd.get(), mode) != 0 || !write_all(fd.get(), content) || ::fsync(fd.get()) != 0) {
      ::unlink(tmp.c_str());
      return false;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return fsync_directory(parent_directory(path));
}

/// @brief An exclusive advisory lock (flock) on a lock file, held for the
/// object's lifetime. Serialises writers across processes.
class file_lock {
 public:
  explicit file_lock(const std::string& lock_path) : fd_(open_fd(lock_path, O_RDWR | O_CREAT, 0600)) {
    if (!fd_) return;
    int rc;
    do {
      rc = ::flock(fd_.get(), LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) fd_.reset();
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

 private:
  unique_fd fd_;  // closing it releases the lock
};

/// @brief Identity of a file version: replacing or editing it changes this.
struct file_identity {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = -1;
  timespec modified{};

  static file_identity of(const struct stat& st) {
    return file_identity{st.st_dev, st.st_ino, st.st_size, st.st_mtim};
  }
  bool operator==(const file_identity& o) const noexcept {
    return device == o.device && inode == o.inode && size == o.size && modified.tv_sec == o.modified.tv_sec &&
           modified.tv_nsec == o.modified.tv_nsec;
  }
  bool operator!=(const file_identity& o) const noexcept { return !(*this == o); }
};

}  // namespace detail
}  // namespace iwsec
