"""Shared server state: who is connected, which rooms exist, who is in them, and their rules.

One lock (``Registry.lock``) guards all of it. Sessions take it to check and change
state atomically and enqueue the resulting lines while holding it, so every member
of a room sees joins, parts and messages in one consistent order. Enqueueing is a
memory append (see outbox.py); nothing under the lock blocks on a socket.

The rules live on the types: a :class:`Channel` answers who may join, speak, set the
topic or invite, and changes its own modes; the :class:`Registry` makes rooms and
ends them, and hands out message ids. Commands (commands/) ask them and say the
result; they never write these structures themselves.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from chatroom.protocol import Cap, Message, casefold, is_channel, mask_matcher, serialize
from chatroom.protocol import Numeric as N
from chatroom.server.config import Config
from chatroom.server.flood import LoginLimiter
from chatroom.server.records import (
    ID_TIME_SHIFT,
    Accounts,
    History,
    RoomRegistration,
    RoomState,
)
from chatroom.server.stats import Stats


class Sink(Protocol):
    """What the state needs of a connection: somewhere to put bytes, a way to end it."""

    variant: int  # which encoding of a multicast line it takes (capabilities)

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer; never blocks, drops the peer on SendQ overflow."""

    def close(self, reason: str) -> None:
        """Flush what is queued, then end the connection."""


@dataclass(eq=False)
class User:
    """A connection's identity. Identity-hashed: members and nicks key on the object."""

    conn: Sink
    host: str
    nick: str = "*"
    username: str = ""
    realname: str = ""
    # Listed as registered (find_user, LUSERS): set by Registry.mark_registered when the
    # Session reaches its REGISTERED state, so other threads can tell under the lock.
    registered: bool = False
    modes: set[str] = field(default_factory=set)
    away: str | None = None
    caps: set[str] = field(default_factory=set)  # protocol.Cap members
    channels: dict[str, Channel] = field(default_factory=dict)  # keyed by casefolded name
    signon: float = field(default_factory=time.time)
    last_spoke: float = field(default_factory=time.monotonic)
    gone: bool = False  # removed from the registry (quit, killed, dropped)
    account: str | None = None  # the account logged in to, as registered; None: none
    # MONITOR: casefolded nick -> the nick as the client wrote it (at most monitor_max)
    monitoring: dict[str, str] = field(default_factory=dict)
    # MARKREAD without an account: casefolded target -> ms, for this connection only
    # (at most read_markers_max, the least recently moved dropped first)
    read_markers: dict[str, int] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """Who this is in private history: ``~account`` when logged in (a ``~`` cannot
        start a nick), else the casefolded nick, good only for this connection's life."""
        return "~" + casefold(self.account) if self.account else casefold(self.nick)

    @property
    def source(self) -> str:
        """``nick!user@host``, the prefix of everything this user says."""
        return f"{self.nick}!{self.username}@{self.host}"

    @property
    def is_oper(self) -> bool:
        return "o" in self.modes

    def send(self, data: bytes) -> None:
        self.conn.send(data)


def sinks_with(users: Iterable[User], cap: str, skip: User | None = None) -> tuple[Sink, ...]:
    """The connections of those ``users`` (except ``skip``) that negotiated ``cap``."""
    return tuple(u.conn for u in users if cap in u.caps and u is not skip)


def with_bot_tag(user: User, client_tags: dict[str, str] | None) -> dict[str, str] | None:
    """The tags a line of ``user``'s carries beyond the server's own: its client-only
    tags, plus the IRCv3 ``bot`` tag (no value) when it is a bot (+B). Both reach only
    clients of message-tags (tags.ALL_TAGS); history keeps only the client's own."""
    if "B" not in user.modes:
        return client_tags
    return {"bot": "", **client_tags} if client_tags else {"bot": ""}


# Room modes without a parameter (CHANMODES group D) and the status modes (PREFIX).
FLAG_MODES = "imnst"
STATUS_MODES = "ov"
# STATUSMSG: a target's prefix -> the status modes that receive it (at least that status).
STATUS_PREFIXES = {"@": "o", "+": "ov"}


def split_status(target: str) -> tuple[str, str]:
    """A PRIVMSG/NOTICE target as (STATUSMSG prefix, the rest): "@#room" reaches the
    room's operators, "+#room" its voiced and operators; any other target has no prefix.

    >>> split_status("@+#lan"), split_status("#lan"), split_status("+bob")
    (('@+', '#lan'), ('', '#lan'), ('', '+bob'))
    """
    if target[0] in STATUS_PREFIXES and is_channel(bare := target.lstrip("@+")):
        return target[: -len(bare)], bare
    return "", target


