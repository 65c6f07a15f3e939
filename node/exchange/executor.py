"""Apply finalized blocks to the exchange: the entry point the node daemon calls.

Theory of operation: :class:`Exchange` owns the whole exchange state — books, ledger, replay
memory, prices, state tree — in memory, and the SQLite file (:class:`LedgerStore`) that
persists it. It is sans-I/O in the sense that matters: its only inputs are the genesis and the
finalized blocks (height, the proposer's timestamp, the ordered transactions); it never reads a
clock, a random source or the network, and iterates only in sorted or block order. The daemon
calls :meth:`Exchange.apply_block` from its one SQLite worker thread.

One block is applied in this order (the protocol document says why):

0. forget replay entries whose expiry is below the height;
1. oracle transactions, in block order; then the index and mark prices of every market;
2. dead man's switches that expired (ascending account key), then ``Cancel`` transactions, in
   block order (cancels before placements);
3. every other transaction (``Order``, ``Batch``, ``Transfer``, ``Withdraw``) in block order;
4. mark prices again from the post-trade books, a premium sample, funding if due;
   then the triggers those marks fire, in ascending trigger id, and the marks once more;
5. the insurance fund unwinds its positions against the book; then liquidations, until no
   account is below maintenance;
6. invariants (conservation, open interest, book not crossed, no negative account);
7. the state root over the changed records, and one SQLite transaction with every change.

Every transaction gets an outcome: ``Reason.OK`` or the reason it was skipped. A skipped
transaction changes nothing, except that its (signer, nonce) is consumed once it passed the
expiry and replay checks, so the same bytes cannot be included again.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from lockstep.consensus.actions import (
    Attach,
    Batch,
    Cancel,
    CancelAll,
    CancelOrder,
    ModifyOrder,
    OraclePrice,
    Order,
    OrderType,
    PlaceOrder,
    PlaceTrigger,
    ScheduleCancel,
    Side,
    SignedTx,
    TimeInForce,
    Transfer,
    TxBody,
    Withdraw,
)
from lockstep.consensus.genesis import PPM, Genesis, Market

from . import funding as fundingmod
from . import liquidation
from .book import Book, RestingOrder
from .events import Event, FundingEvent, OrderEvent
from .ledger import (
    AccountState,
    BlockWrite,
    ConservationError,
    Ledger,
    LedgerStore,
    MarketState,
    Position,
    Trade,
    u64_to_sql,
)
from .margin import Spec, initial_requirement, maintenance_requirement, open_loss
from .matching import match, would_cross
from .mempool_rules import (
    FEE_ACCOUNT,
    INSURANCE_FUND,
    MAX_OPEN_ORDERS_PER_ACCOUNT,
    MIN_NEW_ACCOUNT_ATOMS,
    SYSTEM_ACCOUNTS,
    Reason,
    check_envelope,
    check_static,
    genesis_tables,
)
from .prices import index_price, mark_price
from .replay import ReplayGuard
from .state_root import StateTree
from .triggers import (
    MAX_TRIGGERS_FIRED_PER_BLOCK,
    Trigger,
    TriggerBook,
    market_bound,
    on_firing_side,
)

RECENT_TRADES_PER_MARKET = 1_000
"""Trades kept in memory per market for the RPC; older ones are read from SQLite."""
BUY, SELL = Side.BUY, Side.SELL

# --------------------------------------------------------------------------- results


class TxOutcome(NamedTuple):
    """What one transaction of a block did. (NamedTuple: immutable, and cheap to build by the
    thousand per block; the same holds for :class:`OrderEvent` and ``Trade``.)"""

    index: int
    """Position of the transaction in the block."""
    tx_id: bytes
    reason: Reason
    action_index: int
    """For a rejected batch, which action failed (else -1)."""


@dataclass(frozen=True, slots=True)
class BlockResult:
    height: int
    timestamp_ms: int
    state_root: bytes
    trades: tuple[Trade, ...]
    outcomes: tuple[TxOutcome, ...]
    events: tuple[Event, ...]

    @property
    def rejections(self) -> tuple[TxOutcome, ...]:
        return tuple(o for o in self.outcomes if o.reason != Reason.OK)


@dataclass(frozen=True, slots=True)
class Admission:
    """What the edge (RPC, gossip) learns about raw transaction bytes."""

    reason: Reason
    tx: SignedTx | None
    tx_id: bytes | None
    action_index: int = -1
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AccountView:
    owner: bytes
    collateral: int
    equity: int
    initial_requirement: int
    maintenance_requirement: int
    open_orders: int


class BlockOrderError(AssertionError):
    """The caller applied blocks out of order or with time going backwards. Our bug."""


class ExchangeHalted(RuntimeError):
    """An earlier block failed half-way (a broken invariant, a failed SQLite write): memory and
    file may disagree, so nothing more is applied until the exchange is reopened from the file."""


# --------------------------------------------------------------------------- exchange


class _Taker:
    """The order being matched (kept on the exchange to avoid a closure per order)."""

    __slots__ = ("acct", "fee_ppm", "is_buy", "liquidation", "market", "mk", "mult")

    def __init__(self) -> None:
        self.acct: AccountState
        self.market = 0
        self.mk: Market
        self.mult = 0
        self.is_buy = True
        self.fee_ppm = 0
        self.liquidation = False


class Exchange:
    """The exchange state machine over one SQLite file. See the module docstring."""

    def __init__(self, genesis: Genesis, store: LedgerStore) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.store = store
        self.markets, self.validators = genesis_tables(genesis)
        self.specs = {mid: Spec(m) for mid, m in self.markets.items()}
        self.weights = {v.public_key: v.weight for v in genesis.validators}
        self.total_weight = genesis.total_weight
        self.ledger = Ledger()
        self.books: dict[int, Book] = {m: Book(m) for m in self.markets}
        self.orders: dict[int, RestingOrder] = {}
        self.by_client: dict[tuple[bytes, int, int], RestingOrder] = {}
        self.triggers: dict[int, Trigger] = {}
        self.trigger_books: dict[int, TriggerBook] = {m: TriggerBook(m) for m in self.markets}
        self.trigger_by_client: dict[tuple[bytes, int, int], Trigger] = {}
        self.tpsl: dict[tuple[bytes, int], set[int]] = {}
        """(owner, market) → the active TP/SL triggers protecting that position."""
        self.waiting: dict[int, list[int]] = {}
        """resting order id → its dormant TP/SL children (they wake at its first fill)."""
        self.families: dict[int, set[int]] = {}
        """TP/SL group of an order (the first child's trigger id) → its live members."""
        self.last_rested = 0
        """Order id the last placement left resting (0: none); with ``last_filled``, what a
        batch's TP/SL children need of their parent."""
        self.last_filled = 0
        self.schedules: dict[bytes, int] = {}
        """owner → height after which its orders and triggers are cancelled (dead man's switch)."""
        self.schedules_due: dict[int, set[bytes]] = {}
        """height of the block that cancels → the owners whose switch fires in it."""
        self.replay = ReplayGuard()
        self.oracle: dict[int, dict[bytes, tuple[int, int]]] = {m: {} for m in self.markets}
        self.tree = StateTree()
        self.height = 0
        self.timestamp_ms = genesis.genesis_time_ms
        self.next_order_id = 1
        self.next_trade_id = 1
        self.state_root = b""
        self.recent_trades: dict[int, deque[Trade]] = {
            m: deque(maxlen=RECENT_TRADES_PER_MARKET) for m in self.markets
        }
        self.halted: str | None = None
        self._taker = _Taker()
        self._fill_cb = self._on_fill
        self._cancel_cb = self._on_cancel_in_match
        self._cap_cb = self._reduce_cap
        for mid in self.markets:
            self.ledger.holders[mid] = set()
        self.risk = liquidation.RiskIndex({mid: sp.mm_max for mid, sp in self.specs.items()})
        self._begin()

    # ----------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        db_path: str | os.PathLike[str],
        genesis: Genesis,
        monotonic: Callable[[], float] | None = None,
    ) -> Exchange:
        """Open (or create) the ledger file and rebuild the in-memory state from it.
        ``monotonic`` bounds how long blocks stay uncommitted (``LedgerStore``)."""
        store = LedgerStore(os.fspath(db_path), monotonic)
        ex = cls(genesis, store)
        meta = store.meta()
        if "height" not in meta:
            ex._init_genesis()
        else:
            if meta.get("chain_id") != ex.chain_id:
                raise ValueError(f"{db_path} belongs to another chain")
            ex._load(meta)
        return ex

    def close(self) -> None:
        self.store.close()

    def _init_genesis(self) -> None:
        g = self.genesis
        led = self.ledger
        for a in g.accounts:
            if a.owner in SYSTEM_ACCOUNTS:
                raise ValueError("a genesis account uses a reserved system key")
            led.credit(led.account(a.owner), a.collateral)
        led.credit(led.account(INSURANCE_FUND), g.insurance_fund)
        led.account(FEE_ACCOUNT)
        for m in g.markets:
            led.markets[m.market_id] = MarketState(
                m.market_id, m.initial_price_ticks, g.genesis_time_ms + m.funding_interval_ms
            )
            led.dirty_markets.add(m.market_id)
        self._commit(height=0, timestamp_ms=g.genesis_time_ms, n_txs=0, funding_rows=[])

    def _load(self, meta: dict) -> None:
        led = self.ledger
        store = self.store
        self.height = int(meta["height"])
        self.timestamp_ms = int(meta["timestamp_ms"])
        self.next_order_id = int(meta["next_order_id"])
        self.next_trade_id = int(meta["next_trade_id"])
        led.withdrawn_total = int(meta["withdrawn_total"])
        for owner, collateral in store.load_accounts():
            led.accounts[owner] = AccountState(owner, collateral)
        for row in store.load_markets():
            ms = MarketState(row[0], row[1], row[5])
            (
                _,
                ms.index,
                ms.mark,
                ms.premium_sum,
                ms.premium_samples,
                ms.next_funding_ms,
                ms.last_funding_ms,
                ms.last_funding_rate_ppm,
                ms.long_oi,
                ms.short_oi,
            ) = row
            led.markets[ms.market_id] = ms
        for owner, market, size, on, realized, fpaid in store.load_positions():
            led.accounts[owner].positions[market] = Position(
                owner, market, size, on, realized, fpaid
            )
            if size:
                led.holders[market].add(owner)
        for o in store.load_orders():
            self._index_order(o)
            self.books[o.market].add(o)
        for t in store.load_triggers():
            self._index_trigger(t)
        for owner, after in store.load_schedules():
            self._set_schedule(owner, after)
        for market, validator, price, stamped in store.load_oracle():
            self.oracle[market][validator] = (price, stamped)
        self.replay.load(store.load_replay())
        for owner in sorted(led.accounts):
            if owner not in SYSTEM_ACCOUNTS and led.accounts[owner].positions:
                self.risk.assess(self, led.accounts[owner])
        self.tree.update(self._all_records())
        self.state_root = self.tree.root()
        stored = meta["state_root"]
        if stored != self.state_root:
            raise ConservationError(
                f"state rebuilt from {store.path} has root {self.state_root.hex()}, "
                f"but the file recorded {bytes(stored).hex()}"
            )
        self._begin()

    # ----------------------------------------------------------------------- block

    def _begin(self) -> None:
        self.ledger.begin_block()
        self.touched_orders: set[int] = set()
        self.touched_triggers: set[int] = set()
        self.touched_schedules: set[bytes] = set()
        self.dirty_oracle: set[tuple[int, bytes]] = set()
        self.trades: list[Trade] = []
        self.events: list[Event] = []
        self.touched_books: set[int] = set()
        self.liquidation_counterparties: set[bytes] = set()

    def apply_block(
        self,
        height: int,
        timestamp_ms: int,
        txs: Sequence[SignedTx],
        proposer: object = None,
        tx_ids: Sequence[bytes] | None = None,
    ) -> BlockResult:
        """Apply one finalized block; return its state root, trades, outcomes and events.

        ``timestamp_ms`` is the block's (proposer's, bounded by the validators' vote rule) and
        must not go backwards. ``tx_ids`` are the transactions' ids if the caller already has
        them (consensus computed them when verifying); otherwise they are computed here.
        ``proposer`` is informational: the ledger pays no block reward.
        """
        del proposer
        if self.halted is not None:
            raise ExchangeHalted(f"an earlier block failed: {self.halted}")
        if height != self.height + 1:
            raise BlockOrderError(f"block {height} applied after {self.height}")
        if timestamp_ms < self.timestamp_ms:
            raise BlockOrderError(f"block {height} time {timestamp_ms} < {self.timestamp_ms}")
        try:
            return self._apply_block(height, timestamp_ms, txs, tx_ids)
        except BaseException as e:
            self.halted = f"block {height}: {type(e).__name__}: {e}"
            raise

    def _apply_block(
        self,
        height: int,
        timestamp_ms: int,
        txs: Sequence[SignedTx],
        tx_ids: Sequence[bytes] | None,
    ) -> BlockResult:
        if tx_ids is None:
            tx_ids = [tx.tx_id(self.chain_id) for tx in txs]
        assert len(tx_ids) == len(txs)
        self._begin()
        self.replay.prune(height)
        outcomes: list[TxOutcome | None] = [None] * len(txs)
        bodies = [tx.body for tx in txs]
        # 1. oracle prices, then index and mark.
        for i, body in enumerate(bodies):
            if type(body) is OraclePrice:
                outcomes[i] = self._apply_tx(i, tx_ids[i], body, height, timestamp_ms)
        self._update_prices(timestamp_ms)
        # 2. dead man's switches, then cancels.
        self._run_schedules(height)
        for i, body in enumerate(bodies):
            if type(body) is Cancel:
                outcomes[i] = self._apply_tx(i, tx_ids[i], body, height, timestamp_ms)
        # 3. everything else, in block order.
        for i, body in enumerate(bodies):
            if outcomes[i] is None:
                outcomes[i] = self._apply_tx(i, tx_ids[i], body, height, timestamp_ms)
        # 4. marks, premium, funding.
        funding_rows = self._end_of_block_prices(timestamp_ms)
        self._fire_triggers(height)
        # 5. the insurance fund unwinds, then liquidations.
        liquidation.unwind_fund(self)
        liquidation.run(self)
        self._sweep_closed_positions()
        # 6. invariants; 7. state root and SQLite.
        self._check_invariants()
        final = tuple(o for o in outcomes if o is not None)
        assert len(final) == len(txs)
        self._commit(height, timestamp_ms, len(txs), funding_rows, final)
        result = BlockResult(
            height, timestamp_ms, self.state_root, tuple(self.trades), final, tuple(self.events)
        )
        return result

    def _apply_tx(
        self, index: int, tx_id: bytes, body: TxBody, height: int, now_ms: int
    ) -> TxOutcome:
        reason, action = check_static(body, height, self.markets, self.validators)
        if reason:
            return TxOutcome(index, tx_id, reason, action)
        if self.replay.seen(body.signer, body.nonce):
            return TxOutcome(index, tx_id, Reason.REPLAYED, -1)
        self.replay.remember(body.signer, body.nonce, body.expiry_height)
        reason, action = self._apply_body(body, height, now_ms)
        return TxOutcome(index, tx_id, reason, action)

    def _apply_body(self, body: TxBody, height: int, now_ms: int) -> tuple[Reason, int]:
        kind = type(body)
        if kind is OraclePrice:
            for mp in body.prices:
                self.oracle[mp.market][body.signer] = (mp.price, now_ms)
                self.dirty_oracle.add((mp.market, body.signer))
            return Reason.OK, -1
        acct = self.ledger.accounts.get(body.signer)
        if acct is None:
            return Reason.UNKNOWN_ACCOUNT, -1
        if kind is Order:
            return self._place(acct, body.place, height), -1
        if kind is Cancel:
            return self._cancel(acct, body.cancel), -1
        if kind is Batch:
            return self._batch(acct, body.batch, height)
        if kind is Transfer:
            return self._transfer(acct, body.to, body.amount, withdraw=False), -1
        if kind is Withdraw:
            return self._transfer(acct, b"", body.amount, withdraw=True), -1
        raise AssertionError(f"unknown body {kind.__name__}")

    # ----------------------------------------------------------------------- orders

    def _index_order(self, o: RestingOrder) -> None:
        self.orders[o.order_id] = o
        self.by_client[(o.owner, o.market, o.client_id)] = o
        acct = self.ledger.accounts[o.owner]
        acct.orders[o.order_id] = o
        book = acct.open_buy if o.side == BUY else acct.open_sell
        book[o.market] = book.get(o.market, 0) + o.remaining

    def _unindex_order(self, o: RestingOrder, lots: int) -> None:
        """Take ``lots`` off the owner's open exposure (all of them when the order goes)."""
        acct = self.ledger.accounts[o.owner]
        book = acct.open_buy if o.side == BUY else acct.open_sell
        left = book[o.market] - lots
        if left:
            book[o.market] = left
        else:
            del book[o.market]

    def _remove_order(self, o: RestingOrder, reason: Reason) -> None:
        """Cancel a resting order: its remaining lots leave the owner's exposure."""
        self._unindex_order(o, o.remaining)
        self._drop_order(o, reason)

    def _drop_order(self, o: RestingOrder, reason: Reason) -> None:
        kids = self.waiting.pop(o.order_id, None)
        self.books[o.market].remove(o)
        del self.orders[o.order_id]
        del self.by_client[(o.owner, o.market, o.client_id)]
        del self.ledger.accounts[o.owner].orders[o.order_id]
        self.touched_orders.add(o.order_id)
        self.touched_books.add(o.market)
        kind = "filled" if reason == Reason.OK else "cancelled"
        self.events.append(OrderEvent(kind, o.order_id, o.owner, o.market, o.client_id, reason))
        for tid in kids or ():  # it never filled: its TP/SL have nothing to protect
            self._drop_trigger(self.triggers[tid], "cancelled", Reason.PARENT_CANCELLED)

    def _on_cancel_in_match(self, o: RestingOrder, reason: Reason) -> None:
        self._remove_order(o, reason)

    def _reduce_cap(self, o: RestingOrder) -> int:
        p = self.ledger.accounts[o.owner].positions.get(o.market)
        size = p.size if p is not None else 0
        return -size if o.side == BUY else size

    def _on_fill(self, maker: RestingOrder, lots: int, price: int) -> None:
        t = self._taker
        led = self.ledger
        market = t.market
        mult = t.mult
        notional = price * lots * mult
        maker_acct = led.accounts[maker.owner]
        d = lots if t.is_buy else -lots
        led.trade(t.acct, market, d, price, mult)
        led.trade(maker_acct, market, -d, price, mult)
        maker_fee = -((-notional * t.mk.maker_fee_ppm) // PPM)
        taker_fee = -((-notional * t.fee_ppm) // PPM)
        taker_acct = t.acct
        if t.liquidation:
            self.liquidation_counterparties.add(maker.owner)
            # Liquidation fee to the fund, never more than the account still has.
            taker_fee = max(0, min(taker_fee, taker_acct.collateral))
            led.credit(led.accounts[INSURANCE_FUND], taker_fee)
            fee_total = maker_fee
        else:
            fee_total = maker_fee + taker_fee
        taker_acct.collateral -= taker_fee
        maker_acct.collateral -= maker_fee
        led.credit(led.accounts[FEE_ACCOUNT], fee_total)
        self._unindex_order(maker, lots)
        self.books[market].fill(maker, lots)
        if maker.order_id in self.waiting:
            self._wake_children(maker.order_id)
        self.touched_orders.add(maker.order_id)
        if maker.remaining == 0:
            self._drop_order(maker, Reason.OK)
        trade = Trade(
            self.next_trade_id,
            self.height + 1,
            market,
            price,
            lots,
            int(BUY if t.is_buy else SELL),
            taker_acct.owner,
            maker.owner,
            maker.order_id,
            taker_fee,
            maker_fee,
            t.liquidation,
        )
        self.next_trade_id += 1
        self.trades.append(trade)

    def take_liquidity(
        self,
        acct: AccountState,
        market: int,
        is_buy: bool,
        limit: int,
        qty: int,
        liquidation: bool = False,
    ) -> int:
        """Match ``qty`` lots for ``acct`` as taker against the book; return lots filled."""
        t = self._taker
        mk = self.markets[market]
        t.acct = acct
        t.market = market
        t.mk = mk
        t.mult = self.specs[market].mult
        t.is_buy = is_buy
        t.liquidation = liquidation
        t.fee_ppm = mk.liquidation_fee_ppm if liquidation else mk.taker_fee_ppm
        book = self.books[market]
        self.touched_books.add(market)
        return match(
            book, acct.owner, is_buy, limit, qty, self._fill_cb, self._cancel_cb, self._cap_cb
        )

    def _precheck_place(
        self, acct: AccountState, place: PlaceOrder, check_margin: bool = True
    ) -> tuple[Reason, int]:
        """Stateful admission of one placement: (reason, lots it may trade).

        Client id unused among the owner's open orders in the market; the open-order limit if
        it may rest; reduce-only only on the reducing side, and cut to the position; post-only
        must not cross; margin (unless reduce-only): ``equity − open loss ≥ initial
        requirement`` with the order added to the owner's open orders.
        """
        market = place.market
        if self._client_id_taken((acct.owner, market, place.client_id)):
            return Reason.DUPLICATE_CLIENT_ID, 0
        is_buy = place.side == BUY
        size = place.size
        rests = place.order_type == OrderType.LIMIT and place.time_in_force != TimeInForce.IOC
        if rests and acct.open_order_count() >= MAX_OPEN_ORDERS_PER_ACCOUNT:
            return Reason.TOO_MANY_OPEN_ORDERS, 0
        if place.reduce_only:
            p = acct.positions.get(market)
            allowed = 0 if p is None else (-p.size if is_buy else p.size)
            if allowed <= 0:
                return Reason.REDUCE_ONLY_WOULD_INCREASE, 0
            if size > allowed:
                size = allowed
            if check_margin and not self._reduce_ok(acct, market, is_buy, place.price, size):
                return Reason.INSUFFICIENT_MARGIN, 0
        elif check_margin and not self._margin_ok(acct, market, is_buy, place.price, size):
            return Reason.INSUFFICIENT_MARGIN, 0
        if place.time_in_force == TimeInForce.POST_ONLY and would_cross(
            self.books[market], is_buy, place.price
        ):
            return Reason.POST_ONLY_WOULD_CROSS, 0
        return Reason.OK, size

    def _place(
        self, acct: AccountState, place: PlaceOrder, height: int, check_margin: bool = True
    ) -> Reason:
        self.last_rested = 0
        self.last_filled = 0
        reason, size = self._precheck_place(acct, place, check_margin)
        if reason:
            return reason
        market = place.market
        is_buy = place.side == BUY
        price = place.price
        book = self.books[market]
        filled = 0
        if would_cross(book, is_buy, price):
            filled = self.take_liquidity(acct, market, is_buy, price, size)
            self.last_filled = filled
        left = size - filled
        if left > 0:
            if place.order_type == OrderType.LIMIT and place.time_in_force != TimeInForce.IOC:
                o = RestingOrder(
                    self.next_order_id,
                    acct.owner,
                    market,
                    place.side,
                    price,
                    place.size,
                    left,
                    place.client_id,
                    place.reduce_only,
                    height,
                )
                self.next_order_id += 1
                self._index_order(o)
                book.add(o)
                self.touched_orders.add(o.order_id)
                self.touched_books.add(market)
                self.last_rested = o.order_id
                self.events.append(
                    OrderEvent("placed", o.order_id, acct.owner, market, o.client_id)
                )
            elif filled == 0:
                return Reason.NO_LIQUIDITY
        return Reason.OK

    def _cancel(self, acct: AccountState, action: CancelOrder | CancelAll) -> Reason:
        owner = acct.owner
        if type(action) is CancelOrder:
            key = (owner, action.market, action.client_id)
            o = self.by_client.get(key)
            if o is not None:
                self._remove_order(o, Reason.CANCELLED)
                return Reason.OK
            t = self.trigger_by_client.get(key)
            if t is None:
                return Reason.ORDER_NOT_FOUND
            self._drop_trigger(t, "cancelled", Reason.CANCELLED)
            return Reason.OK
        self.cancel_orders(acct, action.market, Reason.CANCELLED)
        return Reason.OK

    def cancel_orders(self, acct: AccountState, market: int | None, reason: Reason) -> int:
        """Cancel the account's resting orders in one market (or all), oldest first, then its
        triggers there, oldest first."""
        mine = [
            acct.orders[oid]
            for oid in sorted(acct.orders)
            if market is None or acct.orders[oid].market == market
        ]
        for o in mine:
            self._remove_order(o, reason)
        waiting = [
            acct.triggers[tid]
            for tid in sorted(acct.triggers)
            if market is None or acct.triggers[tid].market == market
        ]
        for t in waiting:
            self._drop_trigger(t, "cancelled", reason)
        return len(mine) + len(waiting)

    def _client_id_taken(self, key: tuple[bytes, int, int]) -> bool:
        """Orders and triggers share a (owner, market, client id) namespace."""
        return key in self.by_client or key in self.trigger_by_client

    def _check_batch(self, acct: AccountState, actions: tuple) -> tuple[Reason, int]:
        """All-or-nothing admission of a batch: (reason, failing action index or -1).

        Each cancel must name an order or trigger there before the batch (and not cancelled
        earlier in it); each placement's client id must be free, or freed by an earlier cancel
        of the batch (a ``CancelAll`` frees its market); reduce-only placements must reduce; a
        trigger must not be on its firing side of the mark; a modify must name an order resting
        before the batch. The open orders and triggers the batch may leave must fit the limit,
        and the margin check is made once for all non-reduce-only placements and re-queued
        modifies together, as if all rested (a modify's old lots leave its exposure).
        """
        owner = acct.owner
        freed: set[tuple[bytes, int, int]] = set()
        cleared: set[int] = set()
        add_buy: dict[int, int] = {}
        add_sell: dict[int, int] = {}
        loss = 0
        n_rest = 0
        lm = self.ledger.markets
        for i, a in enumerate(actions):
            kind = type(a)
            if kind is ScheduleCancel:
                continue
            if kind is CancelAll:
                cleared.add(a.market)
                continue
            key = (owner, a.market, a.client_id)
            there = self._client_id_taken(key) and key not in freed and a.market not in cleared
            if kind is CancelOrder:
                if not there:
                    return Reason.ORDER_NOT_FOUND, i
                freed.add(key)
                continue
            if kind is ModifyOrder:
                o = self.by_client.get(key)
                if o is None or not there:
                    return Reason.ORDER_NOT_FOUND, i
                reason = self._check_modify(acct, o, a)
                if reason:
                    return reason, i
                if _modify_keeps_place(o, a) or o.reduce_only:
                    continue
                is_buy = o.side == BUY
                tgt = add_buy if is_buy else add_sell
                tgt[a.market] = tgt.get(a.market, 0) + a.size - o.remaining
                loss += open_loss(is_buy, a.price, a.size, lm[a.market].mark,
                                  self.specs[a.market].mult)
                continue
            if there:
                return Reason.DUPLICATE_CLIENT_ID, i
            is_buy = a.side == BUY
            child = kind is PlaceTrigger and a.attach == Attach.ORDER  # its parent makes the
            if a.reduce_only and not child:                            # position it reduces
                p = acct.positions.get(a.market)
                allowed = 0 if p is None else (-p.size if is_buy else p.size)
                if allowed <= 0:
                    return Reason.REDUCE_ONLY_WOULD_INCREASE, i
            if kind is PlaceTrigger:
                if on_firing_side(a.side, a.kind, a.trigger_price, lm[a.market].mark):
                    return Reason.TRIGGER_WRONG_SIDE, i
                n_rest += 1
                continue
            if a.reduce_only:
                if not self._reduce_ok(acct, a.market, is_buy, a.price, min(a.size, allowed)):
                    return Reason.INSUFFICIENT_MARGIN, i
                continue
            if a.order_type == OrderType.LIMIT and a.time_in_force != TimeInForce.IOC:
                n_rest += 1
            tgt = add_buy if is_buy else add_sell
            tgt[a.market] = tgt.get(a.market, 0) + a.size
            mark = lm[a.market].mark
            mult = self.specs[a.market].mult
            loss += open_loss(is_buy, a.price, a.size, mark, mult)
        if acct.open_order_count() + n_rest - len(freed) > MAX_OPEN_ORDERS_PER_ACCOUNT:
            return Reason.TOO_MANY_OPEN_ORDERS, -1
        if (add_buy or add_sell) and not self._margin_ok_multi(acct, add_buy, add_sell, loss):
            return Reason.INSUFFICIENT_MARGIN, -1
        return Reason.OK, -1

    def _check_modify(self, acct: AccountState, o: RestingOrder, a: ModifyOrder) -> Reason:
        """What a modify needs beyond naming a resting order: keeping its place needs nothing;
        a re-queue of a reduce-only order must still reduce (and pass the reduce-only loss
        check), and a post-only re-queue must not cross the book."""
        if _modify_keeps_place(o, a):
            return Reason.OK
        is_buy = o.side == BUY
        if o.reduce_only:
            p = acct.positions.get(o.market)
            allowed = 0 if p is None else (-p.size if is_buy else p.size)
            if allowed <= 0:
                return Reason.REDUCE_ONLY_WOULD_INCREASE
            if not self._reduce_ok(acct, o.market, is_buy, a.price, min(a.size, allowed)):
                return Reason.INSUFFICIENT_MARGIN
        if a.post_only and would_cross(self.books[o.market], is_buy, a.price):
            return Reason.POST_ONLY_WOULD_CROSS
        return Reason.OK

    def _batch(self, acct: AccountState, actions: tuple, height: int) -> tuple[Reason, int]:
        """Admit the batch as a whole, then apply its actions in order."""
        reason, index = self._check_batch(acct, actions)
        if reason:
            return reason, index
        parents: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        for a in actions:
            kind = type(a)
            if kind is PlaceOrder:
                self._place_admitted(acct, a, height)
                parents[(a.market, a.client_id)] = (self.last_rested, self.last_filled, a.size, 0)
            elif kind is PlaceTrigger:
                if a.attach == Attach.ORDER:
                    key = (a.market, a.parent_client_id)
                    rested, filled, size, group = parents[key]
                    self._add_trigger(acct, a, height, parents[key])
                    parents[key] = (rested, filled, size, group or self.next_order_id - 1)
                else:
                    self._add_trigger(acct, a, height)
            elif kind is ModifyOrder:
                self._modify(acct, a, height)
            elif kind is ScheduleCancel:
                self._schedule(acct, a.height)
            else:
                self._cancel(acct, a)
        return Reason.OK, -1

    def _place_admitted(self, acct: AccountState, place: PlaceOrder, height: int) -> None:
        """A batch placement whose margin was checked for the batch as a whole."""
        reason = self._place(acct, place, height, check_margin=False)
        if reason not in (Reason.OK, Reason.NO_LIQUIDITY):
            self.events.append(
                OrderEvent("cancelled", 0, acct.owner, place.market, place.client_id, reason)
            )

    # ----------------------------------------------------------------------- modify

    def _modify(self, acct: AccountState, a: ModifyOrder, height: int) -> None:
        """Apply an admitted modify. Same price and a smaller remaining size: the order shrinks
        in place and keeps its time priority. Otherwise it leaves the book (event reason
        ``MODIFIED``) and the new price and size enter as a new GTC (or post-only) limit order
        with the same client id and reduce-only flag, behind everything resting at its price."""
        o = self.by_client.get((acct.owner, a.market, a.client_id))
        if o is None:  # taken by an earlier action of the batch (a fill of a re-placement)
            self.events.append(OrderEvent(
                "cancelled", 0, acct.owner, a.market, a.client_id, Reason.ORDER_NOT_FOUND
            ))
            return
        if _modify_keeps_place(o, a):
            lots = o.remaining - a.size
            if lots:
                self._unindex_order(o, lots)
                self.books[o.market].shrink(o, lots)
                self.touched_orders.add(o.order_id)
                self.touched_books.add(o.market)
            self.events.append(
                OrderEvent("modified", o.order_id, o.owner, o.market, o.client_id)
            )
            return
        kids = self.waiting.pop(o.order_id, [])  # dormant TP/SL follow the order
        self._remove_order(o, Reason.MODIFIED)
        tif = TimeInForce.POST_ONLY if a.post_only else TimeInForce.GTC
        place = PlaceOrder(o.market, o.side, OrderType.LIMIT, tif, o.reduce_only, a.price,
                           a.size, o.client_id)
        self._place_admitted(acct, place, height)
        if not kids:
            return
        rested = self.last_rested
        self.waiting[o.order_id] = kids
        if self.last_filled:
            self._wake_children(o.order_id)
        elif rested:
            self.waiting[rested] = self.waiting.pop(o.order_id)
            for tid in kids:
                self.triggers[tid].parent_order_id = rested
                self.touched_triggers.add(tid)
        else:
            for tid in list(kids):
                self._drop_trigger(self.triggers[tid], "cancelled", Reason.PARENT_CANCELLED)

    # ----------------------------------------------------------------------- triggers

    def _index_trigger(self, t: Trigger) -> None:
        self.triggers[t.trigger_id] = t
        self.trigger_by_client[(t.owner, t.market, t.client_id)] = t
        self.ledger.accounts[t.owner].triggers[t.trigger_id] = t
        if t.attach == Attach.ORDER:
            self.families.setdefault(t.group, set()).add(t.trigger_id)
        if t.parent_order_id:
            self.waiting.setdefault(t.parent_order_id, []).append(t.trigger_id)
        else:
            self._activate(t)

    def _activate(self, t: Trigger) -> None:
        self.trigger_books[t.market].add(t)
        if t.attach != Attach.NONE:
            self.tpsl.setdefault((t.owner, t.market), set()).add(t.trigger_id)

    def _wake_children(self, parent_order_id: int) -> None:
        """The parent's first fill: its dormant TP/SL enter their market's book."""
        for tid in self.waiting.pop(parent_order_id):
            t = self.triggers[tid]
            t.parent_order_id = 0
            self._activate(t)
            self.touched_triggers.add(tid)

    def _add_trigger(
        self,
        acct: AccountState,
        a: PlaceTrigger,
        height: int,
        parent: tuple[int, int, int, int] | None = None,
    ) -> None:
        """Place an admitted trigger. A TP/SL of an order gets ``parent``: (order id left
        resting or 0, lots filled, parent size, group id or 0) from its placement earlier in
        the batch; it wakes at once if the parent filled, waits if it rests, and is dropped if
        the parent neither filled nor rested."""
        size, group, waits = a.size, 0, 0
        if a.attach == Attach.ORDER:
            assert parent is not None
            rested, filled, parent_size, group = parent
            if not rested and not filled:
                self.events.append(OrderEvent("cancelled", 0, acct.owner, a.market, a.client_id,
                                              Reason.PARENT_CANCELLED))
                return
            size = size or parent_size
            waits = 0 if filled else rested
            group = group or self.next_order_id
        t = Trigger(self.next_order_id, acct.owner, a.market, a.side, a.kind, a.order_type,
                    a.trigger_price, a.price, size, a.client_id, a.reduce_only, height,
                    a.attach, group, waits)
        self.next_order_id += 1
        self._index_trigger(t)
        self.touched_triggers.add(t.trigger_id)
        self.events.append(OrderEvent("trigger_placed", t.trigger_id, t.owner, t.market,
                                      t.client_id))

    def _drop_trigger(self, t: Trigger, kind: str, reason: Reason = Reason.OK) -> None:
        """A trigger leaves the untriggered set: ``triggered`` or ``cancelled`` (with why)."""
        tid = t.trigger_id
        del self.triggers[tid]
        del self.trigger_by_client[(t.owner, t.market, t.client_id)]
        del self.ledger.accounts[t.owner].triggers[tid]
        if t.parent_order_id:
            kids = self.waiting.get(t.parent_order_id)
            if kids is not None:  # (absent while its parent is dropping it)
                kids.remove(tid)
                if not kids:
                    del self.waiting[t.parent_order_id]
        else:
            self.trigger_books[t.market].remove(t)
        if t.attach != Attach.NONE and not t.parent_order_id:
            guards = self.tpsl[(t.owner, t.market)]
            guards.discard(tid)
            if not guards:
                del self.tpsl[(t.owner, t.market)]
        if t.attach == Attach.ORDER:
            family = self.families[t.group]
            family.discard(tid)
            if not family:
                del self.families[t.group]
        self.touched_triggers.add(tid)
        self.events.append(OrderEvent(kind, t.trigger_id, t.owner, t.market, t.client_id, reason))

    def _fire_triggers(self, height: int) -> None:
        """Step 4b: every trigger the block's marks fire, in ascending trigger id across markets
        (at most ``MAX_TRIGGERS_FIRED_PER_BLOCK``), each placed as an ordinary order with every
        stateful rule checked now; then the marks again from the books they traded against."""
        lm = self.ledger.markets
        fired: list[int] = []
        for mid in sorted(self.trigger_books):
            fired.extend(self.trigger_books[mid].fired_ids(lm[mid].mark))
        if not fired:
            return
        fired.sort()
        moved: set[int] = set()
        for tid in fired[:MAX_TRIGGERS_FIRED_PER_BLOCK]:
            t = self.triggers.get(tid)
            if t is None:  # cancelled by a sibling that fired before it (one-cancels-other)
                continue
            self._drop_trigger(t, "triggered")
            self._cancel_siblings(t)
            size = t.size
            if size == 0:  # a TP/SL of the whole position, sized now (0 if flat: refused)
                p = self.ledger.accounts[t.owner].positions.get(t.market)
                size = abs(p.size) if p is not None else 0
            mk = self.markets[t.market]
            if t.order_type == OrderType.MARKET:
                bound = market_bound(t.side, lm[t.market].mark, mk.trigger_slippage_ppm,
                                     mk.max_price_ticks)
                place = PlaceOrder(t.market, t.side, OrderType.MARKET, TimeInForce.IOC,
                                   t.reduce_only, bound, max(size, 1), t.client_id)
            else:
                place = PlaceOrder(t.market, t.side, OrderType.LIMIT, TimeInForce.GTC,
                                   t.reduce_only, t.price, max(size, 1), t.client_id)
            acct = self.ledger.accounts[t.owner]
            reason = (self._place(acct, place, height) if size
                      else Reason.REDUCE_ONLY_WOULD_INCREASE)
            if reason not in (Reason.OK, Reason.NO_LIQUIDITY):
                self.events.append(
                    OrderEvent("cancelled", tid, t.owner, t.market, t.client_id, reason)
                )
            moved.add(t.market)
        for mid in sorted(moved):
            book = self.books[mid]
            ms = lm[mid]
            ms.mark = mark_price(ms.index, book.best_bid(), book.best_ask())

    def _cancel_siblings(self, t: Trigger) -> None:
        """One-cancels-other: a fired TP/SL takes the rest of its group with it (a position's
        TP/SL, or the children of one order)."""
        if t.attach == Attach.POSITION:
            guards = self.tpsl.get((t.owner, t.market), ())
            group = [x for x in guards if self.triggers[x].attach == Attach.POSITION]
        elif t.attach == Attach.ORDER:
            group = list(self.families.get(t.group, ()))
        else:
            return
        for tid in sorted(group):
            self._drop_trigger(self.triggers[tid], "cancelled", Reason.ONE_CANCELS_OTHER)

    def _sweep_closed_positions(self) -> None:
        """After liquidation: a position the block left flat takes its active TP/SL with it."""
        led = self.ledger
        for owner, market in sorted(led.dirty_positions):
            guards = self.tpsl.get((owner, market))
            if not guards or led.accounts[owner].positions[market].size:
                continue
            for tid in sorted(guards):
                self._drop_trigger(self.triggers[tid], "cancelled", Reason.POSITION_CLOSED)

    # ----------------------------------------------------------------------- dead man's switch

    def _set_schedule(self, owner: bytes, after: int) -> None:
        self.schedules[owner] = after
        self.schedules_due.setdefault(after + 1, set()).add(owner)

    def _clear_schedule(self, owner: bytes) -> None:
        after = self.schedules.pop(owner, None)
        if after is None:
            return
        due = self.schedules_due[after + 1]
        due.discard(owner)
        if not due:
            del self.schedules_due[after + 1]
        self.touched_schedules.add(owner)

    def _schedule(self, acct: AccountState, after: int) -> None:
        """Set (or, with 0, clear) the account's switch; a new one replaces the old."""
        self._clear_schedule(acct.owner)
        if after:
            self._set_schedule(acct.owner, after)
            self.touched_schedules.add(acct.owner)

    def _run_schedules(self, height: int) -> None:
        """Step 2, first: the switches set to a height below this block's fire now, in
        ascending account key: every open order, then every trigger, oldest first."""
        due = self.schedules_due.get(height)
        if not due:
            return
        accounts = self.ledger.accounts
        for owner in sorted(due):
            self._clear_schedule(owner)
            self.cancel_orders(accounts[owner], None, Reason.SCHEDULED_CANCEL)

    # ----------------------------------------------------------------------- margin

    def equity_and_requirements(
        self,
        acct: AccountState,
        add_buy: dict[int, int] | None = None,
        add_sell: dict[int, int] | None = None,
        with_mm: bool = True,
    ) -> tuple[int, int, int]:
        """(equity, initial requirement, maintenance requirement) at the current marks, with
        ``add_buy``/``add_sell`` lots counted as extra open orders (maintenance 0 unless
        ``with_mm``: order checks do not need it)."""
        equity = acct.collateral
        im = mm = 0
        markets = set(acct.positions)
        markets.update(acct.open_buy, acct.open_sell)
        if add_buy:
            markets.update(add_buy)
        if add_sell:
            markets.update(add_sell)
        lm = self.ledger.markets
        specs = self.specs
        for mid in markets:
            sp = specs[mid]
            mark = lm[mid].mark
            p = acct.positions.get(mid)
            size = 0
            if p is not None and p.size:
                size = p.size
                equity += size * mark * sp.mult - p.open_notional
                if with_mm:
                    mm += maintenance_requirement(sp, size, mark)
            ob = acct.open_buy.get(mid, 0) + (add_buy.get(mid, 0) if add_buy else 0)
            os_ = acct.open_sell.get(mid, 0) + (add_sell.get(mid, 0) if add_sell else 0)
            if size or ob or os_:
                im += initial_requirement(sp, size, ob, os_, mark)
        return equity, im, mm

    def _margin_ok(
        self, acct: AccountState, market: int, is_buy: bool, price: int, size: int
    ) -> bool:
        mark = self.ledger.markets[market].mark
        loss = open_loss(is_buy, price, size, mark, self.specs[market].mult)
        add = {market: size}
        if is_buy:
            return self._margin_ok_multi(acct, add, None, loss)
        return self._margin_ok_multi(acct, None, add, loss)

    def _reduce_ok(
        self, acct: AccountState, market: int, is_buy: bool, price: int, size: int
    ) -> bool:
        """A reduce-only order needs no initial margin, but it may not book a loss (against the
        mark, plus the taker fee) larger than the account's equity: closing at an absurd price
        into a friend's order must not leave a deficit for the insurance fund to pay."""
        mark = self.ledger.markets[market].mark
        mult = self.specs[market].mult
        loss = open_loss(is_buy, price, size, mark, mult)
        fee = -((-price * size * mult * self.markets[market].taker_fee_ppm) // PPM)
        return self.equity_and_requirements(acct)[0] - loss - fee >= 0

    def _margin_ok_multi(
        self,
        acct: AccountState,
        add_buy: dict[int, int] | None,
        add_sell: dict[int, int] | None,
        loss: int,
    ) -> bool:
        equity, im, _ = self.equity_and_requirements(acct, add_buy, add_sell, with_mm=False)
        return equity - loss >= im

    # ----------------------------------------------------------------------- money

    def _check_transfer(self, acct: AccountState, to: bytes, amount: int, withdraw: bool) -> Reason:
        """``amount ≤ min(collateral, equity − initial requirement)``; a transfer creating an
        account moves at least ``MIN_NEW_ACCOUNT_ATOMS``."""
        if not withdraw and to not in self.ledger.accounts and amount < MIN_NEW_ACCOUNT_ATOMS:
            return Reason.NEW_ACCOUNT_MINIMUM
        equity, im, _ = self.equity_and_requirements(acct)
        if amount > min(acct.collateral, equity - im):
            return Reason.INSUFFICIENT_BALANCE
        return Reason.OK

    def _transfer(self, acct: AccountState, to: bytes, amount: int, withdraw: bool) -> Reason:
        reason = self._check_transfer(acct, to, amount, withdraw)
        if reason:
            return reason
        led = self.ledger
        led.credit(acct, -amount)
        if withdraw:
            led.withdrawn_block += amount
            led.withdrawn_total += amount
        else:
            led.credit(led.account(to), amount)
        return Reason.OK

    # ----------------------------------------------------------------------- prices

    def _update_prices(self, now_ms: int) -> None:
        lm = self.ledger.markets
        for mid in sorted(self.markets):
            mk = self.markets[mid]
            ms = lm[mid]
            obs = [(p, v, self.weights[v], t) for v, (p, t) in self.oracle[mid].items()]
            ms.index = index_price(obs, now_ms, mk.oracle_staleness_ms, self.total_weight, ms.index)
            book = self.books[mid]
            ms.mark = mark_price(ms.index, book.best_bid(), book.best_ask())

    def _end_of_block_prices(self, now_ms: int) -> list[tuple[int, int, int, int]]:
        lm = self.ledger.markets
        led = self.ledger
        rows = []
        for mid in sorted(self.markets):
            mk = self.markets[mid]
            ms = lm[mid]
            book = self.books[mid]
            ms.mark = mark_price(ms.index, book.best_bid(), book.best_ask())
            ms.premium_sum += fundingmod.premium_ppm(ms.index, book.best_bid(), book.best_ask())
            ms.premium_samples += 1
            led.dirty_markets.add(mid)
            if now_ms >= ms.next_funding_ms:
                rate = fundingmod.funding_rate_ppm(
                    ms.premium_sum, ms.premium_samples, mk.funding_clamp_ppm
                )
                residual = self._settle_funding(mk, ms, rate)
                self.events.append(FundingEvent(mid, now_ms, rate, ms.index, residual))
                rows.append((mid, now_ms, rate, ms.index))
                ms.last_funding_ms = now_ms
                ms.last_funding_rate_ppm = rate
                ms.premium_sum = ms.premium_samples = 0
                ms.next_funding_ms = fundingmod.next_funding_after(
                    now_ms, ms.next_funding_ms, mk.funding_interval_ms
                )
        return rows

    def _settle_funding(self, mk: Market, ms: MarketState, rate: int) -> int:
        led = self.ledger
        mid = mk.market_id
        if rate == 0:
            return 0
        holders = sorted(led.holders[mid])
        positions = [(o, led.accounts[o].positions[mid].size) for o in holders]
        pays, residual = fundingmod.payments(positions, ms.index, self.specs[mid].mult, rate)
        for owner, amount in pays:
            led.add_funding(led.accounts[owner], mid, amount)
        led.credit(led.accounts[INSURANCE_FUND], residual)
        return residual

    # ----------------------------------------------------------------------- invariants

    def _check_invariants(self) -> None:
        self.ledger.check_block()
        for mid in sorted(self.touched_books):
            book = self.books[mid]
            if book.is_crossed():
                raise ConservationError(
                    f"market {mid}: book crossed, bid {book.best_bid()} ≥ ask {book.best_ask()}"
                )
        # Accounts holding positions were just checked by liquidation (equity ≥ maintenance
        # ≥ 0, or liquidated to flat); a flat account must not hold negative collateral.
        accounts = self.ledger.accounts
        for owner in sorted(self.ledger.dirty_accounts):
            if owner in SYSTEM_ACCOUNTS:
                continue
            acct = accounts[owner]
            if acct.collateral < 0 and not any(p.size for p in acct.positions.values()):
                raise ConservationError(
                    f"account {owner.hex()} is flat with collateral {acct.collateral} < 0"
                )

    # ----------------------------------------------------------------------- commit

    def _records_changed(self, height: int, timestamp_ms: int) -> list[tuple[bytes, tuple | None]]:
        led = self.ledger
        changes: list[tuple[bytes, tuple | None]] = []
        for owner in led.dirty_accounts:
            changes.append((b"A" + owner, (led.accounts[owner].collateral,)))
        for owner, market in led.dirty_positions:
            p = led.accounts[owner].positions[market]
            changes.append((_pos_key(owner, market), _pos_value(p)))
        for oid in self.touched_orders:
            o = self.orders.get(oid)
            changes.append((_order_key(oid), None if o is None else _order_value(o)))
        for mid in led.dirty_markets:
            changes.append((_market_key(mid), led.markets[mid].row()[1:]))
        for mid, v in self.dirty_oracle:
            changes.append((_oracle_key(mid, v), self.oracle[mid][v]))
        for tid in self.touched_triggers:
            t = self.triggers.get(tid)
            changes.append((_trigger_key(tid), None if t is None else _trigger_value(t)))
        for owner in self.touched_schedules:
            after = self.schedules.get(owner)
            changes.append((b"S" + owner, None if after is None else (after,)))
        changes.append((b"G", self._global_value(height, timestamp_ms)))
        return changes

    def _global_value(self, height: int, timestamp_ms: int) -> tuple:
        return (
            height,
            timestamp_ms,
            self.next_order_id,
            self.next_trade_id,
            self.ledger.withdrawn_total,
        )

    def _all_records(self) -> list[tuple[bytes, tuple]]:
        led = self.ledger
        out: list[tuple[bytes, tuple]] = []
        for owner, acct in led.accounts.items():
            out.append((b"A" + owner, (acct.collateral,)))
            for market, p in acct.positions.items():
                out.append((_pos_key(owner, market), _pos_value(p)))
        for oid, o in self.orders.items():
            out.append((_order_key(oid), _order_value(o)))
        for mid, ms in led.markets.items():
            out.append((_market_key(mid), ms.row()[1:]))
        for mid, obs in self.oracle.items():
            for v, value in obs.items():
                out.append((_oracle_key(mid, v), value))
        for tid, t in self.triggers.items():
            out.append((_trigger_key(tid), _trigger_value(t)))
        for owner, after in self.schedules.items():
            out.append((b"S" + owner, (after,)))
        out.append((b"G", self._global_value(self.height, self.timestamp_ms)))
        return out

    def records(self) -> list[tuple[bytes, tuple]]:
        """Every committed record (key, value), sorted by key: the state the root commits to."""
        return sorted(self._all_records())

    def _commit(
        self,
        height: int,
        timestamp_ms: int,
        n_txs: int,
        funding_rows: list[tuple[int, int, int, int]],
        outcomes: Sequence[TxOutcome] = (),
    ) -> None:
        led = self.ledger
        self.tree.update(self._records_changed(height, timestamp_ms))
        root = self.tree.root()
        accounts = led.accounts
        orders = self.orders
        upsert = []
        delete = []
        for oid in sorted(self.touched_orders):
            o = orders.get(oid)
            if o is None:
                delete.append((oid,))
            else:
                upsert.append(_order_row(o))
        t_upsert = []
        t_delete = []
        for tid in sorted(self.touched_triggers):
            t = self.triggers.get(tid)
            if t is None:
                t_delete.append((tid,))
            else:
                t_upsert.append(_trigger_row(t))
        s_upsert = []
        s_delete = []
        for owner in sorted(self.touched_schedules):
            after = self.schedules.get(owner)
            if after is None:
                s_delete.append((owner,))
            else:
                s_upsert.append((owner, after))
        w = BlockWrite(
            height=height,
            timestamp_ms=timestamp_ms,
            state_root=root,
            meta={
                "height": height,
                "timestamp_ms": timestamp_ms,
                "next_order_id": self.next_order_id,
                "next_trade_id": self.next_trade_id,
                "withdrawn_total": led.withdrawn_total,
            },
            accounts=[(o, accounts[o].collateral) for o in sorted(led.dirty_accounts)],
            positions=[accounts[o].positions[m].row() for o, m in sorted(led.dirty_positions)],
            orders_upsert=upsert,
            orders_delete=delete,
            triggers_upsert=t_upsert,
            triggers_delete=t_delete,
            schedules_upsert=s_upsert,
            schedules_delete=s_delete,
            markets=[led.markets[m].row() for m in sorted(led.dirty_markets)],
            oracle=[(m, v, *self.oracle[m][v]) for m, v in sorted(self.dirty_oracle)],
            replay_add=[(s, u64_to_sql(n), e) for s, n, e in self.replay.take_added()],
            trades=[t.row() for t in self.trades],
            tx_status=[
                (_id8(o.tx_id), o.tx_id, height, o.index, int(o.reason), o.action_index)
                for o in outcomes
            ],
            funding=funding_rows,
            n_txs=n_txs,
        )
        if height == 0:
            w.meta["chain_id"] = self.chain_id
        self.store.write_block(w)
        self.height = height
        self.timestamp_ms = timestamp_ms
        self.state_root = root
        for t in self.trades:
            self.recent_trades[t.market].append(t)

    # ----------------------------------------------------------------------- edge

    def admit(self, data: bytes) -> Admission:
        """Admission at the edge (RPC, gossip) for raw transaction bytes.

        Decodes strictly, verifies the signature, then checks the static rules and the
        stateful ones that do not need matching (replay, account, client ids, margin) against
        the state after the last applied block, for inclusion in the next one.
        """
        reason, tx, tx_id, detail = check_envelope(data, self.chain_id)
        if tx is None:
            return Admission(reason, None, None, -1, detail)
        reason, action = self.check_tx(tx)
        return Admission(reason, tx, tx_id, action)

    def check_tx(self, tx: SignedTx) -> tuple[Reason, int]:
        """Admission rules for the next block, against the last applied state (the signature is
        not checked here; :meth:`admit` does that). The same rules as block execution, except
        that a placement is not matched: whether it would fill is only known in its block."""
        body = tx.body
        reason, action = check_static(body, self.height + 1, self.markets, self.validators)
        if reason:
            return reason, action
        if self.replay.seen(body.signer, body.nonce):
            return Reason.REPLAYED, -1
        kind = type(body)
        if kind is OraclePrice:
            return Reason.OK, -1
        acct = self.ledger.accounts.get(body.signer)
        if acct is None:
            return Reason.UNKNOWN_ACCOUNT, -1
        if kind is Order:
            return self._precheck_place(acct, body.place)[0], -1
        if kind is Cancel:
            c = body.cancel
            if type(c) is CancelOrder and not self._client_id_taken(
                (acct.owner, c.market, c.client_id)
            ):
                return Reason.ORDER_NOT_FOUND, -1
            return Reason.OK, -1
        if kind is Batch:
            return self._check_batch(acct, body.batch)
        if kind is Transfer:
            return self._check_transfer(acct, body.to, body.amount, withdraw=False), -1
        return self._check_transfer(acct, b"", body.amount, withdraw=True), -1

    # ----------------------------------------------------------------------- reads (RPC)

    def l2(
        self, market: int, depth: int = 50
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids, asks) as (price ticks, lots), best first."""
        return self.books[market].l2(depth)

    def account(self, owner: bytes) -> AccountView | None:
        acct = self.ledger.accounts.get(owner)
        if acct is None:
            return None
        equity, im, mm = self.equity_and_requirements(acct)
        return AccountView(owner, acct.collateral, equity, im, mm, len(acct.orders))

    def positions(self, owner: bytes) -> list[tuple[int, int, int, int, int, int]]:
        """[(market, size, open_notional, realized_pnl, funding_paid, unrealized_pnl)]."""
        acct = self.ledger.accounts.get(owner)
        if acct is None:
            return []
        out = []
        for mid in sorted(acct.positions):
            p = acct.positions[mid]
            mark = self.ledger.markets[mid].mark
            upnl = p.size * mark * self.specs[mid].mult - p.open_notional
            out.append((mid, p.size, p.open_notional, p.realized_pnl, p.funding_paid, upnl))
        return out

    def open_orders(self, owner: bytes, market: int | None = None) -> list[RestingOrder]:
        """The owner's resting orders (in one market or all), oldest first."""
        acct = self.ledger.accounts.get(owner)
        if acct is None:
            return []
        return [
            acct.orders[oid]
            for oid in sorted(acct.orders)
            if market is None or acct.orders[oid].market == market
        ]

    def open_triggers(self, owner: bytes, market: int | None = None) -> list[Trigger]:
        """The account's untriggered orders, oldest first."""
        acct = self.ledger.accounts.get(owner)
        if acct is None:
            return []
        return [
            acct.triggers[tid]
            for tid in sorted(acct.triggers)
            if market is None or acct.triggers[tid].market == market
        ]

    def cancel_after_height(self, owner: bytes) -> int | None:
        """The account's dead man's switch: the height after which its orders go, if set."""
        return self.schedules.get(owner)

    def recent_trades(self, market: int, limit: int = 100) -> list[Trade]:
        """Newest first."""
        ring = self.recent_trades[market]
        if limit <= len(ring):
            return list(reversed(ring))[:limit]
        return self.store.trades_newest_first(market, limit)

    def tx_status(self, tx_id: bytes) -> TxOutcome | None:
        """Outcome of an included transaction (None: not in any applied block). The node keeps
        recent results itself; this reads the ledger, which sees its own uncommitted rows.

        The first inclusion is the outcome: a later copy of the same bytes is only a repeat
        (refused as REPLAYED, or EXPIRED), and never hides what the transaction did."""
        found = self.store.first_tx_status(_id8(tx_id), tx_id)
        if found is None:
            return None
        i, r, a = found
        return TxOutcome(i, tx_id, Reason(r), a)

    def market_state(self, market: int) -> MarketState:
        return self.ledger.markets[market]

    def book_snapshot(self) -> dict[int, tuple]:
        return {m: self.books[m].snapshot() for m in sorted(self.books)}


def _id8(tx_id: bytes) -> int:
    """The ``tx_status`` index key: an id's first 8 bytes as a signed integer (an integer key
    keeps the index a quarter of the size of one on the 32-byte id)."""
    return int.from_bytes(tx_id[:8], "big", signed=True)


def _pos_key(owner: bytes, market: int) -> bytes:
    return b"P" + owner + market.to_bytes(4, "big")


def _pos_value(p) -> tuple:
    return (p.size, p.open_notional, p.realized_pnl, p.funding_paid)


def _order_key(oid: int) -> bytes:
    return b"O" + oid.to_bytes(8, "big")


def _order_value(o: RestingOrder) -> tuple:
    return (
        o.owner,
        o.market,
        int(o.side),
        o.price,
        o.size,
        o.remaining,
        o.client_id,
        o.reduce_only,
        o.height,
    )


def _order_row(o: RestingOrder) -> tuple:
    return (
        o.order_id,
        o.owner,
        o.market,
        int(o.side),
        o.price,
        o.size,
        o.remaining,
        u64_to_sql(o.client_id),
        int(o.reduce_only),
        o.height,
    )


def _trigger_key(tid: int) -> bytes:
    return b"T" + tid.to_bytes(8, "big")


def _trigger_value(t: Trigger) -> tuple:
    return (
        t.owner,
        t.market,
        int(t.side),
        int(t.kind),
        int(t.order_type),
        t.trigger_price,
        t.price,
        t.size,
        t.client_id,
        t.reduce_only,
        t.height,
        int(t.attach),
        t.group,
        t.parent_order_id,
    )


def _trigger_row(t: Trigger) -> tuple:
    return (
        t.trigger_id,
        t.owner,
        t.market,
        int(t.side),
        int(t.kind),
        int(t.order_type),
        t.trigger_price,
        t.price,
        t.size,
        u64_to_sql(t.client_id),
        int(t.reduce_only),
        t.height,
        int(t.attach),
        t.group,
        t.parent_order_id,
    )


def _modify_keeps_place(o: RestingOrder, a: ModifyOrder) -> bool:
    """A modify keeps time priority only if it leaves the price and does not grow the order."""
    return a.price == o.price and a.size <= o.remaining


def _market_key(mid: int) -> bytes:
    return b"M" + mid.to_bytes(4, "big")


def _oracle_key(mid: int, validator: bytes) -> bytes:
    return b"R" + mid.to_bytes(4, "big") + validator
