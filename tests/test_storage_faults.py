"""Storage faults on a real node's home: every damaged store is refused with one line naming
the file and what to do, or recovered to a ledger the certified chain agrees with; never a
silent start.

One single-validator chain runs for a few seconds once (it commits alone), and each test
damages a copy of its stopped home, then runs the real ``lockstep node run`` process on it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from lockstep.testnet.generate import generate_network

from .localnet import free_base_port

pytestmark = pytest.mark.timeout(300)

RUN_S = 6.0
"""How long the chain runs to build its history (about 20 blocks)."""


def _run(home: Path, *flags: str, seconds: float) -> tuple[int, str]:
    """Run the node for up to ``seconds`` (SIGINT then), return its status and stderr."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lockstep.cli.main",
            "node",
            "run",
            "--home",
            str(home),
            "--log-level",
            "error",
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chain")
    generate_network(out, n_validators=1, n_traders=1, base_port=free_base_port(1))
    home = out / "node0"
    status, err = _run(home, seconds=RUN_S)
    assert status == 0, err
    return home


@pytest.fixture
def home(built_home: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "node0"
    shutil.copytree(built_home, copy)
    return copy


def _error_line(err: str) -> str:
    """The fatal line: one ``lockstep: error:`` line, last, and no traceback (the log's own
    line about it goes to stderr too, since the test's config logs there)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("lockstep: error: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    assert "Traceback" not in err and "Error:" not in err.replace("lockstep: error:", ""), err
    return lines[0]


def test_both_safety_slots_random_refuses_with_the_way_out(home: Path) -> None:
    data = home / "data"
    for name in ("safety_state.a", "safety_state.b"):
        size = (data / name).stat().st_size
        (data / name).write_bytes(os.urandom(size))
    status, err = _run(home, seconds=60)
    assert status == 1
    line = _error_line(err)
    assert "safety state is lost" in line and "--reset-safety-state" in line
    assert str(data / "safety_state.a") in line


def test_one_safety_slot_random_starts_from_the_other(home: Path) -> None:
    slot = home / "data" / "safety_state.a"
    slot.write_bytes(os.urandom(slot.stat().st_size))
    status, err = _run(home, seconds=4)
    assert status == 0, err


def test_reset_on_a_single_validator_chain_is_refused(home: Path) -> None:
    """A reset learns from peers; the only validator has none, so it cannot."""
    for name in ("safety_state.a", "safety_state.b"):
        (home / "data" / name).write_bytes(os.urandom(100))
    status, err = _run(home, "--reset-safety-state", seconds=60)
    assert status == 1
    assert "only one" in _error_line(err)


def test_reset_of_an_intact_state_is_refused(home: Path) -> None:
    status, err = _run(home, "--reset-safety-state", seconds=60)
    assert status == 1
    assert "intact" in _error_line(err)


def test_verbose_shows_the_traceback(home: Path) -> None:
    for name in ("safety_state.a", "safety_state.b"):
        (home / "data" / name).write_bytes(b"\0" * 10)
    status, err = _run(home, "-v", seconds=60)
    assert status == 1
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("lockstep: error: ")
