/// @brief AccessLog: one line per request (text or JSON), request ids, lock events, written off the request's thread.
/// @file
#pragma once
// What iwsec-server logs (docs/operations.md "The access log"), for any
// host: one line per request, starting with an RFC 3339 UTC timestamp; the
// client address, the request id (echoed as X-Request-Id), method, path
// (never the query string), status, duration, and for token checks the
// outcome and the rejection reason (from take_token_check, never the
// token). Lock events go to the same stream. Lines go to standard output
// or a file through a detail::BufferedWriter: no write system call on a
// request's thread; lines it has no room for are dropped and counted.
//
// A host wires it into its server in three places:
//
//   iwsec::AccessLog log(iwsec::AccessLogFormat::text, true, "/var/log/svc/access.log");
//   log.start();                                  // the writer thread; the error, or empty
//   server.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response&) {
//     log.begin(req);                             // arrival time, request id
//     return httplib::Server::HandlerResponse::Unhandled;
//   });
//   log.attach(server);                           // X-Request-Id on answers, one line per answer
//   options.on_lockout = [&log](const iwsec::LockoutEvent& e) { log.lockout(e); };
//   ...                                           // on exit: log.stop()

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <string_view>

#include <httplib.h>

#include "audit.hpp"
#include "observe.hpp"
#include "routes.hpp"
#include "detail/crypto.hpp"
#include "detail/hex.hpp"
#include "detail/httplib_compat.hpp"
#include "detail/log_writer.hpp"

namespace iwsec {

/// @brief How AccessLog writes a line.
enum class AccessLogFormat { text, json };

namespace detail {

/// "2026-12-02T01:27:14.123456Z" (with @p micros) or "2026-12-02T01:27:14Z".
inline std::string rfc3339(std::chrono::system_clock::time_point t, bool micros) {
  const auto since = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(since / 1000000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char text[40];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  if (micros) {
    std::snprintf(text + n, sizeof text - n, ".%06lldZ", static_cast<long long>(since % 1000000));
  } else {
    std::snprintf(text + n, sizeof text - n, "Z");
  }
  return text;
}

/// An epoch second as rfc3339 without fraction.
inline std::string rfc3339_seconds(std::int64_t epoch_seconds) {
  return rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(epoch_seconds)), false);
}

/// Text that arrived from a client (paths arrive percent-decoded, emails are
/// what a login named): bytes that could break or forge a line, or a JSON
/// string, percent-escaped, so the result is printable ASCII without spaces.
inline void append_loggable(std::string& out, std::string_view text) {
  std::size_t plain = 0;  // start of the run of bytes that need no escape
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c <= 0x20 || c >= 0x7F || c == '%' || c == '"' || c == '\\') {
      out.append(text.data() + plain, i - plain);
      const char escaped[3] = {'%', hex_digit_upper(c >> 4), hex_digit_upper(c)};
      out.append(escaped, 3);
      plain = i + 1;
    }
  }
  out.append(text.data() + plain, text.size() - plain);
}

}  // namespace detail

/// @brief A fresh request id into @p out: 32 lower-case hex digits (128 bits) from
/// a per-thread generator seeded with 128 bits of OpenSSL randomness when the
/// thread first needs one (an id names a request, it guards nothing: no
/// RAND_bytes call per request).
inline void new_request_id(std::string& out) {
  struct generator {
    std::uint64_t a = 0, b = 0;
    generator() {
      unsigned char seed[16];
      detail::random_bytes(seed, sizeof seed);
      for (int i = 0; i < 8; ++i) {
        a = (a << 8) | seed[i];
        b = (b << 8) | seed[8 + i];
      }
    }
    // splitmix64: every output distinct over a thread's 2^64 steps.
    static std::uint64_t mix(std::uint64_t& state) {
      std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      return z ^ (z >> 31);
    }
  };
  static thread_local generator g;
  const std::uint64_t words[2] = {generator::mix(g.a), g.b ^ generator::mix(g.a)};
  out.resize(32);
  for (int w = 0; w < 2; ++w)
    for (int i = 0; i < 16; ++i) out[static_cast<std::size_t>(w * 16 + i)] = detail::hex_digit(words[w] >> (60 - 4 * i));
}

