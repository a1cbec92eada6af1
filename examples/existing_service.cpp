// An existing cpp-httplib service that adopts iwsec: its own route stays its
// own, the guard protects it, and one line mounts the security endpoints.
//
//   existing_service [--host 127.0.0.1] [--port 3001] [--data-dir ./iwsec-data]
//
// It shares iwsec-server's data directory layout, so iwsec-admin manages its
// users too.

#include <cstdio>
#include <memory>
#include <string>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"
#include "cluster.hpp"

int main(int argc, char** argv) {
  const char* program = "existing_service";
  std::string host = "127.0.0.1";
  int port = 3001;
  std::string data_dir = "./iwsec-data";
  cluster::Settings cluster;  // --postgres CONNINFO: the users and revocations of a cluster database
  cli::Arguments args(program, argc, argv);
  while (args.next()) {
    const std::string_view a = args.current();
    if (a == "--help") {
      std::puts("usage: existing_service [--host ADDRESS] [--port PORT] [--data-dir DIR]");
      return 0;
    } else if (a == "--host") {
      host = args.value();
    } else if (a == "--port") {
      port = static_cast<int>(args.integer_value(0, 65535));
    } else if (a == "--data-dir") {
      data_dir = args.value();
    } else if (cluster::parse_flag(program, args, a, cluster)) {
    } else {
      cli::usage_error(program, "unknown argument '" + std::string(a) + "'");
    }
  }
  if (!cluster.enabled() && !cli::ensure_directory(data_dir)) cli::die(program, "cannot use data directory " + data_dir, 1);

  // What the service already had.
  httplib::Server server;
  cli::stop_on_signals(server);
  cli::ListeningSocket listening_socket;
  listening_socket.configure(server);
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });

  // What adopting iwsec adds: a user store, a signer, and one line to mount.
  std::unique_ptr<iwsec::JsonFileUserStore> file_users;
  iwsec::UserStore* users = nullptr;
  iwsec::Options options;
#ifdef IWSEC_HAVE_POSTGRES
  // Cluster mode: the same mount, handed the backend's stores.
  std::unique_ptr<iwsec::postgres::Backend> backend;
  if (cluster.enabled()) {
    backend = cluster::connect(program, cluster, options.lockout, true);
    users = cluster::use_backend(*backend, options);
  }
#endif
  if (!users) {
    try {
      file_users = std::make_unique<iwsec::JsonFileUserStore>(data_dir + "/users.json");
      users = file_users.get();
    } catch (const std::exception& e) {
      cli::die(program, e.what(), 1);
    }
  }
  iwsec::Signer signer(iwsec::Signer::generate_secret());  // a real service loads its key from a secret store
  auto security = iwsec::mount_security_routes(server, *users, signer, options);

  // The service's own route, now reachable only with a valid access token.
  server.Get("/v3/domains", security.guard([](const httplib::Request&, httplib::Response& res,
                                              const iwsec::VerifiedToken& token) {
    std::string body = "{\"result\":[{\"id\":\"1\",\"name\":\"demo\",\"owner\":";
    iwsec::detail::append_json_string(body, token.email());
    body += "}]}";
    res.set_content(body, "application/json; charset=utf-8");
  }));

  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) cli::die(program, "cannot listen on " + host + ":" + std::to_string(port), 1);
  listening_socket.widen_backlog();
  std::printf("listening on http://%s:%d\n", host.c_str(), bound);
  std::fflush(stdout);
  return server.listen_after_bind() ? 0 : 1;
}
