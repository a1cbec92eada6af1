"""A bounded load test of iwsec-server: 60 s at 64 keep-alive connections on
127.0.0.1 (iwsec-loadtest), validations mixed with logins and revocations.
It must end with zero errors, zero 5xx answers, and every revoked token
invalid afterwards; every revocation is in the journal when the server has
stopped, and the restarted server still serves.

IWSEC_LOAD_SECONDS and IWSEC_LOAD_CONNECTIONS override the 60 s and 64
connections (e.g. for a quick local run); CI runs the defaults.

The logins all use the right password, so the brute-force lockout (on, with
its defaults) never counts a failure here: a load of successful logins from
one address must never be throttled. Eight users revoke far more than the
per-user cap of outstanding revocations (docs/sessions.md), so
the server runs with a cap above what the test can reach: this test wants
every revocation stored (test_revocation_cap.py tests the cap itself).
"""

import json
import os
import unittest

import iwsec_harness as h

PASSWORD = "load-test password: correct horse"
USERS = ["load%d@example.com" % i for i in range(8)]


def loadtest_path():
    return h.program("IWSEC_LOADTEST")


class LoadTest(unittest.TestCase):
    def test_validations_logins_and_revocations_under_load(self):
        seconds = int(os.environ.get("IWSEC_LOAD_SECONDS", "60"))
        connections = int(os.environ.get("IWSEC_LOAD_CONNECTIONS", "64"))
        data = h.data_dir(self)
        for email in USERS:
            h.add_user(self, data, email, PASSWORD)
        # One worker per open keep-alive connection, and some to spare.
        server = h.start_server(self, data, "--threads", str(connections + 16), "--no-access-log",
                                "--max-revocations-per-user", "100000000")
        port = server.base_url.rsplit(":", 1)[1]
        jtis_file = os.path.join(h.temp_dir(self), "revoked-jtis")
        result = h.run_program([loadtest_path(), "--port", port, "--connections", str(connections),
                                "--seconds", str(seconds), "--revoked-jtis", jtis_file, "--password", PASSWORD] + USERS,
                               timeout=seconds + 240)
        print("iwsec-loadtest:", result.stdout.strip())
        self.assertEqual(result.stderr, "")
        summary = json.loads(result.stdout)
        self.assertEqual(summary["errors"], 0, summary["first_error"])
        self.assertEqual(summary["server_errors_or_no_answer"], 0)
        self.assertEqual(summary["revoked_still_valid"], 0)
        self.assertGreater(summary["revocations"], 0)
        self.assertEqual(summary["revoked_rechecked"], summary["revocations"])
        self.assertEqual(set(summary["by_status"]), {"200"})  # no 429: successful logins are never throttled
        self.assertGreaterEqual(summary["seconds"], seconds)
        self.assertEqual(result.returncode, 0)

        # The server is still healthy, and stops cleanly.
        api = h.Api(server.base_url)
        token = api.token_by_password(self, USERS[0], PASSWORD)
        self.assertTrue(api.is_valid(self, token))
        api.close()
        self.assertEqual(server.stop(), 0)

        # Every acknowledged revocation is stored (journal or database).
        with open(jtis_file) as f:
            revoked = [line.strip() for line in f if line.strip()]
        self.assertEqual(len(revoked), summary["revocations"])
        self.assertEqual(len(set(revoked)), len(revoked))
        stored = {jti for jti, _ in h.revocations(data)}  # the journal, or the cluster database
        self.assertEqual(set(revoked) - stored, set())

        # A restart replays it, and serves again.
        server = h.start_server(self, data, "--no-access-log", "--max-revocations-per-user", "100000000")
        api = h.Api(server.base_url)
        self.assertTrue(api.is_valid(self, api.token_by_password(self, USERS[1], PASSWORD)))
        api.close()
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
