//! The host's TCP counters (`/proc/net/snmp`, `/proc/net/netstat`) and their change over a run:
//! on a loopback or a TCP fabric, retransmissions and reordering explain slow iterations.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Host-wide TCP counters, or their change between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCounters {
    /// Segments sent (`Tcp: OutSegs`).
    pub out_segs: u64,
    /// Segments retransmitted (`Tcp: RetransSegs`).
    pub retrans_segs: u64,
    /// Fast retransmits (`TcpExt: TCPFastRetrans`).
    pub fast_retrans: u64,
    /// Retransmission timeouts (`TcpExt: TCPTimeouts`).
    pub timeouts: u64,
    /// Reordering detected (`TCPSACKReorder` + `TCPRenoReorder` + `TCPTSReorder`).
    pub reorder_events: u64,
    /// Segments queued out of order at a receiver (`TcpExt: TCPOFOQueue`).
    pub ofo_queued: u64,
    /// Duplicate segments a receiver reported back (`TcpExt: TCPDSACKRecv`): spurious
    /// retransmissions.
    pub dsack_recv: u64,
}

impl TcpCounters {
    /// Reads the counters under the proc root `proc` (None where it lacks them).
    pub fn read(proc: &Path) -> Option<TcpCounters> {
        let snmp = std::fs::read_to_string(proc.join("net/snmp")).ok()?;
        let netstat = std::fs::read_to_string(proc.join("net/netstat")).ok()?;
        TcpCounters::parse(&snmp, &netstat)
    }

    /// The counters in the texts of `/proc/net/snmp` and `/proc/net/netstat` (None when one is
    /// missing or malformed).
    pub fn parse(snmp: &str, netstat: &str) -> Option<TcpCounters> {
        let tcp = table(snmp, "Tcp:");
        let ext = table(netstat, "TcpExt:");
        let get = |t: &HashMap<&str, &str>, k: &str| t.get(k)?.parse::<u64>().ok();
        Some(TcpCounters {
            out_segs: get(&tcp, "OutSegs")?,
            retrans_segs: get(&tcp, "RetransSegs")?,
            fast_retrans: get(&ext, "TCPFastRetrans")?,
            timeouts: get(&ext, "TCPTimeouts")?,
            reorder_events: get(&ext, "TCPSACKReorder")?
                + get(&ext, "TCPRenoReorder")?
                + get(&ext, "TCPTSReorder")?,
            ofo_queued: get(&ext, "TCPOFOQueue")?,
            dsack_recv: get(&ext, "TCPDSACKRecv")?,
        })
    }

    /// What changed from `earlier` to these counters (zero where a counter went back).
    pub fn since(&self, earlier: &TcpCounters) -> TcpCounters {
        TcpCounters {
            out_segs: self.out_segs.saturating_sub(earlier.out_segs),
            retrans_segs: self.retrans_segs.saturating_sub(earlier.retrans_segs),
            fast_retrans: self.fast_retrans.saturating_sub(earlier.fast_retrans),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            reorder_events: self.reorder_events.saturating_sub(earlier.reorder_events),
            ofo_queued: self.ofo_queued.saturating_sub(earlier.ofo_queued),
            dsack_recv: self.dsack_recv.saturating_sub(earlier.dsack_recv),
        }
    }
}

/// The name/value table of `prefix` in a /proc/net file: a line of names then a line of values.
fn table<'a>(text: &'a str, prefix: &str) -> HashMap<&'a str, &'a str> {
    let mut rows = text.lines().filter(|l| l.starts_with(prefix));
    match (rows.next(), rows.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .skip(1)
            .zip(values.split_whitespace().skip(1))
            .collect(),
        _ => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 12345
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 34748 22847 11973 4498 0 217353216 217218964 92317 0 15661 0
Udp: InDatagrams NoPorts
Udp: 10 2
";
    const NETSTAT: &str = "\
TcpExt: SyncookiesSent TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFastRetrans TCPTimeouts TCPDSACKRecv TCPOFOQueue
TcpExt: 0 152797 3 40 60111 17 41234 99120
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
";

    #[test]
    fn reads_the_named_counters() {
        let c = TcpCounters::parse(SNMP, NETSTAT).unwrap();
        assert_eq!(c.out_segs, 217_218_964);
        assert_eq!(c.retrans_segs, 92_317);
        assert_eq!(c.fast_retrans, 60_111);
        assert_eq!(c.timeouts, 17);
        assert_eq!(c.reorder_events, 152_797 + 3 + 40);
        assert_eq!(c.ofo_queued, 99_120);
        assert_eq!(c.dsack_recv, 41_234);
    }

    #[test]
    fn a_missing_counter_gives_none() {
        let short = NETSTAT.replace(" TCPOFOQueue", "").replace(" 99120", "");
        assert_eq!(TcpCounters::parse(SNMP, &short), None);
        assert_eq!(TcpCounters::parse("", NETSTAT), None);
        let garbled = SNMP.replace("92317", "many");
        assert_eq!(TcpCounters::parse(&garbled, NETSTAT), None);
    }

    #[test]
    fn since_subtracts_and_never_wraps() {
        let a = TcpCounters::parse(SNMP, NETSTAT).unwrap();
        let mut b = a;
        b.retrans_segs += 52;
        b.reorder_events += 278;
        b.out_segs = 0; // a counter that went back (namespace moved, wrap)
        let d = b.since(&a);
        assert_eq!(d.retrans_segs, 52);
        assert_eq!(d.reorder_events, 278);
        assert_eq!(d.out_segs, 0);
        assert_eq!(a.since(&a), TcpCounters::default());
    }

    #[test]
    fn this_host_has_them() {
        // Linux exposes both files; every counter kvxfer names is there since Linux 3.x.
        let proc = Path::new("/proc");
        let c = TcpCounters::read(proc).expect("/proc/net/snmp and /proc/net/netstat");
        let later = TcpCounters::read(proc).unwrap();
        assert!(later.out_segs >= c.out_segs);
    }
}
