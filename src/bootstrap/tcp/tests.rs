use super::*;

fn fp(iters: u32) -> Fingerprint {
    Fingerprint::default()
        .with("provider", "tcp")
        .with("iterations", iters)
}

#[test]
fn matching_peers_exchange_and_synchronise() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(10), Duration::from_secs(5)).unwrap();
        let got = o.exchange(b"target-name").unwrap();
        o.barrier().unwrap();
        got
    });
    let mut o = Oob::connect(&addr, &fp(10), Duration::from_secs(5)).unwrap();
    assert_eq!(o.exchange(b"initiator-name").unwrap(), b"target-name");
    o.barrier().unwrap();
    assert_eq!(t.join().unwrap(), b"initiator-name");
    assert!(o.local_ip().unwrap().is_loopback());
}

#[test]
fn mismatch_names_the_parameter_on_both_sides() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let t = std::thread::spawn(move || l.accept(&fp(10), Duration::from_secs(2)).err());
    let e = Oob::connect(&addr, &fp(20), Duration::from_secs(5))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("iterations is 20 here but 10 on the peer"),
        "{e}"
    );
    // The target refused it and waited on to its time-out, naming what it refused.
    let te = t.join().unwrap().unwrap();
    assert!(matches!(te, BootstrapError::NoInitiator { .. }), "{te}");
    assert!(
        te.to_string().contains("refused one initiator, 127.0.0.1:"),
        "{te}"
    );
    assert!(
        te.to_string()
            .contains("iterations is 10 here but 20 on the peer"),
        "{te}"
    );
}

#[test]
fn another_subcommand_is_named_before_any_parameter() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let xfer = Fingerprint::default()
        .with("bench", "xfer")
        .with("backend", "libfabric");
    let pp = Fingerprint::default().with("bench", "rma_pingpong");
    let t = std::thread::spawn(move || l.accept(&xfer, Duration::from_secs(2)).err());
    let e = Oob::connect(&addr, &pp, Duration::from_secs(5))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "the peer runs `kvxfer xfer`, this side `kvxfer rma-pingpong`: start both sides \
         with the same subcommand and options"
    );
    let te = t.join().unwrap().unwrap().to_string();
    assert!(
        te.contains("the peer runs `kvxfer rma-pingpong`, this side `kvxfer xfer`"),
        "{te}"
    );
}

#[test]
fn a_failure_reaches_the_peer_waiting_for_data() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(1), Duration::from_secs(5)).unwrap();
        o.report_failure("provider tcp has no domain lo");
    });
    let mut o = Oob::connect(&addr, &fp(1), Duration::from_secs(5)).unwrap();
    let e = o.exchange(b"name").err().unwrap().to_string();
    assert_eq!(e, "the peer failed: provider tcp has no domain lo");
    t.join().unwrap();
}

#[test]
fn an_initiator_started_first_meets_a_target_that_binds_later() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let ini = std::thread::spawn(move || {
        let mut o = Oob::connect(&addr, &fp(3), Duration::from_secs(10))?;
        o.exchange(b"late")
    });
    // The target binds while the initiator is retrying; its one accept must be the run.
    std::thread::sleep(Duration::from_millis(120));
    let l = OobListener::bind(format!("127.0.0.1:{port}").parse().unwrap()).unwrap();
    let mut o = l.accept(&fp(3), Duration::from_secs(10)).unwrap();
    assert_eq!(o.exchange(b"target").unwrap(), b"late");
    assert_eq!(ini.join().unwrap().unwrap(), b"target");
}

#[test]
fn a_socket_joined_to_itself_is_told_from_a_connection() {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType};
    use nix::sys::socket::{setsockopt, sockopt::ReuseAddr, SockaddrIn};
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // What an initiator retrying toward a port nobody listens on can be given: its own port
    // as the source, and the simultaneous open joins the socket to itself.
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    setsockopt(&fd, ReuseAddr, &true).unwrap();
    let here = SockaddrIn::new(127, 0, 0, 1, port);
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &here).unwrap();
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &here).unwrap();
    let joined = TcpStream::from(fd);
    assert!(connected_to_itself(&joined));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let real = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    assert!(!connected_to_itself(&real));
}

#[test]
fn unreachable_peer_fails_within_timeout() {
    // Bind then drop to find a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let e = Oob::connect(
        &format!("127.0.0.1:{port}"),
        &fp(1),
        Duration::from_millis(500),
    )
    .err()
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(matches!(e, BootstrapError::Unreachable { .. }), "{e}");
}

#[test]
fn port_in_use_is_reported() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let e = OobListener::bind(l.local_addr()).err().unwrap().to_string();
    assert!(e.contains("cannot listen on 127.0.0.1:"), "{e}");
}

