//! The peer: reachable on the control port, and the kvxfer listening there of the same version
//! and build features as this one (asked with the control channel's version query).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{DoctorOptions, Finding, PlanNeeds, PROBE_TIMEOUT};
use crate::bootstrap::{query_about, About, BootstrapError, DEFAULT_PORT};

/// What probing the peer gave.
#[derive(Debug)]
pub(crate) struct PeerProbe {
    /// `HOST:PORT` as asked.
    pub target: String,
    /// The address it resolved to.
    pub addr: Option<SocketAddr>,
    /// What happened.
    pub outcome: Outcome,
}

/// How the peer answered.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The name did not resolve (in time).
    Unresolved(String),
    /// Nothing answered within the time-out: dropped on the way.
    Silent(String),
    /// The host answered, nobody listens on the port.
    Refused,
    /// Something listens but did not answer the version query.
    NotKvxfer(String),
    /// A kvxfer answered.
    Kvxfer(About),
}

/// `HOST` of `HOST`, `HOST:PORT` or `[V6]:PORT`.
pub(crate) fn host_part(peer: &str) -> &str {
    if let Some(rest) = peer.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match peer.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.parse::<u16>().is_ok() => h,
        _ => peer,
    }
}

/// `HOST:PORT`, the port defaulting to the plan's control port, else kvxfer's.
fn target(peer: &str, needs: &PlanNeeds) -> String {
    let host = host_part(peer);
    if host != peer {
        return peer.to_string();
    }
    let port = needs.control_port.unwrap_or(DEFAULT_PORT);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `target` in a thread, waiting at most until `deadline`.
fn resolve(target: &str, deadline: Instant) -> Result<SocketAddr, String> {
    let (tx, rx) = mpsc::channel();
    let name = target.to_string();
    std::thread::spawn(move || {
        let got = name
            .to_socket_addrs()
            .map(|mut a| a.next())
            .map_err(|e| e.to_string());
        let _ = tx.send(got);
    });
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(Some(a))) => Ok(a),
        Ok(Ok(None)) => Err("no address".into()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer from the resolver within {:.1} s",
            PROBE_TIMEOUT.as_secs_f64()
        )),
    }
}

/// Probes the peer of `o` (None without one) within [`PROBE_TIMEOUT`] in all.
pub(crate) fn probe(o: &DoctorOptions, needs: &PlanNeeds) -> Option<PeerProbe> {
    let target = target(o.peer.as_deref()?, needs);
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let addr = match resolve(&target, deadline) {
        Ok(a) => a,
        Err(e) => {
            return Some(PeerProbe {
                target,
                addr: None,
                outcome: Outcome::Unresolved(e),
            })
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let outcome = match query_about(addr, left.max(Duration::from_millis(1))) {
        Ok(about) => Outcome::Kvxfer(about),
        Err(BootstrapError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Outcome::Refused
        }
        Err(BootstrapError::Io(e)) => Outcome::Silent(e.to_string()),
        Err(e) => Outcome::NotKvxfer(e.to_string()),
    };
    Some(PeerProbe {
        target,
        addr: Some(addr),
        outcome,
    })
}

/// The peer's address, for the route to it.
pub(crate) fn address(p: &Option<PeerProbe>) -> Option<IpAddr> {
    p.as_ref()?.addr.map(|a| a.ip())
}

pub(super) fn judge(probe: &Option<PeerProbe>) -> Finding {
    const CHECK: &str = "peer";
    let Some(p) = probe else {
        return Finding::skip(
            CHECK,
            "no --peer: one host, or this is the side that listens",
        );
    };
    let secs = PROBE_TIMEOUT.as_secs_f64();
    let t = &p.target;
    match &p.outcome {
        Outcome::Unresolved(e) => Finding::fail(
            CHECK,
            format!("{t}: cannot resolve ({e})"),
            "give the peer's address (PEER_IP) as an IP or a name this host resolves",
        ),
        Outcome::Silent(e) => Finding::fail(
            CHECK,
            format!("{t}: no answer within {secs:.1} s ({e})"),
            "a firewall or security group drops it: allow TCP on the control and reference ports \
             (for EFA, all traffic within the security group)",
        ),
        Outcome::Refused => Finding::warn(
            CHECK,
            format!("{t}: the host answers, nothing listens on the port (connection refused)"),
            "start the server side first (kvxfer run --role server); its kvxfer version is \
             checked once it listens",
        ),
        Outcome::NotKvxfer(e) => Finding::warn(
            CHECK,
            format!("{t}: something listens but answers no version query within {secs:.1} s ({e})"),
            "a kvxfer still setting up (check again), an older kvxfer without the query, or \
             another program holds the port: compare the peer's `kvxfer --version`",
        ),
        Outcome::Kvxfer(a) => judge_about(t, a),
    }
}

/// The peer's kvxfer against this one.
fn judge_about(t: &str, peer: &About) -> Finding {
    const CHECK: &str = "peer";
    let me = About::this();
    let shown = |a: &About| {
        format!(
            "kvxfer {} ({}){}",
            a.kvxfer,
            a.git_sha,
            if a.features.is_empty() {
                String::new()
            } else {
                format!(" [{}]", a.features.join(","))
            }
        )
    };
    let evidence = format!("{t}: {}; here {}", shown(peer), shown(&me));
    if peer.kvxfer != me.kvxfer || peer.proto != me.proto || peer.features != me.features {
        return Finding::fail(
            CHECK,
            evidence,
            "install the same kvxfer build on both nodes (same version and features)",
        );
    }
    if peer.git_sha != me.git_sha {
        return Finding::warn(
            CHECK,
            evidence,
            "the same version from different commits: build both from one commit",
        );
    }
    Finding::ok(CHECK, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_get_the_plans_control_port_unless_they_name_one() {
        let needs = PlanNeeds {
            control_port: Some(47590),
            ..PlanNeeds::default()
        };
        assert_eq!(target("node1", &needs), "node1:47590");
        assert_eq!(target("10.0.0.2:5000", &needs), "10.0.0.2:5000");
        assert_eq!(target("fe80::1", &needs), "[fe80::1]:47590");
        assert_eq!(target("[fe80::1]:7", &needs), "[fe80::1]:7");
        assert_eq!(host_part("10.0.0.2:5000"), "10.0.0.2");
        assert_eq!(host_part("node1"), "node1");
        assert_eq!(host_part("[fe80::1]:7"), "fe80::1");
    }
}
