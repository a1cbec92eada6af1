// Key files (keyring.hpp): the keyring format, raw key files taken over as a
// keyring of one key, creation (0600, whole or not at all), changes under a
// lock, errors that name the path and the reason, and a Signer kept in step
// with the file by KeyringFile::refresh.

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

using iwsec::Keyring;
using iwsec::KeyringFile;

namespace {

void write(const std::string& path, const std::string& content, mode_t mode = 0600) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const iwsec::keyring_error& e) {
    return e.what();
  }
  return "(no keyring_error)";
}

std::string mint(const iwsec::Signer& signer) {
  iwsec::AccessClaims claims;
  claims.email = "a@example.com";
  claims.issued_at = 1000;
  claims.expires_at = 2000;
  return signer.sign(claims);
}

}  // namespace

TEST_CASE("keyring: the text format round-trips", "[keyring]") {
  Keyring ring;
  ring.add_new_key(1764639060);
  ring.add_new_key(1764639061);
  REQUIRE(ring.keys.size() == 2);
  CHECK(ring.keys[0].key_id != ring.keys[1].key_id);
  CHECK(Keyring::valid_key_id(ring.keys[0].key_id));
  CHECK(ring.keys[0].key_id.rfind("k20251202-", 0) == 0);
  CHECK(ring.keys[0].secret.size() == 32);
  const std::string text = ring.serialize();
  CHECK(text.rfind("iwsec-keyring 1\n", 0) == 0);
  CHECK(text.find("2025-12-02T01:31:00Z") != std::string::npos);
  std::string error;
  const auto back = Keyring::parse(text, 0, error);
  REQUIRE(back);
  REQUIRE(back->keys.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(back->keys[i].key_id == ring.keys[i].key_id);
    CHECK(back->keys[i].created_at == ring.keys[i].created_at);
    CHECK(back->keys[i].secret == ring.keys[i].secret);
  }
}

TEST_CASE("keyring: a raw key is a keyring of one key named legacy", "[keyring]") {
  std::string error;
  const auto ring = Keyring::parse(std::string(40, 'r'), 1234, error);
  REQUIRE(ring);
  REQUIRE(ring->keys.size() == 1);
  CHECK(ring->keys[0].key_id == "legacy");
  CHECK(ring->keys[0].created_at == 1234);
  CHECK(ring->keys[0].secret == std::string(40, 'r'));
  CHECK_FALSE(Keyring::parse(std::string(31, 'r'), 0, error));
  CHECK(error.find("31 bytes") != std::string::npos);
}

TEST_CASE("keyring: bad lines are refused with their line number", "[keyring]") {
  const std::string key = iwsec::base64url_encode(std::string(32, 'k'));
  const std::string head = "iwsec-keyring 1\n";
  const struct {
    std::string text;
    const char* reason;
  } cases[] = {
      {head, "no key"},
      {head + "only-two 2026-01-01T00:00:00Z\n", "line 2"},
      {head + "a 2026-01-01T00:00:00Z " + key + " extra\n", "line 2"},
      {head + "bad/kid 2026-01-01T00:00:00Z " + key + "\n", "kid"},
      {head + "a 2026-02-30T00:00:00Z " + key + "\n", "creation time"},
      {head + "a 2026-01-01 " + key + "\n", "creation time"},
      {head + "a 2026-01-01T00:00:00Z " + key + "=\n", "base64url"},
      {head + "a 2026-01-01T00:00:00Z " + iwsec::base64url_encode(std::string(31, 'k')) + "\n", "32 bytes"},
      {head + "# c\na 2026-01-01T00:00:00Z " + key + "\na 2026-01-01T00:00:00Z " + key + "\n", "line 4: duplicate"},
  };
  for (const auto& c : cases) {
    std::string error;
    INFO(c.text);
    CHECK_FALSE(Keyring::parse(c.text, 0, error));
    CHECK(error.find(c.reason) != std::string::npos);
  }
}

TEST_CASE("keyring: retire refuses an unknown kid and the last key", "[keyring]") {
  Keyring ring;
  const std::string first = ring.add_new_key(1000).key_id;
  CHECK_THROWS_WITH(ring.retire(first), Catch::Contains("only signing key"));
  const std::string second = ring.add_new_key(1001).key_id;
  CHECK_THROWS_WITH(ring.retire("nope"), Catch::Contains("no signing key nope"));
  ring.retire(first);
  REQUIRE(ring.keys.size() == 1);
  CHECK(ring.keys[0].key_id == second);
  for (std::size_t i = ring.keys.size(); i < iwsec::Signer::max_keys; ++i) ring.add_new_key(1002);
  CHECK_THROWS_WITH(ring.add_new_key(1003), Catch::Contains("retire one first"));
}

