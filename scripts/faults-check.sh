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

# run NAME CMD...: runs CMD, prints status, wall time and stderr's last line (of those
# matching $LINES: error lines unless set).
run() {
  local name="$1"; shift
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"$work/out" 2>"$work/err"
  rc=$?
  t1=$(date +%s.%N)
  printf '%-34s rc=%-3s %6.1f s  %s\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc)" \
    "$(tr '\r' '\n' <"$work/err" | grep -v '^\s*$' | grep -E "${LINES:-^(kvxfer: )?error}" | tail -1 | cut -c1-160)"
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

echo "== issue 29, round two"
# A relay that forwards every control frame but one (frame INDEX going WAY, i2t or t2i),
# which it replaces with HEX; it serves one connection.
cat >"$work/mitm.py" <<'PY'
import socket, struct, sys, threading
lp, tp, way, idx, data = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), bytes.fromhex(sys.argv[5])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', lp)); s.listen(1)
c, _ = s.accept(); t = socket.create_connection(('127.0.0.1', tp))
def rd(k, n):
    b = b''
    while len(b) < n:
        x = k.recv(n - len(b))
        if not x: raise EOFError
        b += x
    return b
def pump(a, b, name):
    i = 0
    try:
        while True:
            h = rd(a, 5); body = rd(a, struct.unpack('>I', h[1:])[0]); i += 1
            if name == way and i == idx:
                h, body = bytes([0]) + struct.pack('>I', len(data)), data
            b.sendall(h + body)
    except Exception:
        for k in (a, b):
            try: k.shutdown(socket.SHUT_RDWR)
            except OSError: pass
