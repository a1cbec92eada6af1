"""iwsec-server at the edge (docs/edge.md), with its defaults:
bodies of any size and framing, header floods, a request smuggled in a GET
body, slow clients trickling bytes, connections per client address, the
descriptor limit, and --lockout-client-header in the forms proxies write.
Memory is read from /proc/<pid>/status. Every client is on 127.0.0.0/8
(127.0.0.2.. stand in for other machines), every wait is bounded."""

import resource
import socket
import threading
import time
import unittest

import iwsec_harness as h

MIB = 1024 * 1024
VALIDATE = "/v3/security/token/validate"


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def connect(port, source="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_until_closed(s, deadline):
    """Everything the server sends until it closes (True) or the deadline (False)."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk


def read_answer(s, deadline):
    """One whole answer (head and Content-Length body), or what came by the deadline."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            length = 0
            for line in data[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(data) >= end + 4 + length:
                return data
        left = deadline - time.monotonic()
        if left <= 0:
            return data
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (socket.timeout, OSError):
            return data
        if not chunk:
            return data
        data += chunk


def send_all_tolerant(s, data):
    """Sends as much of @p data as the server takes before it closes."""
    view = memoryview(data)
    try:
        while view:
            n = s.send(view)
            view = view[n:]
        return True
    except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
        return False


class Edge(unittest.TestCase):
    def start(self, *flags, preexec=None):
        data = h.data_dir(self)
        self.user = "edge@example.com"
        self.password = "edge password"
        h.add_user(self, data, self.user, self.password)
        server = h.start_server(self, data, "--no-access-log", *flags)
        self.port = int(server.base_url.rsplit(":", 1)[1])
        self.pid = server.proc.pid
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        return server, api

    def request_head(self, method, path, extra=""):
        return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (method, path, extra)).encode()

    def flood(self, payloads, connections):
        """Sends every payload on its own connection, @p connections at once."""
        def one(payload):
            try:
                s = connect(self.port)
            except OSError:
                return
            try:
                send_all_tolerant(s, payload)
                read_until_closed(s, time.monotonic() + 5)
            finally:
                s.close()
        threads = [threading.Thread(target=one, args=(p,)) for p in payloads[:connections]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    def assert_memory_bound(self, baseline):
        peak = proc_status(self.pid, "VmHWM")
        self.assertLess(peak - baseline, 64 * MIB,
                        "server peak memory grew by %.1f MiB" % ((peak - baseline) / MIB))

    def test_bodies_of_any_framing_on_64_connections_stay_within_64_mib(self):
        server, api = self.start()
        api.validate("x.y.z")
        baseline = proc_status(self.pid, "VmHWM")
        size = 4 * MIB
        chunk = b"%x\r\n" % (64 * 1024) + b"a" * (64 * 1024) + b"\r\n"
        chunked = chunk * (size // (64 * 1024)) + b"0\r\n\r\n"
        framings = [
            self.request_head("DELETE", "/v3/security/token/access", "Content-Length: %d\r\n" % size) + b"b" * size,
            self.request_head("DELETE", "/v3/security/token/refresh", "Transfer-Encoding: chunked\r\n") + chunked,
            self.request_head("POST", VALIDATE, "Transfer-Encoding: chunked\r\n") + chunked,
            self.request_head("POST", "/v3/security/authenticate") + b"c" * size,
            self.request_head("GET", VALIDATE, "Content-Length: %d\r\n" % size) + b"d" * size,
            self.request_head("PUT", "/nowhere", "Content-Length: %d\r\n" % size) + b"e" * size,
        ]
        self.flood([framings[i % len(framings)] for i in range(64)], 64)
        self.assert_memory_bound(baseline)
        self.assertTrue(api.is_valid(self, api.token_by_password(self, self.user, self.password)))

    def test_a_body_is_refused_in_the_envelope_and_the_connection_closed(self):
        self.start()
        smuggled = self.request_head("GET", "/v3/security/authenticate",
                                     "Authorization: %s\r\n" % h.basic(self.user, self.password))
        for head in (self.request_head("GET", VALIDATE, "Content-Length: %d\r\n" % len(smuggled)),
                     self.request_head("HEAD", VALIDATE, "Content-Length: %d\r\n" % len(smuggled)),
                     self.request_head("GET", "/nowhere", "Content-Length: %d\r\n" % len(smuggled))):
            s = connect(self.port)
            try:
                s.sendall(head + smuggled)
                data, closed = read_until_closed(s, time.monotonic() + 5)
            finally:
                s.close()
            self.assertTrue(closed, "connection left open after a body")
            self.assertEqual(data.count(b"HTTP/1.1 "), 1, data[:300])
            self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data[:300])
            self.assertIn(b"Connection: close", data)
            self.assertNotIn(b"authentication_token", data)
            if not head.startswith(b"HEAD"):
                self.assertIn(b'"iw_code":"IW10006"', data)

    def test_header_floods_get_431_and_close_within_the_memory_bound(self):
        server, api = self.start()
        api.validate("x.y.z")
        baseline = proc_status(self.pid, "VmHWM")
        many_lines = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 90) for i in range(40000))
        long_lines = b"".join(b"X-Long-%d: %s\r\n" % (i, b"w" * 8000) for i in range(500))
        payloads = [(self.request_head("GET", VALIDATE)[:-2] + (many_lines if i % 2 else long_lines) + b"\r\n")
                    for i in range(16)]
        self.flood(payloads, 16)
        self.assert_memory_bound(baseline)
        # One flood, read back: 431 in the envelope, then the end of the connection.
        s = connect(self.port)
        try:
            send_all_tolerant(s, payloads[1])
            data, closed = read_until_closed(s, time.monotonic() + 5)
        finally:
            s.close()
        self.assertTrue(closed)
        self.assertTrue(data.startswith(b"HTTP/1.1 431 ") or data.startswith(b"HTTP/1.1 400 "), data[:200])
        # 100 header lines are still fine.
        ok = self.request_head("GET", VALIDATE, "".join("X-Fine-%d: 1\r\n" % i for i in range(97)))
        s = connect(self.port)
        try:
            s.sendall(ok)
            data = read_answer(s, time.monotonic() + 2)
        finally:
            s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 401 "), data[:200])

    def test_200_trickling_connections_do_not_stop_another_client(self):
        server, api = self.start()
        slow = []
        refused = 0
        head = self.request_head("GET", VALIDATE, "Authorization: Bearer x.y.z\r\n")
        try:
            for _ in range(200):
                s = connect(self.port, source="127.0.0.2")
                s.setblocking(False)
                slow.append(s)
            # Every slow client sends one byte a second, for three seconds.
            for second in range(3):
                started = time.monotonic()
                for s in slow:
                    try:
                        s.send(head[second:second + 1])
                    except OSError:
                        pass
                if second == 1:
                    other = h.Api("http://127.0.0.1:%d" % self.port)
                    self.addCleanup(other.close)
                    t0 = time.monotonic()
                    s2 = connect(self.port, source="127.0.0.3", timeout=5)
                    try:
                        s2.sendall(head)
                        data = read_answer(s2, t0 + 2)
                    finally:
                        s2.close()
                    answered = time.monotonic() - t0
                    self.assertTrue(data.startswith(b"HTTP/1.1 200 "), "no answer within 2 s: %r" % data[:100])
                    self.assertLess(answered, 2.0)
                left = 1.0 - (time.monotonic() - started)
                if left > 0:
                    time.sleep(left)  # the attack's own pace: one byte a second, not a wait for the server
            # Past the cap of 128, connections from 127.0.0.2 were answered 503 and closed.
            for s in slow:
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    refused += 1
                    continue
                if chunk.startswith(b"HTTP/1.1 503 ") or not chunk:
                    refused += 1
        finally:
            for s in slow:
                s.close()
        self.assertEqual(refused, 200 - 128)

    def test_the_descriptor_limit_is_raised_to_the_hard_limit(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard <= 256:
            self.skipTest("hard descriptor limit too low to tell")
        data = h.data_dir(self)
        old = (soft, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        try:
            server = h.start_server(self, data, "--no-access-log")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)
        with open("/proc/%d/limits" % server.proc.pid) as f:
            line = [l for l in f if l.startswith("Max open files")][0].split()
        self.assertEqual(line[3], line[4], " ".join(line))
        self.assertEqual(int(line[3]), hard)

    def test_lockout_client_header_reads_proxy_forms_and_groups_ipv6(self):
        server, api = self.start("--lockout-client-header", "X-Forwarded-For", "--lockout-client-failures", "3")
        def login(forwarded):
            return api.request("GET", "/v3/security/authenticate", h.basic("x@example.com", "wrong"),
                               headers={"X-Forwarded-For": forwarded})
        for value in ("[2001:db8::1]:443", "2001:db8::2", "10.0.0.1, [2001:db8::3]:80"):
            h.assert_envelope(self, login(value), 406, "IW10031")
        self.assertEqual(login("[2001:db8::ffff]:1").status_code, 429)  # same /64
        h.assert_envelope(self, login("[2001:db8:0:1::1]:443"), 406, "IW10031")  # another /64
        for value in ("fe80::1%eth0", "fe80::2%eth1", "[fe80::3%eth0]:8080"):
            h.assert_envelope(self, login(value), 406, "IW10031")
        self.assertEqual(login("fe80::4").status_code, 429)
        for value in ("192.0.2.7:1000", "192.0.2.7:2000", "192.0.2.7"):
            h.assert_envelope(self, login(value), 406, "IW10031")
        self.assertEqual(login("192.0.2.7:3000").status_code, 429)


if __name__ == "__main__":
    unittest.main()
