#pragma once
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

#include "detail/base64.hpp"
#include "detail/crypto.hpp"
#include "errors.hpp"

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
