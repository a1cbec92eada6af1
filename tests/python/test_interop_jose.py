"""Access tokens interoperate with Node's `jose` (docs/endpoints.md "Access tokens").

Debian's node-jose verifies what the library signs and what iwsec-server
issues; tokens jose mints with the same key and claims verify here; tokens
jose mints with another algorithm or key are rejected here.
"""

import json
import os
import shutil
import subprocess
import time
import unittest
import uuid

import iwsec_harness as h

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node", "jose_peer.js")
NODE = shutil.which("node") or shutil.which("nodejs")


def jose(*args):
    """Runs the jose peer; Debian's node modules live in /usr/share/nodejs."""
    env = dict(os.environ)
    env["NODE_PATH"] = "/usr/share/nodejs"
    r = subprocess.run([NODE, PEER] + list(args), capture_output=True, text=True, env=env, timeout=h.PROGRAM_TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("jose peer failed: " + r.stderr.strip())
    return r.stdout.strip()


class JoseInterop(unittest.TestCase):
    def setUp(self):
        if NODE is None:
            self.fail("node is not installed (apt-get install nodejs node-jose)")
        self.key = os.urandom(64)
        self.key_file = os.path.join(h.temp_dir(self), "key")
        with open(self.key_file, "wb") as f:
            f.write(self.key)
        self.now = int(time.time())

    def claims(self, **override):
        c = {
            "iat": self.now,
            "exp": self.now + 900,
            "jti": str(uuid.uuid4()),
            "sub": json.dumps({"email": "jose@example.com", "scope": {"action": "password"}}),
            "gen": 3,
            "user_id": "jose-user-1",
        }
        c.update(override)
        return c

    def ours_verify(self, token):
        r = h.testtool("verify", self.key_file, token, str(self.now))
        return r.stdout.split()

    def test_jose_verifies_our_tokens(self):
        r = h.testtool("sign", self.key_file, "jose@example.com", "refresh_token", str(self.now), str(self.now + 900), "2",
                       "jose-user-2")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(jose("verify", self.key_file, r.stdout.strip(), str(self.now)))
        self.assertTrue(out["ok"], out)
        self.assertEqual(out["header"], {"alg": "HS256"})
        payload = out["payload"]
        self.assertEqual(payload["exp"], payload["iat"] + 900)
        self.assertEqual(payload["gen"], 2)
        self.assertEqual(payload["user_id"], "jose-user-2")
        self.assertEqual(json.loads(payload["sub"]), {"email": "jose@example.com", "scope": {"action": "refresh_token"}})

    def test_jose_sees_our_expired_token_as_expired(self):
        r = h.testtool("sign", self.key_file, "jose@example.com", "password", str(self.now - 1000), str(self.now - 100), "0")
        out = json.loads(jose("verify", self.key_file, r.stdout.strip(), str(self.now)))
        self.assertEqual(out, {"ok": False, "code": "ERR_JWT_EXPIRED"})

    def test_tokens_jose_mints_verify_here(self):
        claims = self.claims()
        token = jose("sign", self.key_file, "HS256", json.dumps(claims))
        words = self.ours_verify(token)
        self.assertEqual(words[0], "ok", words)
        self.assertEqual(words[1:], ["jose@example.com", "password", str(claims["iat"]), str(claims["exp"]),
                                     claims["jti"], "3", "jose-user-1"])

    def test_what_jose_mints_otherwise_is_rejected_here(self):
        self.assertEqual(self.ours_verify(jose("sign", self.key_file, "HS512", json.dumps(self.claims()))),
                         ["error", "unsupported_algorithm"])
        self.assertEqual(self.ours_verify(jose("sign", self.key_file, "HS384", json.dumps(self.claims()))),
                         ["error", "unsupported_algorithm"])
        no_exp = self.claims()
        del no_exp["exp"]
        self.assertEqual(self.ours_verify(jose("sign", self.key_file, "HS256", json.dumps(no_exp))),
                         ["error", "bad_claims"])
        no_user_id = self.claims()
        del no_user_id["user_id"]
        self.assertEqual(self.ours_verify(jose("sign", self.key_file, "HS256", json.dumps(no_user_id))),
                         ["error", "bad_claims"])
        other_key = os.path.join(h.temp_dir(self), "other")
        with open(other_key, "wb") as f:
            f.write(os.urandom(64))
        self.assertEqual(self.ours_verify(jose("sign", other_key, "HS256", json.dumps(self.claims()))),
                         ["error", "bad_signature"])

    def test_jose_verifies_a_token_from_the_server(self):
        data = h.data_dir(self)
        user_id, refresh_token = h.add_user(self, data, "Server@Example.com", "pw")
        server = h.start_server(self, data)
        client = h.Api(server.url(""))
        self.addCleanup(client.close)
        r = client.access_token(refresh_token)
        self.assertEqual(r.status_code, 200, r.text)
        token = r.json()["result"]["authentication_token"]
        key_file = os.path.join(h.temp_dir(self), "raw.key")
        with open(key_file, "wb") as f:
            f.write(h.signing_secret(data))
        out = json.loads(jose("verify", key_file, token, str(int(time.time()))))
        self.assertTrue(out["ok"], out)
        self.assertEqual(json.loads(out["payload"]["sub"])["email"], "Server@Example.com")
        self.assertEqual(out["payload"]["user_id"], user_id)


if __name__ == "__main__":
    unittest.main()
