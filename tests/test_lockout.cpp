// Brute-force defence (docs/lockout.md) and the absence of user enumeration:
// the LockoutTracker's arithmetic on its own, then the 429 answers of the
// routes over real HTTP. Time moves only by ManualClock; key derivations
// are counted with iwsec::detail::kdf_call_count(), never timed.

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/http_fixture.hpp"

using namespace iwsec_http;
using iwsec_test::basic;

namespace {

constexpr std::int64_t kT0 = 1700000000;
constexpr std::int64_t kHour = 3600;

// Headers minus the ones that may legitimately differ between two answers.
std::multimap<std::string, std::string> stable_headers(const httplib::Response& r) {
  std::multimap<std::string, std::string> out;
  for (const auto& h : r.headers)
    if (!iwsec::detail::iequals(h.first, "Date")) out.emplace(h.first, h.second);
  return out;
}

// The documented 429 (docs/lockout.md): envelope with IW10031 and Retry-After of exactly @p seconds.
void check_locked(const httplib::Response& r, std::int64_t seconds) {
  check_envelope(r, 429, "IW10031");
  REQUIRE(r.get_header_value_count("Retry-After") == 1);
  CHECK(r.get_header_value("Retry-After") == std::to_string(seconds));
}

// A client key read from a test header, so one test can play several clients.
std::string test_client(const httplib::Request& req) { return "test:" + req.get_header_value("X-Test-Client"); }

httplib::Headers from_client(const std::string& authorization, const std::string& client) {
  return httplib::Headers{{"Authorization", authorization}, {"X-Test-Client", client}};
}

// Key derivations spent by @p action.
std::uint64_t kdf_calls_of(const std::function<void()>& action) {
  const std::uint64_t before = iwsec::detail::kdf_call_count();
  action();
  return iwsec::detail::kdf_call_count() - before;
}

// One failed credential check: 0 when it was admitted (and counted as a
// failure), else the seconds the tracker asked to wait.
std::int64_t fail_once(iwsec::LockoutTracker& t, std::optional<std::string_view> account, std::string_view client,
                       std::int64_t now) {
  auto attempt = t.begin(account, client, now);
  if (!attempt) return attempt.wait();
  attempt.failed(now);
  return 0;
}

// One successful credential check, as fail_once.
std::int64_t succeed_once(iwsec::LockoutTracker& t, std::optional<std::string_view> account, std::string_view client,
                          std::int64_t now) {
  auto attempt = t.begin(account, client, now);
  if (!attempt) return attempt.wait();
  attempt.succeeded(now);
  return 0;
}

// A policy whose per-client throttle never interferes with an account test.
iwsec::LockoutPolicy accounts_only() {
  iwsec::LockoutPolicy p;
  p.client_key = [](const httplib::Request&) { return std::string(); };
  return p;
}

}  // namespace

// ===========================================================================
// LockoutTracker on its own
// ===========================================================================

TEST_CASE("tracker: the policy's defaults are Keycloak's", "[lockout][tracker]") {
  const iwsec::LockoutPolicy p;
  CHECK(p.enabled);
  CHECK(p.account_failures == 30);
  CHECK(p.account_wait_increment == std::chrono::seconds(60));
  CHECK(p.account_max_wait == std::chrono::seconds(900));
  CHECK(p.account_failure_reset == std::chrono::hours(12));
  CHECK(p.client_failures == 100);
  CHECK(p.client_window == std::chrono::minutes(15));
  CHECK(iwsec::Options().lockout.enabled);  // on by default
}

TEST_CASE("tracker: 29 failures leave an account open, the 30th locks it for 60 s", "[lockout][tracker]") {
  iwsec::LockoutTracker t;
  for (int i = 1; i <= 29; ++i) REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);
  CHECK(t.account_wait("victim@example.com", kT0) == 0);
  REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);  // the 30th is let through, and counted
  CHECK(t.account_wait("victim@example.com", kT0) == 60);
  CHECK(fail_once(t, "victim@example.com", "", kT0) == 60);
  CHECK(fail_once(t, "victim@example.com", "", kT0 + 59) == 1);
  CHECK(fail_once(t, "victim@example.com", "", kT0 + 60) == 0);  // open again: the 31st failure
  CHECK(t.account_wait("victim@example.com", kT0 + 60) == 60);    // ... locks for 60 s × ⌊31/30⌋
  CHECK(t.account_wait("other@example.com", kT0) == 0);
}

