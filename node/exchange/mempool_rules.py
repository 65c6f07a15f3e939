"""Admission rules for signed transactions, and the reason codes every rejection carries.

Theory of operation: a transaction is *admissible* when three groups of rules hold, checked
cheapest first so junk costs little:

1. **Envelope** (:func:`check_envelope`): the bytes decode strictly and the Ed25519 signature
   verifies under the body's domain and this chain's id (``decode_and_verify_tx``). A signature
   made on another chain or for another kind of body fails here, so "wrong chain" is
   ``BAD_SIGNATURE``.
2. **Static** (:func:`check_static`): rules that need only the genesis and the height: the
   expiry window, known markets, price and size bounds, order-type combinations, batch shape,
   oracle price ranges, amounts. Prices are integer ticks and sizes integer lots on the wire,
   so every price is a whole number of ticks and every size a whole number of lots by
   construction; the bounds checked are
   ``1 ≤ price ≤ max_price_ticks`` and ``min_size_lots ≤ size ≤ max_size_lots``.
3. **Stateful** (checked by the executor against the ledger): replay (signer, nonce) within the
   expiry window, the account exists and is not a system account, client order ids, open-order
   limits, margin, reduce-only and post-only.

The same functions run at the edge (RPC, gossip: nothing inadmissible is forwarded) and in block
execution (a finalized block may still carry a transaction that became inadmissible, such as an
expired or replayed one; it is skipped with its reason, deterministically, and the block goes
on). Every function here is pure: it returns a :class:`Reason`, ``Reason.OK`` when the rule holds.
"""

from __future__ import annotations

import enum

from lockstep.consensus import limits
from lockstep.consensus.actions import (
    Action,
    Attach,
    Batch,
    Cancel,
    ModifyOrder,
    OraclePrice,
    Order,
    OrderType,
    PlaceOrder,
    PlaceTrigger,
    ScheduleCancel,
    SignedTx,
    TimeInForce,
    Transfer,
    TxBody,
    Withdraw,
    decode_and_verify_tx,
)
from lockstep.consensus.codec import CodecError
from lockstep.consensus.crypto import SignatureError
from lockstep.consensus.genesis import Genesis, Market

__all__ = [
    "FEE_ACCOUNT",
    "INSURANCE_FUND",
    "SYSTEM_ACCOUNTS",
    "Reason",
    "check_action",
    "check_envelope",
    "check_modify",
    "check_schedule",
    "check_static",
    "check_trigger",
]


class Reason(enum.IntEnum):
    """Why a transaction or action was not applied. Values are part of the RPC and are stable."""

    OK = 0
    MALFORMED = 1
    """The bytes are not a canonical SignedTx (see the codec error for the field)."""
    BAD_SIGNATURE = 2
    """Signature does not verify for this body kind on this chain."""
    EXPIRED = 3
    """expiry_height is below the block height being built."""
    EXPIRY_TOO_FAR = 4
    """expiry_height is more than MAX_EXPIRY_WINDOW_BLOCKS ahead."""
    REPLAYED = 5
    """(signer, nonce) was already used and its expiry has not passed."""
    UNKNOWN_MARKET = 6
    PRICE_OUT_OF_RANGE = 7
    """Price is 0 or above the market's max_price_ticks."""
    SIZE_OUT_OF_RANGE = 8
    """Size is below min_size_lots or above max_size_lots."""
    INVALID_ORDER_TYPE = 9
    """A market order cannot be post-only."""
    UNKNOWN_ACCOUNT = 10
    """The signer holds no collateral account."""
    RESERVED_ACCOUNT = 11
    """The signer or recipient is a system account (insurance fund, fee account)."""
    DUPLICATE_CLIENT_ID = 12
    """The signer already has an open order with this client id in this market."""
    ORDER_NOT_FOUND = 13
    """Cancel of a client id with no open order."""
    TOO_MANY_OPEN_ORDERS = 14
    INSUFFICIENT_MARGIN = 15
    """Equity after the action would be below the initial margin requirement."""
    REDUCE_ONLY_WOULD_INCREASE = 16
    """A reduce-only order on the side that would grow (or open) the position."""
    POST_ONLY_WOULD_CROSS = 17
    NOT_A_VALIDATOR = 18
    """Oracle prices must be signed by a genesis validator."""
    DUPLICATE_MARKET = 19
    """An oracle transaction names one market twice."""
    ZERO_AMOUNT = 20
    INSUFFICIENT_BALANCE = 21
    """Transfer or withdrawal larger than the free collateral."""
    SELF_TRANSFER = 22
    BATCH_DUPLICATE_CLIENT_ID = 23
    """Two placements in one batch share (market, client id)."""
    # 24 is not used: a refused batch reports the failing action's own reason and index.
    NO_LIQUIDITY = 25
    """An IOC or market order found nothing to trade within its price (informational)."""
    SELF_TRADE = 26
    """Informational: a resting order was cancelled by self-trade prevention."""
    LIQUIDATION = 27
    """Informational: an order was cancelled because its owner is being liquidated."""
    CANCELLED = 28
    """Informational: an order was cancelled by its owner."""
    NEW_ACCOUNT_MINIMUM = 29
    """A transfer that creates an account must move at least MIN_NEW_ACCOUNT_ATOMS."""
    TRIGGER_WRONG_SIDE = 30
    """A trigger at or beyond the mark on the side it fires: it would fire at once (place an
    ordinary order instead)."""
    SCHEDULE_OUT_OF_RANGE = 31
    """A scheduled cancel below the block height or more than MAX_SCHEDULE_AHEAD_BLOCKS
    above it."""
    MODIFIED = 32
    """Informational: an order left its place in the queue because a modify re-queued it."""
    SCHEDULED_CANCEL = 33
    """Informational: an order or trigger was cancelled by its owner's dead man's switch."""
    INVALID_ATTACHMENT = 34
    """A TP/SL that is not reduce-only, names no parent placed earlier in the batch (on the
    other side, in its market), or has size 0 without a position or parent to size it."""
    PARENT_CANCELLED = 35
    """Informational: a TP/SL was cancelled because its parent left the book unfilled."""
    ONE_CANCELS_OTHER = 36
    """Informational: a TP/SL was cancelled because another of its group fired."""
    POSITION_CLOSED = 37
    """Informational: a TP/SL was cancelled because the position it protects is closed."""


