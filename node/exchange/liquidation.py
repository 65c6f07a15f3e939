"""Liquidation, the insurance fund, and auto-deleveraging (ADL).

Theory of operation. After the block's trades and funding, every account the block touched,
and every holder of a market whose mark price moved, is checked; an account holding a position
with ``equity < maintenance requirement`` (see :mod:`margin`) is liquidated, accounts in
ascending key order. Liquidating account X:

1. **Cancel** all of X's resting orders (reason ``LIQUIDATION``).
2. **Book**: for each market X holds, in ascending market id, an IOC order closes the whole
   position against the book, no worse than the *band price*
   ``mark × (PPM ∓ band) / PPM`` (a buy rounds down, a sell up), where ``band`` is the
   position's maintenance-margin rate. X pays the market's liquidation fee on each fill to the
   insurance fund (at most X's remaining positive collateral); makers pay their usual fee.
3. **Insurance fund**: what the book could not absorb is taken over by the fund at the mark, if
   the fund can carry it: ``fund equity − X's deficit ≥ fund maintenance requirement after the
   takeover`` (X's *deficit* is how far below zero X's collateral ends once everything left is
   closed at the mark). The fund then pays X's deficit.
4. **ADL**: otherwise (the fund is exhausted) each remaining position is closed at the mark
   against opposite positions, best-ranked first. Ranking: accounts in profit on that position
   (unrealized PnL > 0 and equity > 0) come first, by ``score = upnl × notional × PPM //
   (|open_notional| × equity)`` — PnL ratio times effective leverage — descending; then the
   others by unrealized PnL descending; ties by account key ascending; the insurance fund last.
   The fund pays what it can of X's deficit (its equity above its maintenance requirement); the
   rest is charged to the ADL counterparties pro rata to the notional they took over
   (``share = rest × n_i // Σn``, the remainder of the floor divisions to the first-ranked),
   which is the same as closing them at X's bankruptcy price.

Before the accounts are checked, the insurance fund **unwinds** what it took over in earlier
blocks: for each market where it holds a position, an IOC order closes it against the book no
worse than the band price (the fund pays the taker fee like anyone). The fund is a backstop,
not a trader: it gives the positions back to the book as soon as the book can take them.

Liquidation runs to a fixpoint: makers that filled a liquidation order and ADL counterparties
are checked again, and each account is liquidated at most once per block. Afterwards every
liquidated account is flat with zero collateral, and no trader account is below zero.

Which accounts to check. The rule is simply "every account below maintenance"; an account's
equity and requirement move only when the block touches it or when a mark price moves. To
avoid scanning every position on every mark move, :class:`RiskIndex` keeps, for each checked
account, a *safe band* per market it holds: while every mark stays inside its band, the account
cannot be below maintenance. With ``n`` positions, ``H = equity − Σ ⌈notional × mm_max / PPM⌉ −
n`` (``mm_max`` the market's highest tier rate) and ``k = |size| × multiplier × (PPM + mm_max)``,
the band is ``mark ± ⌊H × PPM ÷ (n × k)⌋`` (empty when ``H ≤ 0``): a move of the marks by
``δ_i`` lowers equity by at most ``Σ |size_i| δ_i × multiplier`` and raises the requirement by
at most ``Σ |size_i| δ_i × multiplier × mm_max / PPM + n``, which the band keeps below ``H``.
Bands are two heaps per market, so a block pays only for accounts whose band the mark left.
The bands are a cache, not state: they decide nothing but which accounts get the exact check.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from lockstep.consensus.genesis import PPM

from .events import DeficitEvent, DeleverageEvent, Event, LiquidationEvent
from .margin import Spec, floor_div, maintenance_requirement, rates
from .mempool_rules import INSURANCE_FUND, SYSTEM_ACCOUNTS, Reason

if TYPE_CHECKING:
    from .book import Book
    from .ledger import AccountState, Ledger

MAX_LIQUIDATION_ROUNDS = 1_000
"""Fixpoint rounds per block; each round liquidates at least one new account, so this bounds
cascades far above any realistic one (and a broken bound halts the node loudly)."""


class Venue(Protocol):
    """What liquidation uses of the exchange (``executor.Exchange`` is the one): its state, its
    matching and cancelling, its margin arithmetic and where to record events. Declared here,
    so this module depends on that much and not on the executor, which calls it each block."""

    @property
    def ledger(self) -> Ledger: ...

    @property
    def specs(self) -> Mapping[int, Spec]: ...

    @property
    def books(self) -> Mapping[int, Book]: ...

    @property
    def risk(self) -> RiskIndex: ...

    @property
    def events(self) -> list[Event]: ...

    liquidation_counterparties: set[bytes]
    """Accounts a liquidation touched (makers, ADL counterparties): checked again next round."""

    def take_liquidity(
        self,
        acct: AccountState,
        market: int,
        is_buy: bool,
        limit: int,
        qty: int,
        liquidation: bool = False,
    ) -> int: ...

    def cancel_orders(self, acct: AccountState, market: int | None, reason: Reason) -> int: ...

    def equity_and_requirements(self, acct: AccountState) -> tuple[int, int, int]: ...


def band_price(mark: int, band_ppm: int, is_buy: bool) -> int:
    """Worst price of a liquidation order: a buy may pay up to ⌊mark × (1 + band)⌋, a sell
    accepts down to ⌈mark × (1 − band)⌉ (at least one tick)."""
    if is_buy:
        return mark * (PPM + band_ppm) // PPM
    return max(1, -((-mark * (PPM - band_ppm)) // PPM))


def adl_rank_key(owner: bytes, upnl: int, notional: int, cost: int, equity: int) -> tuple:
    """Sort key: smaller sorts first (ranked earlier for deleveraging)."""
    if owner == INSURANCE_FUND:
        return (2, 0, owner)
    if upnl > 0 and equity > 0:
        score = floor_div(upnl * notional * PPM, max(cost, 1) * equity)
        return (0, -score, owner)
    return (1, -upnl, owner)


def split_pro_rata(total: int, weights: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    """Split ``total`` by weight: floor shares, the remainder to the first entry."""
    w_sum = sum(w for _, w in weights)
    if total == 0 or w_sum == 0:
        return []
    shares = [(owner, floor_div(total * w, w_sum)) for owner, w in weights]
    rest = total - sum(s for _, s in shares)
    owner0, s0 = shares[0]
    shares[0] = (owner0, s0 + rest)
    return shares


class RiskIndex:
    """Safe price bands per account and market (see the module docstring)."""

    __slots__ = ("_bands", "_high", "_live", "_low", "_version", "mm_max")

    def __init__(self, mm_max: dict[int, int]) -> None:
        self.mm_max = mm_max
        self._low: dict[int, list[tuple[int, bytes, int]]] = {m: [] for m in mm_max}
        self._high: dict[int, list[tuple[int, bytes, int]]] = {m: [] for m in mm_max}
        self._version: dict[bytes, int] = {}
        """owner -> version of its current bands; heap entries of older versions are stale."""
        self._bands: dict[bytes, int] = {}
        """owner -> number of current bands (one per market held)."""
        self._live = 0
        """Σ _bands: the heap entries (per side) that are not stale."""

    def assess(self, ex: Venue, acct: AccountState) -> tuple[int, int]:
        """(equity, maintenance requirement) of an account, and refresh its bands."""
        owner = acct.owner
        v = self._version.get(owner, 0) + 1
        self._version[owner] = v
        self._live -= self._bands.pop(owner, 0)
        equity = acct.collateral
        mm = pess = 0
        held = []
        lm = ex.ledger.markets
        for mid, p in acct.positions.items():
            if p.size:
                sp = ex.specs[mid]
                mark = lm[mid].mark
                mult = sp.mult
                equity += p.size * mark * mult - p.open_notional
                mm += maintenance_requirement(sp, p.size, mark)
                notional = abs(p.size) * mark * mult
                pess += -((-notional * self.mm_max[mid]) // PPM)
                held.append((mid, mark, abs(p.size) * mult * (PPM + self.mm_max[mid])))
        n = len(held)
        head = equity - pess - n
        if n and equity >= mm:
            for mid, mark, k in held:
                delta = floor_div(head * PPM, n * k) if head > 0 else 0
                heapq.heappush(self._low[mid], (delta - mark, owner, v))
                heapq.heappush(self._high[mid], (mark + delta, owner, v))
            self._bands[owner] = n
            self._live += n
        return equity, mm

    def triggered(self, marks: dict[int, int]) -> set[bytes]:
        """Accounts with a band the current marks have left. The caller must assess each."""
        out: set[bytes] = set()
        version = self._version
        for mid in sorted(marks):
            mark = marks[mid]
            high = self._high[mid]
            while high and high[0][0] < mark:
                _, owner, v = heapq.heappop(high)
                if version.get(owner) == v:
                    out.add(owner)
            low = self._low[mid]
            while low and -low[0][0] > mark:
                _, owner, v = heapq.heappop(low)
                if version.get(owner) == v:
                    out.add(owner)
        self.compact()
        return out

    def entries(self) -> int:
        """Heap entries held, stale ones included (per side)."""
        return max(sum(len(h) for h in self._high.values()),
                   sum(len(h) for h in self._low.values()))

    def compact(self, slack: int = 1_024) -> None:
        """Drop stale entries once they outnumber live ones (bounds memory to ~2× live)."""
        if self.entries() <= 2 * self._live + slack:
            return
        version = self._version
        for heaps in (self._low, self._high):
            for mid, h in heaps.items():
                kept = [e for e in h if version.get(e[1]) == e[2]]
                heapq.heapify(kept)
                heaps[mid] = kept


def unwind_fund(ex: Venue) -> None:
    """Close the insurance fund's positions against the book, within the band."""
    led = ex.ledger
    fund = led.accounts[INSURANCE_FUND]
    for mid in sorted(fund.positions):
        p = fund.positions[mid]
        if not p.size or not ex.books[mid].orders_on(p.size < 0):
            continue
        mark = led.markets[mid].mark
        band = rates(ex.specs[mid], abs(p.size) * mark * ex.specs[mid].mult)[1]
        is_buy = p.size < 0
        ex.take_liquidity(fund, mid, is_buy, band_price(mark, band, is_buy), abs(p.size))


