//! Failures of a library's clean-up (a close, an unmap, a release) that a `Drop` cannot
//! return: the safe layers record them here, never print them; the caller surfaces them.

use std::sync::Mutex;

static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records a clean-up failure, one line for the user.
pub fn record(failure: String) {
    FAILURES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(failure);
}

/// The failures recorded since the last call, oldest first.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *FAILURES.lock().unwrap_or_else(|p| p.into_inner()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_failures_are_taken_once_in_order() {
        // Other tests' drops may record too: look for ours only.
        super::record("teardown-test: first".into());
        super::record("teardown-test: second".into());
        let ours: Vec<String> = super::take()
            .into_iter()
            .filter(|f| f.starts_with("teardown-test"))
            .collect();
        assert_eq!(ours, ["teardown-test: first", "teardown-test: second"]);
        assert!(!super::take().iter().any(|f| f.starts_with("teardown-test")));
    }
}
