#!/usr/bin/env python3
"""kvxfer xfer's twin over NIXL's own engine: a pairwise DRAM transfer as nixlbench runs it.

One transfer is a descriptor list of BATCH blocks of BLOCK bytes (WRITE or READ) from an
initiator agent to a target agent over NIXL's UCX backend. WARMUP untimed transfers precede
ITERS timed ones; every transfer carries a NIXL notification and counts as done only when the
target has received it. The table printed is nixlbench's (same columns, same arithmetic), so
`kvxfer parse --tool nixlbench` reads it:

  B/W (GB/Sec)  = BLOCK x BATCH x ITERS / 1e9 / span of the timed phase (request creation,
                  posts and polling included)
  Avg Lat. (us) = span / (ITERS x BATCH), per block
  Prep          = creating the transfer request; Post = the post call; Tx = post to the
                  target's notification; averages and 99th percentiles over the timed transfers

Both agents in one process (default; without a progress thread the target agent is polled
too), or two processes that exchange NIXL metadata over a local TCP socket:

  nixl_xfer.py --block_size 4194304 --batch_size 168 --num_iter 10 --op_type WRITE
  nixl_xfer.py ... --listen 127.0.0.1:47610     # target
  nixl_xfer.py ... --peer 127.0.0.1:47610       # initiator; prints the table

UCX_TLS chooses the transports; NIXL's UCX backend needs ones with peer-failure handling (tcp,
tcp,cma; posix alone fails). Exit status 3 when NIXL's Python API is not installed.
"""

import argparse
import json
import mmap
import os
import socket
import struct
import sys
import time
import zlib

NOT_INSTALLED = 3


def load_nixl():
    """NIXL's Python API, from the nixl-cu12 wheel or a NIXL build; exits 3 when absent."""
    missing = []
    for name in ("nixl_cu12._api", "nixl._api"):
        # NIXL's Python logger writes to the sys.stdout it finds at import: give it stderr, so
        # stdout carries only the table.
        stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            module = __import__(name, fromlist=["nixl_agent", "nixl_agent_config"])
            return module.nixl_agent, module.nixl_agent_config
        except ImportError as e:
            missing.append(f"{name}: {e}")
        finally:
            sys.stdout = stdout
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    venv = os.path.join(repo, ".cache", "mlflow-venv")
    python = os.path.join(venv, "bin", "python")
    if os.access(python, os.X_OK) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
        # Started by another python (the system's): the set-up installs NIXL into the test venv.
        os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])
    print(
        f"nixl_xfer.py: NIXL's Python API is not installed ({'; '.join(missing)}) for "
        f"{sys.executable}; install it with scripts/setup.sh --test (pip nixl-cu12 --no-deps, "
        "numpy into .cache/mlflow-venv, which this script runs under when it exists)",
        file=sys.stderr,
    )
    sys.exit(NOT_INSTALLED)


