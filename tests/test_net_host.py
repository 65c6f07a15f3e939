"""Hosts on real sockets: mesh formation, gossip with validation, scoring, limits, reconnect."""

from __future__ import annotations

import itertools

import pytest
import trio
from lockstep.consensus.actions import Order, OrderType, PlaceOrder, Side, TimeInForce, decode_tx
from lockstep.consensus.codec import CodecError
from lockstep.consensus.crypto import Signer
from lockstep.net.envelope import Ping
from lockstep.net.framing import Kind
from lockstep.net.gossip import Verdict
from lockstep.net.host import TCP_RTO_MAX_MS_OPTION
from lockstep.net.peer import QueueLimits
from lockstep.net.peer_manager import BackoffParams
from structlog.testing import capture_logs

from .conftest import seed_of
from .net_harness import (
    events,
    frame,
    link_all,
    net_genesis,
    raw_session,
    start_host,
    wait_for,
    wait_mesh,
    with_gossip,
)

pytestmark = pytest.mark.timeout(10)


async def collect(host, into: list, n: int | None = None) -> None:
    async for batch in host.inbound:
        into.extend(batch)


async def test_full_mesh_gossip_delivers_to_all() -> None:
    g, signers = net_genesis(4)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, s, seed=i) for i, s in enumerate(signers)]
        link_all(hosts)
        await wait_mesh(hosts)
        got: list[list] = [[] for _ in hosts]
        for h, into in zip(hosts, got, strict=True):
            nursery.start_soon(collect, h, into)
        payloads = [b"order-%d" % i for i in range(500)]
        for i, p in enumerate(payloads):
            hosts[i % 4].broadcast(Kind.TX, p)
        await wait_for(lambda: all(len(x) >= 375 for x in got))
        await trio.sleep(0.1)
        for i, into in enumerate(got):
            mine = {p for j, p in enumerate(payloads) if j % 4 == i}
            assert {m.payload for m in into} == set(payloads) - mine
            assert len(into) == 375  # no duplicates delivered
        nursery.cancel_scope.cancel()


def _decoding_validator(peer: bytes, kind: int, body: bytes) -> Verdict:
    """What the node does for orders: strict decode (signature checks left out here)."""

    if kind != Kind.TX:
        return Verdict.ACCEPT
    try:
        decode_tx(body)
    except CodecError:
        return Verdict.REJECT
    return Verdict.ACCEPT


def _order_bytes(i: int) -> bytes:

    trader = Signer(seed_of("trader-0"))
    place = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 600_000, 1, i)
    return Order(trader.public_key, i, 100, place).sign(trader, b"\x00" * 32).encode()


async def test_invalid_gossip_lowers_score_until_disconnect_and_backoff() -> None:

    g, s = net_genesis(4)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            hosts = [
                await start_host(nursery, g, s[i], validator=_decoding_validator, seed=i)
                for i in range(3)
            ]
            link_all(hosts)
            await wait_mesh(hosts)
            got: list[list] = [[] for _ in hosts]
            for h, into in zip(hosts, got, strict=True):
                nursery.start_soon(collect, h, into)
            stream, session = await raw_session(hosts[0].listen_port, g, s[3])

            bad = b"".join(frame(Kind.TX, b"\x83\x14\xff%d" % i) for i in range(20))
            await stream.send_all(session.seal(bad))
            orders = [_order_bytes(i) for i in range(50)]
            for i, o in enumerate(orders):
                hosts[i % 3].broadcast(Kind.TX, o)
            await wait_for(lambda: events(logs, "peer_penalised", reason="low_score"))
            await wait_for(lambda: events(logs, "peer_disconnected", reason="low_score"))
            assert events(logs, "gossip_rejected", peer=s[3].public_key.hex()[:8])
            # Backed off: a reconnect within the backoff is refused after the handshake.
            _stream2, _ = await raw_session(hosts[0].listen_port, g, s[3])
            await wait_for(lambda: events(logs, "peer_refused", reason="backed_off"))
            await wait_for(lambda: all(len(x) >= 33 for x in got))
            for i, into in enumerate(got):
                assert sorted(m.payload for m in into) == sorted(
                    o for j, o in enumerate(orders) if j % 3 != i
                )
            # Nothing invalid was delivered or forwarded.
            assert hosts[1].stats["rejected"] == hosts[2].stats["rejected"] == 0
            nursery.cancel_scope.cancel()


