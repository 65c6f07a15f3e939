"""Consensus objects: blocks, proposals, votes, timeouts, their certificates, and VRF tickets.

Theory of operation: validators are named by their *index* in the genesis validator list (a
uint16), which keeps certificates small. A block names its parent by hash and carries the
quorum certificate (QC) that justifies the parent, the transactions it orders, the VRF tickets
its proposer has seen, and a ledger state root with the height it belongs to (``state_height``,
the last block the proposer had applied: execution is pipelined, so in steady state the root
lags the block by two, and a divergent node is detected within a few blocks, as CometBFT's app
hash detects it at the next one).

What is signed (each under its own domain, see ``crypto``):
  * a vote signs ``VoteData(view, height, block_hash)``; a QC is 2f+1 (by weight) such
    signatures over the same data, from strictly increasing signer indices;
  * a timeout signs ``TimeoutData(view, high_qc_view)``; a TC is 2f+1 of those for one view,
    each with the QC view its signer reported, and the highest of those QCs;
  * a proposal signs the block body (``DOMAIN_PROPOSAL``); the block hash is the SHA-256 of the
    block under ``DOMAIN_BLOCK``;
  * a VRF ticket is an ECVRF proof over ``DOMAIN_TICKET || chain id || CBOR([epoch, seed])``.
Structural rules that need no keys (sorted unique signers, lengths equal, QC view < TC view) are
checked on decode; quorum weight and signatures are checked by the consensus core, which knows
the validator set.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import cbor2

from . import limits
from .actions import SignedTx
from .codec import (
    U16,
    U64,
    Bytes,
    ListOf,
    OneOf,
    Optional,
    OutOfRange,
    Struct,
    decode,
    field,
    validate_fields,
    wire,
)
from .crypto import CHAIN_ID_BYTES, DOMAIN_BLOCK, DOMAIN_TICKET, hash_object, signing_bytes

Hash = Bytes(32)
Signature = Bytes(64)
VrfProof = Bytes(80)
Signers = ListOf(U16, limits.MAX_VALIDATORS)
Signatures = ListOf(Signature, limits.MAX_VALIDATORS)


class _Checked(Struct):
    """Runs ``__wire_check__`` (cross-field rules) after construction and after decoding."""

    __slots__ = ()

    def __post_init__(self) -> None:
        validate_fields(self)
        self.__wire_check__()

    def __wire_check__(self) -> None:
        pass


def _check_signers(signers: tuple[int, ...], n_sigs: int, what: str) -> None:
    if len(signers) != n_sigs:
        raise OutOfRange(f"{what}: {len(signers)} signers but {n_sigs} signatures")
    for a, b in itertools.pairwise(signers):
        if a >= b:
            raise OutOfRange(f"{what}: signer indices must be strictly increasing ({a}, {b})")


@wire(30)
@dataclass(frozen=True, slots=True)
class VoteData(_Checked):
    """What a vote signs: the block it certifies in a view."""

    view: int = field(U64)
    height: int = field(U64)
    block_hash: bytes = field(Hash)


@wire(31)
@dataclass(frozen=True, slots=True)
class Vote(_Checked):
    data: VoteData = field(OneOf(VoteData))
    voter: int = field(U16)
    signature: bytes = field(Signature)


@wire(32)
@dataclass(frozen=True, slots=True)
class QuorumCert(_Checked):
    """2f+1 (by weight) vote signatures over one ``VoteData``.

    The genesis QC (view 0, height 0, the genesis hash, no signers) is the only one without
    signatures; it is valid by definition and never needs to be sent.
    """

    data: VoteData = field(OneOf(VoteData))
    signers: tuple[int, ...] = field(Signers)
    signatures: tuple[bytes, ...] = field(Signatures)

    def __wire_check__(self) -> None:
        _check_signers(self.signers, len(self.signatures), "QuorumCert")

    @property
    def view(self) -> int:
        return self.data.view

    @property
    def height(self) -> int:
        return self.data.height

    @property
    def block_hash(self) -> bytes:
        return self.data.block_hash


@wire(33)
@dataclass(frozen=True, slots=True)
class TimeoutData(_Checked):
    """What a timeout signs: the view given up on and the view of the signer's highest QC."""

    view: int = field(U64)
    high_qc_view: int = field(U64)


@wire(34)
@dataclass(frozen=True, slots=True)
class Timeout(_Checked):
    view: int = field(U64)
    high_qc: QuorumCert = field(OneOf(QuorumCert))
    voter: int = field(U16)
    signature: bytes = field(Signature)

    def __wire_check__(self) -> None:
        if self.high_qc.view >= self.view:
            raise OutOfRange(f"Timeout: high QC view {self.high_qc.view} ≥ view {self.view}")

    @property
    def data(self) -> TimeoutData:
        return TimeoutData(self.view, self.high_qc.view)


