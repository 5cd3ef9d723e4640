//! Where each side of an xfer keeps its buffers (nixlbench's segment types) and the checks
//! that refuse device memory, with one line naming what is missing, before anything connects.

use super::RunError;
use crate::fabric::{caps, select_info, EndpointSpec, FabricError};
use crate::mem::{Allocation, HostBuffer};
use crate::peer::Side;
use crate::topo::{GpuListing, Topology};

/// A side's segment type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SegKind {
    /// Host memory.
    #[default]
    Dram,
    /// GPU memory.
    Vram,
}

impl SegKind {
    /// nixlbench's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SegKind::Dram => "DRAM",
            SegKind::Vram => "VRAM",
        }
    }
}

/// The memory of both sides and the GPU that holds device memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemKinds {
    /// The initiator's buffers.
    pub initiator: SegKind,
    /// The target's buffers.
    pub target: SegKind,
    /// CUDA device ordinal for VRAM.
    pub gpu: i32,
    /// VRAM from cuMemCreate + cuMemMap instead of cuMemAlloc (nixlbench's --enable_vmm).
    pub vmm: bool,
    /// `--staging host`: VRAM sides move their data through pinned host memory.
    pub staging: bool,
}

impl MemKinds {
    /// Whether either side is in VRAM.
    pub fn any_vram(&self) -> bool {
        self.initiator == SegKind::Vram || self.target == SegKind::Vram
    }

    /// Whether the network itself moves device memory (VRAM and no staging).
    pub fn network_vram(&self) -> bool {
        self.any_vram() && !self.staging
    }

    /// The memory the network moves for a side of `kind`: host memory when staged.
    pub fn network(&self, kind: SegKind) -> SegKind {
        if self.staging {
            SegKind::Dram
        } else {
            kind
        }
    }

    /// Allocates `bytes` of `kind` memory: host memory, or VRAM on `self.gpu` (its context made
    /// current on the calling thread).
    pub fn alloc(&self, kind: SegKind, bytes: usize) -> Result<Allocation, RunError> {
        match kind {
            SegKind::Dram => Ok(HostBuffer::for_bulk(bytes)?.into()),
            SegKind::Vram => self.alloc_device(bytes),
        }
    }

    /// The memory the network moves for a side of `kind`: that kind, or under `--staging host`
    /// for a VRAM side a host bounce buffer, page-locked with the CUDA driver.
    pub fn alloc_network(&self, kind: SegKind, bytes: usize) -> Result<Allocation, RunError> {
        if !(self.staging && kind == SegKind::Vram) {
            return self.alloc(kind, bytes);
        }
        #[allow(unused_mut)]
        let mut buf = HostBuffer::for_bulk(bytes)?;
        #[cfg(feature = "cuda")]
        {
            // The device's context current, as cuMemHostRegister needs.
            let _dev = crate::mem::cuda::CudaDevice::open(self.gpu)?;
            buf.pin()?;
        }
        Ok(buf.into())
    }

    #[cfg(feature = "cuda")]
    fn alloc_device(&self, bytes: usize) -> Result<Allocation, RunError> {
        let dev = crate::mem::cuda::CudaDevice::open(self.gpu)?;
        let buf = if self.vmm {
            dev.alloc_vmm(bytes)?
        } else {
            dev.alloc(bytes)?
        };
        Ok(buf.into())
    }

    #[cfg(not(feature = "cuda"))]
    fn alloc_device(&self, _bytes: usize) -> Result<Allocation, RunError> {
        check_device("VRAM", self.gpu).map(|()| unreachable!("refused without the cuda feature"))
    }

    /// The option of the first side (of those this process runs) that asks for VRAM.
    pub fn vram_option(&self, initiator: bool, target: bool) -> Option<&'static str> {
        if initiator && self.initiator == SegKind::Vram {
            Some("--initiator-seg VRAM")
        } else if target && self.target == SegKind::Vram {
            Some("--target-seg VRAM")
        } else {
            None
        }
    }
}

/// The result's memory keys: `mem` (this document's side: dram, vram, or mixed when one
/// process runs both sides in different kinds); with VRAM anywhere also both segment types,
/// the GPU, the allocator, and where `--verify`'s copies happen.
pub fn config_keys(
    m: &mut serde_json::Map<String, serde_json::Value>,
    mem: &MemKinds,
    side: Side,
    verify: bool,
) {
    use serde_json::json;
    let mine = match side {
        Side::Target => mem.target,
        Side::Initiator => mem.initiator,
    };
    m.insert("mem".into(), json!(mine.name().to_ascii_lowercase()));
    config_vram(m, mem, verify);
}

