"""Canonical CBOR codec: every wire type round-trips, and every malformed input is refused with
its specific error class."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lockstep.consensus import actions, codec, genesis, limits, messages
from lockstep.consensus.actions import (
    Batch,
    CancelAll,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    SignedTx,
    TimeInForce,
)
from lockstep.consensus.codec import (
    MalformedCbor,
    MissingField,
    NonCanonical,
    OutOfRange,
    TooLarge,
    UnknownField,
    UnknownKind,
    WrongType,
    decode,
)

from .strategies import for_struct

MODULES = (actions, messages, genesis)
WIRE_TYPES = sorted(
    {
        obj
        for m in MODULES
        for obj in vars(m).values()
        if isinstance(obj, type)
        and issubclass(obj, codec.Struct)
        and hasattr(obj, "WIRE_TAG")
        and obj.__module__ == m.__name__
    }
    - {genesis.Genesis},  # cross-field rules: covered by test_genesis.py
    key=lambda c: c.WIRE_TAG,
)
BIG = 1 << 20


def test_every_wire_type_is_covered() -> None:
    names = {c.__name__ for c in WIRE_TYPES}
    for required in (
        "Order", "Cancel", "Batch", "OraclePrice", "Transfer", "Withdraw", "SignedTx", "Block",
        "Proposal", "Vote", "Timeout", "QuorumCert", "TimeoutCert", "VrfTicket",
    ):  # fmt: skip
        assert required in names


def test_tags_are_unique() -> None:
    tags = [t for t, _ in codec.tags_in_use()]
    assert len(tags) == len(set(tags))


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(cls: type[codec.Struct], data: st.DataObject) -> None:
    obj = data.draw(for_struct(cls))
    raw = obj.encode()
    assert decode(raw, cls, max_bytes=BIG) == obj
    assert cbor2.dumps(cbor2.loads(raw), canonical=True) == raw  # it is canonical CBOR
    assert decode(raw, cls, max_bytes=BIG).encode() == raw


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_structural_rejections(cls: type[codec.Struct], data: st.DataObject) -> None:
    obj = data.draw(for_struct(cls))
    model = obj.to_obj()
    extra = cbor2.dumps([*model, 0], canonical=True)
    with pytest.raises(UnknownField):
        decode(extra, cls, max_bytes=BIG)
    short = cbor2.dumps(model[:-1], canonical=True)
    with pytest.raises(MissingField):
        decode(short, cls, max_bytes=BIG)
    wrong_tag = cbor2.dumps([model[0] + 1000, *model[1:]], canonical=True)
    with pytest.raises(UnknownKind):
        decode(wrong_tag, cls, max_bytes=BIG)
    raw = obj.encode()
    with pytest.raises(NonCanonical):
        decode(raw + b"\x00", cls, max_bytes=BIG)
    with pytest.raises(TooLarge):
        decode(raw, cls, max_bytes=len(raw) - 1)
    # Any field replaced by a float, a text string or a map has the wrong type.
    i = data.draw(st.integers(1, len(model) - 1))
    is_text = isinstance(cls._WIRE_FIELDS[i - 1][1], codec.Text)
    for bad in (1.5, {"a": 1}, b"x" if is_text else "x"):
        mutated = [*model[:i], bad, *model[i + 1 :]]
        with pytest.raises((WrongType, UnknownKind)):
            decode(cbor2.dumps(mutated, canonical=True), cls, max_bytes=BIG)


def _order() -> Order:
    place = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 600_000, 5, 7)
    return Order(b"\x01" * 32, 42, 100, place)


def _signed() -> SignedTx:
    return SignedTx(_order(), b"\x02" * 64)


def test_error_names_the_field_path() -> None:
    model = _signed().to_obj()
    model[1][4][6] = 1.5  # PlaceOrder.price
    with pytest.raises(WrongType) as e:
        actions.decode_tx(cbor2.dumps(model))
    assert (
        str(e.value) == "<SignedTx>.body<Order>.place<PlaceOrder>.price: expected uint64, got float"
    )


@pytest.mark.parametrize(
    "replace, error",
    [
        (-1, OutOfRange),  # negative where uint64
        (2**64, OutOfRange),  # encoded as a bignum tag, decoded as int, out of range
        (True, WrongType),  # bool is not an integer
        (1.0, WrongType),
        (b"\x00", WrongType),
        (None, WrongType),
    ],
)
def test_integer_field_rejections(replace: Any, error: type[Exception]) -> None:
    model = _signed().to_obj()
    model[1][4][7] = replace  # PlaceOrder.size
    with pytest.raises(error):
        actions.decode_tx(cbor2.dumps(model, canonical=True))


def test_enum_out_of_range() -> None:
    model = _signed().to_obj()
    model[1][4][2] = 7  # Side
    with pytest.raises(OutOfRange, match="not a valid Side"):
        actions.decode_tx(cbor2.dumps(model, canonical=True))


@pytest.mark.parametrize(
    "float_bytes", [b"\xf9\x3c\x00", b"\xfa\x3f\x80\x00\x00", b"\xfb" + b"\x3f\xf0" + b"\x00" * 6]
)
def test_floats_of_every_width_rejected(float_bytes: bytes) -> None:
    raw = _signed().encode()
    # Replace the uint "size" (5, one byte 0x05) of the PlaceOrder with a float of value 1.0.
    model = _signed().to_obj()
    model[1][4][7] = 123456789  # a unique marker, encoded as 0x1a 07 5b cd 15
    marked = cbor2.dumps(model, canonical=True)
    assert marked.count(b"\x1a\x07\x5b\xcd\x15") == 1
    bad = marked.replace(b"\x1a\x07\x5b\xcd\x15", float_bytes)
    assert bad != raw
    with pytest.raises(WrongType, match="got float"):
        actions.decode_tx(bad)


def test_non_shortest_integer_is_non_canonical() -> None:
    raw = _signed().encode()
    # nonce 42 is 0x18 0x2a; the same value as a 2-byte integer is 0x19 0x00 0x2a.
    assert raw.count(b"\x18\x2a") == 1
    bad = raw.replace(b"\x18\x2a", b"\x19\x00\x2a")
    with pytest.raises(NonCanonical):
        actions.decode_tx(bad)


def test_small_bignum_is_non_canonical() -> None:
    model = _signed().to_obj()
    model[1][2] = cbor2.CBORTag(2, b"\x2a")  # nonce 42 as a bignum
    with pytest.raises(NonCanonical):
        actions.decode_tx(cbor2.dumps(model))


def test_indefinite_length_rejected() -> None:
    raw = _signed().encode()
    assert raw[0] == 0x83
    with pytest.raises(MalformedCbor, match="indefinite"):
        actions.decode_tx(b"\x9f" + raw[1:] + b"\xff")


def test_garbage_rejected() -> None:
    with pytest.raises(MalformedCbor):
        actions.decode_tx(b"\x83\x14")
    with pytest.raises(MalformedCbor):
        actions.decode_tx(b"")
    with pytest.raises(WrongType):
        actions.decode_tx(cbor2.dumps({"a": 1}))


def test_duplicate_map_keys_rejected() -> None:
    with pytest.raises(MalformedCbor):
        codec.loads_strict(b"\xa2\x61a\x01\x61a\x02", 100)


def test_message_size_limit_checked_before_decoding() -> None:
    with pytest.raises(TooLarge, match="exceeds limit"):
        actions.decode_tx(b"\x00" * (limits.MAX_TX_BYTES + 1))


def test_batch_list_limit() -> None:
    legs = tuple(CancelAll(0) for _ in range(limits.MAX_BATCH_ACTIONS))
    ok = Batch(b"\x01" * 32, 1, 10, legs)
    model = SignedTx(ok, b"\x00" * 64).to_obj()
    assert actions.decode_tx(cbor2.dumps(model, canonical=True)).body == ok
    model[1][4].append(CancelAll(0).to_obj())
    with pytest.raises(TooLarge, match=f"limit {limits.MAX_BATCH_ACTIONS}"):
        actions.decode_tx(cbor2.dumps(model, canonical=True))
    model[1][4] = []
    with pytest.raises(OutOfRange, match="at least 1"):
        actions.decode_tx(cbor2.dumps(model, canonical=True))
    with pytest.raises(TooLarge):
        Batch(b"\x01" * 32, 1, 10, (*legs, CancelAll(0)))


def test_constructor_validates() -> None:
    with pytest.raises(OutOfRange):
        PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, -1, 5, 7)
    with pytest.raises(WrongType):
        PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 1.0, 5, 7)  # type: ignore[arg-type]
    with pytest.raises(OutOfRange):
        Order(b"\x01" * 31, 1, 1, _order().place)


def test_certificate_structure_rules() -> None:
    data = messages.VoteData(3, 2, b"\x00" * 32)
    with pytest.raises(OutOfRange, match="strictly increasing"):
        messages.QuorumCert(data, (2, 1), (b"\x00" * 64, b"\x00" * 64))
    with pytest.raises(OutOfRange, match="strictly increasing"):
        messages.QuorumCert(data, (1, 1), (b"\x00" * 64, b"\x00" * 64))
    with pytest.raises(OutOfRange, match="signatures"):
        messages.QuorumCert(data, (1,), ())
    qc = messages.QuorumCert(data, (1,), (b"\x00" * 64,))
    with pytest.raises(OutOfRange, match="high QC view"):
        messages.Timeout(3, qc, 0, b"\x00" * 64)
    # The same rules hold when the bytes come from a peer.
    model = qc.to_obj()
    model[2] = [1, 1]
    model[3] = [b"\x00" * 64] * 2
    with pytest.raises(OutOfRange):
        decode(cbor2.dumps(model, canonical=True), messages.QuorumCert, max_bytes=BIG)


def test_block_must_extend_its_justify() -> None:
    qc = messages.QuorumCert(messages.VoteData(1, 1, b"\x01" * 32), (0,), (b"\x00" * 64,))
    kwargs: dict[str, Any] = dict(
        height=2, view=2, epoch=0, parent_hash=b"\x01" * 32, justify=qc, proposer=0,
        timestamp_ms=0, state_height=0, state_root=b"\x00" * 32, txs=(), tickets=(),
    )  # fmt: skip
    messages.Block(**kwargs)
    with pytest.raises(OutOfRange, match="parent"):
        messages.Block(**{**kwargs, "parent_hash": b"\x02" * 32})
    with pytest.raises(OutOfRange, match="height"):
        messages.Block(**{**kwargs, "height": 3})
    with pytest.raises(OutOfRange, match="view"):
        messages.Block(**{**kwargs, "view": 1})


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_fast_path_accepts_every_valid_object(cls: type[codec.Struct], data: st.DataObject) -> None:
    """The generated decoder takes canonical input on its own, and agrees on the size."""
    from lockstep.consensus.codec_fast import decoder_for

    obj = data.draw(for_struct(cls))
    raw = obj.encode()
    decoded, size = decoder_for(cls)(cbor2.loads(raw))
    assert decoded == obj and size == len(raw)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mutated_bytes_decode_only_to_their_canonical_object(
    cls: type[codec.Struct], data: st.DataObject
) -> None:
    """Flip, insert or delete bytes: decoding either fails with a CodecError or yields an object
    whose canonical encoding is exactly the input (no second encoding of any object exists)."""
    raw = bytearray(data.draw(for_struct(cls)).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            raw.insert(i, data.draw(st.integers(0, 255)))
        elif len(raw) > 1:
            del raw[i]
    try:
        obj = decode(bytes(raw), cls, max_bytes=BIG)
    except codec.CodecError:
        return
    assert obj.encode() == bytes(raw)


def test_the_encoding_cache_never_keeps_a_block_alive() -> None:
    """Entries are weak: a block the node has let go of (and its transactions) is freed,
    its bytes with it."""
    import weakref

    from lockstep.consensus.schema import _ENCODINGS

    qc = messages.QuorumCert(messages.VoteData(1, 1, b"\x01" * 32), (0,), (b"\x00" * 64,))
    block = messages.Block(2, 3, 0, b"\x01" * 32, qc, 0, 5, 0, b"\x00" * 32, (_signed(),), ())
    raw = block.encode()
    key, ref = id(block), weakref.ref(block)
    assert _ENCODINGS[key][1] == raw and block.encode() is raw
    del block
    assert ref() is None and key not in _ENCODINGS


def test_block_encoding_cache_and_proposal_slice() -> None:
    """A proposal's block is a slice of the proposal's bytes; the cache returns exactly the
    canonical encoding, with or without a timeout certificate."""
    from lockstep.consensus.schema import _ENCODINGS
    from lockstep.node.inbound import _remember_block_bytes

    qc = messages.QuorumCert(messages.VoteData(1, 1, b"\x01" * 32), (0,), (b"\x00" * 64,))
    tc = messages.TimeoutCert(2, qc, (0, 1), (1, 1), (b"\x03" * 64, b"\x04" * 64))
    block = messages.Block(2, 3, 0, b"\x01" * 32, qc, 0, 5, 0, b"\x00" * 32, (_signed(),), ())
    for last_tc in (None, tc):
        raw = messages.Proposal(block, last_tc, b"\x02" * 64).encode()
        decoded = decode(raw, messages.Proposal, max_bytes=BIG)
        _remember_block_bytes(decoded, raw)
        assert _ENCODINGS[id(decoded.block)][1] == block.encode() == decoded.block.encode()


@settings(max_examples=15, deadline=None)
@given(data=st.data(), n=st.sampled_from([0, 1, 23, 24, 32]))
def test_sync_responses_spliced_from_stored_encodings(data: st.DataObject, n: int) -> None:
    """A node answers sync from the encodings it stored; the splice is byte-identical to
    encoding the response (array heads on both sides of 24 items)."""
    from lockstep.consensus import sync

    block = data.draw(for_struct(messages.Block))
    qc = data.draw(for_struct(messages.QuorumCert))
    h = b"\x07" * 32
    assert (
        sync.block_response_bytes(h, [block.encode()] * n)
        == sync.BlockResponse(h, (block,) * n).encode()
    )
    pairs = tuple(sync.CommittedBlock(block, qc) for _ in range(n))
    assert (
        sync.committed_response_bytes([(block.encode(), qc.encode())] * n)
        == sync.CommittedResponse(pairs).encode()
    )


@settings(max_examples=15, deadline=None)
@given(data=st.data(), n=st.sampled_from([0, 1, 23, 24, 32]))
def test_each_block_of_a_sync_response_is_a_slice_of_its_bytes(
    data: st.DataObject, n: int
) -> None:
    """The receiving side of the splice: the slice found for each block is its canonical
    encoding (what its hash and the block store use), for blocks of different sizes."""
    from lockstep.consensus import sync

    drawn = [data.draw(for_struct(messages.Block)) for _ in range(3)]
    blocks = [drawn[i % 3] for i in range(n)]
    qc = data.draw(for_struct(messages.QuorumCert))
    for msg in (
        sync.BlockResponse(b"\x07" * 32, tuple(blocks)),
        sync.CommittedResponse(tuple(sync.CommittedBlock(b, qc) for b in blocks)),
    ):
        raw = msg.encode()
        decoded = decode(raw, type(msg), max_bytes=BIG)
        assert sync.sync_block_bytes(decoded, raw) == [b.encode() for b in blocks]
