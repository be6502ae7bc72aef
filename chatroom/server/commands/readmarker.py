"""MARKREAD (IRCv3 draft/read-marker): how far a user has read each room and conversation.

Kept per account in the database (records.Accounts), so every client of the account
agrees: a marker only moves forward, a move is told at once to the account's other
connections that negotiated ``draft/read-marker``, and joining a room sends its marker
before the end of NAMES. A connection without an account keeps its markers in memory,
for itself, until it goes (the spec's tests expect MARKREAD to work without one).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chatroom.protocol import Cap, Message, casefold, is_valid_channel, is_valid_nick, serialize
from chatroom.server import tags as T
from chatroom.server.records import AccountStoreError

if TYPE_CHECKING:
    from chatroom.server.session import Session

# The one timestamp form the spec allows (server-time's), in ASCII digits; the
# datetime parser behind it takes many more forms than that.
_TIMESTAMP = re.compile(
    r"timestamp=([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z)\Z"
)
NO_MARKER = "*"


def parse_timestamp(param: str) -> int | None:
    """``timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` in ms since the epoch; None otherwise.

    >>> parse_timestamp("timestamp=2019-01-04T14:33:26.123Z")
    1546612406123
    >>> parse_timestamp("*"), parse_timestamp("timestamp=2019-01-04"), parse_timestamp("x")
    (None, None, None)
    """
    found = _TIMESTAMP.match(param)
    if found is None:
        return None
    ms = T.parse_server_time(found.group(1))
    return ms if ms is not None and ms >= 0 else None


def wire(ms: int | None) -> str:
    """A marker as MARKREAD's last parameter.

    >>> wire(None), wire(1500)
    ('*', 'timestamp=1970-01-01T00:00:01.500Z')
    """
    return NO_MARKER if ms is None else "timestamp=" + T.server_time(ms)


def markread(s: Session, msg: Message) -> None:
    if not msg.params or not msg.params[0]:
        s.fail("MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")
        return
    target = msg.params[0]
    if not (is_valid_channel(target, s.cfg.channellen) or is_valid_nick(target, s.cfg.nicklen)):
        s.fail("MARKREAD", "INVALID_PARAMS", "Invalid parameters", target)
        return
    if len(msg.params) < 2:
        try:
            s.send(_markread(s, target, lookup(s, target)))
        except AccountStoreError:  # logged by the store
            _internal_error(s, target)
        return
    ms = parse_timestamp(msg.params[1])
    if ms is None:
        s.fail("MARKREAD", "INVALID_PARAMS", "Invalid parameters", target, msg.params[1])
        return
    ms = min(ms, T.now_ms())  # a marker from the future would hide every message to come
    user = s.user
    if user.account is None or s.reg.accounts is None:
        before = user.read_markers.pop(casefold(target), None)
        after = ms if before is None else max(before, ms)
        markers = user.read_markers
        if len(markers) >= s.cfg.read_markers_max:  # the least recently moved goes
            del markers[next(iter(markers))]
        markers[casefold(target)] = after
        s.send(_markread(s, target, after))
        return
    account = user.account
    try:
        before, after = s.reg.accounts.set_read_marker(account, target, ms, s.cfg.read_markers_max)
    except AccountStoreError:  # logged by the store
        _internal_error(s, target)
        return
    line = _markread(s, target, after)
    s.send(line)
    if after != before:
        _tell_other_connections(s, account, line)


def lookup(s: Session, target: str) -> int | None:
    """This user's marker on ``target`` (raises AccountStoreError when it cannot be read)."""
    user, accounts = s.user, s.reg.accounts
    if user.account is None or accounts is None:
        return user.read_markers.get(casefold(target))
    return accounts.read_marker(user.account, target)


def join_marker(s: Session, room: str) -> str | None:
    """The marker a client of read-marker gets in a MARKREAD after joining ``room``
    (before the end of NAMES), as sent; None for the other clients. Read before the
    join takes the registry lock."""
    if Cap.READ_MARKER not in s.user.caps:
        return None
    try:
        return wire(lookup(s, room))
    except AccountStoreError:  # logged by the store; the client still gets its line
        return NO_MARKER


def _markread(s: Session, target: str, ms: int | None) -> Message:
    return Message("MARKREAD", (target, wire(ms)), s.server)


def _internal_error(s: Session, target: str) -> None:
    s.fail("MARKREAD", "INTERNAL_ERROR", "The read timestamp could not be set", target)


def _tell_other_connections(s: Session, account: str, line: Message) -> None:
    """The marker moved: the account's other connections of read-marker hear it now."""
    key, me = casefold(account), s.user
    with s.reg.lock:  # snapshot under the lock, send outside it
        others = [
            u.conn
            for u in s.reg.registered_users()
            if u is not me
            and u.account is not None
            and casefold(u.account) == key
            and Cap.READ_MARKER in u.caps
        ]
    data = serialize(line)
    for conn in others:
        conn.send(data)
