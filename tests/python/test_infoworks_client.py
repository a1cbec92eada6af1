"""An Infoworks client written the way the official Python SDK works, run
against `existing_service` (a host service that mounted the security routes
and guards its own GET /v3/domains) and against iwsec-server.

The SDK's pattern: `Authorization: Basic <refresh_token>` to GET
/v3/security/token/access for a bearer token; every call carries
`Authorization: Bearer <token>`; when any call answers 401 or 406, mint a new
token the same way and retry that call once.
"""

import json
import os
import unittest

import iwsec_harness as h

EMAIL = "sdk.user@example.com"
PASSWORD = "sdk:pass word:ü"


class ClientError(Exception):
    def __init__(self, response):
        super().__init__("HTTP %d" % response.status_code)
        self.response = response


class InfoworksClient:
    """What the SDK does, trimmed to what these tests exercise."""

    def __init__(self, base_url, refresh_token):
        self.base_url = base_url
        self.refresh_token = refresh_token
        self.http = h.session()
        self.bearer_token = None
        self.mints = 0

    def close(self):
        self.http.close()

    def mint(self):
        r = self.http.get(self.base_url + "/v3/security/token/access",
                          headers={"Authorization": "Basic " + self.refresh_token}, timeout=h.HTTP_TIMEOUT)
        if r.status_code != 200:
            raise ClientError(r)
        self.bearer_token = r.json()["result"]["authentication_token"]
        self.mints += 1
        return self.bearer_token

    def call(self, method, path, **kwargs):
        if self.bearer_token is None:
            self.mint()
        r = self._send(method, path, **kwargs)
        if r.status_code in (401, 406):
            self.mint()
            r = self._send(method, path, **kwargs)
        return r

    def _send(self, method, path, **kwargs):
        headers = {"Authorization": "Bearer " + self.bearer_token, "Content-Type": "application/json"}
        return self.http.request(method, self.base_url + path, headers=headers, timeout=h.HTTP_TIMEOUT, **kwargs)

    # The SDK's security helpers.
    def validate(self):
        r = self.call("GET", "/v3/security/token/validate")
        if r.status_code != 200:
            raise ClientError(r)
        return r.json()["result"]["is_valid"]

    def logout(self):
        # Revoking its own token: no retry, a fresh token would be revoked instead.
        r = self._send("DELETE", "/v3/security/token/access")
        if r.status_code != 200:
            raise ClientError(r)
        return r.json()


