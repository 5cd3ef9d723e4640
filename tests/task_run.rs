//! `kvxfer task run`: the runner contract (one shell, skip_if, state, resume) and plan values
//! that reach commands only as data.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use kvxfer::plan::runner::{self, RunOptions, StateFile, TaskStatus};
use kvxfer::plan::{self, TaskDefinition};
use serde_json::json;

fn def(dir: &Path) -> TaskDefinition {
    let d = dir.display();
    TaskDefinition::from_json(
        &json!({
            "name": "contract",
            "description": "runner contract",
            "variables": {"OUT": format!("{d}/out"), "WORD": "hello"},
            "tasks": [
                {"id": "mkdir", "name": "output dir", "skip_if": "test -d {{OUT}}",
                 "commands": ["mkdir -p {{OUT}}"]},
                {"id": "set", "name": "set a shell variable",
                 "commands": ["GREETING={{WORD}}", "COUNT=$((1 + 1))"]},
                {"id": "use", "name": "see it in a later task",
                 "commands": ["echo \"$GREETING $COUNT\" >> {{OUT}}/log", "test -f {{OUT}}/go"]},
                {"id": "last", "name": "after", "commands": ["echo last >> {{OUT}}/log"]}
            ]
        })
        .to_string(),
    )
    .unwrap()
}

fn state(path: &Path) -> StateFile {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn one_shell_skip_if_state_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state.json");
    let opts = RunOptions {
        state: Some(st.clone()),
        ..Default::default()
    };
    let d = def(dir.path());
    let out = dir.path().join("out");
    // First run: `use` fails (no go file) after writing the log; the run stops there.
    let e = runner::run(&d, &opts).unwrap_err().to_string();
    assert!(
        e.contains("task use failed") && e.contains("test -f"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("log")).unwrap(),
        "hello 2\n"
    );
    let s = &state(&st)["contract"];
    assert_eq!(s["mkdir"].status, TaskStatus::Success);
    assert_eq!(s["use"].status, TaskStatus::Failed);
    assert!(!s.contains_key("last"));
    assert!(s["use"].updated_at.ends_with('Z'));
    // Resume: done tasks are skipped, so the shell variable set by `set` is gone now.
    std::fs::write(out.join("go"), "").unwrap();
    let r = runner::run(&d, &opts).unwrap();
    let got: Vec<_> = r.outcomes.iter().map(|(i, o)| format!("{i}:{o}")).collect();
    assert_eq!(
        got,
        [
            "mkdir:done before",
            "set:done before",
            "use:ran",
            "last:ran"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("log")).unwrap(),
        "hello 2\n \nlast\n"
    );
    // --reset: everything again; mkdir is skipped by its skip_if and marked done.
    let r = runner::run(
        &d,
        &RunOptions {
            reset: true,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(r.outcomes[0], ("mkdir".to_string(), "skipped"));
    assert!(state(&st)["contract"]["mkdir"].skipped);
    assert_eq!(r.outcomes.len(), 4);
    // --from a task runs it again even though it is done, and what follows.
    let r = runner::run(
        &d,
        &RunOptions {
            from: Some("last".into()),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(r.outcomes, [("last".to_string(), "ran")]);
    let e = runner::run(
        &d,
        &RunOptions {
            from: Some("nope".into()),
            ..opts
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--from nope"), "{e}");
}

#[test]
fn an_exiting_command_fails_the_task_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = TaskDefinition::from_json(
        &json!({"name": "exit", "tasks": [{"id": "a", "name": "a", "commands": ["exit 3"]}]})
            .to_string(),
    )
    .unwrap();
    let opts = RunOptions {
        state: Some(dir.path().join("s.json")),
        ..Default::default()
    };
    let e = runner::run(&d, &opts).unwrap_err().to_string();
    assert!(e.contains("exited") && e.contains("exit 3"), "{e}");
    assert_eq!(
        state(&dir.path().join("s.json"))["exit"]["a"].status,
        TaskStatus::Failed
    );
}

#[test]
fn multi_line_commands_break_the_contract() {
    let e = TaskDefinition::from_json(
        &json!({"name": "n", "tasks": [{"id": "a", "name": "a", "commands": ["echo a\necho b"]}]})
            .to_string(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("line break"), "{e}");
}

/// A plan whose values try to break out of their quotes, rendered by a small template.
#[test]
fn a_plan_value_runs_as_data_not_as_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("x");
    let evil = format!("'; touch {} #", marker.display());
    let evil2 = format!(
        "\"; touch {}; \\\"$(touch {})",
        marker.display(),
        marker.display()
    );
    let out = dir.path().join("out");
    let plan_json = json!({
        "name": "inject", "description": "d",
        "infrastructure": {"tools": {"kvxfer": "kvxfer", "ucx_perftest": "ucx_perftest"}},
        "common": {"output_dir": out.display().to_string(), "timeout_s": 30},
        "kv_cache_reference": {}, "validation_targets": {},
        "layers": [{"id": "L3", "patterns": [{
            "id": "pll-inject", "tool": "ucx_perftest", "description": evil,
            "params": {"test": "tag_lat", "ucx_tls": evil2, "mem": "host",
                       "sizes": [64], "iterations": 1, "warmup": 0}}]}]
    });
    assert_eq!(plan::validate(&plan_json), []);
    let tdir = dir.path().join("templates");
    std::fs::create_dir(&tdir).unwrap();
    std::fs::write(
        tdir.join("ucx-perftest.json.jinja2"),
        r#"{"name": {{ (pattern.id ~ "-" ~ role)|tojson }}, "tasks": [
  {"id": "out", "name": "out", "commands": ["mkdir -p {{ plan.common.output_dir|sh }}"]},
  {"id": "data", "name": "data", "commands": [
    "printf '%s\\n' {{ pattern.description|sh }} {{ p.ucx_tls|sh }} > {{ (plan.common.output_dir ~ "/values")|sh }}"]}]}
"#,
    )
    .unwrap();
    let files = plan::generate(&plan_json, &tdir).unwrap();
    let server = dir.path().join("server.json");
    std::fs::write(&server, &files[0].bytes).unwrap();
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["task", "run"])
        .arg(&server)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .assert()
        .success();
    assert!(!marker.exists(), "a plan value ran as a command");
    let values = std::fs::read_to_string(out.join("values")).unwrap();
    assert_eq!(values, format!("{evil}\n{evil2}\n"));
}

#[test]
fn unset_runner_variables_stop_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let f: PathBuf = dir.path().join("client.json");
    let flag = dir.path().join("ran");
    std::fs::write(
        &f,
        json!({"name": "c", "variables": {"KVXFER_TEST_PEER": ""}, "tasks": [
            {"id": "a", "name": "a", "commands": [format!("touch {}", flag.display())]},
            {"id": "b", "name": "b", "commands": ["echo {{KVXFER_TEST_PEER}}"]}]})
        .to_string(),
    )
    .unwrap();
    let run = || {
        let mut c = Command::cargo_bin("kvxfer").unwrap();
        c.args(["task", "run"])
            .arg(&f)
            .arg("--state")
            .arg(dir.path().join("s.json"));
        c
    };
    run()
        .assert()
        .failure()
        .stderr(predicates::str::contains("KVXFER_TEST_PEER is not set"));
    assert!(
        !flag.exists(),
        "a task ran before the variables were checked"
    );
    // The launcher's environment fills an empty variable.
    run()
        .env("KVXFER_TEST_PEER", "127.0.0.1")
        .assert()
        .success();
    assert!(flag.exists());
}
