#pragma once
// Test support: a real httplib::Server on 127.0.0.1, on a port the OS picks,
// run on its own thread and stopped and joined by the destructor.

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

namespace iwsec_test {

/// A clock the test moves by hand (never sleeps).
class ManualClock {
 public:
  explicit ManualClock(std::int64_t start = 1700000000) : now_(std::make_shared<std::atomic<std::int64_t>>(start)) {}
  std::int64_t now() const { return now_->load(); }
  void advance(std::int64_t seconds) { now_->fetch_add(seconds); }
  void set(std::int64_t t) { now_->store(t); }
  iwsec::Clock clock() const {
    auto n = now_;
    return [n] { return n->load(); };
  }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> now_;
};

/// Runs @p server on 127.0.0.1:<OS-chosen port> until destroyed.
class RunningServer {
 public:
  explicit RunningServer(httplib::Server& server) : server_(server) {
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("cannot bind 127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // bind_to_any_port already listen()s, so connections queue from here on;
    // wait only until the accept loop runs, so stop() cannot race its start.
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~RunningServer() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(5);
    c.set_read_timeout(10);
    return c;
  }

 private:
  httplib::Server& server_;
  int port_ = 0;
  std::thread thread_;
};

/// Basic credentials header value for user:password.
inline std::string basic(const std::string& user, const std::string& password) {
  return "Basic " + iwsec::base64_encode(user + ":" + password);
}

}  // namespace iwsec_test
