//! Buffers that the fabric reads and writes: host memory now, device memory behind `cuda`.

mod host;
mod shared;

pub use host::HostBuffer;
pub use shared::{available_memory, SharedRegion};

/// Where a buffer's memory lives, as registration needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemIface {
    /// Ordinary host memory.
    System,
    /// CUDA device memory on the given device.
    Cuda(i32),
}

/// Memory that can be registered with a fabric and handed to the NIC.
pub trait Buffer: Send {
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
}

/// Errors of buffer allocation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemError {
    /// The allocator could not provide the memory.
    #[error("cannot allocate {bytes} bytes of host memory")]
    OutOfMemory { bytes: usize },
}
