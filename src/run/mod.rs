//! Runs: set-up objects built from a configuration, a loop driven over them, a result document
//! made from the samples. The CLI calls these; they print nothing.

pub mod environment;
pub mod pingpong;
pub mod ucx_perf;

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
    #[error("{at}: {source}")]
    Bench {
        at: String,
        source: crate::bench::BenchError,
    },
    /// The configuration cannot run.
    #[error("{0}")]
    Config(String),
    /// A thread of the run panicked.
    #[error("the {0} side of the run crashed")]
    Crashed(&'static str),
}
