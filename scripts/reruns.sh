#!/usr/bin/env bash
# Runs one kvxfer command several times back to back, each in a fresh process, and prints
# whether the runs agree with the error bars they state (scripts/reruns.py): per size, each
# run's median, its interval and what stopped it, and how many of the other runs' medians
# each interval holds.
#
#   scripts/reruns.sh [RUNS] -- KVXFER_ARGS...        (RUNS default 5)
#   e.g. scripts/reruns.sh 5 -- pingpong --provider shm --sizes 64,1M,10M --iterations auto
#
# Env: KVXFER (the binary; default target/release/kvxfer, built if missing), KEEP (a folder
# that keeps the documents, run-1.json ...). Run it on an idle machine: busy-polling runs
# need both cores.
set -euo pipefail

runs=5
if [[ ${1:-} != -- ]]; then runs=${1:?usage: reruns.sh [RUNS] -- KVXFER_ARGS...}; shift; fi
[[ ${1:-} == -- ]] || { echo "usage: reruns.sh [RUNS] -- KVXFER_ARGS..." >&2; exit 2; }
shift
[[ $runs =~ ^[0-9]+$ && $runs -ge 2 ]] || { echo "reruns: RUNS must be 2 or more" >&2; exit 2; }
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kvxfer=${KVXFER:-$repo/target/release/kvxfer}
[ -n "${KVXFER:-}" ] || [ -x "$kvxfer" ] || (cd "$repo" && cargo build --release --quiet)
[ -x "$kvxfer" ] || { echo "reruns: $kvxfer is not an executable" >&2; exit 1; }
out=${KEEP:-$(mktemp -d)}
mkdir -p "$out"
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$out"' EXIT

for r in $(seq 1 "$runs"); do
    start=$(date +%s%N)
    "$kvxfer" "$@" --json "$out/run-$r.json" >"$out/run-$r.txt" 2>&1 \
        || { echo "reruns: run $r failed:" >&2; tail -3 "$out/run-$r.txt" >&2; exit 1; }
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf 'reruns: run %d of %d took %d.%03d s (load %s)\n' "$r" "$runs" $((ms / 1000)) \
        $((ms % 1000)) "$(cut -d' ' -f1 /proc/loadavg)" >&2
done
files=()
for r in $(seq 1 "$runs"); do files+=("$out/run-$r.json"); done
python3 "$repo/scripts/reruns.py" "${files[@]}"
