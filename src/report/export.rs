//! Where a finished result goes (the terminal, a JSON file, a tracking server), behind one trait
//! that the CLI runs in order.

use std::path::PathBuf;

use super::{write_output, ResultDoc};

/// Why a result could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The result file could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        error: std::io::Error,
    },
    /// The tracking server did not take the result.
    #[error("recording to {target}: {error}")]
    Record {
        /// The server, for people: "MLflow at http://127.0.0.1:5000".
        target: String,
        /// What went wrong.
        error: String,
    },
}

/// One destination of a finished result document.
pub trait Exporter {
    /// Sends `doc` on; Ok holds a line for the user about what was done, if there is one.
    fn export(&self, doc: &ResultDoc) -> Result<Option<String>, ExportError>;
}

/// The terminal: prints the table a function renders from the document to stdout.
pub struct Table<F: Fn(&ResultDoc) -> String>(pub F);

impl<F: Fn(&ResultDoc) -> String> Exporter for Table<F> {
    fn export(&self, doc: &ResultDoc) -> Result<Option<String>, ExportError> {
        crate::out!("{}", (self.0)(doc));
        Ok(None)
    }
}

/// A `kvxfer.result/v1` file, written atomically (or a stream, written in place).
pub struct JsonFile(pub PathBuf);

impl Exporter for JsonFile {
    fn export(&self, doc: &ResultDoc) -> Result<Option<String>, ExportError> {
        write_output(&self.0, &doc.to_json()).map_err(|error| ExportError::Write {
            path: self.0.clone(),
            error,
        })?;
        Ok(None)
    }
}

/// Runs each exporter in order, stopping at the first that fails; `note` gets their lines.
pub fn export_all(
    exporters: &[&dyn Exporter],
    doc: &ResultDoc,
    note: &mut dyn FnMut(&str),
) -> Result<(), ExportError> {
    for e in exporters {
        if let Some(line) = e.export(doc)? {
            note(&line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_file_holds_the_document_and_a_bad_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let doc = ResultDoc::new("kvxfer", "memcpy", "L1");
        let mut notes = Vec::new();
        export_all(&[&JsonFile(path.clone())], &doc, &mut |l| {
            notes.push(l.to_string())
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), doc.to_json());
        assert!(notes.is_empty());

        let bad = dir.path().join("no-such-dir/r.json");
        let e = export_all(&[&JsonFile(bad.clone())], &doc, &mut |_| {}).unwrap_err();
        assert_eq!(e.to_string(), format!("writing {}", bad.display()));
        assert!(matches!(e, ExportError::Write { .. }));
    }

    /// An exporter that fails, to see the pipeline stop there.
    struct Refuses;

    impl Exporter for Refuses {
        fn export(&self, _: &ResultDoc) -> Result<Option<String>, ExportError> {
            Err(ExportError::Record {
                target: "a server".into(),
                error: "down".into(),
            })
        }
    }

    #[test]
    fn the_pipeline_stops_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let after = dir.path().join("after.json");
        let doc = ResultDoc::new("kvxfer", "memcpy", "L1");
        let e = export_all(&[&Refuses, &JsonFile(after.clone())], &doc, &mut |_| {}).unwrap_err();
        assert_eq!(e.to_string(), "recording to a server: down");
        assert!(!after.exists());
    }
}
