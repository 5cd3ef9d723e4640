#!/usr/bin/env python3
"""Whether reruns of one command agree with the error bars they state: for each message size,
each run's median (p50), the 95 % interval its `precision` block states, what stopped it, and
how often the other runs' medians fall inside it.

  reruns.py RESULT.json RESULT.json ...      (kvxfer --json documents of the same command)

Prints, per size, every run and two counts: the runs whose interval holds every other run's
median, and the (interval, other run's median) pairs that hold. Intervals describe one run;
medians that move between runs by more than the intervals allow show what a single run cannot
see (the host's state when the run started, its endpoints' placement). Exit 1 on a document
that cannot be read or has no precision block.
"""
import json
import sys


def runs_of(paths):
    """[{size: (p50_us, [lo, hi], precision)}] per document."""
    out = []
    for path in paths:
        try:
            doc = json.load(open(path))
        except (OSError, ValueError) as e:
            sys.exit(f"reruns.py: {path}: {e}")
        sizes = {}
        for r in doc.get("results", []):
            p = (r.get("extra") or {}).get("precision")
            lat = r.get("latency_us") or {}
            if not p or "p50_interval_us" not in p or "p50" not in lat:
                continue
            sizes[r["message_size"]] = (lat["p50"], p["p50_interval_us"], p)
        if not sizes:
            sys.exit(f"reruns.py: {path}: no result states a median's interval")
        out.append(sizes)
    return out


def main(paths):
    if len(paths) < 2:
        sys.exit("usage: reruns.py RESULT.json RESULT.json ... (two runs or more)")
    runs = runs_of(paths)
    for size in sorted({s for r in runs for s in r}):
        got = [r[size] for r in runs if size in r]
        meds = [g[0] for g in got]
        held_all, pairs, total = 0, 0, 0
        lines = []
        for i, (m, (lo, hi), p) in enumerate(got):
            others = [o for j, o in enumerate(meds) if j != i]
            inside = sum(lo <= o <= hi for o in others)
            pairs += inside
            total += len(others)
            held_all += inside == len(others)
            blocks = p.get("blocks")
            how = f"{p['iterations']} iterations"
            if blocks:
                how += f" in {blocks['count']} blocks"
            lines.append(f"  run {i + 1}: p50 {m:.4g} us [{lo:.4g}, {hi:.4g}] "
                         f"+-{p.get('half_width_pct', float('nan')):.2f} %, {how}, "
                         f"stopped by {p['stopped_by']}; holds {inside} of {len(others)}")
        spread = 100 * (max(meds) - min(meds)) / min(meds)
        print(f"size {size}: {held_all} of {len(got)} runs' intervals hold every other median; "
              f"{pairs} of {total} pairs hold; medians spread {spread:.1f} %")
        print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
