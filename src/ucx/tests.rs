//! The safe layer against real UCX: two workers in one thread, driven by hand.

use std::time::{Duration, Instant};

use super::*;
use crate::mem::HostBuffer;

fn pair() -> (Worker, Worker, Endpoint, Endpoint) {
    let ca = Context::new(Features::default()).unwrap();
    let cb = Context::new(Features::default()).unwrap();
    let a = Worker::new(&ca).unwrap();
    let b = Worker::new(&cb).unwrap();
    let ab = Endpoint::connect(&a, &b.address().unwrap()).unwrap();
    let ba = Endpoint::connect(&b, &a.address().unwrap()).unwrap();
    (a, b, ab, ba)
}

/// Polls `ops` (and `other`'s worker) until the operation of `token` settled; its length.
fn settle_token(ops: &mut OpTable, other: &Worker, token: u64) -> usize {
    let (mut done, start) = (Vec::new(), Instant::now());
    loop {
        ops.poll(&mut done).unwrap();
        other.progress();
        if let Some(&(_, n)) = done.iter().find(|(t, _)| *t == token) {
            return n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "operation {token} never settled"
        );
    }
}

/// Maps `len` bytes of host memory with `ctx`.
fn mapped(ctx: &Context, len: usize) -> MemHandle<HostBuffer> {
    MemHandle::map(ctx, HostBuffer::new(len).unwrap()).unwrap()
}

#[test]
fn tagged_messages_arrive_intact_with_their_length() {
    let (ca, cb) = (
        Context::new(Features::default()).unwrap(),
        Context::new(Features::default()).unwrap(),
    );
    let a = Worker::new(&ca).unwrap();
    let b = Worker::new(&cb).unwrap();
    let ab = Endpoint::connect(&a, &b.address().unwrap()).unwrap();
    let (mut aops, mut bops) = (OpTable::new(&a), OpTable::new(&b));
    for (i, len) in [1usize, 64, 100_000].into_iter().enumerate() {
        let mut src = mapped(&ca, len);
        for (k, x) in src.buf_mut().unwrap().as_mut_slice().iter_mut().enumerate() {
            *x = (k * 7 % 251) as u8;
        }
        let mut dst = mapped(&cb, len + 10);
        // With and without the memory handles (ucx_perftest's -z and its default).
        let token = 10 * i as u64;
        let local = dst.slice_mut(0, len + 10).unwrap();
        let local = if i == 1 {
            local.without_handle()
        } else {
            local
        };
        assert!(!bops.tag_recv(&b, local, 5, u64::MAX, token).unwrap());
        assert!(dst.buf().is_none(), "a posted receive holds its slot");
        let local = src.slice(0, len).unwrap();
        let local = if i == 1 {
            local.without_handle()
        } else {
            local
        };
        if !aops.tag_send(&ab, local, 5, token + 1).unwrap() {
            settle_token(&mut aops, &b, token + 1);
        }
        assert_eq!(settle_token(&mut bops, &a, token), len);
        let got = &dst.buf().unwrap().as_slice()[..len];
        assert_eq!(got, src.buf().unwrap().as_slice());
    }
    assert!(!ab.transports().is_empty(), "{}", ab.print_info());
}

#[test]
fn a_receive_with_another_tag_does_not_match() {
    let (a, b, ab, _ba) = pair();
    let mut bops = OpTable::new(&b);
    let mut dst = [0u8; 8];
    assert!(!bops.recv_message(&b, 8, 1, u64::MAX, 1, "one").unwrap());
    let mut aops = OpTable::new(&a);
    if !aops.send_message(&ab, &[1u8; 8], 2, 2, "two").unwrap() {
        settle_token(&mut aops, &b, 2);
    }
    let mut done = Vec::new();
    for _ in 0..1000 {
        a.progress();
        bops.poll(&mut done).unwrap();
    }
    assert!(done.is_empty(), "{done:?}");
    assert!(
        bops.settle_all(Duration::from_secs(5)),
        "the receive cancels"
    );
    assert!(bops.message(1).is_none());
    // The message waits for its own tag.
    assert!(!bops.recv_message(&b, 8, 2, u64::MAX, 3, "two").unwrap());
    assert_eq!(settle_token(&mut bops, &a, 3), 8);
    dst.copy_from_slice(&bops.message(3).unwrap());
    assert_eq!(dst, [1u8; 8]);
}

