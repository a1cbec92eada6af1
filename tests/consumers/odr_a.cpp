// Two translation units, both including iwsec, linked into one program: a
// function or variable defined in a header without `inline` is defined in
// both and the link fails. The program also checks that the two units
// agree at run time (a token signed in one verifies in the other).

#include <cstdint>
#include <cstdio>
#include <string>

#include <iwsec/iwsec.hpp>

std::string odr_sign_in_b(const iwsec::Signer& signer, std::int64_t now);  // odr_b.cpp
bool odr_password_in_b(const std::string& password, const std::string& hash);

int main() {
  const iwsec::Signer signer(std::string("odr-test-key-that-is-32-bytes-long"));
  const std::int64_t now = 1700000000;
  const std::string token = odr_sign_in_b(signer, now);
  const iwsec::VerifyResult verified = signer.verify(token, now);
  if (!verified.ok()) {
    std::fprintf(stderr, "odr: a token signed in odr_b.cpp does not verify in odr_a.cpp\n");
    return 1;
  }
  if (verified.token().email() != "odr@example.com") {
    std::fprintf(stderr, "odr: the verified email differs\n");
    return 1;
  }
  if (!odr_password_in_b("odr password", iwsec::hash_password("odr password", 1000)) ||
      odr_password_in_b("other password", iwsec::hash_password("odr password", 1000))) {
    std::fprintf(stderr, "odr: a hash made in odr_a.cpp is judged wrongly in odr_b.cpp\n");
    return 1;
  }
  std::printf("odr: two translation units including iwsec %s link and agree\n", IWSEC_VERSION_STRING);
  return 0;
}
