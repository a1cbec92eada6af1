// What ends a session (docs/sessions.md): access tokens bound to
// the user id, delete_user, disable/enable, set_password with and without
// keep_sessions. Over real HTTP against a real httplib::Server on 127.0.0.1.

#include <type_traits>
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace iwsec_http;

namespace {

const std::string kKey = "sessions-test-key-0123456789abcdef";

iwsec::AccessClaims claims_for(const std::string& email, const std::string& user_id) {
  iwsec::AccessClaims c;
  c.email = email;
  c.user_id = user_id;
  c.issued_at = 1700000000;
  c.expires_at = 1700000900;
  return c;
}

// The payload of a token as JSON text (no verification).
std::string payload_text(const std::string& token) {
  const auto d1 = token.find('.');
  const auto d2 = token.rfind('.');
  const auto p = iwsec::base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  REQUIRE(p);
  return *p;
}

// A token signed with @p key over a payload of our choosing.
std::string signed_payload(const std::string& key, const std::string& payload) {
  const std::string input = iwsec::base64url_encode(R"({"alg":"HS256"})") + "." + iwsec::base64url_encode(payload);
  const auto mac = iwsec::detail::hmac_sha256_key(key).mac(input);
  return input + "." + iwsec::base64url_encode(std::string(reinterpret_cast<const char*>(mac.data()), mac.size()));
}

std::string payload_with_user_id(const std::string& user_id_json) {
  std::string p = R"({"iat":1700000000,"sub":"{\"email\":\"a@example.com\",\"scope\":{\"action\":\"password\"}}",)"
                  R"("jti":"0f8fad5b-d9cb-469f-a165-70867728950e","exp":1700000900,"gen":0)";
  if (!user_id_json.empty()) p += ",\"user_id\":" + user_id_json;
  return p + "}";
}

bool store_has(iwsec::UserStore& users, const std::string& email) { return users.find_by_email(email).has_value(); }

}  // namespace

// ===========================================================================
// the user_id claim
// ===========================================================================

TEST_CASE("sign: every access token carries the user_id claim, and verify returns it", "[sessions][signer]") {
  const iwsec::Signer signer(kKey);
  for (const std::string& id : {std::string("5f1c0a2b3c4d5e6f70819203"), std::string(""),
                               std::string("id with \"quotes\" \\ and \x01 control"), std::string("j\xc3\xbcrgen")}) {
    INFO("user_id " << id);
    const std::string token = signer.sign(claims_for("a@example.com", id));
    // A plain JSON string member, readable by any JWT library.
    const auto doc = iwsec::detail::parse_json_strict(payload_text(token));
    REQUIRE(doc);
    const auto& o = doc->get<picojson::object>();
    REQUIRE(o.count("user_id"));
    REQUIRE(o.at("user_id").is<std::string>());
    CHECK(o.at("user_id").get<std::string>() == id);
    const auto v = signer.verify(token, 1700000001);
    REQUIRE(v);
    CHECK(v.token().user_id() == id);
    CHECK(v.token().email() == "a@example.com");
  }
}

TEST_CASE("verify: the user_id claim is required and must be a string", "[sessions][signer]") {
  const iwsec::Signer signer(kKey);
  CHECK(signer.verify(signed_payload(kKey, payload_with_user_id("\"abc\"")), 1700000001).ok());
  CHECK(signer.verify(signed_payload(kKey, payload_with_user_id("\"\"")), 1700000001).ok());
  // A token minted before the claim existed (docs/sessions.md "Upgrading": stops validating after the upgrade).
  CHECK(signer.verify(signed_payload(kKey, payload_with_user_id("")), 1700000001).error() ==
        iwsec::VerifyError::bad_claims);
  for (const char* bad : {"12", "null", "true", "[\"abc\"]", "{}"}) {
    INFO("user_id " << bad);
    CHECK(signer.verify(signed_payload(kKey, payload_with_user_id(bad)), 1700000001).error() ==
          iwsec::VerifyError::bad_claims);
  }
  CHECK(signer.verify(signed_payload(kKey, payload_with_user_id("\"a\",\"user_id\":\"b\"")), 1700000001).error() ==
        iwsec::VerifyError::bad_payload);
  CHECK(signer.verify_ignoring_lifetime(signed_payload(kKey, payload_with_user_id(""))).error() ==
        iwsec::VerifyError::bad_claims);
}

TEST_CASE("status_of names the current holder of the email", "[sessions][store]") {
  iwsec::MemoryUserStore memory;
  iwsec_test::TempDir dir;
  iwsec::JsonFileUserStore file(dir.file("users.json"));
  for (iwsec::UserStore* users : std::vector<iwsec::UserStore*>{&memory, &file}) {
    const auto a = add_account(*users, "Holder@Example.com", "pw");
    const auto s = users->status_of("holder@example.com");
    REQUIRE(s);
    CHECK(s->user_id == a.user_id);
  }
}

// ===========================================================================
// delete_user
// ===========================================================================

