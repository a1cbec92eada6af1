#pragma once
/// @file
/// @brief picojson with the strictness a token verifier needs: duplicate keys,
/// non-finite numbers and deep nesting are parse errors, never exceptions.

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include <picojson.h>

#include "hex.hpp"

// iwsec reads every JSON number as a double and checks integrality itself, so
// it works whether or not the host compiles picojson with PICOJSON_USE_INT64;
// the only requirement is that picojson's own parse entry points exist.

namespace iwsec {
namespace detail {

/// @brief A picojson parse context that refuses what RFC 8725 says to refuse.
class strict_json_context {
 public:
  strict_json_context(picojson::value* out, std::size_t depth_left, bool* rejected)
      : out_(out), depth_left_(depth_left), rejected_(rejected) {}
  strict_json_context(const strict_json_context&) = delete;
  strict_json_context& operator=(const strict_json_context&) = delete;

  bool set_null() {
    *out_ = picojson::value();
    return true;
  }
  bool set_bool(bool b) {
    *out_ = picojson::value(b);
    return true;
  }
#ifdef PICOJSON_USE_INT64
  bool set_int64(std::int64_t i) {
    *out_ = picojson::value(static_cast<double>(i));
    return true;
  }
#endif
  bool set_number(double f) {
    // picojson's value(double) throws on inf/nan ("1e309"), and picojson
    // ignores this function's result, so the refusal is recorded on the side.
    if (!std::isfinite(f)) {
      *rejected_ = true;
      return false;
    }
    *out_ = picojson::value(f);
    return true;
  }
  template <typename Iter>
  bool parse_string(picojson::input<Iter>& in) {
    *out_ = picojson::value(picojson::string_type, false);
    return picojson::_parse_string(out_->get<std::string>(), in);
  }
  bool parse_array_start() {
    if (depth_left_ == 0) return false;
    --depth_left_;
    *out_ = picojson::value(picojson::array_type, false);
    return true;
  }
  template <typename Iter>
  bool parse_array_item(picojson::input<Iter>& in, std::size_t) {
    auto& a = out_->get<picojson::array>();
    a.emplace_back();
    strict_json_context ctx(&a.back(), depth_left_, rejected_);
    return picojson::_parse(ctx, in);
  }
  bool parse_array_stop(std::size_t) {
    ++depth_left_;
    return true;
  }
  bool parse_object_start() {
    if (depth_left_ == 0) return false;
    --depth_left_;
    *out_ = picojson::value(picojson::object_type, false);
    return true;
  }
  template <typename Iter>
  bool parse_object_item(picojson::input<Iter>& in, const std::string& key) {
    auto& o = out_->get<picojson::object>();
    auto inserted = o.emplace(key, picojson::value());
    if (!inserted.second) return false;  // duplicate member name
    strict_json_context ctx(&inserted.first->second, depth_left_, rejected_);
    return picojson::_parse(ctx, in);
  }
  bool parse_object_stop() {
    ++depth_left_;
    return true;
  }

 private:
  picojson::value* out_;
  std::size_t depth_left_;
  bool* rejected_;
};

/// @brief Length of the valid UTF-8 sequence starting at @p i (a byte >= 0x80),
/// or 0: no overlong forms, no surrogates, nothing above U+10FFFF.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  const unsigned c = byte(i);
  const auto cont = [&](std::size_t k) { return (byte(k) & 0xC0u) == 0x80u; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;   // overlong
    if (c == 0xED && c1 >= 0xA0) return 0;  // UTF-16 surrogate
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 >= 0x90) return 0;  // above U+10FFFF
    return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

/// @brief Whether @p s is entirely valid UTF-8.
inline bool is_valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
    } else {
      const std::size_t n = utf8_sequence_length(s, i);
      if (n == 0) return false;
      i += n;
    }
  }
  return true;
}

