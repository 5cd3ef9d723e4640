#!/usr/bin/env bash
# Every GPU check of kvxfer in one go, on a host with an NVIDIA GPU and a Rust toolchain (the
# nodes), ending with a summary table:
#
#   scripts/gpu-check.sh [OUT_DIR]        (result files go to OUT_DIR, default a temporary one)
#
# 1. builds kvxfer and its device tests with `--features cuda` in cargo profile `device`
#    (release code with thin LTO: a debug build is too slow for the 672M rows' limits, and its
#    figures mean little; scripts/setup.sh must have run): scripts/device-build.sh;
# 2. runs scripts/device-check.sh on them: the one list of GPU checks, the same that the
#    self-contained bundle runs on a host without a toolchain (.device/check.sh, made by
#    scripts/device-bundle.sh). Its header says what each row checks and what OUT_DIR receives
#    (summary.md, results.json, runs.tar.gz); `scripts/device-check.sh --list` lists the rows
#    with their time limits. Without a usable GPU the GPU rows read "skipped" with the reason.
# Exit status: 0 when every row passed, 1 without a GPU (the other rows passed), 2 when the
# build fails, 3 when a row failed or timed out. Env: UCX_NET_DEVICES (default lo), ITERS (5).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$(mktemp -d)}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

echo "gpu-check: building kvxfer and its device tests with --features cuda" >&2
bash "$repo/scripts/device-build.sh" device "$root" link || exit 2
KVXFER_CHECK_ROOT="$root" bash "$repo/scripts/device-check.sh" "$out"
