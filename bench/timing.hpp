#pragma once
// Clocks the benchmarks share: wall time since a point, and this thread's CPU time.

#include <chrono>

#include <time.h>

namespace bench {

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU time of this thread: on a shared machine it shows the work done, where
// the wall clock also counts the time other processes held the cores.
inline double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace bench
