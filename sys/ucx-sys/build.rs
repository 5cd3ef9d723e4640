//! Finds UCX (pkg-config `ucx`, then `$UCX_DIR`) and generates bindings for its UCP API.

use std::env;
use std::path::{Path, PathBuf};

/// Where UCX's headers were found, and how.
struct Found {
    include: Vec<PathBuf>,
    how: String,
}

fn from_prefix(prefix: &Path) -> Option<Found> {
    if !prefix.join("include/ucp/api/ucp.h").exists() {
        return None;
    }
    let libdir = ["lib", "lib64"]
        .iter()
        .map(|d| prefix.join(d))
        .find(|d| d.join("libucp.so").exists() || d.join("libucp.a").exists())?;
    println!("cargo:rustc-link-search=native={}", libdir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", libdir.display());
    for lib in ["ucp", "uct", "ucs"] {
        println!("cargo:rustc-link-lib={lib}");
    }
    Some(Found {
        include: vec![prefix.join("include")],
        how: format!("$UCX_DIR ({})", prefix.display()),
    })
}

fn find() -> Result<Found, String> {
    println!("cargo:rerun-if-env-changed=UCX_DIR");
    if env::var_os("UCX_DIR").is_none() {
        if let Ok(lib) = pkg_config::Config::new()
            .atleast_version("1.10")
            .probe("ucx")
        {
            return Ok(Found {
                include: lib.include_paths,
                how: format!("pkg-config ucx {}", lib.version),
            });
        }
    }
    if let Some(dir) = env::var_os("UCX_DIR") {
        let dir = PathBuf::from(dir);
        return from_prefix(&dir).ok_or_else(|| {
            format!(
                "UCX_DIR={} has no include/ucp/api/ucp.h with lib/libucp.so beside it",
                dir.display()
            )
        });
    }
    Err("UCX (1.10 or later) was not found by pkg-config (package `ucx`) or $UCX_DIR".into())
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    let found = match find() {
        Ok(f) => f,
        Err(why) => panic!(
            "\n\nucx-sys: {why}.\n\
             Install it (Debian/Ubuntu: `apt-get install libucx-dev pkg-config`; `ucx-utils` adds \
             ucx_info and ucx_perftest), or set UCX_DIR to a UCX prefix, or PKG_CONFIG_PATH to its \
             pkgconfig folder.\n"
        ),
    };
    println!("cargo:warning=ucx-sys: using {}", found.how);
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
