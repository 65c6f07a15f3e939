"""Network input: the net layer's validator, and the loop that routes what it delivers.

Theory of operation. The host calls :meth:`InboundRouter.validate` on every gossiped or direct
payload before it delivers or forwards it (accept / reject / ignore): transactions are judged
by admission, consensus messages are strictly decoded here, and a node never forwards what it
could not decode. The decoded message is kept, keyed by the payload's identity, so the inbound
loop that receives the same payload does not decode it twice; so are the encodings of the
blocks it carries (slices of the payload), so a block is never re-encoded to be hashed or
stored. The inbound loop then routes each payload to its owner: transactions to admission (a
batch at a time), requests for committed blocks to serving (answered from the block store),
everything else to the consensus driver as a ``MessageReceived`` event.

The seam is the dispatch by kind: this module owns the decoded-message cache and no other
state, and it is the only place that knows which part handles which message.
"""

from __future__ import annotations

from typing import Any

import trio
from lockstep.consensus.actions import SignedTx
from lockstep.consensus.codec import CodecError, decode, remember_encoding
from lockstep.consensus.events import MessageReceived
from lockstep.consensus.messages import Block, Proposal, Timeout, Vote, VrfTicket
from lockstep.consensus.sync import (
    BlockRequest,
    BlockResponse,
    CommittedRequest,
    CommittedResponse,
    SyncInfo,
    sync_block_bytes,
)
from lockstep.net.framing import Kind
from lockstep.net.gossip import Verdict
from lockstep.net.host import Inbound
from lockstep.net.sync import MAX_SYNC_RESPONSE_BYTES

from .admission import TxAdmission
from .consensus_driver import ConsensusDriver
from .context import DecodedCache, NodeContext, now_ms
from .serving import Serving

CONSENSUS_MESSAGES = (
    Proposal,
    Vote,
    Timeout,
    SyncInfo,
    BlockRequest,
    BlockResponse,
    CommittedRequest,
    CommittedResponse,
    VrfTicket,
)
MAX_CONSENSUS_MESSAGE_BYTES = MAX_SYNC_RESPONSE_BYTES
DECODED_AHEAD = 1_024
"""Consensus messages decoded by the gossip validator and not yet taken by the consensus loop
(a bound for messages the loop never takes; a proposal can be megabytes)."""


class InboundRouter:
    """Validates what peers send, then hands each message to the part that owns it."""

    def __init__(
        self,
        ctx: NodeContext,
        admission: TxAdmission,
        serving: Serving,
        driver: ConsensusDriver,
    ) -> None:
        self.ctx = ctx
        self.admission = admission
        self.serving = serving
        self.driver = driver
        self._decoded: DecodedCache[Any] = DecodedCache(DECODED_AHEAD)

    def validate(self, peer: bytes, kind: int, payload: bytes) -> Verdict:
        """The net layer's validator: decide before anything is delivered or forwarded."""
        if kind == Kind.TX:
            return self.admission.validate_gossip_tx(payload)
        try:
            msg = _decode_message(payload)
        except CodecError as e:
            self.ctx.log.info("peer_message_rejected", peer=peer.hex()[:8], reason=str(e))
            return Verdict.REJECT
        self._decoded.put(payload, msg)
        return Verdict.ACCEPT

    def _decode_consensus(self, payload: bytes) -> Any:
        cached = self._decoded.take(payload)
        if cached is not None:
            return cached
        return _decode_message(payload)

    async def run(self, inbound: trio.MemoryReceiveChannel[list[Inbound]]) -> None:
        """The inbound loop: route every delivered batch; sync answers run as their own tasks."""
        admission, serving, driver = self.admission, self.serving, self.driver
        index_of = self.ctx.index_of
        async with trio.open_nursery() as nursery:
            async for batch in inbound:
                txs: list[tuple[SignedTx, bytes, bytes]] = []
                for peer, kind, payload in batch:
                    if kind == Kind.TX:
                        txs.append(admission.take_gossiped(payload))
                        continue
                    sender = index_of.get(peer)
                    if sender is None:
                        continue  # observers send no consensus traffic
                    try:
                        msg = self._decode_consensus(payload)
                    except CodecError:
                        continue
                    # Committed blocks are served from the block store, which holds them all
                    # as encoded; the replica keeps only the newest few whole in memory.
                    if type(msg) is CommittedRequest:
                        nursery.start_soon(serving.serve_committed, peer, msg)
                        continue
                    if type(msg) is BlockRequest and serving.served_from_store(msg.block_hash):
                        nursery.start_soon(serving.serve_blocks, peer, msg)
                        continue
                    driver.post(MessageReceived(sender, msg, now_ms()))
                if txs:
                    await admission.admit_gossiped(txs)


_PROPOSAL_HEAD = b"\x84\x18\x26"  # array of 4, then type tag 38
assert Proposal.WIRE_TAG == 38


def _decode_message(payload: bytes) -> Any:
    """Strictly decode a consensus message; remember the encodings of the blocks it carries
    (slices of ``payload``), which the node hashes and stores."""
    msg = decode(payload, *CONSENSUS_MESSAGES, max_bytes=MAX_CONSENSUS_MESSAGE_BYTES)
    kind = type(msg)
    if kind is Proposal:
        _remember_block_bytes(msg, payload)
    elif kind is BlockResponse or kind is CommittedResponse:
        blocks = msg.blocks if kind is BlockResponse else [c.block for c in msg.committed]
        for block, raw in zip(blocks, sync_block_bytes(msg, payload), strict=True):
            remember_encoding(block, raw)
    return msg


def _remember_block_bytes(p: Proposal, payload: bytes) -> None:
    """A strictly decoded proposal's block is a slice of its bytes: [38, block, tc, sig].

    Remembering it spares the block hash, the proposer's signature check and the block
    store three re-encodings of a block that can be megabytes."""
    tc_len = 1 if p.last_tc is None else len(p.last_tc.encode())
    if payload[:3] != _PROPOSAL_HEAD:
        return
    raw = payload[3 : len(payload) - 66 - tc_len]
    if raw and raw[0] == 0x80 + 1 + len(Block._WIRE_FIELDS):
        remember_encoding(p.block, bytes(raw))
