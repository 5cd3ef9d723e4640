//! One side's view of a timed span: which devices' counters moved, by how much against the
//! payload it sent and received, the retransmissions, and what the span cost the CPU.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run::path::counters::{Device, DeviceClass, Reading, Snapshot, TcpCounters, Unknown};
use crate::run::sched::ThreadSched;

/// A device carried part of the payload when it moved at least this fraction of it.
pub const CARRIER_FRACTION: f64 = 0.05;
/// Bytes a packet may add to its payload (Ethernet, IP and TCP headers with options) before
/// a device's excess over the payload points at other traffic.
const HEADER_BYTES: u64 = 100;
/// Excess over payload and headers beyond which other traffic is likely.
const OTHER_TRAFFIC_SLACK: f64 = 0.15;
/// Carriers that moved less than this part of the payload did not carry all of it.
pub const SHORT_RATIO: f64 = 0.9;

/// What a side moved over its timed span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Payload {
    /// Payload bytes this side sent.
    pub sent: u64,
    /// Payload bytes this side received.
    pub received: u64,
    /// The timed iterations' own time, ns, when this side knows it (the time its bandwidth is
    /// computed over); the span between the readings otherwise.
    pub timed_ns: Option<u64>,
}

impl Payload {
    /// Sent and received.
    pub fn total(&self) -> u64 {
        self.sent.saturating_add(self.received)
    }
}

/// Where a side's payload went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// Through at least one network device other than the loopback.
    Network,
    /// Through the loopback interface only.
    Local,
    /// Through no network device: shared memory or a same-host copy.
    None,
    /// The counters cannot tell.
    Unknown,
}

impl PathKind {
    /// The kind's name in results.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Network => "network",
            PathKind::Local => "local",
            PathKind::None => "none",
            PathKind::Unknown => "unknown",
        }
    }
}

/// One device's traffic over the span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMove {
    /// Its name (`lo`, `eth0`, `efa0`).
    pub name: String,
    /// Interface or RDMA port.
    pub class: DeviceClass,
    /// The loopback interface.
    pub loopback: bool,
    /// Bytes sent.
    pub tx_bytes: Option<u64>,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Packets sent.
    pub tx_packets: Option<u64>,
    /// Packets received.
    pub rx_packets: Option<u64>,
    /// Bytes it moved, both ways (the loopback counts each packet as sent and as received: its
    /// sent bytes alone).
    pub bytes: Option<u64>,
    /// `bytes` over the side's payload.
    pub ratio: Option<f64>,
    /// Its part of what the carrying devices moved (carriers only).
    pub share: Option<f64>,
    /// It moved at least 5 % of the payload.
    pub carried: bool,
    /// Line rate, 10^9 bits/s.
    pub line_rate_gbit_s: Option<f64>,
    /// Counters that could not be read, with the reason.
    pub unknown: Vec<String>,
    /// RDMA hardware and port counters that moved, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
}

/// A retransmission (or loss) counter that moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retransmission {
    /// The device, or `tcp` for the host's TCP counters.
    pub device: String,
    /// The counter's name.
    pub counter: String,
    /// Its change over the span.
    pub count: u64,
}

/// What the span cost the CPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuCost {
    /// This process in user mode, s.
    pub user_s: Option<f64>,
    /// This process in the kernel, s.
    pub system_s: Option<f64>,
    /// Both, s.
    pub process_s: Option<f64>,
    /// Process CPU seconds per 10^9 payload bytes (sent and received).
    pub cpu_s_per_gb: Option<f64>,
    /// The host's CPUs' busy fraction over the span (every process counts).
    pub host_busy_fraction: Option<f64>,
    /// The host's CPUs.
    pub host_cpus: Option<usize>,
}