fn config_vram(m: &mut serde_json::Map<String, serde_json::Value>, mem: &MemKinds, verify: bool) {
    use serde_json::json;
    if !mem.any_vram() {
        return;
    }
    if mem.staging {
        m.insert("staging".into(), json!("host"));
        m.insert(
            "staging_buffer".into(),
            json!("host memory page-locked with cuMemHostRegister"),
        );
    }
    m.insert("initiator_seg".into(), json!(mem.initiator.name()));
    m.insert("target_seg".into(), json!(mem.target.name()));
    m.insert("gpu".into(), json!(mem.gpu));
    m.insert(
        "vram_alloc".into(),
        json!(if mem.vmm { "cuMemCreate" } else { "cuMemAlloc" }),
    );
    if verify {
        m.insert(
            "verify_copies".into(),
            json!(
                "pattern copied host to device before, and device to host after, each \
                   iteration, outside the timed span"
            ),
        );
    }
}

/// `--rails auto` for a side in VRAM: of the `offered` domains, those whose NIC is nearest GPU
/// `gpu` on the PCIe tree; every one (said on stderr) where those places are unknown.
pub fn rails_near_gpu(
    topo: &Topology,
    gpus: &GpuListing,
    gpu: i32,
    offered: Vec<String>,
) -> Vec<String> {
    let near = gpus
        .by_ordinal(gpu)
        .and_then(|g| g.place())
        .and_then(|p| topo.nearest_domains(p, &offered));
    match near {
        Some(n) => {
            eprintln!(
                "kvxfer: --rails auto: {} ({} from GPU {gpu})",
                n.domains.join(","),
                n.distance.name()
            );
            n.domains
        }
        None => {
            eprintln!(
                "kvxfer: --rails auto: the PCIe places of GPU {gpu} or of the provider's domains \
                 are unknown; striping over every domain"
            );
            offered
        }
    }
}

/// Checks that device `gpu` can be opened; the error names the missing feature, driver or
/// device.
pub fn check_device(option: &str, gpu: i32) -> Result<(), RunError> {
    if gpu < 0 {
        return Err(RunError::Config("--gpu must be 0 or more".into()));
    }
    #[cfg(feature = "cuda")]
    {
        crate::mem::cuda::CudaDevice::open(gpu)
            .map(|_| ())
            .map_err(|e| RunError::Config(format!("{option}: {e}")))
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(RunError::Config(format!(
            "{option} needs GPU memory, but this kvxfer was built without the `cuda` feature \
             (cargo build --features cuda)"
        )))
    }
}

/// Checks that UCX (as UCX_TLS configures it) can map CUDA memory; the error names the UCX.
pub fn check_ucx_cuda(option: &str) -> Result<(), RunError> {
    let ctx = crate::ucx::Context::new(crate::ucx::Features {
        tag: true,
        rma: true,
    })
    .map_err(|e| RunError::Config(format!("{option}: {e}")))?;
    match ctx.supports_cuda() {
        Ok(true) => Ok(()),
        Ok(false) => Err(RunError::Config(format!(
            "{option}: UCX {} ({}) cannot map CUDA memory: it was built without CUDA or its \
             cuda_copy transport did not load (UCX_TLS must allow cuda_copy; see `kvxfer info \
             --ucx`)",
            crate::ucx::version(),
            crate::ucx::library_path().unwrap_or_else(|| "library unknown".into())
        ))),
        Err(e) => Err(RunError::Config(format!("{option}: {e}"))),
    }
}

