"""The client's model types: buffers, their lines and members, and what they say.

Plain dataclasses and enums with no I/O. :class:`~chatroom.client.state.ClientState`
holds them and :mod:`chatroom.client.handlers` changes them from server lines; views
read them. A backlog is a list of :class:`Entry` in display order; views follow it
through ``Buffer.version`` (anything but an append happened) and ``Buffer.touched``
(lines redrawn in place). Every dict of nicks or rooms is keyed by
:func:`~chatroom.protocol.casefold`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from chatroom.client.formatting import strip_formatting
from chatroom.protocol import Message, casefold

__all__ = [
    "BACKLOG_LINES",
    "BACKLOG_TRIM",
    "CHAT_KINDS",
    "CTCP",
    "DEFAULT_PREFIX",
    "DELETED_TEXT",
    "MAX_REACTIONS",
    "MAX_REACTION_CHARS",
    "QUOTE_CHARS",
    "REACT_TAGS",
    "RECENT_SPEAKERS",
    "REPLY_TAGS",
    "SERVER_KEY",
    "SYSTEM_KINDS",
    "TYPING_TAG",
    "Alert",
    "Buffer",
    "BufferKind",
    "Entry",
    "EntryKind",
    "HistoryState",
    "Ident",
    "Inserted",
    "Member",
    "Reaction",
    "message_time",
    "parse_time",
    "quote_of",
    "reaction_of",
    "reply_of",
    "typing_text",
]

# Lines kept per room; older ones scroll away (10,000 is the scrolling benchmark's size).
BACKLOG_LINES = 10_000
# The backlog may overshoot by this many lines before the oldest are dropped in one go,
# so a full room costs one view rebuild per this many messages, not one per message.
BACKLOG_TRIM = 500
# Nicks remembered per room for Tab completion, most recent speaker first.
RECENT_SPEAKERS = 100
# The server buffer's key; no nick or room can be empty, so it never collides.
SERVER_KEY = ""
# Server times (IRCv3 server-time) we believe: none before the Unix epoch (no IRC
# message is older) and none more than a day ahead of our clock (a server's clock
# may be a little off; 9999-12-31 is a bug). Outside that, or unreadable, a line
# gets its arrival time: a wild stamp must neither overflow when converted to local
# time (0001-01-01 does west of UTC, 9999-12-31 east of it) nor become the reference
# a history request is built from.
EARLIEST_SERVER_TIME = datetime(1970, 1, 1, tzinfo=UTC)
SERVER_TIME_AHEAD = timedelta(days=1)
# ISUPPORT PREFIX default (RFC 2812 user modes in channels).
DEFAULT_PREFIX = ("ov", "@+")
CTCP = "\x01"
# IRCv3 client-only tags (https://ircv3.net/specs/client-tags/): typing notifications,
# reactions (the draft name first: it is what servers and clients send today) and
# replies (the ratified name, and the draft's that older clients still send).
TYPING_TAG = "+typing"
REACT_TAGS = ("+draft/react", "+react")
REPLY_TAGS = ("+reply", "+draft/reply")
# A reaction is an emoji or a short word; anything longer is not shown (a server may
# relay a 4 KB tag value), nor is one with spaces or control characters.
MAX_REACTION_CHARS = 16
# Different reactions kept per message (a hostile server cannot grow a line forever).
MAX_REACTIONS = 20
# How much of a parent message its replies quote.
QUOTE_CHARS = 60
# What a deleted message reads, for everyone (its time and sender stay).
DELETED_TEXT = "(message deleted)"
_ZWJ = "\u200d"


class EntryKind(StrEnum):
    """What a log line is; decides how it is drawn."""

    MESSAGE = "message"
    ACTION = "action"  # /me
    NOTICE = "notice"
    JOIN = "join"
    PART = "part"
    QUIT = "quit"
    NICK = "nick"
    KICK = "kick"
    MODE = "mode"
    TOPIC = "topic"
    INFO = "info"  # server replies and client messages
    ERROR = "error"


SYSTEM_KINDS = frozenset(
    {EntryKind.JOIN, EntryKind.PART, EntryKind.QUIT, EntryKind.NICK, EntryKind.KICK, EntryKind.MODE}
)


# Lines that are conversation (stored by the server, served by chathistory, counted).
CHAT_KINDS = frozenset({EntryKind.MESSAGE, EntryKind.ACTION, EntryKind.NOTICE})


class HistoryState(StrEnum):
    """What the top of a buffer says about older history (the log's header row)."""

    NONE = "none"  # no server history for this buffer: no header
    MORE = "more"  # older lines may exist: reaching the top loads them
    LOADING = "loading"  # a request for older lines is out
    COMPLETE = "complete"  # the server has nothing older
    UNAVAILABLE = "unavailable"  # the server refused; we don't ask again this session
    FULL = "full"  # the backlog is at BACKLOG_LINES: older lines would push newer out


class Ident(StrEnum):
    """What we know of who wrote a line: how the nick beside it is marked."""

    NONE = ""  # nothing known: the nick alone
    VERIFIED = "verified"  # logged in to an account (the nick's own, or an unclaimed nick)
    # The nick is an account we saw logged in this session, but whoever has it now is
    # not logged in to it: perhaps someone else (a squatter) using the name.
    UNVERIFIED = "unverified"


class BufferKind(StrEnum):
    """What a buffer shows."""

    SERVER = "server"
    CHANNEL = "channel"
    QUERY = "query"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line in a backlog. ``text`` is raw peer text: render it safely.

    ``seq`` identifies the line for views (unique, but not in display order once
    history is inserted). ``msgid`` is the server's id, for de-duplication and as a
    chathistory reference. ``pending``: our own line, waiting for the server's echo;
    ``failed``: that echo never came. ``history``: fetched, not seen live. ``ident``:
    whether the sender was logged in when the line came (see :class:`Ident`).
    """

    time: datetime
    kind: EntryKind
    nick: str | None
    text: str
    own: bool = False
    mention: bool = False
    seq: int = 0
    msgid: str = ""
    pending: bool = False
    failed: bool = False
    history: bool = False
    ident: Ident = Ident.NONE
    reply_to: str = ""
    quote: str = ""
    reactions: tuple[Reaction, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji under a message: who reacted with it (casefolded nicks, in order) and
    whether one of them was us (drawn highlighted)."""

    emoji: str
    nicks: tuple[str, ...]
    mine: bool = False

    @property
    def count(self) -> int:
        """How many people reacted with it."""
        return len(self.nicks)


@dataclass(slots=True)
class Member:
    """A room member and their channel prefixes (``@`` op, ``+`` voice), highest first."""

    nick: str
    prefixes: str = ""
    away: bool = False


@dataclass(frozen=True, slots=True)
class Inserted:
    """What :meth:`ClientState.insert_history` did."""

    added: int  # lines inserted
    duplicates: int  # lines dropped because their msgid was already in the backlog
    last_seq: int | None  # the last line inserted (where the next page goes after)


@dataclass(frozen=True, slots=True)
class Alert:
    """A mention or private message in a buffer the user is not looking at."""

    key: str
    buffer_name: str
    nick: str
    text: str


@dataclass(eq=False)
class Buffer:
    """A room, a private conversation, or the server's own messages."""

    name: str
    kind: BufferKind
    entries: list[Entry] = field(default_factory=list)
    members: dict[str, Member] = field(default_factory=dict)
    topic: str = ""
    joined: bool = False
    unread: int = 0
    mentions: int = 0
    speakers: OrderedDict[str, str] = field(default_factory=OrderedDict)
    names_pending: bool = False
    # Bumped by /clear so views drop what they cached.
    generation: int = 0
    # Bumped by every change that is not an append at the end (history inserted, lines
    # dropped, the divider or header moved): views rebuild, keeping their place.
    version: int = 0
    # Lines changed in place (an echo confirmed a pending line): views redraw them.
    touched: set[int] = field(default_factory=set)
    msgids: set[str] = field(default_factory=set)
    # The unread divider goes before this line (the first to arrive while away).
    divider_seq: int | None = None
    # Read up to here, by the server's MARKREAD (draft/read-marker): any of our clients.
    read_marker: datetime | None = None
    history: HistoryState = HistoryState.NONE
    # Our own lines waiting for their echo (echo-message), oldest first, by seq.
    pending: list[int] = field(default_factory=list)
    # Who is typing here: casefolded nick -> (nick, when their notice expires, on the
    # state's clock), oldest first.
    typing: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Replies whose parent is not loaded yet: parent msgid -> the replies' seqs.
    awaiting: dict[str, set[int]] = field(default_factory=dict)
    # Reactions to messages not loaded yet (history comes newest first), by msgid:
    # (emoji, nick, ours), applied when the message arrives.
    orphan_reactions: OrderedDict[str, list[tuple[str, str, bool]]] = field(
        default_factory=OrderedDict
    )

    @property
    def key(self) -> str:
        """The casefolded name (the server buffer's is empty)."""
        return SERVER_KEY if self.kind is BufferKind.SERVER else casefold(self.name)

    def sorted_members(self, prefix_order: str) -> list[Member]:
        """Ops first, then voiced, then everyone, each group by nick (case-insensitive)."""

        def rank(m: Member) -> tuple[int, str]:
            top = m.prefixes[:1]
            return (
                prefix_order.index(top) if top and top in prefix_order else len(prefix_order),
                casefold(m.nick),
            )

        return sorted(self.members.values(), key=rank)

    def index_of(self, seq: int) -> int | None:
        """Position of the line ``seq`` (searched from the end, where changes happen)."""
        entries = self.entries
        for i in range(len(entries) - 1, -1, -1):
            if entries[i].seq == seq:
                return i
        return None

    def find(self, msgid: str) -> int | None:
        """Position of the line with this msgid (searched from the end), if loaded."""
        if not msgid or msgid not in self.msgids:
            return None
        entries = self.entries
        for i in range(len(entries) - 1, -1, -1):
            if entries[i].msgid == msgid:
                return i
        return None

    def newest_reference(self, before: int | None = None) -> Entry | None:
        """The newest conversation line with a msgid (before position ``before``)."""
        entries = self.entries
        for i in range(len(entries) if before is None else before, 0, -1):
            entry = entries[i - 1]
            if entry.msgid and entry.kind in CHAT_KINDS:
                return entry
        return None

    def oldest_reference(self) -> Entry | None:
        """The oldest conversation line with a msgid: where scroll-back continues."""
        return next((e for e in self.entries if e.msgid and e.kind in CHAT_KINDS), None)

    def set_history(self, state: HistoryState) -> None:
        """Change what the header row says."""
        if self.history is not state:
            self.history = state
            self.version += 1


def parse_time(tags: Mapping[str, str] | None) -> datetime:
    """The IRCv3 ``time`` tag when present, readable and plausible, else now (local time).

    >>> parse_time({"time": "2024-01-02T03:04:05.678Z"}).astimezone(UTC).isoformat()
    '2024-01-02T03:04:05.678000+00:00'
    >>> now = datetime.now(UTC)
    >>> [abs(parse_time({"time": t}) - now) < timedelta(minutes=1)
    ...  for t in ("9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00.000Z", "soon")]
    [True, True, True]
    """
    now = datetime.now(UTC)
    raw = tags.get("time") if tags else None
    if raw:
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)  # server-time is UTC
            if EARLIEST_SERVER_TIME <= when <= now + SERVER_TIME_AHEAD:
                return when.astimezone()
        except (ValueError, OverflowError):
            pass
    return now.astimezone()


