"""Matching against a bare book: price-time priority, maker price, STP, reduce-only makers."""

from __future__ import annotations

from lockstep.consensus.actions import Side
from lockstep.node.exchange.book import Book, RestingOrder
from lockstep.node.exchange.matching import match, would_cross
from lockstep.node.exchange.mempool_rules import Reason

T, M1, M2 = b"t" * 32, b"1" * 32, b"2" * 32


class Recorder:
    """Applies fills and cancels to the book as the executor does, and records them."""

    def __init__(self, book: Book, positions: dict[bytes, int] | None = None) -> None:
        self.book = book
        self.fills: list[tuple[int, int, int]] = []
        self.cancels: list[tuple[int, Reason]] = []
        self.positions = positions or {}

    def fill(self, o: RestingOrder, lots: int, price: int) -> None:
        self.fills.append((o.order_id, lots, price))
        self.book.fill(o, lots)
        sign = 1 if o.side == Side.BUY else -1
        self.positions[o.owner] = self.positions.get(o.owner, 0) + sign * lots
        if o.remaining == 0:
            self.book.remove(o)

    def cancel(self, o: RestingOrder, reason: Reason) -> None:
        self.cancels.append((o.order_id, reason))
        self.book.remove(o)

    def cap(self, o: RestingOrder) -> int:
        size = self.positions.get(o.owner, 0)
        return -size if o.side == Side.BUY else size

    def run(self, taker: bytes, is_buy: bool, limit: int, qty: int) -> int:
        return match(self.book, taker, is_buy, limit, qty, self.fill, self.cancel, self.cap)


def ask(oid: int, price: int, size: int, owner: bytes = M1, ro: bool = False) -> RestingOrder:
    return RestingOrder(oid, owner, 0, Side.SELL, price, size, size, oid, ro, 1)


def test_price_then_time_priority_at_maker_prices() -> None:
    b = Book(0)
    for o in (ask(1, 102, 3), ask(2, 101, 2), ask(3, 101, 2, M2), ask(4, 103, 5)):
        b.add(o)
    r = Recorder(b)
    assert r.run(T, True, 102, 6) == 6
    # 101 level: order 2 (older) then 3; then 102.
    assert r.fills == [(2, 2, 101), (3, 2, 101), (1, 2, 102)]
    assert b.l2(5) == ([], [(102, 1), (103, 5)])


def test_limit_stops_matching() -> None:
    b = Book(0)
    b.add(ask(1, 105, 3))
    r = Recorder(b)
    assert r.run(T, True, 104, 3) == 0 and r.fills == []


def test_sell_side_walks_bids_down() -> None:
    b = Book(0)
    for i, p in enumerate((99, 100, 98), 1):
        b.add(RestingOrder(i, M1, 0, Side.BUY, p, 1, 1, i, False, 1))
    r = Recorder(b)
    assert r.run(T, False, 99, 5) == 2
    assert [f[2] for f in r.fills] == [100, 99]


def test_self_trade_cancels_resting_and_continues() -> None:
    b = Book(0)
    b.add(ask(1, 100, 2, T))
    b.add(ask(2, 100, 2))
    r = Recorder(b)
    assert r.run(T, True, 100, 2) == 2
    assert r.cancels == [(1, Reason.SELF_TRADE)] and r.fills == [(2, 2, 100)]


def test_reduce_only_maker_is_capped_then_cancelled() -> None:
    b = Book(0)
    b.add(ask(1, 100, 5, M1, ro=True))  # M1 is long 3: only 3 reduce
    b.add(ask(2, 100, 5, M2, ro=True))  # M2 is flat: would open a short
    b.add(ask(3, 101, 5))
    r = Recorder(b, {M1: 3})
    assert r.run(T, True, 101, 6) == 6
    assert r.fills == [(1, 3, 100), (3, 3, 101)]
    assert r.cancels == [(1, Reason.REDUCE_ONLY_WOULD_INCREASE),
                         (2, Reason.REDUCE_ONLY_WOULD_INCREASE)]


def test_would_cross() -> None:
    b = Book(0)
    b.add(ask(1, 100, 1))
    assert would_cross(b, True, 100) and not would_cross(b, True, 99)
    assert not would_cross(b, False, 1)