class ExistingService(unittest.TestCase):
    def setUp(self):
        self.data = h.data_dir(self)
        self.user_id, self.refresh = h.add_user(self, self.data, EMAIL, PASSWORD)
        self.server = h.start_existing_service(self, self.data)
        self.client = InfoworksClient(self.server.base_url, self.refresh)
        self.addCleanup(self.client.close)
        self.raw = h.Api(self.server.base_url)
        self.addCleanup(self.raw.close)

    def domains_owner(self, response):
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()["result"][0]["owner"]

    def test_sdk_flow_revoke_and_recover(self):
        # Log in with the refresh token and use the host's guarded route.
        self.assertEqual(self.domains_owner(self.client.call("GET", "/v3/domains")), EMAIL)
        self.assertEqual(self.client.mints, 1)
        self.assertIs(self.client.validate(), True)
        self.assertEqual(self.client.mints, 1)

        # Revoke its own token: the guarded route now refuses it with the
        # same 401 envelope the security routes use.
        old = self.client.bearer_token
        body = self.client.logout()
        self.assertEqual(body["result"], "Token successfully blacklisted")
        r = self.raw.request("GET", "/v3/domains", h.bearer(old))
        h.assert_envelope(self, r, 401, "IW10004")
        self.assertIn("Bearer", r.headers["WWW-Authenticate"])
        self.assertIn('error="invalid_token"', r.headers["WWW-Authenticate"])
        self.assertIs(self.raw.is_valid(self, old), False)

        # The SDK pattern: the 401 triggers one re-mint and the call succeeds.
        self.assertEqual(self.domains_owner(self.client.call("GET", "/v3/domains")), EMAIL)
        self.assertEqual(self.client.mints, 2)
        self.assertNotEqual(self.client.bearer_token, old)
        self.assertIs(self.client.validate(), True)

        # validate answers 200 is_valid:false for the revoked token (no retry
        # is triggered), so the SDK sees exactly what happened.
        self.assertIs(self.raw.is_valid(self, old), False)
        self.assertEqual(self.client.mints, 2)

    def test_rotation_elsewhere_stops_the_old_refresh_token(self):
        self.client.call("GET", "/v3/domains")
        # Someone rotates the refresh token with the password.
        r = self.raw.rotate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["result"], "Successfully Blacklisted Refresh Token.")
        new_refresh = r.json()["refresh_token"]

        # The client's token is stale (401), and re-minting with the old
        # refresh token is a 406: the SDK gives up with that error.
        with self.assertRaises(ClientError) as caught:
            self.client.call("GET", "/v3/domains")
        h.assert_envelope(self, caught.exception.response, 406, "IW10031")

        # A client holding the new refresh token carries on.
        fresh = InfoworksClient(self.server.base_url, new_refresh)
        self.addCleanup(fresh.close)
        self.assertEqual(self.domains_owner(fresh.call("GET", "/v3/domains")), EMAIL)
        self.assertIs(fresh.validate(), True)

    def test_admin_disable_takes_effect_on_the_guarded_route(self):
        self.assertEqual(self.client.call("GET", "/v3/domains").status_code, 200)
        r = h.admin(self.data, "disable-user", EMAIL, rounds=None)
        self.assertEqual(r.returncode, 0, r.stderr)
        # The very next call: the token is refused (401), and so is the
        # re-mint (406).
        with self.assertRaises(ClientError) as caught:
            self.client.call("GET", "/v3/domains")
        h.assert_envelope(self, caught.exception.response, 406, "IW10031")
        r = h.admin(self.data, "enable-user", EMAIL, rounds=None)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.client.call("GET", "/v3/domains").status_code, 200)

    def test_host_routes_stay_the_hosts(self):
        r = self.raw.request("GET", "/health")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.text, "ok")
        r = self.raw.request("GET", "/no/such/path")
        self.assertEqual(r.status_code, 404)

    def test_every_error_has_the_envelope(self):
        api = self.raw
        good_token = api.token_by_refresh(self, self.refresh)
        cases = [
            ("guarded route, no credentials", api.request("GET", "/v3/domains"), 401, "IW10004"),
            ("guarded route, Basic", api.request("GET", "/v3/domains", h.basic(EMAIL, PASSWORD)), 401, "IW10004"),
            ("guarded route, garbage bearer", api.request("GET", "/v3/domains", "Bearer not.a.token"), 401,
             "IW10004"),
            ("guarded route, empty bearer", api.request("GET", "/v3/domains", "Bearer "), 401, "IW10004"),
            ("authenticate, no credentials", api.request("GET", "/v3/security/authenticate"), 401, "IW10004"),
            ("authenticate, not base64", api.request("GET", "/v3/security/authenticate", "Basic %%%"), 400,
             "IW10006"),
            ("authenticate, no colon", api.request("GET", "/v3/security/authenticate", "Basic Zm9v"), 400,
             "IW10006"),
            ("authenticate, bad service_id",
             api.request("GET", "/v3/security/authenticate?service_id=abc", h.basic(EMAIL, PASSWORD)), 400,
             "IW10006"),
            ("authenticate, wrong password", api.authenticate(EMAIL, PASSWORD + "x"), 406, "IW10031"),
            ("authenticate, unknown user", api.authenticate("nobody@example.com", PASSWORD), 406, "IW10031"),
            ("token/access, unknown refresh token", api.access_token("not-a-refresh-token"), 406, "IW10031"),
            ("token/access, bearer", api.request("GET", "/v3/security/token/access", h.bearer(good_token)), 401,
             "IW10004"),
            ("token/access DELETE, garbage", api.revoke("x.y.z"), 401, "IW10004"),
            ("token/access DELETE, no credentials", api.request("DELETE", "/v3/security/token/access"), 401,
             "IW10004"),
            ("validate, no credentials", api.request("GET", "/v3/security/token/validate"), 401, "IW10004"),
            ("validate, two Authorization headers",
             h.raw_request(self.server.base_url, "GET", "/v3/security/token/validate",
                           [("Authorization", h.bearer(good_token)), ("Authorization", h.bearer(good_token))]),
             400, "IW10006"),
            ("token/refresh, wrong password", api.rotate(EMAIL, "wrong"), 406, "IW10031"),
            ("token/refresh, no credentials", api.request("DELETE", "/v3/security/token/refresh"), 401,
             "IW10004"),
            ("authenticate, empty Basic", api.request("GET", "/v3/security/authenticate", "Basic "), 401,
             "IW10004"),
            ("authenticate, Bearer scheme", api.request("GET", "/v3/security/authenticate", h.bearer(good_token)),
             401, "IW10004"),
            ("authenticate, over-long credentials",
             api.request("GET", "/v3/security/authenticate", "Basic " + "QUFB" * 1500), 400, "IW10006"),
            ("token/access, empty Basic", api.request("GET", "/v3/security/token/access", "Basic "), 401,
             "IW10004"),
            ("token/refresh, wrong method", api.request("GET", "/v3/security/token/refresh"), 405, None),
            ("authenticate, wrong method", api.request("POST", "/v3/security/authenticate"), 405, None),
        ]
        for name, response, status, code in cases:
            with self.subTest(case=name):
                body = h.assert_envelope(self, response, status, code)
                h.assert_no_secret(self, PASSWORD, response.text, "password")
                h.assert_no_secret(self, good_token, response.text, "access token")
                h.assert_no_secret(self, self.refresh, response.text, "refresh token")
                self.assertEqual(body["message"], "Security Client Errors")
                if status == 401:
                    challenge = response.headers["WWW-Authenticate"]
                    self.assertTrue(challenge.startswith("Basic realm=") or challenge.startswith("Bearer realm="),
                                    challenge)
                if status == 406:
                    self.assertEqual(body["details"], "Authentication Failed: Incorrect user credentials")

    def test_scheme_names_are_case_insensitive(self):
        api = self.raw
        for scheme in ("basic", "BASIC", "bAsIc"):
            with self.subTest(scheme=scheme):
                r = api.request("GET", "/v3/security/authenticate",
                                scheme + " " + h.basic(EMAIL, PASSWORD).split(" ", 1)[1])
                self.assertEqual(r.status_code, 200, r.text)
                r = api.request("GET", "/v3/security/token/access", scheme + " " + self.refresh)
                self.assertEqual(r.status_code, 200, r.text)
        token = api.token_by_refresh(self, self.refresh)
        for scheme in ("bearer", "BEARER"):
            with self.subTest(scheme=scheme):
                r = api.request("GET", "/v3/domains", scheme + " " + token)
                self.assertEqual(r.status_code, 200, r.text)
                r = api.request("GET", "/v3/security/token/validate", scheme + " " + token)
                self.assertEqual(r.json()["result"]["is_valid"], True)

    def test_username_is_case_insensitive_and_password_may_hold_colons(self):
        for email in (EMAIL.upper(), "Sdk.User@Example.COM"):
            with self.subTest(email=email):
                r = self.raw.authenticate(email, PASSWORD)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertEqual(r.json()["result"]["user_id"], self.user_id)
        # Everything after the first colon is the password.
        self.assertEqual(self.raw.authenticate(EMAIL, PASSWORD.split(":", 1)[0]).status_code, 406)
        r = self.raw.request("GET", "/v3/security/authenticate?service_id=42", h.basic(EMAIL, PASSWORD))
        self.assertEqual(r.status_code, 200, r.text)

    def test_success_bodies(self):
        r = self.raw.authenticate(EMAIL, PASSWORD)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["Content-Type"], h.JSON_CONTENT_TYPE)
        body = r.json()
        self.assertEqual(body["message"], "Authentication Success")
        self.assertEqual(set(body["result"]), {"authentication_token", "is_authenticated", "user_id"})
        self.assertEqual(body["result"]["user_id"], self.user_id)
        r = self.raw.access_token(self.refresh)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["Content-Type"], h.JSON_CONTENT_TYPE)
        body = r.json()
        self.assertEqual(body["message"], "Authentication Success")
        self.assertEqual(set(body["result"]), {"authentication_token", "is_authenticated"})
        self.assertIs(body["result"]["is_authenticated"], True)
        token = body["result"]["authentication_token"]
        r = self.raw.validate(token)
        self.assertEqual(r.headers["Content-Type"], h.JSON_CONTENT_TYPE)
        self.assertEqual(r.json(), {"message": "", "result": {"is_valid": True}})


