"""The network host: the trio service the node daemon runs in its nursery.

Theory of operation. A :class:`Host` listens on TCP, dials every admitted peer that has an
address, and keeps one authenticated session per peer (``noise_session``, tie-break and backoff
in ``peer_manager``). It moves four kinds of application traffic:

* ``broadcast(Kind.TX | Kind.CONSENSUS, payload)``: gossip. Sent to every connected peer; every
  node validates what it receives with the node's validator (``gossip``: rate limits,
  seen-cache, verdicts, scores) before delivering it and forwarding it — consensus messages to
  every other peer, orders only to peers that the sender and originator have no session with
  (``_forward``), which in a full mesh is none;
* ``send(peer, Kind.DIRECT, payload)``: one peer, validated and delivered, never forwarded;
* ``await request(peer, payload)``: request/response (``sync``), served by ``sync_handler``;
* inbound: accepted messages arrive on :attr:`Host.inbound` as *batches* (lists) of
  :class:`Inbound` — one batch per socket read, so the node pays one channel operation for
  hundreds of orders.

Everything a peer can do wrong ends in a refusal or a disconnect logged with the peer's short
id and one reason code (``peer_refused reason=...``, ``peer_disconnected reason=...``), and
never affects other peers: each peer has its own tasks and bounded queues.

Typical use by the node daemon::

    host = Host(HostConfig.from_genesis(genesis, own_key=signer.public_key, listen_port=port),
                signer, validator=mempool_validate, sync_handler=serve_sync)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        async for batch in host.inbound:
            for peer, kind, payload in batch: ...
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import structlog
import trio
from lockstep.consensus.codec import CodecError, decode
from lockstep.consensus.crypto import Signer
from lockstep.consensus.genesis import Genesis

from .envelope import Goodbye, PeerSet, Ping, Pong
from .framing import (
    APP_KINDS,
    GOSSIP_KINDS,
    MAX_FRAME_BYTES,
    MAX_IHAVE_IDS,
    MAX_IWANT_IDS,
    MESSAGE_ID_BYTES,
    VALIDATED_KINDS,
    Kind,
    Priority,
    encode_frame,
    priority_of,
)
from .gossip import GossipParams, GossipRouter, MessageCache, MessageValidator, Verdict
from .noise_session import HandshakeConfig, HandshakeError, handshake, noise_static_from_seed
from .peer import PeerConnection, QueueLimits
from .peer_manager import Backoff, BackoffParams, keep_new_session
from .sync import MAX_SYNC_RESPONSE_BYTES, RequestHandler, SyncEndpoint

__all__ = ["Host", "HostConfig", "Inbound", "Verdict", "open_host"]

log = structlog.get_logger("lockstep.net")

TCP_RTO_MAX_MS_OPTION = 44
"""Linux's ``TCP_RTO_MAX_MS`` socket option (kernel 6.15 and later; not yet in ``socket``)."""

IWANT_SERVED_PER_HEARTBEAT = 2 * MAX_IWANT_IDS
"""Orders sent to one peer per heartbeat in answer to its IWANTs: two full requests, as
GossipSub bounds retransmissions, so IWANT cannot amplify a peer's traffic without bound."""


