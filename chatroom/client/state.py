"""What the client knows: rooms, queries, members, topics, backlogs and unread counts.

Sans-IO like the protocol module: :meth:`ClientState.handle` takes a parsed
:class:`~chatroom.protocol.Message` and updates the model; the UI reads the model and
the ``dirty`` sets to repaint only what changed. No sockets, no widgets, no Textual.
Every dict of nicks or rooms is keyed by :func:`~chatroom.protocol.casefold`.

History (IRCv3 chathistory) lands here too: :meth:`ClientState.insert_history` puts
old lines into a backlog at a given place, dropping any whose msgid is already there.
A backlog is a list in display order; views follow it through ``Buffer.version``
(anything but an append happened) and ``Buffer.touched`` (lines redrawn in place).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from chatroom.client.formatting import contains_mention, strip_formatting
from chatroom.protocol import Message, Numeric, casefold, split_source
from chatroom.protocol import is_channel as protocol_is_channel

__all__ = [
    "BACKLOG_LINES",
    "SERVER_KEY",
    "Alert",
    "Buffer",
    "BufferKind",
    "ClientState",
    "Entry",
    "EntryKind",
    "HistoryState",
    "Member",
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
    ``failed``: that echo never came. ``history``: fetched, not seen live.
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
    history: HistoryState = HistoryState.NONE
    # Our own lines waiting for their echo (echo-message), oldest first, by seq.
    pending: list[int] = field(default_factory=list)

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


def _parse_time(tags: Mapping[str, str] | None) -> datetime:
    """The IRCv3 ``time`` tag when present, readable and plausible, else now (local time).

    >>> _parse_time({"time": "2024-01-02T03:04:05.678Z"}).astimezone(UTC).isoformat()
    '2024-01-02T03:04:05.678000+00:00'
    >>> now = datetime.now(UTC)
    >>> [abs(_parse_time({"time": t}) - now) < timedelta(minutes=1)
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


class ClientState:
    """The client's model of the IRC world, fed with Messages from the server.

    ``dirty_entries`` holds keys of buffers with new lines, ``dirty_members`` those
    whose member lists or topics changed, ``dirty_list`` says the room list (names,
    counts) changed, and ``alerts`` collects mentions/private messages for the UI to
    announce. The UI clears them after painting. ``opened`` lists buffers created since
    the app last looked (a new private conversation wants its history fetched).

    With ``echo_message`` (the IRCv3 capability) our own lines are shown as pending
    until the server's copy comes back and confirms them (with its time and msgid).
    """

    def __init__(self, nick: str, server_name: str = "server") -> None:
        self.nick = nick
        self.server_name = server_name
        self.buffers: dict[str, Buffer] = {
            SERVER_KEY: Buffer(server_name, BufferKind.SERVER, joined=True)
        }
        self.active = SERVER_KEY
        self.prefix_modes, self.prefix_chars = DEFAULT_PREFIX
        self.chantypes = "#&"
        self.away = False
        self.echo_message = False
        # ISUPPORT CHATHISTORY (most lines per request; 0: no limit) and MSGREFTYPES.
        self.chathistory_limit: int | None = None
        self.msgreftypes: frozenset[str] = frozenset()
        self.opened: list[Buffer] = []
        self.dirty_entries: set[str] = set()
        self.dirty_members: set[str] = set()
        self.dirty_list = True
        self.alerts: list[Alert] = []
        self._seq = 0
        self._handlers: dict[str, Callable[[Message], None]] = {
            "PRIVMSG": self._on_privmsg,
            "NOTICE": self._on_notice,
            "JOIN": self._on_join,
            "PART": self._on_part,
            "QUIT": self._on_quit,
            "NICK": self._on_nick,
            "KICK": self._on_kick,
            "TOPIC": self._on_topic,
            "MODE": self._on_mode,
            "ERROR": self._on_error,
            "INVITE": self._on_invite,
            "CAP": lambda m: None,
            "PING": lambda m: None,
            "PONG": lambda m: None,
            "TAGMSG": lambda m: None,  # typing notifications and reactions: not shown
            "BATCH": lambda m: None,  # framing; the app groups the lines
            "ACK": lambda m: None,  # labeled-response: a request with no reply
            "AWAY": self._on_away,
            "FAIL": self._on_standard_reply,
            "WARN": self._on_standard_reply,
            "NOTE": self._on_standard_reply,
            Numeric.RPL_WELCOME: self._on_welcome,
            Numeric.RPL_ISUPPORT: self._on_isupport,
            Numeric.RPL_TOPIC: self._on_rpl_topic,
            Numeric.RPL_NOTOPIC: self._on_rpl_notopic,
            Numeric.RPL_TOPICWHOTIME: lambda m: None,
            Numeric.RPL_NAMREPLY: self._on_namreply,
            Numeric.RPL_ENDOFNAMES: self._on_endofnames,
            Numeric.RPL_UNAWAY: self._on_unaway,
            Numeric.RPL_NOWAWAY: self._on_nowaway,
            Numeric.RPL_AWAY: self._on_rpl_away,
            Numeric.RPL_CHANNELMODEIS: self._on_channelmodeis,
            Numeric.RPL_CREATIONTIME: lambda m: None,
            Numeric.RPL_LIST: self._on_rpl_list,
            Numeric.RPL_LISTSTART: lambda m: None,
            Numeric.RPL_ENDOFWHO: lambda m: None,
        }

    # --- queries -------------------------------------------------------------------------

    def is_channel(self, name: str) -> bool:
        """A room name by the server's CHANTYPES (``#`` per our protocol module)."""
        return bool(name) and (protocol_is_channel(name) or name[0] in self.chantypes)

    def buffer(self, name_or_key: str) -> Buffer | None:
        """The buffer called ``name`` (any case), if open."""
        return self.buffers.get(casefold(name_or_key))

    @property
    def active_buffer(self) -> Buffer:
        """The buffer the user is looking at."""
        return self.buffers.get(self.active) or self.buffers[SERVER_KEY]

    def ordered(self) -> list[Buffer]:
        """Buffers in room-list order: server, rooms, then private conversations."""
        rest = sorted(
            (b for k, b in self.buffers.items() if k != SERVER_KEY),
            key=lambda b: (b.kind is not BufferKind.CHANNEL, b.key),
        )
        return [self.buffers[SERVER_KEY], *rest]

    def joined_rooms(self) -> list[str]:
        """Rooms we are in (to rejoin after a reconnect)."""
        return [b.name for b in self.buffers.values() if b.kind is BufferKind.CHANNEL and b.joined]

    def completion_candidates(self, key: str) -> list[str]:
        """Nicks for Tab in buffer ``key``: recent speakers first, then members A-Z."""
        buf = self.buffers.get(key)
        if buf is None:
            return []
        seen: dict[str, str] = {}
        for folded, nick in reversed(buf.speakers.items()):
            if folded in buf.members or buf.kind is not BufferKind.CHANNEL:
                seen[folded] = nick
        for folded, member in sorted(buf.members.items()):
            seen.setdefault(folded, member.nick)
        if buf.kind is BufferKind.QUERY:
            seen.setdefault(buf.key, buf.name)
        seen.pop(casefold(self.nick), None)
        return list(seen.values())

    def is_mine(self, source_nick: str | None) -> bool:
        """True when ``source_nick`` is us."""
        return source_nick is not None and casefold(source_nick) == casefold(self.nick)

    # --- buffers ----------------------------------------------------------------------------

    def open(self, name: str, kind: BufferKind | None = None) -> Buffer:
        """The buffer for ``name``, created if needed (room or query by its name)."""
        key = casefold(name)
        buf = self.buffers.get(key)
        if buf is None:
            if kind is None:
                kind = BufferKind.CHANNEL if self.is_channel(name) else BufferKind.QUERY
            buf = Buffer(name, kind)
            self.buffers[key] = buf
            self.opened.append(buf)
            self.dirty_list = True
        return buf

    def close(self, key: str) -> Buffer | None:
        """Forget a buffer (not the server's); moves the view if it was active."""
        if key == SERVER_KEY or key not in self.buffers:
            return None
        order = [b.key for b in self.ordered()]
        buf = self.buffers.pop(key)
        if self.active == key:
            index = order.index(key)
            self.active = order[index - 1] if index > 0 else SERVER_KEY
            self.dirty_entries.add(self.active)
            self.dirty_members.add(self.active)
        self.dirty_list = True
        return buf

    def set_active(self, key: str) -> None:
        """Look at buffer ``key``: its counts are read.

        Leaving a buffer takes its unread divider away; the next line that arrives
        while the user is elsewhere puts it back, before that line.
        """
        if key not in self.buffers:
            return
        left = self.buffers.get(self.active)
        if left is not None and key != self.active and left.divider_seq is not None:
            left.divider_seq = None
            left.version += 1
        self.active = key
        buf = self.buffers[key]
        buf.unread = buf.mentions = 0
        self.dirty_list = True
        self.dirty_entries.add(key)
        self.dirty_members.add(key)

    def clear(self, key: str) -> None:
        """Empty a buffer's backlog (the user's /clear)."""
        buf = self.buffers.get(key)
        if buf is not None:
            buf.entries.clear()
            buf.msgids.clear()
            buf.pending.clear()
            buf.touched.clear()
            buf.divider_seq = None
            buf.generation += 1
            self.dirty_entries.add(key)

    def _is_mention(
        self, buf: Buffer, kind: EntryKind, nick: str | None, text: str, own: bool
    ) -> bool:
        return (
            not own
            and kind in CHAT_KINDS
            and nick is not None
            and (buf.kind is BufferKind.QUERY or contains_mention(text, self.nick))
        )

    def _append(self, buf: Buffer, entry: Entry) -> None:
        buf.entries.append(entry)
        if entry.msgid:
            buf.msgids.add(entry.msgid)
        self.dirty_entries.add(buf.key)
        if len(buf.entries) > BACKLOG_LINES + BACKLOG_TRIM:
            self._trim(buf)

    def _trim(self, buf: Buffer) -> None:
        """Drop the oldest lines beyond BACKLOG_LINES (in one go: views rebuild once)."""
        drop = len(buf.entries) - BACKLOG_LINES
        if drop <= 0:
            return
        gone = buf.entries[:drop]
        buf.msgids.difference_update(e.msgid for e in gone if e.msgid)
        seqs = {e.seq for e in gone}
        buf.pending = [seq for seq in buf.pending if seq not in seqs]
        del buf.entries[:drop]
        buf.version += 1

    def add(
        self,
        buf: Buffer,
        kind: EntryKind,
        nick: str | None,
        text: str,
        *,
        own: bool = False,
        when: datetime | None = None,
        count: bool = True,
        msgid: str = "",
        pending: bool = False,
    ) -> Entry:
        """Append a line to ``buf``; counts it as unread (and alerts) if not in view."""
        self._seq += 1
        mention = self._is_mention(buf, kind, nick, text, own)
        entry = Entry(
            when or _parse_time(None),
            kind,
            nick,
            text,
            own,
            mention,
            self._seq,
            msgid,
            pending,
        )
        self._append(buf, entry)
        if kind in (EntryKind.MESSAGE, EntryKind.ACTION) and nick and not own:
            folded = casefold(nick)
            buf.speakers[folded] = nick
            buf.speakers.move_to_end(folded)
            if len(buf.speakers) > RECENT_SPEAKERS:
                buf.speakers.popitem(last=False)
        if buf.key != self.active and count and kind not in SYSTEM_KINDS and not own:
            if kind in CHAT_KINDS:
                buf.unread += 1
                if buf.divider_seq is None:
                    buf.divider_seq = entry.seq
                    buf.version += 1
            if mention:
                buf.mentions += 1
                self.alerts.append(Alert(buf.key, buf.name, nick or "", strip_formatting(text)))
            self.dirty_list = True
        return entry

    def info(self, text: str, key: str | None = None, *, error: bool = False) -> Entry:
        """A client-side line (help, command errors) in ``key`` or the active buffer."""
        buf = self.buffers.get(self.active if key is None else key) or self.buffers[SERVER_KEY]
        kind = EntryKind.ERROR if error else EntryKind.INFO
        return self.add(buf, kind, None, text, count=False)

    def own_message(self, target: str, text: str, *, action: bool = False) -> Entry:
        """Show a line we sent at once; pending until its echo when the server echoes.

        Without echo-message this is the only copy we will ever see. With it the
        server's echo replaces the pending line in place (see :meth:`_confirm`), so
        the input still feels instant while the log shows what the server accepted.
        """
        buf = self.open(target)
        kind = EntryKind.ACTION if action else EntryKind.MESSAGE
        entry = self.add(buf, kind, self.nick, text, own=True, pending=self.echo_message)
        if self.echo_message:
            buf.pending.append(entry.seq)
        return entry

    def _confirm(self, buf: Buffer, kind: EntryKind, text: str, msg: Message) -> bool:
        """Our line came back (echo-message): confirm the pending copy in place.

        The server echoes in order, so the oldest pending line with the same text is
        the one; if none matches (the server changed the text), the oldest pending.
        """
        if not buf.pending:
            return False
        candidates = [(seq, buf.index_of(seq)) for seq in buf.pending]
        found = [
            (seq, i)
            for seq, i in candidates
            if i is not None and buf.entries[i].kind is kind and buf.entries[i].text == text
        ]
        if not found:
            found = [(seq, i) for seq, i in candidates if i is not None]
        if not found:
            buf.pending.clear()
            return False
        seq, index = found[0]
        assert index is not None
        buf.pending.remove(seq)
        msgid = msg.tags.get("msgid", "")
        old = buf.entries[index]
        buf.entries[index] = replace(
            old, kind=kind, text=text, time=self._time(msg), msgid=msgid, pending=False
        )
        if msgid:
            buf.msgids.add(msgid)
        buf.touched.add(seq)
        self.dirty_entries.add(buf.key)
        return True

    def _fail_pending(self, buf: Buffer, count: int | None = None) -> None:
        """The oldest ``count`` (all: None) pending lines will get no echo: mark them."""
        chosen = buf.pending if count is None else buf.pending[:count]
        for seq in chosen:
            index = buf.index_of(seq)
            if index is not None:
                buf.entries[index] = replace(buf.entries[index], pending=False, failed=True)
                buf.touched.add(seq)
                self.dirty_entries.add(buf.key)
        buf.pending = [] if count is None else buf.pending[count:]

    def disconnected(self, reason: str) -> None:
        """The link dropped: members are unknown until we rejoin; unechoed lines failed."""
        for buf in self.buffers.values():
            if buf.pending:
                self._fail_pending(buf)
            if buf.kind is BufferKind.CHANNEL and buf.members:
                buf.members.clear()
                self.dirty_members.add(buf.key)
        self.info(f"Disconnected: {reason}", SERVER_KEY, error=True)
        for buf in self.buffers.values():
            if buf.kind is BufferKind.CHANNEL and buf.joined:
                self.info(f"Disconnected: {reason}", buf.key, error=True)

    # --- history ------------------------------------------------------------------------

    def history_entry(self, buf: Buffer, msg: Message) -> Entry | None:
        """A fetched PRIVMSG/NOTICE as a line for ``buf`` (None: nothing to show)."""
        parts = self._chat_parts(msg)
        if parts is None:
            return None
        kind, nick, text = parts
        own = self.is_mine(nick)
        self._seq += 1
        return Entry(
            self._time(msg),
            kind,
            nick,
            text,
            own,
            self._is_mention(buf, kind, nick, text, own),
            self._seq,
            msg.tags.get("msgid", ""),
            history=True,
        )

    def insert_history(
        self, buf: Buffer, entries: Iterable[Entry], after_seq: int | None
    ) -> Inserted:
        """Put fetched lines (oldest first) after line ``after_seq``, or at the top.

        Lines whose msgid is already in the backlog are dropped, so a message that
        arrived live while its history was on the way shows once. Our own line found
        in history replaces a pending or failed copy of it. Fetched lines are old:
        they never count as unread, alert, or move the divider.
        """
        fresh: list[Entry] = []
        duplicates = 0
        seen = buf.msgids
        for entry in entries:
            if entry.msgid and entry.msgid in seen:
                duplicates += 1
                continue
            if entry.msgid:
                seen.add(entry.msgid)
            fresh.append(entry)
        position = 0
        if after_seq is not None:
            index = buf.index_of(after_seq)
            position = 0 if index is None else index + 1
        if any(e.own for e in fresh):
            position = self._drop_unconfirmed(buf, fresh, position)
        buf.entries[position:position] = fresh
        if fresh:
            buf.version += 1
            self.dirty_entries.add(buf.key)
        if len(buf.entries) > BACKLOG_LINES + BACKLOG_TRIM:
            self._trim(buf)
        return Inserted(len(fresh), duplicates, fresh[-1].seq if fresh else None)

    def note(self, buf: Buffer, text: str, after_seq: int | None) -> None:
        """A client info line placed after line ``after_seq`` (where a gap is)."""
        self._seq += 1
        entry = Entry(_parse_time(None), EntryKind.INFO, None, text, seq=self._seq)
        self.insert_history(buf, [entry], after_seq)

    def _drop_unconfirmed(self, buf: Buffer, found: list[Entry], position: int) -> int:
        """Remove pending/failed copies of our lines in ``found`` (history has the real
        ones); returns ``position`` shifted for the lines removed before it."""
        unconfirmed = [e for e in buf.entries if e.own and (e.pending or e.failed)]
        if not unconfirmed:
            return position
        drop: set[int] = set()
        for entry in found:
            if not entry.own:
                continue
            match = next(
                (
                    u
                    for u in unconfirmed
                    if u.seq not in drop and u.kind is entry.kind and u.text == entry.text
                ),
                None,
            )
            if match is not None:
                drop.add(match.seq)
        if not drop:
            return position
        before = sum(1 for e in buf.entries[:position] if e.seq in drop)
        buf.entries[:] = [e for e in buf.entries if e.seq not in drop]
        buf.pending = [seq for seq in buf.pending if seq not in drop]
        return position - before

    # --- server messages -----------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Apply one server message to the model."""
        handler = self._handlers.get(msg.command)
        if handler is not None:
            handler(msg)
        elif msg.command.isdigit():
            self._on_numeric(msg)
        else:
            self._server_line(msg, " ".join((msg.command, *msg.params)))

    def _time(self, msg: Message) -> datetime:
        return _parse_time(dict(msg.tags) if msg.tags else None)

    def _server_line(self, msg: Message, text: str, *, error: bool = False) -> None:
        kind = EntryKind.ERROR if error else EntryKind.INFO
        self.add(self.buffers[SERVER_KEY], kind, None, text, when=self._time(msg), count=False)

    def _target_buffer(self, msg: Message, target: str) -> Buffer:
        """Where a message to ``target`` goes: the room, or a query with the sender."""
        if self.is_channel(target):
            return self.open(target, BufferKind.CHANNEL)
        nick = msg.nick or target
        if self.is_mine(nick):
            nick = target  # our own message echoed back (echo-message)
        return self.open(nick, BufferKind.QUERY)

    def _chat_parts(self, msg: Message) -> tuple[EntryKind, str, str] | None:
        """(kind, nick, text) of a user's PRIVMSG, /me or NOTICE; None for anything else."""
        text, nick, source = msg.param(1), msg.nick or "", msg.source or ""
        if msg.command == "NOTICE":
            if "!" not in source or msg.param(0) == "*" or text.startswith(CTCP):
                return None
            return EntryKind.NOTICE, nick, text
        if msg.command != "PRIVMSG":
            return None
        if "!" not in (source or "!") and not self.is_channel(msg.param(0)) and "." in nick:
            return None  # a server's PRIVMSG
        if text.startswith(CTCP):
            command, _, rest = text.strip(CTCP).partition(" ")
            return (EntryKind.ACTION, nick, rest) if command.upper() == "ACTION" else None
        return EntryKind.MESSAGE, nick, text

    def _live(self, buf: Buffer, kind: EntryKind, nick: str, text: str, msg: Message) -> None:
        """A conversation line as it happens: shown once (by msgid), echoes confirmed."""
        msgid = msg.tags.get("msgid", "")
        if msgid and msgid in buf.msgids:
            return  # already here, from a history batch
        own = self.is_mine(nick)
        if own and self.echo_message and self._confirm(buf, kind, text, msg):
            return
        self.add(buf, kind, nick, text, own=own, when=self._time(msg), msgid=msgid)

    def _on_privmsg(self, msg: Message) -> None:
        target, text = msg.param(0), msg.param(1)
        parts = self._chat_parts(msg)
        if parts is None:
            if text.startswith(CTCP) and "!" in (msg.source or "!"):
                command, _, rest = text.strip(CTCP).partition(" ")
                self._ctcp(msg, command.upper(), rest)
            else:
                self._server_line(msg, text)  # a server's PRIVMSG to us
            return
        kind, nick, text = parts
        self._live(self._target_buffer(msg, target), kind, nick, text, msg)

    def _ctcp(self, msg: Message, command: str, rest: str) -> None:
        self._server_line(msg, f"CTCP {command} from {msg.nick}" + (f": {rest}" if rest else ""))

    def _on_notice(self, msg: Message) -> None:
        target, text = msg.param(0), msg.param(1)
        source = msg.source or ""
        if "!" not in source or target == "*" or text.startswith(CTCP):
            self._server_line(msg, strip_formatting(text).strip(CTCP))
            return
        if self.is_channel(target):
            buf = self.open(target, BufferKind.CHANNEL)
        elif self.is_mine(msg.nick):
            buf = self.buffers.get(casefold(target)) or self.active_buffer  # our echo
        else:
            buf = self.buffers.get(casefold(msg.nick or "")) or self.active_buffer
        self._live(buf, EntryKind.NOTICE, msg.nick or "", text, msg)

    def _on_join(self, msg: Message) -> None:
        room, nick = msg.param(0), msg.nick or ""
        buf = self.open(room, BufferKind.CHANNEL)
        if self.is_mine(nick):
            buf.name = room  # the server's spelling
            buf.joined = True
            buf.members.clear()
            buf.names_pending = False
            self.dirty_list = True
        buf.members[casefold(nick)] = Member(nick)
        self.dirty_members.add(buf.key)
        self.add(buf, EntryKind.JOIN, nick, f"{nick} has joined {room}", when=self._time(msg))

    def _on_part(self, msg: Message) -> None:
        room, nick = msg.param(0), msg.nick or ""
        buf = self.buffers.get(casefold(room))
        if buf is None:
            return
        reason = msg.param(1)
        text = f"{nick} has left {buf.name}" + (f" ({strip_formatting(reason)})" if reason else "")
        self._leave(buf, nick)
        self.add(buf, EntryKind.PART, nick, text, when=self._time(msg))

    def _leave(self, buf: Buffer, nick: str) -> None:
        buf.members.pop(casefold(nick), None)
        self.dirty_members.add(buf.key)
        if self.is_mine(nick):
            buf.joined = False
            buf.members.clear()
            self.dirty_list = True

    def _on_kick(self, msg: Message) -> None:
        room, victim, reason = msg.param(0), msg.param(1), msg.param(2)
        buf = self.buffers.get(casefold(room))
        if buf is None:
            return
        by = msg.nick or "server"
        you = "you" if self.is_mine(victim) else victim
        self._leave(buf, victim)
        text = f"{by} has kicked {you} from {buf.name}" + (
            f" ({strip_formatting(reason)})" if reason else ""
        )
        self.add(buf, EntryKind.KICK, by, text, when=self._time(msg))

    def _on_quit(self, msg: Message) -> None:
        nick = msg.nick or ""
        folded = casefold(nick)
        reason = strip_formatting(msg.param(0))
        text = f"{nick} has quit" + (f" ({reason})" if reason else "")
        for buf in list(self.buffers.values()):
            if folded in buf.members or (buf.kind is BufferKind.QUERY and buf.key == folded):
                buf.members.pop(folded, None)
                self.dirty_members.add(buf.key)
                self.add(buf, EntryKind.QUIT, nick, text, when=self._time(msg))

    def _on_nick(self, msg: Message) -> None:
        old, new = msg.nick or "", msg.param(0)
        old_f, new_f = casefold(old), casefold(new)
        mine = self.is_mine(old)
        if mine:
            self.nick = new
            self.dirty_list = True
        text = f"You are now known as {new}" if mine else f"{old} is now known as {new}"
        for buf in list(self.buffers.values()):
            member = buf.members.pop(old_f, None)
            in_query = buf.kind is BufferKind.QUERY and buf.key == old_f
            if member is not None:
                buf.members[new_f] = Member(new, member.prefixes)
                self.dirty_members.add(buf.key)
            if old_f in buf.speakers:
                del buf.speakers[old_f]
                buf.speakers[new_f] = new
            if in_query and new_f not in self.buffers:
                self._rename(buf, new)
            if member is not None or in_query or (mine and buf.kind is BufferKind.SERVER):
                self.add(buf, EntryKind.NICK, old, text, when=self._time(msg))

    def _rename(self, buf: Buffer, name: str) -> None:
        old_key = buf.key
        del self.buffers[old_key]
        buf.name = name
        self.buffers[buf.key] = buf
        if self.active == old_key:
            self.active = buf.key
        self.dirty_list = True

    def _on_topic(self, msg: Message) -> None:
        buf = self.open(msg.param(0), BufferKind.CHANNEL)
        buf.topic = msg.param(1)
        self.dirty_members.add(buf.key)
        text = f"{msg.nick} changed the topic to: {strip_formatting(buf.topic)}"
        self.add(buf, EntryKind.TOPIC, msg.nick, text, when=self._time(msg))

    def _on_rpl_topic(self, msg: Message) -> None:
        buf = self.open(msg.param(1), BufferKind.CHANNEL)
        buf.topic = msg.param(2)
        self.dirty_members.add(buf.key)
        self.add(buf, EntryKind.TOPIC, None, f"Topic: {strip_formatting(buf.topic)}", count=False)

    def _on_rpl_notopic(self, msg: Message) -> None:
        buf = self.buffers.get(casefold(msg.param(1)))
        if buf is not None:
            buf.topic = ""
            self.dirty_members.add(buf.key)
            self.add(buf, EntryKind.INFO, None, "No topic is set", count=False)

    def _on_mode(self, msg: Message) -> None:
        target = msg.param(0)
        if not self.is_channel(target):
            self._server_line(msg, f"Mode {' '.join(msg.params[1:])} for {target}")
            return
        buf = self.open(target, BufferKind.CHANNEL)
        modes = msg.param(1)
        args = list(msg.params[2:])
        adding = True
        for ch in modes:
            if ch in "+-":
                adding = ch == "+"
            elif ch in self.prefix_modes:
                nick = args.pop(0) if args else ""
                member = buf.members.get(casefold(nick))
                if member is not None:
                    prefix = self.prefix_chars[self.prefix_modes.index(ch)]
                    have = set(member.prefixes)
                    (have.add if adding else have.discard)(prefix)
                    member.prefixes = "".join(p for p in self.prefix_chars if p in have)
                    self.dirty_members.add(buf.key)
            elif ch in "beIkl" and args and (adding or ch != "l"):
                args.pop(0)
        by = msg.nick or "server"
        text = f"{by} sets mode {' '.join(msg.params[1:])}"
        self.add(buf, EntryKind.MODE, by, text, when=self._time(msg))

    def _on_error(self, msg: Message) -> None:
        self._server_line(msg, f"Server: {msg.param(0)}", error=True)

    def _on_invite(self, msg: Message) -> None:
        self.add(
            self.active_buffer,
            EntryKind.INFO,
            None,
            f"{msg.nick} invites you to {msg.param(1)} (type /join {msg.param(1)})",
        )

    def _on_welcome(self, msg: Message) -> None:
        self.nick = msg.param(0, self.nick)
        self.chathistory_limit = None  # a new connection: ISUPPORT follows
        self.msgreftypes = frozenset()
        server = self.buffers[SERVER_KEY]
        if msg.source:
            self.server_name = server.name = msg.source
        self.dirty_list = True
        self._server_line(msg, msg.param(-1))

    def _on_isupport(self, msg: Message) -> None:
        for token in msg.params[1:-1]:
            key, _, value = token.partition("=")
            if key == "PREFIX" and value.startswith("(") and ")" in value:
                modes, _, chars = value[1:].partition(")")
                if len(modes) == len(chars):
                    self.prefix_modes, self.prefix_chars = modes, chars
            elif key == "CHANTYPES":
                self.chantypes = value or "#"
            elif key == "NETWORK" and value:
                self.buffers[SERVER_KEY].name = value
                self.dirty_list = True
            elif key == "CHATHISTORY":
                self.chathistory_limit = int(value) if value.isdigit() else 0
            elif key == "MSGREFTYPES":
                self.msgreftypes = frozenset(v for v in value.split(",") if v)

    def _on_namreply(self, msg: Message) -> None:
        # 353 me <=|*|@> #room :[prefixes]nick ...  (multi-prefix: several prefixes)
        buf = self.buffers.get(casefold(msg.param(2)))
        if buf is None:
            self._server_line(msg, f"Names {msg.param(2)}: {msg.param(3)}")
            return
        if not buf.names_pending:
            buf.names_pending = True
            if buf.joined:
                buf.members.clear()
        for item in msg.param(3).split():
            nick = item.lstrip(self.prefix_chars)
            prefixes = item[: len(item) - len(nick)]
            nick = split_source(nick)[0]  # userhost-in-names
            if nick:
                buf.members[casefold(nick)] = Member(nick, prefixes)
        self.dirty_members.add(buf.key)

    def _on_endofnames(self, msg: Message) -> None:
        buf = self.buffers.get(casefold(msg.param(1)))
        if buf is None:
            return
        buf.names_pending = False
        self.dirty_members.add(buf.key)
        members = buf.sorted_members(self.prefix_chars)
        ops = sum(1 for m in members if m.prefixes.startswith("@"))
        self.add(
            buf,
            EntryKind.INFO,
            None,
            f"{len(members)} in {buf.name} ({ops} op{'s' if ops != 1 else ''}): "
            + " ".join(m.prefixes[:1] + m.nick for m in members),
            count=False,
        )

    def _on_away(self, msg: Message) -> None:
        """away-notify: someone in our rooms went away (with a reason) or came back."""
        folded = casefold(msg.nick or "")
        away = bool(msg.params and msg.params[0])
        for buf in self.buffers.values():
            member = buf.members.get(folded)
            if member is not None and member.away != away:
                member.away = away
                self.dirty_members.add(buf.key)

    def _on_standard_reply(self, msg: Message) -> None:
        """IRCv3 standard replies: ``FAIL/WARN/NOTE <command> <code> [context...] :text``."""
        text = f"{msg.param(0)}: {msg.param(-1)} ({msg.param(1)})"
        self.info(text, error=msg.command == "FAIL")

    def _on_unaway(self, msg: Message) -> None:
        self.away = False
        self.dirty_list = True
        self.info("You are no longer marked as away")

    def _on_nowaway(self, msg: Message) -> None:
        self.away = True
        self.dirty_list = True
        self.info("You are now marked as away")

    def _on_rpl_away(self, msg: Message) -> None:
        nick = msg.param(1)
        buf = self.buffers.get(casefold(nick)) or self.active_buffer
        self.add(buf, EntryKind.INFO, None, f"{nick} is away: {msg.param(2)}", count=False)

    def _on_channelmodeis(self, msg: Message) -> None:
        buf = self.buffers.get(casefold(msg.param(1)))
        text = f"Modes of {msg.param(1)}: {' '.join(msg.params[2:])}"
        self.add(buf or self.buffers[SERVER_KEY], EntryKind.INFO, None, text, count=False)

    def _on_rpl_list(self, msg: Message) -> None:
        room, users, topic = msg.param(1), msg.param(2), strip_formatting(msg.param(3))
        self.info(f"{room:<20} {users:>4}  {topic}")

    def _on_numeric(self, msg: Message) -> None:
        """Replies without special handling: errors to where the user is, the rest to server."""
        text = " ".join(msg.params[1:])
        code = int(msg.command)
        if msg.command in _SEND_ERRORS:
            buf = self.buffers.get(casefold(msg.param(1)))
            if buf is not None and buf.pending:
                self._fail_pending(buf, 1)
        if 400 <= code < 600:
            self.info(_error_text(msg), error=True)
        elif 311 <= code <= 319 or code in (301, 330, 338, 378, 671, 276, 307, 320):
            self.info(_whois_text(msg))
        elif code in (321, 323, 366, 315, 368, 347):
            if code == 323:
                self.info("End of room list")
        else:
            self._server_line(msg, text)


# Errors that mean a PRIVMSG to param 1 went nowhere (so no echo will come for it).
_SEND_ERRORS = frozenset(
    {Numeric.ERR_NOSUCHNICK, Numeric.ERR_NOSUCHCHANNEL, Numeric.ERR_CANNOTSENDTOCHAN}
)


def _error_text(msg: Message) -> str:
    """An error numeric as a sentence: '#room: Cannot send to channel (404)'."""
    params = msg.params[1:]
    subject = " ".join(params[:-1])
    reason = params[-1] if params else "error"
    return (f"{subject}: " if subject else "") + f"{reason} ({msg.command})"


def _whois_text(msg: Message) -> str:
    p = msg.params
    code = msg.command
    if code == Numeric.RPL_WHOISUSER:
        return f"{msg.param(1)} is {msg.param(2)}@{msg.param(3)} ({msg.param(5)})"
    if code == Numeric.RPL_WHOISSERVER:
        return f"{msg.param(1)} is on {msg.param(2)} ({msg.param(3)})"
    if code == Numeric.RPL_WHOISCHANNELS:
        return f"{msg.param(1)} is in {msg.param(2)}"
    if code == Numeric.RPL_WHOISIDLE:
        return f"{msg.param(1)} has been idle {msg.param(2)} s"
    if code == Numeric.RPL_ENDOFWHOIS:
        return f"End of WHOIS for {msg.param(1)}"
    return " ".join(p[1:])
