#!/usr/bin/env bash
# Every GPU check of kvxfer in one go, on a host with an NVIDIA GPU (meant to take under
# 5 minutes on an H200 host once the build is warm), ending with a summary table:
#
#   scripts/gpu-check.sh [OUT_DIR]        (result files go to OUT_DIR, default a temporary one)
#
# 1. builds kvxfer with `--features cuda` (debug build; scripts/setup.sh must have run);
# 2. stops with one line and status 1 where no GPU is usable (kvxfer info --gpu --check);
# 3. runs, each a row of the summary:
#    gpu-list      kvxfer info --gpu: GPUs and GPU-to-NIC PCIe distances
#    alloc         the cuda build's device tests (cuMemAlloc, copies, VRAM xfer tests)
#    ucx-vram      UCX VRAM to VRAM over tcp + cuda_copy, 64M, --verify
#    ucx-vmm       the same with --vmm (cuMemCreate + cuMemMap)
#    fi-vram       libfabric tcp VRAM to VRAM: runs where the provider offers FI_HMEM, else
#                  its named refusal (Debian's libfabric has none) counts as the expected answer
#    staging       libfabric tcp VRAM to VRAM through --staging host, 672M: copy GB/s
#    tag-lat-cuda  kvxfer ucx-perf tag_lat in CUDA memory (a ping-pong in VRAM over UCX)
#    tag-bw-cuda   kvxfer ucx-perf tag_bw in CUDA memory, 64M
#    672m-dram     UCX 672M over tcp, DRAM to DRAM  } side by side: the VRAM path's cost
#    672m-vram     UCX 672M over tcp, VRAM to VRAM  }
#    pingpong      kvxfer pingpong in VRAM over libfabric tcp: runs where the provider offers
#                  FI_HMEM, else its named refusal counts as the expected answer
#    rma-pingpong  kvxfer rma-pingpong -o writedata in VRAM over libfabric tcp (arrival by remote
#                  CQ data): runs where the provider offers FI_HMEM, else its named refusal
#                  counts as the expected answer
# Exit status: 0 when every row that ran passed, 1 without a GPU, 2 when the build fails,
# 3 when a check failed. Env: UCX_NET_DEVICES (default lo), ITERS (5).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$(mktemp -d)}"
iters="${ITERS:-5}"
export UCX_NET_DEVICES="${UCX_NET_DEVICES:-lo}"
mkdir -p "$out"
cd "$repo" || exit 2

echo "gpu-check: building kvxfer with --features cuda" >&2
if ! cargo build --features cuda --quiet; then
    echo "gpu-check: cargo build --features cuda failed" >&2
    exit 2
fi
k="$repo/target/debug/kvxfer"
if ! "$k" info --gpu --check; then
    echo "gpu-check: no usable GPU on this host: nothing checked (the line above says why)" >&2
    exit 1
fi

rows=()
failed=0
# row NAME STATUS FIGURE
row() { rows+=("$(printf '%-13s %-5s %s' "$1" "$2" "$3")"); }
# fig FILE PATH: a value of a result document by dotted path (results.0.bandwidth_gbps); "-"
# when absent. Numbers come with two decimals.
fig() {
    python3 - "$1" "$2" <<'EOF' 2>/dev/null || echo "-"
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(f"{v:.2f}" if isinstance(v, float) else v)
EOF
}
# run NAME LOG CMD...: runs CMD with its output in LOG; true when it succeeded.
run() {
    local name="$1" log="$2"
    shift 2
    echo "gpu-check: $name: $*" >&2
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        echo "gpu-check: $name: ok in $((SECONDS - t0)) s" >&2
        return 0
    fi
    echo "gpu-check: $name: FAILED in $((SECONDS - t0)) s; last lines of $log:" >&2
    tail -n 5 "$log" >&2
    return 1
}
pass() { row "$1" PASS "$2"; }
fail() { row "$1" FAIL "$2"; failed=1; }

if run gpu-list "$out/gpu-list.txt" "$k" info --gpu; then
    pass gpu-list "$(grep -c '^[0-9]' "$out/gpu-list.txt") GPU(s) listed; matrix in $out/gpu-list.txt"
    cat "$out/gpu-list.txt"
else
    fail gpu-list "see $out/gpu-list.txt"
fi

if run alloc "$out/alloc.txt" cargo test --features cuda --quiet --lib mem::cuda -- --nocapture \
    && run alloc "$out/alloc-xfer.txt" cargo test --features cuda --quiet --test xfer_mem -- --nocapture; then
    if grep -q SKIPPED "$out/alloc.txt" "$out/alloc-xfer.txt"; then
        fail alloc "a device test skipped itself: $(grep -h SKIPPED "$out"/alloc*.txt | head -n 1)"
    else
        pass alloc "device tests and VRAM xfer tests passed"
    fi
else
    fail alloc "see $out/alloc*.txt"
fi

