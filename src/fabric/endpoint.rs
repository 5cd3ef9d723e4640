//! Endpoints (RDM and MSG) and passive endpoints; their posts go through
//! [`DataPath`](super::DataPath).

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use libfabric_sys as sys;

use super::cq::{AddressVector, AvInner, CompletionQueue, CqInner, EqInner, EventQueue};
use super::domain::{close_fid, Domain, DomainInner, Fabric, FabricInner};
use super::error::{check, opened, Result};
use super::info::Info;
use super::peer_name::PeerName;

/// Peer address handle (fi_addr_t).
pub type FiAddr = sys::fi_addr_t;

/// Bind flags for [`Endpoint::bind_cq`].
pub mod bind {
    use libfabric_sys as sys;
    /// Completions of sends and RMA initiated here.
    pub const TRANSMIT: u64 = sys::FI_TRANSMIT as u64;
    /// Completions of receives (and remote CQ data).
    pub const RECV: u64 = sys::FI_RECV as u64;
    /// Only operations posted with FI_COMPLETION generate entries.
    pub const SELECTIVE_COMPLETION: u64 = sys::FI_SELECTIVE_COMPLETION;
}

/// Reads an fid's name (fi_getname).
fn getname(fid: *mut sys::fid, call: &'static str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let mut len = buf.len();
    // SAFETY: buf has len bytes; fid is live.
    let mut ret = unsafe { sys::fi_getname(fid, buf.as_mut_ptr() as *mut libc::c_void, &mut len) };
    if ret == -(sys::FI_ETOOSMALL as i32) {
        buf.resize(len, 0);
        // SAFETY: as above, with the size the provider asked for.
        ret = unsafe { sys::fi_getname(fid, buf.as_mut_ptr() as *mut libc::c_void, &mut len) };
    }
    check(call, ret)?;
    buf.truncate(len);
    Ok(buf)
}

/// An endpoint's state: opened, so it takes bindings (no posts yet).
pub struct Opened;
/// An endpoint's state: enabled, so it takes posts (no more bindings).
pub struct Enabled;

/// The handle and what it is bound to; closed once, when the endpoint goes.
struct EpInner {
    raw: NonNull<sys::fid_ep>,
    _domain: Arc<DomainInner>,
    _cqs: Vec<Arc<CqInner>>,
    _av: Option<Arc<AvInner>>,
    _eq: Option<Arc<EqInner>>,
}

impl Drop for EpInner {
    fn drop(&mut self) {
        // SAFETY: raw is live; CQs, AV and EQ it is bound to are held by this struct until after.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "endpoint");
    }
}

/// A data endpoint, bound to its completion queues and address vector or event queue.
///
/// The state is in the type: [`Endpoint::open`] gives an `Endpoint<Opened>`, which takes the
/// bindings; [`enable`](Endpoint::enable) turns it into an `Endpoint<Enabled>` (the default),
/// the only kind that connects, accepts and posts, so neither a post before fi_enable nor a
/// binding after it can be written.
pub struct Endpoint<S = Enabled> {
    inner: EpInner,
    _state: PhantomData<S>,
}

// SAFETY: an endpoint is driven by one thread at a time (FI_THREAD_DOMAIN or safer).
unsafe impl<S> Send for Endpoint<S> {}

