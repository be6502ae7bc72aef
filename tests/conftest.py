"""Fixtures that start the real server on 127.0.0.1 (ephemeral port) and talk to it
over real sockets. Every server and client a test makes is stopped at teardown."""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import pytest

from chatroom.protocol import LineBuffer, Message, parse, serialize
from chatroom.server.config import Config
from chatroom.server.server import ChatServer

# Generous bounds: the machine is shared and slow at times; tests never sleep this long
# unless something is broken.
REPLY_TIMEOUT = 5.0
# No test speaks mDNS on the machine's real interfaces: every server and client it
# starts (in this process or a child) stays silent, whatever its settings. The
# discovery tests lift this only inside a network namespace of their own.
os.environ["CHATROOM_NO_MDNS"] = "1"
# How often a test server's accept loops look for a stop: stop() waits up to this long,
# and at the default (0.5 s) that was a large part of the suite's time.
ACCEPT_POLL = 0.02


def make_config(**overrides: object) -> Config:
    """Server settings for tests: loopback, ephemeral port, no MOTD surprises, and TLS
    off (a test about TLS turns it on, with ``tls_port=0`` and ``tls_dir=tmp_path``:
    otherwise a certificate would be made in the real data directory), and the web
    port off (a test about it gives ``http_port=0`` and ``files_dir`` in tmp_path)."""
    base = Config(
        host="127.0.0.1",
        port=0,
        server_name="test.server",
        motd="Welcome to tests",
        db=":memory:",
        tls=False,
        announce=False,
        http=False,
    )
    return dataclasses.replace(base, **overrides)


class ServerFixture:
    """A real ChatServer that a test can stop and start again on the same port."""

    def __init__(self, config: Config, server_class: type[ChatServer] = ChatServer) -> None:
        self.config = config
        self.server_class = server_class  # a test module may run a subclass
        self.server: ChatServer | None = None
        self.host = config.host
        self.port = config.port

    def start(self) -> ChatServer:
        self.server = self.server_class(dataclasses.replace(self.config, port=self.port))
        self.server.accept_poll = ACCEPT_POLL
        self.port = self.server.port
        self.server.start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def restart(self) -> ChatServer:
        self.stop()
        return self.start()


@pytest.fixture
def chat_server_class() -> type[ChatServer]:
    """The server class ``server_factory`` runs; a test module overrides this fixture
    to run a subclass (shorter timers, say)."""
    return ChatServer


@pytest.fixture
def server_factory(
    chat_server_class: type[ChatServer],
) -> Iterator[Callable[..., ServerFixture]]:
    """Start servers with custom settings: ``server_factory(sendq_bytes=4096)``."""
    made: list[ServerFixture] = []

    def make(**overrides: object) -> ServerFixture:
        fx = ServerFixture(make_config(**overrides), chat_server_class)
        fx.start()
        made.append(fx)
        return fx

    yield make
    for fx in made:
        fx.stop()


@pytest.fixture
def irc_server(server_factory: Callable[..., ServerFixture]) -> ServerFixture:
    """The server with its default limits (flood control on), on an ephemeral port."""
    return server_factory()


