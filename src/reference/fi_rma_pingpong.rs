//! `fi_rma_pingpong` (fabtests' benchmarks/rma_pingpong.c): the fabtests table, or with `-m`
//! one machine-readable line per size,
//! `- { xfer_size: N, iterations: N, total: N, time: F, MB/sec: F, usec/xfer: F, Mxfers/sec: F }`.

use serde_json::{Map, Value};

use super::table::{self, Line};
use super::{document, fabtests, num, set_bandwidth, ParseError, Tool, FABTESTS_MB};
use crate::report::{ResultDoc, SizeResult};
use crate::stats::LatencySummary;

const TOOL: &str = "fi_rma_pingpong";

/// Parses fi_rma_pingpong's output, table or `-m` lines, into an `rma_pingpong` document.
pub fn parse(raw: &str) -> Result<ResultDoc, ParseError> {
    let lines = table::lines(raw);
    let machine: Vec<&Line<'_>> = lines
        .iter()
        .filter(|l| l.text.trim_start().starts_with("- {"))
        .collect();
    let results = if machine.is_empty() {
        fabtests::parse_table(TOOL, &lines)?.0
    } else {
        machine
            .into_iter()
            .map(|l| machine_line(l.no, l.text.trim()))
            .collect::<Result<_, _>>()?
    };
    let mut doc = document(Tool::FiRmaPingpong, "rma_pingpong", Map::new(), results);
    doc.config.insert(
        "latency_definition".into(),
        "usec/xfer: half round trip for write/writedata, full round trip for read".into(),
    );
    Ok(doc)
}

/// One `- { key: value, ... }` line.
fn machine_line(line: usize, text: &str) -> Result<SizeResult, ParseError> {
    let inner = text
        .strip_prefix("- {")
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| ParseError::Truncated {
            tool: TOOL,
            what: format!("line {line}: machine-readable line does not end in '}}'"),
        })?;
    let mut fields = Map::new();
    for pair in inner.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| table::bad(TOOL, line, pair, pair))?;
        fields.insert(k.trim().to_string(), Value::from(v.trim()));
    }
    let text_of = |key: &str| -> Result<&str, ParseError> {
        fields
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ParseError::Truncated {
                tool: TOOL,
                what: format!("line {line}: machine-readable line has no {key:?}"),
            })
    };
    let number =
        |key: &str| -> Result<f64, ParseError> { table::number(TOOL, line, key, text_of(key)?) };
    let integer =
        |key: &str| -> Result<u64, ParseError> { table::integer(TOOL, line, key, text_of(key)?) };
    let usec = number("usec/xfer")?;
    let mbps = number("MB/sec")?;
    let mut r = SizeResult {
        message_size: integer("xfer_size")?,
        iterations: integer("iterations")?,
        latency_us: Some(LatencySummary::mean_only(usec)),
        ..Default::default()
    };
    set_bandwidth(&mut r, mbps * FABTESTS_MB);
    r.extra.insert("usec_per_xfer".into(), num(usec));
    r.extra.insert("mb_per_sec".into(), num(mbps));
    if fields.contains_key("Mxfers/sec") {
        r.extra
            .insert("mxfers_per_sec".into(), num(number("Mxfers/sec")?));
    }
    if fields.contains_key("time") {
        r.extra.insert("time_s".into(), num(number("time")?));
    }
    if fields.contains_key("total") {
        r.extra
            .insert("total_bytes".into(), integer("total")?.into());
    }
    if let Some(n) = fields.get("name") {
        r.extra.insert("name".into(), n.clone());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written for kvxfer's tests from the format fabtests document (no recorded run here).
    const TABLE: &str = "\
bytes   iters   total       time     MB/sec    usec/xfer   Mxfers/sec
64      10k     1.2m        0.05s     24.61       2.60       0.38
1m      100     200m        0.13s   1560.00     672.00       0.00
";
    const MACHINE: &str = "\
- { xfer_size: 64, iterations: 10000, total: 1280000, time: 0.052000, MB/sec: 24.615385, usec/xfer: 2.600000, Mxfers/sec: 0.384615 }
- { xfer_size: 1048576, iterations: 100, total: 209715200, time: 0.134400, MB/sec: 1560.380952, usec/xfer: 672.000000, Mxfers/sec: 0.001488 }
";

    #[test]
    fn table_and_machine_lines_agree() {
        let t = parse(TABLE).unwrap();
        let m = parse(MACHINE).unwrap();
        assert_eq!(t.bench, "rma_pingpong");
        for d in [&t, &m] {
            assert_eq!(d.results.len(), 2);
            assert_eq!(d.results[0].message_size, 64);
            assert_eq!(d.results[0].iterations, 10_000);
            assert_eq!(d.results[0].latency_us.unwrap().mean, 2.6);
            assert_eq!(d.results[1].message_size, 1 << 20);
        }
        assert_eq!(m.results[1].bandwidth_mbps, Some(1560.380952));
        assert_eq!(m.results[0].extra["total_bytes"], 1_280_000);
        assert_eq!(t.results[1].bandwidth_mbps, Some(1560.0));
    }

    #[test]
    fn cut_or_broken_machine_lines_are_errors() {
        let cut = "- { xfer_size: 64, iterations: 10000, total: 1280000, time: 0.05";
        assert!(matches!(parse(cut), Err(ParseError::Truncated { .. })));
        let no_lat = "- { xfer_size: 64, iterations: 10, MB/sec: 1.0 }";
        let e = parse(no_lat).unwrap_err().to_string();
        assert!(e.contains("usec/xfer"), "{e}");
        let bad = "- { xfer_size: 6x4, iterations: 10, MB/sec: 1.0, usec/xfer: 2.0 }";
        assert!(matches!(parse(bad), Err(ParseError::BadValue { .. })));
    }
}
