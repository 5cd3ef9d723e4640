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

use crate::mem::{Buffer, SharedRegion};
use crate::ucx::{
    Context, Endpoint, Features, MemHandle, OpKind, OpTable, RemoteKey, Result, Rma, UcxError,
    Worker,
};

/// Swaps this side's worker address for the peer's, out of band (the caller's channel).
pub type Exchange<'a> = dyn FnMut(&[u8]) -> std::result::Result<Vec<u8>, String> + 'a;

/// How chunks move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UcxXferOp {
    /// ucp_put_nbx into the target's region; announced after an endpoint flush.
    Put,
    /// ucp_get_nbx from the target's region.
    Get,
    /// ucp_tag_send_nbx into receives the target armed at each chunk's place.
    TagSend,
}

// Tags and tokens: the kind in the top byte, the transfer in the next three, the chunk below.
const DATA: u64 = 0x01;
const NOTIFY: u64 = 0x02;
const CONFIRM: u64 = 0x03;
const FLUSH: u64 = 0x04;
const KIND_MASK: u64 = 0xff << 56;
/// Most transfers one worker can drive (24 bits of the tag).
pub const MAX_TRANSFERS: usize = 1 << 24;

fn token(kind: u64, transfer: u32, chunk: u32) -> u64 {
    (kind << 56) | (u64::from(transfer) & 0xff_ffff) << 32 | u64::from(chunk)
}

fn split(token: u64) -> (u64, u32, u32) {
    (
        token >> 56,
        ((token >> 32) & 0xff_ffff) as u32,
        token as u32,
    )
}

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

/// Set-up costs of one end, nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetupTimes {
    /// Worker address exchange and endpoint creation.
    pub connect_ns: u64,
    /// Mapping (registering) the first region.
    pub registration_first_ns: u64,
    /// Mapping the same region again.
    pub registration_cached_ns: u64,
}

