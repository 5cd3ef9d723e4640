//! Out-of-band set-up between the sides of a run: a TCP control channel between two sides,
//! and groups of N processes meeting through etcd.

pub mod etcd;
pub mod group;
pub mod launcher;
mod tcp;

pub use tcp::{query_about, About, BootstrapError, Fingerprint, Oob, OobListener, DEFAULT_PORT};
