"""User transactions: orders, cancels, batches, transfers, withdrawals and oracle prices.

Theory of operation: a trader (or, for oracle prices, a validator) builds a *body* — one of
:data:`TX_BODIES` — and signs it, giving a :class:`SignedTx`. Every body starts with the same
header: ``signer`` (Ed25519 public key, the account), ``nonce`` (any uint64 the signer has not
used within the expiry window; wallets pick time-based random nonces so concurrent wallets of
one account never collide) and ``expiry_height`` (the last block height at which the body may be
included). The pair (signer, nonce) is the replay key, remembered until expiry.

Orders, cancels and batches all carry *actions* (:class:`PlaceOrder`, :class:`CancelOrder`,
:class:`CancelAll`; in batches also :class:`PlaceTrigger`, :class:`ModifyOrder` and
:class:`ScheduleCancel`): an ``Order`` body holds one placement, a ``Cancel`` one cancel, a
``Batch`` up to ``MAX_BATCH_ACTIONS`` applied atomically. ``body.actions()`` gives the exchange
one uniform view. Prices are integer ticks, sizes integer lots, money integer quote atoms.
Semantic checks (price > 0, market exists, tick multiples, margin) belong to the mempool rules,
which return reason codes; this module only fixes the shape.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from . import limits
from .codec import (
    U32,
    U64,
    Bool,
    Bytes,
    Enum,
    ListOf,
    OneOf,
    Struct,
    VarBytes,
    decode,
    field,
    validate_fields,
    wire,
)
from .crypto import (
    DOMAIN_BATCH,
    DOMAIN_CANCEL,
    DOMAIN_ORACLE,
    DOMAIN_ORDER,
    DOMAIN_TRANSFER,
    DOMAIN_WITHDRAW,
    Signer,
    sha256,
    signing_bytes,
    verify,
)

Key = Bytes(32)
Signature = Bytes(64)


class Side(enum.IntEnum):
    BUY = 0
    SELL = 1


class OrderType(enum.IntEnum):
    LIMIT = 0
    MARKET = 1
    """A market order's ``price`` is its worst acceptable price (a limit on slippage)."""


class TimeInForce(enum.IntEnum):
    GTC = 0
    """Good-til-cancelled: the unfilled rest joins the book."""
    IOC = 1
    """Immediate-or-cancel: the unfilled rest is dropped. Market orders are always IOC."""
    POST_ONLY = 2
    """Rejected (not placed) if any part would cross the book on arrival."""


class _Validated(Struct):
    __slots__ = ()

    def __post_init__(self) -> None:
        validate_fields(self)


# --------------------------------------------------------------------------- actions


@wire(1)
@dataclass(frozen=True, slots=True)
class PlaceOrder(_Validated):
    market: int = field(U32)
    side: Side = field(Enum(Side))
    order_type: OrderType = field(Enum(OrderType))
    time_in_force: TimeInForce = field(Enum(TimeInForce))
    reduce_only: bool = field(Bool)
    price: int = field(U64)
    """Limit price in ticks (for a market order, the worst price accepted)."""
    size: int = field(U64)
    """Size in lots."""
    client_id: int = field(U64)
    """Chosen by the trader, unique among its open orders; cancels refer to it."""


@wire(2)
@dataclass(frozen=True, slots=True)
class CancelOrder(_Validated):
    market: int = field(U32)
    client_id: int = field(U64)


@wire(3)
@dataclass(frozen=True, slots=True)
class CancelAll(_Validated):
    market: int = field(U32)


class TriggerKind(enum.IntEnum):
    """Which way the mark must move to fire a trigger, relative to the order's side."""

    STOP = 0
    """A buy fires when the mark rises to the trigger, a sell when it falls to it (stop-loss
    on a short or a long; a breakout entry)."""
    TAKE_PROFIT = 1
    """A buy fires when the mark falls to the trigger, a sell when it rises to it."""


class Attach(enum.IntEnum):
    """What a trigger belongs to (take-profit / stop-loss groups)."""

    NONE = 0
    """A trigger of its own."""
    POSITION = 1
    """TP/SL of the signer's position in the market: reduce-only; size 0 means the whole
    position when it fires; cancelled when the position is closed; the first of the group to
    fire cancels the others (one-cancels-other)."""
    ORDER = 2
    """TP/SL of an order placed earlier in the same batch (``parent_client_id``): dormant until
    the parent first fills, cancelled if it leaves the book unfilled; then as ``POSITION``,
    one-cancels-other among the parent's children; size 0 means the parent's size."""


