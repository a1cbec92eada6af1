// iwsec-admin: manage the users of an iwsec data directory. Safe to run while
// iwsec-server serves the same directory: writes are locked and atomic, and
// the server sees them on its next request.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <termios.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"
#include "cluster.hpp"

namespace {

constexpr const char* program = "iwsec-admin";

constexpr const char* help_text =
    "usage: iwsec-admin [--data-dir DIR] COMMAND [ARGUMENT] [--json] [--pbkdf2-rounds N]\n"
    "\n"
    "Commands (passwords are read as one line from standard input):\n"
    "  add-user EMAIL             create a user; prints its user id and first refresh token\n"
    "  list-users                 list users (never secrets)\n"
    "  disable-user EMAIL         refuse the user's logins, refresh tokens and access tokens\n"
    "  enable-user EMAIL          undo disable-user\n"
    "  set-password EMAIL         replace the user's password\n"
    "  rotate-refresh-token EMAIL issue a new refresh token (printed once); the old one and\n"
    "                             every access token minted before stop working\n"
    "  hash-password              print a $pbkdf2-sha256$ hash of the password\n"
    "\n"
    "Options:\n"
    "  --data-dir DIR       the server's data directory (default ./iwsec-data)\n"
    "  --json               machine-readable output\n"
    "  --pbkdf2-rounds N    PBKDF2 rounds for new hashes (default 600000)\n"
    "  --help               print this help and exit\n"
    "\n"
    "Exit status: 0 done, 1 the command failed (unknown user, user exists, I/O), 2 bad arguments.\n";

struct Command {
  std::string data_dir = "./iwsec-data";
  std::string name;
  std::string email;
  bool json = false;
  std::uint32_t rounds = iwsec::default_pbkdf2_rounds;
  cluster::Settings cluster;  // --postgres: the cluster database instead of the data directory
};

bool takes_email(const std::string& name) {
  return name == "add-user" || name == "disable-user" || name == "enable-user" || name == "set-password" ||
         name == "rotate-refresh-token";
}

// An email that can log in over HTTP Basic: no colon (it ends the user name),
// no whitespace or control bytes, one '@' with text on both sides.
bool plausible_email(const std::string& email) {
  if (email.size() < 3 || email.size() > 254) return false;
  for (unsigned char ch : email)
    if (ch <= 0x20 || ch == 0x7F || ch == ':') return false;
  if (!iwsec::detail::is_valid_utf8(email)) return false;
  const auto at = email.find('@');
  return at != std::string::npos && at > 0 && at + 1 < email.size() && email.find('@', at + 1) == std::string::npos;
}

Command parse_arguments(int argc, char** argv) {
  Command c;
  std::vector<std::string> positional;
  cli::Arguments args(program, argc, argv);
  while (args.next()) {
    const std::string_view a = args.current();
    if (a == "--help" || a == "-h") {
      std::fputs(help_text, stdout);
      std::fputs(cluster::admin_help, stdout);
      std::exit(0);
    } else if (a == "--data-dir") {
      c.data_dir = args.value();
      if (c.data_dir.empty()) cli::usage_error(program, "--data-dir needs a directory");
    } else if (cluster::parse_flag(program, args, a, c.cluster, false)) {
    } else if (a == "--json") {
      c.json = true;
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
  const bool known = takes_email(c.name) || c.name == "list-users" || c.name == "hash-password" || cluster_only;
  if (!known) cli::usage_error(program, "unknown command '" + c.name + "'");
  const std::size_t wanted = takes_email(c.name) || (cluster_only && cluster::admin_command(c.name) == 2) ? 2 : 1;
  if (positional.size() < wanted) cli::usage_error(program, c.name + " needs an EMAIL");
  if (positional.size() > wanted) cli::usage_error(program, "unexpected argument '" + positional[wanted] + "'");
  if (wanted == 2) c.email = positional[1];
  if (c.name == "add-user" && !plausible_email(c.email))
    cli::usage_error(program, "'" + c.email + "' is not a usable email");
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
  // A Basic login cannot carry control bytes (RFC 7617; the routes answer
  // 400 to them), so a password holding one could never be used.
  for (const char c : line) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F) cli::die(program, "the password holds a control character (a tab, say), which no login can send", 1);
  }
  return line;
}

std::string json_string(const std::string& s) {
  std::string out;
  iwsec::detail::append_json_string(out, s);
  return out;
}

[[noreturn]] void store_failure(iwsec::StoreStatus status, const std::string& email) {
  if (status == iwsec::StoreStatus::not_found) cli::die(program, "no user " + email, 1);
  if (status == iwsec::StoreStatus::already_exists) cli::die(program, "user " + email + " already exists", 1);
  cli::die(program, std::string("cannot update the users file: ") + iwsec::to_string(status), 1);
}

void print_refresh_token(const Command& c, const std::string& user_id, const std::string& token) {
  if (c.json) {
    std::printf("{\"user_id\":%s,\"refresh_token\":%s}\n", json_string(user_id).c_str(), json_string(token).c_str());
  } else {
    std::printf("user_id: %s\nrefresh_token: %s\n", user_id.c_str(), token.c_str());
  }
}

int run_on(const Command& c, iwsec::UserStore& users);

int run(const Command& c) {
  if (c.name == "hash-password") {
    const std::string hash = iwsec::hash_password(read_password(), c.rounds);
    if (c.json) {
      std::printf("{\"hash\":%s}\n", json_string(hash).c_str());
    } else {
      std::printf("%s\n", hash.c_str());
    }
    return 0;
  }

#ifdef IWSEC_HAVE_POSTGRES
  if (c.cluster.enabled()) {
    const auto backend = cluster::connect(program, c.cluster, iwsec::LockoutPolicy(), false);
    int status = cluster::run_admin_command(program, c.name, c.email, c.data_dir, c.json, *backend);
    if (status < 0) status = run_on(c, backend->users());
    // A change is in effect on every replica when the command returns.
    if (status == 0 && c.name != "list-users" && c.name != "show-user") cluster::await_replicas(program, *backend);
    return status;
  }
#endif
  // Only a new user may need a new data directory; reading never creates one.
  if (c.name == "add-user" && !cli::ensure_directory(c.data_dir))
    cli::die(program, "cannot use data directory " + c.data_dir, 1);
  iwsec::JsonFileUserStore users(c.data_dir + "/users.json");
  return run_on(c, users);
}

// The commands on either store: the data directory's users file or, with
// --postgres, the cluster database.
int run_on(const Command& c, iwsec::UserStore& users) {

  if (c.name == "list-users") {
    const auto all = users.list_users();
    if (c.json) {
      std::string out = "[";
      for (std::size_t i = 0; i < all.size(); ++i) {
        const auto& u = all[i];
        out += i ? "," : "";
        out += "{\"user_id\":" + json_string(u.user_id) + ",\"email\":" + json_string(u.email) +
               ",\"disabled\":" + (u.disabled ? "true" : "false") +
               ",\"refresh_generation\":" + std::to_string(u.refresh_generation) + "}";
      }
      std::printf("%s]\n", out.c_str());
    } else {
      for (const auto& u : all)
        std::printf("%s  %s  %s\n", u.user_id.c_str(), u.email.c_str(), u.disabled ? "disabled" : "enabled");
    }
    return 0;
  }

  if (c.name == "add-user") {
    if (users.find_by_email(c.email)) store_failure(iwsec::StoreStatus::already_exists, c.email);
    const auto created = iwsec::create_user(users, c.email, read_password(), c.rounds);
    if (created.status != iwsec::StoreStatus::ok) store_failure(created.status, c.email);
    print_refresh_token(c, created.user_id, created.refresh_token);
    return 0;
  }

  const auto existing = users.find_by_email(c.email);
  if (!existing) store_failure(iwsec::StoreStatus::not_found, c.email);

  if (c.name == "disable-user" || c.name == "enable-user") {
    const bool disable = c.name == "disable-user";
    const auto status = users.update_user(c.email, [&](iwsec::User& u) { u.disabled = disable; });
    if (status != iwsec::StoreStatus::ok) store_failure(status, c.email);
    if (c.json) {
      std::printf("{\"email\":%s,\"disabled\":%s}\n", json_string(existing->email).c_str(), disable ? "true" : "false");
    } else {
      std::printf("%s %s\n", disable ? "disabled" : "enabled", existing->email.c_str());
    }
    return 0;
  }

  if (c.name == "set-password") {
    const std::string hash = iwsec::hash_password(read_password(), c.rounds);
    const auto status = users.update_user(c.email, [&](iwsec::User& u) { u.password_hash = hash; });
    if (status != iwsec::StoreStatus::ok) store_failure(status, c.email);
    if (c.json) {
      std::printf("{\"email\":%s,\"password_changed\":true}\n", json_string(existing->email).c_str());
    } else {
      std::printf("password changed for %s\n", existing->email.c_str());
    }
    return 0;
  }

  // rotate-refresh-token: the same change as DELETE /v3/security/token/refresh.
  const auto rotated = iwsec::rotate_refresh_token(users, c.email);
  if (rotated.status != iwsec::StoreStatus::ok) store_failure(rotated.status, c.email);
  print_refresh_token(c, rotated.user_id, rotated.refresh_token);
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
