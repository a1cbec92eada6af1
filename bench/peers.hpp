#pragma once
// The peers iwsec-bench compares against. libjwt's `struct jwt` and cpp-jwt's
// `namespace jwt` cannot share a translation unit, so each lives in its own.

#include <cstdint>
#include <string>

struct claims_set {
  std::int64_t iat;
  std::int64_t exp;
  std::string jti;
  std::string email;
  std::string sub;  // the JSON text iwsec puts in `sub`
  std::int64_t gen;
  std::string user_id;
};


[[noreturn]] void die(const std::string& why);

std::string libjwt_sign(const claims_set& c, const std::string& key);
/// Signature, alg pinned to HS256, exp against now, and the claims read out.
bool libjwt_verify(const std::string& token, const std::string& key, std::int64_t now, std::string& email_out);

std::string cppjwt_sign(const claims_set& c, const std::string& key);
/// Signature (HS256 only), exp against the system clock, and the claims read out.
bool cppjwt_verify(const std::string& token, const std::string& key, std::string& email_out);
