"""Token buckets for per-peer bytes/s and messages/s limits.

Theory of operation: a bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per
second. Taking ``n`` tokens succeeds if the bucket holds at least ``n``; otherwise nothing is
taken and the caller treats the input as over the limit. Time is passed in (seconds, any
monotonic origin); the bucket never reads a clock, so tests and the simulator drive it exactly.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        assert rate > 0 and burst > 0, (rate, burst)
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now

    def try_take(self, n: float, now: float) -> bool:
        """Take ``n`` tokens if available; return whether they were."""
        if self.tokens < n:
            self.refill(now)
            if self.tokens < n:
                return False
        self.tokens -= n
        return True
