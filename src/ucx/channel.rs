//! A tagged-message channel over one endpoint: mapped send and receive slots, the requests in
//! flight in posting order, and an acknowledgement message; the safe face of tag send/receive
//! that the tag_lat and tag_bw loops drive.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::endpoint::Endpoint;
use super::error::{Result, UcxError};
use super::memory::{MemHandle, MemoryType};
use super::worker::{Kind, RecvParams, Request, SendParams, Worker};
use super::Context;
#[cfg(feature = "cuda")]
use crate::mem::cuda::{CudaDevice, DeviceSlot};
use crate::mem::{HostBuffer, HostStaged};

/// The tag of measurement messages.
const DATA_TAG: u64 = 0x6b76_7866_0000_0001;
/// The tag of end-of-phase acknowledgements.
const ACK_TAG: u64 = 0x6b76_7866_0000_0002;

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
    // Requests first: they are settled (see Drop) before the buffers they point into go.
    sends: VecDeque<Request<'a>>,
    recvs: VecDeque<(usize, Request<'a>)>,
    ack: Option<Request<'a>>,
    worker: &'a Worker,
    ep: &'a Endpoint,
    tx: Vec<MemHandle<B>>,
    rx: Vec<MemHandle<B>>,
    ack_rx: Box<[u8; 8]>,
    ack_tx: Box<[u8; 8]>,
    last_recv_slot: usize,
    prereg: bool,
    // The ping-pong path's parameters (slot 0), built once.
    send_params: SendParams,
    recv_params: RecvParams,
    timeout: Duration,
}

fn map_slots<B: HostStaged>(
    ctx: &Context,
    n: usize,
    mut alloc: impl FnMut() -> std::result::Result<B, crate::mem::MemError>,
) -> Result<Vec<MemHandle<B>>> {
    (0..n.max(1))
        .map(|_| {
            let buf = alloc().map_err(|e| UcxError::Invalid(e.to_string()))?;
            MemHandle::map(ctx, buf)
        })
        .collect()
}

fn host_slot(bytes: usize) -> std::result::Result<HostBuffer, crate::mem::MemError> {
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
        let tx = map_slots(ctx, spec.send_slots, || host_slot(spec.send_bytes))?;
        let rx = map_slots(ctx, spec.recv_slots, || host_slot(spec.recv_bytes))?;
        Ok(TagChannel::with_slots(
            worker,
            ep,
            tx,
            rx,
            spec.prereg,
            timeout,
        ))
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
        let tx = map_slots(ctx, spec.send_slots, || slot(spec.send_bytes))?;
        let rx = map_slots(ctx, spec.recv_slots, || slot(spec.recv_bytes))?;
        Ok(TagChannel::with_slots(
            worker,
            ep,
            tx,
            rx,
            spec.prereg,
            timeout,
        ))
    }
}

