// docs/endpoints.md: each route answers exactly the same with one trailing
// slash appended to its path (Infoworks' own utility scripts call
// `/v3/security/token/access/`), the 405 and OPTIONS answers included; the
// metrics' `route` label and the lockout treat both spellings as one route;
// two slashes or other spellings stay the host's 404.

#include <catch2/catch.hpp>

#include <memory>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"

using namespace iwsec_http;
using iwsec_test::basic;

namespace {

std::string slash(const char* path) { return std::string(path) + "/"; }

// Two answers are the same but for what differs on every answer (a new token).
void check_same_answer(const httplib::Response& a, const httplib::Response& b) {
  CHECK(a.status == b.status);
  CHECK(a.get_header_value("Content-Type") == b.get_header_value("Content-Type"));
  CHECK(a.get_header_value("WWW-Authenticate") == b.get_header_value("WWW-Authenticate"));
  CHECK(a.get_header_value("Allow") == b.get_header_value("Allow"));
  CHECK(a.get_header_value("Retry-After") == b.get_header_value("Retry-After"));
}

}  // namespace

TEST_CASE("trailing slash: every route answers as without it", "[paths][trailing-slash]") {
  Fixture f;
  Account a = add_account(f.users, "slash@example.com", "slash password");
  f.start();
  auto c = f.client();

  // authenticate/ : a token, with user_id, as the slash-less route gives.
  const std::string by_password =
      token_of_success(call(c, "GET", slash(kAuthenticate), auth(basic(a.email, a.password))), &a.user_id);
  CHECK(jwt_subject(by_password) == jwt_subject(login(c, a)));
  // token/access/ : the refresh-token exchange the utility scripts make.
  const std::string by_refresh =
      token_of_success(call(c, "GET", slash(kAccess), auth("Basic " + a.refresh_token)), nullptr);
  CHECK(jwt_subject(by_refresh) == jwt_subject(exchange_refresh(c, a.refresh_token)));
  // token/validate/ : the same is_valid answer.
  for (const std::string& token : {by_password, by_refresh, std::string("garbage")}) {
    const auto with = call(c, "GET", slash(kValidate), bearer(token));
    const auto without = call(c, "GET", kValidate, bearer(token));
    check_same_answer(with, without);
    CHECK(with.body == without.body);
  }
  CHECK(is_valid(c, by_refresh));
  // DELETE token/access/ : revokes.
  const auto revoked = call(c, "DELETE", slash(kAccess), bearer(by_refresh));
  CHECK(string_member(ok_body(revoked, 2), "result") == "Token successfully blacklisted");
  CHECK_FALSE(is_valid(c, by_refresh));
  CHECK(is_valid(c, by_password));
  // DELETE token/refresh/ : rotates (old refresh token and access tokens end).
  const auto rotated = call(c, "DELETE", slash(kRefresh), auth(basic(a.email, a.password)));
  const auto o = ok_body(rotated, 3);
  CHECK(string_member(o, "result") == "Successfully Blacklisted Refresh Token.");
  const std::string fresh = string_member(o, "refresh_token");
  CHECK_FALSE(is_valid(c, by_password));
  check_rejected(call(c, "GET", slash(kAccess), auth("Basic " + a.refresh_token)));
  a.refresh_token = fresh;
  exchange_refresh(c, a.refresh_token);

  // The refusals are the same bytes with and without the slash.
  for (const auto& [method, path, headers] : std::vector<std::tuple<std::string, const char*, httplib::Headers>>{
           {"GET", kAuthenticate, auth(basic(a.email, "wrong"))},
           {"GET", kAuthenticate, {}},
           {"GET", kAccess, auth("Basic not-a-refresh-token")},
           {"DELETE", kAccess, bearer("garbage")},
           {"GET", kValidate, {}},
           {"DELETE", kRefresh, auth("Bearer x")},
           {"GET", kAuthenticate, auth(basic(a.email, a.password) + "\x01")}}) {
    INFO(method << " " << path);
    const auto with = call(c, method, slash(path), headers);
    const auto without = call(c, method, path, headers);
    CHECK(with.status >= 400);
    check_same_answer(with, without);
    CHECK(with.body == without.body);
  }
}

