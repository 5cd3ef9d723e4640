//! Operations in flight that borrow nothing: raw requests under the caller's tokens, settled
//! by polling. What a loop that owns its worker and its buffers in one place (xfer) keeps;
//! [`super::Request`] is the borrowing form for loops that wait on each operation.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ucx_sys as sys;

use super::error::{request_error, Result};
use super::worker::{settle, Kind, Worker, WorkerInner};

/// How an operation's outcome is read when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
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
}

/// The requests of one worker still in flight, each with a token.
pub struct OpTable {
    pending: Vec<Op>,
    worker: Rc<WorkerInner>,
}

impl OpTable {
    /// An empty table for `worker`'s operations.
    pub fn new(worker: &Worker) -> OpTable {
        OpTable {
            pending: Vec::with_capacity(64),
            worker: worker.inner.clone(),
        }
    }

    /// Takes what a `*_nbx` call of this worker returned: `Ok(true)` when it completed in
    /// place, `Ok(false)` when it is now tracked under `token`, or the call's error.
    #[inline]
    pub fn track(
        &mut self,
        ptr: sys::ucs_status_ptr_t,
        token: u64,
        kind: OpKind,
        len: usize,
        what: &'static str,
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
        });
        Ok(false)
    }

    /// Progresses the worker once and appends `(token, length)` of every operation that
    /// completed; the first failed operation is returned as the error (the others stay
    /// tracked or reported).
    #[inline]
    pub fn poll(&mut self, out: &mut Vec<(u64, usize)>) -> Result<()> {
        // SAFETY: the worker is live (we hold an Rc of it) and used from this thread only.
        unsafe { sys::ucp_worker_progress(self.worker.raw.as_ptr()) };
        let mut i = 0;
        let mut failed = None;
        while i < self.pending.len() {
            let op = &self.pending[i];
            // SAFETY: op.ptr is a live request of this worker, not freed yet; when settled it
            // is removed from the table at once and never touched again.
            match unsafe { settle(op.ptr, op.kind, op.len, op.what) } {
                None => i += 1,
                Some(r) => {
                    let op = self.pending.swap_remove(i);
                    match r {
                        Ok(n) => out.push((op.token, n)),
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
            unsafe { sys::ucp_request_cancel(self.worker.raw.as_ptr(), op.ptr.as_ptr()) };
        }
        let start = Instant::now();
        let mut sink = Vec::new();
        while !self.pending.is_empty() && start.elapsed() < timeout {
            // Cancelled operations end with an error status: expected here, not reported.
            let _ = self.poll(&mut sink);
            sink.clear();
        }
        self.pending.is_empty()
    }
}

impl Drop for OpTable {
    fn drop(&mut self) {
        if !self.settle_all(Duration::from_secs(1)) {
            // UCX still owns these requests; the worker's destruction releases them.
            crate::teardown::record(format!(
                "{} UCX operations still in flight at exit",
                self.pending.len()
            ));
        }
    }
}
