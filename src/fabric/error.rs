//! The fabric layer's error type.

use std::ffi::CStr;
use std::ptr::NonNull;

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
    /// The provider offers no domain of the name asked for.
    #[error("provider {provider:?} has no domain {domain:?}; it offers: {offered}")]
    NoDomain {
        /// The provider.
        provider: String,
        /// The domain asked for.
        domain: String,
        /// The domains it offers, comma-separated.
        offered: String,
    },
    /// libfabric could not be loaded (it is loaded on first use).
    #[error("libfabric could not be loaded: {0}")]
    NotLoaded(String),
    /// A value passed to the safe layer is out of range.
    #[error("{0}")]
    Invalid(String),
    /// A call that opens a handle reported success but wrote none.
    #[error("{call} reported success but gave no handle")]
    NoHandle {
        /// The libfabric function.
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
    /// A signal asked the process to stop while this waited.
    #[error(transparent)]
    Stopped(#[from] crate::stop::Stopped),
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

/// The text of a failed completion: the provider's own for its errno, or libfabric's for the
/// error code where the provider gave no errno (a provider's text for errno 0 reads "Success").
pub(crate) fn completion_text(
    code: i32,
    prov_errno: i32,
    provider_text: impl FnOnce() -> Option<String>,
) -> String {
    if prov_errno != 0 {
        if let Some(text) = provider_text() {
            return text;
        }
    }
    strerror(code)
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

/// Checks a call that opens a handle: the handle it wrote into `raw`, or the call's error (a
/// NULL handle after a success is one too, never a panic).
pub(crate) fn opened<T>(
    call: &'static str,
    ret: impl Into<i64>,
    raw: *mut T,
) -> Result<NonNull<T>> {
    check(call, ret)?;
    NonNull::new(raw).ok_or(FabricError::NoHandle { call })
}

/// Maps a post's return value: Ok(true) posted, Ok(false) the queue is full (FI_EAGAIN: retry
/// after progress).
#[inline]
pub(crate) fn posted(call: &'static str, ret: isize) -> Result<bool> {
    if ret == 0 {
        Ok(true)
    } else if ret == -(libfabric_sys::FI_EAGAIN as isize) {
        Ok(false)
    } else {
        Err(call_error(call, ret as i64))
    }
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

#[cfg(test)]
mod opened_tests {
    use super::*;

    #[test]
    fn an_opening_call_gives_its_handle_its_error_or_no_handle_never_a_panic() {
        let mut x = 7u32;
        let p: *mut u32 = &mut x;
        assert_eq!(opened("fi_x_open", 0, p).unwrap().as_ptr(), p);
        match opened::<u32>("fi_x_open", -(libfabric_sys::FI_ENOMEM as i64), p) {
            Err(FabricError::Call { call, code, .. }) => {
                assert_eq!((call, code), ("fi_x_open", libfabric_sys::FI_ENOMEM as i32))
            }
            other => panic!("{other:?}"),
        }
        match opened::<u32>("fi_x_open", 0, std::ptr::null_mut()) {
            Err(FabricError::NoHandle { call }) => assert_eq!(call, "fi_x_open"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_completion_without_a_provider_errno_reads_as_its_error_code() {
        let enotconn = libfabric_sys::FI_ENOTCONN as i32;
        let asked = std::cell::Cell::new(false);
        let text = completion_text(enotconn, 0, || {
            asked.set(true);
            Some("Success".into())
        });
        assert!(!asked.get());
        assert_eq!(text, strerror(enotconn));
        assert_ne!(text, strerror(0));
        let own = completion_text(enotconn, 107, || Some("the provider's".into()));
        assert_eq!(own, "the provider's");
        assert_eq!(completion_text(enotconn, 107, || None), strerror(enotconn));
    }

    #[test]
    fn a_post_is_posted_retried_or_failed() {
        assert!(posted("fi_send", 0).unwrap());
        assert!(!posted("fi_send", -(libfabric_sys::FI_EAGAIN as isize)).unwrap());
        assert!(posted("fi_send", -(libfabric_sys::FI_EINVAL as isize)).is_err());
    }
}
