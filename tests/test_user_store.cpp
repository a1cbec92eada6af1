// Unit tests for include/iwsec/user_store.hpp (MemoryUserStore) and
// include/iwsec/json_file_user_store.hpp (JsonFileUserStore).

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

using iwsec::JsonFileUserStore;
using iwsec::MemoryUserStore;
using iwsec::StoreStatus;
using iwsec::User;
using iwsec::UserStore;

#include "support/temp_dir.hpp"

namespace {

using iwsec_test::TempDir;
using iwsec_test::read_file;
using iwsec_test::write_file;


User make_user(const std::string& email, const std::string& user_id, const std::string& refresh_token = "") {
  User u;
  u.user_id = user_id;
  u.email = email;
  u.password_hash = "$pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$kcOYe7iBo/M.xBaBSVc9aCm9ysgbB15raSmzNYFgFjU";
  u.refresh_token_sha256 = iwsec::refresh_token_hash(refresh_token.empty() ? "rt-" + user_id : refresh_token);
  return u;
}

bool same_user(const User& a, const User& b) {
  return a.user_id == b.user_id && a.email == b.email && a.password_hash == b.password_hash &&
         a.refresh_token_sha256 == b.refresh_token_sha256 && a.refresh_generation == b.refresh_generation &&
         a.disabled == b.disabled;
}

std::vector<std::string> emails_of(const std::vector<User>& users) {
  std::vector<std::string> out;
  for (const auto& u : users) out.push_back(u.email);
  return out;
}


// Replaces @p path with @p content the way another program would: a new file renamed over it.
void replace_file(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".other";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("rename failed");
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

unsigned permissions(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("stat failed: " + path);
  return st.st_mode & 07777;
}

struct MemoryStoreFixture {
  MemoryUserStore memory;
  UserStore& store() { return memory; }
};

struct JsonFileStoreFixture {
  TempDir dir;
  JsonFileUserStore json{dir.file("users.json")};
  UserStore& store() { return json; }
};

}  // namespace

// ---- behaviour every UserStore shares -------------------------------------------------

TEMPLATE_TEST_CASE("UserStore: add, then find by email case-insensitively", "[user_store]", MemoryStoreFixture,
                   JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  CHECK_FALSE(store.find_by_email("alice@example.com"));
  CHECK(store.list_users().empty());

  REQUIRE(store.add_user(make_user("Alice@Example.COM", "u1")) == StoreStatus::ok);
  for (const char* spelling : {"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.COM", "aLiCe@eXaMpLe.cOm"}) {
    INFO(spelling);
    const auto found = store.find_by_email(spelling);
    REQUIRE(found);
    CHECK(found->user_id == "u1");
    CHECK(found->email == "Alice@Example.COM");  // kept as entered
    CHECK(same_user(*found, make_user("Alice@Example.COM", "u1")));
  }
  CHECK_FALSE(store.find_by_email("alice@example.co"));
  CHECK_FALSE(store.find_by_email("alice@example.com "));
  CHECK_FALSE(store.find_by_email(""));
  CHECK_FALSE(store.find_by_email("bob@example.com"));
}

TEMPLATE_TEST_CASE("UserStore: find by refresh-token hash", "[user_store]", MemoryStoreFixture,
                   JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  REQUIRE(store.add_user(make_user("a@example.com", "u1", "token-a")) == StoreStatus::ok);
  REQUIRE(store.add_user(make_user("b@example.com", "u2", "token-b")) == StoreStatus::ok);
  User no_token = make_user("c@example.com", "u3");
  no_token.refresh_token_sha256.clear();
  REQUIRE(store.add_user(no_token) == StoreStatus::ok);

  const auto a = store.find_by_refresh_token_hash(iwsec::refresh_token_hash("token-a"));
  REQUIRE(a);
  CHECK(a->email == "a@example.com");
  const auto b = store.find_by_refresh_token_hash(iwsec::refresh_token_hash("token-b"));
  REQUIRE(b);
  CHECK(b->email == "b@example.com");
  CHECK_FALSE(store.find_by_refresh_token_hash(iwsec::refresh_token_hash("token-c")));
  CHECK_FALSE(store.find_by_refresh_token_hash("token-a"));  // the token itself is not its hash
  CHECK_FALSE(store.find_by_refresh_token_hash(""));         // an empty hash matches nobody
}

TEMPLATE_TEST_CASE("UserStore: duplicates are already_exists, empty identities invalid", "[user_store]",
                   MemoryStoreFixture, JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  REQUIRE(store.add_user(make_user("alice@example.com", "u1", "t1")) == StoreStatus::ok);

  CHECK(store.add_user(make_user("ALICE@example.com", "u2", "t2")) == StoreStatus::already_exists);
  CHECK(store.add_user(make_user("alice@example.com", "u2", "t2")) == StoreStatus::already_exists);
  CHECK(store.add_user(make_user("bob@example.com", "u1", "t2")) == StoreStatus::already_exists);
  CHECK(store.add_user(make_user("bob@example.com", "u2", "t1")) == StoreStatus::already_exists);
  CHECK(store.add_user(make_user("", "u2", "t2")) == StoreStatus::invalid);
  CHECK(store.add_user(make_user("bob@example.com", "", "t2")) == StoreStatus::invalid);

  // None of the refused adds left a trace.
  REQUIRE(store.list_users().size() == 1);
  CHECK(store.find_by_email("alice@example.com")->user_id == "u1");
  CHECK_FALSE(store.find_by_email("bob@example.com"));
  CHECK_FALSE(store.find_by_refresh_token_hash(iwsec::refresh_token_hash("t2")));

  CHECK(store.add_user(make_user("bob@example.com", "u2", "t2")) == StoreStatus::ok);
  CHECK(store.list_users().size() == 2);
}

TEMPLATE_TEST_CASE("UserStore: update_user rotates the refresh token and generation", "[user_store]",
                   MemoryStoreFixture, JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  REQUIRE(store.add_user(make_user("alice@example.com", "u1", "old-token")) == StoreStatus::ok);
  const std::string old_hash = iwsec::refresh_token_hash("old-token");
  const std::string new_hash = iwsec::refresh_token_hash("new-token");

  CHECK(store.update_user("ALICE@EXAMPLE.COM", [&](User& u) {
    u.refresh_token_sha256 = new_hash;
    ++u.refresh_generation;
  }) == StoreStatus::ok);

  CHECK_FALSE(store.find_by_refresh_token_hash(old_hash));
  const auto by_token = store.find_by_refresh_token_hash(new_hash);
  REQUIRE(by_token);
  CHECK(by_token->user_id == "u1");
  CHECK(by_token->refresh_generation == 1);
  const auto by_email = store.find_by_email("alice@example.com");
  REQUIRE(by_email);
  CHECK(by_email->refresh_token_sha256 == new_hash);
  CHECK(by_email->refresh_generation == 1);
  const auto status = store.status_of("alice@example.com");
  REQUIRE(status);
  CHECK(status->refresh_generation == 1);
  CHECK_FALSE(status->disabled);

  // The old hash is free again: another user may take it.
  CHECK(store.add_user(make_user("bob@example.com", "u2", "old-token")) == StoreStatus::ok);

  // Password and disabled flag change the same way.
  CHECK(store.update_user("alice@example.com", [](User& u) {
    u.password_hash = "$pbkdf2-sha256$1$new";
    u.disabled = true;
  }) == StoreStatus::ok);
  CHECK(store.find_by_email("alice@example.com")->password_hash == "$pbkdf2-sha256$1$new");
  CHECK(store.status_of("alice@example.com")->disabled);
}

TEMPLATE_TEST_CASE("UserStore: update_user refuses identity changes and taken hashes", "[user_store]",
                   MemoryStoreFixture, JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  REQUIRE(store.add_user(make_user("alice@example.com", "u1", "ta")) == StoreStatus::ok);
  REQUIRE(store.add_user(make_user("bob@example.com", "u2", "tb")) == StoreStatus::ok);

  CHECK(store.update_user("alice@example.com", [](User& u) {
    u.email = "eve@example.com";
    u.refresh_generation = 9;
  }) == StoreStatus::invalid);
  CHECK(store.update_user("alice@example.com", [](User& u) {
    u.user_id = "u9";
    u.refresh_generation = 9;
  }) == StoreStatus::invalid);
  CHECK(store.update_user("alice@example.com", [](User& u) { u.user_id = "u2"; }) == StoreStatus::invalid);
  CHECK(store.update_user("alice@example.com", [](User& u) {
    u.refresh_token_sha256 = iwsec::refresh_token_hash("tb");
    u.refresh_generation = 9;
  }) == StoreStatus::already_exists);

  // Nothing of the refused changes was applied.
  const auto alice = store.find_by_email("alice@example.com");
  REQUIRE(alice);
  CHECK(same_user(*alice, make_user("alice@example.com", "u1", "ta")));
  CHECK_FALSE(store.find_by_email("eve@example.com"));
  CHECK(store.find_by_refresh_token_hash(iwsec::refresh_token_hash("tb"))->email == "bob@example.com");
  CHECK(store.find_by_refresh_token_hash(iwsec::refresh_token_hash("ta"))->email == "alice@example.com");
}

TEMPLATE_TEST_CASE("UserStore: update_user of an unknown email is not_found", "[user_store]", MemoryStoreFixture,
                   JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  bool called = false;
  CHECK(store.update_user("nobody@example.com", [&](User&) { called = true; }) == StoreStatus::not_found);
  CHECK_FALSE(called);
  REQUIRE(store.add_user(make_user("alice@example.com", "u1")) == StoreStatus::ok);
  CHECK(store.update_user("nobody@example.com", [&](User&) { called = true; }) == StoreStatus::not_found);
  CHECK_FALSE(called);
  CHECK_FALSE(store.status_of("nobody@example.com"));
}

TEMPLATE_TEST_CASE("UserStore: list_users keeps insertion order", "[user_store]", MemoryStoreFixture,
                   JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  const std::vector<std::string> emails = {"zed@example.com", "amy@example.com", "Mike@example.com",
                                           "bob@example.com", "yan@example.com"};
  for (std::size_t i = 0; i < emails.size(); ++i)
    REQUIRE(store.add_user(make_user(emails[i], "u" + std::to_string(i))) == StoreStatus::ok);
  CHECK(emails_of(store.list_users()) == emails);
  CHECK(emails_of(store.list_users()) == emails);
  REQUIRE(store.update_user("mike@example.com", [](User& u) { ++u.refresh_generation; }) == StoreStatus::ok);
  REQUIRE(store.update_user("zed@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  const auto users = store.list_users();
  CHECK(emails_of(users) == emails);
  CHECK(users[2].refresh_generation == 1);
  CHECK(users[0].disabled);
}

TEMPLATE_TEST_CASE("UserStore: status_of reports generation and disabled flag", "[user_store]",
                   MemoryStoreFixture, JsonFileStoreFixture) {
  TestType fixture;
  UserStore& store = fixture.store();
  User u = make_user("alice@example.com", "u1");
  u.refresh_generation = 4;
  REQUIRE(store.add_user(u) == StoreStatus::ok);
  auto status = store.status_of("Alice@example.com");
  REQUIRE(status);
  CHECK(status->refresh_generation == 4);
  CHECK_FALSE(status->disabled);
  REQUIRE(store.update_user("alice@example.com", [](User& x) { x.disabled = true; }) == StoreStatus::ok);
  status = store.status_of("alice@example.com");
  REQUIRE(status);
  CHECK(status->disabled);
  CHECK(status->refresh_generation == 4);
  CHECK_FALSE(store.status_of("bob@example.com"));
}

TEST_CASE("to_string(StoreStatus) names each value differently", "[user_store]") {
  std::set<std::string> names;
  for (const StoreStatus s : {StoreStatus::ok, StoreStatus::not_found, StoreStatus::already_exists,
                              StoreStatus::invalid, StoreStatus::io_error})
    names.insert(iwsec::to_string(s));
  CHECK(names.size() == 5);
  CHECK(names.count("unknown") == 0);
}

TEST_CASE("generate_refresh_token and generate_user_id", "[user_store]") {
  std::set<std::string> tokens, ids;
  for (int i = 0; i < 100; ++i) {
    const std::string token = iwsec::generate_refresh_token();
    const auto raw = iwsec::base64url_decode(token);
    REQUIRE(raw);
    CHECK(raw->size() == 32);  // 256 bits
    tokens.insert(token);
    const std::string id = iwsec::generate_user_id();
    CHECK(id.size() == 24);
    CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    ids.insert(id);
  }
  CHECK(tokens.size() == 100);
  CHECK(ids.size() == 100);
  // Stored form: lower-case hex SHA-256 (FIPS 180-2 "abc").
  CHECK(iwsec::refresh_token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- JsonFileUserStore -----------------------------------------------------------------

TEST_CASE("JsonFileUserStore: the file appears on the first write, mode 0600", "[json_file_user_store]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  JsonFileUserStore store(path);
  CHECK(store.path() == path);
  CHECK(store.list_users().empty());
  CHECK_FALSE(store.find_by_email("a@example.com"));
  CHECK_FALSE(exists(path));

  REQUIRE(store.add_user(make_user("a@example.com", "u1")) == StoreStatus::ok);
  REQUIRE(exists(path));
  CHECK(permissions(path) == 0600);
  std::string error;
  const auto on_disk = JsonFileUserStore::parse(read_file(path), error);
  REQUIRE(on_disk);
  REQUIRE(on_disk->size() == 1);
  CHECK(same_user(on_disk->front(), make_user("a@example.com", "u1")));

  // A refused write does not touch the file.
  const std::string before = read_file(path);
  CHECK(store.add_user(make_user("A@example.com", "u2")) == StoreStatus::already_exists);
  CHECK(read_file(path) == before);
  CHECK(permissions(path) == 0600);
}

TEST_CASE("JsonFileUserStore: users survive reopening", "[json_file_user_store]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  {
    JsonFileUserStore store(path);
    REQUIRE(store.add_user(make_user("a@example.com", "u1", "ta")) == StoreStatus::ok);
    REQUIRE(store.add_user(make_user("b@example.com", "u2", "tb")) == StoreStatus::ok);
    REQUIRE(store.update_user("b@example.com", [](User& u) {
      u.disabled = true;
      u.refresh_generation = 2;
    }) == StoreStatus::ok);
  }
  JsonFileUserStore reopened(path);
  const auto users = reopened.list_users();
  REQUIRE(users.size() == 2);
  CHECK(same_user(users[0], make_user("a@example.com", "u1", "ta")));
  CHECK(users[1].email == "b@example.com");
  CHECK(users[1].disabled);
  CHECK(users[1].refresh_generation == 2);
  CHECK(reopened.find_by_refresh_token_hash(iwsec::refresh_token_hash("tb"))->user_id == "u2");
}

TEST_CASE("JsonFileUserStore: a second instance sees the first one's writes at once", "[json_file_user_store]") {
  // The server and iwsec-admin: two stores on one file.
  TempDir dir;
  const std::string path = dir.file("users.json");
  JsonFileUserStore server(path);
  JsonFileUserStore admin(path);
  CHECK_FALSE(server.find_by_email("a@example.com"));  // the server has read (and cached) the empty state

  REQUIRE(admin.add_user(make_user("a@example.com", "u1", "t1")) == StoreStatus::ok);
  REQUIRE(server.find_by_email("a@example.com"));
  CHECK(server.status_of("a@example.com")->refresh_generation == 0);

  REQUIRE(admin.update_user("a@example.com", [](User& u) {
    u.refresh_token_sha256 = iwsec::refresh_token_hash("t2");
    u.refresh_generation = 1;
  }) == StoreStatus::ok);
  CHECK(server.status_of("a@example.com")->refresh_generation == 1);
  CHECK_FALSE(server.find_by_refresh_token_hash(iwsec::refresh_token_hash("t1")));
  CHECK(server.find_by_refresh_token_hash(iwsec::refresh_token_hash("t2")));

  REQUIRE(admin.update_user("a@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  CHECK(server.status_of("a@example.com")->disabled);

  // And the other way round, alternating.
  REQUIRE(server.add_user(make_user("b@example.com", "u2")) == StoreStatus::ok);
  REQUIRE(admin.add_user(make_user("c@example.com", "u3")) == StoreStatus::ok);
  REQUIRE(server.add_user(make_user("d@example.com", "u4")) == StoreStatus::ok);
  const std::vector<std::string> expected = {"a@example.com", "b@example.com", "c@example.com", "d@example.com"};
  CHECK(emails_of(server.list_users()) == expected);
  CHECK(emails_of(admin.list_users()) == expected);
  // A write through one instance checks uniqueness against the other's writes.
  CHECK(server.add_user(make_user("C@example.com", "u5")) == StoreStatus::already_exists);
  CHECK(admin.add_user(make_user("e@example.com", "u4")) == StoreStatus::already_exists);
}

TEST_CASE("JsonFileUserStore: concurrent writers through two instances lose nothing", "[json_file_user_store]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  JsonFileUserStore first(path);
  JsonFileUserStore second(path);
  std::vector<StoreStatus> results_first, results_second;
  const auto writer = [](JsonFileUserStore& store, const std::string& tag, std::vector<StoreStatus>& results) {
    for (int i = 0; i < 50; ++i) {
      const std::string n = tag + std::to_string(i);
      results.push_back(store.add_user(make_user(n + "@example.com", n)));
    }
  };
  std::thread t1(writer, std::ref(first), "first", std::ref(results_first));
  std::thread t2(writer, std::ref(second), "second", std::ref(results_second));
  t1.join();
  t2.join();
  for (const auto s : results_first) CHECK(s == StoreStatus::ok);
  for (const auto s : results_second) CHECK(s == StoreStatus::ok);

  JsonFileUserStore third(path);
  const auto users = third.list_users();
  CHECK(users.size() == 100);
  std::set<std::string> ids;
  for (const auto& u : users) ids.insert(u.user_id);
  CHECK(ids.size() == 100);
  for (int i = 0; i < 50; ++i) {
    CHECK(third.find_by_email("first" + std::to_string(i) + "@example.com"));
    CHECK(third.find_by_email("second" + std::to_string(i) + "@example.com"));
  }
  CHECK(first.list_users().size() == 100);
  CHECK(second.list_users().size() == 100);
}

TEST_CASE("JsonFileUserStore: an invalid file at construction throws store_error", "[json_file_user_store]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  const std::string valid_user =
      R"({"user_id":"u1","email":"a@example.com","password_hash":"h","refresh_token_sha256":"r1",)"
      R"("refresh_generation":0,"disabled":false})";
  const std::string same_email =
      R"({"user_id":"u2","email":"A@EXAMPLE.COM","password_hash":"h","refresh_token_sha256":"r2",)"
      R"("refresh_generation":0,"disabled":false})";
  for (const std::string& content : {
           std::string("this is not json"),
           std::string(""),
           std::string("{\"version\":1,\"users\":[" + valid_user + "]"),  // truncated
           std::string("{\"version\":2,\"users\":[]}"),
           std::string("{\"users\":[]}"),
           std::string("[]"),
           std::string("{\"version\":1,\"users\":[" + valid_user + "," + same_email + "]}"),
       }) {
    INFO(content);
    replace_file(path, content);
    CHECK_THROWS_AS(JsonFileUserStore(path), iwsec::store_error);
  }
  replace_file(path, "{\"version\":1,\"users\":[" + valid_user + "]}");
  JsonFileUserStore good(path);
  CHECK(good.find_by_email("a@example.com"));
}

TEST_CASE("JsonFileUserStore: a file turned to garbage later fails closed, then recovers", "[json_file_user_store]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  std::vector<std::string> log;
  JsonFileUserStore store(path, [&](const std::string& line) { log.push_back(line); });
  REQUIRE(store.add_user(make_user("a@example.com", "u1", "ta")) == StoreStatus::ok);
  REQUIRE(store.add_user(make_user("b@example.com", "u2", "tb")) == StoreStatus::ok);

  // Never an answer from the stale copy: every read throws StateUnavailable.
  replace_file(path, "{\"version\":1,\"users\":[{garbage");
  CHECK_THROWS_AS(store.find_by_email("a@example.com"), iwsec::StateUnavailable);
  CHECK_THROWS_AS(store.find_by_refresh_token_hash(iwsec::refresh_token_hash("tb")), iwsec::StateUnavailable);
  CHECK_THROWS_AS(store.status_of("b@example.com"), iwsec::StateUnavailable);
  CHECK_THROWS_AS(store.list_users(), iwsec::StateUnavailable);
  // One log line for the lot, naming the file and the reason.
  REQUIRE(log.size() == 1);
  CHECK(log[0].find(path) != std::string::npos);
  CHECK(log[0].find("invalid content") != std::string::npos);
  // A write cannot merge with a file it cannot read: it fails, says why, and leaves the file alone.
  CHECK(store.add_user(make_user("c@example.com", "u3")) == StoreStatus::io_error);
  CHECK(store.last_error().find("invalid content") != std::string::npos);
  CHECK(read_file(path) == "{\"version\":1,\"users\":[{garbage");

  // Once the file is valid again, it is what counts.
  replace_file(path, JsonFileUserStore::serialize({make_user("z@example.com", "u9")}));
  CHECK_FALSE(store.find_by_email("a@example.com"));
  CHECK(store.find_by_email("z@example.com"));
  CHECK(store.add_user(make_user("c@example.com", "u3")) == StoreStatus::ok);
  CHECK(emails_of(JsonFileUserStore(path).list_users()) == std::vector<std::string>{"z@example.com", "c@example.com"});
  REQUIRE(log.size() == 2);
  CHECK(log[1].find("again") != std::string::npos);
}

TEST_CASE("JsonFileUserStore: a write into a directory gone since construction is an io_error",
          "[json_file_user_store]") {
  // (A directory missing at construction is refused there: test_json_file_store_open.)
  TempDir dir;
  REQUIRE(::mkdir(dir.file("gone").c_str(), 0700) == 0);
  JsonFileUserStore store(dir.file("gone/users.json"));
  REQUIRE(::rmdir(dir.file("gone").c_str()) == 0);
  CHECK(store.list_users().empty());
  CHECK(store.add_user(make_user("a@example.com", "u1")) == StoreStatus::io_error);
  CHECK_FALSE(store.find_by_email("a@example.com"));
}

TEST_CASE("JsonFileUserStore: serialize and parse round trip", "[json_file_user_store]") {
  std::vector<User> users;
  users.push_back(make_user("plain@example.com", "0123456789abcdef01234567"));
  User odd = make_user("quo\"te\\back@example.com", "id-\x01-\x7f");
  odd.email += std::string("\0nul", 4);
  odd.password_hash = "caf\xc3\xa9\n\t";
  odd.refresh_generation = 9007199254740991;  // 2^53 - 1
  odd.disabled = true;
  users.push_back(odd);
  User empty_token = make_user("none@example.com", "u3");
  empty_token.refresh_token_sha256.clear();
  users.push_back(empty_token);

  const std::string text = JsonFileUserStore::serialize(users);
  std::string error;
  const auto parsed = JsonFileUserStore::parse(text, error);
  INFO(error);
  REQUIRE(parsed);
  REQUIRE(parsed->size() == users.size());
  for (std::size_t i = 0; i < users.size(); ++i) CHECK(same_user((*parsed)[i], users[i]));
  // Serialising what was parsed gives the same text.
  CHECK(JsonFileUserStore::serialize(*parsed) == text);

  const auto none = JsonFileUserStore::parse(JsonFileUserStore::serialize({}), error);
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("JsonFileUserStore::parse refuses anything but the exact format", "[json_file_user_store]") {
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"user_id", "\"u1\""},
      {"email", "\"a@example.com\""},
      {"password_hash", "\"h\""},
      {"refresh_token_sha256", "\"r\""},
      {"refresh_generation", "0"},
      {"disabled", "false"},
  };
  const auto user_json = [&](const std::string& skip, const std::string& replace_name = "",
                             const std::string& replacement = "") {
    std::string out = "{";
    bool first = true;
    for (const auto& f : fields) {
      if (f.first == skip) continue;
      if (!first) out += ",";
      first = false;
      out += "\"" + f.first + "\":" + (f.first == replace_name ? replacement : f.second);
    }
    return out + "}";
  };
  const auto doc = [](const std::string& users) { return "{\"version\":1,\"users\":[" + users + "]}"; };
  std::string error;
  REQUIRE(JsonFileUserStore::parse(doc(user_json("")), error));

  const auto refused = [&](const std::string& text) {
    error.clear();
    const bool rejected = !JsonFileUserStore::parse(text, error);
    return rejected && !error.empty();
  };
  for (const auto& f : fields) {
    INFO("missing " << f.first);
    CHECK(refused(doc(user_json(f.first))));
  }
  const std::vector<std::pair<std::string, std::string>> wrong_types = {
      {"user_id", "1"},          {"email", "null"},
      {"password_hash", "[]"},   {"refresh_token_sha256", "false"},
      {"refresh_generation", "-1"}, {"refresh_generation", "1.5"},
      {"refresh_generation", "\"0\""}, {"refresh_generation", "9007199254740992"},
      {"disabled", "\"false\""}, {"disabled", "0"},
      {"disabled", "null"},
  };
  for (const auto& w : wrong_types) {
    INFO(w.first << " = " << w.second);
    CHECK(refused(doc(user_json("", w.first, w.second))));
  }
  CHECK(refused("{\"version\":1,\"version\":1,\"users\":[]}"));
  CHECK(refused(doc("{\"user_id\":\"u1\"," + user_json("").substr(1))));  // user_id twice
  CHECK(refused("{\"version\":2,\"users\":[]}"));
  CHECK(refused("{\"version\":0,\"users\":[]}"));
  CHECK(refused("{\"version\":\"1\",\"users\":[]}"));
  CHECK(refused("{\"version\":1.5,\"users\":[]}"));
  CHECK(refused("{\"users\":[]}"));
  CHECK(refused("{\"version\":1}"));
  CHECK(refused("{\"version\":1,\"users\":{}}"));
  CHECK(refused("{\"version\":1,\"users\":[1]}"));
  CHECK(refused("{\"version\":1,\"users\":[]} trailing"));
  CHECK(refused("[]"));
  CHECK(refused(""));
}

TEST_CASE("stores refuse users whose text is not valid UTF-8", "[user_store]") {
  TempDir dir;
  MemoryUserStore memory;
  JsonFileUserStore file(dir.file("users.json"));
  for (UserStore* store : {static_cast<UserStore*>(&memory), static_cast<UserStore*>(&file)}) {
    CHECK(store->add_user(make_user("bad\xff@example.com", "id-1")) == StoreStatus::invalid);
    CHECK(store->add_user(make_user("ok@example.com", "id-\xc0\xaf")) == StoreStatus::invalid);
    REQUIRE(store->add_user(make_user("caf\xc3\xa9@example.com", "id-2")) == StoreStatus::ok);
    CHECK(store->update_user("caf\xc3\xa9@example.com", [](User& u) { u.password_hash = "\xed\xa0\x80"; }) ==
          StoreStatus::invalid);
  }
  // What the file store wrote is still a file it can read.
  JsonFileUserStore reopened(dir.file("users.json"));
  CHECK(reopened.list_users().size() == 1);
}
