//! The UCX ends of `xfer`: one worker's context, worker, endpoint and mapped memory, with the
//! transfer loop's operations (put, get or tagged send of each chunk), its notifications and
//! the target's confirmations, all as tagged messages on the same endpoint.
//!
//! UCX puts leave no trace at the target, so a transfer written with puts is announced only
//! after a flush of the endpoint has completed (every put landed), as NIXL's UCX backend does
//! before it notifies; gets need no flush (their data is here when they complete); tagged
//! sends land in receives the target armed at each chunk's place and are counted there.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::super::tag::{self, tag, Kind, KIND_MASK, MAX_TRANSFERS};
use super::super::{
    InitiatorEnd, Library, RegionOffer, SetupTimes, TargetEnd, TargetEvent, XferError,
    XferInitiator, XferOp, XferTarget,
};
use crate::mem::{range_within, SharedRegion};
use crate::peer::Exchange;
use crate::ucx::{
    Context, Endpoint, Features, MemHandle, OpTable, RemoteMemory, Result, UcxError, Worker,
};

/// One target region as the initiator reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRegion {
    /// Virtual address of the region's first byte at the target.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// The packed remote key, base64.
    pub rkey: String,
}

/// A context with tag matching and RMA and its worker, before any endpoint: one end of a
/// connection whose peer's address is still to come.
pub struct UcxSide {
    ctx: Context,
    worker: Worker,
}

impl UcxSide {
    /// Opens a context and a worker.
    pub fn open() -> Result<UcxSide> {
        let ctx = Context::new(Features {
            tag: true,
            rma: true,
        })?;
        let worker = Worker::new(&ctx)?;
        Ok(UcxSide { ctx, worker })
    }

    /// Makes this side's worker and `other`'s companions: this thread drives both ends.
    pub fn drive_with(&self, other: &UcxSide) {
        self.worker.drive_with(&other.worker);
    }

    /// The worker's address, for the peer to connect to.
    pub fn address(&self) -> Result<Vec<u8>> {
        self.worker.address()
    }

    /// An endpoint to the peer's worker whose address `exchange` swaps for ours; the time the
    /// exchange and the endpoint took.
    fn connect(self, exchange: &mut Exchange<'_>) -> Result<(Context, Worker, Endpoint, u64)> {
        let t0 = Instant::now();
        let peer = exchange(&self.worker.address()?).map_err(UcxError::Invalid)?;
        let ep = Endpoint::connect(&self.worker, &peer)?;
        Ok((self.ctx, self.worker, ep, t0.elapsed().as_nanos() as u64))
    }
}

/// Maps every region; returns them with the first mapping's time and a second mapping's.
fn map_all(
    ctx: &Context,
    regions: Vec<SharedRegion>,
) -> Result<(Vec<MemHandle<SharedRegion>>, u64, u64)> {
    let mut out = Vec::with_capacity(regions.len());
    let mut first_ns = 0;
    for r in regions {
        let a = Instant::now();
        out.push(MemHandle::map(ctx, r)?);
        if first_ns == 0 {
            first_ns = a.elapsed().as_nanos().max(1) as u64;
        }
    }
    let cached_ns = match out.first_mut() {
        Some(m) => m.time_remap()?.as_nanos() as u64,
        None => 0,
    };
    Ok((out, first_ns, cached_ns))
}

/// Posts the receive of the next control message of `kind` (`len` bytes).
fn post_ctrl_recv(ops: &mut OpTable, worker: &Worker, kind: Kind, len: usize) -> Result<()> {
    let tok = tag(kind, 0, 0);
    ops.recv_message(worker, len, tok, KIND_MASK, tok, "control receive")?;
    Ok(())
}

/// The `len`-byte control message that arrived under `token`, as little-endian words.
fn ctrl_message<const N: usize>(ops: &mut OpTable, token: u64, n: usize) -> Result<[u64; N]> {
    let msg = ops.message(token);
    let bytes = msg.as_deref().filter(|m| n == N * 8 && m.len() >= n);
    let Some(bytes) = bytes else {
        return Err(UcxError::Invalid(format!("a {n}-byte control message")));
    };
    let mut out = [0u64; N];
    for (k, w) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[k * 8..k * 8 + 8]);
        *w = u64::from_le_bytes(b);
    }
    Ok(out)
}

