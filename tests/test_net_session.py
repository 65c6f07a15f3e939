"""Handshake refusals and frame-layer attacks against a real host on 127.0.0.1.

Each hostile peer must be refused or disconnected with its own reason code in the logs, while
honest peers keep exchanging messages without loss.
"""

from __future__ import annotations

import struct

import pytest
import trio
from lockstep.consensus.crypto import DOMAIN_HANDSHAKE
from lockstep.net.envelope import Hello, Identity, NoiseStaticKey, Ping
from lockstep.net.framing import MAX_FRAME_BYTES, FrameDecoder, Kind
from lockstep.net.noise_session import (
    HandshakeConfig,
    HandshakeError,
    handshake,
    noise_static_from_seed,
)
from structlog.testing import capture_logs

from .net_harness import (
    events,
    frame,
    link_all,
    net_genesis,
    raw_session,
    start_host,
    stranger,
    wait_for,
    wait_mesh,
)

pytestmark = pytest.mark.timeout(10)


async def _refusal(logs: list, reason: str) -> None:
    await wait_for(lambda: events(logs, "peer_refused", reason=reason), 2.0)


async def test_wrong_chain_id_is_refused() -> None:
    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0])
            with pytest.raises(HandshakeError) as err:
                await raw_session(host.listen_port, g, s[1], chain_id=b"\x01" * 32)
            assert err.value.reason == "handshake_eof"
            await _refusal(logs, "wrong_chain_id")
            assert not host.connected_peers()
            nursery.cancel_scope.cancel()


async def test_unknown_key_is_refused() -> None:
    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0])
            with pytest.raises(HandshakeError):
                stream, _session = await raw_session(host.listen_port, g, stranger())
                await stream.receive_some(100)  # the host closes once it reads message 3
                raise HandshakeError("closed")
            await _refusal(logs, "unknown_key")
            (e,) = events(logs, "peer_refused", reason="unknown_key")
            assert e["peer"] == stranger().public_key.hex()[:8]
            nursery.cancel_scope.cancel()


async def test_bad_handshake_signature_is_refused() -> None:
    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0])
            stream = await trio.open_tcp_stream("127.0.0.1", host.listen_port)
            cfg = HandshakeConfig(s[1], g.chain_id, noise_static_from_seed(s[1].seed), bool)
            # Signs a different static key: the signature does not cover the one in use.
            wrong = s[1].sign(DOMAIN_HANDSHAKE, g.chain_id, NoiseStaticKey(b"\x09" * 32).encode())
            forged = Identity(s[1].public_key, wrong).encode()
            await handshake(stream, cfg, initiator=True, identity_payload=forged)
            await _refusal(logs, "bad_signature")
            assert not host.connected_peers()
            nursery.cancel_scope.cancel()


async def test_dialler_refuses_an_unexpected_identity() -> None:
    g, s = net_genesis(3)
    async with trio.open_nursery() as nursery:
        host = await start_host(nursery, g, s[0])
        with pytest.raises(HandshakeError) as err:
            await raw_session(host.listen_port, g, s[1], expected=s[2].public_key)
        assert err.value.reason == "unexpected_identity"
        nursery.cancel_scope.cancel()


