#pragma once
/// @file
/// @brief Cluster mode: several replicas share one PostgreSQL database.
///
/// The database is the one source of truth. Every write is one transaction
/// that also appends to an ordered change log (iwsec_changes) and NOTIFYs;
/// each replica keeps in memory what validations need (revoked jtis, users
/// by email and by refresh-token hash) and applies the log in order, on each
/// notification and on a timer, so a validation makes no network call and a
/// lost notification costs one poll interval. A replica that cannot show it
/// has caught up within max_staleness throws StateUnavailable (the routes
/// answer 503). Lockout counts live in the database, counted before the
/// password is checked, so they are exact across replicas (a refresh-token
/// exchange reads its client's block from the local copy instead).
///
/// Not included by iwsec.hpp; link the `iwsec::postgres` CMake target (or
/// the `iwsec-postgres` pkg-config module), which adds libpq.
///
/// @code
/// iwsec::postgres::Backend cluster({"host=db dbname=iwsec"});
/// iwsec::Options options;
/// options.revocations = cluster.revocations();
/// options.lockout_state = cluster.lockout();
/// iwsec::mount_security_routes(server, cluster.users(), signer, options);
/// @endcode

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <poll.h>

#include "../audit.hpp"
#include "../clock.hpp"
#include "../detail/hex.hpp"
#include "../errors.hpp"
#include "../lockout.hpp"
#include "../metrics.hpp"
#include "../options.hpp"
#include "../revocation_store.hpp"
#include "../user_store.hpp"
#include "../detail/thread_safety.hpp"
#include "connection.hpp"
#include "schema.hpp"

namespace iwsec {
namespace postgres {

/// @brief How a Backend connects and how fresh it must stay.
struct BackendOptions {
  /// @brief A libpq connection string or URI (never logged: it may hold a password).
  std::string conninfo;
  /// @brief A replica keeps a local copy of the shared state and follows the
  /// change log (a server). false: every read asks the database and no
  /// listener runs (the admin tool).
  bool replica = true;
  /// @brief Longest time a replica may go without showing it has caught up;
  /// past it, reads that need shared state throw StateUnavailable.
  std::chrono::milliseconds max_staleness{5000};
  /// @brief How often the log is polled when no notification came (<= 1 s).
  std::chrono::milliseconds poll_interval{200};
  /// @brief Connections for writes and lockout counts (the listener has its own).
  std::size_t pool_size = 8;
  /// @brief Deadline of one use of the database on a request's path (the
  /// wait for a free pooled connection, connecting and the statements): past
  /// it the connection is dropped and the request answers 503, so a stalled
  /// database costs a login or a write at most this long.
  std::chrono::milliseconds request_timeout{1500};
  /// @brief How long a write waits for the outcome of a COMMIT it sent (past
  /// request_timeout: a deadline never turns a committed write into a
  /// reported failure); see docs/cluster.md, "A sick database".
  std::chrono::milliseconds commit_timeout{30000};
  /// @brief Lockout policy (the counts live in the database).
  LockoutPolicy lockout;
  /// @brief Source of "now" (seconds), as Options::clock.
  Clock clock = system_now;
  /// @brief Where the backend reports trouble (lost connection, recovery);
  /// null: standard error. Messages never hold the conninfo.
  std::function<void(const std::string&)> log;
  /// @brief For tests that force an interleaving (a logical race no
  /// sanitizer sees): called on the follower thread at named points,
  /// "snapshot read" (a snapshot was read and is about to replace the local
  /// copy) and "snapshot applied". Null: nothing is called.
  std::function<void(std::string_view point)> interleave;
};

namespace detail {

inline std::string lockout_key_bytes(const Lockout::Key& k) {
  std::string out = "\\x";
  for (const std::uint64_t half : {k.hi, k.lo})
    for (int shift = 60; shift >= 0; shift -= 4) out += iwsec::detail::hex_digit(half >> shift);
  return out;
}

/// @brief The shared state of one backend: connections, the local copy and
/// the thread that follows the change log.
class cluster_state {
  // How long a replica starting waits for the database (a loaded machine
  // forks backends slowly); requests keep their own, short deadline.
  static constexpr std::chrono::milliseconds startup_timeout{30000};

 public:
  explicit cluster_state(BackendOptions o)
      : options_(std::move(o)),
        pool_(options_.conninfo, options_.pool_size, options_.request_timeout, options_.commit_timeout),
        revoked_(options_.clock) {
    if (!options_.clock) options_.clock = system_now;
    if (options_.poll_interval > std::chrono::milliseconds(1000)) options_.poll_interval = std::chrono::milliseconds(1000);
    if (options_.poll_interval < std::chrono::milliseconds(10)) options_.poll_interval = std::chrono::milliseconds(10);
    {
      // A replica starting may wait for the server longer than a request does;
      // the migration may wait for another program's (advisory lock).
      auto c = pool_.take(options_.replica ? startup_timeout : options_.request_timeout);
      c->get();
      c->extend_deadline(std::chrono::minutes(2));
      migrate(*c);
    }
    if (options_.replica) {
      listener_ = std::make_unique<pq_connection>(options_.conninfo, "iwsec-listener",
                                                  std::max(options_.max_staleness, std::chrono::milliseconds(1000)));
      pool_.refresh(startup_timeout);  // open the pool now, not on requests' paths
      listen_and_load(*listener_);  // LISTEN, snapshot, catch up: then serve
      follower_ = std::thread([this] { follow(); });
    }
  }

  ~cluster_state() { stop(); }

