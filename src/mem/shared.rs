//! One allocation split into disjoint regions, each registrable on its own (`--reuse`: many
//! workers writing disjoint parts of one buffer). The allocation is host memory or, in the
//! `cuda` build, device memory; the host fills and checks device regions through copies.

use std::sync::Arc;

#[cfg(feature = "cuda")]
use super::cuda::DeviceBuffer;
use super::{Buffer, HostBuffer, InFlight, MemError, MemIface};

/// The memory regions are cut from.
pub enum Allocation {
    /// Host memory.
    Host(HostBuffer),
    /// CUDA device memory.
    #[cfg(feature = "cuda")]
    Device(DeviceBuffer),
}

impl From<HostBuffer> for Allocation {
    fn from(b: HostBuffer) -> Self {
        Allocation::Host(b)
    }
}

#[cfg(feature = "cuda")]
impl From<DeviceBuffer> for Allocation {
    fn from(b: DeviceBuffer) -> Self {
        Allocation::Device(b)
    }
}

impl Allocation {
    fn base(&self) -> *const u8 {
        match self {
            Allocation::Host(b) => b.as_ptr(),
            #[cfg(feature = "cuda")]
            Allocation::Device(b) => b.as_ptr(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Allocation::Host(b) => b.len(),
            #[cfg(feature = "cuda")]
            Allocation::Device(b) => b.len(),
        }
    }
    fn iface(&self) -> MemIface {
        match self {
            Allocation::Host(b) => b.iface(),
            #[cfg(feature = "cuda")]
            Allocation::Device(b) => b.iface(),
        }
    }
}

/// A disjoint part of a shared allocation; the allocation lives while any part does.
pub struct SharedRegion {
    base: Arc<Allocation>,
    offset: usize,
    len: usize,
    /// Host bytes the pattern passes through when the region is device memory.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    shadow: Option<HostBuffer>,
    /// Operations in flight on this part, through any of its rail views.
    in_flight: Arc<InFlight>,
}

impl SharedRegion {
    /// Splits `buf` into `parts` consecutive regions of `part_len` bytes each.
    ///
    /// Returns None when the buffer is smaller than `parts * part_len`.
    pub fn split(
        buf: impl Into<Allocation>,
        parts: usize,
        part_len: usize,
    ) -> Option<Vec<SharedRegion>> {
        let buf = buf.into();
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
                    shadow: None,
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
            shadow: None,
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    /// Offset of this region in the allocation.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Makes device memory's context current on the calling thread (a no-op for host memory).
    pub fn bind_thread(&self) -> Result<(), MemError> {
        match &*self.base {
            Allocation::Host(_) => Ok(()),
            #[cfg(feature = "cuda")]
            Allocation::Device(d) => d.make_current(),
        }
    }

    /// Whether the region is device memory (filled and checked through host copies).
    pub fn is_device(&self) -> bool {
        self.base.iface() != MemIface::System
    }

    /// The device memory the region is cut from, when it is device memory.
    #[cfg(feature = "cuda")]
    pub fn device(&self) -> Option<&DeviceBuffer> {
        match &*self.base {
            Allocation::Device(d) => Some(d),
            Allocation::Host(_) => None,
        }
    }

    /// The region's bytes, when it is host memory.
    pub fn as_slice(&self) -> Option<&[u8]> {
        match &*self.base {
            Allocation::Host(b) => {
                // SAFETY: offset..offset+len lies inside the allocation (checked in split);
                // regions are disjoint, so no other region hands out a mutable view of them.
                let bytes =
                    unsafe { std::slice::from_raw_parts(b.as_ptr().add(self.offset), self.len) };
                Some(bytes)
            }
            #[cfg(feature = "cuda")]
            Allocation::Device(_) => None,
        }
    }

    /// The region's bytes, for writing, when it is host memory.
    pub fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        match &*self.base {
            // SAFETY: as in as_slice; &mut self makes this the only view of the region.
            Allocation::Host(b) => Some(unsafe {
                std::slice::from_raw_parts_mut(b.as_ptr().add(self.offset) as *mut u8, self.len)
            }),
            #[cfg(feature = "cuda")]
            Allocation::Device(_) => None,
        }
    }

    /// Evicts the region's bytes from every level of the CPU caches (`--cold-cache`); false
    /// for device memory, which the CPU does not cache, and where this build cannot evict.
    pub fn evict_from_cpu_caches(&self) -> bool {
        self.as_slice().is_some_and(super::cache::evict)
    }

