"""Building a trader's transactions: nonces, client ids, and orders from human units.

Pure functions (the clock and randomness can be passed in), used by ``lockstep wallet`` and by
anything else that trades, such as the testnet load generator.

Nonces. The replay key of a transaction is (signer, nonce); a node refuses a second transaction
with a pair it has seen until that transaction's ``expiry_height`` has passed (docs/protocol.md),
and no order of nonces is required. So a wallet needs no shared counter, only a value no other
wallet of the same account will pick within the expiry window. :func:`new_nonce` takes
``unix_time_ms << 20 | 20 random bits``: two wallets collide only if they sign in the same
millisecond *and* draw the same 20 bits, probability 2^-20 (one in a million) for each pair of
transactions signed in the same millisecond. Even a market maker running two wallets at 1,000
transactions per second each expects such a pair about once per 17 minutes of signing in the
same milliseconds, and the cost is one transaction refused as ``REPLAYED``, which the wallet
reports and the trader re-sends. Inside one process :class:`NonceSource` makes nonces strictly
increasing, so a single wallet never collides with itself. Nonces stay below 2^63 until the year
2248, so a ledger may store them as SQLite's signed 64-bit INTEGER.

Client ids. A trader names each order with a ``client_id`` (unique among its open orders in a
market) to cancel it later. Unless given, :func:`new_client_id` draws 63 random bits (positive,
fits a signed 64-bit column): the chance that two of a thousand open orders share one is ~5e-14.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from lockstep.consensus.actions import (
    ModifyOrder,
    OrderType,
    PlaceOrder,
    PlaceTrigger,
    Side,
    TimeInForce,
    TriggerKind,
)
from lockstep.consensus.genesis import Market
from lockstep.node.exchange.units import UnitError, price_to_ticks, size_to_lots

NONCE_RANDOM_BITS = 20
CLIENT_ID_BITS = 63

ORDER_KINDS: dict[str, tuple[OrderType, TimeInForce]] = {
    "limit": (OrderType.LIMIT, TimeInForce.GTC),
    "ioc": (OrderType.LIMIT, TimeInForce.IOC),
    "post-only": (OrderType.LIMIT, TimeInForce.POST_ONLY),
    "market": (OrderType.MARKET, TimeInForce.IOC),
}
"""The order kinds a trader names, and the (type, time in force) each is on the wire."""

SIDES = {"buy": Side.BUY, "sell": Side.SELL}

TRIGGER_KINDS = {"stop": TriggerKind.STOP, "take-profit": TriggerKind.TAKE_PROFIT}
"""A buy stop and a sell take-profit fire when the mark rises to the trigger price; a sell stop
and a buy take-profit when it falls to it (node/exchange/triggers.py)."""
TRIGGER_ORDER_KINDS = ("limit", "market")
"""What a fired trigger becomes: a GTC limit at ``--price``, or a market order bounded by the
market's ``trigger_slippage_ppm`` from the mark (so it carries no price of its own)."""


