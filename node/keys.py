"""Key files for validators and wallets.

A *key file* holds secret seeds in JSON. It is written with mode 0600 and refused on load if
anyone but the owner can read it (as OpenSSH refuses a world-readable identity), because a
leaked validator key can equivocate in the validator's name and a leaked wallet key spends.

Validator key file: ``{"kind": "lockstep-validator-key", "ed25519_seed": hex, "vrf_seed": hex}``
— two seeds, because the signing key and the VRF key serve different purposes.

Wallet key file, encrypted: ``{"kind": "lockstep-wallet", "public_key": hex, "kdf":
"argon2id", "opslimit", "memlimit", "salt": hex, "nonce": hex, "ciphertext": hex}``: the seed
sealed with XSalsa20-Poly1305 (PyNaCl ``SecretBox``) under a key derived from the passphrase
with Argon2id (PyNaCl ``pwhash.argon2id``, the "moderate" limits). With ``--insecure`` (testnet
keys) the seed is stored in the clear as ``{"kind": "lockstep-wallet-insecure", "seed": hex}``.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from lockstep.consensus.crypto import SEED_BYTES, Signer
from lockstep.consensus.vrf import vrf_keypair_from_seed

VALIDATOR_KIND = "lockstep-validator-key"
WALLET_KIND = "lockstep-wallet"
WALLET_INSECURE_KIND = "lockstep-wallet-insecure"
KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """A key file is missing, unreadable by policy, malformed, or the passphrase is wrong."""


@dataclass(frozen=True)
class ValidatorKeys:
    signer: Signer
    vrf_seed: bytes

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key

    @property
    def vrf_public_key(self) -> bytes:
        return vrf_keypair_from_seed(self.vrf_seed)[0]

    @classmethod
    def generate(cls) -> ValidatorKeys:
        return cls(Signer(os.urandom(SEED_BYTES)), os.urandom(SEED_BYTES))


def write_secret_file(path: Path, doc: dict[str, object]) -> None:
    """Write JSON with mode 0600 from the first byte (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, KEY_FILE_MODE)
    os.replace(tmp, path)


def read_secret_file(path: Path) -> dict[str, object]:
    """Read a key file, refusing one that group or others may read or write."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open; a key file must "
            f"be readable by its owner only (run: chmod 600 {path})"
        )
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise KeyFileError(f"{path}: not a readable JSON key file: {e}") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{path}: not a key file")
    return doc


def _seed(doc: dict[str, object], key: str, path: Path) -> bytes:
    try:
        raw = bytes.fromhex(str(doc[key]))
    except (KeyError, ValueError):
        raise KeyFileError(f"{path}: missing or malformed {key!r}") from None
    if len(raw) != SEED_BYTES:
        raise KeyFileError(f"{path}: {key!r} must be {SEED_BYTES} bytes")
    return raw


def save_validator_keys(path: Path, keys: ValidatorKeys) -> None:
    write_secret_file(
        path,
        {
            "kind": VALIDATOR_KIND,
            "ed25519_seed": keys.signer.seed.hex(),
            "vrf_seed": keys.vrf_seed.hex(),
            "public_key": keys.public_key.hex(),
            "vrf_public_key": keys.vrf_public_key.hex(),
        },
    )


def load_validator_keys(path: Path) -> ValidatorKeys:
    doc = read_secret_file(path)
    if doc.get("kind") != VALIDATOR_KIND:
        raise KeyFileError(f"{path}: not a validator key file (kind={doc.get('kind')!r})")
    keys = ValidatorKeys(Signer(_seed(doc, "ed25519_seed", path)), _seed(doc, "vrf_seed", path))
    if doc.get("public_key") not in (None, keys.public_key.hex()):
        raise KeyFileError(f"{path}: public_key does not match the seed")
    return keys


def save_wallet(path: Path, signer: Signer, passphrase: str | None) -> None:
    """Save a wallet seed, encrypted unless ``passphrase`` is None (testnet ``--insecure``)."""
    if passphrase is None:
        doc: dict[str, object] = {
            "kind": WALLET_INSECURE_KIND,
            "public_key": signer.public_key.hex(),
            "seed": signer.seed.hex(),
        }
    else:
        if not passphrase:
            raise KeyFileError("an empty passphrase protects nothing; use --insecure instead")
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        ops = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
        mem = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=ops, memlimit=mem
        )
        sealed = nacl.secret.SecretBox(key).encrypt(signer.seed)
        doc = {
            "kind": WALLET_KIND,
            "public_key": signer.public_key.hex(),
            "kdf": "argon2id",
            "opslimit": ops,
            "memlimit": mem,
            "salt": salt.hex(),
            "nonce": sealed.nonce.hex(),
            "ciphertext": sealed.ciphertext.hex(),
        }
    write_secret_file(path, doc)


def wallet_public_key(path: Path) -> bytes:
    """The wallet's public key, without the passphrase."""
    doc = read_secret_file(path)
    try:
        return bytes.fromhex(str(doc["public_key"]))
    except (KeyError, ValueError):
        raise KeyFileError(f"{path}: missing public_key") from None


def wallet_is_encrypted(path: Path) -> bool:
    return read_secret_file(path).get("kind") == WALLET_KIND


def load_wallet(path: Path, passphrase: str | None = None) -> Signer:
    doc = read_secret_file(path)
    kind = doc.get("kind")
    if kind == WALLET_INSECURE_KIND:
        signer = Signer(_seed(doc, "seed", path))
    elif kind == WALLET_KIND:
        if passphrase is None:
            raise KeyFileError(f"{path}: encrypted wallet, a passphrase is required")
        try:
            salt = bytes.fromhex(str(doc["salt"]))
            nonce = bytes.fromhex(str(doc["nonce"]))
            ciphertext = bytes.fromhex(str(doc["ciphertext"]))
            ops, mem = int(doc["opslimit"]), int(doc["memlimit"])  # type: ignore[call-overload]
        except (KeyError, ValueError, TypeError):
            raise KeyFileError(f"{path}: malformed encrypted wallet") from None
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=ops, memlimit=mem
        )
        try:
            seed = nacl.secret.SecretBox(key).decrypt(ciphertext, nonce)
        except nacl.exceptions.CryptoError:
            raise KeyFileError(f"{path}: wrong passphrase") from None
        signer = Signer(seed)
    else:
        raise KeyFileError(f"{path}: not a wallet file (kind={kind!r})")
    if doc.get("public_key") not in (None, signer.public_key.hex()):
        raise KeyFileError(f"{path}: public_key does not match the seed")
    return signer
