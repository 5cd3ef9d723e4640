#!/usr/bin/env bash
# The GPU checks of kvxfer: one list of rows, each run under its own time limit, ending with a
# table. It needs bash, coreutils, tar and gzip; python3 only to read the figures out of the
# result documents (without it the rows still pass or fail, their figures read "-").
#
#   .device/check.sh OUT_DIR              the self-contained bundle (scripts/device-bundle.sh)
#   scripts/gpu-check.sh [OUT_DIR]        builds with cargo, then runs this file
#   scripts/device-check.sh --list        the rows, their limits and the sum of the limits
#
# OUT_DIR receives summary.md (the table, the headline figures, the GPU listing), results.json
# (every row: name, status, figure, seconds, first error line; the figures by key) and
# runs.tar.gz (each row's log and result documents): three files.
#
# A row needing a GPU reads "skipped" with the reason when the CUDA driver opens none
# (kvxfer info --gpu --check); the others run anyway. A row past its limit is stopped (SIGTERM,
# SIGKILL two seconds before the limit) and reads "timeout".
# Exit status: 0 every row passed; 1 no GPU: the GPU rows were skipped and every other row
# passed; 2 bad use, or kvxfer missing or unable to start here (a glibc too old, say); 3 a row
# failed or timed out.
#
# Env: KVXFER_CHECK_ROOT (the folder holding bin/kvxfer and tests/; default this script's
# folder), UCX_NET_DEVICES (default lo), ITERS (xfer iterations, default 5).
# KVXFER_CHECK_LIMIT_SCALE=N multiplies every row's limit by N (a slow or busy host; the sum
# then exceeds 7 minutes).
# Test hooks: KVXFER_CHECK_HANG=gpu takes a GPU as present and makes every GPU row hang,
# deaf to SIGTERM; KVXFER_CHECK_TIMEOUT_S=N gives every GPU row N seconds instead of its own
# (together: the worst case, shortened).
set -uo pipefail

# The rows, in order: name, whether it needs a GPU, its limit in seconds, what it checks.
# The limits add up to at most 420 seconds with the GPU probe's (--list prints the sum).
ROWS=(
    "gpu-list      gpu  10 kvxfer info --gpu: the GPUs and their PCIe distances to every NIC"
    "device-tests  gpu  90 the cuda build's device tests: cuMemAlloc and copies (lib mem::cuda), VRAM xfer, staging, pingpong, rma-pingpong (xfer_mem)"
    "ucx-vram      gpu  45 UCX VRAM to VRAM over tcp + cuda_copy, --verify, 55M, 224M, 672M: GB/s; registration of 672M, cold and cached"
    "ucx-vmm       gpu  25 the same at 672M in --vmm memory (cuMemCreate + cuMemMap): GB/s beside cuMemAlloc's"
    "ucx-dram      -    40 UCX DRAM to DRAM over tcp, 55M, 224M, 672M: the baseline of ucx-vram"
    "fi-vram       gpu  20 libfabric tcp VRAM to VRAM, 16M: runs where the provider offers FI_HMEM, else its named refusal passes"
    "fi-dram       -    30 libfabric tcp DRAM to DRAM, 672M, --verify: the baseline of staging"
    "staging       gpu  45 libfabric tcp VRAM to VRAM through --staging host, 672M, write then read: copy GB/s each way"
    "tag-lat-cuda  gpu  25 kvxfer ucx-perf tag_lat in CUDA memory, 8 B and 64 KiB: half round trip p50"
    "tag-bw-cuda   gpu  25 kvxfer ucx-perf tag_bw in CUDA memory, 64M"
    "pingpong      gpu  20 kvxfer pingpong in VRAM over libfabric tcp, 64 B to 1M: runs with FI_HMEM, else its named refusal passes"
    "rma-pingpong  gpu  20 kvxfer rma-pingpong -o writedata in VRAM over libfabric tcp: runs with FI_HMEM, else its named refusal passes"
)
# The limit of the GPU probe before the rows.
PROBE_S=10
# The device test executables (in tests/ of the root) and their arguments.
DEVICE_TESTS=("lib mem::cuda" "xfer_mem")

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
root="${KVXFER_CHECK_ROOT:-$(dirname "$self")}"
K="$root/bin/kvxfer"
ITERS="${ITERS:-5}"
export UCX_NET_DEVICES="${UCX_NET_DEVICES:-lo}"

