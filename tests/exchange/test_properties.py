"""Property tests: random streams of valid and invalid actions, price moves and funding
intervals. After every block the invariants hold; at the end, replaying the same blocks into a
fresh database gives the same SQLite contents and state root, and reopening the file rebuilds
the same book and records."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from lockstep.consensus.actions import (
    CancelAll,
    CancelOrder,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    SignedTx,
    TimeInForce,
)
from lockstep.node.exchange.executor import Exchange
from lockstep.node.exchange.mempool_rules import SYSTEM_ACCOUNTS
from lockstep.node.exchange.state_root import full_root

from .test_executor import USD, Harness, test_market

TRADERS = ("alice", "bob", "carol", "dave")
BALANCES = {"alice": 3_000 * USD, "bob": 20_000 * USD, "carol": 1_500 * USD,
            "dave": 100_000 * USD}
MARKETS = (test_market(0), test_market(1, tick_size_atoms=1, initial_price_ticks=10_000,
                                      max_price_ticks=100_000))

traders = st.sampled_from(TRADERS)
sides = st.sampled_from([Side.BUY, Side.SELL])
markets = st.sampled_from([0, 1])
tifs = st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC,
                        TimeInForce.POST_ONLY])


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="exprop-"))
        self.pending: list[SignedTx] = []
        self.blocks: list[tuple[int, int, list[SignedTx]]] = []
        self.sent: list[SignedTx] = []
        self.cids: dict[tuple[str, int], list[int]] = {}
        self.index = {0: 100, 1: 10_000}

    @initialize(insurance_usd=st.sampled_from([0, 50, 400, 1_000_000]))
    def start(self, insurance_usd: int) -> None:
        """An empty fund reaches ADL often, a large one takes positions over."""
        self.h = Harness(self.dir / "a.db", dict(BALANCES), insurance=insurance_usd * USD,
                         markets=MARKETS)
        self.money0 = self.h.total_money()

    # ----------------------------------------------------------------------- actions

    def _price(self, market: int, offset_pct: int) -> int:
        return max(1, self.index[market] * (100 + offset_pct) // 100)

    @rule(t=traders, side=sides, market=markets, off=st.integers(-8, 8),
          size=st.integers(1, 40), tif=tifs, ro=st.booleans())
    def place(self, t: str, side: Side, market: int, off: int, size: int, tif: TimeInForce,
              ro: bool) -> None:
        tx = self.h.place(t, side, self._price(market, off), size, tif=tif,
                          reduce_only=ro and tif != TimeInForce.POST_ONLY, market=market)
        self.cids.setdefault((t, market), []).append(tx.body.place.client_id)
        self.pending.append(tx)

    @rule(maker=traders, taker=traders, side=sides, market=markets, size=st.integers(1, 120),
          off=st.integers(-2, 2))
    def trade(self, maker: str, taker: str, side: Side, market: int, size: int,
              off: int) -> None:
        """A resting order and an opposite IOC at its price: builds positions quickly."""
        price = self._price(market, off)
        other = Side.SELL if side == Side.BUY else Side.BUY
        self.pending.append(self.h.place(maker, side, price, size, market=market))
        self.pending.append(self.h.place(taker, other, price, size, tif=TimeInForce.IOC,
                                         market=market))

    @rule(t=traders, side=sides, market=markets, size=st.integers(1, 60),
          slip=st.integers(0, 10))
    def market_order(self, t: str, side: Side, market: int, size: int, slip: int) -> None:
        off = slip if side == Side.BUY else -slip
        self.pending.append(self.h.place(t, side, self._price(market, off), size,
                                         tif=TimeInForce.IOC, market_order=True, market=market))

    @rule(t=traders, market=markets, data=st.data())
    def cancel(self, t: str, market: int, data: st.DataObject) -> None:
        known = self.cids.get((t, market)) or [12345]
        self.pending.append(self.h.cancel(t, data.draw(st.sampled_from(known)), market))

    @rule(t=traders, market=markets)
    def cancel_all(self, t: str, market: int) -> None:
        self.pending.append(self.h.cancel_all(t, market))

    @rule(t=traders, market=markets, n=st.integers(1, 4), off=st.integers(1, 6),
          size=st.integers(1, 30), cancel_first=st.booleans())
    def batch(self, t: str, market: int, n: int, off: int, size: int,
              cancel_first: bool) -> None:
        actions: list = [CancelAll(market)] if cancel_first else []
        for i in range(n):
            side = Side.BUY if i % 2 == 0 else Side.SELL
            price = self._price(market, -off if side == Side.BUY else off)
            cid = 10**9 + len(self.sent) * 10 + i + len(self.pending) * 1000
            actions.append(PlaceOrder(market, side, OrderType.LIMIT, TimeInForce.GTC, False,
                                      price, size, cid))
            self.cids.setdefault((t, market), []).append(cid)
        if self.cids.get((t, market)) and not cancel_first:
            actions.append(CancelOrder(market, self.cids[(t, market)][0]))
        self.pending.append(self.h.batch(t, *actions))

    @rule(market=markets, move=st.integers(-25, 25), n=st.integers(1, 4))
    def oracle(self, market: int, move: int, n: int) -> None:
        self.index[market] = max(2, self.index[market] * (100 + move) // 100)
        self.pending.extend(self.h.oracle(self.index[market], market, validators=n))

    @rule(a=traders, b=traders, amount=st.integers(1, 5_000))
    def transfer(self, a: str, b: str, amount: int) -> None:
        if a != b:
            self.pending.append(self.h.transfer(a, b, amount * USD))

    @rule(t=traders, amount=st.integers(1, 5_000))
    def withdraw(self, t: str, amount: int) -> None:
        self.pending.append(self.h.withdraw(t, amount * USD))

    @rule(kind=st.sampled_from(["price0", "size0", "market", "expired", "far"]), t=traders)
    def invalid(self, kind: str, t: str) -> None:
        h = self.h
        p = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 100, 1, 1)
        expiry = None
        if kind == "price0":
            p = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 0, 1, 1)
        elif kind == "size0":
            p = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 100, 0, 1)
        elif kind == "market":
            p = PlaceOrder(9, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 100, 1, 1)
        elif kind == "expired":
            expiry = max(0, h.ex.height)
        else:
            expiry = h.ex.height + 5_000
        self.pending.append(h._sign(t, Order, p, expiry=expiry))

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        self.pending.append(data.draw(st.sampled_from(self.sent)))

    @rule(dt=st.sampled_from([50, 100, 400, 1_000, 2_500]))
    def block(self, dt: int) -> None:
        self._apply(dt)

    def _apply(self, dt: int) -> None:
        txs, self.pending = self.pending, []
        r = self.h.block(txs, dt=dt)
        assert len(r.outcomes) == len(txs)
        self.blocks.append((r.height, r.timestamp_ms, txs))
        self.sent.extend(txs)

    @invariant()
    def blocks_fill_up(self) -> None:
        """Keep blocks small and frequent: a full block of 5 pending transactions is applied."""
        if len(self.pending) >= 5:
            self._apply(100)

    # ----------------------------------------------------------------------- invariants

    @invariant()
    def books_not_crossed(self) -> None:
        for book in self.h.ex.books.values():
            assert not book.is_crossed()
            assert book.level_lots_consistent()

    @invariant()
    def open_interest_balanced(self) -> None:
        led = self.h.ex.ledger
        for mid, ms in led.markets.items():
            longs = sum(a.positions[mid].size for a in led.accounts.values()
                        if mid in a.positions and a.positions[mid].size > 0)
            shorts = -sum(a.positions[mid].size for a in led.accounts.values()
                          if mid in a.positions and a.positions[mid].size < 0)
            assert longs == shorts == ms.long_oi == ms.short_oi

    @invariant()
    def money_conserved(self) -> None:
        ex = self.h.ex
        assert self.h.total_money() + ex.ledger.withdrawn_total == self.money0

    @invariant()
    def nobody_below_maintenance(self) -> None:
        """After a block no trader is below zero, and none holding a position is below
        maintenance: liquidation found every one (this checks the risk index by brute force)."""
        ex = self.h.ex
        for owner, acct in ex.ledger.accounts.items():
            if owner in SYSTEM_ACCOUNTS:
                continue
            equity, _, mm = ex.equity_and_requirements(acct)
            assert equity >= 0, (owner.hex(), equity)
            if any(p.size for p in acct.positions.values()):
                assert equity >= mm, (owner.hex(), equity, mm)

    @invariant()
    def open_orders_indexed(self) -> None:
        ex = self.h.ex
        in_books = {o.order_id for b in ex.books.values() for o in b.orders()}
        assert in_books == set(ex.orders)
        for acct in ex.ledger.accounts.values():
            mine = {oid for oid, o in ex.orders.items() if o.owner == acct.owner}
            assert set(acct.orders) == mine
            for mid in ex.books:
                buys = sum(o.remaining for o in acct.orders.values()
                           if o.market == mid and o.side == Side.BUY)
                sells = sum(o.remaining for o in acct.orders.values()
                            if o.market == mid and o.side == Side.SELL)
                assert (acct.open_buy.get(mid, 0), acct.open_sell.get(mid, 0)) == (buys, sells)

    # ----------------------------------------------------------------------- the end

    def teardown(self) -> None:
        if not hasattr(self, "h"):
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        try:
            if self.pending:
                self._apply(100)
            ex = self.h.ex
            assert ex.state_root == full_root(ex.records())
            dump = ex.store.dump()
            snap = ex.book_snapshot()
            records = ex.records()
            # Same blocks from empty, into a second database.
            other = Exchange.open(self.dir / "b.db", self.h.genesis)
            for height, ts, txs in self.blocks:
                other.apply_block(height, ts, txs)
            assert other.state_root == ex.state_root
            assert other.store.dump() == dump
            other.close()
            # Rebuild from the file.
            ex.close()
            again = Exchange.open(self.dir / "a.db", self.h.genesis)
            assert again.book_snapshot() == snap
            assert again.records() == records
            assert again.state_root == ex.state_root
            again.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


ExchangeMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestExchangeMachine = ExchangeMachine.TestCase
