"""ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, suite_string 0x03) composed from libsodium primitives.

Theory of operation
-------------------
A VRF is a keyed hash whose output anyone can check against the public key. The prover holds a
32-byte seed; the secret scalar x and public key Y = x*B are derived exactly as Ed25519 does
(RFC 8032 §5.1.5), so one seed gives the same public key for signing and for the VRF.

For an input alpha the prover:

1. maps (Y, alpha) to a point H by try-and-increment (RFC 9381 §5.4.1.1): hash, read the first
   32 bytes as a compressed point, multiply by the cofactor 8; a failed decode or the identity
   moves on to the next counter byte;
2. computes Gamma = x*H, the value the output is derived from;
3. proves log_B(Y) == log_H(Gamma) with a Schnorr-style proof: nonce k (RFC 8032 §5.1.6, as
   RFC 9381 §5.4.2.2 says), c = Hash(Y, H, Gamma, k*B, k*H) truncated to 16 bytes, s = k + c*x;
4. publishes pi = Gamma || c || s (80 bytes); the output is beta = Hash(8*Gamma) (64 bytes).

The verifier recomputes H, then U = s*B - c*Y and V = s*H - c*Gamma, and accepts iff the
challenge over (Y, H, Gamma, U, V) equals c. Only one Gamma passes for a given (Y, alpha), so
beta is unique: a validator can withhold its ticket, never choose among outputs.

All point arithmetic is libsodium's (``nacl.bindings``); this module only hashes with SHA-512,
compares bytes and checks encodings. Where libsodium's checks and the RFC differ:

* ``crypto_scalarmult_ed25519_noclamp`` refuses points outside the prime-order subgroup, so the
  cofactor multiplications (in encode-to-curve and proof-to-hash) are three doublings with
  ``crypto_core_ed25519_add``, which only requires that the point decodes and lies on the curve.
* libsodium's point decoding accepts a y coordinate >= p and x = 0 with the sign bit set;
  RFC 8032 §5.1.3 rejects both, so the hash-to-point step checks them first, in integers, on
  public data. This keeps encode-to-curve exactly the RFC's (the RFC vectors pass).
* libsodium refuses a product equal to the identity (scalar = 0 mod L). The RFC allows s = 0,
  c = 0 and k = 0, so a zero scalar is mapped to the identity encoding explicitly.

Stricter than the RFC, and why that is safe
-------------------------------------------
* Public key: RFC 9381 §5.4.5 (validate_key, which this module always runs) rejects only keys
  of small order. We also reject any key outside the prime-order subgroup (a key with a torsion
  component). An honest key is x*B, always in that subgroup, so no honest key is refused.
* Gamma: the RFC only requires Gamma to decode to a curve point. We require it to lie in the
  prime-order subgroup and not be of small order. An honest Gamma = x*H with H = 8*H' in the
  subgroup and x != 0 mod L, so no honest proof is refused. The RFC hashes 8*Gamma precisely so
  a torsion component cannot change beta; refusing such Gamma removes malleable re-encodings of
  a proof and leaves every beta as it was. ``vrf_proof_to_hash`` refuses them too.

Because of these two rules a hand-crafted proof that another RFC 9381 verifier would accept can
fail here (never the reverse), so every node must verify tickets with this module: validity is
a consensus rule, and it is this code's rule.

``vrf_proof_to_hash`` checks only the encoding of a proof. Use ``vrf_verify`` on anything a peer
sent; ``vrf_proof_to_hash`` is for proofs this node made or already verified.
"""

from __future__ import annotations

import hashlib
import hmac

from nacl import bindings as _sodium
from nacl.exceptions import CryptoError

# Sizes fixed by RFC 9381 §5.5 for this suite: fLen = qLen = ptLen = 32, cLen = 16, hLen = 64.
PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32
POINT_BYTES = 32
SCALAR_BYTES = 32
CHALLENGE_BYTES = 16
PROOF_BYTES = POINT_BYTES + CHALLENGE_BYTES + SCALAR_BYTES  # 80
OUTPUT_BYTES = 64

SUITE_STRING = b"\x03"  # ECVRF-EDWARDS25519-SHA512-TAI, RFC 9381 §5.5
# Domain separators, RFC 9381 §5.2, §5.4.1.1, §5.4.3.
_ENCODE_TO_CURVE_FRONT = b"\x01"
_CHALLENGE_FRONT = b"\x02"
_PROOF_TO_HASH_FRONT = b"\x03"
_SEPARATOR_BACK = b"\x00"

# The counter of try-and-increment is one octet (RFC 9381 §5.4.1.1). Each try succeeds with
# probability about 1/2, so running out means a broken hash, not bad luck.
ENCODE_TO_CURVE_TRIES_MAX = 256

FIELD_PRIME = 2**255 - 19  # p, RFC 8032 §5.1
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493  # L (q in RFC 9381), RFC 8032 §5.1
_Y_MASK = (1 << 255) - 1  # the low 255 bits of a compressed point hold y, the top bit sign(x)
_SIGN_BIT = 0x80  # in the last byte

