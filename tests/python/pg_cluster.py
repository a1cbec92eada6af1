"""A throwaway PostgreSQL 15 cluster for the cluster-mode tests.

PostgreSQL.start() runs `initdb` into a fresh temporary directory (as the
`postgres` OS account when the tests run as root: initdb refuses root), then
`pg_ctl start` on a free 127.0.0.1 port with its socket in that directory.
stop() stops the postmaster by its pid (SIGINT: fast shutdown; SIGKILL after
a bounded wait); restart() is stop() then start() (pg_ctl restart -m fast);
suspend() / resume() SIGSTOP / SIGCONT the postmaster and every backend (by
process id: a database that holds its connections open but answers
nothing); remove() also deletes the directory. Every wait is bounded.

Tests skip (unittest.SkipTest) only when the PostgreSQL server binaries are
not installed; any other failure to start is an error.
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

START_TIMEOUT = 60
STOP_TIMEOUT = 30

_live = set()


@atexit.register
def _remove_leftovers():
    for cluster in list(_live):
        cluster.remove()


def bin_dir():
    """The directory of initdb/pg_ctl/postgres, or None when not installed."""
    candidates = []
    try:
        out = subprocess.run(["pg_config", "--bindir"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=10, check=False).stdout.decode().strip()
        if out:
            candidates.append(out)
    except (OSError, subprocess.TimeoutExpired):
        pass
    candidates.append("/usr/lib/postgresql/15/bin")
    for d in candidates:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def psql_path():
    d = bin_dir()
    for candidate in ([os.path.join(d, "psql")] if d else []) + [shutil.which("psql") or ""]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise unittest.SkipTest("psql is not installed")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgreSQL:
    def __init__(self):
        self.bin = bin_dir()
        if self.bin is None:
            raise unittest.SkipTest("PostgreSQL server binaries (initdb, pg_ctl) are not installed "
                                    "(apt-get install postgresql-15)")
        self.root = None
        self.port = None
        self.pid = None
        self._as_postgres = os.geteuid() == 0

    # -- running commands as the cluster's owner ---------------------------

    def _argv(self, argv):
        if self._as_postgres:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _run(self, argv, timeout=START_TIMEOUT):
        r = subprocess.run(self._argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           cwd=self.root)
        if r.returncode != 0:
            raise AssertionError("%s failed (%d): %s" % (" ".join(argv), r.returncode,
                                                        r.stderr.decode("utf-8", "replace")))
        return r

    @property
    def data(self):
        return os.path.join(self.root, "data")

    # -- life cycle ---------------------------------------------------------

    def start(self):
        """initdb (first time only) and start; returns self."""
        if self.root is None:
            self.root = tempfile.mkdtemp(prefix="iwsec-pg-")
            _live.add(self)
            if self._as_postgres:
                pw = pwd.getpwnam("postgres")
                os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                       "-E", "UTF8", "--no-sync", "--locale=C"])
            self.port = free_port()
        log = os.path.join(self.root, "server.log")
        options = "-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=200" % (self.port, self.root)
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", log, "-o", options, "-w",
                   "-t", str(START_TIMEOUT), "start"])
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline().strip())
        return self

    def stop(self, immediate=False):
        """Fast shutdown of the postmaster (immediate: SIGQUIT, no shutdown
        checkpoint, like a crash), by pid; bounded."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGQUIT if immediate else signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart(self):
        """Fast shutdown (every connection broken) and start again on the same port."""
        self.stop()
        return self.start()

    def _backends(self):
        """The process ids of the postmaster's children (its backends and workers)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().split(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.pid:
                out.append(int(entry))
        return out

    def suspend(self):
        """SIGSTOPs the postmaster first (so it forks nothing new), then every
        backend; the kernel still accepts TCP connections and answers
        keepalives. Returns the stopped process ids (pass them to resume)."""
        stopped = [self.pid]
        os.kill(self.pid, signal.SIGSTOP)
        for _ in range(3):  # a child forked just before the stop
            for pid in self._backends():
                if pid not in stopped:
                    try:
                        os.kill(pid, signal.SIGSTOP)
                        stopped.append(pid)
                    except ProcessLookupError:
                        pass
        self._suspended = stopped
        return stopped

    def resume(self):
        """SIGCONTs what suspend() stopped (backends first, the postmaster last)."""
        for pid in reversed(getattr(self, "_suspended", [])):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._suspended = []

    def remove(self):
        self.resume()
        self.stop()
        _live.discard(self)
        if self.root:
            shutil.rmtree(self.root, True)
            self.root = None

    # -- using it -------------------------------------------------------------

    def conninfo(self, dbname="postgres"):
        return "host=127.0.0.1 port=%d user=postgres dbname=%s" % (self.port, dbname)

    def sql(self, statement, dbname="postgres"):
        """Runs @p statement with psql; returns its unaligned output."""
        r = subprocess.run([psql_path(), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(dbname),
                            "-c", statement], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise AssertionError("psql failed: %s" % r.stderr.decode("utf-8", "replace"))
        return r.stdout.decode("utf-8").strip()

    def new_database(self):
        """A fresh, empty database; returns its name."""
        name = "t_" + uuid.uuid4().hex[:12]
        self.sql("CREATE DATABASE %s" % name)
        return name


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our child? never: pg_ctl daemonises) counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
