//! One-sided posts (fi_write, fi_writedata, fi_read) on an endpoint, and the flags of the
//! completions they produce.

use libfabric_sys as sys;

use super::endpoint::{Endpoint, FiAddr};
use super::error::{posted, Result};

/// Completion flags kvxfer looks at.
pub mod cq_flags {
    use libfabric_sys as sys;
    /// A receive completed.
    pub const RECV: u64 = sys::FI_RECV as u64;
    /// A peer's RMA write landed here (with remote CQ data).
    pub const REMOTE_WRITE: u64 = sys::FI_REMOTE_WRITE as u64;
    /// The entry carries remote CQ data.
    pub const REMOTE_CQ_DATA: u64 = sys::FI_REMOTE_CQ_DATA as u64;
}

/// RMA posts. Each returns Ok(false) when the provider asks to retry (FI_EAGAIN).
///
/// # Safety (all posts)
/// `buf..buf+len` must lie in memory registered with this endpoint's domain, `desc` being
/// that region's descriptor, and must stay valid (and, for reads, untouched by the CPU) until
/// the operation's completion is read from the transmit CQ. `raddr..raddr+len` must lie inside
/// the peer's region of key `key`. `ctx` is returned in the completion and never dereferenced
/// by kvxfer; providers that need FI_CONTEXT are not selected. The endpoint of a
/// [`DataPath`](super::DataPath) takes posts only through it.
impl Endpoint {
    /// fi_write: `len` bytes from `buf` into the peer's memory at `raddr`.
    ///
    /// # Safety
    /// See the section above.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn write(
        &self,
        buf: *const u8,
        len: usize,
        desc: *mut libc::c_void,
        dest: FiAddr,
        raddr: u64,
        key: u64,
        ctx: *mut libc::c_void,
    ) -> Result<bool> {
        posted(
            "fi_write",
            // SAFETY: the caller keeps this fn's # Safety contract for the buffer.
            unsafe { sys::fi_write(self.as_raw(), buf as _, len, desc, dest, raddr, key, ctx) },
        )
    }

    /// fi_writedata: fi_write plus 64 bits of remote CQ data, delivered to the peer's receive
    /// CQ once the data is in place.
    ///
    /// # Safety
    /// See the section above.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn writedata(
        &self,
        buf: *const u8,
        len: usize,
        desc: *mut libc::c_void,
        data: u64,
        dest: FiAddr,
        raddr: u64,
        key: u64,
        ctx: *mut libc::c_void,
    ) -> Result<bool> {
        posted(
            "fi_writedata",
            // SAFETY: the caller keeps this fn's # Safety contract for the buffer.
            unsafe {
                sys::fi_writedata(
                    self.as_raw(),
                    buf as _,
                    len,
                    desc,
                    data,
                    dest,
                    raddr,
                    key,
                    ctx,
                )
            },
        )
    }

    /// fi_read: `len` bytes of the peer's memory at `raddr` into `buf`.
    ///
    /// # Safety
    /// See the section above.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn read(
        &self,
        buf: *mut u8,
        len: usize,
        desc: *mut libc::c_void,
        src: FiAddr,
        raddr: u64,
        key: u64,
        ctx: *mut libc::c_void,
    ) -> Result<bool> {
        posted(
            "fi_read",
            // SAFETY: the caller keeps this fn's # Safety contract for the buffer.
            unsafe { sys::fi_read(self.as_raw(), buf as _, len, desc, src, raddr, key, ctx) },
        )
    }

    /// fi_inject_write: fi_write with no completion; the buffer is reusable on return.
    ///
    /// # Safety
    /// `buf..buf+len` must be readable for the call and `raddr..raddr+len` lie inside the
    /// peer's region of key `key`.
    #[inline]
    pub unsafe fn inject_write(
        &self,
        buf: *const u8,
        len: usize,
        dest: FiAddr,
        raddr: u64,
        key: u64,
    ) -> Result<bool> {
        posted(
            "fi_inject_write",
            // SAFETY: the caller keeps this fn's # Safety contract for the buffer.
            unsafe { sys::fi_inject_write(self.as_raw(), buf as _, len, dest, raddr, key) },
        )
    }

    /// fi_inject_writedata: fi_writedata with no local completion.
    ///
    /// # Safety
    /// As [`inject_write`](Self::inject_write).
    #[inline]
    pub unsafe fn inject_writedata(
        &self,
        buf: *const u8,
        len: usize,
        data: u64,
        dest: FiAddr,
        raddr: u64,
        key: u64,
    ) -> Result<bool> {
        posted(
            "fi_inject_writedata",
            // SAFETY: the caller keeps this fn's # Safety contract for the buffer.
            unsafe {
                sys::fi_inject_writedata(self.as_raw(), buf as _, len, data, dest, raddr, key)
            },
        )
    }
}
