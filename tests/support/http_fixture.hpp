#pragma once
// Test support for the HTTP-level tests (test_http_routes, test_guard,
// test_concurrency): a mounted server with a ManualClock, accounts, request
// helpers and checks of the answer shapes docs/endpoints.md states. Uses Catch2 assertions, so
// include it after <catch2/catch.hpp>.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <httplib.h>
#include <picojson.h>

#include <iwsec/iwsec.hpp>

#include "support/test_server.hpp"

namespace iwsec_http {

constexpr const char* kSecret = "iwsec-http-tests-secret-0123456789abcdef";
constexpr const char* kHelpBase = "https://help.example.test/iw-errors";
constexpr const char* kJsonType = "application/json; charset=utf-8";
constexpr std::uint32_t kRounds = 1000;

constexpr const char* kAuthenticate = "/v3/security/authenticate";
constexpr const char* kAccess = "/v3/security/token/access";
constexpr const char* kValidate = "/v3/security/token/validate";
constexpr const char* kRefresh = "/v3/security/token/refresh";

/// One account as the tests know it: its secrets in clear.
struct Account {
  std::string email;
  std::string password;
  std::string user_id;
  std::string refresh_token;
};

inline Account add_account(iwsec::UserStore& users, const std::string& email, const std::string& password,
                           bool disabled = false) {
  Account a;
  a.email = email;
  a.password = password;
  a.user_id = iwsec::generate_user_id();
  a.refresh_token = iwsec::generate_refresh_token();
  iwsec::User u;
  u.user_id = a.user_id;
  u.email = email;
  u.password_hash = iwsec::hash_password(password, kRounds);
  u.refresh_token_sha256 = iwsec::refresh_token_hash(a.refresh_token);
  u.disabled = disabled;
  REQUIRE(users.add_user(u) == iwsec::StoreStatus::ok);
  return a;
}

inline iwsec::Options test_options(const iwsec_test::ManualClock& clock) {
  iwsec::Options o;
  o.clock = clock.clock();
  o.password_rounds = kRounds;
  o.help_url_base = kHelpBase;
  return o;
}

/// A server with the security routes mounted over a MemoryUserStore. Members
/// are declared so that the running server stops before the stores go.
struct Fixture {
  iwsec_test::ManualClock clock;
  iwsec::MemoryUserStore users;
  iwsec::Signer signer{std::string_view(kSecret)};
  iwsec::Options options = test_options(clock);
  httplib::Server server;
  std::optional<iwsec::SecurityRoutes> sec;
  std::unique_ptr<iwsec_test::RunningServer> running;

