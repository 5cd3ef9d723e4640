//! The CUDA driver's errors as kvxfer names them, and host memory page-locked for it: the
//! pieces host buffers and device buffers both use (cudarc, libcuda loaded at run time).

use cudarc::driver::{result as cu, sys};

use super::MemError;

/// A failed driver call as a [`MemError`].
pub(crate) fn driver_error(call: &'static str, e: cu::DriverError) -> MemError {
    MemError::Cuda {
        call,
        message: describe(e),
    }
}

/// The driver's text and name for an error code.
pub(crate) fn describe(e: cu::DriverError) -> String {
    match (e.error_name(), e.error_string()) {
        (Ok(name), Ok(text)) => format!("{} ({})", text.to_string_lossy(), name.to_string_lossy()),
        _ => format!("{:?}", e.0),
    }
}

/// Host memory page-locked with cuMemHostRegister; unregistered on drop (before the memory
/// is freed: [`HostBuffer`] drops its pin first).
pub struct HostPin {
    ptr: *mut u8,
}

// SAFETY: the pin is an address the driver knows; it is only passed back to the driver.
unsafe impl Send for HostPin {}
// SAFETY: as for Send; no method reads through the pointer.
unsafe impl Sync for HostPin {}

impl HostPin {
    /// Page-locks `size` bytes at `ptr` for every context.
    pub(crate) fn register(ptr: *mut u8, size: usize) -> Result<HostPin, MemError> {
        // SAFETY: ptr..ptr+size is a live allocation the caller owns and keeps until this pin
        // is dropped.
        unsafe {
            sys::cuMemHostRegister_v2(
                ptr as *mut std::ffi::c_void,
                size,
                sys::CU_MEMHOSTREGISTER_PORTABLE,
            )
        }
        .result()
        .map_err(|e| driver_error("cuMemHostRegister", e))?;
        Ok(HostPin { ptr })
    }
}

impl Drop for HostPin {
    fn drop(&mut self) {
        // SAFETY: ptr was registered once, in register, and is unregistered once.
        let r = unsafe { sys::cuMemHostUnregister(self.ptr as *mut std::ffi::c_void) }.result();
        if let Err(e) = r {
            crate::teardown::record(format!("cuMemHostUnregister failed: {}", describe(e)));
        }
    }
}
