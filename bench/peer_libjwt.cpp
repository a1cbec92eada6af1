// libjwt 1.10 (Debian libjwt-dev) for iwsec-bench.
#include <cerrno>
#include <cstdlib>

#include <jwt.h>

#include "peers.hpp"

// ---- libjwt 1.10 -------------------------------------------------------------

std::string libjwt_sign(const claims_set& c, const std::string& key) {
  jwt_t* jwt = nullptr;
  if (jwt_new(&jwt) != 0) die("jwt_new failed");
  std::string out;
  if (jwt_set_alg(jwt, JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(key.data()),
                  static_cast<int>(key.size())) == 0 &&
      jwt_add_grant_int(jwt, "iat", c.iat) == 0 && jwt_add_grant(jwt, "sub", c.sub.c_str()) == 0 &&
      jwt_add_grant(jwt, "jti", c.jti.c_str()) == 0 && jwt_add_grant_int(jwt, "exp", c.exp) == 0 &&
      jwt_add_grant_int(jwt, "gen", c.gen) == 0 && jwt_add_grant(jwt, "user_id", c.user_id.c_str()) == 0) {
    char* s = jwt_encode_str(jwt);
    if (s) {
      out = s;
      std::free(s);
    }
  }
  jwt_free(jwt);
  if (out.empty()) die("libjwt could not sign");
  return out;
}

/// Signature, alg pinned to HS256, exp against now, and the claims read out.
bool libjwt_verify(const std::string& token, const std::string& key, std::int64_t now, std::string& email_out) {
  jwt_t* jwt = nullptr;
  if (jwt_decode(&jwt, token.c_str(), reinterpret_cast<const unsigned char*>(key.data()),
                 static_cast<int>(key.size())) != 0)
    return false;
  bool ok = jwt_get_alg(jwt) == JWT_ALG_HS256;
  errno = 0;
  const long exp = jwt_get_grant_int(jwt, "exp");
  ok = ok && errno == 0 && now < exp;
  const char* sub = jwt_get_grant(jwt, "sub");
  const char* jti = jwt_get_grant(jwt, "jti");
  ok = ok && sub && jti;
  if (ok) email_out = sub;
  jwt_free(jwt);
  return ok;
}

