"""Shared helpers for iwsec's Python tests.

Programs come from the environment ctest sets: IWSEC_SERVER, IWSEC_ADMIN,
IWSEC_TESTTOOL, IWSEC_EXISTING_SERVICE. Servers run on 127.0.0.1 with an
OS-chosen port; every wait is bounded; a server a test started is always
killed, whether the test passes or fails (the start helpers register the
kill with TestCase.addCleanup).
"""

import atexit
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import requests

# Bounds on every wait, in seconds.
START_TIMEOUT = 20
STOP_TIMEOUT = 15
PROGRAM_TIMEOUT = 60
HTTP_TIMEOUT = 15

# PBKDF2 rounds for test users: fast, and still a real hash.
FAST_ROUNDS = 1000

# Programs run with a permissive umask, so a 0600 file proves the program
# asked for 0600 rather than inheriting it.
UMASK = 0o022

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
ENVELOPE_KEYS = {"message", "details", "iw_code", "help"}


def program(variable):
    """The path of a bundled program, from the environment ctest sets."""
    path = os.environ.get(variable)
    if not path:
        raise unittest.SkipTest(variable + " is not set (run these tests through ctest)")
    if not os.access(path, os.X_OK):
        raise AssertionError("%s=%s is not an executable file" % (variable, path))
    return path


def server_path():
    return program("IWSEC_SERVER")


def admin_path():
    return program("IWSEC_ADMIN")


def testtool_path():
    return program("IWSEC_TESTTOOL")


def existing_service_path():
    return program("IWSEC_EXISTING_SERVICE")


def temp_dir(test, prefix="iwsec-py-"):
    """A fresh directory, removed when @p test finishes."""
    path = tempfile.mkdtemp(prefix=prefix)
    test.addCleanup(shutil.rmtree, path, True)
    return path


def data_dir(test):
    """A data directory path inside a temp dir (not created: the programs create it)."""
    return os.path.join(temp_dir(test), "data")


def read_signing_keys(path):
    """The keys of a key file as (kid, created, secret bytes), oldest first:
    the keyring format (`iwsec-keyring 1`, then `KID CREATED BASE64URL`
    lines), or a raw key (one key, kid "legacy")."""
    with open(path, "rb") as f:
        data = f.read()
    if not (data.startswith(b"iwsec-keyring 1\n") or data == b"iwsec-keyring 1"):
        return [("legacy", None, data)]
    keys = []
    for line in data.decode("ascii").splitlines()[1:]:
        if not line or line.startswith("#"):
            continue
        kid, created, encoded = line.split(" ")
        keys.append((kid, created, base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))))
    return keys


def signing_secret(data_directory):
    """The secret that signs new tokens: the last key of DIR/signing.key (in
    cluster mode, the --secret-file every server of DIR is given)."""
    if CLUSTER_MODE:
        return read_signing_keys(os.path.abspath(data_directory).rstrip("/") + ".cluster-key")[-1][2]
    return read_signing_keys(os.path.join(data_directory, "signing.key"))[-1][2]


def file_mode(path):
    return os.stat(path).st_mode & 0o777


# ---------------------------------------------------------------------------
# Servers


class ServerError(AssertionError):
    pass


# Every server not yet reaped: a safety net for an interpreter that exits
# without running the tests' cleanups (Ctrl-C, an error in module code).
_live_servers = set()


@atexit.register
def _kill_leftover_servers():
    for server in list(_live_servers):
        server.force_stop()


