use std::time::{Duration, Instant};

use super::libfabric::Completions;
use super::*;
use crate::fabric::Done;
use crate::ucx::{Context, Endpoint, Features, MemoryType, UcxError, Worker};

/// A spin's outcome in the test: the poll's own error, the time-out, or a stop request.
#[derive(Debug, PartialEq)]
enum Spun {
    Broken,
    Late,
    Stopped,
}

impl From<crate::stop::Stopped> for Spun {
    fn from(_: crate::stop::Stopped) -> Spun {
        Spun::Stopped
    }
}

#[test]
fn spin_returns_the_first_value_and_gives_up_after_the_timeout() {
    let mut n = 0;
    let got: Result<u32, Spun> = spin(
        Duration::from_secs(5),
        || {
            n += 1;
            Ok((n == 3).then_some(n))
        },
        || Spun::Late,
    );
    assert_eq!(got, Ok(3));
    let start = Instant::now();
    let never: Result<(), Spun> = spin(Duration::from_millis(50), || Ok(None), || Spun::Late);
    assert_eq!(never, Err(Spun::Late));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(start.elapsed() < Duration::from_secs(5));
    let failed: Result<(), Spun> =
        spin(Duration::from_secs(5), || Err(Spun::Broken), || Spun::Late);
    assert_eq!(failed, Err(Spun::Broken));
}

#[test]
fn completions_are_claimed_by_token_and_remote_data_in_order() {
    let mut c = Completions::default();
    c.0.push(Done::RemoteData(7));
    c.0.push(Done::Local { token: 2, len: 64 });
    c.0.push(Done::RemoteData(8));
    c.0.push(Done::Local { token: 1, len: 0 });
    assert_eq!(c.take(3), None);
    assert_eq!(c.take(2), Some(64));
    assert_eq!(c.take(2), None, "claimed once");
    assert_eq!(c.take_remote(), Some(7));
    assert_eq!(c.take(1), Some(0));
    assert_eq!(c.take_remote(), Some(8));
    assert_eq!(c.take_remote(), None);
}

#[test]
fn a_tag_receive_nobody_answers_times_out_and_settles() {
    let ca = Context::new(Features::default()).unwrap();
    let cb = Context::new(Features::default()).unwrap();
    let a = Worker::new(&ca).unwrap();
    let b = Worker::new(&cb).unwrap();
    let ab = Endpoint::connect(&a, &b.address().unwrap()).unwrap();
    let spec = SlotSpec {
        send_slots: 1,
        send_bytes: 64,
        recv_slots: 1,
        recv_bytes: 64,
        memory: MemoryType::Host,
        prereg: false,
        staging: false,
    };
    let mut ch = TagChannel::new(&ca, &a, &ab, spec, Duration::from_millis(200)).unwrap();
    assert!(ch.recv(65).is_err(), "longer than the slot");
    let start = Instant::now();
    let e = ch.recv(64).unwrap_err();
    assert!(matches!(e, UcxError::Timeout { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        ch.last_received().is_empty(),
        "the receive still holds its slot"
    );
    ch.settle();
    assert_eq!(ch.last_received().len(), 64, "settled: the slot is back");
    assert!(ch.complete_send().is_err(), "no send outstanding");
    assert!(ch.wait_ack().is_err(), "no acknowledgement posted");
}
