//! The UCP context: UCX's configuration (read from the `UCX_*` environment) and its transports.

use std::ffi::CStr;
use std::ptr::NonNull;
use std::sync::Arc;

use ucx_sys as sys;

use super::capture::capture;
use super::error::{check, opened, Result, UcxError};

pub(crate) struct ContextInner {
    pub(crate) raw: NonNull<sys::ucp_context>,
}

// SAFETY: a UCP context may be shared between threads; kvxfer creates it with
// mt_workers_shared = 0 and gives each worker to one thread.
unsafe impl Send for ContextInner {}
// SAFETY: as above; the context itself is only read after creation.
unsafe impl Sync for ContextInner {}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // SAFETY: raw is a live context; every worker and memory handle holds an Arc of this,
        // so none is left when it drops.
        unsafe { sys::api().ucp_cleanup(self.raw.as_ptr()) };
    }
}

/// Bytes kvxfer keeps in each UCX request: the received length, written by the worker's
/// receive callback.
pub(crate) const REQUEST_PRIV_BYTES: usize = 16;

/// Which UCP features a context is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Tagged send/receive (tag_lat, tag_bw).
    pub tag: bool,
    /// Remote memory access (put/get with remote keys).
    pub rma: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            tag: true,
            rma: true,
        }
    }
}

/// One transport resource UCX found: a transport on a device (`tcp/lo`, `posix/memory`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    /// Transport name (`tcp`, `posix`, `cma`, `self`, `rc_mlx5`, `srd`, ...).
    pub transport: String,
    /// Device name (`lo`, `eth0`, `memory`, `mlx5_0:1`, ...).
    pub device: String,
}

/// A UCP application context (ucp_init).
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

impl Context {
    /// Creates a context with the given features, configured from the `UCX_*` environment
    /// (UCX_TLS, UCX_NET_DEVICES, ...), as ucx_perftest does.
    pub fn new(features: Features) -> Result<Context> {
        load()?;
        let mut config: *mut sys::ucp_config_t = std::ptr::null_mut();
        // SAFETY: NULL prefix and file mean "UCX_ environment"; config receives a handle
        // released below.
        let status =
            unsafe { sys::api().ucp_config_read(std::ptr::null(), std::ptr::null(), &mut config) };
        check("ucp_config_read", status)?;
        let mut f: u64 = 0;
        if features.tag {
            f |= sys::UCP_FEATURE_TAG as u64;
        }
        if features.rma {
            f |= sys::UCP_FEATURE_RMA as u64;
        }
        let params = sys::ucp_params_t {
            field_mask: (sys::UCP_PARAM_FIELD_FEATURES
                | sys::UCP_PARAM_FIELD_MT_WORKERS_SHARED
                | sys::UCP_PARAM_FIELD_ESTIMATED_NUM_EPS
                | sys::UCP_PARAM_FIELD_REQUEST_SIZE) as u64,
            features: f,
            // Room in every request for what its completion callback records (see worker.rs).
            request_size: REQUEST_PRIV_BYTES,
            mt_workers_shared: 0,
            estimated_num_eps: 1,
            ..Default::default()
        };
        let mut raw: sys::ucp_context_h = std::ptr::null_mut();
        // SAFETY: params and config are valid for the call; raw receives a context released in
        // Drop; config is released right after, as UCP copies what it needs.
        let status = unsafe {
            let s = sys::ucp_init(&params, config, &mut raw);
            sys::api().ucp_config_release(config);
            s
        };
        let raw = opened("ucp_init", status, raw, init_hint)?;
        Ok(Context {
            inner: Arc::new(ContextInner { raw }),
        })
    }

    /// UCP's own description of the context (components, memory domains, resources).
    pub fn print_info(&self) -> String {
        // SAFETY: the context is live; the stream is valid for the call.
        capture(|f| unsafe { sys::api().ucp_context_print_info(self.inner.raw.as_ptr(), f as _) })
    }

    /// The transports and devices this context may use, after UCX_TLS and UCX_NET_DEVICES.
    pub fn resources(&self) -> Vec<Resource> {
        parse_resources(&self.print_info())
    }

