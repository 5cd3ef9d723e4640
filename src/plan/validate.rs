//! Checks of an experiment plan, every problem reported with its JSON path.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use auto::auto_problems;

/// One problem of a plan, at a JSON path such as `$.layers[1].patterns[0].params.sizes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a JSON path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The tools a pattern may name, with the layer each belongs to.
pub const TOOLS: &[(&str, &str)] = &[
    ("fi_pingpong", "L0"),
    ("fi_rma_pingpong", "L0"),
    ("nixlbench", "L1"),
    ("kvxfer_xfer", "L1"),
    ("kvbench", "L2"),
    ("kvxfer_kv", "L2"),
    ("ucx_perftest", "L3"),
];

/// The tools whose templates render a one-host definition (both sides on this host).
pub const ONE_HOST_TOOLS: &[&str] = &["fi_pingpong", "kvxfer_xfer", "kvxfer_kv", "ucx_perftest"];

/// What a parameter must hold.
#[derive(Clone, Copy)]
enum Kind {
    /// A string of one of these values.
    OneOf(&'static [&'static str]),
    /// A non-empty string.
    Text,
    /// An integer of at least this value.
    Int(u64),
    /// A non-empty list of integers of at least 1.
    Sizes,
    /// A count of at least 1, or `auto` (until the median is known to a precision).
    Count,
}

impl Kind {
    /// What `x` must be, with what it is, where it is not of this kind; None where it is.
    fn refuses(&self, x: &Value) -> Option<String> {
        let (ok, want) = match self {
            Kind::OneOf(allowed) => (
                x.as_str().is_some_and(|s| allowed.contains(&s)),
                format!("one of {}", allowed.join(", ")),
            ),
            Kind::Text => (
                x.as_str().is_some_and(|s| !s.is_empty()),
                "a non-empty string".to_string(),
            ),
            Kind::Int(min) => (
                x.as_u64().is_some_and(|n| n >= *min),
                format!("an integer >= {min}"),
            ),
            Kind::Count => (
                x.as_u64().is_some_and(|n| n >= 1) || x.as_str() == Some("auto"),
                "an integer >= 1 or \"auto\"".to_string(),
            ),
            Kind::Sizes => (
                x.as_array().is_some_and(|a| {
                    !a.is_empty() && a.iter().all(|n| n.as_u64().is_some_and(|n| n >= 1))
                }),
                "a non-empty list of positive integers".to_string(),
            ),
        };
        if ok {
            return None;
        }
        let is = match self {
            Kind::Int(_) | Kind::Count => it_is(Some(x)),
            _ => String::new(),
        };
        Some(format!("{want}{is}"))
    }
}

mod tool_params;

/// The parameters each tool's patterns need (kvxfer_xfer's depend on its `backend`).
fn params_of(
    tool: &str,
    params: &serde_json::Map<String, Value>,
) -> &'static [(&'static str, Kind)] {
    let ucx = params.get("backend").and_then(Value::as_str) == Some("ucx");
    match tool {
        "kvxfer_xfer" if ucx => tool_params::KVXFER_XFER_UCX,
        "fi_pingpong" => tool_params::FI_PINGPONG,
        "fi_rma_pingpong" => tool_params::FI_RMA_PINGPONG,
        "nixlbench" => tool_params::NIXLBENCH,
        "kvxfer_xfer" => tool_params::KVXFER_XFER,
        "kvxfer_kv" if ucx => tool_params::KVXFER_KV_UCX,
        "kvxfer_kv" => tool_params::KVXFER_KV,
        "kvbench" => tool_params::KVBENCH,
        "ucx_perftest" => tool_params::UCX_PERFTEST,
        _ => &[],
    }
}

/// Every problem of `plan`; empty when it is valid.
pub fn validate(plan: &Value) -> Vec<Problem> {
    let mut v = Checker::default();
    let Some(top) = plan.as_object() else {
        v.err("$", "a plan is a JSON object");
        return v.problems;
    };
    v.check_identity(plan);
    for key in [
        "infrastructure",
        "common",
        "kv_cache_reference",
        "validation_targets",
    ] {
        if !top.get(key).is_some_and(Value::is_object) {
            v.err(&format!("$.{key}"), "missing or not an object");
        }
    }
    v.check_common(plan);
    let one_host = v.one_host(plan);
    v.check_targets(plan);
    v.tool_path(plan, "kvxfer");
    v.strings(plan, "$");
    let Some(layers) = top.get("layers").and_then(Value::as_array) else {
        v.err("$.layers", "missing or not a list");
        return v.problems;
    };
    v.check_layers(plan, layers, one_host);
    for (path, message) in super::kvbench_model::problems(plan) {
        v.err(&path, &message);
    }
    v.problems
}

