//! `rma-pingpong`: fi_rma_pingpong's measurement (write, writedata, read), in one process over
//! the loopback or across two, on the orchestration of [`super`] (the ping-pong module).

use std::time::Duration;

use serde_json::json;

use super::rounds::{run_rounds, Figures, Measured, Reopen, RoundChannel};
use super::{both_ways, config_map, vram_slots, PingPongConfig, Progress, SideOutcome};
use crate::bench::pace::{decode_batch, encode_batch, run_batches};
use crate::bench::pingpong::{
    run_timed, warm_up, PingPongTransport, Recorder, SizeParams, SizeSamples,
};
use crate::bench::rma_pingpong::{run_read_batch, RmaReadTransport, READ_SEQ};
use crate::bench::{pattern, BenchError};
use crate::bootstrap::{BootstrapError, Fingerprint, Oob};
use crate::channel::{RmaChannel, RmaPingPongOp};
use crate::fabric::{self, caps, RemoteRegion};
use crate::mem::HostStaged;
use crate::peer::Side;
use crate::report::ResultDoc;
use crate::run::environment;
use crate::run::path::{PairProbe, PathReport, Payload};
use crate::run::segments::SegKind;
use crate::run::two_sided::PairRun;
use crate::run::RunError;
use crate::stats::{Count, Pacer};
use crate::units::human_size;

/// An RMA ping-pong run: the ping-pong parameters (mode and inject unused) and the operation.
#[derive(Debug, Clone)]
pub struct RmaPingPongConfig {
    /// Provider, endpoint, sizes, iterations, warm-up, verify, time-out.
    pub base: PingPongConfig,
    /// write, writedata or read.
    pub op: RmaPingPongOp,
}

/// The operation's name, as fi_rma_pingpong's `-o` spells it.
pub fn op_name(op: RmaPingPongOp) -> &'static str {
    match op {
        RmaPingPongOp::Write => "write",
        RmaPingPongOp::WriteData => "writedata",
        RmaPingPongOp::Read => "read",
    }
}

impl RmaPingPongConfig {
    /// The endpoints' capabilities: RMA and messages, FI_HMEM with VRAM on either side.
    fn caps(&self) -> u64 {
        if self.base.mem.any_vram() {
            caps::RMA | caps::MSG | caps::HMEM
        } else {
            caps::RMA | caps::MSG
        }
    }
}

