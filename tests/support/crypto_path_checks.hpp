#pragma once
// Checks shared by test_crypto_low_level.cpp and test_crypto_evp_path.cpp: the
// same HMAC, PBKDF2 and token results from whichever SHA-256 path iwsec was
// compiled with. The including file defines IWSEC_EXPECT_LOW_LEVEL (0 or 1)
// and IWSEC_PATH_NAME first.

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <iwsec/iwsec.hpp>

namespace crypto_path_checks {

inline std::string bytes(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 17 + (i >> 3)) & 0xFF);
  return s;
}

inline std::string openssl_hmac(const std::string& key, const std::string& data) {
  unsigned char out[32];
  unsigned int len = 0;
  REQUIRE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
               reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len) != nullptr);
  return std::string(reinterpret_cast<const char*>(out), len);
}

inline std::string openssl_pbkdf2(const std::string& pw, const std::string& salt, int rounds, int length) {
  std::string out(static_cast<std::size_t>(length), '\0');
  REQUIRE(PKCS5_PBKDF2_HMAC(pw.data(), static_cast<int>(pw.size()), reinterpret_cast<const unsigned char*>(salt.data()),
                            static_cast<int>(salt.size()), rounds, EVP_sha256(), length,
                            reinterpret_cast<unsigned char*>(&out[0])) == 1);
  return out;
}

}  // namespace crypto_path_checks

TEST_CASE(IWSEC_PATH_NAME ": the expected SHA-256 path is compiled", "[crypto]") {
  CHECK(iwsec::detail::sha256_low_level == (IWSEC_EXPECT_LOW_LEVEL != 0));
}

TEST_CASE(IWSEC_PATH_NAME ": HMAC equals OpenSSL's HMAC() for keys of 0..130 bytes and inputs of 0..300",
          "[crypto]") {
  using namespace crypto_path_checks;
  for (std::size_t key_len : {0, 1, 31, 32, 55, 56, 63, 64, 65, 130}) {
    const std::string key = bytes(key_len, 1);
    const iwsec::detail::hmac_sha256_key k(key);
    for (std::size_t n = 0; n <= 300; ++n) {
      const std::string data = bytes(n, 2);
      const auto mac = k.mac(data);
      INFO("key " << key_len << " data " << n);
      REQUIRE(std::string(reinterpret_cast<const char*>(mac.data()), mac.size()) == openssl_hmac(key, data));
    }
  }
}

TEST_CASE(IWSEC_PATH_NAME ": PBKDF2 equals PKCS5_PBKDF2_HMAC", "[crypto][password]") {
  using namespace crypto_path_checks;
  for (std::size_t pw_len : {0, 8, 64, 65, 100}) {
    for (std::size_t salt_len : {0, 1, 16, 55, 56, 64, 100}) {
      for (int rounds : {1, 2, 3, 1000}) {
        for (int length : {1, 20, 32, 33, 64, 100}) {
          const std::string pw = bytes(pw_len, 3), salt = bytes(salt_len, 4);
          INFO("password " << pw_len << " salt " << salt_len << " rounds " << rounds << " length " << length);
          REQUIRE(iwsec::detail::pbkdf2_sha256(pw, salt, static_cast<std::uint32_t>(rounds),
                                               static_cast<std::size_t>(length)) ==
                  openssl_pbkdf2(pw, salt, rounds, length));
        }
      }
    }
  }
  CHECK(iwsec::detail::pbkdf2_sha256("pw", "salt", 1, 0).empty());
  CHECK_THROWS(iwsec::detail::pbkdf2_sha256("pw", "salt", 0));
}

TEST_CASE(IWSEC_PATH_NAME ": a passlib hash verifies and tokens round-trip", "[crypto][signer]") {
  // A passlib-format hash (its checksum equals OpenSSL's, checked above).
  const std::string stored = iwsec::Pbkdf2Hash{1000, "saltsaltsaltsalt",
                                               iwsec::detail::pbkdf2_sha256("password", "saltsaltsaltsalt", 1000)}
                                 .to_string();
  CHECK(iwsec::verify_password("password", stored));
  CHECK_FALSE(iwsec::verify_password("Password", stored));

  const iwsec::Signer signer(std::string(32, 'k'));
  iwsec::AccessClaims claims;
  claims.email = "a@b.c";
  claims.issued_at = 1700000000;
  claims.expires_at = 1700000900;
  const std::string token = signer.sign(claims);
  const auto ok = signer.verify(token, 1700000001);
  REQUIRE(ok.ok());
  CHECK(ok.token().email() == "a@b.c");
  std::string tampered = token;
  char& c = tampered[tampered.size() - 10];  // a full 6-bit symbol of the MAC: any other is canonical too
  c = c == 'A' ? 'B' : 'A';
  CHECK(signer.verify(tampered, 1700000001).error() == iwsec::VerifyError::bad_signature);
}
