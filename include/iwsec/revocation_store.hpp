#pragma once
/// @file
/// @brief Revoked ("blacklisted") access tokens: the RevocationStore
/// interface, an in-memory store and a durable journal.

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <sys/stat.h>

#include "clock.hpp"
#include "detail/file.hpp"

namespace iwsec {

/// @brief Where revoked token ids live until their tokens expire.
class RevocationStore {
 public:
  virtual ~RevocationStore() = default;

  /// @brief Revokes the token @p jti until @p expires_at. Returns true only
  /// once the revocation is as durable as this store promises.
  virtual bool revoke(std::string_view jti, std::int64_t expires_at) = 0;

  /// @brief Whether @p jti is revoked.
  virtual bool is_revoked(std::string_view jti) = 0;
};

/// @brief Revocations in process memory; entries are dropped once their
/// token has expired (an expired token fails verification on its own).
class MemoryRevocationStore : public RevocationStore {
 public:
  explicit MemoryRevocationStore(Clock clock = system_now) : clock_(std::move(clock)) {}

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    insert_locked(std::string(jti), expires_at);
    return true;
  }

  bool is_revoked(std::string_view jti) override {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return entries_.find(std::string(jti)) != entries_.end();
  }

  /// @brief How many revocations are held (expired ones may linger until the next sweep).
  std::size_t size() {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return entries_.size();
  }

 protected:
  void insert_locked(std::string jti, std::int64_t expires_at) {
    auto& exp = entries_[std::move(jti)];
    exp = std::max(exp, expires_at);
    if (entries_.size() >= next_sweep_) {
      const std::int64_t now = clock_();
      for (auto it = entries_.begin(); it != entries_.end();) it = it->second <= now ? entries_.erase(it) : ++it;
      next_sweep_ = std::max<std::size_t>(1024, entries_.size() * 2);
    }
  }

  Clock clock_;
  std::shared_mutex mutex_;
  std::unordered_map<std::string, std::int64_t> entries_;
  std::size_t next_sweep_ = 1024;
};

/// @brief Revocations in memory, backed by an append-only journal file
/// (`<jti> <exp>` per line). revoke() returns only after the line is written
/// and fsynced; the constructor replays the journal, tolerating a torn last
/// line, drops expired entries and rewrites the journal compactly.
class JournalRevocationStore : public MemoryRevocationStore {
 public:
  /// @brief Opens or creates the journal at @p path; throws std::runtime_error
  /// when it cannot be read or written.
  explicit JournalRevocationStore(std::string path, Clock clock = system_now)
      : MemoryRevocationStore(std::move(clock)), path_(std::move(path)) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    {
      detail::unique_fd in = detail::open_fd(path_, O_RDONLY);
      std::string text;
      if (in && !detail::read_all(in.get(), text)) throw std::runtime_error("iwsec: cannot read " + path_);
      replay(text);
    }
    if (!compact_locked()) throw std::runtime_error("iwsec: cannot write " + path_);
  }

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    if (jti.empty() || jti.size() > 256 || jti.find_first_of(" \t\r\n") != std::string_view::npos) return false;
    std::unique_lock<std::shared_mutex> lock(mutex_);
    std::string line(jti);
    line += ' ';
    line += std::to_string(expires_at);
    line += '\n';
    if (!journal_ || !detail::write_all(journal_.get(), line) || ::fdatasync(journal_.get()) != 0) return false;
    ++journal_lines_;
    insert_locked(std::string(jti), expires_at);
    if (journal_lines_ > 4096 && journal_lines_ > 2 * entries_.size()) compact_locked();
    return true;
  }

  const std::string& path() const noexcept { return path_; }

 private:
  void replay(std::string_view text) {
    const std::int64_t now = clock_();
    while (!text.empty()) {
      const auto nl = text.find('\n');
      if (nl == std::string_view::npos) break;  // a torn last line: never acknowledged
      const std::string_view line = text.substr(0, nl);
      text.remove_prefix(nl + 1);
      const auto space = line.find(' ');
      if (space == std::string_view::npos || space == 0) continue;
      const std::string_view exp_text = line.substr(space + 1);
      if (exp_text.empty() || exp_text.size() > 18) continue;
      std::int64_t exp = 0;
      bool digits = true;
      for (char c : exp_text) {
        if (c < '0' || c > '9') {
          digits = false;  // stop here: a non-digit could push exp past int64 (UB)
          break;
        }
        exp = exp * 10 + (c - '0');
      }
      if (!digits || exp <= now) continue;
      auto& slot = entries_[std::string(line.substr(0, space))];
      slot = std::max(slot, exp);
    }
  }

  // Rewrites the journal with only live entries, atomically, then reopens it for appending.
  bool compact_locked() {
    const std::int64_t now = clock_();
    std::string text;
    std::size_t lines = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second <= now) {
        it = entries_.erase(it);
        continue;
      }
      text += it->first;
      text += ' ';
      text += std::to_string(it->second);
      text += '\n';
      ++lines;
      ++it;
    }
    const bool replaced = detail::write_file_atomically(path_, text, 0600);
    // Whether or not the rename happened, the path names the live journal:
    // reopen it so appends never go to a file that was replaced.
    journal_ = detail::open_fd(path_, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (!journal_ || !replaced) return false;
    journal_lines_ = lines;
    return true;
  }

  std::string path_;
  detail::unique_fd journal_;
  std::size_t journal_lines_ = 0;
};

}  // namespace iwsec