class Server:
    """A running server process. Use start_server() to make one."""

    def __init__(self, argv, preexec_fn=None):
        self.argv = list(argv)
        self.base_url = None
        self.returncode = None
        self.preamble = []         # stdout lines before the listening line
        self._stdout = []          # complete lines after the listening line
        self._stderr = bytearray()
        self._partial = bytearray()
        self._cond = threading.Condition()
        self._threads = []
        self._stdout_closed = False
        self._stderr_closed = False
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, umask=UMASK,
            preexec_fn=preexec_fn)
        _live_servers.add(self)

    # -- start-up ----------------------------------------------------------

    def wait_listening(self, timeout=START_TIMEOUT):
        """Reads stdout (and drains stderr) until the listening line, EOF, or
        the deadline; returns the base URL."""
        deadline = time.monotonic() + timeout
        out_fd = self.proc.stdout.fileno()
        err_fd = self.proc.stderr.fileno()
        open_fds = {out_fd, err_fd}
        buffer = bytearray()
        while out_fd in open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerError("%s printed no listening line within %ss; stderr: %r"
                                  % (self.argv[0], timeout, bytes(self._stderr)))
            ready, _, _ = select.select(list(open_fds), [], [], remaining)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                elif fd == err_fd:
                    self._stderr += chunk
                else:
                    buffer += chunk
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                text = line.decode("utf-8", "replace")
                if not text.startswith("listening on "):
                    # The start-up summary comes before the listening line.
                    if len(self.preamble) >= 10:
                        raise ServerError("no listening line among the first lines of stdout: %r" % self.preamble)
                    self.preamble.append(text)
                    buffer = bytearray(rest)
                    continue
                self.base_url = text[len("listening on "):]
                self._partial += rest
                self._split_lines()
                self._start_drains(out_fd in open_fds, err_fd in open_fds)
                return self.base_url
        # stdout closed before a listening line: the program failed to start.
        while err_fd in open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([err_fd], [], [], remaining)
            if not ready:
                break
            chunk = os.read(err_fd, 65536)
            if chunk:
                self._stderr += chunk
            else:
                open_fds.discard(err_fd)
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        self.returncode = self.proc.returncode
        raise ServerError("%s exited (status %r) before listening; stderr: %r"
                          % (self.argv[0], self.proc.returncode, bytes(self._stderr)))

    def _split_lines(self):
        while b"\n" in self._partial:
            line, _, rest = bytes(self._partial).partition(b"\n")
            self._stdout.append(line.decode("utf-8", "replace"))
            self._partial = bytearray(rest)

    def _start_drains(self, stdout_open, stderr_open):
        # Keep the pipes flowing so a chatty access log never blocks the server.
        def drain(fd, is_stdout):
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                with self._cond:
                    if not chunk:
                        if is_stdout:
                            self._stdout_closed = True
                        else:
                            self._stderr_closed = True
                        self._cond.notify_all()
                        return
                    if is_stdout:
                        self._partial += chunk
                        self._split_lines()
                    else:
                        self._stderr += chunk
                    self._cond.notify_all()

        self._stdout_closed = not stdout_open
        self._stderr_closed = not stderr_open
        for fd, is_stdout, is_open in ((self.proc.stdout.fileno(), True, stdout_open),
                                       (self.proc.stderr.fileno(), False, stderr_open)):
            if is_open:
                t = threading.Thread(target=drain, args=(fd, is_stdout), daemon=True)
                t.start()
                self._threads.append(t)

    # -- output ------------------------------------------------------------

    def log_lines(self):
        """The stdout lines printed after the listening line, so far."""
        with self._cond:
            return list(self._stdout)

    def stderr_text(self):
        with self._cond:
            return bytes(self._stderr).decode("utf-8", "replace")

    def _wait_until(self, probe, closed, timeout):
        """Waits (bounded, on the condition variable the drain threads
        notify) until probe() returns something other than None, and returns
        it; None at the deadline or once closed() says no more will come."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = probe()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or closed():
                    return None
                self._cond.wait(remaining)

    def wait_for_stderr(self, predicate, timeout=HTTP_TIMEOUT):
        """Waits until the stderr read so far satisfies @p predicate, and
        returns it. A line the server wrote before it answered may still be
        in the pipe when the answer arrives: the drain thread reads it a
        moment later. At the deadline, or once stderr is closed, returns the
        text as it is, for the caller's assertion."""
        def probe():
            text = bytes(self._stderr).decode("utf-8", "replace")
            return text if predicate(text) else None
        found = self._wait_until(probe, lambda: self._stderr_closed, timeout)
        return found if found is not None else self.stderr_text()

    def wait_for_log(self, predicate, timeout=HTTP_TIMEOUT):
        """Waits until some access-log line satisfies @p predicate; returns
        it, or None at the deadline."""
        return self._wait_until(lambda: next((line for line in self._stdout if predicate(line)), None),
                                lambda: self._stdout_closed, timeout)

    # -- stopping ----------------------------------------------------------

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends @p sig and waits for the exit; SIGKILLs on timeout and
        fails. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
                self._finish()
                raise ServerError("%s did not exit within %ss of signal %d" % (self.argv[0], timeout, sig))
        self._finish()
        return self.proc.returncode

    def kill(self):
        """SIGKILL (a crash), then reap the process."""
        return self.stop(signal.SIGKILL)

    def force_stop(self):
        """Cleanup: whatever state the process is in, make sure it is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._finish()

    def _finish(self):
        _live_servers.discard(self)
        for t in self._threads:
            t.join(timeout=STOP_TIMEOUT)
        self._threads = []
        for f in (self.proc.stdout, self.proc.stderr):
            if f and not f.closed:
                f.close()
        self.returncode = self.proc.returncode

    def url(self, path):
        return self.base_url + path


# ---------------------------------------------------------------------------
# Cluster mode switch: with IWSEC_TEST_POSTGRES=1 every data directory a test
# names stands for a database of one throwaway PostgreSQL (pg_cluster.py),
# so the same HTTP tests run against replicas in cluster mode.

CLUSTER_MODE = os.environ.get("IWSEC_TEST_POSTGRES") == "1"
_cluster = {"pg": None, "databases": {}}


def store_arguments(data_directory, server=False, extra=()):
    """`--data-dir DIR`, or in cluster mode `--postgres CONNINFO` (plus, for a
    server without one, a `--secret-file` shared by every server of DIR)."""
    if not CLUSTER_MODE:
        return ["--data-dir", data_directory]
    import pg_cluster
    if _cluster["pg"] is None:
        _cluster["pg"] = pg_cluster.PostgreSQL().start()
    pg = _cluster["pg"]
    key = os.path.abspath(data_directory)
    if key not in _cluster["databases"]:
        _cluster["databases"][key] = pg.new_database()
    argv = ["--postgres", pg.conninfo(_cluster["databases"][key])]
    if server and "--secret-file" not in extra:
        secret = key.rstrip("/") + ".cluster-key"
        if not os.path.exists(secret):
            with open(secret, "wb") as f:
                f.write(os.urandom(32))
            os.chmod(secret, 0o600)
        argv += ["--secret-file", secret]
    return argv


def _cluster_sql(data_directory, statement):
    store_arguments(data_directory)  # the database of DIR, created if need be
    return _cluster["pg"].sql(statement, _cluster["databases"][os.path.abspath(data_directory)])


def revocations(data_directory):
    """The stored revocations of DIR as [(jti, owner or None)], wherever they
    live: DIR/revocations.journal, or in cluster mode the database."""
    if CLUSTER_MODE:
        text = _cluster_sql(data_directory, "SELECT jti || ' ' || coalesce(owner, '') FROM iwsec_revocations")
        rows = [line.split(" ", 1) for line in text.splitlines() if line]
        return [(jti, owner or None) for jti, owner in rows]
    path = os.path.join(data_directory, "revocations.journal")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2:
                out.append((words[0], words[2] if len(words) > 2 else None))
    return out


def users_state(data_directory):
    """Everything stored about DIR's users, to compare before and after a
    command that must change nothing: the bytes of DIR/users.json and of its
    change journal, or in cluster mode every row of the users table."""
    if CLUSTER_MODE:
        return _cluster_sql(data_directory, "SELECT string_agg(t::text, E'\\n' ORDER BY user_id) FROM iwsec_users t")
    state = b""
    for name in ("users.json", "users.json.journal"):
        path = os.path.join(data_directory, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                state += name.encode() + b"\n" + f.read()
    return state


def start_server(test, data_directory, *extra, binary=None, rounds=FAST_ROUNDS, timeout=START_TIMEOUT,
                 preexec_fn=None):
    """Starts iwsec-server (or @p binary) on 127.0.0.1, an OS-chosen port and
    @p data_directory; returns a listening Server, killed when @p test ends.
    @p preexec_fn runs in the child before the exec (e.g. to set a limit)."""
    argv = [binary or server_path(), "--host", "127.0.0.1", "--port", "0"]
    argv += store_arguments(data_directory, server=binary is None, extra=extra)
    if binary is None and rounds is not None:
        argv += ["--pbkdf2-rounds", str(rounds)]
    argv += list(extra)
    server = Server(argv, preexec_fn=preexec_fn)
    test.addCleanup(server.force_stop)
    server.wait_listening(timeout)
    return server


def start_existing_service(test, data_directory, *extra):
    return start_server(test, data_directory, *extra, binary=existing_service_path(), rounds=None)


def run_program(argv, stdin=None, timeout=PROGRAM_TIMEOUT):
    """Runs a program to completion (bounded); returns CompletedProcess with text output."""
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    result = subprocess.run(argv, input=stdin if stdin is not None else b"", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=timeout, umask=UMASK)
    result.stdout = result.stdout.decode("utf-8")
    result.stderr = result.stderr.decode("utf-8", "replace")
    return result


# ---------------------------------------------------------------------------
# iwsec-admin and iwsec-testtool


def admin(data_directory, *args, stdin=None, rounds=FAST_ROUNDS, timeout=PROGRAM_TIMEOUT):
    argv = [admin_path()] + store_arguments(data_directory) + list(args)
    if rounds is not None:
        argv += ["--pbkdf2-rounds", str(rounds)]
    return run_program(argv, stdin=stdin, timeout=timeout)


def parse_fields(text):
    """`key: value` lines as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def add_user(test, data_directory, email, password, rounds=FAST_ROUNDS):
    """iwsec-admin add-user --json; returns (user_id, refresh_token)."""
    r = admin(data_directory, "add-user", email, "--json", stdin=password + "\n", rounds=rounds)
    test.assertEqual(r.returncode, 0, "add-user failed: " + r.stderr)
    doc = json.loads(r.stdout)
    test.assertIsInstance(doc["user_id"], str)
    test.assertIsInstance(doc["refresh_token"], str)
    return doc["user_id"], doc["refresh_token"]


