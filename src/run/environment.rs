//! The environment every result carries: build metadata, host, fabric and variables.

use std::collections::BTreeMap;

use crate::report::Environment;

/// Build metadata and host facts, before any fabric is known.
pub fn base() -> Environment {
    let build = crate::bootstrap::About::this();
    let mut env = Environment {
        host: hostname(),
        kvxfer_version: build.kvxfer,
        git_sha: build.git_sha,
        features: build.features,
        env: fabric_variables(),
        ..Default::default()
    };
    env.extra
        .insert("build_profile".into(), env!("KVXFER_PROFILE").into());
    if let Some(k) = read_trim("/proc/sys/kernel/osrelease") {
        env.extra.insert("kernel".into(), k.into());
    }
    if let Some(cpu) = cpu_model() {
        env.extra.insert("cpu".into(), cpu.into());
    }
    // Always present, null where the kernel lists no caches, so documents keep one shape.
    env.extra
        .insert("llc_bytes".into(), crate::mem::cache::llc_bytes().into());
    env.extra.insert(
        "cpus".into(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
            .into(),
    );
    env
}

/// FI_*, UCX_* and NCCL_*/CUDA_VISIBLE_DEVICES variables of this process.
pub fn fabric_variables() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("FI_") || k.starts_with("UCX_") || k == "CUDA_VISIBLE_DEVICES"
        })
        .collect()
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn hostname() -> String {
    read_trim("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
}

/// [`base`] plus the facts of the fabric a connection was opened on.
pub fn with_fabric(info: &crate::fabric::Info) -> Environment {
    let mut env = base();
    let v = info.view();
    env.libfabric_version = Some(crate::fabric::runtime_version());
    env.provider = Some(v.provider());
    env.fabric = Some(v.fabric_name());
    env.domain = Some(v.domain_name());
    env.extra
        .insert("max_msg_size".into(), (v.max_msg_size() as u64).into());
    env.extra
        .insert("inject_size".into(), v.inject_size().into());
    env.extra.insert(
        "mr_mode".into(),
        crate::fabric::mr_mode::names(v.mr_mode()).into(),
    );
    env
}

/// Records the UCX loaded at run time: its version and library file.
pub fn set_ucx_runtime(env: &mut Environment) {
    env.ucx_version = Some(crate::ucx::version());
    env.ucx_library = crate::ucx::library_path();
}

/// Records what UCX chose and offered: the endpoint's lanes (`ucx_transports`), its
/// description with the protocol thresholds (`ucx_endpoint_info`), the context's resources
/// (`ucx_resources`), and the UCX version.
pub fn add_ucx(env: &mut Environment, ctx: &crate::ucx::Context, ep: &crate::ucx::Endpoint) {
    set_ucx_runtime(env);
    let extra = &mut env.extra;
    extra.insert("ucx_transports".into(), ep.transports().into());
    extra.insert("ucx_endpoint_info".into(), ep.print_info().trim().into());
    let resources: Vec<String> = ctx
        .resources()
        .iter()
        .map(|r| format!("{}/{}", r.transport, r.device))
        .collect();
    extra.insert("ucx_resources".into(), resources.into());
}
