"""The wire schema: field kinds, the :class:`Struct` base and ``@wire`` registration.

Theory of operation: each wire type is a frozen dataclass registered with :func:`wire`, which
gives it a unique small integer *type tag*. Each field declares its wire kind (``U64``,
``Bytes(32)``, ``ListOf(...)``, ...) through :func:`field`, so the schema *is* the class
definition. A kind converts a field to the CBOR data model (``to``) and checks a decoded value
strictly (``check``: exact types, integers in range, no floats, lists and strings within their
limits); :func:`from_obj` runs those checks over a whole object, and each failure raises a
specific :class:`CodecError` subclass whose message names the field path.

Why a module of its own: both decoders read these kinds, the generic one (here) and the
generated one (``codec_fast``, compiled from them), and ``codec``, the byte-level edge, uses
both. With the kinds below the two, neither decoder module needs to import the other back.
"""

from __future__ import annotations

import dataclasses
import enum
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import cbor2

# --------------------------------------------------------------------------- errors


class CodecError(ValueError):
    """Bytes from outside failed decoding. Always the sender's fault, never ours.

    ``path`` names the field (``Block.txs[3].body<Order>.place.price``); it is filled in as the
    error propagates out of nested objects, so the happy path never formats a string.
    """

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def prefixed(self, segment: str) -> CodecError:
        joiner = "" if not self.path or self.path[0] in "[<" else "."
        self.path = segment + joiner + self.path
        return self

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class MalformedCbor(CodecError):
    """Not well-formed CBOR, or uses indefinite lengths or duplicate map keys."""


class NonCanonical(CodecError):
    """Well-formed, but not the unique canonical encoding (or has trailing bytes)."""


class TooLarge(CodecError):
    """A message, byte string or list exceeds its protocol limit."""


class WrongType(CodecError):
    """A field holds a value of the wrong CBOR type (e.g. a float where an integer belongs)."""


class OutOfRange(CodecError):
    """An integer field is outside its declared range, or an enum value is undefined."""


class UnknownKind(CodecError):
    """The type tag is not one of the kinds allowed at this position."""


class MissingField(CodecError):
    """The array has fewer elements than the type has fields."""


class UnknownField(CodecError):
    """The array has more elements than the type has fields."""


# --------------------------------------------------------------------------- field kinds


class FieldKind:
    """How one field maps to CBOR. ``check`` validates a decoded value; ``to``/``frm`` convert."""

    name = "?"

    def check(self, value: Any) -> Any:
        """Validate a decoded CBOR value and return the Python value for the dataclass."""
        raise NotImplementedError

    def to(self, value: Any) -> Any:
        """Python value -> CBOR-able value."""
        return value

    def validate(self, value: Any) -> None:
        """Check a value given to a constructor (our own code building an object)."""
        self.check(self.to(value))


def _type_name(value: Any) -> str:
    return type(value).__name__


class IntKind(FieldKind):
    def __init__(self, lo: int, hi: int, name: str) -> None:
        self.lo, self.hi, self.name = lo, hi, name

    def check(self, value: Any) -> int:
        if type(value) is not int:
            raise WrongType(f"expected {self.name}, got {_type_name(value)}")
        if not self.lo <= value <= self.hi:
            raise OutOfRange(f"{value} outside {self.name} range [{self.lo}, {self.hi}]")
        return value


U16 = IntKind(0, 2**16 - 1, "uint16")
U32 = IntKind(0, 2**32 - 1, "uint32")
U64 = IntKind(0, 2**64 - 1, "uint64")
I64 = IntKind(-(2**63), 2**63 - 1, "int64")


class _Bool(FieldKind):
    name = "bool"

    def check(self, value: Any) -> bool:
        if type(value) is not bool:
            raise WrongType(f"expected bool, got {_type_name(value)}")
        return value


Bool = _Bool()


