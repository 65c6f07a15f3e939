"""Hosts on real sockets: mesh formation, gossip with validation, scoring, limits, reconnect."""

from __future__ import annotations

import pytest
import trio
from lockstep.net.framing import Kind

from .net_harness import link_all, net_genesis, start_host, wait_for, wait_mesh

pytestmark = pytest.mark.timeout(10)


async def collect(host, into: list, n: int | None = None) -> None:
    async for batch in host.inbound:
        into.extend(batch)


async def test_full_mesh_gossip_delivers_to_all() -> None:
    g, signers = net_genesis(4)
    async with trio.open_nursery() as nursery:
        hosts = [await start_host(nursery, g, s, seed=i) for i, s in enumerate(signers)]
        link_all(hosts)
        await wait_mesh(hosts)
        got: list[list] = [[] for _ in hosts]
        for h, into in zip(hosts, got, strict=True):
            nursery.start_soon(collect, h, into)
        payloads = [b"order-%d" % i for i in range(500)]
        for i, p in enumerate(payloads):
            hosts[i % 4].broadcast(Kind.TX, p)
        await wait_for(lambda: all(len(x) >= 375 for x in got))
        await trio.sleep(0.1)
        for i, into in enumerate(got):
            mine = {p for j, p in enumerate(payloads) if j % 4 == i}
            assert {m.payload for m in into} == set(payloads) - mine
            assert len(into) == 375  # no duplicates delivered
        nursery.cancel_scope.cancel()
