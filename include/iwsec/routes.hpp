/// @brief mount_security_routes: the five `/v3/security` endpoints on a host's httplib::Server, and a guard for the host's own routes.
/// @file
#pragma once

#include <chrono>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <httplib.h>

#include "detail/base64.hpp"
#include "detail/change_watch.hpp"
#include "detail/crypto.hpp"
#include "detail/http.hpp"
#include "detail/json.hpp"
#include "audit.hpp"
#include "detail/request_body.hpp"
#include "detail/verified_token_cache.hpp"
#include "errors.hpp"
#include "hashing_gate.hpp"
#include "lockout.hpp"
#include "metrics.hpp"
#include "observe.hpp"
#include "options.hpp"
#include "password.hpp"
#include "revocation_store.hpp"
#include "signer.hpp"
#include "user_store.hpp"

namespace iwsec {

/// @brief The paths of the security routes, each also answered with one
/// trailing slash appended (Infoworks' own utility scripts call
/// `/v3/security/token/access/`).
inline constexpr const char* security_route_paths[] = {"/v3/security/authenticate", "/v3/security/token/access",
                                                      "/v3/security/token/validate", "/v3/security/token/refresh"};

/// @brief The route @p path names, spelled without the one trailing slash the
/// routes also answer on (`/v3/security/token/access/` gives
/// `/v3/security/token/access`); any other path as it is. For access logs and
/// checks before routing, so that both spellings are one route.
inline std::string_view security_route_path(std::string_view path) noexcept {
  if (path.size() < 2 || path.back() != '/') return path;
  const std::string_view bare = path.substr(0, path.size() - 1);
  for (const char* route : security_route_paths)
    if (bare == route) return bare;
  return path;
}

namespace detail {

// The error answers of the security routes, one per row of docs/endpoints.md "Every status and iw_code".
enum class failure { bad_request, no_credentials, invalid_token, rejected, internal, unavailable };

/// @brief The state and the logic behind the routes, shared by every handler
/// and by the guard (so they see the same revocations).
class security_core {
 public:
  security_core(UserStore& users, const Signer& signer, Options options)
      : users_(users),
        signer_(signer),
        options_(std::move(options)),
        hashing_(options_.max_concurrent_hashes, options_.max_queued_hashes) {
    validate_options(options_);
    if (!options_.clock) options_.clock = system_now;
    lockout_ = options_.lockout_state ? options_.lockout_state : std::make_shared<LockoutTracker>(options_.lockout);
    revocations_ = options_.revocations ? options_.revocations
                                        : std::make_shared<MemoryRevocationStore>(options_.clock);
    metrics_ = options_.metrics ? options_.metrics : std::make_shared<Metrics>();
  }

  /// @brief Refuses options that would silently break the contract.
  static void validate_options(const Options& o) {
    constexpr std::int64_t max_seconds = max_duration_seconds;
    if (o.token_lifetime.count() <= 0 || o.token_lifetime.count() > max_seconds)
      throw invalid_option("iwsec: Options::token_lifetime must be 1 s to 366 days");
    if (o.leeway.count() < 0 || o.leeway.count() > max_seconds)
      throw invalid_option("iwsec: Options::leeway must be 0 s to 366 days");
    if (o.password_rounds < 1 || o.password_rounds > Pbkdf2Hash::max_rounds)
      throw invalid_option("iwsec: Options::password_rounds out of range");
    if (o.max_revocations_per_user < 1)
      throw invalid_option("iwsec: Options::max_revocations_per_user must be at least 1");
    if (o.max_authorization_bytes < 64)
      throw invalid_option("iwsec: Options::max_authorization_bytes below 64");
    if (const char* error = lockout_policy_error(o.lockout))
      throw invalid_option(std::string("iwsec: Options::lockout.") + error);
    if (o.refresh_token_lifetime.count() < 0 || o.refresh_token_lifetime.count() > max_refresh_token_lifetime_seconds)
      throw invalid_option("iwsec: Options::refresh_token_lifetime must be 0 s (none) to 10 x 366 days");
  }

