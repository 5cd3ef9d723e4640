//! The evidence assessment every analysis returns, and the runs that would settle a claim.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// How sure the team can be of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Guess or literature only, or contradicted by measurement.
    Low,
    /// Consistent observations, not measured at the network level.
    Medium,
    /// Measured directly and consistent.
    High,
}

/// Where the evidence for a claim comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceType {
    /// Low-level measurement beside the E2E figures.
    Measured,
    /// Derived from E2E figures only.
    Inferred,
    /// Published results of others.
    Literature,
}

/// What the data says of the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The measurements agree with the claim.
    Supported,
    /// The measurements disagree with the claim.
    Contradicted,
    /// Some figures are there, not enough to decide.
    Inconclusive,
    /// The figures the claim needs are missing; `needed` says which runs give them.
    InsufficientData,
}

/// A run that would supply missing figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeededRun {
    /// Pattern ids of the plan that measure it (empty for E2E runs or when the plan has none).
    pub pattern_ids: Vec<String>,
    /// Tool (`nixlbench`, `kvbench`, `kvxfer`, or `e2e benchmark`).
    pub tool: String,
    /// Transfer size in bytes, when one matters.
    pub size_bytes: Option<u64>,
    /// Concurrency, when one matters.
    pub concurrency: Option<u64>,
    /// The kvxfer command that measures the same, when there is one.
    pub kvxfer: Option<String>,
    /// What it settles.
    pub why: String,
}

/// One claim judged against the data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// `tpot-independence`, `tcp-incast`, `token-gap` or `staircase`.
    pub analysis: String,
    /// The claim as the team made it.
    pub claim: String,
    /// Confidence before low-level measurement.
    pub confidence_before: Confidence,
    /// Confidence now.
    pub confidence_after: Confidence,
    /// Evidence type before.
    pub evidence_before: EvidenceType,
    /// Evidence type now.
    pub evidence_type: EvidenceType,
    /// What the data says.
    pub verdict: Verdict,
    /// The figures the verdict rests on (names carry their units); only measured or derived
    /// values, never placeholders.
    pub key_metrics: BTreeMap<String, f64>,
    /// Why, in a few sentences.
    pub explanation: String,
    /// What to do next.
    pub recommendation: String,
    /// Runs that would settle what is missing.
    pub needed: Vec<NeededRun>,
}

/// The plan whose pattern ids name the runs that are missing.
#[derive(Debug, Clone)]
pub struct Catalogue {
    patterns: Vec<(String, String, Value)>,
    /// KV bytes per token of the plan's reference model (sizes of `tokens` params).
    bytes_per_token: u64,
}

/// The plan the spec ships, used when no other is given.
const DEFAULT_PLAN: &str = include_str!("../../plans/phase-low-level.json");

impl Default for Catalogue {
    fn default() -> Catalogue {
        let v: Value = serde_json::from_str(DEFAULT_PLAN).unwrap_or(Value::Null);
        Catalogue::from_plan(&v)
    }
}

