//! The two ends of a KV-sized transfer over libfabric RMA: the initiator posts chunked writes
//! (with remote CQ data) or reads and sends one notification per transfer saying how many
//! chunks to count; the target counts remote completions and confirms each transfer.

use std::time::{Duration, Instant};

use super::super::tag::{self, tag, Kind, MAX_TRANSFERS};
use super::super::{
    InitiatorEnd, Library, RegionOffer, TargetEnd, TargetEvent, XferError, XferInitiator,
    XferTarget,
};
use crate::fabric::{
    caps, Connection, DataPath, Done, FabricError, MemoryRegion, RemoteRegion, Result,
};
use crate::mem::{range_within, HostBuffer, SharedRegion};

/// Bytes of one control message: transfer index and chunk count, two little-endian u64.
const SLOT: usize = 16;

/// The libfabric call that moves a transfer's chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOp {
    /// fi_writedata into the target's memory; the target counts the remote CQ data.
    WriteData,
    /// fi_read from the target's memory.
    Read,
    /// fi_tsend into receives the target posts at each chunk's place (the chunk's tag); the
    /// target counts the receive completions.
    TaggedSend,
}

/// Registered control slots, one region per slot each way, so a slot's message is read while
/// the other slots' receives stay posted.
struct Ctrl {
    tx: Vec<MemoryRegion<HostBuffer>>,
    rx: Vec<MemoryRegion<HostBuffer>>,
    /// The kind of message the receive slots take.
    rx_kind: Kind,
}

impl Ctrl {
    /// Registers `slots` slots each way and posts every receive slot.
    fn new(path: &mut DataPath, slots: usize, rx_kind: Kind, timeout: Duration) -> Result<Ctrl> {
        let conn = path.connection();
        let slot = |access| -> Result<MemoryRegion<HostBuffer>> {
            let buf = HostBuffer::new(SLOT).map_err(|e| FabricError::Invalid(e.to_string()))?;
            let mr = MemoryRegion::register(&conn.domain, buf, access)?;
            mr.bind_endpoint(&conn.ep, &conn.info)?;
            Ok(mr)
        };
        let tx = (0..slots)
            .map(|_| slot(caps::SEND))
            .collect::<Result<_>>()?;
        let rx = (0..slots)
            .map(|_| slot(caps::RECV))
            .collect::<Result<_>>()?;
        let mut ctrl = Ctrl { tx, rx, rx_kind };
        for i in 0..slots {
            ctrl.post_recv(path, i, timeout)?;
        }
        Ok(ctrl)
    }

    fn slots(&self) -> usize {
        self.rx.len()
    }

    /// Posts receive slot `i` (token: the receive kind and the slot).
    fn post_recv(&mut self, path: &mut DataPath, i: usize, timeout: Duration) -> Result<()> {
        let token = tag(self.rx_kind, i as u32, 0);
        let start = Instant::now();
        loop {
            let slot = self.rx[i].slice_mut(0, SLOT).ok_or_else(slot_error)?;
            if path.recv(slot, token)? {
                return Ok(());
            }
            timed_out(start, timeout, "room to post a control receive")?;
        }
    }

    /// The receive slot a completed control receive names, and its message.
    fn message(&self, token: u64) -> Result<(usize, u64, u64)> {
        let slot = match tag::split(token) {
            Some((k, s, 0)) if k == self.rx_kind && (s as usize) < self.slots() => s as usize,
            _ => {
                return Err(FabricError::Invalid(format!(
                    "a receive completion with unknown context {token:#x}"
                )))
            }
        };
        let b = self.rx[slot].buf().ok_or_else(slot_error)?.as_slice();
        let word = |k: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[k * 8..k * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Ok((slot, word(0), word(1)))
    }

    /// Sends (a, b) of `kind` from tx slot `i`, once the slot's previous send completed;
    /// transmit completions read meanwhile go to `spill`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        path: &mut DataPath,
        i: usize,
        kind: Kind,
        (a, b): (u64, u64),
        timeout: Duration,
        spill: &mut Vec<Done>,
    ) -> Result<()> {
        let start = Instant::now();
        let slot = loop {
            if let Some(buf) = self.tx.get_mut(i).ok_or_else(slot_error)?.buf_mut() {
                break buf.as_mut_slice();
            }
            path.poll_tx(spill)?;
            timed_out(start, timeout, "a control slot to free")?;
        };
        slot[..8].copy_from_slice(&a.to_le_bytes());
        slot[8..].copy_from_slice(&b.to_le_bytes());
        let token = tag(kind, i as u32, 0);
        loop {
            let slot = self.tx[i].slice(0, SLOT).ok_or_else(slot_error)?;
            if path.send(slot, token)? {
                return Ok(());
            }
            path.poll_tx(spill)?;
            timed_out(start, timeout, "room to send a control message")?;
        }
    }