TEST_CASE("trailing slash: other methods are the same 405 with Allow, OPTIONS the same 204",
          "[paths][trailing-slash][methods]") {
  Fixture f;
  const auto a = add_account(f.users, "slash405@example.com", "pw405");
  f.start();
  auto c = f.client();
  const struct {
    const char* method;
    const char* path;
  } cases[] = {{"POST", kAuthenticate}, {"PUT", kAuthenticate}, {"PATCH", kAuthenticate}, {"DELETE", kAuthenticate},
               {"POST", kAccess},       {"PUT", kAccess},       {"PATCH", kAccess},       {"POST", kValidate},
               {"PUT", kValidate},      {"PATCH", kValidate},   {"DELETE", kValidate},    {"POST", kRefresh},
               {"PUT", kRefresh},       {"PATCH", kRefresh},    {"GET", kRefresh}};
  for (const auto& k : cases) {
    INFO(k.method << " " << k.path << "/");
    const auto with = call(c, k.method, slash(k.path), auth(basic(a.email, a.password)));
    const auto without = call(c, k.method, k.path, auth(basic(a.email, a.password)));
    check_envelope(with, 405, "");
    REQUIRE(with.has_header("Allow"));
    CHECK(with.get_header_value("Allow") == without.get_header_value("Allow"));
    CHECK(with.body == without.body);
  }
  for (const char* path : {kAuthenticate, kAccess, kValidate, kRefresh}) {
    INFO("OPTIONS " << path << "/");
    const auto with = call(c, "OPTIONS", slash(path));
    CHECK(with.status == 204);
    CHECK(with.get_header_value("Allow") == call(c, "OPTIONS", path).get_header_value("Allow"));
  }
  // HEAD answers like GET, without a body.
  const auto head = call(c, "HEAD", slash(kValidate));
  CHECK(head.status == 401);
  CHECK(head.body.empty());
}

TEST_CASE("trailing slash: only one slash; other spellings stay the host's 404", "[paths][trailing-slash]") {
  Fixture f;
  const auto a = add_account(f.users, "slash404@example.com", "pw404");
  f.start();
  auto c = f.client();
  const std::string token = login(c, a);
  for (const char* path : {kAuthenticate, kAccess, kValidate, kRefresh}) {
    // (`%2F` is no other spelling: cpp-httplib decodes the path before routing.)
    for (const std::string& variant : {std::string(path) + "//", std::string(path) + "/.", std::string(path) + "/x",
                                       "/" + std::string(path), std::string(path) + "/%2F", std::string(path) + "%2F%2F"}) {
      for (const char* m : {"GET", "DELETE", "POST"}) {
        INFO(m << " " << variant);
        const auto r = call(c, m, variant, bearer(token));
        CHECK(r.status == 404);
        check_no_leak(r, token);
      }
    }
  }
  CHECK(iwsec::security_route_path("/v3/security/token/access/") == "/v3/security/token/access");
  CHECK(iwsec::security_route_path("/v3/security/token/access") == "/v3/security/token/access");
  CHECK(iwsec::security_route_path("/v3/security/token/access//") == "/v3/security/token/access//");
  CHECK(iwsec::security_route_path("/v3/domains/") == "/v3/domains/");
  CHECK(iwsec::security_route_path("/") == "/");
  CHECK(iwsec::security_route_path("") == "");
}

