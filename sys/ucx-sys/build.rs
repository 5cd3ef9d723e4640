//! Finds UCX ($UCX_DIR, then the set-up's copy in `.cache/ucx`, then pkg-config `ucx`) and
//! generates bindings for its UCP API.
//!
//! The library is not linked: the bindings load it at run time. Its folder goes to dependents
//! as `DEP_UCX_LIBDIR` (`links = "ucx"`): a dependency's link arguments never reach the final
//! binary, so the top crate's build script embeds the rpath (where the loader looks) from it.

use build_support::{bindgen, fail, Found, Layout};
use std::env;
use std::path::PathBuf;

/// UCX as installed under a prefix.
const LAYOUT: Layout = Layout {
    header: "include/ucp/api/ucp.h",
    libdirs: &[
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
        "lib/aarch64-linux-gnu",
    ],
    marks: &["libucp.so"],
};

/// Every UCX function kvxfer calls (UCX 1.10 has them all).
const FUNCTIONS: &[&str] = &[
    "ucp_cleanup",
    "ucp_config_read",
    "ucp_config_release",
    "ucp_context_print_info",
    "ucp_context_query",
    "ucp_ep_close_nbx",
    "ucp_ep_create",
    "ucp_ep_flush_nbx",
    "ucp_ep_print_info",
    "ucp_ep_rkey_unpack",
    "ucp_get_nbx",
    "ucp_get_version",
    "ucp_get_version_string",
    "ucp_init_version",
    "ucp_mem_map",
    "ucp_mem_unmap",
    "ucp_put_nbx",
    "ucp_request_cancel",
    "ucp_request_check_status",
    "ucp_request_free",
    "ucp_rkey_buffer_release",
    "ucp_rkey_destroy",
    "ucp_rkey_pack",
    "ucp_tag_recv_nbx",
    "ucp_tag_send_nbx",
    "ucp_worker_create",
    "ucp_worker_destroy",
    "ucp_worker_get_address",
    "ucp_worker_print_info",
    "ucp_worker_progress",
    "ucp_worker_release_address",
    "ucs_status_string",
];

/// The copy scripts/setup.sh unpacks from the libucx-cu12 wheel: `<workspace>/.cache/ucx/libucx`.
fn setup_copy() -> PathBuf {
    let root = build_support::manifest_dir().join("../..");
    root.canonicalize()
        .unwrap_or(root)
        .join(".cache/ucx/libucx")
}

fn find() -> Result<Found, String> {
    println!("cargo:rerun-if-env-changed=UCX_DIR");
    if let Some(dir) = env::var_os("UCX_DIR") {
        let dir = PathBuf::from(dir);
        return build_support::from_prefix(&dir, &LAYOUT, "$UCX_DIR").ok_or_else(|| {
            format!(
                "UCX_DIR={} names no UCX: it has no include/ucp/api/ucp.h with lib/libucp.so \
                 beside it. Set UCX_DIR to a UCX prefix, or unset it to use the set-up's UCX \
                 (scripts/setup.sh) or pkg-config's",
                dir.display()
            )
        });
    }
    let copy = setup_copy();
    let header = copy.join(LAYOUT.header);
    if header.exists() {
        println!("cargo:rerun-if-changed={}", header.display());
        if let Some(found) = build_support::from_prefix(&copy, &LAYOUT, "the set-up's UCX") {
            return Ok(found);
        }
    }
    build_support::from_pkg_config("ucx", "1.10").ok_or_else(|| {
        "UCX (1.10 or later) was not found: not by $UCX_DIR (unset), not in .cache/ucx (run \
         scripts/setup.sh, which installs UCX 1.22), not by pkg-config (package `ucx`)"
            .into()
    })
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    let found = find().unwrap_or_else(|why| fail(&why));
    build_support::record(&found);
    // Not linked: kvxfer loads libucp when a command first needs UCX (see lib.rs).
    build_support::run_path(&found);
    let here = build_support::manifest_dir();
    let builder = bindgen::Builder::default()
        .header(here.join("wrapper.h").to_string_lossy())
        // The functions kvxfer calls, by name: the loader requires each one, so a library
        // from another UCX release loads as long as it has these (ucp_.* would also require
        // what only newer releases add, such as 1.22's ucp_rkey_compare).
        .allowlist_function(FUNCTIONS.join("|"))
        .allowlist_type("ucp_.*|ucs_status_t|ucs_status_ptr_t|ucs_memory_type.*")
        .allowlist_var("UCP_.*|UCS_.*")
        .blocklist_function("ucp_init")
        .dynamic_library_name("Ucp")
        .dynamic_link_require_all(true)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false);
    build_support::write_bindings(builder, &found);
}
