//! One allocation split into disjoint regions, each registrable on its own (`--reuse`: many
//! workers writing disjoint parts of one buffer).

use std::sync::Arc;

use super::{Buffer, HostBuffer, InFlight, MemIface};

/// A disjoint part of a shared host allocation; the allocation lives while any part does.
pub struct SharedRegion {
    base: Arc<HostBuffer>,
    offset: usize,
    len: usize,
    /// Operations in flight on this part, through any of its rail views.
    in_flight: Arc<InFlight>,
}

impl SharedRegion {
    /// Splits `buf` into `parts` consecutive regions of `part_len` bytes each.
    ///
    /// Returns None when the buffer is smaller than `parts * part_len`.
    pub fn split(buf: HostBuffer, parts: usize, part_len: usize) -> Option<Vec<SharedRegion>> {
        if parts.checked_mul(part_len)? > buf.len() {
            return None;
        }
        let base = Arc::new(buf);
        Some(
            (0..parts)
                .map(|i| SharedRegion {
                    base: Arc::clone(&base),
                    offset: i * part_len,
                    len: part_len,
                    in_flight: Arc::default(),
                })
                .collect(),
        )
    }

    /// Another handle on the same bytes, for registering them with a second rail (domain).
    ///
    /// The rails' handles reach the same memory and share one in-flight count, so a region
    /// registered over any of them hands out its bytes only while no rail has an operation on
    /// them in flight; a caller writes through one handle only.
    pub(crate) fn rail_view(&self) -> SharedRegion {
        SharedRegion {
            base: Arc::clone(&self.base),
            offset: self.offset,
            len: self.len,
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    /// Offset of this region in the allocation.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The region's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: offset..offset+len lies inside the allocation (checked in split); regions
        // are disjoint, so no other region hands out a mutable view of these bytes.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.offset), self.len) }
    }

    /// The region's bytes, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; &mut self makes this the only view of the region.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(self.offset) as *mut u8, self.len)
        }
    }
}

// SAFETY: the part lies inside an allocation the Arc keeps alive, which is never moved or resized.
unsafe impl Buffer for SharedRegion {
    // Pointers without a reference to the bytes: a rail view's operation may be writing them.
    fn as_ptr(&self) -> *const u8 {
        self.base.as_ptr().wrapping_add(self.offset)
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.base.as_ptr().wrapping_add(self.offset) as *mut u8
    }
    fn len(&self) -> usize {
        self.len
    }
    fn iface(&self) -> MemIface {
        MemIface::System
    }
    fn in_flight(&self) -> Option<Arc<InFlight>> {
        Some(Arc::clone(&self.in_flight))
    }
}

/// Host memory the kernel says is available for new allocations (MemAvailable), in bytes.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_disjoint_and_share_one_allocation() {
        let b = HostBuffer::new(3 * 4096).unwrap();
        let mut parts = SharedRegion::split(b, 3, 4096).unwrap();
        assert_eq!(parts[2].offset(), 8192);
        parts[1].as_mut_slice().fill(7);
        assert!(parts[0].as_slice().iter().all(|&x| x == 0));
        assert!(parts[1].as_slice().iter().all(|&x| x == 7));
        assert_eq!(
            parts[1].as_ptr() as usize - parts[0].as_ptr() as usize,
            4096
        );
        let p2 = parts.pop().unwrap();
        drop(parts);
        assert_eq!(p2.as_slice().len(), 4096);
        assert!(SharedRegion::split(HostBuffer::new(100).unwrap(), 2, 51).is_none());
    }

    #[test]
    fn meminfo_parsing() {
        let t = "MemTotal:       16384000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(parse_mem_available(t), Some(8_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        assert!(available_memory().unwrap() > 0);
    }
}
