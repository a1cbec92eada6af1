"""What an outside red team found at iwsec-server's edge (docs/edge.md, its last items), each reproduced against the real program:

- a header line made only of CR characters, or a bare LF, must not end the
  headers for the limits while the parser reads on (400 and close);
- the admin listener (--admin-port) has the public listener's limits;
- idle keep-alive connections never starve a new client.

Every client is on 127.0.0.0/8 (127.0.0.2.. stand in for other machines);
every wait is bounded."""

import resource
import selectors
import socket
import threading
import time
import unittest

import iwsec_harness as h
from test_edge import MIB, VALIDATE, connect, proc_status, read_answer, read_until_closed, send_all_tolerant

HEAD = b"GET " + VALIDATE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def header_lines(n):
    return b"".join(b"X-Red-%d: %s\r\n" % (i, b"r" * 20) for i in range(n))


def start(test, *flags):
    data = h.data_dir(test)
    server = h.start_server(test, data, "--no-access-log", *flags)
    return server, int(server.base_url.rsplit(":", 1)[1])


def start_with_admin(test, *flags):
    server, port = start(test, "--admin-port", "0", *flags)
    line = server.wait_for_log(lambda l: l.startswith("admin listening on "))
    test.assertIsNotNone(line, "no 'admin listening on' line: %r" % server.log_lines())
    return server, port, int(line.rsplit(":", 1)[1])


def answer_status(data):
    return data.split(b"\r\n", 1)[0]


class LoneCrOrLf(unittest.TestCase):
    """A header line of only CR characters, or a bare LF, after the request line."""

    def exchange(self, port, payload, seconds=5):
        s = connect(port)
        try:
            send_all_tolerant(s, payload)
            return read_until_closed(s, time.monotonic() + seconds)
        finally:
            s.close()

    def test_5000_header_lines_after_a_lone_cr_or_lf_line_are_refused(self):
        server, port = start(self)
        for odd in (b"\r\r\n", b"\r\r\r\r\n", b"\n"):
            with self.subTest(line=odd):
                data, closed = self.exchange(port, HEAD + odd + header_lines(5000) + b"\r\n")
                self.assertTrue(closed, "connection left open")
                self.assertTrue(data.startswith(b"HTTP/1.1 400 ") or data.startswith(b"HTTP/1.1 431 "),
                                answer_status(data))
                self.assertEqual(data.count(b"HTTP/1.1 "), 1, data[:300])

    def test_a_lone_cr_or_lf_line_gets_400_and_close(self):
        server, port = start(self)
        for odd in (b"\r\r\n", b"\n"):
            with self.subTest(line=odd):
                data, closed = self.exchange(port, HEAD + odd + b"X-After: 1\r\n\r\n")
                self.assertTrue(closed, "connection left open")
                self.assertTrue(data.startswith(b"HTTP/1.1 400 "), answer_status(data))
                self.assertIn(b"Connection: close", data)
        # An ordinary request on the same server is still answered.
        s = connect(port)
        try:
            s.sendall(HEAD + b"Authorization: Bearer x.y.z\r\n\r\n")
            data = read_answer(s, time.monotonic() + 5)
        finally:
            s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), answer_status(data))

    def test_the_header_deadline_holds_after_a_lone_cr_line(self):
        # One header line every 2 s after the odd line: the 10 s header
        # deadline (or the 400) ends the connection.
        server, port = start(self)
        s = connect(port)
        t0 = time.monotonic()
        closed = False
        try:
            s.sendall(HEAD + b"\r\r\n")
            i = 0
            while time.monotonic() - t0 < 14:
                try:
                    s.sendall(b"X-Slow-%d: 1\r\n" % i)
                except OSError:
                    closed = True
                    break
                i += 1
                s.settimeout(2.0)  # the attack's own pace: a line every 2 s
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                _, closed = read_until_closed(s, time.monotonic() + 2)
                break
        finally:
            s.close()
        self.assertTrue(closed, "connection still open after %.1f s" % (time.monotonic() - t0))
        self.assertLess(time.monotonic() - t0, 13)


