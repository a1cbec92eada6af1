"""The data directory under an operator's and an attacker's hands (issue 10,
findings 1 and 5): an unprivileged server with a root iwsec-admin, a full
descriptor table, a users file that turns invalid, and data directories or
key files other accounts could read or write."""

import json
import os
import pwd
import resource
import shutil
import socket
import stat
import time
import unittest

import iwsec_harness as h

EMAIL = "ops@example.com"
PASSWORD = "a long test password"


def service_account():
    """The unprivileged account the server runs as in these tests."""
    return pwd.getpwnam("nobody")


def as_user(account, argv):
    # setpriv execs the program itself, so signals reach it directly.
    return ["setpriv", "--reuid", str(account.pw_uid), "--regid", str(account.pw_gid), "--clear-groups", "--"] + list(argv)


class Unprivileged(unittest.TestCase):
    """iwsec-server runs as a service account, root runs iwsec-admin."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (to run the server as another account)")
        if shutil.which("setpriv") is None:
            self.skipTest("needs setpriv (util-linux)")
        self.account = service_account()
        parent = h.temp_dir(self)
        os.chmod(parent, 0o755)  # the service account must reach its directory
        self.data = os.path.join(parent, "data")
        os.mkdir(self.data, 0o700)
        os.chown(self.data, self.account.pw_uid, self.account.pw_gid)
        for binary in (h.server_path(), h.admin_path()):
            probe = h.run_program(as_user(self.account, [binary, "--help"]))
            if probe.returncode != 0:
                self.skipTest("%s cannot run %s: %s" % (self.account.pw_name, binary, probe.stderr))
        # The account itself creates its user, as an operator would with sudo -u.
        r = h.run_program(as_user(self.account, [h.admin_path(), "--data-dir", self.data, "add-user", EMAIL,
                                                 "--json", "--pbkdf2-rounds", str(h.FAST_ROUNDS)]),
                          stdin=PASSWORD + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)

    def start(self):
        argv = as_user(self.account, [h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir",
                                      self.data, "--pbkdf2-rounds", str(h.FAST_ROUNDS), "--no-access-log"])
        server = h.Server(argv)
        self.addCleanup(server.force_stop)
        server.wait_listening()
        return server

    def users_file(self):
        return os.path.join(self.data, "users.json")

    def test_root_admin_disable_user_ends_logins_and_keeps_the_owner(self):
        server = self.start()
        api = h.Api(server.base_url)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 200)
        before = os.stat(self.users_file())

        r = h.admin(self.data, "disable-user", EMAIL)  # as root
        self.assertEqual(r.returncode, 0, r.stderr)
        after = os.stat(self.users_file())
        self.assertEqual((after.st_uid, after.st_gid), (before.st_uid, before.st_gid))
        self.assertEqual(stat.S_IMODE(after.st_mode), stat.S_IMODE(before.st_mode))
        lock = os.stat(self.users_file() + ".lock")
        self.assertEqual(lock.st_uid, self.account.pw_uid)

        r = api.authenticate(EMAIL, PASSWORD)
        self.assertIn(r.status_code, (406, 503), "a disabled user logged in")
        self.assertEqual(r.status_code, 406, r.text)  # the server could read root's change
        self.assertEqual(h.admin(self.data, "enable-user", EMAIL).returncode, 0)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 200)
        api.close()
        self.assertEqual(server.stop(), 0)

    def test_a_users_file_the_server_cannot_read_fails_closed_and_recovers(self):
        server = self.start()
        api = h.Api(server.base_url)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 200)
        # What an earlier iwsec-admin run by root left: root's file, mode 0600.
        r = h.admin(self.data, "disable-user", EMAIL)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chown(self.users_file(), 0, 0)

        r = api.authenticate(EMAIL, PASSWORD)
        body = h.assert_envelope(self, r, 503, "IW10002")
        self.assertTrue(r.headers.get("Retry-After", "").isdigit(), r.headers)
        self.assertNotIn(PASSWORD, json.dumps(body))
        self.assertEqual(api.access_token("not-a-token").status_code, 503)
        err = server.wait_for_stderr(lambda text: "Permission denied" in text)
        lines = [l for l in err.splitlines() if "users.json" in l]
        self.assertEqual(len(lines), 1, server.stderr_text())
        self.assertIn(self.users_file(), lines[0])
        self.assertIn("Permission denied", lines[0])

        # Given back to the account, it applies: the disabled user is refused.
        os.chown(self.users_file(), self.account.pw_uid, self.account.pw_gid)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 406)
        api.close()
        self.assertEqual(server.stop(), 0)
        h.assert_no_secret(self, PASSWORD, server.stderr_text(), "server stderr")

    def test_admin_run_by_another_unprivileged_account_is_refused(self):
        # root's own data directory, which nobody may not manage.
        data = os.path.join(h.temp_dir(self), "root-data")
        h.add_user(self, data, EMAIL, PASSWORD)
        os.chmod(os.path.dirname(data), 0o755)
        r = h.run_program(as_user(self.account, [h.admin_path(), "--data-dir", data, "list-users"]))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(data, r.stderr)


class DescriptorsExhausted(unittest.TestCase):
    LIMIT = 48

    def test_admin_change_while_the_descriptor_table_is_full_is_never_a_stale_200(self):
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        limit = self.LIMIT

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        # Soft and hard: the server cannot raise it back.
        server = h.start_server(self, data, "--no-access-log", "--threads", "128", preexec_fn=low_limit)
        api = h.Api(server.base_url)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 200)

        # Idle connections until the server cannot accept another descriptor.
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        host, port = server.base_url.rsplit("/", 1)[1].rsplit(":", 1)
        fd_dir = "/proc/%d/fd" % server.proc.pid
        deadline = time.monotonic() + h.HTTP_TIMEOUT
        # The connection opened before the flood must outlive the server's
        # 5 s keep-alive timeout however slow the machine (a sanitizer build):
        # a cheap request on it now and then keeps it open.
        pinged = time.monotonic()
        while len(os.listdir(fd_dir)) < limit:
            self.assertLess(time.monotonic(), deadline, "the server's descriptor table never filled")
            if time.monotonic() - pinged > 1.0:
                self.assertEqual(api.validate("not.a.token").status_code, 200)
                pinged = time.monotonic()
            if len(idle) < 4 * limit:
                idle.append(socket.create_connection((host, int(port)), timeout=h.HTTP_TIMEOUT))
            else:
                time.sleep(0.01)

        self.assertEqual(api.validate("not.a.token").status_code, 200)  # the connection is alive
        r = h.admin(data, "disable-user", EMAIL)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = api.authenticate(EMAIL, PASSWORD)  # on the connection opened before the flood
        self.assertIn(r.status_code, (406, 503), "a stale 200 for a disabled user")
        if r.status_code == 503:
            h.assert_envelope(self, r, 503, "IW10002")
            # The log line was written before the answer; the harness reads stderr on its own thread.
            self.assertIn("Too many open files", server.wait_for_stderr(lambda text: "Too many open files" in text))

        for s in idle:
            s.close()
        idle.clear()
        # Descriptors back: the change applies.
        deadline = time.monotonic() + h.HTTP_TIMEOUT
        while True:
            r = api.authenticate(EMAIL, PASSWORD)
            if r.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r.status_code, 406)
        api.close()
        server.force_stop()


class InvalidContent(unittest.TestCase):
    def test_a_users_file_turned_invalid_answers_503_then_recovers(self):
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data, "--no-access-log")
        api = h.Api(server.base_url)
        token = api.token_by_password(self, EMAIL, PASSWORD)
        path = os.path.join(data, "users.json")
        with open(path, "rb") as f:
            good = f.read()
        with open(path + ".new", "wb") as f:
            f.write(b'{"version": 1, "users": [{"oops"')
        os.rename(path + ".new", path)

        for r in (api.authenticate(EMAIL, PASSWORD), api.validate(token), api.access_token("x" * 43)):
            h.assert_envelope(self, r, 503, "IW10002")
            self.assertIn("Retry-After", r.headers)
        err = server.wait_for_stderr(lambda text: "invalid content" in text)
        self.assertIn(path, err)
        self.assertIn("invalid content", err)

        with open(path + ".new", "wb") as f:
            f.write(good)
        os.rename(path + ".new", path)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 200)
        self.assertTrue(api.is_valid(self, token))
        api.close()
        self.assertEqual(server.stop(), 0)


class Untrusted(unittest.TestCase):
    def refused(self, argv, *needles):
        r = h.run_program(argv, timeout=15)  # a server that does not refuse runs until this bound
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("listening on", r.stdout)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        for needle in needles:
            self.assertIn(needle, r.stderr)
        return r.stderr

    def server_argv(self, data, *extra):
        return [h.server_path(), "--host", "127.0.0.1", "--port", "0", "--data-dir", data] + list(extra)

    def test_group_writable_data_directory_is_refused(self):
        data = os.path.join(h.temp_dir(self), "data")
        os.mkdir(data, 0o700)
        os.chmod(data, 0o770)
        self.refused(self.server_argv(data), data, "0770")
        self.assertFalse(os.path.exists(os.path.join(data, "signing.key")), "nothing written into it")
        r = h.admin(data, "list-users")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(data, r.stderr)
        self.assertIn("0770", r.stderr)

    def test_readable_key_files_are_refused(self):
        data = h.data_dir(self)
        server = h.start_server(self, data, "--no-access-log")
        self.assertEqual(server.stop(), 0)
        key = os.path.join(data, "signing.key")
        os.chmod(key, 0o640)
        self.refused(self.server_argv(data), key, "0640")
        os.chmod(key, 0o600)
        secret = os.path.join(h.temp_dir(self), "secret")
        with open(secret, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(secret, 0o604)
        self.refused(self.server_argv(data, "--secret-file", secret), secret, "0604")

    def test_data_directory_of_another_account_is_refused_by_the_server_not_by_root_admin(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (to chown a directory to another account)")
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        account = service_account()
        for name in [""] + os.listdir(data):
            os.chown(os.path.join(data, name), account.pw_uid, account.pw_gid)
        self.refused(self.server_argv(data), data, "uid %d" % account.pw_uid)
        r = h.admin(data, "list-users")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(EMAIL, r.stdout)


if __name__ == "__main__":
    unittest.main()
