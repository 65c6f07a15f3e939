"""Exchange execution throughput: matched-and-applied actions per second on one core.

Builds a genesis with many funded traders on the default BTC-PERP / ETH-PERP markets, signs
blocks of 1,000 mixed actions ahead of time (signing and verification are consensus's cost, not
execution's), then times ``Exchange.apply_block`` over them: matching, margin, ledger updates,
funding and liquidation checks, invariants, the incremental state root and the SQLite commit.
Next to it, in the same run, it times plain SQLite batched inserts (1,000 rows per transaction,
same pragmas) as a baseline for what the disk layer alone costs.

It prints the state root after the last block too: the blocks are seeded, so every run, every
repeat and every machine must print the same root, and a change of it means a change of what
execution decides (intended or not), not of its speed.

Mix per block: 55% GTC limit orders near the mid (about a third of them cross), 10% post-only,
10% IOC, 5% market orders with a worst price, 15% cancels of an earlier order, 5% batches of 4
re-quotes (counted as 4 actions).

``--risk-tools`` adds two sections to the same run. The risk-tools mix is the default one with
5% of the actions stop / take-profit placements 30-400 ticks from the mark on their non-firing
side (reduce-only against the trader's position when it has one, market or limit), 5% modifies
of a resting order (half shrink it in place, half move it and re-queue), and a quarter of the
cancels naming an untriggered order; it is drawn against a shadow ledger so that every trigger
and modify is built from the state it will meet. The trigger check times a block of the default
mix on a ledger holding 10,000 untriggered orders far from the mark against the same block on a
ledger holding none (paired, block by block), the check itself per market, and a block whose
mark fires k market stops.

    python bench/exchange.py [--blocks 20] [--traders 2000] [--block-actions 1000] [--repeat 3]
                             [--risk-tools [--trigger-blocks 100] [--trigger-block-actions 200]]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from lockstep.consensus.actions import (
    Action,
    Batch,
    Cancel,
    CancelOrder,
    ModifyOrder,
    Order,
    OrderType,
    PlaceOrder,
    PlaceTrigger,
    Side,
    SignedTx,
    TimeInForce,
    TriggerKind,
    TxBody,
)
from lockstep.consensus.crypto import Signer
from lockstep.consensus.genesis import Account, Genesis, Validator, default_markets, default_timing
from lockstep.consensus.limits import MAX_BATCH_ACTIONS
from lockstep.consensus.vrf import vrf_keypair_from_seed
from lockstep.node.exchange.executor import Exchange
from lockstep.node.exchange.triggers import TriggerBook, fires_rising


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def build_genesis(n_traders: int) -> tuple[Genesis, list[Signer]]:
    vals = []
    for i in range(4):
        s = Signer(_seed(f"bench-validator-{i}"))
        vals.append(Validator(s.public_key, vrf_keypair_from_seed(_seed(f"bench-vrf-{i}"))[0], 1,
                              f"127.0.0.1:{27000 + i}", f"v{i}"))
    traders = [Signer(_seed(f"bench-trader-{j}")) for j in range(n_traders)]
    accounts = tuple(sorted((Account(t.public_key, 10**12) for t in traders),
                            key=lambda a: a.owner))
    g = Genesis("bench", 0, tuple(vals), default_markets(), accounts, 10**12, default_timing())
    return g, traders


@dataclass
class Flow:
    """What the generator knows between draws: the walking mids, the orders it placed (cancels
    pick from them), the last nonce."""

    rng: random.Random
    chain: bytes
    traders: list[Signer]
    mids: dict[int, int] = field(default_factory=lambda: {0: 600_000, 1: 300_000})
    open_cids: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    nonce: int = 0


def _place(side: Side, price: int, size: int, tif: TimeInForce, ot: OrderType,
           market: int, cid: int) -> PlaceOrder:
    return PlaceOrder(market, side, ot, tif, False, price, size, cid)


def base_action(f: Flow, ti: int, h: int,
                trigger_cids: list[tuple[int, int]] | None = None) -> tuple[TxBody, int]:
    """One draw of the default mix for trader ``ti`` at height ``h``: (body, actions in it).
    With ``trigger_cids`` ((market, client id) of the trader's untriggered orders), a quarter
    of the cancels name one of them instead of a resting order."""
    rng = f.rng
    t = f.traders[ti]
    f.nonce += 1
    nonce = f.nonce
    market = rng.randrange(2)
    mid = f.mids[market]
    side = Side(rng.randrange(2))
    sign = 1 if side == Side.BUY else -1
    r = rng.random()
    size = rng.randint(1, 10)
    exp = h + 5
    open_cids = f.open_cids
    if r < 0.15 / 4 and trigger_cids:
        tm, tcid = trigger_cids.pop(rng.randrange(len(trigger_cids)))
        return Cancel(t.public_key, nonce, exp, CancelOrder(tm, tcid)), 1
    if r < 0.15 and open_cids.get((ti, market)):
        cid = open_cids[(ti, market)].pop(rng.randrange(len(open_cids[(ti, market)])))
        return Cancel(t.public_key, nonce, exp, CancelOrder(market, cid)), 1
    if r < 0.20:
        acts = []
        for _k in range(4):
            f.nonce += 1
            s2 = Side(rng.randrange(2))
            off = rng.randint(5, 200) * (-1 if s2 == Side.BUY else 1)
            acts.append(_place(s2, mid + off, rng.randint(1, 10), TimeInForce.GTC,
                               OrderType.LIMIT, market, f.nonce))
            open_cids.setdefault((ti, market), []).append(f.nonce)
        return Batch(t.public_key, f.nonce, exp, tuple(acts)), 4
    if r < 0.75:
        tif, ot = TimeInForce.GTC, OrderType.LIMIT
        off = rng.randint(-60, 200)
    elif r < 0.85:
        tif, ot = TimeInForce.POST_ONLY, OrderType.LIMIT
        off = rng.randint(1, 200)
    elif r < 0.95:
        tif, ot = TimeInForce.IOC, OrderType.LIMIT
        off = rng.randint(-100, 20)
    else:
        tif, ot = TimeInForce.IOC, OrderType.MARKET
        off = -mid // 100
    price = mid - sign * off
    body = Order(t.public_key, nonce, exp, _place(side, price, size, tif, ot, market, nonce))
    if tif != TimeInForce.IOC:
        open_cids.setdefault((ti, market), []).append(nonce)
    return body, 1


def build_blocks(
    g: Genesis, traders: list[Signer], n_blocks: int, per_block: int, seed: int = 7,
    first_height: int = 1,
) -> tuple[list[list[SignedTx]], list[list[bytes]], int]:
    """Blocks of the default mix, for heights ``first_height`` onwards."""
    f = Flow(random.Random(seed), g.chain_id, traders)
    blocks: list[list[SignedTx]] = []
    ids: list[list[bytes]] = []
    n_actions = 0
    for h in range(first_height, first_height + n_blocks):
        txs: list[SignedTx] = []
        count = 0
        for m in f.mids:
            f.mids[m] += f.rng.randint(-50, 50)
        while count < per_block:
            ti = f.rng.randrange(len(traders))
            body, n = base_action(f, ti, h)
            count += n
            txs.append(body.sign(traders[ti], f.chain))
        n_actions += count
        blocks.append(txs)
        ids.append([tx.tx_id(f.chain) for tx in txs])
    return blocks, ids, n_actions


# --------------------------------------------------------------------------- risk tools

TRIGGER_SHARE = 0.05
MODIFY_SHARE = 0.05
"""Shares of the risk-tools mix's actions that are trigger placements and modifies. Held as
running quotas, not drawn: the default mix's batches and fall-backs make a draw 1.27 actions
on average, and a modify needs a resting order, which early blocks lack."""


@dataclass
class RiskCounts:
    triggers: int = 0
    reduce_only: int = 0
    modifies_kept: int = 0
    modifies_requeued: int = 0
    trigger_cancels: int = 0


def _trigger_action(f: Flow, shadow: Exchange, ti: int, h: int) -> tuple[PlaceTrigger, bool]:
    """A stop or take-profit on the non-firing side of the shadow's mark, 30-400 ticks away;
    reduce-only, against the position, when the trader holds one in the market."""
    rng = f.rng
    owner = f.traders[ti].public_key
    market = rng.randrange(2)
    mark = shadow.market_state(market).mark
    held = {mid: size for mid, size, *_ in shadow.positions(owner)}.get(market, 0)
    if held:
        side, size, reduce_only = (Side.SELL if held > 0 else Side.BUY), 0, True
        size = rng.randint(1, abs(held))
    else:
        side, size, reduce_only = Side(rng.randrange(2)), rng.randint(1, 10), False
    kind = TriggerKind(rng.randrange(2))
    away = rng.randint(30, 400)
    trigger_price = mark + away if fires_rising(side, kind) else mark - away
    if rng.random() < 0.5:
        ot, price = OrderType.MARKET, 0
    else:
        ot = OrderType.LIMIT
        price = trigger_price + (50 if side == Side.BUY else -50)
    f.nonce += 1
    return PlaceTrigger(market, side, kind, ot, reduce_only, trigger_price, price, size,
                        f.nonce), reduce_only


def _modify_action(f: Flow, shadow: Exchange, ti: int,
                   claimed: set[tuple[int, int, int]]) -> tuple[ModifyOrder, bool] | None:
    """A modify of one of the trader's resting orders no earlier draw of the block named: half
    shrink it at the same price (keeps priority), half move it 1-40 ticks (re-queues)."""
    rng = f.rng
    owner = f.traders[ti].public_key
    orders = [o for o in shadow.open_orders(owner) if (ti, o.market, o.client_id) not in claimed]
    if not orders:
        return None
    o = orders[rng.randrange(len(orders))]
    claimed.add((ti, o.market, o.client_id))
    if rng.random() < 0.5:
        return ModifyOrder(o.market, o.client_id, o.price, rng.randint(1, o.remaining),
                           False), True
    step = rng.randint(1, 40) * (1 if rng.random() < 0.5 else -1)
    return ModifyOrder(o.market, o.client_id, max(1, o.price + step), rng.randint(1, 10),
                       False), False


def build_risk_blocks(
    g: Genesis, traders: list[Signer], n_blocks: int, per_block: int, shadow_path: str,
    seed: int = 11,
) -> tuple[list[list[SignedTx]], list[list[bytes]], int, RiskCounts, bytes]:
    """The default mix with triggers and modifies mixed in (``TRIGGER_SHARE``,
    ``MODIFY_SHARE`` of the actions), and a quarter of the cancels reaching untriggered orders
    when the trader has one.

    Triggers must sit on the right side of the mark, reduce-only ones against a position the
    trader holds, and modifies must name an order still resting: so each block is drawn from a
    shadow exchange that has applied the blocks before it, and applied to it once drawn. The
    timed runs replay the same signed blocks on fresh ledgers; the shadow's last root is
    returned so they can be checked against it."""
    f = Flow(random.Random(seed), g.chain_id, traders)
    shadow = Exchange.open(shadow_path, g)
    counts = RiskCounts()
    blocks: list[list[SignedTx]] = []
    ids: list[list[bytes]] = []
    n_actions = 0
    root = b""
    for h in range(1, n_blocks + 1):
        txs: list[SignedTx] = []
        count = 0
        claimed: set[tuple[int, int, int]] = set()
        for m in f.mids:
            f.mids[m] += f.rng.randint(-50, 50)
        while count < per_block:
            ti = f.rng.randrange(len(traders))
            owner = traders[ti].public_key
            done = n_actions + count + 1
            n_mod = counts.modifies_kept + counts.modifies_requeued
            body: TxBody | None = None
            if counts.triggers < TRIGGER_SHARE * done:
                trig, reduce_only = _trigger_action(f, shadow, ti, h)
                body = Batch(owner, f.nonce, h + 5, (trig,))
                counts.triggers += 1
                counts.reduce_only += reduce_only
                n = 1
            elif n_mod < MODIFY_SHARE * done:
                got = _modify_action(f, shadow, ti, claimed)
                if got is not None:
                    f.nonce += 1
                    body = Batch(owner, f.nonce, h + 5, (got[0],))
                    counts.modifies_kept += got[1]
                    counts.modifies_requeued += not got[1]
                    n = 1
            if body is None:
                pending = [(t.market, t.client_id) for t in shadow.open_triggers(owner)
                           if (ti, t.market, t.client_id) not in claimed]
                before = len(pending)
                body, n = base_action(f, ti, h, pending)
                if len(pending) < before:
                    counts.trigger_cancels += 1
                    cancel = body.actions()[0]
                    claimed.add((ti, cancel.market, cancel.client_id))
                elif type(body) is Cancel:
                    cancel = body.actions()[0]
                    claimed.add((ti, cancel.market, cancel.client_id))
            count += n
            txs.append(body.sign(traders[ti], f.chain))
        tx_ids = [tx.tx_id(f.chain) for tx in txs]
        root = shadow.apply_block(h, h * 100, txs, tx_ids=tx_ids).state_root
        n_actions += count
        blocks.append(txs)
        ids.append(tx_ids)
    shadow.close()
    return blocks, ids, n_actions, counts, root


class ExchangeRun(NamedTuple):
    """One run over every block: its times, what it decided, and the state root it reached."""

    wall_s: float
    cpu_s: float
    trades: int
    rejected: int
    state_root: bytes
    fired: int
    """Triggers the blocks' marks fired."""
    reasons: tuple[tuple[str, int], ...]
    """Why the skipped transactions were skipped, by count."""


def bench_exchange(g: Genesis, blocks: list[list[SignedTx]], ids: list[list[bytes]],
                   path: str) -> ExchangeRun:
    """Apply every block to a fresh ledger at ``path``; time it, keep the last state root."""
    ex = Exchange.open(path, g)
    trades = rejected = fired = 0
    reasons: Counter[str] = Counter()
    root = b""
    t0, c0 = time.perf_counter(), time.process_time()
    for h, (txs, tx_ids) in enumerate(zip(blocks, ids, strict=True), 1):
        r = ex.apply_block(h, h * 100, txs, tx_ids=tx_ids)
        trades += len(r.trades)
        rejected += len(r.rejections)
        fired += sum(1 for e in r.events if getattr(e, "kind", None) == "triggered")
        reasons.update(o.reason.name for o in r.rejections)
        root = r.state_root
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ex.close()
    return ExchangeRun(wall, cpu, trades, rejected, root, fired,
                       tuple(sorted(reasons.items(), key=lambda kv: -kv[1])))


def bench_sqlite(path: str, n_rows: int, batch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to insert ``n_rows`` rows, ``batch`` per transaction."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, owner BLOB, market INTEGER, side INTEGER,"
               " price INTEGER, size INTEGER, remaining INTEGER, client_id INTEGER,"
               " reduce_only INTEGER, height INTEGER)")
    owner = bytes(32)
    rows = [(i, owner, i % 2, i % 2, 600_000 + i % 500, 5, 5, i, 0, i // batch)
            for i in range(n_rows)]
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(0, n_rows, batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?)", rows[k:k + batch])
        db.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    db.close()
    return wall, cpu


# --------------------------------------------------------------------------- trigger check

FAR_TRIGGERS = 10_000
TRIGGERS_PER_ACCOUNT = 10
SEED_BLOCK_ACTIONS = 1_000
FIRE_COUNTS = (10, 100, 1_000)
SEED_NONCE = 10**9
"""Nonces and client ids of the setup transactions, far above the timed blocks' (from 1)."""


def _batches(g: Genesis, traders: list[Signer], placed: list[tuple[int, Action]],
             first_height: int, nonce0: int) -> list[list[SignedTx]]:
    """``placed`` ((trader, action)) as one batch per trader and block, up to
    ``SEED_BLOCK_ACTIONS`` actions a block, for heights ``first_height`` onwards."""
    by_trader: dict[int, list[Action]] = {}
    for ti, a in placed:
        by_trader.setdefault(ti, []).append(a)
    blocks: list[list[SignedTx]] = [[]]
    in_block = 0
    nonce = nonce0
    for ti in sorted(by_trader):
        acts = by_trader[ti]
        for k in range(0, len(acts), MAX_BATCH_ACTIONS):
            chunk = tuple(acts[k:k + MAX_BATCH_ACTIONS])
            if in_block + len(chunk) > SEED_BLOCK_ACTIONS:
                blocks.append([])
                in_block = 0
            nonce += 1
            h = first_height + len(blocks) - 1
            t = traders[ti]
            blocks[-1].append(Batch(t.public_key, nonce, h + 5, chunk).sign(t, g.chain_id))
            in_block += len(chunk)
    return blocks


def far_triggers(g: Genesis, n: int) -> list[tuple[int, Action]]:
    """``n`` untriggered orders, ``TRIGGERS_PER_ACCOUNT`` per account, both markets, every
    side and kind, market and limit, 30% beyond the mark on their non-firing side: no block of
    the timed mix comes near them."""
    combos = ((Side.BUY, TriggerKind.STOP), (Side.SELL, TriggerKind.TAKE_PROFIT),
              (Side.SELL, TriggerKind.STOP), (Side.BUY, TriggerKind.TAKE_PROFIT))
    out: list[tuple[int, Action]] = []
    for j in range(n):
        market = j % 2
        start = g.markets[market].initial_price_ticks
        side, kind = combos[(j // 2) % 4]
        tp = start * 13 // 10 + j if fires_rising(side, kind) else start * 7 // 10 - j
        ot, price = (OrderType.MARKET, 0) if j % 3 else (OrderType.LIMIT, tp)
        out.append((j // TRIGGERS_PER_ACCOUNT,
                    PlaceTrigger(market, side, kind, ot, False, tp, price, 1, SEED_NONCE + j)))
    return out


def _apply(ex: Exchange, blocks: list[list[SignedTx]]) -> None:
    for txs in blocks:
        h = ex.height + 1
        r = ex.apply_block(h, h * 100, txs)
        assert not r.rejections, r.rejections[:3]


def _empty(n: int) -> list[list[SignedTx]]:
    return [[] for _ in range(n)]


class RestingCost(NamedTuple):
    per_block_us: list[float]
    """Per timed block: its wall time with the triggers resting less without (paired)."""
    with_ms: float
    without_ms: float
    check_us: float
    """The check itself per market, with the triggers resting (bisection of both sides)."""
    check_empty_us: float


def bench_resting(g: Genesis, traders: list[Signer], n_blocks: int, per_block: int,
                  d: str) -> RestingCost:
    """Two ledgers, one with ``FAR_TRIGGERS`` resting and one without (empty blocks at the
    same heights), apply the same timed blocks, alternating which goes first."""
    seeds = _batches(g, traders, far_triggers(g, FAR_TRIGGERS), 1, SEED_NONCE)
    with_t = Exchange.open(os.path.join(d, "resting-with.db"), g)
    without = Exchange.open(os.path.join(d, "resting-without.db"), g)
    _apply(with_t, seeds)
    _apply(without, _empty(len(seeds)))
    assert sum(len(b) for b in with_t.trigger_books.values()) == FAR_TRIGGERS
    blocks, ids, _ = build_blocks(g, traders, n_blocks, per_block, seed=13,
                                  first_height=len(seeds) + 1)
    diffs: list[float] = []
    tot = [0.0, 0.0]
    for k, (txs, tx_ids) in enumerate(zip(blocks, ids, strict=True)):
        h = len(seeds) + 1 + k
        took = [0.0, 0.0]
        for which in ((0, 1) if k % 2 else (1, 0)):
            ex = (with_t, without)[which]
            t0 = time.perf_counter()
            r = ex.apply_block(h, h * 100, txs, tx_ids=tx_ids)
            took[which] = time.perf_counter() - t0
            assert not any(getattr(e, "kind", None) == "triggered" for e in r.events)
        diffs.append((took[0] - took[1]) * 1e6)
        tot[0] += took[0]
        tot[1] += took[1]
    check_us = _time_check(with_t)
    empty = {m.market_id: TriggerBook(m.market_id) for m in g.markets}
    check_empty_us = _time_books(empty, with_t)
    with_t.close()
    without.close()
    return RestingCost(diffs, tot[0] / n_blocks * 1000, tot[1] / n_blocks * 1000,
                       check_us, check_empty_us)


def _time_check(ex: Exchange) -> float:
    return _time_books(ex.trigger_books, ex)


def _time_books(books: dict[int, TriggerBook], ex: Exchange, loops: int = 20_000) -> float:
    """µs per market of what the trigger phase does when nothing fires: ask each market's
    trigger book which triggers the mark fires."""
    marks = {mid: ex.market_state(mid).mark for mid in books}
    t0 = time.perf_counter()
    for _ in range(loops):
        for mid in sorted(books):
            assert not books[mid].fired_ids(marks[mid])
    return (time.perf_counter() - t0) / loops / len(books) * 1e6


def bench_firing(g: Genesis, traders: list[Signer], k: int, d: str, run: int) -> float:
    """Wall ms of one block that lifts BTC-PERP's mark through ``k`` market buy stops (1 lot
    each, from the asks), on a ledger that also holds the ``FAR_TRIGGERS``. With k = 0 the
    same block on the same ledger but for the near stops: the firing's cost is the difference.

    Heights: the far triggers; a block of liquidity (asks and bids 100-109 ticks from the
    start price, 200 lots each); the k stops at the start price + 10 (or an empty block); the
    block whose bid at + 50 moves the mark, median(index, bid, ask), to + 50."""
    m = g.markets[0]
    start = m.initial_price_ticks
    seeds = _batches(g, traders, far_triggers(g, FAR_TRIGGERS), 1, SEED_NONCE)
    h = len(seeds) + 1
    makers = range(len(traders) - 11, len(traders) - 1)
    liquidity: list[tuple[int, Action]] = []
    for i, ti in enumerate(makers):
        for side, px in ((Side.SELL, start + 100 + i), (Side.BUY, start - 100 - i)):
            liquidity.append((ti, PlaceOrder(0, side, OrderType.LIMIT, TimeInForce.POST_ONLY,
                                             False, px, 200, 2 * SEED_NONCE + len(liquidity))))
    lift = _batches(g, traders, liquidity, h, 2 * SEED_NONCE)
    assert len(lift) == 1
    near = [(j % 900 + 1_000, PlaceTrigger(0, Side.BUY, TriggerKind.STOP, OrderType.MARKET,
                                             False, start + 10, 0, 1, 3 * SEED_NONCE + j))
            for j in range(k)]
    stops = _batches(g, traders, near, h + 1, 3 * SEED_NONCE) if k else _empty(1)
    assert len(stops) == 1
    t = traders[-1]
    fire = [Order(t.public_key, 4 * SEED_NONCE, h + 7,
                  PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, start + 50,
                             1, 4 * SEED_NONCE)).sign(t, g.chain_id)]
    ex = Exchange.open(os.path.join(d, f"fire-{k}-{run}.db"), g)
    _apply(ex, seeds + lift + stops)
    assert ex.market_state(0).mark == start
    t0 = time.perf_counter()
    r = ex.apply_block(h + 2, (h + 2) * 100, fire)
    took = time.perf_counter() - t0
    fired = sum(1 for e in r.events if getattr(e, "kind", None) == "triggered")
    assert fired == k and len(r.trades) == k and not r.rejections, (fired, len(r.trades))
    ex.close()
    return took * 1000


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    return ys[n // 2] if n % 2 else (ys[n // 2 - 1] + ys[n // 2]) / 2


def _quartiles(xs: list[float]) -> tuple[float, float]:
    ys = sorted(xs)
    return ys[len(ys) // 4], ys[(3 * len(ys)) // 4]


# --------------------------------------------------------------------------- report


def report_default(args: argparse.Namespace, g: Genesis, traders: list[Signer],
                   d: str) -> float:
    """The default mix: the figures the README and the design doc quote. Returns the CPU
    seconds of one of its actions, for the risk-tools mix to compare with."""
    print(f"signing {args.blocks} blocks of {args.block_actions} actions "
          f"({args.traders} traders)…", flush=True)
    blocks, ids, n_actions = build_blocks(g, traders, args.blocks, args.block_actions)
    ex_runs, sq_runs = [], []
    for i in range(args.repeat):
        ex_runs.append(bench_exchange(g, blocks, ids, os.path.join(d, f"ex{i}.db")))
        sq_runs.append(bench_sqlite(os.path.join(d, f"plain{i}.db"), n_actions,
                                    args.block_actions))
    roots = {run.state_root for run in ex_runs}
    assert len(roots) == 1, f"runs over the same blocks reached different roots: {roots}"
    best = min(ex_runs)
    wall, cpu = best.wall_s, best.cpu_s
    sq_wall, sq_cpu = min(sq_runs)
    n_txs = sum(len(b) for b in blocks)
    print(f"exchange: {n_actions} actions in {n_txs} txs, {args.blocks} blocks, "
          f"{best.trades} trades, {best.rejected} txs skipped with a reason "
          f"(best of {args.repeat})")
    print(f"exchange: state root after block {args.blocks}: {best.state_root.hex()}"
          + (f" (the same in all {args.repeat} runs)" if args.repeat > 1 else ""))
    print(f"exchange: {n_actions / wall:,.0f} matched-and-applied actions/s wall, "
          f"{n_actions / cpu:,.0f} per CPU-second "
          f"({wall / args.blocks * 1000:.1f} ms per block, incl. state root and SQLite commit)")
    print(f"baseline: {n_actions / sq_wall:,.0f} plain SQLite inserts/s wall, "
          f"{n_actions / sq_cpu:,.0f} per CPU-second "
          f"(executemany, {args.block_actions} rows per transaction, WAL, synchronous=NORMAL)")
    print(f"ratio:    one applied action costs as much CPU as "
          f"{(cpu / n_actions) / (sq_cpu / n_actions):.0f} plain inserts "
          "(stable across machine load, unlike the rates)")
    print("goal:     20,000 actions/s")
    return cpu / n_actions


def report_risk(args: argparse.Namespace, g: Genesis, traders: list[Signer], d: str,
                plain_cpu_s: float) -> None:
    """The risk-tools mix next to the same run's default mix and SQLite baseline."""
    print(f"\nrisk tools: drawing {args.blocks} blocks of {args.block_actions} actions with "
          "triggers and modifies against a shadow ledger…", flush=True)
    blocks, ids, n_actions, c, shadow_root = build_risk_blocks(
        g, traders, args.blocks, args.block_actions, os.path.join(d, "shadow.db"))
    ex_runs, sq_runs = [], []
    for i in range(args.repeat):
        ex_runs.append(bench_exchange(g, blocks, ids, os.path.join(d, f"risk{i}.db")))
        sq_runs.append(bench_sqlite(os.path.join(d, f"risk-plain{i}.db"), n_actions,
                                    args.block_actions))
    roots = {run.state_root for run in ex_runs} | {shadow_root}
    assert len(roots) == 1, f"runs over the same blocks reached different roots: {roots}"
    best = min(ex_runs)
    sq_wall, sq_cpu = min(sq_runs)
    n_mod = c.modifies_kept + c.modifies_requeued
    n_txs = sum(len(b) for b in blocks)
    print(f"risk tools: {n_actions} actions in {n_txs} txs: "
          f"{c.triggers / n_actions:.1%} trigger placements ({c.triggers}, "
          f"{c.reduce_only} reduce-only against a position), {n_mod / n_actions:.1%} modifies "
          f"({c.modifies_kept} keep priority, {c.modifies_requeued} re-queue), "
          f"{(c.triggers + n_mod) / n_actions:.1%} together; {c.trigger_cancels} cancels "
          "reach a trigger")
    skipped = ", ".join(f"{k} {v}" for k, v in best.reasons) or "none"
    print(f"risk tools: {best.trades} trades, {best.fired} triggers fired, {best.rejected} txs "
          f"skipped ({skipped})")
    print(f"risk tools: state root after block {args.blocks}: {best.state_root.hex()} "
          f"(the shadow's, and the same in all {args.repeat} runs)")
    wall, cpu = best.wall_s, best.cpu_s
    print(f"risk tools: {n_actions / wall:,.0f} matched-and-applied actions/s wall, "
          f"{n_actions / cpu:,.0f} per CPU-second "
          f"({wall / args.blocks * 1000:.1f} ms per block)")
    print(f"baseline:   {n_actions / sq_wall:,.0f} plain SQLite inserts/s wall, "
          f"{n_actions / sq_cpu:,.0f} per CPU-second")
    print(f"ratio:      one applied action of this mix costs as much CPU as "
          f"{(cpu / n_actions) / (sq_cpu / n_actions):.0f} plain inserts, "
          f"{(cpu / n_actions) / plain_cpu_s:.2f}× an action of the default mix")
    print("goal:       20,000 actions/s with 10% of the mix triggers and modifies")


def report_triggers(args: argparse.Namespace, g: Genesis, traders: list[Signer],
                    d: str) -> None:
    """What untriggered orders cost a block: resting (nothing fires) and firing k."""
    print(f"\ntrigger check: {FAR_TRIGGERS:,} untriggered orders over "
          f"{FAR_TRIGGERS // TRIGGERS_PER_ACCOUNT:,} accounts and both markets, 30% from the "
          f"mark; {args.trigger_blocks} blocks of {args.trigger_block_actions} actions of the "
          "default mix applied with and without them…", flush=True)
    rc = bench_resting(g, traders, args.trigger_blocks, args.trigger_block_actions, d)
    lo, hi = _quartiles(rc.per_block_us)
    med = _median(rc.per_block_us)
    print(f"trigger check: a block that fires none: {rc.with_ms:.2f} ms with them resting, "
          f"{rc.without_ms:.2f} ms without; paired difference {med:+.0f} µs per block "
          f"(interquartile {lo:+.0f} … {hi:+.0f} µs), {med / len(g.markets):+.0f} µs per "
          f"market, {med / (rc.without_ms * 1000):+.1%} of the block")
    print(f"trigger check: the check itself (both sides of a market's trigger book bisected): "
          f"{rc.check_us:.2f} µs per market with {FAR_TRIGGERS // len(g.markets):,} resting, "
          f"{rc.check_empty_us:.2f} µs with none")
    base = [bench_firing(g, traders, 0, d, i) for i in range(args.repeat)]
    b = _median(base)
    print(f"trigger fire: the block that lifts the mark, firing none: {b:.2f} ms "
          f"(median of {args.repeat})")
    for k in FIRE_COUNTS:
        ms = _median([bench_firing(g, traders, k, d, i) for i in range(args.repeat)])
        print(f"trigger fire: firing {k:>5} market stops (each a 1-lot fill): {ms:.2f} ms, "
              f"{(ms - b) * 1000 / k:.0f} µs per fired trigger")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--traders", type=int, default=2_000)
    ap.add_argument("--block-actions", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    ap.add_argument("--risk-tools", action="store_true",
                    help="also the mix with 10%% triggers and modifies, and the trigger check")
    ap.add_argument("--trigger-blocks", type=int, default=100,
                    help="timed blocks of the resting-trigger comparison")
    ap.add_argument("--trigger-block-actions", type=int, default=200)
    args = ap.parse_args()
    g, traders = build_genesis(args.traders)
    with tempfile.TemporaryDirectory() as d:
        plain = report_default(args, g, traders, d)
        if args.risk_tools:
            report_risk(args, g, traders, d, plain)
            report_triggers(args, g, traders, d)


if __name__ == "__main__":
    main()
