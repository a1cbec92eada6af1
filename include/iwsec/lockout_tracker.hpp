/// @brief LockoutTracker: the Lockout that counts failures in process memory, in bounded tables.
/// @file
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "detail/thread_safety.hpp"
#include "lockout_interface.hpp"
#include "lockout_policy.hpp"

namespace iwsec {

/// @brief Counts failures and answers "wait N seconds" for locked accounts
/// and blocked clients. Thread-safe. Keys are kept as 128-bit SHA-256
/// prefixes, so no email is held in memory and a long one costs no more.
///
/// A credential check is bracketed by begin() and the Attempt's failed() or
/// succeeded(). Attempts still running are counted too: no more attempts
/// for an account (or client) may run at once than failures are left before
/// its threshold (at least one; 30 for a fresh account, 100 for a fresh
/// client under the defaults), so parallel guesses cannot slip
/// past the threshold while their password hashes run, not even in the
/// first burst, nor past a lock that just ended. The refused extra attempts
/// get a 429 with `Retry-After: 1` and are not counted.
///
/// Memory stays bounded: each table holds at most its `max_tracked_*`
/// entries. A full table first drops entries that no longer matter (quiet
/// for account_failure_reset, or past their client window); if that frees
/// less than an eighth of it, the entries that protect least go next:
/// unlocked ones before locked ones, fewest failures first, oldest first.
/// So spraying random emails or addresses evicts other sprayed one-failure
/// entries long before it could release a lock or a real count.
class LockoutTracker : public Lockout {
  using key = Key;
  using key_hash = KeyHash;

 public:
  explicit LockoutTracker(LockoutPolicy policy = LockoutPolicy()) : policy_(std::move(policy)) {}
  LockoutTracker(const LockoutTracker&) = delete;
  LockoutTracker& operator=(const LockoutTracker&) = delete;

  const LockoutPolicy& policy() const override { return policy_; }

  /// @brief Starts a credential check for @p account (an email; nothing for
  /// a refresh token, which names no account) from @p client (empty: not
  /// tracked). Refused (the Attempt is false, wait() >= 1 seconds) while the
  /// account is locked, the client blocked, or too many of their attempts
  /// run at once; nothing is counted then. Always admitted when the policy
  /// is disabled. An admitted Attempt dropped unfinished (an exception)
  /// counts as neither failure nor success.
  Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) override {
    if (!policy_.enabled) return refused(0);
    std::optional<key> account_key, client_key;
    if (account) account_key = make_key('a', normalise_account(*account));
    if (!client.empty()) client_key = make_key('c', client);
    detail::Lock account_lock(accounts_mutex_);
    detail::Lock client_lock(clients_mutex_);
    std::int64_t wait = 0;
    if (account_key) wait = std::max(wait, account_wait(*account_key, now, true));
    if (client_key) wait = std::max(wait, client_wait(*client_key, now, true));
    if (wait > 0) return refused(wait);
    if (account_key) ++account_entry_for(*account_key, now).pending;
    if (client_key) ++client_entry_for(*client_key, now).pending;
    return admitted(account_key, client_key);
  }

  /// @brief Seconds @p account must still wait (0: none), without counting.
  std::int64_t account_wait(std::string_view account, std::int64_t now) override {
    if (!policy_.enabled) return 0;
    const key k = make_key('a', normalise_account(account));
    detail::Lock lock(accounts_mutex_);
    return account_wait(k, now, false);
  }

  /// @brief Seconds @p client must still wait (0: none), without counting.
  std::int64_t client_wait(std::string_view client, std::int64_t now) override {
    if (!policy_.enabled || client.empty()) return 0;
    const key k = make_key('c', client);
    detail::Lock lock(clients_mutex_);
    return client_wait(k, now, false);
  }

  /// @brief Forgets @p account's failures and lifts its lock (an
  /// administrator's "unlock").
  void unlock_account(std::string_view account) override {
    const key k = make_key('a', normalise_account(account));
    detail::Lock lock(accounts_mutex_);
    accounts_.erase(k);
  }

  /// @brief Forgets every failure of @p client.
  void unlock_client(std::string_view client) override {
    const key k = make_key('c', client);
    detail::Lock lock(clients_mutex_);
    clients_.erase(k);
  }

  /// @brief Entries held (for tests and monitoring).
  std::size_t tracked_accounts() const {
    detail::Lock lock(accounts_mutex_);
    return accounts_.size();
  }
  std::size_t tracked_clients() const {
    detail::Lock lock(clients_mutex_);
    return clients_.size();
  }

