"""What every part of the daemon reads and none of them changes.

Theory of operation. The daemon's parts (start-up, consensus driver, admission, committer,
serving, inbound routing) each own their state and take their dependencies explicitly; the
one thing they all need is who this node is on which chain: the genesis, this validator's keys
and index, the validator keys by index, the markets by id, the node's bound logger, the wall
clock. That is :class:`NodeContext`, built once and frozen, so no part can move it under
another. Two small helpers for handing work between tasks live here too, because more than one
part uses each: :func:`drain` (take what a channel holds right now) and :class:`DecodedCache`
(what a net-layer validator decoded, handed to the loop that receives the same payload).
This module imports no other part, so any part may import it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog
import trio
from lockstep.consensus.genesis import Genesis, Market

from .config import NodeConfig
from .keys import ValidatorKeys

log = structlog.get_logger("lockstep.node")

T = TypeVar("T")


def now_ms() -> int:
    """Wall-clock milliseconds: block timestamps are the proposer's clock (bounded by peers)."""
    return time.time_ns() // 1_000_000


class StartupError(Exception):
    """The node's stores cannot be reconciled; the message says what to do."""


@dataclass(frozen=True)
class NodePaths:
    home: Path
    config_file: Path
    genesis_file: Path
    key_file: Path
    data_dir: Path

    @classmethod
    def of(cls, cfg: NodeConfig, config_file: Path) -> NodePaths:
        return cls(
            home=cfg.home_dir(config_file),
            config_file=config_file,
            genesis_file=cfg.resolve(config_file, cfg.node.genesis_file),
            key_file=cfg.resolve(config_file, cfg.node.validator_key_file),
            data_dir=cfg.resolve(config_file, cfg.node.data_dir),
        )


@dataclass(frozen=True)
class NodeContext:
    """This validator on its chain: fixed for the life of the process."""

    genesis: Genesis
    keys: ValidatorKeys
    chain_id: bytes
    index: int
    name: str
    validator_keys: list[bytes]
    index_of: dict[bytes, int]
    market_by_id: dict[int, Market]
    validator_set: frozenset[bytes]
    log: Any
    """The node's logger, bound to its name: every part logs through it."""

    @classmethod
    def of(cls, genesis: Genesis, keys: ValidatorKeys) -> NodeContext:
        """This node's place in ``genesis``; a key outside the validator set cannot start."""
        keys_by_index = [v.public_key for v in genesis.validators]
        if keys.public_key not in keys_by_index:
            raise StartupError(
                f"validator key {keys.public_key.hex()} is not in the genesis validator set "
                f"of chain {genesis.chain_name}"
            )
        index = keys_by_index.index(keys.public_key)
        name = genesis.validators[index].name
        return cls(
            genesis=genesis,
            keys=keys,
            chain_id=genesis.chain_id,
            index=index,
            name=name,
            validator_keys=keys_by_index,
            index_of={k: i for i, k in enumerate(keys_by_index)},
            market_by_id={m.market_id: m for m in genesis.markets},
            validator_set=frozenset(keys_by_index),
            log=log.bind(node=name),
        )


def drain(first: T, channel: trio.MemoryReceiveChannel[T], limit: int) -> list[T]:
    """``first`` and what else ``channel`` holds right now, at most ``limit`` in all."""
    out = [first]
    while len(out) < limit:
        try:
            out.append(channel.receive_nowait())
        except trio.WouldBlock:
            break
    return out


class DecodedCache(Generic[T]):
    """What a gossip validator decoded, handed to the loop that later receives the payload.

    Keyed by the payload's identity and checked when taken: the entry holds the payload, so
    its id is not reused while the entry lives. Bounded: the oldest entries go first (a
    payload the loop never takes is decoded again if it ever comes)."""

    __slots__ = ("_bound", "_entries")

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._entries: OrderedDict[int, tuple[bytes, T]] = OrderedDict()

    def put(self, payload: bytes, decoded: T) -> None:
        entries = self._entries
        entries[id(payload)] = (payload, decoded)
        while len(entries) > self._bound:
            entries.popitem(last=False)

    def take(self, payload: bytes) -> T | None:
        """The decoded form of exactly ``payload``, once; None if it is gone."""
        cached = self._entries.pop(id(payload), None)
        if cached is not None and cached[0] is payload:
            return cached[1]
        return None