class SecurityServer(unittest.TestCase):
    """The same SDK flow against iwsec-server (durable revocations)."""

    def test_sdk_flow(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data, "--no-access-log")
        client = InfoworksClient(server.base_url, refresh)
        self.addCleanup(client.close)
        self.assertIs(client.validate(), True)
        old = client.bearer_token
        client.logout()
        # validate answers 200 with is_valid:false for a revoked token.
        r = client._send("GET", "/v3/security/token/validate")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(json.loads(r.text)["result"]["is_valid"], False)
        # Revoking again is idempotent.
        self.assertEqual(client.logout()["result"], "Token successfully blacklisted")
        # Re-mint, continue.
        client.mint()
        self.assertNotEqual(client.bearer_token, old)
        self.assertIs(client.validate(), True)
        self.assertEqual(client.mints, 2)
        client.close()
        self.assertEqual(server.stop(), 0)


class InfoworksAPI:
    """The way Infoworks' own utility scripts (the Databricks-libraries
    uninstaller, the ETL-workload migration and bulk-pipeline tools) talk to
    the security endpoints: every URL ends in a slash, and the bearer token is
    read from the answer of `/v3/security/token/access/` without looking at
    the status (an answer that is not that JSON kills the script)."""

    def __init__(self, base_url, refresh_token):
        self.base_url = base_url
        self.refresh_token = refresh_token
        self.http = h.session()
        self.delegation_token = None

    def close(self):
        self.http.close()

    def refresh_delegation_token(self):
        url = self.base_url + "/v3/security/token/access/"
        headers = {"Authorization": "Basic " + self.refresh_token, "Content-Type": "application/json"}
        response = self.http.request("GET", url, headers=headers, timeout=h.HTTP_TIMEOUT)
        self.delegation_token = response.json()["result"]["authentication_token"]
        return self.delegation_token

    def call(self, method, path, authorization=None):
        headers = {"Authorization": authorization or ("Bearer " + self.delegation_token),
                   "Content-Type": "application/json"}
        return self.http.request(method, self.base_url + path, headers=headers, timeout=h.HTTP_TIMEOUT)


