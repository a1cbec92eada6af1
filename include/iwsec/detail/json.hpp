#pragma once
/// @file
/// @brief picojson with the strictness a token verifier needs: duplicate keys,
/// non-finite numbers and deep nesting are parse errors, never exceptions.

#include <charconv>
#include <cmath>
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <picojson.h>

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

/// @brief Appends @p s as a JSON string literal (quotes included).
inline void append_json_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

/// @brief Copies @p s to @p w; returns the end.
inline char* put(char* w, std::string_view s) noexcept {
  std::memcpy(w, s.data(), s.size());
  return w + s.size();
}

/// @brief Writes @p v in decimal (at most 20 chars); returns the end.
inline char* put_int(char* w, std::int64_t v) noexcept { return std::to_chars(w, w + 20, v).ptr; }

/// @brief Writes @p s JSON-escaped, without quotes, exactly as
/// append_json_string does (at most 6 chars per byte); returns the end.
inline char* put_json_escaped(char* w, std::string_view s) noexcept {
  static const char hex[] = "0123456789abcdef";
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
        *w++ = hex[c >> 4];
        *w++ = hex[c & 15];
    }
  }
  return w;
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