INSURANCE_FUND = bytes(32)
"""The insurance fund's account key: an Ed25519 point of small order, which libsodium refuses to
verify for, so no one can sign as it (and admission refuses it anyway)."""
FEE_ACCOUNT = b"\x01" + bytes(31)
"""Where trading fees go: the identity point's encoding, equally unsignable."""
SYSTEM_ACCOUNTS = frozenset({INSURANCE_FUND, FEE_ACCOUNT})

MIN_NEW_ACCOUNT_ATOMS = 1_000_000
"""1 USD: creating an account costs real collateral, so accounts (and state-root records) cannot
be minted by the million for dust (see the design note on state-tree buckets)."""

MAX_OPEN_ORDERS_PER_ACCOUNT = 512
"""Resting orders and untriggered triggers per account across markets: 8 full batches of
re-quotes; bounds book memory and the trigger sets."""

MAX_SCHEDULE_AHEAD_BLOCKS = 1_000_000
"""How far ahead a dead man's switch may be set: days of blocks. Only a guard against a wrong
number; one schedule per account costs one record whatever its height."""


def check_envelope(
    data: bytes, chain_id: bytes
) -> tuple[Reason, SignedTx | None, bytes | None, str]:
    """Strict decoding and signature: (reason, tx, tx id, detail for the client)."""
    try:
        tx, tx_id = decode_and_verify_tx(data, chain_id)
    except CodecError as e:
        return Reason.MALFORMED, None, None, str(e)
    except SignatureError as e:
        return Reason.BAD_SIGNATURE, None, None, str(e)
    return Reason.OK, tx, tx_id, ""


def check_expiry(body: TxBody, height: int) -> Reason:
    """``height ≤ expiry_height ≤ height + MAX_EXPIRY_WINDOW_BLOCKS``."""
    if body.expiry_height < height:
        return Reason.EXPIRED
    if body.expiry_height > height + limits.MAX_EXPIRY_WINDOW_BLOCKS:
        return Reason.EXPIRY_TOO_FAR
    return Reason.OK


def check_place(place: PlaceOrder, m: Market) -> Reason:
    """Price in ``[1, max_price_ticks]``, size in ``[min_size_lots, max_size_lots]``, no
    post-only market order."""
    if not 1 <= place.price <= m.max_price_ticks:
        return Reason.PRICE_OUT_OF_RANGE
    if not m.min_size_lots <= place.size <= m.max_size_lots:
        return Reason.SIZE_OUT_OF_RANGE
    if place.order_type == OrderType.MARKET and place.time_in_force == TimeInForce.POST_ONLY:
        return Reason.INVALID_ORDER_TYPE
    return Reason.OK


