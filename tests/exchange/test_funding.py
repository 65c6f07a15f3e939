"""Funding: pure formulas, and two funding intervals applied through the exchange."""

from __future__ import annotations

from pathlib import Path

from lockstep.node.exchange import funding
from lockstep.node.exchange.events import FundingEvent

from .test_executor import BUY, SELL, Harness, test_market


def test_premium_sample() -> None:
    assert funding.premium_ppm(10_000, 10_002, 10_010) == 200
    assert funding.premium_ppm(10_013, 10_002, 10_010) == -300  # ⌊−299.6⌋
    assert funding.premium_ppm(100, None, None) == 0
    assert funding.premium_ppm(100, 99, 101) == 0


def test_rate_clamped_and_floored() -> None:
    assert funding.funding_rate_ppm(0, 0, 5_000) == 0
    assert funding.funding_rate_ppm(-7, 2, 5_000) == -4
    assert funding.funding_rate_ppm(100_000, 2, 5_000) == 5_000
    assert funding.funding_rate_ppm(-100_000, 2, 5_000) == -5_000


def test_next_funding_skips_missed_intervals() -> None:
    assert funding.next_funding_after(1_000, 1_000, 1_000) == 2_000
    assert funding.next_funding_after(3_500, 1_000, 1_000) == 4_000


def test_payments_round_against_positions_residual_to_fund() -> None:
    pays, residual = funding.payments([(b"a", 10), (b"b", -10)], 10_013, 1, -300)
    # Long: x = 10 × 10,013 × (−300) = −30,039,000 → receives ⌊30.039⌋ = 30.
    # Short pays ⌈30.039⌉ = 31; the 1-atom residual goes to the fund.
    assert pays == [(b"a", -30), (b"b", 31)]
    assert residual == 1


def test_two_funding_intervals(tmp_path: Path) -> None:
    # One atom per tick per lot, so rounding residuals show.
    h = Harness(tmp_path / "x.db",
                {"alice": 10**9, "bob": 10**9, "carol": 10**9},
                markets=(test_market(0, tick_size_atoms=1, initial_price_ticks=10_000),))
    fund0 = h.collateral("fund")
    # Block 1 (t=100): index 10,000; Alice buys 10 from Bob at 10,000; Carol quotes 10,002/10,010.
    r = h.ok(h.oracle(10_000), h.place("bob", SELL, 10_000, 10), h.place("alice", BUY, 10_000, 10),
             h.place("carol", BUY, 10_002, 1), h.place("carol", SELL, 10_010, 1))
    assert [(t.price, t.size) for t in r.trades] == [(10_000, 10)]
    # Fees on notional 100,000 atoms: taker 50, maker 20.
    assert h.collateral("alice") == 10**9 - 50 and h.collateral("bob") == 10**9 - 20
    # Premium each block: (10,002 − 10,000) × 10^6 // 10,000 = 200 ppm. Blocks at t=200…1000.
    for _ in range(9):
        r = h.ok()
    assert h.ts == 1_000
    # Rate = 10 × 200 // 10 = 200 ppm. Long pays 10 × 10,000 × 200 / 10^6 = 20 atoms, exact.
    assert r.events == (FundingEvent(0, 1_000, 200, 10_000, 0),)
    assert h.collateral("alice") == 10**9 - 50 - 20
    assert h.collateral("bob") == 10**9 - 20 + 20
    ms = h.ex.market_state(0)
    assert (ms.premium_sum, ms.premium_samples, ms.next_funding_ms) == (0, 0, 2_000)
    # Second interval: index 10,013 sits above the ask 10,010: premium ⌊−3 × 10^6 / 10,013⌋
    # = −300 ppm each block, t=1100…2000.
    h.ok(h.oracle(10_013))
    for _ in range(9):
        r = h.ok()
    assert h.ts == 2_000
    assert r.events == (FundingEvent(0, 2_000, -300, 10_013, 1),)
    # Shorts pay longs: Alice receives ⌊30.039⌋ = 30, Bob pays ⌈30.039⌉ = 31, fund gets 1.
    assert h.collateral("alice") == 10**9 - 50 - 20 + 30
    assert h.collateral("bob") == 10**9 - 20 + 20 - 31
    assert h.collateral("fund") == fund0 + 1
    acct = h.ex.ledger.accounts
    assert acct[h.key("alice")].positions[0].funding_paid == 20 - 30
    assert acct[h.key("bob")].positions[0].funding_paid == -20 + 31
    rows = h.ex.store.rows("SELECT * FROM funding ORDER BY time_ms")
    assert rows == [(0, 1_000, 200, 10_000), (0, 2_000, -300, 10_013)]
