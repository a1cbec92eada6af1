// Unit tests for include/iwsec/revocation_store.hpp: MemoryRevocationStore
// and the durable JournalRevocationStore.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
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

// The i-th of a fixed sequence of distinct jtis in canonical UUID v4 form.
std::string uuid_number(std::uint64_t i) {
  auto mix = [](std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
  };
  const std::uint64_t hi = (mix(2 * i) & ~0xF000ULL) | 0x4000ULL;                     // version 4
  const std::uint64_t lo = (mix(2 * i + 1) & ~(3ULL << 62)) | (2ULL << 62);          // variant 10
  std::string out;
  iwsec::detail::append_uuid_key(out, hi, lo);
  return out;
}

ino_t inode_of(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("stat failed: " + path);
  return st.st_ino;
}

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

// ---- UUID jtis: the compact table -------------------------------------------------------

TEST_CASE("parse_uuid_key and append_uuid_key map canonical UUID text one to one", "[revocation]") {
  std::uint64_t hi = 0, lo = 0;
  const std::string text = "0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a11";
  REQUIRE(iwsec::detail::parse_uuid_key(text, hi, lo));
  CHECK(hi == 0x0b8e1c9e2f434c4eULL);
  CHECK(lo == 0x9a593f0e4e1f2a11ULL);
  std::string back;
  iwsec::detail::append_uuid_key(back, hi, lo);
  CHECK(back == text);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    const std::string u = uuid_number(i);
    REQUIRE(iwsec::detail::is_canonical_uuid(u));
    REQUIRE(iwsec::detail::parse_uuid_key(u, hi, lo));
    std::string again;
    iwsec::detail::append_uuid_key(again, hi, lo);
    REQUIRE(again == u);
  }
  // Anything else is not a key of the table (it is kept as text instead).
  for (const char* other : {"0B8E1C9E-2F43-4C4E-9A59-3F0E4E1F2A11", "0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a1",
                            "0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a111", "0b8e1c9e+2f43-4c4e-9a59-3f0e4e1f2a11",
                            "0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a1g", "0b8e1c9e2f434c4e9a593f0e4e1f2a11----", ""}) {
    INFO(other);
    CHECK_FALSE(iwsec::detail::parse_uuid_key(other, hi, lo));
  }
}

TEST_CASE("MemoryRevocationStore: UUID and other jtis are told apart exactly", "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  const std::string lower = "0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a11";
  const std::string upper = "0B8E1C9E-2F43-4C4E-9A59-3F0E4E1F2A11";
  REQUIRE(store.revoke(lower, t0 + 900));
  CHECK(store.is_revoked(lower));
  CHECK_FALSE(store.is_revoked(upper));  // a different jti text
  CHECK_FALSE(store.is_revoked("0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a12"));
  REQUIRE(store.revoke(upper, t0 + 900));
  CHECK(store.is_revoked(upper));
  CHECK(store.size() == 2);
  REQUIRE(store.revoke(lower, t0 + 10));  // again, shorter: still one entry
  CHECK(store.size() == 2);
}

TEST_CASE("MemoryRevocationStore: the table grows without losing an entry", "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  const std::uint64_t n = 150000;  // several doublings and sweeps of nothing
  for (std::uint64_t i = 0; i < n; ++i) REQUIRE(store.revoke(uuid_number(i), t0 + 900));
  CHECK(store.size() == n);
  std::uint64_t missing = 0, extra = 0;
  for (std::uint64_t i = 0; i < n; ++i) missing += !store.is_revoked(uuid_number(i));
  for (std::uint64_t i = n; i < n + 20000; ++i) extra += store.is_revoked(uuid_number(i));
  CHECK(missing == 0);
  CHECK(extra == 0);
}

