"""Modify (in place or re-queued) and the dead man's switch (scheduled cancel-all)."""

from __future__ import annotations

from pathlib import Path

from lockstep.consensus.actions import ModifyOrder, ScheduleCancel, TriggerKind
from lockstep.node.exchange.mempool_rules import MAX_SCHEDULE_AHEAD_BLOCKS, Reason

from .test_executor import BUY, SELL, USD, Harness
from .test_triggers import events, state_but_height, trig

STOP = TriggerKind.STOP


def modify(market: int, cid: int, price: int, size: int, post_only: bool = False
           ) -> ModifyOrder:
    return ModifyOrder(market, cid, price, size, post_only)


def queue(h: Harness, side=SELL, price: int = 100) -> list[tuple[bytes, int, int]]:
    """(owner, client id, remaining) at one price level, front of the queue first."""
    orders = sorted((o for o in h.ex.orders.values() if o.side == side and o.price == price),
                    key=lambda o: o.order_id)
    return [(o.owner, o.client_id, o.remaining) for o in orders]


# --------------------------------------------------------------------------- modify


def test_a_size_decrease_keeps_its_place(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    h.ok(h.place("alice", SELL, 100, 10, cid=1), h.place("carol", SELL, 100, 5, cid=1))
    (oid, _) = next((o.order_id, o) for o in h.ex.orders.values() if o.owner == h.key("alice"))
    r = h.ok(h.batch("alice", modify(0, 1, 100, 4)))
    assert [e.order_id for e in events(r, "modified")] == [oid]
    assert queue(h) == [(h.key("alice"), 1, 4), (h.key("carol"), 1, 5)]
    assert h.ex.ledger.accounts[h.key("alice")].open_sell == {0: 4}
    # Bob buys 4: all of it from Alice, still first in the queue.
    r = h.ok(h.place("bob", BUY, 100, 4))
    assert [tr.maker for tr in r.trades] == [h.key("alice")]


def test_a_price_change_or_size_increase_requeues(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    h.ok(h.place("alice", SELL, 100, 10, cid=1), h.place("carol", SELL, 100, 5, cid=1))
    r = h.ok(h.batch("alice", modify(0, 1, 100, 12)))  # bigger: behind Carol
    (gone,) = events(r, "cancelled")
    assert gone.reason == Reason.MODIFIED
    assert queue(h) == [(h.key("carol"), 1, 5), (h.key("alice"), 1, 12)]
    h.ok(h.batch("alice", modify(0, 1, 101, 12)))
    assert queue(h) == [(h.key("carol"), 1, 5)] and queue(h, price=101) == [
        (h.key("alice"), 1, 12)
    ]
    (o,) = h.ex.open_orders(h.key("alice"))
    assert (o.size, o.remaining, o.client_id) == (12, 12, 1)


def test_a_requeued_order_that_crosses_takes_liquidity(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 100, 3, cid=1), h.place("bob", BUY, 95, 5, cid=1))
    r = h.ok(h.batch("bob", modify(0, 1, 100, 5)))
    assert [(tr.price, tr.size) for tr in r.trades] == [(100, 3)]
    assert queue(h, side=BUY, price=100) == [(h.key("bob"), 1, 2)]


def test_bad_modifies_are_refused_and_change_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db", {"alice": 100_000 * USD, "bob": 1_000 * USD})
    h.ok(h.place("bob", BUY, 90, 5, cid=2), h.place("alice", SELL, 90, 5, cid=2))  # filled
    h.ok(h.place("alice", SELL, 100, 3, cid=1), h.place("bob", BUY, 90, 5, cid=1),
         h.place("bob", BUY, 80, 1, cid=3), h.batch("bob", trig(BUY, STOP, 150, 1, cid=4)))
    cases = [
        (modify(0, 2, 91, 5), Reason.ORDER_NOT_FOUND),  # Bob's order 2 was filled
        (modify(0, 7, 91, 5), Reason.ORDER_NOT_FOUND),  # never existed
        (modify(0, 4, 151, 1), Reason.ORDER_NOT_FOUND),  # a trigger, not a resting order
        (modify(0, 1, 100, 5, post_only=True), Reason.POST_ONLY_WOULD_CROSS),
        (modify(0, 1, 90, 500), Reason.INSUFFICIENT_MARGIN),  # 500 lots on $1,000
        (modify(0, 1, 0, 5), Reason.PRICE_OUT_OF_RANGE),
        (modify(0, 1, 90, 0), Reason.SIZE_OUT_OF_RANGE),
        (modify(3, 1, 90, 5), Reason.UNKNOWN_MARKET),
    ]
    for action, reason in cases:
        tx = h.batch("bob", action)
        assert h.ex.check_tx(tx)[0] == reason, action
        before = state_but_height(h)
        r = h.block(tx)
        assert r.outcomes[0].reason == reason, action
        assert state_but_height(h) == before, action
    # Alice cannot modify Bob's order: client ids are per owner, so she names nothing.
    r = h.block(h.batch("alice", modify(0, 3, 81, 1)))
    assert r.outcomes[0].reason == Reason.ORDER_NOT_FOUND
    # Two modifies of one order in a batch are refused as a duplicate client id.
    r = h.block(h.batch("bob", modify(0, 1, 89, 5), modify(0, 1, 88, 5)))
    assert r.outcomes[0].reason == Reason.BATCH_DUPLICATE_CLIENT_ID


def test_a_requeued_reduce_only_order_must_still_reduce(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 100, 5), h.place("bob", BUY, 100, 5))  # Bob long 5
    h.ok(h.place("bob", SELL, 120, 5, cid=1, reduce_only=True))
    h.ok(h.place("bob", SELL, 100, 5), h.place("alice", BUY, 100, 5))  # Bob flat
    r = h.block(h.batch("bob", modify(0, 1, 121, 5)))
    assert r.outcomes[0].reason == Reason.REDUCE_ONLY_WOULD_INCREASE


