//! Every command line the shipped templates give kvxfer and nixlbench, checked against the real
//! interfaces: each kvxfer measurement line is evaluated by a shell exactly as the runner would,
//! its words handed to the real binary's argument parser, and the flags of every other kvxfer
//! line found in its subcommand's --help; nixlbench and KVBench lines use only their real names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kvxfer::plan::{self, Generated, Task, TaskDefinition};
use serde_json::{json, Value};

const KVXFER: &str = env!("CARGO_BIN_EXE_kvxfer");

/// nixlbench's option names (../shared/REFERENCE.md).
const NIXLBENCH_OPTIONS: &[&str] = &[
    "--backend",
    "--initiator_seg_type",
    "--target_seg_type",
    "--scheme",
    "--op_type",
    "--start_block_size",
    "--max_block_size",
    "--start_batch_size",
    "--max_batch_size",
    "--total_buffer_size",
    "--num_iter",
    "--warmup_iter",
    "--num_threads",
    "--num_initiator_dev",
    "--num_target_dev",
    "--check_consistency",
    "--etcd_endpoints",
    "--benchmark_group",
    "--runtime_type",
];

/// KVBench profile's option names (its click options in commands/args.py at ai-dynamo/nixl
/// 8770b655; etcd with an underscore since 0.6.0), those the templates may use.
const KVBENCH_OPTIONS: &[&str] = &[
    "--model",
    "--model_config",
    "--backend",
    "--isl",
    "--osl",
    "--num_requests",
    "--page_size",
    "--tp",
    "--pp",
    "--access_pattern",
    "--source",
    "--destination",
    "--initiator_seg_type",
    "--target_seg_type",
    "--etcd_endpoints",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The definitions of a shipped plan, kvxfer named by `tool`, optionally in the two-node shape.
fn generate(name: &str, tool: &str, two_node: bool) -> Vec<(Generated, TaskDefinition)> {
    let mut p = plan::load_plan(&root().join("plans").join(name)).unwrap();
    p["infrastructure"]["tools"]["kvxfer"] = tool.into();
    if two_node {
        p["infrastructure"]["topology"] = "two-node".into();
    }
    generated(&p)
}

/// [`generate`] on one node with every pattern whose tool is among `tools` and that has no
/// NIXL twin given `key`: `value`.
fn generate_with(
    name: &str,
    tool: &str,
    tools: &[&str],
    key: &str,
    value: Value,
) -> Vec<(Generated, TaskDefinition)> {
    let mut p = plan::load_plan(&root().join("plans").join(name)).unwrap();
    p["infrastructure"]["tools"]["kvxfer"] = tool.into();
    for layer in p["layers"].as_array_mut().unwrap() {
        for pat in layer["patterns"].as_array_mut().unwrap() {
            let ours = tools.contains(&pat["tool"].as_str().unwrap_or(""));
            if ours && pat["params"].get("twin").is_none() {
                pat["params"][key] = value.clone();
            }
        }
    }
    generated(&p)
}

/// The tools a pattern's `cpus` pins.
const PINNED: [&str; 5] = [
    "kvxfer_xfer",
    "kvxfer_kv",
    "fi_pingpong",
    "fi_rma_pingpong",
    "ucx_perftest",
];

/// The definitions `p` generates, each read back as a task definition.
fn generated(p: &Value) -> Vec<(Generated, TaskDefinition)> {
    plan::generate(p, &root().join("templates"))
        .unwrap()
        .into_iter()
        .map(|g| {
            let def = TaskDefinition::from_json(std::str::from_utf8(&g.bytes).unwrap()).unwrap();
            (g, def)
        })
        .collect()
}

/// The `--flag` words of each `kvxfer SUB ...` invocation in `cmd`, up to the end of that
/// simple command.
fn invocations<'a>(cmd: &'a str, tool: &str) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out = Vec::new();
    let mut rest = cmd;
    let needle = format!("{tool} ");
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        let end = after.find([';', '|', '>', ')', '&']).unwrap_or(after.len());
        let line = after[..end].trim_start();
        // `kvxfer kv profile`: a subcommand group names its subcommand in the next word.
        let words_in_sub = if line.starts_with("kv ") { 2 } else { 1 };
        let sub_end = line
            .match_indices(char::is_whitespace)
            .map(|(i, _)| i)
            .filter(|&i| i > 0 && !line[..i].ends_with(char::is_whitespace))
            .nth(words_in_sub - 1)
            .unwrap_or(line.len());
        let sub = &line[..sub_end];
        let flags = line[sub_end..]
            .split_whitespace()
            .filter(|w| w.starts_with("--"))
            .collect();
        out.push((sub, flags));
        rest = &after[end..];
    }
    out
}

