// A consumer of iwsec, built by every route the consumer tests check
// (find_package, add_subdirectory, pkg-config, Meson subproject, the copied
// single header). It mounts the routes through snippet.cpp, a second
// translation unit that also includes iwsec (so a missing `inline` fails to
// link), serves on 127.0.0.1 on a port the OS picks, answers real requests,
// checks the answers, stops the server and exits 0. Any failure exits 1
// with a one-line reason. No credential or token is ever printed.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <httplib.h>
#include <picojson.h>

#include <iwsec/iwsec.hpp>

void mount(httplib::Server& s, iwsec::UserStore& u, iwsec::Signer& g);  // snippet.cpp

namespace {

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "consumer: FAILED: %s\n", why.c_str());
  std::exit(1);
}

picojson::object parse_object(const std::string& body, const char* what) {
  picojson::value v;
  const std::string err = picojson::parse(v, body);
  if (!err.empty() || !v.is<picojson::object>()) fail(std::string(what) + ": body is not a JSON object");
  return v.get<picojson::object>();
}

}  // namespace

int main() {
  const std::string email = "consumer@example.com";
  const std::string password = "consumer password";

  iwsec::MemoryUserStore users;
  // 1000 PBKDF2 rounds keep this quick; the hash records its own round count.
  const iwsec::IssuedRefreshToken issued = iwsec::create_user(users, email, password, 1000);
  if (issued.status != iwsec::StoreStatus::ok) fail("create_user did not store the user");
  iwsec::Signer signer(std::string("consumer-test-key-of-32-bytes-at-least"));

  httplib::Server server;
  mount(server, users, signer);
  const int port = server.bind_to_any_port("127.0.0.1");
  if (port <= 0) fail("cannot bind 127.0.0.1");
  std::thread serving([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::yield();

  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(10);

  // Log in with Basic email:password: 200 and a JWT.
  const auto login = client.Get("/v3/security/authenticate",
                                {{"Authorization", "Basic " + iwsec::base64_encode(email + ":" + password)}});
  if (!login) fail("authenticate: no answer");
  if (login->status != 200) fail("authenticate: status " + std::to_string(login->status));
  picojson::object login_body = parse_object(login->body, "authenticate");
  if (!login_body["result"].is<picojson::object>()) fail("authenticate: no result object");
  picojson::object result = login_body["result"].get<picojson::object>();
  if (!result["authentication_token"].is<std::string>()) fail("authenticate: no authentication_token");
  if (!result["user_id"].is<std::string>() || result["user_id"].get<std::string>() != issued.user_id)
    fail("authenticate: user_id is not the created user's");
  const std::string token = result["authentication_token"].get<std::string>();

  // The token it issued validates.
  const auto valid = client.Get("/v3/security/token/validate", {{"Authorization", "Bearer " + token}});
  if (!valid) fail("validate: no answer");
  if (valid->status != 200) fail("validate with the issued token: status " + std::to_string(valid->status));

  // No token: 401 with the Infoworks error envelope (iw_code IW10004).
  const auto refused = client.Get("/v3/security/token/validate");
  if (!refused) fail("validate without token: no answer");
  if (refused->status != 401) fail("validate without token: status " + std::to_string(refused->status));
  picojson::object envelope = parse_object(refused->body, "validate without token");
  if (!envelope["iw_code"].is<std::string>() || envelope["iw_code"].get<std::string>() != "IW10004")
    fail("validate without token: envelope has no iw_code IW10004");

  server.stop();
  serving.join();
  // What it was built with (cpp-httplib's version among them: the consumer
  // tests check it is the host's).
  std::printf("consumer: %s: authenticate 200, validate 200, no token 401 IW10004\n",
              iwsec::build_description().c_str());
  return 0;
}
