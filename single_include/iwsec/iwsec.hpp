// iwsec 0.1.0: the Infoworks REST API v3 security endpoints for cpp-httplib.
// Copyright (c) 2026 the iwsec authors. MIT licence: the LICENSE file of
// the repository, also at https://opensource.org/licenses/MIT
// SPDX-License-Identifier: MIT
//
// GENERATED FILE, DO NOT EDIT. This is the amalgamation of include/iwsec/,
// made by scripts/amalgamate.py; edit the headers under include/ and run
//     python3 scripts/amalgamate.py
//
// It needs only what the headers need: <httplib.h> (with the host's
// CPPHTTPLIB_* flags, see the README), <picojson.h> and OpenSSL's libcrypto.
#pragma once

// ----- begin iwsec/iwsec.hpp -----
/// @file
/// @brief iwsec: the Infoworks REST API v3 security endpoints for any
/// cpp-httplib service. Include this one header.

// ----- begin iwsec/version.hpp -----
/// @file
/// @brief The library's version: the single source of truth for every build system.

#define IWSEC_VERSION_MAJOR 0
#define IWSEC_VERSION_MINOR 1
#define IWSEC_VERSION_PATCH 0
#define IWSEC_VERSION_STRING "0.1.0"
// ----- end iwsec/version.hpp -----
// ----- begin iwsec/build_info.hpp -----
/// @file
/// @brief What this build of iwsec was compiled with: iwsec's own version,
/// the cpp-httplib release (`CPPHTTPLIB_VERSION`) and OpenSSL's version —
/// the first thing anyone asks in a bug report. `iwsec-server --version`
/// and `iwsec-admin --version` print build_description().
/// (Cluster mode adds libpq's: iwsec/postgres/build_info.hpp.)

#include <string>

#include <openssl/opensslv.h>

// ----- begin iwsec/detail/httplib_compat.hpp -----
/// @file
/// @brief The one place where the library meets differences between
/// cpp-httplib releases (0.11.4 to the newest): decided by the version
/// number `CPPHTTPLIB_VERSION`, parsed at compile time, never by whether an
/// API happens to compile (the same call can change meaning between
/// releases).

#include <cstddef>
#include <iterator>
#include <string>

#include <httplib.h>

#ifndef CPPHTTPLIB_VERSION
#error "iwsec needs cpp-httplib 0.11.4 or newer (CPPHTTPLIB_VERSION is not defined)"
#endif

namespace iwsec {
namespace detail {

/// @brief A release number as one comparable integer: major * 10^6 + minor * 10^3 + patch.
constexpr unsigned long version_number(unsigned long major, unsigned long minor, unsigned long patch) noexcept {
  return major * 1000000UL + minor * 1000UL + patch;
}

/// @brief Parses "A.B.C" (digits and dots; anything after the third number
/// is ignored) into version_number(A, B, C); 0 for text that is not a version.
constexpr unsigned long parse_version(const char* text) noexcept {
  unsigned long parts[3] = {0, 0, 0};
  int part = 0;
  bool digit_seen = false;
  for (const char* p = text; *p != '\0' && part < 3; ++p) {
    if (*p >= '0' && *p <= '9') {
      parts[part] = parts[part] * 10 + static_cast<unsigned long>(*p - '0');
      digit_seen = true;
    } else if (*p == '.' && digit_seen) {
      ++part;
      digit_seen = false;
    } else {
      break;
    }
  }
  return version_number(parts[0], parts[1], parts[2]);
}

/// @brief The cpp-httplib release this translation unit is compiled against.
constexpr unsigned long httplib_version = parse_version(CPPHTTPLIB_VERSION);

static_assert(parse_version("0.11.4") == version_number(0, 11, 4), "parse_version");
static_assert(parse_version("0.41.0") == version_number(0, 41, 0), "parse_version");
static_assert(parse_version("1.2.3-rc1") == version_number(1, 2, 3), "parse_version");
static_assert(httplib_version >= version_number(0, 11, 4),
              "iwsec needs cpp-httplib 0.11.4 or newer");

/// @brief The values of a request header, however this release keeps
/// `httplib::Headers` (a case-insensitive `std::multimap` up to 0.17, an
/// `unordered_multimap` after): equal keys form one range, in the order
/// cpp-httplib's own `get_header_value(key, id)` counts them.
inline auto header_values(const httplib::Headers& headers, const std::string& name) {
  return headers.equal_range(name);
}

/// @brief The @p index-th value of header @p name, or nullptr; the pointer
/// stays valid as long as @p headers.
inline const std::string* find_header(const httplib::Headers& headers, const std::string& name,
                                      std::size_t index = 0) {
  auto range = header_values(headers, name);
  for (auto it = range.first; it != range.second; ++it, --index) {
    if (index == 0) return &it->second;
  }
  return nullptr;
}

/// @brief How many values header @p name has.
inline std::size_t count_header(const httplib::Headers& headers, const std::string& name) {
  auto range = header_values(headers, name);
  return static_cast<std::size_t>(std::distance(range.first, range.second));
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/httplib_compat.hpp -----

namespace iwsec {

/// @brief iwsec's version, "X.Y.Z" (IWSEC_VERSION_STRING).
inline constexpr const char* version_string = IWSEC_VERSION_STRING;

/// @brief The cpp-httplib release this translation unit is compiled with
/// (its `CPPHTTPLIB_VERSION`, e.g. "0.41.0").
inline constexpr const char* httplib_version_string = CPPHTTPLIB_VERSION;

/// @brief The OpenSSL release whose headers this translation unit is compiled
/// with (`OPENSSL_VERSION_STR`, e.g. "3.0.17").
inline constexpr const char* openssl_version_string = OPENSSL_VERSION_STR;

/// @brief "iwsec X.Y.Z (cpp-httplib A.B.C, OpenSSL D.E.F)"; @p more, when
/// not empty, goes inside the parentheses after OpenSSL's version
/// (", " + more), e.g. "libpq 15.8".
inline std::string build_description(const std::string& more = std::string()) {
  std::string text = std::string("iwsec ") + version_string + " (cpp-httplib " + httplib_version_string +
                     ", OpenSSL " + openssl_version_string;
  if (!more.empty()) text += ", " + more;
  text += ")";
  return text;
}

}  // namespace iwsec
// ----- end iwsec/build_info.hpp -----
// ----- begin iwsec/clock.hpp -----
/// @file
/// @brief The injectable clock: whole seconds since the Unix epoch.

#include <chrono>
#include <cstdint>
#include <functional>

namespace iwsec {

/// @brief A source of "now" in seconds since 1970-01-01T00:00:00Z. Tests pass
/// their own to move time without sleeping.
using Clock = std::function<std::int64_t()>;

/// @brief The wall clock (std::chrono::system_clock).
inline std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// @brief The longest duration any setting may have, in seconds: 366 days
/// (token lifetime, leeway, lock lengths, the client window). A year of
/// clock skew is already absurd; the bound keeps sums of times in range.
inline constexpr std::int64_t max_duration_seconds = 366LL * 24 * 3600;

/// @brief The longest refresh-token lifetime, in seconds: ten times
/// max_duration_seconds. Refresh tokens are long-lived by design; the bound
/// keeps issue time + lifetime in range.
inline constexpr std::int64_t max_refresh_token_lifetime_seconds = 10 * max_duration_seconds;

}  // namespace iwsec
// ----- end iwsec/clock.hpp -----
// ----- begin iwsec/errors.hpp -----
/// @file
/// @brief iwsec's one exception hierarchy: every exception iwsec throws of
/// its own is an iwsec::Error with an ErrorId (what the standard library
/// throws from inside, std::bad_alloc say, passes through as it is), and derives
/// from the standard type a host catches (std::invalid_argument for what the
/// host got wrong, std::runtime_error for what went wrong at run time).
///
/// The verify path never throws: a token check answers with an
/// iwsec::Rejection (observe.hpp), a password check with a bool. What throws
/// is what cannot go on: settings out of range, unusable keys, a file that
/// cannot be read or understood, state that cannot be shown to be current.
///
///     try { ... } catch (const iwsec::Error& e) {
///       log(iwsec::to_string(e.id()), e.what());  // e.g. "keyring_error", "iwsec: ..."
///     }

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace iwsec {

/// @brief What kind of failure an iwsec::Error is. Stable numbers, grouped
/// by hundreds: 1xx the host's settings, 2xx key material, 3xx files,
/// 4xx state and the system, 5xx cluster mode's database.
enum class ErrorId : int {
  invalid_option = 101,   ///< invalid_option: an Options, HardeningOptions or metric setting out of range
  usage_error = 102,      ///< usage_error: an API called where its precondition does not hold
  key_error = 201,        ///< key_error: unusable signing-key material
  keyring_error = 202,    ///< keyring_error: a key file that cannot be read, understood or changed
  store_error = 301,      ///< store_error: a users file that cannot be read or understood
  journal_error = 302,    ///< journal_error: a revocation journal that cannot be read or written
  state_unavailable = 401,  ///< StateUnavailable: state that cannot be shown to be current (answered 503)
  crypto_error = 402,     ///< crypto_error: OpenSSL failed (random bytes, a digest, PBKDF2)
  sql_error = 501,        ///< postgres::SqlError: a statement the database refused
  key_encryption_error = 502,  ///< postgres::key_encryption_error: a key-encryption key that cannot be used
  schema_error = 503,     ///< postgres::schema_error: a database schema this build cannot use
};

/// @brief The id's name, as the class is named ("keyring_error").
constexpr const char* to_string(ErrorId id) noexcept {
  switch (id) {
    case ErrorId::invalid_option: return "invalid_option";
    case ErrorId::usage_error: return "usage_error";
    case ErrorId::key_error: return "key_error";
    case ErrorId::keyring_error: return "keyring_error";
    case ErrorId::store_error: return "store_error";
    case ErrorId::journal_error: return "journal_error";
    case ErrorId::state_unavailable: return "state_unavailable";
    case ErrorId::crypto_error: return "crypto_error";
    case ErrorId::sql_error: return "sql_error";
    case ErrorId::key_encryption_error: return "key_encryption_error";
    case ErrorId::schema_error: return "schema_error";
  }
  return "unknown";
}

/// @brief The base every iwsec exception shares: catch it to catch them
/// all. Not derived from std::exception itself (each concrete error derives
/// from exactly one standard type, so `catch (const std::exception&)` stays
/// unambiguous); what() is the same message as the standard base's.
class Error {
 public:
  virtual ~Error() = default;
  /// @brief What kind of failure this is.
  ErrorId id() const noexcept { return id_; }
  /// @brief The message: names the setting, path or part and the reason,
  /// never a secret.
  virtual const char* what() const noexcept = 0;

 protected:
  explicit Error(ErrorId id) noexcept : id_(id) {}
  Error(const Error&) = default;
  Error& operator=(const Error&) = default;

 private:
  ErrorId id_;
};

namespace detail {
/// @brief An iwsec::Error with id @p Id that is also a @p Std.
template <class Std, ErrorId Id>
class basic_error : public Std, public Error {
 public:
  explicit basic_error(const std::string& what) : Std(what), Error(Id) {}
  explicit basic_error(const char* what) : Std(what), Error(Id) {}
  const char* what() const noexcept override { return Std::what(); }
};
}  // namespace detail

/// @brief A setting out of range (Options, HardeningOptions, a metric's
/// name, PBKDF2 rounds); the message names the setting.
class invalid_option : public detail::basic_error<std::invalid_argument, ErrorId::invalid_option> {
 public:
  using basic_error::basic_error;
};

/// @brief An API called where its precondition does not hold (a bug in the
/// caller, e.g. VerifyResult::token() on a rejected token).
class usage_error : public detail::basic_error<std::logic_error, ErrorId::usage_error> {
 public:
  using basic_error::basic_error;
};

/// @brief Thrown by Signer's constructors for unusable key material.
class key_error : public detail::basic_error<std::invalid_argument, ErrorId::key_error> {
 public:
  using basic_error::basic_error;
};

/// @brief A key file that cannot be read, created, understood or changed.
/// The message names the path and the reason (the `strerror` text for I/O).
class keyring_error : public detail::basic_error<std::runtime_error, ErrorId::keyring_error> {
 public:
  using basic_error::basic_error;
};

/// @brief Thrown when a users file exists but cannot be read or understood.
class store_error : public detail::basic_error<std::runtime_error, ErrorId::store_error> {
 public:
  using basic_error::basic_error;
};

/// @brief A revocation journal that cannot be read or written (the message
/// names the path and the reason).
class journal_error : public detail::basic_error<std::runtime_error, ErrorId::journal_error> {
 public:
  using basic_error::basic_error;
};

/// @brief OpenSSL failed where it cannot fail on a sound system (random
/// bytes, a digest, HMAC, PBKDF2).
class crypto_error : public detail::basic_error<std::runtime_error, ErrorId::crypto_error> {
 public:
  using basic_error::basic_error;
};

/// @brief Thrown by a UserStore, RevocationStore or lockout backend when it
/// cannot answer from state it can show to be current (a users file that
/// changed but cannot be reloaded, a cluster replica past its staleness
/// bound, a database that cannot be reached). The security routes and the
/// guard answer it with 503, the `IW10002` envelope and `Retry-After`; the
/// message is for the host's log and never reaches the client.
class StateUnavailable : public detail::basic_error<std::runtime_error, ErrorId::state_unavailable> {
 public:
  explicit StateUnavailable(const std::string& what, std::int64_t retry_after_seconds = 1)
      : basic_error(what), retry_after_(retry_after_seconds < 1 ? 1 : retry_after_seconds) {}

  /// @brief Whole seconds a client should wait before trying again (at least 1).
  std::int64_t retry_after() const noexcept { return retry_after_; }

 private:
  std::int64_t retry_after_;
};

namespace postgres {

/// @brief An SQL statement the database refused (a constraint, a syntax
/// error), as opposed to a database that cannot be reached (StateUnavailable).
class SqlError : public iwsec::detail::basic_error<std::runtime_error, ErrorId::sql_error> {
 public:
  SqlError(const std::string& what, std::string sqlstate) : basic_error(what), sqlstate_(std::move(sqlstate)) {}
  /// @brief The five-character SQLSTATE ("23505": unique violation).
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  bool unique_violation() const noexcept { return sqlstate_ == "23505"; }

 private:
  std::string sqlstate_;
};

/// @brief A key-encryption key that cannot be read or used, or that does not
/// match the one the database's keys are wrapped with. The message names the
/// file (never its content).
class key_encryption_error : public iwsec::detail::basic_error<std::runtime_error, ErrorId::key_encryption_error> {
 public:
  using basic_error::basic_error;
};

/// @brief A database whose iwsec schema this build cannot use (newer than
/// it knows).
class schema_error : public iwsec::detail::basic_error<std::runtime_error, ErrorId::schema_error> {
 public:
  using basic_error::basic_error;
};

}  // namespace postgres
}  // namespace iwsec
// ----- end iwsec/errors.hpp -----
// ----- begin iwsec/signer.hpp -----
/// @file
/// @brief HS256 access tokens: minting and strict verification, in-house on
/// OpenSSL (no JWT library), shaped like the tokens Infoworks issues.

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// ----- begin iwsec/detail/base64.hpp -----
/// @file
/// @brief Strict base64url (JWS) and standard base64 (HTTP Basic) codecs.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace iwsec {
namespace detail {

/// @brief Maps an ASCII byte to its 6-bit value in the given alphabet, or -1.
inline int base64_value(unsigned char c, bool url) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (url) {
    if (c == '-') return 62;
    if (c == '_') return 63;
  } else {
    if (c == '+') return 62;
    if (c == '/') return 63;
  }
  return -1;
}

/// @brief Decodes unpadded symbols; rejects foreign bytes, impossible lengths
/// and non-zero trailing bits, so every byte string has exactly one encoding.
inline bool base64_decode_symbols(std::string_view in, bool url, std::string& out) {
  if (in.size() % 4 == 1) return false;
  out.clear();
  out.reserve(in.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    const int v = base64_value(c, url);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero: "Xl", "Xm", "Xn" are not aliases of "Xk".
  return (acc & ((1u << bits) - 1u)) == 0;
}

inline std::string base64_encode_impl(std::string_view in, bool url, bool pad) {
  const char* alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t n = (static_cast<unsigned char>(in[i]) << 16) |
                            (static_cast<unsigned char>(in[i + 1]) << 8) |
                            static_cast<unsigned char>(in[i + 2]);
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.push_back(alphabet[(n >> 6) & 63]);
    out.push_back(alphabet[n & 63]);
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    std::uint32_t n = static_cast<unsigned char>(in[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    if (rest == 2) out.push_back(alphabet[(n >> 6) & 63]);
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

/// @brief The length of the unpadded base64 encoding of @p n bytes.
constexpr std::size_t base64_unpadded_size(std::size_t n) noexcept { return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0); }

/// @brief Writes the unpadded base64url encoding of @p n bytes at @p in to
/// @p out (base64_unpadded_size(n) chars); returns the end of what it wrote.
/// @brief Every 12-bit value as its two base64url symbols: two lookups per
/// three input bytes instead of four.
struct base64url_pair_table {
  char pairs[4096][2];
  constexpr base64url_pair_table() : pairs() {
    constexpr const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 4096; ++i) {
      pairs[i][0] = alphabet[i >> 6];
      pairs[i][1] = alphabet[i & 63];
    }
  }
};

inline char* base64url_encode_to(char* out, const unsigned char* in, std::size_t n) noexcept {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static constexpr base64url_pair_table table{};
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    std::memcpy(out, table.pairs[v >> 12], 2);
    std::memcpy(out + 2, table.pairs[v & 4095], 2);
    out += 4;
  }
  if (n - i == 1) {
    const std::uint32_t v = std::uint32_t{in[i]} << 16;
    *out++ = alphabet[v >> 18];
    *out++ = alphabet[(v >> 12) & 63];
  } else if (n - i == 2) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
    *out++ = alphabet[v >> 18];
    *out++ = alphabet[(v >> 12) & 63];
    *out++ = alphabet[(v >> 6) & 63];
  }
  return out;
}

/// @brief base64url symbol values; 0xFF for every byte outside the alphabet.
/// `at[k]` holds each value already shifted into position k of a 4-symbol
/// group (18, 12, 6, 0 bits), with bit 31 set for a foreign byte.
struct base64url_table {
  unsigned char v[256];
  std::uint32_t at[4][256];
  constexpr base64url_table() : v(), at() {
    for (int i = 0; i < 256; ++i) v[i] = 0xFF;
    for (int i = 0; i < 26; ++i) {
      v['A' + i] = static_cast<unsigned char>(i);
      v['a' + i] = static_cast<unsigned char>(26 + i);
    }
    for (int i = 0; i < 10; ++i) v['0' + i] = static_cast<unsigned char>(52 + i);
    v[static_cast<unsigned char>('-')] = 62;
    v[static_cast<unsigned char>('_')] = 63;
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 256; ++i)
        at[k][i] = v[i] == 0xFF ? 0x80000000u : static_cast<std::uint32_t>(v[i]) << (18 - 6 * k);
  }
};

/// @brief Strict unpadded base64url decode of @p in into @p out, which has
/// room for in.size() / 4 * 3 + 2 bytes; the same rules as base64url_decode
/// (no padding or foreign byte, no impossible length, zero trailing bits).
/// Returns the decoded length, or -1.
inline long base64url_decode_to(std::string_view in, unsigned char* out) noexcept {
  static constexpr base64url_table table{};
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  if (n % 4 == 1) return -1;
  unsigned char* o = out;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const std::uint32_t v = table.at[0][p[i]] | table.at[1][p[i + 1]] | table.at[2][p[i + 2]] | table.at[3][p[i + 3]];
    if (v & 0x80000000u) return -1;
    o[0] = static_cast<unsigned char>(v >> 16);
    o[1] = static_cast<unsigned char>(v >> 8);
    o[2] = static_cast<unsigned char>(v);
    o += 3;
  }
  const std::size_t rest = n - i;
  if (rest >= 2) {
    const std::uint32_t a = table.v[p[i]], b = table.v[p[i + 1]], c = rest == 3 ? table.v[p[i + 2]] : 0u;
    if ((a | b | c) & 0x80) return -1;
    if (rest == 2) {
      if (b & 0x0F) return -1;  // "Xl", "Xm", "Xn" are not aliases of "Xk"
      *o++ = static_cast<unsigned char>((a << 2) | (b >> 4));
    } else {
      if (c & 0x03) return -1;
      const std::uint32_t v = (a << 18) | (b << 12) | (c << 6);
      *o++ = static_cast<unsigned char>(v >> 16);
      *o++ = static_cast<unsigned char>(v >> 8);
    }
  }
  return static_cast<long>(o - out);
}

}  // namespace detail

/// @brief base64url without padding (RFC 7515 §2).
inline std::string base64url_encode(std::string_view in) {
  return detail::base64_encode_impl(in, true, false);
}

/// @brief Strict base64url decode: no padding, no '+', '/', whitespace, and
/// no non-zero trailing bits. Returns nothing on any violation.
inline std::optional<std::string> base64url_decode(std::string_view in) {
  std::string out;
  if (!detail::base64_decode_symbols(in, true, out)) return std::nullopt;
  return out;
}

/// @brief Standard base64 with padding (RFC 4648 §4), as HTTP Basic uses it.
inline std::string base64_encode(std::string_view in) {
  return detail::base64_encode_impl(in, false, true);
}

/// @brief Strict standard base64 decode: padding required to a multiple of
/// four, canonical trailing bits, nothing outside the alphabet.
inline std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  std::string out;
  if (!detail::base64_decode_symbols(in.substr(0, in.size() - pad), false, out)) return std::nullopt;
  return out;
}

}  // namespace iwsec
// ----- end iwsec/detail/base64.hpp -----
// ----- begin iwsec/detail/crypto.hpp -----
/// @file
/// @brief The OpenSSL primitives iwsec is built on: CSPRNG, SHA-256, HMAC with
/// precomputed key states, constant-time comparison, UUID v4.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <climits>
#include <cstring>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

// ----- begin iwsec/detail/hex.hpp -----
/// @brief Lower-case hexadecimal: the one digit table iwsec writes hex with, and its reader.
/// @file

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iwsec {
namespace detail {

/// @brief The lower-case hex digit of the low four bits of @p v.
constexpr char hex_digit(std::uint64_t v) noexcept { return "0123456789abcdef"[v & 15]; }

/// @brief The upper-case hex digit of @p v's low four bits (percent-escapes, RFC 3986).
constexpr char hex_digit_upper(std::uint64_t v) noexcept { return "0123456789ABCDEF"[v & 15]; }

/// @brief @p n bytes as 2n lower-case hex digits.
inline std::string hex_encode(const unsigned char* data, std::size_t n) {
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = hex_digit(data[i] >> 4);
    out[2 * i + 1] = hex_digit(data[i]);
  }
  return out;
}

/// @brief The value of lower-case hex digit @p c (what hex_digit writes);
/// -1 for any other character, upper-case digits included.
constexpr int hex_nibble(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/// @brief The bytes of lower-case hex @p hex (what hex_encode writes);
/// nothing for an odd length or any other character.
inline std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_nibble(hex[i]), lo = hex_nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/hex.hpp -----

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// HMAC and PBKDF2 run the SHA-256 compression function directly from
// precomputed key states (SHA256_Transform: OpenSSL's assembly, SHA-NI where the
// CPU has it). OpenSSL 3.0 deprecates that low-level API, so it is used only
// while the headers still declare it: a build with OPENSSL_NO_DEPRECATED (which
// makes <openssl/macros.h> define OPENSSL_NO_DEPRECATED_3_0), or one that
// defines IWSEC_NO_LOW_LEVEL_SHA256, takes the EVP path instead, with the same
// results. Every translation unit of a program must make the same choice.
#if !defined(IWSEC_NO_LOW_LEVEL_SHA256) && !defined(OPENSSL_NO_DEPRECATED_3_0)
#define IWSEC_LOW_LEVEL_SHA256 1
#else
#define IWSEC_LOW_LEVEL_SHA256 0
#endif

namespace iwsec {
namespace detail {

struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_deleter>;

/// @brief SHA-256, fetched once: OpenSSL 3 spends more time looking an
/// algorithm up by name than hashing a short input.
inline const EVP_MD* sha256_md() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched ? fetched : EVP_sha256();
  }();
  return md;
}

inline md_ctx_ptr new_md_ctx() {
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx) throw std::bad_alloc();
  return ctx;
}

/// @brief A per-thread scratch digest context, reused across calls.
inline EVP_MD_CTX* thread_md_ctx() {
  thread_local md_ctx_ptr ctx = new_md_ctx();
  return ctx.get();
}

using sha256_digest = std::array<unsigned char, 32>;

/// @brief Fills @p out with @p n bytes from OpenSSL's CSPRNG; throws if the
/// generator cannot deliver (never silently weak randomness).
inline void random_bytes(unsigned char* out, std::size_t n) {
  if (n > 0 && RAND_bytes(out, static_cast<int>(n)) != 1) throw crypto_error("iwsec: RAND_bytes failed");
}

inline std::string random_string(std::size_t n) {
  std::string s(n, '\0');
  random_bytes(reinterpret_cast<unsigned char*>(&s[0]), n);
  return s;
}

inline sha256_digest sha256(std::string_view data) {
  sha256_digest out{};
  EVP_MD_CTX* ctx = thread_md_ctx();
  unsigned int len = 0;
  if (EVP_DigestInit_ex(ctx, sha256_md(), nullptr) != 1 || EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, out.data(), &len) != 1)
    throw crypto_error("iwsec: SHA-256 failed");
  return out;
}

inline std::string sha256_hex(std::string_view data) {
  const auto d = sha256(data);
  return hex_encode(d.data(), d.size());
}

/// @brief Equality in time that depends only on the lengths.
inline bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

/// @brief True when HMAC and PBKDF2 use the low-level SHA-256 compression
/// function; false on the EVP path (see IWSEC_LOW_LEVEL_SHA256).
constexpr bool sha256_low_level = IWSEC_LOW_LEVEL_SHA256 != 0;

inline void store_be32(unsigned char* p, std::uint32_t v) noexcept {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

/// @brief An HMAC-SHA256 key as one 64-byte block: a longer key is hashed
/// first (RFC 2104), a shorter one padded with zeros.
inline std::array<unsigned char, 64> hmac_key_block(std::string_view key) {
  std::array<unsigned char, 64> block{};
  if (key.size() > block.size()) {
    const auto d = sha256(key);
    std::copy(d.begin(), d.end(), block.begin());
  } else {
    std::copy(key.begin(), key.end(), block.begin());
  }
  return block;
}

#if IWSEC_LOW_LEVEL_SHA256

/// @brief The eight chaining words of SHA-256 between blocks.
struct sha256_state {
  std::uint32_t h[8];
};

/// @brief Runs the compression function over @p blocks 64-byte blocks. With
/// sha256_iterate, the only code calling OpenSSL's deprecated SHA-256 API; the
/// warning is silenced around those calls alone.
inline void sha256_compress(sha256_state& st, const unsigned char* data, std::size_t blocks) noexcept {
  SHA256_CTX ctx;
  static_assert(sizeof ctx.h == sizeof st.h, "SHA256_CTX chaining state is eight 32-bit words");
  std::memcpy(ctx.h, st.h, sizeof st.h);
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
  if (blocks == 1) {
    SHA256_Transform(&ctx, data);
  } else if (blocks > 1) {
    // SHA256_Update hands whole blocks to the block function in one call.
    ctx.Nl = ctx.Nh = 0;
    ctx.num = 0;
    SHA256_Update(&ctx, data, 64 * blocks);
  }
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
  std::memcpy(st.h, ctx.h, sizeof st.h);
}

/// @brief SHA-256's initial chaining value (FIPS 180-4 5.3.3).
inline sha256_state sha256_initial_state() noexcept {
  return sha256_state{{0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu,
                       0x5be0cd19u}};
}

/// @brief Hashes the final, partial block: @p tail (< 64 bytes) plus the
/// padding for a message of @p total_bytes, continuing from @p st.
inline void sha256_finish(sha256_state& st, const unsigned char* tail, std::size_t tail_len,
                          std::uint64_t total_bytes) noexcept {
  unsigned char block[128];
  std::memcpy(block, tail, tail_len);
  block[tail_len] = 0x80;
  const std::size_t blocks = tail_len < 56 ? 1 : 2;
  std::memset(block + tail_len + 1, 0, blocks * 64 - 8 - tail_len - 1);
  const std::uint64_t bits = total_bytes * 8;
  store_be32(block + blocks * 64 - 8, static_cast<std::uint32_t>(bits >> 32));
  store_be32(block + blocks * 64 - 4, static_cast<std::uint32_t>(bits));
  sha256_compress(st, block, blocks);
}

inline void sha256_state_bytes(const sha256_state& st, unsigned char* out) noexcept {
  for (int i = 0; i < 8; ++i) store_be32(out + 4 * i, st.h[i]);
}

/// @brief PBKDF2's inner loop, @p iterations times: U = HMAC(U) from the
/// precomputed pad states, T ^= U. Each of @p inner_block and @p outer_block
/// holds the padding for a 32-byte message after one pad block; the loop
/// only rewrites their first 32 bytes.
inline void sha256_iterate(const sha256_state& inner, const sha256_state& outer, sha256_state& u, sha256_state& t,
                           std::uint32_t iterations, unsigned char* inner_block, unsigned char* outer_block) noexcept {
  SHA256_CTX ctx;
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
#if defined(__SSE2__)
  // The chaining words become the next block's first 32 bytes in two 16-byte
  // stores, so the compression function's 16-byte loads are forwarded from
  // them instead of stalling on eight 4-byte stores.
  const auto bswap32x4 = [](__m128i x) {
    x = _mm_or_si128(_mm_slli_epi16(x, 8), _mm_srli_epi16(x, 8));
    return _mm_shufflehi_epi16(_mm_shufflelo_epi16(x, 0xB1), 0xB1);
  };
  const auto put = [&](unsigned char* block, const std::uint32_t* h) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(block),
                     bswap32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(block + 16),
                     bswap32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 4))));
  };
  __m128i t0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.h));
  __m128i t1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.h + 4));
  put(inner_block, u.h);
  for (std::uint32_t r = 0; r < iterations; ++r) {
    std::memcpy(ctx.h, inner.h, sizeof ctx.h);
    SHA256_Transform(&ctx, inner_block);
    put(outer_block, ctx.h);
    std::memcpy(ctx.h, outer.h, sizeof ctx.h);
    SHA256_Transform(&ctx, outer_block);
    put(inner_block, ctx.h);
    t0 = _mm_xor_si128(t0, _mm_loadu_si128(reinterpret_cast<const __m128i*>(ctx.h)));
    t1 = _mm_xor_si128(t1, _mm_loadu_si128(reinterpret_cast<const __m128i*>(ctx.h + 4)));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(t.h), t0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(t.h + 4), t1);
  std::memcpy(u.h, ctx.h, sizeof u.h);
#else
  for (std::uint32_t r = 0; r < iterations; ++r) {
    sha256_state_bytes(u, inner_block);
    std::memcpy(ctx.h, inner.h, sizeof ctx.h);
    SHA256_Transform(&ctx, inner_block);
    for (int i = 0; i < 8; ++i) store_be32(outer_block + 4 * i, ctx.h[i]);
    std::memcpy(ctx.h, outer.h, sizeof ctx.h);
    SHA256_Transform(&ctx, outer_block);
    std::memcpy(u.h, ctx.h, sizeof u.h);
    for (int i = 0; i < 8; ++i) t.h[i] ^= u.h[i];
  }
#endif
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
  OPENSSL_cleanse(&ctx, sizeof ctx);
}

/// @brief HMAC-SHA256 under one key, kept as the SHA-256 states after the
/// inner and outer pad blocks: a MAC of n bytes costs ceil((n + 9) / 64) + 1
/// compression calls and no allocation. Read-only after construction, so
/// threads may share one.
class hmac_sha256_key {
 public:
  explicit hmac_sha256_key(std::string_view key) {
    std::array<unsigned char, 64> block = hmac_key_block(key);  // cleansed below
    std::array<unsigned char, 64> pad{};
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x36;
    inner_ = sha256_initial_state();
    sha256_compress(inner_, pad.data(), 1);
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x5c;
    outer_ = sha256_initial_state();
    sha256_compress(outer_, pad.data(), 1);
    OPENSSL_cleanse(block.data(), block.size());
    OPENSSL_cleanse(pad.data(), pad.size());
  }
  ~hmac_sha256_key() { OPENSSL_cleanse(this, sizeof *this); }
  hmac_sha256_key(const hmac_sha256_key&) = default;
  hmac_sha256_key& operator=(const hmac_sha256_key&) = default;

  sha256_digest mac(std::string_view data) const noexcept {
    sha256_digest out{};
    mac(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
    return out;
  }

  /// @brief The MAC of @p n bytes at @p data into @p out (32 bytes).
  void mac(const unsigned char* data, std::size_t n, unsigned char* out) const noexcept {
    sha256_state st = inner_;
    const std::size_t full = n / 64;
    sha256_compress(st, data, full);
    sha256_finish(st, data + full * 64, n - full * 64, 64 + static_cast<std::uint64_t>(n));
    outer_digest(st, out);
  }

  /// @brief PBKDF2-HMAC-SHA256 (RFC 8018) with this object's key as the
  /// password: two compression calls per iteration, on pre-padded blocks.
  void pbkdf2(const unsigned char* salt, std::size_t salt_len, std::uint32_t rounds, unsigned char* out,
              std::size_t length) const {
    std::string first(salt_len + 4, '\0');
    if (salt_len) std::memcpy(&first[0], salt, salt_len);
    // Both blocks of an iteration hash 32 bytes after a 64-byte pad block.
    unsigned char inner_block[64] = {};
    unsigned char outer_block[64] = {};
    for (unsigned char* b : {inner_block, outer_block}) {
      b[32] = 0x80;
      store_be32(b + 60, (64 + 32) * 8);
    }
    for (std::uint32_t index = 1; length > 0; ++index) {
      store_be32(reinterpret_cast<unsigned char*>(&first[salt_len]), index);
      unsigned char u[32];
      mac(reinterpret_cast<const unsigned char*>(first.data()), first.size(), u);
      sha256_state t{};
      sha256_state prev{};
      for (int i = 0; i < 8; ++i) {
        t.h[i] = prev.h[i] = (std::uint32_t{u[4 * i]} << 24) | (std::uint32_t{u[4 * i + 1]} << 16) |
                             (std::uint32_t{u[4 * i + 2]} << 8) | std::uint32_t{u[4 * i + 3]};
      }
      sha256_iterate(inner_, outer_, prev, t, rounds - 1, inner_block, outer_block);
      unsigned char block_out[32];
      sha256_state_bytes(t, block_out);
      const std::size_t take = std::min<std::size_t>(length, 32);
      std::memcpy(out, block_out, take);
      out += take;
      length -= take;
      OPENSSL_cleanse(block_out, sizeof block_out);
      OPENSSL_cleanse(&t, sizeof t);
      OPENSSL_cleanse(&prev, sizeof prev);
      OPENSSL_cleanse(u, sizeof u);
    }
    OPENSSL_cleanse(inner_block, sizeof inner_block);
    OPENSSL_cleanse(outer_block, sizeof outer_block);
  }

 private:
  void outer_digest(const sha256_state& inner_hash, unsigned char* out) const noexcept {
    unsigned char block[64];
    sha256_state_bytes(inner_hash, block);
    block[32] = 0x80;
    std::memset(block + 33, 0, 64 - 33 - 4);
    store_be32(block + 60, (64 + 32) * 8);
    sha256_state st = outer_;
    sha256_compress(st, block, 1);
    sha256_state_bytes(st, out);
  }

  sha256_state inner_{};
  sha256_state outer_{};
};

#else  // EVP path: no deprecated OpenSSL call.

/// @brief HMAC-SHA256 under one key, with the inner and outer pad blocks
/// absorbed once at construction; each MAC copies those states. The object is
/// read-only after construction, so threads may share it.
class hmac_sha256_key {
 public:
  explicit hmac_sha256_key(std::string_view key) : inner_(new_md_ctx()), outer_(new_md_ctx()) {
    std::array<unsigned char, 64> block = hmac_key_block(key);  // cleansed below
    std::array<unsigned char, 64> pad{};
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x36;
    absorb(inner_.get(), pad);
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x5c;
    absorb(outer_.get(), pad);
    OPENSSL_cleanse(block.data(), block.size());
    OPENSSL_cleanse(pad.data(), pad.size());
  }

  sha256_digest mac(std::string_view data) const {
    sha256_digest out{};
    mac(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
    return out;
  }

  void mac(const unsigned char* data, std::size_t n, unsigned char* out) const {
    sha256_digest inner_hash{};
    unsigned int len = 0;
    EVP_MD_CTX* work = thread_md_ctx();
    if (EVP_MD_CTX_copy_ex(work, inner_.get()) != 1 || EVP_DigestUpdate(work, data, n) != 1 ||
        EVP_DigestFinal_ex(work, inner_hash.data(), &len) != 1 || EVP_MD_CTX_copy_ex(work, outer_.get()) != 1 ||
        EVP_DigestUpdate(work, inner_hash.data(), inner_hash.size()) != 1 || EVP_DigestFinal_ex(work, out, &len) != 1)
      throw crypto_error("iwsec: HMAC-SHA256 failed");
  }

 private:
  static void absorb(EVP_MD_CTX* ctx, const std::array<unsigned char, 64>& pad) {
    if (EVP_DigestInit_ex(ctx, sha256_md(), nullptr) != 1 || EVP_DigestUpdate(ctx, pad.data(), pad.size()) != 1)
      throw crypto_error("iwsec: HMAC-SHA256 key setup failed");
  }

  md_ctx_ptr inner_;
  md_ctx_ptr outer_;
};

#endif  // IWSEC_LOW_LEVEL_SHA256

/// @brief PBKDF2-HMAC-SHA256 into @p out: the same bytes as OpenSSL's
/// PKCS5_PBKDF2_HMAC, from precomputed key states where the low-level
/// compression function is available, else from PKCS5_PBKDF2_HMAC itself.
inline void pbkdf2_hmac_sha256(std::string_view password, std::string_view salt, std::uint32_t rounds,
                               unsigned char* out, std::size_t length) {
  if (rounds == 0 || rounds > static_cast<std::uint32_t>(INT_MAX) || length > static_cast<std::size_t>(INT_MAX))
    throw crypto_error("iwsec: PBKDF2 failed");
#if IWSEC_LOW_LEVEL_SHA256
  if (length == 0) return;
  hmac_sha256_key(password).pbkdf2(reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), rounds, out,
                                   length);
#else
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        static_cast<int>(rounds), sha256_md(), static_cast<int>(length), out) != 1)
    throw crypto_error("iwsec: PBKDF2 failed");
#endif
}

/// @brief Writes a random (version 4) UUID in lower-case canonical form to
/// @p out (36 chars) and returns a view of it.
inline std::string_view uuid_v4_to(char* out) {
  unsigned char b[16];
  random_bytes(b, sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  char* w = out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *w++ = '-';
    *w++ = hex_digit(b[i] >> 4);
    *w++ = hex_digit(b[i]);
  }
  return std::string_view(out, 36);
}

/// @brief A random (version 4) UUID in lower-case canonical form.
inline std::string uuid_v4() {
  char buf[36];
  return std::string(uuid_v4_to(buf));
}

/// @brief The 128 bits of a jti in canonical UUID text form (8-4-4-4-12
/// lower-case hex digits, which is what Signer issues and accepts); false
/// for any other text. The mapping is one-to-one both ways.
inline bool parse_uuid_key(std::string_view s, std::uint64_t& hi, std::uint64_t& lo) noexcept {
  if (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
  std::uint64_t half[2] = {0, 0};
  int digits = 0;
  for (std::size_t i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    const int d = hex_nibble(s[i]);
    if (d < 0) return false;
    half[digits >> 4] = (half[digits >> 4] << 4) | static_cast<unsigned>(d);
    ++digits;
  }
  hi = half[0];
  lo = half[1];
  return true;
}

/// @brief True for a version 4 (random) UUID in canonical lower-case
/// 8-4-4-4-12 hex form: what uuid_v4() makes.
inline bool is_canonical_uuid(std::string_view s) noexcept {
  std::uint64_t hi = 0, lo = 0;
  return parse_uuid_key(s, hi, lo) && s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
}

/// @brief ASCII lower-casing (bytes >= 0x80 untouched), how emails are keyed.
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/crypto.hpp -----
// ----- begin iwsec/detail/json.hpp -----
/// @file
/// @brief picojson with the strictness a token verifier needs: duplicate keys,
/// non-finite numbers and deep nesting are parse errors, never exceptions.

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include <picojson.h>


// iwsec reads every JSON number as a double and checks integrality itself, so
// it works whether or not the host compiles picojson with PICOJSON_USE_INT64;
// the only requirement is that picojson's own parse entry points exist.

namespace iwsec {
namespace detail {

/// @brief A picojson parse context that refuses what RFC 8725 says to refuse.
class strict_json_context {
 public:
  strict_json_context(picojson::value* out, std::size_t depth_left, bool* rejected)
      : out_(out), depth_left_(depth_left), rejected_(rejected) {}
  strict_json_context(const strict_json_context&) = delete;
  strict_json_context& operator=(const strict_json_context&) = delete;

  bool set_null() {
    *out_ = picojson::value();
    return true;
  }
  bool set_bool(bool b) {
    *out_ = picojson::value(b);
    return true;
  }
#ifdef PICOJSON_USE_INT64
  bool set_int64(std::int64_t i) {
    *out_ = picojson::value(static_cast<double>(i));
    return true;
  }
#endif
  bool set_number(double f) {
    // picojson's value(double) throws on inf/nan ("1e309"), and picojson
    // ignores this function's result, so the refusal is recorded on the side.
    if (!std::isfinite(f)) {
      *rejected_ = true;
      return false;
    }
    *out_ = picojson::value(f);
    return true;
  }
  template <typename Iter>
  bool parse_string(picojson::input<Iter>& in) {
    *out_ = picojson::value(picojson::string_type, false);
    return picojson::_parse_string(out_->get<std::string>(), in);
  }
  bool parse_array_start() {
    if (depth_left_ == 0) return false;
    --depth_left_;
    *out_ = picojson::value(picojson::array_type, false);
    return true;
  }
  template <typename Iter>
  bool parse_array_item(picojson::input<Iter>& in, std::size_t) {
    auto& a = out_->get<picojson::array>();
    a.emplace_back();
    strict_json_context ctx(&a.back(), depth_left_, rejected_);
    return picojson::_parse(ctx, in);
  }
  bool parse_array_stop(std::size_t) {
    ++depth_left_;
    return true;
  }
  bool parse_object_start() {
    if (depth_left_ == 0) return false;
    --depth_left_;
    *out_ = picojson::value(picojson::object_type, false);
    return true;
  }
  template <typename Iter>
  bool parse_object_item(picojson::input<Iter>& in, const std::string& key) {
    auto& o = out_->get<picojson::object>();
    auto inserted = o.emplace(key, picojson::value());
    if (!inserted.second) return false;  // duplicate member name
    strict_json_context ctx(&inserted.first->second, depth_left_, rejected_);
    return picojson::_parse(ctx, in);
  }
  bool parse_object_stop() {
    ++depth_left_;
    return true;
  }

 private:
  picojson::value* out_;
  std::size_t depth_left_;
  bool* rejected_;
};

/// @brief Length of the valid UTF-8 sequence starting at @p i (a byte >= 0x80),
/// or 0: no overlong forms, no surrogates, nothing above U+10FFFF.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  const unsigned c = byte(i);
  const auto cont = [&](std::size_t k) { return (byte(k) & 0xC0u) == 0x80u; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;   // overlong
    if (c == 0xED && c1 >= 0xA0) return 0;  // UTF-16 surrogate
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 >= 0x90) return 0;  // above U+10FFFF
    return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

/// @brief Whether @p s is entirely valid UTF-8.
inline bool is_valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
    } else {
      const std::size_t n = utf8_sequence_length(s, i);
      if (n == 0) return false;
      i += n;
    }
  }
  return true;
}

/// @brief What picojson lets through and RFC 8259 does not: numbers such as
/// `01`, `1.`, `.5`, `-` or `1e`, and invalid UTF-8 inside strings. With
/// @p integers_only, a number may not have a fraction or an exponent either.
inline bool json_text_is_strict(std::string_view text, bool integers_only) noexcept {
  const auto digit = [&](std::size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"') {
      for (++i; i < text.size() && text[i] != '"';) {
        const auto b = static_cast<unsigned char>(text[i]);
        if (b == '\\') {
          i += 2;  // picojson checks the escape itself
        } else if (b < 0x80) {
          ++i;
        } else {
          const std::size_t n = utf8_sequence_length(text, i);
          if (n == 0) return false;
          i += n;
        }
      }
      ++i;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t j = i + (c == '-' ? 1 : 0);
      if (!digit(j)) return false;
      if (text[j] == '0') {
        ++j;
      } else {
        while (digit(j)) ++j;
      }
      if (j < text.size() && text[j] == '.') {
        if (integers_only || !digit(++j)) return false;
        while (digit(j)) ++j;
      }
      if (j < text.size() && (text[j] == 'e' || text[j] == 'E')) {
        if (integers_only) return false;
        ++j;
        if (j < text.size() && (text[j] == '+' || text[j] == '-')) ++j;
        if (!digit(j)) return false;
        while (digit(j)) ++j;
      }
      // Whatever picojson would still swallow as part of this number ("01", "1.2.3", "1e5e5").
      if (j < text.size() && (digit(j) || text[j] == '.' || text[j] == 'e' || text[j] == 'E' || text[j] == '+' ||
                              text[j] == '-'))
        return false;
      i = j;
    } else {
      ++i;
    }
  }
  return true;
}

/// @brief Parses one complete JSON text strictly; trailing bytes other than
/// whitespace, duplicate keys, non-finite numbers or nesting deeper than
/// @p max_depth make it fail, as do the forms json_text_is_strict refuses.
inline std::optional<picojson::value> parse_json_strict(std::string_view text, std::size_t max_depth = 16,
                                                        bool integers_only = false) {
  if (!json_text_is_strict(text, integers_only)) return std::nullopt;
  picojson::value out;
  bool rejected = false;
  strict_json_context ctx(&out, max_depth, &rejected);
  picojson::input<std::string_view::const_iterator> in(text.begin(), text.end());
  try {
    if (!picojson::_parse(ctx, in) || rejected) return std::nullopt;
  } catch (...) {  // allocation failure or a picojson invariant: a parse error to us
    return std::nullopt;
  }
  in.skip_ws();
  if (in.getc() != -1) return std::nullopt;
  return out;
}


// ---- The verifier's parser -------------------------------------------------
//
// parse_json_strict builds a picojson DOM; the token verifier instead walks
// the text once with flat_json_parser, which accepts and refuses exactly what
// parse_json_strict(text, max_depth, /*integers_only=*/true) does: RFC 8259
// syntax (whitespace " \t\n\r" only), integers only (no fraction or exponent,
// no leading zero, nothing that overflows a double), strings of valid UTF-8
// without raw control characters, the escapes \" \\ \/ \b \f \n \r \t \uXXXX
// with surrogates only in valid pairs, no duplicate member names (compared
// after unescaping) in any object, and nesting no deeper than max_depth. It
// reports the top-level members of an object to a callback, with strings
// already unescaped, and allocates nothing for an object of up to 16 members
// per level.

/// @brief What a JSON value is, as flat_json_parser reports it.
enum class json_kind : unsigned char { string, number, object, array, literal };

/// @brief One member value: its kind, its text as written, and for a string
/// its unescaped contents.
struct json_value_view {
  json_kind kind = json_kind::literal;
  std::string_view raw;   ///< the value's text, as in the input
  std::string_view text;  ///< strings only: the contents, unescaped
};

/// @brief Member names of one object, for the duplicate check.
class json_key_set {
 public:
  json_key_set() = default;
  json_key_set(const json_key_set&) = delete;
  json_key_set& operator=(const json_key_set&) = delete;
  /// @brief False when @p key was already there.
  bool insert(std::string_view key) {
    if (big_) return big_->insert(key).second;
    for (std::size_t i = 0; i < n_; ++i)
      if (size_[i] == key.size() && (key.empty() || (data_[i][0] == key[0] &&
                                                     std::memcmp(data_[i], key.data(), key.size()) == 0)))
        return false;
    if (n_ < small_capacity) {
      data_[n_] = key.data();
      size_[n_++] = key.size();
      return true;
    }
    big_ = std::make_unique<std::unordered_set<std::string_view>>();
    for (std::size_t i = 0; i < n_; ++i) big_->insert(std::string_view(data_[i], size_[i]));
    return big_->insert(key).second;
  }

 private:
  static constexpr std::size_t small_capacity = 16;
  const char* data_[small_capacity];  // left uninitialised: only [0, n_) is read
  std::size_t size_[small_capacity];
  std::size_t n_ = 0;
  std::unique_ptr<std::unordered_set<std::string_view>> big_;
};

/// @brief A strict single-pass JSON parser for one object (see above).
class flat_json_parser {
 public:
  /// @param scratch room for text.size() bytes: unescaped strings go there
  /// (an unescaped string is never longer than its escaped form).
  flat_json_parser(std::string_view text, char* scratch) noexcept
      : p_(text.data()), end_(text.data() + text.size()), scratch_(scratch) {}

  /// @brief Parses the whole text as one object nested at most @p max_depth
  /// deep, calling on_member(std::string_view name, const json_value_view&)
  /// for each top-level member. False on any violation (the callback may
  /// already have run for earlier members).
  template <typename OnMember>
  bool parse_object(std::size_t max_depth, OnMember&& on_member) {
    skip_ws();
    if (p_ == end_ || *p_ != '{') return false;
    if (!object(max_depth, on_member)) return false;
    skip_ws();
    return p_ == end_;
  }

 private:
  struct ignore_members {
    void operator()(std::string_view, const json_value_view&) const noexcept {}
  };

  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  /// @brief A byte that stands for itself inside a string: ASCII, not a
  /// control character, quote or backslash.
  static bool plain_ascii(char ch) noexcept {
    struct table {
      bool plain[256];
      constexpr table() : plain() {
        for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
      }
    };
    static constexpr table t{};
    return t.plain[static_cast<unsigned char>(ch)];
  }

  /// @brief The first byte at or after @p p that is not plain_ascii (or @p end),
  /// eight bytes at a time while none of them needs a look.
  static const char* skip_plain(const char* p, const char* end) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
      std::uint64_t x;
      std::memcpy(&x, p, 8);
      const std::uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
      // Exact "is any byte ...": < 0x20, == '"', == '\\', or >= 0x80.
      const std::uint64_t flags = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) |
                                  ((backslash - ones) & ~backslash) | x;
      if (flags & highs) break;
      p += 8;
    }
    while (p != end && plain_ascii(*p)) ++p;
    return p;
  }

  void skip_ws() noexcept {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  template <typename OnMember>
  bool object(std::size_t depth_left, OnMember& on_member) {
    if (depth_left == 0) return false;
    ++p_;  // '{'
    skip_ws();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    json_key_set keys;
    for (;;) {
      skip_ws();
      std::string_view key;
      if (p_ == end_ || *p_ != '"' || !string(key)) return false;
      skip_ws();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      if (!keys.insert(key)) return false;
      json_value_view v;
      if (!value(depth_left - 1, v)) return false;
      on_member(key, static_cast<const json_value_view&>(v));
      skip_ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != '}') return false;
      ++p_;
      return true;
    }
  }

  bool array(std::size_t depth_left) {
    if (depth_left == 0) return false;
    ++p_;  // '['
    skip_ws();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      json_value_view v;
      if (!value(depth_left - 1, v)) return false;
      skip_ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != ']') return false;
      ++p_;
      return true;
    }
  }

  bool literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  bool value(std::size_t depth_left, json_value_view& v) {
    skip_ws();
    if (p_ == end_) return false;
    const char* start = p_;
    switch (*p_) {
      case '"':
        v.kind = json_kind::string;
        if (!string(v.text)) return false;
        break;
      case '{': {
        v.kind = json_kind::object;
        ignore_members ignore;
        if (!object(depth_left, ignore)) return false;
        break;
      }
      case '[':
        v.kind = json_kind::array;
        if (!array(depth_left)) return false;
        break;
      case 't':
        if (!literal("true")) return false;
        break;
      case 'f':
        if (!literal("false")) return false;
        break;
      case 'n':
        if (!literal("null")) return false;
        break;
      default:
        v.kind = json_kind::number;
        if (!number()) return false;
    }
    v.raw = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  // -?(0|[1-9][0-9]*), not followed by a fraction, an exponent or more of a
  // number, and finite as a double.
  bool number() {
    const char* start = p_;
    if (*p_ == '-') ++p_;
    if (p_ == end_ || !is_digit(*p_)) return false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (p_ != end_ && (is_digit(*p_) || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' || *p_ == '-'))
      return false;
    // Up to 308 digits is always finite; beyond, ask strtod as picojson does.
    if (p_ - start > 300) {
      const std::string digits(start, p_);
      if (!std::isfinite(std::strtod(digits.c_str(), nullptr))) return false;
    }
    return true;
  }

  static int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  bool quad_hex(unsigned& out) noexcept {
    if (end_ - p_ < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex_value(p_[i]);
      if (h < 0) return false;
      v = (v << 4) | static_cast<unsigned>(h);
    }
    p_ += 4;
    out = v;
    return true;
  }

  static char* put_utf8(char* w, unsigned cp) noexcept {
    if (cp < 0x80) {
      *w++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *w++ = static_cast<char>(0xC0 | (cp >> 6));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *w++ = static_cast<char>(0xE0 | (cp >> 12));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *w++ = static_cast<char>(0xF0 | (cp >> 18));
      *w++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
    return w;
  }

  /// @brief At a '"': the string's contents, unescaped (a view of the input
  /// when it holds no escape, else of the scratch area).
  bool string(std::string_view& out) {
    ++p_;  // '"'
    const char* start = p_;
    for (;;) {  // the common case: no escape at all
      p_ = skip_plain(p_, end_);
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        out = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c == '\\') break;
      if (c < 0x20) return false;
      if (c < 0x80) {
        ++p_;
      } else {
        const std::size_t n = utf8_sequence_length(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
        if (n == 0) return false;
        p_ += n;
      }
    }
    char* const begin = scratch_;
    char* w = begin;
    std::memcpy(w, start, static_cast<std::size_t>(p_ - start));
    w += p_ - start;
    for (;;) {
      while (p_ != end_ && plain_ascii(*p_)) *w++ = *p_++;  // runs between escapes are short
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        out = std::string_view(begin, static_cast<std::size_t>(w - begin));
        scratch_ = w;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++p_ == end_) return false;
        switch (*p_++) {
          case '"': *w++ = '"'; break;
          case '\\': *w++ = '\\'; break;
          case '/': *w++ = '/'; break;
          case 'b': *w++ = '\b'; break;
          case 'f': *w++ = '\f'; break;
          case 'n': *w++ = '\n'; break;
          case 'r': *w++ = '\r'; break;
          case 't': *w++ = '\t'; break;
          case 'u': {
            unsigned cp = 0;
            if (!quad_hex(cp)) return false;
            if (cp >= 0xD800 && cp <= 0xDFFF) {
              if (cp >= 0xDC00) return false;  // a low surrogate first
              unsigned low = 0;
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
              p_ += 2;
              if (!quad_hex(low) || low < 0xDC00 || low > 0xDFFF) return false;
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            w = put_utf8(w, cp);
            break;
          }
          default: return false;
        }
      } else if (c < 0x80) {
        *w++ = static_cast<char>(c);
        ++p_;
      } else {
        const std::size_t n = utf8_sequence_length(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
        if (n == 0) return false;
        std::memcpy(w, p_, n);
        w += n;
        p_ += n;
      }
    }
  }

  const char* p_;
  const char* end_;
  char* scratch_;
};

/// @brief A number member that is an integer in [0, 2^53), from its text:
/// what json_non_negative_integer accepts of the same value ("-0" included
/// among the refused).
inline std::optional<std::int64_t> json_non_negative_integer(const json_value_view& v) noexcept {
  if (v.kind != json_kind::number || v.raw.empty() || v.raw[0] == '-' || v.raw.size() > 16) return std::nullopt;
  std::int64_t n = 0;
  for (char c : v.raw) n = n * 10 + (c - '0');
  if (n >= (std::int64_t{1} << 53)) return std::nullopt;
  return n;
}

/// @brief Copies @p s to @p w; returns the end.
inline char* put(char* w, std::string_view s) noexcept {
  std::memcpy(w, s.data(), s.size());
  return w + s.size();
}

/// @brief Writes @p v in decimal (at most 20 chars); returns the end.
inline char* put_int(char* w, std::int64_t v) noexcept { return std::to_chars(w, w + 20, v).ptr; }

/// @brief Writes @p s JSON-escaped, without quotes (at most 6 chars per
/// byte); returns the end. The one escaping rule of iwsec's JSON output.
inline char* put_json_escaped(char* w, std::string_view s) noexcept {
  for (unsigned char c : s) {
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) {
      *w++ = static_cast<char>(c);
      continue;
    }
    *w++ = '\\';
    switch (c) {
      case '"': *w++ = '"'; break;
      case '\\': *w++ = '\\'; break;
      case '\b': *w++ = 'b'; break;
      case '\f': *w++ = 'f'; break;
      case '\n': *w++ = 'n'; break;
      case '\r': *w++ = 'r'; break;
      case '\t': *w++ = 't'; break;
      default:
        w = put(w, "u00");
        *w++ = hex_digit(c >> 4);
        *w++ = hex_digit(c);
    }
  }
  return w;
}

/// @brief Appends @p s as a JSON string literal (quotes included), escaped
/// by put_json_escaped.
inline void append_json_string(std::string& out, std::string_view s) {
  const std::size_t at = out.size();
  out.resize(at + 2 + 6 * s.size());  // put_json_escaped writes at most 6 chars per byte
  char* w = &out[at];
  *w++ = '"';
  w = put_json_escaped(w, s);
  *w++ = '"';
  out.resize(static_cast<std::size_t>(w - out.data()));
}

/// @brief Writes @p s JSON-escaped and then escaped again (a string inside a
/// JSON string), at most 7 chars per byte; returns the end.
inline char* put_json_escaped_twice(char* w, std::string_view s) noexcept {
  for (unsigned char c : s) {
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) {
      *w++ = static_cast<char>(c);
      continue;
    }
    char once[6];
    const char* end = put_json_escaped(once, std::string_view(reinterpret_cast<const char*>(&c), 1));
    w = put_json_escaped(w, std::string_view(once, static_cast<std::size_t>(end - once)));
  }
  return w;
}

/// @brief A JSON number that is an integer in [0, 2^53): the only NumericDate
/// (and counter) form iwsec accepts.
inline std::optional<std::int64_t> json_non_negative_integer(const picojson::value& v) {
  if (!v.is<double>()) return std::nullopt;
  const double d = v.get<double>();
  // ">=": every text above 2^53 - 1 rounds to at least 2^53, so none slips in.
  if (!(d >= 0.0) || std::signbit(d) || d >= 9007199254740992.0 || std::floor(d) != d) return std::nullopt;
  return static_cast<std::int64_t>(d);
}

/// @brief The member @p key of object @p obj, or null when absent.
inline const picojson::value* json_member(const picojson::object& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &it->second;
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/json.hpp -----
// ----- begin iwsec/detail/thread_safety.hpp -----
/// @file
/// @brief Lock discipline stated in the code: mutex and lock types that carry
/// clang's thread-safety annotations, and the macros that say which mutex
/// guards which member and which functions expect it held.
///
/// libstdc++'s std::mutex and std::shared_mutex carry no annotations, so the
/// library's own state is guarded by these thin wrappers instead. With clang
/// and `-Wthread-safety`, reading a `IWSEC_GUARDED_BY(m)` member without `m`
/// held, or calling an `IWSEC_REQUIRES(m)` function without it, is a
/// compile-time warning (CI makes it an error: .ci/thread-safety). With any
/// other compiler the macros are empty and the wrappers cost nothing.
///
/// A function named `..._locked` elsewhere is the old convention; a function
/// that expects a lock held says so with IWSEC_REQUIRES instead.

#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define IWSEC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define IWSEC_THREAD_ANNOTATION(x)
#endif

/// A type that is a lock ("mutex") for the analysis.
#define IWSEC_CAPABILITY(name) IWSEC_THREAD_ANNOTATION(capability(name))
/// An RAII type that holds a lock for its lifetime.
#define IWSEC_SCOPED_CAPABILITY IWSEC_THREAD_ANNOTATION(scoped_lockable)
/// This member is read and written only with @p m held.
#define IWSEC_GUARDED_BY(m) IWSEC_THREAD_ANNOTATION(guarded_by(m))
/// What this pointer member points at is used only with @p m held.
#define IWSEC_PT_GUARDED_BY(m) IWSEC_THREAD_ANNOTATION(pt_guarded_by(m))
/// This mutex is taken before @p ... when both are held (lock order; the
/// analysis checks it with -Wthread-safety-beta).
#define IWSEC_ACQUIRED_BEFORE(...) IWSEC_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
/// This mutex is taken after @p ... when both are held.
#define IWSEC_ACQUIRED_AFTER(...) IWSEC_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
/// The caller must hold these (exclusively).
#define IWSEC_REQUIRES(...) IWSEC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
/// The caller must hold these, shared or exclusively.
#define IWSEC_REQUIRES_SHARED(...) IWSEC_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
/// The caller must not hold these (the function takes them).
#define IWSEC_EXCLUDES(...) IWSEC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define IWSEC_ACQUIRE(...) IWSEC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define IWSEC_ACQUIRE_SHARED(...) IWSEC_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define IWSEC_RELEASE(...) IWSEC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define IWSEC_RELEASE_SHARED(...) IWSEC_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define IWSEC_RELEASE_GENERIC(...) IWSEC_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define IWSEC_TRY_ACQUIRE(...) IWSEC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
/// Opts one function out (say why next to it).
#define IWSEC_NO_THREAD_SAFETY_ANALYSIS IWSEC_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace iwsec {
namespace detail {

/// std::mutex, annotated. Waits go through a Lock (below).
class IWSEC_CAPABILITY("mutex") Mutex {
 public:
  void lock() IWSEC_ACQUIRE() { m_.lock(); }
  void unlock() IWSEC_RELEASE() { m_.unlock(); }
  bool try_lock() IWSEC_TRY_ACQUIRE(true) { return m_.try_lock(); }

 private:
  friend class Lock;
  std::mutex m_;
};

/// Holds a Mutex for its scope (std::unique_lock's role): condition
/// variables wait on it; the analysis sees the mutex held throughout,
/// which is what a wait guarantees on return.
class IWSEC_SCOPED_CAPABILITY Lock {
 public:
  explicit Lock(Mutex& m) IWSEC_ACQUIRE(m) : lock_(m.m_) {}
  ~Lock() IWSEC_RELEASE() {}
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  /// Waits on @p cv for one wake-up (a spurious one included).
  void wait(std::condition_variable& cv) { cv.wait(lock_); }
  /// Waits on @p cv until @p done() holds (the mutex is held when it is called).
  template <typename Predicate>
  void wait(std::condition_variable& cv, Predicate done) {
    cv.wait(lock_, done);
  }
  /// wait() for at most @p timeout; returns done()'s last value.
  template <typename Duration, typename Predicate>
  bool wait_for(std::condition_variable& cv, Duration timeout, Predicate done) {
    return cv.wait_for(lock_, timeout, done);
  }
  /// wait() until @p deadline; returns done()'s last value.
  template <typename TimePoint, typename Predicate>
  bool wait_until(std::condition_variable& cv, TimePoint deadline, Predicate done) {
    return cv.wait_until(lock_, deadline, done);
  }
  /// Lets go of the mutex early (for work that must run without it).
  void unlock() IWSEC_RELEASE() { lock_.unlock(); }
  /// Takes it back after unlock().
  void lock() IWSEC_ACQUIRE() { lock_.lock(); }

 private:
  std::unique_lock<std::mutex> lock_;
};

/// std::shared_mutex, annotated.
class IWSEC_CAPABILITY("mutex") SharedMutex {
 public:
  void lock() IWSEC_ACQUIRE() { m_.lock(); }
  void unlock() IWSEC_RELEASE() { m_.unlock(); }
  void lock_shared() IWSEC_ACQUIRE_SHARED() { m_.lock_shared(); }
  void unlock_shared() IWSEC_RELEASE_SHARED() { m_.unlock_shared(); }

 private:
  std::shared_mutex m_;
};

/// Holds a SharedMutex exclusively for its scope.
class IWSEC_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& m) IWSEC_ACQUIRE(m) : m_(m) { m_.lock(); }
  ~WriterLock() IWSEC_RELEASE() { m_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& m_;
};

/// Holds a SharedMutex shared for its scope.
class IWSEC_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& m) IWSEC_ACQUIRE_SHARED(m) : m_(m) { m_.lock_shared(); }
  ~ReaderLock() IWSEC_RELEASE() { m_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& m_;
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/thread_safety.hpp -----

namespace iwsec {

/// @brief How an access token was obtained (the `scope.action` inside `sub`).
enum class TokenAction { password, refresh_token };

/// @brief The wire name of a TokenAction: "password" or "refresh_token".
inline const char* to_string(TokenAction a) noexcept {
  return a == TokenAction::password ? "password" : "refresh_token";
}

/// @brief Why a token was not accepted. Every rejection has exactly one.
enum class VerifyError {
  none,                   ///< accepted
  too_large,              ///< longer than Signer::max_token_bytes; nothing was parsed
  malformed,              ///< not three canonical unpadded base64url segments
  bad_header,             ///< header not a JSON object of only alg, typ, kid
  unsupported_algorithm,  ///< alg is anything but exactly "HS256"
  unknown_key,            ///< kid names no key this signer holds
  bad_signature,          ///< MAC mismatch (compared in constant time)
  bad_payload,            ///< payload not a strict JSON object (integers only, valid UTF-8, no duplicate keys)
  bad_claims,             ///< a required claim missing or of the wrong type
  expired,                ///< now >= exp + leeway
  not_yet_valid,          ///< nbf or iat later than now + leeway
};

/// @brief A short, stable, lower-case name for a VerifyError (for logs and tests).
inline const char* to_string(VerifyError e) noexcept {
  switch (e) {
    case VerifyError::none: return "none";
    case VerifyError::too_large: return "too_large";
    case VerifyError::malformed: return "malformed";
    case VerifyError::bad_header: return "bad_header";
    case VerifyError::unsupported_algorithm: return "unsupported_algorithm";
    case VerifyError::unknown_key: return "unknown_key";
    case VerifyError::bad_signature: return "bad_signature";
    case VerifyError::bad_payload: return "bad_payload";
    case VerifyError::bad_claims: return "bad_claims";
    case VerifyError::expired: return "expired";
    case VerifyError::not_yet_valid: return "not_yet_valid";
  }
  return "unknown";
}

/// @brief What a new access token says; Signer::sign turns it into a JWS.
struct AccessClaims {
  std::string email;
  TokenAction action = TokenAction::refresh_token;
  std::int64_t issued_at = 0;           ///< `iat`
  std::int64_t expires_at = 0;          ///< `exp`
  std::string jti;                      ///< lower-case UUID v4; Signer::sign makes one when empty
  std::int64_t refresh_generation = 0;  ///< `gen`: the user's refresh-token generation
  std::string user_id;                  ///< `user_id`: the User::user_id the token was minted for
};

class Signer;

/// @brief Claims of a token whose signature, header and times all checked
/// out. Only Signer can make one, so it cannot be confused with input.
class VerifiedToken {
 public:
  const std::string& email() const noexcept { return email_; }
  TokenAction action() const noexcept { return action_; }
  std::int64_t issued_at() const noexcept { return issued_at_; }
  std::int64_t expires_at() const noexcept { return expires_at_; }
  const std::string& jti() const noexcept { return jti_; }
  std::int64_t refresh_generation() const noexcept { return refresh_generation_; }
  /// @brief The `user_id` claim: which holder of email() the token was minted for.
  const std::string& user_id() const noexcept { return user_id_; }
  /// @brief The `kid` the token named, empty when it named none.
  const std::string& key_id() const noexcept { return key_id_; }

 private:
  friend class Signer;
  VerifiedToken() = default;
  std::string email_;
  TokenAction action_ = TokenAction::refresh_token;
  std::int64_t issued_at_ = 0;
  std::int64_t expires_at_ = 0;
  std::string jti_;
  std::int64_t refresh_generation_ = 0;
  std::string user_id_;
  std::string key_id_;
};

/// @brief The outcome of Signer::verify: a VerifiedToken or a VerifyError.
class VerifyResult {
 public:
  bool ok() const noexcept { return error_ == VerifyError::none; }
  explicit operator bool() const noexcept { return ok(); }
  VerifyError error() const noexcept { return error_; }
  /// @brief The Signer::key_version() of the key set that checked the token
  /// (also for a rejection): a cache of verified tokens keys on it.
  std::uint64_t key_version() const noexcept { return key_version_; }
  /// @brief The verified claims; throws usage_error (a std::logic_error) when !ok().
  const VerifiedToken& token() const {
    if (!ok()) throw usage_error("iwsec: VerifyResult::token() on a rejected token");
    return *token_;
  }

 private:
  friend class Signer;
  explicit VerifyResult(VerifyError e) : error_(e) {}
  explicit VerifyResult(VerifiedToken t) : error_(VerifyError::none), token_(std::move(t)) {}
  VerifyError error_;
  std::optional<VerifiedToken> token_;
  std::uint64_t key_version_ = 0;
};

/// @brief One HMAC key with its identifier (`kid`).
struct SigningKey {
  std::string key_id;  ///< may be empty only when it is the signer's sole key
  std::string secret;  ///< raw bytes, at least Signer::min_key_bytes
};

/// @brief HS256 signer and strict verifier. Holds one or more keys: signs with
/// the newest (the last given) and verifies with the one the token's `kid`
/// names. One instance serves all threads.
///
/// The keys can be replaced while the signer is in use (replace_keys: key
/// rotation without a restart). Each key set is immutable and carries a
/// version number that no other key set of any signer in the process ever
/// had; key_version() tells the current one, and VerifyResult::key_version()
/// the one a verification used, so a cache of verified tokens that keys on
/// it (the routes' cache does) never answers from keys that are gone.
class Signer {
 public:
  static constexpr std::size_t min_key_bytes = 32;
  static constexpr std::size_t max_keys = 16;
  static constexpr std::size_t max_token_bytes = 8192;

  /// A copy starts with the same keys (and key version) and is replaced
  /// independently afterwards. A signer is never assigned over: what mounted
  /// routes hold a reference to changes its keys only through replace_keys.
  Signer(const Signer& other) { install(other.current()); }
  Signer(Signer&& other) : Signer(static_cast<const Signer&>(other)) {}
  Signer& operator=(const Signer&) = delete;
  Signer& operator=(Signer&&) = delete;

  /// @brief A fresh random key of min_key_bytes bytes from the CSPRNG.
  static std::string generate_secret() { return detail::random_string(min_key_bytes); }

  /// @brief A signer with one key and no `kid`; throws key_error when the key
  /// is shorter than 32 bytes.
  explicit Signer(std::string_view secret) : Signer(std::vector<SigningKey>{SigningKey{"", std::string(secret)}}) {}

  /// @brief A signer holding several keys for rotation; the last one signs.
  /// With more than one key each needs a distinct, non-empty `kid`.
  explicit Signer(const std::vector<SigningKey>& keys) { install(make_key_set(keys)); }

  /// @brief Replaces every key at once (checked as by the constructor; on
  /// key_error nothing changes). Safe while other threads sign and verify:
  /// a call that starts after this returns uses the new keys only, so a
  /// token of a key left out stops verifying at once.
  void replace_keys(const std::vector<SigningKey>& keys) { install(make_key_set(keys)); }

  /// @brief The version of the current key set: changes with every
  /// replace_keys, unique within the process. Cheap (one atomic load).
  std::uint64_t key_version() const noexcept { return version_.load(); }

  /// @brief The `kid` of each key held, oldest first (the last one signs).
  std::vector<std::string> key_ids() const {
    std::vector<std::string> ids;
    for (const auto& k : current()->keys) ids.push_back(k.key_id);
    return ids;
  }

  /// @brief Mints a compact JWS for @p claims (makes a `jti` when empty).
  /// The payload has a fixed layout, written straight into one buffer:
  /// {"iat":N,"sub":"<sub JSON as a string>","jti":"...","exp":N,"gen":N,"user_id":"..."}.
  std::string sign(const AccessClaims& claims) const {
    const key_set& keys = current_keys();
    const std::string& encoded_header = keys.encoded_header;
    char jti_buf[36];
    std::string_view jti = claims.jti;
    if (jti.empty()) jti = detail::uuid_v4_to(jti_buf);
    const std::string_view action = to_string(claims.action);

    static constexpr std::string_view p_iat = R"({"iat":)";
    static constexpr std::string_view p_sub = R"(,"sub":"{\n  \"email\" : \")";
    static constexpr std::string_view p_scope = R"(\",\n  \"scope\" : {\n    \"action\" : \")";
    static constexpr std::string_view p_jti = R"(\"\n  }\n}","jti":")";
    static constexpr std::string_view p_exp = R"(","exp":)";
    static constexpr std::string_view p_gen = R"(,"gen":)";
    static constexpr std::string_view p_user_id = R"(,"user_id":")";
    // Worst cases: an email byte escaped twice is 7 bytes (\\u00XX), a jti
    // or user id byte escaped once 6, an int64 20.
    const std::size_t bound = p_iat.size() + p_sub.size() + p_scope.size() + p_jti.size() + p_exp.size() +
                              p_gen.size() + p_user_id.size() + 2 + 7 * claims.email.size() + action.size() +
                              6 * jti.size() + 6 * claims.user_id.size() + 3 * 20;
    char stack_buf[1024];
    std::unique_ptr<char[]> heap_buf;
    char* const payload = bound <= sizeof stack_buf ? stack_buf : (heap_buf.reset(new char[bound]), heap_buf.get());
    char* w = payload;
    w = detail::put(w, p_iat);
    w = detail::put_int(w, claims.issued_at);
    w = detail::put(w, p_sub);
    w = detail::put_json_escaped_twice(w, claims.email);
    w = detail::put(w, p_scope);
    w = detail::put(w, action);
    w = detail::put(w, p_jti);
    w = detail::put_json_escaped(w, jti);
    w = detail::put(w, p_exp);
    w = detail::put_int(w, claims.expires_at);
    w = detail::put(w, p_gen);
    w = detail::put_int(w, claims.refresh_generation);
    w = detail::put(w, p_user_id);
    w = detail::put_json_escaped(w, claims.user_id);
    *w++ = '"';
    *w++ = '}';
    const auto payload_size = static_cast<std::size_t>(w - payload);

    const std::size_t input_size = encoded_header.size() + detail::base64_unpadded_size(payload_size);
    std::string token(input_size + 1 + detail::base64_unpadded_size(32), '\0');
    char* t = &token[0];
    std::memcpy(t, encoded_header.data(), encoded_header.size());
    detail::base64url_encode_to(t + encoded_header.size(), reinterpret_cast<const unsigned char*>(payload),
                                payload_size);
    unsigned char mac[32];
    keys.keys.back().hmac->mac(reinterpret_cast<const unsigned char*>(t), input_size, mac);
    t[input_size] = '.';
    detail::base64url_encode_to(t + input_size + 1, mac, sizeof mac);
    return token;
  }

  /// @brief Full verification: size, shape, header (alg pinned to HS256, only
  /// alg/typ/kid), signature in constant time, then claims and times.
  /// @param now seconds since the epoch; @param leeway_seconds clock skew allowed.
  VerifyResult verify(std::string_view token, std::int64_t now, std::int64_t leeway_seconds = 0) const {
    return verify_impl(token, now, leeway_seconds, true);
  }

  /// @brief Everything verify() checks except `exp`, `nbf` and `iat` against
  /// the clock: "is this a genuine token of ours?" Revocation uses it, since
  /// revoking an expired genuine token is a harmless success. Never use it to
  /// grant access.
  VerifyResult verify_ignoring_lifetime(std::string_view token) const { return verify_impl(token, 0, 0, false); }

  /// @brief The `kid` of the key that signs (tokens name it only while the
  /// signer holds more than one key).
  std::string signing_key_id() const { return current()->keys.back().key_id; }

 private:
  VerifyResult verify_impl(std::string_view token, std::int64_t now, std::int64_t leeway_seconds,
                           bool check_lifetime) const {
    const key_set& keys = current_keys();
    VerifyResult result = verify_with(keys, token, now, leeway_seconds, check_lifetime);
    result.key_version_ = keys.version;
    return result;
  }

  struct entry {
    std::string key_id;
    std::shared_ptr<const detail::hmac_sha256_key> hmac;
  };

  // One immutable set of keys; replace_keys installs a new one.
  struct key_set {
    std::vector<entry> keys;
    std::string encoded_header;  // base64url(header) + '.'
    std::uint64_t version = 0;   // unique in the process, never 0
  };

  static std::shared_ptr<const key_set> make_key_set(const std::vector<SigningKey>& keys) {
    if (keys.empty()) throw key_error("iwsec: a Signer needs at least one key");
    if (keys.size() > max_keys) throw key_error("iwsec: a Signer holds at most 16 keys");
    auto set = std::make_shared<key_set>();
    for (const auto& k : keys) {
      if (k.secret.size() < min_key_bytes) throw key_error("iwsec: HS256 keys must be at least 32 bytes");
      if (keys.size() > 1 && k.key_id.empty()) throw key_error("iwsec: with several keys each needs a kid");
      if (k.key_id.size() > 128) throw key_error("iwsec: kid longer than 128 bytes");
      for (const auto& other : set->keys)
        if (other.key_id == k.key_id) throw key_error("iwsec: duplicate kid");
      set->keys.push_back(entry{k.key_id, std::make_shared<detail::hmac_sha256_key>(k.secret)});
    }
    std::string header = "{\"alg\":\"HS256\"";
    if (set->keys.size() > 1) {
      header += ",\"kid\":";
      detail::append_json_string(header, set->keys.back().key_id);
    }
    header += '}';
    set->encoded_header = base64url_encode(header) + '.';
    static std::atomic<std::uint64_t> versions{0};
    set->version = ++versions;
    return set;
  }

  void install(std::shared_ptr<const key_set> set) {
    detail::Lock lock(mutex_);
    const std::uint64_t version = set->version;
    current_ = std::move(set);
    version_.store(version);
  }

  std::shared_ptr<const key_set> current() const {
    detail::Lock lock(mutex_);
    return current_;
  }

  // The hot path reads the key set without a lock or a reference-count
  // change: each thread keeps the sets it used lately, by version, and a
  // version is never reused, so a slot whose version equals key_version()
  // holds exactly the current set. A miss (after a replace_keys) takes the
  // lock once per thread. The reference stays valid until this thread's next
  // call.
  const key_set& current_keys() const {
    struct slot {
      std::uint64_t version = 0;
      std::shared_ptr<const key_set> keys;
    };
    thread_local slot slots[8];
    const std::uint64_t version = version_.load();
    slot& s = slots[version & 7];
    if (s.version != version) {
      s.keys = current();
      s.version = s.keys->version;
    }
    return *s.keys;
  }

  static VerifyResult verify_with(const key_set& keys, std::string_view token, std::int64_t now,
                                  std::int64_t leeway_seconds, bool check_lifetime) {
    if (token.size() > max_token_bytes) return VerifyResult(VerifyError::too_large);
    const auto dot1 = token.find('.');
    if (dot1 == std::string_view::npos) return VerifyResult(VerifyError::malformed);
    const auto dot2 = token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
      return VerifyResult(VerifyError::malformed);
    const std::string_view header_b64 = token.substr(0, dot1);
    const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
    const std::string_view signature_b64 = token.substr(dot2 + 1);
    if (header_b64.empty() || payload_b64.empty() || signature_b64.empty()) return VerifyResult(VerifyError::malformed);

    // Decoded segments and the parsers' scratch (unescaped strings) share one
    // buffer: on the stack for tokens up to ~1 KiB, else on the heap.
    const std::size_t need = 4 * token.size() + 64;
    unsigned char stack_buf[4096];
    std::unique_ptr<unsigned char[]> heap_buf;
    unsigned char* const buf =
        need <= sizeof stack_buf ? stack_buf : (heap_buf.reset(new unsigned char[need]), heap_buf.get());

    // Header first: the algorithm is pinned before any MAC work.
    const long header_size = detail::base64url_decode_to(header_b64, buf);
    if (header_size < 0) return VerifyResult(VerifyError::malformed);
    const auto header_len = static_cast<std::size_t>(header_size);
    bool header_ok = true, alg_ok = false, kid_seen = false, kid_is_string = false;
    std::string_view kid;
    detail::flat_json_parser header_parser(std::string_view(reinterpret_cast<const char*>(buf), header_len),
                                           reinterpret_cast<char*>(buf + header_len));
    const bool header_parsed =
        header_parser.parse_object(2, [&](std::string_view name, const detail::json_value_view& v) {
          if (name == "alg") {
            alg_ok = v.kind == detail::json_kind::string && v.text == "HS256";
          } else if (name == "kid") {
            kid_seen = true;
            kid_is_string = v.kind == detail::json_kind::string;
            kid = v.text;
          } else if (name == "typ") {
            if (v.kind != detail::json_kind::string || v.text != "JWT") header_ok = false;
          } else {
            header_ok = false;  // crit, jku, jwk, x5u, x5c, ...
          }
        });
    if (!header_parsed || !header_ok) return VerifyResult(VerifyError::bad_header);
    if (!alg_ok) return VerifyResult(VerifyError::unsupported_algorithm);
    if (kid_seen && !kid_is_string) return VerifyResult(VerifyError::bad_header);

    // 32 bytes are exactly 43 symbols; decoding checks alphabet and trailing bits.
    unsigned char signature[32];
    if (signature_b64.size() != 43 || detail::base64url_decode_to(signature_b64, signature) != 32)
      return VerifyResult(VerifyError::malformed);

    const std::string_view signing_input = token.substr(0, dot2);
    const entry* key = nullptr;
    if (kid_seen) {
      for (const auto& k : keys.keys)
        if (!k.key_id.empty() && k.key_id == kid) key = &k;
      if (!key) return VerifyResult(VerifyError::unknown_key);
      if (!mac_matches(*key, signing_input, signature)) return VerifyResult(VerifyError::bad_signature);
    } else {
      // A token minted while the signer held a single key carries no kid;
      // after a rotation adds keys it must still verify under its own key.
      for (const auto& k : keys.keys)
        if (mac_matches(k, signing_input, signature)) key = &k;
      if (!key) return VerifyResult(VerifyError::bad_signature);
    }

    unsigned char* const payload = buf + 2 * header_len;
    const long payload_size = detail::base64url_decode_to(payload_b64, payload);
    if (payload_size < 0) return VerifyResult(VerifyError::malformed);
    const auto payload_len = static_cast<std::size_t>(payload_size);
    char* const payload_scratch = reinterpret_cast<char*>(payload + payload_len);
    detail::json_value_view exp, iat, jti, gen, sub, nbf, user_id;
    bool has_exp = false, has_iat = false, has_jti = false, has_gen = false, has_sub = false, has_nbf = false,
         has_user_id = false;
    detail::flat_json_parser payload_parser(std::string_view(reinterpret_cast<const char*>(payload), payload_len),
                                            payload_scratch);
    const bool payload_parsed =
        payload_parser.parse_object(8, [&](std::string_view name, const detail::json_value_view& v) {
          if (name.size() != 3) {
            if (name == "user_id") user_id = v, has_user_id = true;
            return;
          }
          if (name == "exp") {
            exp = v, has_exp = true;
          } else if (name == "iat") {
            iat = v, has_iat = true;
          } else if (name == "jti") {
            jti = v, has_jti = true;
          } else if (name == "gen") {
            gen = v, has_gen = true;
          } else if (name == "sub") {
            sub = v, has_sub = true;
          } else if (name == "nbf") {
            nbf = v, has_nbf = true;
          }
        });
    if (!payload_parsed) return VerifyResult(VerifyError::bad_payload);

    VerifiedToken out;
    if (!has_exp || !has_iat || !has_jti || !has_gen || !has_sub || !has_user_id)
      return VerifyResult(VerifyError::bad_claims);
    if (user_id.kind != detail::json_kind::string) return VerifyResult(VerifyError::bad_claims);
    const auto exp_v = detail::json_non_negative_integer(exp);
    const auto iat_v = detail::json_non_negative_integer(iat);
    const auto gen_v = detail::json_non_negative_integer(gen);
    if (!exp_v || !iat_v || !gen_v) return VerifyResult(VerifyError::bad_claims);
    std::optional<std::int64_t> nbf_v;
    if (has_nbf) {
      nbf_v = detail::json_non_negative_integer(nbf);
      if (!nbf_v) return VerifyResult(VerifyError::bad_claims);
    }
    if (jti.kind != detail::json_kind::string || !detail::is_canonical_uuid(jti.text))
      return VerifyResult(VerifyError::bad_claims);
    if (sub.kind != detail::json_kind::string ||
        !parse_subject(sub.text, payload_scratch + payload_len, out))
      return VerifyResult(VerifyError::bad_claims);

    if (check_lifetime) {
      // A year of skew is already absurd; the bound keeps the sums below in range.
      leeway_seconds = std::min<std::int64_t>(std::max<std::int64_t>(leeway_seconds, 0), max_duration_seconds);
      if (now >= *exp_v + leeway_seconds) return VerifyResult(VerifyError::expired);
      if (*iat_v > now + leeway_seconds || (nbf_v && *nbf_v > now + leeway_seconds))
        return VerifyResult(VerifyError::not_yet_valid);
    }

    out.issued_at_ = *iat_v;
    out.expires_at_ = *exp_v;
    out.refresh_generation_ = *gen_v;
    out.jti_.assign(jti.text.data(), jti.text.size());
    out.user_id_.assign(user_id.text.data(), user_id.text.size());
    if (kid_seen) out.key_id_.assign(kid.data(), kid.size());
    return VerifyResult(std::move(out));
  }

  static bool mac_matches(const entry& k, std::string_view signing_input, const unsigned char* signature) {
    unsigned char mac[32];
    k.hmac->mac(reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac);
    return CRYPTO_memcmp(mac, signature, sizeof mac) == 0;
  }

  // `sub` is itself JSON: {"email": "...", "scope": {"action": "..."}}.
  // @p scratch has room for 2 * text.size() bytes.
  static bool parse_subject(std::string_view text, char* scratch, VerifiedToken& out) {
    bool email_ok = false, scope_is_object = false;
    std::string_view email, scope;
    detail::flat_json_parser parser(text, scratch);
    const bool parsed = parser.parse_object(4, [&](std::string_view name, const detail::json_value_view& v) {
      if (name == "email") {
        email_ok = v.kind == detail::json_kind::string && !v.text.empty();
        email = v.text;
      } else if (name == "scope") {
        scope_is_object = v.kind == detail::json_kind::object;
        scope = v.raw;
      }
    });
    if (!parsed || !email_ok || !scope_is_object) return false;
    // `scope` was checked whole (one level down) above; read its members.
    bool action_is_string = false;
    std::string_view action;
    detail::flat_json_parser scope_parser(scope, scratch + text.size());
    const bool scope_parsed = scope_parser.parse_object(3, [&](std::string_view name, const detail::json_value_view& v) {
      if (name == "action") {
        action_is_string = v.kind == detail::json_kind::string;
        action = v.text;
      }
    });
    if (!scope_parsed || !action_is_string) return false;
    if (action == "password") {
      out.action_ = TokenAction::password;
    } else if (action == "refresh_token") {
      out.action_ = TokenAction::refresh_token;
    } else {
      return false;
    }
    out.email_.assign(email.data(), email.size());
    return true;
  }

  mutable detail::Mutex mutex_;
  std::shared_ptr<const key_set> current_ IWSEC_GUARDED_BY(mutex_);
  std::atomic<std::uint64_t> version_{0};  // current_->version
};

}  // namespace iwsec
// ----- end iwsec/signer.hpp -----
// ----- begin iwsec/keyring.hpp -----
/// @file
/// @brief Signing keys kept in a file: a raw key (32 or more bytes, as
/// earlier versions made) or a keyring of several keys with their `kid` and
/// creation time. Loading, creating (mode 0600, whole or not at all), changing
/// under a lock (add a key, retire one), and keeping a running Signer in step
/// with the file.
///
/// The keyring format is text, one key per line after a version line:
///
///     iwsec-keyring 1
///     # kid created key (base64url of the raw key bytes)
///     legacy 2026-01-05T10:00:00Z 2Y0x...
///     k20261202-3fa9c1d0 2026-12-02T01:31:00Z Qm9v...
///
/// Keys are listed oldest first; the last one signs new tokens, all of them
/// verify. Blank lines and lines starting with `#` are ignored. A file whose
/// first line holds `iwsec-keyring` (after any byte order mark or
/// whitespace) is a keyring and must parse whole: exactly that version line,
/// LF line endings (no CR anywhere), every line valid; otherwise it is
/// refused, naming the line and the reason. Any other file is a raw key: a
/// keyring of that one key, with `kid` "legacy" and the file's modification
/// time.

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// ----- begin iwsec/detail/change_watch.hpp -----
/// @file
/// @brief ChangeWatch: whether any of a set of files may have changed, told
/// by one inotify descriptor per process instead of a stat per file per
/// request.
///
/// Why: a validation used to stat the keyring, the users file and its
/// journal (three system calls) to keep "an admin change applies to the next
/// request" (SPEC, "Bundled programs"). A change to a watched name queues an
/// inotify event inside the very system call that makes it (rename, write,
/// link, unlink), before the program that made it returns; so a request
/// that starts after the change finds the event queued, and one FIONREAD
/// ioctl on the shared descriptor tells whether anything is queued at all.
/// Only then do the stores stat their files, as before.
///
/// The watch never decides that a file is unchanged when it cannot know:
/// a relative path (a chdir() would move it), a file that is a symbolic
/// link or has a second hard link, a directory reached through a link, a
/// file system whose changes inotify may not see (NFS and other network or
/// FUSE file systems: only local ones are trusted), a directory on the path
/// deleted, moved or replaced while watched (the directories above are
/// watched for that), a queue overflow, a child of fork(), no inotify at
/// all: each makes the trackers concerned fall back to a stat per check.
/// Not seen: a file system mounted over the path while watched, a second
/// hard link made in another directory after the watch began, and writes
/// through a shared memory mapping; iwsec's writers and editors do none of
/// these.

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <pthread.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#endif

// ----- begin iwsec/detail/file.hpp -----
/// @file
/// @brief POSIX file helpers for durable state: whole-file reads, atomic
/// replacement (exclusive temporary, fsync, rename, fsync the directory,
/// owner and mode kept), advisory locks, the ownership check for state and
/// key files.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>


namespace iwsec {
namespace detail {

/// @brief Closes a file descriptor on scope exit.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~unique_fd() { reset(); }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

inline unique_fd open_fd(const std::string& path, int flags, mode_t mode = 0600) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return unique_fd(fd);
}

inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// @brief Reads everything from @p fd (from its current offset).
inline bool read_all(int fd, std::string& out) {
  out.clear();
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return true;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

/// @brief The directory part of @p path ("." when there is none).
inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// @brief Test seam: when set, every fsync iwsec makes for durability goes
/// through this function instead of ::fsync (a test injects failures with it).
inline std::atomic<int (*)(int)> fsync_hook{nullptr};

/// @brief fsync(2), or the test seam when one is set.
inline int durable_fsync(int fd) {
  int (*hook)(int) = fsync_hook.load();
  return hook ? hook(fd) : ::fsync(fd);
}

/// @brief "what: strerror(errno)", the shape of every file error iwsec reports.
inline std::string errno_text(const std::string& what, int error_number = errno) {
  return what + ": " + std::strerror(error_number);
}

/// @brief fsyncs a directory, making a rename or creation inside it durable.
inline bool fsync_directory(const std::string& dir) {
  unique_fd fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
  return fd && durable_fsync(fd.get()) == 0;
}

/// @brief The last component of @p path.
inline std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// @brief Why @p path must not be trusted with iwsec's state or keys, or
/// nothing when it may: it has to belong to the user running the program and
/// carry no group or other permission bits (the rule ssh applies to its
/// keys). With @p root_may_manage, root may also use a path another account
/// owns (iwsec-admin run by root on a service account's data directory).
inline std::optional<std::string> check_private(const std::string& path, bool root_may_manage = false) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno_text("cannot use " + path);
  const uid_t me = ::geteuid();
  if (st.st_uid != me && !(root_may_manage && me == 0))
    return path + " belongs to uid " + std::to_string(st.st_uid) + ", not to the user running this program (uid " +
           std::to_string(me) + "); refusing to trust it";
  if (st.st_mode & 077) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return path + " is open to other users (mode " + mode + "); refusing to trust it (chmod go= " + path + ")";
  }
  return std::nullopt;
}

/// @brief Gives a file iwsec just created to @p owner when root creates it
/// in another account's directory, so that account (the server) can still
/// open it. Nothing to do, and true, for anyone else.
inline bool give_to_owner(int fd, const struct stat& owner) {
  if (::geteuid() != 0) return true;
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;
  if (st.st_uid == owner.st_uid && st.st_gid == owner.st_gid) return true;
  return ::fchown(fd, owner.st_uid, owner.st_gid) == 0;
}

/// @brief A directory opened once and checked to be one; files are then
/// created, renamed and fsynced relative to its descriptor, so a path
/// component swapped meanwhile cannot redirect them.
class directory_handle {
 public:
  /// @brief Opens @p path; on failure the handle is false and error() says why.
  explicit directory_handle(const std::string& path) : path_(path) {
    fd_ = open_fd(path, O_RDONLY | O_DIRECTORY);
    if (!fd_) {
      error_ = errno_text("cannot open directory " + path);
    } else if (::fstat(fd_.get(), &st_) != 0) {
      error_ = errno_text("cannot stat directory " + path);
      fd_.reset();
    }
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  int fd() const noexcept { return fd_.get(); }
  const std::string& path() const noexcept { return path_; }
  const struct stat& status() const noexcept { return st_; }
  const std::string& error() const noexcept { return error_; }

  /// @brief fsyncs the directory, retrying a failure twice (a rename inside
  /// it that already happened cannot be undone, so it is worth the try).
  bool sync(std::string& error) const {
    for (int attempt = 0; attempt < 3; ++attempt)
      if (durable_fsync(fd_.get()) == 0) return true;
    error = errno_text("cannot fsync directory " + path_);
    return false;
  }

 private:
  std::string path_;
  unique_fd fd_;
  struct stat st_ {};
  std::string error_;
};

/// @brief A temporary file created exclusively (O_EXCL, no symlink followed,
/// an unpredictable name) inside a directory_handle, to be renamed over its
/// target by commit_temp_file(); removed unless committed.
class temp_file {
 public:
  temp_file(const directory_handle& dir, const std::string& target_base, mode_t mode = 0600) : dir_(&dir) {
    for (int attempt = 0; attempt < 16 && !fd_; ++attempt) {
      unsigned char random[8] = {};
      if (::getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
        const auto mix = static_cast<unsigned long long>(::getpid()) * 0x9E3779B97F4A7C15ull ^
                         static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
        std::memcpy(random, &mix, sizeof random);
      }
      name_ = "." + target_base + ".tmp." + hex_encode(random, sizeof random);
      int fd;
      do {
        fd = ::openat(dir.fd(), name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
      } while (fd < 0 && errno == EINTR);
      fd_.reset(fd);
      if (!fd_ && errno != EEXIST) break;
    }
    if (!fd_) error_ = errno_text("cannot create a temporary file in " + dir.path());
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() {
    if (!committed_ && !name_.empty() && fd_) ::unlinkat(dir_->fd(), name_.c_str(), 0);
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  int fd() const noexcept { return fd_.get(); }
  const std::string& error() const noexcept { return error_; }

  /// @brief Gives the file the owner a replaced file had (or, for a new
  /// file, the directory's owner when root writes there) and @p mode (with
  /// @p keep_mode, the replaced file's mode when there is one), fsyncs it and
  /// renames it over @p target_base. False (and the target
  /// untouched) on any failure before the rename. After the rename the
  /// replacement is in place whatever else happens, so it reports true; a
  /// directory fsync that failed even when retried is left in @p warning.
  bool commit(const std::string& target_base, mode_t mode, std::string& error, std::string& warning,
              bool keep_mode = true) {
    return prepare(target_base, mode, error, keep_mode) && rename_over(target_base, error, warning);
  }

  /// @brief commit()'s first half: owner, mode and fsync, so the file is
  /// final (its inode, size and modification time are what the target will
  /// have) before rename_over() puts it in place.
  bool prepare(const std::string& target_base, mode_t mode, std::string& error, bool keep_mode = true) {
    struct stat old;
    const bool replacing = ::fstatat(dir_->fd(), target_base.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (!replacing && errno != ENOENT) {
      error = errno_text("cannot stat " + dir_->path() + "/" + target_base);
      return false;
    }
    if (replacing && !S_ISREG(old.st_mode)) {
      error = dir_->path() + "/" + target_base + " is not a regular file; refusing to replace it";
      return false;
    }
    const struct stat& owner = replacing ? old : dir_->status();
    if (!give_to_owner(fd_.get(), owner)) {
      error = errno_text("cannot give " + dir_->path() + "/" + target_base + " to uid " + std::to_string(owner.st_uid));
      return false;
    }
    if (::fchmod(fd_.get(), replacing && keep_mode ? (old.st_mode & 0777) : mode) != 0) {
      error = errno_text("cannot chmod a temporary file in " + dir_->path());
      return false;
    }
    if (durable_fsync(fd_.get()) != 0) {
      error = errno_text("cannot fsync a temporary file in " + dir_->path());
      return false;
    }
    return true;
  }

  /// @brief commit()'s second half: the rename over @p target_base and the
  /// directory fsync (a failure of which is left in @p warning).
  bool rename_over(const std::string& target_base, std::string& error, std::string& warning) {
    if (::renameat(dir_->fd(), name_.c_str(), dir_->fd(), target_base.c_str()) != 0) {
      error = errno_text("cannot rename a temporary file over " + dir_->path() + "/" + target_base);
      return false;
    }
    committed_ = true;
    dir_->sync(warning);
    return true;
  }

  /// @brief The open descriptor, now naming the committed file.
  unique_fd release() noexcept { return std::move(fd_); }

 private:
  const directory_handle* dir_;
  std::string name_;
  unique_fd fd_;
  std::string error_;
  bool committed_ = false;
};

/// @brief The outcome of replace_file(): whether the path now holds the new
/// content, why not, and a descriptor of the new version (for its identity).
struct replace_result {
  bool replaced = false;
  std::string error;    ///< why not replaced (the target is then untouched)
  std::string warning;  ///< replaced, but the directory fsync failed
  unique_fd fd;         ///< the new version, while replaced
};

/// @brief Replaces @p path with @p content so that a crash leaves either the
/// old or the new file, never a mix: an exclusive temporary beside it,
/// written, fsynced, renamed over it, the directory fsynced. The new file
/// keeps the owner and mode of the one it replaces (so root editing a
/// service account's file leaves it readable by that account); a new file
/// gets @p mode and the directory's owner.
inline replace_result replace_file(const std::string& path, std::string_view content, mode_t mode = 0600) {
  replace_result out;
  const directory_handle dir(parent_directory(path));
  if (!dir) {
    out.error = dir.error();
    return out;
  }
  const std::string base = base_name(path);
  temp_file tmp(dir, base);
  if (!tmp) {
    out.error = tmp.error();
    return out;
  }
  if (!write_all(tmp.fd(), content)) {
    out.error = errno_text("cannot write a temporary file in " + dir.path());
    return out;
  }
  out.replaced = tmp.commit(base, mode, out.error, out.warning);
  if (out.replaced) out.fd = tmp.release();
  return out;
}

/// @brief replace_file() for callers that only need to know whether @p path
/// now holds @p content.
inline bool write_file_atomically(const std::string& path, std::string_view content, mode_t mode = 0600) {
  return replace_file(path, content, mode).replaced;
}

/// @brief An exclusive advisory lock (flock) on a lock file, held for the
/// object's lifetime. Serialises writers across processes.
class file_lock {
 public:
  explicit file_lock(const std::string& lock_path)
      : fd_(open_fd(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600)) {
    if (!fd_) {
      error_ = errno_text("cannot open lock file " + lock_path);
      return;
    }
    // root creating the lock in a service account's directory gives it to
    // that account, whose server must open it too.
    struct stat dir;
    if (::stat(parent_directory(lock_path).c_str(), &dir) == 0) give_to_owner(fd_.get(), dir);
    int rc;
    do {
      rc = ::flock(fd_.get(), LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      error_ = errno_text("cannot lock " + lock_path);
      fd_.reset();
    }
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  /// @brief Why the lock is not held (empty when it is).
  const std::string& error() const noexcept { return error_; }

 private:
  unique_fd fd_;  // closing it releases the lock
  std::string error_;
};

/// @brief Identity of a file version: replacing or editing it changes this.
struct file_identity {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = -1;
  timespec modified{};
  timespec changed{};  // a chmod or chown (that may make it readable again) changes this

  static file_identity of(const struct stat& st) {
    return file_identity{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
  }
  bool operator==(const file_identity& o) const noexcept {
    return device == o.device && inode == o.inode && size == o.size && modified.tv_sec == o.modified.tv_sec &&
           modified.tv_nsec == o.modified.tv_nsec && changed.tv_sec == o.changed.tv_sec &&
           changed.tv_nsec == o.changed.tv_nsec;
  }
  bool operator!=(const file_identity& o) const noexcept { return !(*this == o); }
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/file.hpp -----

namespace iwsec {
namespace detail {

/// @brief The process's one inotify descriptor, its watched directories and
/// the generation that counts the events naming a watched file.
class ChangeWatch {
 public:
  /// @brief One watched directory: a file's own (its names), or one above
  /// a file's (it guards the path down to it). Dead once it, or a directory
  /// on the way to it, is deleted, moved, replaced or unmounted, or one of
  /// its watched names turns into a symbolic link: trackers on a dead
  /// directory stat on every check.
  struct Directory {
    std::string path;  // absolute, no link on the way
    int wd = -1;
    std::map<std::string, std::size_t> names;  // watched name -> trackers on it (under the watch's mutex)
    std::size_t below = 0;                     // trackers on files below it (under the watch's mutex)
    bool kernel_gone = false;                  // IN_IGNORED seen: no watch left to remove (under the mutex)
    std::atomic<bool> alive{true};
  };

  /// @brief What watch() hands out: the file's directory and those above it.
  struct Registration {
    std::shared_ptr<Directory> directory;
    std::vector<std::shared_ptr<Directory>> above;
    std::string name;
  };

  /// @brief The process-wide watch (its descriptor is opened on first use;
  /// never destroyed, so threads still reading at exit find it).
  static ChangeWatch& instance() {
    static ChangeWatch* watch = new ChangeWatch;
    return *watch;
  }

  /// @brief The current generation: every event naming a watched file
  /// queued before this call is counted in it. 0 when there is no watch.
  /// One ioctl when nothing is queued.
  std::uint64_t generation() IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    const int fd = fd_number_.load();
    if (fd < 0 || forked().load()) return 0;
    int queued = 0;
    // A drain in progress has taken the events off the queue but not yet
    // counted them: wait for it rather than answer the old generation.
    if (::ioctl(fd, FIONREAD, &queued) == 0 && queued == 0 && !draining_.load()) return generation_.load();
    Lock lock(mutex_);
    draining_.store(true);
    try {
      drain();
    } catch (...) {  // events taken and not counted: trust no watch from here on
      kill_under("/");
      generation_.fetch_add(1);
    }
    draining_.store(false);
    return generation_.load();
#else
    return 0;
#endif
  }

  /// @brief Watches @p path's name in its directory, and the path down to
  /// it; nothing when it cannot be watched (see the file comment; a
  /// relative path too: a chdir() would move it). The caller gives it back
  /// to unwatch().
  std::optional<Registration> watch(const std::string& path) IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    if (path.empty() || path[0] != '/' || forked().load()) return std::nullopt;
    const std::string dir = parent_directory(path);
    const std::string name = base_name(path);
    if (name.empty() || name == "." || name == "..") return std::nullopt;
    if (!one_name(path) || !reached_directly(dir) || !local_file_system(dir)) return std::nullopt;
    Lock lock(mutex_);
    if (!fd_) {
      fd_ = unique_fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
      if (!fd_) return std::nullopt;  // e.g. the per-user instance limit: stat instead
      fd_number_.store(fd_.get());
    }
    // From "/" down: a component swapped while this runs raises an event on
    // a directory already watched, and kills what is registered below it.
    std::vector<std::string> chain;
    for (std::string at = dir;; at = parent_directory(at)) {
      chain.push_back(at);
      if (at == "/") break;
    }
    Registration r;
    r.name = name;
    for (auto at = chain.rbegin(); at != chain.rend(); ++at) {
      const bool own = at + 1 == chain.rend();
      const int wd = ::inotify_add_watch(fd_.get(), at->c_str(), (own ? own_events : above_events) | IN_MASK_ADD | IN_ONLYDIR);
      if (wd < 0) {  // e.g. the watch limit: give back what was taken
        release(r);
        return std::nullopt;
      }
      std::shared_ptr<Directory>& slot = directories_[wd];
      if (slot && slot->alive.load() && slot->path != *at) {
        // The inode watched under another path (moved, or reached twice):
        // what hung on the old path can no longer be trusted.
        kill_under(slot->path);
        generation_.fetch_add(1);
      }
      if (!slot || !slot->alive.load() || slot->path != *at) {
        slot = std::make_shared<Directory>();
        slot->path = *at;
        slot->wd = wd;
      }
      if (own) {
        ++slot->names[name];
        r.directory = slot;
      } else {
        ++slot->below;
        r.above.push_back(slot);
      }
    }
    // Swapped for a link, or moved, between the checks above and the watches.
    if (!one_name(path) || !reached_directly(dir)) r.directory->alive.store(false);
    return r;
#else
    (void)path;
    return std::nullopt;
#endif
  }

  /// @brief Gives back what watch() returned.
  void unwatch(Registration& r) IWSEC_EXCLUDES(mutex_) {
#if defined(__linux__)
    if (forked().load()) return;
    Lock lock(mutex_);
    release(r);
#else
    (void)r;
#endif
  }

 private:
#if defined(__linux__)
  // A directory above a watched file: only what changes the names on the
  // path, and its own mode (writes to files in it, such as logs, raise no
  // event). A watched file's own directory: everything.
  static constexpr std::uint32_t above_events =
      IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB;
  static constexpr std::uint32_t own_events = above_events | IN_MODIFY;

  // Set in a child of fork(); not a member, so the handler never waits for
  // instance() (a fork during its first call).
  static std::atomic<bool>& forked() {
    static std::atomic<bool> flag{false};
    return flag;
  }

  ChangeWatch() {
    // A child of fork() shares the parent's queue but not its count: it
    // stats on every check rather than take events the parent needs.
    ::pthread_atfork(nullptr, nullptr, [] { forked().store(true); });
  }

  void release(Registration& r) IWSEC_REQUIRES(mutex_) {
    const auto done_with = [this](const std::shared_ptr<Directory>& d) IWSEC_REQUIRES(mutex_) {
      if (!d->names.empty() || d->below != 0) return;
      auto it = directories_.find(d->wd);
      if (it == directories_.end() || it->second != d) return;
      if (!d->kernel_gone) ::inotify_rm_watch(fd_.get(), d->wd);
      directories_.erase(it);
      d->alive.store(false);
    };
    if (r.directory) {
      auto it = r.directory->names.find(r.name);
      if (it != r.directory->names.end() && --it->second == 0) r.directory->names.erase(it);
      done_with(r.directory);
    }
    for (const auto& d : r.above) {
      if (d->below > 0) --d->below;
      done_with(d);
    }
    r.directory.reset();
    r.above.clear();
  }

  // Marks dead every watched directory at or below @p prefix; true when one was alive.
  bool kill_under(const std::string& prefix) IWSEC_REQUIRES(mutex_) {
    bool killed = false;
    for (auto& entry : directories_) {
      Directory& d = *entry.second;
      const bool under = prefix == "/" || d.path == prefix ||
                         (d.path.size() > prefix.size() && d.path.compare(0, prefix.size(), prefix) == 0 &&
                          d.path[prefix.size()] == '/');
      if (under && d.alive.exchange(false)) killed = true;
    }
    return killed;
  }

  // Takes every queued event and counts those that can change what a
  // watched path names.
  void drain() IWSEC_REQUIRES(mutex_) {
    alignas(inotify_event) char buffer[16384];
    bool changed = false;
    for (;;) {
      const ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {  // cannot read the queue: trust it no more
        kill_under("/");
        changed = true;
        break;
      }
      for (ssize_t at = 0; at < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buffer + at);
        at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
        if (e->mask & IN_Q_OVERFLOW) {  // events were lost, a move among them perhaps: trust no watch
          kill_under("/");
          changed = true;
          continue;
        }
        auto it = directories_.find(e->wd);
        if (it == directories_.end()) continue;
        const std::shared_ptr<Directory> d = it->second;
        if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
          if (e->mask & IN_IGNORED) d->kernel_gone = true;
          kill_under(d->path);
          changed = true;
          continue;
        }
        if (e->len == 0) {  // the directory's own mode or owner: its files may have become unreadable
          changed = true;
          continue;
        }
        const std::string name(e->name);  // NUL-padded to len
        const std::string child = d->path == "/" ? "/" + name : d->path + "/" + name;
        // A directory on a watched path removed, moved or replaced.
        if ((e->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) && kill_under(child)) changed = true;
        if (d->names.find(name) == d->names.end()) continue;
        changed = true;
        if ((e->mask & (IN_CREATE | IN_MOVED_TO)) && !one_name(child)) d->alive.store(false);
      }
    }
    if (changed) generation_.fetch_add(1);
  }

  // False when @p path is a symbolic link or a file with other names (a
  // write through another directory's link raises no event here).
  static bool one_name(const std::string& path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
    return !S_ISLNK(st.st_mode) && (S_ISDIR(st.st_mode) || st.st_nlink <= 1);
  }

  // Whether @p dir is spelled as its canonical path: no symbolic link on
  // the way (a link swapped later would not be seen), and no ".", ".." or
  // repeated slash (the stores would go through directories not watched).
  static bool reached_directly(const std::string& dir) {
    char* real = ::realpath(dir.c_str(), nullptr);
    if (!real) return false;
    const bool same = dir == real;
    std::free(real);
    return same;
  }

  // Whether inotify sees every change to files in @p dir: local file
  // systems only (a network file system's other clients raise no event).
  static bool local_file_system(const std::string& dir) {
    struct statfs fs;
    if (::statfs(dir.c_str(), &fs) != 0) return false;
    switch (static_cast<unsigned long>(fs.f_type)) {
      case 0xEF53UL:      // ext2, ext3, ext4
      case 0x58465342UL:  // xfs
      case 0x9123683EUL:  // btrfs
      case 0x01021994UL:  // tmpfs
      case 0xF2F52010UL:  // f2fs
      case 0x2FC12FC1UL:  // zfs
      case 0x794C7630UL:  // overlayfs (containers)
        return true;
      default:
        return false;
    }
  }

  Mutex mutex_;
  unique_fd fd_ IWSEC_GUARDED_BY(mutex_);  // opened once, kept to the end
  std::atomic<int> fd_number_{-1};         // its number, for generation()'s one ioctl
  std::map<int, std::shared_ptr<Directory>> directories_ IWSEC_GUARDED_BY(mutex_);
  std::atomic<std::uint64_t> generation_{1};
  std::atomic<bool> draining_{false};
#endif
};

/// @brief One reader's files under the process's ChangeWatch: tells when
/// they cannot have changed since the reader last checked them by stat.
///
///     const auto g = changes_.now();
///     if (changes_.unchanged(g)) return fast();   // no stat
///     ... stat and compare (or reload) as before ...
///     changes_.checked(g);                       // only once that succeeded
class ChangeTracker {
 public:
  explicit ChangeTracker(const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
      auto r = ChangeWatch::instance().watch(p);
      if (!r) {  // one file unwatched: stat them all, and hold no watch for nothing
        watched_ = false;
        for (auto& held : registrations_) ChangeWatch::instance().unwatch(held);
        registrations_.clear();
        return;
      }
      registrations_.push_back(std::move(*r));
    }
  }
  ~ChangeTracker() {
    for (auto& r : registrations_) ChangeWatch::instance().unwatch(r);
  }
  ChangeTracker(const ChangeTracker&) = delete;
  ChangeTracker& operator=(const ChangeTracker&) = delete;

  /// @brief Whether every file is watched (else unchanged() is always false).
  bool watched() const noexcept { return watched_; }

  /// @brief The generation to test and record: the one a Scope on this
  /// thread took when there is one, else the watch's current one.
  std::uint64_t now() const {
    if (!watched_) return 0;
    const std::uint64_t scoped = Scope::current();
    return scoped != 0 ? scoped : ChangeWatch::instance().generation();
  }

  /// @brief True when the files were checked at generation @p g or later
  /// and nothing since made the watch untrustworthy: no stat is needed.
  bool unchanged(std::uint64_t g) const noexcept {
    if (!watched_ || g == 0 || g > checked_.load(std::memory_order_acquire)) return false;
    for (const auto& r : registrations_)
      if (!r.directory->alive.load()) return false;
    return true;
  }

  /// @brief The files were found as the reader's copy reflects them (or it
  /// was brought up to them) by a stat made after now() returned @p g.
  void checked(std::uint64_t g) noexcept {
    std::uint64_t seen = checked_.load(std::memory_order_relaxed);
    while (g > seen && !checked_.compare_exchange_weak(seen, g, std::memory_order_release)) {
    }
  }

  /// @brief For one request: every tracker on this thread uses one
  /// generation, taken when the scope opens (one ioctl per request, not
  /// one per file). Changes queued after it apply from the next request.
  class Scope {
   public:
    Scope() : outer_(slot()) { slot() = ChangeWatch::instance().generation(); }
    ~Scope() { slot() = outer_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    static std::uint64_t current() noexcept { return slot(); }

   private:
    static std::uint64_t& slot() noexcept {
      static thread_local std::uint64_t generation = 0;
      return generation;
    }
    std::uint64_t outer_;
  };

 private:
  std::vector<ChangeWatch::Registration> registrations_;
  bool watched_ = true;
  std::atomic<std::uint64_t> checked_{0};
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/change_watch.hpp -----

namespace iwsec {

namespace detail {
/// @brief Overwrites key material before the memory is given back.
inline void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(&s[0], s.size());
}
}  // namespace detail

/// @brief One key of a keyring.
struct KeyringEntry {
  std::string key_id;          ///< `kid`: 1 to 64 of `A-Z a-z 0-9 . _ -`
  std::int64_t created_at = 0;  ///< seconds since the epoch (UTC)
  std::string secret;          ///< raw key bytes, at least Signer::min_key_bytes
};

/// @brief The keys of a key file, oldest first; the last one signs.
struct Keyring {
  std::vector<KeyringEntry> keys;

  /// @brief The first line of a keyring file.
  static constexpr std::string_view format_line = "iwsec-keyring 1";
  /// @brief The `kid` of a key taken over from a raw key file.
  static constexpr std::string_view legacy_key_id = "legacy";

  /// @brief The keys as a Signer takes them.
  std::vector<SigningKey> signing_keys() const {
    std::vector<SigningKey> out;
    for (const auto& k : keys) out.push_back(SigningKey{k.key_id, k.secret});
    return out;
  }

  /// @brief The key named @p key_id, or null.
  const KeyringEntry* find(std::string_view key_id) const {
    for (const auto& k : keys)
      if (k.key_id == key_id) return &k;
    return nullptr;
  }

  /// @brief Appends a fresh random key (Signer::generate_secret) with a new
  /// `kid` ("k" + date + random hex), which then signs. Throws keyring_error
  /// when the keyring already holds Signer::max_keys keys.
  const KeyringEntry& add_new_key(std::int64_t now) {
    if (keys.size() >= Signer::max_keys)
      throw keyring_error("the keyring already holds " + std::to_string(Signer::max_keys) +
                          " keys (retire one first)");
    KeyringEntry k;
    k.key_id = new_key_id(now);
    k.created_at = now;
    k.secret = Signer::generate_secret();
    keys.push_back(std::move(k));
    return keys.back();
  }

  /// @brief Removes the key named @p key_id. Throws keyring_error when there
  /// is no such key or it is the only one (a signer needs a key).
  void retire(std::string_view key_id) {
    for (auto it = keys.begin(); it != keys.end(); ++it) {
      if (it->key_id != key_id) continue;
      if (keys.size() == 1) throw keyring_error("key " + std::string(key_id) + " is the only signing key; add one first");
      detail::wipe(it->secret);
      keys.erase(it);
      return;
    }
    throw keyring_error("no signing key " + std::string(key_id));
  }

  /// @brief The file's text (the keyring format, always).
  std::string serialize() const {
    std::string out(format_line);
    out += "\n# kid created key (base64url); the last key signs, all verify\n";
    for (const auto& k : keys) out += k.key_id + ' ' + format_time(k.created_at) + ' ' + base64url_encode(k.secret) + '\n';
    return out;
  }

  /// @brief Reads a key file's content: the keyring format, or a raw key
  /// (then @p raw_created_at is its creation time). Nothing, and the reason in
  /// @p error, when it is neither (a raw key under 32 bytes, a bad line).
  static std::optional<Keyring> parse(std::string_view text, std::int64_t raw_created_at, std::string& error) {
    Keyring ring;
    if (!starts_like_keyring(text)) {
      if (text.size() < Signer::min_key_bytes) {
        error = "holds " + std::to_string(text.size()) + " bytes; at least " + std::to_string(Signer::min_key_bytes) +
                " are required";
        return std::nullopt;
      }
      ring.keys.push_back(KeyringEntry{std::string(legacy_key_id), raw_created_at, std::string(text)});
      return ring;
    }
    // It starts like a keyring: it is one, whole, or it is refused. Nothing
    // is normalised (a BOM, CRLF, another version would change its meaning).
    const auto first_end = text.find('\n');
    const std::string_view first = text.substr(0, first_end);
    if (std::string why = version_line_problem(first); !why.empty()) {
      error = "line 1: " + why;
      return std::nullopt;
    }
    std::size_t line_number = 1;
    std::size_t at = first_end;
    while (at != std::string_view::npos && at + 1 < text.size()) {
      const std::size_t begin = at + 1;
      const std::size_t end = text.find('\n', begin);
      const std::string_view line = text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
      at = end;
      ++line_number;
      const auto fail = [&](const std::string& why) {
        error = "line " + std::to_string(line_number) + ": " + why;
        return std::nullopt;
      };
      if (const auto cr = line.find('\r'); cr != std::string_view::npos)
        return fail(cr + 1 == line.size() ? crlf_reason : "holds a carriage return");
      if (line.empty() || line[0] == '#') continue;
      const auto space1 = line.find(' ');
      const auto space2 = space1 == std::string_view::npos ? space1 : line.find(' ', space1 + 1);
      if (space2 == std::string_view::npos || line.find(' ', space2 + 1) != std::string_view::npos)
        return fail("expected 'KID CREATED KEY'");
      KeyringEntry k;
      k.key_id = std::string(line.substr(0, space1));
      if (!valid_key_id(k.key_id)) return fail("unusable kid (1 to 64 of A-Z a-z 0-9 . _ -)");
      if (ring.find(k.key_id)) return fail("duplicate kid " + k.key_id);
      const auto created = parse_time(line.substr(space1 + 1, space2 - space1 - 1));
      if (!created) return fail("creation time is not YYYY-MM-DDTHH:MM:SSZ");
      k.created_at = *created;
      auto secret = base64url_decode(line.substr(space2 + 1));
      if (!secret) return fail("key is not unpadded base64url");
      if (secret->size() < Signer::min_key_bytes) return fail("key shorter than 32 bytes");
      k.secret = std::move(*secret);
      ring.keys.push_back(std::move(k));
      if (ring.keys.size() > Signer::max_keys) return fail("more than " + std::to_string(Signer::max_keys) + " keys");
    }
    if (ring.keys.empty()) {
      error = "holds no key";
      return std::nullopt;
    }
    return ring;
  }

  /// @brief Whether @p text is to be read as a keyring: its first line
  /// (after any UTF-8 byte order mark, blank lines or whitespace) holds
  /// `iwsec-keyring`, in any case. Such a file parses whole or is refused;
  /// any other file is a raw key.
  static bool starts_like_keyring(std::string_view text) {
    constexpr std::string_view bom = "\xEF\xBB\xBF";
    if (text.substr(0, bom.size()) == bom) text.remove_prefix(bom.size());
    const auto start = text.find_first_not_of(" \t\r\n\v\f");
    if (start == std::string_view::npos) return false;
    text.remove_prefix(start);
    const std::string first = detail::ascii_lower(text.substr(0, text.find('\n')));
    return first.find("iwsec-keyring") != std::string::npos;
  }

  /// @brief Whether @p id is a usable `kid`: 1 to 64 of `A-Z a-z 0-9 . _ -`.
  static bool valid_key_id(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == '-'))
        return false;
    return true;
  }

  /// @brief RFC 3339 UTC with whole seconds: `2026-12-02T01:31:00Z`.
  static std::string format_time(std::int64_t seconds) {
    const std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    char buf[32];
    if (!::gmtime_r(&t, &tm) || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "?";
    return buf;
  }

  /// @brief The inverse of format_time; nothing unless exactly that form.
  static std::optional<std::int64_t> parse_time(std::string_view text) {
    if (text.size() != 20) return std::nullopt;
    static constexpr char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    for (std::size_t i = 0; i < 20; ++i) {
      const bool digit = text[i] >= '0' && text[i] <= '9';
      if (shape[i] == 'd' ? !digit : text[i] != shape[i]) return std::nullopt;
    }
    const auto number = [&](std::size_t from, std::size_t n) {
      int v = 0;
      for (std::size_t i = from; i < from + n; ++i) v = v * 10 + (text[i] - '0');
      return v;
    };
    std::tm tm{};
    tm.tm_year = number(0, 4) - 1900;
    tm.tm_mon = number(5, 2) - 1;
    tm.tm_mday = number(8, 2);
    tm.tm_hour = number(11, 2);
    tm.tm_min = number(14, 2);
    tm.tm_sec = number(17, 2);
    const std::int64_t seconds = static_cast<std::int64_t>(::timegm(&tm));
    if (format_time(seconds) != text) return std::nullopt;  // 2026-02-30 and the like
    return seconds;
  }

  /// @brief Why the first line of a file that starts like a keyring is not
  /// exactly format_line, or empty when it is.
  static std::string version_line_problem(std::string_view first) {
    if (first == format_line) return {};
    if (first.substr(0, 3) == "\xEF\xBB\xBF")
      return "starts with a UTF-8 byte order mark; a keyring starts with 'iwsec-keyring 1' (remove the mark)";
    if (!first.empty() && (first[0] == ' ' || first[0] == '\t' || first[0] == '\r' || first[0] == '\v' ||
                           first[0] == '\f'))
      return "whitespace before 'iwsec-keyring'; the file must start with 'iwsec-keyring 1'";
    if (first.find_first_not_of(" \t\r\v\f") == std::string_view::npos)
      return "blank line or whitespace before 'iwsec-keyring'; the file must start with 'iwsec-keyring 1'";
    if (first.back() == '\r') return crlf_reason;
    constexpr std::string_view name = "iwsec-keyring";
    if (first == name) return "the format version is missing; expected 'iwsec-keyring 1'";
    if (first.substr(0, name.size() + 1) != "iwsec-keyring ") return "expected 'iwsec-keyring 1' as the first line";
    const std::string_view version = first.substr(name.size() + 1);
    if (version.find_first_not_of("0123456789") != std::string_view::npos || version.empty())
      return "the format version is not a number (or has whitespace after it); expected 'iwsec-keyring 1'";
    // A later format: refusing beats guessing what its lines mean.
    return "format version " + std::string(version.substr(0, 12)) +
           " is not supported; this program reads version 1 (upgrade iwsec, or rewrite the file)";
  }

  /// @brief The reason given for a line that ends in CR LF.
  static constexpr const char* crlf_reason =
      "ends with a carriage return (CRLF line endings); keyring lines end with LF alone (convert the file, "
      "e.g. with dos2unix)";

  /// @brief A new `kid`: "k", the UTC date of @p now, "-", 8 random hex digits.
  static std::string new_key_id(std::int64_t now) {
    const std::string date = format_time(now);
    unsigned char random[4];
    detail::random_bytes(random, sizeof random);
    return "k" + date.substr(0, 4) + date.substr(5, 2) + date.substr(8, 2) + "-" +
           detail::hex_encode(random, sizeof random);
  }
};

/// @brief A key file (raw key or keyring) on disk, and the Signer kept in
/// step with it. Reading and creating never leave a partial file; changes
/// (update) take an exclusive lock on `<path>.lock` and replace the file
/// atomically, so iwsec-admin and a running server can share it.
class KeyringFile {
 public:
  explicit KeyringFile(std::string path) : path_(std::move(path)), changes_({path_}) {}
  KeyringFile(const KeyringFile&) = delete;
  KeyringFile& operator=(const KeyringFile&) = delete;

  const std::string& path() const noexcept { return path_; }

  /// @brief Reads the file. Throws keyring_error ("cannot open key file
  /// PATH: No such file or directory", "key file PATH holds 16 bytes; ...").
  Keyring load() {
    detail::WriterLock lock(mutex_);
    return load_and_remember();
  }

  /// @brief load(), or when the file does not exist, creates it as a keyring
  /// of one fresh key: mode 0600, written and fsynced under a temporary name,
  /// then linked into place, so it appears whole or not at all (if another
  /// process created it meanwhile, that one is read).
  Keyring load_or_create(std::int64_t now = static_cast<std::int64_t>(std::time(nullptr))) {
    detail::WriterLock lock(mutex_);
    struct stat st;
    if (::lstat(path_.c_str(), &st) == 0 || errno != ENOENT) return load_and_remember();
    Keyring ring;
    ring.add_new_key(now);
    const std::string tmp = path_ + ".tmp." + std::to_string(::getpid()) + "." + detail::hex_encode(random_id().data(), 8);
    {
      detail::unique_fd fd = detail::open_fd(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
      if (!fd) throw io_error("cannot create key file", tmp);
      if (::fchmod(fd.get(), 0600) != 0 || !detail::write_all(fd.get(), ring.serialize()) || ::fsync(fd.get()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw keyring_error("cannot write key file " + tmp + ": " + std::strerror(e));
      }
    }
    const bool linked = ::link(tmp.c_str(), path_.c_str()) == 0;
    const int link_errno = errno;
    ::unlink(tmp.c_str());
    if (!linked) {
      if (link_errno == EEXIST) return load_and_remember();
      throw keyring_error("cannot create key file " + path_ + ": " + std::strerror(link_errno));
    }
    if (!detail::fsync_directory(detail::parent_directory(path_)))
      throw io_error("cannot make key file durable (fsync of its directory)", path_);
    return load_and_remember();
  }

  /// @brief Changes the file under its lock: reads it (or starts from an
  /// empty keyring when it does not exist and @p create), applies @p change,
  /// and replaces the file atomically (mode 0600; a raw key file becomes a
  /// keyring). Returns the new keyring. Throws keyring_error (also what
  /// @p change throws).
  Keyring update(const std::function<void(Keyring&)>& change, bool create = false) {
    detail::WriterLock lock(mutex_);
    detail::file_lock cross_process(path_ + ".lock");
    if (!cross_process) throw io_error("cannot lock key file", path_ + ".lock");
    Keyring ring;
    struct stat st;
    if (!create || ::lstat(path_.c_str(), &st) == 0 || errno != ENOENT) ring = read_file(nullptr);
    change(ring);
    if (ring.keys.empty()) throw keyring_error("key file " + path_ + " would hold no key");
    Signer check(ring.signing_keys());  // the same rules a loading server applies
    if (!detail::write_file_atomically(path_, ring.serialize(), 0600))
      throw io_error("cannot replace key file", path_);
    return ring;
  }

  /// @brief Keeps @p signer in step with the file: one stat when the
  /// process's change watch saw an event naming it (or cannot watch it;
  /// detail/change_watch.hpp), and when the file changed since it was
  /// last loaded, reads it and replaces the signer's keys. True when they
  /// were replaced. Throws StateUnavailable
  /// when the file changed (or vanished) and cannot be read, so the routes
  /// answer 503 rather than keep verifying with keys that may be retired.
  /// Cheap enough to call on every request (Options::refresh_keys).
  bool refresh(Signer& signer) {
    const std::uint64_t generation = changes_.now();
    if (changes_.unchanged(generation)) return false;  // no event names the file: no stat
    struct stat st;
    const bool present = ::stat(path_.c_str(), &st) == 0;
    if (present) {
      detail::ReaderLock shared(mutex_);  // the common case: every thread at once
      if (loaded_ && detail::file_identity::of(st) == *loaded_) {
        changes_.checked(generation);
        return false;
      }
    }
    detail::WriterLock lock(mutex_);
    if (present && loaded_ && detail::file_identity::of(st) == *loaded_) {  // reloaded meanwhile
      changes_.checked(generation);
      return false;
    }
    try {
      Keyring ring = load_and_remember();
      signer.replace_keys(ring.signing_keys());
      changes_.checked(generation);
      return true;
    } catch (const std::exception& e) {
      loaded_.reset();  // try again on the next call
      throw StateUnavailable(std::string("iwsec: signing keys changed but cannot be reloaded: ") + e.what());
    }
  }

  /// @brief Reads the file now and replaces @p signer's keys (a reload on
  /// SIGHUP). Throws keyring_error and leaves the signer as it was when the
  /// file is unusable.
  void reload(Signer& signer) {
    detail::WriterLock lock(mutex_);
    Keyring ring = load_and_remember();
    signer.replace_keys(ring.signing_keys());
  }

 private:
  static std::array<unsigned char, 8> random_id() {
    std::array<unsigned char, 8> r{};
    detail::random_bytes(r.data(), r.size());
    return r;
  }

  keyring_error io_error(const std::string& what, const std::string& path) const {
    return keyring_error(what + " " + path + ": " + std::strerror(errno));
  }

  // Reads the file and remembers which one it read (for refresh()).
  Keyring load_and_remember() IWSEC_REQUIRES(mutex_) {
    detail::unique_fd fd;
    Keyring ring = read_file(&fd);
    struct stat st;
    if (::fstat(fd.get(), &st) == 0) {
      loaded_ = detail::file_identity::of(st);
      loaded_fd_ = std::move(fd);  // held open: its inode cannot be reused while loaded_ names it
    }
    return ring;
  }

  // Opens and parses the file; leaves it open in *@p keep when given.
  Keyring read_file(detail::unique_fd* keep) const {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
    if (!fd) throw io_error("cannot open key file", path_);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw io_error("cannot read key file", path_);
    if (!S_ISREG(st.st_mode)) throw keyring_error("key file " + path_ + " is not a regular file");
    std::string text;
    if (!detail::read_all(fd.get(), text)) throw io_error("cannot read key file", path_);
    std::string error;
    auto ring = Keyring::parse(text, static_cast<std::int64_t>(st.st_mtim.tv_sec), error);
    detail::wipe(text);
    if (!ring) throw keyring_error("key file " + path_ + " " + error);
    if (keep) *keep = std::move(fd);
    return std::move(*ring);
  }

  std::string path_;
  detail::ChangeTracker changes_;  // lets refresh() skip its stat while no event names the file
  detail::SharedMutex mutex_;
  std::optional<detail::file_identity> loaded_ IWSEC_GUARDED_BY(mutex_);
  detail::unique_fd loaded_fd_ IWSEC_GUARDED_BY(mutex_);
};

}  // namespace iwsec
// ----- end iwsec/keyring.hpp -----
// ----- begin iwsec/password.hpp -----
/// @file
/// @brief Password hashes in passlib's `$pbkdf2-sha256$rounds$salt$checksum`
/// format (PBKDF2-HMAC-SHA256 from precomputed HMAC states; the same bytes as
/// OpenSSL's PKCS5_PBKDF2_HMAC), verified in constant time.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <openssl/evp.h>


namespace iwsec {

/// @brief The current OWASP recommendation for PBKDF2-HMAC-SHA256.
constexpr std::uint32_t default_pbkdf2_rounds = 600000;

namespace detail {

/// @brief passlib's "adapted base64": standard alphabet with '.' for '+', no padding.
inline std::string ab64_encode(std::string_view raw) {
  std::string s = base64_encode(raw);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (auto& c : s)
    if (c == '+') c = '.';
  return s;
}

inline std::optional<std::string> ab64_decode(std::string_view text) {
  std::string s(text);
  for (auto& c : s) {
    if (c == '.') {
      c = '+';
    } else if (c == '+' || c == '=') {
      return std::nullopt;
    }
  }
  std::string out;
  if (!base64_decode_symbols(s, false, out)) return std::nullopt;
  return out;
}

/// @brief Calls of pbkdf2_sha256 since the process started: lets tests
/// prove that refusals cost the same number of key derivations.
inline std::atomic<std::uint64_t> kdf_calls{0};
inline std::uint64_t kdf_call_count() noexcept { return kdf_calls.load(std::memory_order_relaxed); }

/// @brief PBKDF2 rounds (iterations) run by pbkdf2_sha256 since the process
/// started: lets tests prove that every password check costs at least the
/// configured rounds, whatever the stored hash's rounds.
inline std::atomic<std::uint64_t> kdf_rounds{0};
inline std::uint64_t kdf_round_count() noexcept { return kdf_rounds.load(std::memory_order_relaxed); }

inline std::string pbkdf2_sha256(std::string_view password, std::string_view salt, std::uint32_t rounds,
                                 std::size_t length = 32) {
  kdf_calls.fetch_add(1, std::memory_order_relaxed);
  kdf_rounds.fetch_add(rounds, std::memory_order_relaxed);
  std::string out(length, '\0');
  pbkdf2_hmac_sha256(password, salt, rounds, reinterpret_cast<unsigned char*>(&out[0]), length);
  return out;
}

}  // namespace detail

/// @brief A parsed `$pbkdf2-sha256$...` string.
struct Pbkdf2Hash {
  static constexpr std::uint32_t max_rounds = 100000000;  // bounds work a hostile file can ask for
  std::uint32_t rounds = 0;
  std::string salt;      ///< raw bytes
  std::string checksum;  ///< raw bytes, 32 of them

  /// @brief Parses the passlib format; nothing on any deviation.
  static std::optional<Pbkdf2Hash> parse(std::string_view text) {
    constexpr std::string_view prefix = "$pbkdf2-sha256$";
    if (text.size() > 512 || text.substr(0, prefix.size()) != prefix) return std::nullopt;
    text.remove_prefix(prefix.size());
    const auto d1 = text.find('$');
    if (d1 == std::string_view::npos) return std::nullopt;
    const auto d2 = text.find('$', d1 + 1);
    if (d2 == std::string_view::npos || text.find('$', d2 + 1) != std::string_view::npos) return std::nullopt;
    const auto rounds_text = text.substr(0, d1);
    if (rounds_text.empty() || rounds_text.size() > 9 || rounds_text[0] == '0') return std::nullopt;
    std::uint64_t rounds = 0;
    for (char c : rounds_text) {
      if (c < '0' || c > '9') return std::nullopt;
      rounds = rounds * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (rounds == 0 || rounds > max_rounds) return std::nullopt;
    auto salt = detail::ab64_decode(text.substr(d1 + 1, d2 - d1 - 1));
    auto checksum = detail::ab64_decode(text.substr(d2 + 1));
    if (!salt || !checksum || checksum->size() != 32) return std::nullopt;
    return Pbkdf2Hash{static_cast<std::uint32_t>(rounds), std::move(*salt), std::move(*checksum)};
  }

  std::string to_string() const {
    return "$pbkdf2-sha256$" + std::to_string(rounds) + '$' + detail::ab64_encode(salt) + '$' +
           detail::ab64_encode(checksum);
  }
};

/// @brief Hashes @p password with a fresh 16-byte salt.
inline std::string hash_password(std::string_view password, std::uint32_t rounds = default_pbkdf2_rounds) {
  if (rounds == 0 || rounds > Pbkdf2Hash::max_rounds) throw invalid_option("iwsec: PBKDF2 rounds out of range");
  Pbkdf2Hash h;
  h.rounds = rounds;
  h.salt = detail::random_string(16);
  h.checksum = detail::pbkdf2_sha256(password, h.salt, rounds);
  return h.to_string();
}

/// @brief True when @p password matches @p stored (compared in constant
/// time); false for a wrong password and for an unparseable hash.
inline bool verify_password(std::string_view password, std::string_view stored) {
  const auto h = Pbkdf2Hash::parse(stored);
  if (!h) return false;
  return detail::constant_time_equal(detail::pbkdf2_sha256(password, h->salt, h->rounds), h->checksum);
}

/// @brief Spends the work of one verify_password at @p rounds and returns
/// false: what a login for an unknown user costs, so timing hides who exists.
inline bool verify_password_decoy(std::string_view password, std::uint32_t rounds = default_pbkdf2_rounds) {
  static const std::string salt = detail::random_string(16);
  static const std::string checksum = detail::random_string(32);
  const bool equal = detail::constant_time_equal(detail::pbkdf2_sha256(password, salt, rounds), checksum);
  (void)equal;
  return false;
}

/// @brief verify_password(), costing at least @p min_rounds PBKDF2 rounds:
/// a stored hash with fewer rounds (passlib's default of 29 000, an import)
/// is checked with its own rounds, then the missing rounds run as well (on
/// the same password and salt, the result discarded), so that its wrong
/// password costs what an unknown email's decoy costs and timing does not
/// tell existing accounts from the others. An unparseable hash costs
/// @p min_rounds too (verify_password_decoy).
inline bool verify_password(std::string_view password, std::string_view stored, std::uint32_t min_rounds) {
  const auto h = Pbkdf2Hash::parse(stored);
  if (!h) return verify_password_decoy(password, min_rounds);
  const bool equal = detail::constant_time_equal(detail::pbkdf2_sha256(password, h->salt, h->rounds), h->checksum);
  if (h->rounds < min_rounds) {
    const std::string padding = detail::pbkdf2_sha256(password, h->salt, min_rounds - h->rounds);
    (void)detail::constant_time_equal(padding, h->checksum);  // used, so the work is not optimised away
  }
  return equal;
}

/// @brief Whether @p stored should be hashed again with @p rounds (passlib's
/// `needs_update`): its rounds differ, or it does not parse.
inline bool password_needs_rehash(std::string_view stored, std::uint32_t rounds) {
  const auto h = Pbkdf2Hash::parse(stored);
  return !h || h->rounds != rounds;
}

}  // namespace iwsec
// ----- end iwsec/password.hpp -----
// ----- begin iwsec/user_store.hpp -----
/// @brief Users and their store, all parts at once: includes user.hpp, user_store_interface.hpp, accounts.hpp and memory_user_store.hpp.
/// @file
/// Each part is a header of its own; this one keeps `#include <iwsec/user_store.hpp>` working.

// ----- begin iwsec/user.hpp -----
/// @brief One account and the outcome of a store write: User, UserStatus, StoreStatus, StoreResult.
/// @file

#include <cstdint>
#include <string>
#include <utility>

namespace iwsec {

/// @brief One account. Secrets are stored only as hashes.
struct User {
  std::string user_id;               ///< opaque, stable, a string on the wire
  std::string email;                 ///< as entered; looked up case-insensitively
  std::string password_hash;         ///< `$pbkdf2-sha256$...`
  std::string refresh_token_sha256;  ///< hex SHA-256 of the current refresh token
  std::int64_t refresh_generation = 0;  ///< bumped by each refresh-token rotation
  bool disabled = false;
  /// @brief When the current refresh token was issued (seconds since the
  /// epoch; Options::refresh_token_lifetime counts from it). 0: unknown (a
  /// token from before issue times were kept: the stores shipped here set it
  /// to the time they first load such a user, and keep that time).
  std::int64_t refresh_token_issued_at = 0;
};

/// @brief What an access-token check needs to know about its user, cheaply.
struct UserStatus {
  std::int64_t refresh_generation = 0;
  bool disabled = false;
  /// @brief The current holder of the email: an access token whose `user_id`
  /// differs is invalid. A store that overrides status_of must fill it (an
  /// empty id matches no token minted for a user with an id).
  std::string user_id;
};

/// @brief What became of a UserStore write (StoreResult carries it, with the reason).
enum class StoreStatus { ok, not_found, already_exists, invalid, io_error };

/// @brief A short name for a StoreStatus.
inline const char* to_string(StoreStatus s) noexcept {
  switch (s) {
    case StoreStatus::ok: return "ok";
    case StoreStatus::not_found: return "not found";
    case StoreStatus::already_exists: return "already exists";
    case StoreStatus::invalid: return "invalid";
    case StoreStatus::io_error: return "I/O error";
  }
  return "unknown";
}

/// @brief The outcome of a UserStore write: a StoreStatus and, when it is
/// not ok, why in the store's own words (an I/O error's path and the
/// system's reason, the rule a user broke; never a secret). Compares with a
/// StoreStatus (`store.add_user(u) == StoreStatus::ok`) and converts to one.
class StoreResult {
 public:
  StoreResult(StoreStatus status = StoreStatus::ok) noexcept : status_(status) {}  // NOLINT: implicit on purpose
  StoreResult(StoreStatus status, std::string reason) : status_(status), reason_(std::move(reason)) {}

  StoreStatus status() const noexcept { return status_; }
  bool ok() const noexcept { return status_ == StoreStatus::ok; }
  operator StoreStatus() const noexcept { return status_; }  // NOLINT: implicit on purpose

  /// @brief Why the write did not happen: the store's words, else
  /// to_string(status()); empty when it is ok.
  std::string reason() const {
    if (ok()) return {};
    return reason_.empty() ? std::string(to_string(status_)) : reason_;
  }

 private:
  StoreStatus status_;
  std::string reason_;
};

/// @brief "ok", or the reason of a write that did not happen.
inline std::string to_string(const StoreResult& r) { return r.ok() ? std::string("ok") : r.reason(); }

}  // namespace iwsec
// ----- end iwsec/user.hpp -----
// ----- begin iwsec/user_store_interface.hpp -----
/// @brief The UserStore interface: the user database the security routes read and write.
/// @file

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>


namespace iwsec {

/// @brief The user database the security routes read and write. Every method
/// may be called from many threads at once.
class UserStore {
 public:
  virtual ~UserStore() = default;

  /// @brief The user with this email (ASCII case-insensitive), if any.
  virtual std::optional<User> find_by_email(std::string_view email) = 0;

  /// @brief The user whose current refresh token hashes to @p token_sha256 (hex).
  virtual std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) = 0;

  /// @brief Adds @p user; already_exists when the email (case-insensitively),
  /// the user id or the refresh-token hash is taken; invalid when the email or
  /// id is empty or a text field is not valid UTF-8.
  virtual StoreResult add_user(const User& user) = 0;

  /// @brief Applies @p change to the user with this email, atomically with
  /// respect to every other write (and, for durable stores, durably). The
  /// change must not alter the email or the user id.
  virtual StoreResult update_user(std::string_view email, const std::function<void(User&)>& change) = 0;

  /// @brief Every user, in a stable order.
  virtual std::vector<User> list_users() = 0;

  /// @brief Removes the user with this email (ASCII case-insensitive): their
  /// refresh token stops working at once, and so do their access tokens
  /// (a token names its holder by `user_id`, which a user created later
  /// under the same email does not share). not_found when there is no such
  /// user. Required (since 0.x): a default that removed nothing would let a
  /// store skip the rule that a deleted user's tokens stop working.
  virtual StoreResult delete_user(std::string_view email) = 0;

  /// @brief Generation and disabled flag of a user: the hot path of every
  /// access-token check. Override when a cheaper answer than a copy exists.
  virtual std::optional<UserStatus> status_of(std::string_view email) {
    auto u = find_by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled, std::move(u->user_id)};
  }
};

}  // namespace iwsec
// ----- end iwsec/user_store_interface.hpp -----
// ----- begin iwsec/accounts.hpp -----
/// @brief Account operations over any UserStore: create a user, set a password, rotate a refresh token, disable.
/// @file

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>


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
// ----- end iwsec/accounts.hpp -----
// ----- begin iwsec/memory_user_store.hpp -----
/// @brief MemoryUserStore: a UserStore in process memory.
/// @file

#include <functional>
#include <optional>
#include <string_view>
#include <vector>

// ----- begin iwsec/detail/user_index.hpp -----
/// @brief detail::user_index: users indexed by email, id and refresh-token hash, copied on write.
/// @file

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>


namespace iwsec {
namespace detail {

/// @brief Users indexed by lower-cased email, user id and refresh-token
/// hash. Not synchronised: the stores wrap it in their own locking.
///
/// Every operation costs constant time (expected), so loading n users is
/// O(n), and so is copying: a copy shares the bulk of the users (an
/// immutable base) with the original and carries only the changes made
/// since (an overlay, folded into a new base once it grows past a sixteenth
/// of the users). A store can thus prepare a write on a copy while readers
/// go on using the original, without copying 10^5 users per write.
class user_index {
 public:
  const User* by_email(std::string_view email) const { return by_key(ascii_lower(email)); }

  const User* by_refresh_token_hash(std::string_view token_sha256) const {
    const std::string token(token_sha256);
    if (!overlay_tokens_.empty()) {
      auto o = overlay_tokens_.find(token);
      if (o != overlay_tokens_.end()) return by_key(o->second);
    }
    auto it = base_->by_token.find(token);
    if (it == base_->by_token.end() || overridden(it->second)) return nullptr;
    return &base_->by_email.at(it->second);
  }

  /// @brief Why a write is refused, in the words every store uses (the
  /// PostgreSQL store keeps the same rules with the same reasons).
  static constexpr const char* not_storable =
      "a user needs an email and a user id, all text in valid UTF-8, and no negative generation or issue time";
  static constexpr const char* no_such_user = "no user with this email";
  static constexpr const char* token_held = "another user holds this refresh token";

  /// @brief Whether the change of @p before (found by @p key, its lower-cased
  /// email) into @p after may be stored: the identity (email, user id)
  /// unchanged and the result storable. ok, or invalid with the reason.
  static StoreResult change_problem(std::string_view key, const User& before, const User& after) {
    if (ascii_lower(after.email) != key || after.user_id != before.user_id)
      return StoreResult(StoreStatus::invalid, "a change may not alter a user's email or user id");
    if (!storable(after)) return StoreResult(StoreStatus::invalid, not_storable);
    return StoreStatus::ok;
  }

  /// @brief Fields every stored user must have: text a JSON file can hold.
  static bool storable(const User& u) {
    return !u.email.empty() && !u.user_id.empty() && is_valid_utf8(u.email) && is_valid_utf8(u.user_id) &&
           is_valid_utf8(u.password_hash) && is_valid_utf8(u.refresh_token_sha256) && u.refresh_generation >= 0 &&
           u.refresh_token_issued_at >= 0;
  }

  StoreResult add(const User& user) { return add(User(user)); }

  /// @brief Adds @p user (moved in); already_exists when its email, id or
  /// refresh-token hash is taken, invalid when not storable.
  StoreResult add(User&& user) {
    if (!storable(user)) return StoreResult(StoreStatus::invalid, not_storable);
    std::string key = ascii_lower(user.email);
    if (by_key(key)) return StoreResult(StoreStatus::already_exists, "a user with this email exists");
    if (id_taken(user.user_id)) return StoreResult(StoreStatus::already_exists, "a user with this user id exists");
    if (token_taken(user.refresh_token_sha256))
      return StoreResult(StoreStatus::already_exists, token_held);
    ++size_;
    if (base_is_mine()) {
      base_data& b = *base_;
      b.ids.insert(user.user_id);
      if (!user.refresh_token_sha256.empty()) b.by_token.emplace(user.refresh_token_sha256, key);
      b.order.push_back(key);
      b.by_email.emplace(std::move(key), std::move(user));
      return StoreStatus::ok;
    }
    if (base_->by_email.count(key)) {
      removed_ids_.erase(user.user_id);  // re-added where it was removed: back at its old place
    } else {
      overlay_ids_.insert(user.user_id);
      if (!overlay_.count(key)) added_order_.push_back(key);
    }
    if (!user.refresh_token_sha256.empty()) overlay_tokens_[user.refresh_token_sha256] = key;
    overlay_[key] = std::move(user);
    compact_if_large();
    return StoreStatus::ok;
  }

  /// @brief Applies @p change to a copy; commits it only if the identity is
  /// unchanged and the new refresh-token hash is not someone else's.
  StoreResult update(std::string_view email, const std::function<void(User&)>& change) {
    const std::string key = ascii_lower(email);
    const User* current = by_key(key);
    if (!current) return StoreResult(StoreStatus::not_found, no_such_user);
    User updated = *current;
    change(updated);
    if (StoreResult problem = change_problem(key, *current, updated); !problem.ok()) return problem;
    const bool new_token = updated.refresh_token_sha256 != current->refresh_token_sha256;
    if (new_token && token_taken(updated.refresh_token_sha256))
      return StoreResult(StoreStatus::already_exists, token_held);
    if (base_is_mine()) {
      base_data& b = *base_;
      auto it = b.by_email.find(key);
      if (new_token) {
        b.by_token.erase(it->second.refresh_token_sha256);
        if (!updated.refresh_token_sha256.empty()) b.by_token.emplace(updated.refresh_token_sha256, key);
      }
      it->second = std::move(updated);
      return StoreStatus::ok;
    }
    overlay_tokens_.erase(current->refresh_token_sha256);
    if (!updated.refresh_token_sha256.empty()) overlay_tokens_[updated.refresh_token_sha256] = key;
    overlay_[key] = std::move(updated);
    compact_if_large();
    return StoreStatus::ok;
  }

  /// @brief Removes the user with this email; not_found when there is none.
  StoreResult remove(std::string_view email) {
    const std::string key = ascii_lower(email);
    const User* current = by_key(key);
    if (!current) return StoreResult(StoreStatus::not_found, no_such_user);
    --size_;
    if (!base_is_mine() || !base_->by_email.count(key)) {
      overlay_tokens_.erase(current->refresh_token_sha256);
      if (base_->by_email.count(key)) {
        removed_ids_.insert(current->user_id);
      } else {
        overlay_ids_.erase(current->user_id);
      }
      overlay_[key] = std::nullopt;
      compact_if_large();
      return StoreStatus::ok;
    }
    // Only in place in a base this index alone holds (rare: the stores
    // remove through copies); the order list is rebuilt without it.
    base_data& b = *base_;
    auto it = b.by_email.find(key);
    b.by_token.erase(it->second.refresh_token_sha256);
    b.ids.erase(it->second.user_id);
    b.by_email.erase(it);
    b.order.erase(std::find(b.order.begin(), b.order.end(), key));
    return StoreStatus::ok;
  }

  /// @brief Room for @p n users without rehashing (for a load).
  void reserve(std::size_t n) {
    if (!base_is_mine()) return;
    base_->by_email.reserve(n);
    base_->by_token.reserve(n);
    base_->ids.reserve(n);
    base_->order.reserve(n);
  }

  std::size_t size() const noexcept { return size_; }

  /// @brief Calls @p f(const User&) for every user, in insertion order.
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& key : base_->order) {
      if (!overlay_.empty()) {
        auto o = overlay_.find(key);
        if (o != overlay_.end()) {
          if (o->second) f(*o->second);
          continue;
        }
      }
      f(base_->by_email.at(key));
    }
    for (const auto& key : added_order_) {
      const auto& o = overlay_.at(key);
      if (o) f(*o);
    }
  }

  std::vector<User> list() const {
    std::vector<User> out;
    out.reserve(size_);
    for_each([&](const User& u) { out.push_back(u); });
    return out;
  }

 private:
  struct base_data {
    std::unordered_map<std::string, User> by_email;         // lower-cased email -> user
    std::unordered_map<std::string, std::string> by_token;  // hash -> lower-cased email
    std::unordered_set<std::string> ids;                    // every user id, for uniqueness
    std::vector<std::string> order;                         // insertion order
  };

  // A base no copy shares can change in place (loading, MemoryUserStore).
  bool base_is_mine() const noexcept { return overlay_.empty() && base_.use_count() == 1; }

  bool overridden(const std::string& key) const { return !overlay_.empty() && overlay_.count(key); }

  const User* by_key(const std::string& key) const {
    if (!overlay_.empty()) {
      auto o = overlay_.find(key);
      if (o != overlay_.end()) return o->second ? &*o->second : nullptr;
    }
    auto it = base_->by_email.find(key);
    return it == base_->by_email.end() ? nullptr : &it->second;
  }

  bool id_taken(const std::string& id) const {
    return overlay_ids_.count(id) || (base_->ids.count(id) && !removed_ids_.count(id));
  }

  bool token_taken(const std::string& token) const {
    if (token.empty()) return false;
    if (overlay_tokens_.count(token)) return true;
    auto it = base_->by_token.find(token);
    return it != base_->by_token.end() && !overridden(it->second);
  }

  // Folds the overlay into a new base once it holds more than a sixteenth
  // of the users: O(n) once per n/16 changes.
  void compact_if_large() {
    if (overlay_.size() <= 256 + base_->by_email.size() / 16) return;
    user_index fresh;
    fresh.reserve(size_);
    for_each([&](const User& u) { fresh.add(User(u)); });
    *this = std::move(fresh);
  }

  std::shared_ptr<base_data> base_ = std::make_shared<base_data>();
  std::unordered_map<std::string, std::optional<User>> overlay_;  // changed since base_; nullopt: removed
  std::unordered_map<std::string, std::string> overlay_tokens_;   // current hashes of overlay users -> key
  std::unordered_set<std::string> overlay_ids_;                   // ids of users not in base_
  std::unordered_set<std::string> removed_ids_;                   // ids of base_ users removed
  std::vector<std::string> added_order_;                          // keys not in base_, in insertion order
  std::size_t size_ = 0;
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/user_index.hpp -----

namespace iwsec {

/// @brief A UserStore in process memory: for tests and hosts that keep users
/// elsewhere and load them at start.
class MemoryUserStore : public UserStore {
 public:
  std::optional<User> find_by_email(std::string_view email) override {
    detail::ReaderLock lock(mutex_);
    const User* u = index_.by_email(email);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    detail::ReaderLock lock(mutex_);
    const User* u = index_.by_refresh_token_hash(token_sha256);
    return u ? std::optional<User>(*u) : std::nullopt;
  }

  StoreResult add_user(const User& user) override {
    detail::WriterLock lock(mutex_);
    return index_.add(user);
  }

  StoreResult update_user(std::string_view email, const std::function<void(User&)>& change) override {
    detail::WriterLock lock(mutex_);
    return index_.update(email, change);
  }

  std::vector<User> list_users() override {
    detail::ReaderLock lock(mutex_);
    return index_.list();
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    detail::ReaderLock lock(mutex_);
    const User* u = index_.by_email(email);
    if (!u) return std::nullopt;
    return UserStatus{u->refresh_generation, u->disabled, u->user_id};
  }

  StoreResult delete_user(std::string_view email) override {
    detail::WriterLock lock(mutex_);
    return index_.remove(email);
  }

 private:
  detail::SharedMutex mutex_;
  detail::user_index index_ IWSEC_GUARDED_BY(mutex_);
};

}  // namespace iwsec
// ----- end iwsec/memory_user_store.hpp -----
// ----- end iwsec/user_store.hpp -----
// ----- begin iwsec/json_file_user_store.hpp -----
/// @file
/// @brief A UserStore kept in a users file (a snapshot and its change
/// journal) that several processes (the server and iwsec-admin) share safely.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// ----- begin iwsec/detail/log.hpp -----
/// @brief The operator's log of the library's file-backed parts: a line sink, and its default on stderr.
/// @file

#include <cstdio>
#include <functional>
#include <string>

namespace iwsec {
namespace detail {

/// @brief Where a store or journal tells the operator what it did: one line, no newline.
using Log = std::function<void(const std::string& line)>;

/// @brief The default Log: "iwsec: <line>" on stderr, in one write, flushed at once.
inline Log stderr_log() {
  return [](const std::string& line) {
    const std::string text = "iwsec: " + line + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  };
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/log.hpp -----
// ----- begin iwsec/detail/users_file.hpp -----
/// @file
/// @brief The users-file format: the snapshot (`users.json`, format version 1)
/// and its change journal (`users.json.journal`), written and parsed here and
/// nowhere else.
///
/// The snapshot is one JSON object, `{"version": 1, "users": [...]}`, one
/// user object per line as serialize() writes it (any valid JSON with the
/// same members loads too: a hand edit, an earlier version's file).
///
/// The journal holds one JSON object per line, each ending in a newline:
///
///     {"iwsec_users_journal":1,"snapshot":{"sha256":"…","size":N,"inode":"N","modified_ns":"N"}}
///     {"put":{<a user object, as in the snapshot>}}
///     {"delete":"<email>"}
///     {"compacted":{"sha256":"…","size":N,"inode":"N","modified_ns":"N"}}
///
/// The first line (the header) names the snapshot the journal extends, by the
/// SHA-256 of its bytes; each `put` adds or replaces the user with that email,
/// each `delete` removes one. A `compacted` line says that the snapshot it
/// names (also by inode, size and modification time, so a process can know
/// it without reading it) holds every change before that line: it is written
/// just before that snapshot is renamed into place, and means nothing while
/// no such file exists.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>


namespace iwsec {
namespace detail {
namespace users_file {

/// @brief Bytes a user takes in the snapshot, to reserve room.
inline constexpr std::size_t bytes_per_user_estimate = 320;

/// @brief Appends @p u as the one-line JSON object the snapshot and the
/// journal hold.
inline void append_user_object(std::string& out, const User& u) {
  out += "{\"user_id\": ";
  append_json_string(out, u.user_id);
  out += ", \"email\": ";
  append_json_string(out, u.email);
  out += ", \"password_hash\": ";
  append_json_string(out, u.password_hash);
  out += ", \"refresh_token_sha256\": ";
  append_json_string(out, u.refresh_token_sha256);
  out += ", \"refresh_generation\": " + std::to_string(u.refresh_generation);
  out += u.disabled ? ", \"disabled\": true" : ", \"disabled\": false";
  // Added later: files without it still load (see parse_user_object).
  if (u.refresh_token_issued_at) out += ", \"refresh_token_issued_at\": " + std::to_string(u.refresh_token_issued_at);
  out += '}';
}

/// @brief The snapshot's text for the users @p for_each passes (in order) to
/// its callback; @p count sizes the buffer.
template <typename ForEach>
std::string serialize_each(std::size_t count, ForEach&& for_each) {
  std::string out;
  out.reserve(64 + count * bytes_per_user_estimate);
  out += "{\n  \"version\": 1,\n  \"users\": [";
  bool first = true;
  for_each([&](const User& u) {
    out += first ? "\n    " : ",\n    ";
    append_user_object(out, u);
    first = false;
  });
  out += first ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

/// @brief The snapshot's text for @p users.
inline std::string serialize(const std::vector<User>& users) {
  return serialize_each(users.size(), [&](const auto& each) {
    for (const User& u : users) each(u);
  });
}

/// @brief Parses one user object (@p scratch: room for object.size() bytes).
/// A user without `refresh_token_issued_at` (written before it existed) gets
/// @p loaded_at, and sets @p unstamped. False when a member is missing or of
/// the wrong type.
inline bool parse_user_object(std::string_view object, char* scratch, User& u, std::int64_t loaded_at,
                              bool& unstamped) {
  bool have_id = false, have_email = false, have_hash = false, have_token = false, have_disabled = false;
  std::optional<std::int64_t> generation;
  std::optional<std::int64_t> issued_at;
  bool have_issued_at = false;
  const auto text_field = [](const json_value_view& v, std::string& field, bool& have) {
    have = v.kind == json_kind::string;
    if (have) field.assign(v.text.data(), v.text.size());
  };
  flat_json_parser parser(object, scratch);
  const bool parsed = parser.parse_object(2, [&](std::string_view name, const json_value_view& v) {
    if (name == "user_id") {
      text_field(v, u.user_id, have_id);
    } else if (name == "email") {
      text_field(v, u.email, have_email);
    } else if (name == "password_hash") {
      text_field(v, u.password_hash, have_hash);
    } else if (name == "refresh_token_sha256") {
      text_field(v, u.refresh_token_sha256, have_token);
    } else if (name == "refresh_generation") {
      generation = json_non_negative_integer(v);
    } else if (name == "disabled") {
      have_disabled = v.kind == json_kind::literal && (v.raw == "true" || v.raw == "false");
      u.disabled = v.raw == "true";
    } else if (name == "refresh_token_issued_at") {
      have_issued_at = true;
      issued_at = json_non_negative_integer(v);
    }
  });
  if (!parsed || !have_id || !have_email || !have_hash || !have_token || !generation || !have_disabled ||
      (have_issued_at && !issued_at))
    return false;
  u.refresh_generation = *generation;
  u.refresh_token_issued_at = issued_at && *issued_at ? *issued_at : loaded_at;
  if (!issued_at || !*issued_at) unstamped = true;
  return true;
}

/// @brief Calls @p on_object with the text of each element of @p array (a
/// JSON array the strict parser already accepted) that is an object; false
/// at the first that is not.
template <typename OnObject>
bool for_each_object(std::string_view array, OnObject&& on_object) {
  const char* p = array.data() + 1;  // past '['
  const char* const end = array.data() + array.size();
  const auto skip_ws = [&] {
    while (p != end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  };
  skip_ws();
  if (p != end && *p == ']') return true;
  for (;;) {
    skip_ws();
    if (p == end || *p != '{') return false;
    const char* start = p;
    std::size_t depth = 0;
    for (; p != end; ++p) {
      if (*p == '"') {
        for (++p; p != end && *p != '"'; ++p)
          if (*p == '\\') ++p;
      } else if (*p == '{' || *p == '[') {
        ++depth;
      } else if ((*p == '}' || *p == ']') && --depth == 0) {
        ++p;
        break;
      }
    }
    if (!on_object(std::string_view(start, static_cast<std::size_t>(p - start)))) return false;
    skip_ws();
    if (p == end) return false;
    if (*p == ']') return true;
    ++p;  // ','
  }
}

/// @brief Parses a snapshot: walks the text once to check it (strict JSON,
/// no duplicate key), then each user object once more (no DOM, so 10^5
/// users parse in well under a second). Calls on_user(User&&) for each,
/// which returns false to refuse one (a duplicate). False, and a reason in
/// @p error, when the text is not a users file or a user was refused. Users
/// without an issue time get @p loaded_at and set @p *unstamped.
template <typename OnUser>
bool parse_snapshot(std::string_view text, std::string& error, OnUser&& on_user, std::int64_t loaded_at = 0,
                    bool* unstamped = nullptr) {
  std::string scratch(text.size(), '\0');
  std::optional<std::int64_t> version;
  std::string_view users;
  bool users_is_array = false;
  flat_json_parser root(text, &scratch[0]);
  if (!root.parse_object(4, [&](std::string_view name, const json_value_view& v) {
        if (name == "version") version = json_non_negative_integer(v);
        if (name == "users") {
          users = v.raw;
          users_is_array = v.kind == json_kind::array;
        }
      })) {
    error = "not a JSON object (or a duplicate key)";
    return false;
  }
  if (version != std::optional<std::int64_t>(1)) {
    error = "\"version\" must be 1";
    return false;
  }
  if (!users_is_array) {
    error = "\"users\" must be an array";
    return false;
  }
  std::size_t count = 0;
  bool failed = false;
  bool stamped_now = false;
  const bool objects = for_each_object(users, [&](std::string_view object) {
    ++count;
    User u;
    failed = true;
    if (!parse_user_object(object, &scratch[0], u, loaded_at, stamped_now)) {
      error = "user #" + std::to_string(count) + " lacks a field or has one of the wrong type";
      return false;
    }
    if (!on_user(std::move(u))) {
      error = "user #" + std::to_string(count) + " has an empty or duplicate email, user id or refresh token";
      return false;
    }
    failed = false;
    return true;
  });
  if (stamped_now && unstamped) *unstamped = true;
  if (!objects && !failed) error = "each user must be an object";
  return objects;
}

/// @brief Names one snapshot: the SHA-256 of its bytes and its size; for a
/// `compacted` line also the inode and modification time (nanoseconds) it
/// has on disk, which a rename keeps.
struct snapshot_ref {
  std::string sha256;
  std::int64_t size = 0;
  std::int64_t inode = 0;
  std::int64_t modified_ns = 0;
};

/// @brief What a journal line says.
enum class record_kind { header, put, remove, compacted };

/// @brief One parsed journal line: `snapshot` for header and compacted,
/// `user` for put, `email` for remove.
struct journal_record {
  record_kind kind = record_kind::put;
  snapshot_ref snapshot;
  User user;
  std::string email;
};

inline void append_snapshot_ref(std::string& out, const snapshot_ref& ref) {
  out += "{\"sha256\":";
  append_json_string(out, ref.sha256);
  // The inode and the nanoseconds can pass 2^53, past what a JSON number
  // holds exactly everywhere: they are written as decimal strings.
  out += ",\"size\":" + std::to_string(ref.size) + ",\"inode\":\"" + std::to_string(ref.inode) +
         "\",\"modified_ns\":\"" + std::to_string(ref.modified_ns) + "\"}";
}

/// @brief The journal's first line: it extends the snapshot @p ref names.
inline std::string header_line(const snapshot_ref& ref) {
  std::string out = "{\"iwsec_users_journal\":1,\"snapshot\":";
  append_snapshot_ref(out, ref);
  return out += "}\n";
}

/// @brief A change: @p u added, or replacing the user with its email.
inline std::string put_line(const User& u) {
  std::string out = "{\"put\":";
  append_user_object(out, u);
  return out += "}\n";
}

/// @brief A change: the user with @p email removed.
inline std::string remove_line(std::string_view email) {
  std::string out = "{\"delete\":";
  append_json_string(out, email);
  return out += "}\n";
}

/// @brief The snapshot @p ref names holds every change before this line.
inline std::string compacted_line(const snapshot_ref& ref) {
  std::string out = "{\"compacted\":";
  append_snapshot_ref(out, ref);
  return out += "}\n";
}

/// @brief Parses one journal line (without its newline) into @p out; false,
/// with a reason in @p error, when it is not one of the lines above. A put
/// user without an issue time gets @p loaded_at.
inline bool parse_journal_line(std::string_view line, journal_record& out, std::string& error,
                               std::int64_t loaded_at = 0) {
  std::string scratch(line.size(), '\0');
  std::optional<std::int64_t> format;
  std::string_view snapshot, compacted, user;
  bool removes = false;
  std::string removed_email;
  std::size_t kinds = 0;
  flat_json_parser parser(line, &scratch[0]);
  const bool parsed = parser.parse_object(3, [&](std::string_view name, const json_value_view& v) {
    if (name == "iwsec_users_journal") {
      format = json_non_negative_integer(v);
      ++kinds;
    } else if (name == "snapshot" && v.kind == json_kind::object) {
      snapshot = v.raw;
    } else if (name == "compacted" && v.kind == json_kind::object) {
      compacted = v.raw;
      ++kinds;
    } else if (name == "put" && v.kind == json_kind::object) {
      user = v.raw;
      ++kinds;
    } else if (name == "delete") {
      ++kinds;
      removes = v.kind == json_kind::string;
      if (removes) removed_email.assign(v.text.data(), v.text.size());
    } else {
      kinds += 2;  // nothing else belongs on a journal line
    }
  });
  if (!parsed || kinds != 1) {
    error = "not a users-journal line";
    return false;
  }
  const auto decimal = [](const json_value_view& v) -> std::optional<std::int64_t> {
    if (v.kind != json_kind::string || v.text.empty() || v.text.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : v.text) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (n > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(n);
  };
  const auto parse_ref = [&](std::string_view text, snapshot_ref& ref) {
    std::optional<std::int64_t> size, inode, modified;
    bool have_sha = false;
    flat_json_parser p(text, &scratch[0]);
    const bool parsed_ref = p.parse_object(1, [&](std::string_view name, const json_value_view& v) {
      if (name == "sha256" && v.kind == json_kind::string) {
        have_sha = true;
        ref.sha256.assign(v.text.data(), v.text.size());
      } else if (name == "size") {
        size = json_non_negative_integer(v);
      } else if (name == "inode") {
        inode = decimal(v);
      } else if (name == "modified_ns") {
        modified = decimal(v);
      }
    });
    if (!parsed_ref || !have_sha || !size || !inode || !modified) return false;
    ref.size = *size;
    ref.inode = *inode;
    ref.modified_ns = *modified;
    return true;
  };
  out = journal_record();
  if (format) {
    out.kind = record_kind::header;
    if (*format != 1 || snapshot.empty() || !parse_ref(snapshot, out.snapshot)) {
      error = "a users-journal header of an unknown format";
      return false;
    }
    return true;
  }
  if (!compacted.empty()) {
    out.kind = record_kind::compacted;
    if (parse_ref(compacted, out.snapshot)) return true;
    error = "a compaction record without its snapshot's sha256, size, inode and modified_ns";
    return false;
  }
  if (!user.empty()) {
    out.kind = record_kind::put;
    bool unstamped = false;
    if (parse_user_object(user, &scratch[0], out.user, loaded_at, unstamped)) return true;
    error = "a changed user that lacks a field or has one of the wrong type";
    return false;
  }
  out.kind = record_kind::remove;
  if (removes && !removed_email.empty()) {
    out.email = std::move(removed_email);
    return true;
  }
  error = "a removal without an email";
  return false;
}

}  // namespace users_file
}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/users_file.hpp -----

namespace iwsec {

namespace detail {

/// @brief A lock a thread can wait for with a deadline, on a mutex and a
/// condition variable (std::timed_mutex's try_lock_for goes through
/// pthread_mutex_clocklock, which ThreadSanitizer in GCC 12 does not see).
/// A lock for the thread-safety analysis, held for a scope by waitable_guard.
class IWSEC_CAPABILITY("mutex") waitable_lock {
 public:
  void lock() IWSEC_ACQUIRE() {
    Lock guard(mutex_);
    guard.wait(released_, [this]() IWSEC_REQUIRES(mutex_) { return !held_; });
    held_ = true;
  }
  template <typename Rep, typename Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& patience) IWSEC_TRY_ACQUIRE(true) {
    Lock guard(mutex_);
    if (!guard.wait_for(released_, patience, [this]() IWSEC_REQUIRES(mutex_) { return !held_; })) return false;
    held_ = true;
    return true;
  }
  bool try_lock() IWSEC_TRY_ACQUIRE(true) { return try_lock_for(std::chrono::seconds(0)); }
  void unlock() IWSEC_RELEASE() {
    {
      Lock guard(mutex_);
      held_ = false;
    }
    released_.notify_one();
  }

 private:
  Mutex mutex_;
  std::condition_variable released_;
  bool held_ IWSEC_GUARDED_BY(mutex_) = false;
};

/// Holds a waitable_lock for its scope: taking it, or (with
/// std::adopt_lock) one a successful try_lock_for() took.
class IWSEC_SCOPED_CAPABILITY waitable_guard {
 public:
  explicit waitable_guard(waitable_lock& l) IWSEC_ACQUIRE(l) : lock_(l) { lock_.lock(); }
  waitable_guard(waitable_lock& l, std::adopt_lock_t) IWSEC_REQUIRES(l) : lock_(l) {}
  ~waitable_guard() IWSEC_RELEASE() { lock_.unlock(); }
  waitable_guard(const waitable_guard&) = delete;
  waitable_guard& operator=(const waitable_guard&) = delete;

 private:
  waitable_lock& lock_;
};

}  // namespace detail

/// @brief Users in a users file: a snapshot (`users.json`) and an
/// append-only change journal beside it (`users.json.journal`), in the
/// format of detail/users_file.hpp.
///
/// A write takes an exclusive lock on `<file>.lock`, catches up with the
/// files, and appends one line to the journal, fsynced before it returns
/// (the first change after a compaction creates the journal atomically:
/// exclusive temporary, fsync, rename, fsync the directory). Past a size
/// (a quarter of the snapshot, at least 64 KiB) the write compacts instead:
/// it writes the whole snapshot atomically (owner and mode kept), then
/// removes the journal. So concurrent writers never lose each other's
/// changes, and a crash at any point loses nothing a write acknowledged.
///
/// Reads check both files' identities (two stats) and catch up when either
/// changed: lines appended to the journal are parsed and applied to a copy
/// of the users that shares them with the live copy, and swapped in; a
/// compaction is recognised from the line it leaves in the journal, without
/// reading the new snapshot. So a change made by another process applies to
/// every request that starts after that process's write returned, and costs
/// the requests of this one the parse of that change, not of the file.
///
/// Only a snapshot this store did not see coming (a hand edit, a file
/// written by an earlier version, a restored backup) is read in full, which
/// the log says. Journal lines that the edited snapshot's journal header
/// does not name are not applied: the edited snapshot wins, and the next
/// write moves that journal aside to `users.json.journal.stale-<time>`
/// (kept, never read). `iwsec-admin compact` before editing by hand folds
/// the journal into users.json, so nothing is set aside.
///
/// Fails closed: when a file changed but cannot be read (permission
/// denied, descriptors exhausted, invalid content), every read throws
/// StateUnavailable (the routes answer 503) instead of answering from the
/// stale copy, one line saying why goes to the log, and the store recovers
/// by itself once the files can be read. Loading and every write cost time
/// linear in the number of users; applying another process's change costs
/// time linear in the size of that change.
///
/// Locking: state_mutex_ guards what reads use (the users, the file
/// versions they reflect, the last error); sync_lock_ lets one thread at a
/// time catch up with the files or write, and guards how the copy relates
/// to the files; a writer takes the cross-process lock first, then
/// sync_lock_, then state_mutex_ only to publish. Readers take sync_lock_
/// only when the files changed.
class JsonFileUserStore : public UserStore {
 public:
  /// @brief Receives one line (no newline) about the files: why they cannot
  /// be reloaded, that they can again, a snapshot read in full, a journal set
  /// aside, a write whose directory fsync failed. Never holds a secret.
  using Log = detail::Log;

  /// @brief The default log: "iwsec: LINE" on standard error.
  static Log stderr_log() { return detail::stderr_log(); }

  /// @brief How this store has read the files since it was opened.
  struct ReadCounts {
    std::uint64_t snapshot_loads = 0;   ///< whole reads of the snapshot (the first included)
    std::uint64_t journal_changes = 0;  ///< changes applied from the journal
  };

  /// @brief Opens (or, on first write, creates) the users file at @p path
  /// and its journal at `<path>.journal`. Throws store_error when they exist
  /// but are unreadable or invalid. @p log may be empty (no log).
  explicit JsonFileUserStore(std::string path, Log log = stderr_log())
      : path_(std::move(path)),
        journal_path_(path_ + ".journal"),
        lock_path_(path_ + ".lock"),
        log_(std::move(log)),
        changes_({path_, journal_path_}) {
    // A missing directory fails here, by name, not as an I/O error on the first write.
    const std::string dir = detail::parent_directory(path_);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      const int e = ::stat(dir.c_str(), &st) != 0 ? errno : ENOTDIR;
      throw store_error("iwsec: cannot use users file " + path_ + ": directory " + dir + ": " + std::strerror(e));
    }
    bool stamp = false;
    {
      detail::waitable_guard sync(sync_lock_);
      std::string error;
      if (!catch_up(error)) throw store_error("iwsec: cannot load " + path_ + ": " + error);
      stamp = needs_compaction_;
      constructed_ = true;
    }
    // Users from before issue times were kept got this load's time as their
    // refresh token's issue time: keep it (one compaction), so a restart does
    // not start their tokens' clocks again. A store that cannot write now
    // keeps it in memory and writes it with its next change.
    if (stamp) compact();
  }

  JsonFileUserStore(const JsonFileUserStore&) = delete;
  JsonFileUserStore& operator=(const JsonFileUserStore&) = delete;

  const std::string& path() const noexcept { return path_; }
  const std::string& journal_path() const noexcept { return journal_path_; }

  /// @brief Why the last failed write or reload failed (path and strerror
  /// text), for a program to print; empty when nothing failed yet.
  std::string last_error() const {
    detail::ReaderLock lock(state_mutex_);
    return last_error_;
  }

  /// @brief Whole-snapshot reads and journal changes applied so far.
  ReadCounts read_counts() const {
    detail::ReaderLock lock(state_mutex_);
    return counts_;
  }

  /// @brief Folds the journal into the snapshot: writes users.json whole
  /// (atomically, owner and mode kept) and removes the journal (setting a
  /// stale one aside first). What `iwsec-admin compact` does.
  StoreResult compact() {
    return change_current([&](detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) -> StoreResult {
      if (!compact_into(next, error)) return failed(error);
      publish(std::move(next));
      return StoreStatus::ok;
    });
  }

  std::optional<User> find_by_email(std::string_view email) override {
    return read([&](const detail::user_index& index) {
      const User* u = index.by_email(email);
      return u ? std::optional<User>(*u) : std::nullopt;
    });
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    return read([&](const detail::user_index& index) {
      const User* u = index.by_refresh_token_hash(token_sha256);
      return u ? std::optional<User>(*u) : std::nullopt;
    });
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    return read([&](const detail::user_index& index) -> std::optional<UserStatus> {
      const User* u = index.by_email(email);
      if (!u) return std::nullopt;
      return UserStatus{u->refresh_generation, u->disabled, u->user_id};
    });
  }

  std::vector<User> list_users() override {
    return read([](const detail::user_index& index) { return index.list(); });
  }

  StoreResult add_user(const User& user) override {
    return write(user.email, [&](detail::user_index& index) { return index.add(user); });
  }

  StoreResult update_user(std::string_view email, const std::function<void(User&)>& change) override {
    return write(email, [&](detail::user_index& index) { return index.update(email, change); });
  }

  StoreResult delete_user(std::string_view email) override {
    return write(email, [&](detail::user_index& index) { return index.remove(email); });
  }

  /// @brief The snapshot's text for @p users (see detail/users_file.hpp).
  static std::string serialize(const std::vector<User>& users) { return detail::users_file::serialize(users); }

  /// @brief Parses a snapshot's text; nothing (and a reason in @p error) when invalid.
  static std::optional<std::vector<User>> parse(std::string_view text, std::string& error) {
    std::vector<User> out;
    if (!detail::users_file::parse_snapshot(text, error, [&](User&& u) {
          out.push_back(std::move(u));
          return true;
        }))
      return std::nullopt;
    return out;
  }

 private:
  // Readers wait this long for a catch-up, then fail closed (503): never an
  // answer from a copy known to be stale.
  static constexpr std::chrono::milliseconds reload_wait{2000};
  static constexpr off_t min_compaction_bytes = 64 * 1024;

  // The versions of the two files a copy reflects (nothing: no such file).
  struct versions {
    std::optional<detail::file_identity> snapshot, journal;
    bool operator==(const versions& o) const { return snapshot == o.snapshot && journal == o.journal; }
  };

  enum class outcome { applied, load_in_full, failed };

  static std::int64_t nanoseconds(const timespec& t) {
    return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
  }

  // Whether @p st is the file a compacted line named (a rename keeps these).
  static bool names(const detail::users_file::snapshot_ref& ref, const struct stat& st) {
    return ref.inode == static_cast<std::int64_t>(st.st_ino) && ref.size == static_cast<std::int64_t>(st.st_size) &&
           ref.modified_ns == nanoseconds(st.st_mtim);
  }

  static std::string changes(std::size_t n) { return std::to_string(n) + (n == 1 ? " change" : " changes"); }

  static std::optional<detail::file_identity> identity_of(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return std::nullopt;
    return detail::file_identity::of(st);
  }

  // One stat of each file; false (and @p error) unless each is there or missing.
  // read() skips it while the change watch has seen no event naming either.
  bool observe(versions& now, std::string& error) const {
    const auto one = [&](const std::string& path, std::optional<detail::file_identity>& out) {
      struct stat st;
      if (::stat(path.c_str(), &st) == 0) {
        out = detail::file_identity::of(st);
        return true;
      }
      if (errno == ENOENT) return true;
      error = detail::errno_text("cannot stat " + path);
      return false;
    };
    return one(path_, now.snapshot) && one(journal_path_, now.journal);
  }

  template <typename F>
  auto read(F&& f) -> decltype(f(std::declval<const detail::user_index&>())) {
    const std::uint64_t generation = changes_.now();
    if (changes_.unchanged(generation)) {  // no event names either file: no stat
      detail::ReaderLock lock(state_mutex_);
      return f(index_);
    }
    versions now;
    std::string ignored;
    if (observe(now, ignored)) {
      detail::ReaderLock lock(state_mutex_);
      if (now == seen_) {
        changes_.checked(generation);
        return f(index_);
      }
    }
    refresh_for_reader();
    changes_.checked(generation);
    detail::ReaderLock lock(state_mutex_);
    return f(index_);
  }

  // A file changed: catch up beside the live copy (requests that arrived
  // before go on reading it) and swap. Requests that arrive meanwhile wait
  // for the new copy rather than answer from the old one. Throws
  // StateUnavailable when the files cannot be read, or after reload_wait.
  void refresh_for_reader() {
    if (!sync_lock_.try_lock_for(reload_wait))
      throw StateUnavailable("iwsec: " + path_ + " changed and is still being reloaded");
    detail::waitable_guard sync(sync_lock_, std::adopt_lock);
    std::string error;
    if (!catch_up(error)) throw StateUnavailable("iwsec: cannot reload " + path_ + ": " + error);
  }

  // Brings the live copy up to the files.
  bool catch_up(std::string& error) IWSEC_REQUIRES(sync_lock_) {
    versions now;
    if (!observe(now, error)) return fail_reading(error);
    if (loaded_) {
      detail::ReaderLock lock(state_mutex_);
      if (now == seen_) return true;
    }
    if (bad_version_ && *bad_version_ == now) {
      error = last_error();  // this version was tried: do not parse it again per request
      return false;
    }
    detail::user_index next;
    versions reflected;
    outcome result = outcome::load_in_full;
    const bool followed = loaded_;
    if (followed) {
      {
        detail::ReaderLock lock(state_mutex_);
        next = index_;  // cheap: shares the users with the live copy
      }
      result = follow_journal(now, next, reflected, error);
    }
    if (result == outcome::load_in_full) {
      next = detail::user_index();
      result = load_in_full(now, next, reflected, error, /*unannounced=*/followed);
    }
    if (result == outcome::failed) {
      loaded_ = false;  // what was half read is read again, whole, next time
      return fail_reading(error);
    }
    {
      detail::WriterLock lock(state_mutex_);
      std::swap(index_, next);
      seen_ = reflected;
    }
    loaded_ = true;
    bad_version_.reset();
    if (reads_failing_ && log_) log_("reloaded " + path_ + " again" + load_note_);
    reads_failing_ = false;
    load_note_.clear();
    return true;  // the previous copy is freed here, outside the lock
  }

  // Applies what was appended to the journal since the last look, follows a
  // compaction the journal announced, and a journal started since. Anything
  // else (a snapshot nobody announced, a journal cut short) needs a whole load.
  outcome follow_journal(const versions& now, detail::user_index& next, versions& reflected, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    if (journal_fd_) {
      const outcome drained = read_journal(next, error);
      if (drained != outcome::applied) return drained;
    }
    reflected.snapshot = seen_by_syncer().snapshot;
    if (now.snapshot != reflected.snapshot) {
      if (!now.snapshot || !compacted_) return outcome::load_in_full;
      detail::unique_fd fd = detail::open_fd(path_, O_RDONLY);
      struct stat st;
      if (!fd || ::fstat(fd.get(), &st) != 0) {
        error = detail::errno_text("cannot open " + path_);
        return outcome::failed;
      }
      if (!names(*compacted_, st)) return outcome::load_in_full;
      snapshot_ = *compacted_;  // what this copy already holds: nothing to read
      snapshot_fd_ = std::move(fd);
      reflected.snapshot = detail::file_identity::of(st);
      changes_since_snapshot_ = 0;
      compacted_.reset();
    }
    const bool same_journal = journal_fd_ && now.journal && now.journal->device == journal_device_ &&
                              now.journal->inode == journal_inode_;
    if (!same_journal) {
      // The journal read from was compacted away or set aside: only a copy
      // that holds no change on top of the snapshot may go on to a new one.
      if (changes_since_snapshot_ != 0) return outcome::load_in_full;
      close_journal();
      if (now.journal) {
        if (!open_journal(error)) return outcome::failed;
        const outcome read = read_journal(next, error);
        if (read != outcome::applied) return read;
        if (!journal_extends_) return outcome::load_in_full;  // a journal for another snapshot
      }
    }
    reflected.journal = journal_fd_ ? journal_version_ : std::nullopt;
    return outcome::applied;
  }

  bool open_journal(std::string& error) IWSEC_REQUIRES(sync_lock_) {
    journal_fd_ = detail::open_fd(journal_path_, O_RDONLY);
    struct stat st;
    if (!journal_fd_ || ::fstat(journal_fd_.get(), &st) != 0) {
      error = detail::errno_text("cannot open " + journal_path_);
      journal_fd_.reset();
      return false;
    }
    journal_device_ = st.st_dev;
    journal_inode_ = st.st_ino;
    return true;
  }

  void close_journal() IWSEC_REQUIRES(sync_lock_) {
    journal_fd_.reset();
    journal_read_ = 0;
    journal_extends_ = false;
    compacted_.reset();
  }

  // Reads journal_fd_ from journal_read_ on and applies each whole line
  // (a line without its newline yet is left for later, or for the next
  // writer to cut off). The first line must be the header: whether it names
  // the snapshot decides whether the changes apply.
  outcome read_journal(detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    const std::optional<detail::file_identity> before = identity_of(journal_fd_.get());
    if (!before) {
      error = detail::errno_text("cannot stat " + journal_path_);
      return outcome::failed;
    }
    if (before->size < journal_read_) return outcome::load_in_full;  // cut short by someone else
    std::string text;
    text.reserve(static_cast<std::size_t>(before->size - journal_read_));
    char block[65536];
    for (off_t at = journal_read_;;) {
      const ssize_t n = ::pread(journal_fd_.get(), block, sizeof block, at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = detail::errno_text("cannot read " + journal_path_);
        return outcome::failed;
      }
      if (n == 0) break;
      text.append(block, static_cast<std::size_t>(n));
      at += n;
    }
    journal_version_ = before;
    std::string_view rest(text);
    detail::users_file::journal_record record;
    const std::int64_t now = system_now();
    for (std::size_t nl; (nl = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(nl + 1)) {
      std::string reason;
      if (!detail::users_file::parse_journal_line(rest.substr(0, nl), record, reason, now) ||
          (journal_read_ == 0) != (record.kind == detail::users_file::record_kind::header))
        return outcome::load_in_full;  // which says what is wrong with it
      journal_read_ += static_cast<off_t>(nl + 1);
      if (!apply(record, next)) return outcome::load_in_full;
      if (journal_extends_ && (record.kind == detail::users_file::record_kind::put ||
                               record.kind == detail::users_file::record_kind::remove)) {
        detail::WriterLock lock(state_mutex_);
        ++counts_.journal_changes;
      }
    }
    return outcome::applied;
  }

  // Applies one journal record to @p next; false when it cannot apply (a
  // duplicate, a removal of nobody).
  bool apply(detail::users_file::journal_record& record, detail::user_index& next) IWSEC_REQUIRES(sync_lock_) {
    using detail::users_file::record_kind;
    switch (record.kind) {
      case record_kind::header:
        journal_extends_ = record.snapshot.sha256 == snapshot_.sha256 && record.snapshot.size == snapshot_.size;
        return true;
      case record_kind::compacted:
        if (journal_extends_) compacted_ = record.snapshot;
        return true;
      case record_kind::put:
      case record_kind::remove:
        if (!journal_extends_) {
          ++stale_changes_;
          return true;
        }
        compacted_.reset();
        ++changes_since_snapshot_;
        if (record.kind == record_kind::remove) return next.remove(record.email) == StoreStatus::ok;
        if (next.by_email(record.user.email)) {
          User& put = record.user;
          return next.update(put.email, [&](User& u) { u = std::move(put); }) == StoreStatus::ok;
        }
        return next.add(std::move(record.user)) == StoreStatus::ok;
    }
    return false;
  }

  // Reads the snapshot whole, then the journal: the changes after the last
  // line that names this snapshot (its header, or a compacted line) apply;
  // if none names it, the snapshot was replaced behind the journal's back
  // and none apply.
  // @p unannounced: the copy was current, and the files changed in a way
  // no write of this format announces (which the log then says).
  outcome load_in_full(const versions& now, detail::user_index& next, versions& reflected, std::string& error,
                       bool unannounced) IWSEC_REQUIRES(sync_lock_) {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY);
    struct stat st;
    std::string text;
    if (!fd && errno != ENOENT) {
      error = detail::errno_text("cannot open " + path_);
      return outcome::failed;
    }
    if (fd && ::fstat(fd.get(), &st) != 0) {
      error = detail::errno_text("cannot stat " + path_);
      return outcome::failed;
    }
    if (fd && (text.reserve(static_cast<std::size_t>(st.st_size) + 1), !detail::read_all(fd.get(), text))) {
      error = detail::errno_text("cannot read " + path_);
      return outcome::failed;
    }
    std::string reason;
    bool unstamped = false;
    next.reserve(text.size() / detail::users_file::bytes_per_user_estimate + 1);
    if (fd && !detail::users_file::parse_snapshot(
                  text, reason, [&](User&& u) { return next.add(std::move(u)) == StoreStatus::ok; }, system_now(),
                  &unstamped))
      return bad_content(now, path_ + ": " + reason, error);
    snapshot_ = detail::users_file::snapshot_ref();
    if (fd) {
      snapshot_.sha256 = detail::sha256_hex(text);
      snapshot_.size = static_cast<std::int64_t>(text.size());
      snapshot_.inode = static_cast<std::int64_t>(st.st_ino);
      snapshot_.modified_ns = nanoseconds(st.st_mtim);
    }
    reflected.snapshot = fd ? std::optional<detail::file_identity>(detail::file_identity::of(st)) : std::nullopt;
    snapshot_fd_ = std::move(fd);  // holds the inode, so its identity cannot be reused meanwhile
    text = std::string();
    needs_compaction_ = needs_compaction_ || unstamped;

    close_journal();
    changes_since_snapshot_ = 0;
    stale_changes_ = 0;
    reflected.journal.reset();
    detail::unique_fd probe = detail::open_fd(journal_path_, O_RDONLY);
    if (!probe && errno != ENOENT) {
      error = detail::errno_text("cannot open " + journal_path_);
      return outcome::failed;
    }
    if (probe) {
      probe.reset();
      if (!open_journal(error)) return outcome::failed;
      // Find where the changes this snapshot lacks begin: after the last
      // line that names it. Then read from there.
      std::string all;
      if (!detail::read_all(journal_fd_.get(), all)) {
        error = detail::errno_text("cannot read " + journal_path_);
        return outcome::failed;
      }
      off_t start = -1, at = 0;
      std::size_t line_number = 0;
      detail::users_file::journal_record record;
      std::string_view rest(all);
      for (std::size_t nl; (nl = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(nl + 1)) {
        ++line_number;
        if (!detail::users_file::parse_journal_line(rest.substr(0, nl), record, reason) ||
            (line_number == 1) != (record.kind == detail::users_file::record_kind::header))
          return bad_content(now, journal_path_ + " line " + std::to_string(line_number) + ": " +
                                      (reason.empty() ? "the first line must be the header, and only it" : reason),
                             error);
        at += static_cast<off_t>(nl + 1);
        if ((record.kind == detail::users_file::record_kind::header ||
             record.kind == detail::users_file::record_kind::compacted) &&
            record.snapshot.sha256 == snapshot_.sha256 && record.snapshot.size == snapshot_.size)
          start = at;
      }
      // Read again through read_journal, from the header (for the
      // stale-or-not decision) or from where this snapshot's changes start.
      if (start > 0) {
        journal_read_ = start;
        journal_extends_ = true;
      }
      const outcome read = read_journal(next, error);
      if (read == outcome::failed) return read;
      if (read == outcome::load_in_full)
        return bad_content(now, journal_path_ + ": a change that cannot apply (a duplicate, or a removal of nobody)",
                           error);
      reflected.journal = journal_version_;
    }
    {
      detail::WriterLock lock(state_mutex_);
      ++counts_.snapshot_loads;
    }
    // One log line says it: this one, or (after a failure) the one saying
    // the files load again.
    load_note_.clear();
    if (stale_changes_)
      load_note_ = "; " + changes(stale_changes_) + " in " + journal_path_ +
                   " made before it not in it, and not applied (the next change moves that file to " + journal_path_ +
                   ".stale-<time>)";
    if (unannounced && log_) {
      log_(path_ + " was replaced by another program: loaded it in full (" + std::to_string(next.size()) + " users)" +
           load_note_);
    } else if (!reads_failing_ && !load_note_.empty() && log_) {
      log_("loaded " + path_ + load_note_);
    }
    return outcome::applied;
  }

  outcome bad_content(const versions& now, const std::string& reason, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    bad_version_ = now;
    error = "invalid content: " + reason;
    return outcome::failed;
  }

  // Records why reads fail; logs it once per reason. Returns false.
  bool fail_reading(const std::string& error) IWSEC_REQUIRES(sync_lock_) {
    bool changed;
    {
      detail::WriterLock lock(state_mutex_);
      changed = last_error_ != error;
      last_error_ = error;
    }
    if (constructed_ && (changed || !reads_failing_) && log_)
      log_("cannot reload " + path_ + " (" + error + "); answering 503 until it can be read");
    reads_failing_ = true;
    return false;
  }

  StoreResult failed(const std::string& error) {
    detail::WriterLock lock(state_mutex_);
    last_error_ = error;
    return StoreResult(StoreStatus::io_error, error);
  }

  // Takes the cross-process lock, then sync_lock_, catches up with the
  // files, and calls change(next, error) with a copy of the users.
  template <typename F>
  StoreResult change_current(F&& change) {
    detail::file_lock cross_process(lock_path_);
    if (!cross_process) return failed(cross_process.error());
    detail::waitable_guard sync(sync_lock_);
    std::string error;
    if (!catch_up(error)) return failed(error);
    detail::user_index next;
    {
      detail::ReaderLock lock(state_mutex_);
      next = index_;
    }
    return change(next, error);
  }

  template <typename F>
  StoreResult write(std::string_view email, F&& mutate) {
    return change_current([&](detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) -> StoreResult {
      return append_change(email, mutate(next), next, error);
    });
  }

  // Makes @p next (the users after a change to @p email whose outcome is
  // @p status) durable: one journal line, or a compaction.
  StoreResult append_change(std::string_view email, StoreResult status, detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    if (status != StoreStatus::ok) return status;
    const User* changed = next.by_email(email);
    const std::string line =
        changed ? detail::users_file::put_line(*changed) : detail::users_file::remove_line(email);
    if (!snapshot_fd_ || needs_compaction_) {
      // No snapshot yet, or one whose users got this load's issue time:
      // the change goes into a whole new snapshot.
      if (!compact_into(next, error)) return failed(error);
    } else {
      if (journal_fd_ && !journal_extends_ && !set_aside_stale_journal(error)) return failed(error);
      if (!journal_fd_ ? !start_journal(line, error) : !append(line, error)) return failed(error);
      ++changes_since_snapshot_;
      // The change is durable. Past a size the journal is folded into the
      // snapshot; if that fails, the journal stays in use as it is.
      const off_t compact_after = std::max<off_t>(min_compaction_bytes, static_cast<off_t>(snapshot_.size / 4));
      if (journal_read_ > compact_after && !compact_into(next, error) && log_)
        log_("cannot compact " + journal_path_ + " into " + path_ + " (" + error + "); appending to it still");
    }
    publish(std::move(next));
    return StoreStatus::ok;
  }

  // The first change on top of the snapshot: a journal holding its header
  // and @p line, put in place atomically.
  bool start_journal(const std::string& line, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    const std::string text = detail::users_file::header_line(snapshot_) + line;
    detail::replace_result replaced = detail::replace_file(journal_path_, text, 0600);
    if (!replaced.replaced) {
      error = replaced.error;
      return false;
    }
    if (!replaced.warning.empty() && log_) log_(replaced.warning + " after replacing " + journal_path_);
    // The change is durable; tracking the journal needs a descriptor that
    // reads it. Without one, the next read loads both files whole.
    if (!open_journal(error)) {
      loaded_ = false;
      error.clear();
      return true;
    }
    journal_read_ = static_cast<off_t>(text.size());
    journal_extends_ = true;
    journal_version_ = identity_of(journal_fd_.get());
    return true;
  }

  // Appends @p line to the journal and fsyncs it; on failure cuts the
  // journal back, so a half-written line cannot join (and spoil) the next.
  bool append(const std::string& line, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    detail::unique_fd fd = detail::open_fd(journal_path_, O_WRONLY | O_APPEND | O_NOFOLLOW);
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0) {
      error = detail::errno_text("cannot open " + journal_path_);
      return false;
    }
    if (st.st_dev != journal_device_ || st.st_ino != journal_inode_) {
      error = journal_path_ + " was replaced during the write";
      return false;
    }
    // A line a crash left half written (no newline) goes first.
    if (st.st_size != journal_read_ && ::ftruncate(fd.get(), journal_read_) != 0) {
      error = detail::errno_text("cannot truncate " + journal_path_);
      return false;
    }
    if (!detail::write_all(fd.get(), line) || detail::durable_fsync(fd.get()) != 0) {
      error = detail::errno_text("cannot append to " + journal_path_);
      if (::ftruncate(fd.get(), journal_read_) != 0 || detail::durable_fsync(fd.get()) != 0) loaded_ = false;
      return false;
    }
    journal_read_ += static_cast<off_t>(line.size());
    journal_version_ = identity_of(fd.get());
    return true;
  }

  // Moves a journal that does not extend the snapshot (it was replaced by
  // hand) aside, kept for the operator, never read again.
  bool set_aside_stale_journal(std::string& error) IWSEC_REQUIRES(sync_lock_) {
    std::string aside = journal_path_ + ".stale-" + std::to_string(system_now());
    for (int n = 1; ::access(aside.c_str(), F_OK) == 0; ++n)
      aside = journal_path_ + ".stale-" + std::to_string(system_now()) + "-" + std::to_string(n);
    if (::rename(journal_path_.c_str(), aside.c_str()) != 0) {
      error = detail::errno_text("cannot rename " + journal_path_ + " to " + aside);
      return false;
    }
    // (The load that found it stale said so in the log, and where it goes.)
    std::string warning;
    const detail::directory_handle dir(detail::parent_directory(journal_path_));
    if (dir) dir.sync(warning);
    close_journal();
    stale_changes_ = 0;
    return true;
  }

  // Writes @p next as the whole snapshot and removes the journal. When
  // @p next is exactly the snapshot plus the journal's changes, the journal
  // first gets a compacted line naming the new snapshot (before the rename),
  // so other processes take it without reading it, and a crash between
  // leaves files that load to the same users. Caller publishes @p next.
  bool compact_into(const detail::user_index& next, std::string& error) IWSEC_REQUIRES(sync_lock_) {
    if (journal_fd_ && !journal_extends_ && !set_aside_stale_journal(error)) return false;
    std::string text = detail::users_file::serialize_each(next.size(), [&](const auto& each) { next.for_each(each); });
    const detail::directory_handle dir(detail::parent_directory(path_));
    if (!dir) {
      error = dir.error();
      return false;
    }
    const std::string base = detail::base_name(path_);
    detail::temp_file tmp(dir, base);
    if (!tmp) {
      error = tmp.error();
      return false;
    }
    struct stat st;
    if (!detail::write_all(tmp.fd(), text)) {
      error = detail::errno_text("cannot write a temporary file in " + dir.path());
      return false;
    }
    if (!tmp.prepare(base, 0600, error)) return false;
    if (::fstat(tmp.fd(), &st) != 0) {
      error = detail::errno_text("cannot stat a temporary file in " + dir.path());
      return false;
    }
    detail::users_file::snapshot_ref ref;
    ref.sha256 = detail::sha256_hex(text);
    ref.size = static_cast<std::int64_t>(text.size());
    ref.inode = static_cast<std::int64_t>(st.st_ino);
    ref.modified_ns = nanoseconds(st.st_mtim);
    text = std::string();
    if (journal_fd_ && !needs_compaction_ && !append(detail::users_file::compacted_line(ref), error)) return false;
    std::string warning;
    if (!tmp.rename_over(base, error, warning)) return false;
    // The new snapshot is in place and every later read sees it: the write
    // is done, whatever the directory fsync said (reporting a failure now
    // would be untrue), so that goes to the log.
    if (!warning.empty() && log_) log_(warning + " after replacing " + path_);
    snapshot_ = ref;
    snapshot_fd_ = tmp.release();
    changes_since_snapshot_ = 0;
    compacted_.reset();
    needs_compaction_ = false;
    // Its changes are all in the snapshot now. If it cannot be removed, its
    // compacted line keeps it harmless: loads start after that line.
    if (journal_fd_ && ::unlink(journal_path_.c_str()) == 0) {
      close_journal();
      if (!dir.sync(warning) && log_) log_(warning + " after removing " + journal_path_);
    }
    return true;
  }

  // Swaps in the copy a write made, with the versions of the files it wrote.
  void publish(detail::user_index next) IWSEC_REQUIRES(sync_lock_) {
    versions reflected;
    reflected.snapshot = snapshot_fd_ ? identity_of(snapshot_fd_.get()) : std::nullopt;
    reflected.journal = journal_fd_ ? journal_version_ : std::nullopt;
    detail::WriterLock lock(state_mutex_);
    std::swap(index_, next);
    seen_ = reflected;
  }

  // seen_ changes only with sync_lock_ held as well as state_mutex_
  // exclusively, so a thread holding sync_lock_ reads it without
  // state_mutex_. The analysis cannot say "either lock for reading", so
  // this says it once, for the analysis.
  const versions& seen_by_syncer() const IWSEC_REQUIRES(sync_lock_) IWSEC_NO_THREAD_SAFETY_ANALYSIS { return seen_; }

  const std::string path_;
  const std::string journal_path_;
  const std::string lock_path_;
  const Log log_;
  // Lets read() skip its two stats while no event names either file.
  detail::ChangeTracker changes_;

  // What reads use. Guarded by state_mutex_ (taken after sync_lock_).
  mutable detail::SharedMutex state_mutex_;
  detail::user_index index_ IWSEC_GUARDED_BY(state_mutex_);
  versions seen_ IWSEC_GUARDED_BY(state_mutex_);           // the files' versions index_ reflects
  std::string last_error_ IWSEC_GUARDED_BY(state_mutex_);  // why the last write or catch-up failed
  ReadCounts counts_ IWSEC_GUARDED_BY(state_mutex_);

  // How the copy relates to the files. Guarded by sync_lock_.
  detail::waitable_lock sync_lock_ IWSEC_ACQUIRED_BEFORE(state_mutex_);
  // index_ reflects seen_ (else the next catch-up loads whole)
  bool loaded_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // the snapshot reflected (holds its inode)
  detail::unique_fd snapshot_fd_ IWSEC_GUARDED_BY(sync_lock_);
  // its digest, size, inode and modification time
  detail::users_file::snapshot_ref snapshot_ IWSEC_GUARDED_BY(sync_lock_);
  // the journal read from: kept open to drain it after a compaction
  detail::unique_fd journal_fd_ IWSEC_GUARDED_BY(sync_lock_);
  dev_t journal_device_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  ino_t journal_inode_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // as it was before it was last read or appended to
  std::optional<detail::file_identity> journal_version_ IWSEC_GUARDED_BY(sync_lock_);
  // its bytes read: whole lines only
  off_t journal_read_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // its header names the snapshot (else its changes do not apply)
  bool journal_extends_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // changes index_ holds on top of the snapshot
  std::size_t changes_since_snapshot_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // changes in a journal that does not extend the snapshot
  std::size_t stale_changes_ IWSEC_GUARDED_BY(sync_lock_) = 0;
  // a compaction announced, no change after it
  std::optional<detail::users_file::snapshot_ref> compacted_ IWSEC_GUARDED_BY(sync_lock_);
  // files whose content was invalid: not parsed again
  std::optional<versions> bad_version_ IWSEC_GUARDED_BY(sync_lock_);
  // the log said reads fail, and not yet that they work again
  bool reads_failing_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // what the last whole load adds to its log line
  std::string load_note_ IWSEC_GUARDED_BY(sync_lock_);
  // users got this load's time as their issue time: write it
  bool needs_compaction_ IWSEC_GUARDED_BY(sync_lock_) = false;
  // the constructor reports failure by throwing, not in the log
  bool constructed_ IWSEC_GUARDED_BY(sync_lock_) = false;
};

}  // namespace iwsec
// ----- end iwsec/json_file_user_store.hpp -----
// ----- begin iwsec/revocation_store.hpp -----
/// @brief Revoked access tokens, all parts at once: includes revocation_store_interface.hpp, memory_revocation_store.hpp, revocation_journal.hpp and journal_revocation_store.hpp.
/// @file
/// Each part is a header of its own; this one keeps `#include <iwsec/revocation_store.hpp>` working.

// ----- begin iwsec/revocation_store_interface.hpp -----
/// @brief The RevocationStore interface: where revoked token ids live until their tokens expire.
/// @file

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace iwsec {

/// @brief The outcome of RevocationStore::revoke_for.
enum class RevokeOutcome {
  revoked,        ///< held (newly or already), as durably as the store promises
  limit_reached,  ///< the owner already has `limit` outstanding revocations: nothing was stored
  failed,         ///< could not be stored
};

/// @brief Where revoked token ids live until their tokens expire.
class RevocationStore {
 public:
  virtual ~RevocationStore() = default;

  /// @brief Revokes the token @p jti until @p expires_at. Returns true only
  /// once the revocation is as durable as this store promises.
  virtual bool revoke(std::string_view jti, std::int64_t expires_at) = 0;

  /// @brief Whether @p jti is revoked.
  virtual bool is_revoked(std::string_view jti) = 0;

  /// @brief revoke() on behalf of @p owner (the token's user id), holding at
  /// most @p limit outstanding (unexpired) revocations per owner: when
  /// @p owner already has @p limit and @p jti is not one of them, nothing is
  /// stored and the answer is limit_reached (the routes then end all of the
  /// owner's access tokens at once instead). Required (since 0.x): the
  /// routes revoke only through it, and a default without per-owner counts
  /// would let one refresh-token holder grow the store without bound.
  virtual RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                                   std::size_t limit) = 0;

  /// @brief How many unexpired revocations revoke_for holds for @p owner;
  /// nothing when the store cannot tell now (e.g. its database is
  /// unreachable). Required (since 0.x), as revoke_for is: a store that
  /// keeps the per-owner cap can count what it keeps, and a default that
  /// answered "unknown" would hide a store that keeps no counts at all.
  virtual std::optional<std::size_t> outstanding_for(std::string_view owner) = 0;
};

}  // namespace iwsec
// ----- end iwsec/revocation_store_interface.hpp -----
// ----- begin iwsec/memory_revocation_store.hpp -----
/// @brief MemoryRevocationStore: revocations in process memory, capped per owner.
/// @file

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

// ----- begin iwsec/detail/uuid_table.hpp -----
/// @brief detail::uuid_table: an open-addressing table from 128-bit UUID keys to expiry times.
/// @file

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

// ----- begin iwsec/detail/zeroed_pages.hpp -----
/// @brief detail::zeroed_pages: zero-filled memory straight from the kernel, given back whole.
/// @file

#include <cstddef>
#include <new>
#include <utility>

#include <sys/mman.h>

namespace iwsec {
namespace detail {

/// @brief Zero-filled pages straight from the kernel, given back whole when
/// freed: a large table costs memory only while it is in use.
class zeroed_pages {
 public:
  zeroed_pages() = default;
  explicit zeroed_pages(std::size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = p;
#ifdef MADV_HUGEPAGE
    // A large table is probed at random: huge pages spare most TLB misses.
    if (bytes >= (std::size_t{4} << 20)) ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
  }
  zeroed_pages(zeroed_pages&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  zeroed_pages& operator=(zeroed_pages&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  zeroed_pages(const zeroed_pages&) = delete;
  zeroed_pages& operator=(const zeroed_pages&) = delete;
  ~zeroed_pages() { release(); }
  void* data() const noexcept { return data_; }

 private:
  void release() noexcept {
    if (data_) ::munmap(data_, bytes_);
    data_ = nullptr;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/zeroed_pages.hpp -----

namespace iwsec {
namespace detail {

/// @brief Appends the canonical text of a key made by parse_uuid_key.
inline void append_uuid_key(std::string& out, std::uint64_t hi, std::uint64_t lo) {
  char text[36];
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) text[pos++] = '-';
    const std::uint64_t half = i < 16 ? hi : lo;
    text[pos++] = hex_digit(half >> (60 - 4 * (i % 16)));
  }
  out.append(text, sizeof text);
}

/// @brief Open addressing (linear probing) from a 128-bit UUID to the time
/// its revocation may be forgotten: 24 bytes a slot, at most 3/4 full, no
/// per-entry allocation. Not synchronised; removal happens only by
/// rebuilding (see MemoryRevocationStore), so there are no tombstones.
class uuid_table {
 public:
  uuid_table() = default;
  /// @brief An empty table with room for @p entries before it must grow.
  explicit uuid_table(std::size_t entries) {
    std::size_t capacity = 16;
    while (capacity * 3 / 4 < entries) capacity *= 2;
    pages_ = zeroed_pages(capacity * sizeof(slot));
    slots_ = static_cast<slot*>(pages_.data());
    mask_ = capacity - 1;
    // Hash seeds per table: probe sequences cannot be predicted from outside.
    random_bytes(reinterpret_cast<unsigned char*>(seed_), sizeof seed_);
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }
  /// @brief Whether one more entry fits without passing 3/4 full.
  bool has_room_for_one_more() const noexcept { return size_ + 1 <= capacity() * 3 / 4; }

  bool contains(std::uint64_t hi, std::uint64_t lo) const noexcept {
    if (!slots_) return false;
    for (std::size_t i = index_of(hi, lo);; i = (i + 1) & mask_) {
      const slot& s = slots_[i];
      if (s.expires_at == 0) return false;
      if (s.hi == hi && s.lo == lo) return true;
    }
  }

  /// @brief Adds the key, or raises its expiry; true when it was new. The
  /// caller made sure there is room.
  bool insert(std::uint64_t hi, std::uint64_t lo, std::int64_t expires_at) noexcept {
    // 0 marks an empty slot; an expiry at or before the epoch is just as expired at 1.
    expires_at = std::max<std::int64_t>(expires_at, 1);
    for (std::size_t i = index_of(hi, lo);; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (s.expires_at == 0) {
        s.hi = hi;
        s.lo = lo;
        s.expires_at = expires_at;
        ++size_;
        return true;
      }
      if (s.hi == hi && s.lo == lo) {
        s.expires_at = std::max(s.expires_at, expires_at);
        return false;
      }
    }
  }

  template <typename F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < capacity(); ++i)
      if (slots_[i].expires_at != 0) f(slots_[i].hi, slots_[i].lo, slots_[i].expires_at);
  }

 private:
  struct slot {
    std::uint64_t hi, lo;
    std::int64_t expires_at;  // 0: empty
  };

  std::size_t index_of(std::uint64_t hi, std::uint64_t lo) const noexcept {
    std::uint64_t h = (hi ^ seed_[0]) * 0x9E3779B97F4A7C15ULL;
    h ^= (lo ^ seed_[1] ^ (h >> 29)) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 32;
    return static_cast<std::size_t>(h) & mask_;
  }

  zeroed_pages pages_;
  slot* slots_ = nullptr;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::uint64_t seed_[2] = {0, 0};
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/uuid_table.hpp -----

namespace iwsec {

/// @brief Revocations in process memory; entries are dropped once their
/// token has expired (an expired token fails verification on its own).
///
/// A jti in canonical UUID form (what Signer issues) is kept as 16 bytes in
/// an open-addressing table, so a million revocations cost about 48 MB and a
/// lookup one or two cache misses; any other jti text is kept in a map.
/// Lookups only share a reader lock with each other. Writers are serialised
/// among themselves; growing the table or sweeping expired entries builds the
/// new table beside the live one, so readers wait only for the swap.
class MemoryRevocationStore : public RevocationStore {
 public:
  explicit MemoryRevocationStore(Clock clock = system_now) : clock_(std::move(clock)) {}

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    detail::Lock writing(write_mutex_);
    insert(jti, expires_at);
    return true;
  }

  RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                           std::size_t limit) override {
    detail::Lock writing(write_mutex_);
    if (!owner_has_room(owner, jti, limit)) return RevokeOutcome::limit_reached;
    add_owned(owner, jti, expires_at);
    insert(jti, expires_at);
    return RevokeOutcome::revoked;
  }

  std::optional<std::size_t> outstanding_for(std::string_view owner) override {
    detail::Lock writing(write_mutex_);
    auto it = owners_.find(std::string(owner));
    if (it == owners_.end()) return std::size_t{0};
    prune_owned(it->second, clock_());
    return it->second.size();
  }

  bool is_revoked(std::string_view jti) override {
    std::uint64_t hi, lo;
    const bool uuid = detail::parse_uuid_key(jti, hi, lo);
    detail::ReaderLock lock(mutex_);
    if (uuid) return table_.contains(hi, lo);
    return !others_.empty() && others_.find(std::string(jti)) != others_.end();
  }

  /// @brief How many revocations are held (expired ones may linger until the next sweep).
  std::size_t size() {
    detail::ReaderLock lock(mutex_);
    return table_.size() + others_.size();
  }

 protected:
  /// @brief Adds or extends a revocation; true when @p jti was not held yet.
  /// Sweeps expired entries when the store has doubled since the last sweep
  /// (unless @p may_sweep is false).
  bool insert(std::string_view jti, std::int64_t expires_at, bool may_sweep = true) IWSEC_REQUIRES(write_mutex_) {
    std::uint64_t hi, lo;
    bool added;
    if (detail::parse_uuid_key(jti, hi, lo)) {
      if (!table_for_writer().has_room_for_one_more()) rebuild(1);
      detail::WriterLock lock(mutex_);
      added = table_.insert(hi, lo, expires_at);
    } else {
      detail::WriterLock lock(mutex_);
      auto inserted = others_.emplace(std::string(jti), expires_at);
      if (!inserted.second) inserted.first->second = std::max(inserted.first->second, expires_at);
      added = inserted.second;
    }
    if (may_sweep && table_for_writer().size() + others_for_writer().size() >= next_sweep_) sweep();
    return added;
  }

  /// @brief Whether revoking @p jti for @p owner stays within @p limit: it
  /// is revoked already (no new entry), or the owner holds fewer than
  /// @p limit unexpired ones. A jti that is not a UUID is never counted.
  bool owner_has_room(std::string_view owner, std::string_view jti, std::size_t limit) IWSEC_REQUIRES(write_mutex_) {
    std::uint64_t hi, lo;
    if (!detail::parse_uuid_key(jti, hi, lo) || table_for_writer().contains(hi, lo)) return true;
    auto it = owners_.find(std::string(owner));
    if (it == owners_.end()) return limit > 0;
    if (it->second.size() >= limit) prune_owned(it->second, clock_());  // only when it matters
    return it->second.size() < limit;
  }

  /// @brief Counts @p jti, not revoked yet, as one of @p owner's
  /// revocations; call it before insert.
  void add_owned(std::string_view owner, std::string_view jti, std::int64_t expires_at) IWSEC_REQUIRES(write_mutex_) {
    std::uint64_t hi, lo;
    if (!detail::parse_uuid_key(jti, hi, lo) || table_for_writer().contains(hi, lo)) return;
    owners_[std::string(owner)].push_back(owned{hi, lo, expires_at});
  }

  /// @brief Drops expired entries now (rebuilding only when there are
  /// some).
  void sweep() IWSEC_REQUIRES(write_mutex_) {
    const std::int64_t now = clock_();
    bool expired = false;
    table_for_writer().for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { expired |= exp <= now; });
    for (const auto& entry : others_for_writer()) expired |= entry.second <= now;
    if (expired) rebuild(0);
    for (auto it = owners_.begin(); it != owners_.end();) {
      prune_owned(it->second, now);
      it = it->second.empty() ? owners_.erase(it) : std::next(it);
    }
    schedule_sweep();
  }

  /// @brief Schedules the next sweep for when the store has doubled (after a
  /// bulk load made with @p may_sweep false).
  void schedule_sweep() IWSEC_REQUIRES(write_mutex_) {
    next_sweep_ = std::max<std::size_t>(1024, (table_for_writer().size() + others_for_writer().size()) * 2);
  }

  /// @brief Makes room for @p entries without growing.
  void reserve(std::size_t entries) IWSEC_REQUIRES(write_mutex_) {
    const detail::uuid_table& table = table_for_writer();
    if (entries > table.capacity() * 3 / 4) rebuild(entries - std::min(entries, table.size()));
  }

  /// @brief Calls @p f(jti_text_appender, expires_at, owner) for every
  /// entry, once per owner it counts against (owner null: none); @p f gets a
  /// callable that appends the jti to a string.
  template <typename F>
  void for_each_entry(F&& f) const IWSEC_REQUIRES(write_mutex_) {
    std::unordered_map<key, std::vector<const std::string*>, key_hash> owners_of;
    for (const auto& entry : owners_)
      for (const auto& o : entry.second) owners_of[key{o.hi, o.lo}].push_back(&entry.first);
    table_for_writer().for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      const auto append_jti = [hi, lo](std::string& out) { detail::append_uuid_key(out, hi, lo); };
      const auto it = owners_of.find(key{hi, lo});
      if (it == owners_of.end()) return f(append_jti, exp, static_cast<const std::string*>(nullptr));
      for (const std::string* owner : it->second) f(append_jti, exp, owner);
    });
    for (const auto& entry : others_for_writer())
      f([&entry](std::string& out) { out += entry.first; }, entry.second, static_cast<const std::string*>(nullptr));
  }

  Clock clock_;
  // One writer at a time: guards changes to table_, others_ (with mutex_
  // too), owners_ and next_sweep_. Taken before mutex_.
  detail::Mutex write_mutex_ IWSEC_ACQUIRED_BEFORE(mutex_);

 private:
  // Builds a table of the live entries with room for @p extra more beside the
  // current one (readers keep using it), then swaps it in.
  void rebuild(std::size_t extra) IWSEC_REQUIRES(write_mutex_) {
    const std::int64_t now = clock_();
    std::size_t live = 0;
    const detail::uuid_table& table = table_for_writer();
    table.for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { live += exp > now; });
    detail::uuid_table next((live + extra) * 3 / 2 + 1);  // at most about half full
    table.for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      if (exp > now) next.insert(hi, lo, exp);
    });
    {
      detail::WriterLock lock(mutex_);
      std::swap(table_, next);
      for (auto it = others_.begin(); it != others_.end();) it = it->second <= now ? others_.erase(it) : ++it;
    }
    // The old table is unmapped here, outside the lock.
  }

  // table_ and others_ change only with write_mutex_ held as well as mutex_
  // exclusively, so a writer holding write_mutex_ reads them without mutex_.
  // The analysis cannot say "either lock for reading", so these two say it
  // once, for the analysis.
  const detail::uuid_table& table_for_writer() const IWSEC_REQUIRES(write_mutex_) IWSEC_NO_THREAD_SAFETY_ANALYSIS {
    return table_;
  }
  const std::unordered_map<std::string, std::int64_t>& others_for_writer() const IWSEC_REQUIRES(write_mutex_)
      IWSEC_NO_THREAD_SAFETY_ANALYSIS {
    return others_;
  }

  struct owned {
    std::uint64_t hi, lo;
    std::int64_t expires_at;
  };
  struct key {
    std::uint64_t hi, lo;
    bool operator==(const key& o) const noexcept { return hi == o.hi && lo == o.lo; }
  };
  struct key_hash {
    std::size_t operator()(const key& k) const noexcept {
      return static_cast<std::size_t>((k.hi ^ (k.lo * 0x9E3779B97F4A7C15ULL)) >> 7);
    }
  };

  static void prune_owned(std::vector<owned>& list, std::int64_t now) {
    list.erase(std::remove_if(list.begin(), list.end(), [now](const owned& o) { return o.expires_at <= now; }),
               list.end());
  }

  detail::SharedMutex mutex_;  // readers share it; writers hold it only to change or swap
  detail::uuid_table table_ IWSEC_GUARDED_BY(mutex_);
  std::unordered_map<std::string, std::int64_t> others_ IWSEC_GUARDED_BY(mutex_);  // jtis that are not canonical UUIDs
  // Per owner (a user id), its unexpired revocations made by revoke_for: at
  // most the limit it was given each. Guarded by write_mutex_ alone.
  std::unordered_map<std::string, std::vector<owned>> owners_ IWSEC_GUARDED_BY(write_mutex_);
  std::size_t next_sweep_ IWSEC_GUARDED_BY(write_mutex_) = 1024;
};

}  // namespace iwsec
// ----- end iwsec/memory_revocation_store.hpp -----
// ----- begin iwsec/revocation_journal.hpp -----
/// @brief Reading a revocation journal file without opening it for writing: RevocationRecord, read_revocation_journal.
/// @file

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

// ----- begin iwsec/detail/revocation_journal.hpp -----
/// @brief The revocation journal's line format: `<jti> <exp>[ <owner>]`, parsed and written in one place.
/// @file

#include <cstdint>
#include <string>
#include <string_view>

namespace iwsec {
namespace detail {

/// @brief Whether @p w can be one word of a journal line.
inline bool revocation_journal_word(std::string_view w) {
  return !w.empty() && w.size() <= 256 && w.find_first_of(" \t\r\n") == std::string_view::npos;
}

/// @brief Parses one journal line, `<jti> <exp>` or `<jti> <exp> <owner>`
/// (no newline); false when it is malformed. @p owner is empty for the
/// first form. The one parser of the journal format: the store replays
/// with it, and read_revocation_journal (which `iwsec-admin import` reads a
/// data directory with) reads with it.
inline bool parse_revocation_line(std::string_view line, std::string_view& jti, std::int64_t& exp,
                                  std::string_view& owner) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos || space == 0) return false;
  std::string_view exp_text = line.substr(space + 1);
  owner = std::string_view();
  const auto owner_space = exp_text.find(' ');
  if (owner_space != std::string_view::npos) {
    owner = exp_text.substr(owner_space + 1);
    exp_text = exp_text.substr(0, owner_space);
    if (!revocation_journal_word(owner)) return false;
  }
  if (exp_text.empty() || exp_text.size() > 18) return false;
  exp = 0;
  for (char c : exp_text) {
    if (c < '0' || c > '9') return false;  // stop here: a non-digit could push exp past int64 (UB)
    exp = exp * 10 + (c - '0');
  }
  jti = line.substr(0, space);
  return true;
}

/// @brief Appends one journal line, `<jti> <exp>\n` or, with an @p owner,
/// `<jti> <exp> <owner>\n`, the jti written by @p append_jti(out) (so that a
/// UUID key is written without a string of its own). The one writer of the
/// journal format: the store appends and compacts with it.
template <typename AppendJti>
inline void append_revocation_line_with(std::string& out, AppendJti&& append_jti, std::int64_t exp,
                                        std::string_view owner) {
  append_jti(out);
  out += ' ';
  out += std::to_string(exp);
  if (!owner.empty()) {
    out += ' ';
    out += owner;
  }
  out += '\n';
}

/// @brief append_revocation_line_with for a jti held as text.
inline void append_revocation_line(std::string& out, std::string_view jti, std::int64_t exp, std::string_view owner) {
  append_revocation_line_with(out, [jti](std::string& o) { o += jti; }, exp, owner);
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/revocation_journal.hpp -----

namespace iwsec {

/// @brief One record of a revocation journal (see JournalRevocationStore).
struct RevocationRecord {
  std::string jti;
  std::int64_t expires_at = 0;
  std::string owner;  ///< empty: a revocation without an owner (not counted against any cap)
};

/// @brief The well-formed records of the revocation journal at @p path that
/// are live at @p now (a torn last line is skipped, as a replay skips it),
/// without opening it for writing. A missing journal has none. False, with
/// @p error set, when it cannot be read.
inline bool read_revocation_journal(const std::string& path, std::int64_t now, std::vector<RevocationRecord>& out,
                                    std::string& error) {
  detail::unique_fd in = detail::open_fd(path, O_RDONLY | O_NOFOLLOW);
  if (!in) {
    if (errno == ENOENT) return true;
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::string text, block(1 << 16, '\0');
  for (;;) {
    const ssize_t n = ::read(in.get(), &block[0], block.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      error = "cannot read " + path + ": " + std::strerror(errno);
      return false;
    }
    if (n == 0) break;
    text.append(block.data(), static_cast<std::size_t>(n));
  }
  std::string_view rest(text);
  for (auto nl = rest.find('\n'); nl != std::string_view::npos; nl = rest.find('\n')) {
    std::string_view jti, owner;
    std::int64_t exp = 0;
    if (detail::parse_revocation_line(rest.substr(0, nl), jti, exp, owner) && exp > now)
      out.push_back(RevocationRecord{std::string(jti), exp, std::string(owner)});
    rest.remove_prefix(nl + 1);
  }
  return true;
}

}  // namespace iwsec
// ----- end iwsec/revocation_journal.hpp -----
// ----- begin iwsec/journal_revocation_store.hpp -----
/// @brief JournalRevocationStore: revocations in memory, made durable by an append-only journal file.
/// @file

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>


namespace iwsec {

/// @brief Revocations in memory, backed by an append-only journal file
/// (`<jti> <exp>` per line, `<jti> <exp> <owner>` for one made by
/// revoke_for, so the per-owner counts survive a restart). revoke() returns only after the line is written
/// and fsynced; the constructor replays the journal, tolerating a torn last
/// line, drops expired entries and, when the journal held anything else
/// than distinct live entries, rewrites it compactly. Lookups never wait for
/// the disk.
class JournalRevocationStore : public MemoryRevocationStore {
 public:
  /// @brief Opens or creates the journal at @p path; throws std::runtime_error
  /// when it cannot be read or written.
  explicit JournalRevocationStore(std::string path, Clock clock = system_now)
      : MemoryRevocationStore(std::move(clock)), path_(std::move(path)) {
    detail::Lock appending(append_mutex_);
    detail::Lock writing(write_mutex_);
    bool clean = false;
    off_t bytes = 0;
    std::size_t lines = 0;
    {
      detail::unique_fd in = detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
      // Only a missing journal starts empty: one that exists but cannot be
      // read must not be replaced by an empty one.
      if (!in && errno != ENOENT) throw journal_error("iwsec: cannot read " + path_ + ": " + std::strerror(errno));
      if (in && !replay(in.get(), clean, bytes, lines))
        throw journal_error("iwsec: cannot read " + path_ + ": " + std::strerror(errno));
    }
    schedule_sweep();
    if (clean) {
      // Nothing to drop: append to the journal as it is (a restart then costs
      // one read, not a rewrite of every entry).
      journal_ = detail::open_fd(path_, O_WRONLY | O_APPEND | O_NOFOLLOW);
      struct stat st;
      if (journal_ && ::fchmod(journal_.get(), 0600) == 0 && ::fstat(journal_.get(), &st) == 0 &&
          st.st_size == bytes) {
        journal_bytes_ = bytes;
        journal_lines_ = lines;
        return;
      }
      journal_.reset();
    }
    if (!rewrite_journal()) throw journal_error("iwsec: cannot write " + path_ + ": " + std::strerror(errno));
  }

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    return append_revocation(nullptr, jti, expires_at, 0) == RevokeOutcome::revoked;
  }

  RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                           std::size_t limit) override {
    const std::string word = owner_key(owner);
    return append_revocation(&word, jti, expires_at, limit);
  }

  std::optional<std::size_t> outstanding_for(std::string_view owner) override {
    return MemoryRevocationStore::outstanding_for(owner_key(owner));
  }

  const std::string& path() const noexcept { return path_; }

 private:
  static bool journal_word(std::string_view w) { return detail::revocation_journal_word(w); }

  // An owner as one journal word: itself, or a digest when it holds a
  // space or a line break or is long.
  static std::string owner_key(std::string_view owner) {
    if (journal_word(owner) && owner.substr(0, 7) != "sha256:") return std::string(owner);
    return "sha256:" + detail::sha256_hex(owner);
  }

  // Appends `<jti> <exp>[ <owner>]` durably, then applies it. With an
  // @p owner, the limit is checked first (append_mutex_ serialises writers,
  // so the check still holds when the line lands).
  RevokeOutcome append_revocation(const std::string* owner, std::string_view jti, std::int64_t expires_at,
                                  std::size_t limit) IWSEC_EXCLUDES(append_mutex_, write_mutex_) {
    if (!journal_word(jti)) return RevokeOutcome::failed;
    std::string line;
    detail::append_revocation_line(line, jti, expires_at, owner ? std::string_view(*owner) : std::string_view());
    // Writers queue here; readers (is_revoked) never wait for the disk.
    detail::Lock appending(append_mutex_);
    if (owner) {
      detail::Lock writing(write_mutex_);
      if (!owner_has_room(*owner, jti, limit)) return RevokeOutcome::limit_reached;
    }
    if (!journal_ && !compact()) return RevokeOutcome::failed;
    if (!append_durably(line)) return RevokeOutcome::failed;
    bool due;
    {
      detail::Lock writing(write_mutex_);
      if (owner) add_owned(*owner, jti, expires_at);
      insert(jti, expires_at);
      due = journal_lines_ > 4096 && journal_lines_ > 2 * size();
    }
    if (due) compact();  // on failure the current journal stays in use
    return RevokeOutcome::revoked;
  }

  // Reads the journal in blocks and applies every complete, well-formed, live
  // line. @p clean: the file holds only such lines, each jti once, and ends
  // with a newline (so it can be appended to as it is).
  bool replay(int fd, bool& clean, off_t& bytes, std::size_t& lines) IWSEC_REQUIRES(write_mutex_) {
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0)
      reserve(static_cast<std::size_t>(st.st_size) / 48);  // the shortest live UUID line
    const std::int64_t now = clock_();
    clean = true;
    bytes = 0;
    lines = 0;
    std::string pending;  // the start of a line cut by the block boundary
    std::string block(1 << 20, '\0');
    for (;;) {
      const ssize_t n = ::read(fd, &block[0], block.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (n == 0) break;
      bytes += n;
      std::string_view text(block.data(), static_cast<std::size_t>(n));
      if (!pending.empty()) {
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
          pending.append(text.data(), text.size());
          continue;
        }
        pending.append(text.data(), nl);
        clean &= apply_line(pending, now);
        ++lines;
        pending.clear();
        text.remove_prefix(nl + 1);
      }
      for (;;) {
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) break;
        clean &= apply_line(text.substr(0, nl), now);
        ++lines;
        text.remove_prefix(nl + 1);
      }
      pending.assign(text.data(), text.size());
    }
    if (!pending.empty()) clean = false;  // a torn last line: never acknowledged
    return true;
  }

  // One `<jti> <exp>[ <owner>]` line; true when it was well formed, live and new.
  bool apply_line(std::string_view line, std::int64_t now) IWSEC_REQUIRES(write_mutex_) {
    std::string_view jti, owner;
    std::int64_t exp = 0;
    if (!detail::parse_revocation_line(line, jti, exp, owner) || exp <= now) return false;
    if (!owner.empty()) add_owned(owner, jti, exp);
    return insert(jti, exp, false);
  }

  // Appends one record and fsyncs it. On failure the journal is cut back to
  // its last acknowledged length, so a partial record can never merge with
  // (and spoil) the next one; if even that fails, appending stops until a
  // compaction rewrites the journal.
  bool append_durably(const std::string& line) IWSEC_REQUIRES(append_mutex_) {
    if (detail::write_all(journal_.get(), line) && ::fdatasync(journal_.get()) == 0) {
      journal_bytes_ += static_cast<off_t>(line.size());
      ++journal_lines_;
      return true;
    }
    if (::ftruncate(journal_.get(), journal_bytes_) != 0 || ::fdatasync(journal_.get()) != 0) journal_.reset();
    return false;
  }

  // rewrite_journal(), taking write_mutex_ for it.
  bool compact() IWSEC_REQUIRES(append_mutex_) IWSEC_EXCLUDES(write_mutex_) {
    detail::Lock writing(write_mutex_);
    return rewrite_journal();
  }

  // Rewrites the journal with only live entries (written in blocks to a
  // temporary file, fsynced, renamed over the journal, directory fsynced) and
  // appends to the new file from then on. Writers wait meanwhile; lookups go
  // on.
  bool rewrite_journal() IWSEC_REQUIRES(append_mutex_, write_mutex_) {
    const detail::directory_handle dir(detail::parent_directory(path_));
    if (!dir) return false;
    const std::string base = detail::base_name(path_);
    detail::temp_file out(dir, base);  // exclusive, unpredictable, no symlink followed
    if (!out) return false;
    std::size_t lines = 0;
    off_t bytes = 0;
    const std::int64_t now = clock_();
    std::string block;
    block.reserve((1 << 20) + 512);
    bool ok = true;
    for_each_entry([&](const auto& append_jti, std::int64_t exp, const std::string* owner) {
      if (!ok || exp <= now) return;
      detail::append_revocation_line_with(block, append_jti, exp, owner ? std::string_view(*owner) : std::string_view());
      ++lines;
      if (block.size() >= (1 << 20)) {
        ok = detail::write_all(out.fd(), block);
        bytes += static_cast<off_t>(block.size());
        block.clear();
      }
    });
    ok = ok && detail::write_all(out.fd(), block);
    bytes += static_cast<off_t>(block.size());
    std::string error, warning;
    if (!ok || !out.commit(base, 0600, error, warning, /*keep_mode=*/false)) return false;  // the journal in use, if any, is untouched
    if (!warning.empty()) {
      // The rename may not be durable (the directory fsync failed even when
      // retried): appending to either file could lose acknowledged
      // revocations in a crash, so appending stops until a compaction works.
      journal_.reset();
      return false;
    }
    // Append to the file just written (no second open by name).
    detail::unique_fd fresh = out.release();
    const int flags = ::fcntl(fresh.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fresh.get(), F_SETFL, flags | O_APPEND) != 0) return false;
    journal_ = std::move(fresh);
    journal_bytes_ = bytes;
    journal_lines_ = lines;
    return true;
  }

  std::string path_;
  // Serialises writers through the disk; taken before write_mutex_.
  detail::Mutex append_mutex_ IWSEC_ACQUIRED_BEFORE(write_mutex_);
  detail::unique_fd journal_ IWSEC_GUARDED_BY(append_mutex_);
  off_t journal_bytes_ IWSEC_GUARDED_BY(append_mutex_) = 0;
  std::size_t journal_lines_ IWSEC_GUARDED_BY(append_mutex_) = 0;
};

}  // namespace iwsec
// ----- end iwsec/journal_revocation_store.hpp -----
// ----- end iwsec/revocation_store.hpp -----
// ----- begin iwsec/lockout.hpp -----
/// @brief Brute-force defence (modelled on Keycloak's), all parts at once: includes client_address.hpp, lockout_policy.hpp, lockout_interface.hpp and lockout_tracker.hpp.
/// @file
/// Failed credential checks are counted per account and per client, and
/// temporary locks answered 429. Each part is a header of its own; this one
/// keeps `#include <iwsec/lockout.hpp>` working.

// ----- begin iwsec/client_address.hpp -----
/// @brief Client-throttle keys of client addresses: a peer address, or the one a reverse proxy reports.
/// @file

#include <cstring>
#include <string>
#include <string_view>

#include <arpa/inet.h>
#include <sys/socket.h>


namespace iwsec {

/// @brief The client-throttle key of a peer address: an IPv4 address as it
/// is (an IPv4-mapped IPv6 address as its IPv4 form); an IPv6 address as its
/// /64 prefix, since one subscriber usually holds a whole /64 and could
/// otherwise take a fresh address for every 99 failures; anything else (a
/// text that is not an address) unchanged.
inline std::string client_address_key(std::string_view address) {
  if (address.find(':') == std::string_view::npos || address.size() >= INET6_ADDRSTRLEN) return std::string(address);
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, address.data(), address.size());
  unsigned char bytes[16];
  if (::inet_pton(AF_INET6, text, bytes) != 1) return std::string(address);
  static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, mapped_prefix, sizeof mapped_prefix) == 0) {
    char v4[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, bytes + 12, v4, sizeof v4)) return v4;
  }
  return "ipv6/64:" + detail::hex_encode(bytes, 8);
}

/// @brief The client-throttle key of the address a reverse proxy reports in
/// a header such as `X-Forwarded-For` or `X-Real-IP`: the last hop of a
/// comma-separated list (the one the nearest proxy appended), in any of the
/// forms proxies write (`1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
/// `[2001:db8::1]`, `fe80::1%eth0`, optionally in double quotes), keyed by
/// client_address_key (so IPv6 is grouped by its /64). A text that is none
/// of these is keyed as it is, trimmed.
inline std::string forwarded_address_key(std::string_view header_value) {
  std::string_view v = header_value;
  const auto comma = v.rfind(',');
  if (comma != std::string_view::npos) v.remove_prefix(comma + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  std::string_view host = v;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return std::string(v);
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::string(v);
    host = host.substr(1, close - 1);
  } else {
    const auto colon = host.find(':');
    if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos)
      host = host.substr(0, colon);  // IPv4 with a port: one colon only
  }
  const auto zone = host.find('%');
  if (zone != std::string_view::npos && host.find(':') != std::string_view::npos) host = host.substr(0, zone);
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return std::string(v);
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, host.data(), host.size());
  unsigned char bytes[16];
  const int family = host.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
  if (::inet_pton(family, text, bytes) != 1) return std::string(v);
  return client_address_key(host);
}

}  // namespace iwsec
// ----- end iwsec/client_address.hpp -----
// ----- begin iwsec/lockout_policy.hpp -----
/// @brief LockoutPolicy: when failed logins lock an account or a client out, and its valid ranges.
/// @file

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

// httplib::Request: LockoutPolicy::client_key reads the request.
#include <httplib.h>


namespace iwsec {

/// @brief When failed logins lock an account or a client out. Keycloak's
/// defaults: after `account_failures` (30) failures an account is locked for
/// `account_wait_increment` (60 s) × ⌊failures / 30⌋, at most
/// `account_max_wait` (900 s); `account_failure_reset` (12 h) without a
/// failure, or a successful login, resets the count. A client with
/// `client_failures` (100) failures within `client_window` (15 min) is
/// refused until that window has passed.
struct LockoutPolicy {
  /// @brief Off: nothing is counted and nothing is ever refused with 429.
  bool enabled = true;

  /// @brief Failures of one account (its email, lower-cased) that lock it.
  std::uint32_t account_failures = 30;
  /// @brief Lock length per multiple of account_failures.
  std::chrono::seconds account_wait_increment{60};
  /// @brief Longest lock.
  std::chrono::seconds account_max_wait{900};
  /// @brief Quiet time after which an account's failures are forgotten.
  std::chrono::seconds account_failure_reset{12 * 3600};

  /// @brief Failures from one client, within client_window, that block it.
  std::uint32_t client_failures = 100;
  /// @brief The client window; it opens at the client's first failure.
  std::chrono::seconds client_window{15 * 60};

  /// @brief Most accounts tracked at once (each entry about 100 bytes).
  std::size_t max_tracked_accounts = 100000;
  /// @brief Most clients tracked at once (each entry about 100 bytes).
  std::size_t max_tracked_clients = 100000;

  /// @brief Who the client is. Empty: the peer address (`req.remote_addr`).
  /// Behind a reverse proxy every request comes from the proxy's address:
  /// return the address the proxy vouches for (e.g. the last hop it
  /// appended to `X-Forwarded-For`), never a header a client can set
  /// freely. An empty string exempts the request from the client throttle.
  std::function<std::string(const httplib::Request&)> client_key;
};

/// @brief A LockoutPolicy::client_key for a server behind a reverse proxy
/// that always sets @p header (`X-Forwarded-For`, `X-Real-IP`): the address
/// in its last value (the one the nearest proxy appended), keyed by
/// forwarded_address_key and prefixed `proxied:`. A request without the
/// header counts under its peer address, so stripping the header gains a
/// client nothing. What `iwsec-server --lockout-client-header` does.
inline std::function<std::string(const httplib::Request&)> client_key_from_header(std::string header) {
  return [header = std::move(header)](const httplib::Request& req) {
    const std::size_t n = detail::count_header(req.headers, header);
    if (n == 0) return client_address_key(req.remote_addr);
    return "proxied:" + forwarded_address_key(*detail::find_header(req.headers, header, n - 1));
  };
}

namespace detail {

/// @brief Refuses a policy that would silently not protect (or never let
/// anyone in); used by validate_options.
inline const char* lockout_policy_error(const LockoutPolicy& p) {
  constexpr std::int64_t max_seconds = max_duration_seconds;
  if (!p.enabled) return nullptr;
  if (p.account_failures < 1 || p.account_failures > 1000000) return "account_failures must be 1 to 1000000";
  if (p.account_wait_increment.count() < 1 || p.account_wait_increment.count() > max_seconds)
    return "account_wait_increment must be 1 s to 366 days";
  if (p.account_max_wait < p.account_wait_increment || p.account_max_wait.count() > max_seconds)
    return "account_max_wait must be account_wait_increment to 366 days";
  if (p.account_failure_reset < p.account_max_wait || p.account_failure_reset.count() > max_seconds)
    return "account_failure_reset must be account_max_wait to 366 days";
  if (p.client_failures < 1 || p.client_failures > 100000000) return "client_failures must be 1 to 100000000";
  if (p.client_window.count() < 1 || p.client_window.count() > max_seconds) return "client_window must be 1 s to 366 days";
  if (p.max_tracked_accounts < 16 || p.max_tracked_accounts > 100000000)
    return "max_tracked_accounts must be 16 to 100000000";
  if (p.max_tracked_clients < 16 || p.max_tracked_clients > 100000000)
    return "max_tracked_clients must be 16 to 100000000";
  return nullptr;
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/lockout_policy.hpp -----
// ----- begin iwsec/lockout_interface.hpp -----
/// @brief The Lockout interface: where failed credential checks are counted and locks kept.
/// @file

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>


namespace iwsec {

/// @brief What one failure started: a lock of the account, a block of the
/// client (each the time it ends, 0 when this failure did not start it).
struct LockTransition {
  std::int64_t account_locked_until = 0;
  std::int64_t client_blocked_until = 0;
  explicit operator bool() const noexcept { return account_locked_until != 0 || client_blocked_until != 0; }
};

/// @brief The lockout seam: where failed credential checks are counted and
/// locks kept. LockoutTracker counts in process memory (the default);
/// a cluster backend (iwsec/postgres/backend.hpp) counts in its database, so
/// that every replica sees the same counts. Set Options::lockout_state to
/// replace the tracker the routes would otherwise make from Options::lockout.
/// Every method may be called from many threads at once.
class Lockout {
 public:
  /// @brief 128 bits of SHA-256("a" + lower-cased email) or ("c" + client).
  struct Key {
    std::uint64_t hi = 0, lo = 0;
    bool operator==(const Key& o) const noexcept { return hi == o.hi && lo == o.lo; }
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept { return static_cast<std::size_t>(k.lo); }
  };

  virtual ~Lockout() = default;

  /// @brief The account key of an email: lower-cased (ASCII), as the user
  /// stores match it.
  static std::string normalise_account(std::string_view email) { return detail::ascii_lower(email); }
  static Key account_key(std::string_view email) { return make_key('a', normalise_account(email)); }
  static Key client_key(std::string_view client) { return make_key('c', client); }

  /// @brief One credential check in progress; see begin().
  class Attempt {
   public:
    Attempt(Attempt&& other) noexcept { *this = std::move(other); }
    Attempt& operator=(Attempt&& other) noexcept {
      if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        account_ = other.account_;
        client_ = other.client_;
        wait_ = other.wait_;
      }
      return *this;
    }
    ~Attempt() { release(); }

    /// @brief True when the check may run; false when it must be refused.
    explicit operator bool() const noexcept { return wait_ == 0; }
    /// @brief Seconds to wait (>= 1) when refused; 0 when admitted.
    std::int64_t wait() const noexcept { return wait_; }

    /// @brief The credentials were wrong: counts a failure for the account
    /// and the client, locking or blocking them at their thresholds.
    /// Returns the lock or block this failure started, if any.
    LockTransition failed(std::int64_t now) {
      return owner_ ? std::exchange(owner_, nullptr)->finish(account_, client_, now, false) : LockTransition();
    }
    /// @brief The credentials were right: the account's count and lock are
    /// reset; the client's failures stay (a success does not wipe them, or
    /// one valid account would let a client guess at the others freely).
    void succeeded(std::int64_t now) {
      if (owner_) std::exchange(owner_, nullptr)->finish(account_, client_, now, true);
    }

   private:
    friend class Lockout;
    Attempt(Lockout* owner, std::optional<Key> account, std::optional<Key> client, std::int64_t wait)
        : owner_(owner), account_(account), client_(client), wait_(wait) {}
    void release() noexcept {
      if (owner_) std::exchange(owner_, nullptr)->abandon(account_, client_);
    }
    Lockout* owner_ = nullptr;  // set while admitted and unfinished
    std::optional<Key> account_, client_;
    std::int64_t wait_ = 0;
  };

  /// @brief The policy counts are judged by.
  virtual const LockoutPolicy& policy() const = 0;

  /// @brief Starts a credential check for @p account (an email; nothing for
  /// a refresh token) from @p client (empty: not tracked); see
  /// LockoutTracker::begin. May throw StateUnavailable (the routes answer 503).
  virtual Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) = 0;
  /// @brief Seconds @p account must still wait (0: none), without counting.
  virtual std::int64_t account_wait(std::string_view account, std::int64_t now) = 0;
  /// @brief Seconds @p client must still wait (0: none), without counting.
  virtual std::int64_t client_wait(std::string_view client, std::int64_t now) = 0;
  /// @brief Forgets @p account's failures and lifts its lock.
  virtual void unlock_account(std::string_view account) = 0;
  /// @brief Forgets every failure of @p client.
  virtual void unlock_client(std::string_view client) = 0;

 protected:
  static Key make_key(char kind, std::string_view text) {
    std::string input(1, kind);
    input += text;
    const auto digest = detail::sha256(input);
    Key k;
    std::memcpy(&k.hi, digest.data(), 8);
    std::memcpy(&k.lo, digest.data() + 8, 8);
    return k;
  }
  /// @brief An admitted attempt that reports to finish() / abandon().
  Attempt admitted(std::optional<Key> account, std::optional<Key> client) { return Attempt(this, account, client, 0); }
  /// @brief A refused attempt (@p wait >= 1 seconds) or, with 0, one admitted that reports nothing.
  static Attempt refused(std::int64_t wait) { return Attempt(nullptr, std::nullopt, std::nullopt, wait); }
  /// @brief For a decorator (a Lockout over another, e.g.
  /// JournaledLockout): @p attempt, begun on @p inner, made this one's, so
  /// that its verdict reaches this->finish() / abandon(), which pass it on
  /// to @p inner with finish_on() / abandon_on(). A refused attempt, or one
  /// that @p inner does not own itself, is returned as it is (its verdict
  /// then goes to its owner, past this decorator).
  Attempt adopt(Lockout& inner, Attempt&& attempt) {
    if (attempt.owner_ != &inner) return std::move(attempt);
    Attempt mine(this, attempt.account_, attempt.client_, 0);
    attempt.owner_ = nullptr;
    return mine;
  }
  /// @brief For a decorator: ends an attempt of @p inner's (see adopt()).
  static LockTransition finish_on(Lockout& inner, const std::optional<Key>& account, const std::optional<Key>& client,
                                  std::int64_t now, bool success) {
    return inner.finish(account, client, now, success);
  }
  /// @brief For a decorator: drops an attempt of @p inner's unfinished.
  static void abandon_on(Lockout& inner, const std::optional<Key>& account, const std::optional<Key>& client) noexcept {
    inner.abandon(account, client);
  }
  /// @brief An admitted attempt ended with a verdict.
  virtual LockTransition finish(const std::optional<Key>& account, const std::optional<Key>& client,
                                std::int64_t now, bool success) = 0;
  /// @brief An admitted attempt dropped unfinished (an exception): neither failure nor success.
  virtual void abandon(const std::optional<Key>& account, const std::optional<Key>& client) noexcept = 0;
};

}  // namespace iwsec
// ----- end iwsec/lockout_interface.hpp -----
// ----- begin iwsec/lockout_tracker.hpp -----
/// @brief LockoutTracker: the Lockout that counts failures in process memory, in bounded tables.
/// @file

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>


namespace iwsec {

/// @brief Counts failures and answers "wait N seconds" for locked accounts
/// and blocked clients. Thread-safe. Keys are kept as 128-bit SHA-256
/// prefixes, so no email is held in memory and a long one costs no more.
///
/// A credential check is bracketed by begin() and the Attempt's failed() or
/// succeeded(). Attempts still running are counted too: no more attempts
/// for an account (or client) may run at once than failures are left before
/// its threshold (at least one; 30 for a fresh account, 100 for a fresh
/// client under the defaults), so parallel guesses cannot slip
/// past the threshold while their password hashes run, not even in the
/// first burst, nor past a lock that just ended. The refused extra attempts
/// get a 429 with `Retry-After: 1` and are not counted.
///
/// Memory stays bounded: each table holds at most its `max_tracked_*`
/// entries. A full table first drops entries that no longer matter (quiet
/// for account_failure_reset, or past their client window); if that frees
/// less than an eighth of it, the entries that protect least go next:
/// unlocked ones before locked ones, fewest failures first, oldest first.
/// So spraying random emails or addresses evicts other sprayed one-failure
/// entries long before it could release a lock or a real count.
class LockoutTracker : public Lockout {
  using key = Key;
  using key_hash = KeyHash;

 public:
  explicit LockoutTracker(LockoutPolicy policy = LockoutPolicy()) : policy_(std::move(policy)) {}
  LockoutTracker(const LockoutTracker&) = delete;
  LockoutTracker& operator=(const LockoutTracker&) = delete;

  const LockoutPolicy& policy() const override { return policy_; }

  /// @brief Starts a credential check for @p account (an email; nothing for
  /// a refresh token, which names no account) from @p client (empty: not
  /// tracked). Refused (the Attempt is false, wait() >= 1 seconds) while the
  /// account is locked, the client blocked, or too many of their attempts
  /// run at once; nothing is counted then. Always admitted when the policy
  /// is disabled. An admitted Attempt dropped unfinished (an exception)
  /// counts as neither failure nor success.
  Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) override {
    if (!policy_.enabled) return refused(0);
    std::optional<key> account_key, client_key;
    if (account) account_key = make_key('a', normalise_account(*account));
    if (!client.empty()) client_key = make_key('c', client);
    detail::Lock account_lock(accounts_mutex_);
    detail::Lock client_lock(clients_mutex_);
    std::int64_t wait = 0;
    if (account_key) wait = std::max(wait, account_wait(*account_key, now, true));
    if (client_key) wait = std::max(wait, client_wait(*client_key, now, true));
    if (wait > 0) return refused(wait);
    if (account_key) ++account_entry_for(*account_key, now).pending;
    if (client_key) ++client_entry_for(*client_key, now).pending;
    return admitted(account_key, client_key);
  }

  /// @brief Seconds @p account must still wait (0: none), without counting.
  std::int64_t account_wait(std::string_view account, std::int64_t now) override {
    if (!policy_.enabled) return 0;
    const key k = make_key('a', normalise_account(account));
    detail::Lock lock(accounts_mutex_);
    return account_wait(k, now, false);
  }

  /// @brief Seconds @p client must still wait (0: none), without counting.
  std::int64_t client_wait(std::string_view client, std::int64_t now) override {
    if (!policy_.enabled || client.empty()) return 0;
    const key k = make_key('c', client);
    detail::Lock lock(clients_mutex_);
    return client_wait(k, now, false);
  }

  /// @brief Forgets @p account's failures and lifts its lock (an
  /// administrator's "unlock").
  void unlock_account(std::string_view account) override {
    const key k = make_key('a', normalise_account(account));
    detail::Lock lock(accounts_mutex_);
    accounts_.erase(k);
  }

  /// @brief Forgets every failure of @p client.
  void unlock_client(std::string_view client) override {
    const key k = make_key('c', client);
    detail::Lock lock(clients_mutex_);
    clients_.erase(k);
  }

  /// @brief Entries held (for tests and monitoring).
  std::size_t tracked_accounts() const {
    detail::Lock lock(accounts_mutex_);
    return accounts_.size();
  }
  std::size_t tracked_clients() const {
    detail::Lock lock(clients_mutex_);
    return clients_.size();
  }

 private:
  struct account_entry {
    std::uint32_t failures = 0;
    std::uint32_t pending = 0;  // admitted attempts still running
    std::int64_t last_failure = 0;
    std::int64_t locked_until = 0;
  };
  struct client_entry {
    std::uint32_t failures = 0;
    std::uint32_t pending = 0;
    std::int64_t window_start = 0;
  };

  std::int64_t reset_after() const { return static_cast<std::int64_t>(policy_.account_failure_reset.count()); }
  std::int64_t window_end(const client_entry& e) const {
    return e.window_start + static_cast<std::int64_t>(policy_.client_window.count());
  }
  bool account_expired(const account_entry& e, std::int64_t now) const {
    return e.failures == 0 || (now - e.last_failure >= reset_after() && now >= e.locked_until);
  }
  bool client_expired(const client_entry& e, std::int64_t now) const { return e.failures == 0 || now >= window_end(e); }

  // Attempts that may run at once: the failures left before the threshold
  // (at least one). Every running attempt may be a failure, so no burst can
  // take the count past the threshold, not even the first one.
  static bool too_many_running(std::uint32_t failures, std::uint32_t pending, std::uint32_t threshold) {
    const std::uint32_t allowed = failures >= threshold ? 1 : threshold - failures;
    return pending >= allowed;
  }

  std::int64_t account_wait(const key& k, std::int64_t now, bool starting) const IWSEC_REQUIRES(accounts_mutex_) {
    auto it = accounts_.find(k);
    if (it == accounts_.end()) return 0;
    const account_entry& e = it->second;
    if (e.locked_until > now) return e.locked_until - now;
    // Failures past their 12 quiet hours no longer count (account_failed
    // starts again from zero), but the attempts running still do.
    const std::uint32_t failures = account_expired(e, now) ? 0 : e.failures;
    if (starting && too_many_running(failures, e.pending, policy_.account_failures)) return 1;
    return 0;
  }

  std::int64_t client_wait(const key& k, std::int64_t now, bool starting) const IWSEC_REQUIRES(clients_mutex_) {
    auto it = clients_.find(k);
    if (it == clients_.end()) return 0;
    const client_entry& e = it->second;
    const bool expired = client_expired(e, now);
    if (!expired && e.failures >= policy_.client_failures) return window_end(e) - now;
    if (starting && too_many_running(expired ? 0 : e.failures, e.pending, policy_.client_failures)) return 1;
    return 0;
  }

  account_entry& account_entry_for(const key& k, std::int64_t now) IWSEC_REQUIRES(accounts_mutex_) {
    auto it = accounts_.find(k);
    if (it == accounts_.end()) {
      if (accounts_.size() >= policy_.max_tracked_accounts) evict_accounts(now);
      it = accounts_.emplace(k, account_entry{}).first;
    }
    return it->second;
  }

  client_entry& client_entry_for(const key& k, std::int64_t now) IWSEC_REQUIRES(clients_mutex_) {
    auto it = clients_.find(k);
    if (it == clients_.end()) {
      if (clients_.size() >= policy_.max_tracked_clients) evict_clients(now);
      it = clients_.emplace(k, client_entry{0, 0, now}).first;
    }
    return it->second;
  }

  LockTransition finish(const std::optional<key>& account, const std::optional<key>& client, std::int64_t now,
                        bool success) override {
    LockTransition started;
    detail::Lock account_lock(accounts_mutex_);
    detail::Lock client_lock(clients_mutex_);
    if (account) {
      account_entry& e = account_entry_for(*account, now);  // evicted meanwhile: counted afresh
      if (e.pending > 0) --e.pending;
      if (success) {
        e.failures = 0;
        e.locked_until = 0;
      } else {
        const bool was_locked = e.locked_until > now;
        account_failed(e, now);
        if (!was_locked && e.locked_until > now) started.account_locked_until = e.locked_until;
      }
      if (e.failures == 0 && e.pending == 0) accounts_.erase(*account);
    }
    if (client) {
      client_entry& e = client_entry_for(*client, now);
      if (e.pending > 0) --e.pending;
      if (!success) {
        client_failed(e, now);
        if (e.failures == policy_.client_failures) started.client_blocked_until = window_end(e);
      }
      if (e.failures == 0 && e.pending == 0) clients_.erase(*client);
    }
    return started;
  }

  void abandon(const std::optional<key>& account, const std::optional<key>& client) noexcept override {
    detail::Lock account_lock(accounts_mutex_);
    detail::Lock client_lock(clients_mutex_);
    if (account) {
      auto it = accounts_.find(*account);
      if (it != accounts_.end() && it->second.pending > 0) --it->second.pending;
    }
    if (client) {
      auto it = clients_.find(*client);
      if (it != clients_.end() && it->second.pending > 0) --it->second.pending;
    }
  }

  void account_failed(account_entry& e, std::int64_t now) {
    if (e.failures > 0 && account_expired(e, now)) {  // 12 quiet hours: start again
      e.failures = 0;
      e.locked_until = 0;
    }
    if (e.failures < UINT32_MAX) ++e.failures;
    e.last_failure = now;
    if (e.failures >= policy_.account_failures) {
      const std::int64_t multiples = e.failures / policy_.account_failures;
      const std::int64_t increment = static_cast<std::int64_t>(policy_.account_wait_increment.count());
      const std::int64_t max_wait = static_cast<std::int64_t>(policy_.account_max_wait.count());
      const std::int64_t wait = std::min(max_wait, multiples * increment);  // no overflow: < 2^32 * 2^25
      e.locked_until = std::max(e.locked_until, now + wait);
    }
  }

  void client_failed(client_entry& e, std::int64_t now) {
    if (e.failures == 0 || now >= window_end(e)) {  // the window opens at the first failure
      e.failures = 0;
      e.window_start = now;
    }
    if (e.failures < UINT32_MAX) ++e.failures;
  }

  std::size_t eviction_target(std::size_t cap) const { return cap - std::max<std::size_t>(1, cap / 8); }

  void evict_accounts(std::int64_t now) IWSEC_REQUIRES(accounts_mutex_) {
    for (auto it = accounts_.begin(); it != accounts_.end();)
      it = account_expired(it->second, now) && it->second.pending == 0 ? accounts_.erase(it) : std::next(it);
    const std::size_t target = eviction_target(policy_.max_tracked_accounts);
    if (accounts_.size() <= target) return;
    // Least protective first: unlocked, fewest failures, longest quiet.
    using rank = std::pair<std::pair<std::int64_t, std::int64_t>, std::int64_t>;
    std::vector<std::pair<rank, key>> ranked;
    ranked.reserve(accounts_.size());
    for (const auto& [k, e] : accounts_) {
      if (e.pending > 0) continue;  // attempts in flight keep their entry (and its cap)
      const std::int64_t locked = e.locked_until > now ? e.locked_until : 0;  // sooner unlock goes first
      ranked.push_back({{{locked, e.failures}, e.last_failure}, k});
    }
    const std::size_t drop = std::min(accounts_.size() - target, ranked.size());
    if (drop == 0) return;  // every entry has attempts in flight: the table overshoots for now
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(drop - 1), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < drop; ++i) accounts_.erase(ranked[i].second);
  }

  void evict_clients(std::int64_t now) IWSEC_REQUIRES(clients_mutex_) {
    for (auto it = clients_.begin(); it != clients_.end();)
      it = client_expired(it->second, now) && it->second.pending == 0 ? clients_.erase(it) : std::next(it);
    const std::size_t target = eviction_target(policy_.max_tracked_clients);
    if (clients_.size() <= target) return;
    // Least protective first: not blocked, fewest failures, oldest window.
    using rank = std::pair<std::pair<std::int64_t, std::int64_t>, std::int64_t>;
    std::vector<std::pair<rank, key>> ranked;
    ranked.reserve(clients_.size());
    for (const auto& [k, e] : clients_) {
      if (e.pending > 0) continue;
      const std::int64_t blocked = e.failures >= policy_.client_failures ? window_end(e) : 0;
      ranked.push_back({{{blocked, e.failures}, e.window_start}, k});
    }
    const std::size_t drop = std::min(clients_.size() - target, ranked.size());
    if (drop == 0) return;  // every entry has attempts in flight: the table overshoots for now
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(drop - 1), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < drop; ++i) clients_.erase(ranked[i].second);
  }

  LockoutPolicy policy_;
  mutable detail::Mutex accounts_mutex_ IWSEC_ACQUIRED_BEFORE(clients_mutex_);  // always taken first
  mutable detail::Mutex clients_mutex_;
  std::unordered_map<key, account_entry, key_hash> accounts_ IWSEC_GUARDED_BY(accounts_mutex_);
  std::unordered_map<key, client_entry, key_hash> clients_ IWSEC_GUARDED_BY(clients_mutex_);
};

}  // namespace iwsec
// ----- end iwsec/lockout_tracker.hpp -----
// ----- end iwsec/lockout.hpp -----
// ----- begin iwsec/lock_journal.hpp -----
/// @brief The lock journal: how an administrator sees and lifts the account locks of a running process.
/// @file

// DATA/lockouts.journal. A process keeps its account locks in memory
// (LockoutTracker); an administrator's tool (iwsec-admin show-user, unlock)
// reaches them through this file, as it reaches the users through
// users.json: no port, no credentials, and the directory's permissions
// (0700, owner only) already say who may administer it. Lines, each
// appended with one write(2) of O_APPEND (short, so whole lines, never
// interleaved):
//
//   start PID EPOCH          the process (re)started: every lock before is void
//   lock KEY UNTIL           the process locked account KEY until UNTIL (epoch s)
//   unlock KEY EMAILHEX      an administrator asks to unlock that account
//   stop PID EPOCH           the process stopped cleanly: no lock is in force
//
// KEY is the account's Lockout::Key in hex (its two 64-bit halves, each
// most significant digit first; the key is 128 bits of SHA-256 of "a" and
// the lower-cased email), so an email a stranger typed into a login (an
// unknown email gets locked too) is never written; the unlock line carries
// the email (hex) because the tracker needs it. The process reads the lines
// appended since its last look, with one stat(2), before every password
// check (JournaledLockout::begin): so an unlock is in force for every login
// that starts after the tool returns. It starts the journal afresh at
// start-up (its memory holds no lock then) and compacts it past max_bytes
// (1 MiB; or twice its size after the last compaction) under the journal's
// flock, which an unlock takes too.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>


namespace iwsec {

/// @brief The lock journal of one data directory: the running process's side
/// (start, locked, apply_unlocks, stop) and the administrator's (locked_until,
/// request_unlock). One instance per process; every method may be called
/// from many threads at once.
class LockJournal {
 public:
  static constexpr off_t default_max_bytes = 1 << 20;
  /// @brief Receives one line (no newline) when the journal cannot be
  /// written; never holds an email or a secret.
  using Log = detail::Log;

  /// @brief The journal of data directory @p data_dir.
  static std::string path_in(const std::string& data_dir) { return data_dir + "/lockouts.journal"; }

  /// @brief The journal's KEY of @p email (any case): its Lockout::Key in hex.
  static std::string key_of(std::string_view email) { return key_hex(Lockout::account_key(email)); }

  /// @brief What the journal at @p path says of @p email at @p now: the
  /// epoch second its lock ends (0: not locked). False, with @p error
  /// naming the path and the reason, when the journal cannot be read; a
  /// missing journal (no process ever ran there) locks nothing.
  static bool locked_until(const std::string& path, std::string_view email, std::int64_t now, std::int64_t& until,
                           std::string& error) {
    until = 0;
    detail::unique_fd fd = detail::open_fd(path, O_RDONLY | O_NOFOLLOW);
    if (!fd) {
      if (errno == ENOENT) return true;
      error = "cannot open " + path + ": " + std::strerror(errno);
      return false;
    }
    std::string text;
    if (!detail::read_all(fd.get(), text)) {
      error = "cannot read " + path + ": " + std::strerror(errno);
      return false;
    }
    const std::string key = key_of(email);
    std::size_t begin = 0;
    for (std::size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
      const auto w = words(std::string_view(text).substr(begin, end - begin));
      if (w.empty()) continue;
      if (w[0] == "start" || w[0] == "stop") {
        until = 0;
      } else if (w[0] == "lock" && w.size() == 3 && w[1] == key) {
        until = std::strtoll(std::string(w[2]).c_str(), nullptr, 10);
      } else if (w[0] == "unlock" && w.size() >= 2 && w[1] == key) {
        until = 0;
      }
    }
    if (until <= now) until = 0;
    return true;
  }

  /// @brief Asks the process running on the journal at @p path to unlock
  /// @p email (a user's or not: unknown emails are locked alike). In force
  /// for every password check that starts after this returns true.
  static bool request_unlock(const std::string& path, std::string_view email, std::string& error) {
    const std::string lower = Lockout::normalise_account(email);
    const std::string line =
        "unlock " + key_of(lower) + ' ' +
        detail::hex_encode(reinterpret_cast<const unsigned char*>(lower.data()), lower.size()) + '\n';
    detail::file_lock lock(lock_path_of(path));  // not during a compaction
    if (!lock) {
      error = "cannot lock " + lock_path_of(path) + ": " + std::strerror(errno);
      return false;
    }
    return append_line(path, line, error);
  }

  /// @brief The journal at @p path (see path_in), compacted past @p max_bytes.
  explicit LockJournal(std::string path, off_t max_bytes = default_max_bytes, Log log = stderr_log())
      : path_(std::move(path)), max_bytes_(max_bytes), log_(std::move(log)) {}
  LockJournal(const LockJournal&) = delete;
  LockJournal& operator=(const LockJournal&) = delete;

  const std::string& path() const noexcept { return path_; }
  /// @brief Gives @p line to the journal's Log (if any).
  void log(const std::string& line) const {
    if (log_) log_(line);
  }

  /// @brief Starts the journal afresh (nothing is locked in a new process).
  /// False, with @p error naming the path and the reason, when it cannot.
  bool start(std::string& error) {
    detail::Lock guard(mutex_);
    detail::file_lock lock(lock_path_of(path_));
    if (!lock) {
      error = "cannot lock " + lock_path_of(path_) + ": " + std::strerror(errno);
      return false;
    }
    return rewrite(error);
  }

  /// @brief Records a clean stop: no lock is in force any more.
  void stop() {
    detail::Lock guard(mutex_);
    std::string ignored;
    append_line(path_, "stop " + std::to_string(::getpid()) + ' ' + std::to_string(std::time(nullptr)) + '\n', ignored);
  }

  /// @brief Records that the account @p account got locked until @p until.
  void locked(const Lockout::Key& account, std::int64_t until) {
    detail::Lock guard(mutex_);
    const std::string key = key_hex(account);
    locks_[key] = until;
    std::string error;
    if (!append_line(path_, "lock " + key + ' ' + std::to_string(until) + '\n', error) && log_) log_(error);
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0 && st.st_size > compact_at_) compact();
  }
  /// @brief Records that @p email's account got locked until @p until.
  void locked(std::string_view email, std::int64_t until) { locked(Lockout::account_key(email), until); }

  /// @brief Applies the unlocks appended since the last look (one stat when
  /// there are none) through @p unlock(email), each exactly once. Returns
  /// only once every unlock appended before the call was applied, by this
  /// thread or by another one, so a check that follows sees them all. An
  /// unlock that throws stays pending (and the exception goes on).
  template <typename Unlock>
  void apply_unlocks(Unlock&& unlock) {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) return;
    {
      detail::Lock guard(mutex_);
      if (st.st_ino == inode_ && st.st_size == offset_ && pending_.empty()) return;
    }
    // One thread applies at a time; pending_ keeps an unlock until it has
    // been applied, so a thread arriving meanwhile waits here instead of
    // going on before it.
    detail::Lock applying(apply_mutex_);
    std::vector<std::string> emails;
    {
      detail::Lock guard(mutex_);
      read_new_lines();
      emails = pending_;
    }
    std::size_t applied = 0;
    const auto forget_applied = [&] {
      detail::Lock guard(mutex_);  // compaction only appends to pending_
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(applied));
    };
    try {
      for (const auto& e : emails) {
        unlock(e);
        ++applied;
      }
    } catch (...) {
      forget_applied();
      throw;
    }
    forget_applied();
  }

  /// @brief The default log: "iwsec: LINE" on standard error.
  static Log stderr_log() { return detail::stderr_log(); }

 private:
  static std::string lock_path_of(const std::string& journal) { return journal + ".lock"; }

  static std::string key_hex(const Lockout::Key& k) {
    unsigned char bytes[16];
    for (int i = 0; i < 8; ++i) {
      bytes[i] = static_cast<unsigned char>(k.hi >> (56 - 8 * i));
      bytes[8 + i] = static_cast<unsigned char>(k.lo >> (56 - 8 * i));
    }
    return detail::hex_encode(bytes, sizeof bytes);
  }

  static std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> out;
    while (!line.empty()) {
      const auto space = line.find(' ');
      out.push_back(line.substr(0, space));
      if (space == std::string_view::npos) break;
      line.remove_prefix(space + 1);
    }
    return out;
  }

  static bool append_line(const std::string& path, const std::string& line, std::string& error) {
    detail::unique_fd fd = detail::open_fd(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0600);
    if (!fd || !detail::write_all(fd.get(), line)) {
      error = "cannot append to " + path + ": " + std::strerror(errno);
      return false;
    }
    return true;
  }

  // Reads the complete lines past offset_ (from 0 if the file was replaced).
  void read_new_lines() IWSEC_REQUIRES(mutex_) {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
    struct stat now_st;
    if (!fd || ::fstat(fd.get(), &now_st) != 0) return;
    if (now_st.st_ino != inode_) {
      inode_ = now_st.st_ino;
      offset_ = 0;
    }
    if (::lseek(fd.get(), offset_, SEEK_SET) < 0) return;
    std::string text;
    if (!detail::read_all(fd.get(), text)) return;
    const auto last = text.rfind('\n');
    if (last == std::string::npos) return;
    offset_ += static_cast<off_t>(last + 1);
    std::size_t begin = 0;
    for (std::size_t end; begin <= last && (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
      const auto w = words(std::string_view(text).substr(begin, end - begin));
      if (w.size() == 3 && w[0] == "unlock") {
        if (const auto email = detail::hex_decode(w[2])) {
          locks_.erase(std::string(w[1]));
          pending_.push_back(*email);
        }
      }
    }
  }

  // Rewrites the journal: a start line and the locks still in force.
  // Callers hold the journal's flock too (a file_lock on lock_path_of).
  bool rewrite(std::string& error) IWSEC_REQUIRES(mutex_) {
    const std::int64_t now = std::time(nullptr);
    std::string text = "start " + std::to_string(::getpid()) + ' ' + std::to_string(now) + '\n';
    for (auto it = locks_.begin(); it != locks_.end();) {
      if (it->second <= now) {
        it = locks_.erase(it);
      } else {
        text += "lock " + it->first + ' ' + std::to_string(it->second) + '\n';
        ++it;
      }
    }
    if (!detail::write_file_atomically(path_, text)) {
      error = "cannot write " + path_ + ": " + std::strerror(errno);
      return false;
    }
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) {
      error = "cannot stat " + path_ + ": " + std::strerror(errno);
      return false;
    }
    inode_ = st.st_ino;
    offset_ = st.st_size;
    compact_at_ = std::max(max_bytes_, 2 * offset_);  // many live locks: not a rewrite per lock
    return true;
  }

  // Past max_bytes: under the journal's flock (no unlock is appended
  // meanwhile), read the unlocks not yet seen, then rewrite. The unlocks
  // read here are applied on the next apply_unlocks (kept in pending_).
  void compact() IWSEC_REQUIRES(mutex_) {
    detail::file_lock lock(lock_path_of(path_));
    if (!lock) return;
    read_new_lines();
    std::string error;
    if (!rewrite(error) && log_) log_(error);
  }

  const std::string path_;
  const off_t max_bytes_;
  const Log log_;
  detail::Mutex apply_mutex_ IWSEC_ACQUIRED_BEFORE(mutex_);  // held while unlocks are applied
  detail::Mutex mutex_;
  off_t compact_at_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::map<std::string, std::int64_t> locks_ IWSEC_GUARDED_BY(mutex_);  // key -> until, as written
  std::vector<std::string> pending_ IWSEC_GUARDED_BY(mutex_);           // unlocks read, not yet applied (in order)
  ino_t inode_ IWSEC_GUARDED_BY(mutex_) = 0;
  off_t offset_ IWSEC_GUARDED_BY(mutex_) = 0;
};

/// @brief A Lockout that keeps another's counts and locks (usually a
/// LockoutTracker) and meets an administrator through a LockJournal: every
/// account lock it starts is written to the journal (so `show-user` sees
/// it), and before every password check it applies the unlocks appended
/// since (so `unlock` is in force for the next login). What iwsec-server
/// does on a data directory; a host does the same with
///
///     auto journal = std::make_shared<iwsec::LockJournal>(iwsec::LockJournal::path_in(dir));
///     std::string error;
///     if (!journal->start(error)) ...;  // at start-up; journal->stop() at a clean exit
///     options.lockout_state = std::make_shared<iwsec::JournaledLockout>(
///         std::make_shared<iwsec::LockoutTracker>(options.lockout), journal);
class JournaledLockout : public Lockout {
 public:
  JournaledLockout(std::shared_ptr<Lockout> inner, std::shared_ptr<LockJournal> journal)
      : inner_(std::move(inner)), journal_(std::move(journal)) {}

  const LockoutPolicy& policy() const override { return inner_->policy(); }

  Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) override {
    if (account) apply_unlocks();
    return adopt(*inner_, inner_->begin(account, client, now));
  }
  std::int64_t account_wait(std::string_view account, std::int64_t now) override {
    apply_unlocks();
    return inner_->account_wait(account, now);
  }
  std::int64_t client_wait(std::string_view client, std::int64_t now) override {
    return inner_->client_wait(client, now);
  }
  /// @brief Unlocks in the inner Lockout and says so in the journal (so
  /// show-user agrees); the line is applied once more later, harmlessly.
  void unlock_account(std::string_view account) override {
    inner_->unlock_account(account);
    std::string error;
    if (!LockJournal::request_unlock(journal_->path(), account, error)) journal_->log(error);
  }
  void unlock_client(std::string_view client) override { inner_->unlock_client(client); }

  const std::shared_ptr<Lockout>& inner() const noexcept { return inner_; }
  const std::shared_ptr<LockJournal>& journal() const noexcept { return journal_; }

 protected:
  LockTransition finish(const std::optional<Key>& account, const std::optional<Key>& client, std::int64_t now,
                        bool success) override {
    const LockTransition t = finish_on(*inner_, account, client, now, success);
    // The lock holds in memory whatever happens to its journal line; a line
    // that cannot be written must not turn the answer into a failure.
    if (account && t.account_locked_until != 0) {
      try {
        journal_->locked(*account, t.account_locked_until);
      } catch (...) {
      }
    }
    return t;
  }
  void abandon(const std::optional<Key>& account, const std::optional<Key>& client) noexcept override {
    abandon_on(*inner_, account, client);
  }

 private:
  void apply_unlocks() {
    journal_->apply_unlocks([this](const std::string& email) { inner_->unlock_account(email); });
  }

  const std::shared_ptr<Lockout> inner_;
  const std::shared_ptr<LockJournal> journal_;
};

}  // namespace iwsec
// ----- end iwsec/lock_journal.hpp -----
// ----- begin iwsec/metrics.hpp -----
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
// ----- end iwsec/metrics.hpp -----
// ----- begin iwsec/observe.hpp -----
/// @file
/// @brief What a host can observe of the security routes for its own logs,
/// without the library taking over the host's logger: the outcome of the
/// token check of a request, and the lockout events.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <httplib.h>


namespace iwsec {

/// @brief Why an access-token check refused a token: the token itself
/// (VerifyError's reasons, one for one) or what the stores say of it since.
enum class Rejection {
  none,                   ///< accepted
  too_large,              ///< VerifyError::too_large
  malformed,              ///< VerifyError::malformed
  bad_header,             ///< VerifyError::bad_header
  unsupported_algorithm,  ///< VerifyError::unsupported_algorithm
  unknown_key,            ///< VerifyError::unknown_key
  bad_signature,          ///< VerifyError::bad_signature
  bad_payload,            ///< VerifyError::bad_payload
  bad_claims,             ///< VerifyError::bad_claims
  expired,                ///< VerifyError::expired
  not_yet_valid,          ///< VerifyError::not_yet_valid
  revoked,                ///< its `jti` was revoked
  unknown_user,           ///< no user has its email and `user_id` (deleted, or deleted and re-created)
  disabled,               ///< its user is disabled
  rotated,                ///< minted before its user's refresh-token generation changed
};

/// @brief The Rejection for a signer's VerifyError.
inline Rejection rejection_of(VerifyError e) noexcept {
  switch (e) {
    case VerifyError::none: return Rejection::none;
    case VerifyError::too_large: return Rejection::too_large;
    case VerifyError::malformed: return Rejection::malformed;
    case VerifyError::bad_header: return Rejection::bad_header;
    case VerifyError::unsupported_algorithm: return Rejection::unsupported_algorithm;
    case VerifyError::unknown_key: return Rejection::unknown_key;
    case VerifyError::bad_signature: return Rejection::bad_signature;
    case VerifyError::bad_payload: return Rejection::bad_payload;
    case VerifyError::bad_claims: return Rejection::bad_claims;
    case VerifyError::expired: return Rejection::expired;
    case VerifyError::not_yet_valid: return Rejection::not_yet_valid;
  }
  return Rejection::malformed;
}

/// @brief A short, stable, lower-case name (the access log's `reason`):
/// VerifyError's names for those reasons, then `revoked`, `unknown_user`,
/// `disabled`, `rotated`.
inline const char* to_string(Rejection r) noexcept {
  switch (r) {
    case Rejection::none: return "none";
    case Rejection::too_large: return "too_large";
    case Rejection::malformed: return "malformed";
    case Rejection::bad_header: return "bad_header";
    case Rejection::unsupported_algorithm: return "unsupported_algorithm";
    case Rejection::unknown_key: return "unknown_key";
    case Rejection::bad_signature: return "bad_signature";
    case Rejection::bad_payload: return "bad_payload";
    case Rejection::bad_claims: return "bad_claims";
    case Rejection::expired: return "expired";
    case Rejection::not_yet_valid: return "not_yet_valid";
    case Rejection::revoked: return "revoked";
    case Rejection::unknown_user: return "unknown_user";
    case Rejection::disabled: return "disabled";
    case Rejection::rotated: return "rotated";
  }
  return "unknown";
}

/// @brief The outcome of an access-token check (token/validate, the guard).
struct TokenCheck {
  bool valid = false;
  /// @brief Why the token was refused (Rejection::none when valid);
  /// to_string() names it. Never the token.
  Rejection rejection = Rejection::none;
};

/// @brief A lock that started: an account locked (`account` is its
/// lower-cased email, known or not) or a client blocked (`client` is its
/// key: the address, or what LockoutPolicy::client_key returned), until
/// `until` (seconds since the epoch, the routes' clock).
struct LockoutEvent {
  enum class Kind { account, client } kind = Kind::account;
  std::string subject;
  std::int64_t until = 0;
};

/// @brief Called by the routes when an account gets locked or a client
/// blocked (Options::on_lockout), on the request's thread, after the lock is
/// in force. Must not throw (what it throws is dropped).
using LockoutHook = std::function<void(const LockoutEvent&)>;

namespace detail {

struct token_check_record {
  const httplib::Request* request = nullptr;
  TokenCheck check;
};

inline token_check_record& current_token_check() noexcept {
  static thread_local token_check_record record;
  return record;
}

/// @brief Records @p check as the outcome for @p req on this thread.
inline void record_token_check(const httplib::Request& req, TokenCheck check) noexcept {
  token_check_record& r = current_token_check();
  r.request = &req;
  r.check = check;
}

}  // namespace detail

/// @brief The outcome of the access-token check the security routes (or the
/// guard) made for @p req, and forgets it; nothing when they checked no
/// token for it. Call it from the host's logger (httplib calls the logger on
/// the thread that ran the handler): cpp-httplib's Response has no field for
/// such data that would not reach the client, so the outcome waits in a
/// thread-local slot tagged with the request. Taking it clears the slot, so
/// a logger that calls this for every request never sees a stale outcome.
inline std::optional<TokenCheck> take_token_check(const httplib::Request& req) noexcept {
  detail::token_check_record& r = detail::current_token_check();
  if (r.request != &req) return std::nullopt;
  r.request = nullptr;
  return r.check;
}

}  // namespace iwsec
// ----- end iwsec/observe.hpp -----
// ----- begin iwsec/audit.hpp -----
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
// ----- end iwsec/audit.hpp -----
// ----- begin iwsec/options.hpp -----
/// @file
/// @brief Options for mount_security_routes; every field has a sane default.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>


namespace iwsec {

/// @brief How the security routes behave. A default-constructed Options is
/// what `mount_security_routes(server, users, signer)` uses.
struct Options {
  /// @brief Lifetime of each access token (`exp` = `iat` + this).
  std::chrono::seconds token_lifetime{900};

  /// @brief Clock skew tolerated when checking `exp`, `nbf` and `iat`.
  std::chrono::seconds leeway{0};

  /// @brief Source of "now"; tests inject their own.
  Clock clock = system_now;

  /// @brief Where revoked access tokens are kept. Null: an in-memory store
  /// owned by the routes (revocations then do not survive a restart; pass a
  /// JournalRevocationStore for that).
  std::shared_ptr<RevocationStore> revocations;

  /// @brief Most outstanding (unexpired) revocations kept for one user.
  /// Revoking past it bumps the user's refresh-token generation instead:
  /// every access token of theirs ends at once, the refresh token keeps
  /// working, and no client can grow the revocation store (or its journal)
  /// without bound. At least 1.
  std::size_t max_revocations_per_user = 1000;

  /// @brief Base of the `help` link in error envelopes: `<base>/<iw_code>`.
  std::string help_url_base = "https://docs.infoworks.io/api/errors";

  /// @brief The realm named in `WWW-Authenticate` challenges.
  std::string realm = "iwsec";

  /// @brief PBKDF2 rounds spent on a login for an unknown email, so it costs
  /// what a wrong password costs. Match the rounds your users' hashes use.
  std::uint32_t password_rounds = default_pbkdf2_rounds;

  /// @brief Longest `Authorization` header value accepted; longer is a 400.
  std::size_t max_authorization_bytes = 4096;

  /// @brief Password checks (PBKDF2) running at once; 0: one per core. The
  /// others wait in a queue of max_queued_hashes; past that a login gets 503
  /// with `Retry-After` (not counted by the lockout), so a login storm
  /// cannot take the cores from token validations. See HashingGate.
  std::size_t max_concurrent_hashes = 0;

  /// @brief Password checks that may wait for a turn.
  std::size_t max_queued_hashes = 64;

  /// @brief Brute-force defence (on by default, Keycloak's figures): failed
  /// logins and refresh-token exchanges counted per account and per client,
  /// answered 429 with `Retry-After` while locked. See LockoutPolicy.
  LockoutPolicy lockout;

  /// @brief Where the routes count what they do (see Metrics). Null: a
  /// Metrics of their own, still readable through SecurityRoutes::metrics().
  std::shared_ptr<Metrics> metrics;

  /// @brief Called when an account gets locked or a client blocked (e.g. to
  /// log it). Empty: nothing is called.
  LockoutHook on_lockout;

  /// @brief Runs at the start of every security route and guard check,
  /// before any token is signed or verified: where a host keeps its signer's
  /// keys in step with a key file, e.g. `[&] { keyring_file.refresh(signer); }`
  /// (see keyring.hpp). May throw StateUnavailable (answered 503). Null: nothing.
  std::function<void()> refresh_keys;

  /// @brief Where the lockout counts live. Null: a LockoutTracker made from
  /// `lockout` (in process memory). A cluster backend passes its shared
  /// counter here (see iwsec/postgres/backend.hpp); `lockout.client_key`
  /// still names the client either way.
  std::shared_ptr<Lockout> lockout_state;

  /// @brief How long a refresh token works after it was issued (User::
  /// refresh_token_issued_at: add-user, set-password, rotations). An expired
  /// one is answered like an unknown one (406) and counts as a failure.
  /// 0: refresh tokens do not expire.
  std::chrono::seconds refresh_token_lifetime{0};

  /// @brief Receives every audit event (logins, exchanges, revocations,
  /// rotations, locks; see AuditEvent) on the request's thread. Empty:
  /// nothing is built or called.
  AuditHook on_audit;
};

}  // namespace iwsec
// ----- end iwsec/options.hpp -----
// ----- begin iwsec/routes.hpp -----
/// @brief mount_security_routes: the five `/v3/security` endpoints on a host's httplib::Server, and a guard for the host's own routes.
/// @file

#include <chrono>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <httplib.h>

// ----- begin iwsec/detail/http.hpp -----
/// @file
/// @brief HTTP plumbing of the security routes: reading `Authorization`
/// (RFC 7617, RFC 6750) and writing Infoworks-shaped JSON answers.

#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include <httplib.h>


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
// ----- end iwsec/detail/http.hpp -----
// ----- begin iwsec/detail/request_body.hpp -----
/// @file
/// @brief Request bodies on the library's routes: which requests announce
/// one, and how to answer them so that the connection is closed.
///
/// Why this matters with cpp-httplib 0.11: it never reads a body announced
/// on GET, HEAD or OPTIONS, nor a chunked body on DELETE, so whatever follows
/// the headers would be parsed as the next request on the connection (a
/// request smuggled inside a body gets its own answer). It also ignores a
/// `Connection: close` set by a handler. The only way a handler can make it
/// close the connection is a write that "fails": the answer is served by a
/// content provider that writes the whole body and then reports failure, so
/// the client gets the full answer and then the end of the connection, and
/// nothing after the headers is ever parsed.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <httplib.h>


namespace iwsec {
namespace detail {

/// @brief What a request's framing says about its body.
enum class request_body {
  none,            ///< no body: no Transfer-Encoding, no or a zero Content-Length
  with_length,     ///< Content-Length > 0
  unusable_frame,  ///< any Transfer-Encoding, or a Content-Length that is not one decimal number
};

/// @brief Classifies the body @p req announces (headers only; httplib may
/// or may not have read it); *@p has_length (if given): whether it has a
/// Content-Length header. One pass over the headers, no copies: it runs
/// twice on every request of iwsec-server.
inline request_body announced_body(const httplib::Request& req, bool* has_length = nullptr) {
  std::size_t lengths = 0;
  const std::string* value = nullptr;  // the first Content-Length, as get_header_value gives it
  bool transfer_encoding = false;
  for (const auto& header : req.headers) {
    const std::string& name = header.first;
    if (name.size() == 17 && iequals(name, "Transfer-Encoding")) {
      transfer_encoding = true;
    } else if (name.size() == 14 && iequals(name, "Content-Length") && lengths++ == 0) {
      value = &header.second;
    }
  }
  if (has_length) *has_length = lengths != 0;
  if (transfer_encoding) return request_body::unusable_frame;
  if (lengths == 0) return request_body::none;
  if (lengths > 1) return request_body::unusable_frame;
  std::string_view v(*value);
  while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
  if (v.empty() || v.size() > 19) return request_body::unusable_frame;
  bool zero = true;
  for (const char c : v) {
    if (c < '0' || c > '9') return request_body::unusable_frame;
    zero = zero && c == '0';
  }
  return zero ? request_body::none : request_body::with_length;
}

/// @brief announced_body(), except that a POST, PUT, PATCH or PRI without
/// Content-Length counts as a body of unusable framing: cpp-httplib 0.11
/// reads such a body until the connection ends, into memory, with no limit.
inline request_body framed_body(const httplib::Request& req) {
  bool has_length = false;
  const request_body body = announced_body(req, &has_length);
  if (body != request_body::none || has_length) return body;
  const std::string& m = req.method;
  return m == "POST" || m == "PUT" || m == "PATCH" || m == "PRI" ? request_body::unusable_frame : request_body::none;
}

/// @brief Whether cpp-httplib 0.11 leaves the body of @p req unread on the
/// connection (so its bytes would be taken for the next request): any body
/// on GET, HEAD and OPTIONS, and any framing it does not decode before the
/// handler runs (Transfer-Encoding on DELETE, anything but plain `chunked`).
inline bool body_left_unread(const httplib::Request& req) {
  const request_body body = announced_body(req);
  if (body == request_body::none) return false;
  if (req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS") return true;
  if (!req.has_header("Transfer-Encoding")) return body == request_body::unusable_frame;
  return req.method == "DELETE" || req.get_header_value_count("Transfer-Encoding") != 1 ||
         !iequals(req.get_header_value("Transfer-Encoding"), "chunked");
}

/// @brief Answers @p status with the JSON @p body and `Connection: close`,
/// and makes httplib close the connection after writing it (see the file
/// comment). A HEAD request gets the headers only; httplib then keeps the
/// connection, which only the server's own connection handling can change.
inline void send_json_and_close(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_header("Connection", "close");
  auto text = std::make_shared<const std::string>(body);
  res.set_content_provider(text->size(), json_content_type,
                           [text](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                             if (offset < text->size()) sink.write(text->data() + offset, length);
                             return false;  // "failed": httplib closes the connection
                           });
}

/// @brief The refusal of a request body on a route that takes none: 413 for
/// a Content-Length body, 400 for any other framing, in the error envelope,
/// connection closed.
inline void refuse_body(httplib::Response& res, request_body body, std::string_view help_base) {
  const bool too_large = body == request_body::with_length;
  res.headers.clear();
  send_json_and_close(res, too_large ? 413 : 400,
                      error_envelope("Security Client Errors",
                                     too_large ? "Payload Too Large: this endpoint takes no request body"
                                               : "Bad Request: this endpoint takes no request body",
                                     "IW10006", help_base));
}

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/request_body.hpp -----
// ----- begin iwsec/detail/verified_token_cache.hpp -----
/// @brief detail::verified_token_cache: the claims of access tokens that already verified, by their exact bytes.
/// @file

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>


namespace iwsec {
namespace detail {

/// @brief The claims of access tokens that passed Signer::verify, by their
/// exact bytes and the signer's key version, so that a client presenting the
/// same token again is not verified again: under one key version the same
/// bytes verify the same way (a key set never changes; replace_keys makes a
/// new version, and every entry of an older one misses, so a retired key's
/// tokens stop validating at once), and only the lifetime depends on the
/// time of the check. A hit
/// re-checks it: now < exp + leeway, and now is not earlier than the time of
/// the verification (so `nbf` and `iat`, already satisfied then, still are;
/// after the clock went back the token is verified again). Revocation and
/// the user's status are never cached. Only verified tokens get in, so
/// forged ones cannot fill it; a fixed number of slots bounds its memory.
///
/// Two levels, so that many connections presenting one hot token are not
/// serialised on one slot: each thread first looks in a few entries of its
/// own (a private copy of the claims, so a hit writes no shared memory, not
/// even a reference count), then in the shared slots (a mutex per set of
/// them); a token that hits there twice in a row is copied into the thread's
/// own entries. The shared slots are grouped in sets of `ways` (a token may
/// sit in any slot of the set its hash picks, the oldest stored giving way):
/// with one slot per hash, two live tokens of one slot would push each other
/// out on every presentation (with 1 000 tokens in 1 024 slots, six in ten
/// would). Entries are tagged with the cache
/// they belong to (an id never reused) and with its epoch: invalidate()
/// (e.g. when the signer's key set changes) makes every entry of both levels
/// miss; an entry stored under an older epoch than the one its verification
/// began in is never served.
class verified_token_cache {
 public:
  static constexpr std::size_t slot_count = 4096;  // a power of two
  static constexpr std::size_t ways = 4;           // slots per set, a power of two
  static constexpr std::size_t thread_slots = 4;   // per thread and cache, a power of two
  static constexpr std::size_t max_token_bytes = 2048;

  verified_token_cache() : sets_(new set[set_count]), id_(next_id()) {
    random_bytes(reinterpret_cast<unsigned char*>(&seed_), sizeof seed_);
  }
  verified_token_cache(const verified_token_cache&) = delete;
  verified_token_cache& operator=(const verified_token_cache&) = delete;

  /// @brief The epoch to pass to store() for a verification that starts now.
  std::uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }

  /// @brief Forgets every token (both levels, every thread) at once.
  void invalidate() noexcept { epoch_.fetch_add(1, std::memory_order_acq_rel); }

  /// @brief The cached claims of exactly @p token, if they are still within
  /// their lifetime at @p now.
  std::shared_ptr<const VerifiedToken> find(std::string_view token, std::int64_t now, std::int64_t leeway) const {
    if (token.size() > max_token_bytes) return nullptr;
    const std::uint64_t hash = hash_of(token);
    const std::uint64_t current = epoch();
    thread_entry& mine = thread_entries()[static_cast<std::size_t>(hash) & (thread_slots - 1)];
    // Compared in constant time: a near miss must not tell how near.
    if (!(mine.claims && mine.owner == id_ && mine.epoch == current && same_bytes(mine.token, token))) {
      set& s = set_of(hash);
      std::shared_ptr<const VerifiedToken> shared;
      std::int64_t verified_at = 0;
      {
        Lock lock(s.mutex);
        const slot* hit = nullptr;
        for (const slot& e : s.slots)
          if (e.claims && e.hash == hash && e.epoch == current && same_bytes(e.token, token)) hit = &e;
        if (!hit) return nullptr;
        shared = hit->claims;
        verified_at = hit->verified_at;
      }
      // Copied into this thread's entry only when the same token comes
      // twice in a row here: many distinct tokens then cost no copies.
      if (mine.candidate != hash || mine.candidate_owner != id_) {
        mine.candidate = hash;
        mine.candidate_owner = id_;
        if (now < verified_at || now >= shared->expires_at() + leeway) return nullptr;
        return shared;
      }
      mine.token.assign(token.data(), token.size());
      mine.claims = std::make_shared<const VerifiedToken>(*shared);  // this thread's own copy
      mine.verified_at = verified_at;
      mine.owner = id_;
      mine.epoch = current;
    }
    if (now < mine.verified_at || now >= mine.claims->expires_at() + leeway) return nullptr;
    return mine.claims;
  }

  /// @brief Remembers that @p token verified at @p verified_at with @p
  /// claims, in a verification that began in @p epoch (from epoch()).
  void store(std::string_view token, std::shared_ptr<const VerifiedToken> claims, std::int64_t verified_at,
             std::uint64_t epoch) {
    if (token.size() > max_token_bytes) return;
    const std::uint64_t hash = hash_of(token);
    set& s = set_of(hash);
    Lock lock(s.mutex);
    if (epoch != this->epoch()) return;  // invalidated meanwhile: verified under what may be gone
    // The token's own slot, else a free or stale one, else the oldest stored.
    slot* target = nullptr;
    for (slot& e : s.slots)
      if (e.claims && e.hash == hash && e.epoch == epoch && same_bytes(e.token, token)) target = &e;
    for (std::size_t i = 0; !target && i < ways; ++i)
      if (!s.slots[i].claims || s.slots[i].epoch != epoch) target = &s.slots[i];
    if (!target)
      target = &*std::min_element(s.slots, s.slots + ways,
                                  [](const slot& a, const slot& b) { return a.stored < b.stored; });
    target->token.assign(token.data(), token.size());
    target->claims = std::move(claims);
    target->verified_at = verified_at;
    target->epoch = epoch;
    target->hash = hash;
    target->stored = ++s.stores;
  }

 private:
  static constexpr std::size_t set_count = slot_count / ways;

  struct slot {
    std::string token;
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
    std::uint64_t epoch = 0;
    std::uint64_t hash = 0;
    std::uint64_t stored = 0;  // when, in the set's stores: the oldest gives way
  };

  struct set {
    Mutex mutex;
    std::uint64_t stores IWSEC_GUARDED_BY(mutex) = 0;
    slot slots[ways] IWSEC_GUARDED_BY(mutex);
  };

  set& set_of(std::uint64_t hash) const noexcept {
    return sets_[static_cast<std::size_t>(hash >> 32) & (set_count - 1)];
  }

  struct thread_entry {
    std::uint64_t owner = 0;  // the id_ of the cache it belongs to; 0 for none
    std::uint64_t epoch = 0;
    std::string token;
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
    std::uint64_t candidate = 0;  // hash of the last token that missed here
    std::uint64_t candidate_owner = 0;
  };

  // This thread's entries, shared by every cache (tagged by owner).
  static thread_entry* thread_entries() {
    static thread_local thread_entry entries[thread_slots];
    return entries;
  }

  static std::uint64_t next_id() noexcept {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // Equality in time that depends only on the lengths, a word at a time
  // (CRYPTO_memcmp goes byte by byte: 7 times slower on a 330-byte token).
  static bool same_bytes(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    std::uint64_t diff = 0;
    std::size_t i = 0;
    for (; i + 8 <= a.size(); i += 8) {
      std::uint64_t x, y;
      std::memcpy(&x, a.data() + i, 8);
      std::memcpy(&y, b.data() + i, 8);
      diff |= x ^ y;
    }
    for (; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
  }

  // A seeded hash of the whole token (its time does not depend on its content).
  std::uint64_t hash_of(std::string_view token) const noexcept {
    std::uint64_t h = seed_ ^ (token.size() * 0x9E3779B97F4A7C15ULL);
    std::size_t i = 0;
    for (; i + 8 <= token.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, token.data() + i, 8);
      h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
      h ^= h >> 31;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, token.data() + i, token.size() - i);
    h = (h ^ tail) * 0x94D049BB133111EBULL;
    h ^= h >> 29;
    return h;
  }

  std::unique_ptr<set[]> sets_;
  const std::uint64_t id_;
  std::atomic<std::uint64_t> epoch_{1};
  std::uint64_t seed_ = 0;
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/verified_token_cache.hpp -----
// ----- begin iwsec/hashing_gate.hpp -----
/// @file
/// @brief HashingGate: at most N password hashes at once, a bounded queue
/// behind them, and a refusal when the queue is full.
///
/// A PBKDF2 check costs tens of milliseconds of one core (600 000 rounds),
/// a token validation microseconds. Without a bound, a flood of logins
/// makes one runnable thread per connection, and validations wait behind
/// them for the cores. The security routes pass every password check
/// through one gate (Options::max_concurrent_hashes, max_queued_hashes);
/// a login refused by it gets 503 with `Retry-After` and is not counted by
/// the lockout (no hash ran, so nothing was learnt about the password).

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>


namespace iwsec {

/// @brief A counting gate with a bounded, first-come first-served queue.
/// Thread-safe; outlives every Ticket it hands out.
class HashingGate {
 public:
  /// @brief At most @p concurrent holders at once (0: one per core, as
  /// std::thread::hardware_concurrency() tells, at least 1) and at most
  /// @p queued callers waiting for a turn.
  HashingGate(std::size_t concurrent, std::size_t queued)
      : concurrent_(concurrent != 0 ? concurrent : default_concurrency()), queued_(queued) {}
  HashingGate(const HashingGate&) = delete;
  HashingGate& operator=(const HashingGate&) = delete;

  /// @brief A turn through the gate (or a refusal); released when destroyed.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
    Ticket& operator=(Ticket&& other) noexcept {
      if (this != &other) {
        release();
        gate_ = std::exchange(other.gate_, nullptr);
      }
      return *this;
    }
    ~Ticket() { release(); }
    /// @brief True when admitted; false when the queue was full.
    explicit operator bool() const noexcept { return gate_ != nullptr; }

   private:
    friend class HashingGate;
    explicit Ticket(HashingGate* gate) noexcept : gate_(gate) {}
    void release() noexcept {
      if (gate_) std::exchange(gate_, nullptr)->leave();
    }
    HashingGate* gate_ = nullptr;
  };

  /// @brief Waits for a turn (in arrival order) when all are taken and the
  /// queue has room; a refused Ticket at once when it has none.
  Ticket enter() {
    detail::Lock lock(mutex_);
    if (running_ < concurrent_ && waiting_ == 0) {
      ++running_;
      return Ticket(this);
    }
    if (waiting_ >= queued_) return Ticket(nullptr);
    const std::uint64_t mine = next_ticket_++;
    ++waiting_;
    lock.wait(turn_, [&]() IWSEC_REQUIRES(mutex_) { return running_ < concurrent_ && mine == serving_; });
    --waiting_;
    ++serving_;
    ++running_;
    lock.unlock();
    turn_.notify_all();  // the next in line may fit too
    return Ticket(this);
  }

  /// @brief Holders at most at once.
  std::size_t concurrency() const noexcept { return concurrent_; }
  /// @brief Callers that may wait at most.
  std::size_t queue_capacity() const noexcept { return queued_; }
  /// @brief Holders now.
  std::size_t running() const {
    detail::Lock lock(mutex_);
    return running_;
  }
  /// @brief Callers waiting now.
  std::size_t waiting() const {
    detail::Lock lock(mutex_);
    return waiting_;
  }

  /// @brief One per core (at least 1).
  static std::size_t default_concurrency() noexcept {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores == 0 ? 1 : cores;
  }

 private:
  void leave() noexcept {
    {
      detail::Lock lock(mutex_);
      --running_;
    }
    turn_.notify_all();
  }

  const std::size_t concurrent_;
  const std::size_t queued_;
  mutable detail::Mutex mutex_;
  std::condition_variable turn_;
  std::size_t running_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::size_t waiting_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::uint64_t next_ticket_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::uint64_t serving_ IWSEC_GUARDED_BY(mutex_) = 0;
};

}  // namespace iwsec
// ----- end iwsec/hashing_gate.hpp -----

namespace iwsec {

/// @brief The paths of the security routes, each also answered with one
/// trailing slash appended (Infoworks' own utility scripts call
/// `/v3/security/token/access/`).
inline constexpr const char* security_route_paths[] = {"/v3/security/authenticate", "/v3/security/token/access",
                                                      "/v3/security/token/validate", "/v3/security/token/refresh"};

/// @brief The route @p path names, spelled without the one trailing slash the
/// routes also answer on (`/v3/security/token/access/` gives
/// `/v3/security/token/access`); any other path as it is. For access logs and
/// checks before routing, so that both spellings are one route.
inline std::string_view security_route_path(std::string_view path) noexcept {
  if (path.size() < 2 || path.back() != '/') return path;
  const std::string_view bare = path.substr(0, path.size() - 1);
  for (const char* route : security_route_paths)
    if (bare == route) return bare;
  return path;
}

namespace detail {

// The error answers of the security routes, one per row of docs/endpoints.md "Every status and iw_code".
enum class failure { bad_request, no_credentials, invalid_token, rejected, internal, unavailable };

/// @brief The state and the logic behind the routes, shared by every handler
/// and by the guard (so they see the same revocations).
class security_core {
 public:
  security_core(UserStore& users, const Signer& signer, Options options)
      : users_(users),
        signer_(signer),
        options_(std::move(options)),
        hashing_(options_.max_concurrent_hashes, options_.max_queued_hashes) {
    validate_options(options_);
    if (!options_.clock) options_.clock = system_now;
    lockout_ = options_.lockout_state ? options_.lockout_state : std::make_shared<LockoutTracker>(options_.lockout);
    revocations_ = options_.revocations ? options_.revocations
                                        : std::make_shared<MemoryRevocationStore>(options_.clock);
    metrics_ = options_.metrics ? options_.metrics : std::make_shared<Metrics>();
  }

  /// @brief Refuses options that would silently break the contract.
  static void validate_options(const Options& o) {
    constexpr std::int64_t max_seconds = max_duration_seconds;
    if (o.token_lifetime.count() <= 0 || o.token_lifetime.count() > max_seconds)
      throw invalid_option("iwsec: Options::token_lifetime must be 1 s to 366 days");
    if (o.leeway.count() < 0 || o.leeway.count() > max_seconds)
      throw invalid_option("iwsec: Options::leeway must be 0 s to 366 days");
    if (o.password_rounds < 1 || o.password_rounds > Pbkdf2Hash::max_rounds)
      throw invalid_option("iwsec: Options::password_rounds out of range");
    if (o.max_revocations_per_user < 1)
      throw invalid_option("iwsec: Options::max_revocations_per_user must be at least 1");
    if (o.max_authorization_bytes < 64)
      throw invalid_option("iwsec: Options::max_authorization_bytes below 64");
    if (const char* error = lockout_policy_error(o.lockout))
      throw invalid_option(std::string("iwsec: Options::lockout.") + error);
    if (o.refresh_token_lifetime.count() < 0 || o.refresh_token_lifetime.count() > max_refresh_token_lifetime_seconds)
      throw invalid_option("iwsec: Options::refresh_token_lifetime must be 0 s (none) to 10 x 366 days");
  }

  /// @brief Hands one audit event to Options::on_audit (nothing is built
  /// when it is unset). @p req: the HTTP request it came from, if any.
  void audit(const httplib::Request* req, const char* event, std::string_view email, const std::string& user_id,
             const char* result, const char* reason, std::int64_t until = 0) const {
    if (!options_.on_audit) return;
    AuditEvent e;
    e.time_ms = audit_now_ms();
    e.event = event;
    e.email = audit_text(ascii_lower(email));
    e.user_id = user_id;
    if (req) {
      e.client = client_of(*req);
      const std::string& id = req->get_header_value("X-Request-Id");
      if (sane_request_id(id)) e.request_id = id;
    }
    if (result) e.result = result;
    if (reason) e.reason = reason;
    e.until = until;
    try {
      options_.on_audit(e);
    } catch (...) {
    }
  }

  /// @brief Text a client sent, fit for a JSON line: at most 254 bytes,
  /// bytes that are not valid UTF-8 as '?'.
  static std::string audit_text(std::string text) {
    if (text.size() > 254) text.resize(254);
    if (!is_valid_utf8(text))
      for (char& c : text)
        if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    return text;
  }

  RevocationStore& revocations() const { return *revocations_; }
  Lockout& lockout() const { return *lockout_; }
  Metrics& metrics() const { return *metrics_; }
  HashingGate& hashing_gate() const { return hashing_; }
  const Options& options() const { return options_; }

  std::int64_t now() const { return options_.clock(); }

  /// @brief Options::refresh_keys, when set.
  void refresh_keys() const {
    if (options_.refresh_keys) options_.refresh_keys();
  }

  /// @brief Full access check: signature, claims, times, revocation, user
  /// still enabled, the token's `user_id` still the holder of its email, and
  /// of the same refresh-token generation. Null when any fails, and then
  /// *@p rejection (if given) says which.
  std::shared_ptr<const VerifiedToken> check_access(std::string_view token, Rejection* rejection = nullptr) const {
    const auto refuse = [rejection](Rejection why) -> std::shared_ptr<const VerifiedToken> {
      if (rejection) *rejection = why;
      return nullptr;
    };
    const std::int64_t at = now();
    const auto leeway = static_cast<std::int64_t>(options_.leeway.count());
    // Tokens verified under a key set that was since replaced leave the cache
    // before any lookup: the first check that sees the new version empties it.
    const std::uint64_t keys = signer_.key_version();
    if (keys != cached_key_version_.load(std::memory_order_acquire)) {
      verified_tokens_.invalidate();
      cached_key_version_.store(keys, std::memory_order_release);
    }
    const std::uint64_t epoch = verified_tokens_.epoch();
    auto t = verified_tokens_.find(token, at, leeway);
    if (!t) {
      auto result = signer_.verify(token, at, leeway);
      if (!result) return refuse(rejection_of(result.error()));
      t = std::make_shared<const VerifiedToken>(result.token());
      if (result.key_version() == keys) verified_tokens_.store(token, t, at, epoch);
    }
    if (revocations_->is_revoked(t->jti())) return refuse(Rejection::revoked);
    const auto status = users_.status_of(t->email());
    // A user deleted and re-created under the same email is another user.
    if (!status || status->user_id != t->user_id()) return refuse(Rejection::unknown_user);
    if (status->disabled) return refuse(Rejection::disabled);
    if (status->refresh_generation != t->refresh_generation()) return refuse(Rejection::rotated);
    return t;
  }

  /// @brief check_access() for @p req, counted (validation or guard) and
  /// recorded for take_token_check().
  std::shared_ptr<const VerifiedToken> observed_check(const httplib::Request& req, std::string_view token,
                                                      bool guard) const {
    Rejection rejection = Rejection::none;
    auto t = check_access(token, &rejection);
    if (guard) {
      metrics_->count_guard_check(t != nullptr);
    } else {
      metrics_->count_validation(t != nullptr);
    }
    record_token_check(req, TokenCheck{t != nullptr, t ? Rejection::none : rejection});
    return t;
  }

  /// @brief Counts a failed credential check, and reports the lock or block
  /// it started (to the metrics and Options::on_lockout).
  void attempt_failed(LockoutTracker::Attempt& attempt, std::optional<std::string_view> email,
                      const std::string& client) const {
    const LockTransition started = attempt.failed(now());
    if (!started) return;
    const auto report = [this](LockoutEvent::Kind kind, std::string subject, std::int64_t until) {
      metrics_->count_lockout(kind == LockoutEvent::Kind::account);
      if (options_.on_audit) {
        const bool account = kind == LockoutEvent::Kind::account;
        AuditEvent e;
        e.time_ms = audit_now_ms();
        e.event = "lock";
        (account ? e.email : e.client) = account ? audit_text(subject) : subject;
        e.result = "locked";
        e.reason = account ? "account_failures" : "client_failures";
        e.until = until;
        try {
          options_.on_audit(e);
        } catch (...) {
        }
      }
      if (!options_.on_lockout) return;
      try {
        options_.on_lockout(LockoutEvent{kind, std::move(subject), until});
      } catch (...) {
      }
    };
    if (started.account_locked_until && email)
      report(LockoutEvent::Kind::account, LockoutTracker::normalise_account(*email), started.account_locked_until);
    if (started.client_blocked_until) report(LockoutEvent::Kind::client, client, started.client_blocked_until);
  }

  /// @brief check_access() as a copy of the claims.
  std::optional<VerifiedToken> check_access_token(std::string_view token) const {
    const auto t = check_access(token);
    if (!t) return std::nullopt;
    return *t;
  }

  // ---- answers --------------------------------------------------------------

  void fail(httplib::Response& res, failure f, const char* challenge_scheme) const {
    std::string details, code;
    int status = 500;
    switch (f) {
      case failure::bad_request:
        status = 400;
        code = "IW10006";
        details = "Bad Request: unusable Authorization header or query parameter";
        break;
      case failure::no_credentials:
        status = 401;
        code = "IW10004";
        details = "Authentication Required: missing or unsupported credentials";
        break;
      case failure::invalid_token:
        status = 401;
        code = "IW10004";
        details = "Authentication Required: invalid or expired access token";
        break;
      case failure::rejected:
        status = 406;
        code = "IW10031";
        details = "Authentication Failed: Incorrect user credentials";
        break;
      case failure::internal:
        status = 500;
        code = "IW10002";
        details = "Internal Server Error";
        break;
      case failure::unavailable:
        status = 503;
        code = "IW10002";
        details = "Service Unavailable: shared state cannot be read, retry later";
        if (!res.has_header("Retry-After")) res.set_header("Retry-After", "1");
        break;
    }
    if (status == 401) res.set_header("WWW-Authenticate", challenge(challenge_scheme, f == failure::invalid_token));
    send_json(res, status,
              error_envelope(status >= 500 ? "Security Server Errors" : "Security Client Errors", details, code,
                             options_.help_url_base));
  }

  std::string challenge(const char* scheme, bool invalid_token) const {
    std::string c = scheme;
    c += " realm=";
    append_json_string(c, options_.realm);
    if (std::string_view(scheme) == "Basic") c += ", charset=\"UTF-8\"";
    if (invalid_token) c += ", error=\"invalid_token\"";
    return c;
  }

  void send_token(httplib::Response& res, const std::string& token, const std::string* user_id) const {
    std::string body = "{\"message\":\"Authentication Success\",\"result\":{\"authentication_token\":";
    append_json_string(body, token);
    body += ",\"is_authenticated\":true";
    if (user_id) {
      body += ",\"user_id\":";
      append_json_string(body, *user_id);
    }
    body += "}}";
    send_json(res, 200, body);
  }

  std::string mint(const User& user, TokenAction action) const {
    AccessClaims claims;
    claims.email = user.email;
    claims.action = action;
    claims.issued_at = now();
    claims.expires_at = claims.issued_at + static_cast<std::int64_t>(options_.token_lifetime.count());
    claims.refresh_generation = user.refresh_generation;
    claims.user_id = user.user_id;
    return signer_.sign(claims);
  }

  /// @brief 429 with `Retry-After` (whole seconds, at least 1): the same
  /// answer for a locked account, a blocked client, a known or unknown email.
  void too_many_attempts(httplib::Response& res, std::int64_t wait_seconds) const {
    res.set_header("Retry-After", std::to_string(wait_seconds < 1 ? 1 : wait_seconds));
    send_json(res, 429,
              error_envelope("Security Client Errors", "Authentication Failed: Too many failed attempts, retry later",
                             "IW10031", options_.help_url_base));
  }

  /// @brief The client a request's failures are counted under: the host's
  /// LockoutPolicy::client_key, or the peer address.
  std::string client_of(const httplib::Request& req) const {
    return options_.lockout.client_key ? options_.lockout.client_key(req) : client_address_key(req.remote_addr);
  }

  // ---- credentials ----------------------------------------------------------

  /// @brief The credentials of the @p wanted scheme, or nothing after
  /// answering: 400 for a duplicate or over-long header, 401 otherwise.
  std::optional<std::string> credentials(const httplib::Request& req, httplib::Response& res,
                                         authorization::kind wanted, const char* scheme) const {
    const auto view = credentials_view(req, res, wanted, scheme);
    if (!view) return std::nullopt;
    return std::string(*view);
  }

  /// @brief credentials() without a copy: a view into @p req's header.
  std::optional<std::string_view> credentials_view(const httplib::Request& req, httplib::Response& res,
                                                   authorization::kind wanted, const char* scheme) const {
    const auto auth = read_authorization(req, options_.max_authorization_bytes);
    if (auth.type == authorization::kind::duplicate || auth.type == authorization::kind::too_long) {
      fail(res, failure::bad_request, scheme);
      return std::nullopt;
    }
    if (auth.type != wanted) {
      fail(res, failure::no_credentials, scheme);
      return std::nullopt;
    }
    return auth.credentials;
  }

  // ---- Basic username:password ---------------------------------------------

  /// @brief Checks Basic credentials; the user on success. Always spends at
  /// least the configured rounds of password hashing, whether or not the
  /// email exists (a success with a stored hash of other rounds also hashes
  /// the password again, and stores that), except while the
  /// account (its lower-cased email, known or not) is locked or the client
  /// blocked: then a 429 before any hashing.
  std::optional<User> password_login(const httplib::Request& req, httplib::Response& res,
                                     const char* audit_event = "login") const {
    const auto basic = credentials(req, res, authorization::kind::basic, "Basic");
    if (!basic) return std::nullopt;
    const auto pair = parse_basic_credentials(*basic);
    if (!pair) {
      fail(res, failure::bad_request, "Basic");
      return std::nullopt;
    }
    const std::string_view email = pair->user;
    const std::string_view password = pair->password;
    const std::string client = client_of(req);
    auto attempt = lockout_->begin(email, client, now());
    if (!attempt) {
      metrics_->count_login(CheckResult::locked);
      audit(&req, audit_event, email, std::string(), "locked", "locked");
      too_many_attempts(res, attempt.wait());
      return std::nullopt;
    }
    // After the lockout's admission (a locked account costs no queue slot),
    // before any hash: a refusal throws past `attempt`, which is then
    // released uncounted (no hash ran, nothing was learnt).
    const auto turn = hashing_.enter();
    if (!turn) throw StateUnavailable("iwsec: the password hashing queue is full", 1);
    auto user = email.empty() ? std::nullopt : users_.find_by_email(email);
    const std::uint32_t rounds = options_.password_rounds;
    bool ok, password_ok = false;
    if (user && Pbkdf2Hash::parse(user->password_hash)) {
      // At least the configured rounds, also for a hash with fewer (docs/api.md).
      password_ok = verify_password(password, user->password_hash, rounds);
      ok = password_ok && !user->disabled;
    } else {
      // Unknown email (or a stored hash that cannot match): the same work as a wrong password.
      ok = verify_password_decoy(password, rounds);
    }
    if (ok && password_needs_rehash(user->password_hash, rounds)) {
      // Stored hashes converge on the configured rounds (passlib's
      // needs_update); the sessions stay. A failed write leaves the login
      // standing: the next one tries again.
      const std::string upgraded = hash_password(password, rounds);
      try {
        upgrade_password_hash(users_, user->email, user->user_id, user->password_hash, upgraded);
      } catch (...) {
      }
    }
    if (!ok) {
      attempt_failed(attempt, email, client);
      metrics_->count_login(CheckResult::failure);
      audit(&req, audit_event, email, user ? user->user_id : std::string(), "failure",
            password_ok ? "disabled" : "bad_credentials");
      fail(res, failure::rejected, "Basic");
      return std::nullopt;
    }
    attempt.succeeded(now());
    metrics_->count_login(CheckResult::success);
    // A rotation is audited once its write is done.
    if (std::strcmp(audit_event, "login") == 0) audit(&req, audit_event, user->email, user->user_id, "success", nullptr);
    return user;
  }

  // ---- the five endpoints --------------------------------------------------

  void authenticate(const httplib::Request& req, httplib::Response& res) const {
    if (req.params.count("service_id")) {
      const auto range = req.params.equal_range("service_id");
      const std::string& value = range.first->second;
      bool numeric = req.params.count("service_id") == 1 && !value.empty() && value.size() <= 18;
      for (char c : value) numeric = numeric && c >= '0' && c <= '9';
      if (!numeric) return fail(res, failure::bad_request, "Basic");
    }
    const auto user = password_login(req, res);
    if (!user) return;
    send_token(res, mint(*user, TokenAction::password), &user->user_id);
  }

  void access_token(const httplib::Request& req, httplib::Response& res) const {
    const auto refresh_token = credentials(req, res, authorization::kind::basic, "Basic");
    if (!refresh_token) return;
    // Counted per client only: a refresh token names no account until it
    // matches, and a 256-bit token is not guessable, so an account lock
    // (which would let anyone knowing an email cut off that user's SDK
    // sessions) buys nothing here.
    const std::string client = client_of(req);
    auto attempt = lockout_->begin(std::nullopt, client, now());
    if (!attempt) {
      metrics_->count_exchange(CheckResult::locked);
      audit(&req, "token_exchange", {}, std::string(), "locked", "locked");
      return too_many_attempts(res, attempt.wait());
    }
    const auto user = users_.find_by_refresh_token_hash(refresh_token_hash(*refresh_token));
    // Past Options::refresh_token_lifetime: answered like an unknown token.
    const std::int64_t lifetime = static_cast<std::int64_t>(options_.refresh_token_lifetime.count());
    const bool expired = user && lifetime > 0 && now() >= user->refresh_token_issued_at + lifetime;
    if (!user || user->disabled || expired) {
      attempt_failed(attempt, std::nullopt, client);
      metrics_->count_exchange(CheckResult::failure);
      audit(&req, "token_exchange", user ? std::string_view(user->email) : std::string_view(),
            user ? user->user_id : std::string(), "failure",
            !user ? "unknown_refresh_token" : user->disabled ? "disabled" : "expired_refresh_token");
      return fail(res, failure::rejected, "Basic");
    }
    attempt.succeeded(now());
    metrics_->count_exchange(CheckResult::success);
    audit(&req, "token_exchange", user->email, user->user_id, "success", nullptr);
    send_token(res, mint(*user, TokenAction::refresh_token), nullptr);
  }

  void revoke_access_token(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const auto result = signer_.verify_ignoring_lifetime(*token);
    if (!result) {
      audit(&req, "revocation", {}, std::string(), "failure", "invalid_token");
      return fail(res, failure::invalid_token, "Bearer");
    }
    const VerifiedToken& t = result.token();
    // Kept until the token would fail verification on its own; an expired
    // token needs no entry, it can never be valid again.
    const std::int64_t usable_until = t.expires_at() + static_cast<std::int64_t>(options_.leeway.count());
    if (usable_until > now()) {
      // Counted per user: past the cap the user's sessions end at once instead.
      const std::string owner = t.user_id().empty() ? "email:" + ascii_lower(t.email()) : t.user_id();
      const auto outcome = revocations_->revoke_for(owner, t.jti(), usable_until, options_.max_revocations_per_user);
      if (outcome == RevokeOutcome::failed) return fail(res, failure::internal, "Bearer");
      if (outcome == RevokeOutcome::limit_reached && !end_sessions_of(t)) return fail(res, failure::internal, "Bearer");
    }
    metrics_->count_revocation();
    audit(&req, "revocation", t.email(), t.user_id(), "success", nullptr);
    send_json(res, 200, "{\"message\":\"Logout Success\",\"result\":\"Token successfully blacklisted\"}");
  }

  /// @brief Ends every access token of @p t's user (a generation bump), so
  /// that @p t is dead without a revocation entry. Nothing to do when @p t
  /// is already dead for good: its user is gone, re-created, or past its
  /// generation. False only when the write failed.
  bool end_sessions_of(const VerifiedToken& t) const {
    const auto current = [&](const std::string& user_id, std::int64_t generation) {
      return user_id == t.user_id() && generation == t.refresh_generation();
    };
    const auto status = users_.status_of(t.email());
    if (!status || !current(status->user_id, status->refresh_generation)) return true;
    const StoreResult written = users_.update_user(t.email(), [&](User& u) {
      if (current(u.user_id, u.refresh_generation)) ++u.refresh_generation;
    });
    return written == StoreStatus::ok || written == StoreStatus::not_found;
  }

  void validate(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials_view(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const bool valid = observed_check(req, *token, false) != nullptr;
    send_json(res, 200, valid ? "{\"message\":\"\",\"result\":{\"is_valid\":true}}"
                              : "{\"message\":\"\",\"result\":{\"is_valid\":false}}");
  }

  void rotate_refresh_token(const httplib::Request& req, httplib::Response& res) const {
    const auto user = password_login(req, res, "refresh_rotation");
    if (!user) return;
    const auto rotated = iwsec::rotate_refresh_token(users_, user->email, now());
    if (rotated.status == StoreStatus::ok) audit(&req, "refresh_rotation", user->email, user->user_id, "success", nullptr);
    if (rotated.status == StoreStatus::not_found) return fail(res, failure::rejected, "Basic");  // deleted meanwhile
    if (rotated.status != StoreStatus::ok) return fail(res, failure::internal, "Basic");
    std::string body =
        "{\"message\":\"Refresh Token Rotated\",\"result\":\"Successfully Blacklisted Refresh Token.\","
        "\"refresh_token\":";
    append_json_string(body, rotated.refresh_token);
    body += '}';
    send_json(res, 200, body);
  }

  /// @brief cpp-httplib slices the body of a routed answer by the request's
  /// `Range` header (a 206 with half a token, or a 416 with no envelope).
  /// Our answers are whole JSON documents, so the ranges are dropped. The
  /// Request is a mutable object inside httplib, handed to handlers as const.
  static void ignore_ranges(const httplib::Request& req) { const_cast<httplib::Request&>(req).ranges.clear(); }

  /// @brief No security route takes a body: true after answering one (400
  /// or 413, connection closed, so nothing after the headers is parsed).
  bool refused_body(const httplib::Request& req, httplib::Response& res) const {
    const request_body body = announced_body(req);
    if (body == request_body::none) return false;
    refuse_body(res, body, options_.help_url_base);
    return true;
  }

  /// @brief Runs @p body, turning any escaping exception into the 500
  /// envelope (StateUnavailable into the 503 one, with its `Retry-After`):
  /// the host's exception handler is never involved, and no exception text
  /// reaches the client.
  template <typename F>
  void shielded(httplib::Response& res, const char* scheme, F&& body) const {
    try {
      body();
    } catch (const StateUnavailable& e) {
      res.headers.clear();
      res.set_header("Retry-After", std::to_string(e.retry_after()));
      fail(res, failure::unavailable, scheme);
    } catch (...) {
      res.headers.clear();
      fail(res, failure::internal, scheme);
    }
  }

 private:
  UserStore& users_;
  const Signer& signer_;
  Options options_;
  std::shared_ptr<RevocationStore> revocations_;
  std::shared_ptr<Lockout> lockout_;
  std::shared_ptr<Metrics> metrics_;
  mutable HashingGate hashing_;
  mutable verified_token_cache verified_tokens_;
  mutable std::atomic<std::uint64_t> cached_key_version_{0};  // the signer's key set the cache holds tokens of
};

}  // namespace detail

/// @brief What mount_security_routes returns: a handle to the mounted routes'
/// state, used to guard the host's own routes. Cheap to copy; keeps that
/// state alive for as long as any copy (or the server's handlers) exist.
class SecurityRoutes {
 public:
  /// @brief A handler that receives the verified claims of the request's token.
  using GuardedHandler = std::function<void(const httplib::Request&, httplib::Response&, const VerifiedToken&)>;

  /// @brief Wraps @p handler so that it runs only for a request bearing a
  /// valid, unrevoked access token; other requests get the same 401 (or
  /// 400) envelope as the security routes. A body httplib leaves unread on
  /// the connection (any body on GET, HEAD, OPTIONS; a chunked DELETE) gets
  /// 400 or 413 and the connection closed; bodies httplib reads before the
  /// handler (POST, PUT, PATCH, DELETE with Content-Length) are the host's.
  httplib::Server::Handler guard(GuardedHandler handler) const {
    auto core = core_;
    return [core, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      // A body httplib leaves on the connection would be parsed as the next request.
      if (detail::body_left_unread(req)) {
        detail::security_core::ignore_ranges(req);
        return detail::refuse_body(res, detail::announced_body(req), core->options().help_url_base);
      }
      std::shared_ptr<const VerifiedToken> token;
      const auto started = std::chrono::steady_clock::now();
      std::optional<detail::ChangeTracker::Scope> changes(std::in_place);  // closed before the host's handler
      core->shielded(res, "Bearer", [&] {
        core->refresh_keys();
        const auto bearer = core->credentials_view(req, res, detail::authorization::kind::bearer, "Bearer");
        if (bearer && !(token = core->observed_check(req, *bearer, true)))
          core->fail(res, detail::failure::invalid_token, "Bearer");
      });
      changes.reset();
      core->metrics().observe(MetricsRoute::guard, std::chrono::steady_clock::now() - started);
      // Only with a verified token: a fault in the check above (already
      // answered 500) must not run the host's handler on an empty token.
      if (token) {
        handler(req, res, *token);  // the host's own exceptions (and Range handling) stay the host's
      } else {
        detail::security_core::ignore_ranges(req);  // our refusal goes out whole
      }
    };
  }

  /// @brief The same check as guard(), without HTTP: the claims when @p req
  /// bears a valid access token.
  std::optional<VerifiedToken> verify_request(const httplib::Request& req) const {
    const auto auth = detail::read_authorization(req, core_->options().max_authorization_bytes);
    if (auth.type != detail::authorization::kind::bearer) return std::nullopt;
    core_->refresh_keys();
    return core_->check_access_token(auth.credentials);
  }

  /// @brief The revocation store the routes use.
  RevocationStore& revocations() const { return core_->revocations(); }

  /// @brief The brute-force counter the routes use (e.g. to unlock an
  /// account): Options::lockout_state, or the LockoutTracker they made.
  Lockout& lockout() const { return core_->lockout(); }

  /// @brief The routes' counters and latency histograms (Options::metrics,
  /// or their own): serve metrics().render() on the host's metrics route.
  Metrics& metrics() const { return core_->metrics(); }

  /// @brief The gate every password check of the routes passes (e.g. to
  /// read how many wait).
  HashingGate& hashing_gate() const { return core_->hashing_gate(); }

 private:
  friend SecurityRoutes mount_security_routes(httplib::Server&, UserStore&, const Signer&, const Options&);
  explicit SecurityRoutes(std::shared_ptr<detail::security_core> core) : core_(std::move(core)) {}
  std::shared_ptr<detail::security_core> core_;
};

/// @brief Deleted: the routes keep a reference to the signer, so a temporary
/// one would dangle. Keep the Signer alive as long as the server.
SecurityRoutes mount_security_routes(httplib::Server&, UserStore&, Signer&&, const Options& = Options()) = delete;

/// @brief Adds the Infoworks v3 security endpoints under `/v3/security` to
/// @p server. It only adds routes: the host's error, exception, pre-routing
/// handlers and logger stay untouched. @p users and @p signer must outlive
/// the server's use of the routes. Throws std::invalid_argument for options
/// out of range (a non-positive lifetime, a negative leeway, ...).
inline SecurityRoutes mount_security_routes(httplib::Server& server, UserStore& users, const Signer& signer,
                                            const Options& options = Options()) {
  auto core = std::make_shared<detail::security_core>(users, signer, options);
  using member = void (detail::security_core::*)(const httplib::Request&, httplib::Response&) const;
  const auto route = [core](member endpoint, const char* scheme, MetricsRoute name) {
    return [core, endpoint, scheme, name](const httplib::Request& req, httplib::Response& res) {
      const auto started = std::chrono::steady_clock::now();
      // One look at the file-change watch for the keyring and the users file both.
      const detail::ChangeTracker::Scope changes;
      detail::security_core::ignore_ranges(req);
      if (core->refused_body(req, res)) return;
      core->shielded(res, scheme, [&] {
        core->refresh_keys();
        ((*core).*endpoint)(req, res);
      });
      core->metrics().observe(name, std::chrono::steady_clock::now() - started);
    };
  };
  const auto wrong_method = [core](const char* allow) {
    return [core, allow](const httplib::Request& req, httplib::Response& res) {
      detail::security_core::ignore_ranges(req);
      if (core->refused_body(req, res)) return;
      res.set_header("Allow", allow);
      detail::send_json(res, 405,
                        detail::error_envelope("Security Client Errors", "Method Not Allowed", "IW10006",
                                               core->options().help_url_base));
    };
  };

  // httplib tries a method's routes in the order they were added, with a
  // regex match each: the most frequent request comes first. Each pattern
  // takes the path with or without one trailing slash (docs/endpoints.md).
  server.Get("/v3/security/token/validate/?",
             route(&detail::security_core::validate, "Bearer", MetricsRoute::token_validate));
  server.Get("/v3/security/authenticate/?",
             route(&detail::security_core::authenticate, "Basic", MetricsRoute::authenticate));
  server.Get("/v3/security/token/access/?",
             route(&detail::security_core::access_token, "Basic", MetricsRoute::token_access));
  server.Delete("/v3/security/token/access/?",
                route(&detail::security_core::revoke_access_token, "Bearer", MetricsRoute::token_revoke));
  server.Delete("/v3/security/token/refresh/?",
                route(&detail::security_core::rotate_refresh_token, "Basic", MetricsRoute::token_refresh));

  // Other methods on these paths: a 405 in the same envelope, not the host's 404.
  const struct {
    const char* path;
    const char* allow;
  } paths[] = {{"/v3/security/authenticate", "GET"},
               {"/v3/security/token/access", "GET, DELETE"},
               {"/v3/security/token/validate", "GET"},
               {"/v3/security/token/refresh", "DELETE"}};
  for (const auto& p : paths) {
    const std::string pattern = std::string(p.path) + "/?";
    server.Options(pattern, [core, allow = std::string(p.allow) + ", OPTIONS"](const httplib::Request& req,
                                                                               httplib::Response& res) {
      if (core->refused_body(req, res)) return;
      res.status = 204;
      res.set_header("Allow", allow);
    });
    server.Post(pattern, wrong_method(p.allow));
    server.Put(pattern, wrong_method(p.allow));
    server.Patch(pattern, wrong_method(p.allow));
    if (std::string_view(p.allow).find("DELETE") == std::string_view::npos) server.Delete(pattern, wrong_method(p.allow));
    if (std::string_view(p.allow).find("GET") == std::string_view::npos) server.Get(pattern, wrong_method(p.allow));
  }
  return SecurityRoutes(std::move(core));
}

}  // namespace iwsec
// ----- end iwsec/routes.hpp -----
// ----- begin iwsec/hardening.hpp -----
/// @file
/// @brief harden(): safer settings for a host's own httplib::Server, applied
/// only when the host asks (mount_security_routes never changes them).
///
/// cpp-httplib 0.11's defaults are made for trusted networks: no limit on a
/// request body, Nagle's algorithm on, a keep-alive connection closed after 5
/// requests, and one worker thread per open connection from a pool sized by
/// the core count. harden() sets what 0.11 has a knob for. What 0.11 has no
/// knob for (the number of header lines, a deadline for a whole request,
/// connections per client, chunked bodies past the payload limit) needs
/// either the server's own connection handling (iwsec-server has one) or a
/// reverse proxy in front (deploy/nginx/); docs/edge.md says which.

#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string_view>

#include <httplib.h>


namespace iwsec {

/// @brief What harden() sets; every field has a sane default.
struct HardeningOptions {
  /// @brief Longest request body httplib reads (Content-Length framing);
  /// longer is answered 413 by httplib itself. The security routes take no
  /// body at all; this bounds what the host's own routes may receive.
  std::size_t payload_max_bytes = 64 * 1024;

  /// @brief Longest wait for each read of a request (not the whole request).
  std::chrono::seconds read_timeout{5};

  /// @brief Longest wait for each write of an answer.
  std::chrono::seconds write_timeout{5};

  /// @brief Idle time after which a keep-alive connection is closed.
  std::chrono::seconds keep_alive_timeout{5};

  /// @brief Requests served on one connection before it is closed (0.11's
  /// default of 5 makes clients reconnect all the time).
  std::size_t keep_alive_max_requests = 1000;

  /// @brief Turns Nagle's algorithm off (answers are small and latency matters).
  bool tcp_nodelay = true;

  /// @brief Worker threads; 0 keeps the server's own task queue. Each open
  /// connection holds one for its whole life, so this is also the number of
  /// clients served at once.
  std::size_t threads = 64;
};

/// @brief Applies @p options to @p server (before it listens). Throws
/// std::invalid_argument for a zero payload limit, timeout or request count.
inline void harden(httplib::Server& server, const HardeningOptions& options = HardeningOptions()) {
  if (options.payload_max_bytes == 0) throw invalid_option("iwsec: HardeningOptions::payload_max_bytes is 0");
  if (options.read_timeout.count() <= 0 || options.write_timeout.count() <= 0 ||
      options.keep_alive_timeout.count() <= 0)
    throw invalid_option("iwsec: HardeningOptions timeouts must be at least 1 s");
  if (options.keep_alive_max_requests == 0)
    throw invalid_option("iwsec: HardeningOptions::keep_alive_max_requests is 0");
  server.set_payload_max_length(options.payload_max_bytes);
  server.set_read_timeout(options.read_timeout);
  server.set_write_timeout(options.write_timeout);
  server.set_keep_alive_timeout(static_cast<time_t>(options.keep_alive_timeout.count()));
  server.set_keep_alive_max_count(options.keep_alive_max_requests);
  server.set_tcp_nodelay(options.tcp_nodelay);
  if (options.threads > 0) {
    const std::size_t threads = options.threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  }
}

/// @brief For a host's pre-routing handler, on a server none of whose
/// routes takes a request body (as iwsec-server): answers a request that
/// announces one (Content-Length, any Transfer-Encoding, or a POST, PUT,
/// PATCH without Content-Length, which cpp-httplib 0.11 would read until the
/// connection ends) before httplib reads the body: 413 for Content-Length,
/// 400 for any other framing, in the error envelope, and the connection is
/// closed after the answer, so a body costs no memory and its bytes are never
/// parsed as a request. Returns true when it answered.
///
///     server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
///       return iwsec::refuse_request_body(req, res) ? httplib::Server::HandlerResponse::Handled
///                                                   : httplib::Server::HandlerResponse::Unhandled;
///     });
inline bool refuse_request_body(const httplib::Request& req, httplib::Response& res,
                                std::string_view help_url_base = "https://docs.infoworks.io/api/errors") {
  const auto body = detail::framed_body(req);
  if (body == detail::request_body::none) return false;
  detail::refuse_body(res, body, help_url_base);
  return true;
}

}  // namespace iwsec
// ----- end iwsec/hardening.hpp -----
// ----- begin iwsec/access_log.hpp -----
/// @brief AccessLog: one line per request (text or JSON), request ids, lock events, written off the request's thread.
/// @file
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

// ----- begin iwsec/detail/log_writer.hpp -----
/// @brief A log file written by one thread of its own: the access log's and the audit trail's writer.
/// @file
// Callers append whole lines to a bounded in-memory buffer under a short
// lock and never make a write system call; the writer thread takes the buffer as a
// whole (at the latest max_delay after its first line, sooner when half full,
// when flushed or stopping) and writes it with as few write(2) calls as the
// file takes. What a full buffer does is the owner's choice:
//
//   - WhenFull::drop  (the access log): the line is dropped whole and counted
//     (dropped_lines()); the caller never waits for the disk.
//   - WhenFull::block (an audit trail): the caller waits until the writer has
//     made room; no line is ever lost while the file takes writes.
//
// reopen() (SIGHUP / SIGUSR1: logrotate renamed the file) makes the writer
// write what it holds to the old file, then open the path again (created if
// missing). stop() (or the destructor) writes everything still buffered and
// joins the thread: call it on the way out (SIGINT / SIGTERM). An empty path
// means standard output, which is never reopened nor closed.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <unistd.h>


namespace iwsec {
namespace detail {

/// What write() does with a line the buffer has no room for.
enum class WhenFull {
  drop,   ///< drop the line (whole) and count it: the caller never waits
  block,  ///< wait until the writer made room: no line is ever dropped
};

class BufferedWriter {
 public:
  /// @p path: the file (appended to, created with mode 0600 if missing), or
  /// empty for standard output. @p capacity: bytes buffered at most (a line
  /// longer than that is still taken, alone, under WhenFull::block).
  /// @p max_delay: the longest a line waits in the buffer before the writer
  /// takes it (an audit trail's "within a second" is 1 s or less).
  /// @p name: how error messages name this log ("access log", "audit log");
  /// @p log: where they go (default: stderr, "iwsec: ...").
  BufferedWriter(std::string path, WhenFull when_full, std::size_t capacity = 4u << 20,
                 std::chrono::milliseconds max_delay = std::chrono::milliseconds(100),
                 std::string name = "log", Log log = stderr_log())
      : path_(std::move(path)),
        name_(std::move(name)),
        when_full_(when_full),
        capacity_(std::max<std::size_t>(capacity, 1)),
        log_(log ? std::move(log) : stderr_log()),
        max_delay_(max_delay) {
    buffer_.reserve(capacity_);
    spare_.reserve(capacity_);
  }
  ~BufferedWriter() { stop(); }
  BufferedWriter(const BufferedWriter&) = delete;
  BufferedWriter& operator=(const BufferedWriter&) = delete;

  /// Called with each descriptor the writer opens (at start and after every
  /// reopen), before anything is written to it: e.g. fchown to the data
  /// directory's owner. Set before start().
  void on_open(std::function<void(int fd, const std::string& path)> hook) { on_open_ = std::move(hook); }

  /// Opens the file and starts the writer thread; the error message
  /// ("cannot open PATH: reason"), or empty.
  std::string start() {
    std::string error;
    fd_ = open_file(error);
    if (fd_ < 0) return error;
    Lock lock(mutex_);
    running_ = true;
    thread_ = std::thread([this] { run(); });
    return "";
  }

  const std::string& path() const { return path_; }

  /// Appends @p line (which should end with '\n'). Returns false when the
  /// line was dropped (WhenFull::drop with a full buffer).
  bool write(std::string_view line) {
    Lock lock(mutex_);
    if (!running_) {
      lock.unlock();
      return write_unbuffered(line);
    }
    if (buffer_.size() + line.size() > capacity_) {
      if (when_full_ == WhenFull::drop) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      ++blocked_;
      wake_writer();
      lock.wait(space_, [&]() IWSEC_REQUIRES(mutex_) {
        return !running_ || buffer_.empty() || buffer_.size() + line.size() <= capacity_;
      });
      --blocked_;
      if (!running_) {
        lock.unlock();
        return write_unbuffered(line);
      }
    }
    const bool was_below_half = buffer_.size() < capacity_ / 2;
    buffer_.append(line.data(), line.size());
    appended_ += line.size();
    // Wake the writer only when it sleeps for want of lines, or when the
    // buffer passes half: under load a request never makes a system call here.
    if (writer_idle_ || (was_below_half && buffer_.size() >= capacity_ / 2)) wake_writer();
    return true;
  }

  /// Lines dropped so far (WhenFull::drop with a full buffer, or a write
  /// the file refused).
  std::uint64_t dropped_lines() const { return dropped_.load(std::memory_order_relaxed); }

  /// Asks the writer to write what it holds, then open the path again.
  void reopen() {
    Lock lock(mutex_);
    if (path_.empty()) return;
    reopen_ = true;
    wake_writer();
  }

  /// Waits until every line appended before the call has been written.
  void flush() {
    Lock lock(mutex_);
    if (!running_) return;
    const std::uint64_t target = appended_;
    flush_ = true;
    wake_writer();
    lock.wait(flushed_, [&]() IWSEC_REQUIRES(mutex_) { return written_ >= target || !running_; });
  }

  /// Writes everything still buffered, stops the writer thread and closes
  /// the file. Later lines: standard output takes them at once, a file's
  /// are dropped (counted).
  void stop() {
    Lock once(stop_mutex_);
    if (!thread_.joinable()) return;
    {
      Lock lock(mutex_);
      stopping_ = true;
      wake_writer();
    }
    thread_.join();
  }

 private:
  // Not started, or stopped: standard output takes the line at once; a
  // file's line is dropped (counted). Called without mutex_.
  bool write_unbuffered(std::string_view line) {
    if (path_.empty()) return write_out(STDOUT_FILENO, line.data(), line.size()) == line.size();
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  void wake_writer() IWSEC_REQUIRES(mutex_) {
    writer_idle_ = false;
    wake_.notify_one();
  }

  bool urgent() const IWSEC_REQUIRES(mutex_) { return stopping_ || reopen_ || flush_ || blocked_ > 0 || buffer_.size() >= capacity_ / 2; }

  void run() {
    Lock lock(mutex_);
    for (;;) {
      if (buffer_.empty() && !urgent()) {
        writer_idle_ = true;
        lock.wait(wake_, [&]() IWSEC_REQUIRES(mutex_) { return !buffer_.empty() || urgent(); });
        writer_idle_ = false;
      }
      // Give the callers a moment to add more: one write for many lines.
      if (!urgent()) lock.wait_for(wake_, max_delay_, [&]() IWSEC_REQUIRES(mutex_) { return urgent(); });
      spare_.swap(buffer_);
      const std::uint64_t target = appended_;
      const bool reopen = reopen_;
      const bool last = stopping_;
      reopen_ = false;
      flush_ = false;
      if (blocked_ > 0) space_.notify_all();
      lock.unlock();

      if (!spare_.empty()) write_batch();
      spare_.clear();
      if (reopen) reopen_file();

      lock.lock();
      written_ = target;
      flushed_.notify_all();
      if (last && buffer_.empty()) {
        running_ = false;  // from here on write() does not buffer
        space_.notify_all();
        break;
      }
    }
    lock.unlock();
    if (fd_ >= 0 && fd_ != STDOUT_FILENO) ::close(fd_);
    fd_ = -1;
  }

  void write_batch() {
    if (fd_ < 0) {
      dropped_.fetch_add(static_cast<std::uint64_t>(std::count(spare_.begin(), spare_.end(), '\n')),
                         std::memory_order_relaxed);
      return;
    }
    const std::size_t done = write_out(fd_, spare_.data(), spare_.size());
    if (done < spare_.size()) {
      // What did not get written is lost; count its lines (a partial line
      // counts as written: the file has its start).
      const auto from = spare_.begin() + static_cast<std::ptrdiff_t>(done);
      std::uint64_t lost = static_cast<std::uint64_t>(std::count(from, spare_.end(), '\n'));
      if (done > 0 && spare_[done - 1] != '\n' && lost > 0) --lost;
      dropped_.fetch_add(lost, std::memory_order_relaxed);
    }
  }

  // Writes @p size bytes, retrying short writes and EINTR; the bytes
  // written. Reports a failure on stderr once until a write succeeds.
  std::size_t write_out(int fd, const char* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      const int error = n < 0 ? errno : EIO;
      if (!failing_.exchange(true))
        log_(name_ + ": cannot write to " + (path_.empty() ? std::string("standard output") : path_) + ": " +
             std::strerror(error));
      return done;
    }
    failing_.store(false);
    return done;
  }

  int open_file(std::string& error) {
    if (path_.empty()) return STDOUT_FILENO;
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      error = "cannot open " + name_ + " " + path_ + ": " + std::strerror(errno);
      return -1;
    }
    if (on_open_) on_open_(fd, path_);
    return fd;
  }

  // The writer thread, nothing buffered in hand: the old file is complete.
  void reopen_file() {
    std::string error;
    const int fd = open_file(error);
    if (fd < 0) {
      log_(name_ + ": keeping the file open: " + error);
      return;
    }
    if (fd_ >= 0 && fd_ != STDOUT_FILENO) ::close(fd_);
    fd_ = fd;
  }

  const std::string path_;
  const std::string name_;
  const WhenFull when_full_;
  const std::size_t capacity_;
  const Log log_;
  const std::chrono::milliseconds max_delay_;
  std::function<void(int, const std::string&)> on_open_;

  Mutex stop_mutex_;  // one stop() joins the thread
  Mutex mutex_;
  std::condition_variable wake_;     // the writer waits here
  std::condition_variable space_;    // blocked callers wait here
  std::condition_variable flushed_;  // flush() waits here
  std::string buffer_ IWSEC_GUARDED_BY(mutex_);  // lines not yet taken by the writer
  std::string spare_;                            // the writer's batch (its own while unlocked)
  std::uint64_t appended_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::uint64_t written_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::size_t blocked_ IWSEC_GUARDED_BY(mutex_) = 0;
  bool running_ IWSEC_GUARDED_BY(mutex_) = false;  // the writer thread runs (started, not stopped)
  bool writer_idle_ IWSEC_GUARDED_BY(mutex_) = false;
  bool stopping_ IWSEC_GUARDED_BY(mutex_) = false;
  bool reopen_ IWSEC_GUARDED_BY(mutex_) = false;
  bool flush_ IWSEC_GUARDED_BY(mutex_) = false;
  int fd_ = -1;
  std::thread thread_;
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<bool> failing_{false};
};

}  // namespace detail
}  // namespace iwsec
// ----- end iwsec/detail/log_writer.hpp -----

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
// ----- end iwsec/access_log.hpp -----
// ----- begin iwsec/audit_file.hpp -----
/// @brief The audit trail's file: AuditFile (a server's writer), append_audit_line (an admin tool's), parse_audit_line (reading it back).
/// @file
// The file of docs/operations.md "The audit trail": JSON lines (audit.hpp's
// audit_json_line) appended with O_APPEND, mode 0600, owned like the data
// directory's other files.
//
// AuditFile is a server's writer (iwsec-server's; a host's Options::on_audit
// can hand it audit_json_line(e)): a bounded buffer drained by one writer
// thread. Unlike the access log it never drops a line: a full buffer makes
// the request wait. Lines reach the file within a second (the writer wakes
// on the first line and at least every 200 ms) and before exit (stop()
// drains). reopen() (SIGHUP, SIGUSR1) makes the writer open the path again
// for logrotate. Behind the small AuditSink interface, so another writer
// (the access log's) can take its place.
//
// append_audit_line() is an admin tool's (iwsec-admin's): one whole line, one
// write(2). parse_audit_line() reads a line back (`iwsec-admin audit`).

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <picojson.h>


namespace iwsec {

/// @brief Where audit lines go.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  /// One whole line (newline included); may block, never drops.
  virtual void write(std::string line) = 0;
  /// Open the file again (after logrotate moved it).
  virtual void reopen() = 0;
  /// Everything written so far reaches the file; the writer ends.
  virtual void stop() = 0;
};

namespace detail {

/// Opens @p path for appending (created 0600; when root creates it, given
/// to the owner of @p owner_dir, so the account that owns the data
/// directory can still write it). Invalid fd and errno on failure.
inline unique_fd open_for_append(const std::string& path, const std::string& owner_dir) {
  auto fd = open_fd(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0600);
  if (!fd) return fd;
  struct stat owner;
  if (!owner_dir.empty() && ::stat(owner_dir.c_str(), &owner) == 0 && !give_to_owner(fd.get(), owner)) {
    const int e = errno;
    fd.reset();
    errno = e;
  }
  return fd;
}

}  // namespace detail

/// @brief A server's audit writer (see the file comment): never drops a line.
class AuditFile : public AuditSink {
 public:
  static constexpr std::size_t max_buffered_lines = 4096;

  /// Opens @p path now (so a start that cannot write its trail fails;
  /// error() says why when ok() is false). @p owner_dir: a file this
  /// creates as root is given to that directory's owner (empty: kept).
  /// @p log: where write failures are told (nullptr: nowhere).
  AuditFile(std::string path, std::string owner_dir, std::function<void(const std::string&)> log)
      : path_(std::move(path)), owner_dir_(std::move(owner_dir)), log_(std::move(log)) {
    fd_ = detail::open_for_append(path_, owner_dir_);
    if (!fd_) error_ = "cannot open audit log " + path_ + ": " + std::strerror(errno);
    if (fd_) writer_ = std::thread([this] { run(); });
  }

  /// The same, the file owned like the directory it is in (as the data
  /// directory's other files are).
  AuditFile(std::string path, std::function<void(const std::string&)> log)
      : AuditFile(path, detail::parent_directory(path), std::move(log)) {}

  ~AuditFile() override { stop(); }

  bool ok() const { return static_cast<bool>(fd_); }
  const std::string& error() const { return error_; }

  void write(std::string line) override {
    detail::Lock lock(mutex_);
    lock.wait(room_, [this]() IWSEC_REQUIRES(mutex_) { return lines_.size() < max_buffered_lines || stopping_; });
    if (writer_done_) {
      // After stop() no thread drains the queue: the line goes out now.
      if (fd_ && !detail::write_all(fd_.get(), line) && log_)
        log_("cannot write audit log " + path_ + ": " + std::strerror(errno));
      return;
    }
    lines_.push_back(std::move(line));
    if (lines_.size() == 1) wake_.notify_one();
  }

  void reopen() override {
    detail::Lock lock(mutex_);
    reopen_ = true;
    wake_.notify_one();
  }

  void stop() override {
    {
      detail::Lock lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      wake_.notify_one();
    }
    if (writer_.joinable()) writer_.join();
  }

 private:
  void run() {
    detail::Lock lock(mutex_);
    for (;;) {
      lock.wait_for(wake_, std::chrono::milliseconds(200),
                    [this]() IWSEC_REQUIRES(mutex_) { return !lines_.empty() || reopen_ || stopping_; });
      std::deque<std::string> batch;
      batch.swap(lines_);
      const bool reopen = reopen_;
      reopen_ = false;
      const bool last = stopping_;
      room_.notify_all();
      lock.unlock();
      if (reopen) {
        auto fresh = detail::open_for_append(path_, owner_dir_);
        if (fresh) {
          fd_ = std::move(fresh);
        } else if (log_) {
          log_("cannot reopen audit log " + path_ + " (" + std::strerror(errno) + "); writing on to the old file");
        }
      }
      std::string text;
      for (auto& line : batch) text += line;
      // A write that fails is retried: an audit line is never dropped.
      while (!text.empty() && !detail::write_all(fd_.get(), text)) {
        if (log_) log_("cannot write audit log " + path_ + ": " + std::strerror(errno) + "; retrying");
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      lock.lock();
      if (last && lines_.empty()) {
        writer_done_ = true;
        return;
      }
    }
  }

  std::string path_;
  std::string owner_dir_;
  std::function<void(const std::string&)> log_;
  std::string error_;
  detail::unique_fd fd_;
  detail::Mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable room_;
  std::deque<std::string> lines_ IWSEC_GUARDED_BY(mutex_);
  bool reopen_ IWSEC_GUARDED_BY(mutex_) = false;
  bool stopping_ IWSEC_GUARDED_BY(mutex_) = false;
  bool writer_done_ IWSEC_GUARDED_BY(mutex_) = false;  // set by the writer as it ends; write() then writes itself
  std::thread writer_;
};

/// @brief The OS account running this program (an admin event's `actor`):
/// SUDO_USER when run through sudo, else the effective user's name (its
/// number if it has none).
inline std::string audit_actor() {
  const char* sudo_user = std::getenv("SUDO_USER");
  if (sudo_user && *sudo_user) return sudo_user;
  const uid_t uid = ::geteuid();
  struct passwd pw;
  struct passwd* found = nullptr;
  char buffer[4096];
  if (::getpwuid_r(uid, &pw, buffer, sizeof buffer, &found) == 0 && found && found->pw_name)
    return found->pw_name;
  return "uid " + std::to_string(uid);
}

/// @brief An admin tool's append: one whole line in one write(2). Empty on
/// success, else the reason (with the path).
inline std::string append_audit_line(const std::string& path, const std::string& owner_dir, const std::string& line) {
  auto fd = detail::open_for_append(path, owner_dir);
  if (!fd) return "cannot open audit log " + path + ": " + std::strerror(errno);
  if (!detail::write_all(fd.get(), line)) return "cannot write audit log " + path + ": " + std::strerror(errno);
  return "";
}

/// @brief The same, the file owned like the directory it is in.
inline std::string append_audit_line(const std::string& path, const std::string& line) {
  return append_audit_line(path, detail::parent_directory(path), line);
}

/// @brief One event of a trail as read back: its JSON object and the fields
/// the filters of `iwsec-admin audit` look at.
struct AuditRecord {
  std::string json;  // the line, without its newline
  std::string time;
  std::string email;
  std::string text;  // one human-readable line
};

/// @brief Parses one JSON line of a trail; false when it is not an audit event.
inline bool parse_audit_line(const std::string& line, AuditRecord& out) {
  picojson::value v;
  const std::string err = picojson::parse(v, line);
  if (!err.empty() || !v.is<picojson::object>()) return false;
  const auto& o = v.get<picojson::object>();
  const auto get = [&o](const char* key) -> std::string {
    auto it = o.find(key);
    return it != o.end() && it->second.is<std::string>() ? it->second.get<std::string>() : std::string();
  };
  out.json = line;
  out.time = get("time");
  out.email = get("email");
  if (out.time.empty() || get("event").empty()) return false;
  out.text = out.time + ' ' + get("event");
  for (const char* key : {"email", "user_id", "kid", "client", "request_id", "actor", "result", "reason", "until"}) {
    const std::string value = get(key);
    if (!value.empty()) out.text += std::string(" ") + key + '=' + value;
  }
  return true;
}

}  // namespace iwsec
// ----- end iwsec/audit_file.hpp -----
// ----- begin iwsec/operations_routes.hpp -----
/// @brief mount_operations_routes: GET /metrics, /health/live and /health/ready for a host's own admin server.
/// @file
// What iwsec-server serves on its admin port (docs/operations.md "Metrics"
// and "Health"), for any host: Prometheus text (0.0.4) of a Metrics, a
// liveness answer, and a readiness answer that says why not. Mount them on a
// server of their own, bound to loopback or an internal network: they take
// no authentication (iwsec-server never serves them on its public port).
//
//   httplib::Server admin;
//   iwsec::harden(admin);
//   iwsec::mount_operations_routes(admin, *options.metrics,
//                                  [&users] { return iwsec::store_not_ready(users); });

#include <functional>
#include <string>

#include <httplib.h>


namespace iwsec {

/// @brief Why @p users cannot serve now (one line, no secret), or empty when
/// it can: asks it for one account's status, which makes a file store
/// reload a changed file and a cluster backend check its staleness.
inline std::string store_not_ready(UserStore& users) {
  try {
    users.status_of("ready-check@iwsec.invalid");
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// @brief Mounts on @p server:
/// - `GET /metrics`: @p metrics as Prometheus text, `Cache-Control: no-store`;
/// - `GET /health/live`: 200 `{"status":"live"}` while the process answers;
/// - `GET /health/ready`: 200 `{"status":"ready"}` when @p not_ready returns
///   empty, else 503 `{"status":"not ready","reason":...}` with `Retry-After: 1`.
/// @p metrics must outlive @p server; @p not_ready runs on each readiness
/// request's thread (it must be thread-safe; what it returns is shown to the
/// caller, so never a secret).
inline void mount_operations_routes(httplib::Server& server, Metrics& metrics,
                                    std::function<std::string()> not_ready) {
  server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(metrics.render(), Metrics::content_type);
  });
  server.Get("/health/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content("{\"status\":\"live\"}", "application/json; charset=utf-8");
  });
  server.Get("/health/ready", [not_ready = std::move(not_ready)](const httplib::Request&, httplib::Response& res) {
    const std::string problem = not_ready ? not_ready() : std::string();
    res.set_header("Cache-Control", "no-store");
    if (problem.empty()) {
      res.set_content("{\"status\":\"ready\"}", "application/json; charset=utf-8");
      return;
    }
    std::string body = "{\"status\":\"not ready\",\"reason\":";
    detail::append_json_string(body, problem);
    body += '}';
    res.status = 503;
    res.set_header("Retry-After", "1");
    res.set_content(body, "application/json; charset=utf-8");
  });
}

}  // namespace iwsec
// ----- end iwsec/operations_routes.hpp -----
// ----- end iwsec/iwsec.hpp -----
