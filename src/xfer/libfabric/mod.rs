//! The libfabric ends of a transfer (RMA writes with remote CQ data, reads, or tagged sends;
//! `protocol.rs`): connected and registered here, with the set-up timed.

use std::time::{Duration, Instant};

pub mod protocol;

pub use self::protocol::{ChunkOp, FabricInitiator, FabricTarget};
use super::{SetupTimes, XferError, XferOp};
use crate::fabric::{self, caps, Connection, EndpointSpec, MemoryRegion};
use crate::mem::SharedRegion;
use crate::peer::Exchange;
use crate::peer::Side;

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
    let registration = mrs.first().map(|m| m.mode().name());
    Ok((
        conn,
        mrs,
        SetupTimes {
            connect_ns,
            registration_first_ns: first_ns,
            registration_cached_ns: cached_ns,
            registration,
        },
    ))
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
        let end = FabricInitiator::new(conn, mr, transfers, size, chunk_op(op), timeout)?;
        Ok((end, setup))
    }
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
        Ok((FabricTarget::new(conn, mrs, timeout)?, setup))
    }
}
