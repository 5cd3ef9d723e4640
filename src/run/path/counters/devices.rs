//! The network devices of a host and their traffic counters in sysfs: every interface's
//! `class/net/DEV/statistics/{tx,rx}_{bytes,packets}` and every RDMA port's
//! `class/infiniband/DEV/ports/N/hw_counters/*` and `counters/port_{xmit,rcv}_{data,packets}`,
//! with their line rates (`speed`, `rate`). The files are found once; a reading opens each once.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What kind of device a counter set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    /// A network interface (`/sys/class/net`).
    Net,
    /// A port of an RDMA device (`/sys/class/infiniband`).
    Rdma,
}

/// Why a counter has no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// The file is not there.
    Missing,
    /// The file could not be read (the error's text).
    Unreadable(String),
    /// The file holds no whole number (what it holds, shortened).
    NotANumber(String),
    /// The counter is smaller after the span than before (a reset or a re-created device).
    WentBack,
    /// A 32-bit port counter stuck at its maximum.
    Saturated,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unknown::Missing => write!(f, "no such file"),
            Unknown::Unreadable(e) => write!(f, "unreadable: {e}"),
            Unknown::NotANumber(s) => write!(f, "not a number: {s:?}"),
            Unknown::WentBack => write!(f, "went back during the span"),
            Unknown::Saturated => write!(f, "saturated 32-bit counter"),
        }
    }
}

/// A counter's reading: its value, or why it has none.
pub type Reading = Result<u64, Unknown>;

/// One device's counter files and line rate, as found.
#[derive(Debug, Clone)]
pub struct Device {
    /// `lo`, `eth0`; an RDMA port as its device (`efa0`), or `DEV/N` when it has several ports.
    pub name: String,
    /// Interface or RDMA port.
    pub class: DeviceClass,
    /// The loopback interface: it counts every packet as sent and as received.
    pub loopback: bool,
    /// Line rate, bits/s (None: the device reports none, as lo and veth do).
    pub line_rate_bps: Option<f64>,
    /// (counter name, file), read in this order.
    pub files: Vec<(String, PathBuf)>,
}

/// Net interface counters kvxfer reads (each reported unknown when absent).
const NET_FILES: [&str; 4] = ["tx_bytes", "rx_bytes", "tx_packets", "rx_packets"];
/// RDMA port counters (in `ports/N/counters`), read where they exist.
const PORT_FILES: [&str; 4] = [
    "port_xmit_data",
    "port_rcv_data",
    "port_xmit_packets",
    "port_rcv_packets",
];

/// Every network device under the sysfs root `sysfs`, sorted by class then name.
pub fn discover(sysfs: &Path) -> Vec<Device> {
    let mut out = net_devices(sysfs);
    out.extend(rdma_ports(sysfs));
    out
}