TEST_CASE("tracker: the lock grows by 60 s per 30 failures and stops at 900 s", "[lockout][tracker]") {
  iwsec::LockoutTracker t;
  std::int64_t now = kT0;
  std::map<int, std::int64_t> seen;  // failures -> lock length
  for (int n = 1; n <= 600; ++n) {
    if (const auto wait = t.account_wait("victim@example.com", now)) now += wait;
    REQUIRE(fail_once(t, "victim@example.com", "", now) == 0);
    const std::int64_t expected = n < 30 ? 0 : std::min<std::int64_t>(900, 60 * (n / 30));
    INFO("after " << n << " failures");
    REQUIRE(t.account_wait("victim@example.com", now) == expected);
    seen[n] = expected;
  }
  CHECK(seen[59] == 60);
  CHECK(seen[60] == 120);
  CHECK(seen[89] == 120);
  CHECK(seen[90] == 180);
  CHECK(seen[449] == 840);
  CHECK(seen[450] == 900);
  CHECK(seen[480] == 900);  // not 960
  CHECK(seen[600] == 900);
}

TEST_CASE("tracker: attempts refused while locked are not counted", "[lockout][tracker]") {
  iwsec::LockoutTracker t;
  for (int i = 0; i < 30; ++i) REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);
  for (int i = 0; i < 1000; ++i) REQUIRE(fail_once(t, "victim@example.com", "", kT0 + 30) == 30);
  // Had they counted, 1030 failures would lock for 900 s; the 31st locks for 60.
  REQUIRE(fail_once(t, "victim@example.com", "", kT0 + 60) == 0);
  CHECK(t.account_wait("victim@example.com", kT0 + 60) == 60);
}

TEST_CASE("tracker: 12 quiet hours reset the count, 12 h minus a second do not", "[lockout][tracker]") {
  iwsec::LockoutTracker t;
  SECTION("12 h - 1 s after the 29th failure the 30th still locks") {
    for (int i = 0; i < 29; ++i) REQUIRE(fail_once(t, "Victim@example.com", "", kT0) == 0);
    REQUIRE(fail_once(t, "victim@example.com", "", kT0 + 12 * kHour - 1) == 0);
    CHECK(t.account_wait("victim@example.com", kT0 + 12 * kHour - 1) == 60);
  }
  SECTION("12 h after the 29th failure the count starts again") {
    for (int i = 0; i < 29; ++i) REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);
    const std::int64_t later = kT0 + 12 * kHour;
    for (int i = 0; i < 29; ++i) REQUIRE(fail_once(t, "victim@example.com", "", later) == 0);
    CHECK(t.account_wait("victim@example.com", later) == 0);
    REQUIRE(fail_once(t, "victim@example.com", "", later) == 0);
    CHECK(t.account_wait("victim@example.com", later) == 60);
  }
  SECTION("a count of 300 (a 600 s lock) is forgotten 12 h after its last failure") {
    std::int64_t now = kT0;
    for (int n = 0; n < 300; ++n) {
      if (const auto wait = t.account_wait("victim@example.com", now)) now += wait;
      REQUIRE(fail_once(t, "victim@example.com", "", now) == 0);
    }
    CHECK(t.account_wait("victim@example.com", now) == 600);
    now += 12 * kHour;
    for (int i = 0; i < 29; ++i) REQUIRE(fail_once(t, "victim@example.com", "", now) == 0);
    CHECK(t.account_wait("victim@example.com", now) == 0);
  }
}

TEST_CASE("tracker: a success resets the account's count and lock", "[lockout][tracker]") {
  iwsec::LockoutTracker t;
  for (int i = 0; i < 29; ++i) REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);
  REQUIRE(succeed_once(t, "victim@example.com", "", kT0) == 0);  // the 30th attempt: the right password
  CHECK(t.account_wait("victim@example.com", kT0) == 0);
  for (int i = 0; i < 29; ++i) REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);
  CHECK(t.account_wait("victim@example.com", kT0) == 0);
  REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);
  CHECK(t.account_wait("victim@example.com", kT0) == 60);
  CHECK(succeed_once(t, "victim@example.com", "", kT0) == 60);  // locked: even a success is refused
  t.unlock_account("VICTIM@example.com");
  CHECK(t.account_wait("victim@example.com", kT0) == 0);
  CHECK(t.tracked_accounts() == 0);
}

TEST_CASE("tracker: an attempt dropped unfinished counts as nothing", "[lockout][tracker]") {
  iwsec::LockoutTracker t;
  REQUIRE(fail_once(t, "victim@example.com", "192.0.2.1", kT0) == 0);
  for (int i = 0; i < 100; ++i) {
    auto attempt = t.begin("victim@example.com", "192.0.2.1", kT0);
    REQUIRE(attempt);
  }  // as when a store throws mid-check
  for (int i = 0; i < 28; ++i) REQUIRE(fail_once(t, "victim@example.com", "192.0.2.1", kT0) == 0);
  CHECK(t.account_wait("victim@example.com", kT0) == 0);  // 29 failures, nothing in flight
  REQUIRE(fail_once(t, "victim@example.com", "192.0.2.1", kT0) == 0);
  CHECK(t.account_wait("victim@example.com", kT0) == 60);
}

