"""iwsec-server --admin-port (docs/operations.md): /metrics is Prometheus text
that Debian's real `promtool check metrics` accepts, its counters and
histograms move with the traffic sent, /health/live and /health/ready answer
JSON (ready: 503, with the reason, while the users file cannot be read), and none of it is
served on the public port."""

import json
import os
import re
import shutil
import subprocess
import unittest

import iwsec_harness as h

PASSWORD = "metrics password"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def parse_metrics(text):
    """{(name, ((label, value), ...)): float} of every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(2) or "")))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def start_with_admin_port(test, data, *flags):
    server = h.start_server(test, data, "--admin-port", "0", *flags)
    line = server.wait_for_log(lambda l: l.startswith("admin listening on "))
    test.assertIsNotNone(line, "no 'admin listening on' line; stdout: %r" % server.log_lines())
    return server, line[len("admin listening on "):]


class Metrics(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        _, self.refresh_token = h.add_user(self, self.data, "ada@example.com", PASSWORD)
        h.add_user(self, self.data, "bob@example.com", PASSWORD)
        self.server, self.admin_url = start_with_admin_port(
            self, self.data, "--lockout-failures", "3", "--lockout-client-failures", "1000")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)
        self.http = h.session()
        self.addCleanup(self.http.close)

    def scrape(self):
        r = self.http.get(self.admin_url + "/metrics", timeout=h.HTTP_TIMEOUT)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return r.text

    def test_promtool_accepts_the_metrics_and_the_counters_follow_the_traffic(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.fail("promtool not found (apt-get install prometheus)")
        before = parse_metrics(self.scrape())
        for name in ("iwsec_logins_total", "iwsec_token_exchanges_total"):
            for result in ("success", "failure", "locked"):
                self.assertEqual(before[(name, (("result", result),))], 0)

        token = self.api.token_by_password(self, "ada@example.com", PASSWORD)    # login success
        h.assert_envelope(self, self.api.authenticate("ada@example.com", "wrong"), 406)   # failure
        second = self.api.token_by_refresh(self, self.refresh_token)              # exchange success
        h.assert_envelope(self, self.api.access_token("not-a-refresh-token"), 406)  # exchange failure
        self.assertTrue(self.api.is_valid(self, token))
        self.assertTrue(self.api.is_valid(self, token))
        self.assertEqual(self.api.revoke(second).status_code, 200)
        self.assertFalse(self.api.is_valid(self, second))
        for _ in range(3):                                                        # 3 failures: bob locked
            h.assert_envelope(self, self.api.authenticate("bob@example.com", "wrong"), 406)
        h.assert_envelope(self, self.api.authenticate("bob@example.com", PASSWORD), 429)  # locked
        h.assert_envelope(self, self.api.rotate("bob@example.com", PASSWORD), 429)        # locked

        text = self.scrape()
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=h.PROGRAM_TIMEOUT)
        self.assertEqual(check.returncode, 0, "promtool check metrics: " + check.stdout.decode())
        m = parse_metrics(text)

        def value(name, **labels):
            return m[(name, tuple(sorted(labels.items())))]

        self.assertEqual(value("iwsec_logins_total", result="success"), 1)
        self.assertEqual(value("iwsec_logins_total", result="failure"), 4)
        self.assertEqual(value("iwsec_logins_total", result="locked"), 2)
        self.assertEqual(value("iwsec_token_exchanges_total", result="success"), 1)
        self.assertEqual(value("iwsec_token_exchanges_total", result="failure"), 1)
        self.assertEqual(value("iwsec_token_exchanges_total", result="locked"), 0)
        self.assertEqual(value("iwsec_validations_total", result="valid"), 2)
        self.assertEqual(value("iwsec_validations_total", result="invalid"), 1)
        self.assertEqual(value("iwsec_revocations_total"), 1)
        self.assertEqual(value("iwsec_lockouts_total"), 1)
        counts = {"authenticate": 6, "token_access": 2, "token_validate": 3, "token_revoke": 1, "token_refresh": 1}
        for route, n in counts.items():
            self.assertEqual(value("iwsec_request_duration_seconds_count", route=route), n, route)
            self.assertEqual(value("iwsec_request_duration_seconds_bucket", route=route, le="+Inf"), n, route)
            self.assertGreater(value("iwsec_request_duration_seconds_sum", route=route), 0, route)
        # Buckets are cumulative.
        buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in m.items()
                         if name == "iwsec_request_duration_seconds_bucket" and dict(labels)["route"] == "token_validate")
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))

    def test_health_endpoints(self):
        live = self.http.get(self.admin_url + "/health/live", timeout=h.HTTP_TIMEOUT)
        self.assertEqual(live.status_code, 200)
        self.assertEqual(live.json()["status"], "live")
        ready = self.http.get(self.admin_url + "/health/ready", timeout=h.HTTP_TIMEOUT)
        self.assertEqual(ready.status_code, 200, ready.text)
        self.assertEqual(ready.json()["status"], "ready")
        self.assertTrue(ready.headers.get("Content-Type", "").startswith("application/json"))

        # A users file that cannot be read: not ready, and says why (live stays 200).
        users = os.path.join(self.data, "users.json")
        os.rename(users, users + ".away")
        ready = self.http.get(self.admin_url + "/health/ready", timeout=h.HTTP_TIMEOUT)
        self.assertEqual(ready.status_code, 503, ready.text)
        doc = ready.json()
        self.assertEqual(doc["status"], "not ready")
        self.assertIn("users.json", doc["reason"])
        self.assertIn("No such file or directory", doc["reason"])
        self.assertEqual(ready.headers.get("Retry-After"), "1")
        self.assertEqual(self.http.get(self.admin_url + "/health/live", timeout=h.HTTP_TIMEOUT).status_code, 200)
        os.rename(users + ".away", users)
        ready = self.http.get(self.admin_url + "/health/ready", timeout=h.HTTP_TIMEOUT)
        self.assertEqual(ready.status_code, 200, ready.text)

    def test_nothing_of_it_on_the_public_port(self):
        for path in ("/metrics", "/health/live", "/health/ready"):
            r = self.api.request("GET", path)
            self.assertEqual(r.status_code, 404, path)
            self.assertNotIn("iwsec_", r.text)
        # and the API is not on the admin port
        r = self.http.get(self.admin_url + "/v3/security/token/validate", headers={"Authorization": "Bearer x"},
                          timeout=h.HTTP_TIMEOUT)
        self.assertEqual(r.status_code, 404)


class AdminPortFlags(unittest.TestCase):
    def test_off_by_default_and_loopback_by_default(self):
        data = h.data_dir(self)
        server = h.start_server(self, data)
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        api.request("GET", "/metrics")
        self.assertIsNotNone(server.wait_for_log(lambda l: "/metrics" in l))
        self.assertFalse(any(l.startswith("admin listening on ") for l in server.log_lines()))
        server2, url = start_with_admin_port(self, h.data_dir(self))
        self.assertTrue(url.startswith("http://127.0.0.1:"), url)

    def test_bad_admin_port_is_a_usage_error(self):
        r = h.run_program([h.server_path(), "--admin-port", "70000"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--admin-port", r.stderr)


if __name__ == "__main__":
    unittest.main()
