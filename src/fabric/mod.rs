//! The safe libfabric layer: every `unsafe` call into libfabric lives under this module.
#![warn(missing_docs)]

mod channel;
mod connect;
mod cq;
mod domain;
mod endpoint;
mod error;
mod info;
mod mr;
mod path;
mod peer_name;
mod rma;
mod rma_channel;
pub(crate) mod signals;

pub use channel::{LocalBuf, MsgChannel, MsgMode};
pub use connect::{connect, domains_offered, select_info, Connection, EndpointSpec};
pub use cq::{AddressVector, CmEvent, CompletionQueue, CqEntry, EventQueue};
pub use domain::{Domain, Fabric};
pub use endpoint::{bind, Enabled, Endpoint, FiAddr, Opened, PassiveEndpoint};
pub use error::{strerror, FabricError, Result};
pub use info::{
    available_providers, caps, mr_mode, runtime_version, EndpointType, Hints, Info, InfoList,
    InfoRef,
};
pub use mr::{LocalSlice, LocalSliceMut, MemoryRegion, RegMode, RemoteRegion, RemoteSlice};
pub use path::{DataPath, Done};
pub use peer_name::PeerName;
pub use rma::cq_flags;
pub use rma_channel::{RmaChannel, RmaPingPongOp};

/// FI_ADDR_UNSPEC: no particular peer.
pub fn addr_unspec() -> FiAddr {
    libfabric_sys::fi_addr_unspec()
}
