"""What crosses threads and the history interface sessions read through; no sqlite3 here.

The history rows and room states that the store thread writes, the inbox entry that
carries a line (and its row) from a connection's thread through the store thread to
the writer, and :class:`History`, the small interface a Session uses to read history.
They live apart from store.py so that session.py and the command modules import no
sqlite3 (and no socket or selectors): the server injects a :class:`History` (the
store thread's pipeline), and the socketless tests inject their own.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from chatroom.sasl import Credentials

# Message ids carry their time: id = time_ms << ID_TIME_SHIFT (+1 per message in the same
# millisecond). A timestamp selector becomes an id bound, so no index on time is
# needed: each index costs every insert a B-tree update (measured: 3 indexes 16-19 us
# a row, 1 index 8-13 us, in batches of 50).
ID_TIME_SHIFT = 10
NO_TAGS: Mapping[str, str] = MappingProxyType({})


def first_id_at(time_ms: int) -> int:
    """The smallest id a message stamped at or after ``time_ms`` can have.

    >>> first_id_at(1) == 1 << ID_TIME_SHIFT
    True
    """
    return time_ms << ID_TIME_SHIFT


class StoredMessage(NamedTuple):
    """One history line, as stored and as served back by CHATHISTORY. (A NamedTuple:
    one is made for every chat line, under the registry lock.)"""

    id: int
    msgid: str
    time_ms: int
    target: str
    display: str
    sender: str
    command: str
    text: str
    tags: Mapping[str, str] = NO_TAGS


@dataclass(frozen=True, slots=True)
class RoomState:
    """What persists of a room across restarts: topic, modes, key, limit, and from which
    message id on its history belongs to it (``history_from``). ``created == 0``: the
    room emptied and is gone; only its history cutoff is kept."""

    key: str
    name: str
    topic: str
    topic_by: str
    topic_at: float
    modes: str
    room_key: str | None
    limit: int | None
    created: float
    history_from: int = 0


class Multicast(NamedTuple):
    """The inbox entry of one line for many clients (store thread, then writer thread).

    Each recipient gets ``variants[its variant]``; ``exclude`` is skipped; ``record``
    is the line's history row, which the store thread commits before it passes the
    entry on. ``sinks`` must not change afterwards (a room's cached tuple).
    A NamedTuple, so the writer tells it from the other entries with one ``type()``
    test and unpacks it like the plain tuple it is.
    """

    sinks: Sequence
    variants: Sequence[bytes]
    exclude: object = None
    record: StoredMessage | None = None


class HistoryReadError(Exception):
    """Reading history failed (a damaged page, an I/O error). Raised by every read of
    the history in place of any database error; the store logs the cause once."""


class SearchTimeout(HistoryReadError):
    """A search ran past the store's time limit and was stopped (store.SEARCH_TIMEOUT)."""


# SEARCH: words one query may have (more: FAIL SEARCH INVALID_PARAMS). Each word is one
# more posting list for FTS5 to intersect: the 8 commonest words of a million messages
# take about 60 ms together (benchmarks/search_bench.py); real searches have 1 to 3.
MAX_SEARCH_WORDS = 8


def search_words(text: str) -> list[str]:
    """The words of a search text: split at white space, each to be matched as written
    (a phrase), never read as query syntax; those without a letter or digit (``*``,
    ``"``, ``-``) match nothing and are dropped, and so are repeats.

    >>> search_words('say "hi" OR * NEAR(a b) text:x say')
    ['say', '"hi"', 'OR', 'NEAR(a', 'b)', 'text:x']
    """
    words = (w for w in text.split() if any(c.isalnum() for c in w))
    return list(dict.fromkeys(words))


class SearchTarget(NamedTuple):
    """Where a search may look (History.search): the conversation ``key`` (a casefolded
    room or a dm_key), or with ``every_private`` every private conversation that the
    identity ``key`` (User.identity) is a side of; only messages with ids above
    ``floor`` (a room's history_from, a connection's private floor)."""

    key: str
    floor: int = 0
    every_private: bool = False


class History(Protocol):
    """What sessions need of the history: the reads CHATHISTORY and JOIN make, and the
    few writes that are not chat lines (those travel in :class:`Multicast` entries).

    The server injects its store thread's pipeline (store.HistoryPipeline); reads
    raise :class:`HistoryReadError`, never a database error.
    """

    # Why messages are not being saved, as users are told it; None while they are.
    problem: str | None

    def wait_committed(self, id_: int, timeout: float = 5.0) -> bool:
        """Block until message ``id_`` (and all before it) is on disk."""
        ...

    def save_room(self, state: RoomState) -> None:
        """Persist a room's topic, modes and key (queued in posting order)."""
        ...

    def forget_room(self, key: str, name: str, history_from: int) -> None:
        """A room emptied: gone with its modes and topic; its history up to
        ``history_from`` is served to no later room of that name."""
        ...

    def room_state(self, key: str) -> RoomState | None:
        """What is kept of the room ``key`` (casefolded), if anything."""
        ...

    def window(
        self, target: str, lo: int, hi: int, limit: int, newest: bool, events: bool = False
    ) -> list[StoredMessage]:
        """Up to ``limit`` messages with ``lo < id < hi`` (the newest of them when
        ``newest``), oldest first; PRIVMSG and NOTICE only, unless ``events`` (TAGMSG
        and TOPIC rows too, for draft/event-playback)."""
        ...

    def locate(self, target: str, msgid: str) -> int | None:
        """The id of ``msgid`` within conversation ``target``."""
        ...

    def targets(
        self, keys: Sequence[str], start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, str, int]]:
        """(key, display, latest time) of conversations among ``keys`` active between
        two times (CHATHISTORY TARGETS)."""
        ...

    def dm_keys(self, nick_key: str) -> list[str]:
        """Every direct-message conversation key of casefolded nick ``nick_key``."""
        ...

    def message(self, target: str, msgid: str) -> StoredMessage | None:
        """The stored message ``msgid`` of conversation ``target``, if it is kept."""
        ...

    def delete_message(self, target: str, msgid: str, id_: int) -> None:
        """Delete message ``msgid`` of ``target`` (REDACT) in its place among the writes:
        ``id_`` (Registry.next_message_id, taken with the lock held, like a message's)
        is that place, so ``wait_committed(id_)`` returns once it is gone."""
        ...

    def search(
        self,
        targets: Sequence[SearchTarget],
        text: str | None,
        before_ms: int | None,
        after_ms: int | None,
        sender: str | None,
        limit: int,
        newest: bool = True,
    ) -> list[StoredMessage]:
        """Up to ``limit`` PRIVMSG and NOTICE lines of ``targets`` that have every word
        of ``text`` (search_words; None: any text), sent by the casefolded nick
        ``sender`` (None: anyone), stamped from ``after_ms`` to ``before_ms`` (both
        included; None: no bound); the newest that match (``newest``) or the oldest,
        newest first. Raises ValueError for more than MAX_SEARCH_WORDS words, and
        :class:`SearchTimeout` for a search that takes too long."""
        ...


