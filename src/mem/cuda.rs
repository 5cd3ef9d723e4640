//! CUDA device memory through the driver API (cudarc, libcuda loaded at run time, so a build
//! needs no CUDA). Allocation is synchronous (cuMemAlloc), which GPUDirect RDMA can register.

use std::sync::Arc;

use cudarc::driver::{result as cu, sys};

use super::driver::{describe, driver_error};
use super::{Buffer, HostBuffer, HostStaged, MemError, MemIface};

mod vmm;

pub use vmm::Dmabuf;

/// A CUDA device with its primary context retained, current on the thread that opened it.
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<DeviceInner>,
}

struct DeviceInner {
    ordinal: i32,
    dev: sys::CUdevice,
    ctx: sys::CUcontext,
    name: String,
}

// SAFETY: a CUDA context may be made current on any thread; the handle is only passed to the
// driver, which is thread-safe.
unsafe impl Send for DeviceInner {}
// SAFETY: as for Send: the inner holds no Rust-visible mutable state.
unsafe impl Sync for DeviceInner {}

/// Whether the CUDA driver library can be loaded on this machine.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver's library names; nothing is called in it.
    unsafe { sys::is_culib_present() }
}

/// Loads and initialises the driver; returns how many devices it sees. `ordinal` is only named
/// in the error when there are none.
fn init(ordinal: i32) -> Result<i32, MemError> {
    // Checked first: cudarc panics when a driver call finds no library.
    if !driver_present() {
        return Err(MemError::NoCudaDriver);
    }
    if let Err(e) = cu::init() {
        if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE {
            return Err(MemError::NoCudaDevice {
                device: ordinal,
                count: 0,
            });
        }
        return Err(driver_error("cuInit", e));
    }
    cu::device::get_count().map_err(|e| driver_error("cuDeviceGetCount", e))
}

/// A CUDA device as the driver describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// The CUDA ordinal.
    pub ordinal: i32,
    /// The device's name.
    pub name: String,
    /// Total device memory in bytes.
    pub memory_bytes: u64,
    /// PCI bus id as the driver writes it (`00000000:18:00.0`).
    pub pci_bus_id: String,
}

