"""Hypothesis strategies for wire types, derived from their schemas.

A strategy for any field kind is built from the kind itself, so a new wire type is covered by
the round-trip tests the moment it is declared. Types whose fields are tied together by
cross-field rules (certificates, blocks) get hand-written strategies that respect the rules.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from lockstep.consensus import codec
from lockstep.consensus.actions import SignedTx
from lockstep.consensus.messages import (
    Block,
    Proposal,
    QuorumCert,
    Timeout,
    TimeoutCert,
    VoteData,
)

SMALL_LIST = 4
"""Lists in generated objects stay short: size limits are tested separately."""


def for_kind(kind: codec.FieldKind) -> st.SearchStrategy[Any]:
    if isinstance(kind, codec.IntKind):
        return st.integers(kind.lo, kind.hi)
    if kind is codec.Bool:
        return st.booleans()
    if isinstance(kind, codec.Bytes):
        return st.binary(min_size=kind.size, max_size=kind.size)
    if isinstance(kind, codec.VarBytes):
        return st.binary(max_size=min(kind.max_len, 64))
    if isinstance(kind, codec.Text):
        alphabet = st.characters(min_codepoint=32, max_codepoint=126)
        return st.text(alphabet, max_size=min(kind.max_len, 24))
    if isinstance(kind, codec.Enum):
        return st.sampled_from(list(kind.enum_cls))
    if isinstance(kind, codec.Optional):
        return st.none() | for_kind(kind.inner)
    if isinstance(kind, codec.ListOf):
        hi = max(kind.min_len, min(kind.max_len, SMALL_LIST))
        return st.lists(for_kind(kind.item), min_size=kind.min_len, max_size=hi).map(tuple)
    if isinstance(kind, codec.OneOf):
        return st.one_of([for_struct(c) for c in kind.classes])
    raise AssertionError(f"no strategy for {kind!r}")


def _generic(cls: type[codec.Struct]) -> st.SearchStrategy[Any]:
    return st.builds(cls, **{name: for_kind(kind) for name, kind in cls._WIRE_FIELDS})


def vote_data() -> st.SearchStrategy[VoteData]:
    return _generic(VoteData)


def _signers(max_n: int = 7) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(0, 300), max_size=max_n, unique=True).map(
        lambda xs: tuple(sorted(xs))
    )


def _sigs(n: int) -> st.SearchStrategy[tuple[bytes, ...]]:
    sig = st.binary(min_size=64, max_size=64)
    return st.lists(sig, min_size=n, max_size=n).map(tuple)


@st.composite
def quorum_certs(draw: st.DrawFn, below_view: int | None = None) -> QuorumCert:
    data = draw(vote_data())
    if below_view is not None:
        data = VoteData(draw(st.integers(0, below_view - 1)), data.height, data.block_hash)
    signers = draw(_signers())
    return QuorumCert(data, signers, draw(_sigs(len(signers))))


@st.composite
def timeouts(draw: st.DrawFn) -> Timeout:
    view = draw(st.integers(1, 2**64 - 1))
    return Timeout(
        view,
        draw(quorum_certs(below_view=view)),
        draw(st.integers(0, 2**16 - 1)),
        draw(st.binary(min_size=64, max_size=64)),
    )


@st.composite
def timeout_certs(draw: st.DrawFn) -> TimeoutCert:
    view = draw(st.integers(1, 2**64 - 1))
    high = draw(quorum_certs(below_view=view))
    signers = draw(_signers())
    views = [draw(st.integers(0, high.view)) for _ in signers]
    if views:
        views[draw(st.integers(0, len(views) - 1))] = high.view
    return TimeoutCert(view, high, signers, tuple(views), draw(_sigs(len(signers))))


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    justify = draw(quorum_certs())
    if justify.height == 2**64 - 1 or justify.view == 2**64 - 1:
        justify = QuorumCert(VoteData(0, 0, justify.block_hash), (), ())
    txs = draw(st.lists(for_struct(SignedTx), max_size=3).map(tuple))
    tickets = draw(for_kind(Block._WIRE_FIELDS[-1][1]))
    return Block(
        height=justify.height + 1,
        view=draw(st.integers(justify.view + 1, 2**64 - 1)),
        epoch=draw(st.integers(0, 2**64 - 1)),
        parent_hash=justify.block_hash,
        justify=justify,
        proposer=draw(st.integers(0, 2**16 - 1)),
        timestamp_ms=draw(st.integers(0, 2**64 - 1)),
        state_height=draw(st.integers(0, justify.height)),
        state_root=draw(st.binary(min_size=32, max_size=32)),
        txs=txs,
        tickets=tickets,
    )


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    return Proposal(
        draw(blocks()), draw(st.none() | timeout_certs()), draw(st.binary(min_size=64, max_size=64))
    )


_SPECIAL: dict[type[codec.Struct], Any] = {
    QuorumCert: quorum_certs,
    Timeout: timeouts,
    TimeoutCert: timeout_certs,
    Block: blocks,
    Proposal: proposals,
}


def for_struct(cls: type[codec.Struct]) -> st.SearchStrategy[Any]:
    special = _SPECIAL.get(cls)
    return special() if special else st.deferred(lambda: _generic(cls))