/// What one side's counters say about its timed span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideView {
    /// `initiator`, `target`, `rank 2 (initiator)`.
    pub role: String,
    /// The host whose counters these are.
    pub host: String,
    /// Payload bytes this side sent.
    pub sent_bytes: u64,
    /// Payload bytes this side received.
    pub received_bytes: u64,
    /// Seconds between the readings.
    pub span_s: f64,
    /// Where the payload went.
    pub kind: PathKind,
    /// The devices that carried it.
    pub carriers: Vec<String>,
    /// Bytes the carriers moved.
    pub bytes: Option<u64>,
    /// `bytes` over the payload.
    pub bytes_ratio: Option<f64>,
    /// The carriers' summed line rate, 10^9 bits/s.
    pub line_rate_gbit_s: Option<f64>,
    /// The payload's rate in its busier direction, 10^9 bits/s.
    pub achieved_gbit_s: Option<f64>,
    /// `achieved_gbit_s` over `line_rate_gbit_s`.
    pub line_rate_fraction: Option<f64>,
    /// The carriers moved more than the payload and its headers: other traffic shared them.
    pub other_traffic_likely: bool,
    /// Every device found, carriers first.
    pub devices: Vec<DeviceMove>,
    /// Retransmission and loss counters that moved (the host's TCP counters as `tcp`).
    pub retransmissions: Vec<Retransmission>,
    /// The host's TCP counters over the span.
    pub tcp: Option<TcpCounters>,
    /// What the span cost the CPU.
    pub cpu: CpuCost,
    /// How long each reading took (before, after), us.
    pub read_us: Vec<f64>,
    /// What the figures cannot say alone.
    pub notes: Vec<String>,
    /// What the scheduler did to the thread that drove this side's loop over the span, on its
    /// way to the result's `scheduling` (ping-pong sides, one thread each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<ThreadSched>,
}

/// A counter's change over the span.
fn delta(before: &Reading, after: &Reading) -> Reading {
    match (before, after) {
        (Ok(b), Ok(a)) if a >= b => Ok(a - b),
        (Ok(_), Ok(_)) => Err(Unknown::WentBack),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    }
}

/// A 32-bit port counter at its maximum has stopped counting.
fn saturated(name: &str, r: &Reading) -> bool {
    name.starts_with("port_") && *r == Ok(u32::MAX as u64)
}

/// Counters that count retransmissions, timeouts and lost peers.
fn is_retransmission(name: &str) -> bool {
    [
        "retrans",
        "timeout",
        "unresponsive",
        "impaired",
        "out_of_sequence",
        "seq_err",
    ]
    .iter()
    .any(|k| name.contains(k))
}

/// The first of `names` that the device has, as (value, the reason it has none).
fn pick(dev: &Device, d: &[Reading], names: &[(&str, u64)]) -> Result<u64, String> {
    let mut why = None;
    for (n, scale) in names {
        let Some(i) = dev.index(n) else { continue };
        match &d[i] {
            Ok(v) => return Ok(v.saturating_mul(*scale)),
            Err(e) if why.is_none() => why = Some(format!("{n}: {e}")),
            Err(_) => {}
        }
    }
    Err(why.unwrap_or_else(|| format!("{}: {}", names[0].0, Unknown::Missing)))
}

/// One device's traffic from its readings before and after.
fn device_move(dev: &Device, before: &[Reading], after: &[Reading]) -> DeviceMove {
    let d: Vec<Reading> = dev
        .files
        .iter()
        .enumerate()
        .map(|(i, (name, _))| match (before.get(i), after.get(i)) {
            (Some(b), Some(a)) if saturated(name, b) || saturated(name, a) => {
                Err(Unknown::Saturated)
            }
            (Some(b), Some(a)) => delta(b, a),
            _ => Err(Unknown::Missing),
        })
        .collect();
    let mut unknown = Vec::new();
    // `listed`: counters every device of its class has, named when missing; an RDMA port's
    // packet counters are optional (not every driver keeps them).
    let mut take = |names: &[(&str, u64)], listed: bool| match pick(dev, &d, names) {
        Ok(v) => Some(v),
        Err(why) => {
            let present = names.iter().any(|(n, _)| dev.index(n).is_some());
            if listed || present {
                unknown.push(why);
            }
            None
        }
    };
    // RDMA ports: the driver's byte counters, else the port counters (4-byte words).
    let (tx, rx, txp, rxp) = match dev.class {
        DeviceClass::Net => (
            take(&[("tx_bytes", 1)], true),
            take(&[("rx_bytes", 1)], true),
            take(&[("tx_packets", 1)], true),
            take(&[("rx_packets", 1)], true),
        ),
        DeviceClass::Rdma => (
            take(&[("tx_bytes", 1), ("port_xmit_data", 4)], true),
            take(&[("rx_bytes", 1), ("port_rcv_data", 4)], true),
            take(&[("tx_pkts", 1), ("port_xmit_packets", 1)], false),
            take(&[("rx_pkts", 1), ("port_rcv_packets", 1)], false),
        ),
    };
    let mut counters = BTreeMap::new();
    if dev.class == DeviceClass::Rdma {
        for ((name, _), r) in dev.files.iter().zip(&d) {
            match r {
                Ok(0) => {}
                Ok(v) => {
                    counters.insert(name.clone(), *v);
                }
                Err(e) => {
                    let why = format!("{name}: {e}");
                    if !unknown.contains(&why) {
                        unknown.push(why);
                    }
                }
            }
        }
    }
    let bytes = if dev.loopback {
        tx
    } else {
        tx.zip(rx).map(|(t, r)| t.saturating_add(r))
    };
    DeviceMove {
        name: dev.name.clone(),
        class: dev.class,
        loopback: dev.loopback,
        tx_bytes: tx,
        rx_bytes: rx,
        tx_packets: txp,
        rx_packets: rxp,
        bytes,
        ratio: None,
        share: None,
        carried: false,
        line_rate_gbit_s: dev.line_rate_bps.map(|b| b / 1e9),
        unknown,
        counters,
    }
}