impl Catalogue {
    /// The patterns of a plan (`layers[].patterns[]`: id, tool, params).
    pub fn from_plan(plan: &Value) -> Catalogue {
        let patterns = plan["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["patterns"].as_array().into_iter().flatten())
            .filter_map(|p| {
                Some((
                    p["id"].as_str()?.to_string(),
                    p["tool"].as_str()?.to_string(),
                    p["params"].clone(),
                ))
            })
            .collect();
        let bytes_per_token = plan
            .pointer("/kv_cache_reference/bytes_per_token")
            .and_then(Value::as_u64)
            .unwrap_or(57_344);
        Catalogue {
            patterns,
            bytes_per_token,
        }
    }

    /// Pattern ids of `tool` whose transport is `transport` (efa/tcp) and whose params match
    /// `size` (block_size, kv_bytes or sizes) and `concurrency` where given.
    pub fn ids(
        &self,
        tool: &str,
        transport: &str,
        size: Option<u64>,
        concurrency: Option<u64>,
    ) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|(_, t, _)| t == tool)
            .filter(|(id, _, p)| {
                let words = [&p["transport"], &p["ucx_tls"], &p["provider"]]
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|s| s.to_ascii_lowercase())
                    .collect::<Vec<_>>();
                let t = if words.is_empty() {
                    id.contains(&format!("-{transport}-"))
                } else {
                    words
                        .iter()
                        .any(|w| w == transport || (transport == "efa" && w == "srd"))
                };
                let s = size.map_or(true, |s| {
                    p["block_size"].as_u64() == Some(s)
                        || p["kv_bytes"].as_u64() == Some(s)
                        || p["tokens"].as_u64().map(|t| t * self.bytes_per_token) == Some(s)
                        || p["sizes"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x.as_u64() == Some(s)))
                });
                let c = concurrency.map_or(true, |c| p["concurrency"].as_u64().unwrap_or(1) == c);
                t && s && c
            })
            .map(|(id, _, _)| id.clone())
            .collect()
    }

    /// A many-to-one L1 run at `size` and `concurrency` over `transport`: nixlbench's pattern
    /// ids and the equivalent kvxfer command.
    pub fn incast_run(&self, transport: &str, size: u64, concurrency: u64, why: &str) -> NeededRun {
        let scheme = if concurrency == 1 {
            "pairwise"
        } else {
            "many-to-one"
        };
        NeededRun {
            pattern_ids: self.ids("nixlbench", transport, Some(size), Some(concurrency)),
            tool: "nixlbench".into(),
            size_bytes: Some(size),
            concurrency: Some(concurrency),
            kvxfer: Some(kvxfer_cmd(
                transport,
                &format!("xfer --size {size} --scheme {scheme} --concurrency {concurrency}"),
            )),
            why: why.to_string(),
        }
    }

    /// An L2 profile run at `size` bytes over `transport`: the plan's KVBench and kvxfer kv
    /// pattern ids, and kvxfer's model-driven profile.
    pub fn profile_run(&self, transport: &str, size: u64, why: &str) -> NeededRun {
        let mut ids = self.ids("kvbench", transport, Some(size), None);
        ids.extend(self.ids("kvxfer_kv", transport, Some(size), None));
        let tokens = size / self.bytes_per_token.max(1);
        NeededRun {
            pattern_ids: ids,
            tool: "kvbench".into(),
            size_bytes: Some(size),
            concurrency: Some(1),
            kvxfer: Some(kvxfer_cmd(
                transport,
                &format!("kv profile --model qwen2.5-7b --tokens {tokens}"),
            )),
            why: why.to_string(),
        }
    }
}

/// A kvxfer command over `transport`'s backend as the plan runs it: EFA through libfabric,
/// TCP through UCX.
fn kvxfer_cmd(transport: &str, rest: &str) -> String {
    match transport {
        "efa" => format!("kvxfer {rest} --provider efa"),
        t => format!("UCX_TLS={t} kvxfer {rest} --backend ucx"),
    }
}

/// An E2E run that is missing (no low-level pattern measures it).
pub fn e2e_run(what: &str, concurrency: Option<u64>, why: &str) -> NeededRun {
    NeededRun {
        pattern_ids: Vec::new(),
        tool: format!("e2e benchmark ({what})"),
        size_bytes: None,
        concurrency,
        kvxfer: None,
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_plan_names_incast_and_profile_runs() {
        let c = Catalogue::default();
        let r = c.incast_run("tcp", 704643072, 16, "x");
        assert_eq!(r.pattern_ids, vec!["pll-nixlbench-tcp-672m-c16"]);
        assert_eq!(
            c.ids("nixlbench", "efa", Some(704643072), Some(1)),
            vec!["pll-nixlbench-efa-672m"]
        );
        assert_eq!(
            c.profile_run("efa", 704643072, "x").pattern_ids,
            vec!["pll-kvbench-ucx-srd-12k", "pll-kvbench-efa-12k"]
        );
        assert_eq!(
            c.profile_run("tcp", 704643072, "x").pattern_ids,
            vec!["pll-kvbench-ucx-tcp-12k"]
        );
    }

    #[test]
    fn kvxfer_kv_patterns_are_matched_by_their_tokens() {
        let plan = serde_json::json!({"layers": [{"id": "L2", "patterns": [
            {"id": "pll-kvbench-efa-12k", "tool": "kvxfer_kv",
             "params": {"provider": "efa", "tokens": 12288}},
            {"id": "pll-kvbench-efa-1k", "tool": "kvxfer_kv",
             "params": {"provider": "efa", "tokens": 1000}}]}]});
        let r = Catalogue::from_plan(&plan).profile_run("efa", 12288 * 57344, "x");
        assert_eq!(r.pattern_ids, vec!["pll-kvbench-efa-12k"]);
        assert!(r.kvxfer.unwrap().contains("--tokens 12288"));
    }
}