/// @brief What picojson lets through and RFC 8259 does not: numbers such as
/// `01`, `1.`, `.5`, `-` or `1e`, and invalid UTF-8 inside strings. With
/// @p integers_only, a number may not have a fraction or an exponent either.
inline bool json_text_is_strict(std::string_view text, bool integers_only) noexcept {
  const auto digit = [&](std::size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"') {
      for (++i; i < text.size() && text[i] != '"';) {
        const auto b = static_cast<unsigned char>(text[i]);
        if (b == '\\') {
          i += 2;  // picojson checks the escape itself
        } else if (b < 0x80) {
          ++i;
        } else {
          const std::size_t n = utf8_sequence_length(text, i);
          if (n == 0) return false;
          i += n;
        }
      }
      ++i;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t j = i + (c == '-' ? 1 : 0);
      if (!digit(j)) return false;
      if (text[j] == '0') {
        ++j;
      } else {
        while (digit(j)) ++j;
      }
      if (j < text.size() && text[j] == '.') {
        if (integers_only || !digit(++j)) return false;
        while (digit(j)) ++j;
      }
      if (j < text.size() && (text[j] == 'e' || text[j] == 'E')) {
        if (integers_only) return false;
        ++j;
        if (j < text.size() && (text[j] == '+' || text[j] == '-')) ++j;
        if (!digit(j)) return false;
        while (digit(j)) ++j;
      }
      // Whatever picojson would still swallow as part of this number ("01", "1.2.3", "1e5e5").
      if (j < text.size() && (digit(j) || text[j] == '.' || text[j] == 'e' || text[j] == 'E' || text[j] == '+' ||
                              text[j] == '-'))
        return false;
      i = j;
    } else {
      ++i;
    }
  }
  return true;
}

/// @brief Parses one complete JSON text strictly; trailing bytes other than
/// whitespace, duplicate keys, non-finite numbers or nesting deeper than
/// @p max_depth make it fail, as do the forms json_text_is_strict refuses.
inline std::optional<picojson::value> parse_json_strict(std::string_view text, std::size_t max_depth = 16,
                                                        bool integers_only = false) {
  if (!json_text_is_strict(text, integers_only)) return std::nullopt;
  picojson::value out;
  bool rejected = false;
  strict_json_context ctx(&out, max_depth, &rejected);
  picojson::input<std::string_view::const_iterator> in(text.begin(), text.end());
  try {
    if (!picojson::_parse(ctx, in) || rejected) return std::nullopt;
  } catch (...) {  // allocation failure or a picojson invariant: a parse error to us
    return std::nullopt;
  }
  in.skip_ws();
  if (in.getc() != -1) return std::nullopt;
  return out;
}


// ---- The verifier's parser -------------------------------------------------
//
// parse_json_strict builds a picojson DOM; the token verifier instead walks
// the text once with flat_json_parser, which accepts and refuses exactly what
// parse_json_strict(text, max_depth, /*integers_only=*/true) does: RFC 8259
// syntax (whitespace " \t\n\r" only), integers only (no fraction or exponent,
// no leading zero, nothing that overflows a double), strings of valid UTF-8
// without raw control characters, the escapes \" \\ \/ \b \f \n \r \t \uXXXX
// with surrogates only in valid pairs, no duplicate member names (compared
// after unescaping) in any object, and nesting no deeper than max_depth. It
// reports the top-level members of an object to a callback, with strings
// already unescaped, and allocates nothing for an object of up to 16 members
// per level.

/// @brief What a JSON value is, as flat_json_parser reports it.
enum class json_kind : unsigned char { string, number, object, array, literal };

/// @brief One member value: its kind, its text as written, and for a string
/// its unescaped contents.
struct json_value_view {
  json_kind kind = json_kind::literal;
  std::string_view raw;   ///< the value's text, as in the input
  std::string_view text;  ///< strings only: the contents, unescaped
};