/// The steps of [`validate`], one part of the plan each.
impl Checker {
    /// `name` (a folder name) and `description`.
    fn check_identity(&mut self, plan: &Value) {
        self.text(plan, "$", "name");
        if let Some(n) = plan.get("name").and_then(Value::as_str) {
            let safe = n
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
            if !safe {
                self.err(
                    "$.name",
                    "must hold only letters, digits, - and _ (it names a folder)",
                );
            }
        }
        self.text(plan, "$", "description");
    }

    /// `common`: the output folder, the per-run timeout, the environment and the ports.
    fn check_common(&mut self, plan: &Value) {
        match plan.pointer("/common/output_dir").and_then(Value::as_str) {
            Some(d) if d.starts_with('/') => {}
            _ => self.err("$.common.output_dir", "must be an absolute path"),
        }
        let timeout = plan.pointer("/common/timeout_s");
        if !timeout.and_then(Value::as_u64).is_some_and(|n| n >= 1) {
            self.err(
                "$.common.timeout_s",
                &format!(
                    "must be an integer >= 1 (seconds per tool run){}",
                    it_is(timeout)
                ),
            );
        }
        if let Some(env) = plan.pointer("/common/env") {
            self.env(env, "$.common.env");
        }
        for (key, min, max) in [
            ("peer_timeout_s", 1, u64::MAX),
            ("realtime_priority", 1, 99),
            ("reference_port", 1, 65535),
            ("control_port", 1, 65535),
        ] {
            if let Some(x) = plan.pointer(&format!("/common/{key}")) {
                if !x.as_u64().is_some_and(|n| (min..=max).contains(&n)) {
                    let range = if max == u64::MAX {
                        format!("an integer >= {min}")
                    } else {
                        format!("an integer from {min} to {max}")
                    };
                    self.err(
                        &format!("$.common.{key}"),
                        &format!("must be {range}{}", it_is(Some(x))),
                    );
                }
            }
        }
    }

    /// Whether `infrastructure.topology` names a one-host plan (two-node when absent).
    fn one_host(&mut self, plan: &Value) -> bool {
        match plan.pointer("/infrastructure/topology") {
            None => false,
            Some(t) if t == "two-node" => false,
            Some(t) if t == "one-host" => true,
            Some(_) => {
                self.err(
                    "$.infrastructure.topology",
                    "must be one of two-node, one-host",
                );
                false
            }
        }
    }

    /// The KV cache reference's bytes per token and the cross-check tolerance.
    fn check_targets(&mut self, plan: &Value) {
        if let Some(n) = plan.pointer("/kv_cache_reference/bytes_per_token") {
            if n.as_u64().unwrap_or(0) == 0 {
                self.err(
                    "$.kv_cache_reference.bytes_per_token",
                    &format!("must be a positive integer{}", it_is(Some(n))),
                );
            }
        }
        if let Some(t) = plan.pointer("/validation_targets/crosscheck_tolerance") {
            if !t.as_f64().is_some_and(|x| x > 0.0) {
                self.err(
                    "$.validation_targets.crosscheck_tolerance",
                    "must be a number > 0 (the largest relative difference accepted)",
                );
            }
        }
    }

