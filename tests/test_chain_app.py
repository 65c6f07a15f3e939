"""ChainApp, the replica's application: what a proposal may carry when the ledger lags."""

from __future__ import annotations

from lockstep.consensus.actions import Cancel, CancelAll
from lockstep.consensus.block_tree import TreeNode
from lockstep.consensus.crypto import Signer, sha256
from lockstep.consensus.messages import Block, QuorumCert, VoteData
from lockstep.consensus.quorum import genesis_block_hash
from lockstep.node.chain_app import ChainApp
from lockstep.node.mempool import Mempool, PendingTx

from .conftest import seed_of

CHAIN = sha256(b"chain")
ALICE = Signer(seed_of("alice"))


def pending(nonce: int) -> PendingTx:
    signed = Cancel(ALICE.public_key, nonce, 10_000, CancelAll(0)).sign(ALICE, CHAIN)
    return PendingTx(signed.tx_id(CHAIN), signed, signed.encode(), 0)


def test_a_proposal_skips_what_the_replica_committed_above_a_lagging_ledger() -> None:
    """After a partition a node's replica commits far ahead of its ledger, and the tree keeps
    only its newest committed blocks whole. If this node leads then, its proposal must still
    leave out every transaction committed above the ledger (else it is committed twice)."""
    pool = Mempool()
    nodes: dict[bytes, TreeNode] = {}
    app = ChainApp(CHAIN, pool, 500, clock_ms=lambda: 10**12, lookup=nodes.get)
    parent_hash, blocks = genesis_block_hash(CHAIN), []
    for h in range(1, 101):
        p = pending(h)
        pool.add(p)  # the ledger has not applied it: still pending in this node's pool
        qc = QuorumCert(VoteData(h - 1, h - 1, parent_hash), (), ())  # unsigned: not checked here
        block = Block(h, h, 0, parent_hash, qc, 0, h, 0, bytes(32), (p.tx,), ())
        parent_hash = app._hash(block)
        nodes[parent_hash] = TreeNode(parent_hash, block, h, h, block.parent_hash, h, 0, None)
        blocks.append(block)
        app.note_final(block, parent_hash)  # the replica committed it
    for node in list(nodes.values())[:60]:
        node.block = None  # past the tree's full window
    fresh = pending(1_000)
    pool.add(fresh)

    payload = app.make_payload(blocks[-1], 101, 101, 101)

    assert [tx.tx_id(CHAIN) for tx in payload.txs] == [fresh.tx_id]
    # Once the ledger has applied (cleared) them, their ids are let go.
    for block in blocks:
        pool.remove(app.note_committed(block, app._hash(block)))
    assert app.block_tx_ids == {} and app.cleared_height == 100


def test_a_copied_signature_on_a_changed_body_is_verified_not_looked_up() -> None:
    """Transactions verified on arrival are recognised in a proposal by signature and value;
    a Byzantine leader that pairs a known signature with another body gets no vote."""
    pool = Mempool()
    app = ChainApp(CHAIN, pool, 500, clock_ms=lambda: 10**12)
    known = pending(7)
    app.note_verified(known.tx, known.tx_id)
    forged = type(known.tx)(Cancel(ALICE.public_key, 8, 10_000, CancelAll(0)), known.tx.signature)
    parent = genesis_block_hash(CHAIN)
    qc = QuorumCert(VoteData(0, 0, parent), (), ())

    def block(*txs) -> Block:
        return Block(1, 1, 0, parent, qc, 0, 1, 0, bytes(32), txs, ())

    assert app._refusal(block(known.tx), None) is None
    assert app._refusal(block(forged), None) == "bad_transaction_signature"
    honest = block(known.tx)
    assert app.block_tx_ids[app._hash(honest)] == (1, (known.tx_id,))
