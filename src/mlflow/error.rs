//! Errors of the MLflow client and of recording.

/// What can go wrong while talking to an MLflow tracking server or recording a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlflowError {
    /// The tracking URI is not an http(s) URL with a valid host and port.
    #[error("MLflow tracking URI {uri:?} is not a usable http:// or https:// URL: {reason}")]
    BadUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached (refused, reset, timed out), even after retrying.
    #[error("MLflow server at {base} is unreachable ({reason}) after {attempts} attempt(s)")]
    Unreachable {
        /// The server's base URL.
        base: String,
        /// The last transport error.
        reason: String,
        /// Requests tried.
        attempts: u32,
    },
    /// The server answered with an error status.
    #[error("MLflow {endpoint} failed: HTTP {status} {code}: {message}")]
    Api {
        /// The API path called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` (empty when the body carried none).
        code: String,
        /// MLflow's message, or the start of the body.
        message: String,
    },
    /// The server's answer could not be understood.
    #[error("MLflow {endpoint}: unexpected answer: {message}")]
    Decode {
        /// The API path called.
        endpoint: String,
        /// What was wrong with it.
        message: String,
    },
    /// The experiment exists but is deleted, so runs cannot be created in it.
    #[error("MLflow experiment {name:?} is deleted; restore it or record into another experiment")]
    ExperimentDeleted {
        /// Experiment name.
        name: String,
    },
    /// The run's artifacts are not served by the tracking server's artifact proxy.
    #[error("run artifacts at {artifact_uri:?} are not served through the tracking server (start it with --serve-artifacts)")]
    ArtifactsNotProxied {
        /// The run's artifact URI.
        artifact_uri: String,
    },
    /// Paging through search results did not end.
    #[error("MLflow runs/search returned more than {pages} pages; giving up")]
    TooManyPages {
        /// Pages read before giving up.
        pages: usize,
    },
}

impl MlflowError {
    /// The MLflow `error_code`, when the server sent one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}