fn help(sub: &str) -> Option<String> {
    static CACHE: Mutex<BTreeMap<String, Option<String>>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(sub.to_string())
        .or_insert_with(|| {
            let out = Command::new(KVXFER)
                .args(sub.split_whitespace())
                .arg("--help")
                .output()
                .unwrap();
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .clone()
}

/// The words a shell gives the kvxfer of `cmd` (runner variables filled in as on one host).
fn argv_of(cmd: &str, record: &Path) -> Vec<String> {
    let _ = std::fs::remove_file(record);
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd.replace("{{PEER_IP}}", "127.0.0.1"))
        .env("KVXFER_ARGV", record)
        .env_remove("KVXFER_RT")
        .status()
        .unwrap();
    assert!(status.success(), "{cmd}");
    let text = std::fs::read_to_string(record).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    text.split('\0')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// `word` with the round number of a result file name (`.run<k>`) taken out.
fn without_round(word: &str) -> String {
    match word.find(".run") {
        Some(i) => {
            let rest = word[i + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{}.run{rest}", &word[..i])
        }
        None => word.to_string(),
    }
}

#[test]
fn every_kvxfer_command_line_passes_the_real_argument_parser() {
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("kvxfer");
    std::fs::write(
        &stub,
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$KVXFER_ARGV\"\n",
    )
    .unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&stub).status().unwrap();
    assert!(chmod.success());
    let tool = stub.to_str().unwrap();
    let mut defs = Vec::new();
    for (plan_name, two_node) in [
        ("phase-low-level.json", true),
        ("loopback.json", false),
        ("loopback.json", true),
    ] {
        defs.extend(generate(plan_name, tool, two_node));
    }
    let ours = ["kvxfer_xfer", "kvxfer_kv"];
    defs.extend(generate_with(
        "loopback.json",
        tool,
        &ours,
        "cold_cache",
        true.into(),
    ));
    defs.extend(generate_with(
        "loopback.json",
        tool,
        &PINNED,
        "cpus",
        json!([0]),
    ));
    let tasks: Vec<(String, &Task)> = defs
        .iter()
        .flat_map(|(g, def)| {
            def.tasks
                .iter()
                .map(move |t| (format!("{} {}", g.path.display(), t.id), t))
        })
        .collect();
    // Each check spawns a shell and often kvxfer, and mostly waits on them: a few at a time.
    let seen = Mutex::new(Seen::default());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for worker in 0..6 {
            let record = dir.path().join(format!("argv{worker}"));
            let (tasks, seen, next) = (&tasks, &seen, &next);
            s.spawn(move || {
                while let Some((at, t)) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
                    check_task(t, at, tool, &record, seen);
                }
            });
        }
    });
    let Seen {
        parsed,
        skipped,
        shapes,
    } = seen.into_inner().unwrap();
    // The plans' cold_cache reached xfer's and kv profile's lines as --cold-cache.
    for sub in ["xfer", "profile"] {
        assert!(
            shapes
                .iter()
                .any(|a| a.iter().any(|w| w == sub) && a.iter().any(|w| w == "--cold-cache")),
            "no {sub} line with --cold-cache"
        );
    }
    // The plans' cpus reached every measuring subcommand's line as --cpus.
    for sub in ["xfer", "profile", "pingpong", "ucx-perf"] {
        assert!(
            shapes
                .iter()
                .any(|a| a.iter().any(|w| w == sub) && a.windows(2).any(|w| w == ["--cpus", "0"])),
            "no {sub} line with --cpus 0"
        );
    }
    // rma-pingpong's lines go through the parser where the binary has it, else they are skipped.
    let mut want: BTreeSet<String> = ["kv profile", "pingpong", "ucx-perf", "xfer"]
        .map(String::from)
        .into();
    if help("rma-pingpong").is_some() {
        want.insert("rma-pingpong".into());
    } else {
        assert!(skipped.contains("rma-pingpong"), "{skipped:?}");
    }
    assert_eq!(
        parsed, want,
        "every measuring subcommand of the templates went through the parser"
    );
}

/// What the checks of [`check_task`] have met so far.
#[derive(Default)]
struct Seen {
    /// The subcommands whose lines went through the real parser.
    parsed: BTreeSet<String>,
    /// The subcommands this kvxfer lacks, met behind their skip tests.
    skipped: BTreeSet<String>,
    /// The argument lists parsed, round numbers taken out.
    shapes: BTreeSet<Vec<String>>,
}

