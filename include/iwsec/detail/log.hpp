/// @brief The operator's log of the library's file-backed parts: a line sink, and its default on stderr.
/// @file
#pragma once

#include <cstdio>
#include <functional>
#include <string>

namespace iwsec {
namespace detail {

/// @brief Where a store or journal tells the operator what it did: one line, no newline.
using Log = std::function<void(const std::string& line)>;

/// @brief The default Log: "iwsec: <line>" on stderr, in one write, flushed at once.
inline Log stderr_log() {
  return [](const std::string& line) {
    const std::string text = "iwsec: " + line + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  };
}

}  // namespace detail
}  // namespace iwsec
