//! What the libraries say about this node: libfabric's version, providers and EFA fabrics,
//! UCX's version, transports and memory types, the CUDA driver's GPUs. Gathered once by real
//! calls; tests build them by hand.

use serde::Serialize;

use crate::fabric::{self, caps, mr_mode, EndpointType, Hints, InfoList};
use crate::mem::{Backing, HostBuffer};
use crate::topo::DriverGpu;

/// One fabric a provider offers for RDM endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FabricOffer {
    /// The fabric's name (`efa`, `efa-direct`).
    pub fabric: String,
    /// Its domains (`rdmap79s0-rdm`).
    pub domains: Vec<String>,
    /// FI_RMA offered.
    pub rma: bool,
    /// FI_HMEM offered (GPU memory).
    pub hmem: bool,
}

/// libfabric as loaded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Libfabric {
    /// `major.minor`.
    pub version: String,
    /// Core provider names.
    pub providers: Vec<String>,
    /// The efa provider's fabrics for FI_EP_RDM (empty without efa).
    pub efa: Vec<FabricOffer>,
}

/// UCX as loaded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ucx {
    /// UCX's version (`1.22.0`).
    pub version: String,
    /// The libucp file loaded.
    pub library: Option<String>,
    /// Transport names (`tcp`, `srd`, `cuda_copy`), sorted, once each.
    pub transports: Vec<String>,
    /// CUDA memory is a memory type of the context.
    pub cuda: bool,
}

/// Everything the library checks read.
#[derive(Debug, Clone)]
pub struct Facts {
    /// libfabric.
    pub libfabric: Libfabric,
    /// UCX, or why its context did not start.
    pub ucx: Result<Ucx, String>,
    /// The CUDA driver's GPUs, or why there are none.
    pub gpus: Result<Vec<DriverGpu>, String>,
    /// What the kernel gave a [`HUGE_PROBE`]-byte buffer that asked for transparent huge pages,
    /// as kvxfer's large buffers ask; None where it could not be allocated or read.
    pub huge_pages: Option<Backing>,
}

/// The bytes of the huge-page probe: two 2 MiB pages.
pub const HUGE_PROBE: usize = 4 << 20;

impl Facts {
    /// Asks libfabric, UCX and the CUDA driver of this process.
    pub fn gather() -> Facts {
        Facts {
            libfabric: libfabric(),
            ucx: ucx(),
            gpus: crate::topo::driver_gpus(),
            huge_pages: huge_page_probe(),
        }
    }
}

/// Allocates [`HUGE_PROBE`] bytes the way xfer's buffers are (aligned, madvise, every page
/// touched) and reads how the kernel backed them.
fn huge_page_probe() -> Option<Backing> {
    let buf = HostBuffer::with_huge_pages(HUGE_PROBE).ok()?;
    crate::mem::backing_of(&buf)
}

/// The efa provider's RDM fabrics, asked with every mode bit and MR mode it may require.
fn efa_fabrics() -> Vec<FabricOffer> {
    let hints = Hints {
        provider: Some("efa".into()),
        ep_type: Some(EndpointType::Rdm),
        mr_mode: mr_mode::LOCAL | mr_mode::BASIC_MAP | mr_mode::HMEM | mr_mode::ENDPOINT,
        // FI_CONTEXT (1 << 59) and FI_CONTEXT2 (1 << 52): efa-direct requires them.
        mode: (1 << 59) | (1 << 52),
        ..Hints::default()
    };
    let Ok(list) = InfoList::query(&hints) else {
        return Vec::new();
    };
    let mut out: Vec<FabricOffer> = Vec::new();
    for e in list.iter() {
        let name = e.fabric_name();
        let domain = e.domain_name();
        let (rma, hmem) = (e.caps() & caps::RMA != 0, e.caps() & caps::HMEM != 0);
        match out.iter_mut().find(|o| o.fabric == name) {
            Some(o) => {
                if !o.domains.contains(&domain) {
                    o.domains.push(domain);
                }
                o.rma |= rma;
                o.hmem |= hmem;
            }
            None => out.push(FabricOffer {
                fabric: name,
                domains: vec![domain],
                rma,
                hmem,
            }),
        }
    }
    out
}

fn libfabric() -> Libfabric {
    let providers = fabric::available_providers();
    let efa = if providers.iter().any(|p| p == "efa") {
        efa_fabrics()
    } else {
        Vec::new()
    };
    Libfabric {
        version: fabric::runtime_version(),
        providers,
        efa,
    }
}

fn ucx() -> Result<Ucx, String> {
    let ctx =
        crate::ucx::Context::new(crate::ucx::Features::default()).map_err(|e| e.to_string())?;
    let mut transports: Vec<String> = ctx.resources().into_iter().map(|r| r.transport).collect();
    transports.sort();
    transports.dedup();
    Ok(Ucx {
        version: crate::ucx::version(),
        library: crate::ucx::library_path(),
        transports,
        cuda: ctx.supports_cuda().unwrap_or(false),
    })
}
