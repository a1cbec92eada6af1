// The routes remember tokens that verified (by their exact bytes), so a
// client presenting the same token again skips the signature check. These
// tests present the same token again after everything that must change the
// answer: revocation, a disabled user, a rotation, expiry, the clock going
// back, a byte changed, and more tokens than the cache holds.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "support/http_fixture.hpp"

using namespace iwsec_http;

namespace {

std::string mint(const Fixture& f, const std::string& email, std::int64_t lifetime = 900, std::int64_t generation = 0) {
  iwsec::AccessClaims claims;
  claims.email = email;
  claims.issued_at = f.clock.now();
  claims.expires_at = claims.issued_at + lifetime;
  claims.refresh_generation = generation;
  if (const auto holder = const_cast<Fixture&>(f).users.find_by_email(email)) claims.user_id = holder->user_id;
  return f.signer.sign(claims);
}

}  // namespace

TEST_CASE("token cache: a revoked token stops validating, through the cache", "[token_cache]") {
  Fixture f;
  add_account(f.users, "a@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string token = mint(f, "a@example.com");
  CHECK(is_valid(c, token));
  CHECK(is_valid(c, token));
  CHECK(f.sec->verify_request([&] {
    httplib::Request r;
    r.headers.emplace("Authorization", "Bearer " + token);
    return r;
  }()));
  REQUIRE(call(c, "DELETE", kAccess, bearer(token)).status == 200);
  CHECK_FALSE(is_valid(c, token));
  CHECK_FALSE(is_valid(c, token));
}

TEST_CASE("token cache: user status and generation are read on every check", "[token_cache]") {
  Fixture f;
  add_account(f.users, "a@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string token = mint(f, "a@example.com");
  REQUIRE(is_valid(c, token));
  REQUIRE(f.users.update_user("a@example.com", [](iwsec::User& u) { u.disabled = true; }) == iwsec::StoreStatus::ok);
  CHECK_FALSE(is_valid(c, token));
  REQUIRE(f.users.update_user("a@example.com", [](iwsec::User& u) { u.disabled = false; }) == iwsec::StoreStatus::ok);
  CHECK(is_valid(c, token));
  REQUIRE(iwsec::rotate_refresh_token(f.users, "a@example.com").status == iwsec::StoreStatus::ok);
  CHECK_FALSE(is_valid(c, token));
  CHECK(is_valid(c, mint(f, "a@example.com", 900, 1)));
}

TEST_CASE("token cache: expiry is checked against the clock on every hit", "[token_cache]") {
  Fixture f;
  add_account(f.users, "a@example.com", "pw");
  SECTION("no leeway") {
    f.start();
    auto c = f.client();
    const std::string token = mint(f, "a@example.com", 60);
    REQUIRE(is_valid(c, token));
    f.clock.advance(59);
    CHECK(is_valid(c, token));
    f.clock.advance(1);  // now == exp
    CHECK_FALSE(is_valid(c, token));
    CHECK_FALSE(is_valid(c, token));
  }
  SECTION("with leeway") {
    f.options.leeway = std::chrono::seconds(30);
    f.start();
    auto c = f.client();
    const std::string token = mint(f, "a@example.com", 60);
    REQUIRE(is_valid(c, token));
    f.clock.advance(89);
    CHECK(is_valid(c, token));
    f.clock.advance(1);  // now == exp + leeway
    CHECK_FALSE(is_valid(c, token));
  }
}

TEST_CASE("token cache: after the clock goes back, a token issued in the future is not valid", "[token_cache]") {
  Fixture f;
  add_account(f.users, "a@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string token = mint(f, "a@example.com");
  REQUIRE(is_valid(c, token));
  f.clock.advance(-1);  // iat is now one second ahead: not yet valid (leeway 0)
  CHECK_FALSE(is_valid(c, token));
  f.clock.advance(1);
  CHECK(is_valid(c, token));
}

TEST_CASE("token cache: only the exact bytes of a verified token hit", "[token_cache]") {
  Fixture f;
  add_account(f.users, "a@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string token = mint(f, "a@example.com");
  REQUIRE(is_valid(c, token));
  for (std::size_t i : {std::size_t{0}, token.size() / 2, token.size() - 2, token.size() - 1}) {
    std::string forged = token;
    forged[i] = forged[i] == 'A' ? 'B' : 'A';
    INFO("byte " << i);
    CHECK_FALSE(is_valid(c, forged));
  }
  CHECK_FALSE(is_valid(c, token + "A"));
  CHECK_FALSE(is_valid(c, token.substr(0, token.size() - 1)));
  CHECK(is_valid(c, token));
}

TEST_CASE("token cache: more tokens than slots all validate, and revocation reaches each", "[token_cache]") {
  Fixture f;
  add_account(f.users, "a@example.com", "pw");
  f.start();
  auto c = f.client();
  std::vector<std::string> tokens;
  for (int i = 0; i < 2500; ++i) tokens.push_back(mint(f, "a@example.com"));
  int valid = 0;
  for (const auto& t : tokens) valid += is_valid(c, t);
  CHECK(valid == 2500);
  for (std::size_t i = 0; i < tokens.size(); i += 100) REQUIRE(call(c, "DELETE", kAccess, bearer(tokens[i])).status == 200);
  int still = 0, revoked_but_valid = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const bool v = is_valid(c, tokens[i]);
    if (i % 100 == 0) {
      revoked_but_valid += v;
    } else {
      still += v;
    }
  }
  CHECK(revoked_but_valid == 0);
  CHECK(still == 2500 - 25);
}
