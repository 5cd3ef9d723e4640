//! `ucx_perftest` (UCX's src/tools/perf): the client's boxed table and its `Final:` line (or, with
//! `-f`, the one unlabelled row), or the `-v` CSV. MB/s here is 2^20 bytes/s.

use serde_json::{Map, Value};

use super::table::{self, Line};
use super::{document, num, set_bandwidth, ParseError, UCX_MB};
use crate::report::{ResultDoc, SizeResult};
use crate::stats::LatencySummary;

const TOOL: &str = "ucx_perftest";

/// A figure of the result line, whatever the layout calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Stage,
    Iterations,
    LatPercentile,
    LatAverage,
    LatOverall,
    BwAverage,
    BwOverall,
    RateAverage,
    RateOverall,
    Other,
}

/// The result columns in print order, with the label of the percentile column.
struct Layout {
    fields: Vec<(Field, String)>,
    /// `latency` for latency tests, `overhead` for bandwidth tests; None in the CSV.
    group: Option<String>,
    /// The `-f` layout: the final row carries no `Final:` label.
    final_only: bool,
}

/// A layout found in the text (None: not this layout), with the final values and their line.
type Found = Option<Result<(Layout, Vec<String>, usize), ParseError>>;

/// Parses ucx_perftest's output. The client does not print the message size: it comes from
/// the server's `Message size:` line when the text holds it, else from `message_size`.
pub fn parse(raw: &str, message_size: Option<u64>) -> Result<ResultDoc, ParseError> {
    let lines = table::lines(raw);
    let (layout, values, line) =
        boxed(&lines)
            .or_else(|| csv(&lines))
            .ok_or(ParseError::NoTable {
                tool: TOOL,
                expected: "\"# iterations\" (boxed table) or \"iterations,\" (-v CSV)",
            })??;
    let size = box_value(&lines, "Message size")
        .and_then(|v| v.parse().ok())
        .or(message_size)
        .ok_or_else(|| ParseError::Missing {
            tool: TOOL,
            what: "the message size is not in the client's output; give it (--message-size)".into(),
        })?;
    let test = box_value(&lines, "Test");
    let bench = match (layout.group.as_deref(), test.as_deref()) {
        (_, Some(t)) if t.contains("bandwidth") => "tag_bw",
        (_, Some(t)) if t.contains("latency") => "tag_lat",
        (Some("overhead"), _) => "tag_bw",
        (Some("latency"), _) => "tag_lat",
        _ => "tag_lat",
    };
    let result = figures(&layout, &values, line, size, bench == "tag_lat")?;
    let mut config = Map::new();
    if let Some(t) = test {
        config.insert("test".into(), Value::from(t));
    }
    config.insert("message_size".into(), Value::from(size));
    config.insert("mb_unit_bytes".into(), Value::from(1u64 << 20));
    Ok(document(
        super::Tool::UcxPerftest,
        bench,
        config,
        vec![result],
    ))
}