    /// Each layer's id and patterns, the tools' paths, and what a one-host plan may run.
    fn check_layers(&mut self, plan: &Value, layers: &[Value], one_host: bool) {
        if layers.is_empty() {
            self.err("$.layers", "no layer");
        }
        let mut ids = BTreeSet::new();
        for (li, layer) in layers.iter().enumerate() {
            let lp = format!("$.layers[{li}]");
            let lid = layer.get("id").and_then(Value::as_str).unwrap_or("");
            if !["L0", "L1", "L2", "L3"].contains(&lid) {
                self.err(&format!("{lp}.id"), "must be one of L0, L1, L2, L3");
            }
            let Some(patterns) = layer.get("patterns").and_then(Value::as_array) else {
                self.err(&format!("{lp}.patterns"), "missing or not a list");
                continue;
            };
            for (pi, p) in patterns.iter().enumerate() {
                let path = format!("{lp}.patterns[{pi}]");
                self.pattern(p, &path, lid, &mut ids);
                self.check_auto_time(plan, p, &path);
                let tool = p.get("tool").and_then(Value::as_str).unwrap_or("");
                for key in tool_keys(tool) {
                    self.tool_path(plan, key);
                }
                self.check_one_host(one_host, tool, &path);
            }
        }
    }

    /// An `auto` pattern's timed runs fit in `common.timeout_s` ([`auto::time_problem`]).
    fn check_auto_time(&mut self, plan: &Value, p: &Value, path: &str) {
        if let Some((key, message)) = auto::time_problem(plan, p) {
            self.err(&format!("{path}.params.{key}"), &message);
        }
    }

    /// A one-host plan runs only the tools whose templates render both sides on this host.
    fn check_one_host(&mut self, one_host: bool, tool: &str, path: &str) {
        if one_host && !ONE_HOST_TOOLS.contains(&tool) && TOOLS.iter().any(|(t, _)| *t == tool) {
            self.err(
                &format!("{path}.tool"),
                &format!(
                    "a one-host plan runs only {} patterns",
                    ONE_HOST_TOOLS.join(", ")
                ),
            );
        }
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    /// `infrastructure.tools.<key>` names a program: a non-empty string. Reported once.
    fn tool_path(&mut self, plan: &Value, key: &str) {
        let ok = plan
            .pointer(&format!("/infrastructure/tools/{key}"))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty());
        let path = format!("$.infrastructure.tools.{key}");
        if !ok && !self.problems.iter().any(|p| p.path == path) {
            self.err(
                &path,
                "missing or not a non-empty string (the program to run)",
            );
        }
    }

