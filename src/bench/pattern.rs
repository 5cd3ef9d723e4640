//! The payload pattern `--verify` writes before every send and checks after every receive.

/// 0, 1, ..., 255 twice: byte `j` of a pattern is `seed + (j mod 256) + (j / 256)` (mod 256),
/// so each 256-byte block of it is a window of this ramp, copied and compared whole (memcpy and
/// memcmp speeds even in an unoptimised build).
const RAMP: [u8; 512] = {
    let mut r = [0u8; 512];
    let mut i = 0;
    while i < r.len() {
        r[i] = i as u8;
        i += 1;
    }
    r
};

/// The pattern's bytes for block `k` (bytes `256 k..`) of message `seq`, `len` of them (<= 256).
#[inline]
fn block(seq: u64, k: usize, len: usize) -> &'static [u8] {
    let start = seed(seq).wrapping_add(k as u8) as usize;
    &RAMP[start..start + len]
}

#[inline]
fn seed(seq: u64) -> u8 {
    seq.wrapping_mul(0x9e37_79b9) as u8
}

/// Fills `buf` with the pattern of message `seq`.
#[inline]
pub fn fill(buf: &mut [u8], seq: u64) {
    for (k, chunk) in buf.chunks_mut(256).enumerate() {
        chunk.copy_from_slice(block(seq, k, chunk.len()));
    }
}

/// Byte `j` of message `seq`'s pattern.
#[inline]
pub fn byte_at(seq: u64, j: usize) -> u8 {
    seed(seq).wrapping_add(j as u8).wrapping_add((j >> 8) as u8)
}

/// The first byte of `buf` that differs from the pattern of message `seq`: (offset, expected, got).
#[inline]
pub fn check(buf: &[u8], seq: u64) -> Option<(usize, u8, u8)> {
    buf.chunks(256).enumerate().find_map(|(k, chunk)| {
        let want = block(seq, k, chunk.len());
        if chunk == want {
            return None;
        }
        chunk
            .iter()
            .zip(want)
            .position(|(got, want)| got != want)
            .map(|i| (k * 256 + i, want[i], chunk[i]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_check_passes_and_any_flip_is_found() {
        let mut b = vec![0u8; 4096];
        fill(&mut b, 7);
        assert_eq!(check(&b, 7), None);
        assert!(
            check(&b, 8).is_some(),
            "another message's pattern must differ"
        );
        assert_eq!(byte_at(7, 4095), b[4095]);
        assert_eq!(byte_at(7, 300), b[300]);
        b[1234] ^= 1;
        assert_eq!(
            check(&b, 7),
            Some((1234, byte_at(7, 1234), byte_at(7, 1234) ^ 1))
        );
    }

    #[test]
    fn every_byte_follows_the_formula_at_any_length_and_sequence() {
        for len in [0, 1, 255, 256, 257, 1000, 70_000] {
            for seq in [0, 1, 2, 3, 255, 256, 0x5eed, u64::MAX] {
                let mut b = vec![0u8; len];
                fill(&mut b, seq);
                for (j, &got) in b.iter().enumerate() {
                    assert_eq!(got, byte_at(seq, j), "len {len} seq {seq} byte {j}");
                }
                assert_eq!(check(&b, seq), None);
                if let Some(last) = b.last_mut() {
                    *last = last.wrapping_add(1);
                    assert_eq!(check(&b, seq).map(|c| c.0), Some(len - 1));
                }
            }
        }
    }
}
