#pragma once
// Shared bits of the libFuzzer targets: a per-process scratch directory for
// the loaders, and a check that aborts (so libFuzzer records the input) when
// a property of the code under test does not hold.

#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

namespace iwsec_fuzz {

/// Aborts with a message when @p ok is false: a broken invariant is a finding.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "iwsec fuzz: property violated: %s\n", what);
    std::abort();
  }
}

/// A directory of this process's own under /dev/shm (or TMPDIR, /tmp), made
/// once; the loaders' files live there so no run touches another's.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string base = "/dev/shm";
    if (::access(base.c_str(), W_OK) != 0) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp && *tmp ? tmp : "/tmp";
    }
    std::string pattern = base + "/iwsec-fuzz-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      std::perror("iwsec fuzz: mkdtemp");
      std::abort();
    }
    return pattern;
  }();
  return dir;
}

/// Removes the files a target wrote (called at exit).
inline void remove_files(const std::string& dir, std::initializer_list<const char*> names) {
  for (const char* n : names) ::unlink((dir + "/" + n).c_str());
  ::rmdir(dir.c_str());
}

}  // namespace iwsec_fuzz
