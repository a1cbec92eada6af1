// The security routes under concurrent clients, over real HTTP with the
// server's own thread pool. Worker threads make no Catch2 assertions (Catch2
// is not thread-safe): they record what they saw, and the main thread checks.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include "support/http_fixture.hpp"

using namespace iwsec_http;
using iwsec_test::basic;

namespace {

constexpr int kThreads = 8;
constexpr int kIterations = 12;
constexpr int kRotateEvery = 4;  // a refresh rotation every 4th iteration

struct Answer {
  int status = -1;  // -1: no answer at all
  std::string body;
  std::string content_type;
};

Answer send(httplib::Client& c, const char* method, const std::string& path, const httplib::Headers& headers) {
  httplib::Request req;
  req.method = method;
  req.path = path;
  req.headers = headers;
  Answer a;
  if (auto r = c.send(req)) {
    a.status = r->status;
    a.body = r->body;
    a.content_type = r->get_header_value("Content-Type");
  }
  return a;
}

// Follows object members down @p path; the JSON value there, if any.
std::optional<picojson::value> json_at(const std::string& body, const std::vector<std::string>& path) {
  picojson::value v;
  if (!picojson::parse(v, body).empty()) return std::nullopt;
  for (const auto& key : path) {
    if (!v.is<picojson::object>()) return std::nullopt;
    const auto& o = v.get<picojson::object>();
    auto it = o.find(key);
    if (it == o.end()) return std::nullopt;
    const picojson::value next = it->second;
    v = next;
  }
  return v;
}

std::optional<std::string> json_string_at(const std::string& body, const std::vector<std::string>& path) {
  auto v = json_at(body, path);
  if (!v || !v->is<std::string>()) return std::nullopt;
  return v->get<std::string>();
}

// What one worker thread saw; checked on the main thread after the join.
struct ThreadLog {
  std::vector<std::string> errors;
  std::vector<std::string> revoked;  // access tokens it revoked
  std::vector<std::string> live;     // access tokens that must still be valid at the end
  std::vector<std::string> stale;    // access tokens minted before one of its rotations
  std::vector<std::string> dead_refresh;
  std::string refresh;
  std::map<int, int> statuses;
  int expected_406 = 0;
  int logins = 0, exchanges = 0, validations = 0, revocations = 0, rotations = 0;
};

class Worker {
 public:
  Worker(int port, Account account, ThreadLog& log) : client_("127.0.0.1", port), account_(std::move(account)), log_(log) {
    // httplib 0.11 listens with a backlog of 5: in a burst of connects some
    // wait for a SYN retransmission (about a second), so be generous.
    client_.set_connection_timeout(30);
    client_.set_read_timeout(30);
    log_.refresh = account_.refresh_token;
  }

  void run() {
    for (int i = 0; i < kIterations; ++i) {
      const auto by_password = login();
      const auto by_refresh = exchange(log_.refresh);
      if (!by_password || !by_refresh) return;
      expect_valid(*by_password, true, "fresh password token");
      expect_valid(*by_refresh, true, "fresh refresh token");

      revoke(*by_password);
      log_.revoked.push_back(*by_password);
      expect_valid(*by_password, false, "just revoked");
      expect_valid(*by_refresh, true, "sibling of a revoked token");
      log_.live.push_back(*by_refresh);

      if (i % kRotateEvery == kRotateEvery - 1) {
        const std::string old_refresh = log_.refresh;
        if (!rotate()) return;
        for (auto& t : log_.live) log_.stale.push_back(t);
        log_.live.clear();
        log_.dead_refresh.push_back(old_refresh);
        // The old refresh token is now a 406, the new one works.
        const Answer r = send(client_, "GET", kAccess, auth("Basic " + old_refresh));
        record(r);
        ++log_.expected_406;
        if (r.status != 406) error("old refresh token answered " + std::to_string(r.status));
        expect_valid(*by_refresh, false, "minted before the rotation");
      }
    }
  }

 private:
  void record(const Answer& r) {
    ++log_.statuses[r.status];
    if (r.status != -1 && r.content_type != kJsonType) error("content type " + r.content_type);
  }
  void error(const std::string& what) { log_.errors.push_back(account_.email + ": " + what); }