/// The initiator's end of one worker.
pub struct UcxInitiator {
    // Operations first: Drop settles them before the memory they reach can go.
    ops: OpTable,
    done: Vec<(u64, usize)>,
    /// Chunks each notification announces, per transfer (sent after a flush for puts).
    counts: Vec<u64>,
    confirmed: Vec<u32>,
    completed: Vec<(u32, u32)>,
    remotes: Vec<RemoteMemory>,
    local: MemHandle<SharedRegion>,
    op: XferOp,
    size: usize,
    /// How long drain waits for what is in flight.
    timeout: Duration,
    ep: Endpoint,
    worker: Worker,
    ctx: Context,
}

impl UcxInitiator {
    /// Connects `side` to the target's worker (its address swapped by `exchange`) and maps
    /// `local`, the initiator's buffer of `transfers` transfers of `size` bytes back to back.
    pub fn new(
        side: UcxSide,
        local: SharedRegion,
        transfers: usize,
        size: usize,
        op: XferOp,
        timeout: Duration,
        exchange: &mut Exchange<'_>,
    ) -> Result<(UcxInitiator, SetupTimes)> {
        use crate::mem::Buffer;
        if transfers == 0
            || transfers > MAX_TRANSFERS
            || transfers
                .checked_mul(size)
                .map_or(true, |n| n > local.len())
        {
            return Err(UcxError::Invalid(format!(
                "{transfers} transfers of {size} bytes do not fit the local buffer"
            )));
        }
        let (ctx, worker, ep, connect_ns) = side.connect(exchange)?;
        let (mut local, first, cached) = map_all(&ctx, vec![local])?;
        let mut ops = OpTable::new(&worker);
        post_ctrl_recv(&mut ops, &worker, Kind::Confirm, 8)?;
        Ok((
            UcxInitiator {
                ops,
                done: Vec::with_capacity(64),
                counts: vec![0; transfers],
                confirmed: Vec::new(),
                completed: Vec::new(),
                remotes: Vec::new(),
                local: local.pop().expect("one local region"),
                op,
                size,
                timeout,
                ep,
                worker,
                ctx,
            },
            SetupTimes {
                connect_ns,
                registration_first_ns: first,
                registration_cached_ns: cached,
                registration: None,
            },
        ))
    }

    /// Unpacks the target's regions, one per transfer.
    pub fn set_regions(&mut self, regions: &[RemoteRegion]) -> Result<()> {
        if regions.len() != self.counts.len() {
            return Err(UcxError::Invalid(format!(
                "the target offers {} regions for {} transfers",
                regions.len(),
                self.counts.len()
            )));
        }
        let mut out = Vec::with_capacity(regions.len());
        for r in regions {
            if r.len < self.size as u64 {
                return Err(UcxError::Invalid(format!(
                    "a target region of {} bytes cannot hold a {}-byte transfer",
                    r.len, self.size
                )));
            }
            let packed = base64::engine::general_purpose::STANDARD
                .decode(&r.rkey)
                .map_err(|e| UcxError::Invalid(format!("malformed remote key: {e}")))?;
            out.push(RemoteMemory::new(&self.ep, r.addr, r.len, &packed)?);
        }
        self.remotes = out;
        Ok(())
    }

    fn send_notify(&mut self, transfer: u32) -> Result<()> {
        let count = self.counts[transfer as usize];
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&u64::from(transfer).to_le_bytes());
        msg[8..].copy_from_slice(&count.to_le_bytes());
        let tok = tag(Kind::Notify, transfer, 0);
        self.ops
            .send_message(&self.ep, &msg, tok, tok, "notification")?;
        Ok(())
    }
}

impl XferInitiator for UcxInitiator {
    /// Posts chunk `chunk` of `transfer`: `len` bytes at `offset` of the transfer.
    fn post(
        &mut self,
        transfer: u32,
        chunk: u32,
        offset: usize,
        len: usize,
    ) -> std::result::Result<bool, XferError> {
        let t = transfer as usize;
        let outside = || XferError::chunk_outside(transfer, chunk, offset, len, self.size);
        if t >= self.counts.len() || !range_within(offset, len, self.size) {
            return Err(outside());
        }
        let at = t * self.size + offset;
        let tok = tag(Kind::Data, transfer, chunk);
        let in_place = match self.op {
            XferOp::Write | XferOp::Read => {
                let Some(remote) = self.remotes.get(t) else {
                    return Err(UcxError::Invalid("no remote regions yet".into()).into());
                };
                let r = remote.slice(offset, len).ok_or_else(outside)?;
                if self.op == XferOp::Write {
                    let l = self.local.slice(at, len).ok_or_else(outside)?;
                    self.ops.put(&self.ep, l, r, tok)?
                } else {
                    let l = self.local.slice_mut(at, len).ok_or_else(outside)?;
                    self.ops.get(&self.ep, l, r, tok)?
                }
            }
            XferOp::Send => {
                let l = self.local.slice(at, len).ok_or_else(outside)?;
                self.ops.tag_send(&self.ep, l, tok, tok)?
            }
        };
        if in_place {
            self.completed.push((transfer, chunk));
        }
        // UCX queues what a transport cannot take now: a post is never refused.
        Ok(true)
    }

