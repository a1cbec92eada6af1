// The program each_header_alone links: one generated translation unit per
// public header, compiled alone (the real check is that they compile and
// link). At run time it checks that the headers it was built from are the
// library's, through the version macro they all can reach.

#include <cstdio>
#include <cstring>

#include <iwsec/version.hpp>

int main() {
  if (std::strlen(IWSEC_VERSION_STRING) == 0) return 1;
  std::printf("each_header_alone: %d public headers of iwsec %s each compiled alone and linked together\n",
              IWSEC_PUBLIC_HEADER_COUNT, IWSEC_VERSION_STRING);
  return IWSEC_PUBLIC_HEADER_COUNT > 0 ? 0 : 1;
}
