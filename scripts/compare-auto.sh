#!/usr/bin/env bash
# The loopback plan's patterns that use `"iterations": "auto"`, run with the fixed counts they had
# before and with auto, interleaved (the order alternates each round): each pattern's wall time
# and the precision its results reached (the widest median interval among its results, +-% of
# the median, as every result's `precision` block states it), the totals, and whether auto
# reached the same or better precision on every pattern in at most half the time. `timed` is
# the seconds of timed iterations (iterations x mean transfer time); the rest of a pattern's
# time (process start, connections, registration, warm-up) both variants pay, which bounds
# what auto can save.
#
# Usage: scripts/compare-auto.sh   (ROUNDS=3 interleaved rounds)
# Env: KVXFER (the binary; default target/release/kvxfer, rebuilt first unless BUILD=0; a KVXFER
# given is used as it is), PLAN (plans/loopback.json), FIXED (the fixed counts of the auto
# patterns, id=N,...; default the counts the loopback plan had), ALL=1 (run every pattern of the
# plan, not only the auto ones). Timings on a shared machine are noisy: compare within one run.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${KVXFER:-} ]]; then BUILD=0; fi
KVXFER=${KVXFER:-$HERE/target/release/kvxfer}
PLAN=${PLAN:-$HERE/plans/loopback.json}
FIXED=${FIXED:-pll-lo-kvxfer-xfer-tcp=20,pll-lo-kvxfer-xfer-shm=20,pll-lo-kvxfer-xfer-ucx-tcp=20,pll-lo-kv-profile-tcp=5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ${BUILD:-1} == 1 ]]; then
    (cd "$HERE" && cargo build --release --quiet)
fi
[[ -x $KVXFER ]] || { echo "compare-auto: $KVXFER is not an executable" >&2; exit 1; }
command -v python3 >/dev/null || { echo "compare-auto: python3 is required" >&2; exit 1; }

# The two variants of the plan, and the ids of the auto patterns.
ids=$(python3 - "$PLAN" "$FIXED" "$work" <<'EOF'
import json, sys
plan, fixed, work = sys.argv[1], sys.argv[2], sys.argv[3]
counts = dict((k, int(v)) for k, v in (x.split("=") for x in fixed.split(",") if x))
auto = json.load(open(plan))
ids = [p["id"] for l in auto["layers"] for p in l["patterns"] if p["params"].get("iterations") == "auto"]
missing = [i for i in ids if i not in counts]
if missing:
    sys.exit("compare-auto: FIXED gives no count for " + ", ".join(missing))
fixed_plan = json.loads(json.dumps(auto))
for l in fixed_plan["layers"]:
    for p in l["patterns"]:
        if p["id"] in counts:
            p["params"]["iterations"] = counts[p["id"]]
            for k in ("precision_pct", "max_time_s"):
                p["params"].pop(k, None)
json.dump(auto, open(f"{work}/auto.json", "w"), indent=2)
json.dump(fixed_plan, open(f"{work}/fixed.json", "w"), indent=2)
print(",".join(ids))
EOF
)
[[ -n $ids ]] || { echo "compare-auto: $PLAN has no pattern with \"iterations\": \"auto\"" >&2; exit 1; }
select=(--pattern "$ids")
[[ ${ALL:-0} == 1 ]] && select=()

for r in $(seq 1 "$ROUNDS"); do
    order=(fixed auto)
    (( r % 2 == 0 )) && order=(auto fixed)
    for v in "${order[@]}"; do
        echo "compare-auto: round $r, $v" >&2
        "$KVXFER" run --plan "$work/$v.json" "${select[@]}" --role one-host \
            --templates "$HERE/templates" --out "$work/$v-r$r" --state "$work/state-$v.json" \
            >/dev/null 2>"$work/$v-r$r.log" || echo "compare-auto: round $r $v: a pattern failed (see its log)" >&2
    done
done

python3 - "$work" "$ROUNDS" <<'EOF'
import glob, json, os, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])

