"""Liquidation: pure helpers, and three scenarios with hand-computed numbers.

Common set-up (market of tests/exchange/test_executor.py: $1 per tick per lot, IM 10%, MM 5%,
liquidation fee 1%, taker 0.05%, maker 0.02%): Alice has 1,000 USD and buys 90 lots at 100
(notional 9,000 USD, initial margin 900, taker fee 4.50), leaving 995.50 USD of collateral and a
maintenance requirement of 5% × 90 × mark.
"""

from __future__ import annotations

from pathlib import Path

from lockstep.node.exchange.events import DeficitEvent, DeleverageEvent, LiquidationEvent
from lockstep.node.exchange.liquidation import adl_rank_key, band_price, split_pro_rata
from lockstep.node.exchange.mempool_rules import Reason

from .test_executor import BUY, SELL, USD, Harness


def test_band_price_rounds_toward_the_mark() -> None:
    assert band_price(93, 50_000, is_buy=False) == 89  # ⌈88.35⌉
    assert band_price(93, 50_000, is_buy=True) == 97  # ⌊97.65⌋
    assert band_price(1, 999_999, is_buy=False) == 1


def test_split_pro_rata_remainder_to_first() -> None:
    assert split_pro_rata(84_500_000, [(b"b", 5_280), (b"d", 2_640)]) == [
        (b"b", 56_333_334),
        (b"d", 28_166_666),
    ]
    assert split_pro_rata(0, [(b"b", 1)]) == []


def test_adl_ranking() -> None:
    keys = sorted([
        adl_rank_key(b"loser", -5, 100, 105, 1_000),
        adl_rank_key(b"low-lev", 10, 100, 90, 10_000),
        adl_rank_key(b"high-lev", 10, 100, 90, 1_000),
        adl_rank_key(bytes(32), 50, 100, 50, 100),
    ])
    assert [k[2] for k in keys] == [b"high-lev", b"low-lev", b"loser", bytes(32)]


def _setup(tmp_path: Path, insurance: int, shorts: dict[str, int]) -> Harness:
    balances = {"alice": 1_000 * USD, "carol": 100_000 * USD, **shorts}
    h = Harness(tmp_path / "x.db", balances, insurance=insurance)
    sells = [h.place(name, SELL, 100, lots) for name, lots in
             (("bob", 60), ("dave", 30)) if name in shorts] if len(shorts) > 1 else \
        [h.place(next(iter(shorts)), SELL, 100, 90)]
    h.ok(*sells)
    h.ok(h.place("alice", BUY, 100, 90))
    assert h.collateral("alice") == 995_500_000
    return h


def test_liquidation_absorbed_by_book(tmp_path: Path) -> None:
    h = _setup(tmp_path, 1_000_000 * USD, {"bob": 100_000 * USD})
    fund0 = h.collateral("fund")
    # Index 93, Carol bids 50 @ 95 and 100 @ 94: mark = median(93, 95, 93) = 93.
    # Alice: equity 995.5 − 90 × 7 = 365.5 < maintenance 5% × 8,370 = 418.5 → liquidated.
    r = h.ok(h.oracle(93), h.place("carol", BUY, 95, 50), h.place("carol", BUY, 94, 100))
    # Sell 90 no lower than ⌈93 × 0.95⌉ = 89: 50 @ 95 then 40 @ 94.
    assert [(t.price, t.size, t.liquidation) for t in r.trades] == [(95, 50, True), (94, 40, True)]
    # Realized: 50 × 95 − 5,000 = −250 and 40 × 94 − 4,000 = −240.
    # Liquidation fees (1%): 47.50 and 37.60, to the fund. 995.5 − 250 − 47.5 − 240 − 37.6.
    assert [t.taker_fee for t in r.trades] == [47_500_000, 37_600_000]
    assert h.collateral("alice") == 420_400_000
    assert h.pos("alice") == (0, 0)
    assert h.collateral("fund") == fund0 + 85_100_000
    # Carol, the maker, pays 0.02%: 0.95 + 0.752.
    assert h.collateral("carol") == 100_000 * USD - 1_702_000
    assert h.pos("carol") == (90, 8_510 * USD)
    assert h.ex.l2(0) == ([(94, 60)], [])
    assert LiquidationEvent(h.key("alice"), 0, 90, 90, 0, 0) in r.events


def test_liquidation_absorbed_by_insurance_fund(tmp_path: Path) -> None:
    h = _setup(tmp_path, 1_000_000 * USD, {"bob": 100_000 * USD})
    # Index 88, empty book: mark 88. Equity 995.5 − 1,080 = −84.5: liquidated, nothing to hit.
    r = h.ok(h.oracle(88))
    assert r.trades == ()
    # The fund takes the 90 lots at 88 and pays Alice's 84.50 deficit.
    assert h.pos("alice") == (0, 0) and h.collateral("alice") == 0
    assert h.pos("fund") == (90, 7_920 * USD)
    assert h.collateral("fund") == 1_000_000 * USD - 84_500_000
    assert LiquidationEvent(h.key("alice"), 0, 90, 0, 90, 0) in r.events
    assert DeficitEvent(h.key("alice"), 84_500_000, 84_500_000, 0) in r.events