def testtool(*args, stdin=None):
    return run_program([testtool_path()] + list(args), stdin=stdin)


# ---------------------------------------------------------------------------
# HTTP


def session():
    """A requests session that ignores proxy variables and .netrc."""
    s = requests.Session()
    s.trust_env = False
    return s


def basic(email, password):
    raw = (email + ":" + password).encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def bearer(token):
    return "Bearer " + token


class Api:
    """Thin helpers over the five security endpoints (every call bounded)."""

    def __init__(self, base_url, http=None):
        self.base_url = base_url
        self.http = http or session()

    def close(self):
        """Closes idle keep-alive connections (the server's shutdown waits
        for idle connections to time out, so close them before stopping)."""
        self.http.close()

    def request(self, method, path, authorization=None, **kwargs):
        headers = dict(kwargs.pop("headers", {}) or {})
        if authorization is not None:
            headers["Authorization"] = authorization
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("allow_redirects", False)
        return self.http.request(method, self.base_url + path, headers=headers, **kwargs)

    def authenticate(self, email, password):
        return self.request("GET", "/v3/security/authenticate", basic(email, password))

    def access_token(self, refresh_token):
        return self.request("GET", "/v3/security/token/access", "Basic " + refresh_token)

    def revoke(self, token):
        return self.request("DELETE", "/v3/security/token/access", bearer(token))

    def validate(self, token):
        return self.request("GET", "/v3/security/token/validate", bearer(token))

    def rotate(self, email, password):
        return self.request("DELETE", "/v3/security/token/refresh", basic(email, password))

    # -- checked variants ---------------------------------------------------

    def token_by_password(self, test, email, password):
        r = self.authenticate(email, password)
        test.assertEqual(r.status_code, 200, r.text)
        return r.json()["result"]["authentication_token"]

    def token_by_refresh(self, test, refresh_token):
        r = self.access_token(refresh_token)
        test.assertEqual(r.status_code, 200, r.text)
        return r.json()["result"]["authentication_token"]

    def is_valid(self, test, token):
        r = self.validate(token)
        test.assertEqual(r.status_code, 200, r.text)
        valid = r.json()["result"]["is_valid"]
        test.assertIsInstance(valid, bool)
        return valid


