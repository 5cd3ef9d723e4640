//! Multi-rail libfabric ends: one endpoint and CQ pair per rail, the memory registered on
//! each, chunks of a transfer of at least the stripe threshold spread evenly across the rails
//! by their place in the transfer, smaller transfers' chunks round robin; the target counts
//! completions from every rail and confirms on the first.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::libfabric::{FabricInitiator, FabricTarget};
use super::{
    InitiatorEnd, Library, RegionOffer, SetupTimes, TargetEnd, TargetEvent, XferError,
    XferInitiator, XferOp, XferTarget,
};
use crate::fabric::EndpointSpec;
use crate::mem::SharedRegion;
use crate::peer::Exchange;

/// What one rail carried over the timed iterations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailStats {
    /// Rail index (the order of `--rails`).
    pub rail: usize,
    /// The rail's domain or local address.
    pub via: String,
    /// Bytes posted on the rail.
    pub bytes: u64,
    /// Chunks posted on the rail.
    pub chunks: u64,
    /// Sum over iterations of the rail's first post to its last local completion, ns.
    pub busy_ns: u64,
}

impl RailStats {
    /// Adds `other`'s counts to these (same rail).
    pub fn add(&mut self, other: &RailStats) {
        self.bytes += other.bytes;
        self.chunks += other.chunks;
        self.busy_ns += other.busy_ns;
    }
}

/// Adds `now` to `total` rail by rail (`total` starts as a copy of the first).
pub fn sum_rails(total: &mut Option<Vec<RailStats>>, now: &[RailStats]) {
    match total {
        Some(t) => t.iter_mut().zip(now).for_each(|(a, b)| a.add(b)),
        None => *total = Some(now.to_vec()),
    }
}

/// The rail a chunk goes on: by its place in the transfer when the transfer is at least the
/// threshold (even split), else the next in turn.
pub fn rail_of(offset: usize, size: usize, threshold: usize, rails: usize, turn: usize) -> usize {
    if rails <= 1 {
        return 0;
    }
    if size >= threshold && size > 0 {
        ((offset as u128 * rails as u128 / size as u128) as usize).min(rails - 1)
    } else {
        turn % rails
    }
}

/// A rail's label in results: its domain, else its local address.
pub fn rail_label(spec: &EndpointSpec) -> String {
    match (&spec.domain, spec.local_ip) {
        (Some(d), Some(ip)) => format!("{d} ({ip})"),
        (Some(d), None) => d.clone(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "default".into(),
    }
}

/// Counters of one rail in the current iteration.
#[derive(Default)]
struct Counters {
    bytes: u64,
    chunks: u64,
    first_post: Option<Instant>,
    last_done: Option<Instant>,
}

/// An initiator striping over several libfabric rails.
pub struct RailedInitiator {
    rails: Vec<FabricInitiator>,
    labels: Vec<String>,
    size: usize,
    threshold: usize,
    turn: usize,
    counters: Vec<Counters>,
}

/// Sums `b` into `a`.
fn add_setup(a: &mut SetupTimes, b: SetupTimes) {
    a.connect_ns += b.connect_ns;
    a.registration_first_ns += b.registration_first_ns;
    a.registration_cached_ns += b.registration_cached_ns;
    a.registration = a.registration.or(b.registration);
}

impl RailedInitiator {
    /// Connects one endpoint per spec and registers `local` on each; set-up times are summed
    /// over the rails.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        specs: &[EndpointSpec],
        exchange: &mut Exchange<'_>,
        local: SharedRegion,
        transfers: usize,
        size: usize,
        op: XferOp,
        timeout: Duration,
        threshold: usize,
    ) -> Result<(RailedInitiator, SetupTimes), XferError> {
        if specs.is_empty() || op == XferOp::Send {
            return Err(XferError::Offer(
                "striping needs at least one rail and an RMA operation (write or read)".into(),
            ));
        }
        let mut rails = Vec::with_capacity(specs.len());
        let mut setup = SetupTimes::default();
        for spec in specs {
            let (end, t) = FabricInitiator::connect(
                spec,
                exchange,
                local.rail_view(),
                transfers,
                size,
                op,
                timeout,
            )?;
            add_setup(&mut setup, t);
            rails.push(end);
        }
        let counters = specs.iter().map(|_| Counters::default()).collect();
        Ok((
            RailedInitiator {
                rails,
                labels: specs.iter().map(rail_label).collect(),
                size,
                threshold,
                turn: 0,
                counters,
            },
            setup,
        ))
    }
}

impl XferInitiator for RailedInitiator {
    fn post(&mut self, tr: u32, c: u32, off: usize, len: usize) -> Result<bool, XferError> {
        let r = rail_of(off, self.size, self.threshold, self.rails.len(), self.turn);
        let ok = self.rails[r].post(tr, c, off, len)?;
        if ok {
            self.turn = self.turn.wrapping_add(1);
            let k = &mut self.counters[r];
            k.bytes += len as u64;
            k.chunks += 1;
            k.first_post.get_or_insert_with(Instant::now);
        }
        Ok(ok)
    }
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), XferError> {
        for (rail, k) in self.rails.iter_mut().zip(&mut self.counters) {
            let before = done.len();
            rail.poll(done)?;
            if done.len() > before {
                k.last_done = Some(Instant::now());
            }
        }
        Ok(())
    }
    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), XferError> {
        self.rails[0].notify(tr, chunks)
    }
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), XferError> {
        self.rails[0].poll_confirmed(out)
    }
}