impl<'a, B: HostStaged> TagChannel<'a, B> {
    fn with_slots(
        worker: &'a Worker,
        ep: &'a Endpoint,
        tx: Vec<MemHandle<B>>,
        rx: Vec<MemHandle<B>>,
        prereg: bool,
        timeout: Duration,
    ) -> TagChannel<'a, B> {
        let slot0 = |v: &Vec<MemHandle<B>>| v.first().filter(|_| prereg).map(|m| m.handle());
        let send_params = SendParams::new(slot0(&tx));
        let recv_params = RecvParams::new(slot0(&rx));
        TagChannel {
            sends: VecDeque::new(),
            recvs: VecDeque::new(),
            ack: None,
            worker,
            ep,
            tx,
            rx,
            ack_rx: Box::new([0; 8]),
            ack_tx: Box::new(*b"kvxf-ack"),
            last_recv_slot: 0,
            prereg,
            send_params,
            recv_params,
            timeout,
        }
    }

    /// Posts a send of the first `len` bytes of send slot `slot`.
    #[inline]
    pub fn post_send(&mut self, slot: usize, len: usize) -> Result<()> {
        let m = self
            .tx
            .get_mut(slot)
            .ok_or_else(|| bad_slot("send", slot))?;
        if len > m.channel_buf().len() {
            return Err(too_long(len, m.channel_buf().len()));
        }
        if B::STAGED {
            m.channel_buf_mut().push(len).map_err(staging)?;
        }
        let h = self.prereg.then(|| m.handle());
        // SAFETY: the slot is owned by self and outlives the request: requests are settled in
        // Drop before the slots are released.
        let r = unsafe { self.ep.tag_send(m.channel_buf().as_ptr(), len, DATA_TAG, h) }?;
        self.sends.push_back(r);
        Ok(())
    }

    /// Waits for the oldest outstanding send.
    #[inline]
    pub fn complete_send(&mut self) -> Result<()> {
        let Some(mut r) = self.sends.pop_front() else {
            return Err(UcxError::Invalid("no send outstanding".into()));
        };
        self.worker.wait(&mut r, self.timeout)?;
        Ok(())
    }

    /// Sends the first `len` bytes of slot 0 and waits for it to complete (the ping-pong path:
    /// no queue, nothing else in flight).
    #[inline]
    pub fn send(&mut self, len: usize) -> Result<()> {
        let m = &mut self.tx[0];
        if len > m.channel_buf().len() {
            return Err(too_long(len, m.channel_buf().len()));
        }
        if B::STAGED {
            m.channel_buf_mut().push(len).map_err(staging)?;
        }
        let params = &self.send_params;
        // SAFETY: slot 0 is owned by self and the request completes (or fails) before return.
        let pending = unsafe {
            self.ep
                .tag_send_now(m.channel_buf().as_ptr(), len, DATA_TAG, params)
        }?;
        if let Some(mut r) = pending {
            self.worker.wait(&mut r, self.timeout)?;
        }
        Ok(())
    }

    /// Receives one message of up to `len` bytes into slot 0 and waits for it (the ping-pong
    /// path); returns its length.
    #[inline]
    pub fn recv(&mut self, len: usize) -> Result<usize> {
        let m = &mut self.rx[0];
        if len > m.channel_buf().len() {
            return Err(too_long(len, m.channel_buf().len()));
        }
        let ptr = m.channel_buf_mut().as_mut_ptr();
        let params = &self.recv_params;
        // SAFETY: slot 0 is owned by self; the receive is waited for here, and a wait that
        // times out cancels and releases it before self (and the slot) can go.
        let st = unsafe {
            self.worker
                .tag_recv_with(ptr, len, DATA_TAG, u64::MAX, params)
        };
        let n = self
            .worker
            .wait_status(st, Kind::Recv, 0, "tag receive", self.timeout)?;
        self.last_recv_slot = 0;
        if B::STAGED {
            self.rx[0].channel_buf_mut().pull(n).map_err(staging)?;
        }
        Ok(n)
    }

    /// Posts a receive of up to `len` bytes into receive slot `slot`.
    #[inline]
    pub fn post_recv(&mut self, slot: usize, len: usize) -> Result<()> {
        let m = self
            .rx
            .get_mut(slot)
            .ok_or_else(|| bad_slot("receive", slot))?;
        if len > m.channel_buf().len() {
            return Err(too_long(len, m.channel_buf().len()));
        }
        let h = self.prereg.then(|| m.handle());
        let ptr = m.channel_buf_mut().as_mut_ptr();
        // SAFETY: as in post_send, the slot outlives the request.
        let r = unsafe { self.worker.tag_recv(ptr, len, DATA_TAG, u64::MAX, h) }?;
        self.recvs.push_back((slot, r));
        Ok(())
    }

    /// Waits for the oldest outstanding receive; returns its length.
    #[inline]
    pub fn complete_recv(&mut self) -> Result<usize> {
        let Some((slot, mut r)) = self.recvs.pop_front() else {
            return Err(UcxError::Invalid("no receive outstanding".into()));
        };
        let n = self.worker.wait(&mut r, self.timeout)?;
        self.last_recv_slot = slot;
        if B::STAGED {
            self.rx[slot].channel_buf_mut().pull(n).map_err(staging)?;
        }
        Ok(n)
    }

    /// Cancels every receive still posted (data and acknowledgement) and settles it.
    pub fn cancel_receives(&mut self) {
        let mut pending: Vec<Request<'a>> = self.recvs.drain(..).map(|(_, r)| r).collect();
        pending.extend(self.ack.take());
        for r in &mut pending {
            r.cancel();
        }
        let start = Instant::now();
        while !pending.is_empty() && start.elapsed() < self.timeout {
            self.worker.progress();
            pending.retain_mut(|r| matches!(r.test(), Ok(None)));
        }
    }

    /// Posts the receive of the acknowledgement.
    pub fn post_ack_recv(&mut self) -> Result<()> {
        let ptr = self.ack_rx.as_mut_ptr();
        // SAFETY: ack_rx is owned by self and outlives the request (settled in Drop).
        let r = unsafe { self.worker.tag_recv(ptr, 8, ACK_TAG, u64::MAX, None) }?;
        self.ack = Some(r);
        Ok(())
    }

    /// Sends the acknowledgement and waits until it left.
    pub fn send_ack(&mut self) -> Result<()> {
        // SAFETY: ack_tx is owned by self and the request is completed before returning.
        let mut r = unsafe { self.ep.tag_send(self.ack_tx.as_ptr(), 8, ACK_TAG, None) }?;
        self.worker.wait(&mut r, self.timeout)?;
        Ok(())
    }

    /// Waits for the acknowledgement posted with `post_ack_recv`.
    pub fn wait_ack(&mut self) -> Result<()> {
        let Some(mut r) = self.ack.take() else {
            return Err(UcxError::Invalid(
                "no acknowledgement receive posted".into(),
            ));
        };
        let n = self.worker.wait(&mut r, self.timeout)?;
        if n != 8 || &*self.ack_rx != b"kvxf-ack" {
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
    /// copied in by the next send of the slot).
    pub fn send_slot(&mut self, slot: usize) -> &mut [u8] {
        self.tx[slot].channel_buf_mut().host_mut()
    }

    /// Receive slot `slot` (its host staging copy for device memory, copied out when a
    /// receive into it completes).
    pub fn recv_slot(&self, slot: usize) -> &[u8] {
        self.rx[slot].channel_buf().host()
    }

    /// The receive slot of the last completed receive.
    pub fn last_received(&self) -> &[u8] {
        self.recv_slot(self.last_recv_slot)
    }
}

fn bad_slot(what: &str, slot: usize) -> UcxError {
    UcxError::Invalid(format!("no {what} slot {slot}"))
}

fn too_long(len: usize, cap: usize) -> UcxError {
    UcxError::Invalid(format!("{len} bytes do not fit a {cap}-byte slot"))
}

#[cold]
fn staging(e: crate::mem::MemError) -> UcxError {
    UcxError::Invalid(format!("staging copy failed: {e}"))
}

impl<B: HostStaged> Drop for TagChannel<'_, B> {
    fn drop(&mut self) {
        // Settle every request before the buffers go: receives are cancelled, sends finish.
        let mut pending: Vec<Request<'_>> = self.sends.drain(..).collect();
        pending.extend(self.recvs.drain(..).map(|(_, r)| r));
        pending.extend(self.ack.take());
        if pending.is_empty() {
            return;
        }
        for r in &mut pending {
            r.cancel();
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            self.worker.progress();
            if pending.iter_mut().all(|r| !matches!(r.test(), Ok(None))) {
                return;
            }
        }
        // UCX still owns some: leaking the buffers is safe, freeing them would not be.
        crate::teardown::record(
            "UCX requests still in flight at exit; their buffers were leaked".into(),
        );
        std::mem::forget(std::mem::take(&mut self.tx));
        std::mem::forget(std::mem::take(&mut self.rx));
        std::mem::forget(pending);
    }
}
