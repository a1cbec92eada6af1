// Refresh-token lifetime and the audit events (docs/operations.md, "Audit
// trail"), with an injected clock: a refresh token works until
// Options::refresh_token_lifetime after its issue time, then is answered like
// an unknown one; a rotation restarts it; Options::on_audit receives each
// event, never a secret; a users file from before issue times gets its first
// load's time, kept across reopening.

#include <catch2/catch.hpp>

#include <mutex>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace iwsec_http;

namespace {

struct Recorder {
  std::mutex mutex;
  std::vector<iwsec::AuditEvent> events;
  iwsec::AuditHook hook() {
    return [this](const iwsec::AuditEvent& e) {
      std::lock_guard<std::mutex> lock(mutex);
      events.push_back(e);
    };
  }
  std::vector<iwsec::AuditEvent> take() {
    std::lock_guard<std::mutex> lock(mutex);
    auto out = std::move(events);
    events.clear();
    return out;
  }
};

std::string access_with(httplib::Client& c, const std::string& refresh_token, int& status) {
  const auto r = call(c, "GET", kAccess, auth("Basic " + refresh_token));
  status = r.status;
  return r.body;
}

}  // namespace

TEST_CASE("refresh-token lifetime: works until issue time + lifetime, then 406 like an unknown token",
          "[refresh_lifetime]") {
  Fixture f;
  Recorder audit;
  f.options.refresh_token_lifetime = std::chrono::seconds(100);
  f.options.on_audit = audit.hook();
  const auto created = iwsec::create_user(f.users, "ada@example.com", "pw-ada", kRounds, f.clock.now());
  REQUIRE(created.status == iwsec::StoreStatus::ok);
  f.start();
  auto c = f.client();
  int status = 0;
  f.clock.advance(99);
  access_with(c, created.refresh_token, status);
  CHECK(status == 200);
  f.clock.advance(1);
  const std::string expired_body = access_with(c, created.refresh_token, status);
  CHECK(status == 406);
  const std::string unknown_body = access_with(c, iwsec::generate_refresh_token(), status);
  CHECK(status == 406);
  CHECK(expired_body == unknown_body);

  const auto events = audit.take();
  REQUIRE(events.size() == 3);
  CHECK(events[0].event == "token_exchange");
  CHECK(events[0].result == "success");
  CHECK(events[0].user_id == created.user_id);
  CHECK(events[1].result == "failure");
  CHECK(events[1].reason == "expired_refresh_token");
  CHECK(events[1].email == "ada@example.com");
  CHECK(events[2].reason == "unknown_refresh_token");
  CHECK(events[2].user_id.empty());
  for (const auto& e : events) {
    CHECK(e.client == "127.0.0.1");
    const std::string line = iwsec::audit_json_line(e);
    CHECK(line.find(created.refresh_token) == std::string::npos);
  }

  // A rotation issues a token with a fresh lifetime.
  const auto r = call(c, "DELETE", kRefresh, auth("Basic " + iwsec::base64_encode("ada@example.com:pw-ada")));
  REQUIRE(r.status == 200);
  const std::string fresh = string_member(as_object(parse_json(r.body)), "refresh_token");
  CHECK(f.users.find_by_email("ada@example.com")->refresh_token_issued_at == f.clock.now());
  f.clock.advance(99);
  access_with(c, fresh, status);
  CHECK(status == 200);
  f.clock.advance(1);
  access_with(c, fresh, status);
  CHECK(status == 406);
  bool rotation_audited = false;
  for (const auto& e : audit.take()) {
    rotation_audited = rotation_audited || (e.event == "refresh_rotation" && e.result == "success");
    CHECK(iwsec::audit_json_line(e).find("pw-ada") == std::string::npos);
    CHECK(iwsec::audit_json_line(e).find(fresh) == std::string::npos);
  }
  CHECK(rotation_audited);
}

TEST_CASE("refresh-token lifetime 0 (the default): tokens do not expire", "[refresh_lifetime]") {
  Fixture f;
  const auto created = iwsec::create_user(f.users, "ada@example.com", "pw-ada", kRounds, f.clock.now());
  f.start();
  auto c = f.client();
  f.clock.advance(10LL * 366 * 24 * 3600);
  int status = 0;
  access_with(c, created.refresh_token, status);
  CHECK(status == 200);
}

