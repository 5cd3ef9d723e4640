#!/usr/bin/env bash
# N network namespaces as N hosts on one bridge, for multi-host tests on one machine.
#
#   scripts/netns-hosts.sh up N [PREFIX]    namespaces PREFIX1..PREFIXN (default kvx-h), each
#                                           joined by a veth pair to the bridge PREFIX-br and
#                                           holding 10.203.0.K/24 (K = 1..N); the bridge holds
#                                           10.203.0.254 in this namespace, so a server started
#                                           here on that address (etcd) serves every host
#   scripts/netns-hosts.sh down N [PREFIX]  removes them
#   scripts/netns-hosts.sh link NAME up|down  sets host NAME's link to the bridge up or down
#                                           (cuts that host off mid-run)
#
# Both directions are idempotent: up leaves what exists as it is, down removes only what is
# there. Needs root (ip netns); KVX_NET overrides the first three octets (default 10.203.0).
set -euo pipefail

usage() { sed -n '2,14p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd="$1"
net="${KVX_NET:-10.203.0}"

if [ "$cmd" = link ]; then
    name="$2"; state="${3:-}"
    case "$state" in up|down) ;; *) usage ;; esac
    # The namespace's one veth end (h<K>-eth).
    dev="$(ip -n "$name" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1 | head -n1)"
    [ -n "$dev" ] || { echo "netns-hosts.sh: no veth link in namespace $name" >&2; exit 1; }
    ip -n "$name" link set "$dev" "$state"
    exit 0
fi

n="$2"
prefix="${3:-kvx-h}"
case "$n" in ''|*[!0-9]*) echo "netns-hosts.sh: N must be a number, not $n" >&2; exit 2 ;; esac
[ "$n" -ge 1 ] && [ "$n" -le 250 ] || { echo "netns-hosts.sh: N must be 1..250" >&2; exit 2; }
br="${prefix}-br"

has_ns() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
has_link() { ip link show "$1" >/dev/null 2>&1; }

case "$cmd" in
    up)
        if ! has_link "$br"; then
            ip link add "$br" type bridge
        fi
        ip addr replace "$net.254/24" dev "$br"
        ip link set "$br" up
        for k in $(seq 1 "$n"); do
            ns="${prefix}${k}"
            # The host end is named for the namespace (15 characters at most).
            host_end="${prefix}${k}-v"
            ns_end="h${k}-eth"
            has_ns "$ns" || ip netns add "$ns"
            if ! has_link "$host_end"; then
                ip link add "$host_end" type veth peer name "$ns_end" netns "$ns"
            fi
            ip link set "$host_end" master "$br"
            ip link set "$host_end" up
            ip -n "$ns" addr replace "$net.$k/24" dev "$ns_end"
            ip -n "$ns" link set "$ns_end" up
            ip -n "$ns" link set lo up
        done
        # A veth end carries traffic (and libfabric's tcp provider offers it) only once its
        # carrier is up, a moment after `link set up`: wait for every end, at most 10 s.
        for k in $(seq 1 "$n"); do
            for try in $(seq 1 100); do
                if ip -o link show "${prefix}${k}-v" | grep -q "state UP" &&
                    ip -n "${prefix}${k}" -o link show "h${k}-eth" | grep -q "state UP"; then
                    break
                fi
                [ "$try" -lt 100 ] || { echo "netns-hosts.sh: ${prefix}${k}'s veth is not up after 10 s" >&2; exit 1; }
                sleep 0.1
            done
        done
        ;;
    down)
        for k in $(seq 1 "$n"); do
            ns="${prefix}${k}"
            has_link "${prefix}${k}-v" && ip link del "${prefix}${k}-v"
            has_ns "$ns" && ip netns del "$ns"
        done
        has_link "$br" && ip link del "$br"
        ;;
    *) usage ;;
esac
exit 0
