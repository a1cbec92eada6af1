// iwsec-bench-users: what the users file costs at 10^3, 10^4 and 10^5 users
// (issue 10, finding 7; docs/data-directory.md "Scale").
//
// For each size, in a temporary directory:
//   load      a fresh JsonFileUserStore opening the file (the server's start
//             and the first half of every iwsec-admin command);
//   admin     what `iwsec-admin disable-user` does: open, update one user,
//             write the file back (fsync, rename, fsync the directory);
//   rotation  a refresh-token rotation on a store already loaded (the write
//             behind DELETE /v3/security/token/refresh);
//   hold      the longest a status_of() call (the hot path of every
//             access-token check) took on a live store, from two reader
//             threads calling it every 100 us, while another store (another
//             process, in effect) appended its change to the journal and the
//             live store applied it;
//   compact   the same while the other store compacted (`iwsec-admin
//             compact`: users.json rewritten whole, the journal removed),
//             and whether the live store followed without reading users.json.
//
// Targets (SPEC, 2 cores): load and admin < 2 s, rotation < 1 s, hold
// < 100 ms at 10^5 users (issue 18 asks for <= 20 ms: both holds are held to
// that). Prints the figures and PASS/MISS; never fails on a timing. `--max N`
// stops after the size N (e.g. `--max 10000` for a smoke run).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <time.h>

#include <iwsec/iwsec.hpp>

#include "timing.hpp"

namespace {

using bench::clock_type;
using bench::seconds_since;
using bench::thread_cpu_seconds;

std::string email_of(std::size_t i) { return "user" + std::to_string(i) + "@example.com"; }

// Users as iwsec-admin makes them, without spending PBKDF2 on each: one real
// hash shared by all (the file's size and the parsing are the same).
std::vector<iwsec::User> make_users(std::size_t n) {
  const std::string hash = iwsec::hash_password("benchmark password", 1000);
  std::vector<iwsec::User> users;
  users.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    iwsec::User u;
    u.user_id = iwsec::generate_user_id();
    u.email = email_of(i);
    u.password_hash = hash;
    u.refresh_token_sha256 = iwsec::refresh_token_hash(iwsec::generate_refresh_token());
    users.push_back(std::move(u));
  }
  return users;
}

struct Figures {
  double load = 0, admin = 0, rotation = 0, hold = 0, reload_seen = 0, compact_hold = 0;
  double load_cpu = 0, admin_cpu = 0, rotation_cpu = 0;
  bool applied = false, compaction_followed = false;
};

