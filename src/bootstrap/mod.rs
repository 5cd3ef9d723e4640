//! Out-of-band set-up between the two sides of a run.

mod tcp;

pub use tcp::{BootstrapError, Fingerprint, Oob, OobListener, DEFAULT_PORT};
