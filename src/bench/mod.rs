//! The measurement loops: each takes set-up objects and returns samples; none parses options
//! or prints.

pub mod clock;
pub mod memcpy;
pub mod pattern;
pub mod pingpong;
pub mod rma_pingpong;
pub mod tag_bw;
pub mod xfer;

/// Errors of a measurement loop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The fabric failed.
    #[error(transparent)]
    Fabric(#[from] crate::fabric::FabricError),
    /// UCX failed.
    #[error(transparent)]
    Ucx(#[from] crate::ucx::UcxError),
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
    /// A message arrived with the wrong length.
    #[error("received {got} bytes where {expected} were sent")]
    Length { expected: usize, got: usize },
}
