// The hostile-input suite: what an attacker sends to the five security
// endpoints and to a guarded host route, one named TEST_CASE per attack
// (`test_hostile --list-tests` lists them). Every case runs against a fresh
// real server on 127.0.0.1 and asserts the exact outcome class docs/endpoints.md states
// (status, iw_code envelope, challenge), that nothing answers 5xx, that a
// guarded host handler never runs, and that the server still serves a
// genuine token afterwards.
//
// "Not slow" is asserted structurally, never with a timer: an over-long
// header or token is refused before any parsing (a 400 even on
// token/validate, `VerifyError::too_large` at the signer), and a Basic
// header that cannot be split into user:password is refused without running
// the key-derivation function (counted by iwsec::detail::kdf_call_count()
// where the library has it).
//
// Tokens with one malformation each are built here (OpenSSL HMAC with the
// server's own key where a valid MAC makes the case meaningful); the
// "control" cases prove the builders make tokens the server accepts, so
// every refusal below is caused by the one malformation.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "support/http_fixture.hpp"

using namespace iwsec_http;
using iwsec_test::basic;

// ---- the KDF call counter, where the library has one ----------------------
//
// iwsec::detail::kdf_call_count() counts PBKDF2 runs (added with the
// brute-force work). Until it is in the library, the fallback below is
// chosen, answers -1, and the KDF assertions are skipped with a warning.
// Once the library has it, overload resolution prefers the library's
// non-template function to this template, and the assertions run.
namespace hostile_kdf_fallback {
template <typename Unused = void>
long long kdf_call_count() {
  return -1;
}
}  // namespace hostile_kdf_fallback

namespace {

long long kdf_calls() {
  using namespace iwsec::detail;
  using namespace hostile_kdf_fallback;
  return static_cast<long long>(kdf_call_count());
}

constexpr const char* kGuarded = "/v3/domains";
constexpr const char* kPassword = "correct horse battery";
constexpr const char* kJti = "0b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2a10";

// ---- the server under attack ------------------------------------------------

struct Hostile {
  std::shared_ptr<std::atomic<int>> guarded_runs = std::make_shared<std::atomic<int>>(0);
  Fixture f;
  Account alice;
  std::string token;  // a genuine access token of alice's

  Hostile() {
    alice = add_account(f.users, "alice@example.com", kPassword);
    f.sec = iwsec::mount_security_routes(f.server, f.users, f.signer, f.options);
    auto runs = guarded_runs;
    f.server.Get(kGuarded, f.sec->guard([runs](const httplib::Request&, httplib::Response& res,
                                               const iwsec::VerifiedToken&) {
      ++*runs;
      res.set_content("{\"result\":[]}", "application/json");
    }));
    f.running = std::make_unique<iwsec_test::RunningServer>(f.server);
    auto c = client();
    token = login(c, alice);
  }

  httplib::Client client() const { return f.client(); }
  std::int64_t now() const { return f.clock.now(); }

  /// The server still serves: alice's genuine token is valid and a guarded
  /// route runs for it.
  void still_serving() {
    auto c = client();
    CHECK(is_valid(c, token));
    const int before = guarded_runs->load();
    const auto r = call(c, "GET", kGuarded, bearer(token));
    CHECK(r.status == 200);
    CHECK(guarded_runs->load() == before + 1);
  }
};

// ---- outcome classes --------------------------------------------------------

enum class Outcome {
  bad_request,    // 400 IW10006 envelope
  basic_401,      // 401 IW10004, WWW-Authenticate: Basic
  bearer_401,     // 401 IW10004, WWW-Authenticate: Bearer, no error=
  invalid_token,  // 401 IW10004, WWW-Authenticate: Bearer error="invalid_token"
  rejected,       // 406 IW10031
  not_valid,      // 200 {"message":"","result":{"is_valid":false}}
  revoked,        // 200 "Token successfully blacklisted" (a genuine token)
  bare_400,       // 400 from cpp-httplib itself (header block over its limit): no route ran
};

const char* name(Outcome o) {
  switch (o) {
    case Outcome::bad_request: return "400 IW10006";
    case Outcome::basic_401: return "401 Basic";
    case Outcome::bearer_401: return "401 Bearer";
    case Outcome::invalid_token: return "401 invalid_token";
    case Outcome::rejected: return "406 IW10031";
    case Outcome::not_valid: return "200 is_valid:false";
    case Outcome::revoked: return "200 blacklisted";
    case Outcome::bare_400: return "bare 400";
  }
  return "?";
}

void check_outcome(const httplib::Response& r, Outcome o) {
  INFO("expected " << name(o) << ", got " << r.status << " " << r.body.substr(0, 300));
  CHECK(r.status < 500);
  switch (o) {
    case Outcome::bad_request: check_envelope(r, 400, "IW10006"); break;
    case Outcome::basic_401: check_basic_challenge(r); break;
    case Outcome::bearer_401: check_bearer_challenge(r, false); break;
    case Outcome::invalid_token: check_bearer_challenge(r, true); break;
    case Outcome::rejected: check_rejected(r); break;
    case Outcome::not_valid: {
      const auto o2 = ok_body(r, 2);
      const auto& result = as_object(member(o2, "result"));
      REQUIRE(member(result, "is_valid").is<bool>());
      CHECK(member(result, "is_valid").get<bool>() == false);
      break;
    }
    case Outcome::revoked: {
      const auto o2 = ok_body(r, 2);
      CHECK(string_member(o2, "result") == "Token successfully blacklisted");
      break;
    }
    case Outcome::bare_400:
      CHECK(r.status == 400);
      CHECK(r.body.find("IW1") == std::string::npos);  // no route's envelope
      break;
  }
}

/// What each of the five endpoints and the guard must answer.
struct Expect {
  Outcome authenticate, access, revoke, validate, refresh, guard;
};

/// Sends @p headers to every endpoint and the guarded route, checks each
/// outcome, that the guarded handler never ran, and that the server still
/// serves afterwards.
void attack_all(Hostile& h, const httplib::Headers& headers, const Expect& e) {
  auto c = h.client();
  const int runs = h.guarded_runs->load();
  const struct {
    const char* method;
    const char* path;
    Outcome outcome;
  } targets[] = {{"GET", kAuthenticate, e.authenticate}, {"GET", kAccess, e.access},
                 {"DELETE", kAccess, e.revoke},         {"GET", kValidate, e.validate},
                 {"DELETE", kRefresh, e.refresh},       {"GET", kGuarded, e.guard}};
  for (const auto& t : targets) {
    INFO(t.method << " " << t.path);
    const auto r = call(c, t.method, t.path, headers);
    check_outcome(r, t.outcome);
    check_no_leak(r, kPassword);
    check_no_leak(r, h.alice.refresh_token);
  }
  CHECK(h.guarded_runs->load() == runs);
  h.still_serving();
}

// Common expectation rows.
constexpr Expect kNoCredentials{Outcome::basic_401,  Outcome::basic_401, Outcome::bearer_401,
                                Outcome::bearer_401, Outcome::basic_401, Outcome::bearer_401};
constexpr Expect kBadRequestEverywhere{Outcome::bad_request, Outcome::bad_request, Outcome::bad_request,
                                       Outcome::bad_request, Outcome::bad_request, Outcome::bad_request};
constexpr Expect kBareEverywhere{Outcome::bare_400, Outcome::bare_400, Outcome::bare_400,
                                 Outcome::bare_400, Outcome::bare_400, Outcome::bare_400};

// ---- raw requests ---------------------------------------------------------------
//
// httplib::Client writes header values with printf("%s"), so a NUL would be
// cut on the client side; these requests are written byte for byte.

struct RawAnswer {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
};

RawAnswer raw_request(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  std::size_t sent = 0;
  while (sent < request.size()) {
    const auto n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[4096];
  for (;;) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  RawAnswer a;
  const auto end = in.find("\r\n\r\n");
  INFO("raw answer: " << in.substr(0, 300));
  REQUIRE(end != std::string::npos);
  REQUIRE(in.rfind("HTTP/1.1 ", 0) == 0);
  a.status = std::stoi(in.substr(9, 3));
  a.head = in.substr(0, end);
  a.body = in.substr(end + 4);
  return a;
}

/// GET/DELETE @p path with these raw header lines (each without CRLF).
RawAnswer raw(const Hostile& h, const char* method, const char* path, const std::vector<std::string>& lines) {
  std::string req = std::string(method) + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const auto& l : lines) req += l + "\r\n";
  req += "\r\n";
  return raw_request(h.f.running->port(), req);
}

/// The status and iw_code of a raw answer (never 5xx; the envelope's code).
void check_raw(const RawAnswer& a, int status, const std::string& iw_code) {
  INFO("raw answer " << a.status << " " << a.body);
  CHECK(a.status < 500);
  REQUIRE(a.status == status);
  const auto doc = parse_json(a.body);
  const auto& o = as_object(doc);
  if (iw_code.empty()) {
    CHECK(o.count("iw_code") == 0);
  } else {
    CHECK(string_member(o, "iw_code") == iw_code);
  }
}

/// A Basic credential that cannot be split (not base64, no colon): 400 on
/// the password routes without any KDF run, 406 on token/access (any
/// non-empty value that is not a refresh token), 401 on the bearer routes.
void unusable_basic(Hostile& h, const std::string& value) {
  INFO("Authorization: " << value.substr(0, 200));
  const long long before = kdf_calls();
  attack_all(h, auth(value),
             {Outcome::bad_request, Outcome::rejected, Outcome::bearer_401, Outcome::bearer_401,
              Outcome::bad_request, Outcome::bearer_401});
  if (before < 0) {
    WARN("iwsec::detail::kdf_call_count() not in this build: KDF count not checked");
  } else {
    // still_serving() and the rest ran no password check either.
    CHECK(kdf_calls() == before);
  }
}

/// Basic user:password that decodes but names no account with that
/// password: the one identical 406 on both password routes, each after
/// exactly one KDF run (the same work as a wrong password).
void wrong_basic(Hostile& h, const std::string& user, const std::string& password) {
  const std::string value = "Basic " + iwsec::base64_encode(user + ":" + password);
  auto c = h.client();
  std::string bodies[2];
  int i = 0;
  for (const char* path : {kAuthenticate, kRefresh}) {
    INFO(path);
    const long long before = kdf_calls();
    const auto r = call(c, path == kAuthenticate ? "GET" : "DELETE", path, auth(value));
    check_outcome(r, Outcome::rejected);
    check_no_leak(r, kPassword);
    if (before >= 0) CHECK(kdf_calls() == before + 1);
    bodies[i++] = r.body;
  }
  CHECK(bodies[0] == bodies[1]);
  // And token/access: those bytes are no refresh token.
  check_outcome(call(c, "GET", kAccess, auth(value)), Outcome::rejected);
  if (kdf_calls() < 0) WARN("iwsec::detail::kdf_call_count() not in this build: KDF count not checked");
  h.still_serving();
}

// ---- building tokens ----------------------------------------------------------

std::string b64u(std::string_view s) { return iwsec::base64url_encode(s); }

std::string mac_b64u(const EVP_MD* md, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
               data.size(), out, &len) != nullptr);
  return b64u(std::string_view(reinterpret_cast<const char*>(out), len));
}

