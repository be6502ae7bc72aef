"""Read markers (IRCv3 draft/read-marker) on the client: what to tell the server, and
what its MARKREAD does to unread counts and the "new messages" divider.

A window the user has read (shown, scrolled to its end) is told to the server as
``MARKREAD <target> timestamp=<newest message shown>``, at most once per
:data:`MARK_INTERVAL` per target and never backwards; the last one held back by that
pace goes out when it allows. The server's ``MARKREAD <target> timestamp=T`` (an
answer, a JOIN's, or another client of the account reading) sets the window's
unread count to the messages after T, so reading on one machine clears the other.
"""

from __future__ import annotations

from datetime import UTC, datetime

from chatroom.client.model import CHAT_KINDS, Buffer, BufferKind, Entry
from chatroom.protocol import Message

__all__ = ["CAP", "MARK_INTERVAL", "ReadMarkers", "apply", "newest_read", "wire_time"]

CAP = "draft/read-marker"
# At most one MARKREAD per target this often, in seconds (reading fast through a busy
# room would otherwise send one per repaint).
MARK_INTERVAL = 2.0


def wire_time(when: datetime) -> str:
    """A time as MARKREAD's timestamp (server-time's form, in UTC, to the ms).

    >>> wire_time(datetime(2019, 1, 4, 14, 33, 26, 123456, tzinfo=UTC))
    'timestamp=2019-01-04T14:33:26.123Z'
    """
    utc = when.astimezone(UTC)
    return "timestamp=" + utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_wire(param: str) -> datetime | None:
    """MARKREAD's last parameter as a time; None for ``*`` or anything unreadable.

    >>> parse_wire("timestamp=2019-01-04T14:33:26.123Z").isoformat()
    '2019-01-04T14:33:26.123000+00:00'
    >>> parse_wire("*"), parse_wire("timestamp=soon")
    (None, None)
    """
    if not param.startswith("timestamp="):
        return None
    try:
        when = datetime.fromisoformat(param[len("timestamp=") :].replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _counted(entry: Entry) -> bool:
    """A line that counts as unread when it is not ours."""
    return entry.kind in CHAT_KINDS and not entry.own and not entry.deleted


def newest_read(buf: Buffer) -> datetime | None:
    """The time of the newest message in ``buf`` the server knows (not one of ours
    still waiting for its echo); None when there is none."""
    for entry in reversed(buf.entries):
        if entry.kind in CHAT_KINDS and not entry.pending and not entry.failed:
            return entry.time
    return None


def apply(buf: Buffer, when: datetime, active: bool) -> bool:
    """The server says ``buf`` was read up to ``when``: unread counts and the divider
    follow (the shown window has none to change but its divider). True if it changed."""
    if buf.read_marker is not None and when <= buf.read_marker:
        return False
    buf.read_marker = when
    after = [e for e in buf.entries if _counted(e) and e.time > when]
    divider = after[0].seq if after and buf.divider_seq is not None else None
    if active:
        changed = divider != buf.divider_seq
    else:
        unread, mentions = len(after), sum(e.mention for e in after)
        changed = (unread, mentions, divider) != (buf.unread, buf.mentions, buf.divider_seq)
        buf.unread, buf.mentions = min(buf.unread, unread), min(buf.mentions, mentions)
    if divider != buf.divider_seq:
        buf.divider_seq = divider
        buf.version += 1
    return changed


class ReadMarkers:
    """When to send MARKREAD: per target, paced and never backwards (sans-IO; the
    caller gives the clock)."""

    def __init__(self, interval: float = MARK_INTERVAL) -> None:
        self.interval = interval
        self._sent_at: dict[str, float] = {}  # buffer key -> when we last sent
        self._held: dict[str, tuple[str, datetime]] = {}  # key -> (target, time)

    def reset(self) -> None:
        """A new connection: nothing is held back."""
        self._sent_at.clear()
        self._held.clear()

    def read(self, buf: Buffer, now: float) -> list[Message]:
        """``buf`` was read to its end: its MARKREAD, now or (held) later."""
        if buf.kind is BufferKind.SERVER:
            return []
        when = newest_read(buf)
        if when is None or (buf.read_marker is not None and when <= buf.read_marker):
            return []
        held = self._held.get(buf.key)
        if held is not None and when <= held[1]:
            return self.due(now)
        self._held[buf.key] = (buf.name, when)
        return self.due(now)

    def due(self, now: float) -> list[Message]:
        """What the pace allows to go now of what was held back."""
        out: list[Message] = []
        for key, (target, when) in list(self._held.items()):
            if now - self._sent_at.get(key, -self.interval) >= self.interval:
                del self._held[key]
                self._sent_at[key] = now
                out.append(Message.of("MARKREAD", target, wire_time(when)))
        return out
