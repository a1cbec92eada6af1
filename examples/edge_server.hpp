#pragma once
// iwsec-server's own connection handling, for what cpp-httplib has no knob
// for (0.11.4 to the newest): at most N header lines and B bytes of headers
// per request (431 and close past that), a header line the parser would not
// take for the end of the headers never taken for it here either (400 and
// close), a deadline for a request's headers (slow clients), connections per
// client address capped, worker threads made on demand, idle keep-alive
// connections closed first when the workers run short, and a lingering close
// so a client reads its last answer before any reset.
//
// Built only on what every release exposes: Server::process_and_close_socket
// is virtual (private, but an override is allowed), Server::process_request
// and the timeout fields are protected, Stream and TaskQueue are abstract.
// The override replaces httplib's keep-alive loop with the same loop over a
// Stream of our own; parsing and routing stay httplib's. What differs between
// releases is in edge_compat.hpp. Plain HTTP only: TLS (SSLServer) keeps
// httplib's own loop.

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

#include "edge_compat.hpp"

namespace edge {

/// What the connection handling enforces.
struct Limits {
  std::size_t max_header_lines = 100;          // header lines per request (request line not counted)
  std::size_t max_header_bytes = 32 * 1024;    // request line and headers
  std::chrono::milliseconds header_deadline{10000};  // from a request's first byte to its blank line
  std::size_t max_connections_per_client = 128;     // 0: no cap
  std::string help_url_base = "https://docs.infoworks.io/api/errors";
};

// Set by a handler (the pre-routing one) on the worker's thread: close the
// connection after this answer (httplib 0.11 ignores `Connection: close` in
// an answer, and sends a HEAD answer without the body whose failed write
// would close it).
inline thread_local bool close_after_answer = false;

/// Connections waiting, idle, for their next request (keep-alive) or their
/// first: each holds a worker. When the workers run short, the longest idle
/// are closed first (as nginx does), so idle connections never starve a new
/// client and keep-alive stays as long as ever for everyone while there is
/// room. Kept in shards (by descriptor), each with its own lock: every
/// request enters and leaves, and workers on different cores then take
/// different locks; evict() takes them all and picks the longest idle across
/// them.
class IdleConnections {
 public:
  struct Entry {
    int fd;
    bool evicted;
    std::chrono::steady_clock::time_point since;  // when it started waiting
  };
  using Handle = std::list<Entry>::iterator;
  /// A connection's own entry, made once per connection (entry()) and moved
  /// in and out of the idle list by enter() and leave(): no allocation per
  /// keep-alive wait.
  using Slot = std::list<Entry>;

  /// A slot for the connection on @p fd.
  static Slot entry(int fd) { return Slot{Entry{fd, false, {}}}; }

  /// The connection of @p slot (holding its one entry) starts waiting.
  Handle enter(Slot& slot) {
    const Handle h = slot.begin();
    shard& s = shard_of(h->fd);
    iwsec::detail::Lock lock(s.mutex);
    h->since = std::chrono::steady_clock::now();  // under the lock: each shard's list stays oldest first
    s.idle.splice(s.idle.end(), slot, h);
    return h;
  }

  /// It stops waiting (the entry goes back to @p slot); false when it was
  /// chosen to close meanwhile.
  bool leave(Handle h, Slot& slot) {
    shard& s = shard_of(h->fd);
    iwsec::detail::Lock lock(s.mutex);
    const bool evicted = h->evicted;
    slot.splice(slot.end(), evicted ? s.evicted : s.idle, h);
    return !evicted;
  }

  /// Closes up to @p n of the longest idle connections: their reading end
  /// is shut (under the lock, so the descriptor is still theirs), which
  /// wakes their wait; how many.
  /// Holds every shard's lock throughout, through an array of locks the
  /// analysis cannot follow: hence no analysis here.
  std::size_t evict(std::size_t n) IWSEC_NO_THREAD_SAFETY_ANALYSIS {
    std::array<std::unique_lock<iwsec::detail::Mutex>, shard_count> locks;
    for (std::size_t i = 0; i < shard_count; ++i)
      locks[i] = std::unique_lock<iwsec::detail::Mutex>(shards_[i].mutex);
    std::size_t done = 0;
    while (done < n) {
      shard* oldest = nullptr;  // the shard whose first entry has waited longest
      for (shard& s : shards_)
        if (!s.idle.empty() && (!oldest || s.idle.front().since < oldest->idle.front().since)) oldest = &s;
      if (!oldest) break;
      const Handle h = oldest->idle.begin();
      h->evicted = true;
      ::shutdown(h->fd, SHUT_RD);
      oldest->evicted.splice(oldest->evicted.end(), oldest->idle, h);
      ++done;
    }
    return done;
  }