threading.Thread(target=pump, args=(c, t, 'i2t'), daemon=True).start()
pump(t, c, 't2i')
PY
# relayed NAME WAY HEX ENV... -- ARGS...: the target (ARGS --listen) in the foreground, the
# initiator through the relay; reports the target.
relayed() {
  local name="$1" way="$2" hex="$3"; shift 3
  local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local port=$((40000 + RANDOM % 20000)) relay=$((40000 + RANDOM % 20000))
  python3 "$work/mitm.py" "$relay" "$port" "$way" 2 "$hex" & local m=$!
  ( sleep 1; env "${envs[@]}" "$kvxfer" "$@" --timeout 15 --peer "127.0.0.1:$relay" >/dev/null 2>&1 ) & local i=$!
  run "$name" env "${envs[@]}" "$kvxfer" "$@" --timeout 15 --listen "127.0.0.1:$port"
  wait "$i" 2>/dev/null; kill "$m" 2>/dev/null; wait "$m" 2>/dev/null
}
ff64=$(printf 'ff%.0s' $(seq 64))
relayed "1 empty endpoint name (tcp target)" i2t "" LC_ALL=C -- pingpong --provider tcp --domain lo --sizes 64 -I 10
relayed "1 0xff x64 UCX address (target)" i2t "$ff64" UCX_TLS=tcp UCX_NET_DEVICES=lo -- ucx-perf -t tag_lat -s 64 -n 10
port=$((40000 + RANDOM % 20000))
"$kvxfer" pingpong --domain lo --sizes 64 -I 100 --timeout 40 --listen "127.0.0.1:$port" >/dev/null 2>"$work/terr" &
target=$!
sleep 1
python3 -c "import socket,sys,time
k=[socket.create_connection(('127.0.0.1',$port)) for _ in range(6)]
h=b'{\"proto\": 2}'; s=socket.create_connection(('127.0.0.1',$port)); s.sendall(bytes([0])+len(h).to_bytes(4,'big')+h)
time.sleep(30)" &
idle=$!
sleep 0.5
run "2 initiator after 6 idle + proto 2" "$kvxfer" pingpong --domain lo --sizes 64 -I 100 --timeout 20 --peer "127.0.0.1:$port"
wait "$target"; echo "    target rc=$? ($(grep -c 'refused an initiator' "$work/terr") refusal line)"
kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null
echo '{}' >"$work/real.json"; ln -sf real.json "$work/link.json"
run "4 --json through a symlink" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 --json "$work/link.json"
python3 -c "import json,os,sys; d=json.load(open(sys.argv[2])); print('    link.json is a link:', os.path.islink(sys.argv[1]), '| real.json:', d['status'], [r['iterations'] for r in d['results']])" "$work/link.json" "$work/real.json"
mkfifo "$work/r.fifo"; (cat "$work/r.fifo" >"$work/from-fifo" &)
run "4 --json into a FIFO" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 --json "$work/r.fifo"
echo "    r.fifo is $(stat -c %F "$work/r.fifo"), the reader got $(wc -c <"$work/from-fifo") bytes"
run "4 --json /dev/stdout" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 --json /dev/stdout
echo "    stdout held $(grep -c '"schema": "kvxfer.result/v1"' "$work/out") document(s)"
python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('$work/r.sock')"
run "4 --json a socket" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 --json "$work/r.sock"
run "6 pingpong --warmup 2^64-1" "$kvxfer" pingpong --domain lo --sizes 64 --iterations 5 --warmup 18446744073709551615
run "6 memcpy -w 2^64-1" "$kvxfer" memcpy -s 1M -w 18446744073709551615
run "6 pingpong -I 2^64-1 -w 1" "$kvxfer" pingpong --domain lo --sizes 64 --iterations 18446744073709551615 --warmup 1
run "6 pingpong 8G x 10^12" "$kvxfer" pingpong --domain lo --sizes 8G -I 1000000000000
echo '{"num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 2305843009213693953, "torch_dtype": "bfloat16"}' >"$work/hd.json"
run "8 kv size head_dim 2^61+1" "$kvxfer" kv size --model "$work/hd.json"
echo '{"num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 5, "torch_dtype": "bfloat16"}' >"$work/h5.json"
run "8 kv size hidden 3584 / 5 heads" "$kvxfer" kv size --model "$work/h5.json"
echo '{"num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 100, "torch_dtype": "bfloat16"}' >"$work/kv100.json"
run "8 kv size 100 KV of 28 heads" "$kvxfer" kv size --model "$work/kv100.json"
printf 'model_name: x\nnum_layers: 288230376151711745\nnum_kv_heads: 8\nquery_head_dimension: 128\n' >"$work/l.yaml"
run "8 kv size YAML layers 2^58+1" "$kvxfer" kv size --model "$work/l.yaml"
mkdir -p "$work/e2e/sub" "$work/sibling"
rec='{"backend": "tcp", "prompt_tokens": 4096, "concurrency": 1, "ttft_mean": 100, "tpot_mean": 12}'
echo "$rec" >"$work/e2e/a.json"; echo "$rec" >"$work/e2e/sub/b.json"; echo "$rec" >"$work/sibling/c.json"
echo '{"backend": "tcp", "prompt_tokens": 4096, "concurrency": 1, "ttft_mean": 100, "tpot_mean": -5}' >"$work/e2e/neg.json"
ln -s . "$work/e2e/self"; ln -s .. "$work/e2e/loop"; mkfifo "$work/e2e/f.run1.json"
truncate -s 300M "$work/e2e/big.json"
run "10 analyze: self, loop, FIFO, 300M" timeout 60 "$kvxfer" analyze --e2e-dir "$work/e2e" --no-plots --out "$work/an/r.json"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('    records', d['e2e_records'], 'skipped', [s['file'] for s in d['skipped']])" "$work/an/r.json"
mkdir -p "$work/cc"; mkfifo "$work/cc/p.run1.json"; truncate -s 300M "$work/cc/p.run2.json"
run "10 crosscheck: FIFO, 300M" timeout 60 "$kvxfer" crosscheck "$work/cc"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('    skipped', [(s['file'], s['reason'][:24]) for s in d['skipped']])" "$work/cc/crosscheck.json"
if command -v etcd >/dev/null; then
  ep=$((40000 + RANDOM % 20000)); pp=$((40000 + RANDOM % 20000)); url="http://127.0.0.1:$ep"
  etcd --name f --data-dir "$work/etcd" --listen-client-urls "$url" --advertise-client-urls "$url" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "f=http://127.0.0.1:$pp" --log-level error >/dev/null 2>&1 &
  etcd_pid=$!
  sleep 2
  "$kvxfer" xfer --etcd "$url" --world 2 --group a/b -s 64K -I 1000000 --domain lo --timeout 30 >/dev/null 2>&1 &
  r0=$!
  "$kvxfer" xfer --etcd "$url" --world 2 --group a/b -s 64K -I 1000000 --domain lo --timeout 30 >/dev/null 2>&1 &
  r1=$!
  sleep 4
  run "11 etcd clean --group a (a/b runs)" "$kvxfer" etcd clean --etcd "$url" --group a
  sleep 2; kill -0 "$r0" 2>/dev/null && kill -0 "$r1" 2>/dev/null && echo "    both a/b ranks still run" || echo "    an a/b rank ended"
  run "11 etcd clean --group a/b (live)" "$kvxfer" etcd clean --etcd "$url" --group a/b
  kill "$r0" "$r1" 2>/dev/null; wait "$r0" "$r1" 2>/dev/null
  kill "$etcd_pid"; wait "$etcd_pid" 2>/dev/null
