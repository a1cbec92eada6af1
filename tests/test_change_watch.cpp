// The file-change watch (detail/change_watch.hpp): which changes count, what
// is never trusted to it (links, removed directories), one generation per
// request, and the property the stores rely on: a change that returned
// before a read started is seen by that read, while other threads read at
// the same time.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

using iwsec::detail::ChangeTracker;
using iwsec_test::TempDir;
using iwsec_test::write_file;

namespace {

// True when the tracker vouches for its files at the current generation.
bool quiet(const ChangeTracker& t) { return t.unchanged(t.now()); }

// Marks the tracker's files checked now; true when it vouches for them after.
bool settle(ChangeTracker& t) {
  t.checked(t.now());
  return quiet(t);
}

void append(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::app) << text;
}

// The kernel watches this process's inotify descriptors hold (fdinfo lines).
int kernel_watches() {
  int n = 0;
  DIR* fds = ::opendir("/proc/self/fd");
  REQUIRE(fds != nullptr);
  while (const dirent* e = ::readdir(fds)) {
    char target[256] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    if (::readlink(link.c_str(), target, sizeof target - 1) <= 0 || std::string(target) != "anon_inode:inotify")
      continue;
    std::ifstream info(std::string("/proc/self/fdinfo/") + e->d_name);
    for (std::string line; std::getline(info, line);) n += line.rfind("inotify wd:", 0) == 0;
  }
  ::closedir(fds);
  return n;
}

}  // namespace

TEST_CASE("ChangeTracker: a replacement, an append, a creation and a removal of a watched name each count",
          "[change_watch]") {
  TempDir dir;
  const std::string watched = dir.file("users.json");
  write_file(watched, "one");
  ChangeTracker t({watched, dir.file("users.json.journal")});
  REQUIRE(t.watched());
  CHECK_FALSE(quiet(t));  // never checked yet
  REQUIRE(settle(t));

  SECTION("other names in the same directory do not") {
    append(dir.file("audit.log"), "a line\n");
    write_file(dir.file("users.json.tmp"), "half");
    CHECK(quiet(t));
  }
  SECTION("replaced by rename") {
    write_file(dir.file("users.json.tmp"), "two");
    REQUIRE(::rename(dir.file("users.json.tmp").c_str(), watched.c_str()) == 0);
    CHECK_FALSE(quiet(t));
    CHECK(settle(t));
  }
  SECTION("appended to in place") {
    append(watched, "more");
    CHECK_FALSE(quiet(t));
  }
  SECTION("a second watched name created, then removed") {
    append(dir.file("users.json.journal"), "line\n");
    CHECK_FALSE(quiet(t));
    REQUIRE(settle(t));
    REQUIRE(::unlink(dir.file("users.json.journal").c_str()) == 0);
    CHECK_FALSE(quiet(t));
  }
  SECTION("its mode changed") {
    REQUIRE(::chmod(watched.c_str(), 0644) == 0);
    CHECK_FALSE(quiet(t));
  }
  SECTION("the directory's own mode changed (its files may have become unreadable)") {
    REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
    CHECK_FALSE(quiet(t));
  }
}

TEST_CASE("ChangeTracker: links and moved directories are never trusted to the watch", "[change_watch]") {
  TempDir dir;
  write_file(dir.file("real"), "x");

  SECTION("a file that is a symbolic link") {
    REQUIRE(::symlink(dir.file("real").c_str(), dir.file("link").c_str()) == 0);
    ChangeTracker t({dir.file("link")});
    CHECK_FALSE(t.watched());
    t.checked(t.now());
    CHECK_FALSE(quiet(t));
  }
  SECTION("a directory reached through a symbolic link") {
    REQUIRE(::mkdir(dir.file("sub").c_str(), 0700) == 0);
    REQUIRE(::symlink(dir.file("sub").c_str(), dir.file("sublink").c_str()) == 0);
    ChangeTracker t({dir.file("sublink") + "/file"});
    CHECK_FALSE(t.watched());
    CHECK_FALSE(settle(t));
  }
  SECTION("a path with . or .. in it (the stores would go through directories not watched)") {
    REQUIRE(::mkdir(dir.file("sub").c_str(), 0700) == 0);
    CHECK_FALSE(ChangeTracker({dir.path + "/./sub/file"}).watched());
    CHECK_FALSE(ChangeTracker({dir.path + "/other/../sub/file"}).watched());
    CHECK(ChangeTracker({dir.path + "/sub/file"}).watched());
  }
  SECTION("one file that cannot be watched: none of the tracker's are, and it holds no watch") {
    ChangeTracker t({dir.file("real"), "relative"});
    CHECK_FALSE(t.watched());
    CHECK_FALSE(settle(t));
  }
  SECTION("a watched name replaced by a symbolic link: stat from then on") {
    ChangeTracker t({dir.file("keyring")});
    REQUIRE(t.watched());
    REQUIRE(settle(t));
    REQUIRE(::symlink(dir.file("real").c_str(), dir.file("keyring").c_str()) == 0);
    CHECK_FALSE(settle(t));
    CHECK_FALSE(settle(t));
  }
  SECTION("the watched directory moved away: stat from then on") {
    REQUIRE(::mkdir(dir.file("data").c_str(), 0700) == 0);
    ChangeTracker t({dir.file("data/users.json")});
    REQUIRE(t.watched());
    REQUIRE(settle(t));
    REQUIRE(::rename(dir.file("data").c_str(), dir.file("old-data").c_str()) == 0);
    REQUIRE(::mkdir(dir.file("data").c_str(), 0700) == 0);
    CHECK_FALSE(settle(t));
    write_file(dir.file("data/users.json"), "new");
    CHECK_FALSE(settle(t));
  }
}

