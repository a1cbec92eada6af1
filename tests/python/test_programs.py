"""The bundled programs' command-line contracts (docs/programs.md).

iwsec-server and iwsec-admin: --help, one-line errors with exit status 2 for
bad arguments, exit status 1 for operational failures, the data directory's
files and modes, admin changes applied by a running server on its very next
request, clean exits on SIGTERM/SIGINT, and an access log that never holds a
credential.
"""

import json
import os
import re
import signal
import socket
import subprocess
import unittest
from concurrent.futures import ThreadPoolExecutor

import jwt
import requests

import iwsec_harness as h

EMAIL = "program.test@example.com"
PASSWORD = "pr0gram:test pässword"
# TIME CLIENT REQUEST-ID METHOD PATH STATUS DURATION [is_valid=... [reason=...]] (docs/operations.md)
LOG_LINE = re.compile(r"^\S+Z \S+ [A-Za-z0-9._:-]+ (GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/\S*) ([1-5][0-9]{2}) "
                      r"([0-9]+)us(?: is_valid=(?:true|false reason=[a-z_]+))?$")


def write_bytes(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


class Help(unittest.TestCase):
    def check_help(self, binary, must_mention):
        r = h.run_program([binary, "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("usage", r.stdout.lower())
        for word in must_mention:
            self.assertIn(word, r.stdout)

    def test_server_help(self):
        self.check_help(h.server_path(), ["--host", "--port", "--data-dir", "--secret-file", "--token-lifetime",
                                          "--tls-cert", "--tls-key"])

    def test_admin_help(self):
        self.check_help(h.admin_path(), ["--data-dir", "add-user", "list-users", "disable-user", "enable-user",
                                         "set-password", "rotate-refresh-token", "hash-password", "--json",
                                         "delete-user", "--keep-sessions"])

    def test_existing_service_help(self):
        r = h.run_program([h.existing_service_path(), "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("usage", r.stdout.lower())


class BadArguments(unittest.TestCase):
    """Exactly one line on stderr, nothing on stdout (under --json, the
    error as one JSON object), exit status 2, and no side effects (the data
    directory is not even created)."""

    def check_usage_error(self, argv, stdin=None):
        r = h.run_program(argv, stdin=stdin)
        self.assertEqual(r.returncode, 2, "argv %r: stderr %r" % (argv[1:], r.stderr))
        if "--json" in argv:
            self.assertEqual(json.loads(r.stdout), {"error": r.stderr.strip().split(": ", 1)[1]})
        else:
            self.assertEqual(r.stdout, "", "stdout must be empty")
        self.assertEqual(r.stderr.count("\n"), 1, "stderr must be exactly one line: %r" % r.stderr)
        self.assertTrue(r.stderr.endswith("\n"))
        self.assertGreater(len(r.stderr.strip()), 0)

    def test_server(self):
        data = h.data_dir(self)
        server = h.server_path()
        base = [server, "--host", "127.0.0.1", "--data-dir", data]
        cases = {
            "unknown flag": ["--port", "0", "--frobnicate"],
            "positional argument": ["--port", "0", "extra"],
            "missing value": ["--port"],
            "missing value at the end": ["--port", "0", "--data-dir"],
            "port not a number": ["--port", "abc"],
            "port too large": ["--port", "70000"],
            "port negative": ["--port", "-1"],
            "port with junk": ["--port", "80x"],
            "token lifetime zero": ["--port", "0", "--token-lifetime", "0"],
            "token lifetime not a number": ["--port", "0", "--token-lifetime", "ten"],
            "threads zero": ["--port", "0", "--threads", "0"],
            "pbkdf2 rounds zero": ["--port", "0", "--pbkdf2-rounds", "0"],
            "tls cert without key": ["--port", "0", "--tls-cert", "cert.pem"],
            "tls key without cert": ["--port", "0", "--tls-key", "key.pem"],
            "option where a value belongs": ["--port", "0", "--secret-file", "--no-access-log"],
            "lockout failures zero": ["--port", "0", "--lockout-failures", "0"],
            "max revocations per user zero": ["--port", "0", "--max-revocations-per-user", "0"],
            "lockout max wait below the wait": ["--port", "0", "--lockout-wait", "60", "--lockout-max-wait", "30"],
            "lockout reset below the max wait": ["--port", "0", "--lockout-reset", "600"],
            "lockout client window zero": ["--port", "0", "--lockout-client-window", "0"],
            "lockout client header empty": ["--port", "0", "--lockout-client-header", ""],
        }
        for name, args in cases.items():
            with self.subTest(case=name):
                self.check_usage_error(base + args)
                self.assertFalse(os.path.exists(data), "bad arguments must not create the data directory")

    def test_admin(self):
        data = h.data_dir(self)
        admin = h.admin_path()
        cases = {
            "no command": [],
            "unknown command": ["frobnicate"],
            "unknown flag": ["list-users", "--frobnicate"],
            "missing EMAIL (add-user)": ["add-user"],
            "missing EMAIL (disable-user)": ["disable-user"],
            "missing EMAIL (enable-user)": ["enable-user"],
            "missing EMAIL (set-password)": ["set-password"],
            "missing EMAIL (rotate-refresh-token)": ["rotate-refresh-token"],
            "extra argument": ["list-users", "surplus"],
            "missing --data-dir value": ["list-users", "--data-dir"],
            "rounds not a number": ["hash-password", "--pbkdf2-rounds", "many"],
            "rounds zero": ["hash-password", "--pbkdf2-rounds", "0"],
            "option where a value belongs": ["list-users", "--pbkdf2-rounds", "--json"],
            "email that cannot log in (colon)": ["add-user", "a:b@example.com"],
            "email that is not UTF-8": ["add-user", "caf\udcc3@example.com"],
        }
        for name, args in cases.items():
            with self.subTest(case=name):
                self.check_usage_error([admin, "--data-dir", data] + args, stdin=PASSWORD + "\n")
                self.assertFalse(os.path.exists(data), "bad arguments must not create the data directory")


class Secrets(unittest.TestCase):
    def test_short_secret_file_refused(self):
        tmp = h.temp_dir(self)
        secret = write_bytes(os.path.join(tmp, "secret"), os.urandom(31))
        r = h.run_program([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir",
                           os.path.join(tmp, "data"), "--secret-file", secret])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("listening on", r.stdout)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

    def test_missing_secret_file_refused(self):
        tmp = h.temp_dir(self)
        r = h.run_program([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir",
                           os.path.join(tmp, "data"), "--secret-file", os.path.join(tmp, "absent")])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

    def test_secret_file_of_32_bytes_signs(self):
        tmp = h.temp_dir(self)
        data = os.path.join(tmp, "data")
        key = os.urandom(32)
        while key.startswith(b"-----") or b"ssh-" in key:
            key = os.urandom(32)
        secret = write_bytes(os.path.join(tmp, "secret"), key)
        h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data, "--secret-file", secret, "--no-access-log")
        api = h.Api(server.base_url)
        token = api.token_by_password(self, EMAIL, PASSWORD)
        claims = jwt.decode(token, key, algorithms=["HS256"])
        self.assertEqual(json.loads(claims["sub"])["email"], EMAIL)
        self.assertFalse(os.path.exists(os.path.join(data, "signing.key")),
                         "with --secret-file no signing.key is made")
        api.close()
        self.assertEqual(server.stop(), 0)

    @unittest.skipIf(h.CLUSTER_MODE, "the data directory's signing.key: cluster mode is given --secret-file")
    def test_signing_key_created_private_and_kept(self):
        data = h.data_dir(self)
        server = h.start_server(self, data, "--no-access-log")
        path = os.path.join(data, "signing.key")
        self.assertEqual(h.file_mode(path), 0o600)
        self.assertEqual(len(h.signing_secret(data)), 32)
        with open(path, "rb") as f:
            key = f.read()
        self.assertEqual(server.stop(), 0)
        server = h.start_server(self, data, "--no-access-log")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), key, "signing.key replaced on restart")
        self.assertEqual(server.stop(), 0)

    def expect_start_failure(self, argv):
        """Starts @p argv expecting it to fail before listening; returns its stderr."""
        server = h.Server(argv)
        self.addCleanup(server.force_stop)
        try:
            url = server.wait_listening()
        except h.ServerError:
            pass
        else:
            self.fail("%s started (%s) but should have refused to" % (os.path.basename(argv[0]), url))
        self.assertEqual(server.returncode, 1, server.stderr_text())
        self.assertEqual(server.stderr_text().count("\n"), 1, server.stderr_text())
        return server.stderr_text()

    def test_cannot_bind_is_exit_1(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = str(taken.getsockname()[1])
            self.expect_start_failure([h.server_path(), "--host", "127.0.0.1", "--port", port,
                                       "--data-dir", h.data_dir(self)])

    def test_unusable_data_directory_is_exit_1(self):
        tmp = h.temp_dir(self)
        not_a_dir = write_bytes(os.path.join(tmp, "file"), b"")
        short_key_dir = os.path.join(tmp, "short-key")
        os.mkdir(short_key_dir, 0o700)
        write_bytes(os.path.join(short_key_dir, "signing.key"), os.urandom(16))
        broken_users_dir = os.path.join(tmp, "broken-users")
        os.mkdir(broken_users_dir, 0o700)
        write_bytes(os.path.join(broken_users_dir, "users.json"), b"{not json")
        for name, directory in (("data dir is a file", not_a_dir), ("short signing.key", short_key_dir),
                                ("broken users.json", broken_users_dir)):
            with self.subTest(case=name):
                self.expect_start_failure([h.server_path(), "--host", "127.0.0.1", "--port", "0",
                                           "--data-dir", directory])

    def test_second_server_on_a_bound_port_is_exit_1(self):
        # Two servers must not share one port: cpp-httplib's default socket
        # options set SO_REUSEPORT, which would let the second bind and take
        # half the connections.
        data = h.data_dir(self)
        first = h.start_server(self, data, "--no-access-log")
        port = first.base_url.rsplit(":", 1)[1]
        self.expect_start_failure([h.server_path(), "--host", "127.0.0.1", "--port", port, "--data-dir", data])
        self.assertEqual(first.stop(), 0)


class AdminOnRunningServer(unittest.TestCase):
    """Every admin change applies to the running server's very next request:
    no restart, no sleep."""

    def setUp(self):
        self.data = h.data_dir(self)
        # The server starts first, on an empty directory: users.json appears later.
        self.server = h.start_server(self, self.data, "--no-access-log")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)

    def admin_ok(self, *args, stdin=None):
        r = h.admin(self.data, *args, stdin=stdin)
        self.assertEqual(r.returncode, 0, "%r: %s" % (args[:1], r.stderr))
        return r

    def add(self, email=EMAIL, password=PASSWORD):
        r = self.admin_ok("add-user", email, stdin=password + "\n")
        fields = h.parse_fields(r.stdout)
        self.assertEqual(set(fields), {"user_id", "refresh_token"})
        self.assertEqual(len(r.stdout.splitlines()), 2)
        self.assertRegex(fields["refresh_token"], r"^[A-Za-z0-9_-]{43,}$")  # >= 256 bits
        return fields["user_id"], fields["refresh_token"]

    def test_add_and_list(self):
        user_id, refresh = self.add()
        r = self.api.authenticate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["result"]["user_id"], user_id)
        self.api.token_by_refresh(self, refresh)

        second_id, _ = self.add("second@example.com", "another")
        r = self.admin_ok("list-users", "--json")
        users = json.loads(r.stdout)
        self.assertEqual(users, [
            {"user_id": user_id, "email": EMAIL, "disabled": False, "refresh_generation": 0},
            {"user_id": second_id, "email": "second@example.com", "disabled": False, "refresh_generation": 0},
        ])
        r = self.admin_ok("list-users")
        self.assertIn(EMAIL, r.stdout)
        for listing in (self.admin_ok("list-users").stdout, self.admin_ok("list-users", "--json").stdout):
            h.assert_no_secret(self, refresh, listing, "refresh token")
            h.assert_no_secret(self, "pbkdf2", listing, "password hash")
            h.assert_no_secret(self, PASSWORD, listing, "password")
        if not h.CLUSTER_MODE:  # a data directory's file; cluster mode has none
            self.assertEqual(h.file_mode(os.path.join(self.data, "users.json")), 0o600)

    def test_add_json_output(self):
        r = self.admin_ok("add-user", EMAIL, "--json", stdin=PASSWORD + "\n")
        doc = json.loads(r.stdout)
        self.assertEqual(set(doc), {"user_id", "refresh_token"})
        self.api.token_by_refresh(self, doc["refresh_token"])

    def test_existing_email_in_other_case_is_exit_1(self):
        self.add()
        before = h.users_state(self.data)
        for email in (EMAIL, EMAIL.upper(), "Program.Test@EXAMPLE.com"):
            with self.subTest(email=email):
                r = h.admin(self.data, "add-user", email, stdin="other password\n")
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
                self.assertNotIn("refresh_token", r.stdout)
        self.assertEqual(h.users_state(self.data), before)
        self.api.token_by_password(self, EMAIL, PASSWORD)
        self.assertEqual(self.api.authenticate(EMAIL, "other password").status_code, 406)

    def test_password_with_a_control_character_is_exit_1(self):
        # A login with such a password would be a 400, so it is never stored.
        self.add()
        before = h.users_state(self.data)
        for command, args in (("add-user", ("other@example.com",)), ("set-password", (EMAIL,)),
                              ("hash-password", ())):
            for password in ("tab\there", "nul\x00here", "del\x7fhere"):
                with self.subTest(command=command, password=repr(password)):
                    r = h.admin(self.data, command, *args, stdin=password + "\n")
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertIn("control character", r.stderr)
                    self.assertNotIn(password, r.stderr)
                    self.assertEqual(r.stdout, "")
        self.assertEqual(h.users_state(self.data), before)
        self.api.token_by_password(self, EMAIL, PASSWORD)

    def test_unknown_user_is_exit_1(self):
        self.add()
        for command in ("disable-user", "enable-user", "set-password", "rotate-refresh-token"):
            with self.subTest(command=command):
                r = h.admin(self.data, command, "nobody@example.com", stdin="whatever\n")
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

    def test_disable_and_enable(self):
        _, refresh = self.add()
        token = self.api.token_by_password(self, EMAIL, PASSWORD)
        self.admin_ok("disable-user", EMAIL.upper())
        h.assert_envelope(self, self.api.authenticate(EMAIL, PASSWORD), 406, "IW10031")
        h.assert_envelope(self, self.api.access_token(refresh), 406, "IW10031")
        self.assertFalse(self.api.is_valid(self, token))
        h.assert_envelope(self, self.api.rotate(EMAIL, PASSWORD), 406, "IW10031")
        users = json.loads(self.admin_ok("list-users", "--json").stdout)
        self.assertIs(users[0]["disabled"], True)

        self.admin_ok("enable-user", EMAIL)
        self.assertFalse(self.api.is_valid(self, token))  # disable ended the session for good
        self.api.token_by_password(self, EMAIL, PASSWORD)
        self.api.token_by_refresh(self, refresh)
        users = json.loads(self.admin_ok("list-users", "--json").stdout)
        self.assertIs(users[0]["disabled"], False)

    def test_set_password(self):
        self.add()
        self.api.token_by_password(self, EMAIL, PASSWORD)
        new_password = "brand:new pässword"
        self.admin_ok("set-password", EMAIL, stdin=new_password + "\n")
        h.assert_envelope(self, self.api.authenticate(EMAIL, PASSWORD), 406, "IW10031")
        self.api.token_by_password(self, EMAIL, new_password)

    def test_rotate_refresh_token(self):
        _, refresh = self.add()
        token = self.api.token_by_refresh(self, refresh)
        r = self.admin_ok("rotate-refresh-token", EMAIL)
        fields = h.parse_fields(r.stdout)
        new_refresh = fields.get("refresh_token") or r.stdout.strip()
        self.assertRegex(new_refresh, r"^[A-Za-z0-9_-]{43,}$")
        self.assertNotEqual(new_refresh, refresh)
        # The running server, without restart, on the very next requests:
        h.assert_envelope(self, self.api.access_token(refresh), 406, "IW10031")
        self.assertFalse(self.api.is_valid(self, token))
        newer = self.api.token_by_refresh(self, new_refresh)
        self.assertTrue(self.api.is_valid(self, newer))

        r = self.admin_ok("rotate-refresh-token", EMAIL, "--json")
        doc = json.loads(r.stdout)
        self.assertEqual(set(doc), {"user_id", "refresh_token"})
        h.assert_envelope(self, self.api.access_token(new_refresh), 406, "IW10031")
        self.assertFalse(self.api.is_valid(self, newer))
        self.api.token_by_refresh(self, doc["refresh_token"])
        users = json.loads(self.admin_ok("list-users", "--json").stdout)
        self.assertEqual(users[0]["refresh_generation"], 2)

    def test_server_and_admin_writes_interleave(self):
        # The server's own rotation and the admin's changes never lose each other.
        _, refresh = self.add()
        r = self.api.rotate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200, r.text)
        server_refresh = r.json()["refresh_token"]
        self.admin_ok("set-password", EMAIL, stdin="second password\n")
        r = self.api.rotate(EMAIL, "second password")
        self.assertEqual(r.status_code, 200, r.text)
        latest = r.json()["refresh_token"]
        self.add("late@example.com", "late")
        for stale in (refresh, server_refresh):
            h.assert_envelope(self, self.api.access_token(stale), 406, "IW10031")
        self.api.token_by_refresh(self, latest)
        self.api.token_by_password(self, "late@example.com", "late")
        users = json.loads(self.admin_ok("list-users", "--json").stdout)
        self.assertEqual([u["refresh_generation"] for u in users], [3, 0])  # set-password bumps it too

    def test_concurrent_server_and_admin_writes_are_all_kept(self):
        self.add()
        http_rotations, admin_rotations, new_users = 8, 6, 4

        def rotate_over_http(_):
            api = h.Api(self.server.base_url)
            try:
                r = api.rotate(EMAIL, PASSWORD)
                self.assertEqual(r.status_code, 200, r.text)
                return r.json()["refresh_token"]
            finally:
                api.close()

        def rotate_with_admin(_):
            r = h.admin(self.data, "rotate-refresh-token", EMAIL, "--json", rounds=None)
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout)["refresh_token"]

        def add_with_admin(i):
            r = h.admin(self.data, "add-user", "user%d@example.com" % i, "--json", stdin="pw%d\n" % i)
            self.assertEqual(r.returncode, 0, r.stderr)
            return None

        jobs = ([(rotate_over_http, i) for i in range(http_rotations)] +
                [(rotate_with_admin, i) for i in range(admin_rotations)] +
                [(add_with_admin, i) for i in range(new_users)])
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(f, i) for f, i in jobs]
            results = [f.result(timeout=h.PROGRAM_TIMEOUT) for f in futures]
        issued = [t for t in results if t]
        self.assertEqual(len(set(issued)), http_rotations + admin_rotations)

        users = json.loads(self.admin_ok("list-users", "--json").stdout)
        self.assertEqual(len(users), 1 + new_users)
        self.assertEqual(users[0]["refresh_generation"], http_rotations + admin_rotations,
                         "a rotation was lost")
        # Exactly one of the issued refresh tokens is current.
        statuses = [self.api.access_token(t).status_code for t in issued]
        self.assertEqual(sorted(statuses), [200] + [406] * (len(issued) - 1))
        for i in range(new_users):
            self.api.token_by_password(self, "user%d@example.com" % i, "pw%d" % i)

    def test_hash_password(self):
        r = self.admin_ok("hash-password", stdin="hash me\n")
        self.assertRegex(r.stdout, r"^\$pbkdf2-sha256\$1000\$[A-Za-z0-9./]+\$[A-Za-z0-9./]{43}\n$")
        r = self.admin_ok("hash-password", "--json", stdin="hash me\n")
        self.assertTrue(json.loads(r.stdout)["hash"].startswith("$pbkdf2-sha256$1000$"))


