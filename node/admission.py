"""Admission: what enters this node's mempool, from the RPC, from gossip and from its journal.

Theory of operation. Every transaction is decoded and its signature and static rules checked
on the trio thread before anything else sees it. The RPC path then checks the stateful rules
(replay, margin, client ids, post-only…) in one worker call per request, adds the accepted
ones to the mempool, gossips them, and journals them with one disk flush *before* any of them
is acknowledged; concurrent single submissions are coalesced into one such batch by the
admission loop. The gossip path (the net layer's validator, then the inbound loop) skips the
stateful rules: they depend on how far a node has applied, so two nodes could judge one
transaction differently, and the block decides instead. A node never forwards what it has not
validated, and a transaction a committed block holds is refused on every path.

Two tasks keep the mempool honest across restarts: the journal replay re-admits (and
re-gossips) what this node acknowledged before it stopped, once it has caught up, and the
mempool sync sends the whole mempool to each new peer and old transactions to the sequencer.

The seam is the mempool's door: this module is the only one that adds to the mempool or the
journal, and it owns the queue of coalesced submissions and the transactions the gossip
validator decoded for the inbound loop. It reads the committer's results (what is included)
and posts "transactions available" to the consensus driver.
"""

from __future__ import annotations

import time

import trio
from lockstep.consensus.actions import SignedTx, decode_and_verify_tx, decode_tx_with_id
from lockstep.consensus.codec import CodecError
from lockstep.consensus.crypto import SignatureError
from lockstep.consensus.events import TransactionsAvailable
from lockstep.net.framing import Kind
from lockstep.net.gossip import Verdict
from lockstep.net.host import Host

from .chain_app import ChainApp
from .committer import Committer
from .consensus_driver import ConsensusDriver
from .context import DecodedCache, NodeContext, drain, now_ms
from .exchange.executor import Exchange
from .exchange.mempool_rules import Reason, check_static
from .mempool import Mempool, PendingTx, PoolReason
from .mempool_journal import MempoolJournal
from .metrics import NodeMetrics
from .rpc import Admission
from .worker import SqliteWorker

MAX_COALESCED_SUBMISSIONS = 1_024
"""Single RPC submissions admitted together (and the queue bound before callers wait)."""
DECODED_TXS_AHEAD = 8_192
"""Gossiped transactions decoded by the gossip validator and not yet taken by the inbound loop;
they come in bursts (about a kilobyte each decoded); one not found there is decoded again."""
EDGE_DEFERRED = frozenset({Reason.ORDER_NOT_FOUND})
"""Refusals the edge leaves to the block: a cancel may name an order that is still pending."""
MEMPOOL_SYNC_INTERVAL_S = 0.5
MEMPOOL_RESEND_AFTER_S = 3.0
"""A transaction pending this long is sent again, straight to the current sequencer."""
JOURNAL_REPLAY_PEER_WAIT_S = 5.0
JOURNAL_REPLAY_CATCH_UP_WAIT_S = 30.0
"""At start, wait this long for peers before re-gossiping journalled transactions."""
JOURNAL_REPLAY_CHUNK = 1_000
"""Journalled transactions decoded and re-admitted at a time at start (most were included while
the node was down, and are refused as replays): the journal may hold tens of thousands."""

Candidate = tuple[SignedTx, bytes, bytes]
"""A transaction whose signature and static rules passed: (decoded, id, encoding)."""