@wire(35)
@dataclass(frozen=True, slots=True)
class TimeoutCert(_Checked):
    """2f+1 (by weight) timeouts for ``view``; ``high_qc`` is the highest QC among them."""

    view: int = field(U64)
    high_qc: QuorumCert = field(OneOf(QuorumCert))
    signers: tuple[int, ...] = field(Signers)
    high_qc_views: tuple[int, ...] = field(ListOf(U64, limits.MAX_VALIDATORS))
    signatures: tuple[bytes, ...] = field(Signatures)

    def __wire_check__(self) -> None:
        _check_signers(self.signers, len(self.signatures), "TimeoutCert")
        if len(self.high_qc_views) != len(self.signers):
            raise OutOfRange("TimeoutCert: high_qc_views and signers differ in length")
        if self.high_qc.view >= self.view:
            raise OutOfRange(f"TimeoutCert: high QC view {self.high_qc.view} ≥ view {self.view}")
        if self.high_qc_views and max(self.high_qc_views) != self.high_qc.view:
            raise OutOfRange("TimeoutCert: high_qc is not the highest QC its signers reported")


@wire(36)
@dataclass(frozen=True, slots=True)
class VrfTicket(_Checked):
    """Validator ``validator``'s ECVRF proof for ``epoch``; its output ranks the sequencers."""

    epoch: int = field(U64)
    validator: int = field(U16)
    proof: bytes = field(VrfProof)


def ticket_alpha(chain_id: bytes, epoch: int, seed: bytes) -> bytes:
    """The VRF input of a ticket: domain-separated, bound to the chain, the epoch and its seed."""
    assert len(chain_id) == CHAIN_ID_BYTES and len(seed) == 32
    return signing_bytes(DOMAIN_TICKET, chain_id, cbor2.dumps([epoch, seed], canonical=True))


@wire(37)
@dataclass(frozen=True, slots=True, weakref_slot=True)
class Block(_Checked):
    _CACHE_ENCODING: ClassVar[bool] = True

    height: int = field(U64)
    view: int = field(U64)
    epoch: int = field(U64)
    parent_hash: bytes = field(Hash)
    justify: QuorumCert = field(OneOf(QuorumCert))
    """The QC of the parent block."""
    proposer: int = field(U16)
    timestamp_ms: int = field(U64)
    """Proposer's clock, bounded by the validators' rule; the only time the ledger ever sees."""
    state_height: int = field(U64)
    """The height whose ledger state ``state_root`` commits to (0: genesis, nothing applied)."""
    state_root: bytes = field(Hash)
    """Ledger state root after executing block ``state_height``: the last block the proposer
    had applied. Pipelined execution makes this lag the block by two in steady state."""
    txs: tuple[SignedTx, ...] = field(ListOf(OneOf(SignedTx), limits.MAX_BLOCK_TXS))
    tickets: tuple[VrfTicket, ...] = field(ListOf(OneOf(VrfTicket), limits.MAX_BLOCK_TICKETS))

    def __wire_check__(self) -> None:
        if self.justify.block_hash != self.parent_hash:
            raise OutOfRange("Block: justify QC does not certify the parent")
        if self.justify.height + 1 != self.height:
            raise OutOfRange(f"Block: height {self.height} ≠ parent height {self.justify.height}+1")
        if self.justify.view >= self.view:
            raise OutOfRange(f"Block: justify view {self.justify.view} ≥ view {self.view}")
        if self.state_height >= self.height:
            raise OutOfRange(f"Block: state height {self.state_height} ≥ height {self.height}")

    def block_hash(self, chain_id: bytes) -> bytes:
        return hash_object(DOMAIN_BLOCK, chain_id, self)


@wire(38)
@dataclass(frozen=True, slots=True)
class Proposal(_Checked):
    """A block signed by its proposer, with the TC that let it lead if the last view timed out."""

    block: Block = field(OneOf(Block))
    last_tc: TimeoutCert | None = field(Optional(OneOf(TimeoutCert)))
    signature: bytes = field(Signature)


def decode_message(
    data: bytes, *classes: type[Any], max_bytes: int = limits.MAX_MESSAGE_BYTES
) -> Any:
    """Strictly decode a consensus message of one of ``classes``."""
    return decode(data, *classes, max_bytes=max_bytes)
