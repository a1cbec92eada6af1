// Unit tests for include/iwsec/password.hpp: passlib-compatible
// `$pbkdf2-sha256$rounds$salt$checksum` hashes.

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>

#include <iwsec/iwsec.hpp>

using iwsec::Pbkdf2Hash;
using iwsec::hash_password;
using iwsec::verify_password;

namespace {

// Made by Python's passlib (passlib.hash.pbkdf2_sha256).
const char* const passlib_password = "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw$Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M";
const char* const passlib_1234 = "$pbkdf2-sha256$29000$mzOmdC7l/B.DUIqRcq4Vwg$f6L9GhLEk2Hd5SQoOuycTlfTSZZKlJqWHEWYU3t9MSg";
// passlib, rounds=1000, salt=16 zero bytes, password "päss:wörd✓" in UTF-8.
const char* const passlib_utf8 = "$pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$kcOYe7iBo/M.xBaBSVc9aCm9ysgbB15raSmzNYFgFjU";
const char* const utf8_password = "p\xc3\xa4ss:w\xc3\xb6rd\xe2\x9c\x93";

std::string hex(const std::string& raw) {
  return iwsec::detail::hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

}  // namespace

TEST_CASE("passlib hashes verify", "[password]") {
  CHECK(verify_password("password", passlib_password));
  CHECK(verify_password("1234", passlib_1234));
  CHECK(verify_password(utf8_password, passlib_utf8));
}

TEST_CASE("wrong passwords do not verify against passlib hashes", "[password]") {
  for (const char* wrong : {"Password", "password ", " password", "passwor", "password1", "", "1234"}) {
    INFO(wrong);
    CHECK_FALSE(verify_password(wrong, passlib_password));
  }
  CHECK_FALSE(verify_password("12345", passlib_1234));
  CHECK_FALSE(verify_password("password", passlib_1234));
  CHECK_FALSE(verify_password(std::string("12\0" "34", 5), passlib_1234));
  CHECK_FALSE(verify_password("p\xc3\xa4ss:w\xc3\xb6rd", passlib_utf8));
}

TEST_CASE("pbkdf2_sha256 matches the RFC 7914 section 11 vector", "[password]") {
  CHECK(hex(iwsec::detail::pbkdf2_sha256("passwd", "salt", 1, 64)) ==
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");
}

TEST_CASE("hash_password: passlib format, fresh salt, round trip", "[password]") {
  const std::regex shape(R"(\$pbkdf2-sha256\$1000\$[A-Za-z0-9./]{22}\$[A-Za-z0-9./]{43})");
  std::set<std::string> hashes, salts;
  for (int i = 0; i < 5; ++i) {
    const std::string h = hash_password("correct horse battery staple", 1000);
    INFO(h);
    CHECK(std::regex_match(h, shape));
    CHECK(verify_password("correct horse battery staple", h));
    CHECK_FALSE(verify_password("correct horse battery stapler", h));
    const auto parsed = Pbkdf2Hash::parse(h);
    REQUIRE(parsed);
    CHECK(parsed->rounds == 1000);
    CHECK(parsed->salt.size() == 16);
    CHECK(parsed->checksum.size() == 32);
    hashes.insert(h);
    salts.insert(parsed->salt);
  }
  CHECK(hashes.size() == 5);
  CHECK(salts.size() == 5);
}

TEST_CASE("hash_password: default rounds are OWASP's 600000", "[password]") {
  STATIC_REQUIRE(iwsec::default_pbkdf2_rounds == 600000);
  const std::string h = hash_password("pw");
  const auto parsed = Pbkdf2Hash::parse(h);
  REQUIRE(parsed);
  CHECK(parsed->rounds == 600000);
  CHECK(h.rfind("$pbkdf2-sha256$600000$", 0) == 0);
  CHECK(verify_password("pw", h));
}

TEST_CASE("hash_password: rounds out of range throw", "[password]") {
  CHECK_THROWS_AS(hash_password("pw", 0), std::invalid_argument);
  CHECK_THROWS_AS(hash_password("pw", Pbkdf2Hash::max_rounds + 1), std::invalid_argument);
  CHECK(verify_password("pw", hash_password("pw", 1)));
}

TEST_CASE("passwords with colons, NUL bytes and UTF-8 hash and verify", "[password]") {
  const std::string with_nul("ab\0cd", 5);
  for (const std::string& pw : {std::string("a:b:c"), std::string(":"), with_nul, std::string(utf8_password),
                                std::string(""), std::string(300, 'x')}) {
    const std::string h = hash_password(pw, 1000);
    CHECK(verify_password(pw, h));
  }
  // A NUL byte is part of the password, not its end.
  const std::string h = hash_password(with_nul, 1000);
  CHECK_FALSE(verify_password("ab", h));
  CHECK_FALSE(verify_password(std::string("ab\0ce", 5), h));
  CHECK_FALSE(verify_password("abcd", h));
}

TEST_CASE("Pbkdf2Hash: parse and to_string round trip", "[password]") {
  for (const char* text : {passlib_password, passlib_1234, passlib_utf8}) {
    INFO(text);
    const auto h = Pbkdf2Hash::parse(text);
    REQUIRE(h);
    CHECK(h->checksum.size() == 32);
    CHECK(h->to_string() == text);
  }
  const auto h = Pbkdf2Hash::parse(passlib_password);
  REQUIRE(h);
  CHECK(h->rounds == 6400);
  CHECK(h->salt.size() == 16);
  const auto z = Pbkdf2Hash::parse(passlib_utf8);
  REQUIRE(z);
  CHECK(z->salt == std::string(16, '\0'));

  // ab64 writes "." for "+": bytes fb ef be are "++++" in standard base64, "...." here.
  Pbkdf2Hash made;
  made.rounds = 12;
  made.salt = std::string("\xfb\xef\xbe", 3);
  made.checksum = std::string(32, '\xff');
  const std::string text = made.to_string();
  CHECK(text.rfind("$pbkdf2-sha256$12$....$", 0) == 0);
  CHECK(text.find('+') == std::string::npos);
  CHECK(text.find('=') == std::string::npos);
  const auto back = Pbkdf2Hash::parse(text);
  REQUIRE(back);
  CHECK(back->rounds == 12);
  CHECK(back->salt == made.salt);
  CHECK(back->checksum == made.checksum);
}

TEST_CASE("malformed hash strings: parse gives nothing, verify gives false", "[password]") {
  const std::string salt = "0ZrzXitFSGltTQnBWOsdAw";
  const std::string sum = "Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M";
  const std::string bad[] = {
      "",
      "password",
      "$pbkdf2-sha512$6400$" + salt + "$" + sum,
      "$pbkdf2$6400$" + salt + "$" + sum,
      "$PBKDF2-SHA256$6400$" + salt + "$" + sum,
      "pbkdf2-sha256$6400$" + salt + "$" + sum,
      " $pbkdf2-sha256$6400$" + salt + "$" + sum,
      "$pbkdf2-sha256$0$" + salt + "$" + sum,
      "$pbkdf2-sha256$06400$" + salt + "$" + sum,
      "$pbkdf2-sha256$-6400$" + salt + "$" + sum,
      "$pbkdf2-sha256$+6400$" + salt + "$" + sum,
      "$pbkdf2-sha256$64a0$" + salt + "$" + sum,
      "$pbkdf2-sha256$6400 $" + salt + "$" + sum,
      "$pbkdf2-sha256$ 6400$" + salt + "$" + sum,
      "$pbkdf2-sha256$$" + salt + "$" + sum,
      "$pbkdf2-sha256$100000001$" + salt + "$" + sum,
      "$pbkdf2-sha256$4294967297$" + salt + "$" + sum,
      "$pbkdf2-sha256$6400$" + salt,
      "$pbkdf2-sha256$6400$" + salt + "$",
      "$pbkdf2-sha256$6400",
      "$pbkdf2-sha256$",
      "$pbkdf2-sha256$6400$" + sum,
      "$pbkdf2-sha256$6400$" + salt + "$" + sum + "$",
      "$pbkdf2-sha256$6400$" + salt + "$" + sum + "$extra",
      "$pbkdf2-sha256$6400$$" + salt + "$" + sum,
      "$pbkdf2-sha256$6400$" + salt + "$" + sum.substr(0, 42),
      "$pbkdf2-sha256$6400$" + salt + "$" + sum + "A",
      "$pbkdf2-sha256$6400$" + salt + "$" + sum + "=",
      "$pbkdf2-sha256$6400$" + salt + "$" + sum.substr(0, 40),
      "$pbkdf2-sha256$6400$" + salt + "$" + sum.substr(0, 42) + "N",   // non-zero trailing bits
      "$pbkdf2-sha256$6400$" + salt + "$" + sum.substr(0, 42) + "+",   // '+' is not ab64
      "$pbkdf2-sha256$6400$" + salt + "$" + sum.substr(0, 42) + "-",
      "$pbkdf2-sha256$6400$" + salt + "$" + sum.substr(0, 42) + "_",
      "$pbkdf2-sha256$6400$" + salt + "$" + sum.substr(0, 21) + " " + sum.substr(22),
      "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw==$" + sum,
      "$pbkdf2-sha256$6400$0Zrz+itFSGltTQnBWOsdAw$" + sum,
      "$pbkdf2-sha256$6400$0Zrz!itFSGltTQnBWOsdAw$" + sum,
      "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAx$" + sum,  // salt with non-zero trailing bits
      "$pbkdf2-sha256$6400$" + salt + "$" + sum + "\n",
      "$pbkdf2-sha256$6400$" + salt + "$" + std::string(600, 'A'),
  };
  for (const std::string& text : bad) {
    INFO("hash: " << text);
    CHECK_FALSE(Pbkdf2Hash::parse(text));
    CHECK_FALSE(verify_password("password", text));
  }
  // The untouched original is fine, so the mutations above are what fail.
  CHECK(Pbkdf2Hash::parse("$pbkdf2-sha256$6400$" + salt + "$" + sum));
}

TEST_CASE("verify_password_decoy always answers false", "[password]") {
  CHECK_FALSE(iwsec::verify_password_decoy("password", 1000));
  CHECK_FALSE(iwsec::verify_password_decoy("", 1000));
  CHECK_FALSE(iwsec::verify_password_decoy(std::string("\0", 1), 1));
  CHECK_FALSE(iwsec::verify_password_decoy("anything"));
}