    /// Whether a control send is still in flight.
    fn sending(&self) -> bool {
        self.tx.iter().any(|r| r.in_flight() > 0)
    }
}

fn slot_error() -> FabricError {
    FabricError::Invalid("no such control slot".into())
}

fn timed_out(start: Instant, timeout: Duration, what: &'static str) -> Result<()> {
    if start.elapsed() > timeout {
        return Err(FabricError::Timeout {
            what,
            secs: timeout.as_secs_f64(),
        });
    }
    Ok(())
}

/// The initiator's end: a registered local buffer holding every transfer back to back, and
/// the target's regions, one per transfer.
pub struct FabricInitiator {
    // The path first: its endpoint closes before the regions it reaches are released.
    path: DataPath,
    local: MemoryRegion<SharedRegion>,
    ctrl: Ctrl,
    remote: Vec<RemoteRegion>,
    op: ChunkOp,
    /// Chunks of transfer t start at t * stride in the local buffer.
    stride: usize,
    timeout: Duration,
    /// Completions of one poll, reused; completions read while sending control messages.
    done: Vec<Done>,
    spill: Vec<Done>,
}

impl FabricInitiator {
    /// Wraps a connection and a registered local buffer holding `transfers` regions of
    /// `stride` bytes; posts a control receive per transfer for the target's confirmations.
    pub fn new(
        conn: Connection,
        local: MemoryRegion<SharedRegion>,
        transfers: usize,
        stride: usize,
        op: ChunkOp,
        timeout: Duration,
    ) -> Result<FabricInitiator> {
        if transfers == 0
            || transfers > MAX_TRANSFERS
            || transfers.checked_mul(stride) != Some(local.len())
        {
            return Err(FabricError::Invalid(format!(
                "a local buffer of {} bytes does not hold {transfers} transfers of {stride} bytes",
                local.len()
            )));
        }
        local.bind_endpoint(&conn.ep, &conn.info)?;
        let mut path = DataPath::new(conn);
        let ctrl = Ctrl::new(&mut path, transfers, Kind::Confirm, timeout)?;
        Ok(FabricInitiator {
            path,
            local,
            ctrl,
            remote: Vec::new(),
            op,
            stride,
            timeout,
            done: Vec::with_capacity(64),
            spill: Vec::new(),
        })
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        self.path.connection()
    }

    /// Sets the target's regions, one per transfer (exchanged out of band).
    pub fn set_regions(&mut self, remote: Vec<RemoteRegion>) -> Result<()> {
        if remote.len() != self.ctrl.slots() || remote.iter().any(|r| r.len < self.stride as u64) {
            return Err(FabricError::Invalid(format!(
                "the target offered {} regions where {} of {} bytes are needed",
                remote.len(),
                self.ctrl.slots(),
                self.stride
            )));
        }
        self.remote = remote;
        Ok(())
    }
}

impl XferInitiator for FabricInitiator {
    /// Posts chunk `chunk` of transfer `transfer`: `len` bytes at `offset` of the transfer's
    /// local and remote regions. Ok(false): the provider's queue is full, poll and retry.
    #[inline]
    fn post(
        &mut self,
        transfer: u32,
        chunk: u32,
        offset: usize,
        len: usize,
    ) -> std::result::Result<bool, XferError> {
        let t = transfer as usize;
        let outside = || XferError::chunk_outside(transfer, chunk, offset, len, self.stride);
        let remote = self.remote.get(t).ok_or_else(outside)?;
        if !range_within(offset, len, self.stride) {
            return Err(outside());
        }
        let at = t * self.stride + offset;
        let token = tag(Kind::Data, transfer, chunk);
        match self.op {
            ChunkOp::WriteData => {
                let r = remote.slice(offset, len).ok_or_else(outside)?;
                let l = self.local.slice(at, len).ok_or_else(outside)?;
                Ok(self.path.write(l, r, Some(u64::from(transfer)), token)?)
            }
            ChunkOp::Read => {
                let r = remote.slice(offset, len).ok_or_else(outside)?;
                let l = self.local.slice_mut(at, len).ok_or_else(outside)?;
                Ok(self.path.read(l, r, token)?)
            }
            ChunkOp::TaggedSend => {
                let l = self.local.slice(at, len).ok_or_else(outside)?;
                Ok(self.path.tsend(l, token, token)?)
            }
        }
    }

