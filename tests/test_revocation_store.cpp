// Unit tests for include/iwsec/revocation_store.hpp: MemoryRevocationStore
// and the durable JournalRevocationStore.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <csignal>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"
#include "support/test_server.hpp"

using iwsec::JournalRevocationStore;
using iwsec::MemoryRevocationStore;
using iwsec_test::ManualClock;

namespace {

using iwsec_test::TempDir;
using iwsec_test::read_file;
using iwsec_test::write_file;

const std::int64_t t0 = 1700000000;




unsigned permissions(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("stat failed: " + path);
  return st.st_mode & 07777;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto nl = text.find('\n', start);
    if (nl == std::string::npos) {
      out.push_back(text.substr(start));  // unterminated
      break;
    }
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// Every journal line is "<jti> <digits>" and the file ends with a newline.
bool well_formed_journal(const std::string& text) {
  if (!text.empty() && text.back() != '\n') return false;
  for (const auto& line : lines_of(text)) {
    const auto space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size()) return false;
    if (line.find_first_not_of("0123456789", space + 1) != std::string::npos) return false;
  }
  return true;
}

}  // namespace

// ---- MemoryRevocationStore ----------------------------------------------------------

TEST_CASE("MemoryRevocationStore: revoke and is_revoked", "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  CHECK(store.size() == 0);
  CHECK_FALSE(store.is_revoked("jti-1"));
  CHECK(store.revoke("jti-1", t0 + 900));
  CHECK(store.is_revoked("jti-1"));
  CHECK_FALSE(store.is_revoked("jti-2"));
  CHECK_FALSE(store.is_revoked("JTI-1"));
  CHECK_FALSE(store.is_revoked(""));
  CHECK(store.revoke("jti-1", t0 + 900));  // idempotent
  CHECK(store.size() == 1);
  CHECK(store.revoke("jti-2", t0 + 10));
  CHECK(store.is_revoked("jti-2"));
  CHECK(store.size() == 2);

  // Through the interface, as the routes use it.
  iwsec::RevocationStore& as_interface = store;
  CHECK(as_interface.is_revoked("jti-1"));
  CHECK(as_interface.revoke("jti-3", t0 + 5));
  CHECK(store.is_revoked("jti-3"));
}

TEST_CASE("MemoryRevocationStore: a sweep drops expired entries, keeps live ones", "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  for (int i = 0; i < 1000; ++i) REQUIRE(store.revoke("short-" + std::to_string(i), t0 + 10));
  REQUIRE(store.revoke("long", t0 + 5000));
  REQUIRE(store.revoke("lowered", t0 + 5000));
  REQUIRE(store.revoke("lowered", t0 + 1));  // a second revocation never shortens the first
  CHECK(store.size() == 1002);
  CHECK(store.is_revoked("short-0"));
  CHECK(store.is_revoked("short-999"));

  clock.advance(100);  // every "short-" token has expired by now
  for (int i = 0; i < 30; ++i) REQUIRE(store.revoke("new-" + std::to_string(i), t0 + 1000));
  CHECK(store.size() == 32);
  CHECK_FALSE(store.is_revoked("short-0"));
  CHECK_FALSE(store.is_revoked("short-999"));
  CHECK(store.is_revoked("long"));
  CHECK(store.is_revoked("lowered"));
  for (int i = 0; i < 30; ++i) CHECK(store.is_revoked("new-" + std::to_string(i)));
}

TEST_CASE("MemoryRevocationStore: an entry expiring exactly now is swept", "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  REQUIRE(store.revoke("edge", t0 + 50));
  for (int i = 0; i < 1000; ++i) REQUIRE(store.revoke("live-" + std::to_string(i), t0 + 1000));
  clock.set(t0 + 50);  // a token is expired at its exp
  for (int i = 0; i < 30; ++i) REQUIRE(store.revoke("more-" + std::to_string(i), t0 + 1000));
  CHECK_FALSE(store.is_revoked("edge"));
  CHECK(store.size() == 1030);
}

TEST_CASE("MemoryRevocationStore: many short-lived revocations stay bounded", "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  for (int i = 0; i < 20000; ++i) {
    REQUIRE(store.revoke("j" + std::to_string(i), clock.now() + 5));
    clock.advance(1);
  }
  CHECK(store.size() <= 1024);
  CHECK(store.is_revoked("j19999"));
  CHECK_FALSE(store.is_revoked("j0"));
}

