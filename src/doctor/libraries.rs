//! Libraries: libfabric's version and providers, the EFA fabrics it offers, UCX's version,
//! transports and memory types, and whether kvxfer's UCX is the one NIXL was built with.

use super::{Ctx, Finding, PatternNeed};

pub(super) fn check(c: &Ctx<'_>) -> Vec<Finding> {
    vec![
        providers(c),
        efa_fabrics(c),
        ucx(c),
        ucx_transports(c),
        ucx_nixl(c),
    ]
}

/// What to do about a missing libfabric provider.
fn provider_fix(p: &str) -> String {
    match p {
        "efa" => {
            "install the AWS EFA software (its libfabric has efa) and put /opt/amazon/efa/lib \
                  first in LD_LIBRARY_PATH"
                .into()
        }
        _ => {
            format!("use a libfabric built with the {p} provider (FI_PROVIDER must not exclude it)")
        }
    }
}

fn providers(c: &Ctx<'_>) -> Finding {
    let lf = &c.facts.libfabric;
    let evidence = format!(
        "libfabric {}; providers {} (fi_getinfo)",
        lf.version,
        if lf.providers.is_empty() {
            "none".to_string()
        } else {
            lf.providers.join(", ")
        }
    );
    let mut wanted: Vec<String> = c.o.provider.iter().cloned().collect();
    for n in &c.needs.patterns {
        wanted.extend(n.providers.iter().cloned());
    }
    wanted.sort();
    wanted.dedup();
    let missing: Vec<String> = wanted
        .into_iter()
        .filter(|p| !lf.providers.contains(p))
        .collect();
    let Some(first) = missing.first() else {
        return Finding::ok("libfabric.providers", evidence);
    };
    let ids = c.ids(|n| n.providers.iter().any(|p| missing.contains(p)));
    let f = Finding::fail(
        "libfabric.providers",
        format!("{evidence}: no {}", missing.join(", ")),
        provider_fix(first),
    );
    // A missing `--provider` concerns the node; one only patterns open concerns them.
    if c.o.provider.as_ref().is_some_and(|p| missing.contains(p)) {
        f
    } else {
        f.about_if(c, ids)
    }
}

fn efa_fabrics(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "libfabric.efa";
    let lf = &c.facts.libfabric;
    if !lf.providers.iter().any(|p| p == "efa") {
        let why = if c.wants_efa() {
            "no efa provider: see libfabric.providers".to_string()
        } else {
            format!(
                "no efa provider in libfabric {}: EFA fabrics do not apply{}",
                lf.version,
                c.o.provider
                    .as_ref()
                    .map(|p| format!(" (--provider {p})"))
                    .unwrap_or_default()
            )
        };
        return Finding::skip(CHECK, why);
    }
    let shown: Vec<String> = lf
        .efa
        .iter()
        .map(|o| {
            format!(
                "{}: FI_EP_RDM{}{} on {} domain(s)",
                o.fabric,
                if o.rma { ", FI_RMA" } else { ", no FI_RMA" },
                if o.hmem { ", FI_HMEM" } else { ", no FI_HMEM" },
                o.domains.len()
            )
        })
        .collect();
    let evidence = format!("{} (fi_getinfo -p efa -t FI_EP_RDM)", shown.join("; "));
    if lf.efa.is_empty() {
        return Finding::fail(
            CHECK,
            "the efa provider offers no RDM fabric (fi_getinfo -p efa -t FI_EP_RDM)",
            "check `fi_info -p efa -t FI_EP_RDM` and the EFA devices (efa.devices)",
        )
        .about_if(c, c.ids(PatternNeed::efa));
    }
    if !lf.efa.iter().any(|o| o.rma) {
        return Finding::fail(
            CHECK,
            evidence,
            "a libfabric whose efa offers FI_RMA (the EFA installer's)",
        )
        .about_if(c, c.ids(|n| n.efa() && !n.tool.contains("pingpong")));
    }
    let gpu = c.ids(|n| n.efa() && n.vram);
    if !lf.efa.iter().any(|o| o.hmem) && (!gpu.is_empty() || !c.has_plan()) {
        return Finding::fail(
            CHECK,
            evidence,
            "libfabric without FI_HMEM cannot register GPU memory: use the EFA installer's \
             libfabric (built with CUDA)",
        )
        .about_if(c, gpu);
    }
    Finding::ok(CHECK, evidence)
}

fn ucx(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "ucx.version";
    let users = c.ids(|n| n.ucx.is_some());
    match &c.facts.ucx {
        Ok(u) => {
            let lacks = crate::ucx::version_lacks(&u.version);
            let evidence = format!(
                "UCX {} from {}; memory types host{} (ucp_context_query)",
                u.version,
                u.library.as_deref().unwrap_or("an unknown file"),
                if u.cuda { ", cuda" } else { "" }
            );
            let gpu = c.ids(|n| n.ucx.is_some() && n.vram);
            if !u.cuda && !gpu.is_empty() {
                return Finding::fail(
                    CHECK,
                    evidence,
                    "UCX without CUDA memory cannot move VRAM: use a UCX built with CUDA (the \
                     libucx-cu12 wheel, or NIXL's)",
                )
                .about(gpu);
            }
            match lacks.first() {
                Some(l) if !users.is_empty() || !c.has_plan() => Finding::warn(
                    CHECK,
                    evidence,
                    format!("UCX 1.18 or later: this one lacks {l}"),
                )
                .about_if(c, users),
                _ => Finding::ok(CHECK, evidence),
            }
        }
        Err(e) if users.is_empty() => Finding::warn(
            CHECK,
            format!("no UCX context (ucp_init): {e}"),
            "no pattern uses UCX; `kvxfer info --ucx` says more",
        ),
        Err(e) => Finding::fail(
            CHECK,
            format!("no UCX context (ucp_init): {e}"),
            "fix UCX_TLS / UCX_NET_DEVICES or the UCX install (`kvxfer info --ucx`)",
        )
        .about(users),
    }
}

