"""SEARCH (soju.im/search): full-text search of the history a user may read.

soju's extension (doc/ext/search.md in soju): ``SEARCH <attributes>``, the attributes
written as message tags (``in=#lan;text=deploy\\sfailed;limit=20``, values escaped as
tag values): ``text`` (every word must be in the message: words match whole, any case,
in any order), ``in`` (a room the user is in, or a nick: the private conversation with
them), ``from`` (the sender's nick), ``after`` and ``before`` (server-time timestamps,
both included) and ``limit`` (at most ``search_max``, its default). Without ``in`` it
searches every room the user is in and their private conversations, which are those of
their account, or of this connection only without one (as CHATHISTORY: private_floor).

The answer is a ``soju.im/search`` batch of PRIVMSG and NOTICE lines, oldest first, with
their time and msgid as CHATHISTORY gives them: the newest that match, or with
``after`` the oldest from then on. Bad attributes get ``FAIL SEARCH INVALID_PARAMS``
naming the attribute; a failed or overlong search ``FAIL SEARCH INTERNAL_ERROR``.
Nothing the user types is read as search syntax (store.py quotes every word).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from chatroom.protocol import (
    Cap,
    Message,
    casefold,
    is_channel,
    is_valid_nick,
    parse_int,
    unescape_tag_value,
)
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.commands import multiline as ML
from chatroom.server.commands.history import (
    MARK_BYTES,
    mark_history,
    partner_identity,
    private_floor,
    row_tags,
)
from chatroom.server.records import (
    MAX_SEARCH_WORDS,
    HistoryReadError,
    SearchTarget,
    SearchTimeout,
    StoredMessage,
    dm_key,
    search_words,
)
from chatroom.server.session import INT64_MAX, IRCError

if TYPE_CHECKING:
    from chatroom.server.session import Session

BATCH_TYPE = "soju.im/search"


class _Invalid(Exception):
    """An attribute the search cannot take: FAIL SEARCH INVALID_PARAMS <name> :<why>."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, why)
        self.name, self.why = name, why


def parse_attributes(raw: str) -> dict[str, str]:
    r"""SEARCH's one parameter: ``key=value`` pairs split by ``;``, values unescaped as
    message-tag values; the last of a repeated key counts.

    >>> parse_attributes(r"in=#lan;text=two\swords;limit=5;bogus")
    {'in': '#lan', 'text': 'two words', 'limit': '5', 'bogus': ''}
    """
    attrs: dict[str, str] = {}
    for item in raw.split(";"):
        if item:
            key, _, value = item.partition("=")
            attrs[key.lower()] = unescape_tag_value(value) if "\\" in value else value
    return attrs


def search(s: Session, msg: Message) -> None:
    history = s.history
    if history is None:
        raise IRCError(N.ERR_UNKNOWNCOMMAND, "SEARCH", "Unknown command")
    if len(msg.params) > 1:  # a value with spaces, sent without tag escaping or ':'
        s.fail("SEARCH", "INVALID_PARAMS", "Attributes are one parameter (escape spaces as \\s)")
        return
    attrs = parse_attributes(msg.params[0])  # unknown attributes are ignored, as in soju
    try:
        limit = _limit(s, attrs.get("limit"))
        before_ms = _time(attrs, "before")
        after_ms = _time(attrs, "after")
        sender = _sender(s, attrs.get("from"))
        text = attrs.get("text")
        if text is not None:
            words = search_words(text)
            if not words:
                raise _Invalid("text", "Nothing to search for: give words of letters or digits")
            if len(words) > MAX_SEARCH_WORDS:
                raise _Invalid("text", f"Too many words: at most {MAX_SEARCH_WORDS}")
        targets = _targets(s, attrs.get("in"))
    except _Invalid as e:
        s.fail("SEARCH", "INVALID_PARAMS", e.why, e.name)
        return
    # what this client has sent may still be on its way to the disk; look after it
    history.wait_committed(s.reg.last_message_id)
    try:
        # the spec: from `after` on when it is given, else back from `before` (or now)
        rows = history.search(
            targets, text, before_ms, after_ms, sender, limit, newest=after_ms is None
        )
    except SearchTimeout:
        s.fail("SEARCH", "INTERNAL_ERROR", "The search took too long: narrow it with in= or from=")
        return
    except HistoryReadError:  # logged by the store; the client gets an answer
        s.fail("SEARCH", "INTERNAL_ERROR", "The search could not be run")
        return
    send_results(s, reversed(rows))


def _limit(s: Session, raw: str | None) -> int:
    if raw is None:
        return s.cfg.search_max
    limit = parse_int(raw, 1, INT64_MAX)
    if limit is None:
        raise _Invalid("limit", "Invalid limit: a number from 1")
    return min(limit, s.cfg.search_max)


def _time(attrs: dict[str, str], name: str) -> int | None:
    raw = attrs.get(name)
    if raw is None:
        return None
    ms = T.parse_server_time(raw)
    if ms is None:
        raise _Invalid(name, "Invalid time: YYYY-MM-DDThh:mm:ss.sssZ")
    return ms


def _sender(s: Session, nick: str | None) -> str | None:
    if nick is None:
        return None
    if not is_valid_nick(nick, s.cfg.nicklen):
        raise _Invalid("from", "Invalid nick")
    return casefold(nick)


def _targets(s: Session, target: str | None) -> list[SearchTarget]:
    """Where this user may search: one room they are in, their private conversation
    with one nick, or (no ``in``) all their rooms and private conversations."""
    if target is not None and not is_channel(target):
        if not is_valid_nick(target, s.cfg.nicklen):
            raise _Invalid("in", "Not a room or a nick")
        key = dm_key(s.user.identity, partner_identity(s, target))
        return [SearchTarget(key, private_floor(s))]
    with s.reg.lock:  # the user's rooms change under other threads (KICK)
        if target is not None:
            chan = s.reg.find_channel(target)
            if chan is None or not chan.is_member(s.user):
                raise _Invalid("in", "You are not in that room")
            rooms = [chan]
        else:
            rooms = list(s.user.channels.values())
        # an earlier room of the same name (one that emptied) keeps its history
        targets = [SearchTarget(c.folded, c.history_from) for c in rooms]
    if target is None:
        targets.append(SearchTarget(s.user.identity, private_floor(s), every_private=True))
    return targets


def send_results(s: Session, rows: Iterable[StoredMessage]) -> None:
    """The found lines in a ``soju.im/search`` batch (plain lines without batch), with
    time and msgid as this client takes them (CHATHISTORY's way: the time written into
    the text without server-time). A multiline message comes as its lines, the msgid
    on the first: the spec's results are PRIVMSG and NOTICE lines."""
    batch = Cap.BATCH in s.user.caps
    timed, all_tags = T.has_time(s.variant), T.has_all_tags(s.variant)
    ref = T.new_batch_id()
    if batch:
        s.send(Message("BATCH", ("+" + ref, BATCH_TYPE), s.server))
    for m in rows:
        tags = row_tags(m, timed, all_tags, ref if batch else None)
        pieces = ML.replay_pieces(
            m.sender, m.command, m.display, m.text, 0 if timed else MARK_BYTES
        )
        for text in [m.text] if pieces is None else [p for p, _ in pieces if p]:
            text = text if timed else mark_history(text, m.time_ms)
            s.send(Message(m.command, (m.display, text), m.sender, tags))
            tags = {k: v for k, v in tags.items() if k != "msgid"}  # the first only
    if batch:
        s.send(Message("BATCH", ("-" + ref,), s.server))