def round_of(v, r):
    """Per pattern: (seconds, widest half-width %, iterations, timed seconds) of one variant's
    round; the timed seconds are the results' iterations times their mean transfer time."""
    d = f"{work}/{v}-r{r}"
    try:
        run = json.load(open(f"{d}/plan-run.json"))
    except OSError:
        return None, {}
    out = {}
    for p in run["patterns"]:
        widths, iters, timed = [], 0, 0.0
        for f in glob.glob(f"{d}/*.json"):
            try:
                doc = json.load(open(f))
            except ValueError:
                continue
            if doc.get("pattern_id") != p["pattern"] or doc.get("tool") != "kvxfer":
                continue
            for res in doc.get("results", []):
                pr = res.get("extra", {}).get("precision") or {}
                if pr.get("half_width_pct") is not None:
                    widths.append(pr["half_width_pct"])
                iters += res.get("iterations", 0)
                timed += res.get("iterations", 0) * (res.get("transfer_time_ms") or 0.0) / 1e3
        out[p["pattern"]] = (p["seconds"], max(widths) if widths else None, iters, timed)
    return run["total_seconds"], out

data = {v: [round_of(v, r) for r in range(1, rounds + 1)] for v in ("fixed", "auto")}
ids = sorted({i for v in data.values() for _, ps in v for i in ps})
med = lambda xs: statistics.median(xs) if xs else None
fmt = lambda x, f="{:.1f}": "-" if x is None else f.format(x)
print(f"{'pattern':34} {'fixed s':>8} {'timed':>6} {'+-% worst':>10} {'iters':>7}   "
      f"{'auto s':>8} {'timed':>6} {'+-% worst':>10} {'iters':>7}")
better = True
for i in ids:
    row = {}
    for v in ("fixed", "auto"):
        got = [ps[i] for _, ps in data[v] if i in ps]
        row[v] = (med([g[0] for g in got]), max((g[1] for g in got if g[1] is not None), default=None),
                  med([g[2] for g in got]), med([g[3] for g in got]))
    f, a = row["fixed"], row["auto"]
    if f[1] is not None and (a[1] is None or a[1] > max(f[1], 1.0)):
        better = False
    print(f"{i:34} {fmt(f[0]):>8} {fmt(f[3], '{:.2f}'):>6} {fmt(f[1], '{:.2f}'):>10} {fmt(f[2], '{:.0f}'):>7}   "
          f"{fmt(a[0]):>8} {fmt(a[3], '{:.2f}'):>6} {fmt(a[1], '{:.2f}'):>10} {fmt(a[2], '{:.0f}'):>7}")
tot = {v: med([t for t, _ in data[v] if t is not None]) for v in ("fixed", "auto")}
print(f"total wall time (median of {rounds} rounds): fixed {fmt(tot['fixed'])} s, auto {fmt(tot['auto'])} s")
if tot["fixed"] and tot["auto"]:
    half = tot["auto"] <= tot["fixed"] / 2
    print(f"auto/fixed time {tot['auto'] / tot['fixed']:.2f}: {'at most' if half else 'more than'} half; "
          f"precision {'the same or better (or within the 1 % target) on every pattern' if better else 'worse on at least one pattern'}")
# What auto cannot save: a pattern's time outside its timed iterations (process start,
# connections, registration, warm-up) is paid by both variants alike.
fixed_timed = med([sum(g[3] for g in ps.values()) for _, ps in data["fixed"] if ps])
if tot["fixed"] and fixed_timed is not None:
    setup = tot["fixed"] - fixed_timed
    print(f"fixed: {fixed_timed:.2f} s of {tot['fixed']:.1f} s in timed iterations; the other "
          f"{setup:.1f} s (start, connections, warm-up) auto pays too"
          + (", so no auto run can take at most half the time" if setup > tot["fixed"] / 2 else ""))
print("fixed counts run in one batch and state their samples' interval alone; auto runs go in blocks "
      "(and, on xfer, pingpong and ucx-perf, in 6 rounds on fresh connections) and state it widened "
      "to the blocks' and the rounds' (the drift during the run, the spread between connections), "
      "so auto's +-% is the stricter")
EOF
