//! Registered memory: a region owns its buffer, so the memory cannot move or vanish under the NIC.

use std::ptr::NonNull;
use std::sync::Arc;

use libfabric_sys as sys;

use super::domain::{close_fid, Domain, DomainInner};
use super::error::{check, Result};
use crate::mem::{Buffer, MemIface};

/// A buffer registered with a domain (fi_mr_regattr).
pub struct MemoryRegion<B: Buffer> {
    raw: NonNull<sys::fid_mr>,
    buf: B,
    _domain: Arc<DomainInner>,
}

// SAFETY: the region is a handle plus an owned buffer; it moves between threads with its owner.
unsafe impl<B: Buffer> Send for MemoryRegion<B> {}

impl<B: Buffer> Drop for MemoryRegion<B> {
    fn drop(&mut self) {
        // SAFETY: raw is live; closing it before `buf` drops keeps the NIC off freed memory.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "memory region");
    }
}

impl<B: Buffer> MemoryRegion<B> {
    /// Registers the whole buffer with the given access bits (`caps::SEND | caps::RECV | ...`).
    pub fn register(domain: &Domain, mut buf: B, access: u64) -> Result<Self> {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut attr = sys::fi_mr_attr {
            mr_iov: &iov as *const libc::iovec as *const sys::iovec,
            iov_count: 1,
            access,
            ..Default::default()
        };
        match buf.iface() {
            MemIface::System => attr.iface = sys::FI_HMEM_SYSTEM,
            MemIface::Cuda(dev) => {
                attr.iface = sys::FI_HMEM_CUDA;
                attr.device.cuda = dev;
            }
        }
        let mut raw: *mut sys::fid_mr = std::ptr::null_mut();
        // SAFETY: attr points at iov, valid for the call; the buffer outlives the region.
        let ret = unsafe { sys::fi_mr_regattr(domain.inner.raw.as_ptr(), &attr, 0, &mut raw) };
        check("fi_mr_regattr", ret)?;
        Ok(MemoryRegion {
            raw: NonNull::new(raw).expect("fi_mr_regattr succeeded with NULL"),
            buf,
            _domain: domain.inner.clone(),
        })
    }

    /// The local descriptor passed with data-path calls.
    pub fn desc(&self) -> *mut libc::c_void {
        // SAFETY: raw is a live region.
        unsafe { sys::fi_mr_desc(self.raw.as_ptr()) }
    }

    /// The key a peer uses for RMA into this region.
    pub fn key(&self) -> u64 {
        // SAFETY: raw is a live region.
        unsafe { sys::fi_mr_key(self.raw.as_ptr()) }
    }

    /// The registered buffer.
    pub fn buf(&self) -> &B {
        &self.buf
    }

    /// The registered buffer, for writing.
    pub fn buf_mut(&mut self) -> &mut B {
        &mut self.buf
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *mut sys::fid_mr {
        self.raw.as_ptr()
    }
}
