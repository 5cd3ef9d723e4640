//! What the libfabric channels (msg, rma) share: the completions they read from their data
//! path and have not claimed yet (a wait for one operation may read the completion of another,
//! or a peer's remote CQ data, which then waits for its own claim), the waits on them, the
//! host views of their regions, and their errors.

use std::time::Duration;

use super::spin;
use crate::fabric::{DataPath, Done, FabricError, MemoryRegion, Result};
use crate::mem::{HostStaged, MemError};

/// Which completion queue of a data path an operation completes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// Sends, injects' retries, writes and reads initiated here.
    Tx,
    /// Receives and remote CQ data.
    Rx,
}

/// Completions read and not claimed, in the order read.
#[derive(Debug, Default)]
pub(super) struct Completions(pub(super) Vec<Done>);

impl Completions {
    /// Reads what `queue` of `path` reports now.
    #[inline]
    pub(super) fn poll(&mut self, path: &mut DataPath, queue: Queue) -> Result<()> {
        match queue {
            Queue::Tx => path.poll_tx(&mut self.0),
            Queue::Rx => path.poll_rx(&mut self.0),
        }
    }

    /// Reads both queues (progress while a post is refused or an arrival is awaited).
    #[inline]
    pub(super) fn poll_both(&mut self, path: &mut DataPath) -> Result<()> {
        path.poll_tx(&mut self.0)?;
        path.poll_rx(&mut self.0)
    }

    /// Claims the completion of the operation posted under `token`; its length.
    #[inline]
    pub(super) fn take(&mut self, token: u64) -> Option<usize> {
        let i = self
            .0
            .iter()
            .position(|d| matches!(*d, Done::Local { token: t, .. } if t == token))?;
        match self.0.swap_remove(i) {
            Done::Local { len, .. } => Some(len),
            Done::RemoteData(_) => None,
        }
    }

    /// Claims the oldest remote CQ data read.
    #[inline]
    pub(super) fn take_remote(&mut self) -> Option<u64> {
        let i = self
            .0
            .iter()
            .position(|d| matches!(d, Done::RemoteData(_)))?;
        match self.0.remove(i) {
            Done::RemoteData(data) => Some(data),
            Done::Local { .. } => None,
        }
    }

    /// Busy-polls `queue` until the operation posted under `token` completes; returns its
    /// length.
    #[inline]
    pub(super) fn wait(
        &mut self,
        path: &mut DataPath,
        queue: Queue,
        token: u64,
        what: &'static str,
        timeout: Duration,
    ) -> Result<usize> {
        if let Some(n) = self.take(token) {
            return Ok(n);
        }
        spin(
            timeout,
            || {
                self.poll(path, queue)?;
                Ok(self.take(token))
            },
            || timed_out(what, timeout),
        )
    }
}

/// The error of a wait that gave up after `timeout`.
pub(super) fn timed_out(what: &'static str, timeout: Duration) -> FabricError {
    FabricError::Timeout {
        what,
        secs: timeout.as_secs_f64(),
    }
}

/// Posts through `post` until the provider takes it, reading both queues of `path` between
/// refusals (providers that need progress to free room).
#[inline]
pub(super) fn until_posted(
    path: &mut DataPath,
    done: &mut Completions,
    what: &'static str,
    timeout: Duration,
    mut post: impl FnMut(&mut DataPath) -> Result<bool>,
) -> Result<()> {
    spin(
        timeout,
        || {
            if post(&mut *path)? {
                return Ok(Some(()));
            }
            done.poll_both(&mut *path)?;
            Ok(None)
        },
        || timed_out(what, timeout),
    )
}

/// The host bytes of `mr`'s buffer (for device memory its staging copy) while no operation
/// holds it; empty otherwise.
pub(super) fn host<B: HostStaged>(mr: &MemoryRegion<B>) -> &[u8] {
    match mr.buf() {
        Some(b) => b.host(),
        None => &[],
    }
}

/// As [`host`], for writing.
pub(super) fn host_mut<B: HostStaged>(mr: &mut MemoryRegion<B>) -> &mut [u8] {
    match mr.buf_mut() {
        Some(b) => b.host_mut(),
        None => &mut [],
    }
}

/// A buffer that could not be allocated.
pub(super) fn buffer_error(e: MemError) -> FabricError {
    FabricError::Invalid(e.to_string())
}

/// A staging copy that failed.
#[cold]
pub(super) fn staging_error(e: MemError) -> FabricError {
    FabricError::Invalid(format!("copying a message between device and host: {e}"))
}

/// A buffer asked for while an operation still holds it (a wait that failed earlier).
#[cold]
pub(super) fn busy() -> FabricError {
    FabricError::Invalid("the message buffer is still in flight".into())
}

/// A range outside the buffer (lengths are checked first: not reached).
#[cold]
pub(super) fn no_room() -> FabricError {
    FabricError::Invalid("the message does not fit its buffer".into())
}
