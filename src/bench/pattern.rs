//! The payload pattern `--verify` writes before every send and checks after every receive.

/// Fills `buf` with the pattern of message `seq`.
#[inline]
pub fn fill(buf: &mut [u8], seq: u64) {
    let seed = seq.wrapping_mul(0x9e37_79b9) as u8;
    for (j, b) in buf.iter_mut().enumerate() {
        *b = seed.wrapping_add(j as u8).wrapping_add((j >> 8) as u8);
    }
}

/// Byte `j` of message `seq`'s pattern.
#[inline]
pub fn byte_at(seq: u64, j: usize) -> u8 {
    let seed = seq.wrapping_mul(0x9e37_79b9) as u8;
    seed.wrapping_add(j as u8).wrapping_add((j >> 8) as u8)
}

/// The first byte of `buf` that differs from the pattern of message `seq`: (offset, expected, got).
#[inline]
pub fn check(buf: &[u8], seq: u64) -> Option<(usize, u8, u8)> {
    let seed = seq.wrapping_mul(0x9e37_79b9) as u8;
    buf.iter().enumerate().find_map(|(j, &b)| {
        let want = seed.wrapping_add(j as u8).wrapping_add((j >> 8) as u8);
        (b != want).then_some((j, want, b))
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
        assert_eq!(check(&b, 7).map(|c| c.0), Some(1234));
    }
}
