"""The node's HTTP + WebSocket API (starlette, served by hypercorn's trio worker).

Theory of operation: this module is plumbing only. It parses requests, enforces the edge limits
(body size, per-client request rate, localhost-only admin paths), and maps the node's answers
to HTTP: every refusal is a 4xx with a machine-readable ``error`` (the mempool's reason codes
for transactions) and a human ``message``. What the answers contain is the node's business,
behind :class:`NodeApi`, which the daemon implements over the real mempool and ledger.

Endpoints (``docs/rpc.md`` has the shapes; ``GET /openapi.json`` the schema):

    POST /v1/actions             one SignedTx: CBOR body (application/cbor) or {"tx": hex};
                                 ?wait=true&timeout_ms=N waits for commit and returns fills
    POST /v1/actions/batch       {"txs": [hex, …]}: independent submissions, one result each
    GET  /v1/status | /v1/markets | /v1/book/{market} | /v1/trades/{market}
    GET  /v1/accounts/{hex} | /v1/blocks/{height} | /v1/actions/{tx id hex}
    WS   /v1/ws                  {"op": "subscribe", "stream": "book:0"} → snapshot, updates
    GET  /v1/admin/…             localhost only
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import trio
from lockstep.net.rate_limit import TokenBucket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.schemas import SchemaGenerator
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from .streams import MAX_SUBSCRIPTIONS_PER_CONNECTION, StreamError, StreamHub, Subscriber

log = structlog.get_logger("lockstep.rpc")

MAX_BATCH_SUBMISSIONS = 256
"""Transactions in one POST /v1/actions/batch (each is verified: ~15 ms of CPU at most)."""

MAX_STATUS_QUERIES = 1_000
MAX_ROOTS_PER_QUERY = 1_000
MAX_BLOCKS_PER_QUERY = 100
MAX_WAIT_MS = 30_000
LOCALHOST = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class Admission:
    """The node's answer to a submission: accepted (reason "OK") or the reason it was not."""

    tx_id: bytes | None
    reason: str
    code: int
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.code == 0


