"""Actions/s accepted through one node's RPC, single and batched, beside Ed25519 verification.

Each accepted action costs the node a strict decode, a signature check, the static and stateful
admission rules, the mempool, a journal append (one flush per request) and gossip to three
peers. The figure to compare with is one core's Ed25519 verification rate, measured in the
same run.

    python bench/rpc.py [--seconds 5] [--clients 32]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lockstep.consensus.actions import Order, OrderType, PlaceOrder, Side, TimeInForce
from lockstep.node.keys import load_wallet
from lockstep.testnet.generate import generate_network
from lockstep.testnet.processes import Network

from bench.testnet import ed25519_verifies_per_s, height
from tests.localnet import free_base_port


def signed(traders: list, chain_id: bytes, n: int, expiry: int) -> list[bytes]:
    rng = random.Random(n)
    nonce = time.time_ns()
    out = []
    for _ in range(n):
        t = rng.choice(traders)
        nonce += 1
        side = rng.choice((Side.BUY, Side.SELL))
        px = 600_000 + (-200 if side == Side.BUY else 200) - rng.randint(0, 50)  # resting, no fills
        place = PlaceOrder(0, side, OrderType.LIMIT, TimeInForce.GTC, False, px, 1, nonce)
        out.append(Order(t.public_key, nonce, expiry, place).sign(t, chain_id).encode())
    return out


async def drive(url: str, txs: list[bytes], clients: int, batch: int, seconds: float) -> float:
    accepted = 0
    it = iter(range(0, len(txs), batch))
    deadline = time.monotonic() + seconds
    t0 = time.monotonic()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as client:

        async def worker() -> None:
            nonlocal accepted
            for i in it:
                if time.monotonic() > deadline:
                    return
                chunk = txs[i : i + batch]
                if batch == 1:
                    r = await client.post(
                        url + "/v1/actions",
                        content=chunk[0],
                        headers={"content-type": "application/cbor"},
                    )
                    accepted += r.status_code == 202
                else:
                    r = await client.post(
                        url + "/v1/actions/batch",
                        json={"txs": [t.hex() for t in chunk]},
                        timeout=60,
                    )
                    accepted += sum(x.get("status") == "accepted" for x in r.json()["results"])

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(worker)
    return accepted / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    verify = ed25519_verifies_per_s()
    tmp = Path(tempfile.mkdtemp(prefix="lockstep-rpc-bench-"))
    g = generate_network(tmp, 4, n_traders=64, base_port=free_base_port(4)).genesis
    net = Network.from_dir(tmp)
    net.start_all()
    try:
        net.wait_ready(60)
        url = net.nodes[0].rpc_url
        traders = [load_wallet(p) for p in sorted((tmp / "wallets").glob("*.json"))]
        expiry = height(url) + 900
        n = int(6_000 * args.seconds)
        single = trio.run(
            drive, url, signed(traders, g.chain_id, n, expiry), args.clients, 1, args.seconds
        )
        batched = trio.run(
            drive,
            url,
            signed(traders[::-1], g.chain_id, n, expiry),
            max(1, args.clients // 8),
            100,
            args.seconds,
        )
        print(f"Ed25519 verify, one core, this run:   {verify:9,.0f}/s")
        print(
            f"RPC accepted, one action per request: {single:9,.0f}/s  "
            f"({single / verify:.3f} of a core's verifications)"
        )
        print(
            f"RPC accepted, 100 actions per request:{batched:9,.0f}/s  "
            f"({batched / verify:.3f} of a core's verifications)"
        )
    finally:
        net.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
