#!/usr/bin/env bash
# kvxfer xfer over UCX beside NIXL's own engine on the same UCX transports, on this host's
# loopback: `kvxfer xfer --backend ucx --op write` and scripts/nixl_xfer.py (NIXL 1.5.1, its
# UCX 1.22, a descriptor list of size / block blocks, nixlbench's arithmetic) interleaved
# (A B A B ...) at 55M, 224M and 672M, over UCX_TLS=tcp (lo) and tcp,cma. Prints each round and
# the median of the per-round ratios kvxfer / NIXL of the bandwidth (10^9 B/s).
#
#   scripts/compare-nixl.sh [ROUNDS]        (default 3)
# Env: ITERS (timed transfers, default 10), WARMUP (default 2), TLS (default "tcp tcp,cma"),
# SIZES (default "55M 224M 672M"), KVXFER (binary; built if missing), NIXL_PYTHON (default the
# test venv's python, where scripts/setup.sh --test installs NIXL). Busy-polling needs both
# cores: run it on an idle machine.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-3}"
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

# one_kvxfer TLS BYTES BLOCK / one_nixl TLS BYTES BLOCK: GB/s of one run
one_kvxfer() {
    env UCX_TLS="$1" UCX_NET_DEVICES=lo UCX_LOG_FILE=stderr timeout 600 "$kvxfer" xfer \
        --backend ucx --op write -s "$2" --block "$3" -I "$iters" -w "$warmup" --json "$tmp/k.json" \
        >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; die "kvxfer xfer failed"; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["bandwidth_gbps"])' "$tmp/k.json"
}
one_nixl() {
    env UCX_TLS="$1" UCX_NET_DEVICES=lo UCX_LOG_FILE=stderr timeout 600 "$py" "$repo/scripts/nixl_xfer.py" \
        --op_type WRITE --block_size "$3" --batch_size $(($2 / $3)) --num_iter "$iters" \
        --warmup_iter "$warmup" >"$tmp/n.txt" 2>"$tmp/err" || { cat "$tmp/err" >&2; die "nixl_xfer.py failed"; }
    "$kvxfer" parse --tool nixlbench "$tmp/n.txt" --json "$tmp/n.json" >/dev/null 2>&1 || die "kvxfer parse of NIXL's table failed: $(cat "$tmp/n.txt")"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["bandwidth_gbps"])' "$tmp/n.json"
}

echo "# $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg); $("$kvxfer" info --ucx 2>/dev/null | sed -n 1p)"
for tls in ${TLS:-tcp tcp,cma}; do
    for size in ${SIZES:-55M 224M 672M}; do
        b=$(bytes "$size")
        blk=$(block "$b")
        echo "# UCX_TLS=$tls, $size WRITE in $((b / blk)) blocks of $blk B, $iters iterations, $rounds rounds"
        ks=() ns=()
        for ((i = 1; i <= rounds; i++)); do
            k=$(one_kvxfer "$tls" "$b" "$blk")
            n=$(one_nixl "$tls" "$b" "$blk")
            echo "round $i  kvxfer GB/s: $k   NIXL GB/s: $n"
            ks+=("$k")
            ns+=("$n")
        done
        python3 - "$tls" "$size" "${ks[@]}" -- "${ns[@]}" <<'PY'
import statistics, sys
tls, size, *args = sys.argv[1:]
cut = args.index("--")
k = [float(x) for x in args[:cut]]
n = [float(x) for x in args[cut + 1:]]
r = statistics.median(a / b for a, b in zip(k, n))
print(f"{tls} {size}: kvxfer / NIXL bandwidth {r:.3f} (median of per-round ratios; "
      f"medians kvxfer {statistics.median(k):.3f}, NIXL {statistics.median(n):.3f} GB/s)")
PY
    done
done
