"""Deterministic simulation of many consensus replicas: seeded network, clock, faults.

``run_seed(seed)`` draws a scenario from the seed and runs the real replicas over a simulated
network until every honest replica has committed past global stabilisation time, checking the
safety and liveness invariants on every step (see ``runner``). A failure raises
``SimulationFailure`` naming the seed, the broken invariant and the last events; the same seed
replays exactly: ``python -m lockstep.testnet.sim --seed N``.
"""

from .byzantine import BEHAVIOURS
from .network import NetworkFaults, Partition
from .runner import (
    KINDS,
    SIM_TIMING,
    SIZES,
    Crash,
    Result,
    Scenario,
    Simulation,
    SimulationFailure,
    build_network,
    random_scenario,
    run_scenario,
    run_seed,
    shared_verifier,
)

__all__ = [
    "BEHAVIOURS",
    "KINDS",
    "SIM_TIMING",
    "SIZES",
    "Crash",
    "NetworkFaults",
    "Partition",
    "Result",
    "Scenario",
    "Simulation",
    "SimulationFailure",
    "build_network",
    "random_scenario",
    "run_scenario",
    "run_seed",
    "shared_verifier",
]
