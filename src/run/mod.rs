//! Runs: set-up objects built from a configuration, a loop driven over them, a result document
//! made from the samples. The CLI calls these; they print nothing.

pub mod environment;
pub mod kv_profile;
pub mod memory;
pub mod pace;
pub mod path;
pub mod pingpong;
pub mod plan;
pub mod sched;
pub mod segments;
pub mod two_sided;
pub mod ucx_perf;
pub mod xfer;

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
    /// The group of processes meeting through etcd failed, or one of its ranks is gone.
    #[error(transparent)]
    Group(#[from] crate::bootstrap::group::GroupError),
    /// A transfer end failed outside the loop (set-up, region offer).
    #[error(transparent)]
    Xfer(crate::xfer::XferError),
    /// The measurement loop failed.
    #[error("{at}: {error}")]
    Bench {
        at: String,
        error: crate::bench::BenchError,
    },
    /// The configuration cannot run.
    #[error("{0}")]
    Config(String),
    /// Memory for the run could not be allocated.
    #[error(transparent)]
    Alloc(#[from] crate::mem::MemError),
    /// A thread of the run could not be started (the cause is the error's source, which an
    /// error chain prints once).
    #[error("cannot start {what}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// Why the system refused it.
        source: std::io::Error,
    },
    /// The workers of one side did not all reach a barrier in time.
    #[error("workers did not meet within {:.1} s", after.as_secs_f64())]
    Barrier {
        /// How long the barrier waited.
        after: std::time::Duration,
    },
    /// This worker stopped because another worker of the run failed (that one's error names
    /// the cause).
    #[error("another worker failed")]
    Aborted,
    /// A signal asked the process to stop before the run finished.
    #[error(transparent)]
    Stopped(#[from] crate::stop::Stopped),
    /// A thread of the run panicked.
    #[error("the {0} side of the run crashed")]
    Crashed(&'static str),
    /// The run failed after it had set up: `doc` holds what was measured (status partial, or
    /// failed when nothing was), with the error in its `errors`.
    #[error("{error}")]
    Partial {
        /// What was measured.
        doc: Box<crate::report::ResultDoc>,
        /// Why the run stopped.
        error: Box<RunError>,
    },
}

impl From<crate::xfer::XferError> for RunError {
    /// A library's failure under a transfer end stays that library's error.
    fn from(e: crate::xfer::XferError) -> RunError {
        use crate::xfer::XferError;
        match e {
            XferError::Fabric(e) => RunError::Fabric(e),
            XferError::Ucx(e) => RunError::Ucx(e),
            e => RunError::Xfer(e),
        }
    }
}

impl RunError {
    /// A loop's failure at `at`; the control connection's own failure (the peer gone, or its
    /// reported failure) stays the bootstrap's error.
    pub fn bench(at: impl Into<String>, error: crate::bench::BenchError) -> RunError {
        match error {
            crate::bench::BenchError::Control(b) => RunError::Bootstrap(b),
            error => RunError::Bench {
                at: at.into(),
                error,
            },
        }
    }

    /// A loop's failure whose cause is the control connection, as the bootstrap's error
    /// ([`RunError::bench`]); any other error as it is.
    pub fn control_first(self) -> RunError {
        match self {
            RunError::Bench { at, error } => RunError::bench(at, error),
            e => e,
        }
    }

    /// The cause, looking through [`RunError::Partial`].
    pub fn cause(&self) -> &RunError {
        match self {
            RunError::Partial { error, .. } => error.cause(),
            e => e,
        }
    }
}

/// Closes a run's document: complete when `outcome` is Ok; otherwise partial (or failed when
/// it holds no result), the error recorded in it (or the signal that stopped the run), and
/// returned inside [`RunError::Partial`].
pub(crate) fn conclude(
    mut doc: crate::report::ResultDoc,
    outcome: Result<(), RunError>,
) -> Result<crate::report::ResultDoc, RunError> {
    use crate::report::{ErrorEntry, Status};
    doc.finished_at = crate::report::schema::now_rfc3339();
    match outcome {
        Ok(()) => {
            doc.status = Status::Complete;
            Ok(doc)
        }
        Err(error) => {
            doc.status = if doc.results.is_empty() {
                Status::Failed
            } else {
                Status::Partial
            };
            // A signal's request to stop is the cause, whatever the wait it cut short said.
            let message = match crate::stop::requested() {
                Some(s) => crate::stop::Stopped(s).to_string(),
                None => error.to_string(),
            };
            doc.errors.push(ErrorEntry {
                at: "run".into(),
                message,
            });
            Err(RunError::Partial {
                doc: Box::new(doc),
                error: Box::new(error),
            })
        }
    }
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
        // What the initiator measured stays; the target's error names the cause.
        (Err(RunError::Partial { doc, error }), Err(t))
            if matches!(*error, RunError::Bootstrap(_)) =>
        {
            Err(RunError::Partial {
                doc,
                error: Box::new(t),
            })
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(t)) => Err(t),
    }
}
