// The verifier's strict single-pass JSON parser (detail::flat_json_parser):
// it must accept and refuse exactly what parse_json_strict(text, depth, true)
// does for an object, and report members with strings unescaped. Then the
// same at the Signer: peers' layouts (any key order, any whitespace, escaped
// names) verify; every refusal keeps its VerifyError.

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <iwsec/iwsec.hpp>

namespace {

using iwsec::detail::flat_json_parser;
using iwsec::detail::json_kind;
using iwsec::detail::json_value_view;

struct member {
  json_kind kind;
  std::string raw;
  std::string text;
};

struct parsed {
  bool ok = false;
  std::map<std::string, member> members;
};

parsed flat(const std::string& text, std::size_t depth) {
  std::vector<char> scratch(text.size() + 1);
  flat_json_parser parser(text, scratch.data());
  parsed out;
  out.ok = parser.parse_object(depth, [&](std::string_view name, const json_value_view& v) {
    out.members[std::string(name)] = member{v.kind, std::string(v.raw), std::string(v.text)};
  });
  return out;
}

bool reference_accepts(const std::string& text, std::size_t depth) {
  const auto v = iwsec::detail::parse_json_strict(text, depth, true);
  return v && v->is<picojson::object>();
}

// flat and picojson agree on acceptance; on acceptance, on every member.
void agree(const std::string& text, std::size_t depth) {
  const auto mine = flat(text, depth);
  const auto ref = iwsec::detail::parse_json_strict(text, depth, true);
  const bool ref_ok = ref && ref->is<picojson::object>();
  INFO("text: " << text << " depth " << depth);
  REQUIRE(mine.ok == ref_ok);
  if (!ref_ok) return;
  const auto& o = ref->get<picojson::object>();
  REQUIRE(mine.members.size() == o.size());
  for (const auto& kv : o) {
    const auto it = mine.members.find(kv.first);
    REQUIRE(it != mine.members.end());
    const auto& m = it->second;
    if (kv.second.is<std::string>()) {
      CHECK(m.kind == json_kind::string);
      CHECK(m.text == kv.second.get<std::string>());
    } else if (kv.second.is<double>()) {
      CHECK(m.kind == json_kind::number);
      CHECK(std::stod(m.raw) == kv.second.get<double>());
    } else if (kv.second.is<picojson::object>()) {
      CHECK(m.kind == json_kind::object);
      CHECK(reference_accepts(m.raw, depth));  // the raw span is the whole nested object
    } else if (kv.second.is<picojson::array>()) {
      CHECK(m.kind == json_kind::array);
    } else {
      CHECK(m.kind == json_kind::literal);
      CHECK(m.raw == kv.second.serialize());
    }
  }
}

}  // namespace

TEST_CASE("flat_json_parser: accepts objects, reports members unescaped", "[json][parser]") {
  const auto p = flat(" {\"a\" : \"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\", \"b\":-12,\"c\":[1,{}],\"d\":{\"e\":null},"
                      "\"\\u0066\":true,\"g\":false,\"h\":\"\\u00e9\\u20ac\\ud83d\\ude00\\u0000\"}\r\n\t",
                      8);
  REQUIRE(p.ok);
  CHECK(p.members.at("a").text == "x\"y\\z/\b\f\n\r\t");
  CHECK(p.members.at("b").kind == json_kind::number);
  CHECK(p.members.at("b").raw == "-12");
  CHECK(p.members.at("c").kind == json_kind::array);
  CHECK(p.members.at("c").raw == "[1,{}]");
  CHECK(p.members.at("d").kind == json_kind::object);
  CHECK(p.members.at("d").raw == "{\"e\":null}");
  CHECK(p.members.at("f").raw == "true");  // the escaped name is reported decoded
  CHECK(p.members.at("g").kind == json_kind::literal);
  CHECK(p.members.at("h").text == std::string("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\0", 10));
  CHECK(flat("{}", 1).ok);
  CHECK(flat("{\"\":1}", 1).members.count(""));
}

