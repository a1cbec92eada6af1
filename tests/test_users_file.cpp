// The users file under stress (issue 10, findings 1, 4, 5, 7): loading is
// linear yet still refuses duplicates, a file that cannot be reloaded fails
// closed (descriptor exhaustion here; permissions in
// tests/python/test_data_dir_safety.py), a write reports what really
// happened when an fsync fails, temporary files cannot be redirected, root
// keeps a service account's ownership, untrusted paths are named and refused.

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
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

namespace {

User make_user(std::size_t i) {
  User u;
  u.user_id = "id" + std::to_string(i);
  u.email = "user" + std::to_string(i) + "@example.com";
  u.password_hash = "$pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$kcOYe7iBo/M.xBaBSVc9aCm9ysgbB15raSmzNYFgFjU";
  u.refresh_token_sha256 = iwsec::refresh_token_hash("rt" + std::to_string(i));
  return u;
}

std::vector<User> make_users(std::size_t n) {
  std::vector<User> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(make_user(i));
  return out;
}

// Replaces @p path the way another program would: a new file renamed over it.
void replace_file(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".other";
  write_file(tmp, content);
  REQUIRE(::rename(tmp.c_str(), path.c_str()) == 0);
}

struct stat stat_of(const std::string& path) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

// Fails every fsync of a directory (the fsync after a rename), or of a
// regular file, while installed.
std::atomic<int> failing_fsyncs{0};
int fail_directory_fsync(int fd) {
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ++failing_fsyncs;
    errno = EIO;
    return -1;
  }
  return ::fsync(fd);
}
int fail_file_fsync(int fd) {
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    ++failing_fsyncs;
    errno = EIO;
    return -1;
  }
  return ::fsync(fd);
}

struct FsyncHook {
  explicit FsyncHook(int (*hook)(int)) {
    failing_fsyncs = 0;
    iwsec::detail::fsync_hook = hook;
  }
  ~FsyncHook() { iwsec::detail::fsync_hook = nullptr; }
};

}  // namespace

TEST_CASE("users file: a large file loads, and duplicate ids, emails and tokens are still refused", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  std::vector<User> users = make_users(20000);
  write_file(path, JsonFileUserStore::serialize(users));
  {
    JsonFileUserStore store(path);
    CHECK(store.list_users().size() == 20000);
    CHECK(store.find_by_email("USER19999@example.com"));
    User again = make_user(30000);
    again.user_id = "id123";
    CHECK(store.add_user(again) == StoreStatus::already_exists);
    CHECK(store.list_users().size() == 20000);
  }
  for (int field = 0; field < 3; ++field) {
    std::vector<User> bad = users;
    User dup = make_user(40000);
    if (field == 0) dup.user_id = users[12345].user_id;
    if (field == 1) dup.email = "User777@EXAMPLE.com";
    if (field == 2) dup.refresh_token_sha256 = users[5].refresh_token_sha256;
    bad.push_back(dup);
    write_file(path, JsonFileUserStore::serialize(bad));
    try {
      JsonFileUserStore store(path);
      FAIL("a file with a duplicate loaded");
    } catch (const iwsec::store_error& e) {
      CHECK(std::string(e.what()).find("user #20001") != std::string::npos);
    }
  }
}

TEST_CASE("users file: extra members are ignored and version 1 written by an earlier version loads", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  write_file(path,
             "{\"version\":1,\"comment\":{\"a\":[1,2]},\"users\":[{\"user_id\":\"u\\u0031\",\"email\":\"a@b.c\","
             "\"password_hash\":\"h\",\"refresh_token_sha256\":\"r\",\"refresh_generation\":7,\"disabled\":true,"
             "\"note\":[\"x\"]}]}");
  JsonFileUserStore store(path);
  const auto u = store.find_by_email("a@b.c");
  REQUIRE(u);
  CHECK(u->user_id == "u1");
  CHECK(u->refresh_generation == 7);
  CHECK(u->disabled);
}