impl PairRun for RmaPingPongConfig {
    fn check(&self) -> Result<(), RunError> {
        if let Some(option) = self.base.mem.vram_option(true, true) {
            if self.op == RmaPingPongOp::Write {
                return Err(RunError::Config(format!(
                    "{option}: --op write detects arrival by polling the receive buffer's last \
                     byte, which device memory cannot be read for; use --op writedata (arrival \
                     by remote CQ data)"
                )));
            }
        }
        self.base.check_vram(self.caps())?;
        self.base.validate_with_caps(self.caps()).map(|_| ())
    }
    fn params(&self) -> Fingerprint {
        self.base
            .fingerprint()
            .with("bench", "rma_pingpong")
            .with("op", op_name(self.op))
    }
    fn timeout(&self) -> Duration {
        self.base.timeout
    }
    fn cpus(&self) -> &crate::run::sched::CpuPlan {
        &self.base.cpus
    }
    fn memory(&self) -> crate::run::memory::MemoryNeed {
        // The write source and the region the peer writes into, of the largest size.
        self.base.memory()
    }
    fn measure(
        &self,
        role: Side,
        oob: &mut Oob,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<SideOutcome, RunError> {
        measure(self, role, oob, progress)
    }
}

/// The write/writedata ping-pong over an RMA channel: each message's last byte (write) or
/// remote CQ data (writedata) tells the receiver it has arrived.
struct RmaPingPong<B: HostStaged> {
    ch: RmaChannel<B>,
    role: Side,
    writedata: bool,
    size: usize,
    sent: u64,
    received: u64,
}

impl<B: HostStaged> RmaPingPong<B> {
    /// Sequence number of our n-th message of a size (the loop's numbering: initiator even).
    fn my_seq(&self, n: u64) -> u64 {
        match self.role {
            Side::Initiator => 2 * n,
            Side::Target => 2 * n + 1,
        }
    }
    fn peer_seq(&self, n: u64) -> u64 {
        match self.role {
            Side::Initiator => 2 * n + 1,
            Side::Target => 2 * n,
        }
    }
    /// Arms the last byte for the next message (write mode): anything but what it will carry.
    fn arm(&mut self) {
        if self.writedata {
            return;
        }
        let next = pattern::byte_at(self.peer_seq(self.received), self.size - 1);
        self.ch.set_last_byte(self.size, !next);
    }
}

impl<B: HostStaged> PingPongTransport for RmaPingPong<B> {
    fn prepare(&mut self, size: usize) -> Result<(), BenchError> {
        self.size = size;
        self.sent = 0;
        self.received = 0;
        self.arm();
        Ok(())
    }
    fn post_recv(&mut self) -> Result<(), BenchError> {
        self.arm();
        Ok(())
    }
    #[inline]
    fn send(&mut self, len: usize) -> Result<(), BenchError> {
        let seq = self.my_seq(self.sent);
        // The stamp is the pattern's last byte, so --verify sees an intact message.
        self.ch.transfer(len, pattern::byte_at(seq, len - 1), seq)?;
        self.sent += 1;
        Ok(())
    }
    #[inline]
    fn wait_recv(&mut self) -> Result<usize, BenchError> {
        let seq = self.peer_seq(self.received);
        let stamp = pattern::byte_at(seq, self.size - 1);
        let data = self.ch.wait_arrival(self.size, stamp)?;
        if self.writedata && data as u32 != seq as u32 {
            return Err(BenchError::Invalid(format!(
                "remote CQ data {data} where message {seq} was due"
            )));
        }
        self.received += 1;
        Ok(self.size)
    }
    fn send_buf(&mut self) -> &mut [u8] {
        self.ch.tx_buf()
    }
    fn recv_buf(&self) -> &[u8] {
        self.ch.rx_buf()
    }
}

struct Reader<'a, B: HostStaged>(&'a mut RmaChannel<B>);

impl<B: HostStaged> RmaReadTransport for Reader<'_, B> {
    #[inline]
    fn read(&mut self, len: usize) -> Result<(), BenchError> {
        Ok(self.0.transfer(len, 0, 0)?)
    }
    fn read_buf(&self) -> &[u8] {
        self.0.tx_view()
    }
}

fn measure(
    cfg: &RmaPingPongConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
) -> Result<SideOutcome, RunError> {
    let base = &cfg.base;
    let conn = connect(cfg, role, oob)?;
    let mut doc = result_doc(cfg, role, &conn);
    doc.config.insert("inject".into(), json!(base.inject));
    let max = *base.sizes.iter().max().expect("validated: sizes not empty") as usize;
    let (op, inject, timeout) = (cfg.op, base.inject, base.timeout);
    let outcome = match base.seg_of(role) {
        SegKind::Dram => in_rounds(cfg, role, oob, progress, &mut doc, conn, |conn| {
            Ok(RmaChannel::new(conn, max, op, inject, timeout)?)
        }),
        SegKind::Vram => in_rounds(cfg, role, oob, progress, &mut doc, conn, |conn| {
            let (tx, rx) = vram_slots(base, max)?;
            Ok(RmaChannel::over(conn, tx, rx, op, inject, timeout)?)
        }),
    };
    Ok(SideOutcome {
        doc: crate::run::conclude(doc, outcome)?,
    })
}

/// Every size of the run (see [`sizes`]) on channels `make` builds: the first over `conn`,
/// each later round's over a fresh connection.
fn in_rounds<B: HostStaged>(
    cfg: &RmaPingPongConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    doc: &mut ResultDoc,
    conn: fabric::Connection,
    make: impl Fn(fabric::Connection) -> Result<RmaChannel<B>, RunError>,
) -> Result<(), RunError> {
    let open = |conn, oob: &mut Oob| RmaPingPong::over(make(conn)?, cfg, role, oob);
    let mut again = |oob: &mut Oob| open(connect(cfg, role, oob)?, oob);
    open(conn, oob).and_then(|pp| sizes(cfg, oob, progress, doc, pp, &mut again))
}

