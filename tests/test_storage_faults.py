"""Storage faults on a real node's home: every damaged store is refused with one line naming
the file and what to do, or recovered to a ledger the certified chain agrees with; never a
silent start.

One single-validator chain runs for a few seconds once (it commits alone), and each test
damages a copy of its stopped home, then runs the real ``lockstep node run`` process on it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import struct
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
    # A copy of the ledger as it was then, for a test that needs one behind the chain.
    shutil.copy(home / "data" / "ledger.sqlite", out / "ledger-behind.sqlite")
    status, err = _run(home, seconds=RUN_S / 2)
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
    status, err = _run(home, seconds=30)
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
    status, err = _run(home, "--reset-safety-state", seconds=30)
    assert status == 1
    assert "only one" in _error_line(err)


def test_reset_of_an_intact_state_is_refused(home: Path) -> None:
    status, err = _run(home, "--reset-safety-state", seconds=30)
    assert status == 1
    assert "intact" in _error_line(err)


def test_verbose_shows_the_traceback(home: Path) -> None:
    for name in ("safety_state.a", "safety_state.b"):
        (home / "data" / name).write_bytes(b"\0" * 10)
    status, err = _run(home, "-v", seconds=30)
    assert status == 1
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("lockstep: error: ")


# ------------------------------------------------------------------------- ledger, blocks


def _chain_agrees_with_ledger(data: Path) -> int:
    """Every root the certified chain claims is the one the ledger computed; returns how many
    claims were checked."""
    from lockstep.consensus.codec import decode
    from lockstep.consensus.messages import Block

    blocks = sqlite3.connect(data / "blocks.sqlite")
    ledger = sqlite3.connect(data / "ledger.sqlite")
    roots = dict(ledger.execute("SELECT height, state_root FROM blocks"))
    checked = 0
    for (raw,) in blocks.execute("SELECT block FROM blocks ORDER BY height"):
        b = decode(raw, Block, max_bytes=1 << 26)
        if b.state_height and b.state_height in roots:
            assert bytes(roots[b.state_height]) == b.state_root, b.state_height
            checked += 1
    blocks.close()
    ledger.close()
    return checked


def _rebuilt(home: Path, err: str) -> None:
    data = home / "data"
    assert "ledger_damaged_rebuilding" in err, err
    assert list(data.glob("ledger.sqlite.damaged-*")), "the damaged file is kept aside"
    assert _chain_agrees_with_ledger(data) >= 10


def test_a_truncated_ledger_is_rebuilt_from_the_block_store(home: Path) -> None:
    path = home / "data" / "ledger.sqlite"
    os.truncate(path, path.stat().st_size // 2)
    status, err = _run(home, "--log-level", "warning", seconds=8)
    assert status == 0, err
    _rebuilt(home, err)


def test_random_pages_in_the_ledger_are_found_and_rebuilt(home: Path) -> None:
    path = home / "data" / "ledger.sqlite"
    pages = path.stat().st_size // 4096
    rng = random.Random(20)
    with open(path, "r+b") as f:
        for page in rng.sample(range(1, pages), min(20, pages - 1)):
            f.seek(page * 4096)
            f.write(rng.randbytes(4096))
    status, err = _run(home, "--log-level", "warning", seconds=8)
    assert status == 0, err
    _rebuilt(home, err)


def test_a_ledger_whose_root_the_chain_contradicts_is_rebuilt(home: Path) -> None:
    """Well-formed SQLite and a self-consistent file (its recorded root is the root of what it
    holds), yet not the chain's state: a balance moved and the roots with it. Only the
    certified chain's claim for that height can tell."""
    from lockstep.node.exchange.executor import Exchange
    from lockstep.node.genesis_file import read_genesis_file

    path = home / "data" / "ledger.sqlite"
    shutil.copy(home.parent.parent / "chain0" / "ledger-behind.sqlite", path)
    db = sqlite3.connect(path)
    with db:
        (owner,) = db.execute("SELECT owner FROM accounts ORDER BY owner LIMIT 1").fetchone()
        db.execute("UPDATE accounts SET collateral = collateral + 1 WHERE owner = ?", (owner,))
    genesis = read_genesis_file(home / "config" / "genesis.toml")
    with pytest.raises(Exception, match=r"has root ([0-9a-f]{64})") as refused:
        Exchange.open(path, genesis)
    forged = bytes.fromhex(re.search("has root ([0-9a-f]{64})", str(refused.value)).group(1))
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'state_root'", (forged,))
        db.execute("UPDATE blocks SET state_root = ? WHERE height = ?", (forged, _height(db)))
    db.close()
    Exchange.open(path, genesis).close()  # opens cleanly: the file agrees with itself
    status, err = _run(home, "--log-level", "warning", seconds=8)
    assert status == 0, err
    assert "certified block" in err
    _rebuilt(home, err)


def _height(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'height'").fetchone()[0])


def test_a_truncated_block_store_refuses_naming_the_file(home: Path) -> None:
    path = home / "data" / "blocks.sqlite"
    os.truncate(path, path.stat().st_size // 2)
    status, err = _run(home, seconds=30)
    assert status == 1
    line = _error_line(err)
    assert f"the block store {path} is damaged" in line and "keep the safety_state" in line


# ------------------------------------------------------------------------- logs, journal


def test_a_torn_or_garbled_pending_log_tail_is_ignored(home: Path) -> None:
    """The pending log's tail is where a crash tears it; garbage there ends the read."""
    log = home / "data" / "pending_blocks.log"
    with open(log, "ab") as f:
        f.write(os.urandom(300))
    status, err = _run(home, seconds=5)
    assert status == 0, err


def test_a_pending_log_record_that_does_not_decode_refuses(home: Path) -> None:
    """An uncommitted block the replica voted for, garbled: named, with what to do."""
    log = home / "data" / "pending_blocks.log"
    data = bytearray(log.read_bytes())
    i, last = 0, None
    while i + 12 <= len(data):
        n, _ = struct.unpack_from(">IQ", data, i)
        last = (i + 12, n)
        i += 12 + n
    assert last is not None, "the run left uncommitted blocks in the log"
    start, n = last
    data[start : start + n] = bytes([0xFF]) * n
    log.write_bytes(bytes(data))
    status, err = _run(home, seconds=30)
    assert status == 1
    line = _error_line(err)
    assert str(log) in line


def test_a_garbled_mempool_journal_starts_and_keeps_what_decodes(home: Path) -> None:
    """A journal record that does not decode is skipped at replay (its transaction is
    only lost to a retry), the rest replayed; a torn tail ends the read."""
    journal = home / "data" / "mempool.journal"
    journal.write_bytes(struct.pack(">I", 20) + os.urandom(20) + b"\x00\x00\x01")
    status, err = _run(home, "--log-level", "warning", seconds=5)
    assert status == 0, err
