//! Records build metadata (version, git commit, features) that every result's environment carries.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Embeds the folder of the library a -sys crate found (`links` metadata `DEP_<LINKS>_LIBDIR`:
/// UCX, libfabric; both loaded at run time) as an rpath of every binary, test and bench of
/// kvxfer, so they load that library without LD_LIBRARY_PATH. A system folder needs none.
/// `KVXFER_<LINKS>_LIBDIR` keeps the folder (empty when none was named).
fn dep_rpath(links: &str) {
    let var = format!("DEP_{links}_LIBDIR");
    println!("cargo:rerun-if-env-changed={var}");
    let libdir = std::env::var(&var).unwrap_or_default();
    println!("cargo:rustc-env=KVXFER_{links}_LIBDIR={libdir}");
    if libdir.is_empty() {
        return;
    }
    let system = ["/usr/lib", "/lib", "/usr/lib64", "/lib64"];
    if !system.iter().any(|d| libdir.starts_with(d)) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    }
}

fn main() {
    let sha = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| !s.is_empty())
        .unwrap_or(false);
    let sha = if dirty { format!("{sha}-dirty") } else { sha };
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase()))
        .collect();
    features.sort();
    println!("cargo:rustc-env=KVXFER_GIT_SHA={sha}");
    println!("cargo:rustc-env=KVXFER_FEATURES={}", features.join(","));
    println!(
        "cargo:rustc-env=KVXFER_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    dep_rpath("UCX");
    dep_rpath("FABRIC");
    if let Some(head) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={head}/HEAD");
        println!("cargo:rerun-if-changed={head}/index");
    }
}