/// @brief Member names of one object, for the duplicate check.
class json_key_set {
 public:
  json_key_set() = default;
  json_key_set(const json_key_set&) = delete;
  json_key_set& operator=(const json_key_set&) = delete;
  /// @brief False when @p key was already there.
  bool insert(std::string_view key) {
    if (big_) return big_->insert(key).second;
    for (std::size_t i = 0; i < n_; ++i)
      if (size_[i] == key.size() && (key.empty() || (data_[i][0] == key[0] &&
                                                     std::memcmp(data_[i], key.data(), key.size()) == 0)))
        return false;
    if (n_ < small_capacity) {
      data_[n_] = key.data();
      size_[n_++] = key.size();
      return true;
    }
    big_ = std::make_unique<std::unordered_set<std::string_view>>();
    for (std::size_t i = 0; i < n_; ++i) big_->insert(std::string_view(data_[i], size_[i]));
    return big_->insert(key).second;
  }

 private:
  static constexpr std::size_t small_capacity = 16;
  const char* data_[small_capacity];  // left uninitialised: only [0, n_) is read
  std::size_t size_[small_capacity];
  std::size_t n_ = 0;
  std::unique_ptr<std::unordered_set<std::string_view>> big_;
};

/// @brief A strict single-pass JSON parser for one object (see above).
class flat_json_parser {
 public:
  /// @param scratch room for text.size() bytes: unescaped strings go there
  /// (an unescaped string is never longer than its escaped form).
  flat_json_parser(std::string_view text, char* scratch) noexcept
      : p_(text.data()), end_(text.data() + text.size()), scratch_(scratch) {}

  /// @brief Parses the whole text as one object nested at most @p max_depth
  /// deep, calling on_member(std::string_view name, const json_value_view&)
  /// for each top-level member. False on any violation (the callback may
  /// already have run for earlier members).
  template <typename OnMember>
  bool parse_object(std::size_t max_depth, OnMember&& on_member) {
    skip_ws();
    if (p_ == end_ || *p_ != '{') return false;
    if (!object(max_depth, on_member)) return false;
    skip_ws();
    return p_ == end_;
  }

 private:
  struct ignore_members {
    void operator()(std::string_view, const json_value_view&) const noexcept {}
  };

  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  /// @brief A byte that stands for itself inside a string: ASCII, not a
  /// control character, quote or backslash.
  static bool plain_ascii(char ch) noexcept {
    struct table {
      bool plain[256];
      constexpr table() : plain() {
        for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
      }
    };
    static constexpr table t{};
    return t.plain[static_cast<unsigned char>(ch)];
  }

