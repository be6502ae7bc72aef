"""CHATHISTORY (IRCv3 draft/chathistory), and history lines as each client can take them.

Reads go through the session's records.History (the server's store pipeline); a read
that fails is answered (``FAIL CHATHISTORY MESSAGE_ERROR``), never with silence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from chatroom.protocol import (
    Cap,
    Message,
    casefold,
    is_channel,
    is_valid_nick,
    parse_int,
    split_source,
)
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.commands import multiline as ML
from chatroom.server.records import (
    ID_TIME_SHIFT,
    AccountStoreError,
    History,
    HistoryReadError,
    StoredMessage,
    dm_key,
    first_id_at,
)
from chatroom.server.session import INT64_MAX, IRCError

if TYPE_CHECKING:
    from chatroom.server.session import Session

# Parameters of each subcommand, the limit last.
ARITY = {"LATEST": 4, "BEFORE": 4, "AFTER": 4, "AROUND": 4, "BETWEEN": 5, "TARGETS": 4}
FAIL_TEXT = {
    "INVALID_PARAMS": "Invalid parameters",
    "INVALID_TARGET": "Messages could not be retrieved",
    "MESSAGE_ERROR": "Messages could not be retrieved",
}
_EVERYTHING = (0, 1 << 62)

Fail = Callable[..., None]


class _UnknownMsgid(Exception):
    """A msgid selector naming no message of the conversation: an empty batch answers."""


def chathistory(s: Session, msg: Message) -> None:
    history = s.history
    if history is None:
        raise IRCError(N.ERR_UNKNOWNCOMMAND, "CHATHISTORY", "Unknown command")
    sub = msg.params[0].upper()

    def fail(code: str, *context: str) -> None:
        s.fail("CHATHISTORY", code, FAIL_TEXT[code], *context)

    if sub not in ARITY:
        return fail("INVALID_PARAMS", msg.params[0])
    if len(msg.params) < ARITY[sub]:
        return fail("INVALID_PARAMS", sub)
    raw_limit = msg.params[ARITY[sub] - 1]
    limit = parse_int(raw_limit, 1, INT64_MAX)
    if limit is None:
        return fail("INVALID_PARAMS", sub, raw_limit)
    limit = min(limit, s.cfg.chathistory_max)
    # what this client has sent may still be on its way to the disk; look after it
    history.wait_committed(s.reg.last_message_id)
    try:
        if sub == "TARGETS":
            return _targets(s, history, msg.params[1], msg.params[2], limit, fail)
        _window(s, history, sub, msg.params[1:], limit, fail)
    except HistoryReadError:  # logged by the store; the client gets an answer
        fail("MESSAGE_ERROR", sub, msg.params[1])


def _window(
    s: Session, history: History, sub: str, args: tuple[str, ...], limit: int, fail: Fail
) -> None:
    target = args[0]
    if is_channel(target):
        chan = s.reg.find_channel(target)
        if chan is None or not chan.is_member(s.user):
            return fail("INVALID_TARGET", sub, target)
        key, display, floor = chan.folded, chan.name, chan.history_from
    elif is_valid_nick(target, s.cfg.nicklen):
        key, display = dm_key(s.user.identity, partner_identity(s, target)), target
        floor = private_floor(s)
    else:
        return fail("INVALID_TARGET", sub, target)

    replay_events = events(s)

    def window(lo: int, hi: int, count: int, newest: bool) -> list[StoredMessage]:
        # an earlier room of this name (one that emptied) keeps its history
        return history.window(key, max(lo, floor), hi, count, newest, replay_events)

    def bounds(selector: str) -> tuple[int, int] | None:
        """A selector as (exclusive upper id for 'before', exclusive lower for 'after')."""
        kind, _, value = selector.partition("=")
        if kind == "msgid" and value:
            found = history.locate(key, value)
            if found is None:
                raise _UnknownMsgid(value)
            return found, found
        if kind == "timestamp":
            ms = T.parse_server_time(value)
            if ms is not None:
                return first_id_at(ms), first_id_at(ms + 1) - 1
        return None

    try:
        first = _EVERYTHING if (sub == "LATEST" and args[1] == "*") else bounds(args[1])
        second = bounds(args[2]) if sub == "BETWEEN" and first is not None else None
    except _UnknownMsgid:  # as Ergo: nothing to show, not a malformed request
        return send_history(s, display, [], mark=False)
    if first is None:
        return fail("INVALID_PARAMS", sub, args[1])
    if sub == "LATEST":
        rows = window(first[1] if first is not _EVERYTHING else 0, 1 << 62, limit, True)
    elif sub == "BEFORE":
        rows = window(0, first[0], limit, newest=True)
    elif sub == "AFTER":
        rows = window(first[1], 1 << 62, limit, newest=False)
    elif sub == "AROUND":
        older = window(0, first[0], limit // 2, newest=True)
        rows = older + window(first[0] - 1, 1 << 62, limit - len(older), newest=False)
    else:  # BETWEEN: from the first selector towards the second, both excluded
        if second is None:
            return fail("INVALID_PARAMS", sub, args[2])
        if first[0] <= second[0]:
            rows = window(first[1], second[0], limit, newest=False)
        else:
            rows = window(second[1], first[0], limit, newest=True)
    send_history(s, display, rows, mark=False)


def _targets(s: Session, history: History, start: str, end: str, limit: int, fail: Fail) -> None:
    times = []
    for sel in (start, end):
        kind, _, value = sel.partition("=")
        ms = T.parse_server_time(value) if kind == "timestamp" else None
        if ms is None:
            return fail("INVALID_PARAMS", "TARGETS", sel)
        times.append(ms)
    me = s.user.identity
    # a room whose only messages belong to an earlier room of its name is not listed,
    # nor a private conversation from before this connection when it has no account
    floors = {c.folded: c.history_from >> ID_TIME_SHIFT for c in s.user.channels.values()}
    dm_floor = (private_floor(s) + 1) >> ID_TIME_SHIFT
    keys = [*floors, *history.dm_keys(me)]
    found = [
        row
        for row in history.targets(keys, times[0], times[1], limit)
        if row[2] >= floors.get(row[0], dm_floor)
    ]
    ref = T.new_batch_id()
    batch = Cap.BATCH in s.user.caps
    if batch:
        s.send(Message("BATCH", ("+" + ref, "draft/chathistory-targets"), s.server))
    for key, display, latest in found:
        name = display if is_channel(display) else _partner(history, me, key, display, times)
        tags = {"batch": ref} if batch else {}
        s.send(Message("CHATHISTORY", ("TARGETS", name, T.server_time(latest)), s.server, tags))
    if batch:
        s.send(Message("BATCH", ("-" + ref,), s.server))


def _partner(history: History, me: str, key: str, display: str, times: list[int]) -> str:
    """The other side of a direct conversation, spelt as last seen: the addressee of
    its latest message in the window, or (when that was sent to me) its sender."""
    first, _, second = key.partition(" ")
    other = (second if first == me else first).removeprefix("~")  # or a note to myself
    if casefold(display) == other:
        return display
    lo, hi = sorted(times)
    latest = history.window(key, ((lo + 1) << ID_TIME_SHIFT) - 1, hi << ID_TIME_SHIFT, 1, True)
    if latest:
        sender = split_source(latest[0].sender)[0]
        if casefold(sender) == other:
            return sender
    return other


def partner_identity(s: Session, nick: str) -> str:
    """Who ``nick`` is in private history (registry.User.identity): the account of
    that name (a registered nick is its account's, whoever uses it now), else the
    account of whoever has the nick now, else the bare nick."""
    accounts = s.reg.accounts
    try:
        if accounts is not None and accounts.exists(nick):
            return "~" + casefold(nick)
    except AccountStoreError:
        pass  # logged; fall back to who has the nick now
    peer = s.reg.find_user(nick)
    return peer.identity if peer is not None else casefold(nick)


def private_floor(s: Session) -> int:
    """Private history a connection may read starts here: all of it for an account,
    only what came since it connected without one (Ergo's rule: a nick proves nothing
    about who held it before)."""
    if s.user.account:
        return 0
    return first_id_at(int(s.user.signon * 1000)) - 1  # windows exclude their floor


def events(s: Session) -> bool:
    """Whether history for this client includes events (reactions and other kept
    TAGMSGs, topic changes): only for clients of draft/event-playback, and a TAGMSG
    only reaches those of message-tags."""
    return Cap.DRAFT_EVENT_PLAYBACK in s.user.caps and T.has_all_tags(s.variant)


def send_history(s: Session, display: str, rows: Iterable[StoredMessage], mark: bool) -> None:
    """History lines for this client: in a ``chathistory`` batch when it speaks
    batch, with their original time and msgid when it speaks the tags, and with the
    time written into the text (``mark``) when it has no other way to tell. A message
    of several lines (draft/multiline) comes as a nested ``draft/multiline`` batch to
    clients of multiline, else as its lines, the msgid on the first."""
    batch = Cap.BATCH in s.user.caps
    timed, all_tags = T.has_time(s.variant), T.has_all_tags(s.variant)
    mark = mark and not timed
    ref = T.new_batch_id()
    if batch:
        s.send(Message("BATCH", ("+" + ref, "chathistory", display), s.server))
    for m in rows:
        tags = row_tags(m, timed, all_tags, ref if batch else None)
        if m.command == "TAGMSG":
            if all_tags:  # a TAGMSG is nothing to those without message-tags
                s.send(Message("TAGMSG", (m.display,), m.sender, tags))
            continue
        if m.command not in _LINES:  # an event: TOPIC
            s.send(Message(m.command, (m.display, m.text), m.sender, tags))
            continue
        pieces = ML.replay_pieces(m.sender, m.command, m.display, m.text, MARK_BYTES if mark else 0)
        if pieces is None:
            text = mark_history(m.text, m.time_ms) if mark else m.text
            s.send(Message(m.command, (m.display, text), m.sender, tags))
        elif batch and Cap.DRAFT_MULTILINE in s.user.caps:
            _send_multiline(s, m, pieces, tags, ref)
        else:
            for text, _ in pieces:
                if text:  # no blank lines for clients without multiline
                    text = mark_history(text, m.time_ms) if mark else text
                    s.send(Message(m.command, (m.display, text), m.sender, tags))
                    tags = {k: v for k, v in tags.items() if k != "msgid"}  # the first only
    if batch:
        s.send(Message("BATCH", ("-" + ref,), s.server))


def _send_multiline(
    s: Session,
    m: StoredMessage,
    pieces: list[tuple[str, bool]],
    tags: dict[str, str],
    outer: str,
) -> None:
    """A stored multiline message as a ``draft/multiline`` batch (inside the
    chathistory batch ``outer``): its tags on the BATCH line, as when it was relayed."""
    ref = T.new_batch_id()
    s.send(Message("BATCH", ("+" + ref, ML.BATCH_TYPE, m.display), m.sender, tags))
    for text, concat in pieces:
        line_tags = {"batch": ref, ML.CONCAT: ""} if concat else {"batch": ref}
        s.send(Message(m.command, (m.display, text), m.sender, line_tags))
    s.send(Message("BATCH", ("-" + ref,), s.server, {"batch": outer}))


# What mark_history adds to a line ("[history YYYY-MM-DD HH:MM] "), in bytes.
MARK_BYTES = 27
_LINES = frozenset({"PRIVMSG", "NOTICE"})


def row_tags(m: StoredMessage, timed: bool, all_tags: bool, batch: str | None) -> dict[str, str]:
    """The tags a replayed row carries for a client: its time (server-time), its msgid
    and client-only tags (message-tags), and the batch it is in."""
    tags: dict[str, str] = {}
    if timed:
        tags["time"] = T.server_time(m.time_ms)
    if all_tags:
        tags["msgid"] = m.msgid
        tags.update(m.tags)
    if batch is not None:
        tags["batch"] = batch
    return tags


def mark_history(text: str, time_ms: int) -> str:
    """Write a replayed line's time into its text, for clients without server-time."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(time_ms / 1000))
    if text.startswith("\x01ACTION "):
        return f"\x01ACTION [history {stamp}] {text[8:]}"
    return f"[history {stamp}] {text}"
