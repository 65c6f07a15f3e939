"""Gossip rules, sans-I/O: rate limits, de-duplication, validation verdicts, scoring.

Theory of operation (GossipSub v1.1's validation pipeline, for a full mesh). For every gossip
frame (``Kind.TX`` or ``Kind.CONSENSUS``) a peer sends, in order:

0. A ``TX_RELAY`` frame carries the originator's key before the order; the key is split off
   (it steers forwarding, see ``host``) and the order is judged like a ``TX``.
1. *Rate limits*: the peer's message and byte token buckets must cover it, else the message is
   dropped unseen and the peer's flood counter rises (score penalty).
2. *Seen-cache*: the message id is SHA-256 of the body. A message already seen is dropped; if
   it had been rejected, the sender is penalised as if it had sent it first (it forwarded, so
   it claimed to have validated it).
3. *Validation*: the node's validator returns ``ACCEPT`` (deliver and forward to every other
   peer), ``REJECT`` (provably invalid — malformed, bad signature: drop and penalise the sender)
   or ``IGNORE`` (not useful now — stale, duplicate nonce, unknown market: drop, no penalty).
   Validators must answer ``IGNORE``, not ``REJECT``, for anything that depends on local state,
   because an honest peer may have seen a different state.
4. A peer whose score falls below the threshold must be disconnected and backed off.

The seen-cache is two generations of dicts (current and previous), rotated every ``ttl_s / 2``
or when the current one holds ``max_entries / 2`` ids: lookups and inserts are O(1), an id is
remembered for between ``ttl_s / 2`` and ``ttl_s``, and memory is bounded by ``max_entries``.
Time is passed in; :class:`GossipRouter` never reads a clock or touches a socket.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .framing import ORIGIN_BYTES, Kind
from .peer_score import PeerScore, ScoreParams
from .rate_limit import TokenBucket

__all__ = [
    "GossipParams",
    "GossipRouter",
    "MessageCache",
    "SeenCache",
    "Verdict",
    "message_id",
]


class Verdict(enum.IntEnum):
    """The node's judgement of one gossip message (GossipSub v1.1's validation results)."""

    ACCEPT = 0
    REJECT = 1
    IGNORE = 2


_sha256 = hashlib.sha256


def message_id(body: bytes) -> bytes:
    """SHA-256 of the message body: the same id on every node, whoever relays it."""
    return _sha256(body).digest()


class SeenCache:
    """Recently seen message ids and their verdicts, bounded in count and age."""

    __slots__ = ("_cur", "_half", "_prev", "_rotate_at", "max_entries", "ttl_s")

    def __init__(self, max_entries: int, ttl_s: float, now: float) -> None:
        assert max_entries >= 2 and ttl_s > 0
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._half = max_entries // 2
        self._cur: dict[bytes, int] = {}
        self._prev: dict[bytes, int] = {}
        self._rotate_at = now + ttl_s / 2

    def __len__(self) -> int:
        return len(self._cur) + len(self._prev)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._cur or msg_id in self._prev

    def get(self, msg_id: bytes) -> int | None:
        v = self._cur.get(msg_id)
        return self._prev.get(msg_id) if v is None else v

    def first_sight(self, msg_id: bytes, verdict: int, now: float) -> int | None:
        """The verdict already recorded for ``msg_id``; or, if none, record ``verdict`` for it
        and return None. One call on the hot path instead of a lookup and an insert."""
        cur = self._cur
        v = cur.get(msg_id)
        if v is None:
            v = self._prev.get(msg_id)
            if v is None:
                if now >= self._rotate_at or len(cur) >= self._half:
                    self._prev = cur
                    cur = self._cur = {}
                    self._rotate_at = now + self.ttl_s / 2
                cur[msg_id] = verdict
        return v

    def set_verdict(self, msg_id: bytes, verdict: int) -> None:
        """Correct the verdict ``first_sight`` just recorded."""
        self._cur[msg_id] = verdict

    def add(self, msg_id: bytes, verdict: int, now: float) -> None:
        if now >= self._rotate_at or len(self._cur) >= self._half:
            self._prev = self._cur
            self._cur = {}
            self._rotate_at = now + self.ttl_s / 2
        self._cur[msg_id] = verdict


@dataclass(frozen=True, slots=True)
class GossipParams:
    msgs_per_s: float = 50_000.0
    """Per-peer gossip message rate. An honest validator relays at most the network's order
    rate; the Ed25519 bound of one core is ~18k verifications/s (ARCHITECTURE.md), so 50k/s is
    well above any honest peer and still bounds a flooder."""
    msgs_burst: float = 100_000.0
    bytes_per_s: float = 64 * 1024 * 1024
    """Per-peer gossip bytes/s: a 2 MiB proposal every 50 ms is 40 MiB/s."""
    bytes_burst: float = 128 * 1024 * 1024
    seen_max_entries: int = 1_000_000
    """~60 s of orders at 16k/s; each entry is ~150 bytes of dict and key."""
    seen_ttl_s: float = 30.0
    """Relayed copies of a message arrive within a second or two; a copy that comes later still
    is validated again and ignored (the mempool or the results know it). Each second of it
    costs ~150 bytes per message per second of traffic: 120 s held ~20 MB at 1,300 orders/s."""
    heartbeat_s: float = 0.25
    """IHAVE period; GossipSub uses 1 s, we want a lost order back within a few blocks."""
    lazy_peers: int = 3
    """Peers that get each IHAVE (GossipSub's D_lazy is 6 for meshes of 6-12)."""
    mcache_max_entries: int = 2 * 16_384
    """Orders answerable by IWANT per heartbeat generation: ~1 s of the verification bound."""
    score: ScoreParams = field(default_factory=ScoreParams)


MessageValidator = Callable[[bytes, int, bytes], Verdict]
"""``validator(peer_key, kind, body) -> Verdict``, supplied by the node; must not block."""


class _PeerState:
    __slots__ = ("bytes_", "msgs", "score")

    def __init__(self, params: GossipParams, now: float) -> None:
        self.score = PeerScore(params.score, now)
        self.msgs = TokenBucket(params.msgs_per_s, params.msgs_burst, now)
        self.bytes_ = TokenBucket(params.bytes_per_s, params.bytes_burst, now)


@dataclass(slots=True)
class BatchResult:
    """What to do after a batch of one peer's gossip frames."""

    accepted: list[tuple[int, bytes, bytes | None, bytes]] = field(default_factory=list)
    """(kind, body, origin, id) to deliver and forward; ``origin`` is None when the sender is
    the originator, else the originator's key from a ``TX_RELAY`` (whose kind becomes ``TX``)."""
    rejected: int = 0
    ignored: int = 0
    duplicates: int = 0
    flooded: int = 0
    validator_errors: list[str] = field(default_factory=list)
    """The validator raised instead of answering (a node bug): treated as IGNORE."""
    disconnect: str | None = None
    """Set to a reason code when the peer's score fell below the threshold."""


class MessageCache:
    """Recently accepted orders by id, to answer IWANTs (GossipSub's ``mcache``).

    ``generations`` dicts rotated by the host's heartbeat: an order is kept for that many
    heartbeats, long enough for the IHAVE that announces it (one heartbeat late, see ``host``)
    to be answered.
    """

    __slots__ = ("_gens", "generations", "max_entries")

    def __init__(self, max_entries: int, generations: int = 3) -> None:
        assert generations >= 1
        self.max_entries = max_entries
        self.generations = generations
        self._gens: deque[dict[bytes, tuple[bytes, bytes]]] = deque([{}])

    def put(self, mid: bytes, origin: bytes, body: bytes) -> None:
        cur = self._gens[0]
        if len(cur) < self.max_entries:
            cur[mid] = (origin, body)

    def get(self, mid: bytes) -> tuple[bytes, bytes] | None:
        for gen in self._gens:
            hit = gen.get(mid)
            if hit is not None:
                return hit
        return None

    def rotate(self) -> None:
        self._gens.appendleft({})
        if len(self._gens) > self.generations:
            self._gens.pop()

    def __len__(self) -> int:
        return sum(len(g) for g in self._gens)


class GossipRouter:
    """Per-node gossip state: the seen-cache and each peer's score and buckets."""

    def __init__(self, params: GossipParams, now: float) -> None:
        self.params = params
        self.seen = SeenCache(params.seen_max_entries, params.seen_ttl_s, now)
        self._peers: dict[bytes, _PeerState] = {}

    def add_peer(self, peer: bytes, now: float) -> None:
        if peer not in self._peers:
            self._peers[peer] = _PeerState(self.params, now)

    def remove_peer(self, peer: bytes) -> None:
        self._peers.pop(peer, None)

    def score(self, peer: bytes, now: float) -> float:
        st = self._peers.get(peer)
        return 0.0 if st is None else st.score.score(now)

    def mark_own(self, body: bytes, now: float) -> bytes | None:
        """Record a message we originate; return its id, or None if it was already seen."""
        mid = message_id(body)
        if mid in self.seen:
            return None
        self.seen.add(mid, Verdict.ACCEPT, now)
        return mid

    def admit(self, peer: bytes, size: int, now: float) -> str | None:
        """Charge a non-gossip frame (ping, peers, sync) to the peer's buckets.

        Returns a disconnect reason if the peer is over its limits often enough to be cut off;
        the frame should be dropped whenever the buckets could not cover it.
        """
        st = self._peers.get(peer)
        if st is None or (st.msgs.try_take(1, now) and st.bytes_.try_take(size, now)):
            return None
        return "rate_limited" if st.score.on_flood(now) else "dropped"

    def receive(
        self,
        peer: bytes,
        frames: Iterable[tuple[int, bytes]],
        now: float,
        validate: MessageValidator,
    ) -> BatchResult:
        """Apply the rules to a batch of gossip frames from ``peer`` (see module docstring)."""
        st = self._peers[peer]
        res = BatchResult()
        accepted = res.accepted
        seen = self.seen
        first_sight = seen.first_sight
        set_verdict = seen.set_verdict
        msgs_take = st.msgs.try_take
        bytes_take = st.bytes_.try_take
        score = st.score
        sha = _sha256
        tx_relay = Kind.TX_RELAY
        for kind, body in frames:
            if not (msgs_take(1, now) and bytes_take(len(body), now)):
                res.flooded += 1
                if score.on_flood(now):
                    res.disconnect = "rate_limited"
                    return res
                continue
            origin = None
            if kind == tx_relay:
                origin = body[:ORIGIN_BYTES]
                body = body[ORIGIN_BYTES:]
                kind = Kind.TX
                if not body or origin == peer:
                    res.rejected += 1
                    if score.on_invalid(now):
                        res.disconnect = "low_score"
                        return res
                    continue
            mid = sha(body).digest()
            prior = first_sight(mid, Verdict.ACCEPT, now)
            if prior is not None:
                res.duplicates += 1
                if prior == Verdict.REJECT and score.on_invalid(now):
                    res.disconnect = "low_score"
                    return res
                continue
            try:
                verdict = validate(peer, kind, body)
            except Exception as e:  # the node's bug must not let a peer crash the host
                verdict = Verdict.IGNORE
                res.validator_errors.append(repr(e))
            if verdict == Verdict.ACCEPT:
                score.first += 1.0
                accepted.append((kind, body, origin, mid))
            elif verdict == Verdict.REJECT:
                set_verdict(mid, Verdict.REJECT)
                res.rejected += 1
                if score.on_invalid(now):
                    res.disconnect = "low_score"
                    return res
            else:
                set_verdict(mid, Verdict.IGNORE)
                res.ignored += 1
        return res
