// iwsec-loadtest: a bounded load of validations mixed with logins and
// revocations against a running iwsec server on 127.0.0.1, over N keep-alive
// connections for S seconds. Afterwards every token it revoked is checked
// again: each must be invalid. Prints one JSON summary line; exits 0 only
// with zero errors, zero 5xx answers and no revoked token still valid.
//
//   iwsec-loadtest --port P [--host 127.0.0.1] [--connections 64] [--seconds 60]
//                  [--revoked-jtis FILE] --password PW EMAIL...
//
// Thread i logs in as EMAIL[i % count]. --revoked-jtis writes the `jti` of
// every revoked token, one a line (ids, not credentials), so a test can
// check the revocation journal holds them all.
//
// The password is read from --password because the test users are made for
// this run; it is never printed, nor is any token.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <picojson.h>

#include <iwsec/iwsec.hpp>

namespace {

struct Settings {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 64;
  int seconds = 60;
  std::string password;
  std::vector<std::string> emails;
  std::string revoked_jtis;
};

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr, "iwsec-loadtest: %s\n", message.c_str());
  std::exit(2);
}

Settings parse(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--host") {
      s.host = value();
    } else if (a == "--port") {
      s.port = std::atoi(value().c_str());
    } else if (a == "--connections") {
      s.connections = std::atoi(value().c_str());
    } else if (a == "--seconds") {
      s.seconds = std::atoi(value().c_str());
    } else if (a == "--revoked-jtis") {
      s.revoked_jtis = value();
    } else if (a == "--password") {
      s.password = value();
    } else if (a.rfind("--", 0) == 0) {
      usage("unknown option " + a);
    } else {
      s.emails.push_back(a);
    }
  }
  if (s.port <= 0 || s.port > 65535) usage("--port is required");
  if (s.connections < 1 || s.connections > 1024) usage("--connections must be 1 to 1024");
  if (s.seconds < 1 || s.seconds > 3600) usage("--seconds must be 1 to 3600");  // bounded
  if (s.emails.empty() || s.password.empty()) usage("give --password and at least one EMAIL");
  return s;
}

// What one connection saw.
struct Tally {
  std::map<int, std::uint64_t> statuses;  // -1: no answer (transport error)
  std::uint64_t logins = 0, validations = 0, revocations = 0, errors = 0;
  std::uint64_t revoked_checked = 0, revoked_still_valid = 0;
  std::vector<std::string> revoked;
  std::string first_error;
};

class Connection {
 public:
  Connection(const Settings& s, std::string email, Tally& tally)
      : client_(s.host, s.port), email_(std::move(email)), password_(s.password), tally_(tally) {
    client_.set_keep_alive(true);
    client_.set_connection_timeout(30);
    client_.set_read_timeout(30);
    client_.set_write_timeout(30);
  }

  // One cycle: a login, validations of its token, its revocation, a
  // validation of the revoked token and of a forged one.
  void cycle() {
    const auto login = request("GET", "/v3/security/authenticate",
                               iwsec_basic(email_, password_));
    ++tally_.logins;
    const auto token = string_at(login, {"result", "authentication_token"});
    if (login.status != 200 || !token) return error("login answered " + std::to_string(login.status));
    for (int i = 0; i < 8; ++i) expect_valid(*token, true);
    const auto revoke = request("DELETE", "/v3/security/token/access", "Bearer " + *token);
    ++tally_.revocations;
    if (revoke.status != 200 || string_at(revoke, {"result"}) != std::optional<std::string>("Token successfully blacklisted"))
      return error("revocation answered " + std::to_string(revoke.status));
    tally_.revoked.push_back(*token);
    expect_valid(*token, false);
    std::string forged = *token;
    forged.back() = forged.back() == 'A' ? 'B' : 'A';
    expect_valid(forged, false);
  }

  // After the load: every token this connection revoked is invalid.
  void recheck_revoked() {
    for (const auto& t : tally_.revoked) {
      ++tally_.revoked_checked;
      const auto r = request("GET", "/v3/security/token/validate", "Bearer " + t);
      const auto valid = bool_at(r, {"result", "is_valid"});
      if (r.status != 200 || !valid) {
        error("validate (after the load) answered " + std::to_string(r.status));
      } else if (*valid) {
        ++tally_.revoked_still_valid;
        error("a revoked token is valid after the load");
      }
    }
  }

 private:
  struct Answer {
    int status = -1;
    picojson::value body;
  };

  static std::string iwsec_basic(const std::string& user, const std::string& password) {
    return "Basic " + iwsec::base64_encode(user + ":" + password);
  }

  Answer request(const char* method, const char* path, const std::string& authorization) {
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.headers.emplace("Authorization", authorization);
    Answer a;
    auto res = client_.send(req);
    if (!res) {
      ++tally_.statuses[-1];
      return a;
    }
    a.status = res->status;
    ++tally_.statuses[a.status];
    if (res->get_header_value("Content-Type") != "application/json; charset=utf-8" ||
        !picojson::parse(a.body, res->body).empty())
      error(std::string(method) + " " + path + ": not a JSON answer");
    return a;
  }

