// cpp-jwt 1.4 (Debian libcpp-jwt-dev) for iwsec-bench.
#include <jwt/jwt.hpp>

#include "peers.hpp"

// ---- cpp-jwt 1.4 --------------------------------------------------------------

std::string cppjwt_sign(const claims_set& c, const std::string& key) {
  using namespace jwt::params;
  jwt::jwt_object obj{algorithm("HS256"), secret(key)};
  obj.add_claim("iat", c.iat).add_claim("sub", c.sub).add_claim("jti", c.jti).add_claim("exp", c.exp).add_claim(
      "gen", c.gen).add_claim("user_id", c.user_id);
  return obj.signature();
}

bool cppjwt_verify(const std::string& token, const std::string& key, std::string& email_out) {
  using namespace jwt::params;
  std::error_code ec;
  // verify(true): signature and exp (against the system clock).
  auto obj = jwt::decode(token, algorithms({"HS256"}), ec, secret(key), verify(true));
  if (ec) return false;
  const auto& p = obj.payload();
  if (!p.has_claim("jti") || !p.has_claim("sub")) return false;
  email_out = p.get_claim_value<std::string>("sub");
  return true;
}

