"""Untriggered orders: stops and take-profits waiting for the mark price.

Theory of operation. A trigger is an order that is not in the book: it waits in its market's
:class:`TriggerBook` until the block's mark reaches its trigger price, then the executor places
it as an ordinary order (a limit at its price, or a market order bounded by the market's
trigger slippage from the mark). Which way the mark must move is fixed by side and kind:

=========  ===========  =====================================
side       kind         fires when (``m`` the block's mark)
=========  ===========  =====================================
buy        stop         ``m ≥ trigger``   (rises to it)
sell       take-profit  ``m ≥ trigger``
sell       stop         ``m ≤ trigger``   (falls to it)
buy        take-profit  ``m ≤ trigger``
=========  ===========  =====================================

Ties fire (the comparison is inclusive). A trigger placed at or beyond the mark on its firing
side would fire at once and is refused (``TRIGGER_WRONG_SIDE``). A take-profit / stop-loss
attached to an order waits dormant, outside the book, until its parent first fills. Each side of
a book is a sorted list of ``(trigger price, trigger id)``, so the triggers a mark fires are a
prefix (rising) or a suffix (falling) found by bisection: the check costs O(log n) per market
per block whatever rests, plus the triggers it fires. Fired triggers execute in ascending
trigger id — the order they were placed in — never in an order the sequencer chooses.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass

from lockstep.consensus.actions import Attach, OrderType, Side, TriggerKind
from lockstep.consensus.genesis import PPM

MAX_TRIGGERS_FIRED_PER_BLOCK = 4_096
"""Bounds a block's work when the mark sweeps through many triggers at once (a crash): those
beyond it, by trigger id, stay and are checked again against the next block's mark."""


@dataclass(slots=True)
class Trigger:
    """An untriggered order. Its id comes from the exchange's order-id counter, so trigger and
    order ids never collide and both grow with time."""

    trigger_id: int
    owner: bytes
    market: int
    side: Side
    kind: TriggerKind
    order_type: OrderType
    trigger_price: int
    price: int
    """Limit price once fired; 0 for a market order."""
    size: int
    client_id: int
    reduce_only: bool
    height: int
    """Height of the block that placed it."""
    attach: Attach = Attach.NONE
    group: int = 0
    """TP/SL of an order: the first sibling's trigger id, naming the one-cancels-other group."""
    parent_order_id: int = 0
    """Dormant until this resting order first fills (0: active, in its market's book)."""

    @property
    def fires_rising(self) -> bool:
        return fires_rising(self.side, self.kind)


def fires_rising(side: Side, kind: TriggerKind) -> bool:
    """True if the trigger fires when the mark rises to it (buy stop, sell take-profit)."""
    return (side == Side.BUY) == (kind == TriggerKind.STOP)


def on_firing_side(side: Side, kind: TriggerKind, trigger_price: int, mark: int) -> bool:
    """True if ``mark`` already fires this trigger: placing it would be an ordinary order."""
    if fires_rising(side, kind):
        return mark >= trigger_price
    return mark <= trigger_price


def market_bound(side: Side, mark: int, slippage_ppm: int, max_price: int) -> int:
    """The worst price a fired market trigger accepts: ``⌊mark × (PPM + s) / PPM⌋`` for a buy
    (at most the market's maximum price), ``max(1, ⌈mark × (PPM − s) / PPM⌉)`` for a sell."""
    if side == Side.BUY:
        return min(max_price, mark * (PPM + slippage_ppm) // PPM)
    return max(1, -((-mark * (PPM - slippage_ppm)) // PPM))


class TriggerBook:
    """One market's untriggered orders, by the direction that fires them."""

    __slots__ = ("falling", "market", "rising")

    def __init__(self, market: int) -> None:
        self.market = market
        self.rising: list[tuple[int, int]] = []
        """(trigger price, id), ascending: fired by a mark at or above the price."""
        self.falling: list[tuple[int, int]] = []
        """(trigger price, id), ascending: fired by a mark at or below the price."""

    def __len__(self) -> int:
        return len(self.rising) + len(self.falling)

    def add(self, t: Trigger) -> None:
        assert t.market == self.market
        insort(self.rising if t.fires_rising else self.falling, (t.trigger_price, t.trigger_id))

    def remove(self, t: Trigger) -> None:
        side = self.rising if t.fires_rising else self.falling
        key = (t.trigger_price, t.trigger_id)
        i = bisect_left(side, key)
        assert i < len(side) and side[i] == key, f"trigger {t.trigger_id} not in its book"
        del side[i]

    def fired_ids(self, mark: int) -> list[int]:
        """Ids of every trigger ``mark`` fires (not removed; the caller removes what it runs)."""
        rising = self.rising[: bisect_right(self.rising, (mark, 2**64))]
        falling = self.falling[bisect_left(self.falling, (mark, -1)) :]
        return [i for _, i in rising] + [i for _, i in falling]
