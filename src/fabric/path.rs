//! The data path of one connection: posts over bounds-checked slices of registered regions,
//! each operation holding its region's bytes busy until this path reads its completion.
//!
//! The context libfabric returns with a completion is a slot of this path's table, never a
//! pointer; the caller's own token travels in the slot. Remote CQ data (a peer's writedata)
//! arrives with no context of ours and is reported as such.

use std::sync::Arc;

use super::connect::Connection;
use super::cq::CqEntry;
use super::error::{FabricError, Result};
use super::mr::{LocalSlice, LocalSliceMut, RemoteSlice};
use super::rma::cq_flags;
use crate::mem::InFlight;

/// A completion this path read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// An operation posted here completed; `token` is the one it was posted with.
    Local {
        /// The caller's token.
        token: u64,
        /// Bytes received, for receives (other completions carry what the provider reports,
        /// often 0).
        len: usize,
    },
    /// A peer's write with remote CQ data landed here.
    RemoteData(u64),
}

/// An operation in flight: the region it reaches and the caller's token.
struct Slot {
    in_flight: Option<Arc<InFlight>>,
    token: u64,
}

/// The slots of operations in flight; dropped after the endpoint closed, it releases what
/// is still counted (a closed endpoint no longer reaches any buffer).
#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
}

impl Slots {
    /// Takes a slot for `in_flight` (counted now) and `token`; returns its context value.
    fn take(&mut self, in_flight: &Arc<InFlight>, token: u64) -> usize {
        in_flight.begin();
        self.live += 1;
        let slot = Slot {
            in_flight: Some(Arc::clone(in_flight)),
            token,
        };
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    /// Releases slot `i` (the post was refused or its completion arrived); returns the token.
    fn release(&mut self, i: usize) -> Result<u64> {
        let slot = self.slots.get_mut(i).filter(|s| s.in_flight.is_some());
        let Some(slot) = slot else {
            return Err(FabricError::Invalid(format!(
                "a completion with context {i:#x} that names no operation in flight"
            )));
        };
        if let Some(f) = slot.in_flight.take() {
            f.end();
        }
        self.free.push(i);
        self.live -= 1;
        Ok(slot.token)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        for s in &mut self.slots {
            if let Some(f) = s.in_flight.take() {
                f.end();
            }
        }
    }
}

/// Refuses an RMA whose local and remote ranges differ in length.
fn same_len(local: usize, remote: usize) -> Result<()> {
    if local == remote {
        Ok(())
    } else {
        Err(FabricError::Invalid(format!(
            "an RMA of {local} local bytes into a {remote}-byte remote range"
        )))
    }
}

/// A connection whose posts take slices and whose completions release them.
pub struct DataPath {
    // The connection first: its endpoint closes before the slots release their regions.
    conn: Connection,
    slots: Slots,
    entries: Vec<CqEntry>,
}

impl DataPath {
    /// Takes over a connection's posts and completion queues.
    pub fn new(conn: Connection) -> DataPath {
        DataPath {
            conn,
            slots: Slots::default(),
            entries: vec![CqEntry::default(); 64],
        }
    }

    /// The connection underneath (its domain registers regions, its info describes it).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Operations posted here whose completion has not been read yet.
    pub fn in_flight(&self) -> usize {
        self.slots.live
    }

    /// Refuses a slice of a region registered with another domain.
    fn check_domain(&self, domain: &Arc<super::domain::DomainInner>) -> Result<()> {
        if Arc::ptr_eq(domain, &self.conn.domain.inner) {
            Ok(())
        } else {
            Err(FabricError::Invalid(
                "a slice of a region registered with another domain".into(),
            ))
        }
    }

    /// Posts through `call` under a fresh slot; releases it when the provider refuses.
    #[inline]
    fn post(
        &mut self,
        in_flight: &Arc<InFlight>,
        token: u64,
        call: impl FnOnce(&Connection, *mut libc::c_void) -> Result<bool>,
    ) -> Result<bool> {
        let slot = self.slots.take(in_flight, token);
        let posted = call(&self.conn, slot as *mut libc::c_void);
        if !matches!(posted, Ok(true)) {
            self.slots.release(slot)?;
        }
        posted
    }

