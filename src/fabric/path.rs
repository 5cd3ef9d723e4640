//! The data path of one connection: kvxfer's one way to post libfabric operations. Posts take
//! bounds-checked slices of registered regions; each operation holds its region's bytes busy
//! until this path reads its completion (injects copy the bytes and have none).
//!
//! The context libfabric returns with a completion is a slot of this path's table, never a
//! pointer; the caller's own token travels in the slot. Remote CQ data (a peer's writedata)
//! arrives with no context of ours and is reported as such.

use std::sync::Arc;

use libfabric_sys as sys;

use super::connect::Connection;
use super::cq::CqEntry;
use super::error::{posted, FabricError, Result};
use super::mr::{LocalSlice, LocalSliceMut, RemoteSlice};
use crate::mem::InFlight;

/// A receive completed.
const FLAG_RECV: u64 = sys::FI_RECV as u64;
/// The entry carries remote CQ data.
const FLAG_REMOTE_CQ_DATA: u64 = sys::FI_REMOTE_CQ_DATA as u64;

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

/// A slot of the table: while live, an operation in flight on the region `in_flight` counts,
/// under the caller's token. A free slot keeps its last region's count handle, so a loop that
/// posts on the same regions over and over takes and releases slots without touching the
/// handle's reference count.
struct Slot {
    in_flight: Arc<InFlight>,
    live: bool,
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
    #[inline]
    fn take(&mut self, in_flight: &Arc<InFlight>, token: u64) -> usize {
        in_flight.begin();
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i];
                if !Arc::ptr_eq(&slot.in_flight, in_flight) {
                    slot.in_flight = Arc::clone(in_flight);
                }
                slot.live = true;
                slot.token = token;
                i
            }
            None => {
                self.slots.push(Slot {
                    in_flight: Arc::clone(in_flight),
                    live: true,
                    token,
                });
                self.slots.len() - 1
            }
        }
    }

    /// Releases slot `i` (the post was refused or its completion arrived); returns the token.
    #[inline]
    fn release(&mut self, i: usize) -> Result<u64> {
        let Some(slot) = self.slots.get_mut(i).filter(|s| s.live) else {
            return Err(FabricError::Invalid(format!(
                "a completion with context {i:#x} that names no operation in flight"
            )));
        };
        slot.live = false;
        slot.in_flight.end();
        self.free.push(i);
        self.live -= 1;
        Ok(slot.token)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        for s in self.slots.iter_mut().filter(|s| s.live) {
            s.live = false;
            s.in_flight.end();
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
///
/// # Safety of the posts
/// Every post passes a slice's pointer, length and descriptor: the range lies inside a region
/// registered with this path's domain (checked), and the region cannot free or move its
/// memory while the operation is counted in flight, which lasts until this path reads the
/// completion (a region dropped meanwhile leaks its memory instead). A slice that a post
/// writes (receive, read) was borrowed mutably and is counted before the post, so no CPU view
/// of its bytes lives while the NIC writes them. Remote ranges lie inside the length the peer
/// offered, under its key. The context of a post is a slot index, never dereferenced.
/// Injects copy the bytes before the call returns.
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
    #[inline]
    fn check_domain(&self, domain: &Arc<super::domain::DomainInner>) -> Result<()> {
        if Arc::ptr_eq(domain, &self.conn.domain.inner) {
            Ok(())
        } else {
            Err(FabricError::Invalid(
                "a slice of a region registered with another domain".into(),
            ))
        }
    }

    /// Posts `call` (libfabric's `name`) on the endpoint with a fresh slot as its context;
    /// releases the slot when the provider refuses.
    #[inline]
    fn post(
        &mut self,
        in_flight: &Arc<InFlight>,
        token: u64,
        name: &'static str,
        call: impl FnOnce(*mut sys::fid_ep, sys::fi_addr_t, *mut libc::c_void) -> isize,
    ) -> Result<bool> {
        let slot = self.slots.take(in_flight, token);
        let ret = call(
            self.conn.ep.as_raw(),
            self.conn.peer,
            slot as *mut libc::c_void,
        );
        let posted = posted(name, ret);
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
        let (buf, len, desc) = (local.ptr as *const libc::c_void, local.len, local.desc);
        let (addr, key) = (remote.addr, remote.key);
        match data {
            Some(d) => self.post(local.in_flight, token, "fi_writedata", |ep, peer, ctx| {
                // SAFETY: see the type's "Safety of the posts".
                unsafe { sys::fi_writedata(ep, buf, len, desc, d, peer, addr, key, ctx) }
            }),
            None => self.post(local.in_flight, token, "fi_write", |ep, peer, ctx| {
                // SAFETY: see the type's "Safety of the posts".
                unsafe { sys::fi_write(ep, buf, len, desc, peer, addr, key, ctx) }
            }),
        }
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
        let (buf, len, desc) = (local.ptr as *mut libc::c_void, local.len, local.desc);
        let (addr, key) = (remote.addr, remote.key);
        self.post(local.in_flight, token, "fi_read", |ep, peer, ctx| {
            // SAFETY: see the type's "Safety of the posts" (a slice that the post writes).
            unsafe { sys::fi_read(ep, buf, len, desc, peer, addr, key, ctx) }
        })
    }

    /// fi_send of `local` to the peer.
    #[inline]
    pub fn send(&mut self, local: LocalSlice<'_>, token: u64) -> Result<bool> {
        self.check_domain(local.domain)?;
        let (buf, len, desc) = (local.ptr as *const libc::c_void, local.len, local.desc);
        self.post(local.in_flight, token, "fi_send", |ep, peer, ctx| {
            // SAFETY: see the type's "Safety of the posts".
            unsafe { sys::fi_send(ep, buf, len, desc, peer, ctx) }
        })
    }

    /// fi_tsend of `local` to the peer under `tag`.
    #[inline]
    pub fn tsend(&mut self, local: LocalSlice<'_>, tag: u64, token: u64) -> Result<bool> {
        self.check_domain(local.domain)?;
        let (buf, len, desc) = (local.ptr as *const libc::c_void, local.len, local.desc);
        self.post(local.in_flight, token, "fi_tsend", |ep, peer, ctx| {
            // SAFETY: see the type's "Safety of the posts".
            unsafe { sys::fi_tsend(ep, buf, len, desc, peer, tag, ctx) }
        })
    }

    /// fi_recv into `local`.
    #[inline]
    pub fn recv(&mut self, local: LocalSliceMut<'_>, token: u64) -> Result<bool> {
        self.check_domain(local.domain)?;
        let (buf, len, desc) = (local.ptr as *mut libc::c_void, local.len, local.desc);
        self.post(local.in_flight, token, "fi_recv", |ep, peer, ctx| {
            // SAFETY: see the type's "Safety of the posts" (a slice that the post writes).
            unsafe { sys::fi_recv(ep, buf, len, desc, peer, ctx) }
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
        let (buf, len, desc) = (local.ptr as *mut libc::c_void, local.len, local.desc);
        self.post(local.in_flight, token, "fi_trecv", |ep, peer, ctx| {
            // SAFETY: see the type's "Safety of the posts" (a slice that the post writes).
            unsafe { sys::fi_trecv(ep, buf, len, desc, peer, tag, ignore, ctx) }
        })
    }

    /// fi_inject of `local` to the peer: the provider copies the bytes before returning, so
    /// no completion follows and nothing stays in flight. Ok(false): the provider's queue is
    /// full; read completions and retry.
    #[inline]
    pub fn inject(&mut self, local: LocalSlice<'_>) -> Result<bool> {
        self.check_domain(local.domain)?;
        let (buf, len) = (local.ptr as *const libc::c_void, local.len);
        // SAFETY: see the type's "Safety of the posts"; the bytes are copied during the call.
        let ret = unsafe { sys::fi_inject(self.conn.ep.as_raw(), buf, len, self.conn.peer) };
        posted("fi_inject", ret)
    }

    /// fi_tinject of `local` to the peer under `tag` (as [`inject`](Self::inject)).
    #[inline]
    pub fn tinject(&mut self, local: LocalSlice<'_>, tag: u64) -> Result<bool> {
        self.check_domain(local.domain)?;
        let (buf, len) = (local.ptr as *const libc::c_void, local.len);
        let (ep, peer) = (self.conn.ep.as_raw(), self.conn.peer);
        // SAFETY: see the type's "Safety of the posts"; the bytes are copied during the call.
        let ret = unsafe { sys::fi_tinject(ep, buf, len, peer, tag) };
        posted("fi_tinject", ret)
    }

    /// fi_inject_writedata (with `data`) or fi_inject_write of `local` into `remote` (as
    /// [`inject`](Self::inject): no local completion; the remote CQ data still arrives).
    #[inline]
    pub fn inject_write(
        &mut self,
        local: LocalSlice<'_>,
        remote: RemoteSlice,
        data: Option<u64>,
    ) -> Result<bool> {
        self.check_domain(local.domain)?;
        same_len(local.len, remote.len)?;
        let (buf, len) = (local.ptr as *const libc::c_void, local.len);
        let (ep, peer, addr, key) = (
            self.conn.ep.as_raw(),
            self.conn.peer,
            remote.addr,
            remote.key,
        );
        match data {
            Some(d) => {
                // SAFETY: see the type's "Safety of the posts"; the bytes are copied during
                // the call.
                let ret = unsafe { sys::fi_inject_writedata(ep, buf, len, d, peer, addr, key) };
                posted("fi_inject_writedata", ret)
            }
            None => {
                // SAFETY: as above.
                let ret = unsafe { sys::fi_inject_write(ep, buf, len, peer, addr, key) };
                posted("fi_inject_write", ret)
            }
        }
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
            if e.flags & FLAG_RECV != 0 {
                let token = self.slots.release(e.op_context as usize)?;
                out.push(Done::Local { token, len: e.len });
            } else if e.flags & FLAG_REMOTE_CQ_DATA != 0 {
                out.push(Done::RemoteData(e.data));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