/// header.payload signed with HMAC (@p md, @p key): by default HS256 with the
/// server's own key, so only the deliberate malformation can be wrong.
std::string sign(std::string_view header_json, std::string_view payload_json, const EVP_MD* md = EVP_sha256(),
                 std::string_view key = kSecret) {
  std::string input = b64u(header_json) + "." + b64u(payload_json);
  return input + "." + mac_b64u(md, key, input);
}

/// Payload members as raw JSON texts, in order; the defaults make a valid
/// token of alice's at the fixture's clock.
using Members = std::vector<std::pair<std::string, std::string>>;

std::string json_string(std::string_view s) {
  std::string out;
  iwsec::detail::append_json_string(out, s);
  return out;
}

std::string subject(std::string_view email, std::string_view action = "password") {
  return json_string(std::string("{\"email\":") + json_string(email) + ",\"scope\":{\"action\":" + json_string(action) +
                     "}}");
}

Members claims(const Hostile& h) {
  return {{"iat", std::to_string(h.now())},
          {"sub", subject(h.alice.email)},
          {"jti", json_string(kJti)},
          {"exp", std::to_string(h.now() + 900)},
          {"gen", "0"},
          {"user_id", json_string(h.alice.user_id)}};
}

Members with(Members m, const std::string& key, const std::string& raw) {
  for (auto& kv : m)
    if (kv.first == key) {
      kv.second = raw;
      return m;
    }
  m.emplace_back(key, raw);
  return m;
}

Members without(Members m, const std::string& key) {
  Members out;
  for (auto& kv : m)
    if (kv.first != key) out.push_back(std::move(kv));
  return out;
}

std::string object(const Members& m) {
  std::string out = "{";
  for (const auto& kv : m) {
    if (out.size() > 1) out += ',';
    out += json_string(kv.first) + ":" + kv.second;
  }
  return out + "}";
}

constexpr const char* kHs256 = "{\"alg\":\"HS256\"}";

/// A token that is not one of ours (or no longer usable): validate says
/// false, the guard refuses it as invalid_token, a revocation refuses it
/// (or, for a genuine token, accepts it), token/access never takes it.
void bad_token(Hostile& h, const std::string& token, Outcome revoke = Outcome::invalid_token) {
  INFO("token: " << token.substr(0, 300));
  attack_all(h, bearer(token),
             {Outcome::basic_401, Outcome::basic_401, revoke, Outcome::not_valid, Outcome::basic_401,
              Outcome::invalid_token});
  // Handed over as a refresh token it is just a wrong one.
  auto c = h.client();
  check_outcome(call(c, "GET", kAccess, auth("Basic " + token)), Outcome::rejected);
}

/// bad_token() plus the signer's own verdict on it.
void bad_token(Hostile& h, const std::string& token, iwsec::VerifyError why,
               Outcome revoke = Outcome::invalid_token) {
  CHECK(iwsec::to_string(h.f.signer.verify(token, h.now()).error()) == std::string(iwsec::to_string(why)));
  bad_token(h, token, revoke);
}

