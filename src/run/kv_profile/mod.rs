//! `kv profile`: transfers shaped like a model's KV cache, per prompt length, over xfer's
//! machinery: the descriptor list back to back and after idle gaps, and the same bytes as one
//! contiguous transfer. Every run is a fresh xfer run (new connection, new registration), so
//! the cold transfer and the registration of each are a request's first.

mod config;
mod difference;
mod report;

pub use self::config::{KvProfileConfig, ProfileRun, Shape};
pub use self::difference::Difference;

use crate::bootstrap::OobListener;
use crate::peer::Side;
use crate::report::ResultDoc;
use crate::run::xfer;
use crate::run::RunError;

/// What a profile tells its caller as it goes.
#[derive(Debug)]
pub enum ProfileEvent<'a> {
    /// Run `index` of `count` starts.
    Starting {
        /// Its place in the sequence.
        index: usize,
        /// Runs in all.
        count: usize,
        /// The run.
        run: &'a ProfileRun,
    },
    /// Every run of a prompt length is done: the document of the lengths done so far (status
    /// partial until the last), so a failure later loses none of them.
    Checkpoint(&'a ResultDoc),
}

/// Runs both sides in this process over the loopback.
pub fn run_local(
    cfg: &KvProfileConfig,
    events: &mut dyn FnMut(ProfileEvent<'_>),
) -> Result<ResultDoc, RunError> {
    drive(cfg, xfer::Sides::Both, events, |r| {
        xfer::run_local(
            &r.cfg,
            xfer::LocalThreads::default_for(r.cfg.backend),
            &xfer::XferProgress::default(),
        )
    })
}

/// Runs the initiator side against the target at `peer`.
pub fn run_initiator(
    cfg: &KvProfileConfig,
    peer: &str,
    events: &mut dyn FnMut(ProfileEvent<'_>),
) -> Result<ResultDoc, RunError> {
    let peers = [peer.to_string()];
    drive(cfg, xfer::Sides::One(Side::Initiator), events, |r| {
        xfer::run_initiator(&r.cfg, &peers, &xfer::XferProgress::default())
    })
}

/// Runs the target side: serves the same runs, in the same order, on `listener`.
pub fn run_target(
    cfg: &KvProfileConfig,
    listener: &OobListener,
    events: &mut dyn FnMut(ProfileEvent<'_>),
) -> Result<ResultDoc, RunError> {
    drive(cfg, xfer::Sides::One(Side::Target), events, |r| {
        xfer::run_target(&r.cfg, listener)
    })
}

fn drive(
    cfg: &KvProfileConfig,
    sides: xfer::Sides,
    events: &mut dyn FnMut(ProfileEvent<'_>),
    mut one: impl FnMut(&ProfileRun) -> Result<ResultDoc, RunError>,
) -> Result<ResultDoc, RunError> {
    let runs = cfg.runs()?;
    for r in &runs {
        r.cfg.validate(sides)?;
    }
    let mut done = Vec::with_capacity(runs.len());
    for (index, r) in runs.iter().enumerate() {
        events(ProfileEvent::Starting {
            index,
            count: runs.len(),
            run: r,
        });
        let doc = one(r)?;
        done.push((r.clone(), doc));
        let length_done = runs.get(index + 1).map_or(true, |n| n.tokens != r.tokens);
        if length_done && index + 1 < runs.len() {
            events(ProfileEvent::Checkpoint(&report::build(cfg, &done)?));
        }
    }
    report::build(cfg, &done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::EndpointType;
    use crate::model::kvbench::AccessPattern;
    use crate::model::kvbench::KvLayout;
    use crate::model::preset;
    use crate::run::xfer::{ConcurrencyMode, Scheme, XferBackend, XferConfig};
    use crate::xfer::XferOp;
    use std::time::Duration;

    fn cfg(model: &str, split_kv: bool) -> KvProfileConfig {
        KvProfileConfig {
            model: preset(model).unwrap(),
            layout: KvLayout {
                tp: 1,
                pp: 1,
                page_size: 16,
                access: AccessPattern::Layer,
            },
            split_kv,
            tokens: vec![1000, 4096],
            idle_ms: vec![1000, 0, 100, 100],
            link_gbps: 2.9,
            base: XferConfig {
                backend: XferBackend::Libfabric,
                provider: "tcp".into(),
                endpoint: EndpointType::Rdm,
                domain: None,
                op: XferOp::Write,
                size: 1,
                block: None,
                window: 64,
                concurrency: 4,
                mode: ConcurrencyMode::Endpoints,
                scheme: Scheme::Pairwise,
                iterations: crate::stats::Count::Fixed(3),
                warmup: 1,
                verify: false,
                reuse: false,
                cold_cache: false,
                timeout: Duration::from_secs(5),
                idle_before_timed: Duration::ZERO,
                rails: None,
                stripe_threshold: crate::run::xfer::DEFAULT_STRIPE_THRESHOLD,
                mem: Default::default(),
                open: None,
                rounds: 1,
                cpus: Default::default(),
            },
        }
    }

    #[test]
    fn runs_per_prompt_length_in_order() {
        let runs = cfg("qwen2.5-7b", false).runs().unwrap();
        let shapes: Vec<(u64, Shape)> = runs.iter().map(|r| (r.tokens, r.shape)).collect();
        let d = |idle_ms| Shape::Descriptors { idle_ms };
        assert_eq!(
            shapes,
            [
                (1000, d(0)),
                (1000, Shape::Contiguous),
                (1000, d(100)),
                (1000, d(1000)),
                (4096, d(0)),
                (4096, Shape::Contiguous),
                (4096, d(100)),
                (4096, d(1000)),
            ]
        );
        // 28 layers' 2,048 B x 16 tokens per descriptor; the contiguous run in one piece.
        assert_eq!(runs[0].cfg.block, Some(32_768));
        assert_eq!(runs[0].cfg.size, 57_344_000);
        assert_eq!(runs[1].cfg.block, Some(57_344_000));
        assert_eq!(runs[3].cfg.idle_before_timed, Duration::from_secs(1));
        assert_eq!(runs[0].cfg.idle_before_timed, Duration::ZERO);
        assert!(runs.iter().all(|r| r.cfg.concurrency == 1));
    }

    #[test]
    fn split_kv_halves_descriptors_and_refuses_mla() {
        assert_eq!(cfg("qwen2.5-7b", true).io_size().unwrap(), 16_384);
        let e = cfg("deepseek-r1", true).io_size().unwrap_err();
        assert!(e.to_string().contains("MLA"), "{e}");
        let mut c = cfg("qwen2.5-7b", false);
        c.tokens = vec![0];
        assert!(c.runs().is_err());
        c.tokens = vec![1, 2];
        // KVBench's batch: ceil(57,344 / 32,768) = 2 whole descriptors for one token.
        let runs = c.runs().unwrap();
        assert_eq!(runs[0].cfg.block, Some(32_768));
        assert_eq!(runs[0].cfg.size, 65_536);
        // The contiguous transfer moves the same bytes; two tokens' 114,688 B take 4.
        assert_eq!(runs[1].cfg.block, Some(65_536));
        assert_eq!(runs[4].tokens, 2);
        assert_eq!(runs[4].cfg.size, 4 * 32_768);
    }
}
