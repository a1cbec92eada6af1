#pragma once
// iwsec-server's admin listener (--admin-port): GET /metrics (Prometheus
// text 0.0.4), GET /health/live, GET /health/ready, on a second server of
// its own (default 127.0.0.1), never on the public port. It has the public
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
      : metrics_(metrics), not_ready_(std::move(not_ready)), server_(edge.limits) {
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
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content(metrics_.render(), iwsec::Metrics::content_type);
    });
    server_.Get("/health/live", [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content("{\"status\":\"live\"}", "application/json; charset=utf-8");
    });
    server_.Get("/health/ready", [this](const httplib::Request&, httplib::Response& res) {
      const std::string problem = not_ready_();
      res.set_header("Cache-Control", "no-store");
      if (problem.empty()) {
        res.set_content("{\"status\":\"ready\"}", "application/json; charset=utf-8");
        return;
      }
      std::string body = "{\"status\":\"not ready\",\"reason\":";
      iwsec::detail::append_json_string(body, problem);
      body += '}';
      res.status = 503;
      res.set_header("Retry-After", "1");
      res.set_content(body, "application/json; charset=utf-8");
    });
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
  iwsec::Metrics& metrics_;
  std::function<std::string()> not_ready_;
  edge::Server server_;
  cli::ListeningSocket socket_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  int port_ = -1;
};

}  // namespace admin_server
