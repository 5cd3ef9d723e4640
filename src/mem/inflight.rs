//! How many fabric operations are in flight on a buffer's bytes, shared by every registration
//! of those bytes, so the CPU's views and the buffer's release wait for the last completion.

use std::sync::atomic::{AtomicU32, Ordering};

/// Operations in flight on one buffer's memory (zero: the CPU may read, write or free it).
#[derive(Debug, Default)]
pub struct InFlight(AtomicU32);

impl InFlight {
    /// A fresh count of zero.
    pub fn new() -> InFlight {
        InFlight::default()
    }

    /// One more operation reaches the memory.
    #[inline]
    pub fn begin(&self) {
        self.0.fetch_add(1, Ordering::Acquire);
    }

    /// One operation completed (its completion was read from the library).
    #[inline]
    pub fn end(&self) {
        let before = self.0.fetch_sub(1, Ordering::Release);
        debug_assert!(before > 0, "an operation ended that never began");
    }

    /// Whether no operation reaches the memory now.
    #[inline]
    pub fn idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    /// Operations in flight now.
    pub fn count(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_operations_until_the_last_ends() {
        let f = InFlight::new();
        assert!(f.idle());
        f.begin();
        f.begin();
        f.end();
        assert!(!f.idle());
        assert_eq!(f.count(), 1);
        f.end();
        assert!(f.idle());
    }
}
