// The lock journal (iwsec/lock_journal.hpp), as iwsec-server and iwsec-admin use it:
// locks the server records are seen by show-user, unlocks the admin tool
// appends reach the server exactly once, a restart voids every lock, and
// compaction keeps the locks in force and loses no unlock.

#include <catch2/catch.hpp>

#include <ctime>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

namespace {

std::int64_t until_of(const std::string& path, const std::string& email) {
  std::int64_t until = -1;
  std::string error;
  REQUIRE(iwsec::LockJournal::locked_until(path, email, std::time(nullptr), until, error));
  return until;
}

std::vector<std::string> unlocks(iwsec::LockJournal& j) {
  std::vector<std::string> out;
  j.apply_unlocks([&](const std::string& email) { out.push_back(email); });
  return out;
}

void unlock(const std::string& path, const std::string& email) {
  std::string error;
  REQUIRE(iwsec::LockJournal::request_unlock(path, email, error));
}

// A started journal in a fresh folder, and a JournaledLockout over a tracker
// that locks an account after @p account_failures failures.
struct JournaledFixture {
  explicit JournaledFixture(int account_failures)
      : journal(std::make_shared<iwsec::LockJournal>(iwsec::LockJournal::path_in(dir.path))),
        tracker(std::make_shared<iwsec::LockoutTracker>(policy_with(account_failures))),
        lockout(tracker, journal) {
    std::string error;
    REQUIRE(journal->start(error));
  }
  static iwsec::LockoutPolicy policy_with(int account_failures) {
    iwsec::LockoutPolicy policy;
    policy.account_failures = account_failures;
    return policy;
  }
  iwsec_test::TempDir dir;
  std::shared_ptr<iwsec::LockJournal> journal;
  std::shared_ptr<iwsec::LockoutTracker> tracker;
  iwsec::JournaledLockout lockout;
  const std::int64_t now = std::time(nullptr);
};

}  // namespace

TEST_CASE("locks, unlocks and restarts through the journal", "[lock_journal]") {
  iwsec_test::TempDir dir;
  const std::string path = iwsec::LockJournal::path_in(dir.path);
  CHECK(until_of(path, "ada@example.com") == 0);  // no journal yet: nothing locked
  const std::int64_t later = std::time(nullptr) + 600;
  {
    iwsec::LockJournal server(path);
    std::string error;
    REQUIRE(server.start(error));
    CHECK(unlocks(server).empty());
    server.locked("ada@example.com", later);
    server.locked("bob@example.com", later + 1);
    CHECK(until_of(path, "Ada@Example.COM") == later);
    CHECK(until_of(path, "bob@example.com") == later + 1);
    CHECK(until_of(path, "eve@example.com") == 0);
    CHECK(iwsec_test::read_file(path).find("ada@example.com") == std::string::npos);  // keys only

    unlock(path, "ADA@example.com");
    CHECK(until_of(path, "ada@example.com") == 0);
    CHECK(until_of(path, "bob@example.com") == later + 1);
    CHECK(unlocks(server) == std::vector<std::string>{"ada@example.com"});
    CHECK(unlocks(server).empty());  // once

    server.locked("ada@example.com", later + 2);  // locked again after the unlock
    CHECK(until_of(path, "ada@example.com") == later + 2);
    server.stop();
    CHECK(until_of(path, "bob@example.com") == 0);
  }
  iwsec::LockJournal restarted(path);
  std::string error;
  REQUIRE(restarted.start(error));
  CHECK(unlocks(restarted).empty());  // the old unlock is not applied again
  CHECK(until_of(path, "ada@example.com") == 0);
}

TEST_CASE("compaction keeps the locks in force and every unlock", "[lock_journal]") {
  iwsec_test::TempDir dir;
  const std::string path = iwsec::LockJournal::path_in(dir.path);
  iwsec::LockJournal server(path, 512);
  std::string error;
  REQUIRE(server.start(error));
  const std::int64_t later = std::time(nullptr) + 600;
  server.locked("keep@example.com", later);
  server.locked("gone@example.com", std::time(nullptr) - 1);  // already over
  unlock(path, "freed@example.com");
  for (int i = 0; i < 20; ++i) server.locked("user" + std::to_string(i) + "@example.com", later);
  // Compacted (more than 512 bytes were written): a fresh start line, the
  // locks in force, nothing else; and nothing was lost.
  const std::string text = iwsec_test::read_file(path);
  CHECK(text.rfind("start ", 0) == 0);
  CHECK(text.find("unlock") == std::string::npos);
  CHECK(text.find(iwsec::LockJournal::key_of("gone@example.com")) == std::string::npos);
  CHECK(until_of(path, "keep@example.com") == later);
  CHECK(until_of(path, "user19@example.com") == later);
  CHECK(until_of(path, "gone@example.com") == 0);
  CHECK(unlocks(server) == std::vector<std::string>{"freed@example.com"});
  unlock(path, "keep@example.com");
  CHECK(unlocks(server) == std::vector<std::string>{"keep@example.com"});
  CHECK(until_of(path, "keep@example.com") == 0);
}

