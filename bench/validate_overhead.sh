#!/usr/bin/env bash
# What iwsec-server's DEFAULT configuration costs per validation (issue 17):
# wrk against
#   (a) iwsec-server with its default flags (access log on, to standard output,
#       here a file in the scratch folder; request ids; metrics; the edge
#       connection handling), GET /v3/security/token/validate with real tokens,
#   (b) iwsec-bench-bare-server: cpp-httplib tuned the same way (threads,
#       keep-alive), answering the same bytes without checking anything,
# alternating bare and iwsec in each round, for each load:
#   c16   16 connections, one token
#   c64   64 connections, one token
#   t1000 64 connections, 1 000 distinct tokens (bench/validate_tokens.lua)
# and, only when asked for with --loads (a diagnostic, not a target):
#   t1    64 connections, one token, through the same Lua script as t1000:
#         t1 against c64 is what the Lua-driven client's pacing costs,
#         t1000 against t1 what 1 000 distinct tokens cost
# and prints req/s and the ratio iwsec/bare per load (target >= 0.97 each:
# PASS or MISS is printed for each ratio, never an exit status),
# and each server's own CPU time per request (user + system, /proc/PID/stat)
# with their ratio bare/iwsec: the same figure, robust to other processes
# on a shared machine.
# --no-access-log adds the same loads against iwsec-server --no-access-log,
# for comparison.
#
# Builds nothing: give it a build directory that holds examples/iwsec-server,
# examples/iwsec-admin and bench/iwsec-bench-bare-server (configure with
# -DIWSEC_BUILD_BENCHMARKS=ON; the same works with
# -DCMAKE_PREFIX_PATH=/opt/cpp-httplib-0.41.0). --server BIN times another
# iwsec-server binary (e.g. an older build) against the same bare server.
# Loopback only, OS-picked ports; every server it starts is stopped by this
# script; every wrk run is bounded (its duration plus 30 s). Never fails on a
# figure: it exits non-zero only when something could not run at all.
#
# usage: bench/validate_overhead.sh [--quick] [--duration SECONDS] [--rounds N]
#                                   [--wrk-threads N] [--loads "c16 c64 t1 t1000"]
#                                   [--no-access-log] [--server BIN] [BUILD_DIR]
#        (BUILD_DIR defaults to $IWSEC_BUILD_DIR, then ./build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
duration=10
rounds=3
wrk_threads=2
loads="c16 c64 t1000"
also_quiet=0
server_override=
build=${IWSEC_BUILD_DIR:-build}
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) duration=2; rounds=1 ;;
    --duration) duration=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --wrk-threads) wrk_threads=$2; shift ;;
    --loads) loads=$2; shift ;;
    --no-access-log) also_quiet=1 ;;
    --server) server_override=$2; shift ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "validate_overhead.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1 ;;
  esac
  shift
done
for n in "$duration" "$rounds" "$wrk_threads"; do
  case "$n" in ''|*[!0-9]*|0) echo "validate_overhead.sh: counts and durations are positive whole numbers" >&2; exit 2 ;; esac
done
for l in $loads; do
  case "$l" in c16|c64|t1|t1000) ;; *) echo "validate_overhead.sh: unknown load $l (c16, c64, t1, t1000)" >&2; exit 2 ;; esac
done

server_bin=${server_override:-$build/examples/iwsec-server}
admin_bin=$build/examples/iwsec-admin
bare_bin=$build/bench/iwsec-bench-bare-server
for f in "$server_bin" "$admin_bin" "$bare_bin"; do
  [ -x "$f" ] || { echo "validate_overhead.sh: $f not found (cmake -DIWSEC_BUILD_BENCHMARKS=ON, then build)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "validate_overhead.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "validate_overhead.sh: curl not found (apt-get install curl)" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/iwsec-validate-overhead.XXXXXX")
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
  "$@" >"$log" 2>"$log.err" &
  pids+=("$!")
  for i in $(seq 150); do
    port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$log" | head -n1)
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "validate_overhead.sh: $name did not start:" >&2
  sed 's/^/  /' "$log" "$log.err" >&2
  return 1
}

