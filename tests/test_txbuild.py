"""cli/txbuild.py: nonces, client ids and orders built from human units."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lockstep.cli.txbuild import (
    NONCE_RANDOM_BITS,
    NonceSource,
    new_client_id,
    new_nonce,
    place_order,
)
from lockstep.consensus.actions import OrderType, PlaceOrder, Side, TimeInForce
from lockstep.consensus.genesis import default_markets
from lockstep.node.exchange.units import UnitError

BTC, ETH = default_markets()
YEAR_2248_MS = 2**43


@given(st.integers(0, YEAR_2248_MS - 1), st.integers(0, 2**NONCE_RANDOM_BITS - 1))
def test_nonce_layout(ms: int, r: int) -> None:
    nonce = new_nonce(ms, r)
    assert nonce >> NONCE_RANDOM_BITS == ms
    assert nonce & (2**NONCE_RANDOM_BITS - 1) == r
    assert 0 <= nonce < 2**63


def test_nonce_now_is_time_based() -> None:
    a, b = new_nonce(), new_nonce()
    assert abs((a >> NONCE_RANDOM_BITS) - (b >> NONCE_RANDOM_BITS)) < 10_000


def test_nonce_source_strictly_increases_even_on_a_stuck_clock() -> None:
    source = NonceSource(clock_ms=lambda: 1_700_000_000_000)
    nonces = [source.next() for _ in range(1_000)]
    assert nonces == sorted(set(nonces))


def test_client_ids_are_positive_63_bit() -> None:
    ids = {new_client_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    assert all(0 < i < 2**63 for i in ids)


def test_place_order_kinds() -> None:
    assert place_order(BTC, "buy", "limit", "0.25", "60123.5", None, client_id=1) == PlaceOrder(
        0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 601_235, 250, 1
    )
    market = place_order(ETH, "sell", "market", "2", None, "2500", reduce_only=True, client_id=2)
    assert market == PlaceOrder(
        1, Side.SELL, OrderType.MARKET, TimeInForce.IOC, True, 250_000, 200, 2
    )
    assert place_order(ETH, "buy", "post-only", "1", "1", None).time_in_force == (
        TimeInForce.POST_ONLY
    )
    assert 0 < place_order(ETH, "buy", "ioc", "1", "1", None).client_id < 2**63


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hold", "limit", "1", "1", None), "side must be buy or sell"),
        (("buy", "stop", "1", "1", None), "order type must be one of"),
        (("buy", "market", "1", "1", None), "not --price"),
        (("buy", "market", "1", None, None), "needs --worst-price"),
        (("buy", "limit", "1", None, "1"), "takes --price"),
        (("buy", "limit", "1", None, None), "needs --price"),
        (("buy", "limit", "1.001", "1", None), "not a multiple of the lot size 0.01"),
    ],
)
def test_place_order_refusals(
    args: tuple[str, str, str, str | None, str | None], message: str
) -> None:
    with pytest.raises(UnitError, match=message):
        place_order(ETH, *args)
