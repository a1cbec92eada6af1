#pragma once
// What iwsec-admin show-user and unlock print: one function each, used on a
// data directory and in cluster mode alike, so both modes print the same
// shape (locked_until as RFC 3339, the same labels). Never a secret.

#include <cstdint>
#include <cstdio>
#include <string>

#include <iwsec/iwsec.hpp>

namespace user_report {

/// @brief @p s as a JSON string literal, quotes included.
inline std::string json_quoted(const std::string& s) {
  std::string out;
  iwsec::detail::append_json_string(out, s);
  return out;
}

/// show-user: @p locked_until is the epoch second the lock ends, 0 when not
/// locked; given the server's @p refresh_token_lifetime (seconds, 0: none),
/// also when the refresh token expires.
inline void print_user(bool json, const iwsec::User& u, std::int64_t locked_until,
                       std::int64_t refresh_token_lifetime) {
  const std::string until = locked_until ? iwsec::detail::rfc3339_seconds(locked_until) : "";
  const std::string issued = iwsec::detail::rfc3339_seconds(u.refresh_token_issued_at);
  const std::string expires =
      refresh_token_lifetime ? iwsec::detail::rfc3339_seconds(u.refresh_token_issued_at + refresh_token_lifetime) : "";
  if (json) {
    std::printf("{\"user_id\":%s,\"email\":%s,\"disabled\":%s,\"refresh_generation\":%llu,\"locked\":%s,"
                "\"locked_until\":%s,\"refresh_token_issued_at\":%s%s%s}\n",
                json_quoted(u.user_id).c_str(), json_quoted(u.email).c_str(), u.disabled ? "true" : "false",
                static_cast<unsigned long long>(u.refresh_generation), locked_until ? "true" : "false",
                locked_until ? json_quoted(until).c_str() : "null", json_quoted(issued).c_str(),
                expires.empty() ? "" : ",\"refresh_token_expires_at\":", expires.empty() ? "" : json_quoted(expires).c_str());
  } else {
    std::printf("user_id: %s\nemail: %s\ndisabled: %s\nrefresh_generation: %llu\nlocked: %s\n"
                "refresh_token_issued_at: %s\n",
                u.user_id.c_str(), u.email.c_str(), u.disabled ? "true" : "false",
                static_cast<unsigned long long>(u.refresh_generation), locked_until ? ("until " + until).c_str() : "no",
                issued.c_str());
    if (!expires.empty()) std::printf("refresh_token_expires_at: %s\n", expires.c_str());
  }
}

/// unlock: @p was_locked says whether a lock was lifted.
inline void print_unlocked(bool json, const std::string& email, bool was_locked) {
  if (json) {
    std::printf("{\"email\":%s,\"unlocked\":true,\"was_locked\":%s}\n", json_quoted(email).c_str(),
                was_locked ? "true" : "false");
  } else {
    std::printf("unlocked %s (%s)\n", email.c_str(), was_locked ? "it was locked" : "it was not locked");
  }
}

}  // namespace user_report
