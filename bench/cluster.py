#!/usr/bin/python3
"""Cluster-mode benchmark (figures printed, never a pass/fail on timing).

    /usr/bin/python3 bench/cluster.py BUILD_DIR [--revocations 1000] [--seconds 10] [--connections 64]

Needs PostgreSQL 15 (postgresql-15), wrk, and a build with libpq
(BUILD_DIR/examples/iwsec-server --help lists --postgres). It starts a
throwaway PostgreSQL (tests/python/pg_cluster.py), two replicas on it and one
single-node server on a data directory, all with the same signing key, and
measures:

1. revocation propagation: for each of N revocations, the time from replica
   A's 200 to replica B's first `is_valid:false` (B polled back to back on
   one keep-alive connection): p50, p99, max;
2. validation throughput (wrk, 1000 distinct tokens, C connections) of a
   replica and of the single-node server, and their ratio;
3. refresh-token exchanges (no database round trip in cluster mode),
   password logins (64 users, 1000 PBKDF2 rounds, so the database round
   trips show) and revocations per second, both modes, with their ratio.
"""

import argparse
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
import iwsec_harness as h  # noqa: E402
import pg_cluster  # noqa: E402

PASSWORD = "bench password"
ROUNDS = "1000"


def wrk(url, script, seconds, connections, threads=2):
    r = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "-s", script, url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=seconds + 60)
    out = r.stdout.decode()
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(rate.group(1)) if rate else 0.0), int(non2xx.group(1)) if non2xx else 0


