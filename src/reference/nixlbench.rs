//! `nixlbench` (NIXL's benchmark/nixlbench): the configuration block and the results table of
//! rank 0, in every layout it has printed (current ten columns, the aggregate columns of runs
//! with more than two processes, the older six-column MiB/GiB/GB layout), also when pasted from
//! CI logs with timestamp prefixes and blank lines.

use serde_json::{Map, Value};

use super::table::{self, Columns, Line};
use super::{document, num, set_bandwidth, ParseError, Tool, NIXL_GB};
use crate::report::{ResultDoc, SizeResult};
use crate::stats::LatencySummary;

/// The header cells nixlbench prints, and the `extra` key each figure is kept under.
const FIGURES: &[(&str, &str)] = &[
    ("Batch Size", "batch_size"),
    ("B/W (GB/Sec)", "bw_gb_sec"),
    ("B/W (MiB/Sec)", "bw_mib_sec"),
    ("B/W (GiB/Sec)", "bw_gib_sec"),
    ("Aggregate B/W (GB/Sec)", "aggregate_bw_gb_sec"),
    ("Network Util (%)", "network_util_pct"),
    ("Avg Lat. (us)", "avg_lat_us"),
    ("Avg Prep (us)", "avg_prep_us"),
    ("P99 Prep (us)", "p99_prep_us"),
    ("Avg Post (us)", "avg_post_us"),
    ("P99 Post (us)", "p99_post_us"),
    ("Avg Tx (us)", "avg_tx_us"),
    ("P99 Tx (us)", "p99_tx_us"),
];

/// Blocks above this size run `num_iter / large_blk_iter_ftr` iterations.
const LARGE_BLOCK: u64 = 1 << 20;

/// Parses nixlbench's output into an `xfer` document.
pub fn parse(raw: &str) -> Result<ResultDoc, ParseError> {
    parse_lines(Tool::Nixlbench, "xfer", &table::lines(raw))
}

/// Parses the nixlbench part of `lines` into a document for `tool` (nixlbench or kvbench).
pub(crate) fn parse_lines(
    tool: Tool,
    bench: &str,
    lines: &[Line<'_>],
) -> Result<ResultDoc, ParseError> {
    let name = tool.name();
    let mut configs: Vec<(usize, Map<String, Value>)> = Vec::new();
    let mut warnings = Vec::new();
    let mut results = Vec::new();
    let mut header_line = None;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.text.trim() == "NIXLBench Configuration" {
            let (cfg, next) = config_block(lines, i + 1);
            configs.push((l.no, cfg));
            i = next;
            continue;
        }
        if l.text.starts_with("WARNING") {
            warnings.push(Value::from(l.text));
        }
        if is_header(l.text) {
            header_line.get_or_insert(l.no);
            let cols = Columns::new(name, table::split_header(l.text));
            let cfg = configs.last().map(|(_, c)| c);
            let (rows, next) = table_rows(name, &cols, lines, i + 1, cfg)?;
            if rows.is_empty() {
                return Err(ParseError::NoRows {
                    tool: name,
                    line: l.no,
                });
            }
            results.extend(rows);
            i = next;
            continue;
        }
        i += 1;
    }
    if header_line.is_none() {
        return Err(ParseError::NoTable {
            tool: name,
            expected: "\"Block Size (B)\" and \"Batch Size\"",
        });
    }
    let config = match configs.split_first() {
        None => Map::new(),
        Some(((first_line, first), rest)) => {
            if let Some((line, _)) = rest.iter().find(|(_, other)| other != first) {
                // One document holds one run: rows of a WRITE and a READ run must not mix.
                return Err(ParseError::Ambiguous {
                    tool: name,
                    what: format!(
                        "runs with different configurations (lines {first_line} and {line}): \
                         parse each run on its own"
                    ),
                });
            }
            first.clone()
        }
    };
    let mut doc = document(tool, bench, config, results);
    if !warnings.is_empty() {
        doc.config.insert("warnings".into(), Value::Array(warnings));
    }
    Ok(doc)
}

/// True for the results table's header.
fn is_header(text: &str) -> bool {
    let cols = Columns::new("", table::split_header(text));
    cols.find(&["Block Size (B)"]).is_some() && cols.find(&["Batch Size"]).is_some()
}