  std::optional<std::string> login() {
    ++log_.logins;
    const Answer r = send(client_, "GET", kAuthenticate, auth(basic(account_.email, account_.password)));
    record(r);
    auto token = json_string_at(r.body, {"result", "authentication_token"});
    auto user_id = json_string_at(r.body, {"result", "user_id"});
    if (r.status != 200 || !token || !user_id || *user_id != account_.user_id) {
      error("login answered " + std::to_string(r.status) + " " + r.body);
      return std::nullopt;
    }
    return token;
  }

  std::optional<std::string> exchange(const std::string& refresh) {
    ++log_.exchanges;
    const Answer r = send(client_, "GET", kAccess, auth("Basic " + refresh));
    record(r);
    auto token = json_string_at(r.body, {"result", "authentication_token"});
    if (r.status != 200 || !token) {
      error("exchange answered " + std::to_string(r.status) + " " + r.body);
      return std::nullopt;
    }
    return token;
  }

  void expect_valid(const std::string& token, bool expected, const char* what) {
    ++log_.validations;
    const Answer r = send(client_, "GET", kValidate, bearer(token));
    record(r);
    const auto v = json_at(r.body, {"result", "is_valid"});
    if (r.status != 200 || !v || !v->is<bool>()) {
      error(std::string("validate (") + what + ") answered " + std::to_string(r.status) + " " + r.body);
    } else if (v->get<bool>() != expected) {
      error(std::string("validate (") + what + ") said " + (v->get<bool>() ? "true" : "false"));
    }
  }

  void revoke(const std::string& token) {
    ++log_.revocations;
    const Answer r = send(client_, "DELETE", kAccess, bearer(token));
    record(r);
    if (r.status != 200 || json_string_at(r.body, {"result"}) != std::optional<std::string>("Token successfully blacklisted"))
      error("revoke answered " + std::to_string(r.status) + " " + r.body);
  }

  bool rotate() {
    ++log_.rotations;
    const Answer r = send(client_, "DELETE", kRefresh, auth(basic(account_.email, account_.password)));
    record(r);
    auto fresh = json_string_at(r.body, {"refresh_token"});
    if (r.status != 200 || !fresh || *fresh == log_.refresh) {
      error("rotation answered " + std::to_string(r.status) + " " + r.body);
      return false;
    }
    log_.refresh = *fresh;
    return true;
  }

  httplib::Client client_;
  Account account_;
  ThreadLog& log_;
};

// Start line for threads: each spins (yielding) until all are ready, so
// their requests overlap as much as the scheduler allows. No sleeping.
class StartLine {
 public:
  explicit StartLine(int n) : waiting_(n) {}
  void arrive_and_wait() {
    waiting_.fetch_sub(1);
    while (waiting_.load() > 0) std::this_thread::yield();
  }

 private:
  std::atomic<int> waiting_;
};

}  // namespace

