//! Sizes and counts as people type them (`64`, `1K`, `672M`) and as fabtests prints them.

/// A size that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeError {
    /// Empty input.
    #[error("empty size")]
    Empty,
    /// The number part is missing or not a number.
    #[error("{0:?} is not a size: expected a number with an optional K, M or G suffix (binary: 1K = 1024)")]
    NotANumber(String),
    /// The suffix is not one of K, M, G.
    #[error("{input:?} has an unknown unit {suffix:?}: use K, M or G (binary: 1K = 1024)")]
    BadSuffix { input: String, suffix: String },
    /// Zero bytes.
    #[error("size 0 is not a message size: the smallest is 1 byte")]
    Zero,
    /// Does not fit in 64 bits.
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses one size: a number with an optional binary suffix K, M, G (KiB/MiB/GiB accepted).
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(SizeError::NotANumber(input.to_string()));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| SizeError::Overflow(input.to_string()))?;
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(SizeError::BadSuffix {
                input: input.to_string(),
                suffix: suffix.to_string(),
            })
        }
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| SizeError::Overflow(input.to_string()))?;
    if v == 0 {
        return Err(SizeError::Zero);
    }
    Ok(v)
}

/// The sizes of fi_pingpong's `-S all`: 2^i and 2^i + 2^(i-1) up to 6 MiB, from 1 byte.
///
/// fi_pingpong's list also starts with a 0-byte message; kvxfer measures from 1 byte.
pub fn all_sizes() -> Vec<u64> {
    let mut v = Vec::new();
    for i in 0..23u32 {
        let p = 1u64 << i;
        v.push(p);
        if i > 0 {
            v.push(p + p / 2);
        }
    }
    v
}

/// Parses a comma-separated list of sizes, or `all`.
pub fn parse_size_list(input: &str) -> Result<Vec<u64>, SizeError> {
    if input.trim().eq_ignore_ascii_case("all") {
        return Ok(all_sizes());
    }
    input.split(',').map(parse_size).collect()
}

fn scaled(v: u64, units: &[(u64, char)]) -> String {
    for &(base, mag) in units {
        if v >= base {
            let whole = v / base;
            let frac = (v % base) * 10 / base;
            // fabtests prints a decimal only below ten units (1.5k, 12k, 37k).
            return if frac > 0 && whole < 10 {
                format!("{whole}.{frac}{mag}")
            } else {
                format!("{whole}{mag}")
            };
        }
    }
    v.to_string()
}

/// A byte count as fabtests prints it: binary units, one truncated decimal below ten units
/// (`1.5k`, `6m`, `12k` for 12800).
pub fn size_str(v: u64) -> String {
    scaled(v, &[(1 << 30, 'g'), (1 << 20, 'm'), (1 << 10, 'k')])
}

/// A count as fabtests prints it: decimal units (`1k` = 1000, `10k`).
pub fn cnt_str(v: u64) -> String {
    scaled(v, &[(1_000_000_000, 'b'), (1_000_000, 'm'), (1_000, 'k')])
}

/// The first bytes of a value a peer sent, in hex, for a message: ` (ff ff ff ...)`; empty
/// for no bytes.
pub fn hex_preview(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 8 { " ..." } else { "" };
    format!(" ({}{more})", hex.join(" "))
}

/// A size for people: `64`, `1K`, `672M`, or `1536` when not a whole unit.
pub fn human_size(v: u64) -> String {
    for (base, mag) in [(1u64 << 30, 'G'), (1 << 20, 'M'), (1 << 10, 'K')] {
        if v >= base && v % base == 0 {
            return format!("{}{mag}", v / base);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_sizes() {
        assert_eq!(
            parse_size_list("64,1K,64K,1M,10M,100M").unwrap(),
            vec![64, 1024, 65536, 1 << 20, 10 << 20, 100 << 20]
        );
        assert_eq!(parse_size("672M").unwrap(), 704_643_072);
        assert_eq!(parse_size("55m").unwrap(), 55 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
    }

    #[test]
    fn refuses_bad_sizes() {
        assert_eq!(parse_size("0"), Err(SizeError::Zero));
        assert!(matches!(
            parse_size("10X"),
            Err(SizeError::BadSuffix { .. })
        ));
        assert!(matches!(parse_size("K"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size("-5"), Err(SizeError::NotANumber(_))));
        assert!(matches!(
            parse_size("99999999999G"),
            Err(SizeError::Overflow(_))
        ));
        assert!(parse_size_list("64,,1K").is_err());
    }

    #[test]
    fn all_matches_fi_pingpong_list() {
        let a = all_sizes();
        assert_eq!(&a[..8], &[1, 2, 3, 4, 6, 8, 12, 16]);
        assert_eq!(*a.last().unwrap(), 6 << 20);
        assert_eq!(a.len(), 45);
    }

    #[test]
    fn fabtests_formats() {
        assert_eq!(size_str(64), "64");
        assert_eq!(size_str(1536), "1.5k");
        assert_eq!(size_str(1200), "1.1k"); // truncated, as fabtests prints
        assert_eq!(size_str(128_000), "125k");
        assert_eq!(size_str(3_276_800), "3.1m");
        // Seen in fi_pingpong's output: 64 B x 100 x 2 = 12800 is "12k", 38400 is "37k".
        assert_eq!(size_str(12_800), "12k");
        assert_eq!(size_str(38_400), "37k");
        assert_eq!(size_str(1_179_648), "1.1m");
        assert_eq!(cnt_str(1000), "1k");
        assert_eq!(cnt_str(100), "100");
        assert_eq!(cnt_str(20_000), "20k");
        assert_eq!(human_size(704_643_072), "672M");
        assert_eq!(human_size(1536), "1536");
    }
}
