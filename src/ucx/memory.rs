//! Memory mapped for UCX (ucp_mem_map) and remote keys (packed, exchanged, unpacked).

use std::ptr::NonNull;
use std::sync::Arc;

use ucx_sys as sys;

use super::context::{Context, ContextInner};
use super::error::{check, opened, Result, UcxError};
use crate::mem::{range_within, Buffer, InFlight, MemIface};

/// Where mapped memory lives, as UCX names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryType {
    /// Host memory.
    Host,
    /// CUDA device memory.
    Cuda,
}

impl MemoryType {
    /// The memory type of a buffer's interface.
    pub fn of(iface: MemIface) -> MemoryType {
        match iface {
            MemIface::System => MemoryType::Host,
            MemIface::Cuda(_) => MemoryType::Cuda,
        }
    }

    fn raw(self) -> sys::ucs_memory_type_t {
        match self {
            MemoryType::Host => sys::UCS_MEMORY_TYPE_HOST,
            MemoryType::Cuda => sys::UCS_MEMORY_TYPE_CUDA,
        }
    }
}

/// A borrowed view of a memory handle, passed with data-path calls.
#[derive(Clone, Copy)]
pub struct MemHandleRef {
    pub(crate) raw: sys::ucp_mem_h,
    pub(crate) memory_type: sys::ucs_memory_type_t,
}

/// A buffer mapped with a context (ucp_mem_map); owns the buffer, so it cannot move or vanish
/// while UCX may touch it.
///
/// Operations reach its bytes through [`slice`](Self::slice) and [`slice_mut`](Self::slice_mut)
/// posted on an [`OpTable`](super::OpTable), which counts each until it settles; meanwhile the
/// CPU views are refused and dropping the handle leaks the buffer instead of freeing it.
pub struct MemHandle<B: Buffer> {
    raw: NonNull<sys::ucp_mem>,
    memory_type: MemoryType,
    buf: std::mem::ManuallyDrop<B>,
    in_flight: Arc<InFlight>,
    context: Arc<ContextInner>,
}

/// A bounds-checked range of mapped memory that an operation reads (put, tagged send).
pub struct UcxSlice<'m> {
    pub(super) ptr: *const u8,
    pub(super) len: usize,
    /// The mapping's handle, passed with the operation (None: UCX looks the memory up).
    pub(super) memh: Option<MemHandleRef>,
    pub(super) context: &'m Arc<ContextInner>,
    pub(super) in_flight: &'m Arc<InFlight>,
}

/// A bounds-checked range of mapped memory that an operation writes (get, tagged receive),
/// borrowed mutably so no CPU view of it lives meanwhile.
pub struct UcxSliceMut<'m> {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
    /// As [`UcxSlice`]'s.
    pub(super) memh: Option<MemHandleRef>,
    pub(super) context: &'m Arc<ContextInner>,
    pub(super) in_flight: &'m Arc<InFlight>,
}

impl UcxSlice<'_> {
    /// The same range, posted without its memory handle: UCX finds (and caches) the
    /// registration itself, as ucx_perftest does without -z.
    pub fn without_handle(self) -> Self {
        UcxSlice { memh: None, ..self }
    }
}

impl UcxSliceMut<'_> {
    /// As [`UcxSlice::without_handle`].
    pub fn without_handle(self) -> Self {
        UcxSliceMut { memh: None, ..self }
    }
}

// SAFETY: a memory handle belongs to the (thread-safe) context, not to a worker; it moves
// between threads with its owner.
unsafe impl<B: Buffer> Send for MemHandle<B> {}

impl<B: Buffer> Drop for MemHandle<B> {
    fn drop(&mut self) {
        if !self.in_flight.idle() {
            // An operation may still reach these bytes: keeping the mapping and the memory (a
            // leak) is safe, freeing them is not.
            crate::teardown::record(format!(
                "mapped memory was dropped with {} UCX operation(s) in flight: leaked",
                self.in_flight.count()
            ));
            return;
        }
        // SAFETY: raw is a live mapping of this context, unmapped once, before `buf` drops.
        let status =
            unsafe { sys::api().ucp_mem_unmap(self.context.raw.as_ptr(), self.raw.as_ptr()) };
        if status != sys::UCS_OK as sys::ucs_status_t {
            crate::teardown::record(format!(
                "ucp_mem_unmap failed: {}",
                super::error::status_string(status)
            ));
        }
        // SAFETY: buf is dropped once, here, after its mapping is gone.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.buf) };
    }
}

impl<B: Buffer> MemHandle<B> {
    /// Maps the whole buffer; its memory type comes from the buffer's interface.
    pub fn map(context: &Context, mut buf: B) -> Result<MemHandle<B>> {
        if buf.is_empty() {
            return Err(UcxError::Invalid("cannot map an empty buffer".into()));
        }
        let memory_type = MemoryType::of(buf.iface());
        let raw = map_range(&context.inner, buf.as_mut_ptr(), buf.len(), memory_type)?;
        Ok(MemHandle {
            raw,
            memory_type,
            in_flight: buf.in_flight().unwrap_or_default(),
            buf: std::mem::ManuallyDrop::new(buf),
            context: context.inner.clone(),
        })
    }

