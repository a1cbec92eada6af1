#pragma once
/// @file
/// @brief Metrics of the security routes: counters of logins, exchanges,
/// validations, revocations and lockouts, and a latency histogram per
/// route, readable by a host and rendered as Prometheus text (0.0.4).

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "detail/thread_safety.hpp"
#include "errors.hpp"

namespace iwsec {

/// @brief The outcome of a credential check, as counted by Metrics.
enum class CheckResult { success, failure, locked };

/// @brief The routes whose durations Metrics records: the five endpoints,
/// and the guard on the host's own routes (the check only, not the host's
/// handler).
enum class MetricsRoute { authenticate, token_access, token_revoke, token_validate, token_refresh, guard };

/// @brief A short, stable name of a route (the `route` label).
inline const char* to_string(MetricsRoute r) noexcept {
  switch (r) {
    case MetricsRoute::authenticate: return "authenticate";
    case MetricsRoute::token_access: return "token_access";
    case MetricsRoute::token_revoke: return "token_revoke";
    case MetricsRoute::token_validate: return "token_validate";
    case MetricsRoute::token_refresh: return "token_refresh";
    case MetricsRoute::guard: return "guard";
  }
  return "unknown";
}

/// @brief A short, stable name of a result (the `result` label).
inline const char* to_string(CheckResult r) noexcept {
  switch (r) {
    case CheckResult::success: return "success";
    case CheckResult::failure: return "failure";
    case CheckResult::locked: return "locked";
  }
  return "unknown";
}

/// @brief Counters and latency histograms of the security routes.
///
/// Thread-safe and cheap: every update is one or two relaxed atomic
/// additions, no lock (the figures are statistics, not a synchronisation
/// point; a reader may see one counter a request ahead of another). Pass one
/// in Options::metrics (or read SecurityRoutes::metrics()) and serve
/// render() on the host's own metrics route. Gauges that other parts own
/// (cluster lag, ...) are added with add_gauge() and read when rendered.
///
/// Counted: `iwsec_logins_total{result}` password checks (authenticate and
/// token/refresh DELETE): success, failure (wrong or unknown credentials),
/// locked (refused with 429 before any check);
/// `iwsec_token_exchanges_total{result}` refresh-token exchanges
/// (token/access GET), same results; `iwsec_validations_total{result}`
/// token/validate answers, valid or invalid; `iwsec_guard_checks_total{result}`
/// the guard's checks, valid or invalid; `iwsec_revocations_total` access
/// tokens revoked (token/access DELETE answered 200);
/// `iwsec_lockouts_total` accounts locked and clients blocked (each time a
/// lock starts; lockouts(bool) tells them apart); `iwsec_request_duration_seconds{route}` how long the
/// library spent answering, by route. Requests refused before a credential
/// check (400, 401) count in the histogram only.
class Metrics {
 public:
  /// @brief Upper bounds of the histogram buckets, in seconds (a validation
  /// takes microseconds, a login with 600 000 PBKDF2 rounds a few hundred
  /// milliseconds).
  static constexpr std::array<double, 16> bucket_bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                           1.0,    2.5,     5.0,    10.0};
  /// @brief bucket_bounds as the `le` labels show them.
  static constexpr std::array<const char*, 16> bucket_labels = {"0.0001", "0.00025", "0.0005", "0.001",
                                                                "0.0025", "0.005",   "0.01",   "0.025",
                                                                "0.05",   "0.1",     "0.25",   "0.5",
                                                                "1",      "2.5",     "5",      "10"};
  static constexpr std::size_t route_count = 6;

  /// @brief The `Content-Type` of render()'s text.
  static constexpr const char* content_type = "text/plain; version=0.0.4; charset=utf-8";

  Metrics() = default;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // ---- updates (called by the routes) --------------------------------------

  void count_login(CheckResult r) noexcept { bump(logins_[index(r)]); }
  void count_exchange(CheckResult r) noexcept { bump(exchanges_[index(r)]); }
  void count_validation(bool valid) noexcept { bump(validations_[valid ? 0 : 1]); }
  void count_guard_check(bool valid) noexcept { bump(guard_checks_[valid ? 0 : 1]); }
  void count_revocation() noexcept { bump(revocations_); }
  /// @brief An account got locked (@p account) or a client blocked.
  void count_lockout(bool account) noexcept { bump(lockouts_[account ? 0 : 1]); }

  /// @brief Records one request of @p route that took @p elapsed.
  void observe(MetricsRoute route, std::chrono::nanoseconds elapsed) noexcept {
    histogram& h = histograms_[static_cast<std::size_t>(route)];
    const std::int64_t ns = elapsed.count() < 0 ? 0 : static_cast<std::int64_t>(elapsed.count());
    std::size_t b = 0;
    while (b < bucket_bounds.size() && static_cast<double>(ns) > bucket_bounds[b] * 1e9) ++b;
    bump(h.buckets[b]);  // the last slot is +Inf
    add(h.sum_ns, static_cast<std::uint64_t>(ns));
  }

