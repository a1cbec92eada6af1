// libFuzzer target: the users-file loader, through the public API. The input
// is written as users.json in a scratch directory and opened with
// iwsec::JsonFileUserStore. A file it cannot understand must be refused with
// store_error (nothing else may escape); a file it loads must be
// self-consistent: every listed user is found again by its email and by its
// refresh-token hash, with the same id.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <iwsec/iwsec.hpp>

#include "fuzz_common.hpp"

namespace {

const std::string& users_path() {
  static const std::string path = [] {
    const std::string dir = iwsec_fuzz::scratch_dir();
    std::atexit([] { iwsec_fuzz::remove_files(iwsec_fuzz::scratch_dir(), {"users.json", "users.json.lock"}); });
    return dir + "/users.json";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using iwsec_fuzz::require;
  {
    std::ofstream out(users_path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    require(static_cast<bool>(out), "cannot write the scratch users file");
  }
  try {
    iwsec::JsonFileUserStore store(users_path());
    for (const auto& u : store.list_users()) {
      const auto by_email = store.find_by_email(u.email);
      require(by_email && by_email->user_id == u.user_id, "a listed user is not found by its email");
      if (!u.refresh_token_sha256.empty()) {
        const auto by_hash = store.find_by_refresh_token_hash(u.refresh_token_sha256);
        require(by_hash && by_hash->user_id == u.user_id, "a listed user is not found by its refresh-token hash");
      }
      const auto status = store.status_of(u.email);
      require(status && status->disabled == u.disabled, "status_of disagrees with the listed user");
    }
  } catch (const iwsec::store_error&) {
    // refused: the expected answer to a file it cannot understand
  }
  return 0;
}
