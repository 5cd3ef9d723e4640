//! Choosing what `kvxfer run` runs: a plan's patterns by layer and id, in the spec's layer
//! order (L0, L1, L2, L3), each with the task definition of this node's role.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{generate, PlanError, TaskDefinition};

/// Which definitions of a pattern this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Node 1 of a two-node plan: `<id>-server.json`.
    Server,
    /// Node 2 of a two-node plan (needs `PEER_IP`): `client/<id>-client.json`.
    Client,
    /// Both sides on this host: a one-host plan's `<id>.json`.
    OneHost,
}

/// One pattern to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// Layer id (L0..L3).
    pub layer: String,
    /// Pattern id.
    pub id: String,
    /// Stock tool the pattern pairs kvxfer with.
    pub tool: String,
    /// This role's task definition.
    pub definition: TaskDefinition,
}

/// The spec's order of layers; unknown ids go last, in plan order.
fn rank(layer: &str) -> usize {
    ["L0", "L1", "L2", "L3"]
        .iter()
        .position(|l| *l == layer)
        .unwrap_or(4)
}

/// The plan's topology as the role that runs everything on this host, when it is one-host.
pub fn default_role(plan: &Value) -> Option<Role> {
    (plan.pointer("/infrastructure/topology") == Some(&Value::String("one-host".into())))
        .then_some(Role::OneHost)
}

/// The patterns of `layers` (all when empty) and `ids` (all when empty), in layer order, with
/// this role's definitions rendered from `templates`.
pub fn select(
    plan: &Value,
    templates: &Path,
    role: Role,
    layers: &[String],
    ids: &[String],
) -> Result<Vec<Selected>, PlanError> {
    let one_host = default_role(plan) == Some(Role::OneHost);
    if one_host != (role == Role::OneHost) {
        return Err(PlanError::Run(if one_host {
            "the plan is one-host: its definitions run both sides here (--role one-host)".into()
        } else {
            "the plan is two-node: run --role server on node 1 and --role client (PEER_IP set) \
             on node 2"
                .into()
        }));
    }
    let all_layers = plan["layers"].as_array().cloned().unwrap_or_default();
    let known: Vec<&str> = all_layers
        .iter()
        .flat_map(|l| l["patterns"].as_array().into_iter().flatten())
        .filter_map(|p| p["id"].as_str())
        .collect();
    if let Some(bad) = ids.iter().find(|i| !known.contains(&i.as_str())) {
        return Err(PlanError::Run(format!(
            "--pattern {bad}: no such pattern in the plan"
        )));
    }
    let mut chosen_layers: Vec<Value> = all_layers
        .into_iter()
        .filter(|l| {
            layers.is_empty() || layers.iter().any(|x| Some(x.as_str()) == l["id"].as_str())
        })
        .map(|mut l| {
            if let Some(ps) = l["patterns"].as_array_mut() {
                ps.retain(|p| {
                    ids.is_empty() || ids.iter().any(|i| Some(i.as_str()) == p["id"].as_str())
                });
            }
            l
        })
        .collect();
    chosen_layers.sort_by_key(|l| rank(l["id"].as_str().unwrap_or("")));
    let mut narrowed = plan.clone();
    narrowed["layers"] = Value::Array(chosen_layers.clone());
    let files = generate(&narrowed, templates)?;
    let mut out = Vec::new();
    for l in &chosen_layers {
        for p in l["patterns"].as_array().into_iter().flatten() {
            let id = p["id"].as_str().unwrap_or_default().to_string();
            let want: PathBuf = match role {
                Role::Server => format!("{id}-server.json").into(),
                Role::Client => Path::new("client").join(format!("{id}-client.json")),
                Role::OneHost => format!("{id}.json").into(),
            };
            let file = files.iter().find(|f| f.path == want).ok_or_else(|| {
                PlanError::Run(format!("pattern {id}: no {} was generated", want.display()))
            })?;
            let text = String::from_utf8_lossy(&file.bytes);
            out.push(Selected {
                layer: l["id"].as_str().unwrap_or_default().to_string(),
                id,
                tool: p["tool"].as_str().unwrap_or_default().to_string(),
                definition: TaskDefinition::from_json(&text)?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    #[test]
    fn layers_run_in_the_specs_order_and_filters_narrow_them() {
        let mut plan = super::super::load_plan(&repo("plans/loopback.json")).unwrap();
        // A plan listing L3 before L0 still runs L0 first.
        plan["layers"].as_array_mut().unwrap().reverse();
        let t = repo("templates");
        let all = select(&plan, &t, Role::OneHost, &[], &[]).unwrap();
        let layers: Vec<&str> = all.iter().map(|s| s.layer.as_str()).collect();
        let mut sorted = layers.clone();
        sorted.sort_by_key(|l| rank(l));
        assert_eq!(layers, sorted);
        assert_eq!(layers[0], "L0");
        let l1 = select(&plan, &t, Role::OneHost, &["L1".into()], &[]).unwrap();
        assert!(!l1.is_empty() && l1.iter().all(|s| s.layer == "L1"));
        let one = select(
            &plan,
            &t,
            Role::OneHost,
            &[],
            &["pll-lo-kvxfer-xfer-shm".into()],
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].definition.name, one[0].definition.name.trim());
        assert!(select(&plan, &t, Role::OneHost, &[], &["nope".into()]).is_err());
        assert!(
            select(&plan, &t, Role::Server, &[], &[]).is_err(),
            "one-host plan, server role"
        );
    }

    #[test]
    fn a_two_node_plan_gives_each_role_its_side() {
        let plan = super::super::load_plan(&repo("plans/phase-low-level.json")).unwrap();
        let t = repo("templates");
        let ids = ["pll-fi-pingpong-tcp-msg".to_string()];
        let s = select(&plan, &t, Role::Server, &[], &ids).unwrap();
        let c = select(&plan, &t, Role::Client, &[], &ids).unwrap();
        assert_eq!((s.len(), c.len()), (1, 1));
        assert_ne!(s[0].definition, c[0].definition);
        assert!(select(&plan, &t, Role::OneHost, &[], &ids).is_err());
    }
}
