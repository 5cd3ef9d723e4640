//! A two-sided message channel over a connection: one send buffer, one receive buffer, one
//! receive kept posted; the safe face of fi_send/fi_inject/fi_recv (and their tagged forms).

use std::time::Duration;

use super::connect::Connection;
use super::error::{FabricError, Result};
use super::info::{caps, mr_mode};
use super::mr::MemoryRegion;
use crate::mem::{HostBuffer, HostStaged, MemIface};

/// The tag kvxfer's tagged messages carry.
const TAG: u64 = 0x6b76_7866; // "kvxf"

/// A message buffer (host memory, or device memory with a host staging copy), registered when
/// the provider requires local registration or the memory is on a device.
pub enum LocalBuf<B: HostStaged = HostBuffer> {
    /// Registered; its descriptor goes with every post.
    Registered(MemoryRegion<B>),
    /// Not registered (the provider does not need it); descriptor NULL.
    Plain(B),
}

impl LocalBuf<HostBuffer> {
    /// Allocates `len` bytes and registers them with `access` if the connection's provider needs it.
    pub fn new(conn: &Connection, len: usize, access: u64) -> Result<LocalBuf> {
        let buf = HostBuffer::new(len).map_err(|e| FabricError::Invalid(e.to_string()))?;
        LocalBuf::over(conn, buf, access)
    }
}

impl<B: HostStaged> LocalBuf<B> {
    /// Takes `buf`, registered with `access` where the provider needs it (always for device
    /// memory).
    pub fn over(conn: &Connection, buf: B, access: u64) -> Result<LocalBuf<B>> {
        let device = buf.iface() != MemIface::System;
        if device || conn.info.view().mr_mode() & (mr_mode::LOCAL | mr_mode::HMEM) != 0 {
            Ok(LocalBuf::Registered(MemoryRegion::register(
                &conn.domain,
                buf,
                access,
            )?))
        } else {
            Ok(LocalBuf::Plain(buf))
        }
    }

    /// Descriptor for data-path calls.
    pub fn desc(&self) -> *mut libc::c_void {
        match self {
            LocalBuf::Registered(mr) => mr.desc(),
            LocalBuf::Plain(_) => std::ptr::null_mut(),
        }
    }

    fn host(&self) -> &B {
        match self {
            LocalBuf::Registered(mr) => mr.channel_buf(),
            LocalBuf::Plain(b) => b,
        }
    }

    fn host_mut(&mut self) -> &mut B {
        match self {
            LocalBuf::Registered(mr) => mr.channel_buf_mut(),
            LocalBuf::Plain(b) => b,
        }
    }
}

/// Message mode of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgMode {
    /// fi_send / fi_recv.
    Msg,
    /// fi_tsend / fi_trecv with one tag.
    Tagged,
}

/// A ping-pong style channel: sends wait for their completion (or are injected), one receive
/// stays posted.
pub struct MsgChannel<B: HostStaged = HostBuffer> {
    conn: Connection,
    tx: LocalBuf<B>,
    rx: LocalBuf<B>,
    mode: MsgMode,
    inject_size: usize,
    timeout: Duration,
    recv_posted: bool,
}

impl MsgChannel<HostBuffer> {
    /// Buffers of `max_size` bytes on a connection; `inject` uses fi_inject up to the inject size.
    pub fn new(
        conn: Connection,
        max_size: usize,
        mode: MsgMode,
        inject: bool,
        timeout: Duration,
    ) -> Result<MsgChannel> {
        let tx = HostBuffer::new(max_size).map_err(|e| FabricError::Invalid(e.to_string()))?;
        let rx = HostBuffer::new(max_size).map_err(|e| FabricError::Invalid(e.to_string()))?;
        MsgChannel::over(conn, tx, rx, mode, inject, timeout)
    }
}

