// iwsec-server: the Infoworks v3 security endpoints on their own, backed by a
// data directory (users.json, revocations.journal, signing.key).

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"
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
    "  --data-dir DIR           users.json, revocations.journal and signing.key\n"
    "                           (default ./iwsec-data, created if missing)\n"
    "  --secret-file FILE       raw HMAC key bytes (at least 32) instead of\n"
    "                           DIR/signing.key\n"
    "  --token-lifetime SECONDS access-token lifetime (default 900)\n"
    "  --tls-cert FILE          serve HTTPS with this PEM certificate ...\n"
    "  --tls-key FILE           ... and this PEM private key\n"
    "  --threads N              worker threads, one per open connection (default 64)\n"
    "  --pbkdf2-rounds N        PBKDF2 rounds spent on logins for unknown users\n"
    "                           (default 600000; match your users' hashes)\n"
    "  --no-access-log          do not print a line per request\n"
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
    "\n"
    "Prints 'listening on http://HOST:PORT' once it accepts connections, then one\n"
    "line per request: METHOD PATH STATUS MICROSECONDS. SIGINT or SIGTERM stops it.\n"
    "Basic credentials travel in clear text: outside loopback, use TLS.\n";

struct Settings {
  std::string host = "127.0.0.1";
  int port = 3001;
  std::string data_dir = "./iwsec-data";
  std::string secret_file;
  std::int64_t token_lifetime = 900;
  std::string tls_cert;
  std::string tls_key;
  int threads = 64;
  std::uint32_t pbkdf2_rounds = iwsec::default_pbkdf2_rounds;
  bool access_log = true;
  iwsec::LockoutPolicy lockout;
  std::string client_header;
  cluster::Settings cluster;  // --postgres, --max-staleness
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
    } else if (a == "--pbkdf2-rounds") {
      s.pbkdf2_rounds = static_cast<std::uint32_t>(args.integer_value(1, iwsec::Pbkdf2Hash::max_rounds));
    } else if (a == "--no-access-log") {
      s.access_log = false;
    } else if (a == "--lockout-failures") {
      s.lockout.account_failures = static_cast<std::uint32_t>(args.integer_value(1, 1000000));
    } else if (a == "--lockout-wait") {
      s.lockout.account_wait_increment = std::chrono::seconds(args.integer_value(1, 366LL * 24 * 3600));
    } else if (a == "--lockout-max-wait") {
      s.lockout.account_max_wait = std::chrono::seconds(args.integer_value(1, 366LL * 24 * 3600));
    } else if (a == "--lockout-reset") {
      s.lockout.account_failure_reset = std::chrono::seconds(args.integer_value(1, 366LL * 24 * 3600));
    } else if (a == "--lockout-client-failures") {
      s.lockout.client_failures = static_cast<std::uint32_t>(args.integer_value(1, 100000000));
    } else if (a == "--lockout-client-window") {
      s.lockout.client_window = std::chrono::seconds(args.integer_value(1, 366LL * 24 * 3600));
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
  if (s.cluster.enabled() && s.secret_file.empty())
    cli::usage_error(program, "--postgres needs --secret-file (every replica signs with the same key)");
  if (s.tls_cert.empty() != s.tls_key.empty()) cli::usage_error(program, "--tls-cert and --tls-key go together");
  if (const char* error = iwsec::detail::lockout_policy_error(s.lockout))
    cli::usage_error(program, std::string("lockout options: ") + error);
  return s;
}

// Reads a key file: a regular file of at least 32 raw bytes.
std::string read_key(const std::string& path) {
  iwsec::detail::unique_fd fd = iwsec::detail::open_fd(path, O_RDONLY);
  if (!fd) cli::die(program, "cannot open key file " + path + ": " + std::strerror(errno), 1);
  struct stat st;
  std::string key;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || !iwsec::detail::read_all(fd.get(), key))
    cli::die(program, "cannot read key file " + path, 1);
  if (key.size() < iwsec::Signer::min_key_bytes)
    cli::die(program, "key file " + path + " holds " + std::to_string(key.size()) + " bytes; at least 32 are required",
             1);
  if (st.st_mode & 077)
    std::fprintf(stderr, "%s: warning: key file %s is readable by other users (chmod 600 it)\n", program, path.c_str());
  return key;
}

// The data directory's signing.key: made once (32 CSPRNG bytes, mode 0600).
// It appears whole or not at all: written and fsynced under a temporary
// name, then linked into place (link fails if another process won the race,
// whose key is then used).
std::string load_or_create_key(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return read_key(path);
  const std::string key = iwsec::Signer::generate_secret();
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    iwsec::detail::unique_fd fd = iwsec::detail::open_fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!fd || ::fchmod(fd.get(), 0600) != 0 || !iwsec::detail::write_all(fd.get(), key) || ::fsync(fd.get()) != 0) {
      ::unlink(tmp.c_str());
      cli::die(program, "cannot write key file " + path, 1);
    }
  }
  const bool linked = ::link(tmp.c_str(), path.c_str()) == 0;
  const int link_errno = errno;
  ::unlink(tmp.c_str());
  if (!linked) {
    if (link_errno == EEXIST) return read_key(path);
    cli::die(program, "cannot create key file " + path + ": " + std::strerror(link_errno), 1);
  }
  if (!iwsec::detail::fsync_directory(iwsec::detail::parent_directory(path)))
    cli::die(program, "cannot make key file " + path + " durable", 1);
  return key;
}

