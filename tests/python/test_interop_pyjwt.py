"""Access tokens interoperate with PyJWT (docs/endpoints.md "Access tokens").

PyJWT verifies the tokens the library signs (through iwsec-testtool) and the
tokens iwsec-server issues; tokens PyJWT mints with the same key and claims
verify here; and what this library would never issue is rejected, each for
its exact reason.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import time
import unittest
import uuid

import jwt

import iwsec_harness as h

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
LIFETIME = 900


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_key():
    # PyJWT refuses HMAC keys that look like PEM or SSH keys; random bytes never do.
    key = os.urandom(32)
    while key.startswith(b"-----") or b"ssh-" in key:
        key = os.urandom(32)
    return key


def subject(email, action):
    return json.dumps({"email": email, "scope": {"action": action}})


USER_ID = "5f1c0a2b3c4d5e6f70819203"


def claims(email="alice@example.com", action="refresh_token", iat=None, lifetime=LIFETIME, gen=0, jti=None,
           user_id=USER_ID):
    iat = int(time.time()) if iat is None else iat
    return {
        "iat": iat,
        "exp": iat + lifetime,
        "jti": jti or str(uuid.uuid4()),
        "sub": subject(email, action),
        "gen": gen,
        "user_id": user_id,
    }


def decode_segment(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class TokenInterop(unittest.TestCase):
    def setUp(self):
        self.key = new_key()
        self.key_file = os.path.join(h.temp_dir(self), "key")
        with open(self.key_file, "wb") as f:
            f.write(self.key)
        self.now = int(time.time())

    # -- the library through iwsec-testtool ---------------------------------

    def sign(self, email, action, iat, exp, gen, key_file=None):
        r = h.testtool("sign", key_file or self.key_file, email, action, str(iat), str(exp), str(gen), USER_ID)
        self.assertEqual(r.returncode, 0, r.stderr)
        token = r.stdout.strip()
        self.assertEqual(r.stdout, token + "\n")
        return token

    def verify(self, token, now=None):
        """(ok, fields) with fields the words after ok/error."""
        r = h.testtool("verify", self.key_file, token, str(self.now if now is None else now))
        words = r.stdout.split()
        self.assertTrue(words, r.stderr)
        if words[0] == "ok":
            self.assertEqual(r.returncode, 0)
            return True, words[1:]
        self.assertEqual(words[0], "error", r.stdout)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(words), 2, r.stdout)
        return False, words[1]

    def assert_rejected(self, token, reason, now=None):
        ok, detail = self.verify(token, now)
        self.assertFalse(ok, "token accepted, expected %s" % reason)
        self.assertEqual(detail, reason)

    def pyjwt(self, payload, algorithm="HS256", key=None, headers=None):
        return jwt.encode(payload, self.key if key is None else key, algorithm=algorithm, headers=headers)

    # -- ours, verified by PyJWT -------------------------------------------

    def test_pyjwt_verifies_our_tokens(self):
        for email, action, gen in (("alice@example.com", "password", 0),
                                   ("Bob.Smith+tag@Example.org", "refresh_token", 7),
                                   ("o'brien\"quote\\slash@exämple.com", "password", 123456789)):
            with self.subTest(email=email, action=action):
                token = self.sign(email, action, self.now, self.now + LIFETIME, gen)
                decoded = jwt.decode(token, self.key, algorithms=["HS256"],
                                     options={"require": ["exp", "iat", "jti", "sub"]})
                self.assertEqual(jwt.get_unverified_header(token), {"alg": "HS256"})
                for name in ("iat", "exp", "gen"):
                    self.assertIs(type(decoded[name]), int, name)
                self.assertEqual(decoded["iat"], self.now)
                self.assertEqual(decoded["exp"], decoded["iat"] + LIFETIME)
                self.assertEqual(decoded["gen"], gen)
                self.assertEqual(decoded["user_id"], USER_ID)
                self.assertRegex(decoded["jti"], UUID4)
                self.assertIsInstance(decoded["sub"], str)
                sub = json.loads(decoded["sub"])
                self.assertEqual(sub, {"email": email, "scope": {"action": action}})

    def test_pyjwt_rejects_our_token_under_another_key(self):
        token = self.sign("alice@example.com", "password", self.now, self.now + LIFETIME, 0)
        with self.assertRaises(jwt.InvalidSignatureError):
            jwt.decode(token, new_key(), algorithms=["HS256"])

    def test_pyjwt_sees_our_expired_token_as_expired(self):
        token = self.sign("alice@example.com", "password", self.now - 2 * LIFETIME, self.now - LIFETIME, 0)
        with self.assertRaises(jwt.ExpiredSignatureError):
            jwt.decode(token, self.key, algorithms=["HS256"])

    def test_our_tokens_are_compact_unpadded(self):
        token = self.sign("alice@example.com", "password", self.now, self.now + LIFETIME, 0)
        parts = token.split(".")
        self.assertEqual(len(parts), 3)
        for part in parts:
            self.assertRegex(part, r"^[A-Za-z0-9_-]+$")
        mac = hmac.new(self.key, (parts[0] + "." + parts[1]).encode("ascii"), hashlib.sha256).digest()
        self.assertEqual(parts[2], b64url(mac))

    def test_jti_is_fresh_per_token(self):
        seen = set()
        for _ in range(5):
            token = self.sign("alice@example.com", "password", self.now, self.now + LIFETIME, 0)
            jti = jwt.decode(token, self.key, algorithms=["HS256"])["jti"]
            self.assertRegex(jti, UUID4)
            seen.add(jti)
        self.assertEqual(len(seen), 5)

    # -- PyJWT's, verified here -------------------------------------------

    def test_we_verify_pyjwt_tokens(self):
        for action in ("password", "refresh_token"):
            with self.subTest(action=action):
                payload = claims(email="carol@example.com", action=action, iat=self.now, gen=4)
                token = self.pyjwt(payload)
                self.assertEqual(jwt.get_unverified_header(token), {"alg": "HS256", "typ": "JWT"})
                ok, fields = self.verify(token)
                self.assertTrue(ok, fields)
                self.assertEqual(fields, ["carol@example.com", action, str(payload["iat"]), str(payload["exp"]),
                                          payload["jti"], "4", USER_ID])

    def test_we_verify_pyjwt_tokens_with_reordered_sub(self):
        payload = claims(iat=self.now)
        payload["sub"] = json.dumps({"scope": {"action": "password"}, "email": "dave@example.com"},
                                    separators=(",", ":"))
        ok, fields = self.verify(self.pyjwt(payload))
        self.assertTrue(ok, fields)
        self.assertEqual(fields[:2], ["dave@example.com", "password"])

    def test_we_verify_pyjwt_tokens_with_extra_claims(self):
        payload = claims(iat=self.now)
        payload["aud"] = "somewhere"
        payload["nbf"] = self.now
        ok, fields = self.verify(self.pyjwt(payload))
        self.assertTrue(ok, fields)

    def test_expiry_boundary(self):
        payload = claims(iat=self.now)
        token = self.pyjwt(payload)
        self.assertTrue(self.verify(token, now=payload["exp"] - 1)[0])
        self.assert_rejected(token, "expired", now=payload["exp"])

    def test_not_yet_valid(self):
        payload = claims(iat=self.now + 600)
        self.assert_rejected(self.pyjwt(payload), "not_yet_valid")
        payload = claims(iat=self.now)
        payload["nbf"] = self.now + 600
        self.assert_rejected(self.pyjwt(payload), "not_yet_valid")

    # -- what we would never issue ------------------------------------------

    def test_alg_none_rejected(self):
        payload = claims(iat=self.now)
        unsigned = jwt.encode(payload, None, algorithm="none")
        self.assertTrue(unsigned.endswith("."))
        self.assert_rejected(unsigned, "malformed")  # empty signature segment
        # The same header with a genuine HS256 MAC attached: the algorithm is
        # refused before any MAC work.
        signing_input = unsigned[:-1]
        mac = hmac.new(self.key, signing_input.encode("ascii"), hashlib.sha256).digest()
        self.assert_rejected(signing_input + "." + b64url(mac), "unsupported_algorithm")

    def test_other_hmac_algorithms_rejected(self):
        for algorithm in ("HS512", "HS384"):
            with self.subTest(algorithm=algorithm):
                self.assert_rejected(self.pyjwt(claims(iat=self.now), algorithm=algorithm), "unsupported_algorithm")

    def test_alg_case_variants_rejected(self):
        payload_b64 = b64url(json.dumps(claims(iat=self.now)).encode())
        for alg in ("hs256", "HS256 ", "Hs256"):
            with self.subTest(alg=alg):
                header_b64 = b64url(json.dumps({"alg": alg}).encode())
                signing_input = header_b64 + "." + payload_b64
                mac = hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest()
                self.assert_rejected(signing_input + "." + b64url(mac), "unsupported_algorithm")

    def test_another_key_rejected(self):
        self.assert_rejected(self.pyjwt(claims(iat=self.now), key=new_key()), "bad_signature")

    def test_missing_exp_rejected(self):
        payload = claims(iat=self.now)
        del payload["exp"]
        self.assert_rejected(self.pyjwt(payload), "bad_claims")

    def test_exp_as_string_rejected(self):
        payload = claims(iat=self.now)
        payload["exp"] = str(payload["exp"])
        self.assert_rejected(self.pyjwt(payload), "bad_claims")

    def test_retyped_claims_rejected(self):
        # Numbers with a fraction or an exponent are never issued here: the
        # payload itself is refused before any claim is looked at.
        for claim, value in (("iat", self.now + 0.5), ("exp", self.now + LIFETIME + 0.5), ("exp", 1.7e9)):
            with self.subTest(float_claim=claim):
                payload = claims(iat=self.now)
                payload[claim] = value
                self.assert_rejected(self.pyjwt(payload), "bad_payload")
        cases = {
            "exp negative": ("exp", -1),
            "exp as bool": ("exp", True),
            "gen as string": ("gen", "0"),
            "user_id as number": ("user_id", 7),
            "user_id as null": ("user_id", None),
            "jti upper case": ("jti", str(uuid.uuid4()).upper()),
            "jti not a uuid": ("jti", "not-a-uuid"),
            "sub as object": ("sub", {"email": "alice@example.com", "scope": {"action": "password"}}),
            "sub unknown action": ("sub", subject("alice@example.com", "magic")),
        }
        for name, (claim, value) in cases.items():
            with self.subTest(case=name):
                payload = claims(iat=self.now)
                payload[claim] = value
                self.assert_rejected(self.pyjwt(payload), "bad_claims")
        for claim in ("iat", "jti", "sub", "gen", "user_id"):
            with self.subTest(missing=claim):
                payload = claims(iat=self.now)
                del payload[claim]
                self.assert_rejected(self.pyjwt(payload), "bad_claims")

    def test_extra_header_members_rejected(self):
        for extra in ({"crit": ["exp"]}, {"jku": "https://attacker.example/jwks.json"},
                      {"jwk": {"kty": "oct", "k": "AAAA"}}, {"x5u": "https://attacker.example/cert.pem"},
                      {"typ": "at+jwt"}):
            with self.subTest(header=sorted(extra)):
                self.assert_rejected(self.pyjwt(claims(iat=self.now), headers=extra), "bad_header")

    def test_unknown_kid_rejected(self):
        self.assert_rejected(self.pyjwt(claims(iat=self.now), headers={"kid": "no-such-key"}), "unknown_key")

    def hand_signed(self, header_text, payload_text):
        signing_input = b64url(header_text.encode()) + "." + b64url(payload_text.encode())
        mac = hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(mac)

    def test_duplicate_keys_rejected(self):
        good = claims(iat=self.now)
        body = json.dumps(good)
        self.assertTrue(self.verify(self.hand_signed('{"alg":"HS256"}', body))[0])
        duplicated = body[:-1] + ', "exp": %d}' % (self.now + 10 * LIFETIME)
        self.assert_rejected(self.hand_signed('{"alg":"HS256"}', duplicated), "bad_payload")
        self.assert_rejected(self.hand_signed('{"alg":"HS256","alg":"HS256"}', body), "bad_header")

    def test_huge_times_rejected(self):
        for value in (2 ** 53, 2 ** 63, 2 ** 64):
            with self.subTest(exp=value):
                payload = claims(iat=self.now)
                payload["exp"] = value
                self.assert_rejected(self.pyjwt(payload), "bad_claims")

    def test_tampered_payload_rejected(self):
        token = self.sign("alice@example.com", "refresh_token", self.now, self.now + LIFETIME, 0)
        header, payload, signature = token.split(".")
        body = decode_segment(payload)
        body["sub"] = subject("mallory@example.com", "password")
        forged = header + "." + b64url(json.dumps(body).encode()) + "." + signature
        self.assert_rejected(forged, "bad_signature")

    def test_padded_segments_rejected(self):
        token = self.pyjwt(claims(iat=self.now))
        header, payload, signature = token.split(".")
        if len(signature) % 4:
            self.assert_rejected(header + "." + payload + "." + signature + "=" * (-len(signature) % 4), "malformed")
        self.assert_rejected(token + ".", "malformed")
        self.assert_rejected(header + "." + payload, "malformed")


class ServerTokens(unittest.TestCase):
    """Tokens from a running iwsec-server verify in PyJWT with the data dir's key."""

    def test_server_tokens_verify_with_pyjwt(self):
        data = h.data_dir(self)
        lifetime = 600
        email, password = "erin@example.com", "s3cret:with:colons"
        user_id, refresh = h.add_user(self, data, email, password)
        server = h.start_server(self, data, "--token-lifetime", str(lifetime), "--no-access-log")
        api = h.Api(server.base_url)

        key = h.signing_secret(data)
        self.assertEqual(len(key), 32)

        r = api.authenticate(email, password)
        self.assertEqual(r.status_code, 200, r.text)
        result = r.json()["result"]
        self.assertEqual(result["user_id"], user_id)
        self.assertIs(result["is_authenticated"], True)
        before = int(time.time())
        by_password = result["authentication_token"]
        by_refresh = api.token_by_refresh(self, refresh)
        after = int(time.time())

        for token, action in ((by_password, "password"), (by_refresh, "refresh_token")):
            with self.subTest(action=action):
                self.assertEqual(jwt.get_unverified_header(token), {"alg": "HS256"})
                decoded = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp", "iat", "jti"]})
                self.assertEqual(decoded["exp"] - decoded["iat"], lifetime)
                self.assertLessEqual(decoded["iat"], after + 1)
                self.assertGreaterEqual(decoded["iat"], before - 60)
                self.assertRegex(decoded["jti"], UUID4)
                self.assertEqual(decoded["gen"], 0)
                self.assertEqual(decoded["user_id"], user_id)
                self.assertEqual(json.loads(decoded["sub"]), {"email": email, "scope": {"action": action}})
                with self.assertRaises(jwt.InvalidSignatureError):
                    jwt.decode(token, new_key(), algorithms=["HS256"])

        # And the server accepts a token PyJWT minted with its key.
        minted = jwt.encode(claims(email=email, action="password", gen=0, user_id=user_id), key, algorithm="HS256")
        self.assertTrue(api.is_valid(self, minted))
        forged = jwt.encode(claims(email=email, action="password", gen=0, user_id=user_id), new_key(),
                            algorithm="HS256")
        self.assertFalse(api.is_valid(self, forged))
        # How the server judges other tokens minted with its own key.
        now = int(time.time())
        expired = claims(email=email, action="password", iat=now - 2 * lifetime, lifetime=lifetime, user_id=user_id)
        future = claims(email=email, action="password", iat=now + 3600, user_id=user_id)
        no_user_id = claims(email=email, user_id=user_id)
        del no_user_id["user_id"]
        cases = {
            "expired": (expired, {}, False, 200),
            "not yet valid": (future, {}, False, 200),
            "newer generation": (claims(email=email, gen=1, user_id=user_id), {}, False, 200),
            "unknown user": (claims(email="nobody@example.com", user_id=user_id), {}, False, 200),
            "another holder of the email": (claims(email=email), {}, False, 200),
            "minted before the user_id claim": (no_user_id, {}, False, 401),
            "unknown kid": (claims(email=email, user_id=user_id), {"kid": "other"}, False, 401),
            "crit header": (claims(email=email, user_id=user_id), {"crit": ["gen"]}, False, 401),
        }
        for name, (payload, headers, valid, revoke_status) in cases.items():
            with self.subTest(case=name):
                token = jwt.encode(payload, key, algorithm="HS256", headers=headers or None)
                self.assertIs(api.is_valid(self, token), valid)
                r = api.revoke(token)
                # Revoking an expired (or otherwise unusable) but genuine token is a 200;
                # a token that is not genuine is a 401.
                self.assertEqual(r.status_code, revoke_status, r.text)
                if revoke_status == 401:
                    h.assert_envelope(self, r, 401, "IW10004")
                    self.assertIn('error="invalid_token"', r.headers["WWW-Authenticate"])
                self.assertFalse(api.is_valid(self, token))
        r = api.revoke(forged)
        h.assert_envelope(self, r, 401, "IW10004")
        api.close()
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
