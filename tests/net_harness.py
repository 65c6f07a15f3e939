"""Helpers for the network tests: fast host configs, hosts on ephemeral ports, raw peers."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import trio
from lockstep.consensus.crypto import Signer
from lockstep.consensus.genesis import Genesis
from lockstep.net.framing import encode_frame
from lockstep.net.gossip import GossipParams, Verdict
from lockstep.net.host import Host, HostConfig
from lockstep.net.noise_session import (
    HandshakeConfig,
    SecureSession,
    handshake,
    noise_static_from_seed,
)
from lockstep.net.peer_manager import BackoffParams

from .conftest import make_genesis, seed_of

FAST = dict(
    handshake_timeout_s=1.0,
    connect_timeout_s=1.0,
    ping_interval_s=0.1,
    idle_timeout_s=0.6,
    write_timeout_s=1.0,
    dial_grace_s=0.05,
    session_linger_s=0.2,
    backoff=BackoffParams(base_s=0.05, cap_s=0.3),
)


def accept_all(peer: bytes, kind: int, body: bytes) -> Verdict:
    return Verdict.ACCEPT


def net_genesis(n: int = 4) -> tuple[Genesis, list[Signer]]:
    g, signers = make_genesis(n)
    return g, signers[:n]


def fast_config(g: Genesis, signer: Signer, **overrides: Any) -> HostConfig:
    peers = {v.public_key: None for v in g.validators if v.public_key != signer.public_key}
    extra = overrides.pop("observers", ())
    for k in extra:
        peers[k] = None
    kw = {**FAST, **overrides}
    return HostConfig(chain_id=g.chain_id, peers=peers, **kw)


async def start_host(
    nursery: trio.Nursery,
    g: Genesis,
    signer: Signer,
    validator: Callable[[bytes, int, bytes], Verdict] = accept_all,
    seed: int = 0,
    sync_handler: Any = None,
    on_session: Callable[[bytes], None] | None = None,
    **overrides: Any,
) -> Host:
    host = Host(
        fast_config(g, signer, **overrides),
        signer,
        validator,
        sync_handler=sync_handler,
        on_session=on_session,
        rng=random.Random(seed),
    )
    await nursery.start(host.run)
    return host


def link_all(hosts: list[Host]) -> None:
    """Tell every host the address of every other (ports are ephemeral)."""
    for a in hosts:
        for b in hosts:
            if a is not b:
                a.add_peer(b.key, f"127.0.0.1:{b.listen_port}")


async def wait_mesh(hosts: list[Host], timeout_s: float = 3.0) -> None:
    with trio.fail_after(timeout_s):
        for h in hosts:
            await h.wait_connected([o.key for o in hosts if o is not h])


async def raw_session(
    port: int,
    g: Genesis,
    signer: Signer,
    *,
    chain_id: bytes | None = None,
    expected: bytes | None = None,
) -> tuple[trio.SocketStream, SecureSession]:
    """Dial a host as a hand-driven peer and complete the handshake."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    cfg = HandshakeConfig(
        signer=signer,
        chain_id=chain_id or g.chain_id,
        static_private=noise_static_from_seed(signer.seed),
        is_admitted=lambda k: True,
    )
    session = await handshake(stream, cfg, initiator=True, expected_key=expected)
    return stream, session


def frame(kind: int, body: bytes) -> bytes:
    return encode_frame(kind, body)


def events(logs: list[dict[str, Any]], event: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event and all(e.get(k) == v for k, v in match.items())]


async def wait_for(pred: Callable[[], bool], timeout_s: float = 3.0) -> None:
    with trio.fail_after(timeout_s):
        while not pred():
            await trio.sleep(0.01)


def stranger(label: str = "stranger") -> Signer:
    return Signer(seed_of(label))


def with_gossip(**kw: Any) -> GossipParams:
    return dataclasses.replace(GossipParams(), **kw)
