#pragma once
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

#include "clock.hpp"
#include "detail/base64.hpp"
#include "detail/crypto.hpp"
#include "detail/json.hpp"
#include "detail/thread_safety.hpp"
#include "errors.hpp"

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