  // ---- reading -------------------------------------------------------------

  std::uint64_t logins(CheckResult r) const noexcept { return read(logins_[index(r)]); }
  std::uint64_t exchanges(CheckResult r) const noexcept { return read(exchanges_[index(r)]); }
  std::uint64_t validations(bool valid) const noexcept { return read(validations_[valid ? 0 : 1]); }
  std::uint64_t guard_checks(bool valid) const noexcept { return read(guard_checks_[valid ? 0 : 1]); }
  std::uint64_t revocations() const noexcept { return read(revocations_); }
  std::uint64_t lockouts(bool account) const noexcept { return read(lockouts_[account ? 0 : 1]); }

  /// @brief One route's histogram: cumulative counts per bucket_bounds entry
  /// plus a last one for +Inf (= count), and the sum of the durations.
  struct HistogramSnapshot {
    std::array<std::uint64_t, bucket_bounds.size() + 1> cumulative{};
    double sum_seconds = 0;
    std::uint64_t count() const noexcept { return cumulative.back(); }
  };
  HistogramSnapshot histogram_of(MetricsRoute route) const noexcept {
    const histogram& h = histograms_[static_cast<std::size_t>(route)];
    HistogramSnapshot s;
    std::uint64_t running = 0;
    for (std::size_t b = 0; b < s.cumulative.size(); ++b) s.cumulative[b] = running += read(h.buckets[b]);
    s.sum_seconds = static_cast<double>(read(h.sum_ns)) / 1e9;
    return s;
  }

  // ---- gauges owned elsewhere ----------------------------------------------

  /// @brief Adds a gauge read by @p read at every render() (e.g. cluster
  /// mode's `iwsec_cluster_lag_seconds`). @p name must be a valid metric
  /// name not used yet, @p help one line; @p read must be thread-safe and
  /// quick, and may return NaN for "unknown". Throws std::invalid_argument
  /// for a bad or taken name.
  void add_gauge(std::string name, std::string help, std::function<double()> read) {
    add_read_metric("add_gauge", "gauge", std::move(name), std::move(help), std::move(read));
  }

  /// @brief Adds a counter read by @p read at every render() (e.g.
  /// iwsec-server's `iwsec_access_log_dropped_lines_total`): as add_gauge(),
  /// and @p name must end in `_total`; @p read must never go down.
  void add_counter(std::string name, std::string help, std::function<double()> read) {
    if (name.size() < 6 || name.compare(name.size() - 6, 6, "_total") != 0)
      throw invalid_option("iwsec: Metrics::add_counter: '" + name + "' does not end in _total");
    add_read_metric("add_counter", "counter", std::move(name), std::move(help), std::move(read));
  }

  /// @brief Every metric in the Prometheus text exposition format 0.0.4
  /// (`# HELP`, `# TYPE`, histograms as `_bucket{le}`, `_sum`, `_count`).
  /// Every label combination is present from the start, at 0.
  std::string render() const {
    std::string out;
    out.reserve(4096);
    family(out, "iwsec_logins_total", "counter", "Password logins (authenticate, token/refresh) by result.");
    for (CheckResult r : {CheckResult::success, CheckResult::failure, CheckResult::locked})
      sample(out, "iwsec_logins_total", "result", to_string(r), logins(r));
    family(out, "iwsec_token_exchanges_total", "counter", "Refresh-token exchanges (token/access GET) by result.");
    for (CheckResult r : {CheckResult::success, CheckResult::failure, CheckResult::locked})
      sample(out, "iwsec_token_exchanges_total", "result", to_string(r), exchanges(r));
    family(out, "iwsec_validations_total", "counter", "Answers of token/validate by result.");
    sample(out, "iwsec_validations_total", "result", "valid", validations(true));
    sample(out, "iwsec_validations_total", "result", "invalid", validations(false));
    family(out, "iwsec_guard_checks_total", "counter", "Access-token checks of the guard on host routes by result.");
    sample(out, "iwsec_guard_checks_total", "result", "valid", guard_checks(true));
    sample(out, "iwsec_guard_checks_total", "result", "invalid", guard_checks(false));
    family(out, "iwsec_revocations_total", "counter", "Access tokens revoked (token/access DELETE answered 200).");
    sample(out, "iwsec_revocations_total", nullptr, nullptr, revocations());
    family(out, "iwsec_lockouts_total", "counter", "Locks started: accounts locked and clients blocked.");
    sample(out, "iwsec_lockouts_total", nullptr, nullptr, lockouts(true) + lockouts(false));
    family(out, "iwsec_request_duration_seconds", "histogram", "Time the security routes spent answering, by route.");
    for (std::size_t r = 0; r < route_count; ++r) {
      const char* route = to_string(static_cast<MetricsRoute>(r));
      const HistogramSnapshot s = histogram_of(static_cast<MetricsRoute>(r));
      for (std::size_t b = 0; b < s.cumulative.size(); ++b) {
        out += "iwsec_request_duration_seconds_bucket{route=\"";
        out += route;
        out += "\",le=\"";
        out += b < bucket_labels.size() ? bucket_labels[b] : "+Inf";
        out += "\"} " + std::to_string(s.cumulative[b]) + '\n';
      }
      out += "iwsec_request_duration_seconds_sum{route=\"" + std::string(route) + "\"} " + number(s.sum_seconds) + '\n';
      out += "iwsec_request_duration_seconds_count{route=\"" + std::string(route) + "\"} " +
             std::to_string(s.count()) + '\n';
    }
    detail::Lock lock(gauges_mutex_);
    for (const auto& g : gauges_) {
      family(out, g.name.c_str(), g.type, g.help.c_str());
      out += g.name + ' ' + number(g.read()) + '\n';
    }
    return out;
  }

