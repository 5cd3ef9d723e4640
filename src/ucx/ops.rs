//! Operations in flight that borrow nothing: requests under the caller's tokens, settled by
//! polling; kvxfer's one way to post UCX operations. Posts take bounds-checked slices of
//! mapped memory (or copy a small message into memory the table owns); each operation keeps
//! what it reaches alive and counted in flight until it settles.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ucx_sys as sys;

use super::endpoint::{Endpoint, RemoteKey, RemoteSlice, Rma};
use super::error::{request_error, Result, UcxError};
use super::memory::{UcxSlice, UcxSliceMut};
use super::worker::{settle, Kind, RecvParams, SendParams, Worker, WorkerInner};
use crate::mem::InFlight;

/// What an operation keeps until it settles.
enum Hold {
    /// Nothing (a flush).
    Nothing,
    /// Mapped memory, counted in flight, and the peer's key for RMA.
    Region {
        _count: Counted,
        _rkey: Option<Rc<RemoteKey>>,
    },
    /// A message buffer the table owns (control messages).
    Owned(Box<[u8]>),
}

impl Hold {
    /// Keeps a region whose count the post began (and the peer's key, for RMA).
    fn region(in_flight: &Arc<InFlight>, rkey: Option<&Rc<RemoteKey>>) -> Hold {
        Hold::Region {
            _count: Counted(Arc::clone(in_flight)),
            _rkey: rkey.cloned(),
        }
    }
}

/// Ends the count a post began on a region unless the operation stays in flight
/// (`tracked` is Ok(false)): one that completed in place or failed reaches the memory no more;
/// one in flight ends its count when it settles (its [`Hold`] drops).
#[inline]
fn unless_in_flight(in_flight: &InFlight, tracked: Result<bool>) -> Result<bool> {
    if !matches!(tracked, Ok(false)) {
        in_flight.end();
    }
    tracked
}

/// One operation counted in flight on a region; ends the count when dropped.
struct Counted(Arc<InFlight>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// How an operation's outcome is read when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// A receive: its outcome is the received length.
    Recv,
    /// Anything else: its outcome is the length it was posted with.
    Other,
}

struct Op {
    ptr: NonNull<c_void>,
    token: u64,
    kind: Kind,
    len: usize,
    what: &'static str,
    hold: Hold,
}

/// The requests of one worker still in flight, each with a token.
pub struct OpTable {
    pending: Vec<Op>,
    /// Owned receive buffers whose message arrived, by token, until taken.
    arrived: Vec<(u64, Box<[u8]>)>,
    worker: Rc<WorkerInner>,
    // The parameters of the last send and receive, reused while the memory handle stays the
    // same: rewriting the ~120 bytes for every post puts stores in front of the message's own.
    send_params: SendParams,
    recv_params: RecvParams,
}

impl OpTable {
    /// An empty table for `worker`'s operations.
    pub fn new(worker: &Worker) -> OpTable {
        OpTable {
            pending: Vec::with_capacity(64),
            arrived: Vec::new(),
            worker: worker.inner.clone(),
            send_params: SendParams::new(None),
            recv_params: RecvParams::new(None),
        }
    }

    /// Takes what a `*_nbx` call of this worker returned: `Ok(true)` when it completed in
    /// place, `Ok(false)` when it is now tracked under `token` holding what `hold` makes, or
    /// the call's error.
    #[inline]
    fn track_holding(
        &mut self,
        ptr: sys::ucs_status_ptr_t,
        token: u64,
        kind: OpKind,
        len: usize,
        what: &'static str,
        hold: impl FnOnce() -> Hold,
    ) -> Result<bool> {
        if sys::UCS_PTR_IS_ERR(ptr) {
            return Err(request_error(what, sys::UCS_PTR_STATUS(ptr)));
        }
        let Some(ptr) = NonNull::new(ptr) else {
            return Ok(true);
        };
        self.pending.push(Op {
            ptr,
            token,
            kind: match kind {
                OpKind::Recv => Kind::Recv,
                OpKind::Other => Kind::Other,
            },
            len,
            what,
            hold: hold(),
        });
        Ok(false)
    }

    /// Refuses an endpoint of another worker (its requests would never be progressed here).
    fn check_endpoint(&self, ep: &Endpoint) -> Result<()> {
        if Rc::ptr_eq(&ep.inner.worker, &self.worker) {
            Ok(())
        } else {
            Err(UcxError::Invalid(
                "an endpoint of another worker posted on this table".into(),
            ))
        }
    }

