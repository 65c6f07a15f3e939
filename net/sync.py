"""Request/response between peers, and the block-range sync built on it.

Theory of operation: a request is a ``SyncRequest(request_id, payload)`` frame, answered by a
``SyncResponse(request_id, status, payload)`` frame on the same connection. The net layer only
moves bytes: the node decides what to ask and verifies what comes back (blocks and their
certificates), and serves requests through a handler it supplies. Every step is bounded:

* the requester waits at most ``timeout_s`` and accepts at most ``max_response_bytes``;
  a lost connection fails the request at once (:class:`PeerUnavailable`);
* a server runs at most ``MAX_INFLIGHT_PER_PEER`` of one peer's requests at a time and answers
  ``BUSY`` beyond that; a handler gets ``HANDLER_TIMEOUT_S`` and its answer must fit
  ``MAX_SYNC_RESPONSE_BYTES`` (else ``ERROR``);
* responses travel in the lowest-priority send queue, behind consensus and order traffic.

:class:`BlockRangeRequest` / :class:`BlockRangeResponse` are the standard payloads for catching
up: "blocks from height h, at most n"; :func:`block_range_handler` serves them from a
``get_block(height) -> bytes | None`` lookup and :func:`fetch_blocks` asks for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import structlog
import trio
from lockstep.consensus.codec import CodecError, decode

from .envelope import (
    MAX_SYNC_BLOCKS,
    BlockRangeRequest,
    BlockRangeResponse,
    SyncRequest,
    SyncResponse,
    SyncStatus,
)
from .framing import MAX_FRAME_BYTES, MAX_SYNC_RESPONSE_BYTES, Kind, Priority, encode_frame

if TYPE_CHECKING:
    from .peer import PeerConnection

__all__ = [
    "MAX_INFLIGHT_PER_PEER",
    "PeerUnavailable",
    "RequestHandler",
    "Requester",
    "SyncEndpoint",
    "SyncError",
    "SyncRefused",
    "SyncTimeout",
    "block_range_handler",
    "fetch_blocks",
]

log = structlog.get_logger("lockstep.net")

MAX_INFLIGHT_PER_PEER = 4
"""Concurrent requests served per peer: enough to pipeline range requests, bounded work."""

HANDLER_TIMEOUT_S = 10.0
"""A handler reads committed blocks from local storage; longer means the node is in trouble."""

MAX_PENDING_REQUESTS = 1024
"""Our own outstanding requests, over all peers."""

RequestHandler = Callable[[bytes, bytes], Awaitable[bytes]]
"""``async handler(peer_key, request_payload) -> response_payload``, supplied by the node."""


class Requester(Protocol):
    """What :func:`fetch_blocks` asks through: ``host.Host`` (or a :class:`SyncEndpoint`)."""

    async def request(self, peer: bytes, payload: bytes, *, timeout_s: float = ...) -> bytes: ...


class SyncError(Exception):
    """A request did not get a usable answer."""


class SyncTimeout(SyncError):
    pass


class PeerUnavailable(SyncError):
    """Not connected to the peer, or the connection ended before the answer."""


class SyncRefused(SyncError):
    def __init__(self, status: SyncStatus, detail: str = "") -> None:
        super().__init__(f"peer answered {status.name} {detail}".strip())
        self.status = status


class ResponseTooLarge(SyncError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"response of {size} bytes exceeds the requested limit {limit}")
        self.size, self.limit = size, limit


class _Pending:
    __slots__ = ("event", "peer", "response")

    def __init__(self, peer: bytes) -> None:
        self.peer = peer
        self.event = trio.Event()
        self.response: SyncResponse | None = None


class SyncEndpoint:
    """The host's request/response state: our pending requests and the requests we serve."""

    def __init__(
        self,
        connection: Callable[[bytes], PeerConnection | None],
        handler: RequestHandler | None,
    ) -> None:
        self.connection = connection
        """The live session with a peer, or None: the host's lookup, passed in."""
        self.handler = handler
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._inflight: dict[bytes, int] = {}
        self.served = 0
        self.busy = 0

    # ----------------------------------------------------------------- requesting

    async def request(
        self,
        peer: bytes,
        payload: bytes,
        *,
        timeout_s: float = 5.0,
        max_response_bytes: int = MAX_SYNC_RESPONSE_BYTES,
    ) -> bytes:
        if len(payload) > MAX_FRAME_BYTES[Kind.SYNC_REQUEST] - 64:
            raise ValueError(f"request payload of {len(payload)} bytes is too large")
        if len(self._pending) >= MAX_PENDING_REQUESTS:
            raise SyncError("too many outstanding requests")
        conn = self.connection(peer)
        if conn is None:
            raise PeerUnavailable(f"not connected to {peer.hex()[:8]}")
        rid = next(self._ids)
        pending = _Pending(peer)
        self._pending[rid] = pending
        try:
            frame = encode_frame(Kind.SYNC_REQUEST, SyncRequest(rid, payload).encode())
            if not conn.enqueue(frame, Priority.CONTROL):
                raise PeerUnavailable(f"connection to {peer.hex()[:8]} is closing")
            with trio.move_on_after(timeout_s):
                await pending.event.wait()
        finally:
            del self._pending[rid]
        resp = pending.response
        if resp is None:
            if pending.event.is_set():
                raise PeerUnavailable(f"connection to {peer.hex()[:8]} ended")
            raise SyncTimeout(f"no answer from {peer.hex()[:8]} in {timeout_s}s")
        if resp.status != SyncStatus.OK:
            raise SyncRefused(resp.status)
        if len(resp.payload) > max_response_bytes:
            raise ResponseTooLarge(len(resp.payload), max_response_bytes)
        return resp.payload

    def on_response(self, conn: PeerConnection, body: bytes) -> None:
        resp = decode(body, SyncResponse, max_bytes=MAX_FRAME_BYTES[Kind.SYNC_RESPONSE])
        pending = self._pending.get(resp.request_id)
        if pending is None or pending.peer != conn.key:
            return  # late (we timed out) or not ours: harmless, dropped
        pending.response = resp
        pending.event.set()

    def on_disconnect(self, peer: bytes) -> None:
        for pending in self._pending.values():
            if pending.peer == peer:
                pending.event.set()
        self._inflight.pop(peer, None)

    # ----------------------------------------------------------------- serving

    def on_request(self, conn: PeerConnection, body: bytes, nursery: trio.Nursery) -> None:
        req = decode(body, SyncRequest, max_bytes=MAX_FRAME_BYTES[Kind.SYNC_REQUEST])
        n = self._inflight.get(conn.key, 0)
        if self.handler is None or n >= MAX_INFLIGHT_PER_PEER:
            self.busy += self.handler is not None
            status = SyncStatus.BUSY if self.handler is not None else SyncStatus.ERROR
            self._answer(conn, SyncResponse(req.request_id, status, b""))
            return
        self._inflight[conn.key] = n + 1
        nursery.start_soon(self._serve, conn, req)

    async def _serve(self, conn: PeerConnection, req: SyncRequest) -> None:
        assert self.handler is not None
        status, payload = SyncStatus.ERROR, b""
        try:
            with trio.move_on_after(HANDLER_TIMEOUT_S):
                out = await self.handler(conn.key, req.payload)
                if len(out) <= MAX_SYNC_RESPONSE_BYTES:
                    status, payload = SyncStatus.OK, out
                else:
                    log.warning("sync_answer_too_large", peer=conn.short, size=len(out))
        except Exception as e:  # the node's handler failed: answer ERROR, keep the peer
            log.warning("sync_handler_failed", peer=conn.short, error=repr(e))
        finally:
            left = self._inflight.get(conn.key, 0) - 1
            if left > 0:
                self._inflight[conn.key] = left
            else:
                self._inflight.pop(conn.key, None)
        self.served += 1
        self._answer(conn, SyncResponse(req.request_id, status, payload))

    def _answer(self, conn: PeerConnection, resp: SyncResponse) -> None:
        conn.enqueue(encode_frame(Kind.SYNC_RESPONSE, resp.encode()), Priority.BULK)