async def test_flooding_peer_is_rate_limited_and_disconnected() -> None:

    g, s = net_genesis(3)
    gossip = with_gossip(msgs_per_s=2_000.0, msgs_burst=500.0)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            # Only host 0 has a low limit: a relay forwards up to its own validation rate, so
            # downstream limits must stay above it (docs/design/network.md).
            hosts = [
                await start_host(nursery, g, s[0], seed=0, gossip=gossip),
                await start_host(nursery, g, s[1], seed=1),
            ]
            link_all(hosts)
            await wait_mesh(hosts)
            got: list = []
            nursery.start_soon(collect, hosts[1], got)
            stream, session = await raw_session(hosts[0].listen_port, g, s[2])
            for burst in range(20):
                flood = b"".join(frame(Kind.TX, b"flood-%d-%d" % (burst, i)) for i in range(200))
                try:
                    await stream.send_all(session.seal(flood))
                except trio.BrokenResourceError:
                    break
            await wait_for(lambda: events(logs, "peer_penalised", reason="rate_limited"))
            await wait_for(lambda: events(logs, "peer_disconnected", reason="rate_limited"))
            assert hosts[0].stats["flooded"] > 0
            # Honest traffic still flows.
            for i in range(100):
                hosts[0].broadcast(Kind.TX, b"honest-%d" % i)
            await wait_for(lambda: sum(m.payload.startswith(b"honest") for m in got) == 100)
            nursery.cancel_scope.cancel()


async def test_slow_peer_does_not_block_the_others() -> None:
    """A peer that never reads: its queue fills and drops, then it is cut; others get all."""

    g, s = net_genesis(4)
    limits = QueueLimits(tx_bytes=256 * 1024)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            hosts = [
                await start_host(nursery, g, s[i], seed=i, queue_limits=limits) for i in range(3)
            ]
            link_all(hosts)
            await wait_mesh(hosts)
            got: list[list] = [[] for _ in hosts]
            for h, into in zip(hosts, got, strict=True):
                nursery.start_soon(collect, h, into)
            slow, session = await raw_session(hosts[0].listen_port, g, s[3])

            async def keep_pinging() -> None:  # alive, but never reads

                try:
                    while True:
                        await slow.send_all(session.seal(frame(Kind.PING, Ping(1).encode())))
                        await trio.sleep(0.05)
                except trio.BrokenResourceError:
                    pass  # cut off by the host, as expected

            nursery.start_soon(keep_pinging)
            await wait_for(lambda: hosts[0].is_connected(s[3].public_key))
            n = 6000
            for i in range(n):
                hosts[0].broadcast(Kind.TX, b"%06d" % i + b"z" * 400)
                if i % 200 == 0:
                    await trio.sleep(0.002)
            await wait_for(lambda: len(got[1]) == n and len(got[2]) == n, 5.0)
            assert hosts[0]._conns[s[1].public_key].dropped_tx == 0
            await wait_for(lambda: events(logs, "send_queue_full", peer=s[3].public_key.hex()[:8]))
            await wait_for(lambda: events(logs, "peer_disconnected", reason="write_timeout"), 4.0)
            assert hosts[1].is_connected(s[0].public_key)
            nursery.cancel_scope.cancel()


async def test_consensus_frames_overtake_queued_order_gossip() -> None:
    g, s = net_genesis(2)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, s[i], seed=i) for i in range(2)]
        link_all(hosts)
        await wait_mesh(hosts)
        got: list = []
        nursery.start_soon(collect, hosts[1], got)
        for i in range(5000):
            hosts[0].broadcast(Kind.TX, b"order-%d" % i + b"o" * 200)
        hosts[0].broadcast(Kind.CONSENSUS, b"vote")
        await wait_for(lambda: len(got) == 5001)
        position = [m.payload for m in got].index(b"vote")
        assert position == 0, position
        nursery.cancel_scope.cancel()


