"""Byzantine behaviours: how a faulty validator bends the real replica's traffic.

Theory of operation: a Byzantine instance runs the real replica with the validator's real keys
(so everything it says is well-formed and, where it wants, validly signed), and a behaviour
rewrites its outgoing effects and may inject extra messages when it receives something. The
honest replicas see only messages, as they would from a real attacker.

Behaviours (``BEHAVIOURS``):

* ``equivocate`` — as leader, signs two different blocks per view and sends each to half.
* ``double_vote`` — votes for every proposal it sees (two in one view when a leader
  equivocates) and also votes for a made-up block in every view it votes in.
* ``bad_sig`` — corrupts the signature of every vote, timeout and proposal it sends.
* ``forge`` — sends forged certificates: QCs with too little weight, duplicate signers or bad
  signatures, TCs with bad signatures, far-future views; junk VRF tickets in others' names;
  and replays stale valid ones.
* ``withhold`` — a leader that never sends its proposals (but votes and times out).
* ``bad_payload`` — proposes blocks whose state root the node layer rejects.
* ``fork`` — as leader after a timeout certificate, proposes on the *oldest* QC it can (below
  the TC's highest report) instead of its highest: exactly what the vote rule's TC clause and
  the lock must refuse, so a weakened rule shows up as an agreement violation.
* ``twins`` — handled by the runner: two honest-code instances share one key.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from lockstep.consensus.crypto import DOMAIN_PROPOSAL, DOMAIN_VOTE, Signer, sha256
from lockstep.consensus.effects import Broadcast, Effect, Send
from lockstep.consensus.messages import (
    Proposal,
    QuorumCert,
    Timeout,
    TimeoutCert,
    Vote,
    VoteData,
    VrfTicket,
)
from lockstep.consensus.sync import SyncInfo

from .network import block_hash

BEHAVIOURS = ("equivocate", "double_vote", "bad_sig", "forge", "withhold", "bad_payload", "fork")


def _corrupt(sig: bytes) -> bytes:
    return bytes([sig[0] ^ 0x01]) + sig[1:]


class Behaviour:
    name = "honest"

    def __init__(self, index: int, signer: Signer, chain_id: bytes, n: int, rng: random.Random):
        self.index, self.signer, self.chain_id, self.n, self.rng = index, signer, chain_id, n, rng
        self.stale: list[Any] = []
        self.replica: Any = None
        """The real replica this behaviour wraps (set by the runner at each boot)."""

    def outgoing(self, effects: list[Effect]) -> list[Effect]:
        return effects

    def incoming(self, sender: int, msg: Any) -> list[Effect]:
        return []

    def others(self) -> list[int]:
        return [i for i in range(self.n) if i != self.index]


class Equivocate(Behaviour):
    name = "equivocate"

    def outgoing(self, effects: list[Effect]) -> list[Effect]:
        out: list[Effect] = []
        for e in effects:
            if isinstance(e, Broadcast) and isinstance(e.message, Proposal):
                p = e.message
                b2 = dataclasses.replace(p.block, timestamp_ms=p.block.timestamp_ms + 1)
                sig2 = self.signer.sign(DOMAIN_PROPOSAL, self.chain_id, b2.encode())
                p2 = Proposal(b2, p.last_tc, sig2)
                peers = self.others()
                self.rng.shuffle(peers)
                half = len(peers) // 2
                out.extend(Send(i, p) for i in peers[:half])
                out.extend(Send(i, p2) for i in peers[half:])
            else:
                out.append(e)
        return out


class DoubleVote(Behaviour):
    name = "double_vote"

    def _vote(self, data: VoteData) -> Vote:
        return Vote(data, self.index, self.signer.sign(DOMAIN_VOTE, self.chain_id, data.encode()))

    def outgoing(self, effects: list[Effect]) -> list[Effect]:
        out = list(effects)
        for e in effects:
            if isinstance(e, Send) and isinstance(e.message, Vote):
                d = e.message.data
                fake = VoteData(d.view, d.height, self.rng.randbytes(32))
                out.append(Send(e.to, self._vote(fake)))
        return out

    def incoming(self, sender: int, msg: Any) -> list[Effect]:
        if isinstance(msg, Proposal):
            b = msg.block
            h = block_hash(self.chain_id, b)
            return [Broadcast(self._vote(VoteData(b.view, b.height, h)))]
        return []


class BadSig(Behaviour):
    name = "bad_sig"

    def outgoing(self, effects: list[Effect]) -> list[Effect]:
        out: list[Effect] = []
        for e in effects:
            msg = getattr(e, "message", None)
            if isinstance(msg, Vote | Timeout | Proposal):
                bad = dataclasses.replace(msg, signature=_corrupt(msg.signature))
                e = dataclasses.replace(e, message=bad)
            out.append(e)
        return out


def _with_fields(obj: Any, **changes: Any) -> Any:
    """A copy of a frozen wire object with fields changed *without* its validation (forgery)."""
    cls = type(obj)
    new = object.__new__(cls)
    for f in dataclasses.fields(cls):
        object.__setattr__(new, f.name, changes.get(f.name, getattr(obj, f.name)))
    return new


class Forge(Behaviour):
    name = "forge"

    def incoming(self, sender: int, msg: Any) -> list[Effect]:
        if isinstance(msg, Proposal):
            self.stale.append(msg)
            if len(self.stale) > 8:
                self.stale.pop(0)
            return self._forgeries(msg)
        return []

    def _forgeries(self, seen: Proposal) -> list[Effect]:
        rng = self.rng
        qc = seen.block.justify
        if qc.view == 0 or rng.random() < 0.5:
            return []
        view = seen.block.view + rng.randint(1, 50)
        fake = VoteData(view, qc.height + 1, rng.randbytes(32))
        junk = tuple(rng.randbytes(64) for _ in qc.signers)
        choice = rng.randrange(7)
        if choice == 0:  # a QC for a made-up block with bad signatures
            forged = QuorumCert(fake, qc.signers, junk)
        elif choice == 1:  # a real QC with one signer removed (too little weight)
            forged = QuorumCert(qc.data, qc.signers[1:], qc.signatures[1:])
        elif choice == 2:  # duplicate signer, bypassing the constructor's check
            signers = (qc.signers[0], *qc.signers[:-1])
            forged = _with_fields(qc, signers=signers)
        elif choice == 3:  # a real QC's signatures moved onto other data
            forged = _with_fields(qc, data=fake)
        elif choice == 5:  # junk tickets in other validators' names, ahead of theirs
            target = seen.block.epoch + 2
            return [
                Broadcast(VrfTicket(target, i, rng.randbytes(80)))
                for i in range(self.n)
                if i != self.index
            ]
        elif choice == 4:  # a TC with bad signatures for a far view
            tc = TimeoutCert(view, qc, qc.signers, tuple(qc.view for _ in qc.signers), junk)
            return [Broadcast(SyncInfo(qc, tc))]
        else:  # replay a stale proposal and its certificates
            old = self.stale[0]
            return [Broadcast(old), Broadcast(SyncInfo(old.block.justify, old.last_tc))]
        return [Broadcast(SyncInfo(forged, None))]


class Withhold(Behaviour):
    name = "withhold"

    def outgoing(self, effects: list[Effect]) -> list[Effect]:
        return [
            e for e in effects if not (isinstance(e, Broadcast) and isinstance(e.message, Proposal))
        ]


class Fork(Behaviour):
    name = "fork"

    def outgoing(self, effects: list[Effect]) -> list[Effect]:
        out: list[Effect] = []
        for e in effects:
            if (
                isinstance(e, Broadcast)
                and isinstance(e.message, Proposal)
                and e.message.last_tc is not None
            ):
                forked = self._fork(e.message)
                if forked is not None:
                    e = Broadcast(forked)
            out.append(e)
        return out

    def _fork(self, p: Proposal) -> Proposal | None:
        r = self.replica
        b = p.block
        if r is None:
            return None
        candidates = [
            node
            for node in r.tree.nodes.values()
            if node.qc is not None
            and node.view < b.justify.view
            and node.hash != b.parent_hash
            and r.election.leader(b.view, node) == self.index
        ]
        if not candidates:
            return None
        parent = min(candidates, key=lambda node: node.view)
        app_root = (
            sha256(
                (parent.block.state_root if parent.block else bytes(32))
                + parent.height.to_bytes(8, "big")
            )
            if parent.block
            else bytes(32)
        )
        fork = dataclasses.replace(
            b,
            height=parent.height + 1,
            parent_hash=parent.hash,
            justify=parent.qc,
            timestamp_ms=max(b.timestamp_ms, parent.timestamp_ms),
            state_height=parent.height,
            state_root=app_root,
            tickets=(),
        )
        sig = self.signer.sign(DOMAIN_PROPOSAL, self.chain_id, fork.encode())
        return Proposal(fork, p.last_tc, sig)


class BadPayload(Behaviour):
    """The runner gives this validator an application that proposes wrong state roots."""

    name = "bad_payload"


_BY_NAME: dict[str, type[Behaviour]] = {
    c.name: c for c in (Equivocate, DoubleVote, BadSig, Forge, Withhold, BadPayload, Fork)
}


def make_behaviour(
    name: str, index: int, signer: Signer, chain_id: bytes, n: int, rng: random.Random
) -> Behaviour:
    return _BY_NAME.get(name, Behaviour)(index, signer, chain_id, n, rng)
