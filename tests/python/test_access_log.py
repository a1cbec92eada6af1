"""iwsec-server's access log (SPEC "Operations"): every line starts with an
RFC 3339 UTC timestamp and holds the client address, a request id (sent back
as X-Request-Id: a sane incoming one is kept, anything else replaced),
method, path (never the query), status and duration; `--access-log json`
writes one JSON object per line; a validation that answered is_valid:false
says so and why; an account that gets locked is logged; no password or
token ever appears."""

import datetime
import json
import re
import unittest

import iwsec_harness as h

PASSWORD = "access log password"
TEXT_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) ([A-Za-z0-9._:-]{1,64}) ([A-Z]+) (\S+) (\d{3}) (\d+)us(.*)$")


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


class AccessLog(unittest.TestCase):
    def start(self, *flags):
        self.data = h.data_dir(self)
        _, self.refresh_token = h.add_user(self, self.data, "ada@example.com", PASSWORD)
        self.server = h.start_server(self, self.data, "--lockout-failures", "2", *flags)
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)

    def line_with(self, request_id):
        line = self.server.wait_for_log(lambda l: request_id in l)
        self.assertIsNotNone(line, "no log line with request id %s; log: %r" % (request_id, self.server.log_lines()))
        return line

    def traffic(self):
        """Requests whose secrets must never be logged; returns them."""
        token = self.api.token_by_password(self, "ada@example.com", PASSWORD)
        revoked = self.api.token_by_refresh(self, self.refresh_token)
        self.assertEqual(self.api.revoke(revoked).status_code, 200)
        self.assertFalse(self.api.is_valid(self, revoked))
        self.assertTrue(self.api.is_valid(self, token))
        # a query string may carry secrets: it is not logged
        self.api.request("GET", "/v3/security/authenticate?service_id=12&secret=" + token,
                         h.basic("ada@example.com", PASSWORD))
        for _ in range(2):
            self.api.authenticate("ada@example.com", "wrong " + PASSWORD)
        self.assertEqual(self.api.authenticate("ada@example.com", PASSWORD).status_code, 429)
        return [PASSWORD, token, revoked, self.refresh_token, "secret="]

    def test_text_lines_and_request_ids(self):
        self.start()
        before = datetime.datetime.now(datetime.timezone.utc)
        r = self.api.request("GET", "/v3/security/token/validate", "Bearer x.y.z",
                             headers={"X-Request-Id": "trace-42.abc:1"})
        self.assertEqual(r.headers.get("X-Request-Id"), "trace-42.abc:1")
        line = self.line_with("trace-42.abc:1")
        m = TEXT_LINE.match(line)
        self.assertIsNotNone(m, line)
        stamp, client, rid, method, path, status, micros, rest = m.groups()
        self.assertLessEqual(abs((parse_time(stamp) - before).total_seconds()), 60)
        self.assertEqual((client, rid, method, path, status), ("127.0.0.1", "trace-42.abc:1", "GET",
                                                               "/v3/security/token/validate", "200"))
        self.assertEqual(rest, " is_valid=false reason=malformed")

        # An unusable incoming id (too long, spaces, control bytes) is replaced by a fresh one.
        ids = set()
        for bad in ("x" * 200, "two words", "new\\nline", ""):
            r = self.api.request("GET", "/nowhere", headers={"X-Request-Id": bad} if bad else {})
            rid = r.headers.get("X-Request-Id", "")
            self.assertRegex(rid, r"^[0-9a-f]{32}$")
            ids.add(rid)
            self.assertEqual(TEXT_LINE.match(self.line_with(rid)).group(6), "404")
        self.assertEqual(len(ids), 4)

        secrets = self.traffic()
        self.assertIsNotNone(self.server.wait_for_log(lambda l: " 429 " in l))
        lines = self.server.log_lines()
        lock_lines = [l for l in lines if " lockout " in l]
        self.assertEqual(len(lock_lines), 1, lines)
        self.assertRegex(lock_lines[0], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z lockout account=ada@example\.com "
                                        r"until=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        requests_lines = [l for l in lines if " lockout " not in l]
        for l in requests_lines:
            self.assertIsNotNone(TEXT_LINE.match(l), l)
        self.assertTrue(any(l.endswith(" is_valid=false reason=revoked") for l in requests_lines), lines)
        self.assertTrue(any(l.endswith(" is_valid=true") for l in requests_lines), lines)
        self.assertTrue(any(" /v3/security/authenticate 200 " in l for l in requests_lines))
        joined = "\n".join(lines) + self.server.stderr_text()
        for secret in secrets:
            h.assert_no_secret(self, secret, joined, "a credential in the access log")

    def test_json_lines(self):
        self.start("--access-log", "json")
        secrets = self.traffic()
        r = self.api.request("GET", "/v3/security/token/validate", "Bearer not-a-token",
                             headers={"X-Request-Id": "json-1"})
        self.assertEqual(r.headers.get("X-Request-Id"), "json-1")
        self.line_with("json-1")
        docs = [json.loads(l) for l in self.server.log_lines()]
        requests_docs = [d for d in docs if "event" not in d]
        for d in requests_docs:
            self.assertEqual(set(d) - {"is_valid", "reason"},
                             {"time", "client", "request_id", "method", "path", "status", "duration_us"}, d)
            parse_time(d["time"])
            self.assertIsInstance(d["status"], int)
            self.assertIsInstance(d["duration_us"], int)
            self.assertEqual(d["client"], "127.0.0.1")
        last = [d for d in requests_docs if d["request_id"] == "json-1"][0]
        self.assertEqual((last["method"], last["path"], last["status"], last["is_valid"], last["reason"]),
                         ("GET", "/v3/security/token/validate", 200, False, "malformed"))
        self.assertTrue(any(d.get("reason") == "revoked" for d in requests_docs))
        self.assertTrue(any(d.get("is_valid") is True and "reason" not in d for d in requests_docs))
        events = [d for d in docs if d.get("event") == "lockout"]
        self.assertEqual(len(events), 1, docs)
        self.assertEqual((events[0]["kind"], events[0]["subject"]), ("account", "ada@example.com"))
        parse_time(events[0]["time"])
        datetime.datetime.strptime(events[0]["until"], "%Y-%m-%dT%H:%M:%SZ")
        joined = "\n".join(self.server.log_lines())
        for secret in secrets:
            h.assert_no_secret(self, secret, joined, "a credential in the access log")

    def test_lock_lines_even_without_access_log(self):
        self.start("--no-access-log")
        for _ in range(2):
            self.api.authenticate("ada@example.com", "wrong")
        line = self.server.wait_for_log(lambda l: " lockout " in l)
        self.assertIsNotNone(line)
        self.assertIn("account=ada@example.com", line)
        self.assertEqual(self.server.log_lines(), [line])

    def test_bad_access_log_format_is_a_usage_error(self):
        r = h.run_program([h.server_path(), "--access-log", "xml"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--access-log", r.stderr)


if __name__ == "__main__":
    unittest.main()
