//! Task definitions from a plan and the `templates/*.json.jinja2` files (minijinja, auto-escape
//! off). Every plan value that reaches a command goes through the `sh` filter; runner variables
//! are written with `var("PEER_IP")` and left as `{{PEER_IP}}` for the runner.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use minijinja::{context, AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};
use serde_json::Value as Json;

use super::PlanError;
use super::TaskDefinition;

/// One generated file: its path relative to the output folder and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// `<id>-server.json`, `client/<id>-client.json` or, for a one-host plan, `<id>.json`.
    pub path: PathBuf,
    /// Pretty JSON with a trailing newline.
    pub bytes: Vec<u8>,
}

/// Quotes `s` for a POSIX shell: bare when made only of safe characters, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `sh` filter: a plan value shell-quoted, then escaped to sit inside a JSON string.
fn sh_filter(v: Value) -> Result<String, Error> {
    let text = match v.as_str() {
        Some(s) => s.to_string(),
        None if v.is_number() => v.to_string(),
        None => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("sh: only strings and numbers reach a command, not {v}"),
            ))
        }
    };
    if text.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "sh: a control character would split the command",
        ));
    }
    let quoted = shell_quote(&text);
    // Inside a JSON string: escape backslash and double quote.
    Ok(quoted.replace('\\', r"\\").replace('"', "\\\""))
}

/// `var("NAME")`: a runner variable, left for the runner to fill.
fn var_fn(name: String) -> Result<String, Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("var: {name:?} is not a runner variable name"),
        ));
    }
    Ok(format!("{{{{{name}}}}}"))
}

/// `kvbench_model(plan.kv_cache_reference)`: the KVBench model file for the reference model
/// (`class`, `model_name`, `why`, `fields` as `[key, value]` pairs in the class's order).
fn kvbench_model_fn(kv: Value) -> Result<Value, Error> {
    let kv = serde_json::to_value(&kv)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let file = super::kvbench_model::reference_model(&kv)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
    Ok(Value::from_serialize(&file))
}

/// The environment over the template folder's `*.jinja2` files.
pub fn environment(dir: &Path) -> Result<Environment<'static>, PlanError> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_filter("sh", sh_filter);
    env.add_function("var", var_fn);
    env.add_function("kvbench_model", kvbench_model_fn);
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| PlanError::Io {
            path: dir.to_path_buf(),
            err: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".jinja2"))
        .collect();
    names.sort();
    for p in names {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&p).map_err(|e| PlanError::Io {
            path: p.clone(),
            err: e,
        })?;
        env.add_template_owned(name, text)
            .map_err(|e| PlanError::Template {
                path: p.clone(),
                message: describe(&e),
            })?;
    }
    Ok(env)
}

/// A minijinja error with its line and the chain of causes.
fn describe(e: &Error) -> String {
    let mut s = match e.line() {
        Some(l) => format!("line {l}: {}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(d) = e.detail() {
        s.push_str(": ");
        s.push_str(d);
    }
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The template a tool's patterns use.
fn template_for(tool: &str) -> String {
    format!("{}.json.jinja2", tool.replace('_', "-"))
}

/// Renders every pattern of a validated plan: a server and a client file per pattern, or one
/// `<id>.json` per pattern (role `local`) when the plan's topology is `one-host`.
pub fn generate(plan: &Json, templates: &Path) -> Result<Vec<Generated>, PlanError> {
    let env = environment(templates)?;
    let mut out = Vec::new();
    let layers = plan["layers"].as_array().cloned().unwrap_or_default();
    for layer in &layers {
        for pattern in layer["patterns"].as_array().cloned().unwrap_or_default() {
            let id = pattern["id"].as_str().unwrap_or_default().to_string();
            let tool = pattern["tool"].as_str().unwrap_or_default();
            let name = template_for(tool);
            let tmpl = env.get_template(&name).map_err(|e| PlanError::Template {
                path: templates.join(&name),
                message: describe(&e),
            })?;
            let one_host =
                plan.pointer("/infrastructure/topology") == Some(&Json::String("one-host".into()));
            let roles: &[&str] = if one_host {
                &["local"]
            } else {
                &["server", "client"]
            };
            for &role in roles {
                let text = tmpl
                    .render(context! {
                        plan => Value::from_serialize(plan),
                        layer => Value::from_serialize(layer),
                        pattern => Value::from_serialize(&pattern),
                        p => Value::from_serialize(&pattern["params"]),
                        role => role,
                    })
                    .map_err(|e| PlanError::Template {
                        path: templates.join(&name),
                        message: format!("pattern {id} ({role}): {}", describe(&e)),
                    })?;
                let def = TaskDefinition::from_json(&text).map_err(|e| PlanError::Template {
                    path: templates.join(&name),
                    message: format!(
                        "pattern {id} ({role}) renders an invalid task definition: {e}"
                    ),
                })?;
                let path = match role {
                    "server" => PathBuf::from(format!("{id}-server.json")),
                    "client" => PathBuf::from("client").join(format!("{id}-client.json")),
                    _ => PathBuf::from(format!("{id}.json")),
                };
                out.push(Generated {
                    path,
                    bytes: def.to_json(),
                });
            }
        }
    }
    Ok(out)
}

/// Variables a definition's commands use that the runner must fill (`{{NAME}}`).
pub fn runner_variables(command: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = command;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        found.insert(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_values_as_data() {
        assert_eq!(shell_quote("efa"), "efa");
        assert_eq!(shell_quote("/tmp/low-level"), "/tmp/low-level");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("'; touch /tmp/x #"), r"''\''; touch /tmp/x #'");
        assert_eq!(shell_quote("$(id)"), "'$(id)'");
    }

    #[test]
    fn sh_filter_escapes_for_json_and_refuses_newlines() {
        assert_eq!(
            sh_filter(Value::from("say \"hi\"")).unwrap(),
            r#"'say \"hi\"'"#
        );
        assert_eq!(sh_filter(Value::from(64)).unwrap(), "64");
        assert!(sh_filter(Value::from("a\nb")).is_err());
        assert!(sh_filter(Value::from(vec![1, 2])).is_err());
    }

    #[test]
    fn runner_variables_are_left_for_the_runner() {
        assert_eq!(var_fn("PEER_IP".into()).unwrap(), "{{PEER_IP}}");
        assert!(var_fn("peer; rm".into()).is_err());
        let v = runner_variables("ping {{PEER_IP}} {{ NODE1_PRIVATE }}");
        assert_eq!(
            v.into_iter().collect::<Vec<_>>(),
            ["NODE1_PRIVATE", "PEER_IP"]
        );
    }
}
