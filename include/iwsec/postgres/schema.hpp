#pragma once
/// @file
/// @brief The cluster database's schema and its migrations: created or
/// brought up to date by whichever iwsec program connects first, under an
/// advisory lock, so several starting at once cannot race.

#include <cstdint>
#include <string>

#include "connection.hpp"

namespace iwsec {
namespace postgres {

/// @brief The schema version this code writes and reads.
constexpr int schema_version = 4;

namespace detail {

// Advisory-lock keys (any two 64-bit numbers no other application uses).
constexpr const char* migration_lock_key = "7308420934713001";
constexpr const char* change_log_lock_key = "7308420934713002";

/// @brief Version 1. Tables:
/// - iwsec_users: one row per user, keyed by user_id; email_key is the
///   lower-cased email (unique); refresh_token_sha256 unique when set.
/// - iwsec_revocations: revoked jtis until they expire.
/// - iwsec_changes: the ordered change log replicas apply ('u': the user
///   with email_key changed, was added or deleted; 'r': jti revoked until
///   expires_at; 's': reload everything, e.g. after an import).
/// - iwsec_lockout_accounts / iwsec_lockout_clients: failure counts by
///   128-bit key (SHA-256 prefix of the lower-cased email or the client).
/// Functions: iwsec_append (the one way into the log: advisory lock, next
/// seq, NOTIFY), iwsec_revoke, iwsec_attempt_begin / iwsec_attempt_end.
inline std::string schema_v1() {
  return std::string(R"SQL(
CREATE TABLE iwsec_users (
  user_id text PRIMARY KEY,
  email text NOT NULL,
  email_key text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  refresh_token_sha256 text NOT NULL DEFAULT '',
  refresh_generation bigint NOT NULL DEFAULT 0,
  disabled boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX iwsec_users_refresh ON iwsec_users (refresh_token_sha256) WHERE refresh_token_sha256 <> '';
CREATE TABLE iwsec_revocations (
  jti text PRIMARY KEY,
  expires_at bigint NOT NULL
);
CREATE INDEX iwsec_revocations_expiry ON iwsec_revocations (expires_at);
CREATE TABLE iwsec_changes (
  seq bigint PRIMARY KEY,
  kind text NOT NULL,
  email_key text,
  jti text,
  expires_at bigint,
  at timestamptz NOT NULL DEFAULT now()
);
-- Live replicas and the last log entry each applied (a heartbeat about
-- once a second), so iwsec-admin can return once its change is everywhere.
CREATE TABLE iwsec_replicas (
  id text PRIMARY KEY,
  applied bigint NOT NULL,
  seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE iwsec_lockout_accounts (
  key bytea PRIMARY KEY,
  failures bigint NOT NULL DEFAULT 0,
  last_failure bigint NOT NULL DEFAULT 0,
  locked_until bigint NOT NULL DEFAULT 0
);
CREATE TABLE iwsec_lockout_clients (
  key bytea PRIMARY KEY,
  failures bigint NOT NULL DEFAULT 0,
  window_start bigint NOT NULL DEFAULT 0
);

-- The only way into the change log. The advisory lock is held until the
-- writing transaction commits, so entries commit in seq order: a replica that
-- applied seq N never misses a later-committing N-1.
CREATE FUNCTION iwsec_append(k text, e text, j text, x bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE s bigint;
BEGIN
  PERFORM pg_advisory_xact_lock()SQL") +
         change_log_lock_key + R"SQL();
  SELECT coalesce(max(seq), 0) + 1 INTO s FROM iwsec_changes;
  INSERT INTO iwsec_changes (seq, kind, email_key, jti, expires_at) VALUES (s, k, e, j, x);
  PERFORM pg_notify('iwsec_changes', '');  -- one notification per transaction, however many entries
  RETURN s;
END $$;

-- Revokes a batch (distinct jtis) in one transaction: one commit, one
-- fsync, one hold of the log lock for all of them.
CREATE FUNCTION iwsec_revoke(js text[], xs bigint[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE s bigint := 0;
BEGIN
  INSERT INTO iwsec_revocations AS r (jti, expires_at) SELECT * FROM unnest(js, xs)
    ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(r.expires_at, excluded.expires_at);
  FOR i IN 1 .. coalesce(array_length(js, 1), 0) LOOP
    s := iwsec_append('r', NULL, js[i], xs[i]);
  END LOOP;
  RETURN s;
END $$;

-- Counts an attempt before its credentials are checked (so parallel
-- attempts on any number of replicas cannot overshoot the threshold):
-- 0 when admitted (and counted as a failure until iwsec_attempt_end says
-- otherwise), else the seconds to wait (nothing counted).
CREATE FUNCTION iwsec_attempt_begin(akey bytea, ckey bytea, now_s bigint,
    a_threshold bigint, a_increment bigint, a_max bigint, a_reset bigint,
    c_threshold bigint, c_window bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE a iwsec_lockout_accounts; c iwsec_lockout_clients; w bigint := 0; f bigint;
BEGIN
  -- Counts need not wait for the WAL flush: they are visible to every
  -- replica at once, and a database crash forgets at most the last few
  -- hundred milliseconds of them. The row locks are held for microseconds.
  PERFORM set_config('synchronous_commit', 'off', true);
  IF akey IS NOT NULL THEN
    INSERT INTO iwsec_lockout_accounts (key) VALUES (akey) ON CONFLICT DO NOTHING;
    SELECT * INTO a FROM iwsec_lockout_accounts WHERE key = akey FOR UPDATE;
    IF a.locked_until > now_s THEN w := a.locked_until - now_s; END IF;
  END IF;
  IF ckey IS NOT NULL THEN
    INSERT INTO iwsec_lockout_clients (key) VALUES (ckey) ON CONFLICT DO NOTHING;
    SELECT * INTO c FROM iwsec_lockout_clients WHERE key = ckey FOR UPDATE;
    IF c.failures >= c_threshold AND now_s < c.window_start + c_window THEN
      w := greatest(w, c.window_start + c_window - now_s);
    END IF;
  END IF;
  IF w > 0 THEN RETURN w; END IF;
  IF akey IS NOT NULL THEN
    f := CASE WHEN a.failures > 0 AND now_s - a.last_failure >= a_reset THEN 1 ELSE a.failures + 1 END;
    UPDATE iwsec_lockout_accounts SET failures = f, last_failure = now_s,
      locked_until = CASE WHEN f >= a_threshold
                          THEN now_s + least(a_max, a_increment * (f / a_threshold)) ELSE 0 END
      WHERE key = akey;
  END IF;
  IF ckey IS NOT NULL THEN
    IF c.failures = 0 OR now_s >= c.window_start + c_window THEN
      UPDATE iwsec_lockout_clients SET failures = 1, window_start = now_s WHERE key = ckey;
    ELSE
      UPDATE iwsec_lockout_clients SET failures = failures + 1 WHERE key = ckey;
    END IF;
  END IF;
  RETURN 0;
END $$;

-- The verdict of an admitted attempt: a success resets the account (count
-- and lock) and takes back its client count; an abandoned attempt takes
-- back both counts (a lock it set stays). A failure needs no call.
CREATE FUNCTION iwsec_attempt_end(akey bytea, ckey bytea, success boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  IF akey IS NOT NULL THEN
    IF success THEN
      UPDATE iwsec_lockout_accounts SET failures = 0, locked_until = 0 WHERE key = akey;
    ELSE
      UPDATE iwsec_lockout_accounts SET failures = greatest(failures - 1, 0) WHERE key = akey;
    END IF;
  END IF;
  IF ckey IS NOT NULL THEN
    UPDATE iwsec_lockout_clients SET failures = greatest(failures - 1, 0) WHERE key = ckey;
  END IF;
END $$;
)SQL";
}

/// @brief Version 4 (applies to any of v1..v3): refresh-token issue times
/// (SPEC "Operations"; a token from before it starts its clock now, when the
/// upgraded program first meets it) and the audit table (SPEC "Audit trail").
inline std::string schema_v4() {
  return R"SQL(
ALTER TABLE iwsec_users ADD COLUMN IF NOT EXISTS refresh_token_issued_at bigint;
UPDATE iwsec_users SET refresh_token_issued_at = floor(extract(epoch FROM now()))::bigint
  WHERE refresh_token_issued_at IS NULL;
CREATE TABLE IF NOT EXISTS iwsec_audit (
  id bigserial PRIMARY KEY,
  time_ms bigint NOT NULL,
  email_key text,
  line text NOT NULL
);
CREATE INDEX IF NOT EXISTS iwsec_audit_time ON iwsec_audit (time_ms);
)SQL";
}

/// @brief Creates the schema or migrates it to schema_version. Several
/// programs may call it at once: the first takes the advisory lock and does
/// the work, the others wait for it and then find nothing to do. Throws
/// std::runtime_error for a database whose schema is newer than this code.
inline void migrate(pq_connection& c) {
  c.transaction([&] {
    c.exec(std::string("SELECT pg_advisory_xact_lock(") + migration_lock_key + ")");
    c.exec("CREATE TABLE IF NOT EXISTS iwsec_schema (version integer NOT NULL)");
    auto r = c.exec("SELECT max(version) FROM iwsec_schema");
    const std::int64_t found = r.integer(0, 0);
    if (found > schema_version)
      throw std::runtime_error("iwsec postgres: the database's schema is version " + std::to_string(found) +
                               ", newer than this program's " + std::to_string(schema_version) +
                               " (upgrade iwsec)");
    if (found < 1) c.exec(schema_v1());
    // Later versions: if (found < 2) c.exec(schema_v2_from_v1()); ...
    if (found < 4) c.exec(schema_v4());
    if (found < schema_version) {
      c.exec("DELETE FROM iwsec_schema");
      c.exec("INSERT INTO iwsec_schema (version) VALUES (" + std::to_string(schema_version) + ")");
    }
  });
}

}  // namespace detail
}  // namespace postgres
}  // namespace iwsec
