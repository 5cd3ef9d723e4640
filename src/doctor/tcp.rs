//! TCP: slow start after idle, congestion control, the socket buffer maxima and the MTU of
//! the interface the control address uses, each with what it means for the figures.

use std::net::{IpAddr, Ipv4Addr};

use super::{bytes, list, Ctx, Finding, PatternNeed};

/// A round trip within an AWS placement group, for what a window allows (100 us).
const RTT_S: f64 = 100e-6;

pub(super) fn check(c: &Ctx<'_>, peer: Option<IpAddr>) -> Vec<Finding> {
    vec![slow_start(c), congestion(c), buffers(c), mtu(c, peer)]
}

fn slow_start(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "tcp.slow_start_after_idle";
    let rel = "sys/net/ipv4/tcp_slow_start_after_idle";
    let Some(v) = c.host.proc_number(rel) else {
        return Finding::skip(CHECK, format!("no {}", c.host.proc_path(rel).display()));
    };
    let evidence = format!("{v} ({})", c.host.proc_path(rel).display());
    let affected = c.ids(PatternNeed::slow_start);
    if v == 0 {
        let meaning = if affected.is_empty() {
            String::new()
        } else {
            format!(
                "idle gaps of {} show no TCP restart (production's default 1 would)",
                list(&affected, 3)
            )
        };
        return Finding::ok(CHECK, evidence).with_action(meaning);
    }
    if c.has_plan() && affected.is_empty() {
        return Finding::ok(
            CHECK,
            format!("{evidence}; no pattern measures after idle gaps over TCP"),
        );
    }
    let whose = if affected.is_empty() {
        "figures after an idle gap over TCP".to_string()
    } else {
        format!("the idle-gap figures of {}", list(&affected, 3))
    };
    Finding::warn(
        CHECK,
        evidence,
        format!(
            "a connection idle one RTO restarts from the initial window: {whose} include that \
             slow start (the effect the slow-start claim is about); to measure without it: sysctl \
             -w net.ipv4.tcp_slow_start_after_idle=0"
        ),
    )
    .about_if(c, affected)
}

fn congestion(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "tcp.congestion_control";
    let rel = "sys/net/ipv4/tcp_congestion_control";
    let Some(cc) = c.host.proc(rel) else {
        return Finding::skip(CHECK, format!("no {}", c.host.proc_path(rel).display()));
    };
    let avail = c
        .host
        .proc("sys/net/ipv4/tcp_available_congestion_control")
        .map(|a| format!("; available {a}"))
        .unwrap_or_default();
    Finding::ok(
        CHECK,
        format!("{cc} ({}){avail}", c.host.proc_path(rel).display()),
    )
    .with_action(format!(
        "TCP figures (incast above all) are {cc}'s: compare them only with runs under {cc}"
    ))
}

/// The largest value of a `min default max` sysctl.
fn max_of(c: &Ctx<'_>, rel: &str) -> Option<u64> {
    c.host.proc(rel)?.split_whitespace().nth(2)?.parse().ok()
}

fn buffers(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "tcp.buffers";
    let (Some(r), Some(w)) = (
        max_of(c, "sys/net/ipv4/tcp_rmem"),
        max_of(c, "sys/net/ipv4/tcp_wmem"),
    ) else {
        return Finding::skip(CHECK, "no tcp_rmem / tcp_wmem under sys/net/ipv4");
    };
    let window = r.min(w);
    let cap = window as f64 / RTT_S / 1e9;
    let evidence = format!(
        "tcp_rmem max {}, tcp_wmem max {} (sys/net/ipv4)",
        bytes(r),
        bytes(w)
    );
    let meaning =
        format!("one connection moves at most one window per round trip: {cap:.1} GB/s at 100 us");
    // Below 100 Gb/s (12.5 GB/s) per connection, the window and not the link limits TCP.
    if cap < 12.5 {
        return Finding::warn(
            CHECK,
            evidence,
            format!(
                "{meaning}, under a 100 Gb/s link: raise net.ipv4.tcp_rmem / tcp_wmem max to 16 MiB"
            ),
        )
        .about_if(c, c.ids(PatternNeed::tcp));
    }
    Finding::ok(CHECK, evidence).with_action(meaning)
}