class UtilityScripts(unittest.TestCase):
    """Infoworks' utility scripts against iwsec-server: one trailing slash is
    the same route (docs/endpoints.md)."""

    def test_trailing_slash_client(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, EMAIL, PASSWORD)
        server = h.start_server(self, data)
        api = InfoworksAPI(server.base_url, refresh)
        self.addCleanup(api.close)
        token = api.refresh_delegation_token()
        self.assertEqual(token.count("."), 2)
        r = api.call("GET", "/v3/security/token/validate/")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["Content-Type"], h.JSON_CONTENT_TYPE)
        self.assertEqual(r.json(), {"message": "", "result": {"is_valid": True}})
        r = api.call("GET", "/v3/security/authenticate/", h.basic(EMAIL, PASSWORD))
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.json()["result"]["is_authenticated"])
        by_password = r.json()["result"]["authentication_token"]
        # 405 with Allow, as without the slash.
        r = api.call("POST", "/v3/security/token/access/")
        h.assert_envelope(self, r, 405)
        self.assertEqual(r.headers["Allow"], "GET, DELETE")
        # A wrong refresh token: the same 406 envelope as without the slash.
        wrong = api.call("GET", "/v3/security/token/access/", "Basic not-a-refresh-token")
        plain = api.call("GET", "/v3/security/token/access", "Basic not-a-refresh-token")
        self.assertEqual((wrong.status_code, wrong.text), (plain.status_code, plain.text))
        h.assert_envelope(self, wrong, 406, "IW10031")
        # Logout and rotation.
        r = api.call("DELETE", "/v3/security/token/access/")
        self.assertEqual(r.json()["result"], "Token successfully blacklisted")
        r = api.call("GET", "/v3/security/token/validate/")
        self.assertEqual(r.json()["result"]["is_valid"], False)
        r = api.call("DELETE", "/v3/security/token/refresh/", h.basic(EMAIL, PASSWORD))
        self.assertEqual(r.status_code, 200)
        api.refresh_token = r.json()["refresh_token"]
        r = api.call("GET", "/v3/security/token/validate", "Bearer " + by_password)
        self.assertEqual(r.json()["result"]["is_valid"], False)  # rotated
        api.refresh_delegation_token()
        self.assertEqual(api.call("GET", "/v3/security/token/validate/").json()["result"]["is_valid"], True)
        # Two slashes are no route.
        self.assertEqual(api.call("GET", "/v3/security/token/validate//").status_code, 404)
        # The access log names one route, the slash-less one.
        api.close()
        self.assertEqual(server.stop(), 0)
        paths = [line.split()[4] for line in server.log_lines() if " GET " in line or " DELETE " in line
                 or " POST " in line]
        self.assertIn("/v3/security/token/access", paths)
        self.assertNotIn("/v3/security/token/access/", paths)
        self.assertNotIn("/v3/security/token/validate/", paths)
        self.assertIn("/v3/security/token/validate//", paths)


