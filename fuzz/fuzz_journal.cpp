// libFuzzer target: the revocation-journal loader, through the public API.
// The input is written as a journal in a scratch directory and opened with
// iwsec::JournalRevocationStore (fixed clock), which replays and compacts
// it. Properties: loading never crashes or throws on content; reopening the
// compacted journal answers is_revoked() exactly as the first store did for
// every token id named in the input; a revocation acknowledged by the
// loaded store survives a reopen.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <iwsec/iwsec.hpp>

#include "fuzz_common.hpp"

namespace {

constexpr std::int64_t kNow = 1700000000;

const std::string& journal_path() {
  static const std::string path = [] {
    const std::string dir = iwsec_fuzz::scratch_dir();
    std::atexit([] {
      iwsec_fuzz::remove_files(iwsec_fuzz::scratch_dir(), {"revocations.journal", "revocations.journal.tmp"});
    });
    return dir + "/revocations.journal";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using iwsec_fuzz::require;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  {
    std::ofstream out(journal_path(), std::ios::binary | std::ios::trunc);
    out.write(in.data(), static_cast<std::streamsize>(in.size()));
    require(static_cast<bool>(out), "cannot write the scratch journal");
  }
  // The ids the input names: each line's text before its first space.
  std::vector<std::string> ids;
  for (std::string_view rest = in; !rest.empty() && ids.size() < 16;) {
    const auto nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    ids.emplace_back(line.substr(0, line.find(' ')));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  const iwsec::Clock clock = [] { return kNow; };

  std::vector<bool> first;
  {
    iwsec::JournalRevocationStore store(journal_path(), clock);
    for (const auto& id : ids) first.push_back(store.is_revoked(id));
    require(store.revoke("fuzz-fresh-id", kNow + 60), "revoke on a loaded journal failed");
    require(store.is_revoked("fuzz-fresh-id"), "a fresh revocation is not seen");
  }
  iwsec::JournalRevocationStore again(journal_path(), clock);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == "fuzz-fresh-id") continue;
    require(again.is_revoked(ids[i]) == first[i], "reopening the compacted journal changed an answer");
  }
  require(again.is_revoked("fuzz-fresh-id"), "an acknowledged revocation was lost on reopen");
  return 0;
}