/// A correctly signed token with header @p header and these members.
void bad_signed(Hostile& h, std::string_view header, const Members& m, Outcome revoke = Outcome::invalid_token) {
  const std::string t = sign(header, object(m));
  CHECK_FALSE(h.f.signer.verify(t, h.now()).ok());
  bad_token(h, t, revoke);
}

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

// ===========================================================================
// Controls: the builders make tokens the server accepts
// ===========================================================================

TEST_CASE("control: a token built by this suite with the server's key is accepted everywhere", "[hostile][control]") {
  Hostile h;
  const std::string t = sign(kHs256, object(claims(h)));
  REQUIRE(h.f.signer.verify(t, h.now()).ok());
  auto c = h.client();
  CHECK(is_valid(c, t));
  CHECK(call(c, "GET", kGuarded, bearer(t)).status == 200);
  check_outcome(call(c, "DELETE", kAccess, bearer(t)), Outcome::revoked);
  CHECK_FALSE(is_valid(c, t));
  h.still_serving();
}

TEST_CASE("control: the same token with typ JWT is accepted", "[hostile][control]") {
  Hostile h;
  const std::string t = sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", object(claims(h)));
  auto c = h.client();
  CHECK(is_valid(c, t));
}

// ===========================================================================
// The Authorization header itself
// ===========================================================================

TEST_CASE("no Authorization header: 401 with the endpoint's challenge everywhere", "[hostile][header]") {
  Hostile h;
  attack_all(h, {}, kNoCredentials);
}

TEST_CASE("an empty Authorization header counts as none", "[hostile][header]") {
  Hostile h;
  attack_all(h, auth(""), kNoCredentials);
}

TEST_CASE("an Authorization header of blanks and tabs counts as none", "[hostile][header]") {
  Hostile h;
  attack_all(h, auth(" \t  \t"), kNoCredentials);
}

TEST_CASE("a bare scheme name without credentials counts as none", "[hostile][header]") {
  Hostile h;
  attack_all(h, auth("Basic"), kNoCredentials);
  attack_all(h, auth("Bearer   "), kNoCredentials);
}

TEST_CASE("unknown schemes (Digest, NTLM, Negotiate, AWS4) are no credentials", "[hostile][header]") {
  Hostile h;
  for (const std::string& v : std::vector<std::string>{"Digest username=\"alice@example.com\", realm=\"x\", response=\"0\"",
                              "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==", "Negotiate YIIBhwYGKwYBBQUCoIIBezCC",
                              "AWS4-HMAC-SHA256 Credential=x", "Token " + std::string("abc")}) {
    INFO(v);
    attack_all(h, auth(v), kNoCredentials);
  }
}

TEST_CASE("a scheme glued to its credentials (no blank) is an unknown scheme", "[hostile][header]") {
  Hostile h;
  attack_all(h, auth("Bearer" + h.token), kNoCredentials);
  attack_all(h, auth("Basic" + iwsec::base64_encode(h.alice.email + ":" + kPassword)), kNoCredentials);
}

TEST_CASE("a Bearer token on the Basic endpoints and Basic credentials on the Bearer ones are refused", "[hostile][header]") {
  Hostile h;
  auto c = h.client();
  check_outcome(call(c, "GET", kAuthenticate, bearer(h.token)), Outcome::basic_401);
  check_outcome(call(c, "GET", kAccess, bearer(h.alice.refresh_token)), Outcome::basic_401);
  check_outcome(call(c, "DELETE", kRefresh, bearer(h.token)), Outcome::basic_401);
  const auto creds = basic(h.alice.email, kPassword);
  check_outcome(call(c, "GET", kValidate, auth(creds)), Outcome::bearer_401);
  check_outcome(call(c, "DELETE", kAccess, auth(creds)), Outcome::bearer_401);
  check_outcome(call(c, "GET", kGuarded, auth(creds)), Outcome::bearer_401);
  check_outcome(call(c, "GET", kGuarded, auth("Basic " + h.token)), Outcome::bearer_401);
  CHECK(h.guarded_runs->load() == 0);
  h.still_serving();
}

TEST_CASE("two Authorization headers, both valid, are a 400 everywhere", "[hostile][header][duplicate]") {
  Hostile h;
  httplib::Headers two;
  two.emplace("Authorization", basic(h.alice.email, kPassword));
  two.emplace("Authorization", basic(h.alice.email, kPassword));
  attack_all(h, two, kBadRequestEverywhere);
  httplib::Headers two_bearer;
  two_bearer.emplace("Authorization", "Bearer " + h.token);
  two_bearer.emplace("Authorization", "Bearer " + h.token);
  attack_all(h, two_bearer, kBadRequestEverywhere);
}

TEST_CASE("three Authorization headers of different schemes are a 400 everywhere", "[hostile][header][duplicate]") {
  Hostile h;
  httplib::Headers three;
  three.emplace("Authorization", "Bearer " + h.token);
  three.emplace("Authorization", basic(h.alice.email, kPassword));
  three.emplace("Authorization", "Basic " + h.alice.refresh_token);
  attack_all(h, three, kBadRequestEverywhere);
}

TEST_CASE("the header name in other cases still counts as a second Authorization", "[hostile][header][duplicate]") {
  Hostile h;
  httplib::Headers two;
  two.emplace("Authorization", "Bearer " + h.token);
  two.emplace("AUTHORIZATION", "Bearer " + h.token);
  attack_all(h, two, kBadRequestEverywhere);
}

TEST_CASE("an Authorization header over 4096 bytes is a 400 before any parsing", "[hostile][header][size]") {
  Hostile h;
  // Even token/validate, which answers 200 is_valid:false to any bad token,
  // answers 400 here: the value was refused on its length alone.
  attack_all(h, auth("Bearer " + h.token + std::string(4200, 'A')), kBadRequestEverywhere);
  attack_all(h, auth("Basic " + std::string(5000, 'Q')), kBadRequestEverywhere);
  attack_all(h, auth("Bearer " + std::string(4090, '.')), kBadRequestEverywhere);
}

TEST_CASE("a header block over cpp-httplib's limit (a 100 KB token) is refused before any route", "[hostile][header][size]") {
  Hostile h;
  attack_all(h, bearer(std::string(100 * 1024, 'a')), kBareEverywhere);
  attack_all(h, auth("Basic " + iwsec::base64_encode(h.alice.email + ":" + std::string(100 * 1024, 'p'))),
             kBareEverywhere);
}

// cpp-httplib 0.17.1 and later refuse a header value holding a control byte
// (RFC 9110 section 5.5) with a 400 of their own, before any handler runs;
// 0.11 hands the value over, and iwsec must not cut it off.
constexpr bool parser_refuses_control_bytes =
    iwsec::detail::httplib_version >= iwsec::detail::version_number(0, 17, 1);

