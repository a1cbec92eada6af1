// Unit tests for include/iwsec/signer.hpp: HS256 minting, strict
// verification with one VerifyError per rejection, and key rotation.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <thread>
#include <utility>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <iwsec/iwsec.hpp>

using iwsec::AccessClaims;
using iwsec::Signer;
using iwsec::SigningKey;
using iwsec::TokenAction;
using iwsec::VerifyError;

namespace {

const std::string key_a = "0123456789abcdef0123456789abcdef";          // 32 bytes
const std::string key_b = "ffffffffffffffffffffffffffffffff-second";  // 40 bytes
const std::int64_t t0 = 1700000000;

const char* const rfc7515_key = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const char* const rfc7515_input =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const char* const rfc7515_signature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

std::string b64(std::string_view s) { return iwsec::base64url_encode(s); }

std::string decode(std::string_view s) {
  auto d = iwsec::base64url_decode(s);
  if (!d) throw std::runtime_error("test: not base64url: " + std::string(s));
  return *d;
}

std::string digest_string(const iwsec::detail::sha256_digest& d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

std::string hex(const std::string& raw) {
  return iwsec::detail::hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

// HMAC-SHA256 by OpenSSL's one-shot HMAC(): an oracle independent of
// detail::hmac_sha256_key's precomputed pad states.
std::string openssl_hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const char dummy = 0;  // HMAC() wants a non-null key even when it is empty
  HMAC(EVP_sha256(), key.empty() ? &dummy : key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

// header.payload (already base64url) signed with @p key: a token whose
// signature is genuine, so that whatever check fails is the one under test.
std::string sign_segments(const std::string& key, const std::string& header_b64, const std::string& payload_b64) {
  const std::string input = header_b64 + "." + payload_b64;
  return input + "." + b64(digest_string(iwsec::detail::hmac_sha256_key(key).mac(input)));
}

std::string sign_json(const std::string& key, const std::string& header_json, const std::string& payload_json) {
  return sign_segments(key, b64(header_json), b64(payload_json));
}

std::string json_string(std::string_view s) {
  std::string out;
  iwsec::detail::append_json_string(out, s);
  return out;
}

const std::string good_jti = "0f8fad5b-d9cb-469f-a165-70867728950e";
const std::string good_user_id = "5f1c0a2b3c4d5e6f70819203";
const std::string good_sub = R"({"email":"alice@example.com","scope":{"action":"password"}})";

// A payload of raw JSON members; set() replaces or adds, erase() removes.
struct Payload {
  std::vector<std::pair<std::string, std::string>> members{
      {"iat", std::to_string(t0)},
      {"sub", json_string(good_sub)},
      {"jti", json_string(good_jti)},
      {"exp", std::to_string(t0 + 900)},
      {"gen", "0"},
      {"user_id", json_string(good_user_id)},
  };
  Payload& set(const std::string& name, const std::string& raw_json) {
    for (auto& m : members)
      if (m.first == name) {
        m.second = raw_json;
        return *this;
      }
    members.emplace_back(name, raw_json);
    return *this;
  }
  Payload& erase(const std::string& name) {
    for (auto it = members.begin(); it != members.end(); ++it)
      if (it->first == name) {
        members.erase(it);
        break;
      }
    return *this;
  }
  std::string json() const {
    std::string out = "{";
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (i) out += ',';
      out += json_string(members[i].first) + ":" + members[i].second;
    }
    return out + "}";
  }
};

std::string hs256_header() { return R"({"alg":"HS256"})"; }

// A hand-built token with a good signature under key_a.
std::string forge(const Payload& payload, const std::string& header = hs256_header()) {
  return sign_json(key_a, header, payload.json());
}

AccessClaims claims(std::string email = "alice@example.com", TokenAction action = TokenAction::password) {
  AccessClaims c;
  c.email = std::move(email);
  c.action = action;
  c.issued_at = t0;
  c.expires_at = t0 + 900;
  c.refresh_generation = 3;
  c.user_id = good_user_id;
  return c;
}

struct Parts {
  std::string header, payload, signature;
};

Parts split(const std::string& token) {
  const auto d1 = token.find('.');
  const auto d2 = token.find('.', d1 + 1);
  if (d1 == std::string::npos || d2 == std::string::npos) throw std::runtime_error("test: not a JWS");
  return Parts{token.substr(0, d1), token.substr(d1 + 1, d2 - d1 - 1), token.substr(d2 + 1)};
}

// Makes a base64url text non-canonical: its last symbol gains a trailing bit.
std::string noncanonical(std::string s) {
  if (s.size() % 4 == 0) throw std::runtime_error("test: no trailing bits to set");
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  s.back() = alphabet[alphabet.find(s.back()) + 1];
  return s;
}

VerifyError error_of(const Signer& s, const std::string& token, std::int64_t now = t0, std::int64_t leeway = 0) {
  return s.verify(token, now, leeway).error();
}

}  // namespace

// ---- primitives ----------------------------------------------------------------

TEST_CASE("a Signer can be copied or moved into a new one but never assigned over", "[signer]") {
  // Mounted routes cache what they verified with this signer; assignment
  // would swap its keys under them.
  STATIC_REQUIRE(std::is_copy_constructible<iwsec::Signer>::value);
  STATIC_REQUIRE(std::is_move_constructible<iwsec::Signer>::value);
  STATIC_REQUIRE_FALSE(std::is_copy_assignable<iwsec::Signer>::value);
  STATIC_REQUIRE_FALSE(std::is_move_assignable<iwsec::Signer>::value);
}

TEST_CASE("hmac_sha256_key reproduces the RFC 7515 A.1 HS256 signature", "[signer][hmac]") {
  const std::string key = decode(rfc7515_key);
  CHECK(key.size() == 64);
  const auto mac = iwsec::detail::hmac_sha256_key(key).mac(rfc7515_input);
  CHECK(digest_string(mac) == decode(rfc7515_signature));
  CHECK(b64(digest_string(mac)) == rfc7515_signature);
}

TEST_CASE("hmac_sha256_key matches RFC 4231 test cases 1, 2, 6 and 7", "[signer][hmac]") {
  const auto mac_hex = [](const std::string& key, const std::string& data) {
    return hex(digest_string(iwsec::detail::hmac_sha256_key(key).mac(data)));
  };
  CHECK(mac_hex(std::string(20, '\x0b'), "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(mac_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // 131-byte keys are longer than SHA-256's block: the key is hashed first.
  CHECK(mac_hex(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First") ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  CHECK(mac_hex(std::string(131, '\xaa'),
                "This is a test using a larger than block-size key and a larger than block-size data. The key "
                "needs to be hashed before being used by the HMAC algorithm.") ==
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST_CASE("hmac_sha256_key agrees with OpenSSL's HMAC() for every key length 0..200", "[signer][hmac]") {
  for (std::size_t n = 0; n <= 200; ++n) {
    std::string key(n, '\0');
    for (std::size_t i = 0; i < n; ++i) key[i] = static_cast<char>((i * 37 + n) & 0xFF);
    const std::string data = "message of length " + std::to_string(n);
    INFO("key length " << n);
    const iwsec::detail::hmac_sha256_key k(key);
    CHECK(digest_string(k.mac(data)) == openssl_hmac(key, data));
    // The precomputed state is reusable: a second MAC is the same.
    CHECK(digest_string(k.mac(data)) == openssl_hmac(key, data));
    CHECK(digest_string(k.mac("")) == openssl_hmac(key, ""));
  }
}

TEST_CASE("crypto helpers: constant_time_equal, UUIDs, SHA-256", "[signer][crypto]") {
  using iwsec::detail::constant_time_equal;
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("abc", "abc"));
  CHECK(constant_time_equal(std::string("a\0c", 3), std::string("a\0c", 3)));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "abcd"));
  CHECK_FALSE(constant_time_equal("abcd", "abc"));
  CHECK_FALSE(constant_time_equal("", "a"));
  const std::string_view abcd("abcd");
  CHECK_FALSE(constant_time_equal(abcd, abcd.substr(0, 3)));  // a prefix is not equal
  CHECK_FALSE(constant_time_equal(abcd.substr(0, 3), abcd));
  CHECK_FALSE(constant_time_equal(std::string("a\0c", 3), std::string("a\0d", 3)));

  for (int i = 0; i < 20; ++i) {
    const std::string u = iwsec::detail::uuid_v4();
    CHECK(iwsec::detail::is_canonical_uuid(u));
    CHECK(u[14] == '4');
    CHECK(std::string("89ab").find(u[19]) != std::string::npos);
  }
  CHECK(iwsec::detail::is_canonical_uuid(good_jti));
  CHECK_FALSE(iwsec::detail::is_canonical_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
  CHECK_FALSE(iwsec::detail::is_canonical_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
  CHECK_FALSE(iwsec::detail::is_canonical_uuid("0f8fad5b-d9cb-469f-a165-70867728950e "));
  CHECK_FALSE(iwsec::detail::is_canonical_uuid("0f8fad5bxd9cb-469f-a165-70867728950e"));

  CHECK(iwsec::detail::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(iwsec::detail::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(iwsec::detail::ascii_lower("MiXeD@Example.COM \xc3\x84") == "mixed@example.com \xc3\x84");
}

TEST_CASE("RFC 7515 A.1 token: signature passes, our claims are absent", "[signer]") {
  const Signer signer(decode(rfc7515_key));
  const std::string token = std::string(rfc7515_input) + "." + rfc7515_signature;
  CHECK(error_of(signer, token) == VerifyError::bad_claims);
  CHECK(signer.verify_ignoring_lifetime(token).error() == VerifyError::bad_claims);

  std::string stem = token;
  stem.pop_back();
  for (const char last : {'l', 'm', 'n'}) {
    INFO("signature ending X" << last);
    CHECK(error_of(signer, stem + last) == VerifyError::malformed);
  }
  // A different key: the MAC is what fails now.
  CHECK(error_of(Signer(key_a), token) == VerifyError::bad_signature);
}

// ---- minting ---------------------------------------------------------------------

TEST_CASE("sign/verify round trip carries every claim", "[signer]") {
  const Signer signer(key_a);
  for (const TokenAction action : {TokenAction::password, TokenAction::refresh_token}) {
    const auto c = claims("Alice@Example.com", action);
    const std::string token = signer.sign(c);
    const auto r = signer.verify(token, t0);
    REQUIRE(r.ok());
    REQUIRE(static_cast<bool>(r));
    CHECK(r.error() == VerifyError::none);
    const auto& t = r.token();
    CHECK(t.email() == "Alice@Example.com");
    CHECK(t.action() == action);
    CHECK(t.issued_at() == t0);
    CHECK(t.expires_at() == t0 + 900);
    CHECK(t.refresh_generation() == 3);
    CHECK(t.key_id().empty());
    // jti: a lower-case canonical UUID, version 4, RFC 4122 variant.
    const std::string& jti = t.jti();
    REQUIRE(iwsec::detail::is_canonical_uuid(jti));
    CHECK(jti[14] == '4');
    CHECK(std::string("89ab").find(jti[19]) != std::string::npos);
  }
}

TEST_CASE("sign: the payload is shaped like an Infoworks token", "[signer]") {
  const Signer signer(key_a);
  auto c = claims("bob@example.com", TokenAction::refresh_token);
  c.refresh_generation = 7;
  const Parts parts = split(signer.sign(c));

  CHECK(decode(parts.header) == R"({"alg":"HS256"})");
  const auto header = iwsec::detail::parse_json_strict(decode(parts.header));
  REQUIRE(header);
  CHECK(header->get<picojson::object>().size() == 1);

  const auto payload = iwsec::detail::parse_json_strict(decode(parts.payload));
  REQUIRE(payload);
  REQUIRE(payload->is<picojson::object>());
  const auto& p = payload->get<picojson::object>();
  REQUIRE(p.count("iat"));
  REQUIRE(p.count("exp"));
  REQUIRE(p.count("jti"));
  REQUIRE(p.count("gen"));
  REQUIRE(p.count("sub"));
  REQUIRE(p.count("user_id"));
  CHECK(p.size() == 6);
  REQUIRE(p.at("user_id").is<std::string>());
  CHECK(p.at("user_id").get<std::string>() == good_user_id);
  CHECK(iwsec::detail::json_non_negative_integer(p.at("iat")) == std::optional<std::int64_t>(t0));
  CHECK(iwsec::detail::json_non_negative_integer(p.at("exp")) == std::optional<std::int64_t>(t0 + 900));
  CHECK(iwsec::detail::json_non_negative_integer(p.at("gen")) == std::optional<std::int64_t>(7));
  REQUIRE(p.at("jti").is<std::string>());
  CHECK(iwsec::detail::is_canonical_uuid(p.at("jti").get<std::string>()));

  // `sub` is a string that itself holds JSON.
  REQUIRE(p.at("sub").is<std::string>());
  const auto sub = iwsec::detail::parse_json_strict(p.at("sub").get<std::string>());
  REQUIRE(sub);
  REQUIRE(sub->is<picojson::object>());
  const auto& s = sub->get<picojson::object>();
  REQUIRE(s.count("email"));
  CHECK(s.at("email").get<std::string>() == "bob@example.com");
  REQUIRE(s.count("scope"));
  REQUIRE(s.at("scope").is<picojson::object>());
  CHECK(s.at("scope").get<picojson::object>().at("action").get<std::string>() == "refresh_token");

  // The signature is plain HMAC-SHA256 over header.payload (what PyJWT checks).
  CHECK(decode(parts.signature) == openssl_hmac(key_a, parts.header + "." + parts.payload));
}

TEST_CASE("sign: a fresh jti per token unless one is given", "[signer]") {
  const Signer signer(key_a);
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) seen.insert(signer.verify(signer.sign(claims()), t0).token().jti());
  CHECK(seen.size() == 50);

  auto c = claims();
  c.jti = good_jti;
  CHECK(signer.verify(signer.sign(c), t0).token().jti() == good_jti);
}

TEST_CASE("sign: emails with quotes, backslashes, controls and UTF-8 survive", "[signer]") {
  const Signer signer(key_a);
  for (const std::string& email : {std::string("a\"b@example.com"), std::string("back\\slash@example.com"),
                                  std::string("tab\there@example.com"), std::string("nul\0@example.com", 16),
                                  std::string("j\xc3\xbcrgen@example.de"), std::string("}\",\"scope\":{")}) {
    const auto r = signer.verify(signer.sign(claims(email)), t0);
    REQUIRE(r.ok());
    CHECK(r.token().email() == email);
    CHECK(r.token().action() == TokenAction::password);
  }
}

TEST_CASE("sign: with several keys the header names the signing kid", "[signer]") {
  const Signer signer(std::vector<SigningKey>{{"a", key_a}, {"b", key_b}});
  CHECK(signer.signing_key_id() == "b");
  const Parts parts = split(signer.sign(claims()));
  CHECK(decode(parts.header) == R"({"alg":"HS256","kid":"b"})");
  const auto header = iwsec::detail::parse_json_strict(decode(parts.header));
  REQUIRE(header);
  CHECK(header->get<picojson::object>().size() == 2);
  CHECK(decode(parts.signature) == openssl_hmac(key_b, parts.header + "." + parts.payload));
}

// ---- keys --------------------------------------------------------------------------

TEST_CASE("Signer refuses unusable key material", "[signer][keys]") {
  CHECK_THROWS_AS(Signer(""), iwsec::key_error);
  CHECK_THROWS_AS(Signer(std::string(31, 'k')), iwsec::key_error);
  CHECK_NOTHROW(Signer(std::string(32, 'k')));
  CHECK_THROWS_AS(Signer(std::vector<SigningKey>{}), iwsec::key_error);
  CHECK_THROWS_AS(Signer(std::vector<SigningKey>{{"a", key_a}, {"b", std::string(31, 'k')}}), iwsec::key_error);
  // Several keys: each needs a kid, and kids must differ.
  CHECK_THROWS_AS(Signer(std::vector<SigningKey>{{"", key_a}, {"b", key_b}}), iwsec::key_error);
  CHECK_THROWS_AS(Signer(std::vector<SigningKey>{{"a", key_a}, {"", key_b}}), iwsec::key_error);
  CHECK_THROWS_AS(Signer(std::vector<SigningKey>{{"a", key_a}, {"a", key_b}}), iwsec::key_error);
  CHECK_THROWS_AS(Signer(std::vector<SigningKey>{{"a", key_a}, {"b", key_b}, {"a", key_b}}), iwsec::key_error);
  CHECK_NOTHROW(Signer(std::vector<SigningKey>{{"a", key_a}, {"b", key_b}}));
  CHECK_THROWS_AS(Signer(std::vector<SigningKey>{{std::string(129, 'k'), key_a}}), iwsec::key_error);
  std::vector<SigningKey> many;
  for (int i = 0; i < 17; ++i) many.push_back({"k" + std::to_string(i), key_a});
  CHECK_THROWS_AS(Signer(many), iwsec::key_error);
  many.pop_back();
  CHECK_NOTHROW(Signer(many));
  // key_error is an invalid_argument, so generic handlers catch it.
  CHECK_THROWS_AS(Signer("short"), std::invalid_argument);
}

TEST_CASE("key rotation: old tokens keep verifying, new ones carry the new kid", "[signer][keys]") {
  const Signer before(key_a);
  const Signer after(std::vector<SigningKey>{{"a", key_a}, {"b", key_b}});

  const std::string old_token = before.sign(claims("old@example.com"));
  const auto old_result = after.verify(old_token, t0);
  REQUIRE(old_result.ok());
  CHECK(old_result.token().email() == "old@example.com");
  CHECK(old_result.token().key_id().empty());

  const std::string new_token = after.sign(claims("new@example.com"));
  const auto new_result = after.verify(new_token, t0);
  REQUIRE(new_result.ok());
  CHECK(new_result.token().key_id() == "b");
  // The old single-key signer knows no kid "b".
  CHECK(error_of(before, new_token) == VerifyError::unknown_key);

  // A token naming kid "a" verifies under key a only.
  const std::string with_kid_a = sign_json(key_a, R"({"alg":"HS256","kid":"a"})", Payload().json());
  CHECK(after.verify(with_kid_a, t0).ok());
  CHECK(after.verify(with_kid_a, t0).token().key_id() == "a");
  const std::string kid_a_signed_by_b = sign_json(key_b, R"({"alg":"HS256","kid":"a"})", Payload().json());
  CHECK(error_of(after, kid_a_signed_by_b) == VerifyError::bad_signature);

  // A token without kid signed by the newest key (e.g. by PyJWT) also verifies.
  CHECK(after.verify(sign_json(key_b, hs256_header(), Payload().json()), t0).ok());

  // Unknown kids and keys nobody holds.
  CHECK(error_of(after, sign_json(key_a, R"({"alg":"HS256","kid":"zzz"})", Payload().json())) ==
        VerifyError::unknown_key);
  CHECK(error_of(after, sign_json(key_a, R"({"alg":"HS256","kid":""})", Payload().json())) ==
        VerifyError::unknown_key);
  const std::string stranger(48, 'z');
  CHECK(error_of(after, sign_json(stranger, hs256_header(), Payload().json())) == VerifyError::bad_signature);
}

// ---- rejections: shape -------------------------------------------------------------

TEST_CASE("verify: size bound", "[signer][reject]") {
  const Signer signer(key_a);
  CHECK(Signer::max_token_bytes == 8192);
  CHECK(error_of(signer, std::string(8193, 'a')) == VerifyError::too_large);
  CHECK(error_of(signer, std::string(100000, '.')) == VerifyError::too_large);

  // Grow a genuine token around the bound: at most 8192 bytes verifies, more is too_large.
  std::string largest_ok, smallest_too_large;
  for (std::size_t n = 5850; n < 6300 && smallest_too_large.empty(); ++n) {
    const std::string token = signer.sign(claims(std::string(n, 'a') + "@example.com"));
    if (token.size() <= 8192) {
      largest_ok = token;
    } else {
      smallest_too_large = token;
    }
  }
  REQUIRE(largest_ok.size() >= 8189);
  REQUIRE(!smallest_too_large.empty());
  CHECK(signer.verify(largest_ok, t0).ok());
  CHECK(error_of(signer, smallest_too_large) == VerifyError::too_large);
}

TEST_CASE("verify: exactly three non-empty segments", "[signer][reject]") {
  const Signer signer(key_a);
  const std::string token = signer.sign(claims());
  const Parts p = split(token);
  REQUIRE(signer.verify(token, t0).ok());

  CHECK(error_of(signer, "") == VerifyError::malformed);
  CHECK(error_of(signer, p.header) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload) == VerifyError::malformed);
  CHECK(error_of(signer, token + ".") == VerifyError::malformed);
  CHECK(error_of(signer, token + "." + p.signature) == VerifyError::malformed);
  CHECK(error_of(signer, "." + token) == VerifyError::malformed);
  CHECK(error_of(signer, std::string(5000, '.')) == VerifyError::malformed);
  CHECK(error_of(signer, "..") == VerifyError::malformed);
  CHECK(error_of(signer, "." + p.payload + "." + p.signature) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + ".." + p.signature) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload + ".") == VerifyError::malformed);
}

TEST_CASE("verify: segments must be canonical unpadded base64url", "[signer][reject]") {
  const Signer signer(key_a);
  const Parts p = split(signer.sign(claims()));

  // Padding on any segment (re-signed where the MAC would otherwise fail first).
  CHECK(error_of(signer, p.header + "=." + p.payload + "." + p.signature) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload + "." + p.signature + "=") == VerifyError::malformed);
  const std::string padded_payload = p.payload + std::string((4 - p.payload.size() % 4) % 4 + 4, '=');
  CHECK(error_of(signer, sign_segments(key_a, p.header, padded_payload)) == VerifyError::malformed);

  // Standard-alphabet bytes and whitespace.
  std::string plus = p.header;
  plus[3] = '+';
  CHECK(error_of(signer, plus + "." + p.payload + "." + p.signature) == VerifyError::malformed);
  std::string slash = p.signature;
  slash[5] = '/';
  CHECK(error_of(signer, p.header + "." + p.payload + "." + slash) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload + "." + p.signature + " ") == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload + "." + p.signature + "\n") == VerifyError::malformed);
  CHECK(error_of(signer, " " + p.header + "." + p.payload + "." + p.signature) == VerifyError::malformed);

