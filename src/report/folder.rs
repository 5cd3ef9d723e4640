//! A folder of result documents, read as `kvxfer record` and `kvxfer run` record it.

use std::path::Path;

use super::ResultDoc;

/// One result file read from a folder.
#[derive(Debug, Clone)]
pub struct ResultFile {
    /// File name.
    pub name: String,
    /// Its bytes, as recorded.
    pub bytes: Vec<u8>,
    /// The parsed document.
    pub doc: ResultDoc,
}

/// A file left out of a folder, with the reason.
pub type Skipped = (String, String);

/// Reads every `*.json` of `dir` (sorted by name, not recursive); files that are not result
/// documents come back with the reason instead.
pub fn read_folder(dir: &Path) -> std::io::Result<(Vec<ResultFile>, Vec<Skipped>)> {
    let mut paths = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_file() && path.extension().is_some_and(|x| x == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut loaded = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                skipped.push((name, format!("cannot be read: {e}")));
                continue;
            }
        };
        match ResultDoc::from_json(&bytes) {
            Ok(doc) => loaded.push(ResultFile { name, bytes, doc }),
            Err(why) => skipped.push((name, format!("not a kvxfer.result/v1 document: {why}"))),
        }
    }
    Ok((loaded, skipped))
}
