#pragma once
/// @file
/// @brief mount_security_routes: the five `/v3/security` endpoints on a
/// host's httplib::Server, and a guard for the host's own routes.

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
#include "detail/crypto.hpp"
#include "detail/http.hpp"
#include "detail/json.hpp"
#include "errors.hpp"
#include "lockout.hpp"
#include "options.hpp"
#include "password.hpp"
#include "revocation_store.hpp"
#include "signer.hpp"
#include "user_store.hpp"

namespace iwsec {

namespace detail {

// The error answers of the security routes, one per row of SPEC "Errors".
enum class failure { bad_request, no_credentials, invalid_token, rejected, internal, unavailable };

/// @brief The claims of access tokens that passed Signer::verify, by their
/// exact bytes, so that a client presenting the same token again is not
/// verified again: the signer is immutable (it cannot be assigned over), so
/// the same bytes verify the same way, and only the lifetime depends on the
/// time of the check. A hit
/// re-checks it: now < exp + leeway, and now is not earlier than the time of
/// the verification (so `nbf` and `iat`, already satisfied then, still are;
/// after the clock went back the token is verified again). Revocation and
/// the user's status are never cached. Only verified tokens get in, so
/// forged ones cannot fill it; a fixed number of slots bounds its memory.
class verified_token_cache {
 public:
  static constexpr std::size_t slot_count = 1024;  // a power of two
  static constexpr std::size_t max_token_bytes = 2048;

  verified_token_cache() : slots_(new slot[slot_count]) {
    random_bytes(reinterpret_cast<unsigned char*>(&seed_), sizeof seed_);
  }

  /// @brief The cached claims of exactly @p token, if they are still within
  /// their lifetime at @p now.
  std::shared_ptr<const VerifiedToken> find(std::string_view token, std::int64_t now, std::int64_t leeway) const {
    if (token.size() > max_token_bytes) return nullptr;
    slot& s = slots_[index_of(token)];
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      // Compared in constant time: a near miss must not tell how near.
      if (!s.claims || !same_bytes(s.token, token)) return nullptr;
      claims = s.claims;
      verified_at = s.verified_at;
    }
    if (now < verified_at || now >= claims->expires_at() + leeway) return nullptr;
    return claims;
  }

  /// @brief Remembers that @p token verified at @p verified_at with @p claims.
  void store(std::string_view token, std::shared_ptr<const VerifiedToken> claims, std::int64_t verified_at) {
    if (token.size() > max_token_bytes) return;
    slot& s = slots_[index_of(token)];
    std::lock_guard<std::mutex> lock(s.mutex);
    s.token.assign(token.data(), token.size());
    s.claims = std::move(claims);
    s.verified_at = verified_at;
  }

 private:
  struct slot {
    std::mutex mutex;
    std::string token;
    std::shared_ptr<const VerifiedToken> claims;
    std::int64_t verified_at = 0;
  };

  // Equality in time that depends only on the lengths, a word at a time
  // (CRYPTO_memcmp goes byte by byte: 7 times slower on a 330-byte token).
  static bool same_bytes(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    std::uint64_t diff = 0;
    std::size_t i = 0;
    for (; i + 8 <= a.size(); i += 8) {
      std::uint64_t x, y;
      std::memcpy(&x, a.data() + i, 8);
      std::memcpy(&y, b.data() + i, 8);
      diff |= x ^ y;
    }
    for (; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
  }

  // A seeded hash of the whole token (its time does not depend on its content).
  std::size_t index_of(std::string_view token) const noexcept {
    std::uint64_t h = seed_ ^ (token.size() * 0x9E3779B97F4A7C15ULL);
    std::size_t i = 0;
    for (; i + 8 <= token.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, token.data() + i, 8);
      h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
      h ^= h >> 31;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, token.data() + i, token.size() - i);
    h = (h ^ tail) * 0x94D049BB133111EBULL;
    h ^= h >> 29;
    return static_cast<std::size_t>(h) & (slot_count - 1);
  }

