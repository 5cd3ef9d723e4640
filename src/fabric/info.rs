//! fi_getinfo queries: hints in, an owned list of matching providers out.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ptr::NonNull;

use libfabric_sys as sys;

use super::error::{call_error, FabricError, Result};

/// Endpoint types kvxfer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointType {
    /// Reliable datagram: connectionless, addressed through an address vector.
    Rdm,
    /// Connected message endpoint.
    Msg,
}

impl EndpointType {
    fn raw(self) -> sys::fi_ep_type {
        match self {
            EndpointType::Rdm => sys::FI_EP_RDM,
            EndpointType::Msg => sys::FI_EP_MSG,
        }
    }

    /// The name fi_info prints for this type.
    pub fn fi_name(self) -> &'static str {
        match self {
            EndpointType::Rdm => "FI_EP_RDM",
            EndpointType::Msg => "FI_EP_MSG",
        }
    }
}

/// Capability bits, as u64 (bindgen types some of them narrower).
pub mod caps {
    use libfabric_sys as sys;
    /// Message send/receive.
    pub const MSG: u64 = sys::FI_MSG as u64;
    /// Tagged send/receive.
    pub const TAGGED: u64 = sys::FI_TAGGED as u64;
    /// RMA read/write.
    pub const RMA: u64 = sys::FI_RMA as u64;
    /// Device (GPU) memory.
    pub const HMEM: u64 = sys::FI_HMEM;
    /// Local and remote access flags for RMA.
    pub const READ: u64 = sys::FI_READ as u64;
    /// Local write access.
    pub const WRITE: u64 = sys::FI_WRITE as u64;
    /// Remote read access.
    pub const REMOTE_READ: u64 = sys::FI_REMOTE_READ as u64;
    /// Remote write access.
    pub const REMOTE_WRITE: u64 = sys::FI_REMOTE_WRITE as u64;
    /// Send capability.
    pub const SEND: u64 = sys::FI_SEND as u64;
    /// Receive capability.
    pub const RECV: u64 = sys::FI_RECV as u64;
}

/// Memory-registration mode bits.
pub mod mr_mode {
    use libfabric_sys as sys;
    /// Buffers must be registered locally and their descriptor passed.
    pub const LOCAL: u32 = sys::FI_MR_LOCAL;
    /// RMA addresses are virtual addresses.
    pub const VIRT_ADDR: u32 = sys::FI_MR_VIRT_ADDR;
    /// Only allocated memory may be registered.
    pub const ALLOCATED: u32 = sys::FI_MR_ALLOCATED;
    /// The provider chooses keys.
    pub const PROV_KEY: u32 = sys::FI_MR_PROV_KEY;
    /// Regions must be bound to an endpoint and enabled.
    pub const ENDPOINT: u32 = sys::FI_MR_ENDPOINT;
    /// Device memory must be registered.
    pub const HMEM: u32 = sys::FI_MR_HMEM;
    /// The basic map mode fabtests asks for.
    pub const BASIC_MAP: u32 = VIRT_ADDR | ALLOCATED | PROV_KEY;

