"""Price-time priority matching of one incoming order against one book.

Theory of operation: an incoming order of ``qty`` lots with limit ``limit`` (for a market
order, its worst acceptable price) walks the opposite side from the best price outwards while
that price is at least as good as the limit. At each level it takes resting orders oldest first
(see :mod:`book`). Every fill is at the *resting* order's price (the maker's price), so a taker
only ever gets its limit or better. Before filling a resting order:

* **self-trade prevention**: if the resting order belongs to the taker, the resting order is
  cancelled (``SELF_TRADE``) and matching continues behind it — the taker's newer intent wins;
* **reduce-only makers**: a resting reduce-only order fills at most the lots that still reduce
  its owner's position at that moment; if that is zero it is cancelled
  (``REDUCE_ONLY_WOULD_INCREASE``), and what it cannot fill is cancelled after filling.

This module decides; it mutates nothing itself. The executor's callbacks change the book and
the ledger (``on_fill`` reduces the resting order and removes it when filled, ``on_cancel``
removes it), and the loop re-reads the book after every callback, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable

from .book import Book, RestingOrder
from .mempool_rules import Reason

FillFn = Callable[[RestingOrder, int, int], None]
"""on_fill(resting order, lots, price)."""
CancelFn = Callable[[RestingOrder, Reason], None]
CapFn = Callable[[RestingOrder], int]
"""For a reduce-only resting order: how many lots still reduce its owner's position."""


def would_cross(book: Book, is_buy: bool, price: int) -> bool:
    """True if a limit order at ``price`` would trade on arrival (post-only test)."""
    if is_buy:
        return bool(book.ask_prices) and price >= book.ask_prices[0]
    return bool(book.bid_prices) and price <= book.bid_prices[-1]


def match(
    book: Book,
    taker: bytes,
    is_buy: bool,
    limit: int,
    qty: int,
    on_fill: FillFn,
    on_cancel: CancelFn,
    reduce_cap: CapFn,
) -> int:
    """Match up to ``qty`` lots; return the lots filled."""
    assert qty > 0 and limit > 0
    if is_buy:
        prices, levels = book.ask_prices, book.asks
    else:
        prices, levels = book.bid_prices, book.bids
    filled = 0
    while qty > 0 and prices:
        price = prices[0] if is_buy else prices[-1]
        if (price > limit) if is_buy else (price < limit):
            break
        level = levels[price]
        while qty > 0 and level:
            maker = next(iter(level.values()))
            if maker.owner == taker:
                on_cancel(maker, Reason.SELF_TRADE)
                continue
            take = maker.remaining if maker.remaining < qty else qty
            if maker.reduce_only:
                cap = reduce_cap(maker)
                if cap <= 0:
                    on_cancel(maker, Reason.REDUCE_ONLY_WOULD_INCREASE)
                    continue
                if cap < take:
                    take = cap
                on_fill(maker, take, price)
                qty -= take
                filled += take
                if maker.remaining > 0 and reduce_cap(maker) <= 0:
                    on_cancel(maker, Reason.REDUCE_ONLY_WOULD_INCREASE)
                continue
            on_fill(maker, take, price)
            qty -= take
            filled += take
    return filled