    /// Whether the context can map and move CUDA device memory (a UCX built with CUDA whose
    /// cuda transports loaded: ucp_context_query's memory types).
    pub fn supports_cuda(&self) -> Result<bool> {
        let mut attr = sys::ucp_context_attr_t {
            field_mask: sys::UCP_ATTR_FIELD_MEMORY_TYPES as u64,
            ..Default::default()
        };
        // SAFETY: the context is live; attr is ours, and UCP fills the field asked for.
        let status = unsafe { sys::api().ucp_context_query(self.inner.raw.as_ptr(), &mut attr) };
        check("ucp_context_query", status)?;
        Ok(attr.memory_types & (1u64 << sys::UCS_MEMORY_TYPE_CUDA) != 0)
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> sys::ucp_context_h {
        self.inner.raw.as_ptr()
    }
}

fn init_hint() -> String {
    let mut hint = String::new();
    for var in ["UCX_TLS", "UCX_NET_DEVICES"] {
        if let Ok(v) = std::env::var(var) {
            hint.push_str(&format!("; {var}={v}"));
        }
    }
    if !hint.is_empty() {
        hint.push_str(
            ": UCX found no usable transport among these (UCX's warning above names the \
             available ones; `kvxfer info --ucx` without these variables lists them by device)",
        );
    }
    hint
}

/// UCX's version at run time (`1.13.1`).
pub fn version() -> String {
    let Ok(lib) = sys::load() else {
        return String::new();
    };
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe {
        let p = lib.ucp_get_version_string();
        if p.is_null() {
            return String::new();
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Loads UCX (once): a command that uses it loads it first thing, so its memory hooks are in
/// place before any buffer is allocated, as when UCX was linked.
pub fn load() -> Result<()> {
    sys::load().map(|_| ()).map_err(UcxError::Load)
}

/// The UCX API version of the headers kvxfer was built against (`1.22`).
pub fn header_version() -> String {
    format!("{}.{}", sys::UCP_API_MAJOR, sys::UCP_API_MINOR)
}

/// The file of the UCP library loaded at run time (`/usr/lib/x86_64-linux-gnu/libucp.so.0`).
pub fn library_path() -> Option<String> {
    let lib = sys::load().ok()?;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = lib.ucp_get_version_string as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; on success dli_fname points to a
    // NUL-terminated path owned by the loader, valid while the library stays loaded (for good).
    unsafe {
        if libc::dladdr(addr, info.as_mut_ptr()) == 0 {
            return None;
        }
        let info = info.assume_init();
        if info.dli_fname.is_null() {
            return None;
        }
        Some(
            CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// What a UCX of this version (`1.13.1`) lacks that kvxfer's figures rely on; empty from 1.18.
pub fn version_lacks(version: &str) -> Vec<&'static str> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return vec!["an unreadable version: nothing known about it"];
    };
    if (major, minor) >= (1, 18) {
        return Vec::new();
    }
    vec![
        "ucx_perftest's tag_bw ends at local send completion, with no final acknowledgement \
         (1.18+ acknowledges), so its bandwidth is not comparable",
        "fast RMA over tcp (1.13 emulates puts at a fraction of tagged sends' speed)",
        "messages over 4 GB break (fixed in 1.18)",
    ]
}

/// Reads the `resource N : md M dev D flags -- tl/dev` lines of ucp_context_print_info.
pub fn parse_resources(info: &str) -> Vec<Resource> {
    info.lines()
        .filter(|l| l.contains("resource") && l.contains("--"))
        .filter_map(|l| l.rsplit("--").next())
        .filter_map(|tail| {
            let (tl, dev) = tail.trim().split_once('/')?;
            Some(Resource {
                transport: tl.to_string(),
                device: dev.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_read_from_print_info() {
        let info = "#\n# UCP context\n#\n#     component 1  :  tcp\n#            md 1  :  component 1  tcp \n#\n#      resource 1  :  md 1  dev 1  flags -- tcp/lo\n#      resource 4  :  md 3  dev 3  flags -- posix/memory\n#\n";
        assert_eq!(
            parse_resources(info),
            vec![
                Resource {
                    transport: "tcp".into(),
                    device: "lo".into()
                },
                Resource {
                    transport: "posix".into(),
                    device: "memory".into()
                }
            ]
        );
    }
}
