/// @brief Account operations over any UserStore: create a user, set a password, rotate a refresh token, disable.
/// @file
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "clock.hpp"
#include "detail/base64.hpp"
#include "detail/crypto.hpp"
#include "detail/json.hpp"
#include "password.hpp"
#include "user.hpp"
#include "user_store_interface.hpp"

namespace iwsec {

/// @brief A new opaque refresh token: 32 bytes (256 bits) from the CSPRNG, base64url.
inline std::string generate_refresh_token() {
  return base64url_encode(detail::random_string(32));
}

/// @brief The form a refresh token is stored in: lower-case hex SHA-256.
inline std::string refresh_token_hash(std::string_view token) { return detail::sha256_hex(token); }

/// @brief A new user id: 24 lower-case hex digits (Infoworks ids look like that).
inline std::string generate_user_id() {
  const std::string raw = detail::random_string(12);
  return detail::hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

/// @brief A refresh token shown once, with the outcome of the write that stored its hash.
struct IssuedRefreshToken {
  StoreResult status = StoreStatus::invalid;  ///< the write's outcome; status.reason() says why it failed
  std::string user_id;
  std::string refresh_token;  ///< empty unless status is ok
  std::string error;          ///< why status is invalid, when a check (not the store) said so (for a program to print)
};

namespace detail {

/// @brief Whether @p text holds a control character: C0 (0x00-0x1F), DEL,
/// or, in UTF-8, C1 (U+0080-U+009F).
inline bool holds_control_character(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x20 || b == 0x7F) return true;
    if (b == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9F &&
        static_cast<unsigned char>(text[i + 1]) >= 0x80)
      return true;
  }
  return false;
}

}  // namespace detail

/// @brief Why no login could use @p email as its user name, or nullptr when
/// one can. HTTP Basic ends the user name at the first colon and cannot
/// carry control characters; an email has one '@' with text on both sides.
inline const char* email_problem(std::string_view email) noexcept {
  if (email.empty()) return "the email is empty";
  if (email.size() > 254) return "the email is longer than 254 bytes";
  if (!detail::is_valid_utf8(email)) return "the email is not valid UTF-8";
  if (detail::holds_control_character(email)) return "the email holds a control character";
  if (email.find(' ') != std::string_view::npos) return "the email holds a space";
  if (email.find(':') != std::string_view::npos)
    return "the email holds a ':', where HTTP Basic credentials end the user name";
  const auto at = email.find('@');
  if (at == std::string_view::npos || email.find('@', at + 1) != std::string_view::npos)
    return "the email must hold exactly one '@'";
  if (at == 0 || at + 1 == email.size()) return "the email needs text on both sides of its '@'";
  return nullptr;
}

/// @brief Why no login could send @p password, or nullptr when one can: it
/// must not be empty nor hold a control character (a tab, say), which Basic
/// credentials cannot carry. Any other UTF-8, colons included, is fine.
inline const char* password_problem(std::string_view password) noexcept {
  if (password.empty()) return "the password is empty";
  if (detail::holds_control_character(password))
    return "the password holds a control character (a tab, say), which no login can send";
  return nullptr;
}

/// @brief Gives the user a new refresh token and bumps their generation, so
/// the old refresh token and every access token minted before stop working.
/// @p now is the new token's issue time (its lifetime counts from it).
inline IssuedRefreshToken rotate_refresh_token(UserStore& users, std::string_view email,
                                               std::int64_t now = system_now()) {
  IssuedRefreshToken out;
  std::string token = generate_refresh_token();
  const std::string hash = refresh_token_hash(token);
  out.status = users.update_user(email, [&](User& u) {
    u.refresh_token_sha256 = hash;
    u.refresh_token_issued_at = now;
    ++u.refresh_generation;
    out.user_id = u.user_id;
  });
  if (out.status == StoreStatus::ok) out.refresh_token = std::move(token);
  return out;
}

