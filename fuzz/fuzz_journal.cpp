// libFuzzer target: the revocation-journal loader, through the public API.
// The input is written as a journal in a scratch directory and opened with
// iwsec::JournalRevocationStore (fixed clock), which replays and compacts
// it. Properties: loading never crashes or throws on content; reopening the
// compacted journal answers is_revoked() exactly as the first store did for
// every token id named in the input, and outstanding_for() the same for
// every owner named (a line's third word); a revocation acknowledged by the
// loaded store survives a reopen, counted for its owner.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
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
  std::vector<std::string> ids, owners;
  for (std::string_view rest = in; !rest.empty() && ids.size() < 16;) {
    const auto nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    ids.emplace_back(line.substr(0, line.find(' ')));
    const auto second = line.find(' ');
    const auto third = second == std::string_view::npos ? second : line.find(' ', second + 1);
    if (third != std::string_view::npos) owners.emplace_back(line.substr(third + 1));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  const iwsec::Clock clock = [] { return kNow; };

  const std::string fresh_owned = "0b5e7c1a-8f3d-4c2e-9a71-5d6b4e3f2aff";
  std::vector<bool> first;
  std::vector<std::optional<std::size_t>> first_counts;
  std::optional<std::size_t> fuzz_owner_count;
  {
    iwsec::JournalRevocationStore store(journal_path(), clock);
    for (const auto& id : ids) first.push_back(store.is_revoked(id));
    require(store.revoke("fuzz-fresh-id", kNow + 60), "revoke on a loaded journal failed");
    require(store.is_revoked("fuzz-fresh-id"), "a fresh revocation is not seen");
    const auto outcome = store.revoke_for("fuzz owner", fresh_owned, kNow + 60, 1000000);
    require(outcome == iwsec::RevokeOutcome::revoked, "revoke_for on a loaded journal failed");
    for (const auto& o : owners) first_counts.push_back(store.outstanding_for(o));
    fuzz_owner_count = store.outstanding_for("fuzz owner");
  }
  iwsec::JournalRevocationStore again(journal_path(), clock);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == "fuzz-fresh-id") continue;
    require(again.is_revoked(ids[i]) == first[i], "reopening the compacted journal changed an answer");
  }
  require(again.is_revoked("fuzz-fresh-id"), "an acknowledged revocation was lost on reopen");
  require(again.is_revoked(fresh_owned), "an acknowledged owned revocation was lost on reopen");
  for (std::size_t i = 0; i < owners.size(); ++i)
    require(again.outstanding_for(owners[i]) == first_counts[i], "reopening changed an owner's count");
  require(again.outstanding_for("fuzz owner") == fuzz_owner_count, "reopening changed the fresh owner's count");
  return 0;
}
