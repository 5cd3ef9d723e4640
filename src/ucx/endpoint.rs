//! Endpoints to a peer worker, created from its address, and what UCX chose for them.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ucx_sys as sys;

use super::capture::capture;
use super::error::{opened, request_error, Result, UcxError};
use super::memory::MemHandleRef;
use super::peer::{check_packed_rkey, check_worker_address};
use super::worker::{op_param, SendParams, Worker, WorkerInner};

/// One-sided operation direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rma {
    /// Local buffer to remote memory.
    Put,
    /// Remote memory to local buffer.
    Get,
}

pub(crate) struct EndpointInner {
    pub(crate) raw: NonNull<sys::ucp_ep>,
    pub(crate) worker: Rc<WorkerInner>,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        // Flush-close (a forced close needs peer error handling, which kvxfer does not ask
        // for); bounded, so a vanished peer cannot hang the exit.
        let param = sys::ucp_request_param_t::default();
        // SAFETY: raw is a live endpoint of a live worker (we hold an Rc of it); remote keys
        // hold an Rc of this, so none is left.
        let ptr = unsafe { sys::api().ucp_ep_close_nbx(self.raw.as_ptr(), &param) };
        if let Err(e) = finish(&self.worker, ptr, Duration::from_secs(2), "endpoint close") {
            crate::teardown::record(format!("closing a UCX endpoint: {e}"));
        }
    }
}

/// Progresses `worker` until the request `ptr` (from a `*_nbx` call) completes, then frees it.
fn finish(
    worker: &WorkerInner,
    ptr: sys::ucs_status_ptr_t,
    timeout: Duration,
    op: &'static str,
) -> Result<()> {
    if sys::UCS_PTR_IS_ERR(ptr) {
        return Err(request_error(op, sys::UCS_PTR_STATUS(ptr)));
    }
    let Some(req) = NonNull::new(ptr) else {
        return Ok(());
    };
    let start = Instant::now();
    loop {
        // SAFETY: worker and request are live; the request is freed once, below.
        let status = unsafe {
            sys::api().ucp_worker_progress(worker.raw.as_ptr());
            sys::api().ucp_request_check_status(req.as_ptr())
        };
        worker.progress_companion();
        if status != sys::UCS_INPROGRESS as sys::ucs_status_t {
            // SAFETY: completed request, freed exactly once.
            unsafe { sys::api().ucp_request_free(req.as_ptr()) };
            if status == sys::UCS_OK as sys::ucs_status_t {
                return Ok(());
            }
            return Err(request_error(op, status));
        }
        if start.elapsed() > timeout {
            // SAFETY: freeing an unfinished request hands it back to UCX for release.
            unsafe { sys::api().ucp_request_free(req.as_ptr()) };
            return Err(UcxError::Timeout {
                what: op,
                secs: timeout.as_secs_f64(),
            });
        }
    }
}

/// A connection to one peer worker (ucp_ep_create).
pub struct Endpoint {
    pub(crate) inner: Rc<EndpointInner>,
}

impl Endpoint {
    /// Connects to the worker whose address (from [`Worker::address`]) the peer sent us.
    pub fn connect(worker: &Worker, peer_address: &[u8]) -> Result<Endpoint> {
        check_worker_address(peer_address)?;
        let params = sys::ucp_ep_params_t {
            field_mask: (sys::UCP_EP_PARAM_FIELD_REMOTE_ADDRESS
                | sys::UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE) as u64,
            address: peer_address.as_ptr() as *const sys::ucp_address_t,
            err_mode: sys::UCP_ERR_HANDLING_MODE_NONE,
            ..Default::default()
        };
        let mut raw: sys::ucp_ep_h = std::ptr::null_mut();
        // SAFETY: the worker is live; params point at the address bytes, valid for the call
        // (UCP copies what it needs); raw receives an endpoint closed in Drop.
        let status =
            unsafe { sys::api().ucp_ep_create(worker.inner.raw.as_ptr(), &params, &mut raw) };
        let raw = opened("ucp_ep_create", status, raw, || {
            "; the peer's transports may not reach this host's (compare UCX_TLS and \
             UCX_NET_DEVICES on both sides)"
                .into()
        })?;
        Ok(Endpoint {
            inner: Rc::new(EndpointInner {
                raw,
                worker: worker.inner.clone(),
            }),
        })
    }

