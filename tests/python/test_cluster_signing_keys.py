"""Cluster mode, signing keys in the database (docs/cluster.md): each key wrapped (AES-256-GCM) by the key-encryption key every
replica is given with --key-encryption-key; iwsec-admin add-signing-key /
retire-signing-key / list-signing-keys change the keys of every replica within
a second; a wrong key-encryption key stops a replica at start; the database
alone cannot mint a token.

Skips only when the PostgreSQL server binaries are not installed.
"""

import base64
import hashlib
import hmac
import json
import os
import time
import unittest

import iwsec_harness as h
from test_cluster import ClusterCase, wait_until, PASSWORD
import test_cluster

KEY_DEADLINE = 1.0  # docs/operations.md "Signing keys in cluster mode": every replica within a second


def setUpModule():
    test_cluster.setUpModule()


def tearDownModule():
    test_cluster.tearDownModule()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def header_of(token):
    return json.loads(b64url_decode(token.split(".")[0]))


class SigningKeysInTheDatabase(ClusterCase):
    def setUp(self):
        super().setUp()
        self.kek = self.kek_file("kek")

    def kek_file(self, name, data=None, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(os.urandom(32) if data is None else data)
        os.chmod(path, mode)
        return path

    def replica_argv(self, *extra):
        argv = super().replica_argv(*extra)
        i = argv.index("--secret-file")
        argv[i:i + 2] = ["--key-encryption-key", self.kek]
        return argv

    def key_admin(self, *args, kek=None):
        return h.run_program([h.admin_path(), "--postgres", self.conninfo] +
                             (["--key-encryption-key", kek] if kek else []) + list(args))

    def kids(self):
        r = self.key_admin("list-signing-keys", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def token(self, api, refresh):
        r = api.access_token(refresh)
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()["result"]["authentication_token"]

    def test_add_and_retire_reach_every_replica_within_a_second(self):
        a, b = self.start_replicas(2)
        refresh = self.add_user("keys@example.com", apis=[a, b])
        first = self.kids()
        self.assertEqual(len(first), 1, first)
        self.assertTrue(first[0]["signing"])
        old_token = self.token(a, refresh)
        self.assertTrue(self.valid(b, old_token))

        r = self.key_admin("add-signing-key", "--json", kek=self.kek)
        self.assertEqual(r.returncode, 0, r.stderr)
        added = json.loads(r.stdout)["kid"]
        done = time.monotonic()
        for api in (a, b):
            wait_until(lambda: header_of(self.token(api, refresh)).get("kid") == added, timeout=KEY_DEADLINE,
                       what="replica signing with the new key")
        print("key propagation: both replicas signed with %s %.0f ms after add-signing-key returned"
              % (added, (time.monotonic() - done) * 1000))
        new_token = self.token(b, refresh)
        for api in (a, b):
            self.assertTrue(self.valid(api, old_token), "a token of the older key still verifies")
            self.assertTrue(self.valid(api, new_token))
        listed = self.kids()
        self.assertEqual([k["kid"] for k in listed], [first[0]["kid"], added])
        self.assertEqual([k["signing"] for k in listed], [False, True])

        r = self.key_admin("retire-signing-key", first[0]["kid"])  # needs no key-encryption key
        self.assertEqual(r.returncode, 0, r.stderr)
        for api in (a, b):
            wait_until(lambda: not self.valid(api, old_token), timeout=KEY_DEADLINE, what="the retired key's token rejected")
            self.assertTrue(self.valid(api, new_token))
        self.assertEqual([k["kid"] for k in self.kids()], [added])
        r = self.key_admin("retire-signing-key", added)
        self.assertNotEqual(r.returncode, 0, "the only key cannot be retired")

    def test_existing_service_follows_the_keys_in_the_database(self):
        # The embedding example, on the library's DatabaseSigner: the same
        # keys as a bundled replica, and an admin's change within a second.
        (a,) = self.start_replicas(1)
        service = h.Server([h.existing_service_path(), "--host", "127.0.0.1", "--port", "0",
                            "--postgres", self.conninfo, "--key-encryption-key", self.kek])
        self.addCleanup(service.force_stop)
        service.wait_listening()
        host = h.Api(service.base_url)
        self.addCleanup(host.close)
        refresh = self.add_user("host-keys@example.com", apis=[a, host])
        old_token = self.token(host, refresh)
        self.assertTrue(self.valid(a, old_token))
        self.assertTrue(self.valid(host, self.token(a, refresh)))
        (first,) = [k["kid"] for k in self.kids()]
        r = self.key_admin("add-signing-key", "--json", kek=self.kek)
        self.assertEqual(r.returncode, 0, r.stderr)
        added = json.loads(r.stdout)["kid"]
        wait_until(lambda: header_of(self.token(host, refresh)).get("kid") == added, timeout=KEY_DEADLINE,
                   what="existing_service signing with the new key")
        r = self.key_admin("retire-signing-key", first)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: not self.valid(host, old_token), timeout=KEY_DEADLINE,
                   what="the retired key's token rejected by existing_service")
        host.close()
        self.assertEqual(service.stop(), 0)

    def test_a_wrong_key_encryption_key_refuses_to_start(self):
        (a,) = self.start_replicas(1)  # creates the first key under self.kek
        other = self.kek_file("other-kek")
        server = h.Server([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--postgres", self.conninfo,
                           "--key-encryption-key", other, "--no-access-log"])
        self.addCleanup(server.force_stop)
        with self.assertRaises(h.ServerError):
            server.wait_listening()
        self.assertIn("key-encryption key", server.stderr_text())
        self.assertIn("does not match", server.stderr_text())
        r = self.key_admin("add-signing-key", kek=other)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not match", r.stderr)
        self.assertEqual(len(self.kids()), 1)

    def test_a_wrong_key_encryption_key_is_found_before_any_key_is_used(self):
        # The first program creates the key (here iwsec-admin); a replica with
        # another key-encryption key must refuse even though no token exists.
        r = self.key_admin("add-signing-key", kek=self.kek)
        self.assertEqual(r.returncode, 0, r.stderr)
        other = self.kek_file("other-kek")
        server = h.Server([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--postgres", self.conninfo,
                           "--key-encryption-key", other, "--no-access-log"])
        self.addCleanup(server.force_stop)
        with self.assertRaises(h.ServerError):
            server.wait_listening()
        self.assertIn("does not match", server.stderr_text())

    def test_the_database_alone_cannot_mint(self):
        a, b = self.start_replicas(2)
        refresh = self.add_user("mint@example.com", apis=[a, b])
        self.assertEqual(self.key_admin("add-signing-key", kek=self.kek).returncode, 0)
        tokens = [self.token(a, refresh)]
        wait_until(lambda: header_of(self.token(a, refresh)).get("kid"), what="two keys")
        tokens.append(self.token(a, refresh))
        dump = test_cluster.PG.sql("SELECT t::text FROM iwsec_signing_keys t", dbname=self.db)
        self.assertTrue(dump)
        candidates = set()
        for word in dump.replace(",", " ").replace("(", " ").replace(")", " ").replace('"', " ").split():
            for decode in (lambda w: bytes.fromhex(w[2:] if w.startswith("\\x") else w), b64url_decode):
                try:
                    candidates.add(decode(word))
                except (ValueError, TypeError):
                    pass
        windows = set()
        for blob in candidates:
            windows.add(blob)
            for i in range(0, max(0, len(blob) - 32) + 1):
                windows.add(blob[i:i + 32])
        self.assertGreater(len(windows), 1)
        for token in tokens:
            signing_input, signature = token.rsplit(".", 1)
            for key in windows:
                mac = base64.urlsafe_b64encode(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
                self.assertNotEqual(mac.rstrip(b"=").decode(), signature, "a token signed with bytes the table holds")
        self.assertNotIn(self.kek_bytes().hex(), dump)

    def kek_bytes(self):
        with open(self.kek, "rb") as f:
            return f.read()

    def test_moving_from_a_key_file_to_the_database_keeps_tokens_valid(self):
        server = h.Server(super().replica_argv())  # --secret-file, as before
        self.addCleanup(server.force_stop)
        server.wait_listening()
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        refresh = self.add_user("moving@example.com", apis=[api])
        before = self.token(api, refresh)
        r = h.run_program([h.admin_path(), "--postgres", self.conninfo, "--secret-file", self.secret,
                           "--key-encryption-key", self.kek, "import-signing-keys", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"imported": 1})
        self.assertEqual([k["kid"] for k in self.kids()], ["legacy"])
        server.stop()
        (a,) = self.start_replicas(1)  # --key-encryption-key
        self.assertTrue(self.valid(a, before), "a token signed from the key file verifies after the move")
        self.assertTrue(self.valid(a, self.token(a, refresh)))
        r = h.run_program([h.admin_path(), "--postgres", self.conninfo, "--secret-file", self.secret,
                           "--key-encryption-key", self.kek, "import-signing-keys"])
        self.assertNotEqual(r.returncode, 0, "a second import is refused")
        self.assertIn("already holds signing keys", r.stderr)

    def test_flags(self):
        both = super().replica_argv() + ["--key-encryption-key", self.kek]
        r = h.run_program(both)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("exactly one of --secret-file and --key-encryption-key", r.stderr)
        for name, data, mode, why in (("short", os.urandom(16), 0o600, "at least 32"),
                                      ("open", os.urandom(32), 0o644, "")):
            path = self.kek_file(name, data, mode)
            r = h.run_program([h.server_path(), "--host", "127.0.0.1", "--port", "0", "--postgres", self.conninfo,
                               "--key-encryption-key", path, "--no-access-log"])
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(path, r.stderr)
            self.assertIn(why, r.stderr)
        r = self.key_admin("add-signing-key")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--key-encryption-key", r.stderr)


if __name__ == "__main__":
    unittest.main()
