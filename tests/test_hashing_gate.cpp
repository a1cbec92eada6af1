// HashingGate and the routes' use of it (docs/edge.md, login
// storms): at most N password checks at once, a bounded queue, 503 with
// Retry-After when it is full, and the lockout counts exactly the checks
// that ran (none lost, none doubled).

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "support/http_fixture.hpp"

using namespace iwsec_http;
using iwsec_test::basic;

namespace {

// Polls @p condition for up to 10 s.
template <typename F>
bool eventually(F condition) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("HashingGate admits N at once, queues M in order, refuses the rest", "[hashing]") {
  iwsec::HashingGate gate(1, 2);
  auto first = gate.enter();
  REQUIRE(first);
  std::atomic<int> admitted{0};
  std::vector<int> order;
  std::mutex order_mutex;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      auto t = gate.enter();
      if (t) {
        std::lock_guard<std::mutex> lock(order_mutex);
        order.push_back(i);
        ++admitted;
      }
    });
    REQUIRE(eventually([&] { return gate.waiting() == static_cast<std::size_t>(i + 1); }));
  }
  CHECK(!gate.enter());  // queue full: refused at once
  CHECK(gate.running() == 1);
  first = iwsec::HashingGate::Ticket(std::move(first));  // moving keeps the turn
  CHECK(gate.running() == 1);
  { auto released = std::move(first); }
  for (auto& t : waiters) t.join();
  CHECK(admitted == 2);
  CHECK(order == std::vector<int>{0, 1});
  CHECK(gate.running() == 0);
  CHECK(gate.waiting() == 0);
  CHECK(iwsec::HashingGate(0, 1).concurrency() >= 1);
}

TEST_CASE("a full hashing queue answers 503 with Retry-After and the lockout counts nothing", "[hashing][lockout]") {
  Fixture f;
  f.options.max_concurrent_hashes = 1;
  f.options.max_queued_hashes = 0;
  f.options.lockout.account_failures = 5;
  const Account alice = add_account(f.users, "alice@example.com", "right password");
  f.start();
  auto c = f.client();
  {
    auto held = f.sec->hashing_gate().enter();  // every turn taken
    REQUIRE(held);
    for (int i = 0; i < 10; ++i) {
      const auto r = call(c, "GET", kAuthenticate, auth(basic(alice.email, "wrong")));
      check_envelope(r, 503, "IW10002");
      CHECK(r.get_header_value("Retry-After") == "1");
      const auto rotate = call(c, "DELETE", kRefresh, auth(basic(alice.email, "wrong")));
      check_envelope(rotate, 503, "IW10002");
    }
    CHECK(f.sec->lockout().account_wait(alice.email, f.clock.now()) == 0);
  }
  // The 20 refusals counted nothing: exactly 5 failures lock the account.
  for (int i = 0; i < 4; ++i) check_envelope(call(c, "GET", kAuthenticate, auth(basic(alice.email, "wrong"))), 406, "IW10031");
  CHECK(f.sec->lockout().account_wait(alice.email, f.clock.now()) == 0);
  check_envelope(call(c, "GET", kAuthenticate, auth(basic(alice.email, "wrong"))), 406, "IW10031");
  CHECK(f.sec->lockout().account_wait(alice.email, f.clock.now()) > 0);
  check_envelope(call(c, "GET", kAuthenticate, auth(basic(alice.email, "right password"))), 429, "IW10031");
}

TEST_CASE("in a login storm every check that ran is counted once, whatever the gate refused", "[hashing][lockout]") {
  Fixture f;
  f.options.max_concurrent_hashes = 1;
  f.options.max_queued_hashes = 2;
  f.options.password_rounds = 20000;  // long enough for the storm to overlap
  f.options.lockout.account_failures = 1000;
  f.options.lockout.client_failures = 100000;
  const Account alice = add_account(f.users, "alice@example.com", "right password");
  f.start();
  std::atomic<int> rejected{0}, unavailable{0}, other{0};
  std::vector<std::thread> storm;
  for (int t = 0; t < 8; ++t) {
    storm.emplace_back([&] {
      auto c = f.client();
      for (int i = 0; i < 6; ++i) {
        httplib::Request req;
        req.method = "GET";
        req.path = kAuthenticate;
        req.headers = auth(basic("nobody@example.com", "wrong"));
        const auto r = c.send(req);
        if (r && r->status == 406) {
          ++rejected;
        } else if (r && r->status == 503 && r->get_header_value("Retry-After") == "1") {
          ++unavailable;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : storm) t.join();
  CHECK(other == 0);
  CHECK(rejected + unavailable == 48);
  CHECK(rejected >= 1);
  INFO("406: " << rejected << ", 503: " << unavailable);
  // Exactly `rejected` failures were counted: 1000 - rejected more lock the
  // account, one fewer does not.
  auto& lockout = f.sec->lockout();
  const int left = 1000 - rejected.load();
  for (int i = 0; i < left - 1; ++i) {
    auto a = lockout.begin(std::string_view("nobody@example.com"), "", f.clock.now());
    REQUIRE(a);
    a.failed(f.clock.now());
  }
  CHECK(lockout.account_wait("nobody@example.com", f.clock.now()) == 0);
  auto last = lockout.begin(std::string_view("nobody@example.com"), "", f.clock.now());
  REQUIRE(last);
  last.failed(f.clock.now());
  CHECK(lockout.account_wait("nobody@example.com", f.clock.now()) > 0);
}
