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
pub(super) enum Polled {
    /// More bytes are due.
    Waiting,
    /// The connection closed, sent something that is no hello frame, or took too long.
    Gone,
    /// A whole hello frame: the stream (blocking again), the peer, the frame's body.
    Hello(TcpStream, SocketAddr, Vec<u8>),
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
    pub(super) fn poll(mut self) -> (Option<Pending>, Polled) {
        loop {
            let whole = 5 + self.body.unwrap_or(0);
            if self.buf.len() == whole {
                if self.body.is_some() {
                    return self.finish();
                }
                match self.head() {
                    Some(len) => self.body = Some(len),
                    None => return (None, Polled::Gone),
                }
                continue;
            }
            let mut chunk = vec![0u8; whole - self.buf.len()];
            match self.stream.read(&mut chunk) {
                Ok(0) => return (None, Polled::Gone),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let gone = Instant::now() > self.deadline;
                    return if gone {
                        (None, Polled::Gone)
                    } else {
                        (Some(self), Polled::Waiting)
                    };
                }
                Err(_) => return (None, Polled::Gone),
            }
        }
    }

    /// The body's length the head announces, or None when the head is no hello's (another
    /// kind, or too long).
    fn head(&self) -> Option<usize> {
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        (self.buf[0] == FRAME_DATA && len <= MAX_HELLO).then_some(len)
    }

    fn finish(self) -> (Option<Pending>, Polled) {
        if self.stream.set_nonblocking(false).is_err() {
            return (None, Polled::Gone);
        }
        let body = self.buf[5..].to_vec();
        (None, Polled::Hello(self.stream, self.peer, body))
    }
}
