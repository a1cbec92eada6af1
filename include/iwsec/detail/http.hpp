#pragma once
/// @file
/// @brief HTTP plumbing of the security routes: reading `Authorization`
/// (RFC 7617, RFC 6750) and writing Infoworks-shaped JSON answers.

#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include <httplib.h>

#include "base64.hpp"
#include "httplib_compat.hpp"
#include "json.hpp"

namespace iwsec {
namespace detail {

constexpr const char* json_content_type = "application/json; charset=utf-8";

/// @brief What a request's `Authorization` header holds.
struct authorization {
  enum class kind {
    none,       ///< absent, empty, or a scheme with empty credentials
    basic,      ///< scheme "Basic" (any case)
    bearer,     ///< scheme "Bearer" (any case)
    other,      ///< some other scheme
    duplicate,  ///< more than one Authorization header
    too_long,   ///< value longer than the configured bound
  };
  kind type = kind::none;
  std::string_view credentials;  ///< a view into the request's header value
};

inline bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

/// @brief Reads the request's `Authorization` header; the credentials view
/// stays valid as long as @p req.
inline authorization read_authorization(const httplib::Request& req, std::size_t max_bytes) {
  authorization out;
  // One case-insensitive search; a second value is a duplicate header.
  const std::string name = "Authorization";
  const auto range = header_values(req.headers, name);
  if (range.first == range.second) return out;
  if (std::next(range.first) != range.second) {
    out.type = authorization::kind::duplicate;
    return out;
  }
  const auto found = range.first;
  const std::string& raw = found->second;
  if (raw.size() > max_bytes) {
    out.type = authorization::kind::too_long;
    return out;
  }
  std::string_view v(raw);
  while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
  std::size_t scheme_end = 0;
  while (scheme_end < v.size() && !is_ows(v[scheme_end])) ++scheme_end;
  const std::string_view scheme = v.substr(0, scheme_end);
  std::string_view credentials = v.substr(scheme_end);
  while (!credentials.empty() && is_ows(credentials.front())) credentials.remove_prefix(1);
  if (scheme.empty() || credentials.empty()) return out;  // "Basic " counts as no credentials
  if (iequals(scheme, "Basic")) {
    out.type = authorization::kind::basic;
  } else if (iequals(scheme, "Bearer")) {
    out.type = authorization::kind::bearer;
  } else {
    out.type = authorization::kind::other;
  }
  out.credentials = credentials;
  return out;
}

/// @brief The user and password of HTTP Basic credentials (RFC 7617).
struct basic_credentials {
  std::string user;      ///< everything before the first colon (may be empty)
  std::string password;  ///< everything after it, colons included
};

/// @brief Splits Basic credentials: strict padded base64, then user up to the
/// *first* colon and the password after it. Nothing (a 400, before any
/// password check) when the text is not base64, its decoding holds no colon,
/// or it holds a control byte (0x00-0x1F, 0x7F), which RFC 7617 §2 forbids
/// in both user-id and password. That matters: PBKDF2-HMAC pads its key with
/// zeros, so "pw" + NUL would otherwise log in as "pw". Other bytes, invalid
/// UTF-8 included, are not judged: they simply match no account.
inline std::optional<basic_credentials> parse_basic_credentials(std::string_view encoded) {
  auto decoded = base64_decode(encoded);
  if (!decoded) return std::nullopt;
  for (const char ch : *decoded) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) return std::nullopt;
  }
  const auto colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  basic_credentials out;
  out.password = decoded->substr(colon + 1);
  decoded->resize(colon);
  out.user = std::move(*decoded);
  return out;
}

/// @brief Writes a JSON body with the headers every security answer carries
/// (header names and values made once: no strings built per answer but the
/// ones httplib keeps).
inline void send_json(httplib::Response& res, int status, std::string_view body) {
  static const std::string cache_control = "Cache-Control", no_store = "no-store", content_type = json_content_type;
  res.status = status;
  res.set_header(cache_control, no_store);
  res.set_content(body.data(), body.size(), content_type);
}

/// @brief The Infoworks error envelope.
inline std::string error_envelope(std::string_view message, std::string_view details, std::string_view iw_code,
                                  std::string_view help_base) {
  std::string body = "{\"message\":";
  append_json_string(body, message);
  body += ",\"details\":";
  append_json_string(body, details);
  body += ",\"iw_code\":";
  append_json_string(body, iw_code);
  body += ",\"help\":";
  std::string help(help_base);
  if (!help.empty() && help.back() != '/') help += '/';
  help += iw_code;
  append_json_string(body, help);
  body += '}';
  return body;
}

}  // namespace detail
}  // namespace iwsec
