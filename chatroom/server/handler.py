"""Socket I/O for one connection: read with a bound, frame lines, hand them to the Session.

This is the only place that reads from a client socket; writing belongs to the
writer thread (outbox.py). Protocol decisions belong to session.py.

On the TLS port (:class:`TLSHandler`) the connection's thread first runs the handshake
(tls.py) with a deadline, before there is a Session: a peer that stalls, sends garbage
or speaks plain text holds only its own thread, for at most ``tls_handshake_timeout``,
and never counts as a client. After it, the thread reads ciphertext from the socket and
takes plaintext from the connection's TLSStream; the rest is the plain loop.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
import ssl
import threading
import time
from typing import TYPE_CHECKING

from chatroom.protocol import PeerProtocolError, sniff_foreign_protocol
from chatroom.server.outbox import Outbox
from chatroom.server.registry import is_loopback
from chatroom.server.session import Session
from chatroom.server.tls import HandshakeFailed, NotTLS, TLSStream, handshake
from chatroom.server.web.httpd import filehost_url

if TYPE_CHECKING:
    from chatroom.server.server import ChatServer

log = logging.getLogger("chatroom.server")

# Bytes asked of the kernel per recv(): several pipelined lines at once, but small
# enough that the flood check sees a burst before acting on all of it.
RECV_CHUNK = 8192
# After answering plain text on the TLS port in clear: how long, and how many bytes, we
# read and drop what the peer still sends, so the close is a FIN and not a reset that
# could destroy the answer before it is read.
REFUSAL_DRAIN_SECONDS = 2.0
REFUSAL_DRAIN_BYTES = 1 << 16


def display_host(address: str) -> str:
    """The host part shown in ``nick!user@host``: IPv4-mapped IPv6 back to IPv4, and a
    leading ``0`` on IPv6 so it never starts with ':' (which would break parameters)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    text = str(ip)
    return "0" + text if text.startswith(":") else text


class Handler(socketserver.BaseRequestHandler):
    """One thread per connection: reads, applies flood control, feeds the Session."""

    server: ChatServer
    request: socket.socket
    tls: TLSStream | None = None  # set once a TLS handshake succeeded (TLSHandler)

    def setup(self) -> None:
        self.tune_socket()
        self.host = display_host(self.client_address[0])
        self.open_session()

    def tune_socket(self) -> None:
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass

    def open_session(self) -> None:
        """Make the connection a client: its outbox (the writer's from now on) and Session."""
        server = self.server
        self.outbox = Outbox(self.request, server.front, server.config.sendq_bytes, self.tls)  # type: ignore[arg-type]
        self.session = Session(server.registry, self.outbox, self.host)
        if server.files is not None and server.web is not None:
            # the address this connection reached us on: the upload URL works from there
            self.session.filehost = filehost_url(
                self.request, server.web.port, tls=self.tls is not None
            )
        server.track(self.session)
        if server.stopping.is_set():
            self.session.terminate("Server shutting down")
        if self.tls is None:
            log.info("connect from %s port %s", self.host, self.client_address[1])
        else:
            log.info(
                "connect from %s port %s (%s)", self.host, self.client_address[1], self.tls.version
            )

    def handle(self) -> None:
        session, sock = self.session, self.request
        user, handle_line = session.user, session.handle_line
        stopping = self.server.stopping
        throttle = self.server.front.throttle
        # chosen once: a plain connection reads with the socket's own recv, as always
        recv = sock.recv if self.tls is None else self.tls_recv
        first = self.tls is None  # sniffing for TLS or HTTP is for the plain port
        self.reason = "Remote host closed the connection"
        while True:
            try:
                data = recv(RECV_CHUNK)
            except OSError as e:
                self.reason = f"Read error: {e.strerror or e}"
                break
            if not data:
                break
            if session.closed:
                continue  # drain until the peer (or the writer) closes, so nothing is reset
            if first:
                first = False
                foreign = sniff_foreign_protocol(data)
                if foreign:
                    log.info("%s spoke %s on the IRC port; closing", self.host, foreign)
                    tls_port = self.server.tls_port
                    if foreign == "TLS" and tls_port:
                        session.terminate(
                            "TLS is not supported on this port",
                            f"Closing Link: {self.host} (this is the plain-text IRC port,"
                            f" not TLS; use port {tls_port} for TLS)",
                        )
                    else:
                        session.reject_foreign(foreign)
                    continue
            try:
                lines = session.buffer.feed(data)
            except PeerProtocolError as e:  # RecvQ exceeded: the session ends it
                session.refuse(e)
                continue
            if session.flood.enabled:
                self.handle_lines(lines, stopping)
            else:  # (flood control off: the loop without its checks)
                for line in lines:
                    if user.gone:
                        break
                    try:
                        handle_line(line)
                    except Exception:
                        log.exception("internal error handling a line from %s", session.nick)
            throttle()  # wait here (holding no lock) if the writer is far behind

    def handle_lines(self, lines: list[bytes], stopping: threading.Event) -> None:
        """Act on lines received together, under flood control (fake lag)."""
        session = self.session
        for i, line in enumerate(lines):
            if session.closed:
                break
            delay = session.flood_delay(len(lines) - i)
            if delay is None:
                self.server.stats.flood_kill()
                session.terminate("Excess Flood")
                break
            if delay and stopping.wait(delay):
                break
            try:
                session.handle_line(line)
            except Exception:
                # A bug in one command must not take the connection or server down.
                log.exception("internal error handling a line from %s", session.nick)

    def tls_recv(self, limit: int) -> bytes:
        """Like ``sock.recv`` for a TLS connection: plaintext, b"" at the end (close_notify
        or EOF); blocks on the socket only while no whole record is buffered."""
        tls, sock = self.tls, self.request
        received = b""
        while True:
            try:
                data, made = tls.read(received, limit)  # type: ignore[union-attr]
            except ssl.SSLError as e:
                raise ConnectionError(f"TLS: {e.reason or e}") from None
            if made:
                self.outbox.records_made()
            if data is not None:
                return data
            received = sock.recv(limit)
            if not received:
                return b""

    def finish(self) -> None:
        reason = self.outbox.close_reason or self.reason
        try:
            self.session.disconnect(reason)
        finally:
            self.outbox.reader_finished()
            self.server.untrack(self.session)
        log.info("disconnect %s (%s): %s", self.session.nick, self.host, reason)


