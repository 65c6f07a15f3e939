"""Scenario tests for the exchange with hand-computed numbers, and the shared test harness.

Market used throughout ("TEST-PERP", id 0): one tick = $1 per whole unit, one lot = 1 unit, so
the contract multiplier is 1,000,000 atoms per (tick × lot) and a fill of ``q`` lots at ``p``
ticks has notional ``p × q`` USD = ``p × q × 10^6`` atoms. Maker fee 200 ppm (0.02%), taker fee
500 ppm (0.05%), fees rounded up per fill. One leverage tier: initial margin 10%,
maintenance 5%. Liquidation fee 1%. Funding every 1,000 ms, clamped to ±0.5%.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from lockstep.consensus.actions import (
    Batch,
    Cancel,
    CancelAll,
    CancelOrder,
    MarketPrice,
    OraclePrice,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    SignedTx,
    TimeInForce,
    Transfer,
    Withdraw,
)
from lockstep.consensus.crypto import Signer
from lockstep.consensus.genesis import (
    Account,
    Genesis,
    LeverageTier,
    Market,
    Validator,
    default_timing,
)
from lockstep.consensus.vrf import vrf_keypair_from_seed
from lockstep.node.exchange.executor import BlockResult, Exchange
from lockstep.node.exchange.mempool_rules import FEE_ACCOUNT, INSURANCE_FUND, Reason

from ..conftest import seed_of

USD = 1_000_000
MULT = 1_000_000
BUY, SELL = Side.BUY, Side.SELL


def test_market(market_id: int = 0, **over: object) -> Market:
    params: dict = {
        "market_id": market_id,
        "symbol": f"TEST{market_id}-PERP",
        "base_decimals": 0,
        "tick_size_atoms": 1_000_000,
        "lot_size_units": 1,
        "min_size_lots": 1,
        "max_size_lots": 1_000_000,
        "max_price_ticks": 1_000_000,
        "leverage_tiers": (LeverageTier(2**62 - 1, 100_000, 50_000),),
        "maker_fee_ppm": 200,
        "taker_fee_ppm": 500,
        "liquidation_fee_ppm": 10_000,
        "funding_interval_ms": 1_000,
        "funding_clamp_ppm": 5_000,
        "oracle_staleness_ms": 10_000,
        "initial_price_ticks": 100,
        "trigger_slippage_ppm": 50_000,
    }
    params.update(over)
    return Market(**params)


test_market.__test__ = False  # type: ignore[attr-defined]


class Harness:
    """An exchange over a fresh SQLite file, with named traders and automatic nonces."""

    def __init__(
        self,
        path: Path,
        balances: dict[str, int] | None = None,
        insurance: int = 1_000_000 * USD,
        markets: tuple[Market, ...] | None = None,
        n_validators: int = 4,
    ) -> None:
        balances = balances or {"alice": 100_000 * USD, "bob": 100_000 * USD}
        self.traders = {name: Signer(seed_of(f"trader-{name}")) for name in balances}
        self.validators = [Signer(seed_of(f"validator-{i}")) for i in range(n_validators)]
        vals = tuple(
            Validator(s.public_key, vrf_keypair_from_seed(seed_of(f"vrf-{i}"))[0], 1,
                      f"127.0.0.1:{27000 + i}", f"v{i}")
            for i, s in enumerate(self.validators)
        )
        accounts = tuple(sorted(
            (Account(self.traders[n].public_key, b) for n, b in balances.items()),
            key=lambda a: a.owner,
        ))
        self.genesis = Genesis(
            "scenario", 0, vals, markets or (test_market(),), accounts, insurance,
            default_timing(),
        )
        self.path = path
        self.ex = Exchange.open(path, self.genesis)
        self.ts = 0
        self._nonce = itertools.count(1)

    # ----------------------------------------------------------------------- tx builders

    def key(self, name: str) -> bytes:
        if name == "fund":
            return INSURANCE_FUND
        if name == "fees":
            return FEE_ACCOUNT
        return self.traders[name].public_key

    def _sign(self, name: str, body_cls: type, *fields: object, expiry: int | None = None
              ) -> SignedTx:
        s = self.traders[name]
        nonce = next(self._nonce)
        exp = self.ex.height + 10 if expiry is None else expiry
        return body_cls(s.public_key, nonce, exp, *fields).sign(s, self.genesis.chain_id)

    def place(self, name: str, side: Side, price: int, size: int, cid: int | None = None,
              tif: TimeInForce = TimeInForce.GTC, market_order: bool = False,
              reduce_only: bool = False, market: int = 0) -> SignedTx:
        ot = OrderType.MARKET if market_order else OrderType.LIMIT
        cid = next(self._nonce) if cid is None else cid
        return self._sign(name, Order, PlaceOrder(market, side, ot, tif, reduce_only, price,
                                                  size, cid))

    def cancel(self, name: str, cid: int, market: int = 0) -> SignedTx:
        return self._sign(name, Cancel, CancelOrder(market, cid))

    def cancel_all(self, name: str, market: int = 0) -> SignedTx:
        return self._sign(name, Cancel, CancelAll(market))

    def batch(self, name: str, *actions: object) -> SignedTx:
        return self._sign(name, Batch, tuple(actions))

    def transfer(self, name: str, to: str, amount: int) -> SignedTx:
        return self._sign(name, Transfer, self.key(to), amount)

    def withdraw(self, name: str, amount: int) -> SignedTx:
        return self._sign(name, Withdraw, amount, b"dest")

    def oracle(self, price: int, market: int = 0, validators: int | None = None
               ) -> list[SignedTx]:
        out = []
        for s in self.validators[: validators or len(self.validators)]:
            body = OraclePrice(s.public_key, next(self._nonce), self.ex.height + 10,
                               (MarketPrice(market, price),))
            out.append(body.sign(s, self.genesis.chain_id))
        return out

    # ----------------------------------------------------------------------- blocks

    def block(self, *txs: SignedTx | list[SignedTx], dt: int = 100) -> BlockResult:
        flat: list[SignedTx] = []
        for t in txs:
            flat.extend(t if isinstance(t, list) else [t])
        self.ts += dt
        return self.ex.apply_block(self.ex.height + 1, self.ts, flat)

    def ok(self, *txs: SignedTx | list[SignedTx], dt: int = 100) -> BlockResult:
        r = self.block(*txs, dt=dt)
        assert not r.rejections, r.rejections
        return r

    # ----------------------------------------------------------------------- reads

    def collateral(self, name: str) -> int:
        return self.ex.ledger.accounts[self.key(name)].collateral

    def pos(self, name: str, market: int = 0) -> tuple[int, int]:
        p = self.ex.ledger.accounts[self.key(name)].positions.get(market)
        return (0, 0) if p is None else (p.size, p.open_notional)

    def total_money(self) -> int:
        """Σ collateral − Σ open notional over every account: conserved but for withdrawals."""
        led = self.ex.ledger
        return sum(a.collateral - sum(p.open_notional for p in a.positions.values())
                   for a in led.accounts.values())


# --------------------------------------------------------------------------- scenarios


def test_partial_fill_across_three_levels_with_fees(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db",
                {"alice": 100_000 * USD, "bob": 100_000 * USD, "carol": 100_000 * USD})
    total0 = h.total_money()
    # Alice offers 2 @ 101, 3 @ 102; Carol offers 4 @ 103 (after Alice's, same block order).
    h.ok(h.place("alice", SELL, 101, 2), h.place("alice", SELL, 102, 3),
         h.place("carol", SELL, 103, 4, cid=7))
    # Bob buys 7 up to 103: 2 @ 101, 3 @ 102, 2 of Carol's 4 @ 103; 2 left resting at 103.
    r = h.ok(h.place("bob", BUY, 103, 7))
    assert [(t.price, t.size) for t in r.trades] == [(101, 2), (102, 3), (103, 2)]
    # Notional: 202 + 306 + 206 = 714 USD.
    # Taker fees (0.05%, rounded up per fill): 0.101 + 0.153 + 0.103 = 0.357 USD.
    assert [t.taker_fee for t in r.trades] == [101_000, 153_000, 103_000]
    # Maker fees (0.02%): 0.0404 + 0.0612 + 0.0412 = 0.1428 USD.
    assert [t.maker_fee for t in r.trades] == [40_400, 61_200, 41_200]
    assert h.pos("bob") == (7, 714 * USD)
    assert h.pos("alice") == (-5, -508 * USD)
    assert h.pos("carol") == (-2, -206 * USD)
    assert h.collateral("bob") == 100_000 * USD - 357_000
    assert h.collateral("alice") == 100_000 * USD - 101_600
    assert h.collateral("carol") == 100_000 * USD - 41_200
    assert h.collateral("fees") == 357_000 + 142_800
    assert h.ex.l2(0) == ([], [(103, 2)])
    assert h.total_money() == total0
    # Carol's order keeps its place and shows 2 of 4 remaining.
    (o,) = h.ex.open_orders(h.key("carol"))
    assert (o.size, o.remaining, o.client_id) == (4, 2, 7)


def test_closing_realizes_pnl(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 100, 10), h.place("bob", BUY, 100, 10))
    # Bob long 10 @ 100 (fees: alice maker 0.2 USD, bob taker 0.5 USD).
    h.ok(h.place("alice", BUY, 110, 4), h.place("bob", SELL, 110, 4))
    # Bob sells 4 @ 110: realizes 4 × (110 − 100) = 40 USD; taker fee 0.22, earlier 0.5.
    assert h.pos("bob") == (6, 600 * USD)
    p = h.ex.ledger.accounts[h.key("bob")].positions[0]
    assert p.realized_pnl == 40 * USD
    assert h.collateral("bob") == 100_000 * USD + 40 * USD - 500_000 - 220_000
    # Alice was short 10 @ 100, bought back 4 @ 110: realizes −40 USD; maker fees 0.2 + 0.088.
    assert h.collateral("alice") == 100_000 * USD - 40 * USD - 200_000 - 88_000
    assert h.pos("alice") == (-6, -600 * USD)


def test_self_trade_prevention_cancels_resting(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 100, 5, cid=1), h.place("bob", SELL, 101, 5))
    r = h.ok(h.place("alice", BUY, 101, 5))
    # Alice's own ask at 100 is cancelled, then she trades with Bob at 101.
    assert [(t.price, t.size, t.maker) for t in r.trades] == [(101, 5, h.key("bob"))]
    assert any(e.kind == "cancelled" and e.reason == Reason.SELF_TRADE for e in r.events
               if hasattr(e, "kind"))
    assert h.ex.open_orders(h.key("alice")) == []


def test_post_only_ioc_market_and_reduce_only(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 100, 5))
    r = h.block(h.place("bob", BUY, 100, 1, tif=TimeInForce.POST_ONLY))
    assert r.outcomes[0].reason == Reason.POST_ONLY_WOULD_CROSS
    r = h.block(h.place("bob", BUY, 99, 1, tif=TimeInForce.POST_ONLY))
    assert r.outcomes[0].reason == Reason.OK and h.ex.l2(0) == ([(99, 1)], [(100, 5)])
    # IOC for 8 takes the 5 available and drops the rest.
    r = h.ok(h.place("bob", BUY, 100, 8, tif=TimeInForce.IOC))
    assert sum(t.size for t in r.trades) == 5 and h.ex.l2(0) == ([(99, 1)], [])
    # A market order with nothing within its worst price reports NO_LIQUIDITY.
    r = h.block(h.place("alice", BUY, 120, 1, market_order=True))
    assert r.outcomes[0].reason == Reason.NO_LIQUIDITY
    # Reduce-only: Bob is long 5; a reduce-only buy would increase it.
    r = h.block(h.place("bob", BUY, 90, 1, reduce_only=True))
    assert r.outcomes[0].reason == Reason.REDUCE_ONLY_WOULD_INCREASE
    # A reduce-only sell of 9 is cut to 5 and rests.
    r = h.ok(h.place("bob", SELL, 105, 9, reduce_only=True))
    assert h.ex.l2(0) == ([(99, 1)], [(105, 5)])


def test_cancels_apply_before_placements(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 100, 5, cid=42))
    # Bob's buy comes first in the block, Alice's cancel second: the cancel still wins.
    r = h.block(h.place("bob", BUY, 100, 5), h.cancel("alice", 42))
    assert [o.reason for o in r.outcomes] == [Reason.OK, Reason.OK]
    assert r.trades == () and h.ex.l2(0) == ([(100, 5)], [])


def test_batch_is_atomic(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db", {"alice": 1_000 * USD, "bob": 100_000 * USD})
    h.ok(h.place("alice", BUY, 90, 1, cid=1))
    root = h.ex.state_root
    # Second placement needs 10% of 100 × 200 = 2,000 USD margin: the whole batch is refused.
    bad = h.batch("alice", CancelOrder(0, 1), PlaceOrder(0, BUY, OrderType.LIMIT,
                  TimeInForce.GTC, False, 91, 1, 2),
                  PlaceOrder(0, BUY, OrderType.LIMIT, TimeInForce.GTC, False, 92, 200, 3))
    r = h.block(bad)
    assert (r.outcomes[0].reason, r.outcomes[0].action_index) == (Reason.INSUFFICIENT_MARGIN, -1)
    assert h.ex.l2(0) == ([(90, 1)], [])
    # A cancel of an order that is not resting refuses the batch, naming the action.
    r = h.block(h.batch("alice", PlaceOrder(0, BUY, OrderType.LIMIT, TimeInForce.GTC, False,
                                            80, 1, 5), CancelOrder(0, 6)))
    assert (r.outcomes[0].reason, r.outcomes[0].action_index) == (Reason.ORDER_NOT_FOUND, 1)
    assert h.ex.l2(0) == ([(90, 1)], [])
    assert root != h.ex.state_root  # height moved on, but no order changed:
    assert [o.client_id for o in h.ex.open_orders(h.key("alice"))] == [1]
    good = h.batch("alice", CancelOrder(0, 1), PlaceOrder(0, BUY, OrderType.LIMIT,
                   TimeInForce.GTC, False, 91, 1, 1), CancelAll(0),
                   PlaceOrder(0, SELL, OrderType.LIMIT, TimeInForce.GTC, False, 120, 2, 9))
    h.ok(good)
    assert h.ex.l2(0) == ([], [(120, 2)])


def test_replay_and_expiry(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    tx = h.place("alice", SELL, 100, 1)
    h.ok(tx)
    r = h.block(tx)
    assert r.outcomes[0].reason == Reason.REPLAYED
    assert h.ex.admit(tx.encode()).reason == Reason.REPLAYED
    old = h._sign("alice", Order, PlaceOrder(0, SELL, OrderType.LIMIT, TimeInForce.GTC, False,
                                             100, 1, 5), expiry=h.ex.height)
    r = h.block(old)
    assert r.outcomes[0].reason == Reason.EXPIRED
    # A repeat is refused in its block, but the transaction's status stays what it did first.
    tx_id = tx.tx_id(h.genesis.chain_id)
    assert h.ex.tx_status(tx_id).reason == Reason.OK
    # So does a copy included again once it has expired (its nonce forgotten).
    while h.ex.height <= tx.body.expiry_height:
        h.ok()
    assert h.block(tx).outcomes[0].reason == Reason.EXPIRED
    assert h.ex.tx_status(tx_id).reason == Reason.OK
    assert h.ex.tx_status(old.tx_id(h.genesis.chain_id)).reason == Reason.EXPIRED


def test_transfer_and_withdraw(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db", {"alice": 1_000 * USD, "bob": 0})
    h.ok(h.transfer("alice", "bob", 300 * USD), h.withdraw("alice", 200 * USD))
    assert h.collateral("alice") == 500 * USD and h.collateral("bob") == 300 * USD
    r = h.block(h.withdraw("bob", 301 * USD))
    assert r.outcomes[0].reason == Reason.INSUFFICIENT_BALANCE
    # With a position, only collateral above the initial margin can leave.
    h.ok(h.place("alice", SELL, 100, 40), h.place("bob", BUY, 100, 20))
    # Bob: long 20 @ 100, IM 10% of 2,000 = 200 USD; collateral 300 − 1 (fee) = 299.
    r = h.block(h.withdraw("bob", 100 * USD))
    assert r.outcomes[0].reason == Reason.INSUFFICIENT_BALANCE
    h.ok(h.withdraw("bob", 99 * USD))


def test_insufficient_margin(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db", {"alice": 1_000 * USD, "bob": 100_000 * USD})
    # 10% initial margin: 1,000 USD carries 10,000 USD notional = 100 lots at 100.
    r = h.block(h.place("alice", BUY, 100, 101))
    assert r.outcomes[0].reason == Reason.INSUFFICIENT_MARGIN
    r = h.block(h.place("alice", BUY, 100, 100))
    assert r.outcomes[0].reason == Reason.OK


# --------------------------------------------------------------------------- prices


def test_weighted_median_and_staleness() -> None:
    from lockstep.node.exchange.prices import index_price, mark_price, weighted_median

    a, b, c, d = (bytes([i]) * 32 for i in range(4))
    assert weighted_median([]) is None
    # Sorted by price: 99 (w1), 100 (w1), 101 (w2): half of 4 is reached at 100.
    assert weighted_median([(101, c, 2), (99, a, 1), (100, b, 1)]) == 100
    assert weighted_median([(101, c, 3), (99, a, 1)]) == 101
    obs = [(99, a, 1, 0), (100, b, 1, 900), (120, c, 1, 1_000), (500, d, 1, 1_000)]
    # At t=1,000 with 500 ms staleness, a (stamped 0) is stale: median of 100, 120, 500 = 120.
    assert index_price(obs, 1_000, 500, 4, 7) == 120
    # Fresh weight must exceed a third of the total: one of four is not enough.
    assert index_price(obs[:1], 0, 500, 4, 7) == 7
    assert index_price(obs[:2], 900, 1_000, 4, 7) == 99
    # Mark: index clamped into the spread; a missing side counts as the index.
    assert mark_price(100, 98, 103) == 100
    assert mark_price(100, 101, 103) == 101
    assert mark_price(100, None, 97) == 100  # one-sided: the index stands
    assert mark_price(100, None, None) == 100


def test_index_and_mark_through_blocks(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    ms = h.ex.market_state(0)
    assert (ms.index, ms.mark) == (100, 100)  # initial_price_ticks
    h.ok(h.oracle(120, validators=1))  # 1 of 4 validators: no quorum, index stays
    assert ms.index == 100
    h.ok(h.oracle(120, validators=2))
    assert ms.index == 120
    # Staleness is 10 s of block time: after 10.1 s without observations the index holds.
    h.ok(dt=10_100)
    assert ms.index == 120
    # A two-sided book below the index pulls the mark to its ask.
    h.ok(h.place("alice", BUY, 110, 1), h.place("bob", SELL, 112, 1))
    assert (ms.index, ms.mark) == (120, 112)