def options(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--op_type", choices=["WRITE", "READ"], default="WRITE")
    p.add_argument("--block_size", type=int, default=4 << 20, help="bytes per descriptor")
    p.add_argument("--batch_size", type=int, default=1, help="descriptors per transfer")
    p.add_argument("--num_iter", type=int, default=10, help="timed transfers")
    p.add_argument("--warmup_iter", type=int, default=2, help="untimed transfers first")
    p.add_argument("--enable_pt", type=int, choices=[0, 1], default=0, help="progress thread")
    p.add_argument("--check_consistency", type=int, choices=[0, 1], default=0)
    p.add_argument("--huge_pages", type=int, choices=[0, 1], default=1,
                   help="back buffers of 2 MiB and more with transparent huge pages, as kvxfer does")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole run")
    p.add_argument("--check", action="store_true", help="exit 0 if NIXL is installed, else 3")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--listen", metavar="ADDR:PORT", help="be the target")
    side.add_argument("--peer", metavar="HOST:PORT", help="be the initiator of a target")
    a = p.parse_args(argv)
    for name in ("block_size", "batch_size", "num_iter"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    if a.warmup_iter < 0:
        p.error("--warmup_iter must be at least 0")
    return a


def address(text):
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"nixl_xfer.py: {text!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


class Deadline:
    """The run's time limit: every wait checks it."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, what):
        if time.monotonic() > self.end:
            raise SystemExit(f"nixl_xfer.py: timed out after {self.seconds:g} s waiting for {what}")


# Length-prefixed messages over the control socket.
def send_msg(sock, payload):
    sock.sendall(struct.pack("!Q", len(payload)) + payload)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise SystemExit("nixl_xfer.py: the peer closed the control connection")
        buf += chunk
    return bytes(buf)


def recv_msg(sock):
    (n,) = struct.unpack("!Q", recv_exact(sock, 8))
    return recv_exact(sock, n)


class Segment:
    """One registered DRAM buffer of BLOCK x BATCH bytes."""

    def __init__(self, agent, size, fill, huge):
        import numpy as np

        # Anonymous memory, with transparent huge pages asked for as kvxfer's bulk buffers
        # are (a CMA copy pins 2 MiB pages then, not 4 KiB ones); every page touched by the fill.
        self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if huge and size >= 2 << 20 and hasattr(mmap, "MADV_HUGEPAGE"):
            self.map.madvise(mmap.MADV_HUGEPAGE)
        self.array = np.frombuffer(self.map, dtype=np.uint8, count=size)
        self.array[:] = fill
        self.addr = self.array.ctypes.data
        self.size = size
        self.agent = agent
        self.reg = agent.register_memory([(self.addr, size, 0, "")], "DRAM")

    def descs(self, block, batch):
        return [(self.addr + i * block, block, 0) for i in range(batch)]

    def crc(self):
        return zlib.crc32(self.array.tobytes())


def add_remote(agent, metadata):
    """Loads a peer's metadata; returns the peer's name as notifications key it (a str)."""
    name = agent.add_remote_agent(metadata)
    return name.decode() if isinstance(name, bytes) else name


def make_agent(nixl_agent, nixl_agent_config, name, a):
    conf = nixl_agent_config(enable_prog_thread=bool(a.enable_pt), backends=["UCX"])
    agent = nixl_agent(name, conf)
    if "UCX" not in agent.backends:
        raise SystemExit("nixl_xfer.py: NIXL has no UCX backend (plugin missing)")
    return agent


def percentile(values, q):
    v = sorted(values)
    if not v:
        return 0.0
    return v[min(len(v) - 1, int(q * len(v)))]


class Timings:
    """Per-transfer figures in microseconds, as nixlbench's columns use them."""

    def __init__(self):
        self.prep, self.post, self.tx = [], [], []


def run_initiator(agent, local, remote_descs, remote_name, a, confirm, deadline, progress=None):
    """Warm-up then timed transfers; returns (span in seconds, timings). `progress` polls the
    target agent while a transfer is in flight (one process without a progress thread)."""
    local_descs = agent.get_xfer_descs(local.descs(a.block_size, a.batch_size), "DRAM")

    def one(handle, i, t):
        tag = f"kvxfer-nixl-{i}".encode()
        t0 = time.perf_counter()
        state = agent.transfer(handle, tag)
        t1 = time.perf_counter()
        while state == "PROC":
            if progress is not None:
                progress()
            state = agent.check_xfer_state(handle)
            deadline.check("the transfer's completion")
        if state != "DONE":
            raise SystemExit(f"nixl_xfer.py: transfer {i} failed ({state})")
        confirm(tag)
        t2 = time.perf_counter()
        if t is not None:
            t.post.append((t1 - t0) * 1e6)
            t.tx.append((t2 - t1) * 1e6)

    handle = agent.initialize_xfer(a.op_type, local_descs, remote_descs, remote_name)
    for i in range(a.warmup_iter):
        one(handle, i, None)
    handle.release()
    t = Timings()
    start = time.perf_counter()
    p0 = time.perf_counter()
    handle = agent.initialize_xfer(a.op_type, local_descs, remote_descs, remote_name)
    t.prep.append((time.perf_counter() - p0) * 1e6)
    for i in range(a.num_iter):
        one(handle, a.warmup_iter + i, t)
    span = time.perf_counter() - start
    handle.release()
    return span, t


def wait_notif(target, initiator_name, tag, deadline, also=None):
    """Polls the target agent until the notification `tag` from the initiator arrives."""
    while not target.check_remote_xfer_done(initiator_name, tag, tag_is_prefix=False):
        if also is not None:
            also()
        deadline.check(f"the target's notification {tag.decode()}")


def config_block(a, mode):
    rule = "*" * 160
    rows = [
        ("Runtime (--runtime_type=[etcd])", "none: kvxfer scripts/nixl_xfer.py, " + mode),
        ("Backend (--backend=[UCX])", "UCX"),
        ("Enable pt (--enable_pt=[0,1])", a.enable_pt),
        ("Progress threads (--progress_threads=N)", 0),
        ("Initiator seg type (--initiator_seg_type=[DRAM,VRAM])", "DRAM"),
        ("Target seg type (--target_seg_type=[DRAM,VRAM])", "DRAM"),
        ("Scheme (--scheme=[pairwise,manytoone,onetomany,tp])", "pairwise"),
        ("Op type (--op_type=[READ,WRITE])", a.op_type),
        ("Check consistency (--check_consistency=[0,1])", a.check_consistency),
        ("Start block size (--start_block_size=N)", a.block_size),
        ("Max block size (--max_block_size=N)", a.block_size),
        ("Start batch size (--start_batch_size=N)", a.batch_size),
        ("Max batch size (--max_batch_size=N)", a.batch_size),
        ("Num iter (--num_iter=N)", a.num_iter),
        ("Warmup iter (--warmup_iter=N)", a.warmup_iter),
        ("Large block iter factor (--large_blk_iter_ftr=N)", 1),
        ("Num threads (--num_threads=N)", 1),
        ("Huge pages (--huge_pages=[0,1])", a.huge_pages),
    ]
    out = ["NIXLBench Configuration", rule]
    out += [f"{k:<60}: {v}" for k, v in rows]
    out.append("-" * 160)
    return "\n".join(out)


def table(a, span, t):
    heads = ["Block Size (B)", "Batch Size", "B/W (GB/Sec)", "Avg Lat. (us)", "Avg Prep (us)",
             "P99 Prep (us)", "Avg Post (us)", "P99 Post (us)", "Avg Tx (us)", "P99 Tx (us)"]
    widths = [20] + [15] * (len(heads) - 1)
    moved = a.block_size * a.batch_size * a.num_iter
    avg = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    cells = [
        str(a.block_size),
        str(a.batch_size),
        f"{moved / 1e9 / span:.6f}",
        f"{span * 1e6 / (a.num_iter * a.batch_size):.1f}",
        f"{avg(t.prep):.1f}",
        f"{percentile(t.prep, 0.99):.1f}",
        f"{avg(t.post):.1f}",
        f"{percentile(t.post, 0.99):.1f}",
        f"{avg(t.tx):.1f}",
        f"{percentile(t.tx, 0.99):.1f}",
    ]
    line = lambda vals: "".join(f"{v:<{w}}" for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join(["", line(heads), "-" * 160, line(cells)])


def one_process(api, a, deadline):
    initiator = make_agent(*api, "kvxfer-nixl-initiator", a)
    target = make_agent(*api, "kvxfer-nixl-target", a)
    size = a.block_size * a.batch_size
    src = Segment(initiator, size, 0x5A, a.huge_pages)
    dst = Segment(target, size, 0, a.huge_pages)
    ini_name = add_remote(target, initiator.get_agent_metadata())
    tgt_name = add_remote(initiator, target.get_agent_metadata())
    remote = initiator.get_xfer_descs(dst.descs(a.block_size, a.batch_size), "DRAM")
    if a.op_type == "READ":
        # READ pulls the target's memory into the initiator's: the target holds the data.
        src.array[:], dst.array[:] = 0, 0x5A
    def confirm(tag):
        wait_notif(target, ini_name, tag, deadline)

    # Notifications that arrive while polling stay in target.notifs for check_remote_xfer_done.
    span, t = run_initiator(
        initiator, src, remote, tgt_name, a, confirm, deadline, progress=target.update_notifs
    )
    if a.check_consistency and src.crc() != dst.crc():
        raise SystemExit("nixl_xfer.py: the buffers differ after the transfers")
    return span, t


def target_side(api, a, deadline):
    host, port = address(a.listen)
    agent = make_agent(*api, "kvxfer-nixl-target", a)
    seg = Segment(agent, a.block_size * a.batch_size, 0x5A if a.op_type == "READ" else 0, a.huge_pages)
    srv = socket.create_server((host, port))
    srv.settimeout(max(1.0, deadline.end - time.monotonic()))
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        raise SystemExit(f"nixl_xfer.py: no initiator connected within {a.timeout:g} s")
    with conn:
        conn.settimeout(max(1.0, deadline.end - time.monotonic()))
        params = json.loads(recv_msg(conn))
        mine = {"op": a.op_type, "block": a.block_size, "batch": a.batch_size,
                "iters": a.num_iter, "warmup": a.warmup_iter}
        if params != mine:
            send_msg(conn, b"")
            raise SystemExit(f"nixl_xfer.py: the initiator's parameters {params} differ from {mine}")
        ini_name = add_remote(agent, recv_msg(conn))
        send_msg(conn, agent.get_agent_metadata())
        descs = agent.get_xfer_descs(seg.descs(a.block_size, a.batch_size), "DRAM")
        send_msg(conn, agent.get_serialized_descs(descs))
        for i in range(a.warmup_iter + a.num_iter):
            wait_notif(agent, ini_name, f"kvxfer-nixl-{i}".encode(), deadline)
            conn.sendall(b"c")
        send_msg(conn, struct.pack("!I", seg.crc()))
        recv_exact(conn, 1)


def initiator_side(api, a, deadline):
    host, port = address(a.peer)
    agent = make_agent(*api, "kvxfer-nixl-initiator", a)
    seg = Segment(agent, a.block_size * a.batch_size, 0 if a.op_type == "READ" else 0x5A, a.huge_pages)
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=1.0)
            break
        except OSError:
            deadline.check(f"a target at {host}:{port}")
            time.sleep(0.1)
    with conn:
        conn.settimeout(max(1.0, deadline.end - time.monotonic()))
        mine = {"op": a.op_type, "block": a.block_size, "batch": a.batch_size,
                "iters": a.num_iter, "warmup": a.warmup_iter}
        send_msg(conn, json.dumps(mine).encode())
        send_msg(conn, agent.get_agent_metadata())
        meta = recv_msg(conn)
        if not meta:
            raise SystemExit("nixl_xfer.py: the target refused this run's parameters")
        tgt_name = add_remote(agent, meta)
        remote = agent.deserialize_descs(recv_msg(conn))

        def confirm(_tag):
            recv_exact(conn, 1)

        span, t = run_initiator(agent, seg, remote, tgt_name, a, confirm, deadline)
        (crc,) = struct.unpack("!I", recv_msg(conn))
        conn.sendall(b"k")
    if a.check_consistency and crc != seg.crc():
        raise SystemExit("nixl_xfer.py: the buffers differ after the transfers")
    return span, t


def main(argv):
    a = options(argv)
    api = load_nixl()
    if a.check:
        return 0
    deadline = Deadline(a.timeout)
    if a.listen:
        target_side(api, a, deadline)
        return 0
    mode = "two processes" if a.peer else "one process"
    span, t = (initiator_side if a.peer else one_process)(api, a, deadline)
    print(config_block(a, mode))
    print(table(a, span, t))
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # NIXL 1.5.1's agents can crash in their destructors at interpreter exit (a segfault after
    # the table, seen here): the run is over, leave without running them.
    os._exit(code)
