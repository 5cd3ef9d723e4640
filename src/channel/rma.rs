//! fi_rma_pingpong's channel (its three operations): a source buffer, a buffer the peer
//! writes into or reads from, a small control buffer, and the peer's region.

use std::time::Duration;

use super::libfabric::{
    buffer_error, busy, host, host_mut, no_room, staging_error, timed_out, until_posted,
    Completions, Queue,
};
use super::spin;
use crate::fabric::{caps, Connection, DataPath, FabricError, MemoryRegion, RemoteRegion, Result};
use crate::mem::{HostBuffer, HostStaged};

/// fi_rma_pingpong's `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmaPingPongOp {
    /// fi_write; the receiver spins on the last byte of its buffer.
    Write,
    /// fi_writedata; the receiver waits for the remote CQ data entry.
    WriteData,
    /// fi_read of the peer's buffer, timed as a full round trip.
    Read,
}

/// Bytes of the control buffer (the read mode's "done" message).
const CTRL: usize = 64;
/// Bytes of the "done" message.
const DONE_LEN: usize = 8;
/// The token of the write or read in flight.
const RMA: u64 = 1;
/// The token of the "done" message's send.
const DONE_SEND: u64 = 2;
/// The token of the "done" message's receive.
const DONE_RECV: u64 = 3;

/// Both buffers (host memory, or device memory with host staging copies for `--verify`) and
/// the peer's region; every operation waits for its own completion.
pub struct RmaChannel<B: HostStaged = HostBuffer> {
    // The path first: its endpoint closes (and its slots release the regions) before the
    // regions go.
    path: DataPath,
    /// Source of writes, destination of reads.
    tx: MemoryRegion<B>,
    /// What the peer writes into or reads from.
    rx: MemoryRegion<B>,
    ctrl: MemoryRegion<HostBuffer>,
    remote: Option<RemoteRegion>,
    op: RmaPingPongOp,
    timeout: Duration,
    ctrl_posted: bool,
    /// Writes up to this size are injected (no local completion); 0 disables.
    inject_size: usize,
    done: Completions,
}

/// `len` bytes of host memory.
fn host_buffer(len: usize) -> Result<HostBuffer> {
    HostBuffer::new(len).map_err(buffer_error)
}

impl RmaChannel<HostBuffer> {
    /// Registers two `max_size` buffers (and a small control buffer) on the connection;
    /// `inject` injects writes up to the provider's inject size, as fi_rma_pingpong does.
    pub fn new(
        conn: Connection,
        max_size: usize,
        op: RmaPingPongOp,
        inject: bool,
        timeout: Duration,
    ) -> Result<RmaChannel> {
        let (tx, rx) = (host_buffer(max_size)?, host_buffer(max_size)?);
        RmaChannel::over(conn, tx, rx, op, inject, timeout)
    }
}

impl<B: HostStaged> RmaChannel<B> {
    /// Registers `tx` (the source of writes) and `rx` (what the peer writes into), of equal
    /// length, and a small control buffer on the connection. Device memory cannot be polled
    /// for a last byte, so it takes writedata or read, and is never injected (fi_inject_write
    /// copies host bytes).
    pub fn over(
        conn: Connection,
        tx: B,
        rx: B,
        op: RmaPingPongOp,
        inject: bool,
        timeout: Duration,
    ) -> Result<RmaChannel<B>> {
        if B::STAGED && op == RmaPingPongOp::Write {
            return Err(FabricError::Invalid(
                "write mode polls the receive buffer's last byte, which device memory cannot \
                 be read for; use writedata"
                    .into(),
            ));
        }
        let d = &conn.domain;
        let tx = MemoryRegion::register(d, tx, caps::WRITE | caps::READ)?;
        let rx = MemoryRegion::register(d, rx, caps::REMOTE_WRITE | caps::REMOTE_READ)?;
        let ctrl = MemoryRegion::register(d, host_buffer(CTRL)?, caps::SEND | caps::RECV)?;
        for mr in [&tx, &rx] {
            mr.bind_endpoint(&conn.ep, &conn.info)?;
        }
        ctrl.bind_endpoint(&conn.ep, &conn.info)?;
        let inject_size = if inject && op != RmaPingPongOp::Read && !B::STAGED {
            conn.info.view().inject_size()
        } else {
            0
        };
        Ok(RmaChannel {
            inject_size,
            path: DataPath::new(conn),
            tx,
            rx,
            ctrl,
            remote: None,
            op,
            timeout,
            ctrl_posted: false,
            done: Completions::default(),
        })
    }

