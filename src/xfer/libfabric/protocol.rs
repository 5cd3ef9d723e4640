//! The two ends of a KV-sized transfer over libfabric RMA: the initiator posts chunked writes
//! (with remote CQ data) or reads and sends one notification per transfer saying how many
//! chunks to count; the target counts remote completions and confirms each transfer.

use std::time::{Duration, Instant};

use crate::fabric::{
    caps, cq_flags, Connection, CqEntry, FabricError, MemoryRegion, RemoteRegion, Result,
};
use crate::mem::{Buffer, HostBuffer, SharedRegion};

/// Bytes of one control message: transfer index and chunk count, two little-endian u64.
const SLOT: usize = 16;
/// Context token of control sends (chunk tokens are below it).
const CTRL_TOKEN: u64 = u64::MAX - 1;

/// The libfabric call that moves a transfer's chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOp {
    /// fi_writedata into the target's memory; the target counts the remote CQ data.
    WriteData,
    /// fi_read from the target's memory.
    Read,
    /// fi_tsend into receives the target posts at each chunk's place (tag = transfer and
    /// chunk); the target counts the receive completions.
    TaggedSend,
}

/// Context tokens of data receives carry this bit (control slots are small numbers).
const DATA_BIT: u64 = 1 << 63;

/// The tag of chunk `chunk` of `transfer`.
fn chunk_tag(transfer: u32, chunk: u32) -> u64 {
    ((transfer as u64) << 32) | chunk as u64
}

/// Small registered slots for control messages, one per transfer each way.
struct Ctrl {
    tx: MemoryRegion<HostBuffer>,
    rx: MemoryRegion<HostBuffer>,
    slots: usize,
}

impl Ctrl {
    fn new(conn: &Connection, slots: usize) -> Result<Ctrl> {
        let alloc = |n| HostBuffer::new(n).map_err(|e| FabricError::Invalid(e.to_string()));
        let tx = MemoryRegion::register(&conn.domain, alloc(slots * SLOT)?, caps::SEND)?;
        let rx = MemoryRegion::register(&conn.domain, alloc(slots * SLOT)?, caps::RECV)?;
        tx.bind_endpoint(&conn.ep, &conn.info)?;
        rx.bind_endpoint(&conn.ep, &conn.info)?;
        Ok(Ctrl { tx, rx, slots })
    }

    /// Posts receive slot `i` (context token i + 1).
    fn post_recv(&mut self, conn: &Connection, i: usize, timeout: Duration) -> Result<()> {
        let desc = self.rx.desc();
        let ptr = self.rx.channel_buf_mut().as_mut_slice()[i * SLOT..].as_mut_ptr();
        let start = Instant::now();
        loop {
            // SAFETY: slot i lies in the registered rx buffer, owned by self; it is read only
            // after its completion arrives (slot_message) and reposted after that.
            let ok = unsafe {
                conn.ep.recv(
                    ptr,
                    SLOT,
                    desc,
                    conn.peer,
                    (i as u64 + 1) as *mut libc::c_void,
                )?
            };
            if ok {
                return Ok(());
            }
            timed_out(start, timeout, "room to post a control receive")?;
        }
    }

    /// The receive slot a completion's context token names.
    fn slot_of(&self, token: u64) -> Result<usize> {
        (token as usize)
            .checked_sub(1)
            .filter(|&s| s < self.slots)
            .ok_or_else(|| {
                FabricError::Invalid(format!(
                    "a receive completion with unknown context {token:#x}"
                ))
            })
    }

    fn slot_message(&self, i: usize) -> (u64, u64) {
        let b = &self.rx.channel_buf().as_slice()[i * SLOT..(i + 1) * SLOT];
        let word = |k: usize| u64::from_le_bytes(b[k * 8..k * 8 + 8].try_into().expect("8 bytes"));
        (word(0), word(1))
    }

