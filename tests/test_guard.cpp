// SecurityRoutes::guard on the host's own routes, over real HTTP: the host
// handler runs only for a valid, unrevoked, current access token and gets its
// claims; everything else gets the library's 401 (or 400) envelope.

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"

using namespace iwsec_http;
using iwsec_test::basic;

namespace {

struct Seen {
  std::string email;
  iwsec::TokenAction action = iwsec::TokenAction::password;
  std::string jti;
  std::int64_t issued_at = 0;
  std::int64_t expires_at = 0;
  std::int64_t generation = -1;
  bool verify_request_agreed = false;
};

// A fixture whose host has guarded routes, registered after mounting.
struct GuardFixture : Fixture {
  std::atomic<int> calls{0};
  std::mutex mutex;
  std::vector<Seen> seen;

  ~GuardFixture() { running.reset(); }  // stop serving before these members go

  void start_with_routes() {
    sec = iwsec::mount_security_routes(server, users, signer, options);
    const auto record = [this](const httplib::Request& req, const iwsec::VerifiedToken& t) {
      Seen s;
      s.email = t.email();
      s.action = t.action();
      s.jti = t.jti();
      s.issued_at = t.issued_at();
      s.expires_at = t.expires_at();
      s.generation = t.refresh_generation();
      const auto again = sec->verify_request(req);
      s.verify_request_agreed = again && again->jti() == t.jti() && again->email() == t.email();
      std::lock_guard<std::mutex> lock(mutex);
      seen.push_back(s);
      ++calls;
    };
    server.Get("/v3/domains", sec->guard([record](const httplib::Request& req, httplib::Response& res,
                                                  const iwsec::VerifiedToken& t) {
      record(req, t);
      res.set_content("{\"result\":[\"domain-1\"]}", "application/json");
    }));
    server.Post("/v3/domains", sec->guard([record](const httplib::Request& req, httplib::Response& res,
                                                   const iwsec::VerifiedToken& t) {
      record(req, t);
      res.status = 201;
      res.set_content(req.body, "text/plain");
    }));
    server.Get("/v3/throws", sec->guard([](const httplib::Request&, httplib::Response&, const iwsec::VerifiedToken&) {
      throw std::runtime_error("host handler failure");
    }));
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      res.status = 503;
      res.set_content("host exception handler", "text/plain");
    });
    running = std::make_unique<iwsec_test::RunningServer>(server);
  }

  Seen last() {
    std::lock_guard<std::mutex> lock(mutex);
    REQUIRE(!seen.empty());
    return seen.back();
  }
};

httplib::Request request_with(const httplib::Headers& headers) {
  httplib::Request req;
  req.method = "GET";
  req.path = "/v3/domains";
  req.headers = headers;
  return req;
}

// The guard refused: 401 invalid_token, and the host handler did not run.
void check_refused(GuardFixture& f, httplib::Client& c, const std::string& token) {
  INFO("token " << token);
  const int before = f.calls.load();
  const auto r = call(c, "GET", "/v3/domains", bearer(token));
  check_bearer_challenge(r, true);
  check_no_leak(r, token);
  CHECK(f.calls.load() == before);
  CHECK_FALSE(f.sec->verify_request(request_with(bearer(token))));
}

}  // namespace

TEST_CASE("guard: a valid token runs the host handler with its claims", "[guard]") {
  GuardFixture f;
  const auto a = add_account(f.users, "Guarded@Example.com", "pw-guard");
  f.start_with_routes();
  auto c = f.client();

  const std::string by_password = login(c, a);
  auto r = call(c, "GET", "/v3/domains", bearer(by_password));
  REQUIRE(r.status == 200);
  CHECK(r.body == "{\"result\":[\"domain-1\"]}");
  CHECK(f.calls.load() == 1);
  Seen s = f.last();
  CHECK(s.email == a.email);
  CHECK(s.action == iwsec::TokenAction::password);
  CHECK(s.jti == string_member(jwt_payload(by_password), "jti"));
  CHECK(s.issued_at == f.clock.now());
  CHECK(s.expires_at == f.clock.now() + 900);
  CHECK(s.generation == 0);
  CHECK(s.verify_request_agreed);

  const std::string by_refresh = exchange_refresh(c, a.refresh_token);
  r = call(c, "GET", "/v3/domains", auth("bearer " + by_refresh));  // scheme in any case
  REQUIRE(r.status == 200);
  s = f.last();
  CHECK(s.action == iwsec::TokenAction::refresh_token);
  CHECK(s.jti == string_member(jwt_payload(by_refresh), "jti"));
  CHECK(s.verify_request_agreed);

  // The host handler's own status and body are its own.
  httplib::Request post;
  post.method = "POST";
  post.path = "/v3/domains";
  post.headers = bearer(by_password);
  post.body = "payload";
  post.set_header("Content-Type", "text/plain");
  auto pr = c.send(post);
  REQUIRE(pr);
  CHECK(pr->status == 201);
  CHECK(pr->body == "payload");
  CHECK(f.calls.load() == 3);

  // verify_request outside any handler agrees.
  const auto v = f.sec->verify_request(request_with(bearer(by_password)));
  REQUIRE(v);
  CHECK(v->email() == a.email);
  CHECK(v->action() == iwsec::TokenAction::password);
}

