// Metrics of the security routes (docs/operations.md): the counters move with
// the traffic, the histograms count by route, the text is Prometheus 0.0.4,
// lock starts reach the metrics and the on_lockout hook once each, and the
// outcome of a token check (with its rejection reason) reaches the host's
// logger through take_token_check().

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/http_fixture.hpp"

using namespace iwsec_http;

namespace {

std::string basic(const std::string& email, const std::string& password) {
  return "Basic " + iwsec::base64_encode(email + ":" + password);
}

}  // namespace

TEST_CASE("metrics count logins, exchanges, validations, revocations and lockouts", "[metrics]") {
  Fixture f;
  f.options.lockout.account_failures = 3;
  f.options.metrics = std::make_shared<iwsec::Metrics>();
  std::mutex events_mutex;
  std::vector<iwsec::LockoutEvent> events;
  f.options.on_lockout = [&](const iwsec::LockoutEvent& e) {
    std::lock_guard<std::mutex> lock(events_mutex);
    events.push_back(e);
  };
  f.start();
  REQUIRE(&f.sec->metrics() == f.options.metrics.get());
  auto c = f.client();
  const Account a = add_account(f.users, "Ada@Example.com", "correct horse");
  iwsec::Metrics& m = f.sec->metrics();

  const std::string token = login(c, a);
  CHECK(m.logins(iwsec::CheckResult::success) == 1);
  const std::string second = exchange_refresh(c, a.refresh_token);
  CHECK(m.exchanges(iwsec::CheckResult::success) == 1);
  check_rejected(call(c, "GET", kAccess, auth("Basic not-a-refresh-token")));
  CHECK(m.exchanges(iwsec::CheckResult::failure) == 1);

  CHECK(is_valid(c, token));
  CHECK(is_valid(c, token));
  CHECK_FALSE(is_valid(c, token + "x"));
  CHECK(m.validations(true) == 2);
  CHECK(m.validations(false) == 1);
  revoke_access(c, second);
  CHECK(m.revocations() == 1);
  CHECK_FALSE(is_valid(c, second));
  CHECK(m.validations(false) == 2);

  for (int i = 0; i < 3; ++i) check_rejected(call(c, "GET", kAuthenticate, auth(basic(a.email, "wrong"))));
  CHECK(m.logins(iwsec::CheckResult::failure) == 3);
  CHECK(m.lockouts(true) == 1);
  CHECK(m.lockouts(false) == 0);
  CHECK(call(c, "GET", kAuthenticate, auth(basic(a.email, a.password))).status == 429);
  CHECK(m.logins(iwsec::CheckResult::locked) == 1);
  CHECK(m.lockouts(true) == 1);  // a refused attempt starts no new lock
  {
    std::lock_guard<std::mutex> lock(events_mutex);
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == iwsec::LockoutEvent::Kind::account);
    CHECK(events[0].subject == "ada@example.com");
    CHECK(events[0].until == f.clock.now() + 60);
  }

  const auto validate = m.histogram_of(iwsec::MetricsRoute::token_validate);
  CHECK(validate.count() == 4);
  CHECK(validate.sum_seconds > 0);
  CHECK(m.histogram_of(iwsec::MetricsRoute::authenticate).count() == 5);
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_access).count() == 2);
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_revoke).count() == 1);
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_refresh).count() == 0);
  for (std::size_t b = 1; b < validate.cumulative.size(); ++b) CHECK(validate.cumulative[b] >= validate.cumulative[b - 1]);
}

TEST_CASE("a blocked client is one lockout event, under its client key", "[metrics]") {
  Fixture f;
  f.options.lockout.client_failures = 2;
  std::vector<iwsec::LockoutEvent> events;
  std::mutex events_mutex;
  f.options.on_lockout = [&](const iwsec::LockoutEvent& e) {
    std::lock_guard<std::mutex> lock(events_mutex);
    events.push_back(e);
  };
  f.start();
  auto c = f.client();
  for (int i = 0; i < 2; ++i) check_rejected(call(c, "GET", kAccess, auth("Basic nope")));
  CHECK(call(c, "GET", kAccess, auth("Basic nope")).status == 429);
  CHECK(f.sec->metrics().lockouts(false) == 1);
  CHECK(f.sec->metrics().exchanges(iwsec::CheckResult::locked) == 1);
  std::lock_guard<std::mutex> lock(events_mutex);
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == iwsec::LockoutEvent::Kind::client);
  CHECK(events[0].subject == "127.0.0.1");
}