/// Reads `Key (--option=...)   : value` lines after the title until the closing dashed rule.
/// Returns the entries keyed by option name (or the key in snake case) and the next line.
fn config_block(lines: &[Line<'_>], start: usize) -> (Map<String, Value>, usize) {
    let mut cfg = Map::new();
    let mut i = start;
    while i < lines.len() {
        let t = lines[i].text.trim();
        i += 1;
        if t.is_empty() || (table::is_rule(t) && t.starts_with('*')) {
            continue;
        }
        if table::is_rule(t) || is_header(t) {
            if is_header(t) {
                i -= 1;
            }
            break;
        }
        if let Some((k, v)) = config_entry(t) {
            cfg.insert(k, typed(v));
        }
    }
    (cfg, i)
}

/// One configuration line into (key, value).
fn config_entry(t: &str) -> Option<(String, &str)> {
    if let Some(open) = t.find("(--") {
        let rest = &t[open + 3..];
        let end = rest.find(['=', ')'])?;
        let key = rest[..end].to_string();
        let close = rest.find(')')?;
        let value = rest[close + 1..].trim_start().strip_prefix(':')?;
        return Some((key, value.trim()));
    }
    let (k, v) = t.split_once(':')?;
    let key: String = k
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
        .to_ascii_lowercase();
    (!key.is_empty()).then_some((key, v.trim()))
}

/// A configuration value as a JSON number when it is one.
fn typed(v: &str) -> Value {
    if let Ok(n) = v.parse::<u64>() {
        Value::from(n)
    } else {
        Value::from(v)
    }
}

/// Reads the rows under a header, skipping rules and blank lines; stops at the first line that
/// is not a row. Returns the rows and the index of the next line to look at.
fn table_rows(
    tool: &'static str,
    cols: &Columns,
    lines: &[Line<'_>],
    start: usize,
    cfg: Option<&Map<String, Value>>,
) -> Result<(Vec<SizeResult>, usize), ParseError> {
    let block = cols.require(&["Block Size (B)"])?;
    let lat = cols.require(&["Avg Lat. (us)"])?;
    let bw = [
        ("B/W (GB/Sec)", NIXL_GB),
        ("B/W (GiB/Sec)", (1u64 << 30) as f64),
        ("B/W (MiB/Sec)", (1u64 << 20) as f64),
    ]
    .into_iter()
    .find_map(|(n, unit)| cols.find(&[n]).map(|i| (i, unit)))
    .ok_or_else(|| ParseError::MissingColumn {
        tool,
        column: "B/W (GB/Sec)".into(),
        found: cols.names().join(" | "),
    })?;
    let mut rows = Vec::new();
    let mut i = start;
    while i < lines.len() {
        let l = lines[i];
        let t = l.text.trim();
        if t.is_empty() || table::is_rule(t) {
            i += 1;
            continue;
        }
        let fields: Vec<&str> = t.split_whitespace().collect();
        if fields[0].parse::<u64>().is_err() {
            break;
        }
        if fields.len() != cols.len() {
            return Err(ParseError::RowWidth {
                tool,
                line: l.no,
                got: fields.len(),
                want: cols.len(),
            });
        }
        let names = cols.names();
        let value = |c: usize| table::number(tool, l.no, &names[c], fields[c]);
        let size = table::integer(tool, l.no, &names[block], fields[block])?;
        let mut r = SizeResult {
            message_size: size,
            iterations: iterations(cfg, size),
            latency_us: Some(LatencySummary::mean_only(value(lat)?)),
            ..Default::default()
        };
        set_bandwidth(&mut r, value(bw.0)? * bw.1);
        for (c, name) in names.iter().enumerate() {
            if c == block {
                continue;
            }
            let key = FIGURES
                .iter()
                .find(|(h, _)| cols.find(&[h]) == Some(c))
                .map(|(_, k)| k.to_string())
                .unwrap_or_else(|| slug(name));
            r.extra.insert(key, num(value(c)?));
        }
        if let Some(b) = r.extra.get("batch_size").and_then(Value::as_f64) {
            r.extra.insert("batch_size".into(), Value::from(b as u64));
        }
        if r.iterations > 0 {
            r.extra
                .insert("iterations_from_config".into(), Value::from(true));
        }
        rows.push(r);
        i += 1;
    }
    Ok((rows, i))
}

/// Timed iterations of a block size, from the configuration block: nixlbench divides
/// `num_iter` by `large_blk_iter_ftr` above 1 MiB. 0 (absent) without a configuration block.
fn iterations(cfg: Option<&Map<String, Value>>, block: u64) -> u64 {
    let Some(cfg) = cfg else { return 0 };
    let Some(n) = cfg.get("num_iter").and_then(Value::as_u64) else {
        return 0;
    };
    let ftr = cfg
        .get("large_blk_iter_ftr")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1);
    if block > LARGE_BLOCK {
        n / ftr
    } else {
        n
    }
}

/// An unknown header cell as an `extra` key: `New Col (us)` -> `new_col_us`.
fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') && !s.is_empty() {
            s.push('_');
        }
    }
    s.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_give_option_names() {
        let (k, v) = config_entry("Num iter (--num_iter=N)            : 1008").unwrap();
        assert_eq!((k.as_str(), v), ("num_iter", "1008"));
        let (k, v) = config_entry("Backend (--backend=[UCX,GDS,OBJ]): UCX").unwrap();
        assert_eq!((k.as_str(), v), ("backend", "UCX"));
        let (k, v) = config_entry("ETCD Endpoint          : http://h:2379/").unwrap();
        assert_eq!((k.as_str(), v), ("etcd_endpoint", "http://h:2379/"));
        let (k, v) = config_entry("filenames (--filenames=a,b,...)   :").unwrap();
        assert_eq!((k.as_str(), v), ("filenames", ""));
    }

    #[test]
    fn iterations_follow_the_large_block_rule() {
        let mut cfg = Map::new();
        cfg.insert("num_iter".into(), 1008.into());
        cfg.insert("large_blk_iter_ftr".into(), 16.into());
        assert_eq!(iterations(Some(&cfg), 1 << 20), 1008);
        assert_eq!(iterations(Some(&cfg), 2 << 20), 63);
        assert_eq!(iterations(None, 4096), 0);
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("New Col (us)"), "new_col_us");
    }

    #[test]
    fn header_alone_or_garbage_is_an_error() {
        let h = "Block Size (B)      Batch Size     B/W (GB/Sec)   Avg Lat. (us)\n";
        assert!(matches!(parse(h), Err(ParseError::NoRows { line: 1, .. })));
        let e = parse("Segmentation fault (core dumped)\n").unwrap_err();
        assert!(matches!(e, ParseError::NoTable { .. }), "{e}");
        let no_bw = "Block Size (B)  Batch Size  Avg Lat. (us)\n4096  1  2.0\n";
        let e = parse(no_bw).unwrap_err();
        assert!(matches!(e, ParseError::MissingColumn { .. }), "{e}");
    }
}