  // Non-canonical trailing bits in each segment.
  const std::string odd_header = b64(R"({"alg":"HS256" })");  // 16 bytes: 4 spare bits
  REQUIRE(odd_header.size() % 4 != 0);
  CHECK(signer.verify(sign_segments(key_a, odd_header, p.payload), t0).ok());
  CHECK(error_of(signer, sign_segments(key_a, noncanonical(odd_header), p.payload)) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload + "." + noncanonical(p.signature)) == VerifyError::malformed);
  std::string payload_json = Payload().json();
  while (b64(payload_json).size() % 4 == 0) payload_json += ' ';
  CHECK(signer.verify(sign_segments(key_a, p.header, b64(payload_json)), t0).ok());
  CHECK(error_of(signer, sign_segments(key_a, p.header, noncanonical(b64(payload_json)))) ==
        VerifyError::malformed);
}

// ---- rejections: header ------------------------------------------------------------

TEST_CASE("verify: header must be an object of only alg, typ, kid", "[signer][reject]") {
  const Signer signer(key_a);
  const std::string payload = Payload().json();
  const auto header_error = [&](const std::string& header) {
    return error_of(signer, sign_json(key_a, header, payload));
  };
  CHECK(header_error(R"({"alg":"HS256"})") == VerifyError::none);
  CHECK(header_error(R"({"alg":"HS256","typ":"JWT"})") == VerifyError::none);
  CHECK(header_error(R"({"typ":"JWT","alg":"HS256"})") == VerifyError::none);

  CHECK(header_error(R"(["alg","HS256"])") == VerifyError::bad_header);
  CHECK(header_error(R"([])") == VerifyError::bad_header);
  CHECK(header_error(R"("HS256")") == VerifyError::bad_header);
  CHECK(header_error(R"(256)") == VerifyError::bad_header);
  CHECK(header_error(R"(null)") == VerifyError::bad_header);
  CHECK(header_error(R"({alg:"HS256"})") == VerifyError::bad_header);
  CHECK(header_error(R"({"alg":"HS256"} x)") == VerifyError::bad_header);
  CHECK(header_error("") == VerifyError::malformed);  // an empty segment
  CHECK(header_error(R"({"alg":"HS256","alg":"HS256"})") == VerifyError::bad_header);
  CHECK(header_error(R"({"alg":"none","alg":"HS256"})") == VerifyError::bad_header);
  CHECK(header_error(R"({"alg":"HS256","typ":"JWT","typ":"JWT"})") == VerifyError::bad_header);
  for (const char* member : {"crit", "jku", "jwk", "x5u", "x5c", "x5t", "cty", "b64", "zip", "foo", "ALG", "Alg"}) {
    INFO(member);
    CHECK(header_error(std::string(R"({"alg":"HS256",")") + member + R"(":"x"})") == VerifyError::bad_header);
  }
  CHECK(header_error(R"({"alg":"HS256","crit":["exp"]})") == VerifyError::bad_header);
  CHECK(header_error(R"({"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}})") == VerifyError::bad_header);
  for (const char* typ : {R"("jwt")", R"("at+jwt")", R"("JWS")", R"("")", R"(1)", R"(null)", R"(["JWT"])"}) {
    INFO("typ " << typ);
    CHECK(header_error(std::string(R"({"alg":"HS256","typ":)") + typ + "}") == VerifyError::bad_header);
  }
  CHECK(header_error(R"({"alg":"HS256","kid":1})") == VerifyError::bad_header);
  CHECK(header_error(R"({"alg":"HS256","kid":null})") == VerifyError::bad_header);
}