 private:
  static constexpr std::size_t shard_count = 16;
  struct shard {
    iwsec::detail::Mutex mutex;
    std::list<Entry> idle IWSEC_GUARDED_BY(mutex);     // oldest first
    std::list<Entry> evicted IWSEC_GUARDED_BY(mutex);  // chosen to close, not yet gone
  };
  shard& shard_of(int fd) { return shards_[static_cast<std::size_t>(fd) % shard_count]; }

  std::array<shard, shard_count> shards_;
};

/// A task queue that starts a worker whenever none is idle, up to a bound:
/// a slow connection holds its thread, so a fixed pool the size of the
/// connection cap would let one client starve every other. At the bound, a
/// new connection makes the longest idle ones (@p idle) close.
class GrowingThreadPool : public httplib::TaskQueue {
 public:
  explicit GrowingThreadPool(std::size_t max_threads, IdleConnections* idle = nullptr)
      : max_threads_(std::max<std::size_t>(1, max_threads)), idle_connections_(idle) {}
  ~GrowingThreadPool() override { shutdown(); }

  compat::enqueue_result enqueue(std::function<void()> fn) override {
    iwsec::detail::Lock lock(mutex_);
    jobs_.push_back(std::move(fn));
    if (idle_ >= jobs_.size()) {
      cond_.notify_one();
      return compat::accepted();
    }
    bool started = false;
    if (threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { work(); });
        started = true;
      } catch (const std::system_error&) {
      }
    }
    if (!started) {
      // No thread to be had: the job waits for a busy one, and idle
      // connections make room (beyond those already asked to).
      cond_.notify_one();
      const std::size_t short_by = jobs_.size() - idle_;
      if (idle_connections_ && short_by > evicting_) evicting_ += idle_connections_->evict(short_by - evicting_);
    }
    return compat::accepted();
  }

  void shutdown() override {
    {
      iwsec::detail::Lock lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    cond_.notify_all();
    for (auto& t : threads_) t.join();  // no enqueue after shutdown: httplib stops accepting first
  }

 private:
  void work() {
    iwsec::detail::Lock lock(mutex_);
    for (;;) {
      ++idle_;
      lock.wait(cond_, [this]() IWSEC_REQUIRES(mutex_) { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // stopping, nothing left
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
      if (evicting_ > 0) --evicting_;
    }
  }

  const std::size_t max_threads_;
  IdleConnections* const idle_connections_;
  iwsec::detail::Mutex mutex_;
  std::size_t evicting_ IWSEC_GUARDED_BY(mutex_) = 0;  // connections asked to close for queued jobs
  std::condition_variable cond_;
  std::deque<std::function<void()>> jobs_ IWSEC_GUARDED_BY(mutex_);
  std::vector<std::thread> threads_;  // grown under mutex_; joined after stopping_ (no enqueue then)
  std::size_t idle_ IWSEC_GUARDED_BY(mutex_) = 0;
  bool stopping_ IWSEC_GUARDED_BY(mutex_) = false;
};

/// Open connections per client address (IPv6 by /64, like the lockout).
class ConnectionRegistry {
 public:
  bool enter(const std::string& client, std::size_t cap) {
    iwsec::detail::Lock lock(mutex_);
    std::size_t& n = open_[client];
    if (cap != 0 && n >= cap) {
      if (n == 0) open_.erase(client);
      return false;
    }
    ++n;
    return true;
  }
  void leave(const std::string& client) {
    iwsec::detail::Lock lock(mutex_);
    const auto it = open_.find(client);
    if (it != open_.end() && --it->second == 0) open_.erase(it);
  }

 private:
  iwsec::detail::Mutex mutex_;
  std::unordered_map<std::string, std::size_t> open_ IWSEC_GUARDED_BY(mutex_);
};

/// An answer written straight to the socket, before or instead of httplib's:
/// @p status_line (e.g. "431 Request Header Fields Too Large"), the envelope
/// of @p details and @p code, the connection to be closed.
inline std::string raw_envelope_answer(const char* status_line, const char* extra_headers, const char* message,
                                       const std::string& details, const char* code, const std::string& help_base) {
  const std::string body = iwsec::detail::error_envelope(message, details, code, help_base);
  return std::string("HTTP/1.1 ") + status_line + "\r\nConnection: close\r\n" + extra_headers +
         "Cache-Control: no-store\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

/// The address of a socket's peer (or own end) as text and port.
inline void socket_address(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ip.clear();
  port = -1;
  if ((peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
            : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len)) != 0)
    return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

/// One accepted connection as an httplib::Stream: buffered reads with a
/// per-read timeout and, while a request's headers arrive, a deadline for
/// all of them and bounds on their lines and bytes. Writes are buffered too
/// (an answer's status line, headers and body leave in one send, whatever
/// the release writes them in): the buffer goes out when the answer is done
/// (flush(), called after each request), when it fills, and before any wait
/// for the client's bytes (so a `100 Continue` is never held back). A read
/// or a write tries the socket first and waits (poll) only when it would
/// block: one poll per request (the keep-alive wait), not one per call.
class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(int fd, const Limits& limits, std::chrono::microseconds read_timeout,
                   std::chrono::microseconds write_timeout)
      : fd_(fd), limits_(limits), read_timeout_(read_timeout), write_timeout_(write_timeout),
        started_(std::chrono::steady_clock::now()), idle_slot_(IdleConnections::entry(fd)) {
    socket_address(fd, true, remote_ip_, remote_port_);
    socket_address(fd, false, local_ip_, local_port_);
  }

  /// Waits up to @p idle for the first byte of a next request (in @p idle_set
  /// meanwhile, when given: it may be asked to close), then starts counting
  /// its headers.
  bool wait_for_request(std::chrono::microseconds idle, IdleConnections* idle_set) {
    if (failed_ || !flush()) return false;
    if (begin_ == end_) {
      if (idle_set == nullptr) {
        if (!wait(POLLIN, std::chrono::steady_clock::now() + idle)) return false;
      } else {
        const IdleConnections::Handle h = idle_set->enter(idle_slot_);
        const bool woken = wait(POLLIN, std::chrono::steady_clock::now() + idle);
        if (!idle_set->leave(h, idle_slot_) || !woken) return false;
      }
    }
    in_headers_ = true;
    header_bytes_ = 0;
    header_lines_ = 0;
    line_length_ = 0;
    line_crs_ = 0;
    header_deadline_ = std::chrono::steady_clock::now() + limits_.header_deadline;
    return true;
  }

  /// The request's headers broke a limit: it was answered 431 or 400 (or
  /// dropped at the deadline) and the connection must close.
  bool failed() const { return failed_; }

  const std::string& remote_ip() const { return remote_ip_; }
  int remote_port() const { return remote_port_; }
  const std::string& local_ip() const { return local_ip_; }
  int local_port() const { return local_port_; }

  // httplib::Stream, with the meanings of the release compiled against
  // (edge_compat.hpp). No `override` on any: is_writable, wait_readable,
  // wait_writable and duration are overrides in some releases only.
  bool is_readable() const {
    if constexpr (compat::stream_waits_by_name) return begin_ != end_;
    return wait_readable();
  }
  bool wait_readable() const { return begin_ != end_ || (flush() && wait(POLLIN, read_until())); }
  bool wait_writable() const {
    return !failed_ && wait(POLLOUT, std::chrono::steady_clock::now() + write_timeout_);
  }
  bool is_writable() const { return wait_writable(); }
  time_t duration() const {
    return static_cast<time_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count());
  }

  ssize_t read(char* ptr, std::size_t size) {
    if (size == 1 && begin_ != end_ && !failed_) {  // httplib reads request lines byte by byte
      const char c = buffer_[begin_];
      if (in_headers_ && !count_header_byte(c)) return -1;
      ++begin_;
      *ptr = c;
      return 1;
    }
    if (failed_) return -1;
    if (begin_ == end_) {
      if (!flush()) return -1;  // the client may be waiting for it before it sends more
      ssize_t n = ::recv(fd_, buffer_, sizeof buffer_, MSG_DONTWAIT);
      while (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (errno != EINTR && !wait(POLLIN, read_until())) return fail_headers(failure::deadline);
        n = ::recv(fd_, buffer_, sizeof buffer_, MSG_DONTWAIT);
      }
      if (n <= 0) return n < 0 ? -1 : 0;
      begin_ = 0;
      end_ = static_cast<std::size_t>(n);
    }
    std::size_t n = std::min(size, end_ - begin_);
    if (in_headers_) n = count_headers(n);
    if (failed_) return -1;
    std::memcpy(ptr, buffer_ + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  // Always takes all of @p size (or fails): into the buffer, or when that
  // is full, to the socket.
  ssize_t write(const char* ptr, std::size_t size) {
    if (failed_) return -1;
    if (out_.size() + size > out_limit) {
      if (!flush()) return -1;
      if (size >= out_limit) return send_all(ptr, size) ? static_cast<ssize_t>(size) : -1;
    }
    out_.append(ptr, size);
    return static_cast<ssize_t>(size);
  }

  /// Sends what write() buffered; false when the socket took not all of it
  /// within the write timeout (the connection is then of no further use).
  bool flush() const {
    if (out_.empty()) return !write_failed_;
    const bool sent = send_all(out_.data(), out_.size());
    out_.clear();
    return sent;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const {
    ip = remote_ip_;
    port = remote_port_;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const {
    ip = local_ip_;
    port = local_port_;
  }
  socket_t socket() const { return fd_; }

 private:
  enum class failure { deadline, too_large, bad_line };
  static constexpr std::size_t out_limit = 16 * 1024;

  // All of @p size bytes to the socket, waiting for room (up to the write
  // timeout) only when it has none.
  bool send_all(const char* ptr, std::size_t size) const {
    if (write_failed_) return false;
    const auto until = std::chrono::steady_clock::now() + write_timeout_;
    std::size_t sent = 0;
    while (sent < size) {
      const ssize_t n = ::send(fd_, ptr + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait(POLLOUT, until)) {
        continue;
      } else {
        write_failed_ = true;
        return false;
      }
    }
    return true;
  }

  std::chrono::steady_clock::time_point read_until() const {
    const auto by_timeout = std::chrono::steady_clock::now() + read_timeout_;
    return in_headers_ ? std::min(by_timeout, header_deadline_) : by_timeout;
  }

  bool wait(short events, std::chrono::steady_clock::time_point until) const {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      pollfd p{fd_, events, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count())));
      if (r > 0) return (p.revents & (events | POLLHUP | POLLERR)) != 0;
      if (r == 0 || errno != EINTR) return false;
    }
  }

  // Of the next @p n buffered bytes, how many may go to httplib: stops at
  // the end of the headers, fails past a limit. Only a line that is exactly
  // CR LF ends the headers. An empty line of another shape (a bare LF, or CR
  // characters only) is refused: releases differ on it (0.11 reads on past
  // CR CR LF, 0.18 answers 400; every release skips a bare LF), so taking it
  // for the end would let the rest of the headers pass the limits uncounted.
  // Every other line counts, whatever it ends with.
  std::size_t count_headers(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!count_header_byte(buffer_[begin_ + i])) return 0;
      if (!in_headers_) return i + 1;  // the blank line: the body follows
    }
    return n;
  }

  // One byte of a request's headers (see count_headers): false (and
  // failed) past a limit or on an empty line that is not exactly CR LF.
  bool count_header_byte(char c) {
    if (++header_bytes_ > limits_.max_header_bytes) return fail_headers(failure::too_large), false;
    if (c == '\r') {
      ++line_crs_;
      return true;
    }
    if (c != '\n') {
      ++line_length_;
      return true;
    }
    const bool empty = line_length_ == 0;
    const std::size_t crs = line_crs_;
    line_length_ = 0;
    line_crs_ = 0;
    if (empty && header_lines_ > 0) {
      if (crs != 1) return fail_headers(failure::bad_line), false;
      in_headers_ = false;  // the blank line: the body follows
      return true;
    }
    if (++header_lines_ > limits_.max_header_lines + 1) return fail_headers(failure::too_large), false;
    return true;
  }

  // Answers 431 (a limit), 400 (a line) or nothing (the deadline), then
  // refuses all I/O.
  ssize_t fail_headers(failure why) {
    if (!in_headers_) return -1;
    failed_ = true;
    std::string answer_text;
    if (why == failure::too_large) {
      answer_text = raw_envelope_answer(
          "431 Request Header Fields Too Large", "", "Security Client Errors",
          "Request Header Fields Too Large: at most " + std::to_string(limits_.max_header_lines) + " lines and " +
              std::to_string(limits_.max_header_bytes) + " bytes",
          "IW10006", limits_.help_url_base);
    } else if (why == failure::bad_line) {
      answer_text = raw_envelope_answer("400 Bad Request", "", "Security Client Errors",
                                        "Bad Request: a header line of only CR characters, or a bare LF",
                                        "IW10006", limits_.help_url_base);
    }
    std::size_t sent = 0;
    while (sent < answer_text.size() && wait(POLLOUT, std::chrono::steady_clock::now() + write_timeout_)) {
      const ssize_t n = ::send(fd_, answer_text.data() + sent, answer_text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    return -1;
  }

  const int fd_;
  const Limits& limits_;
  const std::chrono::microseconds read_timeout_;
  const std::chrono::microseconds write_timeout_;
  const std::chrono::steady_clock::time_point started_;
  std::string remote_ip_, local_ip_;
  int remote_port_ = -1, local_port_ = -1;
  IdleConnections::Slot idle_slot_;
  char buffer_[4096];
  std::size_t begin_ = 0, end_ = 0;
  mutable std::string out_;  // written, not yet sent
  mutable bool write_failed_ = false;
  bool in_headers_ = false;
  bool failed_ = false;
  std::size_t header_bytes_ = 0, header_lines_ = 0, line_length_ = 0, line_crs_ = 0;
  std::chrono::steady_clock::time_point header_deadline_;
};

/// An httplib::Server whose connections go through ConnectionStream.
class Server : public httplib::Server {
 public:
  explicit Server(Limits limits) : limits_(std::move(limits)) {}

  /// The connections idle between requests, for a GrowingThreadPool to
  /// close first when it runs short of workers.
  IdleConnections& idle_connections() { return idle_; }

 private:
  template <typename ServerT, typename StreamT>
  friend bool compat::process_request(ServerT&, StreamT&, bool, bool&);

  bool process_and_close_socket(socket_t sock) override {
    std::string ip;
    int port = 0;
    socket_address(sock, true, ip, port);
    const std::string client = iwsec::client_address_key(ip);
    bool ret = false;
    if (!registry_.enter(client, limits_.max_connections_per_client)) {
      refuse_connection(sock);
    } else {
      ret = serve(sock);
      registry_.leave(client);
    }
    linger_and_close(sock);
    return ret;
  }

  bool serve(int sock) {
    using std::chrono::microseconds;
    using std::chrono::seconds;
    ConnectionStream stream(sock, limits_, seconds(read_timeout_sec_) + microseconds(read_timeout_usec_),
                            seconds(write_timeout_sec_) + microseconds(write_timeout_usec_));
    bool ret = false;
    // httplib's keep-alive loop (process_server_socket_core), over our stream.
    for (std::size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
      if (!stream.wait_for_request(seconds(keep_alive_timeout_sec_), &idle_)) break;
      bool connection_closed = false;
      close_after_answer = false;
      ret = compat::process_request(*this, stream, left == 1, connection_closed);
      if (!stream.flush()) ret = false;  // the answer, in one send
      if (!ret || connection_closed || close_after_answer || stream.failed()) break;
    }
    (void)stream.flush();
    close_after_answer = false;
    return ret;
  }

  void refuse_connection(int sock) {
    const std::string text = raw_envelope_answer(
        "503 Service Unavailable", "Retry-After: 1\r\n", "Security Server Errors",
        "Service Unavailable: too many connections from this client address", "IW10002", limits_.help_url_base);
    (void)::send(sock, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  // Closing with unread bytes makes the kernel send a reset, which can
  // destroy the answer before the client read it: end our side, then read
  // what the client still sends, for a short while.
  static void linger_and_close(int sock) {
    ::shutdown(sock, SHUT_WR);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    char sink[4096];
    std::size_t drained = 0;
    while (drained < 256 * 1024) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      pollfd p{sock, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      const ssize_t n = ::recv(sock, sink, sizeof sink, 0);
      if (n <= 0) break;
      drained += static_cast<std::size_t>(n);
    }
    ::close(sock);
  }

  Limits limits_;
  ConnectionRegistry registry_;
  IdleConnections idle_;
};

}  // namespace edge
