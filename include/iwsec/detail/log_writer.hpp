/// @brief A log file written by one thread of its own: the access log's and the audit trail's writer.
/// @file
#pragma once
// Callers append whole lines to a bounded in-memory buffer under a short
// lock and never make a write system call; the writer thread takes the buffer as a
// whole (at the latest max_delay after its first line, sooner when half full,
// when flushed or stopping) and writes it with as few write(2) calls as the
// file takes. What a full buffer does is the owner's choice:
//
//   - WhenFull::drop  (the access log): the line is dropped whole and counted
//     (dropped_lines()); the caller never waits for the disk.
//   - WhenFull::block (an audit trail): the caller waits until the writer has
//     made room; no line is ever lost while the file takes writes.
//
// reopen() (SIGHUP / SIGUSR1: logrotate renamed the file) makes the writer
// write what it holds to the old file, then open the path again (created if
// missing). stop() (or the destructor) writes everything still buffered and
// joins the thread: call it on the way out (SIGINT / SIGTERM). An empty path
// means standard output, which is never reopened nor closed.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "log.hpp"
#include "thread_safety.hpp"

namespace iwsec {
namespace detail {

/// What write() does with a line the buffer has no room for.
enum class WhenFull {
  drop,   ///< drop the line (whole) and count it: the caller never waits
  block,  ///< wait until the writer made room: no line is ever dropped
};

class BufferedWriter {
 public:
  /// @p path: the file (appended to, created with mode 0600 if missing), or
  /// empty for standard output. @p capacity: bytes buffered at most (a line
  /// longer than that is still taken, alone, under WhenFull::block).
  /// @p max_delay: the longest a line waits in the buffer before the writer
  /// takes it (an audit trail's "within a second" is 1 s or less).
  /// @p name: how error messages name this log ("access log", "audit log");
  /// @p log: where they go (default: stderr, "iwsec: ...").
  BufferedWriter(std::string path, WhenFull when_full, std::size_t capacity = 4u << 20,
                 std::chrono::milliseconds max_delay = std::chrono::milliseconds(100),
                 std::string name = "log", Log log = stderr_log())
      : path_(std::move(path)),
        name_(std::move(name)),
        when_full_(when_full),
        capacity_(std::max<std::size_t>(capacity, 1)),
        log_(log ? std::move(log) : stderr_log()),
        max_delay_(max_delay) {
    buffer_.reserve(capacity_);
    spare_.reserve(capacity_);
  }
  ~BufferedWriter() { stop(); }
  BufferedWriter(const BufferedWriter&) = delete;
  BufferedWriter& operator=(const BufferedWriter&) = delete;

  /// Called with each descriptor the writer opens (at start and after every
  /// reopen), before anything is written to it: e.g. fchown to the data
  /// directory's owner. Set before start().
  void on_open(std::function<void(int fd, const std::string& path)> hook) { on_open_ = std::move(hook); }

  /// Opens the file and starts the writer thread; the error message
  /// ("cannot open PATH: reason"), or empty.
  std::string start() {
    std::string error;
    fd_ = open_file(error);
    if (fd_ < 0) return error;
    Lock lock(mutex_);
    running_ = true;
    thread_ = std::thread([this] { run(); });
    return "";
  }

  const std::string& path() const { return path_; }

  /// Appends @p line (which should end with '\n'). Returns false when the
  /// line was dropped (WhenFull::drop with a full buffer).
  bool write(std::string_view line) {
    Lock lock(mutex_);
    if (!running_) {
      lock.unlock();
      return write_unbuffered(line);
    }
    if (buffer_.size() + line.size() > capacity_) {
      if (when_full_ == WhenFull::drop) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      ++blocked_;
      wake_writer();
      lock.wait(space_, [&]() IWSEC_REQUIRES(mutex_) {
        return !running_ || buffer_.empty() || buffer_.size() + line.size() <= capacity_;
      });
      --blocked_;
      if (!running_) {
        lock.unlock();
        return write_unbuffered(line);
      }
    }
    const bool was_below_half = buffer_.size() < capacity_ / 2;
    buffer_.append(line.data(), line.size());
    appended_ += line.size();
    // Wake the writer only when it sleeps for want of lines, or when the
    // buffer passes half: under load a request never makes a system call here.
    if (writer_idle_ || (was_below_half && buffer_.size() >= capacity_ / 2)) wake_writer();
    return true;
  }

  /// Lines dropped so far (WhenFull::drop with a full buffer, or a write
  /// the file refused).
  std::uint64_t dropped_lines() const { return dropped_.load(std::memory_order_relaxed); }

  /// Asks the writer to write what it holds, then open the path again.
  void reopen() {
    Lock lock(mutex_);
    if (path_.empty()) return;
    reopen_ = true;
    wake_writer();
  }

  /// Waits until every line appended before the call has been written.
  void flush() {
    Lock lock(mutex_);
    if (!running_) return;
    const std::uint64_t target = appended_;
    flush_ = true;
    wake_writer();
    lock.wait(flushed_, [&]() IWSEC_REQUIRES(mutex_) { return written_ >= target || !running_; });
  }

  /// Writes everything still buffered, stops the writer thread and closes
  /// the file. Later lines: standard output takes them at once, a file's
  /// are dropped (counted).
  void stop() {
    Lock once(stop_mutex_);
    if (!thread_.joinable()) return;
    {
      Lock lock(mutex_);
      stopping_ = true;
      wake_writer();
    }
    thread_.join();
  }

