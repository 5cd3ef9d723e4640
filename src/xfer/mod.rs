//! The KV-sized transfer protocol above the safe layers, shared by every backend: the
//! operation, the target's events, the set-up times, the typed region offer, and the pair of
//! traits the transfer loop (`bench::xfer`) drives; one initiator end and one target end per
//! backend implement them directly.
#![warn(missing_docs)]

pub mod libfabric;
pub mod rails;
pub mod tag;
pub mod ucx;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mem::SharedRegion;

/// The operation that moves a transfer's chunks, whichever library carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XferOp {
    /// The initiator writes into the target's memory (libfabric writedata, UCX put).
    Write,
    /// The initiator reads from the target's memory (libfabric read, UCX get).
    Read,
    /// Tagged sends into receives the target posts at each chunk's place.
    Send,
}

impl XferOp {
    /// The name in results and fingerprints.
    pub fn name(self) -> &'static str {
        match self {
            XferOp::Write => "write",
            XferOp::Read => "read",
            XferOp::Send => "send",
        }
    }
}

/// A remote event the target sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetEvent {
    /// A chunk of the transfer landed.
    Data(u32),
    /// The initiator says the transfer has this many chunks.
    Notify {
        /// Transfer index.
        transfer: u32,
        /// Chunks to count.
        chunks: u64,
    },
}

/// Set-up costs of one end, nanoseconds: connection, first registration, a second one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetupTimes {
    /// Connection set-up (address exchange and endpoint creation).
    pub connect_ns: u64,
    /// Registering the first region.
    pub registration_first_ns: u64,
    /// Registering the same region again (a cache hit where the library caches).
    pub registration_cached_ns: u64,
    /// How the regions were registered, where the library has a choice (libfabric: host,
    /// hmem or dmabuf).
    pub registration: Option<&'static str>,
}

/// The target's regions, one per transfer, in the form its backend reaches them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", content = "regions", rename_all = "lowercase")]
pub enum RegionOffer {
    /// libfabric: address (or offset) and key of each registered region.
    Libfabric(Vec<crate::fabric::RemoteRegion>),
    /// libfabric over several rails: each rail's regions, in rail order.
    LibfabricRails(Vec<Vec<crate::fabric::RemoteRegion>>),
    /// UCX: address, length and packed remote key of each mapped region.
    Ucx(Vec<ucx::protocol::RemoteRegion>),
}

/// Errors of a transfer end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XferError {
    /// libfabric failed.
    #[error(transparent)]
    Fabric(crate::fabric::FabricError),
    /// UCX failed.
    #[error(transparent)]
    Ucx(crate::ucx::UcxError),
    /// An end, or the library under it, waited longer than the run allows.
    #[error("timed out after {:.1} s waiting for {what}", after.as_secs_f64())]
    Timeout {
        /// What did not arrive.
        what: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The peer's offer does not fit this end (another backend, or too few regions).
    #[error("the target's region offer: {0}")]
    Offer(String),
    /// The target end this thread also drives stopped the transfer (its own error says why).
    #[error("the target end driven by the same thread stopped the transfer")]
    PairedTarget,
    /// A chunk the loop asked for does not fit the region of its transfer.
    #[error(
        "chunk {chunk} of transfer {transfer} ({len} bytes at {offset}) lies outside its \
         {region}-byte region"
    )]
    ChunkOutside {
        /// Transfer index.
        transfer: u32,
        /// Chunk index within the transfer.
        chunk: u32,
        /// Offset of the chunk within the transfer.
        offset: usize,
        /// Bytes of the chunk.
        len: usize,
        /// Bytes of the transfer's region.
        region: usize,
    },
}

impl XferError {
    /// Chunk `chunk` of `transfer`, `len` bytes at `offset`, lies outside a `region`-byte region.
    pub fn chunk_outside(
        transfer: u32,
        chunk: u32,
        offset: usize,
        len: usize,
        region: usize,
    ) -> XferError {
        XferError::ChunkOutside {
            transfer,
            chunk,
            offset,
            len,
            region,
        }
    }
}

impl From<crate::fabric::FabricError> for XferError {
    /// A libfabric time-out becomes the transfer's own [`XferError::Timeout`].
    fn from(e: crate::fabric::FabricError) -> XferError {
        match e {
            crate::fabric::FabricError::Timeout { what, secs } => XferError::Timeout {
                what,
                after: Duration::from_secs_f64(secs),
            },
            e => XferError::Fabric(e),
        }
    }
}

impl From<crate::ucx::UcxError> for XferError {
    /// A UCX time-out becomes the transfer's own [`XferError::Timeout`].
    fn from(e: crate::ucx::UcxError) -> XferError {
        match e {
            crate::ucx::UcxError::Timeout { what, secs } => XferError::Timeout {
                what,
                after: Duration::from_secs_f64(secs),
            },
            e => XferError::Ucx(e),
        }
    }
}

/// What the initiator's side of the transfer loop needs from a transport.
pub trait XferInitiator {
    /// Posts chunk `chunk` of `transfer`: `len` bytes at `offset` of the transfer's region.
    /// Ok(false): the transport is busy; the loop polls and retries.
    fn post(
        &mut self,
        transfer: u32,
        chunk: u32,
        offset: usize,
        len: usize,
    ) -> Result<bool, XferError>;
    /// Appends the (transfer, chunk) of chunks completed locally since the last call.
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), XferError>;
    /// Tells the target how many chunks of `transfer` to count.
    fn notify(&mut self, transfer: u32, chunks: u64) -> Result<(), XferError>;
    /// Appends the transfers the target confirmed since the last call.
    fn poll_confirmed(&mut self, confirmed: &mut Vec<u32>) -> Result<(), XferError>;
}

/// What the target's side of the transfer loop needs from a transport.
pub trait XferTarget {
    /// Appends the remote events since the last call.
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), XferError>;
    /// Confirms a complete transfer to the initiator.
    fn confirm(&mut self, transfer: u32) -> Result<(), XferError>;
}

/// The library an end runs on, for recording what it chose.
pub enum Library<'a> {
    /// libfabric, with the provider's info.
    Libfabric(&'a crate::fabric::Info),
    /// UCX, with the context and the endpoint.
    Ucx(&'a crate::ucx::Context, &'a crate::ucx::Endpoint),
}

/// An initiator end, connected and registered.
pub trait InitiatorEnd: XferInitiator {
    /// Takes the target's region offer.
    fn set_remote(&mut self, offer: RegionOffer) -> Result<(), XferError>;
    /// The local buffer (every transfer back to back), while nothing is in flight.
    fn local_mut(&mut self) -> Option<&mut SharedRegion>;
    /// Completes what is still in flight (between iterations).
    fn drain(&mut self) -> Result<(), XferError>;
    /// The library this end runs on.
    fn library(&self) -> Library<'_>;
    /// What each rail carried since the last call (None: the end has one rail).
    fn take_rail_stats(&mut self) -> Option<Vec<rails::RailStats>> {
        None
    }
}

/// A target end, connected and registered.
pub trait TargetEnd: XferTarget {
    /// The regions as the initiator reaches them.
    fn offer(&self) -> Result<RegionOffer, XferError>;
    /// Region `i`, for filling and checking.
    fn region_mut(&mut self, i: usize) -> Option<&mut SharedRegion>;
    /// Posts the receives of a send-based iteration.
    fn arm_receives(&mut self, plan: &[(usize, usize)]) -> Result<(), XferError>;
}

#[cfg(test)]
mod tests;
