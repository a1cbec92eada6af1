#pragma once
// Cluster mode of iwsec-server and iwsec-admin: --postgres CONNINFO (and
// --max-staleness). Built in only when libpq was found (IWSEC_HAVE_POSTGRES,
// set by the iwsec::postgres target); otherwise the flags are refused with a
// message saying so, and everything else works as before.

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <utility>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <string>
#include <string_view>

#include "cli.hpp"

#ifdef IWSEC_HAVE_POSTGRES
#include <iwsec/postgres/backend.hpp>
#endif

namespace cluster {

#ifdef IWSEC_HAVE_POSTGRES
constexpr bool available = true;
#else
constexpr bool available = false;
#endif

struct Settings {
  std::string conninfo;  // empty: not in cluster mode; never printed (it may hold a password)
  std::int64_t max_staleness_seconds = 5;
  bool enabled() const { return !conninfo.empty(); }
};

constexpr const char* server_help =
#ifdef IWSEC_HAVE_POSTGRES
    "\n"
    "Cluster mode (several replicas share one PostgreSQL database):\n"
    "  --postgres CONNINFO      libpq connection string or URI; users, revocations\n"
    "                           and lockout counts live there (no --data-dir);\n"
    "                           needs --secret-file, the same on every replica\n"
    "  --max-staleness SECONDS  answer 503 when not caught up with the database\n"
    "                           for this long (default 5)\n";
#else
    "\n"
    "Cluster mode (--postgres, --max-staleness) is not available: this program\n"
    "was built without libpq (install libpq-dev and rebuild).\n";
#endif

constexpr const char* admin_help =
#ifdef IWSEC_HAVE_POSTGRES
    "\n"
    "Cluster mode:\n"
    "  --postgres CONNINFO  work on the cluster database instead of a data directory\n"
    "                       (every command above), plus:\n"
    "  import --data-dir DIR  copy DIR's users and unexpired revocations into the\n"
    "                       database; refuses, changing nothing, if a user exists\n"
    "  unlock EMAIL         clear the account's failure count and lock, cluster-wide\n"
    "  delete-user EMAIL    remove the user\n";
#else
    "\n"
    "Cluster mode (--postgres) is not available: this program was built without\n"
    "libpq (install libpq-dev and rebuild).\n";
#endif

/// Takes --postgres and --max-staleness off the command line; false for any other argument.
inline bool parse_flag(const char* program, cli::Arguments& args, std::string_view a, Settings& s,
                       bool server = true) {
  if (a != "--postgres" && !(server && a == "--max-staleness")) return false;
  if (!available)
    cli::usage_error(program, std::string(a) + " needs cluster mode, and this program was built without libpq");
  if (a == "--postgres") {
    s.conninfo = args.value();
    if (s.conninfo.empty()) cli::usage_error(program, "--postgres needs a connection string");
  } else {
    s.max_staleness_seconds = args.integer_value(1, 3600);
  }
  return true;
}

/// Commands only cluster mode adds: 0 not one, 1 without an argument, 2 with an EMAIL.
inline int admin_command(const std::string& name) {
  if (name == "import") return 1;
  if (name == "unlock" || name == "delete-user" || name == "show-user") return 2;
  return 0;
}

#ifdef IWSEC_HAVE_POSTGRES
/// Connects (creating or migrating the schema); a replica also loads the
/// shared state. Exits 1 with a one-line reason when it cannot.
inline std::unique_ptr<iwsec::postgres::Backend> connect(const char* program, const Settings& s,
                                                          const iwsec::LockoutPolicy& lockout, bool replica) {
  iwsec::postgres::BackendOptions o;
  o.conninfo = s.conninfo;
  o.replica = replica;
  o.max_staleness = std::chrono::seconds(s.max_staleness_seconds);
  o.lockout = lockout;
  o.log = [program](const std::string& line) {
    std::fprintf(stderr, "%s: %s\n", program, line.c_str());
    std::fflush(stderr);
  };
  // The backend's follower thread must not take SIGINT/SIGTERM (they are
  // awaited by cli::stop_on_signals): it starts with them blocked.
  sigset_t stop_signals, saved;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &saved);
  try {
    auto backend = std::make_unique<iwsec::postgres::Backend>(std::move(o));
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    return backend;
  } catch (const std::exception& e) {
    cli::die(program, std::string("cluster database (--postgres): ") + e.what(), 1);
  }
}

inline std::string quoted(const std::string& s) {
  std::string out;
  iwsec::detail::append_json_string(out, s);
  return out;
}

/// The unexpired `<jti> <exp>` records of a revocation journal (none when it is missing).
inline std::vector<std::pair<std::string, std::int64_t>> read_journal(const char* program, const std::string& path,
                                                                      std::int64_t now) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return out;
    cli::die(program, "cannot read " + path + ": " + std::strerror(errno), 1);
  }
  std::string line;
  while (std::getline(in, line)) {
    const auto space = line.find(' ');
    if (space == std::string::npos || space == 0) continue;
    // `jti exp` or, since the per-user cap, `jti exp owner`.
    std::string_view rest = std::string_view(line).substr(space + 1);
    rest = rest.substr(0, rest.find(' '));
    const auto exp = cli::parse_integer(rest, 0, INT64_MAX / 16);
    if (exp && *exp > now) out.emplace_back(line.substr(0, space), *exp);
  }
  if (in.bad()) cli::die(program, "cannot read " + path + ": " + std::strerror(errno), 1);
  return out;
}

