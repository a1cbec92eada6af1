// Unit tests for include/iwsec/detail/base64.hpp: strict base64url (JWS
// segments) and strict standard base64 (HTTP Basic).

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include <iwsec/iwsec.hpp>

namespace {

std::string random_bytes(std::mt19937& rng, std::size_t n) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(byte(rng));
  return out;
}

std::string all_bytes() {
  std::string out;
  for (int i = 0; i < 256; ++i) out.push_back(static_cast<char>(i));
  return out;
}

// RFC 7515 appendix A.1: the HS256 signature and its 32 bytes.
const char* const rfc7515_signature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const unsigned char rfc7515_signature_bytes[32] = {116, 24,  223, 180, 151, 153, 224, 37,  79,  250, 96,
                                                   125, 216, 173, 187, 186, 22,  212, 37,  77,  105, 214,
                                                   191, 240, 91,  88,  5,   88,  83,  132, 141, 121};

}  // namespace

TEST_CASE("base64url: RFC 4648 test vectors, unpadded", "[base64]") {
  CHECK(iwsec::base64url_encode("") == "");
  CHECK(iwsec::base64url_encode("f") == "Zg");
  CHECK(iwsec::base64url_encode("fo") == "Zm8");
  CHECK(iwsec::base64url_encode("foo") == "Zm9v");
  CHECK(iwsec::base64url_encode("foob") == "Zm9vYg");
  CHECK(iwsec::base64url_encode("fooba") == "Zm9vYmE");
  CHECK(iwsec::base64url_encode("foobar") == "Zm9vYmFy");
  CHECK(iwsec::base64url_decode("Zm9vYmE") == std::optional<std::string>("fooba"));
  CHECK(iwsec::base64url_decode("") == std::optional<std::string>(""));
}

TEST_CASE("base64url: uses '-' and '_' where standard base64 uses '+' and '/'", "[base64]") {
  const std::string raw("\xfb\xff\xbf", 3);
  CHECK(iwsec::base64url_encode(raw) == "-_-_");
  CHECK(iwsec::base64_encode(raw) == "+/+/");
  CHECK(iwsec::base64url_decode("-_-_") == std::optional<std::string>(raw));
  CHECK(iwsec::base64_decode("+/+/") == std::optional<std::string>(raw));
}

TEST_CASE("base64url: random byte strings of every length 0..64 round trip", "[base64]") {
  std::mt19937 rng(20240601);
  for (std::size_t n = 0; n <= 64; ++n) {
    for (int round = 0; round < 8; ++round) {
      const std::string raw = random_bytes(rng, n);
      const std::string encoded = iwsec::base64url_encode(raw);
      INFO("length " << n << ", encoded " << encoded);
      CHECK(encoded.size() == (n * 4 + 2) / 3);
      CHECK(encoded.find_first_of("=+/") == std::string::npos);
      const auto decoded = iwsec::base64url_decode(encoded);
      REQUIRE(decoded);
      CHECK(*decoded == raw);
    }
  }
  const std::string every = all_bytes();
  CHECK(iwsec::base64url_decode(iwsec::base64url_encode(every)) == std::optional<std::string>(every));
}

TEST_CASE("base64url: rejects padding, the standard alphabet and whitespace", "[base64]") {
  CHECK_FALSE(iwsec::base64url_decode("Zg=="));
  CHECK_FALSE(iwsec::base64url_decode("Zg="));
  CHECK_FALSE(iwsec::base64url_decode("Zm8="));
  CHECK_FALSE(iwsec::base64url_decode("Zm9v="));
  CHECK_FALSE(iwsec::base64url_decode("===="));
  CHECK_FALSE(iwsec::base64url_decode("+/+/"));
  CHECK_FALSE(iwsec::base64url_decode("ab+c"));
  CHECK_FALSE(iwsec::base64url_decode("ab/c"));
  // Lengths below are valid (not 1 mod 4), so only the odd byte can be the reason.
  CHECK_FALSE(iwsec::base64url_decode("Zm9v Zm8"));
  CHECK_FALSE(iwsec::base64url_decode(" Zm9vZg"));
  CHECK_FALSE(iwsec::base64url_decode("Zm9vZg "));
  CHECK_FALSE(iwsec::base64url_decode("Zm9v\nZm8"));
  CHECK_FALSE(iwsec::base64url_decode("Zm9vZg\n"));
  CHECK_FALSE(iwsec::base64url_decode("Zm9vZ\r\n"));
  CHECK_FALSE(iwsec::base64url_decode("Zm\t9vZg"));
  CHECK_FALSE(iwsec::base64url_decode(std::string("Zm\0v", 4)));
  CHECK_FALSE(iwsec::base64url_decode("Zm9v.Zm8"));
  CHECK_FALSE(iwsec::base64url_decode("Zm\xc3\xa9"));
}