TEST_CASE("trailing slash: one metrics route label for both spellings", "[paths][trailing-slash][metrics]") {
  Fixture f;
  f.options.metrics = std::make_shared<iwsec::Metrics>();
  const auto a = add_account(f.users, "slashmetrics@example.com", "pw metrics");
  f.start();
  auto c = f.client();
  iwsec::Metrics& m = f.sec->metrics();
  const std::string token = token_of_success(call(c, "GET", slash(kAuthenticate), auth(basic(a.email, a.password))),
                                             &a.user_id);
  login(c, a);
  CHECK(m.histogram_of(iwsec::MetricsRoute::authenticate).count() == 2);
  CHECK(m.logins(iwsec::CheckResult::success) == 2);
  CHECK(is_valid(c, token));
  CHECK(ok_body(call(c, "GET", slash(kValidate), bearer(token)), 2).size() == 2);
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_validate).count() == 2);
  CHECK(m.validations(true) == 2);
  token_of_success(call(c, "GET", slash(kAccess), auth("Basic " + a.refresh_token)), nullptr);
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_access).count() == 1);
  CHECK(m.exchanges(iwsec::CheckResult::success) == 1);
  call(c, "DELETE", slash(kAccess), bearer(token));
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_revoke).count() == 1);
  CHECK(m.revocations() == 1);
  call(c, "DELETE", slash(kRefresh), auth(basic(a.email, a.password)));
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_refresh).count() == 1);
  // The rendered label set is the same fixed one: no route named with a slash.
  const std::string text = m.render();
  CHECK(text.find("route=\"token_access\"") != std::string::npos);
  CHECK(text.find("/\"") == std::string::npos);
  CHECK(text.find("route=\"/") == std::string::npos);
}

TEST_CASE("trailing slash: the lockout counts both spellings as one route", "[paths][trailing-slash][lockout]") {
  Fixture f;
  f.options.lockout.account_failures = 3;
  f.options.lockout.account_wait_increment = std::chrono::seconds(60);
  f.options.lockout.account_max_wait = std::chrono::seconds(900);
  const auto a = add_account(f.users, "slashlock@example.com", "pw lock");
  f.start();
  auto c = f.client();
  check_rejected(call(c, "GET", slash(kAuthenticate), auth(basic(a.email, "wrong 1"))));
  check_rejected(call(c, "GET", kAuthenticate, auth(basic(a.email, "wrong 2"))));
  check_rejected(call(c, "DELETE", slash(kRefresh), auth(basic(a.email, "wrong 3"))));
  // Locked now, whichever spelling and password route.
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", kAuthenticate}, {"GET", slash(kAuthenticate)}, {"DELETE", kRefresh}, {"DELETE", slash(kRefresh)}}) {
    INFO(method << " " << path);
    const auto r = call(c, method, path, auth(basic(a.email, a.password)));
    check_envelope(r, 429, "IW10031");
    CHECK(r.has_header("Retry-After"));
  }
  f.clock.advance(61);
  login(c, a);
}

TEST_CASE("trailing slash: tokens from the slash spellings pass the guard; revoked there, refused",
          "[paths][trailing-slash][guard]") {
  Fixture f;
  const auto a = add_account(f.users, "slashguard@example.com", "pw guard");
  f.sec = iwsec::mount_security_routes(f.server, f.users, f.signer, f.options);
  int calls = 0;
  f.server.Get("/v3/domains", f.sec->guard([&calls](const httplib::Request&, httplib::Response& res,
                                                   const iwsec::VerifiedToken& t) {
    ++calls;
    res.set_content(t.email(), "text/plain");
  }));
  f.running = std::make_unique<iwsec_test::RunningServer>(f.server);
  auto c = f.client();
  const std::string token = token_of_success(call(c, "GET", slash(kAccess), auth("Basic " + a.refresh_token)), nullptr);
  auto r = call(c, "GET", "/v3/domains", bearer(token));
  CHECK(r.status == 200);
  CHECK(r.body == a.email);
  CHECK(calls == 1);
  call(c, "DELETE", slash(kAccess), bearer(token));
  check_bearer_challenge(call(c, "GET", "/v3/domains", bearer(token)), true);
  CHECK(calls == 1);
  // The host's own route is the host's: no slash spelling added to it.
  CHECK(call(c, "GET", "/v3/domains/", bearer(token)).status == 404);
}
