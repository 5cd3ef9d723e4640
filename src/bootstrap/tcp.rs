//! The TCP control channel: the target listens, the initiator connects; they compare the run's
//! parameters, then exchange endpoint names and synchronise through length-prefixed frames.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod about;
mod error;
mod hellos;
pub use about::{query_about, About};
use about::{Query, ABOUT};
pub use error::BootstrapError;
use hellos::{Pending, Polled, MAX_PENDING};

/// The control port a target listens on when none is given.
pub const DEFAULT_PORT: u16 = 47590;

/// Largest frame: a longer message goes as several (see [`FRAME_MORE`]).
const MAX_FRAME: usize = 1 << 20;

/// Largest message, its frames together: an initiator's report carries every timed
/// iteration's sample (a `--duration` or `--iterations auto` run of small transfers holds
/// millions). The receiver grows its buffer only as the bytes arrive.
const MAX_MESSAGE: usize = 1 << 30;

/// The longest a connection may take to present kvxfer's hello before the target drops it
/// (a health check or a port scan) and waits on.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

type Result<T> = std::result::Result<T, BootstrapError>;

/// Control ports bound by this process, so that a connection to one is known to be a
/// one-process run (its peer is not another host).
static BOUND_HERE: std::sync::Mutex<Vec<SocketAddr>> = std::sync::Mutex::new(Vec::new());

fn bound_here() -> std::sync::MutexGuard<'static, Vec<SocketAddr>> {
    BOUND_HERE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The parameters two sides must agree on, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint(pub BTreeMap<String, String>);

impl Fingerprint {
    /// Adds a parameter.
    pub fn with(mut self, name: &str, value: impl ToString) -> Self {
        self.0.insert(name.to_string(), value.to_string());
        self
    }

    /// The first parameter that differs: (name, here, peer); the measurement (`bench`) first.
    pub(crate) fn first_difference(&self, peer: &Fingerprint) -> Option<(String, String, String)> {
        let mut names: Vec<&String> = self.0.keys().chain(peer.0.keys()).collect();
        names.sort_by_key(|n| (n.as_str() != BENCH, n.as_str()));
        names.dedup();
        let missing = "(not set)".to_string();
        names.into_iter().find_map(|n| {
            let a = self.0.get(n).unwrap_or(&missing);
            let b = peer.0.get(n).unwrap_or(&missing);
            (a != b).then(|| (n.clone(), a.clone(), b.clone()))
        })
    }
}

/// An initiator's first frame; fields past `proto` default, so a hello of another protocol
/// version is still read far enough to be told so.
#[derive(Serialize, Deserialize)]
struct Hello {
    #[serde(default)]
    kvxfer: String,
    proto: u32,
    #[serde(default)]
    params: Fingerprint,
}

/// The target's answer to a hello: ok, or the parameter (or protocol) that differs.
#[derive(Serialize, Deserialize)]
struct Verdict {
    ok: bool,
    #[serde(default)]
    param: String,
    #[serde(default)]
    target_value: String,
    #[serde(default)]
    initiator_value: String,
}

const PROTO: u32 = 1;

/// The verdict's parameter name when the control protocol itself differs.
const PROTO_PARAM: &str = "control protocol";

impl Verdict {
    fn ok() -> Verdict {
        Verdict {
            ok: true,
            param: String::new(),
            target_value: String::new(),
            initiator_value: String::new(),
        }
    }
}

/// The fingerprint parameter naming the measurement (the subcommand).
const BENCH: &str = "bench";

/// The error for a parameter that differs: another subcommand, the control protocol, or
/// another option.
fn mismatch(param: String, here: String, peer: String) -> BootstrapError {
    if param == PROTO_PARAM {
        return BootstrapError::Protocol(format!(
            "this side speaks version {here}, the peer {peer}: run one kvxfer release on both"
        ));
    }
    if param == BENCH {
        let cmd = |b: String| b.replace('_', "-");
        BootstrapError::OtherCommand {
            here: cmd(here),
            peer: cmd(peer),
        }
    } else {
        BootstrapError::Mismatch { param, here, peer }
    }
}

