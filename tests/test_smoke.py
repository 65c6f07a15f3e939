"""The installed package and its command line work as a newcomer would use them."""

import subprocess
import sys


def test_lockstep_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lockstep.cli.main", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "testnet" in out.stdout
