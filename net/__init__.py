"""Trio I/O for peers: TCP framing, Noise XX sessions bound to Ed25519 identities, gossip, sync.

The node daemon needs only what is re-exported here; see ``host`` for the theory of operation,
``docs/protocol/network.md`` for the wire format and ``docs/design/network.md`` for the design.
"""

from .framing import Kind
from .gossip import GossipParams, Verdict
from .host import Host, HostConfig, Inbound, open_host
from .sync import (
    PeerUnavailable,
    SyncError,
    SyncRefused,
    SyncTimeout,
    block_range_handler,
    fetch_blocks,
)

__all__ = [
    "GossipParams",
    "Host",
    "HostConfig",
    "Inbound",
    "Kind",
    "PeerUnavailable",
    "SyncError",
    "SyncRefused",
    "SyncTimeout",
    "Verdict",
    "block_range_handler",
    "fetch_blocks",
    "open_host",
]