    /// Names of the bits set in `mode`.
    pub fn names(mode: u32) -> Vec<&'static str> {
        let all = [
            (LOCAL, "FI_MR_LOCAL"),
            (sys::FI_MR_RAW, "FI_MR_RAW"),
            (VIRT_ADDR, "FI_MR_VIRT_ADDR"),
            (ALLOCATED, "FI_MR_ALLOCATED"),
            (PROV_KEY, "FI_MR_PROV_KEY"),
            (sys::FI_MR_MMU_NOTIFY, "FI_MR_MMU_NOTIFY"),
            (sys::FI_MR_RMA_EVENT, "FI_MR_RMA_EVENT"),
            (ENDPOINT, "FI_MR_ENDPOINT"),
            (HMEM, "FI_MR_HMEM"),
            (sys::FI_MR_COLLECTIVE, "FI_MR_COLLECTIVE"),
        ];
        all.iter()
            .filter(|(bit, _)| mode & bit != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// What to ask fi_getinfo for.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// Provider name (`tcp`, `shm`, `efa`, ...); a layered provider matches its core name.
    pub provider: Option<String>,
    /// Endpoint type.
    pub ep_type: Option<EndpointType>,
    /// Required capabilities (`caps::*`).
    pub caps: u64,
    /// Memory-registration modes the caller handles (`mr_mode::*`).
    pub mr_mode: u32,
    /// Domain name (`lo`, `eth0`, ...).
    pub domain: Option<String>,
    /// Node (host or IP) to resolve.
    pub node: Option<String>,
    /// Service (port) to resolve.
    pub service: Option<String>,
    /// Resolve node/service as the local (source) address.
    pub source: bool,
    /// Ask for FI_THREAD_DOMAIN (each endpoint driven by one thread).
    pub thread_domain: bool,
    /// Mode bits the caller supports (FI_CONTEXT, ...).
    pub mode: u64,
}

impl Hints {
    /// Hints for a provider and endpoint type, nothing else.
    pub fn new(provider: Option<&str>, ep_type: EndpointType) -> Self {
        Hints {
            provider: provider.map(str::to_string),
            ep_type: Some(ep_type),
            ..Default::default()
        }
    }
}

/// fi_allocinfo'd hints, freed on drop.
struct RawHints(NonNull<sys::fi_info>);

impl Drop for RawHints {
    fn drop(&mut self) {
        // SAFETY: allocated by fi_allocinfo (fi_dupinfo(NULL)); strings set with strdup.
        unsafe { sys::fi_freeinfo(self.0.as_ptr()) }
    }
}

fn strdup(s: &str) -> Result<*mut libc::c_char> {
    let c = CString::new(s).map_err(|_| FabricError::Invalid(format!("NUL byte in {s:?}")))?;
    // SAFETY: c is a valid NUL-terminated string; strdup's copy is freed by fi_freeinfo.
    let p = unsafe { libc::strdup(c.as_ptr()) };
    if p.is_null() {
        return Err(FabricError::Invalid("out of memory".into()));
    }
    Ok(p)
}

impl RawHints {
    fn build(h: &Hints) -> Result<RawHints> {
        // Every use of libfabric starts with hints: here it is loaded, or says why not.
        load()?;
        // SAFETY: fi_allocinfo returns a zeroed fi_info with all attribute structs allocated.
        let raw = NonNull::new(unsafe { sys::fi_allocinfo() })
            .ok_or_else(|| FabricError::Invalid("fi_allocinfo returned NULL".into()))?;
        let hints = RawHints(raw);
        // SAFETY: raw and its attribute pointers were allocated by fi_allocinfo and are ours.
        unsafe {
            let info = &mut *raw.as_ptr();
            info.caps = h.caps;
            info.mode = h.mode;
            (*info.domain_attr).mr_mode = h.mr_mode as i32;
            if h.thread_domain {
                (*info.domain_attr).threading = sys::FI_THREAD_DOMAIN;
            }
            if let Some(t) = h.ep_type {
                (*info.ep_attr).type_ = t.raw();
            }
            if let Some(p) = &h.provider {
                (*info.fabric_attr).prov_name = strdup(p)?;
            }
            if let Some(d) = &h.domain {
                (*info.domain_attr).name = strdup(d)?;
            }
        }
        Ok(hints)
    }
}

/// An owned list of fi_info entries, as fi_getinfo returned it.
pub struct InfoList {
    head: Option<NonNull<sys::fi_info>>,
}

// SAFETY: the list is plain data owned by this value; libfabric does not touch it afterwards.
unsafe impl Send for InfoList {}

impl Drop for InfoList {
    fn drop(&mut self) {
        if let Some(h) = self.head {
            // SAFETY: head came from fi_getinfo and is freed once.
            unsafe { sys::fi_freeinfo(h.as_ptr()) }
        }
    }
}

impl InfoList {
    /// Runs fi_getinfo with these hints; an empty list is not an error here.
    pub fn query(hints: &Hints) -> Result<InfoList> {
        let raw = RawHints::build(hints)?;
        let node = hints.node.as_deref().map(CString::new).transpose();
        let service = hints.service.as_deref().map(CString::new).transpose();
        let (node, service) = match (node, service) {
            (Ok(n), Ok(s)) => (n, s),
            _ => return Err(FabricError::Invalid("NUL byte in node or service".into())),
        };
        let flags = if hints.source { sys::FI_SOURCE } else { 0 };
        let mut out: *mut sys::fi_info = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call; out receives a list we free in Drop.
        let ret = unsafe {
            sys::fi_getinfo(
                sys::fi_version_built(),
                node.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                service.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                flags,
                raw.0.as_ptr(),
                &mut out,
            )
        };
        if ret == -(sys::FI_ENODATA as i32) {
            return Ok(InfoList { head: None });
        }
        if ret < 0 {
            return Err(call_error("fi_getinfo", ret as i64));
        }
        Ok(InfoList {
            head: NonNull::new(out),
        })
    }