    /// The largest injected write (0: none).
    pub fn inject_size(&self) -> usize {
        self.inject_size
    }

    /// How the peer reaches our receive buffer.
    pub fn local_region(&self) -> RemoteRegion {
        self.rx.remote(&self.path.connection().info)
    }

    /// Sets the peer's receive buffer (exchanged out of band).
    pub fn set_remote(&mut self, r: RemoteRegion) {
        self.remote = Some(r);
    }

    /// Closes the endpoint and the registrations and hands the write source and the region
    /// the peer reaches back; a buffer an operation may still reach is left leaked instead
    /// (None).
    pub fn into_buffers(self) -> (Option<B>, Option<B>) {
        // The endpoint closes first: no operation reaches the bytes after it.
        drop(self.path);
        drop(self.ctrl);
        (self.tx.into_buffer(), self.rx.into_buffer())
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        self.path.connection()
    }

    /// Writes `len` bytes of the source buffer to the peer (`data` as remote CQ data in
    /// writedata mode; in write mode the last byte is set to `stamp` first) and waits for the
    /// local completion. In read mode, reads `len` bytes of the peer's buffer instead.
    #[inline]
    pub fn transfer(&mut self, len: usize, stamp: u8, data: u64) -> Result<()> {
        let r = self
            .remote
            .ok_or_else(|| FabricError::Invalid("no remote region set".into()))?;
        let remote = r
            .slice(0, len)
            .filter(|_| len > 0 && len <= self.tx.len())
            .ok_or_else(|| FabricError::Invalid(format!("{len} bytes do not fit the buffers")))?;
        let buf = self.tx.buf_mut().ok_or_else(busy)?;
        match self.op {
            // Host memory only (over() refuses write mode for device memory).
            RmaPingPongOp::Write => {
                if let Some(last) = buf.host_mut().get_mut(len - 1) {
                    *last = stamp;
                }
            }
            // Device memory: the host staging copy, if written since, goes to the device.
            RmaPingPongOp::WriteData => buf.push(len).map_err(staging_error)?,
            RmaPingPongOp::Read => {}
        }
        let (path, done, timeout) = (&mut self.path, &mut self.done, self.timeout);
        let data = (self.op == RmaPingPongOp::WriteData).then_some(data);
        if len <= self.inject_size {
            // Injected: the provider copied the bytes, and no local completion follows.
            let local = self.tx.slice(0, len).ok_or_else(no_room)?;
            return until_posted(path, done, "room to inject an RMA write", timeout, |p| {
                p.inject_write(local, remote, data)
            });
        }
        if self.op == RmaPingPongOp::Read {
            let tx = &mut self.tx;
            until_posted(path, done, "room to post an RMA read", timeout, |p| {
                p.read(tx.slice_mut(0, len).ok_or_else(no_room)?, remote, RMA)
            })?;
        } else {
            let local = self.tx.slice(0, len).ok_or_else(no_room)?;
            until_posted(path, done, "room to post an RMA write", timeout, |p| {
                p.write(local, remote, data, RMA)
            })?;
        }
        done.wait(path, Queue::Tx, RMA, "an RMA completion", timeout)?;
        if self.op == RmaPingPongOp::Read {
            // Device memory with a staging copy (--verify): what was read comes to the host.
            let buf = self.tx.buf_mut().ok_or_else(busy)?;
            buf.pull(len).map_err(staging_error)?;
        }
        Ok(())
    }

    /// Sets the last byte of a `len`-byte message in the receive buffer (the sentinel a write
    /// must overwrite). Call only while the peer cannot be writing.
    pub fn set_last_byte(&mut self, len: usize, value: u8) {
        if B::STAGED {
            return; // device memory is never polled (over() refuses write mode)
        }
        let last = self
            .rx
            .buf_mut()
            .and_then(|b| b.host_mut().get_mut(len.wrapping_sub(1)));
        if let Some(b) = last {
            *b = value;
        }
    }

