"""A scripted IRC user for tests, the benchmark and the screenshot script.

It is the client's own :class:`~chatroom.client.connection.Connection` without a UI:
connect, join, say things, and wait for what the server sends back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatroom.client.connection import (
    BASIC_CAPS,
    Connection,
    ConnectionSettings,
    ConnState,
    Event,
    Received,
    Registered,
    StateChanged,
)
from chatroom.protocol import Message, casefold

__all__ = ["WAIT_TIMEOUT", "ScriptedUser"]

# Default wait for a reply from a loopback server.
WAIT_TIMEOUT = 10.0


class ScriptedUser:
    """One scripted participant: ``await ScriptedUser(host, port, "bob").connect()``."""

    def __init__(
        self,
        host: str,
        port: int,
        nick: str,
        password: str | None = None,
        caps: frozenset[str] = BASIC_CAPS,
    ) -> None:
        settings = ConnectionSettings(
            host=host, port=port, nick=nick, password=password, reconnect=False, wanted_caps=caps
        )
        self.connection = Connection(settings, self._on_event)
        self.messages: list[Message] = []
        self._changed = asyncio.Event()
        self.registered = False
        self.closed_reason: str | None = None

    @property
    def nick(self) -> str:
        """The nick the server gave us."""
        return self.connection.nick

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Received):
            self.messages.append(event.message)
        elif isinstance(event, Registered):
            self.registered = True
        elif isinstance(event, StateChanged) and event.state is ConnState.CLOSED:
            self.closed_reason = event.reason
        self._changed.set()

    async def wait_for(
        self, predicate: Callable[[Message], bool], timeout: float = WAIT_TIMEOUT, start: int = 0
    ) -> Message:
        """The first message (from index ``start``) matching ``predicate``; TimeoutError if none."""

        async def scan() -> Message:
            index = start
            while True:
                while index < len(self.messages):
                    msg = self.messages[index]
                    index += 1
                    if predicate(msg):
                        return msg
                if self.closed_reason is not None:
                    raise ConnectionError(self.closed_reason)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def connect(self, timeout: float = WAIT_TIMEOUT) -> ScriptedUser:
        """Connect and register."""
        self.connection.start()

        async def registered() -> None:
            while not self.registered:
                if self.closed_reason is not None:
                    raise ConnectionError(self.closed_reason)
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(registered(), timeout)
        return self

    async def join(self, room: str, timeout: float = WAIT_TIMEOUT) -> None:
        """Join ``room`` and wait for the end of its NAMES list."""
        mark = len(self.messages)
        self.send(Message.of("JOIN", room))
        await self.wait_for(
            lambda m: m.command == "366" and casefold(m.param(1)) == casefold(room),
            timeout,
            start=mark,
        )

    def send(self, message: Message) -> None:
        """Send any line."""
        self.connection.send(message)

    def say(self, target: str, text: str) -> None:
        """PRIVMSG."""
        self.send(Message.of("PRIVMSG", target, text))

    def action(self, target: str, text: str) -> None:
        """/me."""
        self.send(Message.of("PRIVMSG", target, f"\x01ACTION {text}\x01"))

    async def sync(self, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until the server has processed everything we sent (PING round trip)."""
        mark = len(self.messages)
        token = f"sync{mark}"
        self.send(Message.of("PING", token))
        await self.wait_for(
            lambda m: m.command == "PONG" and m.params[-1:] == (token,), timeout, start=mark
        )

    async def quit(self, reason: str = "bye") -> None:
        """Leave and close."""
        await self.connection.close(reason)