    /// ucp_put_nbx of `local` into `remote`: Ok(true) completed in place, Ok(false) in flight
    /// under `token`.
    #[inline]
    pub fn put(
        &mut self,
        ep: &Endpoint,
        local: UcxSlice<'_>,
        remote: RemoteSlice<'_>,
        token: u64,
    ) -> Result<bool> {
        self.check_endpoint(ep)?;
        self.check_context(local.context)?;
        same_len(local.len, remote.len)?;
        local.in_flight.begin();
        // SAFETY: local lies in mapped memory counted in flight (and kept) until the request
        // settles; the remote range lies inside the peer's offered region, its key kept too.
        let ptr = unsafe {
            ep.rma_status(
                Rma::Put,
                local.ptr as *mut u8,
                local.len,
                remote.addr,
                remote.rkey,
                local.memh,
            )
        };
        let hold = || Hold::region(local.in_flight, Some(remote.rkey));
        let tracked = self.track_holding(ptr, token, OpKind::Other, local.len, "put", hold);
        unless_in_flight(local.in_flight, tracked)
    }

    /// ucp_get_nbx of `remote` into `local`.
    #[inline]
    pub fn get(
        &mut self,
        ep: &Endpoint,
        local: UcxSliceMut<'_>,
        remote: RemoteSlice<'_>,
        token: u64,
    ) -> Result<bool> {
        self.check_endpoint(ep)?;
        self.check_context(local.context)?;
        same_len(local.len, remote.len)?;
        local.in_flight.begin();
        // SAFETY: as in put; the memory was borrowed mutably for the post and is counted in
        // flight from before it, so no CPU view reads it while UCX writes.
        let ptr = unsafe {
            ep.rma_status(
                Rma::Get,
                local.ptr,
                local.len,
                remote.addr,
                remote.rkey,
                local.memh,
            )
        };
        let hold = || Hold::region(local.in_flight, Some(remote.rkey));
        let tracked = self.track_holding(ptr, token, OpKind::Other, local.len, "get", hold);
        unless_in_flight(local.in_flight, tracked)
    }

    /// ucp_tag_send_nbx of `local` under `tag`.
    #[inline]
    pub fn tag_send(
        &mut self,
        ep: &Endpoint,
        local: UcxSlice<'_>,
        tag: u64,
        token: u64,
    ) -> Result<bool> {
        self.check_endpoint(ep)?;
        self.check_context(local.context)?;
        local.in_flight.begin();
        let params = self.send_params.for_memh(local.memh);
        // SAFETY: as in put.
        let ptr = unsafe { ep.tag_send_with(local.ptr, local.len, tag, params) };
        let hold = || Hold::region(local.in_flight, None);
        let tracked = self.track_holding(ptr, token, OpKind::Other, local.len, "tag send", hold);
        unless_in_flight(local.in_flight, tracked)
    }

    /// ucp_tag_recv_nbx into `local` of a message whose tag matches `tag` under `mask`.
    #[inline]
    pub fn tag_recv(
        &mut self,
        worker: &Worker,
        local: UcxSliceMut<'_>,
        tag: u64,
        mask: u64,
        token: u64,
    ) -> Result<bool> {
        self.check_worker(worker)?;
        self.check_context(local.context)?;
        local.in_flight.begin();
        let params = self.recv_params.for_memh(local.memh);
        // SAFETY: as in get.
        let ptr = unsafe { worker.tag_recv_with(local.ptr, local.len, tag, mask, params) };
        let hold = || Hold::region(local.in_flight, None);
        let tracked = self.track_holding(ptr, token, OpKind::Recv, local.len, "tag receive", hold);
        unless_in_flight(local.in_flight, tracked)
    }

    /// Sends a copy of `msg` under `tag` (a control message: the table owns the copy until
    /// the send settles).
    pub fn send_message(
        &mut self,
        ep: &Endpoint,
        msg: &[u8],
        tag: u64,
        token: u64,
        what: &'static str,
    ) -> Result<bool> {
        self.check_endpoint(ep)?;
        let copy: Box<[u8]> = msg.into();
        let params = self.send_params.for_memh(None);
        // SAFETY: the copy is moved into the operation (a box: its bytes do not move) and
        // kept until the request settles.
        let ptr = unsafe { ep.tag_send_with(copy.as_ptr(), copy.len(), tag, params) };
        let len = copy.len();
        self.track_holding(ptr, token, OpKind::Other, len, what, || Hold::Owned(copy))
    }