TEST_CASE("ChangeTracker: a path that a directory above it no longer leads to is never trusted again",
          "[change_watch]") {
  TempDir dir;
  REQUIRE(::mkdir(dir.file("a").c_str(), 0700) == 0);
  REQUIRE(::mkdir(dir.file("a/data").c_str(), 0700) == 0);
  write_file(dir.file("a/data/users.json"), "one");

  SECTION("the data directory deleted and made again while a file in it is held open (as server.lock is)") {
    ChangeTracker t({dir.file("a/data/users.json")});
    REQUIRE(t.watched());
    REQUIRE(settle(t));
    const int held = ::open(dir.file("a/data/users.json").c_str(), O_RDONLY);
    REQUIRE(held >= 0);
    REQUIRE(::unlink(dir.file("a/data/users.json").c_str()) == 0);
    REQUIRE(::rmdir(dir.file("a/data").c_str()) == 0);
    REQUIRE(::mkdir(dir.file("a/data").c_str(), 0700) == 0);
    write_file(dir.file("a/data/users.json"), "restored");
    CHECK_FALSE(settle(t));
    write_file(dir.file("a/data/users.json"), "changed after the restore");
    CHECK_FALSE(settle(t));
    ::close(held);
  }
  SECTION("a directory above it renamed, and the path made again") {
    ChangeTracker t({dir.file("a/data/users.json")});
    REQUIRE(t.watched());
    REQUIRE(settle(t));
    REQUIRE(::rename(dir.file("a").c_str(), dir.file("a.old").c_str()) == 0);
    REQUIRE(::mkdir(dir.file("a").c_str(), 0700) == 0);
    REQUIRE(::mkdir(dir.file("a/data").c_str(), 0700) == 0);
    CHECK_FALSE(settle(t));
    write_file(dir.file("a/data/users.json"), "new");
    CHECK_FALSE(settle(t));
  }
  SECTION("a directory above it replaced by a symbolic link") {
    ChangeTracker t({dir.file("a/data/users.json")});
    REQUIRE(settle(t));
    REQUIRE(::rename(dir.file("a").c_str(), dir.file("b").c_str()) == 0);
    REQUIRE(::symlink(dir.file("b").c_str(), dir.file("a").c_str()) == 0);
    CHECK_FALSE(settle(t));
  }
  SECTION("the directory moved, and watched under its new path before any request drained the move") {
    ChangeTracker t({dir.file("a/data/users.json")});
    REQUIRE(settle(t));
    REQUIRE(::rename(dir.file("a/data").c_str(), dir.file("a/moved").c_str()) == 0);
    ChangeTracker moved({dir.file("a/moved/users.json")});  // the same inode, the same kernel watch
    CHECK(moved.watched());
    REQUIRE(::mkdir(dir.file("a/data").c_str(), 0700) == 0);
    write_file(dir.file("a/data/users.json"), "restored");
    CHECK_FALSE(settle(t));
  }
  SECTION("events lost to a full queue: stat from then on") {
    ChangeTracker t({dir.file("a/data/users.json")});
    REQUIRE(settle(t));
    long limit = 16384;
    std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> limit;
    // Two names in turn: the kernel merges only an event equal to the last one queued.
    const int fds[2] = {::open(dir.file("a/data/one").c_str(), O_WRONLY | O_CREAT, 0600),
                        ::open(dir.file("a/data/two").c_str(), O_WRONLY | O_CREAT, 0600)};
    REQUIRE(fds[0] >= 0);
    REQUIRE(fds[1] >= 0);
    long written = 0;
    for (long i = 0; i <= limit + 16; ++i) written += ::write(fds[i % 2], "x", 1) == 1;
    REQUIRE(written == limit + 17);
    ::close(fds[0]);
    ::close(fds[1]);
    CHECK_FALSE(settle(t));
    CHECK_FALSE(settle(t));
  }
  SECTION("other names beside a directory on the path do not count") {
    ChangeTracker t({dir.file("a/data/users.json")});
    REQUIRE(settle(t));
    REQUIRE(::mkdir(dir.file("a/data-old").c_str(), 0700) == 0);
    REQUIRE(::rmdir(dir.file("a/data-old").c_str()) == 0);
    write_file(dir.file("a/notes"), "x");
    CHECK(quiet(t));
  }
}

