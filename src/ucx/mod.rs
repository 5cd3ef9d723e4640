//! The safe UCX (UCP) layer: every `unsafe` call into UCX lives under this module.
//!
//! Ownership enforces UCX's release order: a worker holds its context, an endpoint its worker,
//! a remote key its endpoint, a memory handle its context and its buffer.
//!
//! What `kvxfer ucx-perf` drives is [`TagChannel`] (tagged messages, a window of them in
//! flight, an acknowledgement); what the UCX backend of `xfer` drives (`crate::xfer::ucx`:
//! put, get or tagged send per chunk over mapped memory and unpacked remote keys, with
//! notifications and confirmations) posts through an [`OpTable`], which tracks operations
//! without borrowing the worker.
#![warn(missing_docs)]

mod capture;
mod channel;
mod context;
mod endpoint;
mod error;
mod memory;
mod ops;
mod peer;
mod worker;

pub use channel::{SlotSpec, TagChannel};
pub use context::{
    header_version, library_path, parse_resources, version, version_lacks, Context, Features,
    Resource,
};
pub use endpoint::{parse_lanes, Endpoint, RemoteKey, RemoteMemory, RemoteSlice};
pub use error::{status_string, Result, UcxError};
pub use memory::{MemHandle, MemHandleRef, MemoryType, UcxSlice, UcxSliceMut};
pub use ops::OpTable;
pub use peer::{check_packed_rkey, check_worker_address, MAX_WORKER_ADDRESS};
pub use worker::{RecvParams, Request, SendParams, Worker};

#[cfg(test)]
mod tests;
