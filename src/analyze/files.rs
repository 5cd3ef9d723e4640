//! Finding the JSON files of an input folder and reading them one at a time: no link out of
//! the folder followed, each file read once, special files never opened, depth and size
//! capped, and every file left out named (crate::report::folder).

use std::path::Path;

use serde::Serialize;

use super::AnalyzeError;
use crate::report::folder::{self, Found, Limits};

/// Files larger than this are left out (no result file comes near it); one is held at a time.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Folder levels below the input folder that are read.
const MAX_DEPTH: usize = 8;

/// A file left out of the analysis, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// Path relative to the folder.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// The `*.json` files under a folder, recursively, sorted by path, each read when the
/// iteration reaches it: (path relative to the folder, bytes). Files that could not be
/// read, and those left out by the walk, are in `skipped`.
pub struct JsonFiles {
    found: std::vec::IntoIter<Found>,
    /// Files left out so far, with the reason.
    pub skipped: Vec<Skipped>,
}

impl Iterator for JsonFiles {
    type Item = (String, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        for f in self.found.by_ref() {
            match folder::read_found(&f, MAX_FILE_BYTES) {
                Ok(bytes) => return Some((f.name, bytes)),
                Err(reason) => self.skipped.push(Skipped {
                    file: f.name,
                    reason,
                }),
            }
        }
        None
    }
}

/// Every `*.json` under `dir` (see [`JsonFiles`]); fails only when `dir` cannot be read.
pub fn json_files(dir: &Path) -> Result<JsonFiles, AnalyzeError> {
    let limits = Limits {
        depth: MAX_DEPTH,
        max_bytes: MAX_FILE_BYTES,
    };
    let (found, left) = folder::json_files(dir, limits).map_err(|e| AnalyzeError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    Ok(JsonFiles {
        found: found.into_iter(),
        skipped: left
            .into_iter()
            .map(|l| Skipped {
                file: l.name,
                reason: l.reason,
            })
            .collect(),
    })
}
