//! The UCP worker (one per thread: it is created single-threaded), the parameters of the
//! requests posted on it, and the check that settles a request.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};

use ucx_sys as sys;

use super::capture::capture;
use super::context::{Context, ContextInner};
use super::error::{check, opened, request_error, Result};
use super::memory::MemHandleRef;
use std::sync::Arc;

/// Completion callback of tagged receives: records the received length in the request.
///
/// UCX 1.13 fills neither `recv_info` on immediate completion nor the info of
/// `ucp_tag_recv_request_test` for a message taken from the unexpected queue; the callback's
/// info is the one reliable source, so receives carry it and never complete immediately.
unsafe extern "C" fn recv_done(
    request: *mut c_void,
    _status: sys::ucs_status_t,
    info: *const sys::ucp_tag_recv_info_t,
    _user_data: *mut c_void,
) {
    if request.is_null() || info.is_null() {
        return;
    }
    // SAFETY: every request of a kvxfer context has REQUEST_PRIV_BYTES (>= 8, suitably aligned
    // by UCX) of private space at `request`; info is valid during the callback.
    unsafe { (request as *mut usize).write((*info).length) };
}

pub(crate) struct WorkerInner {
    pub(crate) raw: NonNull<sys::ucp_worker>,
    pub(crate) context: Arc<ContextInner>,
    /// The other worker this thread drives when it drives both ends of a connection: a
    /// blocking wait on one end progresses the other too, or it would wait on an end that
    /// nothing moves.
    companion: RefCell<Weak<WorkerInner>>,
}

impl WorkerInner {
    /// Progresses the companion worker once, if there is one (for blocking waits).
    pub(crate) fn progress_companion(&self) {
        if let Some(c) = self.companion.borrow().upgrade() {
            // SAFETY: c is live (the upgrade holds it for the call) and belongs to this
            // thread, as its companion does.
            unsafe { sys::api().ucp_worker_progress(c.raw.as_ptr()) };
        }
    }
}

impl Drop for WorkerInner {
    fn drop(&mut self) {
        // SAFETY: raw is a live worker; endpoints and requests hold an Rc of (or borrow) this,
        // so none is left when it drops.
        unsafe { sys::api().ucp_worker_destroy(self.raw.as_ptr()) };
    }
}

/// A UCP worker (ucp_worker_create) in single-thread mode.
///
/// Worker-level handles are reference-counted with `Rc`, not `Arc`: a single-threaded worker
/// must stay on the thread that created it, and the types say so (they are not `Send`).
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Rc<WorkerInner>,
}

impl Worker {
    /// Creates a single-threaded worker on a context.
    pub fn new(context: &Context) -> Result<Worker> {
        let params = sys::ucp_worker_params_t {
            field_mask: sys::UCP_WORKER_PARAM_FIELD_THREAD_MODE as u64,
            thread_mode: sys::UCS_THREAD_MODE_SINGLE,
            ..Default::default()
        };
        let mut raw: sys::ucp_worker_h = std::ptr::null_mut();
        // SAFETY: context is live; params valid for the call; raw receives a worker destroyed
        // in Drop.
        let status =
            unsafe { sys::api().ucp_worker_create(context.inner.raw.as_ptr(), &params, &mut raw) };
        let raw = opened("ucp_worker_create", status, raw, String::new)?;
        Ok(Worker {
            inner: Rc::new(WorkerInner {
                raw,
                context: context.inner.clone(),
                companion: RefCell::new(Weak::new()),
            }),
        })
    }

    /// The worker's address, for the peer's ucp_ep_create.
    pub fn address(&self) -> Result<Vec<u8>> {
        let mut addr: *mut sys::ucp_address_t = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: the worker is live; addr/len receive a buffer we copy and release at once.
        unsafe {
            check(
                "ucp_worker_get_address",
                sys::api().ucp_worker_get_address(self.inner.raw.as_ptr(), &mut addr, &mut len),
            )?;
            let bytes = std::slice::from_raw_parts(addr as *const u8, len).to_vec();
            sys::api().ucp_worker_release_address(self.inner.raw.as_ptr(), addr);
            Ok(bytes)
        }
    }

    /// Makes this worker and `other` companions, both driven by this thread: a blocking wait
    /// on either (an endpoint's close, a table's last operations) progresses both.
    pub fn drive_with(&self, other: &Worker) {
        *self.inner.companion.borrow_mut() = Rc::downgrade(&other.inner);
        *other.inner.companion.borrow_mut() = Rc::downgrade(&self.inner);
    }

    /// Progresses communication once; returns whether anything happened.
    #[inline]
    pub fn progress(&self) -> u32 {
        // SAFETY: the worker is live and used from its own thread only (the type is !Send).
        unsafe { sys::api().ucp_worker_progress(self.inner.raw.as_ptr()) }
    }