    /// The entries, in the provider's order of preference.
    pub fn iter(&self) -> impl Iterator<Item = InfoRef<'_>> {
        let mut cur = self.head.map(|p| p.as_ptr() as *const sys::fi_info);
        std::iter::from_fn(move || {
            let p = cur?;
            // SAFETY: p points into the list this InfoList owns, alive for 'self.
            let r = unsafe { &*p };
            cur = if r.next.is_null() {
                None
            } else {
                Some(r.next as *const _)
            };
            Some(InfoRef { raw: r })
        })
    }

    /// Whether the query matched nothing.
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }
}

/// One fi_info entry borrowed from an [`InfoList`].
#[derive(Clone, Copy)]
pub struct InfoRef<'a> {
    raw: &'a sys::fi_info,
}

fn cstr(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libfabric's attribute strings are NUL-terminated and live as long as the info.
    unsafe { CStr::from_ptr(p).to_string_lossy().into_owned() }
}

/// Reads a sockaddr of the given format, when it is an IP address.
fn sockaddr(format: u32, p: *const libc::c_void, len: usize) -> Option<SocketAddr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: libfabric stores a struct sockaddr_in/in6 of `len` bytes for these formats.
    unsafe {
        if format == sys::FI_SOCKADDR_IN && len >= std::mem::size_of::<libc::sockaddr_in>() {
            let sa = &*(p as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
            return Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sa.sin_port)));
        }
        if format == sys::FI_SOCKADDR_IN6 && len >= std::mem::size_of::<libc::sockaddr_in6>() {
            let sa = &*(p as *const libc::sockaddr_in6);
            let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
            return Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sa.sin6_port)));
        }
        if format == sys::FI_SOCKADDR && len >= std::mem::size_of::<libc::sockaddr>() {
            let fam = (*(p as *const libc::sockaddr)).sa_family as i32;
            let f = if fam == libc::AF_INET {
                sys::FI_SOCKADDR_IN
            } else if fam == libc::AF_INET6 {
                sys::FI_SOCKADDR_IN6
            } else {
                return None;
            };
            return sockaddr(f, p, len);
        }
    }
    None
}

