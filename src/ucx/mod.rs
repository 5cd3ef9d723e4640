//! The safe UCX (UCP) layer: every `unsafe` call into UCX lives under this module.
//!
//! Ownership enforces UCX's release order: a worker holds its context, an endpoint its worker,
//! a remote key its endpoint, a memory handle its context and its buffer.
//!
//! What `kvxfer ucx-perf` drives is [`TagChannel`] (tagged messages, a window of them in
//! flight, an acknowledgement). The UCX backend of `xfer` has its pieces here too: memory mapped
//! with a memory type ([`MemHandle`]; host now, CUDA once a device buffer exists), packed and
//! unpacked remote keys ([`RemoteKey`]), one-sided [`Endpoint::put`] / [`Endpoint::get`] and
//! [`Endpoint::flush`]; it needs only an implementation of the xfer loop's transport trait.

mod capture;
mod channel;
mod context;
mod endpoint;
mod error;
mod memory;
mod worker;

pub use channel::{SlotSpec, TagChannel};
pub use context::{parse_resources, version, Context, Features, Resource};
pub use endpoint::{parse_lanes, Endpoint};
pub use error::{status_string, Result, UcxError};
pub use memory::{MemHandle, MemHandleRef, MemoryType, RemoteKey};
pub use worker::{Request, Worker};

#[cfg(test)]
mod tests;