async def test_flush_sends_queued_orders_without_the_gossip_delay() -> None:
    """Orders wait up to ``tx_flush_delay_s`` to share a write; a flush (an RPC batch just
    queued) sends them at once."""
    g, s = net_genesis(2)
    async with trio.open_nursery() as nursery:
        hosts = [
            await start_host(
                nursery,
                g,
                s[i],
                seed=i,
                tx_flush_delay_s=3.0,
                ping_interval_s=5.0,
                idle_timeout_s=10.0,
            )
            for i in range(2)
        ]
        link_all(hosts)
        await wait_mesh(hosts)
        got: list = []
        nursery.start_soon(collect, hosts[1], got)
        await trio.sleep(0.2)  # let the writer settle into its idle wait
        hosts[0].broadcast(Kind.TX, b"order-a")
        await trio.sleep(0.3)
        assert got == []  # still held for the delay
        hosts[0].broadcast(Kind.TX, b"order-b")
        hosts[0].flush()
        with trio.fail_after(1.0):
            await wait_for(lambda: len(got) == 2)
        nursery.cancel_scope.cancel()


async def test_direct_messages_reach_one_peer_and_are_not_forwarded() -> None:
    g, s = net_genesis(3)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, s[i], seed=i) for i in range(3)]
        link_all(hosts)
        await wait_mesh(hosts)
        got: list[list] = [[] for _ in hosts]
        for h, into in zip(hosts, got, strict=True):
            nursery.start_soon(collect, h, into)
        assert hosts[0].send(s[1].public_key, Kind.DIRECT, b"vote-for-leader")
        await wait_for(lambda: len(got[1]) == 1)
        await trio.sleep(0.1)
        assert got[1][0] == (s[0].public_key, Kind.DIRECT, b"vote-for-leader")
        assert got[2] == []
        assert not hosts[0].send(b"\x07" * 32, Kind.DIRECT, b"nobody")
        nursery.cancel_scope.cancel()


async def test_killed_peer_is_reconnected_after_restart() -> None:
    g, s = net_genesis(3)
    sessions: list[bytes] = []
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            a = await start_host(nursery, g, s[0], seed=1, on_session=sessions.append)
            c = await start_host(nursery, g, s[2], seed=3)
            b_scope = trio.CancelScope()

            async def run_b(task_status=trio.TASK_STATUS_IGNORED) -> None:
                with b_scope:
                    async with trio.open_nursery() as inner:
                        task_status.started(await start_host(inner, g, s[1], seed=2))

            b = await nursery.start(run_b)
            link_all([a, b, c])
            await wait_mesh([a, b, c])
            port = b.listen_port
            greeted = sessions.count(s[1].public_key)
            assert greeted >= 1 and s[2].public_key in sessions
            b_scope.cancel()  # kill b: its sockets close, a and c notice
            await wait_for(lambda: not a.is_connected(s[1].public_key))
            await wait_for(lambda: not c.is_connected(s[1].public_key))
            assert events(logs, "peer_disconnected", peer=s[1].public_key.hex()[:8])
            await trio.sleep(0.3)  # a and c fail to dial meanwhile, backing off
            b2 = await start_host(nursery, g, s[1], seed=4, listen_port=port)
            # b2 knows no addresses: a and c must redial it on their own.
            await wait_mesh([a, b2, c], 3.0)
            got: list = []
            nursery.start_soon(collect, b2, got)
            a.broadcast(Kind.CONSENSUS, b"after-restart")
            await wait_for(lambda: [m.payload for m in got] == [b"after-restart"])
            # a is told of each session as it opens, so it greets the restarted b too.
            assert sessions.count(s[1].public_key) > greeted
            nursery.cancel_scope.cancel()


async def test_a_node_that_starts_dials_every_peer_at_once() -> None:
    """The dial grace (leaving a peer with a smaller key to dial first) is for sessions that
    end; a node that just started dials at once, even peers with smaller keys, which are
    backing off from the dials that failed while it was down."""
    g, s = net_genesis(3)
    by_key = sorted(s, key=lambda signer: signer.public_key)
    slow: dict = {"dial_grace_s": 30.0, "backoff": BackoffParams(base_s=30.0, cap_s=30.0)}
    async with trio.open_nursery() as nursery:
        small = [await start_host(nursery, g, k, seed=i, **slow) for i, k in enumerate(by_key[:2])]
        big = await start_host(nursery, g, by_key[2], seed=9, **slow)
        for h in small:  # only the largest key knows where the others listen
            big.add_peer(h.key, f"127.0.0.1:{h.listen_port}")
        with trio.fail_after(2.0):
            await big.wait_connected([h.key for h in small])
        nursery.cancel_scope.cancel()