TEST_CASE("flat_json_parser: refuses what parse_json_strict refuses", "[json][parser]") {
  const std::vector<std::string> bad = {
      "", " ", "[]", "\"s\"", "1", "null", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}",
      "{\"a\":1}x", "{\"a\":1}{}", "{'a':1}", "{a:1}", "{\"a\":nul}", "{\"a\":tru}", "{\"a\":True}",
      // duplicates, also after unescaping and nested
      "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}", "{\"x\":{\"a\":1,\"a\":1}}", "{\"x\":[{\"a\":1,\"a\":1}]}",
      // numbers: integers only, RFC 8259 forms, finite
      "{\"a\":01}", "{\"a\":-}", "{\"a\":1.0}", "{\"a\":1e5}", "{\"a\":1E5}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":--1}",
      "{\"a\":1-}", "{\"a\":0x10}", "{\"a\":" + std::string(400, '9') + "}",
      // strings
      "{\"a\":\"\x01\"}", "{\"a\":\"\n\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\u12G4\"}",
      "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\\ud800x\"}",
      "{\"a\":\"\\udbff\\udbff\"}", "{\"a\":\"unterminated}", "{\"a\":\"\\\"}",
      // UTF-8: stray continuation, overlong, surrogate, above U+10FFFF, truncated, 0xFF
      "{\"a\":\"\x80\"}", "{\"a\":\"\xC0\xAF\"}", "{\"a\":\"\xED\xA0\x80\"}", "{\"a\":\"\xF4\x90\x80\x80\"}",
      "{\"a\":\"\xE2\x82\"}", "{\"a\":\"\xFF\"}", "{\"\xC3\":1}",
      // whitespace RFC 8259 does not know, a BOM, bytes outside strings
      "{\"a\":1\f}", "\xEF\xBB\xBF{}", "{\"a\":\xC3\xA9}", std::string("{\"a\":1}\0", 8)};
  for (const auto& text : bad) {
    INFO(text);
    CHECK_FALSE(reference_accepts(text, 8));
    CHECK_FALSE(flat(text, 8).ok);
  }
}

TEST_CASE("flat_json_parser: nesting is bounded exactly as parse_json_strict bounds it", "[json][parser]") {
  for (std::size_t depth = 1; depth <= 5; ++depth) {
    for (std::size_t nest = 0; nest <= 6; ++nest) {
      std::string arrays = "{\"a\":" + std::string(nest, '[') + "1" + std::string(nest, ']') + "}";
      std::string objects = "{";
      for (std::size_t i = 0; i < nest; ++i) objects += "\"o\":{";
      objects += "\"v\":1" + std::string(nest + 1, '}');
      INFO("depth " << depth << " nest " << nest);
      CHECK(flat(arrays, depth).ok == (nest + 1 <= depth));
      CHECK(flat(objects, depth).ok == (nest + 1 <= depth));
      agree(arrays, depth);
      agree(objects, depth);
    }
  }
}

TEST_CASE("flat_json_parser: many members, duplicates found beyond the small set", "[json][parser]") {
  std::string text = "{";
  for (int i = 0; i < 100; ++i) text += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  CHECK(flat(text + "}", 2).ok);
  CHECK_FALSE(flat(text + ",\"k3\":0}", 2).ok);
  CHECK_FALSE(flat(text + ",\"k99\":0}", 2).ok);
  agree(text + ",\"k\\u0035\":0}", 2);
}

TEST_CASE("flat_json_parser: agrees with parse_json_strict on mutated tokens", "[json][parser]") {
  const std::vector<std::string> seeds = {
      "{\"iat\":1700000000,\"sub\":\"{\\n  \\\"email\\\" : \\\"a@b.c\\\",\\n  \\\"scope\\\" : {\\n    \\\"action\\\" : "
      "\\\"password\\\"\\n  }\\n}\",\"jti\":\"0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a11\",\"exp\":1700000900,\"gen\":0}",
      " { \"exp\" : 1 , \"aud\" : [ \"x\" , { \"y\" : [ [ ] ] } ] , \"n\" : null , \"t\" : true , \"\\u00e9\" : \"\\ud83d\\ude00\" } ",
      "{\"email\":\"x@y\",\"scope\":{\"action\":\"refresh_token\",\"more\":{\"deep\":[1,2,3]}}}",
      "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k\\u0031\"}"};
  const std::vector<std::string> pieces = {
      "{", "}", "[", "]", "\"", ":", ",", "\\", "u", "0", "1", "-", "+", ".", "e", " ", "\n", "\t", "null", "true",
      "\\u", "d800", "dc00", "\\ud83d\\ude00", "\\u0000", std::string(1, '\0'), "\x1f", "\x7f", "\x80", "\xC3\xA9",
      "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF", "\xE2\x82", "\"exp\"", "\"a\":{\"b\":[1,{}]},", "00", "-0",
      "1e5", "9007199254740993"};
  std::mt19937 rng(20261127);
  for (int i = 0; i < 30000; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t pos = rng() % (s.size() + 1);
      const std::string& piece = pieces[rng() % pieces.size()];
      switch (rng() % 3) {
        case 0: s.insert(pos, piece); break;
        case 1:
          if (pos < s.size()) s.erase(pos, 1 + rng() % 3);
          break;
        default:
          if (pos < s.size()) s[pos] = piece[0];
      }
    }
    agree(s, 1 + rng() % 8);
  }
}

