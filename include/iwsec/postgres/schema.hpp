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
// The first half of the two-key advisory locks that serialise one owner's
// capped revocations (the second half: hashtext(owner)).
constexpr const char* owner_lock_key = "730842093";

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

/// @brief Version 2 (applies to a version-1 database): the rules of the
/// single-node stores.
/// - iwsec_users.added: insertion order, for list_users.
/// - iwsec_revocations.owner: whose revocation it is (the token's user id,
///   NULL for one without an owner); iwsec_revoke_owned holds at most a
///   limit of unexpired ones per owner, inside the revoking transaction
///   (several owners' revocations commit together: group commit).
/// - iwsec_lockout_sizes: how many rows each lockout table holds, so that
///   iwsec_attempt_start can cap them (max_tracked_accounts / _clients) as
///   LockoutTracker caps its tables: expired entries go first, then
///   unlocked ones with the fewest failures, the oldest first; never a live
///   lock (the table overshoots instead).
/// - iwsec_attempt_start: iwsec_attempt_begin that also says whether THIS
///   attempt's failure locked the account or blocked the client (so each
///   lock is reported once, by the replica whose attempt set it).
inline std::string schema_v2() {
  return std::string(R"SQL(
-- The order users were added in (list_users answers in it, as the
-- single-node stores do); rows of a version-1 database get numbers in
-- whatever order the table holds them.
ALTER TABLE iwsec_users ADD COLUMN IF NOT EXISTS added bigserial;
ALTER TABLE iwsec_revocations ADD COLUMN IF NOT EXISTS owner text;
CREATE INDEX IF NOT EXISTS iwsec_revocations_owner ON iwsec_revocations (owner, expires_at) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS iwsec_lockout_sizes (kind text PRIMARY KEY, n bigint NOT NULL);
INSERT INTO iwsec_lockout_sizes (kind, n) SELECT 'a', count(*) FROM iwsec_lockout_accounts ON CONFLICT DO NOTHING;
INSERT INTO iwsec_lockout_sizes (kind, n) SELECT 'c', count(*) FROM iwsec_lockout_clients ON CONFLICT DO NOTHING;

-- Revokes a batch (distinct jtis) in one transaction. An item with an owner
-- is held only when its jti is revoked already or the owner holds fewer
-- than lims[i] unexpired revocations; the answer has one boolean per item
-- (false: the owner's limit was reached, nothing stored for it). Each
-- owner's count is serialised by an advisory lock, taken in a fixed order.
CREATE OR REPLACE FUNCTION iwsec_revoke_owned(js text[], xs bigint[], os text[], lims bigint[], now_s bigint)
RETURNS boolean[]
LANGUAGE plpgsql AS $$
DECLARE held boolean[] := '{}'; n bigint; ok boolean;
BEGIN
  PERFORM pg_advisory_xact_lock()SQL") +
         owner_lock_key + R"SQL(, hashtext(o))
    FROM (SELECT DISTINCT o FROM unnest(os) AS o WHERE o IS NOT NULL ORDER BY 1) AS owners;
  FOR i IN 1 .. coalesce(array_length(js, 1), 0) LOOP
    ok := true;
    IF os[i] IS NOT NULL AND NOT EXISTS (SELECT 1 FROM iwsec_revocations WHERE jti = js[i]) THEN
      SELECT count(*) INTO n FROM iwsec_revocations WHERE owner = os[i] AND expires_at > now_s;
      ok := n < lims[i];
    END IF;
    IF ok THEN
      INSERT INTO iwsec_revocations AS r (jti, expires_at, owner) VALUES (js[i], xs[i], os[i])
        ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(r.expires_at, excluded.expires_at);
      PERFORM iwsec_append('r', NULL, js[i], xs[i]);
    END IF;
    held := held || ok;
  END LOOP;
  RETURN held;
END $$;

-- Makes room for one more row in a lockout table past its cap: drops
-- entries that no longer matter, then the least protective ones (never a
-- live lock or block), down to seven eighths of the cap. `keep` is the row
-- being counted. Rows other attempts hold are skipped, never waited for.
CREATE OR REPLACE FUNCTION iwsec_lockout_evict(k text, keep bytea, cap bigint, now_s bigint,
    a_reset bigint, c_threshold bigint, c_window bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE target bigint := cap - greatest(1, cap / 8); left_n bigint;
BEGIN
  IF k = 'a' THEN
    DELETE FROM iwsec_lockout_accounts WHERE key IN (
      SELECT key FROM iwsec_lockout_accounts WHERE key <> keep AND locked_until <= now_s
        AND now_s - last_failure >= a_reset FOR UPDATE SKIP LOCKED);
    SELECT count(*) INTO left_n FROM iwsec_lockout_accounts;
    IF left_n > target THEN
      DELETE FROM iwsec_lockout_accounts WHERE key IN (
        SELECT key FROM iwsec_lockout_accounts WHERE key <> keep AND locked_until <= now_s
        ORDER BY failures, last_failure LIMIT left_n - target FOR UPDATE SKIP LOCKED);
      SELECT count(*) INTO left_n FROM iwsec_lockout_accounts;
    END IF;
  ELSE
    DELETE FROM iwsec_lockout_clients WHERE key IN (
      SELECT key FROM iwsec_lockout_clients WHERE key <> keep AND now_s >= window_start + c_window
        FOR UPDATE SKIP LOCKED);
    SELECT count(*) INTO left_n FROM iwsec_lockout_clients;
    IF left_n > target THEN
      DELETE FROM iwsec_lockout_clients WHERE key IN (
        SELECT key FROM iwsec_lockout_clients WHERE key <> keep
          AND NOT (failures >= c_threshold AND now_s < window_start + c_window)
        ORDER BY failures, window_start LIMIT left_n - target FOR UPDATE SKIP LOCKED);
      SELECT count(*) INTO left_n FROM iwsec_lockout_clients;
    END IF;
  END IF;
  UPDATE iwsec_lockout_sizes SET n = left_n WHERE kind = k;
END $$;

-- iwsec_attempt_begin, with the tables capped (a_cap, c_cap rows) and the
-- lock or block this attempt's counted failure starts (0: none).
CREATE OR REPLACE FUNCTION iwsec_attempt_start(akey bytea, ckey bytea, now_s bigint,
    a_threshold bigint, a_increment bigint, a_max bigint, a_reset bigint,
    c_threshold bigint, c_window bigint, a_cap bigint, c_cap bigint,
    OUT wait_s bigint, OUT lock_until bigint, OUT block_until bigint)
LANGUAGE plpgsql AS $$
DECLARE a iwsec_lockout_accounts; c iwsec_lockout_clients; f bigint; added bigint; size bigint;
BEGIN
  wait_s := 0; lock_until := 0; block_until := 0;
  PERFORM set_config('synchronous_commit', 'off', true);
  IF akey IS NOT NULL THEN
    INSERT INTO iwsec_lockout_accounts (key) VALUES (akey) ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    IF added > 0 THEN
      UPDATE iwsec_lockout_sizes SET n = n + 1 WHERE kind = 'a' RETURNING n INTO size;
      IF size > a_cap THEN PERFORM iwsec_lockout_evict('a', akey, a_cap, now_s, a_reset, c_threshold, c_window); END IF;
    END IF;
    SELECT * INTO a FROM iwsec_lockout_accounts WHERE key = akey FOR UPDATE;
    IF a.locked_until > now_s THEN wait_s := a.locked_until - now_s; END IF;
  END IF;
  IF ckey IS NOT NULL THEN
    INSERT INTO iwsec_lockout_clients (key) VALUES (ckey) ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    IF added > 0 THEN
      UPDATE iwsec_lockout_sizes SET n = n + 1 WHERE kind = 'c' RETURNING n INTO size;
      IF size > c_cap THEN PERFORM iwsec_lockout_evict('c', ckey, c_cap, now_s, a_reset, c_threshold, c_window); END IF;
    END IF;
    SELECT * INTO c FROM iwsec_lockout_clients WHERE key = ckey FOR UPDATE;
    IF c.failures >= c_threshold AND now_s < c.window_start + c_window THEN
      wait_s := greatest(wait_s, c.window_start + c_window - now_s);
    END IF;
  END IF;
  IF wait_s > 0 THEN RETURN; END IF;
  IF akey IS NOT NULL THEN
    f := CASE WHEN a.failures > 0 AND now_s - a.last_failure >= a_reset THEN 1 ELSE a.failures + 1 END;
    UPDATE iwsec_lockout_accounts SET failures = f, last_failure = now_s,
      locked_until = CASE WHEN f >= a_threshold
                          THEN now_s + least(a_max, a_increment * (f / a_threshold)) ELSE 0 END
      WHERE key = akey RETURNING iwsec_lockout_accounts.locked_until INTO lock_until;
    -- Admitted means it was not locked: a lock now is this attempt's.
    IF lock_until <= now_s THEN lock_until := 0; END IF;
  END IF;
  IF ckey IS NOT NULL THEN
    IF c.failures = 0 OR now_s >= c.window_start + c_window THEN
      UPDATE iwsec_lockout_clients SET failures = 1, window_start = now_s WHERE key = ckey
        RETURNING failures, window_start INTO c.failures, c.window_start;
    ELSE
      UPDATE iwsec_lockout_clients SET failures = failures + 1 WHERE key = ckey
        RETURNING failures, window_start INTO c.failures, c.window_start;
    END IF;
    IF c.failures = c_threshold THEN block_until := c.window_start + c_window; END IF;
  END IF;
END $$;
)SQL";
}

/// @brief Version 3 (applies on a version 2 database):
/// - iwsec_signing_keys: signing keys, each wrapped (AES-256-GCM) by the
///   replicas' key-encryption key; the last by seq signs. iwsec_key_check: one
///   row, a value wrapped under the same key-encryption key, so a wrong one is
///   found at start. The change log's kind 'k' makes every replica reload them.
/// - iwsec_client_failed: counts a failed refresh-token exchange after the
///   fact (the exchange itself asked nothing of the database); the index on
///   failures lets replicas read the blocked clients on every poll.
inline std::string schema_v3() {
  return R"SQL(
CREATE TABLE IF NOT EXISTS iwsec_signing_keys (
  seq bigserial PRIMARY KEY,
  kid text NOT NULL UNIQUE,
  created_at bigint NOT NULL,
  wrapped text NOT NULL
);
CREATE TABLE IF NOT EXISTS iwsec_key_check (
  id integer PRIMARY KEY CHECK (id = 1),
  wrapped text NOT NULL
);
CREATE INDEX IF NOT EXISTS iwsec_lockout_clients_failures ON iwsec_lockout_clients (failures);

-- A failed refresh-token exchange, counted after the fact: the blocked-until
-- time when this failure reached the threshold, minus it when the client was
-- blocked already, else 0.
CREATE OR REPLACE FUNCTION iwsec_client_failed(ckey bytea, now_s bigint, c_threshold bigint, c_window bigint,
    a_reset bigint, c_cap bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE c iwsec_lockout_clients; added bigint; size bigint;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  INSERT INTO iwsec_lockout_clients (key) VALUES (ckey) ON CONFLICT DO NOTHING;
  -- A new row counts against the clients' cap (version 2) like one an
  -- attempt adds.
  GET DIAGNOSTICS added = ROW_COUNT;
  IF added > 0 THEN
    UPDATE iwsec_lockout_sizes SET n = n + 1 WHERE kind = 'c' RETURNING n INTO size;
    IF size > c_cap THEN PERFORM iwsec_lockout_evict('c', ckey, c_cap, now_s, a_reset, c_threshold, c_window); END IF;
  END IF;
  SELECT * INTO c FROM iwsec_lockout_clients WHERE key = ckey FOR UPDATE;
  IF c.failures >= c_threshold AND now_s < c.window_start + c_window THEN
    RETURN -(c.window_start + c_window);
  END IF;
  IF c.failures = 0 OR now_s >= c.window_start + c_window THEN
    UPDATE iwsec_lockout_clients SET failures = 1, window_start = now_s WHERE key = ckey RETURNING * INTO c;
  ELSE
    UPDATE iwsec_lockout_clients SET failures = failures + 1 WHERE key = ckey RETURNING * INTO c;
  END IF;
  IF c.failures >= c_threshold THEN RETURN c.window_start + c_window; END IF;
  RETURN 0;
END $$;
)SQL";
}

/// @brief Version 4 (applies on a version 3 database): refresh-token issue times
/// (docs/operations.md; a token from before it starts its clock now, when the
/// upgraded program first meets it) and the audit table (docs/operations.md "The audit trail").
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
      throw schema_error("iwsec postgres: the database's schema is version " + std::to_string(found) +
                               ", newer than this program's " + std::to_string(schema_version) +
                               " (upgrade iwsec)");
    if (found < 1) c.exec(schema_v1());
    if (found < 2) c.exec(schema_v2());
    if (found < 3) c.exec(schema_v3());
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