TEST_CASE("a NUL byte after a genuine token or refresh token is not cut off (raw bytes)", "[hostile][header]") {
  Hostile h;
  const std::string nul(1, '\0');
  const std::string line = "Authorization: Bearer " + h.token + nul + "garbage";
  const std::string refresh_line = "Authorization: Basic " + h.alice.refresh_token + nul;
  const std::string basic_line =
      "Authorization: Basic " + iwsec::base64_encode(h.alice.email + ":" + kPassword) + nul;
  if (parser_refuses_control_bytes) {
    CHECK(raw(h, "GET", kValidate, {line}).status == 400);
    CHECK(raw(h, "GET", kGuarded, {line}).status == 400);
    CHECK(raw(h, "DELETE", kAccess, {line}).status == 400);
    CHECK(raw(h, "GET", kAccess, {refresh_line}).status == 400);
    CHECK(raw(h, "GET", kAuthenticate, {basic_line}).status == 400);
  } else {
    const auto v = raw(h, "GET", kValidate, {line});
    check_raw(v, 200, "");
    CHECK(v.body == "{\"message\":\"\",\"result\":{\"is_valid\":false}}");
    check_raw(raw(h, "GET", kGuarded, {line}), 401, "IW10004");
    check_raw(raw(h, "DELETE", kAccess, {line}), 401, "IW10004");
    check_raw(raw(h, "GET", kAccess, {refresh_line}), 406, "IW10031");
    check_raw(raw(h, "GET", kAuthenticate, {basic_line}), 400, "IW10006");
  }
  CHECK(h.guarded_runs->load() == 0);
  h.still_serving();  // and the token was not revoked by the DELETE above
}

TEST_CASE("control bytes after a genuine token make it unusable", "[hostile][header]") {
  Hostile h;
  const std::string token = h.token + "\x01\x02\x7f";
  if (!parser_refuses_control_bytes) return bad_token(h, token, iwsec::VerifyError::malformed);
  CHECK(iwsec::to_string(h.f.signer.verify(token, h.now()).error()) ==
        std::string(iwsec::to_string(iwsec::VerifyError::malformed)));
  for (const char* method : {"GET", "DELETE"}) {
    const std::string line = std::string("Authorization: Bearer ") + token;
    CHECK(raw(h, method, std::string(method) == std::string("GET") ? kValidate : kAccess, {line}).status == 400);
  }
  CHECK(raw(h, "GET", kGuarded, {"Authorization: Bearer " + token}).status == 400);
  CHECK(h.guarded_runs->load() == 0);
  h.still_serving();
}

TEST_CASE("a second Authorization header in other spellings (raw bytes) is still two headers", "[hostile][header][duplicate]") {
  Hostile h;
  for (const char* second : {"authorization: Basic", "AUTHORIZATION:    x", "Authorization:Bearer\tx"}) {
    INFO("second line '" << second << "'");
    const std::vector<std::string> lines{"Authorization: Bearer " + h.token, second};
    check_raw(raw(h, "GET", kValidate, lines), 400, "IW10006");
    check_raw(raw(h, "GET", kGuarded, lines), 400, "IW10006");
    check_raw(raw(h, "DELETE", kAccess, lines), 400, "IW10006");
  }
  CHECK(h.guarded_runs->load() == 0);
  h.still_serving();
}

TEST_CASE("a blank inside the credentials makes them unusable", "[hostile][header]") {
  Hostile h;
  bad_token(h, h.token.substr(0, 20) + " " + h.token.substr(20));
  const auto b = iwsec::base64_encode(h.alice.email + ":" + kPassword);
  unusable_basic(h, "Basic " + b.substr(0, 8) + " " + b.substr(8));
}

// Known limitation, hidden from the default run: cpp-httplib 0.11 drops a
// header line whose value is empty before any handler sees the request, so
// "Authorization: <token>" plus "Authorization:" reaches iwsec as one header
// (and is answered as that one header). iwsec cannot count what it is not
// given; an empty value carries no credential either way.
TEST_CASE("an empty second Authorization header is dropped by cpp-httplib", "[.][hostile][header][limitation]") {
  Hostile h;
  const std::vector<std::string> lines{"Authorization: Bearer " + h.token, "Authorization:"};
  check_raw(raw(h, "GET", kValidate, lines), 400, "IW10006");
}

// ===========================================================================
// Basic credentials: base64 and user:password malformations
// ===========================================================================

TEST_CASE("Basic: not base64 at all", "[hostile][basic]") {
  Hostile h;
  unusable_basic(h, "Basic !!!!");
  unusable_basic(h, "Basic alice@example.com:correct horse battery");
}

TEST_CASE("Basic: base64 of text without a colon", "[hostile][basic]") {
  Hostile h;
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email));
  unusable_basic(h, "Basic " + iwsec::base64_encode(std::string(300, 'x')));
}

TEST_CASE("Basic: the base64url alphabet instead of standard base64", "[hostile][basic]") {
  Hostile h;
  // "?>?" makes '+' and '/' in standard base64, '-' and '_' in base64url.
  const std::string creds = h.alice.email + ":" + kPassword + "?>?";
  REQUIRE(iwsec::base64_encode(creds).find_first_of("+/") != std::string::npos);
  unusable_basic(h, "Basic " + iwsec::base64url_encode(creds));
}

TEST_CASE("Basic: missing padding", "[hostile][basic]") {
  Hostile h;
  const std::string b = iwsec::base64_encode("a@b.c:pw1");  // 9 bytes: no padding
  const std::string padded = iwsec::base64_encode("a@b.c:pw");  // 8 bytes: one '='
  REQUIRE(padded.back() == '=');
  unusable_basic(h, "Basic " + padded.substr(0, padded.size() - 1));
  unusable_basic(h, "Basic " + b + "=");
}

TEST_CASE("Basic: too much padding and padding in the middle", "[hostile][basic]") {
  Hostile h;
  unusable_basic(h, "Basic YTpi===");
  unusable_basic(h, "Basic YQ==YTpi");
  unusable_basic(h, "Basic ====");
}

TEST_CASE("Basic: non-canonical trailing bits", "[hostile][basic]") {
  Hostile h;
  // "YTo=" is "a:"; "YTp=" decodes to the same byte with a stray bit set.
  unusable_basic(h, "Basic YTp=");
  unusable_basic(h, "Basic YTpiYR==");
}

TEST_CASE("Basic: an empty user or an empty password is a plain 406", "[hostile][basic]") {
  Hostile h;
  wrong_basic(h, "", kPassword);
  wrong_basic(h, h.alice.email, "");
  wrong_basic(h, "", "");
}

TEST_CASE("Basic: a NUL byte after the right password is no login (PBKDF2 would pad it away)", "[hostile][basic]") {
  Hostile h;
  // HMAC zero-pads short keys, so PBKDF2("pw" + NUL) == PBKDF2("pw"): the
  // NUL must be refused before any password check (RFC 7617 forbids it).
  const std::string pw_nul = std::string(kPassword) + std::string(1, '\0');
  REQUIRE(iwsec::verify_password(pw_nul, h.f.users.find_by_email(h.alice.email)->password_hash));
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email + ":" + pw_nul));
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email + ":" + pw_nul + pw_nul));
}

TEST_CASE("Basic: a NUL byte in the user", "[hostile][basic]") {
  Hostile h;
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email + std::string(1, '\0') + ":" + kPassword));
  unusable_basic(h, "Basic " + iwsec::base64_encode(std::string(1, '\0') + h.alice.email + ":" + kPassword));
}