  /// @brief Hands one audit event to Options::on_audit (nothing is built
  /// when it is unset). @p req: the HTTP request it came from, if any.
  void audit(const httplib::Request* req, const char* event, std::string_view email, const std::string& user_id,
             const char* result, const char* reason, std::int64_t until = 0) const {
    if (!options_.on_audit) return;
    AuditEvent e;
    e.time_ms = audit_now_ms();
    e.event = event;
    e.email = audit_text(ascii_lower(email));
    e.user_id = user_id;
    if (req) {
      e.client = client_of(*req);
      const std::string& id = req->get_header_value("X-Request-Id");
      if (sane_request_id(id)) e.request_id = id;
    }
    if (result) e.result = result;
    if (reason) e.reason = reason;
    e.until = until;
    try {
      options_.on_audit(e);
    } catch (...) {
    }
  }

  /// @brief Text a client sent, fit for a JSON line: at most 254 bytes,
  /// bytes that are not valid UTF-8 as '?'.
  static std::string audit_text(std::string text) {
    if (text.size() > 254) text.resize(254);
    if (!is_valid_utf8(text))
      for (char& c : text)
        if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    return text;
  }

  RevocationStore& revocations() const { return *revocations_; }
  Lockout& lockout() const { return *lockout_; }
  Metrics& metrics() const { return *metrics_; }
  HashingGate& hashing_gate() const { return hashing_; }
  const Options& options() const { return options_; }

  std::int64_t now() const { return options_.clock(); }

  /// @brief Options::refresh_keys, when set.
  void refresh_keys() const {
    if (options_.refresh_keys) options_.refresh_keys();
  }

  /// @brief Full access check: signature, claims, times, revocation, user
  /// still enabled, the token's `user_id` still the holder of its email, and
  /// of the same refresh-token generation. Null when any fails, and then
  /// *@p rejection (if given) says which.
  std::shared_ptr<const VerifiedToken> check_access(std::string_view token, Rejection* rejection = nullptr) const {
    const auto refuse = [rejection](Rejection why) -> std::shared_ptr<const VerifiedToken> {
      if (rejection) *rejection = why;
      return nullptr;
    };
    const std::int64_t at = now();
    const auto leeway = static_cast<std::int64_t>(options_.leeway.count());
    // Tokens verified under a key set that was since replaced leave the cache
    // before any lookup: the first check that sees the new version empties it.
    const std::uint64_t keys = signer_.key_version();
    if (keys != cached_key_version_.load(std::memory_order_acquire)) {
      verified_tokens_.invalidate();
      cached_key_version_.store(keys, std::memory_order_release);
    }
    const std::uint64_t epoch = verified_tokens_.epoch();
    auto t = verified_tokens_.find(token, at, leeway);
    if (!t) {
      auto result = signer_.verify(token, at, leeway);
      if (!result) return refuse(rejection_of(result.error()));
      t = std::make_shared<const VerifiedToken>(result.token());
      if (result.key_version() == keys) verified_tokens_.store(token, t, at, epoch);
    }
    if (revocations_->is_revoked(t->jti())) return refuse(Rejection::revoked);
    const auto status = users_.status_of(t->email());
    // A user deleted and re-created under the same email is another user.
    if (!status || status->user_id != t->user_id()) return refuse(Rejection::unknown_user);
    if (status->disabled) return refuse(Rejection::disabled);
    if (status->refresh_generation != t->refresh_generation()) return refuse(Rejection::rotated);
    return t;
  }

  /// @brief check_access() for @p req, counted (validation or guard) and
  /// recorded for take_token_check().
  std::shared_ptr<const VerifiedToken> observed_check(const httplib::Request& req, std::string_view token,
                                                      bool guard) const {
    Rejection rejection = Rejection::none;
    auto t = check_access(token, &rejection);
    if (guard) {
      metrics_->count_guard_check(t != nullptr);
    } else {
      metrics_->count_validation(t != nullptr);
    }
    record_token_check(req, TokenCheck{t != nullptr, t ? Rejection::none : rejection});
    return t;
  }