json_field() {  # json_field KEY < json: the first string value of KEY
  sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n1
}

# ---- the servers -------------------------------------------------------------
data=$scratch/data
mkdir -m 700 "$data"
password="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
issued=$(printf '%s\n' "$password" | "$admin_bin" --data-dir "$data" add-user bench@example.com --json)
refresh=$(printf '%s' "$issued" | json_field refresh_token)
# Default flags: only where to listen and the data directory. Its access log
# (standard output) goes to a file, as under a service manager that keeps it.
start iwsec-server "$scratch/iwsec.log" "$server_bin" --host 127.0.0.1 --port 0 --data-dir "$data"
iwsec_port=$port
iwsec_pid=${pids[-1]}
quiet_port=
if [ "$also_quiet" = 1 ]; then
  quiet_data=$scratch/quiet-data
  cp -a "$data" "$quiet_data"
  start "iwsec-server --no-access-log" "$scratch/quiet.log" "$server_bin" --host 127.0.0.1 --port 0 \
    --data-dir "$quiet_data" --no-access-log
  quiet_port=$port
  quiet_pid=${pids[-1]}
fi
start iwsec-bench-bare-server "$scratch/bare.log" "$bare_bin" --host 127.0.0.1 --port 0
bare_port=$port
bare_pid=${pids[-1]}

# 1 001 distinct access tokens from one curl (each has its own jti); they
# live 900 s (the default --token-lifetime): long enough for every round.
for i in $(seq 1001); do echo "url = \"http://127.0.0.1:$iwsec_port/v3/security/token/access\""; done \
  >"$scratch/curl-urls"
curl -sf -K "$scratch/curl-urls" -H "Authorization: Basic $refresh" |
  grep -o '"authentication_token":"[^"]*"' | sed 's/.*:"\(.*\)"/\1/' >"$scratch/all-tokens"
[ "$(sort -u "$scratch/all-tokens" | wc -l)" -eq 1001 ] ||
  { echo "validate_overhead.sh: could not mint 1001 distinct access tokens" >&2; exit 1; }
token=$(head -n1 "$scratch/all-tokens")
tail -n 1000 "$scratch/all-tokens" >"$scratch/tokens"
export IWSEC_TOKENS_FILE=$scratch/tokens
head -n 1 "$scratch/tokens" >"$scratch/one-token"  # load t1
header="Authorization: Bearer $token"

check() {  # every server accepts the token before it is timed
  local body
  body=$(curl -sf "http://127.0.0.1:$2/v3/security/token/validate" -H "$header") || {
    echo "validate_overhead.sh: $1 refused the request" >&2; exit 1; }
  [ "$body" = '{"message":"","result":{"is_valid":true}}' ] || {
    echo "validate_overhead.sh: $1 answered $body" >&2; exit 1; }
}
check iwsec-server "$iwsec_port"
check bare "$bare_port"
[ -z "$quiet_port" ] || check "iwsec-server --no-access-log" "$quiet_port"

# cpu_ticks PID: user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# run_wrk LOAD PORT SECONDS: prints "requests/s requests" (errors are reported on stderr).
run_wrk() {
  local out connections=64 request=(-H "$header") tokens_file=$IWSEC_TOKENS_FILE
  case "$1" in
    c16) connections=16 ;;
    t1000) request=(-s "$here/validate_tokens.lua") ;;
    t1) request=(-s "$here/validate_tokens.lua"); tokens_file=$scratch/one-token ;;
  esac
  out=$(IWSEC_TOKENS_FILE=$tokens_file timeout $(($3 + 30)) wrk -t"$wrk_threads" -c"$connections" -d"$3"s "${request[@]}" \
          "http://127.0.0.1:$2/v3/security/token/validate")
  if printf '%s\n' "$out" | grep -q -e 'Non-2xx' -e 'Socket errors'; then
    echo "validate_overhead.sh: wrk saw errors:" >&2
    printf '%s\n' "$out" | sed 's/^/  /' >&2
  fi
  printf '%s\n' "$out" | awk '/requests in/ { n = $1 } /^Requests\/sec:/ { r = $2 } END { printf "%d %d\n", r, n }'
}