class AccountStoreError(RuntimeError):
    """The database could not answer or refused an account change (logged where it
    happened); the client is told to try again later."""


class AccountInfo(NamedTuple):
    """An account as stored: its name as registered and its SCRAM credentials."""

    name: str
    credentials: Credentials
    created: float


class RoomRegistration(NamedTuple):
    """A registered room: founder and access list by account key (casefolded), its
    mask lists as (mode, mask, set_by, set_at)."""

    name: str
    founder: str
    registered: float
    access: dict[str, str]  # account key -> 'o' or 'v'
    lists: list[tuple[str, str, str, int]]


class Accounts(Protocol):
    """What sessions need of the accounts (accounts.AccountStore). Calls block on the
    database briefly; each raises :class:`AccountStoreError` when it cannot answer."""

    def exists(self, name: str) -> bool: ...

    def get(self, name: str) -> AccountInfo | None: ...

    def create(self, name: str, creds: Credentials) -> bool: ...

    def set_credentials(self, name: str, creds: Credentials) -> bool: ...

    def drop(self, name: str) -> bool: ...

    def room(self, name: str) -> RoomRegistration | None: ...

    def register_room(
        self, name: str, founder: str, lists: list[tuple[str, str, str, int]]
    ) -> bool: ...

    def unregister_room(self, name: str) -> bool: ...

    def set_access(self, room: str, account: str, status: str | None) -> None: ...

    def set_list_entry(
        self, room: str, mode: str, mask: str, set_by: str, set_at: int, present: bool
    ) -> None: ...

    def read_marker(self, account: str, target: str) -> int | None: ...

    def set_read_marker(
        self, account: str, target: str, time_ms: int, keep: int
    ) -> tuple[int | None, int]: ...


def dm_key(a: str, b: str) -> str:
    """Conversation key of the direct messages between two casefolded nicks.

    >>> dm_key("bob", "alice")
    'alice bob'
    """
    return " ".join(sorted((a, b)))


# msgids: a random prefix per server run, then a counter. Unique across restarts
# (the prefix), cheap (no randomness per message), and tag-safe (no escaping needed).
_MSGID_PREFIX = secrets.token_urlsafe(9).replace("-", "A").replace("_", "B")
_msgid_counter = itertools.count(1)


def new_msgid() -> str:
    """A unique message id (IRCv3 message-ids), made of tag-safe characters."""
    # zero-padded, so that msgids sort in the order they are made: the msgid index
    # then grows at its end instead of touching random pages (about 1.5x cheaper)
    return f"{_MSGID_PREFIX}{next(_msgid_counter):012x}"