    /// fi_writedata (with `data`) or fi_write of `local` into `remote`. Ok(false): the
    /// provider's queue is full; read completions and retry.
    #[inline]
    pub fn write(
        &mut self,
        local: LocalSlice<'_>,
        remote: RemoteSlice,
        data: Option<u64>,
        token: u64,
    ) -> Result<bool> {
        self.check_domain(local.domain)?;
        same_len(local.len, remote.len)?;
        let len = local.len;
        self.post(local.in_flight, token, |c, ctx| {
            // SAFETY: local lies in a region of this domain (checked) counted in flight until
            // this path reads the completion; remote lies in the peer's offered region.
            unsafe {
                match data {
                    Some(d) => c.ep.writedata(
                        local.ptr,
                        len,
                        local.desc,
                        d,
                        c.peer,
                        remote.addr,
                        remote.key,
                        ctx,
                    ),
                    None => c.ep.write(
                        local.ptr,
                        len,
                        local.desc,
                        c.peer,
                        remote.addr,
                        remote.key,
                        ctx,
                    ),
                }
            }
        })
    }

    /// fi_read of `remote` into `local`.
    #[inline]
    pub fn read(
        &mut self,
        local: LocalSliceMut<'_>,
        remote: RemoteSlice,
        token: u64,
    ) -> Result<bool> {
        self.check_domain(local.domain)?;
        same_len(local.len, remote.len)?;
        let len = local.len;
        self.post(local.in_flight, token, |c, ctx| {
            // SAFETY: as in write; the region is borrowed mutably for the post and counted
            // in flight after it, so no CPU view reads it while the NIC writes.
            unsafe {
                c.ep.read(
                    local.ptr,
                    len,
                    local.desc,
                    c.peer,
                    remote.addr,
                    remote.key,
                    ctx,
                )
            }
        })
    }

    /// fi_send of `local` to the peer.
    #[inline]
    pub fn send(&mut self, local: LocalSlice<'_>, token: u64) -> Result<bool> {
        self.check_domain(local.domain)?;
        self.post(local.in_flight, token, |c, ctx| {
            // SAFETY: as in write.
            unsafe { c.ep.send(local.ptr, local.len, local.desc, c.peer, ctx) }
        })
    }

    /// fi_tsend of `local` to the peer under `tag`.
    #[inline]
    pub fn tsend(&mut self, local: LocalSlice<'_>, tag: u64, token: u64) -> Result<bool> {
        self.check_domain(local.domain)?;
        self.post(local.in_flight, token, |c, ctx| {
            // SAFETY: as in write.
            unsafe {
                c.ep.tsend(local.ptr, local.len, local.desc, c.peer, tag, ctx)
            }
        })
    }

    /// fi_recv into `local`.
    #[inline]
    pub fn recv(&mut self, local: LocalSliceMut<'_>, token: u64) -> Result<bool> {
        self.check_domain(local.domain)?;
        self.post(local.in_flight, token, |c, ctx| {
            // SAFETY: as in read.
            unsafe { c.ep.recv(local.ptr, local.len, local.desc, c.peer, ctx) }
        })
    }

    /// fi_trecv into `local` of a message whose tag matches `tag` outside the `ignore` bits.
    #[inline]
    pub fn trecv(
        &mut self,
        local: LocalSliceMut<'_>,
        tag: u64,
        ignore: u64,
        token: u64,
    ) -> Result<bool> {
        self.check_domain(local.domain)?;
        self.post(local.in_flight, token, |c, ctx| {
            // SAFETY: as in read.
            unsafe {
                c.ep.trecv(local.ptr, local.len, local.desc, c.peer, tag, ignore, ctx)
            }
        })
    }

    /// Reads the transmit queue: appends what completed, releasing each operation's region.
    #[inline]
    pub fn poll_tx(&mut self, out: &mut Vec<Done>) -> Result<()> {
        let n = self.conn.txcq.read(&mut self.entries)?;
        for e in &self.entries[..n] {
            let token = self.slots.release(e.op_context as usize)?;
            out.push(Done::Local { token, len: e.len });
        }
        Ok(())
    }

    /// Reads the receive queue: appends completed receives (releasing their regions) and
    /// peers' remote CQ data.
    #[inline]
    pub fn poll_rx(&mut self, out: &mut Vec<Done>) -> Result<()> {
        let n = self.conn.rxcq.read(&mut self.entries)?;
        for e in &self.entries[..n] {
            if e.flags & cq_flags::RECV != 0 {
                let token = self.slots.release(e.op_context as usize)?;
                out.push(Done::Local { token, len: e.len });
            } else if e.flags & cq_flags::REMOTE_CQ_DATA != 0 {
                out.push(Done::RemoteData(e.data));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
