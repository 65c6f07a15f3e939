"""Serving: what this node answers — committed blocks to peers, and the RPC and metrics to clients.

Theory of operation. Peers that are behind ask for committed blocks (``CommittedRequest``) or
for a block and its ancestors (``BlockRequest``); those are answered from the block store,
which holds every committed block as encoded, and the response is spliced from the stored
encodings: no decode and no re-encode, and the replica can keep only its newest committed
blocks whole in memory. The replica still answers for blocks it holds uncommitted. Clients
read through :class:`Serving`, which implements the RPC's ``NodeApi``: ledger reads go through
the SQLite worker (never racing ``apply_block``), the newest blocks and recent results come
from the committer's memory, submissions are handed to admission. The HTTP servers (the RPC
and the Prometheus endpoint) are started here.

The seam is the read side: this module owns no node state (the start time for ``uptime_s``
only) and changes nothing the other parts own, so every answer is a view of theirs.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from lockstep.consensus import limits
from lockstep.consensus.codec import decode
from lockstep.consensus.messages import Block, QuorumCert
from lockstep.consensus.sync import (
    MAX_SYNC_BLOCKS,
    BlockRequest,
    CommittedRequest,
    block_response_bytes,
    committed_response_bytes,
)
from lockstep.net.host import Host
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import views
from .admission import TxAdmission
from .block_store import BlockStore, StoredBlock
from .chain_app import ChainApp
from .committer import Committer, block_doc
from .config import HostPort, MetricsSection, RPCSection
from .consensus_driver import ConsensusDriver
from .context import NodeContext
from .exchange.executor import Exchange
from .exchange.mempool_rules import Reason
from .mempool import Mempool
from .metrics import NodeMetrics
from .rpc import Admission, RpcLimits, build_rpc_app
from .safety_store import SafetyStore
from .streams import StreamHub, Subscriber
from .worker import SqliteWorker

SYNC_FRAME_BYTES = limits.MAX_MESSAGE_BYTES - 64 * 1024
"""Stored blocks one sync response carries at most: a DIRECT frame, less room to spare."""


class Serving:
    """Answers peers' sync requests and the RPC's reads (the node's ``NodeApi``)."""

    def __init__(
        self,
        ctx: NodeContext,
        worker: SqliteWorker,
        mempool: Mempool,
        app: ChainApp,
        metrics: NodeMetrics,
        block_store: BlockStore,
        exchange: Exchange,
        safety_store: SafetyStore,
        committer: Committer,
        admission: TxAdmission,
        driver: ConsensusDriver,
        host: Host,
        started_at: float,
    ) -> None:
        self.ctx = ctx
        self.worker = worker
        self.mempool = mempool
        self.app = app
        self.metrics = metrics
        self.block_store = block_store
        self.exchange = exchange
        self.safety_store = safety_store
        self.committer = committer
        self.admission = admission
        self.driver = driver
        self.host = host
        self.started_at = started_at
        self.hub: StreamHub = committer.hub

    # ================================================================== peers

    def served_from_store(self, block_hash: bytes) -> bool:
        """Whether a block request is for a block the block store holds (committed and
        stored): those are served from the store, since the replica keeps only the newest
        committed blocks whole. Unknown hashes also go to the store (a block committed long
        ago, pruned from the replica's tree); the replica answers for uncommitted blocks."""
        node = self.driver.replica.tree.get(block_hash)
        if node is None:
            return True
        return node.committed and node.height <= self.block_store.tip_height

    async def serve_committed(self, peer: bytes, req: CommittedRequest) -> None:
        """Answer a far-behind peer with committed blocks and their QCs, oldest first, spliced
        from the stored encodings (no decode, no re-encode)."""
        store = self.block_store
        first = max(1, req.from_height)
        want = min(req.max_blocks, MAX_SYNC_BLOCKS)
        rows = await self.worker.run(store.range, first, first + want - 1)
        out = [(r.block, r.certificate) for r in _fit_frame(rows, certificates=True)]
        self.driver.send_raw(peer, "CommittedResponse", committed_response_bytes(out))

    async def serve_blocks(self, peer: bytes, req: BlockRequest) -> None:
        """Answer a block request from the store: the block, then its ancestors, newest first."""
        store = self.block_store
        want = min(req.max_blocks, MAX_SYNC_BLOCKS)
        rows = await self.worker.run(store.chain_to, req.block_hash, want)
        raws = [r.block for r in _fit_frame(rows, certificates=False)]
        self.driver.send_raw(peer, "BlockResponse", block_response_bytes(req.block_hash, raws))

    # ================================================================== RPC (NodeApi)

    async def subscribe(self, stream: str) -> Subscriber:
        return await self.committer.subscribe(stream)

    async def submit(self, raw: bytes) -> Admission:
        return await self.admission.submit(raw)

    async def submit_many(self, raws: list[bytes]) -> list[Admission]:
        return await self.admission.submit_many(raws)

    async def wait_committed(self, tx_id: bytes, timeout_s: float) -> dict[str, Any] | None:
        return await self.committer.wait_committed(tx_id, timeout_s)

    def status(self) -> dict[str, Any]:
        ctx, genesis, r, c = self.ctx, self.ctx.genesis, self.driver.replica, self.committer
        leader = self.driver.leader()
        return {
            "chain_id": ctx.chain_id.hex(),
            "chain_name": genesis.chain_name,
            "node": ctx.name,
            "validator_index": ctx.index,
            "height": c.applied_height,
            "committed_height": r.committed_height,
            "view": r.view,
            "epoch": r.view // genesis.timing.epoch_views,
            "sequencer": leader,
            "sequencer_name": None if leader is None else genesis.validators[leader].name,
            "peers": len(self.host.connected_peers()),
            "state_root": c.state_root.hex(),
            "state_height": c.applied_height,
            "mempool": len(self.mempool),
            "txs_committed": c.txs_committed,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
        }

    async def markets(self) -> list[dict[str, Any]]:
        return await self.worker.run(views.markets_json, self.exchange, self.ctx.genesis)

    async def book(self, market: int, depth: int) -> dict[str, Any] | None:
        m = self.ctx.market_by_id.get(market)
        if m is None:
            return None
        return await self.worker.run(views.book_json, self.exchange, m, depth)

    async def trades(self, market: int, limit: int) -> list[dict[str, Any]] | None:
        m = self.ctx.market_by_id.get(market)
        if m is None:
            return None
        return await self.worker.run(views.trades_json, self.exchange, m, limit)

    async def account(self, owner: bytes) -> dict[str, Any] | None:
        return await self.worker.run(views.account_json, self.exchange, self.ctx.genesis, owner)

    async def block(self, height: int) -> dict[str, Any] | None:
        doc = self.committer.recent_blocks.get(height)
        if doc is not None:
            return doc
        stored = await self.worker.run(self.block_store.get, height)
        return None if stored is None else self._block_json(stored)

    async def blocks(self, first: int, last: int) -> list[dict[str, Any]]:
        recent = self.committer.recent_blocks
        if recent and next(iter(recent)) <= first:
            # The newest blocks, which pollers ask for, come from memory: the cache is the
            # contiguous top of the block store.
            top = next(reversed(recent))
            return [recent[h] for h in range(first, min(last, top) + 1)]
        rows = await self.worker.run(self.block_store.range, first, last)
        return [self._block_json(s) for s in rows]

    def _block_json(self, stored: StoredBlock) -> dict[str, Any]:
        block = decode(stored.block, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
        qc = decode(stored.certificate, QuorumCert, max_bytes=limits.MAX_MESSAGE_BYTES)
        ids = [tx.tx_id(self.ctx.chain_id) for tx in block.txs]
        return block_doc(block, stored.block_hash, qc, ids)

    async def action(self, tx_id: bytes) -> dict[str, Any] | None:
        if tx_id in self.mempool:
            return {"tx_id": tx_id.hex(), "status": "pending"}
        result = self.committer.result(tx_id)
        if result is not None:
            return result
        outcome = await self.worker.run(self.exchange.tx_status, tx_id)
        if outcome is None:
            return None
        status = "committed" if outcome.reason == Reason.OK else "rejected"
        return {"tx_id": tx_id.hex(), "status": status, **views.outcome_json(outcome)}

    async def actions(self, tx_ids: list[bytes]) -> list[dict[str, Any] | None]:
        return [await self.action(t) for t in tx_ids]

    async def state_roots(self, first: int, last: int) -> list[dict[str, Any]]:
        rows = await self.worker.run(views.state_roots, self.exchange, first, last)
        return [{"height": h, "state_root": r.hex()} for h, r in rows]

    async def ledger_totals(self) -> dict[str, Any]:
        return await self.worker.run(views.ledger_totals_json, self.exchange, self.ctx.genesis)

    def admin_status(self) -> dict[str, Any]:
        host, replica = self.host, self.driver.replica
        return {
            **self.status(),
            "replica": replica.status(),
            "refused_blocks": dict(self.app.refused),
            "rejected_messages": dict(getattr(replica, "rejected", {})),
            "net": host.statistics(),
            "peers": [p.hex() for p in host.connected_peers()],
            "worker_calls": self.worker.calls,
            "safety_writes": self.safety_store.writes,
        }

    # ================================================================== servers

    async def serve_rpc(self, rpc: RPCSection, *, task_status: trio.TaskStatus[int]) -> None:
        """The RPC on hypercorn; ``task_status`` gets the port it bound."""
        limits_ = RpcLimits(rpc.max_body_bytes, rpc.client_requests_per_s, rpc.client_burst)
        await _serve(build_rpc_app(self, limits_), rpc.listen_address, task_status)

    async def serve_metrics(
        self, section: MetricsSection, *, task_status: trio.TaskStatus[int]
    ) -> None:
        """``GET /metrics`` for Prometheus; ``task_status`` gets the port it bound."""

        async def metrics(request: Request) -> Response:
            return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

        app = Starlette(routes=[Route("/metrics", metrics)])
        await _serve(app, section.listen_address, task_status)


async def _serve(app: Any, address: HostPort, task_status: trio.TaskStatus[int]) -> None:
    config = HypercornConfig()
    config.bind = [f"{address.host}:{address.port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve, app, config, shutdown_trigger=trio.sleep_forever)
        )
        task_status.started(int(binds[0].rsplit(":", 1)[1]))


def _fit_frame(rows: list[StoredBlock], certificates: bool) -> list[StoredBlock]:
    """The first stored blocks whose encodings fit one sync response (at least one)."""
    out: list[StoredBlock] = []
    size = 0
    for row in rows:
        size += len(row.block) + (len(row.certificate) if certificates else 0)
        if out and size > SYNC_FRAME_BYTES:
            break
        out.append(row)
    return out
