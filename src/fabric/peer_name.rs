//! A peer's endpoint name, checked against the form this provider's names take before
//! libfabric sees it: fi_av_insert and fi_connect take a pointer and no length, so a name of
//! the wrong length or family would be read past its end.

use libfabric_sys as sys;

use super::error::{FabricError, Result};
use super::info::Info;

/// Longest string name (FI_ADDR_STR) accepted, NUL included (libfabric's FI_NAME_MAX).
const MAX_STR_NAME: usize = 64;

/// An endpoint name a peer sent, of the form this side's provider gives and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName(Vec<u8>);

impl PeerName {
    /// Checks `bytes` against the entry's address format; `ours` is this side's own name
    /// (fi_getname), the length every name of a fixed-size format must have.
    pub fn check(info: &Info, ours: Option<&[u8]>, bytes: Vec<u8>) -> Result<PeerName> {
        let view = info.view();
        let format = view.addr_format();
        let wrong = |want: String| {
            FabricError::PeerName(format!(
                "{} bytes{}, where provider {} ({}) names are {want}",
                bytes.len(),
                crate::units::hex_preview(&bytes),
                view.provider(),
                view.addr_format_name(),
            ))
        };
        match format {
            sys::FI_SOCKADDR_IN => sockaddr_of(&bytes, libc::AF_INET, SOCKADDR_IN)
                .then_some(())
                .ok_or_else(|| wrong(format!("{SOCKADDR_IN} bytes of family AF_INET")))?,
            sys::FI_SOCKADDR_IN6 => sockaddr_of(&bytes, libc::AF_INET6, SOCKADDR_IN6)
                .then_some(())
                .ok_or_else(|| wrong(format!("{SOCKADDR_IN6} bytes of family AF_INET6")))?,
            sys::FI_SOCKADDR => (sockaddr_of(&bytes, libc::AF_INET, SOCKADDR_IN)
                || sockaddr_of(&bytes, libc::AF_INET6, SOCKADDR_IN6))
            .then_some(())
            .ok_or_else(|| {
                wrong(format!(
                    "{SOCKADDR_IN} bytes of family AF_INET or {SOCKADDR_IN6} of AF_INET6"
                ))
            })?,
            sys::FI_ADDR_STR => string_name(&bytes, ours).then_some(()).ok_or_else(|| {
                wrong(format!(
                    "a printable string of at most {MAX_STR_NAME} bytes, NUL included{}",
                    ours.and_then(scheme)
                        .map(|s| format!(", starting {s:?}"))
                        .unwrap_or_default()
                ))
            })?,
            _ => {
                let want = ours
                    .map(<[u8]>::len)
                    .or(Some(view.src_addrlen()).filter(|&l| l > 0));
                match want {
                    Some(len) if len == bytes.len() => {}
                    Some(len) => return Err(wrong(format!("{len} bytes"))),
                    None => return Err(wrong("of a length this side cannot tell".into())),
                }
            }
        }
        Ok(PeerName(bytes))
    }

    /// The name's bytes, as libfabric reads them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

const SOCKADDR_IN: usize = std::mem::size_of::<libc::sockaddr_in>();
const SOCKADDR_IN6: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// Whether `bytes` is a sockaddr of `len` bytes whose family is `family`.
fn sockaddr_of(bytes: &[u8], family: i32, len: usize) -> bool {
    bytes.len() == len && u16::from_ne_bytes([bytes[0], bytes[1]]) as i32 == family
}

/// Whether `bytes` is a NUL-terminated printable string no longer than libfabric reads, with
/// the scheme (`fi_shm://`) of `ours` where that is known.
fn string_name(bytes: &[u8], ours: Option<&[u8]>) -> bool {
    let Some(nul) = bytes.iter().position(|&b| b == 0) else {
        return false;
    };
    let text = &bytes[..nul];
    nul > 0
        && nul < MAX_STR_NAME
        && text.iter().all(|b| b.is_ascii_graphic())
        && ours
            .and_then(scheme)
            .map_or(true, |s| text.starts_with(s.as_bytes()))
}

/// The `scheme://` a string name starts with.
fn scheme(name: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(name.split(|&b| b == 0).next()?).ok()?;
    text.find("://").map(|i| text[..i + 3].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_have_their_length_and_family() {
        let mut v4 = vec![0u8; SOCKADDR_IN];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        assert!(sockaddr_of(&v4, libc::AF_INET, SOCKADDR_IN));
        assert!(!sockaddr_of(&v4, libc::AF_INET6, SOCKADDR_IN6));
        assert!(!sockaddr_of(&[], libc::AF_INET, SOCKADDR_IN));
        assert!(!sockaddr_of(&v4[..15], libc::AF_INET, SOCKADDR_IN));
        assert!(!sockaddr_of(
            &[0xff; SOCKADDR_IN],
            libc::AF_INET,
            SOCKADDR_IN
        ));
    }

    #[test]
    fn string_names_are_bounded_printable_and_of_our_scheme() {
        let ours = b"fi_shm://1234\0".as_slice();
        assert!(string_name(b"fi_shm://99\0", Some(ours)));
        assert!(!string_name(b"fi_shm://99", Some(ours)), "no NUL");
        assert!(!string_name(b"\0", Some(ours)), "empty");
        assert!(!string_name(b"fi_tcp://1\0", Some(ours)), "another scheme");
        assert!(!string_name(b"fi_shm://\x01\0", Some(ours)), "control byte");
        let long = [b"fi_shm://".as_slice(), &[b'9'; 80], b"\0"].concat();
        assert!(!string_name(&long, Some(ours)), "too long");
        assert!(string_name(b"anything\0", None));
    }
}