class Bytes(FieldKind):
    """A byte string of exactly ``size`` bytes (keys, signatures, hashes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.name = f"bytes[{size}]"

    def check(self, value: Any) -> bytes:
        if type(value) is not bytes:
            raise WrongType(f"expected {self.name}, got {_type_name(value)}")
        if len(value) != self.size:
            raise OutOfRange(f"expected {self.size} bytes, got {len(value)}")
        return value


class VarBytes(FieldKind):
    """A byte string of at most ``max_len`` bytes."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.name = f"bytes[..{max_len}]"

    def check(self, value: Any) -> bytes:
        if type(value) is not bytes:
            raise WrongType(f"expected {self.name}, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise TooLarge(f"{len(value)} bytes exceeds limit {self.max_len}")
        return value


class Text(FieldKind):
    """A UTF-8 text string of at most ``max_len`` bytes, printable ASCII only.

    ASCII keeps canonical form trivial (no Unicode normalisation questions in hashed objects).
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.name = f"text[..{max_len}]"

    def check(self, value: Any) -> str:
        if type(value) is not str:
            raise WrongType(f"expected {self.name}, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise TooLarge(f"{len(value)} characters exceeds limit {self.max_len}")
        if not (value.isascii() and value.isprintable()):
            raise OutOfRange("text must be printable ASCII")
        return value


class Enum(FieldKind):
    """An ``enum.IntEnum`` encoded as its integer value."""

    def __init__(self, enum_cls: type[enum.IntEnum]) -> None:
        self.enum_cls = enum_cls
        self.name = enum_cls.__name__
        self._by_value = {int(m): m for m in enum_cls}

    def check(self, value: Any) -> enum.IntEnum:
        if type(value) is not int and not isinstance(value, self.enum_cls):
            raise WrongType(f"expected {self.name}, got {_type_name(value)}")
        member = self._by_value.get(int(value))
        if member is None:
            raise OutOfRange(f"{value} is not a valid {self.name}")
        return member

    def to(self, value: Any) -> int:
        return int(value)


class Optional(FieldKind):
    """CBOR null or the inner kind."""

    def __init__(self, inner: FieldKind) -> None:
        self.inner = inner
        self.name = f"optional {inner.name}"

    def check(self, value: Any) -> Any:
        return None if value is None else self.inner.check(value)

    def to(self, value: Any) -> Any:
        return None if value is None else self.inner.to(value)

    def validate(self, value: Any) -> None:
        if value is not None:
            self.inner.validate(value)


class ListOf(FieldKind):
    """A CBOR array of at most ``max_len`` (and at least ``min_len``) items; a tuple in Python."""

    def __init__(self, item: FieldKind, max_len: int, min_len: int = 0) -> None:
        self.item, self.max_len, self.min_len = item, max_len, min_len
        self.name = f"list[{item.name}; {min_len}..{max_len}]"

    def check(self, value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise WrongType(f"expected {self.name}, got {_type_name(value)}")
        n = len(value)
        if n > self.max_len:
            raise TooLarge(f"{n} items exceeds limit {self.max_len}")
        if n < self.min_len:
            raise OutOfRange(f"{n} items, at least {self.min_len} required")
        check = self.item.check
        try:
            return tuple([check(v) for v in value])
        except CodecError as e:
            raise e.prefixed(f"[{_failing_index(check, value)}]") from None

    def to(self, value: Any) -> list[Any]:
        to = self.item.to
        return [to(v) for v in value]

    def validate(self, value: Any) -> None:
        if not isinstance(value, tuple):
            raise WrongType(f"expected a tuple, got {_type_name(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise TooLarge(f"{len(value)} items outside [{self.min_len}, {self.max_len}]")
        for i, v in enumerate(value):
            try:
                self.item.validate(v)
            except CodecError as e:
                raise e.prefixed(f"[{i}]") from None


class OneOf(FieldKind):
    """A nested wire object whose type tag must be one of ``classes``."""

    def __init__(self, *classes: type[Struct]) -> None:
        self.classes = classes
        self.name = " | ".join(c.__name__ for c in classes)
        self._by_tag = {c.WIRE_TAG: c for c in classes}

    def check(self, value: Any) -> Struct:
        return _from_obj(value, self._by_tag)

    def to(self, value: Any) -> list[Any]:
        return value.to_obj()

    def validate(self, value: Any) -> None:
        if type(value) not in self.classes:
            raise WrongType(f"expected {self.name}, got {_type_name(value)}")


def Nested(cls: type[Struct]) -> OneOf:
    """A nested object of exactly one type."""
    return OneOf(cls)


# --------------------------------------------------------------------------- structs


class Struct:
    """Base of every wire type. Subclasses are frozen dataclasses decorated with :func:`wire`."""

    __slots__ = ()

    WIRE_TAG: ClassVar[int]
    _WIRE_FIELDS: ClassVar[tuple[tuple[str, FieldKind], ...]]
    _CACHE_ENCODING: ClassVar[bool] = False
    """Large immutable objects encoded several times (a block: its hash, the proposer's
    signature, the block store) keep their bytes in a small identity cache."""

    def to_obj(self) -> list[Any]:
        """The CBOR data model of this object: ``[tag, fields...]``."""
        out: list[Any] = [self.WIRE_TAG]
        for name, kind in self._WIRE_FIELDS:
            out.append(kind.to(getattr(self, name)))
        return out

    def encode(self) -> bytes:
        """Canonical CBOR bytes of this object (remembered for types that opt in)."""
        if self._CACHE_ENCODING:
            hit = _ENCODINGS.get(id(self))
            if hit is not None and hit[0]() is self:
                return hit[1]
            raw = cbor2.dumps(self.to_obj(), canonical=True)
            remember_encoding(self, raw)
            return raw
        return cbor2.dumps(self.to_obj(), canonical=True)


_REGISTRY: dict[int, type[Struct]] = {}

ENCODING_CACHE_BYTES = 4 * 1024 * 1024
"""Encodings remembered, in bytes at most: a few views' worth of blocks (a block is hashed,
signed and stored within a few views of being built or received)."""
_ENCODINGS: OrderedDict[int, tuple[weakref.ref[Struct], bytes]] = OrderedDict()
_encodings_bytes = 0


def remember_encoding(obj: Struct, raw: bytes) -> None:
    """Remember ``raw`` as the canonical encoding of ``obj`` (the caller guarantees it: e.g. the
    bytes it was just strictly decoded from).

    Keyed by identity, through a weak reference: the entry leaves when the object dies, so the
    cache never keeps a decoded block (and its transactions) alive, and an id reused by a new
    object never finds the old bytes."""
    global _encodings_bytes
    key = id(obj)
    _forget(key)
    _ENCODINGS[key] = (weakref.ref(obj, lambda ref: _forget(key, ref)), raw)
    _encodings_bytes += len(raw)
    while _encodings_bytes > ENCODING_CACHE_BYTES and len(_ENCODINGS) > 1:
        _encodings_bytes -= len(_ENCODINGS.popitem(last=False)[1][1])


def _forget(key: int, ref: weakref.ref[Struct] | None = None) -> None:
    """Drop the entry at ``key`` (only if it is still ``ref``'s, when given)."""
    global _encodings_bytes
    entry = _ENCODINGS.get(key)
    if entry is not None and (ref is None or entry[0] is ref):
        del _ENCODINGS[key]
        _encodings_bytes -= len(entry[1])


S = TypeVar("S", bound=type[Struct])


def wire(tag: int) -> Callable[[S], S]:
    """Register a dataclass as a wire type with a unique type tag.

    The decorator reads each dataclass field's ``metadata["wire"]`` kind, and makes the
    constructor validate every field so our own code can never build an unencodable object.
    """

    def register(cls: S) -> S:
        if tag in _REGISTRY:
            raise AssertionError(f"wire tag {tag} used by {_REGISTRY[tag].__name__} and {cls}")
        if not dataclasses.is_dataclass(cls):
            raise AssertionError(f"{cls.__name__} must be a dataclass")
        layout = []
        for f in dataclasses.fields(cls):
            kind = f.metadata.get("wire")
            if kind is None:
                raise AssertionError(f"{cls.__name__}.{f.name} has no wire kind")
            layout.append((f.name, kind))
        cls.WIRE_TAG = tag
        cls._WIRE_FIELDS = tuple(layout)
        _REGISTRY[tag] = cls
        return cls

    return register


def field(kind: FieldKind, **kwargs: Any) -> Any:
    """Declare a dataclass field with its wire kind: ``price: int = field(U64)``."""
    return dataclasses.field(metadata={"wire": kind}, **kwargs)


def validate_fields(obj: Struct) -> None:
    """Check every field of an object built by our own code (used in ``__post_init__``)."""
    for name, kind in obj._WIRE_FIELDS:
        try:
            kind.validate(getattr(obj, name))
        except CodecError as e:
            raise e.prefixed(f"{type(obj).__name__}.{name}") from None


def _failing_index(check: Callable[[Any], Any], values: list[Any]) -> int:
    """Error path only: which item of a list fails ``check``."""
    for i, v in enumerate(values):
        try:
            check(v)
        except CodecError:
            return i
    return -1


def _from_obj(value: Any, by_tag: dict[int, type[Struct]]) -> Struct:
    if type(value) is not list:
        raise WrongType(f"expected an object array, got {_type_name(value)}")
    if not value:
        raise MissingField("empty array, no type tag")
    tag = value[0]
    cls = by_tag.get(tag) if type(tag) is int else None
    if cls is None:
        allowed = ", ".join(f"{c.__name__}={t}" for t, c in sorted(by_tag.items()))
        raise UnknownKind(f"type tag {tag!r} is not one of {allowed}")
    layout = cls._WIRE_FIELDS
    n_given, n_want = len(value) - 1, len(layout)
    if n_given != n_want:
        if n_given < n_want:
            missing = ", ".join(f for f, _ in layout[n_given:])
            raise MissingField(f"missing field(s) {missing}", f"<{cls.__name__}>")
        raise UnknownField(f"{n_given - n_want} unknown trailing field(s)", f"<{cls.__name__}>")
    obj = object.__new__(cls)
    setattr_ = object.__setattr__
    i = 0
    try:
        for i, (f, kind) in enumerate(layout, 1):
            setattr_(obj, f, kind.check(value[i]))
        post = getattr(cls, "__wire_check__", None)
        if post is not None:
            post(obj)
    except CodecError as e:
        segment = layout[i - 1][0] if i else ""
        raise e.prefixed(f"<{cls.__name__}>{'.' + segment if segment else ''}") from None
    return obj


T = TypeVar("T", bound=Struct)


def to_obj(obj: Struct) -> list[Any]:
    """The CBOR data model of a wire object."""
    return obj.to_obj()


def from_obj(value: Any, *classes: type[T]) -> T:
    """Build a wire object from an already-decoded CBOR data model, every field checked."""
    return _from_obj(value, {c.WIRE_TAG: c for c in classes})  # type: ignore[return-value]


def tags_in_use() -> Sequence[tuple[int, str]]:
    """Every registered (tag, type name), for docs and tests."""
    return sorted((t, c.__name__) for t, c in _REGISTRY.items())