/// Checks that `spec`'s provider can register device memory (FI_HMEM); the error names the
/// provider and what would work.
pub fn check_hmem(option: &str, spec: &EndpointSpec) -> Result<(), RunError> {
    let with_hmem = EndpointSpec {
        caps: spec.caps | caps::HMEM,
        ..spec.clone()
    };
    match select_info(&with_hmem) {
        Ok(info) if info.view().hmem() => Ok(()),
        Ok(_) | Err(FabricError::NoMatch { .. }) => Err(RunError::Config(format!(
            "{option}: libfabric provider {} here offers no FI_HMEM (device memory); use a \
             libfabric built with it (the EFA installer's), or have kvxfer xfer stage through \
             host memory (--staging host)",
            spec.provider
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::EndpointType;

    #[test]
    fn vram_is_named_by_the_side_this_process_runs() {
        let m = MemKinds {
            initiator: SegKind::Dram,
            target: SegKind::Vram,
            gpu: 0,
            vmm: false,
            staging: false,
        };
        assert_eq!(m.vram_option(true, false), None);
        assert_eq!(m.vram_option(false, true), Some("--target-seg VRAM"));
        assert_eq!(MemKinds::default().vram_option(true, true), None);
    }

    #[test]
    fn rails_auto_in_vram_takes_the_nics_nearest_the_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::scan(crate::topo::fake::two_socket(dir.path()).unwrap().root());
        let gpus = GpuListing::build(&topo, Err("no driver".into()));
        let offered: Vec<String> = ["rdmap0-rdm", "rdmap1-rdm", "rdmap2-rdm", "rdmap3-rdm"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            rails_near_gpu(&topo, &gpus, 0, offered.clone()),
            ["rdmap0-rdm"]
        );
        assert_eq!(
            rails_near_gpu(&topo, &gpus, 1, offered.clone()),
            ["rdmap3-rdm"]
        );
        // A GPU sysfs does not show, or domains with no PCI place: every domain.
        assert_eq!(rails_near_gpu(&topo, &gpus, 7, offered.clone()), offered);
        let lo = vec!["lo".to_string()];
        assert_eq!(rails_near_gpu(&topo, &gpus, 0, lo.clone()), lo);
    }

    #[test]
    fn vram_results_name_both_segments_the_allocator_and_where_verify_copies() {
        let keys = |mem: &MemKinds, side: Side, verify: bool| {
            let mut m = serde_json::Map::new();
            config_keys(&mut m, mem, side, verify);
            serde_json::Value::Object(m)
        };
        let dram = MemKinds::default();
        assert_eq!(
            keys(&dram, Side::Target, true),
            serde_json::json!({"mem": "dram"})
        );
        let vram = MemKinds {
            initiator: SegKind::Vram,
            target: SegKind::Dram,
            gpu: 3,
            vmm: true,
            staging: false,
        };
        let t = keys(&vram, Side::Target, true);
        assert_eq!(t["mem"], "dram");
        assert_eq!(t["initiator_seg"], "VRAM");
        assert_eq!(t["target_seg"], "DRAM");
        assert_eq!(
            (t["gpu"].as_i64(), t["vram_alloc"].as_str()),
            (Some(3), Some("cuMemCreate"))
        );
        assert!(t["verify_copies"]
            .as_str()
            .unwrap()
            .contains("outside the timed span"));
        assert_eq!(keys(&vram, Side::Initiator, false)["mem"], "vram");
        assert!(keys(&vram, Side::Initiator, false)
            .get("verify_copies")
            .is_none());
        assert!(t.get("staging").is_none());
        let staged = MemKinds {
            staging: true,
            ..vram
        };
        assert_eq!(keys(&staged, Side::Initiator, false)["staging"], "host");
        assert!(staged.any_vram() && !staged.network_vram());
        assert_eq!(staged.network(SegKind::Vram), SegKind::Dram);
    }

    #[test]
    fn ucx_without_cuda_support_is_one_line_naming_the_ucx() {
        match check_ucx_cuda("--initiator-seg VRAM") {
            Ok(()) => eprintln!(
                "SKIPPED ucx_without_cuda_support_is_one_line_naming_the_ucx: this UCX maps \
                 CUDA memory (a GPU and its driver are present)"
            ),
            Err(e) => {
                let e = e.to_string();
                assert!(e.starts_with("--initiator-seg VRAM: UCX "), "{e}");
                assert!(
                    e.contains("cannot map CUDA memory") && !e.contains('\n'),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn a_negative_gpu_is_refused() {
        let e = check_device("--initiator-seg VRAM", -1).unwrap_err();
        assert!(e.to_string().contains("--gpu must be 0 or more"), "{e}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_cuda_feature_vram_names_the_feature() {
        let e = check_device("--target-seg VRAM", 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--target-seg VRAM needs GPU memory"), "{e}");
        assert!(e.contains("--features cuda") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn tcp_without_fi_hmem_names_the_provider_and_the_way_out() {
        let spec = EndpointSpec {
            provider: "tcp".into(),
            ep_type: EndpointType::Rdm,
            caps: caps::RMA | caps::MSG,
            local_ip: None,
            domain: Some("lo".into()),
            timeout: std::time::Duration::from_secs(5),
        };
        match check_hmem("--initiator-seg VRAM", &spec) {
            Ok(()) => eprintln!(
                "SKIPPED tcp_without_fi_hmem_names_the_provider_and_the_way_out: this \
                 libfabric's tcp provider offers FI_HMEM"
            ),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("provider tcp") && e.contains("FI_HMEM"), "{e}");
                assert!(
                    e.contains("EFA installer") && e.contains("--staging host"),
                    "{e}"
                );
            }
        }
    }
}