TEST_CASE("keyring file: created private and whole, then read back the same", "[keyring][file]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("signing.key");
  const mode_t old_mask = ::umask(022);
  KeyringFile file(path);
  const Keyring made = file.load_or_create(1764639060);
  ::umask(old_mask);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(made.keys.size() == 1);
  const Keyring again = KeyringFile(path).load_or_create(1764639999);
  REQUIRE(again.keys.size() == 1);
  CHECK(again.keys[0].secret == made.keys[0].secret);
  CHECK(again.keys[0].created_at == 1764639060);
  // Nothing but the file itself was left behind.
  CHECK(iwsec_test::read_file(path).rfind("iwsec-keyring 1\n", 0) == 0);
}

TEST_CASE("keyring file: errors name the path and the reason", "[keyring][file]") {
  iwsec_test::TempDir dir;
  const std::string missing = dir.file("absent/signing.key");
  CHECK(error_of([&] { KeyringFile(missing).load(); }) ==
        "cannot open key file " + missing + ": " + std::strerror(ENOENT));
  CHECK(error_of([&] { KeyringFile(missing).load_or_create(); }).find(std::strerror(ENOENT)) != std::string::npos);
  write(dir.file("short"), std::string(16, 's'));
  CHECK(error_of([&] { KeyringFile(dir.file("short")).load(); }) ==
        "key file " + dir.file("short") + " holds 16 bytes; at least 32 are required");
  CHECK(error_of([&] { KeyringFile(dir.path).load(); }).find("not a regular file") != std::string::npos);
  write(dir.file("bad"), "iwsec-keyring 1\nnonsense\n");
  CHECK(error_of([&] { KeyringFile(dir.file("bad")).load(); }).find(dir.file("bad") + " line 2") !=
        std::string::npos);
}

TEST_CASE("keyring file: a raw signing.key is taken over and its tokens keep verifying", "[keyring][file]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("signing.key");
  const std::string raw(32, 'L');
  write(path, raw);
  const std::string old_token = mint(iwsec::Signer(raw));  // minted by an earlier version: no kid
  KeyringFile file(path);
  iwsec::Signer signer(file.load().signing_keys());
  CHECK(signer.verify(old_token, 1500));

  std::string added;
  file.update([&](Keyring& ring) { added = ring.add_new_key(5000).key_id; });
  const std::string text = iwsec_test::read_file(path);
  CHECK(text.rfind("iwsec-keyring 1\n", 0) == 0);
  const Keyring now = KeyringFile(path).load();
  REQUIRE(now.keys.size() == 2);
  CHECK(now.keys[0].key_id == "legacy");
  CHECK(now.keys[0].secret == raw);
  CHECK(now.keys[1].key_id == added);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  CHECK(file.refresh(signer));
  CHECK(signer.signing_key_id() == added);
  CHECK(signer.verify(old_token, 1500));
  CHECK_FALSE(file.refresh(signer));  // unchanged: nothing reloaded
}

TEST_CASE("keyring file: refresh follows add and retire; a broken file is StateUnavailable", "[keyring][file]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("signing.key");
  KeyringFile server_side(path);
  iwsec::Signer signer(server_side.load_or_create().signing_keys());
  const std::string first_kid = signer.key_ids().at(0);
  const std::string first_token = mint(signer);

  KeyringFile admin_side(path);
  std::string second_kid;
  admin_side.update([&](Keyring& ring) { second_kid = ring.add_new_key(2000).key_id; });
  CHECK(server_side.refresh(signer));
  CHECK(signer.key_ids() == std::vector<std::string>{first_kid, second_kid});
  const std::string second_token = mint(signer);
  CHECK(signer.verify(first_token, 1500));
  CHECK(signer.verify(second_token, 1500).token().key_id() == second_kid);

  admin_side.update([&](Keyring& ring) { ring.retire(first_kid); });
  CHECK(server_side.refresh(signer));
  CHECK_FALSE(signer.verify(first_token, 1500));
  CHECK(signer.verify(second_token, 1500));

  // Unknown kid, last key: the file is left as it was.
  const std::string before = iwsec_test::read_file(path);
  CHECK_THROWS_WITH(admin_side.update([&](Keyring& ring) { ring.retire("nope"); }), Catch::Contains("nope"));
  CHECK_THROWS_WITH(admin_side.update([&](Keyring& ring) { ring.retire(second_kid); }), Catch::Contains("only"));
  CHECK(iwsec_test::read_file(path) == before);

  write(dir.file("broken"), "iwsec-keyring 1\nbroken\n");
  REQUIRE(::rename(dir.file("broken").c_str(), path.c_str()) == 0);
  CHECK_THROWS_AS(server_side.refresh(signer), iwsec::StateUnavailable);
  CHECK_THROWS_AS(server_side.refresh(signer), iwsec::StateUnavailable);  // still broken: still refused
  REQUIRE(::unlink(path.c_str()) == 0);
  CHECK_THROWS_AS(server_side.refresh(signer), iwsec::StateUnavailable);

  // reload(): an unusable file leaves the signer as it was.
  const auto version = signer.key_version();
  CHECK_THROWS_AS(server_side.reload(signer), iwsec::keyring_error);
  CHECK(signer.key_version() == version);
}