TEST_CASE("tracker: accounts are emails lower-cased", "[lockout][tracker]") {
  iwsec::LockoutTracker t;
  const char* spellings[] = {"Victim@Example.com", "VICTIM@EXAMPLE.COM", "victim@example.com"};
  for (int i = 0; i < 30; ++i) REQUIRE(fail_once(t, spellings[i % 3], "", kT0) == 0);
  for (const char* s : spellings) CHECK(t.account_wait(s, kT0) == 60);
  CHECK(t.account_wait("victim@example.org", kT0) == 0);
}

TEST_CASE("tracker: 100 failures from one client within 15 minutes block it until the window ends",
          "[lockout][tracker][client]") {
  iwsec::LockoutTracker t;
  // Different accounts each time: only the client count can block.
  REQUIRE(fail_once(t, "a0@example.com", "192.0.2.1", kT0) == 0);  // opens the window
  for (int i = 1; i < 99; ++i) REQUIRE(fail_once(t, "a" + std::to_string(i) + "@example.com", "192.0.2.1", kT0 + 100) == 0);
  CHECK(t.client_wait("192.0.2.1", kT0 + 100) == 0);  // 99 failures
  REQUIRE(fail_once(t, "a99@example.com", "192.0.2.1", kT0 + 100) == 0);  // the 100th
  CHECK(t.client_wait("192.0.2.1", kT0 + 100) == 800);
  CHECK(fail_once(t, "fresh@example.com", "192.0.2.1", kT0 + 100) == 800);
  CHECK(fail_once(t, std::nullopt, "192.0.2.1", kT0 + 899) == 1);  // refresh-token exchanges too
  CHECK(t.client_wait("192.0.2.2", kT0 + 100) == 0);                // another client is not blocked
  CHECK(t.account_wait("fresh@example.com", kT0 + 100) == 0);       // nor is any account
  // The window has passed: a new one opens with this failure.
  REQUIRE(fail_once(t, "fresh@example.com", "192.0.2.1", kT0 + 900) == 0);
  for (int i = 0; i < 98; ++i) REQUIRE(fail_once(t, std::nullopt, "192.0.2.1", kT0 + 1000) == 0);
  CHECK(t.client_wait("192.0.2.1", kT0 + 1000) == 0);
  REQUIRE(fail_once(t, std::nullopt, "192.0.2.1", kT0 + 1000) == 0);
  CHECK(t.client_wait("192.0.2.1", kT0 + 1000) == 800);
}

TEST_CASE("tracker: a client's successes do not wipe its failures",
          "[lockout][tracker][client]") {
  iwsec::LockoutTracker t;
  for (int i = 0; i < 99; ++i) REQUIRE(fail_once(t, std::nullopt, "192.0.2.1", kT0) == 0);
  for (int i = 0; i < 50; ++i) REQUIRE(succeed_once(t, "mine@example.com", "192.0.2.1", kT0) == 0);
  CHECK(t.client_wait("192.0.2.1", kT0) == 0);
  REQUIRE(fail_once(t, std::nullopt, "192.0.2.1", kT0) == 0);  // the 100th failure
  CHECK(t.client_wait("192.0.2.1", kT0) == 900);
}

TEST_CASE("tracker: a disabled policy counts nothing and never refuses", "[lockout][tracker]") {
  iwsec::LockoutPolicy p;
  p.enabled = false;
  iwsec::LockoutTracker t(p);
  for (int i = 0; i < 1000; ++i) REQUIRE(fail_once(t, "victim@example.com", "192.0.2.1", kT0) == 0);
  CHECK(t.account_wait("victim@example.com", kT0) == 0);
  CHECK(t.client_wait("192.0.2.1", kT0) == 0);
  CHECK(t.tracked_accounts() == 0);
  CHECK(t.tracked_clients() == 0);
}

TEST_CASE("tracker: an empty client key is not throttled", "[lockout][tracker][client]") {
  iwsec::LockoutTracker t;
  for (int i = 0; i < 500; ++i) REQUIRE(fail_once(t, std::nullopt, "", kT0) == 0);
  CHECK(t.tracked_clients() == 0);
}

TEST_CASE("tracker: spraying random emails stays within the cap and never frees a lock or a real count",
          "[lockout][tracker][memory]") {
  iwsec::LockoutPolicy p;
  p.max_tracked_accounts = 64;
  iwsec::LockoutTracker t(p);
  for (int i = 0; i < 30; ++i) REQUIRE(fail_once(t, "locked@example.com", "", kT0) == 0);
  for (int i = 0; i < 29; ++i) REQUIRE(fail_once(t, "almost@example.com", "", kT0) == 0);
  std::size_t most = 0;
  for (int i = 0; i < 20000; ++i) {
    REQUIRE(fail_once(t, "spray" + std::to_string(i) + "@example.com", "", kT0 + 1) == 0);
    most = std::max(most, t.tracked_accounts());
  }
  CHECK(most <= 64);
  CHECK(t.account_wait("locked@example.com", kT0 + 1) == 59);
  REQUIRE(fail_once(t, "almost@example.com", "", kT0 + 1) == 0);  // its 30th failure: the count survived
  CHECK(t.account_wait("almost@example.com", kT0 + 1) == 60);
}

