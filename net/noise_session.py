"""Secure sessions: Noise XX bound to Ed25519 identities, and the record layer after it.

Theory of operation. A connection starts with the three messages of
``Noise_XX_25519_ChaChaPoly_SHA256`` (the ``noiseprotocol`` package), each sent as a 2-byte
big-endian length and the Noise message (as libp2p's Noise transport does):

    -> e                     payload: Hello(version, chain id), clear but hashed
    <- e, ee, s, es          payload: Identity(responder's Ed25519 key, signature)
    -> s, se                 payload: Identity(initiator's Ed25519 key, signature)

The prologue is ``b"lockstep/noise/v1" || chain id``, so peers on different chains can never
complete a handshake; the clear ``Hello`` only lets the responder say *why* before refusing. Each
``Identity`` signature covers the sender's Noise static key under ``DOMAIN_HANDSHAKE`` and the
chain id, so the encrypted channel is bound to the Ed25519 key the genesis names. A side refuses
the other if the key is not admitted (genesis validators and configured observers), if the
signature does not verify, or (when dialling a known peer) if the key is not the one dialled.

After the handshake each direction is a stream of *records*: 2-byte length || Noise transport
message (ciphertext + 16-byte tag, at most 65535 bytes, the Noise limit). Records carry an
opaque plaintext stream that ``framing`` cuts into frames, so a 2 MiB frame simply spans 33
records and a record can hold hundreds of small frames: one ``seal`` and one ``send_all`` per
batch of queued frames, one ``open`` per received record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings
import trio
from lockstep.consensus.codec import CodecError, decode
from lockstep.consensus.crypto import DOMAIN_HANDSHAKE, SignatureError, Signer, verify
from noise.connection import Keypair, NoiseConnection

from .envelope import PROTOCOL_VERSION, Hello, Identity, NoiseStaticKey

__all__ = [
    "NOISE_PROTOCOL_NAME",
    "RECORD_PLAINTEXT_MAX",
    "HandshakeError",
    "RecordError",
    "RecordReader",
    "SecureSession",
    "handshake",
    "noise_static_from_seed",
    "prologue",
]

NOISE_PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE_PREFIX = b"lockstep/noise/v1"
NOISE_MAX_MESSAGE = 65535
"""Noise spec §3: a Noise message is at most 65535 bytes."""
TAG_BYTES = 16
"""ChaCha20-Poly1305 authentication tag."""
RECORD_PLAINTEXT_MAX = NOISE_MAX_MESSAGE - TAG_BYTES
HANDSHAKE_MESSAGE_MAX = 1024
"""Our XX messages are 32 + 2×(48 + 16) + ~110 bytes of payload at most; anything larger is junk."""

_LEN = struct.Struct(">H")


def prologue(chain_id: bytes) -> bytes:
    return PROLOGUE_PREFIX + chain_id


def noise_static_from_seed(seed: bytes) -> bytes:
    """X25519 private key derived from the Ed25519 seed (libsodium's birational map)."""
    _, sk = nacl.bindings.crypto_sign_seed_keypair(seed)
    return nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(sk)


class HandshakeError(Exception):
    """The peer failed the handshake. ``reason`` is the code logged with ``peer_refused``."""

    def __init__(self, reason: str, detail: str = "", remote_key: bytes | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.remote_key = remote_key


class RecordError(Exception):
    """A transport record failed: too short, or failed authentication (garbage or tampering)."""

    reason = "decrypt_failed"


# --------------------------------------------------------------------------- record layer


class SecureSession:
    """Both cipher states of a finished handshake and the authenticated peer identity."""

    __slots__ = ("_dec", "_enc", "handshake_hash", "initiator", "leftover", "remote_key")

    def __init__(
        self, conn: NoiseConnection, remote_key: bytes, initiator: bool, leftover: bytes
    ) -> None:
        self.remote_key = remote_key
        self.initiator = initiator
        self.handshake_hash: bytes = conn.get_handshake_hash()
        self._enc = conn.noise_protocol.cipher_state_encrypt
        self._dec = conn.noise_protocol.cipher_state_decrypt
        self.leftover = leftover
        """Bytes received after the last handshake message (the first records, maybe)."""

    def seal(self, plaintext: bytes) -> bytes:
        """Records (length-prefixed Noise transport messages) carrying ``plaintext``."""
        enc = self._enc.encrypt_with_ad
        n = len(plaintext)
        if n <= RECORD_PLAINTEXT_MAX:
            ct = enc(None, plaintext)
            return _LEN.pack(len(ct)) + ct
        parts = []
        view = memoryview(plaintext)
        for i in range(0, n, RECORD_PLAINTEXT_MAX):
            ct = enc(None, bytes(view[i : i + RECORD_PLAINTEXT_MAX]))
            parts.append(_LEN.pack(len(ct)))
            parts.append(ct)
        return b"".join(parts)

    def reader(self) -> RecordReader:
        """The receiving half; one per session."""
        return RecordReader(self._dec)


class RecordReader:
    """Sans-I/O record parser and decrypter: ``feed(bytes) -> plaintext`` (maybe empty)."""

    __slots__ = ("_buf", "_dec")

    def __init__(self, dec: object) -> None:
        self._buf = bytearray()
        self._dec = dec.decrypt_with_ad  # type: ignore[attr-defined]

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        out = []
        dec = self._dec
        while end - pos >= 2:
            n = (buf[pos] << 8) | buf[pos + 1]
            stop = pos + 2 + n
            if stop > end:
                break
            if n < TAG_BYTES:
                raise RecordError(f"record of {n} bytes is shorter than its tag")
            try:
                out.append(dec(None, bytes(buf[pos + 2 : stop])))
            except Exception as e:  # cryptography's InvalidTag or a Noise error
                raise RecordError(f"record failed authentication: {type(e).__name__}") from None
            pos = stop
        if pos:
            del buf[:pos]
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)


# --------------------------------------------------------------------------- handshake


@dataclass(frozen=True, slots=True)
class HandshakeConfig:
    signer: Signer
    chain_id: bytes
    static_private: bytes
    is_admitted: Callable[[bytes], bool]
    """Is this Ed25519 key allowed to connect (genesis validator or configured observer)?"""


class _Buffered:
    """Exact reads of length-prefixed handshake messages from a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def read_message(self) -> bytes:
        await self._fill(2)
        (n,) = _LEN.unpack_from(self.buf, 0)
        if n > HANDSHAKE_MESSAGE_MAX:
            raise HandshakeError("bad_handshake", f"handshake message of {n} bytes")
        await self._fill(2 + n)
        msg = bytes(self.buf[2 : 2 + n])
        del self.buf[: 2 + n]
        return msg

    async def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            data = await self.stream.receive_some(65536)
            if not data:
                raise HandshakeError("handshake_eof", f"connection closed ({len(self.buf)} bytes)")
            self.buf += data


def _identity_payload(cfg: HandshakeConfig, static_public: bytes) -> bytes:
    body = NoiseStaticKey(static_public).encode()
    sig = cfg.signer.sign(DOMAIN_HANDSHAKE, cfg.chain_id, body)
    return Identity(cfg.signer.public_key, sig).encode()


def _check_identity(
    cfg: HandshakeConfig, payload: bytes, remote_static: bytes, expected_key: bytes | None
) -> bytes:
    try:
        ident = decode(payload, Identity, max_bytes=HANDSHAKE_MESSAGE_MAX)
    except CodecError as e:
        raise HandshakeError("bad_handshake", f"identity payload: {e}") from None
    key = ident.identity_key
    if expected_key is not None and key != expected_key:
        raise HandshakeError("unexpected_identity", "not the key dialled", key)
    if not cfg.is_admitted(key):
        raise HandshakeError("unknown_key", "key not in the validator or observer set", key)
    body = NoiseStaticKey(remote_static).encode()
    try:
        verify(key, ident.signature, DOMAIN_HANDSHAKE, cfg.chain_id, body)
    except SignatureError:
        raise HandshakeError("bad_signature", "identity signature does not verify", key) from None
    return key


def _new_connection(cfg: HandshakeConfig, initiator: bool) -> NoiseConnection:
    conn = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(prologue(cfg.chain_id))
    conn.set_keypair_from_private_bytes(Keypair.STATIC, cfg.static_private)
    conn.start_handshake()
    return conn


def _static_public(conn: NoiseConnection) -> bytes:
    return conn.noise_protocol.keypairs["s"].public_bytes


def _framed(msg: bytes) -> bytes:
    return _LEN.pack(len(msg)) + msg


async def handshake(
    stream: trio.abc.Stream,
    cfg: HandshakeConfig,
    *,
    initiator: bool,
    expected_key: bytes | None = None,
    hello: Hello | None = None,
    identity_payload: bytes | None = None,
) -> SecureSession:
    """Run Noise XX on ``stream``; return the session or raise :class:`HandshakeError`.

    ``hello`` and ``identity_payload`` override what we send (tests of hostile peers only).
    The caller bounds the time (``trio.fail_after``).
    """
    conn = _new_connection(cfg, initiator)
    rd = _Buffered(stream)
    my_static = _static_public(conn)
    payload = identity_payload
    try:
        if initiator:
            hello = hello or Hello(PROTOCOL_VERSION, cfg.chain_id)
            await stream.send_all(_framed(bytes(conn.write_message(hello.encode()))))
            hs = conn.noise_protocol.handshake_state
            msg2 = await rd.read_message()
            try:
                p2 = bytes(conn.read_message(msg2))
            except Exception as e:  # noiseprotocol raises many types
                raise HandshakeError("bad_handshake", f"message 2: {type(e).__name__}") from None
            remote = _check_identity(cfg, p2, hs.rs.public_bytes, expected_key)
            payload = payload or _identity_payload(cfg, my_static)
            await stream.send_all(_framed(bytes(conn.write_message(payload))))
        else:
            msg1 = await rd.read_message()
            try:
                p1 = bytes(conn.read_message(msg1))
                got = decode(p1, Hello, max_bytes=HANDSHAKE_MESSAGE_MAX)
            except CodecError as e:
                raise HandshakeError("bad_handshake", f"hello: {e}") from None
            except Exception as e:
                raise HandshakeError("bad_handshake", f"message 1: {type(e).__name__}") from None
            if got.chain_id != cfg.chain_id:
                raise HandshakeError("wrong_chain_id", f"peer is on {got.chain_id.hex()[:16]}")
            if got.version != PROTOCOL_VERSION:
                raise HandshakeError("wrong_version", f"peer speaks version {got.version}")
            payload = payload or _identity_payload(cfg, my_static)
            await stream.send_all(_framed(bytes(conn.write_message(payload))))
            hs = conn.noise_protocol.handshake_state
            msg3 = await rd.read_message()
            try:
                p3 = bytes(conn.read_message(msg3))
            except Exception as e:
                raise HandshakeError("bad_handshake", f"message 3: {type(e).__name__}") from None
            remote = _check_identity(cfg, p3, hs.rs.public_bytes, expected_key)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
        raise HandshakeError("handshake_eof", f"connection lost: {type(e).__name__}") from None
    assert conn.handshake_finished
    return SecureSession(conn, remote, initiator, bytes(rd.buf))
