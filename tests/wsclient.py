"""A minimal WebSocket client on trio + wsproto (hypercorn's own WebSocket engine), for tests
that talk to a real server."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)


class WsClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []
        self.text = ""

    @classmethod
    async def connect(cls, host: str, port: int, path: str) -> WsClient:
        c = cls(await trio.open_tcp_stream(host, port))
        await c.stream.send_all(c.ws.send(Request(host=f"{host}:{port}", target=path)))
        while True:
            for event in await c._events():
                if isinstance(event, AcceptConnection):
                    return c
                raise ConnectionError(f"websocket refused: {event!r}")

    async def _events(self) -> list[Any]:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.ws.receive_data(data)
        return list(self.ws.events())

    async def send_json(self, obj: Any) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=json.dumps(obj))))

    async def receive_json(self) -> Any:
        while not self.pending:
            for event in await self._events():
                if isinstance(event, Message):
                    self.text += event.data
                    if event.message_finished:
                        self.pending.append(json.loads(self.text))
                        self.text = ""
                elif isinstance(event, Ping):
                    await self.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    raise ConnectionError(f"websocket closed: {event.code}")
        return self.pending.pop(0)

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(self.ws.send(CloseConnection(code=1000)))
        await self.stream.aclose()