class TxAdmission:
    """The mempool's door: RPC submissions, gossiped transactions, the journal."""

    def __init__(
        self,
        ctx: NodeContext,
        worker: SqliteWorker,
        mempool: Mempool,
        app: ChainApp,
        metrics: NodeMetrics,
        exchange: Exchange,
        journal: MempoolJournal,
        committer: Committer,
        driver: ConsensusDriver,
        host: Host,
    ) -> None:
        self.ctx = ctx
        self.worker = worker
        self.mempool = mempool
        self.app = app
        self.metrics = metrics
        self.exchange = exchange
        self.journal = journal
        self.committer = committer
        self.driver = driver
        self.host = host
        self._singles_send, self._singles_recv = trio.open_memory_channel[
            tuple[bytes, list[Admission], trio.Event]
        ](MAX_COALESCED_SUBMISSIONS)
        self._decoded_txs: DecodedCache[tuple[SignedTx, bytes]] = DecodedCache(DECODED_TXS_AHEAD)

    # ------------------------------------------------------------------ RPC

    async def submit(self, raw: bytes) -> Admission:
        """One action from the RPC. Concurrent single submissions are coalesced by the
        admission task into one ``submit_many`` (one worker call for the stateful rules, one
        journal flush), so a thousand clients posting one order each cost what one batch of a
        thousand does."""
        slot: list[Admission] = []
        done = trio.Event()
        await self._singles_send.send((raw, slot, done))
        await done.wait()
        return slot[0]

    async def run(self) -> None:
        """The admission loop: answer waiting single submissions as one batch."""
        async for first in self._singles_recv:
            batch = drain(first, self._singles_recv, MAX_COALESCED_SUBMISSIONS)
            answers = await self.submit_many([raw for raw, _, _ in batch])
            for (_, slot, done), answer in zip(batch, answers, strict=True):
                slot.append(answer)
                done.set()

    async def submit_many(self, raws: list[bytes]) -> list[Admission]:
        """Admit transactions from the RPC: signature and static rules here, the stateful
        rules in one worker call, then the mempool and gossip; the accepted ones are journalled
        with one disk flush before any of them is acknowledged."""
        ctx = self.ctx
        answers: list[Admission | None] = [None] * len(raws)
        batch: list[Candidate] = []
        where: list[int] = []
        height = self.committer.applied_height + 1
        for i, raw in enumerate(raws):
            try:
                tx, tx_id = decode_and_verify_tx(raw, ctx.chain_id)
            except CodecError as e:
                answers[i] = Admission(None, "MALFORMED", int(Reason.MALFORMED), str(e))
                continue
            except SignatureError as e:
                answers[i] = Admission(None, "BAD_SIGNATURE", int(Reason.BAD_SIGNATURE), str(e))
                continue
            if tx_id in self.mempool:
                answers[i] = Admission(tx_id, "OK", 0, "already pending")
                continue
            status = self.committer.status_name(tx_id)
            if status is not None:
                answers[i] = Admission(tx_id, "REPLAYED", int(Reason.REPLAYED), f"already {status}")
                continue
            if self.mempool.is_included(tx_id):
                answers[i] = Admission(
                    tx_id, "REPLAYED", int(Reason.REPLAYED), "already in a committed block"
                )
                continue
            reason, action = check_static(tx.body, height, ctx.market_by_id, ctx.validator_set)
            if reason:
                self.metrics.rejected.labels(reason=reason.name).inc()
                answers[i] = Admission(tx_id, reason.name, int(reason), _action_detail(action))
                continue
            batch.append((tx, tx_id, raw))
            where.append(i)
        if batch:
            verdicts = await self.admit(batch, gossip=True)
            journal = self.journal
            for (_, tx_id, raw), i, (verdict, action) in zip(batch, where, verdicts, strict=True):
                if verdict:
                    answers[i] = Admission(
                        tx_id, verdict.name, int(verdict), _action_detail(action)
                    )
                else:
                    journal.append(raw)
                    answers[i] = Admission(tx_id, "OK", 0)
            await journal.sync()  # durable before acknowledged: a crash cannot lose them
        return [a for a in answers if a is not None]

    # ------------------------------------------------------------------ gossip

    def validate_gossip_tx(self, payload: bytes) -> Verdict:
        """The net layer's verdict on a gossiped transaction, before it is delivered or
        forwarded: its decoded form is kept for the inbound loop (:meth:`take_gossiped`)."""
        ctx = self.ctx
        try:
            tx, tx_id = decode_and_verify_tx(payload, ctx.chain_id)
        except (CodecError, SignatureError):
            return Verdict.REJECT
        if tx_id in self.mempool or self.committer.included(tx_id):
            return Verdict.IGNORE  # pending, or already included: nothing new to forward
        reason, _ = check_static(
            tx.body, self.committer.applied_height + 1, ctx.market_by_id, ctx.validator_set
        )
        if reason in (Reason.EXPIRED, Reason.EXPIRY_TOO_FAR):
            return Verdict.IGNORE
        if reason:
            return Verdict.REJECT
        self._decoded_txs.put(payload, (tx, tx_id))
        return Verdict.ACCEPT

    def take_gossiped(self, payload: bytes) -> Candidate:
        """A delivered transaction, as the validator decoded it (or decoded again)."""
        cached = self._decoded_txs.take(payload)
        if cached is not None:
            tx, tx_id = cached
        else:  # the validator checked it, but its decoded copy is gone
            tx, tx_id = decode_tx_with_id(payload, self.ctx.chain_id)
        return tx, tx_id, payload

    async def admit_gossiped(self, txs: list[Candidate]) -> None:
        """Gossiped transactions into the mempool: no stateful rules, no forwarding (the
        net layer already forwarded what its validator accepted)."""
        await self.admit(txs, gossip=False, stateful=False)

    # ------------------------------------------------------------------ the mempool

    async def admit(
        self, txs: list[Candidate], gossip: bool, stateful: bool = True
    ) -> list[tuple[Reason | PoolReason, int]]:
        """Stateful checks on the worker (for the RPC), then the mempool.

        Signatures and static rules are already checked. Gossip skips the stateful checks:
        they depend on how far this node has applied, so two nodes could judge one transaction
        differently and leave it in only some mempools, where a sequencer that lacks it would
        never propose it. The block decides, deterministically, and every mempool agrees.
        """
        ex = self.exchange
        fresh = [t for t in txs if t[1] not in self.mempool] if stateful else []
        checks = await self.worker.run(lambda: [ex.check_tx(t[0]) for t in fresh]) if fresh else []
        by_id = {t[1]: c for t, c in zip(fresh, checks, strict=True)}
        out: list[tuple[Reason | PoolReason, int]] = []
        added = 0
        arrival = now_ms()
        host = self.host
        for tx, tx_id, raw in txs:
            if self.committer.included(tx_id):
                out.append((Reason.REPLAYED, -1))  # in a committed block already
                continue
            reason, action = by_id.get(tx_id, (Reason.OK, -1))
            if reason in EDGE_DEFERRED:
                reason, action = Reason.OK, -1  # the order may still be pending: the block decides
            if reason == Reason.OK and tx_id not in self.mempool:
                pool = self.mempool.add(PendingTx(tx_id, tx, raw, arrival))
                if pool != PoolReason.OK:
                    out.append((pool, -1))
                    continue
                added += 1
                self.app.note_verified(tx, tx_id)  # every admitted transaction was verified
                self.committer.note_arrival(tx_id)
                if gossip:
                    host.broadcast(Kind.TX, raw)
            elif reason != Reason.OK:
                self.metrics.rejected.labels(reason=reason.name).inc()
            out.append((reason, action))
        if added:
            if gossip and added > 1:
                host.flush()
            self.metrics.mempool.set(len(self.mempool))
            self.driver.post(TransactionsAvailable(now_ms()))
        return out

    async def replay_journal(self) -> None:
        """Re-admit and re-gossip what this node acknowledged before it last stopped."""
        ctx, committer = self.ctx, self.committer
        raws = self.journal.read()
        if not raws:
            return
        with trio.move_on_after(JOURNAL_REPLAY_PEER_WAIT_S):
            await self.host.wait_connected(
                [k for k in ctx.validator_keys if k != ctx.keys.public_key]
            )
        # Catch up first: what this node acknowledged may have been included while it was down,
        # and only the applied blocks say so. Until a certificate has come from the network, the
        # highest one known is this node's own from before it stopped, and says nothing about
        # how far behind it is (replaying then would also take the CPU the catch-up needs).
        driver = self.driver
        stored_qc = driver.high_qc()
        with trio.move_on_after(JOURNAL_REPLAY_CATCH_UP_WAIT_S):
            while (
                driver.high_qc() == stored_qc
                or committer.applied_height + 1 < driver.high_qc().height
            ):
                await trio.sleep(0.1)
        ex = self.exchange
        readmitted = 0
        for first in range(0, len(raws), JOURNAL_REPLAY_CHUNK):
            # Most of the journal was included while the node was down: the ledger says which
            # (REPLAYED), and only the rest has its signature checked again and is re-admitted.
            candidates: list[Candidate] = []
            for raw in raws[first : first + JOURNAL_REPLAY_CHUNK]:
                try:
                    tx, tx_id = decode_tx_with_id(raw, ctx.chain_id)
                except CodecError:
                    continue
                if committer.included(tx_id) or tx_id in self.mempool:
                    continue
                reason, _ = check_static(
                    tx.body, committer.applied_height + 1, ctx.market_by_id, ctx.validator_set
                )
                if reason == Reason.OK:
                    candidates.append((tx, tx_id, raw))
                elif reason == Reason.EXPIRED:
                    committer.expired(tx_id, committer.applied_height + 1)
            included = await self.worker.run(
                lambda c=candidates: [ex.check_tx(t[0])[0] == Reason.REPLAYED for t in c]
            )
            batch = []
            for (tx, tx_id, raw), done in zip(candidates, included, strict=True):
                if done:
                    continue
                try:
                    tx.verify(ctx.chain_id)
                except SignatureError:
                    ctx.log.warning("journal_record_refused", tx_id=tx_id.hex()[:16])
                    continue
                batch.append((tx, tx_id, raw))
            results = await self.admit(batch, gossip=True) if batch else []
            readmitted += sum(1 for r, _ in results if r == Reason.OK)
        ctx.log.info("journal_replayed", records=len(raws), readmitted=readmitted)
        while self.journal.flushing:
            await trio.sleep(0.01)
        self.journal.compact(p.raw for p in self.mempool.take(10**9, 10**12, 0))

    async def run_mempool_sync(self) -> None:
        """Make sure the sequencer gets every pending transaction.

        Gossip reaches the peers connected at the moment; a peer that (re)connects later —
        a restarted sequencer with an empty mempool — would never see what was sent before.
        So each new session gets this node's whole mempool (as Tendermint's mempool reactor
        does), and transactions pending for long are re-sent to the current sequencer.
        """
        host = self.host
        known: set[bytes] = set()
        last_resend = time.monotonic()
        while True:
            await trio.sleep(MEMPOOL_SYNC_INTERVAL_S)
            peers = set(host.connected_peers())
            for peer in sorted(peers - known):
                for p in self.mempool.take(10**9, 10**12, 0):
                    if not host.send(peer, Kind.TX, p.raw):
                        break  # its queue is full: the resend below covers the rest
            known = peers
            if time.monotonic() - last_resend < MEMPOOL_RESEND_AFTER_S:
                continue
            last_resend = time.monotonic()
            leader = self.driver.leader()
            if leader is None or leader == self.ctx.index:
                continue
            old = now_ms() - int(MEMPOOL_RESEND_AFTER_S * 1000)
            for p in self.mempool.take(10**9, 10**12, self.committer.applied_height + 1):
                if p.arrival_ms <= old and not host.send(
                    self.ctx.validator_keys[leader], Kind.TX, p.raw
                ):
                    break


def _action_detail(action: int) -> str:
    return f"action {action} of the batch" if action >= 0 else ""