  void stop() {
    {
      iwsec::detail::Lock lock(stop_mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    stop_signal_.notify_all();
    if (follower_.joinable()) follower_.join();
    if (listener_) {
      try {  // no longer a replica iwsec-admin should wait for
        listener_->exec("DELETE FROM iwsec_replicas WHERE id = $1", {replica_id_});
      } catch (const std::exception&) {
      }
      listener_->close();
    }
    pool_.close();
  }

  const BackendOptions& options() const { return options_; }
  pq_pool& pool() { return pool_; }
  std::int64_t now() const { return options_.clock(); }

  // ---- freshness ------------------------------------------------------------

  double lag_seconds() const {
    const auto at = caught_up_at_.load(std::memory_order_acquire);
    if (at == 0) return 1e9;
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    return static_cast<double>(now - at) * 1e-9;
  }
  std::int64_t applied_sequence() const { return applied_.load(std::memory_order_acquire); }

  /// @brief Throws unless the local copy is within max_staleness of the database.
  void require_fresh() const {
    const auto at = caught_up_at_.load(std::memory_order_acquire);
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    const auto bound = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.max_staleness).count();
    if (at == 0 || now - at > bound) {
      const std::string why = "iwsec postgres: this replica has not caught up with the database for over " +
                              std::to_string(options_.max_staleness.count()) + " ms";
      if (!stale_reported_.exchange(true)) report(why + "; answering 503 until it has");
      throw StateUnavailable(why);
    }
  }

  // ---- local copy -------------------------------------------------------------

  struct entry {
    std::optional<User> user;  // nullopt: deleted (a tombstone, so an older write cannot revive it)
    std::int64_t seq = 0;      // the state is at least as new as this log entry
  };

  std::optional<User> local_user(std::string_view email) const {
    require_fresh();
    iwsec::detail::ReaderLock lock(users_mutex_);
    auto it = users_.find(iwsec::detail::ascii_lower(email));
    if (it == users_.end() || !it->second.user) return std::nullopt;
    return it->second.user;
  }

  std::optional<User> local_user_by_refresh(std::string_view hash) const {
    require_fresh();
    iwsec::detail::ReaderLock lock(users_mutex_);
    auto it = by_refresh_.find(std::string(hash));
    if (it == by_refresh_.end()) return std::nullopt;
    auto u = users_.find(it->second);
    if (u == users_.end() || !u->second.user) return std::nullopt;
    return u->second.user;
  }

  /// Users in the local copy (deleted ones, kept as tombstones, not counted).
  std::size_t local_user_count() const {
    iwsec::detail::ReaderLock lock(users_mutex_);
    std::size_t n = 0;
    for (const auto& kv : users_)
      if (kv.second.user) ++n;
    return n;
  }

  std::optional<UserStatus> local_status(std::string_view email) const {
    require_fresh();
    iwsec::detail::ReaderLock lock(users_mutex_);
    auto it = users_.find(iwsec::detail::ascii_lower(email));
    if (it == users_.end() || !it->second.user) return std::nullopt;
    UserStatus s;
    s.refresh_generation = it->second.user->refresh_generation;
    s.disabled = it->second.user->disabled;
    s.user_id = it->second.user->user_id;
    return s;
  }

  bool local_revoked(std::string_view jti) {
    require_fresh();
    return revoked_.is_revoked(jti);
  }

  void local_revoke(std::string_view jti, std::int64_t expires_at) { revoked_.revoke(jti, expires_at); }

  /// @brief Records the state of @p email_key as of log entry @p seq (a user
  /// or, with nullopt, its deletion), unless a newer state is already held.
  void put_user(const std::string& email_key, std::optional<User> user, std::int64_t seq) {
    iwsec::detail::WriterLock lock(users_mutex_);
    entry& e = users_[email_key];
    if (e.seq > seq) return;
    if (e.user && !e.user->refresh_token_sha256.empty()) by_refresh_.erase(e.user->refresh_token_sha256);
    e.user = std::move(user);
    e.seq = seq;
    if (e.user && !e.user->refresh_token_sha256.empty()) by_refresh_[e.user->refresh_token_sha256] = email_key;
  }

  // ---- blocked clients (read by refresh-token exchanges, no round trip) ----------

  /// @brief Seconds the client with key @p hex (lockout_key_bytes without
  /// its "\\x") must still wait, from the local copy: the blocked clients
  /// read on every poll, and those this replica's own exchanges blocked.
  std::int64_t client_block_wait(const std::string& hex, std::int64_t now) const {
    iwsec::detail::ReaderLock lock(blocks_mutex_);
    auto it = client_blocks_.find(hex);
    return it != client_blocks_.end() && it->second.until > now ? it->second.until - now : 0;
  }

  /// @brief Whether any client is blocked (a lock-free test for the common case: none).
  bool any_client_blocks() const { return client_block_count_.load(std::memory_order_acquire) != 0; }

  /// @brief Records a block this replica learnt of between polls.
  void note_client_block(const std::string& hex, std::int64_t until) {
    iwsec::detail::WriterLock lock(blocks_mutex_);
    client_blocks_[hex] = block{until, std::chrono::steady_clock::now()};
    client_block_count_.store(client_blocks_.size(), std::memory_order_release);
  }

  /// @brief Forgets a block (unlock_client on this replica; the others on their next poll).
  void forget_client_block(const std::string& hex) {
    iwsec::detail::WriterLock lock(blocks_mutex_);
    client_blocks_.erase(hex);
    client_block_count_.store(client_blocks_.size(), std::memory_order_release);
  }

  /// @brief Called, on the follower thread with its connection, whenever the
  /// signing keys may have changed (a 'k' log entry, a snapshot), and once
  /// soon after this call, so a change made before it is not missed.
  void on_keys_changed(std::function<void(pq_connection&)> f) {
    iwsec::detail::Lock lock(apply_mutex_);
    keys_changed_ = std::move(f);
    keys_pending_ = true;
  }

  // ---- following the log -------------------------------------------------------

  /// @brief Applies every log entry after the last applied one, in order,
  /// reading over @p c. Entries come with the current row of their user, so
  /// applying is idempotent. A gap (entries pruned while this replica was
  /// away) or an 's' entry reloads everything.
  void catch_up(pq_connection& c) {
    iwsec::detail::Lock lock(apply_mutex_);
    for (;;) {
      const auto started = std::chrono::steady_clock::now().time_since_epoch().count();
      const std::int64_t from = applied_.load();
      auto r = c.exec(
          "SELECT c.seq, c.kind, c.email_key, c.jti, c.expires_at, u.user_id, u.email, u.password_hash, "
          "u.refresh_token_sha256, u.refresh_generation, u.disabled, coalesce(u.refresh_token_issued_at, 0) "
          "FROM iwsec_changes c LEFT JOIN iwsec_users u ON c.kind = 'u' AND u.email_key = c.email_key "
          "WHERE c.seq > $1 ORDER BY c.seq LIMIT 5000",
          {std::to_string(from)});
      std::int64_t expected = from + 1;
      for (int i = 0; i < r.rows(); ++i, ++expected) {
        const std::int64_t seq = r.integer(i, 0);
        const std::string kind = r.text(i, 1);
        if (seq != expected || kind == "s") {
          load_snapshot(c);
          return;
        }
        if (kind == "r") {
          revoked_.revoke(r.text(i, 3), r.integer(i, 4));
        } else if (kind == "u") {
          put_user(r.text(i, 2), r.null(i, 5) ? std::nullopt : std::optional<User>(user_of(r, i, 5)), seq);
        } else if (kind == "k") {
          keys_changed(c);
        }
        applied_.store(seq, std::memory_order_release);
      }
      if (r.rows() < 5000) {
        caught_up_at_.store(started, std::memory_order_release);
        if (stale_reported_.exchange(false)) report("iwsec postgres: caught up again at change " + std::to_string(applied_.load()));
        return;
      }
    }
  }

  static User user_of(const pq_result& r, int row, int first) {
    User u;
    u.user_id = r.text(row, first);
    u.email = r.text(row, first + 1);
    u.password_hash = r.text(row, first + 2);
    u.refresh_token_sha256 = r.text(row, first + 3);
    u.refresh_generation = r.integer(row, first + 4);
    u.disabled = r.boolean(row, first + 5);
    u.refresh_token_issued_at = r.integer(row, first + 6);
    return u;
  }

  void report(const std::string& message) const {
    if (options_.log) {
      options_.log(message);
    } else {
      std::fprintf(stderr, "%s\n", message.c_str());
    }
  }

 private:
  void listen_and_load(pq_connection& c) {
    c.exec("LISTEN iwsec_changes");
    c.exec("SET synchronous_commit = off");
    {
      iwsec::detail::Lock lock(apply_mutex_);
      load_snapshot(c);
    }
    catch_up(c);
    poll_client_blocks(c);
  }

  // One consistent view of the users, the live revocations and the log head.
  void load_snapshot(pq_connection& c) IWSEC_REQUIRES(apply_mutex_) {
    const auto started = std::chrono::steady_clock::now().time_since_epoch().count();
    std::int64_t head = 0;
    std::unordered_map<std::string, entry> users;
    std::unordered_map<std::string, std::string> by_refresh;
    c.transaction(
        [&] {
          head = c.exec("SELECT coalesce(max(seq), 0) FROM iwsec_changes").integer(0, 0);
          auto u = c.exec(
              "SELECT user_id, email, password_hash, refresh_token_sha256, refresh_generation, disabled, "
              "coalesce(refresh_token_issued_at, 0), email_key "
              "FROM iwsec_users");
          for (int i = 0; i < u.rows(); ++i) {
            User user = user_of(u, i, 0);
            const std::string key = u.text(i, 7);
            if (!user.refresh_token_sha256.empty()) by_refresh[user.refresh_token_sha256] = key;
            users[key] = entry{std::move(user), head};
          }
          auto r = c.exec("SELECT jti, expires_at FROM iwsec_revocations WHERE expires_at > $1",
                          {std::to_string(now())});
          for (int i = 0; i < r.rows(); ++i) revoked_.revoke(r.text(i, 0), r.integer(i, 1));
        },
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (options_.interleave) options_.interleave("snapshot read");
    {
      iwsec::detail::WriterLock lock(users_mutex_);
      // A local write that committed after the snapshot was read (its log
      // entry is past head) is newer than the snapshot: keep it, or this
      // replica would answer from the older state until the next catch-up.
      for (auto& [key, e] : users_) {
        if (e.seq <= head) continue;
        auto old = users.find(key);
        if (old != users.end() && old->second.user && !old->second.user->refresh_token_sha256.empty()) {
          auto r = by_refresh.find(old->second.user->refresh_token_sha256);
          if (r != by_refresh.end() && r->second == key) by_refresh.erase(r);
        }
        if (e.user && !e.user->refresh_token_sha256.empty()) by_refresh[e.user->refresh_token_sha256] = key;
        users[key] = std::move(e);
      }
      users_ = std::move(users);
      by_refresh_ = std::move(by_refresh);
    }
    applied_.store(head, std::memory_order_release);
    caught_up_at_.store(started, std::memory_order_release);
    if (options_.interleave) options_.interleave("snapshot applied");
    keys_changed(c);  // whatever the log entries skipped may have held
  }

  void keys_changed(pq_connection& c) IWSEC_REQUIRES(apply_mutex_) {
    if (keys_changed_) keys_changed_(c);
  }

  // Reads the clients blocked now (index on failures: few rows), at most once
  // a poll interval; keeps blocks noted locally since the read began.
  void poll_client_blocks(pq_connection& c) {
    const LockoutPolicy& p = options_.lockout;
    if (!p.enabled || p.client_failures == 0) return;
    const auto started = std::chrono::steady_clock::now();
    if (started - client_blocks_polled_ < options_.poll_interval) return;
    const std::string window = std::to_string(p.client_window.count());
    auto r = c.exec(
        "SELECT encode(key, 'hex'), window_start + $2::bigint FROM iwsec_lockout_clients "
        "WHERE failures >= $1::bigint AND window_start + $2::bigint > $3::bigint",
        {std::to_string(p.client_failures), window, std::to_string(now())});
    std::unordered_map<std::string, block> blocks;
    for (int i = 0; i < r.rows(); ++i) blocks[r.text(i, 0)] = block{r.integer(i, 1), started};
    {
      iwsec::detail::WriterLock lock(blocks_mutex_);
      for (auto& [key, b] : client_blocks_)
        if (b.noted >= started) blocks[key] = b;
      client_blocks_ = std::move(blocks);
      client_block_count_.store(client_blocks_.size(), std::memory_order_release);
    }
    client_blocks_polled_ = started;
  }

  bool wait_or_stop(std::chrono::milliseconds d) {
    iwsec::detail::Lock lock(stop_mutex_);
    return lock.wait_for(stop_signal_, d, [&]() IWSEC_REQUIRES(stop_mutex_) { return stopping_; });
  }

  // The follower: on every notification and at least every poll_interval,
  // apply the log; reconnect (LISTEN, catch up) when the connection breaks;
  // prune what no one needs any more now and then.
  void follow() {
    bool healthy = true;
    auto next_prune = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (true) {
      {
        iwsec::detail::Lock lock(stop_mutex_);
        if (stopping_) return;
      }
      try {
        if (!listener_->connected()) {
          listener_->exec("LISTEN iwsec_changes");
          listener_->exec("SET synchronous_commit = off");  // heartbeats and pruning need no WAL flush
        }
        // Pooled connections a restart broke (or a deadline dropped) are
        // replaced here, before this replica shows it has caught up, so a
        // request that comes after recovery does not connect on its own path.
        pool_.refresh(std::max(options_.max_staleness / 4, std::chrono::milliseconds(1000)));
        const auto began = std::chrono::steady_clock::now();
        catch_up(*listener_);
        heartbeat(*listener_);
        poll_client_blocks(*listener_);
        {
          iwsec::detail::Lock lock(apply_mutex_);
          if (keys_pending_) {
            keys_changed(*listener_);
            keys_pending_ = false;
          }
        }
        const auto took = std::chrono::steady_clock::now() - began;
        if (took > options_.max_staleness / 4)
          report("iwsec postgres: catching up took " +
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) + " ms");
        if (!healthy) report("iwsec postgres: reconnected to the database; caught up at change " +
                             std::to_string(applied_.load()));
        healthy = true;
        if (std::chrono::steady_clock::now() >= next_prune) {
          next_prune = std::chrono::steady_clock::now() + std::chrono::seconds(30);
          try {
            const auto pruning = std::chrono::steady_clock::now();
            prune(*listener_);
            const auto pruned = std::chrono::steady_clock::now() - pruning;
            if (pruned > options_.max_staleness / 4)
              report("iwsec postgres: pruning took " +
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(pruned).count()) + " ms");
          } catch (const SqlError& e) {
            report(std::string(e.what()) + " (pruning; tried again in 30 s)");
          }
        }
        wait_for_notification(*listener_);
      } catch (const std::exception& e) {
        if (healthy) report(std::string(e.what()) + "; retrying");
        healthy = false;
        listener_->close();
        if (wait_or_stop(options_.poll_interval)) return;
      }
    }
  }