/// The transports a UCX_TLS name stands for, as resources are named (`rc` covers `rc_verbs`).
fn offers(transports: &[String], want: &str) -> bool {
    let any = |names: &[&str]| transports.iter().any(|t| names.contains(&t.as_str()));
    match want {
        "all" => true,
        w if w.starts_with('^') => true,
        "sm" | "shm" | "mm" => any(&["posix", "sysv", "cma", "knem", "xpmem"]),
        "cuda" => any(&["cuda_copy", "cuda_ipc", "gdr_copy"]),
        "ib" => transports
            .iter()
            .any(|t| ["rc", "ud", "dc"].iter().any(|p| t.starts_with(p))),
        w => transports
            .iter()
            .any(|t| t == w || t.strip_prefix(w).is_some_and(|r| r.starts_with('_'))),
    }
}

fn ucx_transports(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "ucx.transports";
    let Ok(u) = &c.facts.ucx else {
        return Finding::skip(CHECK, "no UCX context: see ucx.version");
    };
    let filter = ["UCX_TLS", "UCX_NET_DEVICES"]
        .iter()
        .filter_map(|k| c.host.var(k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>();
    let evidence = format!(
        "{} (ucp_context_print_info{})",
        if u.transports.is_empty() {
            "none".to_string()
        } else {
            u.transports.join(", ")
        },
        if filter.is_empty() {
            String::new()
        } else {
            format!(", {}", filter.join(" "))
        }
    );
    let mut missing: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    for n in &c.needs.patterns {
        let Some(want) = &n.ucx else { continue };
        let lacking: Vec<&String> = want.iter().filter(|w| !offers(&u.transports, w)).collect();
        if !lacking.is_empty() {
            ids.push(n.id.clone());
            missing.extend(lacking.into_iter().cloned());
        }
    }
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Finding::ok(CHECK, evidence);
    }
    let fix = if missing.iter().any(|m| m == "srd") {
        "a UCX built with EFA support (srd: `ucx_info -d` lists it), or the spec's fallback \
         UCX_TLS=tcp"
    } else {
        "a UCX that offers them (`ucx_info -d`), or other UCX_TLS"
    };
    Finding::fail(CHECK, format!("{evidence}: no {}", missing.join(", ")), fix).about(ids)
}

fn ucx_nixl(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "ucx.nixl";
    let nixl = c.ids(|n| {
        matches!(n.tool.as_str(), "nixlbench" | "kvbench")
            || n.tools.iter().any(|t| t == "nixl_python")
    });
    let Ok(u) = &c.facts.ucx else {
        return Finding::skip(CHECK, "no UCX context: see ucx.version");
    };
    let Some(dir) = c.host.var("UCX_DIR") else {
        if nixl.is_empty() {
            return Finding::skip(CHECK, "UCX_DIR unset, and no pattern uses NIXL");
        }
        return Finding::warn(
            CHECK,
            "UCX_DIR unset: NIXL's UCX is unknown",
            "export UCX_DIR=<the UCX prefix NIXL was built with>, so both sides of the \
             cross-check are known to run one UCX",
        )
        .about(nixl);
    };
    let canon = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| p.into());
    let lib = u.library.as_deref().map(canon);
    let evidence = format!(
        "UCX_DIR={dir}; kvxfer loads {}",
        u.library.as_deref().unwrap_or("an unknown libucp")
    );
    if lib.as_ref().is_some_and(|l| l.starts_with(canon(dir))) {
        return Finding::ok(CHECK, evidence);
    }
    Finding::warn(
        CHECK,
        evidence,
        format!(
            "NIXL's UCX is not the one kvxfer runs: LD_LIBRARY_PATH={dir}/lib (or build kvxfer \
             against it) so the cross-check compares one UCX"
        ),
    )
    .about_if(c, nixl)
}

#[cfg(test)]
mod tests {
    use super::offers;

    #[test]
    fn ucx_tls_names_match_resources_by_family() {
        let t: Vec<String> = ["cma", "posix", "rc_verbs", "self", "srd", "sysv", "tcp"]
            .map(String::from)
            .to_vec();
        for ok in ["tcp", "srd", "rc", "sm", "ib", "all", "^tcp", "self"] {
            assert!(offers(&t, ok), "{ok}");
        }
        for no in ["cuda", "cuda_copy", "ud", "dc", "rc_mlx5", "tc"] {
            assert!(!offers(&t, no), "{no}");
        }
    }
}
