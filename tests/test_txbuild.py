"""cli/txbuild.py: nonces, client ids and orders built from human units."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lockstep.cli.txbuild import (
    NONCE_RANDOM_BITS,
    NonceSource,
    modify_order,
    new_client_id,
    new_nonce,
    place_order,
    place_trigger,
)
from lockstep.consensus.actions import (
    Batch,
    ModifyOrder,
    OrderType,
    PlaceOrder,
    PlaceTrigger,
    ScheduleCancel,
    Side,
    TimeInForce,
    TriggerKind,
    decode_and_verify_tx,
)
from lockstep.consensus.crypto import Signer
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


def test_place_trigger_kinds() -> None:
    stop = place_trigger(BTC, "sell", "stop", "limit", "0.25", "59000", "58900.5", client_id=7)
    assert stop == PlaceTrigger(
        0, Side.SELL, TriggerKind.STOP, OrderType.LIMIT, False, 590_000, 589_005, 250, 7
    )
    tp = place_trigger(ETH, "buy", "take-profit", "market", "2", "2500", None, reduce_only=True,
                       client_id=8)  # fmt: skip
    # A market trigger carries price 0: its bound comes from the mark when it fires.
    assert tp == PlaceTrigger(
        1, Side.BUY, TriggerKind.TAKE_PROFIT, OrderType.MARKET, True, 250_000, 0, 200, 8
    )
    assert 0 < place_trigger(ETH, "buy", "stop", "limit", "1", "1", "1").client_id < 2**63


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hold", "stop", "limit", "1", "1", "1"), "side must be buy or sell"),
        (("buy", "stop-loss", "limit", "1", "1", "1"), "trigger must be one of stop, take-p"),
        (("buy", "stop", "ioc", "1", "1", "1"), "a limit or a market order, not 'ioc'"),
        (("buy", "stop", "limit", "1", "1", None), "a limit trigger needs --price"),
        (("buy", "stop", "market", "1", "1", "1"), "a market trigger takes no --price"),
        (("buy", "stop", "limit", "1", "1.001", "1"), "not a multiple of the tick size 0.01"),
        (("buy", "stop", "limit", "0.001", "1", "1"), "not a multiple of the lot size 0.01"),
    ],
)
def test_place_trigger_refusals(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(UnitError, match=message):
        place_trigger(ETH, *args)
    with pytest.raises(UnitError, match=r"no --worst-price.*\(50000 ppm\)"):
        place_trigger(ETH, "buy", "stop", "market", "1", "1", None, "2")


def test_modify_order_units() -> None:
    assert modify_order(BTC, 42, "60100.1", "0.5", post_only=True) == ModifyOrder(
        0, 42, 601_001, 500, True
    )
    with pytest.raises(UnitError, match="not a multiple of the tick size"):
        modify_order(BTC, 42, "60100.15", "0.5")


def test_new_actions_encode_in_a_batch_and_round_trip() -> None:
    """The new actions go on the wire only inside a Batch; its canonical bytes decode back to
    the same actions, and the signature covers them."""
    signer = Signer(bytes(range(32)))
    chain_id = bytes(32)
    actions = (
        place_trigger(BTC, "buy", "stop", "market", "0.1", "61000", None, client_id=1),
        modify_order(BTC, 2, "59000", "0.2"),
        ScheduleCancel(1_234),
        ScheduleCancel(0),
    )
    tx = Batch(signer.public_key, 9, 100, actions).sign(signer, chain_id)
    raw = tx.encode()
    back, tx_id = decode_and_verify_tx(raw, chain_id)
    assert back == tx and back.body.actions() == actions and tx_id == tx.tx_id(chain_id)
    assert back.encode() == raw
    # Canonical CBOR arrays: the wire tag, then the fields in declaration order (a trigger's
    # attach and parent client id default to NONE and 0).
    assert [cbor2.loads(a.encode()) for a in actions] == [
        [5, 0, 0, 0, 1, False, 610_000, 0, 100, 1, 0, 0],
        [6, 0, 2, 590_000, 200, False],
        [7, 1_234],
        [7, 0],
    ]