TEST_CASE("tracker: spraying client addresses stays within the cap and keeps a blocked client blocked",
          "[lockout][tracker][memory][client]") {
  iwsec::LockoutPolicy p;
  p.max_tracked_clients = 64;
  iwsec::LockoutTracker t(p);
  for (int i = 0; i < 100; ++i) REQUIRE(fail_once(t, std::nullopt, "198.51.100.7", kT0) == 0);
  std::size_t most = 0;
  for (int i = 0; i < 20000; ++i) {
    REQUIRE(fail_once(t, std::nullopt, "2001:db8::" + std::to_string(i), kT0 + 10) == 0);
    most = std::max(most, t.tracked_clients());
  }
  CHECK(most <= 64);
  CHECK(t.client_wait("198.51.100.7", kT0 + 10) == 890);
}

TEST_CASE("tracker: a full table drops expired entries first, and only when nothing else is left a lock "
          "that ends soonest",
          "[lockout][tracker][memory]") {
  iwsec::LockoutPolicy p;
  p.max_tracked_accounts = 16;
  iwsec::LockoutTracker t(p);
  SECTION("entries quiet for 12 h go first, all of them") {
    for (int i = 0; i < 16; ++i) REQUIRE(fail_once(t, "old" + std::to_string(i), "", kT0) == 0);
    CHECK(t.tracked_accounts() == 16);
    REQUIRE(fail_once(t, "new", "", kT0 + 12 * kHour) == 0);
    CHECK(t.tracked_accounts() == 1);
  }
  SECTION("a table of locked accounts gives up the locks that end first") {
    // Account i is locked at kT0 + i, so its lock ends at kT0 + i + 60.
    for (int i = 0; i < 16; ++i)
      for (int k = 0; k < 30; ++k) REQUIRE(fail_once(t, "locked" + std::to_string(i), "", kT0 + i) == 0);
    REQUIRE(fail_once(t, "newcomer", "", kT0 + 20) == 0);
    CHECK(t.tracked_accounts() <= 16);
    CHECK(t.account_wait("locked0", kT0 + 20) == 0);   // ended soonest: evicted
    CHECK(t.account_wait("locked1", kT0 + 20) == 0);   // an eighth of the table goes at once
    CHECK(t.account_wait("locked2", kT0 + 20) == 42);  // the rest keep their locks
    CHECK(t.account_wait("locked15", kT0 + 20) == 55);
  }
}

// Starts @p threads attempts at once and holds them all open before any
// finishes (as parallel requests whose password hashes overlap); returns
// how many were admitted. Each admitted attempt then fails.
int parallel_failures(iwsec::LockoutTracker& t, const std::optional<std::string>& account, const std::string& client,
                      int threads, std::int64_t now) {
  std::atomic<int> admitted{0}, started{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      auto attempt = t.begin(account ? std::optional<std::string_view>(*account) : std::nullopt, client, now);
      if (attempt) admitted.fetch_add(1);
      started.fetch_add(1);
      while (started.load() < threads) std::this_thread::yield();  // all begun before any ends
      if (attempt) attempt.failed(now);
    });
  }
  for (auto& th : pool) th.join();
  return admitted.load();
}