/// A context with tag matching and RMA, a worker, and an endpoint to the peer's worker whose
/// address `exchange` swaps for ours.
fn connect(exchange: &mut Exchange<'_>) -> Result<(Context, Worker, Endpoint, u64)> {
    let ctx = Context::new(Features {
        tag: true,
        rma: true,
    })?;
    let worker = Worker::new(&ctx)?;
    let t0 = Instant::now();
    let peer = exchange(&worker.address()?).map_err(UcxError::Invalid)?;
    let ep = Endpoint::connect(&worker, &peer)?;
    Ok((ctx, worker, ep, t0.elapsed().as_nanos() as u64))
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

/// The initiator's end of one worker.
pub struct UcxXferInitiator {
    // Operations first: Drop settles them before any buffer they point into can go.
    ops: OpTable,
    done: Vec<(u64, usize)>,
    notify_tx: Vec<[u64; 2]>,
    confirm_rx: Box<[u64; 1]>,
    confirmed: Vec<u32>,
    completed: Vec<(u32, u32)>,
    data_inflight: usize,
    remotes: Vec<(u64, u64, RemoteKey)>,
    local: Vec<MemHandle<SharedRegion>>,
    op: UcxXferOp,
    size: usize,
    ep: Endpoint,
    worker: Worker,
    ctx: Context,
}

impl UcxXferInitiator {
    /// Connects to the target's worker (its address swapped by `exchange`) and maps `local`,
    /// the initiator's buffer of `transfers` transfers of `size` bytes back to back.
    pub fn new(
        local: SharedRegion,
        transfers: usize,
        size: usize,
        op: UcxXferOp,
        exchange: &mut Exchange<'_>,
    ) -> Result<(UcxXferInitiator, SetupTimes)> {
        if transfers == 0 || transfers > MAX_TRANSFERS || local.len() < transfers * size {
            return Err(UcxError::Invalid(format!(
                "{transfers} transfers of {size} bytes do not fit the local buffer"
            )));
        }
        let (ctx, worker, ep, connect_ns) = connect(exchange)?;
        let (local, first, cached) = map_all(&ctx, vec![local])?;
        let mut ops = OpTable::new(&worker);
        let mut confirm_rx = Box::new([0u64; 1]);
        post_ctrl_recv(&mut ops, &worker, &mut confirm_rx[..], CONFIRM)?;
        Ok((
            UcxXferInitiator {
                ops,
                done: Vec::with_capacity(64),
                notify_tx: vec![[0u64; 2]; transfers],
                confirm_rx,
                confirmed: Vec::new(),
                completed: Vec::new(),
                data_inflight: 0,
                remotes: Vec::new(),
                local,
                op,
                size,
                ep,
                worker,
                ctx,
            },
            SetupTimes {
                connect_ns,
                registration_first_ns: first,
                registration_cached_ns: cached,
            },
        ))
    }

    /// Unpacks the target's regions, one per transfer.
    pub fn set_remote(&mut self, regions: &[RemoteRegion]) -> Result<()> {
        if regions.len() != self.notify_tx.len() {
            return Err(UcxError::Invalid(format!(
                "the target offers {} regions for {} transfers",
                regions.len(),
                self.notify_tx.len()
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
            out.push((r.addr, r.len, RemoteKey::unpack(&self.ep, &packed)?));
        }
        self.remotes = out;
        Ok(())
    }

    /// Posts chunk `chunk` of `transfer`: `len` bytes at `offset` of the transfer.
    pub fn post(&mut self, transfer: u32, chunk: u32, offset: usize, len: usize) -> Result<()> {
        let t = transfer as usize;
        if t >= self.notify_tx.len() || offset + len > self.size {
            return Err(UcxError::Invalid(format!(
                "chunk {chunk} of transfer {transfer} lies outside the buffers"
            )));
        }
        let local = &mut self.local[0];
        let memh = Some(local.handle());
        // t * size + offset + len <= the local length: checked above and in new().
        let at = t * self.size + offset;
        let tok = token(DATA, transfer, chunk);
        let ptr = match self.op {
            UcxXferOp::Put | UcxXferOp::Get => {
                let Some((addr, _, rkey)) = self.remotes.get(t) else {
                    return Err(UcxError::Invalid("no remote regions yet".into()));
                };
                let remote = addr + offset as u64;
                let rma = if self.op == UcxXferOp::Put {
                    Rma::Put
                } else {
                    Rma::Get
                };
                // SAFETY: the local range lies inside the mapped buffer this end owns, kept
                // until every operation settled (Drop); the remote range inside the region
                // the target offered for this transfer (its length was checked).
                unsafe {
                    let at = local.channel_buf_mut().as_mut_ptr().add(at);
                    self.ep.rma_status(rma, at, len, remote, rkey, memh)
                }
            }
            UcxXferOp::TagSend => {
                // SAFETY: as above, the local range stays valid until the send settles.
                unsafe {
                    let src = local.channel_buf().as_ptr().add(at);
                    self.ep.tag_send_status(src, len, tok, memh)
                }
            }
        };
        if self
            .ops
            .track(ptr, tok, OpKind::Other, len, op_name(self.op))?
        {
            self.completed.push((transfer, chunk));
        } else {
            self.data_inflight += 1;
        }
        Ok(())
    }

    /// Appends the (transfer, chunk) of chunks completed locally since the last call; moves
    /// notifications and confirmations along.
    pub fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<()> {
        done.append(&mut self.completed);
        self.ops.poll(&mut self.done)?;
        let mut i = 0;
        while i < self.done.len() {
            let (tok, n) = self.done[i];
            i += 1;
            let (kind, transfer, chunk) = split(tok);
            match kind {
                DATA => {
                    self.data_inflight -= 1;
                    done.push((transfer, chunk));
                }
                FLUSH => self.send_notify(transfer)?,
                CONFIRM => {
                    if n != 8 {
                        return Err(UcxError::Invalid(format!("a {n}-byte confirmation")));
                    }
                    let t = self.confirm_rx[0];
                    post_ctrl_recv(
                        &mut self.ops,
                        &self.worker,
                        &mut self.confirm_rx[..],
                        CONFIRM,
                    )?;
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
    pub fn notify(&mut self, transfer: u32, chunks: u64) -> Result<()> {
        let t = transfer as usize;
        if t >= self.notify_tx.len() {
            return Err(UcxError::Invalid(format!("no transfer {transfer}")));
        }
        let count = match self.op {
            UcxXferOp::TagSend => chunks,
            UcxXferOp::Put | UcxXferOp::Get => 0,
        };
        self.notify_tx[t][1] = count;
        if self.op == UcxXferOp::Put {
            let ptr = self.ep.flush_status();
            if !self.ops.track(
                ptr,
                token(FLUSH, transfer, 0),
                OpKind::Other,
                0,
                "endpoint flush",
            )? {
                return Ok(());
            }
        }
        self.send_notify(transfer)
    }

    fn send_notify(&mut self, transfer: u32) -> Result<()> {
        let msg = &mut self.notify_tx[transfer as usize];
        msg[0] = u64::from(transfer);
        let tok = token(NOTIFY, transfer, 0);
        // SAFETY: the message lives in a vector this end never resizes and owns until every
        // operation settled (Drop); it is rewritten only after the confirmation.
        let ptr = unsafe {
            self.ep
                .tag_send_status(msg.as_ptr() as *const u8, 16, tok, None)
        };
        self.ops
            .track(ptr, tok, OpKind::Other, 16, "notification")?;
        Ok(())
    }

    /// Appends the transfers the target has confirmed since the last call.
    pub fn poll_confirmed(&mut self, confirmed: &mut Vec<u32>) -> Result<()> {
        confirmed.append(&mut self.confirmed);
        Ok(())
    }

    /// Completes everything but the posted confirmation receive (between iterations).
    pub fn drain(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut sink = Vec::new();
        while self.ops.len() > 1 || !self.completed.is_empty() {
            self.poll(&mut sink)?;
            if start.elapsed() > timeout {
                return Err(UcxError::Timeout {
                    what: "outstanding operations",
                    secs: timeout.as_secs_f64(),
                });
            }
        }
        Ok(())
    }

    /// The local buffer, while no chunk is in flight (None otherwise).
    pub fn local_mut(&mut self) -> Option<&mut [u8]> {
        (self.data_inflight == 0).then(|| self.local[0].channel_buf_mut().as_mut_slice())
    }

    /// The context and the endpoint, for recording what UCX chose.
    pub fn ucx(&self) -> (&Context, &Endpoint) {
        (&self.ctx, &self.ep)
    }
}

impl Drop for UcxXferInitiator {
    fn drop(&mut self) {
        if !self.ops.settle_all(Duration::from_secs(1)) {
            // UCX may still write into these: leaking them is safe, freeing them is not.
            std::mem::forget(std::mem::take(&mut self.local));
            std::mem::forget(std::mem::take(&mut self.notify_tx));
            std::mem::forget(std::mem::replace(&mut self.confirm_rx, Box::new([0])));
        }
    }
}

/// Posts the receive of a control message (`kind`) into `buf`.
fn post_ctrl_recv(ops: &mut OpTable, worker: &Worker, buf: &mut [u64], kind: u64) -> Result<()> {
    let bytes = std::mem::size_of_val(buf);
    let tok = token(kind, 0, 0);
    // SAFETY: buf is a box its owner keeps until every operation settled (Drop).
    let ptr =
        unsafe { worker.tag_recv_status(buf.as_mut_ptr() as *mut u8, bytes, tok, KIND_MASK, None) };
    ops.track(ptr, tok, OpKind::Recv, bytes, "control receive")?;
    Ok(())
}

fn op_name(op: UcxXferOp) -> &'static str {
    match op {
        UcxXferOp::Put => "put",
        UcxXferOp::Get => "get",
        UcxXferOp::TagSend => "tag send",
    }
}

/// What the target's end saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UcxTargetEvent {
    /// A chunk of the transfer landed (tagged sends only).
    Data(u32),
    /// The initiator announced the transfer with this many chunks to count.
    Notify(u32, u64),
}

/// The target's end of one worker.
pub struct UcxXferTarget {
    // Operations first: Drop settles them before any buffer they point into can go.
    ops: OpTable,
    done: Vec<(u64, usize)>,
    notify_rx: Box<[u64; 2]>,
    confirm_tx: Vec<[u64; 1]>,
    regions: Vec<MemHandle<SharedRegion>>,
    ep: Endpoint,
    worker: Worker,
    ctx: Context,
}

impl UcxXferTarget {
    /// Connects to the initiator's worker (its address swapped by `exchange`) and maps the
    /// regions, one per transfer.
    pub fn new(
        regions: Vec<SharedRegion>,
        exchange: &mut Exchange<'_>,
    ) -> Result<(UcxXferTarget, SetupTimes)> {
        if regions.is_empty() || regions.len() > MAX_TRANSFERS {
            return Err(UcxError::Invalid(format!(
                "{} regions: between 1 and {MAX_TRANSFERS} expected",
                regions.len()
            )));
        }
        let (ctx, worker, ep, connect_ns) = connect(exchange)?;
        let n = regions.len();
        let (regions, first, cached) = map_all(&ctx, regions)?;
        let mut ops = OpTable::new(&worker);
        let mut notify_rx = Box::new([0u64; 2]);
        post_ctrl_recv(&mut ops, &worker, &mut notify_rx[..], NOTIFY)?;
        Ok((
            UcxXferTarget {
                ops,
                done: Vec::with_capacity(64),
                notify_rx,
                confirm_tx: vec![[0u64; 1]; n],
                regions,
                ep,
                worker,
                ctx,
            },
            SetupTimes {
                connect_ns,
                registration_first_ns: first,
                registration_cached_ns: cached,
            },
        ))
    }

    /// The regions as the initiator reaches them.
    pub fn offer(&self) -> Result<Vec<RemoteRegion>> {
        self.regions
            .iter()
            .map(|m| {
                Ok(RemoteRegion {
                    addr: m.channel_buf().as_ptr() as u64,
                    len: m.channel_buf().len() as u64,
                    rkey: base64::engine::general_purpose::STANDARD.encode(m.pack_rkey()?),
                })
            })
            .collect()
    }

    /// Posts a receive for every chunk of every transfer at its place (tagged sends).
    pub fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<()> {
        for (t, m) in self.regions.iter_mut().enumerate() {
            let memh = Some(m.handle());
            let base = m.channel_buf_mut().as_mut_ptr();
            let cap = m.channel_buf().len();
            for (c, &(off, len)) in plan.iter().enumerate() {
                if off + len > cap {
                    return Err(UcxError::Invalid(format!(
                        "chunk {c} ({len} bytes at {off}) lies outside a {cap}-byte region"
                    )));
                }
                let tok = token(DATA, t as u32, c as u32);
                // SAFETY: off + len <= the region's length (checked); the region is owned by
                // this end until every operation settled (Drop).
                let ptr = unsafe {
                    self.worker
                        .tag_recv_status(base.add(off), len, tok, u64::MAX, memh)
                };
                self.ops
                    .track(ptr, tok, OpKind::Recv, len, "chunk receive")?;
            }
        }
        Ok(())
    }

    /// Appends what happened since the last call.
    pub fn poll(&mut self, out: &mut Vec<UcxTargetEvent>) -> Result<()> {
        self.ops.poll(&mut self.done)?;
        let mut i = 0;
        while i < self.done.len() {
            let (tok, n) = self.done[i];
            i += 1;
            let (kind, transfer, _) = split(tok);
            match kind {
                DATA => out.push(UcxTargetEvent::Data(transfer)),
                NOTIFY => {
                    if n != 16 {
                        return Err(UcxError::Invalid(format!("a {n}-byte notification")));
                    }
                    let [t, chunks] = *self.notify_rx;
                    post_ctrl_recv(&mut self.ops, &self.worker, &mut self.notify_rx[..], NOTIFY)?;
                    out.push(UcxTargetEvent::Notify(t as u32, chunks));
                }
                _ => {} // a confirmation left
            }
        }
        self.done.clear();
        Ok(())
    }

    /// Confirms a complete transfer to the initiator.
    pub fn confirm(&mut self, transfer: u32) -> Result<()> {
        let Some(msg) = self.confirm_tx.get_mut(transfer as usize) else {
            return Err(UcxError::Invalid(format!("no transfer {transfer}")));
        };
        msg[0] = u64::from(transfer);
        let tok = token(CONFIRM, transfer, 0);
        // SAFETY: the message lives in a vector this end never resizes and owns until every
        // operation settled (Drop).
        let ptr = unsafe {
            self.ep
                .tag_send_status(msg.as_ptr() as *const u8, 8, tok, None)
        };
        self.ops.track(ptr, tok, OpKind::Other, 8, "confirmation")?;
        Ok(())
    }

    /// Region `i`, for filling and checking.
    pub fn region_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        self.regions
            .get_mut(i)
            .map(|m| m.channel_buf_mut().as_mut_slice())
    }

    /// The context and the endpoint, for recording what UCX chose.
    pub fn ucx(&self) -> (&Context, &Endpoint) {
        (&self.ctx, &self.ep)
    }
}

impl Drop for UcxXferTarget {
    fn drop(&mut self) {
        if !self.ops.settle_all(Duration::from_secs(1)) {
            // UCX may still write into these: leaking them is safe, freeing them is not.
            std::mem::forget(std::mem::take(&mut self.regions));
            std::mem::forget(std::mem::take(&mut self.confirm_tx));
            std::mem::forget(std::mem::replace(&mut self.notify_rx, Box::new([0; 2])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_kind_transfer_and_chunk_apart() {
        let t = token(DATA, 0xab_cdef, 0xffff_fffe);
        assert_eq!(split(t), (DATA, 0xab_cdef, 0xffff_fffe));
        assert_eq!(t & KIND_MASK, DATA << 56);
        assert_ne!(
            token(NOTIFY, 1, 0) & KIND_MASK,
            token(CONFIRM, 1, 0) & KIND_MASK
        );
        // Transfers beyond 24 bits would alias: the constructors refuse them.
        assert_eq!(split(token(DATA, MAX_TRANSFERS as u32, 0)).1, 0);
    }
}
