"""Short chaos runs of every scenario, with real processes and real signals (CI).

Each runs ``lockstep testnet chaos`` for a short while under load and requires the invariant
checker to pass: equal state roots at every common height, every acknowledged action
accounted for, no transaction in two blocks, collateral conserved, and a commit within two
view timeouts of every fault. The long versions run from ``bench/`` and by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .localnet import free_base_port, one_network_at_a_time

SCENARIOS = ["kill-sequencer", "kill-random", "freeze", "rolling-restart"]
SHORT_RUN_S = 20


@pytest.fixture(autouse=True)
def _alone() -> Iterator[None]:
    with one_network_at_a_time():
        yield


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chaos_scenario_keeps_invariants(tmp_path: Path, scenario: str) -> None:
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
            str(SHORT_RUN_S),
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
    assert summary["figures"]["faults"], "the scenario injected no fault"
    assert summary["accepted"] > 50
