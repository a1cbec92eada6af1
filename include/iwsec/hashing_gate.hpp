#pragma once
/// @file
/// @brief HashingGate: at most N password hashes at once, a bounded queue
/// behind them, and a refusal when the queue is full.
///
/// A PBKDF2 check costs tens of milliseconds of one core (600 000 rounds),
/// a token validation microseconds. Without a bound, a flood of logins
/// makes one runnable thread per connection, and validations wait behind
/// them for the cores. The security routes pass every password check
/// through one gate (Options::max_concurrent_hashes, max_queued_hashes);
/// a login refused by it gets 503 with `Retry-After` and is not counted by
/// the lockout (no hash ran, so nothing was learnt about the password).

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>

#include "detail/thread_safety.hpp"

namespace iwsec {

/// @brief A counting gate with a bounded, first-come first-served queue.
/// Thread-safe; outlives every Ticket it hands out.
class HashingGate {
 public:
  /// @brief At most @p concurrent holders at once (0: one per core, as
  /// std::thread::hardware_concurrency() tells, at least 1) and at most
  /// @p queued callers waiting for a turn.
  HashingGate(std::size_t concurrent, std::size_t queued)
      : concurrent_(concurrent != 0 ? concurrent : default_concurrency()), queued_(queued) {}
  HashingGate(const HashingGate&) = delete;
  HashingGate& operator=(const HashingGate&) = delete;

  /// @brief A turn through the gate (or a refusal); released when destroyed.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
    Ticket& operator=(Ticket&& other) noexcept {
      if (this != &other) {
        release();
        gate_ = std::exchange(other.gate_, nullptr);
      }
      return *this;
    }
    ~Ticket() { release(); }
    /// @brief True when admitted; false when the queue was full.
    explicit operator bool() const noexcept { return gate_ != nullptr; }

   private:
    friend class HashingGate;
    explicit Ticket(HashingGate* gate) noexcept : gate_(gate) {}
    void release() noexcept {
      if (gate_) std::exchange(gate_, nullptr)->leave();
    }
    HashingGate* gate_ = nullptr;
  };

  /// @brief Waits for a turn (in arrival order) when all are taken and the
  /// queue has room; a refused Ticket at once when it has none.
  Ticket enter() {
    detail::Lock lock(mutex_);
    if (running_ < concurrent_ && waiting_ == 0) {
      ++running_;
      return Ticket(this);
    }
    if (waiting_ >= queued_) return Ticket(nullptr);
    const std::uint64_t mine = next_ticket_++;
    ++waiting_;
    lock.wait(turn_, [&]() IWSEC_REQUIRES(mutex_) { return running_ < concurrent_ && mine == serving_; });
    --waiting_;
    ++serving_;
    ++running_;
    lock.unlock();
    turn_.notify_all();  // the next in line may fit too
    return Ticket(this);
  }

  /// @brief Holders at most at once.
  std::size_t concurrency() const noexcept { return concurrent_; }
  /// @brief Callers that may wait at most.
  std::size_t queue_capacity() const noexcept { return queued_; }
  /// @brief Holders now.
  std::size_t running() const {
    detail::Lock lock(mutex_);
    return running_;
  }
  /// @brief Callers waiting now.
  std::size_t waiting() const {
    detail::Lock lock(mutex_);
    return waiting_;
  }

  /// @brief One per core (at least 1).
  static std::size_t default_concurrency() noexcept {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores == 0 ? 1 : cores;
  }

 private:
  void leave() noexcept {
    {
      detail::Lock lock(mutex_);
      --running_;
    }
    turn_.notify_all();
  }

  const std::size_t concurrent_;
  const std::size_t queued_;
  mutable detail::Mutex mutex_;
  std::condition_variable turn_;
  std::size_t running_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::size_t waiting_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::uint64_t next_ticket_ IWSEC_GUARDED_BY(mutex_) = 0;
  std::uint64_t serving_ IWSEC_GUARDED_BY(mutex_) = 0;
};

}  // namespace iwsec