  // Tells iwsec-admin how far this replica got: when it applied something
  // new, and at least once a second.
  void heartbeat(pq_connection& c) {
    const std::int64_t applied = applied_.load();
    const auto now = std::chrono::steady_clock::now();
    if (applied == reported_applied_ && now - reported_at_ < std::chrono::seconds(1)) return;
    c.exec("INSERT INTO iwsec_replicas (id, applied, seen_at) VALUES ($1, $2, now()) "
           "ON CONFLICT (id) DO UPDATE SET applied = excluded.applied, seen_at = now()",
           {replica_id_, std::to_string(applied)});
    reported_applied_ = applied;
    reported_at_ = now;
  }

  // Waits until a notification arrives, the connection breaks or the poll
  // interval passes; drains the notifications.
  void wait_for_notification(pq_connection& c) {
    PGconn* conn = c.get();
    auto drain = [&] {
      bool any = false;
      while (PGnotify* n = PQnotifies(conn)) {
        PQfreemem(n);
        any = true;
      }
      return any;
    };
    if (drain()) return;  // arrived while catching up
    pollfd p{PQsocket(conn), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(options_.poll_interval.count()));
    if (ready > 0) {
      if (PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK) {
        const std::string why = pq_message(PQerrorMessage(conn));
        c.close();
        throw StateUnavailable("iwsec postgres: lost the listening connection: " + why);
      }
      drain();
    }
  }

