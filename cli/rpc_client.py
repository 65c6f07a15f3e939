"""A small synchronous HTTP client for a node's RPC (the contract is docs/rpc.md).

Why synchronous: the wallet sends one transaction and exits; an event loop would only add
start-up time. Every failure becomes an :class:`RPCError` carrying the HTTP status and, when
the node gave one, its stable reason name (``INSUFFICIENT_MARGIN``, ``REPLAYED``), so the CLI
prints one clear line instead of a traceback and scripts can branch on the reason.
"""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_RPC_URL = "http://127.0.0.1:26657"
"""A node's ``[rpc] listen_address`` default (``DEFAULT_RPC_PORT`` in node/config.py) on this
machine: where the wallet looks when neither ``--rpc`` nor its files name a node."""

MAX_BOOK_DEPTH = 500
MAX_TRADES_LIMIT = 1_000
"""The node's caps on ``/v1/book?depth`` and ``/v1/trades?limit`` (node/rpc.py); checked here
too, so a wrong flag is refused before any request."""

DEFAULT_TIMEOUT_S = 10.0
"""Status and query requests: a healthy local node answers in milliseconds."""

DEFAULT_WAIT_MS = 10_000
MAX_WAIT_MS = 30_000
"""How long ``submit(wait=True)`` asks the node to wait for commit; the node's own cap."""

WAIT_SLACK_S = 5.0
"""Added to the wait for the HTTP timeout, so the node's 504 answer arrives before ours."""

CBOR_CONTENT_TYPE = "application/cbor"


class RPCError(Exception):
    """The node could not be reached, or answered with an error.

    ``status`` is the HTTP status (None if no answer), ``reason`` the node's reason name.
    """

    def __init__(
        self, url: str, message: str, status: int | None = None, reason: str | None = None
    ) -> None:
        where = f"{url} ({status})" if status is not None else url
        super().__init__(f"{where}: {message}")
        self.url = url
        self.status = status
        self.reason = reason


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def _answer(url: str, response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if body is None:
            raise RPCError(url, "the node's answer is not JSON", response.status_code)
        return body
    # Refusals are {"error": "<REASON>", "message": "...", ...} (docs/rpc.md, "Errors").
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        reason = body["error"]
        message = body.get("message") or ""
        if body.get("tx_id"):
            message += f" (tx {body['tx_id']})"
        raise RPCError(url, f"{reason}: {message}", response.status_code, reason)
    text = response.text.strip()[:200] or response.reason_phrase
    raise RPCError(url, text, response.status_code)


def _request(method: str, url: str, timeout_s: float, **kwargs: Any) -> Any:
    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise RPCError(url, f"no answer within {timeout_s:g} s") from None
    except httpx.HTTPError as e:
        raise RPCError(url, f"cannot reach the node: {e}") from None
    return _answer(url, response)


def submit(
    url: str, tx_bytes: bytes, wait: bool = False, wait_ms: int = DEFAULT_WAIT_MS
) -> dict[str, Any]:
    """POST the canonical CBOR of a SignedTx to ``/v1/actions``.

    Without ``wait`` the node answers once the transaction is admitted to its mempool
    (202, ``"status": "accepted"``); with it, once it is committed in a block (200,
    ``"status": "committed"`` and the ``result``), or 504 ``NOT_COMMITTED_YET`` after
    ``wait_ms``. A refusal raises :class:`RPCError` with the node's reason.
    """
    if not 1 <= wait_ms <= MAX_WAIT_MS:
        raise ValueError(f"wait_ms must be in 1..{MAX_WAIT_MS}")
    target = _url(url, "/v1/actions")
    result = _request(
        "POST",
        target,
        wait_ms / 1000 + WAIT_SLACK_S if wait else DEFAULT_TIMEOUT_S,
        content=tx_bytes,
        headers={"content-type": CBOR_CONTENT_TYPE, "accept": "application/json"},
        params={"wait": "true", "timeout_ms": str(wait_ms)} if wait else None,
    )
    if not isinstance(result, dict):
        raise RPCError(target, "expected a JSON object")
    return result


def get_json(url: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET ``path`` (``/v1/status``, ``/v1/book/BTC-PERP``, ...) and return the parsed JSON."""
    return _request("GET", _url(url, path), DEFAULT_TIMEOUT_S, params=params)


def get_object(url: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`get_json` for the routes that answer one JSON object (all but a few)."""
    result = get_json(url, path, params)
    if not isinstance(result, dict):
        raise RPCError(_url(url, path), "expected a JSON object")
    return result


def get_status(url: str) -> dict[str, Any]:
    """``GET /v1/status``, checked to carry the fields the wallet relies on."""
    status = get_json(url, "/v1/status")
    if not (
        isinstance(status, dict)
        and type(status.get("height")) is int
        and isinstance(status.get("chain_id"), str)
    ):
        raise RPCError(_url(url, "/v1/status"), "answer lacks an integer height and a chain_id")
    return status
