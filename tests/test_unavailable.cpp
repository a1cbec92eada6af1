// The 503 path shared by every store that cannot show its state is current:
// a StateUnavailable thrown by a UserStore or RevocationStore reaches the
// client as 503, the IW10002 envelope and Retry-After, on the security
// routes and the guard alike, and never as a stale answer or a 500.

#include <catch2/catch.hpp>

#include <atomic>
#include <string>

#include "support/http_fixture.hpp"

using namespace iwsec_http;

namespace {

/// A MemoryUserStore that, while `unavailable` is set, cannot show its state.
class FlakyUserStore : public iwsec::MemoryUserStore {
 public:
  std::atomic<bool> unavailable{false};
  std::optional<iwsec::User> find_by_email(std::string_view email) override {
    check();
    return MemoryUserStore::find_by_email(email);
  }
  std::optional<iwsec::User> find_by_refresh_token_hash(std::string_view hash) override {
    check();
    return MemoryUserStore::find_by_refresh_token_hash(hash);
  }
  std::optional<iwsec::UserStatus> status_of(std::string_view email) override {
    check();
    return MemoryUserStore::status_of(email);
  }

 private:
  void check() const {
    if (unavailable) throw iwsec::StateUnavailable("users file changed but cannot be reloaded", 7);
  }
};

}  // namespace

TEST_CASE("a store that cannot show current state answers 503 with the envelope and Retry-After", "[unavailable]") {
  iwsec_test::ManualClock clock;
  FlakyUserStore users;
  iwsec::Signer signer{std::string_view(kSecret)};
  httplib::Server server;
  auto sec = iwsec::mount_security_routes(server, users, signer, test_options(clock));
  server.Get("/v3/domains", sec.guard([](const httplib::Request&, httplib::Response& res, const iwsec::VerifiedToken&) {
    res.set_content("{}", "application/json");
  }));
  iwsec_test::RunningServer running(server);
  auto c = running.client();
  const Account a = add_account(users, "ada@example.com", "correct horse");
  const std::string token = login(c, a);
  REQUIRE(is_valid(c, token));

  users.unavailable = true;
  const auto check_503 = [&](const httplib::Response& r) {
    check_envelope(r, 503, "IW10002");
    CHECK(r.get_header_value("Retry-After") == "7");
    check_no_leak(r, token);
  };
  check_503(call(c, "GET", kValidate, bearer(token)));
  check_503(call(c, "GET", "/v3/domains", bearer(token)));
  check_503(call(c, "GET", kAuthenticate, auth(iwsec_test::basic(a.email, a.password))));
  check_503(call(c, "GET", kAccess, auth("Basic " + a.refresh_token)));

  users.unavailable = false;  // recovers by itself
  CHECK(is_valid(c, token));
}
