use std::path::Path;

use super::*;
use crate::report::ResultDoc;

/// The shipped loopback plan with `kvxfer` as its kvxfer tool and a results folder in `dir`.
fn plan_in(dir: &Path, kvxfer: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut p = crate::plan::load_plan(&root.join("plans/loopback.json")).unwrap();
    p["common"]["output_dir"] = dir.join("results").display().to_string().into();
    p["infrastructure"]["tools"]["kvxfer"] = kvxfer.display().to_string().into();
    let f = dir.join("plan.json");
    std::fs::write(&f, serde_json::to_vec_pretty(&p).unwrap()).unwrap();
    f
}

/// A stand-in for the kvxfer binary: exits with `rc`; asked for `--json F`, it writes a result
/// document of pattern `pll-lo-kv-profile-tcp` there first.
fn stub(dir: &Path, rc: i32) -> PathBuf {
    let mut doc = ResultDoc::new("kvxfer", "kv_profile", "L2");
    doc.pattern_id = Some("pll-lo-kv-profile-tcp".into());
    let template = dir.join("doc.json");
    std::fs::write(&template, serde_json::to_vec(&doc).unwrap()).unwrap();
    let path = dir.join("kvxfer-stub");
    let script = format!(
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --json ]; then cp '{}' \"$2\"; fi\n  \
         shift\ndone\nexit {rc}\n",
        template.display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn options(dir: &Path, kvxfer: &Path) -> PlanRunOptions {
    PlanRunOptions {
        plan: plan_in(dir, kvxfer),
        patterns: vec!["pll-lo-kv-profile-tcp".into()],
        state: Some(dir.join("state.json")),
        templates: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")),
        ..PlanRunOptions::default()
    }
}

#[test]
fn a_pattern_runs_its_tasks_and_the_folder_is_cross_checked() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), &stub(dir.path(), 0));
    let mut seen = Vec::new();
    let report = run_plan(&o, &mut |e| seen.push(format!("{e:?}"))).unwrap();
    assert_eq!(report.patterns.len(), 1);
    let p = &report.patterns[0];
    assert_eq!(
        (p.layer.as_str(), p.pattern.as_str()),
        ("L2", "pll-lo-kv-profile-tcp")
    );
    assert_eq!(p.outcome["status"], "ok", "{:?}", p.outcome);
    assert!(
        p.outcome["tasks_ran"].as_u64().unwrap() >= 3,
        "{:?}",
        p.outcome
    );
    assert!(report.failed.is_empty());
    assert!(report.mlflow.is_none());
    // The stub's result has no stock twin: one unpaired entry, and the report on disk.
    assert_eq!(report.crosscheck.unpaired, 1);
    assert!(Path::new(&report.crosscheck.file).is_file());
    // The doctor first, then the pattern and its end; its result carries the findings that
    // concern it.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[0].starts_with("Doctor { report: DoctorReport { plan: Some(\"loopback\")"),
        "{seen:?}"
    );
    assert!(seen[1].starts_with("Pattern { index: 0, of: 1"), "{seen:?}");
    assert!(
        seen[2].starts_with("Finished { id: \"pll-lo-kv-profile-tcp\", seconds: "),
        "{seen:?}"
    );
    // The wall times add up to at most the total, and the report is kept beside the results.
    assert!(
        p.seconds > 0.0 && p.seconds <= report.total_seconds,
        "{report:?}"
    );
    let kept: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&report.results_dir).join(RUN_REPORT)).unwrap(),
    )
    .unwrap();
    assert_eq!(kept["patterns"][0]["pattern"], "pll-lo-kv-profile-tcp");
    assert_eq!(kept["total_seconds"], report.total_seconds);
    assert_eq!(report.doctor.as_ref().map(|d| d.fail), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&report.results_dir).join("pll-lo-kv-profile-tcp.run1.json"))
            .unwrap(),
    )
    .unwrap();
    let found = doc["environment"]["doctor"].as_array().unwrap();
    assert!(
        found
            .iter()
            .any(|f| f["check"] == "tcp.slow_start_after_idle"),
        "{found:?}"
    );
    assert!(found.iter().all(|f| f["status"] != "skip"), "{found:?}");
}