async def test_dead_peer_is_detected_by_keepalive() -> None:

    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0])
            stream, _ = await raw_session(host.listen_port, g, s[1])  # then silent
            await wait_for(lambda: host.is_connected(s[1].public_key))
            await wait_for(lambda: events(logs, "peer_disconnected", reason="idle_timeout"), 2.0)
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_simultaneous_dials_leave_one_session_per_pair() -> None:
    g, s = net_genesis(4)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, s[i], seed=i, dial_grace_s=0.0) for i in range(4)]
        link_all(hosts)
        await wait_mesh(hosts)
        await trio.sleep(0.3)
        for h in hosts:
            assert len(h.connected_peers()) == 3
            for k in h.connected_peers():
                other = next(o for o in hosts if o.key == k)
                mine, theirs = h._conns[k], other._conns[h.key]
                assert mine.session.handshake_hash == theirs.session.handshake_hash
        nursery.cancel_scope.cancel()


async def test_orders_are_relayed_along_a_line_of_peers() -> None:
    """A - B - C - D with no other sessions: relays carry orders and consensus to the end."""
    g, s = net_genesis(4)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, s[i], seed=i) for i in range(4)]
        for a, b in itertools.pairwise(hosts):
            a.add_peer(b.key, f"127.0.0.1:{b.listen_port}")
            b.add_peer(a.key, f"127.0.0.1:{a.listen_port}")
        with trio.fail_after(3):
            for a, b in itertools.pairwise(hosts):
                await a.wait_connected([b.key])
        await trio.sleep(0.1)  # peer-set announcements
        got: list[list] = [[] for _ in hosts]
        for h, into in zip(hosts, got, strict=True):
            nursery.start_soon(collect, h, into)
        for i in range(20):
            hosts[0].broadcast(Kind.TX, b"order-%d" % i)
        hosts[3].broadcast(Kind.CONSENSUS, b"proposal")
        await wait_for(lambda: len(got[3]) == 20 and len(got[0]) == 1)
        await trio.sleep(0.1)
        for i in (1, 2):
            assert len(got[i]) == 21  # each exactly once
        assert {m.payload for m in got[3]} == {b"order-%d" % i for i in range(20)}
        assert got[3][0].peer == s[2].public_key  # delivered by the relay next to it
        nursery.cancel_scope.cancel()


async def test_full_mesh_relays_no_orders() -> None:
    g, s = net_genesis(4)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, s[i], seed=i) for i in range(4)]
        link_all(hosts)
        await wait_mesh(hosts)
        await wait_for(lambda: all(len(c.remote_peers) == 3 for c in hosts[1]._conns.values()))
        for i in range(100):
            hosts[0].broadcast(Kind.TX, b"order-%d" % i)
        await wait_for(lambda: all(h.stats["delivered"] == 100 for h in hosts[1:]))
        assert [h.stats["forwarded"] for h in hosts] == [0, 0, 0, 0]
        assert [h.stats["duplicates"] for h in hosts] == [0, 0, 0, 0]
        nursery.cancel_scope.cancel()


async def test_a_failing_validator_does_not_crash_the_host() -> None:
    def broken(peer: bytes, kind: int, body: bytes) -> Verdict:
        if body == b"boom":
            raise KeyError("node bug")
        return Verdict.ACCEPT

    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            a = await start_host(nursery, g, s[0], validator=broken)
            b = await start_host(nursery, g, s[1], seed=1)
            link_all([a, b])
            await wait_mesh([a, b])
            got: list = []
            nursery.start_soon(collect, a, got)
            b.broadcast(Kind.TX, b"boom")
            b.broadcast(Kind.TX, b"fine")
            await wait_for(lambda: [m.payload for m in got] == [b"fine"])
            assert events(logs, "validator_failed")
            assert a.is_connected(b.key) and a.stats["ignored"] == 1
            nursery.cancel_scope.cancel()