TEST_CASE("delete_user removes the user and their refresh token, in both stores", "[sessions][store]") {
  iwsec::MemoryUserStore memory;
  iwsec_test::TempDir dir;
  iwsec::JsonFileUserStore file(dir.file("users.json"));
  for (iwsec::UserStore* users : std::vector<iwsec::UserStore*>{&memory, &file}) {
    const auto a = add_account(*users, "gone@example.com", "pw");
    const auto b = add_account(*users, "stays@example.com", "pw");
    CHECK(users->delete_user("nobody@example.com") == iwsec::StoreStatus::not_found);
    CHECK(users->delete_user("GONE@example.com") == iwsec::StoreStatus::ok);
    CHECK_FALSE(store_has(*users, a.email));
    CHECK_FALSE(users->status_of(a.email));
    CHECK_FALSE(users->find_by_refresh_token_hash(iwsec::refresh_token_hash(a.refresh_token)));
    CHECK(users->delete_user(a.email) == iwsec::StoreStatus::not_found);
    const auto all = users->list_users();
    REQUIRE(all.size() == 1);
    CHECK(all[0].email == b.email);
    CHECK(users->find_by_refresh_token_hash(iwsec::refresh_token_hash(b.refresh_token)));
    // The email is free again.
    const auto again = add_account(*users, a.email, "pw");
    CHECK(users->status_of(a.email)->user_id == again.user_id);
  }
  // The deletion is in the file: a new store reading it agrees.
  iwsec::JsonFileUserStore reread(dir.file("users.json"));
  CHECK(reread.list_users().size() == 2);
}

// Issue 16: no interface default may let a backend skip a rule. A host
// store must implement delete_user (and a revocation store revoke_for):
// without them the class is abstract and cannot be instantiated.
struct HostStoreWithoutDelete : iwsec::UserStore {
  std::optional<iwsec::User> find_by_email(std::string_view) override { return std::nullopt; }
  std::optional<iwsec::User> find_by_refresh_token_hash(std::string_view) override { return std::nullopt; }
  iwsec::StoreResult add_user(const iwsec::User&) override { return iwsec::StoreStatus::invalid; }
  iwsec::StoreResult update_user(std::string_view, const std::function<void(iwsec::User&)>&) override {
    return iwsec::StoreStatus::invalid;
  }
  std::vector<iwsec::User> list_users() override { return {}; }
};
struct HostRevocationsWithoutCap : iwsec::RevocationStore {
  bool revoke(std::string_view, std::int64_t) override { return true; }
  bool is_revoked(std::string_view) override { return false; }
};
// Keeps the cap but cannot say how many an owner holds.
struct HostRevocationsWithoutCounts : iwsec::RevocationStore {
  bool revoke(std::string_view, std::int64_t) override { return true; }
  bool is_revoked(std::string_view) override { return false; }
  iwsec::RevokeOutcome revoke_for(std::string_view, std::string_view, std::int64_t, std::size_t) override {
    return iwsec::RevokeOutcome::revoked;
  }
};

TEST_CASE("a host store must implement delete_user, revoke_for and outstanding_for (no default drops the rule)", "[sessions][store]") {
  CHECK(std::is_abstract<HostStoreWithoutDelete>::value);
  CHECK(std::is_abstract<HostRevocationsWithoutCap>::value);
  CHECK(std::is_abstract<HostRevocationsWithoutCounts>::value);
  CHECK_FALSE(std::is_abstract<iwsec::MemoryUserStore>::value);
  CHECK_FALSE(std::is_abstract<iwsec::JournalRevocationStore>::value);
}

