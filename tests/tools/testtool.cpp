// iwsec-testtool: a small command-line front end to the library, so the
// Python interop tests can drive Signer and the password hashing directly.
//
//   iwsec-testtool sign KEYFILE EMAIL ACTION IAT EXP GEN      -> token
//   iwsec-testtool verify KEYFILE TOKEN NOW                   -> "ok EMAIL ACTION IAT EXP JTI GEN" (exit 0)
//                                                                or "error <reason>" (exit 1)
//   iwsec-testtool verify-password HASH     (password on stdin) -> "true" / "false"
//   iwsec-testtool hash-password ROUNDS     (password on stdin) -> "$pbkdf2-sha256$..."
//
// Key files hold the raw key bytes. A password on stdin is one line; its
// trailing newline, if any, is not part of the password.
// Bad arguments: one line on stderr, exit 2.

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include <iwsec/iwsec.hpp>

namespace {

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr, "iwsec-testtool: %s\n", message.c_str());
  std::exit(2);
}

std::optional<std::int64_t> parse_int(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

std::int64_t int_argument(const char* name, std::string_view text) {
  const auto v = parse_int(text);
  if (!v) usage(std::string(name) + " must be a non-negative whole number");
  return *v;
}

std::string read_key(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) usage(std::string("cannot read key file ") + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string read_password_line() {
  std::string line;
  if (!std::getline(std::cin, line) && !std::cin.eof()) usage("cannot read standard input");
  return line;
}

int sign(int argc, char** argv) {
  if (argc != 8 && argc != 9) usage("sign KEYFILE EMAIL ACTION IAT EXP GEN [USER_ID]");
  const std::string action(argv[4]);
  iwsec::AccessClaims claims;
  claims.email = argv[3];
  if (action == "password") {
    claims.action = iwsec::TokenAction::password;
  } else if (action == "refresh_token") {
    claims.action = iwsec::TokenAction::refresh_token;
  } else {
    usage("ACTION must be password or refresh_token");
  }
  claims.issued_at = int_argument("IAT", argv[5]);
  claims.expires_at = int_argument("EXP", argv[6]);
  claims.refresh_generation = int_argument("GEN", argv[7]);
  if (argc == 9) claims.user_id = argv[8];
  try {
    const iwsec::Signer signer(read_key(argv[2]));
    std::cout << signer.sign(claims) << '\n';
  } catch (const iwsec::key_error& e) {
    usage(e.what());
  }
  return 0;
}

int verify(int argc, char** argv) {
  if (argc != 5) usage("verify KEYFILE TOKEN NOW");
  const std::int64_t now = int_argument("NOW", argv[4]);
  try {
    const iwsec::Signer signer(read_key(argv[2]));
    const auto result = signer.verify(argv[3], now);
    if (!result) {
      std::cout << "error " << iwsec::to_string(result.error()) << '\n';
      return 1;
    }
    const auto& t = result.token();
    std::cout << "ok " << t.email() << ' ' << iwsec::to_string(t.action()) << ' ' << t.issued_at() << ' '
              << t.expires_at() << ' ' << t.jti() << ' ' << t.refresh_generation() << ' '
              << t.user_id() << '\n';
  } catch (const iwsec::key_error& e) {
    usage(e.what());
  }
  return 0;
}

int verify_password(int argc, char** argv) {
  if (argc != 3) usage("verify-password HASH (password on stdin)");
  const std::string password = read_password_line();
  std::cout << (iwsec::verify_password(password, argv[2]) ? "true" : "false") << '\n';
  return 0;
}

int hash_password(int argc, char** argv) {
  if (argc != 3) usage("hash-password ROUNDS (password on stdin)");
  const std::int64_t rounds = int_argument("ROUNDS", argv[2]);
  if (rounds < 1 || rounds > iwsec::Pbkdf2Hash::max_rounds) usage("ROUNDS out of range");
  const std::string password = read_password_line();
  std::cout << iwsec::hash_password(password, static_cast<std::uint32_t>(rounds)) << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("expected a command: sign, verify, verify-password, hash-password");
  const std::string_view command(argv[1]);
  if (command == "sign") return sign(argc, argv);
  if (command == "verify") return verify(argc, argv);
  if (command == "verify-password") return verify_password(argc, argv);
  if (command == "hash-password") return hash_password(argc, argv);
  usage("unknown command " + std::string(command));
}