  /// @brief The first byte at or after @p p that is not plain_ascii (or @p end),
  /// eight bytes at a time while none of them needs a look.
  static const char* skip_plain(const char* p, const char* end) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
      std::uint64_t x;
      std::memcpy(&x, p, 8);
      const std::uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
      // Exact "is any byte ...": < 0x20, == '"', == '\\', or >= 0x80.
      const std::uint64_t flags = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) |
                                  ((backslash - ones) & ~backslash) | x;
      if (flags & highs) break;
      p += 8;
    }
    while (p != end && plain_ascii(*p)) ++p;
    return p;
  }

  void skip_ws() noexcept {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  template <typename OnMember>
  bool object(std::size_t depth_left, OnMember& on_member) {
    if (depth_left == 0) return false;
    ++p_;  // '{'
    skip_ws();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    json_key_set keys;
    for (;;) {
      skip_ws();
      std::string_view key;
      if (p_ == end_ || *p_ != '"' || !string(key)) return false;
      skip_ws();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      if (!keys.insert(key)) return false;
      json_value_view v;
      if (!value(depth_left - 1, v)) return false;
      on_member(key, static_cast<const json_value_view&>(v));
      skip_ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != '}') return false;
      ++p_;
      return true;
    }
  }

  bool array(std::size_t depth_left) {
    if (depth_left == 0) return false;
    ++p_;  // '['
    skip_ws();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      json_value_view v;
      if (!value(depth_left - 1, v)) return false;
      skip_ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != ']') return false;
      ++p_;
      return true;
    }
  }

  bool literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  bool value(std::size_t depth_left, json_value_view& v) {
    skip_ws();
    if (p_ == end_) return false;
    const char* start = p_;
    switch (*p_) {
      case '"':
        v.kind = json_kind::string;
        if (!string(v.text)) return false;
        break;
      case '{': {
        v.kind = json_kind::object;
        ignore_members ignore;
        if (!object(depth_left, ignore)) return false;
        break;
      }
      case '[':
        v.kind = json_kind::array;
        if (!array(depth_left)) return false;
        break;
      case 't':
        if (!literal("true")) return false;
        break;
      case 'f':
        if (!literal("false")) return false;
        break;
      case 'n':
        if (!literal("null")) return false;
        break;
      default:
        v.kind = json_kind::number;
        if (!number()) return false;
    }
    v.raw = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  // -?(0|[1-9][0-9]*), not followed by a fraction, an exponent or more of a
  // number, and finite as a double.
  bool number() {
    const char* start = p_;
    if (*p_ == '-') ++p_;
    if (p_ == end_ || !is_digit(*p_)) return false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (p_ != end_ && (is_digit(*p_) || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' || *p_ == '-'))
      return false;
    // Up to 308 digits is always finite; beyond, ask strtod as picojson does.
    if (p_ - start > 300) {
      const std::string digits(start, p_);
      if (!std::isfinite(std::strtod(digits.c_str(), nullptr))) return false;
    }
    return true;
  }

  static int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  bool quad_hex(unsigned& out) noexcept {
    if (end_ - p_ < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex_value(p_[i]);
      if (h < 0) return false;
      v = (v << 4) | static_cast<unsigned>(h);
    }
    p_ += 4;
    out = v;
    return true;
  }

  static char* put_utf8(char* w, unsigned cp) noexcept {
    if (cp < 0x80) {
      *w++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *w++ = static_cast<char>(0xC0 | (cp >> 6));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *w++ = static_cast<char>(0xE0 | (cp >> 12));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *w++ = static_cast<char>(0xF0 | (cp >> 18));
      *w++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *w++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
    return w;
  }

  /// @brief At a '"': the string's contents, unescaped (a view of the input
  /// when it holds no escape, else of the scratch area).
  bool string(std::string_view& out) {
    ++p_;  // '"'
    const char* start = p_;
    for (;;) {  // the common case: no escape at all
      p_ = skip_plain(p_, end_);
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        out = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c == '\\') break;
      if (c < 0x20) return false;
      if (c < 0x80) {
        ++p_;
      } else {
        const std::size_t n = utf8_sequence_length(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
        if (n == 0) return false;
        p_ += n;
      }
    }
    char* const begin = scratch_;
    char* w = begin;
    std::memcpy(w, start, static_cast<std::size_t>(p_ - start));
    w += p_ - start;
    for (;;) {
      while (p_ != end_ && plain_ascii(*p_)) *w++ = *p_++;  // runs between escapes are short
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        out = std::string_view(begin, static_cast<std::size_t>(w - begin));
        scratch_ = w;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++p_ == end_) return false;
        switch (*p_++) {
          case '"': *w++ = '"'; break;
          case '\\': *w++ = '\\'; break;
          case '/': *w++ = '/'; break;
          case 'b': *w++ = '\b'; break;
          case 'f': *w++ = '\f'; break;
          case 'n': *w++ = '\n'; break;
          case 'r': *w++ = '\r'; break;
          case 't': *w++ = '\t'; break;
          case 'u': {
            unsigned cp = 0;
            if (!quad_hex(cp)) return false;
            if (cp >= 0xD800 && cp <= 0xDFFF) {
              if (cp >= 0xDC00) return false;  // a low surrogate first
              unsigned low = 0;
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
              p_ += 2;
              if (!quad_hex(low) || low < 0xDC00 || low > 0xDFFF) return false;
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            w = put_utf8(w, cp);
            break;
          }
          default: return false;
        }
      } else if (c < 0x80) {
        *w++ = static_cast<char>(c);
        ++p_;
      } else {
        const std::size_t n = utf8_sequence_length(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
        if (n == 0) return false;
        std::memcpy(w, p_, n);
        w += n;
        p_ += n;
      }
    }
  }

  const char* p_;
  const char* end_;
  char* scratch_;
};

/// @brief A number member that is an integer in [0, 2^53), from its text:
/// what json_non_negative_integer accepts of the same value ("-0" included
/// among the refused).
inline std::optional<std::int64_t> json_non_negative_integer(const json_value_view& v) noexcept {
  if (v.kind != json_kind::number || v.raw.empty() || v.raw[0] == '-' || v.raw.size() > 16) return std::nullopt;
  std::int64_t n = 0;
  for (char c : v.raw) n = n * 10 + (c - '0');
  if (n >= (std::int64_t{1} << 53)) return std::nullopt;
  return n;
}

/// @brief Copies @p s to @p w; returns the end.
inline char* put(char* w, std::string_view s) noexcept {
  std::memcpy(w, s.data(), s.size());
  return w + s.size();
}

/// @brief Writes @p v in decimal (at most 20 chars); returns the end.
inline char* put_int(char* w, std::int64_t v) noexcept { return std::to_chars(w, w + 20, v).ptr; }

/// @brief Writes @p s JSON-escaped, without quotes (at most 6 chars per
/// byte); returns the end. The one escaping rule of iwsec's JSON output.
inline char* put_json_escaped(char* w, std::string_view s) noexcept {
  for (unsigned char c : s) {
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) {
      *w++ = static_cast<char>(c);
      continue;
    }
    *w++ = '\\';
    switch (c) {
      case '"': *w++ = '"'; break;
      case '\\': *w++ = '\\'; break;
      case '\b': *w++ = 'b'; break;
      case '\f': *w++ = 'f'; break;
      case '\n': *w++ = 'n'; break;
      case '\r': *w++ = 'r'; break;
      case '\t': *w++ = 't'; break;
      default:
        w = put(w, "u00");
        *w++ = hex_digit(c >> 4);
        *w++ = hex_digit(c);
    }
  }
  return w;
}

/// @brief Appends @p s as a JSON string literal (quotes included), escaped
/// by put_json_escaped.
inline void append_json_string(std::string& out, std::string_view s) {
  const std::size_t at = out.size();
  out.resize(at + 2 + 6 * s.size());  // put_json_escaped writes at most 6 chars per byte
  char* w = &out[at];
  *w++ = '"';
  w = put_json_escaped(w, s);
  *w++ = '"';
  out.resize(static_cast<std::size_t>(w - out.data()));
}

/// @brief Writes @p s JSON-escaped and then escaped again (a string inside a
/// JSON string), at most 7 chars per byte; returns the end.
inline char* put_json_escaped_twice(char* w, std::string_view s) noexcept {
  for (unsigned char c : s) {
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) {
      *w++ = static_cast<char>(c);
      continue;
    }
    char once[6];
    const char* end = put_json_escaped(once, std::string_view(reinterpret_cast<const char*>(&c), 1));
    w = put_json_escaped(w, std::string_view(once, static_cast<std::size_t>(end - once)));
  }
  return w;
}

/// @brief A JSON number that is an integer in [0, 2^53): the only NumericDate
/// (and counter) form iwsec accepts.
inline std::optional<std::int64_t> json_non_negative_integer(const picojson::value& v) {
  if (!v.is<double>()) return std::nullopt;
  const double d = v.get<double>();
  // ">=": every text above 2^53 - 1 rounds to at least 2^53, so none slips in.
  if (!(d >= 0.0) || std::signbit(d) || d >= 9007199254740992.0 || std::floor(d) != d) return std::nullopt;
  return static_cast<std::int64_t>(d);
}

/// @brief The member @p key of object @p obj, or null when absent.
inline const picojson::value* json_member(const picojson::object& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &it->second;
}

}  // namespace detail
}  // namespace iwsec