    /// Reaps local completions; appends the (transfer, chunk) of each finished chunk.
    #[inline]
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> std::result::Result<(), XferError> {
        self.done.append(&mut self.spill);
        self.path.poll_tx(&mut self.done)?;
        for d in self.done.drain(..) {
            if let Done::Local { token, .. } = d {
                if let Some((Kind::Data, t, c)) = tag::split(token) {
                    done.push((t, c));
                }
            }
        }
        Ok(())
    }

    /// Tells the target that `transfer`'s `chunks` are complete here: it is to count that many
    /// remote completions for writes, none for reads (reads leave no trace on the target).
    fn notify(&mut self, transfer: u32, chunks: u64) -> std::result::Result<(), XferError> {
        let chunks = match self.op {
            ChunkOp::WriteData | ChunkOp::TaggedSend => chunks,
            ChunkOp::Read => 0,
        };
        let msg = (u64::from(transfer), chunks);
        let t = transfer as usize;
        Ok(self.ctrl.send(
            &mut self.path,
            t,
            Kind::Notify,
            msg,
            self.timeout,
            &mut self.spill,
        )?)
    }

    /// Appends the transfers the target has confirmed since the last call.
    #[inline]
    fn poll_confirmed(&mut self, confirmed: &mut Vec<u32>) -> std::result::Result<(), XferError> {
        let mut rx = std::mem::take(&mut self.done);
        self.path.poll_rx(&mut rx)?;
        for d in rx.drain(..) {
            if let Done::Local { token, .. } = d {
                let (slot, transfer, _) = self.ctrl.message(token)?;
                self.ctrl.post_recv(&mut self.path, slot, self.timeout)?;
                confirmed.push(transfer as u32);
            }
        }
        self.done = rx;
        Ok(())
    }
}

impl InitiatorEnd for FabricInitiator {
    fn set_remote(&mut self, offer: RegionOffer) -> std::result::Result<(), XferError> {
        match offer {
            RegionOffer::Libfabric(regions) => Ok(self.set_regions(regions)?),
            RegionOffer::Ucx(_) => Err(XferError::Offer(
                "a UCX offer reached a libfabric initiator".into(),
            )),
            RegionOffer::LibfabricRails(_) => Err(XferError::Offer(
                "a multi-rail offer reached a one-rail initiator".into(),
            )),
        }
    }

    /// The local buffer, while nothing is in flight on it (None otherwise).
    fn local_mut(&mut self) -> Option<&mut SharedRegion> {
        self.local.buf_mut()
    }

    /// Reaps every outstanding completion (between iterations), up to the time-out.
    fn drain(&mut self) -> std::result::Result<(), XferError> {
        let start = Instant::now();
        let mut sink = Vec::new();
        while self.local.in_flight() > 0 || self.ctrl.sending() {
            self.poll(&mut sink)?;
            timed_out(start, self.timeout, "outstanding completions")?;
        }
        Ok(())
    }

    fn library(&self) -> Library<'_> {
        Library::Libfabric(&self.path.connection().info)
    }
}

/// The target's end: registered regions, one per transfer, that the initiator writes or reads.
pub struct FabricTarget {
    // The path first: its endpoint closes before the regions it reaches are released.
    path: DataPath,
    regions: Vec<MemoryRegion<SharedRegion>>,
    ctrl: Ctrl,
    timeout: Duration,
    done: Vec<Done>,
    /// Send mode: the chunk plan, and per transfer the next chunk to post a receive for.
    recv_plan: Vec<(usize, usize)>,
    next_recv: Vec<usize>,
    /// Data receives posted and not yet completed.
    recvs_posted: usize,
}

/// Data receives a target keeps posted at most (providers buffer what arrives early).
const MAX_POSTED_RECVS: usize = 256;

impl FabricTarget {
    /// Wraps a connection and the registered regions; posts a control receive per transfer.
    pub fn new(
        conn: Connection,
        regions: Vec<MemoryRegion<SharedRegion>>,
        timeout: Duration,
    ) -> Result<FabricTarget> {
        if regions.is_empty() || regions.len() > MAX_TRANSFERS {
            return Err(FabricError::Invalid(format!(
                "{} regions: between 1 and {MAX_TRANSFERS} expected",
                regions.len()
            )));
        }
        for r in &regions {
            r.bind_endpoint(&conn.ep, &conn.info)?;
        }
        let mut path = DataPath::new(conn);
        let ctrl = Ctrl::new(&mut path, regions.len(), Kind::Notify, timeout)?;
        let n = regions.len();
        Ok(FabricTarget {
            path,
            regions,
            ctrl,
            timeout,
            done: Vec::with_capacity(64),
            recv_plan: Vec::new(),
            next_recv: vec![0; n],
            recvs_posted: 0,
        })
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        self.path.connection()
    }

