"""Request/response and block-range sync between hosts on real sockets."""

from __future__ import annotations

import pytest
import trio
from lockstep.net.envelope import BlockRangeRequest, SyncRequest
from lockstep.net.framing import Kind
from lockstep.net.sync import (
    MAX_INFLIGHT_PER_PEER,
    PeerUnavailable,
    SyncError,
    SyncRefused,
    SyncTimeout,
    block_range_handler,
    fetch_blocks,
)
from structlog.testing import capture_logs

from .net_harness import (
    events,
    frame,
    link_all,
    net_genesis,
    raw_session,
    start_host,
    wait_for,
    wait_mesh,
)

pytestmark = pytest.mark.timeout(10)

CHAIN = {h: b"certified-block-%d|" % h + b"q" * (h * 1000) for h in range(1, 41)}
"""Heights 1..40; block h is ~h KB (the node's certified-block bytes are opaque here)."""


async def _pair(nursery: trio.Nursery, handler=None, **kw):
    g, s = net_genesis(2)
    server = await start_host(nursery, g, s[0], seed=0, sync_handler=handler, **kw)
    client = await start_host(nursery, g, s[1], seed=1)
    link_all([server, client])
    await wait_mesh([server, client])
    return server, client


async def test_fetch_blocks_by_height_range() -> None:
    async with trio.open_nursery() as nursery:
        server, client = await _pair(nursery, block_range_handler(CHAIN.get))
        assert await fetch_blocks(client, server.key, 1, 10) == [CHAIN[h] for h in range(1, 11)]
        # Past the head: only what exists.
        assert await fetch_blocks(client, server.key, 35, 100) == [CHAIN[h] for h in range(35, 41)]
        assert await fetch_blocks(client, server.key, 41, 5) == []
        nursery.cancel_scope.cancel()


async def test_block_range_answer_is_cut_at_the_byte_limit() -> None:
    async with trio.open_nursery() as nursery:
        handler = block_range_handler(CHAIN.get, max_response_bytes=50_000)
        server, client = await _pair(nursery, handler)
        blocks = await fetch_blocks(client, server.key, 1, 40)
        assert blocks == [CHAIN[h] for h in range(1, len(blocks) + 1)]
        assert sum(len(b) for b in blocks) <= 50_000 < sum(len(CHAIN[h]) for h in range(1, 11))
        nursery.cancel_scope.cancel()


async def test_large_response_spans_many_records() -> None:
    big = bytes(range(256)) * (6 * 1024 * 1024 // 256)  # 6 MiB, ~100 Noise records

    async def handler(peer: bytes, payload: bytes) -> bytes:
        return big if payload == b"big" else b"small"

    async with trio.open_nursery() as nursery:
        server, client = await _pair(nursery, handler)
        assert await client.request(server.key, b"big") == big
        with pytest.raises(SyncError):
            await client.request(server.key, b"big", max_response_bytes=1024)
        nursery.cancel_scope.cancel()


async def test_timeouts_refusals_and_missing_peers() -> None:
    first, gate = trio.Event(), trio.Event()

    async def slow(peer: bytes, payload: bytes) -> bytes:
        if payload == b"fail":
            raise RuntimeError("storage error")
        await (first if payload == b"x" else gate).wait()
        return b"late"

    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            server, client = await _pair(nursery, slow)
            with pytest.raises(SyncTimeout):
                await client.request(server.key, b"x", timeout_s=0.1)
            first.set()  # the late answer is dropped by the client
            with pytest.raises(SyncRefused) as err:
                await client.request(server.key, b"fail")
            assert err.value.status.name == "ERROR"
            assert events(logs, "sync_handler_failed")
            with pytest.raises(PeerUnavailable):
                await client.request(b"\x05" * 32, b"x")
            # Concurrency bound: beyond MAX_INFLIGHT_PER_PEER the server answers BUSY.
            results: list[object] = []

            async def one() -> None:
                try:
                    results.append(await client.request(server.key, b"wait", timeout_s=2))
                except SyncRefused as e:
                    results.append(e.status.name)

            async with trio.open_nursery() as inner:
                for _ in range(MAX_INFLIGHT_PER_PEER + 2):
                    inner.start_soon(one)
                await wait_for(lambda: results.count("BUSY") == 2)
                gate.set()
            assert sorted(map(str, results)) == ["BUSY", "BUSY"] + ["b'late'"] * 4
            nursery.cancel_scope.cancel()


async def test_request_fails_fast_when_the_peer_goes_away() -> None:
    async def never(peer: bytes, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    async with trio.open_nursery() as nursery:
        server, client = await _pair(nursery, never)

        async def cut() -> None:
            await trio.sleep(0.1)
            client.disconnect(server.key)

        nursery.start_soon(cut)
        with trio.fail_after(1), pytest.raises(PeerUnavailable):
            await client.request(server.key, b"x", timeout_s=5)
        nursery.cancel_scope.cancel()


async def test_malformed_sync_request_disconnects() -> None:
    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0], sync_handler=block_range_handler(CHAIN.get))
            stream, session = await raw_session(host.listen_port, g, s[1])
            ok = SyncRequest(1, BlockRangeRequest(1, 2).encode()).encode()
            await stream.send_all(session.seal(frame(Kind.SYNC_REQUEST, ok)))
            await stream.send_all(session.seal(frame(Kind.SYNC_REQUEST, b"\x83\x18\x56\x01")))
            await wait_for(lambda: events(logs, "peer_disconnected", reason="malformed_message"))
            await stream.aclose()
            nursery.cancel_scope.cancel()
