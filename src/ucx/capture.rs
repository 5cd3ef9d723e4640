//! Captures what UCX's `*_print_info` calls write to a `FILE *` as a string.

use std::ffi::c_char;

/// Runs `f` with a memory stream and returns what it wrote.
pub(crate) fn capture(f: impl FnOnce(*mut libc::FILE)) -> String {
    let mut buf: *mut c_char = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: open_memstream writes the buffer pointer and size into our two locals, which
    // outlive the stream; the stream is closed below before they are read.
    let stream = unsafe { libc::open_memstream(&mut buf, &mut len) };
    if stream.is_null() {
        return String::new();
    }
    f(stream);
    // SAFETY: stream came from open_memstream and is closed exactly once; after fclose, buf
    // holds len bytes allocated with malloc, which we copy and free.
    unsafe {
        libc::fclose(stream);
        if buf.is_null() {
            return String::new();
        }
        let bytes = std::slice::from_raw_parts(buf as *const u8, len);
        let text = String::from_utf8_lossy(bytes).into_owned();
        libc::free(buf as *mut libc::c_void);
        text
    }
}