impl<B: HostStaged> MsgChannel<B> {
    /// A channel over the given send and receive buffers (of equal length); device memory is
    /// never injected (fi_inject copies host bytes).
    pub fn over(
        conn: Connection,
        tx: B,
        rx: B,
        mode: MsgMode,
        inject: bool,
        timeout: Duration,
    ) -> Result<MsgChannel<B>> {
        let tx = LocalBuf::over(&conn, tx, caps::SEND)?;
        let rx = LocalBuf::over(&conn, rx, caps::RECV)?;
        let inject_size = if inject && !B::STAGED {
            conn.info.view().inject_size()
        } else {
            0
        };
        Ok(MsgChannel {
            conn,
            tx,
            rx,
            mode,
            inject_size,
            timeout,
            recv_posted: false,
        })
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The inject size in use (0: inject disabled).
    pub fn inject_size(&self) -> usize {
        self.inject_size
    }

    /// Posts the receive buffer whole, retrying while the provider asks to.
    pub fn post_recv(&mut self) -> Result<()> {
        if self.recv_posted {
            return Ok(());
        }
        let desc = self.rx.desc();
        let len = self.rx.host().len();
        let ptr = self.rx.host_mut().as_mut_ptr();
        loop {
            // SAFETY: rx is owned by self and not handed out while recv_posted is true
            // (received() returns nothing then); the completion is read in wait_recv before
            // the buffer is read or reposted; no context pointer is used.
            let ok = unsafe {
                match self.mode {
                    MsgMode::Msg => {
                        self.conn
                            .ep
                            .recv(ptr, len, desc, self.conn.peer, std::ptr::null_mut())?
                    }
                    MsgMode::Tagged => self.conn.ep.trecv(
                        ptr,
                        len,
                        desc,
                        self.conn.peer,
                        TAG,
                        0,
                        std::ptr::null_mut(),
                    )?,
                }
            };
            if ok {
                self.recv_posted = true;
                return Ok(());
            }
            self.progress()?;
        }
    }

    /// Sends the first `len` bytes of the send buffer and returns when it may be reused.
    #[inline]
    pub fn send(&mut self, len: usize) -> Result<()> {
        if len > self.tx.host().len() {
            return Err(FabricError::Invalid(format!(
                "message of {len} bytes exceeds the {}-byte buffer",
                self.tx.host().len()
            )));
        }
        // Device memory: the host staging copy, if written since, goes to the device first.
        self.tx.host_mut().push(len).map_err(staging_error)?;
        let ptr = self.tx.host().as_ptr();
        let peer = self.conn.peer;
        if len <= self.inject_size {
            loop {
                // SAFETY: ptr..ptr+len lies in the owned send buffer; inject copies it.
                let ok = unsafe {
                    match self.mode {
                        MsgMode::Msg => self.conn.ep.inject(ptr, len, peer)?,
                        MsgMode::Tagged => self.conn.ep.tinject(ptr, len, peer, TAG)?,
                    }
                };
                if ok {
                    return Ok(());
                }
                self.progress()?;
            }
        }
        let desc = self.tx.desc();
        loop {
            // SAFETY: the send buffer is not written until this send's completion is read
            // below (send() takes &mut self and returns only after it).
            let ok = unsafe {
                match self.mode {
                    MsgMode::Msg => {
                        self.conn
                            .ep
                            .send(ptr, len, desc, peer, std::ptr::null_mut())?
                    }
                    MsgMode::Tagged => {
                        self.conn
                            .ep
                            .tsend(ptr, len, desc, peer, TAG, std::ptr::null_mut())?
                    }
                }
            };
            if ok {
                break;
            }
            self.progress()?;
        }
        self.conn.txcq.wait_one("a send completion", self.timeout)?;
        Ok(())
    }

    /// Busy-polls until the posted receive completes; returns its length.
    #[inline]
    pub fn wait_recv(&mut self) -> Result<usize> {
        if !self.recv_posted {
            return Err(FabricError::Invalid("no receive posted".into()));
        }
        let e = self
            .conn
            .rxcq
            .wait_one("a message from the peer", self.timeout)?;
        self.recv_posted = false;
        // Device memory with a staging copy (--verify): the message comes to the host side.
        self.rx.host_mut().pull(e.len).map_err(staging_error)?;
        Ok(e.len)
    }

    /// Drives progress on the transmit side (for providers that need it while retrying).
    fn progress(&self) -> Result<()> {
        let mut e = [super::cq::CqEntry::default()];
        self.conn.txcq.read(&mut e).map(|_| ())
    }

    /// The send buffer (for device memory its host staging copy), to fill before
    /// [`send`](Self::send).
    pub fn send_buf(&mut self) -> &mut [u8] {
        self.tx.host_mut().host_mut()
    }

    /// The receive buffer (for device memory its host staging copy) while no receive is
    /// posted into it (empty otherwise).
    pub fn received(&self) -> &[u8] {
        if self.recv_posted {
            &[]
        } else {
            self.rx.host().host()
        }
    }
}

fn staging_error(e: crate::mem::MemError) -> FabricError {
    FabricError::Invalid(format!("copying a message between device and host: {e}"))
}
