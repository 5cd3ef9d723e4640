//! Registered memory: a region owns its buffer, so the memory cannot move or vanish under the NIC.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfabric_sys as sys;

use super::domain::{close_fid, Domain, DomainInner};
use super::endpoint::Endpoint;
use super::error::{check, opened, Result};
use super::info::{mr_mode, Info};
use crate::mem::{range_within, Buffer, InFlight, MemIface};

/// Keys requested from providers that let the user choose (no FI_MR_PROV_KEY): unique in the
/// process, so regions of one domain never collide. Providers with PROV_KEY ignore them.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// What a peer needs to reach a registered region by RMA: its address and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteRegion {
    /// Address of the region's first byte as the peer passes it: the virtual address under
    /// FI_MR_VIRT_ADDR, 0 (offset addressing) otherwise.
    pub addr: u64,
    /// The region's remote key.
    pub key: u64,
    /// Length in bytes.
    pub len: u64,
}

impl RemoteRegion {
    /// The address of byte `offset` of the region, if `offset + len` stays inside it and the
    /// address does not wrap.
    pub fn at(&self, offset: u64, len: u64) -> Option<u64> {
        (offset.checked_add(len)? <= self.len).then_some(())?;
        self.addr.checked_add(offset)
    }

    /// `len` bytes at `offset` of the region, if they lie inside the length it was offered with.
    pub fn slice(&self, offset: usize, len: usize) -> Option<RemoteSlice> {
        Some(RemoteSlice {
            addr: self.at(offset as u64, len as u64)?,
            key: self.key,
            len,
        })
    }
}

/// A checked range of a peer's region: the address to pass, the key, the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSlice {
    pub(super) addr: u64,
    pub(super) key: u64,
    pub(super) len: usize,
}

/// A bounds-checked range of a registered region that a post reads (sends, writes): pointer,
/// length and descriptor, borrowed from the region.
#[derive(Clone, Copy)]
pub struct LocalSlice<'r> {
    pub(super) ptr: *const u8,
    pub(super) len: usize,
    pub(super) desc: *mut libc::c_void,
    pub(super) domain: &'r Arc<DomainInner>,
    pub(super) in_flight: &'r Arc<InFlight>,
}

/// A bounds-checked range of a registered region that a post writes (receives, reads),
/// borrowed mutably from the region so no CPU view of it lives meanwhile.
pub struct LocalSliceMut<'r> {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
    pub(super) desc: *mut libc::c_void,
    pub(super) domain: &'r Arc<DomainInner>,
    pub(super) in_flight: &'r Arc<InFlight>,
}

impl LocalSlice<'_> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl LocalSliceMut<'_> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a region was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegMode {
    /// Host memory (FI_HMEM_SYSTEM).
    Host,
    /// Device memory by address (FI_HMEM_CUDA and the device ordinal).
    Hmem,
    /// Device memory by dmabuf descriptor (FI_MR_DMABUF).
    Dmabuf,
}

impl RegMode {
    /// The name results carry.
    pub fn name(self) -> &'static str {
        match self {
            RegMode::Host => "host",
            RegMode::Hmem => "hmem",
            RegMode::Dmabuf => "dmabuf",
        }
    }
}

/// FI_MR_DMABUF (libfabric 1.20): `mr_iov` points at a [`FiMrDmabuf`] instead of an iovec.
const FI_MR_DMABUF: u64 = 1 << 40;

/// libfabric 1.20's `struct fi_mr_dmabuf` (the headers this builds against may predate it).
#[repr(C)]
struct FiMrDmabuf {
    fd: libc::c_int,
    offset: u64,
    len: libc::size_t,
    base_addr: *mut libc::c_void,
}

/// Whether the running libfabric knows FI_MR_DMABUF (1.20 and later).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn libfabric_has_dmabuf() -> bool {
    // SAFETY: fi_version takes no arguments and returns a constant.
    let v = unsafe { sys::fi_version() };
    (v >> 16, v & 0xffff) >= (1, 20)
}

/// Registers `buf` (fi_mr_regattr): device memory by dmabuf where the running libfabric and
/// the driver offer it and the provider takes it, by address otherwise.
fn register_buffer<B: Buffer>(
    domain: &Domain,
    buf: &mut B,
    access: u64,
) -> Result<(NonNull<sys::fid_mr>, RegMode)> {
    let (ptr, len, iface) = (buf.as_mut_ptr(), buf.len(), buf.iface());
    if iface == MemIface::System {
        return Ok((
            regattr(domain, ptr, len, iface, access, None)?,
            RegMode::Host,
        ));
    }
    #[cfg(feature = "cuda")]
    if libfabric_has_dmabuf() {
        if let Some(d) = buf.dmabuf() {
            let dmabuf = FiMrDmabuf {
                fd: d.fd,
                offset: d.offset,
                len,
                base_addr: d.base as usize as *mut libc::c_void,
            };
            // A provider without dmabuf support refuses; registration by address follows.
            if let Ok(raw) = regattr(domain, ptr, len, iface, access, Some(&dmabuf)) {
                return Ok((raw, RegMode::Dmabuf));
            }
        }
    }
    Ok((
        regattr(domain, ptr, len, iface, access, None)?,
        RegMode::Hmem,
    ))
}