class IRCClient:
    """A minimal blocking test client: send lines, wait for the ones you expect."""

    def __init__(self, host: str, port: int, *, timeout: float = REPLY_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = LineBuffer(limit=1 << 20)
        self.lines: deque[bytes] = deque()  # received, not yet consumed by expect()
        self.nick = "*"
        self.closed = False

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, line: str | Message) -> None:
        data = serialize(line) if isinstance(line, Message) else line.encode() + b"\r\n"
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.closed:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        self.lines.extend(self.buffer.feed(data))
        return True

    def expect(
        self,
        command: str,
        *,
        where: Callable[[Message], bool] | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Consume lines until one with ``command`` (and ``where``) arrives; fail otherwise."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen: list[str] = []
        while True:
            while self.lines:
                raw = self.lines.popleft()
                msg = parse(raw)
                if msg.command == "PING" and command != "PING":
                    self.send(Message.of("PONG", *msg.params))
                    continue
                if msg.command == command and (where is None or where(msg)):
                    return msg
                seen.append(raw.decode(errors="replace"))
            if not self._fill(deadline):
                raise AssertionError(
                    f"{self.nick}: no {command} within the timeout; got {seen[-15:]!r}"
                    + (" (connection closed)" if self.closed else "")
                )

    def collect(self, quiet: float = 0.3) -> list[Message]:
        """Everything that arrives until the line goes quiet for ``quiet`` seconds."""
        out = [parse(raw) for raw in self.lines]
        self.lines.clear()
        while self._fill(time.monotonic() + quiet):
            out.extend(parse(raw) for raw in self.lines)
            self.lines.clear()
        return out

    def register(self, nick: str, user: str | None = None) -> Message:
        self.nick = nick
        self.send(f"NICK {nick}")
        self.send(f"USER {user or nick} 0 * :{nick} test")
        welcome = self.expect("001")
        self.expect("376", timeout=self.timeout)  # end of MOTD: the burst is over
        return welcome

    def join(self, room: str) -> None:
        self.send(f"JOIN {room}")
        self.expect("366", where=lambda m: m.params[1].lower() == room.lower())

    def wait_closed(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed and time.monotonic() < deadline:
            self._fill(deadline)
            self.lines.clear()
        return self.closed

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test's peers send, the server answers it and logs nothing at ERROR or
    above, and no traceback. A module asks for it with
    ``pytestmark = pytest.mark.usefixtures("no_errors_logged")``."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


def read_until(
    c: IRCClient, done: Callable[[Message], bool], timeout: float = REPLY_TIMEOUT
) -> list[Message]:
    """Every line up to and including the first one ``done`` accepts, in arrival order
    (PINGs included, unlike IRCClient.expect); fails with the last lines seen."""
    deadline = time.monotonic() + timeout
    got: list[Message] = []
    while True:
        while c.lines:
            msg = parse(c.lines.popleft())
            got.append(msg)
            if done(msg):
                return got
        if not c._fill(deadline):
            tail = [str(m) for m in got[-15:]]
            raise AssertionError(f"{c.nick}: the expected line never came; got {tail!r}")


@pytest.fixture
def clients() -> Iterator[Callable[..., IRCClient]]:
    """Open test clients to any server: ``clients(fx, "alice")`` (registered when a
    nick is given); all are closed at teardown."""
    made: list[IRCClient] = []

    def make(fx: ServerFixture, nick: str | None = None) -> IRCClient:
        c = IRCClient(fx.host, fx.port)
        made.append(c)
        if nick:
            c.register(nick)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def connect(
    irc_server: ServerFixture, clients: Callable[..., IRCClient]
) -> Callable[..., IRCClient]:
    """Open test clients to ``irc_server`` (or to another fixture's server via ``to=``);
    ``clients`` closes them."""

    def make(nick: str | None = None, to: ServerFixture | None = None) -> IRCClient:
        return clients(to or irc_server, nick)

    return make


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Flags that make a test about TLS: without one of them, a server process gets --no-tls.
TLS_FLAGS = ("--tls-port", "--tls-dir", "--tls-cert", "--tls-key", "--no-tls")


def without_tls(args: tuple[str, ...]) -> tuple[str, ...]:
    """``args`` plus ``--no-tls`` unless they say something about TLS, ``--no-http``
    unless they say something about the web port, and ``--no-announce``
    (CHATROOM_NO_MDNS says the same; this says it on the command line)."""
    if "--no-announce" not in args:
        args = (*args, "--no-announce")
    if not any(a.startswith(("--http", "--no-http")) for a in args):
        args = (*args, "--no-http")  # 8067 is fixed: parallel servers would clash
    if any(a.split("=")[0] in TLS_FLAGS for a in args):
        return args
    return (*args, "--no-tls")


class ServerProcess:
    """``chatroom-server`` as its own process (signals, kill -9), on 127.0.0.1; TLS off
    unless ``args`` configure it (then they must give ``--tls-dir`` or a certificate)."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        args = without_tls(args)
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from chatroom.cli import server_main; raise SystemExit(server_main())",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.banner = ""  # stdout read while waiting for the start
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    deadline = 0
                    break
                time.sleep(0.05)
        # The port answers once bound, before the server has started and set its signal
        # handlers: a SIGTERM then would kill it silently. Its "listening" line comes after.
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        seen = b""
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not ready:
                break
            # os.read, not readline: communicate() reads the descriptor itself later, and
            # what a text wrapper had buffered ahead would be lost to it
            chunk = os.read(fd, 65536)
            seen += chunk
            self.banner = seen.decode(errors="replace")
            if b"listening on" in seen and seen.endswith(b"\n"):
                return
            if not chunk:  # it exited
                break
        out, err = self.stop()
        raise AssertionError(f"server did not start: {out}\n{err}")

    def stop(self, sig: int = 15) -> tuple[str, str]:
        """Send ``sig`` (SIGTERM by default), wait, reap; returns (stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        out, err = self.proc.communicate()
        return self.banner + out, err


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    """Start ``chatroom-server`` processes; any still running are killed at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, port: int | None = None) -> ServerProcess:
        sp = ServerProcess(*args, port=port)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop(9)


@pytest.fixture(autouse=True, scope="session")
def private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A safety net: whatever a test forgets to point elsewhere (a history database, a
    TLS certificate, a client's config) lands in a temporary directory, never in the
    user's real ones. platformdirs follows these on Linux; server processes inherit them."""
    base = tmp_path_factory.mktemp("user-dirs")
    saved = {k: os.environ.get(k) for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    os.environ["XDG_DATA_HOME"] = str(base / "data")
    os.environ["XDG_CONFIG_HOME"] = str(base / "config")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: skip the fd part of the check
        return 0


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test must leave no server thread and no extra file descriptor behind."""
    before_fds = _open_fds()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stray = [t.name for t in threading.enumerate() if t.name.startswith("chatroom-")]
        if not stray and _open_fds() <= before_fds:
            return
        time.sleep(0.05)
    stray = [t.name for t in threading.enumerate() if t.name.startswith("chatroom-")]
    assert not stray, f"threads left running: {stray}"
    assert _open_fds() <= before_fds, f"file descriptors leaked: {before_fds} -> {_open_fds()}"
