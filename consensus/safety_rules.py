"""Safety rules: the only code that signs votes and timeouts, and the state that makes it safe.

Theory of operation (the 2-chain rules of Jolteon / DiemBFT v4, stated in full with their
arguments in ``docs/protocol/consensus.md``): a replica keeps two numbers that must survive
crashes,

* ``last_voted_view`` — the highest view in which it signed a vote or a timeout, and
* ``locked_view`` — the highest QC view it has voted on top of or reported in a timeout
  (the 2-chain *lock*: a QC every later timeout of ours must report at least).

Every signing method checks its rule against this state, computes the new state, signs, and
returns both. The caller (the replica) must persist the returned state *before* the vote or
timeout leaves the process; its effect list orders ``PersistSafety`` first, and the simulator
crashes replicas between effects to check it. Asking twice for the same vote or timeout returns
the identical signed message (idempotent re-send after a restart), never a second one.

A refusal raises :class:`NotSafe` with the numbers and leaves the state untouched.

A replica whose persisted state is lost (not absent: it existed and no copy verifies) cannot
know where it voted. :class:`SafetyReset` rebuilds a state from what peers show before the
replica signs anything: the highest view of any verified certificate they send, plus
a margin, becomes ``last_voted_view``, so every rule above refuses the views the lost state
could have covered. It is fixed once certificates from enough peers have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import U64, OneOf, Optional, Struct, field, validate_fields, wire
from .crypto import DOMAIN_TIMEOUT, DOMAIN_VOTE, Signer
from .messages import (
    Block,
    Proposal,
    QuorumCert,
    Timeout,
    TimeoutCert,
    TimeoutData,
    Vote,
    VoteData,
)
from .quorum import CertificateError, ValidatorSet
from .sync import SyncInfo

__all__ = [
    "RESET_PROVEN_MARGIN",
    "RESET_VIEW_MARGIN",
    "RESET_WAIT_MS",
    "NotSafe",
    "NotSafeToTimeout",
    "NotSafeToVote",
    "SafetyReset",
    "SafetyRules",
    "SafetyState",
    "safe_to_timeout",
    "safe_to_vote",
]


@wire(60)
@dataclass(frozen=True, slots=True)
class SafetyState(Struct):
    """What must be on disk before a vote or timeout is sent. Encodes canonically for storage."""

    last_voted_view: int = field(U64)
    locked_view: int = field(U64)
    last_vote: Vote | None = field(Optional(OneOf(Vote)))
    """The vote signed in ``last_voted_view``, if any: re-sent as is when asked again."""
    last_timeout: Timeout | None = field(Optional(OneOf(Timeout)))
    """The timeout signed in ``last_voted_view``, if any: re-sent as is when asked again."""
    lock_qc: QuorumCert | None = field(Optional(OneOf(QuorumCert)), default=None)
    """The QC of view ``locked_view`` (None while it is the genesis QC). After a restart the
    replica starts from it, so it can always sign a timeout that satisfies its own lock."""

    def __post_init__(self) -> None:
        validate_fields(self)
        assert self.last_vote is None or self.last_vote.data.view <= self.last_voted_view
        assert self.last_timeout is None or self.last_timeout.view <= self.last_voted_view
        assert (self.lock_qc.view if self.lock_qc is not None else 0) == self.locked_view

    @classmethod
    def initial(cls) -> SafetyState:
        return cls(0, 0, None, None, None)


class NotSafe(Exception):
    """Signing would break a safety rule. Never the peer's fault alone: the input is refused."""


class NotSafeToVote(NotSafe):
    def __init__(
        self, view: int, qc_view: int, tc_view: int | None, hqc_view: int | None, last: int
    ) -> None:
        super().__init__(
            f"not safe to vote in view {view}: block QC view {qc_view}, TC view {tc_view}, "
            f"TC high QC view {hqc_view}, last voted view {last}"
        )
        self.view, self.qc_view, self.tc_view, self.hqc_view = view, qc_view, tc_view, hqc_view
        self.last_voted_view = last


class NotSafeToTimeout(NotSafe):
    def __init__(
        self, view: int, qc_view: int, tc_view: int | None, locked_view: int, last: int
    ) -> None:
        super().__init__(
            f"not safe to time out view {view}: high QC view {qc_view}, TC view {tc_view}, "
            f"locked view {locked_view}, last voted view {last}"
        )
        self.view, self.qc_view, self.tc_view = view, qc_view, tc_view
        self.locked_view, self.last_voted_view = locked_view, last


