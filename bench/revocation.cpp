// iwsec-bench-revocation: what revocation at scale costs (issue 5, target 4).
//
//   1. memory: the process's resident size (VmRSS, /proc/self/status) before
//      and after revoking 10^6 tokens in a MemoryRevocationStore;
//   2. verification + revocation lookup (what every access-token check does)
//      with 0, 10^4 and 10^6 revoked tokens, and the ratio to 0;
//   3. restart: a JournalRevocationStore replaying a journal of 10^6 live
//      entries (kept as it is), and of 10^6 live + 10^5 expired entries (then
//      compacted), written in a temporary directory.
//
// Targets: ratio <= 1.2 at 10^6, growth <= 64 MB, replay <= 2 s. Prints the
// figures and PASS/MISS; never fails on a timing. `--quick` (CI smoke) uses
// 10^5 instead of 10^6 and shorter runs, and judges nothing.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <time.h>

#include <iwsec/iwsec.hpp>

#include "timing.hpp"

namespace {

using bench::clock_type;
using bench::seconds_since;
using bench::thread_cpu_seconds;

// VmRSS / VmHWM of this process in kB.
long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  return -1;
}

// Fast distinct-enough UUID v4 texts (splitmix64), so filling a store with a
// million entries measures the store, not the random number generator.
class uuid_source {
 public:
  explicit uuid_source(std::uint64_t seed) : state_(seed) {}
  std::string next() {
    std::string out;
    next_into(out);
    return out;
  }
  void next_into(std::string& out) {
    out.clear();
    const std::uint64_t hi = (mix() & ~0xF000ULL) | 0x4000ULL;
    const std::uint64_t lo = (mix() & ~(3ULL << 62)) | (2ULL << 62);
    iwsec::detail::append_uuid_key(out, hi, lo);
  }

 private:
  std::uint64_t mix() {
    std::uint64_t x = (state_ += 0x9E3779B97F4A7C15ULL);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
  }
  std::uint64_t state_;
};

const char* verdict(bool pass) { return pass ? "PASS" : "MISS"; }

struct Settings {
  bool quick = false;
  std::size_t large = 1000000;
  double seconds_per_figure = 1.0;
};

// ---- 1. memory ------------------------------------------------------------------

void memory_figure(const Settings& s, const std::int64_t now) {
  const long rss_before = status_kb("VmRSS");
  const long hwm_before = status_kb("VmHWM");
  const auto t0 = clock_type::now();
  const double c0 = thread_cpu_seconds();
  {
    iwsec::MemoryRevocationStore store([now] { return now; });
    uuid_source ids(1);
    std::string jti;
    for (std::size_t i = 0; i < s.large; ++i) {
      ids.next_into(jti);
      store.revoke(jti, now + 900);
    }
    const double fill = seconds_since(t0);
    const double fill_cpu = thread_cpu_seconds() - c0;
    const long rss_after = status_kb("VmRSS");
    const long hwm_after = status_kb("VmHWM");
    const double grown_mb = static_cast<double>(rss_after - rss_before) / 1024.0;
    std::printf("memory: %zu revocations in a MemoryRevocationStore (%zu held), filled in %.2f s (%.2f s CPU)\n",
                s.large, store.size(), fill, fill_cpu);
    std::printf("  VmRSS %ld kB -> %ld kB: grew %.1f MB (%.1f bytes per entry)", rss_before, rss_after, grown_mb,
                static_cast<double>(rss_after - rss_before) * 1024.0 / static_cast<double>(s.large));
    if (s.quick)
      std::printf("\n");
    else
      std::printf("  target <= 64 MB: %s\n", verdict(grown_mb <= 64.0));
    std::printf("  VmHWM %ld kB -> %ld kB: peak grew %.1f MB (old and new table side by side while growing)\n",
                hwm_before, hwm_after, static_cast<double>(hwm_after - hwm_before) / 1024.0);
  }
}

// ---- 2. verification + lookup ---------------------------------------------------

struct Costs {
  double verify = 0;          // Signer::verify alone
  double verify_lookup = 0;   // verify + is_revoked(the token's own jti): what a check does
  double cold_lookup = 0;     // is_revoked of a jti never seen (a random slot of a large table)
  double verify_cold = 0;     // verify + that cold lookup: the worst case of a check
  double hit_lookup = 0;      // is_revoked of a revoked jti, picked at random
};