 private:
  struct account_entry {
    std::uint32_t failures = 0;
    std::uint32_t pending = 0;  // admitted attempts still running
    std::int64_t last_failure = 0;
    std::int64_t locked_until = 0;
  };
  struct client_entry {
    std::uint32_t failures = 0;
    std::uint32_t pending = 0;
    std::int64_t window_start = 0;
  };

  std::int64_t reset_after() const { return static_cast<std::int64_t>(policy_.account_failure_reset.count()); }
  std::int64_t window_end(const client_entry& e) const {
    return e.window_start + static_cast<std::int64_t>(policy_.client_window.count());
  }
  bool account_expired(const account_entry& e, std::int64_t now) const {
    return e.failures == 0 || (now - e.last_failure >= reset_after() && now >= e.locked_until);
  }
  bool client_expired(const client_entry& e, std::int64_t now) const { return e.failures == 0 || now >= window_end(e); }

  // Attempts that may run at once: the failures left before the threshold
  // (at least one). Every running attempt may be a failure, so no burst can
  // take the count past the threshold, not even the first one.
  static bool too_many_running(std::uint32_t failures, std::uint32_t pending, std::uint32_t threshold) {
    const std::uint32_t allowed = failures >= threshold ? 1 : threshold - failures;
    return pending >= allowed;
  }

  std::int64_t account_wait(const key& k, std::int64_t now, bool starting) const IWSEC_REQUIRES(accounts_mutex_) {
    auto it = accounts_.find(k);
    if (it == accounts_.end()) return 0;
    const account_entry& e = it->second;
    if (e.locked_until > now) return e.locked_until - now;
    // Failures past their 12 quiet hours no longer count (account_failed
    // starts again from zero), but the attempts running still do.
    const std::uint32_t failures = account_expired(e, now) ? 0 : e.failures;
    if (starting && too_many_running(failures, e.pending, policy_.account_failures)) return 1;
    return 0;
  }

  std::int64_t client_wait(const key& k, std::int64_t now, bool starting) const IWSEC_REQUIRES(clients_mutex_) {
    auto it = clients_.find(k);
    if (it == clients_.end()) return 0;
    const client_entry& e = it->second;
    const bool expired = client_expired(e, now);
    if (!expired && e.failures >= policy_.client_failures) return window_end(e) - now;
    if (starting && too_many_running(expired ? 0 : e.failures, e.pending, policy_.client_failures)) return 1;
    return 0;
  }

  account_entry& account_entry_for(const key& k, std::int64_t now) IWSEC_REQUIRES(accounts_mutex_) {
    auto it = accounts_.find(k);
    if (it == accounts_.end()) {
      if (accounts_.size() >= policy_.max_tracked_accounts) evict_accounts(now);
      it = accounts_.emplace(k, account_entry{}).first;
    }
    return it->second;
  }

  client_entry& client_entry_for(const key& k, std::int64_t now) IWSEC_REQUIRES(clients_mutex_) {
    auto it = clients_.find(k);
    if (it == clients_.end()) {
      if (clients_.size() >= policy_.max_tracked_clients) evict_clients(now);
      it = clients_.emplace(k, client_entry{0, 0, now}).first;
    }
    return it->second;
  }

  LockTransition finish(const std::optional<key>& account, const std::optional<key>& client, std::int64_t now,
                        bool success) override {
    LockTransition started;
    detail::Lock account_lock(accounts_mutex_);
    detail::Lock client_lock(clients_mutex_);
    if (account) {
      account_entry& e = account_entry_for(*account, now);  // evicted meanwhile: counted afresh
      if (e.pending > 0) --e.pending;
      if (success) {
        e.failures = 0;
        e.locked_until = 0;
      } else {
        const bool was_locked = e.locked_until > now;
        account_failed(e, now);
        if (!was_locked && e.locked_until > now) started.account_locked_until = e.locked_until;
      }
      if (e.failures == 0 && e.pending == 0) accounts_.erase(*account);
    }
    if (client) {
      client_entry& e = client_entry_for(*client, now);
      if (e.pending > 0) --e.pending;
      if (!success) {
        client_failed(e, now);
        if (e.failures == policy_.client_failures) started.client_blocked_until = window_end(e);
      }
      if (e.failures == 0 && e.pending == 0) clients_.erase(*client);
    }
    return started;
  }