impl<'a> InfoRef<'a> {
    /// The raw fi_info, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *const sys::fi_info {
        self.raw as *const _
    }

    /// Provider name as libfabric reports it (`tcp;ofi_rxm` for layered ones).
    pub fn provider(&self) -> String {
        // SAFETY: fabric_attr is always set in entries fi_getinfo returns.
        cstr(unsafe { (*self.raw.fabric_attr).prov_name })
    }

    /// Provider version as "major.minor".
    pub fn provider_version(&self) -> String {
        // SAFETY: as above.
        let v = unsafe { (*self.raw.fabric_attr).prov_version };
        format!("{}.{}", v >> 16, v & 0xffff)
    }

    /// Fabric name.
    pub fn fabric_name(&self) -> String {
        // SAFETY: as above.
        cstr(unsafe { (*self.raw.fabric_attr).name })
    }

    /// Domain name.
    pub fn domain_name(&self) -> String {
        // SAFETY: domain_attr is always set in entries fi_getinfo returns.
        cstr(unsafe { (*self.raw.domain_attr).name })
    }

    /// Endpoint type.
    pub fn ep_type(&self) -> Option<EndpointType> {
        // SAFETY: ep_attr is always set in entries fi_getinfo returns.
        match unsafe { (*self.raw.ep_attr).type_ } {
            sys::FI_EP_RDM => Some(EndpointType::Rdm),
            sys::FI_EP_MSG => Some(EndpointType::Msg),
            _ => None,
        }
    }

    /// Raw endpoint type name.
    pub fn ep_type_name(&self) -> &'static str {
        // SAFETY: as above.
        match unsafe { (*self.raw.ep_attr).type_ } {
            sys::FI_EP_RDM => "FI_EP_RDM",
            sys::FI_EP_MSG => "FI_EP_MSG",
            sys::FI_EP_DGRAM => "FI_EP_DGRAM",
            _ => "FI_EP_UNSPEC",
        }
    }

    /// Protocol name (fi_tostr of the protocol), e.g. FI_PROTO_SOCK_TCP.
    pub fn protocol(&self) -> String {
        // SAFETY: ep_attr is set; fi_tostr returns a thread-local static string.
        unsafe {
            let proto = (*self.raw.ep_attr).protocol;
            let s = sys::fi_tostr(
                &proto as *const u32 as *const libc::c_void,
                sys::FI_TYPE_PROTOCOL,
            );
            cstr(s).trim().to_string()
        }
    }

    /// Capability bits.
    pub fn caps(&self) -> u64 {
        self.raw.caps
    }

    /// Capability names as fi_tostr prints them.
    pub fn caps_names(&self) -> Vec<String> {
        // SAFETY: fi_tostr reads a u64 and returns a thread-local static string.
        let s = unsafe {
            cstr(sys::fi_tostr(
                &self.raw.caps as *const u64 as *const libc::c_void,
                sys::FI_TYPE_CAPS,
            ))
        };
        s.split([',', '|'])
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    }

    /// Memory-registration mode bits the provider requires.
    pub fn mr_mode(&self) -> u32 {
        // SAFETY: domain_attr is always set.
        unsafe { (*self.raw.domain_attr).mr_mode as u32 }
    }

    /// Largest message the endpoint accepts.
    pub fn max_msg_size(&self) -> usize {
        // SAFETY: ep_attr is always set.
        unsafe { (*self.raw.ep_attr).max_msg_size }
    }

    /// Largest message that fi_inject accepts.
    pub fn inject_size(&self) -> usize {
        // SAFETY: tx_attr is always set in entries fi_getinfo returns.
        unsafe { (*self.raw.tx_attr).inject_size }
    }

    /// Bytes of remote CQ data the domain carries.
    pub fn cq_data_size(&self) -> usize {
        // SAFETY: domain_attr is always set.
        unsafe { (*self.raw.domain_attr).cq_data_size }
    }

    /// Transmit and receive queue depths.
    pub fn queue_sizes(&self) -> (usize, usize) {
        // SAFETY: tx_attr/rx_attr are always set.
        unsafe { ((*self.raw.tx_attr).size, (*self.raw.rx_attr).size) }
    }

    /// Whether the entry can use device (GPU) memory.
    pub fn hmem(&self) -> bool {
        self.raw.caps & caps::HMEM != 0
    }

    /// The local address, where it is an IP address.
    pub fn src_addr(&self) -> Option<SocketAddr> {
        sockaddr(
            self.raw.addr_format,
            self.raw.src_addr,
            self.raw.src_addrlen,
        )
    }

    /// The address format (FI_SOCKADDR_IN, FI_ADDR_STR, ...).
    pub fn addr_format(&self) -> u32 {
        self.raw.addr_format
    }

    /// Length of the local address the entry carries (0 when it carries none).
    pub fn src_addrlen(&self) -> usize {
        self.raw.src_addrlen
    }

    /// Address format name.
    pub fn addr_format_name(&self) -> &'static str {
        match self.raw.addr_format {
            sys::FI_SOCKADDR_IN => "FI_SOCKADDR_IN",
            sys::FI_SOCKADDR_IN6 => "FI_SOCKADDR_IN6",
            sys::FI_SOCKADDR => "FI_SOCKADDR",
            sys::FI_ADDR_STR => "FI_ADDR_STR",
            sys::FI_ADDR_EFA => "FI_ADDR_EFA",
            _ => "other",
        }
    }

    /// An owned copy of this entry alone.
    pub fn to_owned(&self) -> Result<Info> {
        // SAFETY: fi_dupinfo deep-copies one entry (next is not followed).
        let p = unsafe { sys::fi_dupinfo(self.raw) };
        NonNull::new(p)
            .map(|raw| Info { raw })
            .ok_or_else(|| FabricError::Invalid("fi_dupinfo returned NULL".into()))
    }
}

