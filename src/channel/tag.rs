//! ucx_perftest's tag channel over one endpoint: mapped send and receive slots, the operations
//! in flight in posting order, and an acknowledgement message; what the tag_lat and tag_bw
//! loops drive.

use std::collections::VecDeque;
use std::time::Duration;

use super::spin;
#[cfg(feature = "cuda")]
use crate::mem::cuda::{CudaDevice, DeviceSlot};
use crate::mem::{HostBuffer, HostStaged, MemError};
use crate::ucx::{Context, Endpoint, MemHandle, MemoryType, OpTable, Result, UcxError, Worker};
use crate::xfer::tag::{tag, Kind};

/// The tag of measurement messages: a chunk of xfer's layout (transfer 0, chunk 0).
const DATA_TAG: u64 = tag(Kind::Data, 0, 0);
/// The tag of end-of-phase acknowledgements: a confirmation of xfer's layout.
const ACK_TAG: u64 = tag(Kind::Confirm, 0, 0);
/// What an acknowledgement carries.
const ACK: &[u8; 8] = b"kvxf-ack";

// Tokens of the table's operations: what the operation is in the top two bits, a sequence
// number below.
/// A measurement send's token (plus its sequence number).
const SEND: u64 = 1 << 62;
/// A measurement receive's token (plus its sequence number).
const RECV: u64 = 2 << 62;
/// The acknowledgement's send.
const ACK_SEND: u64 = 3 << 62;
/// The acknowledgement's receive.
const ACK_RECV: u64 = 3 << 62 | 1;

/// Slot sizes of a channel.
#[derive(Debug, Clone, Copy)]
pub struct SlotSpec {
    /// Send slots.
    pub send_slots: usize,
    /// Bytes per send slot.
    pub send_bytes: usize,
    /// Receive slots.
    pub recv_slots: usize,
    /// Bytes per receive slot.
    pub recv_bytes: usize,
    /// Where the slots live.
    pub memory: MemoryType,
    /// Pass the slots' memory handles with every operation (ucx_perftest's -z); without them
    /// UCX finds (and caches) the registration itself, as ucx_perftest does by default.
    pub prereg: bool,
    /// Device slots keep a host staging copy, so payloads can be filled and checked (--verify).
    pub staging: bool,
}

/// Tagged send/receive on one endpoint, with its buffers: host memory, or device memory whose
/// payloads go through host staging copies (`B`; the host path has no staging code at all).
pub struct TagChannel<'a, B: HostStaged = HostBuffer> {
    // The table first: dropping it settles every operation (or keeps what UCX still holds
    // counted in flight, so the slots leak rather than free it) before the slots go.
    ops: OpTable,
    worker: &'a Worker,
    ep: &'a Endpoint,
    tx: Vec<MemHandle<B>>,
    rx: Vec<MemHandle<B>>,
    /// Sends posted and not completed by `complete_send`, oldest first: the token, and
    /// whether the send completed in place.
    sends: VecDeque<(u64, bool)>,
    /// Receives posted and not completed by `complete_recv`, oldest first: token and slot.
    recvs: VecDeque<(u64, usize)>,
    /// Operations settled and not claimed yet: token and length.
    done: Vec<(u64, usize)>,
    seq: u64,
    ack_posted: bool,
    last_recv_slot: usize,
    prereg: bool,
    timeout: Duration,
}

fn map_slots<B: HostStaged>(
    ctx: &Context,
    n: usize,
    mut alloc: impl FnMut() -> std::result::Result<B, MemError>,
) -> Result<Vec<MemHandle<B>>> {
    (0..n.max(1))
        .map(|_| {
            let buf = alloc().map_err(|e| UcxError::Invalid(e.to_string()))?;
            MemHandle::map(ctx, buf)
        })
        .collect()
}

fn host_slot(bytes: usize) -> std::result::Result<HostBuffer, MemError> {
    HostBuffer::for_bulk(bytes.max(1))
}

impl<'a> TagChannel<'a, HostBuffer> {
    /// Allocates and maps host slots; device memory is made by `on_device` (feature `cuda`).
    pub fn new(
        ctx: &Context,
        worker: &'a Worker,
        ep: &'a Endpoint,
        spec: SlotSpec,
        timeout: Duration,
    ) -> Result<TagChannel<'a, HostBuffer>> {
        if spec.memory != MemoryType::Host {
            let why = if cfg!(feature = "cuda") {
                "device slots are made by TagChannel::on_device"
            } else {
                "kvxfer was built without the `cuda` feature (cargo build --features cuda)"
            };
            return Err(UcxError::Invalid(format!(
                "CUDA memory cannot be mapped here: {why}"
            )));
        }
        TagChannel::mapped(ctx, worker, ep, spec, timeout, host_slot)
    }
}