async def test_control_frames_count_against_the_rate_limit() -> None:
    """A peer spamming pings (never gossip) is cut off by the same buckets."""
    g, s = net_genesis(2)
    gossip = with_gossip(msgs_per_s=1_000.0, msgs_burst=200.0)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            host = await start_host(nursery, g, s[0], gossip=gossip)
            stream, session = await raw_session(host.listen_port, g, s[1])
            pings = b"".join(frame(Kind.PING, Ping(i).encode()) for i in range(300))
            for _ in range(10):
                try:
                    await stream.send_all(session.seal(pings))
                except trio.BrokenResourceError:
                    break
            await wait_for(lambda: events(logs, "peer_disconnected", reason="rate_limited"))
            nursery.cancel_scope.cancel()


async def test_replacing_a_session_loses_no_frames() -> None:
    """A second session wins the tie-break mid-stream: every order still arrives once."""
    g, s = net_genesis(2)
    lo, hi = sorted(s, key=lambda x: x.public_key)
    async with trio.open_nursery() as nursery:
        a = await start_host(nursery, g, hi, seed=1)  # dials first; its session will lose
        b = await start_host(nursery, g, lo, seed=2)
        a.add_peer(b.key, f"127.0.0.1:{b.listen_port}")
        with trio.fail_after(3):
            await a.wait_connected([b.key])
        first = a._conns[b.key]
        assert first.initiated_locally
        got: list = []
        nursery.start_soon(collect, b, got)

        async def second_dial() -> None:
            await trio.sleep(0.02)
            conn = await b._dial(a.key, f"127.0.0.1:{a.listen_port}")
            assert conn is not None
            await b._run_session(conn)

        nursery.start_soon(second_dial)
        n = 3000
        for i in range(n):
            a.broadcast(Kind.TX, b"order-%d" % i)
            if i % 100 == 0:
                await trio.sleep(0.002)
        await wait_for(lambda: len(got) == n, 5.0)
        assert a._conns[b.key] is not first  # the session was replaced meanwhile
        assert sorted(m.payload for m in got) == sorted(b"order-%d" % i for i in range(n))
        nursery.cancel_scope.cancel()


async def test_orders_lost_on_a_silent_link_are_repaired_by_ihave() -> None:
    """A's link to C silently loses orders; B's IHAVE lets C fetch them with IWANT."""
    from lockstep.net.framing import Priority

    g, s = net_genesis(3)
    async with trio.open_nursery() as nursery:
        hosts = [
            await start_host(nursery, g, s[i], seed=i, gossip=with_gossip(heartbeat_s=0.05))
            for i in range(3)
        ]
        a, b, c = hosts
        link_all(hosts)
        await wait_mesh(hosts)
        await wait_for(lambda: all(len(x.remote_peers) == 2 for x in b._conns.values()))
        got: list = []
        nursery.start_soon(collect, c, got)
        lossy = a._conns[c.key]
        real_enqueue = lossy.enqueue
        lossy.enqueue = lambda f, prio: prio != Priority.TX and real_enqueue(f, prio)  # type: ignore[method-assign]
        for i in range(50):
            a.broadcast(Kind.TX, b"order-%d" % i)
        await wait_for(lambda: len(got) == 50, 3.0)
        assert {m.payload for m in got} == {b"order-%d" % i for i in range(50)}
        assert {m.peer for m in got} == {b.key}  # all came back through B
        assert c.stats["iwant_sent"] >= 50 and b.stats["iwant_served"] >= 50
        nursery.cancel_scope.cancel()


def _kernel_caps_rto() -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, TCP_RTO_MAX_MS_OPTION, 1_000)
        except OSError:
            return False
    return True


@pytest.mark.skipif(not _kernel_caps_rto(), reason="kernel without TCP_RTO_MAX_MS (Linux < 6.15)")
async def test_peer_sockets_cap_tcp_retransmission_backoff() -> None:
    """Both ends of a session (the dialler's and the acceptor's socket) cap TCP's backoff, so
    frames queued during an outage go out within ``tcp_rto_max_ms`` of the path's return."""
    import socket

    g, s = net_genesis(2)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, k, seed=i) for i, k in enumerate(s)]
        link_all(hosts)
        await wait_mesh(hosts)
        for h in hosts:
            (conn,) = h._conns.values()
            assert h.config.tcp_rto_max_ms == 1_000
            rto_max = conn.stream.getsockopt(socket.IPPROTO_TCP, TCP_RTO_MAX_MS_OPTION)
            assert rto_max == h.config.tcp_rto_max_ms
        nursery.cancel_scope.cancel()