/// One owned fi_info entry, used to open a fabric, domain and endpoints.
pub struct Info {
    raw: NonNull<sys::fi_info>,
}

// SAFETY: an owned deep copy; libfabric only reads it during the calls we make.
unsafe impl Send for Info {}
// SAFETY: shared access is read-only.
unsafe impl Sync for Info {}

impl Drop for Info {
    fn drop(&mut self) {
        // SAFETY: raw came from fi_dupinfo or fi_eq_read's connreq info, owned by us.
        unsafe { sys::fi_freeinfo(self.raw.as_ptr()) }
    }
}

impl Info {
    /// Borrowed view with the accessors of [`InfoRef`].
    pub fn view(&self) -> InfoRef<'_> {
        // SAFETY: raw is valid for as long as self.
        let raw = unsafe { self.raw.as_ref() };
        InfoRef { raw }
    }

    /// Takes ownership of an fi_info libfabric handed us (e.g. a connection request's).
    ///
    /// # Safety
    /// `raw` must be a valid fi_info that nothing else frees.
    pub(crate) unsafe fn from_raw(raw: *mut sys::fi_info) -> Option<Info> {
        NonNull::new(raw).map(|raw| Info { raw })
    }

    /// Raw pointer, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *mut sys::fi_info {
        self.raw.as_ptr()
    }
}

/// The core provider names fi_getinfo reports with no hints (`tcp` for `tcp;ofi_rxm`), sorted.
pub fn available_providers() -> Vec<String> {
    let list = match InfoList::query(&Hints::default()) {
        Ok(l) => l,
        Err(_) => return Vec::new(),
    };
    let mut names: Vec<String> = list
        .iter()
        .map(|e| {
            let p = e.provider();
            p.split(';').next().unwrap_or_default().to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Loads libfabric (once). A command that opens a fabric loads it first thing, so that the
/// start-up of the libraries it links (Debian's PSM libraries sleep 0.2 s) lands in no timed
/// span, such as a connection's set-up.
pub fn load() -> Result<()> {
    sys::load().map_err(FabricError::NotLoaded)
}

/// The libfabric library version loaded at run time, "major.minor" (loading it), or
/// `not loaded (WHY)`.
pub fn runtime_version() -> String {
    if let Err(why) = sys::load() {
        return format!("not loaded ({why})");
    }
    // SAFETY: fi_version takes no arguments and returns a constant.
    let v = unsafe { sys::fi_version() };
    format!("{}.{}", v >> 16, v & 0xffff)
}

/// The file libfabric was loaded from (loading it; None where it could not be).
pub fn library_path() -> Option<String> {
    sys::library_path()
}
