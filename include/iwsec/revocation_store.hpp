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
    std::lock_guard<std::mutex> appending(append_mutex_);
    {
      detail::unique_fd in = detail::open_fd(path_, O_RDONLY);
      std::string text;
      if (in && !detail::read_all(in.get(), text)) throw std::runtime_error("iwsec: cannot read " + path_);
      std::unique_lock<std::shared_mutex> lock(mutex_);
      replay(text);
    }
    if (!compact_appending_locked()) throw std::runtime_error("iwsec: cannot write " + path_);
  }

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    if (jti.empty() || jti.size() > 256 || jti.find_first_of(" \t\r\n") != std::string_view::npos) return false;
    std::string line(jti);
    line += ' ';
    line += std::to_string(expires_at);
    line += '\n';
    // Writers queue here; readers (is_revoked) never wait for the disk.
    std::lock_guard<std::mutex> appending(append_mutex_);
    if (!journal_ && !compact_appending_locked()) return false;
    if (!append_durably(line)) return false;
    bool compact;
    {
      std::unique_lock<std::shared_mutex> lock(mutex_);
      insert_locked(std::string(jti), expires_at);
      compact = journal_lines_ > 4096 && journal_lines_ > 2 * entries_.size();
    }
    if (compact) compact_appending_locked();  // on failure the current journal stays in use
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

  // Appends one record and fsyncs it. On failure the journal is cut back to
  // its last acknowledged length, so a partial record can never merge with
  // (and spoil) the next one; if even that fails, appending stops until a
  // compaction rewrites the journal.
  bool append_durably(const std::string& line) {
    if (detail::write_all(journal_.get(), line) && ::fdatasync(journal_.get()) == 0) {
      journal_bytes_ += static_cast<off_t>(line.size());
      ++journal_lines_;
      return true;
    }
    if (::ftruncate(journal_.get(), journal_bytes_) != 0 || ::fdatasync(journal_.get()) != 0) journal_.reset();
    return false;
  }

  // Rewrites the journal with only live entries (write, fsync, rename) and
  // appends to the new file from then on. Caller holds append_mutex_.
  bool compact_appending_locked() {
    std::string text;
    std::size_t lines = 0;
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      const std::int64_t now = clock_();
      for (const auto& entry : entries_) {
        if (entry.second <= now) continue;
        text += entry.first;
        text += ' ';
        text += std::to_string(entry.second);
        text += '\n';
        ++lines;
      }
    }
    if (!detail::write_file_atomically(path_, text, 0600)) {
      // The rename may or may not have happened: keep appending only if the
      // path still names the file we hold.
      struct stat held, named;
      if (journal_ && (::fstat(journal_.get(), &held) != 0 || ::stat(path_.c_str(), &named) != 0 ||
                       held.st_ino != named.st_ino || held.st_dev != named.st_dev))
        journal_.reset();
      return false;
    }
    journal_ = detail::open_fd(path_, O_WRONLY | O_APPEND, 0600);
    if (!journal_) return false;
    journal_bytes_ = static_cast<off_t>(text.size());
    journal_lines_ = lines;
    return true;
  }

  std::string path_;
  std::mutex append_mutex_;  // guards journal_, journal_bytes_, journal_lines_
  detail::unique_fd journal_;
  off_t journal_bytes_ = 0;
  std::size_t journal_lines_ = 0;
};

}  // namespace iwsec
