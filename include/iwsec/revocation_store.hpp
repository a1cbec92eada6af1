#pragma once
/// @file
/// @brief Revoked ("blacklisted") access tokens: the RevocationStore
/// interface, an in-memory store and a durable journal.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <sys/stat.h>

#include "clock.hpp"
#include "detail/crypto.hpp"
#include "detail/file.hpp"

namespace iwsec {

/// @brief The outcome of RevocationStore::revoke_for.
enum class RevokeOutcome {
  revoked,        ///< held (newly or already), as durably as the store promises
  limit_reached,  ///< the owner already has `limit` outstanding revocations: nothing was stored
  failed,         ///< could not be stored
};

/// @brief Where revoked token ids live until their tokens expire.
class RevocationStore {
 public:
  virtual ~RevocationStore() = default;

  /// @brief Revokes the token @p jti until @p expires_at. Returns true only
  /// once the revocation is as durable as this store promises.
  virtual bool revoke(std::string_view jti, std::int64_t expires_at) = 0;

  /// @brief Whether @p jti is revoked.
  virtual bool is_revoked(std::string_view jti) = 0;

  /// @brief revoke() on behalf of @p owner (the token's user id), holding at
  /// most @p limit outstanding (unexpired) revocations per owner: when
  /// @p owner already has @p limit and @p jti is not one of them, nothing is
  /// stored and the answer is limit_reached (the routes then end all of the
  /// owner's access tokens at once instead). Required (since 0.x): the
  /// routes revoke only through it, and a default without per-owner counts
  /// would let one refresh-token holder grow the store without bound.
  virtual RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                                   std::size_t limit) = 0;

  /// @brief How many unexpired revocations revoke_for holds for @p owner;
  /// nothing when the store keeps no per-owner counts.
  virtual std::optional<std::size_t> outstanding_for(std::string_view owner) {
    (void)owner;
    return std::nullopt;
  }
};

namespace detail {

/// @brief Appends the canonical text of a key made by parse_uuid_key.
inline void append_uuid_key(std::string& out, std::uint64_t hi, std::uint64_t lo) {
  static const char hex[] = "0123456789abcdef";
  char text[36];
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) text[pos++] = '-';
    const std::uint64_t half = i < 16 ? hi : lo;
    text[pos++] = hex[(half >> (60 - 4 * (i % 16))) & 15];
  }
  out.append(text, sizeof text);
}

/// @brief Zero-filled pages straight from the kernel, given back whole when
/// freed: a large table costs memory only while it is in use.
class zeroed_pages {
 public:
  zeroed_pages() = default;
  explicit zeroed_pages(std::size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = p;
#ifdef MADV_HUGEPAGE
    // A large table is probed at random: huge pages spare most TLB misses.
    if (bytes >= (std::size_t{4} << 20)) ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
  }
  zeroed_pages(zeroed_pages&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  zeroed_pages& operator=(zeroed_pages&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  zeroed_pages(const zeroed_pages&) = delete;
  zeroed_pages& operator=(const zeroed_pages&) = delete;
  ~zeroed_pages() { release(); }
  void* data() const noexcept { return data_; }

 private:
  void release() noexcept {
    if (data_) ::munmap(data_, bytes_);
    data_ = nullptr;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

/// @brief Open addressing (linear probing) from a 128-bit UUID to the time
/// its revocation may be forgotten: 24 bytes a slot, at most 3/4 full, no
/// per-entry allocation. Not synchronised; removal happens only by
/// rebuilding (see MemoryRevocationStore), so there are no tombstones.
class uuid_table {
 public:
  uuid_table() = default;
  /// @brief An empty table with room for @p entries before it must grow.
  explicit uuid_table(std::size_t entries) {
    std::size_t capacity = 16;
    while (capacity * 3 / 4 < entries) capacity *= 2;
    pages_ = zeroed_pages(capacity * sizeof(slot));
    slots_ = static_cast<slot*>(pages_.data());
    mask_ = capacity - 1;
    // Hash seeds per table: probe sequences cannot be predicted from outside.
    random_bytes(reinterpret_cast<unsigned char*>(seed_), sizeof seed_);
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }
  /// @brief Whether one more entry fits without passing 3/4 full.
  bool has_room_for_one_more() const noexcept { return size_ + 1 <= capacity() * 3 / 4; }

  bool contains(std::uint64_t hi, std::uint64_t lo) const noexcept {
    if (!slots_) return false;
    for (std::size_t i = index_of(hi, lo);; i = (i + 1) & mask_) {
      const slot& s = slots_[i];
      if (s.expires_at == 0) return false;
      if (s.hi == hi && s.lo == lo) return true;
    }
  }

  /// @brief Adds the key, or raises its expiry; true when it was new. The
  /// caller made sure there is room.
  bool insert(std::uint64_t hi, std::uint64_t lo, std::int64_t expires_at) noexcept {
    // 0 marks an empty slot; an expiry at or before the epoch is just as expired at 1.
    expires_at = std::max<std::int64_t>(expires_at, 1);
    for (std::size_t i = index_of(hi, lo);; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (s.expires_at == 0) {
        s.hi = hi;
        s.lo = lo;
        s.expires_at = expires_at;
        ++size_;
        return true;
      }
      if (s.hi == hi && s.lo == lo) {
        s.expires_at = std::max(s.expires_at, expires_at);
        return false;
      }
    }
  }

  template <typename F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < capacity(); ++i)
      if (slots_[i].expires_at != 0) f(slots_[i].hi, slots_[i].lo, slots_[i].expires_at);
  }

 private:
  struct slot {
    std::uint64_t hi, lo;
    std::int64_t expires_at;  // 0: empty
  };

  std::size_t index_of(std::uint64_t hi, std::uint64_t lo) const noexcept {
    std::uint64_t h = (hi ^ seed_[0]) * 0x9E3779B97F4A7C15ULL;
    h ^= (lo ^ seed_[1] ^ (h >> 29)) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 32;
    return static_cast<std::size_t>(h) & mask_;
  }

  zeroed_pages pages_;
  slot* slots_ = nullptr;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::uint64_t seed_[2] = {0, 0};
};

}  // namespace detail

/// @brief Revocations in process memory; entries are dropped once their
/// token has expired (an expired token fails verification on its own).
///
/// A jti in canonical UUID form (what Signer issues) is kept as 16 bytes in
/// an open-addressing table, so a million revocations cost about 48 MB and a
/// lookup one or two cache misses; any other jti text is kept in a map.
/// Lookups only share a reader lock with each other. Writers are serialised
/// among themselves; growing the table or sweeping expired entries builds the
/// new table beside the live one, so readers wait only for the swap.
class MemoryRevocationStore : public RevocationStore {
 public:
  explicit MemoryRevocationStore(Clock clock = system_now) : clock_(std::move(clock)) {}

  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    std::lock_guard<std::mutex> writing(write_mutex_);
    insert_writing(jti, expires_at);
    return true;
  }

  RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                           std::size_t limit) override {
    std::lock_guard<std::mutex> writing(write_mutex_);
    if (!owner_has_room_writing(owner, jti, limit)) return RevokeOutcome::limit_reached;
    add_owned_writing(owner, jti, expires_at);
    insert_writing(jti, expires_at);
    return RevokeOutcome::revoked;
  }

  std::optional<std::size_t> outstanding_for(std::string_view owner) override {
    std::lock_guard<std::mutex> writing(write_mutex_);
    auto it = owners_.find(std::string(owner));
    if (it == owners_.end()) return std::size_t{0};
    prune_owned(it->second, clock_());
    return it->second.size();
  }

  bool is_revoked(std::string_view jti) override {
    std::uint64_t hi, lo;
    const bool uuid = detail::parse_uuid_key(jti, hi, lo);
    std::shared_lock<std::shared_mutex> lock(mutex_);
    if (uuid) return table_.contains(hi, lo);
    return !others_.empty() && others_.find(std::string(jti)) != others_.end();
  }

  /// @brief How many revocations are held (expired ones may linger until the next sweep).
  std::size_t size() {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return table_.size() + others_.size();
  }

 protected:
  /// @brief Adds or extends a revocation; true when @p jti was not held yet.
  /// Sweeps expired entries when the store has doubled since the last sweep
  /// (unless @p may_sweep is false). Caller holds write_mutex_.
  bool insert_writing(std::string_view jti, std::int64_t expires_at, bool may_sweep = true) {
    std::uint64_t hi, lo;
    bool added;
    if (detail::parse_uuid_key(jti, hi, lo)) {
      if (!table_.has_room_for_one_more()) rebuild_writing(1);
      std::unique_lock<std::shared_mutex> lock(mutex_);
      added = table_.insert(hi, lo, expires_at);
    } else {
      std::unique_lock<std::shared_mutex> lock(mutex_);
      auto inserted = others_.emplace(std::string(jti), expires_at);
      if (!inserted.second) inserted.first->second = std::max(inserted.first->second, expires_at);
      added = inserted.second;
    }
    if (may_sweep && table_.size() + others_.size() >= next_sweep_) sweep_writing();
    return added;
  }

  /// @brief Whether revoking @p jti for @p owner stays within @p limit: it
  /// is revoked already (no new entry), or the owner holds fewer than
  /// @p limit unexpired ones. A jti that is not a UUID is never counted.
  /// Caller holds write_mutex_.
  bool owner_has_room_writing(std::string_view owner, std::string_view jti, std::size_t limit) {
    std::uint64_t hi, lo;
    if (!detail::parse_uuid_key(jti, hi, lo) || table_.contains(hi, lo)) return true;
    auto it = owners_.find(std::string(owner));
    if (it == owners_.end()) return limit > 0;
    if (it->second.size() >= limit) prune_owned(it->second, clock_());  // only when it matters
    return it->second.size() < limit;
  }

  /// @brief Counts @p jti, not revoked yet, as one of @p owner's
  /// revocations; call it before insert_writing. Caller holds write_mutex_.
  void add_owned_writing(std::string_view owner, std::string_view jti, std::int64_t expires_at) {
    std::uint64_t hi, lo;
    if (!detail::parse_uuid_key(jti, hi, lo) || table_.contains(hi, lo)) return;
    owners_[std::string(owner)].push_back(owned{hi, lo, expires_at});
  }

  /// @brief Drops expired entries now (rebuilding only when there are
  /// some). Caller holds write_mutex_.
  void sweep_writing() {
    const std::int64_t now = clock_();
    bool expired = false;
    table_.for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { expired |= exp <= now; });
    for (const auto& entry : others_) expired |= entry.second <= now;
    if (expired) rebuild_writing(0);
    for (auto it = owners_.begin(); it != owners_.end();) {
      prune_owned(it->second, now);
      it = it->second.empty() ? owners_.erase(it) : std::next(it);
    }
    schedule_sweep_writing();
  }

  /// @brief Schedules the next sweep for when the store has doubled (after a
  /// bulk load made with @p may_sweep false). Caller holds write_mutex_.
  void schedule_sweep_writing() { next_sweep_ = std::max<std::size_t>(1024, (table_.size() + others_.size()) * 2); }

  /// @brief Makes room for @p entries without growing. Caller holds write_mutex_.
  void reserve_writing(std::size_t entries) {
    if (entries > table_.capacity() * 3 / 4) rebuild_writing(entries - std::min(entries, table_.size()));
  }

  /// @brief Calls @p f(jti_text_appender, expires_at, owner) for every
  /// entry, once per owner it counts against (owner null: none); @p f gets a
  /// callable that appends the jti to a string. Caller holds write_mutex_.
  template <typename F>
  void for_each_writing(F&& f) const {
    std::unordered_map<key, std::vector<const std::string*>, key_hash> owners_of;
    for (const auto& entry : owners_)
      for (const auto& o : entry.second) owners_of[key{o.hi, o.lo}].push_back(&entry.first);
    table_.for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      const auto append_jti = [hi, lo](std::string& out) { detail::append_uuid_key(out, hi, lo); };
      const auto it = owners_of.find(key{hi, lo});
      if (it == owners_of.end()) return f(append_jti, exp, static_cast<const std::string*>(nullptr));
      for (const std::string* owner : it->second) f(append_jti, exp, owner);
    });
    for (const auto& entry : others_)
      f([&entry](std::string& out) { out += entry.first; }, entry.second, static_cast<const std::string*>(nullptr));
  }

  Clock clock_;
  std::mutex write_mutex_;  // one writer at a time: guards changes to table_, others_, next_sweep_

 private:
  // Builds a table of the live entries with room for @p extra more beside the
  // current one (readers keep using it), then swaps it in.
  void rebuild_writing(std::size_t extra) {
    const std::int64_t now = clock_();
    std::size_t live = 0;
    table_.for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { live += exp > now; });
    detail::uuid_table next((live + extra) * 3 / 2 + 1);  // at most about half full
    table_.for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      if (exp > now) next.insert(hi, lo, exp);
    });
    std::unique_lock<std::shared_mutex> lock(mutex_);
    std::swap(table_, next);
    for (auto it = others_.begin(); it != others_.end();) it = it->second <= now ? others_.erase(it) : ++it;
    lock.unlock();
    // The old table is unmapped here, outside the lock.
  }

  struct owned {
    std::uint64_t hi, lo;
    std::int64_t expires_at;
  };
  struct key {
    std::uint64_t hi, lo;
    bool operator==(const key& o) const noexcept { return hi == o.hi && lo == o.lo; }
  };
  struct key_hash {
    std::size_t operator()(const key& k) const noexcept {
      return static_cast<std::size_t>((k.hi ^ (k.lo * 0x9E3779B97F4A7C15ULL)) >> 7);
    }
  };

  static void prune_owned(std::vector<owned>& list, std::int64_t now) {
    list.erase(std::remove_if(list.begin(), list.end(), [now](const owned& o) { return o.expires_at <= now; }),
               list.end());
  }

  std::shared_mutex mutex_;  // readers share it; writers hold it only to change or swap
  detail::uuid_table table_;
  std::unordered_map<std::string, std::int64_t> others_;  // jtis that are not canonical UUIDs
  // Per owner (a user id), its unexpired revocations made by revoke_for: at
  // most the limit it was given each. Guarded by write_mutex_ alone.
  std::unordered_map<std::string, std::vector<owned>> owners_;
  std::size_t next_sweep_ = 1024;
};

