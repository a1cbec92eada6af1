// Revocations bounded per user (docs/sessions.md): at most
// Options::max_revocations_per_user outstanding revocations per user;
// revoking past that bumps the user's generation instead. The stores count
// per owner (and the journal replays the counts); the routes bump.

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace iwsec_http;
using iwsec::RevokeOutcome;

namespace {

std::string uuid() { return iwsec::detail::uuid_v4(); }

std::size_t count_lines_with(const std::string& text, const std::string& word) {
  std::size_t n = 0, at = 0;
  while (at < text.size()) {
    const auto nl = text.find('\n', at);
    const std::string line = text.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    if (line.find(word) != std::string::npos) ++n;
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return n;
}

std::int64_t generation_of(iwsec::UserStore& users, const std::string& email) {
  return users.find_by_email(email)->refresh_generation;
}

}  // namespace

TEST_CASE("revoke_for keeps at most `limit` outstanding revocations per owner", "[revocation_cap][store]") {
  iwsec_test::ManualClock clock;
  iwsec_test::TempDir dir;
  iwsec::MemoryRevocationStore memory(clock.clock());
  iwsec::JournalRevocationStore journal(dir.file("revocations.journal"), clock.clock());
  for (iwsec::RevocationStore* store : std::vector<iwsec::RevocationStore*>{&memory, &journal}) {
    const std::int64_t exp = clock.now() + 100;
    std::vector<std::string> held;
    for (int i = 0; i < 3; ++i) {
      held.push_back(uuid());
      CHECK(store->revoke_for("alice", held.back(), exp, 3) == RevokeOutcome::revoked);
    }
    CHECK(store->outstanding_for("alice") == std::optional<std::size_t>(3));
    const std::string over = uuid();
    CHECK(store->revoke_for("alice", over, exp, 3) == RevokeOutcome::limit_reached);
    CHECK_FALSE(store->is_revoked(over));
    for (const auto& jti : held) CHECK(store->is_revoked(jti));
    // Revoking one of the held ones again is idempotent, not a new one.
    CHECK(store->revoke_for("alice", held[0], exp + 50, 3) == RevokeOutcome::revoked);
    CHECK(store->outstanding_for("alice") == std::optional<std::size_t>(3));
    // Another owner has its own count; plain revoke() counts for nobody.
    CHECK(store->revoke_for("bob", uuid(), exp, 3) == RevokeOutcome::revoked);
    CHECK(store->outstanding_for("bob") == std::optional<std::size_t>(1));
    CHECK(store->revoke(uuid(), exp));
    CHECK(store->outstanding_for("nobody") == std::optional<std::size_t>(0));
    // Expired revocations are not outstanding: room again.
    clock.advance(101);
    CHECK(store->outstanding_for("alice") == std::optional<std::size_t>(0));
    CHECK(store->is_revoked(held[0]));  // extended to exp + 50, but counted no longer than its first expiry
    CHECK(store->revoke_for("alice", over, clock.now() + 100, 3) == RevokeOutcome::revoked);
    CHECK(store->is_revoked(over));
    clock.advance(1000);
  }
}

TEST_CASE("an owner holding a space or a line break is journaled as one word", "[revocation_cap][store]") {
  iwsec_test::ManualClock clock;
  iwsec_test::TempDir dir;
  const std::string path = dir.file("revocations.journal");
  const std::string odd = "a b\nc";
  {
    iwsec::JournalRevocationStore journal(path, clock.clock());
    CHECK(journal.revoke_for(odd, uuid(), clock.now() + 100, 2) == RevokeOutcome::revoked);
    CHECK(journal.revoke_for(std::string(300, 'o'), uuid(), clock.now() + 100, 2) == RevokeOutcome::revoked);
  }
  const std::string text = iwsec_test::read_file(path);
  CHECK(std::count(text.begin(), text.end(), '\n') == 2);
  CHECK(text.find("a b") == std::string::npos);
  iwsec::JournalRevocationStore again(path, clock.clock());
  CHECK(again.outstanding_for(odd) == std::optional<std::size_t>(1));
  CHECK(again.outstanding_for(std::string(300, 'o')) == std::optional<std::size_t>(1));
}

TEST_CASE("the journal replays the per-owner counts after a restart and a compaction", "[revocation_cap][store]") {
  iwsec_test::ManualClock clock;
  iwsec_test::TempDir dir;
  const std::string path = dir.file("revocations.journal");
  std::vector<std::string> held;
  {
    iwsec::JournalRevocationStore journal(path, clock.clock());
    // One that expires soon (so the next start compacts), then the cap's worth.
    CHECK(journal.revoke_for("alice", uuid(), clock.now() + 5, 4) == RevokeOutcome::revoked);
    for (int i = 0; i < 3; ++i) {
      held.push_back(uuid());
      CHECK(journal.revoke_for("alice", held.back(), clock.now() + 100, 4) == RevokeOutcome::revoked);
    }
    CHECK(journal.revoke_for("alice", uuid(), clock.now() + 100, 4) == RevokeOutcome::limit_reached);
    CHECK(journal.revoke(uuid(), clock.now() + 100));  // an unowned one (the old line format)
  }
  {
    iwsec::JournalRevocationStore restarted(path, clock.clock());
    CHECK(restarted.outstanding_for("alice") == std::optional<std::size_t>(4));
    CHECK(restarted.revoke_for("alice", uuid(), clock.now() + 100, 4) == RevokeOutcome::limit_reached);
  }
  clock.advance(10);  // the first one expired: this start rewrites the journal
  {
    iwsec::JournalRevocationStore compacted(path, clock.clock());
    CHECK(compacted.outstanding_for("alice") == std::optional<std::size_t>(3));
    for (const auto& jti : held) CHECK(compacted.is_revoked(jti));
  }
  const std::string text = iwsec_test::read_file(path);
  CHECK(std::count(text.begin(), text.end(), '\n') == 4);
  CHECK(count_lines_with(text, " alice") == 3);
  iwsec::JournalRevocationStore again(path, clock.clock());
  CHECK(again.outstanding_for("alice") == std::optional<std::size_t>(3));
  CHECK(again.revoke_for("alice", uuid(), clock.now() + 100, 4) == RevokeOutcome::revoked);
  CHECK(again.revoke_for("alice", uuid(), clock.now() + 100, 4) == RevokeOutcome::limit_reached);
}

TEST_CASE("journal lines of the old two-field format still load, owned by nobody", "[revocation_cap][store]") {
  iwsec_test::ManualClock clock;
  iwsec_test::TempDir dir;
  const std::string path = dir.file("revocations.journal");
  const std::string a = uuid(), b = uuid();
  iwsec_test::write_file(path, a + " " + std::to_string(clock.now() + 100) + "\n" + b + " " +
                                   std::to_string(clock.now() + 100) + " bob\n" + uuid() + " 5 x y\n");
  iwsec::JournalRevocationStore journal(path, clock.clock());
  CHECK(journal.is_revoked(a));
  CHECK(journal.is_revoked(b));
  CHECK(journal.outstanding_for("bob") == std::optional<std::size_t>(1));
}

TEST_CASE("Options::max_revocations_per_user must be at least 1", "[revocation_cap][options]") {
  iwsec::MemoryUserStore users;
  const iwsec::Signer signer{std::string_view(kSecret)};
  httplib::Server server;
  iwsec::Options o;
  CHECK(o.max_revocations_per_user == 1000);
  o.max_revocations_per_user = 0;
  CHECK_THROWS_AS(iwsec::mount_security_routes(server, users, signer, o), std::invalid_argument);
}

TEST_CASE("revoking past the cap ends every access token of that user, not the refresh token",
          "[revocation_cap][http]") {
  constexpr std::size_t cap = 5;
  Fixture f;
  iwsec_test::TempDir dir;
  auto journal = std::make_shared<iwsec::JournalRevocationStore>(dir.file("revocations.journal"), f.clock.clock());
  f.options.revocations = journal;
  f.options.max_revocations_per_user = cap;
  const auto a = add_account(f.users, "flood@example.com", "pw");
  const auto b = add_account(f.users, "calm@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string kept = exchange_refresh(c, a.refresh_token);  // never revoked
  const std::string bystander = login(c, b);

  for (std::size_t i = 0; i < cap; ++i) {
    const std::string t = exchange_refresh(c, a.refresh_token);
    revoke_access(c, t);
    CHECK_FALSE(is_valid(c, t));
  }
  CHECK(is_valid(c, kept));
  CHECK(generation_of(f.users, a.email) == 0);

  // One past the cap: a 200 as always, the token is dead, and so is every
  // other access token of that user, by the generation.
  const std::string over = exchange_refresh(c, a.refresh_token);
  revoke_access(c, over);
  CHECK_FALSE(is_valid(c, over));
  CHECK_FALSE(is_valid(c, kept));
  CHECK(generation_of(f.users, a.email) == 1);
  CHECK(journal->outstanding_for(a.user_id) == std::optional<std::size_t>(cap));
  const std::string text = iwsec_test::read_file(journal->path());
  CHECK(count_lines_with(text, a.user_id) == cap);

  // Revoking tokens already dead by the generation writes nothing at all.
  revoke_access(c, kept);
  CHECK(generation_of(f.users, a.email) == 1);
  CHECK(iwsec_test::read_file(journal->path()) == text);

  // The refresh token still works; a fresh token past the cap again ends at once.
  const std::string fresh = exchange_refresh(c, a.refresh_token);
  CHECK(is_valid(c, fresh));
  revoke_access(c, fresh);
  CHECK_FALSE(is_valid(c, fresh));
  CHECK(generation_of(f.users, a.email) == 2);
  CHECK(is_valid(c, exchange_refresh(c, a.refresh_token)));

  // The other user is untouched and has a count of their own.
  CHECK(is_valid(c, bystander));
  CHECK(generation_of(f.users, b.email) == 0);
  const std::string theirs = login(c, b);
  revoke_access(c, theirs);
  CHECK_FALSE(is_valid(c, theirs));
  CHECK(is_valid(c, bystander));
  CHECK(journal->outstanding_for(b.user_id) == std::optional<std::size_t>(1));

  // Once the revoked tokens expire, the user has room again.
  f.clock.advance(901);
  const std::string later = exchange_refresh(c, a.refresh_token);
  revoke_access(c, later);
  CHECK(generation_of(f.users, a.email) == 2);
  CHECK(journal->outstanding_for(a.user_id) == std::optional<std::size_t>(1));
}

TEST_CASE("concurrent revocations of one owner never pass the limit", "[revocation_cap][store][concurrency]") {
  iwsec_test::ManualClock clock;
  iwsec_test::TempDir dir;
  iwsec::MemoryRevocationStore memory(clock.clock());
  iwsec::JournalRevocationStore journal(dir.file("revocations.journal"), clock.clock());
  for (iwsec::RevocationStore* store : std::vector<iwsec::RevocationStore*>{&memory, &journal}) {
    constexpr int threads = 4, each = 20;
    constexpr std::size_t limit = 25;
    std::vector<std::thread> pool;
    std::atomic<int> revoked{0}, refused{0};
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        for (int i = 0; i < each; ++i) {
          const auto outcome = store->revoke_for("shared", uuid(), clock.now() + 100, limit);
          (outcome == RevokeOutcome::revoked ? revoked : refused)++;
        }
      });
    for (auto& t : pool) t.join();
    CHECK(revoked.load() == static_cast<int>(limit));
    CHECK(refused.load() == threads * each - static_cast<int>(limit));
    CHECK(store->outstanding_for("shared") == std::optional<std::size_t>(limit));
  }
  const std::string text = iwsec_test::read_file(journal.path());
  CHECK(std::count(text.begin(), text.end(), '\n') == 25);
}
