"""Gossip benchmark: N node processes on loopback flood orders to each other.

For each node count (default 4 and 8) and each transport — ``noise`` (the real ``lockstep.net``
host: Noise XX sessions, frames, seen-cache, validation hook, scoring, rate limits) and
``plain`` (a naive unencrypted trio TCP flood, one write per message, the baseline the design
was measured against) — it runs three phases, each in fresh processes:

* ``burst``: every node publishes its share of ``--messages`` as fast as it can; messages/s
  delivered to *all* other nodes = messages / time until the last node has the last message;
* ``paced``: every node publishes at its share of ``--rate`` messages/s (5 ms ticks);
* ``paced-1``: node 0 alone publishes at ``--rate``; the others only receive, so their CPU is
  the pure receiving cost (column ``rx-only``).

Latency is publish to delivery (wall clock, same host), p50/p99 over all deliveries. ``CPU
µs/deliv`` is the sum over processes of ``time.process_time()`` during the phase divided by all
deliveries: it includes publishing, relaying, encryption, framing and every trio wake-up.
Payloads have the size of a real signed order and the validator hook accepts them without
checking the signature; the node's per-order ``decode_and_verify_tx`` cost is measured
separately in the parent and printed beside.

Usage: ``python bench/gossip.py [--nodes 4 8] [--messages 20000] [--rate 4000]``

On a shared or virtual machine a trio wake-up can cost 50-250 µs of CPU (cold caches after
each sleep), which dominates the paced phases; the burst phase shows the cost per message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Any

HEADER = struct.Struct(">HIQ")
"""publisher index, sequence number, publish time (ns since the epoch)."""


# --------------------------------------------------------------------------- shared setup


def _seed(label: str) -> bytes:
    import hashlib

    return hashlib.sha256(label.encode()).digest()


def _order_bytes() -> tuple[bytes, bytes]:
    """A real signed order and the chain id it is signed for."""
    from lockstep.consensus.actions import Order, OrderType, PlaceOrder, Side, TimeInForce
    from lockstep.consensus.crypto import Signer

    trader = Signer(_seed("bench-trader"))
    chain_id = _seed("bench-chain")
    place = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 600_000, 1, 7)
    tx = Order(trader.public_key, 123456789, 1000, place).sign(trader, chain_id)
    return tx.encode(), chain_id


def _payload_size() -> int:
    return len(_order_bytes()[0])


def _verify_cost_us(n: int = 2000) -> tuple[float, float]:
    """CPU µs of the node's per-order check: strict decode + Ed25519 verify, and verify alone."""
    from lockstep.consensus.actions import decode_and_verify_tx, decode_tx

    data, chain_id = _order_bytes()
    t0 = time.process_time()
    for _ in range(n):
        decode_and_verify_tx(data, chain_id)
    full = (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    for _ in range(n):
        decode_tx(data)
    decode_only = (time.process_time() - t0) / n * 1e6
    return full, full - decode_only


# --------------------------------------------------------------------------- worker


def _worker(args: argparse.Namespace) -> None:
    import logging

    import structlog
    import trio

    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )

    n, me = args.n, args.index
    ports = [int(p) for p in args.ports.split(",")]
    pubs = args.publishers
    per_pub = args.messages // pubs
    publishing = me < pubs
    expected = per_pub * (pubs - 1 if publishing else pubs)
    size = args.size
    latencies_us: list[int] = []
    done = trio.Event()
    received = [0]
    t_last = [0.0]

    if expected == 0:  # a lone publisher waits for nothing
        done.set()

    def on_payload(p: bytes) -> None:
        _, _, t_ns = HEADER.unpack_from(p)
        now = time.time_ns()
        latencies_us.append((now - t_ns) // 1000)
        received[0] += 1
        if received[0] >= expected:
            t_last[0] = time.time()
            done.set()

    async def publish(send_batch: Any) -> None:
        pad = b"p" * (size - HEADER.size)
        seq = 0
        if args.rate == 0:
            while seq < per_pub:
                k = min(200, per_pub - seq)
                now = time.time_ns()
                send_batch([HEADER.pack(me, seq + i, now) + pad for i in range(k)])
                seq += k
                await trio.sleep(0)
        else:
            interval = 0.005
            my_rate = args.rate / pubs
            start = trio.current_time()
            tick = 0
            while seq < per_pub:
                # Catch up after a late tick: the schedule, not the tick count, sets the rate.
                due = int((trio.current_time() - start) * my_rate) + 1
                k = min(max(0, due - seq), per_pub - seq)
                now = time.time_ns()
                send_batch([HEADER.pack(me, seq + i, now) + pad for i in range(k)])
                seq += k
                tick += 1
                await trio.sleep_until(start + tick * interval)

    async def go_signal() -> None:
        print("READY", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)

    runner = _run_noise if args.transport == "noise" else _run_plain

    extra: dict[str, Any] = {}
    args.extra = extra

    def finish(cpu_s: float, t_start: float) -> None:
        """Report and leave at once: no orderly shutdown of the mesh is being measured."""
        latencies_us.sort()
        print(
            "RESULT "
            + json.dumps(
                {
                    "index": me,
                    "cpu_s": cpu_s,
                    "received": received[0],
                    "expected": expected,
                    "publisher": publishing,
                    "t_start": t_start,
                    "t_last": t_last[0],
                    "lat_us": latencies_us[:: max(1, len(latencies_us) // 5000)],
                    **extra,
                }
            ),
            flush=True,
        )
        os._exit(0)

    if os.environ.get("BENCH_PROFILE") and me == 0:
        import cProfile

        prof = cProfile.Profile()
        inner = finish

        def finish(cpu_s: float, t_start: float) -> None:  # type: ignore[no-redef]
            prof.disable()
            prof.dump_stats(os.environ["BENCH_PROFILE"])
            inner(cpu_s, t_start)

        prof.enable()
    trio.run(runner, args, ports, me, n, on_payload, publish, go_signal, done, finish)


async def _run_noise(args, ports, me, n, on_payload, publish, go_signal, done, finish):
    import random

    import trio
    from lockstep.consensus.crypto import Signer
    from lockstep.net.framing import Kind
    from lockstep.net.gossip import GossipParams, Verdict
    from lockstep.net.host import Host, HostConfig

    signers = [Signer(_seed(f"bench-validator-{i}")) for i in range(n)]
    chain_id = _seed("bench-chain")
    peers = {s.public_key: f"127.0.0.1:{ports[i]}" for i, s in enumerate(signers) if i != me}
    size = args.size

    def validator(peer: bytes, kind: int, body: bytes) -> Verdict:
        return Verdict.ACCEPT if len(body) == size else Verdict.REJECT

    cfg = HostConfig(
        chain_id=chain_id,
        peers=peers,
        listen_port=ports[me],
        gossip=GossipParams(),
        dial_grace_s=0.2,
    )
    host = Host(cfg, signers[me], validator, rng=random.Random(me))
    extra = args.extra
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        with trio.fail_after(20):
            await host.wait_connected(peers)
        await go_signal()

        async def consume() -> None:
            async for batch in host.inbound:
                for m in batch:
                    on_payload(m.payload)

        nursery.start_soon(consume)
        broadcast = host.broadcast

        def send_batch(payloads: list[bytes]) -> None:
            for p in payloads:
                broadcast(Kind.TX, p)

        t_start = time.time()
        cpu0 = time.process_time()
        if me < args.publishers:
            nursery.start_soon(publish, send_batch)
        with trio.move_on_after(args.timeout):
            await done.wait()
        print("DONE", flush=True)
        # keep serving (forwarding) until every node is done; idle time costs no CPU
        await trio.to_thread.run_sync(sys.stdin.readline)
        extra["stats"] = {k: v for k, v in host.stats.items()}
        finish(time.process_time() - cpu0, t_start)


async def _run_plain(args, ports, me, n, on_payload, publish, go_signal, done, finish):
    """Naive flooding over unencrypted trio TCP: 4-byte length prefix, one write per message."""
    import trio

    streams: dict[int, trio.SocketStream] = {}
    locks: dict[int, trio.Lock] = {}
    seen: set[bytes] = set()

    async def send_to(peer: int, frame: bytes) -> None:
        try:
            async with locks[peer]:
                await streams[peer].send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    connected = trio.Event()

    async def reader(stream: trio.SocketStream, peer: int) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await _read_loop(stream, peer)

    async def _read_loop(stream: trio.SocketStream, peer: int) -> None:
        buf = bytearray()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                ln = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + ln:
                    break
                msg = bytes(buf[4 : 4 + ln])
                del buf[: 4 + ln]
                if msg in seen:
                    continue
                seen.add(msg)
                on_payload(msg)
                frame = len(msg).to_bytes(4, "big") + msg
                for p in list(streams):
                    if p != peer:
                        await send_to(p, frame)

    def register(stream: trio.SocketStream, peer: int) -> None:
        streams[peer] = stream
        locks[peer] = trio.Lock()
        if len(streams) == n - 1:
            connected.set()

    async with trio.open_nursery() as nursery:

        async def handler(stream: trio.SocketStream) -> None:
            peer = int.from_bytes(await stream.receive_some(2), "big")
            register(stream, peer)
            await reader(stream, peer)  # the stream is closed when the handler returns

        listeners = await trio.open_tcp_listeners(ports[me], host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        for j in range(me + 1, n):
            for _ in range(200):
                try:
                    st = await trio.open_tcp_stream("127.0.0.1", ports[j])
                    break
                except OSError:
                    await trio.sleep(0.05)
            await st.send_all(me.to_bytes(2, "big"))
            register(st, j)
            nursery.start_soon(reader, st, j)
        with trio.fail_after(20):
            await connected.wait()
        await go_signal()

        async def send_batch_async(payloads: list[bytes]) -> None:
            for msg in payloads:
                seen.add(msg)
                frame = len(msg).to_bytes(4, "big") + msg
                for p in list(streams):
                    await send_to(p, frame)

        pending: list[list[bytes]] = []
        wake = trio.Event()

        async def sender() -> None:
            nonlocal wake
            while True:
                while pending:
                    await send_batch_async(pending.pop(0))
                wake = trio.Event()
                await wake.wait()

        def send_batch(payloads: list[bytes]) -> None:
            pending.append(payloads)
            wake.set()

        nursery.start_soon(sender)
        t_start = time.time()
        cpu0 = time.process_time()
        if me < args.publishers:
            nursery.start_soon(publish, send_batch)
        with trio.move_on_after(args.timeout):
            await done.wait()
        print("DONE", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        cpu = time.process_time() - cpu0
        finish(cpu, t_start)


# --------------------------------------------------------------------------- parent


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_phase(
    transport: str, n: int, messages: int, rate: int, publishers: int, timeout: float
) -> dict[str, Any]:
    ports = _free_ports(n)
    size = _payload_size()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--transport", transport]
    common = [
        "--n", str(n), "--ports", ",".join(map(str, ports)), "--messages", str(messages),
        "--rate", str(rate), "--size", str(size), "--timeout", str(timeout),
        "--publishers", str(publishers),
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*cmd, *common, "--index", str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    try:
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "READY":
                raise RuntimeError(f"worker failed to start: {line!r}")
        for p in procs:
            p.stdin.write("GO\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        results = []
        for p in procs:
            # the worker reports once it has everything (or timed out), then waits for STOP
            while True:
                line = p.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise RuntimeError("worker died")
                if line.startswith("DONE"):
                    break
            results.append(line)
        for p in procs:
            p.stdin.write("STOP\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        parsed = []
        for p in procs:
            for line in p.stdout:  # type: ignore[union-attr]
                if line.startswith("RESULT "):
                    parsed.append(json.loads(line[7:]))
            p.wait(timeout=10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    per_pub = messages // publishers
    total = per_pub * publishers
    delivered = sum(r["received"] for r in parsed)
    cpu = sum(r["cpu_s"] for r in parsed)
    rx = [r for r in parsed if not r["publisher"]]
    rx_cpu_us = (
        sum(r["cpu_s"] for r in rx) / max(1, sum(r["received"] for r in rx)) * 1e6
        if rx
        else float("nan")
    )
    t0 = min(r["t_start"] for r in parsed)
    receivers = [r for r in parsed if r["expected"]]
    complete = all(r["t_last"] for r in receivers)
    t1 = max(r["t_last"] for r in receivers) if complete else float("nan")
    lats = sorted(x for r in parsed for x in r["lat_us"])
    if os.environ.get("BENCH_DEBUG"):
        for r in parsed:
            print("   ", r["index"], r.get("stats"), round(r["cpu_s"], 3), file=sys.stderr)
    return {
        "transport": transport,
        "nodes": n,
        "messages": total,
        "delivered_frac": delivered / sum(r["expected"] for r in parsed),
        "msgs_per_s_to_all": total / (t1 - t0),
        "cpu_us_per_delivery": cpu / max(1, delivered) * 1e6,
        "rx_cpu_us_per_delivery": rx_cpu_us,
        "p50_ms": lats[len(lats) // 2] / 1000 if lats else float("nan"),
        "p99_ms": lats[int(len(lats) * 0.99)] / 1000 if lats else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--transport", default="noise", choices=["noise", "plain"])
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--ports", default="")
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--nodes", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rate", type=int, default=4_000, help="paced phase, messages/s in total")
    ap.add_argument("--publishers", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--transports", nargs="+", default=["noise", "plain"])
    ap.add_argument("--phases", nargs="+", default=["burst", "paced", "paced-1"])
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    full_us, sig_us = _verify_cost_us()
    print(
        f"node's per-order check, not in the figures below: decode + Ed25519 verify "
        f"{full_us:.1f} µs CPU (verify alone {sig_us:.1f} µs)"
    )
    hdr = (
        f"{'transport':9} {'nodes':>5} {'phase':9} {'msgs':>6} {'deliv%':>7} "
        f"{'msgs/s→all':>11} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/deliv':>13} {'rx-only':>8}"
    )
    print(hdr)
    for n in args.nodes:
        for transport in args.transports:
            phases = (
                ("burst", 0, n, args.messages),
                ("paced", args.rate, n, args.rate * 3),
                ("paced-1", args.rate, 1, args.rate * 3),
            )
            for phase, rate, pubs, msgs in phases:
                if phase not in args.phases:
                    continue
                r = run_phase(transport, n, msgs, rate, pubs, args.timeout)
                print(
                    f"{transport:9} {n:>5} {phase:9} {r['messages']:>6} "
                    f"{100 * r['delivered_frac']:>6.1f}% {r['msgs_per_s_to_all']:>11.0f} "
                    f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['cpu_us_per_delivery']:>13.1f} "
                    f"{r['rx_cpu_us_per_delivery']:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
