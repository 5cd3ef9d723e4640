//! What the build scripts of libfabric-sys and ucx-sys share: finding a C library (a prefix or
//! pkg-config), naming its folder as the run path (both are loaded at run time, not linked),
//! generating its bindings, and recording where it was found without a `cargo:warning` on
//! every build.
//!
//! Where a library was found is written to `$OUT_DIR/found.txt`, exported to the crate as the
//! compile-time variable `<CRATE>_FOUND` (e.g. `LIBFABRIC_SYS_FOUND`), and printed as a cargo
//! warning only when `KVXFER_SYS_VERBOSE` is set.

use std::env;
use std::path::{Path, PathBuf};
use std::process::exit;

pub use bindgen;

/// The environment variable that turns the "using ..." build message back on.
pub const VERBOSE_VAR: &str = "KVXFER_SYS_VERBOSE";

/// A C library: its headers, its library folder, and how it was found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Folders holding its headers.
    pub include: Vec<PathBuf>,
    /// Folder holding its shared libraries (None when the linker's default path has them).
    pub libdir: Option<PathBuf>,
    /// How it was found, for people: "pkg-config libfabric 1.17.0".
    pub how: String,
}

/// What a library installed under a prefix looks like.
pub struct Layout<'a> {
    /// A header that must exist, relative to the prefix (`include/rdma/fabric.h`).
    pub header: &'a str,
    /// Library folders to try, relative to the prefix, in order.
    pub libdirs: &'a [&'a str],
    /// A file that marks the library folder (`libfabric.so`); any one of these will do.
    pub marks: &'a [&'a str],
}

/// The library installed under `prefix` in `layout`, or None when the header or library is absent.
pub fn from_prefix(prefix: &Path, layout: &Layout, how: &str) -> Option<Found> {
    if !prefix.join(layout.header).exists() {
        return None;
    }
    let libdir = layout
        .libdirs
        .iter()
        .map(|d| prefix.join(d))
        .find(|d| layout.marks.iter().any(|m| d.join(m).exists()))?;
    Some(Found {
        include: vec![prefix.join("include")],
        libdir: Some(libdir),
        how: format!("{how} ({})", prefix.display()),
    })
}

/// The library pkg-config knows as `name` (at least `min_version`), or None.
///
/// pkg-config prints no cargo lines here: nothing is linked ([`run_path`] names the folder).
pub fn from_pkg_config(name: &str, min_version: &str) -> Option<Found> {
    let lib = pkg_config::Config::new()
        .atleast_version(min_version)
        .cargo_metadata(false)
        .probe(name)
        .ok()?;
    Some(Found {
        include: lib.include_paths,
        libdir: lib.link_paths.first().cloned(),
        how: format!("pkg-config {name} {}", lib.version),
    })
}

/// For a library loaded at run time rather than linked: the rpath of this crate's own tests,
/// and the folder as `links` metadata (`DEP_<LINKS>_LIBDIR`), from which kvxfer's build script
/// gives every kvxfer binary the same rpath.
pub fn run_path(found: &Found) {
    if let Some(dir) = &found.libdir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        println!("cargo:libdir={}", dir.display());
    }
}

/// Records where the library was found: `$OUT_DIR/found.txt`, the crate's `<CRATE>_FOUND`
/// variable, and a cargo warning only when [`VERBOSE_VAR`] is set.
pub fn record(found: &Found) {
    let name = crate_name();
    println!("cargo:rerun-if-env-changed={VERBOSE_VAR}");
    let var = format!("{}_FOUND", name.to_uppercase().replace('-', "_"));
    println!("cargo:rustc-env={var}={}", found.how);
    let file = out_dir().join("found.txt");
    if let Err(e) = std::fs::write(&file, format!("{}\n", found.how)) {
        fail(&format!("cannot write {} ({e})", file.display()));
    }
    if env::var_os(VERBOSE_VAR).is_some() {
        println!("cargo:warning={name}: using {}", found.how);
    }
}

/// Generates bindings with `builder` against the library's headers into `$OUT_DIR/bindings.rs`.
pub fn write_bindings(builder: bindgen::Builder, found: &Found) {
    let builder = found
        .include
        .iter()
        .fold(builder, |b, inc| {
            b.clang_arg(format!("-I{}", inc.display()))
        })
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    let bindings = builder.generate().unwrap_or_else(|e| {
        fail(&format!(
            "bindgen failed ({e}); is libclang installed (apt-get install libclang-dev clang)?"
        ))
    });
    let file = out_dir().join("bindings.rs");
    if let Err(e) = bindings.write_to_file(&file) {
        fail(&format!("cannot write {} ({e})", file.display()));
    }
}

/// Stops the build with one line, `error: <crate>: <why>`, and no backtrace.
pub fn fail(why: &str) -> ! {
    eprintln!("error: {}: {why}", crate_name());
    exit(1);
}

/// The folder cargo gave the build script for its outputs.
pub fn out_dir() -> PathBuf {
    PathBuf::from(env::var_os("OUT_DIR").unwrap_or_else(|| fail("cargo did not set OUT_DIR")))
}

/// The folder of the crate being built.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| fail("cargo did not set CARGO_MANIFEST_DIR")),
    )
}

fn crate_name() -> String {
    env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "build-support".into())
}
