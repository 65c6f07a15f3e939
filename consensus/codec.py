"""Canonical CBOR encoding of every signed or hashed protocol object.

Theory of operation: a wire type (declared with the field kinds and ``@wire`` of ``schema``,
re-exported here) is encoded as the CBOR array ``[tag, field_1, ..., field_n]`` in declaration
order, serialised canonically (RFC 8949 §4.2: shortest integer and length forms, definite
lengths). Nested objects are arrays of the same shape.

Decoding is strict, because every byte comes from a peer or a client we do not trust: the input
must be at most the caller's byte limit, decode as CBOR without indefinite lengths, match the
schema exactly (no unknown or missing fields, exact types, integers in range, no floats, no
tags, lists and byte strings within their limits), and re-encode to the very same bytes. Each
failure raises a specific :class:`CodecError` subclass whose message names the field path.

This module is the byte-level edge, :func:`encode` and :func:`decode`. The schema and its
generic checks (``schema``) and the generated fast decoders (``codec_fast``) sit below it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cbor2

from .codec_fast import decoder_for
from .schema import (
    ENCODING_CACHE_BYTES,
    I64,
    U16,
    U32,
    U64,
    Bool,
    Bytes,
    CodecError,
    Enum,
    FieldKind,
    IntKind,
    ListOf,
    MalformedCbor,
    MissingField,
    Nested,
    NonCanonical,
    OneOf,
    Optional,
    OutOfRange,
    Struct,
    Text,
    TooLarge,
    UnknownField,
    UnknownKind,
    VarBytes,
    WrongType,
    field,
    from_obj,
    remember_encoding,
    tags_in_use,
    to_obj,
    validate_fields,
    wire,
)

__all__ = [
    "ENCODING_CACHE_BYTES",
    "I64",
    "U16",
    "U32",
    "U64",
    "Bool",
    "Bytes",
    "CodecError",
    "Enum",
    "FieldKind",
    "IntKind",
    "ListOf",
    "MalformedCbor",
    "MissingField",
    "Nested",
    "NonCanonical",
    "OneOf",
    "Optional",
    "OutOfRange",
    "Struct",
    "Text",
    "TooLarge",
    "UnknownField",
    "UnknownKind",
    "VarBytes",
    "WrongType",
    "check_canonical",
    "decode",
    "encode",
    "field",
    "from_obj",
    "loads_strict",
    "remember_encoding",
    "tags_in_use",
    "to_obj",
    "validate_fields",
    "wire",
]

T = TypeVar("T", bound=Struct)


def encode(obj: Struct) -> bytes:
    """Canonical CBOR bytes of a wire object."""
    return obj.encode()


def loads_strict(data: bytes, max_bytes: int) -> Any:
    """Decode CBOR bytes, refusing oversize input and indefinite lengths or duplicate keys."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > max_bytes:
        raise TooLarge(f"message of {len(data)} bytes exceeds limit {max_bytes}")
    try:
        return cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise MalformedCbor(f"malformed CBOR: {e}") from None


def check_canonical(value: Any, data: bytes) -> None:
    """Raise :class:`NonCanonical` unless ``data`` is the canonical encoding of ``value``."""
    if cbor2.dumps(value, canonical=True) != data:
        raise NonCanonical(
            "not the canonical CBOR encoding (RFC 8949 §4.2: shortest forms, no trailing bytes)"
        )


def decode(data: bytes, *classes: type[T], max_bytes: int) -> T:
    """Decode canonical CBOR bytes into one of ``classes``, strictly. See the module docstring.

    The generated per-type decoder (``codec_fast``) accepts well-formed canonical input; on
    anything else the generic decoder below runs and raises the specific error.
    """
    value = loads_strict(data, max_bytes)
    if type(value) is list and value:
        tag = value[0]
        for cls in classes:
            if tag == cls.WIRE_TAG:
                try:
                    obj, size = decoder_for(cls)(value)
                except Exception:  # anything odd (Slow or not): the generic decoder decides
                    break
                if size == len(data):
                    return obj  # type: ignore[return-value]
                break
    obj = from_obj(value, *classes)
    check_canonical(value, data)
    raise AssertionError(f"codec fast path refused canonical {type(obj).__name__} bytes")

