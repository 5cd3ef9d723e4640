use std::time::{Duration, Instant};

use super::*;
use crate::fabric::{caps, connect, EndpointSpec, EndpointType, MemoryRegion};
use crate::mem::{HostBuffer, SharedRegion};
use crate::peer::Side;

/// Two RDM connections of the tcp provider on 127.0.0.1, joined in two threads.
fn pair() -> (DataPath, DataPath) {
    let spec = EndpointSpec {
        provider: "tcp".into(),
        ep_type: EndpointType::Rdm,
        caps: caps::RMA | caps::MSG | caps::TAGGED,
        local_ip: Some("127.0.0.1".parse().unwrap()),
        domain: None,
        timeout: Duration::from_secs(10),
    };
    let (to_b, from_a) = std::sync::mpsc::channel::<Vec<u8>>();
    let (to_a, from_b) = std::sync::mpsc::channel::<Vec<u8>>();
    let s2 = spec.clone();
    let b = std::thread::spawn(move || {
        let mut ex = |ours: &[u8]| {
            to_a.send(ours.to_vec()).map_err(|e| e.to_string())?;
            from_a.recv().map_err(|e| e.to_string())
        };
        connect(&s2, Side::Target, &mut ex).unwrap()
    });
    let mut ex = |ours: &[u8]| {
        to_b.send(ours.to_vec()).map_err(|e| e.to_string())?;
        from_b.recv().map_err(|e| e.to_string())
    };
    let a = connect(&spec, Side::Initiator, &mut ex).unwrap();
    (DataPath::new(a), DataPath::new(b.join().unwrap()))
}

fn region(path: &DataPath, len: usize, access: u64) -> MemoryRegion<HostBuffer> {
    let c = path.connection();
    let mr = MemoryRegion::register(&c.domain, HostBuffer::new(len).unwrap(), access).unwrap();
    mr.bind_endpoint(&c.ep, &c.info).unwrap();
    mr
}

/// Polls both paths until `want` completions came back on `a`'s transmit queue and returns
/// what `b`'s receive queue reported meanwhile.
fn run_until(a: &mut DataPath, b: &mut DataPath, want: usize) -> (Vec<Done>, Vec<Done>) {
    let (mut tx, mut rx) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while tx.len() < want {
        a.poll_tx(&mut tx).unwrap();
        a.poll_rx(&mut Vec::new()).unwrap();
        b.poll_rx(&mut rx).unwrap();
        b.poll_tx(&mut Vec::new()).unwrap();
        assert!(start.elapsed() < Duration::from_secs(10), "no completion");
    }
    (tx, rx)
}

/// Posts through `post` on `a`, driving both sides while the provider asks to retry (an rxm
/// connection is made on the first post).
fn until_posted(
    a: &mut DataPath,
    b: &mut DataPath,
    mut post: impl FnMut(&mut DataPath) -> Result<bool>,
) {
    let start = Instant::now();
    while !post(a).unwrap() {
        for p in [&mut *a, &mut *b] {
            let mut sink = Vec::new();
            p.poll_tx(&mut sink).unwrap();
            p.poll_rx(&mut sink).unwrap();
            assert!(sink.is_empty(), "nothing else is in flight");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the post never went"
        );
    }
}

#[test]
fn a_write_holds_its_region_until_its_completion_is_read() {
    let (mut a, mut b) = pair();
    let access = caps::REMOTE_WRITE | caps::REMOTE_READ;
    let target = region(&b, 8192, access);
    let offered = target.remote(&b.connection().info);
    let mut local = region(&a, 4096, caps::WRITE | caps::READ);
    local.buf_mut().unwrap().as_mut_slice().fill(0x5a);

    assert!(local.slice(4000, 97).is_none(), "past the end");
    assert!(local.slice(usize::MAX, 2).is_none(), "no overflow");
    assert!(
        offered.slice(8000, 193).is_none(),
        "past the offered length"
    );
    let remote = offered.slice(1000, 4096).unwrap();

    until_posted(&mut a, &mut b, |p| {
        p.write(local.slice(0, 4096).unwrap(), remote, Some(7), 42)
    });
    assert_eq!((a.in_flight(), local.in_flight()), (1, 1));
    assert!(local.buf().is_none() && local.buf_mut().is_none());
    let (tx, rx) = run_until(&mut a, &mut b, 1);
    assert!(matches!(tx[..], [Done::Local { token: 42, .. }]), "{tx:?}");
    assert!(local.buf().is_some() && a.in_flight() == 0);
    // The remote CQ data may trail the local completion.
    let mut rx = rx;
    let start = Instant::now();
    while rx.is_empty() && start.elapsed() < Duration::from_secs(10) {
        b.poll_rx(&mut rx).unwrap();
    }
    assert_eq!(rx, [Done::RemoteData(7)]);
    let got = target.buf().unwrap().as_slice();
    assert!(got[1000..5096].iter().all(|&x| x == 0x5a));
    assert!(got[..1000].iter().chain(&got[5096..]).all(|&x| x == 0));
    // Lengths must agree; a slice of another domain's region is refused.
    assert!(a
        .write(
            local.slice(0, 10).unwrap(),
            offered.slice(0, 11).unwrap(),
            None,
            1
        )
        .is_err());
    assert!(a
        .write(
            target.slice(0, 8).unwrap(),
            offered.slice(0, 8).unwrap(),
            None,
            1
        )
        .is_err());
    assert_eq!(a.in_flight(), 0);
}

