"""Socket I/O for one connection: read with a bound, frame lines, hand them to the Session.

This is the only place that reads from a client socket; writing belongs to the
writer thread (outbox.py). Protocol decisions belong to session.py.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
from typing import TYPE_CHECKING

from chatroom.protocol import PeerProtocolError, sniff_foreign_protocol
from chatroom.server.outbox import Outbox
from chatroom.server.session import Session

if TYPE_CHECKING:
    from chatroom.server.server import ChatServer

log = logging.getLogger("chatroom.server")

# Bytes asked of the kernel per recv(): several pipelined lines at once, but small
# enough that the flood check sees a burst before acting on all of it.
RECV_CHUNK = 8192


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

    def setup(self) -> None:
        sock = self.request
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass
        self.host = display_host(self.client_address[0])
        self.outbox = Outbox(sock, self.server.front, self.server.config.sendq_bytes)  # type: ignore[arg-type]
        self.session = Session(self.server.registry, self.outbox, self.host)
        self.server.track(self.session)
        if self.server.stopping.is_set():
            self.session.terminate("Server shutting down")
        log.info("connect from %s port %s", self.host, self.client_address[1])

    def handle(self) -> None:
        session, sock = self.session, self.request
        stopping = self.server.stopping
        throttle = self.server.front.throttle
        first = True
        self.reason = "Remote host closed the connection"
        while True:
            try:
                data = sock.recv(RECV_CHUNK)
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
                    session.reject_foreign(foreign)
                    continue
            try:
                lines = session.buffer.feed(data)
            except PeerProtocolError as e:  # RecvQ exceeded: the session ends it
                session.refuse(e)
                continue
            flood_control = session.flood.enabled
            for i, line in enumerate(lines):
                if session.closed:
                    break
                if flood_control:
                    delay = session.flood_delay(len(lines) - i)
                    if delay is None:
                        session.terminate("Excess Flood")
                        break
                    if delay and stopping.wait(delay):
                        break
                try:
                    session.handle_line(line)
                except Exception:
                    # A bug in one command must not take the connection or server down.
                    log.exception("internal error handling a line from %s", session.nick)
            throttle()  # wait here (holding no lock) if the writer is far behind

    def finish(self) -> None:
        reason = self.outbox.close_reason or self.reason
        try:
            self.session.disconnect(reason)
        finally:
            self.outbox.reader_finished()
            self.server.untrack(self.session)
        log.info("disconnect %s (%s): %s", self.session.nick, self.host, reason)