TEST_CASE("verify: alg is pinned to exactly HS256", "[signer][reject]") {
  const Signer signer(key_a);
  const std::string payload = Payload().json();
  for (const char* header : {R"({"alg":"none"})", R"({"alg":"None"})", R"({"alg":"HS512"})", R"({"alg":"HS384"})",
                             R"({"alg":"hs256"})", R"({"alg":"RS256"})", R"({"alg":"ES256"})",
                             R"({"alg":"HS256 "})", R"({"alg":""})", R"({"typ":"JWT"})", R"({})",
                             R"({"alg":256})", R"({"alg":null})", R"({"alg":["HS256"]})", R"({"alg":true})"}) {
    INFO(header);
    CHECK(error_of(signer, sign_json(key_a, header, payload)) == VerifyError::unsupported_algorithm);
  }
  // The classic alg:none token with an empty signature is not even well-formed.
  CHECK(error_of(signer, b64(R"({"alg":"none"})") + "." + b64(payload) + ".") == VerifyError::malformed);
}

// ---- rejections: signature ---------------------------------------------------------

TEST_CASE("verify: signature must be a 32-byte MAC under our key", "[signer][reject]") {
  const Signer signer(key_a);
  const std::string token = signer.sign(claims());
  const Parts p = split(token);
  const std::string mac = decode(p.signature);

  for (std::size_t bit = 0; bit < 256; bit += 7) {
    std::string flipped = mac;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    INFO("bit " << bit);
    CHECK(error_of(signer, p.header + "." + p.payload + "." + b64(flipped)) == VerifyError::bad_signature);
  }
  CHECK(error_of(Signer(key_b), token) == VerifyError::bad_signature);
  CHECK(error_of(signer, p.header + "." + p.payload + "." + b64(mac.substr(0, 31))) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload + "." + b64(mac + "x")) == VerifyError::malformed);
  CHECK(error_of(signer, p.header + "." + p.payload + "." + b64(std::string(64, 'x'))) == VerifyError::malformed);

  // Same signature, different payload.
  const Parts other = split(signer.sign(claims("mallory@example.com")));
  CHECK(error_of(signer, p.header + "." + other.payload + "." + p.signature) == VerifyError::bad_signature);
}