/// Checks task `t` (named `at` in messages): the flags of every kvxfer invocation in its
/// --help, and a measurement's words through the real parser, which must stop at the --json
/// file put in a missing folder.
fn check_task(t: &Task, at: &str, tool: &str, record: &Path, seen: &Mutex<Seen>) {
    let lock = || seen.lock().unwrap_or_else(|e| e.into_inner());
    for cmd in &t.commands {
        for (sub, flags) in invocations(cmd, tool) {
            let Some(text) = help(sub) else {
                // A subcommand this kvxfer lacks: only behind its skip test.
                let skip = t.skip_if.as_deref().unwrap_or("");
                assert!(skip.contains(&format!("{tool} {sub} --help")), "{at}");
                lock().skipped.insert(sub.to_string());
                continue;
            };
            for f in flags {
                let name = f.split('=').next().unwrap();
                assert!(
                    text.contains(name),
                    "{at}: {name} not in kvxfer {sub} --help"
                );
            }
        }
    }
    // The measurement itself: the real parser reads every word, then the run stops at its
    // first check, the --json file, put in a missing folder here.
    let Some(sub) =
        t.id.starts_with("kvxfer")
            .then(|| t.name.trim_start_matches("kvxfer "))
    else {
        return;
    };
    if help(sub).is_none() {
        return;
    }
    assert_eq!(t.commands.len(), 1, "{at}");
    let mut argv = argv_of(&t.commands[0], record);
    let words = sub.split_whitespace().count();
    assert_eq!(argv[..words].join(" "), sub, "{at}");
    // Rounds of a pattern differ only in their file names: parse one of them.
    let shape = argv.iter().map(|w| without_round(w)).collect::<Vec<_>>();
    if !lock().shapes.insert(shape) {
        return;
    }
    assert!(argv.iter().any(|w| w == "--timeout"), "{at}: no --timeout");
    let i = argv
        .iter()
        .position(|w| w == "--json")
        .unwrap_or_else(|| panic!("{at}: no --json"));
    argv[i + 1] = "/nonexistent-kvxfer-folder/r.json".into();
    let out = Command::new(KVXFER).args(&argv).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{at}: {argv:?}\n{err}");
    assert!(
        err.contains("--json /nonexistent-kvxfer-folder/r.json: no directory"),
        "{at}: {argv:?}\n{err}"
    );
    lock().parsed.insert(sub.to_string());
}

#[test]
fn nixlbench_and_kvbench_lines_use_only_their_real_option_names() {
    let mut seen = (BTreeSet::new(), BTreeSet::new());
    for (g, def) in generate("phase-low-level.json", "kvxfer", true) {
        for cmd in def.tasks.iter().flat_map(|t| t.commands.iter()) {
            for (tool, known, seen) in [
                (
                    "nixlbench --benchmark_group ",
                    NIXLBENCH_OPTIONS,
                    &mut seen.0,
                ),
                ("main.py profile ", KVBENCH_OPTIONS, &mut seen.1),
            ] {
                let Some(i) = cmd.find(tool) else { continue };
                let line = &cmd[i..];
                let line = &line[..line.find([';', '>', '&']).unwrap_or(line.len())];
                for w in line.split_whitespace().filter(|w| w.starts_with("--")) {
                    assert!(
                        known.contains(&w),
                        "{}: {w} is not an option of {tool}",
                        g.path.display()
                    );
                    seen.insert(w.to_string());
                }
            }
        }
    }
    // Every pattern's essentials are there.
    for want in [
        "--backend",
        "--scheme",
        "--op_type",
        "--start_block_size",
        "--num_iter",
        "--etcd_endpoints",
        "--benchmark_group",
        "--runtime_type",
        "--num_initiator_dev",
    ] {
        assert!(seen.0.contains(want), "{want}: {:?}", seen.0);
    }
    assert!(!seen.0.contains("--large_blk_iter_ftr"));
    for want in [
        "--model",
        "--model_config",
        "--isl",
        "--osl",
        // What KVBench's profile cannot run without: --backend (it lower-cases it), and
        // --source / --destination for UCX (their defaults raise "Invalid source").
        "--backend",
        "--source",
        "--destination",
        "--etcd_endpoints",
    ] {
        assert!(seen.1.contains(want), "{want}: {:?}", seen.1);
    }
}

