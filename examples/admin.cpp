// iwsec-admin: manage the users of an iwsec data directory. Safe to run while
// iwsec-server serves the same directory: writes are locked and atomic, and
// the server sees them on its next request.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"

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
};

bool takes_email(const std::string& name) {
  return name == "add-user" || name == "disable-user" || name == "enable-user" || name == "set-password" ||
         name == "rotate-refresh-token";
}

Command parse_arguments(int argc, char** argv) {
  Command c;
  std::vector<std::string> positional;
  cli::Arguments args(program, argc, argv);
  while (args.next()) {
    const std::string_view a = args.current();
    if (a == "--help" || a == "-h") {
      std::fputs(help_text, stdout);
      std::exit(0);
    } else if (a == "--data-dir") {
      c.data_dir = args.value();
      if (c.data_dir.empty()) cli::usage_error(program, "--data-dir needs a directory");
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
  const bool known = takes_email(c.name) || c.name == "list-users" || c.name == "hash-password";
  if (!known) cli::usage_error(program, "unknown command '" + c.name + "'");
  const std::size_t wanted = takes_email(c.name) ? 2 : 1;
  if (positional.size() < wanted) cli::usage_error(program, c.name + " needs an EMAIL");
  if (positional.size() > wanted) cli::usage_error(program, "unexpected argument '" + positional[wanted] + "'");
  if (wanted == 2) c.email = positional[1];
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

std::string json_string(const std::string& s) {
  std::string out;
  iwsec::detail::append_json_string(out, s);
  return out;
}

[[noreturn]] void store_failure(iwsec::StoreStatus status, const std::string& email,
                                const iwsec::JsonFileUserStore* users = nullptr) {
  if (status == iwsec::StoreStatus::not_found) cli::die(program, "no user " + email, 1);
  if (status == iwsec::StoreStatus::already_exists) cli::die(program, "user " + email + " already exists", 1);
  const std::string why = users && !users->last_error().empty() ? users->last_error() : iwsec::to_string(status);
  cli::die(program, "cannot update the users file: " + why, 1);
}

void print_refresh_token(const Command& c, const std::string& user_id, const std::string& token) {
  if (c.json) {
    std::printf("{\"user_id\":%s,\"refresh_token\":%s}\n", json_string(user_id).c_str(), json_string(token).c_str());
  } else {
    std::printf("user_id: %s\nrefresh_token: %s\n", user_id.c_str(), token.c_str());
  }
}

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

  // Only a new user may need a new data directory; reading never creates one.
  if (c.name == "add-user" && !cli::ensure_directory(c.data_dir))
    cli::die(program, "cannot use data directory " + c.data_dir, 1);
  // The directory must be ours (root may manage another account's: what it
  // writes keeps that account as owner) and closed to others.
  struct stat dir_status;
  if (::stat(c.data_dir.c_str(), &dir_status) == 0)
    if (const auto why = iwsec::detail::check_private(c.data_dir, /*root_may_manage=*/true)) cli::die(program, *why, 1);
  iwsec::JsonFileUserStore users(c.data_dir + "/users.json");

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
    if (!created.error.empty()) cli::die(program, created.error, 1);
    if (created.status != iwsec::StoreStatus::ok) store_failure(created.status, c.email, &users);
    print_refresh_token(c, created.user_id, created.refresh_token);
    return 0;
  }

  const auto existing = users.find_by_email(c.email);
  if (!existing) store_failure(iwsec::StoreStatus::not_found, c.email);

  if (c.name == "disable-user" || c.name == "enable-user") {
    const bool disable = c.name == "disable-user";
    const auto status = users.update_user(c.email, [&](iwsec::User& u) { u.disabled = disable; });
    if (status != iwsec::StoreStatus::ok) store_failure(status, c.email, &users);
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
    if (status != iwsec::StoreStatus::ok) store_failure(status, c.email, &users);
    if (c.json) {
      std::printf("{\"email\":%s,\"password_changed\":true}\n", json_string(existing->email).c_str());
    } else {
      std::printf("password changed for %s\n", existing->email.c_str());
    }
    return 0;
  }

  // rotate-refresh-token: the same change as DELETE /v3/security/token/refresh.
  const auto rotated = iwsec::rotate_refresh_token(users, c.email);
  if (rotated.status != iwsec::StoreStatus::ok) store_failure(rotated.status, c.email, &users);
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
