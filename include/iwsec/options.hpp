#pragma once
/// @file
/// @brief Options for mount_security_routes; every field has a sane default.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "audit.hpp"
#include "clock.hpp"
#include "lockout.hpp"
#include "metrics.hpp"
#include "observe.hpp"
#include "password.hpp"
#include "revocation_store.hpp"

namespace iwsec {

/// @brief How the security routes behave. A default-constructed Options is
/// what `mount_security_routes(server, users, signer)` uses.
struct Options {
  /// @brief Lifetime of each access token (`exp` = `iat` + this).
  std::chrono::seconds token_lifetime{900};

  /// @brief Clock skew tolerated when checking `exp`, `nbf` and `iat`.
  std::chrono::seconds leeway{0};

  /// @brief Source of "now"; tests inject their own.
  Clock clock = system_now;

  /// @brief Where revoked access tokens are kept. Null: an in-memory store
  /// owned by the routes (revocations then do not survive a restart; pass a
  /// JournalRevocationStore for that).
  std::shared_ptr<RevocationStore> revocations;

  /// @brief Most outstanding (unexpired) revocations kept for one user.
  /// Revoking past it bumps the user's refresh-token generation instead:
  /// every access token of theirs ends at once, the refresh token keeps
  /// working, and no client can grow the revocation store (or its journal)
  /// without bound. At least 1.
  std::size_t max_revocations_per_user = 1000;

  /// @brief Base of the `help` link in error envelopes: `<base>/<iw_code>`.
  std::string help_url_base = "https://docs.infoworks.io/api/errors";

  /// @brief The realm named in `WWW-Authenticate` challenges.
  std::string realm = "iwsec";

  /// @brief PBKDF2 rounds spent on a login for an unknown email, so it costs
  /// what a wrong password costs. Match the rounds your users' hashes use.
  std::uint32_t password_rounds = default_pbkdf2_rounds;

  /// @brief Longest `Authorization` header value accepted; longer is a 400.
  std::size_t max_authorization_bytes = 4096;

  /// @brief Password checks (PBKDF2) running at once; 0: one per core. The
  /// others wait in a queue of max_queued_hashes; past that a login gets 503
  /// with `Retry-After` (not counted by the lockout), so a login storm
  /// cannot take the cores from token validations. See HashingGate.
  std::size_t max_concurrent_hashes = 0;

  /// @brief Password checks that may wait for a turn.
  std::size_t max_queued_hashes = 64;

  /// @brief Brute-force defence (on by default, Keycloak's figures): failed
  /// logins and refresh-token exchanges counted per account and per client,
  /// answered 429 with `Retry-After` while locked. See LockoutPolicy.
  LockoutPolicy lockout;

  /// @brief Where the routes count what they do (see Metrics). Null: a
  /// Metrics of their own, still readable through SecurityRoutes::metrics().
  std::shared_ptr<Metrics> metrics;

  /// @brief Called when an account gets locked or a client blocked (e.g. to
  /// log it). Empty: nothing is called.
  LockoutHook on_lockout;

  /// @brief Runs at the start of every security route and guard check,
  /// before any token is signed or verified: where a host keeps its signer's
  /// keys in step with a key file, e.g. `[&] { keyring_file.refresh(signer); }`
  /// (see keyring.hpp). May throw StateUnavailable (answered 503). Null: nothing.
  std::function<void()> refresh_keys;

  /// @brief Where the lockout counts live. Null: a LockoutTracker made from
  /// `lockout` (in process memory). A cluster backend passes its shared
  /// counter here (see iwsec/postgres/backend.hpp); `lockout.client_key`
  /// still names the client either way.
  std::shared_ptr<Lockout> lockout_state;

  /// @brief How long a refresh token works after it was issued (User::
  /// refresh_token_issued_at: add-user, set-password, rotations). An expired
  /// one is answered like an unknown one (406) and counts as a failure.
  /// 0: refresh tokens do not expire.
  std::chrono::seconds refresh_token_lifetime{0};

  /// @brief Receives every audit event (logins, exchanges, revocations,
  /// rotations, locks; see AuditEvent) on the request's thread. Empty:
  /// nothing is built or called.
  AuditHook on_audit;
};

}  // namespace iwsec