 private:
  static constexpr const char* own_names[] = {
      "iwsec_logins_total",      "iwsec_token_exchanges_total", "iwsec_validations_total",
      "iwsec_guard_checks_total", "iwsec_revocations_total",     "iwsec_lockouts_total",
      "iwsec_request_duration_seconds"};

  // A counter in stripes, each on its own cache line, a thread adding to
  // its own stripe (threads take them in turn): threads on different cores
  // do not bounce one line between them for every request, not even for
  // the same counter. A read adds the stripes up.
  static constexpr std::size_t stripes = 8;
  struct counter {
    struct alignas(64) stripe {
      std::atomic<std::uint64_t> value{0};
    };
    std::array<stripe, stripes> stripe_of;
  };
  struct histogram {
    std::array<counter, bucket_bounds.size() + 1> buckets;
    counter sum_ns;
  };
  struct gauge {
    std::string name, help;
    std::function<double()> read;
    const char* type;  // "gauge" or "counter"
  };

  void add_read_metric(const char* what, const char* type, std::string name, std::string help,
                       std::function<double()> read) {
    const std::string where = std::string("iwsec: Metrics::") + what + ": ";
    if (!valid_name(name) || name.rfind("iwsec_", 0) != 0 || !read)
      throw invalid_option(where + "'" + name + "' is not an iwsec_ metric name");
    for (char c : help)
      if (c == '\n' || c == '\\') throw invalid_option(where + "help must be one plain line");
    detail::Lock lock(gauges_mutex_);
    for (const auto& g : gauges_)
      if (g.name == name) throw invalid_option(where + "'" + name + "' already added");
    for (const char* own : own_names)
      if (name == own) throw invalid_option(where + "'" + name + "' already added");
    gauges_.push_back(gauge{std::move(name), std::move(help), std::move(read), type});
  }

  static std::size_t index(CheckResult r) noexcept { return static_cast<std::size_t>(r); }
  static std::size_t my_stripe() noexcept {
    static std::atomic<std::size_t> next{0};
    static thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed) % stripes;
    return mine;
  }
  static void add(counter& c, std::uint64_t n) noexcept {
    c.stripe_of[my_stripe()].value.fetch_add(n, std::memory_order_relaxed);
  }
  static void bump(counter& c) noexcept { add(c, 1); }
  static std::uint64_t read(const counter& c) noexcept {
    std::uint64_t total = 0;
    for (const auto& s : c.stripe_of) total += s.value.load(std::memory_order_relaxed);
    return total;
  }

  static bool valid_name(const std::string& n) {
    if (n.empty() || n.size() > 200) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
      const char c = n[i];
      const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
      if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
  }

  static void family(std::string& out, const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  }

  static void sample(std::string& out, const char* name, const char* label, const char* value, std::uint64_t n) {
    out += name;
    if (label) {
      out += '{';
      out += label;
      out += "=\"";
      out += value;
      out += "\"}";
    }
    out += ' ' + std::to_string(n) + '\n';
  }

  // A float as Prometheus reads it: NaN, +Inf, -Inf or the shortest exact-enough decimal.
  static std::string number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", v);
    // Prefer the short form when it reads back the same (0.0001, not 0.00010000000000000000479).
    for (int precision = 1; precision < 17; ++precision) {
      char shorter[32];
      std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
      if (std::strtod(shorter, nullptr) == v) return shorter;
    }
    return text;
  }

  std::array<counter, 3> logins_, exchanges_;
  std::array<counter, 2> validations_, guard_checks_, lockouts_;
  counter revocations_;
  std::array<histogram, route_count> histograms_;
  mutable detail::Mutex gauges_mutex_;
  std::vector<gauge> gauges_ IWSEC_GUARDED_BY(gauges_mutex_);
};

}  // namespace iwsec
