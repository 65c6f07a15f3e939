"""Application frames inside a secure session: kinds, per-kind size limits, coalescing.

Theory of operation: after the Noise handshake each direction of a connection carries one
plaintext *stream* of frames, cut into Noise transport records (see ``noise_session``). A frame
is

    kind (1 byte) || body length (4 bytes, big-endian) || body

and may span several records (a 2 MiB proposal spans ~33), while one record usually carries many
small frames (hundreds of orders). :class:`FrameDecoder` is sans-I/O: it is fed decrypted bytes
and returns whole frames. It checks the kind and the declared length against
:data:`MAX_FRAME_BYTES` as soon as the 5-byte header is available, *before* any of the body is
buffered, so a peer can never make us hold more than one frame's limit. :func:`coalesce` is the
sender's half: it joins queued frames into one plaintext run, which ``noise_session`` seals into
as few records as possible and the peer task writes with one ``send_all``.
"""

from __future__ import annotations

import enum
import struct

from lockstep.consensus import limits

__all__ = [
    "FRAME_HEADER_BYTES",
    "MAX_FRAME_BYTES",
    "FrameDecoder",
    "FrameError",
    "FrameTooLarge",
    "Kind",
    "Priority",
    "TruncatedFrame",
    "UnknownFrameKind",
    "encode_frame",
    "priority_of",
]


class Kind(enum.IntEnum):
    """What a frame carries. The byte values are part of the protocol (docs/protocol/network.md)."""

    PING = 1
    PONG = 2
    GOODBYE = 3
    PEERS = 4
    """The sender's current set of connected peers (see gossip: relay only where needed)."""
    IHAVE = 5
    """Ids (32-byte SHA-256, concatenated) of orders the sender accepted lately: lazy repair."""
    IWANT = 6
    """Ids (concatenated) of orders from an IHAVE that the sender lacks; answered by TX_RELAYs."""
    TX = 16
    """Gossip: one ``SignedTx`` (an order, cancel, ...). Validated, de-duplicated, forwarded."""
    CONSENSUS = 17
    """Gossip: one consensus message (proposal, vote, timeout, ticket); opaque bytes here."""
    DIRECT = 18
    """Point-to-point consensus message (e.g. a vote to the next leader); never forwarded."""
    TX_RELAY = 19
    """A ``TX`` forwarded by a relay: body = origin's Ed25519 key (32 bytes) || the order."""
    SYNC_REQUEST = 32
    SYNC_RESPONSE = 33


GOSSIP_KINDS = frozenset({Kind.TX, Kind.CONSENSUS})
"""Kinds the node may ``Host.broadcast``; they are validated, de-duplicated and forwarded."""

APP_KINDS = frozenset({Kind.TX, Kind.CONSENSUS, Kind.DIRECT})
"""Kinds the node sends with ``Host.broadcast`` / ``Host.send`` and receives on ``inbound``."""

VALIDATED_KINDS = frozenset({Kind.TX, Kind.CONSENSUS, Kind.DIRECT, Kind.TX_RELAY})
"""Kinds received through the gossip rules (rate limits, seen-cache, validator)."""

ORIGIN_BYTES = 32
"""Ed25519 key of the originating node at the front of a ``TX_RELAY`` body."""

MESSAGE_ID_BYTES = 32
"""SHA-256 of a gossip body (``gossip.message_id``)."""

MAX_IHAVE_IDS = 4096
"""Ids per IHAVE: ~0.25 s of orders at the 16k/s one core can verify (GossipSub caps its
IHAVE at 5000 ids)."""

MAX_IWANT_IDS = 1024
"""Ids per IWANT; a node missing more than this is better served by the next IHAVE round."""

MAX_PEERS_ANNOUNCED = 1024
"""Keys in one ``PEERS`` frame: every validator (``limits.MAX_VALIDATORS``) and observers."""

MAX_SYNC_REQUEST_BYTES = 4 * 1024
"""A sync request names a height range; 4 KiB leaves room for the node's own request format."""

MAX_SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
"""Several maximal blocks (``limits.MAX_BLOCK_BYTES`` = 2 MiB) with certificates per answer.
Bounds the head-of-line delay a sync answer adds to consensus frames on the same connection
(8 MiB is ~10 ms of ChaCha20-Poly1305 here)."""

_ENVELOPE_OVERHEAD = 64
"""CBOR array header, type tag, request id and byte-string header around a sync payload."""

MAX_FRAME_BYTES: dict[int, int] = {
    Kind.PING: 32,
    Kind.PONG: 32,
    Kind.GOODBYE: 256,
    Kind.PEERS: MAX_PEERS_ANNOUNCED * 34 + 16,
    Kind.IHAVE: MAX_IHAVE_IDS * MESSAGE_ID_BYTES,
    Kind.IWANT: MAX_IWANT_IDS * MESSAGE_ID_BYTES,
    Kind.TX: limits.MAX_TX_BYTES,
    Kind.TX_RELAY: ORIGIN_BYTES + limits.MAX_TX_BYTES,
    Kind.CONSENSUS: limits.MAX_MESSAGE_BYTES,
    Kind.DIRECT: limits.MAX_MESSAGE_BYTES,
    Kind.SYNC_REQUEST: MAX_SYNC_REQUEST_BYTES + _ENVELOPE_OVERHEAD,
    Kind.SYNC_RESPONSE: MAX_SYNC_RESPONSE_BYTES + _ENVELOPE_OVERHEAD,
}
"""Largest body per kind, enforced on the header before the body is read."""

