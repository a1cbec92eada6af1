// libFuzzer target: the Authorization header as the security routes read it
// (detail::read_authorization: count, size bound, scheme, credentials) and
// the Basic user:password split (detail::parse_basic_credentials).
//
// Input: one to three header values separated by '\n' (several values are
// several Authorization headers). Properties: two or more headers are always
// `duplicate`; a value over the bound is `too_long`; an accepted Basic pair
// re-encodes to exactly the credentials sent, its user holds no colon, and
// neither part holds a control byte (RFC 7617 §2).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

#include "fuzz_common.hpp"

namespace {

constexpr std::size_t kMaxAuthorization = 4096;  // iwsec::Options' default

void check_basic(std::string_view credentials) {
  using iwsec_fuzz::require;
  const auto pair = iwsec::detail::parse_basic_credentials(credentials);
  if (!pair) return;
  require(pair->user.find(':') == std::string::npos, "basic: the user holds a colon");
  for (const std::string* part : {&pair->user, &pair->password})
    for (const char ch : *part)
      require(static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7F, "basic: a control byte was let through");
  require(iwsec::base64_encode(pair->user + ":" + pair->password) == credentials,
          "basic: the split does not re-encode to the credentials");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using iwsec::detail::authorization;
  using iwsec_fuzz::require;
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  check_basic(in);  // the split on its own, on any bytes

  httplib::Request req;
  std::size_t values = 0;
  std::size_t first_size = 0;
  std::string_view rest = in;
  while (values < 3) {
    const auto nl = rest.find('\n');
    const std::string_view value = rest.substr(0, nl);
    if (values == 0) first_size = value.size();
    req.headers.emplace("Authorization", std::string(value));
    ++values;
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }

  const auto auth = iwsec::detail::read_authorization(req, kMaxAuthorization);
  if (values > 1) {
    require(auth.type == authorization::kind::duplicate, "authorization: two headers not reported as duplicate");
    return 0;
  }
  if (first_size > kMaxAuthorization) {
    require(auth.type == authorization::kind::too_long, "authorization: over-long value not refused");
    return 0;
  }
  switch (auth.type) {
    case authorization::kind::basic:
      require(!auth.credentials.empty(), "authorization: basic with empty credentials");
      check_basic(auth.credentials);
      break;
    case authorization::kind::bearer:
    case authorization::kind::other:
      require(!auth.credentials.empty(), "authorization: scheme with empty credentials");
      break;
    case authorization::kind::none:
      require(auth.credentials.empty(), "authorization: none with credentials");
      break;
    case authorization::kind::duplicate:
    case authorization::kind::too_long:
      require(false, "authorization: one short header reported as duplicate or too long");
      break;
  }
  return 0;
}
