"""Searching a window: its loaded lines at once, and the server's history (soju.im/search).

Sans-IO like :mod:`chatroom.client.history`. :func:`search_loaded` scans a buffer's
lines (case-insensitive substring, IRC formatting ignored); :func:`search_request`
builds the ``SEARCH in=<target>;text=<words>`` line; :class:`ServerSearch` remembers
the searches in flight and turns their answers (a ``soju.im/search`` batch, or ``FAIL
SEARCH``) into :class:`SearchAnswer` s, oldest request first: the server answers in
order, so no label is needed. :func:`merge` puts both lists together, newest first,
each message once (by msgid).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from chatroom.client.formatting import strip_formatting
from chatroom.client.history import Batch
from chatroom.client.model import CHAT_KINDS, Buffer, EntryKind, message_time
from chatroom.protocol import Cap, Message, casefold, escape_tag_value

__all__ = [
    "SEARCH_BATCH_TYPE",
    "SEARCH_CAP",
    "SEARCH_DEBOUNCE",
    "SEARCH_LIMIT",
    "SEARCH_MAX_PENDING",
    "SearchAnswer",
    "SearchHit",
    "ServerSearch",
    "merge",
    "search_loaded",
    "search_request",
]

SEARCH_CAP = Cap.SEARCH
SEARCH_BATCH_TYPE = "soju.im/search"
# Seconds after the last keystroke before the server is asked (one request per pause,
# not one per letter).
SEARCH_DEBOUNCE = 0.4
# Results asked of the server per search, and shown from the loaded lines at most.
SEARCH_LIMIT = 50
# Searches we wait for at once; older ones are forgotten (their answers still come,
# in order, and are dropped).
SEARCH_MAX_PENDING = 8

ChatParts = Callable[[Message], "tuple[EntryKind, str, str] | None"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One message found: when, who, its plain text, its msgid; ``seq`` when it is a
    loaded line (None: only the server has it)."""

    time: datetime
    nick: str
    text: str
    msgid: str = ""
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class SearchAnswer:
    """The server's answer to the search for ``text`` in ``target``: hits, or an error."""

    target: str
    text: str
    hits: tuple[SearchHit, ...] = ()
    error: str = ""


def search_loaded(buf: Buffer, text: str, limit: int = SEARCH_LIMIT) -> list[SearchHit]:
    """The loaded conversation lines of ``buf`` containing ``text`` (any case), newest
    first.

    >>> from chatroom.client.model import BufferKind, Entry
    >>> from datetime import UTC
    >>> buf = Buffer("#lan", BufferKind.CHANNEL)
    >>> when = datetime(2026, 1, 1, tzinfo=UTC)
    >>> buf.entries = [Entry(when, EntryKind.MESSAGE, "bob", "Deploy \\x02done\\x02", seq=1)]
    >>> [h.text for h in search_loaded(buf, "deploy DONE")]
    ['Deploy done']
    """
    needle = text.strip().casefold()
    if not needle:
        return []
    hits: list[SearchHit] = []
    for entry in reversed(buf.entries):
        if entry.kind not in CHAT_KINDS or entry.deleted:
            continue
        plain = strip_formatting(entry.text)
        if needle in plain.casefold():
            hits.append(SearchHit(entry.time, entry.nick or "", plain, entry.msgid, entry.seq))
            if len(hits) >= limit:
                break
    return hits


def search_request(target: str, text: str, limit: int = SEARCH_LIMIT) -> Message:
    """``SEARCH in=<target>;text=<words>;limit=N``, values escaped as tag values.

    >>> str(search_request("#lan", "two words; more", 5))
    'SEARCH in=#lan;text=two\\\\swords\\\\:\\\\smore;limit=5'
    """
    attrs = f"in={escape_tag_value(target)};text={escape_tag_value(text)};limit={limit}"
    return Message.of("SEARCH", attrs)


def merge(loaded: Iterable[SearchHit], found: Iterable[SearchHit]) -> list[SearchHit]:
    """Both lists as one, newest first; a message in both (same msgid) once, as the
    loaded line (it can be jumped to at once)."""
    hits = list(loaded)
    seen = {h.msgid for h in hits if h.msgid}
    for hit in found:
        if hit.msgid and hit.msgid in seen:
            continue
        if hit.msgid:
            seen.add(hit.msgid)
        hits.append(hit)
    hits.sort(key=lambda h: h.time, reverse=True)
    return hits


class ServerSearch:
    """The searches sent and not yet answered, and their answers."""

    def __init__(self) -> None:
        self.enabled = False
        self._pending: deque[tuple[str, str]] = deque()  # (target, text), oldest first
        self._dropped = 0  # answers still to come for searches we forgot
        self.answers: list[SearchAnswer] = []  # for the UI to take

    def configure(self, caps: frozenset[str]) -> None:
        """A new connection: searching needs the capability and batches."""
        self.enabled = SEARCH_CAP in caps and Cap.BATCH in caps
        self._pending.clear()
        self._dropped = 0

    def request(self, target: str, text: str, limit: int = SEARCH_LIMIT) -> list[Message]:
        """Ask the server (nothing when it cannot search)."""
        if not self.enabled or not text.strip():
            return []
        if len(self._pending) >= SEARCH_MAX_PENDING:
            self._pending.popleft()
            self._dropped += 1
        self._pending.append((target, text))
        return [search_request(target, text.strip(), limit)]

    def _next(self) -> tuple[str, str] | None:
        if self._dropped:
            self._dropped -= 1
            return None
        return self._pending.popleft() if self._pending else None

    def batch(self, batch: Batch, chat_parts: ChatParts) -> None:
        """A ``soju.im/search`` batch: the answer to the oldest search in flight."""
        asked = self._next()
        if asked is None:
            return
        hits = []
        for msg in batch.messages:
            parts = chat_parts(msg)
            if parts is None:
                continue
            _kind, nick, text = parts
            hits.append(
                SearchHit(
                    message_time(msg), nick, strip_formatting(text), msg.tags.get("msgid", "")
                )
            )
        self.answers.append(SearchAnswer(*asked, tuple(hits)))

    def failed(self, msg: Message) -> None:
        """``FAIL SEARCH <code> ... :text``: the oldest search in flight failed."""
        asked = self._next()
        if asked is not None:
            self.answers.append(SearchAnswer(*asked, error=msg.param(-1) or msg.param(1)))

    def take(self, target: str) -> list[SearchAnswer]:
        """The answers so far (all are taken; those for ``target`` are returned)."""
        answers, self.answers = self.answers, []
        return [a for a in answers if casefold(a.target) == casefold(target)]
