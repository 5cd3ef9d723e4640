//! The stock reference tools: their printed output parsed into the result schema, units
//! normalised, the tool's own figures kept in `results[].extra`.

pub mod crosscheck;
mod fabtests;
pub mod fi_pingpong;
pub mod fi_rma_pingpong;
pub mod kvbench;
pub mod nixlbench;
pub mod table;
pub mod ucx_perftest;

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::report::{ResultDoc, SizeResult, Status};

/// Bytes per second in one MB/s of the fabtests (10^6).
pub const FABTESTS_MB: f64 = 1e6;
/// Bytes per second in one MB/s of ucx_perftest (2^20).
pub const UCX_MB: f64 = 1_048_576.0;
/// Bytes per second in one GB/Sec of nixlbench (10^9).
pub const NIXL_GB: f64 = 1e9;

/// Why a tool's output could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is empty or blank.
    #[error("{tool}: the output is empty")]
    Empty {
        /// Tool whose output was expected.
        tool: &'static str,
    },
    /// No results table (header) was found.
    #[error("{tool}: no results table found (expected a header with {expected})")]
    NoTable {
        /// Tool whose output was expected.
        tool: &'static str,
        /// What the header should hold.
        expected: &'static str,
    },
    /// A header was found but no result row under it.
    #[error("{tool}: the results table at line {line} has no rows (output cut short?)")]
    NoRows {
        /// Tool whose output was parsed.
        tool: &'static str,
        /// Line of the header.
        line: usize,
    },
    /// A required column is missing from the header.
    #[error("{tool}: the table has no column {column:?} (columns found: {found})")]
    MissingColumn {
        /// Tool whose output was parsed.
        tool: &'static str,
        /// The column looked for.
        column: String,
        /// The header's cells.
        found: String,
    },
    /// A row holds a different number of fields than the header.
    #[error("{tool}: line {line} has {got} fields where the header has {want} (truncated row?)")]
    RowWidth {
        /// Tool whose output was parsed.
        tool: &'static str,
        /// 1-based line number.
        line: usize,
        /// Fields found.
        got: usize,
        /// Fields expected.
        want: usize,
    },
    /// A value does not parse as the number its column holds.
    #[error("{tool}: line {line}: column {column:?} holds {value:?}, not a number")]
    BadValue {
        /// Tool whose output was parsed.
        tool: &'static str,
        /// 1-based line number.
        line: usize,
        /// Column name.
        column: String,
        /// The text found.
        value: String,
    },
    /// The output stops before its final figures.
    #[error("{tool}: {what}")]
    Truncated {
        /// Tool whose output was parsed.
        tool: &'static str,
        /// What is missing.
        what: String,
    },
    /// The output holds more than one run where one document holds one.
    #[error("{tool}: {what}")]
    Ambiguous {
        /// Tool whose output was parsed.
        tool: &'static str,
        /// What was found.
        what: String,
    },
    /// A figure the document needs is not in the output and was not given.
    #[error("{tool}: {what}")]
    Missing {
        /// Tool whose output was parsed.
        tool: &'static str,
        /// What is missing and how to give it.
        what: String,
    },
}

/// The reference tools kvxfer parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// libfabric's `fi_pingpong` (L0).
    FiPingpong,
    /// fabtests' `fi_rma_pingpong` (L0).
    FiRmaPingpong,
    /// NIXL's `nixlbench` (L1).
    Nixlbench,
    /// NIXL's KVBench (L2).
    Kvbench,
    /// UCX's `ucx_perftest` (L3).
    UcxPerftest,
}

impl Tool {
    /// Every tool, in layer order.
    pub const ALL: [Tool; 5] = [
        Tool::FiPingpong,
        Tool::FiRmaPingpong,
        Tool::Nixlbench,
        Tool::Kvbench,
        Tool::UcxPerftest,
    ];