xfer() { # NAME JSON ARGS...: one local xfer; its bandwidth
    local name="$1" json="$2"
    shift 2
    if run "$name" "$out/$name.txt" "$k" xfer --iterations "$iters" --warmup 1 --json "$json" "$@"; then
        pass "$name" "$(fig "$json" results.0.bandwidth_gbps) GB/s, verified $(fig "$json" results.0.extra.verified_bytes) B"
    else
        fail "$name" "see $out/$name.txt"
    fi
}

export UCX_TLS=tcp,cuda_copy
xfer ucx-vram "$out/ucx-vram.json" -B ucx -s 64M --verify \
    --initiator-seg VRAM --target-seg VRAM
xfer ucx-vmm "$out/ucx-vmm.json" -B ucx -s 64M --verify \
    --initiator-seg VRAM --target-seg VRAM --vmm

if run fi-vram "$out/fi-vram.txt" "$k" xfer --provider tcp --domain lo -s 16M --verify \
    --iterations "$iters" --warmup 1 --initiator-seg VRAM --target-seg VRAM --json "$out/fi-vram.json"; then
    pass fi-vram "$(fig "$out/fi-vram.json" results.0.bandwidth_gbps) GB/s, registration $(fig "$out/fi-vram.json" config.mem_registration)"
elif grep -q "offers no FI_HMEM" "$out/fi-vram.txt"; then
    pass fi-vram "refused as expected: $(tail -n 1 "$out/fi-vram.txt" | cut -c1-90)"
else
    fail fi-vram "see $out/fi-vram.txt"
fi

if run staging "$out/staging.txt" "$k" xfer --provider tcp --domain lo -s 672M --verify \
    --iterations "$iters" --warmup 1 --initiator-seg VRAM --target-seg VRAM --staging host \
    --json "$out/staging.json"; then
    st="$out/staging.json"
    pass staging "copy $(fig "$st" results.0.extra.staging.direction) $(fig "$st" results.0.extra.staging.copy_gbps_p50) GB/s (p50 $(fig "$st" results.0.extra.staging.copy_ms_p50) ms), transfer $(fig "$st" results.0.bandwidth_gbps) GB/s"
else
    fail staging "see $out/staging.txt"
fi

perf() { # NAME JSON ARGS...
    local name="$1" json="$2"
    shift 2
    if run "$name" "$out/$name.txt" env UCX_TLS=tcp,cuda_copy "$k" ucx-perf -m cuda --json "$json" "$@"; then
        pass "$name" "first size: p50 $(fig "$json" results.0.latency_us.p50) us, $(fig "$json" results.0.bandwidth_gbps) GB/s; last: p50 $(fig "$json" results.-1.latency_us.p50) us, $(fig "$json" results.-1.bandwidth_gbps) GB/s"
    else
        fail "$name" "see $out/$name.txt"
    fi
}
perf tag-lat-cuda "$out/tag-lat-cuda.json" -t tag_lat -s 64,1024,65536 -n 2000 -w 200
perf tag-bw-cuda "$out/tag-bw-cuda.json" -t tag_bw -s 64M -n 20 -w 2

UCX_TLS=tcp
xfer 672m-dram "$out/672m-dram.json" -B ucx -s 672M
UCX_TLS=tcp,cuda_copy
xfer 672m-vram "$out/672m-vram.json" -B ucx -s 672M \
    --initiator-seg VRAM --target-seg VRAM

if run pingpong "$out/pingpong.txt" "$k" pingpong -p tcp -d lo -S 64,65536,1M -I 200 --verify \
    --initiator-seg VRAM --target-seg VRAM --json "$out/pingpong.json"; then
    pass pingpong "64 B p50 $(fig "$out/pingpong.json" results.0.latency_us.p50) us, 1M p50 $(fig "$out/pingpong.json" results.2.latency_us.p50) us"
elif grep -q "offers no FI_HMEM" "$out/pingpong.txt"; then
    pass pingpong "refused as expected: $(tail -n 1 "$out/pingpong.txt" | cut -c1-90)"
else
    fail pingpong "see $out/pingpong.txt"
fi
if run rma-pingpong "$out/rma-pingpong.txt" "$k" rma-pingpong -p tcp -d lo -o writedata \
    -S 64,65536,1M -I 200 --verify --initiator-seg VRAM --target-seg VRAM \
    --json "$out/rma-pingpong.json"; then
    pass rma-pingpong "writedata 64 B p50 $(fig "$out/rma-pingpong.json" results.0.latency_us.p50) us, 1M p50 $(fig "$out/rma-pingpong.json" results.2.latency_us.p50) us"
elif grep -q "offers no FI_HMEM" "$out/rma-pingpong.txt"; then
    pass rma-pingpong "refused as expected: $(tail -n 1 "$out/rma-pingpong.txt" | cut -c1-90)"
else
    fail rma-pingpong "see $out/rma-pingpong.txt"
fi

echo
printf '%-13s %-5s %s\n' check state figure
for r in "${rows[@]}"; do echo "$r"; done
echo "result files: $out"
if [ "$failed" -ne 0 ]; then
    echo "gpu-check: a check failed (rows marked FAIL)" >&2
    exit 3
fi
