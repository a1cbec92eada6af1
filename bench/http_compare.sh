#!/usr/bin/env bash
# HTTP comparison of issue 5: wrk against
#   (a) iwsec-server --no-access-log, GET /v3/security/token/validate with a real access token,
#   (b) iwsec-bench-bare-server: cpp-httplib tuned the same way, answering the same bytes
#       without checking anything (the physical limit of this stack on this machine),
#   (c) fastify + jose (bench/peers) verifying the same token with the same key,
# with the same Authorization header, connections and duration (--tokens N: N
# distinct access tokens, each request the next, bench/validate_tokens.lua); prints req/s
# and the ratios (targets: iwsec/bare >= 0.95, iwsec/fastify >= 5). Then the
# cost of GET /v3/security/authenticate against one password hash (target
# <= 1.15x).
#
# Builds nothing: give it a build directory that holds examples/iwsec-server,
# examples/iwsec-admin and bench/iwsec-bench-bare-server (configure with
# -DIWSEC_BUILD_BENCHMARKS=ON). Every server listens on 127.0.0.1 on an
# OS-picked port and is stopped by this script. Never fails on a figure: it
# exits non-zero only when something could not run at all. The fastify row is
# skipped (and said so) when npm cannot install the peer.
#
# usage: bench/http_compare.sh [--quick] [--duration SECONDS] [--connections N]
#                              [--wrk-threads N] [--rounds N] [--logins N] [--tokens N] [BUILD_DIR]
#        (BUILD_DIR defaults to $IWSEC_BUILD_DIR, then ./build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
duration=10
connections=64
wrk_threads=2
rounds=2
logins=8
tokens=1
quick=0
build=${IWSEC_BUILD_DIR:-build}
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; duration=2; rounds=1; logins=2 ;;
    --duration) duration=$2; shift ;;
    --connections) connections=$2; shift ;;
    --wrk-threads) wrk_threads=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --logins) logins=$2; shift ;;
    --tokens) tokens=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "http_compare.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1 ;;
  esac
  shift
done
for n in "$duration" "$connections" "$wrk_threads" "$rounds" "$logins" "$tokens"; do
  case "$n" in ''|*[!0-9]*|0) echo "http_compare.sh: counts and durations are positive whole numbers" >&2; exit 2 ;; esac
done

