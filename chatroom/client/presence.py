"""Presence of the people we have private conversations with, through MONITOR.

Sans-IO. :class:`Presence` learns the server's limit from ISUPPORT ``MONITOR=N``,
answers :meth:`Presence.sync` with the ``MONITOR + a,b`` / ``MONITOR - a`` lines that
make the server watch exactly the nicks of our private windows (as many as its limit
allows), and keeps what 730 (online), 731 (offline) and 734 (list full) said. A server
without MONITOR gets nothing and every status stays unknown.

Away is not MONITOR's: :meth:`Presence.status` reads it from the rooms' member lists,
which away-notify and WHO keep.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from chatroom.client.model import Buffer
from chatroom.protocol import Message, casefold, split_source

__all__ = ["MONITOR_CHUNK", "Presence", "Status"]

# Nicks per MONITOR line: 10 nicks of 30 characters stay far below 512 bytes.
MONITOR_CHUNK = 10
RPL_MONONLINE = "730"
RPL_MONOFFLINE = "731"
ERR_MONLISTFULL = "734"


class Status(StrEnum):
    """What the PEOPLE list shows beside a private conversation."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class Presence:
    """Who of the watched nicks is online (casefolded nick -> bool), and what the
    server is told to watch."""

    def __init__(self) -> None:
        self.limit: int | None = None  # None: the server has no MONITOR
        self.monitored: dict[str, str] = {}  # casefolded -> the nick as sent
        self.online: dict[str, bool] = {}  # casefolded -> online
        self._refused: set[str] = set()  # 734: the list was full; not asked again

    def reset(self) -> None:
        """A new connection: the server watches nothing yet; ISUPPORT follows."""
        self.limit = None
        self.monitored.clear()
        self.online.clear()
        self._refused.clear()

    def line(self, msg: Message) -> bool:
        """A line from the server; True when a status changed (repaint the list)."""
        command = msg.command
        if command == "005":
            for token in msg.params[1:-1]:
                key, _, value = token.partition("=")
                if key == "MONITOR":
                    # MONITOR without a value: no limit given; take a modest one.
                    self.limit = int(value) if value.isdigit() else 100
            return False
        if command in (RPL_MONONLINE, RPL_MONOFFLINE):
            changed = False
            for target in msg.param(-1).split(","):
                folded = casefold(split_source(target)[0] if target else "")
                if folded in self.monitored:
                    now = command == RPL_MONONLINE
                    changed |= self.online.get(folded) != now
                    self.online[folded] = now
            return changed
        if command == ERR_MONLISTFULL:
            for nick in msg.param(2).split(","):
                folded = casefold(nick)
                if self.monitored.pop(folded, None) is not None:
                    self._refused.add(folded)
        return False

    def sync(self, nicks: Iterable[str]) -> list[Message]:
        """MONITOR lines so that the server watches ``nicks`` (our private windows)."""
        if self.limit is None:
            return []
        wanted = {casefold(n): n for n in nicks}
        gone = [self.monitored[f] for f in self.monitored if f not in wanted]
        out = _chunked("-", gone)
        for nick in gone:
            folded = casefold(nick)
            del self.monitored[folded]
            self.online.pop(folded, None)
        room = self.limit - len(self.monitored) if self.limit else len(wanted)
        new = [n for f, n in wanted.items() if f not in self.monitored and f not in self._refused][
            : max(0, room)
        ]
        for nick in new:
            self.monitored[casefold(nick)] = nick
        return out + _chunked("+", new)

    def status(self, nick: str, buffers: Mapping[str, Buffer] | Iterable[Buffer]) -> Status:
        """Online, away (per a room's member list), offline, or unknown."""
        folded = casefold(nick)
        online = self.online.get(folded)
        if online is None:
            return Status.UNKNOWN
        if not online:
            return Status.OFFLINE
        bufs = buffers.values() if isinstance(buffers, Mapping) else buffers
        for buf in bufs:
            member = buf.members.get(folded)
            if member is not None and member.away:
                return Status.AWAY
        return Status.ONLINE


def _chunked(sign: str, nicks: list[str]) -> list[Message]:
    return [
        Message.of("MONITOR", sign, ",".join(nicks[i : i + MONITOR_CHUNK]))
        for i in range(0, len(nicks), MONITOR_CHUNK)
    ]
