//! `kvxfer info`: what libfabric offers on this machine.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kvxfer::fabric::{self, EndpointType, Hints, InfoList, InfoRef};
use kvxfer::topo::GpuListing;
use kvxfer::ucx;
use serde::Serialize;

/// Options of `kvxfer info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Only this provider (e.g. tcp, shm, efa).
    #[arg(short, long)]
    provider: Option<String>,
    /// Only this endpoint type.
    #[arg(short, long, value_enum)]
    endpoint: Option<EpArg>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// List UCX's transports and devices (what `ucx_info -d` tells) instead of libfabric's
    /// providers; UCX_TLS and UCX_NET_DEVICES narrow the list as they narrow a run.
    #[arg(long, conflicts_with_all = ["provider", "endpoint"])]
    ucx: bool,
    /// List GPUs (name, memory, PCI bus id, NUMA node) and their PCIe distance to every NIC,
    /// as `nvidia-smi topo -m` shows it (sysfs root: $KVXFER_SYSFS_ROOT, default /sys).
    #[arg(long, conflicts_with_all = ["provider", "endpoint", "ucx"])]
    gpu: bool,
    /// With --gpu: print nothing on stdout; exit 0 when the CUDA driver opens a GPU, else 1
    /// with one line saying why (plans skip their VRAM tasks by it).
    #[arg(long, requires = "gpu")]
    check: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EpArg {
    Rdm,
    Msg,
}

/// One provider entry as `kvxfer info` reports it.
#[derive(Debug, Serialize)]
struct Entry {
    provider: String,
    provider_version: String,
    fabric: String,
    domain: String,
    endpoint_type: String,
    protocol: String,
    addr_format: String,
    src_addr: Option<String>,
    caps: Vec<String>,
    mr_mode: Vec<String>,
    max_msg_size: usize,
    inject_size: usize,
    cq_data_size: usize,
    tx_size: usize,
    rx_size: usize,
    hmem: bool,
}

pub fn run(a: InfoArgs) -> anyhow::Result<ExitCode> {
    if a.ucx {
        return ucx_info(a.json);
    }
    if a.gpu {
        return gpu_info(a.json, a.check);
    }
    let hints = Hints {
        provider: a.provider.clone(),
        ep_type: a.endpoint.map(|e| match e {
            EpArg::Rdm => EndpointType::Rdm,
            EpArg::Msg => EndpointType::Msg,
        }),
        ..Default::default()
    };
    let list = InfoList::query(&hints).context("querying libfabric (fi_getinfo)")?;
    if list.is_empty() {
        let avail = fabric::available_providers().join(", ");
        anyhow::bail!(
            "no libfabric provider matches{}{}; available providers: {avail}",
            a.provider
                .as_deref()
                .map(|p| format!(" provider {p:?}"))
                .unwrap_or_default(),
            a.endpoint
                .map(|e| format!(" endpoint {e:?}").to_lowercase())
                .unwrap_or_default(),
        );
    }
    let entries: Vec<Entry> = list.iter().map(entry).collect();
    if a.json {
        let doc = serde_json::json!({
            "libfabric_version": fabric::runtime_version(),
            "libfabric_library": fabric::library_path(),
            "providers": entries,
        });
        kvxfer::outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_entries(&entries);
    Ok(ExitCode::SUCCESS)
}

/// One provider entry as `info` shows it.
fn entry(e: InfoRef<'_>) -> Entry {
    let (tx, rx) = e.queue_sizes();
    Entry {
        provider: e.provider(),
        provider_version: e.provider_version(),
        fabric: e.fabric_name(),
        domain: e.domain_name(),
        endpoint_type: e.ep_type_name().to_string(),
        protocol: e.protocol(),
        addr_format: e.addr_format_name().to_string(),
        src_addr: e.src_addr().map(|s| s.to_string()),
        caps: e.caps_names(),
        mr_mode: fabric::mr_mode::names(e.mr_mode())
            .into_iter()
            .map(String::from)
            .collect(),
        max_msg_size: e.max_msg_size(),
        inject_size: e.inject_size(),
        cq_data_size: e.cq_data_size(),
        tx_size: tx,
        rx_size: rx,
        hmem: e.hmem(),
    }
}

/// The entries as `fi_info` prints them.
fn print_entries(entries: &[Entry]) {
    kvxfer::outln!("libfabric {}", fabric::runtime_version());
    for e in entries {
        kvxfer::outln!("provider: {}", e.provider);
        kvxfer::outln!("    fabric: {}", e.fabric);
        kvxfer::outln!("    domain: {}", e.domain);
        kvxfer::outln!("    version: {}", e.provider_version);
        kvxfer::outln!("    type: {}", e.endpoint_type);
        kvxfer::outln!("    protocol: {}", e.protocol);
        if let Some(a) = &e.src_addr {
            kvxfer::outln!("    src_addr: {a}");
        }
        kvxfer::outln!("    max_msg_size: {}", e.max_msg_size);
        kvxfer::outln!("    inject_size: {}", e.inject_size);
        kvxfer::outln!("    mr_mode: {}", join_or_none(&e.mr_mode));
        kvxfer::outln!("    hmem: {}", if e.hmem { "yes" } else { "no" });
        kvxfer::outln!("    caps: {}", join_or_none(&e.caps));
    }
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" | ")
    }
}

