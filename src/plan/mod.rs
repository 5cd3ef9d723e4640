//! Experiment plans: validation, rendering into task definitions, and a local runner with the
//! team's task-runner semantics.

pub mod kvbench_model;
pub mod render;
pub mod runner;
pub mod select;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use render::{generate, shell_quote, Generated};
pub use validate::{validate, Problem};

/// Errors of the plan path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A file could not be read or written.
    #[error("{}: {err}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed (in the message, so not also a source: it would print twice).
        err: std::io::Error,
    },
    /// A JSON file does not parse.
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json says.
        message: String,
    },
    /// The plan has problems, each with its JSON path.
    #[error("{}: {} problem(s):\n  {}", .path.display(), .problems.len(), .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        /// The plan file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// A template does not load or render.
    #[error("{}: {message}", .path.display())]
    Template {
        /// The template file.
        path: PathBuf,
        /// Where and what.
        message: String,
    },
    /// A task definition breaks the runner's contract.
    #[error("task definition: {0}")]
    Definition(String),
    /// Running a task definition failed.
    #[error("{0}")]
    Run(String),
    /// A signal stopped the run: passed to the task's commands, waited for, the task marked
    /// failed.
    #[error("task {task}: its commands were passed {signal} and ended; the task is marked failed")]
    Stopped {
        /// The task that was running.
        task: String,
        /// The signal.
        signal: crate::stop::Signal,
    },
}

/// Reads a JSON file, naming the file, line and column of a syntax error.
pub fn read_json(path: &Path) -> Result<serde_json::Value, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
        path: path.to_path_buf(),
        err: e,
    })?;
    serde_json::from_str(&text).map_err(|e| PlanError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// Reads and validates a plan.
pub fn load_plan(path: &Path) -> Result<serde_json::Value, PlanError> {
    let plan = read_json(path)?;
    let problems = validate(&plan);
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(PlanError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// A task definition as the team's runner reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDefinition {
    /// Definition name (the state file keys progress by it).
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// `{{KEY}}` replacements for commands and skip_if.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Tasks in order.
    pub tasks: Vec<Task>,
}

/// One task of a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique id within the definition.
    pub id: String,
    /// Short name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A shell test; when it succeeds the task is skipped and marked done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_if: Option<String>,
    /// One shell command per entry, all run in one shell.
    pub commands: Vec<String>,
}

impl TaskDefinition {
    /// Parses a definition and checks the runner's contract (unique ids, one-line commands).
    pub fn from_json(text: &str) -> Result<TaskDefinition, PlanError> {
        let def: TaskDefinition = serde_json::from_str(text).map_err(|e| {
            PlanError::Definition(format!("line {} column {}: {e}", e.line(), e.column()))
        })?;
        def.check()?;
        Ok(def)
    }

    /// Checks the runner's contract.
    pub fn check(&self) -> Result<(), PlanError> {
        let mut ids = BTreeSet::new();
        if self.tasks.is_empty() {
            return Err(PlanError::Definition(format!("{}: no task", self.name)));
        }
        for t in &self.tasks {
            if t.id.is_empty() || !ids.insert(t.id.as_str()) {
                return Err(PlanError::Definition(format!(
                    "{}: task id {:?} empty or repeated",
                    self.name, t.id
                )));
            }
            for c in t.commands.iter().chain(t.skip_if.iter()) {
                if c.contains('\n') || c.contains('\r') {
                    return Err(PlanError::Definition(format!(
                        "{}: task {}: a command holds a line break",
                        self.name, t.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("definitions always serialise");
        v.push(b'\n');
        v
    }
}

/// Writes generated files under `out`, creating folders. Returns the paths written.
pub fn write_generated(out: &Path, files: &[Generated]) -> Result<Vec<PathBuf>, PlanError> {
    let mut written = Vec::new();
    for g in files {
        let p = out.join(&g.path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| PlanError::Io {
                path: dir.to_path_buf(),
                err: e,
            })?;
        }
        crate::report::write_atomic(&p, &g.bytes).map_err(|e| PlanError::Io {
            path: p.clone(),
            err: e,
        })?;
        written.push(p);
    }
    Ok(written)
}

/// `templates/` beside the plan's folder (plans/x.json -> templates/), else ./templates.
pub fn default_templates(plan: &Path) -> PathBuf {
    let beside = plan
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("templates"));
    match beside {
        Some(d) if d.is_dir() => d,
        _ => PathBuf::from("templates"),
    }
}
