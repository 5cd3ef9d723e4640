//! plans/loopback.json end to end on this host: generated server and client definitions run
//! through `kvxfer task run` side by side, the stock tools' output parsed into result documents.
//! kvxfer's own measurement tasks are left out (`--from reference`) until those subcommands land.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvxfer::plan;
use kvxfer::report::ResultDoc;

const KVXFER: &str = env!("CARGO_BIN_EXE_kvxfer");

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

fn task_run(def: &Path, state: &Path) -> Command {
    let mut c = Command::new(KVXFER);
    c.args(["task", "run"])
        .arg(def)
        .args(["--from", "reference", "--state"])
        .arg(state)
        .env("PEER_IP", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn wait(mut g: Guard, what: &str) {
    let start = Instant::now();
    loop {
        if let Some(s) = g.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = g.0.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            assert!(s.success(), "{what} failed:\n{err}");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{what} hung");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn doc(path: &Path) -> ResultDoc {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ResultDoc::from_json(&bytes).unwrap()
}

#[test]
fn loopback_plan_runs_the_stock_tools_and_parses_them() {
    if !installed("fi_pingpong") || !installed("ucx_perftest") {
        println!("SKIPPED loopback_plan_runs_the_stock_tools_and_parses_them: fi_pingpong or ucx_perftest not installed");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    std::fs::create_dir(&out).unwrap();
    let mut p = plan::load_plan(&root.join("plans/loopback.json")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    p["common"]["output_dir"] = out.display().to_string().into();
    p["common"]["control_port"] = port.into();
    p["common"]["timeout_s"] = 60.into();
    p["infrastructure"]["tools"]["kvxfer"] = KVXFER.into();
    assert_eq!(plan::validate(&p), []);
    let defs = dir.path().join("defs");
    plan::write_generated(&defs, &plan::generate(&p, &root.join("templates")).unwrap()).unwrap();

    for layer in p["layers"].as_array().unwrap() {
        for pat in layer["patterns"].as_array().unwrap() {
            let id = pat["id"].as_str().unwrap();
            let server = task_run(
                &defs.join(format!("{id}-server.json")),
                &dir.path().join("server-state.json"),
            )
            .spawn()
            .map(Guard)
            .unwrap();
            let client = task_run(
                &defs.join("client").join(format!("{id}-client.json")),
                &dir.path().join("client-state.json"),
            )
            .spawn()
            .map(Guard)
            .unwrap();
            wait(client, &format!("{id} client"));
            wait(server, &format!("{id} server"));

            let sizes: Vec<u64> = pat["params"]["sizes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap())
                .collect();
            let iters = pat["params"]["iterations"].as_u64().unwrap();
            match pat["tool"].as_str().unwrap() {
                "fi_pingpong" => {
                    for file in [format!("{id}.ref.json"), format!("{id}.server.ref.json")] {
                        let d = doc(&out.join(&file));
                        assert_eq!(d.pattern_id.as_deref(), Some(id));
                        let got: Vec<u64> = d.results.iter().map(|r| r.message_size).collect();
                        assert_eq!(got, sizes, "{file}");
                        for r in &d.results {
                            assert_eq!(r.iterations, iters, "{file}");
                            assert!(r.latency_us.unwrap().mean > 0.0);
                        }
                    }
                }
                "ucx_perftest" => {
                    for s in &sizes {
                        let d = doc(&out.join(format!("{id}.ref.{s}.json")));
                        assert_eq!(d.bench, pat["params"]["test"].as_str().unwrap());
                        assert_eq!(d.results[0].message_size, *s);
                        assert_eq!(d.results[0].iterations, iters);
                        assert!(d.results[0].bandwidth_gbps.unwrap() > 0.0);
                    }
                }
                other => panic!("no check for {other}"),
            }
        }
    }
    // The client's last task wrote the cross-check report (no kvxfer results to pair yet).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("crosscheck.json")).unwrap()).unwrap();
    assert_eq!(report["schema"], "kvxfer.crosscheck/v1");
    assert_eq!(report["tolerance"], 0.1);
}
