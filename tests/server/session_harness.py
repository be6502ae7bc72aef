"""The socketless harness: real Sessions on a shared Registry, a list for each socket.

``Net`` is a server's shared state and a hand-moved clock; ``Net.connect`` gives a
``Client``, whose ``send`` feeds one line to its Session and returns what that client
received meanwhile. With ``keep_history=True`` the Net keeps history in a real SQLite
store in memory, through the server's own store pipeline (pipeline.HistoryPipeline)
with its thread's work done at once by the posting thread: CHATHISTORY, playback on
JOIN and the rest of IRCv3 can be tested without a socket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from chatroom.protocol import Cap, Message, parse
from chatroom.server.config import Config
from chatroom.server.pipeline import HistoryPipeline
from chatroom.server.records import Multicast
from chatroom.server.registry import Registry, direct_multicast
from chatroom.server.session import Session
from chatroom.server.store import MEMORY, HistoryStore

SERVER = "test.server"


class FakeConn:
    """Stands in for the socket: keeps every line the server sent and any close()."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.close_reason: str | None = None

    def send(self, data: bytes) -> None:
        assert data.endswith(b"\r\n"), data
        self.sent.append(data)

    def close(self, reason: str) -> None:
        self.close_reason = reason

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def take(self) -> list[Message]:
        """Everything received since the last take(), parsed."""
        data, self.sent = b"".join(self.sent), []
        return [parse(line) for line in data.split(b"\r\n") if line]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Client:
    """One connection: a Session plus the FakeConn it writes to."""

    def __init__(self, session: Session, conn: FakeConn, host: str) -> None:
        self.session, self.conn, self.host = session, conn, host

    @property
    def nick(self) -> str:
        return self.session.nick

    @property
    def source(self) -> str:
        return self.session.user.source

    def send(self, line: str | bytes | Message) -> list[Message]:
        """Feed one line to the server; return what this client received meanwhile."""
        if isinstance(line, Message):
            self.session.handle(line)
        else:
            self.session.handle_line(line.encode() if isinstance(line, str) else line)
        return self.conn.take()

    def take(self) -> list[Message]:
        return self.conn.take()


class DirectWriter:
    """The writer without its thread: each line reaches its recipients at once."""

    close_linger = 0.0

    def post_many(self, entries: Sequence[tuple]) -> None:
        for entry in entries:
            if type(entry) is Multicast:
                direct_multicast(entry.variants, entry.sinks, entry.exclude)

    def variants_changed(self) -> None:
        pass

    def throttle(self, timeout: float = 1.0) -> None:
        pass


class SyncPipeline(HistoryPipeline):
    """The store pipeline with no thread: whatever is posted is committed and forwarded
    at once, in order, by the thread that posts it."""

    def __init__(self, store: HistoryStore) -> None:
        super().__init__(store, DirectWriter())  # type: ignore[arg-type]
        self._sleeping = True  # so every post "wakes" it

    def _wake(self) -> None:
        self._commit_and_forward()


class Net:
    """A server's shared state and a fake clock; connect clients to it."""

    def __init__(self, *, keep_history: bool = False, **overrides: object) -> None:
        base = Config(host="127.0.0.1", port=0, server_name=SERVER, motd="Welcome to tests")
        self.config = dataclasses.replace(base, **overrides)
        self.store: HistoryStore | None = None
        if keep_history:
            self.store = HistoryStore(MEMORY)
            pipeline = SyncPipeline(self.store)
            self.registry = Registry(self.config, pipeline.multicast, history=pipeline)
        else:
            self.registry = Registry(self.config)
        self.clock = Clock()
        self.clients: list[Client] = []
        self._hosts = 0

    def connect(self, host: str | None = None) -> Client:
        if host is None:
            self._hosts += 1
            host = f"10.0.0.{self._hosts}"
        conn = FakeConn()
        client = Client(Session(self.registry, conn, host, clock=self.clock), conn, host)
        self.clients.append(client)
        return client

    def user(self, nick: str, *, host: str | None = None) -> Client:
        """A registered user whose welcome burst has been read."""
        client = self.connect(host)
        client.send(f"NICK {nick}")
        out = client.send(f"USER {nick} 0 * :{nick} Realname")
        assert "001" in commands(out), out
        self.drain()
        return client

    def room(self, name: str, op: Client, *others: Client) -> None:
        """``op`` creates the room (and is its operator); ``others`` join it."""
        op.send(f"JOIN {name}")
        for c in others:
            c.send(f"JOIN {name}")
        self.drain()

    def drain(self) -> None:
        for c in self.clients:
            c.take()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def cap_user(self, nick: str, caps: Sequence[Cap] = ()) -> Client:
        """A user registered through CAP negotiation with ``caps`` acknowledged (its
        welcome burst read)."""
        client = self.connect()
        client.send("CAP LS 302")
        if caps:
            wanted = " ".join(caps)
            ack = one(client.send(f"CAP REQ :{wanted}"), "CAP")
            assert ack.params[1:] == ("ACK", wanted), ack
        client.send(f"NICK {nick}")
        client.send(f"USER {nick} 0 * :{nick} test")
        assert "001" in commands(client.send("CAP END"))
        self.drain()
        return client


def commands(msgs: list[Message]) -> list[str]:
    return [m.command for m in msgs]


def one(msgs: list[Message], command: str) -> Message:
    """The single message with ``command`` in ``msgs``."""
    found = [m for m in msgs if m.command == command]
    assert len(found) == 1, f"expected one {command}, got {msgs!r}"
    return found[0]


def all_of(msgs: list[Message], command: str) -> list[Message]:
    return [m for m in msgs if m.command == command]


def names_in(msgs: list[Message]) -> set[str]:
    """The entries of every 353 RPL_NAMREPLY in ``msgs``."""
    return {n for m in all_of(msgs, "353") for n in m.params[3].split()}


def channel_modes(msgs: list[Message]) -> tuple[set[str], tuple[str, ...]]:
    """The flags (order does not matter) and parameters of the one 324 RPL_CHANNELMODEIS."""
    flags, *params = one(msgs, "324").params[2:]
    assert flags.startswith("+")
    return set(flags[1:]), tuple(params)


def isupport(msgs: list[Message]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for m in all_of(msgs, "005"):
        assert m.params[-1] == "are supported by this server"
        for token in m.params[1:-1]:
            key, _, value = token.partition("=")
            tokens[key] = value
    return tokens
