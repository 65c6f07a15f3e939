"""Shared fixtures: deterministic keys and a small genesis, built from the real code."""

from __future__ import annotations

import hashlib

import pytest
from lockstep.consensus.crypto import Signer
from lockstep.consensus.genesis import (
    Account,
    Genesis,
    Validator,
    default_markets,
    default_timing,
)
from lockstep.consensus.vrf import vrf_keypair_from_seed


def seed_of(label: str) -> bytes:
    """A deterministic 32-byte seed per label, so failing tests replay exactly."""
    return hashlib.sha256(label.encode()).digest()


def make_genesis(n_validators: int = 4, n_accounts: int = 4) -> tuple[Genesis, list[Signer]]:
    validators = []
    signers = []
    for i in range(n_validators):
        s = Signer(seed_of(f"validator-{i}"))
        vrf_pk, _ = vrf_keypair_from_seed(seed_of(f"vrf-{i}"))
        validators.append(Validator(s.public_key, vrf_pk, 1, f"127.0.0.1:{27000 + i}", f"v{i}"))
        signers.append(s)
    traders = [Signer(seed_of(f"trader-{j}")) for j in range(n_accounts)]
    accounts = tuple(
        sorted((Account(t.public_key, 10**12) for t in traders), key=lambda a: a.owner)
    )
    g = Genesis(
        "test-chain", 0, tuple(validators), default_markets(), accounts, 10**12, default_timing()
    )
    return g, signers + traders


@pytest.fixture
def genesis() -> Genesis:
    return make_genesis()[0]
