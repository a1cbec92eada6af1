// libFuzzer target: access-token verification (Signer::verify and
// verify_ignoring_lifetime) with a fixed key and a fixed clock.
//
// The first input byte picks a mode:
//   even: the rest is a compact token, verified as it is (shape, base64url,
//         header, MAC) by a one-key and a two-key signer;
//   odd:  the rest is "<header JSON>\n<payload JSON>", which the target signs
//         with the right key (OpenSSL HMAC-SHA256, not the signer's code)
//         so the fuzzer reaches the header, claim and time checks behind the
//         MAC; verified by both signers.
// The second byte is the leeway in seconds. Properties: a token verify()
// accepts is also accepted by verify_ignoring_lifetime() and fits the size
// bound; a correctly signed token never fails as bad_signature; an accepted
// token has a non-empty email and an expiry after the clock minus leeway.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <iwsec/iwsec.hpp>

#include "fuzz_common.hpp"

namespace {

constexpr std::string_view kSecret = "iwsec-fuzz-verify-key-0123456789abcdef";
constexpr std::string_view kOtherSecret = "iwsec-fuzz-other-key-0123456789abcdef!";
constexpr std::int64_t kNow = 1700000000;

const iwsec::Signer& one_key() {
  static const iwsec::Signer s{kSecret};
  return s;
}

const iwsec::Signer& two_keys() {
  static const iwsec::Signer s{std::vector<iwsec::SigningKey>{{"old", std::string(kOtherSecret)},
                                                              {"k1", std::string(kSecret)}}};
  return s;
}

std::string hs256(std::string_view signing_input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  iwsec_fuzz::require(HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
                           reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
                           &len) != nullptr,
                      "OpenSSL HMAC failed");
  return iwsec::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

void check(const iwsec::Signer& signer, std::string_view token, std::int64_t leeway, bool signed_right) {
  using iwsec_fuzz::require;
  const auto r = signer.verify(token, kNow, leeway);
  const auto genuine = signer.verify_ignoring_lifetime(token);
  if (signed_right && token.size() <= iwsec::Signer::max_token_bytes)
    require(r.error() != iwsec::VerifyError::bad_signature, "a correctly signed token failed its MAC");
  if (!r) return;
  require(genuine.ok(), "verify accepted what verify_ignoring_lifetime refused");
  require(token.size() <= iwsec::Signer::max_token_bytes, "an over-long token was accepted");
  const auto& t = r.token();
  require(!t.email().empty(), "accepted token without email");
  require(t.expires_at() + leeway > kNow, "accepted an expired token");
  require(t.issued_at() <= kNow + leeway, "accepted a token issued in the future");
  require(t.jti().size() == 36, "accepted token without a canonical jti");
  require(genuine.token().user_id() == t.user_id(), "the two verifications disagree on user_id");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool sign_it = (data[0] & 1) != 0;
  const std::int64_t leeway = data[1];
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);

  if (!sign_it) {
    check(one_key(), rest, leeway, false);
    check(two_keys(), rest, leeway, false);
    return 0;
  }
  const auto nl = rest.find('\n');
  const std::string_view header = rest.substr(0, nl);
  const std::string_view payload = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  std::string token = iwsec::base64url_encode(header);
  token += '.';
  token += iwsec::base64url_encode(payload);
  token += '.' + hs256(token);
  // Empty segments are malformed before any MAC work; only a token with all
  // three segments is "signed right".
  check(one_key(), token, leeway, !header.empty() && !payload.empty());
  // The two-key signer holds the same key as "k1": the kid path and the
  // no-kid fallback over several keys (a kid naming "old" is a legitimate
  // bad_signature there, so no MAC property).
  check(two_keys(), token, leeway, false);
  return 0;
}