  /// Mounts the routes (with `options` as they are now) and starts serving.
  void start() {
    sec = iwsec::mount_security_routes(server, users, signer, options);
    running = std::make_unique<iwsec_test::RunningServer>(server);
  }
  httplib::Client client() const { return running->client(); }
};

// ---- requests ------------------------------------------------------------

inline httplib::Headers auth(const std::string& value) { return httplib::Headers{{"Authorization", value}}; }
inline httplib::Headers bearer(const std::string& token) { return auth("Bearer " + token); }

/// Any method on any path with the given headers; REQUIREs an answer.
inline httplib::Response call(httplib::Client& c, const std::string& method, const std::string& path,
                              const httplib::Headers& headers = {}) {
  httplib::Request req;
  req.method = method;
  req.path = path;
  // A field value's leading and trailing spaces and tabs are not part of it
  // (RFC 9110, 5.5): every cpp-httplib server drops them, and newer clients
  // refuse to send them (Error::InvalidHeaders). Trimmed here, the server
  // sees the same request on every version ("Bearer " arrives as "Bearer").
  for (const auto& h : headers) {
    const std::string& v = h.second;
    const auto first = v.find_first_not_of(" \t");
    const auto last = v.find_last_not_of(" \t");
    req.headers.emplace(h.first, first == std::string::npos ? std::string() : v.substr(first, last - first + 1));
  }
  auto r = c.send(req);
  INFO(method << " " << path << ": httplib error " << static_cast<int>(r.error()));
  REQUIRE(r);
  return *r;
}

// ---- JSON ----------------------------------------------------------------

inline picojson::value parse_json(const std::string& text) {
  picojson::value v;
  const std::string err = picojson::parse(v, text);
  INFO("body: " << text);
  REQUIRE(err.empty());
  return v;
}

inline const picojson::object& as_object(const picojson::value& v) {
  REQUIRE(v.is<picojson::object>());
  return v.get<picojson::object>();
}

inline const picojson::value& member(const picojson::object& o, const std::string& key) {
  auto it = o.find(key);
  INFO("missing member " << key);
  REQUIRE(it != o.end());
  return it->second;
}

inline std::string string_member(const picojson::object& o, const std::string& key) {
  const auto& v = member(o, key);
  INFO("member " << key << " is not a string");
  REQUIRE(v.is<std::string>());
  return v.get<std::string>();
}

/// The decoded payload of a compact JWS (no verification).
inline picojson::object jwt_payload(const std::string& token) {
  const auto d1 = token.find('.');
  REQUIRE(d1 != std::string::npos);
  const auto d2 = token.find('.', d1 + 1);
  REQUIRE(d2 != std::string::npos);
  const auto payload = iwsec::base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  REQUIRE(payload);
  return as_object(parse_json(*payload));
}

/// `sub.email` and `sub.scope.action` of a token.
inline std::pair<std::string, std::string> jwt_subject(const std::string& token) {
  const auto payload = jwt_payload(token);
  const auto sub = parse_json(string_member(payload, "sub"));
  const auto& s = as_object(sub);
  const auto& scope = as_object(member(s, "scope"));
  return {string_member(s, "email"), string_member(scope, "action")};
}

// ---- answer checks -------------------------------------------------------

inline void check_common_headers(const httplib::Response& r) {
  CHECK(r.get_header_value("Content-Type") == kJsonType);
  CHECK(r.get_header_value("Cache-Control") == "no-store");
}

/// The error envelope (docs/endpoints.md): exactly message, details, iw_code, help, all
/// strings, help = <help base>/<iw_code>. An empty @p code accepts any IW code;
/// returns the iw_code.
inline std::string check_envelope(const httplib::Response& r, int status, const std::string& code,
                                  const std::string& help_base = kHelpBase) {
  INFO("status " << r.status << " body " << r.body);
  REQUIRE(r.status == status);
  check_common_headers(r);
  const auto v = parse_json(r.body);
  const auto& o = as_object(v);
  CHECK(o.size() == 4);
  const std::string message = string_member(o, "message");
  if (status < 500) {
    CHECK(message == "Security Client Errors");
  } else {
    CHECK(!message.empty());
  }
  CHECK(!string_member(o, "details").empty());
  const std::string iw_code = string_member(o, "iw_code");
  if (code.empty()) {
    CHECK(iw_code.rfind("IW", 0) == 0);
  } else {
    CHECK(iw_code == code);
  }
  CHECK(string_member(o, "help") == help_base + "/" + iw_code);
  return iw_code;
}

inline void check_basic_challenge(const httplib::Response& r) {
  check_envelope(r, 401, "IW10004");
  const std::string c = r.get_header_value("WWW-Authenticate");
  CHECK(c.rfind("Basic realm=", 0) == 0);
}

inline void check_bearer_challenge(const httplib::Response& r, bool invalid_token) {
  check_envelope(r, 401, "IW10004");
  REQUIRE(r.get_header_value_count("WWW-Authenticate") == 1);
  const std::string c = r.get_header_value("WWW-Authenticate");
  CHECK(c.rfind("Bearer ", 0) == 0);
  CHECK(c.find("realm=") != std::string::npos);
  CHECK((c.find("error=\"invalid_token\"") != std::string::npos) == invalid_token);
}

inline void check_rejected(const httplib::Response& r) { check_envelope(r, 406, "IW10031"); }

/// No part of @p r (body, header names or values) contains @p secret.
inline void check_no_leak(const httplib::Response& r, const std::string& secret) {
  REQUIRE(!secret.empty());
  INFO("secret must not be echoed: " << secret);
  CHECK(r.body.find(secret) == std::string::npos);
  for (const auto& h : r.headers) {
    CHECK(h.first.find(secret) == std::string::npos);
    CHECK(h.second.find(secret) == std::string::npos);
  }
}

// ---- the endpoints ---------------------------------------------------------

/// The top-level object of a 200 answer with @p members members, after the
/// headers every answer carries were checked.
inline picojson::object ok_body(const httplib::Response& r, std::size_t members) {
  INFO("body " << r.body);
  REQUIRE(r.status == 200);
  check_common_headers(r);
  const auto v = parse_json(r.body);
  const auto o = as_object(v);
  CHECK(o.size() == members);
  return o;
}

/// The token of a 200 "Authentication Success" answer, its whole body checked;
/// @p user_id is expected in `result` when given.
inline std::string token_of_success(const httplib::Response& r, const std::string* user_id) {
  const auto o = ok_body(r, 2);
  CHECK(string_member(o, "message") == "Authentication Success");
  const auto& result = as_object(member(o, "result"));
  CHECK(result.size() == (user_id ? 3u : 2u));
  const auto& is_auth = member(result, "is_authenticated");
  REQUIRE(is_auth.is<bool>());
  CHECK(is_auth.get<bool>());
  if (user_id) CHECK(string_member(result, "user_id") == *user_id);
  const std::string token = string_member(result, "authentication_token");
  CHECK(std::count(token.begin(), token.end(), '.') == 2);
  return token;
}

/// A successful authenticate: checks the whole 200 body, returns the token.
inline std::string login(httplib::Client& c, const Account& a, const std::string& query = "") {
  return token_of_success(call(c, "GET", std::string(kAuthenticate) + query, auth(iwsec_test::basic(a.email, a.password))),
                          &a.user_id);
}

/// A successful refresh-token exchange: checks the whole 200 body, returns the token.
inline std::string exchange_refresh(httplib::Client& c, const std::string& refresh_token) {
  return token_of_success(call(c, "GET", kAccess, auth("Basic " + refresh_token)), nullptr);
}

/// GET token/validate with a bearer token: the `is_valid` answer (the 200 body checked whole).
inline bool is_valid(httplib::Client& c, const std::string& token) {
  const auto r = call(c, "GET", kValidate, bearer(token));
  const auto o = ok_body(r, 2);
  CHECK(string_member(o, "message").empty());
  const auto& result = as_object(member(o, "result"));
  CHECK(result.size() == 1);
  const auto& valid = member(result, "is_valid");
  REQUIRE(valid.is<bool>());
  return valid.get<bool>();
}

/// A successful DELETE token/access (the 200 body checked whole).
inline void revoke_access(httplib::Client& c, const std::string& token) {
  const auto r = call(c, "DELETE", kAccess, bearer(token));
  const auto o = ok_body(r, 2);
  CHECK(member(o, "message").is<std::string>());
  CHECK(string_member(o, "result") == "Token successfully blacklisted");
}

/// A successful DELETE token/refresh: checks the whole 200 body, returns the new refresh token.
inline std::string rotate_refresh(httplib::Client& c, const Account& a) {
  const auto r = call(c, "DELETE", kRefresh, auth(iwsec_test::basic(a.email, a.password)));
  const auto o = ok_body(r, 3);
  CHECK(member(o, "message").is<std::string>());
  CHECK(string_member(o, "result") == "Successfully Blacklisted Refresh Token.");
  const std::string token = string_member(o, "refresh_token");
  CHECK(token.size() >= 43);  // >= 256 bits, base64url
  CHECK(token != a.refresh_token);
  return token;
}

}  // namespace iwsec_http