// ---- at the Signer --------------------------------------------------------------

namespace {

const std::string key(32, 'k');

std::string token_of(const std::string& header, const std::string& payload) {
  const std::string input = iwsec::base64url_encode(header) + "." + iwsec::base64url_encode(payload);
  const auto mac = iwsec::detail::hmac_sha256_key(key).mac(input);
  return input + "." + iwsec::base64url_encode(std::string(reinterpret_cast<const char*>(mac.data()), mac.size()));
}

std::string quoted(const std::string& s) {
  std::string out;
  iwsec::detail::append_json_string(out, s);
  return out;
}

const std::string sub_json = "{\"email\":\"a@b.c\",\"scope\":{\"action\":\"password\"}}";
const std::string jti = "0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a11";

iwsec::VerifyError verify(const std::string& header, const std::string& payload) {
  return iwsec::Signer(key).verify(token_of(header, payload), 1700000100).error();
}

}  // namespace

TEST_CASE("verify: members in any order, any RFC whitespace, escaped names and values", "[signer][parser]") {
  const iwsec::Signer signer(key);
  const std::vector<std::string> payloads = {
      "{\"exp\":1700000900,\"gen\":4,\"jti\":\"" + jti + "\",\"sub\":" + quoted(sub_json) + ",\"iat\":1700000000,\"user_id\":\"u1\"}",
      "\r\n{ \"sub\" :\t" + quoted(" { \"scope\" : { \"x\" : [ ] , \"action\" : \"password\" } ,\n \"email\":\"a@b.c\" } ") +
          " ,\n \"iat\" : 1700000000 , \"jti\" : \"" + jti + "\" , \"gen\" : 4 , \"exp\" : 1700000900 , "
          "\"aud\" : [ \"svc\" , { \"n\" : [ null ] } ] , \"user_id\" : \"u\\u0031\" } \n",
      "{\"\\u0069at\":1700000000,\"s\\u0075b\":" +
          quoted("{\"\\u0065mail\":\"\\u0061@b.c\",\"scope\":{\"action\":\"pass\\u0077ord\"}}") +
          ",\"jti\":\"0b8e1c9e-2f43-4c4e-9a59-3f0e4e1f2a1\\u0031\",\"exp\":1700000900,\"gen\":4,\"user_id\":\"u1\"}"};
  for (const auto& header : {std::string("{\"alg\":\"HS256\"}"), std::string(" {\"typ\":\"JWT\" ,\"alg\":\"HS256\"} "),
                             std::string("{\"\\u0061lg\":\"HS\\u0032\\u00356\",\"t\\u0079p\":\"\\u004aWT\"}")}) {
    for (const auto& payload : payloads) {
      INFO(header << " " << payload);
      const auto r = signer.verify(token_of(header, payload), 1700000100);
      REQUIRE(r.ok());
      CHECK(r.token().email() == "a@b.c");
      CHECK(r.token().jti() == jti);
      CHECK(r.token().action() == iwsec::TokenAction::password);
      CHECK(r.token().refresh_generation() == 4);
      CHECK(r.token().issued_at() == 1700000000);
      CHECK(r.token().expires_at() == 1700000900);
      CHECK(r.token().user_id() == "u1");
    }
  }
}