TEST_CASE("ChangeTracker: relative paths, files with other names and children of fork() stat every time",
          "[change_watch]") {
  TempDir dir;
  write_file(dir.file("users.json"), "x");
  SECTION("a relative path (a chdir() would move it)") {
    ChangeTracker t({"users.json"});
    CHECK_FALSE(t.watched());
    CHECK_FALSE(settle(t));
  }
  SECTION("a file with a second name (a write through the other raises no event here)") {
    REQUIRE(::link(dir.file("users.json").c_str(), dir.file("other").c_str()) == 0);
    ChangeTracker t({dir.file("users.json")});
    CHECK_FALSE(t.watched());
  }
  SECTION("a child of fork() does not take the parent's events") {
    ChangeTracker t({dir.file("users.json")});
    REQUIRE(settle(t));
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // The child must not trust a count it no longer keeps, nor drain the queue.
      t.checked(t.now());
      const bool child_quiet = quiet(t);
      ::_exit(child_quiet ? 1 : 0);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    write_file(dir.file("users.json"), "changed after the fork");
    CHECK_FALSE(quiet(t));  // the parent's count goes on
    CHECK(settle(t));
  }
}

TEST_CASE("ChangeTracker: the kernel watches go when the last tracker on them does", "[change_watch]") {
  TempDir dir;
  REQUIRE(::mkdir(dir.file("data").c_str(), 0700) == 0);
  { ChangeTracker warm({dir.file("warm")}); }  // the descriptor exists from here on
  const int before = kernel_watches();
  {
    ChangeTracker a({dir.file("data/users.json")});
    ChangeTracker b({dir.file("data/signing.key")});
    REQUIRE(a.watched());
    CHECK(kernel_watches() > before);
    REQUIRE(settle(a));
    REQUIRE(::symlink(dir.file("x").c_str(), dir.file("data/users.json").c_str()) == 0);
    CHECK_FALSE(settle(a));  // dead: a name turned into a link; its watch must still go
  }
  CHECK(kernel_watches() == before);
}

TEST_CASE("ChangeTracker::Scope: one generation for a request; later changes apply from the next request",
          "[change_watch]") {
  TempDir dir;
  ChangeTracker keys({dir.file("signing.key")});
  ChangeTracker users({dir.file("users.json")});
  REQUIRE(settle(keys));
  REQUIRE(settle(users));
  {
    const ChangeTracker::Scope request;
    const auto g = keys.now();
    CHECK(g == users.now());
    CHECK(keys.unchanged(g));
    write_file(dir.file("users.json"), "changed during the request");
    CHECK(users.now() == g);  // the request goes on with what it started with
  }
  CHECK_FALSE(quiet(users));  // the next one sees the change
  CHECK_FALSE(quiet(keys));   // one generation for all: every tracker checks its files once
  CHECK(settle(keys));
}

TEST_CASE("JsonFileUserStore: a change another store made is seen by the next read, while others read on",
          "[change_watch][users_file]") {
  TempDir dir;
  const std::string path = dir.file("users.json");
  iwsec::JsonFileUserStore admin(path, {});
  iwsec::User u;
  u.user_id = "id0";
  u.email = "a@example.com";
  u.password_hash = "$pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$kcOYe7iBo/M.xBaBSVc9aCm9ysgbB15raSmzNYFgFjU";
  u.refresh_token_sha256 = iwsec::refresh_token_hash("rt0");
  REQUIRE(admin.add_user(u) == iwsec::StoreStatus::ok);
  iwsec::JsonFileUserStore server(path, {});
  REQUIRE(server.find_by_email("a@example.com"));

  // Readers keep the watch draining on other threads, so that the check
  // below also meets events taken off the queue by someone else.
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i)
    readers.emplace_back([&] {
      while (!stop.load()) (void)server.find_by_email("a@example.com");
    });
  int missed = 0;
  for (int round = 0; round < 200; ++round) {
    const bool disable = round % 2 == 0;
    REQUIRE(admin.update_user("a@example.com", [&](iwsec::User& x) { x.disabled = disable; }) ==
            iwsec::StoreStatus::ok);
    const auto seen = server.find_by_email("a@example.com");
    if (!seen || seen->disabled != disable) ++missed;
  }
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(missed == 0);
}
