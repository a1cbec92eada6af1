// The second translation unit of the ODR test (see odr_a.cpp).

#include <cstdint>
#include <string>

#include <httplib.h>
#include <iwsec/iwsec.hpp>

std::string odr_sign_in_b(const iwsec::Signer& signer, std::int64_t now) {
  iwsec::AccessClaims claims;
  claims.email = "odr@example.com";
  claims.issued_at = now;
  claims.expires_at = now + 60;
  return signer.sign(claims);
}

bool odr_password_in_b(const std::string& password, const std::string& hash) {
  return iwsec::verify_password(password, hash);
}
