"""Block sync: wire messages and the bookkeeping of what a replica is fetching.

Theory of operation: a replica only ever needs blocks it has a *certificate* for (a QC in a
proposal's ``justify``, a timeout's high QC, a TC's high QC) or blocks below such a block. The
QC fixes the hash; the hash fixes the block, and each block's ``parent_hash`` fixes its parent,
so a response needs no signatures of its own: the requester checks every returned block hashes
to what it asked for, walking down. ``BlockRequest(hash, n)`` asks for the block with that hash
and up to ``n - 1`` of its ancestors (newest first); the requester repeats from the oldest
returned block's parent until it reaches a block it holds. ``CommittedRequest(height, n)`` asks
for committed blocks from a height upward, each with the QC that certifies it, for a node
that restarts far behind (the node layer uses it; the core uses hash requests).

``SyncInfo`` carries a replica's highest QC and TC: sent to a peer that shows it is behind
(a stale timeout or vote), it lets the peer jump to the current view.

:class:`Fetcher` remembers outstanding requests so a replica does not flood peers, retries
after ``SYNC_RETRY_MS`` on another peer, and bounds how many fetches are in flight.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import cbor2

from .codec import U16, U64, Bytes, ListOf, OneOf, Optional, Struct, field, validate_fields, wire
from .messages import Block, QuorumCert, TimeoutCert

__all__ = [
    "MAX_SYNC_BLOCKS",
    "SYNC_RETRY_MS",
    "BlockRequest",
    "BlockResponse",
    "CommittedBlock",
    "CommittedRequest",
    "CommittedResponse",
    "Fetcher",
    "SyncInfo",
    "block_response_bytes",
    "committed_response_bytes",
    "sync_block_bytes",
]

MAX_SYNC_BLOCKS = 32
"""Blocks per sync response: 32 × 2 MiB worst case; typical blocks are a few KiB."""

MAX_SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
"""A responder stops adding blocks once a response would pass this size (always sends one)."""

SYNC_RETRY_MS = 500
"""An unanswered request is re-sent (to the next peer) after this long at most; the replica
uses half the base view timeout when that is shorter (the default genesis gives 500 ms)."""

MAX_INFLIGHT_FETCHES = 64
"""Outstanding block fetches per replica; more wait for one to finish."""

MAX_FETCH_ATTEMPTS = 16
"""A block nobody serves after this many tries is forgotten (it was on an abandoned fork);
it is asked for again if a certificate names it again."""


class _Checked(Struct):
    __slots__ = ()

    def __post_init__(self) -> None:
        validate_fields(self)


@wire(61)
@dataclass(frozen=True, slots=True)
class CommittedBlock(_Checked):
    """A committed block and the QC that certifies it (its child's ``justify``)."""

    block: Block = field(OneOf(Block))
    qc: QuorumCert = field(OneOf(QuorumCert))


@wire(62)
@dataclass(frozen=True, slots=True)
class BlockRequest(_Checked):
    block_hash: bytes = field(Bytes(32))
    max_blocks: int = field(U16)


@wire(63)
@dataclass(frozen=True, slots=True)
class BlockResponse(_Checked):
    """The requested block then its ancestors, newest first; empty if unknown."""

    block_hash: bytes = field(Bytes(32))
    blocks: tuple[Block, ...] = field(ListOf(OneOf(Block), MAX_SYNC_BLOCKS))


@wire(64)
@dataclass(frozen=True, slots=True)
class SyncInfo(_Checked):
    high_qc: QuorumCert = field(OneOf(QuorumCert))
    high_tc: TimeoutCert | None = field(Optional(OneOf(TimeoutCert)))


@wire(65)
@dataclass(frozen=True, slots=True)
class CommittedRequest(_Checked):
    from_height: int = field(U64)
    max_blocks: int = field(U16)


@wire(66)
@dataclass(frozen=True, slots=True)
class CommittedResponse(_Checked):
    """Committed blocks from the requested height upward, each with its certifying QC."""

    committed: tuple[CommittedBlock, ...] = field(ListOf(OneOf(CommittedBlock), MAX_SYNC_BLOCKS))


SYNC_MESSAGES = (BlockRequest, BlockResponse, SyncInfo, CommittedRequest, CommittedResponse)


def _array_head(n: int) -> bytes:
    """The canonical CBOR head of an array of ``n`` items (major type 4)."""
    if n < 24:
        return bytes([0x80 + n])
    if n < 0x100:
        return bytes([0x98, n])
    return b"\x99" + n.to_bytes(2, "big")  # sync responses hold at most MAX_SYNC_BLOCKS


def block_response_bytes(block_hash: bytes, blocks: Sequence[bytes]) -> bytes:
    """``BlockResponse(block_hash, blocks).encode()``, from the blocks' stored encodings.

    A CBOR array is its head followed by its items' encodings, so a response built from the
    canonical bytes the node stored is itself canonical: serving sync costs no decode and no
    re-encode of blocks that can be megabytes."""
    assert len(blocks) <= MAX_SYNC_BLOCKS
    return (
        BlockResponse(block_hash, ()).encode()[:-1] + _array_head(len(blocks)) + b"".join(blocks)
    )


_COMMITTED_HEAD = b"\x83" + cbor2.dumps(CommittedBlock.WIRE_TAG)
"""A CommittedBlock's array head (3 items: tag, block, QC) and its tag."""


def committed_response_bytes(committed: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``CommittedResponse`` of stored (block, QC) encodings, spliced as above."""
    assert len(committed) <= MAX_SYNC_BLOCKS
    parts = [CommittedResponse(()).encode()[:-1], _array_head(len(committed))]
    for block, qc in committed:
        parts += (_COMMITTED_HEAD, block, qc)
    return b"".join(parts)


def sync_block_bytes(msg: BlockResponse | CommittedResponse, payload: bytes) -> list[bytes]:
    """The inverse of the splices above: the slice of ``payload`` that encodes each block of
    ``msg``, which was strictly decoded from ``payload``.

    Strict decoding proved ``payload`` canonical, so each block's slice is that block's
    canonical encoding: the node remembers it, and hashing and storing a block fetched during a
    catch-up re-encode nothing. Each block's end is found by letting cbor2 skip over it."""
    fp = io.BytesIO(payload)
    skip = cbor2.CBORDecoder(fp).decode
    if type(msg) is BlockResponse:
        count, head, between = len(msg.blocks), BlockResponse(msg.block_hash, ()), b""
    else:
        count, head, between = len(msg.committed), CommittedResponse(()), _COMMITTED_HEAD
    fp.seek(len(head.encode()) - 1 + len(_array_head(count)))
    out: list[bytes] = []
    for _ in range(count):
        start = fp.tell() + len(between)
        fp.seek(start)
        skip()
        out.append(payload[start : fp.tell()])
        if between:
            skip()  # the QC
    return out


class Fetcher:
    """Outstanding block fetches: hash → (peer asked, when). Pure bookkeeping."""

    def __init__(self, n_peers: int, self_index: int | None, retry_ms: int = SYNC_RETRY_MS) -> None:
        self.n_peers = n_peers
        self.self_index = self_index
        self.retry_ms = retry_ms
        self.pending: dict[bytes, tuple[int, int, int]] = {}
        """hash → (peer, sent_at_ms, attempt)."""

    def _peer(self, preferred: int, attempt: int) -> int:
        peer = (preferred + attempt) % self.n_peers
        if peer == self.self_index and self.n_peers > 1:
            peer = (peer + 1) % self.n_peers
        return peer

    def want(self, block_hash: bytes, preferred: int, now_ms: int) -> BlockRequest | None:
        """Return a request to send to ``self.pending[hash][0]``, or None if one is in flight."""
        entry = self.pending.get(block_hash)
        if entry is not None:
            _, sent, attempt = entry
            if now_ms - sent < self.retry_ms:
                return None
            attempt += 1
            if attempt >= MAX_FETCH_ATTEMPTS:
                del self.pending[block_hash]
                return None
        else:
            if len(self.pending) >= MAX_INFLIGHT_FETCHES:
                return None
            attempt = 0
        self.pending[block_hash] = (self._peer(preferred, attempt), now_ms, attempt)
        return BlockRequest(block_hash, MAX_SYNC_BLOCKS)

    def peer_for(self, block_hash: bytes) -> int:
        return self.pending[block_hash][0]

    def done(self, block_hash: bytes) -> None:
        self.pending.pop(block_hash, None)

    def retries_due(self, now_ms: int) -> list[bytes]:
        return [h for h, (_, sent, _) in self.pending.items() if now_ms - sent >= self.retry_ms]

    def refused(self, block_hash: bytes) -> None:
        """The asked peer does not have it: make the next ``want`` ask the next peer now."""
        entry = self.pending.get(block_hash)
        if entry is not None:
            peer, _, attempt = entry
            self.pending[block_hash] = (peer, -(10**12), attempt)

    def next_due_ms(self) -> int | None:
        if not self.pending:
            return None
        return min(sent for _, sent, _ in self.pending.values()) + self.retry_ms


def committed_from_store(
    stored: Sequence[CommittedBlock], req: CommittedRequest
) -> CommittedResponse:
    """The answer to ``req`` from a node's block store, where ``stored[h - 1]`` is height h.

    A node answers committed-block requests from its store, not from its replica (the replica
    keeps only recent blocks whole), so a peer any distance behind can catch up. The daemon
    does this against SQLite; the simulator and tests, against the commits they recorded."""
    first = max(1, req.from_height)
    out = tuple(stored[first - 1 : first - 1 + min(req.max_blocks, MAX_SYNC_BLOCKS)])
    assert not out or out[0].block.height == first, "stored commits are not indexed by height"
    return CommittedResponse(out)
