//! `kvxfer doctor`: the node checked before anything is measured. Each check reads what it
//! judges (a file under the sysfs or procfs root, a library call, a probe of etcd or the peer)
//! and says `ok`, `warn`, `fail` or `skip` (cannot apply here, and why), with the evidence and
//! one line of what to do. Given a plan, each finding names the patterns it concerns, so
//! `kvxfer run` refuses a plan only for failures its chosen patterns need.
//!
//! Prints nothing; the CLI shows the [`DoctorReport`].

pub mod facts;
pub mod fake;
pub mod host;
pub mod needs;

mod efa;
mod etcd;
mod gpu;
mod libraries;
mod memory;
mod noise;
mod peer;
mod tcp;
mod tools;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use facts::Facts;
pub use host::Host;
pub use needs::{PatternNeed, PlanNeeds};

/// The longest any check waits for the network (etcd, the peer).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A check's verdict, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine for the measurements asked for.
    Ok,
    /// Cannot apply here; the evidence says why.
    Skip,
    /// The figures will be affected, or something could not be judged.
    Warn,
    /// The measurements that need it will fail.
    Fail,
}

impl Status {
    /// The word the table prints.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `group.name` (`memory.memlock`).
    pub check: String,
    /// The verdict.
    pub status: Status,
    /// What was read: the value and where (file, call, probe).
    pub evidence: String,
    /// One line of what to do; empty when nothing is to be done.
    pub action: String,
    /// The plan's patterns this concerns; absent: every pattern (or no plan was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
}

impl Finding {
    fn new(check: &str, status: Status, evidence: String, action: String) -> Finding {
        Finding {
            check: check.to_string(),
            status,
            evidence,
            action,
            patterns: None,
        }
    }

    /// An `ok` finding.
    pub fn ok(check: &str, evidence: impl Into<String>) -> Finding {
        Finding::new(check, Status::Ok, evidence.into(), String::new())
    }

    /// A `skip` finding: the check cannot apply, `why`.
    pub fn skip(check: &str, why: impl Into<String>) -> Finding {
        Finding::new(check, Status::Skip, why.into(), String::new())
    }

    /// A `warn` finding.
    pub fn warn(check: &str, evidence: impl Into<String>, action: impl Into<String>) -> Finding {
        Finding::new(check, Status::Warn, evidence.into(), action.into())
    }

    /// A `fail` finding.
    pub fn fail(check: &str, evidence: impl Into<String>, action: impl Into<String>) -> Finding {
        Finding::new(check, Status::Fail, evidence.into(), action.into())
    }

    /// The same with `action` as what to do (or what it means, for an `ok`).
    pub fn with_action(mut self, action: impl Into<String>) -> Finding {
        self.action = action.into();
        self
    }

    /// The same, concerning only `ids`.
    pub fn about(mut self, ids: Vec<String>) -> Finding {
        self.patterns = Some(ids);
        self
    }

    /// The same, concerning only `ids` where a plan was given (without one, the node).
    pub(crate) fn about_if(self, c: &Ctx<'_>, ids: Vec<String>) -> Finding {
        if c.has_plan() {
            self.about(ids)
        } else {
            self
        }
    }

    /// Whether it concerns pattern `id`.
    pub fn concerns(&self, id: &str) -> bool {
        self.patterns
            .as_ref()
            .map_or(true, |ids| ids.iter().any(|i| i == id))
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// The plan, loaded; its patterns say what the node must offer.
    pub plan: Option<Value>,
    /// Only these of its patterns; empty: all.
    pub patterns: Vec<String>,
    /// The plan's template folder (its etcd start command is rendered from `_macros.jinja2`).
    pub templates: Option<PathBuf>,
    /// A libfabric provider the measurements use (`tcp`, `efa`).
    pub provider: Option<String>,
    /// An etcd to check (`http://HOST:PORT`); None: the plan's, when a pattern needs one.
    pub etcd: Option<String>,
    /// The peer (`HOST` or `HOST:PORT`; the port defaults to the plan's control port).
    pub peer: Option<String>,
}

/// Every finding of one doctor run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoctorReport {
    /// The plan's name, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Findings, grouped by check, in the order run.
    pub findings: Vec<Finding>,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

/// A failed finding and the chosen patterns that need it.
#[derive(Debug, Clone)]
pub struct Blocker<'a> {
    /// The finding.
    pub finding: &'a Finding,
    /// The patterns among those chosen that it concerns (all chosen, for a host-wide one).
    pub patterns: Vec<String>,
}

impl DoctorReport {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    /// How many findings have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }

    /// The failed findings that concern any of `ids`, each with those patterns.
    pub fn blocking(&self, ids: &[String]) -> Vec<Blocker<'_>> {
        self.findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .filter_map(|f| {
                let patterns: Vec<String> = ids.iter().filter(|i| f.concerns(i)).cloned().collect();
                (!patterns.is_empty()).then_some(Blocker {
                    finding: f,
                    patterns,
                })
            })
            .collect()
    }

    /// The findings a result of pattern `id` carries: those that concern it, skips left out.
    pub fn concerning(&self, id: &str) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.status != Status::Skip && f.concerns(id))
            .collect()
    }
}

/// What every check reads.
pub(crate) struct Ctx<'a> {
    pub o: &'a DoctorOptions,
    pub host: &'a Host,
    pub facts: &'a Facts,
    pub needs: &'a PlanNeeds,
}

impl Ctx<'_> {
    /// A plan was given.
    pub fn has_plan(&self) -> bool {
        self.o.plan.is_some()
    }

    /// EFA is asked for: `--provider efa`, or a pattern over efa or srd.
    pub fn wants_efa(&self) -> bool {
        self.o.provider.as_deref() == Some("efa")
            || self.needs.patterns.iter().any(PatternNeed::efa)
    }

    /// A variable as the plan's commands see it: `common.env` over this environment, with
    /// where it comes from.
    pub fn var(&self, name: &str) -> Option<(String, &'static str)> {
        if let Some(v) = self.needs.env.get(name) {
            return Some((v.clone(), "plan common.env"));
        }
        self.host.var(name).map(|v| (v.to_string(), "environment"))
    }

    /// The patterns for which `f` holds.
    pub fn ids(&self, f: impl Fn(&PatternNeed) -> bool) -> Vec<String> {
        self.needs.ids(f)
    }
}

/// `a, b, c` (at most `max` names, then `and N more`).
pub(crate) fn list(names: &[String], max: usize) -> String {
    if names.len() <= max {
        return names.join(", ");
    }
    format!("{} and {} more", names[..max].join(", "), names.len() - max)
}

/// Bytes exactly and approximately: `704643072 B (672.0 MiB)`.
pub(crate) fn bytes(v: u64) -> String {
    format!("{v} B ({})", crate::run::memory::approx(v))
}

/// Runs every check on `host`, with the libraries' facts from `gather` (run beside the network
/// probes, so the whole takes about the longer of the two).
pub fn examine(
    o: &DoctorOptions,
    host: &Host,
    gather: &(dyn Fn() -> Facts + Sync),
) -> DoctorReport {
    let start = Instant::now();
    let needs = o
        .plan
        .as_ref()
        .map(|p| PlanNeeds::of(p, &o.patterns))
        .unwrap_or_default();
    // What waits (the network, processes run, the CPU time watched) runs beside the libraries'
    // questions: the whole takes about the longest of them.
    let plan = o.plan.is_some();
    let (facts, etcd_probe, peer_probe, sample, smi, tools) = std::thread::scope(|s| {
        let e = s.spawn(|| etcd::probe(o, &needs));
        let p = s.spawn(|| peer::probe(o, &needs));
        let n = s.spawn(|| noise::sample(host));
        let g = s.spawn(|| gpu::smi_memory(host));
        let t = s.spawn(|| tools::check(host, &needs, plan));
        let facts = gather();
        let (e, p, n, g) = (e.join(), p.join(), n.join(), g.join());
        let t = t.join().unwrap_or_default();
        (
            facts,
            e.ok().flatten(),
            p.ok().flatten(),
            n.ok(),
            g.ok().flatten(),
            t,
        )
    });
    let ctx = Ctx {
        o,
        host,
        facts: &facts,
        needs: &needs,
    };
    let mut findings = Vec::new();
    findings.extend(libraries::check(&ctx));
    findings.extend(efa::check(&ctx));
    findings.extend(gpu::check(&ctx, smi));
    findings.extend(memory::check(&ctx));
    findings.extend(tcp::check(&ctx, peer::address(&peer_probe)));
    findings.push(etcd::judge(&ctx, etcd_probe));
    findings.push(peer::judge(&peer_probe));
    findings.extend(tools);
    findings.extend(noise::check(&ctx, sample.unwrap_or_default()));
    DoctorReport {
        plan: o
            .plan
            .as_ref()
            .and_then(|p| p["name"].as_str())
            .map(str::to_string),
        findings,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Runs every check on this host with its real libraries.
pub fn doctor(o: &DoctorOptions) -> DoctorReport {
    examine(o, &Host::current(), &Facts::gather)
}

#[cfg(test)]
mod tests;