TEST_CASE("tracker: parallel attempts cannot slip past the threshold or a lock that just ended",
          "[lockout][tracker][concurrency]") {
  iwsec::LockoutTracker t;
  SECTION("accounts") {
    REQUIRE(fail_once(t, "victim@example.com", "", kT0) == 0);
    CHECK(parallel_failures(t, "victim@example.com", "", 64, kT0) == 29);  // 1 + 29 = the threshold
    CHECK(t.account_wait("victim@example.com", kT0) == 60);
    CHECK(parallel_failures(t, "victim@example.com", "", 64, kT0 + 60) == 1);  // one guess per lock, not 64
    CHECK(t.account_wait("victim@example.com", kT0 + 60) == 60);
  }
  SECTION("clients") {
    REQUIRE(fail_once(t, std::nullopt, "192.0.2.1", kT0) == 0);
    int admitted = 0;
    for (int round = 0; round < 4; ++round) admitted += parallel_failures(t, std::nullopt, "192.0.2.1", 64, kT0);
    CHECK(admitted == 99);
    CHECK(t.client_wait("192.0.2.1", kT0) == 900);
  }
  SECTION("the first burst, before any failure, is capped at the threshold too") {
    // 64 wrong guesses at once against a fresh account: only 30 may run, so
    // at most 30 failures are ever counted before the lock.
    CHECK(parallel_failures(t, "fresh@example.com", "", 64, kT0) == 30);
    CHECK(t.account_wait("fresh@example.com", kT0) == 60);
    CHECK(parallel_failures(t, std::nullopt, "192.0.2.7", 128, kT0) == 100);
    CHECK(t.client_wait("192.0.2.7", kT0) == 900);
  }
  SECTION("after 12 quiet hours the old failures are forgotten but running attempts still count") {
    REQUIRE(parallel_failures(t, "old@example.com", "", 10, kT0) == 10);
    CHECK(parallel_failures(t, "old@example.com", "", 64, kT0 + 12 * 3600) == 30);
  }
  SECTION("honest parallel logins: up to the threshold at once, the rest told to retry in 1 s, nothing counted") {
    std::atomic<int> admitted{0}, refused_one_second{0}, started{0};
    std::vector<std::thread> pool;
    for (int i = 0; i < 64; ++i) {
      pool.emplace_back([&] {
        auto attempt = t.begin("busy@example.com", "192.0.2.1", kT0);
        if (attempt) admitted.fetch_add(1);
        else if (attempt.wait() == 1) refused_one_second.fetch_add(1);
        started.fetch_add(1);
        while (started.load() < 64) std::this_thread::yield();
        if (attempt) attempt.succeeded(kT0);
      });
    }
    for (auto& th : pool) th.join();
    CHECK(admitted.load() == 30);
    CHECK(refused_one_second.load() == 34);
    CHECK(t.tracked_accounts() == 0);
    CHECK(t.tracked_clients() == 0);
    CHECK(t.account_wait("busy@example.com", kT0) == 0);
  }
}

// ===========================================================================
// Over HTTP: 429, Retry-After, no KDF while locked
// ===========================================================================

TEST_CASE("after 29 failures the right password works; after 30 it gets 429 with Retry-After, without hashing",
          "[lockout][http]") {
  Fixture f;
  f.options.lockout = accounts_only();
  const auto a = add_account(f.users, "victim@example.com", "right password");
  f.start();
  auto c = f.client();
  const auto wrong = auth(basic(a.email, "wrong password"));
  const auto right = auth(basic(a.email, a.password));

  for (int i = 0; i < 29; ++i) check_rejected(call(c, "GET", kAuthenticate, wrong));
  login(c, a);  // 29 failures: still open, and the success resets the count

  for (int i = 0; i < 30; ++i) check_rejected(call(c, "GET", kAuthenticate, wrong));  // the 30th is still a 406
  std::uint64_t kdf = kdf_calls_of([&] {
    const auto r = call(c, "GET", kAuthenticate, right);
    check_locked(r, 60);
    check_no_leak(r, a.password);
    check_locked(call(c, "GET", kAuthenticate, wrong), 60);
    check_locked(call(c, "DELETE", kRefresh, right), 60);  // rotating the refresh token needs a login too
  });
  CHECK(kdf == 0);

  f.clock.advance(59);
  check_locked(call(c, "GET", kAuthenticate, right), 1);
  f.clock.advance(1);
  kdf = kdf_calls_of([&] { login(c, a); });
  CHECK(kdf == 1);
  for (int i = 0; i < 29; ++i) check_rejected(call(c, "GET", kAuthenticate, wrong));
  login(c, a);  // the count started again after the success
}

TEST_CASE("over HTTP the lock grows by the increment per multiple of the threshold and stops at 900 s", "[lockout][http]") {
  Fixture f;
  f.options.lockout = accounts_only();
  f.options.lockout.account_failures = 3;  // the same arithmetic, fewer requests
  f.options.lockout.account_wait_increment = std::chrono::seconds(60);
  f.options.lockout.account_max_wait = std::chrono::seconds(900);
  const auto a = add_account(f.users, "victim@example.com", "right password");
  f.start();
  auto c = f.client();
  const auto wrong = auth(basic(a.email, "wrong"));
  for (int n = 1; n <= 51; ++n) {
    check_rejected(call(c, "GET", kAuthenticate, wrong));
    const std::int64_t expected = n < 3 ? 0 : std::min<std::int64_t>(900, 60 * (n / 3));
    INFO("after " << n << " failures");
    if (expected == 0) continue;
    const auto r = call(c, "GET", kAuthenticate, auth(basic(a.email, a.password)));
    check_locked(r, expected);
    f.clock.advance(expected);
  }
}

