//! The results table the fabtests print (fi_pingpong, fi_rma_pingpong):
//! `[name] bytes (#sent #ack | iters) total time MB/sec usec/xfer Mxfers/sec`.

use serde_json::Value;

use super::table::{self, count_decimal, size_binary, Columns, Line};
use super::{num, set_bandwidth, ParseError, FABTESTS_MB};
use crate::report::SizeResult;
use crate::stats::LatencySummary;

/// Where the named columns of a fabtests table sit.
struct Layout {
    cols: Columns,
    bytes: usize,
    sent: usize,
    ack: Option<usize>,
    total: Option<usize>,
    time: Option<usize>,
    mbps: usize,
    usec: usize,
    mxfers: Option<usize>,
    name: Option<usize>,
}

impl Layout {
    fn from_header(tool: &'static str, text: &str) -> Result<Layout, ParseError> {
        let cols = Columns::new(tool, table::split_header(text));
        Ok(Layout {
            bytes: cols.require(&["bytes"])?,
            sent: cols.require(&["#sent", "iters"])?,
            ack: cols.find(&["#ack"]),
            total: cols.find(&["total"]),
            time: cols.find(&["time"]),
            mbps: cols.require(&["MB/sec"])?,
            usec: cols.require(&["usec/xfer"])?,
            mxfers: cols.find(&["Mxfers/sec"]),
            name: cols.find(&["name"]),
            cols,
        })
    }
}

/// True for a fabtests table header.
fn is_header(text: &str) -> bool {
    let cells = table::split_header(text);
    let has = |n: &str| cells.iter().any(|c| c == n);
    has("bytes") && has("MB/sec") && has("usec/xfer")
}

/// Parses every table row in `lines` (a server's and a client's output may follow each other).
/// Returns the rows and the line of the first header.
pub(crate) fn parse_table(
    tool: &'static str,
    lines: &[Line<'_>],
) -> Result<(Vec<SizeResult>, usize), ParseError> {
    let mut layout: Option<Layout> = None;
    let mut first_header = None;
    let mut rows = Vec::new();
    for l in lines {
        if is_header(l.text) {
            layout = Some(Layout::from_header(tool, l.text)?);
            first_header.get_or_insert(l.no);
            continue;
        }
        let Some(lay) = &layout else { continue };
        let fields: Vec<&str> = l.text.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let size_field = fields.get(lay.bytes).copied().unwrap_or("");
        if size_binary(size_field).is_none() {
            // Not a row: a warning or the tool's chatter between tables.
            continue;
        }
        if fields.len() != lay.cols.len() {
            return Err(ParseError::RowWidth {
                tool,
                line: l.no,
                got: fields.len(),
                want: lay.cols.len(),
            });
        }
        rows.push(row(tool, lay, l.no, &fields)?);
    }
    match first_header {
        None => Err(ParseError::NoTable {
            tool,
            expected: "bytes, MB/sec and usec/xfer",
        }),
        Some(line) if rows.is_empty() => Err(ParseError::NoRows { tool, line }),
        Some(line) => Ok((rows, line)),
    }
}

/// One row into a [`SizeResult`].
fn row(
    tool: &'static str,
    lay: &Layout,
    line: usize,
    f: &[&str],
) -> Result<SizeResult, ParseError> {
    let names = lay.cols.names();
    let get = |i: usize| (names[i].as_str(), f[i]);
    let (c, v) = get(lay.bytes);
    let size = size_binary(v).ok_or_else(|| table::bad(tool, line, c, v))?;
    let (c, v) = get(lay.sent);
    let sent = count_decimal(v).ok_or_else(|| table::bad(tool, line, c, v))?;
    let (c, v) = get(lay.mbps);
    let mbps = table::number(tool, line, c, v)?;
    let (c, v) = get(lay.usec);
    let usec = table::number(tool, line, c, v)?;

    let mut r = SizeResult {
        message_size: size,
        iterations: sent,
        latency_us: Some(LatencySummary::mean_only(usec)),
        ..Default::default()
    };
    set_bandwidth(&mut r, mbps * FABTESTS_MB);
    let x = &mut r.extra;
    x.insert("size_printed".into(), Value::from(f[lay.bytes]));
    x.insert("usec_per_xfer".into(), num(usec));
    x.insert("mb_per_sec".into(), num(mbps));
    if let Some(i) = lay.mxfers {
        let (c, v) = get(i);
        x.insert(
            "mxfers_per_sec".into(),
            num(table::number(tool, line, c, v)?),
        );
    }
    if let Some(i) = lay.time {
        let (c, v) = get(i);
        let secs = v.strip_suffix('s').unwrap_or(v);
        x.insert("time_s".into(), num(table::number(tool, line, c, secs)?));
    }
    if let Some(i) = lay.total {
        let (c, v) = get(i);
        size_binary(v).ok_or_else(|| table::bad(tool, line, c, v))?;
        // The total is printed with one truncated fraction digit: keep the text, not a guess.
        x.insert("total_printed".into(), Value::from(v));
    }
    if let Some(i) = lay.ack {
        let (c, v) = get(i);
        let (sign, rest) = v.split_at(v.len().min(1));
        let n = count_decimal(rest).ok_or_else(|| table::bad(tool, line, c, v))?;
        let acked = match sign {
            "=" => sent,
            "+" => sent.saturating_sub(n),
            "-" => sent + n,
            _ => return Err(table::bad(tool, line, c, v)),
        };
        x.insert("acked".into(), Value::from(acked));
    }
    if let Some(i) = lay.name {
        x.insert("name".into(), Value::from(f[i]));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SizeResult>, ParseError> {
        parse_table("t", &table::lines(text)).map(|(r, _)| r)
    }

    #[test]
    fn ack_mismatch_is_kept() {
        let t = "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec\n\
                 4k      10k     +3       78m         0.50s    163.84      25.00       0.04\n";
        let r = parse(t).unwrap();
        assert_eq!(r[0].message_size, 4096);
        assert_eq!(r[0].iterations, 10_000);
        assert_eq!(r[0].extra["acked"], 9_997);
        assert_eq!(r[0].extra["time_s"], 0.5);
        assert_eq!(r[0].extra["total_printed"], "78m");
    }

    #[test]
    fn named_columns_in_any_order() {
        let t = "usec/xfer  MB/sec  iters  bytes\n2.50  51.20  100  64\n";
        let r = parse(t).unwrap();
        assert_eq!(r[0].message_size, 64);
        assert_eq!(r[0].latency_us.unwrap().mean, 2.5);
        assert_eq!(r[0].bandwidth_mbps, Some(51.2));
        assert!(!r[0].extra.contains_key("mxfers_per_sec"));
    }

    #[test]
    fn truncated_and_garbage_rows_are_errors() {
        let h = "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec\n";
        let cut = format!("{h}64      20      =20      2.5k        0.00s      2.7");
        assert!(matches!(
            parse(&cut),
            Err(ParseError::RowWidth { line: 2, .. })
        ));
        let bad = format!("{h}64      20      =20      2.5k        0.00s      x.y   23.10  0.04\n");
        assert!(matches!(
            parse(&bad),
            Err(ParseError::BadValue { line: 2, .. })
        ));
        assert!(matches!(parse(h), Err(ParseError::NoRows { line: 1, .. })));
        assert!(matches!(
            parse("hello\nworld\n"),
            Err(ParseError::NoTable { .. })
        ));
    }
}