def safe_to_vote(view: int, qc_view: int, tc: TimeoutCert | None, last_voted_view: int) -> bool:
    """Vote rule: ``view > last_voted_view ∧ (view = qc_view + 1 ∨ (tc ≠ ⊥ ∧ view = tc.view + 1
    ∧ qc_view ≥ tc.high_qc.view))``.

    One vote per view; a block either extends the QC of the view just before it, or follows a
    TC and extends a QC at least as high as every QC its 2f+1 signers reported (which includes
    the lock of at least one honest replica from any quorum that could have committed).
    """
    if view <= last_voted_view:
        return False
    if view == qc_view + 1:
        return True
    return tc is not None and view == tc.view + 1 and qc_view >= tc.high_qc.view


def safe_to_timeout(
    view: int, qc_view: int, tc: TimeoutCert | None, locked_view: int, last_voted_view: int
) -> bool:
    """Timeout rule: ``view ≥ last_voted_view ∧ qc_view ≥ locked_view ∧ (view = qc_view + 1 ∨
    (tc ≠ ⊥ ∧ view = tc.view + 1))``.

    A timeout never reports a QC below the lock (so a TC carries the lock of each honest
    signer), and is only signed for a view the replica entered with a certificate.
    """
    if view < last_voted_view or qc_view < locked_view:
        return False
    return view == qc_view + 1 or (tc is not None and view == tc.view + 1)


class SafetyRules:
    """Owns :class:`SafetyState` and the signing key for votes and timeouts."""

    def __init__(self, signer: Signer, index: int, chain_id: bytes, state: SafetyState) -> None:
        self._signer = signer
        self.index = index
        self.chain_id = chain_id
        self.state = state

    def vote(
        self, block: Block, block_hash: bytes, last_tc: TimeoutCert | None
    ) -> tuple[SafetyState, Vote]:
        """Sign a vote for ``block`` if :func:`safe_to_vote`; return the new state and vote.

        The caller has verified the block, its QC and ``last_tc``. Same block, same view again:
        the stored vote is returned unchanged (and the state is unchanged).
        """
        s = self.state
        data = VoteData(block.view, block.height, block_hash)
        if s.last_vote is not None and s.last_vote.data == data:
            return s, s.last_vote
        qc_view = block.justify.view
        if not safe_to_vote(block.view, qc_view, last_tc, s.last_voted_view):
            raise NotSafeToVote(
                block.view,
                qc_view,
                None if last_tc is None else last_tc.view,
                None if last_tc is None else last_tc.high_qc.view,
                s.last_voted_view,
            )
        signature = self._signer.sign(DOMAIN_VOTE, self.chain_id, data.encode())
        vote = Vote(data, self.index, signature)
        lock = block.justify if qc_view > s.locked_view else s.lock_qc
        new = SafetyState(block.view, max(s.locked_view, qc_view), vote, None, lock)
        self.state = new
        return new, vote

    def timeout(
        self, view: int, high_qc: QuorumCert, last_tc: TimeoutCert | None
    ) -> tuple[SafetyState, Timeout]:
        """Sign a timeout for ``view`` if :func:`safe_to_timeout`; return the new state and it.

        Timing out raises ``last_voted_view`` to ``view``, so no vote in ``view`` can follow.
        Asked again for the same view: the stored timeout is returned.
        """
        s = self.state
        if s.last_timeout is not None and s.last_timeout.view == view:
            return s, s.last_timeout
        if not safe_to_timeout(view, high_qc.view, last_tc, s.locked_view, s.last_voted_view):
            raise NotSafeToTimeout(
                view,
                high_qc.view,
                None if last_tc is None else last_tc.view,
                s.locked_view,
                s.last_voted_view,
            )
        body = TimeoutData(view, high_qc.view).encode()
        signature = self._signer.sign(DOMAIN_TIMEOUT, self.chain_id, body)
        timeout = Timeout(view, high_qc, self.index, signature)
        keep_vote = (
            s.last_vote if s.last_vote is not None and s.last_vote.data.view == view else None
        )
        lock = high_qc if high_qc.view > s.locked_view else s.lock_qc
        new = SafetyState(view, max(s.locked_view, high_qc.view), keep_vote, timeout, lock)
        self.state = new
        return new, timeout