class TLSHandler(Handler):
    """A connection to the TLS port: the handshake first, in this thread; then a client.

    A connection that does not complete it never becomes a client: no Session, no
    outbox; this thread closes its socket and logs one line why."""

    failure: str | None = None

    def setup(self) -> None:
        self.tune_socket()
        self.host = display_host(self.client_address[0])
        server, sock = self.server, self.request
        refusal = server.begin_handshake(sock, self.host)
        if refusal:
            self.failure = refusal
            return
        try:
            self.tls = handshake(
                sock,
                server.tls.context,  # type: ignore[union-attr]
                server.config.tls_handshake_timeout,
            )
        except NotTLS:
            self.failure = "spoke plain text on the TLS port"
            self.answer_in_clear()
        except HandshakeFailed as e:
            self.failure = f"TLS handshake failed: {e}"
        except TimeoutError:
            self.failure = "TLS handshake timed out"
        except OSError as e:
            self.failure = f"TLS handshake: {e.strerror or e}"
        finally:
            server.end_handshake(sock, self.host)
        if self.failure is None:
            self.open_session()

    def answer_in_clear(self) -> None:
        """Plain text on the TLS port: say in clear where to go, then close gently."""
        sock, server = self.request, self.server
        plain_port = server.port
        if plain_port and (server.config.plaintext == "on" or is_loopback(self.host)):
            where = f"use port {plain_port} for plain text, or TLS"
        elif plain_port:
            where = "plain text is for this machine only: use TLS"
        else:
            where = "this server speaks only TLS"
        line = f"ERROR :Closing Link: this is the TLS port; {where}\r\n".encode()
        deadline = time.monotonic() + min(
            REFUSAL_DRAIN_SECONDS, server.config.tls_handshake_timeout
        )
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)
            drained = 0
            while drained < REFUSAL_DRAIN_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                chunk = sock.recv(4096)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def handle(self) -> None:
        if self.failure is None:
            super().handle()

    def finish(self) -> None:
        if self.failure is None:
            super().finish()
            return
        try:
            self.request.close()
        except OSError:
            pass
        # a client checking the certificate against the system's CAs before trusting
        # it on first use fails one handshake each time: not worth an INFO line
        level = logging.DEBUG if self.failure.startswith("TLS handshake failed") else logging.INFO
        log.log(
            level,
            "TLS connection from %s port %s closed: %s",
            self.host,
            self.client_address[1],
            self.failure,
        )