// ---- JournalRevocationStore ---------------------------------------------------------

TEST_CASE("JournalRevocationStore: creates its journal with mode 0600", "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revoked.journal");
  ManualClock clock(t0);
  JournalRevocationStore store(path, clock.clock());
  CHECK(store.path() == path);
  CHECK(permissions(path) == 0600);
  CHECK(read_file(path).empty());
  REQUIRE(store.revoke("jti-1", t0 + 900));
  CHECK(permissions(path) == 0600);
  // revoke() returned, so the line is in the file already.
  CHECK(read_file(path) == "jti-1 " + std::to_string(t0 + 900) + "\n");
}

TEST_CASE("JournalRevocationStore: revocations survive reopening", "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revoked.journal");
  ManualClock clock(t0);
  {
    JournalRevocationStore store(path, clock.clock());
    REQUIRE(store.revoke("a", t0 + 900));
    REQUIRE(store.revoke("b", t0 + 50));
    REQUIRE(store.revoke("c", t0 + 900));
    CHECK(store.is_revoked("a"));
  }
  {
    JournalRevocationStore reopened(path, clock.clock());
    CHECK(reopened.is_revoked("a"));
    CHECK(reopened.is_revoked("b"));
    CHECK(reopened.is_revoked("c"));
    CHECK_FALSE(reopened.is_revoked("d"));
    CHECK(reopened.size() == 3);
    REQUIRE(reopened.revoke("d", t0 + 900));
    CHECK(permissions(path) == 0600);
  }
  JournalRevocationStore again(path, clock.clock());
  CHECK(again.is_revoked("a"));
  CHECK(again.is_revoked("d"));
  CHECK(again.size() == 4);
  CHECK(well_formed_journal(read_file(path)));
}

TEST_CASE("JournalRevocationStore: expired entries are dropped on replay", "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revoked.journal");
  ManualClock clock(t0);
  {
    JournalRevocationStore store(path, clock.clock());
    REQUIRE(store.revoke("soon", t0 + 50));
    REQUIRE(store.revoke("later", t0 + 900));
    REQUIRE(store.revoke("exactly", t0 + 60));
  }
  clock.set(t0 + 60);
  JournalRevocationStore reopened(path, clock.clock());
  CHECK_FALSE(reopened.is_revoked("soon"));
  CHECK_FALSE(reopened.is_revoked("exactly"));
  CHECK(reopened.is_revoked("later"));
  CHECK(reopened.size() == 1);
  // The journal was compacted to the live entries.
  CHECK(read_file(path) == "later " + std::to_string(t0 + 900) + "\n");
  CHECK(permissions(path) == 0600);
}

TEST_CASE("JournalRevocationStore: a torn last line is ignored, appends continue cleanly", "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revoked.journal");
  ManualClock clock(t0);
  const std::string live = std::to_string(t0 + 900);
  // A crash in the middle of an append: the last line never got its newline.
  write_file(path, "a " + live + "\nb " + live + "\ntorn " + live.substr(0, 4));
  {
    JournalRevocationStore store(path, clock.clock());
    CHECK(store.is_revoked("a"));
    CHECK(store.is_revoked("b"));
    CHECK_FALSE(store.is_revoked("torn"));
    CHECK(store.size() == 2);
    REQUIRE(store.revoke("c", t0 + 900));
    CHECK(store.is_revoked("c"));
    const std::string text = read_file(path);
    CHECK(well_formed_journal(text));
    CHECK(text.find("torn") == std::string::npos);
  }
  // A torn line that looks complete except for its newline is still not acknowledged.
  write_file(path, read_file(path) + "whole " + live);
  JournalRevocationStore reopened(path, clock.clock());
  CHECK(reopened.is_revoked("a"));
  CHECK(reopened.is_revoked("b"));
  CHECK(reopened.is_revoked("c"));
  CHECK_FALSE(reopened.is_revoked("whole"));
  CHECK_FALSE(reopened.is_revoked("torn"));
  REQUIRE(reopened.revoke("d", t0 + 900));
  CHECK(well_formed_journal(read_file(path)));
  JournalRevocationStore third(path, clock.clock());
  CHECK(third.size() == 4);
  CHECK(third.is_revoked("d"));
}

