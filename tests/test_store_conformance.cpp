// One conformance suite (issue 16, item 9): THE SAME cases run against every
// UserStore (memory, users file, PostgreSQL), every RevocationStore (memory,
// journal, PostgreSQL) and every Lockout (the in-process tracker,
// PostgreSQL). A rule one backend re-implements differently fails here.
//
// The PostgreSQL backends run against a throwaway PostgreSQL 15 this program
// starts (support/pg_server.hpp). Only a build without libpq leaves them out;
// with libpq, a PostgreSQL that cannot be started fails the suite.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

#ifdef IWSEC_HAVE_POSTGRES
#include <iwsec/postgres/backend.hpp>

#include "support/pg_server.hpp"
#endif

namespace {

/// A clock the test moves by hand, shared by a backend and its test.
struct ManualClock {
  std::shared_ptr<std::atomic<std::int64_t>> t = std::make_shared<std::atomic<std::int64_t>>(1'800'000'000);
  iwsec::Clock clock() const {
    auto p = t;
    return [p] { return p->load(); };
  }
  std::int64_t now() const { return t->load(); }
  void advance(std::int64_t s) { *t += s; }
};

iwsec::LockoutPolicy small_policy() {
  iwsec::LockoutPolicy p;
  p.account_failures = 3;
  p.account_wait_increment = std::chrono::seconds(60);
  p.account_max_wait = std::chrono::seconds(900);
  p.client_failures = 5;
  p.client_window = std::chrono::seconds(600);
  p.max_tracked_accounts = 16;
  p.max_tracked_clients = 16;
  return p;
}

// ---- backends ------------------------------------------------------------------

struct MemoryBackend {
  static constexpr const char* name = "memory";
  ManualClock clock;
  iwsec::MemoryUserStore user_store;
  iwsec::MemoryRevocationStore revocation_store{clock.clock()};
  iwsec::LockoutTracker tracker{small_policy()};
  iwsec::UserStore& users() { return user_store; }
  iwsec::RevocationStore& revocations() { return revocation_store; }
  iwsec::Lockout& lockout() { return tracker; }
  std::optional<long> tracked_accounts() { return std::nullopt; }
};

struct FileBackend {
  static constexpr const char* name = "file and journal";
  ManualClock clock;
  iwsec_test::TempDir dir;
  iwsec::JsonFileUserStore user_store{dir.file("users.json")};
  iwsec::JournalRevocationStore revocation_store{dir.file("revocations.journal"), clock.clock()};
  iwsec::LockoutTracker tracker{small_policy()};  // the server's lock journal records, it does not count
  iwsec::UserStore& users() { return user_store; }
  iwsec::RevocationStore& revocations() { return revocation_store; }
  iwsec::Lockout& lockout() { return tracker; }
  std::optional<long> tracked_accounts() { return std::nullopt; }
};

#ifdef IWSEC_HAVE_POSTGRES
struct PostgresBackend {
  static constexpr const char* name = "postgres";
  ManualClock clock;
  std::string db = iwsec_test::PgServer::shared().new_database();
  iwsec::postgres::Backend backend{options()};
  iwsec::UserStore& users() { return backend.users(); }
  iwsec::RevocationStore& revocations() { return *backend.revocations(); }
  iwsec::Lockout& lockout() { return *backend.lockout(); }
  std::optional<long> tracked_accounts() {
    return std::stol(iwsec_test::PgServer::shared().sql(db, "SELECT count(*) FROM iwsec_lockout_accounts"));
  }
  iwsec::postgres::BackendOptions options() {
    iwsec::postgres::BackendOptions o;
    o.conninfo = iwsec_test::PgServer::shared().conninfo(db);
    o.clock = clock.clock();
    o.lockout = small_policy();
    o.pool_size = 4;
    o.log = [](const std::string&) {};
    return o;
  }
};
#define IWSEC_BACKENDS MemoryBackend, FileBackend, PostgresBackend
#else
#define IWSEC_BACKENDS MemoryBackend, FileBackend
#endif

iwsec::User make_user(const std::string& email, const std::string& refresh_hash = "") {
  iwsec::User u;
  u.user_id = iwsec::generate_user_id();
  u.email = email;
  u.password_hash = "pbkdf2_sha256$1000$c2FsdA$aGFzaA";
  u.refresh_token_sha256 = refresh_hash.empty() ? iwsec::refresh_token_hash(iwsec::generate_refresh_token())
                                                : refresh_hash;
  return u;
}

std::string uuid(int i) {
  char text[37];
  std::snprintf(text, sizeof text, "00000000-0000-4000-8000-%012d", i);
  return text;
}

}  // namespace

// ---- UserStore -------------------------------------------------------------------

TEMPLATE_TEST_CASE("UserStore: add, find, duplicates", "[conformance][users]", IWSEC_BACKENDS) {
  TestType b;
  auto& users = b.users();
  const auto ann = make_user("Ann@Example.com");
  REQUIRE(users.add_user(ann) == iwsec::StoreStatus::ok);
  const auto found = users.find_by_email("ann@EXAMPLE.com");
  REQUIRE(found);
  CHECK(found->user_id == ann.user_id);
  CHECK(found->email == "Ann@Example.com");
  CHECK(users.find_by_refresh_token_hash(ann.refresh_token_sha256)->user_id == ann.user_id);
  CHECK_FALSE(users.find_by_refresh_token_hash(iwsec::refresh_token_hash("nobody's")));
  CHECK_FALSE(users.find_by_email("bob@example.com"));

  auto same_email = make_user("ANN@example.com");
  CHECK(users.add_user(same_email) == iwsec::StoreStatus::already_exists);
  auto same_id = make_user("other@example.com");
  same_id.user_id = ann.user_id;
  CHECK(users.add_user(same_id) == iwsec::StoreStatus::already_exists);
  auto same_token = make_user("third@example.com", ann.refresh_token_sha256);
  CHECK(users.add_user(same_token) == iwsec::StoreStatus::already_exists);
  auto no_email = make_user("");
  CHECK(users.add_user(no_email) == iwsec::StoreStatus::invalid);
  CHECK(users.list_users().size() == 1);
}

TEMPLATE_TEST_CASE("UserStore: update and status", "[conformance][users]", IWSEC_BACKENDS) {
  TestType b;
  auto& users = b.users();
  const auto ann = make_user("ann@example.com");
  REQUIRE(users.add_user(ann) == iwsec::StoreStatus::ok);
  const std::string next = iwsec::refresh_token_hash(iwsec::generate_refresh_token());
  REQUIRE(users.update_user("ANN@example.com", [&](iwsec::User& u) {
    u.refresh_token_sha256 = next;
    ++u.refresh_generation;
    u.disabled = true;
  }) == iwsec::StoreStatus::ok);
  const auto status = users.status_of("ann@example.com");
  REQUIRE(status);
  CHECK(status->refresh_generation == 1);
  CHECK(status->disabled);
  CHECK(status->user_id == ann.user_id);
  CHECK_FALSE(users.find_by_refresh_token_hash(ann.refresh_token_sha256));
  CHECK(users.find_by_refresh_token_hash(next)->email == "ann@example.com");
  CHECK(users.update_user("nobody@example.com", [](iwsec::User&) {}) == iwsec::StoreStatus::not_found);
  CHECK_FALSE(users.status_of("nobody@example.com"));
}

TEMPLATE_TEST_CASE("UserStore: delete_user ends the user, the email is free again", "[conformance][users]",
                   IWSEC_BACKENDS) {
  TestType b;
  auto& users = b.users();
  const auto ann = make_user("ann@example.com");
  const auto bob = make_user("bob@example.com");
  REQUIRE(users.add_user(ann) == iwsec::StoreStatus::ok);
  REQUIRE(users.add_user(bob) == iwsec::StoreStatus::ok);
  CHECK(users.delete_user("ANN@example.com") == iwsec::StoreStatus::ok);
  CHECK_FALSE(users.find_by_email("ann@example.com"));
  CHECK_FALSE(users.find_by_refresh_token_hash(ann.refresh_token_sha256));
  CHECK(users.delete_user("ann@example.com") == iwsec::StoreStatus::not_found);
  CHECK(users.find_by_email("bob@example.com"));
  const auto again = make_user("ann@example.com");
  REQUIRE(users.add_user(again) == iwsec::StoreStatus::ok);
  CHECK(users.status_of("ann@example.com")->user_id == again.user_id);
  CHECK(users.list_users().size() == 2);
}

TEMPLATE_TEST_CASE("UserStore: a write that does not happen says why", "[conformance][users]", IWSEC_BACKENDS) {
  TestType b;
  auto& users = b.users();
  const auto ann = make_user("ann@example.com");
  const iwsec::StoreResult added = users.add_user(ann);
  REQUIRE(added.ok());
  CHECK(added.reason().empty());
  const auto has = [](const iwsec::StoreResult& r, iwsec::StoreStatus status, const char* words) {
    INFO("status " << iwsec::to_string(r.status()) << ", reason: " << r.reason());
    CHECK(r.status() == status);
    CHECK(r.reason().find(words) != std::string::npos);
  };
  has(users.add_user(make_user("ANN@example.com")), iwsec::StoreStatus::already_exists, "email");
  has(users.add_user(make_user("")), iwsec::StoreStatus::invalid, "needs an email");
  has(users.update_user("nobody@example.com", [](iwsec::User&) {}), iwsec::StoreStatus::not_found, "no user");
  has(users.update_user("ann@example.com", [](iwsec::User& u) { u.user_id = "someone else"; }),
      iwsec::StoreStatus::invalid, "may not alter");
  has(users.delete_user("nobody@example.com"), iwsec::StoreStatus::not_found, "no user");
  // The account operations pass the store's outcome on, reason and all.
  has(iwsec::set_user_disabled(users, "nobody@example.com", true), iwsec::StoreStatus::not_found, "no user");
  has(iwsec::create_user(users, "bob@example.com", "").status, iwsec::StoreStatus::invalid, "password");
}

TEMPLATE_TEST_CASE("UserStore: list_users answers in the order users were added", "[conformance][users]",
                   IWSEC_BACKENDS) {
  TestType b;
  auto& users = b.users();
  std::vector<std::string> added;
  for (const char* email : {"zed@example.com", "amy@example.com", "mia@example.com", "bob@example.com"}) {
    const auto u = make_user(email);
    REQUIRE(users.add_user(u) == iwsec::StoreStatus::ok);
    added.push_back(u.email);
  }
  REQUIRE(users.update_user("zed@example.com", [](iwsec::User& u) { ++u.refresh_generation; }) ==
          iwsec::StoreStatus::ok);
  std::vector<std::string> listed;
  for (const auto& u : users.list_users()) listed.push_back(u.email);
  CHECK(listed == added);
}

// ---- RevocationStore ---------------------------------------------------------------

TEMPLATE_TEST_CASE("RevocationStore: revoke and is_revoked", "[conformance][revocations]", IWSEC_BACKENDS) {
  TestType b;
  auto& r = b.revocations();
  const std::int64_t now = b.clock.now();
  CHECK_FALSE(r.is_revoked(uuid(1)));
  CHECK(r.revoke(uuid(1), now + 900));
  CHECK(r.is_revoked(uuid(1)));
  CHECK(r.revoke(uuid(1), now + 10));  // idempotent
  CHECK(r.is_revoked(uuid(1)));
  CHECK(r.revoke_for("owner", "not-a-uuid", now + 900, 5) == iwsec::RevokeOutcome::revoked);
  CHECK(r.is_revoked("not-a-uuid"));
  CHECK_FALSE(r.is_revoked(uuid(2)));
}

TEMPLATE_TEST_CASE("RevocationStore: revoke_for holds at most the limit per owner", "[conformance][revocations]",
                   IWSEC_BACKENDS) {
  TestType b;
  auto& r = b.revocations();
  const std::int64_t now = b.clock.now();
  for (int i = 0; i < 3; ++i) CHECK(r.revoke_for("ann", uuid(i), now + 100, 3) == iwsec::RevokeOutcome::revoked);
  CHECK(r.outstanding_for("ann") == std::optional<std::size_t>(3));
  CHECK(r.revoke_for("ann", uuid(10), now + 100, 3) == iwsec::RevokeOutcome::limit_reached);
  CHECK_FALSE(r.is_revoked(uuid(10)));
  CHECK(r.revoke_for("ann", uuid(1), now + 200, 3) == iwsec::RevokeOutcome::revoked);  // already held
  CHECK(r.revoke_for("bob", uuid(11), now + 100, 3) == iwsec::RevokeOutcome::revoked);  // another owner
  CHECK(r.outstanding_for("ann") == std::optional<std::size_t>(3));
  // Expired revocations no longer count.
  b.clock.advance(150);
  CHECK(r.revoke_for("ann", uuid(12), b.clock.now() + 100, 3) == iwsec::RevokeOutcome::revoked);
  CHECK(r.is_revoked(uuid(12)));
}

TEMPLATE_TEST_CASE("RevocationStore: concurrent revoke_for keeps the limit exactly", "[conformance][revocations]",
                   IWSEC_BACKENDS) {
  TestType b;
  auto& r = b.revocations();
  const std::int64_t now = b.clock.now();
  std::atomic<int> revoked{0}, refused{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const auto outcome = r.revoke_for("flood", uuid(1000 + t * 10 + i), now + 900, 20);
        (outcome == iwsec::RevokeOutcome::revoked   ? revoked
         : outcome == iwsec::RevokeOutcome::limit_reached ? refused
                                                         : failed)++;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(revoked == 20);
  CHECK(refused == 60);
  CHECK(failed == 0);
  CHECK(r.outstanding_for("flood") == std::optional<std::size_t>(20));
}

// ---- Lockout -----------------------------------------------------------------------

TEMPLATE_TEST_CASE("Lockout: the failure that locks reports the lock, once", "[conformance][lockout]",
                   IWSEC_BACKENDS) {
  TestType b;
  auto& l = b.lockout();
  const std::int64_t now = b.clock.now();
  std::vector<iwsec::LockTransition> reported;
  for (int i = 0; i < 3; ++i) {
    auto a = l.begin(std::string_view("ann@example.com"), "client-1", now);
    REQUIRE(a);
    const auto t = a.failed(now);
    if (t) reported.push_back(t);
  }
  REQUIRE(reported.size() == 1);
  CHECK(reported[0].account_locked_until == now + 60);
  CHECK(reported[0].client_blocked_until == 0);
  auto refused = l.begin(std::string_view("ANN@example.com"), "client-2", now + 1);
  CHECK_FALSE(refused);
  CHECK(refused.wait() == 59);
  CHECK(l.account_wait("ann@example.com", now + 1) == 59);
  l.unlock_account("ann@example.com");
  CHECK(l.account_wait("ann@example.com", now + 1) == 0);
  auto again = l.begin(std::string_view("ann@example.com"), "client-2", now + 1);
  CHECK(again);
}

TEMPLATE_TEST_CASE("Lockout: a success resets the account; the client's block is reported once",
                   "[conformance][lockout]", IWSEC_BACKENDS) {
  TestType b;
  auto& l = b.lockout();
  const std::int64_t now = b.clock.now();
  for (int i = 0; i < 2; ++i) CHECK_FALSE(l.begin(std::string_view("ann@example.com"), "c", now).failed(now));
  l.begin(std::string_view("ann@example.com"), "c", now).succeeded(now);
  // Two more failures do not lock: the success reset the count.
  for (int i = 0; i < 2; ++i) CHECK_FALSE(l.begin(std::string_view("ann@example.com"), "c", now).failed(now));
  CHECK(l.account_wait("ann@example.com", now) == 0);
  // The client's failures stayed (4 so far): the 5th blocks it.
  const auto t = l.begin(std::string_view("bob@example.com"), "c", now).failed(now);
  CHECK(t.client_blocked_until == now + 600);
  CHECK(t.account_locked_until == 0);
  CHECK(l.client_wait("c", now + 1) == 599);
  CHECK_FALSE(l.begin(std::string_view("carl@example.com"), "c", now + 1));
}

TEMPLATE_TEST_CASE("Lockout: a spray of unknown emails stays bounded and never evicts a live lock",
                   "[conformance][lockout]", IWSEC_BACKENDS) {
  TestType b;
  auto& l = b.lockout();
  const std::int64_t now = b.clock.now();
  for (int i = 0; i < 3; ++i) l.begin(std::string_view("victim@example.com"), "attacker", now).failed(now);
  REQUIRE(l.account_wait("victim@example.com", now) == 60);
  for (int i = 0; i < 200; ++i) {
    const std::string client = "sprayer-" + std::to_string(i % 50);  // 4 failures each: none blocked
    auto a = l.begin(std::string_view("spray" + std::to_string(i) + "@example.com"), client, now);
    if (a) a.failed(now);
  }
  CHECK(l.account_wait("victim@example.com", now + 1) == 59);
  CHECK_FALSE(l.begin(std::string_view("victim@example.com"), "someone", now + 1));
  if (const auto tracked = b.tracked_accounts()) CHECK(*tracked <= 16);
}

#ifdef IWSEC_HAVE_POSTGRES
#include <condition_variable>
#include <mutex>

// A snapshot reload (an 's' log entry, e.g. after an import) replaces the
// replica's users wholesale. Forced interleaving: a local write commits after
// the snapshot was read and before it replaces the local copy. The replica
// must still answer with the write it acknowledged.
TEST_CASE("postgres: a snapshot reload does not lose a concurrent local write", "[conformance][postgres]") {
  auto& pg = iwsec_test::PgServer::shared();
  const std::string db = pg.new_database();
  std::mutex m;
  std::condition_variable cv;
  bool armed = false, done = false;
  std::optional<iwsec::User> seen;
  std::string rotated_hash = iwsec::refresh_token_hash(iwsec::generate_refresh_token());
  bool rotated_found = false;
  iwsec::StoreStatus update_status = iwsec::StoreStatus::invalid;
  iwsec::postgres::Backend* self = nullptr;

  iwsec::postgres::BackendOptions o;
  o.conninfo = pg.conninfo(db);
  o.pool_size = 2;
  o.log = [](const std::string&) {};
  o.interleave = [&](std::string_view point) {
    {
      std::lock_guard<std::mutex> lock(m);
      if (!armed || done) return;
    }
    if (point == "snapshot read") {
      update_status = self->users().update_user("ann@example.com", [&](iwsec::User& u) {
        ++u.refresh_generation;
        u.refresh_token_sha256 = rotated_hash;
      });
    } else if (point == "snapshot applied") {
      // Still on the follower thread, holding the catch-up: nothing else
      // can apply the write's log entry before this look.
      const auto u = self->users().find_by_email("ann@example.com");
      const bool found = self->users().find_by_refresh_token_hash(rotated_hash).has_value();
      std::lock_guard<std::mutex> lock(m);
      seen = u;
      rotated_found = found;
      done = true;
      cv.notify_all();
    }
  };
  iwsec::postgres::Backend backend(o);
  self = &backend;
  const auto ann = make_user("ann@example.com");
  REQUIRE(backend.users().add_user(ann) == iwsec::StoreStatus::ok);
  {
    std::lock_guard<std::mutex> lock(m);
    armed = true;
  }
  pg.sql(db, "SELECT iwsec_append('s', NULL, NULL, NULL)");  // every replica reloads
  std::unique_lock<std::mutex> lock(m);
  REQUIRE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return done; }));
  REQUIRE(update_status == iwsec::StoreStatus::ok);
  REQUIRE(seen);
  CHECK(seen->refresh_generation == 1);
  CHECK(rotated_found);
  lock.unlock();
  backend.stop();
}
#endif
