// Signing keys replaced while the routes run (Signer::replace_keys): new
// tokens are signed with the new key at once, tokens of keys still held keep
// verifying, and a token of a key left out stops validating at once, also
// when the routes' verified-token cache holds it. The Options::refresh_keys
// hook runs before every route, and a refresh that throws StateUnavailable
// is a 503.

#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "support/http_fixture.hpp"

using namespace iwsec_http;

namespace {

const std::string key_a(32, 'a');
const std::string key_b(32, 'b');
const std::string key_c(32, 'c');

std::string mint(const iwsec::Signer& signer, std::int64_t now, const std::string& email,
                 const std::string& user_id = "") {
  iwsec::AccessClaims claims;
  claims.email = email;
  claims.user_id = user_id;
  claims.issued_at = now;
  claims.expires_at = now + 900;
  return signer.sign(claims);
}

}  // namespace

TEST_CASE("key rotation: a retired key's cached tokens stop validating at once", "[key_rotation][token_cache]") {
  Fixture f;
  const Account a = add_account(f.users, "a@example.com", "pw");
  f.signer.replace_keys({{"ka", key_a}});
  f.start();
  auto c = f.client();
  const std::string old_token = login(c, a);
  REQUIRE(is_valid(c, old_token));
  REQUIRE(is_valid(c, old_token));  // now answered from the cache

  // Add a key: it signs from now on, the old key's token still verifies.
  const auto v1 = f.signer.key_version();
  f.signer.replace_keys({{"ka", key_a}, {"kb", key_b}});
  CHECK(f.signer.key_version() != v1);
  CHECK(f.signer.signing_key_id() == "kb");
  const std::string new_token = login(c, a);
  CHECK(f.signer.verify(new_token, f.clock.now()).token().key_id() == "kb");
  CHECK(is_valid(c, old_token));
  CHECK(is_valid(c, new_token));
  CHECK(is_valid(c, new_token));

  // Retire the old key: its token is refused at once, though it was cached.
  f.signer.replace_keys({{"kb", key_b}});
  CHECK_FALSE(is_valid(c, old_token));
  CHECK_FALSE(is_valid(c, old_token));
  CHECK(is_valid(c, new_token));
  CHECK_FALSE(f.sec->verify_request([&] {
    httplib::Request r;
    r.headers.emplace("Authorization", "Bearer " + old_token);
    return r;
  }()));

  // Putting the same key back makes its tokens verify again (a new version).
  f.signer.replace_keys({{"ka", key_a}, {"kb", key_b}});
  CHECK(is_valid(c, old_token));
}

TEST_CASE("key rotation: the guard refuses a retired key's token it had cached", "[key_rotation][guard]") {
  Fixture f;
  const Account a = add_account(f.users, "a@example.com", "pw");
  f.signer.replace_keys({{"ka", key_a}});
  f.start();
  f.server.Get("/v3/domains", f.sec->guard([](const httplib::Request&, httplib::Response& res,
                                                 const iwsec::VerifiedToken&) { res.set_content("ok", "text/plain"); }));
  auto c = f.client();
  const std::string token = mint(f.signer, f.clock.now(), a.email, a.user_id);
  REQUIRE(call(c, "GET", "/v3/domains", bearer(token)).status == 200);
  REQUIRE(call(c, "GET", "/v3/domains", bearer(token)).status == 200);
  f.signer.replace_keys({{"kb", key_b}});
  CHECK(call(c, "GET", "/v3/domains", bearer(token)).status == 401);
}

TEST_CASE("key rotation: a bad key set leaves the signer as it was", "[key_rotation]") {
  iwsec::Signer signer(key_a);
  const auto version = signer.key_version();
  const std::string token = mint(signer, 1000, "a@example.com");
  CHECK_THROWS_AS(signer.replace_keys({}), iwsec::key_error);
  CHECK_THROWS_AS(signer.replace_keys({{"x", std::string(31, 'x')}}), iwsec::key_error);
  CHECK_THROWS_AS(signer.replace_keys({{"x", key_b}, {"x", key_c}}), iwsec::key_error);
  CHECK(signer.key_version() == version);
  CHECK(signer.verify(token, 1000));
}

TEST_CASE("key rotation: copies are replaced independently", "[key_rotation]") {
  iwsec::Signer a(key_a);
  const iwsec::Signer b(a);
  CHECK(b.key_version() == a.key_version());
  const std::string token = mint(a, 1000, "a@example.com");
  a.replace_keys({{"kb", key_b}});
  CHECK_FALSE(a.verify(token, 1000));
  CHECK(b.verify(token, 1000));
  CHECK(a.key_version() != b.key_version());
}

TEST_CASE("key rotation: verifying threads see a replacement at once", "[key_rotation][concurrency]") {
  iwsec::Signer signer(std::vector<iwsec::SigningKey>{{"ka", key_a}});
  const std::string old_token = mint(signer, 1000, "a@example.com");
  std::atomic<bool> retired{false}, stop{false};
  std::atomic<int> late_accepts{0}, checks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (!stop) {
        const bool was_retired = retired.load();  // read before the check starts
        const bool ok = signer.verify(old_token, 1000).ok();
        if (was_retired && ok) ++late_accepts;
        ++checks;
      }
    });
  }
  while (checks < 2000) std::this_thread::yield();
  signer.replace_keys({{"kb", key_b}});
  retired = true;
  const int at_retire = checks;
  while (checks < at_retire + 2000) std::this_thread::yield();
  stop = true;
  for (auto& t : threads) t.join();
  CHECK(late_accepts == 0);
  CHECK(signer.verify(mint(signer, 1000, "a@example.com"), 1000));
}

TEST_CASE("key rotation: Options::refresh_keys runs before each route; StateUnavailable is a 503",
          "[key_rotation]") {
  Fixture f;
  const Account a = add_account(f.users, "a@example.com", "pw");
  std::atomic<int> calls{0};
  std::atomic<bool> broken{false};
  f.options.refresh_keys = [&] {
    ++calls;
    if (broken) throw iwsec::StateUnavailable("keys unreadable", 3);
  };
  f.start();
  auto c = f.client();
  const std::string token = mint(f.signer, f.clock.now(), a.email, a.user_id);
  CHECK(is_valid(c, token));
  CHECK(calls == 1);
  broken = true;
  const auto r = call(c, "GET", kValidate, bearer(token));
  CHECK(r.status == 503);
  CHECK(r.get_header_value("Retry-After") == "3");
}
