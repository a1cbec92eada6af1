#pragma once
// iwsec-server's access log (SPEC "Operations"): one line per request, text
// or JSON, starting with an RFC 3339 UTC timestamp; the client address, the
// request id (echoed as X-Request-Id), method, path (never the query
// string), status, duration, and for token checks the outcome and the
// rejection reason (from iwsec::take_token_check, never the token). Lock
// events go to the same stream.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <string_view>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

namespace access_log {

enum class Format { text, json };

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
  static const char hex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (c <= 0x20 || c >= 0x7F || c == '%' || c == '"' || c == '\\') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
}

/// An incoming X-Request-Id worth keeping: 1 to 64 of [A-Za-z0-9._:-].
inline bool sane_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

/// 128 random bits as 32 lower-case hex digits.
inline std::string new_request_id() {
  unsigned char bytes[16];
  iwsec::detail::random_bytes(bytes, sizeof bytes);
  return iwsec::detail::hex_encode(bytes, sizeof bytes);
}

class AccessLog {
 public:
  AccessLog(Format format, bool requests) : format_(format), requests_(requests) {}

  bool logs_requests() const { return requests_; }

  /// The pre-routing step: notes the arrival time and picks the request id.
  void begin(const httplib::Request& req) {
    current& c = current_request();
    c.request = &req;
    c.arrived = std::chrono::system_clock::now();
    c.started = std::chrono::steady_clock::now();
    const std::string incoming = req.get_header_value("X-Request-Id");
    c.id = sane_request_id(incoming) ? incoming : new_request_id();
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
    const std::string id = begun ? c.id : new_request_id();
    const auto check = iwsec::take_token_check(req);
    std::string line;
    if (format_ == Format::json) {
      line = "{\"time\":\"" + rfc3339(arrived, true) + "\",\"client\":\"";
      append_loggable(line, req.remote_addr);
      line += "\",\"request_id\":\"" + id + "\",\"method\":\"";
      append_loggable(line, req.method);
      line += "\",\"path\":\"";
      append_loggable(line, req.path);
      line += "\",\"status\":" + std::to_string(res.status) + ",\"duration_us\":" + std::to_string(micros);
      if (check) {
        line += check->valid ? ",\"is_valid\":true" : ",\"is_valid\":false,\"reason\":\"";
        if (!check->valid) line += std::string(check->rejection ? check->rejection : "unknown") + "\"";
      }
      line += "}\n";
    } else {
      line = rfc3339(arrived, true) + ' ';
      append_loggable(line, req.remote_addr);
      line += ' ' + id + ' ';
      append_loggable(line, req.method);
      line += ' ';
      append_loggable(line, req.path);
      line += ' ' + std::to_string(res.status) + ' ' + std::to_string(micros) + "us";
      if (check) {
        line += check->valid ? " is_valid=true" : " is_valid=false reason=";
        if (!check->valid) line += check->rejection ? check->rejection : "unknown";
      }
      line += '\n';
    }
    emit(line);
  }

  /// A lock that started (printed even with the request lines off).
  void lockout(const iwsec::LockoutEvent& e) {
    const std::string now = rfc3339(std::chrono::system_clock::now(), true);
    const char* kind = e.kind == iwsec::LockoutEvent::Kind::account ? "account" : "client";
    std::string line;
    if (format_ == Format::json) {
      line = "{\"time\":\"" + now + "\",\"event\":\"lockout\",\"kind\":\"" + kind + "\",\"subject\":\"";
      append_loggable(line, e.subject);
      line += "\",\"until\":\"" + rfc3339_seconds(e.until) + "\"}\n";
    } else {
      line = now + " lockout " + kind + '=';
      append_loggable(line, e.subject);
      line += " until=" + rfc3339_seconds(e.until) + '\n';
    }
    emit(line);
  }

 private:
  struct current {
    const httplib::Request* request = nullptr;
    std::chrono::system_clock::time_point arrived;
    std::chrono::steady_clock::time_point started;
    std::string id;
  };
  static current& current_request() {
    static thread_local current c;
    return c;
  }

  void emit(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
  }

  Format format_;
  bool requests_;
  std::mutex mutex_;
};

}  // namespace access_log