/// `kvxfer info --ucx`: UCX's version, then each transport and the device it runs on.
fn ucx_info(json: bool) -> anyhow::Result<ExitCode> {
    let ctx = ucx::Context::new(ucx::Features::default()).context("initialising UCX (ucp_init)")?;
    let resources = ctx.resources();
    let filters: std::collections::BTreeMap<&str, String> = ["UCX_TLS", "UCX_NET_DEVICES"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .collect();
    let version = ucx::version();
    let library = ucx::library_path();
    let lacks = ucx::version_lacks(&version);
    if json {
        let doc = serde_json::json!({
            "ucx_version": version,
            "ucx_library": library,
            "ucx_headers": ucx::header_version(),
            "ucx_lacks": lacks,
            "filters": filters,
            "transports": resources,
        });
        kvxfer::outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    kvxfer::outln!("UCX {version}");
    kvxfer::outln!("library: {}", library.as_deref().unwrap_or("unknown"));
    kvxfer::outln!("built against: UCX {} headers", ucx::header_version());
    for l in &lacks {
        kvxfer::outln!("lacks: {l}");
    }
    for (k, v) in &filters {
        kvxfer::outln!("# {k}={v}");
    }
    for r in &resources {
        kvxfer::outln!("transport: {}", r.transport);
        kvxfer::outln!("    device: {}", r.device);
    }
    Ok(ExitCode::SUCCESS)
}

/// `kvxfer info --gpu`: the GPUs, then a GPU x NIC matrix of PCIe distances.
fn gpu_info(json: bool, check: bool) -> anyhow::Result<ExitCode> {
    let l = GpuListing::host();
    if check {
        let usable = l.gpus.iter().filter(|g| g.ordinal.is_some()).count();
        if usable > 0 {
            eprintln!("kvxfer: {usable} GPU(s) usable through the CUDA driver");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "kvxfer: no usable GPU: {} ({} NVIDIA PCI device(s) under {})",
            l.driver_error
                .as_deref()
                .unwrap_or("the CUDA driver lists no device"),
            l.gpus.len(),
            kvxfer::topo::sysfs_root().display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if l.gpus.is_empty() {
        eprintln!(
            "kvxfer: no GPU found (sysfs {}: no NVIDIA PCI device; CUDA: {})",
            kvxfer::topo::sysfs_root().display(),
            l.driver_error.as_deref().unwrap_or("no device")
        );
    } else if let Some(e) = &l.driver_error {
        eprintln!("kvxfer: GPUs from sysfs only (no names or memory): {e}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", gpu_text(&l));
    Ok(ExitCode::SUCCESS)
}

/// The text form of `info --gpu`.
fn gpu_text(l: &GpuListing) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let dash = || "-".to_string();
    let _ = writeln!(
        out,
        "{:<5} {:<28} {:>10}  {:<13} {:>4}",
        "GPU", "name", "memory", "PCI bus id", "NUMA"
    );
    for g in &l.gpus {
        let _ = writeln!(
            out,
            "{:<5} {:<28} {:>10}  {:<13} {:>4}",
            g.ordinal.map_or_else(dash, |o| o.to_string()),
            g.name.clone().unwrap_or_else(dash),
            g.memory_bytes.map_or_else(dash, |b| format!(
                "{:.1} GiB",
                b as f64 / f64::from(1u32 << 30)
            )),
            g.pci_bus_id,
            g.numa_node.map_or_else(dash, |n| n.to_string()),
        );
    }
    if l.nics.is_empty() || l.affinity.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nGPU-to-NIC PCIe distance (PIX < PXB < PHB < NODE < SYS):"
    );
    let width = l
        .nics
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = write!(out, "{:<14}", "");
    for n in &l.nics {
        let _ = write!(out, " {:<width$}", n.name);
    }
    out.push('\n');
    for g in l.gpus.iter().filter(|g| g.place().is_some()) {
        let label = match g.ordinal {
            Some(o) => format!("GPU{o}"),
            None => g.pci_bus_id.clone(),
        };
        let _ = write!(out, "{label:<14}");
        for n in &l.nics {
            let d = l
                .affinity
                .iter()
                .find(|a| a.gpu == g.pci_bus_id && a.nic == n.name)
                .map_or("-", |a| a.distance.name());
            let _ = write!(out, " {d:<width$}");
        }
        out.push('\n');
    }
    out
}