  // Forgets expired revocations, old log entries (a replica away longer
  // than that reloads from a snapshot) and expired lockout counts.
  void prune(pq_connection& c) {
    const std::string now_s = std::to_string(now());
    c.exec("DELETE FROM iwsec_revocations WHERE expires_at < $1", {now_s});
    c.exec(
        "DELETE FROM iwsec_changes WHERE at < now() - interval '15 minutes' "
        "AND seq < (SELECT max(seq) FROM iwsec_changes)");
    c.exec("DELETE FROM iwsec_lockout_accounts WHERE locked_until < $1::bigint AND last_failure < $1::bigint - $2::bigint",
           {now_s, std::to_string(options_.lockout.account_failure_reset.count())});
    c.exec("DELETE FROM iwsec_lockout_clients WHERE window_start < $1::bigint - $2::bigint",
           {now_s, std::to_string(options_.lockout.client_window.count())});
    c.exec("DELETE FROM iwsec_replicas WHERE seen_at < now() - interval '1 hour'");
    // One row a statement, 'a' before 'c': the order iwsec_attempt_start
    // locks them in, so the two never wait for each other in a cycle.
    c.exec("UPDATE iwsec_lockout_sizes SET n = (SELECT count(*) FROM iwsec_lockout_accounts) WHERE kind = 'a'");
    c.exec("UPDATE iwsec_lockout_sizes SET n = (SELECT count(*) FROM iwsec_lockout_clients) WHERE kind = 'c'");
  }

  BackendOptions options_;
  pq_pool pool_;
  std::unique_ptr<pq_connection> listener_;
  std::thread follower_;

  iwsec::detail::Mutex stop_mutex_;
  std::condition_variable stop_signal_;
  bool stopping_ IWSEC_GUARDED_BY(stop_mutex_) = false;

  std::string replica_id_ = iwsec::generate_user_id();
  std::int64_t reported_applied_ = -1;  // follower thread only
  std::chrono::steady_clock::time_point reported_at_{};

  iwsec::detail::Mutex apply_mutex_;  // one catch-up at a time
  std::atomic<std::int64_t> applied_{0};
  std::atomic<std::int64_t> caught_up_at_{0};  // steady-clock ns when the last complete catch-up began
  mutable std::atomic<bool> stale_reported_{false};  // one log line per stale spell

  mutable iwsec::detail::SharedMutex users_mutex_;
  std::unordered_map<std::string, entry> users_ IWSEC_GUARDED_BY(users_mutex_);  // lower-cased email -> state
  // refresh hash -> lower-cased email
  std::unordered_map<std::string, std::string> by_refresh_ IWSEC_GUARDED_BY(users_mutex_);
  MemoryRevocationStore revoked_;

  struct block {
    std::int64_t until = 0;
    std::chrono::steady_clock::time_point noted;
  };
  mutable iwsec::detail::SharedMutex blocks_mutex_;
  // hex key -> blocked until (seconds)
  std::unordered_map<std::string, block> client_blocks_ IWSEC_GUARDED_BY(blocks_mutex_);
  std::atomic<std::size_t> client_block_count_{0};
  std::chrono::steady_clock::time_point client_blocks_polled_{};  // follower thread only
  std::function<void(pq_connection&)> keys_changed_ IWSEC_GUARDED_BY(apply_mutex_);
  bool keys_pending_ IWSEC_GUARDED_BY(apply_mutex_) = false;
};

}  // namespace detail

/// @brief The users, in the database (reads from the replica's local copy).
class PostgresUserStore : public UserStore {
 public:
  explicit PostgresUserStore(std::shared_ptr<detail::cluster_state> state) : state_(std::move(state)) {}

  std::optional<User> find_by_email(std::string_view email) override {
    if (state_->options().replica) return state_->local_user(email);
    return query_one("email_key = $1", iwsec::detail::ascii_lower(email));
  }

  std::optional<User> find_by_refresh_token_hash(std::string_view token_sha256) override {
    if (state_->options().replica) return state_->local_user_by_refresh(token_sha256);
    if (token_sha256.empty()) return std::nullopt;
    return query_one("refresh_token_sha256 = $1", std::string(token_sha256));
  }

  std::optional<UserStatus> status_of(std::string_view email) override {
    if (state_->options().replica) return state_->local_status(email);
    return UserStore::status_of(email);
  }

  StoreResult add_user(const User& user) override {
    if (!iwsec::detail::user_index::storable(user))
      return StoreResult(StoreStatus::invalid, iwsec::detail::user_index::not_storable);
    const std::string key = iwsec::detail::ascii_lower(user.email);
    std::int64_t seq = 0;
    try {
      auto c = state_->pool().take();
      auto r = c->transaction([&] {
        return c->exec(
          "WITH added AS (INSERT INTO iwsec_users (user_id, email, email_key, password_hash, refresh_token_sha256, "
          "refresh_generation, disabled, refresh_token_issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
          "RETURNING email_key) "
          "SELECT iwsec_append('u', email_key, NULL, NULL) FROM added",
          {user.user_id, user.email, key, user.password_hash, user.refresh_token_sha256,
           std::to_string(user.refresh_generation), std::string(user.disabled ? "true" : "false"),
           std::to_string(user.refresh_token_issued_at ? user.refresh_token_issued_at : state_->now())});
      });
      seq = r.integer(0, 0);
    } catch (const SqlError& e) {
      if (e.unique_violation())
        return StoreResult(StoreStatus::already_exists, "a user with this email, user id or refresh token exists");
      throw;
    }
    state_->put_user(key, user, seq);
    return StoreStatus::ok;
  }

