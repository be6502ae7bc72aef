"""MONITOR (IRCv3 monitor): a connection's list of nicks it wants to see come and go.

The list belongs to the connection and goes with it; the registry keeps the index
(casefolded nick -> watchers) and sends 730/731 as users register, change nick and
leave (registry.py). Here: the command's five forms, ``+ - C L S``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from chatroom.protocol import Message, is_valid_nick
from chatroom.protocol import Numeric as N
from chatroom.server.session import IRCError

if TYPE_CHECKING:
    from chatroom.server.session import Session

# A 730-732 line lists targets comma-separated; each line's list stays within this
# many bytes, so with the server name and the nick it fits in 512.
LIST_BUDGET = 400


def monitor(s: Session, msg: Message) -> None:
    sub = msg.params[0].upper()
    if sub in ("+", "-"):
        targets = [t for t in msg.param(1).split(",") if t]
        if not targets:
            raise IRCError(N.ERR_NEEDMOREPARAMS, "MONITOR", "Not enough parameters")
        if sub == "+":
            _add(s, targets)
        else:
            for nick in targets:
                s.reg.unwatch(s.user, nick)
    elif sub == "C":
        s.reg.unwatch_all(s.user)
    elif sub == "L":
        with s.reg.lock:
            listed = list(s.user.monitoring.values())
        for chunk in _chunks(listed):
            s.reply(N.RPL_MONLIST, chunk)
        s.reply(N.RPL_ENDOFMONLIST, "End of MONITOR list")
    elif sub == "S":
        with s.reg.lock:
            listed = list(s.user.monitoring.values())
        _status(s, listed)
    else:
        raise IRCError(N.ERR_UNKNOWNERROR, "MONITOR", "Unknown MONITOR subcommand")


def _add(s: Session, targets: list[str]) -> None:
    """``MONITOR + a,b``: watch each valid nick, then say which are online (730) and
    which are not (731); a full list refuses the rest (734) and stops there."""
    added: list[str] = []
    bad: str | None = None
    for i, nick in enumerate(targets):
        if not is_valid_nick(nick, s.cfg.nicklen):  # masks too: a nick, never a pattern
            bad = bad or nick
            continue
        if not s.reg.watch(s.user, nick):
            refused = ",".join(targets[i:])
            s.reply(N.ERR_MONLISTFULL, str(s.cfg.monitor_max), refused, "Monitor list is full")
            break
        added.append(nick)
    if bad is not None:
        s.reply(N.ERR_ERRONEUSNICKNAME, bad, "Erroneous nickname")
    _status(s, added)


def _status(s: Session, nicks: Iterable[str]) -> None:
    online: list[str] = []
    offline: list[str] = []
    with s.reg.lock:
        for nick in nicks:
            user = s.reg.find_user(nick)
            if user is None:
                offline.append(nick)
            else:
                online.append(user.source)
    for chunk in _chunks(online):
        s.reply(N.RPL_MONONLINE, chunk)
    for chunk in _chunks(offline):
        s.reply(N.RPL_MONOFFLINE, chunk)


def _chunks(items: list[str]) -> Iterable[str]:
    """``items`` comma-joined, in pieces of at most LIST_BUDGET bytes.

    >>> list(_chunks(["a" * 300, "b" * 200, "c"]))  # doctest: +ELLIPSIS
    ['aaa...a', 'bbb...b,c']
    """
    line: list[str] = []
    size = 0
    for item in items:
        if line and size + 1 + len(item.encode()) > LIST_BUDGET:
            yield ",".join(line)
            line, size = [], 0
        size += len(item.encode()) + (1 if line else 0)
        line.append(item)
    if line:
        yield ",".join(line)
