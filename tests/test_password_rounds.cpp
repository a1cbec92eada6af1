// docs/api.md: every password check costs at least the configured
// rounds, also for a stored hash with fewer (passlib's default of 29 000, an
// import), so that timing does not tell existing accounts from unknown emails;
// and a successful login hashes again a stored hash whose rounds differ from
// the configured ones, without ending any session, so stored hashes converge.
// Work is counted in PBKDF2 rounds (iwsec::detail::kdf_round_count()), never
// timed; bench/password_rounds.cpp prints the times.

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace iwsec_http;
using iwsec_test::basic;

namespace {

constexpr std::uint32_t kConfigured = 20000;  // stands for 600 000, at a test's cost
constexpr std::uint32_t kPasslibDefault = 1000;  // a cheaper stored hash (29 000 in the field)

struct Work {
  std::uint64_t rounds = 0;
  std::uint64_t derivations = 0;
};

Work work_of(const std::function<void()>& action) {
  const std::uint64_t rounds = iwsec::detail::kdf_round_count();
  const std::uint64_t calls = iwsec::detail::kdf_call_count();
  action();
  return Work{iwsec::detail::kdf_round_count() - rounds, iwsec::detail::kdf_call_count() - calls};
}

Account add_with_rounds(iwsec::UserStore& users, const std::string& email, const std::string& password,
                        std::uint32_t rounds) {
  Account a;
  a.email = email;
  a.password = password;
  a.user_id = iwsec::generate_user_id();
  a.refresh_token = iwsec::generate_refresh_token();
  iwsec::User u;
  u.user_id = a.user_id;
  u.email = email;
  u.password_hash = iwsec::hash_password(password, rounds);
  u.refresh_token_sha256 = iwsec::refresh_token_hash(a.refresh_token);
  REQUIRE(users.add_user(u) == iwsec::StoreStatus::ok);
  return a;
}

std::uint32_t stored_rounds(iwsec::UserStore& users, const std::string& email) {
  const auto u = users.find_by_email(email);
  REQUIRE(u);
  const auto h = iwsec::Pbkdf2Hash::parse(u->password_hash);
  REQUIRE(h);
  return h->rounds;
}

}  // namespace

TEST_CASE("password rounds: a cheaper stored hash's wrong password costs what an unknown email costs",
          "[passwords][rounds][enumeration]") {
  Fixture f;
  f.options.password_rounds = kConfigured;
  const auto cheap = add_with_rounds(f.users, "cheap@example.com", "right password", kPasslibDefault);
  const auto current = add_with_rounds(f.users, "current@example.com", "right password", kConfigured);
  const auto dearer = add_with_rounds(f.users, "dearer@example.com", "right password", kConfigured + 5000);
  f.start();
  auto c = f.client();
  for (const char* method : {"GET", "DELETE"}) {
    const std::string path = std::string(method) == "GET" ? kAuthenticate : kRefresh;
    for (const std::string& spelling : {path, path + "/"}) {
      INFO(method << " " << spelling);
      const auto wrong = [&](const std::string& email) {
        httplib::Response r;
        const Work w = work_of([&] { r = call(c, method, spelling, auth(basic(email, "wrong password"))); });
        check_rejected(r);
        return w;
      };
      const Work unknown = wrong("nobody@example.com");
      CHECK(unknown.rounds == kConfigured);
      CHECK(unknown.derivations == 1);
      const Work cheaper = wrong(cheap.email);
      CHECK(cheaper.rounds == kConfigured);  // 1 000 of its own, 19 000 more as well
      CHECK(cheaper.derivations == 2);
      CHECK(wrong(current.email).rounds == kConfigured);
      CHECK(wrong(current.email).derivations == 1);
      CHECK(wrong(dearer.email).rounds == kConfigured + 5000);  // never less than configured
      CHECK(stored_rounds(f.users, cheap.email) == kPasslibDefault);  // no rehash on a failure
    }
  }
}

TEST_CASE("password rounds: a successful login hashes again with the configured rounds and keeps the sessions",
          "[passwords][rounds][rehash]") {
  Fixture f;
  f.options.password_rounds = kConfigured;
  auto cheap = add_with_rounds(f.users, "cheap@example.com", "right password", kPasslibDefault);
  const auto dearer = add_with_rounds(f.users, "dearer@example.com", "right password", kConfigured + 5000);
  f.start();
  auto c = f.client();
  // A token from before the login, by refresh token.
  const std::string before = exchange_refresh(c, cheap.refresh_token);
  const std::int64_t generation = f.users.find_by_email(cheap.email)->refresh_generation;

  std::string token;
  const Work first = work_of([&] { token = login(c, cheap); });
  // Its own check (at least the configured rounds) and the new hash.
  CHECK(first.rounds == 2ull * kConfigured);
  CHECK(stored_rounds(f.users, cheap.email) == kConfigured);
  const auto after = f.users.find_by_email(cheap.email);
  CHECK(after->refresh_generation == generation);
  CHECK(after->refresh_token_sha256 == iwsec::refresh_token_hash(cheap.refresh_token));
  CHECK(iwsec::verify_password(cheap.password, after->password_hash));
  // Every session stays: the earlier access token, the refresh token.
  CHECK(is_valid(c, before));
  CHECK(is_valid(c, token));
  exchange_refresh(c, cheap.refresh_token);
  // Converged: the next login costs one derivation of the configured rounds.
  const Work next = work_of([&] { login(c, cheap); });
  CHECK(next.rounds == kConfigured);
  CHECK(next.derivations == 1);
  // A dearer hash converges down as well.
  login(c, dearer);
  CHECK(stored_rounds(f.users, dearer.email) == kConfigured);
  // So does one via token/refresh (rotation ends sessions as it always did).
  auto other = add_with_rounds(f.users, "other@example.com", "pw other", kPasslibDefault);
  rotate_refresh(c, other);
  CHECK(stored_rounds(f.users, other.email) == kConfigured);
}