  static const picojson::value* at(const Answer& a, std::initializer_list<const char*> path) {
    const picojson::value* v = &a.body;
    for (const char* key : path) {
      if (!v->is<picojson::object>()) return nullptr;
      const auto& o = v->get<picojson::object>();
      auto it = o.find(key);
      if (it == o.end()) return nullptr;
      v = &it->second;
    }
    return v;
  }
  static std::optional<std::string> string_at(const Answer& a, std::initializer_list<const char*> path) {
    const auto* v = at(a, path);
    if (!v || !v->is<std::string>()) return std::nullopt;
    return v->get<std::string>();
  }
  static std::optional<bool> bool_at(const Answer& a, std::initializer_list<const char*> path) {
    const auto* v = at(a, path);
    if (!v || !v->is<bool>()) return std::nullopt;
    return v->get<bool>();
  }

  void expect_valid(const std::string& token, bool expected) {
    ++tally_.validations;
    const auto r = request("GET", "/v3/security/token/validate", "Bearer " + token);
    const auto valid = bool_at(r, {"result", "is_valid"});
    if (r.status != 200 || !valid) return error("validate answered " + std::to_string(r.status));
    if (*valid != expected) error(expected ? "a fresh token was not valid" : "a revoked or forged token was valid");
  }

  void error(const std::string& what) {
    if (tally_.errors++ == 0) tally_.first_error = what;
  }

  httplib::Client client_;
  std::string email_, password_;
  Tally& tally_;
};

}  // namespace

int main(int argc, char** argv) {
  const Settings s = parse(argc, argv);
  std::vector<Tally> tallies(static_cast<std::size_t>(s.connections));
  std::atomic<int> ready{0}, loaded{0};
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + std::chrono::seconds(s.seconds);
  std::chrono::steady_clock::time_point load_end;
  std::mutex end_mutex;

  std::vector<std::thread> threads;
  for (int i = 0; i < s.connections; ++i) {
    threads.emplace_back([&, i] {
      Connection c(s, s.emails[static_cast<std::size_t>(i) % s.emails.size()], tallies[i]);
      ready.fetch_add(1);
      while (ready.load() < s.connections) std::this_thread::yield();
      while (std::chrono::steady_clock::now() < deadline) c.cycle();
      {
        std::lock_guard<std::mutex> lock(end_mutex);
        load_end = std::max(load_end, std::chrono::steady_clock::now());
      }
      // Every connection finished its load before any recheck starts.
      loaded.fetch_add(1);
      while (loaded.load() < s.connections) std::this_thread::yield();
      c.recheck_revoked();
    });
  }
  for (auto& t : threads) t.join();
  const double load_seconds = std::chrono::duration<double>(load_end - started).count();

  Tally total;
  for (const auto& t : tallies) {
    for (const auto& [status, n] : t.statuses) total.statuses[status] += n;
    total.logins += t.logins;
    total.validations += t.validations;
    total.revocations += t.revocations;
    total.errors += t.errors;
    total.revoked_checked += t.revoked_checked;
    total.revoked_still_valid += t.revoked_still_valid;
    if (total.first_error.empty()) total.first_error = t.first_error;
  }
  std::uint64_t requests = 0, server_errors = 0, load_requests = 0;
  for (const auto& [status, n] : total.statuses) {
    requests += n;
    if (status >= 500 || status < 0) server_errors += n;
  }
  load_requests = requests - total.revoked_checked;

  picojson::object by_status;
  for (const auto& [status, n] : total.statuses) by_status[std::to_string(status)] = picojson::value(static_cast<double>(n));
  picojson::object out;
  out["connections"] = picojson::value(static_cast<double>(s.connections));
  out["seconds"] = picojson::value(load_seconds);
  out["requests"] = picojson::value(static_cast<double>(requests));
  out["load_requests_per_second"] = picojson::value(static_cast<double>(load_requests) / load_seconds);
  out["logins"] = picojson::value(static_cast<double>(total.logins));
  out["validations"] = picojson::value(static_cast<double>(total.validations));
  out["revocations"] = picojson::value(static_cast<double>(total.revocations));
  out["revoked_rechecked"] = picojson::value(static_cast<double>(total.revoked_checked));
  out["revoked_still_valid"] = picojson::value(static_cast<double>(total.revoked_still_valid));
  out["errors"] = picojson::value(static_cast<double>(total.errors));
  out["server_errors_or_no_answer"] = picojson::value(static_cast<double>(server_errors));
  out["by_status"] = picojson::value(by_status);
  out["first_error"] = picojson::value(total.first_error);
  if (!s.revoked_jtis.empty()) {
    std::FILE* f = std::fopen(s.revoked_jtis.c_str(), "w");
    if (!f) usage("cannot write " + s.revoked_jtis);
    for (const auto& t : tallies)
      for (const auto& token : t.revoked) {
        const auto d1 = token.find('.'), d2 = token.rfind('.');
        picojson::value payload;
        const auto json = iwsec::base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
        if (!json || !picojson::parse(payload, *json).empty() || !payload.is<picojson::object>()) continue;
        std::fprintf(f, "%s\n", payload.get("jti").to_str().c_str());
      }
    if (std::fclose(f) != 0) usage("cannot write " + s.revoked_jtis);
  }
  std::printf("%s\n", picojson::value(out).serialize().c_str());
  std::fflush(stdout);
  const bool ok = total.errors == 0 && server_errors == 0 && total.revoked_still_valid == 0 && total.revocations > 0 &&
                  total.revoked_checked == total.revocations;
  return ok ? 0 : 1;
}