impl InitiatorEnd for RailedInitiator {
    fn set_remote(&mut self, offer: RegionOffer) -> Result<(), XferError> {
        let per_rail = match offer {
            RegionOffer::LibfabricRails(v) if v.len() == self.rails.len() => v,
            other => {
                return Err(XferError::Offer(format!(
                    "a {}-rail initiator got {}",
                    self.rails.len(),
                    offer_name(&other)
                )))
            }
        };
        for (rail, regions) in self.rails.iter_mut().zip(per_rail) {
            rail.set_remote(RegionOffer::Libfabric(regions))?;
        }
        Ok(())
    }
    fn local_mut(&mut self) -> Option<&mut SharedRegion> {
        // Every rail's handle reaches the same bytes: all must be idle.
        for rail in &mut self.rails[1..] {
            rail.local_mut()?;
        }
        self.rails[0].local_mut()
    }
    fn drain(&mut self) -> Result<(), XferError> {
        // The iteration reaped every chunk; what is left is control traffic.
        for rail in &mut self.rails {
            rail.drain()?;
        }
        Ok(())
    }
    fn library(&self) -> Library<'_> {
        self.rails[0].library()
    }
    fn take_rail_stats(&mut self) -> Option<Vec<RailStats>> {
        Some(
            self.counters
                .iter_mut()
                .enumerate()
                .map(|(i, k)| {
                    let k = std::mem::take(k);
                    let busy = match (k.first_post, k.last_done) {
                        (Some(a), Some(b)) => b.saturating_duration_since(a).as_nanos() as u64,
                        _ => 0,
                    };
                    RailStats {
                        rail: i,
                        via: self.labels[i].clone(),
                        bytes: k.bytes,
                        chunks: k.chunks,
                        busy_ns: busy,
                    }
                })
                .collect(),
        )
    }
}

fn offer_name(o: &RegionOffer) -> String {
    match o {
        RegionOffer::Libfabric(_) => "a one-rail libfabric offer".into(),
        RegionOffer::LibfabricRails(v) => format!("a {}-rail offer", v.len()),
        RegionOffer::Ucx(_) => "a UCX offer".into(),
    }
}

/// A target reached over several libfabric rails, its regions registered on each.
pub struct RailedTarget {
    rails: Vec<FabricTarget>,
}

impl RailedTarget {
    /// Connects one endpoint per spec and registers `regions` on each.
    pub fn connect(
        specs: &[EndpointSpec],
        exchange: &mut Exchange<'_>,
        regions: Vec<SharedRegion>,
        timeout: Duration,
    ) -> Result<(RailedTarget, SetupTimes), XferError> {
        let mut rails = Vec::with_capacity(specs.len());
        let mut setup = SetupTimes::default();
        for spec in specs {
            let views = regions.iter().map(SharedRegion::rail_view).collect();
            let (end, t) = FabricTarget::connect(spec, exchange, views, timeout)?;
            add_setup(&mut setup, t);
            rails.push(end);
        }
        if rails.is_empty() {
            return Err(XferError::Offer("striping needs at least one rail".into()));
        }
        Ok((RailedTarget { rails }, setup))
    }
}

impl XferTarget for RailedTarget {
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), XferError> {
        for rail in &mut self.rails {
            rail.poll(out)?;
        }
        Ok(())
    }
    fn confirm(&mut self, tr: u32) -> Result<(), XferError> {
        self.rails[0].confirm(tr)
    }
}

impl TargetEnd for RailedTarget {
    fn offer(&self) -> Result<RegionOffer, XferError> {
        let mut per_rail = Vec::with_capacity(self.rails.len());
        for rail in &self.rails {
            match rail.offer()? {
                RegionOffer::Libfabric(r) => per_rail.push(r),
                other => {
                    return Err(XferError::Offer(format!(
                        "a rail offered {}",
                        offer_name(&other)
                    )))
                }
            }
        }
        Ok(RegionOffer::LibfabricRails(per_rail))
    }
    fn region_mut(&mut self, i: usize) -> Option<&mut SharedRegion> {
        self.rails[0].region_mut(i)
    }
    fn arm_receives(&mut self, _plan: &[(usize, usize)]) -> Result<(), XferError> {
        Err(XferError::Offer(
            "sends are not striped: use --op write or read with --rails".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_transfers_split_evenly_and_small_ones_go_round_robin() {
        let (size, block) = (672usize << 20, 4usize << 20);
        let mut per = [0usize; 2];
        for c in 0..size / block {
            per[rail_of(c * block, size, 128 << 10, 2, 0)] += block;
        }
        assert_eq!(per, [size / 2, size / 2]);
        // 3 rails over 10 chunks: 4/3/3 by place, within one chunk of each other.
        let mut per = [0usize; 3];
        for c in 0..10 {
            per[rail_of(c * 100, 1000, 500, 3, 0)] += 1;
        }
        assert_eq!(per, [4, 3, 3]);
        let small: Vec<usize> = (0..5).map(|t| rail_of(0, 4096, 128 << 10, 2, t)).collect();
        assert_eq!(small, [0, 1, 0, 1, 0]);
        assert_eq!(rail_of(999, 1000, 0, 1, 7), 0);
    }
}
