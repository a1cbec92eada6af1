/// @brief JournalRevocationStore: revocations in memory, made durable by an append-only journal file.
/// @file
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.hpp"
#include "detail/crypto.hpp"
#include "detail/file.hpp"
#include "detail/revocation_journal.hpp"
#include "detail/thread_safety.hpp"
#include "errors.hpp"
#include "memory_revocation_store.hpp"
#include "revocation_store_interface.hpp"

namespace iwsec {

/// @brief Revocations in memory, backed by an append-only journal file
/// (`<jti> <exp>` per line, `<jti> <exp> <owner>` for one made by
/// revoke_for, so the per-owner counts survive a restart). revoke() returns only after the line is written
/// and fsynced; the constructor replays the journal, tolerating a torn last
/// line, drops expired entries and, when the journal held anything else
/// than distinct live entries, rewrites it compactly. Lookups never wait for
/// the disk.
class JournalRevocationStore : public MemoryRevocationStore {
 public:
  /// @brief Opens or creates the journal at @p path; throws std::runtime_error
  /// when it cannot be read or written.
  explicit JournalRevocationStore(std::string path, Clock clock = system_now)
      : MemoryRevocationStore(std::move(clock)), path_(std::move(path)) {
    detail::Lock appending(append_mutex_);
    detail::Lock writing(write_mutex_);
    bool clean = false;
    off_t bytes = 0;
    std::size_t lines = 0;
    {
      detail::unique_fd in = detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
      // Only a missing journal starts empty: one that exists but cannot be
      // read must not be replaced by an empty one.
      if (!in && errno != ENOENT) throw journal_error("iwsec: cannot read " + path_ + ": " + std::strerror(errno));
      if (in && !replay(in.get(), clean, bytes, lines))
        throw journal_error("iwsec: cannot read " + path_ + ": " + std::strerror(errno));
    }
    schedule_sweep();
    if (clean) {
      // Nothing to drop: append to the journal as it is (a restart then costs
      // one read, not a rewrite of every entry).
      journal_ = detail::open_fd(path_, O_WRONLY | O_APPEND | O_NOFOLLOW);
      struct stat st;
      if (journal_ && ::fchmod(journal_.get(), 0600) == 0 && ::fstat(journal_.get(), &st) == 0 &&
          st.st_size == bytes) {
        journal_bytes_ = bytes;
        journal_lines_ = lines;
        return;
      }
      journal_.reset();
    }
    if (!rewrite_journal()) throw journal_error("iwsec: cannot write " + path_ + ": " + std::strerror(errno));
  }

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    return append_revocation(nullptr, jti, expires_at, 0) == RevokeOutcome::revoked;
  }

  RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                           std::size_t limit) override {
    const std::string word = owner_key(owner);
    return append_revocation(&word, jti, expires_at, limit);
  }

  std::optional<std::size_t> outstanding_for(std::string_view owner) override {
    return MemoryRevocationStore::outstanding_for(owner_key(owner));
  }

  const std::string& path() const noexcept { return path_; }

 private:
  static bool journal_word(std::string_view w) { return detail::revocation_journal_word(w); }

  // An owner as one journal word: itself, or a digest when it holds a
  // space or a line break or is long.
  static std::string owner_key(std::string_view owner) {
    if (journal_word(owner) && owner.substr(0, 7) != "sha256:") return std::string(owner);
    return "sha256:" + detail::sha256_hex(owner);
  }

  // Appends `<jti> <exp>[ <owner>]` durably, then applies it. With an
  // @p owner, the limit is checked first (append_mutex_ serialises writers,
  // so the check still holds when the line lands).
  RevokeOutcome append_revocation(const std::string* owner, std::string_view jti, std::int64_t expires_at,
                                  std::size_t limit) IWSEC_EXCLUDES(append_mutex_, write_mutex_) {
    if (!journal_word(jti)) return RevokeOutcome::failed;
    std::string line;
    detail::append_revocation_line(line, jti, expires_at, owner ? std::string_view(*owner) : std::string_view());
    // Writers queue here; readers (is_revoked) never wait for the disk.
    detail::Lock appending(append_mutex_);
    if (owner) {
      detail::Lock writing(write_mutex_);
      if (!owner_has_room(*owner, jti, limit)) return RevokeOutcome::limit_reached;
    }
    if (!journal_ && !compact()) return RevokeOutcome::failed;
    if (!append_durably(line)) return RevokeOutcome::failed;
    bool due;
    {
      detail::Lock writing(write_mutex_);
      if (owner) add_owned(*owner, jti, expires_at);
      insert(jti, expires_at);
      due = journal_lines_ > 4096 && journal_lines_ > 2 * size();
    }
    if (due) compact();  // on failure the current journal stays in use
    return RevokeOutcome::revoked;
  }

  // Reads the journal in blocks and applies every complete, well-formed, live
  // line. @p clean: the file holds only such lines, each jti once, and ends
  // with a newline (so it can be appended to as it is).
  bool replay(int fd, bool& clean, off_t& bytes, std::size_t& lines) IWSEC_REQUIRES(write_mutex_) {
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0)
      reserve(static_cast<std::size_t>(st.st_size) / 48);  // the shortest live UUID line
    const std::int64_t now = clock_();
    clean = true;
    bytes = 0;
    lines = 0;
    std::string pending;  // the start of a line cut by the block boundary
    std::string block(1 << 20, '\0');
    for (;;) {
      const ssize_t n = ::read(fd, &block[0], block.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (n == 0) break;
      bytes += n;
      std::string_view text(block.data(), static_cast<std::size_t>(n));
      if (!pending.empty()) {
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
          pending.append(text.data(), text.size());
          continue;
        }
        pending.append(text.data(), nl);
        clean &= apply_line(pending, now);
        ++lines;
        pending.clear();
        text.remove_prefix(nl + 1);
      }
      for (;;) {
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) break;
        clean &= apply_line(text.substr(0, nl), now);
        ++lines;
        text.remove_prefix(nl + 1);
      }
      pending.assign(text.data(), text.size());
    }
    if (!pending.empty()) clean = false;  // a torn last line: never acknowledged
    return true;
  }

  // One `<jti> <exp>[ <owner>]` line; true when it was well formed, live and new.
  bool apply_line(std::string_view line, std::int64_t now) IWSEC_REQUIRES(write_mutex_) {
    std::string_view jti, owner;
    std::int64_t exp = 0;
    if (!detail::parse_revocation_line(line, jti, exp, owner) || exp <= now) return false;
    if (!owner.empty()) add_owned(owner, jti, exp);
    return insert(jti, exp, false);
  }

  // Appends one record and fsyncs it. On failure the journal is cut back to
  // its last acknowledged length, so a partial record can never merge with
  // (and spoil) the next one; if even that fails, appending stops until a
  // compaction rewrites the journal.
  bool append_durably(const std::string& line) IWSEC_REQUIRES(append_mutex_) {
    if (detail::write_all(journal_.get(), line) && ::fdatasync(journal_.get()) == 0) {
      journal_bytes_ += static_cast<off_t>(line.size());
      ++journal_lines_;
      return true;
    }
    if (::ftruncate(journal_.get(), journal_bytes_) != 0 || ::fdatasync(journal_.get()) != 0) journal_.reset();
    return false;
  }

  // rewrite_journal(), taking write_mutex_ for it.
  bool compact() IWSEC_REQUIRES(append_mutex_) IWSEC_EXCLUDES(write_mutex_) {
    detail::Lock writing(write_mutex_);
    return rewrite_journal();
  }

  // Rewrites the journal with only live entries (written in blocks to a
  // temporary file, fsynced, renamed over the journal, directory fsynced) and
  // appends to the new file from then on. Writers wait meanwhile; lookups go
  // on.
  bool rewrite_journal() IWSEC_REQUIRES(append_mutex_, write_mutex_) {
    const detail::directory_handle dir(detail::parent_directory(path_));
    if (!dir) return false;
    const std::string base = detail::base_name(path_);
    detail::temp_file out(dir, base);  // exclusive, unpredictable, no symlink followed
    if (!out) return false;
    std::size_t lines = 0;
    off_t bytes = 0;
    const std::int64_t now = clock_();
    std::string block;
    block.reserve((1 << 20) + 512);
    bool ok = true;
    for_each_entry([&](const auto& append_jti, std::int64_t exp, const std::string* owner) {
      if (!ok || exp <= now) return;
      detail::append_revocation_line_with(block, append_jti, exp, owner ? std::string_view(*owner) : std::string_view());
      ++lines;
      if (block.size() >= (1 << 20)) {
        ok = detail::write_all(out.fd(), block);
        bytes += static_cast<off_t>(block.size());
        block.clear();
      }
    });
    ok = ok && detail::write_all(out.fd(), block);
    bytes += static_cast<off_t>(block.size());
    std::string error, warning;
    if (!ok || !out.commit(base, 0600, error, warning, /*keep_mode=*/false)) return false;  // the journal in use, if any, is untouched
    if (!warning.empty()) {
      // The rename may not be durable (the directory fsync failed even when
      // retried): appending to either file could lose acknowledged
      // revocations in a crash, so appending stops until a compaction works.
      journal_.reset();
      return false;
    }
    // Append to the file just written (no second open by name).
    detail::unique_fd fresh = out.release();
    const int flags = ::fcntl(fresh.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fresh.get(), F_SETFL, flags | O_APPEND) != 0) return false;
    journal_ = std::move(fresh);
    journal_bytes_ = bytes;
    journal_lines_ = lines;
    return true;
  }

  std::string path_;
  // Serialises writers through the disk; taken before write_mutex_.
  detail::Mutex append_mutex_ IWSEC_ACQUIRED_BEFORE(write_mutex_);
  detail::unique_fd journal_ IWSEC_GUARDED_BY(append_mutex_);
  off_t journal_bytes_ IWSEC_GUARDED_BY(append_mutex_) = 0;
  std::size_t journal_lines_ IWSEC_GUARDED_BY(append_mutex_) = 0;
};

}  // namespace iwsec
