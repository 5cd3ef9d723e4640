#!/usr/bin/env bash
# kvxfer xfer over UCX beside NIXL's own engine on the same UCX transports, on this host's
# loopback: `kvxfer xfer --backend ucx --op write` and scripts/nixl_xfer.py (NIXL 1.5.1, its
# UCX 1.22, a descriptor list of size / block blocks, nixlbench's arithmetic) interleaved
# (A B A B ...) at 55M, 224M and 672M, over UCX_TLS=tcp (lo) and tcp,cma. Prints each round and
# the median of the per-round ratios kvxfer / NIXL of the bandwidth (10^9 B/s) with its
# distribution-free interval and verdict (scripts/ratios.py; 6 rounds or more reach 95 %).
#
#   scripts/compare-nixl.sh [ROUNDS]        (default 5, the fewest that give a verdict)
# Env: ITERS (timed transfers, default 10), WARMUP (default 2), TLS (default "tcp tcp,cma"),
# SIZES (default "55M 224M 672M"), KVXFER (binary; built if missing), NIXL_PYTHON (default the
# test venv's python, where scripts/setup.sh --test installs NIXL). Busy-polling needs both
# cores: run it on an idle machine.
# PROCS=2 (the default) runs each tool as two processes (target, then initiator on 127.0.0.1),
# the layout nixlbench uses and the one a cluster run has. PROCS=1 runs each in one process,
# both driving their two ends from one thread (kvxfer's --local-threads pair, its UCX default;
# KVXFER_ARGS="--local-threads side" gives the target its own thread, where lo's TCP reorders
# the segments of a connection driven from two CPUs and can halve the 672M figure).
# CPUS=LIST confines both tools to those CPUs (taskset -c LIST). KVXFER_ARGS: more options for
# kvxfer xfer (both processes).
# Each round also prints the host's TCP counters over each run (retransmitted segments, SACK
# reordering events, out-of-order queueing): over lo they are zero unless the connection's
# segments were sent from two CPUs and overtook each other. Host-wide counters: other loopback
# traffic at the same time adds to them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-5}"
kvxfer="${KVXFER:-$repo/target/release/kvxfer}"
py="${NIXL_PYTHON:-$repo/.cache/mlflow-venv/bin/python}"
iters="${ITERS:-10}"
warmup="${WARMUP:-2}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

die() { echo "compare-nixl.sh: $*" >&2; exit 1; }
[ -x "$py" ] || die "$py not found (scripts/setup.sh --test)"
"$py" "$repo/scripts/nixl_xfer.py" --check || die "NIXL is not installed (scripts/setup.sh --test)"
if [ ! -x "$kvxfer" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi

bytes() { case "$1" in 55M) echo 57344000 ;; 224M) echo 234881024 ;; 672M) echo 704643072 ;;
    *) die "size $1: one of 55M 224M 672M (the KV sizes of 1K, 4K, 12K tokens)" ;; esac; }
# 4 MiB blocks; 55M (57,344,000 B) in 14 blocks of 4,096,000 B.
block() { [ "$1" = 57344000 ] && echo 4096000 || echo 4194304; }

procs="${PROCS:-2}"
case "$procs" in 1 | 2) ;; *) die "PROCS=$procs: 1 or 2" ;; esac
pin=()
if [ -n "${CPUS:-}" ]; then
    command -v taskset >/dev/null || die "CPUS needs taskset (util-linux)"
    pin=(taskset -c "$CPUS")
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# tcp_counters: the host's TCP retransmission and reordering counters, one line.
tcp_counters() {
    python3 - <<'PY'
def table(path):
    out, lines = {}, open(path).read().splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        for k, v in zip(head.split()[1:], vals.split()[1:]):
            out[head.split()[0] + k] = v
    return out
t = {**table("/proc/net/snmp"), **table("/proc/net/netstat")}
print(*(t.get(k, "0") for k in ("Tcp:RetransSegs", "TcpExt:TCPSACKReorder", "TcpExt:TCPOFOQueue")))
PY
}
# tcp_delta BEFORE AFTER: "retrans R, reorder S, ofo O" between two tcp_counters lines.
tcp_delta() {
    local a=($1) b=($2)
    echo "retrans $((b[0] - a[0])), reorder $((b[1] - a[1])), ofo $((b[2] - a[2]))"
}