#[test]
fn put_and_get_through_an_unpacked_remote_key_reach_mapped_memory() {
    let ca = Context::new(Features::default()).unwrap();
    let cb = Context::new(Features::default()).unwrap();
    let a = Worker::new(&ca).unwrap();
    let b = Worker::new(&cb).unwrap();
    let target = mapped(&cb, 4096);
    assert_eq!(target.memory_type(), MemoryType::Host);
    let ab = Endpoint::connect(&a, &b.address().unwrap()).unwrap();
    let (addr, len) = target.range();
    let remote = RemoteMemory::new(&ab, addr, len as u64, &target.pack_rkey().unwrap()).unwrap();
    let mut src = mapped(&ca, 256);
    for (i, x) in src.buf_mut().unwrap().as_mut_slice().iter_mut().enumerate() {
        *x = i as u8 ^ 0x5a;
    }
    let mut ops = OpTable::new(&a);
    let r = remote.slice(1000, 256).unwrap();
    if !ops.put(&ab, src.slice(0, 256).unwrap(), r, 1).unwrap() {
        settle_token(&mut ops, &b, 1);
    }
    // The flush needs the peer to progress when the put went through it.
    if !ops.flush(&ab, 2).unwrap() {
        settle_token(&mut ops, &b, 2);
    }
    let got = &target.buf().unwrap().as_slice()[1000..1256];
    assert!(got.iter().enumerate().all(|(i, &x)| x == i as u8 ^ 0x5a));
    assert!(target.buf().unwrap().as_slice()[..1000]
        .iter()
        .all(|&x| x == 0));
    // And back: a get of the same range lands in a fresh local buffer.
    let mut back = mapped(&ca, 256);
    let r = remote.slice(1000, 256).unwrap();
    if !ops.get(&ab, back.slice_mut(0, 256).unwrap(), r, 3).unwrap() {
        assert!(
            back.buf().is_none(),
            "a get in flight holds its destination"
        );
        settle_token(&mut ops, &b, 3);
    }
    assert_eq!(back.buf().unwrap().as_slice(), got);
}

#[test]
fn bad_input_is_an_error_not_a_crash() {
    let c = Context::new(Features::default()).unwrap();
    let w = Worker::new(&c).unwrap();
    assert!(matches!(Endpoint::connect(&w, &[]), Err(UcxError::Peer(_))));
    assert!(matches!(
        Endpoint::connect(&w, &[0xff; 64]),
        Err(UcxError::Peer(_))
    ));
    // What this UCX writes passes the checks its peers' bytes go through.
    crate::ucx::check_worker_address(&w.address().unwrap()).unwrap();
    let m = MemHandle::map(&c, HostBuffer::new(64).unwrap()).unwrap();
    crate::ucx::check_packed_rkey(&m.pack_rkey().unwrap()).unwrap();
    assert!(matches!(
        MemHandle::map(&c, HostBuffer::new(0).unwrap()),
        Err(UcxError::Invalid(_))
    ));
    assert!(!version().is_empty());
    assert!(!c.resources().is_empty(), "{}", c.print_info());
}

#[test]
fn version_and_library_describe_the_ucx_loaded() {
    // The library file is the one the loader chose, and its version matches the headers'
    // major version (a minor below the headers' means a mismatched load).
    let lib = library_path().expect("dladdr finds libucp");
    assert!(lib.contains("libucp.so"), "{lib}");
    let v = version();
    let headers = header_version();
    let (hmaj, hmin) = headers.split_once('.').unwrap();
    let mut parts = v.split('.');
    assert_eq!(parts.next(), Some(hmaj), "{v} vs headers {headers}");
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    assert!(
        minor >= hmin.parse().unwrap(),
        "{v} loaded, built against {headers}"
    );
}

