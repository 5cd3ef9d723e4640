//! Option parsers and helpers shared by the measurement subcommands.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--endpoint`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EndpointArg {
    /// Reliable datagram (fi_pingpong -e rdm; what EFA offers).
    Rdm,
    /// Connected message endpoint.
    Msg,
}

impl EndpointArg {
    /// The option's spelling.
    pub fn name(self) -> &'static str {
        match self {
            EndpointArg::Rdm => "rdm",
            EndpointArg::Msg => "msg",
        }
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// fi_send / fi_recv.
    Msg,
    /// fi_tsend / fi_trecv.
    Tagged,
}

/// clap value parser for a size list.
pub fn parse_sizes(s: &str) -> Result<Vec<u64>, String> {
    kvxfer::units::parse_size_list(s).map_err(|e| e.to_string())
}

/// `[ADDR][:PORT]` for --listen: empty means all addresses on the default port.
pub fn parse_listen(s: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            default_port,
        ));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| anyhow::anyhow!("--listen {s:?}: {port:?} is not a port number"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    anyhow::bail!("--listen {s:?}: expected ADDR, ADDR:PORT or :PORT with a numeric address")
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("", 47590).unwrap().to_string(),
            "0.0.0.0:47590"
        );
        assert_eq!(
            parse_listen(":9000", 1).unwrap().to_string(),
            "0.0.0.0:9000"
        );
        assert_eq!(
            parse_listen("127.0.0.1", 47590).unwrap().to_string(),
            "127.0.0.1:47590"
        );
        assert_eq!(
            parse_listen("127.0.0.1:5", 1).unwrap().to_string(),
            "127.0.0.1:5"
        );
        assert!(parse_listen("host:port", 1).is_err());
        assert!(parse_listen(":99999", 1).is_err());
    }
}
