/// @brief The Lockout interface: where failed credential checks are counted and locks kept.
/// @file
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "detail/crypto.hpp"
#include "lockout_policy.hpp"

namespace iwsec {

/// @brief What one failure started: a lock of the account, a block of the
/// client (each the time it ends, 0 when this failure did not start it).
struct LockTransition {
  std::int64_t account_locked_until = 0;
  std::int64_t client_blocked_until = 0;
  explicit operator bool() const noexcept { return account_locked_until != 0 || client_blocked_until != 0; }
};

/// @brief The lockout seam: where failed credential checks are counted and
/// locks kept. LockoutTracker counts in process memory (the default);
/// a cluster backend (iwsec/postgres/backend.hpp) counts in its database, so
/// that every replica sees the same counts. Set Options::lockout_state to
/// replace the tracker the routes would otherwise make from Options::lockout.
/// Every method may be called from many threads at once.
class Lockout {
 public:
  /// @brief 128 bits of SHA-256("a" + lower-cased email) or ("c" + client).
  struct Key {
    std::uint64_t hi = 0, lo = 0;
    bool operator==(const Key& o) const noexcept { return hi == o.hi && lo == o.lo; }
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept { return static_cast<std::size_t>(k.lo); }
  };

  virtual ~Lockout() = default;

  /// @brief The account key of an email: lower-cased (ASCII), as the user
  /// stores match it.
  static std::string normalise_account(std::string_view email) { return detail::ascii_lower(email); }
  static Key account_key(std::string_view email) { return make_key('a', normalise_account(email)); }
  static Key client_key(std::string_view client) { return make_key('c', client); }

  /// @brief One credential check in progress; see begin().
  class Attempt {
   public:
    Attempt(Attempt&& other) noexcept { *this = std::move(other); }
    Attempt& operator=(Attempt&& other) noexcept {
      if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        account_ = other.account_;
        client_ = other.client_;
        wait_ = other.wait_;
      }
      return *this;
    }
    ~Attempt() { release(); }

    /// @brief True when the check may run; false when it must be refused.
    explicit operator bool() const noexcept { return wait_ == 0; }
    /// @brief Seconds to wait (>= 1) when refused; 0 when admitted.
    std::int64_t wait() const noexcept { return wait_; }

    /// @brief The credentials were wrong: counts a failure for the account
    /// and the client, locking or blocking them at their thresholds.
    /// Returns the lock or block this failure started, if any.
    LockTransition failed(std::int64_t now) {
      return owner_ ? std::exchange(owner_, nullptr)->finish(account_, client_, now, false) : LockTransition();
    }
    /// @brief The credentials were right: the account's count and lock are
    /// reset; the client's failures stay (a success does not wipe them, or
    /// one valid account would let a client guess at the others freely).
    void succeeded(std::int64_t now) {
      if (owner_) std::exchange(owner_, nullptr)->finish(account_, client_, now, true);
    }

   private:
    friend class Lockout;
    Attempt(Lockout* owner, std::optional<Key> account, std::optional<Key> client, std::int64_t wait)
        : owner_(owner), account_(account), client_(client), wait_(wait) {}
    void release() noexcept {
      if (owner_) std::exchange(owner_, nullptr)->abandon(account_, client_);
    }
    Lockout* owner_ = nullptr;  // set while admitted and unfinished
    std::optional<Key> account_, client_;
    std::int64_t wait_ = 0;
  };

  /// @brief The policy counts are judged by.
  virtual const LockoutPolicy& policy() const = 0;

  /// @brief Starts a credential check for @p account (an email; nothing for
  /// a refresh token) from @p client (empty: not tracked); see
  /// LockoutTracker::begin. May throw StateUnavailable (the routes answer 503).
  virtual Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) = 0;
  /// @brief Seconds @p account must still wait (0: none), without counting.
  virtual std::int64_t account_wait(std::string_view account, std::int64_t now) = 0;
  /// @brief Seconds @p client must still wait (0: none), without counting.
  virtual std::int64_t client_wait(std::string_view client, std::int64_t now) = 0;
  /// @brief Forgets @p account's failures and lifts its lock.
  virtual void unlock_account(std::string_view account) = 0;
  /// @brief Forgets every failure of @p client.
  virtual void unlock_client(std::string_view client) = 0;

 protected:
  static Key make_key(char kind, std::string_view text) {
    std::string input(1, kind);
    input += text;
    const auto digest = detail::sha256(input);
    Key k;
    std::memcpy(&k.hi, digest.data(), 8);
    std::memcpy(&k.lo, digest.data() + 8, 8);
    return k;
  }
  /// @brief An admitted attempt that reports to finish() / abandon().
  Attempt admitted(std::optional<Key> account, std::optional<Key> client) { return Attempt(this, account, client, 0); }
  /// @brief A refused attempt (@p wait >= 1 seconds) or, with 0, one admitted that reports nothing.
  static Attempt refused(std::int64_t wait) { return Attempt(nullptr, std::nullopt, std::nullopt, wait); }
  /// @brief For a decorator (a Lockout over another, e.g.
  /// JournaledLockout): @p attempt, begun on @p inner, made this one's, so
  /// that its verdict reaches this->finish() / abandon(), which pass it on
  /// to @p inner with finish_on() / abandon_on(). A refused attempt, or one
  /// that @p inner does not own itself, is returned as it is (its verdict
  /// then goes to its owner, past this decorator).
  Attempt adopt(Lockout& inner, Attempt&& attempt) {
    if (attempt.owner_ != &inner) return std::move(attempt);
    Attempt mine(this, attempt.account_, attempt.client_, 0);
    attempt.owner_ = nullptr;
    return mine;
  }
  /// @brief For a decorator: ends an attempt of @p inner's (see adopt()).
  static LockTransition finish_on(Lockout& inner, const std::optional<Key>& account, const std::optional<Key>& client,
                                  std::int64_t now, bool success) {
    return inner.finish(account, client, now, success);
  }
  /// @brief For a decorator: drops an attempt of @p inner's unfinished.
  static void abandon_on(Lockout& inner, const std::optional<Key>& account, const std::optional<Key>& client) noexcept {
    inner.abandon(account, client);
  }
  /// @brief An admitted attempt ended with a verdict.
  virtual LockTransition finish(const std::optional<Key>& account, const std::optional<Key>& client,
                                std::int64_t now, bool success) = 0;
  /// @brief An admitted attempt dropped unfinished (an exception): neither failure nor success.
  virtual void abandon(const std::optional<Key>& account, const std::optional<Key>& client) noexcept = 0;
};

}  // namespace iwsec
