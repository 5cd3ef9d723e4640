//! Opening a connected pair of endpoints: provider selection with explicit addresses, then the
//! RDM (address vector) or MSG (connection manager) handshake through an out-of-band exchange.

use std::net::IpAddr;
use std::time::Duration;

use super::cq::{AddressVector, CmEvent, CompletionQueue, EventQueue};
use super::domain::{Domain, Fabric};
use super::endpoint::{bind, Endpoint, FiAddr, PassiveEndpoint};
use super::error::{FabricError, Result};
use super::info::{available_providers, mr_mode, EndpointType, Hints, Info, InfoList};
use super::peer_name::PeerName;
use crate::peer::{Exchange, Side};

/// What endpoint to open.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// Provider name (`tcp`, `shm`, `udp`, `efa`, ...).
    pub provider: String,
    /// RDM or MSG.
    pub ep_type: EndpointType,
    /// Capabilities (`caps::*`).
    pub caps: u64,
    /// Local IP to bind, for providers addressed by IP; the loopback unless told otherwise.
    pub local_ip: Option<IpAddr>,
    /// Domain name to select (`lo`, `eth0`, `rdmap0s6-rdm`).
    pub domain: Option<String>,
    /// How long connection set-up may take.
    pub timeout: Duration,
}

/// Finds the provider entry for a spec: the requested domain, or the entry bound to the
/// requested IP; never a default outward interface picked silently.
pub fn select_info(spec: &EndpointSpec) -> Result<Info> {
    let base = Hints {
        provider: Some(spec.provider.clone()),
        ep_type: Some(spec.ep_type),
        caps: spec.caps,
        mr_mode: mr_mode::LOCAL | mr_mode::BASIC_MAP,
        domain: spec.domain.clone(),
        thread_domain: true,
        ..Default::default()
    };
    let any = InfoList::query(&base)?;
    let first = any.iter().next().ok_or_else(|| FabricError::NoMatch {
        what: format!(
            "provider {:?} with endpoint {} and the capabilities asked for",
            spec.provider,
            spec.ep_type.fi_name()
        ),
        available: providers_offered(),
    })?;
    // A named domain the provider does not offer is refused (some providers answer a domain
    // hint they cannot match with their other domains).
    if let Some(d) = &spec.domain {
        if !any.iter().any(|e| &e.domain_name() == d) {
            return Err(FabricError::NoDomain {
                provider: spec.provider.clone(),
                domain: d.clone(),
                offered: domains_offered(spec)?.join(", "),
            });
        }
    }
    // Providers without IP addresses (shm) take the first entry.
    if first.src_addr().is_none() {
        return first.to_owned();
    }
    // A named domain: its entry on the control connection's address family and address when
    // it has one (lo offers 127.0.0.1 and ::1), else its first. Providers that list every
    // interface whatever the hints name (tcp;ofi_rxm) are held to the named one's entries.
    if let Some(d) = &spec.domain {
        let want = spec.local_ip;
        let named = || any.iter().filter(|e| &e.domain_name() == d);
        return named()
            .find(|e| e.src_addr().map(|a| a.ip()) == want)
            .or_else(|| {
                named().find(|e| e.src_addr().map(|a| a.is_ipv4()) == want.map(|w| w.is_ipv4()))
            })
            .or_else(|| named().next())
            .unwrap_or(first)
            .to_owned();
    }
    let ip = spec
        .local_ip
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let bound = InfoList::query(&Hints {
        node: Some(ip.to_string()),
        source: true,
        ..base.clone()
    })?;
    let entry = bound
        .iter()
        .find(|e| e.src_addr().map(|a| a.ip()) == Some(ip));
    match entry {
        Some(e) => e.to_owned(),
        None => Err(FabricError::NoMatch {
            what: format!(
                "provider {:?} ({}) on local address {ip}",
                spec.provider,
                spec.ep_type.fi_name()
            ),
            available: domains_and_addresses(&any),
        }),
    }
}

