/// @brief MemoryRevocationStore: revocations in process memory, capped per owner.
/// @file
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "detail/crypto.hpp"
#include "detail/thread_safety.hpp"
#include "detail/uuid_table.hpp"
#include "revocation_store_interface.hpp"

namespace iwsec {

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
    detail::Lock writing(write_mutex_);
    insert(jti, expires_at);
    return true;
  }

  RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                           std::size_t limit) override {
    detail::Lock writing(write_mutex_);
    if (!owner_has_room(owner, jti, limit)) return RevokeOutcome::limit_reached;
    add_owned(owner, jti, expires_at);
    insert(jti, expires_at);
    return RevokeOutcome::revoked;
  }

  std::optional<std::size_t> outstanding_for(std::string_view owner) override {
    detail::Lock writing(write_mutex_);
    auto it = owners_.find(std::string(owner));
    if (it == owners_.end()) return std::size_t{0};
    prune_owned(it->second, clock_());
    return it->second.size();
  }

  bool is_revoked(std::string_view jti) override {
    std::uint64_t hi, lo;
    const bool uuid = detail::parse_uuid_key(jti, hi, lo);
    detail::ReaderLock lock(mutex_);
    if (uuid) return table_.contains(hi, lo);
    return !others_.empty() && others_.find(std::string(jti)) != others_.end();
  }

  /// @brief How many revocations are held (expired ones may linger until the next sweep).
  std::size_t size() {
    detail::ReaderLock lock(mutex_);
    return table_.size() + others_.size();
  }

 protected:
  /// @brief Adds or extends a revocation; true when @p jti was not held yet.
  /// Sweeps expired entries when the store has doubled since the last sweep
  /// (unless @p may_sweep is false).
  bool insert(std::string_view jti, std::int64_t expires_at, bool may_sweep = true) IWSEC_REQUIRES(write_mutex_) {
    std::uint64_t hi, lo;
    bool added;
    if (detail::parse_uuid_key(jti, hi, lo)) {
      if (!table_for_writer().has_room_for_one_more()) rebuild(1);
      detail::WriterLock lock(mutex_);
      added = table_.insert(hi, lo, expires_at);
    } else {
      detail::WriterLock lock(mutex_);
      auto inserted = others_.emplace(std::string(jti), expires_at);
      if (!inserted.second) inserted.first->second = std::max(inserted.first->second, expires_at);
      added = inserted.second;
    }
    if (may_sweep && table_for_writer().size() + others_for_writer().size() >= next_sweep_) sweep();
    return added;
  }

  /// @brief Whether revoking @p jti for @p owner stays within @p limit: it
  /// is revoked already (no new entry), or the owner holds fewer than
  /// @p limit unexpired ones. A jti that is not a UUID is never counted.
  bool owner_has_room(std::string_view owner, std::string_view jti, std::size_t limit) IWSEC_REQUIRES(write_mutex_) {
    std::uint64_t hi, lo;
    if (!detail::parse_uuid_key(jti, hi, lo) || table_for_writer().contains(hi, lo)) return true;
    auto it = owners_.find(std::string(owner));
    if (it == owners_.end()) return limit > 0;
    if (it->second.size() >= limit) prune_owned(it->second, clock_());  // only when it matters
    return it->second.size() < limit;
  }

  /// @brief Counts @p jti, not revoked yet, as one of @p owner's
  /// revocations; call it before insert.
  void add_owned(std::string_view owner, std::string_view jti, std::int64_t expires_at) IWSEC_REQUIRES(write_mutex_) {
    std::uint64_t hi, lo;
    if (!detail::parse_uuid_key(jti, hi, lo) || table_for_writer().contains(hi, lo)) return;
    owners_[std::string(owner)].push_back(owned{hi, lo, expires_at});
  }

  /// @brief Drops expired entries now (rebuilding only when there are
  /// some).
  void sweep() IWSEC_REQUIRES(write_mutex_) {
    const std::int64_t now = clock_();
    bool expired = false;
    table_for_writer().for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { expired |= exp <= now; });
    for (const auto& entry : others_for_writer()) expired |= entry.second <= now;
    if (expired) rebuild(0);
    for (auto it = owners_.begin(); it != owners_.end();) {
      prune_owned(it->second, now);
      it = it->second.empty() ? owners_.erase(it) : std::next(it);
    }
    schedule_sweep();
  }

  /// @brief Schedules the next sweep for when the store has doubled (after a
  /// bulk load made with @p may_sweep false).
  void schedule_sweep() IWSEC_REQUIRES(write_mutex_) {
    next_sweep_ = std::max<std::size_t>(1024, (table_for_writer().size() + others_for_writer().size()) * 2);
  }

  /// @brief Makes room for @p entries without growing.
  void reserve(std::size_t entries) IWSEC_REQUIRES(write_mutex_) {
    const detail::uuid_table& table = table_for_writer();
    if (entries > table.capacity() * 3 / 4) rebuild(entries - std::min(entries, table.size()));
  }

  /// @brief Calls @p f(jti_text_appender, expires_at, owner) for every
  /// entry, once per owner it counts against (owner null: none); @p f gets a
  /// callable that appends the jti to a string.
  template <typename F>
  void for_each_entry(F&& f) const IWSEC_REQUIRES(write_mutex_) {
    std::unordered_map<key, std::vector<const std::string*>, key_hash> owners_of;
    for (const auto& entry : owners_)
      for (const auto& o : entry.second) owners_of[key{o.hi, o.lo}].push_back(&entry.first);
    table_for_writer().for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      const auto append_jti = [hi, lo](std::string& out) { detail::append_uuid_key(out, hi, lo); };
      const auto it = owners_of.find(key{hi, lo});
      if (it == owners_of.end()) return f(append_jti, exp, static_cast<const std::string*>(nullptr));
      for (const std::string* owner : it->second) f(append_jti, exp, owner);
    });
    for (const auto& entry : others_for_writer())
      f([&entry](std::string& out) { out += entry.first; }, entry.second, static_cast<const std::string*>(nullptr));
  }

  Clock clock_;
  // One writer at a time: guards changes to table_, others_ (with mutex_
  // too), owners_ and next_sweep_. Taken before mutex_.
  detail::Mutex write_mutex_ IWSEC_ACQUIRED_BEFORE(mutex_);

 private:
  // Builds a table of the live entries with room for @p extra more beside the
  // current one (readers keep using it), then swaps it in.
  void rebuild(std::size_t extra) IWSEC_REQUIRES(write_mutex_) {
    const std::int64_t now = clock_();
    std::size_t live = 0;
    const detail::uuid_table& table = table_for_writer();
    table.for_each([&](std::uint64_t, std::uint64_t, std::int64_t exp) { live += exp > now; });
    detail::uuid_table next((live + extra) * 3 / 2 + 1);  // at most about half full
    table.for_each([&](std::uint64_t hi, std::uint64_t lo, std::int64_t exp) {
      if (exp > now) next.insert(hi, lo, exp);
    });
    {
      detail::WriterLock lock(mutex_);
      std::swap(table_, next);
      for (auto it = others_.begin(); it != others_.end();) it = it->second <= now ? others_.erase(it) : ++it;
    }
    // The old table is unmapped here, outside the lock.
  }

  // table_ and others_ change only with write_mutex_ held as well as mutex_
  // exclusively, so a writer holding write_mutex_ reads them without mutex_.
  // The analysis cannot say "either lock for reading", so these two say it
  // once, for the analysis.
  const detail::uuid_table& table_for_writer() const IWSEC_REQUIRES(write_mutex_) IWSEC_NO_THREAD_SAFETY_ANALYSIS {
    return table_;
  }
  const std::unordered_map<std::string, std::int64_t>& others_for_writer() const IWSEC_REQUIRES(write_mutex_)
      IWSEC_NO_THREAD_SAFETY_ANALYSIS {
    return others_;
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

  detail::SharedMutex mutex_;  // readers share it; writers hold it only to change or swap
  detail::uuid_table table_ IWSEC_GUARDED_BY(mutex_);
  std::unordered_map<std::string, std::int64_t> others_ IWSEC_GUARDED_BY(mutex_);  // jtis that are not canonical UUIDs
  // Per owner (a user id), its unexpired revocations made by revoke_for: at
  // most the limit it was given each. Guarded by write_mutex_ alone.
  std::unordered_map<std::string, std::vector<owned>> owners_ IWSEC_GUARDED_BY(write_mutex_);
  std::size_t next_sweep_ IWSEC_GUARDED_BY(write_mutex_) = 1024;
};

}  // namespace iwsec