class Inbound(NamedTuple):
    """One accepted message: who sent it (Ed25519 key), its kind, its bytes."""

    peer: bytes
    kind: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class HostConfig:
    chain_id: bytes
    peers: Mapping[bytes, str | None]
    """Admitted Ed25519 keys (validators and observers) → ``host:port`` to dial, or None."""
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    gossip: GossipParams = field(default_factory=GossipParams)
    backoff: BackoffParams = field(default_factory=BackoffParams)
    queue_limits: QueueLimits = field(default_factory=QueueLimits)
    handshake_timeout_s: float = 5.0
    """A handshake is 1.5 round trips and ~1 ms of CPU; 5 s only allows for a loaded host."""
    connect_timeout_s: float = 5.0
    ping_interval_s: float = 2.0
    idle_timeout_s: float = 10.0
    """Five missed pings: the peer or the path is dead (CometBFT's pong timeout is similar)."""
    write_timeout_s: float = 10.0
    tx_flush_delay_s: float = 0.010
    """Order gossip waits up to this long to share a write with more orders, so a peer link
    carries at most 100 order writes/s whatever the order rate: the per-write and per-read CPU
    (~40 µs each in trio) is shared by every order queued meanwhile. A block is 50 ms (default
    timing), so 10 ms is affordable; CometBFT's connections throttle flushes at 100 ms
    (``flush_throttle_timeout``). Consensus and control frames never wait."""
    session_linger_s: float = 1.0
    """A duplicate session being dropped (tie-break) is still read this long, so frames the peer
    wrote on it before switching are not lost; many round trips on any sane path."""
    dial_grace_s: float = 1.0
    """After a session ends, a node waits this long before redialling a peer with a smaller
    key (see peer_manager); its first dial to each peer goes at once."""
    tcp_rto_max_ms: int | None = 1_000
    """Cap on TCP's retransmission backoff per peer socket (None: the kernel's, 120 s). While
    a path drops packets, TCP doubles its retransmission timeout each time, so after an outage
    of a few seconds the queued frames — the timeouts every replica re-sends while stuck —
    wait up to that long again once the path is back. 1 s, the default base view timeout, is
    also the smallest cap Linux accepts; kernels without the option keep their own."""
    max_handshakes: int = 64
    """Concurrent unauthenticated connections: bounds what strangers can make us hold."""
    inbound_batches: int = 4096
    """Buffered inbound batches before delivery drops (counted in ``statistics()``)."""

    @classmethod
    def from_genesis(
        cls,
        genesis: Genesis,
        *,
        own_key: bytes,
        observers: Iterable[bytes] = (),
        **kwargs: Any,
    ) -> HostConfig:
        """Admit the genesis validators (dialled at their addresses) and the observers."""
        peers: dict[bytes, str | None] = {v.public_key: v.address for v in genesis.validators}
        for key in observers:
            peers.setdefault(key, None)
        peers.pop(own_key, None)
        return cls(chain_id=genesis.chain_id, peers=peers, **kwargs)


