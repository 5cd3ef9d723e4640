//! Where each side of an xfer keeps its buffers (nixlbench's segment types) and the checks
//! that refuse device memory, with one line naming what is missing, before anything connects.

use super::RunError;
use crate::fabric::{caps, select_info, EndpointSpec, FabricError};
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
}

impl MemKinds {
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
             libfabric built with it (the EFA installer's), or stage through host memory \
             (--staging host, once kvxfer has it)",
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
        };
        assert_eq!(m.vram_option(true, false), None);
        assert_eq!(m.vram_option(false, true), Some("--target-seg VRAM"));
        assert_eq!(MemKinds::default().vram_option(true, true), None);
    }

    #[test]
    fn rails_auto_in_vram_takes_the_nics_nearest_the_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::scan(crate::topo::tests::two_socket(dir.path()).root());
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