TEST_CASE("JournaledLockout: a host's tracker meets an administrator through the journal", "[lock_journal]") {
  JournaledFixture f(3);
  auto& journal = f.journal;
  auto& tracker = f.tracker;
  auto& lockout = f.lockout;
  const std::int64_t now = f.now;

  // Three failures lock the account: the transition is the tracker's, and
  // the journal has it (what show-user reads), under the key, not the email.
  iwsec::LockTransition last;
  for (int i = 0; i < 3; ++i) {
    auto attempt = lockout.begin(std::string_view("Ada@example.com"), "client-1", now);
    REQUIRE(attempt);
    last = attempt.failed(now);
  }
  REQUIRE(last.account_locked_until > now);
  CHECK(until_of(journal->path(), "ada@example.com") == last.account_locked_until);
  CHECK(iwsec_test::read_file(journal->path()).find("ada@") == std::string::npos);
  CHECK_FALSE(lockout.begin(std::string_view("ada@example.com"), "client-2", now));
  CHECK(tracker->account_wait("ada@example.com", now) > 0);

  // An administrator's unlock is in force for the very next check, of
  // either kind, and reaches the tracker underneath.
  unlock(journal->path(), "ADA@example.com");
  CHECK(lockout.account_wait("ada@example.com", now) == 0);
  CHECK(tracker->account_wait("ada@example.com", now) == 0);
  {
    auto attempt = lockout.begin(std::string_view("ada@example.com"), "client-2", now);
    REQUIRE(attempt);
    attempt.succeeded(now);
  }
  CHECK(until_of(journal->path(), "ada@example.com") == 0);

  // An attempt dropped unfinished counts nothing, through the decorator too:
  // afterwards the account still admits its full 3 attempts at once (a
  // dropped attempt still counted as running would leave room for 2).
  { auto dropped = lockout.begin(std::string_view("bob@example.com"), "client-3", now); }
  auto a1 = lockout.begin(std::string_view("bob@example.com"), "client-3", now);
  auto a2 = lockout.begin(std::string_view("bob@example.com"), "client-3", now);
  auto a3 = lockout.begin(std::string_view("bob@example.com"), "client-3", now);
  CHECK((a1 && a2 && a3));
  CHECK_FALSE(lockout.begin(std::string_view("bob@example.com"), "client-3", now));  // the 4th: cap
}

TEST_CASE("JournaledLockout: an unlock made inside the process is in the journal too", "[lock_journal]") {
  JournaledFixture f(1);
  auto& journal = f.journal;
  auto& lockout = f.lockout;
  const std::int64_t now = f.now;
  {
    auto attempt = lockout.begin(std::string_view("cy@example.com"), "client", now);
    REQUIRE(attempt);
    REQUIRE(attempt.failed(now).account_locked_until > now);
  }
  CHECK(until_of(journal->path(), "cy@example.com") > now);
  lockout.unlock_account("cy@example.com");
  CHECK(until_of(journal->path(), "cy@example.com") == 0);  // what show-user reads
  CHECK(lockout.account_wait("cy@example.com", now) == 0);
}

TEST_CASE("LockJournal::apply_unlocks: an unlock that throws stays pending", "[lock_journal]") {
  iwsec_test::TempDir dir;
  iwsec::LockJournal journal(iwsec::LockJournal::path_in(dir.path));
  std::string error;
  REQUIRE(journal.start(error));
  unlock(journal.path(), "first@example.com");
  unlock(journal.path(), "second@example.com");
  std::vector<std::string> seen;
  CHECK_THROWS_AS(journal.apply_unlocks([&](const std::string& email) {
    if (email == "second@example.com") throw std::runtime_error("store unavailable");
    seen.push_back(email);
  }),
                  std::runtime_error);
  CHECK(seen == std::vector<std::string>{"first@example.com"});
  // The next look applies what is left, and only that.
  CHECK(unlocks(journal) == std::vector<std::string>{"second@example.com"});
  CHECK(unlocks(journal).empty());
}