def run(ex: Venue) -> None:
    """Liquidate every eligible account, to a fixpoint (see the module docstring)."""
    led = ex.ledger
    risk = ex.risk
    candidates = set(led.dirty_accounts)
    candidates |= risk.triggered({m: ms.mark for m, ms in led.markets.items()})
    liquidated: set[bytes] = set()
    for _ in range(MAX_LIQUIDATION_ROUNDS):
        todo = sorted(candidates - liquidated - SYSTEM_ACCOUNTS)
        if not todo:
            return
        ex.liquidation_counterparties = set()
        for owner in todo:
            acct = led.accounts[owner]
            equity, mm = risk.assess(ex, acct)
            if not any(p.size for p in acct.positions.values()):
                # Flat below zero (a fill's fee or loss on an account at the edge): the fund
                # brings it back to zero, as for a liquidated account with no ADL.
                settle_deficit(ex, acct, [])
                continue
            if equity >= mm:
                continue
            liquidated.add(owner)
            liquidate(ex, acct)
            risk.assess(ex, acct)
        candidates = ex.liquidation_counterparties
    raise AssertionError(f"liquidation did not settle in {MAX_LIQUIDATION_ROUNDS} rounds")


def liquidate(ex: Venue, acct: AccountState) -> None:
    led = ex.ledger
    owner = acct.owner
    ex.cancel_orders(acct, None, Reason.LIQUIDATION)
    started: dict[int, int] = {}
    by_book: dict[int, int] = {}
    for mid in sorted(acct.positions):
        p = acct.positions[mid]
        if not p.size:
            continue
        started[mid] = p.size
        mark = led.markets[mid].mark
        band = rates(ex.specs[mid], abs(p.size) * mark * ex.specs[mid].mult)[1]
        is_buy = p.size < 0
        by_book[mid] = ex.take_liquidity(
            acct, mid, is_buy, band_price(mark, band, is_buy), abs(p.size), liquidation=True
        )
    remaining = [(mid, acct.positions[mid].size) for mid in sorted(started)]
    remaining = [(mid, s) for mid, s in remaining if s]
    fund = led.accounts[INSURANCE_FUND]
    by_fund: dict[int, int] = {}
    adl_fills: list[tuple[bytes, int, int, int]] = []  # (counterparty, market, lots, notional)
    if remaining:
        close_value = 0
        fund_mm_after = 0
        touched = {mid for mid, _ in remaining} | {m for m, p in fund.positions.items() if p.size}
        rem = dict(remaining)
        for mid in sorted(touched):
            sp = ex.specs[mid]
            mark = led.markets[mid].mark
            if mid in rem:
                p = acct.positions[mid]
                close_value += p.size * mark * sp.mult - p.open_notional
            fp = fund.positions.get(mid)
            fund_size = (fp.size if fp else 0) + rem.get(mid, 0)
            fund_mm_after += maintenance_requirement(sp, fund_size, mark)
        deficit = max(0, -(acct.collateral + close_value))
        fund_equity, _, _ = ex.equity_and_requirements(fund)
        if fund_equity - deficit >= fund_mm_after:
            for mid, size in remaining:
                mark = led.markets[mid].mark
                mult = ex.specs[mid].mult
                led.trade(acct, mid, -size, mark, mult)
                led.trade(fund, mid, size, mark, mult)
                by_fund[mid] = abs(size)
        else:
            for mid, size in remaining:
                adl_fills.extend(_deleverage(ex, acct, mid, size))
    for mid in sorted(started):
        size0 = started[mid]
        adl = sum(f[2] for f in adl_fills if f[1] == mid)
        ex.events.append(
            LiquidationEvent(owner, mid, size0, by_book[mid], by_fund.get(mid, 0), adl)
        )
    assert not any(p.size for p in acct.positions.values()), "liquidation leaves X flat"
    haircuts = settle_deficit(ex, acct, adl_fills)
    for cp, mid, lots, _ in adl_fills:
        ex.events.append(DeleverageEvent(cp, mid, lots, led.markets[mid].mark, haircuts.pop(cp, 0)))
    assert acct.collateral >= 0