/// Registers `len` bytes at `ptr` (fi_mr_regattr), or the dmabuf range `dmabuf` describes;
/// the caller keeps the memory alive.
fn regattr(
    domain: &Domain,
    ptr: *mut u8,
    len: usize,
    iface: MemIface,
    access: u64,
    dmabuf: Option<&FiMrDmabuf>,
) -> Result<NonNull<sys::fid_mr>> {
    let iov = libc::iovec {
        iov_base: ptr as *mut libc::c_void,
        iov_len: len,
    };
    let mut attr = sys::fi_mr_attr {
        mr_iov: &iov as *const libc::iovec as *const sys::iovec,
        iov_count: 1,
        access,
        requested_key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
        ..Default::default()
    };
    match iface {
        MemIface::System => attr.iface = sys::FI_HMEM_SYSTEM,
        MemIface::Cuda(dev) => {
            attr.iface = sys::FI_HMEM_CUDA;
            attr.device.cuda = dev;
        }
    }
    let mut flags = 0;
    if let Some(d) = dmabuf {
        // The union's other member: same place, a pointer either way.
        attr.mr_iov = d as *const FiMrDmabuf as *const sys::iovec;
        flags = FI_MR_DMABUF;
    }
    let mut raw: *mut sys::fid_mr = std::ptr::null_mut();
    // SAFETY: attr points at iov or dmabuf, valid for the call; the caller keeps
    // ptr..ptr+len alive for as long as the returned region is open.
    let ret = unsafe { sys::fi_mr_regattr(domain.inner.raw.as_ptr(), &attr, flags, &mut raw) };
    opened("fi_mr_regattr", ret, raw)
}

/// A buffer registered with a domain (fi_mr_regattr).
///
/// Posts reach its bytes only through [`slice`](Self::slice) and
/// [`slice_mut`](Self::slice_mut); a [`DataPath`](super::DataPath) counts each operation in
/// flight until its completion is read, and meanwhile the CPU views ([`buf`](Self::buf),
/// [`buf_mut`](Self::buf_mut)) are refused and dropping the region leaks the buffer instead of
/// freeing memory the NIC may still touch.
pub struct MemoryRegion<B: Buffer> {
    raw: NonNull<sys::fid_mr>,
    mode: RegMode,
    buf: std::mem::ManuallyDrop<B>,
    in_flight: Arc<InFlight>,
    domain: Arc<DomainInner>,
}

// SAFETY: the region is a handle plus an owned buffer; it moves between threads with its owner.
unsafe impl<B: Buffer> Send for MemoryRegion<B> {}

impl<B: Buffer> Drop for MemoryRegion<B> {
    fn drop(&mut self) {
        if !self.in_flight.idle() {
            // An operation may still reach these bytes: keeping the registration and the
            // memory (a leak) is safe, freeing them is not.
            crate::teardown::record(format!(
                "a registered region was dropped with {} operation(s) in flight: leaked",
                self.in_flight.count()
            ));
            return;
        }
        // SAFETY: raw is live; closing it before `buf` drops keeps the NIC off freed memory.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "memory region");
        // SAFETY: buf is dropped once, here, after its registration closed.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.buf) };
    }
}

impl<B: Buffer> MemoryRegion<B> {
    /// Registers the whole buffer with the given access bits (`caps::SEND | caps::RECV | ...`).
    pub fn register(domain: &Domain, mut buf: B, access: u64) -> Result<Self> {
        let (raw, mode) = register_buffer(domain, &mut buf, access)?;
        Ok(MemoryRegion {
            raw,
            mode,
            in_flight: buf.in_flight().unwrap_or_default(),
            buf: std::mem::ManuallyDrop::new(buf),
            domain: domain.inner.clone(),
        })
    }