/// Each entry of `list` as `DOMAIN on ADDRESS`, comma-separated: what a refusal offers.
fn domains_and_addresses(list: &InfoList) -> String {
    list.iter()
        .map(|e| {
            format!(
                "{} on {}",
                e.domain_name(),
                e.src_addr().map(|a| a.ip().to_string()).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distinct domains `spec`'s provider offers for its endpoint type and capabilities, in
/// the provider's order (every NIC it would use for host memory).
pub fn domains_offered(spec: &EndpointSpec) -> Result<Vec<String>> {
    let hints = Hints {
        provider: Some(spec.provider.clone()),
        ep_type: Some(spec.ep_type),
        caps: spec.caps,
        mr_mode: mr_mode::LOCAL | mr_mode::BASIC_MAP,
        thread_domain: true,
        ..Default::default()
    };
    let mut out: Vec<String> = Vec::new();
    for e in InfoList::query(&hints)?.iter() {
        let d = e.domain_name();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// An endpoint connected to one peer, with its queues and the objects it depends on.
pub struct Connection {
    /// The endpoint (declared first: it is closed before what it is bound to).
    pub ep: Endpoint,
    /// Transmit completions.
    pub txcq: CompletionQueue,
    /// Receive completions (and remote CQ data).
    pub rxcq: CompletionQueue,
    /// The peer's address (FI_ADDR_UNSPEC on MSG endpoints).
    pub peer: FiAddr,
    /// The domain, for memory registration.
    pub domain: Domain,
    /// The provider entry the endpoint was opened from.
    pub info: Info,
    _av: Option<AddressVector>,
    _eq: Option<EventQueue>,
    _pep: Option<PassiveEndpoint>,
    _fabric: Fabric,
}

fn exchanged(r: std::result::Result<Vec<u8>, String>) -> Result<Vec<u8>> {
    r.map_err(|e| FabricError::Invalid(format!("exchanging endpoint addresses: {e}")))
}

/// Opens an endpoint and connects it to the peer, using `exchange` for addresses.
///
/// The peer must not send before both sides have posted their receives: callers synchronise
/// out of band after this returns.
pub fn connect(spec: &EndpointSpec, side: Side, exchange: &mut Exchange<'_>) -> Result<Connection> {
    let info = select_info(spec)?;
    match spec.ep_type {
        EndpointType::Rdm => connect_rdm(info, exchange),
        EndpointType::Msg => connect_msg(spec, info, side, exchange),
    }
}

fn connect_rdm(info: Info, exchange: &mut Exchange<'_>) -> Result<Connection> {
    let fabric = Fabric::open(&info)?;
    let domain = Domain::open(&fabric, &info)?;
    let txcq = CompletionQueue::open(&domain, 0)?;
    let rxcq = CompletionQueue::open(&domain, 0)?;
    let av = AddressVector::open(&domain)?;
    let mut ep = Endpoint::open(&domain, &info)?;
    ep.bind_av(&av)?;
    ep.bind_cq(&txcq, bind::TRANSMIT)?;
    ep.bind_cq(&rxcq, bind::RECV)?;
    let ep = ep.enable()?;
    let ours = ep.name()?;
    let peer_name = PeerName::check(&info, Some(&ours), exchanged(exchange(&ours))?)?;
    let peer = av.insert(&peer_name)?;
    Ok(Connection {
        ep,
        txcq,
        rxcq,
        peer,
        domain,
        info,
        _av: Some(av),
        _eq: None,
        _pep: None,
        _fabric: fabric,
    })
}

fn connect_msg(
    spec: &EndpointSpec,
    info: Info,
    side: Side,
    exchange: &mut Exchange<'_>,
) -> Result<Connection> {
    let fabric = Fabric::open(&info)?;
    let eq = EventQueue::open(&fabric)?;
    let (ep_info, pep) = match side {
        Side::Target => {
            let pep = PassiveEndpoint::listen(&fabric, &info, &eq)?;
            exchanged(exchange(&pep.name()?))?;
            match eq.wait(spec.timeout)? {
                CmEvent::ConnReq(req) => (req, Some(pep)),
                _ => {
                    return Err(FabricError::Invalid(
                        "unexpected event while waiting for the connection request".into(),
                    ))
                }
            }
        }
        Side::Initiator => (info, None),
    };
    let domain = Domain::open(&fabric, &ep_info)?;
    let txcq = CompletionQueue::open(&domain, 0)?;
    let rxcq = CompletionQueue::open(&domain, 0)?;
    let mut ep = Endpoint::open(&domain, &ep_info)?;
    ep.bind_eq(&eq)?;
    ep.bind_cq(&txcq, bind::TRANSMIT)?;
    ep.bind_cq(&rxcq, bind::RECV)?;
    let ep = ep.enable()?;
    let conn = Connection {
        ep,
        txcq,
        rxcq,
        peer: super::addr_unspec(),
        domain,
        info: ep_info,
        _av: None,
        _eq: None,
        _pep: pep,
        _fabric: fabric,
    };
    match side {
        Side::Target => conn.ep.accept()?,
        Side::Initiator => {
            let pep_name = PeerName::check(&conn.info, None, exchanged(exchange(&[]))?)?;
            conn.ep.connect(&pep_name)?;
        }
    }
    match eq.wait(spec.timeout)? {
        CmEvent::Connected => {}
        _ => {
            return Err(FabricError::Invalid(
                "the peer refused or closed the connection".into(),
            ))
        }
    }
    Ok(Connection {
        _eq: Some(eq),
        ..conn
    })
}

/// The providers libfabric offers, naming FI_PROVIDER when it narrows them.
fn providers_offered() -> String {
    let names = available_providers();
    let list = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    match std::env::var("FI_PROVIDER") {
        Ok(v) => format!(
            "{list}, as FI_PROVIDER={v:?} in the environment limits libfabric to the providers \
             it names: unset it or name an installed provider"
        ),
        Err(_) => list,
    }
}
