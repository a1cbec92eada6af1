/// @brief The revocation journal's line format: `<jti> <exp>[ <owner>]`, parsed and written in one place.
/// @file
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace iwsec {
namespace detail {

/// @brief Whether @p w can be one word of a journal line.
inline bool revocation_journal_word(std::string_view w) {
  return !w.empty() && w.size() <= 256 && w.find_first_of(" \t\r\n") == std::string_view::npos;
}

/// @brief Parses one journal line, `<jti> <exp>` or `<jti> <exp> <owner>`
/// (no newline); false when it is malformed. @p owner is empty for the
/// first form. The one parser of the journal format: the store replays
/// with it, and read_revocation_journal (which `iwsec-admin import` reads a
/// data directory with) reads with it.
inline bool parse_revocation_line(std::string_view line, std::string_view& jti, std::int64_t& exp,
                                  std::string_view& owner) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos || space == 0) return false;
  std::string_view exp_text = line.substr(space + 1);
  owner = std::string_view();
  const auto owner_space = exp_text.find(' ');
  if (owner_space != std::string_view::npos) {
    owner = exp_text.substr(owner_space + 1);
    exp_text = exp_text.substr(0, owner_space);
    if (!revocation_journal_word(owner)) return false;
  }
  if (exp_text.empty() || exp_text.size() > 18) return false;
  exp = 0;
  for (char c : exp_text) {
    if (c < '0' || c > '9') return false;  // stop here: a non-digit could push exp past int64 (UB)
    exp = exp * 10 + (c - '0');
  }
  jti = line.substr(0, space);
  return true;
}

/// @brief Appends one journal line, `<jti> <exp>\n` or, with an @p owner,
/// `<jti> <exp> <owner>\n`, the jti written by @p append_jti(out) (so that a
/// UUID key is written without a string of its own). The one writer of the
/// journal format: the store appends and compacts with it.
template <typename AppendJti>
inline void append_revocation_line_with(std::string& out, AppendJti&& append_jti, std::int64_t exp,
                                        std::string_view owner) {
  append_jti(out);
  out += ' ';
  out += std::to_string(exp);
  if (!owner.empty()) {
    out += ' ';
    out += owner;
  }
  out += '\n';
}

/// @brief append_revocation_line_with for a jti held as text.
inline void append_revocation_line(std::string& out, std::string_view jti, std::int64_t exp, std::string_view owner) {
  append_revocation_line_with(out, [jti](std::string& o) { o += jti; }, exp, owner);
}

}  // namespace detail
}  // namespace iwsec