TEST_CASE("password rounds: a disabled user's right password is no login and no rehash", "[passwords][rounds]") {
  Fixture f;
  f.options.password_rounds = kConfigured;
  const auto cheap = add_with_rounds(f.users, "cheap@example.com", "right password", kPasslibDefault);
  REQUIRE(iwsec::set_user_disabled(f.users, cheap.email, true) == iwsec::StoreStatus::ok);
  f.start();
  auto c = f.client();
  httplib::Response r;
  CHECK(work_of([&] { r = call(c, "GET", kAuthenticate, auth(basic(cheap.email, cheap.password))); }).rounds ==
        kConfigured);
  check_rejected(r);
  CHECK(stored_rounds(f.users, cheap.email) == kPasslibDefault);
}

TEST_CASE("password rounds: all the work is inside the hashing gate", "[passwords][rounds][hashing]") {
  Fixture f;
  f.options.password_rounds = kConfigured;
  f.options.max_concurrent_hashes = 1;
  f.options.max_queued_hashes = 0;
  const auto cheap = add_with_rounds(f.users, "cheap@example.com", "right password", kPasslibDefault);
  f.start();
  auto c = f.client();
  {
    auto held = f.sec->hashing_gate().enter();  // every turn taken, no queue
    REQUIRE(held);
    for (const std::string& password : {std::string("wrong password"), cheap.password}) {
      httplib::Response r;
      CHECK(work_of([&] { r = call(c, "GET", kAuthenticate, auth(basic(cheap.email, password))); }).rounds == 0);
      CHECK(r.status == 503);
    }
  }
  CHECK(stored_rounds(f.users, cheap.email) == kPasslibDefault);
  login(c, cheap);
  CHECK(stored_rounds(f.users, cheap.email) == kConfigured);
}

TEST_CASE("password rounds: the new hash is written to the users file, sessions kept", "[passwords][rounds][file]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("users.json");
  Account cheap;
  {
    iwsec::JsonFileUserStore users(path);
    cheap = add_with_rounds(users, "cheap@example.com", "right password", kPasslibDefault);
    iwsec_test::ManualClock clock;
    iwsec::Options options = test_options(clock);
    options.password_rounds = kConfigured;
    iwsec::Signer signer{std::string_view(kSecret)};
    httplib::Server server;
    auto sec = iwsec::mount_security_routes(server, users, signer, options);
    iwsec_test::RunningServer running(server);
    auto c = running.client();
    login(c, cheap);
  }
  iwsec::JsonFileUserStore reopened(path);
  CHECK(stored_rounds(reopened, cheap.email) == kConfigured);
  const auto u = reopened.find_by_email(cheap.email);
  CHECK(u->refresh_generation == 0);
  CHECK(reopened.find_by_refresh_token_hash(iwsec::refresh_token_hash(cheap.refresh_token)));
}

TEST_CASE("upgrade_password_hash: only over the hash it replaces, sessions kept", "[passwords][rounds][store]") {
  iwsec::MemoryUserStore users;
  const auto a = add_with_rounds(users, "a@example.com", "pw a", kPasslibDefault);
  const std::string old_hash = users.find_by_email(a.email)->password_hash;
  const std::string new_hash = iwsec::hash_password("pw a", kConfigured);
  // A password changed meanwhile wins.
  REQUIRE(iwsec::set_password(users, a.email, "pw b", kPasslibDefault, true).status == iwsec::StoreStatus::ok);
  CHECK(iwsec::upgrade_password_hash(users, a.email, a.user_id, old_hash, new_hash) == iwsec::StoreStatus::not_found);
  CHECK(iwsec::verify_password("pw b", users.find_by_email(a.email)->password_hash));
  const std::string current = users.find_by_email(a.email)->password_hash;
  CHECK(iwsec::upgrade_password_hash(users, a.email, "another-id", current, new_hash) ==
        iwsec::StoreStatus::not_found);
  CHECK(iwsec::upgrade_password_hash(users, "nobody@example.com", a.user_id, current, new_hash) ==
        iwsec::StoreStatus::not_found);
  CHECK(iwsec::upgrade_password_hash(users, a.email, a.user_id, current, new_hash) == iwsec::StoreStatus::ok);
  const auto u = users.find_by_email(a.email);
  CHECK(u->password_hash == new_hash);
  CHECK(u->refresh_generation == 0);
  CHECK(u->refresh_token_sha256 == iwsec::refresh_token_hash(a.refresh_token));
  CHECK(iwsec::password_needs_rehash(new_hash, kConfigured) == false);
  CHECK(iwsec::password_needs_rehash(old_hash, kConfigured));
  CHECK(iwsec::password_needs_rehash("not a hash", kConfigured));
}
