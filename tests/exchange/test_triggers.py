"""node/exchange/triggers.py and the executor's trigger phase: stops and take-profits fire on
the block's mark, exactly once, in trigger-id order; bad triggers are refused and change
nothing.

With an empty book the mark is the index, so the oracle moves the mark where a test wants it
(test market: $1 per tick per lot, initial index 100)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from lockstep.consensus.actions import Attach, OrderType, PlaceTrigger, Side, TriggerKind
from lockstep.node.exchange.mempool_rules import MAX_OPEN_ORDERS_PER_ACCOUNT, Reason
from lockstep.node.exchange.triggers import (
    Trigger,
    TriggerBook,
    fires_rising,
    market_bound,
    on_firing_side,
)

from .test_executor import BUY, SELL, USD, Harness

STOP, TP = TriggerKind.STOP, TriggerKind.TAKE_PROFIT
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET


def trig(side: Side, kind: TriggerKind, trigger_price: int, size: int, cid: int,
         price: int = 0, reduce_only: bool = False, market: int = 0) -> PlaceTrigger:
    ot = MARKET if price == 0 else LIMIT
    return PlaceTrigger(market, side, kind, ot, reduce_only, trigger_price, price, size, cid)


def events(r, kind: str) -> list:
    return [e for e in r.events if getattr(e, "kind", None) == kind]


def state_but_height(h: Harness) -> list:
    """Every record the root covers but the global and market ones (every block moves the
    height and takes a premium sample)."""
    return [r for r in h.ex.records() if r[0][:1] not in (b"G", b"M")]


def long_bob(h: Harness, lots: int = 10, price: int = 100) -> None:
    """Bob long ``lots`` at ``price`` against Alice, the book left empty."""
    h.ok(h.place("alice", SELL, price, lots), h.place("bob", BUY, price, lots))
    assert h.pos("bob")[0] == lots and h.ex.l2(0) == ([], [])


# --------------------------------------------------------------------------- the rule


def test_which_way_each_trigger_fires() -> None:
    assert fires_rising(BUY, STOP) and fires_rising(SELL, TP)
    assert not fires_rising(SELL, STOP) and not fires_rising(BUY, TP)
    # At the trigger price itself a trigger fires (ties fire), so it cannot be placed there.
    assert on_firing_side(BUY, STOP, 100, 100) and on_firing_side(SELL, STOP, 100, 100)
    assert not on_firing_side(BUY, STOP, 101, 100) and not on_firing_side(SELL, STOP, 99, 100)
    assert on_firing_side(BUY, TP, 101, 100) and not on_firing_side(BUY, TP, 99, 100)


def test_market_bound_rounds_against_the_trader() -> None:
    # 5% from a mark of 95: buy no higher than ⌊99.75⌋, sell no lower than ⌈90.25⌉.
    assert market_bound(BUY, 95, 50_000, 10**6) == 99
    assert market_bound(SELL, 95, 50_000, 10**6) == 91
    assert market_bound(SELL, 1, 50_000, 10**6) == 1
    assert market_bound(BUY, 10**6, 50_000, 10**6) == 10**6


def test_trigger_book_fires_a_prefix_and_a_suffix() -> None:
    b = TriggerBook(0)
    ts = [Trigger(i, b"o" * 32, 0, side, kind, MARKET, tp, 0, 1, i, False, 1)
          for i, (side, kind, tp) in enumerate([
              (BUY, STOP, 105), (BUY, STOP, 110), (SELL, TP, 105),
              (SELL, STOP, 95), (SELL, STOP, 90), (BUY, TP, 95),
          ], 1)]
    for t in ts:
        b.add(t)
    assert len(b) == 6
    assert b.fired_ids(100) == []
    assert sorted(b.fired_ids(105)) == [1, 3]
    assert sorted(b.fired_ids(111)) == [1, 2, 3]
    assert sorted(b.fired_ids(95)) == [4, 6]
    assert sorted(b.fired_ids(1)) == [4, 5, 6]
    b.remove(ts[0])
    assert sorted(b.fired_ids(105)) == [3]


# --------------------------------------------------------------------------- scenarios


def test_stop_loss_fires_when_the_mark_falls_to_it(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    long_bob(h)
    r = h.ok(h.batch("bob", trig(SELL, STOP, 95, 10, cid=1, reduce_only=True)))
    assert [e.order_id for e in events(r, "trigger_placed")] == [2]  # Alice's ask took 1
    (t,) = h.ex.open_triggers(h.key("bob"))
    assert (t.trigger_id, t.trigger_price, t.client_id) == (2, 95, 1)
    assert h.ex.l2(0) == ([], [])  # untriggered: not in the book
    # Carol bids 10 @ 94; with the index at 97 the mark is 97: nothing fires.
    r = h.ok(h.oracle(97), h.place("carol", BUY, 94, 10))
    assert not events(r, "triggered") and h.ex.open_triggers(h.key("bob"))
    # The index falls to 95: the mark (median of 95, bid 94, no ask) is 95, a tie: it fires.
    r = h.ok(h.oracle(95))
    assert [e.order_id for e in events(r, "triggered")] == [2]
    assert [(tr.price, tr.size, tr.taker) for tr in r.trades] == [(94, 10, h.key("bob"))]
    assert h.pos("bob") == (0, 0)
    assert h.ex.open_triggers(h.key("bob")) == []
    assert not any(k.startswith(b"T") for k, _ in h.ex.records())
    # It fired once: the mark staying low fires nothing more.
    r = h.ok(h.oracle(90))
    assert not events(r, "triggered") and not r.trades


def test_a_market_trigger_trades_no_further_than_its_slippage(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    long_bob(h)
    h.ok(h.batch("bob", trig(SELL, STOP, 95, 10, cid=1, reduce_only=True)))
    # The only bid is 85, below the 5% bound from a mark of 95 (⌈90.25⌉ = 91).
    h.ok(h.place("carol", BUY, 85, 10))
    r = h.ok(h.oracle(95))
    assert events(r, "triggered") and not r.trades
    assert h.pos("bob")[0] == 10  # the IOC found nothing within its bound and is gone
    assert h.ex.open_orders(h.key("bob")) == []


def test_take_profit_limit_rests_as_an_order_with_its_client_id(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    long_bob(h)
    r = h.block(h.batch("bob", trig(SELL, TP, 100, 10, cid=5, price=109, reduce_only=True)))
    assert r.outcomes[0].reason == Reason.TRIGGER_WRONG_SIDE  # the mark is already 100
    h.ok(h.batch("bob", trig(SELL, TP, 110, 10, cid=5, price=109, reduce_only=True)))
    r = h.ok(h.oracle(111))
    assert events(r, "triggered")
    (o,) = h.ex.open_orders(h.key("bob"))
    assert (o.side, o.price, o.remaining, o.client_id, o.reduce_only) == (SELL, 109, 10, 5, True)
    # With no bid (counted as the index) the mark stays median(111, 111, 109) = 111.
    assert h.ex.market_state(0).mark == 111


def test_fired_triggers_run_in_trigger_id_order(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    # Carol's stop (placed first, the lower trigger id) and Bob's both fire at 105; both buy.
    h.ok(h.batch("carol", trig(BUY, STOP, 104, 3, cid=1)),
         h.batch("bob", trig(BUY, STOP, 103, 3, cid=1)))
    h.ok(h.place("alice", SELL, 106, 4))
    r = h.ok(h.oracle(105))
    fired = [e.owner for e in events(r, "triggered")]
    assert fired == [h.key("carol"), h.key("bob")]
    # Carol takes 3 of the 4 lots; Bob gets the last one.
    assert [(tr.taker, tr.size) for tr in r.trades] == [(h.key("carol"), 3), (h.key("bob"), 1)]


def test_a_fired_trigger_is_checked_as_a_new_order(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    long_bob(h)
    h.ok(h.batch("bob", trig(SELL, STOP, 95, 10, cid=1, price=94, reduce_only=True)))
    h.ok(h.place("bob", SELL, 120, 10), h.place("alice", BUY, 120, 10))  # Bob is flat now
    assert h.pos("bob")[0] == 0
    r = h.ok(h.oracle(95))
    (c,) = events(r, "cancelled")
    assert (c.order_id, c.reason) == (2, Reason.REDUCE_ONLY_WOULD_INCREASE)
    assert h.ex.open_orders(h.key("bob")) == []


def test_cancels_reach_triggers_and_client_ids_are_shared(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.batch("bob", trig(BUY, STOP, 110, 1, cid=1), trig(SELL, STOP, 90, 1, cid=2)))
    r = h.block(h.place("bob", BUY, 50, 1, cid=1))
    assert r.outcomes[0].reason == Reason.DUPLICATE_CLIENT_ID
    r = h.ok(h.cancel("bob", 1))
    assert [e.order_id for e in events(r, "cancelled")] == [1]
    assert [t.client_id for t in h.ex.open_triggers(h.key("bob"))] == [2]
    h.ok(h.place("bob", BUY, 50, 1, cid=1))  # the client id is free again
    h.ok(h.cancel_all("bob"))
    assert h.ex.open_triggers(h.key("bob")) == [] and h.ex.open_orders(h.key("bob")) == []


def test_bad_triggers_are_refused_at_admission_and_change_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.batch("bob", trig(BUY, STOP, 110, 1, cid=9)))
    cases = [
        (trig(BUY, STOP, 100, 1, cid=1), Reason.TRIGGER_WRONG_SIDE),
        (trig(SELL, TP, 99, 1, cid=1), Reason.TRIGGER_WRONG_SIDE),
        (trig(SELL, STOP, 90, 1, cid=1, reduce_only=True), Reason.REDUCE_ONLY_WOULD_INCREASE),
        (trig(BUY, STOP, 110, 1, cid=9), Reason.DUPLICATE_CLIENT_ID),
        (PlaceTrigger(0, BUY, STOP, MARKET, False, 110, 105, 1, 1), Reason.INVALID_ORDER_TYPE),
        (PlaceTrigger(0, BUY, STOP, LIMIT, False, 110, 0, 1, 1), Reason.PRICE_OUT_OF_RANGE),
        (trig(BUY, STOP, 0, 1, cid=1), Reason.PRICE_OUT_OF_RANGE),
        (trig(BUY, STOP, 110, 0, cid=1), Reason.SIZE_OUT_OF_RANGE),
        (trig(BUY, STOP, 110, 1, cid=1, market=7), Reason.UNKNOWN_MARKET),
    ]
    for action, reason in cases:
        tx = h.batch("bob", action)
        assert h.ex.check_tx(tx)[0] == reason, action
        before = state_but_height(h)
        r = h.block(tx)
        assert r.outcomes[0].reason == reason, action
        assert state_but_height(h) == before, action


def test_triggers_count_against_the_open_order_bound(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    per = 64
    for k in range(MAX_OPEN_ORDERS_PER_ACCOUNT // per):
        h.ok(h.batch("bob", *(trig(BUY, STOP, 200 + k * per + j, 1, cid=k * per + j + 1)
                              for j in range(per))))
    assert len(h.ex.open_triggers(h.key("bob"))) == MAX_OPEN_ORDERS_PER_ACCOUNT
    r = h.block(h.place("bob", BUY, 50, 1, cid=10**6))
    assert r.outcomes[0].reason == Reason.TOO_MANY_OPEN_ORDERS
    r = h.block(h.batch("bob", trig(BUY, STOP, 150, 1, cid=10**6)))
    assert r.outcomes[0].reason == Reason.TOO_MANY_OPEN_ORDERS


def test_liquidation_cancels_the_accounts_triggers(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db", {"alice": 100_000 * USD, "bob": 1_000 * USD})
    h.ok(h.place("alice", SELL, 100, 90), h.place("bob", BUY, 100, 90))
    h.ok(h.batch("bob", trig(BUY, STOP, 150, 1, cid=3)))
    h.ok(h.place("alice", BUY, 80, 100))
    r = h.ok(h.oracle(88))  # Bob's equity: 1,000 − 90 × 12 < 0: liquidated
    assert h.pos("bob")[0] == 0
    assert h.ex.open_triggers(h.key("bob")) == []
    assert any(e.reason == Reason.LIQUIDATION for e in events(r, "cancelled"))


def test_triggers_survive_a_restart(tmp_path: Path) -> None:
    from lockstep.node.exchange.executor import Exchange

    h = Harness(tmp_path / "x.db")
    long_bob(h)
    h.ok(h.batch("bob", trig(SELL, STOP, 95, 10, cid=1, reduce_only=True),
                 trig(BUY, TP, 90, 2, cid=2, price=90)))
    records, root = h.ex.records(), h.ex.state_root
    h.ex.close()
    again = Exchange.open(h.path, h.genesis)  # rebuilds and checks the root itself
    assert again.records() == records and again.state_root == root
    assert [t.client_id for t in again.open_triggers(h.key("bob"))] == [1, 2]
    again.close()


# --------------------------------------------------------------------------- property

SIDES_KINDS = st.tuples(st.sampled_from([BUY, SELL]), st.sampled_from([STOP, TP]))


@settings(max_examples=40, deadline=None)
@given(
    triggers=st.lists(st.tuples(SIDES_KINDS, st.integers(60, 140)), min_size=1, max_size=12),
    path=st.lists(st.integers(50, 150), min_size=1, max_size=12),
)
def test_each_trigger_fires_once_in_the_first_block_whose_mark_reaches_it(
    tmp_path_factory, triggers, path
) -> None:
    """Market triggers on an empty book (the mark is the index, and a fired IOC finds nothing,
    so nothing rests to move it): a trigger fires in the first block whose mark is on its
    firing side, exactly once, and never before."""
    h = Harness(tmp_path_factory.mktemp("t") / "x.db")
    placed: dict[int, tuple[Side, TriggerKind, int]] = {}
    actions = []
    for cid, ((side, kind), tp) in enumerate(triggers, 1):
        if on_firing_side(side, kind, tp, 100):
            continue
        actions.append(trig(side, kind, tp, 1, cid=cid))
    if not actions:
        return
    r = h.ok(h.batch("bob", *actions))
    by_cid = {a.client_id: a for a in actions}
    for e in events(r, "trigger_placed"):
        a = by_cid[e.client_id]
        placed[e.order_id] = (a.side, a.kind, a.trigger_price)
    fired_at: dict[int, int] = {}
    for step, index in enumerate(path):
        r = h.ok(h.oracle(index))
        mark = h.ex.market_state(0).mark
        assert mark == index
        for e in events(r, "triggered"):
            assert e.order_id not in fired_at, "fired twice"
            fired_at[e.order_id] = step
        for tid, (side, kind, tp) in placed.items():
            if tid not in fired_at:
                assert not on_firing_side(side, kind, tp, mark), "should have fired"
    for tid, step in fired_at.items():
        side, kind, tp = placed[tid]
        first = next(i for i, m in enumerate(path) if on_firing_side(side, kind, tp, m))
        assert step == first
    assert {t.trigger_id for t in h.ex.open_triggers(h.key("bob"))} == set(placed) - set(
        fired_at
    )


# --------------------------------------------------------------------------- TP/SL groups


def tpsl(side: Side, kind: TriggerKind, trigger_price: int, cid: int, size: int = 0,
         parent: int = 0, price: int = 0) -> PlaceTrigger:
    """A reduce-only TP/SL of the position (``parent`` 0) or of the order ``parent``."""
    ot = MARKET if price == 0 else LIMIT
    attach = Attach.ORDER if parent else Attach.POSITION
    return PlaceTrigger(0, side, kind, ot, True, trigger_price, price, size, cid, attach, parent)


def test_position_tp_and_sl_one_cancels_the_other(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    long_bob(h)
    h.ok(h.batch("bob", tpsl(SELL, TP, 110, cid=1), tpsl(SELL, STOP, 90, cid=2)))
    assert len(h.ex.open_triggers(h.key("bob"))) == 2
    h.ok(h.place("carol", BUY, 109, 20))
    r = h.ok(h.oracle(110))  # the take-profit fires for the whole position (size 0)
    assert [e.client_id for e in events(r, "triggered")] == [1]
    assert [(e.client_id, e.reason) for e in events(r, "cancelled")] == [
        (2, Reason.ONE_CANCELS_OTHER)
    ]
    assert [(tr.price, tr.size) for tr in r.trades] == [(109, 10)]
    assert h.pos("bob")[0] == 0 and h.ex.open_triggers(h.key("bob")) == []


def test_closing_the_position_cancels_its_tpsl(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    long_bob(h)
    h.ok(h.batch("bob", tpsl(SELL, TP, 110, cid=1), tpsl(SELL, STOP, 90, cid=2),
                 trig(BUY, STOP, 150, 1, cid=3)))
    r = h.ok(h.place("alice", BUY, 100, 10), h.place("bob", SELL, 100, 10))
    assert sorted((e.client_id, e.reason) for e in events(r, "cancelled")) == [
        (1, Reason.POSITION_CLOSED), (2, Reason.POSITION_CLOSED)
    ]
    # A trigger of its own is not a TP/SL: it stays.
    assert [t.client_id for t in h.ex.open_triggers(h.key("bob"))] == [3]


def test_order_tpsl_wait_for_the_parents_first_fill(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    r = h.ok(h.batch("bob", h_place(BUY, 99, 10, cid=1),
                     tpsl(SELL, TP, 110, cid=2, parent=1), tpsl(SELL, STOP, 90, cid=3, parent=1)))
    kids = h.ex.open_triggers(h.key("bob"))
    assert [(t.client_id, t.size, t.parent_order_id > 0) for t in kids] == [
        (2, 10, True), (3, 10, True)
    ]
    # Dormant: a mark beyond the stop fires nothing while the parent has not filled.
    h.ok(h.oracle(89))
    assert len(h.ex.open_triggers(h.key("bob"))) == 2
    h.ok(h.oracle(100))
    r = h.ok(h.place("alice", SELL, 99, 4))  # the parent's first fill wakes both children
    assert all(t.parent_order_id == 0 for t in h.ex.open_triggers(h.key("bob")))
    h.ok(h.place("carol", BUY, 89, 10))
    r = h.ok(h.oracle(90))
    assert [e.client_id for e in events(r, "triggered")] == [3]
    assert (3, Reason.ONE_CANCELS_OTHER) not in [(e.client_id, e.reason)
                                                 for e in events(r, "cancelled")]
    assert (2, Reason.ONE_CANCELS_OTHER) in [(e.client_id, e.reason)
                                             for e in events(r, "cancelled")]
    assert h.pos("bob")[0] == 0  # the stop sold the 4 lots (reduce-only cut the 10 to 4)


def test_order_tpsl_go_with_a_parent_cancelled_unfilled(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.batch("bob", h_place(BUY, 99, 10, cid=1), tpsl(SELL, STOP, 90, cid=2, parent=1)))
    r = h.ok(h.cancel("bob", 1))
    assert [(e.client_id, e.reason) for e in events(r, "cancelled")] == [
        (1, Reason.CANCELLED), (2, Reason.PARENT_CANCELLED)
    ]
    assert h.ex.open_triggers(h.key("bob")) == []


def test_order_tpsl_follow_a_requeued_parent(tmp_path: Path) -> None:
    from lockstep.consensus.actions import ModifyOrder
    from lockstep.node.exchange.executor import Exchange

    h = Harness(tmp_path / "x.db")
    h.ok(h.batch("bob", h_place(BUY, 99, 10, cid=1), tpsl(SELL, STOP, 90, cid=2, parent=1)))
    h.ok(h.batch("bob", ModifyOrder(0, 1, 98, 10, False)))
    (o,) = h.ex.open_orders(h.key("bob"))
    (t,) = h.ex.open_triggers(h.key("bob"))
    assert t.parent_order_id == o.order_id and o.price == 98
    h.ex.close()
    h.ex = again = Exchange.open(h.path, h.genesis)  # dormant children survive a restart
    r = h.ok(h.place("alice", SELL, 98, 10))
    assert again.open_triggers(h.key("bob"))[0].parent_order_id == 0
    assert not events(r, "cancelled")


def test_bad_tpsl_are_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    cases = [
        # Not reduce-only.
        (PlaceTrigger(0, SELL, STOP, MARKET, False, 90, 0, 1, 1, Attach.POSITION, 0),
         Reason.INVALID_ATTACHMENT),
        # A parent that is not in the batch, or on the same side.
        (tpsl(SELL, STOP, 90, cid=2, parent=1), Reason.INVALID_ATTACHMENT),
        # A position TP/SL with no position to reduce.
        (tpsl(SELL, STOP, 90, cid=2), Reason.REDUCE_ONLY_WOULD_INCREASE),
        # A plain trigger of size 0.
        (trig(SELL, STOP, 90, 0, cid=2), Reason.SIZE_OUT_OF_RANGE),
    ]
    for action, reason in cases:
        tx = h.batch("bob", action)
        assert h.ex.check_tx(tx)[0] == reason, action
        assert h.block(tx).outcomes[0].reason == reason, action
    r = h.block(h.batch("bob", h_place(SELL, 120, 1, cid=1),
                        tpsl(SELL, TP, 90, cid=2, parent=1)))
    assert r.outcomes[0].reason == Reason.INVALID_ATTACHMENT
    assert h.ex.open_orders(h.key("bob")) == [] and h.ex.open_triggers(h.key("bob")) == []


def h_place(side: Side, price: int, size: int, cid: int):
    from lockstep.consensus.actions import PlaceOrder, TimeInForce

    return PlaceOrder(0, side, LIMIT, TimeInForce.GTC, False, price, size, cid)


@settings(max_examples=40, deadline=None)
@given(tp=st.integers(101, 140), sl=st.integers(60, 99),
       path=st.lists(st.integers(50, 150), min_size=1, max_size=10))
def test_one_cancels_other_never_fires_both(tmp_path_factory, tp, sl, path) -> None:
    """Whatever the mark does, at most one of a position's TP and SL fires, and the other
    leaves in the same block."""
    h = Harness(tmp_path_factory.mktemp("oco") / "x.db")
    long_bob(h)
    h.ok(h.batch("bob", tpsl(SELL, TP, tp, cid=1), tpsl(SELL, STOP, sl, cid=2)))
    fired = []
    for index in path:
        r = h.ok(h.oracle(index))
        now = [e.client_id for e in events(r, "triggered")]
        fired += now
        if now:
            gone = {(e.client_id, e.reason) for e in events(r, "cancelled")}
            assert (3 - now[0], Reason.ONE_CANCELS_OTHER) in gone
            assert h.ex.open_triggers(h.key("bob")) == []
    assert len(fired) <= 1
