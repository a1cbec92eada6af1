#pragma once
/// @file
/// @brief Brute-force defence, modelled on Keycloak's: failed credential
/// checks counted per account and per client, temporary locks answered 429.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <arpa/inet.h>

#include <httplib.h>

#include "detail/crypto.hpp"

namespace iwsec {

/// @brief The client-throttle key of a peer address: an IPv4 address as it
/// is (an IPv4-mapped IPv6 address as its IPv4 form); an IPv6 address as its
/// /64 prefix, since one subscriber usually holds a whole /64 and could
/// otherwise take a fresh address for every 99 failures; anything else (a
/// text that is not an address) unchanged.
inline std::string client_address_key(std::string_view address) {
  if (address.find(':') == std::string_view::npos || address.size() >= INET6_ADDRSTRLEN) return std::string(address);
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, address.data(), address.size());
  unsigned char bytes[16];
  if (::inet_pton(AF_INET6, text, bytes) != 1) return std::string(address);
  static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, mapped_prefix, sizeof mapped_prefix) == 0) {
    char v4[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, bytes + 12, v4, sizeof v4)) return v4;
  }
  static const char hex[] = "0123456789abcdef";
  std::string key = "ipv6/64:";
  for (int i = 0; i < 8; ++i) {
    key += hex[bytes[i] >> 4];
    key += hex[bytes[i] & 15];
  }
  return key;
}

/// @brief The client-throttle key of the address a reverse proxy reports in
/// a header such as `X-Forwarded-For` or `X-Real-IP`: the last hop of a
/// comma-separated list (the one the nearest proxy appended), in any of the
/// forms proxies write (`1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
/// `[2001:db8::1]`, `fe80::1%eth0`, optionally in double quotes), keyed by
/// client_address_key (so IPv6 is grouped by its /64). A text that is none
/// of these is keyed as it is, trimmed.
inline std::string forwarded_address_key(std::string_view header_value) {
  std::string_view v = header_value;
  const auto comma = v.rfind(',');
  if (comma != std::string_view::npos) v.remove_prefix(comma + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  std::string_view host = v;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return std::string(v);
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::string(v);
    host = host.substr(1, close - 1);
  } else {
    const auto colon = host.find(':');
    if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos)
      host = host.substr(0, colon);  // IPv4 with a port: one colon only
  }
  const auto zone = host.find('%');
  if (zone != std::string_view::npos && host.find(':') != std::string_view::npos) host = host.substr(0, zone);
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return std::string(v);
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, host.data(), host.size());
  unsigned char bytes[16];
  const int family = host.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
  if (::inet_pton(family, text, bytes) != 1) return std::string(v);
  return client_address_key(host);
}

/// @brief When failed logins lock an account or a client out. Keycloak's
/// defaults: after `account_failures` (30) failures an account is locked for
/// `account_wait_increment` (60 s) × ⌊failures / 30⌋, at most
/// `account_max_wait` (900 s); `account_failure_reset` (12 h) without a
/// failure, or a successful login, resets the count. A client with
/// `client_failures` (100) failures within `client_window` (15 min) is
/// refused until that window has passed.
struct LockoutPolicy {
  /// @brief Off: nothing is counted and nothing is ever refused with 429.
  bool enabled = true;

  /// @brief Failures of one account (its email, lower-cased) that lock it.
  std::uint32_t account_failures = 30;
  /// @brief Lock length per multiple of account_failures.
  std::chrono::seconds account_wait_increment{60};
  /// @brief Longest lock.
  std::chrono::seconds account_max_wait{900};
  /// @brief Quiet time after which an account's failures are forgotten.
  std::chrono::seconds account_failure_reset{12 * 3600};

  /// @brief Failures from one client, within client_window, that block it.
  std::uint32_t client_failures = 100;
  /// @brief The client window; it opens at the client's first failure.
  std::chrono::seconds client_window{15 * 60};

  /// @brief Most accounts tracked at once (each entry about 100 bytes).
  std::size_t max_tracked_accounts = 100000;
  /// @brief Most clients tracked at once (each entry about 100 bytes).
  std::size_t max_tracked_clients = 100000;