TEST_CASE("users file: descriptors exhausted while the file changed fail closed, then recover", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  std::vector<std::string> log;
  JsonFileUserStore live(path, [&](const std::string& line) { log.push_back(line); });
  REQUIRE(live.add_user(make_user(1)) == StoreStatus::ok);
  REQUIRE_FALSE(live.status_of("user1@example.com")->disabled);

  // Another process disables the user...
  {
    JsonFileUserStore admin(path);
    REQUIRE(admin.update_user("user1@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  }
  // ... while this process has no descriptor left.
  std::vector<int> hogs;
  for (;;) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    hogs.push_back(fd);
    if (hogs.size() > 1000000) break;  // no limit to reach: the check below fails
  }
  bool unavailable = false;
  try {
    (void)live.status_of("user1@example.com");
  } catch (const iwsec::StateUnavailable&) {
    unavailable = true;
  }
  for (int fd : hogs) ::close(fd);
  CHECK(unavailable);  // never the stale "enabled"
  REQUIRE(log.size() == 1);
  CHECK(log[0].find(path) != std::string::npos);
  CHECK(log[0].find("Too many open files") != std::string::npos);
  // Descriptors are back: the change applies.
  CHECK(live.status_of("user1@example.com")->disabled);
}

TEST_CASE("users file: a write whose directory fsync fails is applied and reported as done", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  std::vector<std::string> log;
  JsonFileUserStore store(path, [&](const std::string& line) { log.push_back(line); });
  REQUIRE(store.add_user(make_user(1)) == StoreStatus::ok);
  iwsec::IssuedRefreshToken rotated;
  {
    FsyncHook hook(fail_directory_fsync);
    rotated = iwsec::rotate_refresh_token(store, "user1@example.com");
    CHECK(failing_fsyncs >= 1);
  }
  // What the write reported is what a fresh load shows.
  CHECK(rotated.status == StoreStatus::ok);
  CHECK_FALSE(rotated.refresh_token.empty());
  JsonFileUserStore fresh(path);
  const auto u = fresh.find_by_refresh_token_hash(iwsec::refresh_token_hash(rotated.refresh_token));
  REQUIRE(u);
  CHECK(u->refresh_generation == 1);
  REQUIRE(log.size() == 1);
  CHECK(log[0].find("cannot fsync directory") != std::string::npos);
}

TEST_CASE("users file: a write whose file fsync fails is reported failed and changes nothing", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  JsonFileUserStore store(path);
  REQUIRE(store.add_user(make_user(1)) == StoreStatus::ok);
  const std::string before = read_file(path);
  iwsec::IssuedRefreshToken rotated;
  {
    FsyncHook hook(fail_file_fsync);
    rotated = iwsec::rotate_refresh_token(store, "user1@example.com");
    CHECK(failing_fsyncs >= 1);
  }
  CHECK(rotated.status == StoreStatus::io_error);
  CHECK(store.last_error().find("Input/output error") != std::string::npos);
  CHECK(read_file(path) == before);
  CHECK(JsonFileUserStore(path).find_by_email("user1@example.com")->refresh_generation == 0);
  CHECK(store.find_by_email("user1@example.com")->refresh_generation == 0);
  // Nothing left behind in the directory but the file and its lock.
  std::size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 2);
}

TEST_CASE("users file: a write that fails returns why, naming the file", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  JsonFileUserStore store(path);
  REQUIRE(store.add_user(make_user(1)) == StoreStatus::ok);
  iwsec::StoreResult written;
  {
    FsyncHook hook(fail_file_fsync);
    written = store.update_user("user1@example.com", [](iwsec::User& u) { ++u.refresh_generation; });
  }
  CHECK(written.status() == StoreStatus::io_error);
  INFO(written.reason());
  CHECK(written.reason().find("Input/output error") != std::string::npos);
  CHECK(written.reason().find(dir.path) != std::string::npos);
  // The lock file's name taken by a symlink: the result names the lock.
  const std::string other = dir.file("other.json");
  REQUIRE(::symlink(dir.file("nowhere").c_str(), (other + ".lock").c_str()) == 0);
  JsonFileUserStore second(other);
  const iwsec::StoreResult refused = second.add_user(make_user(2));
  CHECK(refused.status() == StoreStatus::io_error);
  CHECK(refused.reason().find(other + ".lock") != std::string::npos);
}

TEST_CASE("users file: a symlink planted at a temporary or lock name does not redirect the write", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  const std::string victim = dir.file("victim");
  write_file(victim, "precious");
  REQUIRE(::chmod(victim.c_str(), 0644) == 0);
  // The name earlier versions used for the temporary file.
  const std::string predictable = path + ".tmp." + std::to_string(::getpid());
  REQUIRE(::symlink(victim.c_str(), predictable.c_str()) == 0);
  {
    JsonFileUserStore store(path);
    REQUIRE(store.add_user(make_user(1)) == StoreStatus::ok);
  }
  CHECK(read_file(victim) == "precious");
  CHECK((stat_of(victim).st_mode & 0777) == 0644);
  CHECK(S_ISREG(stat_of(path).st_mode));
  CHECK(JsonFileUserStore(path).find_by_email("user1@example.com"));

  // A symlink at the lock file's name is refused, not followed.
  const std::string other = dir.file("other.json");
  REQUIRE(::symlink(victim.c_str(), (other + ".lock").c_str()) == 0);
  JsonFileUserStore store(other);
  CHECK(store.add_user(make_user(2)) == StoreStatus::io_error);
  CHECK(store.last_error().find(other + ".lock") != std::string::npos);
  CHECK(read_file(victim) == "precious");
}

TEST_CASE("users file: root replacing a service account's file keeps its owner and mode", "[users_file]") {
  if (::geteuid() != 0) {
    WARN("not root: ownership is kept only when root writes; skipped");
    return;
  }
  TempDir dir;
  const uid_t nobody = 65534;
  const std::string path = dir.file("users.json");
  REQUIRE(::chown(dir.path.c_str(), nobody, nobody) == 0);
  {
    JsonFileUserStore store(path);
    REQUIRE(store.add_user(make_user(1)) == StoreStatus::ok);  // a new file: the directory's owner
  }
  CHECK(stat_of(path).st_uid == nobody);
  CHECK(stat_of(path).st_gid == nobody);
  CHECK((stat_of(path).st_mode & 0777) == 0600);
  CHECK(stat_of(path + ".lock").st_uid == nobody);

  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  {
    JsonFileUserStore store(path);
    REQUIRE(store.update_user("user1@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  }
  CHECK(stat_of(path).st_uid == nobody);
  CHECK((stat_of(path).st_mode & 0777) == 0640);
  CHECK(JsonFileUserStore(path).status_of("user1@example.com")->disabled);
}

TEST_CASE("check_private names the path and the reason", "[users_file]") {
  TempDir dir;
  CHECK_FALSE(iwsec::detail::check_private(dir.path));
  REQUIRE(::chmod(dir.path.c_str(), 0770) == 0);
  auto reason = iwsec::detail::check_private(dir.path);
  REQUIRE(reason);
  CHECK(reason->find(dir.path) != std::string::npos);
  CHECK(reason->find("0770") != std::string::npos);
  REQUIRE(::chmod(dir.path.c_str(), 0700) == 0);

  const std::string key = dir.file("signing.key");
  write_file(key, std::string(32, 'k'));
  REQUIRE(::chmod(key.c_str(), 0640) == 0);
  reason = iwsec::detail::check_private(key);
  REQUIRE(reason);
  CHECK(reason->find(key) != std::string::npos);
  REQUIRE(::chmod(key.c_str(), 0600) == 0);
  CHECK_FALSE(iwsec::detail::check_private(key));

  reason = iwsec::detail::check_private(dir.file("missing"));
  REQUIRE(reason);
  CHECK(reason->find("No such file or directory") != std::string::npos);

  if (::geteuid() == 0) {
    REQUIRE(::chown(key.c_str(), 65534, 65534) == 0);
    reason = iwsec::detail::check_private(key);
    REQUIRE(reason);
    CHECK(reason->find("uid 65534") != std::string::npos);
    CHECK_FALSE(iwsec::detail::check_private(key, /*root_may_manage=*/true));
  }
}

TEST_CASE("user_index: copies share the users but never each other's changes", "[users_file]") {
  // A model (email key -> user, in insertion order) checked after every step
  // of random adds, updates, rotations and removals made on copies, past
  // several compactions of the overlay.
  using Model = std::vector<User>;
  // Empty when @p index holds exactly @p model, else what differs.
  const auto differences = [](const iwsec::detail::user_index& index, const Model& model) -> std::string {
    if (index.size() != model.size()) return "size";
    const auto listed = index.list();
    if (listed.size() != model.size()) return "list size";
    for (std::size_t i = 0; i < model.size(); ++i) {
      if (listed[i].email != model[i].email || listed[i].refresh_generation != model[i].refresh_generation)
        return "list entry " + std::to_string(i);
      const User* by_email = index.by_email(model[i].email);
      if (!by_email || by_email->user_id != model[i].user_id) return "by_email " + model[i].email;
      const User* by_token = index.by_refresh_token_hash(model[i].refresh_token_sha256);
      if (!by_token || by_token->email != model[i].email) return "by_refresh_token_hash " + model[i].email;
    }
    return "";
  };
  iwsec::detail::user_index live;
  Model model;
  for (std::size_t i = 0; i < 600; ++i) {
    REQUIRE(live.add(make_user(i)) == StoreStatus::ok);
    model.push_back(make_user(i));
  }
  std::uint64_t seed = 42;
  const auto next = [&seed](std::uint64_t n) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::size_t>((seed >> 33) % n);
  };
  std::size_t fresh = 10000;
  std::vector<std::string> old_tokens;
  for (int round = 0; round < 1000; ++round) {
    const Model before = model;
    iwsec::detail::user_index copy = live;
    const int op = static_cast<int>(next(4));
    if (op == 0) {
      User u = make_user(fresh++);
      REQUIRE(copy.add(u) == StoreStatus::ok);
      model.push_back(u);
    } else if (op == 1 && !model.empty()) {
      const std::size_t i = next(model.size());
      old_tokens.push_back(model[i].refresh_token_sha256);
      const std::string token = iwsec::refresh_token_hash("rotated" + std::to_string(round));
      REQUIRE(copy.update(model[i].email, [&](User& u) {
        u.refresh_token_sha256 = token;
        ++u.refresh_generation;
      }) == StoreStatus::ok);
      model[i].refresh_token_sha256 = token;
      ++model[i].refresh_generation;
    } else if (op == 2 && !model.empty()) {
      const std::size_t i = next(model.size());
      old_tokens.push_back(model[i].refresh_token_sha256);
      REQUIRE(copy.remove(model[i].email) == StoreStatus::ok);
      REQUIRE(copy.remove(model[i].email) == StoreStatus::not_found);
      model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (!model.empty()) {
      // Taken identities are refused in the copy as in the original.
      const User& other = model[next(model.size())];
      User dup = make_user(fresh++);
      dup.user_id = other.user_id;
      REQUIRE(copy.add(dup) == StoreStatus::already_exists);
      dup = make_user(fresh++);
      dup.refresh_token_sha256 = other.refresh_token_sha256;
      REQUIRE(copy.add(dup) == StoreStatus::already_exists);
    }
    INFO("round " << round << ", operation " << op);
    REQUIRE(differences(live, before).empty());  // the original never sees the copy's change
    REQUIRE(differences(copy, model).empty());
    live = std::move(copy);
  }
  for (const auto& token : old_tokens) CHECK_FALSE(live.by_refresh_token_hash(token));
  // A removed user's email and id can be used again.
  const User gone = model.front();
  REQUIRE(live.remove(gone.email) == StoreStatus::ok);
  model.erase(model.begin());
  REQUIRE(live.add(gone) == StoreStatus::ok);
  model.push_back(gone);
  iwsec::detail::user_index copy = live;
  REQUIRE(copy.remove(gone.email) == StoreStatus::ok);
  REQUIRE(copy.add(gone) == StoreStatus::ok);
  CHECK(copy.by_email(gone.email));
  CHECK(copy.size() == model.size());
}

TEST_CASE("users file: readers never see an older state while another process keeps writing", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  {
    JsonFileUserStore seed(path);
    for (std::size_t i = 0; i < 50; ++i) REQUIRE(seed.add_user(make_user(i)) == StoreStatus::ok);
  }
  JsonFileUserStore live(path);
  std::atomic<bool> stop{false};
  std::atomic<int> regressions{0}, failures{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      std::int64_t seen = 0;
      while (!stop.load()) {
        try {
          const auto st = live.status_of("user7@example.com");
          if (!st) {
            ++failures;
          } else {
            if (st->refresh_generation < seen) ++regressions;
            seen = st->refresh_generation;
          }
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  // Another "process" (its own store) rotates; this one rotates too.
  JsonFileUserStore other(path);
  std::int64_t expected = 0;
  for (int i = 0; i < 60; ++i) {
    JsonFileUserStore& writer = i % 2 ? live : other;
    REQUIRE(iwsec::rotate_refresh_token(writer, "user7@example.com").status == StoreStatus::ok);
    ++expected;
    // A write returned: every read that starts now sees it.
    CHECK(live.status_of("user7@example.com")->refresh_generation == expected);
  }
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(regressions == 0);
  CHECK(failures == 0);
}

TEST_CASE("revocation journal: compaction does not follow a symlink planted at a temporary name", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("revocations.journal");
  const std::string victim = dir.file("victim");
  write_file(victim, "precious");
  REQUIRE(::chmod(victim.c_str(), 0644) == 0);
  REQUIRE(::symlink(victim.c_str(), (path + ".tmp." + std::to_string(::getpid())).c_str()) == 0);
  // An expired entry makes the constructor compact the journal.
  write_file(path, "00000000-0000-4000-8000-000000000001 1\n");
  {
    iwsec::JournalRevocationStore store(path);
    CHECK(store.size() == 0);
    CHECK(store.revoke("00000000-0000-4000-8000-000000000002", 4000000000));
  }
  CHECK(read_file(victim) == "precious");
  CHECK((stat_of(victim).st_mode & 0777) == 0644);
  CHECK(S_ISREG(stat_of(path).st_mode));
  CHECK((stat_of(path).st_mode & 0777) == 0600);
  CHECK(iwsec::JournalRevocationStore(path).is_revoked("00000000-0000-4000-8000-000000000002"));
}

TEST_CASE("users file: another process's additions, removals, hand edits and duplicates apply exactly", "[users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  std::vector<User> users = make_users(40);
  write_file(path, JsonFileUserStore::serialize(users));
  JsonFileUserStore live(path);
  JsonFileUserStore other(path);
  const auto emails = [&] {
    std::vector<std::string> out;
    for (const auto& u : live.list_users()) out.push_back(u.email);
    return out;
  };
  // An addition (the last line gains a comma, a line is appended).
  REQUIRE(other.add_user(make_user(100)) == StoreStatus::ok);
  CHECK(live.find_by_email("user100@example.com"));
  CHECK(live.list_users().size() == 41);
  // A removal in the middle and an update, in one replacement.
  users.erase(users.begin() + 7);
  users[20].disabled = true;
  users.push_back(make_user(100));
  replace_file(path, JsonFileUserStore::serialize(users));
  CHECK_FALSE(live.find_by_email("user7@example.com"));
  CHECK(live.status_of(users[20].email)->disabled);
  CHECK_FALSE(live.find_by_refresh_token_hash(iwsec::refresh_token_hash("rt7")));
  CHECK(live.find_by_refresh_token_hash(iwsec::refresh_token_hash("rt8")));
  std::vector<std::string> expected;
  for (const auto& u : users) expected.push_back(u.email);
  CHECK(emails() == expected);
  // A duplicate slipped into an otherwise canonical file: refused, not merged.
  std::vector<User> dup = users;
  User twin = make_user(200);
  twin.email = "USER3@example.com";
  dup.insert(dup.begin() + 10, twin);
  replace_file(path, JsonFileUserStore::serialize(dup));
  CHECK_THROWS_AS(live.find_by_email("user3@example.com"), iwsec::StateUnavailable);
  // A hand edit (not the layout iwsec writes) is loaded in full.
  replace_file(path, "{\"users\":[{\"user_id\":\"x\",\"email\":\"hand@example.com\",\"password_hash\":\"h\","
                     "\"refresh_token_sha256\":\"t\",\"refresh_generation\":3,\"disabled\":false}],\"version\":1}");
  CHECK(emails() == std::vector<std::string>{"hand@example.com"});
  // And the next write by this store is in iwsec's layout again, which the other store patches in.
  REQUIRE(live.add_user(make_user(300)) == StoreStatus::ok);
  CHECK(other.list_users().size() == 2);
  REQUIRE(other.update_user("hand@example.com", [](User& u) { u.disabled = true; }) == StoreStatus::ok);
  CHECK(live.status_of("hand@example.com")->disabled);
  CHECK(JsonFileUserStore(path).list_users().size() == 2);
}