impl<B: HostStaged> RmaPingPong<B> {
    /// The ping-pong over channel `ch`, after trading regions with the peer.
    fn over(
        ch: RmaChannel<B>,
        cfg: &RmaPingPongConfig,
        role: Side,
        oob: &mut Oob,
    ) -> Result<RmaPingPong<B>, RunError> {
        Ok(RmaPingPong {
            ch: exchange_regions(ch, oob)?,
            role,
            writedata: cfg.op == RmaPingPongOp::WriteData,
            size: 1,
            sent: 0,
            received: 0,
        })
    }
}

impl<B: HostStaged> RoundChannel for RmaPingPong<B> {
    type Held = (Option<B>, Option<B>);
    fn retire(self) -> Self::Held {
        self.ch.into_buffers()
    }
}

/// Every size of the run, each a result of `doc` where this side measures (the read target
/// measures nothing), in rounds (see [`super::rounds`]), each round after the first on a fresh
/// channel from `reopen`.
fn sizes<B: HostStaged>(
    cfg: &RmaPingPongConfig,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    doc: &mut ResultDoc,
    pp: RmaPingPong<B>,
    reopen: &mut Reopen<'_, RmaPingPong<B>>,
) -> Result<(), RunError> {
    let (base, op, role) = (&cfg.base, cfg.op, pp.role);
    let inject_size = pp.ch.inject_size() as u64;
    let mut probe = PairProbe::new(role.name());
    if op == RmaPingPongOp::Read {
        probe = probe.with_note(
            "the span includes the warm-up reads (the target does not see the timed ones start)",
        );
    }
    let mut one = |pp: &mut RmaPingPong<B>, oob: &mut Oob, size: u64, probe: &mut PairProbe| {
        let p = base.size_params(size);
        measure_size(pp, op, oob, &p, base.iterations_for(size), probe)
    };
    let mut m = Measured::new(&base.sizes, base.rounds);
    let outcome = run_rounds(oob, progress, pp, reopen, &mut one, &mut probe, &mut m);
    // What was measured is kept even when a later round failed. fi_rma_pingpong's read: only
    // the initiator measures, one transfer per iteration.
    m.into_results(role, doc, |size| Figures {
        injected: (op != RmaPingPongOp::Read).then_some(size <= inject_size),
        xfers: if op == RmaPingPongOp::Read { 1 } else { 2 },
        count: base.iterations_for(size),
    });
    outcome
}

/// Connects to the peer with RMA and message capabilities; writedata needs remote CQ data.
fn connect(
    cfg: &RmaPingPongConfig,
    role: Side,
    oob: &mut Oob,
) -> Result<fabric::Connection, RunError> {
    let base = &cfg.base;
    let spec = base.endpoint_spec(cfg.caps(), Some(oob.local_ip()?));
    let conn = fabric::connect(&spec, role, &mut |ours: &[u8]| {
        oob.exchange(ours).map_err(|e| e.to_string())
    })?;
    if cfg.op == RmaPingPongOp::WriteData && conn.info.view().cq_data_size() < 4 {
        return Err(RunError::Config(format!(
            "provider {} carries no remote CQ data: writedata is not possible",
            base.provider
        )));
    }
    Ok(conn)
}

/// The result document before any size: the run's configuration and the fabric's environment.
fn result_doc(cfg: &RmaPingPongConfig, role: Side, conn: &fabric::Connection) -> ResultDoc {
    let mut doc = ResultDoc::new("kvxfer", "rma_pingpong", "L0");
    doc.config = config_map(&cfg.base, role);
    doc.config.remove("mode");
    doc.config.insert("op".into(), json!(op_name(cfg.op)));
    doc.config.insert(
        "latency".into(),
        json!(match cfg.op {
            RmaPingPongOp::Read => "full round trip of a read",
            _ => "half round trip per iteration",
        }),
    );
    doc.environment = environment::with_fabric(&conn.info);
    doc
}

