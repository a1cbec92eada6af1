/// @brief detail::verified_token_cache: the claims of access tokens that already verified, by their exact bytes.
/// @file
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "../signer.hpp"
#include "crypto.hpp"
#include "thread_safety.hpp"

namespace iwsec {
namespace detail {

/// @brief The claims of access tokens that passed Signer::verify, by their
/// exact bytes and the signer's key version, so that a client presenting the
/// same token again is not verified again: under one key version the same
/// bytes verify the same way (a key set never changes; replace_keys makes a
/// new version, and every entry of an older one misses, so a retired key's
/// tokens stop validating at once), and only the lifetime depends on the
/// time of the check. A hit
/// re-checks it: now < exp + leeway, and now is not earlier than the time of
/// the verification (so `nbf` and `iat`, already satisfied then, still are;
/// after the clock went back the token is verified again). Revocation and
/// the user's status are never cached. Only verified tokens get in, so
/// forged ones cannot fill it; a fixed number of slots bounds its memory.
///
/// Two levels, so that many connections presenting one hot token are not
/// serialised on one slot: each thread first looks in a few entries of its
/// own (a private copy of the claims, so a hit writes no shared memory, not
/// even a reference count), then in the shared slots (a mutex per set of
/// them); a token that hits there twice in a row is copied into the thread's
/// own entries. The shared slots are grouped in sets of `ways` (a token may
/// sit in any slot of the set its hash picks, the oldest stored giving way):
/// with one slot per hash, two live tokens of one slot would push each other
/// out on every presentation (with 1 000 tokens in 1 024 slots, six in ten
/// would). Entries are tagged with the cache
/// they belong to (an id never reused) and with its epoch: invalidate()
/// (e.g. when the signer's key set changes) makes every entry of both levels
/// miss; an entry stored under an older epoch than the one its verification
/// began in is never served.
class verified_token_cache {
 public:
  static constexpr std::size_t slot_count = 4096;  // a power of two
  static constexpr std::size_t ways = 4;           // slots per set, a power of two
  static constexpr std::size_t thread_slots = 4;   // per thread and cache, a power of two
  static constexpr std::size_t max_token_bytes = 2048;

  verified_token_cache() : sets_(new set[set_count]), id_(next_id()) {
    random_bytes(reinterpret_cast<unsigned char*>(&seed_), sizeof seed_);
  }
  verified_token_cache(const verified_token_cache&) = delete;
  verified_token_cache& operator=(const verified_token_cache&) = delete;

  /// @brief The epoch to pass to store() for a verification that starts now.
  std::uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }

  /// @brief Forgets every token (both levels, every thread) at once.
  void invalidate() noexcept { epoch_.fetch_add(1, std::memory_order_acq_rel); }

  /// @brief The cached claims of exactly @p token, if they are still within
  /// their lifetime at @p now.
  std::shared_ptr<const VerifiedToken> find(std::string_view token, std::int64_t now, std::int64_t leeway) const {
    if (token.size() > max_token_bytes) return nullptr;
    const std::uint64_t hash = hash_of(token);
    const std::uint64_t current = epoch();
    thread_entry& mine = thread_entries()[static_cast<std::size_t>(hash) & (thread_slots - 1)];
    // Compared in constant time: a near miss must not tell how near.
    if (!(mine.claims && mine.owner == id_ && mine.epoch == current && same_bytes(mine.token, token))) {
      set& s = set_of(hash);
      std::shared_ptr<const VerifiedToken> shared;
      std::int64_t verified_at = 0;
      {
        Lock lock(s.mutex);
        const slot* hit = nullptr;
        for (const slot& e : s.slots)
          if (e.claims && e.hash == hash && e.epoch == current && same_bytes(e.token, token)) hit = &e;
        if (!hit) return nullptr;
        shared = hit->claims;
        verified_at = hit->verified_at;
      }
      // Copied into this thread's entry only when the same token comes
      // twice in a row here: many distinct tokens then cost no copies.
      if (mine.candidate != hash || mine.candidate_owner != id_) {
        mine.candidate = hash;
        mine.candidate_owner = id_;
        if (now < verified_at || now >= shared->expires_at() + leeway) return nullptr;
        return shared;
      }
      mine.token.assign(token.data(), token.size());
      mine.claims = std::make_shared<const VerifiedToken>(*shared);  // this thread's own copy
      mine.verified_at = verified_at;
      mine.owner = id_;
      mine.epoch = current;
    }
    if (now < mine.verified_at || now >= mine.claims->expires_at() + leeway) return nullptr;
    return mine.claims;
  }

