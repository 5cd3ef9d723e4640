//! Completion queues (FI_CQ_FORMAT_DATA, no wait object: busy-polled), address vectors and
//! event queues.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfabric_sys as sys;

use super::domain::{close_fid, Domain, DomainInner, Fabric, FabricInner};
use super::error::{call_error, opened, FabricError, Result};
use super::info::Info;
use super::peer_name::PeerName;

/// One completion: the context and flags of the operation, its length and remote CQ data.
pub type CqEntry = sys::fi_cq_data_entry;

pub(crate) struct CqInner {
    pub(crate) raw: NonNull<sys::fid_cq>,
    _domain: Arc<DomainInner>,
}

// SAFETY: a CQ is driven by one thread at a time; moving it between threads is allowed.
unsafe impl Send for CqInner {}
// SAFETY: kvxfer shares a CQ's Arc only to keep it alive (endpoint binding), not to poll it.
unsafe impl Sync for CqInner {}

impl Drop for CqInner {
    fn drop(&mut self) {
        // SAFETY: raw is live; endpoints bound to it hold this Arc and are closed first.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "completion queue");
    }
}

/// A busy-polled completion queue.
pub struct CompletionQueue {
    pub(crate) inner: Arc<CqInner>,
}

impl CompletionQueue {
    /// Opens a CQ of `size` entries (0: provider default) in data format, with no wait object.
    pub fn open(domain: &Domain, size: usize) -> Result<CompletionQueue> {
        let mut attr = sys::fi_cq_attr {
            size,
            format: sys::FI_CQ_FORMAT_DATA,
            wait_obj: sys::FI_WAIT_NONE,
            ..Default::default()
        };
        let mut raw: *mut sys::fid_cq = std::ptr::null_mut();
        // SAFETY: domain is live; attr and raw are valid for the call.
        let ret = unsafe {
            sys::fi_cq_open(
                domain.inner.raw.as_ptr(),
                &mut attr,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        let raw = opened("fi_cq_open", ret, raw)?;
        Ok(CompletionQueue {
            inner: Arc::new(CqInner {
                raw,
                _domain: domain.inner.clone(),
            }),
        })
    }

    /// Reads up to `out.len()` completions without waiting; returns how many (0: none yet).
    ///
    /// A failed operation is returned as [`FabricError::Completion`] with the provider's text.
    #[inline]
    pub fn read(&self, out: &mut [CqEntry]) -> Result<usize> {
        // SAFETY: out is valid for out.len() entries of the CQ's format (DATA).
        let ret = unsafe {
            sys::fi_cq_read(
                self.inner.raw.as_ptr(),
                out.as_mut_ptr() as *mut libc::c_void,
                out.len(),
            )
        };
        if ret > 0 {
            return Ok(ret as usize);
        }
        if ret == -(sys::FI_EAGAIN as isize) || ret == 0 {
            return Ok(0);
        }
        if ret == -(sys::FI_EAVAIL as isize) {
            return Err(self.read_error());
        }
        Err(call_error("fi_cq_read", ret as i64))
    }

    fn read_error(&self) -> FabricError {
        let mut err = sys::fi_cq_err_entry::default();
        // SAFETY: err is a valid, zeroed error entry (err_data NULL: the provider uses its own).
        let ret = unsafe { sys::fi_cq_readerr(self.inner.raw.as_ptr(), &mut err, 0) };
        if ret < 0 {
            return call_error("fi_cq_readerr", ret as i64);
        }
        let cq = self.inner.raw.as_ptr();
        let message = super::error::completion_text(err.err, err.prov_errno, || {
            // SAFETY: fi_cq_strerror returns NULL or a NUL-terminated string owned by the
            // provider, copied out before the next call.
            unsafe {
                let p =
                    sys::fi_cq_strerror(cq, err.prov_errno, err.err_data, std::ptr::null_mut(), 0);
                (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
            }
        });
        FabricError::Completion {
            op: if err.flags & (sys::FI_RECV as u64) != 0 {
                "receive"
            } else if err.flags & (sys::FI_SEND as u64) != 0 {
                "send"
            } else if err.flags & (sys::FI_RMA as u64) != 0 {
                "RMA"
            } else {
                "operation"
            },
            code: err.err,
            prov_errno: err.prov_errno,
            message,
        }
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> *mut sys::fid_cq {
        self.inner.raw.as_ptr()
    }
}

pub(crate) struct AvInner {
    pub(crate) raw: NonNull<sys::fid_av>,
    _domain: Arc<DomainInner>,
}

// SAFETY: see CqInner.
unsafe impl Send for AvInner {}
// SAFETY: see CqInner.
unsafe impl Sync for AvInner {}

impl Drop for AvInner {
    fn drop(&mut self) {
        // SAFETY: raw is live; bound endpoints hold this Arc and close first.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "address vector");
    }
}

/// An address vector: peer endpoint names in, fi_addr_t handles out.
pub struct AddressVector {
    pub(crate) inner: Arc<AvInner>,
}

impl AddressVector {
    /// Opens an address vector of the provider's preferred type.
    pub fn open(domain: &Domain) -> Result<AddressVector> {
        let mut attr = sys::fi_av_attr::default();
        let mut raw: *mut sys::fid_av = std::ptr::null_mut();
        // SAFETY: domain is live; attr and raw are valid for the call.
        let ret = unsafe {
            sys::fi_av_open(
                domain.inner.raw.as_ptr(),
                &mut attr,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        let raw = opened("fi_av_open", ret, raw)?;
        Ok(AddressVector {
            inner: Arc::new(AvInner {
                raw,
                _domain: domain.inner.clone(),
            }),
        })
    }

    /// Inserts one peer name (checked against the provider's form) and returns its handle.
    pub fn insert(&self, name: &PeerName) -> Result<sys::fi_addr_t> {
        let mut addr: sys::fi_addr_t = 0;
        // SAFETY: name holds an address of the provider's format and length (PeerName::check);
        // addr receives one handle.
        let ret = unsafe {
            sys::fi_av_insert(
                self.inner.raw.as_ptr(),
                name.as_bytes().as_ptr() as *const libc::c_void,
                1,
                &mut addr,
                0,
                std::ptr::null_mut(),
            )
        };
        if ret != 1 {
            return Err(if ret < 0 {
                call_error("fi_av_insert", ret as i64)
            } else {
                FabricError::Invalid("fi_av_insert rejected the peer's address".into())
            });
        }
        Ok(addr)
    }
}

pub(crate) struct EqInner {
    pub(crate) raw: NonNull<sys::fid_eq>,
    _fabric: Arc<FabricInner>,
}

// SAFETY: see CqInner.
unsafe impl Send for EqInner {}
// SAFETY: see CqInner.
unsafe impl Sync for EqInner {}

impl Drop for EqInner {
    fn drop(&mut self) {
        // SAFETY: raw is live; bound endpoints hold this Arc and close first.
        close_fid(unsafe { &mut (*self.raw.as_ptr()).fid }, "event queue");
    }
}

/// A connection-management event.
pub enum CmEvent {
    /// A peer asks to connect; its info opens the accepting endpoint.
    ConnReq(Info),
    /// The connection is established.
    Connected,
    /// The peer closed the connection.
    Shutdown,
}

/// An event queue for connected (MSG) endpoints.
pub struct EventQueue {
    pub(crate) inner: Arc<EqInner>,
}

impl EventQueue {
    /// Opens an event queue on a fabric.
    pub fn open(fabric: &Fabric) -> Result<EventQueue> {
        let mut attr = sys::fi_eq_attr {
            wait_obj: sys::FI_WAIT_NONE,
            ..Default::default()
        };
        let mut raw: *mut sys::fid_eq = std::ptr::null_mut();
        // SAFETY: fabric is live; attr and raw are valid for the call.
        let ret = unsafe {
            sys::fi_eq_open(
                fabric.inner.raw.as_ptr(),
                &mut attr,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        let raw = opened("fi_eq_open", ret, raw)?;
        Ok(EventQueue {
            inner: Arc::new(EqInner {
                raw,
                _fabric: fabric.inner.clone(),
            }),
        })
    }

    /// Waits up to `timeout` for the next connection-management event.
    pub fn wait(&self, timeout: Duration) -> Result<CmEvent> {
        let start = Instant::now();
        // Room for the entry plus any connection data the provider appends.
        let mut buf = [0u64; 64];
        loop {
            let mut event: u32 = 0;
            // SAFETY: buf is large and aligned enough for an fi_eq_cm_entry.
            let ret = unsafe {
                sys::fi_eq_read(
                    self.inner.raw.as_ptr(),
                    &mut event,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    std::mem::size_of_val(&buf),
                    0,
                )
            };
            if ret > 0 {
                // SAFETY: a positive return filled an fi_eq_cm_entry for CM events.
                let entry = unsafe { &*(buf.as_ptr() as *const sys::fi_eq_cm_entry) };
                match event {
                    sys::FI_CONNREQ => {
                        // SAFETY: the connreq info is ours to free.
                        let info = unsafe { Info::from_raw(entry.info) }.ok_or_else(|| {
                            FabricError::Invalid("connection request without info".into())
                        })?;
                        return Ok(CmEvent::ConnReq(info));
                    }
                    sys::FI_CONNECTED => return Ok(CmEvent::Connected),
                    sys::FI_SHUTDOWN => return Ok(CmEvent::Shutdown),
                    _ => continue,
                }
            }
            if ret == -(sys::FI_EAVAIL as isize) {
                let mut err = sys::fi_eq_err_entry::default();
                // SAFETY: err is a valid error entry.
                unsafe { sys::fi_eq_readerr(self.inner.raw.as_ptr(), &mut err, 0) };
                return Err(FabricError::Call {
                    call: "connect",
                    code: err.err,
                    message: super::error::strerror(err.err),
                });
            }
            if ret < 0 && ret != -(sys::FI_EAGAIN as isize) {
                return Err(call_error("fi_eq_read", ret as i64));
            }
            crate::stop::check()?;
            if start.elapsed() > timeout {
                return Err(FabricError::Timeout {
                    what: "a connection event",
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