TEST_CASE("MemoryRevocationStore: sweeps drop expired UUID entries and keep the live and extended ones",
          "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  for (std::uint64_t i = 0; i < 3000; ++i) REQUIRE(store.revoke(uuid_number(i), t0 + (i % 2 ? 900 : 60)));
  REQUIRE(store.revoke(uuid_number(3000), t0 + 60));
  REQUIRE(store.revoke(uuid_number(3000), t0 + 900));  // extended: must survive
  REQUIRE(store.revoke("text-jti", t0 + 60));
  CHECK(store.size() == 3002);
  clock.set(t0 + 60);  // every even entry has expired, exactly now
  // Enough new revocations to reach the next sweep (the store doubled since the last one).
  std::uint64_t next = 100000;
  while (store.size() >= 1502 + 2 && next < 110000) REQUIRE(store.revoke(uuid_number(next++), t0 + 900));
  // The sweep happened: the size fell to the live entries.
  CHECK(store.size() < 3002 + (next - 100000));
  for (std::uint64_t i = 0; i < 3000; ++i) {
    INFO(i);
    REQUIRE(store.is_revoked(uuid_number(i)) == (i % 2 == 1));
  }
  CHECK(store.is_revoked(uuid_number(3000)));
  CHECK_FALSE(store.is_revoked("text-jti"));
  for (std::uint64_t i = 100000; i < next; ++i) REQUIRE(store.is_revoked(uuid_number(i)));
  CHECK(store.size() == 1500 + 1 + (next - 100000));
}

TEST_CASE("MemoryRevocationStore: lookups during growth and sweeps never miss a revoked jti", "[revocation]") {
  ManualClock clock(t0);
  MemoryRevocationStore store(clock.clock());
  const std::uint64_t held = 2000;
  for (std::uint64_t i = 0; i < held; ++i) REQUIRE(store.revoke(uuid_number(i), t0 + 900));
  std::atomic<bool> writing{true};
  std::atomic<std::uint64_t> misses{0}, lookups{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&, r] {
      std::uint64_t i = static_cast<std::uint64_t>(r);
      while (writing.load()) {
        if (!store.is_revoked(uuid_number(i % held))) ++misses;
        ++lookups;
        i += 7;
      }
    });
  // Short-lived revocations expire as the clock moves, so the writer both grows and sweeps.
  for (std::uint64_t i = 0; i < 60000; ++i) {
    REQUIRE(store.revoke(uuid_number(1000000 + i), clock.now() + 3));
    if (i % 100 == 0) clock.advance(1);
    if (clock.now() > t0 + 800) clock.set(t0 + 800);
  }
  writing = false;
  for (auto& t : readers) t.join();
  CHECK(lookups.load() > 0);
  CHECK(misses.load() == 0);
  for (std::uint64_t i = 0; i < held; ++i) REQUIRE(store.is_revoked(uuid_number(i)));
}

// ---- JournalRevocationStore at scale --------------------------------------------------

TEST_CASE("JournalRevocationStore: a large clean journal is replayed, kept as it is, and appended to",
          "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revocations.journal");
  ManualClock clock(t0);
  const std::uint64_t n = 200000;  // about 9.6 MB: lines straddle the replay's read blocks
  std::string text;
  text.reserve(n * 48);
  for (std::uint64_t i = 0; i < n; ++i) text += uuid_number(i) + ' ' + std::to_string(t0 + 1000 + i % 500) + '\n';
  write_file(path, text);
  ::chmod(path.c_str(), 0644);
  const ino_t before = inode_of(path);
  {
    JournalRevocationStore store(path, clock.clock());
    CHECK(store.size() == n);
    std::uint64_t missing = 0, extra = 0;
    for (std::uint64_t i = 0; i < n; ++i) missing += !store.is_revoked(uuid_number(i));
    for (std::uint64_t i = n; i < n + 10000; ++i) extra += store.is_revoked(uuid_number(i));
    CHECK(missing == 0);
    CHECK(extra == 0);
    // Nothing to drop: not rewritten (same file), but private to its owner.
    CHECK(inode_of(path) == before);
    CHECK(read_file(path).size() == text.size());
    CHECK(permissions(path) == 0600);
    REQUIRE(store.revoke(uuid_number(n), t0 + 900));
    CHECK(read_file(path) == text + uuid_number(n) + ' ' + std::to_string(t0 + 900) + '\n');
  }
  JournalRevocationStore reopened(path, clock.clock());
  CHECK(reopened.size() == n + 1);
  CHECK(reopened.is_revoked(uuid_number(n)));
  CHECK(reopened.is_revoked(uuid_number(n / 2)));
}

