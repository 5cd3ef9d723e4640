//! MLflow as an [`Exporter`] of finished results.

use super::{record_doc, Outcome, RecordConfig};
use crate::report::export::{ExportError, Exporter};
use crate::report::ResultDoc;

/// Records each result in an MLflow tracking server, as the file `file_name` would be.
pub struct Mlflow {
    /// The server, experiment and mapping.
    pub cfg: RecordConfig,
    /// The name the result's file has (or would have) on disk.
    pub file_name: String,
}

impl Exporter for Mlflow {
    fn export(&self, doc: &ResultDoc) -> Result<Option<String>, ExportError> {
        let outcome =
            record_doc(&self.cfg, doc, &self.file_name).map_err(|e| ExportError::Record {
                target: format!("MLflow at {}", self.cfg.tracking_uri),
                error: e.to_string(),
            })?;
        Ok(Some(match outcome {
            Outcome::Recorded {
                run_id, run_name, ..
            } => format!("recorded in MLflow as run {run_name} ({run_id})"),
            other => format!("MLflow: {other:?}"),
        }))
    }
}