TEST_CASE("8 concurrent clients mixing logins, exchanges, validations, revocations and rotations",
          "[concurrency]") {
  Fixture f;
  std::vector<Account> accounts;
  for (int t = 0; t < kThreads; ++t)
    accounts.push_back(add_account(f.users, "worker" + std::to_string(t) + "@example.com", "pw:" + std::to_string(t)));
  f.start();

  std::vector<ThreadLog> logs(kThreads);
  {
    StartLine start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        Worker w(f.running->port(), accounts[t], logs[t]);
        start.arrive_and_wait();
        w.run();
      });
    }
    for (auto& th : threads) th.join();
  }

  // Nothing unexpected happened on any thread.
  for (const auto& log : logs)
    for (const auto& e : log.errors) FAIL_CHECK(e);

  // Counts add up: every request answered, only 200s and the expected 406s.
  const int rotations_per_thread = kIterations / kRotateEvery;
  int total_requests = 0;
  for (const auto& log : logs) {
    CHECK(log.logins == kIterations);
    CHECK(log.exchanges == kIterations);
    CHECK(log.revocations == kIterations);
    CHECK(log.rotations == rotations_per_thread);
    CHECK(log.expected_406 == rotations_per_thread);
    CHECK(log.validations == 4 * kIterations + rotations_per_thread);
    std::map<int, int> expected = {{200, 7 * kIterations + 2 * rotations_per_thread}, {406, rotations_per_thread}};
    CHECK(log.statuses == expected);
    for (const auto& s : log.statuses) total_requests += s.second;
  }
  CHECK(total_requests == kThreads * (7 * kIterations + 3 * rotations_per_thread));

  // Afterwards, seen from one client: revoked and stale tokens are invalid,
  // the rest valid; old refresh tokens are refused, current ones work.
  auto c = f.client();
  std::set<std::string> all_tokens;
  std::size_t revoked = 0, stale = 0, live = 0;
  for (const auto& log : logs) {
    for (const auto& t : log.revoked) {
      CHECK_FALSE(is_valid(c, t));
      CHECK(f.sec->revocations().is_revoked(string_member(jwt_payload(t), "jti")));
      all_tokens.insert(t);
      ++revoked;
    }
    for (const auto& t : log.stale) {
      CHECK_FALSE(is_valid(c, t));
      all_tokens.insert(t);
      ++stale;
    }
    for (const auto& t : log.live) {
      CHECK(is_valid(c, t));
      all_tokens.insert(t);
      ++live;
    }
    for (const auto& r : log.dead_refresh) check_rejected(call(c, "GET", kAccess, auth("Basic " + r)));
    CHECK(jwt_subject(exchange_refresh(c, log.refresh)).second == "refresh_token");
  }
  CHECK(revoked == static_cast<std::size_t>(kThreads * kIterations));
  CHECK(live + stale == static_cast<std::size_t>(kThreads * kIterations));
  CHECK(all_tokens.size() == revoked + stale + live);  // every token distinct

  // Each user's generation counts its rotations.
  for (const auto& a : accounts) {
    const auto status = f.users.status_of(a.email);
    REQUIRE(status);
    CHECK(status->refresh_generation == rotations_per_thread);
  }
}

namespace {
void start_with_full_backlog(Fixture& f);
}  // namespace

TEST_CASE("100 parallel refresh rotations of one account leave exactly the last stored token working",
          "[concurrency][refresh]") {
  Fixture f;
  // The check below presents all 100 rotated-away refresh tokens from one
  // address: 100 failures, which the per-client throttle would (rightly) stop.
  f.options.lockout.client_failures = 1000;
  // An account admits at most account_failures (30) attempts in flight at
  // once (test_lockout covers that cap); a server whose pool runs more than
  // 30 of these 100 at once (newer cpp-httplib grows its pool) would refuse
  // some with 429. This test is about rotation, so the cap is lifted above
  // the burst. Likewise the hashing gate's queue (64 waiting past one check
  // per core; past that a login gets 503): a pool that grows could put more
  // of the 100 in it at once.
  f.options.lockout.account_failures = 1000;
  f.options.max_queued_hashes = 1000;
  const auto a = add_account(f.users, "contended@example.com", "contended:pw");
  start_with_full_backlog(f);
  auto c = f.client();
  const std::string before = login(c, a);

  constexpr int kRotations = 100;
  std::vector<Answer> answers(kRotations);
  {
    StartLine start(kRotations);
    std::vector<std::thread> threads;
    for (int i = 0; i < kRotations; ++i) {
      threads.emplace_back([&, i] {
        httplib::Client client("127.0.0.1", f.running->port());
        client.set_connection_timeout(30);  // see Worker: a burst of connects may need a SYN retry
        client.set_read_timeout(30);
        start.arrive_and_wait();
        answers[i] = send(client, "DELETE", kRefresh, auth(basic(a.email, a.password)));
      });
    }
    for (auto& th : threads) th.join();
  }

  std::set<std::string> tokens;
  for (const auto& r : answers) {
    INFO("body " << r.body);
    REQUIRE(r.status == 200);
    CHECK(r.content_type == kJsonType);
    CHECK(json_string_at(r.body, {"result"}) == std::optional<std::string>("Successfully Blacklisted Refresh Token."));
    const auto t = json_string_at(r.body, {"refresh_token"});
    REQUIRE(t);
    tokens.insert(*t);
  }
  REQUIRE(tokens.size() == static_cast<std::size_t>(kRotations));  // all distinct

  const auto stored = f.users.find_by_email(a.email);
  REQUIRE(stored);
  CHECK(stored->refresh_generation == kRotations);

  int working = 0;
  std::string winner;
  for (const auto& t : tokens) {
    const auto r = call(c, "GET", kAccess, auth("Basic " + t));
    if (r.status == 200) {
      ++working;
      winner = t;
    } else {
      check_rejected(r);
    }
  }
  CHECK(working == 1);
  CHECK(iwsec::refresh_token_hash(winner) == stored->refresh_token_sha256);
  check_rejected(call(c, "GET", kAccess, auth("Basic " + a.refresh_token)));

  // Tokens minted before the rotations are stale; the winner's tokens are good.
  CHECK_FALSE(is_valid(c, before));
  CHECK(is_valid(c, exchange_refresh(c, winner)));
  CHECK(is_valid(c, login(c, a)));
}

