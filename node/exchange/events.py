"""The events a block emits besides its trades: order lifecycle, funding, liquidation.

Why a module of its own: the executor emits order and funding events and liquidation emits
the rest, and both sit above these records; :class:`executor.BlockResult` carries them out, in
the order they happened. Records only, no behaviour: nothing here decides state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .mempool_rules import Reason


class OrderEvent(NamedTuple):
    kind: str
    """``placed``, ``cancelled`` (with a reason), ``filled`` (fully), ``modified`` (in place);
    for triggers (``order_id`` is the trigger id) ``trigger_placed``, ``triggered`` (then the
    order it became has events of its own) or ``cancelled``."""
    order_id: int
    owner: bytes
    market: int
    client_id: int
    reason: Reason = Reason.OK


@dataclass(frozen=True, slots=True)
class FundingEvent:
    market: int
    time_ms: int
    rate_ppm: int
    index: int
    residual: int


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    owner: bytes
    market: int
    size: int
    """Signed position size when liquidation began."""
    by_book: int
    """Lots closed against the book (within the liquidation price band)."""
    by_fund: int
    """Lots taken over by the insurance fund at the mark."""
    by_adl: int
    """Lots closed against auto-deleveraged opposite positions at the mark."""


@dataclass(frozen=True, slots=True)
class DeficitEvent:
    """A liquidated account ended below zero; the fund and/or ADL counterparties covered it."""

    owner: bytes
    deficit: int
    fund_cover: int
    adl_cover: int


@dataclass(frozen=True, slots=True)
class DeleverageEvent:
    owner: bytes
    market: int
    lots: int
    price: int
    haircut: int


Event = OrderEvent | FundingEvent | LiquidationEvent | DeleverageEvent | DeficitEvent
