// iwsec-bench-login-storm: token validations during a login storm
// (docs/edge.md). An in-process server with the security routes,
// hardened as iwsec::harden() sets it, a user whose hash has the default
// 600 000 rounds; --connections keep-alive clients send wrong passwords as
// fast as they are answered while one client validates a token in a loop.
// Prints the validation latency (p50, p99, max), validations per second and
// what the logins got (406, 503). `--no-gate` lifts the hashing gate (one
// hash per connection at once) to show what it buys. Never fails on a figure.
//
// usage: iwsec-bench-login-storm [--connections 64] [--seconds 10] [--no-gate]

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

int main(int argc, char** argv) {
  int connections = 64;
  int seconds = 10;
  bool gate = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--connections" && i + 1 < argc) {
      connections = std::atoi(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atoi(argv[++i]);
    } else if (a == "--no-gate") {
      gate = false;
    } else {
      std::fprintf(stderr, "usage: iwsec-bench-login-storm [--connections N] [--seconds N] [--no-gate]\n");
      return 2;
    }
  }
  if (connections < 1 || seconds < 1) return 2;

  iwsec::MemoryUserStore users;
  iwsec::User u;
  u.user_id = iwsec::generate_user_id();
  u.email = "storm@example.com";
  u.password_hash = iwsec::hash_password("the right one");
  u.refresh_token_sha256 = iwsec::refresh_token_hash(iwsec::generate_refresh_token());
  if (users.add_user(u) != iwsec::StoreStatus::ok) return 1;
  const iwsec::Signer signer(iwsec::Signer::generate_secret());
  iwsec::Options options;
  options.lockout.enabled = false;  // the storm measures hashing, not the lockout
  if (!gate) {
    options.max_concurrent_hashes = static_cast<std::size_t>(connections);
    options.max_queued_hashes = 0;
  }
  httplib::Server server;
  iwsec::HardeningOptions hardening;
  hardening.threads = static_cast<std::size_t>(connections) + 16;
  iwsec::harden(server, hardening);
  iwsec::mount_security_routes(server, users, signer, options);
  const int port = server.bind_to_any_port("127.0.0.1");
  if (port <= 0) return 1;
  std::thread serving([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::yield();

  const auto client = [port] {
    httplib::Client c("127.0.0.1", port);
    c.set_keep_alive(true);
    c.set_read_timeout(60);
    return c;
  };
  std::string token;
  {
    auto c = client();
    auto r = c.Get("/v3/security/authenticate",
                   {{"Authorization", "Basic " + iwsec::base64_encode("storm@example.com:the right one")}});
    if (!r || r->status != 200) return 1;
    const auto at = r->body.find("\"authentication_token\":\"") + 24;
    token = r->body.substr(at, r->body.find('"', at) - at);
  }

  std::atomic<bool> stop{false};
  std::atomic<long> rejected{0}, unavailable{0}, failed{0};
  std::vector<std::thread> storm;
  for (int i = 0; i < connections; ++i) {
    storm.emplace_back([&, i] {
      auto c = client();
      const httplib::Headers h{
          {"Authorization", "Basic " + iwsec::base64_encode("storm@example.com:wrong " + std::to_string(i))}};
      while (!stop) {
        auto r = c.Get("/v3/security/authenticate", h);
        if (!r) {
          ++failed;
        } else if (r->status == 406) {
          ++rejected;
        } else if (r->status == 503) {
          ++unavailable;
        } else {
          ++failed;
        }
      }
    });
  }

  std::vector<double> latencies_ms;
  {
    auto c = client();
    const httplib::Headers h{{"Authorization", "Bearer " + token}};
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = c.Get("/v3/security/token/validate", h);
      const auto t1 = std::chrono::steady_clock::now();
      if (!r || r->status != 200 || r->body.find("true") == std::string::npos) {
        std::fprintf(stderr, "validation failed\n");
        break;
      }
      latencies_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  stop = true;
  for (auto& t : storm) t.join();
  server.stop();
  serving.join();

  std::sort(latencies_ms.begin(), latencies_ms.end());
  const auto pct = [&](double p) {
    if (latencies_ms.empty()) return 0.0;
    return latencies_ms[std::min(latencies_ms.size() - 1, static_cast<std::size_t>(p * static_cast<double>(latencies_ms.size())))];
  };
  std::printf("login storm: %d connections, %d s, hashing gate %s (%u cores)\n", connections, seconds,
              gate ? "on" : "off", std::thread::hardware_concurrency());
  std::printf("  validations: %zu (%.0f/s)  p50 %.2f ms  p99 %.2f ms  max %.2f ms  (target p99 < 50 ms)\n",
              latencies_ms.size(), static_cast<double>(latencies_ms.size()) / seconds, pct(0.50), pct(0.99),
              latencies_ms.empty() ? 0.0 : latencies_ms.back());
  std::printf("  logins: %ld answered 406, %ld answered 503, %ld other\n", rejected.load(), unavailable.load(),
              failed.load());
  return 0;
}