#[cfg(feature = "cuda")]
impl<'a> TagChannel<'a, DeviceSlot> {
    /// Allocates and maps slots in `device`'s memory, with host staging copies when
    /// `spec.staging` asks for them.
    pub fn on_device(
        ctx: &Context,
        worker: &'a Worker,
        ep: &'a Endpoint,
        spec: SlotSpec,
        device: &CudaDevice,
        timeout: Duration,
    ) -> Result<TagChannel<'a, DeviceSlot>> {
        if spec.memory != MemoryType::Cuda {
            return Err(UcxError::Invalid(
                "host slots are made by TagChannel::new".into(),
            ));
        }
        let slot = |bytes: usize| DeviceSlot::new(device, bytes, spec.staging);
        TagChannel::mapped(ctx, worker, ep, spec, timeout, slot)
    }
}

impl<'a, B: HostStaged> TagChannel<'a, B> {
    /// The slots `spec` asks for, each made by `alloc(bytes)` and mapped with `ctx`.
    fn mapped(
        ctx: &Context,
        worker: &'a Worker,
        ep: &'a Endpoint,
        spec: SlotSpec,
        timeout: Duration,
        alloc: impl Fn(usize) -> std::result::Result<B, MemError>,
    ) -> Result<TagChannel<'a, B>> {
        let tx = map_slots(ctx, spec.send_slots, || alloc(spec.send_bytes))?;
        let rx = map_slots(ctx, spec.recv_slots, || alloc(spec.recv_bytes))?;
        Ok(TagChannel {
            ops: OpTable::new(worker),
            worker,
            ep,
            tx,
            rx,
            sends: VecDeque::new(),
            recvs: VecDeque::new(),
            done: Vec::new(),
            seq: 0,
            ack_posted: false,
            last_recv_slot: 0,
            prereg: spec.prereg,
            timeout,
        })
    }

    /// A fresh token of kind `kind` (SEND or RECV).
    #[inline]
    fn token(&mut self, kind: u64) -> u64 {
        self.seq = (self.seq + 1) & ((1 << 62) - 1);
        kind | self.seq
    }

    /// Posts a send of the first `len` bytes of send slot `slot`; true when it completed in
    /// place.
    #[inline]
    fn post_send_slot(&mut self, slot: usize, len: usize, token: u64) -> Result<bool> {
        let m = self
            .tx
            .get_mut(slot)
            .ok_or_else(|| bad_slot("send", slot))?;
        let cap = m.len();
        if len > cap {
            return Err(too_long(len, cap));
        }
        if B::STAGED {
            // A slot still in flight was not written since (its payload is filled only when
            // idle): nothing to copy.
            if let Some(b) = m.buf_mut() {
                b.push(len).map_err(staging)?;
            }
        }
        let local = m.slice(0, len).ok_or_else(|| too_long(len, cap))?;
        let local = if self.prereg {
            local
        } else {
            local.without_handle()
        };
        self.ops.tag_send(self.ep, local, DATA_TAG, token)
    }

    /// Posts a receive of up to `len` bytes into receive slot `slot`; true when it completed
    /// in place.
    #[inline]
    fn post_recv_slot(&mut self, slot: usize, len: usize, token: u64) -> Result<bool> {
        let m = self
            .rx
            .get_mut(slot)
            .ok_or_else(|| bad_slot("receive", slot))?;
        let cap = m.len();
        let local = m.slice_mut(0, len).ok_or_else(|| too_long(len, cap))?;
        let local = if self.prereg {
            local
        } else {
            local.without_handle()
        };
        self.ops
            .tag_recv(self.worker, local, DATA_TAG, u64::MAX, token)
    }

    /// Busy-polls the table until the operation of `token` settles; returns its length.
    #[inline]
    fn wait(&mut self, token: u64, what: &'static str) -> Result<usize> {
        if let Some(n) = take(&mut self.done, token) {
            return Ok(n);
        }
        let (ops, done, timeout) = (&mut self.ops, &mut self.done, self.timeout);
        spin(
            timeout,
            || {
                ops.poll(done)?;
                Ok(take(done, token))
            },
            || UcxError::Timeout {
                what,
                secs: timeout.as_secs_f64(),
            },
        )
    }

    /// Brings a completed receive into slot `slot`'s host staging copy (device memory).
    #[inline]
    fn received_into(&mut self, slot: usize, n: usize) -> Result<usize> {
        self.last_recv_slot = slot;
        // A slot with receives still posted into it has no staging copy (only unverified
        // streams share one slot): nothing to copy.
        if let (true, Some(b)) = (B::STAGED, self.rx[slot].buf_mut()) {
            b.pull(n).map_err(staging)?;
        }
        Ok(n)
    }

    /// Posts a send of the first `len` bytes of send slot `slot`.
    #[inline]
    pub fn post_send(&mut self, slot: usize, len: usize) -> Result<()> {
        let token = self.token(SEND);
        let in_place = self.post_send_slot(slot, len, token)?;
        self.sends.push_back((token, in_place));
        Ok(())
    }

    /// Waits for the oldest outstanding send.
    #[inline]
    pub fn complete_send(&mut self) -> Result<()> {
        let Some((token, in_place)) = self.sends.pop_front() else {
            return Err(UcxError::Invalid("no send outstanding".into()));
        };
        if !in_place {
            self.wait(token, "a tag send")?;
        }
        Ok(())
    }

    /// Sends the first `len` bytes of slot 0 and waits for it to complete (the ping-pong path:
    /// nothing else in flight).
    #[inline]
    pub fn send(&mut self, len: usize) -> Result<()> {
        let token = self.token(SEND);
        if !self.post_send_slot(0, len, token)? {
            self.wait(token, "a tag send")?;
        }
        Ok(())
    }

    /// Receives one message of up to `len` bytes into slot 0 and waits for it (the ping-pong
    /// path); returns its length.
    #[inline]
    pub fn recv(&mut self, len: usize) -> Result<usize> {
        let token = self.token(RECV);
        let n = if self.post_recv_slot(0, len, token)? {
            len
        } else {
            self.wait(token, "a tag receive")?
        };
        self.received_into(0, n)
    }

    /// Posts a receive of up to `len` bytes into receive slot `slot`.
    #[inline]
    pub fn post_recv(&mut self, slot: usize, len: usize) -> Result<()> {
        let token = self.token(RECV);
        if self.post_recv_slot(slot, len, token)? {
            self.done.push((token, len));
        }
        self.recvs.push_back((token, slot));
        Ok(())
    }

    /// Waits for the oldest outstanding receive; returns its length.
    #[inline]
    pub fn complete_recv(&mut self) -> Result<usize> {
        let Some((token, slot)) = self.recvs.pop_front() else {
            return Err(UcxError::Invalid("no receive outstanding".into()));
        };
        let n = self.wait(token, "a tag receive")?;
        self.received_into(slot, n)
    }

    /// Cancels whatever is still in flight (receives posted ahead, the acknowledgement's) and
    /// settles it.
    pub fn settle(&mut self) {
        // What does not settle in time stays in the table, which settles or keeps it on drop.
        let _ = self.ops.settle_all(self.timeout);
        self.sends.clear();
        self.recvs.clear();
        self.done.clear();
        self.ack_posted = false;
    }

    /// Posts the receive of the acknowledgement.
    pub fn post_ack_recv(&mut self) -> Result<()> {
        let what = "the acknowledgement";
        if self
            .ops
            .recv_message(self.worker, ACK.len(), ACK_TAG, u64::MAX, ACK_RECV, what)?
        {
            return Err(UcxError::Invalid(
                "the acknowledgement's receive completed before it was posted".into(),
            ));
        }
        self.ack_posted = true;
        Ok(())
    }

    /// Sends the acknowledgement and waits until it left.
    pub fn send_ack(&mut self) -> Result<()> {
        let what = "the acknowledgement's send";
        if !self
            .ops
            .send_message(self.ep, ACK, ACK_TAG, ACK_SEND, what)?
        {
            self.wait(ACK_SEND, what)?;
        }
        Ok(())
    }

    /// Waits for the acknowledgement posted with `post_ack_recv`.
    pub fn wait_ack(&mut self) -> Result<()> {
        if !self.ack_posted {
            return Err(UcxError::Invalid(
                "no acknowledgement receive posted".into(),
            ));
        }
        let n = self.wait(ACK_RECV, "the acknowledgement")?;
        self.ack_posted = false;
        let msg = self.ops.message(ACK_RECV);
        if n != ACK.len() || msg.as_deref() != Some(&ACK[..]) {
            return Err(UcxError::Invalid(format!(
                "malformed acknowledgement ({n} bytes)"
            )));
        }
        Ok(())
    }

    /// Send slots.
    pub fn slots(&self) -> usize {
        self.tx.len().min(self.rx.len())
    }

    /// Send slot `slot`, for writing a payload (its host staging copy for device memory,
    /// copied in by the next send of the slot); empty while a send of it is in flight.
    pub fn send_slot(&mut self, slot: usize) -> &mut [u8] {
        match self.tx[slot].buf_mut() {
            Some(b) => b.host_mut(),
            None => &mut [],
        }
    }

    /// Receive slot `slot` (its host staging copy for device memory, copied out when a
    /// receive into it completes); empty while a receive into it is in flight.
    pub fn recv_slot(&self, slot: usize) -> &[u8] {
        match self.rx[slot].buf() {
            Some(b) => b.host(),
            None => &[],
        }
    }

    /// The receive slot of the last completed receive.
    pub fn last_received(&self) -> &[u8] {
        self.recv_slot(self.last_recv_slot)
    }
}

/// Claims the settled operation of `token` from `done`; its length.
#[inline]
fn take(done: &mut Vec<(u64, usize)>, token: u64) -> Option<usize> {
    let i = done.iter().position(|&(t, _)| t == token)?;
    Some(done.swap_remove(i).1)
}

fn bad_slot(what: &str, slot: usize) -> UcxError {
    UcxError::Invalid(format!("no {what} slot {slot}"))
}

fn too_long(len: usize, cap: usize) -> UcxError {
    UcxError::Invalid(format!("{len} bytes do not fit a {cap}-byte slot"))
}

#[cold]
fn staging(e: MemError) -> UcxError {
    UcxError::Invalid(format!("staging copy failed: {e}"))
}