  std::unique_ptr<slot[]> slots_;
  std::uint64_t seed_ = 0;
};

/// @brief The state and the logic behind the routes, shared by every handler
/// and by the guard (so they see the same revocations).
class security_core {
 public:
  security_core(UserStore& users, const Signer& signer, Options options)
      : users_(users), signer_(signer), options_(std::move(options)) {
    validate_options(options_);
    if (!options_.clock) options_.clock = system_now;
    lockout_ = options_.lockout_state ? options_.lockout_state : std::make_shared<LockoutTracker>(options_.lockout);
    revocations_ = options_.revocations ? options_.revocations
                                        : std::make_shared<MemoryRevocationStore>(options_.clock);
  }

  /// @brief Refuses options that would silently break the contract.
  static void validate_options(const Options& o) {
    constexpr std::int64_t max_seconds = 366LL * 24 * 3600;
    if (o.token_lifetime.count() <= 0 || o.token_lifetime.count() > max_seconds)
      throw std::invalid_argument("iwsec: Options::token_lifetime must be 1 s to 366 days");
    if (o.leeway.count() < 0 || o.leeway.count() > max_seconds)
      throw std::invalid_argument("iwsec: Options::leeway must be 0 s to 366 days");
    if (o.password_rounds < 1 || o.password_rounds > Pbkdf2Hash::max_rounds)
      throw std::invalid_argument("iwsec: Options::password_rounds out of range");
    if (o.max_authorization_bytes < 64)
      throw std::invalid_argument("iwsec: Options::max_authorization_bytes below 64");
    if (const char* error = lockout_policy_error(o.lockout))
      throw std::invalid_argument(std::string("iwsec: Options::lockout.") + error);
  }

  RevocationStore& revocations() const { return *revocations_; }
  Lockout& lockout() const { return *lockout_; }
  const Options& options() const { return options_; }

  std::int64_t now() const { return options_.clock(); }

  /// @brief Full access check: signature, claims, times, revocation, user
  /// still enabled and of the same refresh-token generation. Null when any fails.
  std::shared_ptr<const VerifiedToken> check_access(std::string_view token) const {
    const std::int64_t at = now();
    const auto leeway = static_cast<std::int64_t>(options_.leeway.count());
    auto t = verified_tokens_.find(token, at, leeway);
    if (!t) {
      auto result = signer_.verify(token, at, leeway);
      if (!result) return nullptr;
      t = std::make_shared<const VerifiedToken>(result.token());
      verified_tokens_.store(token, t, at);
    }
    if (revocations_->is_revoked(t->jti())) return nullptr;
    const auto status = users_.status_of(t->email());
    if (!status || status->disabled || status->refresh_generation != t->refresh_generation()) return nullptr;
    return t;
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

  /// @brief Checks Basic credentials; the user on success. Always spends one
  /// password hash, whether or not the email exists, except while the
  /// account (its lower-cased email, known or not) is locked or the client
  /// blocked: then a 429 before any hashing.
  std::optional<User> password_login(const httplib::Request& req, httplib::Response& res) const {
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
      too_many_attempts(res, attempt.wait());
      return std::nullopt;
    }
    auto user = email.empty() ? std::nullopt : users_.find_by_email(email);
    bool ok;
    if (user && Pbkdf2Hash::parse(user->password_hash)) {
      ok = verify_password(password, user->password_hash) && !user->disabled;
    } else {
      // Unknown email (or a stored hash that cannot match): the same work as a wrong password.
      ok = verify_password_decoy(password, options_.password_rounds);
    }
    if (!ok) {
      attempt.failed(now());
      fail(res, failure::rejected, "Basic");
      return std::nullopt;
    }
    attempt.succeeded(now());
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
    if (!attempt) return too_many_attempts(res, attempt.wait());
    const auto user = users_.find_by_refresh_token_hash(refresh_token_hash(*refresh_token));
    if (!user || user->disabled) {
      attempt.failed(now());
      return fail(res, failure::rejected, "Basic");
    }
    attempt.succeeded(now());
    send_token(res, mint(*user, TokenAction::refresh_token), nullptr);
  }

  void revoke_access_token(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const auto result = signer_.verify_ignoring_lifetime(*token);
    if (!result) return fail(res, failure::invalid_token, "Bearer");
    const VerifiedToken& t = result.token();
    // Kept until the token would fail verification on its own; an expired
    // token needs no entry, it can never be valid again.
    const std::int64_t usable_until = t.expires_at() + static_cast<std::int64_t>(options_.leeway.count());
    if (usable_until > now() && !revocations_->revoke(t.jti(), usable_until))
      return fail(res, failure::internal, "Bearer");
    send_json(res, 200, "{\"message\":\"Logout Success\",\"result\":\"Token successfully blacklisted\"}");
  }

