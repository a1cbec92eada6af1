"""docs/openapi.yaml against a real iwsec-server.

Every route is driven into each status it can be made to answer; every
answer is checked against the documented response (status, required headers,
media type, body schema); at the end every documented status of every
operation must have been seen, except the ones named in the two allowlists
below, and nothing undocumented may have been answered.

The JSON Schema subset docs/openapi.yaml uses is checked by a small validator
written here (no third-party validator); a keyword outside that subset fails
the test, so the document cannot silently use something nothing checks.
"""

import base64
import os
import re
import resource
import unittest
import urllib.parse

import yaml

import iwsec_harness as h

SPEC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "openapi.yaml")

AUTHENTICATE = "/v3/security/authenticate"
ACCESS = "/v3/security/token/access"
VALIDATE = "/v3/security/token/validate"
REFRESH = "/v3/security/token/refresh"
ROUTES = [("get", AUTHENTICATE), ("get", ACCESS), ("delete", ACCESS), ("get", VALIDATE), ("delete", REFRESH)]

# Documented statuses this test cannot provoke because they need a setup it
# does not have. (The edge limits, 413 and 431, and the users-file 503 are
# provoked below on every operation that documents them.)
#   503 on DELETE /token/access: a revocation reads no user state, so a users
#       file that cannot be reloaded does not stop it (test_d checks it still
#       answers 200), and it hashes no password (no hashing queue). Only
#       cluster mode past its staleness bound or without its database answers
#       it there, which needs PostgreSQL (tests/python/test_cluster.py).
OTHER_BRANCHES = {("delete", ACCESS, "503")}

# Documented statuses no outside input can cause on a route that writes
# nothing: 500 is a fault inside the library. tests/test_http_routes.cpp
# ("a user store that throws gives a 500 envelope without the exception
# text") and tests/test_guard.cpp provoke it in process with a throwing store.
FAULT_ONLY = {("get", AUTHENTICATE, "500"), ("get", ACCESS, "500"), ("get", VALIDATE, "500")}

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# ---------------------------------------------------------------------------
# The document and a validator for the JSON Schema subset it uses.

ANNOTATIONS = {"description", "format", "title", "example"}
KEYWORDS = {"$ref", "allOf", "type", "properties", "required", "additionalProperties", "enum", "pattern",
            "minLength"} | ANNOTATIONS


class SchemaError(AssertionError):
    pass


