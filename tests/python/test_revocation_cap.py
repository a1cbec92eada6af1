"""Revocations are bounded per user (docs/sessions.md), end to end.

One user exchanges their refresh token and revokes the access token, 1 001
times, against a real iwsec-server with its journal: the journal never holds
more than 1 000 of that user's revocations, the 1 001st ends every access
token of the user at once (a generation bump), the refresh token keeps
working, another user is unaffected, and after a restart the count is still
there (the journal replays it).
"""

import json
import os
import unittest

import iwsec_harness as h

CAP = 1000  # Options::max_revocations_per_user, the default iwsec-server uses
FLOODER = "flood@example.com"
BYSTANDER = "calm@example.com"


class RevocationCap(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        self.flooder_id, self.refresh = h.add_user(self, self.data, FLOODER, "pw-flood")
        self.bystander_id, self.bystander_refresh = h.add_user(self, self.data, BYSTANDER, "pw-calm")
        self.server = h.start_server(self, self.data, "--no-access-log")
        self.api = h.Api(self.server.base_url)
        self.addCleanup(lambda: self.api.close())

    def journal_lines_of(self, user_id):
        """The user's stored revocations (journal lines, or database rows in cluster mode)."""
        return sum(1 for _, owner in h.revocations(self.data) if owner == user_id)

    def generation_of(self, email):
        r = h.admin(self.data, "list-users", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {u["email"]: u["refresh_generation"] for u in json.loads(r.stdout)}[email]

    def revoke(self, token):
        r = self.api.revoke(token)
        self.assertEqual(r.status_code, 200, r.text)

    def test_flood_of_revocations_is_capped_per_user(self):
        kept = self.api.token_by_refresh(self, self.refresh)
        bystander = self.api.token_by_refresh(self, self.bystander_refresh)
        for _ in range(CAP):
            self.revoke(self.api.token_by_refresh(self, self.refresh))
        self.assertEqual(self.journal_lines_of(self.flooder_id), CAP)
        self.assertTrue(self.api.is_valid(self, kept))
        self.assertEqual(self.generation_of(FLOODER), 0)

        over = self.api.token_by_refresh(self, self.refresh)
        self.revoke(over)
        self.assertFalse(self.api.is_valid(self, over))
        self.assertFalse(self.api.is_valid(self, kept))  # every access token of that user ended
        self.assertEqual(self.generation_of(FLOODER), 1)
        self.assertEqual(self.journal_lines_of(self.flooder_id), CAP)
        # The refresh token keeps working, and the other user is unaffected.
        self.assertTrue(self.api.is_valid(self, self.api.token_by_refresh(self, self.refresh)))
        self.assertTrue(self.api.is_valid(self, bystander))
        self.assertEqual(self.generation_of(BYSTANDER), 0)
        theirs = self.api.token_by_refresh(self, self.bystander_refresh)
        self.revoke(theirs)
        self.assertFalse(self.api.is_valid(self, theirs))
        self.assertTrue(self.api.is_valid(self, bystander))

        # After a restart the journal replays the count: still at the cap.
        self.api.close()
        self.assertEqual(self.server.stop(), 0)
        self.server = h.start_server(self, self.data, "--no-access-log")
        self.api = h.Api(self.server.base_url)
        fresh = self.api.token_by_refresh(self, self.refresh)
        self.assertTrue(self.api.is_valid(self, fresh))
        self.revoke(fresh)
        self.assertFalse(self.api.is_valid(self, fresh))
        self.assertEqual(self.generation_of(FLOODER), 2)
        self.assertEqual(self.journal_lines_of(self.flooder_id), CAP)
        self.assertTrue(self.api.is_valid(self, bystander))


    def test_cap_is_a_server_flag(self):
        self.api.close()
        self.assertEqual(self.server.stop(), 0)
        self.server = h.start_server(self, self.data, "--no-access-log", "--max-revocations-per-user", "3")
        self.api = h.Api(self.server.base_url)
        kept = self.api.token_by_refresh(self, self.refresh)
        for _ in range(3):
            self.revoke(self.api.token_by_refresh(self, self.refresh))
        self.assertTrue(self.api.is_valid(self, kept))
        self.revoke(self.api.token_by_refresh(self, self.refresh))
        self.assertFalse(self.api.is_valid(self, kept))
        self.assertEqual(self.journal_lines_of(self.flooder_id), 3)
        self.assertEqual(self.generation_of(FLOODER), 1)


if __name__ == "__main__":
    unittest.main()
