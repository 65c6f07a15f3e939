"""The RPC's edge rules (limits, errors, localhost-only admin, stream sequencing), checked on
the HTTP plumbing alone. End-to-end behaviour against real nodes is in the integration tests."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from lockstep.node.exchange.mempool_rules import Reason
from lockstep.node.rpc import Admission, RpcLimits, build_rpc_app
from lockstep.node.streams import SUBSCRIBER_QUEUE_EVENTS, StreamError, StreamHub, Subscriber
from starlette.testclient import TestClient

from .wsclient import WsClient


class FixedAnswers:
    """Answers every read with a fixed value, and refuses submissions with a given reason."""

    def __init__(self) -> None:
        self.hub = StreamHub(lambda stream: {"snapshot_of": stream})
        self.submitted: list[bytes] = []

    async def subscribe(self, stream: str) -> Subscriber:
        return self.hub.subscribe(stream)

    async def submit(self, raw: bytes) -> Admission:
        self.submitted.append(raw)
        if raw == b"replay":
            return Admission(b"\x01" * 32, "REPLAYED", 5, "nonce used")
        return Admission(b"\x02" * 32, "OK", 0)

    async def submit_many(self, raws: list[bytes]) -> list[Admission]:
        return [await self.submit(r) for r in raws]

    async def wait_committed(self, tx_id: bytes, timeout_s: float) -> dict[str, Any] | None:
        return {"height": 3, "status": "committed", "fills": []}

    def status(self) -> dict[str, Any]:
        return {"height": 1}

    async def markets(self) -> list[dict[str, Any]]:
        return []

    async def book(self, market: int, depth: int) -> dict[str, Any] | None:
        return {"bids": [], "asks": []} if market == 0 else None

    async def trades(self, market: int, limit: int) -> list[dict[str, Any]] | None:
        return []

    async def account(self, owner: bytes) -> dict[str, Any] | None:
        return None

    async def block(self, height: int) -> dict[str, Any] | None:
        return None

    async def action(self, tx_id: bytes) -> dict[str, Any] | None:
        return None

    def admin_status(self) -> dict[str, Any]:
        return {"peers": []}


def client(limits: RpcLimits | None = None) -> tuple[TestClient, FixedAnswers]:
    node = FixedAnswers()
    return TestClient(build_rpc_app(node, limits), backend="trio"), node


def test_submit_cbor_and_json() -> None:
    c, node = client()
    r = c.post("/v1/actions", content=b"abc", headers={"content-type": "application/cbor"})
    assert r.status_code == 202 and r.json() == {"tx_id": "02" * 32, "status": "accepted"}
    r = c.post("/v1/actions", json={"tx": "616263"})
    assert r.status_code == 202 and node.submitted == [b"abc", b"abc"]
    r = c.post("/v1/actions?wait=true", json={"tx": "616263"})
    assert r.status_code == 200 and r.json()["status"] == "committed"


def test_refusals_are_specific() -> None:
    c, _ = client()
    r = c.post("/v1/actions", content=b"replay", headers={"content-type": "application/cbor"})
    assert r.status_code == 409 and r.json()["error"] == "REPLAYED" and r.json()["code"] == 5
    assert c.post("/v1/actions", json={"tx": "zz"}).json()["error"] == "BAD_HEX"
    assert (
        c.post("/v1/actions", content=b"{", headers={"content-type": "application/json"}).json()[
            "error"
        ]
        == "BAD_JSON"
    )
    assert c.get("/v1/book/7").status_code == 404
    assert c.get("/v1/book/abc").json()["error"] == "BAD_PARAMETER"
    assert c.get("/v1/book/0?depth=0").json()["error"] == "BAD_PARAMETER"
    assert c.get("/v1/accounts/00").json()["error"] == "BAD_HEX"
    assert c.get("/v1/accounts/" + "00" * 32).json()["error"] == "UNKNOWN_ACCOUNT"


def test_body_limit() -> None:
    c, _ = client(RpcLimits(max_body_bytes=100))
    r = c.post("/v1/actions", content=b"x" * 101, headers={"content-type": "application/cbor"})
    assert r.status_code == 413 and r.json()["error"] == "BODY_TOO_LARGE"


def test_rate_limit_per_client() -> None:
    c, _ = client(RpcLimits(requests_per_s=1, burst=3))
    codes = [c.get("/v1/status").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429


def test_admin_is_localhost_only() -> None:
    c, _ = client()  # the test client's address is "testclient", not loopback
    r = c.get("/v1/admin/status")
    assert r.status_code == 403 and r.json()["error"] == "FORBIDDEN"


def test_batch_results_in_order() -> None:
    c, _ = client()
    r = c.post("/v1/actions/batch", json={"txs": ["616263", "zz", "7265706c6179"]})
    results = r.json()["results"]
    assert [x.get("status") or x["error"] for x in results] == ["accepted", "BAD_HEX", "REPLAYED"]


def test_openapi_document() -> None:
    c, _ = client()
    doc = c.get("/openapi.json").json()
    assert "/v1/actions" in doc["paths"] and "/v1/book/{market}" in doc["paths"]


async def test_websocket_snapshot_then_sequenced_updates() -> None:
    node = FixedAnswers()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve, build_rpc_app(node), config, shutdown_trigger=trio.sleep_forever)
        )
        port = int(binds[0].rsplit(":", 1)[1])
        ws = await WsClient.connect("127.0.0.1", port, "/v1/ws")
        await ws.send_json({"op": "subscribe", "stream": "book:0"})
        snap = await ws.receive_json()
        assert snap == {
            "stream": "book:0",
            "seq": 0,
            "type": "snapshot",
            "data": {"snapshot_of": "book:0"},
        }
        node.hub.publish("book:0", {"level": 1})
        node.hub.publish("book:0", {"level": 2})
        assert [(await ws.receive_json())["seq"] for _ in range(2)] == [1, 2]
        await ws.send_json({"op": "subscribe", "stream": "nope"})
        assert (await ws.receive_json())["error"] == "UNKNOWN_STREAM"
        await ws.aclose()
        nursery.cancel_scope.cancel()


def test_stream_names_by_form() -> None:
    hub = StreamHub(lambda s: None)
    for name in ("orders:" + "ab" * 32, "fills:" + "0" * 64, "book:12", "trades:0", "blocks"):
        assert hub.subscribe(name).stream == name
    for name in ("orders:" + "AB" * 32, "orders:abc", "orders:", "order:" + "ab" * 32):
        with pytest.raises(StreamError, match="orders:<account hex>"):
            hub.subscribe(name)
    given = hub.subscribe("orders:" + "cd" * 32, lambda: {"open_orders": []})
    assert given.receive.receive_nowait()["data"] == {"open_orders": []}
    assert hub.watched("orders:") == ["orders:" + "ab" * 32, "orders:" + "cd" * 32]
    hub.unsubscribe(given)
    assert hub.watched("orders:") == ["orders:" + "ab" * 32]


def test_slow_consumer_is_told_not_skipped() -> None:
    hub = StreamHub(lambda s: None)
    sub = hub.subscribe("blocks")
    for i in range(SUBSCRIBER_QUEUE_EVENTS + 1):
        hub.publish("blocks", i)
    assert sub.closed_reason == "slow_consumer" and hub.dropped_slow == 1
    seqs = []
    while True:
        try:
            seqs.append(sub.receive.receive_nowait()["seq"])
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    assert seqs == list(range(SUBSCRIBER_QUEUE_EVENTS + 1))  # snapshot (0), then 1..N, no gap


def test_reason_codes_table_matches_the_enum() -> None:
    """docs/rpc.md lists every reason a client can receive, by the number it is sent with."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "rpc.md").read_text()
    table = text[text.index("### Reason codes") :]
    rows = dict(re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", table, re.M))
    assert {int(code): name for code, name in rows.items()} == {r.value: r.name for r in Reason}
