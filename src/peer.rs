//! What the two peers of a connection share: which side each is, and the out-of-band swap of
//! their addresses.

/// Which side of a connection, or of a two-sided measurement, this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Starts the exchange and times it (sends first, writes or reads); connects.
    Initiator,
    /// Answers or receives; listens (MSG: owns the passive endpoint).
    Target,
}

impl Side {
    /// Its name in result documents and messages: `initiator` or `target`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Initiator => "initiator",
            Side::Target => "target",
        }
    }
}

/// Sends this side's address bytes (a fabric endpoint name, a UCX worker address) and returns
/// the peer's, out of band: over a control connection, or within this process.
pub type Exchange<'a> = dyn FnMut(&[u8]) -> std::result::Result<Vec<u8>, String> + 'a;
