"""GET /metrics: the running server in the Prometheus text format, for Grafana.

Format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/): for each
metric a ``# HELP`` and a ``# TYPE`` line, then ``name{labels} value``. Counters only go
up and end in ``_total``; rates (messages per second) are the scraper's to compute,
with ``rate()``, so a scrape costs the server a few reads and no clock of its own.

Everything here is a read: the registry's figures under its lock (a few ``len()``), the
counters of :class:`chatroom.server.stats.Stats` without one, the number of accounts by
one small query, and the history's row count as the store thread keeps it (never a
COUNT over the messages, which would cost tens of milliseconds a scrape at a million).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatroom.server.config import VERSION
from chatroom.server.records import AccountStoreError

if TYPE_CHECKING:
    from chatroom.server.server import ChatServer

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    r"""A label value as the format quotes it: backslash, double quote and newline escaped.

    >>> _label('a"b\\c\nd')
    '"a\\"b\\\\c\\nd"'
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _figure(owner: object, name: str) -> int:
    """A figure of the file store (an attribute, a property or a method); 0 without one."""
    value = getattr(owner, name, 0)
    return int(value() if callable(value) else value)


class _Exposition:
    """Lines of one scrape, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, kind: str, text: str, value: float, labels: str = "") -> None:
        self.lines.append(f"# HELP {name} {text}")
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.append(f"{name}{labels} {value}")

    def encode(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def render(chat: ChatServer) -> bytes:
    """The scrape: connections, users, rooms, messages, deliveries, drops, history, files."""
    reg = chat.registry
    with reg.lock:  # a consistent set of figures; only len() under the lock
        connections = len(reg.connections)
        registered = reg.registered_count
        rooms = len(reg.channels)
    accounts: int | None = None
    if chat.accounts is not None:
        try:
            accounts = chat.accounts.count()
        except AccountStoreError:
            log.warning("metrics: cannot count accounts", exc_info=True)
    stats = chat.stats
    pipeline = chat.pipeline
    files = getattr(chat, "files", None)

    m = _Exposition()
    m.add(
        "chatroom_build_info",
        "gauge",
        "The server's version, as a label; the value is always 1.",
        1,
        "{version=" + _label(VERSION.removeprefix("chatroom-")) + "}",
    )
    m.add(
        "chatroom_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        round(stats.uptime, 3),
    )
    m.add(
        "chatroom_connections",
        "gauge",
        "Open IRC connections, registered or not (TLS handshakes under way are not).",
        connections,
    )
    m.add(
        "chatroom_users_registered",
        "gauge",
        "Connections that finished registration (NICK and USER): the people online.",
        registered,
    )
    if accounts is not None:
        m.add(
            "chatroom_accounts",
            "gauge",
            "Registered accounts one can log in to (dropped ones are not counted).",
            accounts,
        )
    m.add("chatroom_rooms", "gauge", "Rooms that exist (secret ones too).", rooms)
    m.add(
        "chatroom_messages_total",
        "counter",
        "PRIVMSG, NOTICE and TAGMSG accepted for relay, once per target (a multiline"
        " batch counts once); messages per second is rate() of this.",
        stats.messages,
    )
    m.add(
        "chatroom_deliveries_total",
        "counter",
        "Lines the writer passed to client sockets (one message to a room of n is n"
        " deliveries); deliveries per second is rate() of this.",
        stats.deliveries,
    )
    m.add(
        "chatroom_sendq_drops_total",
        "counter",
        "Connections ended because they read too slowly (SendQ exceeded).",
        stats.sendq_drops,
    )
    m.add(
        "chatroom_flood_kills_total",
        "counter",
        "Connections ended for sending too fast (Excess Flood).",
        stats.flood_kills,
    )
    backlog = chat.writer.backlog + (pipeline.backlog if pipeline is not None else 0)
    m.add(
        "chatroom_outbox_backlog",
        "gauge",
        "Entries waiting for the history store thread and the writer (high: falling behind).",
        backlog,
    )
    m.add(
        "chatroom_history_rows",
        "gauge",
        "Messages stored in the history database (0 when history is off).",
        pipeline.rows if pipeline is not None else 0,
    )
    m.add(
        "chatroom_history_unsaved_total",
        "counter",
        "Messages delivered but not stored (the database or disk failed).",
        pipeline.unsaved if pipeline is not None else 0,
    )
    m.add(
        "chatroom_uploads_total",
        "counter",
        "Files uploaded to the file host.",
        _figure(files, "uploads_total"),
    )
    m.add(
        "chatroom_upload_bytes_total",
        "counter",
        "Bytes of files uploaded to the file host; upload throughput is rate() of this.",
        _figure(files, "upload_bytes_total"),
    )
    m.add(
        "chatroom_files_stored",
        "gauge",
        "Files the file host keeps now.",
        _figure(files, "count"),
    )
    m.add(
        "chatroom_files_bytes",
        "gauge",
        "Bytes of the files the file host keeps now.",
        _figure(files, "total_bytes"),
    )
    return m.encode()
