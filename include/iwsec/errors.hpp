#pragma once
/// @file
/// @brief iwsec's one exception hierarchy: every exception iwsec throws of
/// its own is an iwsec::Error with an ErrorId (what the standard library
/// throws from inside, std::bad_alloc say, passes through as it is), and derives
/// from the standard type a host catches (std::invalid_argument for what the
/// host got wrong, std::runtime_error for what went wrong at run time).
///
/// The verify path never throws: a token check answers with an
/// iwsec::Rejection (observe.hpp), a password check with a bool. What throws
/// is what cannot go on: settings out of range, unusable keys, a file that
/// cannot be read or understood, state that cannot be shown to be current.
///
///     try { ... } catch (const iwsec::Error& e) {
///       log(iwsec::to_string(e.id()), e.what());  // e.g. "keyring_error", "iwsec: ..."
///     }

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace iwsec {

/// @brief What kind of failure an iwsec::Error is. Stable numbers, grouped
/// by hundreds: 1xx the host's settings, 2xx key material, 3xx files,
/// 4xx state and the system, 5xx cluster mode's database.
enum class ErrorId : int {
  invalid_option = 101,   ///< invalid_option: an Options, HardeningOptions or metric setting out of range
  usage_error = 102,      ///< usage_error: an API called where its precondition does not hold
  key_error = 201,        ///< key_error: unusable signing-key material
  keyring_error = 202,    ///< keyring_error: a key file that cannot be read, understood or changed
  store_error = 301,      ///< store_error: a users file that cannot be read or understood
  journal_error = 302,    ///< journal_error: a revocation journal that cannot be read or written
  state_unavailable = 401,  ///< StateUnavailable: state that cannot be shown to be current (answered 503)
  crypto_error = 402,     ///< crypto_error: OpenSSL failed (random bytes, a digest, PBKDF2)
  sql_error = 501,        ///< postgres::SqlError: a statement the database refused
  key_encryption_error = 502,  ///< postgres::key_encryption_error: a key-encryption key that cannot be used
  schema_error = 503,     ///< postgres::schema_error: a database schema this build cannot use
};

/// @brief The id's name, as the class is named ("keyring_error").
constexpr const char* to_string(ErrorId id) noexcept {
  switch (id) {
    case ErrorId::invalid_option: return "invalid_option";
    case ErrorId::usage_error: return "usage_error";
    case ErrorId::key_error: return "key_error";
    case ErrorId::keyring_error: return "keyring_error";
    case ErrorId::store_error: return "store_error";
    case ErrorId::journal_error: return "journal_error";
    case ErrorId::state_unavailable: return "state_unavailable";
    case ErrorId::crypto_error: return "crypto_error";
    case ErrorId::sql_error: return "sql_error";
    case ErrorId::key_encryption_error: return "key_encryption_error";
    case ErrorId::schema_error: return "schema_error";
  }
  return "unknown";
}

/// @brief The base every iwsec exception shares: catch it to catch them
/// all. Not derived from std::exception itself (each concrete error derives
/// from exactly one standard type, so `catch (const std::exception&)` stays
/// unambiguous); what() is the same message as the standard base's.
class Error {
 public:
  virtual ~Error() = default;
  /// @brief What kind of failure this is.
  ErrorId id() const noexcept { return id_; }
  /// @brief The message: names the setting, path or part and the reason,
  /// never a secret.
  virtual const char* what() const noexcept = 0;

 protected:
  explicit Error(ErrorId id) noexcept : id_(id) {}
  Error(const Error&) = default;
  Error& operator=(const Error&) = default;

 private:
  ErrorId id_;
};

namespace detail {
/// @brief An iwsec::Error with id @p Id that is also a @p Std.
template <class Std, ErrorId Id>
class basic_error : public Std, public Error {
 public:
  explicit basic_error(const std::string& what) : Std(what), Error(Id) {}
  explicit basic_error(const char* what) : Std(what), Error(Id) {}
  const char* what() const noexcept override { return Std::what(); }
};
}  // namespace detail

/// @brief A setting out of range (Options, HardeningOptions, a metric's
/// name, PBKDF2 rounds); the message names the setting.
class invalid_option : public detail::basic_error<std::invalid_argument, ErrorId::invalid_option> {
 public:
  using basic_error::basic_error;
};

/// @brief An API called where its precondition does not hold (a bug in the
/// caller, e.g. VerifyResult::token() on a rejected token).
class usage_error : public detail::basic_error<std::logic_error, ErrorId::usage_error> {
 public:
  using basic_error::basic_error;
};

/// @brief Thrown by Signer's constructors for unusable key material.
class key_error : public detail::basic_error<std::invalid_argument, ErrorId::key_error> {
 public:
  using basic_error::basic_error;
};

/// @brief A key file that cannot be read, created, understood or changed.
/// The message names the path and the reason (the `strerror` text for I/O).
class keyring_error : public detail::basic_error<std::runtime_error, ErrorId::keyring_error> {
 public:
  using basic_error::basic_error;
};

/// @brief Thrown when a users file exists but cannot be read or understood.
class store_error : public detail::basic_error<std::runtime_error, ErrorId::store_error> {
 public:
  using basic_error::basic_error;
};

/// @brief A revocation journal that cannot be read or written (the message
/// names the path and the reason).
class journal_error : public detail::basic_error<std::runtime_error, ErrorId::journal_error> {
 public:
  using basic_error::basic_error;
};

/// @brief OpenSSL failed where it cannot fail on a sound system (random
/// bytes, a digest, HMAC, PBKDF2).
class crypto_error : public detail::basic_error<std::runtime_error, ErrorId::crypto_error> {
 public:
  using basic_error::basic_error;
};

/// @brief Thrown by a UserStore, RevocationStore or lockout backend when it
/// cannot answer from state it can show to be current (a users file that
/// changed but cannot be reloaded, a cluster replica past its staleness
/// bound, a database that cannot be reached). The security routes and the
/// guard answer it with 503, the `IW10002` envelope and `Retry-After`; the
/// message is for the host's log and never reaches the client.
class StateUnavailable : public detail::basic_error<std::runtime_error, ErrorId::state_unavailable> {
 public:
  explicit StateUnavailable(const std::string& what, std::int64_t retry_after_seconds = 1)
      : basic_error(what), retry_after_(retry_after_seconds < 1 ? 1 : retry_after_seconds) {}

  /// @brief Whole seconds a client should wait before trying again (at least 1).
  std::int64_t retry_after() const noexcept { return retry_after_; }

 private:
  std::int64_t retry_after_;
};

namespace postgres {

/// @brief An SQL statement the database refused (a constraint, a syntax
/// error), as opposed to a database that cannot be reached (StateUnavailable).
class SqlError : public iwsec::detail::basic_error<std::runtime_error, ErrorId::sql_error> {
 public:
  SqlError(const std::string& what, std::string sqlstate) : basic_error(what), sqlstate_(std::move(sqlstate)) {}
  /// @brief The five-character SQLSTATE ("23505": unique violation).
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  bool unique_violation() const noexcept { return sqlstate_ == "23505"; }

 private:
  std::string sqlstate_;
};

/// @brief A key-encryption key that cannot be read or used, or that does not
/// match the one the database's keys are wrapped with. The message names the
/// file (never its content).
class key_encryption_error : public iwsec::detail::basic_error<std::runtime_error, ErrorId::key_encryption_error> {
 public:
  using basic_error::basic_error;
};

/// @brief A database whose iwsec schema this build cannot use (newer than
/// it knows).
class schema_error : public iwsec::detail::basic_error<std::runtime_error, ErrorId::schema_error> {
 public:
  using basic_error::basic_error;
};

}  // namespace postgres
}  // namespace iwsec