    /// Sends (a, b) from tx slot `i`; its completion carries CTRL_TOKEN.
    fn send(
        &mut self,
        conn: &Connection,
        i: usize,
        a: u64,
        b: u64,
        timeout: Duration,
    ) -> Result<()> {
        let slot = &mut self.tx.channel_buf_mut().as_mut_slice()[i * SLOT..(i + 1) * SLOT];
        slot[..8].copy_from_slice(&a.to_le_bytes());
        slot[8..].copy_from_slice(&b.to_le_bytes());
        let ptr = slot.as_ptr();
        let desc = self.tx.desc();
        let start = Instant::now();
        loop {
            // SAFETY: slot i of the registered tx buffer is not written again before this
            // send's completion is reaped (one message per slot per iteration; callers drain
            // the transmit CQ before the next iteration).
            let ok = unsafe {
                conn.ep
                    .send(ptr, SLOT, desc, conn.peer, CTRL_TOKEN as *mut libc::c_void)?
            };
            if ok {
                return Ok(());
            }
            // Reap completions so the transmit queue drains.
            let mut e = [CqEntry::default(); 8];
            conn.txcq.read(&mut e)?;
            timed_out(start, timeout, "room to send a control message")?;
        }
    }
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

/// The initiator's end: a registered local buffer and the target's regions, one per transfer.
pub struct XferInitiatorEp {
    conn: Connection,
    local: MemoryRegion<SharedRegion>,
    ctrl: Ctrl,
    remote: Vec<RemoteRegion>,
    op: ChunkOp,
    /// Posted operations (chunks and control sends) whose completion is not yet reaped.
    outstanding: usize,
    /// Chunks of transfer t start at t * stride in the local buffer.
    stride: usize,
    timeout: Duration,
    entries: Vec<CqEntry>,
}

impl XferInitiatorEp {
    /// Wraps a connection and a registered local buffer holding `transfers` regions of
    /// `stride` bytes; posts a control receive per transfer for the target's confirmations.
    pub fn new(
        conn: Connection,
        local: MemoryRegion<SharedRegion>,
        transfers: usize,
        stride: usize,
        op: ChunkOp,
        timeout: Duration,
    ) -> Result<XferInitiatorEp> {
        if transfers == 0 || transfers.checked_mul(stride) != Some(local.channel_buf().len()) {
            return Err(FabricError::Invalid(format!(
                "a local buffer of {} bytes does not hold {transfers} transfers of {stride} bytes",
                local.channel_buf().len()
            )));
        }
        local.bind_endpoint(&conn.ep, &conn.info)?;
        let mut ctrl = Ctrl::new(&conn, transfers)?;
        for i in 0..transfers {
            ctrl.post_recv(&conn, i, timeout)?;
        }
        Ok(XferInitiatorEp {
            conn,
            local,
            ctrl,
            remote: Vec::new(),
            op,
            outstanding: 0,
            stride,
            timeout,
            entries: vec![CqEntry::default(); 64],
        })
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sets the target's regions, one per transfer (exchanged out of band).
    pub fn set_remote(&mut self, remote: Vec<RemoteRegion>) -> Result<()> {
        if remote.len() != self.ctrl.slots || remote.iter().any(|r| r.len < self.stride as u64) {
            return Err(FabricError::Invalid(format!(
                "the target offered {} regions where {} of {} bytes are needed",
                remote.len(),
                self.ctrl.slots,
                self.stride
            )));
        }
        self.remote = remote;
        Ok(())
    }

    /// Posts chunk `chunk` of transfer `transfer`: `len` bytes at `offset` of the transfer's
    /// local and remote regions. Ok(false): the provider's queue is full, poll and retry.
    #[inline]
    pub fn post(&mut self, transfer: u32, chunk: u32, offset: usize, len: usize) -> Result<bool> {
        let t = transfer as usize;
        let remote = self
            .remote
            .get(t)
            .ok_or_else(|| FabricError::Invalid(format!("transfer {t} has no remote region")))?;
        let raddr = remote
            .at(offset as u64, len as u64)
            .filter(|_| offset + len <= self.stride)
            .ok_or_else(|| {
                FabricError::Invalid(format!(
                    "chunk {offset}+{len} outside a {}-byte region",
                    self.stride
                ))
            })?;
        let key = remote.key;
        let local_off = t * self.stride + offset;
        let desc = self.local.desc();
        let ptr = self.local.channel_buf_mut().as_mut_ptr();
        let token = ((transfer as u64) << 32 | chunk as u64) as *mut libc::c_void;
        let peer = self.conn.peer;
        // SAFETY: local_off + len <= transfers * stride = the registered buffer's length, and
        // raddr..raddr+len lies in the peer's region (checked above). The buffer is owned by
        // self and handed out (local_mut) only while no operation is outstanding.
        let ok = unsafe {
            let p = ptr.add(local_off);
            match self.op {
                ChunkOp::WriteData => self.conn.ep.writedata(
                    p,
                    len,
                    desc,
                    transfer as u64,
                    peer,
                    raddr,
                    key,
                    token,
                )?,
                ChunkOp::Read => self.conn.ep.read(p, len, desc, peer, raddr, key, token)?,
                ChunkOp::TaggedSend => {
                    let tag = chunk_tag(transfer, chunk);
                    self.conn.ep.tsend(p, len, desc, peer, tag, token)?
                }
            }
        };
        if ok {
            self.outstanding += 1;
        }
        Ok(ok)
    }

    /// Reaps local completions; appends the (transfer, chunk) of each finished chunk.
    #[inline]
    pub fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<()> {
        let n = self.conn.txcq.read(&mut self.entries)?;
        self.outstanding = self.outstanding.saturating_sub(n);
        for e in &self.entries[..n] {
            let token = e.op_context as u64;
            if token != CTRL_TOKEN {
                done.push(((token >> 32) as u32, token as u32));
            }
        }
        Ok(())
    }

    /// Tells the target that `transfer`'s `chunks` are complete here: it is to count that many
    /// remote completions for writes, none for reads (reads leave no trace on the target).
    pub fn notify(&mut self, transfer: u32, chunks: u64) -> Result<()> {
        let chunks = match self.op {
            ChunkOp::WriteData | ChunkOp::TaggedSend => chunks,
            ChunkOp::Read => 0,
        };
        self.ctrl.send(
            &self.conn,
            transfer as usize,
            transfer as u64,
            chunks,
            self.timeout,
        )?;
        self.outstanding += 1;
        Ok(())
    }

    /// Appends the transfers the target has confirmed since the last call.
    #[inline]
    pub fn poll_confirmed(&mut self, confirmed: &mut Vec<u32>) -> Result<()> {
        let mut e = [CqEntry::default(); 8];
        let n = self.conn.rxcq.read(&mut e)?;
        for entry in &e[..n] {
            let slot = self.ctrl.slot_of(entry.op_context as u64)?;
            let (transfer, _) = self.ctrl.slot_message(slot);
            self.ctrl.post_recv(&self.conn, slot, self.timeout)?;
            confirmed.push(transfer as u32);
        }
        Ok(())
    }

    /// Reaps every outstanding completion (between iterations), up to the time-out.
    pub fn drain(&mut self) -> Result<()> {
        let start = Instant::now();
        let mut sink = Vec::new();
        while self.outstanding > 0 {
            self.poll(&mut sink)?;
            timed_out(start, self.timeout, "outstanding completions")?;
        }
        Ok(())
    }

    /// The local buffer, while nothing is in flight (None otherwise).
    pub fn local_mut(&mut self) -> Option<&mut SharedRegion> {
        (self.outstanding == 0).then(|| self.local.channel_buf_mut())
    }
}

/// The target's end: registered regions, one per transfer, that the initiator writes or reads.
pub struct XferTargetEp {
    conn: Connection,
    regions: Vec<MemoryRegion<SharedRegion>>,
    ctrl: Ctrl,
    timeout: Duration,
    entries: Vec<CqEntry>,
    /// Send mode: the chunk plan, and per transfer the next chunk to post a receive for.
    recv_plan: Vec<(usize, usize)>,
    next_recv: Vec<usize>,
    /// Data receives posted and not yet completed.
    recvs_posted: usize,
}

/// Data receives a target keeps posted at most (providers buffer what arrives early).
const MAX_POSTED_RECVS: usize = 256;

impl XferTargetEp {
    /// Wraps a connection and the registered regions; posts a control receive per transfer.
    pub fn new(
        conn: Connection,
        regions: Vec<MemoryRegion<SharedRegion>>,
        timeout: Duration,
    ) -> Result<XferTargetEp> {
        if regions.is_empty() {
            return Err(FabricError::Invalid(
                "a target needs at least one region".into(),
            ));
        }
        for r in &regions {
            r.bind_endpoint(&conn.ep, &conn.info)?;
        }
        let mut ctrl = Ctrl::new(&conn, regions.len())?;
        for i in 0..regions.len() {
            ctrl.post_recv(&conn, i, timeout)?;
        }
        let n = regions.len();
        Ok(XferTargetEp {
            conn,
            regions,
            ctrl,
            timeout,
            entries: vec![CqEntry::default(); 64],
            recv_plan: Vec::new(),
            next_recv: vec![0; n],
            recvs_posted: 0,
        })
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// How the initiator reaches each region.
    pub fn remote_regions(&self) -> Vec<RemoteRegion> {
        self.regions
            .iter()
            .map(|r| r.remote(&self.conn.info))
            .collect()
    }

    /// Send mode: posts receives for an iteration's chunks (`plan`: offset and length of
    /// each chunk of a transfer), as many as the provider takes up to a bound; the rest are
    /// posted as earlier ones complete. Call before the iteration's barrier.
    pub fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<()> {
        if self.recvs_posted != 0 {
            return Err(FabricError::Invalid(
                "receives of the previous iteration are still posted".into(),
            ));
        }
        let len = self.regions[0].channel_buf().len();
        if plan.iter().any(|&(off, l)| off + l > len) {
            return Err(FabricError::Invalid(
                "a chunk lies outside its region".into(),
            ));
        }
        self.recv_plan = plan.to_vec();
        self.next_recv.iter_mut().for_each(|n| *n = 0);
        self.post_pending()
    }

    /// Posts receives round robin over the transfers while the bound and the provider allow.
    fn post_pending(&mut self) -> Result<()> {
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
                let desc = self.regions[t].desc();
                let ptr = self.regions[t].channel_buf_mut().as_mut_ptr();
                let token = (DATA_BIT | chunk_tag(t as u32, c as u32)) as *mut libc::c_void;
                let tag = chunk_tag(t as u32, c as u32);
                // SAFETY: off + len lies inside region t (checked in arm_receives); the region
                // is owned by self and read by the CPU only between iterations, after every
                // receive of the iteration has completed (recvs_posted back to 0).
                let ok = unsafe {
                    self.conn
                        .ep
                        .trecv(ptr.add(off), len, desc, self.conn.peer, tag, 0, token)?
                };
                if !ok {
                    return Ok(());
                }
                self.next_recv[t] += 1;
                self.recvs_posted += 1;
                progressed = true;
            }
        }
        Ok(())
    }