def test_liquidation_reaches_auto_deleveraging(tmp_path: Path) -> None:
    # Empty fund. Bob (10,000 USD) sold 60 and Dave (100,000 USD) sold 30 at 100.
    h = _setup(tmp_path, 0, {"bob": 10_000 * USD, "dave": 100_000 * USD})
    r = h.ok(h.oracle(88))
    # Fund exhausted → ADL at the mark 88. Both shorts gain 12/lot; Bob is more leveraged, so
    # he is first: Bob closes 60, Dave 30. Deficit 84.50 split by notional 5,280 : 2,640:
    # Bob 56.333334 (with the 1-atom remainder), Dave 28.166666.
    assert LiquidationEvent(h.key("alice"), 0, 90, 0, 0, 90) in r.events
    assert DeficitEvent(h.key("alice"), 84_500_000, 0, 84_500_000) in r.events
    assert DeleverageEvent(h.key("bob"), 0, 60, 88, 56_333_334) in r.events
    assert DeleverageEvent(h.key("dave"), 0, 30, 88, 28_166_666) in r.events
    assert h.collateral("alice") == 0 and h.pos("alice") == (0, 0)
    # Bob: 10,000 − 1.20 maker fee + 60 × 12 realized − 56.333334.
    assert h.collateral("bob") == 10_000 * USD - 1_200_000 + 720 * USD - 56_333_334
    assert h.collateral("dave") == 100_000 * USD - 600_000 + 360 * USD - 28_166_666
    assert h.pos("bob") == (0, 0) and h.pos("dave") == (0, 0)
    assert h.collateral("fund") == 0
    ms = h.ex.market_state(0)
    assert ms.long_oi == ms.short_oi == 0


def test_fund_unwinds_its_position_into_the_book(tmp_path: Path) -> None:
    h = _setup(tmp_path, 1_000_000 * USD, {"bob": 100_000 * USD})
    h.ok(h.oracle(88))
    assert h.pos("fund") == (90, 7_920 * USD)
    fund = h.collateral("fund")
    # Carol bids 100 @ 87: mark = median(88, 87, 88) = 88, band ⌈88 × 0.95⌉ = 84. The fund
    # sells its 90 lots to her at 87: realizes 90 × (87 − 88) = −90 USD, pays 0.05% = 3.915.
    r = h.ok(h.place("carol", BUY, 87, 100))
    assert [(t.price, t.size, t.taker) for t in r.trades] == [(87, 90, h.key("fund"))]
    assert h.pos("fund") == (0, 0)
    assert h.collateral("fund") == fund - 90 * USD - 3_915_000
    assert h.ex.l2(0) == ([(87, 10)], [])


def test_reduce_only_cannot_dump_a_deficit_on_the_fund(tmp_path: Path) -> None:
    h = _setup(tmp_path, 1_000_000 * USD, {"bob": 100_000 * USD})
    # A friend bids 90 lots at 1 tick; Alice tries to close into it at 1: that would book a
    # loss of 99 × 90 = 8,910 USD against the mark on 995.50 of equity.
    h.ok(h.place("carol", BUY, 1, 90))
    r = h.block(h.place("alice", SELL, 1, 90, reduce_only=True))
    assert r.outcomes[0].reason == Reason.INSUFFICIENT_MARGIN
    # Closing at 95 books 5 × 90 = 450 plus a 4.275 fee: allowed, and rests above the bid.
    r = h.block(h.place("alice", SELL, 95, 90, reduce_only=True))
    assert r.outcomes[0].reason == Reason.OK and h.ex.l2(0) == ([(1, 90)], [(95, 90)])


def test_risk_index_safe_band(tmp_path: Path) -> None:
    h = _setup(tmp_path, 1_000_000 * USD, {"bob": 100_000 * USD})
    # Alice: equity 995.50, pessimistic maintenance 5% × 9,000 = 450, one position, so
    # H = 545.50 USD − 1 atom; k = 90 × 10^6 × 1.05 × 10^6; band = ⌊H × 10^6 / k⌋ = 5 ticks.
    risk = h.ex.risk
    assert risk.triggered({0: 95}) == set()
    assert risk.triggered({0: 105}) == set()
    # At 94 she would still be above maintenance (equity 455.5 ≥ 423: the band is
    # conservative), but she is checked.
    assert risk.triggered({0: 94}) == {h.key("alice")}


def test_risk_index_memory_stays_bounded(tmp_path: Path) -> None:
    h = _setup(tmp_path, 1_000_000 * USD, {"bob": 100_000 * USD})
    risk = h.ex.risk
    alice = h.ex.ledger.accounts[h.key("alice")]
    for _ in range(5_000):
        risk.assess(h.ex, alice)  # each refresh leaves the previous bands stale
    risk.compact(slack=16)
    # Alice and Bob each hold one band per side; the stale thousands are gone.
    assert risk.entries() <= 2 * 2 + 16
    assert risk.triggered({0: 94}) == {h.key("alice")}
