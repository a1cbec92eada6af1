// One error model (errors.hpp): what iwsec throws is an iwsec::Error with its
// ErrorId, and still the standard type hosts catch today. Each case makes
// the library throw for real (a short key, a bad keyring, a broken users
// file, options out of range, ...); only StateUnavailable's retry time is
// checked on one built here (test_unavailable makes stores throw it).

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <sys/stat.h>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

namespace {

// Runs @p f, which must throw; returns the iwsec::Error's id, REQUIRing that
// the same exception is also a @p Std and that both what()s agree.
template <class Std>
iwsec::ErrorId id_of_throw(const std::function<void()>& f) {
  try {
    f();
  } catch (const iwsec::Error& e) {
    const auto* as_std = dynamic_cast<const Std*>(&e);
    REQUIRE(as_std != nullptr);
    CHECK(std::string(as_std->what()) == e.what());
    CHECK_FALSE(std::string(e.what()).empty());
    return e.id();
  } catch (const std::exception& e) {
    FAIL("not an iwsec::Error: " << e.what());
  }
  FAIL("nothing thrown");
  return iwsec::ErrorId::usage_error;
}

// A file named @p name in @p dir holding @p content; its path.
std::string file_in(const iwsec_test::TempDir& dir, const std::string& name, const std::string& content) {
  const std::string path = dir.file(name);
  iwsec_test::write_file(path, content);
  return path;
}

}  // namespace

TEST_CASE("every iwsec exception is an iwsec::Error with its id and its standard type", "[errors]") {
  SECTION("a key too short: key_error, a std::invalid_argument") {
    CHECK(id_of_throw<std::invalid_argument>([] { iwsec::Signer s{std::string_view("short")}; }) ==
          iwsec::ErrorId::key_error);
  }
  SECTION("options out of range: invalid_option, a std::invalid_argument") {
    httplib::Server server;
    iwsec::MemoryUserStore users;
    iwsec::Signer signer{std::string_view("0123456789abcdef0123456789abcdef")};
    iwsec::Options o;
    o.token_lifetime = std::chrono::seconds(0);
    CHECK(id_of_throw<std::invalid_argument>([&] { iwsec::mount_security_routes(server, users, signer, o); }) ==
          iwsec::ErrorId::invalid_option);
    iwsec::Metrics metrics;
    CHECK(id_of_throw<std::invalid_argument>([&] { metrics.add_counter("iwsec_requests", "no _total suffix", [] { return 0.0; }); }) ==
          iwsec::ErrorId::invalid_option);
  }
  SECTION("a rejected token's claims: usage_error, a std::logic_error") {
    iwsec::Signer signer{std::string_view("0123456789abcdef0123456789abcdef")};
    const auto result = signer.verify("not.a.token", 0);
    REQUIRE_FALSE(result.ok());
    CHECK(id_of_throw<std::logic_error>([&] { (void)result.token(); }) == iwsec::ErrorId::usage_error);
  }
  SECTION("a keyring that does not parse: keyring_error, a std::runtime_error") {
    iwsec_test::TempDir dir;
    const auto path = file_in(dir, "keys", "iwsec-keyring 2\n");
    CHECK(id_of_throw<std::runtime_error>([&] { (void)iwsec::KeyringFile(path).load(); }) ==
          iwsec::ErrorId::keyring_error);
  }
  SECTION("a users file that does not parse: store_error, a std::runtime_error") {
    iwsec_test::TempDir dir;
    const auto path = file_in(dir, "users.json", "{ this is not json");
    CHECK(id_of_throw<std::runtime_error>([&] { iwsec::JsonFileUserStore store(path); }) ==
          iwsec::ErrorId::store_error);
  }
  SECTION("a revocation journal that cannot be read: journal_error, a std::runtime_error") {
    iwsec_test::TempDir dir;
    // A folder where the journal should be: it exists and cannot be read as a file.
    REQUIRE(::mkdir((dir.path + "/revocations.journal").c_str(), 0700) == 0);
    CHECK(id_of_throw<std::runtime_error>(
              [&] { iwsec::JournalRevocationStore store(dir.path + "/revocations.journal"); }) ==
          iwsec::ErrorId::journal_error);
  }
  SECTION("state that cannot be shown current: StateUnavailable, with its retry time") {
    try {
      throw iwsec::StateUnavailable("iwsec: test", 7);
    } catch (const iwsec::Error& e) {
      CHECK(e.id() == iwsec::ErrorId::state_unavailable);
      const auto* u = dynamic_cast<const iwsec::StateUnavailable*>(&e);
      REQUIRE(u != nullptr);
      CHECK(u->retry_after() == 7);
    }
  }
}

TEST_CASE("error ids are stable numbers with the class's name", "[errors]") {
  CHECK(static_cast<int>(iwsec::ErrorId::invalid_option) == 101);
  CHECK(static_cast<int>(iwsec::ErrorId::key_error) == 201);
  CHECK(static_cast<int>(iwsec::ErrorId::keyring_error) == 202);
  CHECK(static_cast<int>(iwsec::ErrorId::store_error) == 301);
  CHECK(static_cast<int>(iwsec::ErrorId::state_unavailable) == 401);
  CHECK(static_cast<int>(iwsec::ErrorId::sql_error) == 501);
  CHECK(std::string(iwsec::to_string(iwsec::ErrorId::keyring_error)) == "keyring_error");
  CHECK(std::string(iwsec::to_string(iwsec::ErrorId::state_unavailable)) == "state_unavailable");
  // Each concrete error is exactly one standard type, so catching
  // std::exception is never ambiguous.
  CHECK(std::is_base_of<std::exception, iwsec::keyring_error>::value);
  CHECK(std::is_base_of<iwsec::Error, iwsec::postgres::SqlError>::value);
  CHECK_FALSE(std::is_base_of<std::exception, iwsec::Error>::value);
}