TEST_CASE("JournalRevocationStore: a large journal with a torn tail, duplicates and expired lines is compacted",
          "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revocations.journal");
  ManualClock clock(t0);
  const std::uint64_t n = 60000;
  std::string text;
  for (std::uint64_t i = 0; i < n; ++i) {
    // Every third entry has expired by t0; every fifth appears twice, the second time with a later exp.
    const std::int64_t exp = i % 3 == 0 ? t0 - 5 : t0 + 100;
    text += uuid_number(i) + ' ' + std::to_string(exp) + '\n';
    if (i % 5 == 0) text += uuid_number(i) + ' ' + std::to_string(t0 + 2000) + '\n';
  }
  const std::string torn = uuid_number(n) + ' ' + std::to_string(t0 + 900);
  write_file(path, text + torn);  // the torn line is complete but for its newline: never acknowledged
  const ino_t before = inode_of(path);
  std::uint64_t live = 0;
  for (std::uint64_t i = 0; i < n; ++i) live += (i % 3 != 0 || i % 5 == 0);
  {
    JournalRevocationStore store(path, clock.clock());
    CHECK(store.size() == live);
    for (std::uint64_t i = 0; i < n; ++i) {
      INFO(i);
      REQUIRE(store.is_revoked(uuid_number(i)) == (i % 3 != 0 || i % 5 == 0));
    }
    CHECK_FALSE(store.is_revoked(uuid_number(n)));
    CHECK(inode_of(path) != before);  // rewritten
    const std::string compacted = read_file(path);
    CHECK(well_formed_journal(compacted));
    CHECK(lines_of(compacted).size() == live);
    CHECK(compacted.find(torn) == std::string::npos);
    CHECK(permissions(path) == 0600);
    REQUIRE(store.revoke(uuid_number(n + 1), t0 + 900));
  }
  clock.set(t0 + 100);  // now only the extended (every fifth) entries and the new one are live
  JournalRevocationStore reopened(path, clock.clock());
  std::uint64_t extended = 0;
  for (std::uint64_t i = 0; i < n; i += 5) ++extended;
  CHECK(reopened.size() == extended + 1);
  CHECK(reopened.is_revoked(uuid_number(5)));
  CHECK_FALSE(reopened.is_revoked(uuid_number(1)));
  CHECK(reopened.is_revoked(uuid_number(n + 1)));
  CHECK(lines_of(read_file(path)).size() == extended + 1);
}

TEST_CASE("JournalRevocationStore: a journal that exists but cannot be opened is never replaced",
          "[revocation][journal]") {
  TempDir dir;
  const std::string path = dir.file("revocations.journal");
  const std::string live = std::to_string(t0 + 900);
  // A name that cannot be opened although it exists: a symlink loop.
  REQUIRE(::symlink(path.c_str(), path.c_str()) == 0);
  CHECK_THROWS_AS(JournalRevocationStore(path), std::runtime_error);
  ::unlink(path.c_str());
  // And an empty journal opens as it is.
  write_file(path, "");
  const ino_t before = inode_of(path);
  ManualClock clock(t0);
  JournalRevocationStore store(path, clock.clock());
  CHECK(store.size() == 0);
  CHECK(inode_of(path) == before);
  REQUIRE(store.revoke("a", t0 + 900));
  CHECK(read_file(path) == "a " + live + "\n");
}