# --------------------------------------------------------------------------- schedule


def test_the_switch_cancels_in_the_first_block_above_its_height(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("bob", BUY, 90, 1, cid=1), h.batch("bob", trig(BUY, STOP, 150, 1, cid=2)))
    at = h.ex.height + 3
    h.ok(h.batch("bob", ScheduleCancel(at)))
    assert h.ex.cancel_after_height(h.key("bob")) == at
    assert (b"S" + h.key("bob"), (at,)) in h.ex.records()
    while h.ex.height < at:  # blocks up to `at` leave the orders alone
        h.ok()
        assert h.ex.open_orders(h.key("bob")) and h.ex.open_triggers(h.key("bob"))
    r = h.ok()
    assert {(e.client_id, e.reason) for e in events(r, "cancelled")} == {
        (1, Reason.SCHEDULED_CANCEL), (2, Reason.SCHEDULED_CANCEL)
    }
    assert h.ex.open_orders(h.key("bob")) == [] and h.ex.open_triggers(h.key("bob")) == []
    assert h.ex.cancel_after_height(h.key("bob")) is None
    assert not any(k.startswith(b"S") for k, _ in h.ex.records())
    # Orders placed after it fired stay: a switch fires once.
    h.ok(h.place("bob", BUY, 90, 1, cid=3))
    h.ok(), h.ok()
    assert h.ex.open_orders(h.key("bob"))


def test_renewing_moves_the_switch_and_zero_clears_it(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("bob", BUY, 90, 1, cid=1))
    h.ok(h.batch("bob", ScheduleCancel(h.ex.height + 2)))
    h.ok(h.batch("bob", ScheduleCancel(h.ex.height + 5)))  # renewed before it fired
    for _ in range(3):
        h.ok()
    assert h.ex.open_orders(h.key("bob"))
    h.ok(h.batch("bob", ScheduleCancel(0)))
    assert h.ex.cancel_after_height(h.key("bob")) is None
    for _ in range(6):
        h.ok()
    assert h.ex.open_orders(h.key("bob"))


def test_a_switch_out_of_range_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(), h.ok()
    for ahead in (0, 2 + MAX_SCHEDULE_AHEAD_BLOCKS):  # the next block is height + 1
        tx = h.batch("bob", ScheduleCancel(h.ex.height + ahead))
        assert h.ex.check_tx(tx)[0] == Reason.SCHEDULE_OUT_OF_RANGE
        before = state_but_height(h)
        assert h.block(tx).outcomes[0].reason == Reason.SCHEDULE_OUT_OF_RANGE
        assert state_but_height(h) == before


def test_a_switch_survives_a_restart(tmp_path: Path) -> None:
    from lockstep.node.exchange.executor import Exchange

    h = Harness(tmp_path / "x.db")
    h.ok(h.place("bob", BUY, 90, 1, cid=1), h.batch("bob", ScheduleCancel(h.ex.height + 2)))
    h.ex.close()
    h.ex = Exchange.open(h.path, h.genesis)
    h.ok(), h.ok()
    assert h.ex.open_orders(h.key("bob")) == []