TEST_CASE("base64url: rejects impossible lengths (length % 4 == 1)", "[base64]") {
  CHECK_FALSE(iwsec::base64url_decode("Z"));
  CHECK_FALSE(iwsec::base64url_decode("Zm9vY"));
  CHECK_FALSE(iwsec::base64url_decode("Zm9vYmFyZ"));
  CHECK_FALSE(iwsec::base64url_decode("A"));
  CHECK_FALSE(iwsec::base64url_decode("AAAAA"));
}

TEST_CASE("base64url: rejects non-zero trailing bits (one encoding per byte string)", "[base64]") {
  // "f" is "Zg": 'g' leaves four zero bits; 'h'..'v' set some of them.
  CHECK(iwsec::base64url_decode("Zg"));
  for (const char* alias : {"Zh", "Zi", "Zj", "Zk", "Zl", "Zm", "Zn", "Zo", "Zp", "Zv"}) {
    INFO(alias);
    CHECK_FALSE(iwsec::base64url_decode(alias));
  }
  // "fo" is "Zm8": '8' leaves two zero bits; '9', '-', '_' do not.
  CHECK(iwsec::base64url_decode("Zm8"));
  CHECK_FALSE(iwsec::base64url_decode("Zm9"));
  CHECK_FALSE(iwsec::base64url_decode("Zm-"));
  CHECK_FALSE(iwsec::base64url_decode("Zm_"));
}

TEST_CASE("base64url: the RFC 7515 A.1 signature decodes; its Xl/Xm/Xn aliases do not", "[base64]") {
  const auto sig = iwsec::base64url_decode(rfc7515_signature);
  REQUIRE(sig);
  REQUIRE(sig->size() == 32);
  CHECK(*sig == std::string(reinterpret_cast<const char*>(rfc7515_signature_bytes), 32));
  CHECK(iwsec::base64url_encode(*sig) == rfc7515_signature);

  std::string stem(rfc7515_signature);
  REQUIRE(stem.substr(stem.size() - 2) == "Xk");
  stem.resize(stem.size() - 1);
  for (const char last : {'l', 'm', 'n'}) {
    INFO("variant ending X" << last);
    CHECK_FALSE(iwsec::base64url_decode(stem + last));
  }
}

TEST_CASE("base64url: a random symbol string decodes only when it is the canonical encoding", "[base64]") {
  // Property: decode(s) succeeds exactly for s == encode(decode(s)).
  std::mt19937 rng(7515);
  const std::string symbols = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::uniform_int_distribution<std::size_t> pick(0, symbols.size() - 1);
  std::uniform_int_distribution<std::size_t> length(0, 12);
  std::size_t accepted = 0, rejected = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string s(length(rng), 'A');
    for (auto& c : s) c = symbols[pick(rng)];
    const auto decoded = iwsec::base64url_decode(s);
    if (decoded) {
      ++accepted;
      CHECK(iwsec::base64url_encode(*decoded) == s);
    } else {
      ++rejected;
      // Only impossible lengths or non-zero trailing bits may be refused here.
      const bool bad_length = s.size() % 4 == 1;
      const bool trailing_bits = !bad_length && s.size() % 4 != 0;
      CHECK((bad_length || trailing_bits));
    }
  }
  CHECK(accepted > 0);
  CHECK(rejected > 0);
}