TEST_CASE("Basic: control bytes in the user and the password", "[hostile][basic]") {
  Hostile h;
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email + "\r\nX-Injected: 1:" + kPassword));
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email + ":" + kPassword + "\x1b[2J"));
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email + ":" + kPassword + "\x7f"));
  unusable_basic(h, "Basic " + iwsec::base64_encode(h.alice.email + ":\t" + kPassword));
}

TEST_CASE("Basic: the user:password split refuses every control byte and nothing else", "[hostile][basic][unit]") {
  for (int c = 0; c < 256; ++c) {
    const std::string text = std::string("u") + static_cast<char>(c) + "@x:p" + static_cast<char>(c) + "w";
    INFO("byte " << c);
    const auto pair = iwsec::detail::parse_basic_credentials(iwsec::base64_encode(text));
    const bool control = c < 0x20 || c == 0x7F;
    CHECK(pair.has_value() == !control);
    if (pair && c != ':') {
      CHECK(pair->user == text.substr(0, 4));
      CHECK(pair->password == text.substr(5));
    }
  }
  const auto colons = iwsec::detail::parse_basic_credentials(iwsec::base64_encode("a@b.c:p:w:"));
  REQUIRE(colons);
  CHECK(colons->user == "a@b.c");
  CHECK(colons->password == "p:w:");
}

TEST_CASE("Basic: invalid UTF-8 in the user and the password", "[hostile][basic]") {
  Hostile h;
  wrong_basic(h, "alice\xc3\x28@example.com", kPassword);
  wrong_basic(h, h.alice.email, "\xff\xfe\xed\xa0\x80 overlong \xc0\xaf");
}

TEST_CASE("Basic: the right password with something appended or cut is no login", "[hostile][basic]") {
  Hostile h;
  wrong_basic(h, h.alice.email, std::string(kPassword) + " ");
  wrong_basic(h, h.alice.email, std::string(kPassword).substr(0, 10));
  wrong_basic(h, h.alice.email + " ", kPassword);
}

TEST_CASE("Basic: a 3 KB password under the bound is one plain 406", "[hostile][basic][size]") {
  Hostile h;
  wrong_basic(h, h.alice.email, std::string(3000, 'p'));
}

TEST_CASE("Basic: a 6 KB password is refused without any password check", "[hostile][basic][size]") {
  Hostile h;
  // 6 KB of password is over 8 KB of base64: over iwsec's 4096-byte bound
  // and over cpp-httplib's header limit, so no route runs at all.
  const long long before = kdf_calls();
  attack_all(h, auth(basic(h.alice.email, std::string(6 * 1024, 'p'))), kBareEverywhere);
  // Just under cpp-httplib's limit, iwsec's own bound answers.
  attack_all(h, auth(basic(h.alice.email, std::string(5 * 1024, 'p'))), kBadRequestEverywhere);
  if (before >= 0) CHECK(kdf_calls() == before);
}

TEST_CASE("Basic: an unknown account, a disabled one and a wrong password answer the same bytes", "[hostile][basic]") {
  Hostile h;
  add_account(h.f.users, "disabled@example.com", kPassword, true);
  auto c = h.client();
  std::vector<std::string> bodies;
  for (const auto& creds : {basic("nobody@example.com", kPassword), basic("disabled@example.com", kPassword),
                            basic(h.alice.email, "wrong password")}) {
    const long long before = kdf_calls();
    const auto r = call(c, "GET", kAuthenticate, auth(creds));
    check_outcome(r, Outcome::rejected);
    if (before >= 0) CHECK(kdf_calls() == before + 1);
    bodies.push_back(r.body);
  }
  CHECK(bodies[0] == bodies[1]);
  CHECK(bodies[1] == bodies[2]);
  h.still_serving();
}

TEST_CASE("token/access: anything but the exact refresh token is a 406", "[hostile][basic][refresh]") {
  Hostile h;
  auto c = h.client();
  const std::string& rt = h.alice.refresh_token;
  for (const std::string& v : std::vector<std::string>{rt + "=", rt.substr(1), iwsec::base64_encode(rt), rt + "A",
        std::string(4000, 'A'), h.token, "%00", "' OR '1'='1", iwsec::base64_encode(h.alice.email + ":" + kPassword)}) {
    INFO("Basic " << v.substr(0, 80));
    const auto r = call(c, "GET", kAccess, auth("Basic " + v));
    check_outcome(r, Outcome::rejected);
    check_no_leak(r, rt);
  }
  h.still_serving();
}

// ===========================================================================
// Tokens: shape and encoding
// ===========================================================================

TEST_CASE("token: one segment", "[hostile][token]") {
  Hostile h;
  bad_token(h, h.token.substr(0, h.token.find('.')), iwsec::VerifyError::malformed);
}

TEST_CASE("token: two segments", "[hostile][token]") {
  Hostile h;
  bad_token(h, h.token.substr(0, h.token.rfind('.')), iwsec::VerifyError::malformed);
}

TEST_CASE("token: four and five segments", "[hostile][token]") {
  Hostile h;
  bad_token(h, h.token + ".e30", iwsec::VerifyError::malformed);
  bad_token(h, h.token + "..", iwsec::VerifyError::malformed);
}

TEST_CASE("token: empty segments", "[hostile][token]") {
  Hostile h;
  bad_token(h, "..", iwsec::VerifyError::malformed);
  const auto d1 = h.token.find('.');
  bad_token(h, h.token.substr(d1), iwsec::VerifyError::malformed);  // no header
}

TEST_CASE("token: thousands of dots", "[hostile][token][size]") {
  Hostile h;
  bad_token(h, std::string(4000, '.'), iwsec::VerifyError::malformed);
  std::string dotted;
  for (int i = 0; i < 1300; ++i) dotted += "e30.";
  bad_token(h, dotted.substr(0, 4000), iwsec::VerifyError::malformed);
}

TEST_CASE("token: over the signer's size bound, refused before any parsing", "[hostile][token][size]") {
  Hostile h;
  // A genuine token with a huge (never parsed) payload: too_large, not any
  // verdict that would need a parse.
  const std::string huge = sign(kHs256, object(with(claims(h), "pad", json_string(std::string(9000, 'x')))));
  REQUIRE(huge.size() > iwsec::Signer::max_token_bytes);
  CHECK(h.f.signer.verify(huge, h.now()).error() == iwsec::VerifyError::too_large);
  CHECK(h.f.signer.verify(std::string(100 * 1024, '.'), h.now()).error() == iwsec::VerifyError::too_large);
  CHECK(h.f.signer.verify(nested(60 * 1024), h.now()).error() == iwsec::VerifyError::too_large);
  // Over HTTP the header bound refuses it even earlier.
  attack_all(h, bearer(huge), kBareEverywhere);
}

TEST_CASE("token: base64 padding on the segments", "[hostile][token]") {
  Hostile h;
  bad_token(h, h.token + "=", iwsec::VerifyError::malformed);
  const auto d1 = h.token.find('.');
  bad_token(h, h.token.substr(0, d1) + "=" + h.token.substr(d1));  // padded header
}

TEST_CASE("token: standard base64 '+' and '/' instead of '-' and '_'", "[hostile][token]") {
  Hostile h;
  std::string t = h.token;
  std::string std_alphabet = t;
  for (auto& ch : std_alphabet) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  if (std_alphabet == t) std_alphabet[t.size() - 2] = '+';  // make sure one is there
  bad_token(h, std_alphabet);
}