  /// @brief Remembers that @p token verified at @p verified_at with @p
  /// claims, in a verification that began in @p epoch (from epoch()).
  void store(std::string_view token, std::shared_ptr<const VerifiedToken> claims, std::int64_t verified_at,
             std::uint64_t epoch) {
    if (token.size() > max_token_bytes) return;
    const std::uint64_t hash = hash_of(token);
    set& s = set_of(hash);
    Lock lock(s.mutex);
    if (epoch != this->epoch()) return;  // invalidated meanwhile: verified under what may be gone
    // The token's own slot, else a free or stale one, else the oldest stored.
    slot* target = nullptr;
    for (slot& e : s.slots)
      if (e.claims && e.hash == hash && e.epoch == epoch && same_bytes(e.token, token)) target = &e;
    for (std::size_t i = 0; !target && i < ways; ++i)
      if (!s.slots[i].claims || s.slots[i].epoch != epoch) target = &s.slots[i];
    if (!target)
      target = &*std::min_element(s.slots, s.slots + ways,
                                  [](const slot& a, const slot& b) { return a.stored < b.stored; });
    target->token.assign(token.data(), token.size());
    target->claims = std::move(claims);
    target->verified_at = verified_at;
    target->epoch = epoch;
    target->hash = hash;
    target->stored = ++s.stores;
  }

 private:
  static constexpr std::size_t set_count = slot_count / ways;

  struct slot {
    std::string token;
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
    std::uint64_t epoch = 0;
    std::uint64_t hash = 0;
    std::uint64_t stored = 0;  // when, in the set's stores: the oldest gives way
  };

  struct set {
    Mutex mutex;
    std::uint64_t stores IWSEC_GUARDED_BY(mutex) = 0;
    slot slots[ways] IWSEC_GUARDED_BY(mutex);
  };

  set& set_of(std::uint64_t hash) const noexcept {
    return sets_[static_cast<std::size_t>(hash >> 32) & (set_count - 1)];
  }

  struct thread_entry {
    std::uint64_t owner = 0;  // the id_ of the cache it belongs to; 0 for none
    std::uint64_t epoch = 0;
    std::string token;
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
    std::uint64_t candidate = 0;  // hash of the last token that missed here
    std::uint64_t candidate_owner = 0;
  };

  // This thread's entries, shared by every cache (tagged by owner).
  static thread_entry* thread_entries() {
    static thread_local thread_entry entries[thread_slots];
    return entries;
  }

  static std::uint64_t next_id() noexcept {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // Equality in time that depends only on the lengths, a word at a time
  // (CRYPTO_memcmp goes byte by byte: 7 times slower on a 330-byte token).
  static bool same_bytes(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    std::uint64_t diff = 0;
    std::size_t i = 0;
    for (; i + 8 <= a.size(); i += 8) {
      std::uint64_t x, y;
      std::memcpy(&x, a.data() + i, 8);
      std::memcpy(&y, b.data() + i, 8);
      diff |= x ^ y;
    }
    for (; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
  }

  // A seeded hash of the whole token (its time does not depend on its content).
  std::uint64_t hash_of(std::string_view token) const noexcept {
    std::uint64_t h = seed_ ^ (token.size() * 0x9E3779B97F4A7C15ULL);
    std::size_t i = 0;
    for (; i + 8 <= token.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, token.data() + i, 8);
      h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
      h ^= h >> 31;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, token.data() + i, token.size() - i);
    h = (h ^ tail) * 0x94D049BB133111EBULL;
    h ^= h >> 29;
    return h;
  }

  std::unique_ptr<set[]> sets_;
  const std::uint64_t id_;
  std::atomic<std::uint64_t> epoch_{1};
  std::uint64_t seed_ = 0;
};

}  // namespace detail
}  // namespace iwsec