// ---- rejections: payload and claims ------------------------------------------------

TEST_CASE("verify: the hand-built baseline token is accepted", "[signer][claims]") {
  // Every claims test below changes one thing in this token.
  const auto r = Signer(key_a).verify(forge(Payload()), t0);
  REQUIRE(r.ok());
  CHECK(r.token().email() == "alice@example.com");
  CHECK(r.token().jti() == good_jti);
  CHECK(r.token().user_id() == good_user_id);
  CHECK(r.token().action() == TokenAction::password);
  CHECK(r.token().refresh_generation() == 0);
}

TEST_CASE("verify: payload must be a strict JSON object", "[signer][claims]") {
  const Signer signer(key_a);
  const auto payload_error = [&](const std::string& payload_json) {
    return error_of(signer, sign_json(key_a, hs256_header(), payload_json));
  };
  CHECK(payload_error("[]") == VerifyError::bad_payload);
  CHECK(payload_error("\"claims\"") == VerifyError::bad_payload);
  CHECK(payload_error("42") == VerifyError::bad_payload);
  CHECK(payload_error("not json") == VerifyError::bad_payload);
  CHECK(payload_error(Payload().json() + "x") == VerifyError::bad_payload);
  CHECK(payload_error(Payload().json() + "{}") == VerifyError::bad_payload);
  // A duplicated claim: which value counts would be ambiguous.
  std::string dup = Payload().json();
  dup.insert(dup.size() - 1, ",\"exp\":" + std::to_string(t0 + 99999));
  CHECK(payload_error(dup) == VerifyError::bad_payload);
}

