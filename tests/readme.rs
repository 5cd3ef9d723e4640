//! README.md's examples as tests: every `kvxfer` command line of its fenced shell blocks parses
//! with kvxfer's own command-line definition (subcommands, flags and values; nothing runs), the
//! repository files they name exist, and the blocks marked `sh runnable` run as written on the
//! loopback, each line ending with the exit status its comment announces (`# exit 1: ...`),
//! else 0. Short flags keep one meaning across subcommands, except where they mirror a stock
//! tool's and the help says so.

mod common;
mod readme_support;

// The binary's command-line definition, compiled into this test as it is into the binary.
#[allow(dead_code, unused_imports)]
#[path = "../src/cli/mod.rs"]
mod cli;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use readme_support::{blocks, kvxfer_args, words, Block};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    blocks(&text)
}

/// Whether clap accepts `args` as kvxfer's command line; the error otherwise.
fn parses(args: &[String]) -> Result<(), String> {
    let argv = std::iter::once("kvxfer".to_string()).chain(args.iter().cloned());
    cli::Cli::command()
        .try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|e| e.render().to_string())
}

#[test]
fn every_kvxfer_command_line_of_the_readme_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for b in readme() {
        for line in &b.commands {
            for args in kvxfer_args(&line.text) {
                checked += 1;
                if let Err(e) = parses(&args) {
                    failures.push(format!("README.md:{}: {}\n{e}", line.line, line.text));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The extraction itself is checked: the README holds dozens of kvxfer lines.
    assert!(checked >= 35, "only {checked} kvxfer command lines found");
}

#[test]
fn the_parse_check_refuses_what_kvxfer_refuses() {
    let bad: [&[&str]; 4] = [
        &["memcpy", "--no-such-flag"],
        &["pingpong", "--sizes", "12Q"],
        &["no-such-subcommand"],
        &["ucx-perf", "-t", "tag_nothing"],
    ];
    for args in bad {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        assert!(parses(&args).is_err(), "{args:?} parsed");
    }
}

/// Options whose value is an input file or folder the example needs.
const INPUTS: [&str; 4] = ["--model-config", "--plan", "--e2e-dir", "--low-level-dir"];

/// Whether `value` of `flag` names a file the repository must hold (`--model` takes a preset
/// name too: only a .json or .yaml value is a file).
fn names_input(flag: &str, value: &str) -> bool {
    let file = [".json", ".yaml", ".yml"]
        .iter()
        .any(|e| value.ends_with(e));
    INPUTS.contains(&flag) || (flag == "--model" && file)
}

#[test]
fn files_the_examples_name_are_in_the_repository() {
    let mut missing = Vec::new();
    for b in readme() {
        for line in &b.commands {
            let w = words(&line.text);
            for (k, word) in w.iter().enumerate() {
                let shipped = ["scripts/", "plans/", "examples/", "templates/"]
                    .iter()
                    .any(|d| word.starts_with(d));
                let input = k > 0 && names_input(&w[k - 1], word);
                if (shipped || input) && !word.contains('*') && !repo().join(word).exists() {
                    missing.push(format!("README.md:{}: {word}", line.line));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A folder that looks like the repository to the examples (its shipped folders linked), so
/// that what they write stays in a temporary folder.
fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["examples", "plans", "scripts", "templates", ".cache"] {
        let src = repo().join(name);
        if src.exists() {
            std::os::unix::fs::symlink(&src, dir.path().join(name)).unwrap();
        }
    }
    dir
}

/// Files named after `--json` on a line.
fn json_outputs(line: &str) -> Vec<PathBuf> {
    let w = words(line);
    w.windows(2)
        .filter(|p| p[0] == "--json")
        .map(|p| PathBuf::from(&p[1]))
        .collect()
}

#[test]
fn runnable_examples_run_as_written() {
    let _turn = common::fabric_lock();
    let bin = common::kvxfer_path();
    let bin_dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut failures = Vec::new();
    for b in readme().into_iter().filter(|b| b.runnable) {
        let dir = sandbox();
        println!(
            "block at README.md:{}, run in {}",
            b.line,
            dir.path().display()
        );
        for line in &b.commands {
            let start = Instant::now();
            let out = Command::new("timeout")
                .args(["120", "bash", "-o", "pipefail", "-c", &line.text])
                .current_dir(dir.path())
                .env("PATH", &path)
                .output()
                .expect("bash");
            ran += 1;
            let took = start.elapsed();
            println!(
                "README.md:{}: exit {:?} in {:.1} s: {}",
                line.line,
                out.status.code(),
                took.as_secs_f64(),
                line.text
            );
            if out.status.code() != Some(line.expect) {
                failures.push(format!(
                    "README.md:{}: {} exited {:?}, not {} as the README says: {}",
                    line.line,
                    line.text,
                    out.status.code(),
                    line.expect,
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            for json in json_outputs(&line.text) {
                let bytes = std::fs::read(dir.path().join(&json));
                let ok = bytes
                    .ok()
                    .and_then(|b| kvxfer::report::ResultDoc::from_json(&b).ok());
                if ok.is_none() {
                    failures.push(format!(
                        "README.md:{}: {} wrote no result document",
                        line.line,
                        json.display()
                    ));
                }
            }
            assert!(
                took < Duration::from_secs(60),
                "README.md:{} is slow",
                line.line
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran >= 10, "only {ran} runnable examples");
}

/// Stock tools whose flags kvxfer's short flags may mirror.
const STOCK: [&str; 4] = ["fi_pingpong", "fi_rma_pingpong", "ucx_perftest", "fi_info"];

/// Every argument with a short flag, by subcommand: (subcommand, short, long, help).
fn shorts(cmd: &clap::Command, path: &str, out: &mut Vec<(String, char, String, String)>) {
    for a in cmd.get_arguments() {
        if let Some(s) = a.get_short() {
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let long = a.get_long().unwrap_or_default().to_string();
            out.push((path.to_string(), s, long, help));
        }
    }
    for sub in cmd.get_subcommands() {
        shorts(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn short_flags_mean_one_thing_unless_they_mirror_a_stock_tool() {
    let mut all = Vec::new();
    shorts(&cli::Cli::command(), "kvxfer", &mut all);
    let mut meanings: BTreeMap<char, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (cmd, s, long, help) in &all {
        let mirror = STOCK.iter().any(|t| help.contains(&format!("{t}'s -{s}")));
        if !mirror {
            meanings
                .entry(*s)
                .or_default()
                .entry(long.clone())
                .or_default()
                .push(cmd.clone());
        }
    }
    let clashes: Vec<String> = meanings
        .iter()
        .filter(|(_, longs)| longs.len() > 1)
        .map(|(s, longs)| format!("-{s}: {longs:?}"))
        .collect();
    assert!(
        clashes.is_empty(),
        "short flags with several meanings (a mirror of a stock tool's flag says \
         \"TOOL's -X\" in its help):\n{}",
        clashes.join("\n")
    );
    assert!(all.len() > 20, "only {} short flags found", all.len());
}
