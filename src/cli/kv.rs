//! `kvxfer kv`: the KV cache of real models (L2): `size` (bytes and theoretical times),
//! `plan` (KVBench's nixlbench command), `profile` (transfers shaped like the cache).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use kvxfer::bootstrap::{OobListener, DEFAULT_PORT};
use kvxfer::model::kvbench::{self, AccessPattern, KvLayout, ModelConfig, NixlbenchOptions};
use kvxfer::model::kvbench_class;
use kvxfer::model::{self, KvDtype, KvGeometry};
use kvxfer::report::export::Table;
use kvxfer::report::kv as render;
use kvxfer::run::kv_profile::{self, KvProfileConfig, ProfileEvent, Shape};
use kvxfer::run::xfer::{ConcurrencyMode, Scheme, Sides, XferConfig};
use kvxfer::stats::Count;
use kvxfer::units::human_size;

use super::common::{parse_listen, progress_bar, OutputArgs, PathArgs};
use super::xfer::{FabricArgs, XferOpArg};

/// `kvxfer kv` and its subcommands.
#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// KV bytes per prompt length and the theoretical transfer time at each link rate.
    Size(SizeArgs),
    /// The nixlbench command KVBench's `plan` prints for a model and a model config.
    Plan(Box<PlanArgs>),
    /// Transfers shaped like the model's cache: cold/warm, registration, per-descriptor cost,
    /// slow start after idle gaps, and the decomposition against the theoretical time.
    Profile(Box<ProfileArgs>),
}

/// The model and its element type.
#[derive(Debug, Args)]
struct ModelArgs {
    /// A preset (qwen2.5-7b, llama-3.1-8b, llama-3.1-70b, qwen3-8b, deepseek-r1,
    /// gpt-oss-20b), a HuggingFace config.json, or a KVBench model YAML.
    #[arg(short, long)]
    model: String,
    /// The cache's element type, over what the model or model config says (fp8, int8, fp16,
    /// bf16, fp32).
    #[arg(long, value_parser = parse_dtype)]
    kv_dtype: Option<KvDtype>,
}

fn parse_dtype(s: &str) -> Result<KvDtype, String> {
    s.parse().map_err(|e: model::ModelError| e.to_string())
}

/// KVBench's overrides of the model config.
#[derive(Debug, Args)]
struct LayoutArgs {
    /// KVBench model-config YAML (strategy, runtime, system).
    #[arg(long, value_name = "FILE")]
    model_config: Option<std::path::PathBuf>,
    /// Tensor-parallel size.
    #[arg(long)]
    tp: Option<u64>,
    /// Pipeline-parallel size (at most the layer count).
    #[arg(long)]
    pp: Option<u64>,
    /// Tokens per page.
    #[arg(long)]
    page_size: Option<u64>,
    /// One descriptor per page per layer, or per page across a stage's layers.
    #[arg(long, value_enum)]
    access_pattern: Option<AccessArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AccessArg {
    Block,
    Layer,
}

/// Reads the model and the model config; the element type is --kv-dtype, else the model
/// config's kvcache_quant_mode, else the model's own.
fn load(
    m: &ModelArgs,
    l: &LayoutArgs,
    page_default: u64,
) -> anyhow::Result<(KvGeometry, ModelConfig)> {
    let mc = match &l.model_config {
        Some(p) => Some(kvbench::load_config(p)?),
        None => None,
    };
    let dtype = m.kv_dtype.or(mc.as_ref().map(|c| c.kvcache_quant_mode));
    let g = model::load(&m.model, dtype)?;
    let mut c = mc.unwrap_or_else(|| ModelConfig {
        layout: KvLayout {
            page_size: page_default,
            ..KvLayout::default()
        },
        ..ModelConfig::default()
    });
    c.layout.tp = l.tp.unwrap_or(c.layout.tp);
    c.layout.pp = l.pp.unwrap_or(c.layout.pp);
    c.layout.page_size = l.page_size.unwrap_or(c.layout.page_size);
    if let Some(a) = l.access_pattern {
        c.layout.access = match a {
            AccessArg::Block => AccessPattern::Block,
            AccessArg::Layer => AccessPattern::Layer,
        };
    }
    c.layout.validate(&g)?;
    Ok((g, c))
}

/// Options of `kvxfer kv size`.
#[derive(Debug, Args)]
struct SizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt lengths, tokens.
    #[arg(
        short,
        long,
        value_delimiter = ',',
        default_value = "1000,4096,12288,20000"
    )]
    tokens: Vec<u64>,
    /// Link rates for the theoretical times, 10^9 bytes/s (the team's EFA and TCP).
    #[arg(long, value_delimiter = ',', default_value = "4.4,2.9")]
    link_gbps: Vec<f64>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// Options of `kvxfer kv plan`.
