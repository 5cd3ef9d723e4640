//! `--staging host`: a VRAM side whose transfers go through pinned host memory. The network
//! moves the host bounce buffer (no FI_HMEM or CUDA-aware transport needed); before sending,
//! the device bytes are copied into it, after receiving it is copied to the device. Each copy
//! is timed apart from the transfer and reported as the result's `staging` figures.

use std::time::Instant;

use serde::Serialize;

use crate::mem::{MemError, SharedRegion};
use crate::run::segments::{MemKinds, SegKind};
use crate::run::RunError;

/// The device regions behind one worker's host bounce regions, and the copy times.
pub struct Staging {
    device: Vec<SharedRegion>,
    copy_ns: Vec<u64>,
}

/// Which way a side's staging copies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Device to host before sending (the data's source side).
    DeviceToHost,
    /// Host to device after receiving (the data's destination side).
    HostToDevice,
}

impl Staging {
    /// The device regions for a side of `kind` staged by `mem` (None: not staged), `parts`
    /// regions of `part_len` bytes.
    pub fn for_side(
        mem: &MemKinds,
        kind: SegKind,
        parts: usize,
        part_len: usize,
    ) -> Result<Option<Staging>, RunError> {
        if !mem.staging || kind != SegKind::Vram {
            return Ok(None);
        }
        let all = mem.alloc(SegKind::Vram, parts * part_len)?;
        let device = SharedRegion::split(all, parts, part_len)
            .ok_or_else(|| RunError::Config("cannot split the staged device memory".into()))?;
        Ok(Some(Staging::over(device)))
    }

    /// Staging over given device regions (host memory stands in for them in tests).
    pub fn over(device: Vec<SharedRegion>) -> Staging {
        Staging {
            device,
            copy_ns: Vec::new(),
        }
    }

    /// Device region `i` (the bytes `--verify` fills and checks).
    pub fn device_mut(&mut self, i: usize) -> Option<&mut SharedRegion> {
        self.device.get_mut(i)
    }

    /// Copies device region `i` into `host` (before sending); returns the copy's time in ns.
    pub fn out(&mut self, i: usize, host: &mut SharedRegion) -> Result<u64, MemError> {
        let dev = &self.device[i];
        let t = Instant::now();
        match host.as_mut_slice() {
            Some(bytes) => dev.copy_out(bytes)?,
            None => return Err(not_host()),
        }
        Ok(t.elapsed().as_nanos() as u64)
    }

    /// Copies `host` into device region `i` (after receiving); returns the copy's time in ns.
    pub fn back(&mut self, i: usize, host: &SharedRegion) -> Result<u64, MemError> {
        let bytes = host.as_slice().ok_or_else(not_host)?;
        let t = Instant::now();
        self.device[i].copy_in(bytes)?;
        Ok(t.elapsed().as_nanos() as u64)
    }

    /// Keeps the time of one iteration's copies (a timed iteration's).
    pub fn record(&mut self, ns: u64) {
        self.copy_ns.push(ns);
    }

    /// The recorded copy times, ns, one per timed iteration.
    pub fn take(self) -> Vec<u64> {
        self.copy_ns
    }
}

fn not_host() -> MemError {
    MemError::NotHost {
        what: "the staging bounce buffer",
    }
}

/// The `staging` figures of a result: copy times per iteration and the copy bandwidth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StagingFigures {
    /// Always "host": the bounce buffer.
    pub through: &'static str,
    /// Which way this side copies.
    pub direction: Direction,
    /// Bytes copied per iteration (all of a worker's transfers).
    pub bytes_per_iteration: u64,
    /// Iterations measured (over all workers).
    pub samples: usize,
    /// Median copy time, ms.
    pub copy_ms_p50: f64,
    /// Longest copy, ms.
    pub copy_ms_max: f64,
    /// Mean copy time, ms.
    pub copy_ms_mean: f64,
    /// bytes_per_iteration over the median copy time, 10^9 B/s.
    pub copy_gbps_p50: f64,
}

