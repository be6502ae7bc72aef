"""A scripted IRC server for client tests: real sockets on 127.0.0.1, lines the test picks.

It does just enough to be a server (registers a client with 001 once it has NICK and
USER, answers PING, echoes JOIN with a one-name NAMES, follows NICK) and otherwise
sends what the test tells it to, byte for byte: hostile lines included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatroom.protocol import Message, PeerProtocolError, parse

__all__ = ["SERVER_NAME", "FakeLink", "FakeServer", "fake_server"]

SERVER_NAME = "fake.example"
USER_HOST = "127.0.0.1"


class FakeLink:
    """One client connection: what it sent (parsed), and a way to send it raw bytes."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.received: list[Message] = []
        self.nick = "*"
        self.user = "user"
        self.registered = False

    @property
    def source(self) -> str:
        return f"{self.nick}!{self.user}@{USER_HOST}"

    def send(self, *lines: bytes | str) -> None:
        """Send lines as given: bytes go out exactly (add your own CR-LF); str gets one."""
        for line in lines:
            self.writer.write(line if isinstance(line, bytes) else (line + "\r\n").encode())

    def got(self, command: str) -> list[Message]:
        """What the client sent with this command."""
        return [m for m in self.received if m.command == command]


class FakeServer:
    """Listens on an ephemeral port of 127.0.0.1; ``links`` are its connections, in order."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.links: list[FakeLink] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def link(self) -> FakeLink:
        """The newest connection."""
        return self.links[-1]

    def send(self, *lines: bytes | str) -> None:
        """Send to the newest connection (see :meth:`FakeLink.send`)."""
        self.link.send(*lines)

    async def start(self) -> FakeServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for link in self.links:
            link.writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = FakeLink(writer)
        self.links.append(link)
        try:
            while line := await reader.readline():
                try:
                    msg = parse(line)
                except PeerProtocolError:
                    continue
                link.received.append(msg)
                self._answer(link, msg)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _answer(self, link: FakeLink, msg: Message) -> None:
        me = f":{SERVER_NAME}"
        if msg.command == "NICK":
            if link.registered:
                link.send(f":{link.source} NICK :{msg.param(0)}")
            link.nick = msg.param(0)
        elif msg.command == "USER":
            link.user = msg.param(0)
        elif msg.command == "PING":
            link.send(f"{me} PONG {SERVER_NAME} :{msg.param(0)}")
        elif msg.command == "JOIN" and link.registered:
            for room in msg.param(0).split(","):
                link.send(
                    f":{link.source} JOIN {room}",
                    f"{me} 353 {link.nick} = {room} :@{link.nick}",
                    f"{me} 366 {link.nick} {room} :End of /NAMES list.",
                )
        elif msg.command == "QUIT":
            link.writer.close()
        if not link.registered and link.nick != "*" and link.got("USER"):
            link.registered = True
            link.send(f"{me} 001 {link.nick} :Welcome to the fake server, {link.nick}")


@asynccontextmanager
async def fake_server() -> AsyncIterator[FakeServer]:
    """A started :class:`FakeServer`, closed at the end."""
    server = await FakeServer().start()
    try:
        yield server
    finally:
        await server.close()
