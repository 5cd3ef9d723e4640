//! The parameters each tool's patterns take, and their kinds.

use super::Kind::{self, *};

pub(super) const KVXFER_XFER_UCX: &[(&str, Kind)] = &[
    ("backend", OneOf(&["libfabric", "ucx"])),
    ("ucx_tls", Text),
    ("op", OneOf(&["write", "read", "send"])),
    ("size", Int(1)),
    ("concurrency", Int(1)),
    ("scheme", OneOf(&["pairwise", "many-to-one", "one-to-many"])),
    ("iterations", Count),
    ("warmup", Int(0)),
];
pub(super) const FI_PINGPONG: &[(&str, Kind)] = &[
    ("provider", Text),
    ("endpoint", OneOf(&["rdm", "msg"])),
    ("mode", OneOf(&["msg", "tagged"])),
    ("sizes", Sizes),
    ("iterations", Int(1)),
    ("warmup", Int(0)),
];
pub(super) const FI_RMA_PINGPONG: &[(&str, Kind)] = &[
    ("provider", Text),
    ("endpoint", OneOf(&["rdm", "msg"])),
    ("op", OneOf(&["write", "writedata", "read"])),
    ("sizes", Sizes),
    ("iterations", Int(1)),
    ("warmup", Int(0)),
];
pub(super) const NIXLBENCH: &[(&str, Kind)] = &[
    ("backend", OneOf(&["UCX", "LIBFABRIC"])),
    ("transport", Text),
    ("initiator_seg_type", OneOf(&["DRAM", "VRAM"])),
    ("target_seg_type", OneOf(&["DRAM", "VRAM"])),
    (
        "scheme",
        OneOf(&["pairwise", "manytoone", "onetomany", "tp"]),
    ),
    ("op_type", OneOf(&["READ", "WRITE"])),
    ("block_size", Int(1)),
    ("batch_size", Int(1)),
    ("num_iter", Int(1)),
    ("warmup_iter", Int(0)),
    ("concurrency", Int(1)),
];
pub(super) const KVXFER_XFER: &[(&str, Kind)] = &[
    ("provider", Text),
    ("endpoint", OneOf(&["rdm", "msg"])),
    ("op", OneOf(&["write", "read", "send"])),
    ("size", Int(1)),
    ("concurrency", Int(1)),
    ("scheme", OneOf(&["pairwise", "many-to-one", "one-to-many"])),
    ("iterations", Count),
    ("warmup", Int(0)),
];
pub(super) const KVXFER_KV_UCX: &[(&str, Kind)] = &[
    ("backend", OneOf(&["libfabric", "ucx"])),
    ("ucx_tls", Text),
    ("model", Text),
    ("tokens", Int(1)),
    ("page_size", Int(1)),
    ("tp", Int(1)),
    ("pp", Int(1)),
    ("access_pattern", OneOf(&["block", "layer"])),
    ("iterations", Count),
    ("warmup", Int(0)),
];
pub(super) const KVXFER_KV: &[(&str, Kind)] = &[
    ("provider", Text),
    ("endpoint", OneOf(&["rdm", "msg"])),
    ("model", Text),
    ("tokens", Int(1)),
    ("page_size", Int(1)),
    ("tp", Int(1)),
    ("pp", Int(1)),
    ("access_pattern", OneOf(&["block", "layer"])),
    ("iterations", Count),
    ("warmup", Int(0)),
];
pub(super) const KVBENCH: &[(&str, Kind)] = &[
    ("backend", OneOf(&["UCX"])),
    ("ucx_tls", Text),
    ("isl", Int(1)),
    ("num_requests", Int(1)),
    ("page_size", Int(1)),
    ("tp", Int(1)),
    ("pp", Int(1)),
    ("access_pattern", OneOf(&["block", "layer"])),
    ("kv_bytes", Int(1)),
    ("osl", Int(1)),
    ("model_quant_mode", Text),
    ("kvcache_quant_mode", Text),
    ("hardware", Text),
    ("serving_backend", Text),
];
pub(super) const UCX_PERFTEST: &[(&str, Kind)] = &[
    ("test", OneOf(&["tag_lat", "tag_bw"])),
    ("ucx_tls", Text),
    ("mem", OneOf(&["host", "cuda"])),
    ("sizes", Sizes),
    ("iterations", Int(1)),
    ("warmup", Int(0)),
];