// The fastest of three runs of about @p seconds of this thread's CPU time
// each, in CPU ns per call.
template <typename F>
double ns_per_op(double seconds, F&& op) {
  double best = 1e300;
  for (int run = 0; run < 3; ++run) {
    std::size_t iterations = 0;
    const double t0 = thread_cpu_seconds();
    double elapsed = 0;
    do {
      for (int i = 0; i < 256; ++i) op();
      iterations += 256;
      elapsed = thread_cpu_seconds() - t0;
    } while (elapsed < seconds / 3);
    best = std::min(best, elapsed * 1e9 / static_cast<double>(iterations));
  }
  return best;
}

Costs measure(const Settings& s, std::size_t entries, const std::vector<std::string>& tokens,
              const iwsec::Signer& signer, std::int64_t now) {
  iwsec::MemoryRevocationStore store([now] { return now; });
  uuid_source revoked_ids(2);
  std::vector<std::string> some_revoked;
  std::string jti;
  for (std::size_t i = 0; i < entries; ++i) {
    revoked_ids.next_into(jti);
    store.revoke(jti, now + 900);
    if (some_revoked.size() < 4096 && i % std::max<std::size_t>(1, entries / 4096) == 0) some_revoked.push_back(jti);
  }
  volatile std::size_t sink = 0;
  std::size_t t = 0;
  Costs c;
  c.verify = ns_per_op(s.seconds_per_figure, [&] {
    const auto r = signer.verify(tokens[t++ % tokens.size()], now);
    sink = sink + r.ok();
  });
  c.verify_lookup = ns_per_op(s.seconds_per_figure, [&] {
    const auto r = signer.verify(tokens[t++ % tokens.size()], now);
    sink = sink + (r.ok() && !store.is_revoked(r.token().jti()));
  });
  uuid_source fresh(3);
  std::string probe;
  c.cold_lookup = ns_per_op(s.seconds_per_figure, [&] {
    fresh.next_into(probe);
    sink = sink + store.is_revoked(probe);
  });
  c.verify_cold = ns_per_op(s.seconds_per_figure, [&] {
    const auto r = signer.verify(tokens[t++ % tokens.size()], now);
    fresh.next_into(probe);
    sink = sink + (r.ok() && !store.is_revoked(probe));
  });
  if (!some_revoked.empty()) {
    std::size_t k = 0;
    c.hit_lookup = ns_per_op(s.seconds_per_figure, [&] {
      k = (k + 2654435761u) % some_revoked.size();
      sink = sink + store.is_revoked(some_revoked[k]);
    });
  }
  return c;
}

void lookup_figures(const Settings& s, std::int64_t now) {
  const iwsec::Signer signer(iwsec::Signer::generate_secret());
  std::vector<std::string> tokens;
  for (int i = 0; i < 1024; ++i) {
    iwsec::AccessClaims claims;
    claims.email = "user" + std::to_string(i) + "@example.com";
    claims.issued_at = now - 10;
    claims.expires_at = now + 900;
    claims.refresh_generation = 3;
    tokens.push_back(signer.sign(claims));
  }
  const std::vector<std::size_t> sizes = {0, 10000, s.large};
  std::vector<Costs> costs;
  for (std::size_t n : sizes) costs.push_back(measure(s, n, tokens, signer, now));

  std::printf("\nverification + revocation lookup, CPU ns per call (fastest of 3 runs; %zu distinct tokens):\n",
              tokens.size());
  std::printf("  %-10s %9s %14s %12s %14s %11s %9s %9s\n", "revoked", "verify", "verify+lookup", "cold lookup",
              "verify+cold", "hit lookup", "ratio", "ratio");
  std::printf("  %-10s %9s %14s %12s %14s %11s %9s %9s\n", "", "", "(own jti)", "(absent)", "(worst)", "", "own/0",
              "worst/0");
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const Costs& c = costs[i];
    std::printf("  %-10zu %9.0f %14.0f %12.1f %14.0f %11.1f %9.3f %9.3f\n", sizes[i], c.verify, c.verify_lookup,
                c.cold_lookup, c.verify_cold, c.hit_lookup, c.verify_lookup / costs[0].verify_lookup,
                c.verify_cold / costs[0].verify_cold);
  }
  const double worst = costs.back().verify_cold / costs[0].verify_cold;
  const double own = costs.back().verify_lookup / costs[0].verify_lookup;
  // The store does not change what verify costs, so the steadiest estimate
  // adds each size's cold lookup to the same verify figure (the one at 0).
  const double derived =
      (costs[0].verify + costs.back().cold_lookup) / (costs[0].verify + costs[0].cold_lookup);
  std::printf("  at %zu: measured ratios %.3f (own jti) and %.3f (never-seen jti); derived from the lookups alone:\n"
              "  (verify + cold lookup at %zu) / (verify + cold lookup at 0) = (%.0f + %.1f) / (%.0f + %.1f) = %.3f\n",
              s.large, own, worst, s.large, costs[0].verify, costs.back().cold_lookup, costs[0].verify,
              costs[0].cold_lookup, derived);
  if (s.quick) {
    std::printf("  (--quick: %zu instead of 10^6 entries; no verdict)\n", s.large);
  } else {
    std::printf("  target <= 1.2: measured %s, derived %s\n", verdict(std::max(own, worst) <= 1.2),
                verdict(derived <= 1.2));
  }
}