TEST_CASE("verify: exp must be a non-negative integer below 2^53", "[signer][claims]") {
  const Signer signer(key_a);
  CHECK(error_of(signer, forge(Payload().erase("exp"))) == VerifyError::bad_claims);
  for (const char* exp : {R"("1700000900")", "-1", "9223372036854775808", "9007199254740992", "true", "false", "null",
                          "[1700000900]", "{}"}) {
    INFO("exp " << exp);
    CHECK(error_of(signer, forge(Payload().set("exp", exp))) == VerifyError::bad_claims);
  }
  // A fraction, an exponent or a non-RFC 8259 number form is never issued
  // here: the strict JSON parser refuses the payload itself.
  for (const char* exp : {"1700000900.5", "1700000900.0", "1.7e9", "1e300", "1e309", "01700000900", "1700000900."}) {
    INFO("exp " << exp);
    CHECK(error_of(signer, forge(Payload().set("exp", exp))) == VerifyError::bad_payload);
  }
  // Negative zero is a JSON integer, but not a non-negative one.
  CHECK(error_of(signer, forge(Payload().set("exp", "-0"))) == VerifyError::bad_claims);
}

TEST_CASE("verify: iat, gen and nbf must be non-negative integers", "[signer][claims]") {
  const Signer signer(key_a);
  for (const char* claim : {"iat", "gen"}) {
    INFO(claim);
    CHECK(error_of(signer, forge(Payload().erase(claim))) == VerifyError::bad_claims);
    for (const char* value : {R"("0")", "-1", "9223372036854775808", "true", "null", "[]"}) {
      INFO("value " << value);
      CHECK(error_of(signer, forge(Payload().set(claim, value))) == VerifyError::bad_claims);
    }
    CHECK(error_of(signer, forge(Payload().set(claim, "0.5"))) == VerifyError::bad_payload);
  }
  // nbf is optional, but typed when present.
  CHECK(error_of(signer, forge(Payload().set("nbf", std::to_string(t0)))) == VerifyError::none);
  for (const char* value : {R"("1700000000")", "-1", "true", "null"}) {
    INFO("nbf " << value);
    CHECK(error_of(signer, forge(Payload().set("nbf", value))) == VerifyError::bad_claims);
  }
  CHECK(error_of(signer, forge(Payload().set("nbf", "1.5"))) == VerifyError::bad_payload);
}

