#pragma once
/// @file
/// @brief The audit trail's events (docs/operations.md "The audit trail"): what happened to
/// which account, for whom, with what result. Never a secret.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <string_view>

#include "detail/json.hpp"

namespace iwsec {

/// @brief One security event. Empty fields are left out of its JSON line.
struct AuditEvent {
  /// @brief Milliseconds since the epoch (the wall clock).
  std::int64_t time_ms = 0;
  /// @brief `login`, `token_exchange`, `revocation`, `refresh_rotation`,
  /// `lock`, `unlock`, or an administrator's change (`user_added`, ...).
  std::string event;
  std::string email;       ///< where known (a failed login's as typed, lower-cased)
  std::string user_id;     ///< where known
  std::string client;      ///< HTTP events: the client key (address) the lockout counts
  std::string request_id;  ///< HTTP events: the request's id, when the host gave it one
  std::string actor;       ///< administrator events: the OS account that ran the change
  std::string result;      ///< `success`, `failure`, `locked`, where it applies
  std::string reason;      ///< a failure's class: `bad_credentials`, `unknown_refresh_token`, ...
  std::string kid;         ///< signing-key events: the key's id (never the key)
  std::int64_t until = 0;  ///< `lock`: when it ends (seconds since the epoch); 0: not a lock
};

/// @brief Whether @p id, a client's `X-Request-Id`, is one worth keeping
/// (in an audit event, an access-log line, an answer's header): 1 to 64 of
/// `[A-Za-z0-9._:-]`. Anything else is replaced by an id of one's own.
inline bool sane_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

/// @brief Receives the routes' audit events (Options::on_audit), on the
/// request's thread. Must not throw (what it throws is dropped). A host that
/// must never lose one makes it block rather than drop when it is behind.
using AuditHook = std::function<void(const AuditEvent&)>;

/// @brief The wall clock in milliseconds since the epoch.
inline std::int64_t audit_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// @brief "2026-12-07T01:02:03.456Z" for @p ms since the epoch.
inline std::string audit_time(std::int64_t ms) {
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char text[40];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(ms % 1000));
  return text;
}

/// @brief @p e as one JSON object and a newline: `time` first, then the
/// fields that are set.
inline std::string audit_json_line(const AuditEvent& e) {
  std::string out = "{\"time\":\"" + audit_time(e.time_ms) + "\",\"event\":";
  detail::append_json_string(out, e.event);
  const auto field = [&out](const char* name, const std::string& value) {
    if (value.empty()) return;
    out += ",\"";
    out += name;
    out += "\":";
    detail::append_json_string(out, value);
  };
  field("email", e.email);
  field("user_id", e.user_id);
  field("client", e.client);
  field("request_id", e.request_id);
  field("actor", e.actor);
  field("result", e.result);
  field("reason", e.reason);
  field("kid", e.kid);
  if (e.until) field("until", audit_time(e.until * 1000).replace(19, 4, ""));
  out += "}\n";
  return out;
}

}  // namespace iwsec
