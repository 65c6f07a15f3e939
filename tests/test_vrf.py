"""ECVRF-EDWARDS25519-SHA512-TAI: RFC 9381 vectors, rejection of malformed input, properties."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import nacl.bindings as sodium
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lockstep.consensus import vrf
from lockstep.consensus.vrf import (
    OUTPUT_BYTES,
    PROOF_BYTES,
    PUBLIC_KEY_BYTES,
    SEED_BYTES,
    InvalidProof,
    InvalidPublicKey,
    VrfError,
    vrf_keypair_from_seed,
    vrf_proof_to_hash,
    vrf_prove,
    vrf_verify,
)

# RFC 9381 Appendix B.3, Examples 16, 17, 18 (the keys are RFC 8032 TEST 1, 2, 3).
RFC9381_TAI_VECTORS = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "307c83864f2833cb427a2ef1c00a013cfdff2768d980c0a3a520f006904de94f",
        "91bbed02a99461df1ad4c6564a5f5d829d0b90cfc7903e7a5797bd658abf3318",  # ctr = 0
        "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f"
        "26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12"
        "68a1b0db10836d9826a528ca76567805",
        "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff"
        "66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
        id="example-16",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "68bd9ed75882d52815a97585caf4790a7f6c6b3b7f821c5e259a24b02e502e51",
        "5b659fc3d4e9263fd9a4ed1d022d75eaacc20df5e09f9ea937502396598dc551",  # ctr = 1
        "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593"
        "3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d"
        "a3ef39226bbc355bdc9850112c8f4b02",
        "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb"
        "5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
        id="example-17",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "909a8b755ed902849023a55b15c23d11ba4d7f4ec5c2f51b1325a181991ea95c",
        "bf4339376f5542811de615e3313d2b36f6f53c0acfebb482159711201192576a",  # ctr = 0
        "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80"
        "96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a"
        "2d41b00b05081ed0f58ee5e31b3a970e",
        "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45"
        "2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
        id="example-18",
    ),
]
VECTOR_FIELDS = "sk_hex, pk_hex, alpha_hex, x_hex, h_hex, pi_hex, beta_hex"

L = vrf.GROUP_ORDER
P = vrf.FIELD_PRIME
IDENTITY = bytes.fromhex("01" + "00" * 31)

# Canonical encodings of the 8 points of small order (orders 1, 2, 4, 4, 8, 8, 8, 8).
SMALL_ORDER_POINTS = [
    IDENTITY,
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000080"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
]
ORDER_8_POINT = SMALL_ORDER_POINTS[4]

SEED = bytes(range(SEED_BYTES))
ALPHA = b"chain-id||epoch||seed"


def times_eight(point: bytes) -> bytes:
    doubled = point
    for _ in range(3):
        doubled = sodium.crypto_core_ed25519_add(doubled, doubled)
    return doubled


def encode_int(value: int) -> bytes:
    return value.to_bytes(32, "little")


@pytest.fixture(scope="module")
def signed() -> tuple[bytes, bytes, bytes]:
    """(public key, proof, beta) for SEED and ALPHA."""
    public_key, _ = vrf_keypair_from_seed(SEED)
    proof = vrf_prove(SEED, ALPHA)
    return public_key, proof, vrf_verify(public_key, proof, ALPHA)


# --- RFC 9381 Appendix B.3 ------------------------------------------------------------------


@pytest.mark.parametrize(VECTOR_FIELDS, RFC9381_TAI_VECTORS)
def test_rfc9381_vector(
    sk_hex: str, pk_hex: str, alpha_hex: str, x_hex: str, h_hex: str, pi_hex: str, beta_hex: str
) -> None:
    sk, pk, alpha = bytes.fromhex(sk_hex), bytes.fromhex(pk_hex), bytes.fromhex(alpha_hex)
    assert vrf_keypair_from_seed(sk) == (pk, sk)
    x, public_key, _ = vrf._expand_seed(sk)
    assert public_key == pk
    assert int.from_bytes(x, "little") == int.from_bytes(bytes.fromhex(x_hex), "little") % L
    assert vrf._encode_to_curve(pk, alpha).hex() == h_hex
    proof = vrf_prove(sk, alpha)
    assert proof.hex() == pi_hex
    assert vrf_proof_to_hash(proof).hex() == beta_hex
    assert vrf_verify(pk, proof, alpha).hex() == beta_hex


@pytest.mark.parametrize(VECTOR_FIELDS, RFC9381_TAI_VECTORS)
def test_rfc9381_vector_rejects_other_alpha(
    sk_hex: str, pk_hex: str, alpha_hex: str, x_hex: str, h_hex: str, pi_hex: str, beta_hex: str
) -> None:
    with pytest.raises(InvalidProof) as caught:
        vrf_verify(bytes.fromhex(pk_hex), bytes.fromhex(pi_hex), bytes.fromhex(alpha_hex) + b"!")
    assert caught.value.check == "challenge"


def test_sizes() -> None:
    assert (PROOF_BYTES, OUTPUT_BYTES, PUBLIC_KEY_BYTES, SEED_BYTES) == (80, 64, 32, 32)


def test_vrf_key_is_the_ed25519_key() -> None:
    public_key, seed = vrf_keypair_from_seed(SEED)
    assert seed == SEED
    assert public_key == bytes(nacl.signing.SigningKey(SEED).verify_key)


# --- tampered proofs -----------------------------------------------------------------------


def test_every_single_bit_flip_is_rejected(signed: tuple[bytes, bytes, bytes]) -> None:
    """Flips in Gamma, c and s: each is refused, as a bad point, bad s or a challenge mismatch."""
    public_key, proof, _ = signed
    for bit in range(PROOF_BYTES * 8):
        tampered = bytearray(proof)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidProof) as caught:
            vrf_verify(public_key, bytes(tampered), ALPHA)
        if bit < 256:
            assert caught.value.check in ("point", "challenge"), bit
        elif bit < 384:
            assert caught.value.check == "challenge", bit
        else:
            assert caught.value.check in ("s_range", "challenge"), bit


def test_wrong_public_key(signed: tuple[bytes, bytes, bytes]) -> None:
    _, proof, _ = signed
    other_key, _ = vrf_keypair_from_seed(bytes(SEED_BYTES))
    with pytest.raises(InvalidProof) as caught:
        vrf_verify(other_key, proof, ALPHA)
    assert caught.value.check == "challenge"


def test_wrong_alpha(signed: tuple[bytes, bytes, bytes]) -> None:
    public_key, proof, _ = signed
    with pytest.raises(InvalidProof, match="does not match"):
        vrf_verify(public_key, proof, ALPHA + b"\x00")


@pytest.mark.parametrize("forge", [lambda s: s + L, lambda s: s + 2 * L, lambda s: 2**256 - 1])
def test_s_not_below_l(signed: tuple[bytes, bytes, bytes], forge: Callable[[int], int]) -> None:
    """s + L proves the same thing modulo L; the RFC refuses it (no malleability)."""
    public_key, proof, _ = signed
    forged = proof[:48] + encode_int(forge(int.from_bytes(proof[48:], "little")))
    with pytest.raises(InvalidProof) as caught:
        vrf_verify(public_key, forged, ALPHA)
    assert caught.value.check == "s_range"
    with pytest.raises(InvalidProof) as caught:
        vrf_proof_to_hash(forged)
    assert caught.value.check == "s_range"


def test_s_equal_to_l_is_rejected(signed: tuple[bytes, bytes, bytes]) -> None:
    public_key, proof, _ = signed
    with pytest.raises(InvalidProof, match="group order"):
        vrf_verify(public_key, proof[:48] + encode_int(L), ALPHA)


@pytest.mark.parametrize("length", [0, 1, PROOF_BYTES - 1, PROOF_BYTES + 1, 2 * PROOF_BYTES])
def test_wrong_proof_length(signed: tuple[bytes, bytes, bytes], length: int) -> None:
    public_key, proof, _ = signed
    wrong = (proof * 2)[:length]
    with pytest.raises(InvalidProof) as caught:
        vrf_verify(public_key, wrong, ALPHA)
    assert caught.value.check == "length"
    with pytest.raises(InvalidProof):
        vrf_proof_to_hash(wrong)


def test_gamma_with_torsion_component_is_rejected(signed: tuple[bytes, bytes, bytes]) -> None:
    """Stricter than the RFC: Gamma + T (T of order 8) gives the same beta, and is refused."""
    public_key, proof, beta = signed
    gamma = sodium.crypto_core_ed25519_add(proof[:32], ORDER_8_POINT)
    assert times_eight(gamma) == times_eight(proof[:32])  # same beta under the RFC's hash
    forged = gamma + proof[32:]
    with pytest.raises(InvalidProof, match="prime-order subgroup"):
        vrf_verify(public_key, forged, ALPHA)
    with pytest.raises(InvalidProof, match="prime-order subgroup"):
        vrf_proof_to_hash(forged)
    assert vrf_proof_to_hash(proof) == beta


@pytest.mark.parametrize("gamma", SMALL_ORDER_POINTS)
def test_small_order_gamma_is_rejected(signed: tuple[bytes, bytes, bytes], gamma: bytes) -> None:
    public_key, proof, _ = signed
    with pytest.raises(InvalidProof) as caught:
        vrf_verify(public_key, gamma + proof[32:], ALPHA)
    assert caught.value.check == "point"
    with pytest.raises(InvalidProof):
        vrf_proof_to_hash(gamma + proof[32:])


def test_zero_challenge_and_response_are_handled(signed: tuple[bytes, bytes, bytes]) -> None:
    """c = 0 and s = 0 give identity products, which libsodium refuses; the RFC does not."""
    public_key, proof, _ = signed
    for c, s in ((bytes(16), proof[48:]), (proof[32:48], bytes(32)), (bytes(16), bytes(32))):
        with pytest.raises(InvalidProof) as caught:
            vrf_verify(public_key, proof[:32] + c + s, ALPHA)
        assert caught.value.check == "challenge"


def test_zero_challenge_still_validates_points(signed: tuple[bytes, bytes, bytes]) -> None:
    public_key, proof, _ = signed
    zero_c = proof[:32] + bytes(16) + proof[48:]
    with pytest.raises(InvalidPublicKey, match="small order"):
        vrf_verify(IDENTITY, zero_c, ALPHA)
    with pytest.raises(InvalidProof, match="small order"):
        vrf_verify(public_key, ORDER_8_POINT + bytes(16) + proof[48:], ALPHA)


# --- public key validation -----------------------------------------------------------------


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS)
def test_small_order_points_are_what_they_claim(point: bytes) -> None:
    assert times_eight(point) == IDENTITY
    assert not sodium.crypto_core_ed25519_is_valid_point(point)


@pytest.mark.parametrize("public_key", SMALL_ORDER_POINTS)
def test_small_order_public_key(signed: tuple[bytes, bytes, bytes], public_key: bytes) -> None:
    _, proof, _ = signed
    with pytest.raises(InvalidPublicKey, match="small order") as caught:
        vrf_verify(public_key, proof, ALPHA)
    assert caught.value.check == "point"


@pytest.mark.parametrize(
    "y",
    [
        pytest.param(P, id="y=p (the order-4 point y=0)"),
        pytest.param(P + 1, id="y=p+1 (the identity)"),
        pytest.param(2**255 - 1, id="y=2^255-1"),
    ],
)
@pytest.mark.parametrize("sign", [0, 1 << 255])
def test_non_canonical_public_key(signed: tuple[bytes, bytes, bytes], y: int, sign: int) -> None:
    _, proof, _ = signed
    with pytest.raises(InvalidPublicKey, match=r"not a canonical encoding \(y >= p\)"):
        vrf_verify(encode_int(y | sign), proof, ALPHA)


def test_identity_with_sign_bit_is_non_canonical(signed: tuple[bytes, bytes, bytes]) -> None:
    _, proof, _ = signed
    with pytest.raises(InvalidPublicKey, match="sign bit"):
        vrf_verify(encode_int(1 | 1 << 255), proof, ALPHA)


def test_public_key_off_the_curve(signed: tuple[bytes, bytes, bytes]) -> None:
    _, proof, _ = signed
    off_curve = next(
        candidate
        for i in range(100)
        if vrf._times_cofactor(candidate := hashlib.sha256(bytes([i])).digest()) is None
        and vrf._non_canonical(candidate) is None
    )
    with pytest.raises(InvalidPublicKey, match="not a point on the curve"):
        vrf_verify(off_curve, proof, ALPHA)


def test_public_key_with_torsion_component(signed: tuple[bytes, bytes, bytes]) -> None:
    """Stricter than the RFC's validate_key, which only refuses keys of small order."""
    public_key, proof, _ = signed
    mixed = sodium.crypto_core_ed25519_add(public_key, ORDER_8_POINT)
    with pytest.raises(InvalidPublicKey, match="prime-order subgroup"):
        vrf_verify(mixed, proof, ALPHA)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_wrong_public_key_length(signed: tuple[bytes, bytes, bytes], length: int) -> None:
    public_key, proof, _ = signed
    with pytest.raises(InvalidPublicKey) as caught:
        vrf_verify((public_key * 2)[:length], proof, ALPHA)
    assert caught.value.check == "length"


