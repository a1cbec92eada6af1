// Unit tests for include/iwsec/detail/json.hpp: the strict picojson front end
// the token verifier and the users file rely on.

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include <iwsec/iwsec.hpp>

using iwsec::detail::append_json_string;
using iwsec::detail::json_member;
using iwsec::detail::json_non_negative_integer;
using iwsec::detail::parse_json_strict;

namespace {

// A refusal must be an empty result, never an exception: an exception escaping
// here fails the CHECK that called it.
bool parses(std::string_view text, std::size_t max_depth = 16) {
  return parse_json_strict(text, max_depth).has_value();
}

std::optional<std::int64_t> integer_of(const std::string& text) {
  const auto v = parse_json_strict(text);
  if (!v) throw std::runtime_error("test input is not JSON: " + text);
  return json_non_negative_integer(*v);
}

std::string json_quoted(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

}  // namespace

TEST_CASE("parse_json_strict: accepts ordinary JSON and returns its value", "[json]") {
  const auto v = parse_json_strict(R"({"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-2.5})");
  REQUIRE(v);
  REQUIRE(v->is<picojson::object>());
  const auto& o = v->get<picojson::object>();
  CHECK(o.size() == 4);
  CHECK(o.at("a").get<double>() == 1.0);
  CHECK(o.at("b").get<picojson::array>().size() == 3);
  CHECK(o.at("c").get<picojson::object>().at("d").get<std::string>() == "e");
  CHECK(o.at("f").get<double>() == -2.5);
  CHECK(parses("1"));
  CHECK(parses("\"text\""));
  CHECK(parses("[]"));
  CHECK(parses("{}"));
  CHECK(parses("1.7976931348623157e308"));
}

TEST_CASE("parse_json_strict: duplicate member names are refused at every level", "[json]") {
  CHECK_FALSE(parses(R"({"a":1,"a":2})"));
  CHECK_FALSE(parses(R"({"a":1,"a":1})"));
  CHECK_FALSE(parses(R"({"alg":"HS256","alg":"none"})"));
  CHECK_FALSE(parses(R"({"x":{"a":1,"a":2}})"));
  CHECK_FALSE(parses(R"([{"a":1},{"b":2,"b":3}])"));
  CHECK_FALSE(parses(R"({"x":[{"y":{"z":1,"z":1}}]})"));
  // The same name in sibling objects is fine.
  CHECK(parses(R"({"x":{"a":1},"y":{"a":1}})"));
  CHECK(parses(R"([{"a":1},{"a":1}])"));
  // Keys that differ only in case are different keys.
  CHECK(parses(R"({"a":1,"A":1})"));
}

TEST_CASE("parse_json_strict: non-finite numbers are refused without throwing", "[json]") {
  CHECK_FALSE(parses("1e309"));
  CHECK_FALSE(parses("-1e309"));
  CHECK_FALSE(parses(R"({"exp":1e309})"));
  CHECK_FALSE(parses(R"({"exp":-1e309})"));
  CHECK_FALSE(parses(R"([1,2,1e400])"));
  CHECK_FALSE(parses(R"({"a":{"b":[1e999]}})"));
}

TEST_CASE("parse_json_strict: nesting deeper than max_depth is refused", "[json]") {
  const auto nested = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(parses(nested(16)));
  CHECK_FALSE(parses(nested(17)));
  CHECK(parses(nested(3), 3));
  CHECK_FALSE(parses(nested(4), 3));
  CHECK(parses("1", 0));
  CHECK_FALSE(parses("[]", 0));
  CHECK_FALSE(parses("{}", 0));
  CHECK(parses(R"({"a":{"b":1}})", 2));
  CHECK_FALSE(parses(R"({"a":{"b":{}}})", 2));
  // Siblings do not add up: depth is about nesting, not count.
  CHECK(parses("[[],[],[],[[]],[]]", 3));
  // Very deep input is stopped by the limit, long before the stack runs out.
  CHECK_FALSE(parses(std::string(200000, '[')));
  CHECK_FALSE(parses(nested(100000)));
  std::string objects;
  for (int i = 0; i < 50000; ++i) objects += "{\"a\":";
  CHECK_FALSE(parses(objects));
}