  /// @brief One transaction: the row locked (FOR UPDATE, so concurrent
  /// rotations of one user on any replicas run one after the other, each on
  /// the state the previous one committed), changed, logged, committed.
  StoreResult update_user(std::string_view email, const std::function<void(User&)>& change) override {
    const std::string key = iwsec::detail::ascii_lower(email);
    std::optional<User> written;
    std::int64_t seq = 0;
    StoreResult status = StoreStatus::ok;
    auto c = state_->pool().take();
    try {
      c->transaction([&] {
        auto r = c->exec(
            "SELECT user_id, email, password_hash, refresh_token_sha256, refresh_generation, disabled, "
            "coalesce(refresh_token_issued_at, 0) "
            "FROM iwsec_users WHERE email_key = $1 FOR UPDATE",
            {key});
        if (r.rows() == 0) {
          status = StoreResult(StoreStatus::not_found, iwsec::detail::user_index::no_such_user);
          return;
        }
        const User before = detail::cluster_state::user_of(r, 0, 0);
        User after = before;
        change(after);
        status = iwsec::detail::user_index::change_problem(key, before, after);
        if (!status.ok()) return;
        c->exec(
            "UPDATE iwsec_users SET email = $2, password_hash = $3, refresh_token_sha256 = $4, "
            "refresh_generation = $5, disabled = $6, refresh_token_issued_at = $7 WHERE email_key = $1",
            {key, after.email, after.password_hash, after.refresh_token_sha256, std::to_string(after.refresh_generation),
             std::string(after.disabled ? "true" : "false"), std::to_string(after.refresh_token_issued_at)});
        seq = c->exec("SELECT iwsec_append('u', $1, NULL, NULL)", {key}).integer(0, 0);
        written = std::move(after);
      });
    } catch (const SqlError& e) {
      if (e.unique_violation()) return StoreResult(StoreStatus::already_exists, iwsec::detail::user_index::token_held);
      throw;
    }
    if (written) state_->put_user(key, std::move(written), seq);
    return status;
  }

  /// @brief Removes the user (not_found when there is none).
  StoreResult delete_user(std::string_view email) override {
    const std::string key = iwsec::detail::ascii_lower(email);
    auto c = state_->pool().take();
    auto r = c->transaction([&] {
      return c->exec(
        "WITH gone AS (DELETE FROM iwsec_users WHERE email_key = $1 RETURNING email_key) "
        "SELECT iwsec_append('u', email_key, NULL, NULL) FROM gone",
        {key});
    });
    if (r.rows() == 0) return StoreResult(StoreStatus::not_found, iwsec::detail::user_index::no_such_user);
    state_->put_user(key, std::nullopt, r.integer(0, 0));
    return StoreStatus::ok;
  }

  /// @brief Every user, from the database, in the order they were added
  /// (as the single-node stores list them).
  std::vector<User> list_users() override {
    auto c = state_->pool().take();
    auto r = c->exec(
        "SELECT user_id, email, password_hash, refresh_token_sha256, refresh_generation, disabled, "
            "coalesce(refresh_token_issued_at, 0) "
        "FROM iwsec_users ORDER BY added");
    std::vector<User> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(detail::cluster_state::user_of(r, i, 0));
    return out;
  }

 private:
  std::optional<User> query_one(const char* where, std::string value) {
    auto c = state_->pool().take();
    auto r = c->exec(std::string("SELECT user_id, email, password_hash, refresh_token_sha256, refresh_generation, "
                                 "disabled, coalesce(refresh_token_issued_at, 0) FROM iwsec_users WHERE ") +
                         where,
                     {std::move(value)});
    if (r.rows() == 0) return std::nullopt;
    return detail::cluster_state::user_of(r, 0, 0);
  }

  std::shared_ptr<detail::cluster_state> state_;
};

/// @brief Revoked jtis, in the database; is_revoked reads the local copy.
class PostgresRevocationStore : public RevocationStore {
 public:
  explicit PostgresRevocationStore(std::shared_ptr<detail::cluster_state> state) : state_(std::move(state)) {}

  /// @brief Committed (with its log entry) before it returns true; throws
  /// StateUnavailable when the database cannot be reached. Revocations that
  /// arrive while one is being written are committed together, in one
  /// transaction (group commit: one fsync for all of them).
  bool revoke(std::string_view jti, std::int64_t expires_at) override {
    return submit(nullptr, jti, expires_at, 0) == RevokeOutcome::revoked;
  }

  /// @brief revoke(), holding at most @p limit unexpired revocations per
  /// @p owner: counted and stored in one transaction (iwsec_revoke_owned,
  /// under a per-owner advisory lock), so replicas together keep the cap.
  RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                           std::size_t limit) override {
    const std::string o(owner);
    return submit(&o, jti, expires_at, limit);
  }

  std::optional<std::size_t> outstanding_for(std::string_view owner) override {
    auto c = state_->pool().take();
    return static_cast<std::size_t>(
        c->exec("SELECT count(*) FROM iwsec_revocations WHERE owner = $1 AND expires_at > $2",
                {std::string(owner), std::to_string(state_->now())})
            .integer(0, 0));
  }

  bool is_revoked(std::string_view jti) override {
    if (state_->options().replica) return state_->local_revoked(jti);
    auto c = state_->pool().take();
    return c->exec("SELECT 1 FROM iwsec_revocations WHERE jti = $1", {std::string(jti)}).rows() > 0;
  }

 private:
  struct item {
    std::int64_t expires_at = 0;
    std::optional<std::string> owner;  // the first caller's, when one jti comes twice
    std::size_t limit = 0;
    bool held = false;  // the outcome, once written
  };
  struct batch {
    std::unordered_map<std::string, item> items;  // by jti
    bool done = false;
    std::exception_ptr error;
  };

