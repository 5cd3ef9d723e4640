//! The doctor before a plan's patterns: the run refused for failed checks its chosen patterns
//! need, and each result document given the findings that concern its pattern (in
//! `environment.doctor`, written into the document after its pattern ran, before recording).

use std::path::Path;

use serde_json::{json, Value};

use super::{DoctorSummary, PlanRunError, PlanRunOptions};
use crate::doctor::{doctor, DoctorOptions, DoctorReport, Status};
use crate::plan::select::{Role, Selected};
use crate::report::folder::read_folder;
use crate::report::write_atomic;

/// The doctor on this node for the chosen patterns of `plan`; the client side checks its peer
/// (`PEER_IP`) too.
pub(super) fn check(plan: &Value, chosen: &[Selected], o: &PlanRunOptions) -> DoctorReport {
    let peer = (o.role == Some(Role::Client))
        .then(|| std::env::var("PEER_IP").ok())
        .flatten()
        .filter(|p| !p.is_empty());
    doctor(&DoctorOptions {
        plan: Some(plan.clone()),
        patterns: chosen.iter().map(|s| s.id.clone()).collect(),
        templates: Some(
            o.templates
                .clone()
                .unwrap_or_else(|| crate::plan::default_templates(&o.plan)),
        ),
        peer,
        ..DoctorOptions::default()
    })
}

/// The refusal when a failed check concerns a chosen pattern: each check with its patterns.
pub(super) fn refusal(report: &DoctorReport, chosen: &[Selected]) -> Option<PlanRunError> {
    let ids: Vec<String> = chosen.iter().map(|s| s.id.clone()).collect();
    let blockers = report.blocking(&ids);
    if blockers.is_empty() {
        return None;
    }
    let named: Vec<String> = blockers
        .iter()
        .map(|b| {
            let all = b.patterns.len() == ids.len() && ids.len() > 1;
            format!(
                "{} ({})",
                b.finding.check,
                if all {
                    "every pattern".to_string()
                } else {
                    b.patterns.join(", ")
                }
            )
        })
        .collect();
    Some(PlanRunError::Doctor(named.join("; ")))
}

/// The counts of the report.
pub(super) fn summary(report: &DoctorReport) -> DoctorSummary {
    DoctorSummary {
        ok: report.count(Status::Ok),
        warn: report.count(Status::Warn),
        fail: report.count(Status::Fail),
        skip: report.count(Status::Skip),
        seconds: report.seconds,
    }
}

/// Writes the findings that concern pattern `id` into its result documents in `dir` that
/// have none yet (documents of earlier runs, recorded already, keep their bytes). A document
/// that cannot be rewritten keeps its bytes: the findings are also in the run's output.
pub(super) fn attach(dir: &Path, id: &str, report: &DoctorReport) {
    let Ok((loaded, _)) = read_folder(dir) else {
        return;
    };
    let findings: Vec<Value> = report
        .concerning(id)
        .into_iter()
        .map(|f| {
            json!({"check": f.check, "status": f.status, "evidence": f.evidence, "action": f.action})
        })
        .collect();
    for l in loaded
        .iter()
        .filter(|l| l.doc.pattern_id.as_deref() == Some(id))
    {
        let Ok(mut doc) = serde_json::from_slice::<Value>(&l.bytes) else {
            continue;
        };
        let Some(env) = doc.get_mut("environment").and_then(Value::as_object_mut) else {
            continue;
        };
        if env.contains_key("doctor") {
            continue;
        }
        env.insert("doctor".into(), Value::Array(findings.clone()));
        let Ok(mut bytes) = serde_json::to_vec_pretty(&doc) else {
            continue;
        };
        bytes.push(b'\n');
        let _ = write_atomic(&dir.join(&l.name), &bytes);
    }
}
