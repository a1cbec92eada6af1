#pragma once
// Test support: a raw TCP client for what httplib::Client cannot send (a
// GET with a body, pipelined requests, odd framing), reading the answer
// until the server closes the connection or a deadline passes.

#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace iwsec_test {

/// What came back on a connection.
struct RawExchange {
  std::string received;  ///< every byte read
  bool closed = false;   ///< the server closed the connection before the deadline

  /// Number of HTTP answers in `received` (status lines).
  std::size_t answers() const {
    std::size_t n = 0;
    for (std::size_t at = received.find("HTTP/1.1 "); at != std::string::npos; at = received.find("HTTP/1.1 ", at + 1))
      ++n;
    return n;
  }
};

/// Sends @p bytes to 127.0.0.1:@p port and reads until the server closes
/// the connection or @p deadline passes.
inline RawExchange raw_exchange(int port, const std::string& bytes,
                                std::chrono::milliseconds deadline = std::chrono::milliseconds(3000)) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect failed");
  }
  RawExchange out;
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close before taking it all
    sent += static_cast<std::size_t>(n);
  }
  const auto until = std::chrono::steady_clock::now() + deadline;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      out.closed = true;  // EOF, or a reset after unread bytes: either way, closed
      break;
    }
    out.received.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace iwsec_test
