//! The shared tokenizer of the reference parsers: line cleaning, header splitting, columns found
//! by name, and the number formats the tools print.

use super::ParseError;

/// One line of the tool's output after cleaning, with its 1-based number in the raw text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number in the raw text.
    pub no: usize,
    /// The text without CI timestamp prefix, carriage return or trailing space.
    pub text: &'a str,
}

/// Splits `raw` into cleaned lines: CI timestamp prefixes and trailing whitespace removed.
pub fn lines(raw: &str) -> Vec<Line<'_>> {
    raw.lines()
        .enumerate()
        .map(|(i, l)| Line {
            no: i + 1,
            text: strip_timestamp(l).trim_end(),
        })
        .collect()
}

/// Removes a leading CI timestamp: `[2026-02-24T08:52:13.374Z] ` (Jenkins) or
/// `2026-02-24T08:52:13.1234567Z ` (GitHub Actions).
pub fn strip_timestamp(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            if is_iso_timestamp(&rest[..end]) {
                let after = &rest[end + 1..];
                return after.strip_prefix(' ').unwrap_or(after);
            }
        }
        return line;
    }
    let first = line.split(' ').next().unwrap_or("");
    if is_iso_timestamp(first) {
        let after = &line[first.len()..];
        return after.strip_prefix(' ').unwrap_or(after);
    }
    line
}

/// True for `YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm]`.
fn is_iso_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 19 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19..]
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'Z' | b'+' | b'-' | b':'))
}

/// True for a line made only of one repeated rule character (`-`, `*`, `=`, `+`, `|`), at least
/// ten long.
pub fn is_rule(text: &str) -> bool {
    let t = text.trim();
    t.len() >= 10 && t.chars().all(|c| matches!(c, '-' | '*' | '=' | '+' | '|'))
}

/// Splits a header whose names may hold single spaces (`Block Size (B)`): cells are separated
/// by two or more spaces or a tab.
pub fn split_header(text: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut spaces = 0usize;
    for c in text.trim().chars() {
        if c == ' ' || c == '\t' {
            spaces += if c == '\t' { 2 } else { 1 };
            continue;
        }
        if spaces >= 2 && !cur.is_empty() {
            cells.push(std::mem::take(&mut cur));
        } else if spaces == 1 {
            cur.push(' ');
        }
        spaces = 0;
        cur.push(c);
    }
    if !cur.is_empty() {
        cells.push(cur);
    }
    cells
}

/// The columns of one table, looked up by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    tool: &'static str,
    names: Vec<String>,
}

impl Columns {
    /// Columns named as the header cells, in order.
    pub fn new(tool: &'static str, names: Vec<String>) -> Columns {
        Columns { tool, names }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the header has no cell.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The header cells.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Index of the first column whose name matches one of `aliases` (case and spacing ignored).
    pub fn find(&self, aliases: &[&str]) -> Option<usize> {
        aliases.iter().find_map(|a| {
            let want = normalise(a);
            self.names.iter().position(|n| normalise(n) == want)
        })
    }

    /// Like [`Columns::find`], but a missing column is an error naming it.
    pub fn require(&self, aliases: &[&str]) -> Result<usize, ParseError> {
        self.find(aliases).ok_or_else(|| ParseError::MissingColumn {
            tool: self.tool,
            column: aliases.first().copied().unwrap_or_default().to_string(),
            found: self.names.join(" | "),
        })
    }
}

/// Lower case with runs of whitespace collapsed, for comparing header names.
fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Parses a decimal number, naming the line and column on failure.
pub fn number(
    tool: &'static str,
    line: usize,
    column: &str,
    value: &str,
) -> Result<f64, ParseError> {
    let v: f64 = value.parse().map_err(|_| bad(tool, line, column, value))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(bad(tool, line, column, value))
    }
}

/// Parses a non-negative integer, naming the line and column on failure.
pub fn integer(
    tool: &'static str,
    line: usize,
    column: &str,
    value: &str,
) -> Result<u64, ParseError> {
    value.parse().map_err(|_| bad(tool, line, column, value))
}

/// The error for a value that does not parse.
pub fn bad(tool: &'static str, line: usize, column: &str, value: &str) -> ParseError {
    ParseError::BadValue {
        tool,
        line,
        column: column.to_string(),
        value: value.to_string(),
    }
}

/// Splits `1.5k` into its number and its unit letter (lower case), if any.
fn split_suffix(s: &str) -> Option<(&str, Option<char>)> {
    let last = s.chars().last()?;
    if last.is_ascii_alphabetic() {
        Some((&s[..s.len() - 1], Some(last.to_ascii_lowercase())))
    } else {
        Some((s, None))
    }
}

