"""A 4-node testnet of real processes at increasing load: throughput, latency, failover, catch-up.

Prints, from one run on this machine:
  * single-core Ed25519 verifications/s (the baseline everything is divided by);
  * per offered load: finalized orders/s, commit latency p50/p99 (submit → seen committed);
  * the ratio of peak finalized orders/s to the Ed25519 rate (goal ≥ 0.25; 0.5 is the ceiling
    with four verifying nodes on two cores);
  * latency at half the peak rate (goals p50 ≤ 100 ms, p99 ≤ 500 ms);
  * the gap in commits after the sequencer is SIGKILLed, in view timeouts (goal ≤ 2);
  * the catch-up speed of a restarted node beside the live block rate (goal ≥ 10×), once with
    the network idle and once with it trading at half the peak while the node is down;
  * RSS per node; with ``--soak N``, RSS again after N more actions at half the peak rate
    (goal ≤ 200 MB after a million: ``--soak 1000000``, about ten minutes).

    python bench/testnet.py [--rates 500 1000 2000 3000 4000] [--seconds 8] [--soak N]

Orders are signed before each load step (signing is not what is measured), and submitted in
batches of 100 through the real RPC of every node in turn; an order's commit time is when node 0
announces its block on the RPC's ``blocks`` stream (WebSocket), as a trading client would see it.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import nacl.signing
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lockstep.consensus.actions import (
    Cancel,
    CancelAll,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)
from lockstep.consensus.crypto import Signer
from lockstep.node.keys import load_wallet
from lockstep.testnet.generate import generate_network
from lockstep.testnet.processes import Network

from tests.localnet import free_base_port
from tests.wsclient import WsClient

T = TypeVar("T")

BATCH = 100
CANCEL_EVERY = 20
SOAK_CHUNK = 20_000
"""Actions signed at a time: sent within their expiry (900 blocks) even at a slow rate."""
TRADERS = 64
VIEW_TIMEOUT_S = 1.0


def ed25519_verifies_per_s(seconds: float = 1.0) -> float:
    key = nacl.signing.SigningKey(hashlib.sha256(b"bench").digest())
    msg = b"x" * 140
    sig = key.sign(msg).signature
    vk = key.verify_key
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(200):
            vk.verify(msg, sig)
        n += 200
    return n / (time.process_time() - start)


def sign_orders(traders: list[Signer], chain_id: bytes, count: int, expiry: int) -> list[str]:
    rng = random.Random(count)
    out = []
    nonce = time.time_ns()
    for _ in range(count):
        t = rng.choice(traders)
        nonce += 1
        side = rng.choice((Side.BUY, Side.SELL))
        px = 600_000 + rng.randint(-30, 30)
        place = PlaceOrder(0, side, OrderType.LIMIT, TimeInForce.GTC, False, px, 1, nonce)
        out.append(Order(t.public_key, nonce, expiry, place).sign(t, chain_id).encode().hex())
    return out


def sign_flow(traders: list[Signer], chain_id: bytes, count: int, expiry: int) -> list[str]:
    """Orders as ``sign_orders``, but each trader cancels all its orders every
    ``CANCEL_EVERY`` actions, as a market maker re-quoting does: the book stays bounded, so a
    long run measures the node and not an ever-growing book."""
    rng = random.Random(count)
    out = []
    nonce = time.time_ns()
    sent = dict.fromkeys(range(len(traders)), 0)
    for _ in range(count):
        k = rng.randrange(len(traders))
        t = traders[k]
        nonce += 1
        sent[k] += 1
        if sent[k] % CANCEL_EVERY == 0:
            tx = Cancel(t.public_key, nonce, expiry, CancelAll(0))
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            px = 600_000 + rng.randint(-30, 30)
            place = PlaceOrder(0, side, OrderType.LIMIT, TimeInForce.GTC, False, px, 1, nonce)
            tx = Order(t.public_key, nonce, expiry, place)
        out.append(tx.sign(t, chain_id).encode().hex())
    return out


def height(url: str) -> int:
    try:
        return int(httpx.get(url + "/v1/status", timeout=2).json()["height"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


async def load_step(urls: list[str], txs: list[str], rate: float) -> dict[str, float]:
    """Offer ``txs`` at ``rate``/s; return finalized orders/s and latency percentiles."""
    submitted: dict[str, float] = {}
    refused: collections.Counter[str] = collections.Counter()
    committed: dict[str, float] = {}
    start_h = height(urls[0])
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:

        async def post(batch: list[str], url: str) -> None:
            sent_at = time.monotonic()
            for attempt in range(3):  # a resubmission is harmless: "already pending"
                try:
                    r = await client.post(
                        url + "/v1/actions/batch", json={"txs": batch}, timeout=60
                    )
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            for res in r.json()["results"]:
                if res.get("status") == "accepted":
                    submitted[res["tx_id"]] = sent_at
                else:
                    refused[res.get("error", "?")] += 1

        async def watch(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            """Commit times: when node 0 announces each block on its ``blocks`` stream; the
            block's transaction ids are fetched after (so fetching delays no timestamp)."""
            url = httpx.URL(urls[0])
            ws = await WsClient.connect(url.host, url.port or 80, "/v1/ws")
            await ws.send_json({"op": "subscribe", "stream": "blocks"})
            announced_send, announced_recv = trio.open_memory_channel[tuple[int, float]](10_000)

            async def fetch() -> None:
                async for height_at in announced_recv:
                    batch = [height_at, *_drained(announced_recv)]
                    seen = dict(batch)
                    r = await client.get(
                        urls[0] + "/v1/blocks",
                        params={"from": min(seen), "to": max(seen)},
                        timeout=10,
                    )
                    for b in r.json()["blocks"]:
                        at = seen.get(int(b["height"]))
                        if at is not None:
                            for tx_id in b["tx_ids"]:
                                committed.setdefault(tx_id, at)

            async with trio.open_nursery() as inner:
                inner.start_soon(fetch)
                task_status.started()
                try:
                    while True:
                        event = await ws.receive_json()
                        now = time.monotonic()
                        data = event.get("data") or {}
                        fresh = event.get("type") == "update" and data.get("txs")
                        if fresh and int(data["height"]) > start_h:
                            announced_send.send_nowait((int(data["height"]), now))
                finally:
                    with trio.CancelScope(shield=True):
                        await ws.aclose()

        t0 = time.monotonic()
        async with trio.open_nursery() as nursery:
            await nursery.start(watch)
            async with trio.open_nursery() as senders:
                for i in range(0, len(txs), BATCH):
                    await trio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                    senders.start_soon(post, txs[i : i + BATCH], urls[(i // BATCH) % len(urls)])
            sent_s = time.monotonic() - t0
            with trio.move_on_after(30):
                while len(committed) < len(submitted):
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    lat = sorted((committed[t] - s) * 1000 for t, s in submitted.items() if t in committed)
    last = max(committed.values(), default=t0)
    return {
        "offered": rate,
        "accepted": len(submitted),
        "committed": len([t for t in submitted if t in committed]),
        "finalized_per_s": len(lat) / max(1e-9, last - t0),
        "sent_s": sent_s,
        "p50_ms": statistics.median(lat) if lat else float("nan"),
        "p99_ms": lat[min(len(lat) - 1, len(lat) * 99 // 100)] if lat else float("nan"),
        "refused": dict(refused),
    }


def _drained(channel: trio.MemoryReceiveChannel[T]) -> list[T]:
    """Everything already waiting on ``channel``, without waiting."""
    out: list[T] = []
    while True:
        try:
            out.append(channel.receive_nowait())
        except trio.WouldBlock:
            return out


def rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, TypeError):
        pass
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 2000, 3000, 4000])
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per load step")
    ap.add_argument(
        "--soak", type=int, default=0, help="then this many more actions, for RSS (0: skip)"
    )
    args = ap.parse_args()

    verify_rate = ed25519_verifies_per_s()
    print(f"Ed25519 verify, one core, this run: {verify_rate:,.0f}/s")
    tmp = Path(tempfile.mkdtemp(prefix="lockstep-bench-"))
    g = generate_network(tmp, 4, n_traders=TRADERS, base_port=free_base_port(4)).genesis
    net = Network.from_dir(tmp)
    net.start_all()
    try:
        net.wait_ready(60)
        urls = [n.rpc_url for n in net.nodes]
        traders = [load_wallet(p) for p in sorted((tmp / "wallets").glob("*.json"))]
        results = []
        print(
            f"{'offered/s':>10} {'finalized/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'committed':>10}"
        )
        for rate in args.rates:
            txs = sign_orders(traders, g.chain_id, int(rate * args.seconds), height(urls[0]) + 900)
            r = trio.run(load_step, urls, txs, rate)
            results.append(r)
            print(
                f"{rate:>10,.0f} {r['finalized_per_s']:>12,.0f} {r['p50_ms']:>8.0f} "
                f"{r['p99_ms']:>8.0f} {r['committed']:>5}/{r['accepted']}"
            )
        peak = max(r["finalized_per_s"] for r in results)
        half = peak / 2
        txs = sign_orders(traders, g.chain_id, int(half * args.seconds), height(urls[0]) + 900)
        h = trio.run(load_step, urls, txs, half)
        print(
            f"\npeak finalized orders/s: {peak:,.0f}; ratio to one-core Ed25519 verify: "
            f"{peak / verify_rate:.3f} (goal ≥ 0.25, ceiling 0.5)"
        )
        print(
            f"at half the peak ({half:,.0f}/s): p50 {h['p50_ms']:.0f} ms, p99 {h['p99_ms']:.0f} ms "
            f"(goals ≤ 100 / ≤ 500 ms)"
        )

        # Sequencer failover.
        seq = int(httpx.get(urls[0] + "/v1/status").json()["sequencer"])
        others = [u for i, u in enumerate(urls) if i != seq]
        before = max(height(u) for u in others)
        t = time.monotonic()
        net.nodes[seq].kill()
        while max(height(u) for u in others) < before + 2 and time.monotonic() - t < 30:
            time.sleep(0.02)
        gap = time.monotonic() - t
        print(
            f"commit gap after SIGKILL of the sequencer: {gap:.2f} s = "
            f"{gap / VIEW_TIMEOUT_S:.2f} view timeouts (goal ≤ 2)"
        )

        # Catch-up of a restarted node, against the live block rate while it was down: once
        # with the network idle (empty blocks), once with it trading at half the peak, so the
        # node falls hundreds of full blocks behind.
        catch_up(net, seq, None)
        net.nodes[seq].kill()
        txs = sign_orders(traders, g.chain_id, int(half * 15), height(others[0]) + 900)
        catch_up(net, seq, lambda: trio.run(load_step, others, txs, half))
        print("RSS per node: " + ", ".join(f"{n.name} {rss_mb(n.pid):.0f} MB" for n in net.nodes))
        if args.soak:
            soak(net, traders, g.chain_id, args.soak, half)
    finally:
        net.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def catch_up(net: Network, index: int, load: Callable[[], object] | None) -> None:
    """Keep node ``index`` (killed) down for 15 s, or while ``load`` runs on the others; restart
    it and print its catch-up speed beside the others' block rate meanwhile.

    Timed from the node's ``handshake`` log line (its stores are open and it starts its network
    next) to reaching the others' height: the interpreter's start is not catch-up, and a node
    a few hundred blocks behind is level again before its RPC even answers."""
    urls = [n.rpc_url for n in net.nodes]
    others = [u for i, u in enumerate(urls) if i != index]
    h0, t0 = max(height(u) for u in others), time.monotonic()
    if load is None:
        time.sleep(15.0)
    else:
        load()
    live_rate = (max(height(u) for u in others) - h0) / (time.monotonic() - t0)
    log = net.nodes[index].log_file
    log_offset = log.stat().st_size if log.exists() else 0
    net.nodes[index].start()
    target = max(height(u) for u in others)
    t_start = time.monotonic()
    while height(urls[index]) < target and time.monotonic() - t_start < 120:
        time.sleep(0.02)
    done_at = time.time()
    shake = _handshake(log, log_offset)
    if shake is None:
        print("restarted node: no handshake line in its log; catch-up not timed")
        return
    at, stored = shake
    took = max(1e-3, done_at - at)
    rate = (target - stored) / took
    print(
        f"restarted node ({'under load' if load else 'idle network'}): {target - stored} blocks "
        f"behind, level {took:.2f} s after its handshake = {rate:,.0f} blocks/s; live rate "
        f"{live_rate:.1f} blocks/s (ratio {rate / max(live_rate, 1e-9):.0f}×, goal ≥ 10×)"
    )


def _handshake(log: Path, offset: int) -> tuple[float, int] | None:
    """(wall time, block store height) of the first ``handshake`` line after ``offset``."""
    with open(log, "rb") as f:
        f.seek(offset)
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "handshake":
                when = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                return when.timestamp(), int(event["block_store_height"])
    return None


def soak(net: Network, traders: list[Signer], chain_id: bytes, total: int, rate: float) -> None:
    """``total`` more actions at ``rate``, in chunks signed as they go; RSS after each."""
    urls = [n.rpc_url for n in net.nodes]
    done = committed = 0
    t0 = time.monotonic()
    while done < total:
        n = min(SOAK_CHUNK, total - done)
        txs = sign_flow(traders, chain_id, n, height(urls[0]) + 900)
        r = trio.run(load_step, urls, txs, rate)
        done += n
        committed += r["committed"]
        if r["refused"] or r["committed"] < r["accepted"]:
            print(
                f"  accepted {r['accepted']:,}, committed {r['committed']:,} within 30 s of the "
                f"last send; refused: {r['refused']}"
            )
        rss = ", ".join(f"{rss_mb(x.pid):.0f}" for x in net.nodes)
        print(
            f"soak: {done:,} actions ({committed:,} committed) in {time.monotonic() - t0:,.0f} s;"
            f" p50 {r['p50_ms']:.0f} ms; RSS per node {rss} MB (goal ≤ 200 after 1,000,000)",
            flush=True,
        )


if __name__ == "__main__":
    main()