  /// @brief Counts a failed credential check, and reports the lock or block
  /// it started (to the metrics and Options::on_lockout).
  void attempt_failed(LockoutTracker::Attempt& attempt, std::optional<std::string_view> email,
                      const std::string& client) const {
    const LockTransition started = attempt.failed(now());
    if (!started) return;
    const auto report = [this](LockoutEvent::Kind kind, std::string subject, std::int64_t until) {
      metrics_->count_lockout(kind == LockoutEvent::Kind::account);
      if (options_.on_audit) {
        const bool account = kind == LockoutEvent::Kind::account;
        AuditEvent e;
        e.time_ms = audit_now_ms();
        e.event = "lock";
        (account ? e.email : e.client) = account ? audit_text(subject) : subject;
        e.result = "locked";
        e.reason = account ? "account_failures" : "client_failures";
        e.until = until;
        try {
          options_.on_audit(e);
        } catch (...) {
        }
      }
      if (!options_.on_lockout) return;
      try {
        options_.on_lockout(LockoutEvent{kind, std::move(subject), until});
      } catch (...) {
      }
    };
    if (started.account_locked_until && email)
      report(LockoutEvent::Kind::account, LockoutTracker::normalise_account(*email), started.account_locked_until);
    if (started.client_blocked_until) report(LockoutEvent::Kind::client, client, started.client_blocked_until);
  }

  /// @brief check_access() as a copy of the claims.
  std::optional<VerifiedToken> check_access_token(std::string_view token) const {
    const auto t = check_access(token);
    if (!t) return std::nullopt;
    return *t;
  }

  // ---- answers --------------------------------------------------------------

  void fail(httplib::Response& res, failure f, const char* challenge_scheme) const {
    std::string details, code;
    int status = 500;
    switch (f) {
      case failure::bad_request:
        status = 400;
        code = "IW10006";
        details = "Bad Request: unusable Authorization header or query parameter";
        break;
      case failure::no_credentials:
        status = 401;
        code = "IW10004";
        details = "Authentication Required: missing or unsupported credentials";
        break;
      case failure::invalid_token:
        status = 401;
        code = "IW10004";
        details = "Authentication Required: invalid or expired access token";
        break;
      case failure::rejected:
        status = 406;
        code = "IW10031";
        details = "Authentication Failed: Incorrect user credentials";
        break;
      case failure::internal:
        status = 500;
        code = "IW10002";
        details = "Internal Server Error";
        break;
      case failure::unavailable:
        status = 503;
        code = "IW10002";
        details = "Service Unavailable: shared state cannot be read, retry later";
        if (!res.has_header("Retry-After")) res.set_header("Retry-After", "1");
        break;
    }
    if (status == 401) res.set_header("WWW-Authenticate", challenge(challenge_scheme, f == failure::invalid_token));
    send_json(res, status,
              error_envelope(status >= 500 ? "Security Server Errors" : "Security Client Errors", details, code,
                             options_.help_url_base));
  }

  std::string challenge(const char* scheme, bool invalid_token) const {
    std::string c = scheme;
    c += " realm=";
    append_json_string(c, options_.realm);
    if (std::string_view(scheme) == "Basic") c += ", charset=\"UTF-8\"";
    if (invalid_token) c += ", error=\"invalid_token\"";
    return c;
  }

  void send_token(httplib::Response& res, const std::string& token, const std::string* user_id) const {
    std::string body = "{\"message\":\"Authentication Success\",\"result\":{\"authentication_token\":";
    append_json_string(body, token);
    body += ",\"is_authenticated\":true";
    if (user_id) {
      body += ",\"user_id\":";
      append_json_string(body, *user_id);
    }
    body += "}}";
    send_json(res, 200, body);
  }

  std::string mint(const User& user, TokenAction action) const {
    AccessClaims claims;
    claims.email = user.email;
    claims.action = action;
    claims.issued_at = now();
    claims.expires_at = claims.issued_at + static_cast<std::int64_t>(options_.token_lifetime.count());
    claims.refresh_generation = user.refresh_generation;
    claims.user_id = user.user_id;
    return signer_.sign(claims);
  }