  RevokeOutcome submit(const std::string* owner, std::string_view jti, std::int64_t expires_at, std::size_t limit) {
    if (jti.empty() || jti.size() > 256) return RevokeOutcome::failed;
    iwsec::detail::Lock lock(mutex_);
    const std::shared_ptr<batch> mine = collecting_;
    const std::string key(jti);
    {
      auto inserted = mine->items.emplace(key, item{});
      item& it = inserted.first->second;
      it.expires_at = std::max(it.expires_at, expires_at);
      if (inserted.second && owner) {
        it.owner = *owner;
        it.limit = limit;
      }
    }
    while (!mine->done) {
      if (writing_) {
        lock.wait(written_);
        continue;
      }
      // No batch is being written, so `mine` is the one collecting: write it.
      writing_ = true;
      const std::shared_ptr<batch> run = std::exchange(collecting_, std::make_shared<batch>());
      lock.unlock();
      std::exception_ptr error;
      try {
        write(run->items);
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      run->done = true;
      run->error = error;
      writing_ = false;
      written_.notify_all();
    }
    if (mine->error) std::rethrow_exception(mine->error);
    return mine->items.at(key).held ? RevokeOutcome::revoked : RevokeOutcome::limit_reached;
  }

  // A text[] / bigint[] literal element: quoted, with \ and " escaped.
  static void append_element(std::string& out, const std::string& value) {
    out += out.size() > 1 ? ",\"" : "\"";
    for (char ch : value) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }

  void write(std::unordered_map<std::string, item>& items) {
    std::string jtis = "{", expiries = "{", owners = "{", limits = "{";
    std::vector<item*> order;
    order.reserve(items.size());
    for (auto& [jti, it] : items) {
      append_element(jtis, jti);
      append_element(expiries, std::to_string(it.expires_at));
      if (it.owner) {
        append_element(owners, *it.owner);
      } else {
        owners += owners.size() > 1 ? ",NULL" : "NULL";
      }
      append_element(limits, std::to_string(std::min<std::size_t>(it.limit, static_cast<std::size_t>(INT64_MAX))));
      order.push_back(&it);
    }
    jtis += '}';
    expiries += '}';
    owners += '}';
    limits += '}';
    std::string held;
    {
      auto c = state_->pool().take();
      c->transaction([&] {
        held = c->exec("SELECT iwsec_revoke_owned($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5)",
                       {jtis, expiries, owners, limits, std::to_string(state_->now())})
                   .text(0, 0);
      });
    }
    // held: "{t,f,...}", one per item in the order sent.
    std::size_t i = 0;
    for (char ch : held) {
      if ((ch == 't' || ch == 'f') && i < order.size()) order[i++]->held = ch == 't';
    }
    for (auto& [jti, it] : items)
      if (it.held) state_->local_revoke(jti, it.expires_at);
  }

  std::shared_ptr<detail::cluster_state> state_;
  iwsec::detail::Mutex mutex_;
  std::condition_variable written_;
  bool writing_ IWSEC_GUARDED_BY(mutex_) = false;
  std::shared_ptr<batch> collecting_ IWSEC_GUARDED_BY(mutex_) = std::make_shared<batch>();
};

/// @brief Lockout counts in the database: an attempt is counted (as a
/// failure, until its verdict says otherwise) in one round trip before the
/// password is checked, so N replicas under any concurrency run at most
/// `account_failures` checks for one account before it is locked. A password
/// login with the database unreachable throws StateUnavailable (503). A
/// refresh-token exchange (no account; a 256-bit token is not guessable) makes
/// no round trip: it is admitted from the replica's local copy of the blocked
/// clients (read on every poll), and a failed one is counted in the database
/// after the fact (in process while the database is away), so a client's
/// count may lag by a poll interval across replicas.
class PostgresLockout : public Lockout {
 public:
  explicit PostgresLockout(std::shared_ptr<detail::cluster_state> state)
      : state_(std::move(state)), local_(state_->options().lockout) {}

  const LockoutPolicy& policy() const override { return state_->options().lockout; }

  Attempt begin(std::optional<std::string_view> account, std::string_view client, std::int64_t now) override {
    const LockoutPolicy& p = policy();
    if (!p.enabled) return refused(0);
    std::optional<Key> a, c;
    if (account) a = account_key(*account);
    if (!client.empty()) c = client_key(client);
    if (!account) return begin_exchange(c, now);
    std::int64_t wait = 0;
    LockTransition started;
    {
      auto conn = state_->pool().take();
      auto r = conn->exec(
          "SELECT * FROM iwsec_attempt_start($1::bytea, $2::bytea, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
          {key_param(a), key_param(c), std::to_string(now), std::to_string(p.account_failures),
           std::to_string(p.account_wait_increment.count()), std::to_string(p.account_max_wait.count()),
           std::to_string(p.account_failure_reset.count()), std::to_string(p.client_failures),
           std::to_string(p.client_window.count()), std::to_string(p.max_tracked_accounts),
           std::to_string(p.max_tracked_clients)});
      wait = r.integer(0, 0);
      started.account_locked_until = r.integer(0, 1);
      started.client_blocked_until = r.integer(0, 2);
    }
    if (wait > 0) return refused(wait);
    if (started) {
      // This attempt's counted failure set the lock: reported by the
      // attempt's failed() (on this replica only), dropped on a success.
      iwsec::detail::Lock lock(started_mutex_);
      started_[started_key(a, c)].push_back(started);
    }
    return admitted(a, c);
  }

  std::int64_t account_wait(std::string_view account, std::int64_t now) override {
    if (!policy().enabled) return 0;
    auto conn = state_->pool().take();
    auto r = conn->exec("SELECT locked_until FROM iwsec_lockout_accounts WHERE key = $1::bytea",
                        {key_param(account_key(account))});
    const std::int64_t until = r.rows() ? r.integer(0, 0) : 0;
    return until > now ? until - now : 0;
  }

  std::int64_t client_wait(std::string_view client, std::int64_t now) override {
    if (!policy().enabled || client.empty()) return 0;
    auto conn = state_->pool().take();
    auto r = conn->exec("SELECT failures, window_start FROM iwsec_lockout_clients WHERE key = $1::bytea",
                        {key_param(client_key(client))});
    if (!r.rows()) return 0;
    const std::int64_t end = r.integer(0, 1) + static_cast<std::int64_t>(policy().client_window.count());
    return r.integer(0, 0) >= policy().client_failures && now < end ? end - now : 0;
  }

  void unlock_account(std::string_view account) override {
    auto conn = state_->pool().take();
    conn->transaction(
        [&] { conn->exec("DELETE FROM iwsec_lockout_accounts WHERE key = $1::bytea", {key_param(account_key(account))}); });
    local_.unlock_account(account);
  }

  void unlock_client(std::string_view client) override {
    auto conn = state_->pool().take();
    conn->transaction(
        [&] { conn->exec("DELETE FROM iwsec_lockout_clients WHERE key = $1::bytea", {key_param(client_key(client))}); });
    local_.unlock_client(client);
    state_->forget_client_block(hex_of(client_key(client)));
    forget_local_failures(client_key(client));
  }

 protected:
  // A failure was counted (and a lock set at the threshold) when the attempt
  // began, in the database; the lock it set, if any, is reported now.
  LockTransition finish(const std::optional<Key>& account, const std::optional<Key>& client, std::int64_t now,
                        bool success) override {
    if (!account) return exchange_finished(client, now, success);
    const LockTransition started = take_started(account, client);
    if (success) end(account, client, true);
    if (success) return LockTransition();
    // A client this failure blocked is refused exchanges here at once (they
    // are admitted from the local copy); the other replicas see it on their
    // next poll.
    if (client && started.client_blocked_until > now) state_->note_client_block(hex_of(*client), started.client_blocked_until);
    return started;
  }

  void abandon(const std::optional<Key>& account, const std::optional<Key>& client) noexcept override {
    if (!account) return;  // an exchange counts nothing until its verdict
    try {
      take_started(account, client);
      end(account, client, false);
    } catch (...) {
      // The database is away: the attempt stays counted (failing closed).
    }
  }

 private:
  static std::string started_key(const std::optional<Key>& account, const std::optional<Key>& client) {
    return (account ? detail::lockout_key_bytes(*account) : std::string("-")) + '/' +
           (client ? detail::lockout_key_bytes(*client) : std::string("-"));
  }

