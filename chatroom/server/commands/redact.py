"""REDACT (IRCv3 draft/message-redaction): delete a stored message, and tell who can hear it.

Anyone may delete their own message; a room's operators any message of their room;
in a private conversation, only your own. The stored row is deleted, not hidden
(CHATHISTORY no longer returns it), through the store thread in its place among the
writes (records.History.delete_message); the REDACT is relayed after it, so nobody
hears of a deletion before it is done. Only clients that negotiated
``draft/message-redaction`` are told; the others get nothing (the spec's fallback
NOTICE would be noise on every deletion).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatroom.protocol import (
    MAX_LINE_BYTES,
    Cap,
    Message,
    casefold,
    is_channel,
    is_valid_nick,
    split_source,
)
from chatroom.server import tags as T
from chatroom.server.commands.history import partner_identity, private_floor
from chatroom.server.records import HistoryReadError, StoredMessage, dm_key
from chatroom.server.registry import Channel, User, sinks_with

if TYPE_CHECKING:
    from chatroom.server.session import Session

# A peer's target or msgid quoted back in a FAIL: longer ones are shown as "*", so the
# reply fits a line (our msgids are 24 characters).
MAX_CONTEXT_BYTES = 100
# What a relayed REDACT adds to its source, target, msgid and reason: ':' and ' '
# around the source, ' ' before target and msgid, ' :' before the reason, the CR-LF.
_RELAY_FRAMING = 8
_NOT_THERE = "You cannot delete messages there"


def redact(s: Session, msg: Message) -> None:
    target, msgid = msg.params[0], msg.params[1]
    user, reg, history = s.user, s.reg, s.history
    chan: Channel | None = None
    partner = ""  # a private conversation's other side (registry.User.identity)
    if is_channel(target):
        chan = reg.visible_channel(target, user)
        if chan is None or not chan.is_member(user):
            return _fail(s, "INVALID_TARGET", _NOT_THERE, target)
        key, floor = chan.folded, chan.history_from
    elif is_valid_nick(target, s.cfg.nicklen):
        partner = partner_identity(s, target)
        key, floor = dm_key(user.identity, partner), private_floor(s)
    else:
        return _fail(s, "INVALID_TARGET", "No such room or nick", target)
    if history is None:
        return _fail(s, "UNKNOWN_MSGID", "This server keeps no messages", target, msgid)
    # the message may have been sent a moment ago: look once it is on disk
    history.wait_committed(reg.last_message_id)
    try:
        found = history.message(key, msgid)
    except HistoryReadError:  # logged by the store
        return _fail(s, "TEMPORARILY_UNAVAILABLE", "History cannot be read just now", target)
    if found is None or found.id <= floor:  # an earlier room of the name keeps its own
        return _fail(s, "UNKNOWN_MSGID", "This message does not exist or is too old", target, msgid)
    own = is_own(user, found)
    with reg.lock:
        if chan is not None:
            if reg.channels.get(chan.folded) is not chan or not chan.is_member(user):
                return _fail(s, "INVALID_TARGET", _NOT_THERE, target)
            if not own and not chan.is_op(user):
                return _forbidden(s, target, msgid)
            shown, told = chan.name, sinks_with(chan.members, Cap.MESSAGE_REDACTION)
        else:
            if not own:
                return _forbidden(s, target, msgid)
            peer = reg.find_user(target)
            sides = {user}
            if peer is not None and peer.identity == partner:  # the conversation's other side
                sides.add(peer)
            shown = peer.nick if peer is not None else target
            told = sinks_with(sides, Cap.MESSAGE_REDACTION)
        history.delete_message(key, found.msgid, reg.next_message_id(T.now_ms()))
        room = MAX_LINE_BYTES - len(user.source) - len("REDACT") - _RELAY_FRAMING
        room -= len(shown.encode()) + len(found.msgid)
        reason = truncate_reason(msg.param(2), room)
        params = (shown, found.msgid, reason) if reason else (shown, found.msgid)
        s.relay_sinks(told, Message("REDACT", params, user.source))


def is_own(user: User, found: StoredMessage) -> bool:
    """Whether ``user`` sent ``found``: the same nick!user@host, or a nick that is the
    name of the account it is logged in to (a registered nick is its owner's)."""
    if casefold(found.sender) == casefold(user.source):
        return True
    nick = split_source(found.sender)[0]
    return user.account is not None and casefold(nick) == casefold(user.account)


def truncate_reason(reason: str, room: int) -> str:
    """The reason cut to what fits the relayed line (``room`` bytes).

    >>> truncate_reason("spam and more", 4), truncate_reason("ok", 0)
    ('spam', '')
    """
    raw = reason.encode()
    return raw[: max(room, 0)].decode("utf-8", "ignore")


def _quoted(param: str) -> str:
    return param if len(param.encode()) <= MAX_CONTEXT_BYTES else "*"


def _fail(s: Session, code: str, text: str, *context: str) -> None:
    s.fail("REDACT", code, text, *map(_quoted, context))


def _forbidden(s: Session, target: str, msgid: str) -> None:
    _fail(s, "REDACT_FORBIDDEN", "You are not authorised to delete this message", target, msgid)