TEST_CASE("audit: logins, locks and revocations reach Options::on_audit", "[audit]") {
  Fixture f;
  Recorder audit;
  f.options.on_audit = audit.hook();
  f.options.lockout.account_failures = 2;
  const Account a = add_account(f.users, "ada@example.com", "pw-ada");
  f.start();
  auto c = f.client();
  const auto good = auth("Basic " + iwsec::base64_encode("Ada@Example.com:pw-ada"));
  const auto bad = auth("Basic " + iwsec::base64_encode("ada@example.com:wrong"));
  const auto ok = call(c, "GET", kAuthenticate, good);
  REQUIRE(ok.status == 200);
  const std::string token =
      string_member(as_object(member(as_object(parse_json(ok.body)), "result")), "authentication_token");
  CHECK(call(c, "DELETE", kAccess, bearer(token)).status == 200);
  CHECK(call(c, "GET", kAuthenticate, bad).status == 406);
  CHECK(call(c, "GET", kAuthenticate, bad).status == 406);
  CHECK(call(c, "GET", kAuthenticate, good).status == 429);
  const auto events = audit.take();
  std::vector<std::string> seen;
  for (const auto& e : events) seen.push_back(e.event + "/" + e.result + "/" + e.reason);
  CHECK(seen == std::vector<std::string>{"login/success/", "revocation/success/", "login/failure/bad_credentials",
                                          // the lock the second failure set, then that failure
                                          "lock/locked/account_failures", "login/failure/bad_credentials",
                                          "login/locked/locked"});
  CHECK(events[0].email == "ada@example.com");  // lower-cased
  CHECK(events[0].user_id == a.user_id);
  REQUIRE(events.size() == 6);
  CHECK(events[3].until == f.clock.now() + 60);
  CHECK(events[3].email == "ada@example.com");
  for (const auto& e : events) {
    const std::string line = iwsec::audit_json_line(e);
    CHECK(line.find("pw-ada") == std::string::npos);
    CHECK(line.find(token) == std::string::npos);
    CHECK(line.back() == '\n');
    CHECK(parse_json(line.substr(0, line.size() - 1)).is<picojson::object>());
  }
}

TEST_CASE("audit: a client's X-Request-Id is kept only when sane_request_id accepts it", "[audit]") {
  CHECK(iwsec::sane_request_id("a.b_c:d-E9"));
  CHECK(iwsec::sane_request_id(std::string(64, 'x')));
  CHECK_FALSE(iwsec::sane_request_id(std::string(65, 'x')));
  CHECK_FALSE(iwsec::sane_request_id(""));
  CHECK_FALSE(iwsec::sane_request_id("a b"));
  CHECK_FALSE(iwsec::sane_request_id("a/b"));
  CHECK_FALSE(iwsec::sane_request_id("a\"\\n"));

  Fixture f;
  Recorder audit;
  f.options.on_audit = audit.hook();
  add_account(f.users, "ada@example.com", "pw-ada");
  f.start();
  auto c = f.client();
  for (const char* id : {"req-42.a:b_c", "not sane/at all"}) {
    auto headers = auth("Basic " + iwsec::base64_encode("ada@example.com:pw-ada"));
    headers.emplace("X-Request-Id", id);
    REQUIRE(call(c, "GET", kAuthenticate, headers).status == 200);
  }
  const auto events = audit.take();
  REQUIRE(events.size() == 2);
  CHECK(events[0].request_id == "req-42.a:b_c");
  CHECK(events[1].request_id.empty());
}

TEST_CASE("audit_json_line: RFC 3339 UTC with milliseconds, only the fields set", "[audit]") {
  iwsec::AuditEvent e;
  e.time_ms = 1796609207123;
  e.event = "user_disabled";
  e.email = "a@b.c";
  e.actor = "root";
  e.result = "success";
  CHECK(iwsec::audit_json_line(e) ==
        "{\"time\":\"2026-12-07T02:06:47.123Z\",\"event\":\"user_disabled\",\"email\":\"a@b.c\",\"actor\":\"root\","
        "\"result\":\"success\"}\n");
}

TEST_CASE("users file without issue times: the first load's time, kept across reopening", "[refresh_lifetime]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.path + "/users.json";
  iwsec_test::write_file(path,
             "{\"version\": 1, \"users\": [{\"user_id\": \"u1\", \"email\": \"a@example.com\", \"password_hash\": "
             "\"$pbkdf2-sha256$1000$c2FsdA$Zm9v\", \"refresh_token_sha256\": \"ab\", \"refresh_generation\": 0, "
             "\"disabled\": false}]}\n");
  const std::int64_t before = iwsec::system_now();
  std::int64_t stamped = 0;
  {
    iwsec::JsonFileUserStore store(path);
    stamped = store.find_by_email("a@example.com")->refresh_token_issued_at;
    CHECK(stamped >= before);
    CHECK(stamped <= iwsec::system_now());
  }
  CHECK(iwsec_test::read_file(path).find("\"refresh_token_issued_at\": " + std::to_string(stamped)) != std::string::npos);
  iwsec::JsonFileUserStore again(path);
  CHECK(again.find_by_email("a@example.com")->refresh_token_issued_at == stamped);
}