/// Every device the driver sees (none when there is no device; an error without a driver).
pub fn devices() -> Result<Vec<DeviceInfo>, MemError> {
    let count = match init(0) {
        Ok(n) => n,
        Err(MemError::NoCudaDevice { .. }) => 0,
        Err(e) => return Err(e),
    };
    (0..count)
        .map(|ordinal| {
            let dev = cu::device::get(ordinal).map_err(|e| driver_error("cuDeviceGet", e))?;
            let name = cu::device::get_name(dev).map_err(|e| driver_error("cuDeviceGetName", e))?;
            // SAFETY: dev came from cuDeviceGet.
            let memory = unsafe { cu::device::total_mem(dev) }
                .map_err(|e| driver_error("cuDeviceTotalMem", e))?;
            let mut bus = [0 as std::ffi::c_char; 32];
            // SAFETY: the driver writes at most bus.len() bytes, NUL-terminated, into bus.
            unsafe { sys::cuDeviceGetPCIBusId(bus.as_mut_ptr(), bus.len() as i32, dev) }
                .result()
                .map_err(|e| driver_error("cuDeviceGetPCIBusId", e))?;
            // SAFETY: bus is NUL-terminated (zero-filled, and the driver terminates it).
            let bus = unsafe { std::ffi::CStr::from_ptr(bus.as_ptr()) };
            Ok(DeviceInfo {
                ordinal,
                name,
                memory_bytes: memory as u64,
                pci_bus_id: bus.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

impl CudaDevice {
    /// Loads the driver and opens device `ordinal`: retains its primary context and makes it
    /// current on this thread (UCX's CUDA transports use the current context).
    pub fn open(ordinal: i32) -> Result<CudaDevice, MemError> {
        let count = init(ordinal)?;
        if ordinal < 0 || ordinal >= count {
            return Err(MemError::NoCudaDevice {
                device: ordinal,
                count,
            });
        }
        let dev = cu::device::get(ordinal).map_err(|e| driver_error("cuDeviceGet", e))?;
        let name = cu::device::get_name(dev).map_err(|e| driver_error("cuDeviceGetName", e))?;
        // SAFETY: dev came from cuDeviceGet; the retained context is released once, in Drop.
        let ctx = unsafe { cu::primary_ctx::retain(dev) }
            .map_err(|e| driver_error("cuDevicePrimaryCtxRetain", e))?;
        let device = CudaDevice {
            inner: Arc::new(DeviceInner {
                ordinal,
                dev,
                ctx,
                name,
            }),
        };
        device.make_current()?;
        Ok(device)
    }

    /// The device's name, as the driver gives it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> i32 {
        self.inner.ordinal
    }

    /// Makes the device's context current on the calling thread.
    pub fn make_current(&self) -> Result<(), MemError> {
        self.inner.make_current()
    }

    /// Allocates `len` bytes (at least one) of device memory, zero-filled.
    pub fn alloc(&self, len: usize) -> Result<DeviceBuffer, MemError> {
        self.make_current()?;
        let bytes = len.max(1);
        // SAFETY: the context is current; the memory is freed once, in DeviceBuffer's Drop.
        let ptr = unsafe { cu::malloc_sync(bytes) }.map_err(|e| self.oom(bytes, e))?;
        let buf = DeviceBuffer {
            ptr,
            len,
            device: self.inner.clone(),
            backing: Backing::Malloc,
        };
        buf.zero(bytes)?;
        Ok(buf)
    }

    fn oom(&self, bytes: usize, e: cu::DriverError) -> MemError {
        MemError::CudaOutOfMemory {
            bytes,
            device: self.ordinal(),
            message: describe(e),
        }
    }
}

/// How a device buffer's memory was obtained.
enum Backing {
    /// cuMemAlloc.
    Malloc,
    /// cuMemCreate mapped into a reserved range of `size` bytes.
    Vmm {
        handle: sys::CUmemGenericAllocationHandle,
        size: usize,
        mapped: bool,
    },
}

impl DeviceInner {
    fn make_current(&self) -> Result<(), MemError> {
        // SAFETY: ctx is the retained primary context, live until self drops.
        unsafe { cu::ctx::set_current(self.ctx) }.map_err(|e| driver_error("cuCtxSetCurrent", e))
    }
}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        // SAFETY: dev came from cuDeviceGet and its primary context was retained once in open.
        if let Err(e) = unsafe { cu::primary_ctx::release(self.dev) } {
            crate::teardown::record(format!("cuDevicePrimaryCtxRelease failed: {}", describe(e)));
        }
    }
}

/// Device memory from cuMemAlloc or the virtual memory API, freed on drop; keeps its device's
/// context alive.
pub struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    len: usize,
    device: Arc<DeviceInner>,
    backing: Backing,
}

impl DeviceBuffer {
    fn zero(&self, bytes: usize) -> Result<(), MemError> {
        // SAFETY: ptr is a live, mapped allocation of at least `bytes` bytes in the current
        // context.
        unsafe { cu::memset_d8_sync(self.ptr, 0, bytes) }.map_err(|e| driver_error("cuMemsetD8", e))
    }

    /// Copies `src` to the start of the buffer (synchronous).
    pub fn copy_from_host(&mut self, src: &[u8]) -> Result<(), MemError> {
        self.copy_from_host_at(0, src)
    }

    /// Copies the start of the buffer into `dst` (synchronous).
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<(), MemError> {
        self.copy_to_host_at(0, dst)
    }

    /// Copies `src` to byte `offset` of the buffer (synchronous).
    pub fn copy_from_host_at(&self, offset: usize, src: &[u8]) -> Result<(), MemError> {
        self.check_range(offset, src.len())?;
        self.device.make_current()?;
        // SAFETY: offset + src.len() bytes fit the live allocation; the copy is synchronous.
        unsafe { cu::memcpy_htod_sync(self.ptr + offset as u64, src) }
            .map_err(|e| driver_error("cuMemcpyHtoD", e))
    }

    /// Copies the buffer's bytes from `offset` into `dst` (synchronous).
    pub fn copy_to_host_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.check_range(offset, dst.len())?;
        self.device.make_current()?;
        // SAFETY: offset + dst.len() bytes lie inside the live allocation; synchronous copy.
        unsafe { cu::memcpy_dtoh_sync(dst, self.ptr + offset as u64) }
            .map_err(|e| driver_error("cuMemcpyDtoH", e))
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), MemError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(MemError::OutOfRange {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> i32 {
        self.device.ordinal
    }

    /// Whether the memory came from the virtual memory API (`--vmm`).
    pub fn is_vmm(&self) -> bool {
        matches!(self.backing, Backing::Vmm { .. })
    }

    /// Makes the buffer's context current on the calling thread (UCX's CUDA transports use
    /// the current context).
    pub fn make_current(&self) -> Result<(), MemError> {
        self.device.make_current()
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let ptr = self.ptr;
        let freed = self
            .device
            .make_current()
            .and_then(|()| match self.backing {
                Backing::Malloc => {
                    // SAFETY: ptr came from cuMemAlloc in this context and is freed once;
                    // whoever handed it to a NIC (a memory handle) owns this buffer and went
                    // first.
                    unsafe { cu::free_sync(ptr) }.map_err(|e| driver_error("cuMemFree", e))
                }
                Backing::Vmm {
                    handle,
                    size,
                    mapped,
                } => {
                    // SAFETY: the range was reserved (and mapped when `mapped`) for this buffer
                    // only; each is undone once, in reverse order.
                    unsafe {
                        if mapped {
                            sys::cuMemUnmap(ptr, size)
                                .result()
                                .map_err(|e| driver_error("cuMemUnmap", e))?;
                        }
                        sys::cuMemAddressFree(ptr, size)
                            .result()
                            .map_err(|e| driver_error("cuMemAddressFree", e))?;
                        sys::cuMemRelease(handle)
                            .result()
                            .map_err(|e| driver_error("cuMemRelease", e))
                    }
                }
            });
        if let Err(e) = freed {
            crate::teardown::record(e.to_string());
        }
    }
}

// SAFETY: the device allocation is owned by the buffer and freed only in Drop.
unsafe impl Buffer for DeviceBuffer {
    fn as_ptr(&self) -> *const u8 {
        self.ptr as usize as *const u8
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr as usize as *mut u8
    }
    fn len(&self) -> usize {
        self.len
    }
    fn iface(&self) -> MemIface {
        MemIface::Cuda(self.device.ordinal)
    }
    fn dmabuf(&self) -> Option<Dmabuf> {
        DeviceBuffer::dmabuf(self, 0).ok()
    }
}

/// A device buffer with an optional host staging copy, for payloads the host fills and checks.
pub struct DeviceSlot {
    dev: DeviceBuffer,
    staging: Option<HostBuffer>,
    dirty: bool,
}

impl DeviceSlot {
    /// Allocates `len` bytes on `device`, with a host staging copy when `staged`.
    pub fn new(device: &CudaDevice, len: usize, staged: bool) -> Result<DeviceSlot, MemError> {
        let dev = device.alloc(len)?;
        let staging = if staged {
            Some(HostBuffer::new(len)?)
        } else {
            None
        };
        Ok(DeviceSlot {
            dev,
            staging,
            dirty: false,
        })
    }

    /// The device memory.
    pub fn device_buffer(&self) -> &DeviceBuffer {
        &self.dev
    }
}

// SAFETY: the slot owns its device buffer (never moved or resized) and reports its pointers.
unsafe impl Buffer for DeviceSlot {
    fn as_ptr(&self) -> *const u8 {
        self.dev.as_ptr()
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.dev.as_mut_ptr()
    }
    fn len(&self) -> usize {
        self.dev.len()
    }
    fn iface(&self) -> MemIface {
        self.dev.iface()
    }
}

impl HostStaged for DeviceSlot {
    const STAGED: bool = true;
    /// The staging copy; empty when the slot has none.
    fn host(&self) -> &[u8] {
        self.staging.as_ref().map_or(&[], |s| s.as_slice())
    }
    /// The staging copy (marked for the next push); empty when the slot has none.
    fn host_mut(&mut self) -> &mut [u8] {
        match &mut self.staging {
            Some(s) => {
                self.dirty = true;
                s.as_mut_slice()
            }
            None => &mut [],
        }
    }
    fn push(&mut self, len: usize) -> Result<(), MemError> {
        if let (true, Some(s)) = (self.dirty, &self.staging) {
            self.dev.copy_from_host(&s.as_slice()[..len])?;
            self.dirty = false;
        }
        Ok(())
    }
    fn pull(&mut self, len: usize) -> Result<(), MemError> {
        if let Some(s) = &mut self.staging {
            self.dev.copy_to_host(&mut s.as_mut_slice()[..len])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens device 0, or says by name why the test is skipped.
    fn device(test: &str) -> Option<CudaDevice> {
        match CudaDevice::open(0) {
            Ok(d) => Some(d),
            Err(e) => {
                println!("SKIPPED {test}: no CUDA device ({e})");
                None
            }
        }
    }

    #[test]
    fn absent_driver_or_device_is_a_typed_error_not_a_panic() {
        match CudaDevice::open(0) {
            Ok(d) => assert!(!d.name().is_empty()),
            Err(e) => {
                assert!(matches!(
                    e,
                    MemError::NoCudaDriver | MemError::NoCudaDevice { .. }
                ));
                if !driver_present() {
                    assert_eq!(
                        e.to_string(),
                        "no CUDA driver: libcuda.so.1 not found (is the NVIDIA driver installed?)"
                    );
                }
            }
        }
        // An ordinal no machine has is refused however many devices there are.
        assert!(CudaDevice::open(-1).is_err());
    }

    #[test]
    fn device_round_trip_through_staging() {
        let Some(d) = device("mem::cuda::tests::device_round_trip_through_staging") else {
            return;
        };
        let mut tx = DeviceSlot::new(&d, 10_000, true).unwrap();
        let mut rx = DeviceSlot::new(&d, 10_000, true).unwrap();
        assert_eq!(tx.iface(), MemIface::Cuda(0));
        for (i, b) in tx.host_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        tx.push(10_000).unwrap();
        // Device to device through the host, as a transport would move it.
        let mut bounce = vec![0u8; 10_000];
        tx.device_buffer().copy_to_host(&mut bounce).unwrap();
        rx.dev.copy_from_host(&bounce).unwrap();
        rx.pull(10_000).unwrap();
        assert!(rx.host().iter().enumerate().all(|(i, &b)| b == i as u8));
        let fresh = d.alloc(64).unwrap();
        let mut z = [1u8; 64];
        fresh.copy_to_host(&mut z).unwrap();
        assert_eq!(z, [0u8; 64], "device memory starts zeroed");
    }
}
