"""Signing-key rotation with the real programs (docs/operations.md, signing keys).

iwsec-admin list-signing-keys / add-signing-key / retire-signing-key on a
data directory while iwsec-server runs on it (applied from the next request,
no restart), the same on a --secret-file keyring with a SIGHUP reload, and a
data directory made by an earlier version (a raw 32-byte signing.key) taken
over without invalidating its tokens.
"""

import base64
import json
import os
import signal
import time
import unittest

import jwt

import iwsec_harness as h

EMAIL = "keys.test@example.com"
PASSWORD = "k3ys:test"


def header_of(token):
    return jwt.get_unverified_header(token)


def keys_json(*location):
    r = h.run_program([h.admin_path()] + list(location) + ["list-signing-keys", "--json"])
    if r.returncode != 0:
        raise AssertionError("list-signing-keys failed: " + r.stderr)
    return json.loads(r.stdout)


def write_raw_key(path):
    """A raw 32-byte key file (mode 0600), as earlier versions made; returns the key."""
    raw = os.urandom(32)
    while raw.startswith(b"iwsec-keyring"):
        raw = os.urandom(32)
    with open(path, "wb") as f:
        f.write(raw)
    os.chmod(path, 0o600)
    return raw


def key_admin(*args):
    return h.run_program([h.admin_path()] + list(args))