/// Hands the routes' options the backend's revocations and lockout counts;
/// returns the user store to mount them with.
inline iwsec::UserStore* use_backend(iwsec::postgres::Backend& backend, iwsec::Options& options) {
  options.revocations = backend.revocations();
  options.lockout_state = backend.lockout();
  return &backend.users();
}

/// After a write: returns once every live replica applied it (at most 3 s;
/// the change is committed either way, so only a warning after that).
inline void await_replicas(const char* program, iwsec::postgres::Backend& backend) {
  try {
    const auto lagging = backend.wait_for_replicas(std::chrono::seconds(3));
    if (lagging > 0)
      std::fprintf(stderr, "%s: warning: committed, but %lld replica(s) have not applied it yet\n", program,
                   static_cast<long long>(lagging));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: warning: committed, but cannot tell whether the replicas applied it: %s\n", program,
                 e.what());
  }
}

/// Runs a command only cluster mode has; -1 when @p name is a shared command
/// (the caller runs it on backend.users()).
inline int run_admin_command(const char* program, const std::string& name, const std::string& email,
                             const std::string& data_dir, bool json, iwsec::postgres::Backend& backend,
                             std::int64_t refresh_token_lifetime = 0) {
  const std::int64_t now = iwsec::system_now();
  if (name == "import") {
    const std::string users_path = data_dir + "/users.json";
    struct stat st;
    if (::stat(users_path.c_str(), &st) != 0)
      cli::die(program, "cannot import from " + users_path + ": " + std::strerror(errno), 1);
    iwsec::JsonFileUserStore source(users_path);
    const auto users = source.list_users();
    const auto revocations = read_journal(program, data_dir + "/revocations.journal", now);
    std::string conflict;
    const auto status = backend.import(users, revocations, &conflict);
    if (status == iwsec::StoreStatus::already_exists)
      cli::die(program, "import refused, nothing changed: user " + conflict + " already exists in the database", 1);
    if (status != iwsec::StoreStatus::ok)
      cli::die(program, std::string("import refused, nothing changed: ") + iwsec::to_string(status), 1);
    if (json) {
      std::printf("{\"users\":%zu,\"revocations\":%zu}\n", users.size(), revocations.size());
    } else {
      std::printf("imported %zu users and %zu revocations from %s\n", users.size(), revocations.size(),
                  data_dir.c_str());
    }
    return 0;
  }
  if (admin_command(name) != 2) return -1;
  const auto user = backend.users().find_by_email(email);
  if (name == "unlock") {  // an unknown email may be locked too (it is counted the same way)
    backend.lockout()->unlock_account(email);
    std::printf(json ? "{\"email\":%s,\"unlocked\":true}\n" : "unlocked %s\n",
                json ? quoted(email).c_str() : email.c_str());
    return 0;
  }
  if (!user) cli::die(program, "no user " + email, 1);
  if (name == "delete-user") {
    const auto status = backend.users().delete_user(email);
    if (status != iwsec::StoreStatus::ok) cli::die(program, "no user " + email, 1);
    std::printf(json ? "{\"email\":%s,\"deleted\":true}\n" : "deleted %s\n",
                json ? quoted(user->email).c_str() : user->email.c_str());
    return 0;
  }
  // show-user: never a secret.
  const std::int64_t wait = backend.lockout()->account_wait(email, now);
  // The refresh token's issue time and, given the lifetime, its expiry.
  const std::string issued = iwsec::audit_time(user->refresh_token_issued_at * 1000).replace(19, 4, "");
  const std::string expires =
      refresh_token_lifetime ? iwsec::audit_time((user->refresh_token_issued_at + refresh_token_lifetime) * 1000).replace(19, 4, "") : "";
  if (json) {
    std::printf("{\"user_id\":%s,\"email\":%s,\"disabled\":%s,\"refresh_generation\":%lld,\"locked\":%s,"
                "\"locked_until\":%s,\"refresh_token_issued_at\":%s%s%s}\n",
                quoted(user->user_id).c_str(), quoted(user->email).c_str(), user->disabled ? "true" : "false",
                static_cast<long long>(user->refresh_generation), wait > 0 ? "true" : "false",
                wait > 0 ? std::to_string(now + wait).c_str() : "null", quoted(issued).c_str(),
                expires.empty() ? "" : ",\"refresh_token_expires_at\":", expires.empty() ? "" : quoted(expires).c_str());
  } else {
    std::printf("user_id: %s\nemail: %s\ndisabled: %s\ngeneration: %lld\nlocked: %s\nrefresh_token_issued_at: %s\n",
                user->user_id.c_str(), user->email.c_str(), user->disabled ? "yes" : "no",
                static_cast<long long>(user->refresh_generation),
                wait > 0 ? ("until " + std::to_string(now + wait)).c_str() : "no", issued.c_str());
    if (!expires.empty()) std::printf("refresh_token_expires_at: %s\n", expires.c_str());
  }
  return 0;
}
#endif

}  // namespace cluster
