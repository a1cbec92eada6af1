// iwsec-bench-bare-server: the yardstick of bench/http_compare.sh. A
// cpp-httplib server tuned exactly as iwsec-server is (the same cli.hpp
// helpers: TCP_NODELAY, keep-alive connections not cut after 5 requests, a
// pool of --threads workers, a full accept backlog, SO_REUSEADDR only), with
// one route that checks nothing and answers what a successful
// `GET /v3/security/token/validate` answers: the same status, headers and body.

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <signal.h>

#include <httplib.h>

#include "cli.hpp"

namespace {

constexpr const char* program = "iwsec-bench-bare-server";

constexpr const char* help_text =
    "usage: iwsec-bench-bare-server [--host 127.0.0.1] [--port 0] [--threads 64]\n"
    "\n"
    "Answers GET /v3/security/token/validate with {\"message\":\"\",\"result\":{\"is_valid\":true}}\n"
    "without looking at the request, tuned like iwsec-server. Prints\n"
    "'listening on http://HOST:PORT' once it accepts connections; SIGINT or\n"
    "SIGTERM stops it.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  int threads = 64;
  cli::Arguments args(program, argc, argv);
  while (args.next()) {
    const std::string_view a = args.current();
    if (a == "--help" || a == "-h") {
      std::fputs(help_text, stdout);
      return 0;
    } else if (a == "--host") {
      host = args.value();
    } else if (a == "--port") {
      port = static_cast<int>(args.integer_value(0, 65535));
    } else if (a == "--threads") {
      threads = static_cast<int>(args.integer_value(1, 4096));
    } else {
      cli::usage_error(program, "unknown argument '" + std::string(a) + "'");
    }
  }

  ::signal(SIGPIPE, SIG_IGN);
  httplib::Server server;
  // The same tuning, line for line, as examples/server.cpp.
  cli::stop_on_signals(server);
  cli::ListeningSocket listening_socket;
  listening_socket.configure(server);
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(100000);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };

  server.Get("/v3/security/token/validate", [](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
    res.set_header("Cache-Control", "no-store");
    res.set_content("{\"message\":\"\",\"result\":{\"is_valid\":true}}", "application/json; charset=utf-8");
  });

  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) cli::die(program, "cannot listen on " + host + ":" + std::to_string(port), 1);
  listening_socket.widen_backlog();
  std::printf("listening on http://%s:%d\n", host.c_str(), bound);
  std::fflush(stdout);
  return server.listen_after_bind() ? 0 : 1;
}
