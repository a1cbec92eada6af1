"""The programs' conventions (docs/programs.md, "Limits at the edge",
"Operations"): --version, --opt=value, flag names in argument errors, --json
errors, one-line failure messages naming the path or address and the
strerror reason, nothing created before a failure that stops the start,
--data-dir made with its parents, the start-up summary, one server per data
directory, a warning for a non-loopback --host without TLS, and an
embedding example that needs only the public API.
"""

import json
import os
import re
import socket
import subprocess
import unittest

import iwsec_harness as h

EMAIL = "conventions@example.com"
PASSWORD = "c0nventions"
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))


def version_string():
    with open(os.path.join(SOURCE, "include", "iwsec", "version.hpp")) as f:
        return re.search(r'#define IWSEC_VERSION_STRING "([^"]+)"', f.read()).group(1)


def write_bytes(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def one_line(test, text):
    test.assertEqual(text.count("\n"), 1, "expected exactly one line: %r" % text)
    test.assertNotIn("iwsec: iwsec:", text)
    test.assertNotRegex(text, r"^iwsec-(server|admin): iwsec: ", "doubled prefix")


def command_output(command):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True, check=True).stdout


def built_with():
    """What the programs were built with, found apart from the programs: the
    build passes the cpp-httplib version it found (httplib.h's
    CPPHTTPLIB_VERSION), OpenSSL's and libpq's (pkg-config); run by hand, the
    system's Debian packages are asked."""
    httplib = os.environ.get("IWSEC_EXPECT_HTTPLIB_VERSION")
    if not httplib:
        with open("/usr/include/httplib.h") as f:
            httplib = re.search(r'#define CPPHTTPLIB_VERSION "([^"]+)"', f.read()).group(1)
    openssl = os.environ.get("IWSEC_EXPECT_OPENSSL_VERSION") or \
        command_output(["pkg-config", "--modversion", "libcrypto"]).strip()
    libpq = os.environ.get("IWSEC_EXPECT_LIBPQ_VERSION") or \
        command_output(["pkg-config", "--modversion", "libpq"]).strip()
    return httplib, openssl, libpq


class Version(unittest.TestCase):
    def test_both_programs(self):
        """docs/programs.md: iwsec X.Y.Z (cpp-httplib A.B.C, OpenSSL ...[, libpq ...])."""
        httplib, openssl, libpq = built_with()
        expected = "iwsec %s (cpp-httplib %s, OpenSSL %s" % (version_string(), httplib, openssl)
        if os.environ.get("IWSEC_CLUSTER_BUILT", "1") == "1":
            expected += ", libpq %s" % libpq
        expected += ")\n"
        for binary in (h.server_path(), h.admin_path()):
            with self.subTest(program=os.path.basename(binary)):
                r = h.run_program([binary, "--version"])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, expected)
                self.assertEqual(r.stderr, "")