    /// Appends the (transfer, chunk) of chunks completed locally since the last call; moves
    /// notifications and confirmations along.
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> std::result::Result<(), XferError> {
        done.append(&mut self.completed);
        self.ops.poll(&mut self.done)?;
        let mut i = 0;
        while i < self.done.len() {
            let (tok, n) = self.done[i];
            i += 1;
            match tag::split(tok) {
                Some((Kind::Data, transfer, chunk)) => done.push((transfer, chunk)),
                Some((Kind::Flush, transfer, _)) => self.send_notify(transfer)?,
                Some((Kind::Confirm, _, _)) => {
                    let [t] = ctrl_message::<1>(&mut self.ops, tok, n)?;
                    post_ctrl_recv(&mut self.ops, &self.worker, Kind::Confirm, 8)?;
                    self.confirmed.push(t as u32);
                }
                _ => {} // a notification left
            }
        }
        self.done.clear();
        Ok(())
    }

    /// Tells the target that `transfer`'s `chunks` are complete here (after a flush for puts,
    /// whose data the target cannot count).
    fn notify(&mut self, transfer: u32, chunks: u64) -> std::result::Result<(), XferError> {
        let Some(count) = self.counts.get_mut(transfer as usize) else {
            return Err(UcxError::Invalid(format!("no transfer {transfer}")).into());
        };
        *count = match self.op {
            XferOp::Send => chunks,
            XferOp::Write | XferOp::Read => 0,
        };
        if self.op == XferOp::Write && !self.ops.flush(&self.ep, tag(Kind::Flush, transfer, 0))? {
            return Ok(());
        }
        Ok(self.send_notify(transfer)?)
    }

    /// Appends the transfers the target has confirmed since the last call.
    fn poll_confirmed(&mut self, confirmed: &mut Vec<u32>) -> std::result::Result<(), XferError> {
        confirmed.append(&mut self.confirmed);
        Ok(())
    }
}

impl InitiatorEnd for UcxInitiator {
    fn set_remote(&mut self, offer: RegionOffer) -> std::result::Result<(), XferError> {
        match offer {
            RegionOffer::Ucx(regions) => Ok(self.set_regions(&regions)?),
            RegionOffer::Libfabric(_) | RegionOffer::LibfabricRails(_) => Err(XferError::Offer(
                "a libfabric offer reached a UCX initiator".into(),
            )),
        }
    }

    /// The local buffer, while no operation is in flight on it (None otherwise).
    fn local_mut(&mut self) -> Option<&mut SharedRegion> {
        self.local.buf_mut()
    }

    /// Completes everything but the posted confirmation receive (between iterations).
    fn drain(&mut self) -> std::result::Result<(), XferError> {
        let timeout = self.timeout;
        let start = Instant::now();
        let mut sink = Vec::new();
        while self.ops.len() > 1 || !self.completed.is_empty() {
            self.poll(&mut sink)?;
            if start.elapsed() > timeout {
                return Err(UcxError::Timeout {
                    what: "outstanding operations",
                    secs: timeout.as_secs_f64(),
                }
                .into());
            }
        }
        Ok(())
    }

    fn library(&self) -> Library<'_> {
        Library::Ucx(&self.ctx, &self.ep)
    }
}

/// The target's end of one worker.
pub struct UcxTarget {
    // Operations first: Drop settles them before the memory they reach can go.
    ops: OpTable,
    done: Vec<(u64, usize)>,
    regions: Vec<MemHandle<SharedRegion>>,
    ep: Endpoint,
    worker: Worker,
    /// Kept open while the worker and the mappings live.
    _ctx: Context,
    /// The worker of the initiator this thread also drives, kept until this end has closed
    /// (its endpoint's close needs that worker alive and progressed).
    _initiator_worker: Option<Worker>,
}

