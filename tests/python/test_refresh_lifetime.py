"""Refresh-token lifetime (docs/operations.md): iwsec-server
--refresh-token-lifetime SECONDS; a refresh token expires that long after it
was issued (add-user, set-password, rotation, rotate-refresh-token); an
expired one answers 406 like an unknown one and counts as a lockout failure;
a rotation issues one with a fresh lifetime. show-user shows
refresh_token_issued_at (and refresh_token_expires_at given the lifetime);
list-users --expiring-within lists what expires soon. A token from before the
upgrade (no issue time) starts its clock when the upgraded program first
loads it, and that start is kept across restarts. Runs on a data directory
and, with IWSEC_TEST_POSTGRES=1, in cluster mode."""

import datetime
import json
import os
import time
import unittest

import iwsec_harness as h

PASSWORD = "lifetime password"
EMAIL = "ada@example.com"


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class RefreshTokenLifetime(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)

    def start(self, *flags):
        server = h.start_server(self, self.data, "--no-access-log", *flags)
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        return server, api

    def show(self, *extra, email=EMAIL):
        r = h.admin(self.data, "show-user", email, "--json", *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def wait_until(self, epoch):
        # Time has to pass for a lifetime to end: wait for the wall clock.
        while time.time() < epoch:
            time.sleep(min(0.2, max(0.0, epoch - time.time())))

    def test_expires_after_lifetime_and_counts_as_failure(self):
        h.add_user(self, self.data, "bob@example.com", PASSWORD)
        issued_before = int(time.time())
        _, token = h.add_user(self, self.data, EMAIL, PASSWORD)
        # 5 s (at least 4: issue times are whole seconds): starting the
        # server and the first exchange fit in it even on a loaded machine.
        server, api = self.start("--refresh-token-lifetime", "5", "--lockout-client-failures", "2",
                                 "--lockout-client-window", "600")
        api.token_by_refresh(self, token)  # fresh: works
        doc = self.show("--refresh-token-lifetime", "5")
        issued = parse_time(doc["refresh_token_issued_at"])
        self.assertGreaterEqual(issued, issued_before)
        self.assertLessEqual(issued, time.time())
        self.assertEqual(parse_time(doc["refresh_token_expires_at"]), issued + 5)
        self.wait_until(issued + 5)
        r = api.access_token(token)
        h.assert_envelope(self, r, 406)  # like an unknown one
        unknown = api.access_token("x" * 43)
        h.assert_envelope(self, unknown, 406)
        self.assertEqual(r.json(), unknown.json())
        # Two failures from this client: blocked, even for a good token now.
        r = api.rotate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 429, r.text)

    def test_rotation_issues_a_fresh_lifetime(self):
        _, token = h.add_user(self, self.data, EMAIL, PASSWORD)
        server, api = self.start("--refresh-token-lifetime", "5")
        issued = parse_time(self.show()["refresh_token_issued_at"])
        self.wait_until(issued + 3)
        r = api.rotate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200, r.text)
        fresh = r.json()["refresh_token"]
        rotated_at = parse_time(self.show()["refresh_token_issued_at"])
        self.assertGreaterEqual(rotated_at, issued + 3)
        # The first lifetime is over; the new one runs to rotated_at + 5, at
        # least 3 s after this.
        self.wait_until(issued + 5)
        api.token_by_refresh(self, fresh)
        h.assert_envelope(self, api.access_token(token), 406)
        # rotate-refresh-token and set-password restart the clock too.
        for command, stdin in (("rotate-refresh-token", None), ("set-password", PASSWORD + "\n")):
            before = int(time.time())
            r = h.admin(self.data, command, EMAIL, "--json", stdin=stdin)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertGreaterEqual(parse_time(self.show()["refresh_token_issued_at"]), before)
            api.token_by_refresh(self, json.loads(r.stdout)["refresh_token"])

    def test_default_never_expires_and_show_user_without_lifetime(self):
        _, token = h.add_user(self, self.data, EMAIL, PASSWORD)
        doc = self.show()
        self.assertIn("refresh_token_issued_at", doc)
        self.assertNotIn("refresh_token_expires_at", doc)
        text = h.admin(self.data, "show-user", EMAIL, "--refresh-token-lifetime", "60")
        self.assertEqual(text.returncode, 0, text.stderr)
        fields = h.parse_fields(text.stdout)
        self.assertEqual(parse_time(fields["refresh_token_expires_at"]),
                         parse_time(fields["refresh_token_issued_at"]) + 60)
        h.assert_no_secret(self, token, text.stdout, "show-user")
        server, api = self.start()
        api.token_by_refresh(self, token)

    def test_list_users_expiring_within(self):
        h.add_user(self, self.data, EMAIL, PASSWORD)
        h.add_user(self, self.data, "bob@example.com", PASSWORD)

        def expiring(within, lifetime):
            r = h.admin(self.data, "list-users", "--json", "--expiring-within", str(within),
                        "--refresh-token-lifetime", str(lifetime))
            self.assertEqual(r.returncode, 0, r.stderr)
            return sorted(u["email"] for u in json.loads(r.stdout))

        self.assertEqual(expiring(60, 3600), [])
        self.assertEqual(expiring(7200, 3600), ["ada@example.com", "bob@example.com"])
        issued = parse_time(self.show()["refresh_token_issued_at"])
        self.wait_until(issued + 2)
        r = h.admin(self.data, "rotate-refresh-token", "bob@example.com")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Lifetime 3601: ada's token expires ~2 s before bob's. Within the
        # window that reaches ada's expiry and not bob's, only ada.
        now = time.time()
        within = int(issued + 3601 - now) + 1
        self.assertEqual(expiring(within, 3601), ["ada@example.com"])
        # Text output names the user and the expiry.
        r = h.admin(self.data, "list-users", "--expiring-within", str(within), "--refresh-token-lifetime", "3601")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ada@example.com", r.stdout)
        self.assertNotIn("bob@example.com", r.stdout)
        # --expiring-within needs the lifetime.
        r = h.admin(self.data, "list-users", "--expiring-within", "60")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        # Lifetime 0 is the server's default (tokens never expire): accepted,
        # and no token expires however wide the window.
        self.assertEqual(expiring(100 * 366 * 24 * 3600, 0), [])
        r = h.admin(self.data, "show-user", EMAIL, "--json", "--refresh-token-lifetime", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("refresh_token_expires_at", json.loads(r.stdout))

    @unittest.skipIf(h.CLUSTER_MODE, "edits users.json, which cluster mode has not")
    def test_pre_upgrade_token_clock_starts_at_first_load_and_is_kept(self):
        _, token = h.add_user(self, self.data, EMAIL, PASSWORD)
        path = os.path.join(self.data, "users.json")
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for u in doc["users"]:
            u.pop("refresh_token_issued_at", None)  # as an earlier version wrote it
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        self.wait_until(int(time.time()) + 1)
        first_load = int(time.time())
        server, api = self.start("--refresh-token-lifetime", "5")
        loaded = parse_time(self.show()["refresh_token_issued_at"])
        self.assertGreaterEqual(loaded, first_load)
        api.token_by_refresh(self, token)
        server.stop()
        # A restart does not restart the clock: the first load's time was
        # kept, so the token expires at loaded + 5 (a clock restarted at
        # loaded + 2 or later would keep it working until loaded + 7).
        self.wait_until(loaded + 2)
        server, api = self.start("--refresh-token-lifetime", "5")
        self.assertEqual(parse_time(self.show()["refresh_token_issued_at"]), loaded)
        self.wait_until(loaded + 5)
        h.assert_envelope(self, api.access_token(token), 406)

    @unittest.skipUnless(h.CLUSTER_MODE, "a database made by schema version 1")
    def test_pre_upgrade_database_clock_starts_at_migration(self):
        _, token = h.add_user(self, self.data, EMAIL, PASSWORD)
        pg = h._cluster["pg"]
        db = h._cluster["databases"][os.path.abspath(self.data)]
        # Back to what schema version 1 held: no issue times, no audit table.
        pg.sql("ALTER TABLE iwsec_users DROP COLUMN refresh_token_issued_at; DROP TABLE iwsec_audit; "
               "UPDATE iwsec_schema SET version = 1", dbname=db)
        self.wait_until(int(time.time()) + 1)
        first_load = int(time.time())
        server, api = self.start("--refresh-token-lifetime", "5")  # migrates to version 4
        loaded = parse_time(self.show()["refresh_token_issued_at"])
        self.assertGreaterEqual(loaded, first_load)
        api.token_by_refresh(self, token)
        self.assertEqual(pg.sql("SELECT max(version) FROM iwsec_schema", dbname=db).strip(), "4")
        self.wait_until(loaded + 5)
        h.assert_envelope(self, api.access_token(token), 406)

    def test_bad_flags(self):
        r = h.run_program([h.server_path(), "--refresh-token-lifetime", "-1"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--refresh-token-lifetime", r.stderr)


if __name__ == "__main__":
    unittest.main()