@wire(5)
@dataclass(frozen=True, slots=True)
class PlaceTrigger(_Validated):
    """An order that rests untriggered until the mark price reaches ``trigger_price``, then
    enters as a limit order at ``price`` or, for a market order (``price`` 0), as an IOC
    bounded by the market's trigger slippage from the mark."""

    market: int = field(U32)
    side: Side = field(Enum(Side))
    kind: TriggerKind = field(Enum(TriggerKind))
    order_type: OrderType = field(Enum(OrderType))
    reduce_only: bool = field(Bool)
    trigger_price: int = field(U64)
    """Mark price in ticks at which the order fires."""
    price: int = field(U64)
    """Limit price in ticks once fired; 0 for a market order."""
    size: int = field(U64)
    client_id: int = field(U64)
    """Shares the namespace of the signer's open orders in the market; cancels refer to it."""
    attach: Attach = field(Enum(Attach), default=Attach.NONE)
    parent_client_id: int = field(U64, default=0)
    """With ``attach = ORDER``: the client id of the parent placed earlier in the batch."""


@wire(6)
@dataclass(frozen=True, slots=True)
class ModifyOrder(_Validated):
    """Change a resting order's price and/or its remaining size in one action. Same price and
    a smaller (or equal) size keeps its place in the queue; anything else re-queues it."""

    market: int = field(U32)
    client_id: int = field(U64)
    price: int = field(U64)
    size: int = field(U64)
    """The new remaining size in lots."""
    post_only: bool = field(Bool)
    """A re-queued order is post-only (refused if it would cross; the original stays)."""


@wire(7)
@dataclass(frozen=True, slots=True)
class ScheduleCancel(_Validated):
    """Dead man's switch: every open order and trigger of the signer is cancelled in the first
    block above ``height``, unless a later schedule replaces this one; 0 clears it."""

    height: int = field(U64)


Action = PlaceOrder | CancelOrder | CancelAll | PlaceTrigger | ModifyOrder | ScheduleCancel
ACTION_KINDS = OneOf(PlaceOrder, CancelOrder, CancelAll, PlaceTrigger, ModifyOrder, ScheduleCancel)
CANCEL_KINDS = OneOf(CancelOrder, CancelAll)


@wire(4)
@dataclass(frozen=True, slots=True)
class MarketPrice(_Validated):
    market: int = field(U32)
    price: int = field(U64)
    """Observed index price in the market's ticks."""


# --------------------------------------------------------------------------- bodies


class TxBody(_Validated):
    """Common header of every signed body. ``DOMAIN`` is the signature domain of the kind."""

    __slots__ = ()
    DOMAIN: ClassVar[bytes]
    signer: bytes
    nonce: int
    expiry_height: int

    def actions(self) -> tuple[Action, ...]:
        """Order-book actions this body performs (empty for transfers and oracle prices)."""
        return ()

    def sign(self, signer: Signer, chain_id: bytes) -> SignedTx:
        if signer.public_key != self.signer:
            raise ValueError("signing key does not match the body's signer")
        return SignedTx(self, signer.sign(self.DOMAIN, chain_id, self.encode()))


@wire(10)
@dataclass(frozen=True, slots=True)
class Order(TxBody):
    DOMAIN: ClassVar[bytes] = DOMAIN_ORDER
    signer: bytes = field(Key)
    nonce: int = field(U64)
    expiry_height: int = field(U64)
    place: PlaceOrder = field(OneOf(PlaceOrder))

    def actions(self) -> tuple[Action, ...]:
        return (self.place,)


@wire(11)
@dataclass(frozen=True, slots=True)
class Cancel(TxBody):
    DOMAIN: ClassVar[bytes] = DOMAIN_CANCEL
    signer: bytes = field(Key)
    nonce: int = field(U64)
    expiry_height: int = field(U64)
    cancel: CancelOrder | CancelAll = field(CANCEL_KINDS)

    def actions(self) -> tuple[Action, ...]:
        return (self.cancel,)


@wire(12)
@dataclass(frozen=True, slots=True)
class Batch(TxBody):
    """Up to MAX_BATCH_ACTIONS actions by one signer: all admissible and applied, or none."""

    DOMAIN: ClassVar[bytes] = DOMAIN_BATCH
    signer: bytes = field(Key)
    nonce: int = field(U64)
    expiry_height: int = field(U64)
    batch: tuple[Action, ...] = field(ListOf(ACTION_KINDS, limits.MAX_BATCH_ACTIONS, min_len=1))

    def actions(self) -> tuple[Action, ...]:
        return self.batch


