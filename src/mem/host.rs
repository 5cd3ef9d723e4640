//! Page-aligned host buffers, touched at allocation so timing never pays for page faults.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use super::{Buffer, MemError, MemIface};

const PAGE: usize = 4096;

/// A page-aligned, zero-filled host buffer.
pub struct HostBuffer {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the buffer is uniquely owned heap memory.
unsafe impl Send for HostBuffer {}
// SAFETY: shared references only read.
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
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
        Ok(HostBuffer { ptr, len, layout })
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
        // SAFETY: allocated in new() with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl Buffer for HostBuffer {
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
    fn absurd_size_is_an_error_not_an_abort() {
        assert!(HostBuffer::new(usize::MAX / 2).is_err());
    }
}