def check_trigger(t: PlaceTrigger, m: Market) -> Reason:
    """Trigger and (for a limit) limit price in ``[1, max_price_ticks]``, size in range (or 0
    for a TP/SL, sized when it fires); a market trigger carries price 0 (its bound comes from
    the mark when it fires); a TP/SL is reduce-only, and only an ``ORDER`` one names a parent.
    (That the parent is placed earlier in the batch is checked with the batch.)"""
    if not 1 <= t.trigger_price <= m.max_price_ticks:
        return Reason.PRICE_OUT_OF_RANGE
    if t.order_type == OrderType.MARKET:
        if t.price != 0:
            return Reason.INVALID_ORDER_TYPE
    elif not 1 <= t.price <= m.max_price_ticks:
        return Reason.PRICE_OUT_OF_RANGE
    if t.attach == Attach.NONE:
        if t.parent_client_id:
            return Reason.INVALID_ATTACHMENT
    elif not t.reduce_only or (t.attach == Attach.POSITION) == bool(t.parent_client_id):
        return Reason.INVALID_ATTACHMENT
    if not m.min_size_lots <= t.size <= m.max_size_lots and (t.size or t.attach == Attach.NONE):
        return Reason.SIZE_OUT_OF_RANGE
    return Reason.OK


def check_modify(mo: ModifyOrder, m: Market) -> Reason:
    """The new price and remaining size in the market's ranges."""
    if not 1 <= mo.price <= m.max_price_ticks:
        return Reason.PRICE_OUT_OF_RANGE
    if not m.min_size_lots <= mo.size <= m.max_size_lots:
        return Reason.SIZE_OUT_OF_RANGE
    return Reason.OK


def check_schedule(sc: ScheduleCancel, height: int) -> Reason:
    """0 (clear), or ``height ≤ sc.height ≤ height + MAX_SCHEDULE_AHEAD_BLOCKS``."""
    if sc.height and not height <= sc.height <= height + MAX_SCHEDULE_AHEAD_BLOCKS:
        return Reason.SCHEDULE_OUT_OF_RANGE
    return Reason.OK


def check_action(action: Action, markets: dict[int, Market], height: int) -> Reason:
    kind = type(action)
    if kind is ScheduleCancel:
        return check_schedule(action, height)
    m = markets.get(action.market)
    if m is None:
        return Reason.UNKNOWN_MARKET
    if kind is PlaceOrder:
        return check_place(action, m)
    if kind is PlaceTrigger:
        return check_trigger(action, m)
    if kind is ModifyOrder:
        return check_modify(action, m)
    return Reason.OK


def check_static(
    body: TxBody,
    height: int,
    markets: dict[int, Market],
    validators: frozenset[bytes],
) -> tuple[Reason, int]:
    """Rules that need only genesis data and the height. Returns (reason, action index or -1)."""
    reason = check_expiry(body, height)
    if reason:
        return reason, -1
    if body.signer in SYSTEM_ACCOUNTS:
        return Reason.RESERVED_ACCOUNT, -1
    kind = type(body)
    if kind is Order:
        return check_action(body.place, markets, height), -1
    if kind is Cancel:
        return check_action(body.cancel, markets, height), -1
    if kind is Batch:
        seen: set[tuple[int, int]] = set()
        parents: dict[tuple[int, int], PlaceOrder] = {}
        for i, a in enumerate(body.batch):
            reason = check_action(a, markets, height)
            if reason:
                return reason, i
            if type(a) is PlaceTrigger and a.attach == Attach.ORDER:
                parent = parents.get((a.market, a.parent_client_id))
                if parent is None or parent.side == a.side:
                    return Reason.INVALID_ATTACHMENT, i
            if type(a) is PlaceOrder:
                parents[(a.market, a.client_id)] = a
            if type(a) is PlaceOrder or type(a) is PlaceTrigger or type(a) is ModifyOrder:
                key = (a.market, a.client_id)
                if key in seen:
                    return Reason.BATCH_DUPLICATE_CLIENT_ID, i
                seen.add(key)
        return Reason.OK, -1
    if kind is OraclePrice:
        if body.signer not in validators:
            return Reason.NOT_A_VALIDATOR, -1
        names: set[int] = set()
        for i, mp in enumerate(body.prices):
            m = markets.get(mp.market)
            if m is None:
                return Reason.UNKNOWN_MARKET, i
            if mp.market in names:
                return Reason.DUPLICATE_MARKET, i
            names.add(mp.market)
            if not 1 <= mp.price <= m.max_price_ticks:
                return Reason.PRICE_OUT_OF_RANGE, i
        return Reason.OK, -1
    if kind is Transfer:
        if body.amount == 0:
            return Reason.ZERO_AMOUNT, -1
        if body.to == body.signer:
            return Reason.SELF_TRANSFER, -1
        if body.to in SYSTEM_ACCOUNTS:
            return Reason.RESERVED_ACCOUNT, -1
        return Reason.OK, -1
    if kind is Withdraw:
        return (Reason.ZERO_AMOUNT if body.amount == 0 else Reason.OK), -1
    raise AssertionError(f"unknown body kind {kind.__name__}")


def genesis_tables(g: Genesis) -> tuple[dict[int, Market], frozenset[bytes]]:
    """The lookup tables the static rules take: markets by id, validator keys."""
    return {m.market_id: m for m in g.markets}, frozenset(v.public_key for v in g.validators)
