//! `fi_pingpong` (libfabric's util/pingpong.c): the fabtests table of one side of the run.

use serde_json::Map;

use super::{document, fabtests, table, ParseError, Tool};
use crate::report::ResultDoc;

/// Parses fi_pingpong's output (server or client side) into a `pingpong` document.
pub fn parse(raw: &str) -> Result<ResultDoc, ParseError> {
    let lines = table::lines(raw);
    let (results, _) = fabtests::parse_table(Tool::FiPingpong.name(), &lines)?;
    let mut doc = document(Tool::FiPingpong, "pingpong", Map::new(), results);
    doc.config.insert(
        "latency_definition".into(),
        "usec/xfer: half round trip, mean over the run, no warm-up".into(),
    );
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Printed by Debian's fi_pingpong 1.17 on this project's machines (shm, rdm, -I 100 -S all),
    // a slice of the run.
    const SHM_ALL: &str = "\
bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec
0       100     =100     0           0.00s      0.00       0.83       1.20
64      100     =100     12k         0.00s    191.04       0.34       2.99
1k      100     =100     200k        0.00s   2625.64       0.39       2.56
1.5k    100     =100     300k        0.00s   3657.14       0.42       2.38
1m      100     =100     200m        0.02s  11069.10      94.73       0.01
6m      100     =100     1.1g        0.20s   6223.34    1010.95       0.00
";

    #[test]
    fn parses_sizes_units_and_figures() {
        let d = parse(SHM_ALL).unwrap();
        assert_eq!(d.tool, "fi_pingpong");
        assert_eq!(d.bench, "pingpong");
        assert_eq!(d.layer, "L0");
        let sizes: Vec<u64> = d.results.iter().map(|r| r.message_size).collect();
        assert_eq!(sizes, [0, 64, 1024, 1536, 1 << 20, 6 << 20]);
        let r = &d.results[4];
        assert_eq!(r.iterations, 100);
        assert_eq!(r.latency_us.unwrap().mean, 94.73);
        assert!(r.latency_us.unwrap().p50.is_nan(), "p50 is not printed");
        // MB/sec of the fabtests is 10^6 bytes/s.
        assert_eq!(r.bandwidth_mbps, Some(11069.10));
        assert!((r.bandwidth_gbps.unwrap() - 11.0691).abs() < 1e-9);
        assert_eq!(r.extra["usec_per_xfer"], 94.73);
        assert_eq!(r.extra["mb_per_sec"], 11069.1);
        assert_eq!(r.extra["mxfers_per_sec"], 0.01);
        assert_eq!(r.extra["acked"], 100);
        assert_eq!(r.extra["total_printed"], "200m");
        assert_eq!(d.results[5].extra["total_printed"], "1.1g");
    }

    #[test]
    fn absent_figures_stay_absent_in_json() {
        let d = parse(SHM_ALL).unwrap();
        let json = String::from_utf8(d.to_json()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let lat = &v["results"][1]["latency_us"];
        assert_eq!(lat["mean"], 0.34);
        assert!(
            lat.get("p50").is_none() && lat.get("min").is_none(),
            "{lat}"
        );
        assert!(v["results"][1].get("transfer_time_ms").is_none());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = parse("fi_getinfo: -61 (No data available)\n").unwrap_err();
        assert!(e.to_string().contains("no results table"), "{e}");
    }
}