  /// @brief 429 with `Retry-After` (whole seconds, at least 1): the same
  /// answer for a locked account, a blocked client, a known or unknown email.
  void too_many_attempts(httplib::Response& res, std::int64_t wait_seconds) const {
    res.set_header("Retry-After", std::to_string(wait_seconds < 1 ? 1 : wait_seconds));
    send_json(res, 429,
              error_envelope("Security Client Errors", "Authentication Failed: Too many failed attempts, retry later",
                             "IW10031", options_.help_url_base));
  }

  /// @brief The client a request's failures are counted under: the host's
  /// LockoutPolicy::client_key, or the peer address.
  std::string client_of(const httplib::Request& req) const {
    return options_.lockout.client_key ? options_.lockout.client_key(req) : client_address_key(req.remote_addr);
  }

  // ---- credentials ----------------------------------------------------------

  /// @brief The credentials of the @p wanted scheme, or nothing after
  /// answering: 400 for a duplicate or over-long header, 401 otherwise.
  std::optional<std::string> credentials(const httplib::Request& req, httplib::Response& res,
                                         authorization::kind wanted, const char* scheme) const {
    const auto view = credentials_view(req, res, wanted, scheme);
    if (!view) return std::nullopt;
    return std::string(*view);
  }

  /// @brief credentials() without a copy: a view into @p req's header.
  std::optional<std::string_view> credentials_view(const httplib::Request& req, httplib::Response& res,
                                                   authorization::kind wanted, const char* scheme) const {
    const auto auth = read_authorization(req, options_.max_authorization_bytes);
    if (auth.type == authorization::kind::duplicate || auth.type == authorization::kind::too_long) {
      fail(res, failure::bad_request, scheme);
      return std::nullopt;
    }
    if (auth.type != wanted) {
      fail(res, failure::no_credentials, scheme);
      return std::nullopt;
    }
    return auth.credentials;
  }

  // ---- Basic username:password ---------------------------------------------

  /// @brief Checks Basic credentials; the user on success. Always spends at
  /// least the configured rounds of password hashing, whether or not the
  /// email exists (a success with a stored hash of other rounds also hashes
  /// the password again, and stores that), except while the
  /// account (its lower-cased email, known or not) is locked or the client
  /// blocked: then a 429 before any hashing.
  std::optional<User> password_login(const httplib::Request& req, httplib::Response& res,
                                     const char* audit_event = "login") const {
    const auto basic = credentials(req, res, authorization::kind::basic, "Basic");
    if (!basic) return std::nullopt;
    const auto pair = parse_basic_credentials(*basic);
    if (!pair) {
      fail(res, failure::bad_request, "Basic");
      return std::nullopt;
    }
    const std::string_view email = pair->user;
    const std::string_view password = pair->password;
    const std::string client = client_of(req);
    auto attempt = lockout_->begin(email, client, now());
    if (!attempt) {
      metrics_->count_login(CheckResult::locked);
      audit(&req, audit_event, email, std::string(), "locked", "locked");
      too_many_attempts(res, attempt.wait());
      return std::nullopt;
    }
    // After the lockout's admission (a locked account costs no queue slot),
    // before any hash: a refusal throws past `attempt`, which is then
    // released uncounted (no hash ran, nothing was learnt).
    const auto turn = hashing_.enter();
    if (!turn) throw StateUnavailable("iwsec: the password hashing queue is full", 1);
    auto user = email.empty() ? std::nullopt : users_.find_by_email(email);
    const std::uint32_t rounds = options_.password_rounds;
    bool ok, password_ok = false;
    if (user && Pbkdf2Hash::parse(user->password_hash)) {
      // At least the configured rounds, also for a hash with fewer (docs/api.md).
      password_ok = verify_password(password, user->password_hash, rounds);
      ok = password_ok && !user->disabled;
    } else {
      // Unknown email (or a stored hash that cannot match): the same work as a wrong password.
      ok = verify_password_decoy(password, rounds);
    }
    if (ok && password_needs_rehash(user->password_hash, rounds)) {
      // Stored hashes converge on the configured rounds (passlib's
      // needs_update); the sessions stay. A failed write leaves the login
      // standing: the next one tries again.
      const std::string upgraded = hash_password(password, rounds);
      try {
        upgrade_password_hash(users_, user->email, user->user_id, user->password_hash, upgraded);
      } catch (...) {
      }
    }
    if (!ok) {
      attempt_failed(attempt, email, client);
      metrics_->count_login(CheckResult::failure);
      audit(&req, audit_event, email, user ? user->user_id : std::string(), "failure",
            password_ok ? "disabled" : "bad_credentials");
      fail(res, failure::rejected, "Basic");
      return std::nullopt;
    }
    attempt.succeeded(now());
    metrics_->count_login(CheckResult::success);
    // A rotation is audited once its write is done.
    if (std::strcmp(audit_event, "login") == 0) audit(&req, audit_event, user->email, user->user_id, "success", nullptr);
    return user;
  }