class RawResponse:
    """The parts of a requests.Response the assertions use, for raw_request."""

    def __init__(self, status, headers, body):
        self.status_code = status
        self.headers = requests.structures.CaseInsensitiveDict(headers)
        self.content = body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


def raw_request(base_url, method, path, header_list):
    """One request with exactly the headers in @p header_list (pairs, repeats
    allowed), which requests cannot send; bounded by HTTP_TIMEOUT."""
    import http.client
    import urllib.parse
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=HTTP_TIMEOUT)
    try:
        conn.putrequest(method, path)
        for name, value in header_list:
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        return RawResponse(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def assert_no_secret(test, secret, text, what):
    """Fails when @p secret occurs in @p text, without printing either."""
    if secret and secret in text:
        test.fail("a secret (%s) appears in the output" % what)


def assert_envelope(test, response, status=None, iw_code=None):
    """Every error answer: the Infoworks envelope, as JSON with charset."""
    if status is not None:
        # A success body may hold a token: show only error bodies.
        shown = response.text if response.status_code >= 400 else "(a %d body, withheld)" % response.status_code
        test.assertEqual(response.status_code, status, shown)
    test.assertEqual(response.headers.get("Content-Type"), JSON_CONTENT_TYPE)
    body = response.json()
    test.assertIsInstance(body, dict)
    test.assertTrue(ENVELOPE_KEYS <= set(body), "envelope keys missing: %r" % body)
    for key in ENVELOPE_KEYS:
        test.assertIsInstance(body[key], str)
    if iw_code is not None:
        test.assertEqual(body["iw_code"], iw_code)
    test.assertTrue(body["help"].endswith("/" + body["iw_code"]), body["help"])
    if response.status_code == 401:
        test.assertIn("WWW-Authenticate", response.headers)
    return body