TEST_CASE("verify: jti must be a canonical lower-case UUID", "[signer][claims]") {
  const Signer signer(key_a);
  CHECK(error_of(signer, forge(Payload().erase("jti"))) == VerifyError::bad_claims);
  for (const std::string& jti :
       {std::string("0F8FAD5B-D9CB-469F-A165-70867728950E"), std::string("0f8fad5bd9cb469fa16570867728950e"),
        std::string("{0f8fad5b-d9cb-469f-a165-70867728950e}"), std::string("0f8fad5b-d9cb-469f-a165-70867728950"),
        std::string("0f8fad5b-d9cb-469f-a165-70867728950e0"), std::string("0f8fad5b_d9cb-469f-a165-70867728950e"),
        std::string("0f8fad5b-d9cb-469f-a165-70867728950g"), std::string(""), std::string("token-1")}) {
    INFO("jti " << jti);
    CHECK(error_of(signer, forge(Payload().set("jti", json_string(jti)))) == VerifyError::bad_claims);
  }
  CHECK(error_of(signer, forge(Payload().set("jti", "12345"))) == VerifyError::bad_claims);
  // Well-formed, but not what uuid_v4() makes: a version 1 UUID, a version 4 with the wrong variant.
  CHECK(error_of(signer, forge(Payload().set("jti", json_string("0f8fad5b-d9cb-169f-a165-70867728950e")))) ==
        VerifyError::bad_claims);
  CHECK(error_of(signer, forge(Payload().set("jti", json_string("0f8fad5b-d9cb-469f-c165-70867728950e")))) ==
        VerifyError::bad_claims);
  CHECK(error_of(signer, forge(Payload().set("jti", "null"))) == VerifyError::bad_claims);
}

