"""iwsec-server's access log (docs/operations.md): every line starts with an
RFC 3339 UTC timestamp and holds the client address, a request id (sent back
as X-Request-Id: a sane incoming one is kept, anything else replaced),
method, path (never the query), status and duration; `--access-log json`
writes one JSON object per line; a validation that answered is_valid:false
says so and why; an account that gets locked is logged; no password or
token ever appears."""

import datetime
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import unittest

import iwsec_harness as h
import test_metrics

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

    def test_client_text_is_percent_escaped_so_no_line_can_be_forged(self):
        # httplib decodes the path: a %0A would end the line and start a
        # forged one; a quote or backslash would end a JSON string.
        for form in ("text", "json"):
            with self.subTest(form=form):
                self.start("--access-log", form)
                r = self.api.request("GET", "/a%0Ab%22c%5Cd%25e%7F", headers={"X-Request-Id": "escape-" + form})
                self.assertEqual(r.status_code, 404)
                line = self.line_with("escape-" + form)
                path = json.loads(line)["path"] if form == "json" else TEXT_LINE.match(line).group(5)
                self.assertEqual(path, "/a%0Ab%22c%5Cd%25e%7F")
                self.api.close()
                self.assertEqual(self.server.stop(), 0)

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


class AccessLogFile(unittest.TestCase):
    """--access-log-file FILE (docs/operations.md): lines are buffered and
    written by one writer thread, every line whole; all of them reach the
    file before the server exits on SIGTERM; SIGHUP and SIGUSR1 reopen the
    file (logrotate renames it, then signals); lines the buffer cannot hold
    while the file does not take them are dropped whole and counted in
    iwsec_access_log_dropped_lines_total."""

    def start(self, *flags):
        self.data = h.data_dir(self)
        self.dir = h.temp_dir(self)
        self.path = os.path.join(self.dir, "access.log")
        self.server = h.start_server(self, self.data, "--access-log-file", self.path, *flags)
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)

    def request(self, request_id):
        r = self.api.request("GET", "/v3/security/token/validate", "Bearer x.y.z",
                             headers={"X-Request-Id": request_id})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers.get("X-Request-Id"), request_id)

    def read_lines(self, path):
        with open(path, "rb") as f:
            data = f.read()
        self.assertTrue(data == b"" or data.endswith(b"\n"), "a partial last line in %s" % path)
        return data.decode().splitlines()

    def wait_for_line(self, path, request_id):
        """Waits (bounded) until a line with @p request_id is in @p path."""
        deadline = time.monotonic() + h.HTTP_TIMEOUT
        while time.monotonic() < deadline:
            if os.path.exists(path) and any((" %s " % request_id) in l for l in self.read_lines(path)):
                return
            time.sleep(0.02)
        self.fail("no line with %s in %s" % (request_id, path))

    def wait_for_file(self, path):
        deadline = time.monotonic() + h.HTTP_TIMEOUT
        while not os.path.exists(path):
            self.assertLess(time.monotonic(), deadline, "%s was not created again" % path)
            time.sleep(0.02)

    def test_every_line_whole_and_flushed_on_sigterm(self):
        self.start()
        ids = ["flush-%d" % i for i in range(300)]
        for i in ids:
            self.request(i)
        self.assertEqual(self.server.stop(signal.SIGTERM), 0)
        lines = self.read_lines(self.path)
        self.assertEqual(len(lines), len(ids), lines[-5:])
        seen = []
        for l in lines:
            m = TEXT_LINE.match(l)
            self.assertIsNotNone(m, l)
            self.assertEqual(m.group(5), "/v3/security/token/validate")
            self.assertEqual(m.group(8), " is_valid=false reason=malformed")
            seen.append(m.group(3))
        self.assertEqual(sorted(seen), sorted(ids))
        self.assertEqual(self.server.log_lines(), [], "request lines go to the file, not stdout")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode) & 0o077, 0, "the log is not world-readable")

    def test_json_lines_to_a_file_flushed_on_sigint(self):
        self.start("--access-log", "json")
        for i in range(50):
            self.request("json-%d" % i)
        self.assertEqual(self.server.stop(signal.SIGINT), 0)
        docs = [json.loads(l) for l in self.read_lines(self.path)]
        self.assertEqual(sorted(d["request_id"] for d in docs), sorted("json-%d" % i for i in range(50)))

    def test_sighup_and_sigusr1_reopen_the_file_after_a_rename(self):
        self.start()
        self.request("before-rotation")
        self.wait_for_line(self.path, "before-rotation")
        for n, sig in ((1, signal.SIGHUP), (2, signal.SIGUSR1)):
            rotated = "%s.%d" % (self.path, n)
            os.rename(self.path, rotated)
            self.request("renamed-%d" % n)  # still written to the renamed file
            self.server.proc.send_signal(sig)
            self.wait_for_file(self.path)
            self.request("after-%d" % n)
            self.wait_for_line(self.path, "after-%d" % n)
            self.wait_for_line(rotated, "renamed-%d" % n)
            self.assertFalse(any(" after-%d " % n in l for l in self.read_lines(rotated)))
            self.assertIsNone(self.server.proc.poll(), "signal %d stopped the server" % sig)
        # SIGHUP still reloads the signing keys as well.
        # (said before the reopened file got its line; drained from the pipe on the harness's thread)
        self.assertIn("signing keys reloaded", self.server.wait_for_stderr(lambda t: "signing keys reloaded" in t))
        self.assertEqual(self.server.stop(signal.SIGTERM), 0)
        everything = self.read_lines(self.path + ".1") + self.read_lines(self.path + ".2") + self.read_lines(self.path)
        for l in everything:
            self.assertIsNotNone(TEXT_LINE.match(l), l)
        self.assertEqual(len(everything), 5)

    def test_lines_dropped_when_the_file_takes_nothing_are_counted(self):
        # A FIFO that this test opens but does not read: once the pipe and a
        # 4 KiB buffer are full the writer is stuck in write(), and requests
        # must still be answered; their lines are dropped whole and counted.
        self.data = h.data_dir(self)
        self.dir = h.temp_dir(self)
        fifo = os.path.join(self.dir, "access.fifo")
        os.mkfifo(fifo, 0o600)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        self.server, admin_url = test_metrics.start_with_admin_port(
            self, self.data, "--access-log-file", fifo, "--access-log-buffer", "4096")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)
        http = h.session()
        self.addCleanup(http.close)

        def dropped():
            r = http.get(admin_url + "/metrics", timeout=h.HTTP_TIMEOUT)
            self.assertEqual(r.status_code, 200)
            self.assertIn("# TYPE iwsec_access_log_dropped_lines_total counter\n", r.text)
            return test_metrics.parse_metrics(r.text)[("iwsec_access_log_dropped_lines_total", ())]

        self.assertEqual(dropped(), 0)
        sent = 0
        while dropped() == 0:
            self.assertLess(sent, 20000, "no line was dropped")
            for _ in range(100):
                self.request("drop-%d" % sent)
                sent += 1
        # Read everything now: the writer gets going again, the next line arrives whole.
        os.set_blocking(reader, True)
        received = bytearray()
        done = threading.Event()

        def drain():
            while True:
                chunk = os.read(reader, 65536)
                if not chunk:
                    break
                received.extend(chunk)
                if b" last-one " in received:
                    done.set()
            done.set()

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        # Until the writer has taken the full buffer, a new line is still
        # dropped (and counted): ask again, bounded, until one arrives.
        for _ in range(int(h.HTTP_TIMEOUT)):
            self.request("last-one")
            sent += 1
            if done.wait(1.0):
                break
        self.assertTrue(done.is_set(), "the writer did not resume")
        lost = dropped()
        self.assertEqual(self.server.stop(signal.SIGTERM), 0)
        t.join(h.HTTP_TIMEOUT)
        self.assertTrue(received.endswith(b"\n"))
        lines = received.decode().splitlines()
        for l in lines:
            self.assertIsNotNone(TEXT_LINE.match(l), l)
        self.assertGreater(lost, 0)
        self.assertEqual(len(lines) + lost, sent, "every request is either written whole or counted")

    def test_drop_counter_on_metrics_passes_promtool(self):
        self.data = h.data_dir(self)
        server, admin_url = test_metrics.start_with_admin_port(self, self.data)
        http = h.session()
        self.addCleanup(http.close)
        text = http.get(admin_url + "/metrics", timeout=h.HTTP_TIMEOUT).text
        self.assertEqual(test_metrics.parse_metrics(text)[("iwsec_access_log_dropped_lines_total", ())], 0)
        promtool = shutil.which("promtool")
        if promtool is None:
            self.fail("promtool not found (apt-get install prometheus)")
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=h.PROGRAM_TIMEOUT)
        self.assertEqual(check.returncode, 0, "promtool check metrics: " + check.stdout.decode())
        server.stop()

    def test_unwritable_log_file_stops_the_start(self):
        data = h.data_dir(self)
        missing = os.path.join(h.temp_dir(self), "no", "such", "dir", "access.log")
        with self.assertRaises(h.ServerError) as caught:
            h.start_server(self, data, "--access-log-file", missing)
        self.assertIn(missing, str(caught.exception))


if __name__ == "__main__":
    unittest.main()
