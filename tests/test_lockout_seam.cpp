// The lockout seam: Options::lockout_state replaces the in-process
// LockoutTracker with any iwsec::Lockout (the cluster backend counts in its
// database). The routes ask it before every credential check, report the
// verdict to it, answer its refusals with 429 + Retry-After, and its
// StateUnavailable with 503; SecurityRoutes::lockout() is that object.

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "support/http_fixture.hpp"

using namespace iwsec_http;

namespace {

/// A Lockout that counts what the routes tell it and refuses on demand.
class CountingLockout : public iwsec::Lockout {
 public:
  std::atomic<int> begun{0}, failures{0}, successes{0}, unlocked{0};
  std::atomic<std::int64_t> refuse_for{0};
  std::atomic<bool> unavailable{false};

  const iwsec::LockoutPolicy& policy() const override { return policy_; }
  Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t) override {
    if (unavailable) throw iwsec::StateUnavailable("lockout counts unreachable", 4);
    ++begun;
    if (refuse_for > 0) return refused(refuse_for);
    return admitted(account ? std::optional<Key>(account_key(*account)) : std::nullopt,
                    client.empty() ? std::nullopt : std::optional<Key>(client_key(client)));
  }
  std::int64_t account_wait(std::string_view, std::int64_t) override { return refuse_for; }
  std::int64_t client_wait(std::string_view, std::int64_t) override { return refuse_for; }
  void unlock_account(std::string_view) override { ++unlocked; }
  void unlock_client(std::string_view) override { ++unlocked; }

 protected:
  iwsec::LockTransition finish(const std::optional<Key>&, const std::optional<Key>&, std::int64_t,
                               bool success) override {
    ++(success ? successes : failures);
    return iwsec::LockTransition();
  }
  void abandon(const std::optional<Key>&, const std::optional<Key>&) noexcept override {}

 private:
  iwsec::LockoutPolicy policy_;
};

}  // namespace

TEST_CASE("Options::lockout_state carries the lockout counts the routes use", "[lockout][seam]") {
  Fixture f;
  auto counts = std::make_shared<CountingLockout>();
  f.options.lockout_state = counts;
  f.start();
  auto c = f.client();
  const Account a = add_account(f.users, "seam@example.com", "right");

  CHECK(call(c, "GET", kAuthenticate, auth(iwsec_test::basic(a.email, "wrong"))).status == 406);
  CHECK(call(c, "GET", kAuthenticate, auth(iwsec_test::basic(a.email, "right"))).status == 200);
  CHECK(call(c, "GET", kAccess, auth("Basic " + a.refresh_token)).status == 200);
  CHECK(counts->begun == 3);
  CHECK(counts->failures == 1);
  CHECK(counts->successes == 2);

  counts->refuse_for = 9;  // a lock the backend knows of, e.g. set on another replica
  const auto locked = call(c, "GET", kAuthenticate, auth(iwsec_test::basic(a.email, "right")));
  check_envelope(locked, 429, "IW10031");
  CHECK(locked.get_header_value("Retry-After") == "9");
  CHECK(counts->successes == 2);  // refused before any check

  counts->refuse_for = 0;
  counts->unavailable = true;  // the database holding the counts is away
  const auto down = call(c, "GET", kAuthenticate, auth(iwsec_test::basic(a.email, "right")));
  check_envelope(down, 503, "IW10002");
  CHECK(down.get_header_value("Retry-After") == "4");

  f.sec->lockout().unlock_account(a.email);
  CHECK(counts->unlocked == 1);
}
