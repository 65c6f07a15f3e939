"""Net-level wire objects: the handshake identity payload and the request/response envelopes.

Theory of operation: the hot gossip kinds (``Kind.TX``, ``Kind.CONSENSUS``, ``Kind.DIRECT``) carry
the node's bytes verbatim as the frame body — a signed transaction or a consensus message, which
the node decodes strictly itself — so the net layer decodes nothing per order. Everything the net
layer itself must understand is a canonical-CBOR ``@wire`` object defined here, with type tags in
the range 80–99 reserved for the net layer, and decoded with the strict codec (any malformed or
non-canonical body is the peer's fault and closes the connection).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from lockstep.consensus import limits
from lockstep.consensus.codec import (
    U16,
    U64,
    Bytes,
    Enum,
    ListOf,
    Struct,
    Text,
    VarBytes,
    decode,
    field,
    validate_fields,
    wire,
)

from .framing import (
    MAX_FRAME_BYTES,
    MAX_PEERS_ANNOUNCED,
    MAX_SYNC_REQUEST_BYTES,
    MAX_SYNC_RESPONSE_BYTES,
    Kind,
)

__all__ = [
    "MAX_SYNC_BLOCKS",
    "BlockRangeRequest",
    "BlockRangeResponse",
    "Goodbye",
    "Hello",
    "Identity",
    "NoiseStaticKey",
    "PeerSet",
    "Ping",
    "Pong",
    "SyncRequest",
    "SyncResponse",
    "SyncStatus",
]

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change of frames, kinds or envelopes."""

MAX_SYNC_BLOCKS = 128
"""Blocks in one range answer: ~6 s of blocks at the 50 ms block interval of the default timing."""


T = TypeVar("T", bound=Struct)


class _Validated(Struct):
    __slots__ = ()

    def __post_init__(self) -> None:
        validate_fields(self)


@wire(80)
@dataclass(frozen=True, slots=True)
class Hello(_Validated):
    """Payload of Noise XX message 1 (sent in the clear, but hashed into the handshake).

    Lets a responder on another chain refuse with a precise reason before spending a DH; the
    prologue binds the chain id cryptographically either way.
    """

    version: int = field(U16)
    chain_id: bytes = field(Bytes(32))


@wire(81)
@dataclass(frozen=True, slots=True)
class NoiseStaticKey(_Validated):
    """What the identity signature covers (under ``DOMAIN_HANDSHAKE`` and the chain id)."""

    static_key: bytes = field(Bytes(32))


@wire(82)
@dataclass(frozen=True, slots=True)
class Identity(_Validated):
    """Payload of Noise XX messages 2 and 3 (encrypted): who owns the Noise static key.

    ``signature`` is the Ed25519 signature of ``identity_key`` over
    ``DOMAIN_HANDSHAKE || chain id || CBOR(NoiseStaticKey(sender's Noise static key))``, as
    libp2p's Noise handshake binds its static key to the libp2p identity key.
    """

    identity_key: bytes = field(Bytes(32))
    signature: bytes = field(Bytes(64))


@wire(83)
@dataclass(frozen=True, slots=True)
class Ping(_Validated):
    nonce: int = field(U64)


@wire(84)
@dataclass(frozen=True, slots=True)
class Pong(_Validated):
    nonce: int = field(U64)


@wire(85)
@dataclass(frozen=True, slots=True)
class Goodbye(_Validated):
    """Sent before an orderly close so the peer logs why (``reason`` is a short code)."""

    reason: str = field(Text(64))


@wire(90)
@dataclass(frozen=True, slots=True)
class PeerSet(_Validated):
    """The Ed25519 keys the sender has a session with, sent whenever that set changes."""

    keys: tuple[bytes, ...] = field(ListOf(Bytes(32), MAX_PEERS_ANNOUNCED))


class SyncStatus(enum.IntEnum):
    OK = 0
    BUSY = 1
    """Too many of this peer's requests are being served; retry later or ask another peer."""
    ERROR = 2
    """The serving node could not answer (no handler, handler failed, answer too large)."""


@wire(86)
@dataclass(frozen=True, slots=True)
class SyncRequest(_Validated):
    request_id: int = field(U64)
    payload: bytes = field(VarBytes(MAX_SYNC_REQUEST_BYTES))


@wire(87)
@dataclass(frozen=True, slots=True)
class SyncResponse(_Validated):
    request_id: int = field(U64)
    status: SyncStatus = field(Enum(SyncStatus))
    payload: bytes = field(VarBytes(MAX_SYNC_RESPONSE_BYTES))


@wire(88)
@dataclass(frozen=True, slots=True)
class BlockRangeRequest(_Validated):
    """Ask for committed blocks ``start_height .. start_height + max_blocks - 1``."""

    start_height: int = field(U64)
    max_blocks: int = field(U16)


@wire(89)
@dataclass(frozen=True, slots=True)
class BlockRangeResponse(_Validated):
    """Consecutive committed blocks from ``start_height``, each the node's certified-block bytes.

    Fewer than asked means the server has no more (or hit ``MAX_SYNC_RESPONSE_BYTES``).
    """

    start_height: int = field(U64)
    blocks: tuple[bytes, ...] = field(ListOf(VarBytes(limits.MAX_MESSAGE_BYTES), MAX_SYNC_BLOCKS))


def decode_envelope(data: bytes, cls: type[T], kind: Kind) -> T:
    """Strictly decode a net-level body of frame ``kind`` (raises ``CodecError``)."""
    return decode(data, cls, max_bytes=MAX_FRAME_BYTES[kind])