// Access log: one line per request, never a header or a query value.
thread_local std::chrono::steady_clock::time_point request_started;
thread_local bool request_timed = false;
std::mutex log_mutex;

// Paths arrive percent-decoded: escape what could break or forge a log line.
void append_loggable(std::string& out, const std::string& text) {
  static const char hex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (c <= 0x20 || c >= 0x7F || c == '%') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
}

void log_request(const httplib::Request& req, const httplib::Response& res) {
  const long long micros =
      request_timed
          ? std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - request_started)
                .count()
          : 0;
  request_timed = false;
  std::string line;
  append_loggable(line, req.method);
  line += ' ';
  append_loggable(line, req.path);
  line += ' ' + std::to_string(res.status) + ' ' + std::to_string(micros) + "us\n";
  std::lock_guard<std::mutex> lock(log_mutex);
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Settings settings = parse_arguments(argc, argv);

  ::signal(SIGPIPE, SIG_IGN);

  if (!settings.cluster.enabled() && !cli::ensure_directory(settings.data_dir))
    cli::die(program, "cannot use data directory " + settings.data_dir, 1);
  const std::string key = settings.secret_file.empty() ? load_or_create_key(settings.data_dir + "/signing.key")
                                                       : read_key(settings.secret_file);

  std::unique_ptr<iwsec::JsonFileUserStore> file_users;
  iwsec::UserStore* users = nullptr;
  iwsec::Options options;
#ifdef IWSEC_HAVE_POSTGRES
  // Cluster mode: the shared state is loaded here, before 'listening on'.
  std::unique_ptr<iwsec::postgres::Backend> backend;
  if (settings.cluster.enabled()) {
    backend = cluster::connect(program, settings.cluster, settings.lockout, true);
    users = cluster::use_backend(*backend, options);
  }
#endif
  if (!users) {
    try {
      file_users = std::make_unique<iwsec::JsonFileUserStore>(settings.data_dir + "/users.json");
      users = file_users.get();
      options.revocations = std::make_shared<iwsec::JournalRevocationStore>(settings.data_dir + "/revocations.journal");
    } catch (const std::exception& e) {
      cli::die(program, e.what(), 1);
    }
  }
  const iwsec::Signer signer(key);
  options.token_lifetime = std::chrono::seconds(settings.token_lifetime);
  options.password_rounds = settings.pbkdf2_rounds;
  options.lockout = settings.lockout;
  if (!settings.client_header.empty()) {
    // Behind a proxy every peer address is the proxy's: count failures under
    // the address it reports. A request without the header counts under its
    // peer address, so stripping the header gains a client nothing.
    options.lockout.client_key = [header = settings.client_header](const httplib::Request& req) {
      const std::size_t n = req.get_header_value_count(header.c_str());
      if (n == 0) return iwsec::client_address_key(req.remote_addr);
      // The last value is the one the nearest proxy appended.
      std::string value = req.get_header_value(header.c_str(), n - 1);
      const auto comma = value.rfind(',');
      if (comma != std::string::npos) value.erase(0, comma + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
      return "proxied:" + iwsec::client_address_key(value);
    };
  }

  std::unique_ptr<httplib::Server> server;
  if (!settings.tls_cert.empty()) {
    auto tls = std::make_unique<httplib::SSLServer>(settings.tls_cert.c_str(), settings.tls_key.c_str());
    if (!tls->is_valid()) cli::die(program, "cannot load the TLS certificate or key", 1);
    server = std::move(tls);
  } else {
    server = std::make_unique<httplib::Server>();
  }

  // cpp-httplib's defaults leave Nagle's algorithm on and close a keep-alive
  // connection after 5 requests; each open connection holds a worker thread.
  cli::stop_on_signals(*server);  // before any other thread starts
  cli::ListeningSocket listening_socket;
  listening_socket.configure(*server);
  server->set_tcp_nodelay(true);
  server->set_keep_alive_max_count(100000);
  const int threads = settings.threads;
  server->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  if (settings.access_log) {
    server->set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
      request_started = std::chrono::steady_clock::now();
      request_timed = true;
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server->set_logger(log_request);
  }

  iwsec::mount_security_routes(*server, *users, signer, options);

  const int port = settings.port == 0 ? server->bind_to_any_port(settings.host)
                                      : (server->bind_to_port(settings.host, settings.port) ? settings.port : -1);
  if (port <= 0) cli::die(program, "cannot listen on " + settings.host + ":" + std::to_string(settings.port), 1);
  listening_socket.widen_backlog();

  const bool ipv6 = settings.host.find(':') != std::string::npos;
  std::printf("listening on %s://%s%s%s:%d\n", settings.tls_cert.empty() ? "http" : "https", ipv6 ? "[" : "",
              settings.host.c_str(), ipv6 ? "]" : "", port);
  std::fflush(stdout);

  // Returns once stop() closed the listening socket and the workers finished
  // the requests in flight.
  const bool clean = server->listen_after_bind();
  return clean ? 0 : 1;
}
