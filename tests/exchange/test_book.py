"""The order book: levels, time priority, best prices, removal, snapshots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from lockstep.consensus.actions import Side
from lockstep.node.exchange.book import Book, RestingOrder

A, B = b"a" * 32, b"b" * 32


def order(oid: int, side: Side, price: int, size: int, owner: bytes = A) -> RestingOrder:
    return RestingOrder(oid, owner, 0, side, price, size, size, oid, False, 1)


def test_empty_book() -> None:
    b = Book(0)
    assert b.best_bid() is None and b.best_ask() is None
    assert not b.is_crossed()
    assert b.l2(10) == ([], [])
    assert list(b.orders()) == []


def test_best_prices_and_l2() -> None:
    b = Book(0)
    bids = [order(1, Side.BUY, 99, 2), order(2, Side.BUY, 98, 3), order(3, Side.BUY, 99, 4)]
    asks = [order(4, Side.SELL, 101, 1), order(5, Side.SELL, 103, 5), order(6, Side.SELL, 101, 2)]
    for o in bids + asks:
        b.add(o)
    assert b.best_bid() == 99 and b.best_ask() == 101
    assert b.l2(10) == ([(99, 6), (98, 3)], [(101, 3), (103, 5)])
    assert b.l2(1) == ([(99, 6)], [(101, 3)])
    assert b.l2(0) == ([], [])
    # Orders: bids best first, then asks best first, each level oldest first.
    assert [o.order_id for o in b.orders()] == [1, 3, 2, 4, 6, 5]


def test_remove_keeps_time_priority_and_drops_empty_levels() -> None:
    b = Book(0)
    os = [order(i, Side.SELL, 100, 1) for i in range(1, 5)]
    for o in os:
        b.add(o)
    b.remove(os[1])
    assert [o.order_id for o in b.asks[100].values()] == [1, 3, 4]
    for o in (os[0], os[2], os[3]):
        b.remove(o)
    assert b.ask_prices == [] and b.asks == {}
    assert b.snapshot() == ((), ())


def test_crossed_detection() -> None:
    b = Book(0)
    b.add(order(1, Side.BUY, 100, 1))
    b.add(order(2, Side.SELL, 100, 1))
    assert b.is_crossed()


def test_snapshot_compares_queue_order() -> None:
    b1, b2 = Book(0), Book(0)
    for b, ids in ((b1, (1, 2)), (b2, (2, 1))):
        for i in ids:
            b.add(order(i, Side.BUY, 100, 1))
    assert b1.snapshot() != b2.snapshot()


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(1, 5)), max_size=80))
def test_level_totals_follow_adds_fills_and_removes(ops: list[tuple[int, int, int]]) -> None:
    """The kept per-level totals (what depth queries read) always equal the orders' sums."""
    b = Book(0)
    resting: list[RestingOrder] = []
    for oid, (op, pick, n) in enumerate(ops, 1):
        if op == 0 or not resting:
            side = Side.BUY if pick % 2 else Side.SELL
            price = 100 - pick % 7 if side == Side.BUY else 101 + pick % 7
            o = order(oid, side, price, n)
            b.add(o)
            resting.append(o)
        else:
            o = resting[pick % len(resting)]
            lots = min(n, o.remaining)
            if op == 1 and lots < o.remaining:
                b.fill(o, lots)
            else:
                b.remove(o)
                resting.remove(o)
        assert b.level_lots_consistent()
    expect_bids = sorted({o.price for o in resting if o.side == Side.BUY}, reverse=True)
    assert [p for p, _ in b.l2(100)[0]] == expect_bids