TEST_CASE("a user deleted and re-created under the same email inherits none of the old tokens", "[sessions][http]") {
  Fixture f;
  const auto old = add_account(f.users, "reused@example.com", "old password");
  const auto bystander = add_account(f.users, "bystander@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string by_password = login(c, old);
  const std::string by_refresh = exchange_refresh(c, old.refresh_token);
  const std::string bystanders = login(c, bystander);
  REQUIRE(is_valid(c, by_password));

  REQUIRE(f.users.delete_user(old.email) == iwsec::StoreStatus::ok);
  CHECK_FALSE(is_valid(c, by_password));
  check_rejected(call(c, "GET", kAccess, auth("Basic " + old.refresh_token)));

  // Same email, same password, same generation (0): only the user id differs.
  const auto fresh = add_account(f.users, old.email, old.password);
  CHECK_FALSE(is_valid(c, by_password));
  CHECK_FALSE(is_valid(c, by_refresh));
  CHECK_FALSE(f.sec->verify_request([&] {
    httplib::Request r;
    r.headers.emplace("Authorization", "Bearer " + by_refresh);
    return r;
  }()));
  check_rejected(call(c, "GET", kAccess, auth("Basic " + old.refresh_token)));
  CHECK(is_valid(c, bystanders));

  const std::string new_token = login(c, fresh);
  CHECK(is_valid(c, new_token));
  CHECK(is_valid(c, exchange_refresh(c, fresh.refresh_token)));
}

TEST_CASE("a token naming another user id than the email's holder is invalid", "[sessions][http]") {
  Fixture f;
  const auto a = add_account(f.users, "holder@example.com", "pw");
  f.start();
  auto c = f.client();
  auto claims = claims_for(a.email, a.user_id);
  claims.issued_at = f.clock.now();
  claims.expires_at = f.clock.now() + 60;
  CHECK(is_valid(c, f.signer.sign(claims)));
  for (const std::string& other : {std::string(""), iwsec::generate_user_id(), a.user_id + "x"}) {
    claims.user_id = other;
    CHECK_FALSE(is_valid(c, f.signer.sign(claims)));
  }
}

// ===========================================================================
// disable / enable
// ===========================================================================

TEST_CASE("disable ends every session: enable does not revive old access tokens", "[sessions][http]") {
  Fixture f;
  const auto a = add_account(f.users, "paused@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string by_password = login(c, a);
  const std::string by_refresh = exchange_refresh(c, a.refresh_token);

  REQUIRE(iwsec::set_user_disabled(f.users, a.email, true) == iwsec::StoreStatus::ok);
  CHECK_FALSE(is_valid(c, by_password));
  check_rejected(call(c, "GET", kAccess, auth("Basic " + a.refresh_token)));
  REQUIRE(iwsec::set_user_disabled(f.users, a.email, false) == iwsec::StoreStatus::ok);
  CHECK_FALSE(is_valid(c, by_password));
  CHECK_FALSE(is_valid(c, by_refresh));
  // The account itself works again: password and refresh token.
  CHECK(is_valid(c, login(c, a)));
  CHECK(is_valid(c, exchange_refresh(c, a.refresh_token)));
  CHECK(iwsec::set_user_disabled(f.users, "nobody@example.com", true) == iwsec::StoreStatus::not_found);
}

// ===========================================================================
// set_password
// ===========================================================================

TEST_CASE("set_password ends every session and issues a new refresh token", "[sessions][http]") {
  Fixture f;
  const auto a = add_account(f.users, "reset@example.com", "leaked password");
  const auto b = add_account(f.users, "other@example.com", "pw");
  f.start();
  auto c = f.client();
  const std::string by_password = login(c, a);
  const std::string by_refresh = exchange_refresh(c, a.refresh_token);
  const std::string others = login(c, b);

  const auto reset = iwsec::set_password(f.users, a.email, "new password", kRounds);
  REQUIRE(reset.status == iwsec::StoreStatus::ok);
  CHECK(reset.user_id == a.user_id);
  REQUIRE(reset.refresh_token.size() >= 43);
  CHECK(reset.refresh_token != a.refresh_token);

  CHECK_FALSE(is_valid(c, by_password));
  CHECK_FALSE(is_valid(c, by_refresh));
  check_rejected(call(c, "GET", kAccess, auth("Basic " + a.refresh_token)));
  check_rejected(call(c, "GET", kAuthenticate, auth(iwsec_test::basic(a.email, a.password))));
  Account after = a;
  after.password = "new password";
  after.refresh_token = reset.refresh_token;
  CHECK(is_valid(c, login(c, after)));
  CHECK(is_valid(c, exchange_refresh(c, after.refresh_token)));
  CHECK(is_valid(c, others));
}

TEST_CASE("set_password with keep_sessions changes only the password", "[sessions][http]") {
  Fixture f;
  const auto a = add_account(f.users, "keep@example.com", "old pw");
  f.start();
  auto c = f.client();
  const std::string by_password = login(c, a);
  const auto kept = iwsec::set_password(f.users, a.email, "new pw", kRounds, true);
  REQUIRE(kept.status == iwsec::StoreStatus::ok);
  CHECK(kept.user_id == a.user_id);
  CHECK(kept.refresh_token.empty());
  CHECK(is_valid(c, by_password));
  CHECK(is_valid(c, exchange_refresh(c, a.refresh_token)));
  check_rejected(call(c, "GET", kAuthenticate, auth(iwsec_test::basic(a.email, "old pw"))));
  Account after = a;
  after.password = "new pw";
  CHECK(is_valid(c, login(c, after)));
}

TEST_CASE("set_password refuses a password no login could use, changing nothing", "[sessions][store]") {
  iwsec::MemoryUserStore users;
  const auto a = add_account(users, "strict@example.com", "pw");
  const auto before = *users.find_by_email(a.email);
  for (const std::string& bad : {std::string(""), std::string("tab\there"), std::string("nul\0x", 5),
                                std::string("del\x7f")}) {
    const auto r = iwsec::set_password(users, a.email, bad, kRounds);
    CHECK(r.status == iwsec::StoreStatus::invalid);
    CHECK(r.refresh_token.empty());
  }
  const auto after = *users.find_by_email(a.email);
  CHECK(after.password_hash == before.password_hash);
  CHECK(after.refresh_generation == before.refresh_generation);
  CHECK(after.refresh_token_sha256 == before.refresh_token_sha256);
  CHECK(iwsec::set_password(users, "nobody@example.com", "pw", kRounds).status == iwsec::StoreStatus::not_found);
}
