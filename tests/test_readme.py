"""The README's wallet example, run as written against a network of real node processes.

The lines come from README.md's "After that" code block, so a change there is tested here: the
``W=… G=…`` assignments are substituted as the shell would, and each ``lockstep wallet …`` line
runs through the installed ``lockstep`` command in a directory where the README's relative
paths (``lockstep-testnet/…``) name the running network. The network takes free ports, not the
README's 26656, so the wallet can only find it by its default rule (cli/wallet.py,
``NODE_RULE``), as a new user's would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lockstep.cli.rpc_client import DEFAULT_WAIT_MS, WAIT_SLACK_S
from lockstep.consensus.genesis import Timing
from lockstep.node.genesis_file import read_genesis_file
from lockstep.node.keys import wallet_public_key

from .localnet import height, local_network, one_network_at_a_time, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
NETWORK_DIR = "lockstep-testnet"
"""The directory ``lockstep testnet up`` writes, which the README's paths name."""
START_ALLOWANCE_S = 20.0
"""An interpreter start and imports of one ``lockstep`` process on a busy two-core machine:
a bound against a hang, not a wait for the chain."""

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _alone() -> Iterator[None]:
    with one_network_at_a_time():
        yield


def readme_block(heading: str) -> list[str]:
    """The shell lines of the first code block under ``heading``, continuations joined."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no ```sh block under {heading!r} in {README}"
    joined = re.sub(r"\\\n\s*", "", block.group(1))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def shell_words(line: str, variables: dict[str, str]) -> list[str]:
    """``line`` split as sh would: ``$NAME`` expanded (unknown names fail), comments dropped."""

    def expand(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in variables, f"README line {line!r} uses ${name}, which it never sets"
        return variables[name]

    return shlex.split(re.sub(r"\$\{(\w+)\}|\$(\w+)", expand, line), comments=True)


def wallet_example() -> tuple[dict[str, str], list[list[str]]]:
    """The README's variable assignments and its ``lockstep wallet`` command lines."""
    variables: dict[str, str] = {}
    commands: list[list[str]] = []
    for line in readme_block("## After that"):
        words = shell_words(line, variables)
        if words and all(re.fullmatch(r"\w+=\S*", w) for w in words):
            variables.update(w.split("=", 1) for w in words)
        elif words[:2] == ["lockstep", "wallet"]:
            commands.append(words)
    return variables, commands


def first_commit_bound_s(timing: Timing, n_validators: int) -> float:
    """Seconds by which a fresh network commits its first block: one view per validator, each
    timing out (doubling from ``view_timeout_ms``, capped), before an honest leader's view."""
    total_ms = sum(
        min(timing.view_timeout_ms * 2**k, timing.view_timeout_max_ms) for k in range(n_validators)
    )
    return (total_ms + timing.block_interval_ms) / 1000


def lockstep_command() -> list[str]:
    """The installed ``lockstep`` script beside this interpreter (what the README runs)."""
    script = Path(sys.executable).with_name("lockstep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lockstep.cli.main"]


def test_readme_wallet_example(tmp_path: Path) -> None:
    variables, commands = wallet_example()
    actions = [c[2] for c in commands]
    assert {"place", "book", "balance", "positions"} <= set(actions), actions
    place = commands[actions.index("place")]
    assert "--wait" in place, "the README's order should wait for its commit"

    with local_network(tmp_path / NETWORK_DIR) as net:
        genesis = read_genesis_file(tmp_path / NETWORK_DIR / "genesis.toml")
        timing = genesis.timing
        # The README's --wait leaves the node its default wait: enough for a view change (two
        # view timeouts) and a block interval on this chain.
        assert 2 * timing.view_timeout_ms + timing.block_interval_ms <= DEFAULT_WAIT_MS
        url = net.nodes[0].rpc_url
        wait_for(
            lambda: height(url) >= 1,
            first_commit_bound_s(timing, len(genesis.validators)),
            "the first commit",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        outputs: dict[str, str] = {}
        for words in commands:
            proc = subprocess.run(
                [*lockstep_command(), *words[1:]],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=START_ALLOWANCE_S + DEFAULT_WAIT_MS / 1000 + WAIT_SLACK_S,
            )
            assert proc.returncode == 0, f"{shlex.join(words)}\n{proc.stderr}"
            outputs[words[2]] = proc.stdout

        # The order is committed (--wait answered only then), and every node commits it: a
        # follower learns the commit from the next proposal, within a view timeout.
        placed = outputs["place"]
        assert re.search(r"node: status\s*│\s*committed\b", placed), placed
        found = re.search(r"tx id\s*│\s*([0-9a-f]{64})", placed)
        assert found is not None, placed

        def outcome(rpc_url: str) -> tuple[str, str] | None:
            doc = httpx.get(f"{rpc_url}/v1/actions/{found.group(1)}", timeout=5).json()
            return (doc["status"], doc["reason"]) if doc.get("status") == "committed" else None

        for node in net.nodes:
            bound_s = (timing.view_timeout_ms + timing.block_interval_ms) / 1000
            assert wait_for(lambda n=node: outcome(n.rpc_url), bound_s, node.name)[1] == "OK"

        price = place[place.index("--price") + 1]
        assert price in outputs["book"], outputs["book"]
        owner = wallet_public_key(tmp_path / variables["W"]).hex()
        assert owner in outputs["balance"] and owner in outputs["positions"]
