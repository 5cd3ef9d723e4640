//! How host memory is backed: the share of a range's mappings that the kernel gave
//! transparent huge pages, read from `/proc/self/smaps` (registration pins and maps each page,
//! so a region in 4 KiB pages costs up to 512x the entries of one in 2 MiB pages).

use serde::{Deserialize, Serialize};

/// The mappings that hold a range of host memory: their bytes and how many of them lie in
/// transparent huge pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backing {
    /// Bytes of the mappings (VMAs) that overlap the range.
    pub mapped_bytes: u64,
    /// Of those, bytes in transparent huge pages (smaps' `AnonHugePages`).
    pub huge_bytes: u64,
}

impl Backing {
    /// The huge-page share of the mappings, in %; None for no mapping.
    pub fn huge_pct(&self) -> Option<f64> {
        (self.mapped_bytes > 0).then(|| 100.0 * self.huge_bytes as f64 / self.mapped_bytes as f64)
    }
}

/// The backing of `len` bytes at `ptr` in this process; None where `/proc/self/smaps` cannot
/// be read or holds no mapping of the range (not host memory).
pub fn backing(ptr: *const u8, len: usize) -> Option<Backing> {
    let start = ptr as u64;
    let end = start.checked_add(len.max(1) as u64)?;
    let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
    parse_backing(&text, start, end)
}

/// The backing of `start..end` from the text of an smaps file: every mapping that overlaps
/// the range counts whole. None when no mapping overlaps it.
pub fn parse_backing(smaps: &str, start: u64, end: u64) -> Option<Backing> {
    let mut total = Backing::default();
    let mut inside = false;
    let mut found = false;
    for line in smaps.lines() {
        if let Some((lo, hi)) = mapping_range(line) {
            inside = lo < end && start < hi;
            if inside {
                found = true;
                total.mapped_bytes += hi - lo;
            }
        } else if inside {
            if let Some(kb) = line.strip_prefix("AnonHugePages:").and_then(kilobytes) {
                total.huge_bytes += kb * 1024;
            }
        }
    }
    found.then_some(total)
}

/// `lo-hi` of a mapping's header line (`7f00-7f80 rw-p 00000000 00:00 0`), None for a field
/// line.
fn mapping_range(line: &str) -> Option<(u64, u64)> {
    let first = line.split_whitespace().next()?;
    let (lo, hi) = first.split_once('-')?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    (lo < hi).then_some((lo, hi))
}

/// `   2048 kB` -> 2048.
fn kilobytes(rest: &str) -> Option<u64> {
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55f05d03c000-55f05d8f2000 r-xp 001f5000 fe:00 5439500    /usr/bin/kvxfer
Size:               8920 kB
AnonHugePages:         0 kB
VmFlags: rd ex mr mw me
7f7988600000-7f798be00000 rw-p 00000000 00:00 0
Size:              57344 kB
Rss:               57344 kB
AnonHugePages:     40960 kB
THPeligible:    1
VmFlags: rd wr mr mw me ac hg
7f798be00000-7f798c000000 rw-p 00000000 00:00 0
Size:               2048 kB
AnonHugePages:      2048 kB
VmFlags: rd wr mr mw me ac hg
";

    #[test]
    fn a_range_inside_one_mapping_takes_that_mapping() {
        let b = parse_backing(SMAPS, 0x7f7988600000 + 4096, 0x7f7988600000 + (8 << 20)).unwrap();
        assert_eq!(b.mapped_bytes, 57344 * 1024);
        assert_eq!(b.huge_bytes, 40960 * 1024);
        assert!((b.huge_pct().unwrap() - 71.428).abs() < 0.01);
    }

    #[test]
    fn a_range_across_mappings_sums_them_and_ends_are_exclusive() {
        let b = parse_backing(SMAPS, 0x7f798bc00000, 0x7f798c000000).unwrap();
        assert_eq!(b.mapped_bytes, (57344 + 2048) * 1024);
        assert_eq!(b.huge_bytes, (40960 + 2048) * 1024);
        // Ends where the second mapping begins: the first one alone.
        let b = parse_backing(SMAPS, 0x7f7988600000, 0x7f798be00000).unwrap();
        assert_eq!(b.huge_bytes, 40960 * 1024);
    }

    #[test]
    fn no_mapping_or_bad_text_is_none() {
        assert_eq!(parse_backing(SMAPS, 0x1000, 0x2000), None);
        assert_eq!(
            parse_backing("garbage\nAnonHugePages: x kB\n", 0, u64::MAX),
            None
        );
        assert_eq!(Backing::default().huge_pct(), None);
    }

    #[test]
    fn this_process_s_heap_has_a_mapping() {
        let v = vec![1u8; 1 << 20];
        let b = backing(v.as_ptr(), v.len()).expect("/proc/self/smaps maps the heap");
        assert!(b.mapped_bytes >= 1 << 20);
        assert!(b.huge_bytes <= b.mapped_bytes);
    }
}