    /// Sends `len` bytes at `buf` with `tag`; returns UCX's status pointer as is (NULL: the
    /// send completed in place).
    ///
    /// # Safety
    /// `buf` must be valid for reads of `len` bytes until the request completes, or, if it is
    /// never settled, until this endpoint is closed.
    #[inline(always)]
    pub(super) unsafe fn tag_send_with(
        &self,
        buf: *const u8,
        len: usize,
        tag: u64,
        params: &SendParams,
    ) -> sys::ucs_status_ptr_t {
        // SAFETY: the endpoint is live; buf per the caller's contract; params valid for the
        // call.
        unsafe {
            sys::api().ucp_tag_send_nbx(
                self.inner.raw.as_ptr(),
                buf as *const c_void,
                len,
                tag,
                &params.0,
            )
        }
    }

    /// A put (from `buf`) or a get (into `buf`), returning UCX's status pointer as is.
    ///
    /// # Safety
    /// `buf` valid for reads (put) or writes (get) of `len` bytes until the operation
    /// completes; `remote_addr..+len` inside the peer's region that `rkey` covers.
    #[inline]
    pub(super) unsafe fn rma_status(
        &self,
        op: Rma,
        buf: *mut u8,
        len: usize,
        remote_addr: u64,
        rkey: &RemoteKey,
        memh: Option<MemHandleRef>,
    ) -> sys::ucs_status_ptr_t {
        let param = op_param(memh);
        let (ep, rkey) = (self.inner.raw.as_ptr(), rkey.raw.as_ptr());
        // SAFETY: endpoint and rkey are live (the rkey was unpacked on this endpoint); buffer
        // and remote range per the caller's contract.
        unsafe {
            match op {
                Rma::Put => {
                    sys::api().ucp_put_nbx(ep, buf as *const c_void, len, remote_addr, rkey, &param)
                }
                Rma::Get => {
                    sys::api().ucp_get_nbx(ep, buf as *mut c_void, len, remote_addr, rkey, &param)
                }
            }
        }
    }

    /// Starts a flush of this endpoint (every operation issued so far completes, remotely for
    /// puts); returns UCX's status pointer as is.
    pub(super) fn flush_status(&self) -> sys::ucs_status_ptr_t {
        let param = sys::ucp_request_param_t::default();
        // SAFETY: the endpoint is live; param valid for the call.
        unsafe { sys::api().ucp_ep_flush_nbx(self.inner.raw.as_ptr(), &param) }
    }

    /// Completes every operation issued on this endpoint (remotely, for puts).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let ptr = self.flush_status();
        finish(&self.inner.worker, ptr, timeout, "endpoint flush")
    }

    /// UCP's description of the endpoint: its lanes (transport/device each) and protocols.
    pub fn print_info(&self) -> String {
        // SAFETY: the endpoint is live; the stream is valid for the call.
        capture(|f| unsafe { sys::api().ucp_ep_print_info(self.inner.raw.as_ptr(), f as _) })
    }

    /// The transports this endpoint uses, one `transport/device` per lane (`tcp/lo`).
    pub fn transports(&self) -> Vec<String> {
        parse_lanes(&self.print_info())
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> sys::ucp_ep_h {
        self.inner.raw.as_ptr()
    }
}