def settle_deficit(
    ex: Venue, acct: AccountState, adl_fills: list[tuple[bytes, int, int, int]]
) -> dict[bytes, int]:
    """Bring a flat account's negative collateral back to zero; return ADL haircuts.

    The fund pays what it can (its equity above its maintenance requirement); the rest is shared
    by the ADL counterparties pro rata to the notional they took over, each at most its equity
    (so no one is pushed below zero); what they cannot carry falls to the fund.
    """
    led = ex.ledger
    haircuts: dict[bytes, int] = {}
    if acct.collateral >= 0:
        return haircuts
    fund = led.accounts[INSURANCE_FUND]
    deficit = -acct.collateral
    fund_equity, _, fund_mm = ex.equity_and_requirements(fund)
    cover = min(deficit, max(0, fund_equity - fund_mm))
    rest = deficit - cover
    adl_cover = 0
    if rest and adl_fills:
        weights: dict[bytes, int] = {}
        for cp, _, _, notional in adl_fills:
            weights[cp] = weights.get(cp, 0) + notional
        for cp, share in split_pro_rata(rest, list(weights.items())):
            cp_acct = led.accounts[cp]
            if cp != INSURANCE_FUND:
                share = min(share, max(0, ex.equity_and_requirements(cp_acct)[0]))
            if share:
                haircuts[cp] = share
                led.credit(cp_acct, -share)
                ex.liquidation_counterparties.add(cp)
                adl_cover += share
    cover = deficit - adl_cover  # what ADL could not carry, the fund carries
    led.credit(fund, -cover)
    led.credit(acct, deficit)
    ex.events.append(DeficitEvent(acct.owner, deficit, cover, adl_cover))
    return haircuts