/// @brief One record of a revocation journal (see JournalRevocationStore).
struct RevocationRecord {
  std::string jti;
  std::int64_t expires_at = 0;
  std::string owner;  ///< empty: a revocation without an owner (not counted against any cap)
};

namespace detail {

/// @brief Whether @p w can be one word of a journal line.
inline bool revocation_journal_word(std::string_view w) {
  return !w.empty() && w.size() <= 256 && w.find_first_of(" \t\r\n") == std::string_view::npos;
}

/// @brief Parses one journal line, `<jti> <exp>` or `<jti> <exp> <owner>`
/// (no newline); false when it is malformed. @p owner is empty for the
/// first form. The one parser of the journal format: the store replays
/// with it and `iwsec-admin import` reads a data directory with it.
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

}  // namespace detail

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
    std::lock_guard<std::mutex> appending(append_mutex_);
    std::lock_guard<std::mutex> writing(write_mutex_);
    bool clean = false;
    off_t bytes = 0;
    std::size_t lines = 0;
    {
      detail::unique_fd in = detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
      // Only a missing journal starts empty: one that exists but cannot be
      // read must not be replaced by an empty one.
      if (!in && errno != ENOENT) throw std::runtime_error("iwsec: cannot read " + path_ + ": " + std::strerror(errno));
      if (in && !replay(in.get(), clean, bytes, lines))
        throw std::runtime_error("iwsec: cannot read " + path_ + ": " + std::strerror(errno));
    }
    schedule_sweep_writing();
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
    if (!compact_appending_locked()) throw std::runtime_error("iwsec: cannot write " + path_ + ": " + std::strerror(errno));
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
                                  std::size_t limit) {
    if (!journal_word(jti)) return RevokeOutcome::failed;
    std::string line(jti);
    line += ' ';
    line += std::to_string(expires_at);
    if (owner) {
      line += ' ';
      line += *owner;
    }
    line += '\n';
    // Writers queue here; readers (is_revoked) never wait for the disk.
    std::lock_guard<std::mutex> appending(append_mutex_);
    if (owner) {
      std::lock_guard<std::mutex> writing(write_mutex_);
      if (!owner_has_room_writing(*owner, jti, limit)) return RevokeOutcome::limit_reached;
    }
    if (!journal_ && !compact_appending_locked_writing()) return RevokeOutcome::failed;
    if (!append_durably(line)) return RevokeOutcome::failed;
    bool compact;
    {
      std::lock_guard<std::mutex> writing(write_mutex_);
      if (owner) add_owned_writing(*owner, jti, expires_at);
      insert_writing(jti, expires_at);
      compact = journal_lines_ > 4096 && journal_lines_ > 2 * size();
    }
    if (compact) compact_appending_locked_writing();  // on failure the current journal stays in use
    return RevokeOutcome::revoked;
  }

  // Reads the journal in blocks and applies every complete, well-formed, live
  // line. @p clean: the file holds only such lines, each jti once, and ends
  // with a newline (so it can be appended to as it is).
  bool replay(int fd, bool& clean, off_t& bytes, std::size_t& lines) {
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0)
      reserve_writing(static_cast<std::size_t>(st.st_size) / 48);  // the shortest live UUID line
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
  bool apply_line(std::string_view line, std::int64_t now) {
    std::string_view jti, owner;
    std::int64_t exp = 0;
    if (!detail::parse_revocation_line(line, jti, exp, owner) || exp <= now) return false;
    if (!owner.empty()) add_owned_writing(owner, jti, exp);
    return insert_writing(jti, exp, false);
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

  bool compact_appending_locked_writing() {
    std::lock_guard<std::mutex> writing(write_mutex_);
    return compact_appending_locked();
  }

  // Rewrites the journal with only live entries (written in blocks to a
  // temporary file, fsynced, renamed over the journal, directory fsynced) and
  // appends to the new file from then on. Caller holds append_mutex_ and
  // write_mutex_ (lookups go on meanwhile).
  bool compact_appending_locked() {
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
    for_each_writing([&](const auto& append_jti, std::int64_t exp, const std::string* owner) {
      if (!ok || exp <= now) return;
      append_jti(block);
      block += ' ';
      block += std::to_string(exp);
      if (owner) {
        block += ' ';
        block += *owner;
      }
      block += '\n';
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
  std::mutex append_mutex_;  // guards journal_, journal_bytes_, journal_lines_; taken before write_mutex_
  detail::unique_fd journal_;
  off_t journal_bytes_ = 0;
  std::size_t journal_lines_ = 0;
};

}  // namespace iwsec