/// Reads the `lane[N]:  K:tcp/lo.0 md[0] -> ...` lines of ucp_ep_print_info into
/// `transport/device` names, in lane order, without repeats.
pub fn parse_lanes(info: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in info.lines() {
        let Some(rest) = line
            .split_once("lane[")
            .and_then(|(_, r)| r.split_once("]:"))
        else {
            continue;
        };
        // "  0:tcp/lo.0 md[0] ..." -> "tcp/lo.0"
        let Some(word) = rest.1.split_whitespace().next() else {
            continue;
        };
        let name = word.split_once(':').map(|(_, n)| n).unwrap_or(word);
        // Drop the trailing ".<path index>".
        let name = match name.rsplit_once('.') {
            Some((n, idx)) if idx.chars().all(|c| c.is_ascii_digit()) => n,
            _ => name,
        };
        if !name.is_empty() && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// A peer's mapped region as this endpoint reaches it: address, length and unpacked key.
pub struct RemoteMemory {
    addr: u64,
    len: u64,
    rkey: Rc<RemoteKey>,
}

/// A checked range of a peer's region: address, length and the key that covers it.
pub struct RemoteSlice<'r> {
    pub(super) addr: u64,
    pub(super) len: usize,
    pub(super) rkey: &'r Rc<RemoteKey>,
}

impl RemoteMemory {
    /// Unpacks the key of `len` bytes at `addr` that the peer offered.
    pub fn new(endpoint: &Endpoint, addr: u64, len: u64, packed: &[u8]) -> Result<RemoteMemory> {
        Ok(RemoteMemory {
            addr,
            len,
            rkey: Rc::new(RemoteKey::unpack(endpoint, packed)?),
        })
    }

    /// Length in bytes, as offered.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `len` bytes at `offset`, if they lie inside the offered length.
    pub fn slice(&self, offset: usize, len: usize) -> Option<RemoteSlice<'_>> {
        let end = (offset as u64).checked_add(len as u64)?;
        (end <= self.len).then_some(())?;
        Some(RemoteSlice {
            addr: self.addr.checked_add(offset as u64)?,
            len,
            rkey: &self.rkey,
        })
    }
}

/// A peer's remote key, unpacked on the endpoint that reaches it (ucp_ep_rkey_unpack).
pub struct RemoteKey {
    pub(crate) raw: NonNull<sys::ucp_rkey>,
    _endpoint: Rc<EndpointInner>,
}

impl Drop for RemoteKey {
    fn drop(&mut self) {
        // SAFETY: raw is a live rkey; the endpoint it was unpacked on is kept alive by our Rc.
        unsafe { sys::api().ucp_rkey_destroy(self.raw.as_ptr()) };
    }
}

impl RemoteKey {
    /// Unpacks a key the peer packed with [`MemHandle::pack_rkey`].
    pub fn unpack(endpoint: &Endpoint, packed: &[u8]) -> Result<RemoteKey> {
        check_packed_rkey(packed)?;
        let mut raw: sys::ucp_rkey_h = std::ptr::null_mut();
        // SAFETY: the endpoint is live; packed is valid for the call; raw receives a key
        // destroyed in Drop.
        let status = unsafe {
            sys::api().ucp_ep_rkey_unpack(
                endpoint.inner.raw.as_ptr(),
                packed.as_ptr() as *const libc::c_void,
                &mut raw,
            )
        };
        let raw = opened("ucp_ep_rkey_unpack", status, raw, String::new)?;
        Ok(RemoteKey {
            raw,
            _endpoint: endpoint.inner.clone(),
        })
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> sys::ucp_rkey_h {
        self.raw.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_read_from_print_info() {
        let info = "#\n# UCP endpoint \n#\n#               peer: <no debug data>\n#                 lane[0]:  0:posix/memory.0 md[0]          -> md[0]/posix/sysdev[255] am am_bw#0\n#                 lane[1]:  1:cma/memory.0 md[1]            -> md[1]/cma/sysdev[255] rma_bw#0\n#                 lane[2]:  2:tcp/lo.0 md[2]            -> md[2]/tcp/sysdev[255] rma_bw#1\n#                 lane[3]:  3:tcp/lo.1 md[2]            -> md[2]/tcp/sysdev[255] rma_bw#2\n#\n#                tag_send: 0..<egr/short>..93..<egr/bcopy>..8256..<rndv>..(inf)\n";
        assert_eq!(
            parse_lanes(info),
            vec!["posix/memory", "cma/memory", "tcp/lo"]
        );
        assert!(parse_lanes("# nothing here\n").is_empty());
    }
}
