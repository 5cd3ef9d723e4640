//! Buffers that the fabric reads and writes: host memory now, device memory behind `cuda`.
#![warn(missing_docs)]

pub mod cache;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
mod driver;
mod host;
mod inflight;
mod pages;
mod shared;

pub use host::HostBuffer;
pub use inflight::InFlight;
pub use pages::{backing, parse_backing, Backing};
pub use shared::{available_memory, parse_mem_available, Allocation, SharedRegion};

/// Whether `offset..offset+len` lies inside `total` bytes (no overflow): the check of every
/// slice of registered memory.
pub fn range_within(offset: usize, len: usize, total: usize) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= total)
}

/// How a buffer's memory is backed (huge pages or not); None for device memory or where the
/// kernel does not say.
pub fn backing_of(buf: &impl Buffer) -> Option<Backing> {
    match buf.iface() {
        MemIface::System => pages::backing(buf.as_ptr(), buf.len()),
        MemIface::Cuda(_) => None,
    }
}

/// Where a buffer's memory lives, as registration needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemIface {
    /// Ordinary host memory.
    System,
    /// CUDA device memory on the given device.
    Cuda(i32),
}

/// Memory that can be registered with a fabric and handed to the NIC.
///
/// # Safety
///
/// Registration trusts this trait: an implementation promises that `as_ptr()` and
/// `as_mut_ptr()` point at `len()` bytes of memory of the kind `iface()` names, that the memory
/// is owned by (or borrowed for the whole life of) the value, and that it neither moves nor
/// shrinks while the value lives, so a region registered over it stays valid for the NIC.
pub unsafe trait Buffer: Send {
    /// Start of the memory.
    fn as_ptr(&self) -> *const u8;
    /// Start of the memory, for writing.
    fn as_mut_ptr(&mut self) -> *mut u8;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Where the memory lives.
    fn iface(&self) -> MemIface;
    /// A dmabuf descriptor covering the memory, for registration by dmabuf (device memory
    /// whose driver exports one); None otherwise.
    #[cfg(feature = "cuda")]
    fn dmabuf(&self) -> Option<cuda::Dmabuf> {
        None
    }
    /// The in-flight count shared by every handle on these bytes (None: this value is the only
    /// handle, and each registration keeps its own count).
    fn in_flight(&self) -> Option<std::sync::Arc<InFlight>> {
        None
    }
}

/// A buffer whose payload the host fills and checks: host memory in place, device memory
/// through a host staging copy that [`push`](HostStaged::push) and [`pull`](HostStaged::pull)
/// move. For host memory both are no-ops the compiler removes (`STAGED` is false).
pub trait HostStaged: Buffer {
    /// Whether `push` and `pull` copy anything (false for host memory).
    const STAGED: bool;
    /// The host bytes to check after a receive (the staging copy for device memory).
    fn host(&self) -> &[u8];
    /// The host bytes to fill before a send (the staging copy for device memory).
    fn host_mut(&mut self) -> &mut [u8];
    /// Copies the first `len` host bytes into the buffer if they were written since the last
    /// push.
    fn push(&mut self, len: usize) -> Result<(), MemError>;
    /// Copies the buffer's first `len` bytes into the host bytes.
    fn pull(&mut self, len: usize) -> Result<(), MemError>;
}

impl HostStaged for HostBuffer {
    const STAGED: bool = false;
    #[inline(always)]
    fn host(&self) -> &[u8] {
        self.as_slice()
    }
    #[inline(always)]
    fn host_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
    #[inline(always)]
    fn push(&mut self, _len: usize) -> Result<(), MemError> {
        Ok(())
    }
    #[inline(always)]
    fn pull(&mut self, _len: usize) -> Result<(), MemError> {
        Ok(())
    }
}

/// Errors of buffer allocation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemError {
    /// The allocator could not provide the memory.
    #[error("cannot allocate {bytes} bytes of host memory")]
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
    },
    /// The CUDA driver library could not be loaded.
    #[error("no CUDA driver: libcuda.so.1 not found (is the NVIDIA driver installed?)")]
    NoCudaDriver,
    /// The driver loaded but there is no such device.
    #[error("no CUDA device {device}: the driver sees {count} device(s)")]
    NoCudaDevice {
        /// The ordinal asked for.
        device: i32,
        /// Devices the driver sees.
        count: i32,
    },
    /// A CUDA driver call failed.
    #[error("{call} failed: {message}")]
    Cuda {
        /// The driver function.
        call: &'static str,
        /// The driver's text.
        message: String,
    },
    /// Memory that must be host memory (a staging bounce buffer) is not.
    #[error("{what} is not host memory")]
    NotHost {
        /// What was expected in host memory.
        what: &'static str,
    },
    /// A copy would reach past the end of a buffer.
    #[error(
        "a copy of {len} bytes at offset {offset} reaches past the end of a {size}-byte buffer"
    )]
    OutOfRange {
        /// Offset asked for.
        offset: usize,
        /// Bytes asked for.
        len: usize,
        /// The buffer's length.
        size: usize,
    },
    /// Device memory could not be allocated.
    #[error("cannot allocate {bytes} bytes on CUDA device {device}: {message}")]
    CudaOutOfMemory {
        /// Bytes asked for.
        bytes: usize,
        /// The device ordinal.
        device: i32,
        /// The driver's text.
        message: String,
    },
}