async def test_garbage_and_stalled_handshakes_are_refused() -> None:
    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0], handshake_timeout_s=0.3)
            junk = await trio.open_tcp_stream("127.0.0.1", host.listen_port)
            await junk.send_all(b"\x00\x28" + b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".ljust(40))
            await _refusal(logs, "bad_handshake")
            huge = await trio.open_tcp_stream("127.0.0.1", host.listen_port)
            await huge.send_all(b"\xff\xff")
            await wait_for(lambda: len(events(logs, "peer_refused", reason="bad_handshake")) == 2)
            stall = await trio.open_tcp_stream("127.0.0.1", host.listen_port)
            await _refusal(logs, "handshake_timeout")
            hello = Hello(1, g.chain_id).encode()
            half = await trio.open_tcp_stream("127.0.0.1", host.listen_port)
            await half.send_all(struct.pack(">H", 100) + hello)  # truncated message 1, then EOF
            await half.send_eof()
            await _refusal(logs, "handshake_eof")
            for st in (junk, huge, stall, half):
                await st.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("oversized", "frame_too_large"),
        ("unknown_kind", "unknown_frame_kind"),
        ("truncated", "truncated_frame"),
        ("truncated_record", "truncated_frame"),
        ("garbage_record", "decrypt_failed"),
        ("malformed_cbor", "malformed_message"),
        ("noncanonical_cbor", "malformed_message"),
    ],
)
async def test_frame_attacks_disconnect_with_reason(name: str, reason: str) -> None:
    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0])
            stream, session = await raw_session(host.listen_port, g, s[1])
            if name == "oversized":
                # Header only: the limit is enforced before any body arrives.
                data = session.seal(struct.pack(">BI", Kind.TX, MAX_FRAME_BYTES[Kind.TX] + 1))
            elif name == "unknown_kind":
                data = session.seal(frame(200, b"x"))
            elif name == "truncated":
                data = session.seal(frame(Kind.TX, b"y" * 100)[:50])
            elif name == "truncated_record":
                data = session.seal(frame(Kind.TX, b"y" * 100))[:-10]
            elif name == "garbage_record":
                data = struct.pack(">H", 40) + bytes(range(40))
            elif name == "malformed_cbor":
                data = session.seal(frame(Kind.PING, b"\x82\x53\xff"))
            else:  # 1 encoded in two bytes instead of one
                data = session.seal(frame(Kind.PING, b"\x82\x18\x53\x18\x01"))
            await stream.send_all(data)
            if name.startswith("truncated"):
                await stream.send_eof()
            await wait_for(lambda: events(logs, "peer_disconnected", reason=reason), 2.0)
            (e,) = events(logs, "peer_disconnected", reason=reason)
            assert e["peer"] == s[1].public_key.hex()[:8]
            assert not host.connected_peers()
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_honest_peers_lose_nothing_while_attacked() -> None:
    """Three honest hosts gossip continuously while a fourth key and strangers attack host 0."""
    g, s = net_genesis(4)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            hosts = [await start_host(nursery, g, s[i], seed=i) for i in range(3)]
            link_all(hosts)
            await wait_mesh(hosts)
            got: list[set[bytes]] = [set() for _ in hosts]

            async def collect(i: int) -> None:
                async for batch in hosts[i].inbound:
                    got[i].update(m.payload for m in batch)

            for i in range(3):
                nursery.start_soon(collect, i)
            sent: list[bytes] = []

            async def traffic() -> None:
                for n in range(300):
                    p = b"tx-%d" % n
                    sent.append(p)
                    hosts[n % 3].broadcast(Kind.TX, p)
                    if n % 10 == 0:
                        await trio.sleep(0.005)

            nursery.start_soon(traffic)
            port = hosts[0].listen_port
            with pytest.raises(HandshakeError):
                await raw_session(port, g, s[3], chain_id=b"\x02" * 32)
            st, sess = await raw_session(port, g, s[3])
            await st.send_all(sess.seal(frame(Kind.PING, b"\xff\xff")))
            st2, _sess2 = await raw_session(port, g, s[3])
            await st2.send_all(struct.pack(">H", 30) + b"\x00" * 30)
            await wait_for(lambda: len(sent) == 300)
            for i in range(3):
                mine = {p for n, p in enumerate(sent) if n % 3 == i}
                await wait_for(lambda i=i, mine=mine: got[i] == set(sent) - mine)
            assert events(logs, "peer_refused", reason="wrong_chain_id")
            assert events(logs, "peer_disconnected", reason="malformed_message")
            assert events(logs, "peer_disconnected", reason="decrypt_failed")
            assert all(len(h.connected_peers()) >= 2 for h in hosts)
            nursery.cancel_scope.cancel()


async def test_ping_is_answered_over_a_raw_session() -> None:
    g, s = net_genesis(2)
    async with trio.open_nursery() as nursery:
        host = await start_host(nursery, g, s[0])
        stream, session = await raw_session(host.listen_port, g, s[1])
        await stream.send_all(session.seal(frame(Kind.PING, Ping(7).encode())))
        reader = session.reader()
        dec = FrameDecoder()
        frames: list = []
        with trio.fail_after(2):
            while not any(k == Kind.PONG for k, _ in frames):
                frames += dec.feed(reader.feed(await stream.receive_some(65536)))
        nursery.cancel_scope.cancel()


async def test_configured_observer_is_admitted_and_strangers_are_not() -> None:
    from lockstep.net.host import HostConfig

    g, s = net_genesis(2)
    observer, other = stranger("observer"), stranger("not-configured")
    cfg = HostConfig.from_genesis(g, own_key=s[0].public_key, observers=[observer.public_key])
    assert cfg.peers[s[1].public_key] == g.validators[1].address  # validators are dialled
    assert cfg.peers[observer.public_key] is None  # observers dial in
    assert s[0].public_key not in cfg.peers
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0], observers=[observer.public_key])
            stream, _ = await raw_session(host.listen_port, g, observer)
            await wait_for(lambda: host.is_connected(observer.public_key))
            await raw_session(host.listen_port, g, other)
            await _refusal(logs, "unknown_key")
            assert not host.is_connected(other.public_key)
            await stream.aclose()
            nursery.cancel_scope.cancel()
