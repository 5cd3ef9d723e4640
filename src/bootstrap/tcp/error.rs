//! What can go wrong on the control channel.

/// Errors of the control channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The control port could not be bound.
    #[error("cannot listen on {addr}: {err}")]
    Listen { addr: String, err: std::io::Error },
    /// The peer did not answer in time.
    #[error("no kvxfer target answered at {peer} within {secs:.1} s (last error: {last})")]
    Unreachable {
        peer: String,
        secs: f64,
        last: String,
    },
    /// No initiator of our parameters arrived in time (`refused`: those that differed).
    #[error("no kvxfer initiator connected to {addr} within {secs:.1} s{refused}")]
    NoInitiator {
        addr: String,
        secs: f64,
        refused: String,
    },
    /// The peer was started with other parameters.
    #[error("the peer was started with different parameters: {param} is {here} here but {peer} on the peer")]
    Mismatch {
        param: String,
        here: String,
        peer: String,
    },
    /// The peer runs another measurement (another subcommand).
    #[error("the peer runs `kvxfer {peer}`, this side `kvxfer {here}`: start both sides with the same subcommand and options")]
    OtherCommand { here: String, peer: String },
    /// The peer is not a kvxfer of a compatible version.
    #[error("the peer does not speak kvxfer's control protocol: {0}")]
    Protocol(String),
    /// The peer reported an error and gave up.
    #[error("the peer failed: {0}")]
    PeerFailed(String),
    /// The peer sent nothing for the whole time-out (stopped, hung or cut off; or, in a
    /// one-process run, this process's own target side still setting up).
    #[error("{}", silent_text(*secs, *in_process))]
    Silent { secs: f64, in_process: bool },
    /// The connection failed (the OS error in the message only, so it prints once).
    #[error("control connection: {0}")]
    Io(std::io::Error),
    /// The peer address could not be resolved.
    #[error("cannot resolve {0:?}")]
    Resolve(String),
    /// A signal asked the process to stop while it waited.
    #[error(transparent)]
    Stopped(#[from] crate::stop::Stopped),
}

impl From<std::io::Error> for BootstrapError {
    fn from(e: std::io::Error) -> Self {
        BootstrapError::Io(e)
    }
}

/// The message of a peer silent for `secs` (`in_process`: the target side of this process).
fn silent_text(secs: f64, in_process: bool) -> String {
    if in_process {
        format!(
            "the target side of this one-process run sent nothing on the control connection \
             for {secs:.1} s (--timeout): its set-up took longer than that on this host; raise \
             --timeout or lower --concurrency"
        )
    } else {
        format!(
            "the peer sent nothing on the control connection for {secs:.1} s (--timeout): it \
             stopped, hung or was cut off"
        )
    }
}
