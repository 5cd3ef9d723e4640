//! `kvxfer pingpong`: fi_pingpong's measurement (L0).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kvxfer::bootstrap::{OobListener, DEFAULT_PORT};
use kvxfer::fabric::{EndpointType, MsgMode};
use kvxfer::report::table;
use kvxfer::run::pingpong::{self, PingPongConfig};

use super::common::{parse_listen, parse_sizes, progress_bar, EndpointArg, ModeArg, OutputArgs};

/// Options of `kvxfer pingpong`.
#[derive(Debug, Args)]
pub struct PingPongArgs {
    /// libfabric provider (tcp, shm, udp, efa, ...).
    #[arg(short, long, default_value = "tcp")]
    provider: String,
    /// Endpoint type.
    #[arg(short, long, value_enum, default_value = "rdm")]
    endpoint: EndpointArg,
    /// Send/receive (msg) or tagged send/receive.
    #[arg(short, long, value_enum, default_value = "msg")]
    mode: ModeArg,
    /// Domain (interface) to use; by default the one holding the control connection's address.
    #[arg(short, long)]
    domain: Option<String>,
    /// Message sizes: a comma-separated list with binary suffixes (1K = 1024), or `all`.
    #[arg(short = 'S', long, default_value = "64,1K,64K,1M,10M,100M", value_parser = parse_sizes)]
    sizes: std::vec::Vec<u64>,
    /// Timed iterations per size [default: 10000 below 64K, 1000 below 1M, 100 from 1M].
    #[arg(short = 'I', long)]
    iterations: Option<u64>,
    /// Untimed iterations before each size (0 reproduces fi_pingpong, which has none).
    #[arg(short, long, default_value_t = 10)]
    warmup: u64,
    /// Fill and check the payload of every message.
    #[arg(short = 'c', long)]
    verify: bool,
    /// Never use fi_inject, even below the inject size.
    #[arg(long)]
    no_inject: bool,
    /// Be the target: listen for the initiator on [ADDR][:PORT] (default 0.0.0.0:47590).
    #[arg(long, value_name = "[ADDR][:PORT]", num_args = 0..=1, default_missing_value = "", conflicts_with = "peer")]
    listen: Option<String>,
    /// Be the initiator: connect to the target at HOST[:PORT].
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: Option<String>,
    /// Seconds to wait for the peer and for each completion.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(a: PingPongArgs) -> anyhow::Result<ExitCode> {
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let cfg = PingPongConfig {
        provider: a.provider.clone(),
        endpoint: match a.endpoint {
            EndpointArg::Rdm => EndpointType::Rdm,
            EndpointArg::Msg => EndpointType::Msg,
        },
        mode: match a.mode {
            ModeArg::Msg => MsgMode::Msg,
            ModeArg::Tagged => MsgMode::Tagged,
        },
        domain: a.domain.clone(),
        sizes: a.sizes.clone(),
        iterations: a.iterations,
        warmup: a.warmup,
        verify: a.verify,
        inject: !a.no_inject,
        timeout: Duration::from_secs_f64(a.timeout),
    };
    let bar = progress_bar(cfg.sizes.len() as u64, "pingpong");
    bar.enable_steady_tick(Duration::from_millis(250));
    let mut progress = |p: pingpong::Progress| {
        bar.set_position(p.done as u64);
        bar.set_message(format!("size {} done", kvxfer::units::human_size(p.size)));
    };
    let outcome = if let Some(listen) = &a.listen {
        let addr: SocketAddr = parse_listen(listen, DEFAULT_PORT)?;
        let listener = OobListener::bind(addr)?;
        eprintln!(
            "kvxfer: pingpong target waiting on {} ({} {})",
            listener.local_addr(),
            cfg.provider,
            a.endpoint.name()
        );
        pingpong::run_target(&cfg, &listener, &mut progress)
    } else if let Some(peer) = &a.peer {
        pingpong::run_initiator(&cfg, peer, &mut progress)
    } else {
        pingpong::run_local(&cfg, &mut progress)
    };
    bar.finish_and_clear();
    let mut doc = outcome?.doc;
    print!("{}", table::pingpong(&doc));
    a.output.export(&mut doc)?;
    Ok(ExitCode::SUCCESS)
}
