"""Crypto and codec micro-benchmark: signing, verification, ECVRF, encoding and decoding rates.

Prints each rate and the ratio of our verify-with-decoding path (strict canonical decode of a
signed order from bytes + domain-separated Ed25519 verification + tx id) to raw PyNaCl verify of
the same signed bytes, measured in the same run (goal ≥ 0.8: decoding must not cost more than
a quarter of a verification).

    python bench/crypto.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable

import nacl.signing
from lockstep.consensus.actions import (
    Batch,
    CancelOrder,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    decode_and_verify_tx,
    decode_tx,
)
from lockstep.consensus.crypto import DOMAIN_VOTE, Signer
from lockstep.consensus.messages import VoteData
from lockstep.consensus.vrf import vrf_keypair_from_seed, vrf_proof_to_hash, vrf_prove, vrf_verify


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``, measured over about ``seconds`` of CPU time."""
    n, batch = 0, 64
    start = time.process_time()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        spent = time.process_time() - start
        if spent >= seconds:
            return n / spent
        batch = min(batch * 2, 4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per figure")
    args = parser.parse_args()
    s = args.seconds

    chain = hashlib.sha256(b"bench").digest()
    signer = Signer(hashlib.sha256(b"trader").digest())
    place = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 600_123, 25, 1 << 40)
    order = Order(signer.public_key, 1_732_000_000_000 << 20, 1_000, place)
    tx = order.sign(signer, chain)
    raw = tx.encode()
    msg = tx.signing_bytes(chain)
    verify_key = nacl.signing.VerifyKey(signer.public_key)
    batch = Batch(signer.public_key, 2, 1_000, tuple(CancelOrder(0, i) for i in range(16)))
    batch_raw = batch.sign(signer, chain).encode()
    vote = VoteData(123_456, 120_000, b"\x07" * 32).encode()
    vrf_seed = hashlib.sha256(b"vrf").digest()
    vrf_pk, _ = vrf_keypair_from_seed(vrf_seed)
    proof = vrf_prove(vrf_seed, b"alpha")

    figures: list[tuple[str, float]] = []

    def measure(name: str, fn: Callable[[], object]) -> float:
        r = rate(fn, s)
        figures.append((name, r))
        print(f"{name:44} {r:>12,.0f} /s   {1e6 / r:8.2f} µs")
        return r

    print(f"signed order: {len(raw)} bytes; 16-cancel batch: {len(batch_raw)} bytes")
    measure("Ed25519 sign (vote)", lambda: signer.sign(DOMAIN_VOTE, chain, vote))
    raw_verify = measure(
        "Ed25519 verify, raw PyNaCl VerifyKey", lambda: verify_key.verify(msg, tx.signature)
    )
    ours = measure(
        "order: decode + verify + tx id (ours)", lambda: decode_and_verify_tx(raw, chain)
    )
    measure("order: strict decode only", lambda: decode_tx(raw))
    measure("order: canonical encode", tx.encode)
    measure("batch of 16: strict decode only", lambda: decode_tx(batch_raw))
    measure("ECVRF prove", lambda: vrf_prove(vrf_seed, b"alpha"))
    measure("ECVRF verify", lambda: vrf_verify(vrf_pk, proof, b"alpha"))
    measure("ECVRF proof to hash", lambda: vrf_proof_to_hash(proof))
    ratio = ours / raw_verify
    print(f"\nratio verify-with-decoding / raw PyNaCl verify = {ratio:.3f}   (goal ≥ 0.8)")


if __name__ == "__main__":
    main()