class Document:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)

    def resolve(self, node):
        """Follows `$ref` (local references only) until a node without one."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise SchemaError("unusable $ref %r" % ref)
            seen.add(ref)
            target = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")  # JSON Pointer escapes
                if not isinstance(target, dict) or part not in target:
                    raise SchemaError("dangling $ref %r" % ref)
                target = target[part]
            node = target
        return node

    def operation(self, method, path):
        item = self.doc["paths"].get(path)
        return None if item is None else self.resolve(item).get(method)

    def path_items(self):
        """(path, item) for every documented path, both spellings of each route."""
        return [(path, self.resolve(item)) for path, item in self.doc["paths"].items()]

    def route_of(self, path):
        """The documented route @p path is a spelling of: without its one
        trailing slash when that spelling is a reference to the route."""
        item = self.doc["paths"].get(path)
        if isinstance(item, dict) and "$ref" in item and path.endswith("/") and path[:-1] in self.doc["paths"]:
            return path[:-1]
        return path

    def validate(self, schema, value, where="$"):
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            raise SchemaError("%s: schema is not an object" % where)
        unknown = set(schema) - KEYWORDS
        if unknown:
            raise SchemaError("%s: keywords outside the checked subset: %s" % (where, sorted(unknown)))
        for part in schema.get("allOf", []):
            self.validate(part, value, where)
        kind = schema.get("type")
        if kind is not None:
            ok = {
                "object": isinstance(value, dict),
                "string": isinstance(value, str),
                "boolean": isinstance(value, bool),
                "integer": isinstance(value, int) and not isinstance(value, bool),
                "array": isinstance(value, list),
            }.get(kind)
            if ok is None:
                raise SchemaError("%s: type %r outside the checked subset" % (where, kind))
            if not ok:
                raise SchemaError("%s: expected %s, got %s" % (where, kind, type(value).__name__))
        if "enum" in schema and value not in schema["enum"]:
            raise SchemaError("%s: %r is not one of %r" % (where, value, schema["enum"]))
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                raise SchemaError("%s: does not match %r" % (where, schema["pattern"]))
            if len(value) < schema.get("minLength", 0):
                raise SchemaError("%s: shorter than %d" % (where, schema["minLength"]))
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name not in value:
                    raise SchemaError("%s: required member %r missing" % (where, name))
            properties = schema.get("properties", {})
            for name, member in value.items():
                if name in properties:
                    self.validate(properties[name], member, "%s.%s" % (where, name))
                elif schema.get("additionalProperties", True) is False:
                    raise SchemaError("%s: undocumented member %r" % (where, name))


def basic_raw(text):
    return "Basic " + base64.b64encode(text.encode("utf-8")).decode("ascii")


class OpenApiDocumentTest(unittest.TestCase):
    """The document itself: well formed for what the route test relies on."""

    def test_every_reference_resolves_and_every_schema_is_in_the_subset(self):
        d = Document(SPEC_PATH)
        self.assertEqual(d.doc["openapi"], "3.0.3")

        def walk(node, where):
            if isinstance(node, dict):
                if "$ref" in node:
                    d.resolve(node)
                for key, value in node.items():
                    walk(value, where + "/" + str(key))
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    walk(value, "%s/%d" % (where, i))

        walk(d.doc, "#")
        for name, schema in d.doc["components"]["schemas"].items():
            self.assertLessEqual(set(schema) - KEYWORDS, set(), name)

    def test_the_five_routes_are_documented_with_their_credentials(self):
        d = Document(SPEC_PATH)
        schemes = d.doc["components"]["securitySchemes"]
        expected = {("get", AUTHENTICATE): "basicPassword", ("get", ACCESS): "basicRefreshToken",
                    ("delete", ACCESS): "bearerToken", ("get", VALIDATE): "bearerToken",
                    ("delete", REFRESH): "basicPassword"}
        for (method, path), scheme in expected.items():
            op = d.operation(method, path)
            self.assertIsNotNone(op, "%s %s" % (method, path))
            self.assertEqual(op["security"], [{scheme: []}])
            self.assertIn(scheme, schemes)
            for status in op["responses"]:
                self.assertRegex(status, r"^[1-5][0-9][0-9]$")
        routes = {AUTHENTICATE, ACCESS, VALIDATE, REFRESH}
        self.assertEqual(set(d.doc["paths"]), routes | {p + "/" for p in routes})
        # docs/endpoints.md: one trailing slash is the same route, documented as a reference to it.
        for path in routes:
            self.assertEqual(d.doc["paths"][path + "/"], {"$ref": "#/paths/" + path.replace("/", "~1")})
            self.assertIs(d.resolve(d.doc["paths"][path + "/"]), d.doc["paths"][path])
            self.assertEqual(d.route_of(path + "/"), path)
        params = d.operation("get", AUTHENTICATE)["parameters"]
        self.assertEqual([d.resolve(p)["name"] for p in params], ["service_id"])


    def test_endpoints_md_and_openapi_yaml_agree(self):
        """Each route's status table in docs/endpoints.md lists the statuses
        and iw_codes openapi.yaml documents (413 and 431, the edge limits,
        are in its table of every status instead)."""
        d = Document(SPEC_PATH)
        with open(os.path.join(os.path.dirname(SPEC_PATH), "endpoints.md"), encoding="utf-8") as f:
            text = f.read()
        for method, path in ROUTES:
            heading = "## `%s %s`" % (method.upper(), path)
            self.assertIn(heading, text)
            section = text.split(heading, 1)[1].split("\n## ", 1)[0]
            rows = re.findall(r"^\| ([1-5][0-9][0-9]) \| (IW[0-9]{5}|—) \|", section, re.M)
            op = d.operation(method, path)
            self.assertEqual(sorted(s for s, _ in rows), sorted(set(op["responses"]) - {"413", "431"}), heading)
            for status, code in rows:
                content = d.resolve(op["responses"][status]).get("content", {})
                schema = d.resolve(next(iter(content.values()))["schema"]) if content else {}
                codes = [d.resolve(p).get("properties", {}).get("iw_code", {}).get("enum")
                         for p in schema.get("allOf", [])]
                codes = [c for c in codes if c and len(c) == 1]
                self.assertEqual(codes[0] if codes else ["—"], [code], "%s %s" % (heading, status))


class OpenApiRoutesTest(unittest.TestCase):
    """A real iwsec-server, every route into every status it can answer."""

    @classmethod
    def setUpClass(cls):
        cls.doc = Document(SPEC_PATH)
        cls.seen = set()

    # -- recording and checking answers -----------------------------------

    def check(self, method, path, response, body_sent=False):
        """Checks @p response against the documented operation; returns it."""
        route = urllib.parse.urlsplit(path).path
        op = self.doc.operation(method, route)
        route = self.doc.route_of(route)  # both spellings are one route
        self.assertIsNotNone(op, "undocumented operation %s %s" % (method, route))
        status = str(response.status_code)
        where = "%s %s -> %s" % (method.upper(), path[:80], status)
        self.assertTrue(status in op["responses"], "undocumented status: " + where)
        documented = self.doc.resolve(op["responses"][status])
        for name, header in documented.get("headers", {}).items():
            header = self.doc.resolve(header)
            value = response.headers.get(name)
            if header.get("required"):
                self.assertIsNotNone(value, "%s: required header %s missing" % (where, name))
            if value is not None:
                try:
                    self.doc.validate(header["schema"], value, name)
                except SchemaError as e:
                    self.fail("%s: header %s" % (where, e))
        content = documented.get("content")
        if content:
            self.assertEqual(list(content), [response.headers.get("Content-Type")], where)
            try:
                self.doc.validate(content[response.headers["Content-Type"]]["schema"], response.json())
            except SchemaError as e:
                self.fail("%s: %s" % (where, e))
            except ValueError:
                self.fail("%s: body is not JSON" % where)
        else:
            self.assertEqual(response.content, b"", where + ": documented without a body")
        self.seen.add((method, route, status))
        return response

    def call(self, api, method, path, authorization=None, **kwargs):
        return self.check(method, path, api.request(method.upper(), path, authorization, **kwargs))

    def raw(self, server, method, path, headers):
        return self.check(method, path, h.raw_request(server.base_url, method.upper(), path, headers))

    def start(self, data, *flags):
        server = h.start_server(self, data, *flags)
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        return server, api

    # -- the test ------------------------------------------------------------

    def test_a_every_route_answers_only_what_is_documented(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, "alice@example.com", "alice-pw")
        h.add_user(self, data, "bob@example.com", "bob-pw")
        self.assertEqual(h.admin(data, "disable-user", "bob@example.com").returncode, 0)
        server, api = self.start(data)
        too_long = "Bearer " + "A" * 5000

        # GET /authenticate
        ok = self.call(api, "get", AUTHENTICATE, h.basic("ALICE@example.com", "alice-pw"))
        self.assertEqual(ok.status_code, 200)
        access = ok.json()["result"]["authentication_token"]
        for value in ("42", "0", "123456789012345678", "1234567890123456789", "abc", "", "-1", "4 2"):
            r = self.call(api, "get", AUTHENTICATE + "?service_id=" + urllib.parse.quote(value),
                          h.basic("alice@example.com", "alice-pw"))
            # The documented parameter schema and the server agree on every value.
            param = self.doc.resolve(self.doc.operation("get", AUTHENTICATE)["parameters"][0])
            documented_ok = re.search(param["schema"]["pattern"], value) is not None
            self.assertEqual(r.status_code, 200 if documented_ok else 400, "service_id=%r" % value)
        self.assertEqual(self.call(api, "get", AUTHENTICATE + "?service_id=1&service_id=2",
                                   h.basic("alice@example.com", "alice-pw")).status_code, 400)
        for bad in ("Basic !!!", basic_raw("no-colon"), basic_raw("alice@example.com:pw\x01"), too_long):
            self.assertEqual(self.call(api, "get", AUTHENTICATE, bad).status_code, 400)
        self.assertEqual(self.raw(server, "get", AUTHENTICATE, [("Authorization", h.basic("a@b", "c")),
                                                                ("Authorization", h.basic("a@b", "c"))]).status_code, 400)
        for none in (None, "Basic ", "Bearer " + access, "Digest abc"):
            self.assertEqual(self.call(api, "get", AUTHENTICATE, none).status_code, 401)
        for email, password in (("alice@example.com", "wrong"), ("nobody@example.com", "x"), ("bob@example.com", "bob-pw")):
            self.assertEqual(self.call(api, "get", AUTHENTICATE, h.basic(email, password)).status_code, 406)

        # GET /token/access
        ok = self.call(api, "get", ACCESS, "Basic " + refresh)
        self.assertEqual(ok.status_code, 200)
        self.assertEqual(self.call(api, "get", ACCESS, too_long).status_code, 400)
        self.assertEqual(self.raw(server, "get", ACCESS, [("Authorization", "Basic " + refresh),
                                                          ("Authorization", "Basic " + refresh)]).status_code, 400)
        for none in (None, "Basic ", "Bearer " + access):
            self.assertEqual(self.call(api, "get", ACCESS, none).status_code, 401)
        self.assertEqual(self.call(api, "get", ACCESS, "Basic not-a-refresh-token").status_code, 406)

        # GET /token/validate
        r = self.call(api, "get", VALIDATE, h.bearer(access))
        self.assertEqual((r.status_code, r.json()["result"]["is_valid"]), (200, True))
        for junk in ("junk", access[:-2], access + "x", "a.b.c"):
            r = self.call(api, "get", VALIDATE, h.bearer(junk))
            self.assertEqual((r.status_code, r.json()["result"]["is_valid"]), (200, False))
        self.assertEqual(self.call(api, "get", VALIDATE, too_long).status_code, 400)
        self.assertEqual(self.raw(server, "get", VALIDATE, [("Authorization", h.bearer(access)),
                                                            ("Authorization", h.bearer(access))]).status_code, 400)
        for none in (None, "Bearer ", "Basic " + refresh):
            r = self.call(api, "get", VALIDATE, none)
            self.assertEqual(r.status_code, 401)
            self.assertNotIn("invalid_token", r.headers["WWW-Authenticate"])

        # DELETE /token/access
        self.assertEqual(self.call(api, "delete", ACCESS, h.bearer(access)).status_code, 200)
        self.assertEqual(self.call(api, "delete", ACCESS, h.bearer(access)).status_code, 200)  # idempotent
        self.assertFalse(self.call(api, "get", VALIDATE, h.bearer(access)).json()["result"]["is_valid"])
        self.assertEqual(self.call(api, "delete", ACCESS, too_long).status_code, 400)
        self.assertEqual(self.raw(server, "delete", ACCESS, [("Authorization", h.bearer(access)),
                                                             ("Authorization", h.bearer(access))]).status_code, 400)
        r = self.call(api, "delete", ACCESS, None)
        self.assertEqual(r.status_code, 401)
        self.assertNotIn("invalid_token", r.headers["WWW-Authenticate"])
        for junk in ("junk", access[:-2] + ("BB" if access.endswith("AA") else "AA")):
            r = self.call(api, "delete", ACCESS, h.bearer(junk))
            self.assertEqual(r.status_code, 401)
            self.assertIn('error="invalid_token"', r.headers["WWW-Authenticate"])

        # DELETE /token/refresh
        r = self.call(api, "delete", REFRESH, h.basic("alice@example.com", "alice-pw"))
        self.assertEqual(r.status_code, 200)
        new_refresh = r.json()["refresh_token"]
        self.assertEqual(self.call(api, "get", ACCESS, "Basic " + refresh).status_code, 406)  # rotated
        self.assertEqual(self.call(api, "get", ACCESS, "Basic " + new_refresh).status_code, 200)
        for bad in ("Basic !!!", basic_raw("no-colon"), too_long):
            self.assertEqual(self.call(api, "delete", REFRESH, bad).status_code, 400)
        for none in (None, "Bearer x"):
            self.assertEqual(self.call(api, "delete", REFRESH, none).status_code, 401)
        for email, password in (("alice@example.com", "wrong"), ("nobody@example.com", "x"), ("bob@example.com", "bob-pw")):
            self.assertEqual(self.call(api, "delete", REFRESH, h.basic(email, password)).status_code, 406)

        # Other methods and OPTIONS: Allow names exactly the documented security
        # operations, on both spellings of each route.
        for path, item in self.doc.path_items():
            served = sorted(m.upper() for m, op in item.items()
                            if m in HTTP_METHODS and "security" in op.get("tags", []))
            for method, op in item.items():
                if method not in HTTP_METHODS or "security" in op.get("tags", []):
                    continue
                if method == "options":
                    r = self.raw(server, method, path, [])
                    self.assertEqual(r.status_code, 204)
                    self.assertEqual(sorted(r.headers["Allow"].split(", ")), sorted(served + ["OPTIONS"]))
                    continue
                r = self.raw(server, method, path, [("Content-Length", "0")])
                self.assertEqual(r.status_code, 405, "%s %s" % (method, path))
                self.assertEqual(sorted(r.headers["Allow"].split(", ")), served)
                if method in ("post", "put", "patch"):
                    # Refused before routing at once (cpp-httplib would read
                    # such a body until the connection ends).
                    r = self.raw(server, method, path, [])
                    self.assertEqual(r.status_code, 400, "%s %s without Content-Length" % (method, path))
                    self.assertEqual(r.headers.get("Connection"), "close")

        # Before routing, on every operation of every path (the security
        # routes and the others alike, both spellings): a body, and headers past the limits.
        for path, item in self.doc.path_items():
            for method in item:
                if method not in HTTP_METHODS:
                    continue
                where = "%s %s" % (method.upper(), path)
                # 413: Content-Length > 0 (the body is never sent nor read).
                r = self.raw(server, method, path, [("Content-Length", "5")])
                self.assertEqual((r.status_code, r.headers.get("Connection")), (413, "close"), where)
                # 400: a body of unusable framing.
                for framing in ([("Transfer-Encoding", "chunked")], [("Content-Length", "5x")],
                                [("Content-Length", "1"), ("Content-Length", "1")]):
                    r = self.raw(server, method, path, framing)
                    self.assertEqual((r.status_code, r.headers.get("Connection")), (400, "close"),
                                     "%s %r" % (where, framing))
                    self.assertIn("request body", r.json()["details"])
                # 431: more than 100 header lines; more than 32 KiB of headers.
                for headers in ([("X-Filler-%d" % i, "v") for i in range(101)], [("X-Filler", "v" * (33 * 1024))]):
                    r = self.raw(server, method, path, headers)
                    self.assertEqual((r.status_code, r.headers.get("Connection")), (431, "close"),
                                     "%s, %d header lines" % (where, len(headers)))
        # Right at the line limit (http.client adds Host and Accept-Encoding): not a 431.
        self.assertEqual(self.raw(server, "get", VALIDATE, [("X-Filler-%d" % i, "v") for i in range(97)]
                                  + [("Authorization", h.bearer(access))]).status_code, 200)

        # One trailing slash: the same route, the same documented answers (docs/endpoints.md).
        ok = self.call(api, "get", AUTHENTICATE + "/", h.basic("alice@example.com", "alice-pw"))
        self.assertEqual(ok.status_code, 200)
        slash_access = ok.json()["result"]["authentication_token"]
        self.assertEqual(self.call(api, "get", AUTHENTICATE + "/", h.basic("alice@example.com", "wrong")).status_code,
                         406)
        r = self.call(api, "get", VALIDATE + "/", h.bearer(slash_access))
        self.assertEqual((r.status_code, r.json()["result"]["is_valid"]), (200, True))
        self.assertEqual(self.call(api, "get", ACCESS + "/", None).status_code, 401)
        self.assertEqual(self.call(api, "get", ACCESS + "/", "Basic not-a-refresh-token").status_code, 406)
        self.assertEqual(self.call(api, "delete", ACCESS + "/", h.bearer(slash_access)).status_code, 200)
        self.assertEqual(self.call(api, "delete", REFRESH + "/", "Basic !!!").status_code, 400)
        self.assertEqual(h.raw_request(server.base_url, "GET", VALIDATE + "//", []).status_code, 404)

    def test_b_lockout_answers_429(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, "carol@example.com", "carol-pw")
        _, api = self.start(data, "--lockout-failures", "2", "--lockout-client-failures", "4")
        for _ in range(2):
            self.assertEqual(self.call(api, "get", AUTHENTICATE, h.basic("carol@example.com", "no")).status_code, 406)
        # Locked: even the right password, on both password routes.
        r = self.call(api, "get", AUTHENTICATE, h.basic("carol@example.com", "carol-pw"))
        self.assertEqual(r.status_code, 429)
        self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
        self.assertEqual(self.call(api, "delete", REFRESH, h.basic("carol@example.com", "carol-pw")).status_code, 429)
        # Two more failures from this client (refresh tokens count per client) block the client.
        for _ in range(2):
            self.assertEqual(self.call(api, "get", ACCESS, "Basic wrong-refresh-token").status_code, 406)
        self.assertEqual(self.call(api, "get", ACCESS, "Basic " + refresh).status_code, 429)

    def test_c_a_write_that_cannot_be_stored_is_500_and_changes_nothing(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, "dave@example.com", "dave-pw")
        key = os.path.join(h.temp_dir(self), "key")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(key, 0o600)
        # A real fault: once listening, the server may not grow any file
        # (RLIMIT_FSIZE), so the journal append and the users-file write fail
        # with EFBIG. SIGXFSZ is ignored (bash's trap survives the exec;
        # Python's subprocess would restore it) so the write fails instead of
        # killing the process.
        argv = ["bash", "-c", 'trap "" XFSZ; exec "$0" "$@"', h.server_path(), "--host", "127.0.0.1",
                "--port", "0", "--data-dir", data, "--secret-file", key, "--pbkdf2-rounds", str(h.FAST_ROUNDS)]
        server = h.Server(argv)
        self.addCleanup(server.force_stop)
        server.wait_listening()
        api = h.Api(server.base_url)
        self.addCleanup(api.close)
        access = api.token_by_refresh(self, refresh)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (1, hard))

        self.assertEqual(self.call(api, "delete", ACCESS, h.bearer(access)).status_code, 500)
        self.assertTrue(api.is_valid(self, access), "a revocation answered 500 took effect")
        self.assertEqual(self.call(api, "delete", REFRESH, h.basic("dave@example.com", "dave-pw")).status_code, 500)
        self.assertEqual(api.access_token(refresh).status_code, 200, "a rotation answered 500 took effect")

    def test_d_a_users_file_that_cannot_be_reloaded_answers_503(self):
        data = h.data_dir(self)
        _, refresh = h.add_user(self, data, "erin@example.com", "erin-pw")
        server, api = self.start(data)
        access = api.token_by_refresh(self, refresh)
        spare = api.token_by_refresh(self, refresh)
        # Changed on disk to content that does not parse (a chmod 000 would
        # not stop root, which CI runs as): what needs user state is 503
        # until the file is good again.
        path = os.path.join(data, "users.json")
        with open(path, "rb") as f:
            good = f.read()

        def replace(content):
            with open(path + ".new", "wb") as f:
                f.write(content)
            os.rename(path + ".new", path)

        replace(b'{"version": 1, "users": [{"garbage"')
        self.addCleanup(lambda: os.path.exists(path + ".new") and os.remove(path + ".new"))
        try:
            for method, path_, authorization in (
                    ("get", AUTHENTICATE, h.basic("erin@example.com", "erin-pw")),
                    ("get", ACCESS, "Basic " + refresh),
                    ("get", VALIDATE, h.bearer(access)),
                    ("delete", REFRESH, h.basic("erin@example.com", "erin-pw"))):
                r = self.call(api, method, path_, authorization)
                self.assertEqual(r.status_code, 503, "%s %s" % (method, path_))
                self.assertEqual(r.json()["iw_code"], "IW10002")
                self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
            # A revocation needs no user state (why its 503 is in OTHER_BRANCHES).
            self.assertEqual(self.call(api, "delete", ACCESS, h.bearer(spare)).status_code, 200)
        finally:
            replace(good)
        self.assertEqual(self.call(api, "get", VALIDATE, h.bearer(access)).json()["result"]["is_valid"], True)
        self.assertEqual(self.call(api, "get", AUTHENTICATE, h.basic("erin@example.com", "erin-pw")).status_code, 200)

    def test_z_every_documented_status_was_seen(self):
        # Runs last (unittest sorts by name): the union of what the tests above saw.
        if not any(p for (_, p, _) in self.seen):
            self.skipTest("no route test ran")
        documented = set()
        for path, item in self.doc.doc["paths"].items():
            if "$ref" in item:
                continue  # the other spelling of a route: seen under the route
            for method, op in item.items():
                if method in HTTP_METHODS:
                    documented |= {(method, path, status) for status in op["responses"]}
        allowed_unseen = OTHER_BRANCHES | FAULT_ONLY
        self.assertLessEqual(allowed_unseen, documented, "an allowlisted status is not documented")
        missing = sorted(documented - self.seen - allowed_unseen)
        self.assertEqual(missing, [], "documented but never provoked")
        now_seen = sorted(self.seen & allowed_unseen)
        self.assertEqual(now_seen, [], "provoked now: take these out of the allowlists")


if __name__ == "__main__":
    unittest.main()