# row_field ROW N: the Nth field of a row (1 name, 2 gpu, 3 limit); 4 gives the description.
row_field() {
    local name gpu limit what
    read -r name gpu limit what <<<"$1"
    case "$2" in 1) echo "$name" ;; 2) echo "$gpu" ;; 3) echo "$limit" ;; 4) echo "$what" ;; esac
}

# ---- what a row does (run as `device-check.sh --row NAME DOCS`, under its limit) ----------

# figure TEXT: the row's figure, the table's third column.
figure() { printf '%s\n' "$*" >"$D/$ROW.figure"; }
# record KEY VALUE: a headline figure (summary.md's figures, results.json's "figures").
record() { printf '%s %s\n' "$1" "$2" >>"$D/$ROW.figures"; }
# val DOC PATH: a value of a result document by dotted path (results.0.bandwidth_gbps,
# results.-1 for the last); "-" when absent or without python3. Numbers with two decimals.
val() {
    command -v python3 >/dev/null || { echo "-"; return; }
    python3 - "$1" "$2" <<'EOF' 2>/dev/null || echo "-"
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print("-" if v is None else f"{v:.2f}" if isinstance(v, float) else v)
EOF
}
# xfer NAME ARGS...: one local kvxfer xfer, its document NAME.json.
xfer() {
    local name="$1"
    shift
    "$K" xfer --iterations "$ITERS" --warmup 1 --json "$D/$name.json" "$@"
}
# refused_as_expected LOG: the run was refused because the provider lacks FI_HMEM (Debian's
# libfabric): the expected answer of the libfabric VRAM rows there.
refused_as_expected() {
    if grep -q "offers no FI_HMEM" "$1"; then
        figure "refused as expected: $(grep -m1 "offers no FI_HMEM" "$1" | cut -c1-100)"
        return 0
    fi
    return 1
}

row_gpu_list() {
    "$K" info --gpu >"$D/gpu-list.txt" || return 1
    cat "$D/gpu-list.txt"
    local n
    n=$(grep -c '^[0-9]' "$D/gpu-list.txt")
    record gpus "$n"
    figure "$n GPU(s) usable; matrix in summary.md"
    [ "$n" -gt 0 ]
}

row_device_tests() {
    export CARGO_BIN_EXE_kvxfer="$K" UCX_NET_DEVICES
    local spec exe passed=0 n
    for spec in "${DEVICE_TESTS[@]}"; do
        # shellcheck disable=SC2086
        set -- $spec
        exe="$root/tests/$1"
        shift
        echo "== $exe $*"
        "$exe" "$@" --nocapture >"$D/tests-$(basename "$exe").txt" 2>&1
        local rc=$?
        cat "$D/tests-$(basename "$exe").txt"
        [ "$rc" -eq 0 ] || return 1
        n=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$D/tests-$(basename "$exe").txt" | head -n 1)
        passed=$((passed + ${n:-0}))
    done
    # With a GPU, only the tests of the missing-GPU refusals may skip themselves.
    local skipped
    skipped=$(grep -h '^SKIPPED' "$D"/tests-*.txt | grep -v 'a GPU device node is present' | head -n 1)
    if [ -n "$skipped" ]; then
        echo "a device test skipped itself: $skipped"
        return 1
    fi
    figure "$passed tests passed, none skipped for want of a GPU"
}

row_ucx_vram() {
    export UCX_TLS=tcp,cuda_copy
    local s out=()
    for s in 55M 224M 672M; do
        xfer "ucx-vram-$s" -B ucx -s "$s" --verify --initiator-seg VRAM --target-seg VRAM || return 1
        record "ucx_vram_gbps_$s" "$(val "$D/ucx-vram-$s.json" results.0.bandwidth_gbps)"
        out+=("$s $(val "$D/ucx-vram-$s.json" results.0.bandwidth_gbps)")
    done
    local d="$D/ucx-vram-672M.json" c="results.0.extra.costs"
    record reg_vram_672M_cold_us "$(val "$d" "$c.registration_first_us")"
    record reg_vram_672M_cached_us "$(val "$d" "$c.registration_cached_us")"
    record reg_vram_672M_target_cold_us "$(val "$d" "$c.target_registration_first_us")"
    record reg_vram_672M_target_cached_us "$(val "$d" "$c.target_registration_cached_us")"
    figure "GB/s: ${out[*]}; verified $(val "$d" results.0.extra.verified_bytes) B at 672M; registration 672M: cold $(val "$d" "$c.registration_first_us") us, cached $(val "$d" "$c.registration_cached_us") us"
}