// ---- 3. restart -----------------------------------------------------------------

double replay_seconds(const std::string& path, std::int64_t now, std::size_t& held, double& cpu) {
  const auto t0 = clock_type::now();
  const double c0 = thread_cpu_seconds();
  iwsec::JournalRevocationStore store(path, [now] { return now; });
  cpu = thread_cpu_seconds() - c0;
  const double s = seconds_since(t0);
  held = store.size();
  return s;
}

void replay_figures(const Settings& s, std::int64_t now) {
  std::string base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  std::string dir_template = base + "/iwsec-bench-revocation.XXXXXX";
  if (!::mkdtemp(&dir_template[0])) {
    std::printf("\nreplay: cannot make a temporary directory under %s; skipped\n", base.c_str());
    return;
  }
  const std::string dir = dir_template;
  const std::string path = dir + "/revocations.journal";
  const auto write_journal = [&](std::size_t live, std::size_t expired) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    uuid_source ids(4);
    std::string line;
    for (std::size_t i = 0; i < live + expired; ++i) {
      ids.next_into(line);
      // Expired lines are spread through the file, as a long-running server leaves them.
      const bool dead = expired && i % ((live + expired) / expired) == 0;
      line += ' ';
      line += std::to_string(dead ? now - 60 : now + 60 + static_cast<std::int64_t>(i % 900));
      line += '\n';
      out << line;
    }
    out.flush();
    return static_cast<bool>(out);
  };

  std::printf("\nrestart: JournalRevocationStore constructor on a journal in %s\n", dir.c_str());
  std::size_t held = 0;
  if (write_journal(s.large, 0)) {
    const auto bytes = std::filesystem::file_size(path);
    double cpu = 0;
    const double t = replay_seconds(path, now, held, cpu);
    std::printf("  %zu live entries (%.1f MB), replayed and kept as is: %.3f s (%.3f s CPU), %zu held", s.large,
                static_cast<double>(bytes) / 1048576.0, t, cpu, held);
    if (s.quick)
      std::printf("\n");
    else
      std::printf("  target <= 2 s: %s\n", verdict(t <= 2.0));
  }
  if (write_journal(s.large, s.large / 10)) {
    const auto bytes = std::filesystem::file_size(path);
    double cpu = 0;
    const double t = replay_seconds(path, now, held, cpu);
    std::printf("  %zu live + %zu expired entries (%.1f MB), replayed and compacted (written, fsynced, renamed): "
                "%.3f s (%.3f s CPU), %zu held",
                s.large, s.large / 10, static_cast<double>(bytes) / 1048576.0, t, cpu, held);
    if (s.quick)
      std::printf("\n");
    else
      std::printf("  target <= 2 s: %s\n", verdict(t <= 2.0));
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--quick") {
      s.quick = true;
      s.large = 100000;
      s.seconds_per_figure = 0.15;
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: iwsec-bench-revocation [--quick]\n"
          "Revocation at scale: memory for 10^6 revocations, verification + lookup cost at\n"
          "0 / 10^4 / 10^6 revoked tokens, journal replay time. --quick: 10^5, short runs.\n");
      return 0;
    } else {
      std::fprintf(stderr, "iwsec-bench-revocation: unknown argument '%s' (try --help)\n", argv[i]);
      return 2;
    }
  }
  const std::int64_t now = iwsec::system_now();
  std::printf("iwsec-bench-revocation%s (iwsec %s)\n", s.quick ? " --quick" : "", IWSEC_VERSION_STRING);
  memory_figure(s, now);  // first, while the heap is still small
  lookup_figures(s, now);
  replay_figures(s, now);
  return 0;
}