RESET_PROVEN_MARGIN = 2
"""Views above the highest certificate a reset needs once peers of weight > 2f reported: a
replica signs in view v only after a certificate for v - 1 exists, whose honest signers each
hold one for v - 2, and more than 2f of the others' weight always includes one of them."""
RESET_VIEW_MARGIN = 50
"""Views a reset sits out above the highest certificate when fewer peers reported (a quorum
less this validator, as many as a network that needs it can have up): an allowance for
reporters that lag the network, a few views while connected; at a view per block interval,
seconds."""
RESET_WAIT_MS = 3_000
"""How long a reset waits for peers of weight > 2f before settling for the larger margin."""


class SafetyReset:
    """Learns a safe :class:`SafetyState` for a replica whose own is lost, from its peers.

    Feed it every message received before the replica starts (:meth:`observe`); certificates
    in them are verified (a forged one could set the floor anywhere) and the highest kept.
    Ready (:meth:`ready`) once other validators of weight > 2f have shown one (the floor is
    then proven, ``RESET_PROVEN_MARGIN``), or, after ``RESET_WAIT_MS``, of weight at least the
    quorum less our own (``RESET_VIEW_MARGIN``). :meth:`state` is then ``last_voted_view =
    highest certificate view + margin``, locked on the highest QC seen: ``safe_to_vote``
    refuses every view at or below the floor and ``safe_to_timeout`` every view below it, so
    nothing the lost state could have covered is signed again, and no timeout reports a QC
    below one the network had.

    ``local_view`` is the highest view this node's own storage shows (committed and pending
    blocks): a lower bound too.
    """

    def __init__(
        self,
        vset: ValidatorSet,
        index: int,
        local_view: int = 0,
        margin: int = RESET_VIEW_MARGIN,
        wait_ms: int = RESET_WAIT_MS,
    ) -> None:
        assert margin >= RESET_PROVEN_MARGIN
        self.vset = vset
        self.index = index
        self.margin = margin
        self.wait_ms = wait_ms
        self.highest_view = local_view
        self.lock_qc: QuorumCert | None = None
        self.reporters: set[int] = set()
        self.rejected = 0
        self.first_ms: int | None = None
        self.needed_weight = vset.quorum_weight - vset.weight(index)
        self.proven_weight = 2 * vset.max_faulty_weight + 1

    def observe(self, sender: int, message: Any, now_ms: int) -> None:
        """Take the certificates ``message`` carries (from validator ``sender``)."""
        if self.first_ms is None:
            self.first_ms = now_ms
        if sender == self.index or not 0 <= sender < self.vset.n:
            return
        certs = _certificates(message)
        if not certs:
            return
        try:
            for cert in certs:
                if isinstance(cert, QuorumCert):
                    self.vset.verify_qc(cert)
                else:
                    self.vset.verify_tc(cert)
        except CertificateError:
            self.rejected += 1
            return
        for cert in certs:
            self.highest_view = max(self.highest_view, cert.view)
            higher = self.lock_qc is None or cert.view > self.lock_qc.view
            if isinstance(cert, QuorumCert) and cert.view > 0 and higher:
                self.lock_qc = cert
        self.reporters.add(sender)

    def _weight(self) -> int:
        return self.vset.weight_of(sorted(self.reporters))

    @property
    def proven(self) -> bool:
        """Peers of weight > 2f reported: the floor needs only ``RESET_PROVEN_MARGIN``."""
        return self._weight() >= self.proven_weight

    def ready(self, now_ms: int) -> bool:
        """Enough peers have shown their certificates to fix the floor."""
        if self.proven:
            return True
        waited = self.first_ms is not None and now_ms - self.first_ms >= self.wait_ms
        return waited and self._weight() >= self.needed_weight

    @property
    def floor_view(self) -> int:
        """The view at and below which the reset replica never votes."""
        return self.highest_view + (RESET_PROVEN_MARGIN if self.proven else self.margin)

    def state(self) -> SafetyState:
        """The state to persist before the replica starts from it."""
        lock = self.lock_qc
        return SafetyState(self.floor_view, 0 if lock is None else lock.view, None, None, lock)


def _certificates(message: Any) -> list[QuorumCert | TimeoutCert]:
    """The certificates a consensus message carries (votes and bare timeouts carry views
    that one signer could make up, so only a timeout's QC counts)."""
    if isinstance(message, SyncInfo):
        return [message.high_qc] + ([message.high_tc] if message.high_tc is not None else [])
    if isinstance(message, Proposal):
        tc = message.last_tc
        return [message.block.justify] + ([tc] if tc is not None else [])
    if isinstance(message, Timeout):
        return [message.high_qc]
    return []