def _split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → (host, port); ValueError if it is not one."""
    host, sep, port = address.rpartition(":")
    number = int(port)
    if not sep or not host or not 0 < number < 65536:
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]"), number


class Host:
    """See the module docstring. Create, then ``await nursery.start(host.run)``."""

    def __init__(
        self,
        config: HostConfig,
        signer: Signer,
        validator: MessageValidator,
        *,
        sync_handler: RequestHandler | None = None,
        on_session: Callable[[bytes], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.on_session = on_session
        """Called with a peer's key each time a session with it opens (after the tie-break),
        so the node above can greet it: the consensus layer tells it the chain's tip."""
        self.signer = signer
        self.key = signer.public_key
        self.short = self.key.hex()[:8]
        self.validator = validator
        self.rng = rng if rng is not None else random.Random()
        self._peers: dict[bytes, str | None] = dict(config.peers)
        self._peers.pop(self.key, None)
        self._hs = HandshakeConfig(
            signer=signer,
            chain_id=config.chain_id,
            static_private=noise_static_from_seed(signer.seed),
            is_admitted=self._peers.__contains__,
        )
        self._conns: dict[bytes, PeerConnection] = {}
        self._banned_until: dict[bytes, float] = {}
        self._connected_changed = trio.Event()
        self.router = GossipRouter(config.gossip, 0.0)
        self._mcache = MessageCache(config.gossip.mcache_max_entries)
        self._ihave: list[bytes] = []
        """Ids of orders accepted or published since the last heartbeat."""
        self._ihave_due: list[bytes] = []
        """Ids from the heartbeat before: announced at the next one, so the direct copy has had
        a whole heartbeat to arrive and a healthy mesh sends no IWANT."""
        self.sync = SyncEndpoint(self._conns.get, sync_handler)
        self._inbound_send, self.inbound = trio.open_memory_channel[list[Inbound]](
            config.inbound_batches
        )
        self._nursery: trio.Nursery | None = None
        self._handshake_slots = trio.Semaphore(config.max_handshakes)
        self._dialling: set[bytes] = set()
        self.listen_port: int | None = None
        self.stats: dict[str, int] = {
            "delivered": 0,
            "forwarded": 0,
            "rejected": 0,
            "ignored": 0,
            "duplicates": 0,
            "flooded": 0,
            "inbound_dropped": 0,
            "iwant_sent": 0,
            "iwant_served": 0,
        }

    # ================================================================= public API

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial, serve until cancelled. ``task_status.started`` gets the listen port."""
        self.router = GossipRouter(self.config.gossip, trio.current_time())
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.listen_port = await nursery.start(self._serve)
            log.info("host_listening", node=self.short, port=self.listen_port)
            for key, address in self._peers.items():
                if address:
                    self._start_dialler(key, address)
            nursery.start_soon(self._heartbeat)
            task_status.started(self.listen_port)

    def broadcast(self, kind: Kind, payload: bytes) -> int:
        """Gossip our own message to every connected peer; return how many it was queued for."""
        if kind not in GOSSIP_KINDS:
            raise ValueError(f"{kind!r} is not a gossip kind")
        self._check_size(kind, payload)
        mid = self.router.mark_own(payload, trio.current_time())
        if mid is None:
            return 0
        if kind == Kind.TX:
            self._remember(mid, self.key, payload)
        return self._fan_out(encode_frame(kind, payload), priority_of(kind), None)

    def flush(self) -> None:
        """Write every peer's queued gossip now: the caller just queued a batch (an RPC request
        of many orders), which gains nothing from waiting ``tx_flush_delay_s`` for more."""
        for conn in self._conns.values():
            conn.flush()

    def send(self, peer: bytes, kind: Kind, payload: bytes) -> bool:
        """Queue a message for one peer; False if not connected (or its queue is full)."""
        if kind not in APP_KINDS:
            raise ValueError(f"{kind!r} is not an application kind")
        self._check_size(kind, payload)
        conn = self._conns.get(peer)
        return conn is not None and conn.enqueue(encode_frame(kind, payload), priority_of(kind))

    async def request(
        self,
        peer: bytes,
        payload: bytes,
        *,
        timeout_s: float = 5.0,
        max_response_bytes: int = MAX_SYNC_RESPONSE_BYTES,
    ) -> bytes:
        """Send a request to ``peer`` and return its answer (``sync.SyncError`` otherwise)."""
        return await self.sync.request(
            peer, payload, timeout_s=timeout_s, max_response_bytes=max_response_bytes
        )

    def add_peer(self, key: bytes, address: str | None) -> None:
        """Admit a key (observer or validator) and, with an address, keep a session to it."""
        if key == self.key:
            return
        self._peers[key] = address
        if address and self._nursery is not None:
            self._start_dialler(key, address)

    def connected_peers(self) -> list[bytes]:
        return list(self._conns)

    def is_connected(self, peer: bytes) -> bool:
        return peer in self._conns

    async def wait_connected(self, peers: Iterable[bytes]) -> None:
        """Wait until a session is up with each of ``peers`` (bound it with a timeout)."""
        want = set(peers)
        while not want <= self._conns.keys():
            await self._connected_changed.wait()

    def disconnect(self, peer: bytes, reason: str = "requested") -> None:
        conn = self._conns.get(peer)
        if conn is not None:
            conn.close(reason)

    def statistics(self) -> dict[str, Any]:
        return {
            **self.stats,
            "peers": len(self._conns),
            "seen": len(self.router.seen),
            "peer": {
                c.short: {
                    "score": round(self.router.score(c.key, trio.current_time()), 3),
                    "queued_bytes": c.queued_bytes(),
                    "dropped_tx": c.dropped_tx,
                    "rtt_ms": None if c.rtt_s is None else round(c.rtt_s * 1000, 3),
                }
                for c in self._conns.values()
            },
        }

    # ================================================================= sessions

    async def _serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        assert self._nursery is not None
        listeners = await trio.open_tcp_listeners(
            self.config.listen_port, host=self.config.listen_host
        )
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(port)
            await trio.serve_listeners(self._accept, listeners, handler_nursery=nursery)

    async def _accept(self, stream: trio.SocketStream) -> None:
        address = _peername(stream)
        _cap_retransmission_backoff(stream, self.config.tcp_rto_max_ms)
        if self._handshake_slots.value == 0:
            log.warning("peer_refused", node=self.short, reason="too_many_handshakes", addr=address)
            await stream.aclose()
            return
        async with self._handshake_slots:
            conn = await self._secure(stream, initiator=False, expected=None, address=address)
        if conn is not None:
            await self._run_session(conn)

    async def _secure(
        self, stream: trio.SocketStream, *, initiator: bool, expected: bytes | None, address: str
    ) -> PeerConnection | None:
        """Handshake and admission checks; None (stream closed, refusal logged) on failure."""
        try:
            with trio.fail_after(self.config.handshake_timeout_s):
                session = await handshake(
                    stream, self._hs, initiator=initiator, expected_key=expected
                )
        except (HandshakeError, trio.TooSlowError, OSError, trio.BrokenResourceError) as e:
            reason = (
                e.reason
                if isinstance(e, HandshakeError)
                else ("handshake_timeout" if isinstance(e, trio.TooSlowError) else "handshake_eof")
            )
            key = getattr(e, "remote_key", None) or expected
            log.warning(
                "peer_refused",
                node=self.short,
                peer=key.hex()[:8] if key else None,
                reason=reason,
                detail=getattr(e, "detail", str(e)),
                addr=address,
                initiator=initiator,
            )
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return None
        key = session.remote_key
        now = trio.current_time()
        banned = self._banned_until.get(key, 0.0)
        if now < banned:
            log.warning(
                "peer_refused",
                node=self.short,
                peer=key.hex()[:8],
                reason="backed_off",
                seconds_left=round(banned - now, 3),
                addr=address,
            )
            await stream.aclose()
            return None
        return PeerConnection(self, stream, session, initiator, address, now)

    async def _run_session(self, conn: PeerConnection) -> None:
        """Register ``conn`` (tie-break), run it to its end, then clean up and log."""
        old = self._conns.get(conn.key)
        if old is not None:
            if not keep_new_session(
                self.key, conn.key, old.initiated_locally, conn.initiated_locally
            ):
                log.info("peer_duplicate_closed", node=self.short, peer=conn.short, kept="existing")
                self._retire(conn, old, "duplicate_session")
                await conn.run()
                return
            self._retire(old, conn, "replaced_by_new_session")
        self._conns[conn.key] = conn
        self.router.add_peer(conn.key, trio.current_time())
        self._notify_connected()
        self._announce_peers()
        if self.on_session is not None:
            self.on_session(conn.key)
        log.info(
            "peer_connected",
            node=self.short,
            peer=conn.short,
            addr=conn.address,
            initiator=conn.initiated_locally,
        )
        try:
            await conn.run()
        finally:
            if self._conns.get(conn.key) is conn:
                del self._conns[conn.key]
                self.router.remove_peer(conn.key)
                self.sync.on_disconnect(conn.key)
                self._notify_connected()
                self._announce_peers()
            log.info(
                "peer_disconnected",
                node=self.short,
                peer=conn.short,
                reason=conn.close_reason,
                detail=conn.close_detail,
                dropped_tx=conn.dropped_tx,
            )

    def _retire(self, loser: PeerConnection, winner: PeerConnection, reason: str) -> None:
        """End a duplicate session without losing frames (module peer, ``retire``).

        The loser's unsent frames move to the winner; it keeps reading what the peer wrote on it
        before the peer switched, for ``session_linger_s``, and is then closed.
        """
        loser.retire(winner)
        assert self._nursery is not None
        self._nursery.start_soon(self._close_later, loser, reason)

    async def _close_later(self, conn: PeerConnection, reason: str) -> None:
        await trio.sleep(self.config.session_linger_s)
        conn.close(reason)

    def _notify_connected(self) -> None:
        self._connected_changed.set()
        self._connected_changed = trio.Event()

    # ================================================================= dialling

    def _start_dialler(self, key: bytes, address: str) -> None:
        if key in self._dialling:
            return
        try:
            _split_address(address)
        except ValueError:
            log.error("peer_address_invalid", node=self.short, peer=key.hex()[:8], addr=address)
            return
        self._dialling.add(key)
        assert self._nursery is not None
        self._nursery.start_soon(self._dial_loop, key)

    async def _dial_loop(self, key: bytes) -> None:
        """Keep a session with ``key``: dial, run, and after any end redial with backoff."""
        backoff = Backoff(self.config.backoff, self.rng)
        short = key.hex()[:8]
        dial_later = key < self.key
        first = True
        while True:
            conn = self._conns.get(key)
            if conn is not None:
                await conn.done.wait()
                await trio.sleep(backoff.next_delay() / 4)
                continue
            address = self._peers.get(key)
            if not address:
                return
            now = trio.current_time()
            banned = self._banned_until.get(key, 0.0)
            if now < banned:
                await trio.sleep(banned - now)
                continue
            if dial_later and not first:
                await trio.sleep(self.config.dial_grace_s)
                if key in self._conns:
                    continue
            first = False
            conn = await self._dial(key, address)
            if conn is None:
                delay = backoff.next_delay()
                log.debug(
                    "dial_retry",
                    node=self.short,
                    peer=short,
                    delay_s=round(delay, 3),
                    failures=backoff.failures,
                )
                await trio.sleep(delay)
                continue
            backoff.reset()
            await self._run_session(conn)
            await trio.sleep(backoff.next_delay())

    async def _dial(self, key: bytes, address: str) -> PeerConnection | None:
        host, port = _split_address(address)
        try:
            with trio.fail_after(self.config.connect_timeout_s):
                stream = await trio.open_tcp_stream(host, port)
            _cap_retransmission_backoff(stream, self.config.tcp_rto_max_ms)
        except (OSError, trio.TooSlowError) as e:
            log.debug(
                "dial_failed",
                node=self.short,
                peer=key.hex()[:8],
                addr=address,
                error=type(e).__name__,
            )
            return None
        return await self._secure(stream, initiator=True, expected=key, address=address)

    # ================================================================= inbound frames

    def _on_frames(self, conn: PeerConnection, frames: list[tuple[int, bytes]], now: float) -> None:
        """Everything one socket read produced from ``conn`` (called by its reader)."""
        gossip = frames
        if not all(k in VALIDATED_KINDS for k, _ in frames):
            gossip = []
            for kind, body in frames:
                if kind in VALIDATED_KINDS:
                    gossip.append((kind, body))
                    continue
                verdict = self.router.admit(conn.key, len(body), now)
                if verdict is None:
                    self._on_control(conn, kind, body, now)
                elif verdict == "dropped":
                    self.stats["flooded"] += 1
                else:
                    self._ban(conn, verdict)
                    if conn.close_reason is not None:
                        return
            if not gossip:
                return
        res = self.router.receive(conn.key, gossip, now, self.validator)
        stats = self.stats
        if res.rejected or res.flooded or res.ignored:
            stats["rejected"] += res.rejected
            stats["ignored"] += res.ignored
            stats["flooded"] += res.flooded
            if res.rejected:
                log.info("gossip_rejected", node=self.short, peer=conn.short, count=res.rejected)
        stats["duplicates"] += res.duplicates
        if res.validator_errors:
            log.error(
                "validator_failed",
                node=self.short,
                peer=conn.short,
                count=len(res.validator_errors),
                error=res.validator_errors[0],
            )
        accepted = res.accepted
        if accepted:
            sender = conn.key
            stats["delivered"] += len(accepted)
            try:
                self._inbound_send.send_nowait([Inbound(sender, k, b) for k, b, _, _ in accepted])
            except trio.WouldBlock:
                stats["inbound_dropped"] += len(accepted)
            stats["forwarded"] += self._forward(sender, accepted)
        if res.disconnect is not None:
            self._ban(conn, res.disconnect)

    def _forward(
        self, sender: bytes, accepted: list[tuple[int, bytes, bytes | None, bytes]]
    ) -> int:
        """Forward accepted messages; return how many frames were queued.

        Consensus messages are flooded to every peer but the sender. Orders are relayed only to
        peers that neither the sender nor the originator has a session with, by their last
        ``PEERS`` announcements: in a full mesh the originator reached everyone, so nothing is
        relayed and each node receives each order once (see docs/design/network.md).
        """
        n = 0
        direct_targets: list[PeerConnection] | None = None
        for kind, body, origin, mid in accepted:
            if kind == Kind.TX:
                self._remember(mid, origin or sender, body)
            if kind == Kind.CONSENSUS:
                n += self._fan_out(encode_frame(kind, body), Priority.CONTROL, sender)
            elif kind == Kind.TX:
                if origin is None:
                    if direct_targets is None:
                        direct_targets = self._relay_targets(sender, None)
                    targets = direct_targets
                    origin = sender
                else:
                    targets = self._relay_targets(sender, origin)
                if targets:
                    frame = encode_frame(Kind.TX_RELAY, origin + body)
                    for c in targets:
                        n += c.enqueue(frame, Priority.TX)
        return n

    def _relay_targets(self, sender: bytes, origin: bytes | None) -> list[PeerConnection]:
        conns = self._conns
        covered = {sender, self.key}
        s = conns.get(sender)
        if s is not None:
            covered |= s.remote_peers
        if origin is not None:
            covered.add(origin)
            o = conns.get(origin)
            if o is not None:
                covered |= o.remote_peers
        return [c for k, c in conns.items() if k not in covered]

    # ================================================================= lazy repair

    def _remember(self, mid: bytes, origin: bytes, body: bytes) -> None:
        """Keep an accepted order for IWANTs and announce it in the next IHAVE."""
        self._mcache.put(mid, origin, body)
        if len(self._ihave) < self.config.gossip.mcache_max_entries:
            self._ihave.append(mid)

    async def _heartbeat(self) -> None:
        """Every ``heartbeat_s``: IHAVE to ``lazy_peers`` random peers, then age the cache.

        This repairs what the relay rule cannot see: an order lost on a link that was dead
        before anyone noticed, or relayed by a stale ``PEERS`` view (GossipSub's gossip
        emission, on our full mesh).
        """
        params = self.config.gossip
        while True:
            await trio.sleep(params.heartbeat_s)
            ids, self._ihave_due, self._ihave = self._ihave_due, self._ihave, []
            conns = list(self._conns.values())
            for c in conns:
                c.iwant_served = 0
            if ids and conns:
                chosen = self.rng.sample(conns, min(params.lazy_peers, len(conns)))
                for i in range(0, len(ids), MAX_IHAVE_IDS):
                    frame = encode_frame(Kind.IHAVE, b"".join(ids[i : i + MAX_IHAVE_IDS]))
                    for c in chosen:
                        c.enqueue(frame, Priority.TX)
            self._mcache.rotate()

    def _on_ihave(self, conn: PeerConnection, body: bytes) -> None:
        seen = self.router.seen
        want = []
        for i in range(0, len(body), MESSAGE_ID_BYTES):
            mid = body[i : i + MESSAGE_ID_BYTES]
            if mid not in seen:
                want.append(mid)
                if len(want) == MAX_IWANT_IDS:
                    break
        if want:
            self.stats["iwant_sent"] += len(want)
            conn.enqueue(encode_frame(Kind.IWANT, b"".join(want)), Priority.TX)

    def _on_iwant(self, conn: PeerConnection, body: bytes) -> None:
        get = self._mcache.get
        for i in range(0, len(body), MESSAGE_ID_BYTES):
            if conn.iwant_served >= IWANT_SERVED_PER_HEARTBEAT:
                return  # answering more would let IWANT amplify a peer's traffic
            conn.iwant_served += 1
            hit = get(body[i : i + MESSAGE_ID_BYTES])
            if hit is not None:
                origin, order = hit
                if origin == self.key:
                    frame = encode_frame(Kind.TX, order)
                else:
                    frame = encode_frame(Kind.TX_RELAY, origin + order)
                if conn.enqueue(frame, Priority.TX):
                    self.stats["iwant_served"] += 1

    def _announce_peers(self) -> None:
        """Tell every peer which sessions we have (they steer order relaying with it)."""
        frame = encode_frame(Kind.PEERS, PeerSet(tuple(sorted(self._conns))).encode())
        for c in self._conns.values():
            c.enqueue(frame, Priority.CONTROL)

    def _fan_out(self, frame: bytes, priority: int, skip: bytes | None) -> int:
        n = 0
        for key, conn in self._conns.items():
            if key != skip and conn.enqueue(frame, priority):
                n += 1
        return n

    def _on_control(self, conn: PeerConnection, kind: int, body: bytes, now: float) -> None:
        try:
            if kind == Kind.PING:
                ping = decode(body, Ping, max_bytes=MAX_FRAME_BYTES[Kind.PING])
                conn.enqueue(encode_frame(Kind.PONG, Pong(ping.nonce).encode()), Priority.CONTROL)
            elif kind == Kind.PONG:
                conn.on_pong(decode(body, Pong, max_bytes=MAX_FRAME_BYTES[Kind.PONG]).nonce, now)
            elif kind == Kind.SYNC_REQUEST:
                assert self._nursery is not None
                self.sync.on_request(conn, body, self._nursery)
            elif kind == Kind.SYNC_RESPONSE:
                self.sync.on_response(conn, body)
            elif kind in (Kind.IHAVE, Kind.IWANT):
                if len(body) % MESSAGE_ID_BYTES:
                    conn.close("malformed_message", f"kind {int(kind)}: ragged id list")
                elif kind == Kind.IHAVE:
                    self._on_ihave(conn, body)
                else:
                    self._on_iwant(conn, body)
            elif kind == Kind.PEERS:
                peers = decode(body, PeerSet, max_bytes=MAX_FRAME_BYTES[Kind.PEERS])
                conn.remote_peers = frozenset(peers.keys)
            elif kind == Kind.GOODBYE:
                bye = decode(body, Goodbye, max_bytes=MAX_FRAME_BYTES[Kind.GOODBYE])
                conn.close("goodbye", bye.reason)
        except CodecError as e:
            log.warning(
                "peer_malformed", node=self.short, peer=conn.short, kind=int(kind), error=str(e)
            )
            conn.close("malformed_message", f"kind {int(kind)}: {e}")

    def _ban(self, conn: PeerConnection, reason: str) -> None:
        backoff_s = self.config.gossip.score.backoff_s
        self._banned_until[conn.key] = trio.current_time() + backoff_s
        log.warning(
            "peer_penalised",
            node=self.short,
            peer=conn.short,
            reason=reason,
            score=round(self.router.score(conn.key, trio.current_time()), 2),
            backoff_s=backoff_s,
        )
        conn.close(reason)

    # ================================================================= helpers

    @staticmethod
    def _check_size(kind: Kind, payload: bytes) -> None:
        limit = MAX_FRAME_BYTES[kind]
        if len(payload) > limit:
            raise ValueError(f"{kind.name} payload of {len(payload)} bytes exceeds {limit}")

    def _log_queue_full(self, conn: PeerConnection, queue: str, dropped: int) -> None:
        log.warning(
            "send_queue_full", node=self.short, peer=conn.short, queue=queue, dropped=dropped
        )


def _cap_retransmission_backoff(stream: trio.SocketStream, rto_max_ms: int | None) -> None:
    """Set ``TCP_RTO_MAX_MS`` (see ``HostConfig.tcp_rto_max_ms``) where the kernel has it."""
    if rto_max_ms is None:
        return
    # Not Linux ≥ 6.15 (ENOPROTOOPT): the kernel's own backoff applies.
    with contextlib.suppress(OSError):
        stream.setsockopt(socket.IPPROTO_TCP, TCP_RTO_MAX_MS_OPTION, rto_max_ms)


def _peername(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


@asynccontextmanager
async def open_host(
    config: HostConfig,
    signer: Signer,
    validator: MessageValidator,
    *,
    sync_handler: RequestHandler | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Host]:
    """Run a host in a nursery for the duration of the block; cancelled on exit."""
    host = Host(config, signer, validator, sync_handler=sync_handler, rng=rng)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        try:
            yield host
        finally:
            nursery.cancel_scope.cancel()
