//! Where a result file goes: a regular file (new, or existing and replaced atomically, through
//! any symbolic link to it, which stays a link), or a stream (a character device, a FIFO, an
//! open descriptor such as `/dev/stdout`: written in place, once). Anything else is refused,
//! before a run measures.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::write_atomic;

/// Symbolic links followed before a path counts as a loop (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Where a result file's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A regular file (or a new one) at this path, the end of any links: replaced atomically.
    File(PathBuf),
    /// A character device, FIFO or open descriptor: opened and written in place.
    Stream(PathBuf),
}

impl Destination {
    /// Whether the bytes go to a stream, which takes one document (no checkpoints).
    pub fn is_stream(&self) -> bool {
        matches!(self, Destination::Stream(_))
    }
}

/// Why a path cannot take a result file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The path is a folder.
    #[error("{}: is a directory, not a file", .0.display())]
    Directory(PathBuf),
    /// The path is something a result is never written to (a socket, a block device).
    #[error("{}: is a {kind}; a result goes to a regular file, a character device or a FIFO", path.display())]
    NotAFile {
        /// The path (the end of its links).
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The folder the file would be created in does not exist.
    #[error("{}: no directory {}", path.display(), dir.display())]
    NoDirectory {
        /// The path asked for.
        path: PathBuf,
        /// Its folder.
        dir: PathBuf,
    },
    /// The folder does not take new files.
    #[error("{}: cannot create files in {}: {err}", path.display(), dir.display())]
    NotWritable {
        /// The path asked for.
        path: PathBuf,
        /// Its folder.
        dir: PathBuf,
        /// What the file system said.
        err: std::io::Error,
    },
    /// Links that loop or nest too deep.
    #[error("{}: more than {MAX_LINKS} symbolic links (a loop?)", .0.display())]
    LinkLoop(PathBuf),
    /// The path could not be inspected.
    #[error("{}: {err}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What the file system said.
        err: std::io::Error,
    },
}

/// Decides where bytes for `path` go, following its links, and checks that they can go there.
pub fn destination(path: &Path) -> Result<Destination, OutputError> {
    let mut at = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        if is_descriptor(&at) {
            return Ok(Destination::Stream(at));
        }
        let meta = match fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return new_file(path, at),
            Err(err) => return Err(OutputError::Io { path: at, err }),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let to = fs::read_link(&at).map_err(|err| OutputError::Io {
                path: at.clone(),
                err,
            })?;
            at = folder_of(&at).join(to);
            continue;
        }
        return if kind.is_file() {
            new_file(path, at)
        } else if kind.is_dir() {
            Err(OutputError::Directory(at))
        } else if kind.is_char_device() || kind.is_fifo() {
            Ok(Destination::Stream(at))
        } else {
            let kind = if kind.is_block_device() {
                "block device"
            } else if kind.is_socket() {
                "socket"
            } else {
                "special file"
            };
            Err(OutputError::NotAFile { path: at, kind })
        };
    }
    Err(OutputError::LinkLoop(path.to_path_buf()))
}

/// Writes `bytes` where `path` leads (see [`destination`]).
pub fn write_output(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match destination(path).map_err(std::io::Error::other)? {
        Destination::File(p) => write_atomic(&p, bytes),
        Destination::Stream(p) => {
            let mut f = fs::OpenOptions::new().write(true).open(&p)?;
            f.write_all(bytes)?;
            f.flush()
        }
    }
}

/// A regular file at `at` (`path` once its links are followed): its folder must take files.
fn new_file(path: &Path, at: PathBuf) -> Result<Destination, OutputError> {
    let dir = folder_of(&at);
    if !dir.is_dir() {
        return Err(OutputError::NoDirectory {
            path: path.to_path_buf(),
            dir,
        });
    }
    let probe = dir.join(format!(".kvxfer-probe-{}", std::process::id()));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(Destination::File(at))
        }
        Err(err) => Err(OutputError::NotWritable {
            path: path.to_path_buf(),
            dir,
            err,
        }),
    }
}

/// The folder a path's last component lives in (`.` for a bare name).
fn folder_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `p` names an open descriptor (`/dev/fd/N`, `/proc/self/fd/N`, `/proc/PID/fd/N`),
/// whose link text (`pipe:[..]`, `socket:[..]`) is no path.
fn is_descriptor(p: &Path) -> bool {
    let parts: Vec<_> = p.components().map(|c| c.as_os_str()).collect();
    let s = |i: usize| parts.get(i).and_then(|c| c.to_str()).unwrap_or("");
    (s(1) == "dev" && s(2) == "fd" && parts.len() == 4)
        || (s(1) == "proc" && s(3) == "fd" && parts.len() == 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_lead_to_their_file_and_special_files_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        assert_eq!(destination(&link).unwrap(), Destination::File(real.clone()));
        write_output(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        // A dangling link creates the file it names.
        let dangling = dir.path().join("d.json");
        std::os::unix::fs::symlink("made.json", &dangling).unwrap();
        write_output(&dangling, b"made").unwrap();
        assert_eq!(fs::read(dir.path().join("made.json")).unwrap(), b"made");
        // A loop, a folder, a socket.
        let a = dir.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert!(matches!(destination(&a), Err(OutputError::LinkLoop(_))));
        assert!(matches!(
            destination(dir.path()),
            Err(OutputError::Directory(_))
        ));
        let sock = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(matches!(
            destination(&sock),
            Err(OutputError::NotAFile { kind: "socket", .. })
        ));
        assert!(destination(Path::new("/dev/null")).unwrap().is_stream());
        assert!(destination(Path::new("/dev/stdout")).unwrap().is_stream());
        assert!(matches!(
            destination(&dir.path().join("no/such/r.json")),
            Err(OutputError::NoDirectory { .. })
        ));
    }
}