TEST_CASE("the failure count is forgotten after 12 quiet hours", "[lockout][http]") {
  Fixture f;
  f.options.lockout = accounts_only();
  const auto a = add_account(f.users, "victim@example.com", "right password");
  f.start();
  auto c = f.client();
  const auto wrong = auth(basic(a.email, "wrong"));
  for (int i = 0; i < 29; ++i) check_rejected(call(c, "GET", kAuthenticate, wrong));
  f.clock.advance(12 * kHour);
  for (int i = 0; i < 29; ++i) check_rejected(call(c, "GET", kAuthenticate, wrong));
  login(c, a);  // 29 failures since the reset, not 58
  for (int i = 0; i < 30; ++i) check_rejected(call(c, "GET", kAuthenticate, wrong));
  check_locked(call(c, "GET", kAuthenticate, auth(basic(a.email, a.password))), 60);
}

TEST_CASE("a 429 never reveals whether an account exists or is disabled", "[lockout][http][enumeration]") {
  Fixture f;
  f.options.lockout = accounts_only();
  const auto a = add_account(f.users, "known@example.com", "right password");
  const auto d = add_account(f.users, "disabled@example.com", "right password", true);
  f.start();
  auto c = f.client();
  std::map<std::string, std::vector<httplib::Response>> answers;
  for (const std::string& email : {a.email, d.email, std::string("unknown@example.com")}) {
    auto& list = answers[email];
    const std::uint64_t kdf = kdf_calls_of([&] {
      for (int i = 0; i < 31; ++i) list.push_back(call(c, "GET", kAuthenticate, auth(basic(email, "wrong"))));
    });
    CHECK(kdf == 30);  // one hash per counted attempt, none for the 429
    list.push_back(call(c, "GET", kAuthenticate, auth(basic(email, "right password"))));
  }
  const auto& reference = answers[a.email];
  for (const auto& entry : answers) {
    INFO(entry.first);
    REQUIRE(entry.second.size() == 32);
    for (std::size_t i = 0; i < entry.second.size(); ++i) {
      const auto& r = entry.second[i];
      if (i < 30) {
        check_rejected(r);
      } else {
        check_locked(r, 60);
      }
      CHECK(r.status == reference[i].status);
      CHECK(r.body == reference[i].body);
      CHECK(stable_headers(r) == stable_headers(reference[i]));
    }
  }
}

TEST_CASE("the account lock matches emails case-insensitively", "[lockout][http]") {
  Fixture f;
  f.options.lockout = accounts_only();
  const auto a = add_account(f.users, "Victim@Example.com", "right password");
  f.start();
  auto c = f.client();
  const char* spellings[] = {"victim@example.com", "VICTIM@EXAMPLE.COM", "Victim@Example.com", "vIcTiM@eXaMpLe.CoM"};
  for (int i = 0; i < 30; ++i) check_rejected(call(c, "GET", kAuthenticate, auth(basic(spellings[i % 4], "wrong"))));
  for (const char* s : spellings) check_locked(call(c, "GET", kAuthenticate, auth(basic(s, a.password))), 60);
  f.sec->lockout().unlock_account("victim@EXAMPLE.com");  // the host's administrator unlocks it
  login(c, a);
}

TEST_CASE("a client with 100 failures in 15 minutes gets 429 on every credential check until the window passed",
          "[lockout][http][client]") {
  Fixture f;
  f.options.lockout.client_key = test_client;  // the host's function naming the client
  const auto a = add_account(f.users, "real@example.com", "right password");
  f.start();
  auto c = f.client();
  // 100 failures from client "x", each on another (unknown) email, so no account locks.
  for (int i = 0; i < 100; ++i) {
    if (i == 50) f.clock.advance(300);
    const auto r = call(c, "GET", kAuthenticate, from_client(basic("guess" + std::to_string(i) + "@example.com", "pw"), "x"));
    check_rejected(r);
  }
  std::uint64_t kdf = kdf_calls_of([&] {
    check_locked(call(c, "GET", kAuthenticate, from_client(basic(a.email, a.password), "x")), 600);
    check_locked(call(c, "DELETE", kRefresh, from_client(basic(a.email, a.password), "x")), 600);
    check_locked(call(c, "GET", kAccess, from_client("Basic " + a.refresh_token, "x")), 600);
  });
  CHECK(kdf == 0);
  // Another client, and the account itself, are unaffected.
  CHECK(jwt_subject(token_of_success(call(c, "GET", kAuthenticate, from_client(basic(a.email, a.password), "y")),
                                     &a.user_id))
            .first == a.email);
  f.clock.advance(599);
  check_locked(call(c, "GET", kAccess, from_client("Basic " + a.refresh_token, "x")), 1);
  f.clock.advance(1);
  token_of_success(call(c, "GET", kAuthenticate, from_client(basic(a.email, a.password), "x")), &a.user_id);
}

