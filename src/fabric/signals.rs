//! SIGINT and SIGTERM taken back from what libfabric's dependencies set when they load
//! (Debian's libinfinipath installs a handler that calls `exit(1)`), for kvxfer's own
//! handler: the first signal is recorded for [`crate::stop`], a later one ends the process.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The signal that asked this process to stop; 0 while none has (read by [`crate::stop`]).
pub(crate) static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Slots for the process groups of running children, which a second signal kills; 0 is free
/// (filled by [`crate::stop::ChildGroup`]).
pub(crate) static CHILD_GROUPS: [AtomicI32; 8] = [const { AtomicI32::new(0) }; 8];

/// The signals a run stops on.
const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// A signal within this long of the first is the same delivery made twice (GNU timeout sends
/// its signal to the child and to the child's group), not a second request.
const REPEAT_NS: u64 = 1_000_000_000;

/// When the first signal came, CLOCK_MONOTONIC ns; 0 before it.
static FIRST_NS: AtomicU64 = AtomicU64::new(0);

/// CLOCK_MONOTONIC in nanoseconds (at least 1); async-signal-safe.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
        .max(1)
}

/// The handler: only atomics, `clock_gettime`, `write`, `kill` and `_exit`, all
/// async-signal-safe.
extern "C" fn on_signal(sig: libc::c_int) {
    let now = monotonic_ns();
    match FIRST_NS.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => RECEIVED.store(sig, Ordering::SeqCst),
        Err(first) if now.saturating_sub(first) < REPEAT_NS => {}
        Err(_) => {
            const MSG: &[u8] = b"kvxfer: second signal: ending at once\n";
            for g in &CHILD_GROUPS {
                let pgid = g.load(Ordering::SeqCst);
                if pgid > 0 {
                    // SAFETY: kill is async-signal-safe; a negative pid names the group.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
            }
            // SAFETY: write and _exit are async-signal-safe; MSG outlives the call.
            unsafe {
                libc::write(2, MSG.as_ptr().cast(), MSG.len());
                libc::_exit(128 + sig);
            }
        }
    }
}

/// Sets `handler` for SIGINT and SIGTERM, system calls restarted after it.
fn set(handler: libc::sighandler_t) -> std::io::Result<()> {
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is valid; its mask is emptied before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: action is a valid sigaction; the handler (when not SIG_DFL) is
        // async-signal-safe (see on_signal).
        let rc = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Installs kvxfer's handler for SIGINT and SIGTERM, replacing whatever a library set.
pub(crate) fn install() -> std::io::Result<()> {
    set(on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t)
}

/// Gives SIGINT and SIGTERM their default action back.
pub(crate) fn restore_default() -> std::io::Result<()> {
    set(libc::SIG_DFL)
}

/// Sends `sig` to process `pid` (gone already: nothing to do).
pub(crate) fn signal_process(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill takes any pid and signal.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Sends `sig` to the process group `pgid` (gone already: nothing to do).
pub(crate) fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill takes any pid and signal; a negative pid names a process group.
        unsafe { libc::kill(-pgid, sig) };
    }
}
