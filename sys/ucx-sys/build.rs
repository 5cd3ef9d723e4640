//! Finds UCX ($UCX_DIR, then the set-up's copy in `.cache/ucx`, then pkg-config `ucx`) and
//! generates bindings for its UCP API.
//!
//! The library folder goes to dependents as `DEP_UCX_LIBDIR` (`links = "ucx"`): a dependency's
//! link arguments never reach the final binary, so the top crate's build script embeds the
//! rpath from it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::exit;

/// Where UCX's headers and libraries were found, and how.
struct Found {
    include: Vec<PathBuf>,
    libdir: Option<PathBuf>,
    how: String,
}

/// A UCX installed under `prefix` (include/ucp/api/ucp.h, lib/libucp.so), or None.
fn from_prefix(prefix: &Path, how: &str) -> Option<Found> {
    if !prefix.join("include/ucp/api/ucp.h").exists() {
        return None;
    }
    let libdir = [
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
        "lib/aarch64-linux-gnu",
    ]
    .iter()
    .map(|d| prefix.join(d))
    .find(|d| d.join("libucp.so").exists())?;
    println!("cargo:rustc-link-search=native={}", libdir.display());
    for lib in ["ucp", "uct", "ucs"] {
        println!("cargo:rustc-link-lib={lib}");
    }
    Some(Found {
        include: vec![prefix.join("include")],
        libdir: Some(libdir),
        how: format!("{how} ({})", prefix.display()),
    })
}

/// The copy scripts/setup.sh unpacks from the libucx-cu12 wheel: `<workspace>/.cache/ucx/libucx`.
fn setup_copy() -> PathBuf {
    let here =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = here.join("../..");
    root.canonicalize()
        .unwrap_or(root)
        .join(".cache/ucx/libucx")
}

fn find() -> Result<Found, String> {
    println!("cargo:rerun-if-env-changed=UCX_DIR");
    if let Some(dir) = env::var_os("UCX_DIR") {
        let dir = PathBuf::from(dir);
        return from_prefix(&dir, "$UCX_DIR").ok_or_else(|| {
            format!(
                "UCX_DIR={} names no UCX: it has no include/ucp/api/ucp.h with lib/libucp.so \
                 beside it. Set UCX_DIR to a UCX prefix, or unset it to use the set-up's UCX \
                 (scripts/setup.sh) or pkg-config's",
                dir.display()
            )
        });
    }
    let copy = setup_copy();
    let header = copy.join("include/ucp/api/ucp.h");
    if header.exists() {
        println!("cargo:rerun-if-changed={}", header.display());
        if let Some(found) = from_prefix(&copy, "the set-up's UCX") {
            return Ok(found);
        }
    }
    if let Ok(lib) = pkg_config::Config::new()
        .atleast_version("1.10")
        .probe("ucx")
    {
        return Ok(Found {
            include: lib.include_paths,
            libdir: lib.link_paths.first().cloned(),
            how: format!("pkg-config ucx {}", lib.version),
        });
    }
    Err(
        "UCX (1.10 or later) was not found: not by $UCX_DIR (unset), not in .cache/ucx (run \
         scripts/setup.sh, which installs UCX 1.22), not by pkg-config (package `ucx`)"
            .into(),
    )
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    let found = match find() {
        Ok(f) => f,
        Err(why) => {
            eprintln!("error: ucx-sys: {why}");
            exit(1);
        }
    };
    println!("cargo:warning=ucx-sys: using {}", found.how);
    if let Some(libdir) = &found.libdir {
        // Our own tests; kvxfer's build script does the same for its binaries.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", libdir.display());
        println!("cargo:libdir={}", libdir.display());
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let here =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut builder = bindgen::Builder::default()
        .header(here.join("wrapper.h").to_string_lossy())
        .allowlist_function("ucp_.*|ucs_status_string|ucs_memory_type_names")
        .allowlist_type("ucp_.*|ucs_status_t|ucs_status_ptr_t|ucs_memory_type.*")
        .allowlist_var("UCP_.*|UCS_.*")
        .blocklist_function("ucp_init")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for inc in &found.include {
        builder = builder.clang_arg(format!("-I{}", inc.display()));
    }
    let bindings = builder.generate().unwrap_or_else(|e| {
        panic!("ucx-sys: bindgen failed ({e}); is libclang installed (apt-get install libclang-dev clang)?")
    });
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}
