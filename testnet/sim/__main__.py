"""Replay one scenario: ``python -m lockstep.testnet.sim --seed N [--kind K] [--n N]``."""

from __future__ import annotations

import argparse
import sys

from .runner import KINDS, SimulationFailure, random_scenario, run_scenario


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lockstep.testnet.sim")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--kind", choices=KINDS)
    ap.add_argument("--n", type=int)
    args = ap.parse_args(argv)
    sc = random_scenario(args.seed, args.kind, args.n)
    print(sc.describe())
    try:
        r = run_scenario(sc)
    except SimulationFailure as e:
        print(e)
        return 1
    print(
        f"ok: {r.steps} steps, {r.views} views, height {r.committed_height}, "
        f"{r.end_ms} ms simulated"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
