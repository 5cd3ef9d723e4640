//! Reading a folder of result files as a hostile folder could be laid out: no link to a folder
//! outside it is followed, every file is read once, FIFOs and devices are never opened, depth
//! and size are capped, and every `*.json` left out is named with the reason.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How far and how big.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Folder levels below the top one that are read (0: the top folder alone).
    pub depth: usize,
    /// Largest file read, bytes.
    pub max_bytes: u64,
}

/// A `*.json` file found, not yet read.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Path relative to the folder, as the user named it (links included).
    pub name: String,
    /// Path to open.
    pub path: PathBuf,
}

/// A `*.json` file (or a folder, or a link) left out, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    /// Path relative to the folder; a folder ends with `/`.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// Lists the `*.json` files under `dir` within `limits`, sorted by name, and what was left
/// out. Fails only when `dir` itself cannot be read.
pub fn json_files(dir: &Path, limits: Limits) -> std::io::Result<(Vec<Found>, Vec<LeftOut>)> {
    let root = fs::canonicalize(dir)?;
    let mut w = Walker {
        root,
        limits,
        dirs: HashSet::new(),
        files: HashSet::new(),
        found: Vec::new(),
        left: Vec::new(),
    };
    let top = fs::metadata(dir)?;
    w.dirs.insert((top.dev(), top.ino()));
    w.visit(dir, "", 0, true)?;
    w.found.sort_by(|a, b| a.name.cmp(&b.name));
    w.left.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((w.found, w.left))
}

/// Reads a found file, at most `max_bytes`: opened without blocking and checked to be a
/// regular file again (it may have changed since it was listed).
pub fn read_found(f: &Found, max_bytes: u64) -> Result<Vec<u8>, String> {
    read_regular(&f.path, max_bytes).map_err(|e| e.to_string())
}

/// Why [`read_regular`] read nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read (NotFound among them).
    #[error("unreadable: {0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, socket or device: never read, so never waited on.
    #[error("{0}")]
    NotRegular(String),
    /// Larger than the cap.
    #[error("{0}")]
    TooBig(String),
}

/// Reads the regular file at `path`, at most `max_bytes`; a FIFO, socket or device is refused
/// without waiting on it (opened with O_NONBLOCK, its type checked on the open file).
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(not_regular(&meta.file_type())));
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooBig(too_big(meta.len(), max_bytes)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooBig(too_big(bytes.len() as u64, max_bytes)));
    }
    Ok(bytes)
}

struct Walker {
    root: PathBuf,
    limits: Limits,
    /// Folders read, by device and inode: a link back to one is not read again.
    dirs: HashSet<(u64, u64)>,
    /// Files listed, likewise.
    files: HashSet<(u64, u64)>,
    found: Vec<Found>,
    left: Vec<LeftOut>,
}

impl Walker {
    fn visit(&mut self, dir: &Path, rel: &str, depth: usize, top: bool) -> std::io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if !top => {
                self.leave(format!("{rel}/"), format!("folder unreadable: {e}"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let path = dir.join(&n);
            let name = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            self.entry(&path, name, depth);
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, name: String, depth: usize) {
        let json = path.extension().is_some_and(|x| x == "json");
        let Ok(own) = fs::symlink_metadata(path) else {
            return;
        };
        let link = own.file_type().is_symlink();
        // Through the link, if it is one.
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                if json {
                    self.leave(name, format!("a link to nothing ({e})"));
                }
                return;
            }
        };
        if meta.is_dir() {
            self.folder(path, name, depth, link, &meta);
        } else if json {
            self.file(path, name, &meta);
        }
    }

    fn folder(&mut self, path: &Path, name: String, depth: usize, link: bool, meta: &fs::Metadata) {
        if link {
            let inside = fs::canonicalize(path).is_ok_and(|t| t.starts_with(&self.root));
            if !inside {
                return self.leave(format!("{name}/"), "a link to a folder outside".into());
            }
        }
        if !self.dirs.insert((meta.dev(), meta.ino())) {
            return self.leave(format!("{name}/"), "a link to a folder already read".into());
        }
        if depth >= self.limits.depth {
            if self.limits.depth > 0 {
                let why = format!("deeper than {} folder levels, not read", self.limits.depth);
                self.leave(format!("{name}/"), why);
            }
            return;
        }
        let _ = self.visit(path, &name, depth + 1, false);
    }

