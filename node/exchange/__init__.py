"""The exchange state machine: everything that decides ledger state.

Contract (checked by ``tests/test_layers.py``):

* **Pure and deterministic.** The only inputs are the genesis and finalized blocks (height, the
  proposer's timestamp, the ordered transactions). The same blocks give the same ledger rows
  and the same state root on every node.
* **Integers only.** Prices in ticks, sizes in lots, money in quote atoms; no float reaches a
  record or the state root.
* **No trio, no clock, no network, no randomness.** Nothing here imports trio, ``time``,
  ``random``, ``socket``, the network layer or the daemon. Iteration is in sorted or block order.
* **SQLite only behind one interface**: :class:`ledger.LedgerStore` holds the connection and
  every SQL statement; the rest of the package sees records and typed reads.

Modules: ``mempool_rules`` (admission rules and reason codes), ``book`` and ``matching``
(price-time priority), ``margin``, ``funding``, ``prices`` (index and mark), ``liquidation``
(insurance fund, ADL), ``replay`` (nonces), ``ledger`` (records and the SQLite file),
``state_root`` (the Merkle tree of buckets), ``units`` (human numbers ↔ integers), and
``executor``, whose :class:`~executor.Exchange` applies a block and is what the daemon holds.
"""