  void validate(const httplib::Request& req, httplib::Response& res) const {
    const auto token = credentials_view(req, res, authorization::kind::bearer, "Bearer");
    if (!token) return;
    const bool valid = check_access(*token) != nullptr;
    send_json(res, 200, valid ? "{\"message\":\"\",\"result\":{\"is_valid\":true}}"
                              : "{\"message\":\"\",\"result\":{\"is_valid\":false}}");
  }

  void rotate_refresh_token(const httplib::Request& req, httplib::Response& res) const {
    const auto user = password_login(req, res);
    if (!user) return;
    const auto rotated = iwsec::rotate_refresh_token(users_, user->email);
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
  mutable verified_token_cache verified_tokens_;
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
  /// 400) envelope as the security routes.
  httplib::Server::Handler guard(GuardedHandler handler) const {
    auto core = core_;
    return [core, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      std::shared_ptr<const VerifiedToken> token;
      core->shielded(res, "Bearer", [&] {
        const auto bearer = core->credentials_view(req, res, detail::authorization::kind::bearer, "Bearer");
        if (bearer && !(token = core->check_access(*bearer)))
          core->fail(res, detail::failure::invalid_token, "Bearer");
      });
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
    return core_->check_access_token(auth.credentials);
  }

  /// @brief The revocation store the routes use.
  RevocationStore& revocations() const { return core_->revocations(); }

  /// @brief The brute-force counter the routes use (e.g. to unlock an
  /// account): Options::lockout_state, or the LockoutTracker they made.
  Lockout& lockout() const { return core_->lockout(); }

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
  const auto route = [core](member endpoint, const char* scheme) {
    return [core, endpoint, scheme](const httplib::Request& req, httplib::Response& res) {
      detail::security_core::ignore_ranges(req);
      core->shielded(res, scheme, [&] { ((*core).*endpoint)(req, res); });
    };
  };
  const auto wrong_method = [core](const char* allow) {
    return [core, allow](const httplib::Request& req, httplib::Response& res) {
      detail::security_core::ignore_ranges(req);
      res.set_header("Allow", allow);
      detail::send_json(res, 405,
                        detail::error_envelope("Security Client Errors", "Method Not Allowed", "IW10006",
                                               core->options().help_url_base));
    };
  };

  // httplib tries a method's routes in the order they were added, with a
  // regex match each: the most frequent request comes first.
  server.Get("/v3/security/token/validate", route(&detail::security_core::validate, "Bearer"));
  server.Get("/v3/security/authenticate", route(&detail::security_core::authenticate, "Basic"));
  server.Get("/v3/security/token/access", route(&detail::security_core::access_token, "Basic"));
  server.Delete("/v3/security/token/access", route(&detail::security_core::revoke_access_token, "Bearer"));
  server.Delete("/v3/security/token/refresh", route(&detail::security_core::rotate_refresh_token, "Basic"));

  // Other methods on these paths: a 405 in the same envelope, not the host's 404.
  const struct {
    const char* path;
    const char* allow;
  } paths[] = {{"/v3/security/authenticate", "GET"},
               {"/v3/security/token/access", "GET, DELETE"},
               {"/v3/security/token/validate", "GET"},
               {"/v3/security/token/refresh", "DELETE"}};
  for (const auto& p : paths) {
    server.Options(p.path, [allow = std::string(p.allow) + ", OPTIONS"](const httplib::Request&, httplib::Response& res) {
      res.status = 204;
      res.set_header("Allow", allow);
    });
    server.Post(p.path, wrong_method(p.allow));
    server.Put(p.path, wrong_method(p.allow));
    server.Patch(p.path, wrong_method(p.allow));
    if (std::string_view(p.allow).find("DELETE") == std::string_view::npos) server.Delete(p.path, wrong_method(p.allow));
    if (std::string_view(p.allow).find("GET") == std::string_view::npos) server.Get(p.path, wrong_method(p.allow));
  }
  return SecurityRoutes(std::move(core));
}

}  // namespace iwsec