/// A pattern's `cpus` pins the stock tool's processes as kvxfer pins the same sides: on one
/// host the client (initiator) on the first CPU and the server on the second, on two each on
/// the first; and the tool check looks for taskset.
#[test]
fn cpus_pin_the_stock_tools_as_kvxfer_pins_the_same_sides() {
    let stock = ["fi_pingpong", "ucx_perftest"];
    let mut seen = 0;
    for (g, def) in generate_with("loopback.json", "kvxfer", &stock, "cpus", json!([3, 2])) {
        let cmds: Vec<&String> = def.tasks.iter().flat_map(|t| t.commands.iter()).collect();
        let Some(reference) = cmds.iter().find(|c| c.contains(" -P ")) else {
            continue;
        };
        seen += 1;
        let at = g.path.display();
        let client = &reference[..reference.find(" -P ").unwrap()];
        let server = &reference[..reference.find(" & srv=").unwrap()];
        assert!(client.contains("taskset -c 3 "), "{at}: {reference}");
        assert!(
            server.rfind("taskset -c 2 ") > server.rfind("taskset -c 3 "),
            "{at}: {server}"
        );
        assert!(cmds.iter().any(|c| c.contains("--cpus 3,2")), "{at}");
        assert!(cmds.iter().any(|c| c == &"command -v taskset"), "{at}");
    }
    assert!(seen >= 2, "{seen} one-host stock patterns");
    // Two hosts: each side's process takes the first CPU.
    let mut p = plan::load_plan(&root().join("plans/loopback.json")).unwrap();
    p["layers"][0]["patterns"][0]["params"]["cpus"] = json!([3, 2]);
    assert_eq!(p["layers"][0]["patterns"][0]["tool"], "fi_pingpong");
    p["infrastructure"]["topology"] = "two-node".into();
    let lines: Vec<String> = generated(&p)
        .into_iter()
        .filter(|(g, _)| g.path.to_string_lossy().contains("fi-pingpong-tcp-msg"))
        .flat_map(|(_, d)| d.tasks.into_iter().flat_map(|t| t.commands))
        .filter(|c| c.contains("fi_pingpong -p"))
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines
        .iter()
        .all(|c| c.contains("taskset -c 3 ") && !c.contains("taskset -c 2")));
}

/// The scheme names on each side of a many-to-one pattern: nixlbench's and kvxfer's.
#[test]
fn schemes_are_spelled_for_each_tool() {
    let defs = generate("phase-low-level.json", "kvxfer", true);
    let (_, def) = defs
        .iter()
        .find(|(g, _)| g.path == Path::new("pll-nixlbench-tcp-672m-c16-server.json"))
        .unwrap();
    let all: Vec<&String> = def.tasks.iter().flat_map(|t| t.commands.iter()).collect();
    let json = serde_json::to_string(&all).unwrap();
    assert!(json.contains("--scheme manytoone"), "{json}");
    // nixlbench's UCX backend: kvxfer's twin runs over UCX too.
    assert!(json.contains("kvxfer xfer --backend ucx"), "{json}");
    assert!(json.contains("--scheme many-to-one"), "{json}");
    let task: &Value = &serde_json::from_slice::<Value>(
        &defs
            .iter()
            .find(|(g, _)| g.path == Path::new("pll-nixlbench-tcp-672m-c16-server.json"))
            .unwrap()
            .0
            .bytes,
    )
    .unwrap()["tasks"];
    let k = task
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "kvxfer")
        .unwrap();
    // VRAM to VRAM: kvxfer's twin runs in VRAM too, skipped at run time without a GPU.
    assert_eq!(k["skip_if"], "! kvxfer info --gpu --check");
    let cmd = k["commands"][0].as_str().unwrap();
    assert!(
        cmd.contains("--initiator-seg VRAM --target-seg VRAM"),
        "{cmd}"
    );
    // LIBFABRIC patterns: the same twin over the provider.
    let (efa, _) = defs
        .iter()
        .find(|(g, _)| g.path == Path::new("pll-nixlbench-efa-55m-server.json"))
        .unwrap();
    let efa: Value = serde_json::from_slice(&efa.bytes).unwrap();
    let k = efa["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "kvxfer")
        .unwrap();
    assert_eq!(k["skip_if"], "! kvxfer info --gpu --check");
    let cmd = k["commands"][0].as_str().unwrap();
    assert!(cmd.contains("--provider efa --endpoint rdm"), "{cmd}");
    assert!(cmd.contains("--target-seg VRAM"), "{cmd}");
}