/// Trades our buffer's region for the peer's, which the channel's writes and reads then target.
fn exchange_regions<B: HostStaged>(
    mut ch: RmaChannel<B>,
    oob: &mut Oob,
) -> Result<RmaChannel<B>, RunError> {
    let ours = serde_json::to_vec(&ch.local_region()).expect("a region serialises");
    let theirs: RemoteRegion = serde_json::from_slice(&oob.exchange(&ours)?)
        .map_err(|e| BootstrapError::Protocol(format!("the peer's region: {e}")))?;
    ch.set_remote(theirs);
    Ok(ch)
}

/// One size, both sides in step: the samples where this side measures (else None), and the
/// devices that carried its payload.
fn measure_size<B: HostStaged>(
    pp: &mut RmaPingPong<B>,
    op: RmaPingPongOp,
    oob: &mut Oob,
    p: &SizeParams,
    count: Count,
    probe: &mut PairProbe,
) -> Result<(Option<SizeSamples>, Option<PathReport>), RunError> {
    let at = || format!("size {}", human_size(p.size as u64));
    let bench = |error| RunError::bench(at(), error);
    match (op, pp.role) {
        (RmaPingPongOp::Write | RmaPingPongOp::WriteData, role) => {
            pp.prepare(p.size).map_err(bench)?;
            oob.barrier()?;
            let run = warm_up(pp, role, p)
                .and_then(|()| probe.timed(oob, role, count, |pace| run_timed(pp, role, p, pace)));
            let s = run.map_err(|e| probe.failure(at(), e).control_first())?;
            let path = probe.finish(oob, both_ways(p.size as u64, &s))?;
            Ok((Some(s), path))
        }
        (RmaPingPongOp::Read, Side::Target) => {
            if p.verify {
                pattern::fill(&mut pp.ch.rx_buf_mut()[..p.size], READ_SEQ);
                pp.ch.publish_rx(p.size)?;
            }
            probe.start(oob)?;
            // Each batch (the warm-up first) is announced; the target serves the reads until
            // the initiator says the batch is done. Its span holds them all.
            let mut reads = 0u64;
            loop {
                let (n, _) = decode_batch(&oob.recv_frame()?).map_err(bench)?;
                if n == 0 {
                    break;
                }
                reads = reads.saturating_add(n);
                pp.ch.post_done()?;
                oob.barrier()?;
                pp.ch.wait_done()?;
            }
            let sent = Payload {
                sent: reads.saturating_mul(p.size as u64),
                received: 0,
                timed_ns: None,
            };
            Ok((None, probe.finish(oob, sent)?))
        }
        (RmaPingPongOp::Read, Side::Initiator) => {
            probe.start(oob)?;
            let s = read_initiator(pp, oob, p, count)?;
            let got = Payload {
                sent: 0,
                received: (p.warmup + s.iterations).saturating_mul(p.size as u64),
                timed_ns: None,
            };
            Ok((Some(s), probe.finish(oob, got)?))
        }
    }
}

/// The read initiator's side of a size: the warm-up and each timed batch announced to the
/// target, which serves the reads until this side's done message.
fn read_initiator<B: HostStaged>(
    pp: &mut RmaPingPong<B>,
    oob: &mut Oob,
    p: &SizeParams,
    count: Count,
) -> Result<SizeSamples, RunError> {
    let bench = |error| RunError::bench(format!("size {}", human_size(p.size as u64)), error);
    let batch = |pp: &mut RmaPingPong<B>,
                 oob: &mut Oob,
                 range: std::ops::Range<u64>,
                 rec: Option<&mut Recorder>|
     -> Result<u64, RunError> {
        oob.send_frame(&encode_batch(range.end - range.start, None))?;
        oob.barrier()?;
        let ns = run_read_batch(&mut Reader(&mut pp.ch), p, range, rec).map_err(bench)?;
        pp.ch.send_done()?;
        Ok(ns)
    };
    if p.warmup > 0 {
        batch(pp, oob, 0..p.warmup, None)?;
    }
    let mut pacer = Pacer::new(count);
    let mut failed = None;
    let samples = run_batches(p.warmup, p.size as u64, 1, &mut pacer, &mut |range, rec| {
        batch(pp, oob, range, Some(rec)).map_err(|e| {
            failed = Some(e);
            BenchError::Invalid("the batch failed".into())
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let samples = samples.map_err(bench)?;
    oob.send_frame(&encode_batch(0, Some(samples.stopped_by)))?;
    Ok(samples)
}
