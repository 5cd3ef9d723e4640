//! The libfabric ends of a transfer: RMA writes with remote CQ data, reads, or tagged sends,
//! over the safe layer's transfer endpoints.

use std::time::{Duration, Instant};

pub mod protocol;

use self::protocol::{ChunkOp, XferInitiatorEp, XferTargetEp};
use super::{
    InitiatorEnd, Library, RegionOffer, SetupTimes, TargetEnd, TargetEvent, XferError,
    XferInitiator, XferOp, XferTarget,
};
use crate::fabric::{self, caps, Connection, EndpointSpec, Exchange, MemoryRegion, Side};
use crate::mem::SharedRegion;

/// The libfabric call that carries `op`.
fn chunk_op(op: XferOp) -> ChunkOp {
    match op {
        XferOp::Write => ChunkOp::WriteData,
        XferOp::Read => ChunkOp::Read,
        XferOp::Send => ChunkOp::TaggedSend,
    }
}

/// Connects an endpoint of `spec` (addresses swapped by `exchange`) and registers `regions`
/// with `access`; times both.
fn connect(
    spec: &EndpointSpec,
    side: Side,
    exchange: &mut Exchange<'_>,
    regions: Vec<SharedRegion>,
    access: u64,
) -> Result<(Connection, Vec<MemoryRegion<SharedRegion>>, SetupTimes), XferError> {
    let t0 = Instant::now();
    let conn = fabric::connect(spec, side, exchange)?;
    let connect_ns = t0.elapsed().as_nanos() as u64;
    let mut mrs = Vec::with_capacity(regions.len());
    let mut first_ns = 0;
    for r in regions {
        let a = Instant::now();
        mrs.push(MemoryRegion::register(&conn.domain, r, access)?);
        if first_ns == 0 {
            first_ns = a.elapsed().as_nanos() as u64;
        }
    }
    let cached_ns = match mrs.first_mut() {
        Some(m) => m.time_reregistration(&conn.domain, access)?.as_nanos() as u64,
        None => 0,
    };
    Ok((
        conn,
        mrs,
        SetupTimes {
            connect_ns,
            registration_first_ns: first_ns,
            registration_cached_ns: cached_ns,
        },
    ))
}

/// An initiator end: one registered buffer holding every transfer back to back.
pub struct FabricInitiator {
    ep: XferInitiatorEp,
}

impl FabricInitiator {
    /// Connects over `spec` and registers `local` for `transfers` transfers of `size` bytes.
    pub fn connect(
        spec: &EndpointSpec,
        exchange: &mut Exchange<'_>,
        local: SharedRegion,
        transfers: usize,
        size: usize,
        op: XferOp,
        timeout: Duration,
    ) -> Result<(FabricInitiator, SetupTimes), XferError> {
        let access = caps::WRITE | caps::READ;
        let (conn, mut mrs, setup) = connect(spec, Side::Initiator, exchange, vec![local], access)?;
        let mr = mrs.pop().expect("one local region");
        let ep = XferInitiatorEp::new(conn, mr, transfers, size, chunk_op(op), timeout)?;
        Ok((FabricInitiator { ep }, setup))
    }
}

impl XferInitiator for FabricInitiator {
    #[inline]
    fn post(&mut self, tr: u32, c: u32, off: usize, len: usize) -> Result<bool, XferError> {
        Ok(self.ep.post(tr, c, off, len)?)
    }
    #[inline]
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), XferError> {
        Ok(self.ep.poll(done)?)
    }
    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), XferError> {
        Ok(self.ep.notify(tr, chunks)?)
    }
    #[inline]
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), XferError> {
        Ok(self.ep.poll_confirmed(out)?)
    }
}

impl InitiatorEnd for FabricInitiator {
    fn set_remote(&mut self, offer: RegionOffer) -> Result<(), XferError> {
        match offer {
            RegionOffer::Libfabric(regions) => Ok(self.ep.set_remote(regions)?),
            RegionOffer::Ucx(_) => Err(XferError::Offer(
                "a UCX offer reached a libfabric initiator".into(),
            )),
            RegionOffer::LibfabricRails(_) => Err(XferError::Offer(
                "a multi-rail offer reached a one-rail initiator".into(),
            )),
        }
    }
    fn local_mut(&mut self) -> Option<&mut [u8]> {
        self.ep.local_mut()
    }
    fn drain(&mut self) -> Result<(), XferError> {
        Ok(self.ep.drain()?)
    }
    fn library(&self) -> Library<'_> {
        Library::Libfabric(&self.ep.connection().info)
    }
}

/// A target end: one registered region per transfer.
pub struct FabricTarget {
    ep: XferTargetEp,
}

impl FabricTarget {
    /// Connects over `spec` and registers `regions`, one per transfer.
    pub fn connect(
        spec: &EndpointSpec,
        exchange: &mut Exchange<'_>,
        regions: Vec<SharedRegion>,
        timeout: Duration,
    ) -> Result<(FabricTarget, SetupTimes), XferError> {
        let access = caps::REMOTE_WRITE | caps::REMOTE_READ;
        let (conn, mrs, setup) = connect(spec, Side::Target, exchange, regions, access)?;
        let ep = XferTargetEp::new(conn, mrs, timeout)?;
        Ok((FabricTarget { ep }, setup))
    }
}

impl XferTarget for FabricTarget {
    #[inline]
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), XferError> {
        Ok(self.ep.poll(out)?)
    }
    fn confirm(&mut self, tr: u32) -> Result<(), XferError> {
        Ok(self.ep.confirm(tr)?)
    }
}

impl TargetEnd for FabricTarget {
    fn offer(&self) -> Result<RegionOffer, XferError> {
        Ok(RegionOffer::Libfabric(self.ep.remote_regions()))
    }
    fn region_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        self.ep.region_mut(i)
    }
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<(), XferError> {
        Ok(self.ep.arm_receives(plan)?)
    }
}
