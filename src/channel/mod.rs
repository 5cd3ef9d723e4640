//! The channels the ping-pong and windowed loops drive: each owns its buffers and posts only
//! through its library's checked API (libfabric's [`DataPath`](crate::fabric::DataPath),
//! UCX's [`OpTable`](crate::ucx::OpTable)), tagging its messages with xfer's tag layout
//! ([`crate::xfer::tag`]).
#![warn(missing_docs)]

mod libfabric;
mod msg;
mod rma;
mod tag;

pub use msg::{MsgChannel, MsgMode};
pub use rma::{RmaChannel, RmaPingPongOp};
pub use tag::{SlotSpec, TagChannel};

use std::time::{Duration, Instant};

/// Busy-polls `poll` until it yields a value; gives up with `timed_out()` after `timeout`, or
/// with [`crate::stop::Stopped`] once a signal asked the process to stop.
/// The clock is read only every 4096 empty polls, so the hot path is the poll itself.
#[inline]
fn spin<T, E: From<crate::stop::Stopped>>(
    timeout: Duration,
    mut poll: impl FnMut() -> Result<Option<T>, E>,
    timed_out: impl FnOnce() -> E,
) -> Result<T, E> {
    let mut spins: u32 = 0;
    let mut start: Option<Instant> = None;
    loop {
        if let Some(v) = poll()? {
            return Ok(v);
        }
        spins = spins.wrapping_add(1);
        if spins & 0xfff == 0 {
            crate::stop::check()?;
            let s = *start.get_or_insert_with(Instant::now);
            if s.elapsed() > timeout {
                return Err(timed_out());
            }
        }
    }
}

#[cfg(test)]
mod tests;