 private:
  // Not started, or stopped: standard output takes the line at once; a
  // file's line is dropped (counted). Called without mutex_.
  bool write_unbuffered(std::string_view line) {
    if (path_.empty()) return write_out(STDOUT_FILENO, line.data(), line.size()) == line.size();
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  void wake_writer() IWSEC_REQUIRES(mutex_) {
    writer_idle_ = false;
    wake_.notify_one();
  }

  bool urgent() const IWSEC_REQUIRES(mutex_) { return stopping_ || reopen_ || flush_ || blocked_ > 0 || buffer_.size() >= capacity_ / 2; }

  void run() {
    Lock lock(mutex_);
    for (;;) {
      if (buffer_.empty() && !urgent()) {
        writer_idle_ = true;
        lock.wait(wake_, [&]() IWSEC_REQUIRES(mutex_) { return !buffer_.empty() || urgent(); });
        writer_idle_ = false;
      }
      // Give the callers a moment to add more: one write for many lines.
      if (!urgent()) lock.wait_for(wake_, max_delay_, [&]() IWSEC_REQUIRES(mutex_) { return urgent(); });
      spare_.swap(buffer_);
      const std::uint64_t target = appended_;
      const bool reopen = reopen_;
      const bool last = stopping_;
      reopen_ = false;
      flush_ = false;
      if (blocked_ > 0) space_.notify_all();
      lock.unlock();

      if (!spare_.empty()) write_batch();
      spare_.clear();
      if (reopen) reopen_file();

      lock.lock();
      written_ = target;
      flushed_.notify_all();
      if (last && buffer_.empty()) {
        running_ = false;  // from here on write() does not buffer
        space_.notify_all();
        break;
      }
    }
    lock.unlock();
    if (fd_ >= 0 && fd_ != STDOUT_FILENO) ::close(fd_);
    fd_ = -1;
  }

  void write_batch() {
    if (fd_ < 0) {
      dropped_.fetch_add(static_cast<std::uint64_t>(std::count(spare_.begin(), spare_.end(), '\n')),
                         std::memory_order_relaxed);
      return;
    }
    const std::size_t done = write_out(fd_, spare_.data(), spare_.size());
    if (done < spare_.size()) {
      // What did not get written is lost; count its lines (a partial line
      // counts as written: the file has its start).
      const auto from = spare_.begin() + static_cast<std::ptrdiff_t>(done);
      std::uint64_t lost = static_cast<std::uint64_t>(std::count(from, spare_.end(), '\n'));
      if (done > 0 && spare_[done - 1] != '\n' && lost > 0) --lost;
      dropped_.fetch_add(lost, std::memory_order_relaxed);
    }
  }

  // Writes @p size bytes, retrying short writes and EINTR; the bytes
  // written. Reports a failure on stderr once until a write succeeds.
  std::size_t write_out(int fd, const char* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      const int error = n < 0 ? errno : EIO;
      if (!failing_.exchange(true))
        log_(name_ + ": cannot write to " + (path_.empty() ? std::string("standard output") : path_) + ": " +
             std::strerror(error));
      return done;
    }
    failing_.store(false);
    return done;
  }

  int open_file(std::string& error) {
    if (path_.empty()) return STDOUT_FILENO;
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      error = "cannot open " + name_ + " " + path_ + ": " + std::strerror(errno);
      return -1;
    }
    if (on_open_) on_open_(fd, path_);
    return fd;
  }

  // The writer thread, nothing buffered in hand: the old file is complete.
  void reopen_file() {
    std::string error;
    const int fd = open_file(error);
    if (fd < 0) {
      log_(name_ + ": keeping the file open: " + error);
      return;
    }
    if (fd_ >= 0 && fd_ != STDOUT_FILENO) ::close(fd_);
    fd_ = fd;
  }

  const std::string path_;
  const std::string name_;
  const WhenFull when_full_;
  const std::size_t capacity_;
  const Log log_;
  const std::chrono::milliseconds max_delay_;
  std::function<void(int, const std::string&)> on_open_;

  Mutex stop_mutex_;  // one stop() joins the thread
  Mutex mutex_;
  std::condition_variable wake_;     // the writer waits here
  std::condition_variable space_;    // blocked callers wait here
  std::condition_variable flushed_;  // flush() waits here
  std::string buffer_ IWSEC_GUARDED_BY(mutex_);  // lines not yet taken by the writer
  std::string spare_;                            // the writer's batch (its own while unlocked)
  std::uint64_t appended_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::uint64_t written_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::size_t blocked_ IWSEC_GUARDED_BY(mutex_) = 0;
  bool running_ IWSEC_GUARDED_BY(mutex_) = false;  // the writer thread runs (started, not stopped)
  bool writer_idle_ IWSEC_GUARDED_BY(mutex_) = false;
  bool stopping_ IWSEC_GUARDED_BY(mutex_) = false;
  bool reopen_ IWSEC_GUARDED_BY(mutex_) = false;
  bool flush_ IWSEC_GUARDED_BY(mutex_) = false;
  int fd_ = -1;
  std::thread thread_;
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<bool> failing_{false};
};

}  // namespace detail
}  // namespace iwsec