TEST_CASE("keyring file: update with create makes a missing file", "[keyring][file]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("ring");
  CHECK_THROWS_AS(KeyringFile(path).update([](Keyring& r) { r.add_new_key(1); }), iwsec::keyring_error);
  const Keyring ring = KeyringFile(path).update([](Keyring& r) { r.add_new_key(1); }, true);
  CHECK(ring.keys.size() == 1);
  CHECK(KeyringFile(path).load().keys.at(0).secret == ring.keys[0].secret);
}

// docs/operations.md: a key file whose first line holds `iwsec-keyring` (after
// any BOM or whitespace) is a keyring and parses whole or is refused, naming
// the line and the reason; it is never taken for one raw key of its bytes.
TEST_CASE("keyring: a file that starts like a keyring parses whole or is refused", "[keyring][strict]") {
  const std::string key = iwsec::base64url_encode(std::string(32, 'k'));
  const std::string line2 = "# kid created key\n";
  const std::string entry = "a 2026-01-01T00:00:00Z " + key;
  const std::string good = "iwsec-keyring 1\n" + line2 + entry + "\n";
  std::string error;
  REQUIRE(Keyring::parse(good, 0, error));
  const struct {
    std::string text;
    const char* line;
    const char* reason;
  } cases[] = {
      {"iwsec-keyring 1\r\n# kid created key\r\n" + entry + "\r\n", "line 1: ", "CRLF"},
      {"iwsec-keyring 1\n" + line2 + entry + "\r\n", "line 3: ", "CRLF"},
      {"\xEF\xBB\xBF" + good, "line 1: ", "byte order mark"},
      {"iwsec-keyring 2\n" + line2 + entry + "\n", "line 1: ", "format version 2"},
      {"iwsec-keyring 10\n" + line2 + entry + "\n", "line 1: ", "format version 10"},
      {"iwsec-keyring\n" + line2 + entry + "\n", "line 1: ", "format version"},
      {"iwsec-keyring 1 \n" + line2 + entry + "\n", "line 1: ", "format version"},
      {"  iwsec-keyring 1\n" + line2 + entry + "\n", "line 1: ", "whitespace"},
      {"\n\niwsec-keyring 1\n" + line2 + entry + "\n", "line 1: ", "whitespace"},
      {"IWSEC-KEYRING 1\n" + line2 + entry + "\n", "line 1: ", "iwsec-keyring"},
      {"iwsec-keyring 1\n" + line2 + entry + " \n", "line 3: ", "KID CREATED KEY"},
      {"iwsec-keyring 1\n" + line2 + entry + "\n\r\n", "line 4: ", "CRLF"},
      {"iwsec-keyring 1\n" + line2 + entry + "\rb 2026-01-01T00:00:00Z " + key + "\n", "line 3: ", "carriage return"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    error.clear();
    CHECK_FALSE(Keyring::parse(c.text, 0, error));
    CHECK(error.rfind(c.line, 0) == 0);
    CHECK(error.find(c.reason) != std::string::npos);
    CHECK(error.find('\n') == std::string::npos);
    CHECK(error.find(key) == std::string::npos);  // never the key
  }
  // A raw key stays a raw key, even one that holds the words past its first line.
  const std::string raw = std::string(33, 'r') + "\niwsec-keyring 1\n";
  const auto ring = Keyring::parse(raw, 0, error);
  REQUIRE(ring);
  REQUIRE(ring->keys.size() == 1);
  CHECK(ring->keys[0].secret == raw);
}

TEST_CASE("keyring file: a mangled keyring is refused by load, update and reload, naming file and line",
          "[keyring][file][strict]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("ring");
  KeyringFile file(path);
  file.load_or_create(1764639060);
  std::string good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  iwsec::Signer signer(file.load().signing_keys());
  const std::string token = mint(signer);
  std::string crlf;
  for (char ch : good) {
    if (ch == '\n') crlf += '\r';
    crlf += ch;
  }
  std::string version2 = good;
  version2.replace(0, std::string("iwsec-keyring 1").size(), "iwsec-keyring 2");
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {crlf, " line 1: "}, {"\xEF\xBB\xBF" + good, " line 1: "}, {version2, " line 1: "}}) {
    write(path, text);
    INFO(expected);
    CHECK(error_of([&] { KeyringFile(path).load(); }).rfind("key file " + path + expected, 0) == 0);
    CHECK(error_of([&] { KeyringFile(path).update([](Keyring& r) { r.add_new_key(1764639061); }); })
              .rfind("key file " + path + expected, 0) == 0);
    CHECK(error_of([&] { file.reload(signer); }).rfind("key file " + path + expected, 0) == 0);
    CHECK(signer.verify(token, 1500, 0));  // the keys in use stay
  }
}