    /// `len` bytes at `offset`, for a post that reads them (send, write); None outside the
    /// region.
    pub fn slice(&self, offset: usize, len: usize) -> Option<LocalSlice<'_>> {
        range_within(offset, len, self.buf.len()).then(|| LocalSlice {
            ptr: self.buf.as_ptr().wrapping_add(offset),
            len,
            desc: self.desc(),
            domain: &self.domain,
            in_flight: &self.in_flight,
        })
    }

    /// `len` bytes at `offset`, for a post that writes them (receive, read); None outside the
    /// region.
    pub fn slice_mut(&mut self, offset: usize, len: usize) -> Option<LocalSliceMut<'_>> {
        if !range_within(offset, len, self.buf.len()) {
            return None;
        }
        let desc = self.desc();
        Some(LocalSliceMut {
            ptr: self.buf.as_mut_ptr().wrapping_add(offset),
            len,
            desc,
            domain: &self.domain,
            in_flight: &self.in_flight,
        })
    }

    /// Length of the registered memory in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the registered memory is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    /// Operations in flight on the region's bytes (through any registration of them).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.count()
    }

    /// Registers the same memory a second time, closes that registration, and returns how long
    /// the registration took: the cost of a registration the provider may serve from its cache.
    pub fn time_reregistration(&mut self, domain: &Domain, access: u64) -> Result<Duration> {
        let start = Instant::now();
        let (raw, _) = register_buffer(domain, &mut *self.buf, access)?;
        let took = start.elapsed();
        // SAFETY: raw was just opened and is closed once; self.buf outlives it.
        close_fid(unsafe { &mut (*raw.as_ptr()).fid }, "memory region");
        Ok(took)
    }

    /// Binds the region to an endpoint and enables it, as FI_MR_ENDPOINT providers require;
    /// a no-op for other providers.
    pub fn bind_endpoint(&self, ep: &Endpoint, info: &Info) -> Result<()> {
        if info.view().mr_mode() & mr_mode::ENDPOINT == 0 {
            return Ok(());
        }
        // SAFETY: both handles are live; the endpoint is closed before the region by callers
        // that keep them in one struct with the endpoint first.
        let ret = unsafe { sys::fi_mr_bind(self.raw.as_ptr(), &mut (*ep.as_raw()).fid, 0) };
        check("fi_mr_bind", ret)?;
        // SAFETY: raw is live and bound.
        check("fi_mr_enable", unsafe {
            sys::fi_mr_enable(self.raw.as_ptr())
        })
    }

    /// How a peer reaches this region: virtual or offset addressing, per the domain's mr_mode.
    pub fn remote(&self, info: &Info) -> RemoteRegion {
        let virt = info.view().mr_mode() & mr_mode::VIRT_ADDR != 0;
        RemoteRegion {
            addr: if virt { self.buf.as_ptr() as u64 } else { 0 },
            key: self.key(),
            len: self.buf.len() as u64,
        }
    }

    /// The local descriptor passed with data-path calls.
    pub fn desc(&self) -> *mut libc::c_void {
        // SAFETY: raw is a live region.
        unsafe { sys::fi_mr_desc(self.raw.as_ptr()) }
    }

    /// The key a peer uses for RMA into this region.
    pub fn key(&self) -> u64 {
        // SAFETY: raw is a live region.
        unsafe { sys::fi_mr_key(self.raw.as_ptr()) }
    }

    /// How the region was registered.
    pub fn mode(&self) -> RegMode {
        self.mode
    }

    /// The registered buffer, while no operation is in flight on it (None otherwise).
    pub fn buf(&self) -> Option<&B> {
        self.in_flight.idle().then_some(&*self.buf)
    }

    /// The registered buffer, for writing, while no operation is in flight on it.
    pub fn buf_mut(&mut self) -> Option<&mut B> {
        self.in_flight.idle().then_some(&mut *self.buf)
    }

    /// Byte `offset` of host memory, read as it is now even while the NIC may be writing it
    /// (a peer's RMA write landing, which a receiver may poll for as its arrival); None outside
    /// the region or for device memory.
    #[inline]
    pub fn read_volatile(&self, offset: usize) -> Option<u8> {
        if offset >= self.buf.len() || self.buf.iface() != MemIface::System {
            return None;
        }
        // SAFETY: offset lies inside the buffer (checked), which the region owns and keeps
        // alive and in place for as long as &self lives; the memory is host memory (checked),
        // so the CPU can address it. The read is volatile because a peer's RMA write may store
        // to this byte at any moment: the compiler must read memory on every call, and one
        // byte cannot be torn. Only a copy of the byte leaves; no reference to memory the NIC
        // writes is made.
        Some(unsafe { self.buf.as_ptr().add(offset).read_volatile() })
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *mut sys::fid_mr {
        self.raw.as_ptr()
    }

    /// Closes the registration and hands the buffer back; None while an operation is still in
    /// flight on it (the region is then dropped, which leaks the buffer).
    pub fn into_buffer(self) -> Option<B> {
        if !self.in_flight.idle() {
            drop(self);
            return None;
        }
        let mut region = std::mem::ManuallyDrop::new(self);
        // SAFETY: raw is live and closed once, here, before its buffer leaves.
        close_fid(unsafe { &mut (*region.raw.as_ptr()).fid }, "memory region");
        // SAFETY: `region` is never dropped, so each field is moved out exactly once: the
        // buffer to the caller, the two shared handles to be released here.
        let (buf, in_flight, domain) = unsafe {
            (
                std::mem::ManuallyDrop::take(&mut region.buf),
                std::ptr::read(&region.in_flight),
                std::ptr::read(&region.domain),
            )
        };
        drop((in_flight, domain));
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::HostBuffer;

    #[test]
    fn remote_addresses_stay_inside_the_region() {
        let virt = RemoteRegion {
            addr: 0x7f00_0000_0000,
            key: 9,
            len: 4096,
        };
        assert_eq!(virt.at(0, 4096), Some(0x7f00_0000_0000));
        assert_eq!(virt.at(4000, 96), Some(0x7f00_0000_0000 + 4000));
        assert_eq!(virt.at(4000, 97), None);
        assert_eq!(virt.at(u64::MAX, 2), None, "no overflow");
        // Offset addressing (no FI_MR_VIRT_ADDR): the address is the offset.
        let offset = RemoteRegion { addr: 0, ..virt };
        assert_eq!(offset.at(100, 10), Some(100));
    }

    /// Opens a domain of `provider` with RMA, as xfer does.
    fn domain(provider: &str) -> (Info, Domain) {
        let spec = crate::fabric::EndpointSpec {
            provider: provider.into(),
            ep_type: crate::fabric::EndpointType::Rdm,
            caps: crate::fabric::caps::RMA | crate::fabric::caps::MSG,
            local_ip: None,
            domain: None,
            timeout: Duration::from_secs(5),
        };
        let info = crate::fabric::select_info(&spec).unwrap();
        let fabric = crate::fabric::Fabric::open(&info).unwrap();
        let d = Domain::open(&fabric, &info).unwrap();
        (info, d)
    }

    #[test]
    fn offset_addressing_and_distinct_keys_on_tcp_virtual_addresses_on_shm() {
        use crate::fabric::caps;
        let access = caps::REMOTE_WRITE | caps::REMOTE_READ;
        // tcp (rxm) offers neither FI_MR_VIRT_ADDR nor FI_MR_PROV_KEY: kvxfer picks the keys.
        let (info, d) = domain("tcp");
        assert_eq!(
            info.view().mr_mode() & (mr_mode::VIRT_ADDR | mr_mode::PROV_KEY),
            0
        );
        let a = MemoryRegion::register(&d, HostBuffer::new(8192).unwrap(), access).unwrap();
        assert_eq!(a.mode(), RegMode::Host);
        let mut b = MemoryRegion::register(&d, HostBuffer::new(4096).unwrap(), access).unwrap();
        assert_ne!(a.key(), b.key(), "two regions of one domain share a key");
        let ra = a.remote(&info);
        assert_eq!((ra.addr, ra.len, ra.key), (0, 8192, a.key()));
        assert!(b.time_reregistration(&d, access).unwrap() > Duration::ZERO);
        // shm uses virtual addresses.
        let (info, d) = domain("shm");
        assert_ne!(info.view().mr_mode() & mr_mode::VIRT_ADDR, 0);
        let m = MemoryRegion::register(&d, HostBuffer::new(4096).unwrap(), access).unwrap();
        assert_eq!(m.remote(&info).addr, m.buf().unwrap().as_ptr() as u64);
    }

    #[test]
    fn a_region_hands_its_buffer_back_only_when_idle() {
        let (_, d) = domain("shm");
        let access = crate::fabric::caps::SEND | crate::fabric::caps::RECV;
        let mut buf = HostBuffer::new(4096).unwrap();
        buf.as_mut_slice()[7] = 42;
        let at = buf.as_slice().as_ptr();
        let region = MemoryRegion::register(&d, buf, access).unwrap();
        let back = region
            .into_buffer()
            .expect("an idle region gives its buffer back");
        assert_eq!((back.as_slice().as_ptr(), back.as_slice()[7]), (at, 42));
        // The same bytes register again and come back again.
        let again = MemoryRegion::register(&d, back, access).unwrap();
        assert_eq!(again.into_buffer().unwrap().as_slice().as_ptr(), at);
        // (With an operation in flight the region is dropped instead, which leaks the buffer
        // and records it: the drop's own test covers that record, which every test shares.)
    }
}
