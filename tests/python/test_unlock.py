"""iwsec-admin show-user and unlock against a running iwsec-server (docs/programs.md, "Accounts and sessions"): lock an account over HTTP,
show-user says it is locked and until when, unlock clears it on the running
server, and the right password logs in on the very next request. show-user
never prints a secret."""

import datetime
import json
import time
import unittest

import iwsec_harness as h

PASSWORD = "unlock password"
EMAIL = "ada@example.com"


class ShowUserAndUnlock(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        self.user_id, self.refresh_token = h.add_user(self, self.data, EMAIL, PASSWORD)
        h.add_user(self, self.data, "bob@example.com", PASSWORD)

    def start(self, *flags):
        server = h.start_server(self, self.data, "--no-access-log", "--lockout-failures", "3",
                                "--lockout-wait", "600", "--lockout-max-wait", "600", *flags)
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        return server, api

    def show(self, email=EMAIL):
        r = h.admin(self.data, "show-user", email, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        for secret in (PASSWORD, self.refresh_token, "pbkdf2"):
            h.assert_no_secret(self, secret, r.stdout + r.stderr, "show-user output")
        return json.loads(r.stdout)

    def lock(self, api, email=EMAIL):
        for _ in range(3):
            h.assert_envelope(self, api.authenticate(email, "wrong"), 406)
        h.assert_envelope(self, api.authenticate(email, PASSWORD), 429)

    def test_unlock_applies_on_the_trailing_slash_spelling_too(self):
        # docs/endpoints.md: one trailing slash is the same route, also for
        # applying iwsec-admin's unlocks before a password check.
        server, api = self.start()
        for _ in range(2):
            h.assert_envelope(self, api.request("GET", "/v3/security/authenticate/", h.basic(EMAIL, "wrong")), 406)
        h.assert_envelope(self, api.authenticate(EMAIL, "wrong"), 406)  # both spellings count as one route
        for path in ("/v3/security/authenticate/", "/v3/security/authenticate"):
            h.assert_envelope(self, api.request("GET", path, h.basic(EMAIL, PASSWORD)), 429)
        self.assertTrue(self.show()["locked"])
        for path, method in (("/v3/security/authenticate/", "GET"), ("/v3/security/token/refresh/", "DELETE")):
            with self.subTest(path):
                if not self.show()["locked"]:
                    self.lock(api)
                r = h.admin(self.data, "unlock", EMAIL, "--json")
                self.assertEqual(r.returncode, 0, r.stderr)
                # At once: the very next request, on the slash spelling.
                r = api.request(method, path, h.basic(EMAIL, PASSWORD))
                self.assertEqual(r.status_code, 200, r.text[:300])
                self.assertFalse(self.show()["locked"])
        api.close()
        self.assertEqual(server.stop(), 0)

    def test_show_user_lock_unlock_login(self):
        server, api = self.start()
        doc = self.show()
        self.assertEqual(doc, {"user_id": self.user_id, "email": EMAIL, "disabled": False,
                               "refresh_generation": doc["refresh_generation"], "locked": False,
                               "locked_until": None,
                               # issue 17: show-user also says when the refresh token was issued
                               "refresh_token_issued_at": doc["refresh_token_issued_at"]})
        self.assertRegex(doc["refresh_token_issued_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIsInstance(doc["refresh_generation"], int)

        before = datetime.datetime.now(datetime.timezone.utc)
        self.lock(api)
        doc = self.show()
        self.assertTrue(doc["locked"], doc)
        until = datetime.datetime.strptime(doc["locked_until"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
        self.assertLessEqual(abs((until - before).total_seconds() - 600), 60)
        self.assertFalse(self.show("bob@example.com")["locked"])  # only that account

        text = h.admin(self.data, "show-user", EMAIL)
        self.assertEqual(text.returncode, 0, text.stderr)
        fields = h.parse_fields(text.stdout)
        self.assertEqual(fields["email"], EMAIL)
        self.assertEqual(fields["user_id"], self.user_id)
        self.assertEqual(fields["locked"], "until " + doc["locked_until"])

        r = h.admin(self.data, "unlock", EMAIL.upper(), "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"email": EMAIL, "unlocked": True, "was_locked": True})
        # At once: the very next request, no retry.
        api.token_by_password(self, EMAIL, PASSWORD)
        self.assertFalse(self.show()["locked"])
        # The failure count was cleared too: 2 failures do not lock again.
        for _ in range(2):
            h.assert_envelope(self, api.authenticate(EMAIL, "wrong"), 406)
        api.token_by_password(self, EMAIL, PASSWORD)
        # And a new lock after the unlock is a real lock again.
        self.lock(api)
        self.assertTrue(self.show()["locked"])

    def test_unlock_applies_to_a_token_refresh_too_and_a_second_unlock_is_harmless(self):
        server, api = self.start()
        self.lock(api)
        self.assertEqual(h.admin(self.data, "unlock", EMAIL).returncode, 0)
        r = h.admin(self.data, "unlock", EMAIL, "--json")
        self.assertEqual(json.loads(r.stdout)["was_locked"], False)
        self.assertEqual(api.rotate(EMAIL, PASSWORD).status_code, 200)

    def test_a_restarted_server_forgets_locks_and_show_user_agrees(self):
        server, api = self.start()
        self.lock(api)
        self.assertTrue(self.show()["locked"])
        api.close()
        self.assertEqual(server.stop(), 0)
        self.assertFalse(self.show()["locked"])
        server, api = self.start()
        self.assertFalse(self.show()["locked"])
        api.token_by_password(self, EMAIL, PASSWORD)

    def test_unknown_user_and_usage(self):
        r = h.admin(self.data, "show-user", "nobody@example.com")
        self.assertEqual(r.returncode, 1)
        self.assertIn("nobody@example.com", r.stderr)
        r = h.admin(self.data, "show-user")
        self.assertEqual(r.returncode, 2)

    def test_unlock_of_an_email_no_user_has_lifts_its_lock_before_add_user(self):
        # The server locks an unknown email as it locks an account (a lock
        # must not tell who exists); unlock must reach it, as in cluster
        # mode, or the lock would outlive an add-user of that email.
        server, api = self.start()
        newcomer = "newcomer@example.com"
        self.lock(api, newcomer)
        r = h.admin(self.data, "unlock", newcomer, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"email": newcomer, "unlocked": True, "was_locked": True})
        r = h.admin(self.data, "unlock", newcomer, "--json")  # again: harmless, nothing locked
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(json.loads(r.stdout)["was_locked"])
        h.add_user(self, self.data, newcomer, PASSWORD)
        api.token_by_password(self, newcomer, PASSWORD)


if __name__ == "__main__":
    unittest.main()