TEST_CASE("failed refresh-token exchanges count per client; an account lock does not stop exchanges",
          "[lockout][http][access]") {
  Fixture f;
  f.options.lockout.client_key = test_client;
  const auto a = add_account(f.users, "real@example.com", "right password");
  const auto d = add_account(f.users, "disabled@example.com", "right password", true);
  f.start();
  auto c = f.client();
  for (int i = 0; i < 99; ++i) {
    const std::string token = i % 3 == 0 ? d.refresh_token : "not-a-token-" + std::to_string(i);
    check_rejected(call(c, "GET", kAccess, from_client("Basic " + token, "x")));
  }
  // Good exchanges in between do not wipe the count (nor add to it).
  for (int i = 0; i < 5; ++i) token_of_success(call(c, "GET", kAccess, from_client("Basic " + a.refresh_token, "x")), nullptr);
  check_rejected(call(c, "GET", kAccess, from_client("Basic still-wrong", "x")));  // the 100th failure
  check_locked(call(c, "GET", kAccess, from_client("Basic " + a.refresh_token, "x")), 900);
  check_locked(call(c, "GET", kAuthenticate, from_client(basic(a.email, a.password), "x")), 900);
  token_of_success(call(c, "GET", kAccess, from_client("Basic " + a.refresh_token, "y")), nullptr);

  // Lock the account by password from client "z": its refresh token still exchanges.
  for (int i = 0; i < 30; ++i) check_rejected(call(c, "GET", kAuthenticate, from_client(basic(a.email, "wrong"), "z")));
  check_locked(call(c, "GET", kAuthenticate, from_client(basic(a.email, a.password), "z")), 60);
  token_of_success(call(c, "GET", kAccess, from_client("Basic " + a.refresh_token, "z")), nullptr);
}

TEST_CASE("client_address_key: IPv4 as is, IPv6 by its /64, mapped IPv4 as IPv4", "[lockout][client]") {
  using iwsec::client_address_key;
  CHECK(client_address_key("192.0.2.1") == "192.0.2.1");
  CHECK(client_address_key("2001:db8:1:2:aaaa::1") == "ipv6/64:20010db800010002");
  CHECK(client_address_key("2001:db8:1:2:ffff:ffff:ffff:fffe") == client_address_key("2001:db8:1:2::7"));
  CHECK(client_address_key("2001:db8:1:3::7") != client_address_key("2001:db8:1:2::7"));
  CHECK(client_address_key("::ffff:192.0.2.9") == "192.0.2.9");
  CHECK(client_address_key("::1") == "ipv6/64:0000000000000000");
  CHECK(client_address_key("not:an address") == "not:an address");
  CHECK(client_address_key("") == "");
  CHECK(client_address_key(std::string(200, ':')) == std::string(200, ':'));
}

TEST_CASE("the default client key is the peer address", "[lockout][http][client]") {
  Fixture f;
  f.options.lockout.client_failures = 5;  // keep the request count small
  const auto a = add_account(f.users, "real@example.com", "right password");
  f.start();
  auto c = f.client();
  for (int i = 0; i < 5; ++i)
    check_rejected(call(c, "GET", kAuthenticate, auth(basic("nobody" + std::to_string(i) + "@example.com", "pw"))));
  check_locked(call(c, "GET", kAuthenticate, auth(basic(a.email, a.password))), 900);
  f.sec->lockout().unlock_client("127.0.0.1");
  login(c, a);
}

TEST_CASE("a disabled lockout policy never answers 429", "[lockout][http]") {
  Fixture f;
  f.options.lockout.enabled = false;
  const auto a = add_account(f.users, "victim@example.com", "right password");
  f.start();
  auto c = f.client();
  for (int i = 0; i < 150; ++i) check_rejected(call(c, "GET", kAuthenticate, auth(basic(a.email, "wrong"))));
  for (int i = 0; i < 110; ++i) check_rejected(call(c, "GET", kAccess, auth("Basic wrong-" + std::to_string(i))));
  login(c, a);
}

TEST_CASE("lockout options out of range are refused when mounting", "[lockout][host]") {
  iwsec::MemoryUserStore users;
  const iwsec::Signer signer{std::string_view(kSecret)};
  httplib::Server server;
  const auto refused = [&](const std::function<void(iwsec::LockoutPolicy&)>& change) {
    iwsec::Options o;
    change(o.lockout);
    CHECK_THROWS_AS(iwsec::mount_security_routes(server, users, signer, o), std::invalid_argument);
  };
  using std::chrono::seconds;
  refused([](iwsec::LockoutPolicy& p) { p.account_failures = 0; });
  refused([](iwsec::LockoutPolicy& p) { p.account_wait_increment = seconds(0); });
  refused([](iwsec::LockoutPolicy& p) { p.account_wait_increment = seconds(-60); });
  refused([](iwsec::LockoutPolicy& p) { p.account_max_wait = seconds(30); });  // below the increment
  refused([](iwsec::LockoutPolicy& p) { p.account_max_wait = seconds::max(); });
  refused([](iwsec::LockoutPolicy& p) { p.account_failure_reset = seconds(600); });  // below the longest lock
  refused([](iwsec::LockoutPolicy& p) { p.client_failures = 0; });
  refused([](iwsec::LockoutPolicy& p) { p.client_window = seconds(0); });
  refused([](iwsec::LockoutPolicy& p) { p.max_tracked_accounts = 0; });
  refused([](iwsec::LockoutPolicy& p) { p.max_tracked_clients = 15; });
  iwsec::Options off;
  off.lockout.enabled = false;
  off.lockout.account_failures = 0;  // a disabled policy's figures do not matter
  CHECK_NOTHROW(iwsec::mount_security_routes(server, users, signer, off));
}

