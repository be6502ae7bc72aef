"""What the client knows: rooms, queries, members, topics, backlogs and unread counts.

Sans-IO like the protocol module: :meth:`ClientState.handle` takes a parsed
:class:`~chatroom.protocol.Message` and updates the model; the UI reads the model and
the ``dirty`` sets to repaint only what changed. No sockets, no widgets, no Textual.
Every dict of nicks or rooms is keyed by :func:`~chatroom.protocol.casefold`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    "Member",
]

# Lines kept per room; older ones scroll away (10,000 is the scrolling benchmark's size).
BACKLOG_LINES = 10_000
# Nicks remembered per room for Tab completion, most recent speaker first.
RECENT_SPEAKERS = 100
# The server buffer's key; no nick or room can be empty, so it never collides.
SERVER_KEY = ""
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


class BufferKind(StrEnum):
    """What a buffer shows."""

    SERVER = "server"
    CHANNEL = "channel"
    QUERY = "query"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line in a backlog. ``text`` is raw peer text: render it safely."""

    time: datetime
    kind: EntryKind
    nick: str | None
    text: str
    own: bool = False
    mention: bool = False
    seq: int = 0


@dataclass(slots=True)
class Member:
    """A room member and their channel prefixes (``@`` op, ``+`` voice), highest first."""

    nick: str
    prefixes: str = ""


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
    entries: deque[Entry] = field(default_factory=lambda: deque(maxlen=BACKLOG_LINES))
    members: dict[str, Member] = field(default_factory=dict)
    topic: str = ""
    joined: bool = False
    unread: int = 0
    mentions: int = 0
    speakers: OrderedDict[str, str] = field(default_factory=OrderedDict)
    names_pending: bool = False
    # Bumped by /clear so views drop what they cached.
    generation: int = 0

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


def _parse_time(tags: dict[str, str] | None) -> datetime:
    """The IRCv3 ``time`` tag when present and readable, else now (local time)."""
    raw = tags.get("time") if tags else None
    if raw:
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone()
        except ValueError:
            pass
    return datetime.now(UTC).astimezone()


class ClientState:
    """The client's model of the IRC world, fed with Messages from the server.

    ``dirty_entries`` holds keys of buffers with new lines, ``dirty_members`` those
    whose member lists or topics changed, ``dirty_list`` says the room list (names,
    counts) changed, and ``alerts`` collects mentions/private messages for the UI to
    announce. The UI clears them after painting.
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
        """Look at buffer ``key``: its counts are read."""
        if key not in self.buffers:
            return
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
            buf.generation += 1
            self.dirty_entries.add(key)

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
    ) -> Entry:
        """Append a line to ``buf``; counts it as unread (and alerts) if not in view."""
        self._seq += 1
        mention = (
            not own
            and kind in (EntryKind.MESSAGE, EntryKind.ACTION, EntryKind.NOTICE)
            and nick is not None
            and (buf.kind is BufferKind.QUERY or contains_mention(text, self.nick))
        )
        entry = Entry(when or _parse_time(None), kind, nick, text, own, mention, self._seq)
        buf.entries.append(entry)
        self.dirty_entries.add(buf.key)
        if kind in (EntryKind.MESSAGE, EntryKind.ACTION) and nick and not own:
            folded = casefold(nick)
            buf.speakers[folded] = nick
            buf.speakers.move_to_end(folded)
            if len(buf.speakers) > RECENT_SPEAKERS:
                buf.speakers.popitem(last=False)
        if buf.key != self.active and count and kind not in SYSTEM_KINDS:
            if kind in (EntryKind.MESSAGE, EntryKind.ACTION, EntryKind.NOTICE):
                buf.unread += 1
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

    def own_message(self, target: str, text: str, *, action: bool = False) -> None:
        """Show a line we sent (servers don't echo without echo-message)."""
        buf = self.open(target)
        kind = EntryKind.ACTION if action else EntryKind.MESSAGE
        self.add(buf, kind, self.nick, text, own=True)

    def disconnected(self, reason: str) -> None:
        """The link dropped: members are unknown until we rejoin."""
        for buf in self.buffers.values():
            if buf.kind is BufferKind.CHANNEL and buf.members:
                buf.members.clear()
                self.dirty_members.add(buf.key)
        self.info(f"Disconnected: {reason}", SERVER_KEY, error=True)
        for buf in self.buffers.values():
            if buf.kind is BufferKind.CHANNEL and buf.joined:
                self.info(f"Disconnected: {reason}", buf.key, error=True)

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

    def _on_privmsg(self, msg: Message) -> None:
        target, text = msg.param(0), msg.param(1)
        nick = msg.nick or ""
        if "!" not in (msg.source or "!") and not self.is_channel(target) and "." in nick:
            self._server_line(msg, text)  # a server's PRIVMSG to us
            return
        kind = EntryKind.MESSAGE
        if text.startswith(CTCP):
            body = text.strip(CTCP)
            command, _, rest = body.partition(" ")
            if command.upper() != "ACTION":
                self._ctcp(msg, command.upper(), rest)
                return
            kind, text = EntryKind.ACTION, rest
        buf = self._target_buffer(msg, target)
        self.add(buf, kind, nick, text, own=self.is_mine(nick), when=self._time(msg))

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
        else:
            buf = self.buffers.get(casefold(msg.nick or "")) or self.active_buffer
        self.add(buf, EntryKind.NOTICE, msg.nick, text, when=self._time(msg))

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
        if 400 <= code < 600:
            self.info(_error_text(msg), error=True)
        elif 311 <= code <= 319 or code in (301, 330, 338, 378, 671, 276, 307, 320):
            self.info(_whois_text(msg))
        elif code in (321, 323, 366, 315, 368, 347):
            if code == 323:
                self.info("End of room list")
        else:
            self._server_line(msg, text)


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


def iter_entries(buf: Buffer, since_seq: int) -> Iterator[Entry]:
    """Entries of ``buf`` newer than ``since_seq``, oldest first (cheap from the end)."""
    entries = buf.entries
    start = len(entries)
    while start > 0 and entries[start - 1].seq > since_seq:
        start -= 1
    for i in range(start, len(entries)):
        yield entries[i]
