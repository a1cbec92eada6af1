"""The users file as a snapshot plus a change journal, against a running
iwsec-server (SPEC "Scale of the data directory", "Bundled programs"): an
iwsec-admin change is one line appended to users.json.journal, which the
server applies on the next request without reading users.json again (its log
says when it reads users.json in full, and it does not here); a hand edit of
users.json is still picked up, and wins over journal lines not folded in
(set aside by the next change); `iwsec-admin compact` folds the journal into
users.json first, so an edit made after it loses nothing."""

import glob
import json
import os
import unittest

import iwsec_harness as h

PASSWORD = "journal password"
ADA = "ada@example.com"
BOB = "bob@example.com"
FULL_LOAD = "loaded it in full"


@unittest.skipIf(h.CLUSTER_MODE, "cluster mode keeps users in its database, not in users.json")
class UsersJournal(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        h.add_user(self, self.data, ADA, PASSWORD)
        h.add_user(self, self.data, BOB, PASSWORD)
        # users.json holds both users, with no journal beside it.
        r = h.admin(self.data, "compact")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.users_json = os.path.join(self.data, "users.json")
        self.journal = self.users_json + ".journal"
        self.server = h.start_server(self, self.data, "--no-access-log")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(self.api.close)

    def admin_ok(self, *args):
        r = h.admin(self.data, *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def logs_in(self, email):
        return self.api.authenticate(email, PASSWORD).status_code == 200

    def snapshot_bytes(self):
        with open(self.users_json, "rb") as f:
            return f.read()

    def full_loads(self, at_least=0):
        """How often the server has said it read users.json in full. With
        @p at_least, waits (bounded) until it has said so that often: the
        line is written before the answer, but read from the pipe after."""
        return self.server.wait_for_stderr(lambda text: text.count(FULL_LOAD) >= at_least).count(FULL_LOAD)

    def edit_by_hand(self, change):
        """An operator's edit of users.json, saved atomically as an editor would."""
        with open(self.users_json, encoding="utf-8") as f:
            doc = json.load(f)
        change(doc["users"])
        tmp = self.users_json + ".edit"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.users_json)

    def test_admin_change_is_applied_from_the_journal_alone(self):
        self.assertTrue(self.logs_in(ADA))
        before = self.snapshot_bytes()
        self.admin_ok("disable-user", ADA)
        # users.json is as it was: the change is one journal line...
        self.assertEqual(self.snapshot_bytes(), before)
        with open(self.journal, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2, lines)  # the header, the change
        self.assertEqual(json.loads(lines[1])["put"]["email"], ADA)
        self.assertTrue(json.loads(lines[1])["put"]["disabled"])
        self.assertEqual(h.file_mode(self.journal), 0o600)
        # ... which the server applies on the very next request, without
        # reading users.json again.
        self.assertFalse(self.logs_in(ADA))
        self.assertTrue(self.logs_in(BOB))
        self.admin_ok("enable-user", ADA)
        self.assertTrue(self.logs_in(ADA))
        self.assertEqual(self.full_loads(), 0, self.server.stderr_text())
        self.assertEqual(self.snapshot_bytes(), before)
        # What the programs read goes through the journal too.
        shown = json.loads(self.admin_ok("show-user", ADA, "--json").stdout)
        self.assertFalse(shown["disabled"])

    def test_hand_edit_wins_over_journal_lines_not_folded_in(self):
        self.admin_ok("disable-user", BOB)  # a journal line, not in users.json
        self.assertFalse(self.logs_in(BOB))
        # The operator edits users.json without compacting first: removes ada.
        self.edit_by_hand(lambda users: users.remove(next(u for u in users if u["email"] == ADA)))
        self.assertNotEqual(self.api.authenticate(ADA, PASSWORD).status_code, 200)  # the edit applies
        self.assertTrue(self.logs_in(BOB))  # the journal's change does not: the edit wins
        self.assertEqual(self.full_loads(at_least=1), 1, self.server.stderr_text())
        self.assertRegex(self.server.stderr_text(), r"1 change in \S*users\.json\.journal made before it")
        # The next change sets the old journal aside (kept for the operator, never applied).
        self.assertEqual(glob.glob(self.journal + ".stale-*"), [])
        self.admin_ok("rotate-refresh-token", BOB)
        stale = glob.glob(self.journal + ".stale-*")
        self.assertEqual(len(stale), 1)
        with open(stale[0], encoding="utf-8") as f:
            self.assertIn(BOB, f.read())
        self.assertTrue(self.logs_in(BOB))
        self.assertEqual(self.full_loads(), 1, self.server.stderr_text())
        listed = self.admin_ok("list-users").stdout
        self.assertNotIn(ADA, listed)
        self.assertIn(BOB, listed)

    def test_compact_before_editing_loses_nothing(self):
        self.admin_ok("disable-user", BOB)
        self.assertFalse(self.logs_in(BOB))
        self.admin_ok("compact")
        self.assertFalse(os.path.exists(self.journal))
        with open(self.users_json, encoding="utf-8") as f:
            users = {u["email"]: u for u in json.load(f)["users"]}
        self.assertTrue(users[BOB]["disabled"])
        self.assertFalse(self.logs_in(BOB))
        self.assertEqual(self.full_loads(), 0, self.server.stderr_text())  # a compaction is not read back
        # Now the edit: ada disabled by hand. Bob's change is in the file.
        self.edit_by_hand(lambda users: next(u for u in users if u["email"] == ADA).update(disabled=True))
        self.assertFalse(self.logs_in(ADA))
        self.assertFalse(self.logs_in(BOB))
        self.assertEqual(self.full_loads(at_least=1), 1, self.server.stderr_text())
        self.assertNotIn("not applied", self.server.stderr_text())
        # The server still applies later changes from the journal.
        self.admin_ok("enable-user", BOB)
        self.assertTrue(self.logs_in(BOB))
        self.assertEqual(self.full_loads(), 1, self.server.stderr_text())
        self.assertEqual(glob.glob(self.journal + ".stale-*"), [])


if __name__ == "__main__":
    unittest.main()