TEST_CASE("base64 (standard): RFC 4648 vectors with padding", "[base64]") {
  CHECK(iwsec::base64_encode("") == "");
  CHECK(iwsec::base64_encode("f") == "Zg==");
  CHECK(iwsec::base64_encode("fo") == "Zm8=");
  CHECK(iwsec::base64_encode("foo") == "Zm9v");
  CHECK(iwsec::base64_encode("foob") == "Zm9vYg==");
  CHECK(iwsec::base64_encode("fooba") == "Zm9vYmE=");
  CHECK(iwsec::base64_encode("foobar") == "Zm9vYmFy");
  CHECK(iwsec::base64_decode("") == std::optional<std::string>(""));
  CHECK(iwsec::base64_decode("Zg==") == std::optional<std::string>("f"));
  CHECK(iwsec::base64_decode("Zm8=") == std::optional<std::string>("fo"));
  CHECK(iwsec::base64_decode("Zm9vYmFy") == std::optional<std::string>("foobar"));
  // What an HTTP Basic header carries.
  CHECK(iwsec::base64_decode("QWxhZGRpbjpvcGVuIHNlc2FtZQ==") == std::optional<std::string>("Aladdin:open sesame"));
}

TEST_CASE("base64 (standard): random byte strings of every length 0..64 round trip", "[base64]") {
  std::mt19937 rng(4648);
  for (std::size_t n = 0; n <= 64; ++n) {
    const std::string raw = random_bytes(rng, n);
    const std::string encoded = iwsec::base64_encode(raw);
    INFO("length " << n << ", encoded " << encoded);
    CHECK(encoded.size() % 4 == 0);
    CHECK(iwsec::base64_decode(encoded) == std::optional<std::string>(raw));
  }
  const std::string every = all_bytes();
  CHECK(iwsec::base64_decode(iwsec::base64_encode(every)) == std::optional<std::string>(every));
}

TEST_CASE("base64 (standard): padding is required and must be exact", "[base64]") {
  CHECK_FALSE(iwsec::base64_decode("Zg"));
  CHECK_FALSE(iwsec::base64_decode("Zg="));
  CHECK_FALSE(iwsec::base64_decode("Zg==="));
  CHECK_FALSE(iwsec::base64_decode("Zm8"));
  CHECK_FALSE(iwsec::base64_decode("Zm9vYg"));
  CHECK_FALSE(iwsec::base64_decode("Zm9vYg="));
  CHECK_FALSE(iwsec::base64_decode("Zm9v===="));
  CHECK_FALSE(iwsec::base64_decode("Z==="));
  CHECK_FALSE(iwsec::base64_decode("===="));
  CHECK_FALSE(iwsec::base64_decode("=Zg="));
  CHECK_FALSE(iwsec::base64_decode("Zg==Zg=="));
  CHECK_FALSE(iwsec::base64_decode("Z=g="));
}

TEST_CASE("base64 (standard): rejects the url alphabet, non-canonical bits and garbage", "[base64]") {
  CHECK_FALSE(iwsec::base64_decode("-_-_"));
  CHECK_FALSE(iwsec::base64_decode("ab-c"));
  CHECK_FALSE(iwsec::base64_decode("ab_c"));
  CHECK_FALSE(iwsec::base64_decode("Zh=="));
  CHECK_FALSE(iwsec::base64_decode("Zm9="));
  CHECK_FALSE(iwsec::base64_decode("!!!!"));
  CHECK_FALSE(iwsec::base64_decode("Zm9vZg=\n"));
  CHECK_FALSE(iwsec::base64_decode("Zm 9"));
  CHECK_FALSE(iwsec::base64_decode("Zm9v Zg="));
  CHECK_FALSE(iwsec::base64_decode("Zm9v\r\nZg"));
  CHECK_FALSE(iwsec::base64_decode(std::string("Zm9\0", 4)));
  CHECK_FALSE(iwsec::base64_decode("Zm9\xff"));
}
