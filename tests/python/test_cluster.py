"""Cluster mode (docs/cluster.md): several iwsec-server
replicas on one real PostgreSQL 15 (started by pg_cluster.py), driven over
HTTP. Every wait for propagation polls with a deadline.

Skips only when the PostgreSQL server binaries are not installed.
"""

import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import unittest

import iwsec_harness as h
import pg_cluster

PASSWORD = "correct horse: battery"
PROPAGATION_DEADLINE = 5.0   # generous: the promise is 50 ms at p99 on a healthy loopback
PG = None


def setUpModule():
    global PG
    h.server_path()  # skip outside ctest
    if os.environ.get("IWSEC_CLUSTER_BUILT") == "0":
        raise unittest.SkipTest("this build has no cluster mode (no libpq, or the single-header build)")
    PG = pg_cluster.PostgreSQL()  # skips when PostgreSQL is not installed
    if "--postgres CONNINFO" not in h.run_program([h.server_path(), "--help"]).stdout:
        raise AssertionError("PostgreSQL is installed but iwsec-server was built without cluster mode "
                             "(install libpq-dev and reconfigure)")
    PG.start()


def tearDownModule():
    if PG is not None:
        PG.remove()


def wait_until(predicate, timeout=PROPAGATION_DEADLINE, what="condition"):
    """Polls @p predicate until it returns a truthy value; fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.01)


class ClusterCase(unittest.TestCase):
    """A fresh database per test, a shared signing key, helpers for replicas
    and for iwsec-admin --postgres."""

    def setUp(self):
        self.db = PG.new_database()
        self.conninfo = PG.conninfo(self.db)
        self.dir = h.temp_dir(self)
        self.secret = os.path.join(self.dir, "signing.key")
        with open(self.secret, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(self.secret, 0o600)

    def replica_argv(self, *extra):
        return [h.server_path(), "--host", "127.0.0.1", "--port", "0", "--postgres", self.conninfo,
                "--secret-file", self.secret, "--pbkdf2-rounds", str(h.FAST_ROUNDS), "--no-access-log"] + list(extra)

    def start_replicas(self, count, *extra):
        """Starts @p count replicas at once (so they race to create the
        schema); returns their Api objects, each with .server."""
        servers = [h.Server(self.replica_argv(*extra)) for _ in range(count)]
        for s in servers:
            self.addCleanup(s.force_stop)
        apis = []
        for s in servers:
            s.wait_listening()
            api = h.Api(s.base_url)
            api.server = s
            self.addCleanup(api.close)
            apis.append(api)
        return apis

    def admin(self, *args, stdin=None):
        return h.run_program([h.admin_path(), "--postgres", self.conninfo] + list(args) +
                             ["--pbkdf2-rounds", str(h.FAST_ROUNDS)], stdin=stdin)

    def add_user(self, email, password=PASSWORD, apis=()):
        """iwsec-admin add-user; waits until every replica of @p apis knows
        the user (a change reaches the other processes within the
        propagation bound, not at once)."""
        r = self.admin("add-user", email, "--json", stdin=password + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        refresh = json.loads(r.stdout)["refresh_token"]
        self.assert_everywhere(apis, lambda api: api.access_token(refresh).status_code == 200, "the new user")
        return refresh

    def assert_everywhere(self, apis, predicate, what):
        for i, api in enumerate(apis):
            wait_until(lambda: predicate(api), what="%s on replica %d" % (what, i))

    def valid(self, api, token):
        r = api.validate(token)
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()["result"]["is_valid"]


class Propagation(ClusterCase):
    def test_every_kind_of_change_reaches_every_replica(self):
        a, b, c = apis = self.start_replicas(3)
        refresh = self.add_user("ann@example.com")  # no wait: the login below polls
        # A user added by iwsec-admin can log in on every replica.
        self.assert_everywhere(apis, lambda api: api.authenticate("ann@example.com", PASSWORD).status_code == 200,
                               "the new user's login")

        # Revocation: seen at once by the replica that made it, soon by the others.
        token = a.token_by_password(self, "ann@example.com", PASSWORD)
        self.assertTrue(self.valid(b, token))
        self.assertEqual(b.revoke(token).status_code, 200)
        self.assertFalse(self.valid(b, token), "the revoking replica must honour its revocation at once")
        self.assert_everywhere(apis, lambda api: not self.valid(api, token), "the revocation")

        # Rotation over HTTP on one replica: the old refresh token and older
        # access tokens stop working everywhere; the new one works everywhere.
        before = c.token_by_refresh(self, refresh)
        r = a.rotate("ann@example.com", PASSWORD)
        self.assertEqual(r.status_code, 200, r.text)
        new_refresh = r.json()["refresh_token"]
        self.assertEqual(a.access_token(refresh).status_code, 406)
        self.assertFalse(self.valid(a, before))
        self.assert_everywhere(apis, lambda api: api.access_token(refresh).status_code == 406, "the rotation")
        self.assert_everywhere(apis, lambda api: not self.valid(api, before), "the rotation's generation")
        for api in apis:
            self.assertEqual(api.access_token(new_refresh).status_code, 200)

        # iwsec-admin rotate-refresh-token.
        r = self.admin("rotate-refresh-token", "ann@example.com", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        admin_refresh = json.loads(r.stdout)["refresh_token"]
        self.assert_everywhere(apis, lambda api: api.access_token(new_refresh).status_code == 406,
                               "the admin rotation")
        self.assert_everywhere(apis, lambda api: api.access_token(admin_refresh).status_code == 200,
                               "the admin rotation's new token")

        # disable-user: logins, refresh tokens and access tokens refused everywhere.
        token = b.token_by_password(self, "ann@example.com", PASSWORD)
        r = self.admin("disable-user", "ann@example.com")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_everywhere(apis, lambda api: not self.valid(api, token), "disable-user")
        for api in apis:
            self.assertEqual(api.authenticate("ann@example.com", PASSWORD).status_code, 406)
            self.assertEqual(api.access_token(admin_refresh).status_code, 406)
        r = self.admin("enable-user", "ann@example.com")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_everywhere(apis, lambda api: api.authenticate("ann@example.com", PASSWORD).status_code == 200,
                               "enable-user")

        # set-password: the new password works everywhere, the old one nowhere.
        r = self.admin("set-password", "ann@example.com", stdin="new password\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_everywhere(apis, lambda api: api.authenticate("ann@example.com", "new password").status_code == 200,
                               "set-password")
        for api in apis:
            self.assertEqual(api.authenticate("ann@example.com", PASSWORD).status_code, 406)

        # delete-user: gone everywhere, its tokens with it.
        token = c.token_by_password(self, "ann@example.com", "new password")
        r = self.admin("delete-user", "ann@example.com")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_everywhere(apis, lambda api: not self.valid(api, token), "delete-user")
        for api in apis:
            self.assertEqual(api.authenticate("ann@example.com", "new password").status_code, 406)

    def test_admin_commands_and_errors(self):
        self.add_user("bob@example.com")
        r = self.admin("add-user", "BOB@example.com", stdin=PASSWORD + "\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)
        r = self.admin("list-users", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([u["email"] for u in json.loads(r.stdout)], ["bob@example.com"])
        r = self.admin("show-user", "bob@example.com", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        shown = json.loads(r.stdout)
        self.assertEqual((shown["locked"], shown["refresh_generation"]), (False, 0))
        self.assertNotIn("hash", r.stdout)
        r = self.admin("disable-user", "nobody@example.com")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no user nobody@example.com", r.stderr)
        # The conninfo is never echoed (it may hold a password).
        bad = "host=127.0.0.1 port=1 user=postgres password=s3cret-pw dbname=x connect_timeout=2"
        r = h.run_program([h.admin_path(), "--postgres", bad, "list-users"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect", r.stderr)
        self.assertNotIn("s3cret-pw", r.stderr + r.stdout)
        # --postgres needs --secret-file.
        r = h.run_program([h.server_path(), "--postgres", self.conninfo, "--port", "0"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--secret-file", r.stderr)


class Housekeeping(ClusterCase):
    def test_replicas_prune_expired_rows_without_errors(self):
        a, b = self.start_replicas(2)
        PG.sql("INSERT INTO iwsec_revocations (jti, expires_at) VALUES ('expired-jti', 1)", self.db)
        PG.sql("INSERT INTO iwsec_lockout_accounts (key, failures, last_failure, locked_until) "
               "VALUES ('\\x00', 3, 1, 0)", self.db)
        PG.sql("INSERT INTO iwsec_lockout_clients (key, failures, window_start) VALUES ('\\x00', 3, 1)", self.db)
        left = ("SELECT (SELECT count(*) FROM iwsec_revocations) + (SELECT count(*) FROM iwsec_lockout_accounts) "
                "+ (SELECT count(*) FROM iwsec_lockout_clients)")
        wait_until(lambda: PG.sql(left, self.db) == "0", timeout=15, what="the expired rows to be pruned")
        for api in (a, b):
            self.assertNotIn("ERROR", api.server.stderr_text())
            self.assertTrue(api.validate("x.y.z").status_code == 200)


class Lockout(ClusterCase):
    def test_90_concurrent_guesses_over_3_replicas_run_at_most_30_checks(self):
        apis = self.start_replicas(3, "--lockout-failures", "30", "--lockout-client-failures", "100000")
        self.add_user("victim@example.com", apis=apis)
        barrier = threading.Barrier(90)

        def guess(i):
            api = h.Api(apis[i % 3].base_url)
            try:
                barrier.wait(timeout=30)
                return api.authenticate("victim@example.com", "wrong %d" % i).status_code
            finally:
                api.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=90) as pool:
            codes = list(pool.map(guess, range(90)))
        checks = codes.count(406)   # a 406 is a password check that ran and failed
        refused = codes.count(429)  # refused before any check
        self.assertEqual(checks + refused, 90, codes)
        self.assertLessEqual(checks, 30, codes)
        self.assertEqual(checks, 30, "the first 30 guesses must each be checked: %r" % codes)
        # The lock holds on every replica, even for the right password...
        for api in apis:
            r = api.authenticate("victim@example.com", PASSWORD)
            self.assertEqual(r.status_code, 429, r.text)
            self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
        r = self.admin("show-user", "victim@example.com", "--json")
        self.assertTrue(json.loads(r.stdout)["locked"], r.stdout)
        # ...until unlock, which is cluster-wide.
        r = self.admin("unlock", "victim@example.com")
        self.assertEqual(r.returncode, 0, r.stderr)
        for api in apis:
            self.assertEqual(api.authenticate("victim@example.com", PASSWORD).status_code, 200)

    def test_client_address_counts_are_shared(self):
        apis = self.start_replicas(3, "--lockout-client-failures", "12")
        codes = []
        for i in range(18):  # one wrong guess per (unknown) account, spread over the replicas
            codes.append(apis[i % 3].authenticate("nobody%d@example.com" % i, "x").status_code)
        self.assertEqual(codes[:12], [406] * 12, codes)
        self.assertEqual(codes[12:], [429] * 6, codes)


class Rotations(ClusterCase):
    def test_concurrent_rotations_leave_exactly_one_refresh_token(self):
        apis = self.start_replicas(3)
        first = self.add_user("rot@example.com", apis=apis)
        old_access = apis[0].token_by_refresh(self, first)
        barrier = threading.Barrier(18)

        def rotate(i):
            api = h.Api(apis[i % 3].base_url)
            try:
                barrier.wait(timeout=30)
                r = api.rotate("rot@example.com", PASSWORD)
                return r.status_code, (r.json().get("refresh_token") if r.status_code == 200 else None)
            finally:
                api.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=18) as pool:
            results = list(pool.map(rotate, range(18)))
        statuses = [s for s, _ in results]
        self.assertNotIn(500, statuses, statuses)
        self.assertTrue(all(s in (200, 429, 503) for s in statuses), statuses)
        issued = [t for s, t in results if s == 200]
        self.assertGreater(len(issued), 0, statuses)
        self.assertEqual(len(set(issued)), len(issued))
        candidates = issued + [first]

        # The database holds the last committed rotation's token.
        stored = PG.sql("SELECT refresh_token_sha256 FROM iwsec_users WHERE email_key = 'rot@example.com'", self.db)
        last = [t for t in issued if hashlib.sha256(t.encode()).hexdigest() == stored]
        self.assertEqual(len(last), 1, "the stored refresh token is none of the issued ones")

        def working(api):
            return [t for t in candidates if api.access_token(t).status_code == 200]

        # Every replica comes to the same single working token: the last one.
        wait_until(lambda: all(working(api) == last for api in apis), what="exactly one working refresh token")
        for api in apis:
            self.assertFalse(self.valid(api, old_access))


class Restarts(ClusterCase):
    def test_replica_killed_and_restarted_rejects_a_revoked_token_on_its_first_request(self):
        a, b = self.start_replicas(2)
        self.add_user("kill@example.com", apis=(a, b))
        token = a.token_by_password(self, "kill@example.com", PASSWORD)
        self.assertTrue(self.valid(b, token))
        b.close()
        b.server.kill()
        self.assertEqual(a.revoke(token).status_code, 200)
        (b2,) = self.start_replicas(1)
        self.assertFalse(self.valid(b2, token), "the first request after the restart must see the revocation")

    def test_database_stopped_and_restarted(self):
        a, b = self.start_replicas(2, "--max-staleness", "4")
        refresh = self.add_user("db@example.com", apis=(a, b))
        token = a.token_by_password(self, "db@example.com", PASSWORD)
        other = a.token_by_password(self, "db@example.com", PASSWORD)
        self.assertTrue(self.valid(b, token))
        stopping = time.monotonic()
        PG.stop(immediate=True)
        try:
            # Within the staleness bound, validations and refresh-token
            # exchanges are answered from the caught-up state (checked only
            # while well inside the 4 s bound, so a slow stop cannot fail it).
            fresh = [b.validate(token).status_code, b.access_token(refresh).status_code]
            if time.monotonic() - stopping < 2.5:
                self.assertEqual(fresh, [200, 200])
            # Writes and password logins answer 503 at once (no waiting for a timeout).
            for r in (a.revoke(token), b.rotate("db@example.com", PASSWORD), a.authenticate("db@example.com", PASSWORD)):
                self.assertEqual(r.status_code, 503, r.text)
                self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
                self.assertEqual(r.json()["iw_code"], "IW10002")
            # Past the staleness bound, validations fail closed too.
            # (A requests.Response is falsy when it is an error: wrap it.)
            (r,) = wait_until(lambda: (lambda r: (r,) if r.status_code == 503 else None)(b.validate(token)),
                              timeout=15, what="503 past --max-staleness")
            self.assertIn("Retry-After", r.headers)
            self.assertEqual(r.json()["iw_code"], "IW10002")
            self.assertEqual(b.access_token(refresh).status_code, 503)
        finally:
            PG.start()
        # Recovery without restarting the replicas.
        for api in (a, b):
            wait_until(lambda: api.validate(token).status_code == 200, timeout=15, what="recovery")
        self.assertEqual(b.revoke(other).status_code, 200)
        wait_until(lambda: not self.valid(a, other), what="a revocation after recovery")
        self.assertEqual(a.authenticate("db@example.com", PASSWORD).status_code, 200)

    def test_killed_listener_connection_is_recovered(self):
        a, b = self.start_replicas(2)
        self.add_user("listen@example.com", apis=(a, b))
        token = a.token_by_password(self, "listen@example.com", PASSWORD)
        killed = PG.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'iwsec-listener' AND datname = '%s'" % self.db)
        self.assertEqual(killed, "2")
        self.assertEqual(b.revoke(token).status_code, 200)
        wait_until(lambda: not self.valid(a, token), what="the revocation after the listener was killed")
        # Both replicas listen again.
        wait_until(lambda: PG.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'iwsec-listener' "
                                  "AND datname = '%s'" % self.db) == "2", what="the listeners to reconnect")


class StartUp(ClusterCase):
    def test_start_counts_the_users_it_loaded_without_another_query(self):
        # The start-up line's user count came from a second read of the
        # whole iwsec_users table after the copy had loaded, with a
        # request's 1.5 s timeout: on a busy database that read timed out
        # and its exception ended the start in std::terminate (SIGABRT,
        # status -6). The count now comes from the loaded copy.
        self.add_user("one@example.com")
        self.add_user("two@example.com")
        self.admin("delete-user", "two@example.com")
        self.add_user("three@example.com")
        PG.sql("ALTER DATABASE %s SET log_statement = 'all'" % self.db)
        log = os.path.join(PG.root, "server.log")
        offset = os.path.getsize(log)
        [api] = self.start_replicas(1)
        self.assertIn("cluster database (--postgres), 2 users, signing keys in", "\n".join(api.server.preamble))
        with open(log, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            statements = f.read()
        # The load is in the log (the setting applies to the replica's
        # sessions), and it is the only read of the table (the change log's
        # catch-up joins it: "JOIN iwsec_users").
        self.assertEqual(statements.count("FROM iwsec_users"), 1, statements)
        self.assertIn("email_key FROM iwsec_users\n", statements)  # the load's own statement
        self.add_user("four@example.com", apis=[api])  # and it serves


def timed(call):
    """(response or the exception it raised, seconds it took)."""
    began = time.monotonic()
    try:
        result = call()
    except Exception as e:  # a request that timed out: its elapsed time tells
        result = e
    return result, time.monotonic() - began


SICK_BOUND = 2.0  # docs/cluster.md "A sick database": logins and writes answer 503 within 2 s while the database is stalled


class SickDatabase(ClusterCase):
    """A stalled database (SIGSTOP), a restart, commits whose answer is held or lost."""

    def assert_503_within(self, result, seconds, what, bound=SICK_BOUND):
        self.assertFalse(isinstance(result, Exception), "%s: no answer after %.1f s (%r)" % (what, seconds, result))
        self.assertEqual(result.status_code, 503, "%s: %s" % (what, result.text))
        self.assertEqual(result.json()["iw_code"], "IW10002", what)
        self.assertGreaterEqual(int(result.headers["Retry-After"]), 1, what)
        self.assertLess(seconds, bound, "%s answered 503 after %.2f s" % (what, seconds))

    def test_stalled_database_answers_503_within_2s_then_recovers(self):
        staleness = 12  # room for the 503s below (each up to 2 s) before it passes
        a, b = self.start_replicas(2, "--max-staleness", str(staleness))
        refresh = self.add_user("stall@example.com", apis=(a, b))
        token = a.token_by_password(self, "stall@example.com", PASSWORD)
        spare = a.token_by_password(self, "stall@example.com", PASSWORD)
        quick = 5  # seconds: a request that hangs fails the test instead of waiting HTTP_TIMEOUT
        stopped_at = time.monotonic()
        PG.suspend()
        try:
            r, took = timed(lambda: a.request("GET", "/v3/security/authenticate", h.basic("stall@example.com", PASSWORD),
                                              timeout=quick))
            self.assert_503_within(r, took, "a password login")
            print("\nlogin 503 after %.3f s" % took)
            # More logins at once than the pool has connections: the wait for one is bounded too.
            def login(i):
                api = h.Api(b.base_url)
                try:
                    return timed(lambda: api.request("GET", "/v3/security/authenticate",
                                                     h.basic("stall@example.com", PASSWORD), timeout=quick))
                finally:
                    api.close()
            with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
                for r, took in pool.map(login, range(12)):
                    self.assert_503_within(r, took, "one of 12 concurrent logins")
            r, took = timed(lambda: a.request("DELETE", "/v3/security/token/access", h.bearer(spare), timeout=quick))
            self.assert_503_within(r, took, "a revocation")
            print("revocation 503 after %.3f s" % took)
            r, took = timed(lambda: b.request("DELETE", "/v3/security/token/refresh",
                                              h.basic("stall@example.com", PASSWORD), timeout=quick))
            self.assert_503_within(r, took, "a rotation")
            began = time.monotonic()
            r = h.run_program([h.admin_path(), "--postgres", self.conninfo, "disable-user", "stall@example.com"],
                              timeout=quick + 5)
            took = time.monotonic() - began
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertLess(took, SICK_BOUND + 1.0, "iwsec-admin gave up after %.2f s (process start-up included)" % took)
            print("iwsec-admin exit 1 after %.3f s" % took)
            # Validations and refresh exchanges: from the local copy until --max-staleness...
            if time.monotonic() - stopped_at < staleness - 2.5:
                r, took = timed(lambda: b.request("GET", "/v3/security/token/access", "Basic " + refresh, timeout=quick))
                self.assertFalse(isinstance(r, Exception), r)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertLess(took, SICK_BOUND)
                self.assertTrue(self.valid(b, token))
            # ...then 503.
            last_200 = None
            while True:
                r = b.validate(token)
                now = time.monotonic() - stopped_at
                if r.status_code == 200:
                    last_200 = now
                else:
                    self.assertEqual(r.status_code, 503, r.text)
                    self.assertEqual(r.json()["iw_code"], "IW10002")
                    break
                self.assertLess(now, staleness + 5, "validations still answered past --max-staleness")
                time.sleep(0.05)
            print("validations answered until %.2f s, 503 from %.2f s (--max-staleness %d)" % (last_200 or 0, now, staleness))
            self.assertIsNotNone(last_200)
            self.assertGreater(now, staleness - 1.5, "503 before --max-staleness")
            r, took = timed(lambda: a.request("GET", "/v3/security/token/access", "Basic " + refresh, timeout=quick))
            self.assert_503_within(r, took, "a refresh exchange past --max-staleness")
        finally:
            PG.resume()
        resumed = time.monotonic()
        for api in (a, b):
            wait_until(lambda: api.validate(token).status_code == 200, timeout=30, what="recovery after SIGCONT")
        print("recovered %.2f s after SIGCONT" % (time.monotonic() - resumed))
        wait_until(lambda: a.authenticate("stall@example.com", PASSWORD).status_code == 200, timeout=15,
                   what="a login after recovery")
        self.assertEqual(b.revoke(spare).status_code, 200)
        # Seen on the other replica (under ASan its follower can take a
        # moment longer to show it is caught up again: a 503 meanwhile is
        # fail-closed, not a wrong answer).
        def revoked_on_a():
            r = a.validate(spare)
            if r.status_code == 503:
                self.assertEqual(r.json()["iw_code"], "IW10002")
                return False
            self.assertEqual(r.status_code, 200, r.text)
            return not r.json()["result"]["is_valid"]
        wait_until(revoked_on_a, what="a revocation after recovery")

    def hold_commits(self):
        """Every COMMIT that writes waits for a synchronous standby that never
        comes. Returns once that is in force: pg_reload_conf() only signals,
        and the checkpointer turns the setting on a moment later (a COMMIT in
        between is not held). A probe of our own, a write, must be seen
        waiting; it is then terminated."""
        PG.sql("ALTER SYSTEM SET synchronous_standby_names = 'iwsec_no_such_standby'")
        PG.sql("SELECT pg_reload_conf()")
        self.addCleanup(self.release_commits)
        probe = [None]

        def probe_held():
            if probe[0] is None or probe[0].poll() is not None:  # done without waiting: not yet in force
                probe[0] = subprocess.Popen(
                    [pg_cluster.psql_path(), "-X", "-q", "-d", PG.conninfo() + " application_name=iwsec_probe",
                     "-c", "CREATE TEMP TABLE iwsec_probe ()"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return PG.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'iwsec_probe' "
                          "AND wait_event = 'SyncRep'")
        try:
            pid = wait_until(probe_held, what="synchronous_standby_names in force")
            PG.sql("SELECT pg_terminate_backend(%s)" % pid)
        finally:
            if probe[0].poll() is None:
                probe[0].kill()  # the client; its backend was terminated, or its wait ends with release_commits
            probe[0].wait(timeout=60)

    def release_commits(self):
        PG.sql("ALTER SYSTEM RESET synchronous_standby_names")
        PG.sql("SELECT pg_reload_conf()")

    def held_commit_pid(self):
        return PG.sql("SELECT pid FROM pg_stat_activity WHERE datname = '%s' AND wait_event = 'SyncRep' "
                      "AND application_name = 'iwsec'" % self.db)

    def test_commit_whose_connection_is_lost_reports_its_outcome(self):
        (a,) = self.start_replicas(1)
        self.add_user("commit@example.com", apis=(a,))
        token = a.token_by_password(self, "commit@example.com", PASSWORD)
        self.hold_commits()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(lambda: timed(lambda: a.revoke(token)))
            pid = wait_until(self.held_commit_pid, what="the revocation's COMMIT to wait")
            # The COMMIT was sent and has committed locally; its connection goes before the answer.
            PG.sql("SELECT pg_terminate_backend(%s)" % pid)
            r, took = answer.result(timeout=60)
        self.assertFalse(isinstance(r, Exception), r)
        self.assertEqual(r.status_code, 200, "a committed revocation reported as %d: %s" % (r.status_code, r.text))
        self.release_commits()
        self.assertEqual(PG.sql("SELECT count(*) FROM iwsec_revocations", self.db), "1")
        self.assertFalse(self.valid(a, token))

    def test_commit_answered_after_the_deadline_is_reported_done(self):
        (a,) = self.start_replicas(1)
        self.add_user("slow@example.com", apis=(a,))
        token = a.token_by_password(self, "slow@example.com", PASSWORD)
        self.hold_commits()
        hold = 3.0  # longer than a request's deadline: the answer must wait for COMMIT's outcome
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            began = time.monotonic()
            answer = pool.submit(lambda: timed(lambda: a.revoke(token)))
            wait_until(self.held_commit_pid, what="the revocation's COMMIT to wait")
            time.sleep(max(0.0, hold - (time.monotonic() - began)))  # the hold itself is what is tested
            self.assertFalse(answer.done(), "answered before COMMIT's outcome was known")
            self.release_commits()
            r, took = answer.result(timeout=60)
        self.assertFalse(isinstance(r, Exception), r)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(PG.sql("SELECT count(*) FROM iwsec_revocations", self.db), "1")
        self.assertFalse(self.valid(a, token))

    def test_no_503_after_a_database_restart(self):
        apis = self.start_replicas(2)
        self.add_user("restart@example.com", apis=apis)
        token = apis[0].token_by_password(self, "restart@example.com", PASSWORD)

        def logins(count):
            def login(i):
                api = h.Api(apis[i % 2].base_url)
                try:
                    return api.authenticate("restart@example.com", PASSWORD).status_code
                finally:
                    api.close()
            with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
                return list(pool.map(login, range(count)))

        self.assertEqual(set(logins(40)), {200})  # every pooled connection opened
        PG.restart()
        for api in apis:
            wait_until(lambda: api.validate(token).status_code == 200, timeout=30, what="recovery after the restart")
        codes = logins(40)
        self.assertEqual(codes.count(503), 0, codes)
        self.assertEqual(set(codes), {200}, codes)

    def test_malformed_connection_strings_are_never_echoed(self):
        cases = [
            ("postgresql://iwsec:Hunter2%%zz@127.0.0.1:%d/%s" % (PG.port, self.db), "password"),
            ("host=127.0.0.1 port=%d user=postgres password=Hunter 2 dbname=%s" % (PG.port, self.db), "quote"),
        ]
        for conninfo, part in cases:
            for argv in ([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--postgres", conninfo,
                          "--secret-file", self.secret, "--no-access-log"],
                         [h.admin_path(), "--postgres", conninfo, "list-users"]):
                r = h.run_program(argv, timeout=30)
                out = r.stdout + r.stderr
                self.assertIn(r.returncode, (1, 2), out)
                self.assertNotIn("Hunter", out)
                self.assertNotIn("%zz", out)
                self.assertIn(part, out.lower(), "the message must name the malformed part: " + out)


class Import(ClusterCase):
    def test_import_a_data_directory(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, "imp@example.com", PASSWORD)
        single = h.start_server(self, data)
        api = h.Api(single.base_url)
        self.addCleanup(api.close)
        self.assertEqual(api.revoke(api.token_by_password(self, "imp@example.com", PASSWORD)).status_code, 200)
        api.close()
        single.stop()

        (replica,) = self.start_replicas(1)
        r = self.admin("import", "--data-dir", data, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"users": 1, "revocations": 1})
        # The running replica reloads; no one logs in again. (The key file
        # differs: the single-node server used its own signing.key.)
        wait_until(lambda: replica.access_token(refresh).status_code == 200, what="the imported refresh token")
        self.assertEqual(replica.authenticate("imp@example.com", PASSWORD).status_code, 200)
        # A second import refuses and changes nothing.
        state = "SELECT (SELECT count(*) FROM iwsec_users), (SELECT max(seq) FROM iwsec_changes)"
        before = PG.sql(state, self.db)
        r = self.admin("import", "--data-dir", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)
        self.assertEqual(PG.sql(state, self.db), before)

    def test_imported_revocations_stay_revoked(self):
        data = h.data_dir(self)
        h.add_user(self, data, "rev@example.com", PASSWORD)
        # The single-node server signs with the cluster's key file here, so its tokens verify on the replicas.
        single = h.start_server(self, data, "--secret-file", self.secret)
        api = h.Api(single.base_url)
        self.addCleanup(api.close)
        revoked = api.token_by_password(self, "rev@example.com", PASSWORD)
        kept = api.token_by_password(self, "rev@example.com", PASSWORD)
        self.assertEqual(api.revoke(revoked).status_code, 200)
        api.close()
        single.stop()
        r = self.admin("import", "--data-dir", data)
        self.assertEqual(r.returncode, 0, r.stderr)
        (replica,) = self.start_replicas(1)
        self.assertFalse(self.valid(replica, revoked))
        self.assertTrue(self.valid(replica, kept))



class ClusterRules(ClusterCase):
    """Single-node rules that cluster mode must keep (issue 16, items 1 and 2)."""

    def test_revocations_are_capped_per_user_in_the_database(self):
        # Two replicas: the cap is counted in the database, not per process.
        a, b = apis = self.start_replicas(2, "--max-revocations-per-user", "20")
        refresh = self.add_user("flood@example.com", apis=apis)
        user_id = json.loads(self.admin("show-user", "flood@example.com", "--json").stdout)["user_id"]
        kept = a.token_by_refresh(self, refresh)
        for i in range(60):
            api = apis[i % 2]
            r = api.revoke(api.token_by_refresh(self, refresh))
            self.assertEqual(r.status_code, 200, r.text)
        rows = int(PG.sql("SELECT count(*) FROM iwsec_revocations", self.db))
        self.assertLessEqual(rows, 20, "one user's revocations must stay within the cap")
        owned = int(PG.sql("SELECT count(*) FROM iwsec_revocations WHERE owner = '%s'" % user_id, self.db))
        self.assertEqual(owned, rows)
        generation = json.loads(self.admin("show-user", "flood@example.com", "--json").stdout)["refresh_generation"]
        self.assertGreaterEqual(generation, 1, "past the cap the user's access tokens end (a generation bump)")
        self.assert_everywhere(apis, lambda api: not self.valid(api, kept), "the kept token ended")
        # The refresh token keeps working.
        self.assertTrue(self.valid(b, b.token_by_refresh(self, refresh)))

    def test_imported_revocations_keep_their_owner(self):
        data = h.temp_dir(self)
        r = h.run_program([h.admin_path(), "--data-dir", data, "add-user", "imp@example.com", "--json",
                           "--pbkdf2-rounds", str(h.FAST_ROUNDS)], stdin=PASSWORD + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        user_id = json.loads(r.stdout)["user_id"]
        exp = int(time.time()) + 3600
        with open(os.path.join(data, "revocations.journal"), "w") as f:
            f.write("11111111-1111-4111-8111-111111111111 %d %s\n" % (exp, user_id))
            f.write("22222222-2222-4222-8222-222222222222 %d\n" % exp)
        r = self.admin("import", "--data-dir", data, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(PG.sql("SELECT coalesce(owner, '-') FROM iwsec_revocations ORDER BY jti", self.db).split(),
                         [user_id, "-"])

    def scrape_lockouts(self, admin_url):
        text = h.session().get(admin_url + "/metrics", timeout=h.HTTP_TIMEOUT).text
        for line in text.splitlines():
            if line.startswith("iwsec_lockouts_total "):
                return float(line.split()[1])
        raise AssertionError("no iwsec_lockouts_total in /metrics")

    def test_each_lock_is_reported_once_by_the_replica_that_set_it(self):
        apis = self.start_replicas(3, "--admin-port", "0", "--lockout-failures", "3",
                                   "--lockout-client-failures", "100000")
        admin_urls = []
        for api in apis:
            line = api.server.wait_for_log(lambda l: l.startswith("admin listening on "))
            self.assertIsNotNone(line)
            admin_urls.append(line[len("admin listening on "):])
        emails = ["locked%d@example.com" % i for i in range(4)]
        for email in emails:
            self.add_user(email, apis=apis)
        barrier = threading.Barrier(24)

        def guess(i):
            api = h.Api(apis[i % 3].base_url)
            try:
                barrier.wait(timeout=30)
                return api.authenticate(emails[i % 4], "wrong %d" % i).status_code
            finally:
                api.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
            codes = list(pool.map(guess, range(24)))
        self.assertEqual(codes.count(406), 12, codes)  # 3 checks per account, then locked
        for email in emails:
            self.assertEqual(apis[0].authenticate(email, PASSWORD).status_code, 429)
        self.assertEqual(sum(self.scrape_lockouts(u) for u in admin_urls), len(emails))
        # Options::on_lockout fired once per lock (the server logs each event;
        # its access log reaches stdout through the log's writer thread, so
        # wait for every replica's lines, bounded).
        deadline = time.monotonic() + 10
        while True:
            logged = [l for api in apis for l in api.server.log_lines() if " lockout account=" in l]
            if len(logged) >= len(emails) or time.monotonic() >= deadline:
                break
            apis[0].server.wait_for_log(lambda l: False, timeout=0.1)  # the writer flushes within a second
        self.assertEqual(sorted(l.split("account=")[1].split()[0] for l in logged), sorted(emails))


class AdminOutputIsTheSameInBothModes(ClusterCase):
    """iwsec-admin show-user and unlock print the same shape on a data
    directory and on the cluster database (issue 16, item 10)."""

    RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"

    def locked_outputs(self, admin, api):
        self.assertEqual(api.authenticate("shown@example.com", "wrong").status_code, 406)
        self.assertEqual(api.authenticate("shown@example.com", PASSWORD).status_code, 429)
        shown = admin("show-user", "shown@example.com", "--json")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        text = admin("show-user", "shown@example.com")
        self.assertEqual(text.returncode, 0, text.stderr)
        unlocked = admin("unlock", "shown@example.com", "--json")
        self.assertEqual(unlocked.returncode, 0, unlocked.stderr)
        unlocked_text = admin("unlock", "shown@example.com")
        self.assertEqual(unlocked_text.returncode, 0, unlocked_text.stderr)
        return json.loads(shown.stdout), text.stdout, json.loads(unlocked.stdout), unlocked_text.stdout

    def shape(self, outputs):
        import re
        shown, text, unlocked, unlocked_text = outputs
        self.assertTrue(shown["locked"], shown)
        self.assertRegex(shown["locked_until"], self.RFC3339)
        labels = [line.split(":", 1)[0] for line in text.splitlines()]
        locked_line = [line for line in text.splitlines() if line.startswith("locked:")][0]
        self.assertRegex(locked_line.split("until ", 1)[1], self.RFC3339)
        return (sorted(shown), {k: type(v).__name__ for k, v in shown.items()}, labels, sorted(unlocked),
                unlocked["was_locked"], re.sub(r"\S+@\S+", "EMAIL", unlocked_text))

    def test_show_user_and_unlock_print_the_same_shape(self):
        data = h.temp_dir(self)
        r = h.run_program([h.admin_path(), "--data-dir", data, "add-user", "shown@example.com",
                           "--pbkdf2-rounds", str(h.FAST_ROUNDS)], stdin=PASSWORD + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        server = h.Server([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir", data,
                           "--pbkdf2-rounds", str(h.FAST_ROUNDS), "--no-access-log", "--lockout-failures", "1"])
        self.addCleanup(server.force_stop)
        server.wait_listening()
        single = h.Api(server.base_url)
        self.addCleanup(single.close)

        def data_admin(*args):
            return h.run_program([h.admin_path(), "--data-dir", data] + list(args))

        on_disk = self.shape(self.locked_outputs(data_admin, single))

        replica, = self.start_replicas(1, "--lockout-failures", "1")
        self.add_user("shown@example.com", apis=[replica])
        in_cluster = self.shape(self.locked_outputs(self.admin, replica))
        self.assertEqual(on_disk, in_cluster)

if __name__ == "__main__":
    unittest.main()
