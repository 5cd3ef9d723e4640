//! Hellos read side by side: every connection a target accepts is read without blocking, so
//! idle ones (port scans, health checks, stopped initiators) cannot delay the real initiator.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use super::{FRAME_DATA, HELLO_TIMEOUT};

/// Connections read for a hello at once; past this, the oldest is dropped for the newest.
pub(super) const MAX_PENDING: usize = 64;

/// Largest hello accepted: a fingerprint is a few hundred bytes.
pub(super) const MAX_HELLO: usize = 64 << 10;

/// A connection whose hello frame is still arriving.
pub(super) struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    /// The frame's 5-byte head, then its body.
    buf: Vec<u8>,
    /// The body's length, once the head is read.
    body: Option<usize>,
    deadline: Instant,
}

/// What reading a pending connection gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Polled {
    /// More bytes are due.
    Waiting,
    /// The connection closed, sent something that is no hello frame, or took too long.
    Gone,
    /// A whole hello frame is in ([`Pending::into_hello`]).
    Ready,
}

impl Pending {
    /// A connection just accepted, read without blocking from now on.
    pub(super) fn new(stream: TcpStream, peer: SocketAddr) -> std::io::Result<Pending> {
        stream.set_nonblocking(true)?;
        Ok(Pending {
            stream,
            peer,
            buf: Vec::with_capacity(5),
            body: None,
            deadline: Instant::now() + HELLO_TIMEOUT,
        })
    }

    /// Reads what has arrived, never more than the hello frame.
    pub(super) fn poll(&mut self) -> Polled {
        loop {
            let whole = 5 + self.body.unwrap_or(0);
            if self.buf.len() == whole {
                if self.body.is_some() {
                    return Polled::Ready;
                }
                match self.head() {
                    Some(len) => self.body = Some(len),
                    None => return Polled::Gone,
                }
                continue;
            }
            let mut chunk = vec![0u8; whole - self.buf.len()];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Polled::Gone,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return if Instant::now() > self.deadline {
                        Polled::Gone
                    } else {
                        Polled::Waiting
                    };
                }
                Err(_) => return Polled::Gone,
            }
        }
    }

    /// The body's length the head announces, or None when the head is no hello's (another
    /// kind, or too long).
    fn head(&self) -> Option<usize> {
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        (self.buf[0] == FRAME_DATA && len <= MAX_HELLO).then_some(len)
    }

    /// A [`Ready`](Polled::Ready) connection: its stream (blocking again), its peer, the
    /// hello's body; None when the stream cannot block again.
    pub(super) fn into_hello(self) -> Option<(TcpStream, SocketAddr, Vec<u8>)> {
        self.stream.set_nonblocking(false).ok()?;
        Some((self.stream, self.peer, self.buf[5..].to_vec()))
    }
}