server_bin=$build/examples/iwsec-server
admin_bin=$build/examples/iwsec-admin
bare_bin=$build/bench/iwsec-bench-bare-server
for f in "$server_bin" "$admin_bin" "$bare_bin"; do
  [ -x "$f" ] || { echo "http_compare.sh: $f not found (cmake -DIWSEC_BUILD_BENCHMARKS=ON, then build)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "http_compare.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "http_compare.sh: curl not found (apt-get install curl)" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/iwsec-http-compare.XXXXXX")
pids=()
# Stops every server this script started (SIGTERM, then SIGKILL after 10 s).
cleanup() {
  local pid i
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME LOGFILE COMMAND...: runs a server in the background and waits (at
# most 15 s) for its 'listening on http://127.0.0.1:PORT' line; sets $port.
start() {
  local name=$1 log=$2 i
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=("$!")
  for i in $(seq 150); do
    port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$log" | head -n1)
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "http_compare.sh: $name did not start:" >&2
  sed 's/^/  /' "$log" >&2
  return 1
}

json_field() {  # json_field KEY < json: the first string value of KEY
  sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n1
}

# ---- (a) iwsec-server with a user and a real access token -------------------
data=$scratch/data
mkdir -m 700 "$data"
password="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
issued=$(printf '%s\n' "$password" | "$admin_bin" --data-dir "$data" add-user bench@example.com --json)
refresh=$(printf '%s' "$issued" | json_field refresh_token)
# A raw 32-byte key file (--secret-file), so the fastify peer verifies with
# the same bytes (the data directory's signing.key is a keyring file).
secret=$scratch/secret.key
(umask 077 && head -c 32 /dev/urandom >"$secret")
start iwsec-server "$scratch/iwsec.log" "$server_bin" --host 127.0.0.1 --port 0 --data-dir "$data" \
  --secret-file "$secret" --no-access-log --token-lifetime 3600
iwsec_port=$port
token=$(curl -sf "http://127.0.0.1:$iwsec_port/v3/security/token/access" -H "Authorization: Basic $refresh" |
  json_field authentication_token)
[ -n "$token" ] || { echo "http_compare.sh: could not get an access token from iwsec-server" >&2; exit 1; }
printf 'Authorization: Bearer %s\n' "$token" >"$scratch/header"
header="Authorization: Bearer $token"
wrk_request=(-H "$header")
if [ "$tokens" -gt 1 ]; then
  # N more tokens from one curl (distinct bytes: each has its own jti).
  for i in $(seq "$tokens"); do echo "url = \"http://127.0.0.1:$iwsec_port/v3/security/token/access\""; done \
    >"$scratch/curl-urls"
  curl -sf -K "$scratch/curl-urls" -H "Authorization: Basic $refresh" |
    grep -o '"authentication_token":"[^"]*"' | sed 's/.*:"\(.*\)"/\1/' >"$scratch/tokens"
  [ "$(sort -u "$scratch/tokens" | wc -l)" -eq "$tokens" ] ||
    { echo "http_compare.sh: could not mint $tokens distinct access tokens" >&2; exit 1; }
  export IWSEC_TOKENS_FILE=$scratch/tokens
  wrk_request=(-s "$here/validate_tokens.lua")
fi

# ---- (b) the bare cpp-httplib endpoint -------------------------------------
start iwsec-bench-bare-server "$scratch/bare.log" "$bare_bin" --host 127.0.0.1 --port 0
bare_port=$port

# ---- (c) fastify + jose, from npm into the scratch folder -------------------
fastify_port=
fastify_note=
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  fastify_note="node or npm not installed"
else
  mkdir "$scratch/peer"
  cp "$here/peers/package.json" "$here/peers/package-lock.json" "$here/peers/fastify_jose.mjs" "$scratch/peer/"
  if (cd "$scratch/peer" && timeout 300 npm ci --no-audit --no-fund --omit=dev --loglevel=error) \
       >"$scratch/npm.log" 2>&1; then
    if IWSEC_SIGNING_KEY="$secret" start fastify+jose "$scratch/fastify.log" \
         node "$scratch/peer/fastify_jose.mjs"; then
      fastify_port=$port
    else
      fastify_note="the peer did not start"
    fi
  else
    fastify_note="npm could not install fastify and jose ($( (grep -m1 -E 'code|ERR' "$scratch/npm.log" || tail -n1 "$scratch/npm.log") | cut -c1-100))"
  fi
fi

# Every server must accept the token before it is timed.
check() {
  local body
  body=$(curl -sf "http://127.0.0.1:$2/v3/security/token/validate" -H "$header") || {
    echo "http_compare.sh: $1 refused the request" >&2; exit 1; }
  [ "$body" = '{"message":"","result":{"is_valid":true}}' ] || {
    echo "http_compare.sh: $1 answered $body" >&2; exit 1; }
}
check iwsec-server "$iwsec_port"
check bare "$bare_port"
[ -z "$fastify_port" ] || check fastify+jose "$fastify_port"

# run_wrk PORT SECONDS: prints requests/s (non-2xx answers make it fail).
run_wrk() {
  local out
  out=$(timeout $(($2 + 30)) wrk -t"$wrk_threads" -c"$connections" -d"$2"s "${wrk_request[@]}" \
          "http://127.0.0.1:$1/v3/security/token/validate")
  if printf '%s\n' "$out" | grep -q -e 'Non-2xx' -e 'Socket errors'; then
    echo "http_compare.sh: wrk saw errors:" >&2
    printf '%s\n' "$out" | sed 's/^/  /' >&2
  fi
  printf '%s\n' "$out" | awk '/^Requests\/sec:/ { printf "%d\n", $2 }'
}

echo "HTTP: wrk -t$wrk_threads -c$connections -d${duration}s -H 'Authorization: Bearer <${#token}-byte token>'" \
  "($tokens distinct token(s))" \
  "GET /v3/security/token/validate, $rounds round(s), bare and iwsec alternating"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A total=([bare]=0 [iwsec]=0 [fastify]=0)
for p in "$bare_port" "$iwsec_port" ${fastify_port:+"$fastify_port"}; do run_wrk "$p" 1 >/dev/null; done  # warm-up
for r in $(seq "$rounds"); do
  for which in bare iwsec; do
    if [ "$which" = bare ]; then p=$bare_port; else p=$iwsec_port; fi
    rps=$(run_wrk "$p" "$duration")
    printf '  round %d  %-8s %8d req/s\n' "$r" "$which" "$rps"
    total[$which]=$((total[$which] + rps))
  done
done
if [ -n "$fastify_port" ]; then
  rps=$(run_wrk "$fastify_port" "$duration")
  printf '  round 1  %-8s %8d req/s\n' fastify "$rps"
  total[fastify]=$rps
fi

bare_rps=$((total[bare] / rounds))
iwsec_rps=$((total[iwsec] / rounds))
verdict() { awk -v v="$1" -v t="$2" -v le="${3:-}" 'BEGIN { if (le ? v <= t : v >= t) print "PASS"; else print "MISS" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
echo
printf '%-44s %10s\n' "server (mean of rounds)" "req/s"
printf '%-44s %10d\n' "bare cpp-httplib (iwsec-bench-bare-server)" "$bare_rps"
printf '%-44s %10d\n' "iwsec-server --no-access-log" "$iwsec_rps"
if [ -n "$fastify_port" ]; then
  printf '%-44s %10d\n' "fastify 4.29.1 + jose 5.10.0 (node $(node --version))" "${total[fastify]}"
else
  printf '%-44s %10s\n' "fastify + jose" "skipped: $fastify_note"
fi
r=$(ratio "$iwsec_rps" "$bare_rps")
echo "iwsec / bare    = $r  (target >= 0.95: $(verdict "$r" 0.95))"
if [ -n "$fastify_port" ]; then
  r=$(ratio "$iwsec_rps" "${total[fastify]}")
  echo "iwsec / fastify = $r  (target >= 5: $(verdict "$r" 5))"
else
  echo "iwsec / fastify = skipped ($fastify_note)"
fi

# ---- authenticate vs one hash -----------------------------------------------
# One login = one PBKDF2 verification of the stored hash (600 000 rounds,
# iwsec-admin's default) plus HTTP and token minting. The hash alone is timed
# in iwsec-admin hash-password, minus that program's own start-up (the same
# command at 1 round); the login with wrk over one keep-alive connection.
basic="Authorization: Basic $(printf '%s' "bench@example.com:$password" | base64 -w0)"
login_seconds=$(( quick ? 2 : 5 ))
login_out=$(timeout $((login_seconds + 30)) wrk -t1 -c1 -d"${login_seconds}s" --timeout 10s --latency -H "$basic" \
  "http://127.0.0.1:$iwsec_port/v3/security/authenticate")
# The median login (wrk --latency's 50% line) against the median hash below:
# on a shared machine a mean would count other processes' work.
login_ms=$(printf '%s\n' "$login_out" | awk '
  $1 == "50%" { v = $2; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; print v }')
logins_done=$(printf '%s\n' "$login_out" | awk '/requests in/ { print $1 }')
if printf '%s\n' "$login_out" | grep -q 'Non-2xx' || [ -z "$login_ms" ]; then
  echo "authenticate: logins were refused or not timed; no figure"
  exit 0
fi
time_ms() {  # time_ms ROUNDS: the median of $logins runs of iwsec-admin hash-password, in ms
  local i t0 t1
  for i in $(seq "$logins"); do
    t0=$(date +%s%N)
    printf 'x\n' | "$admin_bin" --data-dir "$data" hash-password --pbkdf2-rounds "$1" >/dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 ))
  done | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m / 1000 }'
}
hash_ms=$(awk -v a="$(time_ms 600000)" -v b="$(time_ms 1)" 'BEGIN { printf "%.2f", a - b }')
r=$(ratio "$login_ms" "$hash_ms")
echo
echo "authenticate: $logins_done sequential logins (wrk -t1 -c1 -d${login_seconds}s), median $login_ms ms;" \
  "one hash (600000 rounds, iwsec-admin hash-password, median of $logins, less the median at 1 round) $hash_ms ms"
echo "login / hash    = $r  (target <= 1.15: $(verdict "$r" 1.15 le))"