#[test]
fn tagged_sends_land_in_receives_and_rail_views_share_the_count() {
    let (mut a, mut b) = pair();
    let mut dst = region(&b, 256, caps::RECV);
    let src = region(&a, 256, caps::SEND);
    assert!(b.trecv(dst.slice_mut(0, 256).unwrap(), 9, 0, 77).unwrap());
    assert!(dst.buf().is_none(), "a posted receive holds the region");
    until_posted(&mut a, &mut b, |p| {
        p.tsend(src.slice(0, 256).unwrap(), 9, 5)
    });
    let start = Instant::now();
    let mut rx = Vec::new();
    while rx.is_empty() {
        a.poll_tx(&mut Vec::new()).unwrap();
        b.poll_rx(&mut rx).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no receive completion"
        );
    }
    assert_eq!(
        rx,
        [Done::Local {
            token: 77,
            len: 256
        }]
    );
    assert!(dst.buf().is_some());

    // Two registrations of one part (two rails) share its count: an operation through one
    // keeps the CPU off the bytes through the other.
    let part = SharedRegion::split(HostBuffer::new(4096).unwrap(), 1, 4096)
        .unwrap()
        .pop()
        .unwrap();
    let view = part.rail_view();
    let c = a.connection();
    let mut one = MemoryRegion::register(&c.domain, part, caps::RECV).unwrap();
    one.bind_endpoint(&c.ep, &c.info).unwrap();
    let mut two = MemoryRegion::register(&b.connection().domain, view, caps::SEND).unwrap();
    two.bind_endpoint(&b.connection().ep, &b.connection().info)
        .unwrap();
    assert!(a.recv(one.slice_mut(0, 64).unwrap(), 3).unwrap());
    assert!(
        two.buf_mut().is_none(),
        "the other rail's view waits for the receive"
    );
    drop(one);
    assert!(
        crate::teardown::take().iter().any(|m| m.contains("leaked")),
        "dropping a region in flight leaks it and says so"
    );
    drop(a); // the endpoint closes, the slots release the count
    assert!(two.buf_mut().is_some());
}

/// Drives both paths until `b`'s receive queue reported `want` entries; returns them.
fn received(a: &mut DataPath, b: &mut DataPath, want: usize) -> Vec<Done> {
    let (mut rx, start) = (Vec::new(), Instant::now());
    while rx.len() < want {
        a.poll_tx(&mut Vec::new()).unwrap();
        a.poll_rx(&mut Vec::new()).unwrap();
        b.poll_rx(&mut rx).unwrap();
        assert!(start.elapsed() < Duration::from_secs(10), "nothing arrived");
    }
    rx
}

#[test]
fn injects_hold_no_slot_and_arrive_and_a_watched_byte_shows_the_write() {
    let (mut a, mut b) = pair();
    let mut src = region(&a, 64, caps::SEND | caps::WRITE);
    for (i, x) in src.buf_mut().unwrap().as_mut_slice().iter_mut().enumerate() {
        *x = i as u8 + 1;
    }
    let mut dst = region(&b, 64, caps::RECV);
    // fi_tinject and fi_inject: the bytes are copied at the call, nothing stays in flight.
    assert!(b.trecv(dst.slice_mut(0, 64).unwrap(), 9, 0, 1).unwrap());
    until_posted(&mut a, &mut b, |p| p.tinject(src.slice(0, 16).unwrap(), 9));
    assert_eq!((a.in_flight(), src.in_flight()), (0, 0));
    assert!(
        src.buf_mut().is_some(),
        "an injected buffer is free at once"
    );
    assert_eq!(
        received(&mut a, &mut b, 1),
        [Done::Local { token: 1, len: 16 }]
    );
    assert_eq!(
        &dst.buf().unwrap().as_slice()[..16],
        &src.buf().unwrap().as_slice()[..16]
    );
    assert!(b.recv(dst.slice_mut(0, 64).unwrap(), 2).unwrap());
    until_posted(&mut a, &mut b, |p| p.inject(src.slice(8, 8).unwrap()));
    assert_eq!(
        received(&mut a, &mut b, 1),
        [Done::Local { token: 2, len: 8 }]
    );
    assert_eq!(
        dst.buf().unwrap().as_slice()[..8],
        [9, 10, 11, 12, 13, 14, 15, 16]
    );

    // fi_inject_writedata: the write lands, its data arrives, and the target can watch the
    // last byte while the NIC writes it.
    let target = region(&b, 4096, caps::REMOTE_WRITE | caps::REMOTE_READ);
    let offered = target.remote(&b.connection().info);
    assert_eq!(target.read_volatile(99), Some(0));
    assert_eq!(target.read_volatile(4096), None, "outside the region");
    let remote = offered.slice(84, 16).unwrap();
    until_posted(&mut a, &mut b, |p| {
        p.inject_write(src.slice(0, 16).unwrap(), remote, Some(5))
    });
    assert_eq!(a.in_flight(), 0);
    assert_eq!(received(&mut a, &mut b, 1), [Done::RemoteData(5)]);
    let start = Instant::now();
    while target.read_volatile(99) != Some(16) {
        a.poll_tx(&mut Vec::new()).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the write never showed"
        );
    }
    // Lengths must agree; another domain's slice is refused.
    let long = offered.slice(0, 17).unwrap();
    assert!(a
        .inject_write(src.slice(0, 16).unwrap(), long, None)
        .is_err());
    assert!(a.inject(dst.slice(0, 8).unwrap()).is_err());
    assert!(a.tinject(dst.slice(0, 8).unwrap(), 9).is_err());
}
