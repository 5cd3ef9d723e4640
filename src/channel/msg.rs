//! fi_pingpong's channel over one connection: a send buffer and a receive buffer, both
//! registered, one receive kept posted; sends wait for their completion or are injected.

use std::time::Duration;

use super::libfabric::{
    buffer_error, busy, host, host_mut, no_room, staging_error, until_posted, Completions, Queue,
};
use crate::fabric::{caps, Connection, DataPath, FabricError, MemoryRegion, Result};
use crate::mem::{HostBuffer, HostStaged};
use crate::xfer::tag::{tag, Kind};

/// The tag of tagged ping-pong messages: a chunk of xfer's layout (transfer 0, chunk 0).
const DATA_TAG: u64 = tag(Kind::Data, 0, 0);
/// The token of the send in flight.
const SEND: u64 = 1;
/// The token of the posted receive.
const RECV: u64 = 2;

/// Message mode of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgMode {
    /// fi_send / fi_recv.
    Msg,
    /// fi_tsend / fi_trecv with one tag.
    Tagged,
}

/// A ping-pong channel: sends wait for their completion (or are injected), one receive stays
/// posted. Buffers are host memory, or device memory with host staging copies (`B`).
pub struct MsgChannel<B: HostStaged = HostBuffer> {
    // The path first: its endpoint closes (and its slots release the regions) before the
    // regions go.
    path: DataPath,
    tx: MemoryRegion<B>,
    rx: MemoryRegion<B>,
    mode: MsgMode,
    inject_size: usize,
    timeout: Duration,
    recv_posted: bool,
    done: Completions,
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
        let tx = HostBuffer::new(max_size).map_err(buffer_error)?;
        let rx = HostBuffer::new(max_size).map_err(buffer_error)?;
        MsgChannel::over(conn, tx, rx, mode, inject, timeout)
    }
}

impl<B: HostStaged> MsgChannel<B> {
    /// A channel over the given send and receive buffers (of equal length), both registered
    /// with the connection's domain; device memory is never injected (fi_inject copies host
    /// bytes).
    pub fn over(
        conn: Connection,
        tx: B,
        rx: B,
        mode: MsgMode,
        inject: bool,
        timeout: Duration,
    ) -> Result<MsgChannel<B>> {
        let tx = MemoryRegion::register(&conn.domain, tx, caps::SEND)?;
        let rx = MemoryRegion::register(&conn.domain, rx, caps::RECV)?;
        for mr in [&tx, &rx] {
            mr.bind_endpoint(&conn.ep, &conn.info)?;
        }
        let inject_size = if inject && !B::STAGED {
            conn.info.view().inject_size()
        } else {
            0
        };
        Ok(MsgChannel {
            path: DataPath::new(conn),
            tx,
            rx,
            mode,
            inject_size,
            timeout,
            recv_posted: false,
            done: Completions::default(),
        })
    }

    /// Closes the endpoint and the registrations and hands the send and receive buffers
    /// back; a buffer an operation may still reach is left leaked instead (None).
    pub fn into_buffers(self) -> (Option<B>, Option<B>) {
        // The endpoint closes first: its posted receive no longer reaches the bytes.
        drop(self.path);
        (self.tx.into_buffer(), self.rx.into_buffer())
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        self.path.connection()
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
        let (rx, mode) = (&mut self.rx, self.mode);
        let len = rx.len();
        until_posted(
            &mut self.path,
            &mut self.done,
            "room to post a receive",
            self.timeout,
            |p| {
                let local = rx.slice_mut(0, len).ok_or_else(no_room)?;
                match mode {
                    MsgMode::Msg => p.recv(local, RECV),
                    MsgMode::Tagged => p.trecv(local, DATA_TAG, 0, RECV),
                }
            },
        )?;
        self.recv_posted = true;
        Ok(())
    }

    /// Sends the first `len` bytes of the send buffer and returns when it may be reused.
    #[inline]
    pub fn send(&mut self, len: usize) -> Result<()> {
        let buf = self.tx.buf_mut().ok_or_else(busy)?;
        if len > buf.len() {
            return Err(FabricError::Invalid(format!(
                "message of {len} bytes exceeds the {}-byte buffer",
                buf.len()
            )));
        }
        // Device memory: the host staging copy, if written since, goes to the device first.
        buf.push(len).map_err(staging_error)?;
        let local = self.tx.slice(0, len).ok_or_else(no_room)?;
        let (path, done, mode, timeout) = (&mut self.path, &mut self.done, self.mode, self.timeout);
        if len <= self.inject_size {
            // Injected: the provider copied the bytes, and no completion follows.
            return until_posted(
                path,
                done,
                "room to inject a message",
                timeout,
                |p| match mode {
                    MsgMode::Msg => p.inject(local),
                    MsgMode::Tagged => p.tinject(local, DATA_TAG),
                },
            );
        }
        until_posted(path, done, "room to send", timeout, |p| match mode {
            MsgMode::Msg => p.send(local, SEND),
            MsgMode::Tagged => p.tsend(local, DATA_TAG, SEND),
        })?;
        done.wait(path, Queue::Tx, SEND, "a send completion", timeout)?;
        Ok(())
    }

    /// Busy-polls until the posted receive completes; returns its length.
    #[inline]
    pub fn wait_recv(&mut self) -> Result<usize> {
        if !self.recv_posted {
            return Err(FabricError::Invalid("no receive posted".into()));
        }
        let n = self.done.wait(
            &mut self.path,
            Queue::Rx,
            RECV,
            "a message from the peer",
            self.timeout,
        )?;
        self.recv_posted = false;
        // Device memory with a staging copy (--verify): the message comes to the host side.
        let buf = self.rx.buf_mut().ok_or_else(busy)?;
        buf.pull(n).map_err(staging_error)?;
        Ok(n)
    }

    /// The send buffer (for device memory its host staging copy), to fill before
    /// [`send`](Self::send).
    pub fn send_buf(&mut self) -> &mut [u8] {
        host_mut(&mut self.tx)
    }

    /// The receive buffer (for device memory its host staging copy) while no receive is
    /// posted into it (empty otherwise).
    pub fn received(&self) -> &[u8] {
        host(&self.rx)
    }
}
