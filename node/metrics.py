"""Prometheus metrics of a node, in one registry the metrics endpoint serves.

Names follow Prometheus conventions (``lockstep_`` prefix, base units, ``_total`` counters,
``_seconds`` histograms). A fresh :class:`NodeMetrics` per node keeps tests and several nodes
in one process independent of the global default registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

COMMIT_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Submit → committed latency buckets: the goal is p50 ≤ 100 ms, p99 ≤ 500 ms."""


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("lockstep_height", "Height of the last committed block", registry=r)
        self.view = Gauge("lockstep_view", "Current consensus view", registry=r)
        self.epoch = Gauge("lockstep_epoch", "Current sequencer epoch", registry=r)
        self.sequencer = Gauge(
            "lockstep_sequencer", "Validator index leading the current view", registry=r
        )
        self.commits = Counter("lockstep_commits", "Blocks committed", registry=r)
        self.orders = Counter(
            "lockstep_orders_finalized", "Transactions finalized in committed blocks", registry=r
        )
        self.rejected = Counter(
            "lockstep_actions_rejected", "Actions refused, by reason", ["reason"], registry=r
        )
        self.mempool = Gauge("lockstep_mempool_size", "Transactions waiting", registry=r)
        self.peers = Gauge("lockstep_peers", "Connected peers", registry=r)
        self.timeouts = Counter("lockstep_view_timeouts", "Views ended by timeout", registry=r)
        self.commit_latency = Histogram(
            "lockstep_commit_latency_seconds",
            "Time from a transaction's arrival at this node to its commit",
            buckets=COMMIT_LATENCY_BUCKETS_S,
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format, for ``GET /metrics``."""
        return generate_latest(self.registry)
