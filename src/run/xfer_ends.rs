//! The two backends of an xfer worker behind one face: connecting and registering, the
//! region offer, and the transfer loop's operations, for libfabric (RMA with remote CQ data)
//! and UCX (put/get/tagged send with notifications).

use serde_json::Value;

use super::environment;
use super::xfer::{XferBackend, XferConfig};
use super::RunError;
use crate::bench::xfer::{TargetEvent, XferInitiator, XferTarget};
use crate::bench::BenchError;
use crate::bootstrap::Oob;
use crate::fabric::{
    self, caps, MemoryRegion, RemoteRegion, Side, XferInitiatorEp, XferOp, XferTargetEp,
};
use crate::mem::SharedRegion;
use crate::report::Environment;
use crate::ucx::xfer::{
    RegionOffer, SetupTimes, UcxTargetEvent, UcxXferInitiator, UcxXferOp, UcxXferTarget,
};

/// Set-up costs of one end, nanoseconds: connection, first registration, a second one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    /// Connection set-up.
    pub connect_ns: u64,
    /// Registering the first region.
    pub registration_first_ns: u64,
    /// Registering it again.
    pub registration_cached_ns: u64,
}

impl From<SetupTimes> for Setup {
    fn from(t: SetupTimes) -> Setup {
        Setup {
            connect_ns: t.connect_ns,
            registration_first_ns: t.registration_first_ns,
            registration_cached_ns: t.registration_cached_ns,
        }
    }
}

/// An initiator worker's end, connected and registered.
pub trait InitiatorEnd: XferInitiator {
    /// Takes the target's region offer.
    fn set_remote(&mut self, offer: Value) -> Result<(), RunError>;
    /// The local buffer (every transfer back to back), while nothing is in flight.
    fn local_mut(&mut self) -> Option<&mut [u8]>;
    /// Completes what is still in flight (between iterations).
    fn drain(&mut self) -> Result<(), RunError>;
    /// The fabric this end ran on (after its traffic, when the backend settles it late).
    fn environment(&self) -> Environment;
}

/// A target worker's end, connected and registered.
pub trait TargetEnd: XferTarget {
    /// The regions as the initiator reaches them.
    fn offer(&self) -> Result<Value, RunError>;
    /// Region `i`, for filling and checking.
    fn region_mut(&mut self, i: usize) -> Option<&mut [u8]>;
    /// Posts the receives of a send-based iteration.
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<(), RunError>;
}

/// Connects an initiator worker of `cfg`'s backend and registers `local`.
pub fn connect_initiator(
    cfg: &XferConfig,
    oob: &mut Oob,
    local: SharedRegion,
    transfers: usize,
) -> Result<(Box<dyn InitiatorEnd>, Setup), RunError> {
    let size = cfg.size as usize;
    match cfg.backend {
        XferBackend::Libfabric => {
            let (conn, mut mrs, setup) = connect_fabric(
                cfg,
                oob,
                Side::Initiator,
                vec![local],
                caps::WRITE | caps::READ,
            )?;
            let environment = environment::with_fabric(&conn.info);
            let mr = mrs.pop().expect("one local region");
            let ep = XferInitiatorEp::new(conn, mr, transfers, size, cfg.op, cfg.timeout)?;
            Ok((Box::new(FabricInitiator { ep, environment }), setup))
        }
        XferBackend::Ucx => {
            let (end, t) =
                UcxXferInitiator::new(local, transfers, size, ucx_op(cfg.op), &mut |ours| {
                    oob.exchange(ours).map_err(|e| e.to_string())
                })?;
            Ok((
                Box::new(UcxInitiator {
                    end,
                    timeout: cfg.timeout,
                }),
                t.into(),
            ))
        }
    }
}

/// Connects a target worker of `cfg`'s backend and registers `regions`.
pub fn connect_target(
    cfg: &XferConfig,
    oob: &mut Oob,
    regions: Vec<SharedRegion>,
) -> Result<(Box<dyn TargetEnd>, Setup), RunError> {
    match cfg.backend {
        XferBackend::Libfabric => {
            let (conn, mrs, setup) = connect_fabric(
                cfg,
                oob,
                Side::Target,
                regions,
                caps::REMOTE_WRITE | caps::REMOTE_READ,
            )?;
            let ep = XferTargetEp::new(conn, mrs, cfg.timeout)?;
            Ok((Box::new(FabricTarget { ep }), setup))
        }
        XferBackend::Ucx => {
            let (end, t) = UcxXferTarget::new(regions, &mut |ours| {
                oob.exchange(ours).map_err(|e| e.to_string())
            })?;
            Ok((Box::new(UcxTarget { end }), t.into()))
        }
    }
}

/// The UCX operation that carries `op`.
pub fn ucx_op(op: XferOp) -> UcxXferOp {
    match op {
        XferOp::Write => UcxXferOp::Put,
        XferOp::Read => UcxXferOp::Get,
        XferOp::Send => UcxXferOp::TagSend,
    }
}