impl UcxTarget {
    /// Connects `side` to the initiator's worker (its address swapped by `exchange`) and maps
    /// the regions, one per transfer.
    pub fn new(
        side: UcxSide,
        regions: Vec<SharedRegion>,
        exchange: &mut Exchange<'_>,
    ) -> Result<(UcxTarget, SetupTimes)> {
        if regions.is_empty() || regions.len() > MAX_TRANSFERS {
            return Err(UcxError::Invalid(format!(
                "{} regions: between 1 and {MAX_TRANSFERS} expected",
                regions.len()
            )));
        }
        let (ctx, worker, ep, connect_ns) = side.connect(exchange)?;
        let (regions, first, cached) = map_all(&ctx, regions)?;
        let mut ops = OpTable::new(&worker);
        post_ctrl_recv(&mut ops, &worker, Kind::Notify, 16)?;
        Ok((
            UcxTarget {
                ops,
                done: Vec::with_capacity(64),
                regions,
                ep,
                worker,
                _ctx: ctx,
                _initiator_worker: None,
            },
            SetupTimes {
                connect_ns,
                registration_first_ns: first,
                registration_cached_ns: cached,
                registration: None,
            },
        ))
    }

    /// Keeps `initiator`'s worker alive until this end is gone: this thread drives both ends,
    /// and the initiator (dropped first) must not take its worker with it while this end's
    /// endpoint still has to close.
    pub fn outlive(&mut self, initiator: &UcxInitiator) {
        self._initiator_worker = Some(initiator.worker.clone());
    }

    /// Progresses the worker until it finds nothing to do, at most `limit` times.
    pub fn progress_until_idle(&self, limit: u32) {
        for _ in 0..limit {
            if self.worker.progress() == 0 {
                break;
            }
        }
    }

    /// The regions as the initiator reaches them.
    pub fn regions_offered(&self) -> Result<Vec<RemoteRegion>> {
        self.regions
            .iter()
            .map(|m| {
                let (addr, len) = m.range();
                Ok(RemoteRegion {
                    addr,
                    len: len as u64,
                    rkey: base64::engine::general_purpose::STANDARD.encode(m.pack_rkey()?),
                })
            })
            .collect()
    }
}

impl XferTarget for UcxTarget {
    /// Appends what happened since the last call.
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> std::result::Result<(), XferError> {
        self.ops.poll(&mut self.done)?;
        let mut i = 0;
        while i < self.done.len() {
            let (tok, n) = self.done[i];
            i += 1;
            match tag::split(tok) {
                Some((Kind::Data, transfer, _)) => out.push(TargetEvent::Data(transfer)),
                Some((Kind::Notify, _, _)) => {
                    let [t, chunks] = ctrl_message::<2>(&mut self.ops, tok, n)?;
                    post_ctrl_recv(&mut self.ops, &self.worker, Kind::Notify, 16)?;
                    out.push(TargetEvent::Notify {
                        transfer: t as u32,
                        chunks,
                    });
                }
                _ => {} // a confirmation left
            }
        }
        self.done.clear();
        Ok(())
    }

    /// Confirms a complete transfer to the initiator.
    fn confirm(&mut self, transfer: u32) -> std::result::Result<(), XferError> {
        if transfer as usize >= self.regions.len() {
            return Err(UcxError::Invalid(format!("no transfer {transfer}")).into());
        }
        let tok = tag(Kind::Confirm, transfer, 0);
        let msg = u64::from(transfer).to_le_bytes();
        self.ops
            .send_message(&self.ep, &msg, tok, tok, "confirmation")?;
        Ok(())
    }
}

impl TargetEnd for UcxTarget {
    fn offer(&self) -> std::result::Result<RegionOffer, XferError> {
        Ok(RegionOffer::Ucx(self.regions_offered()?))
    }

    /// Region `i`, for filling and checking (None while an operation is in flight on it).
    fn region_mut(&mut self, i: usize) -> Option<&mut SharedRegion> {
        self.regions.get_mut(i)?.buf_mut()
    }

    /// Posts a receive for every chunk of every transfer at its place (tagged sends).
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> std::result::Result<(), XferError> {
        for (t, m) in self.regions.iter_mut().enumerate() {
            let cap = m.len();
            for (c, &(off, len)) in plan.iter().enumerate() {
                let Some(slice) = m.slice_mut(off, len) else {
                    return Err(XferError::chunk_outside(t as u32, c as u32, off, len, cap));
                };
                let tok = tag(Kind::Data, t as u32, c as u32);
                self.ops.tag_recv(&self.worker, slice, tok, u64::MAX, tok)?;
            }
        }
        Ok(())
    }
}