// The longest status_of() on @p live from two reader threads (one call every
// 100 us each) while @p change runs and until @p seen says the live store
// has it, plus 200 ms after. Returns seconds; @p applied_in: when it was seen.
template <typename Change, typename Seen>
double worst_hold(iwsec::JsonFileUserStore& live, std::size_t n, Change&& change, Seen&& seen, double& applied_in,
                  bool& applied) {
  std::atomic<bool> stop{false};
  std::atomic<long long> worst_ns{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::size_t i = static_cast<std::size_t>(r);
      while (!stop.load()) {
        const auto s = clock_type::now();
        try {
          (void)live.status_of(email_of(i % n));
        } catch (const std::exception&) {
        }
        const long long ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - s).count();
        long long prev = worst_ns.load();
        while (ns > prev && !worst_ns.compare_exchange_weak(prev, ns)) {
        }
        i += 7919;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    });
  }
  change();
  const auto t0 = clock_type::now();
  const auto deadline = t0 + std::chrono::seconds(60);
  applied = false;
  for (;;) {
    try {
      if (seen()) {
        applied = true;
        break;
      }
    } catch (const std::exception&) {
    }
    if (clock_type::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  applied_in = seconds_since(t0);
  // Keep reading a little after, so a reload that finishes late is counted too.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (auto& t : readers) t.join();
  return static_cast<double>(worst_ns.load()) * 1e-9;
}

Figures measure(std::size_t n, const std::string& dir) {
  Figures f;
  const std::string path = dir + "/users.json";
  std::remove((path + ".journal").c_str());  // the last size's
  if (!iwsec::detail::write_file_atomically(path, iwsec::JsonFileUserStore::serialize(make_users(n)))) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }

  auto t0 = clock_type::now();
  double c0 = thread_cpu_seconds();
  iwsec::JsonFileUserStore live(path);
  f.load = seconds_since(t0);
  f.load_cpu = thread_cpu_seconds() - c0;

  const std::string target = email_of(n / 2);
  t0 = clock_type::now();
  c0 = thread_cpu_seconds();
  {
    iwsec::JsonFileUserStore admin(path);
    if (admin.update_user(target, [](iwsec::User& u) { u.disabled = true; }) != iwsec::StoreStatus::ok) {
      std::fprintf(stderr, "disable failed\n");
      std::exit(1);
    }
  }
  f.admin = seconds_since(t0);
  f.admin_cpu = thread_cpu_seconds() - c0;

  // Readers on the live store while it notices the admin's change (made
  // above: the journal line is already there). The longest single call is
  // what a request was held up.
  f.hold = worst_hold(
      live, n, [] {}, [&] { return live.status_of(target)->disabled; }, f.reload_seen, f.applied);

  // And while another store compacts (users.json rewritten whole).
  const auto loads_before = live.read_counts().snapshot_loads;
  double compact_seen = 0;
  bool compacted = false;
  f.compact_hold = worst_hold(
      live, n,
      [&] {
        iwsec::JsonFileUserStore admin(path);
        if (admin.update_user(target, [](iwsec::User& u) { u.disabled = false; }) != iwsec::StoreStatus::ok ||
            admin.compact() != iwsec::StoreStatus::ok) {
          std::fprintf(stderr, "compaction failed\n");
          std::exit(1);
        }
      },
      [&] { return !live.status_of(target)->disabled; }, compact_seen, compacted);
  f.compaction_followed = compacted && live.read_counts().snapshot_loads == loads_before;

  t0 = clock_type::now();
  c0 = thread_cpu_seconds();
  const auto rotated = iwsec::rotate_refresh_token(live, email_of(1));
  f.rotation = seconds_since(t0);
  f.rotation_cpu = thread_cpu_seconds() - c0;
  if (rotated.status != iwsec::StoreStatus::ok) {
    std::fprintf(stderr, "rotation failed\n");
    std::exit(1);
  }
  return f;
}

const char* verdict(double value, double limit) { return value < limit ? "PASS" : "MISS"; }

}  // namespace

int main(int argc, char** argv) {
  std::size_t max_users = 100000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max") == 0 && i + 1 < argc) {
      max_users = static_cast<std::size_t>(std::strtoull(argv[++i], nullptr, 10));
    } else {
      std::fprintf(stderr, "usage: iwsec-bench-users [--max N]\n");
      return 2;
    }
  }
  char tmpl[] = "/tmp/iwsec-bench-users-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  std::printf("wall seconds (CPU seconds of the thread in brackets; on a shared machine the wall clock also\n"
              "counts other processes' time)\n");
  std::printf("%8s %16s %16s %16s %10s %12s %16s\n", "users", "load", "admin command", "rotation", "hold ms",
              "applied in s", "compact hold ms");
  for (std::size_t n = 1000; n <= max_users; n *= 10) {
    const Figures f = measure(n, dir);
    std::printf("%8zu %7.3f (%6.3f) %7.3f (%6.3f) %7.3f (%6.3f) %10.1f %12.3f %16.1f%s%s\n", n, f.load, f.load_cpu,
                f.admin, f.admin_cpu, f.rotation, f.rotation_cpu, f.hold * 1e3, f.reload_seen, f.compact_hold * 1e3,
                f.applied ? "" : "  (never applied)",
                f.compaction_followed ? "" : "  (users.json read in full after the compaction)");
    std::fflush(stdout);
    if (n == 100000)
      std::printf("targets at 10^5: load %s, admin %s, rotation %s, hold %s (<= 20 ms: %s), compact hold %s\n",
                  verdict(f.load, 2.0), verdict(f.admin, 2.0), verdict(f.rotation, 1.0), verdict(f.hold, 0.1),
                  verdict(f.hold, 0.0200001), verdict(f.compact_hold, 0.0200001));
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return 0;
}
