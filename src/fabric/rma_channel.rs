//! An RMA ping-pong channel (fi_rma_pingpong's three operations): a local buffer the peer
//! writes into or reads from, a source buffer, and the peer's region.

use std::time::{Duration, Instant};

use super::connect::Connection;
use super::cq::CqEntry;
use super::error::{FabricError, Result};
use super::info::caps;
use super::mr::{MemoryRegion, RemoteRegion};
use super::rma::cq_flags;
use crate::mem::{Buffer, HostBuffer, HostStaged, MemError};

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

/// Both buffers (host memory, or device memory with host staging copies for `--verify`) and
/// the peer's region; every operation waits for its own completion.
pub struct RmaChannel<B: HostStaged = HostBuffer> {
    conn: Connection,
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
}

fn host(len: usize) -> Result<HostBuffer> {
    HostBuffer::new(len).map_err(|e| FabricError::Invalid(e.to_string()))
}

fn staging_error(e: MemError) -> FabricError {
    FabricError::Invalid(format!("copying a message between device and host: {e}"))
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
        RmaChannel::over(conn, host(max_size)?, host(max_size)?, op, inject, timeout)
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
        let ctrl = MemoryRegion::register(d, host(CTRL)?, caps::SEND | caps::RECV)?;
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
            conn,
            tx,
            rx,
            ctrl,
            remote: None,
            op,
            timeout,
            ctrl_posted: false,
        })
    }

    /// The largest injected write (0: none).
    pub fn inject_size(&self) -> usize {
        self.inject_size
    }

    /// How the peer reaches our receive buffer.
    pub fn local_region(&self) -> RemoteRegion {
        self.rx.remote(&self.conn.info)
    }

    /// Sets the peer's receive buffer (exchanged out of band).
    pub fn set_remote(&mut self, r: RemoteRegion) {
        self.remote = Some(r);
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn deadline_check(&self, start: Instant, what: &'static str) -> Result<()> {
        crate::stop::check()?;
        if start.elapsed() > self.timeout {
            return Err(FabricError::Timeout {
                what,
                secs: self.timeout.as_secs_f64(),
            });
        }
        Ok(())
    }

    /// Writes `len` bytes of the source buffer to the peer (`data` as remote CQ data in
    /// writedata mode; in write mode the last byte is set to `stamp` first) and waits for the
    /// local completion. In read mode, reads `len` bytes of the peer's buffer instead.
    #[inline]
    pub fn transfer(&mut self, len: usize, stamp: u8, data: u64) -> Result<()> {
        let r = self
            .remote
            .ok_or_else(|| FabricError::Invalid("no remote region set".into()))?;
        let raddr = r
            .at(0, len as u64)
            .filter(|_| len > 0 && len <= self.tx.channel_buf().len())
            .ok_or_else(|| FabricError::Invalid(format!("{len} bytes do not fit the buffers")))?;
        match self.op {
            // Host memory only (over() refuses write mode for device memory).
            RmaPingPongOp::Write => self.tx.channel_buf_mut().host_mut()[len - 1] = stamp,
            // Device memory: the host staging copy, if written since, goes to the device.
            RmaPingPongOp::WriteData => {
                self.tx.channel_buf_mut().push(len).map_err(staging_error)?
            }
            RmaPingPongOp::Read => {}
        }
        let desc = self.tx.desc();
        let ptr = self.tx.channel_buf_mut().as_mut_ptr();
        let start = Instant::now();
        if len <= self.inject_size {
            loop {
                let (ep, peer) = (&self.conn.ep, self.conn.peer);
                // SAFETY: ptr..ptr+len lies in the tx buffer (checked above) and is copied by
                // the provider before the call returns; raddr..raddr+len is in the peer's region.
                let ok = unsafe {
                    match self.op {
                        RmaPingPongOp::WriteData => {
                            ep.inject_writedata(ptr, len, data, peer, raddr, r.key)?
                        }
                        _ => ep.inject_write(ptr, len, peer, raddr, r.key)?,
                    }
                };
                if ok {
                    return Ok(());
                }
                let mut e = [CqEntry::default()];
                self.conn.txcq.read(&mut e)?;
                self.conn.rxcq.read(&mut e)?;
                self.deadline_check(start, "room to inject an RMA write")?;
            }
        }
        loop {
            let ep = &self.conn.ep;
            let peer = self.conn.peer;
            let null = std::ptr::null_mut();
            // SAFETY: ptr..ptr+len lies in the registered tx buffer (len checked above) and is
            // not touched until the completion is read below (this call holds &mut self);
            // raddr..raddr+len lies in the peer's region.
            let ok = unsafe {
                match self.op {
                    RmaPingPongOp::Write => ep.write(ptr, len, desc, peer, raddr, r.key, null)?,
                    RmaPingPongOp::WriteData => {
                        ep.writedata(ptr, len, desc, data, peer, raddr, r.key, null)?
                    }
                    RmaPingPongOp::Read => ep.read(ptr, len, desc, peer, raddr, r.key, null)?,
                }
            };
            if ok {
                break;
            }
            let mut e = [CqEntry::default()];
            self.conn.rxcq.read(&mut e)?;
            self.deadline_check(start, "room to post an RMA operation")?;
        }
        self.conn.txcq.wait_one("an RMA completion", self.timeout)?;
        if self.op == RmaPingPongOp::Read {
            // Device memory with a staging copy (--verify): what was read comes to the host.
            self.tx.channel_buf_mut().pull(len).map_err(staging_error)?;
        }
        Ok(())
    }

    /// Sets the last byte of a `len`-byte message in the receive buffer (the sentinel a write
    /// must overwrite). Call only while the peer cannot be writing.
    pub fn set_last_byte(&mut self, len: usize, value: u8) {
        if B::STAGED {
            return; // device memory is never polled (over() refuses write mode)
        }
        if let Some(b) = self
            .rx
            .channel_buf_mut()
            .host_mut()
            .get_mut(len.wrapping_sub(1))
        {
            *b = value;
        }
    }

    /// Write mode: spins until the last byte of a `len`-byte message equals `stamp`,
    /// driving progress meanwhile. Writedata mode: waits for the remote CQ data entry and
    /// returns its data.
    #[inline]
    pub fn wait_arrival(&mut self, len: usize, stamp: u8) -> Result<u64> {
        let start = Instant::now();
        let mut spins = 0u32;
        let mut e = [CqEntry::default()];
        let last = self
            .rx
            .channel_buf()
            .as_ptr()
            .wrapping_add(len.wrapping_sub(1));
        if len == 0 || len > self.rx.channel_buf().len() {
            return Err(FabricError::Invalid(format!(
                "{len} bytes do not fit the buffer"
            )));
        }
        loop {
            match self.op {
                RmaPingPongOp::Write if B::STAGED => {
                    return Err(FabricError::Invalid(
                        "write mode cannot poll device memory".into(),
                    ))
                }
                RmaPingPongOp::Write => {
                    // SAFETY: last lies inside the receive buffer (checked above); the peer's
                    // NIC may write it concurrently, hence the volatile read of one byte.
                    if unsafe { last.read_volatile() } == stamp {
                        return Ok(0);
                    }
                    // Progress for providers that move data on the target's polls.
                    self.conn.rxcq.read(&mut e)?;
                }
                RmaPingPongOp::WriteData => {
                    if self.conn.rxcq.read(&mut e)? == 1
                        && e[0].flags & cq_flags::REMOTE_CQ_DATA != 0
                    {
                        // Device memory with a staging copy (--verify): the message to the host.
                        self.rx.channel_buf_mut().pull(len).map_err(staging_error)?;
                        return Ok(e[0].data);
                    }
                }
                RmaPingPongOp::Read => {
                    return Err(FabricError::Invalid("read mode has no arrivals".into()))
                }
            }
            spins = spins.wrapping_add(1);
            if spins & 0xfff == 0 {
                self.deadline_check(start, "the peer's RMA write")?;
            }
        }
    }

    /// Read mode, target: posts the receive for the initiator's "done" message.
    pub fn post_done(&mut self) -> Result<()> {
        if self.ctrl_posted {
            return Ok(());
        }
        let desc = self.ctrl.desc();
        let ptr = self.ctrl.channel_buf_mut().as_mut_ptr();
        let start = Instant::now();
        // SAFETY: the control buffer is registered, owned by self, and not read or reposted
        // before this receive's completion (wait_done).
        while !unsafe {
            self.conn
                .ep
                .recv(ptr, CTRL, desc, self.conn.peer, std::ptr::null_mut())?
        } {
            self.deadline_check(start, "room to post a receive")?;
        }
        self.ctrl_posted = true;
        Ok(())
    }

    /// Read mode, target: drives progress until the initiator's "done" message arrives.
    pub fn wait_done(&mut self) -> Result<()> {
        if !self.ctrl_posted {
            return Err(FabricError::Invalid("no receive posted".into()));
        }
        let start = Instant::now();
        let mut e = [CqEntry::default()];
        let mut spins = 0u32;
        loop {
            if self.conn.rxcq.read(&mut e)? == 1 && e[0].flags & cq_flags::RECV != 0 {
                self.ctrl_posted = false;
                return Ok(());
            }
            self.conn.txcq.read(&mut e)?;
            spins = spins.wrapping_add(1);
            if spins & 0xfff == 0 {
                self.deadline_check(start, "the initiator's reads to finish")?;
                std::thread::yield_now();
            }
        }
    }

    /// Read mode, initiator: tells the target the reads of this size are over.
    pub fn send_done(&mut self) -> Result<()> {
        let desc = self.ctrl.desc();
        let ptr = self.ctrl.channel_buf().as_ptr();
        let start = Instant::now();
        // SAFETY: the control buffer is registered and owned by self; the completion is
        // waited for before returning.
        while !unsafe {
            self.conn
                .ep
                .send(ptr, 8, desc, self.conn.peer, std::ptr::null_mut())?
        } {
            self.deadline_check(start, "room to send")?;
        }
        self.conn.txcq.wait_one("the done message", self.timeout)?;
        Ok(())
    }

    /// The source buffer (written before a transfer; holds read data after one); for device
    /// memory its host staging copy (empty without one).
    pub fn tx_buf(&mut self) -> &mut [u8] {
        self.tx.channel_buf_mut().host_mut()
    }

    /// The source buffer, read-only (where reads landed; for device memory the staging copy).
    pub fn tx_view(&self) -> &[u8] {
        self.tx.channel_buf().host()
    }

    /// The receive buffer (what the peer wrote; for device memory the staging copy).
    pub fn rx_buf(&self) -> &[u8] {
        self.rx.channel_buf().host()
    }

    /// The receive buffer, for filling before the peer reads it (then [`publish_rx`]).
    ///
    /// [`publish_rx`]: Self::publish_rx
    pub fn rx_buf_mut(&mut self) -> &mut [u8] {
        self.rx.channel_buf_mut().host_mut()
    }

    /// Makes the first `len` bytes written through [`rx_buf_mut`](Self::rx_buf_mut) what the
    /// peer reads (a host-to-device copy for device memory).
    pub fn publish_rx(&mut self, len: usize) -> Result<()> {
        self.rx.channel_buf_mut().push(len).map_err(staging_error)
    }
}