    /// `len` bytes at `offset`, for an operation that reads them; None outside the buffer.
    pub fn slice(&self, offset: usize, len: usize) -> Option<UcxSlice<'_>> {
        range_within(offset, len, self.buf.len()).then(|| UcxSlice {
            ptr: self.buf.as_ptr().wrapping_add(offset),
            len,
            memh: Some(self.handle()),
            context: &self.context,
            in_flight: &self.in_flight,
        })
    }

    /// `len` bytes at `offset`, for an operation that writes them; None outside the buffer.
    pub fn slice_mut(&mut self, offset: usize, len: usize) -> Option<UcxSliceMut<'_>> {
        if !range_within(offset, len, self.buf.len()) {
            return None;
        }
        let memh = Some(self.handle());
        Some(UcxSliceMut {
            ptr: self.buf.as_mut_ptr().wrapping_add(offset),
            len,
            memh,
            context: &self.context,
            in_flight: &self.in_flight,
        })
    }

    /// Length of the registered memory in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the registered memory is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    /// Operations in flight on the buffer's bytes.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.count()
    }

    /// Start address and length, for the offer a peer reaches the memory by.
    pub fn range(&self) -> (u64, usize) {
        (self.buf.as_ptr() as u64, self.buf.len())
    }

    /// Maps the same memory a second time and unmaps it again; returns how long the mapping
    /// took (what a registration costs once UCX has seen the memory).
    pub fn time_remap(&mut self) -> Result<std::time::Duration> {
        let start = std::time::Instant::now();
        let raw = map_range(
            &self.context,
            self.buf.as_mut_ptr(),
            self.buf.len(),
            self.memory_type,
        )?;
        let took = start.elapsed();
        // SAFETY: raw is the mapping just made, unmapped once; the buffer stays mapped by self.
        let status = unsafe { sys::api().ucp_mem_unmap(self.context.raw.as_ptr(), raw.as_ptr()) };
        check("ucp_mem_unmap", status)?;
        Ok(took)
    }

    /// The view passed with data-path calls.
    #[inline]
    pub fn handle(&self) -> MemHandleRef {
        MemHandleRef {
            raw: self.raw.as_ptr(),
            memory_type: self.memory_type.raw(),
        }
    }

    /// Where the memory lives.
    pub fn memory_type(&self) -> MemoryType {
        self.memory_type
    }

    /// The mapped buffer, while no operation is in flight on it (None otherwise).
    pub fn buf(&self) -> Option<&B> {
        self.in_flight.idle().then_some(&*self.buf)
    }

    /// The mapped buffer, for writing, while no operation is in flight on it.
    pub fn buf_mut(&mut self) -> Option<&mut B> {
        self.in_flight.idle().then_some(&mut *self.buf)
    }

    /// The remote key a peer unpacks to reach this memory with put/get.
    pub fn pack_rkey(&self) -> Result<Vec<u8>> {
        let mut ptr: *mut libc::c_void = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: context and mapping are live; the packed buffer is copied, then released once.
        unsafe {
            check(
                "ucp_rkey_pack",
                sys::api().ucp_rkey_pack(
                    self.context.raw.as_ptr(),
                    self.raw.as_ptr(),
                    &mut ptr,
                    &mut len,
                ),
            )?;
            let bytes = std::slice::from_raw_parts(ptr as *const u8, len).to_vec();
            sys::api().ucp_rkey_buffer_release(ptr);
            Ok(bytes)
        }
    }

    /// Raw handle, for calls nobody wrapped yet.
    pub fn as_raw(&self) -> sys::ucp_mem_h {
        self.raw.as_ptr()
    }
}

/// Maps `len` bytes at `ptr` with `context`.
fn map_range(
    context: &ContextInner,
    ptr: *mut u8,
    len: usize,
    memory_type: MemoryType,
) -> Result<NonNull<sys::ucp_mem>> {
    let params = sys::ucp_mem_map_params_t {
        field_mask: (sys::UCP_MEM_MAP_PARAM_FIELD_ADDRESS
            | sys::UCP_MEM_MAP_PARAM_FIELD_LENGTH
            | sys::UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE) as u64,
        address: ptr as *mut libc::c_void,
        length: len,
        memory_type: memory_type.raw(),
        ..Default::default()
    };
    let mut raw: sys::ucp_mem_h = std::ptr::null_mut();
    // SAFETY: the context is live; params describe memory the caller keeps valid while the
    // mapping lives; raw receives a mapping the caller releases.
    let status = unsafe { sys::api().ucp_mem_map(context.raw.as_ptr(), &params, &mut raw) };
    opened("ucp_mem_map", status, raw, String::new)
}