def lua_rotating(path, method, url_path, headers):
    """A wrk script that sends @p method to @p url_path with the next of @p headers each request."""
    with open(path, "w") as f:
        f.write("local values = {\n")
        for value in headers:
            f.write("  %s,\n" % json.dumps(value))
        f.write("}\nlocal i = 0\n")
        f.write("request = function()\n  i = i %% #values + 1\n"
                "  return wrk.format(%s, %s, {[\"Authorization\"] = values[i]})\nend\n"
                % (json.dumps(method), json.dumps(url_path)))
    return path


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--revocations", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    server_bin = os.path.join(args.build, "examples", "iwsec-server")
    admin_bin = os.path.join(args.build, "examples", "iwsec-admin")
    if shutil.which("wrk") is None:
        sys.exit("bench/cluster.py needs wrk (apt-get install wrk)")

    work = tempfile.mkdtemp(prefix="iwsec-bench-cluster-")
    pg = pg_cluster.PostgreSQL().start()
    servers = []
    try:
        secret = os.path.join(work, "signing.key")
        with open(secret, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(secret, 0o600)
        db = pg.new_database()
        conninfo = pg.conninfo(db)
        data = os.path.join(work, "data")
        emails = ["bench%d@example.com" % i for i in range(64)]
        refresh = {"cluster": {}, "single": {}}
        for email in emails:
            for mode, store in (("cluster", ["--postgres", conninfo]), ("single", ["--data-dir", data])):
                r = h.run_program([admin_bin] + store + ["add-user", email, "--json", "--pbkdf2-rounds", ROUNDS],
                                  stdin=PASSWORD + "\n")
                if r.returncode != 0:
                    sys.exit(r.stderr)
                refresh[mode][email] = json.loads(r.stdout)["refresh_token"]
        common = ["--host", "127.0.0.1", "--port", "0", "--secret-file", secret, "--no-access-log",
                  "--threads", str(args.connections + 16), "--pbkdf2-rounds", ROUNDS,
                  "--lockout-client-failures", "100000000"]
        # While wrk saturates the (shared, 2-core) machine against one
        # server, an idle replica's follower thread can be starved of CPU for
        # seconds and, past --max-staleness, fail closed with 503s: a
        # generous bound keeps that out of the throughput figures.
        cluster_flags = ["--max-staleness", "60"]
        a = h.Server([server_bin, "--postgres", conninfo] + cluster_flags + common)
        b = h.Server([server_bin, "--postgres", conninfo] + cluster_flags + common)
        single = h.Server([server_bin, "--data-dir", data] + common)
        servers = [a, b, single]
        for s in servers:
            s.wait_listening()
        api_a, api_b, api_single = h.Api(a.base_url), h.Api(b.base_url), h.Api(single.base_url)

        def mint(api, mode, n):
            tokens = []
            for i in range(n):
                r = api.access_token(refresh[mode][emails[i % len(emails)]])
                assert r.status_code == 200, r.text
                tokens.append(r.json()["result"]["authentication_token"])
            return tokens

        # 1. Propagation latency.
        tokens = mint(api_a, "cluster", args.revocations)
        latencies = []
        for t in tokens:
            r = api_a.revoke(t)
            assert r.status_code == 200, r.text
            start = time.monotonic()
            while True:
                v = api_b.validate(t)
                assert v.status_code == 200, v.text
                if not v.json()["result"]["is_valid"]:
                    break
                if time.monotonic() - start > 10:
                    sys.exit("a revocation did not reach replica B within 10 s")
            latencies.append((time.monotonic() - start) * 1000.0)
        print("revocation propagation A->B over %d revocations: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
              % (len(latencies), percentile(latencies, 50), percentile(latencies, 99), max(latencies)))

        # 2. Validation throughput, 1000 distinct tokens.
        results = {}
        for mode, api, server in (("single", api_single, single), ("cluster", api_b, b)):
            script = lua_rotating(os.path.join(work, "validate-%s.lua" % mode), "GET", "/v3/security/token/validate",
                                  ["Bearer " + t for t in mint(api, mode, 1000)])
            results[mode] = wrk(server.base_url, script, args.seconds, args.connections)
        print("validation throughput (1000 tokens, %d connections): single-node %.0f/s, replica %.0f/s, "
              "ratio %.3f (non-2xx: %d, %d)"
              % (args.connections, results["single"][0], results["cluster"][0],
                 results["cluster"][0] / max(results["single"][0], 1), results["single"][1], results["cluster"][1]))

        # 3. Refresh exchanges, logins and revocations per second.
        for label, method, path, values in (
                ("refresh-token exchanges", "GET", "/v3/security/token/access",
                 lambda mode: ["Basic " + refresh[mode][e] for e in emails]),
                ("password logins (1000 rounds)", "GET", "/v3/security/authenticate",
                 lambda mode: ["Basic " + base64.b64encode((e + ":" + PASSWORD).encode()).decode() for e in emails]),
                ("revocations (1000 tokens, repeated)", "DELETE", "/v3/security/token/access",
                 lambda mode: ["Bearer " + t for t in mint({"single": api_single, "cluster": api_a}[mode], mode, 1000)])):
            line = []
            rates = {}
            for mode, server in (("single", single), ("cluster", a)):
                script = lua_rotating(os.path.join(work, "x-%s.lua" % mode), method, path, values(mode))
                rate, non2xx = wrk(server.base_url, script, max(3, args.seconds // 2), args.connections)
                rates[mode] = rate
                line.append("%s %.0f/s%s" % ({"single": "single-node", "cluster": "replica"}[mode], rate,
                                             " (non-2xx %d)" % non2xx if non2xx else ""))
            print("%s: %s, ratio %.3f" % (label, ", ".join(line), rates["cluster"] / max(rates["single"], 1)))
        for api in (api_a, api_b, api_single):
            api.close()
        for s in (a, b):
            slow = [line for line in s.stderr_text().splitlines() if "took" in line or "503" in line]
            if slow:
                print("replica notes: " + "; ".join(slow[:5]))
    except BaseException:
        for s in servers:
            sys.stderr.write("--- stderr of %s:\n%s\n" % (" ".join(s.argv[:3]), s.stderr_text()[-2000:]))
        raise
    finally:
        for s in servers:
            s.force_stop()
        pg.remove()
        shutil.rmtree(work, True)


if __name__ == "__main__":
    main()