class DataDirectoryRotation(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        h.add_user(self, self.data, EMAIL, PASSWORD)
        self.server = h.start_server(self, self.data, "--no-access-log")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)

    def test_add_then_retire_while_running(self):
        keys = keys_json("--data-dir", self.data)
        self.assertEqual(len(keys), 1)
        first_kid = keys[0]["kid"]
        self.assertTrue(keys[0]["signing"])
        self.assertRegex(keys[0]["created"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        old_token = self.api.token_by_password(self, EMAIL, PASSWORD)
        self.assertNotIn("kid", header_of(old_token), "with one key tokens name no kid")
        self.assertTrue(self.api.is_valid(self, old_token))
        self.assertTrue(self.api.is_valid(self, old_token))  # cached now

        r = key_admin("--data-dir", self.data, "add-signing-key", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        new_kid = json.loads(r.stdout)["kid"]
        self.assertNotEqual(new_kid, first_kid)
        self.assertEqual([k["kid"] for k in keys_json("--data-dir", self.data)], [first_kid, new_kid])

        # The very next request signs with the new key; the old token still verifies.
        new_token = self.api.token_by_password(self, EMAIL, PASSWORD)
        self.assertEqual(header_of(new_token).get("kid"), new_kid)
        self.assertEqual(jwt.decode(new_token, h.signing_secret(self.data), algorithms=["HS256"])["gen"], 0)
        self.assertTrue(self.api.is_valid(self, old_token))
        self.assertTrue(self.api.is_valid(self, new_token))

        r = key_admin("--data-dir", self.data, "retire-signing-key", first_kid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(first_kid, r.stdout)
        # At once, though the server had the old token in its cache.
        self.assertFalse(self.api.is_valid(self, old_token))
        self.assertEqual(self.api.revoke(old_token).status_code, 401)
        self.assertTrue(self.api.is_valid(self, new_token))
        self.assertEqual([k["kid"] for k in keys_json("--data-dir", self.data)], [new_kid])
        # One key again: new tokens name no kid, and still verify.
        third = self.api.token_by_password(self, EMAIL, PASSWORD)
        self.assertNotIn("kid", header_of(third))
        self.assertTrue(self.api.is_valid(self, third))

    def test_list_never_shows_a_key(self):
        key_admin("--data-dir", self.data, "add-signing-key")
        secrets = [k[2] for k in h.read_signing_keys(os.path.join(self.data, "signing.key"))]
        for args in (["list-signing-keys"], ["list-signing-keys", "--json"]):
            r = key_admin("--data-dir", self.data, *args)
            self.assertEqual(r.returncode, 0, r.stderr)
            for secret in secrets:
                h.assert_no_secret(self, base64.urlsafe_b64encode(secret).decode().rstrip("="), r.stdout, "key")
                h.assert_no_secret(self, secret.hex(), r.stdout, "key")

    def test_refusals(self):
        kid = keys_json("--data-dir", self.data)[0]["kid"]
        for args, words in ((["retire-signing-key", kid], "only signing key"),
                            (["retire-signing-key", "no-such-kid"], "no-such-kid")):
            with self.subTest(args=args):
                r = key_admin("--data-dir", self.data, *args)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(words, r.stderr)
                self.assertEqual(r.stderr.count("\n"), 1)
                r = key_admin("--data-dir", self.data, "--json", *args)
                self.assertEqual(r.returncode, 1)
                self.assertIn(words, json.loads(r.stdout)["error"])
        r = key_admin("--data-dir", self.data, "retire-signing-key")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("KID", r.stderr)
        r = key_admin("--data-dir", os.path.join(self.data, "typo"), "list-signing-keys")
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.join(self.data, "typo"), r.stderr)
        self.assertIn("No such file or directory", r.stderr)

    def test_a_broken_keyring_is_503_not_stale_keys(self):
        token = self.api.token_by_password(self, EMAIL, PASSWORD)
        path = os.path.join(self.data, "signing.key")
        with open(path, "rb") as f:
            good = f.read()
        broken = path + ".broken"
        with open(broken, "w") as f:
            f.write("iwsec-keyring 1\nnot a key line\n")
        os.chmod(broken, 0o600)
        os.replace(broken, path)
        r = self.api.validate(token)
        h.assert_envelope(self, r, 503, "IW10002")
        self.assertIn("Retry-After", r.headers)
        with open(broken, "wb") as f:
            f.write(good)
        os.chmod(broken, 0o600)
        os.replace(broken, path)
        self.assertTrue(self.api.is_valid(self, token))


class SecretFileKeyring(unittest.TestCase):
    def test_sighup_reloads_a_secret_file_keyring(self):
        tmp = h.temp_dir(self)
        data = os.path.join(tmp, "data")
        ring = os.path.join(tmp, "keys.ring")
        r = key_admin("--secret-file", ring, "add-signing-key", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        first_kid = json.loads(r.stdout)["kid"]
        self.assertEqual(h.file_mode(ring), 0o600)
        h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data, "--secret-file", ring, "--no-access-log")
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        self.assertFalse(os.path.exists(os.path.join(data, "signing.key")), "with --secret-file no signing.key")
        old_token = api.token_by_password(self, EMAIL, PASSWORD)

        r = key_admin("--secret-file", ring, "add-signing-key", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        second_kid = json.loads(r.stdout)["kid"]
        self.assertEqual([k["kid"] for k in keys_json("--secret-file", ring)], [first_kid, second_kid])
        # Not watched: until SIGHUP the server signs with the keys it loaded.
        self.assertNotIn("kid", header_of(api.token_by_password(self, EMAIL, PASSWORD)))

        def reloaded(expected_kid):
            server.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + h.HTTP_TIMEOUT
            while time.monotonic() < deadline:
                if header_of(api.token_by_password(self, EMAIL, PASSWORD)).get("kid") == expected_kid:
                    return True
                time.sleep(0.05)  # polling a condition with a deadline, not a fixed wait
            return False

        self.assertTrue(reloaded(second_kid), "SIGHUP did not load the added key")
        self.assertTrue(api.is_valid(self, old_token))
        r = key_admin("--secret-file", ring, "retire-signing-key", first_kid)
        self.assertEqual(r.returncode, 0, r.stderr)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + h.HTTP_TIMEOUT
        while api.is_valid(self, old_token) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(api.is_valid(self, old_token), "retired key still verifies after SIGHUP")

        # A broken file on SIGHUP: the server keeps its keys and says why.
        with open(ring, "w") as f:
            f.write("iwsec-keyring 1\nbroken\n")
        server.proc.send_signal(signal.SIGHUP)
        err = server.wait_for_stderr(lambda text: "keeping the signing keys" in text)
        self.assertIn("keeping the signing keys in use: key file " + ring + " line 2", err)
        self.assertTrue(api.is_valid(self, api.token_by_password(self, EMAIL, PASSWORD)))
        api.close()
        self.assertEqual(server.stop(), 0)

    def test_raw_secret_file_still_works_and_can_become_a_keyring(self):
        path = os.path.join(h.temp_dir(self), "raw.key")
        raw = write_raw_key(path)
        self.assertEqual([k["kid"] for k in keys_json("--secret-file", path)], ["legacy"])
        r = key_admin("--secret-file", path, "add-signing-key")
        self.assertEqual(r.returncode, 0, r.stderr)
        keys = h.read_signing_keys(path)
        self.assertEqual(keys[0][0], "legacy")
        self.assertEqual(keys[0][2], raw)
        self.assertEqual(len(keys), 2)


class TakeOver(unittest.TestCase):
    def test_old_signing_key_is_taken_over_and_its_tokens_keep_verifying(self):
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        path = os.path.join(data, "signing.key")
        raw = write_raw_key(path)  # as an earlier version made it
        server = h.start_server(self, data, "--no-access-log")
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        old_token = api.token_by_password(self, EMAIL, PASSWORD)
        self.assertNotIn("kid", header_of(old_token))
        jwt.decode(old_token, raw, algorithms=["HS256"])  # signed by the raw key
        with open(path, "rb") as f:
            self.assertEqual(f.read(), raw, "the server rewrote an old signing.key merely by starting")
        self.assertEqual([k["kid"] for k in keys_json("--data-dir", data)], ["legacy"])

        r = key_admin("--data-dir", data, "add-signing-key", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        new_kid = json.loads(r.stdout)["kid"]
        self.assertEqual(h.file_mode(path), 0o600)
        self.assertEqual(h.read_signing_keys(path)[0], ("legacy", h.read_signing_keys(path)[0][1], raw))
        self.assertTrue(api.is_valid(self, old_token))
        new_token = api.token_by_password(self, EMAIL, PASSWORD)
        self.assertEqual(header_of(new_token)["kid"], new_kid)
        api.close()
        self.assertEqual(server.stop(), 0)

        # After a restart too.
        server = h.start_server(self, data, "--no-access-log")
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        self.assertTrue(api.is_valid(self, old_token))
        self.assertTrue(api.is_valid(self, new_token))
        api.close()
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
