"""The perpetuals ledger: accounts, positions and market state in memory, persisted to SQLite.

Theory of operation: the executor mutates the in-memory records (:class:`AccountState`,
:class:`Position`, :class:`MarketState`) through :class:`Ledger`, which marks each changed
record *dirty* and remembers its value before the block (for the per-block conservation check).
At the end of a block, :class:`LedgerStore` writes exactly the dirty rows with ``executemany``
inside one SQLite transaction, together with the block's trades, transaction statuses and
metadata; commit makes the block durable in one step. Nothing is ever read back from SQLite
during execution: it is only read on start-up, to rebuild the in-memory state
(:meth:`LedgerStore.load`), which must then equal the state that was written.

Position arithmetic (the one place where a fill changes money) is :meth:`Ledger.trade`:

* a fill of ``d`` lots (signed: + buys, − sells) at ``price`` first *closes* up to ``|size|``
  lots of an opposite position, then *opens* the rest;
* closing ``c`` lots of a position removes ``removed = sign(on) × (|on| × c // |size|)`` of its
  open notional ``on`` (magnitude rounded down; when the position closes fully, exactly ``on``)
  and realizes ``sign(size) × c × price × multiplier − removed`` into collateral;
* opening ``o`` lots adds ``o × price × multiplier`` (signed) to the open notional.

So for every fill and every account, ``collateral − open_notional`` changes by exactly
``−d × price × multiplier`` whatever the rounding, and buyer and seller cancel out: the ledger
conserves ``Σ collateral − Σ open_notional`` (over every account, including the fee account and
the insurance fund) except for withdrawals. That is the conservation invariant.

SQLite stores integers as signed 64-bit; uint64 client ids and nonces are stored as
``value − 2^63`` (order-preserving), see :func:`u64_to_sql`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from lockstep.consensus.actions import Attach, OrderType, Side, TriggerKind

from .book import RestingOrder
from .margin import floor_div
from .triggers import Trigger

SCHEMA_VERSION = 3
"""``PRAGMA user_version`` of the ledger file; a file of another version is refused (3: triggers
and dead man's switches)."""
_U64_BIAS = 2**63


def u64_to_sql(v: int) -> int:
    return v - _U64_BIAS


def u64_from_sql(v: int) -> int:
    return v + _U64_BIAS


class LedgerSchemaError(RuntimeError):
    """The ledger file was written by a node with another table layout."""


class Position:
    __slots__ = ("funding_paid", "market", "open_notional", "owner", "realized_pnl", "size")

    def __init__(
        self,
        owner: bytes,
        market: int,
        size: int = 0,
        open_notional: int = 0,
        realized_pnl: int = 0,
        funding_paid: int = 0,
    ) -> None:
        self.owner = owner
        self.market = market
        self.size = size
        self.open_notional = open_notional
        self.realized_pnl = realized_pnl
        self.funding_paid = funding_paid

    def row(self) -> tuple[bytes, int, int, int, int, int]:
        return (
            self.owner,
            self.market,
            self.size,
            self.open_notional,
            self.realized_pnl,
            self.funding_paid,
        )

    def __repr__(self) -> str:
        return f"Position{self.row()[1:]}"


class AccountState:
    __slots__ = (
        "collateral",
        "open_buy",
        "open_sell",
        "orders",
        "owner",
        "positions",
        "triggers",
    )

    def __init__(self, owner: bytes, collateral: int) -> None:
        self.owner = owner
        self.collateral = collateral
        self.positions: dict[int, Position] = {}
        self.open_buy: dict[int, int] = {}
        """Resting buy lots per market (for the initial-margin exposure)."""
        self.open_sell: dict[int, int] = {}
        self.orders: dict[int, RestingOrder] = {}
        """The account's resting orders across markets, by order id."""
        self.triggers: dict[int, Trigger] = {}
        """The account's untriggered orders across markets, by trigger id."""

    def open_order_count(self) -> int:
        """What ``MAX_OPEN_ORDERS_PER_ACCOUNT`` bounds: resting orders and triggers."""
        return len(self.orders) + len(self.triggers)


class MarketState:
    __slots__ = (
        "index",
        "last_funding_ms",
        "last_funding_rate_ppm",
        "long_oi",
        "mark",
        "market_id",
        "next_funding_ms",
        "premium_samples",
        "premium_sum",
        "short_oi",
    )

    def __init__(self, market_id: int, index: int, next_funding_ms: int) -> None:
        self.market_id = market_id
        self.index = index
        self.mark = index
        self.premium_sum = 0
        self.premium_samples = 0
        self.next_funding_ms = next_funding_ms
        self.last_funding_ms = 0
        self.last_funding_rate_ppm = 0
        self.long_oi = 0
        self.short_oi = 0

    def row(self) -> tuple[int, ...]:
        return (
            self.market_id,
            self.index,
            self.mark,
            self.premium_sum,
            self.premium_samples,
            self.next_funding_ms,
            self.last_funding_ms,
            self.last_funding_rate_ppm,
            self.long_oi,
            self.short_oi,
        )


class Trade(NamedTuple):
    """One fill. Immutable; a NamedTuple rather than a frozen dataclass because a busy block makes
    hundreds of them and a tuple is built ~8× faster (its fields are also its SQLite row)."""

    trade_id: int
    height: int
    market: int
    price: int
    size: int
    taker_side: int
    taker: bytes
    maker: bytes
    maker_order_id: int
    taker_fee: int
    maker_fee: int
    liquidation: bool

    def row(self) -> tuple:
        return (*self[:11], int(self.liquidation))


class ConservationError(AssertionError):
    """A ledger invariant broke: this node is wrong, and must stop rather than diverge."""


class Ledger:
    """In-memory accounts, positions and markets, with dirty tracking for one block."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, AccountState] = {}
        self.markets: dict[int, MarketState] = {}
        self.holders: dict[int, set[bytes]] = {}
        """Per market, the owners holding a non-zero position (funding, ADL, margin scans)."""
        self.withdrawn_total = 0
        self.begin_block()

    # ----------------------------------------------------------------------- block bracket

    def begin_block(self) -> None:
        self.dirty_accounts: dict[bytes, int] = {}
        """owner -> collateral before the block."""
        self.dirty_positions: dict[tuple[bytes, int], tuple[int, int]] = {}
        """(owner, market) -> (size, open_notional) before the block."""
        self.dirty_markets: set[int] = set()
        self.withdrawn_block = 0

    def touch(self, acct: AccountState) -> None:
        if acct.owner not in self.dirty_accounts:
            self.dirty_accounts[acct.owner] = acct.collateral

    def check_block(self) -> None:
        """Conservation and open-interest balance over what this block changed.

        ``Σ Δcollateral − Σ Δopen_notional = −withdrawn`` over touched accounts and positions,
        and, per market, ``Σ Δsize = 0`` and long OI = short OI.
        """
        accounts = self.accounts
        d_coll = sum(accounts[o].collateral - before for o, before in self.dirty_accounts.items())
        d_on = 0
        d_size: dict[int, int] = {}
        for (owner, market), (size0, on0) in self.dirty_positions.items():
            p = accounts[owner].positions[market]
            d_on += p.open_notional - on0
            d_size[market] = d_size.get(market, 0) + p.size - size0
        if d_coll - d_on != -self.withdrawn_block:
            raise ConservationError(
                f"quote atoms not conserved: Δcollateral {d_coll} − Δopen_notional {d_on} ≠ "
                f"−withdrawn {self.withdrawn_block}"
            )
        for market, ds in sorted(d_size.items()):
            if ds != 0:
                raise ConservationError(f"market {market}: positions changed by {ds} lots in total")
        for market in sorted(self.dirty_markets):
            ms = self.markets[market]
            if ms.long_oi != ms.short_oi:
                raise ConservationError(
                    f"market {market}: long OI {ms.long_oi} ≠ short OI {ms.short_oi}"
                )

    # ----------------------------------------------------------------------- accounts

    def account(self, owner: bytes) -> AccountState:
        """The account, created empty (and dirty) on first credit."""
        acct = self.accounts.get(owner)
        if acct is None:
            acct = self.accounts[owner] = AccountState(owner, 0)
            self.dirty_accounts[owner] = 0
        return acct

    def credit(self, acct: AccountState, amount: int) -> None:
        if acct.owner not in self.dirty_accounts:
            self.dirty_accounts[acct.owner] = acct.collateral
        acct.collateral += amount

    def position(self, acct: AccountState, market: int) -> Position:
        p = acct.positions.get(market)
        if p is None:
            p = acct.positions[market] = Position(acct.owner, market)
            self.dirty_positions[(acct.owner, market)] = (0, 0)
        return p

    # ----------------------------------------------------------------------- trading

    def trade(self, acct: AccountState, market: int, d: int, price: int, mult: int) -> int:
        """Apply a fill of ``d`` lots (signed) at ``price`` to a position; return realized PnL.

        See the module docstring for the rule; collateral is credited with the realized PnL.
        """
        owner = acct.owner
        p = acct.positions.get(market)
        key = (owner, market)
        if p is None:
            p = acct.positions[market] = Position(owner, market)
            self.dirty_positions[key] = (0, 0)
        elif key not in self.dirty_positions:
            self.dirty_positions[key] = (p.size, p.open_notional)
        if owner not in self.dirty_accounts:
            self.dirty_accounts[owner] = acct.collateral
        size0 = p.size
        realized = 0
        if size0 != 0 and (size0 > 0) != (d > 0):
            # Close up to |size0| lots.
            abs0 = size0 if size0 > 0 else -size0
            closed = -d if d < 0 else d
            if closed > abs0:
                closed = abs0
            on = p.open_notional
            if closed == abs0:
                removed = on
            elif on >= 0:
                removed = floor_div(on * closed, abs0)
            else:
                removed = -floor_div(-on * closed, abs0)
            sgn = 1 if size0 > 0 else -1
            realized = sgn * closed * price * mult - removed
            p.open_notional = on - removed
            p.size = size0 - sgn * closed
            d += sgn * closed
            p.realized_pnl += realized
            acct.collateral += realized
        if d != 0:
            p.open_notional += d * price * mult
            p.size += d
        size1 = p.size
        if size1 == 0:
            assert p.open_notional == 0, "a flat position has no cost basis"
        ms = self.markets[market]
        ms.long_oi += (size1 if size1 > 0 else 0) - (size0 if size0 > 0 else 0)
        ms.short_oi += (-size1 if size1 < 0 else 0) - (-size0 if size0 < 0 else 0)
        self.dirty_markets.add(market)
        holders = self.holders[market]
        if size1 == 0:
            holders.discard(owner)
        elif size0 == 0:
            holders.add(owner)
        return realized

    def add_funding(self, acct: AccountState, market: int, paid: int) -> None:
        """Account pays ``paid`` atoms of funding (negative: receives)."""
        p = acct.positions[market]
        key = (acct.owner, market)
        if key not in self.dirty_positions:
            self.dirty_positions[key] = (p.size, p.open_notional)
        p.funding_paid += paid
        self.credit(acct, -paid)


# --------------------------------------------------------------------------- SQLite

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts(
    owner BLOB PRIMARY KEY,
    collateral INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions(
    owner BLOB NOT NULL,
    market INTEGER NOT NULL,
    size INTEGER NOT NULL,
    open_notional INTEGER NOT NULL,
    realized_pnl INTEGER NOT NULL,
    funding_paid INTEGER NOT NULL,
    PRIMARY KEY(owner, market)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders(
    order_id INTEGER PRIMARY KEY,
    owner BLOB NOT NULL,
    market INTEGER NOT NULL,
    side INTEGER NOT NULL,
    price INTEGER NOT NULL,
    size INTEGER NOT NULL,
    remaining INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    reduce_only INTEGER NOT NULL,
    height INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS triggers(
    trigger_id INTEGER PRIMARY KEY,
    owner BLOB NOT NULL,
    market INTEGER NOT NULL,
    side INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    order_type INTEGER NOT NULL,
    trigger_price INTEGER NOT NULL,
    price INTEGER NOT NULL,
    size INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    reduce_only INTEGER NOT NULL,
    height INTEGER NOT NULL,
    attach INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    parent_order_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schedules(
    owner BLOB PRIMARY KEY,
    cancel_after_height INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS markets(
    market INTEGER PRIMARY KEY,
    index_price INTEGER NOT NULL,
    mark_price INTEGER NOT NULL,
    premium_sum INTEGER NOT NULL,
    premium_samples INTEGER NOT NULL,
    next_funding_ms INTEGER NOT NULL,
    last_funding_ms INTEGER NOT NULL,
    last_funding_rate_ppm INTEGER NOT NULL,
    long_oi INTEGER NOT NULL,
    short_oi INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oracle(
    market INTEGER NOT NULL,
    validator BLOB NOT NULL,
    price INTEGER NOT NULL,
    stamped_ms INTEGER NOT NULL,
    PRIMARY KEY(market, validator)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replay(
    signer BLOB NOT NULL,
    nonce INTEGER NOT NULL,
    expiry_height INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS replay_expiry ON replay(expiry_height);
CREATE TABLE IF NOT EXISTS trades(
    trade_id INTEGER PRIMARY KEY,
    height INTEGER NOT NULL,
    market INTEGER NOT NULL,
    price INTEGER NOT NULL,
    size INTEGER NOT NULL,
    taker_side INTEGER NOT NULL,
    taker BLOB NOT NULL,
    maker BLOB NOT NULL,
    maker_order_id INTEGER NOT NULL,
    taker_fee INTEGER NOT NULL,
    maker_fee INTEGER NOT NULL,
    liquidation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_market ON trades(market, trade_id);
CREATE TABLE IF NOT EXISTS tx_status(
    id8 INTEGER NOT NULL,   -- the id's first 8 bytes, signed big-endian: the index key
    tx_id BLOB NOT NULL,
    height INTEGER NOT NULL,
    tx_index INTEGER NOT NULL,
    reason INTEGER NOT NULL,
    action_index INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tx_status_id ON tx_status(id8);
CREATE TABLE IF NOT EXISTS blocks(
    height INTEGER PRIMARY KEY,
    timestamp_ms INTEGER NOT NULL,
    state_root BLOB NOT NULL,
    n_txs INTEGER NOT NULL,
    n_trades INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS funding(
    market INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    rate_ppm INTEGER NOT NULL,
    index_price INTEGER NOT NULL,
    PRIMARY KEY(market, time_ms)
) WITHOUT ROWID;
"""

TABLES = (
    "meta",
    "accounts",
    "positions",
    "orders",
    "triggers",
    "schedules",
    "markets",
    "oracle",
    "replay",
    "trades",
    "tx_status",
    "blocks",
    "funding",
)


@dataclass(slots=True)
class BlockWrite:
    """Everything one block changed, in the shape SQLite wants it."""

    height: int
    timestamp_ms: int
    state_root: bytes
    meta: dict[str, int | bytes]
    accounts: list[tuple[bytes, int]]
    positions: list[tuple[bytes, int, int, int, int, int]]
    orders_upsert: list[tuple]
    orders_delete: list[tuple[int]]
    triggers_upsert: list[tuple]
    triggers_delete: list[tuple[int]]
    schedules_upsert: list[tuple[bytes, int]]
    schedules_delete: list[tuple[bytes]]
    markets: list[tuple[int, ...]]
    oracle: list[tuple[int, bytes, int, int]]
    replay_add: list[tuple[bytes, int, int]]
    trades: list[tuple]
    tx_status: list[tuple[int, bytes, int, int, int, int]]
    funding: list[tuple[int, int, int, int]]
    n_txs: int


COMMIT_EVERY_BLOCKS = 256
COMMIT_EVERY_S = 10.0
"""Blocks share one SQLite transaction (a savepoint each) until this many are written or this
long has passed: a commit writes every page the blocks dirtied to the WAL, and the blocks of
one transaction dirty mostly the same pages — above all the leaves of the ``tx_status`` index,
where every transaction lands at a random place (committing every 32 blocks wrote about a page
per transaction once the table held ~10^5 rows). A crash loses at most these blocks from the
file, as ``synchronous=NORMAL`` already allows; they are in the block store and replayed at
start: up to a few hundred blocks (220 against a deep book, 1.2 s, for a node SIGKILLed while
the network traded at half its peak). A 2 s bound would shorten that replay, and was measured:
over a million soak actions at half the peak its p50 latency climbed to 200–380 ms (twice as
many index pages written per second by each of four nodes on one disk), against 41–60 ms."""
CACHE_KIB = 16 * 1024
"""SQLite's page cache (default 2 MiB): holds a transaction's dirty pages until its commit."""


class LedgerStore:
    """The SQLite file. One connection, used from one thread; a savepoint per block, a
    transaction per few blocks (``COMMIT_EVERY_BLOCKS``). Reads on the connection see every
    block written, committed or not.

    ``monotonic`` is the daemon's clock for the ``COMMIT_EVERY_S`` bound; the exchange reads no
    clock itself, and without one only the block count bounds a transaction. When a commit
    happens decides durability only, never a byte of state."""

    def __init__(self, path: str, monotonic: Callable[[], float] | None = None) -> None:
        self.path = path
        self._monotonic = monotonic
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a crash may lose the last committed blocks but never corrupts the file; they
        # are stored durably by consensus and replayed on start (see docs/design/exchange.md).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self.db.close()
            raise LedgerSchemaError(
                f"{path} has ledger schema {version}, this node writes {SCHEMA_VERSION}: move "
                "the file away and restart; the node rebuilds it from its block store"
            )
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._uncommitted = 0
        self._began = 0.0

    def flush(self) -> None:
        """Commit the blocks written since the last commit."""
        if self.db.in_transaction:
            self.db.execute("COMMIT")
        self._uncommitted = 0

    def close(self) -> None:
        self.flush()
        self.db.close()

    def meta(self) -> dict[str, int | bytes]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    def write_block(self, w: BlockWrite) -> None:
        db = self.db
        if not db.in_transaction:
            db.execute("BEGIN")
            if self._monotonic is not None:
                self._began = self._monotonic()
        db.execute("SAVEPOINT block")
        try:
            if w.accounts:
                db.executemany("INSERT OR REPLACE INTO accounts VALUES (?,?)", w.accounts)
            if w.positions:
                db.executemany("INSERT OR REPLACE INTO positions VALUES (?,?,?,?,?,?)", w.positions)
            if w.orders_delete:
                db.executemany("DELETE FROM orders WHERE order_id=?", w.orders_delete)
            if w.orders_upsert:
                db.executemany(
                    "INSERT OR REPLACE INTO orders VALUES (?,?,?,?,?,?,?,?,?,?)", w.orders_upsert
                )
            if w.triggers_delete:
                db.executemany("DELETE FROM triggers WHERE trigger_id=?", w.triggers_delete)
            if w.triggers_upsert:
                db.executemany(
                    "INSERT OR REPLACE INTO triggers VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    w.triggers_upsert,
                )
            if w.schedules_delete:
                db.executemany("DELETE FROM schedules WHERE owner=?", w.schedules_delete)
            if w.schedules_upsert:
                db.executemany("INSERT OR REPLACE INTO schedules VALUES (?,?)", w.schedules_upsert)
            if w.markets:
                db.executemany(
                    "INSERT OR REPLACE INTO markets VALUES (?,?,?,?,?,?,?,?,?,?)", w.markets
                )
            if w.oracle:
                db.executemany("INSERT OR REPLACE INTO oracle VALUES (?,?,?,?)", w.oracle)
            db.execute("DELETE FROM replay WHERE expiry_height < ?", (w.height,))
            if w.replay_add:
                db.executemany("INSERT INTO replay VALUES (?,?,?)", w.replay_add)
            if w.trades:
                db.executemany("INSERT INTO trades VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", w.trades)
            if w.tx_status:
                # Appended, never replaced: a repeat of an included transaction (refused as
                # REPLAYED, or EXPIRED once its nonce is forgotten) adds a row, and readers
                # take the first (see ``Exchange.tx_status``).
                db.executemany("INSERT INTO tx_status VALUES (?,?,?,?,?,?)", w.tx_status)
            if w.funding:
                db.executemany("INSERT INTO funding VALUES (?,?,?,?)", w.funding)
            db.execute(
                "INSERT INTO blocks VALUES (?,?,?,?,?)",
                (w.height, w.timestamp_ms, w.state_root, w.n_txs, len(w.trades)),
            )
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", sorted(w.meta.items()))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('state_root', ?)", (w.state_root,))
            db.execute("RELEASE block")
        except BaseException:
            if db.in_transaction:  # (an I/O error may have rolled the whole transaction back)
                db.execute("ROLLBACK TO block")
                db.execute("RELEASE block")
            raise
        self._uncommitted += 1
        if self._uncommitted >= COMMIT_EVERY_BLOCKS or (
            self._monotonic is not None and self._monotonic() - self._began >= COMMIT_EVERY_S
        ):
            self.flush()

    # ----------------------------------------------------------------------- reads

    def rows(self, sql: str, args: Iterable = ()) -> list[tuple]:
        return self.db.execute(sql, tuple(args)).fetchall()

    def dump(self) -> dict[str, list[tuple]]:
        """Every table's rows in primary-key order: what "same SQLite contents" compares."""
        return {t: self.rows(f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}

    def load_accounts(self) -> list[tuple[bytes, int]]:
        return self.rows("SELECT * FROM accounts ORDER BY owner")

    def load_markets(self) -> list[tuple]:
        return self.rows("SELECT * FROM markets ORDER BY market")

    def load_positions(self) -> list[tuple[bytes, int, int, int, int, int]]:
        return self.rows("SELECT * FROM positions ORDER BY owner, market")

    def load_oracle(self) -> list[tuple[int, bytes, int, int]]:
        return self.rows("SELECT * FROM oracle ORDER BY 1, 2")

    def load_replay(self) -> list[tuple[bytes, int, int]]:
        """(signer, nonce, expiry height) of every remembered nonce."""
        rows = self.rows("SELECT * FROM replay ORDER BY 1, 2")
        return [(s, u64_from_sql(n), e) for s, n, e in rows]

    def trades_newest_first(self, market: int, limit: int) -> list[Trade]:
        rows = self.rows(
            "SELECT * FROM trades WHERE market=? ORDER BY trade_id DESC LIMIT ?", (market, limit)
        )
        return [Trade(*r[:11], bool(r[11])) for r in rows]

    def first_tx_status(self, id8: int, tx_id: bytes) -> tuple[int, int, int] | None:
        """(tx index, reason, action index) of a transaction's first inclusion, if any."""
        rows = self.rows(
            "SELECT tx_index, reason, action_index FROM tx_status WHERE id8=? AND tx_id=? "
            "ORDER BY rowid LIMIT 1",
            (id8, tx_id),
        )
        return rows[0] if rows else None

    def state_roots(self, first: int, last: int) -> list[tuple[int, bytes]]:
        """The state root stored with each applied height in ``first..last``."""
        rows = self.rows(
            "SELECT height, state_root FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
            (first, last),
        )
        return [(int(h), bytes(r)) for h, r in rows]

    def load_triggers(self) -> list[Trigger]:
        return [
            Trigger(
                tid,
                owner,
                market,
                Side(side),
                TriggerKind(kind),
                OrderType(ot),
                tp,
                price,
                size,
                u64_from_sql(cid),
                bool(ro),
                height,
                Attach(attach),
                grp,
                parent,
            )
            for (
                tid, owner, market, side, kind, ot, tp, price, size, cid, ro, height, attach, grp,
                parent,
            ) in self.rows("SELECT * FROM triggers ORDER BY trigger_id")
        ]

    def load_schedules(self) -> list[tuple[bytes, int]]:
        """(owner, cancel-after height) of every dead man's switch that is set."""
        return self.rows("SELECT * FROM schedules ORDER BY owner")

    def load_orders(self) -> list[RestingOrder]:
        return [
            RestingOrder(
                oid,
                owner,
                market,
                Side(side),
                price,
                size,
                remaining,
                u64_from_sql(cid),
                bool(ro),
                height,
            )
            for oid, owner, market, side, price, size, remaining, cid, ro, height in self.rows(
                "SELECT * FROM orders ORDER BY order_id"
            )
        ]