TEST_CASE("parse_json_strict: one value only; surrounding whitespace allowed", "[json]") {
  CHECK(parses(" \t\r\n{} \t\r\n"));
  CHECK(parses("\n[1, 2 ,\t3]\n"));
  CHECK(parses("{ \"a\" : 1 }"));
  CHECK_FALSE(parses("{}x"));
  CHECK_FALSE(parses("{} x"));
  CHECK_FALSE(parses("{}{}"));
  CHECK_FALSE(parses("1 2"));
  CHECK_FALSE(parses("[1]]"));
  CHECK_FALSE(parses(std::string("{}\0", 3)));
  CHECK_FALSE(parses("{}\x0b"));
}

TEST_CASE("parse_json_strict: syntax errors are refused", "[json]") {
  CHECK_FALSE(parses(""));
  CHECK_FALSE(parses("   "));
  CHECK_FALSE(parses("{'a':1}"));
  CHECK_FALSE(parses("{a:1}"));
  CHECK_FALSE(parses("[1,]"));
  CHECK_FALSE(parses("{\"a\":1,}"));
  CHECK_FALSE(parses("tru"));
  CHECK_FALSE(parses("\"unterminated"));
  CHECK_FALSE(parses("[1"));
  CHECK_FALSE(parses("{\"a\" 1}"));
}

TEST_CASE("append_json_string: escapes quotes, backslashes and every control byte", "[json]") {
  CHECK(json_quoted("") == "\"\"");
  CHECK(json_quoted("plain") == "\"plain\"");
  CHECK(json_quoted("a\"b") == R"("a\"b")");
  CHECK(json_quoted("a\\b") == R"("a\\b")");
  CHECK(json_quoted("\n\r\t\b\f") == R"("\n\r\t\b\f")");
  CHECK(json_quoted(std::string("\0", 1)) == R"("\u0000")");
  CHECK(json_quoted("\x01") == R"("\u0001")");
  CHECK(json_quoted("\x1f") == R"("\u001f")");
  CHECK(json_quoted("\x7f") == R"("\u007f")");
  CHECK(json_quoted("/") == "\"/\"");
  CHECK(json_quoted("caf\xc3\xa9") == "\"caf\xc3\xa9\"");  // UTF-8 passes through

  // No raw control byte survives anywhere in the output.
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls.push_back(static_cast<char>(c));
  controls.push_back('\x7f');
  const std::string out = json_quoted(controls);
  for (const char c : out) {
    const auto u = static_cast<unsigned char>(c);
    CHECK((u >= 0x20 && u != 0x7f));
  }

  // It appends rather than replacing.
  std::string acc = "x=";
  append_json_string(acc, "y");
  CHECK(acc == "x=\"y\"");
}

TEST_CASE("append_json_string: output round-trips through picojson", "[json]") {
  std::string every;
  for (int c = 0; c < 256; ++c) every.push_back(static_cast<char>(c));
  for (const std::string& s : {every, std::string("\"\\\"\\\\"), std::string("snow \xe2\x98\x83 man"),
                               std::string("a\0b\0", 4), std::string("</script>")}) {
    const std::string text = json_quoted(s);
    picojson::value v;
    const std::string error = picojson::parse(v, text);
    INFO(error);
    REQUIRE(error.empty());
    REQUIRE(v.is<std::string>());
    CHECK(v.get<std::string>() == s);

    // The strict parser also insists on valid UTF-8: every byte value at once is not.
    const auto strict = parse_json_strict(text);
    if (s == every) {
      CHECK_FALSE(strict);
    } else {
      REQUIRE(strict);
      CHECK(strict->get<std::string>() == s);
    }
  }
}