/// Applies a unit to `int.frac`, where the fabtests print one truncated fraction digit.
fn scaled(num: &str, base: u64) -> Option<u64> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || !int.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = int.parse().ok()?;
    let mut value = whole.checked_mul(base)?;
    // Each fraction digit adds digit * base / 10^k; exact for the one digit the tools print.
    let mut div = 1u64;
    for d in frac.bytes() {
        div = div.checked_mul(10)?;
        value = value.checked_add(u64::from(d - b'0') * base / div)?;
    }
    Some(value)
}

/// A size as fabtests print it: `64`, `1k` (1024), `1.5k` (1536), `1m`, `1g`, `1t` (binary).
pub fn size_binary(s: &str) -> Option<u64> {
    let (num, unit) = split_suffix(s)?;
    let base = match unit {
        None => 1,
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some('t') => 1 << 40,
        Some(_) => return None,
    };
    scaled(num, base)
}

/// A count as fabtests print it: `20`, `10k` (10,000), `1m` (10^6), `1b` or `1g` (10^9).
pub fn count_decimal(s: &str) -> Option<u64> {
    let (num, unit) = split_suffix(s)?;
    let base = match unit {
        None => 1,
        Some('k') => 1_000,
        Some('m') => 1_000_000,
        Some('b') | Some('g') => 1_000_000_000,
        Some(_) => return None,
    };
    scaled(num, base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ci_timestamps_only() {
        assert_eq!(
            strip_timestamp("[2026-02-24T08:52:13.374Z] 4096  1"),
            "4096  1"
        );
        assert_eq!(strip_timestamp("[2026-02-24T08:52:13.373Z]"), "");
        assert_eq!(
            strip_timestamp("2026-02-24T08:52:13.1234567Z hello"),
            "hello"
        );
        assert_eq!(strip_timestamp("[info] not a stamp"), "[info] not a stamp");
        assert_eq!(strip_timestamp("4096 1 0.2"), "4096 1 0.2");
    }

    #[test]
    fn header_cells_keep_inner_single_spaces() {
        let h = split_header("Block Size (B)      Batch Size     B/W (GB/Sec)   Avg Lat. (us)");
        assert_eq!(
            h,
            [
                "Block Size (B)",
                "Batch Size",
                "B/W (GB/Sec)",
                "Avg Lat. (us)"
            ]
        );
        let h = split_header("bytes   #sent   #ack     total       time     MB/sec");
        assert_eq!(h, ["bytes", "#sent", "#ack", "total", "time", "MB/sec"]);
    }

    #[test]
    fn columns_are_found_by_name() {
        let c = Columns::new("t", split_header("a  Avg  Lat.  (us)  B/W (GB/Sec)"));
        assert_eq!(c.find(&["b/w  (gb/sec)"]), Some(4));
        assert_eq!(c.find(&["nope", "a"]), Some(0));
        let e = c.require(&["Batch Size"]).unwrap_err().to_string();
        assert!(e.contains("Batch Size"), "{e}");
    }

    #[test]
    fn fabtests_sizes_are_binary_and_counts_decimal() {
        assert_eq!(size_binary("64"), Some(64));
        assert_eq!(size_binary("1k"), Some(1024));
        assert_eq!(size_binary("1.5k"), Some(1536));
        assert_eq!(size_binary("1m"), Some(1 << 20));
        assert_eq!(size_binary("1.5m"), Some(3 << 19));
        assert_eq!(size_binary("2g"), Some(2 << 30));
        assert_eq!(size_binary("1x"), None);
        assert_eq!(size_binary("k"), None);
        assert_eq!(size_binary("1.k"), Some(1024));
        assert_eq!(size_binary("-1k"), None);
        assert_eq!(count_decimal("10k"), Some(10_000));
        assert_eq!(count_decimal("20"), Some(20));
        assert_eq!(count_decimal("1m"), Some(1_000_000));
        assert_eq!(count_decimal("2.5k"), Some(2_500));
        assert_eq!(count_decimal(""), None);
        assert_eq!(count_decimal("99999999999999999999k"), None);
    }

    #[test]
    fn rules_and_numbers() {
        assert!(is_rule(&"-".repeat(80)));
        assert!(is_rule("+--------------+----------+"));
        assert!(!is_rule("---"));
        assert!(number("t", 1, "c", "1.018200").unwrap() == 1.0182);
        assert!(number("t", 1, "c", "nan").is_err());
        assert!(integer("t", 1, "c", "4.5").is_err());
    }
}
