//! `--expect-path`: the path a run's payload must take, checked against what the counters saw;
//! a run that took another keeps its figures, with status `wrong-path`.

use serde_json::Value;

use super::verdict::{describe, PathReport};
use super::view::{PathKind, SideView};
use crate::report::{ErrorEntry, ResultDoc, Status};

/// The path a run's payload must take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectPath {
    /// A network device other than the loopback.
    Network,
    /// This host alone: the loopback, shared memory or a copy.
    Local,
    /// These devices and no other: each named one carrying part; a name with `*` (matching
    /// any characters) admits the devices it matches without asking each to carry.
    Devices(Vec<String>),
}

impl ExpectPath {
    /// `network`, `local`, or `DEV[,DEV...]`.
    pub fn parse(s: &str) -> Result<ExpectPath, String> {
        match s.trim() {
            "" => Err("--expect-path needs network, local or DEV[,DEV...]".into()),
            "network" => Ok(ExpectPath::Network),
            "local" => Ok(ExpectPath::Local),
            list => {
                let devs: Vec<String> = list.split(',').map(|d| d.trim().to_string()).collect();
                if let Some(bad) = devs
                    .iter()
                    .find(|d| d.is_empty() || d.chars().any(char::is_whitespace))
                {
                    return Err(format!("--expect-path {s:?}: {bad:?} is not a device name"));
                }
                Ok(ExpectPath::Devices(devs))
            }
        }
    }

    /// How the option was spelled.
    pub fn name(&self) -> String {
        match self {
            ExpectPath::Network => "network".into(),
            ExpectPath::Local => "local".into(),
            ExpectPath::Devices(d) => d.join(","),
        }
    }

    /// Whether `v`'s payload took this path (None when its counters cannot tell).
    pub fn check(&self, v: &SideView) -> Option<bool> {
        if v.kind == PathKind::Unknown {
            return None;
        }
        Some(match self {
            ExpectPath::Network => v.kind == PathKind::Network,
            ExpectPath::Local => matches!(v.kind, PathKind::Local | PathKind::None),
            ExpectPath::Devices(want) => {
                !v.carriers.is_empty()
                    && v.carriers.iter().all(|c| want.iter().any(|w| glob(w, c)))
                    && named(want).all(|w| v.carriers.iter().any(|c| c == w))
            }
        })
    }

    /// The verdict of a view whose payload did not take this path.
    pub fn wrong(&self, v: &SideView) -> String {
        let want = match self {
            ExpectPath::Network => "network".to_string(),
            ExpectPath::Local => "local path".to_string(),
            ExpectPath::Devices(d) => d.join(","),
        };
        if v.carriers.is_empty() {
            return format!("{}, not the requested {want}", describe(v));
        }
        let mut s = format!(
            "{} carried it, not the requested {want}",
            v.carriers.join(" and ")
        );
        if let ExpectPath::Devices(d) = self {
            let idle: Vec<&str> = named(d)
                .filter(|w| !v.carriers.iter().any(|c| c == w))
                .collect();
            if !idle.is_empty() {
                s.push_str(&format!(" ({} carried nothing)", idle.join(", ")));
            }
        }
        s
    }
}

/// The plain device names of a list (those without `*`): each must carry part.
fn named(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter().map(String::as_str).filter(|w| !w.contains('*'))
}

/// `pattern` matches `name`, a `*` standing for any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What checking a document found.
#[derive(Debug, Default, PartialEq)]
pub struct Judgement {
    /// The verdicts of the results whose payload took another path.
    pub wrong: Vec<String>,
    /// Results whose counters could not tell (or that carry no path).
    pub unchecked: usize,
}

/// Checks every result's path against `expect`. A result whose payload took another path says
/// so in its verdict; a complete document then becomes `wrong-path`, each such line among its
/// errors (its figures stay).
pub fn judge(doc: &mut ResultDoc, expect: &ExpectPath) -> Judgement {
    let mut j = Judgement::default();
    for r in &mut doc.results {
        let Some(mut p) = r.path.as_ref().and_then(PathReport::from_value) else {
            j.unchecked += 1;
            continue;
        };
        p.expected = Some(expect.name());
        let own = p.own().cloned();
        p.as_expected = own.as_ref().and_then(|v| expect.check(v));
        match (p.as_expected, own) {
            (Some(false), Some(v)) => {
                p.verdict = expect.wrong(&v);
                j.wrong.push(p.verdict.clone());
            }
            (None, _) => j.unchecked += 1,
            _ => {}
        }
        r.path = Some(p.to_value());
    }
    if !j.wrong.is_empty() && doc.status == Status::Complete {
        doc.status = Status::WrongPath;
    }
    for w in &j.wrong {
        doc.errors.push(ErrorEntry {
            at: "path".into(),
            message: w.clone(),
        });
    }
    j
}

/// The verdict of a result's `path`, whoever wrote it.
pub fn verdict_of(path: &Value) -> Option<&str> {
    path.get("verdict").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("efa0", "efa0"));
        assert!(!glob("efa0", "efa01"));
        assert!(glob("rdmap*", "rdmap16s27"));
        assert!(glob("*s27", "rdmap16s27"));
        assert!(glob("r*p*7", "rdmap16s27"));
        assert!(!glob("r*x*7", "rdmap16s27"));
        assert!(glob("*", "lo"));
        assert!(!glob("eth*", "lo"));
    }

    #[test]
    fn the_three_spellings() {
        assert_eq!(ExpectPath::parse("network"), Ok(ExpectPath::Network));
        assert_eq!(ExpectPath::parse(" local "), Ok(ExpectPath::Local));
        assert_eq!(
            ExpectPath::parse("efa0,efa1"),
            Ok(ExpectPath::Devices(vec!["efa0".into(), "efa1".into()]))
        );
        assert!(ExpectPath::parse("").is_err());
        assert!(ExpectPath::parse("efa0,,efa1").is_err());
        assert_eq!(ExpectPath::parse("efa0,efa1").unwrap().name(), "efa0,efa1");
    }
}