TEST_CASE("parse_json_strict: RFC 8259 numbers only, integers only on request", "[json]") {
  for (const char* good : {"0", "-0", "7", "-12", "1.5", "-0.25", "1e5", "1E+5", "2.5e-3", "[1,2]", "{\"a\":10}"}) {
    INFO(good);
    CHECK(parse_json_strict(good));
  }
  for (const char* bad : {"01", "-01", "00", "1.", ".5", "-", "1e", "1e+", "+1", "1.2.3", "1e5e5", "0x10", "--1",
                          "[01]", "{\"a\":1.}"}) {
    INFO(bad);
    CHECK_FALSE(parse_json_strict(bad));
  }
  CHECK(parse_json_strict("[1,22,333]", 4, true));
  for (const char* fractional : {"1.5", "1e5", "[1,2.0]", "{\"exp\":1700000000.0}"}) {
    INFO(fractional);
    CHECK_FALSE(parse_json_strict(fractional, 4, true));
  }
  // Digits inside strings are not numbers.
  CHECK(parse_json_strict("{\"a\":\"01.5e\"}", 4, true));
}

TEST_CASE("parse_json_strict: strings must be valid UTF-8", "[json]") {
  for (const std::string good : {"\"snow \xe2\x98\x83\"", "\"\xf0\x9f\x98\x80\"", "\"\xc3\xa9\"", "\"\xf4\x8f\xbf\xbf\""}) {
    CHECK(parse_json_strict(good));
  }
  for (const std::string bad : {"\"\xff\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"",
                                "\"\xf4\x90\x80\x80\"", "\"\xc3\"", "\"\x80\"", "\"\xe2\x98\""}) {
    CHECK_FALSE(parse_json_strict(bad));
  }
}

TEST_CASE("json_non_negative_integer: accepts integers in [0, 2^53)", "[json]") {
  CHECK(integer_of("0") == std::optional<std::int64_t>(0));
  CHECK(integer_of("1") == std::optional<std::int64_t>(1));
  CHECK(integer_of("1700000000") == std::optional<std::int64_t>(1700000000));
  CHECK(integer_of("9007199254740991") == std::optional<std::int64_t>(9007199254740991));
}

TEST_CASE("json_non_negative_integer: refuses negatives, fractions, 2^53 and beyond, non-numbers", "[json]") {
  CHECK_FALSE(integer_of("-1"));
  CHECK_FALSE(integer_of("-1700000000"));
  CHECK_FALSE(integer_of("1.5"));
  CHECK_FALSE(integer_of("0.5"));
  CHECK_FALSE(integer_of("1700000000.25"));
  CHECK_FALSE(integer_of("9007199254740992"));  // 2^53
  CHECK_FALSE(integer_of("9007199254740993"));  // 2^53 + 1, rounds to 2^53 as a double
  CHECK_FALSE(integer_of("9223372036854775808"));  // 2^63
  CHECK_FALSE(integer_of("18446744073709551616"));  // 2^64
  CHECK_FALSE(integer_of("1e300"));
  CHECK_FALSE(integer_of("\"1700000000\""));
  CHECK_FALSE(integer_of("\"0\""));
  CHECK_FALSE(integer_of("true"));
  CHECK_FALSE(integer_of("false"));
  CHECK_FALSE(integer_of("null"));
  CHECK_FALSE(integer_of("[1]"));
  CHECK_FALSE(integer_of("{\"a\":1}"));
}

TEST_CASE("json_member: finds a member or returns null", "[json]") {
  const auto v = parse_json_strict(R"({"a":1,"b":"x"})");
  REQUIRE(v);
  const auto& o = v->get<picojson::object>();
  REQUIRE(json_member(o, "a"));
  CHECK(json_member(o, "a")->get<double>() == 1.0);
  REQUIRE(json_member(o, "b"));
  CHECK(json_member(o, "b")->get<std::string>() == "x");
  CHECK(json_member(o, "c") == nullptr);
  CHECK(json_member(o, "A") == nullptr);
}
