"""Peer manager rules, sans-I/O: reconnect backoff with jitter, and one connection per pair.

Theory of operation. *Backoff*: after the n-th failed dial (n ≥ 1) a dialler waits
``min(cap, base × 2^(n-1))`` scaled into ``[½, 1]`` of itself by a jitter drawn from an injected
``random.Random`` ("equal jitter"), so restarts of many nodes do not dial in lock-step and a
seeded test replays exactly. A successful session resets the count.

*Tie-break*: both ends of a pair may dial at once, so a node can end up with two sessions to
one peer. Both ends apply the same rule to the pair and so keep the same one: the session
initiated by the node with the smaller Ed25519 key wins; between two sessions with the same
initiator (it restarted, or re-dialled a half-open connection) the newer wins. To make the race
rare when both ends see a session end, a node redials a peer with a smaller key only after
``dial_grace_s`` without a session. Its first dial to each peer goes at once: a node that just
started finds its peers backing off from the dials that failed while it was down, and waiting
for them would delay its catching up by up to the grace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffParams", "keep_new_session"]


@dataclass(frozen=True, slots=True)
class BackoffParams:
    base_s: float = 0.5
    cap_s: float = 30.0
    """CometBFT's persistent-peer redial is capped near this; long enough to spare a dead host."""


class Backoff:
    """Reconnect delays for one peer."""

    __slots__ = ("failures", "params", "rng")

    def __init__(self, params: BackoffParams, rng: random.Random) -> None:
        self.params = params
        self.rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next dial."""
        self.failures += 1
        p = self.params
        full = min(p.cap_s, p.base_s * (2 ** min(self.failures - 1, 32)))
        return full / 2 + self.rng.uniform(0.0, full / 2)

    def reset(self) -> None:
        self.failures = 0


def keep_new_session(
    local_key: bytes,
    remote_key: bytes,
    existing_initiated_locally: bool,
    new_initiated_locally: bool,
) -> bool:
    """Should a new session to ``remote_key`` replace the existing one? (module docstring)."""
    if existing_initiated_locally == new_initiated_locally:
        return True
    winner_is_local = local_key < remote_key
    return new_initiated_locally == winner_is_local
