#pragma once
// iwsec-server's admin listener (--admin-port): the library's
// mount_operations_routes (GET /metrics, /health/live, /health/ready) on a
// second server of its own (default 127.0.0.1), never on the public port. It has the public
// listener's limits (docs/edge.md): an edge::Server (header
// caps and deadline, connections per client capped, workers on demand, idle
// connections closed first), iwsec::harden's timeouts, and no body taken.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"
#include "edge_server.hpp"

namespace admin_server {

class AdminServer {
 public:
  /// The edge settings: the public listener's.
  struct Edge {
    edge::Limits limits;
    std::size_t threads = 1024;  // most worker threads, started on demand
  };

  /// @p not_ready: empty when ready, else why not (one line, no secret).
  AdminServer(iwsec::Metrics& metrics, const Edge& edge, std::function<std::string()> not_ready)
      : server_(edge.limits) {
    iwsec::HardeningOptions hardening;
    hardening.threads = 0;  // the growing pool below instead
    iwsec::harden(server_, hardening);
    const std::size_t threads = edge.threads;
    edge::IdleConnections* idle = &server_.idle_connections();
    server_.new_task_queue = [threads, idle] { return new edge::GrowingThreadPool(threads, idle); };
    // No route here takes a body: refused before httplib reads it, and the
    // connection closed after the answer (as on the public listener).
    server_.set_pre_routing_handler([help_url_base = edge.limits.help_url_base](const httplib::Request& req,
                                                                                  httplib::Response& res) {
      if (!iwsec::refuse_request_body(req, res, help_url_base)) return httplib::Server::HandlerResponse::Unhandled;
      edge::close_after_answer = true;
      return httplib::Server::HandlerResponse::Handled;
    });
    iwsec::mount_operations_routes(server_, metrics, std::move(not_ready));
  }

  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;
  ~AdminServer() { stop(); }

  /// Binds @p host:@p port (0: any free port); the port, or -1.
  int bind(const std::string& host, int port) {
    socket_.configure(server_);
    port_ = port == 0 ? server_.bind_to_any_port(host) : (server_.bind_to_port(host, port) ? port : -1);
    return port_;
  }

  /// Serves on a thread of its own until stop().
  void start() {
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      done_ = true;
    });
  }

  void stop() {
    if (!thread_.joinable()) return;
    while (!server_.is_running() && !done_) std::this_thread::yield();  // a stop() before the accept loop is lost
    server_.stop();
    thread_.join();
  }

 private:
  edge::Server server_;
  cli::ListeningSocket socket_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  int port_ = -1;
};

}  // namespace admin_server
