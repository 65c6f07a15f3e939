"""Pure cores of the network layer: frames, records, seen-cache, buckets, scores, backoff."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lockstep.consensus.crypto import Signer
from lockstep.net.envelope import PeerSet
from lockstep.net.framing import (
    MAX_FRAME_BYTES,
    FrameDecoder,
    FrameTooLarge,
    Kind,
    TruncatedFrame,
    UnknownFrameKind,
    encode_frame,
)
from lockstep.net.gossip import GossipParams, GossipRouter, SeenCache, Verdict, message_id
from lockstep.net.noise_session import (
    RECORD_PLAINTEXT_MAX,
    HandshakeConfig,
    RecordError,
    handshake,
    noise_static_from_seed,
)
from lockstep.net.peer_manager import Backoff, BackoffParams, keep_new_session
from lockstep.net.peer_score import PeerScore, ScoreParams
from lockstep.net.rate_limit import TokenBucket

from .conftest import seed_of

frames_st = st.lists(
    st.tuples(st.sampled_from([Kind.TX, Kind.CONSENSUS, Kind.PING]), st.binary(max_size=32)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(frames=frames_st, cuts=st.lists(st.integers(1, 64), max_size=40))
def test_frames_survive_any_chunking(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(k, b) for k, b in frames)
    dec = FrameDecoder()
    out: list[tuple[int, bytes]] = []
    pos = 0
    for c in cuts:
        out += dec.feed(stream[pos : pos + c])
        pos += c
    out += dec.feed(stream[pos:])
    assert out == [(int(k), b) for k, b in frames]
    assert dec.buffered == 0
    dec.close()


def test_frame_limits_are_checked_on_the_header() -> None:
    dec = FrameDecoder()
    header = struct.pack(">BI", Kind.TX, MAX_FRAME_BYTES[Kind.TX] + 1)
    with pytest.raises(FrameTooLarge) as err:
        dec.feed(header)  # no body at all: refused from the 5 header bytes
    assert (err.value.kind, err.value.limit) == (Kind.TX, MAX_FRAME_BYTES[Kind.TX])
    with pytest.raises(UnknownFrameKind):
        FrameDecoder().feed(b"\xee\x00\x00\x00\x01x")
    # The limit holds even when the header arrives split in two.
    dec = FrameDecoder()
    assert dec.feed(header[:3]) == []
    with pytest.raises(FrameTooLarge):
        dec.feed(header[3:])
    dec = FrameDecoder()
    dec.feed(encode_frame(Kind.TX, b"abc")[:-1])
    with pytest.raises(TruncatedFrame):
        dec.close()


async def _session_pair():
    import trio.testing

    g_chain = seed_of("chain")
    a, b = Signer(seed_of("a")), Signer(seed_of("b"))
    left, right = trio.testing.memory_stream_pair()

    def cfg(s: Signer) -> HandshakeConfig:
        return HandshakeConfig(s, g_chain, noise_static_from_seed(s.seed), lambda k: True)

    out: dict[str, object] = {}

    async def run(name: str, stream, s: Signer, initiator: bool) -> None:
        out[name] = await handshake(stream, cfg(s), initiator=initiator)

    async with trio.open_nursery() as n:
        n.start_soon(run, "a", left, a, True)
        n.start_soon(run, "b", right, b, False)
    return out["a"], out["b"], a, b


async def test_large_plaintext_is_split_into_noise_records() -> None:
    sa, sb, a, b = await _session_pair()
    assert sa.remote_key == b.public_key and sb.remote_key == a.public_key
    assert sa.handshake_hash == sb.handshake_hash
    payload = bytes(random.Random(1).randbytes(2 * 1024 * 1024 + 7))
    wire = sa.seal(payload)
    n_records = -(-len(payload) // RECORD_PLAINTEXT_MAX)
    assert len(wire) == len(payload) + n_records * (2 + 16)
    reader = sb.reader()
    got = b"".join(reader.feed(wire[i : i + 10_000]) for i in range(0, len(wire), 10_000))
    assert got == payload
    tampered = bytearray(sa.seal(b"hello"))
    tampered[5] ^= 1
    with pytest.raises(RecordError):
        reader.feed(bytes(tampered))


def test_seen_cache_is_bounded_and_forgets_after_ttl() -> None:
    c = SeenCache(max_entries=100, ttl_s=10.0, now=0.0)
    for i in range(1000):
        c.add(b"%d" % i, Verdict.ACCEPT, now=0.0)
        assert len(c) <= 100
    assert b"999" in c and b"0" not in c
    c.add(b"x", Verdict.REJECT, now=1.0)
    assert c.get(b"x") == Verdict.REJECT
    c.add(b"y", Verdict.ACCEPT, now=6.0)  # rotation: x is in the previous generation
    assert b"x" in c
    c.add(b"z", Verdict.ACCEPT, now=12.0)  # second rotation: x forgotten
    assert b"x" not in c and b"y" in c


def test_token_bucket() -> None:
    b = TokenBucket(rate=10.0, burst=5.0, now=0.0)
    assert all(b.try_take(1, 0.0) for _ in range(5))
    assert not b.try_take(1, 0.0)
    assert b.tokens == 0.0
    assert b.try_take(1, 0.1)
    assert not b.try_take(1, 0.1)
    assert b.try_take(5, 10.0) and not b.try_take(1, 10.0)  # capped at the burst


def test_peer_score_penalties_and_decay() -> None:
    p = ScoreParams()
    s = PeerScore(p, now=0.0)
    for _ in range(9):
        assert not s.on_invalid(0.0)
    assert s.on_invalid(0.0)  # 10² × -1 = -100: at the threshold
    assert s.score(0.0) == -100.0
    assert s.score(30.0) > -5.0  # 0.9^30 of it is left
    for _ in range(10_000):
        s.on_first_delivery()
    assert s.score(30.0) <= p.first_cap  # good behaviour is capped


def test_router_verdicts() -> None:
    r = GossipRouter(GossipParams(), now=0.0)
    peer, other = b"p" * 32, b"o" * 32
    r.add_peer(peer, 0.0)
    r.add_peer(other, 0.0)
    verdicts = {b"good": Verdict.ACCEPT, b"bad": Verdict.REJECT, b"meh": Verdict.IGNORE}
    calls: list[bytes] = []

    def validate(p: bytes, kind: int, body: bytes) -> Verdict:
        calls.append(body)
        return verdicts[body]

    frames = [(Kind.TX, b"good"), (Kind.TX, b"bad"), (Kind.TX, b"meh"), (Kind.TX, b"good")]
    res = r.receive(peer, frames, 0.0, validate)
    assert res.accepted == [(Kind.TX, b"good", None, message_id(b"good"))]
    assert (res.rejected, res.ignored, res.duplicates, res.disconnect) == (1, 1, 1, None)
    assert calls == [b"good", b"bad", b"meh"]
    assert r.score(peer, 0.0) == pytest.approx(-1.0 + 0.01)
    # Another peer relaying the rejected message is penalised too, without re-validation.
    res = r.receive(other, [(Kind.TX_RELAY, peer + b"bad")], 0.0, validate)
    assert res.duplicates == 1 and len(calls) == 3 and r.score(other, 0.0) == -1.0
    relayed = r.receive(other, [(Kind.TX_RELAY, peer + b"new")], 0.0, lambda *a: Verdict.ACCEPT)
    assert relayed.accepted == [(Kind.TX, b"new", peer, message_id(b"new"))]
    assert message_id(b"new") in r.seen
    assert r.mark_own(b"new", 0.0) is None and r.mark_own(b"mine", 0.0) == message_id(b"mine")


def test_router_disconnects_a_peer_sending_invalid_messages() -> None:
    r = GossipRouter(GossipParams(), now=0.0)
    peer = b"p" * 32
    r.add_peer(peer, 0.0)
    frames = [(Kind.TX, b"bad-%d" % i) for i in range(50)]
    res = r.receive(peer, frames, 0.0, lambda *a: Verdict.REJECT)
    assert res.disconnect == "low_score" and res.rejected == 10


def test_backoff_grows_with_jitter_and_is_reproducible() -> None:
    params = BackoffParams(base_s=0.5, cap_s=30.0)
    b1, b2 = Backoff(params, random.Random(7)), Backoff(params, random.Random(7))
    d1 = [b1.next_delay() for _ in range(10)]
    assert d1 == [b2.next_delay() for _ in range(10)]
    for n, d in enumerate(d1, 1):
        full = min(30.0, 0.5 * 2 ** (n - 1))
        assert full / 2 <= d <= full
    b1.reset()
    assert b1.next_delay() <= 0.5


def test_tie_break_is_agreed_by_both_ends() -> None:
    lo, hi = b"\x01" * 32, b"\x02" * 32
    for existing_by_lo in (True, False):
        for new_by_lo in (True, False):
            # From lo's side "initiated locally" means initiated by lo; from hi's, by hi.
            at_lo = keep_new_session(lo, hi, existing_by_lo, new_by_lo)
            at_hi = keep_new_session(hi, lo, not existing_by_lo, not new_by_lo)
            assert at_lo == at_hi
            if existing_by_lo != new_by_lo:
                assert at_lo == new_by_lo  # the session lo initiated wins


def test_peer_set_roundtrip() -> None:
    keys = tuple(sorted(Signer(seed_of(f"k{i}")).public_key for i in range(5)))
    assert PeerSet.__name__ and PeerSet(keys).encode()


def test_net_imports_only_consensus_types_and_its_libraries() -> None:
    """ARCHITECTURE.md: ``net/`` may import ``lockstep.consensus`` and nothing else of ours."""
    import ast
    import pathlib
    import sys

    allowed = {"trio", "noise", "nacl", "cbor2", "structlog", "lockstep"}
    for path in sorted((pathlib.Path(__file__).parent.parent / "net").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root in allowed or root in sys.stdlib_module_names, (path.name, name)
                if root == "lockstep":
                    assert name.startswith("lockstep.consensus"), (path.name, name)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(0, 300))
def test_garbage_frames_raise_only_frame_errors(data: bytes, cut: int) -> None:
    from lockstep.net.framing import FrameError

    dec = FrameDecoder()
    try:
        dec.feed(data[:cut])
        dec.feed(data[cut:])
        dec.close()
    except FrameError:
        pass
    assert dec.buffered <= max(MAX_FRAME_BYTES.values()) + 5


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=120))
def test_garbage_envelopes_raise_only_codec_errors(body: bytes) -> None:
    from lockstep.consensus.codec import CodecError, decode
    from lockstep.net.envelope import Goodbye, Ping, Pong, SyncRequest, SyncResponse

    for cls in (Ping, Pong, Goodbye, PeerSet, SyncRequest, SyncResponse):
        with contextlib.suppress(CodecError):
            decode(body, cls, max_bytes=1 << 20)


def test_addresses_are_parsed_strictly() -> None:
    from lockstep.net.host import _split_address

    assert _split_address("127.0.0.1:27000") == ("127.0.0.1", 27000)
    assert _split_address("[::1]:9") == ("::1", 9)
    for bad in ("nohost", "host:", ":80", "h:0", "h:70000", "h:x"):
        with pytest.raises(ValueError):
            _split_address(bad)


def test_seen_cache_first_sight() -> None:
    c = SeenCache(max_entries=4, ttl_s=10.0, now=0.0)
    assert c.first_sight(b"a", Verdict.ACCEPT, 0.0) is None
    assert c.first_sight(b"a", Verdict.ACCEPT, 0.0) == Verdict.ACCEPT
    c.set_verdict(b"a", Verdict.REJECT)
    assert c.first_sight(b"a", Verdict.ACCEPT, 0.0) == Verdict.REJECT
    for k in (b"b", b"c", b"d"):
        assert c.first_sight(k, Verdict.IGNORE, 0.0) is None
        assert len(c) <= 4
    assert c.first_sight(b"d", Verdict.ACCEPT, 1.0) == Verdict.IGNORE