/// @brief 128 random bits as 32 lower-case hex digits (the form of the ids AccessLog picks).
inline std::string new_request_id() {
  std::string id;
  new_request_id(id);
  return id;
}

namespace detail {

/// rfc3339(t, true) appended to @p out, the date and time of day formatted
/// once per second per thread (gmtime_r takes glibc's time-zone lock).
inline void append_rfc3339_micros(std::string& out, std::chrono::system_clock::time_point t) {
  struct cache {
    long long second = -1;
    char text[24] = {};
    std::size_t size = 0;
  };
  static thread_local cache c;
  const auto since = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  long long second = since / 1000000;
  long long micros = since % 1000000;
  if (micros < 0) {
    micros += 1000000;
    --second;
  }
  if (second != c.second) {
    const std::time_t seconds = static_cast<std::time_t>(second);
    std::tm tm{};
    ::gmtime_r(&seconds, &tm);
    c.size = std::strftime(c.text, sizeof c.text, "%Y-%m-%dT%H:%M:%S", &tm);
    c.second = second;
  }
  out.append(c.text, c.size);
  char fraction[9] = {'.', '0', '0', '0', '0', '0', '0', 'Z', 0};
  for (int i = 6; i >= 1; --i, micros /= 10) fraction[i] = static_cast<char>('0' + micros % 10);
  out.append(fraction, 8);
}

}  // namespace detail

/// @brief The access log (see the file comment): thread-safe, one writer thread.
class AccessLog {
 public:
  /// Lines go to @p path (appended; empty: standard output) through a
  /// BufferedWriter of @p buffer_bytes that drops (and counts) what it
  /// cannot hold: no request waits for the disk. Call start() once.
  /// @p requests false: lock events only, no line per request.
  /// @p log: where the writer reports that it cannot write (default:
  /// stderr, "iwsec: ...").
  AccessLog(AccessLogFormat format, bool requests, std::string path = "", std::size_t buffer_bytes = 4u << 20,
            std::function<void(const std::string&)> log = nullptr)
      : format_(format),
        requests_(requests),
        writer_(std::move(path), detail::WhenFull::drop, buffer_bytes, std::chrono::milliseconds(100), "access log",
                std::move(log)) {}
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  /// Opens the file and starts the writer thread: the error, or empty.
  std::string start() { return writer_.start(); }
  /// SIGHUP / SIGUSR1: the file again (logrotate renamed it).
  void reopen() { writer_.reopen(); }
  /// Exit: every buffered line written, the file closed.
  void stop() { writer_.stop(); }
  /// Lines dropped because the buffer was full (iwsec_access_log_dropped_lines_total).
  std::uint64_t dropped_lines() const { return writer_.dropped_lines(); }

  bool logs_requests() const { return requests_; }

