"""Logging and metrics of the node produce what operators read."""

from __future__ import annotations

import json
from pathlib import Path

import structlog
from lockstep.node.logs import configure_logging
from lockstep.node.metrics import NodeMetrics


def test_json_log_file_carries_node_context(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    configure_logging(level="info", file=path, node="node0")
    log = structlog.get_logger().bind(height=7, view=9)
    log.info("block_committed", txs=3)
    log.debug("not_shown")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "block_committed"
    assert (lines[0]["node"], lines[0]["height"], lines[0]["view"]) == ("node0", 7, 9)
    assert lines[0]["level"] == "info"
    configure_logging(level="warning", fmt="json")


def test_metrics_render() -> None:
    m = NodeMetrics()
    m.height.set(12)
    m.commits.inc()
    m.rejected.labels(reason="bad_signature").inc()
    m.commit_latency.observe(0.04)
    text = m.render().decode()
    assert "lockstep_height 12.0" in text
    assert "lockstep_commits_total 1.0" in text
    assert 'lockstep_actions_rejected_total{reason="bad_signature"} 1.0' in text
    assert "lockstep_commit_latency_seconds_bucket" in text
    assert NodeMetrics().render() != text.encode()  # registries are per node
