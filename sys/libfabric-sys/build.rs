//! Finds libfabric, generates its bindings and compiles the shim for its static-inline API.

use std::env;
use std::path::{Path, PathBuf};

/// Where libfabric's headers and library were found.
struct Found {
    include: Vec<PathBuf>,
    how: String,
}

fn from_prefix(prefix: &Path, how: &str) -> Option<Found> {
    let header = prefix.join("include/rdma/fabric.h");
    if !header.exists() {
        return None;
    }
    let libdir = ["lib", "lib64"]
        .iter()
        .map(|d| prefix.join(d))
        .find(|d| d.join("libfabric.so").exists() || d.join("libfabric.a").exists())?;
    println!("cargo:rustc-link-search=native={}", libdir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", libdir.display());
    println!("cargo:rustc-link-lib=fabric");
    Some(Found {
        include: vec![prefix.join("include")],
        how: format!("{how} ({})", prefix.display()),
    })
}

fn find() -> Result<Found, String> {
    println!("cargo:rerun-if-env-changed=LIBFABRIC_DIR");
    // pkg-config first, unless the user pointed us somewhere explicitly.
    if env::var_os("LIBFABRIC_DIR").is_none() {
        if let Ok(lib) = pkg_config::Config::new()
            .atleast_version("1.10")
            .probe("libfabric")
        {
            return Ok(Found {
                include: lib.include_paths,
                how: format!("pkg-config libfabric {}", lib.version),
            });
        }
    }
    if let Some(dir) = env::var_os("LIBFABRIC_DIR") {
        let dir = PathBuf::from(dir);
        return from_prefix(&dir, "$LIBFABRIC_DIR").ok_or_else(|| {
            format!(
                "LIBFABRIC_DIR={} has no include/rdma/fabric.h with lib/libfabric.so beside it",
                dir.display()
            )
        });
    }
    if let Some(found) = from_prefix(Path::new("/opt/amazon/efa"), "EFA installer prefix") {
        return Ok(found);
    }
    Err("libfabric was not found by pkg-config, $LIBFABRIC_DIR or /opt/amazon/efa".into())
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    let found = match find() {
        Ok(f) => f,
        Err(why) => {
            panic!(
                "\n\nlibfabric-sys: {why}.\n\
                 Install it (Debian/Ubuntu: `apt-get install libfabric-dev pkg-config`, or run \
                 scripts/setup.sh), or set LIBFABRIC_DIR to a libfabric prefix \
                 (the EFA installer uses /opt/amazon/efa), or PKG_CONFIG_PATH to its pkgconfig folder.\n"
            );
        }
    };
    println!("cargo:warning=libfabric-sys: using {}", found.how);
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let here =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let extern_c = out.join("extern");

    let mut builder = bindgen::Builder::default()
        .header(here.join("wrapper.h").to_string_lossy())
        .allowlist_function("fi_.*|kvxfer_.*")
        .allowlist_type("fi_.*|fid_.*|fid|FI_.*")
        .allowlist_var("FI_.*|FI_E.*")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&extern_c)
        .derive_default(true)
        .prepend_enum_name(false)
        .layout_tests(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for inc in &found.include {
        builder = builder.clang_arg(format!("-I{}", inc.display()));
    }
    let bindings = builder.generate().unwrap_or_else(|e| {
        panic!("libfabric-sys: bindgen failed ({e}); is libclang installed (apt-get install libclang-dev clang)?")
    });
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");

    let mut cc = cc::Build::new();
    cc.file(extern_c.with_extension("c"))
        .file(here.join("shim.c"))
        .include(&here)
        .warnings(false);
    for inc in &found.include {
        cc.include(inc);
    }
    cc.compile("kvxfer_fabric_shim");
    println!("cargo:rustc-link-lib=fabric");
}