TEST_CASE("concurrent revocations and validations of one shared token agree", "[concurrency][revoke]") {
  Fixture f;
  const auto a = add_account(f.users, "shared@example.com", "shared-pw");
  f.start();
  auto c = f.client();

  // Several tokens, each revoked by one thread while all threads validate all of them.
  constexpr int kTokens = 8;
  std::vector<std::string> tokens;
  for (int i = 0; i < kTokens; ++i) tokens.push_back(i % 2 ? login(c, a) : exchange_refresh(c, a.refresh_token));
  const std::string untouched = login(c, a);

  std::vector<std::vector<std::string>> errors(kTokens);
  {
    StartLine start(kTokens);
    std::vector<std::thread> threads;
    for (int i = 0; i < kTokens; ++i) {
      threads.emplace_back([&, i] {
        httplib::Client client("127.0.0.1", f.running->port());
        client.set_connection_timeout(30);  // see Worker: a burst of connects may need a SYN retry
        client.set_read_timeout(30);
        start.arrive_and_wait();
        for (int k = 0; k < kTokens; ++k) {
          const Answer v = send(client, "GET", kValidate, bearer(tokens[(i + k) % kTokens]));
          if (v.status != 200 || !json_at(v.body, {"result", "is_valid"}))
            errors[i].push_back("validate answered " + std::to_string(v.status));
        }
        const Answer r = send(client, "DELETE", kAccess, bearer(tokens[i]));
        if (r.status != 200) errors[i].push_back("revoke answered " + std::to_string(r.status));
        // Once our own revocation is acknowledged, nobody may see the token valid.
        const Answer v = send(client, "GET", kValidate, bearer(tokens[i]));
        if (json_at(v.body, {"result", "is_valid"}).value_or(picojson::value(true)).evaluate_as_boolean())
          errors[i].push_back("revoked token still valid");
        const Answer again = send(client, "DELETE", kAccess, bearer(tokens[i]));
        if (again.status != 200) errors[i].push_back("second revoke answered " + std::to_string(again.status));
      });
    }
    for (auto& th : threads) th.join();
  }
  for (const auto& list : errors)
    for (const auto& e : list) FAIL_CHECK(e);
  for (const auto& t : tokens) CHECK_FALSE(is_valid(c, t));
  CHECK(is_valid(c, untouched));
}

namespace {

// Starts @p f with the full accept backlog instead of httplib 0.11's 5 (as
// iwsec-server does), so a burst of 100 connects is not left to SYN retries.
void start_with_full_backlog(Fixture& f) {
  auto listening = std::make_shared<socket_t>(INVALID_SOCKET);
  f.server.set_socket_options([listening](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    *listening = sock;
  });
  f.start();
  REQUIRE(*listening != INVALID_SOCKET);
  REQUIRE(::listen(*listening, SOMAXCONN) == 0);
}

// @p n requests sent at once, each from its own client (connection), made
// by @p request(i); their answers in order.
std::vector<Answer> in_parallel(int port, int n, const std::function<Answer(httplib::Client&, int)>& request) {
  std::vector<Answer> answers(n);
  StartLine start(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      httplib::Client client("127.0.0.1", port);
      client.set_connection_timeout(30);  // see Worker: a burst of connects may need a SYN retry
      client.set_read_timeout(30);
      start.arrive_and_wait();
      answers[i] = request(client, i);
    });
  }
  for (auto& th : threads) th.join();
  return answers;
}