impl<S> Endpoint<S> {
    /// The endpoint's address as peers insert it (fi_getname).
    pub fn name(&self) -> Result<Vec<u8>> {
        // SAFETY: raw is live.
        getname(unsafe { &mut (*self.inner.raw.as_ptr()).fid }, "fi_getname")
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *mut sys::fid_ep {
        self.inner.raw.as_ptr()
    }
}

impl Endpoint<Opened> {
    /// Opens an endpoint (fi_endpoint) from an info entry, not yet bound or enabled.
    pub fn open(domain: &Domain, info: &Info) -> Result<Endpoint<Opened>> {
        let mut raw: *mut sys::fid_ep = std::ptr::null_mut();
        // SAFETY: domain and info are live; raw receives a handle we close in Drop.
        let ret = unsafe {
            sys::fi_endpoint(
                domain.inner.raw.as_ptr(),
                info.as_raw(),
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        let raw = opened("fi_endpoint", ret, raw)?;
        Ok(Endpoint {
            inner: EpInner {
                raw,
                _domain: domain.inner.clone(),
                _cqs: Vec::new(),
                _av: None,
                _eq: None,
            },
            _state: PhantomData,
        })
    }

    /// Binds a completion queue for transmit and/or receive completions (`bind::*`).
    pub fn bind_cq(&mut self, cq: &CompletionQueue, flags: u64) -> Result<()> {
        // SAFETY: both handles are live; we keep the CQ alive as long as the endpoint.
        let ret =
            unsafe { sys::fi_ep_bind(self.as_raw(), &mut (*cq.inner.raw.as_ptr()).fid, flags) };
        check("fi_ep_bind(cq)", ret)?;
        self.inner._cqs.push(cq.inner.clone());
        Ok(())
    }

    /// Binds the address vector of an RDM endpoint.
    pub fn bind_av(&mut self, av: &AddressVector) -> Result<()> {
        // SAFETY: both handles are live; we keep the AV alive as long as the endpoint.
        let ret = unsafe { sys::fi_ep_bind(self.as_raw(), &mut (*av.inner.raw.as_ptr()).fid, 0) };
        check("fi_ep_bind(av)", ret)?;
        self.inner._av = Some(av.inner.clone());
        Ok(())
    }

    /// Binds the event queue of a MSG endpoint.
    pub fn bind_eq(&mut self, eq: &EventQueue) -> Result<()> {
        // SAFETY: both handles are live; we keep the EQ alive as long as the endpoint.
        let ret = unsafe { sys::fi_ep_bind(self.as_raw(), &mut (*eq.inner.raw.as_ptr()).fid, 0) };
        check("fi_ep_bind(eq)", ret)?;
        self.inner._eq = Some(eq.inner.clone());
        Ok(())
    }

    /// Enables the endpoint (fi_enable): from here it takes posts, no more bindings.
    pub fn enable(self) -> Result<Endpoint<Enabled>> {
        // SAFETY: raw is live.
        check("fi_enable", unsafe { sys::fi_enable(self.as_raw()) })?;
        Ok(Endpoint {
            inner: self.inner,
            _state: PhantomData,
        })
    }
}

impl Endpoint<Enabled> {
    /// Starts connecting a MSG endpoint to a passive endpoint's name.
    pub fn connect(&self, peer: &PeerName) -> Result<()> {
        // SAFETY: peer holds an address of the provider's format and length
        // (PeerName::check); raw is live.
        let ret = unsafe {
            sys::fi_connect(
                self.as_raw(),
                peer.as_bytes().as_ptr() as *const libc::c_void,
                std::ptr::null(),
                0,
            )
        };
        check("fi_connect", ret)
    }

    /// Accepts the connection request this endpoint was opened for.
    pub fn accept(&self) -> Result<()> {
        // SAFETY: raw is live.
        check("fi_accept", unsafe {
            sys::fi_accept(self.as_raw(), std::ptr::null(), 0)
        })
    }
}

/// A passive (listening) endpoint for MSG connections.
pub struct PassiveEndpoint {
    raw: NonNull<sys::fid_pep>,
    _fabric: Arc<FabricInner>,
    _eq: Option<Arc<EqInner>>,
}

// SAFETY: used by one thread at a time.
unsafe impl Send for PassiveEndpoint {}

impl Drop for PassiveEndpoint {
    fn drop(&mut self) {
        // SAFETY: raw is live and closed once; its EQ is held until after.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "passive endpoint");
    }
}

impl PassiveEndpoint {
    /// Opens a passive endpoint, binds its event queue and starts listening.
    pub fn listen(fabric: &Fabric, info: &Info, eq: &EventQueue) -> Result<PassiveEndpoint> {
        let mut raw: *mut sys::fid_pep = std::ptr::null_mut();
        // SAFETY: fabric and info are live; raw receives a handle we close in Drop.
        let ret = unsafe {
            sys::fi_passive_ep(
                fabric.inner.raw.as_ptr(),
                info.as_raw(),
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        let raw = opened("fi_passive_ep", ret, raw)?;
        let mut pep = PassiveEndpoint {
            raw,
            _fabric: fabric.inner.clone(),
            _eq: None,
        };
        // SAFETY: both handles are live; the EQ is kept alive by pep.
        let ret =
            unsafe { sys::fi_pep_bind(pep.raw.as_ptr(), &mut (*eq.inner.raw.as_ptr()).fid, 0) };
        check("fi_pep_bind", ret)?;
        pep._eq = Some(eq.inner.clone());
        // SAFETY: raw is live and bound.
        check("fi_listen", unsafe { sys::fi_listen(pep.raw.as_ptr()) })?;
        Ok(pep)
    }

    /// The address peers connect to.
    pub fn name(&self) -> Result<Vec<u8>> {
        // SAFETY: raw is live.
        getname(unsafe { &mut (*self.raw.as_ptr()).fid }, "fi_getname(pep)")
    }
}