    /// Posts a tagged receive of up to `len` bytes at `buf` for messages whose tag matches
    /// `tag` under `mask`; returns UCX's status pointer as is (never NULL: receives do not
    /// complete in place, so their length is always recorded).
    ///
    /// # Safety
    /// `buf` must be valid for writes of `len` bytes until the request completes, and no CPU
    /// view of it may live meanwhile.
    #[inline(always)]
    pub(super) unsafe fn tag_recv_with(
        &self,
        buf: *mut u8,
        len: usize,
        tag: u64,
        mask: u64,
        params: &RecvParams,
    ) -> sys::ucs_status_ptr_t {
        // SAFETY: the worker is live; buf per the caller's contract; params valid for the
        // call; recv_done only writes into the request's private space.
        unsafe {
            sys::api().ucp_tag_recv_nbx(
                self.inner.raw.as_ptr(),
                buf as *mut c_void,
                len,
                tag,
                mask,
                &params.0,
            )
        }
    }

    /// UCP's own description of the worker.
    pub fn print_info(&self) -> String {
        // SAFETY: the worker is live; the stream is valid for the call.
        capture(|f| unsafe { sys::api().ucp_worker_print_info(self.inner.raw.as_ptr(), f as _) })
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> sys::ucp_worker_h {
        self.inner.raw.as_ptr()
    }
}

/// Request parameters for a contiguous byte buffer, with its memory handle when there is one.
#[inline]
pub(crate) fn op_param(memh: Option<MemHandleRef>) -> sys::ucp_request_param_t {
    let mut param = sys::ucp_request_param_t {
        op_attr_mask: sys::UCP_OP_ATTR_FIELD_DATATYPE,
        datatype: sys::ucp_dt_make_contig(1),
        ..Default::default()
    };
    if let Some(m) = memh {
        param.op_attr_mask |= sys::UCP_OP_ATTR_FIELD_MEMH | sys::UCP_OP_ATTR_FIELD_MEMORY_TYPE;
        param.memh = m.raw;
        param.memory_type = m.memory_type;
    }
    param
}

/// The memory handle a request's parameters carry, if any.
#[inline]
fn memh_of(param: &sys::ucp_request_param_t) -> Option<sys::ucp_mem_h> {
    (param.op_attr_mask & sys::UCP_OP_ATTR_FIELD_MEMH != 0).then_some(param.memh)
}

/// Parameters of sends, built once and reused while the memory handle stays the same: a
/// latency loop then does not write the ~120 bytes of a `ucp_request_param_t` on every call
/// (stores that queue behind the message's own).
#[derive(Clone, Copy)]
pub(super) struct SendParams(pub(super) sys::ucp_request_param_t);

impl SendParams {
    /// Contiguous bytes, with the buffer's memory handle when there is one.
    pub(super) fn new(memh: Option<MemHandleRef>) -> SendParams {
        SendParams(op_param(memh))
    }

    /// These parameters for `memh`, rebuilt only when it differs from the one they carry.
    #[inline]
    pub(super) fn for_memh(&mut self, memh: Option<MemHandleRef>) -> &SendParams {
        if memh_of(&self.0) != memh.map(|m| m.raw) {
            *self = SendParams::new(memh);
        }
        self
    }
}

/// Parameters of tagged receives (see [`SendParams`]); the completion callback records the
/// received length.
#[derive(Clone, Copy)]
pub(super) struct RecvParams(pub(super) sys::ucp_request_param_t);

impl RecvParams {
    /// Contiguous bytes, with the buffer's memory handle when there is one.
    pub(super) fn new(memh: Option<MemHandleRef>) -> RecvParams {
        let mut param = op_param(memh);
        param.op_attr_mask |= sys::UCP_OP_ATTR_FIELD_CALLBACK | sys::UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
        param.cb.recv = Some(recv_done);
        RecvParams(param)
    }

    /// These parameters for `memh`, rebuilt only when it differs from the one they carry.
    #[inline]
    pub(super) fn for_memh(&mut self, memh: Option<MemHandleRef>) -> &RecvParams {
        if memh_of(&self.0) != memh.map(|m| m.raw) {
            *self = RecvParams::new(memh);
        }
        self
    }
}

/// How a request's outcome is read: receives report the received length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A tagged receive.
    Recv,
    /// Anything else: its outcome is the length it was posted with.
    Other,
}

/// Checks a request without progressing; once it completed, frees it and returns its
/// outcome (the received length for receives, `len` otherwise). None while in flight.
///
/// # Safety
/// `p` must be a live request of a live worker that nobody freed; after `Some` it is freed
/// and must not be used again.
#[inline]
pub(crate) unsafe fn settle(
    p: NonNull<c_void>,
    kind: Kind,
    len: usize,
    op: &'static str,
) -> Option<Result<usize>> {
    // SAFETY: per this function's contract.
    let status = unsafe { sys::api().ucp_request_check_status(p.as_ptr()) };
    if status == sys::UCS_INPROGRESS as sys::ucs_status_t {
        return None;
    }
    let len = if kind == Kind::Recv && status == sys::UCS_OK as sys::ucs_status_t {
        // SAFETY: a completed receive ran recv_done, which wrote the length into the
        // request's private space; the request is not freed yet.
        unsafe { (p.as_ptr() as *const usize).read() }
    } else {
        len
    };
    // SAFETY: the request completed; freed exactly once here.
    unsafe { sys::api().ucp_request_free(p.as_ptr()) };
    if status != sys::UCS_OK as sys::ucs_status_t {
        return Some(Err(request_error(op, status)));
    }
    Some(Ok(len))
}