def stored_hash(data_directory, email):
    """The user's stored password hash: users.json (once the change journal
    is folded into it), or the cluster's table."""
    if not h.CLUSTER_MODE:
        r = h.admin(data_directory, "compact")
        assert r.returncode == 0, r.stdout + r.stderr
        with open(os.path.join(data_directory, "users.json"), encoding="utf-8") as f:
            users = json.load(f)["users"]
        return next(u["password_hash"] for u in users if u["email"].lower() == email.lower())
    pg = h._cluster["pg"]
    database = h._cluster["databases"][os.path.abspath(data_directory)]
    return pg.sql("SELECT password_hash FROM iwsec_users WHERE email_key = '%s'" % email.lower(), database).strip()


class CheaperHashes(unittest.TestCase):
    """A user whose stored hash has fewer rounds than the server's (passlib's
    29 000, an import): a successful login stores the password hashed with
    the server's rounds, and keeps the sessions (docs/api.md). That a
    wrong password costs the configured rounds is counted in
    tests/test_password_rounds.cpp; bench/password_rounds.cpp times it."""

    def test_login_converges_the_stored_hash(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, EMAIL, PASSWORD, rounds=1000)
        self.assertTrue(stored_hash(data, EMAIL).startswith("$pbkdf2-sha256$1000$"))
        server = h.start_server(self, data, rounds=3000)
        api = InfoworksAPI(server.base_url, refresh)
        self.addCleanup(api.close)
        before = api.refresh_delegation_token()
        r = api.call("GET", "/v3/security/authenticate", h.basic(EMAIL, PASSWORD + "x"))
        h.assert_envelope(self, r, 406)
        self.assertTrue(stored_hash(data, EMAIL).startswith("$pbkdf2-sha256$1000$"))
        r = api.call("GET", "/v3/security/authenticate/", h.basic(EMAIL, PASSWORD))
        self.assertEqual(r.status_code, 200)
        upgraded = stored_hash(data, EMAIL)
        self.assertTrue(upgraded.startswith("$pbkdf2-sha256$3000$"), upgraded)
        # The sessions stay: the earlier access token, the refresh token.
        self.assertIs(api.call("GET", "/v3/security/token/validate", "Bearer " + before).json()["result"]["is_valid"],
                      True)
        api.refresh_delegation_token()
        r = api.call("GET", "/v3/security/authenticate", h.basic(EMAIL, PASSWORD))
        self.assertEqual(r.status_code, 200)
        self.assertEqual(stored_hash(data, EMAIL), upgraded)  # converged: no further writes
        api.close()
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
