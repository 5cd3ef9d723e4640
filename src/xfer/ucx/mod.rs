//! The UCX ends of a transfer: puts (announced after an endpoint flush), gets, or tagged
//! sends, over the safe layer's transfer workers.

use std::time::Duration;

pub mod protocol;

use self::protocol::{Exchange, UcxXferInitiator, UcxXferTarget};
use super::{
    InitiatorEnd, Library, RegionOffer, SetupTimes, TargetEnd, TargetEvent, XferError,
    XferInitiator, XferOp, XferTarget,
};
use crate::mem::SharedRegion;

/// An initiator end: one mapped buffer holding every transfer back to back.
pub struct UcxInitiator {
    end: UcxXferInitiator,
    timeout: Duration,
}

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
        let (end, t) = UcxXferInitiator::new(local, transfers, size, op, exchange)?;
        Ok((UcxInitiator { end, timeout }, t))
    }
}

impl XferInitiator for UcxInitiator {
    #[inline]
    fn post(&mut self, tr: u32, c: u32, off: usize, len: usize) -> Result<bool, XferError> {
        // UCX queues what a transport cannot take now: a post is never refused.
        self.end.post(tr, c, off, len)?;
        Ok(true)
    }
    #[inline]
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), XferError> {
        Ok(self.end.poll(done)?)
    }
    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), XferError> {
        Ok(self.end.notify(tr, chunks)?)
    }
    #[inline]
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), XferError> {
        Ok(self.end.poll_confirmed(out)?)
    }
}

impl InitiatorEnd for UcxInitiator {
    fn set_remote(&mut self, offer: RegionOffer) -> Result<(), XferError> {
        match offer {
            RegionOffer::Ucx(regions) => Ok(self.end.set_remote(&regions)?),
            RegionOffer::Libfabric(_) | RegionOffer::LibfabricRails(_) => Err(XferError::Offer(
                "a libfabric offer reached a UCX initiator".into(),
            )),
        }
    }
    fn local_mut(&mut self) -> Option<&mut [u8]> {
        self.end.local_mut()
    }
    fn drain(&mut self) -> Result<(), XferError> {
        Ok(self.end.drain(self.timeout)?)
    }
    fn library(&self) -> Library<'_> {
        let (ctx, ep) = self.end.ucx();
        Library::Ucx(ctx, ep)
    }
}

/// A target end: one mapped region per transfer.
pub struct UcxTarget {
    end: UcxXferTarget,
}

impl UcxTarget {
    /// Connects to the initiator's worker (addresses swapped by `exchange`) and maps
    /// `regions`, one per transfer.
    pub fn connect(
        exchange: &mut Exchange<'_>,
        regions: Vec<SharedRegion>,
    ) -> Result<(UcxTarget, SetupTimes), XferError> {
        let (end, t) = UcxXferTarget::new(regions, exchange)?;
        Ok((UcxTarget { end }, t))
    }
}

impl XferTarget for UcxTarget {
    #[inline]
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), XferError> {
        Ok(self.end.poll(out)?)
    }
    fn confirm(&mut self, tr: u32) -> Result<(), XferError> {
        Ok(self.end.confirm(tr)?)
    }
}

impl TargetEnd for UcxTarget {
    fn offer(&self) -> Result<RegionOffer, XferError> {
        Ok(RegionOffer::Ucx(self.end.offer()?))
    }
    fn region_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        self.end.region_mut(i)
    }
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<(), XferError> {
        Ok(self.end.arm_receives(plan)?)
    }
}