#[test]
fn with_no_doctor_nothing_is_checked_and_the_results_carry_no_findings() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), &stub(dir.path(), 0));
    o.no_doctor = true;
    let mut seen = Vec::new();
    let report = run_plan(&o, &mut |e| seen.push(format!("{e:?}"))).unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(report.doctor.is_none());
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&report.results_dir).join("pll-lo-kv-profile-tcp.run1.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(doc["environment"].get("doctor").is_none(), "{doc:#}");
}

#[test]
fn a_failed_pattern_is_named_and_the_run_goes_on_to_the_cross_check() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), &stub(dir.path(), 3));
    let mut failed = Vec::new();
    let report = run_plan(&o, &mut |e| {
        if let PlanEvent::Failed { id, .. } = e {
            failed.push(id.to_string());
        }
    })
    .unwrap();
    assert_eq!(failed, ["pll-lo-kv-profile-tcp"]);
    assert_eq!(
        report.failed.iter().collect::<Vec<_>>(),
        ["pll-lo-kv-profile-tcp"]
    );
    assert_eq!(report.patterns[0].outcome["status"], "failed");
    assert!(Path::new(&report.crosscheck.file).is_file());
}

#[test]
fn results_of_an_unreachable_mlflow_stay_in_the_folder_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), &stub(dir.path(), 0));
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    o.mlflow_uri = Some(format!("http://127.0.0.1:{port}"));
    let mut kept = 0;
    let report = run_plan(&o, &mut |e| {
        if let PlanEvent::NotRecorded { count, .. } = e {
            kept += count;
        }
    })
    .unwrap();
    let m = report.mlflow.unwrap();
    assert_eq!((m.recorded, m.not_recorded), (0, 1));
    assert_eq!(kept, 1);
    assert!(Path::new(&report.results_dir)
        .join("pll-lo-kv-profile-tcp.run1.json")
        .is_file());
}

#[test]
fn options_that_cannot_run_are_refused_before_any_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let kvxfer = stub(dir.path(), 0);
    let refused = |o: PlanRunOptions, want: &str| {
        let mut events = 0;
        let e = run_plan(&o, &mut |_| events += 1).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!(events, 0);
    };
    let mut o = options(dir.path(), &kvxfer);
    o.layers = vec!["L9".into()];
    refused(o, "--layer L9");
    let mut o = options(dir.path(), &kvxfer);
    o.patterns = vec!["no-such-pattern".into()];
    refused(o, "--pattern no-such-pattern");
    let mut o = options(dir.path(), &kvxfer);
    o.plan = dir.path().join("missing.json");
    refused(o, "missing.json");
}

#[test]
fn a_pattern_run_keeps_the_wall_times_of_the_patterns_it_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), &stub(dir.path(), 0));
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let entry =
        |id: &str, s: f64| json!({"pattern": id, "seconds": s, "outcome": {"status": "ok"}});
    // An earlier full run's report: the pattern about to run again and two others, one of
    // them kept there from a run before it.
    std::fs::write(
        results.join(RUN_REPORT),
        serde_json::to_vec(&json!({
            "patterns": [entry("pll-lo-kv-profile-tcp", 99.0), entry("pll-lo-fi-pingpong-shm-rdm", 4.0)],
            EARLIER: [entry("pll-lo-xfer-nixl-tcp-55m", 7.0), entry("pll-lo-fi-pingpong-shm-rdm", 1.0)],
        }))
        .unwrap(),
    )
    .unwrap();
    let report = run_plan(&o, &mut |_| {}).unwrap();
    let kept: Value =
        serde_json::from_slice(&std::fs::read(results.join(RUN_REPORT)).unwrap()).unwrap();
    assert_eq!(kept["patterns"].as_array().unwrap().len(), 1);
    assert_eq!(kept["patterns"][0]["pattern"], "pll-lo-kv-profile-tcp");
    // The newest entry of each pattern this run did not run, and none of the one it ran.
    let earlier: Vec<(&str, f64)> = kept[EARLIER]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pattern"].as_str().unwrap(),
                p["seconds"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        earlier,
        [
            ("pll-lo-fi-pingpong-shm-rdm", 4.0),
            ("pll-lo-xfer-nixl-tcp-55m", 7.0)
        ]
    );
    // plan estimate reads both: this run's time for the pattern it ran, the kept ones for
    // the others.
    let walls = estimate::last_wall_times(&results);
    assert_eq!(walls["pll-lo-kv-profile-tcp"], report.patterns[0].seconds);
    assert_eq!(walls["pll-lo-fi-pingpong-shm-rdm"], 4.0);
    assert_eq!(walls["pll-lo-xfer-nixl-tcp-55m"], 7.0);
}