  // ---- the five endpoints --------------------------------------------------

  void authenticate(const httplib::Request& req, httplib::Response& res) const {
    if (req.params.count("service_id")) {
      const auto range = req.params.equal_range("service_id");
      const std::string& value = range.first->second;
      bool numeric = req.params.count("service_id") == 1 && !value.empty() && value.size() <= 18;
      for (char c : value) numeric = numeric && c >= '0' && c <= '9';
      if (!numeric) return fail(res, failure::bad_request, "Basic");
    }
    const auto user = password_login(req, res);
    if (!user) return;
    send_token(res, mint(*user, TokenAction::password), &user->user_id);
  }

  void access_token(const httplib::Request& req, httplib::Response& res) const {
    const auto refresh_token = credentials(req, res, authorization::kind::basic, "Basic");
    if (!refresh_token) return;
    // Counted per client only: a refresh token names no account until it
    // matches, and a 256-bit token is not guessable, so an account lock
    // (which would let anyone knowing an email cut off that user's SDK
    // sessions) buys nothing here.
    const std::string client = client_of(req);
    auto attempt = lockout_->begin(std::nullopt, client, now());
    if (!attempt) {
      metrics_->count_exchange(CheckResult::locked);
      audit(&req, "token_exchange", {}, std::string(), "locked", "locked");
      return too_many_attempts(res, attempt.wait());
    }
    const auto user = users_.find_by_refresh_token_hash(refresh_token_hash(*refresh_token));
    // Past Options::refresh_token_lifetime: answered like an unknown token.
    const std::int64_t lifetime = static_cast<std::int64_t>(options_.refresh_token_lifetime.count());
    const bool expired = user && lifetime > 0 && now() >= user->refresh_token_issued_at + lifetime;
    if (!user || user->disabled || expired) {
      attempt_failed(attempt, std::nullopt, client);
      metrics_->count_exchange(CheckResult::failure);
      audit(&req, "token_exchange", user ? std::string_view(user->email) : std::string_view(),
            user ? user->user_id : std::string(), "failure",
            !user ? "unknown_refresh_token" : user->disabled ? "disabled" : "expired_refresh_token");
      return fail(res, failure::rejected, "Basic");
    }
    attempt.succeeded(now());
    metrics_->count_exchange(CheckResult::success);
    audit(&req, "token_exchange", user->email, user->user_id, "success", nullptr);
    send_token(res, mint(*user, TokenAction::refresh_token), nullptr);
  }

  void revoke_access_token(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const auto result = signer_.verify_ignoring_lifetime(*token);
    if (!result) {
      audit(&req, "revocation", {}, std::string(), "failure", "invalid_token");
      return fail(res, failure::invalid_token, "Bearer");
    }
    const VerifiedToken& t = result.token();
    // Kept until the token would fail verification on its own; an expired
    // token needs no entry, it can never be valid again.
    const std::int64_t usable_until = t.expires_at() + static_cast<std::int64_t>(options_.leeway.count());
    if (usable_until > now()) {
      // Counted per user: past the cap the user's sessions end at once instead.
      const std::string owner = t.user_id().empty() ? "email:" + ascii_lower(t.email()) : t.user_id();
      const auto outcome = revocations_->revoke_for(owner, t.jti(), usable_until, options_.max_revocations_per_user);
      if (outcome == RevokeOutcome::failed) return fail(res, failure::internal, "Bearer");
      if (outcome == RevokeOutcome::limit_reached && !end_sessions_of(t)) return fail(res, failure::internal, "Bearer");
    }
    metrics_->count_revocation();
    audit(&req, "revocation", t.email(), t.user_id(), "success", nullptr);
    send_json(res, 200, "{\"message\":\"Logout Success\",\"result\":\"Token successfully blacklisted\"}");
  }

