"""What the client knows: rooms, queries, members, topics, backlogs and unread counts.

Sans-IO like the protocol module: :meth:`ClientState.handle` takes a parsed
:class:`~chatroom.protocol.Message` and updates the model (through the table in
:mod:`chatroom.client.handlers`); the UI reads the model and the ``dirty`` sets to
repaint only what changed. No sockets, no widgets, no Textual. The types it holds are
in :mod:`chatroom.client.model`; every dict of nicks or rooms is keyed by
:func:`~chatroom.protocol.casefold`.

Accounts too: who is logged in (from extended-join, account-notify, account-tag, WHOX
and 900/901 for ourselves), so lines and member lists can mark nicks (:class:`Ident`).

History (IRCv3 chathistory) lands here too: :meth:`ClientState.insert_history` puts
old lines into a backlog at a given place, dropping any whose msgid is already there.

And what people do to lines (IRCv3 client tags and message-redaction): replies quote
their parent (:attr:`Entry.quote`), reactions gather under their message, a deleted
message reads "(message deleted)", and who is typing is kept per buffer until their
notice expires (:data:`TYPING_TIMEOUT`, on the state's ``clock``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from chatroom.client.auth import redact_service_text
from chatroom.client.formatting import contains_mention, strip_formatting
from chatroom.client.handlers import HANDLERS, on_other
from chatroom.client.model import (
    BACKLOG_LINES,
    BACKLOG_TRIM,
    CHAT_KINDS,
    CTCP,
    DEFAULT_PREFIX,
    MAX_REACTIONS,
    REACT_TAGS,
    RECENT_SPEAKERS,
    SERVER_KEY,
    SYSTEM_KINDS,
    Alert,
    Buffer,
    BufferKind,
    Entry,
    EntryKind,
    Ident,
    Inserted,
    Reaction,
    message_time,
    parse_time,
    quote_of,
    reaction_of,
    reply_of,
)
from chatroom.protocol import Message, casefold
from chatroom.protocol import is_channel as protocol_is_channel

__all__ = ["ORPHAN_REACTIONS", "TYPING_TIMEOUT", "ClientState"]

# A typing notice shows this long without news (IRCv3 typing: senders repeat
# "active" at most every 3 s, receivers drop it after 6 s).
TYPING_TIMEOUT = 6.0
# Messages (per buffer) whose reactions arrived before them and are kept for them:
# history pages come newest first, so a reaction can come before its message.
ORPHAN_REACTIONS = 500

# Lines whose account-tag (or its absence) says whether the sender is logged in now.
# Only these: a server may tag fewer kinds of line than the spec's "all".
_ACCOUNT_TAGGED = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})
_REACT_TAG_KEYS = frozenset(REACT_TAGS)


class ClientState:
    """The client's model of the IRC world, fed with Messages from the server.

    ``dirty_entries`` holds keys of buffers with new lines, ``dirty_members`` those
    whose member lists or topics changed, ``dirty_list`` says the room list (names,
    counts) changed, and ``alerts`` collects mentions/private messages for the UI to
    announce. The UI clears them after painting. ``opened`` lists buffers created since
    the session last looked (a new private conversation wants its history fetched).

    With ``echo_message`` (the IRCv3 capability) our own lines are shown as pending
    until the server's copy comes back and confirms them (with its time and msgid).

    ``accounts`` maps nicks (casefolded) to the account they are logged in to (None:
    not logged in), for as long as we can follow them; ``known_accounts`` are the
    accounts seen logged in this session, which a nick not logged in to may not pass
    for (:meth:`identity`). Our own is :attr:`account`.
    """

    def __init__(
        self,
        nick: str,
        server_name: str = "server",
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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
        # Private conversations whose peer changed nick while we watched: old nick ->
        # (new nick, when), nicks casefolded. The server files private messages under
        # the nicks they were sent with, so its history still names the old one.
        self.renamed: dict[str, tuple[str, datetime]] = {}
        self.accounts: dict[str, str | None] = {}
        self.known_accounts: set[str] = set()
        # IRCv3 account-tag is on: a user's line without the tag means "not logged in".
        self.account_tag = False
        # The server has accounts (the status line then says whether we are logged in).
        self.accounts_supported = False
        self.whox = False  # ISUPPORT WHOX: WHO tells accounts
        # ISUPPORT soju.im/FILEHOST: where files are uploaded (None: no file host).
        self.filehost: str | None = None
        self.dirty_entries: set[str] = set()
        self.dirty_members: set[str] = set()
        self.dirty_list = True
        self.alerts: list[Alert] = []
        self.clock = clock
        self.typing_timeout = TYPING_TIMEOUT
        self._seq = 0

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

    # --- accounts --------------------------------------------------------------------------

    @property
    def account(self) -> str | None:
        """The account we are logged in to; None when we are not (or don't know)."""
        return self.accounts.get(casefold(self.nick))

    def account_of(self, nick: str) -> str | None:
        """The account ``nick`` is logged in to, as far as we know."""
        return self.accounts.get(casefold(nick))

    def set_account(self, nick: str, account: str | None) -> None:
        """``nick`` is logged in to ``account`` now (None: not logged in)."""
        folded = casefold(nick)
        if account:
            self.known_accounts.add(casefold(account))
            self.accounts_supported = True
        if folded in self.accounts and self.accounts[folded] == account:
            return
        self.accounts[folded] = account
        for buf in self.buffers.values():
            if folded in buf.members:
                self.dirty_members.add(buf.key)

    def forget_account(self, nick: str) -> None:
        """``nick`` is gone (quit): whoever takes the nick next is someone new."""
        self.accounts.pop(casefold(nick), None)

    def ident_for(self, nick: str, account: str | None) -> Ident:
        """How to mark ``nick`` when logged in to ``account`` (None: not logged in).

        >>> state = ClientState("me")
        >>> state.ident_for("alice", None), state.ident_for("alice", "alice")
        (<Ident.NONE: ''>, <Ident.VERIFIED: 'verified'>)
        >>> state.set_account("alice", "Alice")
        >>> state.ident_for("alice", None), state.ident_for("ALICE", "mallory")
        (<Ident.UNVERIFIED: 'unverified'>, <Ident.UNVERIFIED: 'unverified'>)
        """
        folded = casefold(nick)
        if account and casefold(account) == folded:
            return Ident.VERIFIED
        if folded in self.known_accounts:
            return Ident.UNVERIFIED  # someone else's account name, not logged in to it
        return Ident.VERIFIED if account else Ident.NONE

    def identity(self, nick: str) -> Ident:
        """How to mark ``nick`` now."""
        return self.ident_for(nick, self.accounts.get(casefold(nick)))

    def renamed_since(self, nick: str, when: datetime) -> bool:
        """True when our private window with ``nick`` became another nick's at or after
        ``when``: lines with ``nick`` up to then are in that window already."""
        renamed = self.renamed.get(casefold(nick))
        return renamed is not None and when <= renamed[1]

    def is_op(self, buf: Buffer) -> bool:
        """True when we are an operator of room ``buf`` (``@``, or a higher prefix)."""
        member = buf.members.get(casefold(self.nick))
        if member is None or not member.prefixes:
            return False
        chars = self.prefix_chars
        op = chars.index("@") if "@" in chars else 0
        top = member.prefixes[0]
        return top in chars and chars.index(top) <= op

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
            buf.awaiting.clear()
            buf.orphan_reactions.clear()
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
        reply_to: str = "",
    ) -> Entry:
        """Append a line to ``buf``; counts it as unread (and alerts) if not in view.
        ``reply_to``: the msgid of the message it answers."""
        self._seq += 1
        mention = self._is_mention(buf, kind, nick, text, own)
        entry = Entry(
            when or parse_time(None),
            kind,
            nick,
            text,
            own,
            mention,
            self._seq,
            msgid,
            pending,
            ident=self.identity(nick) if nick and kind in CHAT_KINDS else Ident.NONE,
            reply_to=reply_to,
            quote=self._quote(buf, reply_to, self._seq),
        )
        self._append(buf, entry)
        if msgid:
            self._arrived(buf, len(buf.entries) - 1)
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

    def own_message(
        self, target: str, text: str, *, action: bool = False, reply_to: str = ""
    ) -> Entry:
        """Show a line we sent at once; pending until its echo when the server echoes.

        Without echo-message this is the only copy we will ever see. With it the
        server's echo replaces the pending line in place (see :meth:`confirm_echo`), so
        the input still feels instant while the log shows what the server accepted.
        """
        buf = self.open(target)
        kind = EntryKind.ACTION if action else EntryKind.MESSAGE
        text = redact_service_text(target, text)  # IDENTIFY's password is never shown
        entry = self.add(
            buf, kind, self.nick, text, own=True, pending=self.echo_message, reply_to=reply_to
        )
        if self.echo_message:
            buf.pending.append(entry.seq)
        return entry

    def confirm_echo(self, buf: Buffer, kind: EntryKind, text: str, msg: Message) -> bool:
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
            old, kind=kind, text=text, time=message_time(msg), msgid=msgid, pending=False
        )
        if msgid:
            buf.msgids.add(msgid)
            self._arrived(buf, index)
        buf.touched.add(seq)
        self.dirty_entries.add(buf.key)
        return True

    def fail_pending(self, buf: Buffer, count: int | None = None) -> None:
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
        self.accounts.clear()
        for buf in self.buffers.values():
            buf.typing.clear()  # nobody is typing to us now
            if buf.pending:
                self.fail_pending(buf)
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
        parts = self.chat_parts(msg)
        if parts is None:
            return None
        kind, nick, text = parts
        own = self.is_mine(nick)
        self._seq += 1
        # Only a tag says who it was back then (servers may not keep the tags: no mark).
        account = msg.tags.get("account")
        return Entry(
            message_time(msg),
            kind,
            nick,
            text,
            own,
            self._is_mention(buf, kind, nick, text, own),
            self._seq,
            msg.tags.get("msgid", ""),
            history=True,
            ident=self.ident_for(nick, account) if account else Ident.NONE,
            reply_to=reply_of(msg.tags),
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
            self._link_history(buf, fresh)
        if len(buf.entries) > BACKLOG_LINES + BACKLOG_TRIM:
            self._trim(buf)
        return Inserted(len(fresh), duplicates, fresh[-1].seq if fresh else None)

    def note(self, buf: Buffer, text: str, after_seq: int | None) -> None:
        """A client info line placed after line ``after_seq`` (where a gap is)."""
        self._seq += 1
        entry = Entry(parse_time(None), EntryKind.INFO, None, text, seq=self._seq)
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

    def history_events(self, buf: Buffer, messages: Iterable[Message]) -> None:
        """The events of a history batch (draft/event-playback) that change lines
        already filed: reactions (TAGMSG) to the messages they answer."""
        for msg in messages:
            if msg.command == "TAGMSG" and msg.nick and not _REACT_TAG_KEYS.isdisjoint(msg.tags):
                emoji, parent = reaction_of(msg.tags), reply_of(msg.tags)
                if emoji and parent:
                    self.react(buf, parent, emoji, msg.nick)

    # --- replies, reactions, deletions ----------------------------------------------------

    def _quote(self, buf: Buffer, parent: str, seq: int) -> str:
        """The quote a reply (line ``seq``) shows of ``parent``; "" while it is not
        loaded (the reply then waits for it in ``buf.awaiting``)."""
        if not parent:
            return ""
        index = buf.find(parent)
        if index is None:
            buf.awaiting.setdefault(parent, set()).add(seq)
            return ""
        return quote_of(buf.entries[index])

    def _replace(self, buf: Buffer, index: int, **changes: object) -> Entry:
        """Change line ``index`` in place; views redraw it."""
        entry = replace(buf.entries[index], **changes)  # type: ignore[arg-type]
        buf.entries[index] = entry
        buf.touched.add(entry.seq)
        self.dirty_entries.add(buf.key)
        return entry

    def _arrived(self, buf: Buffer, index: int) -> None:
        """Line ``index`` (with a msgid) is loaded now: replies waiting for it quote it,
        reactions that came before it gather under it."""
        entry = buf.entries[index]
        waiting = buf.awaiting.pop(entry.msgid, None)
        if waiting:
            quote = quote_of(entry)
            for i, other in enumerate(buf.entries):
                if other.seq in waiting:
                    self._replace(buf, i, quote=quote)
        for emoji, nick, own in buf.orphan_reactions.pop(entry.msgid, ()):
            self._add_reaction(buf, index, emoji, nick, own)

    def _link_history(self, buf: Buffer, fresh: list[Entry]) -> None:
        """Fetched lines are in: quote parents, resolve waiting replies and reactions."""
        replies = any(e.reply_to for e in fresh)
        waited = any(e.msgid and e.msgid in buf.awaiting for e in fresh)
        orphans = bool(buf.orphan_reactions) and any(e.msgid in buf.orphan_reactions for e in fresh)
        if not (replies or waited or orphans):
            return
        fresh_seqs = {e.seq for e in fresh}
        positions = {e.msgid: i for i, e in enumerate(buf.entries) if e.msgid}
        for i, entry in enumerate(buf.entries):
            if entry.seq not in fresh_seqs:
                continue
            if entry.reply_to and not entry.quote:
                parent = positions.get(entry.reply_to)
                if parent is None:
                    buf.awaiting.setdefault(entry.reply_to, set()).add(entry.seq)
                else:
                    self._replace(buf, i, quote=quote_of(buf.entries[parent]))
            if entry.msgid and (entry.msgid in buf.awaiting or entry.msgid in buf.orphan_reactions):
                self._arrived(buf, i)

    def react(self, buf: Buffer, msgid: str, emoji: str, nick: str) -> None:
        """``nick`` reacted to the message ``msgid`` with ``emoji`` (once per nick)."""
        own = self.is_mine(nick)
        index = buf.find(msgid)
        if index is not None:
            self._add_reaction(buf, index, emoji, nick, own)
            return
        kept = buf.orphan_reactions.get(msgid)
        if kept is None:
            kept = buf.orphan_reactions[msgid] = []
            while len(buf.orphan_reactions) > ORPHAN_REACTIONS:
                buf.orphan_reactions.popitem(last=False)
        if len(kept) < MAX_REACTIONS * 4:
            kept.append((emoji, nick, own))

    def _add_reaction(self, buf: Buffer, index: int, emoji: str, nick: str, own: bool) -> None:
        entry = buf.entries[index]
        if entry.deleted or entry.kind not in CHAT_KINDS:
            return
        folded = casefold(nick)
        reactions = list(entry.reactions)
        for i, reaction in enumerate(reactions):
            if reaction.emoji == emoji:
                if folded in reaction.nicks:
                    return  # the same person twice counts once
                reactions[i] = Reaction(emoji, (*reaction.nicks, folded), reaction.mine or own)
                break
        else:
            if len(reactions) >= MAX_REACTIONS:
                return
            reactions.append(Reaction(emoji, (folded,), own))
        self._replace(buf, index, reactions=tuple(reactions))

    def redact(self, buf: Buffer, msgid: str) -> bool:
        """The message ``msgid`` was deleted: it reads "(message deleted)" from now on
        (its time and sender stay), and so do the quotes of its replies."""
        buf.orphan_reactions.pop(msgid, None)
        index = buf.find(msgid)
        if index is None:
            return False
        entry = self._replace(buf, index, text="", deleted=True, reactions=(), mention=False)
        quote = quote_of(entry)
        for i, other in enumerate(buf.entries):
            if other.reply_to == msgid:
                self._replace(buf, i, quote=quote)
        return True

    # --- typing -------------------------------------------------------------------------------

    def set_typing(self, buf: Buffer, nick: str, status: str) -> None:
        """``nick`` is typing in ``buf`` (``active``), or stopped (``paused``, ``done``)."""
        folded = casefold(nick)
        if status == "active":
            buf.typing[folded] = (nick, self.clock() + self.typing_timeout)
        else:
            buf.typing.pop(folded, None)

    def stop_typing(self, buf: Buffer, nick: str) -> None:
        """``nick`` said something, or left: no longer typing here."""
        if buf.typing:
            buf.typing.pop(casefold(nick), None)

    def typing_nicks(self, buf: Buffer) -> list[str]:
        """Who is typing in ``buf`` now, in the order they started."""
        now = self.clock()
        return [nick for nick, until in buf.typing.values() if until > now]

    def expire_typing(self) -> bool:
        """Forget typing notices past their time; True when one was shown here."""
        now = self.clock()
        changed = False
        for buf in self.buffers.values():
            for folded, (_, until) in list(buf.typing.items()):
                if until <= now:
                    del buf.typing[folded]
                    changed = changed or buf.key == self.active
        return changed

    # --- server messages -----------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Apply one server message to the model: its row of the table in
        :mod:`chatroom.client.handlers`, or the fallback for numerics and the unknown.
        With account-tag, a user's line also says whether they are logged in."""
        if self.account_tag and msg.command in _ACCOUNT_TAGGED:
            source = msg.source or ""
            if "!" in source:
                self.set_account(source.partition("!")[0], msg.tags.get("account") or None)
        HANDLERS.get(msg.command, on_other)(self, msg)

    def server_line(self, msg: Message, text: str, *, error: bool = False) -> None:
        """A line for the server buffer, at ``msg``'s time."""
        kind = EntryKind.ERROR if error else EntryKind.INFO
        self.add(self.buffers[SERVER_KEY], kind, None, text, when=message_time(msg), count=False)

    def chat_parts(self, msg: Message) -> tuple[EntryKind, str, str] | None:
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
        if self.is_mine(nick):
            text = redact_service_text(msg.param(0), text)  # our IDENTIFY, echoed
        return EntryKind.MESSAGE, nick, text