else
  echo "    (no etcd binary: item 11 not shown)"
fi
run "14 xfer --provider efa 672M x16" "$kvxfer" xfer --provider efa --size 672M --concurrency 16
printf '\xff\xfe\x00bad' >"$work/bin.json"
run "14 kv size of non-UTF-8" "$kvxfer" kv size --model "$work/bin.json"
printf 'model_name: x\nnum_layers: 3\nnum_layers: 4\nnum_kv_heads: 8\nquery_head_dimension: 128\n' >"$work/dup.yaml"
run "14 kv size YAML duplicate key" "$kvxfer" kv size --model "$work/dup.yaml"
python3 -c "import json,sys; p=json.load(open(sys.argv[1])); p['common']['timeout_s']=1e30; json.dump(p, open(sys.argv[2],'w'))" "$repo/plans/loopback.json" "$work/p30.json"
run "14 plan validate timeout_s 1e30" "$kvxfer" plan validate "$work/p30.json"
echo "    $(grep -m1 'timeout_s' "$work/err" | cut -c1-150)"
mkfifo "$work/state.fifo"
run "14 task run --state FIFO" timeout 20 "$kvxfer" task run "$work/d.json" --state "$work/state.fifo"
# Issue 29, items 3, 5, 7, 9 and 12: as run(), the last line being any kvxfer or clap line.
run_line() { LINES='^(kvxfer|error)' run "$@"; }

