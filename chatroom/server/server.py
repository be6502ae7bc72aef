"""ChatServer: ThreadingTCPServer plus the writer and timer threads it owns.

Life cycle: ``ChatServer(config)`` binds; :meth:`start` runs the accept loop in a
thread; :meth:`stop` stops accepting, says ``ERROR :Server shutting down`` to
everyone, waits (bounded) for every connection thread, then stops its own threads.
Nothing it starts outlives :meth:`stop`.

Listening: the ChatServer is itself the socketserver of the plain-text port; every
other listening socket (the TLS port, and ``::1`` beside ``127.0.0.1`` for
``--plaintext loopback`` on ``::``) is a small :class:`Listener` with its own accept
thread that hands each connection to :meth:`ChatServer.process_request` with its
handler class (:class:`TLSHandler` on the TLS port). So every connection, whatever
the port, is one thread of this server, tracked, stopped and joined the same way, with
one registry, one writer and one history pipeline. (One accept loop over several
sockets would save a thread but means rewriting socketserver's shutdown handshake.)

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
from chatroom.server.announce import Announcer
from chatroom.server.config import VERSION, Config, default_db_path
from chatroom.server.handler import Handler, TLSHandler
from chatroom.server.outbox import Writer
from chatroom.server.pipeline import HistoryPipeline
from chatroom.server.registry import Registry, is_loopback
from chatroom.server.session import Session
from chatroom.server.stats import Stats
from chatroom.server.store import MEMORY, HistoryStore
from chatroom.server.tls import TLSMaterial, load_or_create
from chatroom.server.web.files import FileStore, resolve_files_dir
from chatroom.server.web.httpd import WebServer

log = logging.getLogger("chatroom.server")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _close_quietly(sock: socket.socket) -> None:
    """Close a connection nobody serves (a peer that is already gone is no error)."""
    try:
        sock.close()
    except OSError:
        pass


class Listener(socketserver.TCPServer):
    """One more listening socket of a ChatServer: it only accepts; each connection is
    handed to the ChatServer, to be served by ``handler_class`` in a thread of its own."""

    allow_reuse_address = True

    def __init__(
        self, chat: ChatServer, address: tuple[str, int], handler_class: type[Handler]
    ) -> None:
        self.chat = chat
        self.address_family = _family(address[0])
        self.request_queue_size = chat.config.listen_backlog
        super().__init__(address, handler_class)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] in ("::", ""):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.chat.process_request(request, client_address, self.RequestHandlerClass)

    def shutdown_request(self, request: Any) -> None:
        """The connection's thread (or the writer) closes it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error on connection from %s", client_address[0])


