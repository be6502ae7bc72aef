"""A scripted IRC server for client tests: real sockets on 127.0.0.1, lines the test picks.

It does just enough to be a server (registers a client with 001 once it has NICK and
USER, answers PING, echoes JOIN with a one-name NAMES, follows NICK) and otherwise
sends what the test tells it to, byte for byte: hostile lines included.

Given ``caps`` it also negotiates capabilities (CAP LS/REQ/END, holding 001 until CAP
END), and with ``accounts`` (account -> password) it logs people in with SASL (PLAIN and
SCRAM-SHA-256, through chatroom.sasl's server side) and registers accounts (REGISTER).

Given ``tls`` (a server SSLContext) it speaks TLS, and ``port`` puts it on a port of the
test's choosing (a second server on the port of the first, as after a restart).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatroom.protocol import Message, PeerProtocolError, parse
from chatroom.sasl import MIN_ITERATIONS, SaslError, ScramServer, make_credentials, parse_plain

__all__ = ["SERVER_NAME", "FakeLink", "FakeServer", "fake_server"]

SERVER_NAME = "fake.example"
USER_HOST = "127.0.0.1"
# What a server with accounts offers: SASL (with its mechanisms), registration before
# connecting, and the capabilities that say who is logged in.
ACCOUNT_CAPS = {
    "sasl": "PLAIN,SCRAM-SHA-256",
    "draft/account-registration": "before-connect",
    "account-notify": "",
    "account-tag": "",
    "extended-join": "",
}


class FakeLink:
    """One client connection: what it sent (parsed), and a way to send it raw bytes."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.received: list[Message] = []
        self.nick = "*"
        self.user = "user"
        self.registered = False
        self.negotiating = False  # CAP LS seen, no CAP END yet: 001 waits
        self.caps: set[str] = set()
        self.account: str | None = None
        self.mechanism: str | None = None  # SASL exchange in progress
        self.chunks: list[str] = []
        self.scram: ScramServer | None = None
        self.scram_step = 0

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

    def __init__(
        self,
        caps: dict[str, str] | None = None,
        accounts: dict[str, str] | None = None,
        *,
        mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256"),
        sasl_silent: bool = False,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self.caps = caps
        self.accounts = dict(accounts or {})
        self.mechanisms = mechanisms
        self.sasl_silent = sasl_silent  # never answer AUTHENTICATE (timeouts)
        self.links: list[FakeLink] = []
        self._server: asyncio.Server | None = None
        self.tls = tls
        self.port = port

    @property
    def link(self) -> FakeLink:
        """The newest connection."""
        return self.links[-1]

    def send(self, *lines: bytes | str) -> None:
        """Send to the newest connection (see :meth:`FakeLink.send`)."""
        self.link.send(*lines)

    async def start(self) -> FakeServer:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.tls, reuse_address=True
        )
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
        if self.caps is not None and msg.command in ("CAP", "AUTHENTICATE", "REGISTER"):
            self._accounts(link, msg)
        elif msg.command == "NICK":
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
        self._maybe_register(link)

    def _maybe_register(self, link: FakeLink) -> None:
        if not link.registered and not link.negotiating and link.nick != "*" and link.got("USER"):
            link.registered = True
            link.send(f":{SERVER_NAME} 001 {link.nick} :Welcome to the fake server, {link.nick}")

    # --- capabilities and accounts (only with ``caps``) ---------------------------------

    def _accounts(self, link: FakeLink, msg: Message) -> None:
        me = f":{SERVER_NAME}"
        assert self.caps is not None
        if msg.command == "CAP":
            sub = msg.param(0).upper()
            if sub == "LS":
                link.negotiating = True
                offered = " ".join(f"{k}={v}" if v else k for k, v in self.caps.items())
                link.send(f"{me} CAP {link.nick} LS :{offered}")
            elif sub == "REQ":
                wanted = msg.param(1).split()
                verdict = "ACK" if all(w in self.caps for w in wanted) else "NAK"
                if verdict == "ACK":
                    link.caps.update(wanted)
                link.send(f"{me} CAP {link.nick} {verdict} :{msg.param(1)}")
            elif sub == "END":
                link.negotiating = False
                self._maybe_register(link)
        elif msg.command == "REGISTER":
            account, password = msg.param(0), msg.param(2)
            if account in self.accounts:
                link.send(f"FAIL REGISTER ACCOUNT_EXISTS {account} :Account already exists")
            elif len(password) < 4:
                link.send(f"FAIL REGISTER WEAK_PASSWORD {account} :Password too weak")
            else:
                self.accounts[account] = password
                link.send(f"{me} REGISTER SUCCESS {account} :Account created")
                self.logged_in(link, account)
        elif not self.sasl_silent:
            self._sasl(link, msg.param(0))

    def logged_in(self, link: FakeLink, account: str) -> None:
        """Tell ``link`` it is logged in (900), as after SASL or REGISTER."""
        link.account = account
        link.send(
            f":{SERVER_NAME} 900 {link.nick} {link.source} {account} "
            f":You are now logged in as {account}"
        )

    def _sasl(self, link: FakeLink, param: str) -> None:
        me = f":{SERVER_NAME}"
        if link.mechanism is None:
            mechanism = param.upper()
            if mechanism not in self.mechanisms:
                listed = ",".join(self.mechanisms)
                link.send(f"{me} 908 {link.nick} {listed} :are available SASL mechanisms")
                link.send(f"{me} 904 {link.nick} :SASL authentication failed")
                return
            link.mechanism, link.chunks, link.scram_step = mechanism, [], 0
            if mechanism == "SCRAM-SHA-256":
                link.scram = ScramServer(self._lookup, fake_secret=b"fake")
            link.send("AUTHENTICATE +")
            return
        if param == "*":
            link.mechanism = None
            link.send(f"{me} 906 {link.nick} :SASL authentication aborted")
            return
        if param != "+":
            link.chunks.append(param)
            if len(param) == 400:
                return
        data = base64.b64decode("".join(link.chunks))
        link.chunks = []
        try:
            if link.mechanism == "PLAIN":
                _, account, password = parse_plain(data)
                if self.accounts.get(account) != password:
                    raise SaslError("invalid-password")
                self._sasl_success(link, account)
            elif link.scram is not None and link.scram_step == 0:
                link.scram_step = 1
                link.send(f"AUTHENTICATE {base64.b64encode(link.scram.first(data)).decode()}")
            elif link.scram is not None and link.scram_step == 1:
                link.scram_step = 2
                link.send(f"AUTHENTICATE {base64.b64encode(link.scram.final(data)).decode()}")
            elif link.scram is not None:
                self._sasl_success(link, link.scram.username)
        except SaslError:
            link.mechanism = None
            link.send(f"{me} 904 {link.nick} :SASL authentication failed")

    def _sasl_success(self, link: FakeLink, account: str) -> None:
        link.mechanism = None
        self.logged_in(link, account)
        link.send(f":{SERVER_NAME} 903 {link.nick} :SASL authentication successful")

    def _lookup(self, account: str):
        password = self.accounts.get(account)
        return None if password is None else make_credentials(password, MIN_ITERATIONS)


@asynccontextmanager
async def fake_server(**kwargs: object) -> AsyncIterator[FakeServer]:
    """A started :class:`FakeServer` (``kwargs``: see its constructor), closed at the end."""
    server = await FakeServer(**kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        await server.close()