  /// @brief Ends every access token of @p t's user (a generation bump), so
  /// that @p t is dead without a revocation entry. Nothing to do when @p t
  /// is already dead for good: its user is gone, re-created, or past its
  /// generation. False only when the write failed.
  bool end_sessions_of(const VerifiedToken& t) const {
    const auto current = [&](const std::string& user_id, std::int64_t generation) {
      return user_id == t.user_id() && generation == t.refresh_generation();
    };
    const auto status = users_.status_of(t.email());
    if (!status || !current(status->user_id, status->refresh_generation)) return true;
    const StoreResult written = users_.update_user(t.email(), [&](User& u) {
      if (current(u.user_id, u.refresh_generation)) ++u.refresh_generation;
    });
    return written == StoreStatus::ok || written == StoreStatus::not_found;
  }

  void validate(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials_view(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const bool valid = observed_check(req, *token, false) != nullptr;
    send_json(res, 200, valid ? "{\"message\":\"\",\"result\":{\"is_valid\":true}}"
                              : "{\"message\":\"\",\"result\":{\"is_valid\":false}}");
  }

  void rotate_refresh_token(const httplib::Request& req, httplib::Response& res) const {
    const auto user = password_login(req, res, "refresh_rotation");
    if (!user) return;
    const auto rotated = iwsec::rotate_refresh_token(users_, user->email, now());
    if (rotated.status == StoreStatus::ok) audit(&req, "refresh_rotation", user->email, user->user_id, "success", nullptr);
    if (rotated.status == StoreStatus::not_found) return fail(res, failure::rejected, "Basic");  // deleted meanwhile
    if (rotated.status != StoreStatus::ok) return fail(res, failure::internal, "Basic");
    std::string body =
        "{\"message\":\"Refresh Token Rotated\",\"result\":\"Successfully Blacklisted Refresh Token.\","
        "\"refresh_token\":";
    append_json_string(body, rotated.refresh_token);
    body += '}';
    send_json(res, 200, body);
  }

  /// @brief cpp-httplib slices the body of a routed answer by the request's
  /// `Range` header (a 206 with half a token, or a 416 with no envelope).
  /// Our answers are whole JSON documents, so the ranges are dropped. The
  /// Request is a mutable object inside httplib, handed to handlers as const.
  static void ignore_ranges(const httplib::Request& req) { const_cast<httplib::Request&>(req).ranges.clear(); }

  /// @brief No security route takes a body: true after answering one (400
  /// or 413, connection closed, so nothing after the headers is parsed).
  bool refused_body(const httplib::Request& req, httplib::Response& res) const {
    const request_body body = announced_body(req);
    if (body == request_body::none) return false;
    refuse_body(res, body, options_.help_url_base);
    return true;
  }

  /// @brief Runs @p body, turning any escaping exception into the 500
  /// envelope (StateUnavailable into the 503 one, with its `Retry-After`):
  /// the host's exception handler is never involved, and no exception text
  /// reaches the client.
  template <typename F>
  void shielded(httplib::Response& res, const char* scheme, F&& body) const {
    try {
      body();
    } catch (const StateUnavailable& e) {
      res.headers.clear();
      res.set_header("Retry-After", std::to_string(e.retry_after()));
      fail(res, failure::unavailable, scheme);
    } catch (...) {
      res.headers.clear();
      fail(res, failure::internal, scheme);
    }
  }

 private:
  UserStore& users_;
  const Signer& signer_;
  Options options_;
  std::shared_ptr<RevocationStore> revocations_;
  std::shared_ptr<Lockout> lockout_;
  std::shared_ptr<Metrics> metrics_;
  mutable HashingGate hashing_;
  mutable verified_token_cache verified_tokens_;
  mutable std::atomic<std::uint64_t> cached_key_version_{0};  // the signer's key set the cache holds tokens of
};

}  // namespace detail

/// @brief What mount_security_routes returns: a handle to the mounted routes'
/// state, used to guard the host's own routes. Cheap to copy; keeps that
/// state alive for as long as any copy (or the server's handlers) exist.
class SecurityRoutes {
 public:
  /// @brief A handler that receives the verified claims of the request's token.
  using GuardedHandler = std::function<void(const httplib::Request&, httplib::Response&, const VerifiedToken&)>;