    /// Copies the region's bytes into `dst` (its length at most the region's): a memcpy for
    /// host memory, a device-to-host copy for device memory.
    pub fn copy_out(&self, dst: &mut [u8]) -> Result<(), MemError> {
        self.check_copy(dst.len())?;
        match &*self.base {
            Allocation::Host(_) => {
                dst.copy_from_slice(&self.as_slice().expect("host memory")[..dst.len()]);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Allocation::Device(dev) => dev.copy_to_host_at(self.offset, dst),
        }
    }

    /// Copies `src` (its length at most the region's) to the region's start: a memcpy for
    /// host memory, a host-to-device copy for device memory.
    pub fn copy_in(&mut self, src: &[u8]) -> Result<(), MemError> {
        self.check_copy(src.len())?;
        match &*self.base {
            Allocation::Host(_) => {
                self.as_mut_slice().expect("host memory")[..src.len()].copy_from_slice(src);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Allocation::Device(dev) => dev.copy_from_host_at(self.offset, src),
        }
    }

    fn check_copy(&self, len: usize) -> Result<(), MemError> {
        if len > self.len {
            return Err(MemError::OutOfRange {
                offset: self.offset,
                len,
                size: self.len,
            });
        }
        Ok(())
    }

    /// Lets `f` write the region's bytes: in place for host memory; for device memory into
    /// host bytes then copied to the device (host to device, synchronous).
    pub fn fill_with(&mut self, f: impl FnOnce(&mut [u8])) -> Result<(), MemError> {
        match &*self.base {
            Allocation::Host(_) => {
                f(self.as_mut_slice().expect("host memory"));
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Allocation::Device(dev) => {
                let shadow = shadow(&mut self.shadow, self.len)?;
                f(shadow);
                dev.copy_from_host_at(self.offset, shadow)
            }
        }
    }

    /// Lets `f` read the region's bytes: in place for host memory; for device memory from a
    /// host copy made first (device to host, synchronous).
    pub fn read_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, MemError> {
        match &*self.base {
            Allocation::Host(_) => Ok(f(self.as_slice().expect("host memory"))),
            #[cfg(feature = "cuda")]
            Allocation::Device(dev) => {
                let shadow = shadow(&mut self.shadow, self.len)?;
                dev.copy_to_host_at(self.offset, shadow)?;
                Ok(f(shadow))
            }
        }
    }
}

/// The host bytes a device region's pattern passes through, allocated on first use.
#[cfg(feature = "cuda")]
fn shadow(slot: &mut Option<HostBuffer>, len: usize) -> Result<&mut [u8], MemError> {
    if slot.is_none() {
        *slot = Some(HostBuffer::for_bulk(len)?);
    }
    Ok(slot.as_mut().expect("just made").as_mut_slice())
}

// SAFETY: the part lies inside an allocation the Arc keeps alive, which is never moved or resized.
unsafe impl Buffer for SharedRegion {
    // Pointers without a reference to the bytes: a rail view's operation may be writing them.
    fn as_ptr(&self) -> *const u8 {
        // Device addresses are numbers the driver gives; wrapping_add computes one without
        // claiming host memory behind it.
        self.base.base().wrapping_add(self.offset)
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.base.base().wrapping_add(self.offset) as *mut u8
    }
    fn len(&self) -> usize {
        self.len
    }
    fn iface(&self) -> MemIface {
        self.base.iface()
    }
    #[cfg(feature = "cuda")]
    fn dmabuf(&self) -> Option<super::cuda::Dmabuf> {
        self.device()?.dmabuf(self.offset).ok()
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

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_available(text: &str) -> Option<u64> {
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
        parts[1].as_mut_slice().unwrap().fill(7);
        assert!(parts[0].as_slice().unwrap().iter().all(|&x| x == 0));
        assert!(parts[1].as_slice().unwrap().iter().all(|&x| x == 7));
        parts[0].fill_with(|b| b[5] = 3).unwrap();
        assert_eq!(parts[0].read_with(|b| b[5]).unwrap(), 3);
        assert!(!parts[0].is_device());
        assert_eq!(
            parts[1].as_ptr() as usize - parts[0].as_ptr() as usize,
            4096
        );
        let p2 = parts.pop().unwrap();
        drop(parts);
        assert_eq!(p2.as_slice().unwrap().len(), 4096);
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