    /// Write mode: spins until the last byte of a `len`-byte message equals `stamp`,
    /// driving progress meanwhile. Writedata mode: waits for the remote CQ data entry and
    /// returns its data.
    #[inline]
    pub fn wait_arrival(&mut self, len: usize, stamp: u8) -> Result<u64> {
        if len == 0 || len > self.rx.len() {
            return Err(FabricError::Invalid(format!(
                "{len} bytes do not fit the buffer"
            )));
        }
        let (path, done, rx, timeout) =
            (&mut self.path, &mut self.done, &mut self.rx, self.timeout);
        match self.op {
            RmaPingPongOp::Write => spin(
                timeout,
                || {
                    match rx.read_volatile(len - 1) {
                        Some(b) if b == stamp => return Ok(Some(0)),
                        Some(_) => {}
                        None => {
                            return Err(FabricError::Invalid(
                                "write mode cannot poll device memory".into(),
                            ))
                        }
                    }
                    // Progress for providers that move data on the target's polls.
                    done.poll(path, Queue::Rx)?;
                    Ok(None)
                },
                || timed_out("the peer's RMA write", timeout),
            ),
            RmaPingPongOp::WriteData => {
                let data = spin(
                    timeout,
                    || {
                        if let Some(d) = done.take_remote() {
                            return Ok(Some(d));
                        }
                        done.poll(path, Queue::Rx)?;
                        Ok(done.take_remote())
                    },
                    || timed_out("the peer's RMA write", timeout),
                )?;
                // Device memory with a staging copy (--verify): the message to the host.
                let buf = rx.buf_mut().ok_or_else(busy)?;
                buf.pull(len).map_err(staging_error)?;
                Ok(data)
            }
            RmaPingPongOp::Read => Err(FabricError::Invalid("read mode has no arrivals".into())),
        }
    }

    /// Read mode, target: posts the receive for the initiator's "done" message.
    pub fn post_done(&mut self) -> Result<()> {
        if self.ctrl_posted {
            return Ok(());
        }
        let ctrl = &mut self.ctrl;
        until_posted(
            &mut self.path,
            &mut self.done,
            "room to post a receive",
            self.timeout,
            |p| p.recv(ctrl.slice_mut(0, CTRL).ok_or_else(no_room)?, DONE_RECV),
        )?;
        self.ctrl_posted = true;
        Ok(())
    }

    /// Read mode, target: drives progress until the initiator's "done" message arrives.
    pub fn wait_done(&mut self) -> Result<()> {
        if !self.ctrl_posted {
            return Err(FabricError::Invalid("no receive posted".into()));
        }
        let (path, done, timeout) = (&mut self.path, &mut self.done, self.timeout);
        let mut polls = 0u32;
        spin(
            timeout,
            || {
                done.poll_both(path)?;
                polls = polls.wrapping_add(1);
                if polls & 0xfff == 0 {
                    // The whole read phase passes here: leave the core to the initiator now
                    // and then.
                    std::thread::yield_now();
                }
                Ok(done.take(DONE_RECV))
            },
            || timed_out("the initiator's reads to finish", timeout),
        )?;
        self.ctrl_posted = false;
        Ok(())
    }

    /// Read mode, initiator: tells the target the reads of this size are over.
    pub fn send_done(&mut self) -> Result<()> {
        let (path, done, timeout) = (&mut self.path, &mut self.done, self.timeout);
        let local = self.ctrl.slice(0, DONE_LEN).ok_or_else(no_room)?;
        until_posted(path, done, "room to send", timeout, |p| {
            p.send(local, DONE_SEND)
        })?;
        done.wait(path, Queue::Tx, DONE_SEND, "the done message", timeout)?;
        Ok(())
    }

    /// The source buffer (written before a transfer; holds read data after one); for device
    /// memory its host staging copy (empty without one).
    pub fn tx_buf(&mut self) -> &mut [u8] {
        host_mut(&mut self.tx)
    }

    /// The source buffer, read-only (where reads landed; for device memory the staging copy).
    pub fn tx_view(&self) -> &[u8] {
        host(&self.tx)
    }

    /// The receive buffer (what the peer wrote; for device memory the staging copy).
    pub fn rx_buf(&self) -> &[u8] {
        host(&self.rx)
    }

    /// The receive buffer, for filling before the peer reads it (then [`publish_rx`]).
    ///
    /// [`publish_rx`]: Self::publish_rx
    pub fn rx_buf_mut(&mut self) -> &mut [u8] {
        host_mut(&mut self.rx)
    }

    /// Makes the first `len` bytes written through [`rx_buf_mut`](Self::rx_buf_mut) what the
    /// peer reads (a host-to-device copy for device memory).
    pub fn publish_rx(&mut self, len: usize) -> Result<()> {
        let buf = self.rx.buf_mut().ok_or_else(busy)?;
        buf.push(len).map_err(staging_error)
    }
}