row_ucx_vmm() {
    export UCX_TLS=tcp,cuda_copy
    xfer ucx-vmm -B ucx -s 672M --verify --initiator-seg VRAM --target-seg VRAM --vmm || return 1
    local g
    g=$(val "$D/ucx-vmm.json" results.0.bandwidth_gbps)
    record ucx_vmm_gbps_672M "$g"
    local alloc
    alloc=$(sed -n 's/^ucx_vram_gbps_672M //p' "$D/ucx-vram.figures" 2>/dev/null)
    figure "--vmm $g GB/s ($(val "$D/ucx-vmm.json" config.vram_alloc)) against cuMemAlloc ${alloc:--} GB/s, 672M"
}

row_ucx_dram() {
    export UCX_TLS=tcp
    local s out=()
    for s in 55M 224M 672M; do
        xfer "ucx-dram-$s" -B ucx -s "$s" --verify || return 1
        record "ucx_dram_gbps_$s" "$(val "$D/ucx-dram-$s.json" results.0.bandwidth_gbps)"
        out+=("$s $(val "$D/ucx-dram-$s.json" results.0.bandwidth_gbps)")
    done
    figure "GB/s: ${out[*]}; UCX $(val "$D/ucx-dram-672M.json" environment.ucx_version)"
}

row_fi_vram() {
    if xfer fi-vram --provider tcp --domain lo -s 16M --verify \
        --initiator-seg VRAM --target-seg VRAM >"$D/fi-vram.txt" 2>&1; then
        cat "$D/fi-vram.txt"
        figure "$(val "$D/fi-vram.json" results.0.bandwidth_gbps) GB/s, registration $(val "$D/fi-vram.json" config.mem_registration)"
        return 0
    fi
    cat "$D/fi-vram.txt"
    refused_as_expected "$D/fi-vram.txt"
}

row_fi_dram() {
    xfer fi-dram --provider tcp --domain lo -s 672M --verify || return 1
    local g
    g=$(val "$D/fi-dram.json" results.0.bandwidth_gbps)
    record fi_dram_gbps_672M "$g"
    figure "$g GB/s, verified $(val "$D/fi-dram.json" results.0.extra.verified_bytes) B"
}

row_staging() {
    local op out=()
    for op in write read; do
        xfer "staging-$op" --provider tcp --domain lo -s 672M --verify --op "$op" \
            --initiator-seg VRAM --target-seg VRAM --staging host || return 1
        local d="$D/staging-$op.json" st="results.0.extra.staging"
        local dir
        dir=$(val "$d" "$st.direction")
        record "staging_${dir}_gbps" "$(val "$d" "$st.copy_gbps_p50")"
        out+=("$dir $(val "$d" "$st.copy_gbps_p50") GB/s (p50 $(val "$d" "$st.copy_ms_p50") ms, $op $(val "$d" results.0.bandwidth_gbps) GB/s)")
    done
    figure "copy ${out[0]}; ${out[1]}"
}

row_tag_lat_cuda() {
    local d="$D/tag-lat-cuda.json"
    UCX_TLS=tcp,cuda_copy "$K" ucx-perf -m cuda -t tag_lat -s 8,65536 -n 2000 -w 200 --json "$d" ||
        return 1
    record tag_lat_cuda_p50_us_8B "$(val "$d" results.0.latency_us.p50)"
    record tag_lat_cuda_p50_us_64KiB "$(val "$d" results.1.latency_us.p50)"
    figure "p50 8 B $(val "$d" results.0.latency_us.p50) us, 64 KiB $(val "$d" results.1.latency_us.p50) us"
}

row_tag_bw_cuda() {
    local d="$D/tag-bw-cuda.json"
    UCX_TLS=tcp,cuda_copy "$K" ucx-perf -m cuda -t tag_bw -s 64M -n 20 -w 2 --json "$d" || return 1
    record tag_bw_cuda_gbps_64M "$(val "$d" results.0.bandwidth_gbps)"
    figure "64M $(val "$d" results.0.bandwidth_gbps) GB/s"
}