# The mask lists (CHANMODES group A): bans, ban exceptions, invite exceptions.
LIST_MODES = "beI"


class ListEntry(NamedTuple):
    """A mask on a room's ban, exception or invite-exception list."""

    mask: str  # as shown: nick!user@host with wildcards, or $a[:account] (extban)
    set_by: str  # nick!user@host of who set it
    set_at: int  # Unix time
    # (casefolded nick!user@host, casefolded account or None) -> whether it matches
    match: Callable[[str, str | None], bool]


# EXTBAN=$,a: "$a:mask" matches users logged in to a matching account, "$a" any account.
ACCOUNT_EXTBAN = "$a"


def list_matcher(mask: str) -> Callable[[str, str | None], bool]:
    """How a list mask matches a user: on nick!user@host, or on the account ($a)."""
    if mask == ACCOUNT_EXTBAN or mask.startswith(ACCOUNT_EXTBAN + ":"):
        pattern = mask[len(ACCOUNT_EXTBAN) + 1 :]
        on_account = mask_matcher(pattern) if pattern else None
        return lambda source, account: (
            account is not None and (on_account is None or on_account(account))
        )
    on_source = mask_matcher(mask)
    return lambda source, account: on_source(source)


def canonical_mask(mask: str) -> str:
    """A list mask in full ``nick!user@host`` form, as most servers store it.

    >>> canonical_mask("bar"), canonical_mask("*@10.0.0.*"), canonical_mask("bar!b")
    ('bar!*@*', '*!*@10.0.0.*', 'bar!b@*')
    >>> canonical_mask("$a:alice")
    '$a:alice'
    """
    if mask.startswith("$"):  # an extban is not a hostmask
        return mask
    if "!" not in mask:
        return f"*!{mask}" if "@" in mask else f"{mask}!*@*"
    return mask if "@" in mask.partition("!")[2] else f"{mask}@*"


