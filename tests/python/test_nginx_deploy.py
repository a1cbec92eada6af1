"""deploy/nginx/iwsec.conf, tested: a real nginx on loopback (its own
prefix and nginx.conf in a temporary directory, free ports, a self-signed
certificate made with openssl, stopped by pid) in front of a real
iwsec-server, and the edge cases run through it over TLS: bodies and a
request smuggled in a GET body, a header flood, slow clients, and the
lockout counted per client address that nginx forwards. Clients bind to
127.0.0.2.. to play different machines."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import unittest

import iwsec_harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "..", "..", "deploy", "nginx", "iwsec.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
VALIDATE = "/v3/security/token/validate"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NginxDeploy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(NGINX, os.X_OK):
            raise unittest.SkipTest("nginx not installed (apt-get install nginx)")
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl not installed")

    def setUp(self):
        self.dir = h.temp_dir(self, "iwsec-nginx-")
        os.chmod(self.dir, 0o755)
        data = h.data_dir(self)
        self.user, self.password = "proxied@example.com", "proxied password"
        h.add_user(self, data, self.user, self.password)
        self.iwsec = h.start_server(self, data, "--no-access-log", "--lockout-client-header", "X-Forwarded-For",
                                    "--max-connections-per-client", "0", "--lockout-client-failures", "3")
        upstream_port = int(self.iwsec.base_url.rsplit(":", 1)[1])
        self.cert = os.path.join(self.dir, "cert.pem")
        key = os.path.join(self.dir, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                            self.cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                            "subjectAltName=IP:127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.port = free_port()
        with open(CONF) as f:
            site = f.read()
        # Only the four lines the file tells a deployer to edit.
        site, n1 = re.subn(r"listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % self.port, site)
        site, n2 = re.subn(r"server 127\.0\.0\.1:3001;", "server 127.0.0.1:%d;" % upstream_port, site)
        site, n3 = re.subn(r"/etc/iwsec/tls/cert\.pem", self.cert, site)
        site, n4 = re.subn(r"/etc/iwsec/tls/key\.pem", key, site)
        self.assertEqual((n1, n2, n3, n4), (1, 1, 1, 1), "deploy/nginx/iwsec.conf changed shape")
        with open(os.path.join(self.dir, "iwsec.conf"), "w") as f:
            f.write(site)
        temp_paths = "".join("  %s_temp_path %s/%s;\n" % (t, self.dir, t)
                             for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write("%s"
                    "worker_processes 1;\nworker_rlimit_nofile 8192;\n"
                    "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
                    "events { worker_connections 4096; }\n"
                    "http {\n  access_log off;\n%s  include %s/iwsec.conf;\n}\n"
                    % ("user root;\n" if os.geteuid() == 0 else "", self.dir, self.dir, temp_paths, self.dir))
        self.nginx = subprocess.Popen([NGINX, "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf"),
                                       "-e", os.path.join(self.dir, "error.log"), "-g", "daemon off;"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(self.stop_nginx)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.nginx.poll() is not None or time.monotonic() > deadline:
                    self.fail("nginx did not start: " + self.nginx.stderr.read().decode("utf-8", "replace"))
                time.sleep(0.05)  # polling for the port, bounded by the deadline
        self.tls = ssl.create_default_context(cafile=self.cert)

    def stop_nginx(self):
        if self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        self.nginx.stderr.close()

    # -- clients -----------------------------------------------------------

    def connect(self, source="127.0.0.1", timeout=10):
        raw = socket.socket()
        raw.settimeout(timeout)
        raw.bind((source, 0))
        raw.connect(("127.0.0.1", self.port))
        return self.tls.wrap_socket(raw, server_hostname="127.0.0.1")

    def exchange(self, data, source="127.0.0.1", window=1.5):
        """Sends @p data, reads for @p window seconds (or until closed)."""
        s = self.connect(source)
        out = b""
        try:
            try:
                s.sendall(data)
            except OSError:
                pass
            deadline = time.monotonic() + window
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except (socket.timeout, ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            s.close()
        return out

    def head(self, method, path, extra=""):
        return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (method, path, extra)).encode()

    def login(self, source, email, password, extra=""):
        data = self.head("GET", "/v3/security/authenticate",
                         "Authorization: %s\r\nConnection: close\r\n%s" % (h.basic(email, password), extra))
        return self.exchange(data, source, window=10)

    # -- the cases -----------------------------------------------------------

    def test_a_request_smuggled_in_a_get_body_is_never_answered(self):
        smuggled = self.head("GET", "/v3/security/authenticate",
                             "Authorization: %s\r\n" % h.basic(self.user, self.password))
        out = self.exchange(self.head("GET", VALIDATE, "Content-Length: %d\r\n" % len(smuggled)) + smuggled)
        self.assertEqual(out.count(b"HTTP/1.1 "), 1, out[:400])
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:200])
        self.assertIn(b'"iw_code":"IW10006"', out)
        self.assertNotIn(b"authentication_token", out)

    def test_bodies_are_refused_in_the_envelope(self):
        big = self.exchange(self.head("DELETE", "/v3/security/token/access", "Content-Length: %d\r\n" % (4 << 20))
                            + b"x" * (1 << 20))
        self.assertTrue(big.startswith(b"HTTP/1.1 413 "), big[:200])
        self.assertIn(b'"iw_code":"IW10006"', big)
        chunked = self.exchange(self.head("DELETE", "/v3/security/token/refresh", "Transfer-Encoding: chunked\r\n")
                                + b"5\r\nhello\r\n0\r\n\r\n")
        self.assertRegex(chunked[:12], rb"HTTP/1.1 (400|413)")
        self.assertIn(b'"iw_code":"IW10006"', chunked)

    def test_header_floods_are_refused(self):
        flood = self.head("GET", VALIDATE)[:-2] + b"".join(b"X-F-%d: %s\r\n" % (i, b"v" * 100) for i in range(2000))
        out = self.exchange(flood + b"\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 ") or out.startswith(b"HTTP/1.1 431 "), out[:200])

    def test_slow_clients_do_not_stop_another_client(self):
        slow = []
        try:
            for _ in range(200):
                s = socket.socket()
                s.bind(("127.0.0.2", 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", self.port))
                s.send(b"\x16")  # the first byte of a TLS handshake, and no more
                slow.append(s)
            t0 = time.monotonic()
            s = self.connect("127.0.0.3", timeout=2)
            try:
                s.sendall(self.head("GET", VALIDATE, "Authorization: Bearer x.y.z\r\nConnection: close\r\n"))
                out = b""
                while b'"is_valid":false' not in out and time.monotonic() - t0 < 2:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    out += chunk
            finally:
                s.close()
            self.assertIn(b'"is_valid":false', out)
            self.assertLess(time.monotonic() - t0, 2.0)
        finally:
            for s in slow:
                s.close()

    def test_failed_logins_count_per_client_address_nginx_forwards(self):
        for _ in range(3):
            out = self.login("127.0.0.2", "someone@example.com", "wrong", "X-Forwarded-For: 127.0.0.9\r\n")
            self.assertTrue(out.startswith(b"HTTP/1.1 406 "), out[:200])
        # 127.0.0.2 is now throttled, whatever it claims to be ...
        out = self.login("127.0.0.2", self.user, self.password, "X-Forwarded-For: 127.0.0.3\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 429 "), out[:200])
        self.assertIn(b"Retry-After:", out)
        # ... while 127.0.0.3, behind the same proxy, is not.
        out = self.login("127.0.0.3", self.user, self.password)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:60])
        self.assertIn(b"authentication_token", out)


if __name__ == "__main__":
    unittest.main()
