"""The fast path of :func:`codec.decode`: one generated Python function per wire type.

Why: decoding sits on the hot path of every order a node admits, next to a ~55 µs Ed25519
verification. The generic decoder walks field-kind objects and re-encodes the whole message to
prove it canonical; that costs as much as a fifth of a verification. Here each wire type gets a
straight-line function (built once from its schema with ``exec``) that checks every field inline
and adds up the *canonical encoded size* of what it accepted.

Why the size proves canonical form: inside the accepted subset (unsigned/signed integers, byte
and ASCII text strings, booleans, null, definite arrays; no floats, no maps, no tags), every
value has exactly one shortest encoding, and every other encoding of it is strictly longer
(a longer length header, or a bignum tag around an integer). So if the canonical sizes of the
decoded items add up to exactly the length of the input, no item used a longer form and there
are no trailing bytes: the input *is* the canonical encoding. Anything the fast path does not
accept — any error — is handed to the generic decoder, which raises the precise, path-naming
error; the fast path never decides a rejection on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .schema import (
    Bytes,
    Enum,
    FieldKind,
    IntKind,
    ListOf,
    OneOf,
    Optional,
    Struct,
    Text,
    VarBytes,
    _Bool,
)


class Slow(Exception):
    """The fast path declines; the generic decoder decides (and names the error)."""


def head_size(n: int) -> int:
    """Bytes of a canonical CBOR head whose argument is ``n`` ≥ 0."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def _int_size_expr(var: str, signed: bool) -> str:
    if signed:
        var = f"(~{var} if {var} < 0 else {var})"
    return (
        f"(1 if {var} < 24 else 2 if {var} < 256 else 3 if {var} < 65536 "
        f"else 5 if {var} < 4294967296 else 9)"
    )


Decoder = Callable[[Any], tuple[Struct, int]]


