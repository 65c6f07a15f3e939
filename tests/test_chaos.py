"""Short chaos runs of every scenario, with real processes and real signals (CI).

Each runs ``lockstep testnet chaos`` for a short while under load and requires the invariant
checker to pass: equal state roots at every common height, every acknowledged action
accounted for, no transaction in two blocks, collateral conserved, and a commit within two
view timeouts of every fault (``testnet.chaos.GAP_BOUND_VIEW_TIMEOUTS``, derived there from the
genesis timing and the simulator's worst single-fault gap). The long versions run from
``bench/`` and by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lockstep.testnet import netns

from .localnet import free_base_port, one_network_at_a_time

SCENARIOS = ["kill-sequencer", "kill-random", "freeze", "rolling-restart"]
SHORT_RUN_S = 20
PARTITION_RUN_S = 32
"""Long enough for one round of each cut after the nodes answer: 4 s of warm-up, up to an
epoch (~4 s) to cut the sequencer early in one, the sequencer alone for 5 s, 4 s of calm,
halves for 5 s, each followed by its heal."""


@pytest.fixture(autouse=True)
def _alone() -> Iterator[None]:
    with one_network_at_a_time():
        yield


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chaos_scenario_keeps_invariants(tmp_path: Path, scenario: str) -> None:
    summary = _chaos(tmp_path, scenario, SHORT_RUN_S)
    assert summary["figures"]["faults"], "the scenario injected no fault"
    assert summary["accepted"] > 50


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    not netns.available(),
    reason="partitions need root and Linux network namespaces (ip netns, veth, bridge)",
)
@pytest.mark.parametrize(
    "scenario",
    [
        "partition",
        "silent-partition",
    ],
)
def test_partition_keeps_invariants(tmp_path: Path, scenario: str) -> None:
    """The sequencer cut off from the rest, then the network split in halves, each healed:
    commits within the bound after each cut and heal, none while split, every node caught up.
    The silent variant loses packets on the way, so TCP backs off as behind a failed switch."""
    summary = _chaos(tmp_path, scenario, PARTITION_RUN_S)
    faults = [what for what, _ in summary["figures"]["faults"]]
    assert any(w.startswith("partition ") for w in faults), faults
    assert sum(w.startswith("heal of ") for w in faults) >= 2, faults
    assert any(line.startswith("ok   split ") for line in summary["checks"]), summary["checks"]
    assert summary["accepted"] > 50


def _chaos(tmp_path: Path, scenario: str, duration_s: float) -> dict[str, Any]:
    """Run ``lockstep testnet chaos``; its JSON summary, asserted ok."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep.cli.main",
            "testnet",
            "chaos",
            "--scenario",
            scenario,
            "--duration",
            str(duration_s),
            "--dir",
            str(tmp_path / "net"),
            "--no-live",
            "--json",
            "--base-port",
            str(free_base_port(4)),
        ],
        capture_output=True,
        text=True,
        timeout=140,
    )
    out = proc.stdout
    summary = json.loads(out[out.index("{\n") :]) if "{\n" in out else {}
    assert proc.returncode == 0 and summary.get("ok"), (
        f"exit {proc.returncode}\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return summary
