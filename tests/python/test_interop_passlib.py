"""Password hashes interoperate with Python's passlib (docs/api.md).

Our `$pbkdf2-sha256$...` strings (from iwsec-admin hash-password and from
the library via iwsec-testtool) verify in passlib, and passlib's verify here.
"""

import json
import re
import unittest

from passlib.hash import pbkdf2_sha256

import iwsec_harness as h

# Passwords that travel as one line of stdin: colons, UTF-8, spaces, long.
PASSWORDS = [
    "correct horse battery staple",
    "pa:ss:wo:rd",
    ":leading-colon",
    "ünïcødé-密码-🔑",
    "  spaces at both ends  ",
    "x" * 300,
    "\"quotes\" and \\backslashes\\ and $dollars$",
]

HASH_SHAPE = re.compile(r"^\$pbkdf2-sha256\$([1-9][0-9]*)\$([A-Za-z0-9./]+)\$([A-Za-z0-9./]{43})$")

# Fixed vectors: passlib's own documentation and test-suite values.
VECTORS = [
    ("password", "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw$Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M"),
    ("1234", "$pbkdf2-sha256$29000$mzOmdC7l/B.DUIqRcq4Vwg$f6L9GhLEk2Hd5SQoOuycTlfTSZZKlJqWHEWYU3t9MSg"),
]


def wrong(password):
    """A different password: one character changed at the end."""
    return password[:-1] + ("a" if password[-1] != "a" else "b")


class TesttoolHashes(unittest.TestCase):
    """The library (through iwsec-testtool) against passlib."""

    def ours(self, password, rounds=1000):
        r = h.testtool("hash-password", str(rounds), stdin=password + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        hashed = r.stdout.strip()
        m = HASH_SHAPE.match(hashed)
        self.assertIsNotNone(m, "not a passlib-shaped hash")
        self.assertEqual(int(m.group(1)), rounds)
        return hashed

    def our_verify(self, password, hashed):
        r = h.testtool("verify-password", hashed, stdin=password + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(r.stdout.strip(), ("true", "false"))
        return r.stdout.strip() == "true"

    def test_passlib_verifies_ours(self):
        for password in PASSWORDS:
            with self.subTest(password=len(password)):
                hashed = self.ours(password)
                self.assertTrue(pbkdf2_sha256.identify(hashed))
                self.assertTrue(pbkdf2_sha256.verify(password, hashed))
                self.assertFalse(pbkdf2_sha256.verify(wrong(password), hashed))

    def test_we_verify_passlibs(self):
        for password in PASSWORDS:
            with self.subTest(password=len(password)):
                hashed = pbkdf2_sha256.using(rounds=1000).hash(password)
                self.assertTrue(self.our_verify(password, hashed))
                self.assertFalse(self.our_verify(wrong(password), hashed))

    def test_passlib_default_settings_verify_here(self):
        # passlib's own defaults (29000 rounds, 16-byte salt).
        hashed = pbkdf2_sha256.hash("default-settings")
        self.assertTrue(self.our_verify("default-settings", hashed))
        self.assertFalse(self.our_verify("default-settingz", hashed))

    def test_salt_sizes(self):
        # Salts whose length is not a multiple of 3 exercise unpadded ab64.
        for salt_size in (8, 15, 16, 17, 32):
            with self.subTest(salt_size=salt_size):
                hashed = pbkdf2_sha256.using(rounds=1000, salt_size=salt_size).hash("salted")
                self.assertTrue(self.our_verify("salted", hashed))
                self.assertFalse(self.our_verify("salte", hashed))

    def test_fresh_salt_each_time(self):
        a = self.ours("same")
        b = self.ours("same")
        self.assertNotEqual(a, b)
        self.assertNotEqual(HASH_SHAPE.match(a).group(2), HASH_SHAPE.match(b).group(2))

    def test_fixed_vectors(self):
        for password, hashed in VECTORS:
            with self.subTest(hash=hashed):
                self.assertTrue(pbkdf2_sha256.verify(password, hashed))  # the vector is sound
                self.assertTrue(self.our_verify(password, hashed))
                self.assertFalse(self.our_verify(wrong(password), hashed))
                self.assertFalse(self.our_verify(password + " ", hashed))
                self.assertFalse(self.our_verify("", hashed))

    def test_damaged_hashes_never_verify(self):
        password, good = VECTORS[0]
        damaged = [
            good.replace("pbkdf2-sha256", "pbkdf2-sha512"),
            good.replace("$6400$", "$6401$"),
            good.replace("$6400$", "$06400$"),
            good[:-1],                    # checksum one symbol short
            good + "A",                   # checksum one symbol long
            good.replace("0ZrzXitF", "0ZrzXitG"),
            "",
            "plaintext",
        ]
        for hashed in damaged:
            with self.subTest(hash=hashed):
                self.assertFalse(self.our_verify(password, hashed))


class AdminHashes(unittest.TestCase):
    """iwsec-admin hash-password against passlib."""

    def setUp(self):
        self.data = h.data_dir(self)

    def admin_hash(self, password, rounds=h.FAST_ROUNDS, json_output=False):
        args = ["hash-password"] + (["--json"] if json_output else [])
        r = h.admin(self.data, *args, stdin=password + "\n", rounds=rounds)
        self.assertEqual(r.returncode, 0, r.stderr)
        if json_output:
            hashed = json.loads(r.stdout)["hash"]
        else:
            self.assertEqual(r.stdout.count("\n"), 1, "exactly one line expected")
            hashed = r.stdout.strip()
        self.assertIsNotNone(HASH_SHAPE.match(hashed), "not a passlib-shaped hash")
        return hashed

    def test_passlib_verifies_admin_hashes(self):
        for password in PASSWORDS:
            with self.subTest(password=len(password)):
                hashed = self.admin_hash(password)
                self.assertTrue(pbkdf2_sha256.verify(password, hashed))
                self.assertFalse(pbkdf2_sha256.verify(wrong(password), hashed))

    def test_json_output(self):
        hashed = self.admin_hash("via-json", json_output=True)
        self.assertTrue(pbkdf2_sha256.verify("via-json", hashed))

    def test_default_rounds_are_owasp(self):
        hashed = self.admin_hash("default-rounds", rounds=None)
        self.assertEqual(int(HASH_SHAPE.match(hashed).group(1)), 600000)
        self.assertTrue(pbkdf2_sha256.verify("default-rounds", hashed))
        self.assertFalse(pbkdf2_sha256.verify("default-roundz", hashed))

    def test_admin_hash_verifies_in_library(self):
        hashed = self.admin_hash("round-trip")
        r = h.testtool("verify-password", hashed, stdin="round-trip\n")
        self.assertEqual(r.stdout.strip(), "true")
        r = h.testtool("verify-password", hashed, stdin="round-trip!\n")
        self.assertEqual(r.stdout.strip(), "false")


if __name__ == "__main__":
    unittest.main()
