//! Memory: the locked-memory limit against what the plan's largest pattern registers (size x
//! concurrency x sides on this node), free memory against the same, and huge pages.

use super::facts::HUGE_PROBE;
use super::{bytes, Ctx, Finding, PatternNeed};

pub(super) fn check(c: &Ctx<'_>) -> Vec<Finding> {
    vec![memlock(c), available(c), huge_pages(c)]
}

/// The soft RLIMIT_MEMLOCK of `<proc>/self/limits`: Some(None) when unlimited.
pub(crate) fn memlock_limit(c: &Ctx<'_>) -> Option<Option<u64>> {
    let text = c.host.proc("self/limits")?;
    let line = text.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..]
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

fn memlock(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "memory.memlock";
    let file = c.host.proc_path("self/limits");
    let Some(limit) = memlock_limit(c) else {
        return Finding::warn(
            CHECK,
            format!("no Max locked memory line in {}", file.display()),
            "`ulimit -l` tells the limit",
        );
    };
    let Some(limit) = limit else {
        return Finding::ok(CHECK, format!("unlimited ({})", file.display()));
    };
    let shown = format!("RLIMIT_MEMLOCK {} ({})", bytes(limit), file.display());
    let action = |need: u64| {
        format!(
            "raise it to at least {need} B, best unlimited: `ulimit -l unlimited`, or memlock in \
             /etc/security/limits.conf (the EFA installer sets it)"
        )
    };
    if !c.has_plan() {
        if c.wants_efa() || !super::efa::devices(c).is_empty() {
            return Finding::warn(
                CHECK,
                shown,
                "efa pins every registered byte and its own buffers: ulimit -l unlimited",
            );
        }
        return Finding::ok(CHECK, format!("{shown}; tcp, shm and UCX tcp pin nothing"));
    }
    let sides = c.needs.sides;
    match c.needs.largest(PatternNeed::pins) {
        None => Finding::ok(CHECK, format!("{shown}; no pattern pins host memory")),
        Some((p, need)) if need > limit => Finding::fail(
            CHECK,
            format!(
                "{shown}; {} registers {} ({} x {sides} side(s))",
                p.id,
                bytes(need),
                p.bytes
            ),
            action(need),
        )
        .about(c.ids(|n| n.pins() && n.bytes.saturating_mul(sides) > limit)),
        Some((p, need)) => {
            Finding::ok(CHECK, format!("{shown} covers {} of {}", bytes(need), p.id))
        }
    }
}

fn available(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "memory.available";
    let file = c.host.proc_path("meminfo");
    let Some(avail) = c
        .host
        .proc("meminfo")
        .and_then(|t| crate::mem::parse_mem_available(&t))
    else {
        return Finding::warn(
            CHECK,
            format!("no MemAvailable in {}", file.display()),
            "free -b tells it",
        );
    };
    let shown = format!("MemAvailable {} ({})", bytes(avail), file.display());
    let sides = c.needs.sides;
    match c.needs.largest(|n| !n.vram) {
        Some((p, need)) if need > avail => Finding::fail(
            CHECK,
            format!("{shown}; {} holds {} on this node", p.id, bytes(need)),
            "free memory on the node, or run the sides on different hosts",
        )
        .about(c.ids(|n| !n.vram && n.bytes.saturating_mul(sides) > avail)),
        Some((p, need)) => Finding::ok(CHECK, format!("{shown} holds {} of {}", bytes(need), p.id)),
        None => Finding::ok(CHECK, shown),
    }
}

fn huge_pages(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "memory.huge_pages";
    let thp_file = "kernel/mm/transparent_hugepage/enabled";
    let Some(text) = c.host.sys(thp_file) else {
        return Finding::skip(
            CHECK,
            format!(
                "no {}: the kernel has no transparent huge pages",
                c.host.sys_path(thp_file).display()
            ),
        );
    };
    let mode = bracketed(&text);
    let defrag = c
        .host
        .sys("kernel/mm/transparent_hugepage/defrag")
        .map_or("?".into(), |t| bracketed(&t));
    let reserved = c
        .host
        .proc("meminfo")
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("HugePages_Total:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into());
    let probe = match c.facts.huge_pages {
        Some(b) => format!(
            "a {} buffer asking for them got {} B in huge pages",
            crate::run::memory::approx(HUGE_PROBE as u64),
            b.huge_bytes
        ),
        None => "no probe (smaps unreadable)".into(),
    };
    let evidence = format!(
        "transparent huge pages {mode}, defrag {defrag} ({}); {probe}; {reserved} reserved huge \
         pages (meminfo)",
        c.host.sys_path(thp_file).display()
    );
    let fewer = "kvxfer's buffers from 2 MiB ask for huge pages (madvise): in 4 KiB pages they \
                 take 512x more entries to register";
    if mode == "never" {
        return Finding::warn(
            CHECK,
            evidence,
            format!("{fewer}; echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"),
        );
    }
    if c.facts.huge_pages.is_some_and(|b| b.huge_bytes == 0) {
        return Finding::warn(
            CHECK,
            evidence,
            format!(
                "{fewer}, and the kernel gave none: free memory is fragmented or defrag forbids \
                 compacting it; echo 1 > /proc/sys/vm/compact_memory, or echo madvise > \
                 /sys/kernel/mm/transparent_hugepage/defrag"
            ),
        );
    }
    Finding::ok(CHECK, evidence)
}

/// The word in brackets of a sysfs choice (`always [madvise] never` -> `madvise`), or the
/// whole text.
fn bracketed(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(|ch| ch == '[' || ch == ']').to_string())
        .unwrap_or_else(|| text.to_string())
}
