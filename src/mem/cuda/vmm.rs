//! CUDA memory for GPUDirect RDMA beyond cuMemAlloc: the virtual memory API (`--vmm`, as
//! nixlbench's `--enable_vmm`) and dmabuf descriptors for FI_MR_DMABUF registration.

use cudarc::driver::sys;

use super::{Backing, CudaDevice, DeviceBuffer};
use crate::mem::driver::driver_error;
use crate::mem::MemError;

impl CudaDevice {
    /// Allocates `len` bytes (at least one) through the virtual memory API, as nixlbench's
    /// `--enable_vmm`: cuMemCreate (pinned, GPUDirect RDMA capable) mapped by cuMemMap into a
    /// reserved range, read-write for this device; zero-filled.
    pub fn alloc_vmm(&self, len: usize) -> Result<DeviceBuffer, MemError> {
        self.make_current()?;
        let location = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: self.ordinal(),
        };
        let prop = sys::CUmemAllocationProp {
            type_: sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
            requestedHandleTypes: sys::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE,
            location,
            win32HandleMetaData: std::ptr::null_mut(),
            allocFlags: sys::CUmemAllocationProp_st__bindgen_ty_1 {
                compressionType: 0,
                gpuDirectRDMACapable: 1,
                usage: 0,
                reserved: [0; 4],
            },
        };
        let mut granularity = 0usize;
        // SAFETY: prop is a complete allocation description; the driver writes one usize.
        unsafe {
            sys::cuMemGetAllocationGranularity(
                &mut granularity,
                &prop,
                sys::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM,
            )
        }
        .result()
        .map_err(|e| driver_error("cuMemGetAllocationGranularity", e))?;
        let size = len.max(1).div_ceil(granularity.max(1)) * granularity.max(1);
        let mut handle: sys::CUmemGenericAllocationHandle = 0;
        // SAFETY: as above; the handle is released once (here on failure, else in Drop).
        unsafe { sys::cuMemCreate(&mut handle, size, &prop, 0) }
            .result()
            .map_err(|e| self.oom(size, e))?;
        let mut ptr: sys::CUdeviceptr = 0;
        // SAFETY: reserves a fresh range of `size` bytes; freed once, in Drop or below.
        let reserved = unsafe { sys::cuMemAddressReserve(&mut ptr, size, 0, 0, 0) }.result();
        if let Err(e) = reserved {
            // SAFETY: handle was created above and is not mapped anywhere.
            unsafe { sys::cuMemRelease(handle) };
            return Err(driver_error("cuMemAddressReserve", e));
        }
        // From here Drop unmaps, frees the range and releases the handle.
        let mut buf = DeviceBuffer {
            ptr,
            len,
            device: self.inner.clone(),
            backing: Backing::Vmm {
                handle,
                size,
                mapped: false,
            },
        };
        // SAFETY: ptr..ptr+size is the range just reserved, handle an allocation of size bytes.
        unsafe { sys::cuMemMap(ptr, size, 0, handle, 0) }
            .result()
            .map_err(|e| driver_error("cuMemMap", e))?;
        if let Backing::Vmm { mapped, .. } = &mut buf.backing {
            *mapped = true;
        }
        let access = sys::CUmemAccessDesc {
            location,
            flags: sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        };
        // SAFETY: the range is mapped; one access descriptor is passed.
        unsafe { sys::cuMemSetAccess(ptr, size, &access, 1) }
            .result()
            .map_err(|e| driver_error("cuMemSetAccess", e))?;
        buf.zero(size)?;
        Ok(buf)
    }
}

/// A dmabuf file descriptor covering a device buffer, for FI_MR_DMABUF registration; the
/// descriptor is closed on drop (a provider that imported it keeps its own reference).
pub struct Dmabuf {
    /// The file descriptor.
    pub fd: i32,
    /// Offset of the buffer's first byte in the dmabuf.
    pub offset: u64,
    /// Length of the dmabuf in bytes.
    pub len: usize,
    /// Device address of the dmabuf's first byte.
    pub base: u64,
}

impl Drop for Dmabuf {
    fn drop(&mut self) {
        // SAFETY: fd came from cuMemGetHandleForAddressRange and is closed once.
        unsafe { libc::close(self.fd) };
    }
}

impl DeviceBuffer {
    /// A dmabuf descriptor for the whole allocation holding byte `offset` of this buffer
    /// (cuMemGetAddressRange, then cuMemGetHandleForAddressRange).
    pub fn dmabuf(&self, offset: usize) -> Result<Dmabuf, MemError> {
        self.check_range(offset, 0)?;
        self.device.make_current()?;
        let addr = self.ptr + offset as u64;
        let (mut base, mut size): (sys::CUdeviceptr, usize) = (0, 0);
        // SAFETY: addr lies inside a live allocation; the driver writes two values.
        unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, addr) }
            .result()
            .map_err(|e| driver_error("cuMemGetAddressRange", e))?;
        let mut fd: i32 = -1;
        // SAFETY: base..base+size is one live allocation; the driver writes an int fd.
        unsafe {
            sys::cuMemGetHandleForAddressRange(
                &mut fd as *mut i32 as *mut std::ffi::c_void,
                base,
                size,
                sys::CUmemRangeHandleType::CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD,
                0,
            )
        }
        .result()
        .map_err(|e| driver_error("cuMemGetHandleForAddressRange", e))?;
        Ok(Dmabuf {
            fd,
            offset: addr - base,
            len: size,
            base,
        })
    }
}