TEST_CASE("render() is Prometheus text with every family, label and bucket", "[metrics]") {
  iwsec::Metrics m;
  m.count_login(iwsec::CheckResult::failure);
  m.count_validation(false);
  m.observe(iwsec::MetricsRoute::token_validate, std::chrono::microseconds(30));
  m.observe(iwsec::MetricsRoute::token_validate, std::chrono::seconds(20));
  double lag = 0.25;
  m.add_gauge("iwsec_cluster_lag_seconds", "Seconds behind the database.", [&] { return lag; });
  CHECK_THROWS_AS(m.add_gauge("iwsec_cluster_lag_seconds", "again", [] { return 0.0; }), std::invalid_argument);
  CHECK_THROWS_AS(m.add_gauge("iwsec_logins_total", "taken", [] { return 0.0; }), std::invalid_argument);
  CHECK_THROWS_AS(m.add_gauge("iwsec bad name", "x", [] { return 0.0; }), std::invalid_argument);
  CHECK_THROWS_AS(m.add_gauge("iwsec_x", "two\nlines", [] { return 0.0; }), std::invalid_argument);
  const std::string text = m.render();
  INFO(text);
  for (const char* line :
       {"# TYPE iwsec_logins_total counter\n", "iwsec_logins_total{result=\"failure\"} 1\n",
        "iwsec_logins_total{result=\"locked\"} 0\n", "iwsec_token_exchanges_total{result=\"success\"} 0\n",
        "iwsec_validations_total{result=\"invalid\"} 1\n", "iwsec_validations_total{result=\"valid\"} 0\n",
        "# TYPE iwsec_revocations_total counter\niwsec_revocations_total 0\n",
        "# TYPE iwsec_lockouts_total counter\niwsec_lockouts_total 0\n", "# TYPE iwsec_request_duration_seconds histogram\n",
        "iwsec_request_duration_seconds_bucket{route=\"token_validate\",le=\"0.0001\"} 1\n",
        "iwsec_request_duration_seconds_bucket{route=\"token_validate\",le=\"10\"} 1\n",
        "iwsec_request_duration_seconds_bucket{route=\"token_validate\",le=\"+Inf\"} 2\n",
        "iwsec_request_duration_seconds_count{route=\"token_validate\"} 2\n",
        "iwsec_request_duration_seconds_sum{route=\"token_validate\"} 20.00003\n",
        "iwsec_request_duration_seconds_count{route=\"authenticate\"} 0\n",
        "# TYPE iwsec_cluster_lag_seconds gauge\niwsec_cluster_lag_seconds 0.25\n"})
    CHECK(text.find(line) != std::string::npos);
  CHECK(text.back() == '\n');
  lag = std::nan("");
  CHECK(m.render().find("iwsec_cluster_lag_seconds NaN\n") != std::string::npos);
}

TEST_CASE("metrics updates from many threads all count", "[metrics]") {
  iwsec::Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        m.count_validation(true);
        m.observe(iwsec::MetricsRoute::token_validate, std::chrono::microseconds(i % 700));
      }
    });
  for (auto& t : threads) t.join();
  CHECK(m.validations(true) == 40000);
  CHECK(m.histogram_of(iwsec::MetricsRoute::token_validate).count() == 40000);
}