class NodeApi(Protocol):
    """What the RPC needs from the node. Read methods return JSON-ready values (None → 404)."""

    hub: StreamHub

    async def subscribe(self, stream: str) -> Subscriber: ...
    async def submit(self, raw: bytes) -> Admission: ...
    async def submit_many(self, raws: list[bytes]) -> list[Admission]: ...
    async def wait_committed(self, tx_id: bytes, timeout_s: float) -> dict[str, Any] | None: ...
    def status(self) -> dict[str, Any]: ...
    async def markets(self) -> list[dict[str, Any]]: ...
    async def book(self, market: int, depth: int) -> dict[str, Any] | None: ...
    async def trades(self, market: int, limit: int) -> list[dict[str, Any]] | None: ...
    async def account(self, owner: bytes) -> dict[str, Any] | None: ...
    async def block(self, height: int) -> dict[str, Any] | None: ...
    async def blocks(self, first: int, last: int) -> list[dict[str, Any]]: ...
    async def action(self, tx_id: bytes) -> dict[str, Any] | None: ...
    async def actions(self, tx_ids: list[bytes]) -> list[dict[str, Any] | None]: ...
    async def state_roots(self, first: int, last: int) -> list[dict[str, Any]]: ...
    async def ledger_totals(self) -> dict[str, Any]: ...
    def admin_status(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RpcLimits:
    max_body_bytes: int = 1 << 20
    requests_per_s: float = 500.0
    burst: float = 1_000.0


class RpcError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


# HTTP status by reason: malformed input is 400, a well-formed action refused by a rule is 422,
# a replay is 409 (the action exists), overload is 503.
_STATUS_BY_REASON = {"MALFORMED": 400, "REPLAYED": 409, "MEMPOOL_FULL": 503}


def _admission_response(a: Admission, extra: dict[str, Any] | None = None) -> JSONResponse:
    if a.accepted:
        body = {"tx_id": a.tx_id.hex() if a.tx_id else None, "status": "accepted"}
        return JSONResponse({**body, **(extra or {})}, status_code=202 if not extra else 200)
    status = _STATUS_BY_REASON.get(a.reason, 422)
    return _error(
        status, a.reason, a.message, code=a.code, tx_id=a.tx_id.hex() if a.tx_id else None
    )


def _hex(value: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise RpcError(400, "BAD_HEX", f"{what} must be hex") from None
    if len(raw) != size:
        raise RpcError(400, "BAD_HEX", f"{what} must be {size} bytes")
    return raw


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RpcError(400, "BAD_PARAMETER", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise RpcError(400, "BAD_PARAMETER", f"{name} must be in [{lo}, {hi}]")
    return value


def build_rpc_app(node: NodeApi, limits: RpcLimits | None = None) -> ASGIApp:
    """The ASGI app over ``node``; serve it with ``hypercorn.trio.serve``."""
    limits = limits or RpcLimits()

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RpcError(413, "BODY_TOO_LARGE", f"body exceeds {limits.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise RpcError(413, "BODY_TOO_LARGE", f"body exceeds {limits.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(request: Request) -> Any:
        try:
            return json.loads(await read_body(request))
        except ValueError:
            raise RpcError(400, "BAD_JSON", "body is not valid JSON") from None

    async def tx_bytes(request: Request) -> bytes:
        if request.headers.get("content-type", "").startswith("application/cbor"):
            return await read_body(request)
        doc = await read_json(request)
        if not isinstance(doc, dict) or not isinstance(doc.get("tx"), str):
            raise RpcError(400, "BAD_REQUEST", 'expected {"tx": "<hex of a SignedTx>"}')
        try:
            return bytes.fromhex(doc["tx"])
        except ValueError:
            raise RpcError(400, "BAD_HEX", "tx must be hex") from None

    async def submit(request: Request) -> Response:
        """
        summary: Submit one signed action
        description: 'Body: the canonical CBOR of a SignedTx (application/cbor) or {"tx": hex}.
          With wait=true the call returns once the action is committed (or the timeout passes).'
        parameters:
          - {name: wait, in: query, schema: {type: boolean}}
          - {name: timeout_ms, in: query, schema: {type: integer}}
        responses:
          202: {description: accepted into the mempool}
          200: {description: committed (with wait=true); fills and status}
          400: {description: malformed (error=MALFORMED, BAD_JSON, BAD_HEX, …)}
          409: {description: replayed (error=REPLAYED)}
          422: {description: refused by an admission rule; error is the reason code}
          504: {description: not committed within timeout_ms}
        """
        wait = request.query_params.get("wait", "false").lower() in ("1", "true", "yes")
        timeout_ms = _int_param(request, "timeout_ms", 10_000, 1, MAX_WAIT_MS)
        raw = await tx_bytes(request)
        admission = await node.submit(raw)
        if not admission.accepted or not wait or admission.tx_id is None:
            return _admission_response(admission)
        result = await node.wait_committed(admission.tx_id, timeout_ms / 1000)
        if result is None:
            return _error(
                504,
                "NOT_COMMITTED_YET",
                f"not committed within {timeout_ms} ms",
                tx_id=admission.tx_id.hex(),
            )
        # "committed": applied; "rejected": in a block but refused by an exchange rule.
        return _admission_response(
            admission, {"status": result.get("status", "committed"), "result": result}
        )

    async def submit_batch(request: Request) -> Response:
        """
        summary: Submit several independent signed actions
        description: '{"txs": [hex, ...]}; each is admitted or refused on its own (an atomic
          group of actions is one Batch transaction instead).'
        responses:
          200: {description: one result per transaction, in order}
        """
        doc = await read_json(request)
        txs = doc.get("txs") if isinstance(doc, dict) else None
        if not isinstance(txs, list) or not all(isinstance(t, str) for t in txs):
            raise RpcError(400, "BAD_REQUEST", 'expected {"txs": ["<hex>", ...]}')
        if len(txs) > MAX_BATCH_SUBMISSIONS:
            raise RpcError(413, "TOO_MANY_TXS", f"at most {MAX_BATCH_SUBMISSIONS} per request")
        raws: list[bytes] = []
        bad_hex: set[int] = set()
        for i, t in enumerate(txs):
            try:
                raws.append(bytes.fromhex(t))
            except ValueError:
                bad_hex.add(i)
        answers = iter(await node.submit_many(raws) if raws else [])
        results = []
        for i in range(len(txs)):
            if i in bad_hex:
                results.append({"error": "BAD_HEX", "message": "tx must be hex"})
                continue
            a = next(answers)
            results.append(
                {"tx_id": a.tx_id.hex() if a.tx_id else None, "status": "accepted"}
                if a.accepted
                else {
                    "error": a.reason,
                    "code": a.code,
                    "message": a.message,
                    "tx_id": a.tx_id.hex() if a.tx_id else None,
                }
            )
        return JSONResponse({"results": results})

    async def status(request: Request) -> Response:
        """
        summary: Node status
        description: height, view, epoch, sequencer, peers, state root, chain id.
        responses: {200: {description: status}}
        """
        return JSONResponse(node.status())

    async def markets(request: Request) -> Response:
        """
        summary: Markets of this chain, with tick and lot sizes and index/mark prices
        responses: {200: {description: markets}}
        """
        return JSONResponse({"markets": await node.markets()})

    def market_param(request: Request) -> int:
        raw = request.path_params["market"]
        if not raw.isdigit() or len(raw) > 5:
            raise RpcError(400, "BAD_PARAMETER", "market must be a market id")
        return int(raw)

    async def book(request: Request) -> Response:
        """
        summary: Level-2 order book of a market
        parameters: [{name: depth, in: query, schema: {type: integer}}]
        responses: {200: {description: bids and asks}, 404: {description: unknown market}}
        """
        depth = _int_param(request, "depth", 20, 1, 500)
        result = await node.book(market_param(request), depth)
        if result is None:
            raise RpcError(404, "UNKNOWN_MARKET", "no such market")
        return JSONResponse(result)

    async def trades(request: Request) -> Response:
        """
        summary: Recent trades of a market
        parameters: [{name: limit, in: query, schema: {type: integer}}]
        responses: {200: {description: trades, newest first}, 404: {description: unknown market}}
        """
        limit = _int_param(request, "limit", 50, 1, 1_000)
        result = await node.trades(market_param(request), limit)
        if result is None:
            raise RpcError(404, "UNKNOWN_MARKET", "no such market")
        return JSONResponse({"trades": result})

    async def account(request: Request) -> Response:
        """
        summary: An account's collateral, margin, positions, open orders and funding
        responses: {200: {description: account}, 404: {description: no such account}}
        """
        owner = _hex(request.path_params["owner"], 32, "account")
        result = await node.account(owner)
        if result is None:
            raise RpcError(404, "UNKNOWN_ACCOUNT", "no such account")
        return JSONResponse(result)

    async def block(request: Request) -> Response:
        """
        summary: A committed block by height
        responses: {200: {description: block}, 404: {description: not committed yet}}
        """
        raw = request.path_params["height"]
        if not raw.isdigit() or len(raw) > 19:
            raise RpcError(400, "BAD_PARAMETER", "height must be an integer")
        result = await node.block(int(raw))
        if result is None:
            raise RpcError(404, "UNKNOWN_BLOCK", "no committed block at that height")
        return JSONResponse(result)

    async def blocks(request: Request) -> Response:
        """
        summary: Committed blocks in a height range (compact form)
        parameters:
          - {name: from, in: query, schema: {type: integer}}
          - {name: to, in: query, schema: {type: integer}}
        responses: {200: {description: '{"blocks": [block, ...]}, at most 100'}}
        """
        first = _int_param(request, "from", 1, 1, 2**63 - 1)
        last = _int_param(request, "to", first + MAX_BLOCKS_PER_QUERY - 1, first, 2**63 - 1)
        last = min(last, first + MAX_BLOCKS_PER_QUERY - 1)
        return JSONResponse({"blocks": await node.blocks(first, last)})

    async def action(request: Request) -> Response:
        """
        summary: Status of an action by transaction id
        description: pending, committed (with fills), rejected (with reason) or expired.
        responses: {200: {description: status}, 404: {description: never seen}}
        """
        tx_id = _hex(request.path_params["tx_id"], 32, "tx id")
        result = await node.action(tx_id)
        if result is None:
            raise RpcError(404, "UNKNOWN_ACTION", "this node has not seen that action")
        return JSONResponse(result)

    async def actions_status(request: Request) -> Response:
        """
        summary: Status of many actions at once
        description: '{"tx_ids": [hex, ...]} → one status (or null if never seen) per id.'
        responses: {200: {description: statuses in order}}
        """
        doc = await read_json(request)
        ids = doc.get("tx_ids") if isinstance(doc, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise RpcError(400, "BAD_REQUEST", 'expected {"tx_ids": ["<hex>", ...]}')
        if len(ids) > MAX_STATUS_QUERIES:
            raise RpcError(413, "TOO_MANY_TXS", f"at most {MAX_STATUS_QUERIES} per request")
        return JSONResponse({"statuses": await node.actions([_hex(i, 32, "tx id") for i in ids])})

    async def state_roots(request: Request) -> Response:
        """
        summary: State roots this node computed, by height
        description: Every honest node reports the same root at the same height.
        parameters:
          - {name: from, in: query, schema: {type: integer}}
          - {name: to, in: query, schema: {type: integer}}
        responses: {200: {description: '[{height, state_root}] for the applied heights'}}
        """
        first = _int_param(request, "from", 1, 1, 2**63 - 1)
        last = _int_param(request, "to", first + 99, first, 2**63 - 1)
        last = min(last, first + MAX_ROOTS_PER_QUERY - 1)
        return JSONResponse({"roots": await node.state_roots(first, last)})

    async def ledger_totals(request: Request) -> Response:
        """
        summary: Ledger totals and the conservation check
        responses: {200: {description: totals}}
        """
        return JSONResponse(await node.ledger_totals())

    async def admin_status(request: Request) -> Response:
        """
        summary: Operator status (peers, mempool, stores); localhost only
        responses: {200: {description: details}, 403: {description: not from localhost}}
        """
        return JSONResponse(node.admin_status())

    schemas = SchemaGenerator(
        {"openapi": "3.0.0", "info": {"title": "Lockstep node API", "version": "1"}}
    )

    async def openapi(request: Request) -> Response:
        return JSONResponse(schemas.get_schema(routes=request.app.routes))

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        subs: dict[str, Any] = {}
        try:
            async with trio.open_nursery() as nursery:

                async def pump(sub: Any) -> None:
                    async for event in sub.receive:
                        await ws.send_json(event)
                    if sub.closed_reason:
                        await ws.send_json(
                            {"stream": sub.stream, "type": "closed", "reason": sub.closed_reason}
                        )

                while True:
                    msg = await ws.receive_json()
                    op = msg.get("op") if isinstance(msg, dict) else None
                    stream = msg.get("stream") if isinstance(msg, dict) else None
                    if op == "subscribe" and isinstance(stream, str):
                        if len(subs) >= MAX_SUBSCRIPTIONS_PER_CONNECTION and stream not in subs:
                            await ws.send_json({"error": "TOO_MANY_SUBSCRIPTIONS"})
                            continue
                        if stream in subs:
                            node.hub.unsubscribe(subs.pop(stream))
                        try:
                            sub = await node.subscribe(stream)
                        except StreamError as e:
                            await ws.send_json({"error": "UNKNOWN_STREAM", "message": str(e)})
                            continue
                        subs[stream] = sub
                        nursery.start_soon(pump, sub)
                    elif op == "unsubscribe" and isinstance(stream, str) and stream in subs:
                        node.hub.unsubscribe(subs.pop(stream))
                    else:
                        await ws.send_json(
                            {
                                "error": "BAD_REQUEST",
                                "message": 'expected {"op": "subscribe", "stream": …}',
                            }
                        )
        except (WebSocketDisconnect, json.JSONDecodeError, KeyError):
            pass
        finally:
            for sub in subs.values():
                node.hub.unsubscribe(sub)

    routes = [
        Route("/v1/actions", submit, methods=["POST"]),
        Route("/v1/actions/batch", submit_batch, methods=["POST"]),
        Route("/v1/status", status),
        Route("/v1/markets", markets),
        Route("/v1/book/{market}", book),
        Route("/v1/trades/{market}", trades),
        Route("/v1/accounts/{owner}", account),
        Route("/v1/blocks", blocks),
        Route("/v1/blocks/{height}", block),
        Route("/v1/actions/status", actions_status, methods=["POST"]),
        Route("/v1/actions/{tx_id}", action),
        Route("/v1/state_roots", state_roots),
        Route("/v1/ledger/totals", ledger_totals),
        Route("/v1/admin/status", admin_status),
        Route("/openapi.json", openapi, include_in_schema=False),
        WebSocketRoute("/v1/ws", websocket),
    ]

    async def rpc_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RpcError)
        return _error(exc.status, exc.error, exc.message)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("rpc_internal_error", path=request.url.path, error=repr(exc), exc_info=exc)
        return _error(500, "INTERNAL", "the node failed to answer; see its log")

    app = Starlette(
        routes=routes, exception_handlers={RpcError: rpc_error, Exception: internal_error}
    )

    return EdgeLimits(app, limits)


class EdgeLimits:
    """ASGI middleware: localhost-only admin paths and a token bucket per client address."""

    MAX_TRACKED_CLIENTS = 10_000

    def __init__(self, app: ASGIApp, limits: RpcLimits) -> None:
        self.app = app
        self.limits = limits
        self.buckets: dict[str, TokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope["client"][0] if scope.get("client") else "unknown"
            refusal = self._refusal(scope, client)
            if refusal is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, client: str) -> JSONResponse | None:
        if scope["path"].startswith("/v1/admin/") and client not in LOCALHOST:
            return _error(403, "FORBIDDEN", "admin endpoints answer localhost only")
        now = time.monotonic()
        bucket = self.buckets.get(client)
        if bucket is None:
            if len(self.buckets) >= self.MAX_TRACKED_CLIENTS:
                self.buckets.clear()  # bound memory under a flood of distinct clients
            bucket = self.buckets[client] = TokenBucket(
                self.limits.requests_per_s, self.limits.burst, now
            )
        if not bucket.try_take(1, now):
            return _error(429, "RATE_LIMITED", f"over {self.limits.requests_per_s:g} requests/s")
        return None
