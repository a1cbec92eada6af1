// iwsec-bench-password-rounds: does the time of a wrong password tell
// existing accounts from unknown emails? (docs/api.md.) An in-process
// server with the security routes at the configured rounds (600 000 by
// default), a user whose stored hash has passlib's default of 29 000 rounds,
// one with the configured rounds; one keep-alive client sends wrong passwords
// for each and for unknown emails, interleaved, and prints the median time of
// each and its ratio to the unknown email's (1.00: no oracle). Then the
// cheaper user logs in once (its hash is stored again with the configured
// rounds) and the next wrong password is timed again. Never fails on a figure.
//
// usage: iwsec-bench-password-rounds [--rounds 600000] [--stored-rounds 29000] [--requests 15]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

#include "timing.hpp"

namespace {

std::string basic(const std::string& email, const std::string& password) {
  return "Basic " + iwsec::base64_encode(email + ":" + password);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t rounds = iwsec::default_pbkdf2_rounds;
  std::uint32_t stored_rounds = 29000;
  int requests = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) {
      rounds = static_cast<std::uint32_t>(std::atol(argv[++i]));
    } else if (a == "--stored-rounds" && i + 1 < argc) {
      stored_rounds = static_cast<std::uint32_t>(std::atol(argv[++i]));
    } else if (a == "--requests" && i + 1 < argc) {
      requests = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: iwsec-bench-password-rounds [--rounds N] [--stored-rounds N] [--requests N]\n");
      return 2;
    }
  }
  if (rounds < 1 || stored_rounds < 1 || requests < 1) return 2;

  iwsec::MemoryUserStore users;
  const auto add = [&](const std::string& email, std::uint32_t r) {
    iwsec::User u;
    u.user_id = iwsec::generate_user_id();
    u.email = email;
    u.password_hash = iwsec::hash_password("the right one", r);
    u.refresh_token_sha256 = iwsec::refresh_token_hash(iwsec::generate_refresh_token());
    return users.add_user(u) == iwsec::StoreStatus::ok;
  };
  if (!add("cheap@example.com", stored_rounds) || !add("current@example.com", rounds)) return 1;
  const iwsec::Signer signer(iwsec::Signer::generate_secret());
  iwsec::Options options;
  options.password_rounds = rounds;
  options.lockout.enabled = false;  // many wrong passwords in a row, on purpose
  httplib::Server server;
  iwsec::mount_security_routes(server, users, signer, options);
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::yield();
  httplib::Client client("127.0.0.1", port);
  client.set_keep_alive(true);
  client.set_read_timeout(60, 0);

  const auto timed = [&](const std::string& email, const std::string& password) {
    const auto t0 = bench::clock_type::now();
    const auto r = client.Get("/v3/security/authenticate", httplib::Headers{{"Authorization", basic(email, password)}});
    const double s = bench::seconds_since(t0);
    if (!r) std::fprintf(stderr, "request failed\n");
    return s;
  };
  const auto measure = [&](const char* title) {
    std::vector<double> unknown, cheap, current;
    timed("warm-up@example.com", "x");
    for (int i = 0; i < requests; ++i) {
      unknown.push_back(timed("nobody" + std::to_string(i) + "@example.com", "wrong"));
      cheap.push_back(timed("cheap@example.com", "wrong"));
      current.push_back(timed("current@example.com", "wrong"));
    }
    const double base = median(unknown);
    std::printf("%s\n", title);
    std::printf("  %-44s %8.1f ms  ratio 1.00\n", "unknown email (decoy, configured rounds)", base * 1e3);
    std::printf("  %-44s %8.1f ms  ratio %.2f\n", "user with a cheaper stored hash", median(cheap) * 1e3,
                median(cheap) / base);
    std::printf("  %-44s %8.1f ms  ratio %.2f\n", "user with the configured rounds", median(current) * 1e3,
                median(current) / base);
  };
  std::printf("wrong passwords, configured %u rounds, cheaper hash %u rounds, median of %d each\n", rounds,
              stored_rounds, requests);
  measure("before the cheaper user's next login:");
  const auto login = client.Get("/v3/security/authenticate",
                                httplib::Headers{{"Authorization", basic("cheap@example.com", "the right one")}});
  const auto stored = iwsec::Pbkdf2Hash::parse(users.find_by_email("cheap@example.com")->password_hash);
  std::printf("cheaper user logs in: HTTP %d, stored hash now %u rounds\n", login ? login->status : 0,
              stored ? stored->rounds : 0);
  measure("after it:");
  server.stop();
  serving.join();
  return 0;
}
