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


class Spec:
    """A market's margin parameters, unpacked once (the genesis objects validate on every
    attribute computation, which the hot path cannot afford)."""

    __slots__ = ("market_id", "mm_max", "mult", "tiers")

    def __init__(self, m: Market) -> None:
        self.market_id = m.market_id
        self.mult = m.contract_multiplier
        self.tiers = tuple(
            (t.max_notional, t.initial_margin_ppm, t.maintenance_margin_ppm)
            for t in m.leverage_tiers
        )
        self.mm_max = max(t.maintenance_margin_ppm for t in m.leverage_tiers)


def tier_for(tiers: tuple[LeverageTier, ...], notional: int) -> LeverageTier:
    """The first tier whose max_notional ≥ notional (the last tier beyond all of them)."""
    for t in tiers:
        if notional <= t.max_notional:
            return t
    return tiers[-1]


def rates(spec: Spec, notional: int) -> tuple[int, int]:
    """(initial, maintenance) ppm of the tier for ``notional``, as :func:`tier_for`."""
    first = spec.tiers[0]
    if notional <= first[0]:
        return first[1], first[2]
    for max_notional, im, mm in spec.tiers:
        if notional <= max_notional:
            return im, mm
    _, im, mm = spec.tiers[-1]
    return im, mm


def floor_div(a: int, b: int) -> int:
    """⌊a ÷ b⌋ for b > 0: rounds toward −∞ (every floor division of the ledger goes here)."""
    assert b > 0
    return divmod(a, b)[0]


def ceil_div(a: int, b: int) -> int:
    """⌈a ÷ b⌉ for b > 0: rounds toward +∞."""
    assert b > 0
    return -divmod(-a, b)[0]


def maintenance_requirement(spec: Spec, size: int, mark: int) -> int:
    notional = (size if size > 0 else -size) * mark * spec.mult
    return -((-notional * rates(spec, notional)[1]) // PPM)


def initial_requirement(spec: Spec, size: int, open_buy: int, open_sell: int, mark: int) -> int:
    exposure = max(abs(size + open_buy), abs(size - open_sell))
    notional = exposure * mark * spec.mult
    return -((-notional * rates(spec, notional)[0]) // PPM)


def unrealized(size: int, open_notional: int, mark: int, multiplier: int) -> int:
    return size * mark * multiplier - open_notional


def open_loss(is_buy: bool, price: int, size: int, mark: int, multiplier: int) -> int:
    """Loss a new order would book at once if filled at its limit: buying above the mark or
    selling below it."""
    diff = price - mark if is_buy else mark - price
    return diff * size * multiplier if diff > 0 else 0