_IDENTITY = b"\x01" + bytes(31)  # compressed (0, 1)
_ZERO_SCALAR = bytes(SCALAR_BYTES)
_CHALLENGE_PAD = bytes(SCALAR_BYTES - CHALLENGE_BYTES)
_REDUCE_PAD = bytes(64 - SCALAR_BYTES)  # scalar_reduce takes a 64-byte little-endian integer


class VrfError(Exception):
    """Bytes from outside do not form a valid VRF public key or proof.

    ``check`` names the rule that failed (stable, for metrics and tests); the message explains.
    """

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check


class InvalidProof(VrfError):
    """The proof is malformed or does not prove beta for this public key and alpha."""


class InvalidPublicKey(VrfError):
    """The public key is not a canonical encoding of a point of the prime-order subgroup."""


def vrf_keypair_from_seed(seed: bytes) -> tuple[bytes, bytes]:
    """Return (public_key, seed); public_key = x*B, x derived from seed as in RFC 8032 §5.1.5."""
    _, public_key, _ = _expand_seed(seed)
    return public_key, seed


def vrf_prove(seed: bytes, alpha: bytes) -> bytes:
    """ECVRF_prove (RFC 9381 §5.1): the 80-byte proof pi = Gamma || c || s for alpha."""
    x, public_key, nonce_key = _expand_seed(seed)
    h = _encode_to_curve(public_key, alpha)
    gamma = _sodium.crypto_scalarmult_ed25519_noclamp(x, h)  # x != 0 mod L, H != identity
    k = _sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(nonce_key + h).digest())
    c = _challenge(public_key, h, gamma, _mul_base(k), _mul(k, h, InvalidProof, "H"))
    cx = _sodium.crypto_core_ed25519_scalar_mul(c + _CHALLENGE_PAD, x)
    s = _sodium.crypto_core_ed25519_scalar_add(k, cx)
    return gamma + c + s


def vrf_proof_to_hash(proof: bytes) -> bytes:
    """ECVRF_proof_to_hash (RFC 9381 §5.2): beta from a proof, checking its encoding only.

    Does not authenticate the proof: call it on proofs this node made or already verified.
    """
    gamma, _, s = _decode_proof(proof)
    if not _sodium.crypto_core_ed25519_is_valid_point(gamma):
        raise InvalidProof("point", _describe_invalid_point("Gamma", gamma))
    _check_s(s)
    return _gamma_to_hash(gamma)


def vrf_verify(public_key: bytes, proof: bytes, alpha: bytes) -> bytes:
    """ECVRF_verify (RFC 9381 §5.3, validate_key = TRUE): beta if the proof is valid.

    Raises InvalidPublicKey or InvalidProof (both VrfError) otherwise; the RFC's order of checks
    is kept, so a bad key is reported as such even when the proof is bad too.
    """
    _check_length(public_key, PUBLIC_KEY_BYTES, InvalidPublicKey, "public key")
    gamma, c, s = _decode_proof(proof)
    # c*Y is computed first: libsodium validates Y inside it (subgroup, small order, canonical).
    c_scalar = c + _CHALLENGE_PAD
    c_y = _mul(c_scalar, public_key, InvalidPublicKey, "public key")
    _check_s(s)
    h = _encode_to_curve(public_key, alpha)
    u = _sodium.crypto_core_ed25519_sub(_mul_base(s), c_y)
    c_gamma = _mul(c_scalar, gamma, InvalidProof, "Gamma")  # validates Gamma the same way
    v = _sodium.crypto_core_ed25519_sub(_mul(s, h, InvalidProof, "H"), c_gamma)
    if not hmac.compare_digest(_challenge(public_key, h, gamma, u, v), c):
        raise InvalidProof("challenge", "proof does not match this public key and alpha")
    return _gamma_to_hash(gamma)


def _expand_seed(seed: bytes) -> tuple[bytes, bytes, bytes]:
    """(x mod L, Y = x*B, nonce key) from a seed: RFC 8032 §5.1.5 and §5.1.6.

    x is reduced mod L once; x*P == (x mod L)*P for every P in the prime-order subgroup, which
    is the only place this module multiplies by x.
    """
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ValueError(f"a VRF seed is {SEED_BYTES} bytes")  # our own input: a bug, not a peer
    digest = hashlib.sha512(seed).digest()
    clamped = bytearray(digest[:SCALAR_BYTES])
    clamped[0] &= 248
    clamped[31] &= 127
    clamped[31] |= 64
    x = _sodium.crypto_core_ed25519_scalar_reduce(bytes(clamped) + _REDUCE_PAD)
    return x, _sodium.crypto_scalarmult_ed25519_base_noclamp(x), digest[SCALAR_BYTES:]


def _encode_to_curve(public_key: bytes, alpha: bytes) -> bytes:
    """ECVRF_encode_to_curve_try_and_increment (RFC 9381 §5.4.1.1), salt = PK_string."""
    prefix = hashlib.sha512(SUITE_STRING + _ENCODE_TO_CURVE_FRONT + public_key + alpha)
    for ctr in range(ENCODE_TO_CURVE_TRIES_MAX):
        attempt = prefix.copy()
        attempt.update(bytes((ctr,)) + _SEPARATOR_BACK)
        h = _times_cofactor(attempt.digest()[:POINT_BYTES])
        if h is not None and h != _IDENTITY:
            return h
    raise AssertionError(f"encode_to_curve found no point in {ENCODE_TO_CURVE_TRIES_MAX} tries")


