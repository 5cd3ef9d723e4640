//! What a run will hold in host memory, estimated before anything is allocated, and the check
//! that refuses a run the machine cannot hold.
//!
//! Endpoint costs were measured as the growth of the peak resident set (`/usr/bin/time -f %M`)
//! of `kvxfer xfer -s 4K -I 2 -w 1` from `-c 1` to `-c 4` (one endpoint per worker and side),
//! libfabric 1.17 and UCX 1.13 on Debian 12: tcp;ofi_rxm 87.6 MB per endpoint (its receive
//! buffer pools), shm 5.6 MB, udp;ofi_rxd 6.0 MB, UCX tcp 0.3 MB, UCX posix,cma 2.6 MB.

use super::RunError;
use crate::mem::available_memory;

const MIB: u64 = 1 << 20;

/// Host bytes one libfabric endpoint of `provider` holds (its receive pools), rounded up from
/// the figures measured here; providers not measured (efa, ...) are assumed as costly as tcp.
pub fn libfabric_endpoint_bytes(provider: &str) -> u64 {
    match provider.split(';').next().unwrap_or_default() {
        "shm" | "udp" | "sockets" => 8 * MIB,
        _ => 96 * MIB,
    }
}

/// Host bytes one UCX worker and endpoint hold, rounded up from the figures measured here.
pub const UCX_ENDPOINT_BYTES: u64 = 4 * MIB;

/// What a run will hold: buffers, per-endpoint costs and the samples it keeps, for the error
/// message.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryNeed {
    /// Buffer bytes (messages, transfers, regions).
    pub buffers: u64,
    /// Endpoints (one per worker, rail and side).
    pub endpoints: u64,
    /// Host bytes each endpoint holds.
    pub per_endpoint: u64,
    /// Bytes of the per-iteration samples kept until the document is written.
    pub samples: u64,
}

impl MemoryNeed {
    /// Everything together; None when it does not fit in 64 bits.
    pub fn total(&self) -> Option<u64> {
        self.endpoints
            .checked_mul(self.per_endpoint)
            .and_then(|e| e.checked_add(self.buffers))
            .and_then(|e| e.checked_add(self.samples))
    }

    /// Twice this: both sides of a run in one process.
    pub fn both_sides(self) -> MemoryNeed {
        MemoryNeed {
            buffers: self.buffers.saturating_mul(2),
            endpoints: self.endpoints.saturating_mul(2),
            per_endpoint: self.per_endpoint,
            samples: self.samples.saturating_mul(2),
        }
    }

    /// Refuses the run, in one line, when the machine has less memory available than this.
    pub fn check(&self, available: Option<u64>) -> Result<(), RunError> {
        let total = self
            .total()
            .ok_or_else(|| RunError::Config("the run's memory does not fit in 64 bits".into()))?;
        match available {
            Some(avail) if total > avail => Err(RunError::Config(format!(
                "this run needs about {} of host memory ({} of buffers, {} endpoint(s) of about \
                 {} each{}) but only {} is available: lower the size, the concurrency, the \
                 rails, the rounds or the iterations, or run the sides on different hosts",
                approx(total),
                approx(self.buffers),
                self.endpoints,
                approx(self.per_endpoint),
                match self.samples {
                    0 => String::new(),
                    s => format!(", {} of per-iteration samples", approx(s)),
                },
                approx(avail)
            ))),
            _ => Ok(()),
        }
    }

    /// [`check`](Self::check) against what the kernel says is available now.
    pub fn check_available(&self) -> Result<(), RunError> {
        self.check(available_memory())
    }
}

/// Bytes to one decimal in the largest binary unit that fits (`94.1 GiB`).
pub fn approx(v: u64) -> String {
    for (base, unit) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if v >= base {
            return format!("{:.1} {unit}", v as f64 / base as f64);
        }
    }
    format!("{v} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_count_and_the_message_names_them() {
        let need = MemoryNeed {
            buffers: 4096 * 1000,
            endpoints: 1000,
            per_endpoint: libfabric_endpoint_bytes("tcp"),
            samples: 0,
        };
        assert_eq!(need.total(), Some(4096 * 1000 + 1000 * 96 * MIB));
        let e = need.check(Some(8 << 30)).unwrap_err().to_string();
        assert!(e.contains("1000 endpoint(s)"), "{e}");
        assert!(e.contains("8.0 GiB is available"), "{e}");
        assert!(e.contains("about 93.8 GiB of host memory"), "{e}");
        assert!(need.check(Some(200 << 30)).is_ok());
        assert!(need.check(None).is_ok());
        let both = need.both_sides();
        assert_eq!(both.total(), Some(2 * need.total().unwrap()));
        let huge = MemoryNeed {
            buffers: u64::MAX,
            endpoints: 1,
            per_endpoint: 1,
            samples: 0,
        };
        assert!(huge.check(Some(1)).is_err());
        assert_eq!(libfabric_endpoint_bytes("shm"), 8 * MIB);
        assert_eq!(libfabric_endpoint_bytes("tcp;ofi_rxm"), 96 * MIB);
    }
}
