"""Cluster mode, refresh-token exchanges (docs/cluster.md):
a successful exchange makes no database round trip (the replica checks the
client's lock state from its local copy); failed exchanges are still counted
in the database and lead to 429 on every replica.

Round trips are counted by PostgreSQL itself: the test's throwaway server logs
every statement (log_statement = all) with its database and application name,
and the replica's pooled connections are application "iwsec" (its listener is
"iwsec-listener"). A statement is logged when it starts, so every statement of
an exchange is in the log before the exchange's answer arrives.

Skips only when the PostgreSQL server binaries are not installed.
"""

import os
import unittest

import iwsec_harness as h
import pg_cluster
from test_cluster import ClusterCase, wait_until
import test_cluster

PG = None


def setUpModule():
    global PG
    test_cluster.setUpModule()
    PG = test_cluster.PG
    PG.sql("ALTER SYSTEM SET log_statement = 'all'")
    PG.sql("ALTER SYSTEM SET log_line_prefix = '[db=%d app=%a] '")
    PG.sql("SELECT pg_reload_conf()")


def tearDownModule():
    test_cluster.tearDownModule()


def statements(db, app="iwsec"):
    """The statements logged so far by application @p app on database @p db."""
    marker = "[db=%s app=%s] " % (db, app)
    with open(os.path.join(PG.root, "server.log"), encoding="utf-8", errors="replace") as f:
        return [line for line in f if line.startswith(marker) and ("statement:" in line or "execute" in line)]


class Exchanges(ClusterCase):
    def test_a_successful_exchange_makes_no_database_round_trip(self):
        (api,) = self.start_replicas(1)
        refresh = self.add_user("roundtrips@example.com", apis=[api])
        # Reload took effect: the replica's own connection statements are logged.
        wait_until(lambda: statements(self.db, "iwsec-listener"), what="statement logging")
        before = len(statements(self.db))
        for _ in range(20):
            r = api.access_token(refresh)
            self.assertEqual(r.status_code, 200, r.text)
        made = statements(self.db)[before:]
        self.assertEqual(made, [], "20 successful exchanges made %d database statements" % len(made))

    def test_failed_exchanges_are_counted_and_lead_to_429_on_every_replica(self):
        a, b = self.start_replicas(2, "--lockout-client-failures", "5", "--lockout-client-window", "600")
        refresh = self.add_user("counted@example.com", apis=[a, b])
        before = len(statements(self.db))
        statuses = []
        for _ in range(5):
            statuses.append(a.access_token("A" * 43).status_code)
        self.assertEqual(statuses, [406] * 5)
        # Each failure reached the database (after the fact).
        self.assertGreaterEqual(len(statements(self.db)) - before, 5)
        self.assertEqual(PG.sql("SELECT max(failures) FROM iwsec_lockout_clients", dbname=self.db), "5")
        # Refused on the replica that counted, at once...
        self.assertEqual(a.access_token("A" * 43).status_code, 429)
        # ... and on the other one within the propagation bound, even with the
        # right refresh token (a client's failures stay after a success).
        wait_until(lambda: b.access_token(refresh).status_code == 429, what="429 on replica B")
        self.assertEqual(b.access_token("B" * 43).status_code, 429)

    def test_a_client_blocked_by_password_guesses_is_refused_exchanges(self):
        a, b = self.start_replicas(2, "--lockout-client-failures", "3", "--lockout-client-window", "600")
        refresh = self.add_user("guessed@example.com", apis=[a, b])
        for i in range(3):
            self.assertEqual(a.authenticate("nobody%d@example.com" % i, "wrong").status_code, 406)
        self.assertEqual(a.authenticate("nobody@example.com", "wrong").status_code, 429)
        wait_until(lambda: b.access_token(refresh).status_code == 429, what="429 on replica B")


if __name__ == "__main__":
    unittest.main()
