//! The version query a kvxfer answers on its control port (`kvxfer doctor --peer`).

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Oob, Result, PROTO};

/// A connection that only asks what the listening kvxfer is (`kvxfer doctor --peer`); a
/// listener answers with [`About`] and waits on. Older listeners drop it as not a hello.
#[derive(Serialize, Deserialize)]
pub(super) struct Query {
    pub(super) query: String,
}

pub(super) const ABOUT: &str = "about";

/// What a kvxfer says of itself when asked on its control port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct About {
    /// Its version (`0.1.0`).
    pub kvxfer: String,
    /// The commit it was built from.
    pub git_sha: String,
    /// Its build features (`cuda`).
    pub features: Vec<String>,
    /// The control protocol it speaks.
    pub proto: u32,
}

impl About {
    /// This kvxfer.
    pub fn this() -> About {
        About {
            kvxfer: env!("CARGO_PKG_VERSION").to_string(),
            git_sha: env!("KVXFER_GIT_SHA").to_string(),
            features: env!("KVXFER_FEATURES")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            proto: PROTO,
        }
    }
}

/// Asks the kvxfer listening at `addr` what it is, all within `timeout`.
pub fn query_about(addr: SocketAddr, timeout: Duration) -> Result<About> {
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    let mut oob = Oob::new(stream, timeout)?;
    oob.send_json(&Query {
        query: ABOUT.to_string(),
    })?;
    oob.recv_json_by(deadline)
}
