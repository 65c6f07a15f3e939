"""The ledger: position arithmetic, conservation, SQLite persistence and rebuild."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from lockstep.node.exchange import ledger
from lockstep.node.exchange.executor import Exchange, ExchangeHalted
from lockstep.node.exchange.ledger import (
    COMMIT_EVERY_BLOCKS,
    SCHEMA_VERSION,
    AccountState,
    ConservationError,
    Ledger,
    LedgerSchemaError,
    MarketState,
    u64_from_sql,
    u64_to_sql,
)
from lockstep.node.exchange.state_root import full_root

from .test_executor import BUY, SELL, USD, Harness

A = b"a" * 32


def fresh() -> tuple[Ledger, AccountState]:
    led = Ledger()
    led.markets[0] = MarketState(0, 100, 1_000)
    led.holders[0] = set()
    acct = led.accounts[A] = AccountState(A, 1_000)
    return led, acct


def test_open_increase_and_partial_close_rounding() -> None:
    led, acct = fresh()
    assert led.trade(acct, 0, 3, 100, 1) == 0  # long 3 @ 100: on = 300
    assert led.trade(acct, 0, 4, 101, 1) == 0  # long 7: on = 704
    p = acct.positions[0]
    assert (p.size, p.open_notional) == (7, 704)
    # Close 2 @ 110: removed = 704 × 2 // 7 = 201 (201.14 rounded down); realized 220 − 201.
    assert led.trade(acct, 0, -2, 110, 1) == 19
    assert (p.size, p.open_notional, p.realized_pnl, acct.collateral) == (5, 503, 19, 1_019)
    # Close the rest @ 90: removes exactly 503; realized 450 − 503 = −53.
    assert led.trade(acct, 0, -5, 90, 1) == -53
    assert (p.size, p.open_notional) == (0, 0)
    assert A not in led.holders[0]


def test_flip_and_short_rounding() -> None:
    led, acct = fresh()
    led.trade(acct, 0, -3, 100, 1)  # short 3: on = −300
    # Buy 5 @ 90: closes 3 (realized 300 − 270 = 30), opens long 2 @ 90.
    assert led.trade(acct, 0, 5, 90, 1) == 30
    p = acct.positions[0]
    assert (p.size, p.open_notional) == (2, 180)
    led.trade(acct, 0, -4, 95, 1)  # flip to short 2 @ 95, realized 2 × 5 = 10
    assert (p.size, p.open_notional, p.realized_pnl) == (-2, -190, 40)
    ms = led.markets[0]
    assert (ms.long_oi, ms.short_oi) == (0, 2)


def test_short_partial_close_rounds_magnitude_down() -> None:
    led, acct = fresh()
    led.trade(acct, 0, -3, 100, 1)
    led.trade(acct, 0, -4, 101, 1)  # short 7, on = −704
    # Buy back 2 @ 100: removed = −(704 × 2 // 7) = −201; realized = −200 + 201 = 1.
    assert led.trade(acct, 0, 2, 100, 1) == 1
    assert acct.positions[0].open_notional == -503


def test_conservation_check_catches_a_leak() -> None:
    led, acct = fresh()
    led.begin_block()
    led.credit(acct, 5)
    with pytest.raises(ConservationError, match="not conserved"):
        led.check_block()


def test_u64_round_trip() -> None:
    for v in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        s = u64_to_sql(v)
        assert -(2**63) <= s < 2**63 and u64_from_sql(s) == v


def test_reopen_rebuilds_identical_state(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(
        h.oracle(100),
        h.place("alice", SELL, 101, 5, cid=2**64 - 1),
        h.place("alice", SELL, 101, 2),
        h.place("bob", BUY, 99, 4),
        h.place("bob", BUY, 101, 3),
    )
    h.ok(h.transfer("bob", "alice", 10 * USD), h.withdraw("alice", 5 * USD))
    ex = h.ex
    snap = (ex.book_snapshot(), ex.records(), ex.state_root, ex.next_order_id, len(ex.replay))
    dump = ex.store.dump()
    ex.close()
    ex2 = Exchange.open(h.path, h.genesis)
    assert (
        ex2.book_snapshot(),
        ex2.records(),
        ex2.state_root,
        ex2.next_order_id,
        len(ex2.replay),
    ) == snap
    assert ex2.store.dump() == dump
    assert ex2.state_root == full_root(ex2.records())
    assert ex2.open_orders(h.key("alice"))[0].client_id == 2**64 - 1
    # And it keeps going: the same next block on both gives the same root.
    tx = h.place("bob", BUY, 101, 1)
    r2 = ex2.apply_block(ex2.height + 1, h.ts + 100, [tx])
    assert r2.trades[0].price == 101


def test_reopen_detects_tampering(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 101, 5))
    h.ex.close()
    db = sqlite3.connect(h.path)
    db.execute("UPDATE accounts SET collateral = collateral + 1")
    db.commit()
    db.close()
    with pytest.raises(ConservationError, match="state rebuilt"):
        Exchange.open(h.path, h.genesis)


def test_a_ledger_file_of_another_schema_is_refused_with_the_remedy(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ex.close()
    db = sqlite3.connect(h.path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    db.close()
    with pytest.raises(LedgerSchemaError, match="rebuilds it from its block store"):
        Exchange.open(h.path, h.genesis)


def test_failed_block_write_rolls_back(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 101, 5))
    before = h.ex.store.dump()
    h.ex.store.db.execute("DROP TABLE funding")
    with pytest.raises(sqlite3.OperationalError):
        # Funding is due at t=1000: the write hits the missing table and rolls back.
        h.ex.apply_block(h.ex.height + 1, 1_000, [])
    assert h.ex.store.rows("SELECT MAX(height) FROM blocks") == [(1,)]
    assert {t: v for t, v in before.items() if t != "funding"} == {
        t: h.ex.store.rows(f"SELECT * FROM {t} ORDER BY 1, 2") for t in before if t != "funding"
    }
    # Memory ran ahead of the file: the exchange refuses to go on until reopened.
    with pytest.raises(ExchangeHalted):
        h.ex.apply_block(h.ex.height + 1, 1_100, [])
    h.ex.store.db.execute(
        "CREATE TABLE funding(market INTEGER, time_ms INTEGER, rate_ppm INTEGER,"
        " index_price INTEGER, PRIMARY KEY(market, time_ms)) WITHOUT ROWID"
    )
    h.ex.close()
    ex = Exchange.open(h.path, h.genesis)
    assert ex.height == 1
    assert ex.apply_block(2, 1_000, []).height == 2


def test_sqlite_holds_every_table(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.oracle(100), h.place("alice", SELL, 100, 1), h.place("bob", BUY, 100, 1))
    dump = h.ex.store.dump()
    assert len(dump["trades"]) == 1 and len(dump["tx_status"]) == 6
    assert len(dump["oracle"]) == 4 and len(dump["replay"]) == 6
    assert dict(dump["meta"])["height"] == 1


def test_same_blocks_same_file_contents_and_root(tmp_path: Path) -> None:
    """Two fresh databases fed the same blocks hold the same rows and the same root."""
    h = Harness(tmp_path / "a.db", {"alice": 5_000 * USD, "bob": 5_000 * USD, "carol": 900 * USD})
    blocks = []

    def run(*txs: object, dt: int = 100) -> None:
        r = h.block(*txs, dt=dt)
        blocks.append(
            (
                r.height,
                r.timestamp_ms,
                [t for x in txs for t in (x if isinstance(x, list) else [x])],
            )
        )

    run(h.oracle(100), h.place("alice", SELL, 100, 30), h.place("carol", BUY, 100, 60))
    run(h.place("bob", SELL, 102, 10), h.place("alice", BUY, 98, 10), dt=600)
    run(h.oracle(90), h.place("bob", BUY, 89, 50), dt=400)
    run(h.withdraw("alice", 100 * USD), h.cancel_all("bob"), dt=1_000)
    other = Exchange.open(tmp_path / "b.db", h.genesis)
    for height, ts, txs in blocks:
        other.apply_block(height, ts, txs)
    assert other.state_root == h.ex.state_root
    assert other.store.dump() == h.ex.store.dump()
    assert other.book_snapshot() == h.ex.book_snapshot()


def test_blocks_share_a_transaction_and_a_crash_loses_only_uncommitted_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks are committed a few at a time; what a crash leaves in the file is a prefix of
    the blocks (the block store replays the rest), and the writer's reads see them all."""
    monkeypatch.setattr(ledger, "COMMIT_EVERY_S", 3600.0)  # count blocks only, however slow
    h = Harness(tmp_path / "x.db")
    for i in range(3):
        h.ok(h.place("alice", SELL, 101 + i, 1))
    assert h.ex.store.rows("SELECT MAX(height) FROM blocks") == [(3,)]  # its own connection
    after_crash = sqlite3.connect(h.path)  # another reader sees the last commit only
    assert after_crash.execute("SELECT MAX(height) FROM blocks").fetchall() == [(None,)]
    for _ in range(COMMIT_EVERY_BLOCKS):
        h.ok()
    committed = after_crash.execute("SELECT MAX(height) FROM blocks").fetchone()[0]
    assert committed == COMMIT_EVERY_BLOCKS - 1  # heights 0 (genesis) to 31 made one commit
    assert committed < h.ex.height
    after_crash.close()
    snap = (h.ex.state_root, h.ex.records())
    h.ex.close()  # a clean stop commits the rest
    ex = Exchange.open(h.path, h.genesis)
    assert ex.height == 3 + COMMIT_EVERY_BLOCKS and (ex.state_root, ex.records()) == snap