TEST_CASE("guard: no bearer credentials is a 401 with a Bearer challenge", "[guard]") {
  GuardFixture f;
  const auto a = add_account(f.users, "nocreds@example.com", "pw-nocreds-secret");
  f.start_with_routes();
  auto c = f.client();
  const std::string token = login(c, a);

  check_bearer_challenge(call(c, "GET", "/v3/domains"), false);
  CHECK_FALSE(f.sec->verify_request(request_with({})));
  for (const std::string& value : std::vector<std::string>{"Bearer ", "Bearer   ", "Basic " + token,
                                                           basic(a.email, a.password), "Token " + token}) {
    INFO("Authorization: " << value);
    const auto r = call(c, "GET", "/v3/domains", auth(value));
    check_bearer_challenge(r, false);
    check_no_leak(r, token);
    check_no_leak(r, a.password);
    CHECK_FALSE(f.sec->verify_request(request_with(auth(value))));
  }
  const auto post = call(c, "POST", "/v3/domains");
  check_bearer_challenge(post, false);
  CHECK(f.calls.load() == 0);
}

TEST_CASE("guard: expired, revoked, rotated, disabled and garbage tokens are refused", "[guard]") {
  GuardFixture f;
  const auto a = add_account(f.users, "refuse@example.com", "pw-refuse");
  const auto b = add_account(f.users, "other@example.com", "pw-other");
  f.start_with_routes();
  auto c = f.client();

  SECTION("expired") {
    const std::string token = login(c, a);
    f.clock.advance(899);
    CHECK(call(c, "GET", "/v3/domains", bearer(token)).status == 200);
    f.clock.advance(1);
    check_refused(f, c, token);
  }
  SECTION("revoked") {
    const std::string token = login(c, a);
    const std::string kept = login(c, a);
    revoke_access(c, token);
    check_refused(f, c, token);
    CHECK(call(c, "GET", "/v3/domains", bearer(kept)).status == 200);
  }
  SECTION("revoked directly in the store the routes use") {
    const std::string token = login(c, a);
    REQUIRE(f.sec->revocations().revoke(string_member(jwt_payload(token), "jti"), f.clock.now() + 900));
    check_refused(f, c, token);
  }
  SECTION("minted before a refresh rotation") {
    const std::string old_pw = login(c, a);
    const std::string old_rt = exchange_refresh(c, a.refresh_token);
    const std::string bystander = login(c, b);
    Account rotated = a;
    rotated.refresh_token = rotate_refresh(c, a);
    check_refused(f, c, old_pw);
    check_refused(f, c, old_rt);
    CHECK(call(c, "GET", "/v3/domains", bearer(bystander)).status == 200);
    const std::string fresh = exchange_refresh(c, rotated.refresh_token);
    CHECK(call(c, "GET", "/v3/domains", bearer(fresh)).status == 200);
    CHECK(f.last().generation == 1);
  }
  SECTION("user disabled") {
    const std::string token = login(c, a);
    REQUIRE(f.users.update_user(a.email, [](iwsec::User& u) { u.disabled = true; }) == iwsec::StoreStatus::ok);
    check_refused(f, c, token);
  }
  SECTION("garbage and forgeries") {
    const std::string good = login(c, a);
    const iwsec::Signer other(std::string(40, 'o'));
    iwsec::AccessClaims claims;
    claims.email = a.email;
    claims.issued_at = f.clock.now();
    claims.expires_at = f.clock.now() + 900;
    std::string tampered = good;
    tampered[good.find('.') + 3] = tampered[good.find('.') + 3] == 'a' ? 'b' : 'a';
    for (const std::string& token :
         std::vector<std::string>{"garbage", "a.b.c", good + "x", tampered, other.sign(claims),
                                  iwsec::base64url_encode("{\"alg\":\"none\"}") + good.substr(good.find('.'))}) {
      check_refused(f, c, token);
    }
    CHECK(call(c, "GET", "/v3/domains", bearer(good)).status == 200);
  }
  CHECK(f.calls.load() <= 3);
}

TEST_CASE("guard: unusable Authorization headers are a 400", "[guard]") {
  GuardFixture f;
  const auto a = add_account(f.users, "dup@example.com", "pw-dup");
  f.start_with_routes();
  auto c = f.client();
  const std::string token = login(c, a);

  httplib::Headers two;
  two.emplace("Authorization", "Bearer " + token);
  two.emplace("Authorization", "Bearer " + token);
  auto r = call(c, "GET", "/v3/domains", two);
  check_envelope(r, 400, "IW10006");
  check_no_leak(r, token);
  CHECK_FALSE(f.sec->verify_request(request_with(two)));

  r = call(c, "GET", "/v3/domains", bearer(token + std::string(5000, 'A')));
  check_envelope(r, 400, "IW10006");
  check_no_leak(r, token);

  CHECK(f.calls.load() == 0);
  CHECK(call(c, "GET", "/v3/domains", bearer(token)).status == 200);
}