#[test]
fn a_failure_report_where_json_was_due_names_the_peers_error() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(1), Duration::from_secs(5)).unwrap();
        o.report_failure("fi_mr_regattr failed: No space left");
    });
    let mut o = Oob::connect(&addr, &fp(1), Duration::from_secs(5)).unwrap();
    let e = o.recv_json::<Vec<u32>>().unwrap_err();
    t.join().unwrap();
    assert!(
        matches!(&e, BootstrapError::PeerFailed(m) if m.contains("fi_mr_regattr")),
        "{e}"
    );
}

#[test]
fn connections_without_a_hello_are_dropped_and_the_target_waits_on() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(2), Duration::from_secs(20))?;
        o.exchange(b"target")
    });
    // A health check (connect, close), an HTTP probe, and a silent connection.
    drop(TcpStream::connect(addr).unwrap());
    let mut http = TcpStream::connect(addr).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let silent = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let mut o = Oob::connect(&addr.to_string(), &fp(2), Duration::from_secs(20)).unwrap();
    assert_eq!(o.exchange(b"initiator").unwrap(), b"target");
    assert_eq!(t.join().unwrap().unwrap(), b"initiator");
    // The silent one held the target for at most the hello time-out.
    assert!(start.elapsed() < HELLO_TIMEOUT + Duration::from_secs(3));
    drop((http, silent));
}

#[test]
fn a_target_with_only_strays_gives_up_at_its_timeout() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr();
    let _silent = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    let e = l.accept(&fp(1), Duration::from_millis(800)).err().unwrap();
    assert!(matches!(e, BootstrapError::NoInitiator { .. }), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_silent_peer_ends_a_barrier_at_the_timeout() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let o = l.accept(&fp(1), Duration::from_secs(5)).unwrap();
        // Holds the connection open, answering nothing, until told.
        let _ = rx.recv();
        drop(o);
    });
    let mut o = Oob::connect(&addr, &fp(1), Duration::from_millis(700)).unwrap();
    let start = Instant::now();
    let e = o.barrier().unwrap_err();
    let waited = start.elapsed();
    tx.send(()).unwrap();
    t.join().unwrap();
    // The listener is this process's: a one-process run's wording.
    assert!(
        matches!(
            e,
            BootstrapError::Silent {
                in_process: true,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("0.7 s"), "{e}");
    assert!(e.to_string().contains("this one-process run"), "{e}");
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn a_trickling_peer_cannot_stretch_a_wait() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(1), Duration::from_secs(5)).unwrap();
        // A frame header announcing 100 bytes, then one byte every 200 ms.
        let _ = o.stream.write_all(&[FRAME_DATA, 0, 0, 0, 100]);
        for _ in 0..20 {
            if o.stream.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut o = Oob::connect(&addr, &fp(1), Duration::from_millis(900)).unwrap();
    let start = Instant::now();
    let e = o.recv_frame().unwrap_err();
    assert!(matches!(e, BootstrapError::Silent { .. }), "{e}");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    t.join().unwrap();
}

#[test]
fn default_port_is_added() {
    assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:47590");
    assert_eq!(with_default_port("localhost"), "localhost:47590");
    assert_eq!(with_default_port("127.0.0.1:9"), "127.0.0.1:9");
    assert_eq!(with_default_port("::1"), "[::1]:47590");
}

/// Sends a hello frame of `json` on a new connection and returns the verdict frame's JSON.
fn raw_hello(addr: SocketAddr, json: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut frame = vec![FRAME_DATA];
    frame.extend((json.len() as u32).to_be_bytes());
    frame.extend(json.as_bytes());
    s.write_all(&frame).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn idle_connections_and_stray_hellos_never_hold_or_end_a_waiting_target() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(2), Duration::from_secs(20))?;
        o.exchange(b"target")
    });
    // Six idle connections, each of which held the target for the hello time-out before.
    let idle: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // Another protocol version, then another parameter: each told why, the target waits on.
    let v = raw_hello(addr, r#"{"kvxfer": "9.9.9", "proto": 2, "params": {}}"#);
    assert_eq!(v["ok"], false);
    assert_eq!(v["param"], PROTO_PARAM);
    assert_eq!(v["target_value"], "1");
    assert_eq!(v["initiator_value"], "2 (kvxfer 9.9.9)");
    let e = Oob::connect(&addr.to_string(), &fp(3), Duration::from_secs(5))
        .err()
        .unwrap();
    assert!(e.to_string().contains("iterations is 3 here but 2"), "{e}");
    // The real initiator is served at once, with the idle ones still open.
    let start = Instant::now();
    let mut o = Oob::connect(&addr.to_string(), &fp(2), Duration::from_secs(20)).unwrap();
    assert_eq!(o.exchange(b"initiator").unwrap(), b"target");
    assert!(start.elapsed() < HELLO_TIMEOUT, "{:?}", start.elapsed());
    assert_eq!(t.join().unwrap().unwrap(), b"initiator");
    drop(idle);
}

