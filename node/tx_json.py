"""The JSON view of wire objects, shared by the RPC (docs/rpc.md) and the wallet's ``--json``.

Why one function: a transaction shown by ``lockstep wallet place --dry-run --json`` and the same
transaction returned by ``GET /v1/actions/{txid}`` must look the same, so scripts can compare
them. The view is mechanical, read off the wire schema (``Struct._WIRE_FIELDS``): each object
becomes ``{"type": <class name>, <field>: <value>, ...}`` in declaration order; byte strings are
lowercase hex; enums are their member names (``"BUY"``, ``"POST_ONLY"``); integers stay JSON
integers (exact up to 2^64; JavaScript clients must parse them as big integers); lists stay lists.
It is a view for people and scripts, not an encoding: what is signed and submitted is always the
canonical CBOR.
"""

from __future__ import annotations

import enum
from typing import Any

from lockstep.consensus.actions import SignedTx
from lockstep.consensus.codec import Struct


def struct_to_json(obj: Struct) -> dict[str, Any]:
    """``{"type": "Order", "signer": "ab…", "nonce": 7, ...}`` for any wire object."""
    out: dict[str, Any] = {"type": type(obj).__name__}
    for name, _ in obj._WIRE_FIELDS:
        out[name] = _value(getattr(obj, name))
    return out


def _value(value: Any) -> Any:
    if isinstance(value, Struct):
        return struct_to_json(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    assert value is None or isinstance(value, bool | int | str), type(value)
    return value


def tx_to_json(tx: SignedTx, chain_id: bytes) -> dict[str, Any]:
    """A signed transaction with its id and canonical bytes, as the RPC and wallet show it."""
    return {
        "tx_id": tx.tx_id(chain_id).hex(),
        "tx_hex": tx.encode().hex(),
        "tx": struct_to_json(tx),
    }
