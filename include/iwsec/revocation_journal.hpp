/// @brief Reading a revocation journal file without opening it for writing: RevocationRecord, read_revocation_journal.
/// @file
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "detail/file.hpp"
#include "detail/revocation_journal.hpp"

namespace iwsec {

/// @brief One record of a revocation journal (see JournalRevocationStore).
struct RevocationRecord {
  std::string jti;
  std::int64_t expires_at = 0;
  std::string owner;  ///< empty: a revocation without an owner (not counted against any cap)
};

/// @brief The well-formed records of the revocation journal at @p path that
/// are live at @p now (a torn last line is skipped, as a replay skips it),
/// without opening it for writing. A missing journal has none. False, with
/// @p error set, when it cannot be read.
inline bool read_revocation_journal(const std::string& path, std::int64_t now, std::vector<RevocationRecord>& out,
                                    std::string& error) {
  detail::unique_fd in = detail::open_fd(path, O_RDONLY | O_NOFOLLOW);
  if (!in) {
    if (errno == ENOENT) return true;
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::string text, block(1 << 16, '\0');
  for (;;) {
    const ssize_t n = ::read(in.get(), &block[0], block.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      error = "cannot read " + path + ": " + std::strerror(errno);
      return false;
    }
    if (n == 0) break;
    text.append(block.data(), static_cast<std::size_t>(n));
  }
  std::string_view rest(text);
  for (auto nl = rest.find('\n'); nl != std::string_view::npos; nl = rest.find('\n')) {
    std::string_view jti, owner;
    std::int64_t exp = 0;
    if (detail::parse_revocation_line(rest.substr(0, nl), jti, exp, owner) && exp > now)
      out.push_back(RevocationRecord{std::string(jti), exp, std::string(owner)});
    rest.remove_prefix(nl + 1);
  }
  return true;
}

}  // namespace iwsec