impl StagingFigures {
    /// Summarises copy times `ns` of `bytes` each; None without samples.
    pub fn of(direction: Direction, bytes: u64, ns: &[u64]) -> Option<StagingFigures> {
        if ns.is_empty() {
            return None;
        }
        let mut v = ns.to_vec();
        v.sort_unstable();
        let p50 = v[(v.len() - 1) / 2] as f64;
        let ms = |x: f64| x / 1e6;
        Some(StagingFigures {
            through: "host",
            direction,
            bytes_per_iteration: bytes,
            samples: v.len(),
            copy_ms_p50: ms(p50),
            copy_ms_max: ms(*v.last().unwrap() as f64),
            copy_ms_mean: ms(v.iter().sum::<u64>() as f64 / v.len() as f64),
            copy_gbps_p50: if p50 > 0.0 { bytes as f64 / p50 } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::pattern;
    use crate::mem::HostBuffer;

    fn regions(parts: usize, len: usize) -> Vec<SharedRegion> {
        SharedRegion::split(HostBuffer::new(parts * len).unwrap(), parts, len).unwrap()
    }

    /// Host memory stands in for the device: the staging order and its timing are what is
    /// tested; the device copy itself is cuMemcpy, run only on a GPU.
    #[test]
    fn a_staged_transfer_copies_out_before_and_back_after_and_times_each_copy() {
        let mut sender = Staging::over(regions(2, 4096));
        let mut receiver = Staging::over(regions(2, 4096));
        let mut wire_out = regions(2, 4096);
        let mut wire_in = regions(2, 4096);
        for t in 0..2 {
            sender
                .device_mut(t)
                .unwrap()
                .fill_with(|b| pattern::fill(b, t as u64))
                .unwrap();
            let ns = sender.out(t, &mut wire_out[t]).unwrap();
            sender.record(ns);
            // The "network": host bounce to host bounce.
            let bytes = wire_out[t].as_slice().unwrap().to_vec();
            wire_in[t].copy_in(&bytes).unwrap();
            let ns = receiver.back(t, &wire_in[t]).unwrap();
            receiver.record(ns);
            let got = receiver.device_mut(t).unwrap();
            assert_eq!(
                got.read_with(|b| pattern::check(b, t as u64)).unwrap(),
                None
            );
        }
        // The other region of the receiver was not touched by transfer 0's copy back.
        let copies = receiver.take();
        assert_eq!(copies.len(), 2);
        let f = StagingFigures::of(Direction::HostToDevice, 8192, &copies).unwrap();
        assert_eq!((f.samples, f.through), (2, "host"));
        assert!(f.copy_ms_max >= f.copy_ms_p50 && f.copy_ms_p50 > 0.0);
    }

    #[test]
    fn figures_are_median_max_mean_and_bandwidth_of_the_median() {
        let f =
            StagingFigures::of(Direction::DeviceToHost, 1_000_000, &[4_000, 1_000, 2_000]).unwrap();
        assert_eq!(f.copy_ms_p50, 0.002);
        assert_eq!(f.copy_ms_max, 0.004);
        assert!((f.copy_ms_mean - 0.007 / 3.0).abs() < 1e-12);
        assert_eq!(f.copy_gbps_p50, 500.0, "1 MB in 2 us");
        assert!(StagingFigures::of(Direction::DeviceToHost, 1, &[]).is_none());
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["direction"], "device_to_host");
    }

    #[test]
    fn copies_longer_than_a_region_are_refused() {
        let mut r = regions(1, 64).pop().unwrap();
        assert!(r.copy_in(&[0u8; 65]).is_err());
        assert!(r.copy_out(&mut [0u8; 65]).is_err());
        r.copy_in(&[7u8; 64]).unwrap();
        let mut back = [0u8; 64];
        r.copy_out(&mut back).unwrap();
        assert_eq!(back, [7u8; 64]);
    }
}