hz=$(getconf CLK_TCK)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
verdict() { awk -v v="$1" 'BEGIN { print (v >= 0.97 ? "PASS" : "MISS") }'; }

echo "validate: wrk -t$wrk_threads -d${duration}s GET /v3/security/token/validate; c16: -c16, one token;" \
  "c64: -c64, one token; t1: -c64, one token through the Lua script; t1000: -c64, 1000 distinct tokens; $rounds round(s), bare and iwsec alternating"
echo "iwsec-server: $("$server_bin" --version 2>/dev/null | head -n1), default flags (access log to a file via stdout)"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), load $(cut -d' ' -f1-3 /proc/loadavg)"
for p in "$bare_port" "$iwsec_port" ${quiet_port:+"$quiet_port"}; do run_wrk c64 "$p" 1 >/dev/null; done  # warm-up

servers="bare iwsec"
[ -z "$quiet_port" ] || servers="$servers quiet"
declare -A total ticks count
for load in $loads; do
  for which in $servers; do total[$load.$which]=0; ticks[$load.$which]=0; count[$load.$which]=0; done
  for r in $(seq "$rounds"); do
    for which in $servers; do
      case "$which" in
        bare) p=$bare_port; pid=$bare_pid ;;
        iwsec) p=$iwsec_port; pid=$iwsec_pid ;;
        quiet) p=$quiet_port; pid=$quiet_pid ;;
      esac
      t0=$(cpu_ticks "$pid")
      read -r rps n < <(run_wrk "$load" "$p" "$duration")
      t1=$(cpu_ticks "$pid")
      printf '  %-6s round %d  %-6s %8d req/s  %6s us CPU/request\n' "$load" "$r" "$which" "$rps" \
        "$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$hz" 'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }')"
      total[$load.$which]=$((total[$load.$which] + rps))
      ticks[$load.$which]=$((ticks[$load.$which] + t1 - t0))
      count[$load.$which]=$((count[$load.$which] + n))
    done
  done
done

# The CPU ratio: bare's CPU time per request over iwsec's (each server's own
# user + system time, /proc/PID/stat), what the req/s ratio would be if
# both were CPU-bound alone on the machine. On a quiet machine the two
# ratios agree; on a busy one the req/s ratio mostly measures the neighbours.
per_request() { awk -v t="${ticks[$1]}" -v n="${count[$1]}" -v hz="$hz" 'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }
echo
printf '%-6s %10s %10s %8s %12s %12s %9s' load "bare req/s" "iwsec" ratio "bare us/req" "iwsec us/req" "CPU ratio"
[ -z "$quiet_port" ] || printf ' %14s %8s %9s' "no-access-log" ratio "CPU ratio"
echo
for load in $loads; do
  b=$((total[$load.bare] / rounds))
  i=$((total[$load.iwsec] / rounds))
  r=$(ratio "$i" "$b")
  bc=$(per_request "$load.bare")
  ic=$(per_request "$load.iwsec")
  c=$(ratio "$bc" "$ic")
  printf '%-6s %10d %10d %8s %12s %12s %9s' "$load" "$b" "$i" "$r" "$bc" "$ic" "$c"
  if [ -n "$quiet_port" ]; then
    q=$((total[$load.quiet] / rounds))
    qc=$(per_request "$load.quiet")
    printf ' %14d %8s %9s' "$q" "$(ratio "$q" "$b")" "$(ratio "$bc" "$qc")"
  fi
  echo "   (>= 0.97: req/s $(verdict "$r"), CPU $(verdict "$c"))"
done
echo "target: each ratio >= 0.97 (PASS or MISS above; a MISS is reported, never an exit status)"
lines=$(grep -c ' /v3/security/token/validate 200 ' "$scratch/iwsec.log" || true)
echo "access-log lines written by iwsec-server: $lines"