#[test]
fn an_initiator_of_another_protocol_is_told_so() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr();
    let t = std::thread::spawn(move || l.accept(&fp(1), Duration::from_secs(1)).err());
    let v = raw_hello(addr, r#"{"proto": 2}"#);
    let e = mismatch(
        v["param"].as_str().unwrap().into(),
        v["initiator_value"].as_str().unwrap().into(),
        v["target_value"].as_str().unwrap().into(),
    );
    assert!(matches!(e, BootstrapError::Protocol(_)), "{e}");
    assert!(e.to_string().contains("version 2, the peer 1"), "{e}");
    assert!(matches!(
        t.join().unwrap(),
        Some(BootstrapError::NoInitiator { .. })
    ));
}

#[test]
fn initiators_waiting_together_are_each_served_by_successive_accepts() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    // Four workers connect at once, as a target of --concurrency 4 sees them.
    let workers: Vec<_> = (0..4u8)
        .map(|w| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut o = Oob::connect(&addr, &fp(1), Duration::from_secs(10)).unwrap();
                o.exchange(&[w]).unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut o = l.accept(&fp(1), Duration::from_secs(10)).unwrap();
        seen.push(o.exchange(b"t").unwrap()[0]);
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3]);
    for w in workers {
        assert_eq!(w.join().unwrap(), b"t");
    }
}

#[test]
fn a_version_query_is_answered_and_the_target_waits_on_for_its_initiator() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(10), Duration::from_secs(10)).unwrap();
        o.exchange(b"target").unwrap()
    });
    let about = query_about(addr, Duration::from_secs(2)).unwrap();
    assert_eq!(about, About::this());
    assert_eq!(about.kvxfer, env!("CARGO_PKG_VERSION"));
    assert_eq!(about.proto, PROTO);
    // Asked twice: still listening, and the real initiator after the queries is accepted.
    assert_eq!(query_about(addr, Duration::from_secs(2)).unwrap(), about);
    let mut o = Oob::connect(&addr.to_string(), &fp(10), Duration::from_secs(5)).unwrap();
    assert_eq!(o.exchange(b"initiator").unwrap(), b"target");
    assert_eq!(t.join().unwrap(), b"initiator");
}

#[test]
fn a_version_query_to_a_silent_port_ends_at_its_time_out() {
    // Bound and never accepting: the kernel completes the handshake, nobody answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let e = query_about(silent.local_addr().unwrap(), Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, BootstrapError::Silent { .. }), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn messages_longer_than_a_frame_arrive_whole_and_in_order() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    // Three frames and a bit; each byte names its position, so a lost or reordered part shows.
    let long: Vec<u8> = (0..3 * MAX_FRAME + 7).map(|i| (i % 251) as u8).collect();
    let exact = vec![7u8; MAX_FRAME];
    let sent = (long.clone(), exact.clone());
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(10), Duration::from_secs(5)).unwrap();
        o.send_frame(&sent.0).unwrap();
        o.send_frame(b"").unwrap();
        o.send_frame(&sent.1).unwrap();
        o.report_failure(&"x".repeat(MAX_FRAME + 1));
    });
    let mut o = Oob::connect(&addr, &fp(10), Duration::from_secs(5)).unwrap();
    assert_eq!(o.recv_frame().unwrap(), long);
    assert_eq!(o.recv_frame().unwrap(), b"");
    assert_eq!(o.recv_frame().unwrap(), exact);
    match o.recv_frame() {
        Err(BootstrapError::PeerFailed(m)) => assert_eq!(m.len(), MAX_FRAME + 1),
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
}

#[test]
fn a_frame_over_the_limit_is_refused_by_its_length_alone() {
    let l = OobListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().to_string();
    let t = std::thread::spawn(move || {
        let mut o = l.accept(&fp(10), Duration::from_secs(5)).unwrap();
        // A part of a longer message claiming more than a frame may hold: nothing follows.
        let mut head = [FRAME_MORE, 0, 0, 0, 0];
        head[1..].copy_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
        o.stream.write_all(&head).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut o = Oob::connect(&addr, &fp(10), Duration::from_secs(5)).unwrap();
    let e = o.recv_frame().unwrap_err();
    assert!(
        matches!(&e, BootstrapError::Protocol(m) if m == &format!("frame of {} bytes", MAX_FRAME + 1)),
        "{e}"
    );
    t.join().unwrap();
}
