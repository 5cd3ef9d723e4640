//! Reference tools the plan runs (fi_pingpong, fi_rma_pingpong, nixlbench, KVBench,
//! ucx_perftest, NIXL's Python): found, their version, or the patterns that cannot run without.

use std::path::Path;
use std::time::Duration;

use super::host::run_briefly;
use super::{list, Finding, Host, PlanNeeds};

/// The longest a tool may take to tell its version.
const VERSION_LIMIT: Duration = Duration::from_millis(500);

/// The tools of `needs`' patterns on `host` (`plan`: a plan was given).
pub(super) fn check(host: &Host, needs: &PlanNeeds, plan: bool) -> Vec<Finding> {
    let c = &Tools { host, needs };
    if !plan {
        return vec![Finding::skip(
            "tools",
            "no --plan: the reference tools a plan runs are checked with --plan",
        )];
    }
    let mut keys: Vec<&String> = c.needs.patterns.iter().flat_map(|p| &p.tools).collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return vec![Finding::ok("tools", "the chosen patterns run kvxfer alone")];
    }
    // Each tool asked at once: the versions come in the time of the slowest.
    std::thread::scope(|s| {
        let asks: Vec<_> = keys.iter().map(|k| s.spawn(|| tool(c, k))).collect();
        asks.into_iter()
            .zip(&keys)
            .map(|(a, k)| {
                a.join().unwrap_or_else(|_| {
                    Finding::warn(&format!("tools.{k}"), "its check crashed", "")
                })
            })
            .collect()
    })
}

/// What the tool checks read.
struct Tools<'a> {
    host: &'a Host,
    needs: &'a PlanNeeds,
}

/// The first line of a tool's answer that reads like a version.
fn version_line(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter(|l| l.chars().any(|ch| ch.is_ascii_digit()))
        .find(|l| {
            let low = l.to_ascii_lowercase();
            !["usage", "invalid", "unrecognized", "error", "option"]
                .iter()
                .any(|w| low.contains(w))
        })
        .map(str::to_string)
}

/// A tool's version: its own `--version`, or for tools that have none, that of the library
/// they run on (fi_info beside fabtests, ucx_info beside ucx_perftest).
fn version(c: &Tools<'_>, key: &str, exe: &Path) -> Option<String> {
    let (helper, args): (&str, &[&str]) = match key {
        "fi_pingpong" | "fi_rma_pingpong" => ("fi_info", &["--version"]),
        "ucx_perftest" => ("ucx_info", &["-v"]),
        _ => return version_line(&run_briefly(c.host, exe, &["--version"], VERSION_LIMIT)?),
    };
    let beside = exe.with_file_name(helper);
    let helper = if beside.is_file() {
        beside
    } else {
        c.host.which(helper)?
    };
    let text = run_briefly(c.host, &helper, args, VERSION_LIMIT)?;
    let line = text
        .lines()
        .find(|l| l.contains("libfabric:") || l.contains("Library version"))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .or_else(|| version_line(&text))?;
    Some(format!("{line} ({})", helper.display()))
}

/// What to do about a missing tool.
fn install_hint(key: &str) -> &'static str {
    match key {
        "fi_pingpong" | "fi_rma_pingpong" => {
            "install libfabric's fabtests (the EFA installer has them)"
        }
        "nixlbench" => "build NIXL's nixlbench (benchmark/nixlbench)",
        "kvbench_dir" => "check out NIXL's benchmark/kvbench",
        "ucx_perftest" => "install UCX's tools (ucx_perftest)",
        "nixl_python" | "python" => "install Python with NIXL (scripts/setup.sh --test)",
        _ => "install it",
    }
}

fn tool(c: &Tools<'_>, key: &str) -> Finding {
    let check = format!("tools.{key}");
    let users = c.needs.ids(|n| n.tools.iter().any(|t| t == key));
    let missing = |what: String| {
        // Without NIXL's engine a pattern's twin rounds are skipped (the template's skip_if);
        // without any other tool its task definition fails.
        if matches!(key, "nixl_python" | "nixl_xfer") {
            return Finding::warn(
                &check,
                what,
                format!(
                    "the NIXL twin rounds of {} are skipped without it: {}",
                    list(&users, 3),
                    install_hint(key)
                ),
            )
            .about(users.clone());
        }
        Finding::fail(
            &check,
            what,
            format!(
                "{}, or set infrastructure.tools.{key}, or leave out {} (--pattern, --layer)",
                install_hint(key),
                list(&users, 3)
            ),
        )
        .about(users.clone())
    };
    let Some(path) = c.needs.tools.get(key) else {
        return missing(format!("the plan has no infrastructure.tools.{key}"));
    };
    if key == "kvbench_dir" {
        let dir = c.host.cwd.join(path);
        return if dir.join("main.py").is_file() {
            Finding::ok(&check, format!("{} (main.py found)", dir.display()))
        } else {
            missing(format!("{}: no main.py", dir.display()))
        };
    }
    if path.ends_with(".py") {
        let file = c.host.cwd.join(path);
        return if file.is_file() {
            Finding::ok(&check, format!("{}", file.display()))
        } else {
            missing(format!("{}: not found", file.display()))
        };
    }
    let Some(exe) = c.host.which(path) else {
        let whence = if path.contains('/') {
            "not found"
        } else {
            "not on PATH"
        };
        return missing(format!("{path}: {whence}"));
    };
    let v = version(c, key, &exe).unwrap_or_else(|| "version unknown".into());
    Finding::ok(&check, format!("{}: {v}", exe.display()))
}

#[cfg(test)]
mod tests {
    use super::version_line;

    #[test]
    fn version_lines_skip_usage_text() {
        assert_eq!(
            version_line("Python 3.11.7\n").as_deref(),
            Some("Python 3.11.7")
        );
        assert_eq!(
            version_line("fi_pingpong: invalid option -- '-'\nUsage:\n  fi_pingpong [OPTIONS] 2\n"),
            None
        );
        assert_eq!(
            version_line("# Version 1.13.1\n").as_deref(),
            Some("Version 1.13.1")
        );
    }
}
