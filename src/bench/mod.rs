//! The measurement loops: each takes set-up objects and returns samples; none parses options
//! or prints.

pub mod arrivals;
pub mod clock;
pub mod memcpy;
pub mod open_loop;
pub mod pace;
pub mod pattern;
pub mod pingpong;
pub mod rma_pingpong;
pub mod samples;
pub mod tag_bw;
pub mod xfer;

/// Errors of a measurement loop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The fabric failed.
    #[error(transparent)]
    Fabric(crate::fabric::FabricError),
    /// UCX failed.
    #[error(transparent)]
    Ucx(crate::ucx::UcxError),
    /// The loop, or the library under it, waited longer than the run allows.
    #[error("timed out after {:.1} s waiting for {what}", after.as_secs_f64())]
    Timeout {
        /// What did not arrive.
        what: &'static str,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// A received payload differs from what was sent.
    #[error("data check failed at iteration {iteration}, byte {offset}: expected {expected:#04x}, got {got:#04x}")]
    Verify {
        iteration: u64,
        offset: usize,
        expected: u8,
        got: u8,
    },
    /// The loop was driven in a way it cannot measure, or the peer broke the protocol.
    #[error("{0}")]
    Invalid(String),
    /// The control connection that paces the loop failed (or the peer reported its failure
    /// over it).
    #[error(transparent)]
    Control(crate::bootstrap::BootstrapError),
    /// A message arrived with the wrong length.
    #[error("received {got} bytes where {expected} were sent")]
    Length { expected: usize, got: usize },
    /// A signal asked the process to stop between iterations.
    #[error(transparent)]
    Stopped(#[from] crate::stop::Stopped),
}

/// Checks that a loop's counts meet without wrapping: `warmup + iterations` round trips and
/// `iterations x size x xfers` bytes counted must fit in 64 bits, and one iteration is timed.
/// The error says which numbers and what they come to.
pub fn check_counts(size: u64, iterations: u64, warmup: u64, xfers: u64) -> Result<(), String> {
    if iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    if warmup.checked_add(iterations).is_none() {
        return Err(format!(
            "--warmup {warmup} plus --iterations {iterations} is more iterations than a \
             64-bit count holds"
        ));
    }
    let bytes = iterations as u128 * size as u128 * xfers as u128;
    if bytes > u64::MAX as u128 {
        return Err(format!(
            "--iterations {iterations} of {size} bytes ({xfers} transfers each) counts {bytes} \
             bytes, more than a 64-bit count holds"
        ));
    }
    Ok(())
}

impl From<crate::fabric::FabricError> for BenchError {
    /// A libfabric time-out becomes the loop's own [`BenchError::Timeout`].
    fn from(e: crate::fabric::FabricError) -> BenchError {
        crate::xfer::XferError::from(e).into()
    }
}

impl From<crate::ucx::UcxError> for BenchError {
    /// A UCX time-out becomes the loop's own [`BenchError::Timeout`].
    fn from(e: crate::ucx::UcxError) -> BenchError {
        crate::xfer::XferError::from(e).into()
    }
}

impl From<crate::xfer::XferError> for BenchError {
    /// A transfer end's time-out stays the loop's own [`BenchError::Timeout`].
    fn from(e: crate::xfer::XferError) -> BenchError {
        use crate::xfer::XferError;
        match e {
            XferError::Fabric(e) => BenchError::Fabric(e),
            XferError::Ucx(e) => BenchError::Ucx(e),
            XferError::Timeout { what, after } => BenchError::Timeout { what, after },
            e => BenchError::Invalid(e.to_string()),
        }
    }
}
