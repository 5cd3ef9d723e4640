#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a used one: installs what is missing,
# then builds and runs every test. Tests that need a server start their own on 127.0.0.1.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh --test
# The MLflow environment was just installed: its tests must run, not skip.
export KVXFER_REQUIRE_MLFLOW=1
# Without arguments, what passing tests print is shown too: the SKIPPED lines (a test that needs
# what this machine lacks says so by name) and the cross-check figures of the loopback plan.
if [ $# -eq 0 ]; then set -- -- --show-output; fi
# The self-contained GPU bundle .device/ (cargo profile `device`: release code, thin LTO), which
# tests/device_bundle.rs checks without a GPU.
bash scripts/device-bundle.sh
cargo test --workspace --all-targets --no-fail-fast "$@"
# The CUDA build (cudarc loads libcuda at run time): it must keep compiling, and its tests run
# here too; those that need a GPU skip by name.
cargo test --features cuda --lib --test ucx_perf --test xfer_mem --no-fail-fast "$@"
# No import circles between the modules of src/ (scripts/import_cycles.py prints any).
python3 scripts/import_cycles.py
