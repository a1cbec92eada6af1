// iwsec-server: the Infoworks v3 security endpoints on their own, backed by a
// data directory (users.json, revocations.journal, signing.key: a keyring).

// cpp-httplib waits with select() unless told to poll() (header-only releases
// up to 0.2x), and answers 500 to every request on a descriptor past
// FD_SETSIZE (1024): iwsec-server holds thousands of connections.
#ifndef CPPHTTPLIB_USE_POLL
#define CPPHTTPLIB_USE_POLL
#endif

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"
// The admin listener (docs/operations.md): the library's operations routes on an edge server.
#include "admin_server.hpp"
#include "startup.hpp"
#include "edge_server.hpp"
#include "cluster.hpp"

namespace {

constexpr const char* program = "iwsec-server";

constexpr const char* help_text =
    "usage: iwsec-server [options]\n"
    "\n"
    "Serves the Infoworks REST API v3 security endpoints (/v3/security/...).\n"
    "\n"
    "  --host ADDRESS           address to listen on (default 127.0.0.1)\n"
    "  --port PORT              port to listen on, 0 for any free port (default 3001)\n"
    "  --data-dir DIR           users.json, revocations.journal and signing.key (the\n"
    "                           signing keyring; iwsec-admin add-signing-key and\n"
    "                           retire-signing-key apply at once); default\n"
    "                           ./iwsec-data, created with its parents if missing.\n"
    "                           One iwsec-server per data directory (server.lock)\n"
    "  --secret-file FILE       signing keys from FILE instead of DIR/signing.key:\n"
    "                           raw key bytes (at least 32) or a keyring; read\n"
    "                           again on SIGHUP\n"
    "  --token-lifetime SECONDS access-token lifetime (default 900)\n"
    "  --tls-cert FILE          serve HTTPS with this PEM certificate ...\n"
    "  --tls-key FILE           ... and this PEM private key\n"
    "  --threads N              most worker threads, one per open connection,\n"
    "                           started on demand (default 1024)\n"
    "  --max-connections-per-client N  open connections from one client address\n"
    "                           (IPv6: one /64); 0 for no cap, as behind a proxy\n"
    "                           (default 128)\n"
    "  --pbkdf2-rounds N        PBKDF2 rounds spent on logins for unknown users\n"
    "                           (default 600000; match your users' hashes)\n"
    "  --no-access-log          do not print a line per request\n"
    "  --access-log FORMAT      text (default) or json (one object per line)\n"
    "  --access-log-file FILE   append the access log to FILE (mode 0600) instead of\n"
    "                           standard output; SIGHUP or SIGUSR1 reopens it\n"
    "  --access-log-buffer BYTES  lines held for the log's writer thread (default\n"
    "                           4194304); lines past it are dropped and counted in\n"
    "                           iwsec_access_log_dropped_lines_total\n"
    "  --admin-port PORT        serve /metrics, /health/live, /health/ready on this\n"
    "                           port, 0 for any free port (default: off)\n"
    "  --admin-host ADDRESS     address of the admin port (default 127.0.0.1)\n"
    "  --refresh-token-lifetime SECONDS  a refresh token stops working this long\n"
    "                           after it was issued (default 0: never)\n"
    "  --audit-log FILE         append the audit trail (JSON lines) to FILE instead\n"
    "                           of DIR/audit.log (in cluster mode: only there)\n"
    "  --no-audit-log           write no audit trail\n"
    "  --audit-retention-days N cluster mode: audit-table rows kept N days (default 90)\n"
    "  --max-revocations-per-user N  outstanding revocations kept per user; past\n"
    "                           them the user's access tokens all end (default 1000)\n"
    "\n"
    "Brute-force lockout (on by default; Keycloak's figures):\n"
    "  --lockout-failures N     failures that lock an account (default 30)\n"
    "  --lockout-wait SECONDS   lock per multiple of N failures (default 60)\n"
    "  --lockout-max-wait SECONDS  longest lock (default 900)\n"
    "  --lockout-reset SECONDS  quiet time that forgets failures (default 43200)\n"
    "  --lockout-client-failures N  failures from one client address within\n"
    "                           the window that block it (default 100)\n"
    "  --lockout-client-window SECONDS  (default 900)\n"
    "  --lockout-client-header NAME  take the client address from this header\n"
    "                           (only behind a proxy that always sets it)\n"
    "  --no-lockout             count nothing, never answer 429\n"
    "  --help                   print this help and exit\n"
    "  --version                print the version and exit\n"
    "\n"
    "Prints the data directory and its number of users, then 'listening on\n"
    "http://HOST:PORT' once it accepts connections, then one\n"
    "line per request: TIME CLIENT REQUEST-ID METHOD PATH STATUS MICROSECONDSus,\n"
    "plus is_valid=... reason=... for token checks, and a line per lockout\n"
    "('admin listening on http://HOST:PORT' too with --admin-port).\n"
    "SIGINT or SIGTERM stops it (every buffered access-log line written first);\n"
    "SIGHUP reloads --secret-file and reopens --access-log-file, SIGUSR1 reopens it.\n"
    "Options take their value as --opt VALUE or --opt=VALUE.\n"
    "Basic credentials travel in clear text: outside loopback, use TLS.\n"
    "Exit status: 0 stopped by a signal, 1 cannot start (the reason on stderr), 2 bad arguments.\n";

struct Settings {
  std::string host = "127.0.0.1";
  int port = 3001;
  std::string data_dir = "./iwsec-data";
  std::string secret_file;
  std::int64_t token_lifetime = 900;
  std::string tls_cert;
  std::string tls_key;
  int threads = 1024;
  std::size_t max_connections_per_client = 128;
  std::uint32_t pbkdf2_rounds = iwsec::default_pbkdf2_rounds;
  bool access_log = true;
  iwsec::AccessLogFormat access_log_format = iwsec::AccessLogFormat::text;
  std::string access_log_file;  // empty: standard output
  std::size_t access_log_buffer = 4u << 20;
  int admin_port = -1;  // off
  std::string admin_host = "127.0.0.1";
  std::size_t max_revocations_per_user = iwsec::Options().max_revocations_per_user;
  iwsec::LockoutPolicy lockout;
  std::string client_header;
  cluster::Settings cluster;  // --postgres, --max-staleness
  std::int64_t refresh_token_lifetime = 0;
  std::string audit_log;  // empty: DIR/audit.log on a data directory, none in cluster mode
  bool no_audit_log = false;
  std::int64_t audit_retention_days = 90;
};

Settings parse_arguments(int argc, char** argv) {
  Settings s;
  cli::Arguments args(program, argc, argv);
  while (args.next()) {
    const std::string_view a = args.current();
    if (a == "--help" || a == "-h") {
      std::fputs(help_text, stdout);
      std::fputs(cluster::server_help, stdout);
      std::exit(0);
    } else if (a == "--version") {
      cli::print_version();
    } else if (a == "--host") {
      s.host = args.value();
      if (s.host.empty()) cli::usage_error(program, "--host needs an address");
    } else if (a == "--port") {
      s.port = static_cast<int>(args.integer_value(0, 65535));
    } else if (a == "--data-dir") {
      s.data_dir = args.value();
      if (s.data_dir.empty()) cli::usage_error(program, "--data-dir needs a directory");
    } else if (a == "--secret-file") {
      s.secret_file = args.value();
      if (s.secret_file.empty()) cli::usage_error(program, "--secret-file needs a file");
    } else if (a == "--token-lifetime") {
      s.token_lifetime = args.integer_value(1, 31 * 24 * 3600);
    } else if (a == "--tls-cert") {
      s.tls_cert = args.value();
    } else if (a == "--tls-key") {
      s.tls_key = args.value();
    } else if (a == "--threads") {
      s.threads = static_cast<int>(args.integer_value(1, 4096));
    } else if (a == "--max-connections-per-client") {
      s.max_connections_per_client = static_cast<std::size_t>(args.integer_value(0, 1000000));
    } else if (a == "--pbkdf2-rounds") {
      s.pbkdf2_rounds = static_cast<std::uint32_t>(args.integer_value(1, iwsec::Pbkdf2Hash::max_rounds));
    } else if (a == "--no-access-log") {
      s.access_log = false;
    } else if (a == "--access-log") {
      const std::string format = args.value();
      if (format != "text" && format != "json") cli::usage_error(program, "--access-log takes text or json");
      s.access_log_format = format == "json" ? iwsec::AccessLogFormat::json : iwsec::AccessLogFormat::text;
    } else if (a == "--access-log-file") {
      s.access_log_file = args.value();
      if (s.access_log_file.empty()) cli::usage_error(program, "--access-log-file needs a file");
    } else if (a == "--access-log-buffer") {
      s.access_log_buffer = static_cast<std::size_t>(args.integer_value(1024, 1LL << 30));
    } else if (a == "--admin-port") {
      s.admin_port = static_cast<int>(args.integer_value(0, 65535));
    } else if (a == "--admin-host") {
      s.admin_host = args.value();
      if (s.admin_host.empty()) cli::usage_error(program, "--admin-host needs an address");
    } else if (a == "--refresh-token-lifetime") {
      s.refresh_token_lifetime = args.integer_value(0, iwsec::max_refresh_token_lifetime_seconds);
    } else if (a == "--audit-log") {
      s.audit_log = args.value();
      if (s.audit_log.empty()) cli::usage_error(program, "--audit-log needs a file");
    } else if (a == "--no-audit-log") {
      s.no_audit_log = true;
    } else if (a == "--audit-retention-days") {
      s.audit_retention_days = args.integer_value(1, 100000);
    } else if (a == "--max-revocations-per-user") {
      s.max_revocations_per_user = static_cast<std::size_t>(args.integer_value(1, 100000000));
    } else if (a == "--lockout-failures") {
      s.lockout.account_failures = static_cast<std::uint32_t>(args.integer_value(1, 1000000));
    } else if (a == "--lockout-wait") {
      s.lockout.account_wait_increment = std::chrono::seconds(args.integer_value(1, iwsec::max_duration_seconds));
    } else if (a == "--lockout-max-wait") {
      s.lockout.account_max_wait = std::chrono::seconds(args.integer_value(1, iwsec::max_duration_seconds));
    } else if (a == "--lockout-reset") {
      s.lockout.account_failure_reset = std::chrono::seconds(args.integer_value(1, iwsec::max_duration_seconds));
    } else if (a == "--lockout-client-failures") {
      s.lockout.client_failures = static_cast<std::uint32_t>(args.integer_value(1, 100000000));
    } else if (a == "--lockout-client-window") {
      s.lockout.client_window = std::chrono::seconds(args.integer_value(1, iwsec::max_duration_seconds));
    } else if (a == "--lockout-client-header") {
      s.client_header = args.value();
      if (s.client_header.empty()) cli::usage_error(program, "--lockout-client-header needs a header name");
    } else if (a == "--no-lockout") {
      s.lockout.enabled = false;
    } else if (cluster::parse_flag(program, args, a, s.cluster)) {
    } else {
      cli::usage_error(program, "unknown argument '" + std::string(a) + "'");
    }
  }
  if (s.cluster.enabled() && s.secret_file.empty() == s.cluster.key_encryption_key.empty())
    cli::usage_error(program,
                     "--postgres needs exactly one of --secret-file and --key-encryption-key (every replica signs "
                     "with the same keys)");
  if (!s.cluster.key_encryption_key.empty() && !s.cluster.enabled())
    cli::usage_error(program, "--key-encryption-key needs --postgres (the signing keys live in the database)");
  if (s.no_audit_log && !s.audit_log.empty()) cli::usage_error(program, "--audit-log and --no-audit-log exclude each other");
  if (s.tls_cert.empty() != s.tls_key.empty()) cli::usage_error(program, "--tls-cert and --tls-key go together");
  if (const char* error = iwsec::detail::lockout_policy_error(s.lockout))
    cli::usage_error(program, startup::lockout_error_in_flags(error));
  // The server never changes directory: absolute paths let the stores watch
  // their files for changes instead of stat'ing them on every request
  // (detail/change_watch.hpp leaves relative paths to the stat).
  s.data_dir = startup::from_working_directory(s.data_dir);
  if (!s.secret_file.empty()) s.secret_file = startup::from_working_directory(s.secret_file);
  return s;
}

// Every connection holds a descriptor: take the hard limit at start.
void raise_descriptor_limit() {
  struct rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    std::fprintf(stderr, "%s: warning: cannot read the descriptor limit: %s\n", program, std::strerror(errno));
    return;
  }
  if (limit.rlim_cur == limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
    std::fprintf(stderr, "%s: warning: cannot raise the descriptor limit to %llu: %s\n", program,
                 static_cast<unsigned long long>(limit.rlim_max), std::strerror(errno));
}

}  // namespace

