//! The safe layer against real UCX: two workers in one thread, driven by hand.

use std::time::{Duration, Instant};

use super::*;
use crate::mem::{Buffer, HostBuffer};

fn pair() -> (Worker, Worker, Endpoint, Endpoint) {
    let ca = Context::new(Features::default()).unwrap();
    let cb = Context::new(Features::default()).unwrap();
    let a = Worker::new(&ca).unwrap();
    let b = Worker::new(&cb).unwrap();
    let ab = Endpoint::connect(&a, &b.address().unwrap()).unwrap();
    let ba = Endpoint::connect(&b, &a.address().unwrap()).unwrap();
    (a, b, ab, ba)
}

/// Progresses both workers until `req` completes.
fn drive(workers: &[&Worker], req: &mut Request<'_>) -> usize {
    let start = Instant::now();
    loop {
        if let Some(n) = req.test().unwrap() {
            return n;
        }
        for w in workers {
            w.progress();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "request never completed"
        );
    }
}

#[test]
fn tagged_messages_arrive_intact_with_their_length() {
    let (a, b, ab, _ba) = pair();
    for len in [1usize, 64, 100_000] {
        let src: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut dst = vec![0u8; len + 10];
        // SAFETY: both buffers outlive the requests, which are driven to completion here.
        let mut r = unsafe { b.tag_recv(dst.as_mut_ptr(), dst.len(), 5, u64::MAX, None) }.unwrap();
        // SAFETY: as above.
        let mut s = unsafe { ab.tag_send(src.as_ptr(), len, 5, None) }.unwrap();
        drive(&[&a, &b], &mut s);
        assert_eq!(drive(&[&a, &b], &mut r), len);
        assert_eq!(&dst[..len], &src[..]);
    }
    assert!(!ab.transports().is_empty(), "{}", ab.print_info());
}

#[test]
fn a_receive_with_another_tag_does_not_match() {
    let (a, b, ab, _ba) = pair();
    let src = [1u8; 8];
    let mut dst = [0u8; 8];
    // SAFETY: buffers outlive the requests; the unmatched receive is cancelled on drop.
    let mut r = unsafe { b.tag_recv(dst.as_mut_ptr(), 8, 1, u64::MAX, None) }.unwrap();
    // SAFETY: as above.
    let mut s = unsafe { ab.tag_send(src.as_ptr(), 8, 2, None) }.unwrap();
    drive(&[&a, &b], &mut s);
    for _ in 0..1000 {
        a.progress();
        b.progress();
    }
    assert_eq!(r.test().unwrap(), None);
    drop(r);
    assert_eq!(dst, [0u8; 8]);
    // The message waits for its own tag.
    // SAFETY: dst outlives the request, driven to completion here.
    let mut r2 = unsafe { b.tag_recv(dst.as_mut_ptr(), 8, 2, u64::MAX, None) }.unwrap();
    assert_eq!(drive(&[&a, &b], &mut r2), 8);
    assert_eq!(dst, [1u8; 8]);
}

#[test]
fn waiting_for_a_message_that_never_comes_times_out() {
    let (_a, b, _ab, _ba) = pair();
    let mut dst = [0u8; 8];
    // SAFETY: dst outlives the request, which is cancelled on drop.
    let mut r = unsafe { b.tag_recv(dst.as_mut_ptr(), 8, 9, u64::MAX, None) }.unwrap();
    let start = Instant::now();
    let e = b.wait(&mut r, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(e, UcxError::Timeout { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn put_through_an_unpacked_remote_key_lands_in_mapped_memory() {
    let ca = Context::new(Features::default()).unwrap();
    let cb = Context::new(Features::default()).unwrap();
    let a = Worker::new(&ca).unwrap();
    let b = Worker::new(&cb).unwrap();
    let target = MemHandle::map(&cb, HostBuffer::new(4096).unwrap()).unwrap();
    assert_eq!(target.memory_type(), MemoryType::Host);
    let packed = target.pack_rkey().unwrap();
    let ab = Endpoint::connect(&a, &b.address().unwrap()).unwrap();
    let rkey = RemoteKey::unpack(&ab, &packed).unwrap();
    let mut src = MemHandle::map(&ca, HostBuffer::new(256).unwrap()).unwrap();
    for (i, x) in src.channel_buf_mut().as_mut_slice().iter_mut().enumerate() {
        *x = i as u8 ^ 0x5a;
    }
    let remote = target.channel_buf().as_ptr() as u64 + 1000;
    // SAFETY: src lives past the flush; the remote range is inside the mapped 4096 bytes.
    let mut p = unsafe {
        ab.put(
            src.channel_buf().as_ptr(),
            256,
            remote,
            &rkey,
            Some(src.handle()),
        )
    }
    .unwrap();
    drive(&[&a, &b], &mut p);
    // Flush needs the peer to progress when the put went through it: drive b meanwhile.
    let flushed = std::thread::scope(|_| {
        let start = Instant::now();
        loop {
            b.progress();
            if ab.flush(Duration::from_millis(50)).is_ok() {
                break true;
            }
            if start.elapsed() > Duration::from_secs(10) {
                break false;
            }
        }
    });
    assert!(flushed);
    let got = &target.channel_buf().as_slice()[1000..1256];
    assert!(got.iter().enumerate().all(|(i, &x)| x == i as u8 ^ 0x5a));
    assert!(target.channel_buf().as_slice()[..1000]
        .iter()
        .all(|&x| x == 0));
    // And back: a get of the same range lands in a fresh local buffer.
    let mut back = MemHandle::map(&ca, HostBuffer::new(256).unwrap()).unwrap();
    let h = back.handle();
    let dst = back.channel_buf_mut().as_mut_ptr();
    // SAFETY: back outlives the request, driven to completion here; the range is mapped.
    let mut g = unsafe { ab.get(dst, 256, remote, &rkey, Some(h)) }.unwrap();
    drive(&[&a, &b], &mut g);
    assert_eq!(back.channel_buf().as_slice(), got);
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