def test_bad_key_reported_before_bad_proof(signed: tuple[bytes, bytes, bytes]) -> None:
    _, proof, _ = signed
    with pytest.raises(InvalidPublicKey):
        vrf_verify(IDENTITY, proof[:48] + encode_int(L), ALPHA)


def test_errors_share_a_base() -> None:
    assert issubclass(InvalidProof, VrfError)
    assert issubclass(InvalidPublicKey, VrfError)
    assert not issubclass(InvalidProof, InvalidPublicKey)


def test_non_bytes_inputs_are_programming_errors(signed: tuple[bytes, bytes, bytes]) -> None:
    public_key, proof, _ = signed
    with pytest.raises(TypeError):
        vrf_verify(bytearray(public_key), proof, ALPHA)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vrf_verify(public_key, bytearray(proof), ALPHA)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        vrf_prove(SEED[:31], ALPHA)


# --- encode-to-curve -----------------------------------------------------------------------


def test_hash_to_point_rejects_non_canonical_encodings() -> None:
    """libsodium's decoder accepts these; RFC 8032 §5.1.3 (and so RFC 9381) does not."""
    assert vrf._times_cofactor(encode_int(P + 1)) is None
    assert vrf._times_cofactor(encode_int(1 | 1 << 255)) is None
    assert vrf._times_cofactor(encode_int(P - 1 | 1 << 255)) is None
    assert vrf._times_cofactor(IDENTITY) == IDENTITY


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.binary(min_size=SEED_BYTES, max_size=SEED_BYTES),
    alpha=st.binary(max_size=128),
    other=st.binary(max_size=128),
)
def test_prove_verify_roundtrip(seed: bytes, alpha: bytes, other: bytes) -> None:
    public_key, _ = vrf_keypair_from_seed(seed)
    proof = vrf_prove(seed, alpha)
    assert len(proof) == PROOF_BYTES
    assert vrf_prove(seed, alpha) == proof  # deterministic
    beta = vrf_verify(public_key, proof, alpha)
    assert len(beta) == OUTPUT_BYTES
    assert beta == vrf_proof_to_hash(proof)
    if other != alpha:
        with pytest.raises(InvalidProof):
            vrf_verify(public_key, proof, other)