TEST_CASE("JournalRevocationStore: garbage lines are skipped", "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revoked.journal");
  ManualClock clock(t0);
  const std::string live = std::to_string(t0 + 900);
  write_file(path, std::string("garbage\n") + "\n" + " " + live + "\n" + "neg -5\n" + "hex 0x10\n" + "mixed 12a\n" +
                       "empty \n" + "spaces a b " + live + "\n" + "huge 99999999999999999999999\n" +
                       "wide " + std::string(18, '\x80') + "\n" + "zzz " + std::string(18, 'z') + "\n" +
                       std::string("\0\0\0\n", 4) + "\xff\xfe binary\n" + "ok " + live + "\n" + "ok2 " + live +
                       "\r\n" + "dup 10\n" + "dup " + live + "\n");
  JournalRevocationStore store(path, clock.clock());
  CHECK(store.is_revoked("ok"));
  CHECK(store.is_revoked("dup"));  // the later, live revocation of a jti counts
  for (const char* jti : {"garbage", "", "neg", "hex", "mixed", "empty", "spaces", "huge", "wide", "zzz", "ok2"}) {
    INFO(jti);
    CHECK_FALSE(store.is_revoked(jti));
  }
  CHECK(store.size() == 2);
  CHECK(well_formed_journal(read_file(path)));
  REQUIRE(store.revoke("after", t0 + 900));
  JournalRevocationStore reopened(path, clock.clock());
  CHECK(reopened.size() == 3);
  CHECK(reopened.is_revoked("after"));
}

TEST_CASE("JournalRevocationStore: refuses jtis that would corrupt the journal", "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revoked.journal");
  ManualClock clock(t0);
  {
    JournalRevocationStore store(path, clock.clock());
    const std::string injected = "x " + std::to_string(t0 + 900) + "\ninjected";
    for (const std::string& jti : {std::string("a b"), std::string("a\nb"), std::string("a\tb"),
                                   std::string("a\rb"), std::string(" a"), std::string("a\n"), std::string(""),
                                   std::string(257, 'j'), injected}) {
      INFO("jti: " << jti);
      CHECK_FALSE(store.revoke(jti, t0 + 900));
      CHECK_FALSE(store.is_revoked(jti));
    }
    CHECK(store.size() == 0);
    CHECK(read_file(path).empty());
    CHECK(store.revoke(std::string(256, 'j'), t0 + 900));
  }
  JournalRevocationStore reopened(path, clock.clock());
  CHECK(reopened.size() == 1);
  CHECK(reopened.is_revoked(std::string(256, 'j')));
  CHECK_FALSE(reopened.is_revoked("x"));
  CHECK_FALSE(reopened.is_revoked("injected"));
}

TEST_CASE("JournalRevocationStore: an unusable path throws at construction", "[revocation][journal]") {
  TempDir dir;
  CHECK_THROWS_AS(JournalRevocationStore(dir.file("missing/revoked.journal")), std::runtime_error);
  CHECK_THROWS_AS(JournalRevocationStore(dir.path), std::runtime_error);  // a directory
}

TEST_CASE("JournalRevocationStore: a failed append leaves no fragment to spoil the next one", "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revocations.journal");
  ManualClock clock(t0);
  const std::string first = "0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a11";
  const std::string failed = "1b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a12";
  const std::string after = "2b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a13";
  {
    JournalRevocationStore store(path, clock.clock());
    REQUIRE(store.revoke(first, t0 + 900));
    const auto size = static_cast<rlim_t>(read_file(path).size());

    // Let the next append write only part of its line: the file may grow by 10 bytes.
    const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit tight = saved;
    tight.rlim_cur = size + 10;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &tight) == 0);
    const bool failed_ok = store.revoke(failed, t0 + 900);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &saved) == 0);
    std::signal(SIGXFSZ, previous_handler);

    CHECK_FALSE(failed_ok);                          // not acknowledged...
    CHECK(read_file(path).size() == size);           // ...and not left half-written
    REQUIRE(store.revoke(after, t0 + 900));          // the next one is acknowledged...
  }
  JournalRevocationStore reopened(path, clock.clock());
  CHECK(reopened.is_revoked(first));
  CHECK(reopened.is_revoked(after));                 // ...and survives a restart
  CHECK_FALSE(reopened.is_revoked(failed));
}
