"""Domain-separated Ed25519 signatures and SHA-256 hashing.

Every signature in Lockstep is an Ed25519 signature (RFC 8032, through PyNaCl/libsodium) over

    domain tag || chain id (32 bytes) || canonical CBOR of the body

with one domain tag per kind of object. No tag is a prefix of another (each ends in a NUL byte
and contains no other), so the signed bytes parse uniquely: a signature made for one kind, or on
one chain, never verifies as another kind or on another chain.
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.signing

from .codec import Struct

HASH_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32
CHAIN_ID_BYTES = HASH_BYTES


def _tag(name: str) -> bytes:
    return b"LOCKSTEP/" + name.encode("ascii") + b"/V1\x00"


# One tag per signed or hashed kind. Adding a kind means adding a tag here, never reusing one.
DOMAIN_ORDER = _tag("ORDER")
DOMAIN_CANCEL = _tag("CANCEL")
DOMAIN_BATCH = _tag("BATCH")
DOMAIN_TRANSFER = _tag("TRANSFER")
DOMAIN_WITHDRAW = _tag("WITHDRAW")
DOMAIN_ORACLE = _tag("ORACLE")
DOMAIN_BLOCK = _tag("BLOCK")
DOMAIN_PROPOSAL = _tag("PROPOSAL")
DOMAIN_VOTE = _tag("VOTE")
DOMAIN_TIMEOUT = _tag("TIMEOUT")
DOMAIN_TICKET = _tag("TICKET")
DOMAIN_GENESIS = _tag("GENESIS")
DOMAIN_HANDSHAKE = _tag("HANDSHAKE")
DOMAIN_STATE = _tag("STATE")

ALL_DOMAINS: tuple[bytes, ...] = (
    DOMAIN_ORDER,
    DOMAIN_CANCEL,
    DOMAIN_BATCH,
    DOMAIN_TRANSFER,
    DOMAIN_WITHDRAW,
    DOMAIN_ORACLE,
    DOMAIN_BLOCK,
    DOMAIN_PROPOSAL,
    DOMAIN_VOTE,
    DOMAIN_TIMEOUT,
    DOMAIN_TICKET,
    DOMAIN_GENESIS,
    DOMAIN_HANDSHAKE,
    DOMAIN_STATE,
)
assert len(set(ALL_DOMAINS)) == len(ALL_DOMAINS)
assert all(t.count(b"\x00") == 1 and t.endswith(b"\x00") for t in ALL_DOMAINS)


class SignatureError(ValueError):
    """A signature did not verify (wrong key, kind, chain or bytes). The sender's fault."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def signing_bytes(domain: bytes, chain_id: bytes, body: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers."""
    assert len(chain_id) == CHAIN_ID_BYTES, "chain id must be 32 bytes"
    return domain + chain_id + body


def hash_object(domain: bytes, chain_id: bytes, obj: Struct) -> bytes:
    """SHA-256 identity of an object on a chain (block hash, transaction id)."""
    return sha256(signing_bytes(domain, chain_id, obj.encode()))


class Signer:
    """An Ed25519 signing key. Holds the 32-byte seed; never logged or encoded."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"Ed25519 seed must be {SEED_BYTES} bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, domain: bytes, chain_id: bytes, body: bytes) -> bytes:
        """Sign ``domain || chain_id || body``; ``body`` is canonical CBOR."""
        return self._key.sign(signing_bytes(domain, chain_id, body)).signature

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key.hex()[:16]}…)"


def verify(
    public_key: bytes, signature: bytes, domain: bytes, chain_id: bytes, body: bytes
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``public_key``'s over the body.

    libsodium's verification rejects non-canonical S (no malleability) and small-order keys.
    """
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        raise SignatureError("signature or public key has the wrong length")
    try:
        nacl.bindings.crypto_sign_open(
            signature + signing_bytes(domain, chain_id, body), public_key
        )
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as e:
        raise SignatureError(f"bad signature by {public_key.hex()[:16]}…: {e}") from None