  // The lock an admitted attempt on these keys set, if any (one per lock).
  LockTransition take_started(const std::optional<Key>& account, const std::optional<Key>& client) {
    iwsec::detail::Lock lock(started_mutex_);
    if (started_.empty()) return LockTransition();
    auto it = started_.find(started_key(account, client));
    if (it == started_.end()) return LockTransition();
    const LockTransition t = it->second.back();
    it->second.pop_back();
    if (it->second.empty()) started_.erase(it);
    return t;
  }

  static std::optional<std::string> key_param(const std::optional<Key>& k) {
    if (!k) return std::nullopt;
    return detail::lockout_key_bytes(*k);
  }

  static std::string hex_of(const Key& k) { return detail::lockout_key_bytes(k).substr(2); }

  // A refresh-token exchange: admitted or refused from the local copy (the
  // blocked clients every replica reads on each poll, and the failures
  // counted here while the database was away), no round trip.
  Attempt begin_exchange(const std::optional<Key>& client, std::int64_t now) {
    if (!client) return admitted(std::nullopt, std::nullopt);
    std::int64_t wait = state_->any_client_blocks() ? state_->client_block_wait(hex_of(*client), now) : 0;
    if (local_counting_.load(std::memory_order_acquire)) {  // only after the database was away
      iwsec::detail::Lock lock(local_mutex_);
      auto it = local_failures_.find(*client);
      if (it != local_failures_.end()) {
        const std::int64_t end = it->second.window_start + static_cast<std::int64_t>(policy().client_window.count());
        if (it->second.failures >= policy().client_failures && now < end) wait = std::max(wait, end - now);
      }
    }
    if (wait > 0) return refused(wait);
    return admitted(std::nullopt, client);
  }

  // An exchange's verdict: a success asks nothing of the database (it has no
  // account count to reset, and a client's failures stay); a failure is
  // counted there after the fact, or here while the database is away.
  LockTransition exchange_finished(const std::optional<Key>& client, std::int64_t now, bool success) {
    LockTransition t;
    if (success || !client) return t;
    const LockoutPolicy& p = policy();
    try {
      auto conn = state_->pool().take();
      const std::int64_t until =
          conn->exec("SELECT iwsec_client_failed($1::bytea, $2, $3, $4, $5, $6)",
                     {key_param(client), std::to_string(now), std::to_string(p.client_failures),
                      std::to_string(p.client_window.count()), std::to_string(p.account_failure_reset.count()),
                      std::to_string(p.max_tracked_clients)})
              .integer(0, 0);
      if (until != 0) state_->note_client_block(hex_of(*client), until > 0 ? until : -until);
      if (until > 0) t.client_blocked_until = until;
    } catch (const StateUnavailable&) {
      iwsec::detail::Lock lock(local_mutex_);
      if (local_failures_.size() >= 100000) local_failures_.clear();  // bounded; refresh tokens are not guessable
      local_counting_.store(true, std::memory_order_release);
      auto& f = local_failures_[*client];
      if (f.failures == 0 || now >= f.window_start + static_cast<std::int64_t>(p.client_window.count())) {
        f.failures = 1;
        f.window_start = now;
      } else {
        ++f.failures;
      }
    }
    return t;
  }

  void forget_local_failures(const Key& client) {
    iwsec::detail::Lock lock(local_mutex_);
    local_failures_.erase(client);
  }

  void end(const std::optional<Key>& account, const std::optional<Key>& client, bool success) {
    auto conn = state_->pool().take();
    conn->exec("SELECT iwsec_attempt_end($1::bytea, $2::bytea, $3)",
               {key_param(account), key_param(client), std::string(success ? "true" : "false")});
  }

  std::shared_ptr<detail::cluster_state> state_;
  LockoutTracker local_;  // unlock calls reach it too
  struct local_count {
    std::int64_t failures = 0;
    std::int64_t window_start = 0;
  };
  iwsec::detail::Mutex local_mutex_;
  std::atomic<bool> local_counting_{false};
  // failed exchanges while the database is away
  std::unordered_map<Key, local_count, KeyHash> local_failures_ IWSEC_GUARDED_BY(local_mutex_);
  iwsec::detail::Mutex started_mutex_;
  // Locks set by admitted attempts still running, by their keys.
  std::unordered_map<std::string, std::vector<LockTransition>> started_ IWSEC_GUARDED_BY(started_mutex_);
};

/// @brief One cluster backend: its connections (a small pool and, for a
/// replica, one listener), the local copy and the thread that keeps it
/// current. The constructor connects, creates or migrates the schema, and
/// (replica) LISTENs, loads a snapshot and catches up: once it returns, the
/// shared state is loaded. Throws StateUnavailable when the database cannot
/// be reached, std::runtime_error for a schema it cannot use.
class Backend {
 public:
  explicit Backend(BackendOptions options)
      : state_(std::make_shared<detail::cluster_state>(std::move(options))),
        users_(std::make_shared<PostgresUserStore>(state_)),
        revocations_(std::make_shared<PostgresRevocationStore>(state_)),
        lockout_(std::make_shared<PostgresLockout>(state_)) {}
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  ~Backend() { stop(); }

  /// @brief Stops following the log and closes every connection (idempotent).
  /// Later reads throw StateUnavailable once max_staleness has passed.
  void stop() { state_->stop(); }

  PostgresUserStore& users() const { return *users_; }

  /// @brief Points @p options at this backend's shared revocations and
  /// lockout counts, and returns the user store to mount the routes with:
  ///
  ///     iwsec::Options options;
  ///     auto& users = backend.configure(options);
  ///     auto routes = iwsec::mount_security_routes(server, users, signer, options);
  ///     backend.add_metrics(routes.metrics());  // the cluster gauges, if you serve metrics
  UserStore& configure(Options& options) const {
    options.revocations = revocations_;
    options.lockout_state = lockout_;
    return *users_;
  }

  /// @brief Adds `iwsec_cluster_lag_seconds` and
  /// `iwsec_cluster_applied_sequence` (read at each render) to @p metrics,
  /// which must not be rendered after this backend is gone. Once per
  /// Metrics: a second call throws invalid_option ("already added").
  void add_metrics(Metrics& metrics) const {
    metrics.add_gauge("iwsec_cluster_lag_seconds",
                      "Seconds since this replica last showed it had caught up with the database",
                      [this] { return lag_seconds(); });
    metrics.add_gauge("iwsec_cluster_applied_sequence", "Last change-log entry this replica applied",
                      [this] { return static_cast<double>(applied_sequence()); });
  }

  /// @brief An Options::on_audit hook for what the cluster's audit table
  /// keeps of a server's events: its locks (administrators' events are
  /// recorded by the admin tool, HTTP events stay in a server's own file).
  /// Rows older than @p retention_days go at each write. A write that fails
  /// is told to @p log (nothing secret), never thrown into the request.
  AuditHook lock_audit_hook(std::int64_t retention_days, std::function<void(const std::string&)> log) {
    return [this, retention_days, log = std::move(log)](const AuditEvent& e) {
      if (e.event != "lock") return;
      try {
        record_audit(e, retention_days);
      } catch (const std::exception& error) {
        if (log) log("cannot record a " + e.event + " event in the audit table: " + error.what());
      }
    };
  }

