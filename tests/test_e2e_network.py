"""End to end: four real node processes on 127.0.0.1, the real RPC and the real wallet CLI, a
SIGKILLed sequencer, a restart, and equal state roots at the end. Nothing of ours is mocked."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lockstep.consensus.actions import (
    Batch,
    Cancel,
    CancelOrder,
    MarketPrice,
    OraclePrice,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    SignedTx,
    TimeInForce,
    Transfer,
)
from lockstep.consensus.crypto import Signer
from lockstep.node.exchange.mempool_rules import INSURANCE_FUND, MAX_OPEN_ORDERS_PER_ACCOUNT
from lockstep.node.keys import load_wallet

from .localnet import (
    height,
    local_network,
    one_network_at_a_time,
    roots,
    status,
    wait_for,
    wallet,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def _alone() -> Iterator[None]:
    with one_network_at_a_time():
        yield


def _post(url: str, tx: SignedTx | bytes) -> httpx.Response:
    raw = tx if isinstance(tx, bytes) else tx.encode()
    return httpx.post(
        url + "/v1/actions", content=raw, headers={"content-type": "application/cbor"}, timeout=10
    )


def _refusal(args: list[str]) -> str:
    out = wallet(*args, check=False)
    assert out.get("exit") == 1, out
    return out["stderr"]


def test_trading_rejections_sequencer_kill_and_restart(tmp_path: Path) -> None:
    with local_network(tmp_path / "net") as net:
        urls = [n.rpc_url for n in net.nodes]
        genesis = str(tmp_path / "net" / "genesis.toml")
        w = sorted((tmp_path / "net" / "wallets").glob("trader*.json"))
        common = ["--genesis", genesis]

        def place(wallet_file: Path, node: int, *extra: str) -> dict:
            return wallet(
                "place",
                "--file",
                str(wallet_file),
                "--rpc",
                urls[node],
                *common,
                "--market",
                "BTC-PERP",
                *extra,
            )

        # ---- place, fill, query --------------------------------------------------------------
        ask = place(
            w[0],
            0,
            "--side",
            "sell",
            "--type",
            "limit",
            "--size",
            "0.5",
            "--price",
            "60010",
            "--client-id",
            "11",
            "--wait",
        )
        assert ask["submitted"]["status"] == "committed"
        assert ask["submitted"]["result"]["reason"] == "OK"
        take = place(
            w[1], 1, "--side", "buy", "--type", "ioc", "--size", "0.2", "--price", "60020", "--wait"
        )
        fills = take["submitted"]["result"]["fills"]
        assert [(f["price"], f["size"], f["taker_side"]) for f in fills] == [
            ("60010.0", "0.200", "BUY")
        ]
        book = wallet("book", "BTC-PERP", "--rpc", urls[2], *common)
        assert [(lv["price"], lv["size"]) for lv in book["asks"]] == [("60010.0", "0.300")]
        assert book["bids"] == []
        trades = wallet("trades", "BTC-PERP", "--rpc", urls[3], *common)
        assert [(t["price"], t["size"]) for t in trades["trades"]] == [("60010.0", "0.200")]
        pos = wallet("positions", "--file", str(w[1]), "--rpc", urls[0])
        assert [(p["symbol"], p["size"]) for p in pos["positions"]] == [("BTC-PERP", "0.200")]
        orders = wallet("orders", "--file", str(w[0]), "--rpc", urls[0], *common)
        assert [(o["client_id"], o["remaining_lots"]) for o in orders["open_orders"]] == [(11, 300)]

        markets = httpx.get(urls[1] + "/v1/markets", timeout=5).json()["markets"]
        assert [m["symbol"] for m in markets] == ["BTC-PERP", "ETH-PERP"]
        assert markets[0]["open_interest_lots"] == 200
        assert "/v1/actions" in httpx.get(urls[2] + "/openapi.json", timeout=5).json()["paths"]
        orders_rpc_only = wallet("orders", "--file", str(w[0]), "--rpc", urls[3])
        assert [o["symbol"] for o in orders_rpc_only["open_orders"]] == ["BTC-PERP"]

        # ---- cancel ------------------------------------------------------------------------------
        cancel = wallet(
            "cancel",
            "--file",
            str(w[0]),
            "--rpc",
            urls[0],
            *common,
            "--market",
            "BTC-PERP",
            "--client-id",
            "11",
            "--wait",
        )
        assert cancel["submitted"]["result"]["reason"] == "OK"
        assert wallet("orders", "--file", str(w[0]), "--rpc", urls[1], *common)["open_orders"] == []

        # ---- refusals through the wallet, each with its reason code --------------------------
        def refused_place(wallet_file: Path, *extra: str) -> str:
            return _refusal(
                [
                    "place",
                    "--file",
                    str(wallet_file),
                    "--rpc",
                    urls[0],
                    *common,
                    "--market",
                    "BTC-PERP",
                    *extra,
                ]
            )

        place(
            w[0],
            0,
            "--side",
            "sell",
            "--type",
            "limit",
            "--size",
            "0.1",
            "--price",
            "60050",
            "--client-id",
            "12",
            "--wait",
        )
        cases = {
            "POST_ONLY_WOULD_CROSS": [
                "--side",
                "buy",
                "--type",
                "post-only",
                "--size",
                "0.1",
                "--price",
                "60060",
            ],
            "REDUCE_ONLY_WOULD_INCREASE": [
                "--side",
                "sell",
                "--type",
                "limit",
                "--size",
                "0.1",
                "--price",
                "61000",
                "--reduce-only",
            ],
            "EXPIRED": [
                "--side",
                "buy",
                "--type",
                "limit",
                "--size",
                "0.1",
                "--price",
                "59000",
                "--expiry-height",
                "1",
            ],
            "EXPIRY_TOO_FAR": [
                "--side",
                "buy",
                "--type",
                "limit",
                "--size",
                "0.1",
                "--price",
                "59000",
                "--expiry-height",
                "99999999",
            ],
        }
        for reason, extra in cases.items():
            err = refused_place(w[2], *extra)
            assert reason in err, (reason, err)
        # Margin at the edge counts resting orders, so the first must be in a block first.
        place(
            w[3],
            0,
            "--side",
            "buy",
            "--type",
            "limit",
            "--size",
            "100",
            "--price",
            "50000",
            "--wait",
        )
        err = refused_place(
            w[3], "--side", "buy", "--type", "limit", "--size", "100", "--price", "50000"
        )
        assert "INSUFFICIENT_MARGIN" in err
        place(
            w[2],
            0,
            "--side",
            "buy",
            "--type",
            "limit",
            "--size",
            "0.1",
            "--price",
            "59000",
            "--client-id",
            "77",
            "--wait",
        )
        err = refused_place(
            w[2],
            "--side",
            "buy",
            "--type",
            "limit",
            "--size",
            "0.1",
            "--price",
            "59001",
            "--client-id",
            "77",
        )
        assert "DUPLICATE_CLIENT_ID" in err
        fresh = tmp_path / "unfunded.json"
        wallet("new", "--insecure", "--file", str(fresh))
        err = refused_place(
            fresh, "--side", "buy", "--type", "limit", "--size", "0.1", "--price", "59000"
        )
        assert "UNKNOWN_ACCOUNT" in err
        err = _refusal(
            [
                "transfer",
                "--file",
                str(w[2]),
                "--rpc",
                urls[0],
                *common,
                "--to",
                load_wallet(w[3]).public_key.hex(),
                "--amount",
                "999999999",
            ]
        )
        assert "INSUFFICIENT_BALANCE" in err

        # A replayed action: the same signed bytes again are refused (409).
        replay = bytes.fromhex(take["tx_hex"])
        r = _post(urls[2], replay)
        assert r.status_code == 409 and r.json()["error"] == "REPLAYED"

        # ---- refusals only a hand-built transaction can reach --------------------------------
        chain_id = bytes.fromhex(status(urls[0])["chain_id"])
        trader = load_wallet(w[2])
        h = height(urls[0])

        def order(place_: PlaceOrder, chain: bytes = chain_id) -> SignedTx:
            return Order(trader.public_key, time.time_ns(), h + 50, place_).sign(trader, chain)

        good = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 590_000, 100, 5)
        bad_cases = {
            "UNKNOWN_MARKET": order(PlaceOrder(9, *_rest(good))),
            "PRICE_OUT_OF_RANGE": order(_with(good, price=0)),
            "SIZE_OUT_OF_RANGE": order(_with(good, size=10**9)),
            "INVALID_ORDER_TYPE": order(
                _with(good, order_type=OrderType.MARKET, time_in_force=TimeInForce.POST_ONLY)
            ),
            "BAD_SIGNATURE": order(good, chain=hashlib.sha256(b"another chain").digest()),
            "NOT_A_VALIDATOR": OraclePrice(
                trader.public_key, 1, h + 50, (MarketPrice(0, 600_000),)
            ).sign(trader, chain_id),
            "RESERVED_ACCOUNT": Transfer(trader.public_key, 2, h + 50, INSURANCE_FUND, 1).sign(
                trader, chain_id
            ),
        }
        for reason, tx in bad_cases.items():
            r = _post(urls[1], tx)
            assert r.status_code in (400, 422) and r.json()["error"] == reason, (reason, r.text)
        r = _post(urls[1], b"\x83\x14garbage")
        assert r.status_code == 400 and r.json()["error"] == "MALFORMED"

        # A batch naming one client id twice is refused whole; a cancel of an order that does
        # not exist is accepted at the edge (the order could be pending) and refused in the block.
        dup = Batch(
            trader.public_key,
            time.time_ns(),
            h + 50,
            (_with(good, client_id=9), _with(good, client_id=9)),
        )
        r = _post(urls[0], dup.sign(trader, chain_id))
        assert r.status_code == 422 and r.json()["error"] == "BATCH_DUPLICATE_CLIENT_ID", r.text
        ghost = Cancel(trader.public_key, time.time_ns(), h + 50, CancelOrder(0, 424242))
        r = httpx.post(
            urls[0] + "/v1/actions?wait=true",
            content=ghost.sign(trader, chain_id).encode(),
            headers={"content-type": "application/cbor"},
            timeout=20,
        )
        assert (
            r.json()["status"] == "rejected" and r.json()["result"]["reason"] == "ORDER_NOT_FOUND"
        )
        # An account may rest at most MAX_OPEN_ORDERS_PER_ACCOUNT orders.
        maker = load_wallet(w[3])
        resting = len(wallet("orders", "--file", str(w[3]), "--rpc", urls[0])["open_orders"])
        cid = 10_000
        while resting < MAX_OPEN_ORDERS_PER_ACCOUNT:
            n = min(64, MAX_OPEN_ORDERS_PER_ACCOUNT - resting)
            legs = tuple(
                _with(good, price=500_000 - k, size=1, client_id=cid + k) for k in range(n)
            )
            cid += n
            batch = Batch(maker.public_key, time.time_ns(), height(urls[0]) + 50, legs)
            r = httpx.post(
                urls[0] + "/v1/actions?wait=true",
                content=batch.sign(maker, chain_id).encode(),
                headers={"content-type": "application/cbor"},
                timeout=20,
            )
            assert r.json()["result"]["reason"] == "OK", r.text
            resting += n
        one_more = Order(
            maker.public_key,
            time.time_ns(),
            height(urls[0]) + 50,
            _with(good, price=490_000, size=1, client_id=cid),
        )
        r = _post(urls[0], one_more.sign(maker, chain_id))
        assert r.status_code == 422 and r.json()["error"] == "TOO_MANY_OPEN_ORDERS", r.text

        # ---- kill the sequencer: the next commit comes within two view timeouts ----------
        seq = int(status(urls[0])["sequencer"])
        survivors = [i for i in range(4) if i != seq]
        before = max(height(urls[i]) for i in survivors)
        killed_at = time.monotonic()
        net.nodes[seq].kill()
        wait_for(
            lambda: max(height(urls[i]) for i in survivors) > before + 1,
            10.0,
            "a commit after the sequencer was killed",
            0.05,
        )
        gap_s = time.monotonic() - killed_at
        view_timeout_s = 1.0
        assert gap_s <= 2 * view_timeout_s + 0.5, f"no commit for {gap_s:.2f} s"
        assert int(status(urls[survivors[0]])["sequencer"]) != seq
        during = place(
            w[1],
            survivors[0],
            "--side",
            "sell",
            "--type",
            "ioc",
            "--size",
            "0.1",
            "--price",
            "58000",
            "--wait",
        )
        assert during["submitted"]["status"] == "committed"

        # ---- restart it: it catches up and agrees on every state root --------------------
        net.nodes[seq].start()
        target = max(height(urls[i]) for i in survivors)
        wait_for(lambda: height(urls[seq]) >= target, 60.0, "the restarted node to catch up")
        top = min(height(u) for u in urls)
        first = max(1, top - 200)
        all_roots = [roots(u, first, top) for u in urls]
        assert all(r == all_roots[0] for r in all_roots[1:])
        assert len(all_roots[0]) == top - first + 1

        # The restarted node serves its older blocks from the block store and the ones it
        # committed since from memory; the others serve all of these from memory. Same view.
        def blocks(url: str) -> list[tuple]:
            docs = httpx.get(
                url + "/v1/blocks", params={"from": first, "to": min(top, first + 99)}
            ).json()
            return [(b["height"], b["hash"], b["view"], b["tx_ids"]) for b in docs["blocks"]]

        listed = [blocks(u) for u in urls]
        assert len(listed[0]) == min(100, top - first + 1)
        assert all(b == listed[0] for b in listed[1:])
        totals = httpx.get(urls[seq] + "/v1/ledger/totals", timeout=5).json()
        assert totals["conserved"] and totals["open_interest_balanced"]


def _rest(p: PlaceOrder) -> tuple:
    return (p.side, p.order_type, p.time_in_force, p.reduce_only, p.price, p.size, p.client_id)


def _with(p: PlaceOrder, **changes: object) -> PlaceOrder:
    fields = {f: getattr(p, f) for f, _ in p._WIRE_FIELDS}
    return PlaceOrder(**{**fields, **changes})


def test_signer_keys_are_not_in_logs(tmp_path: Path) -> None:
    """Operators' logs never carry key material (a quick check over a short run)."""
    with local_network(tmp_path / "net", n_nodes=4, traders=1) as net:
        wait_for(lambda: all(height(n.rpc_url) >= 3 for n in net.nodes), 30.0, "three blocks")
        seeds = [
            Signer(
                bytes.fromhex(
                    __import__("json").loads(
                        (n.home / "config" / "validator_key.json").read_text()
                    )["ed25519_seed"]
                )
            ).seed.hex()
            for n in net.nodes
        ]
    for n in net.nodes:
        text = n.log_file.read_text()
        assert not any(s in text for s in seeds)