std::int64_t generation_of(const std::string& token) {
  const auto payload = jwt_payload(token);
  const auto& gen = member(payload, "gen");
  REQUIRE(gen.is<double>());
  return static_cast<std::int64_t>(gen.get<double>());
}

}  // namespace

TEST_CASE("100 parallel exchanges of one valid refresh token all succeed with distinct valid tokens",
          "[concurrency][access]") {
  Fixture f;
  const auto a = add_account(f.users, "exchanges@example.com", "exchanges-pw");
  start_with_full_backlog(f);
  constexpr int kExchanges = 100;
  const auto answers = in_parallel(f.running->port(), kExchanges, [&](httplib::Client& c, int) {
    return send(c, "GET", kAccess, auth("Basic " + a.refresh_token));
  });
  auto c = f.client();
  std::set<std::string> jtis;
  for (const auto& r : answers) {
    INFO("body " << r.body);
    REQUIRE(r.status == 200);
    CHECK(r.content_type == kJsonType);
    const auto token = json_string_at(r.body, {"result", "authentication_token"});
    REQUIRE(token);
    CHECK(jwt_subject(*token) == std::make_pair(a.email, std::string("refresh_token")));
    CHECK(is_valid(c, *token));
    jtis.insert(string_member(jwt_payload(*token), "jti"));
  }
  CHECK(jtis.size() == static_cast<std::size_t>(kExchanges));
  CHECK(is_valid(c, exchange_refresh(c, a.refresh_token)));  // still the current refresh token
}

TEST_CASE("100 parallel exchanges racing a rotation: each either succeeds with an old-generation token or is a "
          "406, none after the rotation's 200",
          "[concurrency][access][refresh]") {
  Fixture f;
  // Up to 100 refused exchanges from one address (all of them, when the
  // rotation wins the race early), then the old token once more: past the
  // per-client throttle, which would (rightly) stop the fresh token's check.
  f.options.lockout.client_failures = 1000;
  const auto a = add_account(f.users, "race@example.com", "race-pw");
  start_with_full_backlog(f);
  constexpr int kExchanges = 100;
  std::atomic<bool> rotated{false};
  // One byte per thread (a vector<bool> packs eight threads' flags into one word: a race).
  std::vector<char> sent_after_rotation(kExchanges + 1, 0);
  const auto answers = in_parallel(f.running->port(), kExchanges + 1, [&](httplib::Client& c, int i) {
    if (i == kExchanges / 2) {  // one of them rotates
      Answer r = send(c, "DELETE", kRefresh, auth(basic(a.email, a.password)));
      rotated.store(true);
      return r;
    }
    sent_after_rotation[i] = rotated.load();
    return send(c, "GET", kAccess, auth("Basic " + a.refresh_token));
  });

  const Answer& rotation = answers[kExchanges / 2];
  REQUIRE(rotation.status == 200);
  const auto fresh = json_string_at(rotation.body, {"refresh_token"});
  REQUIRE(fresh);

  auto c = f.client();
  int succeeded = 0, refused = 0;
  for (int i = 0; i <= kExchanges; ++i) {
    if (i == kExchanges / 2) continue;
    const Answer& r = answers[i];
    INFO("exchange " << i << ": " << r.status << " " << r.body);
    if (r.status == 200) {
      ++succeeded;
      CHECK_FALSE(sent_after_rotation[i]);  // a request sent after the rotation's 200 cannot use the old token
      const auto token = json_string_at(r.body, {"result", "authentication_token"});
      REQUIRE(token);
      CHECK(generation_of(*token) == 0);  // minted from the old refresh token ...
      CHECK_FALSE(is_valid(c, *token));   // ... so invalid now that the generation moved on
    } else {
      ++refused;
      REQUIRE(r.status == 406);
      CHECK(r.content_type == kJsonType);
      CHECK(json_string_at(r.body, {"iw_code"}) == std::optional<std::string>("IW10031"));
    }
  }
  CHECK(succeeded + refused == kExchanges);
  INFO(succeeded << " exchanges succeeded before the rotation, " << refused << " were refused after it");
  // Afterwards the old token is refused and the new one works, with generation 1.
  check_rejected(call(c, "GET", kAccess, auth("Basic " + a.refresh_token)));
  const std::string after = exchange_refresh(c, *fresh);
  CHECK(generation_of(after) == 1);
  CHECK(is_valid(c, after));
}