/// Frame kinds: data (a whole message, or its last part), the peer's failure message, and a
/// part of a longer message that frames of this kind continue until a data frame ends it.
/// Only a message over [`MAX_FRAME`] is split, which a peer without this kind refused whole.
const FRAME_DATA: u8 = 0;
const FRAME_FAILURE: u8 = 1;
const FRAME_MORE: u8 = 2;

/// A bound control port waiting for an initiator.
pub struct OobListener {
    listener: TcpListener,
    /// Connections accepted whose hello is still arriving.
    pending: std::sync::Mutex<Vec<Pending>>,
}

impl OobListener {
    /// Binds the control port (`ADDR:PORT`; port 0 picks a free one).
    pub fn bind(addr: SocketAddr) -> Result<OobListener> {
        let listener = TcpListener::bind(addr).map_err(|err| BootstrapError::Listen {
            addr: addr.to_string(),
            err,
        })?;
        if let Ok(a) = listener.local_addr() {
            bound_here().push(a);
        }
        Ok(OobListener {
            listener,
            pending: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Waits up to `timeout` for an initiator whose parameters equal ours. Every connection's
    /// hello is read side by side: connections that present none within a few seconds (health
    /// checks, port scans) are dropped; an initiator of another protocol or with other
    /// parameters is told which, and refused; the wait goes on either way.
    /// Connections whose hello is still arriving stay with the listener for its next accept
    /// (a target of several workers accepts once per worker).
    pub fn accept(&self, ours: &Fingerprint, timeout: Duration) -> Result<Oob> {
        let start = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut refused = Refused::default();
        self.listener.set_nonblocking(true)?;
        loop {
            while let Some((stream, peer)) = self.next_connection()? {
                if pending.len() == MAX_PENDING {
                    pending.remove(0);
                }
                if let Ok(p) = Pending::new(stream, peer) {
                    pending.push(p);
                }
            }
            let mut i = 0;
            while i < pending.len() {
                match pending[i].poll() {
                    Polled::Waiting => i += 1,
                    Polled::Gone => drop(pending.remove(i)),
                    Polled::Ready => {
                        let Some((stream, peer, body)) = pending.remove(i).into_hello() else {
                            continue;
                        };
                        if let Some(oob) =
                            Self::judge(stream, peer, &body, ours, timeout, &mut refused)
                        {
                            return Ok(oob);
                        }
                    }
                }
            }
            if start.elapsed() > timeout {
                return Err(BootstrapError::NoInitiator {
                    addr: self.local_addr().to_string(),
                    secs: timeout.as_secs_f64(),
                    refused: refused.summary(),
                });
            }
            crate::stop::check()?;
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The next TCP connection waiting, if any.
    fn next_connection(&self) -> Result<Option<(TcpStream, SocketAddr)>> {
        loop {
            match self.listener.accept() {
                Ok(c) => return Ok(Some(c)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                // A connection reset before it was accepted: take the next one.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads a hello and tells its sender the verdict: the connection when it is a kvxfer
    /// initiator of our protocol and parameters; None when it is no kvxfer hello (dropped) or
    /// when the protocol or a parameter differs (noted in `refused`, and the initiator told
    /// which).
    fn judge(
        stream: TcpStream,
        peer: SocketAddr,
        body: &[u8],
        ours: &Fingerprint,
        timeout: Duration,
        refused: &mut Refused,
    ) -> Option<Oob> {
        let Ok(hello) = serde_json::from_slice::<Hello>(body) else {
            if serde_json::from_slice::<Query>(body).is_ok_and(|q| q.query == ABOUT) {
                // Asked what we are (`kvxfer doctor --peer`): say it, and wait on.
                if let Ok(mut oob) = Oob::new(stream, timeout) {
                    let _ = oob.send_json(&About::this());
                }
            }
            return None;
        };
        let Ok(mut oob) = Oob::new(stream, timeout) else {
            return None;
        };
        let differs = if hello.proto != PROTO {
            let theirs = match hello.kvxfer.as_str() {
                "" => hello.proto.to_string(),
                v => format!("{} (kvxfer {v})", hello.proto),
            };
            Some((PROTO_PARAM.to_string(), PROTO.to_string(), theirs))
        } else {
            ours.first_difference(&hello.params)
        };
        let Some((param, here, theirs)) = differs else {
            // An initiator gone before its verdict is dropped like any stray connection.
            return oob.send_json(&Verdict::ok()).is_ok().then_some(oob);
        };
        // Said here before the initiator is told: whoever sees the initiator fail finds the
        // target's line already written.
        refused.note(peer, mismatch(param.clone(), here.clone(), theirs.clone()));
        // A sender gone before the verdict is still refused for what it sent.
        let _ = oob.send_json(&Verdict {
            ok: false,
            param,
            target_value: here,
            initiator_value: theirs,
        });
        None
    }
}

/// The initiators a target refused while it waited, for its warning and its time-out error.
#[derive(Default)]
struct Refused {
    count: usize,
    last: String,
}

impl Refused {
    /// Notes one refusal, and says it on stderr (the target goes on waiting).
    fn note(&mut self, peer: SocketAddr, e: BootstrapError) {
        self.count += 1;
        self.last = format!("{peer}: {e}");
        eprintln!("kvxfer: warning: refused an initiator from {}", self.last);
    }

    fn summary(&self) -> String {
        match self.count {
            0 => String::new(),
            1 => format!(" (refused one initiator, {})", self.last),
            n => format!(" (refused {n} initiators, the last {})", self.last),
        }
    }
}

impl Drop for OobListener {
    fn drop(&mut self) {
        if let Ok(a) = self.listener.local_addr() {
            bound_here().retain(|b| *b != a);
        }
    }
}

/// An established control connection; every wait on it ends after the run's time-out.
pub struct Oob {
    stream: TcpStream,
    timeout: Duration,
    /// The peer is a listener of this process (a one-process run).
    in_process: bool,
}

impl Oob {
    fn new(stream: TcpStream, timeout: Duration) -> Result<Oob> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout.max(Duration::from_millis(10))))?;
        let in_process = stream.peer_addr().is_ok_and(|p| bound_here().contains(&p));
        Ok(Oob {
            stream,
            timeout,
            in_process,
        })
    }

    /// Connects to a target at `HOST[:PORT]`, retrying until `timeout`, and compares parameters.
    pub fn connect(peer: &str, ours: &Fingerprint, timeout: Duration) -> Result<Oob> {
        let target = with_default_port(peer);
        let start = Instant::now();
        let mut last = String::from("no attempt");
        let stream = loop {
            crate::stop::check()?;
            let remaining = timeout.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(BootstrapError::Unreachable {
                    peer: target,
                    secs: timeout.as_secs_f64(),
                    last,
                });
            }
            let addrs: Vec<SocketAddr> = target
                .to_socket_addrs()
                .map_err(|_| BootstrapError::Resolve(target.clone()))?
                .collect();
            // The error of the attempt itself is kept: a second, diagnostic connection could
            // be the one a target that just started accepts, and it would fail on it.
            let mut connected = None;
            for a in &addrs {
                match TcpStream::connect_timeout(a, remaining.min(Duration::from_secs(2))) {
                    // Dropped, which frees the port for the target that is to bind it.
                    Ok(s) if connected_to_itself(&s) => {
                        last = format!("{a} answered with this very socket (nothing listens)")
                    }
                    Ok(s) => {
                        connected = Some(s);
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            match connected {
                Some(s) => break s,
                None => {
                    if addrs.is_empty() {
                        last = "no address".into();
                    }
                    std::thread::sleep(Duration::from_millis(50).min(remaining));
                }
            }
        };
        let mut oob = Oob::new(stream, timeout)?;
        oob.send_json(&Hello {
            kvxfer: env!("CARGO_PKG_VERSION").to_string(),
            proto: PROTO,
            params: ours.clone(),
        })?;
        let v: Verdict = oob.recv_json()?;
        if !v.ok {
            return Err(mismatch(v.param, v.initiator_value, v.target_value));
        }
        Ok(oob)
    }

    /// Our address on the control connection: the interface the fabric should use too.
    pub fn local_ip(&self) -> Result<IpAddr> {
        Ok(self.stream.local_addr()?.ip())
    }

    /// Writes one message of `kind`: one frame, or parts of at most [`MAX_FRAME`] bytes.
    fn write_frame(&mut self, kind: u8, bytes: &[u8]) -> Result<()> {
        if bytes.len() > MAX_MESSAGE {
            return Err(BootstrapError::Protocol(format!(
                "a message of {} bytes, over the limit of {MAX_MESSAGE}",
                bytes.len()
            )));
        }
        // An empty message is one empty frame.
        let parts: Vec<&[u8]> = match bytes.is_empty() {
            true => vec![bytes],
            false => bytes.chunks(MAX_FRAME).collect(),
        };
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let mut head = [0u8; 5];
            head[0] = if i == last { kind } else { FRAME_MORE };
            // At most MAX_FRAME bytes: fits in u32.
            head[1..].copy_from_slice(&(part.len() as u32).to_be_bytes());
            self.stream.write_all(&head)?;
            self.stream.write_all(part)?;
        }
        Ok(())
    }

    /// Sends one frame of data. If the peer has gone, the failure it reported (if any) is
    /// returned rather than the broken pipe.
    pub fn send_frame(&mut self, bytes: &[u8]) -> Result<()> {
        match self.write_frame(FRAME_DATA, bytes) {
            Ok(()) => Ok(()),
            Err(e) => {
                let until = Instant::now() + Duration::from_millis(200);
                loop {
                    match self.recv_frame_by(until) {
                        Ok(_) => continue,
                        Err(peer @ BootstrapError::PeerFailed(_)) => return Err(peer),
                        Err(_) => return Err(e),
                    }
                }
            }
        }
    }

    /// A frame when one has begun to arrive (read whole, waiting at most the run's time-out),
    /// else None at once; a peer that closed the connection or reported a failure is an error.
    pub fn try_recv_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let mut b = [0u8; 1];
        self.stream.set_nonblocking(true)?;
        let peeked = self.stream.peek(&mut b);
        self.stream.set_nonblocking(false)?;
        match peeked {
            Ok(0) => Err(BootstrapError::PeerFailed(
                "the peer closed the control connection".into(),
            )),
            Ok(_) => self.recv_frame().map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives one frame of data, waiting at most the run's time-out; a failure the peer
    /// reported comes back as an error.
    pub fn recv_frame(&mut self) -> Result<Vec<u8>> {
        self.recv_frame_by(Instant::now() + self.timeout)
    }

    /// [`recv_frame`](Self::recv_frame) that gives up at `deadline`, however slowly the bytes
    /// trickle in.
    fn recv_frame_by(&mut self, deadline: Instant) -> Result<Vec<u8>> {
        let (secs, here) = (self.timeout.as_secs_f64(), self.in_process);
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 5];
            read_exact_by(&mut self.stream, &mut head, deadline)
                .map_err(|e| gone(e, secs, here))?;
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > MAX_FRAME {
                return Err(BootstrapError::Protocol(format!("frame of {len} bytes")));
            }
            if message.len() + len > MAX_MESSAGE {
                return Err(BootstrapError::Protocol(format!(
                    "a message of more than {MAX_MESSAGE} bytes"
                )));
            }
            let start = message.len();
            message.resize(start + len, 0);
            read_exact_by(&mut self.stream, &mut message[start..], deadline)
                .map_err(|e| gone(e, secs, here))?;
            match head[0] {
                FRAME_MORE => continue,
                FRAME_DATA => return Ok(message),
                FRAME_FAILURE => {
                    return Err(BootstrapError::PeerFailed(
                        String::from_utf8_lossy(&message).into_owned(),
                    ))
                }
                k => return Err(BootstrapError::Protocol(format!("unknown frame kind {k}"))),
            }
        }
    }

    /// Sends a value as a JSON frame.
    pub fn send_json<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let bytes = serde_json::to_vec(v).map_err(|e| BootstrapError::Protocol(e.to_string()))?;
        self.send_frame(&bytes)
    }

    /// Receives a JSON frame.
    ///
    /// A frame that is plain text rather than JSON is the peer's failure report
    /// ([`report_failure`](Self::report_failure)) and comes back as [`BootstrapError::PeerFailed`].
    pub fn recv_json<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T> {
        self.recv_json_by(Instant::now() + self.timeout)
    }

    fn recv_json_by<T: for<'de> Deserialize<'de>>(&mut self, deadline: Instant) -> Result<T> {
        parse_json(&self.recv_frame_by(deadline)?)
    }

    /// Sends our bytes and returns the peer's (both sides call this).
    pub fn exchange(&mut self, ours: &[u8]) -> Result<Vec<u8>> {
        self.send_frame(ours)?;
        self.recv_frame()
    }

    /// Waits until both sides reach this point; an error on the peer's side is reported here.
    pub fn barrier(&mut self) -> Result<()> {
        self.send_frame(b"")?;
        self.recv_frame().map(|_| ())
    }

    /// Tells the peer we failed, so its next receive reports it instead of hanging.
    pub fn report_failure(&mut self, message: &str) {
        let msg = if message.is_empty() { "error" } else { message };
        let _ = self.write_frame(FRAME_FAILURE, msg.as_bytes());
    }
}

/// A JSON frame's value; plain text is the peer's failure report.
fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| match std::str::from_utf8(bytes) {
        Ok(text) if !text.trim_start().starts_with(['{', '[', '"']) => {
            BootstrapError::PeerFailed(text.to_string())
        }
        _ => BootstrapError::Protocol(e.to_string()),
    })
}

/// Longest single wait of a read: how soon a signal's request to stop is seen.
const READ_SLICE: Duration = Duration::from_millis(200);

/// Fills `buf` from `stream`, failing with `TimedOut` once `deadline` has passed, or with
/// `Interrupted` carrying [`crate::stop::Stopped`] once a signal asked the process to stop.
fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        if let Err(s) = crate::stop::check() {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, s));
        }
        stream.set_read_timeout(Some(left.clamp(Duration::from_millis(1), READ_SLICE)))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A failed read, as what it says about the peer (`secs`: the time-out waited;
/// `in_process`: the peer is this process's own target side).
fn gone(e: std::io::Error, secs: f64, in_process: bool) -> BootstrapError {
    if let Some(s) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<crate::stop::Stopped>())
    {
        return BootstrapError::Stopped(*s);
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BootstrapError::PeerFailed("the peer closed the control connection".into())
        }
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            BootstrapError::Silent { secs, in_process }
        }
        _ => BootstrapError::Io(e),
    }
}

/// `HOST` becomes `HOST:DEFAULT_PORT`; `HOST:PORT` and `[v6]:PORT` stay.
fn with_default_port(peer: &str) -> String {
    if peer.parse::<SocketAddr>().is_ok() {
        return peer.to_string();
    }
    if let Ok(ip) = peer.parse::<IpAddr>() {
        return SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    if peer.contains(':') {
        peer.to_string()
    } else {
        format!("{peer}:{DEFAULT_PORT}")
    }
}

/// Whether `s` is connected to itself: a connection to a local port in the ephemeral range
/// where nothing listens yet can be given that very port as its source, and TCP's
/// simultaneous open then joins the socket to itself (the default control port, 47590, lies
/// in Linux's ephemeral range).
fn connected_to_itself(s: &TcpStream) -> bool {
    matches!((s.local_addr(), s.peer_addr()), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests;