def _deleverage(
    ex: Venue, acct: AccountState, mid: int, size: int
) -> list[tuple[bytes, int, int, int]]:
    """Close ``size`` lots of X's position at the mark against ranked opposite positions."""
    led = ex.ledger
    mult = ex.specs[mid].mult
    mark = led.markets[mid].mark
    ranked = []
    for owner in led.holders[mid]:
        if owner == acct.owner:
            continue
        c = led.accounts[owner]
        p = c.positions[mid]
        if (p.size > 0) == (size > 0):
            continue
        upnl = p.size * mark * mult - p.open_notional
        equity, _, _ = ex.equity_and_requirements(c)
        notional = abs(p.size) * mark * mult
        ranked.append((adl_rank_key(owner, upnl, notional, abs(p.open_notional), equity), c))
    ranked.sort(key=lambda rc: rc[0])
    need = abs(size)
    sign = 1 if size > 0 else -1
    fills = []
    for _, c in ranked:
        if need == 0:
            break
        lots = min(need, abs(c.positions[mid].size))
        led.trade(acct, mid, -sign * lots, mark, mult)
        led.trade(c, mid, sign * lots, mark, mult)
        fills.append((c.owner, mid, lots, lots * mark * mult))
        need -= lots
    assert need == 0, "open interest is balanced, so opposite positions cover any position"
    return fills