TEST_CASE("verify: sub must be a JSON string holding email and scope.action", "[signer][claims]") {
  const Signer signer(key_a);
  const auto sub_error = [&](const std::string& sub_text) {
    return error_of(signer, forge(Payload().set("sub", json_string(sub_text))));
  };
  CHECK(sub_error(R"({"email":"a@b.c","scope":{"action":"refresh_token"}})") == VerifyError::none);
  CHECK(sub_error(R"({"email":"a@b.c","scope":{"action":"password","extra":1},"more":true})") == VerifyError::none);

  CHECK(error_of(signer, forge(Payload().erase("sub"))) == VerifyError::bad_claims);
  // sub as a JSON object instead of a string holding JSON.
  CHECK(error_of(signer, forge(Payload().set("sub", good_sub))) == VerifyError::bad_claims);
  CHECK(error_of(signer, forge(Payload().set("sub", "42"))) == VerifyError::bad_claims);
  CHECK(sub_error("alice@example.com") == VerifyError::bad_claims);
  CHECK(sub_error("") == VerifyError::bad_claims);
  CHECK(sub_error(R"(["a@b.c"])") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"scope":{"action":"password"}})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"","scope":{"action":"password"}})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":7,"scope":{"action":"password"}})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c"})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c","scope":"password"})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c","scope":{}})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c","scope":{"action":"admin"}})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c","scope":{"action":"PASSWORD"}})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c","scope":{"action":1}})") == VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c","email":"root@b.c","scope":{"action":"password"}})") ==
        VerifyError::bad_claims);
  CHECK(sub_error(R"({"email":"a@b.c","scope":{"action":"password"}} trailing)") == VerifyError::bad_claims);
}

// ---- times ---------------------------------------------------------------------------

TEST_CASE("verify: a token is expired from exp on; leeway extends it", "[signer][time]") {
  const Signer signer(key_a);
  const std::string token = signer.sign(claims());  // iat t0, exp t0 + 900
  const std::int64_t exp = t0 + 900;
  CHECK(error_of(signer, token, t0) == VerifyError::none);
  CHECK(error_of(signer, token, exp - 1) == VerifyError::none);
  CHECK(error_of(signer, token, exp) == VerifyError::expired);
  CHECK(error_of(signer, token, exp + 1) == VerifyError::expired);
  CHECK(error_of(signer, token, exp + 100000) == VerifyError::expired);
  CHECK(error_of(signer, token, exp + 29, 30) == VerifyError::none);
  CHECK(error_of(signer, token, exp + 30, 30) == VerifyError::expired);
  // A negative leeway is no leeway, never a shortened lifetime.
  CHECK(error_of(signer, token, exp - 1, -100) == VerifyError::none);
  CHECK(error_of(signer, token, exp, -100) == VerifyError::expired);
  // exp == iat: never valid.
  auto c = claims();
  c.expires_at = c.issued_at;
  CHECK(error_of(signer, signer.sign(c), t0) == VerifyError::expired);
}