/// The CPU cost of the span between `before` and `after` for `payload` bytes.
fn cpu_cost(before: &Snapshot, after: &Snapshot, payload: u64) -> CpuCost {
    let proc = before
        .process_cpu
        .zip(after.process_cpu)
        .filter(|(b, a)| a.user_us >= b.user_us && a.system_us >= b.system_us)
        .map(|(b, a)| {
            (
                (a.user_us - b.user_us) as f64 / 1e6,
                (a.system_us - b.system_us) as f64 / 1e6,
            )
        });
    let process_s = proc.map(|(u, s)| u + s);
    CpuCost {
        user_s: proc.map(|p| p.0),
        system_s: proc.map(|p| p.1),
        process_s,
        cpu_s_per_gb: process_s
            .filter(|_| payload > 0)
            .map(|s| s / (payload as f64 / 1e9)),
        host_busy_fraction: before
            .host_cpu
            .zip(after.host_cpu)
            .and_then(|(b, a)| a.busy_since(&b)),
        host_cpus: after.host_cpu.map(|h| h.cpus),
    }
}

/// Each device's move between `before` and `after`, its ratio of `total` and whether it
/// carried the payload, with the carriers' shares; carriers first, each group by name.
fn device_moves(
    devices: &[Device],
    before: &Snapshot,
    after: &Snapshot,
    total: u64,
) -> (Vec<DeviceMove>, u64) {
    let mut moves: Vec<DeviceMove> = devices
        .iter()
        .enumerate()
        .map(|(i, dev)| {
            let none = Vec::new();
            let b = before.devices.get(i).unwrap_or(&none);
            let a = after.devices.get(i).unwrap_or(&none);
            device_move(dev, b, a)
        })
        .collect();
    for m in &mut moves {
        m.ratio = m
            .bytes
            .filter(|_| total > 0)
            .map(|b| b as f64 / total as f64);
        m.carried = m.ratio.is_some_and(|r| r >= CARRIER_FRACTION);
    }
    let carried: u64 = moves
        .iter()
        .filter(|m| m.carried)
        .filter_map(|m| m.bytes)
        .sum();
    for m in moves.iter_mut().filter(|m| m.carried) {
        m.share = m
            .bytes
            .filter(|_| carried > 0)
            .map(|b| b as f64 / carried as f64);
    }
    moves.sort_by(|a, b| b.carried.cmp(&a.carried).then_with(|| a.name.cmp(&b.name)));
    (moves, carried)
}

/// What kind of path the moves show for `total` bytes, noting why where it is unknown.
fn path_kind(moves: &[DeviceMove], total: u64, notes: &mut Vec<String>) -> PathKind {
    let carriers: Vec<&DeviceMove> = moves.iter().filter(|m| m.carried).collect();
    let blind: Vec<&str> = moves
        .iter()
        .filter(|m| m.bytes.is_none())
        .map(|m| m.name.as_str())
        .collect();
    let kind = if total == 0 {
        notes.push("no payload moved in the span: nothing to attribute".into());
        PathKind::Unknown
    } else if !carriers.is_empty() {
        if carriers.iter().all(|m| m.loopback) {
            PathKind::Local
        } else {
            PathKind::Network
        }
    } else if moves.is_empty() {
        notes.push("no network device found in sysfs".into());
        PathKind::Unknown
    } else if !blind.is_empty() {
        PathKind::Unknown
    } else {
        PathKind::None
    };
    if !blind.is_empty() {
        notes.push(format!(
            "traffic unknown on {} (counters unreadable: see devices[].unknown)",
            blind.join(", ")
        ));
    }
    kind
}