class _Compiler:
    """Emits the source of one decoder function per struct class."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "Slow": Slow,
            "_new": object.__new__,
            "_set": object.__setattr__,
            "_list": list,
            "_int": int,
            "_bytes": bytes,
            "_str": str,
            "_tuple": tuple,
            "_len": len,
        }
        self.counter = 0

    def const(self, value: Any) -> str:
        self.counter += 1
        name = f"_k{self.counter}"
        self.ns[name] = value
        return name

    def emit(self, kind: FieldKind, x: str, y: str, ind: str) -> list[str]:
        """Lines that check ``x``, bind the Python value to ``y`` and add its size to ``n``."""
        if isinstance(kind, IntKind):
            signed = kind.lo < 0
            return [
                f"{ind}if type({x}) is not _int or {x} < {kind.lo} or {x} > {kind.hi}: raise Slow",
                f"{ind}n += {_int_size_expr(x, signed)}",
                f"{ind}{y} = {x}",
            ]
        if isinstance(kind, _Bool):
            return [
                f"{ind}if {x} is not True and {x} is not False: raise Slow",
                f"{ind}n += 1",
                f"{ind}{y} = {x}",
            ]
        if isinstance(kind, Bytes):
            return [
                f"{ind}if type({x}) is not _bytes or _len({x}) != {kind.size}: raise Slow",
                f"{ind}n += {head_size(kind.size) + kind.size}",
                f"{ind}{y} = {x}",
            ]
        if isinstance(kind, VarBytes):
            hs = self.const(head_size)
            return [
                f"{ind}if type({x}) is not _bytes or _len({x}) > {kind.max_len}: raise Slow",
                f"{ind}n += {hs}(_len({x})) + _len({x})",
                f"{ind}{y} = {x}",
            ]
        if isinstance(kind, Text):
            hs = self.const(head_size)
            return [
                f"{ind}if (type({x}) is not _str or _len({x}) > {kind.max_len}"
                f" or not ({x}.isascii() and {x}.isprintable())): raise Slow",
                f"{ind}n += {hs}(_len({x})) + _len({x})",
                f"{ind}{y} = {x}",
            ]
        if isinstance(kind, Enum):
            assert all(0 <= int(m) < 24 for m in kind.enum_cls), "enum values must be < 24"
            table = self.const({int(m): m for m in kind.enum_cls})
            return [
                f"{ind}{y} = {table}.get({x}) if type({x}) is _int else None",
                f"{ind}if {y} is None: raise Slow",
                f"{ind}n += 1",
            ]
        if isinstance(kind, Optional):
            inner = self.emit(kind.inner, x, y, ind + "    ")
            return [f"{ind}if {x} is None:", f"{ind}    n += 1", f"{ind}    {y} = None",
                    f"{ind}else:", *inner]  # fmt: skip
        if isinstance(kind, OneOf):
            table: dict[int, Decoder] = {}
            table.update({c.WIRE_TAG: _Lazy(table, c) for c in kind.classes})
            table = self.const(table)
            return [
                f"{ind}if type({x}) is not _list or not {x}: raise Slow",
                f"{ind}_d = {table}.get({x}[0]) if type({x}[0]) is _int else None",
                f"{ind}if _d is None: raise Slow",
                f"{ind}{y}, _s = _d({x})",
                f"{ind}n += _s",
            ]
        if isinstance(kind, ListOf):
            item = self.item_function(kind.item)
            hs = self.const(head_size)
            return [
                f"{ind}if type({x}) is not _list: raise Slow",
                f"{ind}_l = _len({x})",
                f"{ind}if _l > {kind.max_len} or _l < {kind.min_len}: raise Slow",
                f"{ind}n += {hs}(_l)",
                f"{ind}_out = []",
                f"{ind}for _it in {x}:",
                f"{ind}    _v, _s = {item}(_it)",
                f"{ind}    n += _s",
                f"{ind}    _out.append(_v)",
                f"{ind}{y} = _tuple(_out)",
            ]
        raise AssertionError(f"no fast path for {kind!r}")

    def item_function(self, kind: FieldKind) -> str:
        """A function ``(x) -> (value, size)`` for list items."""
        self.counter += 1
        name = f"_item{self.counter}"
        body = self.emit(kind, "x", "y", "    ")
        src = "\n".join([f"def {name}(x):", "    n = 0", *body, "    return y, n"])
        exec(compile(src, f"<codec item {name}>", "exec"), self.ns)
        return name

    def struct_function(self, cls: type[Struct]) -> Decoder:
        fields = cls._WIRE_FIELDS
        n_items = len(fields) + 1
        cls_name = self.const(cls)
        lines = [
            "def decode_struct(v):",
            f"    if type(v) is not _list or _len(v) != {n_items} or v[0] != {cls.WIRE_TAG}:",
            "        raise Slow",
            f"    n = {head_size(n_items) + head_size(cls.WIRE_TAG)}",
            f"    obj = _new({cls_name})",
        ]
        for i, (name, kind) in enumerate(fields, 1):
            lines.append(f"    x = v[{i}]")
            lines.extend(self.emit(kind, "x", "y", "    "))
            lines.append(f"    _set(obj, {name!r}, y)")
        if hasattr(cls, "__wire_check__"):
            lines.append("    obj.__wire_check__()")
        lines.append("    return obj, n")
        src = "\n".join(lines)
        ns = dict(self.ns)
        exec(compile(src, f"<codec {cls.__name__}>", "exec"), ns)
        self.ns.update({k: v for k, v in ns.items() if k.startswith("_")})
        return ns["decode_struct"]  # type: ignore[no-any-return]


_COMPILER = _Compiler()
_DECODERS: dict[type[Struct], Decoder] = {}


def decoder_for(cls: type[Struct]) -> Decoder:
    """The generated decoder of ``cls`` (built on first use, then cached)."""
    dec = _DECODERS.get(cls)
    if dec is None:
        dec = _DECODERS[cls] = _COMPILER.struct_function(cls)
    return dec


class _Lazy:
    """A tag's decoder in a ``OneOf`` table until first use, when it puts the real one in its
    place: nested types are compiled when first met (so recursive schemas cannot loop), and
    after that a dispatch is one dict lookup and one call."""

    __slots__ = ("cls", "table")

    def __init__(self, table: dict[int, Decoder], cls: type[Struct]) -> None:
        self.table = table
        self.cls = cls

    def __call__(self, value: Any) -> tuple[Struct, int]:
        dec = self.table[self.cls.WIRE_TAG] = decoder_for(self.cls)
        return dec(value)
