"""What a :class:`~chatroom.client.connection.Connection` reports: its states and events.

Small frozen dataclasses with no I/O, so the sans-IO client session
(:mod:`chatroom.client.session`) can take them without importing asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from chatroom.protocol import Message

__all__ = [
    "TRANSITIONS",
    "ConnState",
    "Event",
    "LagMeasured",
    "LoggedIn",
    "Notice",
    "Received",
    "Registered",
    "StateChanged",
    "TrustRefused",
]


class ConnState(StrEnum):
    """Where the connection is; the legal moves are in ``TRANSITIONS``."""

    IDLE = "idle"  # built, not started
    CONNECTING = "connecting"  # TCP connect in progress
    REGISTERING = "registering"  # CAP/PASS/NICK/USER sent, waiting for 001
    CONNECTED = "connected"  # registered: chat away
    WAITING = "waiting"  # lost the link; reconnecting after a backoff delay
    CLOSED = "closed"  # closed by us, or a fatal error (wrong password): stays closed


TRANSITIONS: dict[ConnState, frozenset[ConnState]] = {
    ConnState.IDLE: frozenset({ConnState.CONNECTING, ConnState.CLOSED}),
    ConnState.CONNECTING: frozenset({ConnState.REGISTERING, ConnState.WAITING, ConnState.CLOSED}),
    ConnState.REGISTERING: frozenset({ConnState.CONNECTED, ConnState.WAITING, ConnState.CLOSED}),
    ConnState.CONNECTED: frozenset({ConnState.WAITING, ConnState.CLOSED}),
    ConnState.WAITING: frozenset({ConnState.CONNECTING, ConnState.CLOSED}),
    ConnState.CLOSED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The connection moved to ``state``; ``reason`` says why in words for the user."""

    state: ConnState
    reason: str = ""
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Registered:
    """The server accepted us (001) as ``nick``; ``caps`` were acknowledged."""

    nick: str
    server: str
    caps: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Received:
    """A message from the server (every one, registration burst included)."""

    message: Message


@dataclass(frozen=True, slots=True)
class LagMeasured:
    """Round trip of our last PING, in seconds."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should read that is not a server message (nick retry...).

    ``active``: show it where the user is looking (an answer to what they just typed),
    not in the server window.
    """

    text: str
    error: bool = False
    active: bool = False


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The server accepted the credentials the connection now logs in with (SASL,
    NickServ or a registration): the app may remember their password."""

    account: str


@dataclass(frozen=True, slots=True)
class TrustRefused:
    """The server at ``address`` (``host:port``) presented a certificate with another
    fingerprint than the one trusted for it: the connection is refused and stays
    closed. ``expected`` is the trusted one: stored on first use, or given with
    ``--trust-fingerprint`` (``pinned``)."""

    address: str
    presented: str
    expected: str
    pinned: bool = False
    trusted_since: str = ""


Event = StateChanged | Registered | Received | LagMeasured | Notice | LoggedIn | TrustRefused
