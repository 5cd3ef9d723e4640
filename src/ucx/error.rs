//! The UCX layer's error type, carrying UCX's own status text.

use std::ffi::CStr;

use ucx_sys as sys;

/// An error from UCX or from the safe layer's own checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UcxError {
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
}

/// Result alias of the UCX layer.
pub type Result<T> = std::result::Result<T, UcxError>;

/// UCX's text for a status code.
pub fn status_string(status: sys::ucs_status_t) -> String {
    // SAFETY: ucs_status_string returns a pointer to a static NUL-terminated string for any value.
    unsafe {
        let p = sys::ucs_status_string(status);
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
