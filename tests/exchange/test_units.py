"""node/exchange/units.py: human prices, sizes and amounts convert to integers exactly, or not
at all."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lockstep.consensus.genesis import QUOTE_DECIMALS, LeverageTier, Market, default_markets
from lockstep.node.exchange.units import (
    UnitError,
    amount_to_atoms,
    atoms_to_amount,
    format_amount,
    format_price,
    format_size,
    lots_to_size,
    price_to_ticks,
    size_to_lots,
    ticks_to_price,
)

BTC, ETH = default_markets()


def exact(n: int, decimals: int) -> Decimal:
    """``n / 10**decimals`` built from text, so no rounding context is involved."""
    return Decimal(f"{n}E-{decimals}")


@st.composite
def markets(draw: st.DrawFn) -> Market:
    """Markets with arbitrary step sizes (the genesis checks are not what is tested here)."""
    base_decimals = draw(st.integers(0, 18))
    max_price = draw(st.integers(1, 10**12))
    return Market(
        market_id=0,
        symbol="TEST-PERP",
        base_decimals=base_decimals,
        tick_size_atoms=draw(st.integers(1, 10**9)),
        lot_size_units=draw(st.integers(1, 10**12)),
        min_size_lots=1,
        max_size_lots=draw(st.integers(1, 10**12)),
        max_price_ticks=max_price,
        leverage_tiers=(LeverageTier(10**12, 100_000, 50_000),),
        maker_fee_ppm=0,
        taker_fee_ppm=0,
        liquidation_fee_ppm=0,
        funding_interval_ms=1,
        funding_clamp_ppm=0,
        oracle_staleness_ms=1,
        initial_price_ticks=1,
        trigger_slippage_ppm=1,
    )


def test_examples_btc() -> None:
    assert price_to_ticks(BTC, "60123.5") == 601_235
    assert format_price(BTC, 601_235) == "60123.5"
    assert ticks_to_price(BTC, 601_235) == Decimal("60123.5")
    assert size_to_lots(BTC, "0.25") == 250
    assert format_size(BTC, 250) == "0.250"
    assert lots_to_size(BTC, 250) == Decimal("0.25")
    assert price_to_ticks(BTC, "60000") == price_to_ticks(BTC, "6E+4") == 600_000
    assert price_to_ticks(BTC, Decimal("0.1")) == 1
    assert price_to_ticks(BTC, 7) == 70


def test_examples_eth_and_money() -> None:
    assert price_to_ticks(ETH, "3000.01") == 300_001
    assert size_to_lots(ETH, "1.5") == 150
    assert amount_to_atoms("100.5") == 100_500_000
    assert amount_to_atoms("1_000") == 1_000 * 10**QUOTE_DECIMALS
    assert format_amount(-12_500_000) == "-12.500000"
    assert atoms_to_amount(-1) == Decimal("-0.000001")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: price_to_ticks(BTC, "60123.55"),
            "price 60123.55 is not a multiple of the tick size 0.1 for BTC-PERP",
        ),
        (
            lambda: size_to_lots(BTC, "0.0005"),
            "size 0.0005 is not a multiple of the lot size 0.001 for BTC-PERP",
        ),
        (lambda: price_to_ticks(BTC, "0"), "price must be positive for BTC-PERP"),
        (
            lambda: price_to_ticks(BTC, "1000000.1"),
            "price 1000000.1 is above the maximum 1000000.0 for BTC-PERP",
        ),
        (lambda: size_to_lots(BTC, "0"), "size 0 is below the minimum 0.001 for BTC-PERP"),
        (
            lambda: size_to_lots(BTC, "100.001"),
            "size 100.001 is above the maximum 100.000 for BTC-PERP",
        ),
        (lambda: price_to_ticks(BTC, "-1"), "price -1 must not be negative"),
        (lambda: price_to_ticks(BTC, "abc"), "price 'abc' is not a number"),
        (lambda: price_to_ticks(BTC, "NaN"), "price NaN is not a finite number"),
        (lambda: price_to_ticks(BTC, "Infinity"), "price Infinity is not a finite number"),
        (lambda: price_to_ticks(BTC, "1e999999999"), "exponent beyond"),
        (lambda: price_to_ticks(BTC, 1.5), "not a float"),
        (lambda: amount_to_atoms("0.0000001"), "more than 6 decimals"),
        (lambda: amount_to_atoms("0"), "amount must be positive"),
        (lambda: amount_to_atoms(str(2**64)), "too large"),
    ],
)
def test_rejections_say_why(call: object, message: str) -> None:
    with pytest.raises(UnitError) as e:
        call()  # type: ignore[operator]
    assert message in str(e.value)


@given(markets(), st.data())
def test_price_round_trip_exact(market: Market, data: st.DataObject) -> None:
    ticks = data.draw(st.integers(1, market.max_price_ticks))
    text = format_price(market, ticks)
    assert price_to_ticks(market, text) == ticks
    assert price_to_ticks(market, ticks_to_price(market, ticks)) == ticks
    assert ticks_to_price(market, ticks) * 10**QUOTE_DECIMALS == ticks * market.tick_size_atoms


@given(markets(), st.data())
def test_size_round_trip_exact(market: Market, data: st.DataObject) -> None:
    lots = data.draw(st.integers(market.min_size_lots, market.max_size_lots))
    text = format_size(market, lots)
    assert size_to_lots(market, text) == lots
    assert size_to_lots(market, lots_to_size(market, lots)) == lots
    assert lots_to_size(market, lots) * 10**market.base_decimals == lots * market.lot_size_units


@given(markets(), st.data())
def test_non_multiples_rejected(market: Market, data: st.DataObject) -> None:
    ticks = (
        data.draw(st.integers(1, market.max_price_ticks - 1)) if market.max_price_ticks > 1 else 0
    )
    # A value strictly between two consecutive ticks: never a whole number of ticks.
    offset_atoms = data.draw(st.integers(1, 10**6 - 1)) if market.tick_size_atoms == 1 else None
    if offset_atoms is not None:
        atoms_micro = ticks * 10**6 + offset_atoms  # in 10^-12 quote units
        price = exact(atoms_micro, QUOTE_DECIMALS + 6)
    else:
        frac = data.draw(st.integers(1, market.tick_size_atoms - 1))
        price = exact(ticks * market.tick_size_atoms + frac, QUOTE_DECIMALS)
    with pytest.raises(UnitError, match="not a multiple of the tick size"):
        price_to_ticks(market, format(price, "f"))


@given(markets(), st.data())
def test_non_multiple_sizes_rejected(market: Market, data: st.DataObject) -> None:
    lots = data.draw(st.integers(0, market.max_size_lots))
    frac = data.draw(st.integers(1, 10**6 - 1))
    # lots + frac/10^6 lots, in base units at base_decimals + 6 decimals: never whole lots.
    units = (lots * 10**6 + frac) * market.lot_size_units
    size = exact(units, market.base_decimals + 6)
    with pytest.raises(UnitError, match="not a multiple of the lot size"):
        size_to_lots(market, format(size, "f"))


@given(st.integers(-(2**63), 2**63))
def test_amount_round_trip_exact(atoms: int) -> None:
    assert atoms_to_amount(atoms) * 10**QUOTE_DECIMALS == atoms
    if atoms > 0:
        assert amount_to_atoms(format_amount(atoms)) == atoms


def test_trailing_zeros_are_not_a_tiny_exponent() -> None:
    assert price_to_ticks(BTC, "60123.5" + "0" * 50) == 601_235
    with pytest.raises(UnitError, match="exponent beyond"):
        price_to_ticks(BTC, "1e-41")
    with pytest.raises(UnitError, match="exponent beyond"):
        price_to_ticks(BTC, "1e41")
