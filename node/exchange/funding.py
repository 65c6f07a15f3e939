"""Funding: the periodic payment that ties the perpetual's price to the index.

Theory of operation (all integers, all rates in parts per million):

* **Premium sample**, every block, after matching:
  ``premium_ppm = ⌊(max(0, bid − index) − max(0, index − ask)) × PPM ÷ index⌋`` with the best bid
  and ask of the book (a missing side counts as the index, so an empty book samples 0). ``⌊⌋``
  floors (toward −∞). Samples and their count accumulate in the market state.
* **Funding time**: the first block whose timestamp is ≥ ``next_funding_ms`` (which starts at
  ``genesis_time_ms + funding_interval_ms``). The rate is the mean sample, floored, clamped to
  ``±funding_clamp_ppm``: ``rate = clamp(⌊premium_sum ÷ premium_samples⌋)`` (0 with no samples).
  Then the accumulators reset and ``next_funding_ms`` moves to the first interval boundary
  strictly after the block's timestamp (missed intervals are not paid twice).
* **Payment** of a position of ``size`` lots: ``x = size × index × multiplier × rate`` (atoms ×
  PPM); positive ``x`` pays (longs pay when the perp trades above the index), negative
  receives. A payer pays ``⌈x / PPM⌉``, a receiver gets ``⌊−x / PPM⌋``: rounding always goes
  against the position, so the payers' total covers the receivers' total, and the difference
  (the rounding residual, ≥ 0) is credited to the insurance fund. With long open interest equal
  to short open interest, the exact amounts cancel, so funding is zero-sum up to that residual.
"""

from __future__ import annotations

from collections.abc import Iterable

from lockstep.consensus.genesis import PPM

from .margin import floor_div


def premium_ppm(index: int, best_bid: int | None, best_ask: int | None) -> int:
    bid = index if best_bid is None else best_bid
    ask = index if best_ask is None else best_ask
    num = (bid - index if bid > index else 0) - (index - ask if ask < index else 0)
    return floor_div(num * PPM, index)


def funding_rate_ppm(premium_sum: int, samples: int, clamp_ppm: int) -> int:
    if samples == 0:
        return 0
    rate = floor_div(premium_sum, samples)
    return max(-clamp_ppm, min(clamp_ppm, rate))


def next_funding_after(now_ms: int, next_ms: int, interval_ms: int) -> int:
    """The first boundary ``next_ms + k × interval_ms`` strictly after ``now_ms``."""
    assert now_ms >= next_ms
    return next_ms + (floor_div(now_ms - next_ms, interval_ms) + 1) * interval_ms


def payments(
    positions: Iterable[tuple[bytes, int]], index: int, multiplier: int, rate_ppm: int
) -> tuple[list[tuple[bytes, int]], int]:
    """(owner, size) → [(owner, atoms paid; negative = received)], residual for the fund."""
    out: list[tuple[bytes, int]] = []
    paid = received = 0
    for owner, size in positions:
        x = size * index * multiplier * rate_ppm
        if x > 0:
            amount = -((-x) // PPM)
            paid += amount
        else:
            amount = -((-x) // PPM)
            received -= amount
        if amount:
            out.append((owner, amount))
    residual = paid - received
    assert residual >= 0, "rounding against every position leaves a non-negative residual"
    return out, residual
