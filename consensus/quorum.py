"""The validator set, quorum weights, and verification of votes, QCs, timeouts and TCs.

Theory of operation: every certificate names its signers by validator index and carries one
Ed25519 signature per signer. With total weight ``W`` the tolerated faulty weight is
``f = (W - 1) // 3`` and a quorum is any set of weight ``≥ W - f`` (``2f + 1`` when every
weight is 1 and ``W = 3f + 1``). Two quorums overlap in weight ``≥ W - 2f ≥ f + 1``, so in at
least one honest validator: the single fact every safety argument in ``docs/protocol`` rests on.

Signature checks go through a :class:`Verifier`, passed in by the caller. The production one
calls libsodium; the simulator shares one :class:`CachingVerifier` among all replicas, which is
sound because verification is a pure function of (key, signed bytes, signature): a forged
signature is cached as forged.

Every check raises a typed :class:`CertificateError` carrying the numbers, and never mutates
anything; callers drop the message (it is always the sender's fault).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from .crypto import (
    DOMAIN_BLOCK,
    DOMAIN_PROPOSAL,
    DOMAIN_TIMEOUT,
    DOMAIN_VOTE,
    sha256,
    signing_bytes,
)
from .genesis import Genesis, Validator
from .messages import Proposal, QuorumCert, Timeout, TimeoutCert, TimeoutData, Vote, VoteData
from .vrf import VrfError, vrf_verify

__all__ = [
    "BadSignature",
    "CachingVerifier",
    "CertificateError",
    "DuplicateSigner",
    "InsufficientWeight",
    "InvalidCertificate",
    "UnknownSigner",
    "ValidatorSet",
    "Verifier",
    "genesis_block_hash",
    "genesis_qc",
]


# --------------------------------------------------------------------------- errors


class CertificateError(ValueError):
    """A vote, timeout, proposal or certificate from a peer does not verify."""


class UnknownSigner(CertificateError):
    def __init__(self, index: int, n_validators: int) -> None:
        super().__init__(f"signer index {index} is not below {n_validators} validators")
        self.index, self.n_validators = index, n_validators


class DuplicateSigner(CertificateError):
    def __init__(self, index: int) -> None:
        super().__init__(f"signer {index} appears more than once (or out of order)")
        self.index = index


class InsufficientWeight(CertificateError):
    def __init__(self, weight: int, quorum: int) -> None:
        super().__init__(f"signers hold weight {weight}, quorum is {quorum}")
        self.weight, self.quorum = weight, quorum


class BadSignature(CertificateError):
    def __init__(self, signer: int, what: str) -> None:
        super().__init__(f"bad {what} signature by validator {signer}")
        self.signer, self.what = signer, what


class InvalidCertificate(CertificateError):
    """A cross-field rule of a certificate fails (e.g. TC high QC is not the highest)."""


# --------------------------------------------------------------------------- verifiers


class Verifier:
    """Checks Ed25519 signatures and ECVRF proofs. Stateless; the real thing."""

    def signature_ok(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        """``message`` is the full signed bytes (``domain || chain id || body``)."""
        return _ed25519_ok(public_key, signature, message)

    def vrf_output(self, public_key: bytes, proof: bytes, alpha: bytes) -> bytes | None:
        """The VRF output ``beta`` if the proof is valid, else None."""
        try:
            return vrf_verify(public_key, proof, alpha)
        except VrfError:
            return None


def _ed25519_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


class CachingVerifier(Verifier):
    """Memoises results. Sound because each result is a pure function of its arguments.

    Bounded: the cache is cleared when it exceeds ``max_entries`` (simulator use only).
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._sig: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._vrf: dict[tuple[bytes, bytes, bytes], bytes | None] = {}
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def signature_ok(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        key = (public_key, signature, message)
        hit = self._sig.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        if len(self._sig) >= self.max_entries:
            self._sig.clear()
        ok = self._sig[key] = _ed25519_ok(public_key, signature, message)
        return ok

    def vrf_output(self, public_key: bytes, proof: bytes, alpha: bytes) -> bytes | None:
        key = (public_key, proof, alpha)
        if key in self._vrf:
            return self._vrf[key]
        if len(self._vrf) >= self.max_entries:
            self._vrf.clear()
        out = self._vrf[key] = super().vrf_output(public_key, proof, alpha)
        return out


# --------------------------------------------------------------------------- genesis anchor


def genesis_block_hash(chain_id: bytes) -> bytes:
    """The hash the first block's parent names: ``SHA-256(DOMAIN_BLOCK || chain id || "genesis")``.

    No block encodes to the ASCII bytes ``genesis`` (a CBOR array starts with 0x8_), so this can
    never collide with a real block's hash.
    """
    return sha256(signing_bytes(DOMAIN_BLOCK, chain_id, b"genesis"))


def genesis_qc(chain_id: bytes) -> QuorumCert:
    """The genesis QC: view 0, height 0, the genesis hash, no signers. Valid by definition."""
    return QuorumCert(VoteData(0, 0, genesis_block_hash(chain_id)), (), ())


# --------------------------------------------------------------------------- validator set


@dataclass(frozen=True)
class _Member:
    index: int
    public_key: bytes
    vrf_key: bytes
    weight: int


class ValidatorSet:
    """The genesis validators with their weights, and every certificate check.

    ``quorum_weight = W - (W - 1) // 3``; ``weak_weight = (W - 1) // 3 + 1`` (``f + 1``: at
    least one honest signer).
    """

    def __init__(self, validators: Sequence[Validator], chain_id: bytes, verifier: Verifier):
        assert validators, "a validator set is never empty"
        self.members = tuple(
            _Member(i, v.public_key, v.vrf_key, v.weight) for i, v in enumerate(validators)
        )
        self.n = len(self.members)
        self.total_weight = sum(m.weight for m in self.members)
        self.max_faulty_weight = (self.total_weight - 1) // 3
        self.quorum_weight = self.total_weight - self.max_faulty_weight
        self.weak_weight = self.max_faulty_weight + 1
        self.chain_id = chain_id
        self.verifier = verifier
        self.genesis_qc = genesis_qc(chain_id)
        self._verified_qcs: set[tuple[VoteData, tuple[int, ...], tuple[bytes, ...]]] = set()
        self._verified_tcs: set[tuple[int, tuple[int, ...], tuple[int, ...], tuple[bytes, ...]]] = (
            set()
        )
        by_key: dict[bytes, int] = {}
        for m in self.members:
            by_key[m.public_key] = m.index
        self.index_of_key = by_key

    @classmethod
    def from_genesis(cls, genesis: Genesis, verifier: Verifier) -> ValidatorSet:
        return cls(genesis.validators, genesis.chain_id, verifier)

    def weight(self, index: int) -> int:
        return self.members[index].weight

    def weight_of(self, signers: Sequence[int]) -> int:
        """Weight of a signer list after checking indices are known, unique and increasing."""
        total = 0
        last = -1
        for s in signers:
            if not 0 <= s < self.n:
                raise UnknownSigner(s, self.n)
            if s <= last:
                raise DuplicateSigner(s)
            last = s
            total += self.members[s].weight
        return total

    # -- single messages ------------------------------------------------------------------

    def _check_sig(self, signer: int, signature: bytes, domain: bytes, body: bytes, what: str):
        if not 0 <= signer < self.n:
            raise UnknownSigner(signer, self.n)
        message = signing_bytes(domain, self.chain_id, body)
        if not self.verifier.signature_ok(self.members[signer].public_key, signature, message):
            raise BadSignature(signer, what)

    def verify_vote(self, vote: Vote) -> None:
        self._check_sig(vote.voter, vote.signature, DOMAIN_VOTE, vote.data.encode(), "vote")

    def verify_timeout(self, timeout: Timeout) -> None:
        """The signature over ``TimeoutData(view, high_qc.view)`` and the carried high QC."""
        self._check_sig(
            timeout.voter, timeout.signature, DOMAIN_TIMEOUT, timeout.data.encode(), "timeout"
        )
        self.verify_qc(timeout.high_qc)

    def verify_proposal_signature(self, proposal: Proposal) -> None:
        block = proposal.block
        self._check_sig(
            block.proposer, proposal.signature, DOMAIN_PROPOSAL, block.encode(), "proposal"
        )

    # -- certificates ---------------------------------------------------------------------

    def verify_qc(self, qc: QuorumCert) -> None:
        """A QC is valid iff it is the genesis QC, or its distinct known signers hold quorum
        weight and each signature is valid over ``qc.data`` under ``DOMAIN_VOTE``."""
        if qc.data.view == 0:
            if qc != self.genesis_qc:
                raise InvalidCertificate("a view-0 QC must be the genesis QC")
            return
        key = (qc.data, qc.signers, qc.signatures)
        if key in self._verified_qcs:
            return
        if len(qc.signers) != len(qc.signatures):
            raise InvalidCertificate("QC signer and signature counts differ")
        weight = self.weight_of(qc.signers)
        if weight < self.quorum_weight:
            raise InsufficientWeight(weight, self.quorum_weight)
        body = qc.data.encode()
        for signer, signature in zip(qc.signers, qc.signatures, strict=True):
            self._check_sig(signer, signature, DOMAIN_VOTE, body, "QC vote")
        if len(self._verified_qcs) > 4096:
            self._verified_qcs.clear()
        self._verified_qcs.add(key)

    def verify_tc(self, tc: TimeoutCert) -> None:
        """A TC is valid iff its distinct known signers hold quorum weight, each signature is
        valid over ``TimeoutData(tc.view, high_qc_views[i])``, ``high_qc`` is a valid QC and
        its view is the maximum of ``high_qc_views`` (so it is the highest QC reported)."""
        key = (tc.view, tc.signers, tc.high_qc_views, tc.signatures)
        if len(tc.signers) != len(tc.signatures) or len(tc.signers) != len(tc.high_qc_views):
            raise InvalidCertificate("TC signer, signature and view counts differ")
        if not tc.high_qc_views or max(tc.high_qc_views) != tc.high_qc.view:
            raise InvalidCertificate("TC high QC is not the highest its signers reported")
        if tc.high_qc.view >= tc.view:
            raise InvalidCertificate(f"TC high QC view {tc.high_qc.view} ≥ TC view {tc.view}")
        self.verify_qc(tc.high_qc)
        if key in self._verified_tcs:
            return
        weight = self.weight_of(tc.signers)
        if weight < self.quorum_weight:
            raise InsufficientWeight(weight, self.quorum_weight)
        for signer, hqc_view, signature in zip(
            tc.signers, tc.high_qc_views, tc.signatures, strict=True
        ):
            body = TimeoutData(tc.view, hqc_view).encode()
            self._check_sig(signer, signature, DOMAIN_TIMEOUT, body, "TC timeout")
        if len(self._verified_tcs) > 4096:
            self._verified_tcs.clear()
        self._verified_tcs.add(key)
