//! A result's `path`: this side's view first, every other side's after it, and the one line
//! that says where the payload went.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::view::{PathKind, SideView, SHORT_RATIO};
use crate::run::sched::{Scheduling, ThreadSched};

/// What `counters` says in every path: whose traffic the figures hold.
pub const SCOPE: &str = "host-wide: every process's traffic on a device counts";

/// A carrying device, as the verdict names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathDevice {
    /// Its name.
    pub name: String,
    /// Bytes it moved over the span.
    pub bytes: Option<u64>,
    /// `bytes` over the payload.
    pub ratio: Option<f64>,
    /// Its part of what the carriers moved.
    pub share: Option<f64>,
}

/// Which devices carried a result's payload, as every side's counters saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathReport {
    /// One line: where the payload went.
    pub verdict: String,
    /// Where this side's payload went.
    pub kind: PathKind,
    /// The devices that carried it on this side.
    pub devices: Vec<PathDevice>,
    /// Bytes those devices moved over the payload.
    pub bytes_ratio: Option<f64>,
    /// Their summed line rate, 10^9 bits/s.
    pub line_rate_gbit_s: Option<f64>,
    /// The achieved rate over that line rate.
    pub line_rate_fraction: Option<f64>,
    /// What `--expect-path` asked for, when it was given.
    pub expected: Option<String>,
    /// Whether the payload took that path (None without `--expect-path`, or when the counters
    /// cannot tell).
    pub as_expected: Option<bool>,
    /// Whose traffic the counters hold.
    pub counters: String,
    /// Each side's own view: this side first.
    pub sides: Vec<SideView>,
}

/// A line rate in the kernel's style: `400 Gb/s`, `2.5 Gb/s`.
pub fn rate_text(gbit_s: f64) -> String {
    if (gbit_s - gbit_s.round()).abs() < 0.05 {
        format!("{gbit_s:.0} Gb/s")
    } else {
        format!("{gbit_s:.1} Gb/s")
    }
}

/// Where the payload went, in the words of one view.
pub fn describe(v: &SideView) -> String {
    match v.kind {
        PathKind::Network | PathKind::Local => {
            let ratio = v.bytes_ratio.unwrap_or(0.0);
            let mut s = if v.carriers.len() == 1 {
                format!("{} carried {ratio:.2}x of the payload", v.carriers[0])
            } else {
                let parts: Vec<String> = v
                    .devices
                    .iter()
                    .filter(|d| d.carried)
                    .map(|d| format!("{} {:.0}%", d.name, d.share.unwrap_or(0.0) * 100.0))
                    .collect();
                format!("{}, {ratio:.2}x", parts.join(" "))
            };
            if let Some((f, rate)) = v.line_rate_fraction.zip(v.line_rate_gbit_s) {
                s.push_str(&format!(", {:.0}% of {}", f * 100.0, rate_text(rate)));
            }
            if v.bytes_ratio.is_some_and(|r| r < SHORT_RATIO) {
                s.push_str(" (less than the payload: the rest went elsewhere)");
            } else if v.other_traffic_likely {
                s.push_str(" (other traffic likely)");
            }
            s
        }
        PathKind::None => "no network device carried the payload (it moved through shared \
                           memory or a same-host copy)"
            .to_string(),
        PathKind::Unknown => format!(
            "unknown: {}",
            v.notes
                .first()
                .map_or("the counters cannot tell", String::as_str)
        ),
    }
}

/// Another side's carriers in a few words (`kvb 1.02x`, `no network device`).
fn brief(v: &SideView) -> String {
    match v.kind {
        PathKind::Network | PathKind::Local => format!(
            "{} {:.2}x",
            v.carriers.join("+"),
            v.bytes_ratio.unwrap_or(0.0)
        ),
        PathKind::None => "no network device".into(),
        PathKind::Unknown => "unknown".into(),
    }
}

impl PathReport {
    /// The path of `own` (this side's view), with the other sides' views after it.
    pub fn of(own: SideView, others: Vec<SideView>) -> PathReport {
        let mut verdict = describe(&own);
        for o in &others {
            let differs = o.kind != own.kind || o.carriers != own.carriers || o.host != own.host;
            if differs {
                verdict.push_str(&format!("; {}: {}", o.role, brief(o)));
            }
        }
        let devices = own
            .devices
            .iter()
            .filter(|d| d.carried)
            .map(|d| PathDevice {
                name: d.name.clone(),
                bytes: d.bytes,
                ratio: d.ratio,
                share: d.share,
            })
            .collect();
        let mut sides = vec![own];
        sides.extend(others);
        let own = &sides[0];
        PathReport {
            verdict,
            kind: own.kind,
            devices,
            bytes_ratio: own.bytes_ratio,
            line_rate_gbit_s: own.line_rate_gbit_s,
            line_rate_fraction: own.line_rate_fraction,
            expected: None,
            as_expected: None,
            counters: SCOPE.to_string(),
            sides,
        }
    }

    /// This side's view.
    pub fn own(&self) -> Option<&SideView> {
        self.sides.first()
    }

    /// Adds what the scheduler did to this side's thread (`ours`) and to its pair peer's
    /// (`theirs`, the second view) over more spans, such as a run's later rounds: a side whose
    /// figures are missing from either states none.
    pub fn add_sched(&mut self, ours: Option<ThreadSched>, theirs: Option<ThreadSched>) {
        for (side, more) in self.sides.iter_mut().zip([ours, theirs]) {
            side.sched = ThreadSched::sum(side.sched, more);
        }
    }

    /// Takes the sides' scheduler figures out of the report, as a result's `scheduling`
    /// (None when no side carried any).
    fn take_scheduling(&mut self) -> Option<Scheduling> {
        let mut take = |role: &str| -> Vec<ThreadSched> {
            self.sides
                .iter_mut()
                .filter(|s| s.role.contains(role))
                .filter_map(|s| s.sched.take())
                .collect()
        };
        let (initiator, target) = (take("initiator"), take("target"));
        Scheduling::of(&initiator, &target)
    }

    /// Puts the report into `r` as its `path`, and the sides' scheduler figures as its
    /// `extra.scheduling`.
    pub fn attach(mut self, r: &mut crate::report::SizeResult) {
        if let Some(s) = self
            .take_scheduling()
            .and_then(|s| serde_json::to_value(s).ok())
        {
            r.extra.insert("scheduling".into(), s);
        }
        r.path = Some(self.to_value());
    }

    /// The report as a result's `path`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A result's `path`, when it is one kvxfer wrote.
    pub fn from_value(v: &Value) -> Option<PathReport> {
        serde_json::from_value(v.clone()).ok()
    }
}