    fn file(&mut self, path: &Path, name: String, meta: &fs::Metadata) {
        if !meta.is_file() {
            return self.leave(name, not_regular(&meta.file_type()));
        }
        if meta.len() > self.limits.max_bytes {
            return self.leave(name, too_big(meta.len(), self.limits.max_bytes));
        }
        if !self.files.insert((meta.dev(), meta.ino())) {
            return self.leave(name, "the same file as another name here, read once".into());
        }
        self.found.push(Found {
            name,
            path: path.to_path_buf(),
        });
    }

    fn leave(&mut self, name: String, reason: String) {
        self.left.push(LeftOut { name, reason });
    }
}

fn not_regular(t: &fs::FileType) -> String {
    let what = if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    format!("{what}, not read")
}

fn too_big(len: u64, max: u64) -> String {
    use crate::units::human_size;
    format!(
        "{}, larger than the {} a result file may be",
        human_size(len),
        human_size(max)
    )
}

/// One result file read from a folder.
#[derive(Debug, Clone)]
pub struct ResultFile {
    /// File name.
    pub name: String,
    /// Its bytes, as recorded.
    pub bytes: Vec<u8>,
    /// The parsed document.
    pub doc: super::ResultDoc,
}

/// A file left out of a folder, with the reason.
pub type Skipped = (String, String);

/// The largest result document [`read_folder`] reads.
pub const MAX_RESULT_BYTES: u64 = 64 << 20;

/// Reads every `*.json` directly in `dir` (sorted by name, not recursive) that is a result
/// document; the others (not a document, unreadable, not a regular file, too big) come back
/// with the reason instead. Fails only when `dir` itself cannot be read.
pub fn read_folder(dir: &Path) -> std::io::Result<(Vec<ResultFile>, Vec<Skipped>)> {
    let limits = Limits {
        depth: 0,
        max_bytes: MAX_RESULT_BYTES,
    };
    let (found, left) = json_files(dir, limits)?;
    let mut skipped: Vec<Skipped> = left.into_iter().map(|l| (l.name, l.reason)).collect();
    let mut loaded = Vec::new();
    for f in found {
        let bytes = match read_found(&f, MAX_RESULT_BYTES) {
            Ok(b) => b,
            Err(e) => {
                skipped.push((f.name, e));
                continue;
            }
        };
        match super::ResultDoc::from_json(&bytes) {
            Ok(doc) => loaded.push(ResultFile {
                name: f.name,
                bytes,
                doc,
            }),
            Err(why) => skipped.push((f.name, format!("not a kvxfer.result/v1 document: {why}"))),
        }
    }
    Ok((loaded, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        depth: 8,
        max_bytes: 1 << 10,
    };

    #[test]
    fn links_fifos_depth_and_size_are_bounded_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("e2e");
        let outside = tmp.path().join("sibling");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(dir.join("a.json"), "{}").unwrap();
        fs::write(dir.join("sub/b.json"), "{}").unwrap();
        fs::write(outside.join("c.json"), "{}").unwrap();
        fs::write(dir.join("big.json"), vec![b' '; 2 << 10]).unwrap();
        std::os::unix::fs::symlink(".", dir.join("self")).unwrap();
        std::os::unix::fs::symlink("..", dir.join("loop")).unwrap();
        std::os::unix::fs::symlink("a.json", dir.join("again.json")).unwrap();
        let fifo = dir.join("f.run1.json");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let mut deep = dir.clone();
        for i in 0..12 {
            deep = deep.join(format!("d{i}"));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("deep.json"), "{}").unwrap();

        let (found, left) = json_files(&dir, LIMITS).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.json", "sub/b.json"]);
        let why = |n: &str| {
            left.iter()
                .find(|l| l.name == n)
                .map(|l| l.reason.clone())
                .unwrap_or_else(|| panic!("{n} not named: {left:?}"))
        };
        assert!(why("self/").contains("already read"));
        assert!(why("loop/").contains("outside"));
        assert!(why("again.json").contains("read once"));
        assert!(why("f.run1.json").contains("FIFO"));
        assert!(why("big.json").contains("larger than"));
        assert!(why("d0/d1/d2/d3/d4/d5/d6/d7/d8/").contains("deeper than 8"));
        // Reading checks again, and never waits on a FIFO.
        let f = Found {
            name: "f".into(),
            path: fifo,
        };
        assert!(read_found(&f, 1 << 10).unwrap_err().contains("FIFO"));
        assert_eq!(read_found(&found[0], 1 << 10).unwrap(), b"{}");
        assert!(read_found(&found[0], 1).unwrap_err().contains("larger"));
    }
}
