//! etcd: reachable and healthy at `--etcd` (or the plan's), its version; when it is not, the
//! plan's own start command.

use std::time::Instant;

use serde_json::Value;

use super::{Ctx, DoctorOptions, Finding, PlanNeeds, PROBE_TIMEOUT};

/// What asking etcd gave.
#[derive(Debug, Clone)]
pub(crate) struct EtcdProbe {
    /// The client URL asked.
    pub url: String,
    /// Given with `--etcd` (else the plan's).
    pub explicit: bool,
    /// Its version (`/version`'s etcdserver), or why it did not answer healthy.
    pub outcome: Result<String, String>,
}

/// The etcd to ask: `--etcd`, else the plan's port on the peer (or this host) when a pattern
/// meets through etcd.
fn target(o: &DoctorOptions, needs: &PlanNeeds) -> Option<(String, bool)> {
    if let Some(u) = &o.etcd {
        return Some((u.trim_end_matches('/').to_string(), true));
    }
    if !needs.patterns.iter().any(|p| p.etcd) {
        return None;
    }
    let host = o
        .peer
        .as_deref()
        .map(|p| super::peer::host_part(p).to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    Some((
        format!("http://{host}:{}", needs.etcd_port.unwrap_or(2379)),
        false,
    ))
}

/// GET `url` within `deadline`: the body as JSON.
fn get_json(agent: &ureq::Agent, url: &str, deadline: Instant) -> Result<Value, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!(
            "no answer within {:.1} s",
            PROBE_TIMEOUT.as_secs_f64()
        ));
    }
    let mut answer = agent
        .get(url)
        .config()
        .timeout_global(Some(left))
        .build()
        .call()
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    let text = answer
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {}", text.trim()))
}

/// Asks the etcd of `o` (None when there is none to ask) for its health and version, within
/// [`PROBE_TIMEOUT`] in all.
pub(crate) fn probe(o: &DoctorOptions, needs: &PlanNeeds) -> Option<EtcdProbe> {
    let (url, explicit) = target(o, needs)?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(PROBE_TIMEOUT))
        .build()
        .new_agent();
    let outcome = get_json(&agent, &format!("{url}/health"), deadline).and_then(|h| {
        if h["health"].as_str() != Some("true") {
            return Err(format!("unhealthy: {h}"));
        }
        let v = get_json(&agent, &format!("{url}/version"), deadline)?;
        Ok(v["etcdserver"]
            .as_str()
            .unwrap_or("of unknown version")
            .to_string())
    });
    Some(EtcdProbe {
        url,
        explicit,
        outcome,
    })
}

/// The plan's own start command (the `start-etcd` task of `_macros.jinja2`), its waiting
/// loops left out.
fn plan_start_command(c: &Ctx<'_>) -> Option<String> {
    let plan = c.o.plan.as_ref()?;
    let env = crate::plan::render::environment(c.o.templates.as_deref()?).ok()?;
    let text = env
        .render_str(
            "{% import \"_macros.jinja2\" as m %}{{ m.etcd(plan) }}",
            minijinja::context! { plan => minijinja::Value::from_serialize(plan) },
        )
        .ok()?;
    let task: Value = serde_json::from_str(&text).ok()?;
    let cmds: Vec<&str> = task["commands"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter(|c| !c.starts_with("for ") && !c.starts_with("curl "))
        .collect();
    (!cmds.is_empty()).then(|| cmds.join("; "))
}

/// How to start etcd: the plan's command, else etcd on the URL's port.
fn start_command(c: &Ctx<'_>, url: &str) -> String {
    plan_start_command(c).unwrap_or_else(|| {
        let port = url.rsplit(':').next().unwrap_or("2379");
        format!(
            "etcd --listen-client-urls http://0.0.0.0:{port} --advertise-client-urls \
             http://0.0.0.0:{port}"
        )
    })
}

/// What the plan starts etcd with is there: docker for a container, else the binary.
fn starter_missing(c: &Ctx<'_>) -> Option<String> {
    let plan = c.o.plan.as_ref()?;
    let e = plan.pointer("/infrastructure/etcd")?;
    let prog = if e["mode"].as_str() == Some("container") {
        "docker"
    } else {
        e["binary"].as_str().unwrap_or("etcd")
    };
    c.host
        .which(prog)
        .is_none()
        .then(|| format!("{prog} is not on PATH"))
}

pub(super) fn judge(c: &Ctx<'_>, probe: Option<EtcdProbe>) -> Finding {
    const CHECK: &str = "etcd";
    let Some(p) = probe else {
        return Finding::skip(CHECK, "no --etcd, and no pattern meets through etcd");
    };
    let users = c.ids(|n| n.etcd);
    let error = match p.outcome {
        Ok(version) => {
            return Finding::ok(
                CHECK,
                format!(
                    "etcd {version} healthy at {} (GET /health, /version)",
                    p.url
                ),
            )
        }
        Err(e) => e,
    };
    let evidence = format!("{}: {error} (GET /health)", p.url);
    let start = start_command(c, &p.url);
    if let Some(why) = starter_missing(c) {
        return Finding::fail(
            CHECK,
            format!("{evidence}; the plan cannot start it: {why}"),
            format!("install it, then start etcd: {start}"),
        )
        .about_if(c, users);
    }
    if p.explicit {
        return Finding::fail(CHECK, evidence, format!("start it: {start}")).about_if(c, users);
    }
    Finding::warn(
        CHECK,
        format!("{evidence}; not running yet"),
        format!("the plan's start-etcd task starts it before its first etcd pattern: {start}"),
    )
    .about(users)
}