# run_pair TARGET_CMD... -- INITIATOR_CMD...: the two sides as two processes; the target's
# stderr in $tmp/terr, the initiator's stdout on ours.
run_pair() {
    local cut
    for ((cut = 1; cut <= $#; cut++)); do [ "${!cut}" = -- ] && break; done
    local tgt=("${@:1:cut-1}") ini=("${@:cut+1}") t rc=0
    "${tgt[@]}" >/dev/null 2>"$tmp/terr" &
    t=$!
    "${ini[@]}" || rc=$?
    wait "$t" || rc=$?
    [ "$rc" = 0 ] || cat "$tmp/terr" >&2
    return "$rc"
}

# one_kvxfer TLS BYTES BLOCK / one_nixl TLS BYTES BLOCK: GB/s of one run
one_kvxfer() {
    local run=(env UCX_TLS="$1" UCX_NET_DEVICES=lo UCX_LOG_FILE=stderr timeout -k 5 600 "${pin[@]}" "$kvxfer"
        xfer --backend ucx --op write -s "$2" --block "$3" -I "$iters" -w "$warmup")
    # shellcheck disable=SC2206
    run+=(${KVXFER_ARGS:-})
    if [ "$procs" = 1 ]; then
        "${run[@]}" --json "$tmp/k.json" >/dev/null 2>"$tmp/err"
    else
        local p
        p=$(port)
        run_pair "${run[@]}" --listen "127.0.0.1:$p" -- "${run[@]}" --peer "127.0.0.1:$p" \
            --json "$tmp/k.json" >/dev/null 2>"$tmp/err"
    fi || { cat "$tmp/err" >&2; die "kvxfer xfer failed"; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["bandwidth_gbps"])' "$tmp/k.json"
}
one_nixl() {
    local run=(env UCX_TLS="$1" UCX_NET_DEVICES=lo UCX_LOG_FILE=stderr timeout -k 5 600 "${pin[@]}" "$py"
        "$repo/scripts/nixl_xfer.py" --op_type WRITE --block_size "$3" --batch_size $(($2 / $3))
        --num_iter "$iters" --warmup_iter "$warmup")
    if [ "$procs" = 1 ]; then
        "${run[@]}" >"$tmp/n.txt" 2>"$tmp/err"
    else
        local p
        p=$(port)
        run_pair "${run[@]}" --listen "127.0.0.1:$p" -- "${run[@]}" --peer "127.0.0.1:$p" \
            >"$tmp/n.txt" 2>"$tmp/err"
    fi || { cat "$tmp/err" >&2; die "nixl_xfer.py failed"; }
    "$kvxfer" parse --tool nixlbench "$tmp/n.txt" --json "$tmp/n.json" >/dev/null 2>&1 || die "kvxfer parse of NIXL's table failed: $(cat "$tmp/n.txt")"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["bandwidth_gbps"])' "$tmp/n.json"
}

echo "# $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg); $("$kvxfer" info --ucx 2>/dev/null | sed -n 1p); $procs process(es) per tool${CPUS:+; CPUs $CPUS}"
for tls in ${TLS:-tcp tcp,cma}; do
    for size in ${SIZES:-55M 224M 672M}; do
        b=$(bytes "$size")
        blk=$(block "$b")
        echo "# UCX_TLS=$tls, $size WRITE in $((b / blk)) blocks of $blk B, $iters iterations, $rounds rounds"
        ks=() ns=()
        for ((i = 1; i <= rounds; i++)); do
            c0=$(tcp_counters)
            k=$(one_kvxfer "$tls" "$b" "$blk")
            c1=$(tcp_counters)
            n=$(one_nixl "$tls" "$b" "$blk")
            c2=$(tcp_counters)
            echo "round $i  kvxfer GB/s: $k ($(tcp_delta "$c0" "$c1"))   NIXL GB/s: $n ($(tcp_delta "$c1" "$c2"))"
            ks+=("$k")
            ns+=("$n")
        done
        python3 "$repo/scripts/ratios.py" "$tls $size" kvxfer NIXL GB/s higher -- "${ks[@]}" -- "${ns[@]}"
    done
done
