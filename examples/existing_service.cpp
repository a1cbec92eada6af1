// An existing cpp-httplib service that adopts iwsec: its own route stays its
// own, the guard protects it, and one line mounts the security endpoints.
// It uses only iwsec's public API (this file, complete, is the whole program)
// and mounts everything iwsec-server offers but its edge (docs/edge.md):
// the five endpoints, an access log with request ids, the audit trail,
// locks that `iwsec-admin show-user` sees and `iwsec-admin unlock` lifts,
// durable revocations, signing keys that follow the key file, and metrics
// and health on an admin port of its own.
//
//   existing_service [--host 127.0.0.1] [--port 3001] [--data-dir ./iwsec-data]
//                    [--admin-port PORT]
//                    [--postgres CONNINFO [--secret-file FILE | --key-encryption-key FILE]]
//
// It shares iwsec-server's data directory layout (users.json, signing.key,
// revocations.journal, lockouts.journal, audit.log), so iwsec-admin manages
// its users and its signing keys too: a key added with `iwsec-admin
// add-signing-key` signs from the next request on. With --postgres (built
// where libpq was found) it mounts the same routes over a cluster database
// instead (iwsec/postgres/backend.hpp, docs/cluster.md), its signing keys
// from --secret-file or, with --key-encryption-key, from the database.
// Like iwsec-server, one process per data directory: it starts the lock
// journal afresh and appends to the revocation journal, so it must not
// share a data directory with a running iwsec-server. SIGHUP or SIGUSR1
// reopens audit.log (logrotate); SIGINT or SIGTERM stops it, every log line
// written first.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
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
#include <iwsec/postgres/database_signer.hpp>
#endif

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 3001;
  std::string data_dir = "./iwsec-data";
  int admin_port = -1;                // off
  std::string conninfo, secret_file, kek_file;  // cluster mode
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--help") {
      std::puts("usage: existing_service [--host ADDRESS] [--port PORT] [--data-dir DIR]\n"
                "                        [--admin-port PORT]\n"
                "                        [--postgres CONNINFO [--secret-file FILE | --key-encryption-key FILE]]");
      return 0;
    } else if (a == "--host" && has_value) {
      host = argv[++i];
    } else if (a == "--port" && has_value) {
      port = std::atoi(argv[++i]);
    } else if (a == "--data-dir" && has_value) {
      data_dir = argv[++i];
    } else if (a == "--admin-port" && has_value) {
      admin_port = std::atoi(argv[++i]);
    } else if (a == "--postgres" && has_value) {
      conninfo = argv[++i];
    } else if (a == "--secret-file" && has_value) {
      secret_file = argv[++i];
    } else if (a == "--key-encryption-key" && has_value) {
      kek_file = argv[++i];
    } else {
      std::fprintf(stderr, "existing_service: bad argument '%s' (try --help)\n", argv[i]);
      return 2;
    }
  }

  if (!secret_file.empty() && !kek_file.empty()) {
    std::fprintf(stderr, "existing_service: --secret-file and --key-encryption-key exclude each other\n");
    return 2;
  }
  // The access log writes to standard output: a reader that goes away must
  // not end the service (writes then fail with EPIPE, and are counted).
  ::signal(SIGPIPE, SIG_IGN);

  // What the service already had: a server, stopped by SIGINT or SIGTERM.
  httplib::Server server;
  iwsec::harden(server);  // body limit, timeouts, keep-alive, TCP no-delay, 64 threads
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });

  // What adopting iwsec adds. An access log (standard output, written by a
  // thread of its own) and metrics: set up first, so every route is counted
  // and logged.
  iwsec::Options options;
  options.metrics = std::make_shared<iwsec::Metrics>();
  iwsec::AccessLog log(iwsec::AccessLogFormat::text, /*requests=*/true);
  options.metrics->add_counter("iwsec_access_log_dropped_lines_total",
                               "Access-log lines dropped because the log's buffer was full",
                               [&log] { return static_cast<double>(log.dropped_lines()); });
  options.on_lockout = [&log](const iwsec::LockoutEvent& e) { log.lockout(e); };
  // None of its routes takes a request body: one is refused before httplib
  // reads it (413 or 400 in the error envelope, connection closed).
  server.set_pre_routing_handler([&log](const httplib::Request& req, httplib::Response& res) {
    log.begin(req);  // arrival time and request id
    return iwsec::refuse_request_body(req, res) ? httplib::Server::HandlerResponse::Handled
                                                : httplib::Server::HandlerResponse::Unhandled;
  });
  log.attach(server);  // X-Request-Id on every answer, a line per request

  // Then a user store, a signer whose keys live in a key file (made on first
  // start: 32 random bytes, mode 0600), revocations and locks kept where
  // iwsec-admin sees them, the audit trail, and one line to mount the routes.
  std::unique_ptr<iwsec::JsonFileUserStore> file_users;
  iwsec::UserStore* users = nullptr;
  std::unique_ptr<iwsec::KeyringFile> keys;
  std::unique_ptr<iwsec::Signer> signer;
  std::shared_ptr<iwsec::LockJournal> lock_journal;
  std::unique_ptr<iwsec::AuditFile> audit;
  std::function<void(const iwsec::AuditEvent&)> audit_to_database;  // cluster mode: locks
