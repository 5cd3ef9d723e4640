//! The fi_pingpong and ucx_perftest parsers on live output of the stock tools (Debian's fi_pingpong,
//! the set-up's UCX 1.22 ucx_perftest), run on loopback with tiny iteration counts.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvxfer::reference::{parse, ParseOptions, Tool};

const LIMIT: Duration = Duration::from_secs(30);

/// Busy-polling pairs on a 2-core machine: one pair at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tool's path on PATH, or None after printing the skip line.
fn installed(test: &str, tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        println!("SKIPPED {test}: {tool} not installed");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child killed when dropped, so a failing assertion leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the child up to `LIMIT`; returns (success, stdout + stderr).
fn finish(mut g: Guard) -> (bool, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = g.0.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    if let Some(mut o) = g.0.stdout.take() {
        o.read_to_string(&mut out).unwrap();
    }
    if let Some(mut e) = g.0.stderr.take() {
        let mut err = String::new();
        e.read_to_string(&mut err).unwrap();
        out.push_str(&err);
    }
    (status.is_some_and(|s| s.success()), out)
}

fn spawn(cmd: &mut Command) -> Guard {
    Guard(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    )
}

/// Runs a server and its client; retries the client while the server is still starting.
fn pair(server: &mut Command, client: impl Fn() -> Command) -> (String, String) {
    let _one_at_a_time = serial();
    let srv = spawn(server);
    let mut last = String::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(150));
        let (ok, out) = finish(spawn(&mut client()));
        if ok {
            let (sok, sout) = finish(srv);
            assert!(sok, "server failed:\n{sout}");
            return (sout, out);
        }
        last = out;
    }
    panic!("client never succeeded; last output:\n{last}");
}

/// Half the loop time per transfer times bytes per microsecond is the message size.
fn check_fabtests_row(text: &str, size: u64, iters: u64) {
    let d = parse(Tool::FiPingpong, text, &ParseOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(d.results.len(), 1, "{text}");
    let r = &d.results[0];
    assert_eq!(r.message_size, size);
    assert_eq!(r.iterations, iters);
    assert_eq!(r.extra["acked"], iters);
    let usec = r.latency_us.unwrap().mean;
    let mbps = r.bandwidth_mbps.unwrap();
    assert!(usec > 0.0 && usec < 100_000.0, "usec/xfer {usec}");
    // MB/sec x usec/xfer = bytes per transfer, up to the two printed decimals of each.
    let bytes = mbps * usec;
    let slack = 0.005 * usec + 0.005 * mbps + 0.01;
    assert!(
        (bytes - size as f64).abs() <= slack,
        "MB/sec {mbps} x usec/xfer {usec} = {bytes}, not {size}\n{text}"
    );
    // time = usec/xfer x 2 transfers per iteration, printed with two decimals.
    let secs = r.extra["time_s"].as_f64().unwrap();
    let want = usec * 2.0 * iters as f64 / 1e6;
    assert!(
        (secs - want).abs() <= 0.006,
        "time {secs} s, expected {want}\n{text}"
    );
    assert!((r.bandwidth_gbps.unwrap() - mbps / 1000.0).abs() < 1e-12);
}

fn fi_pingpong(test: &str, provider: &str, endpoint: &str, domain: Option<&str>) {
    let Some(bin) = installed(test, "fi_pingpong") else {
        return;
    };
    let port = free_port().to_string();
    let common = |c: &mut Command| {
        c.args(["-p", provider, "-e", endpoint, "-I", "20", "-S", "64"]);
        if let Some(d) = domain {
            c.args(["-d", d]);
        }
    };
    let mut server = Command::new(&bin);
    common(&mut server);
    server.args(["-B", &port]);
    let (sout, cout) = pair(&mut server, || {
        let mut c = Command::new(&bin);
        common(&mut c);
        c.args(["-P", &port, "127.0.0.1"]);
        c
    });
    check_fabtests_row(&cout, 64, 20);
    check_fabtests_row(&sout, 64, 20);
}

#[test]
fn fi_pingpong_tcp_msg_live() {
    fi_pingpong("fi_pingpong_tcp_msg_live", "tcp", "msg", Some("lo"));
}

#[test]
fn fi_pingpong_shm_rdm_live() {
    fi_pingpong("fi_pingpong_shm_rdm_live", "shm", "rdm", None);
}

/// The set-up's UCX 1.22 ucx_perftest (`.cache/ucx/bin`) when installed, else PATH's.
fn ucx_perftest(test_name: &str) -> Option<PathBuf> {
    let copy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/ucx/bin/ucx_perftest");
    if copy.is_file() {
        return Some(copy);
    }
    installed(test_name, "ucx_perftest")
}

fn ucx(test_name: &str, test: &str, extra: &[&str]) -> Option<(String, String)> {
    let bin = ucx_perftest(test_name)?;
    let port = free_port().to_string();
    let env = |c: &mut Command| {
        c.env("UCX_TLS", "tcp").env("UCX_NET_DEVICES", "lo");
    };
    let mut server = Command::new(&bin);
    env(&mut server);
    server.args(["-p", &port]);
    Some(pair(&mut server, || {
        let mut c = Command::new(&bin);
        env(&mut c);
        c.args([
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            test,
            "-s",
            "64",
            "-n",
            "100",
        ]);
        c.args(extra);
        c
    }))
}

#[test]
fn ucx_perftest_tag_lat_live() {
    let Some((server, client)) = ucx("ucx_perftest_tag_lat_live", "tag_lat", &[]) else {
        return;
    };
    // The client does not print the size: it is given, or read from the server's box.
    let given = ParseOptions {
        message_size: Some(64),
        ..Default::default()
    };
    let d = parse(Tool::UcxPerftest, &client, &given).unwrap_or_else(|e| panic!("{e}\n{client}"));
    let both = parse(
        Tool::UcxPerftest,
        &format!("{server}{client}"),
        &ParseOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{server}{client}"));
    assert_eq!(both.results[0].message_size, 64);
    assert_eq!(both.config["test"], "tag match latency");
    assert_eq!(d.bench, "tag_lat");
    let r = &d.results[0];
    assert_eq!(r.iterations, 100);
    let lat = r.latency_us.unwrap().mean;
    assert!(lat > 0.0 && lat < 100_000.0, "latency {lat}");
    // Overall MB/s (2^20) over overall messages/s is the message size.
    let rate = r.extra["msg_rate_overall"].as_f64().unwrap();
    let mib = r.extra["bw_overall_mib_s"].as_f64().unwrap();
    // Printed with two decimals: the MiB/s figure is within 0.005 of 64 B x rate.
    let want = 64.0 * rate / 1_048_576.0;
    assert!(
        (mib - want).abs() <= 0.0051,
        "{mib} MiB/s vs {rate} msg/s x 64 B\n{client}"
    );
    assert!((r.bandwidth_mbps.unwrap() - mib * 1.048576).abs() < 1e-6);
}

#[test]
fn ucx_perftest_tag_bw_csv_live() {
    let Some((_, client)) = ucx("ucx_perftest_tag_bw_csv_live", "tag_bw", &["-v"]) else {
        return;
    };
    let opts = ParseOptions {
        message_size: Some(64),
        ..Default::default()
    };
    let d = parse(Tool::UcxPerftest, &client, &opts).unwrap_or_else(|e| panic!("{e}\n{client}"));
    let r = &d.results[0];
    assert_eq!(r.iterations, 100, "{client}");
    assert!(r.bandwidth_gbps.unwrap() > 0.0);
    assert!(r.extra.contains_key("msg_rate_overall"));
}