#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    layout: LayoutArgs,
    /// Input sequence length, tokens.
    #[arg(long)]
    isl: Option<u64>,
    /// Output sequence length, tokens (recorded only).
    #[arg(long)]
    osl: Option<u64>,
    /// Requests per nixlbench iteration.
    #[arg(long)]
    num_requests: Option<u64>,
    /// Output form, as KVBench's --format.
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
    /// nixlbench's --backend (KVBench itself refuses LIBFABRIC; nixlbench takes it).
    #[arg(long, default_value = "UCX", value_parser = ["UCX", "LIBFABRIC"])]
    backend: String,
    /// nixlbench's --initiator_seg_type.
    #[arg(long, default_value = "DRAM", value_parser = ["DRAM", "VRAM"])]
    initiator_seg_type: String,
    /// nixlbench's --target_seg_type.
    #[arg(long, default_value = "DRAM", value_parser = ["DRAM", "VRAM"])]
    target_seg_type: String,
    /// nixlbench's --op_type.
    #[arg(long, default_value = "WRITE", value_parser = ["WRITE", "READ"])]
    op_type: String,
    /// nixlbench's --etcd_endpoints.
    #[arg(long, default_value = "http://localhost:2379")]
    etcd_endpoints: String,
    /// nixlbench's --num_iter.
    #[arg(long, default_value_t = 1000)]
    num_iter: u64,
    /// nixlbench's --warmup_iter.
    #[arg(long, default_value_t = 100)]
    warmup_iter: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PlanFormat {
    Text,
    Json,
    Csv,
}

/// Options of `kvxfer kv profile`.
#[derive(Debug, Args)]
struct ProfileArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    layout: LayoutArgs,
    /// Prompt lengths, tokens.
    #[arg(short, long, value_delimiter = ',', default_value = "1000,4096,12288")]
    tokens: Vec<u64>,
    /// Idle gaps before each timed transfer, ms (0: back to back, always measured).
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000")]
    idle_ms: Vec<u64>,
    /// K and V in descriptors of their own (separate K and V tensors per layer, half the IO
    /// size each); by default together, as KVBench counts them.
    #[arg(long)]
    kv_split: bool,
    /// Link rate of the theoretical time, 10^9 bytes/s [default: 4.4 on efa, else 2.9].
    #[arg(long)]
    link_gbps: Option<f64>,
    #[command(flatten)]
    fabric: FabricArgs,
    /// RMA write, read, or send.
    #[arg(short = 'o', long, value_enum, default_value = "write")]
    op: XferOpArg,
    /// Descriptors in flight.
    #[arg(short = 'W', long, default_value_t = 64)]
    window: usize,
    /// Timed transfers per shape, 1 to 10^12, or auto: until the median is known to
    /// --precision [default: 10].
    #[arg(short = 'I', long, value_parser = super::count::parse_iterations)]
    iterations: Option<super::count::IterationsArg>,
    #[command(flatten)]
    pacing: super::count::PacingArgs,
    /// Untimed transfers first, 0 to 10^12 (the first one is the cold transfer).
    #[arg(short, long, default_value_t = 1, value_parser = super::common::parse_warmup)]
    warmup: u64,
    /// Check every byte at the destination after every transfer.
    #[arg(long)]
    verify: bool,
    /// Evict each side's host buffers from the CPU caches before every transfer (outside the
    /// timed span), so the idle gaps' slow start is not the cache cooling
    #[arg(long)]
    cold_cache: bool,
    /// Pin the initiator's worker thread to the first of these CPUs and the target's to the
    /// next (as xfer --cpus)
    #[arg(long, value_name = "LIST", value_parser = super::common::parse_cpus)]
    cpus: Option<kvxfer::run::sched::CpuPlan>,
    /// Be the target: listen on [ADDR][:PORT] (default 0.0.0.0:47590).
    #[arg(long, value_name = "[ADDR][:PORT]", num_args = 0..=1, default_missing_value = "", conflicts_with = "peer")]
    listen: Option<String>,
    /// Be the initiator: connect to the target at HOST[:PORT].
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: Option<String>,
    /// Seconds to wait for the peer and for each transfer.
    #[arg(long, default_value = "120", value_parser = super::common::parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    path: PathArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `kvxfer kv`.