// An exception that nothing caught ends the program with its message and
// status 1 (std::terminate's default would abort): at once, unwinding
// nothing, so no detached thread (the signal waiters) meets a destroyed
// local. Any other call of std::terminate is a bug: it still aborts.
[[noreturn]] static void exit_on_uncaught_exception() {
  if (const std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::fprintf(stderr, "%s: %s\n", program, x.what());
    } catch (...) {
      std::fprintf(stderr, "%s: an exception of an unknown type\n", program);
    }
    std::fflush(nullptr);
    std::_Exit(1);
  }
  std::abort();
}

int main(int argc, char** argv) {
  std::set_terminate(exit_on_uncaught_exception);
  const Settings settings = parse_arguments(argc, argv);

  ::signal(SIGPIPE, SIG_IGN);
  startup::block_reload_signal();  // before any thread starts
  if (settings.tls_cert.empty() && !startup::is_loopback(settings.host))
    std::fprintf(stderr,
                 "%s: warning: --host %s is not a loopback address and TLS is off: passwords and tokens travel "
                 "in clear text (use --tls-cert and --tls-key)\n",
                 program, settings.host.c_str());
  if (settings.admin_port >= 0 && !startup::is_loopback(settings.admin_host))
    std::fprintf(stderr,
                 "%s: warning: --admin-host %s is not a loopback address: /metrics and /health/* are open to "
                 "that network (no authentication)\n",
                 program, settings.admin_host.c_str());

  iwsec::Options options;
  options.token_lifetime = std::chrono::seconds(settings.token_lifetime);
  options.password_rounds = settings.pbkdf2_rounds;
  options.max_revocations_per_user = settings.max_revocations_per_user;
  options.lockout = settings.lockout;
  options.refresh_token_lifetime = std::chrono::seconds(settings.refresh_token_lifetime);
  // Operations: metrics, lock events to the log (the lock journal, where
  // iwsec-admin show-user / unlock meet the running server, is set below).
  options.metrics = std::make_shared<iwsec::Metrics>();
  const auto tell_operator = [](const std::string& line) { std::fprintf(stderr, "%s: %s\n", program, line.c_str()); };
  iwsec::AccessLog log(settings.access_log_format, settings.access_log, settings.access_log_file,
                       settings.access_log_buffer, tell_operator);
  options.metrics->add_counter("iwsec_access_log_dropped_lines_total",
                               "Access-log lines dropped because the log's buffer was full",
                               [&log] { return static_cast<double>(log.dropped_lines()); });
  // In cluster mode locks live in the database (show-user and unlock go
  // there); on a data directory the lock journal is where iwsec-admin meets
  // this process's locks (iwsec::JournaledLockout, set below).
  const bool cluster_mode = settings.cluster.enabled();
  auto journal = std::make_shared<iwsec::LockJournal>(iwsec::LockJournal::path_in(settings.data_dir),
                                                      iwsec::LockJournal::default_max_bytes, tell_operator);
  options.on_lockout = [&log](const iwsec::LockoutEvent& e) { log.lockout(e); };
  // Behind a proxy every peer address is the proxy's: count failures under
  // the address it reports (without the header: the peer address).
  if (!settings.client_header.empty()) options.lockout.client_key = iwsec::client_key_from_header(settings.client_header);

  raise_descriptor_limit();

  // Nothing is created before what can stop the start has been checked:
  // the TLS files and the port come first, the data directory after.
  std::unique_ptr<httplib::Server> server;
  edge::IdleConnections* idle_connections = nullptr;  // plain HTTP: closed first when workers run short
  if (!settings.tls_cert.empty()) {
    // TLS keeps cpp-httplib's own connection loop (no header-line cap, no
    // per-client cap): docs/edge.md puts a proxy in front for those.
    const std::string problem = startup::tls_problem(settings.tls_cert, settings.tls_key);
    if (!problem.empty()) cli::die(program, problem, 1);
    auto tls = std::make_unique<httplib::SSLServer>(settings.tls_cert.c_str(), settings.tls_key.c_str());
    if (!tls->is_valid())
      cli::die(program, "cannot load TLS certificate " + settings.tls_cert + " with key " + settings.tls_key, 1);
    server = std::move(tls);
  } else {
    edge::Limits limits;
    limits.max_connections_per_client = settings.max_connections_per_client;
    auto plain = std::make_unique<edge::Server>(limits);
    idle_connections = &plain->idle_connections();
    server = std::move(plain);
  }

  cli::stop_on_signals(*server);  // before any other thread starts
  cli::ListeningSocket listening_socket;
  listening_socket.configure(*server);
  iwsec::HardeningOptions hardening;
  hardening.keep_alive_max_requests = 100000;
  hardening.threads = 0;  // the growing pool below instead
  iwsec::harden(*server, hardening);
  const auto threads = static_cast<std::size_t>(settings.threads);
  server->new_task_queue = [threads, idle_connections] {
    return new edge::GrowingThreadPool(threads, idle_connections);
  };
  std::optional<iwsec::SecurityRoutes> routes;
  // No route here takes a body: refuse one on any path before httplib reads
  // it (so a body costs no memory, whatever its framing; a POST without
  // Content-Length too, which 0.11 would read until the connection ends) and
  // close the connection after the answer (so its bytes are never parsed as
  // a request).
  const std::string help_url_base = options.help_url_base;
  server->set_pre_routing_handler([&log, help_url_base](const httplib::Request& req, httplib::Response& res) {
    if (log.logs_requests()) log.begin(req);
    if (iwsec::refuse_request_body(req, res, help_url_base)) {
      edge::close_after_answer = true;
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  log.attach(*server);  // X-Request-Id on answers, a line per request (unless --no-access-log)

  const int port = settings.port == 0 ? server->bind_to_any_port(settings.host)
                                      : (server->bind_to_port(settings.host, settings.port) ? settings.port : -1);
  if (port <= 0)
    cli::die(program,
             "cannot listen on " + settings.host + " port " + std::to_string(settings.port) + ": " +
                 startup::bind_failure_reason(settings.host, settings.port),
             1);
  listening_socket.widen_backlog();

  std::unique_ptr<iwsec::JsonFileUserStore> file_users;
  iwsec::UserStore* users = nullptr;  // read by the readiness check
  std::unique_ptr<admin_server::AdminServer> admin;
  int admin_port = -1;
  if (settings.admin_port >= 0) {
    const std::string users_path = cluster_mode ? std::string() : settings.data_dir + "/users.json";
    admin_server::AdminServer::Edge admin_edge;  // the public listener's limits
    admin_edge.limits.max_connections_per_client = settings.max_connections_per_client;
    admin_edge.limits.help_url_base = options.help_url_base;
    admin_edge.threads = static_cast<std::size_t>(settings.threads);
    admin = std::make_unique<admin_server::AdminServer>(*options.metrics, admin_edge, [&server, &users, users_path]() -> std::string {
      if (!server->is_running() || !users) return "not accepting connections";
      if (!users_path.empty()) {
        const int fd = ::open(users_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return "cannot open " + users_path + ": " + std::strerror(errno);
        ::close(fd);
      }
      return iwsec::store_not_ready(*users);  // a reload when users.json changed; staleness in cluster mode
    });
    admin_port = admin->bind(settings.admin_host, settings.admin_port);
    if (admin_port <= 0)
      cli::die(program, "cannot listen on " + settings.admin_host + ":" + std::to_string(settings.admin_port) +
                            " (--admin-port): " + std::strerror(errno), 1);
  }
  iwsec::detail::unique_fd directory_lock;  // held until exit
  cluster::Server cluster_server;            // --postgres
  if (!cluster_mode) {
    // ---- the data directory: one server each, then keys, users, revocations
    const std::string dir_error = startup::make_directories(settings.data_dir);
    if (!dir_error.empty()) cli::die(program, dir_error, 1);
    if (const auto why = iwsec::detail::check_private(settings.data_dir)) cli::die(program, "data directory " + *why, 1);
    const std::string lock_error = startup::lock_data_directory(settings.data_dir, directory_lock);
    if (!lock_error.empty()) cli::die(program, lock_error, 1);
    std::string error;  // after the binds and the lock: a start that fails creates nothing
    if (!journal->start(error)) cli::die(program, error, 1);
    options.lockout_state = std::make_shared<iwsec::JournaledLockout>(
        std::make_shared<iwsec::LockoutTracker>(options.lockout), journal);
  }
  std::unique_ptr<iwsec::AuditFile> audit;  // opened below, once nothing else can stop the start
  if (!settings.no_audit_log || cluster_mode) {
    options.on_audit = [&log, &audit, &cluster_server](const iwsec::AuditEvent& e) {
      if (cluster_server.audit_locks) cluster_server.audit_locks(e);  // cluster mode: locks in the audit table
      if (!audit) return;
      iwsec::AuditEvent with_id = e;
      log.stamp_request_id(with_id);  // the X-Request-Id answered, or with the access log off one of its own
      audit->write(iwsec::audit_json_line(with_id));
    };
  }
  startup::ServerKeys keys;
  const bool keys_in_database = !settings.cluster.key_encryption_key.empty();
  if (!keys_in_database) {
    const std::string key_error = keys.open(settings.data_dir, settings.secret_file);
    if (!key_error.empty()) cli::die(program, key_error, 1);
  }
  const iwsec::Signer* signer = keys_in_database ? nullptr : &keys.signer();
  std::size_t user_count = 0;  // for the start-up line
  if (cluster_mode) {
    // The shared state is loaded here, before 'listening on'.
    cluster_server.start(program, settings.cluster, settings.audit_retention_days, options);
    users = cluster_server.users;
    user_count = cluster_server.user_count;
    if (keys_in_database) signer = cluster_server.signer();
  }
  if (!users) {
    try {
      file_users = std::make_unique<iwsec::JsonFileUserStore>(settings.data_dir + "/users.json");
      users = file_users.get();
      options.revocations = std::make_shared<iwsec::JournalRevocationStore>(settings.data_dir + "/revocations.journal");
    } catch (const std::exception& e) {
      cli::die(program, e.what(), 1);
    }
  }
  const std::string log_error = log.start();  // the access log's writer thread (a file the operator named)
  if (!log_error.empty()) cli::die(program, log_error, 1);
  // The audit trail, opened last: a start that fails creates nothing.
  // Lines are never dropped: see iwsec/audit_file.hpp.
  {
    std::string path = settings.audit_log;
    if (path.empty() && !cluster_mode && !settings.no_audit_log) path = settings.data_dir + "/audit.log";
    if (!path.empty() && !settings.no_audit_log) {
      audit = std::make_unique<iwsec::AuditFile>(path, tell_operator);
      if (!audit->ok()) cli::die(program, audit->error(), 1);
    }
  }
  if (!keys_in_database) options.refresh_keys = keys.per_request_refresh();
  routes = iwsec::mount_security_routes(*server, *users, *signer, options);
  // SIGHUP: the key file again (--secret-file; keys in the database follow
  // the change log), the access log and the audit trail reopened; SIGUSR1:
  // the logs only (logrotate's postrotate signal).
  startup::reload_on_signal([&keys, &log, &audit, keys_in_database](int signal_number) {
    log.reopen();
    if (audit) audit->reopen();
    if (signal_number == SIGHUP && !keys_in_database) keys.reload();
  });

  if (!cluster_mode) user_count = users->list_users().size();
  if (cluster_mode) {
    std::printf("cluster database (--postgres), %zu user%s, signing keys in %s\n", user_count,
                user_count == 1 ? "" : "s",
                keys_in_database ? "the database (--key-encryption-key)" : startup::absolute(keys.path()).c_str());
  } else {
    std::printf("data directory %s, %zu user%s, signing keys in %s\n", startup::absolute(settings.data_dir).c_str(),
                user_count, user_count == 1 ? "" : "s", startup::absolute(keys.path()).c_str());
  }

  const bool ipv6 = settings.host.find(':') != std::string::npos;
  std::printf("listening on %s://%s%s%s:%d\n", settings.tls_cert.empty() ? "http" : "https", ipv6 ? "[" : "",
              settings.host.c_str(), ipv6 ? "]" : "", port);
  if (admin) {
    const bool admin_ipv6 = settings.admin_host.find(':') != std::string::npos;
    std::printf("admin listening on http://%s%s%s:%d\n", admin_ipv6 ? "[" : "", settings.admin_host.c_str(),
                admin_ipv6 ? "]" : "", admin_port);
    admin->start();
  }
  std::fflush(stdout);

  // Returns once stop() closed the listening socket and the workers finished
  // the requests in flight.
  const bool clean = server->listen_after_bind();
  log.stop();  // every line of every answered request written
  if (admin) admin->stop();
  if (!cluster_mode) journal->stop();
  if (audit) audit->stop();  // every line in the file before exit
  cluster_server.stop();
  return clean ? 0 : 1;
}