    /// Reaps remote completions: (transfer, None) for a chunk that landed, (transfer,
    /// Some(count)) for the initiator's notification.
    #[inline]
    pub fn poll(&mut self, out: &mut Vec<(u32, Option<u64>)>) -> Result<()> {
        let n = self.conn.rxcq.read(&mut self.entries)?;
        let mut repost = false;
        for i in 0..n {
            let e = self.entries[i];
            let token = e.op_context as u64;
            if e.flags & cq_flags::RECV != 0 && token & DATA_BIT != 0 {
                self.recvs_posted -= 1;
                repost = true;
                out.push(((token >> 32) as u32 & 0x7fff_ffff, None));
            } else if e.flags & cq_flags::RECV != 0 {
                let slot = self.ctrl.slot_of(token)?;
                let (transfer, count) = self.ctrl.slot_message(slot);
                self.ctrl.post_recv(&self.conn, slot, self.timeout)?;
                out.push((transfer as u32, Some(count)));
            } else if e.flags & cq_flags::REMOTE_CQ_DATA != 0 {
                out.push((e.data as u32, None));
            }
        }
        if repost {
            self.post_pending()?;
        }
        // Reap our own control sends as they complete.
        let mut tx = [CqEntry::default(); 8];
        self.conn.txcq.read(&mut tx)?;
        Ok(())
    }

    /// Tells the initiator that `transfer` is complete here.
    pub fn confirm(&mut self, transfer: u32) -> Result<()> {
        self.ctrl.send(
            &self.conn,
            transfer as usize,
            transfer as u64,
            0,
            self.timeout,
        )
    }

    /// Region `i`, for checking or clearing between iterations (no transfer may be in flight).
    pub fn region_mut(&mut self, i: usize) -> Option<&mut SharedRegion> {
        self.regions.get_mut(i).map(|r| r.channel_buf_mut())
    }

    /// Number of regions (transfers per iteration).
    pub fn regions(&self) -> usize {
        self.regions.len()
    }
}