/// Whether the carriers moved more than the payload and its headers explain (other traffic
/// likely), noting that or a ratio short of the payload.
fn judge_ratio(
    carriers: &[&DeviceMove],
    total: u64,
    ratio: Option<f64>,
    bytes: Option<u64>,
    notes: &mut Vec<String>,
) -> bool {
    let packets: u64 = carriers
        .iter()
        .map(|m| {
            let p = m.tx_packets.unwrap_or(0);
            if m.loopback {
                p
            } else {
                p + m.rx_packets.unwrap_or(0)
            }
        })
        .sum();
    let allowed = total as f64 * (1.0 + OTHER_TRAFFIC_SLACK) + (packets * HEADER_BYTES) as f64;
    let other_traffic_likely = bytes.is_some_and(|b| b as f64 > allowed);
    if other_traffic_likely {
        notes.push(format!(
            "the carriers moved {:.2}x the payload, more than its headers explain: other \
             traffic on the same devices is likely (the counters are host-wide)",
            ratio.unwrap_or(0.0)
        ));
    }
    if ratio.is_some_and(|r| r < SHORT_RATIO) {
        notes.push(format!(
            "the carriers moved {:.2}x the payload, less than it: the rest moved through no \
             network device, or what they moved is other traffic",
            ratio.unwrap_or(0.0)
        ));
    }
    other_traffic_likely
}

/// Every retransmission counter that moved, the devices' and the host's TCP.
fn retransmissions(moves: &[DeviceMove], tcp: Option<&TcpCounters>) -> Vec<Retransmission> {
    let mut out: Vec<Retransmission> = moves
        .iter()
        .flat_map(|m| {
            m.counters
                .iter()
                .filter(|(n, _)| is_retransmission(n))
                .map(|(n, &c)| Retransmission {
                    device: m.name.clone(),
                    counter: n.clone(),
                    count: c,
                })
        })
        .collect();
    if let Some(t) = tcp.filter(|t| t.retrans_segs > 0) {
        out.push(Retransmission {
            device: "tcp".into(),
            counter: "RetransSegs".into(),
            count: t.retrans_segs,
        });
    }
    out
}

impl SideView {
    /// The view of side `role` on `host` from the readings `before` and `after` of the devices
    /// `devices` (in the order the readings hold them), for `payload`.
    pub fn of(
        role: &str,
        host: &str,
        devices: &[Device],
        before: &Snapshot,
        after: &Snapshot,
        payload: Payload,
    ) -> SideView {
        let total = payload.total();
        let (moves, carried) = device_moves(devices, before, after, total);
        let carriers: Vec<&DeviceMove> = moves.iter().filter(|m| m.carried).collect();
        let mut notes = Vec::new();
        let kind = path_kind(&moves, total, &mut notes);
        let bytes = (!carriers.is_empty()).then_some(carried);
        let ratio = bytes.filter(|_| total > 0).map(|b| b as f64 / total as f64);
        let other_traffic_likely = judge_ratio(&carriers, total, ratio, bytes, &mut notes);
        let rates: Vec<Option<f64>> = carriers.iter().map(|m| m.line_rate_gbit_s).collect();
        let line_rate = (!rates.is_empty() && rates.iter().all(Option::is_some))
            .then(|| rates.iter().flatten().sum::<f64>());
        let span_s = after.at.saturating_duration_since(before.at).as_secs_f64();
        let timed_s = payload.timed_ns.map_or(span_s, |ns| ns as f64 / 1e9);
        let busier = payload.sent.max(payload.received);
        let achieved = (timed_s > 0.0 && busier > 0).then(|| busier as f64 * 8.0 / timed_s / 1e9);
        let tcp = before.tcp.zip(after.tcp).map(|(b, a)| a.since(&b));
        let retransmissions = retransmissions(&moves, tcp.as_ref());
        let carriers = carriers.iter().map(|m| m.name.clone()).collect();
        SideView {
            role: role.to_string(),
            host: host.to_string(),
            sent_bytes: payload.sent,
            received_bytes: payload.received,
            span_s,
            kind,
            carriers,
            bytes,
            bytes_ratio: ratio,
            line_rate_gbit_s: line_rate,
            achieved_gbit_s: achieved,
            line_rate_fraction: achieved.zip(line_rate).map(|(a, l)| a / l),
            other_traffic_likely,
            devices: moves,
            retransmissions,
            tcp,
            cpu: cpu_cost(before, after, total),
            read_us: vec![before.read_ns as f64 / 1e3, after.read_ns as f64 / 1e3],
            notes,
            sched: None,
        }
    }
}