def _times_cofactor(encoded: bytes) -> bytes | None:
    """8*P for the point P that ``encoded`` names under RFC 8032 §5.1.3, or None if none.

    The canonical-encoding checks are done here because libsodium's decoder skips them.
    """
    if _non_canonical(encoded) is not None:
        return None
    try:
        p2 = _sodium.crypto_core_ed25519_add(encoded, encoded)
    except CryptoError:  # y names no curve point
        return None
    p4 = _sodium.crypto_core_ed25519_add(p2, p2)
    return _sodium.crypto_core_ed25519_add(p4, p4)


def _non_canonical(encoded: bytes) -> str | None:
    """Why ``encoded`` is not a canonical point encoding (RFC 8032 §5.1.3), or None."""
    y = int.from_bytes(encoded, "little") & _Y_MASK
    if y >= FIELD_PRIME:
        return "y >= p"
    if encoded[-1] & _SIGN_BIT and y in (1, FIELD_PRIME - 1):  # the points with x = 0
        return "x = 0 with the sign bit set"
    return None


def _decode_proof(proof: bytes) -> tuple[bytes, bytes, bytes]:
    """Split pi into its (Gamma, c, s) strings (RFC 9381 §5.4.4); the values are checked apart."""
    _check_length(proof, PROOF_BYTES, InvalidProof, "proof")
    s_at = POINT_BYTES + CHALLENGE_BYTES
    return proof[:POINT_BYTES], proof[POINT_BYTES:s_at], proof[s_at:]


def _check_length(value: bytes, expected: int, error: type[VrfError], name: str) -> None:
    """Wrong length is a peer's garbage (typed error); a wrong type is our bug (TypeError)."""
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != expected:
        raise error("length", f"{name} is {len(value)} bytes, expected {expected}")


def _check_s(s: bytes) -> None:
    if int.from_bytes(s, "little") >= GROUP_ORDER:
        raise InvalidProof("s_range", "s is not below the group order L")


def _challenge(y: bytes, h: bytes, gamma: bytes, u: bytes, v: bytes) -> bytes:
    """ECVRF_challenge_generation (RFC 9381 §5.4.3): c as its cLen = 16 byte string."""
    data = SUITE_STRING + _CHALLENGE_FRONT + y + h + gamma + u + v + _SEPARATOR_BACK
    return hashlib.sha512(data).digest()[:CHALLENGE_BYTES]


def _gamma_to_hash(gamma: bytes) -> bytes:
    """beta = Hash(suite || 0x03 || 8*Gamma || 0x00) (RFC 9381 §5.2), Gamma already valid."""
    g2 = _sodium.crypto_core_ed25519_add(gamma, gamma)
    g4 = _sodium.crypto_core_ed25519_add(g2, g2)
    g8 = _sodium.crypto_core_ed25519_add(g4, g4)
    return hashlib.sha512(SUITE_STRING + _PROOF_TO_HASH_FRONT + g8 + _SEPARATOR_BACK).digest()


def _mul_base(scalar: bytes) -> bytes:
    """scalar*B for a scalar below L; libsodium refuses 0, whose product is the identity."""
    if scalar == _ZERO_SCALAR:
        return _IDENTITY
    return _sodium.crypto_scalarmult_ed25519_base_noclamp(scalar)


def _mul(scalar: bytes, point: bytes, error: type[VrfError], name: str) -> bytes:
    """scalar*point for a scalar in [0, L), refusing points outside the prime-order subgroup.

    libsodium validates the point on every multiplication; a zero scalar skips the
    multiplication, so the point is validated explicitly there.
    """
    if scalar == _ZERO_SCALAR:
        if not _sodium.crypto_core_ed25519_is_valid_point(point):
            raise error("point", _describe_invalid_point(name, point))
        return _IDENTITY
    try:
        return _sodium.crypto_scalarmult_ed25519_noclamp(scalar, point)
    except CryptoError:
        raise error("point", _describe_invalid_point(name, point)) from None


def _describe_invalid_point(name: str, point: bytes) -> str:
    """Say which of libsodium's point checks ``point`` fails (only called after one failed)."""
    reason = _non_canonical(point)
    if reason is not None:
        return f"{name} is not a canonical encoding ({reason})"
    eight_p = _times_cofactor(point)
    if eight_p is None:
        return f"{name} is not a point on the curve"
    if eight_p == _IDENTITY:
        return f"{name} has small order"
    if _sodium.crypto_core_ed25519_is_valid_point(point):
        # The multiplication failed on a valid point, so the product was the identity, which a
        # scalar in [1, L) cannot give: our bug, not the peer's.
        raise AssertionError(f"libsodium refused a valid {name}; scalar out of range?")
    return f"{name} is not in the prime-order subgroup"