#ifdef IWSEC_HAVE_POSTGRES
  std::unique_ptr<iwsec::postgres::Backend> backend;
  std::unique_ptr<iwsec::postgres::DatabaseSigner> database_signer;
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
      options.revocations = std::make_shared<iwsec::JournalRevocationStore>(data_dir + "/revocations.journal");
      // Locks go to lockouts.journal, where iwsec-admin show-user sees them
      // and iwsec-admin unlock lifts them in this running process.
      lock_journal = std::make_shared<iwsec::LockJournal>(iwsec::LockJournal::path_in(data_dir));
      std::string error;
      if (!lock_journal->start(error)) throw std::runtime_error(error);
      options.lockout_state = std::make_shared<iwsec::JournaledLockout>(
          std::make_shared<iwsec::LockoutTracker>(options.lockout), lock_journal);
      audit = std::make_unique<iwsec::AuditFile>(data_dir + "/audit.log", [](const std::string& line) {
        std::fprintf(stderr, "existing_service: %s\n", line.c_str());
      });
      if (!audit->ok()) throw std::runtime_error(audit->error());
    } else {
#ifdef IWSEC_HAVE_POSTGRES
      // Cluster mode: the same mount, handed the backend's stores; every
      // replica is given the same key file (without one: a key of its own).
      iwsec::postgres::BackendOptions cluster;
      cluster.conninfo = conninfo;
      backend = std::make_unique<iwsec::postgres::Backend>(cluster);
      users = &backend->configure(options);
      backend->add_metrics(*options.metrics);  // iwsec_cluster_lag_seconds, iwsec_cluster_applied_sequence
      // Locks go to the cluster's audit table, with the administrators' events.
      audit_to_database = backend->lock_audit_hook(/*retention_days=*/90, [](const std::string& line) {
        std::fprintf(stderr, "existing_service: %s\n", line.c_str());
      });
      if (!kek_file.empty()) {
        // Signing keys in the database: iwsec-admin add-signing-key and
        // retire-signing-key reach every replica within a second.
        database_signer = std::make_unique<iwsec::postgres::DatabaseSigner>(
            *backend, iwsec::postgres::KeyEncryptionKey::from_file(kek_file),
            [](const std::string& line) { std::fprintf(stderr, "existing_service: %s\n", line.c_str()); });
      } else if (secret_file.empty()) {
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
  // Every audit event, with the id its request is answered with.
  options.on_audit = [&log, &audit, &audit_to_database](const iwsec::AuditEvent& e) {
    if (audit_to_database) audit_to_database(e);
    if (!audit) return;
    iwsec::AuditEvent with_id = e;
    log.stamp_request_id(with_id);
    audit->write(iwsec::audit_json_line(with_id));
  };
  const iwsec::Signer* signing = signer.get();
#ifdef IWSEC_HAVE_POSTGRES
  if (database_signer) signing = &database_signer->signer();
#endif
  auto security = iwsec::mount_security_routes(server, *users, *signing, options);

  // The service's own route, now reachable only with a valid access token.
  server.Get("/v3/domains", security.guard([](const httplib::Request&, httplib::Response& res,
                                              const iwsec::VerifiedToken& token) {
    const std::string body = "{\"result\":[{\"id\":\"1\",\"name\":\"demo\",\"owner\":" +
                             picojson::value(token.email()).serialize() + "}]}";
    res.set_content(body, "application/json; charset=utf-8");
  }));

  // Metrics and health on an admin port of its own, on loopback only: they
  // take no authentication.
  httplib::Server admin;
  int admin_bound = -1;
  if (admin_port >= 0) {
    iwsec::harden(admin);
    admin.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      return iwsec::refuse_request_body(req, res) ? httplib::Server::HandlerResponse::Handled
                                                  : httplib::Server::HandlerResponse::Unhandled;
    });
    iwsec::mount_operations_routes(admin, *options.metrics, [&server, users] {
      return server.is_running() ? iwsec::store_not_ready(*users) : std::string("not accepting connections");
    });
    admin_bound = admin_port == 0 ? admin.bind_to_any_port("127.0.0.1")
                                  : (admin.bind_to_port("127.0.0.1", admin_port) ? admin_port : -1);
    if (admin_bound <= 0) {
      std::fprintf(stderr, "existing_service: cannot listen on 127.0.0.1 port %d (--admin-port)\n", admin_port);
      return 1;
    }
  }

  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    std::fprintf(stderr, "existing_service: cannot listen on %s port %d\n", host.c_str(), port);
    return 1;
  }
  const std::string log_error = log.start();  // the access log's writer thread
  if (!log_error.empty()) {
    std::fprintf(stderr, "existing_service: %s\n", log_error.c_str());
    return 1;
  }
  // SIGINT, SIGTERM: stop; SIGHUP, SIGUSR1: the audit trail reopened.
  std::thread([&server, &audit, signals] {
    for (;;) {
      int signal_number = 0;
      sigwait(&signals, &signal_number);
      if (signal_number == SIGHUP || signal_number == SIGUSR1) {
        if (audit) audit->reopen();
        continue;
      }
      while (!server.is_running()) std::this_thread::yield();
      server.stop();
      return;
    }
  }).detach();
  std::thread admin_thread;
  std::atomic<bool> admin_done{false};
  if (admin_bound > 0) admin_thread = std::thread([&admin, &admin_done] {
    admin.listen_after_bind();
    admin_done = true;
  });

  std::printf("listening on http://%s:%d\n", host.c_str(), bound);
  if (admin_bound > 0) std::printf("admin listening on http://127.0.0.1:%d\n", admin_bound);
  std::fflush(stdout);
  const bool clean = server.listen_after_bind();
  if (admin_thread.joinable()) {
    while (!admin.is_running() && !admin_done) std::this_thread::yield();  // a stop() before its accept loop is lost
    admin.stop();
    admin_thread.join();
  }
  log.stop();  // every line of every answered request written
  if (lock_journal) lock_journal->stop();
  if (audit) audit->stop();  // every audit line in the file
#ifdef IWSEC_HAVE_POSTGRES
  database_signer.reset();  // stops following the backend before the backend goes
  if (backend) backend->stop();
#endif
  return clean ? 0 : 1;
}
