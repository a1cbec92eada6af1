/// @brief mount_operations_routes: GET /metrics, /health/live and /health/ready for a host's own admin server.
/// @file
#pragma once
// What iwsec-server serves on its admin port (docs/operations.md "Metrics"
// and "Health"), for any host: Prometheus text (0.0.4) of a Metrics, a
// liveness answer, and a readiness answer that says why not. Mount them on a
// server of their own, bound to loopback or an internal network: they take
// no authentication (iwsec-server never serves them on its public port).
//
//   httplib::Server admin;
//   iwsec::harden(admin);
//   iwsec::mount_operations_routes(admin, *options.metrics,
//                                  [&users] { return iwsec::store_not_ready(users); });

#include <functional>
#include <string>

#include <httplib.h>

#include "metrics.hpp"
#include "user_store_interface.hpp"
#include "detail/json.hpp"

namespace iwsec {

/// @brief Why @p users cannot serve now (one line, no secret), or empty when
/// it can: asks it for one account's status, which makes a file store
/// reload a changed file and a cluster backend check its staleness.
inline std::string store_not_ready(UserStore& users) {
  try {
    users.status_of("ready-check@iwsec.invalid");
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// @brief Mounts on @p server:
/// - `GET /metrics`: @p metrics as Prometheus text, `Cache-Control: no-store`;
/// - `GET /health/live`: 200 `{"status":"live"}` while the process answers;
/// - `GET /health/ready`: 200 `{"status":"ready"}` when @p not_ready returns
///   empty, else 503 `{"status":"not ready","reason":...}` with `Retry-After: 1`.
/// @p metrics must outlive @p server; @p not_ready runs on each readiness
/// request's thread (it must be thread-safe; what it returns is shown to the
/// caller, so never a secret).
inline void mount_operations_routes(httplib::Server& server, Metrics& metrics,
                                    std::function<std::string()> not_ready) {
  server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(metrics.render(), Metrics::content_type);
  });
  server.Get("/health/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content("{\"status\":\"live\"}", "application/json; charset=utf-8");
  });
  server.Get("/health/ready", [not_ready = std::move(not_ready)](const httplib::Request&, httplib::Response& res) {
    const std::string problem = not_ready ? not_ready() : std::string();
    res.set_header("Cache-Control", "no-store");
    if (problem.empty()) {
      res.set_content("{\"status\":\"ready\"}", "application/json; charset=utf-8");
      return;
    }
    std::string body = "{\"status\":\"not ready\",\"reason\":";
    detail::append_json_string(body, problem);
    body += '}';
    res.status = 503;
    res.set_header("Retry-After", "1");
    res.set_content(body, "application/json; charset=utf-8");
  });
}

}  // namespace iwsec