# --------------------------------------------------------------------------- block ranges


def block_range_handler(
    get_block: Callable[[int], bytes | None],
    max_response_bytes: int = MAX_SYNC_RESPONSE_BYTES - 1024,
) -> RequestHandler:
    """A request handler serving :class:`BlockRangeRequest` from ``get_block(height)``.

    Answers consecutive blocks from ``start_height`` until a height is missing, ``max_blocks``
    (at most ``MAX_SYNC_BLOCKS``) are collected, or the next block would pass the byte limit.
    """

    async def handler(peer: bytes, payload: bytes) -> bytes:
        req = decode(payload, BlockRangeRequest, max_bytes=64)
        blocks: list[bytes] = []
        size = 0
        count = min(req.max_blocks, MAX_SYNC_BLOCKS)
        for height in range(req.start_height, req.start_height + count):
            block = get_block(height)
            if block is None or size + len(block) + 8 > max_response_bytes:
                break
            blocks.append(block)
            size += len(block) + 8
        return BlockRangeResponse(req.start_height, tuple(blocks)).encode()

    return handler


async def fetch_blocks(
    host: Requester, peer: bytes, start_height: int, max_blocks: int, *, timeout_s: float = 10.0
) -> list[bytes]:
    """Ask ``peer`` for committed blocks from ``start_height``; return their bytes, in order.

    The caller verifies each block and its certificate before using it.
    """
    req = BlockRangeRequest(start_height, min(max_blocks, MAX_SYNC_BLOCKS))
    raw = await host.request(peer, req.encode(), timeout_s=timeout_s)
    try:
        resp = decode(raw, BlockRangeResponse, max_bytes=MAX_SYNC_RESPONSE_BYTES)
    except CodecError as e:
        raise SyncError(f"malformed block range answer: {e}") from None
    if resp.start_height != start_height or len(resp.blocks) > req.max_blocks:
        raise SyncError("block range answer does not match the request")
    return list(resp.blocks)
