/// @brief detail::uuid_table: an open-addressing table from 128-bit UUID keys to expiry times.
/// @file
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "crypto.hpp"
#include "hex.hpp"
#include "zeroed_pages.hpp"

namespace iwsec {
namespace detail {

/// @brief Appends the canonical text of a key made by parse_uuid_key.
inline void append_uuid_key(std::string& out, std::uint64_t hi, std::uint64_t lo) {
  char text[36];
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) text[pos++] = '-';
    const std::uint64_t half = i < 16 ? hi : lo;
    text[pos++] = hex_digit(half >> (60 - 4 * (i % 16)));
  }
  out.append(text, sizeof text);
}

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
}  // namespace iwsec