  /// @brief Wraps @p handler so that it runs only for a request bearing a
  /// valid, unrevoked access token; other requests get the same 401 (or
  /// 400) envelope as the security routes. A body httplib leaves unread on
  /// the connection (any body on GET, HEAD, OPTIONS; a chunked DELETE) gets
  /// 400 or 413 and the connection closed; bodies httplib reads before the
  /// handler (POST, PUT, PATCH, DELETE with Content-Length) are the host's.
  httplib::Server::Handler guard(GuardedHandler handler) const {
    auto core = core_;
    return [core, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      // A body httplib leaves on the connection would be parsed as the next request.
      if (detail::body_left_unread(req)) {
        detail::security_core::ignore_ranges(req);
        return detail::refuse_body(res, detail::announced_body(req), core->options().help_url_base);
      }
      std::shared_ptr<const VerifiedToken> token;
      const auto started = std::chrono::steady_clock::now();
      std::optional<detail::ChangeTracker::Scope> changes(std::in_place);  // closed before the host's handler
      core->shielded(res, "Bearer", [&] {
        core->refresh_keys();
        const auto bearer = core->credentials_view(req, res, detail::authorization::kind::bearer, "Bearer");
        if (bearer && !(token = core->observed_check(req, *bearer, true)))
          core->fail(res, detail::failure::invalid_token, "Bearer");
      });
      changes.reset();
      core->metrics().observe(MetricsRoute::guard, std::chrono::steady_clock::now() - started);
      // Only with a verified token: a fault in the check above (already
      // answered 500) must not run the host's handler on an empty token.
      if (token) {
        handler(req, res, *token);  // the host's own exceptions (and Range handling) stay the host's
      } else {
        detail::security_core::ignore_ranges(req);  // our refusal goes out whole
      }
    };
  }

  /// @brief The same check as guard(), without HTTP: the claims when @p req
  /// bears a valid access token.
  std::optional<VerifiedToken> verify_request(const httplib::Request& req) const {
    const auto auth = detail::read_authorization(req, core_->options().max_authorization_bytes);
    if (auth.type != detail::authorization::kind::bearer) return std::nullopt;
    core_->refresh_keys();
    return core_->check_access_token(auth.credentials);
  }

  /// @brief The revocation store the routes use.
  RevocationStore& revocations() const { return core_->revocations(); }

  /// @brief The brute-force counter the routes use (e.g. to unlock an
  /// account): Options::lockout_state, or the LockoutTracker they made.
  Lockout& lockout() const { return core_->lockout(); }

  /// @brief The routes' counters and latency histograms (Options::metrics,
  /// or their own): serve metrics().render() on the host's metrics route.
  Metrics& metrics() const { return core_->metrics(); }

  /// @brief The gate every password check of the routes passes (e.g. to
  /// read how many wait).
  HashingGate& hashing_gate() const { return core_->hashing_gate(); }

