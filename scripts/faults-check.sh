#!/usr/bin/env bash
# Issue 16's commands on this host's loopback, each with its exit status, its wall time and
# the last line it printed on stderr: every one ends within its --timeout (plus set-up and a
# few seconds) with one clear line and a non-zero exit, or succeeds. Peers are processes this
# script starts; it stops and kills them by their process id.
#
#   scripts/faults-check.sh
# Env: KVXFER (binary; default target/debug/kvxfer, built if missing).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kvxfer="${KVXFER:-$repo/target/debug/kvxfer}"
[ -x "$kvxfer" ] || (cd "$repo" && cargo build) || exit 1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

# run NAME CMD...: runs CMD, prints status, wall time and stderr's last line.
run() {
  local name="$1"; shift
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"$work/out" 2>"$work/err"
  rc=$?
  t1=$(date +%s.%N)
  printf '%-34s rc=%-3s %6.1f s  %s\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc)" \
    "$(tr '\r' '\n' <"$work/err" | grep -v '^\s*$' | grep -E '^(kvxfer: )?error' | tail -1 | cut -c1-160)"
}

# faulted NAME SIGNAL ARGS...: a target (ARGS --listen), then an initiator (ARGS --peer,
# --json), the target sent SIGNAL after 4 s; reports the initiator and its JSON's status.
faulted() {
  local name="$1" sig="$2"; shift 2
  local port=$((40000 + RANDOM % 20000))
  "$kvxfer" "$@" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
  local target=$!
  sleep 1
  ( sleep 4; kill "-$sig" "$target" ) &
  local killer=$!
  rm -f "$work/i.json"
  run "$name" "$kvxfer" "$@" --peer "127.0.0.1:$port" --json "$work/i.json"
  wait "$killer" 2>/dev/null
  kill -KILL "$target" 2>/dev/null; wait "$target" 2>/dev/null
  [ -f "$work/i.json" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print('    json: status', d['status'], 'results', [(r['message_size'], r.get('iterations')) for r in d['results']])" "$work/i.json"
}

echo "== 1 memory"
run "xfer -c 1000 (tcp)" "$kvxfer" xfer -s 4K -c 1000 --domain lo -I 2 -w 1 --timeout 20
run "pingpong --sizes 8G" "$kvxfer" pingpong --domain lo --sizes 8G -I 1 -w 0
run "ucx-perf tag_bw -s 12G" env UCX_TLS=posix,cma "$kvxfer" ucx-perf -t tag_bw -s 12G -n 1 -w 0
echo "== 2 and 4: target stopped or killed mid-run (--timeout 5)"
faulted "xfer, target STOP" STOP xfer -s 64K -I 10000000 --domain lo --timeout 5
faulted "xfer, target KILL" KILL xfer -s 64K -I 10000000 --domain lo --timeout 5
faulted "pingpong 64,8M, target KILL" KILL pingpong --sizes 64,8M -I 3000 --domain lo --timeout 5
run "xfer -c 10000 outstanding" "$kvxfer" xfer -s 4K -c 10000 --concurrency-mode outstanding --domain lo -I 2 -w 1 --timeout 20
echo "== 3 time-outs a Duration cannot hold"
run "pingpong --timeout 1e300" "$kvxfer" pingpong --domain lo --sizes 64 --timeout 1e300
run "xfer --timeout 2^64-1" "$kvxfer" xfer --timeout 18446744073709551615
echo "== 5 outputs"
run "--json into a missing folder" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 --json /nonexistent/r.json
run "--mlflow-uri notaurl" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 --mlflow-uri notaurl
echo "== 6 a silent MLflow server"
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(64); print(s.getsockname()[1], flush=True); h=[]
while True: h.append(s.accept())" >"$work/port" &
silent=$!
sleep 1
mkdir -p "$work/res"
"$kvxfer" pingpong --domain lo --sizes 64 -I 10 --json "$work/res/r.json" >/dev/null 2>&1
run "record, silent server (default)" "$kvxfer" record --results "$work/res" --mlflow-uri "http://127.0.0.1:$(cat "$work/port")"
kill "$silent"; wait "$silent" 2>/dev/null
echo "== 7 injection through PEER_IP"
printf '{"name":"d","description":"","variables":{},"tasks":[{"id":"a","name":"a","commands":["echo --peer {{PEER_IP}}:47590"]}]}' >"$work/d.json"
rm -f /tmp/kvxfer-faults-injected
PEER_IP='127.0.0.1;touch /tmp/kvxfer-faults-injected;#' run "task run, PEER_IP injection" "$kvxfer" task run "$work/d.json" --state "$work/state.json"
[ -e /tmp/kvxfer-faults-injected ] && echo "    INJECTED" || echo "    nothing injected"
echo "== 8 a stray connection"
port=$((40000 + RANDOM % 20000))
"$kvxfer" pingpong --domain lo --sizes 64 -I 100 --listen "127.0.0.1:$port" >/dev/null 2>"$work/terr" &
target=$!
sleep 1
python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()"
run "initiator after a stray connection" "$kvxfer" pingpong --domain lo --sizes 64 -I 100 --peer "127.0.0.1:$port"
wait "$target"; echo "    target rc=$?"
echo "== 11 parse"
head -c 50000000 /dev/zero | tr '\0' 'x' >"$work/big.txt"
run "parse a 50 MB file" "$kvxfer" parse --tool fi_pingpong "$work/big.txt"