MAX_ANY_FRAME_BYTES = max(MAX_FRAME_BYTES.values())

FRAME_HEADER_BYTES = 5
_HEADER = struct.Struct(">BI")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from


class Priority(enum.IntEnum):
    """Send queue classes, drained in this order (lower first) by the peer's writer."""

    CONTROL = 0
    """Consensus, direct messages, keepalive, sync requests: never wait behind order gossip."""
    TX = 1
    """Order gossip: bounded, dropped for a peer that cannot keep up."""
    BULK = 2
    """Sync responses: large, sent when nothing more urgent is queued."""


_PRIORITY = {
    Kind.PING: Priority.CONTROL,
    Kind.PONG: Priority.CONTROL,
    Kind.GOODBYE: Priority.CONTROL,
    Kind.PEERS: Priority.CONTROL,
    Kind.IHAVE: Priority.TX,
    Kind.IWANT: Priority.TX,
    Kind.CONSENSUS: Priority.CONTROL,
    Kind.DIRECT: Priority.CONTROL,
    Kind.SYNC_REQUEST: Priority.CONTROL,
    Kind.TX: Priority.TX,
    Kind.TX_RELAY: Priority.TX,
    Kind.SYNC_RESPONSE: Priority.BULK,
}


def priority_of(kind: int) -> Priority:
    return _PRIORITY[kind]  # type: ignore[index]


class FrameError(Exception):
    """The peer broke the frame layer. Always the peer's fault; the connection is closed.

    ``reason`` is the short code logged with the disconnect (``peer_disconnected reason=...``).
    """

    reason = "bad_frame"


class UnknownFrameKind(FrameError):
    reason = "unknown_frame_kind"

    def __init__(self, kind: int) -> None:
        super().__init__(f"unknown frame kind {kind}")
        self.kind = kind


class FrameTooLarge(FrameError):
    reason = "frame_too_large"

    def __init__(self, kind: int, length: int, limit: int) -> None:
        super().__init__(f"frame kind {kind} declares {length} bytes, limit {limit}")
        self.kind, self.length, self.limit = kind, length, limit


class TruncatedFrame(FrameError):
    reason = "truncated_frame"

    def __init__(self, buffered: int) -> None:
        super().__init__(f"stream ended inside a frame ({buffered} bytes buffered)")
        self.buffered = buffered


def encode_frame(kind: int, body: bytes) -> bytes:
    """Header and body of one frame. Our own sends: the caller checked the size limit."""
    return _pack_header(kind, len(body)) + body


class FrameDecoder:
    """Sans-I/O frame parser: ``feed(plaintext) -> [(kind, body), ...]``.

    Holds at most one partial frame, never more than its kind's limit plus one header.
    """

    __slots__ = ("_buf", "_limits", "_need")

    def __init__(self, max_frame_bytes: dict[int, int] | None = None) -> None:
        self._buf = bytearray()
        self._limits = MAX_FRAME_BYTES if max_frame_bytes is None else max_frame_bytes
        self._need = FRAME_HEADER_BYTES
        """Bytes the buffer must hold before the next frame can be cut (header or whole)."""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        if len(buf) < self._need:
            if len(buf) >= FRAME_HEADER_BYTES:
                self._check_header(buf, 0)
            return []
        out: list[tuple[int, bytes]] = []
        append = out.append
        limits_ = self._limits
        pos = 0
        end = len(buf)
        while end - pos >= FRAME_HEADER_BYTES:
            kind, length = _unpack_header(buf, pos)
            limit = limits_.get(kind)
            if limit is None or length > limit:
                self._check_header(buf, pos)
            start = pos + FRAME_HEADER_BYTES
            stop = start + length
            if stop > end:
                break
            append((kind, bytes(buf[start:stop])))
            pos = stop
        del buf[:pos]
        left = len(buf)
        if left >= FRAME_HEADER_BYTES:
            self._need = FRAME_HEADER_BYTES + _unpack_header(buf, 0)[1]
        else:
            self._need = FRAME_HEADER_BYTES
        return out

    def _check_header(self, buf: bytearray, pos: int) -> None:
        kind, length = _unpack_header(buf, pos)
        limit = self._limits.get(kind)
        if limit is None:
            raise UnknownFrameKind(kind)
        if length > limit:
            raise FrameTooLarge(kind, length, limit)

    def close(self) -> None:
        """The stream ended: raise :class:`TruncatedFrame` if a frame was cut off."""
        if self._buf:
            raise TruncatedFrame(len(self._buf))
