// An existing cpp-httplib service that adopts iwsec: its own route stays its
// own, the guard protects it, and one line mounts the security endpoints.
// It uses only iwsec's public API (this file, complete, is the whole program).
//
//   existing_service [--host 127.0.0.1] [--port 3001] [--data-dir ./iwsec-data]
//                    [--postgres CONNINFO [--secret-file FILE]]
//
// It shares iwsec-server's data directory layout (users.json, signing.key),
// so iwsec-admin manages its users and its signing keys too: a key added with
// `iwsec-admin add-signing-key` signs from the next request on. With
// --postgres (built where libpq was found) it mounts the same routes over a
// cluster database instead (iwsec/postgres/backend.hpp, docs/cluster.md).

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include <pthread.h>
#include <signal.h>

#include <httplib.h>
#include <picojson.h>

#include <iwsec/iwsec.hpp>
#ifdef IWSEC_HAVE_POSTGRES
#include <iwsec/postgres/backend.hpp>
#endif

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 3001;
  std::string data_dir = "./iwsec-data";
  std::string conninfo, secret_file;  // cluster mode
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--help") {
      std::puts("usage: existing_service [--host ADDRESS] [--port PORT] [--data-dir DIR]\n"
                "                        [--postgres CONNINFO [--secret-file FILE]]");
      return 0;
    } else if (a == "--host" && has_value) {
      host = argv[++i];
    } else if (a == "--port" && has_value) {
      port = std::atoi(argv[++i]);
    } else if (a == "--data-dir" && has_value) {
      data_dir = argv[++i];
    } else if (a == "--postgres" && has_value) {
      conninfo = argv[++i];
    } else if (a == "--secret-file" && has_value) {
      secret_file = argv[++i];
    } else {
      std::fprintf(stderr, "existing_service: bad argument '%s' (try --help)\n", argv[i]);
      return 2;
    }
  }

  // What the service already had: a server, stopped by SIGINT or SIGTERM.
  httplib::Server server;
  iwsec::harden(server);  // body limit, timeouts, keep-alive, TCP no-delay, 64 threads
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // before any thread starts
  std::thread([&server, stop_signals] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    while (!server.is_running()) std::this_thread::yield();
    server.stop();
  }).detach();
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
  // None of its routes takes a request body: one is refused before httplib
  // reads it (413 or 400 in the error envelope, connection closed).
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    return iwsec::refuse_request_body(req, res) ? httplib::Server::HandlerResponse::Handled
                                                : httplib::Server::HandlerResponse::Unhandled;
  });

  // What adopting iwsec adds: a user store, a signer whose keys live in a
  // key file (made on first start: 32 random bytes, mode 0600), and one line
  // to mount the routes.
  std::unique_ptr<iwsec::JsonFileUserStore> file_users;
  iwsec::UserStore* users = nullptr;
  std::unique_ptr<iwsec::KeyringFile> keys;
  std::unique_ptr<iwsec::Signer> signer;
  iwsec::Options options;
#ifdef IWSEC_HAVE_POSTGRES
  std::unique_ptr<iwsec::postgres::Backend> backend;
#endif
  try {
    if (conninfo.empty()) {
      std::filesystem::create_directories(data_dir);
      std::filesystem::permissions(data_dir, std::filesystem::perms::owner_all);
      file_users = std::make_unique<iwsec::JsonFileUserStore>(data_dir + "/users.json");
      users = file_users.get();
      keys = std::make_unique<iwsec::KeyringFile>(data_dir + "/signing.key");
      signer = std::make_unique<iwsec::Signer>(keys->load_or_create().signing_keys());
      options.refresh_keys = [&] { keys->refresh(*signer); };  // key changes apply at once (absolute paths: a stat only after a change event)
    } else {
#ifdef IWSEC_HAVE_POSTGRES
      // Cluster mode: the same mount, handed the backend's stores; every
      // replica is given the same key file (without one: a key of its own).
      iwsec::postgres::BackendOptions cluster;
      cluster.conninfo = conninfo;
      backend = std::make_unique<iwsec::postgres::Backend>(cluster);
      users = &backend->configure(options);
      if (secret_file.empty()) {
        signer = std::make_unique<iwsec::Signer>(iwsec::Signer::generate_secret());
      } else {
        keys = std::make_unique<iwsec::KeyringFile>(secret_file);
        signer = std::make_unique<iwsec::Signer>(keys->load().signing_keys());
      }
#else
      std::fprintf(stderr, "existing_service: --postgres: built without libpq (install libpq-dev and rebuild)\n");
      return 2;
#endif
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "existing_service: %s\n", e.what());
    return 1;
  }
  auto security = iwsec::mount_security_routes(server, *users, *signer, options);

  // The service's own route, now reachable only with a valid access token.
  server.Get("/v3/domains", security.guard([](const httplib::Request&, httplib::Response& res,
                                              const iwsec::VerifiedToken& token) {
    const std::string body = "{\"result\":[{\"id\":\"1\",\"name\":\"demo\",\"owner\":" +
                             picojson::value(token.email()).serialize() + "}]}";
    res.set_content(body, "application/json; charset=utf-8");
  }));

  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    std::fprintf(stderr, "existing_service: cannot listen on %s port %d\n", host.c_str(), port);
    return 1;
  }
  std::printf("listening on http://%s:%d\n", host.c_str(), bound);
  std::fflush(stdout);
  return server.listen_after_bind() ? 0 : 1;
}
