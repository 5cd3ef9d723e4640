//! The one tag layout of every backend's chunks and control messages: the kind in the top
//! byte, the transfer in the next 24 bits, the chunk in the low 32. libfabric carries it as
//! the tag of tagged sends and the token of each operation, UCX as the tag of every message;
//! the ping-pong and tag channels (`crate::channel`) tag their messages with it too.

/// Most transfers one end can drive (24 bits of the tag).
pub const MAX_TRANSFERS: usize = 1 << 24;

/// The bits of a tag that hold its kind (a receive of any message of one kind masks the rest).
pub const KIND_MASK: u64 = 0xff << 56;

/// What a tag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A chunk of a transfer.
    Data = 1,
    /// The initiator's notification: a transfer is complete, this many chunks to count.
    Notify = 2,
    /// The target's confirmation of a complete transfer.
    Confirm = 3,
    /// The flush that precedes a notification (UCX puts).
    Flush = 4,
}

/// The tag of `kind` for chunk `chunk` of `transfer` (the transfer's top 8 bits are dropped:
/// ends refuse more than [`MAX_TRANSFERS`]).
#[inline]
pub const fn tag(kind: Kind, transfer: u32, chunk: u32) -> u64 {
    (kind as u64) << 56 | (transfer as u64 & 0xff_ffff) << 32 | chunk as u64
}

/// Kind, transfer and chunk of a tag; None for a kind no end sends.
#[inline]
pub fn split(tag: u64) -> Option<(Kind, u32, u32)> {
    let kind = match tag >> 56 {
        1 => Kind::Data,
        2 => Kind::Notify,
        3 => Kind::Confirm,
        4 => Kind::Flush,
        _ => return None,
    };
    Some((kind, ((tag >> 32) & 0xff_ffff) as u32, tag as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_keep_kind_transfer_and_chunk_apart() {
        let t = tag(Kind::Data, 0xab_cdef, 0xffff_fffe);
        assert_eq!(split(t), Some((Kind::Data, 0xab_cdef, 0xffff_fffe)));
        assert_eq!(t & KIND_MASK, 1 << 56);
        assert_ne!(
            tag(Kind::Notify, 1, 0) & KIND_MASK,
            tag(Kind::Confirm, 1, 0) & KIND_MASK
        );
        assert_eq!(split(0), None, "kind 0 is nobody's");
        assert_eq!(split(5 << 56), None);
        // Transfers beyond 24 bits would alias: the ends refuse them.
        assert_eq!(
            split(tag(Kind::Data, MAX_TRANSFERS as u32, 0)),
            Some((Kind::Data, 0, 0))
        );
    }
}
