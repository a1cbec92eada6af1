// create_user refuses accounts no login could use (issue 10, finding 6):
// every host gets the checks iwsec-admin used to make on its own.

#include <catch2/catch.hpp>

#include <string>

#include <iwsec/iwsec.hpp>

using iwsec::StoreStatus;

TEST_CASE("create_user refuses what no login can use, and says why", "[create_user]") {
  iwsec::MemoryUserStore users;
  struct Case {
    std::string email, password, reason;
  };
  const Case cases[] = {
      {"a@example.com", "", "password is empty"},
      {"a@example.com", "tab\there", "control character"},
      {"a@example.com", std::string("nul\0x", 5), "control character"},
      {"a@example.com", "del\x7f", "control character"},
      {"a@example.com", "c1\xc2\x85", "control character"},
      {"", "pw", "email is empty"},
      {"no-at.example.com", "pw", "exactly one '@'"},
      {"two@@example.com", "pw", "exactly one '@'"},
      {"a@b@example.com", "pw", "exactly one '@'"},
      {"colon:a@example.com", "pw", "':'"},
      {"@example.com", "pw", "both sides"},
      {"a@", "pw", "both sides"},
      {"line\n@example.com", "pw", "control character"},
      {"sp ace@example.com", "pw", "space"},
      {"bad\xff@example.com", "pw", "UTF-8"},
      {std::string(250, 'a') + "@example.com", "pw", "254"},
  };
  for (const auto& c : cases) {
    INFO(c.email << " / reason " << c.reason);
    const auto created = iwsec::create_user(users, c.email, c.password, 1000);
    CHECK(created.status == StoreStatus::invalid);
    CHECK(created.error.find(c.reason) != std::string::npos);
    CHECK(created.refresh_token.empty());
  }
  CHECK(users.list_users().empty());

  // What a login can send is accepted: colons and any UTF-8 in the password.
  const auto ok = iwsec::create_user(users, "Ünï@example.com", "p:ä ss:", 1000);
  CHECK(ok.status == StoreStatus::ok);
  CHECK(ok.error.empty());
  CHECK_FALSE(ok.refresh_token.empty());
  CHECK(iwsec::email_problem("Ünï@example.com") == nullptr);
  CHECK(iwsec::password_problem("p:ä ss:") == nullptr);
}