@wire(13)
@dataclass(frozen=True, slots=True)
class Transfer(TxBody):
    """Move collateral between two accounts of the exchange."""

    DOMAIN: ClassVar[bytes] = DOMAIN_TRANSFER
    signer: bytes = field(Key)
    nonce: int = field(U64)
    expiry_height: int = field(U64)
    to: bytes = field(Key)
    amount: int = field(U64)
    """Quote atoms."""


@wire(14)
@dataclass(frozen=True, slots=True)
class Withdraw(TxBody):
    """Take collateral out of the exchange to an external destination (leaves the ledger)."""

    DOMAIN: ClassVar[bytes] = DOMAIN_WITHDRAW
    signer: bytes = field(Key)
    nonce: int = field(U64)
    expiry_height: int = field(U64)
    amount: int = field(U64)
    destination: bytes = field(VarBytes(limits.MAX_WITHDRAW_DESTINATION_BYTES))


@wire(15)
@dataclass(frozen=True, slots=True)
class OraclePrice(TxBody):
    """A validator's signed index-price observations, carried in blocks."""

    DOMAIN: ClassVar[bytes] = DOMAIN_ORACLE
    signer: bytes = field(Key)
    nonce: int = field(U64)
    expiry_height: int = field(U64)
    prices: tuple[MarketPrice, ...] = field(
        ListOf(OneOf(MarketPrice), limits.MAX_ORACLE_PRICES, min_len=1)
    )


TX_BODIES: tuple[type[TxBody], ...] = (Order, Cancel, Batch, Transfer, Withdraw, OraclePrice)
TX_BODY_KINDS = OneOf(*TX_BODIES)


@wire(20)
@dataclass(frozen=True, slots=True)
class SignedTx(_Validated):
    """A body and its signer's Ed25519 signature under the body kind's domain."""

    body: TxBody = field(TX_BODY_KINDS)
    signature: bytes = field(Signature)

    def signing_bytes(self, chain_id: bytes) -> bytes:
        return signing_bytes(self.body.DOMAIN, chain_id, self.body.encode())

    def tx_id(self, chain_id: bytes) -> bytes:
        """SHA-256 of the signed bytes: names the action on this chain, whoever relays it."""
        return sha256(self.signing_bytes(chain_id))

    def verify(self, chain_id: bytes) -> bytes:
        """Check the signature; return the tx id. Raises ``SignatureError``."""
        return _verify_body(self.body, self.body.encode(), self.signature, chain_id)


def _verify_body(body: TxBody, body_bytes: bytes, signature: bytes, chain_id: bytes) -> bytes:
    verify(body.signer, signature, body.DOMAIN, chain_id, body_bytes)
    return sha256(signing_bytes(body.DOMAIN, chain_id, body_bytes))


# A canonical SignedTx is exactly: 0x83 (array of 3), 0x14 (tag 20), <body>, 0x58 0x40 <64 bytes>.
_SIGNED_TX_PREFIX = b"\x83\x14"
_SIGNATURE_HEADER = b"\x58\x40"
assert SignedTx.WIRE_TAG == 0x14


def decode_tx(data: bytes) -> SignedTx:
    """Strictly decode one signed transaction from the wire or the RPC."""
    return decode(data, SignedTx, max_bytes=limits.MAX_TX_BYTES)


def _decode_signed(data: bytes) -> tuple[SignedTx, bytes]:
    """Decode strictly; return the transaction and its body's bytes, a slice of ``data``."""
    tx = decode_tx(data)
    assert data[:2] == _SIGNED_TX_PREFIX and data[-66:-64] == _SIGNATURE_HEADER
    return tx, data[2:-66]


def decode_tx_with_id(data: bytes, chain_id: bytes) -> tuple[SignedTx, bytes]:
    """Decode strictly and return (tx, tx id) *without* checking the signature: for bytes
    whose signature was checked already (a gossiped copy the validator passed) or is checked
    later, if at all (a node's own journal, mostly included by the time it is read again)."""
    tx, body_bytes = _decode_signed(data)
    return tx, sha256(signing_bytes(tx.body.DOMAIN, chain_id, body_bytes))


def decode_and_verify_tx(data: bytes, chain_id: bytes) -> tuple[SignedTx, bytes]:
    """Decode strictly and verify the signature; return (tx, tx id).

    The hot path of the mempool: after the canonical check the body's bytes are a slice of
    ``data`` (see ``_SIGNED_TX_PREFIX``), so nothing is re-encoded.
    """
    tx, body_bytes = _decode_signed(data)
    return tx, _verify_body(tx.body, body_bytes, tx.signature, chain_id)