/// @brief Replaces the user's password. Unless @p keep_sessions, it also
/// ends every session, as a reset after a leak must: a new refresh token
/// (returned, shown once; the old one stops working) and a generation bump
/// (every access token minted before stops working). With @p keep_sessions
/// only the hash changes and the result carries no refresh token. invalid
/// (nothing changed) for a password no login could present. @p now is the
/// new refresh token's issue time.
inline IssuedRefreshToken set_password(UserStore& users, std::string_view email, std::string_view password,
                                       std::uint32_t rounds = default_pbkdf2_rounds, bool keep_sessions = false,
                                       std::int64_t now = system_now()) {
  IssuedRefreshToken out;
  if (const char* problem = password_problem(password)) {
    out.status = StoreResult(StoreStatus::invalid, problem);
    out.error = problem;
    return out;
  }
  const std::string hash = hash_password(password, rounds);  // before the write: it takes a while
  std::string token = keep_sessions ? std::string() : generate_refresh_token();
  const std::string token_hash = keep_sessions ? std::string() : refresh_token_hash(token);
  out.status = users.update_user(email, [&](User& u) {
    u.password_hash = hash;
    if (!keep_sessions) {
      u.refresh_token_sha256 = token_hash;
      u.refresh_token_issued_at = now;
      ++u.refresh_generation;
    }
    out.user_id = u.user_id;
  });
  if (out.status == StoreStatus::ok) out.refresh_token = std::move(token);
  return out;
}

/// @brief Replaces a user's password hash by @p new_hash (the same password
/// hashed again with other rounds, after a successful login) without ending
/// any session: the refresh token and the generation stay. Only while the
/// user is still @p user_id with @p old_hash (a password changed meanwhile
/// wins); not_found otherwise.
inline StoreResult upgrade_password_hash(UserStore& users, std::string_view email, std::string_view user_id,
                                         std::string_view old_hash, const std::string& new_hash) {
  bool replaced = false;
  const StoreResult status = users.update_user(email, [&](User& u) {
    if (u.user_id != user_id || u.password_hash != old_hash) return;
    u.password_hash = new_hash;
    replaced = true;
  });
  if (status == StoreStatus::ok && !replaced)
    return StoreResult(StoreStatus::not_found, "the user or their password changed meanwhile");
  return status;
}

/// @brief Disables or enables the user. Disabling ends every session (a
/// generation bump), so a later enable does not bring old access tokens
/// back; the refresh token works again once the user is enabled.
inline StoreResult set_user_disabled(UserStore& users, std::string_view email, bool disabled) {
  return users.update_user(email, [&](User& u) {
    if (disabled) ++u.refresh_generation;
    u.disabled = disabled;
  });
}

/// @brief Creates an enabled user with a hashed password and a first
/// refresh token (returned, shown once). Refuses (status invalid, the
/// reason in `error`) an email or password no login could use: see
/// email_problem() and password_problem(). @p now is the first refresh
/// token's issue time.
inline IssuedRefreshToken create_user(UserStore& users, std::string_view email, std::string_view password,
                                      std::uint32_t rounds = default_pbkdf2_rounds, std::int64_t now = system_now()) {
  IssuedRefreshToken out;
  const char* problem = email_problem(email);
  if (!problem) problem = password_problem(password);
  if (problem) {
    out.status = StoreResult(StoreStatus::invalid, problem);
    out.error = problem;
    return out;
  }
  User user;
  user.user_id = generate_user_id();
  user.email = std::string(email);
  user.password_hash = hash_password(password, rounds);
  std::string token = generate_refresh_token();
  user.refresh_token_sha256 = refresh_token_hash(token);
  user.refresh_token_issued_at = now;
  out.status = users.add_user(user);
  if (out.status == StoreStatus::ok) {
    out.user_id = user.user_id;
    out.refresh_token = std::move(token);
  }
  return out;
}

}  // namespace iwsec