    /// The tool's name as the result schema and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Tool::FiPingpong => "fi_pingpong",
            Tool::FiRmaPingpong => "fi_rma_pingpong",
            Tool::Nixlbench => "nixlbench",
            Tool::Kvbench => "kvbench",
            Tool::UcxPerftest => "ucx_perftest",
        }
    }

    /// The measurement layer the tool witnesses.
    pub fn layer(self) -> &'static str {
        match self {
            Tool::FiPingpong | Tool::FiRmaPingpong => "L0",
            Tool::Nixlbench => "L1",
            Tool::Kvbench => "L2",
            Tool::UcxPerftest => "L3",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tool {
    type Err = String;

    fn from_str(s: &str) -> Result<Tool, String> {
        Tool::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Tool::ALL.iter().map(|t| t.name()).collect();
                format!("unknown tool {s:?} (one of {})", names.join(", "))
            })
    }
}

/// What the caller knows that the output may not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Message size in bytes (ucx_perftest's client does not print it).
    pub message_size: Option<u64>,
    /// Plan pattern the run belongs to.
    pub pattern_id: Option<String>,
}

/// Largest tool output `kvxfer parse` reads: a reference tool prints kilobytes, a long
/// nixlbench or ucx_perftest run a few megabytes.
pub const MAX_RAW_INPUT: u64 = 16 << 20;

/// Largest part of the tool's output kept in a document's `raw_output`: its head and tail,
/// half each, with a line saying how much was left out between them.
pub const MAX_RAW_OUTPUT: usize = 256 << 10;

/// `raw` as kept in a document: whole when at most [`MAX_RAW_OUTPUT`] bytes, else its head and
/// tail around a line saying how many bytes were left out.
pub fn bounded_raw(raw: &str) -> String {
    if raw.len() <= MAX_RAW_OUTPUT {
        return raw.to_string();
    }
    let half = MAX_RAW_OUTPUT / 2;
    let mut head = half;
    while !raw.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = raw.len() - half;
    while !raw.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[kvxfer: {} bytes of output left out]\n{}",
        &raw[..head],
        tail - head,
        &raw[tail..]
    )
}

/// Parses `raw`, the output of `tool`, into a result document.
pub fn parse(tool: Tool, raw: &str, opts: &ParseOptions) -> Result<ResultDoc, ParseError> {
    if raw.trim().is_empty() {
        return Err(ParseError::Empty { tool: tool.name() });
    }
    let mut doc = match tool {
        Tool::FiPingpong => fi_pingpong::parse(raw)?,
        Tool::FiRmaPingpong => fi_rma_pingpong::parse(raw)?,
        Tool::Nixlbench => nixlbench::parse(raw)?,
        Tool::Kvbench => kvbench::parse(raw)?,
        Tool::UcxPerftest => ucx_perftest::parse(raw, opts.message_size)?,
    };
    doc.pattern_id = opts.pattern_id.clone();
    doc.raw_output = Some(bounded_raw(raw));
    Ok(doc)
}

/// A new document for a parsed tool, complete, with its results.
pub(crate) fn document(
    tool: Tool,
    bench: &str,
    config: Map<String, Value>,
    results: Vec<SizeResult>,
) -> ResultDoc {
    let mut doc = ResultDoc::new(tool.name(), bench, tool.layer());
    doc.status = Status::Complete;
    doc.config = config;
    doc.results = results;
    doc
}

/// Both bandwidth fields from bytes per second.
pub(crate) fn set_bandwidth(r: &mut SizeResult, bytes_per_s: f64) {
    r.bandwidth_gbps = Some(bytes_per_s / 1e9);
    r.bandwidth_mbps = Some(bytes_per_s / 1e6);
}

/// A JSON number for `extra`.
pub(crate) fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn raw_output_keeps_head_and_tail_within_the_bound() {
        assert_eq!(bounded_raw("short"), "short");
        // A two-byte character straddles the head's cut: the head stops before it.
        let half = MAX_RAW_OUTPUT / 2;
        let big = format!("{}é{}", "a".repeat(half - 1), "z".repeat(half + 999));
        let kept = bounded_raw(&big);
        // The é (2 bytes) and 999 z's are left out.
        let want = format!(
            "{}\n[kvxfer: 1001 bytes of output left out]\n{}",
            "a".repeat(half - 1),
            "z".repeat(half)
        );
        assert!(kept == want, "{} bytes kept", kept.len());
    }
}