class AdminListener(unittest.TestCase):
    """--admin-port gets the public listener's limits."""

    def test_trickling_clients_do_not_stop_health_live(self):
        server, port, admin = start_with_admin(self)
        slow = [connect(admin) for _ in range(2)]
        try:
            for s in slow:
                s.sendall(b"GET /health/live HTTP/1.1\r\n")
            # One header byte a second on each, while another client asks.
            for second in range(3):
                started = time.monotonic()
                for s in slow:
                    try:
                        s.send(b"X")
                    except OSError:
                        pass
                if second == 1:
                    t0 = time.monotonic()
                    c = connect(admin, timeout=5)
                    try:
                        c.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        data = read_answer(c, t0 + 2)
                    finally:
                        c.close()
                    self.assertTrue(data.startswith(b"HTTP/1.1 200 "), "no answer within 2 s: %r" % data[:100])
                    self.assertLess(time.monotonic() - t0, 2.0)
                left = 1.0 - (time.monotonic() - started)
                if left > 0:
                    time.sleep(left)  # the attack's own pace, not a wait for the server
        finally:
            for s in slow:
                s.close()

    def test_a_chunked_body_is_refused_within_the_memory_bound(self):
        server, port, admin = start_with_admin(self)
        pid = server.proc.pid
        baseline = proc_status(pid, "VmHWM")
        chunk = b"%x\r\n" % (64 * 1024) + b"m" * (64 * 1024) + b"\r\n"
        s = connect(admin)
        try:
            s.sendall(b"POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            sent = 0
            try:
                while sent < 160 * MIB:
                    s.sendall(chunk * 16)
                    sent += 16 * len(chunk)
            except OSError:
                pass
            data, closed = read_until_closed(s, time.monotonic() + 5)
        finally:
            s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 413 ") or data.startswith(b"HTTP/1.1 400 "), answer_status(data))
        self.assertTrue(closed)
        peak = proc_status(pid, "VmHWM")
        self.assertLess(peak - baseline, 64 * MIB, "admin body grew the server by %.1f MiB" % ((peak - baseline) / MIB))
        self.assertLess(sent, 160 * MIB, "the whole body was read")

    def test_header_floods_get_431_and_close(self):
        server, port, admin = start_with_admin(self)
        s = connect(admin)
        try:
            send_all_tolerant(s, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header_lines(5000) + b"\r\n")
            data, closed = read_until_closed(s, time.monotonic() + 5)
        finally:
            s.close()
        self.assertTrue(closed)
        self.assertTrue(data.startswith(b"HTTP/1.1 431 ") or data.startswith(b"HTTP/1.1 400 "), answer_status(data))

    def test_connections_per_client_are_capped(self):
        server, port, admin = start_with_admin(self, "--max-connections-per-client", "4")
        held = [connect(admin, source="127.0.0.2") for _ in range(4)]
        try:
            # One answer on each held connection: the server has counted all
            # four before the fifth arrives (its workers start in any order).
            for s in held:
                s.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                data = read_answer(s, time.monotonic() + 5)
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), answer_status(data))
            extra = connect(admin, source="127.0.0.2")
            try:
                data, closed = read_until_closed(extra, time.monotonic() + 5)
            finally:
                extra.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 503 "), answer_status(data))
            other = connect(admin, source="127.0.0.3")
            try:
                other.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                data = read_answer(other, time.monotonic() + 5)
            finally:
                other.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), answer_status(data))
        finally:
            for s in held:
                s.close()

    def test_non_loopback_admin_host_warns(self):
        # 192.0.2.1 (TEST-NET-1) is on no interface: the admin bind fails, so
        # no socket is ever opened beyond loopback; the warning comes first.
        r = h.run_program([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir", h.data_dir(self),
                           "--admin-port", "0", "--admin-host", "192.0.2.1"])
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.splitlines()
        self.assertGreaterEqual(len(lines), 2, r.stderr)
        self.assertIn("warning", lines[0])
        self.assertIn("--admin-host 192.0.2.1", lines[0])
        self.assertIn("192.0.2.1", lines[-1])

    def test_loopback_admin_host_does_not_warn(self):
        server, port, admin = start_with_admin(self)
        self.assertNotIn("warning", server.stderr_text())


class IdleKeepAlive(unittest.TestCase):
    """8 addresses x 128 keep-alive connections, each asking every ~3 s."""

    ADDRESSES = ["127.0.0.%d" % i for i in range(2, 10)]
    PER_ADDRESS = 128
    REQUEST = HEAD + b"Authorization: Bearer x.y.z\r\n\r\n"

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = len(self.ADDRESSES) * self.PER_ADDRESS + 256
        if hard < need:
            self.skipTest("descriptor hard limit %d < %d" % (hard, need))
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def round_trip(self, sockets, deadline):
        """Sends one request on every open socket, reads every answer; the
        sockets that were answered (the others are closed and dropped)."""
        sel = selectors.DefaultSelector()
        pending = {}
        for s in sockets:
            try:
                s.sendall(self.REQUEST)
            except OSError:
                s.close()
                continue
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
        answered = []
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(s)
                    del pending[s]
                    s.close()
                    continue
                pending[s] += chunk
                data = pending[s]
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    continue
                length = 0
                for line in data[:end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(data) >= end + 4 + length:
                    sel.unregister(s)
                    del pending[s]
                    answered.append(s)
        for s in pending:
            sel.unregister(s)
            s.close()
        sel.close()
        return answered

    def test_1024_idle_keep_alive_connections_do_not_starve_a_new_client(self):
        server, port = start(self)
        sockets = []
        try:
            for source in self.ADDRESSES:
                for _ in range(self.PER_ADDRESS):
                    s = connect(port, source=source)
                    s.setblocking(False)
                    sockets.append(s)
            for s in sockets:
                s.setblocking(True)
                s.settimeout(10)
            # Two rounds, ~3 s apart: every connection has been served and
            # now waits, idle, for its next request.
            sockets = self.round_trip(sockets, time.monotonic() + 30)
            self.assertGreater(len(sockets), 1000, "connections answered in the first round")
            time.sleep(1.0)  # the attackers' own pace: a request every ~3 s (with the round trips)
            sockets = self.round_trip(sockets, time.monotonic() + 30)
            held = len(sockets)
            self.assertGreater(held, 1000, "connections answered in the second round")
            # A client from a ninth address.
            t0 = time.monotonic()
            c = connect(port, source="127.0.0.10", timeout=5)
            try:
                c.sendall(self.REQUEST)
                data = read_answer(c, t0 + 2)
            finally:
                c.close()
            answered = time.monotonic() - t0
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), "no answer within 2 s: %r" % data[:100])
            self.assertLess(answered, 2.0)
            # Keep-alive is not shortened for everyone: only a few idle
            # connections made room, the rest still answer on theirs.
            sockets = self.round_trip(sockets, time.monotonic() + 30)
            self.assertGreater(len(sockets), held - 16, "keep-alive connections closed: %d of %d left"
                               % (len(sockets), held))
        finally:
            for s in sockets:
                s.close()


if __name__ == "__main__":
    unittest.main()
