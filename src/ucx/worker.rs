//! The UCP worker (one per thread: it is created single-threaded) and request completion by
//! busy-polling its progress.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use ucx_sys as sys;

use super::capture::capture;
use super::context::{Context, ContextInner};
use super::error::{check, opened, request_error, Result, UcxError};
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
            unsafe { sys::ucp_worker_progress(c.raw.as_ptr()) };
        }
    }
}

impl Drop for WorkerInner {
    fn drop(&mut self) {
        // SAFETY: raw is a live worker; endpoints and requests hold an Rc of (or borrow) this,
        // so none is left when it drops.
        unsafe { sys::ucp_worker_destroy(self.raw.as_ptr()) };
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
            unsafe { sys::ucp_worker_create(context.inner.raw.as_ptr(), &params, &mut raw) };
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
                sys::ucp_worker_get_address(self.inner.raw.as_ptr(), &mut addr, &mut len),
            )?;
            let bytes = std::slice::from_raw_parts(addr as *const u8, len).to_vec();
            sys::ucp_worker_release_address(self.inner.raw.as_ptr(), addr);
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
        unsafe { sys::ucp_worker_progress(self.inner.raw.as_ptr()) }
    }

    /// Posts a tagged receive of up to `len` bytes at `buf` for messages whose tag matches
    /// `tag` under `mask`.
    ///
    /// # Safety
    /// `buf` must be valid for writes of `len` bytes until the request completes, or, if the
    /// request is dropped unfinished (which cancels it), until this worker is destroyed.
    #[inline]
    pub unsafe fn tag_recv(
        &self,
        buf: *mut u8,
        len: usize,
        tag: u64,
        mask: u64,
        memh: Option<MemHandleRef>,
    ) -> Result<Request<'_>> {
        // SAFETY: forwarded contract.
        let ptr = unsafe { self.tag_recv_status(buf, len, tag, mask, memh) };
        Request::from_status_ptr(ptr, &self.inner, Kind::Recv, 0, "tag receive")
    }

    /// [`Worker::tag_recv`], returning UCX's status pointer as is (never NULL: receives do not
    /// complete in place, so their length is always recorded).
    ///
    /// # Safety
    /// As [`Worker::tag_recv`].
    #[inline]
    pub(crate) unsafe fn tag_recv_status(
        &self,
        buf: *mut u8,
        len: usize,
        tag: u64,
        mask: u64,
        memh: Option<MemHandleRef>,
    ) -> sys::ucs_status_ptr_t {
        // SAFETY: forwarded contract.
        unsafe { self.tag_recv_with(buf, len, tag, mask, &RecvParams::new(memh)) }
    }

    /// [`Worker::tag_recv_status`] with parameters built beforehand.
    ///
    /// # Safety
    /// As [`Worker::tag_recv`].
    #[inline(always)]
    pub(crate) unsafe fn tag_recv_with(
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
            sys::ucp_tag_recv_nbx(
                self.inner.raw.as_ptr(),
                buf as *mut c_void,
                len,
                tag,
                mask,
                &params.0,
            )
        }
    }

    /// Busy-polls the worker until `req` completes; returns its length in bytes (received, or
    /// sent). Gives up after `timeout`.
    #[inline]
    pub fn wait(&self, req: &mut Request<'_>, timeout: Duration) -> Result<usize> {
        if let Some(n) = req.test()? {
            return Ok(n);
        }
        let mut spins: u32 = 0;
        let mut start: Option<Instant> = None;
        loop {
            self.progress();
            if let Some(n) = req.test()? {
                return Ok(n);
            }
            spins = spins.wrapping_add(1);
            // Reading the clock costs more than a progress call: look at it now and then.
            if spins % 1024 == 0 {
                let s = *start.get_or_insert_with(Instant::now);
                if s.elapsed() > timeout {
                    return Err(UcxError::Timeout {
                        what: req.op,
                        secs: timeout.as_secs_f64(),
                    });
                }
            }
        }
    }

    /// Busy-polls the worker until the operation a `*_nbx` call returned (`ptr`) completes;
    /// returns its outcome as [`Request::test`] would. Builds no [`Request`]: the latency
    /// loop's receive, where moving one through the stack stalled behind the send's stores.
    /// On time-out the operation is cancelled and released.
    #[inline]
    pub(crate) fn wait_status(
        &self,
        ptr: sys::ucs_status_ptr_t,
        kind: Kind,
        len: usize,
        op: &'static str,
        timeout: Duration,
    ) -> Result<usize> {
        if sys::UCS_PTR_IS_ERR(ptr) {
            return Err(request_error(op, sys::UCS_PTR_STATUS(ptr)));
        }
        let Some(p) = NonNull::new(ptr) else {
            return Ok(len);
        };
        let mut spins: u32 = 0;
        let mut start: Option<Instant> = None;
        loop {
            self.progress();
            // SAFETY: p is a live request of this worker, not freed yet; once settled it is
            // freed and we return without touching it again.
            if let Some(r) = unsafe { settle(p, kind, len, op) } {
                return r;
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 {
                let s = *start.get_or_insert_with(Instant::now);
                if s.elapsed() > timeout {
                    // SAFETY: p is live and unreleased; cancel, then hand it back to UCX.
                    unsafe {
                        sys::ucp_request_cancel(self.inner.raw.as_ptr(), p.as_ptr());
                        sys::ucp_request_free(p.as_ptr());
                    }
                    return Err(UcxError::Timeout {
                        what: op,
                        secs: timeout.as_secs_f64(),
                    });
                }
            }
        }
    }

    /// UCP's own description of the worker.
    pub fn print_info(&self) -> String {
        // SAFETY: the worker is live; the stream is valid for the call.
        capture(|f| unsafe { sys::ucp_worker_print_info(self.inner.raw.as_ptr(), f as _) })
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

/// Parameters of sends, built once: a latency loop reuses them rather than writing the ~120
/// bytes of a `ucp_request_param_t` on every call (stores that queue behind the message's own).
#[derive(Clone, Copy)]
pub struct SendParams(pub(crate) sys::ucp_request_param_t);

impl SendParams {
    /// Contiguous bytes, with the buffer's memory handle when there is one.
    pub fn new(memh: Option<MemHandleRef>) -> SendParams {
        SendParams(op_param(memh))
    }

    /// These parameters for `memh`, rebuilt only when it differs from the one they carry.
    #[inline]
    pub(crate) fn for_memh(&mut self, memh: Option<MemHandleRef>) -> &SendParams {
        if memh_of(&self.0) != memh.map(|m| m.raw) {
            *self = SendParams::new(memh);
        }
        self
    }
}

/// Parameters of tagged receives, built once (see [`SendParams`]); the completion callback
/// records the received length.
#[derive(Clone, Copy)]
pub struct RecvParams(pub(crate) sys::ucp_request_param_t);

impl RecvParams {
    /// Contiguous bytes, with the buffer's memory handle when there is one.
    pub fn new(memh: Option<MemHandleRef>) -> RecvParams {
        let mut param = op_param(memh);
        param.op_attr_mask |= sys::UCP_OP_ATTR_FIELD_CALLBACK | sys::UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
        param.cb.recv = Some(recv_done);
        RecvParams(param)
    }

    /// These parameters for `memh`, rebuilt only when it differs from the one they carry.
    #[inline]
    pub(crate) fn for_memh(&mut self, memh: Option<MemHandleRef>) -> &RecvParams {
        if memh_of(&self.0) != memh.map(|m| m.raw) {
            *self = RecvParams::new(memh);
        }
        self
    }
}

/// The memory handle a request's parameters carry, if any.
#[inline]
fn memh_of(param: &sys::ucp_request_param_t) -> Option<sys::ucp_mem_h> {
    (param.op_attr_mask & sys::UCP_OP_ATTR_FIELD_MEMH != 0).then_some(param.memh)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Send,
    Recv,
    Other,
}

enum State {
    Done(usize),
    Pending(NonNull<c_void>),
}

/// An operation in flight (or already complete) on a worker.
pub struct Request<'w> {
    state: State,
    kind: Kind,
    len: usize,
    op: &'static str,
    worker: &'w WorkerInner,
}

impl<'w> Request<'w> {
    /// Interprets what a `*_nbx` call returned: NULL (done), an error, or a request.
    #[inline]
    pub(crate) fn from_status_ptr(
        ptr: sys::ucs_status_ptr_t,
        worker: &'w WorkerInner,
        kind: Kind,
        len: usize,
        op: &'static str,
    ) -> Result<Request<'w>> {
        if sys::UCS_PTR_IS_ERR(ptr) {
            return Err(request_error(op, sys::UCS_PTR_STATUS(ptr)));
        }
        let state = match NonNull::new(ptr) {
            None => State::Done(len),
            Some(p) => State::Pending(p),
        };
        Ok(Request {
            state,
            kind,
            len,
            op,
            worker,
        })
    }

    /// Asks UCX to cancel the request if it is still in flight (receives stop matching; the
    /// request then completes with a cancellation status).
    pub fn cancel(&mut self) {
        if let State::Pending(p) = self.state {
            // SAFETY: p is a live request of this (live, borrowed) worker.
            unsafe { sys::ucp_request_cancel(self.worker.raw.as_ptr(), p.as_ptr()) };
        }
    }

    /// Checks for completion without progressing: Some(length) once complete.
    #[inline]
    pub fn test(&mut self) -> Result<Option<usize>> {
        let p = match self.state {
            State::Done(n) => return Ok(Some(n)),
            State::Pending(p) => p,
        };
        // SAFETY: p is a live request of this worker, not freed yet; once settled it is
        // forgotten (state Done) so it is never touched again.
        match unsafe { settle(p, self.kind, self.len, self.op) } {
            None => Ok(None),
            Some(r) => {
                self.state = State::Done(*r.as_ref().unwrap_or(&self.len));
                r.map(Some)
            }
        }
    }
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
    let status = unsafe { sys::ucp_request_check_status(p.as_ptr()) };
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
    unsafe { sys::ucp_request_free(p.as_ptr()) };
    if status != sys::UCS_OK as sys::ucs_status_t {
        return Some(Err(request_error(op, status)));
    }
    Some(Ok(len))
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        if let State::Pending(p) = self.state {
            // SAFETY: p is a live request of a live worker (the borrow proves it); cancelling
            // then freeing lets UCX release it when it finishes.
            unsafe {
                sys::ucp_request_cancel(self.worker.raw.as_ptr(), p.as_ptr());
                sys::ucp_request_free(p.as_ptr());
            }
        }
    }
}
