"""node/keys.py: key files round-trip, are written 0600, and are refused when others can read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from lockstep.consensus.crypto import Signer
from lockstep.node.keys import (
    KeyFileError,
    ValidatorKeys,
    load_validator_keys,
    load_wallet,
    save_validator_keys,
    save_wallet,
    wallet_is_encrypted,
    wallet_public_key,
)

from tests.conftest import seed_of

PASSPHRASE_ENV = "LOCKSTEP_WALLET_PASSPHRASE"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_validator_key_round_trip(tmp_path: Path) -> None:
    keys = ValidatorKeys(Signer(seed_of("v")), seed_of("vrf"))
    path = tmp_path / "config" / "validator_key.json"
    save_validator_keys(path, keys)
    assert mode(path) == 0o600
    loaded = load_validator_keys(path)
    assert loaded.signer.seed == keys.signer.seed
    assert loaded.vrf_seed == keys.vrf_seed
    assert loaded.vrf_public_key == keys.vrf_public_key
    assert json.loads(path.read_text())["public_key"] == keys.public_key.hex()
    assert not path.with_name(path.name + ".tmp").exists()


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_key_file_others_can_read(tmp_path: Path, bad_mode: int) -> None:
    path = tmp_path / "validator_key.json"
    save_validator_keys(path, ValidatorKeys.generate())
    path.chmod(bad_mode)
    with pytest.raises(KeyFileError, match=f"permissions {bad_mode:04o} are too open"):
        load_validator_keys(path)


def test_validator_key_checks(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    with pytest.raises(KeyFileError, match="no such key file"):
        load_validator_keys(path)
    save_wallet(path, Signer(seed_of("w")), None)
    with pytest.raises(KeyFileError, match="not a validator key file"):
        load_validator_keys(path)
    keys = ValidatorKeys(Signer(seed_of("v")), seed_of("vrf"))
    save_validator_keys(path, keys)
    doc = json.loads(path.read_text())
    doc["public_key"] = Signer(seed_of("other")).public_key.hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="does not match"):
        load_validator_keys(path)
    doc["ed25519_seed"] = "abcd"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="must be 32 bytes"):
        load_validator_keys(path)


def test_insecure_wallet_round_trip(tmp_path: Path) -> None:
    signer = Signer(seed_of("trader"))
    path = tmp_path / "w.json"
    save_wallet(path, signer, None)
    assert mode(path) == 0o600
    assert not wallet_is_encrypted(path)
    assert wallet_public_key(path) == signer.public_key
    assert load_wallet(path).seed == signer.seed


def test_encrypted_wallet_round_trip_and_wrong_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One Argon2id MODERATE derivation costs ~0.5 s; this test does three.
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    signer = Signer(seed_of("trader"))
    path = tmp_path / "w.json"
    save_wallet(path, signer, os.environ[PASSPHRASE_ENV])
    assert mode(path) == 0o600
    assert wallet_is_encrypted(path)
    doc = json.loads(path.read_text())
    assert signer.seed.hex() not in path.read_text()
    assert doc["kdf"] == "argon2id"
    assert wallet_public_key(path) == signer.public_key  # no passphrase needed
    assert load_wallet(path, os.environ[PASSPHRASE_ENV]).seed == signer.seed
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_wallet(path, "Tr0ub4dor&3")
    with pytest.raises(KeyFileError, match="a passphrase is required"):
        load_wallet(path)


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="empty passphrase"):
        save_wallet(tmp_path / "w.json", Signer(seed_of("t")), "")
    assert not (tmp_path / "w.json").exists()


def test_world_readable_wallet_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    save_wallet(path, Signer(seed_of("t")), None)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_wallet(path)
    with pytest.raises(KeyFileError, match="too open"):
        wallet_public_key(path)
