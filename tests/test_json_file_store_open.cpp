// JsonFileUserStore on a directory that does not exist (or is a file) fails
// at construction, naming the path and the reason, instead of succeeding and
// answering a bare I/O error on the first write.

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

TEST_CASE("JsonFileUserStore: a missing directory fails at construction with path and reason", "[user_store]") {
  iwsec_test::TempDir dir;
  const std::string missing = dir.file("no/such/dir");
  try {
    iwsec::JsonFileUserStore store(missing + "/users.json");
    FAIL("constructed on a missing directory");
  } catch (const iwsec::store_error& e) {
    const std::string what = e.what();
    CHECK(what.find(missing + "/users.json") != std::string::npos);
    CHECK(what.find(std::strerror(ENOENT)) != std::string::npos);
  }
  std::ofstream(dir.file("file")) << "x";
  try {
    iwsec::JsonFileUserStore store(dir.file("file") + "/users.json");
    FAIL("constructed under a file");
  } catch (const iwsec::store_error& e) {
    CHECK(std::string(e.what()).find(std::strerror(ENOTDIR)) != std::string::npos);
  }
  // An existing directory without a users file is still fine (created on first write).
  iwsec::JsonFileUserStore store(dir.file("users.json"));
  CHECK(store.list_users().empty());
}
