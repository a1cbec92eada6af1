#pragma once
// Cluster mode of iwsec-server and iwsec-admin: --postgres CONNINFO (and
// --max-staleness). Built in only when libpq was found (IWSEC_HAVE_POSTGRES,
// set by the iwsec::postgres target); otherwise the flags are refused with a
// message saying so, and everything else works as before.

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "user_report.hpp"

#include <iwsec/iwsec.hpp>  // the programs include only this one (and postgres/): the single-header build has no other

#ifdef IWSEC_HAVE_POSTGRES
#include <iwsec/postgres/backend.hpp>
#include <iwsec/postgres/signing_keys.hpp>
#include <iwsec/postgres/database_signer.hpp>
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
  std::string key_encryption_key;  // --key-encryption-key FILE: signing keys in the database
  bool enabled() const { return !conninfo.empty(); }
};

constexpr const char* server_help =
#ifdef IWSEC_HAVE_POSTGRES
    "\n"
    "Cluster mode (several replicas share one PostgreSQL database):\n"
    "  --postgres CONNINFO      libpq connection string or URI; users, revocations\n"
    "                           and lockout counts live there (no --data-dir);\n"
    "                           needs --secret-file or --key-encryption-key, the\n"
    "                           same on every replica\n"
    "  --key-encryption-key FILE  signing keys in the database, wrapped by the key\n"
    "                           in FILE (at least 32 random bytes, mode 0600); the\n"
    "                           first program creates a key; instead of --secret-file\n"
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
    "  delete-user EMAIL    remove the user\n"
    "  list-signing-keys, add-signing-key, retire-signing-key KID\n"
    "                       without --secret-file: the keys in the database, on\n"
    "                       every replica within a second; add-signing-key needs\n"
    "  --key-encryption-key FILE  the replicas' key-encryption key (it wraps the key)\n"
    "  import-signing-keys  with --secret-file FILE and --key-encryption-key FILE:\n"
    "                       copy the key file's keys into the database (which must\n"
    "                       hold none yet), so its tokens keep verifying\n";
#else
    "\n"
    "Cluster mode (--postgres) is not available: this program was built without\n"
    "libpq (install libpq-dev and rebuild).\n";
#endif

