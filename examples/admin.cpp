// iwsec-admin: manage the users of an iwsec data directory. Safe to run while
// iwsec-server serves the same directory: writes are locked and atomic, and
// the server sees them on its next request.

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"
#include "user_report.hpp"  // show-user, unlock: the same output in both modes
#include "startup.hpp"
#include "cluster.hpp"

namespace {

constexpr const char* program = "iwsec-admin";

constexpr const char* help_text =
    "usage: iwsec-admin [--data-dir DIR | --secret-file FILE] COMMAND [ARGUMENT] [--json] [--pbkdf2-rounds N]\n"
    "\n"
    "Commands (passwords are read as one line from standard input):\n"
    "  add-user EMAIL             create a user; prints its user id and first refresh token\n"
    "  list-users                 list users (never secrets)\n"
    "  disable-user EMAIL         refuse the user's logins and refresh tokens; ends every session\n"
    "  enable-user EMAIL          undo disable-user (access tokens from before stay invalid)\n"
    "  set-password EMAIL         replace the user's password and end every session: prints a\n"
    "                             new refresh token once (--keep-sessions: keep the old one)\n"
    "  delete-user EMAIL          remove the user; their refresh and access tokens stop working\n"
    "  rotate-refresh-token EMAIL issue a new refresh token (printed once); the old one and\n"
    "                             every access token minted before stop working\n"
    "  hash-password              print a $pbkdf2-sha256$ hash of the password\n"
    "  show-user EMAIL            the user's id, email, disabled, generation and lock\n"
    "                             (never a secret)\n"
    "  unlock EMAIL               clear the account's failures and lock on the running server\n"
    "  audit                      print the audit trail, newest last (--since SECONDS,\n"
    "                             --email EMAIL to narrow it)\n"
    "  compact                    fold DIR/users.json.journal (every change since the last\n"
    "                             compaction) into DIR/users.json; run it before editing\n"
    "                             users.json by hand: an edit wins over changes not folded in\n"
    "\n"
    "Signing keys (DIR/signing.key, or the keyring --secret-file names):\n"
    "  list-signing-keys          kid and creation time of each key (never the key)\n"
    "  add-signing-key            add a random 32-byte key with a new kid; a running\n"
    "                             server signs with it from its next request, older\n"
    "                             keys keep verifying\n"
    "  retire-signing-key KID     remove a key: its tokens stop validating at once\n"
    "\n"
    "Options:\n"
    "  --data-dir DIR       the server's data directory (default ./iwsec-data); it must\n"
    "                       exist, except for add-user, which creates it\n"
    "  --secret-file FILE   the signing-key commands work on this key file (a raw key\n"
    "                       or a keyring; add-signing-key creates it) instead\n"
    "  --json               machine-readable output, errors included ({\"error\":...})\n"
    "  --keep-sessions      set-password only: keep the refresh token and access tokens\n"
    "  --pbkdf2-rounds N    PBKDF2 rounds for new hashes (default 600000)\n"
    "  --refresh-token-lifetime SECONDS  the server's: show-user then also shows\n"
    "                       when the refresh token expires\n"
    "  --expiring-within SECONDS  list-users only: the users whose refresh token\n"
    "                       expires within that time (needs --refresh-token-lifetime)\n"
    "  --audit-log FILE     the audit trail is FILE, not DIR/audit.log (every change\n"
    "                       is recorded there; audit reads it)\n"
    "  --audit-retention-days N  cluster mode: keep audit rows N days (default 90)\n"
    "  --help               print this help and exit\n"
    "  --version            print the version and exit\n"
    "Options take their value as --opt VALUE or --opt=VALUE.\n"
    "\n"
    "Exit status: 0 done, 1 the command failed (unknown user, user exists, I/O), 2 bad arguments.\n";

struct Command {
  std::string data_dir = "./iwsec-data";
  std::string secret_file;
  std::string name;
  std::string email;
  bool json = false;
  bool keep_sessions = false;
  std::uint32_t rounds = iwsec::default_pbkdf2_rounds;
  cluster::Settings cluster;  // --postgres: the cluster database instead of the data directory
  std::int64_t refresh_token_lifetime = -1;  // -1: not given; 0: tokens never expire (as the server)
  std::int64_t expiring_within = -1;        // -1: not given
  std::string audit_log;                    // empty: DIR/audit.log (or the table in cluster mode)
  std::int64_t since = -1;                  // audit --since
  std::string filter_email;                 // audit --email
  std::int64_t audit_retention_days = 90;
};

bool is_key_command(const std::string& name) {
  return name == "list-signing-keys" || name == "add-signing-key" || name == "retire-signing-key" ||
         name == "import-signing-keys";
}

bool takes_email(const std::string& name) {
  return name == "add-user" || name == "disable-user" || name == "enable-user" || name == "set-password" ||
         name == "rotate-refresh-token" || name == "show-user" || name == "unlock" || name == "delete-user";
}

Command parse_arguments(int argc, char** argv) {
  Command c;
  std::vector<std::string> positional;
  // --json anywhere makes every error JSON too, the argument errors included.
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--json") cli::json_errors = true;
  cli::Arguments args(program, argc, argv);
  while (args.next()) {
    const std::string_view a = args.current();
    if (a == "--help" || a == "-h") {
      std::fputs(help_text, stdout);
      std::fputs(cluster::admin_help, stdout);
      std::exit(0);
    } else if (a == "--version") {
      cli::print_version();
    } else if (a == "--secret-file") {
      c.secret_file = args.value();
    } else if (a == "--data-dir") {
      c.data_dir = args.value();
      if (c.data_dir.empty()) cli::usage_error(program, "--data-dir needs a directory");
    } else if (cluster::parse_flag(program, args, a, c.cluster, false)) {
    } else if (a == "--json") {
      c.json = true;
    } else if (a == "--keep-sessions") {
      c.keep_sessions = true;
    } else if (a == "--refresh-token-lifetime") {
      c.refresh_token_lifetime = args.integer_value(0, iwsec::max_refresh_token_lifetime_seconds);
    } else if (a == "--expiring-within") {
      c.expiring_within = args.integer_value(0, 100LL * 366 * 24 * 3600);
    } else if (a == "--audit-log") {
      c.audit_log = args.value();
      if (c.audit_log.empty()) cli::usage_error(program, "--audit-log needs a file");
    } else if (a == "--since") {
      c.since = args.integer_value(0, 100LL * 366 * 24 * 3600);
    } else if (a == "--email") {
      c.filter_email = args.value();
    } else if (a == "--audit-retention-days") {
      c.audit_retention_days = args.integer_value(1, 100000);
    } else if (a == "--pbkdf2-rounds") {
      c.rounds = static_cast<std::uint32_t>(args.integer_value(1, iwsec::Pbkdf2Hash::max_rounds));
    } else if (a.size() > 1 && a[0] == '-') {
      cli::usage_error(program, "unknown option '" + std::string(a) + "'");
    } else {
      positional.emplace_back(a);
    }
  }
  if (positional.empty()) cli::usage_error(program, "no command given");
  c.name = positional[0];
  const bool cluster_only = c.cluster.enabled() && cluster::admin_command(c.name) != 0;
  const bool known =
      takes_email(c.name) || c.name == "list-users" || c.name == "hash-password" || is_key_command(c.name) ||
      c.name == "audit" || c.name == "compact" || cluster_only;
  if (!known) cli::usage_error(program, "unknown command '" + c.name + "'");
  if (c.name == "compact" && c.cluster.enabled())
    cli::usage_error(program, "compact works on a data directory's users file; cluster mode has none");
  const std::size_t wanted =
      takes_email(c.name) || c.name == "retire-signing-key" || (cluster_only && cluster::admin_command(c.name) == 2) ? 2
                                                                                                                    : 1;
  if (positional.size() < wanted)
    cli::usage_error(program, c.name + (c.name == "retire-signing-key" ? " needs a KID" : " needs an EMAIL"));
  if (positional.size() > wanted) cli::usage_error(program, "unexpected argument '" + positional[wanted] + "'");
  if (wanted == 2) c.email = positional[1];
  if (c.keep_sessions && c.name != "set-password") cli::usage_error(program, "--keep-sessions goes with set-password only");
  if (c.expiring_within >= 0 && c.name != "list-users")
    cli::usage_error(program, "--expiring-within goes with list-users only");
  if (c.expiring_within >= 0 && c.refresh_token_lifetime < 0)
    cli::usage_error(program, "--expiring-within needs --refresh-token-lifetime (the server's)");
  if ((c.since >= 0 || !c.filter_email.empty()) && c.name != "audit")
    cli::usage_error(program, "--since and --email go with audit only");
  if (!c.secret_file.empty() && !is_key_command(c.name))
    cli::usage_error(program, "--secret-file applies only to the signing-key commands, not to " + c.name);
  if (c.name == "import-signing-keys" &&
      (!c.cluster.enabled() || c.secret_file.empty() || c.cluster.key_encryption_key.empty()))
    cli::usage_error(program, "import-signing-keys needs --postgres, --secret-file FILE and --key-encryption-key FILE");
  if (!c.cluster.key_encryption_key.empty() && c.name != "import-signing-keys" &&
      (!c.cluster.enabled() || !c.secret_file.empty() || c.name != "add-signing-key"))
    cli::usage_error(program, "--key-encryption-key goes with --postgres and add-signing-key or import-signing-keys only");
  if (c.cluster.enabled() && c.secret_file.empty() && c.name == "add-signing-key" && c.cluster.key_encryption_key.empty())
    cli::usage_error(program,
                     "add-signing-key in cluster mode needs --key-encryption-key FILE (the replicas' key-encryption "
                     "key: it wraps the new key), or --secret-file FILE for a key file");
  if (c.name == "add-user")
    if (const char* problem = iwsec::email_problem(c.email))
      cli::usage_error(program, "'" + c.email + "' is not a usable email: " + problem);
  return c;
}


// One line of standard input, without echo when it is a terminal.
std::string read_password() {
  const bool tty = ::isatty(STDIN_FILENO) == 1;
  termios saved{};
  if (tty) {
    std::fputs("password: ", stderr);
    std::fflush(stderr);
    ::tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string line;
  const bool got = static_cast<bool>(std::getline(std::cin, line));
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::fputs("\n", stderr);
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (!got || line.empty()) cli::die(program, "no password on standard input", 1);
  // The library's rule (create_user applies it too): what no login can send is refused.
  if (const char* problem = iwsec::password_problem(line)) cli::die(program, problem, 1);
  return line;
}

using user_report::json_quoted;  // a string as a JSON literal, quotes included

std::string users_file;  // for the error messages

// Where this run's audit events go (docs/operations.md "The audit trail"): DIR/audit.log, the
// --audit-log file, or the cluster's table. Empty: nowhere (hash-password).
std::function<void(const iwsec::AuditEvent&)> audit_sink;

// Records an administrator's change, with the account that ran it; called
// once the change is done and its result printed (a new refresh token is
// never lost). A change that is done but cannot be recorded fails the
// command (exit 1), saying that the change was made and why the line was not.
void record(const char* event, const std::string& email, const std::string& user_id, const std::string& kid = "") {
  if (!audit_sink) return;
  std::fflush(stdout);
  iwsec::AuditEvent e;
  e.time_ms = iwsec::audit_now_ms();
  e.event = event;
  e.email = iwsec::detail::ascii_lower(email);
  e.user_id = user_id;
  e.actor = iwsec::audit_actor();
  e.result = "success";
  e.kid = kid;
  audit_sink(e);
}

// The file sink: one whole line per event, O_APPEND, 0600, the directory's owner.
void use_audit_file(const std::string& path) {
  audit_sink = [path](const iwsec::AuditEvent& e) {
    const std::string error =
        iwsec::append_audit_line(path, iwsec::audit_json_line(e));
    if (!error.empty()) cli::die(program, "the change was made, but its audit line was not written: " + error, 1);
  };
}

// `audit`: the trail, newest last, filtered by --since and --email.
int print_audit(const Command& c, const std::vector<std::string>& lines) {
  const std::int64_t since_ms = c.since >= 0 ? iwsec::audit_now_ms() - c.since * 1000 : 0;
  const std::string since_time = since_ms ? iwsec::audit_time(since_ms) : "";
  const std::string email = iwsec::detail::ascii_lower(c.filter_email);
  std::vector<iwsec::AuditRecord> events;
  for (const auto& line : lines) {
    iwsec::AuditRecord e;
    if (!iwsec::parse_audit_line(line, e)) continue;
    if (!since_time.empty() && e.time < since_time) continue;
    if (!email.empty() && e.email != email) continue;
    events.push_back(std::move(e));
  }
  // Several writers append to one file: order by time (stable: ties keep file order).
  std::stable_sort(events.begin(), events.end(),
                   [](const iwsec::AuditRecord& a, const iwsec::AuditRecord& b) { return a.time < b.time; });
  if (c.json) {
    std::string out = "[";
    for (std::size_t i = 0; i < events.size(); ++i) out += (i ? ",\n" : "\n") + events[i].json;
    std::printf("%s\n]\n", out.c_str());
  } else {
    for (const auto& e : events) std::printf("%s\n", e.text.c_str());
  }
  return 0;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> out;
  auto fd = iwsec::detail::open_fd(path, O_RDONLY);
  if (!fd) {
    if (errno == ENOENT) return out;
    cli::die(program, "cannot open audit log " + path + ": " + std::strerror(errno), 1);
  }
  std::string text;
  if (!iwsec::detail::read_all(fd.get(), text)) cli::die(program, "cannot read audit log " + path + ": " + std::strerror(errno), 1);
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    if (nl > start) out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}


[[noreturn]] void store_failure(const iwsec::StoreResult& status, const std::string& email) {
  if (status == iwsec::StoreStatus::not_found) cli::die(program, "no user " + email, 1);
  if (status == iwsec::StoreStatus::already_exists) cli::die(program, "user " + email + " already exists", 1);
  cli::die(program, "cannot update users file " + users_file + ": " + status.reason(), 1);
}

void print_refresh_token(const Command& c, const std::string& user_id, const std::string& token) {
  if (c.json) {
    std::printf("{\"user_id\":%s,\"refresh_token\":%s}\n", json_quoted(user_id).c_str(), json_quoted(token).c_str());
  } else {
    std::printf("user_id: %s\nrefresh_token: %s\n", user_id.c_str(), token.c_str());
  }
}

// show-user and unlock: the lock state comes from the running server's lock
// journal (iwsec::LockJournal), the rest from the users file. unlock takes an
// email no user has (@p u empty) as well: the server locks unknown emails
// the same way (so that a lock tells nothing about who exists), and such a
// lock would otherwise outlive an add-user of that email. Cluster mode does
// the same.
int lock_command(const Command& c, const std::optional<iwsec::User>& u) {
  const std::string journal = iwsec::LockJournal::path_in(c.data_dir);
  const std::string email = u ? u->email : c.email;
  std::int64_t until = 0;
  std::string error;
  if (!iwsec::LockJournal::locked_until(journal, email, std::time(nullptr), until, error)) cli::die(program, error, 1);
  if (c.name == "unlock") {
    if (!iwsec::LockJournal::request_unlock(journal, email, error)) cli::die(program, error, 1);
    record("unlock", email, u ? u->user_id : "");
    user_report::print_unlocked(c.json, email, until != 0);
    return 0;
  }
  user_report::print_user(c.json, *u, until, std::max<std::int64_t>(c.refresh_token_lifetime, 0));
  return 0;
}

void require_data_directory(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    cli::die(program, "cannot use data directory " + dir + ": " + std::strerror(errno), 1);
  if (!S_ISDIR(st.st_mode)) cli::die(program, "cannot use data directory " + dir + ": " + std::strerror(ENOTDIR), 1);
}

// list-signing-keys, add-signing-key, retire-signing-key on the key file at @p path.
int run_key_command(const Command& c, const std::string& path) {
  iwsec::KeyringFile file(path);
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  if (c.name == "list-signing-keys") {
    const iwsec::Keyring ring = file.load();
    std::string out = "[";
    for (std::size_t i = 0; i < ring.keys.size(); ++i) {
      const auto& k = ring.keys[i];
      const bool signs = i + 1 == ring.keys.size();
      const std::string created = iwsec::Keyring::format_time(k.created_at);
      if (c.json) {
        out += i ? "," : "";
        out += "{\"kid\":" + json_quoted(k.key_id) + ",\"created\":" + json_quoted(created) +
               ",\"signing\":" + (signs ? "true" : "false") + "}";
      } else {
        std::printf("%s  %s%s\n", k.key_id.c_str(), created.c_str(), signs ? "  signing" : "");
      }
    }
    if (c.json) std::printf("%s]\n", out.c_str());
    return 0;
  }
  if (c.name == "add-signing-key") {
    iwsec::KeyringEntry added;
    file.update([&](iwsec::Keyring& ring) { added = ring.add_new_key(now); }, true);
    record("signing_key_added", "", "", added.key_id);
    const std::string created = iwsec::Keyring::format_time(added.created_at);
    if (c.json) {
      std::printf("{\"kid\":%s,\"created\":%s}\n", json_quoted(added.key_id).c_str(), json_quoted(created).c_str());
    } else {
      std::printf("added signing key %s (created %s); it signs new tokens from now on\n", added.key_id.c_str(),
                  created.c_str());
    }
    return 0;
  }
  // retire-signing-key KID
  file.update([&](iwsec::Keyring& ring) { ring.retire(c.email); });
  record("signing_key_retired", "", "", c.email);
  if (c.json) {
    std::printf("{\"retired\":%s}\n", json_quoted(c.email).c_str());
  } else {
    std::printf("retired signing key %s; its tokens no longer validate\n", c.email.c_str());
  }
  return 0;
}

int run_on(const Command& c, iwsec::UserStore& users);

int run(const Command& c) {
  if (c.name == "hash-password") {
    const std::string hash = iwsec::hash_password(read_password(), c.rounds);
    if (c.json) {
      std::printf("{\"hash\":%s}\n", json_quoted(hash).c_str());
    } else {
      std::printf("%s\n", hash.c_str());
    }
    return 0;
  }

  // The audit trail: --audit-log FILE, else the cluster's table, else DIR/audit.log.
  if (!c.audit_log.empty()) {
    use_audit_file(c.audit_log);
  } else if (!c.cluster.enabled()) {
    // A key file elsewhere (--secret-file) without a data directory has no trail.
    struct stat st;
    const bool no_directory = ::stat(c.data_dir.c_str(), &st) != 0 && c.name != "add-user";
    if (!(is_key_command(c.name) && !c.secret_file.empty() && no_directory)) use_audit_file(c.data_dir + "/audit.log");
  }
  if (c.name == "audit" && (!c.audit_log.empty() || !c.cluster.enabled())) {
    if (c.audit_log.empty()) require_data_directory(c.data_dir);
    return print_audit(c, read_lines(c.audit_log.empty() ? c.data_dir + "/audit.log" : c.audit_log));
  }

#ifdef IWSEC_HAVE_POSTGRES
  if (is_key_command(c.name) && c.cluster.enabled() && (c.secret_file.empty() || c.name == "import-signing-keys")) {
    // The signing keys in the database: every replica within a second.
    const auto backend = cluster::connect(program, c.cluster, iwsec::LockoutPolicy(), false);
    if (c.audit_log.empty()) {
      iwsec::postgres::Backend* b = backend.get();
      const std::int64_t retention = c.audit_retention_days;
      audit_sink = [b, retention](const iwsec::AuditEvent& e) { b->record_audit(e, retention); };
    }
    const int status = cluster::run_key_command(program, c.name, c.email, c.json, c.cluster, *backend, c.secret_file,
                                                [](const char* event, const std::string& kid) { record(event, "", "", kid); });
    if (status == 0 && c.name != "list-signing-keys") cluster::await_replicas(program, *backend);
    return status;
  }
#endif
  if (is_key_command(c.name) && !(c.cluster.enabled() && c.audit_log.empty())) {
    if (c.secret_file.empty()) require_data_directory(c.data_dir);
    return run_key_command(c, c.secret_file.empty() ? c.data_dir + "/signing.key" : c.secret_file);
  }

#ifdef IWSEC_HAVE_POSTGRES
  if (c.cluster.enabled()) {
    const auto backend = cluster::connect(program, c.cluster, iwsec::LockoutPolicy(), false);
    if (c.audit_log.empty()) {
      iwsec::postgres::Backend* b = backend.get();
      const std::int64_t retention = c.audit_retention_days;
      audit_sink = [b, retention](const iwsec::AuditEvent& e) { b->record_audit(e, retention); };
    }
    if (c.name == "audit") {
      const std::int64_t since_ms = c.since >= 0 ? iwsec::audit_now_ms() - c.since * 1000 : 0;
      return print_audit(c, backend->read_audit(since_ms, c.filter_email));
    }
    if (is_key_command(c.name)) return run_key_command(c, c.secret_file.empty() ? c.data_dir + "/signing.key" : c.secret_file);
    const auto before = takes_email(c.name) ? backend->users().find_by_email(c.email) : std::nullopt;
    int status = cluster::run_admin_command(program, c.name, c.email, c.data_dir, c.json, *backend,
                                            std::max<std::int64_t>(c.refresh_token_lifetime, 0));
    if (status == 0 && c.name == "import") record("import", "", "");
    if (status == 0 && c.name == "unlock") record("unlock", c.email, before ? before->user_id : "");
    if (status == 0 && c.name == "delete-user") record("user_deleted", c.email, before ? before->user_id : "");
    if (status < 0) status = run_on(c, backend->users());
    // A change is in effect on every replica when the command returns.
    if (status == 0 && c.name != "list-users" && c.name != "show-user") cluster::await_replicas(program, *backend);
    return status;
  }
#endif
  // Only a new user may need a new data directory; a mistyped --data-dir for
  // any other command is an error, not an empty database.
  if (c.name == "add-user") {
    const std::string error = startup::make_directories(c.data_dir);
    if (!error.empty()) cli::die(program, error, 1);
  } else {
    require_data_directory(c.data_dir);
  }
  // The directory must be ours (root may manage another account's: what it
  // writes keeps that account as owner) and closed to others.
  if (const auto why = iwsec::detail::check_private(c.data_dir, /*root_may_manage=*/true)) cli::die(program, *why, 1);
  users_file = c.data_dir + "/users.json";
  iwsec::JsonFileUserStore users(users_file);
  if (c.name == "compact") {
    if (const iwsec::StoreResult compacted = users.compact(); !compacted.ok())
      cli::die(program, "cannot compact users file " + users_file + ": " + compacted.reason(), 1);
    const std::size_t count = users.list_users().size();
    if (c.json) {
      std::printf("{\"compacted\":true,\"users\":%zu}\n", count);
    } else {
      std::printf("compacted %s (%zu users)\n", users_file.c_str(), count);
    }
    return 0;
  }
  return run_on(c, users);
}

// The commands on either store: the data directory's users file or, with
// --postgres, the cluster database.
int run_on(const Command& c, iwsec::UserStore& users) {

  if (c.name == "list-users") {
    auto all = users.list_users();
    // --expiring-within: only the users whose refresh token expires by then
    // (the ones already expired included), soonest first.
    const std::int64_t now = iwsec::system_now();
    if (c.expiring_within >= 0) {
      std::vector<iwsec::User> soon;
      for (auto& u : all)
        if (c.refresh_token_lifetime > 0 &&  // 0: no token ever expires
            u.refresh_token_issued_at + c.refresh_token_lifetime <= now + c.expiring_within)
          soon.push_back(std::move(u));
      std::stable_sort(soon.begin(), soon.end(), [](const iwsec::User& a, const iwsec::User& b) {
        return a.refresh_token_issued_at < b.refresh_token_issued_at;
      });
      all = std::move(soon);
    }
    if (c.json) {
      std::string out = "[";
      for (std::size_t i = 0; i < all.size(); ++i) {
        const auto& u = all[i];
        out += i ? "," : "";
        out += "{\"user_id\":" + json_quoted(u.user_id) + ",\"email\":" + json_quoted(u.email) +
               ",\"disabled\":" + (u.disabled ? "true" : "false") +
               ",\"refresh_generation\":" + std::to_string(u.refresh_generation);
        if (c.refresh_token_lifetime > 0)  // asked about lifetimes: when each token was issued and expires
          out += ",\"refresh_token_issued_at\":" + json_quoted(iwsec::detail::rfc3339_seconds(u.refresh_token_issued_at)) +
                 ",\"refresh_token_expires_at\":" +
                 json_quoted(iwsec::detail::rfc3339_seconds(u.refresh_token_issued_at + c.refresh_token_lifetime));
        out += "}";
      }
      std::printf("%s]\n", out.c_str());
    } else {
      for (const auto& u : all) {
        if (c.refresh_token_lifetime > 0) {
          std::printf("%s  %s  %s  refresh token expires %s\n", u.user_id.c_str(), u.email.c_str(),
                      u.disabled ? "disabled" : "enabled",
                      iwsec::detail::rfc3339_seconds(u.refresh_token_issued_at + c.refresh_token_lifetime).c_str());
        } else {
          std::printf("%s  %s  %s\n", u.user_id.c_str(), u.email.c_str(), u.disabled ? "disabled" : "enabled");
        }
      }
    }
    return 0;
  }

  if (c.name == "add-user") {
    if (users.find_by_email(c.email)) store_failure(iwsec::StoreStatus::already_exists, c.email);
    const auto created = iwsec::create_user(users, c.email, read_password(), c.rounds);
    if (!created.error.empty()) cli::die(program, created.error, 1);
    if (created.status != iwsec::StoreStatus::ok) store_failure(created.status, c.email);
    print_refresh_token(c, created.user_id, created.refresh_token);
    record("user_added", c.email, created.user_id);
    return 0;
  }

  const auto existing = users.find_by_email(c.email);
  if (!existing && c.name == "unlock") return lock_command(c, std::nullopt);
  if (!existing) store_failure(iwsec::StoreStatus::not_found, c.email);

  if (c.name == "show-user" || c.name == "unlock") return lock_command(c, existing);

  if (c.name == "disable-user" || c.name == "enable-user") {
    const bool disable = c.name == "disable-user";
    const auto status = iwsec::set_user_disabled(users, c.email, disable);
    if (status != iwsec::StoreStatus::ok) store_failure(status, c.email);
    record(disable ? "user_disabled" : "user_enabled", existing->email, existing->user_id);
    if (c.json) {
      std::printf("{\"email\":%s,\"disabled\":%s}\n", json_quoted(existing->email).c_str(), disable ? "true" : "false");
    } else {
      std::printf("%s %s\n", disable ? "disabled" : "enabled", existing->email.c_str());
    }
    return 0;
  }

  if (c.name == "delete-user") {
    const auto status = users.delete_user(c.email);
    if (status != iwsec::StoreStatus::ok) store_failure(status, c.email);
    record("user_deleted", existing->email, existing->user_id);
    if (c.json) {
      std::printf("{\"email\":%s,\"deleted\":true}\n", json_quoted(existing->email).c_str());
    } else {
      std::printf("deleted %s\n", existing->email.c_str());
    }
    return 0;
  }

  if (c.name == "set-password") {
    // Unless --keep-sessions: a new refresh token (printed once) and a generation bump.
    const auto changed = iwsec::set_password(users, c.email, read_password(), c.rounds, c.keep_sessions);
    if (changed.status != iwsec::StoreStatus::ok) store_failure(changed.status, c.email);
    if (!c.keep_sessions) {
      print_refresh_token(c, changed.user_id, changed.refresh_token);
    } else if (c.json) {
      std::printf("{\"email\":%s,\"password_changed\":true}\n", json_quoted(existing->email).c_str());
    } else {
      std::printf("password changed for %s\n", existing->email.c_str());
    }
    record("password_set", existing->email, existing->user_id);
    return 0;
  }

  // rotate-refresh-token: the same change as DELETE /v3/security/token/refresh.
  const auto rotated = iwsec::rotate_refresh_token(users, c.email);
  if (rotated.status != iwsec::StoreStatus::ok) store_failure(rotated.status, c.email);
  print_refresh_token(c, rotated.user_id, rotated.refresh_token);
  record("refresh_token_rotated", existing->email, existing->user_id);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Command command = parse_arguments(argc, argv);
  try {
    return run(command);
  } catch (const std::exception& e) {
    cli::die(program, e.what(), 1);
  }
}
