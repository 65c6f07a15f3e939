"""One central limit order book per market: resting orders by price level, in time priority.

Theory of operation: a side of the book is a dict ``price -> level`` plus a sorted list of the
prices that have a level. A *level* is a dict ``order_id -> RestingOrder``; Python dicts keep
insertion order, so iterating a level gives time priority, the oldest order is
``next(iter(level.values()))``, and cancelling from the middle of a queue is O(1). Order ids are
assigned by the executor from one counter that only grows, so "earlier id" is "earlier in time";
that is what lets :meth:`Book.rebuild` restore the exact queue order from SQLite by inserting
orders sorted by id.

Bid prices are kept ascending with the best bid last; ask prices ascending with the best ask
first. The book never matches: :mod:`matching` walks it and calls :meth:`Book.remove` /
:meth:`Book.reduce`. After matching, the book is never crossed (asserted by the executor).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator

from lockstep.consensus.actions import Side

BUY = Side.BUY
SELL = Side.SELL


class RestingOrder:
    """A limit order resting in the book. Mutable: ``remaining`` falls as it fills."""

    __slots__ = (
        "client_id",
        "height",
        "market",
        "order_id",
        "owner",
        "price",
        "reduce_only",
        "remaining",
        "side",
        "size",
    )

    def __init__(
        self,
        order_id: int,
        owner: bytes,
        market: int,
        side: Side,
        price: int,
        size: int,
        remaining: int,
        client_id: int,
        reduce_only: bool,
        height: int,
    ) -> None:
        self.order_id = order_id
        self.owner = owner
        self.market = market
        self.side = side
        self.price = price
        self.size = size
        self.remaining = remaining
        self.client_id = client_id
        self.reduce_only = reduce_only
        self.height = height

    def as_tuple(self) -> tuple[int, bytes, int, int, int, int, int, int, bool, int]:
        return (
            self.order_id,
            self.owner,
            self.market,
            int(self.side),
            self.price,
            self.size,
            self.remaining,
            self.client_id,
            self.reduce_only,
            self.height,
        )

    def __repr__(self) -> str:
        side = "BUY" if self.side == BUY else "SELL"
        return (
            f"RestingOrder(#{self.order_id} {side} {self.remaining}/{self.size}@{self.price} "
            f"owner={self.owner.hex()[:8]} cid={self.client_id})"
        )


Level = dict[int, RestingOrder]


class Book:
    """Bids and asks of one market."""

    __slots__ = ("ask_lots", "ask_prices", "asks", "bid_lots", "bid_prices", "bids", "market")

    def __init__(self, market: int) -> None:
        self.market = market
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_prices: list[int] = []  # ascending; best bid is last
        self.ask_prices: list[int] = []  # ascending; best ask is first
        self.bid_lots: dict[int, int] = {}
        self.ask_lots: dict[int, int] = {}
        """Remaining lots resting at each price, kept as orders come, fill and go: depth
        queries cost the number of levels, not the number of orders."""

    # ----------------------------------------------------------------------- queries

    def best_bid(self) -> int | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> int | None:
        return self.ask_prices[0] if self.ask_prices else None

    def orders_on(self, is_buy: bool) -> bool:
        """True if a buy (``is_buy``) or a sell would find any resting order to trade with."""
        return bool(self.ask_prices if is_buy else self.bid_prices)

    def is_crossed(self) -> bool:
        bids, asks = self.bid_prices, self.ask_prices
        return bool(bids and asks and bids[-1] >= asks[0])

    def l2(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Aggregated (price, total lots) per level, best first, at most ``depth`` per side."""
        bid_lots, ask_lots = self.bid_lots, self.ask_lots
        bids = [(p, bid_lots[p]) for p in reversed(self.bid_prices[-depth:] if depth else [])]
        asks = [(p, ask_lots[p]) for p in self.ask_prices[:depth]]
        return bids, asks

    def level_lots_consistent(self) -> bool:
        """The kept totals equal the sums over the orders (an invariant, for assertions)."""
        for levels, lots in ((self.bids, self.bid_lots), (self.asks, self.ask_lots)):
            sums = {p: sum(o.remaining for o in lv.values()) for p, lv in levels.items()}
            if sums != lots:
                return False
        return True

    def orders(self) -> Iterator[RestingOrder]:
        """Every resting order, bids best-first then asks best-first, each level in time order."""
        for p in reversed(self.bid_prices):
            yield from self.bids[p].values()
        for p in self.ask_prices:
            yield from self.asks[p].values()

    def snapshot(self) -> tuple[tuple[tuple[int, tuple[tuple[int, ...], ...]], ...], ...]:
        """A comparable value of the whole book (levels, queue order, remaining sizes)."""

        def side(levels: dict[int, Level], prices: Iterable[int]) -> tuple:
            return tuple(
                (p, tuple((o.order_id, o.remaining) for o in levels[p].values())) for p in prices
            )

        return (side(self.bids, reversed(self.bid_prices)), side(self.asks, self.ask_prices))

    # ----------------------------------------------------------------------- changes

    def add(self, order: RestingOrder) -> None:
        """Append an order at the back of its price level."""
        assert order.remaining > 0 and order.market == self.market
        if order.side == BUY:
            levels, prices, lots = self.bids, self.bid_prices, self.bid_lots
        else:
            levels, prices, lots = self.asks, self.ask_prices, self.ask_lots
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = {}
            insort(prices, order.price)
            lots[order.price] = order.remaining
        else:
            lots[order.price] += order.remaining
        level[order.order_id] = order

    def fill(self, order: RestingOrder, lots: int) -> None:
        """``lots`` of a resting order traded; it stays in place (``remove`` it at zero)."""
        assert 0 < lots <= order.remaining
        order.remaining -= lots
        (self.bid_lots if order.side == BUY else self.ask_lots)[order.price] -= lots

    def shrink(self, order: RestingOrder, lots: int) -> None:
        """The owner took ``lots`` off a resting order (a modify down): it keeps its place."""
        assert 0 < lots < order.remaining
        order.remaining -= lots
        (self.bid_lots if order.side == BUY else self.ask_lots)[order.price] -= lots

    def remove(self, order: RestingOrder) -> None:
        """Take an order out of the book (cancel or full fill)."""
        if order.side == BUY:
            levels, prices, lots = self.bids, self.bid_prices, self.bid_lots
        else:
            levels, prices, lots = self.asks, self.ask_prices, self.ask_lots
        level = levels[order.price]
        del level[order.order_id]
        if not level:
            del levels[order.price]
            del lots[order.price]
            i = bisect_left(prices, order.price)
            assert prices[i] == order.price
            del prices[i]
        else:
            lots[order.price] -= order.remaining
