//! The safe UCX (UCP) layer: every `unsafe` call into UCX lives under this module.
//!
//! Ownership enforces UCX's release order: a worker holds its context, an endpoint its worker,
//! a remote key its endpoint, a memory handle its context and its buffer.
//!
//! Every operation is posted through an [`OpTable`]: bounds-checked slices of mapped memory
//! (or messages the table copies), tracked under the caller's tokens without borrowing the
//! worker, each holding what it reaches until it settles. The UCX backend of `xfer`
//! (`crate::xfer::ucx`) and the tag channel of `kvxfer ucx-perf` (`crate::channel`) post
//! through it.
#![warn(missing_docs)]

mod capture;
mod context;
mod endpoint;
mod error;
mod memory;
mod ops;
mod peer;
mod worker;

pub use context::{
    header_version, library_path, load, parse_resources, version, version_lacks, Context, Features,
    Resource,
};
pub use endpoint::{parse_lanes, Endpoint, RemoteKey, RemoteMemory, RemoteSlice};
pub use error::{status_string, Result, UcxError};
pub use memory::{MemHandle, MemHandleRef, MemoryType, UcxSlice, UcxSliceMut};
pub use ops::OpTable;
pub use peer::{check_packed_rkey, check_worker_address, MAX_WORKER_ADDRESS};
pub use worker::Worker;

#[cfg(test)]
mod tests;
