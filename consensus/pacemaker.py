"""Pacemaker: the current view, the highest certificates, view timeouts and timeout collection.

Theory of operation: a replica is in view ``v`` once it holds a QC or a TC for ``v - 1`` (its
*highest* certificates are kept here). Entering through a QC resets the backoff; each view
entered through a TC doubles the next timeout, up to the genesis maximum, so after the network
stabilises honest replicas' views overlap long enough for a leader to finish. A QC for the
previous view that arrives after a replica entered through its TC resets the backoff too. Any
certificate seen anywhere (a proposal's QC or TC, a timeout's high QC, a peer's ``SyncInfo``)
moves the replica forward: that is view synchronisation.

Timeouts for a view are collected here by signer; the first set of quorum weight forms a TC. A
set of weak weight (f + 1, so at least one honest replica gave up on the view) lets a replica
join the timeout early instead of waiting for its own timer (Bracha-style amplification).
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import QuorumCert, Timeout, TimeoutCert

__all__ = ["MAX_FUTURE_VIEWS", "Pacemaker", "TimeoutCollector"]

MAX_FUTURE_VIEWS = 1_000
"""Votes and timeouts for views further ahead than this are ignored (bounded memory)."""


@dataclass(slots=True)
class TimeoutCollector:
    view: int
    timeouts: dict[int, Timeout]
    weight: int = 0

    def add(self, timeout: Timeout, weight: int) -> bool:
        """Add a verified timeout; False if its signer was already counted."""
        assert timeout.view == self.view
        if timeout.voter in self.timeouts:
            return False
        self.timeouts[timeout.voter] = timeout
        self.weight += weight
        return True

    def certificate(self) -> TimeoutCert:
        signers = tuple(sorted(self.timeouts))
        ts = [self.timeouts[s] for s in signers]
        high = max((t.high_qc for t in ts), key=lambda qc: qc.view)
        return TimeoutCert(
            self.view,
            high,
            signers,
            tuple(t.high_qc.view for t in ts),
            tuple(t.signature for t in ts),
        )


class Pacemaker:
    def __init__(self, base_timeout_ms: int, max_timeout_ms: int, genesis_qc: QuorumCert):
        assert 0 < base_timeout_ms <= max_timeout_ms
        self.base_timeout_ms = base_timeout_ms
        self.max_timeout_ms = max_timeout_ms
        self.view = 0
        self.high_qc = genesis_qc
        self.high_tc: TimeoutCert | None = None
        self.consecutive_timeouts = 0
        self.collectors: dict[int, TimeoutCollector] = {}

    def timeout_ms(self) -> int:
        """``min(base × 2^k, max)`` for k consecutive views entered through a TC."""
        return min(self.base_timeout_ms << min(self.consecutive_timeouts, 30), self.max_timeout_ms)

    def observe_qc(self, qc: QuorumCert) -> bool:
        """Record a verified QC; True if it is a new highest."""
        if qc.view > self.high_qc.view:
            self.high_qc = qc
            return True
        return False

    def previous_view_certified(self) -> bool:
        """After entering through a TC, the QC for the view before this one arrived (its votes
        were held up, say by a partition that just healed): that view succeeded after all, so
        the backoff resets. True if it did (the caller restarts the view timer at the base
        timeout); a replica left waiting a doubled timeout would hold up the next view."""
        if self.consecutive_timeouts and self.high_qc.view == self.view - 1:
            self.consecutive_timeouts = 0
            return True
        return False

    def observe_tc(self, tc: TimeoutCert) -> bool:
        if self.high_tc is None or tc.view > self.high_tc.view:
            self.high_tc = tc
            return True
        return False

    def next_view(self) -> tuple[int, bool]:
        """The view the highest certificates justify, and whether a TC justifies it."""
        qc_next = self.high_qc.view + 1
        tc_next = -1 if self.high_tc is None else self.high_tc.view + 1
        return (tc_next, True) if tc_next > qc_next else (qc_next, False)

    def enter(self, view: int, via_tc: bool) -> None:
        assert view > self.view
        self.consecutive_timeouts = self.consecutive_timeouts + 1 if via_tc else 0
        self.view = view
        for v in [v for v in self.collectors if v < view]:
            del self.collectors[v]

    def last_tc_for(self, view: int) -> TimeoutCert | None:
        """The TC that justifies entering ``view``, when a QC does not."""
        tc = self.high_tc
        if tc is not None and tc.view + 1 == view and self.high_qc.view + 1 != view:
            return tc
        return None

    def collector(self, view: int) -> TimeoutCollector:
        c = self.collectors.get(view)
        if c is None:
            c = self.collectors[view] = TimeoutCollector(view, {})
        return c
