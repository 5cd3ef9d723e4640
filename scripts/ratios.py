#!/usr/bin/env python3
"""The verdict of a side-by-side comparison: the median of per-round ratios A / B with a
distribution-free confidence interval (order statistics of the ratios: no assumption on how
this noisy host spreads them), and what it says.

  ratios.py LABEL A_NAME B_NAME UNIT higher|lower -- A1 A2 ... -- B1 B2 ...

Round i pairs A_i with B_i (the two tools run back to back, so both meet the host's mode of
that moment). `higher` or `lower` says which is better for the figure (bandwidth, latency).
The interval is the widest pair of order statistics whose coverage is at least 95 %; with
fewer than 6 rounds no pair reaches it and the printed coverage says what the range of the
ratios covers (5 rounds: 94 %, 4: 88 %, 3: 75 %). Verdict: A is better or worse than B when
the whole interval lies on one side of 1, else no difference is shown at this many rounds;
below 90 % coverage (4 rounds or fewer) no verdict.
"""
import math
import statistics
import sys


def interval(ratios, level=0.95):
    """(low, high, coverage) of the median of `ratios`, or None with fewer than 2."""
    n = len(ratios)
    if n < 2:
        return None
    r = sorted(ratios)
    # P(Binomial(n, 1/2) <= j) for j = 0 .. n
    cdf, acc = [], 0
    for j in range(n + 1):
        acc += math.comb(n, j)
        cdf.append(acc / 2**n)
    # The k-th smallest and k-th largest cover the median with 1 - 2 P(Bin <= k - 1).
    k = 1
    while k + 1 <= n // 2 and 1 - 2 * cdf[k] >= level:
        k += 1
    return r[k - 1], r[n - k], 1 - 2 * cdf[k - 1]


def verdict(low, high, coverage, better, a_name):
    if coverage < 0.9:
        return "too few rounds for a verdict (5 reach 94 %)"
    if low > 1:
        return f"{a_name} {'faster' if better == 'higher' else 'slower'}"
    if high < 1:
        return f"{a_name} {'slower' if better == 'higher' else 'faster'}"
    return "no difference shown"


def main(argv):
    try:
        label, a_name, b_name, unit, better = argv[:5]
        rest = argv[5:]
        first = rest.index("--")
        second = rest.index("--", first + 1)
        a = [float(x) for x in rest[first + 1:second]]
        b = [float(x) for x in rest[second + 1:]]
    except (ValueError, IndexError):
        sys.exit(__doc__.split("\n\n")[1])
    if better not in ("higher", "lower"):
        sys.exit(f"ratios.py: '{better}': higher or lower")
    if not a or len(a) != len(b) or any(x <= 0 for x in b):
        sys.exit(f"ratios.py: {label}: {len(a)} and {len(b)} figures (positive B needed): "
                 "one pair per round")
    ratios = [x / y for x, y in zip(a, b)]
    med = statistics.median(ratios)
    ci = interval(ratios)
    if ci is None:
        spread = "one round: no interval"
    else:
        low, high, cov = ci
        spread = (f"{cov * 100:.0f}% interval {low:.3f}-{high:.3f}: "
                  f"{verdict(low, high, cov, better, a_name)}")
    print(f"{label}: {a_name} / {b_name} {med:.3f} (median of {len(ratios)} per-round ratios, "
          f"{better} is better; {spread}; medians {a_name} {statistics.median(a):.3f}, "
          f"{b_name} {statistics.median(b):.3f} {unit})")


if __name__ == "__main__":
    main(sys.argv[1:])