    fn err(&mut self, path: &str, message: &str) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.to_string(),
        });
    }

    fn text(&mut self, obj: &Value, path: &str, key: &str) {
        if !obj
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
        {
            self.err(
                &format!("{path}.{key}"),
                "missing or not a non-empty string",
            );
        }
    }

    /// No string anywhere may hold a control character: a command is one line.
    fn strings(&mut self, v: &Value, path: &str) {
        match v {
            Value::String(s) if s.chars().any(char::is_control) => self.err(
                path,
                "holds a control character (a command must be one line)",
            ),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.strings(x, &format!("{path}[{i}]"));
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    self.strings(x, &format!("{path}.{k}"));
                }
            }
            _ => {}
        }
    }

    /// An `env` object: environment variable names to string values.
    fn env(&mut self, env: &Value, path: &str) {
        let Some(m) = env.as_object() else {
            self.err(path, "must be an object of NAME: value");
            return;
        };
        for (k, x) in m {
            if !is_env_name(k) {
                self.err(&format!("{path}.{k}"), "not an environment variable name");
            }
            if !x.is_string() {
                self.err(&format!("{path}.{k}"), "must be a string");
            }
        }
    }

    fn pattern(&mut self, p: &Value, path: &str, layer: &str, ids: &mut BTreeSet<String>) {
        if let Some(env) = p.get("env") {
            self.env(env, &format!("{path}.env"));
        }
        self.pattern_id(p, path, ids);
        self.text(p, path, "description");
        let tool = p.get("tool").and_then(Value::as_str).unwrap_or("");
        if !self.pattern_tool(tool, path, layer) {
            return;
        }
        let Some(params) = p.get("params").and_then(Value::as_object) else {
            self.err(&format!("{path}.params"), "missing or not an object");
            return;
        };
        for (key, message) in auto_problems(params) {
            self.err(&format!("{path}.params.{key}"), &message);
        }
        if let Some(x) = params.get("runs") {
            if !x.as_u64().is_some_and(|n| (1..=100).contains(&n)) {
                self.err(
                    &format!("{path}.params.runs"),
                    &format!(
                        "must be an integer from 1 to 100 (alternating runs of kvxfer and the \
                         stock tool){}",
                        it_is(Some(x))
                    ),
                );
            }
        }
        if let Some(b) = params.get("backend") {
            if tool == "kvxfer_xfer" && !matches!(b.as_str(), Some("libfabric" | "ucx")) {
                self.err(
                    &format!("{path}.params.backend"),
                    "must be one of libfabric, ucx",
                );
            }
        }
        if let Some(message) = cold_cache_problem(tool, params) {
            self.err(&format!("{path}.params.cold_cache"), &message);
        }
        if let Some(message) = cpus_problem(tool, params) {
            self.err(&format!("{path}.params.cpus"), &message);
        }
        if let Some(x) = params.get("expect_path") {
            let ok = x.as_str().is_some_and(|s| {
                !s.is_empty()
                    && !s.contains(char::is_whitespace)
                    && !s.split(',').any(str::is_empty)
            });
            if !ok {
                self.err(
                    &format!("{path}.params.expect_path"),
                    "must be network, local or DEV[,DEV...] (kvxfer's --expect-path)",
                );
            }
        }
        for (name, kind) in params_of(tool, params) {
            let at = format!("{path}.params.{name}");
            let value = params.get(*name);
            let Some(x) = value else {
                self.err(&at, "missing");
                continue;
            };
            if let Some(want) = kind.refuses(x) {
                self.err(&at, &format!("must be {want}"));
            }
        }
        if tool == "kvxfer_xfer" {
            for (key, message) in twin_problems(params) {
                self.err(&format!("{path}.params.{key}"), &message);
            }
        }
    }

    /// Checks a pattern's id: well formed and not seen before in the plan.
    fn pattern_id(&mut self, p: &Value, path: &str, ids: &mut BTreeSet<String>) {
        match p.get("id").and_then(Value::as_str) {
            Some(id) if valid_id(id) => {
                if !ids.insert(id.to_string()) {
                    self.err(
                        &format!("{path}.id"),
                        &format!("duplicate pattern id {id:?}"),
                    );
                }
            }
            _ => self.err(
                &format!("{path}.id"),
                "must start with pll- and hold only a-z, 0-9 and -",
            ),
        }
    }

    /// Checks a pattern's tool belongs to its layer; false when the tool is unknown (nothing
    /// more of the pattern can be checked).
    fn pattern_tool(&mut self, tool: &str, path: &str, layer: &str) -> bool {
        match TOOLS.iter().find(|(t, _)| *t == tool) {
            None => {
                let names: Vec<_> = TOOLS.iter().map(|(t, _)| *t).collect();
                self.err(
                    &format!("{path}.tool"),
                    &format!("must be one of {}", names.join(", ")),
                );
                return false;
            }
            Some((_, l)) if *l != layer => self.err(
                &format!("{path}.tool"),
                &format!("{tool} belongs to layer {l}, not {layer}"),
            ),
            Some(_) => {}
        }
        true
    }
}

/// What a value that should be a whole number is, for the message: `; it is 1e30, past the
/// largest whole number (2^64 - 1)`, or `; it is missing`.
fn it_is(x: Option<&Value>) -> String {
    let Some(x) = x else {
        return "; it is missing".into();
    };
    let what = match x {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => format!("{u}"),
            (None, Some(i), _) => format!("{i}, below 0"),
            (None, None, Some(f)) if f.fract() != 0.0 => format!("{f}, not a whole number"),
            (None, None, Some(f)) if f < 0.0 => format!("{f:e}, below 0"),
            (None, None, Some(f)) => {
                format!("{f:e}, past the largest whole number (2^64 - 1)")
            }
            _ => n.to_string(),
        },
        Value::String(t) => format!("the text {t:?}, not a number"),
        Value::Bool(b) => format!("{b}, not a number"),
        Value::Null => "null".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    };
    format!("; it is {what}")
}

/// What is wrong with a pattern's `cold_cache` (kvxfer xfer and kv profile's `--cold-cache`):
/// a boolean, on kvxfer's own patterns, not beside NIXL's twin (which does not evict).
fn cold_cache_problem(tool: &str, params: &serde_json::Map<String, Value>) -> Option<String> {
    let x = params.get("cold_cache")?;
    if !matches!(tool, "kvxfer_xfer" | "kvxfer_kv") {
        return Some(format!(
            "is kvxfer xfer's and kv profile's --cold-cache; {tool} has no such option"
        ));
    }
    if !x.is_boolean() {
        return Some(format!("must be true or false; it is {x}"));
    }
    if x == &Value::Bool(true) && params.contains_key("twin") {
        return Some("the nixl twin does not evict its buffers: leave cold_cache out".into());
    }
    None
}