TEST_CASE("guard: verify_request agrees with the guard on every kind of request", "[guard]") {
  GuardFixture f;
  const auto a = add_account(f.users, "agree@example.com", "pw-agree");
  f.start_with_routes();
  auto c = f.client();

  const std::string good = login(c, a);
  const std::string revoked = login(c, a);
  revoke_access(c, revoked);
  const std::string stale_soon = exchange_refresh(c, a.refresh_token);
  httplib::Headers two;
  two.emplace("Authorization", "Bearer " + good);
  two.emplace("Authorization", "Bearer " + good);

  const std::vector<httplib::Headers> cases = {
      {}, bearer(good), bearer(revoked), bearer(stale_soon), bearer("garbage"), auth("Basic " + good),
      auth("Bearer "), two, bearer(good + std::string(5000, 'A')),
  };
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < cases.size(); ++i) {
      INFO("round " << round << " case " << i);
      const bool in_process = f.sec->verify_request(request_with(cases[i])).has_value();
      const auto r = call(c, "GET", "/v3/domains", cases[i]);
      CHECK(in_process == (r.status == 200));
      if (r.status != 200) CHECK((r.status == 401 || r.status == 400));
    }
    // Time passes: now everything is expired.
    f.clock.advance(1000);
  }
}

TEST_CASE("guard: the host handler's exceptions stay the host's", "[guard]") {
  GuardFixture f;
  const auto a = add_account(f.users, "boom@example.com", "pw-boom");
  f.start_with_routes();
  auto c = f.client();
  const auto r = call(c, "GET", "/v3/throws", bearer(login(c, a)));
  CHECK(r.status == 503);
  CHECK(r.body == "host exception handler");
  // Without a token the guard answers before the handler could throw.
  check_bearer_challenge(call(c, "GET", "/v3/throws"), false);
}

namespace {

class ThrowingStatus : public iwsec::MemoryUserStore {
 public:
  std::atomic<bool> fail{false};
  std::optional<iwsec::UserStatus> status_of(std::string_view email) override {
    if (fail) throw std::runtime_error("store exploded: secret-detail");
    return MemoryUserStore::status_of(email);
  }
  std::optional<iwsec::User> find_by_email(std::string_view email) override {
    if (fail) throw std::runtime_error("store exploded: secret-detail");
    return MemoryUserStore::find_by_email(email);
  }
};

}  // namespace

TEST_CASE("guard: a fault in the user store is a 500 envelope and the handler does not run", "[guard][faults]") {
  iwsec_test::ManualClock clock;
  ThrowingStatus users;
  iwsec::Signer signer{std::string_view(kSecret)};
  const auto a = add_account(users, "fault@example.com", "pw-fault");
  httplib::Server server;
  auto sec = iwsec::mount_security_routes(server, users, signer, test_options(clock));
  std::atomic<int> calls{0};
  server.Get("/v3/domains", sec.guard([&](const httplib::Request&, httplib::Response& res,
                                          const iwsec::VerifiedToken&) {
    ++calls;
    res.set_content("handler ran", "text/plain");
  }));
  iwsec_test::RunningServer running(server);
  auto c = running.client();

  const std::string token = login(c, a);
  REQUIRE(call(c, "GET", "/v3/domains", bearer(token)).status == 200);
  REQUIRE(calls.load() == 1);

  users.fail = true;
  const auto r = call(c, "GET", "/v3/domains", bearer(token));
  check_envelope(r, 500, "IW10002");
  CHECK(r.body.find("secret-detail") == std::string::npos);
  CHECK(r.body.find("handler ran") == std::string::npos);
  check_no_leak(r, token);
  CHECK(calls.load() == 1);

  users.fail = false;
  CHECK(call(c, "GET", "/v3/domains", bearer(token)).status == 200);
  CHECK(calls.load() == 2);
}

TEST_CASE("guard: a Range header never cuts the refusal; the host's answer keeps httplib's ranges", "[guard][ranges]") {
  GuardFixture f;
  const auto a = add_account(f.users, "range-guard@example.com", "pw-range");
  f.start_with_routes();
  auto c = f.client();
  const std::string token = login(c, a);

  httplib::Headers refused = bearer("not.a.token");
  refused.emplace("Range", "bytes=0-3");
  check_bearer_challenge(call(c, "GET", "/v3/domains", refused), true);

  httplib::Headers missing{{"Range", "bytes=9999-"}};
  check_bearer_challenge(call(c, "GET", "/v3/domains", missing), false);

  // The host's own answer is the host's: httplib applies the range to it as usual.
  httplib::Headers allowed = bearer(token);
  allowed.emplace("Range", "bytes=0-8");
  const auto r = call(c, "GET", "/v3/domains", allowed);
  CHECK(r.status == 206);
  CHECK(r.body == "{\"result\"");
}
