//! Fabric and Domain handles; each child holds its parent alive, so close order is enforced.

use std::ptr::NonNull;
use std::sync::Arc;

use libfabric_sys as sys;

use super::error::{opened, Result};
use super::info::Info;

/// Closes a fid, recording (never panicking on) a failure.
pub(crate) fn close_fid(fid: *mut sys::fid, what: &str) {
    // SAFETY: callers pass a fid they own and close exactly once, after all children closed.
    let ret = unsafe { sys::fi_close(fid) };
    if ret != 0 {
        crate::teardown::record(format!(
            "closing {what} failed: {}",
            super::error::strerror(ret)
        ));
    }
}

pub(crate) struct FabricInner {
    pub(crate) raw: NonNull<sys::fid_fabric>,
}

// SAFETY: libfabric fabric objects may be used from any thread (threading >= FI_THREAD_DOMAIN
// only restricts endpoints and CQs, which kvxfer drives from one thread each).
unsafe impl Send for FabricInner {}
// SAFETY: as above.
unsafe impl Sync for FabricInner {}

impl Drop for FabricInner {
    fn drop(&mut self) {
        // SAFETY: raw is a live fabric; every child holds an Arc of this, so none is left.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "fabric");
    }
}

/// An opened fabric (fi_fabric).
#[derive(Clone)]
pub struct Fabric {
    pub(crate) inner: Arc<FabricInner>,
}

impl Fabric {
    /// Opens the fabric an fi_info entry describes.
    pub fn open(info: &Info) -> Result<Fabric> {
        let mut raw: *mut sys::fid_fabric = std::ptr::null_mut();
        // SAFETY: info is a valid fi_info; raw receives a handle we close in Drop.
        let ret =
            unsafe { sys::fi_fabric((*info.as_raw()).fabric_attr, &mut raw, std::ptr::null_mut()) };
        let raw = opened("fi_fabric", ret, raw)?;
        Ok(Fabric {
            inner: Arc::new(FabricInner { raw }),
        })
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *mut sys::fid_fabric {
        self.inner.raw.as_ptr()
    }
}

pub(crate) struct DomainInner {
    pub(crate) raw: NonNull<sys::fid_domain>,
    _fabric: Arc<FabricInner>,
}

// SAFETY: see FabricInner.
unsafe impl Send for DomainInner {}
// SAFETY: see FabricInner.
unsafe impl Sync for DomainInner {}

impl Drop for DomainInner {
    fn drop(&mut self) {
        // SAFETY: raw is a live domain with no live children (they hold Arcs of this).
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "domain");
    }
}

/// An opened access domain (fi_domain).
#[derive(Clone)]
pub struct Domain {
    pub(crate) inner: Arc<DomainInner>,
}

impl Domain {
    /// Opens the domain of an fi_info entry on a fabric.
    pub fn open(fabric: &Fabric, info: &Info) -> Result<Domain> {
        let mut raw: *mut sys::fid_domain = std::ptr::null_mut();
        // SAFETY: fabric and info are valid; raw receives a handle we close in Drop.
        let ret = unsafe {
            sys::fi_domain(
                fabric.inner.raw.as_ptr(),
                info.as_raw(),
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        let raw = opened("fi_domain", ret, raw)?;
        Ok(Domain {
            inner: Arc::new(DomainInner {
                raw,
                _fabric: fabric.inner.clone(),
            }),
        })
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *mut sys::fid_domain {
        self.inner.raw.as_ptr()
    }
}
