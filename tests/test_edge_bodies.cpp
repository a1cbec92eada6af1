// Request bodies on the security routes and the guard, over a raw socket
// (httplib::Client cannot send a GET with a body): a body is refused with
// 400 or 413 in the envelope, the connection is closed, and a request hidden
// in a GET body (CL.0 desync) never gets an answer of its own.

#include <catch2/catch.hpp>

#include <string>

#include "support/http_fixture.hpp"
#include "support/raw_socket.hpp"

using namespace iwsec_http;
using iwsec_test::basic;
using iwsec_test::raw_exchange;
using iwsec_test::RawExchange;

namespace {

// The head of the one answer in @p x, as an httplib::Response for the checks.
httplib::Response parse_answer(const RawExchange& x) {
  httplib::Response r;
  const auto end = x.received.find("\r\n\r\n");
  REQUIRE(end != std::string::npos);
  const std::string head = x.received.substr(0, end);
  r.status = std::stoi(head.substr(9, 3));
  std::size_t at = head.find("\r\n");
  while (at != std::string::npos) {
    const std::size_t next = head.find("\r\n", at + 2);
    const std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
    const auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers.emplace(line.substr(0, colon), value);
    }
    at = next;
  }
  r.body = x.received.substr(end + 4);
  return r;
}

// One answer, @p status in the envelope, `Connection: close`, connection closed.
void check_refused(const RawExchange& x, int status) {
  INFO("received: " << x.received);
  CHECK(x.answers() == 1);
  CHECK(x.closed);
  const auto r = parse_answer(x);
  check_envelope(r, status, "IW10006");
  CHECK(r.get_header_value("Connection") == "close");
  CHECK(x.received.find("authentication_token") == std::string::npos);
}

std::string request(const std::string& method, const std::string& path, const std::string& headers,
                    const std::string& body = "") {
  return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n" + body;
}

}  // namespace

TEST_CASE("a request smuggled in a GET body is never answered: one 413, connection closed", "[edge][desync]") {
  Fixture f;
  const Account alice = add_account(f.users, "alice@example.com", "correct horse");
  f.start();
  const std::string smuggled =
      request("GET", kAuthenticate, "Authorization: " + basic(alice.email, alice.password) + "\r\n");
  const auto x = raw_exchange(
      f.running->port(),
      request("GET", kValidate, "Authorization: Bearer x.y.z\r\nContent-Length: " + std::to_string(smuggled.size()) +
                                    "\r\n",
              smuggled));
  check_refused(x, 413);
}

TEST_CASE("every security route refuses a body with 400 or 413 and closes the connection", "[edge]") {
  Fixture f;
  f.start();
  const std::string after = request("GET", kValidate, "Authorization: Bearer x.y.z\r\n");
  SECTION("chunked DELETE (httplib 0.11 does not read it)") {
    check_refused(raw_exchange(f.running->port(),
                               request("DELETE", kAccess, "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n") +
                                   after),
                  400);
  }
  SECTION("DELETE with a Content-Length body") {
    check_refused(
        raw_exchange(f.running->port(), request("DELETE", kRefresh, "Content-Length: 5\r\n", "hello") + after), 413);
  }
  SECTION("GET with a chunked body") {
    check_refused(raw_exchange(f.running->port(),
                               request("GET", kAuthenticate, "Transfer-Encoding: chunked\r\n", "0\r\n\r\n") + after),
                  400);
  }
  SECTION("a wrong method with a chunked body") {
    check_refused(raw_exchange(f.running->port(),
                               request("POST", kValidate, "Transfer-Encoding: chunked\r\n", "0\r\n\r\n") + after),
                  400);
  }
  SECTION("OPTIONS with a body") {
    check_refused(
        raw_exchange(f.running->port(), request("OPTIONS", kValidate, "Content-Length: 2\r\n", "{}") + after), 413);
  }
  SECTION("an unusable Content-Length") {
    check_refused(raw_exchange(f.running->port(), request("GET", kValidate, "Content-Length: 1x\r\n") + after), 400);
  }
}

TEST_CASE("Content-Length: 0 is no body: the answer is the usual one and the connection stays", "[edge]") {
  Fixture f;
  f.start();
  const std::string one = request("GET", kValidate, "Authorization: Bearer x.y.z\r\nContent-Length: 0\r\n");
  const auto x = raw_exchange(f.running->port(), one, std::chrono::milliseconds(1000));
  INFO("received: " << x.received);
  CHECK(x.answers() == 1);
  CHECK(!x.closed);
  CHECK(x.received.find("\"is_valid\":false") != std::string::npos);
}

TEST_CASE("the guard refuses a body httplib leaves unread and keeps the host's bodies", "[edge][guard]") {
  Fixture f;
  const Account alice = add_account(f.users, "alice@example.com", "correct horse");
  f.sec = iwsec::mount_security_routes(f.server, f.users, f.signer, f.options);
  int calls = 0;
  f.server.Get("/v3/domains", f.sec->guard([&](const httplib::Request&, httplib::Response& res,
                                               const iwsec::VerifiedToken&) {
    ++calls;
    res.set_content("{}", "application/json");
  }));
  f.server.Post("/v3/domains", f.sec->guard([&](const httplib::Request& req, httplib::Response& res,
                                                const iwsec::VerifiedToken&) {
    ++calls;
    res.set_content(req.body, "text/plain");
  }));
  f.running = std::make_unique<iwsec_test::RunningServer>(f.server);
  auto c = f.client();
  const auto login = call(c, "GET", kAuthenticate, auth(basic(alice.email, alice.password)));
  REQUIRE(login.status == 200);
  const std::string token = string_member(
      as_object(member(as_object(parse_json(login.body)), "result")), "authentication_token");

  const std::string smuggled = request("GET", "/v3/domains", "Authorization: Bearer " + token + "\r\n");
  check_refused(raw_exchange(f.running->port(),
                             request("GET", "/v3/domains",
                                     "Authorization: Bearer " + token +
                                         "\r\nContent-Length: " + std::to_string(smuggled.size()) + "\r\n",
                                     smuggled)),
                413);
  CHECK(calls == 0);

  const auto posted = raw_exchange(
      f.running->port(),
      request("POST", "/v3/domains", "Authorization: Bearer " + token + "\r\nContent-Length: 7\r\nConnection: close\r\n",
              "payload"));
  INFO("received: " << posted.received);
  CHECK(posted.answers() == 1);
  CHECK(parse_answer(posted).status == 200);
  CHECK(parse_answer(posted).body == "payload");
  CHECK(calls == 1);
}