  void abandon(const std::optional<key>& account, const std::optional<key>& client) noexcept override {
    detail::Lock account_lock(accounts_mutex_);
    detail::Lock client_lock(clients_mutex_);
    if (account) {
      auto it = accounts_.find(*account);
      if (it != accounts_.end() && it->second.pending > 0) --it->second.pending;
    }
    if (client) {
      auto it = clients_.find(*client);
      if (it != clients_.end() && it->second.pending > 0) --it->second.pending;
    }
  }

  void account_failed(account_entry& e, std::int64_t now) {
    if (e.failures > 0 && account_expired(e, now)) {  // 12 quiet hours: start again
      e.failures = 0;
      e.locked_until = 0;
    }
    if (e.failures < UINT32_MAX) ++e.failures;
    e.last_failure = now;
    if (e.failures >= policy_.account_failures) {
      const std::int64_t multiples = e.failures / policy_.account_failures;
      const std::int64_t increment = static_cast<std::int64_t>(policy_.account_wait_increment.count());
      const std::int64_t max_wait = static_cast<std::int64_t>(policy_.account_max_wait.count());
      const std::int64_t wait = std::min(max_wait, multiples * increment);  // no overflow: < 2^32 * 2^25
      e.locked_until = std::max(e.locked_until, now + wait);
    }
  }

  void client_failed(client_entry& e, std::int64_t now) {
    if (e.failures == 0 || now >= window_end(e)) {  // the window opens at the first failure
      e.failures = 0;
      e.window_start = now;
    }
    if (e.failures < UINT32_MAX) ++e.failures;
  }

  std::size_t eviction_target(std::size_t cap) const { return cap - std::max<std::size_t>(1, cap / 8); }

  void evict_accounts(std::int64_t now) IWSEC_REQUIRES(accounts_mutex_) {
    for (auto it = accounts_.begin(); it != accounts_.end();)
      it = account_expired(it->second, now) && it->second.pending == 0 ? accounts_.erase(it) : std::next(it);
    const std::size_t target = eviction_target(policy_.max_tracked_accounts);
    if (accounts_.size() <= target) return;
    // Least protective first: unlocked, fewest failures, longest quiet.
    using rank = std::pair<std::pair<std::int64_t, std::int64_t>, std::int64_t>;
    std::vector<std::pair<rank, key>> ranked;
    ranked.reserve(accounts_.size());
    for (const auto& [k, e] : accounts_) {
      if (e.pending > 0) continue;  // attempts in flight keep their entry (and its cap)
      const std::int64_t locked = e.locked_until > now ? e.locked_until : 0;  // sooner unlock goes first
      ranked.push_back({{{locked, e.failures}, e.last_failure}, k});
    }
    const std::size_t drop = std::min(accounts_.size() - target, ranked.size());
    if (drop == 0) return;  // every entry has attempts in flight: the table overshoots for now
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(drop - 1), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < drop; ++i) accounts_.erase(ranked[i].second);
  }

  void evict_clients(std::int64_t now) IWSEC_REQUIRES(clients_mutex_) {
    for (auto it = clients_.begin(); it != clients_.end();)
      it = client_expired(it->second, now) && it->second.pending == 0 ? clients_.erase(it) : std::next(it);
    const std::size_t target = eviction_target(policy_.max_tracked_clients);
    if (clients_.size() <= target) return;
    // Least protective first: not blocked, fewest failures, oldest window.
    using rank = std::pair<std::pair<std::int64_t, std::int64_t>, std::int64_t>;
    std::vector<std::pair<rank, key>> ranked;
    ranked.reserve(clients_.size());
    for (const auto& [k, e] : clients_) {
      if (e.pending > 0) continue;
      const std::int64_t blocked = e.failures >= policy_.client_failures ? window_end(e) : 0;
      ranked.push_back({{{blocked, e.failures}, e.window_start}, k});
    }
    const std::size_t drop = std::min(clients_.size() - target, ranked.size());
    if (drop == 0) return;  // every entry has attempts in flight: the table overshoots for now
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(drop - 1), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < drop; ++i) clients_.erase(ranked[i].second);
  }

  LockoutPolicy policy_;
  mutable detail::Mutex accounts_mutex_ IWSEC_ACQUIRED_BEFORE(clients_mutex_);  // always taken first
  mutable detail::Mutex clients_mutex_;
  std::unordered_map<key, account_entry, key_hash> accounts_ IWSEC_GUARDED_BY(accounts_mutex_);
  std::unordered_map<key, client_entry, key_hash> clients_ IWSEC_GUARDED_BY(clients_mutex_);
};

}  // namespace iwsec
