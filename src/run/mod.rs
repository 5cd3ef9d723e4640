//! Runs: set-up objects built from a configuration, a loop driven over them, a result document
//! made from the samples. The CLI calls these; they print nothing.

pub mod environment;
pub mod kv_profile;
mod kv_profile_report;
pub mod pair;
pub mod pingpong;
pub mod rma_pingpong;
mod sync;
pub mod ucx_perf;
pub mod xfer;
mod xfer_ends;
mod xfer_report;
mod xfer_worker;

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The fabric failed.
    #[error(transparent)]
    Fabric(#[from] crate::fabric::FabricError),
    /// UCX failed.
    #[error(transparent)]
    Ucx(#[from] crate::ucx::UcxError),
    /// The control channel failed.
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    /// The measurement loop failed.
    #[error("{at}: {error}")]
    Bench {
        at: String,
        error: crate::bench::BenchError,
    },
    /// The configuration cannot run.
    #[error("{0}")]
    Config(String),
    /// A thread of the run panicked.
    #[error("the {0} side of the run crashed")]
    Crashed(&'static str),
}

/// Joins a local run's target thread and picks the error that names the cause: the
/// initiator's, unless it only saw the target go away.
pub(crate) fn join_local<T, U>(
    ours: Result<T, RunError>,
    target: std::thread::JoinHandle<Result<U, RunError>>,
) -> Result<T, RunError> {
    let theirs = target.join().map_err(|_| RunError::Crashed("target"))?;
    match (ours, theirs) {
        (Ok(o), Ok(_)) => Ok(o),
        (Err(RunError::Bootstrap(_)), Err(t)) => Err(t),
        (Err(e), _) => Err(e),
        (Ok(_), Err(t)) => Err(t),
    }
}
