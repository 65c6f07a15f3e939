"""Admission rules and reason codes: each rule refuses with its own reason, at the edge and in
blocks, and a refused transaction changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from lockstep.consensus import limits
from lockstep.consensus.actions import (
    Batch,
    CancelOrder,
    MarketPrice,
    OraclePrice,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    Transfer,
    Withdraw,
)
from lockstep.consensus.crypto import Signer
from lockstep.node.exchange.mempool_rules import (
    FEE_ACCOUNT,
    INSURANCE_FUND,
    Reason,
    check_static,
    genesis_tables,
)
from lockstep.node.exchange.replay import ReplayGuard

from ..conftest import seed_of
from .test_executor import Harness

K = Signer(seed_of("trader-alice")).public_key


def place(price: int = 100, size: int = 1, ot: OrderType = OrderType.LIMIT,
          tif: TimeInForce = TimeInForce.GTC, market: int = 0, cid: int = 1) -> PlaceOrder:
    return PlaceOrder(market, Side.BUY, ot, tif, False, price, size, cid)


@pytest.fixture
def tables(tmp_path: Path) -> tuple:
    h = Harness(tmp_path / "x.db")
    return (*genesis_tables(h.genesis), h)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (Order(K, 1, 9, place()), Reason.EXPIRED),
        (Order(K, 1, 10 + limits.MAX_EXPIRY_WINDOW_BLOCKS + 1, place()), Reason.EXPIRY_TOO_FAR),
        (Order(K, 1, 10, place(market=7)), Reason.UNKNOWN_MARKET),
        (Order(K, 1, 10, place(price=0)), Reason.PRICE_OUT_OF_RANGE),
        (Order(K, 1, 10, place(price=1_000_001)), Reason.PRICE_OUT_OF_RANGE),
        (Order(K, 1, 10, place(size=0)), Reason.SIZE_OUT_OF_RANGE),
        (Order(K, 1, 10, place(size=1_000_001)), Reason.SIZE_OUT_OF_RANGE),
        (Order(K, 1, 10, place(ot=OrderType.MARKET, tif=TimeInForce.POST_ONLY)),
         Reason.INVALID_ORDER_TYPE),
        (Order(INSURANCE_FUND, 1, 10, place()), Reason.RESERVED_ACCOUNT),
        (Batch(K, 1, 10, (place(cid=1), place(cid=1))), Reason.BATCH_DUPLICATE_CLIENT_ID),
        (Batch(K, 1, 10, (CancelOrder(0, 1), place(market=3))), Reason.UNKNOWN_MARKET),
        (OraclePrice(K, 1, 10, (MarketPrice(0, 100),)), Reason.NOT_A_VALIDATOR),
        (Transfer(K, 1, 10, K, 5), Reason.SELF_TRANSFER),
        (Transfer(K, 1, 10, FEE_ACCOUNT, 5), Reason.RESERVED_ACCOUNT),
        (Transfer(K, 1, 10, INSURANCE_FUND, 0), Reason.ZERO_AMOUNT),
        (Withdraw(K, 1, 10, 0, b""), Reason.ZERO_AMOUNT),
        (Order(K, 1, 10, place()), Reason.OK),
    ],
)
def test_static_rules(tables: tuple, body: object, reason: Reason) -> None:
    markets, validators, _ = tables
    assert check_static(body, 10, markets, validators)[0] == reason


def test_oracle_rules(tables: tuple) -> None:
    markets, validators, h = tables
    v = h.validators[0].public_key
    dup = OraclePrice(v, 1, 10, (MarketPrice(0, 100), MarketPrice(0, 101)))
    assert check_static(dup, 10, markets, validators) == (Reason.DUPLICATE_MARKET, 1)
    bad = OraclePrice(v, 1, 10, (MarketPrice(0, 0),))
    assert check_static(bad, 10, markets, validators) == (Reason.PRICE_OUT_OF_RANGE, 0)


def test_edge_admission_codes(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    tx = h.place("alice", Side.BUY, 100, 1)
    adm = h.ex.admit(tx.encode())
    assert adm.reason == Reason.OK and adm.tx_id == tx.tx_id(h.genesis.chain_id)
    assert h.ex.admit(b"\x00garbage").reason == Reason.MALFORMED
    forged = tx.encode()[:-1] + bytes([tx.encode()[-1] ^ 1])
    assert h.ex.admit(forged).reason == Reason.BAD_SIGNATURE
    stranger = Signer(seed_of("stranger"))
    body = Order(stranger.public_key, 1, 5, place())
    assert h.ex.admit(body.sign(stranger, h.genesis.chain_id).encode()).reason == (
        Reason.UNKNOWN_ACCOUNT)
    big = h.place("alice", Side.BUY, 100, 1_000_000)
    assert h.ex.admit(big.encode()).reason == Reason.INSUFFICIENT_MARGIN
    assert h.ex.admit(h.cancel("alice", 999).encode()).reason == Reason.ORDER_NOT_FOUND


def test_rejected_in_block_changes_nothing_but_the_nonce(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", Side.SELL, 100, 1, cid=5))
    before = (h.ex.book_snapshot(), h.collateral("alice"), h.pos("alice"))
    dup = h.place("alice", Side.SELL, 101, 1, cid=5)
    r = h.block(dup, h.cancel("alice", 77))
    assert [o.reason for o in r.outcomes] == [Reason.DUPLICATE_CLIENT_ID, Reason.ORDER_NOT_FOUND]
    assert (h.ex.book_snapshot(), h.collateral("alice"), h.pos("alice")) == before
    assert h.block(dup).outcomes[0].reason == Reason.REPLAYED


def test_too_many_open_orders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockstep.node.exchange import executor

    monkeypatch.setattr(executor, "MAX_OPEN_ORDERS_PER_ACCOUNT", 2)
    h = Harness(tmp_path / "x.db")
    r = h.block(*[h.place("alice", Side.BUY, 90 + i, 1) for i in range(3)])
    assert [o.reason for o in r.outcomes] == [Reason.OK, Reason.OK, Reason.TOO_MANY_OPEN_ORDERS]


def test_replay_guard_forgets_after_expiry() -> None:
    g = ReplayGuard()
    g.remember(K, 1, 10)
    g.remember(K, 2, 12)
    assert g.seen(K, 1) and g.seen(K, 2) and not g.seen(K, 3)
    assert g.prune(10) == 0  # expiry 10 may still be included at height 10
    assert g.prune(11) == 1 and not g.seen(K, 1) and g.seen(K, 2)
    assert g.take_added() == [(K, 1, 10), (K, 2, 12)] and g.take_added() == []
    assert list(g.items()) == [(K, 2, 12)]


def test_reason_codes_are_stable() -> None:
    assert [(r.name, r.value) for r in Reason][:6] == [
        ("OK", 0), ("MALFORMED", 1), ("BAD_SIGNATURE", 2), ("EXPIRED", 3),
        ("EXPIRY_TOO_FAR", 4), ("REPLAYED", 5),
    ]
    assert len({r.value for r in Reason}) == len(Reason)


def test_new_account_needs_a_minimum_transfer(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    fresh = Signer(seed_of("fresh")).public_key
    dust = h._sign("alice", Transfer, fresh, 999_999)
    assert h.ex.admit(dust.encode()).reason == Reason.NEW_ACCOUNT_MINIMUM
    r = h.block(dust)
    assert r.outcomes[0].reason == Reason.NEW_ACCOUNT_MINIMUM
    assert fresh not in h.ex.ledger.accounts
    h.ok(h._sign("alice", Transfer, fresh, 1_000_000))
    assert h.ex.ledger.accounts[fresh].collateral == 1_000_000
    # Once the account exists, any positive amount may follow.
    h.ok(h._sign("alice", Transfer, fresh, 1))