  /// @brief Who the client is. Empty: the peer address (`req.remote_addr`).
  /// Behind a reverse proxy every request comes from the proxy's address:
  /// return the address the proxy vouches for (e.g. the last hop it
  /// appended to `X-Forwarded-For`), never a header a client can set
  /// freely. An empty string exempts the request from the client throttle.
  std::function<std::string(const httplib::Request&)> client_key;
};

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
  /// @brief An admitted attempt ended with a verdict.
  virtual LockTransition finish(const std::optional<Key>& account, const std::optional<Key>& client,
                                std::int64_t now, bool success) = 0;
  /// @brief An admitted attempt dropped unfinished (an exception): neither failure nor success.
  virtual void abandon(const std::optional<Key>& account, const std::optional<Key>& client) noexcept = 0;
};

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
    std::lock_guard<std::mutex> account_lock(accounts_mutex_);
    std::lock_guard<std::mutex> client_lock(clients_mutex_);
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
    std::lock_guard<std::mutex> lock(accounts_mutex_);
    return account_wait(k, now, false);
  }

  /// @brief Seconds @p client must still wait (0: none), without counting.
  std::int64_t client_wait(std::string_view client, std::int64_t now) override {
    if (!policy_.enabled || client.empty()) return 0;
    const key k = make_key('c', client);
    std::lock_guard<std::mutex> lock(clients_mutex_);
    return client_wait(k, now, false);
  }

  /// @brief Forgets @p account's failures and lifts its lock (an
  /// administrator's "unlock").
  void unlock_account(std::string_view account) override {
    const key k = make_key('a', normalise_account(account));
    std::lock_guard<std::mutex> lock(accounts_mutex_);
    accounts_.erase(k);
  }

  /// @brief Forgets every failure of @p client.
  void unlock_client(std::string_view client) override {
    const key k = make_key('c', client);
    std::lock_guard<std::mutex> lock(clients_mutex_);
    clients_.erase(k);
  }

  /// @brief Entries held (for tests and monitoring).
  std::size_t tracked_accounts() const {
    std::lock_guard<std::mutex> lock(accounts_mutex_);
    return accounts_.size();
  }
  std::size_t tracked_clients() const {
    std::lock_guard<std::mutex> lock(clients_mutex_);
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

  std::int64_t account_wait(const key& k, std::int64_t now, bool starting) const {
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

  std::int64_t client_wait(const key& k, std::int64_t now, bool starting) const {
    auto it = clients_.find(k);
    if (it == clients_.end()) return 0;
    const client_entry& e = it->second;
    const bool expired = client_expired(e, now);
    if (!expired && e.failures >= policy_.client_failures) return window_end(e) - now;
    if (starting && too_many_running(expired ? 0 : e.failures, e.pending, policy_.client_failures)) return 1;
    return 0;
  }

  account_entry& account_entry_for(const key& k, std::int64_t now) {
    auto it = accounts_.find(k);
    if (it == accounts_.end()) {
      if (accounts_.size() >= policy_.max_tracked_accounts) evict_accounts(now);
      it = accounts_.emplace(k, account_entry{}).first;
    }
    return it->second;
  }

  client_entry& client_entry_for(const key& k, std::int64_t now) {
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
    std::lock_guard<std::mutex> account_lock(accounts_mutex_);
    std::lock_guard<std::mutex> client_lock(clients_mutex_);
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
    std::lock_guard<std::mutex> account_lock(accounts_mutex_);
    std::lock_guard<std::mutex> client_lock(clients_mutex_);
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

  void evict_accounts(std::int64_t now) {
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

  void evict_clients(std::int64_t now) {
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
  mutable std::mutex accounts_mutex_;  // always taken before clients_mutex_
  mutable std::mutex clients_mutex_;
  std::unordered_map<key, account_entry, key_hash> accounts_;
  std::unordered_map<key, client_entry, key_hash> clients_;
};

namespace detail {

/// @brief Refuses a policy that would silently not protect (or never let
/// anyone in); used by validate_options.
inline const char* lockout_policy_error(const LockoutPolicy& p) {
  constexpr std::int64_t max_seconds = 366LL * 24 * 3600;
  if (!p.enabled) return nullptr;
  if (p.account_failures < 1 || p.account_failures > 1000000) return "account_failures must be 1 to 1000000";
  if (p.account_wait_increment.count() < 1 || p.account_wait_increment.count() > max_seconds)
    return "account_wait_increment must be 1 s to 366 days";
  if (p.account_max_wait < p.account_wait_increment || p.account_max_wait.count() > max_seconds)
    return "account_max_wait must be account_wait_increment to 366 days";
  if (p.account_failure_reset < p.account_max_wait || p.account_failure_reset.count() > max_seconds)
    return "account_failure_reset must be account_max_wait to 366 days";
  if (p.client_failures < 1 || p.client_failures > 100000000) return "client_failures must be 1 to 100000000";
  if (p.client_window.count() < 1 || p.client_window.count() > max_seconds) return "client_window must be 1 s to 366 days";
  if (p.max_tracked_accounts < 16 || p.max_tracked_accounts > 100000000)
    return "max_tracked_accounts must be 16 to 100000000";
  if (p.max_tracked_clients < 16 || p.max_tracked_clients > 100000000)
    return "max_tracked_clients must be 16 to 100000000";
  return nullptr;
}

}  // namespace detail
}  // namespace iwsec