/// The interface the kernel routes `ip` through (`<proc>/net/route`, longest prefix).
pub(crate) fn route_interface(c: &Ctx<'_>, ip: Ipv4Addr) -> Option<String> {
    let table = c.host.proc("net/route")?;
    let want = u32::from(ip);
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Each address is its network-order bytes printed as one native-order word.
            let hex = |s: &str| {
                let word = u32::from_str_radix(s, 16).ok()?;
                Some(u32::from_be_bytes(word.to_ne_bytes()))
            };
            let (dest, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            let metric: u32 = f.get(6)?.parse().ok()?;
            (want & mask == dest).then(|| (mask.count_ones(), metric, f[0].to_string()))
        })
        .max_by_key(|(bits, metric, _)| (*bits, u32::MAX - metric))
        .map(|(_, _, iface)| iface)
}

/// The control interface: the route to the peer; without one, lo for a one-host plan or no
/// plan, else the default route's.
fn control_interface(c: &Ctx<'_>, peer: Option<IpAddr>) -> Option<(String, String)> {
    match peer {
        Some(ip) if ip.is_loopback() => Some(("lo".into(), format!("the peer {ip} is this host"))),
        Some(IpAddr::V4(v4)) => Some((route_interface(c, v4)?, format!("the route to {v4}"))),
        Some(IpAddr::V6(v6)) => Some(("?".into(), format!("{v6}: IPv6 routes are not read"))),
        None if c.has_plan() && c.needs.sides == 1 => Some((
            route_interface(c, Ipv4Addr::new(0, 0, 0, 0))?,
            "the default route (no --peer)".into(),
        )),
        None => Some(("lo".into(), "one host, no --peer".into())),
    }
}

fn mtu(c: &Ctx<'_>, peer: Option<IpAddr>) -> Finding {
    const CHECK: &str = "tcp.mtu";
    let Some((iface, why)) = control_interface(c, peer) else {
        return Finding::skip(
            CHECK,
            format!(
                "no route found in {}",
                c.host.proc_path("net/route").display()
            ),
        );
    };
    let rel = format!("class/net/{iface}/mtu");
    let Some(mtu) = c.host.sys(&rel).and_then(|m| m.parse::<u64>().ok()) else {
        return Finding::skip(
            CHECK,
            format!("{iface} ({why}): no {}", c.host.sys_path(&rel).display()),
        );
    };
    let evidence = format!(
        "{iface} ({why}): MTU {mtu} ({})",
        c.host.sys_path(&rel).display()
    );
    if iface == "lo" {
        return Finding::ok(CHECK, evidence)
            .with_action("the loopback: TCP figures here have no wire under them");
    }
    if mtu >= 9001 {
        return Finding::ok(CHECK, evidence).with_action("jumbo frames, as within an AWS VPC");
    }
    Finding::warn(
        CHECK,
        evidence,
        format!(
            "AWS carries 9001-byte frames within a VPC: at {mtu} TCP moves {:.0}x the packets (lower \
             throughput, more CPU); ip link set dev {iface} mtu 9001",
            9001.0 / mtu.max(1) as f64
        ),
    )
    .about_if(c, c.ids(PatternNeed::tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_an_address_is_the_longest_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("net")).unwrap();
        std::fs::write(
            proc.join("net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             ens5\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             ens5\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
             ens6\t0010A8C0\t00000000\t0001\t0\t0\t100\t00F0FFFF\t0\t0\t0\n",
        )
        .unwrap();
        let host = super::super::Host::under(dir.path(), &proc);
        let facts = super::super::tests::no_facts();
        let o = super::super::DoctorOptions::default();
        let needs = super::super::PlanNeeds::default();
        let c = Ctx {
            o: &o,
            host: &host,
            facts: &facts,
            needs: &needs,
        };
        assert_eq!(
            route_interface(&c, Ipv4Addr::new(192, 168, 0, 7)).as_deref(),
            Some("ens5")
        );
        assert_eq!(
            route_interface(&c, Ipv4Addr::new(192, 168, 16, 9)).as_deref(),
            Some("ens6")
        );
        assert_eq!(
            route_interface(&c, Ipv4Addr::new(10, 0, 0, 1)).as_deref(),
            Some("ens5")
        );
    }
}
