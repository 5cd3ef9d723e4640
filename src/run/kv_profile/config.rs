//! What a `kv profile` is asked to do and the xfer runs it expands into: a leaf of `run`
//! that the profile and its report both read.

use std::time::Duration;

use crate::model::kvbench::KvLayout;
use crate::model::{Attention, KvGeometry};
use crate::run::xfer::XferConfig;
use crate::run::RunError;

/// What a profile is asked to do.
#[derive(Debug, Clone)]
pub struct KvProfileConfig {
    /// The model whose cache is moved.
    pub model: KvGeometry,
    /// Parallelism and paging: the descriptor size.
    pub layout: KvLayout,
    /// K and V in descriptors of their own (half KVBench's IO size each), as a runtime that
    /// keeps separate K and V tensors per layer moves them; GQA models only.
    pub split_kv: bool,
    /// Prompt lengths.
    pub tokens: Vec<u64>,
    /// Idle gaps before each timed transfer, ms (0: back to back, always run).
    pub idle_ms: Vec<u64>,
    /// The link rate the theoretical time is computed at, 10^9 bytes/s.
    pub link_gbps: f64,
    /// xfer's settings (backend, provider, op, window, iterations, ...); size, block and the
    /// idle gap are set per run.
    pub base: XferConfig,
}

/// Which shape a run moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The model's descriptor list, with this idle gap (ms) before each timed transfer.
    Descriptors {
        /// Idle gap, ms.
        idle_ms: u64,
    },
    /// The same bytes as one contiguous transfer (cut only at the provider's maximum).
    Contiguous,
}

/// One xfer run of a profile.
#[derive(Debug, Clone)]
pub struct ProfileRun {
    /// Prompt tokens.
    pub tokens: u64,
    /// Descriptor list or contiguous.
    pub shape: Shape,
    /// The xfer configuration it runs.
    pub cfg: XferConfig,
}

impl KvProfileConfig {
    /// Bytes of one descriptor.
    pub fn io_size(&self) -> Result<u64, RunError> {
        let io = self
            .layout
            .io_size(&self.model)
            .map_err(|e| RunError::Config(e.to_string()))?;
        if !self.split_kv {
            return Ok(io);
        }
        match self.model.attention {
            Attention::Mla { .. } => Err(RunError::Config(format!(
                "--kv-split: {} caches one latent vector per token (MLA), no separate K and V",
                self.model.name
            ))),
            Attention::Gqa { .. } if io < 2 => Err(RunError::Config(
                "--kv-split leaves descriptors of less than one byte".into(),
            )),
            Attention::Gqa { .. } => Ok(io / 2),
        }
    }

    /// The runs, in the order both sides follow: per prompt length, the descriptor list back
    /// to back, the contiguous transfer, then the descriptor list after each idle gap. The
    /// descriptors are KVBench's batch, ceil(bytes / IO size), each whole: a transfer moves
    /// that many full descriptors, as nixlbench does for KVBench (the last one padded).
    pub fn runs(&self) -> Result<Vec<ProfileRun>, RunError> {
        let bad = |m: String| Err(RunError::Config(m));
        if self.tokens.is_empty() || self.tokens.contains(&0) {
            return bad("--tokens must be positive counts".into());
        }
        if !(self.link_gbps.is_finite() && self.link_gbps > 0.0) {
            return bad("--link-gbps must be a positive rate".into());
        }
        if let Some(g) = self.idle_ms.iter().find(|&&g| g > 600_000) {
            return bad(format!("--idle-ms {g} is above 10 minutes"));
        }
        let io = self.io_size()?;
        let mut idle: Vec<u64> = self.idle_ms.iter().copied().filter(|&g| g > 0).collect();
        idle.sort_unstable();
        idle.dedup();
        let mut runs = Vec::new();
        for &t in &self.tokens {
            let bytes = self
                .model
                .bytes(t)
                .and_then(|b| b.div_ceil(io).checked_mul(io))
                .ok_or_else(|| {
                    RunError::Config(format!("{t} tokens: the cache does not fit in 64 bits"))
                })?;
            let cfg = |block: u64, idle_ms: u64| XferConfig {
                size: bytes,
                block: Some(block.min(bytes)),
                idle_before_timed: Duration::from_millis(idle_ms),
                concurrency: 1,
                ..self.base.clone()
            };
            let shapes = [Shape::Descriptors { idle_ms: 0 }, Shape::Contiguous]
                .into_iter()
                .chain(idle.iter().map(|&g| Shape::Descriptors { idle_ms: g }));
            for shape in shapes {
                let c = match shape {
                    Shape::Descriptors { idle_ms } => cfg(io, idle_ms),
                    Shape::Contiguous => cfg(bytes, 0),
                };
                runs.push(ProfileRun {
                    tokens: t,
                    shape,
                    cfg: c,
                });
            }
        }
        Ok(runs)
    }
}
