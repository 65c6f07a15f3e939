"""Cross-margin arithmetic: position value, unrealized PnL, equity, margin requirements.

Theory of operation: all of an account's collateral backs all of its positions (cross margin).

* A position is ``size`` lots (signed: long > 0, short < 0) and ``open_notional`` atoms (signed
  like ``size``): the cost basis of the open lots, ``Σ lots × price × multiplier`` over the
  fills that opened them, minus what closing fills took out.
* Its value at the mark is ``size × mark × multiplier`` and its unrealized PnL is
  ``value − open_notional`` (for a short both are negative, so the sign works out).
* ``equity = collateral + Σ unrealized PnL`` over the account's positions.
* The margin *tier* of a position is the first leverage tier whose ``max_notional`` is at least
  the position's notional ``|size| × mark × multiplier``; its rates are
  ``initial_margin_ppm`` and ``maintenance_margin_ppm``.
* ``maintenance requirement = Σ ceil(notional × mm_ppm / PPM)``.
* ``initial requirement = Σ ceil(exposure × mark × multiplier × im_ppm / PPM)`` where the
  exposure counts open orders at their worst: ``max(|size + open buy lots|, |size − open sell
  lots|)``, with the tier chosen by that exposure's notional.

Every division that produces a requirement rounds *up* (in the venue's favour); nothing here
changes state. An order is admitted when ``equity − open loss ≥ initial requirement`` after
adding it; an account is liquidated when it holds a position and ``equity < maintenance
requirement``.
"""

from __future__ import annotations

from lockstep.consensus.genesis import PPM, LeverageTier, Market


def tier_for(tiers: tuple[LeverageTier, ...], notional: int) -> LeverageTier:
    """The first tier whose max_notional ≥ notional (the last tier beyond all of them)."""
    for t in tiers:
        if notional <= t.max_notional:
            return t
    return tiers[-1]


def ceil_div(a: int, b: int) -> int:
    """⌈a / b⌉ for b > 0, exact on integers."""
    return -((-a) // b)


def maintenance_requirement(m: Market, size: int, mark: int) -> int:
    notional = abs(size) * mark * m.contract_multiplier
    return ceil_div(notional * tier_for(m.leverage_tiers, notional).maintenance_margin_ppm, PPM)


def initial_requirement(m: Market, size: int, open_buy: int, open_sell: int, mark: int) -> int:
    exposure = max(abs(size + open_buy), abs(size - open_sell))
    notional = exposure * mark * m.contract_multiplier
    return ceil_div(notional * tier_for(m.leverage_tiers, notional).initial_margin_ppm, PPM)


def unrealized(size: int, open_notional: int, mark: int, multiplier: int) -> int:
    return size * mark * multiplier - open_notional


def open_loss(is_buy: bool, price: int, size: int, mark: int, multiplier: int) -> int:
    """Loss a new order would book at once if filled at its limit: buying above the mark or
    selling below it."""
    diff = price - mark if is_buy else mark - price
    return diff * size * multiplier if diff > 0 else 0
