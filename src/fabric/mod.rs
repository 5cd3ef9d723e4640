//! The safe libfabric layer: every `unsafe` call into libfabric lives under this module, and
//! every operation is posted through a [`DataPath`].
#![warn(missing_docs)]

mod connect;
mod cq;
mod domain;
mod endpoint;
mod error;
mod info;
mod mr;
mod path;
mod peer_name;
pub(crate) mod signals;

pub use connect::{connect, domains_offered, select_info, Connection, EndpointSpec};
pub use cq::{AddressVector, CmEvent, CompletionQueue, CqEntry, EventQueue};
pub use domain::{Domain, Fabric};
pub use endpoint::{bind, Enabled, Endpoint, FiAddr, Opened, PassiveEndpoint};
pub use error::{strerror, FabricError, Result};
pub use info::{
    available_providers, caps, library_path, load, mr_mode, runtime_version, EndpointType, Hints,
    Info, InfoList, InfoRef,
};
pub use mr::{LocalSlice, LocalSliceMut, MemoryRegion, RegMode, RemoteRegion, RemoteSlice};
pub use path::{DataPath, Done};
pub use peer_name::PeerName;

/// FI_ADDR_UNSPEC: no particular peer.
pub fn addr_unspec() -> FiAddr {
    libfabric_sys::fi_addr_unspec()
}