@dataclass(eq=False)
class Channel:
    """A room. ``members`` maps each User to its status modes ("o", "v", "ov" or "")."""

    name: str
    created: float = field(default_factory=time.time)
    members: dict[User, str] = field(default_factory=dict)
    topic: str = ""
    topic_by: str = ""
    topic_at: float = 0.0
    modes: set[str] = field(default_factory=lambda: {"n", "t"})
    key: str | None = None
    limit: int | None = None
    # Invitations belong to the connection, not the nick: a nick can change hands. Weak,
    # so the invited who leave the server are forgotten with their connection.
    invited: weakref.WeakSet[User] = field(default_factory=weakref.WeakSet)
    # History of this name up to this message id belongs to an earlier room (one that
    # emptied): not served to this one's members.
    history_from: int = 0
    # Registered (ChanServ REGISTER): its founder and access list by account; None: not
    registration: RoomRegistration | None = None
    # +b +e +I: mode letter -> casefolded mask -> entry, in the order they were set
    lists: dict[str, dict[str, ListEntry]] = field(
        default_factory=lambda: {letter: {} for letter in LIST_MODES}
    )
    _sinks: tuple[Sink, ...] | None = field(default=None, repr=False)
    _status_sinks: dict[str, tuple[Sink, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.folded = casefold(self.name)  # the registry's key for this room

    @classmethod
    def restore(cls, saved: RoomState) -> Channel:
        """A room as the database kept it (after a restart), without members."""
        return cls(
            saved.name,
            created=saved.created,
            topic=saved.topic,
            topic_by=saved.topic_by,
            topic_at=saved.topic_at,
            modes=set(saved.modes),
            key=saved.room_key,
            limit=saved.limit,
            history_from=saved.history_from,
        )

    def state(self) -> RoomState:
        """What of this room outlives a restart."""
        return RoomState(
            self.folded,
            self.name,
            self.topic,
            self.topic_by,
            self.topic_at,
            "".join(sorted(self.modes)),
            self.key,
            self.limit,
            self.created,
            self.history_from,
        )

    # --- membership (the Registry adds and removes members) ---------------------------

    def add(self, user: User, status: str = "") -> None:
        self.members[user] = status
        self._sinks = None
        self._status_sinks.clear()

    def remove(self, user: User) -> None:
        del self.members[user]
        self._sinks = None
        self._status_sinks.clear()

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """Every member's connection, as an immutable snapshot (cached until the
        membership changes), so a fan-out costs the sender nothing per member."""
        if self._sinks is None:
            self._sinks = tuple(u.conn for u in self.members)
        return self._sinks

    def sinks_of_status(self, modes: str) -> tuple[Sink, ...]:
        """The connections of the members holding any of the status ``modes`` ("o":
        operators; "ov": operators and voiced), for STATUSMSG (``PRIVMSG @#room``).
        Cached like ``sinks`` (until membership or a status changes), so the writer
        sees the same tuple each time rather than a new fan-out group per message."""
        found = self._status_sinks.get(modes)
        if found is None:
            found = self._status_sinks[modes] = tuple(
                u.conn for u, has in self.members.items() if any(m in has for m in modes)
            )
        return found

    def is_member(self, user: User) -> bool:
        return user in self.members

    # --- what a user may do here ----------------------------------------------------------

    def visible_to(self, user: User) -> bool:
        """A secret (+s) room does not exist for those outside it (403, as Ergo)."""
        return "s" not in self.modes or user in self.members

    def is_op(self, user: User) -> bool:
        return "o" in self.members.get(user, "")

    def status_on_join(self, user: User, first: bool) -> str:
        """The status a joining user gets: a registered room gives it by account (its
        founder and access list) and to nobody else, even the first to come back;
        an unregistered room makes its first member operator."""
        reg = self.registration
        if reg is None:
            return "o" if first else ""
        if not user.account:
            return ""
        key = casefold(user.account)
        return "o" if key == reg.founder else reg.access.get(key, "")

    def is_founder(self, user: User) -> bool:
        reg = self.registration
        return (
            reg is not None and user.account is not None and casefold(user.account) == reg.founder
        )

    def can_speak(self, user: User) -> bool:
        """+n keeps outsiders out; +m and +b let only voiced and operators talk."""
        status = self.members.get(user)
        if status is None:
            return "n" not in self.modes and not self.banned(user)
        # asked for every line: an empty ban list (the usual case) is not walked
        return bool(status) or (
            "m" not in self.modes and not (self.lists["b"] and self.banned(user))
        )

    def on_list(self, letter: str, user: User) -> bool:
        """Whether a mask on list ``letter`` (b, e or I) matches ``user``."""
        entries = self.lists[letter]
        if not entries:
            return False
        folded = casefold(user.source)
        account = casefold(user.account) if user.account else None
        return any(e.match(folded, account) for e in entries.values())

    def banned(self, user: User) -> bool:
        """+b matches and no +e does."""
        return self.on_list("b", user) and not self.on_list("e", user)

    def may_set_topic(self, user: User) -> bool:
        """+t: only operators set the topic."""
        return "t" not in self.modes or self.is_op(user)

    def may_invite(self, user: User) -> bool:
        """+i: only operators invite."""
        return "i" not in self.modes or self.is_op(user)

    def join_refused(self, user: User, key: str | None) -> str | None:
        """The mode that keeps ``user`` out ("i", "k", "l" or "b"), or None. An
        invitation passes +i, +l and +b (as in Ergo), an +I mask passes +i; nothing
        passes a wrong key."""
        invited = user in self.invited
        if "i" in self.modes and not invited and not self.on_list("I", user):
            return "i"
        if self.key is not None and key != self.key:
            return "k"
        if self.limit is not None and len(self.members) >= self.limit and not invited:
            return "l"
        if not invited and self.banned(user):
            return "b"
        return None

    def invite(self, user: User) -> None:
        self.invited.add(user)

    # --- changes of state (lock held) ---------------------------------------------------------

    def set_topic(self, text: str, by: str) -> None:
        self.topic, self.topic_by, self.topic_at = text, by, time.time()

    def set_flag(self, mode: str, on: bool) -> bool:
        """Set or clear a flag mode (FLAG_MODES); False if it was so already."""
        if on == (mode in self.modes):
            return False
        (self.modes.add if on else self.modes.discard)(mode)
        return True

    def set_status(self, user: User, mode: str, on: bool) -> bool:
        """Give or take a member's +o or +v; False if it had it, or had it not, already."""
        status = self.members[user]
        if on == (mode in status):
            return False
        self.members[user] = (
            "".join(sorted(status + mode, key=STATUS_MODES.index))
            if on
            else status.replace(mode, "")
        )
        self._status_sinks.clear()
        return True

    def add_mask(
        self, letter: str, mask: str, by: str, limit: int, at: int | None = None
    ) -> ListEntry | None:
        """Put ``mask`` on list ``letter``; None if it is there already or the list
        holds ``limit`` masks (the caller tells which)."""
        entries = self.lists[letter]
        folded = casefold(mask)
        if folded in entries or len(entries) >= limit:
            return None
        when = int(time.time()) if at is None else at
        entries[folded] = entry = ListEntry(mask, by, when, list_matcher(mask))
        return entry

    def remove_mask(self, letter: str, mask: str) -> ListEntry | None:
        """Take ``mask`` off list ``letter``; None if it was not there."""
        return self.lists[letter].pop(casefold(mask), None)

    def set_key(self, key: str | None) -> bool:
        """Set the key, or clear it (None); False when clearing a room without one."""
        if key is None and self.key is None:
            return False
        self.key = key
        return True

    def set_limit(self, limit: int | None) -> bool:
        """Set the member limit, or clear it (None); False when there was none to clear."""
        if limit is None and self.limit is None:
            return False
        self.limit = limit
        return True

    def prefix_of(self, user: User, multi: bool = False) -> str:
        """``@``/``+`` prefixes for NAMES and WHO: the highest only, or all (multi-prefix)."""
        status = self.members.get(user, "")
        if multi:
            return ("@" if "o" in status else "") + ("+" if "v" in status else "")
        return "@" if "o" in status else "+" if "v" in status else ""

    def mode_string(self, show_key: bool) -> tuple[str, ...]:
        """``+klnt key 10`` as RPL_CHANNELMODEIS parameters."""
        flags = "".join(sorted(self.modes))
        params: list[str] = []
        if self.key is not None:
            flags += "k"
            params.append(self.key if show_key else "*")
        if self.limit is not None:
            flags += "l"
            params.append(str(self.limit))
        return ("+" + flags, *params)


def is_loopback(host: str) -> bool:
    """Whether a displayed host (handler.display_host: IPv6 may carry a leading 0) is loopback."""
    try:
        return ipaddress.ip_address(host.removeprefix("0")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WhowasEntry:
    nick: str
    username: str
    host: str
    realname: str
    left: float


def direct_multicast(
    variants: Sequence[bytes], sinks: Iterable[Sink], exclude: object = None, record: object = None
) -> None:
    """Fan-out without a writer thread (socketless tests): call each sink in turn."""
    for sink in sinks:
        if sink is not exclude and (data := variants[getattr(sink, "variant", 0)]):
            sink.send(data)


Multicast = Callable[..., None]


class Registry:
    """Everything connections share. Hold ``lock`` to read or change any of it.

    ``multicast(variants, sinks, exclude, record)`` delivers one line to many
    connections; the server plugs in its writer (or the history store in front of it)
    and, when history is on, the ``history`` sessions read (records.History).
    """

    def __init__(
        self,
        config: Config,
        multicast: Multicast = direct_multicast,
        history: History | None = None,
        last_message_id: int = 0,
        accounts: Accounts | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.config = config
        # the server's counters; ``stats.messages`` is counted with the lock held
        self.stats = stats if stats is not None else Stats()
        self.multicast = multicast
        self.history = history
        self.accounts = accounts  # records.Accounts; None: no accounts on this server
        # SCRAM answers for unknown accounts derive from this, so they look like real ones
        self.fake_secret = secrets.token_bytes(32)
        # failed logins by account and by address (brute force), shared by all sessions
        self.login_failures = LoginLimiter(config.login_failures, config.login_failure_window)
        self.registrations = LoginLimiter(config.registrations, config.registration_window)
        # id of the newest stored message posted (lock held); the store's newest at start
        self.last_message_id = last_message_id
        self.lock = threading.RLock()
        self.created = time.time()
        self.users: dict[str, User] = {}  # casefolded nick -> user (pending nicks too)
        self.channels: dict[str, Channel] = {}  # casefolded name -> room
        # MONITOR: casefolded nick -> the connections watching it (each User.monitoring
        # names its keys here; the entry goes with its last watcher)
        self.watchers: dict[str, set[User]] = {}
        self.connections: set[User] = set()  # every open connection, registered or not
        self.whowas: deque[WhowasEntry] = deque(maxlen=config.whowas_entries)
        self.per_address: Counter[str] = Counter()
        self.max_users = 0
        # LUSERS figures, kept as counts: recounting on every registration made a
        # storm of N connections cost O(N^2).
        self.registered_count = 0
        self.mode_counts: Counter[str] = Counter()  # registered users with +i, +o

    # -- messages ----------------------------------------------------------------------

    def next_message_id(self, time_ms: int) -> int:
        """The id of a stored message stamped ``time_ms`` (lock held, where its place is
        fixed): increasing in posting order, and >= its time's bound (records.first_id_at)."""
        self.last_message_id = new = max(self.last_message_id + 1, time_ms << ID_TIME_SHIFT)
        return new

    # -- nicks -------------------------------------------------------------------------

    def claim_nick(self, user: User, nick: str) -> bool:
        """Atomically take ``nick`` for ``user``; False if someone else holds it."""
        key = casefold(nick)
        with self.lock:
            holder = self.users.get(key)
            if holder is not None and holder is not user:
                return False
            old_nick = user.nick
            if old_nick != "*":
                old = casefold(old_nick)
                if old != key and self.users.get(old) is user:
                    del self.users[old]
            self.users[key] = user
            user.nick = nick
            if user.registered and casefold(old_nick) != key:  # not for a change of case
                self._monitor_offline(old_nick)
                self._monitor_online(user)
            return True

    def find_user(self, nick: str) -> User | None:
        user = self.users.get(casefold(nick))
        return user if user is not None and user.registered else None

    def find_channel(self, name: str) -> Channel | None:
        return self.channels.get(casefold(name))

    def visible_channel(self, name: str, user: User) -> Channel | None:
        """A room ``user`` may know of: a secret room is no room to those outside it."""
        chan = self.channels.get(casefold(name))
        return chan if chan is not None and chan.visible_to(user) else None

    # -- rooms -------------------------------------------------------------------------

    def build_room(
        self,
        name: str,
        saved: RoomState | None = None,
        registration: RoomRegistration | None = None,
    ) -> Channel:
        """A room not yet open: new, or the one the database kept (``saved``, after a
        restart) with its topic, modes and key. A new room gets none of the history of
        an earlier room of its name (that one emptied). A registered room
        (``registration``) comes back with its mask lists, and its first member is
        operator only by its access list."""
        if saved is not None:
            chan = Channel.restore(saved)
        else:
            chan = Channel(name, history_from=self.last_message_id)
        if registration is not None:
            chan.registration = registration
            for letter, mask, set_by, set_at in registration.lists:
                if letter in chan.lists:
                    chan.add_mask(letter, mask, set_by, self.config.listmodes_max, set_at)
        return chan

    def open_room(self, chan: Channel, founder: User, saved: bool) -> None:
        """Put a built room in the registry with its first member."""
        with self.lock:
            self.channels[chan.folded] = chan
            self._add_member(founder, chan, chan.status_on_join(founder, first=True))
            if not saved:
                self.save_room(chan)

    def join(self, user: User, chan: Channel) -> None:
        """Add a member to an existing room; its invitation, if any, is used up."""
        with self.lock:
            chan.invited.discard(user)
            self._add_member(user, chan, chan.status_on_join(user, first=False))

    def _add_member(self, user: User, chan: Channel, status: str) -> None:
        chan.add(user, status)
        user.channels[chan.folded] = chan

    def leave(self, user: User, chan: Channel) -> None:
        """Remove a member (PART, KICK); an empty room ceases to exist."""
        with self.lock:
            chan.remove(user)
            user.channels.pop(chan.folded, None)
            if not chan.members:
                self._room_emptied(chan)

    def _room_emptied(self, chan: Channel) -> None:
        """The last member left: the room is gone, with its modes, topic and
        invitations, and whoever makes a new room of that name gets none of its history
        (Ergo's rule for unregistered rooms)."""
        if self.channels.get(chan.folded) is chan:
            del self.channels[chan.folded]
        if self.history is None:
            return
        if chan.registration is not None:  # a registered room keeps its topic and modes
            self.history.save_room(chan.state())
        else:
            self.history.forget_room(chan.folded, chan.name, self.last_message_id)

    def save_room(self, chan: Channel) -> None:
        """Persist a room's topic, modes, key and limit (lock held, so in order)."""
        if self.history is not None:
            self.history.save_room(chan.state())

    # -- connections -------------------------------------------------------------------

    def add_connection(self, user: User) -> str | None:
        """Admit a new connection, or say why not (total or per-address limit; loopback
        may be exempt from the latter)."""
        exempt = self.config.exempt_loopback and is_loopback(user.host)
        with self.lock:
            if len(self.connections) >= self.config.max_clients:
                return "Too many connections"
            if not exempt and self.per_address[user.host] >= self.config.max_per_address:
                return "Too many connections from your address"
            self.connections.add(user)
            self.per_address[user.host] += 1
            return None

    def remove_user(self, user: User) -> set[User]:
        """Drop ``user`` from everything; return who shared a room with it (to tell them).

        Idempotent: the first caller (QUIT, KILL, a dropped socket) wins.
        """
        with self.lock:
            if user.gone:
                return set()
            user.gone = True
            if user in self.connections:
                self.connections.discard(user)
                self.per_address[user.host] -= 1
                if self.per_address[user.host] <= 0:
                    del self.per_address[user.host]
            key = casefold(user.nick)
            if self.users.get(key) is user:
                del self.users[key]
            peers: set[User] = set()
            for chan in user.channels.values():
                chan.remove(user)
                peers.update(chan.members)
                if not chan.members:
                    self._room_emptied(chan)
            user.channels.clear()
            self.unwatch_all(user)
            if user.registered:
                self._monitor_offline(user.nick)
                self.registered_count -= 1
                for mode in user.modes:
                    self.mode_counts[mode] -= 1
                self.whowas.append(
                    WhowasEntry(user.nick, user.username, user.host, user.realname, time.time())
                )
            return peers

    def mark_registered(self, user: User) -> None:
        with self.lock:
            user.registered = True
            self.registered_count += 1
            self.max_users = max(self.max_users, self.registered_count)
            for mode in user.modes:
                self.mode_counts[mode] += 1
            self._monitor_online(user)

    def set_user_mode(self, user: User, mode: str, on: bool) -> bool:
        """Set or clear a user mode, keeping the counts; False if nothing changed."""
        with self.lock:
            if on == (mode in user.modes):
                return False
            if on:
                user.modes.add(mode)
            else:
                user.modes.discard(mode)
            if user.registered:
                self.mode_counts[mode] += 1 if on else -1
            return True

    # -- MONITOR (IRCv3 monitor: who of my friends is online) ------------------------------

    def watch(self, user: User, nick: str) -> bool:
        """Add ``nick`` to ``user``'s MONITOR list; False when the list is full (the
        caller says so, 734). Adding a nick already there changes nothing."""
        key = casefold(nick)
        with self.lock:
            if key in user.monitoring:
                return True
            if len(user.monitoring) >= self.config.monitor_max or user.gone:
                return False
            user.monitoring[key] = nick
            self.watchers.setdefault(key, set()).add(user)
            return True

    def unwatch(self, user: User, nick: str) -> None:
        key = casefold(nick)
        with self.lock:
            if user.monitoring.pop(key, None) is not None:
                self._drop_watcher(key, user)

    def unwatch_all(self, user: User) -> None:
        """MONITOR C, and a connection that goes: its list leaves the index."""
        with self.lock:
            for key in user.monitoring:
                self._drop_watcher(key, user)
            user.monitoring.clear()

    def _drop_watcher(self, key: str, user: User) -> None:
        found = self.watchers.get(key)
        if found is not None:
            found.discard(user)
            if not found:
                del self.watchers[key]

    def watchers_with(self, user: User, cap: str) -> set[User]:
        """extended-monitor: who watches ``user``'s nick and asked to hear of ``cap``'s
        changes (AWAY for away-notify, SETNAME for setname, ...) (lock held)."""
        found = self.watchers.get(casefold(user.nick))
        if not found:
            return set()
        return {w for w in found if cap in w.caps and Cap.EXTENDED_MONITOR in w.caps}

    def _monitor_online(self, user: User) -> None:
        """730 to whoever watches ``user``'s nick (lock held): it came, or took the nick."""
        for w in self.watchers.get(casefold(user.nick), ()):
            w.send(_numeric(self.config.server_name, N.RPL_MONONLINE, w.nick, user.source))

    def _monitor_offline(self, nick: str) -> None:
        """731 to whoever watches ``nick`` (lock held): it left, or dropped the nick."""
        for w in self.watchers.get(casefold(nick), ()):
            w.send(_numeric(self.config.server_name, N.RPL_MONOFFLINE, w.nick, nick))

    def peers_of(self, user: User) -> set[User]:
        """Everyone sharing at least one room with ``user`` (not ``user`` itself)."""
        peers: set[User] = set()
        for chan in user.channels.values():
            peers.update(chan.members)
        peers.discard(user)
        return peers

    def registered_users(self) -> Iterable[User]:
        return (u for u in self.connections if u.registered)


def _numeric(server: str, numeric: str, *params: str) -> bytes:
    """One encoded server numeric (the registry tells watchers without a Session)."""
    return serialize(Message(numeric, params, server))