def new_nonce(now_ms: int | None = None, random_bits: int | None = None) -> int:
    """``unix_time_ms << 20 | 20 random bits`` (see the module docstring for why)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    r = secrets.randbits(NONCE_RANDOM_BITS) if random_bits is None else random_bits
    assert 0 <= r < 2**NONCE_RANDOM_BITS and ms >= 0
    nonce = ms << NONCE_RANDOM_BITS | r
    assert nonce < 2**63, "clock beyond the year 2248"
    return nonce


class NonceSource:
    """Time-based random nonces, strictly increasing within this object."""

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self._clock_ms = clock_ms
        self._last = -1

    def next(self) -> int:
        now = self._clock_ms() if self._clock_ms is not None else None
        nonce = max(new_nonce(now), self._last + 1)
        self._last = nonce
        return nonce


def new_client_id() -> int:
    """A random positive 63-bit client order id."""
    while True:
        cid = secrets.randbits(CLIENT_ID_BITS)
        if cid:
            return cid


def place_order(
    market: Market,
    side: str,
    kind: str,
    size: str,
    price: str | None,
    worst_price: str | None,
    reduce_only: bool = False,
    client_id: int | None = None,
) -> PlaceOrder:
    """A :class:`PlaceOrder` from human units, converted exactly (``UnitError`` otherwise).

    Limit kinds (``limit``, ``ioc``, ``post-only``) take ``price``; a ``market`` order takes
    ``worst_price``, the limit on slippage it carries on the wire as its price.
    """
    if side not in SIDES:
        raise UnitError(f"side must be buy or sell, got {side!r}")
    if kind not in ORDER_KINDS:
        raise UnitError(f"order type must be one of {', '.join(ORDER_KINDS)}, got {kind!r}")
    order_type, tif = ORDER_KINDS[kind]
    if order_type == OrderType.MARKET:
        if price is not None:
            raise UnitError("a market order takes --worst-price (its slippage limit), not --price")
        if worst_price is None:
            raise UnitError("a market order needs --worst-price, the worst price it may trade at")
        limit = worst_price
    else:
        if worst_price is not None:
            raise UnitError(f"--worst-price is for market orders; a {kind} order takes --price")
        if price is None:
            raise UnitError(f"a {kind} order needs --price")
        limit = price
    return PlaceOrder(
        market=market.market_id,
        side=SIDES[side],
        order_type=order_type,
        time_in_force=tif,
        reduce_only=reduce_only,
        price=price_to_ticks(market, limit),
        size=size_to_lots(market, size),
        client_id=new_client_id() if client_id is None else client_id,
    )


def place_trigger(
    market: Market,
    side: str,
    trigger: str,
    kind: str,
    size: str,
    trigger_price: str,
    price: str | None,
    worst_price: str | None = None,
    reduce_only: bool = False,
    client_id: int | None = None,
) -> PlaceTrigger:
    """A :class:`PlaceTrigger` from human units (``UnitError`` otherwise): ``trigger`` is
    ``stop`` or ``take-profit``, ``kind`` what it becomes once fired, ``limit`` (at ``price``)
    or ``market`` (no price: the chain bounds it by the market's trigger slippage)."""
    if side not in SIDES:
        raise UnitError(f"side must be buy or sell, got {side!r}")
    if trigger not in TRIGGER_KINDS:
        raise UnitError(f"trigger must be one of {', '.join(TRIGGER_KINDS)}, got {trigger!r}")
    if kind not in TRIGGER_ORDER_KINDS:
        raise UnitError(f"a trigger becomes a limit or a market order, not {kind!r}")
    if worst_price is not None:
        raise UnitError(
            "a trigger takes no --worst-price: a market trigger, once fired, trades at most the "
            f"market's trigger slippage ({market.trigger_slippage_ppm} ppm) from the mark"
        )
    if kind == "market":
        if price is not None:
            raise UnitError("a market trigger takes no --price (only --trigger-price)")
        ticks, order_type = 0, OrderType.MARKET
    else:
        if price is None:
            raise UnitError("a limit trigger needs --price, its limit once fired")
        ticks, order_type = price_to_ticks(market, price), OrderType.LIMIT
    return PlaceTrigger(
        market=market.market_id,
        side=SIDES[side],
        kind=TRIGGER_KINDS[trigger],
        order_type=order_type,
        reduce_only=reduce_only,
        trigger_price=price_to_ticks(market, trigger_price),
        price=ticks,
        size=size_to_lots(market, size),
        client_id=new_client_id() if client_id is None else client_id,
    )


def modify_order(
    market: Market, client_id: int, price: str, size: str, post_only: bool = False
) -> ModifyOrder:
    """A :class:`ModifyOrder` from human units: ``size`` is the new *remaining* size. The same
    price with a smaller size keeps the order's place in the queue; anything else re-queues."""
    return ModifyOrder(
        market=market.market_id,
        client_id=client_id,
        price=price_to_ticks(market, price),
        size=size_to_lots(market, size),
        post_only=post_only,
    )