class Signals(unittest.TestCase):
    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig):
                data = h.data_dir(self)
                h.add_user(self, data, EMAIL, PASSWORD)
                server = h.start_server(self, data)
                api = h.Api(server.base_url)
                api.token_by_password(self, EMAIL, PASSWORD)
                api.close()
                self.assertEqual(server.stop(sig), 0, server.stderr_text())
                self.assertEqual(server.stderr_text(), "")

    def test_signal_right_after_listening_line(self):
        # A stop signal that arrives just after the listening line (before the
        # accept loop has started) must still stop the server. The window is
        # narrow, so try several times; each stop is bounded.
        data = h.data_dir(self)
        for i in range(20):
            for sig in (signal.SIGTERM, signal.SIGINT):
                with self.subTest(attempt=i, signal=sig):
                    server = h.start_server(self, data, "--no-access-log")
                    self.assertEqual(server.stop(sig, timeout=5), 0)


class AccessLog(unittest.TestCase):
    def test_lines_have_method_path_status_and_no_credentials(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data)
        api = h.Api(server.base_url)

        token = api.token_by_password(self, EMAIL, PASSWORD)
        by_refresh = api.token_by_refresh(self, refresh)
        self.assertTrue(api.is_valid(self, token))
        api.request("GET", "/v3/security/authenticate?service_id=7&password=" + PASSWORD.replace(" ", "+"),
                    h.basic(EMAIL, PASSWORD + "-wrong"))
        api.request("GET", "/v3/security/token/validate?access_token=" + by_refresh)
        self.assertEqual(api.revoke(token).status_code, 200)
        r = api.rotate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200)
        new_refresh = r.json()["refresh_token"]
        api.access_token(refresh)
        api.close()
        self.assertEqual(server.stop(), 0)

        lines = server.log_lines()
        expected = [
            ("GET", "/v3/security/authenticate", "200"),
            ("GET", "/v3/security/token/access", "200"),
            ("GET", "/v3/security/token/validate", "200"),
            ("GET", "/v3/security/authenticate", "406"),
            ("GET", "/v3/security/token/validate", "401"),
            ("DELETE", "/v3/security/token/access", "200"),
            ("DELETE", "/v3/security/token/refresh", "200"),
            ("GET", "/v3/security/token/access", "406"),
        ]
        parsed = []
        for line in lines:
            m = LOG_LINE.match(line)
            self.assertIsNotNone(m, "access-log line of the wrong shape: %r" % line[:60])
            parsed.append(m.groups()[:3])
        self.assertEqual(parsed, expected)

        everything = "\n".join(lines) + server.stderr_text()
        secrets = {
            "password": PASSWORD,
            "url-encoded password": PASSWORD.replace(" ", "+"),
            "Basic credentials": h.basic(EMAIL, PASSWORD).split(" ", 1)[1],
            "access token": token,
            "access token (refresh)": by_refresh,
            "refresh token": refresh,
            "new refresh token": new_refresh,
            "email": EMAIL,
        }
        for name, secret in secrets.items():
            with self.subTest(secret=name):
                h.assert_no_secret(self, secret, everything, name)
        for token_text in (token, by_refresh):
            for part in token_text.split("."):
                h.assert_no_secret(self, part, everything, "token segment")

    def test_paths_cannot_forge_log_lines(self):
        # cpp-httplib percent-decodes the path: a %0A in it must not start a
        # new (forged) access-log line, nor a space shift the fields.
        server = h.start_server(self, h.data_dir(self))
        api = h.Api(server.base_url)
        forged = "GET /v3/security/authenticate 200 12us"
        for path in ("/x%0A" + forged.replace(" ", "%20"), "/x%0D%0A" + forged.replace(" ", "%20"),
                     "/x%20200%201us%0A", "/x%1B%5B2J"):
            with self.subTest(path=path):
                api.request("GET", path)
        api.close()
        self.assertEqual(server.stop(), 0)
        lines = server.log_lines()
        self.assertEqual(len(lines), 4, lines)
        for line in lines:
            with self.subTest(line=line):
                self.assertRegex(line, LOG_LINE)
                self.assertNotIn("\x1b", line)
                self.assertTrue(line.split(" ")[5] == "404", line)

    def test_no_access_log(self):
        data = h.data_dir(self)
        server = h.start_server(self, data, "--no-access-log")
        api = h.Api(server.base_url)
        api.request("GET", "/v3/security/token/validate")
        api.close()
        self.assertEqual(server.stop(), 0)
        self.assertEqual(server.log_lines(), [])


