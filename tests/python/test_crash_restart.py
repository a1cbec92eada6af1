"""Nothing acknowledged is lost across kill -9 and restart (docs/data-directory.md "Durability").

Each revocation or rotation the server answered 200 must hold after the
server is SIGKILLed (no chance to flush anything) and started again on the
same data directory; the signing key and the users survive unchanged.
"""

import json
import os
import unittest

import iwsec_harness as h

EMAIL = "crash.test@example.com"
PASSWORD = "crash:test:pässword"


class CrashRestart(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        self.user_id, self.refresh = h.add_user(self, self.data, EMAIL, PASSWORD)
        self.server = None
        self.api = None

    def start(self):
        self.server = h.start_server(self, self.data, "--no-access-log")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)

    def crash(self):
        self.api.close()
        self.server.kill()
        self.assertEqual(self.server.returncode, -9)

    def read_key(self):
        with open(os.path.join(self.data, "signing.key"), "rb") as f:
            return f.read()

    def assert_private_files(self):
        for name in ("users.json", "signing.key", "revocations.journal"):
            with self.subTest(file=name):
                path = os.path.join(self.data, name)
                self.assertTrue(os.path.isfile(path), name + " missing")
                self.assertEqual(h.file_mode(path), 0o600, name)

    def test_acknowledged_revocation_and_rotation_survive_kill(self):
        self.start()
        key_before = self.read_key()
        self.assertEqual(len(h.signing_secret(self.data)), 32)

        by_password = self.api.token_by_password(self, EMAIL, PASSWORD)
        by_refresh = self.api.token_by_refresh(self, self.refresh)
        self.assertTrue(self.api.is_valid(self, by_password))
        self.assertTrue(self.api.is_valid(self, by_refresh))

        r = self.api.revoke(by_password)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["result"], "Token successfully blacklisted")
        self.assertFalse(self.api.is_valid(self, by_password))

        before_rotation = self.api.token_by_refresh(self, self.refresh)
        r = self.api.rotate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200, r.text)
        new_refresh = r.json()["refresh_token"]
        self.assertNotEqual(new_refresh, self.refresh)
        after_rotation = self.api.token_by_refresh(self, new_refresh)
        self.assertFalse(self.api.is_valid(self, before_rotation))
        self.assertTrue(self.api.is_valid(self, after_rotation))

        self.crash()
        self.start()

        self.assertEqual(self.read_key(), key_before, "signing key changed across a restart")
        self.assertFalse(self.api.is_valid(self, by_password), "revoked token valid after kill -9")
        self.assertFalse(self.api.is_valid(self, by_refresh), "pre-rotation token valid after kill -9")
        self.assertFalse(self.api.is_valid(self, before_rotation), "pre-rotation token valid after kill -9")
        h.assert_envelope(self, self.api.access_token(self.refresh), 406, "IW10031")
        fresh = self.api.token_by_refresh(self, new_refresh)
        self.assertTrue(self.api.is_valid(self, fresh))
        # Minted before the crash, after the rotation, never revoked: still
        # valid, so the key and the generation came back unchanged.
        self.assertTrue(self.api.is_valid(self, after_rotation))
        self.assert_private_files()

        # The revocation still blocks a revoke-again (idempotent 200) and the
        # user's password still works.
        self.assertEqual(self.api.revoke(by_password).status_code, 200)
        self.api.token_by_password(self, EMAIL, PASSWORD)
        self.api.close()
        self.assertEqual(self.server.stop(), 0)

    def test_every_acknowledged_change_survives_repeated_kills(self):
        rounds = 5
        revoked = []        # tokens whose revocation got a 200
        stale = []          # tokens minted before an acknowledged rotation
        old_refresh = []    # rotated-away refresh tokens
        refresh = self.refresh
        alive = None        # the newest token: must stay valid
        self.start()
        key = self.read_key()
        for i in range(rounds):
            with self.subTest(round=i):
                # Revoke one token and, right after the 200, kill.
                victim = self.api.token_by_password(self, EMAIL, PASSWORD)
                keeper = self.api.token_by_refresh(self, refresh)
                r = self.api.revoke(victim)
                self.assertEqual(r.status_code, 200, r.text)
                revoked.append(victim)
                self.crash()
                self.start()
                self.assertTrue(self.api.is_valid(self, keeper))
                if alive is not None:
                    self.assertTrue(self.api.is_valid(self, alive))

                # Rotate and, right after the 200, kill.
                r = self.api.rotate(EMAIL, PASSWORD)
                self.assertEqual(r.status_code, 200, r.text)
                stale += [keeper] + ([alive] if alive else [])
                old_refresh.append(refresh)
                refresh = r.json()["refresh_token"]
                self.crash()
                self.start()

                self.assertEqual(self.read_key(), key)
                for n, token in enumerate(revoked):
                    self.assertFalse(self.api.is_valid(self, token), "revoked token #%d valid again" % n)
                for n, token in enumerate(stale):
                    self.assertFalse(self.api.is_valid(self, token), "stale token #%d valid again" % n)
                for n, token in enumerate(old_refresh):
                    h.assert_envelope(self, self.api.access_token(token), 406, "IW10031")
                alive = self.api.token_by_refresh(self, refresh)
                self.assertTrue(self.api.is_valid(self, alive))

        r = h.admin(self.data, "list-users", "--json", rounds=None)
        self.assertEqual(r.returncode, 0, r.stderr)
        users = json.loads(r.stdout)
        self.assertEqual(len(users), 1)
        self.assertEqual(users[0]["refresh_generation"], rounds)
        self.assert_private_files()
        self.api.close()
        self.assertEqual(self.server.stop(), 0)

    def test_kill_between_admin_change_and_restart(self):
        # iwsec-admin's writes are durable too: a rotation made while the
        # server runs holds after the server is killed.
        self.start()
        token = self.api.token_by_refresh(self, self.refresh)
        r = h.admin(self.data, "rotate-refresh-token", EMAIL, "--json", rounds=None)
        self.assertEqual(r.returncode, 0, r.stderr)
        new_refresh = json.loads(r.stdout)["refresh_token"]
        self.assertFalse(self.api.is_valid(self, token))
        self.crash()
        self.start()
        self.assertFalse(self.api.is_valid(self, token))
        h.assert_envelope(self, self.api.access_token(self.refresh), 406, "IW10031")
        self.api.token_by_refresh(self, new_refresh)
        self.api.close()
        self.assertEqual(self.server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