class OptionSyntax(unittest.TestCase):
    def test_server_accepts_opt_equals_value(self):
        data = h.data_dir(self)
        server = h.Server([h.server_path(), "--host=127.0.0.1", "--port=0", "--data-dir=" + data,
                           "--pbkdf2-rounds=1000", "--token-lifetime=60"])
        self.addCleanup(server.force_stop)
        server.wait_listening()
        self.assertTrue(os.path.isdir(data))
        self.assertEqual(server.stop(), 0)

    def test_admin_accepts_opt_equals_value(self):
        data = h.data_dir(self)
        r = h.run_program([h.admin_path(), "--data-dir=" + data, "add-user", EMAIL, "--pbkdf2-rounds=1000",
                           "--json"], stdin=PASSWORD + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = h.run_program([h.admin_path(), "--data-dir=" + data, "list-users"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(EMAIL, r.stdout)

    def test_errors_name_the_flag(self):
        data = h.data_dir(self)
        server = [h.server_path(), "--data-dir", data]
        cases = [
            (server + ["--lockout-wait", "20", "--lockout-max-wait", "10"], "--lockout-max-wait", "account_max_wait"),
            (server + ["--lockout-max-wait", "1000", "--lockout-reset", "100"], "--lockout-reset",
             "account_failure_reset"),
            (server + ["--port=abc"], "--port", None),
            (server + ["--port="], "--port", None),
            (server + ["--no-access-log=yes"], "--no-access-log", None),
            ([h.admin_path(), "--data-dir", data, "--json=1", "list-users"], "--json", None),
            ([h.admin_path(), "--data-dir", data, "hash-password", "--pbkdf2-rounds=0"], "--pbkdf2-rounds", None),
            ([h.admin_path(), "--secret-file", os.path.join(data, "k"), "list-users"], "--secret-file", None),
        ]
        for argv, flag, internal in cases:
            with self.subTest(argv=argv[1:]):
                r = h.run_program(argv, stdin=PASSWORD + "\n")
                self.assertEqual(r.returncode, 2, r.stderr)
                one_line(self, r.stderr)
                self.assertIn(flag, r.stderr)
                if internal:
                    self.assertNotIn(internal, r.stderr)
                self.assertFalse(os.path.exists(data))


class JsonErrors(unittest.TestCase):
    def test_admin_errors_under_json(self):
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        missing = os.path.join(h.temp_dir(self), "typo")
        cases = [
            (["--data-dir", missing, "list-users", "--json"], 1, missing),
            (["--data-dir", data, "disable-user", "nobody@example.com", "--json"], 1, "nobody@example.com"),
            (["--json", "--data-dir", data, "frobnicate"], 2, "frobnicate"),
            (["--data-dir", data, "--json", "retire-signing-key", "nope"], 1, "signing.key"),  # no server made keys yet
        ]
        for args, status, mention in cases:
            with self.subTest(args=args):
                r = h.run_program([h.admin_path()] + args)
                self.assertEqual(r.returncode, status, r.stderr)
                doc = json.loads(r.stdout)
                self.assertEqual(list(doc), ["error"])
                self.assertIn(mention, doc["error"])
                self.assertFalse(doc["error"].startswith("iwsec"), doc["error"])


class FailureMessages(unittest.TestCase):
    """Each start failure: exit 1, one line naming what, where and why, and
    no data directory left behind when it did not exist before."""

    def start_failure(self, argv):
        r = h.run_program(argv)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("listening on", r.stdout)
        lines = [l for l in r.stderr.splitlines(True) if ": warning: " not in l]
        one_line(self, "".join(lines))
        return "".join(lines)

    def test_port_in_use_names_address_port_reason_and_creates_nothing(self):
        data = h.data_dir(self)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = str(taken.getsockname()[1])
            err = self.start_failure([h.server_path(), "--host", "127.0.0.1", "--port", port, "--data-dir", data])
        self.assertIn("127.0.0.1 port " + port, err)
        self.assertIn(os.strerror(98), err)  # EADDRINUSE
        self.assertFalse(os.path.exists(data), "a start that failed created the data directory")

    def test_unusable_data_directory_names_path_and_reason(self):
        tmp = h.temp_dir(self)
        a_file = write_bytes(os.path.join(tmp, "file"), b"")
        err = self.start_failure([h.server_path(), "--port", "0", "--data-dir", os.path.join(a_file, "sub")])
        self.assertIn(a_file, err)
        self.assertIn(os.strerror(20), err)  # ENOTDIR

    def test_key_file_problems_name_the_file(self):
        tmp = h.temp_dir(self)
        data = os.path.join(tmp, "data")
        short = write_bytes(os.path.join(tmp, "short"), b"x" * 16)
        missing = os.path.join(tmp, "absent")
        err = self.start_failure([h.server_path(), "--port", "0", "--data-dir", data, "--secret-file", short])
        self.assertIn(short, err)
        self.assertIn("16 bytes", err)
        err = self.start_failure([h.server_path(), "--port", "0", "--data-dir", data, "--secret-file", missing])
        self.assertIn(missing, err)
        self.assertIn(os.strerror(2), err)

    def make_certificate(self, directory, name):
        cert = os.path.join(directory, name + ".crt")
        key = os.path.join(directory, name + ".key")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "1", "-subj", "/CN=127.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=h.PROGRAM_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return cert, key

    def test_tls_missing_file_and_mismatched_key_are_told_apart(self):
        tmp = h.temp_dir(self)
        data = os.path.join(tmp, "data")
        cert_a, key_a = self.make_certificate(tmp, "a")
        _, key_b = self.make_certificate(tmp, "b")
        base = [h.server_path(), "--port", "0", "--data-dir", data]
        missing = os.path.join(tmp, "absent.key")
        err = self.start_failure(base + ["--tls-cert", cert_a, "--tls-key", missing])
        self.assertIn(missing, err)
        self.assertIn(os.strerror(2), err)
        err = self.start_failure(base + ["--tls-cert", cert_a, "--tls-key", key_b])
        self.assertIn("does not belong to", err)
        self.assertIn(key_b, err)
        self.assertIn(cert_a, err)
        not_pem = write_bytes(os.path.join(tmp, "not.pem"), b"hello\n")
        err = self.start_failure(base + ["--tls-cert", not_pem, "--tls-key", key_a])
        self.assertIn(not_pem, err)
        self.assertIn("certificate", err)
        self.assertFalse(os.path.exists(data))


class DataDirectory(unittest.TestCase):
    def test_parents_are_created_and_the_summary_names_it(self):
        root = h.temp_dir(self)
        data = os.path.join(root, "a", "b", "c")
        h.add_user(self, data, EMAIL, PASSWORD)  # add-user creates parents too
        for d in ("a", "a/b", "a/b/c"):
            self.assertEqual(h.file_mode(os.path.join(root, d)), 0o700, d)
        relative = os.path.relpath(data)
        server = h.start_server(self, relative, "--no-access-log")
        summary = "\n".join(server.preamble)
        self.assertIn(os.path.realpath(data), summary)
        self.assertIn("1 user", summary)
        self.assertEqual(server.stop(), 0)

    def test_admin_refuses_a_missing_data_directory_except_add_user(self):
        missing = os.path.join(h.temp_dir(self), "typo")
        for args in (["list-users"], ["disable-user", EMAIL], ["list-signing-keys"], ["add-signing-key"]):
            with self.subTest(args=args):
                r = h.run_program([h.admin_path(), "--data-dir", missing] + args)
                self.assertEqual(r.returncode, 1, r.stderr)
                one_line(self, r.stderr)
                self.assertIn(missing, r.stderr)
                self.assertIn(os.strerror(2), r.stderr)
                self.assertFalse(os.path.exists(missing))

    def test_one_server_per_data_directory(self):
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        first = h.start_server(self, data, "--no-access-log")
        second = h.Server([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir", data])
        self.addCleanup(second.force_stop)
        with self.assertRaises(h.ServerError):
            second.wait_listening()
        self.assertEqual(second.returncode, 1)
        err = second.stderr_text()
        one_line(self, err)
        self.assertIn("in use by another iwsec-server", err)
        self.assertIn(data, err)
        # iwsec-admin is still welcome, and the first server still serves.
        r = h.admin(data, "list-users")
        self.assertEqual(r.returncode, 0, r.stderr)
        api = h.Api(first.base_url)
        api.token_by_password(self, EMAIL, PASSWORD)
        api.close()
        self.assertEqual(first.stop(), 0)
        third = h.start_server(self, data, "--no-access-log")  # the lock went with the first
        self.assertEqual(third.stop(), 0)


class Warnings(unittest.TestCase):
    def test_non_loopback_without_tls_warns(self):
        # 192.0.2.1 (TEST-NET-1) is on no interface: the bind fails, so no
        # socket is ever opened beyond loopback; the warning comes first.
        r = h.run_program([h.server_path(), "--host", "192.0.2.1", "--port", "0", "--data-dir",
                           h.data_dir(self)])
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 2, r.stderr)
        self.assertIn("warning", lines[0])
        self.assertIn("--host 192.0.2.1", lines[0])
        self.assertIn("clear text", lines[0])
        self.assertIn("192.0.2.1 port 0", lines[1])

    def test_loopback_does_not_warn(self):
        server = h.start_server(self, h.data_dir(self), "--no-access-log")
        self.assertNotIn("warning", server.stderr_text())
        self.assertEqual(server.stop(), 0)


class PublicApiOnly(unittest.TestCase):
    def test_existing_service_needs_no_internals(self):
        with open(os.path.join(SOURCE, "examples", "existing_service.cpp")) as f:
            text = f.read()
        self.assertNotIn("cli.hpp", text)
        self.assertNotIn("detail::", text)
        self.assertNotIn("startup.hpp", text)

    def test_programs_include_only_what_the_single_header_build_has(self):
        # The single-header build (.ci/meson) offers <iwsec/iwsec.hpp>
        # alone (cluster mode is not built there): a program, test or
        # benchmark that names another library header breaks it.
        bad = []
        for folder in ("examples", "tests", "bench"):
            for root, _, files in os.walk(os.path.join(SOURCE, folder)):
                if "consumers" in root.split(os.sep):
                    continue  # consumer projects test the installed headers on purpose
                for name in files:
                    if not name.endswith((".cpp", ".hpp")):
                        continue
                    path = os.path.join(root, name)
                    with open(path) as f:
                        for n, line in enumerate(f, 1):
                            m = re.match(r'\s*#\s*include\s*<(iwsec/[^>]+)>', line)
                            if m and m.group(1) != "iwsec/iwsec.hpp" and not m.group(1).startswith("iwsec/postgres/"):
                                bad.append("%s:%d: %s" % (os.path.relpath(path, SOURCE), n, m.group(1)))
        self.assertEqual(bad, [])

    def test_existing_service_includes_no_program_header(self):
        # Everything it mounts comes from <iwsec/...>: no header of the
        # bundled programs' folder (examples/*.hpp).
        with open(os.path.join(SOURCE, "examples", "existing_service.cpp")) as f:
            includes = re.findall(r'^#include\s+"([^"]+)"', f.read(), re.M)
        self.assertEqual(includes, [])

    def test_existing_service_refuses_bodies_before_reading_them(self):
        data = h.data_dir(self)
        service = h.start_existing_service(self, data)
        port = int(service.base_url.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            # A 64 MiB body announced on the host's own route: answered 413
            # at once, the connection closed, the body never read.
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 67108864\r\n\r\n")
            data_in = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data_in += chunk
        finally:
            s.close()
        head, _, body = data_in.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head[:40])
        self.assertIn(b"\"iw_code\":\"IW10006\"", body)

    def test_existing_service_shares_the_keyring(self):
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        service = h.start_existing_service(self, data)
        api = h.Api(service.base_url)
        self.addCleanup(api.close)
        old = api.token_by_password(self, EMAIL, PASSWORD)
        kid = json.loads(h.admin(data, "list-signing-keys", "--json").stdout)[0]["kid"]
        self.assertEqual(h.admin(data, "add-signing-key").returncode, 0)
        self.assertEqual(h.admin(data, "retire-signing-key", kid).returncode, 0)
        self.assertFalse(api.is_valid(self, old))
        self.assertEqual(api.request("GET", "/v3/domains", h.bearer(old)).status_code, 401)
        new = api.token_by_password(self, EMAIL, PASSWORD)
        r = api.request("GET", "/v3/domains", h.bearer(new))
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["result"][0]["owner"], EMAIL)


if __name__ == "__main__":
    unittest.main()