TEST_CASE("verify: future iat or nbf is not yet valid; leeway allows skew", "[signer][time]") {
  const Signer signer(key_a);
  const std::string future_iat = forge(Payload().set("iat", std::to_string(t0 + 10)));
  CHECK(error_of(signer, future_iat, t0) == VerifyError::not_yet_valid);
  CHECK(error_of(signer, future_iat, t0, 9) == VerifyError::not_yet_valid);
  CHECK(error_of(signer, future_iat, t0, 10) == VerifyError::none);
  CHECK(error_of(signer, future_iat, t0 + 10) == VerifyError::none);

  const std::string future_nbf = forge(Payload().set("nbf", std::to_string(t0 + 5)));
  CHECK(error_of(signer, future_nbf, t0) == VerifyError::not_yet_valid);
  CHECK(error_of(signer, future_nbf, t0 + 4) == VerifyError::not_yet_valid);
  CHECK(error_of(signer, future_nbf, t0 + 5) == VerifyError::none);
  CHECK(error_of(signer, future_nbf, t0, 4) == VerifyError::not_yet_valid);
  CHECK(error_of(signer, future_nbf, t0, 5) == VerifyError::none);

  // A token minted by a clock far ahead.
  auto c = claims();
  c.issued_at = t0 + 3600;
  c.expires_at = t0 + 4500;
  CHECK(error_of(signer, signer.sign(c), t0) == VerifyError::not_yet_valid);
}

TEST_CASE("verify_ignoring_lifetime: genuine but expired is accepted; forgeries are not", "[signer][time]") {
  const Signer signer(key_a);
  const std::string token = signer.sign(claims());
  CHECK(error_of(signer, token, t0 + 100000) == VerifyError::expired);
  const auto r = signer.verify_ignoring_lifetime(token);
  REQUIRE(r.ok());
  CHECK(r.token().email() == "alice@example.com");
  CHECK(r.token().expires_at() == t0 + 900);

  CHECK(signer.verify_ignoring_lifetime(forge(Payload().set("iat", std::to_string(t0 + 99999)))).ok());
  CHECK(signer.verify_ignoring_lifetime(forge(Payload().set("nbf", std::to_string(t0 + 99999)))).ok());

  const Parts p = split(token);
  std::string mac = decode(p.signature);
  mac[0] = static_cast<char>(mac[0] ^ 1);
  CHECK(signer.verify_ignoring_lifetime(p.header + "." + p.payload + "." + b64(mac)).error() ==
        VerifyError::bad_signature);
  CHECK(Signer(key_b).verify_ignoring_lifetime(token).error() == VerifyError::bad_signature);
  CHECK(signer.verify_ignoring_lifetime("x.y.z").error() == VerifyError::malformed);
  CHECK(signer.verify_ignoring_lifetime(forge(Payload().erase("exp"))).error() == VerifyError::bad_claims);
  CHECK(signer.verify_ignoring_lifetime(sign_json(key_a, R"({"alg":"none"})", Payload().json())).error() ==
        VerifyError::unsupported_algorithm);
}

// ---- results and names ---------------------------------------------------------------

TEST_CASE("VerifyResult::token() on a rejection throws std::logic_error", "[signer]") {
  const Signer signer(key_a);
  const auto bad = signer.verify("x.y.z", t0);
  CHECK_FALSE(bad.ok());
  CHECK_FALSE(static_cast<bool>(bad));
  CHECK_THROWS_AS(bad.token(), std::logic_error);
  const auto expired = signer.verify(signer.sign(claims()), t0 + 1000);
  CHECK(expired.error() == VerifyError::expired);
  CHECK_THROWS_AS(expired.token(), std::logic_error);
}

TEST_CASE("to_string(VerifyError) gives each value its own name", "[signer]") {
  const VerifyError all[] = {VerifyError::none,       VerifyError::too_large,   VerifyError::malformed,
                             VerifyError::bad_header, VerifyError::unsupported_algorithm,
                             VerifyError::unknown_key, VerifyError::bad_signature, VerifyError::bad_payload,
                             VerifyError::bad_claims, VerifyError::expired,     VerifyError::not_yet_valid};
  std::set<std::string> names;
  for (const VerifyError e : all) {
    const std::string name = iwsec::to_string(e);
    CHECK_FALSE(name.empty());
    CHECK(name != "unknown");
    names.insert(name);
  }
  CHECK(names.size() == sizeof all / sizeof all[0]);
  CHECK(std::string(iwsec::to_string(VerifyError::expired)) == "expired");
  CHECK(std::string(iwsec::to_string(TokenAction::password)) == "password");
  CHECK(std::string(iwsec::to_string(TokenAction::refresh_token)) == "refresh_token");
}

// ---- threads -------------------------------------------------------------------------

TEST_CASE("one Signer serves several threads at once", "[signer][threads]") {
  const Signer signer(std::vector<SigningKey>{{"a", key_a}, {"b", key_b}});
  const std::string shared_old_token = sign_json(key_a, R"({"alg":"HS256","kid":"a"})", Payload().json());
  std::atomic<int> failures{0};
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string email = "user" + std::to_string(t) + "@example.com";
      for (int i = 0; i < 300; ++i) {
        auto c = claims(email, i % 2 ? TokenAction::password : TokenAction::refresh_token);
        c.refresh_generation = i;
        const std::string token = signer.sign(c);
        const auto r = signer.verify(token, t0);
        if (!r.ok() || r.token().email() != email || r.token().refresh_generation() != i ||
            r.token().key_id() != "b")
          ++failures;
        else
          ++verified;
        if (!signer.verify(shared_old_token, t0).ok()) ++failures;
        if (signer.verify(token, t0 + 900).error() != VerifyError::expired) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  CHECK(verified.load() == 4 * 300);
}