/// The names of the entries of `dir` but hidden ones, sorted (none when it cannot be listed).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn net_devices(sysfs: &Path) -> Vec<Device> {
    let class = sysfs.join("class/net");
    entries(&class)
        .into_iter()
        .filter(|n| class.join(n).is_dir())
        .map(|name| {
            let dir = class.join(&name);
            let flags = std::fs::read_to_string(dir.join("flags")).ok();
            let loopback = name == "lo"
                || flags
                    .as_deref()
                    .and_then(parse_hex)
                    .is_some_and(|f| f & 0x8 != 0);
            // Mb/s; virtual interfaces answer with an error or -1.
            let speed = std::fs::read_to_string(dir.join("speed"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|&mbps| mbps > 0)
                .map(|mbps| mbps as f64 * 1e6);
            let files = NET_FILES
                .iter()
                .map(|f| (f.to_string(), dir.join("statistics").join(f)))
                .collect();
            Device {
                name,
                class: DeviceClass::Net,
                loopback,
                line_rate_bps: speed,
                files,
            }
        })
        .collect()
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

fn rdma_ports(sysfs: &Path) -> Vec<Device> {
    let class = sysfs.join("class/infiniband");
    let mut out = Vec::new();
    for dev in entries(&class) {
        let ports_dir = class.join(&dev).join("ports");
        let ports = entries(&ports_dir);
        for port in &ports {
            let dir = ports_dir.join(port);
            let name = if ports.len() == 1 {
                dev.clone()
            } else {
                format!("{dev}/{port}")
            };
            let mut files: Vec<(String, PathBuf)> = entries(&dir.join("hw_counters"))
                .into_iter()
                .filter(|c| c != "lifespan")
                .map(|c| {
                    let p = dir.join("hw_counters").join(&c);
                    (c, p)
                })
                .collect();
            for f in PORT_FILES {
                let p = dir.join("counters").join(f);
                if p.exists() {
                    files.push((f.to_string(), p));
                }
            }
            let rate = std::fs::read_to_string(dir.join("rate"))
                .ok()
                .and_then(|r| parse_rate(&r));
            out.push(Device {
                name,
                class: DeviceClass::Rdma,
                loopback: false,
                line_rate_bps: rate,
                files,
            });
        }
    }
    out
}

/// An RDMA port's `rate` ("100 Gb/sec (4X EDR)", "2.5 Gb/sec (1X SDR)") in bits/s.
pub fn parse_rate(s: &str) -> Option<f64> {
    let mut words = s.split_whitespace();
    let n: f64 = words.next()?.parse().ok()?;
    let scale = match words.next()? {
        "Gb/sec" => 1e9,
        "Mb/sec" => 1e6,
        "Tb/sec" => 1e12,
        _ => return None,
    };
    (n.is_finite() && n > 0.0).then_some(n * scale)
}

impl Device {
    /// Reads every counter file of the device once, in [`Device::files`] order.
    pub fn read(&self, buf: &mut [u8; 64]) -> Vec<Reading> {
        self.files
            .iter()
            .map(|(_, p)| read_number(p, buf))
            .collect()
    }

    /// The index of counter `name` among the files.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.files.iter().position(|(n, _)| n == name)
    }
}

/// A sysfs counter file's whole number.
fn read_number(path: &Path, buf: &mut [u8; 64]) -> Reading {
    let mut f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Unknown::Missing,
        _ => Unknown::Unreadable(e.to_string()),
    })?;
    let mut n = 0;
    loop {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                // sysfs hands over an attribute in one read: a line ends it.
                if n == buf.len() || buf[n - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Unknown::Unreadable(e.to_string())),
        }
    }
    let text = std::str::from_utf8(&buf[..n]).unwrap_or("").trim();
    text.parse::<u64>().map_err(|_| {
        let shown: String = String::from_utf8_lossy(&buf[..n])
            .trim()
            .chars()
            .take(24)
            .collect();
        Unknown::NotANumber(shown)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_the_kernels_spellings() {
        assert_eq!(parse_rate("100 Gb/sec (4X EDR)\n"), Some(100e9));
        assert_eq!(parse_rate("2.5 Gb/sec (1X SDR)"), Some(2.5e9));
        assert_eq!(parse_rate("400 Gb/sec"), Some(400e9));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate("0 Gb/sec"), None);
    }

    #[test]
    fn numbers_and_the_reasons_there_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = [0u8; 64];
        let p = dir.path().join("n");
        std::fs::write(&p, "12345\n").unwrap();
        assert_eq!(read_number(&p, &mut buf), Ok(12345));
        std::fs::write(&p, "lots\n").unwrap();
        assert_eq!(
            read_number(&p, &mut buf),
            Err(Unknown::NotANumber("lots".into()))
        );
        assert_eq!(
            read_number(&dir.path().join("gone"), &mut buf),
            Err(Unknown::Missing)
        );
        // A folder where a counter should be: it cannot be read.
        let d = dir.path().join("dir");
        std::fs::create_dir(&d).unwrap();
        assert!(matches!(
            read_number(&d, &mut buf),
            Err(Unknown::Unreadable(_))
        ));
    }

    #[test]
    fn this_host_has_a_loopback_with_counters() {
        let devs = discover(Path::new("/sys"));
        let lo = devs.iter().find(|d| d.name == "lo").expect("lo");
        assert!(lo.loopback && lo.line_rate_bps.is_none());
        let mut buf = [0u8; 64];
        assert!(lo.read(&mut buf).iter().all(Result::is_ok));
    }
}
