//! The fabric layer's error type.

use std::ffi::CStr;

/// An error from libfabric or from the safe layer's own checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FabricError {
    /// A libfabric call returned a negative error code.
    #[error("{call} failed: {message} (-{code})")]
    Call {
        /// The libfabric function.
        call: &'static str,
        /// Its error code, positive.
        code: i32,
        /// fi_strerror's text.
        message: String,
    },
    /// A completion queue reported a failed operation.
    #[error("{op} completed with an error: {message} (-{code}, provider errno {prov_errno})")]
    Completion {
        /// The operation that failed.
        op: &'static str,
        /// Its error code, positive.
        code: i32,
        /// The provider's own errno.
        prov_errno: i32,
        /// The provider's text for it.
        message: String,
    },
    /// No provider matched the query.
    #[error("no libfabric provider matches {what}; available providers: {available}")]
    NoMatch {
        /// What was asked for.
        what: String,
        /// The providers this libfabric offers.
        available: String,
    },
    /// A peer's endpoint name is not of the form this provider's names take.
    #[error("the peer sent an endpoint name of {0}")]
    PeerName(String),
    /// A value passed to the safe layer is out of range.
    #[error("{0}")]
    Invalid(String),
    /// A busy-poll gave up waiting.
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout {
        /// What did not arrive.
        what: &'static str,
        /// How long it waited, seconds.
        secs: f64,
    },
}

/// Result alias of the fabric layer.
pub type Result<T> = std::result::Result<T, FabricError>;

/// Text of a libfabric error code (positive or negative).
pub fn strerror(code: i32) -> String {
    // SAFETY: fi_strerror returns a pointer to a static, NUL-terminated string for any code.
    unsafe {
        let p = libfabric_sys::fi_strerror(code.abs());
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Turns a libfabric return value (0 or a negative code) into a Result.
pub(crate) fn check(call: &'static str, ret: impl Into<i64>) -> Result<()> {
    let ret = ret.into();
    if ret < 0 {
        let code = (-ret) as i32;
        return Err(FabricError::Call {
            call,
            code,
            message: strerror(code),
        });
    }
    Ok(())
}

/// The error value for a negative libfabric return code.
pub(crate) fn call_error(call: &'static str, ret: i64) -> FabricError {
    let code = ret.unsigned_abs() as i32;
    FabricError::Call {
        call,
        code,
        message: strerror(code),
    }
}