    /// Receives a message of up to `len` bytes whose tag matches `tag` under `mask` into memory
    /// the table owns; [`message`](Self::message) hands it out once it arrived.
    pub fn recv_message(
        &mut self,
        worker: &Worker,
        len: usize,
        tag: u64,
        mask: u64,
        token: u64,
        what: &'static str,
    ) -> Result<bool> {
        self.check_worker(worker)?;
        let mut buf: Box<[u8]> = vec![0u8; len].into();
        let params = self.recv_params.for_memh(None);
        // SAFETY: as in send_message, for writes.
        let ptr = unsafe { worker.tag_recv_with(buf.as_mut_ptr(), len, tag, mask, params) };
        self.track_holding(ptr, token, OpKind::Recv, len, what, || Hold::Owned(buf))
    }

    /// The message a settled [`recv_message`](Self::recv_message) under `token` received.
    pub fn message(&mut self, token: u64) -> Option<Box<[u8]>> {
        let i = self.arrived.iter().position(|(t, _)| *t == token)?;
        Some(self.arrived.swap_remove(i).1)
    }

    /// Starts a flush of `ep` (every operation issued on it completes, remotely for puts),
    /// tracked under `token`; Ok(true) when it completed in place.
    pub fn flush(&mut self, ep: &Endpoint, token: u64) -> Result<bool> {
        self.check_endpoint(ep)?;
        let ptr = ep.flush_status();
        self.track_holding(ptr, token, OpKind::Other, 0, "endpoint flush", || {
            Hold::Nothing
        })
    }

    /// Refuses memory mapped with another context than this worker's.
    fn check_context(&self, context: &Arc<super::context::ContextInner>) -> Result<()> {
        if Arc::ptr_eq(context, &self.worker.context) {
            Ok(())
        } else {
            Err(UcxError::Invalid(
                "a slice of memory mapped with another context".into(),
            ))
        }
    }

    /// Refuses another worker.
    fn check_worker(&self, worker: &Worker) -> Result<()> {
        if Rc::ptr_eq(&worker.inner, &self.worker) {
            Ok(())
        } else {
            Err(UcxError::Invalid(
                "a receive of another worker posted on this table".into(),
            ))
        }
    }

    /// Progresses the worker once and appends `(token, length)` of every operation that
    /// completed; the first failed operation is returned as the error (the others stay
    /// tracked or reported).
    #[inline]
    pub fn poll(&mut self, out: &mut Vec<(u64, usize)>) -> Result<()> {
        // SAFETY: the worker is live (we hold an Rc of it) and used from this thread only.
        unsafe { sys::api().ucp_worker_progress(self.worker.raw.as_ptr()) };
        let mut i = 0;
        let mut failed = None;
        while i < self.pending.len() {
            let op = &self.pending[i];
            // SAFETY: op.ptr is a live request of this worker, not freed yet; when settled it
            // is removed from the table at once and never touched again.
            match unsafe { settle(op.ptr, op.kind, op.len, op.what) } {
                None => i += 1,
                Some(r) => {
                    let mut op = self.pending.swap_remove(i);
                    match r {
                        Ok(n) => {
                            if let Hold::Owned(buf) = std::mem::replace(&mut op.hold, Hold::Nothing)
                            {
                                if op.kind == Kind::Recv {
                                    self.arrived.push((op.token, buf));
                                }
                            }
                            out.push((op.token, n))
                        }
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Operations still in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Cancels everything still in flight and progresses until all of it has settled or
    /// `timeout` passed; true when nothing is left (the buffers may then go).
    pub fn settle_all(&mut self, timeout: Duration) -> bool {
        for op in &self.pending {
            // SAFETY: op.ptr is a live request of this live worker; cancelling a request that
            // already completed is harmless.
            unsafe { sys::api().ucp_request_cancel(self.worker.raw.as_ptr(), op.ptr.as_ptr()) };
        }
        let start = Instant::now();
        let mut sink = Vec::new();
        while !self.pending.is_empty() && start.elapsed() < timeout {
            // Cancelled operations end with an error status: expected here, not reported.
            let _ = self.poll(&mut sink);
            sink.clear();
            self.worker.progress_companion();
        }
        self.pending.is_empty()
    }
}

/// Refuses an RMA whose local and remote ranges differ in length.
fn same_len(local: usize, remote: usize) -> Result<()> {
    if local == remote {
        Ok(())
    } else {
        Err(UcxError::Invalid(format!(
            "an RMA of {local} local bytes into a {remote}-byte remote range"
        )))
    }
}

impl Drop for OpTable {
    fn drop(&mut self) {
        if !self.settle_all(Duration::from_secs(1)) {
            // UCX still owns these requests; the worker's destruction releases them. What
            // they reach stays counted in flight and alive (leaked), never freed under UCX.
            crate::teardown::record(format!(
                "{} UCX operations still in flight at exit",
                self.pending.len()
            ));
            std::mem::forget(std::mem::take(&mut self.pending));
        }
    }
}
