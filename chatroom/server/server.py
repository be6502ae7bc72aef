"""ChatServer: ThreadingTCPServer plus the writer and timer threads it owns.

Life cycle: ``ChatServer(config)`` binds; :meth:`start` runs the accept loop in a
thread; :meth:`stop` stops accepting, says ``ERROR :Server shutting down`` to
everyone, waits (bounded) for every connection thread, then stops its own threads.
Nothing it starts outlives :meth:`stop`.

If the writer or the history store thread stops on an error, the server could accept
and read but never deliver: it logs CRITICAL, sets :attr:`ChatServer.fault` and stops
itself (the command line then exits non-zero). When history cannot be saved, every
registered user is told by a server NOTICE, and again when it can.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from chatroom.protocol import Message, serialize
from chatroom.server.accounts import AccountStore
from chatroom.server.config import Config, default_db_path
from chatroom.server.handler import Handler
from chatroom.server.outbox import Writer
from chatroom.server.pipeline import HistoryPipeline
from chatroom.server.registry import Registry
from chatroom.server.session import Session
from chatroom.server.store import MEMORY, HistoryStore

log = logging.getLogger("chatroom.server")


class ChatServer(socketserver.ThreadingTCPServer):
    """The IRC server. Settings are class attributes in the socketserver manner."""

    daemon_threads = True  # never let a stuck client keep the process alive
    block_on_close = False  # stop() joins connection threads itself, with a deadline
    allow_reuse_address = True
    # seconds between liveness checks (PING, registration and ping timeouts)
    tick_interval = 1.0
    # how long a shutdown waits for clients to take their ERROR and close
    shutdown_linger = 1.0

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        host = self.config.host
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.request_queue_size = self.config.listen_backlog
        self.stopping = threading.Event()
        self.stopped = threading.Event()  # stop() has finished
        # why the server stopped itself (a thread it cannot run without died); None if not
        self.fault: str | None = None
        self._sessions: set[Session] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        super().__init__((host, self.config.port), Handler)
        # a client may take in a quarter of its SendQ between two flushes (outbox.py)
        self.writer = Writer(
            self.config.close_linger,
            max(4096, self.config.sendq_bytes // 4),
            on_death=self._stage_died,
        )
        # Everything for clients goes through `front`: the history store's thread when
        # history is on (it commits before it forwards), else straight to the writer.
        self.store: HistoryStore | None = None
        self.pipeline: HistoryPipeline | None = None
        front: Writer | HistoryPipeline = self.writer
        if self.config.history:
            try:
                self.store = HistoryStore(
                    self.config.db or default_db_path(),
                    retention_count=self.config.retention_count,
                    retention_days=self.config.retention_days,
                    sync=self.config.db_sync,
                )
            except Exception:
                self.server_close()
                self.writer.stop(0)  # never started: this only releases its selector and pipe
                raise
            self.pipeline = HistoryPipeline(
                self.store, self.writer, on_health=self._history_health, on_death=self._stage_died
            )
            front = self.pipeline
        self.front = front
        # Accounts live in the history database; without history, in a private
        # in-memory one (they then last as long as this process, as the log says).
        self.accounts: AccountStore | None = None
        self._accounts_store: HistoryStore | None = None
        if self.config.accounts:
            if self.store is None:
                self._accounts_store = HistoryStore(MEMORY)
                log.warning("history is off: accounts are kept in memory, until the server stops")
            self.accounts = AccountStore(self.store or self._accounts_store)
        # sessions read history through the pipeline (records.History); message ids
        # go on from the newest stored, so history on JOIN is what is stored from the start
        self.registry = Registry(
            self.config,
            front.multicast,
            history=self.pipeline,
            last_message_id=self.store.last_id if self.store is not None else 0,
            accounts=self.accounts,
        )
        self._acceptor: threading.Thread | None = None
        self._timers = threading.Thread(target=self._tick_loop, name="chatroom-timers", daemon=True)

    # --- socketserver hooks --------------------------------------------------------------

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.config.host in ("::", ""):
            # '::' serves IPv4 and IPv6 together (IPv4 clients appear as ::ffff:a.b.c.d)
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(
            target=self._run_connection,
            args=(request, client_address),
            name=f"chatroom-conn-{client_address[0]}:{client_address[1]}",
            daemon=True,
        )
        with self._lock:
            self._conn_threads.add(t)
        t.start()

    def _run_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            log.exception("connection from %s failed", client_address[0])
            try:
                request.close()
            except OSError:
                pass
        finally:
            with self._lock:
                self._conn_threads.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        """The writer closes client sockets once flushed (outbox.py); nothing to do here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error on connection from %s", client_address[0])

    # --- sessions ---------------------------------------------------------------------------

    def track(self, session: Session) -> None:
        with self._lock:
            self._sessions.add(session)

    def untrack(self, session: Session) -> None:
        with self._lock:
            self._sessions.discard(session)

    def _tick_loop(self) -> None:
        while not self.stopping.wait(self.tick_interval):
            with self._lock:
                sessions = list(self._sessions)
            now = time.monotonic()
            for s in sessions:
                try:
                    s.tick(now)
                except Exception:
                    log.exception("liveness check failed")

    # --- failures of the server's own threads ----------------------------------------------------

    def _history_health(self, problem: str | None, unsaved: int) -> None:
        """From the store thread: history stopped (or started again) being saved. Tell
        every registered user, and operators where to look."""
        if problem is None:
            text = f"*** Messages are being saved to history again ({unsaved} were not saved)"
            detail = None
        else:
            text = f"*** {problem}"
            path = self.store.path if self.store is not None else ""
            detail = f"*** History database {path}: see the server log"
        with self.registry.lock:  # snapshot under the lock, send outside it
            users = [(u.conn, u.nick, u.is_oper) for u in self.registry.registered_users()]
        server = self.config.server_name
        for conn, nick, oper in users:
            # conn.send only appends to the store thread's inbox: safe from that thread
            conn.send(serialize(Message.of("NOTICE", nick, text, source=server)))
            if oper and detail:
                conn.send(serialize(Message.of("NOTICE", nick, detail, source=server)))

    def _stage_died(self, stage: str) -> None:
        """From a dying writer or store thread: nothing would be delivered any more, so
        stop the whole server (from another thread: stop() joins the dying one)."""
        if self.stopping.is_set():
            return
        self.fault = f"{stage} stopped on an internal error (see the log above)"
        log.critical("%s; the server cannot deliver anything, so it stops", self.fault)
        threading.Thread(target=self.stop, name="chatroom-emergency-stop", daemon=True).start()

    # --- life cycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        """Start the writer, the timers and the accept loop, each in its own thread."""
        self.writer.start()
        if self.pipeline is not None:
            self.pipeline.start()
        self._timers.start()
        self._acceptor = threading.Thread(
            target=self.serve_forever, name="chatroom-acceptor", daemon=True
        )
        self._acceptor.start()
        host, port = self.server_address[:2]
        log.info("listening on %s port %s as %s", host, port, self.config.server_name)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, tell everyone, close every connection; bounded by ``timeout``.
        A second call waits (bounded) for the first to finish."""
        if self.stopping.is_set():
            self.stopped.wait(timeout)
            return
        self.stopping.set()
        try:
            self._stop(timeout)
        finally:
            self.stopped.set()

    def _stop(self, timeout: float) -> None:
        if self._acceptor is not None:
            self.shutdown()
            self._acceptor.join(timeout)
        self.server_close()
        with self.registry.lock:
            users = list(self.registry.connections)
            for u in users:
                u.gone = True  # no QUIT storm: everyone is leaving together
            self.registry.connections.clear()
            self.registry.users.clear()
            self.registry.channels.clear()
        data = b"ERROR :Server shutting down\r\n"
        for u in users:
            u.conn.send(data)
            u.conn.close("Server shutting down", linger=self.shutdown_linger)  # type: ignore[call-arg]
        if self.pipeline is not None and self.pipeline.dead:
            self.pipeline.forward_unstored()  # the goodbyes and closes, past the dead thread
        deadline = time.monotonic() + timeout
        # after a fault nothing may be flushing the goodbyes: cut clients off sooner
        polite = self.shutdown_linger if self.fault is not None else timeout - 1.0
        with self._lock:
            threads = list(self._conn_threads)
        for t in threads:
            t.join(max(0.0, min(deadline - time.monotonic() - 1.0, polite)))
        with self._lock:
            stragglers = list(self._sessions)
        for s in stragglers:  # accepted during shutdown, or a peer that never lets go
            try:
                s.user.conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
            except OSError:
                pass
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._timers.is_alive():
            self._timers.join(timeout)
        if self.pipeline is not None:
            self.pipeline.stop(timeout)  # commits and forwards what is still queued
        # running, dead or never started: its sockets, selector and pipe need closing
        self.writer.stop(timeout)
        if self.accounts is not None:
            self.accounts.close()
        for store in (self.store, self._accounts_store):
            if store is not None:
                store.close()
        leftover = [t for t in threads if t.is_alive()]
        if leftover:
            log.warning("%d connection threads did not stop in time", len(leftover))
        log.info("server stopped")

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- how to reach the server (printed at start by the command line) ----------------------

# The IRC port: clients assume it, so commands need not name it.
IRC_PORT = 6667
# `ip -o addr` answers at once; this only bounds a wedged one.
IP_COMMAND_TIMEOUT = 2.0


def parse_ip_addr(text: str) -> list[str]:
    r"""Addresses in ``ip -o addr show`` output, in order (any scope, any family).

    >>> parse_ip_addr(
    ...     "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
    ...     "2: eth0    inet 192.168.1.20/24 brd 192.168.1.255 scope global eth0\\ x\n"
    ...     "2: eth0    inet6 fd00::20/64 scope global \\       valid_lft forever"
    ... )
    ['127.0.0.1', '192.168.1.20', 'fd00::20']
    """
    out = []
    for line in text.splitlines():
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word in ("inet", "inet6"):
                out.append(words[i + 1].split("/")[0])
                break
    return out


def parse_fib_trie(text: str) -> list[str]:
    r"""The machine's own IPv4 addresses in ``/proc/net/fib_trie`` (``/32 host LOCAL``).

    >>> parse_fib_trie(
    ...     "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n"
    ...     "     |-- 192.168.1.20\n        /32 host LOCAL\n     |-- 192.168.1.255\n"
    ...     "        /32 link BROADCAST\n"
    ... )
    ['127.0.0.1', '192.168.1.20']
    """
    lines = text.splitlines()
    found = []
    for before, line in itertools.pairwise(lines):
        if line.split()[:3] == ["/32", "host", "LOCAL"] and before.split():
            found.append(before.split()[-1])
    return list(dict.fromkeys(found))


def parse_if_inet6(text: str) -> list[str]:
    r"""The machine's IPv6 addresses in ``/proc/net/if_inet6`` (32 hex digits a line).

    >>> parse_if_inet6("fd000000000000000000000000000020 02 40 00 80 eth0")
    ['fd00::20']
    """
    out = []
    for line in text.splitlines():
        digits = line.split()[0] if line.split() else ""
        if len(digits) == 32:
            try:
                out.append(str(ipaddress.IPv6Address(int(digits, 16))))
            except ValueError:
                continue
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def local_addresses() -> list[str]:
    """This machine's addresses, learnt without sending a packet: ``ip -o addr``, else
    /proc (Linux), else what the host name resolves to (/etc/hosts, usually)."""
    ip = shutil.which("ip")
    if ip is not None:
        try:
            done = subprocess.run(
                [ip, "-o", "addr", "show"],
                capture_output=True,
                text=True,
                timeout=IP_COMMAND_TIMEOUT,
                check=False,
            )
            found = parse_ip_addr(done.stdout)
            if found:
                return found
        except (OSError, subprocess.SubprocessError):
            pass
    found = parse_fib_trie(_read("/proc/net/fib_trie")) + parse_if_inet6(
        _read("/proc/net/if_inet6")
    )
    if found:
        return found
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def lan_addresses(host: str, candidates: list[str] | None = None) -> list[str]:
    """Where other machines can reach a server listening on ``host``: for ``0.0.0.0``
    this machine's IPv4 addresses, for ``::`` its IPv4 and IPv6 ones, loopback and
    link-local left out; for one address, that address (if it is not loopback).

    >>> lan_addresses("0.0.0.0", ["127.0.0.1", "192.168.1.20", "fd00::20", "fe80::1"])
    ['192.168.1.20']
    >>> lan_addresses("::", ["127.0.0.1", "192.168.1.20", "::1", "fd00::20", "fe80::1"])
    ['192.168.1.20', 'fd00::20']
    >>> lan_addresses("127.0.0.1"), lan_addresses("10.0.0.5")
    ([], ['10.0.0.5'])
    """
    wildcard = host in ("", "0.0.0.0", "::")
    if not wildcard:
        try:
            return [] if ipaddress.ip_address(host).is_loopback else [host]
        except ValueError:
            return [] if host == "localhost" else [host]  # a name: as given
    out = []
    for text in local_addresses() if candidates is None else candidates:
        try:
            addr = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if addr.version == 6 and host != "::":
            continue
        if addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified:
            continue
        out.append(str(addr))
    return list(dict.fromkeys(out))


def connect_commands(address: str, port: int) -> tuple[str, str]:
    """The ``chatroom-client`` and irssi commands that reach ``address``:``port``.

    >>> connect_commands("192.168.1.20", 6667)
    ('chatroom-client 192.168.1.20', '/connect 192.168.1.20 6667')
    >>> connect_commands("fd00::20", 7000)
    ('chatroom-client [fd00::20]:7000', '/connect fd00::20 7000')
    """
    shown = f"[{address}]" if ":" in address else address
    client = f"chatroom-client {shown}" + (f":{port}" if port != IRC_PORT else "")
    return client, f"/connect {address} {port}"


def how_to_reach(host: str, port: int, candidates: list[str] | None = None) -> list[str]:
    """Lines for the log at start: where the server can be reached, and the commands.

    >>> for line in how_to_reach("0.0.0.0", 6667, ["127.0.0.1", "192.168.1.20", "10.0.0.7"]):
    ...     print(line)
    reachable on the LAN at 192.168.1.20, 10.0.0.7
    join with: chatroom-client 192.168.1.20  (irssi: /connect 192.168.1.20 6667)
    >>> for line in how_to_reach("127.0.0.1", 7000):
    ...     print(line)
    reachable from this machine only (listening on 127.0.0.1; --host 0.0.0.0 opens it to the LAN)
    join with: chatroom-client 127.0.0.1:7000  (irssi: /connect 127.0.0.1 7000)
    """
    addresses = lan_addresses(host, candidates)
    if addresses:
        lines = [f"reachable on the LAN at {', '.join(addresses)}"]
        address = addresses[0]
    elif host in ("", "0.0.0.0", "::"):
        lines = ["no LAN address found (is the network up?): reachable from this machine only"]
        address = "127.0.0.1"
    else:
        lines = [
            f"reachable from this machine only (listening on {host};"
            " --host 0.0.0.0 opens it to the LAN)"
        ]
        address = host
    client, irssi = connect_commands(address, port)
    lines.append(f"join with: {client}  (irssi: {irssi})")
    return lines