pub fn run(a: KvArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        KvCommand::Size(a) => size(a),
        KvCommand::Plan(a) => plan(*a),
        KvCommand::Profile(a) => profile(*a),
    }
}

fn size(a: SizeArgs) -> anyhow::Result<ExitCode> {
    let g = model::load(&a.model.model, a.model.kv_dtype)?;
    let t = model::size::table(&g, &a.tokens, &a.link_gbps)?;
    if a.json {
        kvxfer::outln!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        kvxfer::out!("{}", render::size_text(&t));
    }
    Ok(ExitCode::SUCCESS)
}

fn plan(a: PlanArgs) -> anyhow::Result<ExitCode> {
    let (g, mut c) = load(&a.model, &a.layout, 1)?;
    c.workload.isl = a.isl.unwrap_or(c.workload.isl);
    c.workload.osl = a.osl.unwrap_or(c.workload.osl);
    c.workload.num_requests = a.num_requests.unwrap_or(c.workload.num_requests);
    if a.model.kv_dtype.is_none() && c.model_quant_mode != c.kvcache_quant_mode.name() {
        eprintln!(
            "kvxfer: note: KVBench sizes a GQA cache by model_quant_mode ({}); kvxfer uses \
             kvcache_quant_mode ({})",
            c.model_quant_mode,
            c.kvcache_quant_mode.name()
        );
    }
    let opts = NixlbenchOptions {
        backend: a.backend,
        initiator_seg_type: a.initiator_seg_type,
        target_seg_type: a.target_seg_type,
        op_type: a.op_type,
        etcd_endpoints: a.etcd_endpoints,
        num_iter: a.num_iter,
        warmup_iter: a.warmup_iter,
    };
    let p = kvbench::plan(&g, c.layout, c.workload, &opts)?;
    let class = kvbench_class(&a.model.model, &g);
    let file = a
        .layout
        .model_config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match a.format {
        PlanFormat::Text => kvxfer::out!("{}", render::plan_text(&p, &file, &class)),
        PlanFormat::Json => kvxfer::outln!(
            "{}",
            serde_json::to_string_pretty(&render::plan_json(&p, &file, &class))?
        ),
        PlanFormat::Csv => kvxfer::out!(
            "{}",
            render::plan_csv(&p, &file, &c.model_quant_mode, &class)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The KVBench class of `kv plan`: a KVBench model file runs as the class its own name routes
/// to (as KVBench loads it); any other model as the class `plan generate` writes it for.
fn kvbench_class(spec: &str, g: &KvGeometry) -> render::ClassOutcome {
    let path = std::path::Path::new(spec);
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    let choice = if yaml && path.is_file() {
        kvbench_class::loaded_class(g)
    } else {
        kvbench_class::choose(g, None)
    };
    choice.map_err(|e| e.to_string())
}

/// The profile's configuration from its options: the model, its layout, and xfer's settings.
fn profile_config(a: &ProfileArgs) -> anyhow::Result<KvProfileConfig> {
    // Outputs first: a run that could not keep its result is refused before anything is read.
    a.output.check()?;
    a.fabric.check()?;
    // vLLM's default block: 16 tokens per page.
    let (g, c) = load(&a.model, &a.layout, 16)?;
    let provider = a.fabric.provider();
    let link_gbps = a
        .link_gbps
        .unwrap_or(if provider == "efa" { 4.4 } else { 2.9 });
    let base = XferConfig {
        backend: a.fabric.backend.into(),
        provider,
        endpoint: a.fabric.endpoint_type(),
        domain: a.fabric.domain.clone(),
        op: a.op.into(),
        size: 1,
        block: None,
        window: a.window,
        concurrency: 1,
        mode: ConcurrencyMode::Endpoints,
        scheme: Scheme::Pairwise,
        iterations: a.pacing.count(a.iterations)?.unwrap_or(Count::Fixed(10)),
        warmup: a.warmup,
        verify: a.verify,
        reuse: false,
        cold_cache: a.cold_cache,
        timeout: a.timeout,
        idle_before_timed: Duration::ZERO,
        rails: None,
        stripe_threshold: kvxfer::run::xfer::DEFAULT_STRIPE_THRESHOLD,
        mem: Default::default(),
        open: None,
        rounds: 1,
        cpus: a.cpus.clone().unwrap_or_default(),
    };
    Ok(KvProfileConfig {
        model: g,
        layout: c.layout,
        split_kv: a.kv_split,
        tokens: a.tokens.clone(),
        idle_ms: a.idle_ms.clone(),
        link_gbps,
        base,
    })
}

/// How the progress line names a run's shape.
fn shape_name(shape: Shape) -> String {
    match shape {
        Shape::Descriptors { idle_ms: 0 } => "descriptor list".to_string(),
        Shape::Descriptors { idle_ms } => format!("after {idle_ms} ms idle"),
        Shape::Contiguous => "contiguous".to_string(),
    }
}

fn profile(a: ProfileArgs) -> anyhow::Result<ExitCode> {
    let cfg = profile_config(&a)?;
    let runs = cfg.runs()?;
    eprintln!(
        "kvxfer: kv profile of {} ({} B/token, {} cache): {} runs, descriptors of {}",
        cfg.model.name,
        cfg.model.bytes_per_token(),
        cfg.model.dtype.name(),
        runs.len(),
        human_size(cfg.io_size()?)
    );
    let bar = progress_bar(runs.len() as u64, "kv profile");
    let mut saved: anyhow::Result<()> = Ok(());
    let mut checkpointed = false;
    // A stream (a FIFO, /dev/stdout) takes one document: the final one, no checkpoints.
    let stream = a
        .output
        .json
        .as_deref()
        .is_some_and(|p| kvxfer::report::destination(p).is_ok_and(|d| d.is_stream()));
    let mut events = |e: ProfileEvent<'_>| match e {
        ProfileEvent::Starting { index, run, .. } => {
            bar.set_position(index as u64);
            bar.set_message(format!("{} tokens, {}", run.tokens, shape_name(run.shape)));
        }
        // The prompt lengths done so far reach the file now: a later failure keeps them.
        ProfileEvent::Checkpoint(doc) => {
            if let (Some(path), Ok(()), false) = (&a.output.json, &saved, stream) {
                let mut doc = doc.clone();
                doc.pattern_id = a.output.pattern_id.clone();
                if let Some(p) = &a.layout.model_config {
                    doc.config
                        .insert("model_config".into(), p.display().to_string().into());
                }
                saved = kvxfer::report::write_atomic(path, &doc.to_json())
                    .with_context(|| format!("writing {}", path.display()));
                checkpointed = saved.is_ok();
            }
        }
    };
    let doc = if let Some(listen) = &a.listen {
        // The provider and the memory first: a target that cannot run says so before it says
        // it waits.
        if let Some(first) = runs.first() {
            first
                .cfg
                .validate(Sides::One(kvxfer::peer::Side::Target))
                .context("kv profile")?;
        }
        let listener = OobListener::bind(parse_listen(listen, DEFAULT_PORT)?)?;
        eprintln!(
            "kvxfer: kv profile target waiting on {}",
            listener.local_addr()
        );
        kv_profile::run_target(&cfg, &listener, &mut events)
    } else if let Some(peer) = &a.peer {
        kv_profile::run_initiator(&cfg, peer, &mut events)
    } else {
        kv_profile::run_local(&cfg, &mut events)
    };
    bar.finish_and_clear();
    saved?;
    let mut doc = doc.with_context(|| match &a.output.json {
        Some(p) if checkpointed => format!(
            "kv profile (the prompt lengths finished before the failure are in {})",
            p.display()
        ),
        _ => "kv profile".to_string(),
    })?;
    if let Some(p) = &a.layout.model_config {
        doc.config
            .insert("model_config".into(), p.display().to_string().into());
    }
    let judged = a.path.judge(&mut doc);
    a.output
        .publish(&mut doc, Some(&Table(render::profile_text)))?;
    a.path.exit(judged, &a.output)
}
