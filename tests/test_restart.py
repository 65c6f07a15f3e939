"""Restarting a real node process on its own data directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from lockstep.testnet.processes import tail

from .localnet import height, local_network, one_network_at_a_time, wait_for

pytestmark = pytest.mark.timeout(300)


def test_a_node_whose_ledger_diverged_refuses_to_start(tmp_path: Path) -> None:
    """The state roots its ledger recorded for the last heights no longer match what the
    stored blocks claim: the node refuses to start (exit 1) and names the mismatch, rather
    than run on a forked ledger."""
    with one_network_at_a_time(), local_network(tmp_path) as net:
        wait_for(lambda: height(net.nodes[3].rpc_url) >= 12, 60.0, "a dozen blocks")
        node = net.nodes[3]
        assert node.stop()
        db = sqlite3.connect(node.home / "data" / "ledger.sqlite")
        with db:
            top = db.execute("SELECT max(height) FROM blocks").fetchone()[0]
            db.execute("UPDATE blocks SET state_root = ? WHERE height > ?", (bytes(32), top - 8))
        db.close()
        node.start()
        wait_for(lambda: not node.alive(), 60.0, "the node to refuse to start")
        assert node.proc is not None and node.proc.returncode == 1
        assert "state root mismatch" in tail(node.log_file, 40)
