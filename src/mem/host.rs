//! Page-aligned host buffers, touched at allocation so timing never pays for page faults.

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use super::{Buffer, MemError, MemIface};

const PAGE: usize = 4096;
/// A transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// A page-aligned, zero-filled host buffer.
pub struct HostBuffer {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    /// Page-locked for the CUDA driver (`pin`), undone before the memory is freed.
    #[cfg(feature = "cuda")]
    pinned: Option<super::driver::HostPin>,
}

// SAFETY: the buffer is uniquely owned heap memory.
unsafe impl Send for HostBuffer {}
// SAFETY: shared references only read.
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    fn from_parts(ptr: NonNull<u8>, len: usize, layout: Layout) -> HostBuffer {
        HostBuffer {
            ptr,
            len,
            layout,
            #[cfg(feature = "cuda")]
            pinned: None,
        }
    }

    /// Allocates `len` bytes (at least one page), page-aligned, every page touched.
    pub fn new(len: usize) -> Result<HostBuffer, MemError> {
        let size = len.max(1).div_ceil(PAGE) * PAGE;
        let layout = Layout::from_size_align(size, PAGE)
            .map_err(|_| MemError::OutOfMemory { bytes: len })?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(MemError::OutOfMemory { bytes: len })?;
        // Fault every page in now (calloc'd pages are mapped lazily).
        for off in (0..size).step_by(PAGE) {
            // SAFETY: off < size, inside the allocation.
            unsafe { ptr.as_ptr().add(off).write_volatile(0) };
        }
        Ok(HostBuffer::from_parts(ptr, len, layout))
    }

    /// Allocates `len` bytes aligned to 2 MiB and asks the kernel for transparent huge pages
    /// (madvise), as UCX's own allocator does for ucx_perftest's buffers: fewer TLB misses when
    /// a transport copies large messages. Zero-filled, every page touched. Where the kernel
    /// declines (THP disabled), the pages are ordinary ones.
    pub fn with_huge_pages(len: usize) -> Result<HostBuffer, MemError> {
        let size = len.max(1).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let layout = Layout::from_size_align(size, HUGE_PAGE)
            .map_err(|_| MemError::OutOfMemory { bytes: len })?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc(layout) };
        let ptr = NonNull::new(raw).ok_or(MemError::OutOfMemory { bytes: len })?;
        // SAFETY: ptr..ptr+size is our allocation; madvise only changes how it is backed (a
        // failure leaves ordinary pages, which is fine); the bytes are then zeroed, which also
        // faults every page in before any timing.
        unsafe {
            libc::madvise(ptr.as_ptr() as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            std::ptr::write_bytes(ptr.as_ptr(), 0, size);
        }
        Ok(HostBuffer::from_parts(ptr, len, layout))
    }

    /// Allocates `len` bytes for bulk copies: huge pages from 2 MiB up (as UCX's allocator
    /// gives ucx_perftest's buffers), ordinary pages below.
    pub fn for_bulk(len: usize) -> Result<HostBuffer, MemError> {
        if len >= HUGE_PAGE {
            HostBuffer::with_huge_pages(len)
        } else {
            HostBuffer::new(len)
        }
    }

    /// Page-locks the buffer with the CUDA driver (cuMemHostRegister, portable to every
    /// context), so copies to and from a device run at full DMA speed; the context of the
    /// device must be current.
    #[cfg(feature = "cuda")]
    pub fn pin(&mut self) -> Result<(), MemError> {
        if self.pinned.is_none() {
            let size = self.layout.size();
            self.pinned = Some(super::driver::HostPin::register(self.ptr.as_ptr(), size)?);
        }
        Ok(())
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised bytes while self lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for len bytes and uniquely borrowed through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // Unlocked before the memory goes back to the allocator.
        #[cfg(feature = "cuda")]
        drop(self.pinned.take());
        // SAFETY: allocated in new() with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: the allocation is uniquely owned by the buffer, never moved or resized, and freed only
// in Drop.
unsafe impl Buffer for HostBuffer {
    fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn iface(&self) -> MemIface {
        MemIface::System
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_writable() {
        let mut b = HostBuffer::new(10_000).unwrap();
        assert_eq!(b.len(), 10_000);
        assert_eq!(b.as_ptr() as usize % PAGE, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[9_999] = 7;
        assert_eq!(b.as_slice()[9_999], 7);
    }

    #[test]
    fn huge_page_buffers_are_aligned_zeroed_and_writable() {
        let mut b = HostBuffer::with_huge_pages(3 << 20).unwrap();
        assert_eq!(b.len(), 3 << 20);
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[(3 << 20) - 1] = 9;
        assert_eq!(b.as_slice()[(3 << 20) - 1], 9);
        assert!(HostBuffer::with_huge_pages(usize::MAX / 2).is_err());
    }

    #[test]
    fn bulk_buffers_take_huge_pages_from_2_mib() {
        let small = HostBuffer::for_bulk(HUGE_PAGE - 1).unwrap();
        assert_eq!(small.layout.align(), PAGE);
        assert_eq!(small.len(), HUGE_PAGE - 1);
        let big = HostBuffer::for_bulk(HUGE_PAGE).unwrap();
        assert_eq!(big.layout.align(), HUGE_PAGE);
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(big.as_slice().iter().all(|&x| x == 0));
    }

    #[test]
    fn absurd_size_is_an_error_not_an_abort() {
        assert!(HostBuffer::new(usize::MAX / 2).is_err());
    }
}
