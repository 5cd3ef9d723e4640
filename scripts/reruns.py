#!/usr/bin/env python3
"""Whether reruns of one command agree with the error bars they state: for each message size,
each run's median (p50), the 95 % interval its `precision` block states, what stopped it, and
how often the other runs' medians fall inside it.

  reruns.py RESULT.json RESULT.json ...      (kvxfer --json documents of the same command)
  reruns.py --chance [RUNS] [ROUNDS]          (how many pairs hold by chance alone)

Prints, per size, every run and two counts: the runs whose interval holds every other run's
median, and the (interval, other run's median) pairs that hold. Intervals describe one run;
medians that move between runs by more than the intervals allow show what a single run cannot
see (the host's state when the run started, its endpoints' placement). Where every run
states its rounds' medians (`precision.rounds`), a Kruskal-Wallis test of the rounds grouped by
run says which: a small p (below 0.05) means the runs differ by more than the rounds within a
run do, so the host moved between runs; a large one means the runs are alike and a miss is the
intervals' own chance. Another run's median is itself an estimate, so even alike runs miss
each other's 95 % intervals: `--chance` simulates how often, and each size states it for its
runs. Exit 1 on a document that cannot be read or has no precision block.
"""
import json
import math
import random
import statistics
import sys

from ratios import interval


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


def chi2_sf(x, df):
    """P(X > x) for X chi-square with df degrees of freedom (df >= 1)."""
    if x <= 0:
        return 1.0
    h = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return min(1.0, math.exp(-h) * total)
    total = math.erfc(math.sqrt(h))
    term = math.sqrt(h) * math.exp(-h) / math.gamma(1.5)
    for k in range(1, (df - 1) // 2 + 1):
        total += term
        term *= h / (k + 0.5)
    return min(1.0, total)


def kruskal(groups):
    """(H, df, p) of the Kruskal-Wallis test of `groups` (lists of numbers), corrected for
    ties; None with fewer than two groups or all values equal."""
    groups = [g for g in groups if g]
    values = sorted(v for g in groups for v in g)
    n = len(values)
    if len(groups) < 2 or n < 3 or values[0] == values[-1]:
        return None
    ranks, ties, i = {}, 0.0, 0
    while i < n:
        j = i
        while j + 1 < n and values[j + 1] == values[i]:
            j += 1
        ranks[values[i]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    h = 12 / (n * (n + 1)) * sum(sum(ranks[v] for v in g) ** 2 / len(g) for g in groups)
    h = (h - 3 * (n + 1)) / (1 - ties / (n ** 3 - n))
    df = len(groups) - 1
    return h, df, chi2_sf(h, df)


def rounds_lines(got):
    """Whether the runs' rounds differ by run, and what chance alone would give runs of as
    many rounds: two lines, or none where a run states no rounds."""
    groups = [((p.get("rounds") or {}).get("p50_us") or []) for _, _, p in got]
    if any(len(g) < 2 for g in groups):
        return []
    k = kruskal(groups)
    if k is None:
        return []
    h, df, p = k
    if p < 0.05:
        what = ("the runs differ by more than their rounds do: the host moved between runs, "
                "which no interval from one run covers")
    else:
        what = "no difference between runs shown: misses fit the intervals' own chance"
    rounds = min(map(len, groups))
    return [f"  rounds by run ({sum(map(len, groups))} rounds in {len(groups)} runs): "
            f"Kruskal-Wallis H {h:.2f} on {df} df, p {p:.3g}; {what}",
            f"  by chance alone ({rounds} rounds each, all alike): "
            + chance_text(len(groups), rounds, trials=5000)]


def chance(runs=5, rounds=6, trials=20000):
    """Pairs held when every round comes from one distribution (no drift between runs): each
    run's interval the order statistics of its rounds' medians that kvxfer states (95 %,
    `ratios.interval`), its median the middle of them. Returns (mean pairs held, pairs in all,
    share of samples where at least 4 in 5 held)."""
    rng = random.Random(28)
    total = runs * (runs - 1)
    need = math.ceil(0.8 * total)
    held_sum, enough = 0, 0
    for _ in range(trials):
        rs = [[rng.gauss(0, 1) for _ in range(rounds)] for _ in range(runs)]
        meds = [statistics.median(r) for r in rs]
        ivs = [interval(r)[:2] for r in rs]
        held = sum(ivs[i][0] <= meds[j] <= ivs[i][1]
                   for i in range(runs) for j in range(runs) if j != i)
        held_sum += held
        enough += held >= need
    return held_sum / trials, total, enough / trials


def chance_text(runs, rounds, trials=20000):
    """`18.0 of 20 pairs hold on average; ...`: what [`chance`] found."""
    mean, total, share = chance(runs, rounds, trials)
    return (f"{mean:.1f} of {total} pairs hold on average; at least 4 in 5 in "
            f"{100 * share:.0f} % of samples")


def main(paths):
    if paths[:1] == ["--chance"]:
        args = paths[1:]
        try:
            runs = int(args[0]) if args else 5
            rounds = int(args[1]) if len(args) > 1 else 6
        except ValueError:
            sys.exit("usage: reruns.py --chance [RUNS] [ROUNDS]")
        if runs < 2 or rounds < 2:
            sys.exit("reruns.py: --chance takes 2 runs or more of 2 rounds or more")
        print(f"{runs} runs of {rounds} rounds, every round from one distribution: "
              + chance_text(runs, rounds))
        return
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
        for line in rounds_lines(got):
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
