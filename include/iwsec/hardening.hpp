#pragma once
/// @file
/// @brief harden(): safer settings for a host's own httplib::Server, applied
/// only when the host asks (mount_security_routes never changes them).
///
/// cpp-httplib 0.11's defaults are made for trusted networks: no limit on a
/// request body, Nagle's algorithm on, a keep-alive connection closed after 5
/// requests, and one worker thread per open connection from a pool sized by
/// the core count. harden() sets what 0.11 has a knob for. What 0.11 has no
/// knob for (the number of header lines, a deadline for a whole request,
/// connections per client, chunked bodies past the payload limit) needs
/// either the server's own connection handling (iwsec-server has one) or a
/// reverse proxy in front (deploy/nginx/); docs/edge.md says which.

#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string_view>

#include <httplib.h>

#include "detail/request_body.hpp"
#include "errors.hpp"

namespace iwsec {

/// @brief What harden() sets; every field has a sane default.
struct HardeningOptions {
  /// @brief Longest request body httplib reads (Content-Length framing);
  /// longer is answered 413 by httplib itself. The security routes take no
  /// body at all; this bounds what the host's own routes may receive.
  std::size_t payload_max_bytes = 64 * 1024;

  /// @brief Longest wait for each read of a request (not the whole request).
  std::chrono::seconds read_timeout{5};

  /// @brief Longest wait for each write of an answer.
  std::chrono::seconds write_timeout{5};

  /// @brief Idle time after which a keep-alive connection is closed.
  std::chrono::seconds keep_alive_timeout{5};

  /// @brief Requests served on one connection before it is closed (0.11's
  /// default of 5 makes clients reconnect all the time).
  std::size_t keep_alive_max_requests = 1000;

  /// @brief Turns Nagle's algorithm off (answers are small and latency matters).
  bool tcp_nodelay = true;

  /// @brief Worker threads; 0 keeps the server's own task queue. Each open
  /// connection holds one for its whole life, so this is also the number of
  /// clients served at once.
  std::size_t threads = 64;
};

/// @brief Applies @p options to @p server (before it listens). Throws
/// std::invalid_argument for a zero payload limit, timeout or request count.
inline void harden(httplib::Server& server, const HardeningOptions& options = HardeningOptions()) {
  if (options.payload_max_bytes == 0) throw invalid_option("iwsec: HardeningOptions::payload_max_bytes is 0");
  if (options.read_timeout.count() <= 0 || options.write_timeout.count() <= 0 ||
      options.keep_alive_timeout.count() <= 0)
    throw invalid_option("iwsec: HardeningOptions timeouts must be at least 1 s");
  if (options.keep_alive_max_requests == 0)
    throw invalid_option("iwsec: HardeningOptions::keep_alive_max_requests is 0");
  server.set_payload_max_length(options.payload_max_bytes);
  server.set_read_timeout(options.read_timeout);
  server.set_write_timeout(options.write_timeout);
  server.set_keep_alive_timeout(static_cast<time_t>(options.keep_alive_timeout.count()));
  server.set_keep_alive_max_count(options.keep_alive_max_requests);
  server.set_tcp_nodelay(options.tcp_nodelay);
  if (options.threads > 0) {
    const std::size_t threads = options.threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  }
}

/// @brief For a host's pre-routing handler, on a server none of whose
/// routes takes a request body (as iwsec-server): answers a request that
/// announces one (Content-Length, any Transfer-Encoding, or a POST, PUT,
/// PATCH without Content-Length, which cpp-httplib 0.11 would read until the
/// connection ends) before httplib reads the body: 413 for Content-Length,
/// 400 for any other framing, in the error envelope, and the connection is
/// closed after the answer, so a body costs no memory and its bytes are never
/// parsed as a request. Returns true when it answered.
///
///     server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
///       return iwsec::refuse_request_body(req, res) ? httplib::Server::HandlerResponse::Handled
///                                                   : httplib::Server::HandlerResponse::Unhandled;
///     });
inline bool refuse_request_body(const httplib::Request& req, httplib::Response& res,
                                std::string_view help_url_base = "https://docs.infoworks.io/api/errors") {
  const auto body = detail::framed_body(req);
  if (body == detail::request_body::none) return false;
  detail::refuse_body(res, body, help_url_base);
  return true;
}

}  // namespace iwsec