TEST_CASE("token: a non-canonical base64url signature (same bytes, stray trailing bits)", "[hostile][token]") {
  Hostile h;
  // A 32-byte MAC is 43 symbols; the last carries 2 unused bits. Setting
  // them gives another spelling of the very same MAC bytes.
  std::string t = h.token;
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const auto v = alphabet.find(t.back());
  REQUIRE(v % 4 == 0);
  t.back() = alphabet[v + 1];
  bad_token(h, t, iwsec::VerifyError::malformed);
}

TEST_CASE("token: whitespace and junk bytes inside a segment", "[hostile][token]") {
  Hostile h;
  const auto d1 = h.token.find('.');
  bad_token(h, h.token.substr(0, d1) + "\t" + h.token.substr(d1));
  bad_token(h, h.token.substr(0, 5) + "*" + h.token.substr(6), iwsec::VerifyError::malformed);
  bad_token(h, h.token.substr(0, 5) + "\xc3\xa9" + h.token.substr(7), iwsec::VerifyError::malformed);
}

// ===========================================================================
// Tokens: algorithm and signature
// ===========================================================================

TEST_CASE("token: alg none with the signature stripped", "[hostile][token][alg]") {
  Hostile h;
  bad_token(h, b64u("{\"alg\":\"none\"}") + "." + b64u(object(claims(h))) + ".");
  bad_token(h, b64u("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + b64u(object(claims(h))));
}

TEST_CASE("token: alg none carrying a valid HS256 MAC", "[hostile][token][alg]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"none\"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
  bad_token(h, sign("{\"alg\":\"None\"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
}

TEST_CASE("token: alg HS512 signed with the right key", "[hostile][token][alg]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"HS512\"}", object(claims(h)), EVP_sha512()), iwsec::VerifyError::unsupported_algorithm);
}

TEST_CASE("token: alg in lower case or padded", "[hostile][token][alg]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"hs256\"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
  bad_token(h, sign("{\"alg\":\"HS256 \"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
  bad_token(h, sign("{\"alg\":\"HS256\\u0000\"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
}

TEST_CASE("token: alg RS256 with the HMAC key as its 'public key' (algorithm confusion)", "[hostile][token][alg]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"RS256\"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
  bad_token(h, sign("{\"alg\":\"ES256\"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
}

TEST_CASE("token: alg missing, not a string, or an array", "[hostile][token][alg]") {
  Hostile h;
  bad_token(h, sign("{\"typ\":\"JWT\"}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
  bad_token(h, sign("{\"alg\":256}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
  bad_token(h, sign("{\"alg\":[\"HS256\"]}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
  bad_token(h, sign("{\"alg\":null}", object(claims(h))), iwsec::VerifyError::unsupported_algorithm);
}

TEST_CASE("token: signature stripped from a genuine token", "[hostile][token][signature]") {
  Hostile h;
  bad_token(h, h.token.substr(0, h.token.rfind('.') + 1), iwsec::VerifyError::malformed);
}

TEST_CASE("token: signature made with another key", "[hostile][token][signature]") {
  Hostile h;
  bad_token(h, sign(kHs256, object(claims(h)), EVP_sha256(), "another-key-of-32-bytes-or-more-0123456789"),
            iwsec::VerifyError::bad_signature);
}

TEST_CASE("token: signature truncated, extended, or zeroed", "[hostile][token][signature]") {
  Hostile h;
  const auto dot = h.token.rfind('.');
  const std::string input = h.token.substr(0, dot);
  bad_token(h, input + "." + h.token.substr(dot + 1, 22), iwsec::VerifyError::malformed);
  bad_token(h, input + "." + b64u(std::string(33, 'x')), iwsec::VerifyError::malformed);
  bad_token(h, input + "." + b64u(std::string(32, '\0')), iwsec::VerifyError::bad_signature);
}

TEST_CASE("token: a genuine signature moved onto another payload", "[hostile][token][signature]") {
  Hostile h;
  const auto d1 = h.token.find('.');
  const auto d2 = h.token.rfind('.');
  const std::string forged = h.token.substr(0, d1) + "." +
                             b64u(object(with(claims(h), "sub", subject("mallory@example.com")))) +
                             h.token.substr(d2);
  bad_token(h, forged, iwsec::VerifyError::bad_signature);
}

// ===========================================================================
// Tokens: header members
// ===========================================================================

TEST_CASE("token: a header that is not a JSON object", "[hostile][token][header]") {
  Hostile h;
  for (const char* header : {"[]", "\"HS256\"", "null", "42", "{", "", "{\"alg\":\"HS256\"} {}"}) {
    INFO("header " << header);
    bad_token(h, sign(header, object(claims(h))));
  }
}

TEST_CASE("token: a deeply nested header", "[hostile][token][header]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"HS256\",\"x\":" + nested(1000) + "}", object(claims(h))),
            iwsec::VerifyError::bad_header);
  // Deeper than HTTP can carry, at the signer: still a plain refusal.
  CHECK(h.f.signer.verify(sign("{\"alg\":\"HS256\",\"x\":" + nested(2900) + "}", "{}"), h.now()).error() ==
        iwsec::VerifyError::bad_header);
}

TEST_CASE("token: duplicate alg in the header", "[hostile][token][header]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"HS256\",\"alg\":\"none\"}", object(claims(h))));
  bad_token(h, sign("{\"alg\":\"none\",\"alg\":\"HS256\"}", object(claims(h))));
}

TEST_CASE("token: crit in the header", "[hostile][token][header]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", object(claims(h))), iwsec::VerifyError::bad_header);
  bad_token(h, sign("{\"alg\":\"HS256\",\"crit\":[]}", object(claims(h))), iwsec::VerifyError::bad_header);
}

TEST_CASE("token: kid tricks (unknown, path traversal, injection, not a string, empty)", "[hostile][token][header]") {
  Hostile h;
  for (const char* kid : {"\"unknown\"", "\"../../../../dev/null\"", "\"' UNION SELECT 'key' --\"", "\"\"",
                          "\"|/bin/true\"", "0", "null", "[\"a\"]"}) {
    INFO("kid " << kid);
    bad_token(h, sign(std::string("{\"alg\":\"HS256\",\"kid\":") + kid + "}", object(claims(h))));
  }
}

TEST_CASE("token: jku, jwk, x5u, x5c pointing at the attacker's keys", "[hostile][token][header]") {
  Hostile h;
  for (const char* member : {"\"jku\":\"https://attacker.example/jwks.json\"",
                             "\"jwk\":{\"kty\":\"oct\",\"k\":\"YXR0YWNrZXI\"}", "\"x5u\":\"https://attacker.example/c.pem\"",
                             "\"x5c\":[\"MIIB\"]", "\"b64\":false", "\"zip\":\"DEF\""}) {
    INFO(member);
    bad_token(h, sign(std::string("{\"alg\":\"HS256\",") + member + "}", object(claims(h))),
              iwsec::VerifyError::bad_header);
  }
}

TEST_CASE("token: typ other than JWT", "[hostile][token][header]") {
  Hostile h;
  bad_token(h, sign("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", object(claims(h))), iwsec::VerifyError::bad_header);
  bad_token(h, sign("{\"alg\":\"HS256\",\"typ\":1}", object(claims(h))), iwsec::VerifyError::bad_header);
}

// ===========================================================================
// Tokens: payload
// ===========================================================================

TEST_CASE("token: a payload that is not a JSON object", "[hostile][token][payload]") {
  Hostile h;
  for (const char* payload : {"[]", "\"claims\"", "null", "1700000000", "", "{\"exp\":1", "{} {}"}) {
    INFO("payload " << payload);
    bad_token(h, sign(kHs256, payload));
  }
}

TEST_CASE("token: a deeply nested payload (no stack exhaustion)", "[hostile][token][payload]") {
  Hostile h;
  bad_token(h, sign(kHs256, object(with(claims(h), "x", nested(1000)))), iwsec::VerifyError::bad_payload);
  CHECK(h.f.signer.verify(sign(kHs256, nested(2900)), h.now()).error() == iwsec::VerifyError::bad_payload);
  std::string objects;
  for (int i = 0; i < 300; ++i) objects += "{\"a\":";
  objects += "1" + std::string(300, '}');
  bad_token(h, sign(kHs256, object(with(claims(h), "x", objects))), iwsec::VerifyError::bad_payload);
}

TEST_CASE("token: duplicate claims in the payload", "[hostile][token][payload]") {
  Hostile h;
  Members twice = claims(h);
  twice.emplace_back("exp", std::to_string(h.now() + 999999));
  bad_token(h, sign(kHs256, object(twice)), iwsec::VerifyError::bad_payload);
  Members sub_twice = claims(h);
  sub_twice.emplace_back("sub", subject("admin@example.com"));
  bad_token(h, sign(kHs256, object(sub_twice)), iwsec::VerifyError::bad_payload);
}

TEST_CASE("token: invalid UTF-8 and NUL escapes in the payload", "[hostile][token][payload]") {
  Hostile h;
  bad_token(h, sign(kHs256, object(with(claims(h), "x", "\"\xff\xfe\""))), iwsec::VerifyError::bad_payload);
  // A NUL (escaped) inside the email: a genuine token of another "user",
  // never alice's (the email is not cut at the NUL).
  const std::string sub_nul = json_string("{\"email\":\"alice@example.com\\u0000evil\",\"scope\":{\"action\":\"password\"}}");
  const std::string t = sign(kHs256, object(with(claims(h), "sub", sub_nul)));
  REQUIRE(h.f.signer.verify(t, h.now()).ok());
  CHECK(h.f.signer.verify(t, h.now()).token().email() == std::string("alice@example.com\0evil", 22));
  bad_token(h, t, Outcome::revoked);
  bad_token(h, sign(kHs256, "\xef\xbb\xbf" + object(claims(h))), iwsec::VerifyError::bad_payload);  // BOM
}

TEST_CASE("token: exp missing", "[hostile][token][exp]") {
  Hostile h;
  bad_token(h, sign(kHs256, object(without(claims(h), "exp"))), iwsec::VerifyError::bad_claims);
}

TEST_CASE("token: exp as a string", "[hostile][token][exp]") {
  Hostile h;
  bad_signed(h, kHs256, with(claims(h), "exp", "\"" + std::to_string(h.now() + 900) + "\""));
}

TEST_CASE("token: exp negative", "[hostile][token][exp]") {
  Hostile h;
  bad_signed(h, kHs256, with(claims(h), "exp", "-1"));
  bad_signed(h, kHs256, with(claims(h), "exp", "-9223372036854775808"));
}

TEST_CASE("token: exp fractional or in exponent form", "[hostile][token][exp]") {
  Hostile h;
  bad_signed(h, kHs256, with(claims(h), "exp", std::to_string(h.now() + 900) + ".5"));
  bad_signed(h, kHs256, with(claims(h), "exp", std::to_string(h.now() + 900) + ".0"));
  bad_signed(h, kHs256, with(claims(h), "exp", "1.7000009e9"));
}

TEST_CASE("token: exp 1e309 (infinite as a double)", "[hostile][token][exp]") {
  Hostile h;
  bad_signed(h, kHs256, with(claims(h), "exp", "1e309"));
  bad_signed(h, kHs256, with(claims(h), "exp", "-1e309"));
}

TEST_CASE("token: exp past 2^63 and at the int64 edge", "[hostile][token][exp]") {
  Hostile h;
  bad_signed(h, kHs256, with(claims(h), "exp", "9223372036854775808"));
  bad_signed(h, kHs256, with(claims(h), "exp", "9223372036854775807"));
  bad_signed(h, kHs256, with(claims(h), "exp", "18446744073709551616"));
  bad_signed(h, kHs256, with(claims(h), "exp", std::string(400, '9')));
}

TEST_CASE("token: exp null, true, an object", "[hostile][token][exp]") {
  Hostile h;
  for (const char* v : {"null", "true", "{}", "[1700000900]"}) {
    INFO("exp " << v);
    bad_signed(h, kHs256, with(claims(h), "exp", v));
  }
}

TEST_CASE("token: exp in the past (a genuine expired token: revocable, never valid)", "[hostile][token][exp]") {
  Hostile h;
  const std::string t = sign(kHs256, object(with(with(claims(h), "iat", std::to_string(h.now() - 1000)), "exp",
                                                 std::to_string(h.now() - 100))));
  bad_token(h, t, iwsec::VerifyError::expired, Outcome::revoked);
}

TEST_CASE("token: nbf in the future", "[hostile][token][times]") {
  Hostile h;
  const std::string t = sign(kHs256, object(with(claims(h), "nbf", std::to_string(h.now() + 60))));
  bad_token(h, t, iwsec::VerifyError::not_yet_valid, Outcome::revoked);
}

TEST_CASE("token: iat in the future", "[hostile][token][times]") {
  Hostile h;
  const std::string t = sign(kHs256, object(with(claims(h), "iat", std::to_string(h.now() + 60))));
  bad_token(h, t, iwsec::VerifyError::not_yet_valid, Outcome::revoked);
}

TEST_CASE("token: nbf and iat of the wrong type", "[hostile][token][times]") {
  Hostile h;
  bad_signed(h, kHs256, with(claims(h), "nbf", "\"0\""));
  bad_signed(h, kHs256, with(claims(h), "iat", "1e309"));
  bad_signed(h, kHs256, with(claims(h), "iat", "-5"));
  bad_token(h, sign(kHs256, object(without(claims(h), "iat"))), iwsec::VerifyError::bad_claims);
}

TEST_CASE("token: jti missing, not a UUID, or upper case", "[hostile][token][claims]") {
  Hostile h;
  bad_token(h, sign(kHs256, object(without(claims(h), "jti"))), iwsec::VerifyError::bad_claims);
  bad_signed(h, kHs256, with(claims(h), "jti", "\"1\""));
  bad_signed(h, kHs256, with(claims(h), "jti", "\"0B5E7C1A-8F3D-4C2E-9A71-5D6B4E3F2A10\""));
  bad_signed(h, kHs256, with(claims(h), "jti", json_string(std::string(2000, 'a'))));
  bad_signed(h, kHs256, with(claims(h), "jti", "7"));
}

TEST_CASE("token: sub not a JSON string, or its JSON broken", "[hostile][token][claims]") {
  Hostile h;
  bad_signed(h, kHs256, with(claims(h), "sub", "{\"email\":\"alice@example.com\",\"scope\":{\"action\":\"password\"}}"));
  bad_signed(h, kHs256, with(claims(h), "sub", json_string("{\"email\":\"alice@example.com\"")));
  bad_signed(h, kHs256, with(claims(h), "sub", json_string("alice@example.com")));
  bad_signed(h, kHs256, with(claims(h), "sub", subject("alice@example.com", "admin")));
  bad_signed(h, kHs256, with(claims(h), "sub", subject("")));
}

TEST_CASE("token: correctly signed for an account that does not exist", "[hostile][token][claims]") {
  Hostile h;
  const std::string t = sign(kHs256, object(with(claims(h), "sub", subject("mallory@example.com"))));
  REQUIRE(h.f.signer.verify(t, h.now()).ok());  // genuine as a token...
  bad_token(h, t, Outcome::revoked);             // ...but it grants nothing
}

TEST_CASE("token: correctly signed with another refresh generation", "[hostile][token][claims]") {
  Hostile h;
  const std::string t = sign(kHs256, object(with(claims(h), "gen", "1")));
  REQUIRE(h.f.signer.verify(t, h.now()).ok());
  bad_token(h, t, Outcome::revoked);
  bad_signed(h, kHs256, with(claims(h), "gen", "-1"));
  bad_signed(h, kHs256, with(claims(h), "gen", "\"0\""));
}

TEST_CASE("token: correctly signed for another holder of the email (user_id)", "[hostile][token][claims]") {
  Hostile h;
  const std::string t = sign(kHs256, object(with(claims(h), "user_id", json_string(h.alice.user_id + "0"))));
  REQUIRE(h.f.signer.verify(t, h.now()).ok());
  bad_token(h, t, Outcome::revoked);
  bad_signed(h, kHs256, with(claims(h), "user_id", "7"));
  bad_signed(h, kHs256, with(claims(h), "user_id", "null"));
}

TEST_CASE("token: a revoked token replayed, also with the scheme in mixed case", "[hostile][token]") {
  Hostile h;
  auto c = h.client();
  const std::string t = login(c, h.alice);
  check_outcome(call(c, "DELETE", kAccess, bearer(t)), Outcome::revoked);
  attack_all(h, bearer(t),
             {Outcome::basic_401, Outcome::basic_401, Outcome::revoked, Outcome::not_valid, Outcome::basic_401,
              Outcome::invalid_token});
  attack_all(h, auth("bEaReR " + t),
             {Outcome::basic_401, Outcome::basic_401, Outcome::revoked, Outcome::not_valid, Outcome::basic_401,
              Outcome::invalid_token});
}

// ===========================================================================
// Methods, paths, query strings
// ===========================================================================

TEST_CASE("wrong methods on every security path: 405 envelope with Allow", "[hostile][methods]") {
  Hostile h;
  auto c = h.client();
  const struct {
    const char* path;
    const char* allow;
    std::vector<const char*> wrong;
  } rows[] = {{kAuthenticate, "GET", {"POST", "PUT", "PATCH", "DELETE"}},
              {kAccess, "GET, DELETE", {"POST", "PUT", "PATCH"}},
              {kValidate, "GET", {"POST", "PUT", "PATCH", "DELETE"}},
              {kRefresh, "DELETE", {"GET", "POST", "PUT", "PATCH"}}};
  for (const auto& row : rows) {
    for (const char* m : row.wrong) {
      INFO(m << " " << row.path);
      const auto r = call(c, m, row.path, auth(basic(h.alice.email, kPassword)));
      check_envelope(r, 405, "IW10006");
      CHECK(r.get_header_value("Allow") == row.allow);
      check_no_leak(r, kPassword);
    }
  }
  h.still_serving();
}

TEST_CASE("HEAD on the GET endpoints answers like GET, without a body", "[hostile][methods]") {
  Hostile h;
  auto c = h.client();
  for (const char* path : {kAuthenticate, kAccess, kValidate}) {
    INFO(path);
    const auto r = call(c, "HEAD", path);
    CHECK(r.status == 401);
    CHECK(r.body.empty());
  }
  h.still_serving();
}

TEST_CASE("other spellings of the paths are not the endpoints; one trailing slash is", "[hostile][paths]") {
  Hostile h;
  auto c = h.client();
  // docs/endpoints.md: one trailing slash is the same route (Infoworks' own
  // scripts call token/access/); test_trailing_slash.cpp checks the answers.
  for (const std::string& path : std::vector<std::string>{std::string(kAuthenticate) + "/", std::string(kAccess) + "/",
                                                          std::string(kValidate) + "/", std::string(kRefresh) + "/"}) {
    INFO(path);
    CHECK(call(c, "GET", path, bearer(h.token)).status != 404);
  }
  for (const std::string& path : std::vector<std::string>{std::string(kAuthenticate) + "//", std::string(kAccess) + "//",
        std::string(kValidate) + "//", std::string(kRefresh) + "//", "/V3/Security/Authenticate", "/v3/security/authenticate.json",
        "/v3/security/authenticate;x=1", "/v3/security//authenticate", "/v3/security/token/validate%00"}) {
    for (const char* m : {"GET", "DELETE"}) {
      INFO(m << " " << path);
      const auto r = call(c, m, path, bearer(h.token));
      CHECK(r.status == 404);  // nobody mounted it: the host's 404, no token checked
      check_no_leak(r, h.token);
    }
  }
  h.still_serving();
}

TEST_CASE("authenticate: service_id that is not a plain number is a 400", "[hostile][query]") {
  Hostile h;
  auto c = h.client();
  const long long before = kdf_calls();
  for (const char* q : {"?service_id=", "?service_id=-1", "?service_id=1e3", "?service_id=0x10",
                        "?service_id=99999999999999999999", "?service_id=1&service_id=2", "?service_id=%00",
                        "?service_id=1%20"}) {
    INFO(q);
    const auto r = call(c, "GET", std::string(kAuthenticate) + q, auth(basic(h.alice.email, kPassword)));
    check_outcome(r, Outcome::bad_request);
  }
  if (before >= 0) CHECK(kdf_calls() == before);  // refused before the password check
  h.still_serving();
}

TEST_CASE("a request body on the security endpoints is refused, not parsed", "[hostile][methods]") {
  Hostile h;
  auto c = h.client();
  const auto r = c.Get(kValidate, bearer(h.token));
  REQUIRE(r);
  httplib::Request req;
  req.method = "DELETE";
  req.path = kRefresh;
  req.headers = auth("Basic !!");
  req.body = std::string(100000, '{');
  req.set_header("Content-Type", "application/json");
  const auto big = c.send(req);
  REQUIRE(big);
  // docs/edge.md: no security route takes a body; 413 in the
  // envelope, and the connection closed (test_edge_bodies has the rest).
  check_envelope(*big, 413, "IW10006");
  CHECK(big->get_header_value("Connection") == "close");
  h.still_serving();
}
