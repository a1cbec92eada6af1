"""Key files that would silently change meaning (docs/operations.md).

A keyring with CRLF line endings, a UTF-8 byte order mark, or headed
`iwsec-keyring 2` must never be read as one raw key made of the whole file:
iwsec-server refuses to start on it and iwsec-admin list-signing-keys refuses
to read it, each with exit status 1 and one line naming the file, the line and
the reason; on SIGHUP the server keeps the keys it has and logs why.
"""

import os
import signal
import unittest

import iwsec_harness as h

EMAIL = "key.files@example.com"
PASSWORD = "key files:pw"


def make_keyring(test, directory, name="keys.ring"):
    """A real keyring of one key, made by iwsec-admin; returns (path, bytes)."""
    path = os.path.join(directory, name)
    r = h.run_program([h.admin_path(), "--secret-file", path, "add-signing-key"])
    test.assertEqual(r.returncode, 0, r.stderr)
    with open(path, "rb") as f:
        return path, f.read()


def mangled(good):
    """(what, bytes, reason words) for each way a keyring gets mangled."""
    return [
        ("CRLF line endings", good.replace(b"\n", b"\r\n"), "CRLF"),
        ("a UTF-8 byte order mark", b"\xef\xbb\xbf" + good, "byte order mark"),
        ("format version 2", good.replace(b"iwsec-keyring 1", b"iwsec-keyring 2", 1), "format version 2"),
    ]


def write_private(path, content):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(content)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class MangledKeyFiles(unittest.TestCase):
    def check_one_line(self, text, path, reason):
        self.assertEqual(text.count("\n"), 1, text)
        self.assertIn("key file " + path + " line 1: ", text)
        self.assertIn(reason, text)

    def test_admin_and_server_refuse_a_mangled_secret_file(self):
        tmp = h.temp_dir(self)
        data = os.path.join(tmp, "data")
        h.add_user(self, data, EMAIL, PASSWORD)
        _, good = make_keyring(self, tmp, "good.ring")
        for what, content, reason in mangled(good):
            with self.subTest(what):
                path = os.path.join(tmp, "mangled.ring")
                write_private(path, content)
                r = h.run_program([h.admin_path(), "--secret-file", path, "list-signing-keys"])
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertEqual(r.stdout, "")  # never one `legacy` key
                self.assertTrue(r.stderr.startswith("iwsec-admin: "), r.stderr)
                self.check_one_line(r.stderr, path, reason)
                r = h.run_program([h.admin_path(), "--secret-file", path, "add-signing-key"])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.check_one_line(r.stderr, path, reason)
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), content, "a refused file is left as it was")
                with self.assertRaises(h.ServerError) as refused:
                    h.start_server(self, data, "--secret-file", path, "--no-access-log")
                message = str(refused.exception)
                self.assertIn("exited (status 1)", message)
                self.assertIn("iwsec-server: key file " + path + " line 1: ", message)
                self.assertIn(reason, message)

    def test_server_and_admin_refuse_a_mangled_data_directory_keyring(self):
        if h.CLUSTER_MODE:
            self.skipTest("the data directory's signing.key; cluster mode signs with --secret-file")
        data = h.data_dir(self)
        h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data, "--no-access-log")  # creates signing.key
        self.assertEqual(server.stop(), 0)
        path = os.path.join(data, "signing.key")
        with open(path, "rb") as f:
            good = f.read()
        for what, content, reason in mangled(good):
            with self.subTest(what):
                write_private(path, content)
                r = h.run_program([h.admin_path(), "--data-dir", data, "list-signing-keys", "--json"])
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.check_one_line(r.stderr, path, reason)
                with self.assertRaises(h.ServerError) as refused:
                    h.start_server(self, data, "--no-access-log")
                message = str(refused.exception)
                self.assertIn("exited (status 1)", message)
                self.assertIn("iwsec-server: key file " + path + " line 1: ", message)
                self.assertIn(reason, message)

    def test_sighup_with_a_mangled_file_keeps_the_keys_and_says_why(self):
        tmp = h.temp_dir(self)
        data = os.path.join(tmp, "data")
        h.add_user(self, data, EMAIL, PASSWORD)
        path, good = make_keyring(self, tmp)
        server = h.start_server(self, data, "--secret-file", path, "--no-access-log")
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        token = api.token_by_password(self, EMAIL, PASSWORD)
        for count, (what, content, reason) in enumerate(mangled(good), 1):
            with self.subTest(what):
                write_private(path, content)
                server.proc.send_signal(signal.SIGHUP)
                err = server.wait_for_stderr(lambda text: text.count("keeping the signing keys in use") >= count)
                lines = [l for l in err.splitlines() if "keeping the signing keys in use" in l]
                self.assertEqual(len(lines), count, server.stderr_text())
                self.assertIn("key file " + path + " line 1: ", lines[-1])
                self.assertIn(reason, lines[-1])
                # The keys in use stay: old and new tokens verify.
                self.assertTrue(api.is_valid(self, token))
                self.assertTrue(api.is_valid(self, api.token_by_password(self, EMAIL, PASSWORD)))
        api.close()
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
