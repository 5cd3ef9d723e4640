#!/usr/bin/env python3
"""Runs the package's test targets side by side, a few `cargo test` processes at a time, and
prints each target's output whole when it ends, then a summary: every target's result and wall
time, the slowest ten, and the failures.

  run-tests.py [--jobs N] [--ignored] [-- TEST_ARGS...]

Cargo runs one test binary after another; most of the suite's wall time is tests waiting (on a
server starting, a peer's time-out, a child process), so targets overlap here. Tests that
busy-poll a fabric still run one at a time across all targets: tests/common.rs's fabric_lock
is a lock file, not an in-process mutex. The targets start longest first, by the wall times
of the last run (kept in target/test-times.json; a first run orders by source size). Build
first (`cargo test --all-targets --no-run`): a target compiled here would hold cargo's build
lock while the others wait. Exit status 1 when any target failed.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HISTORY = os.path.join(REPO, "target", "test-times.json")
# Each turn of tests/common.rs's fabric_lock: test, seconds held, seconds waited.
TURNS = os.path.join(REPO, "target", "test-fabric-turns.tsv")


def targets():
    """(label, cargo selector args, source path) of every test-running target of the package."""
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            cwd=REPO, check=True, capture_output=True, text=True,
        ).stdout
    )
    out = []
    for pkg in meta["packages"]:
        for t in pkg["targets"]:
            kinds = t["kind"]
            if "lib" in kinds or "rlib" in kinds:
                sel = ["--lib"]
            elif "bin" in kinds:
                sel = ["--bin", t["name"]]
            elif "test" in kinds:
                sel = ["--test", t["name"]]
            elif "bench" in kinds:
                sel = ["--bench", t["name"]]
            else:
                continue
            # The package too: a bare --lib in the workspace's root selects the root package's
            # library, so each sys crate's slot ran kvxfer's unit tests again and its own never.
            sel = ["-p", pkg["name"], *sel]
            label = os.path.relpath(t["src_path"], REPO)
            out.append((label, sel, t["src_path"]))
    return out


def ordered(ts):
    """Longest first: last run's wall time, else the source's size as a stand-in."""
    try:
        with open(HISTORY) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = {}

    def key(t):
        label, _, src = t
        if label in last:
            return (1, last[label])
        return (0, os.path.getsize(src))

    return sorted(ts, key=key, reverse=True)


def print_turns():
    """The busy-polling tests' turns: their sum bounds the suite's wall time from below."""
    turns = []
    with open(TURNS) as f:
        for line in f:
            w = line.rstrip("\n").split("\t")
            if len(w) == 3:
                turns.append((w[0], float(w[1]), float(w[2])))
    if not turns:
        return
    held = sum(t[1] for t in turns)
    print(f"\nrun-tests.py: {len(turns)} turns of the tests that busy-poll (one at a time), "
          f"{held:.1f} s held in all; the longest:")
    for name, h, _ in sorted(turns, key=lambda t: -t[1])[:10]:
        print(f"  {h:7.1f} s  {name}")


def main(argv):
    jobs, ignored, test_args = 3, False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--jobs":
            jobs = int(argv[i + 1])
            i += 2
        elif a == "--ignored":
            ignored = True
            i += 1
        elif a == "--":
            test_args = argv[i + 1:]
            break
        else:
            sys.exit(f"run-tests.py: unknown argument {a!r} (usage: run-tests.py [--jobs N] [--ignored] [-- TEST_ARGS])")
    if jobs < 1:
        sys.exit("run-tests.py: --jobs must be at least 1")
    if ignored:
        test_args = test_args + ["--ignored"]
    queue = ordered(targets())
    os.makedirs(os.path.dirname(TURNS), exist_ok=True)
    open(TURNS, "w").close()
    os.environ["KVXFER_TEST_FABRIC_LOG"] = TURNS
    lock = threading.Lock()
    results = []
    start = time.monotonic()

    def run_one(label, sel):
        with tempfile.TemporaryFile() as log:
            t0 = time.monotonic()
            rc = subprocess.run(
                ["cargo", "test", "--no-fail-fast", *sel, "--", *test_args],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            ).returncode
            took = time.monotonic() - t0
            log.seek(0)
            text = log.read().decode(errors="replace")
        with lock:
            results.append((label, rc, took))
            verdict = "ok" if rc == 0 else f"FAILED (exit {rc})"
            done = time.monotonic() - start
            print(f"==== {label}: {verdict} in {took:.1f} s ({len(results)} done, {done:.0f} s)", flush=True)
            sys.stdout.write(text)
            sys.stdout.flush()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                label, sel, _ = queue.pop(0)
            run_one(label, sel)

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    if not ignored:
        os.makedirs(os.path.dirname(HISTORY), exist_ok=True)
        with open(HISTORY, "w") as f:
            json.dump({label: round(took, 1) for label, _, took in results}, f, indent=1)
    print_turns()
    failed = [r for r in results if r[1] != 0]
    print(f"\nrun-tests.py: {len(results)} targets in {wall:.1f} s, {jobs} at a time; the slowest:")
    for label, rc, took in sorted(results, key=lambda r: -r[2])[:10]:
        print(f"  {took:7.1f} s  {label}")
    if failed:
        print("run-tests.py: FAILED: " + ", ".join(label for label, _, _ in failed))
        return 1
    print("run-tests.py: every target passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
