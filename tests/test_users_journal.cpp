// The users file as a snapshot plus an append-only change journal (SPEC
// "Scale of the data directory", "Durability"): the format's one parser
// (detail/users_file.hpp), a change by another process applied from the
// journal without a whole-file read, a hand edit of users.json, compaction,
// a torn last line.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

using iwsec::JsonFileUserStore;
using iwsec::StoreStatus;
using iwsec::User;
using iwsec_test::TempDir;
using iwsec_test::read_file;
using iwsec_test::write_file;
namespace users_file = iwsec::detail::users_file;

namespace {

User make_user(std::size_t i) {
  User u;
  u.user_id = "id" + std::to_string(i);
  u.email = "user" + std::to_string(i) + "@example.com";
  u.password_hash = "$pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$kcOYe7iBo/M.xBaBSVc9aCm9ysgbB15raSmzNYFgFjU";
  u.refresh_token_sha256 = iwsec::refresh_token_hash("rt" + std::to_string(i));
  u.refresh_token_issued_at = 1700000000 + static_cast<std::int64_t>(i);
  return u;
}

std::vector<User> make_users(std::size_t n) {
  std::vector<User> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(make_user(i));
  return out;
}

// Replaces @p path the way an editor would: a new file renamed over it.
void replace_by_hand(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".edit";
  write_file(tmp, content);
  REQUIRE(::chmod(tmp.c_str(), 0600) == 0);
  REQUIRE(::rename(tmp.c_str(), path.c_str()) == 0);
}

std::size_t lines_in(const std::string& text) {
  std::size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

std::vector<std::string> stale_journals(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("users.json.journal.stale-", 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

}  // namespace

TEST_CASE("users file format: the snapshot and every journal line go through one parser and back", "[users_journal]") {
  const std::vector<User> users = make_users(3);
  std::string error;
  std::vector<User> parsed;
  REQUIRE(users_file::parse_snapshot(users_file::serialize(users), error, [&](User&& u) {
    parsed.push_back(std::move(u));
    return true;
  }));
  REQUIRE(parsed.size() == 3);
  CHECK(parsed[1].email == users[1].email);
  CHECK(parsed[1].refresh_token_issued_at == users[1].refresh_token_issued_at);

  users_file::snapshot_ref ref;
  ref.sha256 = iwsec::detail::sha256_hex("snapshot text");
  ref.size = 13;
  ref.inode = 42;
  ref.modified_ns = 1700000000123456789;

  users_file::journal_record record;
  const std::string header = users_file::header_line(ref);
  REQUIRE(header.back() == '\n');
  REQUIRE(users_file::parse_journal_line(header.substr(0, header.size() - 1), record, error));
  CHECK(record.kind == users_file::record_kind::header);
  CHECK(record.snapshot.sha256 == ref.sha256);
  CHECK(record.snapshot.size == 13);

  User odd = make_user(7);
  odd.email = "o\"dd\\@example.com";
  odd.disabled = true;
  odd.refresh_generation = 9;
  const std::string put = users_file::put_line(odd);
  CHECK(lines_in(put) == 1);
  REQUIRE(users_file::parse_journal_line(put.substr(0, put.size() - 1), record, error));
  CHECK(record.kind == users_file::record_kind::put);
  CHECK(record.user.email == odd.email);
  CHECK(record.user.disabled);
  CHECK(record.user.refresh_generation == 9);
  CHECK(record.user.refresh_token_sha256 == odd.refresh_token_sha256);

  const std::string removal = users_file::remove_line("gone@example.com");
  REQUIRE(users_file::parse_journal_line(removal.substr(0, removal.size() - 1), record, error));
  CHECK(record.kind == users_file::record_kind::remove);
  CHECK(record.email == "gone@example.com");

  const std::string compacted = users_file::compacted_line(ref);
  REQUIRE(users_file::parse_journal_line(compacted.substr(0, compacted.size() - 1), record, error));
  CHECK(record.kind == users_file::record_kind::compacted);
  CHECK(record.snapshot.inode == 42);
  CHECK(record.snapshot.modified_ns == 1700000000123456789);

  // What is not a journal line is refused with a reason.
  for (const char* bad : {"", "{", "{\"put\":{\"email\":\"a@b.c\"}}", "{\"delete\":3}", "{\"what\":1}",
                          "{\"put\":{},\"delete\":\"a@b.c\"}"}) {
    error.clear();
    CHECK_FALSE(users_file::parse_journal_line(bad, record, error));
    CHECK_FALSE(error.empty());
  }
}

TEST_CASE("users journal: another process's change is one appended line, applied without reading users.json",
          "[users_journal]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  write_file(path, JsonFileUserStore::serialize(make_users(50)));
  JsonFileUserStore live(path);
  CHECK(live.read_counts().snapshot_loads == 1);
  const std::string snapshot = read_file(path);

  {
    JsonFileUserStore admin(path);
    REQUIRE(admin.update_user("user7@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  }
  CHECK(read_file(path) == snapshot);  // users.json untouched
  CHECK(lines_in(read_file(path + ".journal")) == 2);  // a header naming users.json, one change

  // Applied on the next read, from the journal alone.
  CHECK(live.status_of("user7@example.com")->disabled);
  CHECK(live.read_counts().snapshot_loads == 1);
  CHECK(live.read_counts().journal_changes == 1);

  {
    JsonFileUserStore admin(path);
    REQUIRE(admin.add_user(make_user(100)) == StoreStatus::ok);
    REQUIRE(admin.delete_user("user3@example.com") == StoreStatus::ok);
  }
  CHECK(live.find_by_email("user100@example.com"));
  CHECK_FALSE(live.find_by_email("user3@example.com"));
  CHECK(live.list_users().size() == 50);
  CHECK(live.read_counts().snapshot_loads == 1);
  CHECK(live.read_counts().journal_changes == 3);

  // This store's own writes append too, and a fresh load sees them all.
  REQUIRE(iwsec::rotate_refresh_token(live, "user8@example.com").status == StoreStatus::ok);
  CHECK(read_file(path) == snapshot);
  JsonFileUserStore fresh(path);
  CHECK(fresh.status_of("user7@example.com")->disabled);
  CHECK(fresh.status_of("user8@example.com")->refresh_generation == 1);
  CHECK_FALSE(fresh.find_by_email("user3@example.com"));
  CHECK(fresh.list_users().size() == 50);
}

TEST_CASE("users journal: a hand edit of users.json wins over journal lines not folded in, which are set aside",
          "[users_journal]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  std::vector<User> users = make_users(10);
  write_file(path, JsonFileUserStore::serialize(users));
  std::vector<std::string> log;
  JsonFileUserStore live(path, [&](const std::string& line) { log.push_back(line); });
  JsonFileUserStore admin(path);
  REQUIRE(admin.update_user("user1@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  CHECK(live.status_of("user1@example.com")->disabled);

  // The operator edits users.json (as it was: user1 enabled) and removes user2.
  users.erase(users.begin() + 2);
  replace_by_hand(path, JsonFileUserStore::serialize(users));
  CHECK_FALSE(live.find_by_email("user2@example.com"));
  CHECK_FALSE(live.status_of("user1@example.com")->disabled);  // the journal's change is not applied
  CHECK(live.read_counts().snapshot_loads == 2);
  REQUIRE_FALSE(log.empty());
  CHECK(log.back().find("in full") != std::string::npos);
  CHECK(log.back().find("1 change") != std::string::npos);

  // The next write sets the old journal aside (kept, never applied) and starts a new one.
  CHECK(stale_journals(dir.path).empty());
  REQUIRE(admin.update_user("user4@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  const auto stale = stale_journals(dir.path);
  REQUIRE(stale.size() == 1);
  CHECK(read_file(stale[0]).find("user1@example.com") != std::string::npos);
  CHECK(live.status_of("user4@example.com")->disabled);
  CHECK_FALSE(live.status_of("user1@example.com")->disabled);
  CHECK(live.read_counts().snapshot_loads == 2);
  JsonFileUserStore fresh(path);
  CHECK(fresh.status_of("user4@example.com")->disabled);
  CHECK_FALSE(fresh.status_of("user1@example.com")->disabled);
  CHECK_FALSE(fresh.find_by_email("user2@example.com"));
}

TEST_CASE("users journal: compaction folds the journal into users.json; a live store adopts it without reading it",
          "[users_journal]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  write_file(path, JsonFileUserStore::serialize(make_users(20)));
  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  JsonFileUserStore live(path);
  JsonFileUserStore admin(path);
  REQUIRE(admin.update_user("user5@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  CHECK(live.status_of("user5@example.com")->disabled);

  REQUIRE(admin.compact() == StoreStatus::ok);
  CHECK_FALSE(std::filesystem::exists(path + ".journal"));
  std::vector<User> on_disk;
  std::string error;
  REQUIRE(users_file::parse_snapshot(read_file(path), error, [&](User&& u) {
    on_disk.push_back(std::move(u));
    return true;
  }));
  REQUIRE(on_disk.size() == 20);
  CHECK(on_disk[5].disabled);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);  // mode kept

  // The live store knows the new users.json is what it already holds.
  CHECK(live.status_of("user5@example.com")->disabled);
  CHECK(live.read_counts().snapshot_loads == 1);
  REQUIRE(admin.update_user("user6@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  CHECK(live.status_of("user6@example.com")->disabled);
  CHECK(live.read_counts().snapshot_loads == 1);

  // Past its size the journal is compacted by the writer itself; a store
  // that reads meanwhile (a server answering requests) follows every
  // compaction without reading users.json.
  const std::string before = read_file(path);
  for (int i = 0; i < 400; ++i) {
    REQUIRE(iwsec::rotate_refresh_token(admin, "user9@example.com").status == StoreStatus::ok);
    REQUIRE(live.status_of("user9@example.com")->refresh_generation == i + 1);
  }
  CHECK(read_file(path) != before);
  CHECK(lines_in(read_file(path + ".journal")) < 400);
  CHECK(live.status_of("user9@example.com")->refresh_generation == 400);
  CHECK(live.read_counts().snapshot_loads == 1);
  CHECK(JsonFileUserStore(path).status_of("user9@example.com")->refresh_generation == 400);
}

TEST_CASE("users journal: a torn last line (a crash mid-append) is ignored, then cut off by the next write",
          "[users_journal]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  write_file(path, JsonFileUserStore::serialize(make_users(5)));
  {
    JsonFileUserStore admin(path);
    REQUIRE(admin.update_user("user1@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  }
  const std::string journal = read_file(path + ".journal");
  {
    const int fd = ::open((path + ".journal").c_str(), O_WRONLY | O_APPEND);
    REQUIRE(fd >= 0);
    const std::string torn = "{\"delete\":\"user2@exa";
    REQUIRE(::write(fd, torn.data(), torn.size()) == static_cast<ssize_t>(torn.size()));
    ::close(fd);
  }
  JsonFileUserStore store(path);
  CHECK(store.status_of("user1@example.com")->disabled);
  CHECK(store.find_by_email("user2@example.com"));
  REQUIRE(store.update_user("user3@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  const std::string after = read_file(path + ".journal");
  CHECK(after.compare(0, journal.size(), journal) == 0);
  CHECK(after.find("user2@exa") == std::string::npos);
  JsonFileUserStore fresh(path);
  CHECK(fresh.status_of("user3@example.com")->disabled);
  CHECK(fresh.find_by_email("user2@example.com"));
}