    /// Posts receives round robin over the transfers while the bound and the provider allow.
    fn post_pending(&mut self) -> std::result::Result<(), XferError> {
        let chunks = self.recv_plan.len();
        let mut progressed = true;
        while progressed && self.recvs_posted < MAX_POSTED_RECVS {
            progressed = false;
            for t in 0..self.regions.len() {
                let c = self.next_recv[t];
                if c >= chunks || self.recvs_posted >= MAX_POSTED_RECVS {
                    continue;
                }
                let (off, len) = self.recv_plan[c];
                let token = tag(Kind::Data, t as u32, c as u32);
                let region = &mut self.regions[t];
                let cap = region.len();
                let slice = region
                    .slice_mut(off, len)
                    .ok_or_else(|| XferError::chunk_outside(t as u32, c as u32, off, len, cap))?;
                if !self.path.trecv(slice, token, 0, token)? {
                    return Ok(());
                }
                self.next_recv[t] += 1;
                self.recvs_posted += 1;
                progressed = true;
            }
        }
        Ok(())
    }

    /// Number of regions (transfers per iteration).
    pub fn regions(&self) -> usize {
        self.regions.len()
    }
}

impl XferTarget for FabricTarget {
    /// Reaps remote completions: a chunk that landed, or the initiator's notification.
    #[inline]
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> std::result::Result<(), XferError> {
        self.path.poll_rx(&mut self.done)?;
        let mut repost = false;
        for i in 0..self.done.len() {
            match self.done[i] {
                Done::RemoteData(transfer) => out.push(TargetEvent::Data(transfer as u32)),
                Done::Local { token, .. } => match tag::split(token) {
                    Some((Kind::Data, t, _)) => {
                        self.recvs_posted -= 1;
                        repost = true;
                        out.push(TargetEvent::Data(t));
                    }
                    _ => {
                        let (slot, transfer, chunks) = self.ctrl.message(token)?;
                        self.ctrl.post_recv(&mut self.path, slot, self.timeout)?;
                        out.push(TargetEvent::Notify {
                            transfer: transfer as u32,
                            chunks,
                        });
                    }
                },
            }
        }
        self.done.clear();
        if repost {
            self.post_pending()?;
        }
        // Reap our own control sends as they complete.
        self.path.poll_tx(&mut self.done)?;
        self.done.clear();
        Ok(())
    }

    /// Tells the initiator that `transfer` is complete here.
    fn confirm(&mut self, transfer: u32) -> std::result::Result<(), XferError> {
        let msg = (u64::from(transfer), 0);
        let mut spill = std::mem::take(&mut self.done);
        let sent = self.ctrl.send(
            &mut self.path,
            transfer as usize,
            Kind::Confirm,
            msg,
            self.timeout,
            &mut spill,
        );
        spill.clear();
        self.done = spill;
        Ok(sent?)
    }
}

impl TargetEnd for FabricTarget {
    fn offer(&self) -> std::result::Result<RegionOffer, XferError> {
        let info = &self.path.connection().info;
        Ok(RegionOffer::Libfabric(
            self.regions.iter().map(|r| r.remote(info)).collect(),
        ))
    }

    /// Region `i`, for checking or clearing between iterations (None while an operation is in
    /// flight on it).
    fn region_mut(&mut self, i: usize) -> Option<&mut SharedRegion> {
        self.regions.get_mut(i)?.buf_mut()
    }

    /// Send mode: posts receives for an iteration's chunks (`plan`: offset and length of
    /// each chunk of a transfer), as many as the provider takes up to a bound; the rest are
    /// posted as earlier ones complete. Call before the iteration's barrier.
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> std::result::Result<(), XferError> {
        if self.recvs_posted != 0 {
            return Err(FabricError::Invalid(
                "receives of the previous iteration are still posted".into(),
            )
            .into());
        }
        let cap = self.regions[0].len();
        if let Some(c) = plan.iter().position(|&(off, l)| !range_within(off, l, cap)) {
            let (off, len) = plan[c];
            return Err(XferError::chunk_outside(0, c as u32, off, len, cap));
        }
        self.recv_plan = plan.to_vec();
        self.next_recv.iter_mut().for_each(|n| *n = 0);
        self.post_pending()
    }
}