  /// @brief Appends @p e (its JSON line) to the audit table, and prunes the
  /// rows older than @p retention_days (one statement, one commit).
  void record_audit(const AuditEvent& e, std::int64_t retention_days) {
    auto c = state_->pool().take();
    std::string line = audit_json_line(e);
    line.pop_back();  // the newline
    c->exec("WITH added AS (INSERT INTO iwsec_audit (time_ms, email_key, line) VALUES ($1, nullif($2, ''), $3)) "
            "DELETE FROM iwsec_audit WHERE time_ms < $1::bigint - $4::bigint * 86400000",
            {std::to_string(e.time_ms), iwsec::detail::ascii_lower(e.email), line, std::to_string(retention_days)});
  }

  /// @brief The audit table's JSON lines from @p since_ms on, for @p email
  /// (any case; empty: everyone), oldest first.
  std::vector<std::string> read_audit(std::int64_t since_ms, const std::string& email) {
    auto c = state_->pool().take();
    auto r = c->exec("SELECT line FROM iwsec_audit WHERE time_ms >= $1 AND ($2 = '' OR email_key = $2) "
                     "ORDER BY time_ms, id",
                     {std::to_string(since_ms), iwsec::detail::ascii_lower(email)});
    std::vector<std::string> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
    return out;
  }
  std::shared_ptr<PostgresRevocationStore> revocations() const { return revocations_; }
  std::shared_ptr<PostgresLockout> lockout() const { return lockout_; }

  /// @brief Seconds since the local copy was last shown to be caught up (for
  /// the `iwsec_cluster_lag_seconds` gauge).
  double lag_seconds() const { return state_->lag_seconds(); }
  /// @brief The last change-log entry applied locally (`iwsec_cluster_applied_sequence`).
  std::int64_t applied_sequence() const { return state_->applied_sequence(); }
  /// @brief How many users there are: a replica counts its local copy (as
  /// of its last catch-up; no round trip, so a start under load cannot time
  /// out here, as list_users().size() could); otherwise one `count(*)`.
  std::size_t user_count() {
    if (state_->options().replica) return state_->local_user_count();
    auto c = state_->pool().take();
    return static_cast<std::size_t>(c->exec("SELECT count(*) FROM iwsec_users").integer(0, 0));
  }

  /// @brief Runs @p body with a pooled connection (e.g. signing_keys::ensure).
  template <typename F>
  auto with_connection(F&& body) -> decltype(body(std::declval<detail::pq_connection&>())) {
    auto c = state_->pool().take();
    return body(*c);
  }

  /// @brief Calls @p f on the replica's follower thread, with its connection,
  /// whenever the signing keys in the database may have changed (a 'k' log
  /// entry or a snapshot reload), and once at once. An exception other than
  /// StateUnavailable must not leave @p f.
  void on_keys_changed(std::function<void(detail::pq_connection&)> f) { state_->on_keys_changed(std::move(f)); }

  /// @brief Waits, at most @p timeout, until every live replica (one that
  /// reported within the last 10 s) has applied the whole change log as it
  /// is now, so a change just committed is in effect everywhere. Returns how
  /// many replicas still lag (0: all caught up).
  std::int64_t wait_for_replicas(std::chrono::milliseconds timeout) {
    auto c = state_->pool().take();
    c->clear_deadline();  // each statement of the wait gets the request timeout
    const std::string head = std::to_string(c->exec("SELECT coalesce(max(seq), 0) FROM iwsec_changes").integer(0, 0));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const std::int64_t lagging =
          c->exec("SELECT count(*) FROM iwsec_replicas WHERE seen_at > now() - interval '10 seconds' AND applied < $1",
                  {head})
              .integer(0, 0);
      if (lagging == 0 || std::chrono::steady_clock::now() >= deadline) return lagging;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  /// @brief Copies @p users and the unexpired @p revocations (jti, expires
  /// at) into the database in one transaction, with one log entry that makes
  /// every replica reload. Refuses, changing nothing, when any of the users
  /// (by email or id) already exists: already_exists, with @p conflict set to
  /// the first such email.
  StoreResult import(const std::vector<User>& users, const std::vector<std::pair<std::string, std::int64_t>>& revocations,
                     std::string* conflict = nullptr) {
    std::vector<RevocationRecord> records;
    records.reserve(revocations.size());
    for (const auto& [jti, exp] : revocations) records.push_back(RevocationRecord{jti, exp, std::string()});
    return import(users, records, conflict);
  }

  /// @brief import(), with each revocation's owner (a journal's third
  /// column; empty: none), so imported revocations count against their
  /// owner's cap as they did in the journal.
  StoreResult import(const std::vector<User>& users, const std::vector<RevocationRecord>& revocations,
                     std::string* conflict = nullptr) {
    for (const auto& u : users)
      if (!iwsec::detail::user_index::storable(u))
        return StoreResult(StoreStatus::invalid, iwsec::detail::user_index::not_storable);
    struct refused {};
    std::string taken;
    auto c = state_->pool().take();
    c->clear_deadline();  // a long import: each statement gets the request timeout
    try {
      c->transaction([&] {
      for (const auto& u : users) {
        auto r = c->exec(
            "INSERT INTO iwsec_users (user_id, email, email_key, password_hash, refresh_token_sha256, "
            "refresh_generation, disabled, refresh_token_issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            {u.user_id, u.email, iwsec::detail::ascii_lower(u.email), u.password_hash, u.refresh_token_sha256,
             std::to_string(u.refresh_generation), std::string(u.disabled ? "true" : "false"),
             std::to_string(u.refresh_token_issued_at ? u.refresh_token_issued_at : state_->now())});
        if (r.rows() == 0) {
          taken = u.email;
          throw refused{};  // rolls the whole import back
        }
      }
      const std::int64_t now = state_->now();
      for (const auto& rec : revocations)
        if (rec.expires_at > now)
          c->exec(
              "INSERT INTO iwsec_revocations AS r (jti, expires_at, owner) VALUES ($1, $2, $3) "
              "ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(r.expires_at, excluded.expires_at), "
              "owner = coalesce(r.owner, excluded.owner)",
              {rec.jti, std::to_string(rec.expires_at),
               rec.owner.empty() ? std::nullopt : std::optional<std::string>(rec.owner)});
      c->exec("SELECT iwsec_append('s', NULL, NULL, NULL)");
      });
    } catch (const refused&) {
      if (conflict) *conflict = taken;
      return StoreResult(StoreStatus::already_exists, "user " + taken + " already exists");
    }
    return StoreStatus::ok;
  }

 private:
  std::shared_ptr<detail::cluster_state> state_;
  std::shared_ptr<PostgresUserStore> users_;
  std::shared_ptr<PostgresRevocationStore> revocations_;
  std::shared_ptr<PostgresLockout> lockout_;
};

}  // namespace postgres
}  // namespace iwsec
