//! `kvxfer task run`: a task definition on this host, with the team's runner contract.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use kvxfer::plan::runner::{self, RunOptions};
use kvxfer::plan::TaskDefinition;

/// Options of `kvxfer task`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Run a task definition: one shell for all commands, skip_if, resumable state.
    Run {
        /// The task definition (JSON).
        file: PathBuf,
        /// Start at this task id.
        #[arg(long)]
        from: Option<String>,
        /// Forget this definition's recorded progress first.
        #[arg(long)]
        reset: bool,
        /// State file (default /tmp/task-state-<hostname>.json, shared by every run and user of
        /// this host: give each concurrent run its own).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

/// Runs the subcommand.
pub fn run(a: TaskArgs) -> anyhow::Result<ExitCode> {
    let TaskCommand::Run {
        file,
        from,
        reset,
        state,
    } = a.command;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let def = TaskDefinition::from_json(&text).with_context(|| format!("{}", file.display()))?;
    let report = runner::run(
        &def,
        &RunOptions {
            from,
            reset,
            state,
            ..RunOptions::default()
        },
    )
    .with_context(|| format!("running {}", file.display()))?;
    for (id, outcome) in &report.outcomes {
        eprintln!("kvxfer task: {id}: {outcome}");
    }
    Ok(ExitCode::SUCCESS)
}
