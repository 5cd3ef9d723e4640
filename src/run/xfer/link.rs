//! How an initiator worker reaches its target, whichever side drives it.

use super::config::XferConfig;
use super::worker::{TargetFacts, WorkerReport};
use crate::bench::xfer::{IterParams, IterSample};
use crate::bench::BenchError;
use crate::mem::SharedRegion;
use crate::run::RunError;
use crate::xfer::InitiatorEnd;
use crate::xfer::SetupTimes;

/// How an initiator worker reaches its target: over the control connection (the target in
/// another thread or process), or as the other end its own thread drives.
pub(super) trait TargetLink {
    /// Connects this worker's initiator end over `local` (`per` transfers) to the target and
    /// gives it the target's regions; the target's index and registration costs.
    fn connect(
        &mut self,
        cfg: &XferConfig,
        local: SharedRegion,
        per: usize,
    ) -> Result<(Box<dyn InitiatorEnd>, SetupTimes, TargetFacts), RunError>;

    /// Meets the target before iteration `i`, once its regions are ready.
    fn meet(&mut self, i: u64) -> Result<(), RunError>;

    /// Runs one iteration's transfers through `ep`.
    fn transfer(
        &mut self,
        ep: &mut dyn InitiatorEnd,
        p: &IterParams,
    ) -> Result<IterSample, BenchError>;

    /// After iteration `i`'s transfers: the target's own work on what arrived.
    fn after(&mut self, i: u64) -> Result<(), RunError>;

    /// Ends the run with this worker's `report`, adding what the target verified and saw.
    fn finish(&mut self, report: &mut WorkerReport) -> Result<(), RunError>;

    /// Opens an open-loop session: returns once the target serves it.
    fn open_session(&mut self) -> Result<(), RunError>;

    /// Closes the open-loop session (every transfer of it confirmed).
    fn close_session(&mut self) -> Result<(), RunError>;
}
