//! Finds libfabric (pkg-config, then $LIBFABRIC_DIR, then /opt/amazon/efa), generates its
//! bindings, and compiles the shim for its static-inline API and its exported functions, which
//! load libfabric on first use (the executable's run path names the folder it was found in).

use build_support::{bindgen, fail, Found, Layout};
use std::env;
use std::path::{Path, PathBuf};

/// libfabric as installed under a prefix.
const LAYOUT: Layout = Layout {
    header: "include/rdma/fabric.h",
    libdirs: &["lib", "lib64"],
    marks: &["libfabric.so.1", "libfabric.so"],
};

fn find() -> Result<Found, String> {
    println!("cargo:rerun-if-env-changed=LIBFABRIC_DIR");
    // pkg-config first, unless the user pointed us somewhere explicitly.
    if let Some(dir) = env::var_os("LIBFABRIC_DIR") {
        let dir = PathBuf::from(dir);
        return build_support::from_prefix(&dir, &LAYOUT, "$LIBFABRIC_DIR").ok_or_else(|| {
            format!(
                "LIBFABRIC_DIR={} has no include/rdma/fabric.h with lib/libfabric.so beside it",
                dir.display()
            )
        });
    }
    if let Some(found) = build_support::from_pkg_config("libfabric", "1.10") {
        return Ok(found);
    }
    let efa = Path::new("/opt/amazon/efa");
    build_support::from_prefix(efa, &LAYOUT, "EFA installer prefix").ok_or_else(|| {
        "libfabric was not found by pkg-config, $LIBFABRIC_DIR or /opt/amazon/efa. Install it \
         (Debian/Ubuntu: `apt-get install libfabric-dev pkg-config`, or run scripts/setup.sh), \
         or set LIBFABRIC_DIR to a libfabric prefix (the EFA installer uses /opt/amazon/efa), \
         or PKG_CONFIG_PATH to its pkgconfig folder"
            .into()
    })
}

/// The functions libfabric exports that the shim defines (shim.c binds each).
const EXPORTED: [&str; 8] = [
    "fi_getinfo",
    "fi_freeinfo",
    "fi_dupinfo",
    "fi_fabric",
    "fi_open",
    "fi_strerror",
    "fi_tostr",
    "fi_version",
];

/// The shared library the build found: in its folder, else where the compiler's linker
/// would look.
fn library_file(found: &Found, cc: &cc::Build) -> Option<PathBuf> {
    if let Some(dir) = &found.libdir {
        let names = ["libfabric.so.1", "libfabric.so"];
        return names.iter().map(|n| dir.join(n)).find(|p| p.exists());
    }
    let out = cc
        .get_compiler()
        .to_command()
        .arg("-print-file-name=libfabric.so.1")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (path.is_absolute() && path.exists()).then_some(path)
}

/// Each exported function's default version in `lib` (`fi_getinfo@@FABRIC_1.3`), the one a
/// link against it would have bound: the layout of `struct fi_info` these headers describe.
/// A newer libfabric keeps that version beside its own, so the shim asks for it by name.
fn default_versions(lib: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let out = std::process::Command::new("readelf")
        .args(["--dyn-syms", "--wide"])
        .arg(lib)
        .output()
        .map_err(|e| format!("readelf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut got = Vec::new();
    for name in EXPORTED {
        let prefix = format!("{name}@@");
        let version = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix))
            .ok_or_else(|| format!("{} has no default version of {name}", lib.display()))?;
        got.push((name, version.to_string()));
    }
    Ok(got)
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    let found = find().unwrap_or_else(|why| fail(&why));
    build_support::record(&found);
    let here = build_support::manifest_dir();
    let extern_c = build_support::out_dir().join("extern");

    let builder = bindgen::Builder::default()
        .header(here.join("wrapper.h").to_string_lossy())
        .allowlist_function("fi_.*|kvxfer_.*")
        .allowlist_type("fi_.*|fid_.*|fid|FI_.*")
        .allowlist_var("FI_.*|FI_E.*")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&extern_c)
        .derive_default(true)
        .prepend_enum_name(false)
        .layout_tests(false);
    build_support::write_bindings(builder, &found);

    let mut cc = cc::Build::new();
    cc.file(extern_c.with_extension("c"))
        .file(here.join("shim.c"))
        .include(&here)
        .flag("-fvisibility=hidden")
        .warnings(false);
    for inc in &found.include {
        cc.include(inc);
    }
    let lib = library_file(&found, &cc).ok_or_else(|| {
        format!(
            "{}: no libfabric.so.1 to read its symbol versions from",
            found.how
        )
    });
    match lib.and_then(|l| default_versions(&l)) {
        Ok(versions) => {
            for (name, version) in versions {
                cc.define(
                    &format!("KVXFER_VER_{name}"),
                    Some(format!("\"{version}\"").as_str()),
                );
            }
        }
        // Unversioned symbols (or no readelf): the shim takes each function's default.
        Err(why) => println!("cargo:warning=libfabric-sys: {why}; binding default versions"),
    }
    cc.compile("kvxfer_fabric_shim");
    // libfabric is loaded on first use (shim.c), from where the linker would have found it:
    // the run path names its folder, and nothing links it.
    build_support::run_path(&found);
    println!("cargo:rustc-link-lib=dl");
}
