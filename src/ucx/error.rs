//! The UCX layer's error type, carrying UCX's own status text.

use std::ffi::CStr;
use std::ptr::NonNull;

use ucx_sys as sys;

/// An error from UCX or from the safe layer's own checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UcxError {
    /// libucp could not be loaded (absent, or lacking a function kvxfer calls).
    #[error("{0}")]
    Load(&'static str),
    /// A UCX call returned an error status.
    #[error("{call} failed: {message} (status {status}){hint}")]
    Call {
        /// The UCX function.
        call: &'static str,
        /// Its status code.
        status: i32,
        /// ucs_status_string's text.
        message: String,
        /// What to try, or empty.
        hint: String,
    },
    /// A request (send, receive, close) completed with an error.
    #[error("{op} completed with an error: {message} (status {status})")]
    Request {
        /// The operation that failed.
        op: &'static str,
        /// Its status code.
        status: i32,
        /// ucs_status_string's text.
        message: String,
    },
    /// A call that opens a handle reported success but wrote none.
    #[error("{call} reported success but gave no handle")]
    NoHandle {
        /// The UCP function.
        call: &'static str,
    },
    /// A busy-poll gave up waiting.
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout {
        /// What did not arrive.
        what: &'static str,
        /// How long it waited, seconds.
        secs: f64,
    },
    /// What a peer sent (a worker address, a remote key) is not of the form UCX writes.
    #[error("the peer sent {0}")]
    Peer(String),
    /// A value passed to the safe layer is out of range or unsupported.
    #[error("{0}")]
    Invalid(String),
    /// A signal asked the process to stop while this waited.
    #[error(transparent)]
    Stopped(#[from] crate::stop::Stopped),
}

/// Result alias of the UCX layer.
pub type Result<T> = std::result::Result<T, UcxError>;

/// UCX's text for a status code.
pub fn status_string(status: sys::ucs_status_t) -> String {
    let Ok(lib) = sys::load() else {
        return format!("status {status}");
    };
    // SAFETY: ucs_status_string returns a pointer to a static NUL-terminated string for any value.
    unsafe {
        let p = lib.ucs_status_string(status);
        if p.is_null() {
            return format!("status {status}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Turns a status into a Result.
pub(crate) fn check(call: &'static str, status: sys::ucs_status_t) -> Result<()> {
    if status == sys::UCS_OK as sys::ucs_status_t {
        Ok(())
    } else {
        Err(call_error(call, status, String::new()))
    }
}

/// Checks a call that opens a handle: the handle it wrote into `raw`, or the call's error with
/// `hint` on what to do (a NULL handle after a success is an error too, never a panic).
pub(crate) fn opened<T>(
    call: &'static str,
    status: sys::ucs_status_t,
    raw: *mut T,
    hint: impl FnOnce() -> String,
) -> Result<NonNull<T>> {
    if status != sys::UCS_OK as sys::ucs_status_t {
        return Err(call_error(call, status, hint()));
    }
    NonNull::new(raw).ok_or(UcxError::NoHandle { call })
}

/// The error value of a failed call, with an optional hint on what to do.
pub(crate) fn call_error(call: &'static str, status: sys::ucs_status_t, hint: String) -> UcxError {
    UcxError::Call {
        call,
        status: status as i32,
        message: status_string(status),
        hint,
    }
}

/// The error value of a request that completed with `status`.
pub(crate) fn request_error(op: &'static str, status: sys::ucs_status_t) -> UcxError {
    UcxError::Request {
        op,
        status: status as i32,
        message: status_string(status),
    }
}

#[cfg(test)]
mod opened_tests {
    use super::*;

    #[test]
    fn an_opening_call_gives_its_handle_its_hinted_error_or_no_handle() {
        let mut x = 7u32;
        let p: *mut u32 = &mut x;
        let ok = sys::UCS_OK as sys::ucs_status_t;
        assert_eq!(opened("ucp_x", ok, p, String::new).unwrap().as_ptr(), p);
        let failed = sys::UCS_ERR_NO_MEMORY as sys::ucs_status_t;
        let e = opened::<u32>("ucp_x", failed, p, || "; try less".into()).unwrap_err();
        assert!(matches!(e, UcxError::Call { call: "ucp_x", .. }), "{e:?}");
        assert!(e.to_string().ends_with("; try less"), "{e}");
        let e = opened::<u32>("ucp_x", ok, std::ptr::null_mut(), String::new).unwrap_err();
        assert!(matches!(e, UcxError::NoHandle { call: "ucp_x" }), "{e:?}");
    }
}
