"""Brute-force lockout of iwsec-server over real HTTP (docs/lockout.md):
with its defaults, 30 failed logins lock an account, known or not, and even
the right password then gets 429 with Retry-After and the IW10031 envelope;
a client address with too many failures is throttled; the --lockout-* flags
tune it, --no-lockout turns it off, --lockout-client-header names the client
behind a proxy."""

import unittest

import iwsec_harness as h

PASSWORD = "lockout password"


class Lockout(unittest.TestCase):
    def start(self, *flags, users=("victim@example.com",)):
        data = h.data_dir(self)
        for email in users:
            h.add_user(self, data, email, PASSWORD)
        server = h.start_server(self, data, "--no-access-log", *flags)
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        return api

    def assert_locked(self, r, longest):
        body = h.assert_envelope(self, r, 429, "IW10031")
        self.assertEqual(body["message"], "Security Client Errors")
        retry_after = r.headers.get("Retry-After", "")
        self.assertRegex(retry_after, r"^[1-9][0-9]*$")
        self.assertLessEqual(int(retry_after), longest)
        self.assertEqual(r.headers.get("Cache-Control"), "no-store")
        return body

    def test_thirty_failures_lock_known_and_unknown_accounts_alike(self):
        api = self.start("--lockout-client-failures", "1000")
        bodies = {}
        for email in ("victim@example.com", "nobody@example.com"):
            for _ in range(29):
                h.assert_envelope(self, api.authenticate(email, "wrong"), 406, "IW10031")
            if email == "victim@example.com":
                # 29 failures: the right password still works (and resets the count) ...
                api.token_by_password(self, email, PASSWORD)
                for _ in range(29):
                    h.assert_envelope(self, api.authenticate(email, "wrong"), 406, "IW10031")
            # ... the 30th failure is still a 406, then the account is locked.
            h.assert_envelope(self, api.authenticate(email, "wrong"), 406, "IW10031")
            right = api.authenticate(email, PASSWORD)
            bodies[email] = self.assert_locked(right, 60)
            h.assert_no_secret(self, PASSWORD, right.text, "password")
            self.assert_locked(api.authenticate(email.upper(), "wrong"), 60)  # case-insensitive
            self.assert_locked(api.rotate(email, PASSWORD), 60)
        self.assertEqual(bodies["victim@example.com"], bodies["nobody@example.com"])

    def test_a_client_with_too_many_failures_is_throttled(self):
        api = self.start("--lockout-client-failures", "5", "--lockout-client-window", "600")
        for i in range(5):
            h.assert_envelope(self, api.authenticate("guess%d@example.com" % i, "wrong"), 406, "IW10031")
        self.assert_locked(api.authenticate("victim@example.com", PASSWORD), 600)
        self.assert_locked(api.access_token("some-refresh-token"), 600)

    def test_refresh_token_failures_count_per_client(self):
        api = self.start("--lockout-client-failures", "3")
        for i in range(3):
            h.assert_envelope(self, api.access_token("not-a-refresh-token-%d" % i), 406, "IW10031")
        self.assert_locked(api.access_token("not-a-refresh-token"), 900)

    def test_client_header_names_the_client_behind_a_proxy(self):
        api = self.start("--lockout-client-failures", "3", "--lockout-client-header", "X-Forwarded-For")

        def login(email, password, forwarded):
            return api.request("GET", "/v3/security/authenticate", h.basic(email, password),
                               headers={"X-Forwarded-For": forwarded})

        for i in range(3):
            r = login("guess%d@example.com" % i, "wrong", "203.0.113.9, 198.51.100.1")
            h.assert_envelope(self, r, 406, "IW10031")
        # The last hop the proxy appended is the client; another address is not throttled.
        self.assert_locked(login("victim@example.com", PASSWORD, "198.51.100.1"), 900)
        self.assert_locked(login("victim@example.com", PASSWORD, "10.9.9.9,198.51.100.1"), 900)
        self.assertEqual(login("victim@example.com", PASSWORD, "198.51.100.2").status_code, 200)

    def test_no_lockout_never_answers_429(self):
        api = self.start("--no-lockout")
        for _ in range(40):
            h.assert_envelope(self, api.authenticate("victim@example.com", "wrong"), 406, "IW10031")
        api.token_by_password(self, "victim@example.com", PASSWORD)

    def test_tuned_account_policy(self):
        api = self.start("--lockout-failures", "2", "--lockout-wait", "7", "--lockout-max-wait", "20")
        for _ in range(2):
            h.assert_envelope(self, api.authenticate("victim@example.com", "wrong"), 406, "IW10031")
        self.assert_locked(api.authenticate("victim@example.com", PASSWORD), 7)


if __name__ == "__main__":
    unittest.main()