  /// Sets @p server's post-routing handler (X-Request-Id on every answer)
  /// and its logger (one line per request), when this log logs requests.
  /// Call begin() from the server's pre-routing handler, so a line's time
  /// and duration start at arrival (without it they start at the answer).
  void attach(httplib::Server& server) {
    if (!requests_) return;
    server.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) { answer_id(req, res); });
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) { write(req, res); });
  }

  /// The pre-routing step: notes the arrival time and picks the request id.
  void begin(const httplib::Request& req) {
    current& c = current_request();
    c.request = &req;
    c.arrived = std::chrono::system_clock::now();
    c.started = std::chrono::steady_clock::now();
    static const std::string header = "X-Request-Id";
    const std::string* incoming = detail::find_header(req.headers, header);
    if (incoming && sane_request_id(*incoming)) {
      c.id = *incoming;
    } else {
      new_request_id(c.id);
    }
  }

  /// The post-routing step: X-Request-Id on the answer (set here, after the
  /// handler, because an answer replaced on a fault starts from no headers).
  void answer_id(const httplib::Request& req, httplib::Response& res) {
    current& c = current_request();
    if (c.request != &req) begin(req);  // refused before routing
    res.set_header("X-Request-Id", c.id);
  }

  /// The id of the request this thread is handling (for its audit events);
  /// empty when none was begun.
  std::string current_id() const {
    const current& c = current_request();
    return c.request ? c.id : std::string();
  }

  /// Gives the audit event @p e the id of the request this thread is
  /// handling (the X-Request-Id it is answered with), or an id of its own
  /// when none was begun (the access log off); a lock event, and an event
  /// that has an id, keep theirs.
  void stamp_request_id(AuditEvent& e) const {
    if (!e.request_id.empty() || e.event == "lock") return;
    e.request_id = current_id();
    if (e.request_id.empty()) e.request_id = new_request_id();
  }

  /// The logger: one line for @p req.
  void write(const httplib::Request& req, const httplib::Response& res) {
    current& c = current_request();
    const bool begun = c.request == &req;
    c.request = nullptr;
    const auto arrived = begun ? c.arrived : std::chrono::system_clock::now();
    const long long micros =
        begun ? std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - c.started)
                    .count()
              : 0;
    if (!begun) new_request_id(c.id);
    const std::string& id = c.id;
    const auto check = take_token_check(req);
    std::string& line = c.line;  // the thread's own: no allocation per line
    line.clear();
    if (format_ == AccessLogFormat::json) {
      line += "{\"time\":\"";
      detail::append_rfc3339_micros(line, arrived);
      line += "\",\"client\":\"";
      detail::append_loggable(line, req.remote_addr);
      line += "\",\"request_id\":\"";
      line += id;
      line += "\",\"method\":\"";
      detail::append_loggable(line, req.method);
      line += "\",\"path\":\"";
      detail::append_loggable(line, security_route_path(req.path));  // one route, either spelling
      line += "\",\"status\":";
      append_number(line, res.status);
      line += ",\"duration_us\":";
      append_number(line, micros);
      if (check) {
        line += check->valid ? ",\"is_valid\":true" : ",\"is_valid\":false,\"reason\":\"";
        if (!check->valid) {
          line += to_string(check->rejection);
          line += '"';
        }
      }
      line += "}\n";
    } else {
      detail::append_rfc3339_micros(line, arrived);
      line += ' ';
      detail::append_loggable(line, req.remote_addr);
      line += ' ';
      line += id;
      line += ' ';
      detail::append_loggable(line, req.method);
      line += ' ';
      detail::append_loggable(line, security_route_path(req.path));  // one route, either spelling
      line += ' ';
      append_number(line, res.status);
      line += ' ';
      append_number(line, micros);
      line += "us";
      if (check) {
        line += check->valid ? " is_valid=true" : " is_valid=false reason=";
        if (!check->valid) line += to_string(check->rejection);
      }
      line += '\n';
    }
    writer_.write(line);
  }

  /// A lock that started (printed even with the request lines off).
  void lockout(const LockoutEvent& e) {
    const std::string now = detail::rfc3339(std::chrono::system_clock::now(), true);
    const char* kind = e.kind == LockoutEvent::Kind::account ? "account" : "client";
    std::string line;
    if (format_ == AccessLogFormat::json) {
      line = "{\"time\":\"" + now + "\",\"event\":\"lockout\",\"kind\":\"" + kind + "\",\"subject\":\"";
      detail::append_loggable(line, e.subject);
      line += "\",\"until\":\"" + detail::rfc3339_seconds(e.until) + "\"}\n";
    } else {
      line = now + " lockout " + kind + '=';
      detail::append_loggable(line, e.subject);
      line += " until=" + detail::rfc3339_seconds(e.until) + '\n';
    }
    writer_.write(line);
  }

 private:
  struct current {
    const httplib::Request* request = nullptr;
    std::chrono::system_clock::time_point arrived;
    std::chrono::steady_clock::time_point started;
    std::string id;
    std::string line;
  };
  static current& current_request() {
    static thread_local current c;
    return c;
  }

  static void append_number(std::string& out, long long n) {
    char text[24];
    char* end = text + sizeof text;
    char* p = end;
    unsigned long long v = n < 0 ? 0ULL - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
    do {
      *--p = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    if (n < 0) *--p = '-';
    out.append(p, static_cast<std::size_t>(end - p));
  }

  AccessLogFormat format_;
  bool requests_;
  detail::BufferedWriter writer_;
};

}  // namespace iwsec
