//! The choices an xfer run is given beside its sizes and counts: how concurrent transfers
//! are carried, who sends to whom, the library, the local thread layout, the rails and the
//! open-loop arrivals.

use crate::bench::arrivals::ArrivalKind;

/// How N concurrent transfers are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencyMode {
    /// One worker per transfer, each with its own endpoint and completion queues.
    Endpoints,
    /// One worker, N transfers outstanding on its one endpoint.
    Outstanding,
}

/// Who sends to whom (recorded; on one host every scheme runs over the same loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Worker i of the initiator pairs with worker i of the target.
    Pairwise,
    /// N initiators into one target (incast).
    ManyToOne,
    /// One initiator into N targets.
    OneToMany,
}

impl Scheme {
    /// The name in results (nixlbench spells them without separators).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Pairwise => "pairwise",
            Scheme::ManyToOne => "many_to_one",
            Scheme::OneToMany => "one_to_many",
        }
    }
}

/// Which library moves the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XferBackend {
    /// libfabric RMA (EFA, tcp, shm, ...), with remote CQ data for writes.
    Libfabric,
    /// UCX put/get/tagged send (UCX_TLS and UCX_NET_DEVICES choose the transports).
    Ucx,
}

impl XferBackend {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            XferBackend::Libfabric => "libfabric",
            XferBackend::Ucx => "ucx",
        }
    }
}

/// How a one-process run lays out its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalThreads {
    /// One thread per worker drives both ends of its connection (UCX).
    Pair,
    /// The initiator's and the target's workers run in threads of their own.
    Side,
}

impl LocalThreads {
    /// The layout a one-process run of `backend` takes unless told: pair for UCX, whose
    /// endpoints connect without a handshake; side for libfabric, whose connections need both
    /// ends at once.
    pub fn default_for(backend: XferBackend) -> LocalThreads {
        match backend {
            XferBackend::Ucx => LocalThreads::Pair,
            XferBackend::Libfabric => LocalThreads::Side,
        }
    }

    /// The name in results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LocalThreads::Pair => "pair",
            LocalThreads::Side => "side",
        }
    }
}

/// The most rails a worker stripes over.
pub const MAX_RAILS: usize = 256;

/// Which rails (libfabric endpoints) a worker stripes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RailSpec {
    /// Every domain the provider offers.
    Auto,
    /// This many rails: on a loopback control address, 127.0.0.1, 127.0.0.2, ...; elsewhere
    /// endpoints of their own on the one domain.
    Count(usize),
    /// One rail per named domain.
    Domains(Vec<String>),
}

impl RailSpec {
    /// Parses `auto`, a count, or a comma-separated list of domains.
    pub fn parse(s: &str) -> Result<RailSpec, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(RailSpec::Auto);
        }
        if let Ok(n) = s.parse::<usize>() {
            return match n {
                0 => Err("--rails must be at least 1".into()),
                n if n > MAX_RAILS => Err(format!("--rails {n}: at most {MAX_RAILS} rails")),
                n => Ok(RailSpec::Count(n)),
            };
        }
        let domains: Vec<String> = s.split(',').map(|d| d.trim().to_string()).collect();
        if domains.iter().any(|d| d.is_empty()) {
            return Err(format!(
                "--rails {s:?}: expected auto, a count, or dev,dev,..."
            ));
        }
        if domains.len() > MAX_RAILS {
            return Err(format!(
                "--rails: {} domains, at most {MAX_RAILS} rails",
                domains.len()
            ));
        }
        Ok(RailSpec::Domains(domains))
    }

    /// The form in results and fingerprints.
    pub fn name(&self) -> String {
        match self {
            RailSpec::Auto => "auto".into(),
            RailSpec::Count(n) => n.to_string(),
            RailSpec::Domains(d) => d.join(","),
        }
    }
}

/// Open-loop arrivals: transfers scheduled at their arrival times whatever earlier ones are
/// doing, one session per rate.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoop {
    /// Poisson or fixed gaps.
    pub kind: ArrivalKind,
    /// Transfers per second per initiator worker: one session each, in this order.
    pub rates: Vec<f64>,
    /// Transfers outstanding per worker at most (each its own region); arrivals beyond are
    /// dropped.
    pub max_outstanding: usize,
}

/// Default `--max-outstanding`.
pub const DEFAULT_MAX_OUTSTANDING: usize = 8;

impl OpenLoop {
    /// The rates as the fingerprint and the configuration block spell them.
    pub fn rates_name(&self) -> String {
        let r: Vec<String> = self.rates.iter().map(|r| r.to_string()).collect();
        r.join(",")
    }
}