#[test]
fn versions_before_1_18_say_what_they_lack() {
    let old = version_lacks("1.13.1");
    assert_eq!(old.len(), 3, "{old:?}");
    assert!(old[0].contains("tag_bw"), "{old:?}");
    assert!(old[1].contains("RMA over tcp"), "{old:?}");
    assert_eq!(version_lacks("1.17.0").len(), 3);
    assert!(version_lacks("1.18.0").is_empty());
    assert!(version_lacks("1.22.0").is_empty());
    assert!(version_lacks("2.0.1").is_empty());
    assert_eq!(version_lacks("garbage").len(), 1);
}

/// Polls `ops` (and `other`'s worker) until `want` operations settled; returns their tokens.
fn settle_n(ops: &mut OpTable, other: &Worker, want: usize) -> Vec<u64> {
    let (mut done, start) = (Vec::new(), Instant::now());
    while done.len() < want {
        ops.poll(&mut done).unwrap();
        other.progress();
        assert!(start.elapsed() < Duration::from_secs(10), "nothing settled");
    }
    done.into_iter().map(|(t, _)| t).collect()
}

#[test]
fn table_posts_take_checked_slices_and_hold_them_until_settled() {
    let ca = Context::new(Features::default()).unwrap();
    let cb = Context::new(Features::default()).unwrap();
    let a = Worker::new(&ca).unwrap();
    let b = Worker::new(&cb).unwrap();
    let ab = Endpoint::connect(&a, &b.address().unwrap()).unwrap();
    let ba = Endpoint::connect(&b, &a.address().unwrap()).unwrap();
    let target = MemHandle::map(&cb, HostBuffer::new(4096).unwrap()).unwrap();
    let (addr, len) = target.range();
    let remote = RemoteMemory::new(&ab, addr, len as u64, &target.pack_rkey().unwrap()).unwrap();
    let mut src = MemHandle::map(&ca, HostBuffer::new(512).unwrap()).unwrap();
    src.buf_mut().unwrap().as_mut_slice().fill(0xa5);

    assert!(src.slice(256, 257).is_none() && src.slice(usize::MAX, 2).is_none());
    assert!(remote.slice(4000, 97).is_none(), "past the offered length");
    let mut ops = OpTable::new(&a);
    // Lengths must agree; memory of another context is refused.
    let r = remote.slice(0, 8).unwrap();
    assert!(ops.put(&ab, src.slice(0, 9).unwrap(), r, 1).is_err());
    let r = remote.slice(0, 8).unwrap();
    assert!(ops.put(&ab, target.slice(0, 8).unwrap(), r, 1).is_err());
    assert_eq!((ops.len(), src.in_flight()), (0, 0));

    let r = remote.slice(1000, 512).unwrap();
    let in_place = ops.put(&ab, src.slice(0, 512).unwrap(), r, 7).unwrap();
    if !in_place {
        assert!(src.buf_mut().is_none(), "a put in flight holds its source");
        assert_eq!(settle_n(&mut ops, &b, 1), [7]);
    }
    assert!(ops.flush(&ab, 8).unwrap() || settle_n(&mut ops, &b, 1) == [8]);
    assert_eq!(src.in_flight(), 0);
    assert!(src.buf_mut().is_some());
    let got = target.buf().unwrap().as_slice();
    assert!(got[1000..1512].iter().all(|&x| x == 0xa5));
    assert!(got[..1000].iter().all(|&x| x == 0));

    // A control message from b lands in memory a's table owns.
    let mut bops = OpTable::new(&b);
    assert!(!ops.recv_message(&a, 16, 3, u64::MAX, 30, "note").unwrap());
    let sent = bops
        .send_message(&ba, &42u64.to_le_bytes(), 3, 31, "note")
        .unwrap();
    assert_eq!(settle_n(&mut ops, &b, 1), [30]);
    let msg = ops.message(30).unwrap();
    assert_eq!(&msg[..8], 42u64.to_le_bytes());
    assert!(ops.message(30).is_none(), "handed out once");
    if !sent {
        assert_eq!(settle_n(&mut bops, &a, 1), [31]);
    }
}
