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
//             process, in effect) changed the file and the live store
//             applied the change.
//
// Targets (SPEC, 2 cores): load and admin < 2 s, rotation < 1 s, hold
// < 100 ms at 10^5 users. Prints the figures and PASS/MISS; never fails on a
// timing. `--max N` stops after the size N (e.g. `--max 10000` for a smoke run).

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
  double load = 0, admin = 0, rotation = 0, hold = 0, reload_seen = 0;
  double load_cpu = 0, admin_cpu = 0, rotation_cpu = 0;
  bool applied = false;
};

Figures measure(std::size_t n, const std::string& dir) {
  Figures f;
  const std::string path = dir + "/users.json";
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

  // Readers on the live store while it notices the admin's change. The
  // longest single call is what a request was held up.
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
  t0 = clock_type::now();
  const auto deadline = t0 + std::chrono::seconds(60);
  for (;;) {
    std::optional<iwsec::UserStatus> st;
    try {
      st = live.status_of(target);
    } catch (const std::exception&) {
    }
    if (st && st->disabled) {
      f.applied = true;
      break;
    }
    if (clock_type::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  f.reload_seen = seconds_since(t0);
  // Keep reading a little after the swap, so a reload that finishes late is counted too.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (auto& t : readers) t.join();
  f.hold = static_cast<double>(worst_ns.load()) * 1e-9;

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
  std::printf("%8s %16s %16s %16s %10s %12s\n", "users", "load", "admin command", "rotation", "hold ms",
              "applied in s");
  for (std::size_t n = 1000; n <= max_users; n *= 10) {
    const Figures f = measure(n, dir);
    std::printf("%8zu %7.3f (%6.3f) %7.3f (%6.3f) %7.3f (%6.3f) %10.1f %12.3f%s\n", n, f.load, f.load_cpu, f.admin,
                f.admin_cpu, f.rotation, f.rotation_cpu, f.hold * 1e3, f.reload_seen,
                f.applied ? "" : "  (never applied)");
    std::fflush(stdout);
    if (n == 100000)
      std::printf("targets at 10^5: load %s, admin %s, rotation %s, hold %s\n", verdict(f.load, 2.0),
                  verdict(f.admin, 2.0), verdict(f.rotation, 1.0), verdict(f.hold, 0.1));
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return 0;
}
