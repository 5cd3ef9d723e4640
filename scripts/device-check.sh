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
# (kvxfer info --gpu --check); the others run anyway. A row past its limit is stopped (SIGTERM
# two seconds before it, SIGKILL at it, to the row's whole process group) and reads "timeout".
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
# hmem_run FIGURE CMD...: a libfabric VRAM run (its output in $ROW.txt, then the log). It
# passes with the figure that the function FIGURE prints when it ran, or with the refusal when
# the provider offers no FI_HMEM (Debian's libfabric): the expected answer there.
hmem_run() {
    local fig="$1"
    shift
    "$@" >"$D/$ROW.txt" 2>&1
    local rc=$?
    cat "$D/$ROW.txt"
    if [ "$rc" = 0 ]; then
        figure "$("$fig")"
    elif grep -q "offers no FI_HMEM" "$D/$ROW.txt"; then
        figure "refused as expected: $(grep -m1 "offers no FI_HMEM" "$D/$ROW.txt" | cut -c1-100)"
    else
        return 1
    fi
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


fi_vram_figure() {
    echo "$(val "$D/fi-vram.json" results.0.bandwidth_gbps) GB/s, registration $(val "$D/fi-vram.json" config.mem_registration)"
}
row_fi_vram() {
    hmem_run fi_vram_figure xfer fi-vram --provider tcp --domain lo -s 16M --verify \
        --initiator-seg VRAM --target-seg VRAM
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



# pingpong_figure: the p50 latencies at 64 B and 1M of $ROW.json.
pingpong_figure() {
    echo "p50 64 B $(val "$D/$ROW.json" results.0.latency_us.p50) us, 1M $(val "$D/$ROW.json" results.2.latency_us.p50) us"
}
row_pingpong() {
    hmem_run pingpong_figure "$K" pingpong -p tcp -d lo -S 64,65536,1M -I 200 --verify \
        --initiator-seg VRAM --target-seg VRAM --json "$D/pingpong.json"
}
row_rma_pingpong() {
    hmem_run pingpong_figure "$K" rma-pingpong -p tcp -d lo -o writedata -S 64,65536,1M -I 200 \
        --verify --initiator-seg VRAM --target-seg VRAM --json "$D/rma-pingpong.json"
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

# start OUT: OUT made absolute in OUT_DIR; kvxfer present and able to start here; WORK (a
# scratch folder, the current one) and DOCS (the rows' logs and documents) made.
start() {
    mkdir -p "$1" || return 2
    OUT_DIR="$(cd "$1" && pwd)"
    # A copy that lost its modes (carried through a tool that keeps none) still runs.
    [ -x "$K" ] || chmod +x "$root"/bin/* "$root"/tests/* 2>/dev/null
    if [ ! -x "$K" ]; then
        echo "check: no kvxfer at $K (KVXFER_CHECK_ROOT names the folder of bin/kvxfer)" >&2
        return 2
    fi
    WORK="$(mktemp -d)" || return 2
    DOCS="$WORK/runs"
    mkdir -p "$DOCS" && cd "$WORK" || return 2
    if ! "$K" --version >/dev/null 2>"$WORK/start.txt"; then
        echo "check: kvxfer does not start on this host: $(head -n 1 "$WORK/start.txt")" >&2
        return 2
    fi
}

# probe_gpu: GPU (1 where the CUDA driver opens a GPU) and REASON (the probe's line).
probe_gpu() {
    GPU=0
    if [ "${KVXFER_CHECK_HANG:-}" = gpu ]; then
        GPU=1
        REASON="test hook KVXFER_CHECK_HANG=gpu: a GPU is taken as present"
    elif timeout -k 2 $((PROBE_S - 2)) "$K" info --gpu --check >"$DOCS/gpu-probe.txt" 2>&1; then
        GPU=1
        REASON="$(head -n 1 "$DOCS/gpu-probe.txt")"
    else
        REASON="$(head -n 1 "$DOCS/gpu-probe.txt")"
        [ -n "$REASON" ] || REASON="kvxfer info --gpu --check did not answer within ${PROBE_S}s"
    fi
    echo "check: $REASON" >&2
}

# run_rows: every row, each under its limit, into NAMES, NEEDS, LIMITS, STATES, FIGS, SECS,
# ERRS (one entry per row).
run_rows() {
    NAMES=() NEEDS=() LIMITS=() STATES=() FIGS=() SECS=() ERRS=()
    local r name need limit t0 rc state fig err
    for r in "${ROWS[@]}"; do
        name=$(row_field "$r" 1)
        need=$(row_field "$r" 2)
        limit=$(($(row_field "$r" 3) * ${KVXFER_CHECK_LIMIT_SCALE:-1}))
        [ "$need" != gpu ] || [ -z "${KVXFER_CHECK_TIMEOUT_S:-}" ] || limit="$KVXFER_CHECK_TIMEOUT_S"
        fig="-"
        err=""
        t0=$(now_ms)
        if [ "$need" = gpu ] && [ "$GPU" = 0 ]; then
            state="skipped"
            err="skipped: no GPU: $REASON"
        else
            echo "check: $name (limit ${limit}s)" >&2
            # SIGTERM two seconds before the limit, SIGKILL at it, to the row's process group.
            timeout -k 2 $((limit > 2 ? limit - 2 : 1)) bash "$self" --row "$name" "$DOCS" \
                </dev/null >"$DOCS/$name.log" 2>&1
            rc=$?
            if [ "$rc" = 0 ]; then
                state="pass"
                [ -s "$DOCS/$name.figure" ] && fig="$(head -n 1 "$DOCS/$name.figure")"
            elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
                state="timeout"
                err="timed out: stopped after its limit of ${limit}s"
            else
                state="fail"
                err="$(first_error "$DOCS/$name.log")"
                fig="see runs.tar.gz: $name.log"
            fi
        fi
        t0=$(($(now_ms) - t0))
        NAMES+=("$name") NEEDS+=("$need") LIMITS+=("$limit") STATES+=("$state")
        FIGS+=("$fig") SECS+=("$((t0 / 1000)).$((t0 % 1000 / 100))") ERRS+=("$err")
        echo "check: $name: $state in ${SECS[-1]}s${err:+: $err}" >&2
    done
}

# judge: STATUS (the exit status) and VERDICT (what it means, naming the rows that failed).
judge() {
    local i bad=""
    for i in "${!NAMES[@]}"; do
        case "${STATES[$i]}" in fail | timeout) bad+="${NAMES[$i]} (${STATES[$i]}) " ;; esac
    done
    if [ -n "$bad" ]; then
        STATUS=3
        VERDICT="a row failed or timed out: ${bad% }"
    elif [[ " ${STATES[*]} " == *" skipped "* ]]; then
        STATUS=1
        VERDICT="no GPU: the GPU rows were skipped, every other row passed"
    else
        STATUS=0
        VERDICT="every row passed"
    fi
}

# load_figures: F, the headline figures the rows recorded, by key.
load_figures() {
    declare -gA F=()
    local f k v
    for f in "$DOCS"/*.figures; do
        [ -e "$f" ] || continue
        while read -r k v; do F[$k]="$v"; done <"$f"
    done
}
# fig_of KEY: a headline figure, "-" when no row recorded it.
fig_of() { printf '%s' "${F[$1]:--}"; }
# shown I: what the tables show of row I: its figure when it passed, else its error.
shown() { if [ "${STATES[$1]}" = pass ]; then printf '%s' "${FIGS[$1]}"; else printf '%s' "${ERRS[$1]}"; fi; }

write_summary() {
    local i f
    echo "# kvxfer GPU check"
    echo
    echo "- host: $(uname -n), $(uname -m), kernel $(uname -r)"
    echo "- kvxfer: $("$K" --version 2>/dev/null | head -n 1)"
    echo "- GPU probe: $REASON"
    echo "- exit status $STATUS: $VERDICT"
    echo
    echo "| check | state | figure | seconds |"
    echo "|---|---|---|---|"
    for i in "${!NAMES[@]}"; do
        f="$(shown "$i")"
        echo "| ${NAMES[$i]} | ${STATES[$i]} | ${f//|/\\|} | ${SECS[$i]} |"
    done
    echo
    echo "## Figures"
    echo
    echo "- UCX over tcp, GB/s, VRAM to VRAM (tcp + cuda_copy) against DRAM to DRAM: 55M $(fig_of ucx_vram_gbps_55M) / $(fig_of ucx_dram_gbps_55M), 224M $(fig_of ucx_vram_gbps_224M) / $(fig_of ucx_dram_gbps_224M), 672M $(fig_of ucx_vram_gbps_672M) / $(fig_of ucx_dram_gbps_672M)"
    echo "- 672M VRAM by cuMemAlloc $(fig_of ucx_vram_gbps_672M) GB/s, by --vmm $(fig_of ucx_vmm_gbps_672M) GB/s"
    echo "- UCX registration of 672M in VRAM: cold $(fig_of reg_vram_672M_cold_us) us, cached $(fig_of reg_vram_672M_cached_us) us (target: $(fig_of reg_vram_672M_target_cold_us), $(fig_of reg_vram_672M_target_cached_us) us)"
    echo "- staging copy 672M, p50: device to host $(fig_of staging_device_to_host_gbps) GB/s, host to device $(fig_of staging_host_to_device_gbps) GB/s (libfabric tcp DRAM 672M: $(fig_of fi_dram_gbps_672M) GB/s)"
    echo "- tag_lat in CUDA memory, p50: 8 B $(fig_of tag_lat_cuda_p50_us_8B) us, 64 KiB $(fig_of tag_lat_cuda_p50_us_64KiB) us; tag_bw 64M $(fig_of tag_bw_cuda_gbps_64M) GB/s"
    if [ -s "$DOCS/gpu-list.txt" ]; then
        echo
        echo "## GPUs (kvxfer info --gpu)"
        echo
        echo '```'
        cat "$DOCS/gpu-list.txt"
        echo '```'
    fi
    echo
    echo "Each row's log and result documents: runs.tar.gz."
}

write_results() {
    local i k n=0 keys=()
    echo "{"
    echo "  \"schema\": \"kvxfer.device-check/v1\","
    echo "  \"host\": $(json_str "$(uname -n)"),"
    echo "  \"kvxfer\": $(json_str "$("$K" --version 2>/dev/null | head -n 1)"),"
    echo "  \"gpu\": $([ "$GPU" = 1 ] && echo true || echo false),"
    echo "  \"gpu_probe\": $(json_str "$REASON"),"
    echo "  \"exit_status\": $STATUS,"
    echo "  \"verdict\": $(json_str "$VERDICT"),"
    echo "  \"rows\": ["
    for i in "${!NAMES[@]}"; do
        printf '    {"name": %s, "needs_gpu": %s, "status": %s, "figure": %s, "seconds": %s, "limit_s": %s, "error": %s}' \
            "$(json_str "${NAMES[$i]}")" "$([ "${NEEDS[$i]}" = gpu ] && echo true || echo false)" \
            "$(json_str "${STATES[$i]}")" "$(json_val "${FIGS[$i]}")" "${SECS[$i]}" "${LIMITS[$i]}" \
            "$([ -n "${ERRS[$i]}" ] && json_str "${ERRS[$i]}" || echo null)"
        [ "$i" -lt $((${#NAMES[@]} - 1)) ] && echo "," || echo
    done
    echo "  ],"
    echo "  \"figures\": {"
    [ "${#F[@]}" -eq 0 ] || mapfile -t keys < <(printf '%s\n' "${!F[@]}" | sort)
    for k in "${keys[@]}"; do
        n=$((n + 1))
        printf '    %s: %s' "$(json_str "$k")" "$(json_val "${F[$k]}")"
        [ "$n" -lt "${#keys[@]}" ] && echo "," || echo
    done
    echo "  }"
    echo "}"
}

print_table() {
    local i
    echo
    printf '%-13s %-8s %s\n' check state figure
    for i in "${!NAMES[@]}"; do
        printf '%-13s %-8s %s\n' "${NAMES[$i]}" "${STATES[$i]}" "$(shown "$i")"
    done
    echo
    sed -n '/^## Figures/,/^## GPUs/p' "$OUT_DIR/summary.md" | grep '^- '
}

main() {
    case "${1:-}" in
        --list) list_rows; return 0 ;;
        --row) shift; run_row "$@"; return ;;
        --device-tests) printf '%s\n' "${DEVICE_TESTS[@]}" | cut -d' ' -f1; return 0 ;;
        "" | -h | --help) sed -n '2,/^set -uo pipefail/p' "$self" | sed '$d'; return 2 ;;
    esac
    start "$1" || return 2
    probe_gpu
    run_rows
    judge
    load_figures
    write_summary >"$OUT_DIR/summary.md"
    write_results >"$OUT_DIR/results.json"
    tar -czf "$OUT_DIR/runs.tar.gz" -C "$WORK" runs
    cd / && rm -rf "$WORK"
    print_table
    echo "check: exit status $STATUS: $VERDICT; summary.md, results.json, runs.tar.gz in $OUT_DIR" >&2
    return "$STATUS"
}

main "$@"