TEST_CASE("verify: each refusal keeps its reason under the new parser", "[signer][parser]") {
  using E = iwsec::VerifyError;
  const std::string ok_payload =
      "{\"iat\":1700000000,\"sub\":" + quoted(sub_json) + ",\"jti\":\"" + jti + "\",\"exp\":1700000900,\"gen\":0,\"user_id\":\"u1\"}";
  const std::string hs = "{\"alg\":\"HS256\"}";
  CHECK(verify(hs, ok_payload) == E::none);
  // header
  CHECK(verify("{\"alg\":\"HS256\",\"\\u0061lg\":\"HS256\"}", ok_payload) == E::bad_header);
  CHECK(verify("{\"alg\":\"HS256\",\"crit\":[]}", ok_payload) == E::bad_header);
  CHECK(verify("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", ok_payload) == E::bad_header);
  CHECK(verify("{\"alg\":\"HS256\",\"kid\":1}", ok_payload) == E::bad_header);
  CHECK(verify("{\"alg\":\"HS256\",\"kid\":1.5}", ok_payload) == E::bad_header);
  CHECK(verify("{\"alg\":{\"a\":{}}}", ok_payload) == E::bad_header);  // deeper than 2
  CHECK(verify("{\"alg\":{\"a\":1}}", ok_payload) == E::unsupported_algorithm);
  CHECK(verify("{\"alg\":\"HS256 \"}", ok_payload) == E::unsupported_algorithm);
  CHECK(verify("{\"typ\":\"JWT\"}", ok_payload) == E::unsupported_algorithm);
  CHECK(verify("{\"alg\":\"HS256\",\"kid\":\"\"}", ok_payload) == E::unknown_key);
  // payload
  CHECK(verify(hs, ok_payload.substr(0, ok_payload.size() - 1) + ",\"\\u0065xp\":1}") == E::bad_payload);
  CHECK(verify(hs, ok_payload.substr(0, ok_payload.size() - 1) + ",\"x\":{\"a\":1,\"a\":2}}") == E::bad_payload);
  CHECK(verify(hs, ok_payload.substr(0, ok_payload.size() - 1) + ",\"x\":\"\\udc00\"}") == E::bad_payload);
  CHECK(verify(hs, ok_payload.substr(0, ok_payload.size() - 1) + ",\"x\":1.5}") == E::bad_payload);
  CHECK(verify(hs, ok_payload.substr(0, ok_payload.size() - 1) + ",\"x\":[[[[[[[1]]]]]]]}") == E::none);   // depth 8
  CHECK(verify(hs, ok_payload.substr(0, ok_payload.size() - 1) + ",\"x\":[[[[[[[[1]]]]]]]]}") == E::bad_payload);
  CHECK(verify(hs, "[" + ok_payload + "]") == E::bad_payload);
  // claims: sub is a string holding strict JSON
  const auto with_sub = [&](const std::string& sub) {
    return "{\"iat\":1700000000,\"sub\":" + quoted(sub) + ",\"jti\":\"" + jti + "\",\"exp\":1700000900,\"gen\":0,\"user_id\":\"u1\"}";
  };
  CHECK(verify(hs, with_sub("{\"email\":\"\\ud800\",\"scope\":{\"action\":\"password\"}}")) == E::bad_claims);
  CHECK(verify(hs, with_sub("{\"email\":\"a\",\"email\":\"b\",\"scope\":{\"action\":\"password\"}}")) == E::bad_claims);
  CHECK(verify(hs, with_sub("{\"email\":\"a\",\"scope\":{\"action\":\"password\",\"action\":\"password\"}}")) ==
        E::bad_claims);
  CHECK(verify(hs, with_sub("{\"email\":\"a\",\"scope\":{\"action\":\"password\",\"x\":[[1]]}}")) == E::none);
  CHECK(verify(hs, with_sub("{\"email\":\"a\",\"scope\":{\"action\":\"password\",\"x\":[[[1]]]}}")) == E::bad_claims);
  CHECK(verify(hs, with_sub("{\"email\":\"\",\"scope\":{\"action\":\"password\"}}")) == E::bad_claims);
  CHECK(verify(hs, with_sub("{\"email\":\"a\",\"scope\":[]}")) == E::bad_claims);
  CHECK(verify(hs, with_sub("{\"email\":\"a\",\"scope\":{\"action\":\"admin\"}}")) == E::bad_claims);
  CHECK(verify(hs, with_sub("{\"email\":\"a\",\"scope\":{\"action\":\"password\"}} x")) == E::bad_claims);
  // integer claims
  for (const char* exp : {"-0", "-1", "9007199254740992", "\"1700000900\"", "null"}) {
    INFO(exp);
    CHECK(verify(hs, "{\"iat\":1700000000,\"sub\":" + quoted(sub_json) + ",\"jti\":\"" + jti + "\",\"exp\":" + exp +
                         ",\"gen\":0,\"user_id\":\"u1\"}") == E::bad_claims);
  }
  CHECK(verify(hs, "{\"iat\":1700000000,\"sub\":" + quoted(sub_json) + ",\"jti\":\"" + jti +
                       "\",\"exp\":9007199254740991,\"gen\":0,\"user_id\":\"u1\"}") == E::none);
}
