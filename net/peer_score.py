"""Peer scores: how much a node trusts each connected peer, in the GossipSub v1.1 manner.

Theory of operation: each peer has counters that the gossip rules bump — first deliveries of
valid messages (good), invalid messages (REJECT verdicts, malformed envelopes) and rate-limit
violations (bad). The score is

    score = min(first_deliveries × W_FIRST, FIRST_CAP)
            + invalid² × W_INVALID + flood² × W_FLOOD

(GossipSub v1.1's P2, P4 and its behaviour penalty P7: penalties are squared so a burst of bad
messages sinks a peer quickly while a rare slip is forgiven). Every ``decay_interval_s`` all
counters are multiplied by ``decay`` and counters under ``decay_to_zero`` are dropped, so the
past fades. A peer whose score falls to ``disconnect_threshold`` or below is disconnected and backed
off for ``backoff_s`` (the caller does both). Time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PeerScore", "ScoreParams"]


@dataclass(frozen=True, slots=True)
class ScoreParams:
    w_first: float = 0.01
    first_cap: float = 10.0
    """GossipSub caps P2 so a peer cannot bank credit against later misbehaviour."""
    w_invalid: float = -1.0
    """10 invalid messages (before decay) reach the threshold below."""
    w_flood: float = -1.0
    disconnect_threshold: float = -100.0
    """Plays GossipSub's graylist threshold; -100 on the scale of its recommended defaults."""
    decay: float = 0.9
    decay_interval_s: float = 1.0
    decay_to_zero: float = 0.01
    backoff_s: float = 60.0
    """How long a disconnected bad peer is refused (GossipSub's PRUNE backoff is 60 s)."""


class PeerScore:
    """Counters and score of one peer."""

    __slots__ = ("_next_decay", "first", "flood", "invalid", "params")

    def __init__(self, params: ScoreParams, now: float) -> None:
        self.params = params
        self.first = 0.0
        self.invalid = 0.0
        self.flood = 0.0
        self._next_decay = now + params.decay_interval_s

    def score(self, now: float) -> float:
        self._maybe_decay(now)
        p = self.params
        return (
            min(self.first * p.w_first, p.first_cap)
            + self.invalid * self.invalid * p.w_invalid
            + self.flood * self.flood * p.w_flood
        )

    def on_first_delivery(self) -> None:
        self.first += 1.0

    def on_invalid(self, now: float) -> bool:
        """Count an invalid message; return whether the peer is now below the threshold."""
        self.invalid += 1.0
        return self.score(now) <= self.params.disconnect_threshold

    def on_flood(self, now: float) -> bool:
        """Count a rate-limit violation; return whether the peer is now below the threshold."""
        self.flood += 1.0
        return self.score(now) <= self.params.disconnect_threshold

    def _maybe_decay(self, now: float) -> None:
        if now < self._next_decay:
            return
        p = self.params
        steps = 1 + int((now - self._next_decay) // p.decay_interval_s)
        factor = p.decay**steps
        self._next_decay += steps * p.decay_interval_s
        self.first *= factor
        self.invalid *= factor
        self.flood *= factor
        if self.invalid < p.decay_to_zero:
            self.invalid = 0.0
        if self.flood < p.decay_to_zero:
            self.flood = 0.0