class ChatServer(socketserver.ThreadingTCPServer):
    """The IRC server. Settings are class attributes in the socketserver manner."""

    daemon_threads = True  # never let a stuck client keep the process alive
    block_on_close = False  # stop() joins connection threads itself, with a deadline
    allow_reuse_address = True
    # seconds between liveness checks (PING, registration and ping timeouts)
    tick_interval = 1.0
    # how long a shutdown waits for clients to take their ERROR and close
    shutdown_linger = 1.0
    # how often the accept loops look for a stop (stop() waits up to this long)
    accept_poll = 0.5

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.config.check()
        self.stats = Stats()  # counters for /metrics (stats.py says who writes each)
        # the certificate first: a refused key must stop the start before any port opens
        self.tls: TLSMaterial | None = load_or_create(self.config) if self.config.tls else None
        host = self.config.host
        plain_hosts = plaintext_hosts(host, self.config.plaintext)
        self.address_family = _family(plain_hosts[0] if plain_hosts else host)
        self.request_queue_size = self.config.listen_backlog
        self.stopping = threading.Event()
        self.stopped = threading.Event()  # stop() has finished
        # why the server stopped itself (a thread it cannot run without died); None if not
        self.fault: str | None = None
        self._sessions: set[Session] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        # TLS connections still in their handshake (not sessions yet), and per address
        self._handshakes: set[socket.socket] = set()
        self._handshakes_from: dict[str, int] = {}
        self._listeners: list[Listener] = []
        self._listener_threads: list[threading.Thread] = []
        self._tls_listener: Listener | None = None
        self._plain = bool(plain_hosts)
        super().__init__(
            (plain_hosts[0] if plain_hosts else host, self.config.port),
            Handler,
            bind_and_activate=self._plain,
        )
        try:
            self._open_listeners(plain_hosts[1:])
        except BaseException:
            self.server_close()
            raise
        # a client may take in a quarter of its SendQ between two flushes (outbox.py)
        self.writer = Writer(
            self.config.close_linger,
            max(4096, self.config.sendq_bytes // 4),
            on_death=self._stage_died,
            stats=self.stats,
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
            stats=self.stats,
        )
        self._acceptor: threading.Thread | None = None
        self.announcer: Announcer | None = None
        # the web port (web/): file host, front page, /metrics
        self.files: FileStore | None = None
        self.web: WebServer | None = None
        self._web_thread: threading.Thread | None = None
        if self.config.http:
            try:
                if self.accounts is not None:  # uploads are by account
                    self.files = FileStore(resolve_files_dir(self.config), self.config)
                self.web = WebServer(self, self.files)
            except BaseException:
                self.server_close()
                self.writer.stop(0)
                for store in (self.store, self._accounts_store):
                    if store is not None:
                        store.close()
                raise
        self._timers = threading.Thread(target=self._tick_loop, name="chatroom-timers", daemon=True)

    def _open_listeners(self, more_plain_hosts: list[str]) -> None:
        if not self._plain:
            self.socket.close()  # made by TCPServer, never bound: no plain-text port
        for extra in more_plain_hosts:  # ::1 beside 127.0.0.1 (--plaintext loopback on ::)
            try:
                self._listeners.append(Listener(self, (extra, self.server_address[1]), Handler))
            except OSError as e:
                log.warning("plain text not served on %s: %s", extra, e.strerror or e)
        if self.tls is not None:
            self._tls_listener = Listener(
                self, (self.config.host, self.config.tls_port), TLSHandler
            )
            self._listeners.append(self._tls_listener)

    # --- socketserver hooks --------------------------------------------------------------

    def server_close(self) -> None:
        super().server_close()
        for listener in self._listeners:
            listener.server_close()
        if getattr(self, "web", None) is not None:
            self.web.server_close()  # type: ignore[union-attr]

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.config.host in ("::", ""):
            # '::' serves IPv4 and IPv6 together (IPv4 clients appear as ::ffff:a.b.c.d)
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(
        self, request: Any, client_address: Any, handler_class: type[Handler] | None = None
    ) -> None:
        # Thread.start() returns once the new thread has run, a turn of the GIL. Spawner
        # threads starting them side by side made storms of 5,000 register faster when
        # all went well (p99 0.2-0.4 s), but in 6 of 11 benchmark runs the threads
        # outran the GIL and registration collapsed (p99 3-4.5 s): starting threads one
        # at a time, here, is the admission control.
        t = threading.Thread(
            target=self._run_connection,
            args=(request, client_address, handler_class or self.RequestHandlerClass),
            name=f"chatroom-conn-{client_address[0]}:{client_address[1]}",
            daemon=True,
        )
        with self._lock:
            self._conn_threads.add(t)
        try:
            t.start()
        except RuntimeError as e:  # "can't start new thread": out of threads or memory
            with self._lock:
                self._conn_threads.discard(t)
            log.error("connection from %s closed unserved: %s", client_address[0], e)
            _close_quietly(request)

    def _run_connection(
        self, request: socket.socket, client_address: Any, handler_class: type[Handler]
    ) -> None:
        try:
            handler_class(request, client_address, self)
        except Exception:
            log.exception("connection from %s failed", client_address[0])
            _close_quietly(request)
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

    def begin_handshake(self, sock: socket.socket, host: str) -> str | None:
        """A TLS connection starts its handshake: None, or why it may not (stopping, or
        more handshakes under way from ``host`` than it may have connections)."""
        cfg = self.config
        with self._lock:
            if self.stopping.is_set():
                return "server shutting down"
            count = self._handshakes_from.get(host, 0)
            if count >= cfg.max_per_address and not (cfg.exempt_loopback and is_loopback(host)):
                return "too many TLS handshakes from this address"
            self._handshakes_from[host] = count + 1
            self._handshakes.add(sock)
        return None

    def end_handshake(self, sock: socket.socket, host: str) -> None:
        with self._lock:
            if sock in self._handshakes:
                self._handshakes.discard(sock)
                left = self._handshakes_from.get(host, 1) - 1
                if left > 0:
                    self._handshakes_from[host] = left
                else:
                    self._handshakes_from.pop(host, None)

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
            if self.files is not None:
                try:
                    self.files.maybe_sweep(now)
                except Exception:
                    log.exception("files: the retention sweep failed")

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
    def port(self) -> int | None:
        """The plain-text port (None with ``plaintext = "off"``)."""
        return self.server_address[1] if self._plain else None

    @property
    def tls_port(self) -> int | None:
        """The TLS port (None with TLS off)."""
        return self._tls_listener.port if self._tls_listener is not None else None

    @property
    def http_port(self) -> int | None:
        """The web port (None with http off); HTTPS on it too when TLS is on."""
        return self.web.port if self.web is not None else None

    def start(self) -> None:
        """Start the writer, the timers and the accept loops, each in its own thread."""
        self.writer.start()
        if self.pipeline is not None:
            self.pipeline.start()
        self._timers.start()
        if self._plain:
            self._acceptor = threading.Thread(
                target=self.serve_forever,
                args=(self.accept_poll,),
                name="chatroom-acceptor",
                daemon=True,
            )
            self._acceptor.start()
            host, port = self.server_address[:2]
            log.info("listening on %s port %s as %s", host, port, self.config.server_name)
        for listener in self._listeners:
            t = threading.Thread(
                target=listener.serve_forever,
                args=(self.accept_poll,),
                name=f"chatroom-acceptor-{listener.port}",
                daemon=True,
            )
            self._listener_threads.append(t)
            t.start()
            kind = "TLS" if listener is self._tls_listener else "plain text"
            log.info("listening on %s port %s (%s)", *listener.server_address[:2], kind)
        if self.web is not None:
            self._web_thread = threading.Thread(
                target=self.web.serve_forever,
                args=(self.accept_poll,),
                name="chatroom-web-acceptor",
                daemon=True,
            )
            self._web_thread.start()
            scheme = "HTTP and HTTPS" if self.web.tls_context is not None else "HTTP"
            log.info("listening on %s port %s (%s)", self.config.host, self.web.port, scheme)
        if self.config.announce:
            self._announce()

    def _announce(self) -> None:
        """DNS-SD over mDNS (announce.py): never fatal, withdrawn by stop()."""
        config = self.config
        wildcard = config.host in ("", "0.0.0.0", "::")
        addresses = lan_addresses(config.host)
        if not addresses and is_loopback(config.host):
            # this machine only: announced on the loopback interface alone (interfaces
            # below), for clients on this machine
            addresses = [config.host]
        self.announcer = Announcer(
            server_name=config.server_name,
            network=config.network,
            version=VERSION,
            host_addresses=addresses,
            # plain text kept to this machine is not for the LAN
            plain_port=self.port if config.plaintext == "on" else None,
            tls_port=self.tls_port,
            fingerprint=self.tls.fingerprint if self.tls is not None else None,
            interfaces=None if wildcard else [config.host],
        )
        self.announcer.start()

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

    def _stop_accepting(self, timeout: float) -> None:
        """Stop every accept loop (together: each takes up to its poll interval to
        notice), then close every listening socket and cut the handshakes under way."""
        running: list[tuple[socketserver.BaseServer, threading.Thread]] = list(
            zip(self._listeners, self._listener_threads, strict=False)
        )
        if self.web is not None and self._web_thread is not None:
            running.append((self.web, self._web_thread))
        if self._acceptor is not None:
            running.append((self, self._acceptor))
        stoppers = [
            threading.Thread(target=srv.shutdown, name="chatroom-stop-accept", daemon=True)
            for srv, _ in running[:-1]
        ]
        for t in stoppers:
            t.start()
        if running:
            running[-1][0].shutdown()  # the last one in this thread
        for t in stoppers:
            t.join(timeout)
        for _, t in running:
            t.join(timeout)
        self.server_close()
        with self._lock:
            handshaking = list(self._handshakes)
        for sock in handshaking:  # wakes their threads, which close them
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.web is not None:
            self.web.close_connections(timeout)

    def _stop(self, timeout: float) -> None:
        if self.announcer is not None:  # goodbye packets first: the server is leaving
            self.announcer.stop()
        self._stop_accepting(timeout)
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

# The IRC port and the IRC-over-TLS port: clients assume them, so commands need not
# name them.
IRC_PORT = 6667
IRCS_PORT = 6697
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


def plaintext_hosts(host: str, plaintext: str) -> list[str]:
    """Where the plain-text port listens: ``host``; for ``loopback``, the loopback
    address of its family (both for ``::``, which serves IPv4 and IPv6); for ``off``,
    nowhere.

    >>> plaintext_hosts("0.0.0.0", "on"), plaintext_hosts("0.0.0.0", "loopback")
    (['0.0.0.0'], ['127.0.0.1'])
    >>> plaintext_hosts("::", "loopback"), plaintext_hosts("fd00::20", "loopback")
    (['127.0.0.1', '::1'], ['::1'])
    >>> plaintext_hosts("::", "off")
    []
    """
    if plaintext == "off":
        return []
    if plaintext == "loopback":
        if host in ("", "::"):
            return ["127.0.0.1", "::1"]
        return ["::1"] if ":" in host else ["127.0.0.1"]
    return [host]


def tls_commands(address: str, port: int, fingerprint: str) -> list[str]:
    """The chatroom-client, irssi and WeeChat commands that reach ``address``:``port``
    over TLS, pinning the certificate by its fingerprint where the client can.

    >>> for line in tls_commands("192.168.1.20", 6697, "AB:CD"):
    ...     print(line)
    join with TLS: chatroom-client ircs://192.168.1.20
      irssi: /connect -tls -tls_pinned_cert AB:CD 192.168.1.20 6697
      WeeChat: /server add lan 192.168.1.20/6697 -tls -tls_fingerprint=abcd
      (WeeChat before 4.0: -ssl -ssl_fingerprint=abcd)
    """
    shown = f"[{address}]" if ":" in address else address
    client = f"chatroom-client ircs://{shown}" + (f":{port}" if port != IRCS_PORT else "")
    hexdigits = fingerprint.replace(":", "").lower()
    return [
        f"join with TLS: {client}",
        f"  irssi: /connect -tls -tls_pinned_cert {fingerprint} {address} {port}",
        f"  WeeChat: /server add lan {address}/{port} -tls -tls_fingerprint={hexdigits}",
        f"  (WeeChat before 4.0: -ssl -ssl_fingerprint={hexdigits})",
    ]


def how_to_reach(
    host: str,
    port: int | None,
    candidates: list[str] | None = None,
    *,
    tls_port: int | None = None,
    fingerprint: str = "",
    plaintext: str = "on",
    http_port: int | None = None,
) -> list[str]:
    """Lines for the log at start: where the server can be reached, and the commands.

    >>> for line in how_to_reach("0.0.0.0", 6667, ["127.0.0.1", "192.168.1.20", "10.0.0.7"]):
    ...     print(line)
    reachable on the LAN at 192.168.1.20, 10.0.0.7
    join with: chatroom-client 192.168.1.20  (irssi: /connect 192.168.1.20 6667)
    >>> for line in how_to_reach("127.0.0.1", 7000):
    ...     print(line)
    reachable from this machine only (listening on 127.0.0.1; --host 0.0.0.0 opens it to the LAN)
    join with: chatroom-client 127.0.0.1:7000  (irssi: /connect 127.0.0.1 7000)
    >>> for line in how_to_reach(
    ...     "0.0.0.0", 6667, ["192.168.1.20"], tls_port=6697, fingerprint="AB", plaintext="loopback"
    ... ):
    ...     print(line)
    reachable on the LAN at 192.168.1.20
    plain text from this machine only: chatroom-client 127.0.0.1  (irssi: /connect 127.0.0.1 6667)
    TLS on port 6697, certificate SHA256 Fingerprint=AB
    join with TLS: chatroom-client ircs://192.168.1.20
      irssi: /connect -tls -tls_pinned_cert AB 192.168.1.20 6697
      WeeChat: /server add lan 192.168.1.20/6697 -tls -tls_fingerprint=ab
      (WeeChat before 4.0: -ssl -ssl_fingerprint=ab)
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
    if port and plaintext == "loopback":
        client, irssi = connect_commands("127.0.0.1", port)
        lines.append(f"plain text from this machine only: {client}  (irssi: {irssi})")
    elif port:
        client, irssi = connect_commands(address, port)
        lines.append(f"join with: {client}  (irssi: {irssi})")
    if tls_port:
        lines.append(f"TLS on port {tls_port}, certificate SHA256 Fingerprint={fingerprint}")
        lines.extend(tls_commands(address, tls_port, fingerprint))
    if http_port:
        shown = f"[{address}]" if ":" in address else address
        lines.append(f"front page and files: http://{shown}:{http_port}/")
    return lines
