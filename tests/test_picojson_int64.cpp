// iwsec must behave identically when the host compiles picojson with
// PICOJSON_USE_INT64 (integers then arrive through set_int64, not as doubles).
#define PICOJSON_USE_INT64
#include <iwsec/iwsec.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace {

std::string signed_token(const std::string& key, const std::string& payload) {
  const std::string input = iwsec::base64url_encode("{\"alg\":\"HS256\"}") + "." + iwsec::base64url_encode(payload);
  const auto mac = iwsec::detail::hmac_sha256_key(key).mac(input);
  return input + "." + iwsec::base64url_encode(std::string(reinterpret_cast<const char*>(mac.data()), mac.size()));
}

std::string payload_with_exp(const std::string& exp) {
  return "{\"iat\":1700000000,\"sub\":\"{\\\"email\\\":\\\"a@b.c\\\",\\\"scope\\\":{\\\"action\\\":\\\"password\\\"}}\","
         "\"jti\":\"0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a11\",\"exp\":" +
         exp + ",\"gen\":0,\"user_id\":\"u1\"}";
}

}  // namespace

TEST_CASE("with PICOJSON_USE_INT64 integers are checked exactly as without it") {
  const std::string key(32, 'k');
  const iwsec::Signer signer(key);
  const std::int64_t now = 1700000100;

  CHECK(signer.verify(signed_token(key, payload_with_exp("1700000900")), now).ok());
  CHECK(signer.verify(signed_token(key, payload_with_exp("9007199254740991")), now).ok());
  for (const char* bad : {"9007199254740992", "9007199254740993", "9223372036854775807", "9223372036854775808",
                          "-1", "\"1700000900\"", "true"}) {
    INFO(bad);
    CHECK(signer.verify(signed_token(key, payload_with_exp(bad)), now).error() == iwsec::VerifyError::bad_claims);
  }
  // A fraction or an exponent (or a number not representable at all): the
  // payload is not acceptable JSON to us.
  for (const char* bad : {"1700000900.5", "1.7e9", "1e309"}) {
    INFO(bad);
    CHECK(signer.verify(signed_token(key, payload_with_exp(bad)), now).error() == iwsec::VerifyError::bad_payload);
  }
}

TEST_CASE("with PICOJSON_USE_INT64 minted tokens round-trip") {
  const iwsec::Signer signer(std::string(40, 'x'));
  iwsec::AccessClaims claims;
  claims.email = "user@example.com";
  claims.issued_at = 1700000000;
  claims.expires_at = 1700000900;
  claims.refresh_generation = 7;
  const auto result = signer.verify(signer.sign(claims), 1700000001);
  REQUIRE(result.ok());
  CHECK(result.token().refresh_generation() == 7);
  CHECK(result.token().expires_at() == 1700000900);
}
