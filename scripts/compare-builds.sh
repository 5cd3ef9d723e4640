#!/usr/bin/env bash
# Two kvxfer builds on one command, interleaved (old then new, then new then old, ...): each
# round's figure from each run's JSON, then the median of the per-round ratios new / old with
# its interval and verdict (scripts/ratios.py). For the effect of a change: build the tree
# before it and after it into two binaries, and measure the command the change is about.
#
#   scripts/compare-builds.sh OLD NEW [ROUNDS] -- KVXFER_ARGS...        (ROUNDS default 6)
#   e.g. scripts/compare-builds.sh /tmp/kvxfer-before target/release/kvxfer 8 -- \
#            ucx-perf -t tag_lat -s 64 -n 300000
#
# Env: FIGURE, the figure of the document's first result (default latency_us.p50; e.g.
# bandwidth_gbps); BETTER, lower or higher (default: higher for a bandwidth figure, else lower);
# TWO=1 runs each build as two processes, a target (--listen 127.0.0.1:PORT) and an initiator
# (--peer), and reads the initiator's document. Run it on an idle machine: busy-polling runs
# need both cores, and a compile beside them spoils every round.
set -euo pipefail

usage() { echo "usage: compare-builds.sh OLD NEW [ROUNDS] -- KVXFER_ARGS..." >&2; exit 2; }
[[ $# -ge 3 ]] || usage
old=$1 new=$2
shift 2
rounds=6
if [[ $1 != -- ]]; then rounds=$1; shift; fi
[[ ${1:-} == -- ]] || usage
shift
[[ $# -ge 1 ]] || usage
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 2 ]] || { echo "compare-builds: ROUNDS must be 2 or more" >&2; exit 2; }
for b in "$old" "$new"; do
    [[ -x $b ]] || { echo "compare-builds: $b is not an executable" >&2; exit 1; }
done
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
figure=${FIGURE:-latency_us.p50}
better=${BETTER:-}
if [[ -z $better ]]; then
    if [[ $figure == *bandwidth* ]]; then better=higher; else better=lower; fi
fi
[[ $better == lower || $better == higher ]] || { echo "compare-builds: BETTER is lower or higher" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

# The figure at dotted path $figure of the first result of a document.
read_figure() {
    python3 - "$1" "$figure" <<'EOF'
import json, sys
doc, path = json.load(open(sys.argv[1])), sys.argv[2]
v = (doc.get("results") or [{}])[0]
for k in path.split("."):
    v = v.get(k) if isinstance(v, dict) else None
if not isinstance(v, (int, float)) or isinstance(v, bool):
    sys.exit(f"compare-builds: {sys.argv[1]} has no number at results[0].{path}")
print(f"{v:.6g}")
EOF
}

# One run of binary $1 (label $2) with the arguments after them; prints its figure.
one() {
    local bin=$1 label=$2 json="$tmp/$2.json"
    shift 2
    rm -f "$json"
    if [[ ${TWO:-0} == 1 ]]; then
        local port
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        timeout 600 "$bin" "$@" --listen "127.0.0.1:$port" >"$tmp/$label.target" 2>&1 &
        local target=$!
        timeout 600 "$bin" "$@" --peer "127.0.0.1:$port" --json "$json" >"$tmp/$label.out" 2>&1 \
            || { cat "$tmp/$label.out" "$tmp/$label.target" >&2; echo "compare-builds: $label failed" >&2; exit 1; }
        wait "$target" || { cat "$tmp/$label.target" >&2; echo "compare-builds: $label's target failed" >&2; exit 1; }
    else
        timeout 600 "$bin" "$@" --json "$json" >"$tmp/$label.out" 2>&1 \
            || { cat "$tmp/$label.out" >&2; echo "compare-builds: $label failed" >&2; exit 1; }
    fi
    read_figure "$json"
}

olds=() news=()
printf '%-6s %14s %14s\n' round old new
for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then
        o=$(one "$old" old "$@"); n=$(one "$new" new "$@")
    else
        n=$(one "$new" new "$@"); o=$(one "$old" old "$@")
    fi
    olds+=("$o"); news+=("$n")
    printf '%-6s %14s %14s\n' "$r" "$o" "$n"
done
case $figure in
    *_us.* | *_us) unit=us ;;
    *_gbps) unit=GB/s ;;
    *_ms.* | *_ms) unit=ms ;;
    *) unit="" ;;
esac
python3 "$repo/scripts/ratios.py" "$figure" new old "$unit" "$better" -- "${news[@]}" -- "${olds[@]}"
