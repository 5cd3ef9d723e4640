//! A hostile peer (issue 29, items 1 and 2): what a peer sends after a valid hello never
//! reaches libfabric or UCX unchecked, and connections that idle or present another hello
//! never hold or end a waiting target.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Which way a frame travels through the [`Mitm`].
#[derive(Clone, Copy, PartialEq)]
enum Way {
    ToTarget,
    ToInitiator,
}

/// A control-connection relay between one initiator and its target that forwards every
/// frame but one: frame `index` (1 = the hello or its verdict) going `way`, replaced by `with`.
struct Mitm {
    port: u16,
}

impl Mitm {
    fn start(target_port: u16, way: Way, index: usize, with: Vec<u8>) -> Mitm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (ini, _) = listener.accept().unwrap();
            let tgt = TcpStream::connect(("127.0.0.1", target_port)).unwrap();
            let (ini2, tgt2) = (ini.try_clone().unwrap(), tgt.try_clone().unwrap());
            let w = with.clone();
            std::thread::spawn(move || relay(ini2, tgt2, way == Way::ToTarget, index, &w));
            relay(tgt, ini, way == Way::ToInitiator, index, &with);
        });
        Mitm { port }
    }
}

/// Copies frames from `from` to `to`, replacing frame `index` when `replace`.
fn relay(mut from: TcpStream, mut to: TcpStream, replace: bool, index: usize, with: &[u8]) {
    for n in 1.. {
        let mut head = [0u8; 5];
        if from.read_exact(&mut head).is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
        if from.read_exact(&mut body).is_err() {
            break;
        }
        if replace && n == index {
            body = with.to_vec();
            head[1..].copy_from_slice(&(body.len() as u32).to_be_bytes());
        }
        if to
            .write_all(&head)
            .and_then(|_| to.write_all(&body))
            .is_err()
        {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Starts `ARGS --listen` on a free port, waiting until it listens.
fn target(env: &[(&str, &str)], args: &[&str], timeout: &str) -> (Child, u16) {
    let port = free_port();
    let child = std::process::Command::new(kvxfer_path())
        .envs(env.iter().copied())
        .args(args)
        .args([
            "--timeout",
            timeout,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(60), "no target");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// Runs `ARGS --peer 127.0.0.1:PORT`.
fn initiator(env: &[(&str, &str)], args: &[&str], port: u16, timeout: &str) -> Output {
    kvxfer()
        .envs(env.iter().copied())
        .args(args)
        .args(["--timeout", timeout, "--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(90))
        .output()
        .unwrap()
}

/// Checks that a side ended by itself with exit status 1 and only kvxfer's own lines (no
/// signal, no backtrace, no assertion), the last one an error holding `says`.
fn ended_cleanly(out: &Output, what: &str, says: &str) {
    use std::os::unix::process::ExitStatusExt;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        None,
        "{what}: killed by a signal: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.lines().all(|l| l.starts_with("kvxfer")),
        "{what}: lines that are not kvxfer's own: {err}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("kvxfer: error: "), "{what}: {err}");
    assert!(last.contains(says), "{what}: {err}");
}

const PINGPONG: &[&str] = &[
    "pingpong",
    "--provider",
    "tcp",
    "--domain",
    "lo",
    "--sizes",
    "64",
    "-I",
    "10",
];
const UCX_LAT: &[&str] = &["ucx-perf", "-t", "tag_lat", "-s", "64", "-n", "10"];
const UCX_TCP: &[(&str, &str)] = &[("UCX_TLS", "tcp"), ("UCX_NET_DEVICES", "lo")];

// Item 1: an empty endpoint name after a valid hello ends the side that received it with one
// line (before: SIGSEGV inside fi_av_insert), whichever side received it.
#[test]
fn an_empty_endpoint_name_ends_either_side_with_a_line_not_a_crash() {
    let _g = fabric_lock();
    for way in [Way::ToTarget, Way::ToInitiator] {
        let (t, port) = target(&[], PINGPONG, "15");
        let mitm = Mitm::start(port, way, 2, Vec::new());
        let ini = initiator(&[], PINGPONG, mitm.port, "15");
        let t = t.wait_with_output().unwrap();
        let (hit, other) = match way {
            Way::ToTarget => (&t, &ini),
            Way::ToInitiator => (&ini, &t),
        };
        let says = "the peer sent an endpoint name of 0 bytes, where provider tcp";
        ended_cleanly(hit, "the side that received it", says);
        ended_cleanly(other, "its peer", "the peer failed");
    }
}

// Item 1 over UCX: a 64-byte 0xff worker address is refused before ucp_ep_create (before:
// SIGABRT on UCX's assertion of the address version).
#[test]
fn a_garbage_ucx_worker_address_is_refused_before_ucx_reads_it() {
    let _g = fabric_lock();
    for way in [Way::ToTarget, Way::ToInitiator] {
        let (t, port) = target(UCX_TCP, UCX_LAT, "15");
        let mitm = Mitm::start(port, way, 2, vec![0xff; 64]);
        let ini = initiator(UCX_TCP, UCX_LAT, mitm.port, "15");
        let t = t.wait_with_output().unwrap();
        let hit = if way == Way::ToTarget { &t } else { &ini };
        ended_cleanly(
            hit,
            "the side that received it",
            "the peer sent a UCX worker address of 64 bytes",
        );
    }
}

// Item 2: six idle connections and a hello of another protocol version do not hold or end a
// waiting target: the real initiator, with a --timeout shorter than six hello time-outs,
// runs with it.
#[test]
fn idle_connections_and_a_stray_hello_do_not_starve_a_target() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let (t, port) = target(&[], PINGPONG, "40");
    let idle: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // A hello of protocol 2: answered with a verdict naming the protocol, not dropped.
    let mut stray = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let hello = br#"{"kvxfer": "9.0.0", "proto": 2, "params": {}}"#;
    let mut frame = vec![0u8];
    frame.extend((hello.len() as u32).to_be_bytes());
    frame.extend(hello);
    stray.write_all(&frame).unwrap();
    stray
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 5];
    stray.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
    stray.read_exact(&mut body).unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["param"], "control protocol", "{verdict}");
    // The real initiator, its --timeout 20 s below six 5-s hello waits plus set-up.
    let json = dir.path().join("i.json");
    let ini = kvxfer()
        .args(PINGPONG)
        .args(["--timeout", "20", "--peer", &format!("127.0.0.1:{port}")])
        .arg("--json")
        .arg(&json)
        .timeout(Duration::from_secs(90))
        .output()
        .unwrap();
    drop(idle);
    let t = t.wait_with_output().unwrap();
    let terr = String::from_utf8_lossy(&t.stderr);
    assert!(
        ini.status.success(),
        "{}",
        String::from_utf8_lossy(&ini.stderr)
    );
    assert!(t.status.success(), "{terr}");
    assert_eq!(read_doc(&json).results[0].iterations, 10);
    assert!(
        terr.contains("refused an initiator from 127.0.0.1:"),
        "{terr}"
    );
}
