//! What a peer sends for UCX (a worker address, a packed remote key), checked before UCX sees
//! it: ucp_ep_create and ucp_ep_rkey_unpack take a pointer and no length, and assert (abort the
//! process) on a header they do not know.

use ucx_sys as sys;

use super::error::{Result, UcxError};

/// Longest worker address accepted: a few hundred bytes per device; many NICs stay far below.
pub const MAX_WORKER_ADDRESS: usize = 64 << 10;

/// Address versions UCX reads (UCP_OBJECT_VERSION_V1, _V2): the low 4 bits of the first byte.
const ADDRESS_VERSIONS: [u8; 2] = [0, 1];
/// Header flags that add fields after the header (UCP_ADDRESS_HEADER_FLAG_*).
const FLAG_DEBUG_INFO: u8 = 1 << 0;
const FLAG_WORKER_UUID: u8 = 1 << 1;
const FLAG_CLIENT_ID: u8 = 1 << 2;

/// Checks a peer's worker address as ucp_worker_get_address lays it out: its length, the
/// header's version and the fields the header announces, with at least one byte after them.
pub fn check_worker_address(bytes: &[u8]) -> Result<()> {
    let bad = |what: String| {
        UcxError::Peer(format!(
            "a UCX worker address of {} bytes{}: {what}",
            bytes.len(),
            crate::units::hex_preview(bytes)
        ))
    };
    if bytes.is_empty() || bytes.len() > MAX_WORKER_ADDRESS {
        return Err(bad(format!(
            "a worker address holds 2 to {MAX_WORKER_ADDRESS} bytes"
        )));
    }
    let version = bytes[0] & 0x0f;
    if !ADDRESS_VERSIONS.contains(&version) {
        return Err(bad(format!(
            "its header names address version {version}, UCX writes versions 0 and 1"
        )));
    }
    let (flags, mut at) = if version == 0 {
        (bytes[0] >> 4, 1usize)
    } else {
        (
            *bytes
                .get(1)
                .ok_or_else(|| bad("the header is cut".into()))?,
            2,
        )
    };
    let need = |at: &mut usize, n: usize, field: &str| {
        *at += n;
        if *at > bytes.len() {
            Err(bad(format!("it ends inside its {field}")))
        } else {
            Ok(())
        }
    };
    if flags & FLAG_WORKER_UUID != 0 {
        need(&mut at, 8, "worker id")?;
    }
    if flags & FLAG_CLIENT_ID != 0 {
        need(&mut at, 8, "client id")?;
    }
    if flags & FLAG_DEBUG_INFO != 0 {
        need(&mut at, 1, "worker name")?;
        let name = bytes[at - 1] as usize;
        need(&mut at, name, "worker name")?;
    }
    need(&mut at, 1, "device list")
}

/// Checks a peer's packed remote key as ucp_rkey_pack lays it out: the map of memory
/// domains, a memory type UCX knows, and each domain's key inside the bytes sent.
pub fn check_packed_rkey(bytes: &[u8]) -> Result<()> {
    let bad = |what: String| {
        UcxError::Peer(format!(
            "a packed UCX remote key of {} bytes{}: {what}",
            bytes.len(),
            crate::units::hex_preview(bytes)
        ))
    };
    if bytes.len() < 9 || bytes.len() > MAX_WORKER_ADDRESS {
        return Err(bad(format!(
            "a packed key holds 9 to {MAX_WORKER_ADDRESS} bytes"
        )));
    }
    let md_map = u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"));
    let mem_type = bytes[8] as u64;
    if mem_type >= sys::UCS_MEMORY_TYPE_LAST as u64 {
        return Err(bad(format!("memory type {mem_type} is none UCX knows")));
    }
    let mut at = 9usize;
    for md in (0..64).filter(|b| md_map & (1 << b) != 0) {
        let len = *bytes
            .get(at)
            .ok_or_else(|| bad(format!("it ends before the key of memory domain {md}")))?
            as usize;
        at += 1 + len;
        if at > bytes.len() {
            return Err(bad(format!("it ends inside the key of memory domain {md}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_addresses_are_refused_and_headers_walked() {
        assert!(check_worker_address(&[]).is_err());
        assert!(check_worker_address(&[0xff; 64]).is_err(), "version 15");
        assert!(check_worker_address(&vec![0; MAX_WORKER_ADDRESS + 1]).is_err());
        // Version 0 with a worker id (flags 0x2 in the high nibble): 1 + 8 + 1 bytes at least.
        assert!(check_worker_address(&[0x20, 1, 2, 3, 4, 5, 6, 7, 8, 0xff]).is_ok());
        assert!(check_worker_address(&[0x20, 1, 2, 3, 4, 5, 6, 7, 8]).is_err());
        // Version 1: a second header byte of flags; a debug name of 5 bytes must be there.
        assert!(check_worker_address(&[0x01]).is_err());
        assert!(check_worker_address(&[0x01, 0x01, 5, b'a', b'b']).is_err());
        assert!(check_worker_address(&[0x01, 0x01, 2, b'a', b'b', 0xff]).is_ok());
    }

    #[test]
    fn packed_keys_keep_each_domain_key_inside() {
        let mut key = 0b101u64.to_ne_bytes().to_vec();
        key.push(0); // host memory
        key.extend([2, 0xaa, 0xbb, 1, 0xcc]);
        assert!(check_packed_rkey(&key).is_ok());
        assert!(check_packed_rkey(&key[..key.len() - 1]).is_err());
        let mut odd = key.clone();
        odd[8] = 0xff;
        assert!(check_packed_rkey(&odd).is_err(), "unknown memory type");
        assert!(check_packed_rkey(&[0xff; 64]).is_err());
        assert!(check_packed_rkey(&[0; 4]).is_err());
    }
}