/// The highest CPU number a pattern's `cpus` may name.
const MAX_PLAN_CPU: u64 = 4095;

/// What is wrong with a pattern's `cpus` (kvxfer's `--cpus`, and `taskset -c` for the stock
/// tool beside it): distinct CPU numbers, the initiator's first and, with both sides on one
/// host, the target's next; on the patterns whose tools can be pinned alike.
fn cpus_problem(tool: &str, params: &serde_json::Map<String, Value>) -> Option<String> {
    let x = params.get("cpus")?;
    if !matches!(
        tool,
        "kvxfer_xfer" | "kvxfer_kv" | "fi_pingpong" | "fi_rma_pingpong" | "ucx_perftest"
    ) {
        return Some(format!(
            "pins kvxfer and the stock tool beside it alike; {tool} cannot be pinned: leave \
             cpus out"
        ));
    }
    if tool == "kvxfer_xfer" && params.contains_key("twin") {
        return Some("the nixl twin is not pinned: leave cpus out".into());
    }
    let list: Option<Vec<u64>> = x
        .as_array()
        .and_then(|a| a.iter().map(Value::as_u64).collect());
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Some(format!(
            "must be a list of CPU numbers, e.g. [2, 3] (the initiator's first){}",
            it_is(Some(x))
        ));
    };
    if let Some(c) = list.iter().find(|&&c| c > MAX_PLAN_CPU) {
        return Some(format!("CPU {c} is above {MAX_PLAN_CPU}"));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(c) = list.iter().find(|&&c| !seen.insert(c)) {
        return Some(format!("CPU {c} is named twice"));
    }
    None
}

/// What stops a kvxfer_xfer pattern's `twin` from running: NIXL's driver
/// (scripts/nixl_xfer.py) is a pairwise, one-transfer UCX twin of `batch` equal blocks.
fn twin_problems(params: &serde_json::Map<String, Value>) -> Vec<(&'static str, String)> {
    let Some(twin) = params.get("twin") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if twin.as_str() != Some("nixl") {
        out.push(("twin", "must be nixl".to_string()));
        return out;
    }
    let s = |k: &str| params.get(k).and_then(Value::as_str);
    if s("backend") != Some("ucx") {
        out.push((
            "backend",
            "must be ucx for the nixl twin (NIXL's UCX backend)".into(),
        ));
    }
    if !matches!(s("op"), Some("write" | "read")) {
        out.push(("op", "must be write or read for the nixl twin".into()));
    }
    if s("scheme") != Some("pairwise") || params.get("concurrency") != Some(&Value::from(1)) {
        out.push((
            "scheme",
            "the nixl twin runs one pairwise transfer (concurrency 1)".into(),
        ));
    }
    if params.get("iterations").and_then(Value::as_str) == Some("auto") {
        out.push((
            "iterations",
            "the nixl twin runs a fixed count: give an integer (auto is for kvxfer alone)".into(),
        ));
    }
    let size = params.get("size").and_then(Value::as_u64).unwrap_or(0);
    match params.get("block").and_then(Value::as_u64) {
        Some(b) if b > 0 && size % b == 0 => {}
        _ => out.push((
            "block",
            "the nixl twin needs a block that divides size (its batch of equal blocks)".into(),
        )),
    }
    out
}

/// The `infrastructure.tools` entries a pattern of `tool` runs, beside kvxfer.
fn tool_keys(tool: &str) -> &'static [&'static str] {
    match tool {
        "fi_pingpong" => &["fi_pingpong"],
        "fi_rma_pingpong" => &["fi_rma_pingpong"],
        "nixlbench" => &["nixlbench"],
        "kvbench" => &["kvbench_dir", "python"],
        "ucx_perftest" => &["ucx_perftest"],
        _ => &[],
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// `pll-` followed by lower-case letters, digits and dashes.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("pll-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    })
}

mod auto;
#[cfg(test)]
mod tests;