/// Takes --postgres and --max-staleness off the command line; false for any other argument.
inline bool parse_flag(const char* program, cli::Arguments& args, std::string_view a, Settings& s,
                       bool server = true) {
  if (a != "--postgres" && a != "--key-encryption-key" && !(server && a == "--max-staleness")) return false;
  if (!available)
    cli::usage_error(program, std::string(a) + " needs cluster mode, and this program was built without libpq");
  if (a == "--postgres") {
    s.conninfo = args.value();
    if (s.conninfo.empty()) cli::usage_error(program, "--postgres needs a connection string");
  } else if (a == "--key-encryption-key") {
    s.key_encryption_key = args.value();
    if (s.key_encryption_key.empty()) cli::usage_error(program, "--key-encryption-key needs a file");
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

/// The unexpired records of a revocation journal, owners included (none
/// when it is missing): read with the journal format's one parser
/// (iwsec/detail/revocation_journal.hpp), the one the store replays with.
inline std::vector<iwsec::RevocationRecord> read_journal(const char* program, const std::string& path,
                                                         std::int64_t now) {
  std::vector<iwsec::RevocationRecord> out;
  std::string error;
  if (!iwsec::read_revocation_journal(path, now, out, error)) cli::die(program, error, 1);
  return out;
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
    const bool was_locked = backend.lockout()->account_wait(email, now) > 0;
    backend.lockout()->unlock_account(email);
    user_report::print_unlocked(json, user ? user->email : email, was_locked);
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
  // show-user: never a secret; printed as on a data directory.
  const std::int64_t wait = backend.lockout()->account_wait(email, now);
  user_report::print_user(json, *user, wait > 0 ? now + wait : 0, refresh_token_lifetime);
  return 0;
}

/// The key-encryption key of --key-encryption-key; exits 1 with the reason
/// (the file named, never its content) when it cannot be used.
inline iwsec::postgres::KeyEncryptionKey read_key_encryption_key(const char* program, const std::string& path) {
  try {
    return iwsec::postgres::KeyEncryptionKey::from_file(path);
  } catch (const std::exception& e) {
    cli::die(program, e.what(), 1);
  }
}

/// iwsec-server in cluster mode: the backend (its shared state loaded before
/// 'listening on'), the store to mount, the signer when the keys are in the
/// database, the cluster gauges and the locks in the audit table; all of it
/// library parts (Backend::configure, add_metrics, lock_audit_hook,
/// DatabaseSigner). stop() ends the backend's threads before anything here
/// is destroyed.
struct Server {
  std::unique_ptr<iwsec::postgres::Backend> backend;
  std::unique_ptr<iwsec::postgres::DatabaseSigner> database_keys;  // --key-encryption-key
  iwsec::UserStore* users = nullptr;
  std::size_t user_count = 0;  // for the start-up line
  iwsec::AuditHook audit_locks;

  /// Exits 1 with a one-line reason when it cannot start.
  void start(const char* program, const Settings& s, std::int64_t audit_retention_days, iwsec::Options& options) {
    backend = connect(program, s, options.lockout, true);
    users = &backend->configure(options);
    if (options.metrics) backend->add_metrics(*options.metrics);  // lag and sequence gauges
    // Counted in the copy just loaded: a query, with a request's timeout,
    // could fail a start on a busy database after the load succeeded.
    user_count = backend->user_count();
    const auto tell = [program](const std::string& line) { std::fprintf(stderr, "%s: %s\n", program, line.c_str()); };
    audit_locks = backend->lock_audit_hook(audit_retention_days, tell);
    if (s.key_encryption_key.empty()) return;
    auto kek = read_key_encryption_key(program, s.key_encryption_key);
    try {  // a wrong key-encryption key stops the start here
      database_keys = std::make_unique<iwsec::postgres::DatabaseSigner>(*backend, std::move(kek), tell);
    } catch (const std::exception& e) {
      cli::die(program, std::string("signing keys (--key-encryption-key): ") + e.what(), 1);
    }
  }

  /// The signer of the keys in the database; null when they are in a file.
  const iwsec::Signer* signer() const { return database_keys ? &database_keys->signer() : nullptr; }

  void stop() {
    if (backend) backend->stop();
  }
  ~Server() {
    database_keys.reset();  // before the backend it follows
    stop();
  }
};

/// list-signing-keys, add-signing-key, retire-signing-key on the database's
/// keys (iwsec-admin --postgres without --secret-file); @p kid for retire;
/// import-signing-keys copies @p secret_file's keys in.
inline int run_key_command(const char* program, const std::string& name, const std::string& kid, bool json,
                           const Settings& s, iwsec::postgres::Backend& backend,
                           const std::string& secret_file = std::string(),
                           const std::function<void(const char* event, const std::string& kid)>& audit = {}) {
  namespace keys = iwsec::postgres::signing_keys;
  using connection = iwsec::postgres::detail::pq_connection;
  const std::int64_t now = iwsec::system_now();
  try {
    if (name == "list-signing-keys") {
      const auto listed = backend.with_connection([](connection& c) { return keys::list(c); });
      std::string out = "[";
      for (std::size_t i = 0; i < listed.size(); ++i) {
        const bool signs = i + 1 == listed.size();
        const std::string created = iwsec::Keyring::format_time(listed[i].created_at);
        if (json) {
          out += (i ? "," : "") + std::string("{\"kid\":") + quoted(listed[i].key_id) + ",\"created\":" +
                 quoted(created) + ",\"signing\":" + (signs ? "true" : "false") + "}";
        } else {
          std::printf("%s  %s%s\n", listed[i].key_id.c_str(), created.c_str(), signs ? "  signing" : "");
        }
      }
      if (json) std::printf("%s]\n", out.c_str());
      return 0;
    }
    if (name == "add-signing-key") {
      const auto kek = read_key_encryption_key(program, s.key_encryption_key);
      const auto added = backend.with_connection([&](connection& c) { return keys::add(c, kek, now); });
      if (audit) audit("signing_key_added", added.key_id);
      const std::string created = iwsec::Keyring::format_time(added.created_at);
      if (json) {
        std::printf("{\"kid\":%s,\"created\":%s}\n", quoted(added.key_id).c_str(), quoted(created).c_str());
      } else {
        std::printf("added signing key %s (created %s); every replica signs new tokens with it from now on\n",
                    added.key_id.c_str(), created.c_str());
      }
      return 0;
    }
    if (name == "import-signing-keys") {
      const auto kek = read_key_encryption_key(program, s.key_encryption_key);
      iwsec::KeyringFile file(secret_file);
      const iwsec::Keyring ring = file.load();
      const auto n = backend.with_connection([&](connection& c) { return keys::import_keyring(c, kek, ring); });
      if (audit) audit("import", "");
      if (json) {
        std::printf("{\"imported\":%zu}\n", n);
      } else {
        std::printf("imported %zu signing key%s from %s into the database\n", n, n == 1 ? "" : "s",
                    secret_file.c_str());
      }
      return 0;
    }
    backend.with_connection([&](connection& c) { keys::retire(c, kid); });
    if (audit) audit("signing_key_retired", kid);
  } catch (const iwsec::StateUnavailable&) {
    throw;
  } catch (const std::exception& e) {
    cli::die(program, e.what(), 1);
  }
  if (json) {
    std::printf("{\"retired\":%s}\n", quoted(kid).c_str());
  } else {
    std::printf("retired signing key %s; its tokens no longer validate on any replica\n", kid.c_str());
  }
  return 0;
}
#else
/// Without libpq: parse_flag refuses --postgres, so start() is never called.
struct Server {
  iwsec::UserStore* users = nullptr;
  std::size_t user_count = 0;
  iwsec::AuditHook audit_locks;
  [[noreturn]] void start(const char* program, const Settings&, std::int64_t, iwsec::Options&) {
    cli::die(program, "cluster mode needs a build with libpq", 1);
  }
  const iwsec::Signer* signer() const { return nullptr; }
  void stop() {}
};
#endif

}  // namespace cluster