TEST_CASE("take_token_check gives the host's logger the validation outcome and its reason, once", "[metrics]") {
  Fixture f;
  std::mutex seen_mutex;
  std::vector<std::string> seen;
  f.server.set_logger([&](const httplib::Request& req, const httplib::Response&) {
    const auto check = iwsec::take_token_check(req);
    std::string line = req.path + " ";
    line += !check ? "-" : check->valid ? "valid" : std::string("invalid:") + iwsec::to_string(check->rejection);
    line += iwsec::take_token_check(req) ? " again" : "";
    std::lock_guard<std::mutex> lock(seen_mutex);
    seen.push_back(line);
  });
  f.sec = iwsec::mount_security_routes(f.server, f.users, f.signer, f.options);
  f.server.Get("/v3/domains", f.sec->guard([](const httplib::Request&, httplib::Response& res, const iwsec::VerifiedToken&) {
    res.set_content("{}", "application/json");
  }));
  f.running = std::make_unique<iwsec_test::RunningServer>(f.server);
  auto c = f.client();
  const Account a = add_account(f.users, "ada@example.com", "correct horse");
  const std::string token = login(c, a);
  const std::string other = login(c, a);
  CHECK(is_valid(c, token));
  // The signature's first symbol carries six whole bits: any other symbol is
  // a canonical encoding of another MAC (a bad signature, never malformed).
  std::string forged = token;
  const std::size_t mac = forged.rfind('.') + 1;
  forged[mac] = forged[mac] == 'A' ? 'B' : 'A';
  CHECK_FALSE(is_valid(c, forged));
  revoke_access(c, other);
  CHECK_FALSE(is_valid(c, other));
  CHECK_FALSE(is_valid(c, "not.a.token"));
  CHECK(call(c, "GET", "/v3/domains", bearer(other)).status == 401);
  CHECK(call(c, "GET", "/v3/domains", bearer(token)).status == 200);
  f.clock.advance(3600);
  CHECK_FALSE(is_valid(c, token));
  rotate_refresh(c, a);
  f.clock.set(f.clock.now() - 3600);
  CHECK_FALSE(is_valid(c, token));
  // logger runs after the answer is written: wait for the lines, bounded.
  const auto lines = [&] {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard<std::mutex> lock(seen_mutex);
        if (seen.size() >= 12) return seen;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::lock_guard<std::mutex> lock(seen_mutex);
    return seen;
  }();
  INFO("lines: " << lines.size());
  REQUIRE(lines.size() >= 12);
  // Each request is logged on its own connection's thread, so in any order.
  std::vector<std::string> got = lines, want = {
      "/v3/security/authenticate -", "/v3/security/authenticate -",
      "/v3/security/token/validate valid", "/v3/security/token/validate invalid:bad_signature",
      "/v3/security/token/access -", "/v3/security/token/validate invalid:revoked",
      "/v3/security/token/validate invalid:malformed", "/v3/domains invalid:revoked", "/v3/domains valid",
      "/v3/security/token/validate invalid:expired", "/v3/security/token/refresh -",
      "/v3/security/token/validate invalid:rotated"};
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  CHECK(got == want);
}

TEST_CASE("add_counter() renders a counter read at render time; its name must end in _total", "[metrics]") {
  iwsec::Metrics m;
  std::uint64_t dropped = 0;
  m.add_counter("iwsec_access_log_dropped_lines_total", "Lines dropped.", [&] { return static_cast<double>(dropped); });
  CHECK_THROWS_AS(m.add_counter("iwsec_dropped_lines", "no _total", [] { return 0.0; }), std::invalid_argument);
  CHECK_THROWS_AS(m.add_counter("iwsec_access_log_dropped_lines_total", "again", [] { return 0.0; }),
                  std::invalid_argument);
  CHECK_THROWS_AS(m.add_gauge("iwsec_access_log_dropped_lines_total", "as a gauge", [] { return 0.0; }),
                  std::invalid_argument);
  CHECK_THROWS_AS(m.add_counter("iwsec_revocations_total", "taken", [] { return 0.0; }), std::invalid_argument);
  CHECK(m.render().find("# HELP iwsec_access_log_dropped_lines_total Lines dropped.\n"
                        "# TYPE iwsec_access_log_dropped_lines_total counter\n"
                        "iwsec_access_log_dropped_lines_total 0\n") != std::string::npos);
  dropped = 7;
  CHECK(m.render().find("\niwsec_access_log_dropped_lines_total 7\n") != std::string::npos);
}

TEST_CASE("a token check's Rejection names a signer's refusal as the signer does", "[metrics][rejection]") {
  const iwsec::VerifyError all[] = {
      iwsec::VerifyError::none,          iwsec::VerifyError::too_large,   iwsec::VerifyError::malformed,
      iwsec::VerifyError::bad_header,    iwsec::VerifyError::unsupported_algorithm,
      iwsec::VerifyError::unknown_key,   iwsec::VerifyError::bad_signature, iwsec::VerifyError::bad_payload,
      iwsec::VerifyError::bad_claims,    iwsec::VerifyError::expired,     iwsec::VerifyError::not_yet_valid};
  std::vector<std::string> names;
  for (auto e : all) {
    CHECK(std::string(iwsec::to_string(iwsec::rejection_of(e))) == iwsec::to_string(e));
    names.push_back(iwsec::to_string(iwsec::rejection_of(e)));
  }
  for (auto r : {iwsec::Rejection::revoked, iwsec::Rejection::unknown_user, iwsec::Rejection::disabled,
                 iwsec::Rejection::rotated})
    names.push_back(iwsec::to_string(r));
  // Every reason has a name of its own.
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
  CHECK(std::find(names.begin(), names.end(), "unknown") == names.end());
}
