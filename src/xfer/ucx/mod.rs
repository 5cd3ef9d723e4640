//! The UCX ends of a transfer (puts announced after an endpoint flush, gets, or tagged sends;
//! `protocol.rs`), connected with the transfer's error type.

use std::time::Duration;

pub mod protocol;

use self::protocol::Exchange;
pub use self::protocol::{UcxInitiator, UcxTarget};
use super::{SetupTimes, XferError, XferOp};
use crate::mem::SharedRegion;

impl UcxInitiator {
    /// Connects to the target's worker (addresses swapped by `exchange`) and maps `local`
    /// for `transfers` transfers of `size` bytes.
    pub fn connect(
        exchange: &mut Exchange<'_>,
        local: SharedRegion,
        transfers: usize,
        size: usize,
        op: XferOp,
        timeout: Duration,
    ) -> Result<(UcxInitiator, SetupTimes), XferError> {
        Ok(UcxInitiator::new(
            local, transfers, size, op, timeout, exchange,
        )?)
    }
}

impl UcxTarget {
    /// Connects to the initiator's worker (addresses swapped by `exchange`) and maps
    /// `regions`, one per transfer.
    pub fn connect(
        exchange: &mut Exchange<'_>,
        regions: Vec<SharedRegion>,
    ) -> Result<(UcxTarget, SetupTimes), XferError> {
        Ok(UcxTarget::new(regions, exchange)?)
    }
}