class Tls(unittest.TestCase):
    def make_certificate(self, directory):
        cert = os.path.join(directory, "cert.pem")
        key = os.path.join(directory, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                            "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=h.PROGRAM_TIMEOUT)
        # openssl is part of the test dependencies: no certificate is a failure, not a skip.
        self.assertEqual(r.returncode, 0, "openssl cannot make a test certificate: " + r.stderr.decode())
        return cert, key

    def test_https(self):
        tmp = h.temp_dir(self)
        cert, key = self.make_certificate(tmp)
        data = os.path.join(tmp, "data")
        _, refresh = h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data, "--tls-cert", cert, "--tls-key", key, "--no-access-log")
        self.assertTrue(server.base_url.startswith("https://127.0.0.1:"), server.base_url)
        http = h.session()
        http.verify = cert  # the self-signed certificate is the only trust anchor
        api = h.Api(server.base_url, http)
        token = api.token_by_refresh(self, refresh)
        self.assertTrue(api.is_valid(self, token))
        api.close()
        self.assertEqual(server.stop(), 0)

    def test_password_login_over_tls(self):
        tmp = h.temp_dir(self)
        cert, key = self.make_certificate(tmp)
        data = os.path.join(tmp, "data")
        h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data, "--tls-cert", cert, "--tls-key", key, "--no-access-log")
        http = h.session()
        http.verify = cert
        api = h.Api(server.base_url, http)
        # Basic user:password over TLS: the whole exchange is encrypted.
        r = api.authenticate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.headers.get("Cache-Control"), "no-store")
        token = r.json()["result"]["authentication_token"]
        self.assertTrue(api.is_valid(self, token))
        h.assert_envelope(self, api.authenticate(EMAIL, PASSWORD + "x"), 406, "IW10031")
        api.close()
        # The TLS port does not answer plain HTTP: credentials cannot be sent to it in clear.
        plain = h.session()
        with self.assertRaises(requests.exceptions.RequestException):
            plain.get(server.base_url.replace("https://", "http://") + "/v3/security/authenticate",
                      headers={"Authorization": h.basic(EMAIL, PASSWORD)}, timeout=h.HTTP_TIMEOUT)
        plain.close()
        # And a client that does not trust the certificate refuses to send them.
        untrusting = h.session()
        with self.assertRaises(requests.exceptions.SSLError):
            untrusting.get(server.base_url + "/v3/security/authenticate",
                           headers={"Authorization": h.basic(EMAIL, PASSWORD)}, timeout=h.HTTP_TIMEOUT)
        untrusting.close()
        self.assertEqual(server.stop(), 0)

    def test_unusable_certificate_is_exit_1(self):
        tmp = h.temp_dir(self)
        cert = write_bytes(os.path.join(tmp, "cert.pem"), b"not a certificate\n")
        key = write_bytes(os.path.join(tmp, "key.pem"), b"not a key\n")
        r = h.run_program([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir",
                           os.path.join(tmp, "data"), "--tls-cert", cert, "--tls-key", key])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("listening on", r.stdout)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
