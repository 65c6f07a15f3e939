"""The node daemon: net ↔ consensus replica ↔ mempool ↔ exchange ↔ RPC, in one trio nursery.

Theory of operation. :class:`Node` is the composition root: it builds the daemon's parts, gives
each its explicit dependencies, and runs their tasks in one nursery. Each part owns its state
(``docs/design/node.md``, "The daemon's parts"):

- :mod:`.startup` opens the stores and runs CometBFT's handshake: compare the block store's
  height with the ledger's; a ledger ahead of the store cannot be explained and stops the node;
  a ledger behind it is replayed from the store; every recent stored block's state-root claim is
  checked against the roots this node computed. Then the replica starts from the persisted
  safety state and the recent committed blocks.
- :mod:`.consensus_driver` owns the replica and feeds it events from a single channel (peer
  messages, timers, "transactions available"), performing the effects it returns in order: a
  ``PersistSafety`` is fsync'd before anything after it happens, so no vote or timeout ever
  leaves before the state that justifies it is durable.
- :mod:`.committer` takes the ``Commit`` effects, in height order, and stores each committed
  block with its certificate in the block store (durably) *before* the exchange applies it on
  the SQLite worker; then it updates the mempool, the state-root history, metrics, streams and
  RPC waiters.
- :mod:`.admission` is the mempool's door. Transactions arrive from the RPC and from gossip;
  both paths verify the signature and the static rules on the trio thread, the RPC path the
  stateful rules on the worker too, then enter the mempool; the RPC path also gossips them.
- :mod:`.serving` answers peers' requests for committed blocks and the RPC's reads.
- :mod:`.inbound` validates what peers send and routes it to its owner. A node never forwards
  what it has not validated.

Only this module imports them all. They import downwards only (:mod:`.context` at the bottom;
the driver and the committer on it; admission on both; serving on admission; the router on
serving; start-up on the driver and the committer), so the parts form no import cycle. Where
they need each other at run time, this module binds them: the host is attached to the driver
after the handshake, and the host's validator calls the router, built after the host.
"""

from __future__ import annotations

import time

import trio
from lockstep.consensus.genesis import Genesis
from lockstep.consensus.replica import Replica
from lockstep.net.host import Host, HostConfig

from .admission import TxAdmission
from .chain_app import ChainApp
from .committer import Committer
from .config import NodeConfig
from .consensus_driver import ConsensusDriver
from .context import NodeContext, NodePaths
from .genesis_file import read_genesis_file
from .inbound import InboundRouter
from .keys import ValidatorKeys, load_validator_keys
from .mempool import Mempool
from .metrics import NodeMetrics
from .pending_store import PendingBlockStore
from .safety_store import SafetyStore
from .serving import Serving
from .startup import Stores, handshake
from .worker import SqliteWorker


class Node:
    """One validator node. ``await nursery.start(node.run)``; cancel the nursery to stop."""

    def __init__(
        self,
        cfg: NodeConfig,
        paths: NodePaths,
        genesis: Genesis | None = None,
        keys: ValidatorKeys | None = None,
        reset_safety_state: bool = False,
    ) -> None:
        self.cfg = cfg
        self.reset_safety_state = reset_safety_state
        self.paths = paths
        self.ctx = NodeContext.of(
            genesis or read_genesis_file(paths.genesis_file),
            keys or load_validator_keys(paths.key_file),
        )
        ctx = self.ctx
        self.log = ctx.log
        self.metrics = NodeMetrics()
        self.worker = SqliteWorker()
        self.mempool = Mempool(cfg.consensus.mempool_max_txs, cfg.consensus.mempool_max_bytes)
        self.app = ChainApp(
            ctx.chain_id,
            self.mempool,
            ctx.genesis.timing.max_clock_drift_ms,
            cfg.consensus.block_build_max_txs,
            lookup=lambda h: replica.tree.get(h),  # the replica below, built on this app
        )
        replica = Replica(ctx.genesis, ctx.index, ctx.keys.signer, ctx.keys.vrf_seed, self.app)
        self.safety_store = SafetyStore(paths.data_dir)
        self.pending_store = PendingBlockStore(paths.data_dir)
        self.driver = ConsensusDriver(
            ctx, replica, self.app, self.safety_store, self.pending_store, self.metrics
        )
        self.started_at = time.monotonic()
        self.rpc_port: int | None = None
        self.metrics_port: int | None = None
        self.p2p_port: int | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ctx, cfg, worker = self.ctx, self.cfg, self.worker
        stores = await Stores.open(
            self.paths.data_dir, ctx, worker, self.safety_store, self.pending_store
        )
        committer = Committer(
            ctx,
            worker,
            self.mempool,
            self.app,
            self.metrics,
            stores.blocks,
            stores.exchange,
            stores.journal,
            stores.pending,
            self.driver.commits,
        )
        try:
            await handshake(
                ctx,
                self.paths.data_dir,
                worker,
                stores,
                self.app,
                committer,
                self.driver,
                self.reset_safety_state,
            )
            # The host validates with the router, which needs the parts that talk through the
            # host: it is named here and bound below, before the host runs.
            host = Host(
                HostConfig.from_genesis(
                    ctx.genesis,
                    own_key=ctx.keys.public_key,
                    observers=cfg.p2p.observers,
                    listen_host=cfg.p2p.listen_address.host,
                    listen_port=cfg.p2p.listen_address.port,
                ),
                ctx.keys.signer,
                validator=lambda peer, kind, payload: router.validate(peer, kind, payload),
                on_session=self.driver.on_session,
            )
            self.driver.attach(host)
            admission = TxAdmission(
                ctx,
                worker,
                self.mempool,
                self.app,
                self.metrics,
                stores.exchange,
                stores.journal,
                committer,
                self.driver,
                host,
            )
            serving = Serving(
                ctx,
                worker,
                self.mempool,
                self.app,
                self.metrics,
                stores.blocks,
                stores.exchange,
                stores.safety,
                committer,
                admission,
                self.driver,
                host,
                self.started_at,
            )
            router = InboundRouter(ctx, admission, serving, self.driver)
            async with trio.open_nursery() as nursery:
                self.p2p_port = await nursery.start(host.run)
                nursery.start_soon(router.run, host.inbound)
                nursery.start_soon(committer.run)
                nursery.start_soon(self.driver.run_timers)
                nursery.start_soon(self.driver.run)
                nursery.start_soon(admission.replay_journal)
                nursery.start_soon(admission.run_mempool_sync)
                nursery.start_soon(admission.run)
                self.rpc_port = await nursery.start(serving.serve_rpc, cfg.rpc)
                if cfg.metrics.enabled:
                    self.metrics_port = await nursery.start(serving.serve_metrics, cfg.metrics)
                self.log.info(
                    "node_started",
                    index=ctx.index,
                    chain=ctx.chain_id.hex()[:16],
                    height=committer.applied_height,
                    p2p=self.p2p_port,
                    rpc=self.rpc_port,
                )
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await stores.close(worker)
                self.log.info("node_stopped", height=committer.applied_height)
