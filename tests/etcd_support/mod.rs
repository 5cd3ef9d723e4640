//! A real etcd server for the tests: Debian's `etcd` on free ports of an address, its data in
//! a temporary folder, stopped when dropped.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvxfer::bootstrap::etcd::Etcd;

/// A running etcd server.
pub struct EtcdServer {
    child: Child,
    _data: tempfile::TempDir,
    /// The client URL, http://HOST:PORT.
    pub url: String,
}

impl EtcdServer {
    /// Starts etcd on 127.0.0.1, or None (with a SKIPPED line naming `test`) when the binary
    /// is missing.
    pub fn start(test: &str) -> Option<EtcdServer> {
        Self::start_on(test, "127.0.0.1")
    }

    /// Starts etcd on `ip`.
    pub fn start_on(test: &str, ip: &str) -> Option<EtcdServer> {
        if !crate::common::have("etcd") {
            crate::common::skip(
                test,
                "no etcd binary (Debian's etcd-server; scripts/setup.sh --test installs it)",
            );
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let (client, peer) = (crate::common::free_port(), crate::common::free_port());
        let url = format!("http://{ip}:{client}");
        let child = Command::new("etcd")
            .args(["--name", "kvxfer-test", "--data-dir"])
            .arg(data.path())
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &format!("http://{ip}:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("kvxfer-test=http://{ip}:{peer}"),
            ])
            .args(["--log-level", "error", "--logger", "zap"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let server = EtcdServer {
            child,
            _data: data,
            url,
        };
        server.wait_ready();
        Some(server)
    }

    /// Waits until the server grants a lease (it has elected itself leader).
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(c) = Etcd::connect(&self.url, Duration::from_secs(2), Duration::from_secs(1))
            {
                let _ = c.close();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd at {} did not become ready within 20 s", self.url);
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let c = Etcd::connect(&self.url, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        let keys = c.get_prefix(prefix).unwrap();
        let _ = c.close();
        keys.into_iter().map(|(k, _)| k).collect()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
