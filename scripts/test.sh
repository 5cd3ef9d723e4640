#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a used one: installs what is missing,
# then builds and runs every test. Tests that need a server start their own on 127.0.0.1.
#
#   scripts/test.sh              every test but the slow group
#   scripts/test.sh --slow       the same, then the GPU bundle .device/ and the slow group: tests
#                                marked #[ignore = "slow group: ..."], the spec's full-size runs
#                                and the bundle's checks, minutes each (CI runs this)
#   scripts/test.sh [--slow] -- ARGS   ARGS passed to the test binaries instead of --show-output
#
# The test targets run a few at a time (scripts/run-tests.py; TEST_JOBS, default 3), each
# printed whole when it ends, then the slowest ten; tests that busy-poll still take turns.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
slow=0
if [ "${1:-}" = "--slow" ]; then slow=1; shift; fi
# Each step's wall time, printed as it ends and summed up at the end.
started=$SECONDS
mark=$SECONDS
steps=()
step() {
    steps+=("$(printf '%6d s  %s' $((SECONDS - mark)) "$1")")
    echo "test.sh: $1 in $((SECONDS - mark)) s" >&2
    mark=$SECONDS
}
bash scripts/setup.sh --test
step "set-up"
# The MLflow environment was just installed: its tests must run, not skip.
export KVXFER_REQUIRE_MLFLOW=1
# Without arguments, what passing tests print is shown too: the SKIPPED lines (a test that needs
# what this machine lacks says so by name) and the cross-check figures of the loopback plan.
if [ $# -eq 0 ]; then set -- -- --show-output; fi
# One MLflow server for the whole suite, started while the tests build (a start is 10-60 s of
# Python imports): tests that only need a server use it, each in experiments of its own
# (KVXFER_TEST_MLFLOW_URI); a test that stops its server starts its own.
mlflow_dir="$(mktemp -d)"
trap 'bash scripts/mlflow-server.sh stop --dir "$mlflow_dir" >/dev/null 2>&1 || true; rm -rf "$mlflow_dir"' EXIT
bash scripts/mlflow-server.sh start --dir "$mlflow_dir" >"$mlflow_dir/start.out" 2>&1 &
mlflow_start=$!
cargo test --workspace --all-targets --no-run
step "test build"
if wait "$mlflow_start"; then
    KVXFER_TEST_MLFLOW_URI="$(sed -n 's/.*uri=\([^ ]*\).*/\1/p' "$mlflow_dir/start.out")"
    export KVXFER_TEST_MLFLOW_URI
    echo "test.sh: the suite's MLflow server: $(cat "$mlflow_dir/start.out")" >&2
else
    echo "test.sh: the suite's MLflow server did not start; each test starts its own:" >&2
    cat "$mlflow_dir/start.out" >&2
fi
# "$@" starts with the `--` that ends the options of a cargo test command line.
[ "${1:-}" = "--" ] && shift
status=0
# UCX's memory hooks (the events that keep its registration cache true) are patched into the
# process's code at start-up, each patch followed by a fixed grace wait spent in sched_yield:
# 0.4 s of busy CPU for every process that links UCX, every kvxfer command among them. The
# suite starts about 960 kvxfer processes, most inside the tests' busy-polling turns (80 s of
# them on this 2-core host). These steps run without the hooks (UCX_MEM_MMAP_HOOK_MODE=none):
# the UCX registration times kvxfer reports then differ from users' (a target's first
# registration took 5 us, not 550 us: with the hooks, UCX sets its cache's malloc hooks up in
# it), and no test here checks them; the slow group below runs UCX as users do. `reloc`, the
# other fast mode, deadlocks UCX 1.22 in kvxfer's one-process ucx-perf (two threads in UCX's
# malloc hook set-up). A value set by the caller wins.
hooks_by_caller="${UCX_MEM_MMAP_HOOK_MODE+yes}"
export UCX_MEM_MMAP_HOOK_MODE="${UCX_MEM_MMAP_HOOK_MODE-none}"
echo "test.sh: UCX_MEM_MMAP_HOOK_MODE=$UCX_MEM_MMAP_HOOK_MODE for the test targets and the CUDA pass" >&2
python3 scripts/run-tests.py --jobs "${TEST_JOBS:-3}" -- "$@" || status=1
step "test targets"
# The CUDA build (cudarc loads libcuda at run time): it must keep compiling, and its tests run
# here too; those that need a GPU skip by name.
cargo test --features cuda --lib --test ucx_perf --test xfer_mem --no-fail-fast -- "$@" || status=1
step "CUDA build and its tests"
# UCX's own default again, unless the caller chose the mode.
[ -n "$hooks_by_caller" ] || unset UCX_MEM_MMAP_HOOK_MODE
# No import circles between the modules of src/ (scripts/import_cycles.py prints any).
python3 scripts/import_cycles.py || status=1
if [ "$slow" = 1 ]; then
    # The self-contained GPU bundle .device/ (cargo profile `device`: release code, thin LTO),
    # which tests/device_bundle.rs checks without a GPU, then the slow group alone (`--ignored`
    # runs only the tests marked as ignored).
    bash scripts/device-bundle.sh
    step "GPU bundle"
    python3 scripts/run-tests.py --jobs 2 --ignored -- "$@" || status=1
    step "slow group"
fi
echo "test.sh: $((SECONDS - started)) s in all (exit $status):" >&2
printf '%s\n' "${steps[@]}" >&2
exit "$status"
