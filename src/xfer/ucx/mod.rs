//! The UCX ends of a transfer (puts announced after an endpoint flush, gets, or tagged sends;
//! `protocol.rs`), connected with the transfer's error type: to a peer in another thread or
//! process, or both ends in this thread.

use std::time::Duration;

pub mod protocol;

use self::protocol::UcxSide;
pub use self::protocol::{UcxInitiator, UcxTarget};
use super::{SetupTimes, XferError, XferOp};
use crate::mem::SharedRegion;
use crate::peer::Exchange;

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
        let side = UcxSide::open()?;
        Ok(UcxInitiator::new(
            side, local, transfers, size, op, timeout, exchange,
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
        Ok(UcxTarget::new(UcxSide::open()?, regions, exchange)?)
    }
}

/// An end with the times its set-up took.
pub type Connected<E> = (E, SetupTimes);

/// Both ends of one connection, for one thread to drive: the initiator maps `local` for
/// `regions.len()` transfers of `size` bytes, the target maps `regions`. Drop the initiator
/// first: the target keeps its worker until the target's own endpoint has closed.
pub fn connect_pair(
    local: SharedRegion,
    regions: Vec<SharedRegion>,
    size: usize,
    op: XferOp,
    timeout: Duration,
) -> Result<(Connected<UcxInitiator>, Connected<UcxTarget>), XferError> {
    // Both workers exist before either endpoint, so each end knows the other's address.
    let (ini, tgt) = (UcxSide::open()?, UcxSide::open()?);
    ini.drive_with(&tgt);
    let (ini_addr, tgt_addr) = (ini.address()?, tgt.address()?);
    let transfers = regions.len();
    let initiator = UcxInitiator::new(ini, local, transfers, size, op, timeout, &mut |_| {
        Ok(tgt_addr.clone())
    })?;
    let mut target = UcxTarget::new(tgt, regions, &mut |_| Ok(ini_addr.clone()))?;
    target.0.outlive(&initiator.0);
    Ok((initiator, target))
}
