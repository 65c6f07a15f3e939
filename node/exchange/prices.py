"""Index and mark prices.

Theory of operation. Validators sign :class:`OraclePrice` observations that ride in blocks. For
each (market, validator) only the latest observation is kept, stamped with the *block's*
timestamp (never a node's clock). At each block:

* **Index price**: the weight-weighted median of the *fresh* observations, those stamped no more
  than ``oracle_staleness_ms`` before the block's timestamp. Observations are sorted by (price,
  validator key); the index is the price of the first observation at which the cumulative weight
  reaches half of the fresh weight (``2 × cumulative ≥ total``: the lower weighted median). It is
  only updated when the fresh weight is more than a third of the total validator weight, so at
  least one honest validator stands behind it; otherwise the previous index stays (at genesis,
  ``initial_price_ticks``).
* **Mark price**: the median of (index, best bid, best ask), where a missing side of the book
  counts as the index. Equivalently: the index clamped into the book's spread. A thin or empty
  book cannot move the mark away from the index; a real, two-sided book whose whole spread sits
  away from the index pulls the mark to the nearer edge of the spread, so a stale oracle cannot
  keep positions alive at a price nobody trades at.
"""

from __future__ import annotations

from collections.abc import Iterable


def weighted_median(observations: Iterable[tuple[int, bytes, int]]) -> int | None:
    """Lower weighted median of (price, validator key, weight); ``None`` if there are none."""
    obs = sorted(observations)
    total = sum(w for _, _, w in obs)
    if total == 0:
        return None
    acc = 0
    for price, _, w in obs:
        acc += w
        if 2 * acc >= total:
            return price
    raise AssertionError("unreachable: cumulative weight reaches the total")


def index_price(
    observations: Iterable[tuple[int, bytes, int, int]],
    now_ms: int,
    staleness_ms: int,
    total_weight: int,
    previous: int,
) -> int:
    """Index from (price, validator, weight, stamped_ms) observations, as the docstring says."""
    fresh = [(p, v, w) for p, v, w, t in observations if now_ms - t <= staleness_ms]
    if 3 * sum(w for _, _, w in fresh) <= total_weight:
        return previous
    median = weighted_median(fresh)
    assert median is not None
    return median


def mark_price(index: int, best_bid: int | None, best_ask: int | None) -> int:
    """median(index, bid, ask), a missing side counting as the index."""
    bid = index if best_bid is None else best_bid
    ask = index if best_ask is None else best_ask
    return sorted((index, bid, ask))[1]