def message_time(msg: Message) -> datetime:
    """When ``msg`` was sent: its server-time tag if believable, else now."""
    return parse_time(msg.tags or None)


def reply_of(tags: Mapping[str, str]) -> str:
    """The msgid a line answers (``+reply``, or the draft's ``+draft/reply``), or "".

    >>> reply_of({"+draft/reply": "abc"}), reply_of({})
    ('abc', '')
    """
    for key in REPLY_TAGS:
        value = tags.get(key)
        if value:
            return value
    return ""


def reaction_of(tags: Mapping[str, str]) -> str | None:
    """The reaction a TAGMSG carries, when it is one we show (short, printable, no
    spaces or formatting); None otherwise.

    >>> reaction_of({"+draft/react": "👍"}), reaction_of({"+react": "x" * 500})
    ('👍', None)
    >>> reaction_of({"+draft/react": "\x1b[2J"}), reaction_of({})
    (None, None)
    """
    for key in REACT_TAGS:
        value = tags.get(key)
        if value is not None:
            return value if valid_reaction(value) else None
    return None


def valid_reaction(text: str) -> bool:
    """Short, printable, one word: an emoji (or ``+1``), never a control sequence."""
    # Emoji sequences join with ZWJ, which is not "printable" (a format character,
    # like the bidi overrides, which stay out).
    return (
        0 < len(text) <= MAX_REACTION_CHARS
        and text.replace(_ZWJ, "").isprintable()
        and not any(c.isspace() for c in text)
    )


def quote_of(parent: Entry) -> str:
    """What a reply shows of its parent: 'alice: the first 60 characters…'."""
    if parent.deleted:
        return f"{parent.nick or ''}: {DELETED_TEXT}"
    text = " ".join(strip_formatting(parent.text).split())
    if len(text) > QUOTE_CHARS:
        text = text[:QUOTE_CHARS].rstrip() + "…"
    return f"{parent.nick or ''}: {text}"


def typing_text(nicks: list[str]) -> str:
    """The line under the log for the people typing (oldest first).

    >>> typing_text(["alice"]), typing_text(["alice", "bob"])
    ('alice is typing...', 'alice and bob are typing...')
    >>> typing_text(["a", "b", "c"]), typing_text([])
    ('several people are typing...', '')
    """
    if not nicks:
        return ""
    if len(nicks) == 1:
        return f"{nicks[0]} is typing..."
    if len(nicks) == 2:
        return f"{nicks[0]} and {nicks[1]} are typing..."
    return "several people are typing..."
