"""What the user does to messages: reply, react, delete, and "typing..." notices.

Sans-IO like the session: each act is the line to send (a ``TAGMSG`` with IRCv3 client
tags, a ``REDACT``) and, before it, the reason in plain words why it cannot be done
here (a server without message-tags or message-redaction, a line without a msgid,
someone else's message). :class:`TypingNotifier` decides when to tell a window that we
are typing (``+typing=active`` at most every :data:`TYPING_INTERVAL`) and when that we
stopped (``done``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chatroom.client.model import (
    CHAT_KINDS,
    REACT_TAGS,
    REPLY_TAGS,
    TYPING_TAG,
    Buffer,
    BufferKind,
    Entry,
)
from chatroom.client.state import ClientState
from chatroom.protocol import Cap, Message, casefold

__all__ = [
    "TYPING_INTERVAL",
    "TypingNotifier",
    "delete_problem",
    "last_message",
    "react_message",
    "react_problem",
    "redact_message",
    "reply_problem",
    "reply_tags",
]

# IRCv3 typing (https://ircv3.net/specs/client-tags/typing): "active" is sent at most
# this often while the user types; receivers forget it after 6 s without news.
TYPING_INTERVAL = 3.0


def last_message(buf: Buffer) -> Entry | None:
    """The newest conversation line of ``buf`` that is still there (not deleted)."""
    for entry in reversed(buf.entries):
        if entry.kind in CHAT_KINDS and not entry.deleted:
            return entry
    return None


def _message_problem(entry: Entry | None, verb: str, done: str) -> str | None:
    """Why ``entry`` cannot be acted on by msgid: none, deleted, or no msgid yet."""
    if entry is None:
        return f"No message to {verb}"
    if entry.deleted:
        return "That message was deleted"
    if not entry.msgid:
        if entry.pending:
            return "That message is not confirmed by the server yet; try again in a moment"
        return f"That message has no id from the server, so it cannot be {done}"
    return None


def react_problem(caps: frozenset[str], entry: Entry | None) -> str | None:
    """Why we cannot react to ``entry`` here (None: we can)."""
    if Cap.MESSAGE_TAGS not in caps:
        return "This server does not support reactions"
    return _message_problem(entry, "react to", "reacted to")


def reply_problem(caps: frozenset[str], entry: Entry | None) -> str | None:
    """Why we cannot reply to ``entry`` here (None: we can)."""
    if Cap.MESSAGE_TAGS not in caps:
        return "This server does not support replies"
    return _message_problem(entry, "reply to", "replied to")


def delete_problem(
    state: ClientState, caps: frozenset[str], buf: Buffer, entry: Entry | None
) -> str | None:
    """Why we cannot delete ``entry`` (None: we can): our own message, or any in a room
    where we are an operator, on a server with message-redaction."""
    if Cap.MESSAGE_REDACTION not in caps:
        return "This server does not support deleting messages"
    if entry is not None and not entry.deleted:
        mine = entry.own or state.is_mine(entry.nick)
        if not mine and not (buf.kind is BufferKind.CHANNEL and state.is_op(buf)):
            return "You can delete only your own messages (or any, as an operator of the room)"
    return _message_problem(entry, "delete", "deleted")


def reply_tags(msgid: str) -> dict[str, str]:
    """The client tags of a reply: the ratified ``+reply`` and the draft's name, which
    clients of the draft still read."""
    return dict.fromkeys(REPLY_TAGS, msgid)


def react_message(buf: Buffer, entry: Entry, emoji: str) -> Message:
    """``TAGMSG`` reacting to ``entry`` with ``emoji`` (IRCv3 react, with the reply
    tags that name the message)."""
    tags = {REACT_TAGS[0]: emoji, **reply_tags(entry.msgid)}
    return Message.of("TAGMSG", buf.name, tags=tags)


def redact_message(buf: Buffer, entry: Entry) -> Message:
    """``REDACT <target> <msgid>``: delete ``entry`` for everyone."""
    return Message.of("REDACT", buf.name, entry.msgid)


def _typing(target: str, status: str) -> Message:
    return Message.of("TAGMSG", target, tags={TYPING_TAG: status})


def _is_command(text: str) -> bool:
    return text.startswith("/") and not text.startswith("//")


class TypingNotifier:
    """Tells a window that we type: ``active`` when typing starts and then at most every
    ``interval`` seconds, ``done`` when the input is cleared, the line sent, or the
    user moved to another window. Commands (``/...``) are not typing."""

    def __init__(
        self, interval: float = TYPING_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._target: str | None = None  # told "active", not yet "done"
        self._last = 0.0

    def update(self, target: str | None, text: str) -> list[Message]:
        """The input now holds ``text`` in the window ``target`` (None: a window where
        typing is not told, or a server without message-tags)."""
        typing = bool(target and text.strip() and not _is_command(text))
        out: list[Message] = []
        told = self._target
        if told is not None and (not typing or casefold(told) != casefold(target or "")):
            out.append(_typing(told, "done"))
            self._target = told = None
        if typing and target is not None:
            now = self.clock()
            if told is None or now - self._last >= self.interval:
                out.append(_typing(target, "active"))
                self._target, self._last = target, now
        return out

    def sent(self) -> list[Message]:
        """The line was sent: ``done``, if we said we were typing."""
        return self.update(None, "")

    def reset(self) -> None:
        """The link dropped: whatever we said is gone with it."""
        self._target = None
