//! Out-of-band set-up between the two sides of a run.

mod tcp;

pub use tcp::{BootstrapError, Fingerprint, Oob, OobListener, DEFAULT_PORT};

/// Out-of-band byte exchange: sends ours, returns the peer's (fabric addresses, UCX worker
/// addresses).
pub type Exchange<'a> = dyn FnMut(&[u8]) -> std::result::Result<Vec<u8>, String> + 'a;
