"""A small synchronous HTTP client for a node's RPC (the contract is docs/rpc.md).

Why synchronous: the wallet sends one transaction and exits; an event loop would only add
start-up time. Every failure becomes an :class:`RPCError` carrying the HTTP status and, when
the node gave one, its stable reason name (``INSUFFICIENT_MARGIN``), so the CLI prints one clear
line instead of a traceback and scripts can branch on the reason.
"""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_TIMEOUT_S = 10.0
"""Status and query requests: a healthy local node answers in milliseconds."""

WAIT_TIMEOUT_S = 60.0
"""Client-side bound for ``submit(wait=True)``: the node itself gives up at 30 s
(docs/rpc.md), so this only fires if the node hangs."""

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
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        reason = error.get("reason")
        message = error.get("message") or reason or "error"
        raise RPCError(
            url, f"{reason}: {message}" if reason else message, response.status_code, reason
        )
    raise RPCError(url, response.text.strip()[:200] or response.reason_phrase, response.status_code)


def _request(method: str, url: str, timeout_s: float, **kwargs: Any) -> Any:
    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise RPCError(url, f"no answer within {timeout_s:g} s") from None
    except httpx.HTTPError as e:
        raise RPCError(url, f"cannot reach the node: {e}") from None
    return _answer(url, response)


def submit(url: str, tx_bytes: bytes, wait: bool = False) -> dict[str, Any]:
    """POST the canonical CBOR of a SignedTx to ``/v1/actions``.

    Without ``wait`` the node answers once the transaction is admitted to its mempool
    (``"status": "pending"``); with it, once it is finalized in a block or dropped.
    """
    target = _url(url, "/v1/actions")
    result = _request(
        "POST",
        target,
        WAIT_TIMEOUT_S if wait else DEFAULT_TIMEOUT_S,
        content=tx_bytes,
        headers={"content-type": CBOR_CONTENT_TYPE, "accept": "application/json"},
        params={"wait": "true"} if wait else None,
    )
    if not isinstance(result, dict):
        raise RPCError(target, "expected a JSON object")
    return result


def get_json(url: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET ``path`` (``/v1/status``, ``/v1/book/BTC-PERP``, ...) and return the parsed JSON."""
    return _request("GET", _url(url, path), DEFAULT_TIMEOUT_S, params=params)


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
