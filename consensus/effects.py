"""Effects a replica asks its shell to perform, in list order.

Theory of operation: the order of the list is part of the contract. A ``PersistSafety`` comes
before the ``Send``/``Broadcast`` of the vote or timeout it protects; the shell must finish the
write (fsync) before performing any later effect. ``Commit`` effects come in height order, each
block exactly once per replica lifetime (after a restart, from the first height the node did
not give back in ``Start.committed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .events import TimerKind
from .messages import Block
from .safety_rules import SafetyState
from .sync import CommittedBlock

__all__ = ["Broadcast", "Commit", "Effect", "PersistBlock", "PersistSafety", "Send", "SetTimer"]


@dataclass(frozen=True, slots=True)
class Send:
    to: int
    message: Any


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every other validator (the replica handles its own copy itself)."""

    message: Any


@dataclass(frozen=True, slots=True)
class PersistSafety:
    """Durably store ``state`` before performing any later effect."""

    state: SafetyState


@dataclass(frozen=True, slots=True)
class PersistBlock:
    """Durably store an uncommitted block before performing any later effect; give it back in
    ``Start.pending`` after a restart (blocks at or below the committed height may be dropped).

    Emitted for the block a vote is about to certify and any uncommitted ancestor not stored
    yet: if every validator crashed, the blocks their locks name must still exist somewhere.
    """

    block: Block


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire ``TimerFired(kind, view)`` at ``at_ms``; replaces any pending timer of this kind."""

    kind: TimerKind
    view: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class Commit:
    """``committed.block`` is final at its height; ``committed.qc`` certifies it."""

    committed: CommittedBlock


Effect = Send | Broadcast | PersistSafety | PersistBlock | SetTimer | Commit