row_pingpong() {
    local d="$D/pingpong.json"
    if "$K" pingpong -p tcp -d lo -S 64,65536,1M -I 200 --verify \
        --initiator-seg VRAM --target-seg VRAM --json "$d" >"$D/pingpong.txt" 2>&1; then
        cat "$D/pingpong.txt"
        figure "p50 64 B $(val "$d" results.0.latency_us.p50) us, 1M $(val "$d" results.2.latency_us.p50) us"
        return 0
    fi
    cat "$D/pingpong.txt"
    refused_as_expected "$D/pingpong.txt"
}

row_rma_pingpong() {
    local d="$D/rma-pingpong.json"
    if "$K" rma-pingpong -p tcp -d lo -o writedata -S 64,65536,1M -I 200 --verify \
        --initiator-seg VRAM --target-seg VRAM --json "$d" >"$D/rma-pingpong.txt" 2>&1; then
        cat "$D/rma-pingpong.txt"
        figure "writedata p50 64 B $(val "$d" results.0.latency_us.p50) us, 1M $(val "$d" results.2.latency_us.p50) us"
        return 0
    fi
    cat "$D/rma-pingpong.txt"
    refused_as_expected "$D/rma-pingpong.txt"
}

# ---- the runner -------------------------------------------------------------------------

# json_str TEXT: TEXT as a JSON string.
json_str() {
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    s="${s//$'\t'/ }"
    s="${s//$'\r'/}"
    s="${s//$'\n'/ }"
    printf '"%s"' "$s"
}
# json_val TEXT: a number as it is, anything else as a string ("-" as null).
json_val() {
    if [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
        printf '%s' "$1"
    elif [ "$1" = "-" ] || [ -z "$1" ]; then
        printf 'null'
    else
        json_str "$1"
    fi
}
# first_error LOG: the first line that says what went wrong, else the last line.
first_error() {
    local l
    l=$(grep -m1 -E 'error|Error|panicked|FAILED|failed|refused|not found|cannot' "$1" 2>/dev/null)
    [ -n "$l" ] || l=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1)
    printf '%s' "${l:0:240}"
}
now_ms() { date +%s%3N; }

list_rows() {
    local r sum=$PROBE_S
    printf '%-13s %-4s %5s  %s\n' row gpu limit what
    for r in "${ROWS[@]}"; do
        printf '%-13s %-4s %4ss  %s\n' "$(row_field "$r" 1)" "$(row_field "$r" 2)" \
            "$(row_field "$r" 3)" "$(row_field "$r" 4)"
        sum=$((sum + $(row_field "$r" 3)))
    done
    echo "sum of the limits, the GPU probe's ${PROBE_S}s included: ${sum}s"
}

# run_row NAME DOCS: the row's body, in a process of its own (the limit's process group).
run_row() {
    ROW="$1"
    D="$2"
    local r gpu=""
    for r in "${ROWS[@]}"; do [ "$(row_field "$r" 1)" = "$ROW" ] && gpu=$(row_field "$r" 2); done
    if [ "${KVXFER_CHECK_HANG:-}" = gpu ] && [ "$gpu" = gpu ]; then
        echo "test hook KVXFER_CHECK_HANG=gpu: $ROW hangs, deaf to SIGTERM"
        trap '' TERM
        sleep 100000
    fi
    "row_${ROW//-/_}"
}

