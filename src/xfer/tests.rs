//! The transfer vocabulary: offers name their backend; both backends' ends refuse a chunk
//! outside its transfer's region with the same error.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use super::libfabric::{FabricInitiator, FabricTarget};
use super::ucx::{UcxInitiator, UcxTarget};
use super::*;
use crate::fabric::{caps, EndpointSpec, EndpointType};
use crate::mem::HostBuffer;
use crate::peer::Exchange;

const SIZE: usize = 64 << 10;
const TIMEOUT: Duration = Duration::from_secs(10);

/// `n` regions of `len` bytes in one host buffer.
fn regions(n: usize, len: usize) -> Vec<SharedRegion> {
    SharedRegion::split(HostBuffer::new(n * len).unwrap(), n, len).unwrap()
}

/// The initiator's one region, for two transfers of SIZE bytes.
fn local() -> SharedRegion {
    regions(1, 2 * SIZE).pop().unwrap()
}

/// One side's address exchange with the other thread.
fn swap(tx: &Sender<Vec<u8>>, rx: &Receiver<Vec<u8>>, ours: &[u8]) -> Result<Vec<u8>, String> {
    tx.send(ours.to_vec()).map_err(|e| e.to_string())?;
    rx.recv_timeout(TIMEOUT).map_err(|e| e.to_string())
}

type Connected<E> = Result<(E, SetupTimes), XferError>;

/// Connects a target (checked in a thread of its own) and an initiator (checked here) that
/// holds the target's regions; both ends live until both checks are done.
fn check_pair<I: InitiatorEnd, T: TargetEnd>(
    connect_initiator: impl FnOnce(&mut Exchange<'_>) -> Connected<I>,
    connect_target: impl FnOnce(&mut Exchange<'_>) -> Connected<T> + Send,
) {
    let (to_target, from_initiator) = channel();
    let (to_initiator, from_target) = channel();
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            let mut ex = |ours: &[u8]| swap(&to_initiator, &from_initiator, ours);
            let (mut end, _) = connect_target(&mut ex).unwrap();
            let offer = serde_json::to_vec(&end.offer().unwrap()).unwrap();
            swap(&to_initiator, &from_initiator, &offer).unwrap();
            check_target(&mut end);
            // Both checks done before either end closes.
            swap(&to_initiator, &from_initiator, b"done").unwrap();
        });
        let mut ex = |ours: &[u8]| swap(&to_target, &from_target, ours);
        let (mut end, _) = connect_initiator(&mut ex).unwrap();
        let offer = swap(&to_target, &from_target, b"offer?").unwrap();
        end.set_remote(serde_json::from_slice(&offer).unwrap())
            .unwrap();
        check_initiator(&mut end);
        swap(&to_target, &from_target, b"done").unwrap();
        t.join().unwrap();
    });
}

/// `e` is the refusal of chunk `chunk` of `transfer`, `len` bytes at `offset`, in a SIZE-byte
/// region.
fn assert_outside(e: XferError, transfer: u32, chunk: u32, offset: usize, len: usize) {
    let want = format!(
        "chunk {chunk} of transfer {transfer} ({len} bytes at {offset}) lies outside its \
         {SIZE}-byte region"
    );
    assert_eq!(e.to_string(), want, "{e:?}");
    assert!(
        matches!(e, XferError::ChunkOutside { transfer: t, chunk: c, offset: o, len: l, region }
            if (t, c, o, l, region) == (transfer, chunk, offset, len, SIZE)),
        "{e:?}"
    );
}

/// The initiator refuses a post past a region's end or past the last transfer.
fn check_initiator(end: &mut impl XferInitiator) {
    assert_outside(
        end.post(1, 3, SIZE - 8, 16).unwrap_err(),
        1,
        3,
        SIZE - 8,
        16,
    );
    assert_outside(end.post(2, 0, 0, 8).unwrap_err(), 2, 0, 0, 8);
}

/// The target refuses a receive past a region's end.
fn check_target(end: &mut impl TargetEnd) {
    let plan = [(SIZE, 1)];
    assert_outside(end.arm_receives(&plan).unwrap_err(), 0, 0, SIZE, 1);
}

#[test]
fn ucx_ends_refuse_a_chunk_outside_its_region() {
    check_pair(
        |ex| UcxInitiator::connect(ex, local(), 2, SIZE, XferOp::Send, TIMEOUT),
        |ex| UcxTarget::connect(ex, regions(2, SIZE)),
    );
}

#[test]
fn libfabric_ends_refuse_a_chunk_outside_its_region() {
    let spec = EndpointSpec {
        provider: "tcp".into(),
        ep_type: EndpointType::Rdm,
        caps: caps::RMA | caps::MSG | caps::TAGGED,
        local_ip: Some([127, 0, 0, 1].into()),
        domain: Some("lo".into()),
        timeout: TIMEOUT,
    };
    check_pair(
        |ex| FabricInitiator::connect(&spec, ex, local(), 2, SIZE, XferOp::Send, TIMEOUT),
        |ex| FabricTarget::connect(&spec, ex, regions(2, SIZE), TIMEOUT),
    );
}

#[test]
fn an_offer_names_its_backend_and_refuses_the_other_form() {
    let offer = RegionOffer::Ucx(vec![ucx::protocol::RemoteRegion {
        addr: 4096,
        len: 1 << 20,
        rkey: "AAE=".into(),
    }]);
    let json = serde_json::to_value(&offer).unwrap();
    assert_eq!(json["backend"], "ucx");
    assert_eq!(json["regions"][0]["len"], 1 << 20);
    let back: RegionOffer = serde_json::from_value(json).unwrap();
    assert_eq!(back, offer);
    let fabric = serde_json::json!({"backend": "libfabric", "regions": [{"addr": 1}]});
    assert!(serde_json::from_value::<RegionOffer>(fabric).is_err());
}

#[test]
fn a_timeout_of_either_library_is_the_transfers_own() {
    let after = Duration::from_millis(2500);
    for e in [
        XferError::from(crate::fabric::FabricError::Timeout {
            what: "completions",
            secs: 2.5,
        }),
        XferError::from(crate::ucx::UcxError::Timeout {
            what: "completions",
            secs: 2.5,
        }),
    ] {
        assert!(
            matches!(e, XferError::Timeout { what: "completions", after: a } if a == after),
            "{e:?}"
        );
    }
}