 private:
  friend SecurityRoutes mount_security_routes(httplib::Server&, UserStore&, const Signer&, const Options&);
  explicit SecurityRoutes(std::shared_ptr<detail::security_core> core) : core_(std::move(core)) {}
  std::shared_ptr<detail::security_core> core_;
};

/// @brief Deleted: the routes keep a reference to the signer, so a temporary
/// one would dangle. Keep the Signer alive as long as the server.
SecurityRoutes mount_security_routes(httplib::Server&, UserStore&, Signer&&, const Options& = Options()) = delete;

/// @brief Adds the Infoworks v3 security endpoints under `/v3/security` to
/// @p server. It only adds routes: the host's error, exception, pre-routing
/// handlers and logger stay untouched. @p users and @p signer must outlive
/// the server's use of the routes. Throws std::invalid_argument for options
/// out of range (a non-positive lifetime, a negative leeway, ...).
inline SecurityRoutes mount_security_routes(httplib::Server& server, UserStore& users, const Signer& signer,
                                            const Options& options = Options()) {
  auto core = std::make_shared<detail::security_core>(users, signer, options);
  using member = void (detail::security_core::*)(const httplib::Request&, httplib::Response&) const;
  const auto route = [core](member endpoint, const char* scheme, MetricsRoute name) {
    return [core, endpoint, scheme, name](const httplib::Request& req, httplib::Response& res) {
      const auto started = std::chrono::steady_clock::now();
      // One look at the file-change watch for the keyring and the users file both.
      const detail::ChangeTracker::Scope changes;
      detail::security_core::ignore_ranges(req);
      if (core->refused_body(req, res)) return;
      core->shielded(res, scheme, [&] {
        core->refresh_keys();
        ((*core).*endpoint)(req, res);
      });
      core->metrics().observe(name, std::chrono::steady_clock::now() - started);
    };
  };
  const auto wrong_method = [core](const char* allow) {
    return [core, allow](const httplib::Request& req, httplib::Response& res) {
      detail::security_core::ignore_ranges(req);
      if (core->refused_body(req, res)) return;
      res.set_header("Allow", allow);
      detail::send_json(res, 405,
                        detail::error_envelope("Security Client Errors", "Method Not Allowed", "IW10006",
                                               core->options().help_url_base));
    };
  };

  // httplib tries a method's routes in the order they were added, with a
  // regex match each: the most frequent request comes first. Each pattern
  // takes the path with or without one trailing slash (docs/endpoints.md).
  server.Get("/v3/security/token/validate/?",
             route(&detail::security_core::validate, "Bearer", MetricsRoute::token_validate));
  server.Get("/v3/security/authenticate/?",
             route(&detail::security_core::authenticate, "Basic", MetricsRoute::authenticate));
  server.Get("/v3/security/token/access/?",
             route(&detail::security_core::access_token, "Basic", MetricsRoute::token_access));
  server.Delete("/v3/security/token/access/?",
                route(&detail::security_core::revoke_access_token, "Bearer", MetricsRoute::token_revoke));
  server.Delete("/v3/security/token/refresh/?",
                route(&detail::security_core::rotate_refresh_token, "Basic", MetricsRoute::token_refresh));

  // Other methods on these paths: a 405 in the same envelope, not the host's 404.
  const struct {
    const char* path;
    const char* allow;
  } paths[] = {{"/v3/security/authenticate", "GET"},
               {"/v3/security/token/access", "GET, DELETE"},
               {"/v3/security/token/validate", "GET"},
               {"/v3/security/token/refresh", "DELETE"}};
  for (const auto& p : paths) {
    const std::string pattern = std::string(p.path) + "/?";
    server.Options(pattern, [core, allow = std::string(p.allow) + ", OPTIONS"](const httplib::Request& req,
                                                                               httplib::Response& res) {
      if (core->refused_body(req, res)) return;
      res.status = 204;
      res.set_header("Allow", allow);
    });
    server.Post(pattern, wrong_method(p.allow));
    server.Put(pattern, wrong_method(p.allow));
    server.Patch(pattern, wrong_method(p.allow));
    if (std::string_view(p.allow).find("DELETE") == std::string_view::npos) server.Delete(pattern, wrong_method(p.allow));
    if (std::string_view(p.allow).find("GET") == std::string_view::npos) server.Get(pattern, wrong_method(p.allow));
  }
  return SecurityRoutes(std::move(core));
}

}  // namespace iwsec