main() {
    case "${1:-}" in
        --list) list_rows; return 0 ;;
        --row) shift; run_row "$@"; return ;;
        --device-tests) printf '%s\n' "${DEVICE_TESTS[@]}" | cut -d' ' -f1; return 0 ;;
        ""|-h|--help) sed -n '2,23p' "$self"; return 2 ;;
    esac
    local out="$1"
    mkdir -p "$out" || return 2
    out="$(cd "$out" && pwd)"
    # A copy that lost its modes (carried through a tool that keeps none) still runs.
    [ -x "$K" ] || chmod +x "$root"/bin/* "$root"/tests/* 2>/dev/null
    if [ ! -x "$K" ]; then
        echo "check: no kvxfer at $K (KVXFER_CHECK_ROOT names the folder of bin/kvxfer)" >&2
        return 2
    fi
    if ! "$K" --version >/dev/null 2>"${TMPDIR:-/tmp}/kvxfer-check-start.$$"; then
        echo "check: kvxfer does not start on this host: $(head -n 1 "${TMPDIR:-/tmp}/kvxfer-check-start.$$")" >&2
        rm -f "${TMPDIR:-/tmp}/kvxfer-check-start.$$"
        return 2
    fi
    rm -f "${TMPDIR:-/tmp}/kvxfer-check-start.$$"
    local work
    work="$(mktemp -d)" || return 2
    local docs="$work/runs"
    mkdir -p "$docs"
    cd "$work" || return 2

    # The GPU probe: the reason a GPU row is skipped.
    local gpu=0 reason=""
    if [ "${KVXFER_CHECK_HANG:-}" = gpu ]; then
        gpu=1
        reason="test hook KVXFER_CHECK_HANG=gpu: a GPU is taken as present"
    elif timeout -k 2 $((PROBE_S - 2)) "$K" info --gpu --check >"$docs/gpu-probe.txt" 2>&1; then
        gpu=1
        reason="$(head -n 1 "$docs/gpu-probe.txt")"
    else
        reason="$(head -n 1 "$docs/gpu-probe.txt")"
        [ -n "$reason" ] || reason="kvxfer info --gpu --check did not answer within ${PROBE_S}s"
    fi
    echo "check: $reason" >&2

    local names=() states=() figs=() secs=() errs=() limits=() needs=()
    local r name need limit t0 rc state fig err
    local failed=0 skipped=0
    for r in "${ROWS[@]}"; do
        name=$(row_field "$r" 1)
        need=$(row_field "$r" 2)
        limit=$(row_field "$r" 3)
        limit=$((limit * ${KVXFER_CHECK_LIMIT_SCALE:-1}))
        [ "$need" != gpu ] || [ -z "${KVXFER_CHECK_TIMEOUT_S:-}" ] || limit="$KVXFER_CHECK_TIMEOUT_S"
        fig="-"
        err=""
        t0=$(now_ms)
        if [ "$need" = gpu ] && [ "$gpu" = 0 ]; then
            state="skipped"
            err="skipped: no GPU: $reason"
            skipped=1
        else
            echo "check: $name (limit ${limit}s)" >&2
            timeout -k 2 $((limit > 2 ? limit - 2 : 1)) bash "$self" --row "$name" "$docs" \
                </dev/null >"$docs/$name.log" 2>&1
            rc=$?
            if [ "$rc" = 0 ]; then
                state="pass"
                [ -s "$docs/$name.figure" ] && fig="$(head -n 1 "$docs/$name.figure")"
            elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
                state="timeout"
                err="timed out: stopped after its limit of ${limit}s"
                failed=1
            else
                state="fail"
                err="$(first_error "$docs/$name.log")"
                fig="see runs.tar.gz: $name.log"
                failed=1
            fi
        fi
        names+=("$name")
        needs+=("$need")
        limits+=("$limit")
        states+=("$state")
        figs+=("$fig")
        t0=$(($(now_ms) - t0))
        secs+=("$((t0 / 1000)).$((t0 % 1000 / 100))")
        errs+=("$err")
        echo "check: $name: $state in ${secs[-1]}s${err:+: $err}" >&2
    done

    local status=0
    if [ "$failed" = 1 ]; then
        status=3
    elif [ "$skipped" = 1 ]; then
        status=1
    fi
    local verdict
    case "$status" in
        0) verdict="every row passed" ;;
        1) verdict="no GPU: the GPU rows were skipped, every other row passed" ;;
        3) verdict="a row failed or timed out: $(for i in "${!names[@]}"; do
                   case "${states[$i]}" in fail | timeout) printf '%s (%s) ' "${names[$i]}" "${states[$i]}" ;; esac
               done)" ;;
    esac

    # The headline figures the rows recorded.
    declare -A F=()
    local k v f
    for f in "$docs"/*.figures; do
        [ -e "$f" ] || continue
        while read -r k v; do F[$k]="$v"; done <"$f"
    done
    g() { printf '%s' "${F[$1]:--}"; }

    {
        echo "# kvxfer GPU check"
        echo
        echo "- host: $(uname -n), $(uname -m), kernel $(uname -r)"
        echo "- kvxfer: $("$K" --version 2>/dev/null | head -n 1)"
        echo "- GPU probe: $reason"
        echo "- exit status $status: $verdict"
        echo
        echo "| check | state | figure | seconds |"
        echo "|---|---|---|---|"
        for i in "${!names[@]}"; do
            f="${figs[$i]}"
            [ "${states[$i]}" = pass ] || f="${errs[$i]}"
            echo "| ${names[$i]} | ${states[$i]} | ${f//|/\\|} | ${secs[$i]} |"
        done
        echo
        echo "## Figures"
        echo
        echo "- UCX over tcp, GB/s, VRAM to VRAM (tcp + cuda_copy) against DRAM to DRAM: 55M $(g ucx_vram_gbps_55M) / $(g ucx_dram_gbps_55M), 224M $(g ucx_vram_gbps_224M) / $(g ucx_dram_gbps_224M), 672M $(g ucx_vram_gbps_672M) / $(g ucx_dram_gbps_672M)"
        echo "- 672M VRAM by cuMemAlloc $(g ucx_vram_gbps_672M) GB/s, by --vmm $(g ucx_vmm_gbps_672M) GB/s"
        echo "- UCX registration of 672M in VRAM: cold $(g reg_vram_672M_cold_us) us, cached $(g reg_vram_672M_cached_us) us (target: $(g reg_vram_672M_target_cold_us), $(g reg_vram_672M_target_cached_us) us)"
        echo "- staging copy 672M, p50: device to host $(g staging_device_to_host_gbps) GB/s, host to device $(g staging_host_to_device_gbps) GB/s (libfabric tcp DRAM 672M: $(g fi_dram_gbps_672M) GB/s)"
        echo "- tag_lat in CUDA memory, p50: 8 B $(g tag_lat_cuda_p50_us_8B) us, 64 KiB $(g tag_lat_cuda_p50_us_64KiB) us; tag_bw 64M $(g tag_bw_cuda_gbps_64M) GB/s"
        if [ -s "$docs/gpu-list.txt" ]; then
            echo
            echo "## GPUs (kvxfer info --gpu)"
            echo
            echo '```'
            cat "$docs/gpu-list.txt"
            echo '```'
        fi
        echo
        echo "Each row's log and result documents: runs.tar.gz."
    } >"$out/summary.md"

    {
        echo "{"
        echo "  \"schema\": \"kvxfer.device-check/v1\","
        echo "  \"host\": $(json_str "$(uname -n)"),"
        echo "  \"kvxfer\": $(json_str "$("$K" --version 2>/dev/null | head -n 1)"),"
        echo "  \"gpu\": $([ "$gpu" = 1 ] && echo true || echo false),"
        echo "  \"gpu_probe\": $(json_str "$reason"),"
        echo "  \"exit_status\": $status,"
        echo "  \"verdict\": $(json_str "$verdict"),"
        echo "  \"rows\": ["
        for i in "${!names[@]}"; do
            printf '    {"name": %s, "needs_gpu": %s, "status": %s, "figure": %s, "seconds": %s, "limit_s": %s, "error": %s}' \
                "$(json_str "${names[$i]}")" "$([ "${needs[$i]}" = gpu ] && echo true || echo false)" \
                "$(json_str "${states[$i]}")" "$(json_val "${figs[$i]}")" "${secs[$i]}" "${limits[$i]}" \
                "$([ -n "${errs[$i]}" ] && json_str "${errs[$i]}" || echo null)"
            [ "$i" -lt $((${#names[@]} - 1)) ] && echo "," || echo
        done
        echo "  ],"
        echo "  \"figures\": {"
        local keys n=0
        keys=()
        [ "${#F[@]}" -eq 0 ] || mapfile -t keys < <(printf '%s\n' "${!F[@]}" | sort)
        for k in "${keys[@]}"; do
            n=$((n + 1))
            printf '    %s: %s' "$(json_str "$k")" "$(json_val "${F[$k]}")"
            [ "$n" -lt "${#keys[@]}" ] && echo "," || echo
        done
        echo "  }"
        echo "}"
    } >"$out/results.json"

    tar -czf "$out/runs.tar.gz" -C "$work" runs
    cd / && rm -rf "$work"

    echo
    printf '%-13s %-8s %s\n' check state figure
    for i in "${!names[@]}"; do
        f="${figs[$i]}"
        [ "${states[$i]}" = pass ] || f="${errs[$i]}"
        printf '%-13s %-8s %s\n' "${names[$i]}" "${states[$i]}" "$f"
    done
    echo
    sed -n '/^## Figures/,/^## GPUs/p' "$out/summary.md" | grep '^- '
    echo "check: exit status $status: $verdict; summary.md, results.json, runs.tar.gz in $out" >&2
    return "$status"
}

main "$@"
