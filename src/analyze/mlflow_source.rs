//! Reading the analysis inputs from an MLflow tracking server: E2E runs of the team's
//! experiments, low-level runs (their result documents, kept as artifacts).

use std::collections::BTreeMap;

use super::e2e::{self, E2eRecord};
use super::files::Skipped;
use super::lowlevel::{self, LowPoint};
use super::AnalyzeError;
use crate::mlflow::{Client, Run};
use crate::report::ResultDoc;

/// The team's E2E experiments.
pub const E2E_EXPERIMENTS: [&str; 2] = ["nixl-efa-tai-phase-14", "nixl-efa-tai-phase-15"];

fn runs_of(client: &Client, experiment: &str) -> Result<Option<Vec<Run>>, AnalyzeError> {
    let Some(id) = client.experiment_id(experiment)? else {
        return Ok(None);
    };
    Ok(Some(client.search_runs(&[id], "")?))
}

/// One E2E record per finished run of `experiments`; an experiment that does not exist is
/// reported as skipped.
pub fn e2e_records(
    client: &Client,
    experiments: &[String],
) -> Result<(Vec<E2eRecord>, Vec<Skipped>), AnalyzeError> {
    let mut recs = Vec::new();
    let mut skipped = Vec::new();
    for exp in experiments {
        let Some(runs) = runs_of(client, exp)? else {
            skipped.push(Skipped {
                file: format!("mlflow:{exp}"),
                reason: "no such experiment".into(),
            });
            continue;
        };
        for run in runs.iter().filter(|r| r.info.status == "FINISHED") {
            let params: BTreeMap<String, String> = run
                .data
                .params
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect();
            let metrics: BTreeMap<String, f64> = run
                .data
                .metrics
                .iter()
                .map(|m| (m.key.clone(), m.value))
                .collect();
            let name = if run.info.run_name.is_empty() {
                run.info.run_id.clone()
            } else {
                run.info.run_name.clone()
            };
            let from_params = e2e::from_mlflow(&name, &params, &metrics);
            let mut r = match artifact_record(client, run)? {
                // The team's JSON keeps what params and metrics drop (the raw samples); the
                // params fill what it lacks.
                Some(mut a) => {
                    let p = from_params;
                    a.pattern_id = a.pattern_id.or(p.pattern_id);
                    a.phase = a.phase.or(p.phase);
                    a.mode = a.mode.or(p.mode);
                    a.backend = a.backend.or(p.backend);
                    a.prompt_tokens = a.prompt_tokens.or(p.prompt_tokens);
                    a.concurrency = a.concurrency.or(p.concurrency);
                    a
                }
                None => from_params,
            };
            r.source = format!("mlflow:{exp}/{name}");
            if r.phase.is_none() {
                r.phase = exp.rsplit('-').next().map(str::to_string);
            }
            recs.push(r);
        }
    }
    Ok((recs, skipped))
}

/// The E2E record in a run's `.json` artifact (the team's result file), when it has one that
/// parses as one.
fn artifact_record(client: &Client, run: &Run) -> Result<Option<E2eRecord>, AnalyzeError> {
    let files = client.list_artifacts(&run.info.run_id, None)?;
    for f in files
        .iter()
        .filter(|f| !f.is_dir && f.path.ends_with(".json"))
    {
        let bytes = client.download_artifact(&run.info, &f.path)?;
        let parsed = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| e2e::parse_value(&f.path, &v).ok())
            .and_then(|mut v| (v.len() == 1).then(|| v.remove(0)));
        if parsed.is_some() {
            return Ok(parsed);
        }
    }
    Ok(None)
}

/// The low-level points of every finished run of `experiment`, read from the result document
/// each run keeps as its `.json` artifact.
pub fn low_points(
    client: &Client,
    experiment: &str,
) -> Result<(Vec<LowPoint>, Vec<Skipped>), AnalyzeError> {
    let mut pts = Vec::new();
    let mut skipped = Vec::new();
    let Some(runs) = runs_of(client, experiment)? else {
        skipped.push(Skipped {
            file: format!("mlflow:{experiment}"),
            reason: "no such experiment".into(),
        });
        return Ok((pts, skipped));
    };
    for run in runs.iter().filter(|r| r.info.status == "FINISHED") {
        let src = format!("mlflow:{experiment}/{}", run.info.run_name);
        let files = client.list_artifacts(&run.info.run_id, None)?;
        let Some(f) = files
            .iter()
            .find(|f| !f.is_dir && f.path.ends_with(".json"))
        else {
            skipped.push(Skipped {
                file: src,
                reason: "no result document among its artifacts".into(),
            });
            continue;
        };
        let bytes = client.download_artifact(&run.info, &f.path)?;
        match ResultDoc::from_json(&bytes) {
            Ok(doc) => match lowlevel::refused(&doc) {
                Some(why) => skipped.push(Skipped {
                    file: src,
                    reason: why.into(),
                }),
                None => pts.extend(lowlevel::points(&src, &doc)),
            },
            Err(why) => skipped.push(Skipped {
                file: src,
                reason: format!("{}: {why}", f.path),
            }),
        }
    }
    Ok((pts, skipped))
}
