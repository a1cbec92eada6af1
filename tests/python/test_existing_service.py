"""existing_service, the embedding example, mounts everything iwsec-server
offers but its edge, through the library's public API alone
(examples/existing_service.cpp; docs/integration.md): an access log with
request ids, metrics and health on an admin port, the audit trail in
DATA/audit.log, locks that `iwsec-admin show-user` sees and `iwsec-admin
unlock` lifts in the running process, and revocations that outlive a
restart. With IWSEC_TEST_POSTGRES=1 nothing here runs (the data directory's
files are what is asserted); its cluster mode is covered by
test_infoworks_client and by test_cluster_signing_keys (--key-encryption-key)."""

import json
import os
import re
import unittest

import iwsec_harness as h

EMAIL = "host@example.com"
PASSWORD = "host password"
ADMIN_LINE = "admin listening on "


def start(test, data, *extra):
    service = h.start_existing_service(test, data, *extra)
    return service, h.Api(service.base_url)


@unittest.skipIf(h.CLUSTER_MODE, "asserts the data directory's files")
class ExistingServiceOffersWhatTheServerOffers(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        h.add_user(self, self.data, EMAIL, PASSWORD)

    def test_access_log_line_per_request_with_the_request_id(self):
        service, api = start(self, self.data)
        self.addCleanup(api.close)
        r = api.request("GET", "/health", headers={"X-Request-Id": "host-req-1"})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers.get("X-Request-Id"), "host-req-1")
        line = service.wait_for_log(lambda l: " host-req-1 " in l)
        self.assertIsNotNone(line, service.log_lines())
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z 127\.0\.0\.1 host-req-1 GET /health 200 \d+us$")
        # A token check's outcome, never the token.
        token = api.token_by_password(self, EMAIL, PASSWORD)
        r = api.validate(token)
        rid = r.headers.get("X-Request-Id")
        self.assertRegex(rid or "", r"^[0-9a-f]{32}$")
        line = service.wait_for_log(lambda l: (" %s " % rid) in l)
        self.assertIsNotNone(line, service.log_lines())
        self.assertTrue(line.endswith(" is_valid=true"), line)
        self.assertNotIn(token, "\n".join(service.log_lines()))
        self.assertEqual(service.stop(), 0)

    def test_metrics_and_health_on_the_admin_port(self):
        service, api = start(self, self.data, "--admin-port", "0")
        self.addCleanup(api.close)
        line = service.wait_for_log(lambda l: l.startswith(ADMIN_LINE))
        self.assertIsNotNone(line, service.log_lines())
        admin_url = line[len(ADMIN_LINE):]
        self.assertRegex(admin_url, r"^http://127\.0\.0\.1:\d+$")
        api.token_by_password(self, EMAIL, PASSWORD)
        admin = h.Api(admin_url)
        self.addCleanup(admin.close)
        metrics = admin.request("GET", "/metrics")
        self.assertEqual(metrics.status_code, 200)
        self.assertTrue(metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        logins = re.search(r'^iwsec_logins_total\{result="success"\} (\d+)$', metrics.text, re.M)
        self.assertIsNotNone(logins, metrics.text[:2000])
        self.assertEqual(int(logins.group(1)), 1)
        self.assertIn("iwsec_access_log_dropped_lines_total 0", metrics.text)
        live = admin.request("GET", "/health/live")
        self.assertEqual((live.status_code, live.json()), (200, {"status": "live"}))
        ready = admin.request("GET", "/health/ready")
        self.assertEqual((ready.status_code, ready.json()), (200, {"status": "ready"}))
        # Never on the public port.
        self.assertEqual(api.request("GET", "/metrics").status_code, 404)
        self.assertEqual(service.stop(), 0)

    def test_audit_trail_in_the_data_directory(self):
        service, api = start(self, self.data)
        self.addCleanup(api.close)
        r = api.authenticate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200)
        rid = r.headers["X-Request-Id"]
        self.assertEqual(api.authenticate(EMAIL, "wrong " + PASSWORD).status_code, 406)
        self.assertEqual(service.stop(), 0)  # every audit line in the file by exit
        path = os.path.join(self.data, "audit.log")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn(PASSWORD, text)
        events = [json.loads(l) for l in text.splitlines()]
        logins = [e for e in events if e["event"] == "login"]
        self.assertEqual([e["result"] for e in logins], ["success", "failure"], events)
        self.assertEqual(logins[0]["email"], EMAIL)
        self.assertEqual(logins[0]["request_id"], rid)
        self.assertEqual(logins[1]["reason"], "bad_credentials")
        # iwsec-admin reads the same trail.
        r = h.admin(self.data, "audit", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([e["event"] for e in json.loads(r.stdout)].count("login"), 2)

    def test_unlock_lifts_a_lock_in_the_running_process(self):
        service, api = start(self, self.data)
        self.addCleanup(api.close)
        # The default policy locks after 30 failures.
        for _ in range(30):
            self.assertEqual(api.authenticate(EMAIL, "wrong").status_code, 406)
        locked = api.authenticate(EMAIL, PASSWORD)
        self.assertEqual(locked.status_code, 429)
        self.assertIsNotNone(service.wait_for_log(lambda l: " lockout account=" in l), service.log_lines())
        shown = h.admin(self.data, "show-user", EMAIL, "--json")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertTrue(json.loads(shown.stdout)["locked_until"], shown.stdout)
        r = h.admin(self.data, "unlock", EMAIL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 200)
        self.assertEqual(service.stop(), 0)

    def test_revocations_outlive_a_restart(self):
        service, api = start(self, self.data)
        token = api.token_by_password(self, EMAIL, PASSWORD)
        self.assertEqual(api.revoke(token).status_code, 200)
        api.close()
        self.assertEqual(service.stop(), 0)
        self.assertEqual(len(h.revocations(self.data)), 1)
        service, api = start(self, self.data)
        self.addCleanup(api.close)
        self.assertFalse(api.is_valid(self, token))
        self.assertEqual(service.stop(), 0)


if __name__ == "__main__":
    unittest.main()