// ===========================================================================
// No user enumeration: identical answers, identical number of key derivations
// ===========================================================================

TEST_CASE("wrong password, unknown email, disabled user and unusable stored hash: same bytes, one KDF each",
          "[enumeration][http]") {
  Fixture f;
  const auto a = add_account(f.users, "real@example.com", "right password");
  const auto d = add_account(f.users, "disabled@example.com", "right password", true);
  // A stored hash with fewer rounds than configured (passlib's 29 000 against
  // 600 000 in the field): its own rounds, then the missing ones, as a second
  // derivation; the same rounds in all (docs/api.md).
  iwsec::User cheap;
  cheap.user_id = iwsec::generate_user_id();
  cheap.email = "cheap@example.com";
  cheap.password_hash = iwsec::hash_password("right password", kRounds / 4);
  cheap.refresh_token_sha256 = iwsec::refresh_token_hash(iwsec::generate_refresh_token());
  REQUIRE(f.users.add_user(cheap) == iwsec::StoreStatus::ok);
  iwsec::User broken;
  broken.user_id = iwsec::generate_user_id();
  broken.email = "broken@example.com";
  broken.password_hash = "$pbkdf2-sha256$not-a-hash";
  broken.refresh_token_sha256 = iwsec::refresh_token_hash(iwsec::generate_refresh_token());
  REQUIRE(f.users.add_user(broken) == iwsec::StoreStatus::ok);
  f.start();
  auto c = f.client();

  for (const char* method : {"GET", "DELETE"}) {
    const std::string path = std::string(method) == "GET" ? kAuthenticate : kRefresh;
    INFO(method << " " << path);
    std::vector<std::pair<std::string, httplib::Response>> answers;
    for (const auto& [email, password] : std::vector<std::pair<std::string, std::string>>{
             {a.email, "wrong password"},
             {"unknown@example.com", "right password"},
             {"UNKNOWN@example.com", "wrong password"},
             {d.email, d.password},
             {d.email, "wrong password"},
             {broken.email, "right password"},
             {cheap.email, "wrong password"},
             {"", "right password"}}) {
      httplib::Response r;
      const std::uint64_t rounds_before = iwsec::detail::kdf_round_count();
      const std::uint64_t kdf = kdf_calls_of([&] { r = call(c, method, path, auth(basic(email, password))); });
      INFO(email << " / " << password);
      CHECK(kdf == (email == cheap.email ? 2u : 1u));
      CHECK(iwsec::detail::kdf_round_count() - rounds_before == kRounds);
      check_rejected(r);
      answers.emplace_back(email, r);
    }
    for (const auto& [email, r] : answers) {
      INFO(email);
      CHECK(r.status == answers.front().second.status);
      CHECK(r.body == answers.front().second.body);
      CHECK(stable_headers(r) == stable_headers(answers.front().second));
    }
    // And the right password costs the same one derivation.
    CHECK(kdf_calls_of([&] { CHECK(call(c, method, path, auth(basic(a.email, a.password))).status == 200); }) == 1);
  }
}

TEST_CASE("unknown, rotated and disabled users' refresh tokens: same bytes, no KDF", "[enumeration][http][access]") {
  Fixture f;
  auto a = add_account(f.users, "real@example.com", "right password");
  const auto d = add_account(f.users, "disabled@example.com", "right password", true);
  f.start();
  auto c = f.client();
  const std::string old_refresh = a.refresh_token;
  a.refresh_token = rotate_refresh(c, a);

  std::vector<httplib::Response> answers;
  for (const std::string& token : {std::string("never-issued"), old_refresh, d.refresh_token,
                                   iwsec::generate_refresh_token()}) {
    httplib::Response r;
    CHECK(kdf_calls_of([&] { r = call(c, "GET", kAccess, auth("Basic " + token)); }) == 0);
    check_rejected(r);
    check_no_leak(r, token);
    answers.push_back(r);
  }
  for (const auto& r : answers) {
    CHECK(r.body == answers.front().body);
    CHECK(stable_headers(r) == stable_headers(answers.front()));
  }
  // The 406 of token/access is the 406 of a wrong password.
  const auto wrong = call(c, "GET", kAuthenticate, auth(basic(a.email, "wrong")));
  CHECK(wrong.body == answers.front().body);
  CHECK(stable_headers(wrong) == stable_headers(answers.front()));
}
