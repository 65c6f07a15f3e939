"""Events a replica consumes: everything that can change its state comes in as one of these.

Theory of operation: the replica is a function ``handle(event) -> list[Effect]``. Every event
carries ``now_ms``, the caller's clock, so the core never reads one. Events are frozen value
objects; the replica never keeps a reference to a mutable input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .messages import Block
from .safety_rules import SafetyState
from .sync import CommittedBlock

__all__ = [
    "Event",
    "MessageReceived",
    "PeerConnected",
    "Start",
    "TimerFired",
    "TimerKind",
    "TransactionsAvailable",
]


class TimerKind(Enum):
    VIEW = "view"
    """The view's deadline: sign (or re-send) a timeout for it."""
    PROPOSE = "propose"
    """The leader's pacing timer: propose when it fires (block interval, idle heartbeat)."""
    SYNC = "sync"
    """Re-send unanswered block requests (to the next peer)."""


@dataclass(frozen=True, slots=True)
class Start:
    """Boot or restart. ``safety`` is the persisted safety state (None on first boot);
    ``committed`` the blocks the node has stored as committed, in height order (may be only
    the newest ``election_history_blocks(epoch_views)`` of them: the election reads back to
    the start of the third epoch before the current one).
    It is iterated once, so a node may decode the blocks as the replica takes them."""

    now_ms: int
    safety: SafetyState | None = None
    committed: Iterable[CommittedBlock] = ()
    pending: tuple[Block, ...] = ()
    """Blocks stored by ``PersistBlock`` above the committed height, in any order."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decoded consensus message from peer ``sender`` (its validator index, as the
    authenticated session says). Signatures inside are still unchecked."""

    sender: int
    message: Any
    now_ms: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    kind: TimerKind
    view: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class TransactionsAvailable:
    """The mempool has transactions: a leader waiting on its idle heartbeat proposes sooner."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A session with validator ``peer`` just opened (a first connection or a reconnection).

    The replica tells the peer where it is (its highest QC and TC). A peer that restarted
    behind learns the chain's tip at once, instead of at the next proposal (an idle network
    proposes only every heartbeat), and fetches what it missed right away. A peer that is
    ahead answers with its own ``SyncInfo``."""

    peer: int
    now_ms: int


Event = Start | MessageReceived | TimerFired | TransactionsAvailable | PeerConnected
