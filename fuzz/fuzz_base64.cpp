// libFuzzer target: the strict base64url (JWS) and padded base64 (HTTP Basic)
// decoders. Properties: decoding never crashes, and whatever decodes
// re-encodes to exactly the input (one canonical encoding per byte string);
// encoding any bytes decodes back to them.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <iwsec/iwsec.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using iwsec_fuzz::require;
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  if (const auto url = iwsec::base64url_decode(in)) {
    require(iwsec::base64url_encode(*url) == in, "base64url: accepted text is not the canonical encoding");
  }
  if (const auto std64 = iwsec::base64_decode(in)) {
    require(iwsec::base64_encode(*std64) == in, "base64: accepted text is not the canonical encoding");
  }

  const auto round_url = iwsec::base64url_decode(iwsec::base64url_encode(in));
  require(round_url && *round_url == in, "base64url: encode then decode changed the bytes");
  const auto round_std = iwsec::base64_decode(iwsec::base64_encode(in));
  require(round_std && *round_std == in, "base64: encode then decode changed the bytes");
  return 0;
}