/// Connects over libfabric and registers `regions` with `access`.
fn connect_fabric(
    cfg: &XferConfig,
    oob: &mut Oob,
    side: Side,
    regions: Vec<SharedRegion>,
    access: u64,
) -> Result<(fabric::Connection, Vec<MemoryRegion<SharedRegion>>, Setup), RunError> {
    let spec = cfg.spec(oob)?;
    let t0 = std::time::Instant::now();
    let conn = fabric::connect(&spec, side, &mut |ours: &[u8]| {
        oob.exchange(ours).map_err(|e| e.to_string())
    })?;
    let connect_ns = t0.elapsed().as_nanos() as u64;
    let mut mrs = Vec::with_capacity(regions.len());
    let mut first_ns = 0;
    for r in regions {
        let a = std::time::Instant::now();
        mrs.push(MemoryRegion::register(&conn.domain, r, access)?);
        if first_ns == 0 {
            first_ns = a.elapsed().as_nanos() as u64;
        }
    }
    let cached_ns = mrs[0].time_reregistration(&conn.domain, access)?.as_nanos() as u64;
    Ok((
        conn,
        mrs,
        Setup {
            connect_ns,
            registration_first_ns: first_ns,
            registration_cached_ns: cached_ns,
        },
    ))
}

struct FabricInitiator {
    ep: XferInitiatorEp,
    environment: Environment,
}

impl XferInitiator for FabricInitiator {
    #[inline]
    fn post(&mut self, tr: u32, c: u32, off: usize, len: usize) -> Result<bool, BenchError> {
        Ok(self.ep.post(tr, c, off, len)?)
    }
    #[inline]
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), BenchError> {
        Ok(self.ep.poll(done)?)
    }
    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), BenchError> {
        Ok(self.ep.notify(tr, chunks)?)
    }
    #[inline]
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), BenchError> {
        Ok(self.ep.poll_confirmed(out)?)
    }
}

impl InitiatorEnd for FabricInitiator {
    fn set_remote(&mut self, offer: Value) -> Result<(), RunError> {
        let regions: Vec<RemoteRegion> = serde_json::from_value(offer)
            .map_err(|e| RunError::Config(format!("the target's region offer: {e}")))?;
        Ok(self.ep.set_remote(regions)?)
    }
    fn local_mut(&mut self) -> Option<&mut [u8]> {
        self.ep.local_mut().map(|r| r.as_mut_slice())
    }
    fn drain(&mut self) -> Result<(), RunError> {
        Ok(self.ep.drain()?)
    }
    fn environment(&self) -> Environment {
        self.environment.clone()
    }
}

struct FabricTarget {
    ep: XferTargetEp,
}

impl XferTarget for FabricTarget {
    #[inline]
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), BenchError> {
        let mut raw = Vec::new();
        self.ep.poll(&mut raw)?;
        out.extend(raw.into_iter().map(|(t, n)| match n {
            None => TargetEvent::Data(t),
            Some(chunks) => TargetEvent::Notify {
                transfer: t,
                chunks,
            },
        }));
        Ok(())
    }
    fn confirm(&mut self, tr: u32) -> Result<(), BenchError> {
        Ok(self.ep.confirm(tr)?)
    }
}

impl TargetEnd for FabricTarget {
    fn offer(&self) -> Result<Value, RunError> {
        serde_json::to_value(self.ep.remote_regions())
            .map_err(|e| RunError::Config(format!("cannot encode the region offer: {e}")))
    }
    fn region_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        self.ep.region_mut(i).map(|r| r.as_mut_slice())
    }
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<(), RunError> {
        Ok(self.ep.arm_receives(plan)?)
    }
}

struct UcxInitiator {
    end: UcxXferInitiator,
    timeout: std::time::Duration,
}

impl XferInitiator for UcxInitiator {
    #[inline]
    fn post(&mut self, tr: u32, c: u32, off: usize, len: usize) -> Result<bool, BenchError> {
        // UCX queues what a transport cannot take now: a post is never refused.
        self.end.post(tr, c, off, len)?;
        Ok(true)
    }
    #[inline]
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), BenchError> {
        Ok(self.end.poll(done)?)
    }
    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), BenchError> {
        Ok(self.end.notify(tr, chunks)?)
    }
    #[inline]
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), BenchError> {
        Ok(self.end.poll_confirmed(out)?)
    }
}

impl InitiatorEnd for UcxInitiator {
    fn set_remote(&mut self, offer: Value) -> Result<(), RunError> {
        let regions: Vec<RegionOffer> = serde_json::from_value(offer)
            .map_err(|e| RunError::Config(format!("the target's region offer: {e}")))?;
        Ok(self.end.set_remote(&regions)?)
    }
    fn local_mut(&mut self) -> Option<&mut [u8]> {
        self.end.local_mut()
    }
    fn drain(&mut self) -> Result<(), RunError> {
        Ok(self.end.drain(self.timeout)?)
    }
    fn environment(&self) -> Environment {
        let mut env = environment::base();
        let (ctx, ep) = self.end.ucx();
        environment::add_ucx(&mut env, ctx, ep);
        env
    }
}

struct UcxTarget {
    end: UcxXferTarget,
}

impl XferTarget for UcxTarget {
    #[inline]
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), BenchError> {
        let mut raw = Vec::new();
        self.end.poll(&mut raw)?;
        out.extend(raw.into_iter().map(|e| match e {
            UcxTargetEvent::Data(t) => TargetEvent::Data(t),
            UcxTargetEvent::Notify(transfer, chunks) => TargetEvent::Notify { transfer, chunks },
        }));
        Ok(())
    }
    fn confirm(&mut self, tr: u32) -> Result<(), BenchError> {
        Ok(self.end.confirm(tr)?)
    }
}

impl TargetEnd for UcxTarget {
    fn offer(&self) -> Result<Value, RunError> {
        serde_json::to_value(self.end.offer()?)
            .map_err(|e| RunError::Config(format!("cannot encode the region offer: {e}")))
    }
    fn region_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        self.end.region_mut(i)
    }
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<(), RunError> {
        Ok(self.end.arm_receives(plan)?)
    }
}