# signalled NAME SIGNAL AFTER JSON CMD...: runs CMD, sends SIGNAL after AFTER seconds, then
# reports as run_line does, the seconds from the signal to the end, and JSON's status.
signalled() {
  local name="$1" sig="$2" after="$3" json="$4"; shift 4
  rm -f "$json"
  "$@" >"$work/out" 2>"$work/err" &
  local pid=$! t0 t1 rc
  sleep "$after"
  t0=$(date +%s.%N)
  kill "-$sig" "$pid"
  wait "$pid"
  rc=$?
  t1=$(date +%s.%N)
  printf '%-34s rc=%-3s %6.1f s  %s\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc)" \
    "$(tr '\r' '\n' <"$work/err" | grep -E '^kvxfer' | tail -1 | cut -c1-160)"
  [ -f "$json" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print('    json: status', d['status'], 'results', [(r['message_size'], r.get('iterations')) for r in d['results']])" "$json"
}

echo "== 29.3 signals: stopped, partial result kept, 130/143 (wall time: signal to end)"
signalled "pingpong, SIGINT" INT 6 "$work/p.json" "$kvxfer" pingpong --domain lo \
  --sizes 64,1K,4K,64K,256K,8M --iterations 3000 --json "$work/p.json"
signalled "xfer, SIGTERM" TERM 6 "$work/x.json" "$kvxfer" xfer -s 1M -I 1000000 --domain lo \
  --json "$work/x.json"
signalled "memcpy, SIGINT" INT 3 "$work/m.json" "$kvxfer" memcpy -s 16M -I 100000000 \
  --json "$work/m.json"
printf '{"name":"s","description":"","variables":{},"tasks":[{"id":"a","name":"a","commands":["timeout 900 %s xfer -s 1M -I 1000000 --domain lo --json %s"]}]}' \
  "$kvxfer" "$work/t.json" >"$work/s.json"
signalled "task run (timeout 900 xfer), TERM" TERM 8 "$work/t.json" "$kvxfer" task run \
  "$work/s.json" --state "$work/sstate.json"
python3 -c "import json,sys; print('    task a:', json.load(open(sys.argv[1]))['s']['a']['status'])" "$work/sstate.json"
sleep 1
echo "    left running: $(pgrep -fc "$work/t.json" || true)"
echo "== 29.5 memory: rails and samples in the estimate, counts bounded"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f '    peak RSS %M KiB' "$kvxfer" xfer -s 1M -I 2 --rails 40 --timeout 60 2>&1 >/dev/null |
    grep -E 'host memory|peak RSS' | sed -e 's/.*host memory/    estimate: host memory/'
fi
run_line "xfer --rails 300" "$kvxfer" xfer -s 1M -I 2 --rails 300 --timeout 15
run_line "xfer -I 1000000000" "$kvxfer" xfer -s 64K -I 1000000000 --domain lo
run_line "xfer -I 2^64-1" "$kvxfer" xfer -s 64K -I 18446744073709551615 --domain lo
echo "== 29.7 --world bounded, missing ranks summarised, panics end the process"
run_line "xfer --world 2^64-1" "$kvxfer" xfer --etcd http://127.0.0.1:9 \
  --world 18446744073709551615 --group g
if command -v etcd >/dev/null; then
  eport=$((40000 + RANDOM % 10000))
  etcd --name f --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$eport" \
    --advertise-client-urls "http://127.0.0.1:$eport" --listen-peer-urls "http://127.0.0.1:$((eport + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((eport + 1))" \
    --initial-cluster "f=http://127.0.0.1:$((eport + 1))" --log-level error >/dev/null 2>&1 &
  etcd_pid=$!
  sleep 3
  run_line "xfer --world 65536 (etcd)" "$kvxfer" xfer --etcd "http://127.0.0.1:$eport" \
    --world 65536 --group lonely --scheme many-to-one --timeout 3 -s 4K --domain lo
  echo "    line length: $(tail -1 "$work/err" | wc -c) bytes"
  echo "== 29.12 etcd killed mid-run: both ranks end, both keep a partial result"
  for r in 0 1; do
    PMI_RANK=$r PMI_SIZE=2 "$kvxfer" xfer --etcd "http://127.0.0.1:$eport" --group gone \
      --scheme many-to-one -s 1M -I 100000 -w 1 --domain lo --timeout 60 --etcd-ttl 2 \
      --json "$work/g$r.json" >/dev/null 2>"$work/g$r.err" &
    eval "rank$r=\$!"
  done
  sleep 8
  kill "$etcd_pid"; wait "$etcd_pid" 2>/dev/null
  t0=$(date +%s.%N)
  for r in 0 1; do
    eval "wait \$rank$r"; rc=$?
    printf '%-34s rc=%-3s %6.1f s  %s\n' "rank $r after etcd died" "$rc" \
      "$(echo "$(date +%s.%N) - $t0" | bc)" "$(grep -E '^kvxfer' "$work/g$r.err" | tail -1 | cut -c1-160)"
    [ -f "$work/g$r.json" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print('    json: status', d['status'], 'role', d['config'].get('role'), 'iterations', [r.get('iterations') for r in d['results']])" "$work/g$r.json"
  done
else
  echo "    (no etcd: rows 29.7 etcd and 29.12 skipped)"
fi
echo "== 29.9 names checked before measuring"
run_line "xfer -d nosuch0" "$kvxfer" xfer -s 4K -I 2 -d nosuch0 --json "$work/n.json"
run_line "xfer --rails nosuch0,nosuch1" "$kvxfer" xfer -s 4K -I 2 --rails nosuch0,nosuch1
run_line "--mlflow-uri http://127.0.0.1:99999" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 \
  --mlflow-uri http://127.0.0.1:99999
run_line "--mlflow-uri 'http://exa mple.com'" "$kvxfer" pingpong --domain lo --sizes 64 -I 10 \
  --mlflow-uri "http://exa mple.com"
