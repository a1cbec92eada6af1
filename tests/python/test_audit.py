"""The audit trail (docs/operations.md "The audit trail"): a scripted day of logins (good,
wrong, locked), exchanges, a revocation, a rotation and every iwsec-admin
change, then DATA/audit.log and `iwsec-admin audit --json` are read: every
event is there once with its fields, the admin's actor (SUDO_USER through
sudo, else the effective user), no password, token or hash anywhere, mode
0600 and the data directory's owner. Lines reach the file within a second.
With IWSEC_TEST_POSTGRES=1 the same day runs in cluster mode: admin events,
locks and unlocks come back from the database table, the replica's HTTP
events from its --audit-log file."""

import json
import os
import pwd
import re
import stat
import time
import unittest

import iwsec_harness as h

PASSWORD = "audit password"
NEW_PASSWORD = "audit password 2"
EMAIL = "ada@example.com"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [json.loads(line) for line in text.splitlines()]


class AuditTrail(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        self.me = pwd.getpwuid(os.geteuid()).pw_name
        self.secrets = [PASSWORD, NEW_PASSWORD]

    def admin(self, *args, stdin=None, env=None):
        argv = [h.admin_path()] + h.store_arguments(self.data) + list(args) + ["--pbkdf2-rounds", str(h.FAST_ROUNDS)]
        import subprocess
        r = subprocess.run(argv, input=(stdin or "").encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=h.PROGRAM_TIMEOUT, env=env)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(out) if "--json" in args and out.strip() else out

    def http_log(self):
        return os.path.join(self.data, "audit.log") if not h.CLUSTER_MODE else self.data + ".http-audit.log"

    def test_scripted_day(self):
        added = self.admin("add-user", EMAIL, "--json", stdin=PASSWORD + "\n")
        user_id, refresh = added["user_id"], added["refresh_token"]
        self.secrets.append(refresh)
        extra = ["--audit-log", self.http_log()] if h.CLUSTER_MODE else []
        server = h.start_server(self, self.data, "--lockout-failures", "3", "--lockout-wait", "600", *extra)
        api = h.Api(server.base_url)
        self.addCleanup(api.close)

        r = api.authenticate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200)
        access = r.json()["result"]["authentication_token"]
        login_request_id = r.headers["X-Request-Id"]
        self.secrets.append(access)
        # Within a second (generous margin: 3 s) the line is in the file.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any(e["event"] == "login" for e in read_lines(self.http_log())):
            time.sleep(0.05)
        self.assertTrue(any(e["event"] == "login" for e in read_lines(self.http_log())), "no login line within 3 s")

        exchanged = api.access_token(refresh)
        self.assertEqual(exchanged.status_code, 200)
        self.secrets.append(exchanged.json()["result"]["authentication_token"])
        self.assertEqual(api.access_token("y" * 43).status_code, 406)
        self.assertEqual(api.revoke(access).status_code, 200)
        rotated = api.rotate(EMAIL, PASSWORD)
        self.assertEqual(rotated.status_code, 200)
        self.secrets.append(rotated.json()["refresh_token"])
        for _ in range(3):
            self.assertEqual(api.authenticate(EMAIL, "wrong password").status_code, 406)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 429)

        env = dict(os.environ)
        env["SUDO_USER"] = "alice-the-admin"
        self.admin("unlock", EMAIL, env=env)
        self.assertEqual(api.authenticate(EMAIL, PASSWORD).status_code, 200)
        self.admin("disable-user", EMAIL)
        self.admin("enable-user", EMAIL)
        self.secrets.append(self.admin("set-password", EMAIL, "--json", stdin=NEW_PASSWORD + "\n")["refresh_token"])
        self.secrets.append(self.admin("rotate-refresh-token", EMAIL, "--json")["refresh_token"])
        key_args = []
        if h.CLUSTER_MODE:
            key_args = ["--secret-file", self.data.rstrip("/") + ".cluster-key"]
        kid = self.admin(*key_args, "add-signing-key", "--json")["kid"]
        self.admin(*key_args, "retire-signing-key", kid, "--json")
        self.admin("delete-user", EMAIL)
        api.close()
        server.stop()

        if not h.CLUSTER_MODE:
            for name in ("users.json", "users.json.journal"):  # the snapshot and the changes since
                if os.path.exists(os.path.join(self.data, name)):
                    with open(os.path.join(self.data, name), encoding="utf-8") as f:
                        self.secrets += re.findall(r'"(\$pbkdf2-sha256\$[^"]+)"', f.read())
            self.secrets.append(h.signing_secret(self.data).hex())

        trail = self.admin("audit", "--json")
        self.assertIsInstance(trail, list)
        http_events = read_lines(self.http_log())
        every = trail if not h.CLUSTER_MODE else trail + http_events
        for e in every:
            self.assertRegex(e["time"], TIME)
            self.assertIsInstance(e["event"], str)
        times = [e["time"] for e in trail]
        self.assertEqual(times, sorted(times), "newest last")

        def find(where, event, **fields):
            got = [e for e in where if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]
            self.assertTrue(got, "no %s %r in %r" % (event, fields, [x["event"] for x in where]))
            return got[0]

        http = trail if not h.CLUSTER_MODE else http_events
        login = find(http, "login", result="success", email=EMAIL, request_id=login_request_id)
        self.assertEqual(login["user_id"], user_id)
        self.assertEqual(login["client"], "127.0.0.1")
        for e in http:
            if e["event"] in ("login", "token_exchange", "revocation", "refresh_rotation"):
                self.assertRegex(e.get("request_id", ""), r"^[A-Za-z0-9._:-]{1,64}$", e)
                self.assertEqual(e["client"], "127.0.0.1", e)
        find(http, "login", result="failure", reason="bad_credentials", email=EMAIL)
        find(http, "login", result="locked", reason="locked", email=EMAIL)
        find(http, "token_exchange", result="success", user_id=user_id)
        find(http, "token_exchange", result="failure", reason="unknown_refresh_token")
        find(http, "revocation", result="success", user_id=user_id)
        find(http, "refresh_rotation", result="success", user_id=user_id)
        # In cluster mode too: the replica whose attempt set the lock reports it.
        lock = find(trail, "lock", email=EMAIL)
        self.assertEqual(lock["result"], "locked")
        self.assertRegex(lock["until"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        unlock = find(trail, "unlock", email=EMAIL)
        self.assertEqual(unlock["actor"], "alice-the-admin")
        for event in ("user_added", "user_disabled", "user_enabled", "password_set", "refresh_token_rotated",
                      "user_deleted"):
            e = find(trail, event, email=EMAIL, actor=self.me)
            self.assertEqual(e["user_id"], user_id)
        find(trail, "signing_key_added", actor=self.me, kid=kid)
        find(trail, "signing_key_retired", actor=self.me, kid=kid)
        self.assertEqual(sum(1 for e in trail if e["event"] == "user_disabled"), 1)

        # Never a secret: in the files, the table's answer, the text form.
        text = self.admin("audit")
        blobs = [json.dumps(trail), text]
        for path in (self.http_log(), os.path.join(self.data, "audit.log")):
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    blobs.append(f.read())
                st = os.stat(path)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, path)
                self.assertEqual(st.st_uid, os.geteuid(), path)
        for blob in blobs:
            for secret in self.secrets:
                h.assert_no_secret(self, secret, blob, "audit trail")
            self.assertNotIn("pbkdf2", blob)
        self.assertIn("user_disabled", text)

        # --email and --since filter.
        only = self.admin("audit", "--json", "--email", "nobody@example.com")
        self.assertEqual(only, [])
        recent = self.admin("audit", "--json", "--since", "3600")
        self.assertEqual(len(recent), len(trail))

    @unittest.skipIf(h.CLUSTER_MODE, "a data-directory file")
    @unittest.skipUnless(os.geteuid() == 0, "root runs iwsec-admin on another account's data directory")
    def test_root_admin_keeps_the_directory_owner(self):
        h.add_user(self, self.data, EMAIL, PASSWORD)
        owner = pwd.getpwnam("nobody")
        for root, dirs, files in os.walk(self.data):
            for name in dirs + files:
                os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid)
        os.chown(self.data, owner.pw_uid, owner.pw_gid)
        os.remove(os.path.join(self.data, "audit.log"))  # so root's command creates it
        self.admin("disable-user", EMAIL)
        st = os.stat(os.path.join(self.data, "audit.log"))
        self.assertEqual((st.st_uid, st.st_gid), (owner.pw_uid, owner.pw_gid))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(read_lines(os.path.join(self.data, "audit.log"))[0]["actor"], "root")

    def test_every_line_kept_under_load(self):
        # Audit lines are never dropped: 16 clients exchange as fast as they
        # can; every exchange is in the trail once the server has stopped.
        _, refresh = h.add_user(self, self.data, EMAIL, PASSWORD)
        extra = ["--audit-log", self.http_log()] if h.CLUSTER_MODE else []
        server = h.start_server(self, self.data, "--no-access-log", *extra)
        import concurrent.futures
        per_client, clients = 150, 16

        def run(_):
            api = h.Api(server.base_url)
            try:
                return sum(api.access_token(refresh).status_code == 200 for _ in range(per_client))
            finally:
                api.close()

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            ok = sum(pool.map(run, range(clients)))
        self.assertEqual(ok, per_client * clients)
        server.stop()
        got = [e for e in read_lines(self.http_log()) if e["event"] == "token_exchange"]
        self.assertEqual(len(got), per_client * clients)
        self.assertEqual(len({e["request_id"] for e in got}), len(got))

    @unittest.skipIf(h.CLUSTER_MODE, "a data-directory flag")
    def test_no_audit_log_and_audit_log_elsewhere(self):
        h.add_user(self, self.data, EMAIL, PASSWORD)
        elsewhere = os.path.join(h.temp_dir(self), "server-audit.log")
        server = h.start_server(self, self.data, "--no-access-log", "--audit-log", elsewhere)
        api = h.Api(server.base_url)
        api.token_by_password(self, EMAIL, PASSWORD)
        api.close()
        server.stop()
        self.assertEqual([e["event"] for e in read_lines(elsewhere)], ["login"])
        self.assertEqual([e["event"] for e in read_lines(os.path.join(self.data, "audit.log"))], ["user_added"])
        server = h.start_server(self, self.data, "--no-access-log", "--no-audit-log")
        api = h.Api(server.base_url)
        api.token_by_password(self, EMAIL, PASSWORD)
        api.close()
        server.stop()
        self.assertEqual([e["event"] for e in read_lines(os.path.join(self.data, "audit.log"))], ["user_added"])

    @unittest.skipIf(h.CLUSTER_MODE, "a data-directory file")
    def test_reopened_on_sighup(self):
        import signal
        h.add_user(self, self.data, EMAIL, PASSWORD)
        server = h.start_server(self, self.data, "--no-access-log")
        api = h.Api(server.base_url)
        path = os.path.join(self.data, "audit.log")
        os.rename(path, path + ".1")  # as logrotate does
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline and not read_lines(path):
            api.token_by_password(self, EMAIL, PASSWORD)
            time.sleep(0.1)
        self.assertTrue(read_lines(path), "audit.log not reopened after SIGHUP")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        api.close()
        server.stop()


if __name__ == "__main__":
    unittest.main()
