"""What ends a session, end to end (docs/sessions.md).

Against a running iwsec-server and the iwsec-admin program on the same data
directory: a user deleted (by hand or with delete-user) and re-created under
the same email inherits none of the old tokens; disable-user then enable-user
does not revive old access tokens; set-password ends every session (a new
refresh token, printed once) unless --keep-sessions.
"""

import json
import os
import unittest

import iwsec_harness as h

EMAIL = "session.test@example.com"
PASSWORD = "first:pässword"


class Sessions(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        self.user_id, self.refresh = h.add_user(self, self.data, EMAIL, PASSWORD)
        self.bystander_id, self.bystander_refresh = h.add_user(self, self.data, "bystander@example.com", "pw")
        self.server = h.start_server(self, self.data, "--no-access-log")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)

    def admin_ok(self, *args, stdin=None):
        r = h.admin(self.data, *args, stdin=stdin)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def sessions(self):
        """An access token by password, one by refresh token, and the bystander's."""
        return (self.api.token_by_password(self, EMAIL, PASSWORD), self.api.token_by_refresh(self, self.refresh),
                self.api.token_by_refresh(self, self.bystander_refresh))

    def assert_dead(self, access_tokens, refresh_token):
        for token in access_tokens:
            self.assertFalse(self.api.is_valid(self, token))
        h.assert_envelope(self, self.api.access_token(refresh_token), 406, "IW10031")

    def users_file(self):
        return os.path.join(self.data, "users.json")

    # -- deleted and re-created users -----------------------------------------

    def test_user_deleted_by_hand_and_re_created_inherits_no_tokens(self):
        by_password, by_refresh, bystander = self.sessions()
        # An operator removes the user from users.json by hand (atomically, as an editor would),
        # having first folded the change journal into it (docs/operations.md: compact before editing).
        r = h.admin(self.data, "compact")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(self.users_file()) as f:
            doc = json.load(f)
        doc["users"] = [u for u in doc["users"] if u["email"] != EMAIL]
        tmp = self.users_file() + ".edit"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.users_file())
        self.assert_dead([by_password, by_refresh], self.refresh)
        # ...and creates a user with the same email (and password) again.
        new_id, new_refresh = h.add_user(self, self.data, EMAIL, PASSWORD)
        self.assertNotEqual(new_id, self.user_id)
        self.assert_dead([by_password, by_refresh], self.refresh)
        self.assertTrue(self.api.is_valid(self, bystander))
        self.assertTrue(self.api.is_valid(self, self.api.token_by_password(self, EMAIL, PASSWORD)))
        self.assertTrue(self.api.is_valid(self, self.api.token_by_refresh(self, new_refresh)))

    def test_delete_user(self):
        by_password, by_refresh, bystander = self.sessions()
        r = self.admin_ok("delete-user", EMAIL.upper(), "--json")
        self.assertEqual(json.loads(r.stdout), {"email": EMAIL, "deleted": True})
        self.assert_dead([by_password, by_refresh], self.refresh)
        h.assert_envelope(self, self.api.authenticate(EMAIL, PASSWORD), 406, "IW10031")
        users = json.loads(self.admin_ok("list-users", "--json").stdout)
        self.assertEqual([u["email"] for u in users], ["bystander@example.com"])
        # A second delete: no such user, exit 1, one line.
        r = h.admin(self.data, "delete-user", EMAIL)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

        new_id, new_refresh = h.add_user(self, self.data, EMAIL, PASSWORD)
        self.assertNotEqual(new_id, self.user_id)
        self.assert_dead([by_password, by_refresh], self.refresh)
        self.assertTrue(self.api.is_valid(self, bystander))
        self.assertTrue(self.api.is_valid(self, self.api.token_by_refresh(self, new_refresh)))

        r = self.admin_ok("delete-user", EMAIL)
        self.assertEqual(r.stdout, "deleted %s\n" % EMAIL)

    def test_delete_user_needs_an_email(self):
        r = h.admin(self.data, "delete-user")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

    # -- disable / enable --------------------------------------------------------

    def test_disable_then_enable_does_not_revive_old_access_tokens(self):
        by_password, by_refresh, bystander = self.sessions()
        self.admin_ok("disable-user", EMAIL)
        self.assert_dead([by_password, by_refresh], self.refresh)
        self.admin_ok("enable-user", EMAIL)
        for token in (by_password, by_refresh):
            self.assertFalse(self.api.is_valid(self, token))
        self.assertTrue(self.api.is_valid(self, bystander))
        # The account works again, refresh token included.
        self.assertTrue(self.api.is_valid(self, self.api.token_by_refresh(self, self.refresh)))
        self.assertTrue(self.api.is_valid(self, self.api.token_by_password(self, EMAIL, PASSWORD)))

    # -- set-password -----------------------------------------------------------

    def test_set_password_ends_every_session(self):
        by_password, by_refresh, bystander = self.sessions()
        new_password = "second:pässword"
        r = self.admin_ok("set-password", EMAIL, "--json", stdin=new_password + "\n")
        doc = json.loads(r.stdout)
        self.assertEqual(set(doc), {"user_id", "refresh_token"})
        self.assertEqual(doc["user_id"], self.user_id)
        self.assertRegex(doc["refresh_token"], r"^[A-Za-z0-9_-]{43,}$")
        self.assertNotIn(new_password, r.stdout + r.stderr)

        self.assert_dead([by_password, by_refresh], self.refresh)
        h.assert_envelope(self, self.api.authenticate(EMAIL, PASSWORD), 406, "IW10031")
        self.assertTrue(self.api.is_valid(self, bystander))
        self.assertTrue(self.api.is_valid(self, self.api.token_by_refresh(self, doc["refresh_token"])))
        self.assertTrue(self.api.is_valid(self, self.api.token_by_password(self, EMAIL, new_password)))

        # The plain form prints the new refresh token once, too.
        r = self.admin_ok("set-password", EMAIL, stdin="third password\n")
        fields = h.parse_fields(r.stdout)
        self.assertEqual(fields["user_id"], self.user_id)
        h.assert_envelope(self, self.api.access_token(doc["refresh_token"]), 406, "IW10031")
        self.api.token_by_refresh(self, fields["refresh_token"])

    def test_set_password_keep_sessions(self):
        by_password, by_refresh, _ = self.sessions()
        r = self.admin_ok("set-password", EMAIL, "--keep-sessions", "--json", stdin="kept sessions\n")
        self.assertNotIn("refresh_token", r.stdout)
        for token in (by_password, by_refresh):
            self.assertTrue(self.api.is_valid(self, token))
        self.api.token_by_refresh(self, self.refresh)
        h.assert_envelope(self, self.api.authenticate(EMAIL, PASSWORD), 406, "IW10031")
        self.api.token_by_password(self, EMAIL, "kept sessions")

    def test_keep_sessions_goes_with_set_password_only(self):
        r = h.admin(self.data, "rotate-refresh-token", EMAIL, "--keep-sessions")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--keep-sessions", r.stderr)
        self.assertEqual(r.stdout, "")


if __name__ == "__main__":
    unittest.main()
