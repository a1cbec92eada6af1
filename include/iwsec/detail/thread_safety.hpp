#pragma once
/// @file
/// @brief Lock discipline stated in the code: mutex and lock types that carry
/// clang's thread-safety annotations, and the macros that say which mutex
/// guards which member and which functions expect it held.
///
/// libstdc++'s std::mutex and std::shared_mutex carry no annotations, so the
/// library's own state is guarded by these thin wrappers instead. With clang
/// and `-Wthread-safety`, reading a `IWSEC_GUARDED_BY(m)` member without `m`
/// held, or calling an `IWSEC_REQUIRES(m)` function without it, is a
/// compile-time warning (CI makes it an error: .ci/thread-safety). With any
/// other compiler the macros are empty and the wrappers cost nothing.
///
/// A function named `..._locked` elsewhere is the old convention; a function
/// that expects a lock held says so with IWSEC_REQUIRES instead.

#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define IWSEC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define IWSEC_THREAD_ANNOTATION(x)
#endif

/// A type that is a lock ("mutex") for the analysis.
#define IWSEC_CAPABILITY(name) IWSEC_THREAD_ANNOTATION(capability(name))
/// An RAII type that holds a lock for its lifetime.
#define IWSEC_SCOPED_CAPABILITY IWSEC_THREAD_ANNOTATION(scoped_lockable)
/// This member is read and written only with @p m held.
#define IWSEC_GUARDED_BY(m) IWSEC_THREAD_ANNOTATION(guarded_by(m))
/// What this pointer member points at is used only with @p m held.
#define IWSEC_PT_GUARDED_BY(m) IWSEC_THREAD_ANNOTATION(pt_guarded_by(m))
/// This mutex is taken before @p ... when both are held (lock order; the
/// analysis checks it with -Wthread-safety-beta).
#define IWSEC_ACQUIRED_BEFORE(...) IWSEC_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
/// This mutex is taken after @p ... when both are held.
#define IWSEC_ACQUIRED_AFTER(...) IWSEC_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
/// The caller must hold these (exclusively).
#define IWSEC_REQUIRES(...) IWSEC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
/// The caller must hold these, shared or exclusively.
#define IWSEC_REQUIRES_SHARED(...) IWSEC_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
/// The caller must not hold these (the function takes them).
#define IWSEC_EXCLUDES(...) IWSEC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define IWSEC_ACQUIRE(...) IWSEC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define IWSEC_ACQUIRE_SHARED(...) IWSEC_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define IWSEC_RELEASE(...) IWSEC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define IWSEC_RELEASE_SHARED(...) IWSEC_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define IWSEC_RELEASE_GENERIC(...) IWSEC_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define IWSEC_TRY_ACQUIRE(...) IWSEC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
/// Opts one function out (say why next to it).
#define IWSEC_NO_THREAD_SAFETY_ANALYSIS IWSEC_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace iwsec {
namespace detail {

/// std::mutex, annotated. Waits go through a Lock (below).
class IWSEC_CAPABILITY("mutex") Mutex {
 public:
  void lock() IWSEC_ACQUIRE() { m_.lock(); }
  void unlock() IWSEC_RELEASE() { m_.unlock(); }
  bool try_lock() IWSEC_TRY_ACQUIRE(true) { return m_.try_lock(); }

 private:
  friend class Lock;
  std::mutex m_;
};

/// Holds a Mutex for its scope (std::unique_lock's role): condition
/// variables wait on it; the analysis sees the mutex held throughout,
/// which is what a wait guarantees on return.
class IWSEC_SCOPED_CAPABILITY Lock {
 public:
  explicit Lock(Mutex& m) IWSEC_ACQUIRE(m) : lock_(m.m_) {}
  ~Lock() IWSEC_RELEASE() {}
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  /// Waits on @p cv for one wake-up (a spurious one included).
  void wait(std::condition_variable& cv) { cv.wait(lock_); }
  /// Waits on @p cv until @p done() holds (the mutex is held when it is called).
  template <typename Predicate>
  void wait(std::condition_variable& cv, Predicate done) {
    cv.wait(lock_, done);
  }
  /// wait() for at most @p timeout; returns done()'s last value.
  template <typename Duration, typename Predicate>
  bool wait_for(std::condition_variable& cv, Duration timeout, Predicate done) {
    return cv.wait_for(lock_, timeout, done);
  }
  /// wait() until @p deadline; returns done()'s last value.
  template <typename TimePoint, typename Predicate>
  bool wait_until(std::condition_variable& cv, TimePoint deadline, Predicate done) {
    return cv.wait_until(lock_, deadline, done);
  }
  /// Lets go of the mutex early (for work that must run without it).
  void unlock() IWSEC_RELEASE() { lock_.unlock(); }
  /// Takes it back after unlock().
  void lock() IWSEC_ACQUIRE() { lock_.lock(); }

 private:
  std::unique_lock<std::mutex> lock_;
};

/// std::shared_mutex, annotated.
class IWSEC_CAPABILITY("mutex") SharedMutex {
 public:
  void lock() IWSEC_ACQUIRE() { m_.lock(); }
  void unlock() IWSEC_RELEASE() { m_.unlock(); }
  void lock_shared() IWSEC_ACQUIRE_SHARED() { m_.lock_shared(); }
  void unlock_shared() IWSEC_RELEASE_SHARED() { m_.unlock_shared(); }

 private:
  std::shared_mutex m_;
};

/// Holds a SharedMutex exclusively for its scope.
class IWSEC_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& m) IWSEC_ACQUIRE(m) : m_(m) { m_.lock(); }
  ~WriterLock() IWSEC_RELEASE() { m_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& m_;
};

/// Holds a SharedMutex shared for its scope.
class IWSEC_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& m) IWSEC_ACQUIRE_SHARED(m) : m_(m) { m_.lock_shared(); }
  ~ReaderLock() IWSEC_RELEASE() { m_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& m_;
};

}  // namespace detail
}  // namespace iwsec
