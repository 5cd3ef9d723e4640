//! Finding the JSON files of an input folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::AnalyzeError;

/// Files larger than this are left out (no result file comes near it).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// A file left out of the analysis, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// Path relative to the folder.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// Every `*.json` under `dir`, recursively, sorted by path: (path relative to `dir`, bytes).
pub fn json_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, AnalyzeError> {
    let mut paths = Vec::new();
    walk(dir, &mut paths, 0)?;
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let name = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        if len > MAX_FILE_BYTES {
            continue;
        }
        let bytes = std::fs::read(&p).map_err(|e| AnalyzeError::Io {
            path: p.clone(),
            source: e,
        })?;
        out.push((name, bytes));
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), AnalyzeError> {
    let io = |e| AnalyzeError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    for e in std::fs::read_dir(dir).map_err(io)? {
        let path = e.map_err(io)?.path();
        if path.is_dir() && depth < 8 {
            walk(&path, out, depth + 1)?;
        } else if path.is_file() && path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
    Ok(())
}