/// The value of a `| Key:   value |` line of the server's box.
fn box_value(lines: &[Line<'_>], key: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let inner = l.text.trim().strip_prefix('|')?.strip_suffix('|')?;
        let (k, v) = inner.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Cells of a `| a | b |` line with their character spans.
fn cells(text: &str) -> Vec<(usize, usize, String)> {
    let bars: Vec<usize> = text.match_indices('|').map(|(i, _)| i).collect();
    bars.windows(2)
        .map(|w| (w[0], w[1], text[w[0] + 1..w[1]].trim().to_string()))
        .collect()
}

/// The boxed table: header cells named by their group (`latency (usec)`) and their own name
/// (`average`); then the `Final:` line, or the last row in the `-f` layout.
fn boxed(lines: &[Line<'_>]) -> Found {
    let sub_at = lines
        .iter()
        .position(|l| l.text.trim_start().starts_with('|') && l.text.contains("# iterations"))?;
    let group_line = lines[..sub_at]
        .iter()
        .rev()
        .find(|l| l.text.trim_start().starts_with('|'))
        .map(|l| l.text)
        .unwrap_or("");
    let groups = cells(group_line);
    let mut group_word = None;
    let fields: Vec<(Field, String)> = cells(lines[sub_at].text)
        .into_iter()
        .map(|(s, e, name)| {
            let mid = (s + e) / 2;
            let g = groups
                .iter()
                .find(|(gs, ge, _)| *gs <= mid && mid < *ge)
                .map(|(_, _, g)| g.split_whitespace().next().unwrap_or("").to_lowercase())
                .unwrap_or_default();
            if g == "latency" || g == "overhead" {
                group_word = Some(g.clone());
            }
            (boxed_field(&g, &name), name)
        })
        .collect();
    let final_only = fields.first().is_some_and(|(_, n)| n == "Test");
    let layout = Layout {
        fields,
        group: group_word,
        final_only,
    };
    let finals: Vec<&Line<'_>> = lines[sub_at + 1..]
        .iter()
        .filter(|l| l.text.trim().starts_with("Final:"))
        .collect();
    if finals.len() > 1 {
        return Some(Err(ParseError::Ambiguous {
            tool: TOOL,
            what: format!(
                "{} runs in one output (\"Final:\" at lines {} and {}): parse each run on its own",
                finals.len(),
                finals[0].no,
                finals[1].no
            ),
        }));
    }
    if let Some(l) = finals.first() {
        let rest = l.text.trim().trim_start_matches("Final:");
        let v = rest.split_whitespace().map(String::from).collect();
        return Some(Ok((layout, v, l.no)));
    }
    let mut last_row = None;
    for l in &lines[sub_at + 1..] {
        let t = l.text.trim();
        let first = t.split_whitespace().next().unwrap_or("");
        if first.parse::<u64>().is_ok() {
            last_row = Some((t.split_whitespace().map(String::from).collect(), l.no));
        }
    }
    Some(match last_row {
        Some((v, no)) if layout.final_only => Ok((layout, v, no)),
        Some(_) => Err(ParseError::Truncated {
            tool: TOOL,
            what: "progress rows but no \"Final:\" line: the run was cut short".into(),
        }),
        None => Err(ParseError::NoRows {
            tool: TOOL,
            line: lines[sub_at].no,
        }),
    })
}

/// A boxed-table cell from its group word and name.
fn boxed_field(group: &str, name: &str) -> Field {
    match (group, name) {
        (_, "Stage") | (_, "Test") => Field::Stage,
        (_, "# iterations") => Field::Iterations,
        ("latency" | "overhead", n) if n.ends_with("%ile") || n == "typical" => {
            Field::LatPercentile
        }
        ("latency" | "overhead", "average") => Field::LatAverage,
        ("latency" | "overhead", "overall") => Field::LatOverall,
        ("bandwidth", "average") => Field::BwAverage,
        ("bandwidth", "overall") => Field::BwOverall,
        ("message", "average") => Field::RateAverage,
        ("message", "overall") => Field::RateOverall,
        _ => Field::Other,
    }
}

/// The `-v` CSV: a header line starting `iterations,` and rows under it; the last row is final.
fn csv(lines: &[Line<'_>]) -> Found {
    let at = lines
        .iter()
        .position(|l| l.text.trim().starts_with("iterations,"))?;
    let fields = lines[at]
        .text
        .trim()
        .split(',')
        .map(|n| {
            let f = match n {
                "iterations" => Field::Iterations,
                n if n.ends_with("_percentile_lat") || n == "typical_lat" => Field::LatPercentile,
                "avg_lat" => Field::LatAverage,
                "overall_lat" => Field::LatOverall,
                "avg_bw" => Field::BwAverage,
                "overall_bw" => Field::BwOverall,
                "avg_mr" => Field::RateAverage,
                "overall_mr" => Field::RateOverall,
                _ => Field::Other,
            };
            (f, n.to_string())
        })
        .collect();
    let layout = Layout {
        fields,
        group: None,
        final_only: true,
    };
    let last = lines[at + 1..]
        .iter()
        .rfind(|l| l.text.trim().split(',').count() > 1);
    Some(match last {
        Some(l) => {
            let v = l
                .text
                .trim()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            Ok((layout, v, l.no))
        }
        None => Err(ParseError::NoRows {
            tool: TOOL,
            line: lines[at].no,
        }),
    })
}

/// The final values into a [`SizeResult`]; latency only for latency tests.
fn figures(
    layout: &Layout,
    values: &[String],
    line: usize,
    size: u64,
    latency_test: bool,
) -> Result<SizeResult, ParseError> {
    // The stage cell of the boxed table is blank or `Final:`, already taken off.
    let cols: Vec<&(Field, String)> = layout
        .fields
        .iter()
        .filter(|(f, _)| *f != Field::Stage)
        .collect();
    if cols.len() != values.len() {
        return Err(ParseError::RowWidth {
            tool: TOOL,
            line,
            got: values.len(),
            want: cols.len(),
        });
    }
    let mut got = Map::new();
    let mut by_field = std::collections::HashMap::new();
    for ((field, name), v) in cols.into_iter().zip(values) {
        let x = table::number(TOOL, line, name, v)?;
        by_field.insert(*field, x);
        if *field == Field::LatPercentile {
            got.insert("percentile_label".into(), Value::from(name.as_str()));
        }
    }
    let need = |f: Field, what: &str| {
        by_field
            .get(&f)
            .copied()
            .ok_or_else(|| ParseError::MissingColumn {
                tool: TOOL,
                column: what.into(),
                found: layout
                    .fields
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" | "),
            })
    };
    let iters = need(Field::Iterations, "# iterations")?;
    let bw = need(Field::BwOverall, "bandwidth overall")?;
    let lat = need(Field::LatOverall, "latency overall")?;
    let word = layout
        .group
        .as_deref()
        .unwrap_or(if latency_test { "latency" } else { "overhead" });
    let mut r = SizeResult {
        message_size: size,
        iterations: iters as u64,
        latency_us: latency_test.then(|| LatencySummary::mean_only(lat)),
        ..Default::default()
    };
    set_bandwidth(&mut r, bw * UCX_MB);
    let names = [
        (
            Field::LatPercentile,
            format!("{word}_percentile_last2048_us"),
        ),
        (Field::LatAverage, format!("{word}_average_us")),
        (Field::LatOverall, format!("{word}_overall_us")),
        (Field::BwAverage, "bw_average_mib_s".to_string()),
        (Field::BwOverall, "bw_overall_mib_s".to_string()),
        (Field::RateAverage, "msg_rate_average".to_string()),
        (Field::RateOverall, "msg_rate_overall".to_string()),
    ];
    for (f, key) in names {
        if let Some(v) = by_field.get(&f) {
            got.insert(key, num(*v));
        }
    }
    r.extra = got;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Printed by Debian's ucx_perftest 1.13 on this project's machines (tcp over lo).
    const LAT: &str = "\
+--------------+--------------+------------------------------+---------------------+-----------------------+
|              |              |        latency (usec)        |   bandwidth (MB/s)  |  message rate (msg/s) |
+--------------+--------------+----------+---------+---------+----------+----------+-----------+-----------+
|    Stage     | # iterations | 50.0%ile | average | overall |  average |  overall |  average  |  overall  |
+--------------+--------------+----------+---------+---------+----------+----------+-----------+-----------+
Final:                   100      5.483     5.699     5.699       10.71      10.71      175457      175457
";
    const BW_F: &str = "\
+--------------+--------------+------------------------------+---------------------+-----------------------+
|              |              |       overhead (usec)        |   bandwidth (MB/s)  |  message rate (msg/s) |
+--------------+--------------+----------+---------+---------+----------+----------+-----------+-----------+
|     Test     | # iterations | 50.0%ile | average | overall |  average |  overall |  average  |  overall  |
+--------------+--------------+----------+---------+---------+----------+----------+-----------+-----------+
                         100      3.760     3.881     3.881       15.72      15.72      257635      257635
";
    const CSV: &str = "\
iterations,50.0_percentile_lat,avg_lat,overall_lat,avg_bw,overall_bw,avg_mr,overall_mr
 100,5.482,5.831,5.831,10.47,10.47,171511,171511
";

    #[test]
    fn final_line_of_tag_lat() {
        let d = parse(LAT, Some(64)).unwrap();
        assert_eq!(
            (d.tool.as_str(), d.bench.as_str(), d.layer.as_str()),
            (TOOL, "tag_lat", "L3")
        );
        let r = &d.results[0];
        assert_eq!(r.message_size, 64);
        assert_eq!(r.iterations, 100);
        assert_eq!(r.latency_us.unwrap().mean, 5.699);
        assert!(
            r.latency_us.unwrap().p50.is_nan(),
            "the percentile is of the last 2048 only"
        );
        assert_eq!(r.extra["latency_percentile_last2048_us"], 5.483);
        assert_eq!(r.extra["percentile_label"], "50.0%ile");
        assert_eq!(r.extra["bw_overall_mib_s"], 10.71);
        // MB/s of ucx_perftest is 2^20 bytes/s.
        assert!((r.bandwidth_mbps.unwrap() - 10.71 * 1.048576).abs() < 1e-9);
        assert_eq!(r.extra["msg_rate_overall"], 175457.0);
    }

    #[test]
    fn progress_rows_before_final_are_not_results() {
        // A loaded machine made the client print a progress row, labelled by thread.
        let progress = LAT.replace(
            "Final:",
            "[thread 0]                81   6001.862  6237.797  6237.797        0.01       0.01         160         160\nFinal:",
        );
        let d = parse(&progress, Some(64)).unwrap();
        assert_eq!(d.results.len(), 1);
        assert_eq!(d.results[0].iterations, 100);
        assert_eq!(d.results[0].latency_us.unwrap().mean, 5.699);
    }

    #[test]
    fn final_only_layout_of_tag_bw_has_no_latency() {
        let d = parse(BW_F, Some(64)).unwrap();
        assert_eq!(d.bench, "tag_bw");
        let r = &d.results[0];
        assert!(r.latency_us.is_none(), "overhead is not latency");
        assert_eq!(r.extra["overhead_overall_us"], 3.881);
        assert!((r.bandwidth_gbps.unwrap() - 15.72 * 1_048_576.0 / 1e9).abs() < 1e-12);
    }

    #[test]
    fn csv_and_server_box() {
        let server = "| Test:         tag match latency     |\n| Message size: 4096   |\n";
        let d = parse(&format!("{server}{CSV}"), None).unwrap();
        assert_eq!(d.bench, "tag_lat");
        assert_eq!(d.results[0].message_size, 4096);
        assert_eq!(d.results[0].latency_us.unwrap().mean, 5.831);
        assert_eq!(d.results[0].extra["latency_percentile_last2048_us"], 5.482);
    }

    #[test]
    fn missing_size_cut_run_and_garbage_are_errors() {
        assert!(matches!(parse(LAT, None), Err(ParseError::Missing { .. })));
        let cut = LAT.replace("Final:", "      ");
        assert!(matches!(
            parse(&cut, Some(64)),
            Err(ParseError::Truncated { .. })
        ));
        let short = &LAT[..LAT.len() - 20];
        assert!(matches!(
            parse(short, Some(64)),
            Err(ParseError::RowWidth { .. })
        ));
        assert!(matches!(
            parse("oops\n", Some(64)),
            Err(ParseError::NoTable { .. })
        ));
        let two = format!("{LAT}{}\n", LAT.lines().last().unwrap());
        let e = parse(&two, Some(64)).unwrap_err().to_string();
        assert!(e.contains("2 runs in one output"), "{e}");
    }
}
