"""What each line from the server does to the client's model: one table, command -> handler.

:meth:`ClientState.handle <chatroom.client.state.ClientState.handle>` looks a line's
command up in :data:`HANDLERS`; numerics without a row, and commands we don't know,
go to :func:`on_other`. A handler takes the state and the Message and changes the
model; it sends nothing (what to send is :mod:`chatroom.client.session`'s business).
Adding a command is one function and one row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from chatroom.client import readmarkers
from chatroom.client.formatting import strip_formatting
from chatroom.client.model import (
    CTCP,
    SERVER_KEY,
    TYPING_TAG,
    Buffer,
    BufferKind,
    EntryKind,
    Member,
    message_time,
    reaction_of,
    reply_of,
)
from chatroom.protocol import Message, Numeric, casefold, split_source

if TYPE_CHECKING:
    from chatroom.client.state import ClientState

__all__ = ["HANDLERS", "WHOX_QUERY", "WHOX_TOKEN", "Handler", "on_other"]

Handler = Callable[["ClientState", Message], None]

# IRCv3 WHOX (https://ircv3.net/specs/extensions/whox): after joining a room we ask
# ``WHO #room %tcuhnfar,<token>`` for everyone's account; 354 answers carry the token
# (so we know they are ours and not shown) and the fields in WHOX order: token,
# channel, user, host, nick, flags, account (0: none), realname.
RPL_WHOSPCRPL = "354"
WHOX_TOKEN = "745"
WHOX_QUERY = f"%tcuhnfar,{WHOX_TOKEN}"
# ISUPPORT: the file host's upload URL (https://codeberg.org/emersion/soju, doc/ext/filehost.md).
FILEHOST_TOKEN = "soju.im/FILEHOST"
# ISUPPORT values escape some bytes as \xHH (modern.ircdocs.horse, RPL_ISUPPORT).
_ISUPPORT_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")


def _ignore(state: ClientState, msg: Message) -> None:
    """Lines that change nothing we show."""


def _target_buffer(state: ClientState, msg: Message, target: str) -> Buffer:
    """Where a message to ``target`` goes: the room, or a query with the sender."""
    if state.is_channel(target):
        return state.open(target, BufferKind.CHANNEL)
    nick = msg.nick or target
    if state.is_mine(nick):
        nick = target  # our own message echoed back (echo-message)
    return state.open(nick, BufferKind.QUERY)


def _live(
    state: ClientState, buf: Buffer, kind: EntryKind, nick: str, text: str, msg: Message
) -> None:
    """A conversation line as it happens: shown once (by msgid), echoes confirmed."""
    msgid = msg.tags.get("msgid", "")
    if msgid and msgid in buf.msgids:
        return  # already here, from a history batch
    own = state.is_mine(nick)
    if own and state.echo_message and state.confirm_echo(buf, kind, text, msg):
        return
    state.stop_typing(buf, nick)
    state.add(
        buf,
        kind,
        nick,
        text,
        own=own,
        when=message_time(msg),
        msgid=msgid,
        reply_to=reply_of(msg.tags) if msg.tags else "",
    )


def _on_tagmsg(state: ClientState, msg: Message) -> None:
    """IRCv3 client tags without text: typing notices and reactions. Neither opens a
    window: they are about one that is open."""
    nick, target = msg.nick, msg.param(0)
    if not nick or "!" not in (msg.source or "") or not msg.tags:
        return
    room = target.lstrip(state.prefix_chars)  # STATUSMSG: @#room
    if state.is_channel(room):
        buf = state.buffer(room)
    else:
        buf = state.buffer(target if state.is_mine(nick) else nick)
    if buf is None:
        return
    typing = msg.tags.get(TYPING_TAG)
    if typing is not None and not state.is_mine(nick):
        state.set_typing(buf, nick, typing)
    emoji = reaction_of(msg.tags)
    parent = reply_of(msg.tags)
    if emoji and parent:
        state.react(buf, parent, emoji, nick)


def _on_redact(state: ClientState, msg: Message) -> None:
    """draft/message-redaction: ``REDACT <target> <msgid> [:reason]``. A room's, or a
    private conversation's (named by the other side, whoever of us sent it)."""
    target, msgid = msg.param(0), msg.param(1)
    if state.is_channel(target):
        buf = state.buffer(target)
    else:
        nick = msg.nick or ""
        buf = state.buffer(target if state.is_mine(nick) else nick) or state.buffer(target)
    if buf is not None and msgid:
        state.redact(buf, msgid)


def _on_markread(state: ClientState, msg: Message) -> None:
    """draft/read-marker: ``MARKREAD <target> timestamp=T`` (``*``: never read)."""
    buf = state.buffer(msg.param(0))
    when = readmarkers.parse_wire(msg.param(1))
    if (
        buf is not None
        and when is not None
        and readmarkers.apply(buf, when, buf.key == state.active)
    ):
        state.dirty_list = True
        state.dirty_entries.add(buf.key)


def _on_privmsg(state: ClientState, msg: Message) -> None:
    target, text = msg.param(0), msg.param(1)
    parts = state.chat_parts(msg)
    if parts is None:
        if text.startswith(CTCP) and "!" in (msg.source or "!"):
            command, _, rest = text.strip(CTCP).partition(" ")
            _ctcp(state, msg, command.upper(), rest)
        else:
            state.server_line(msg, text)  # a server's PRIVMSG to us
        return
    kind, nick, text = parts
    if kind is EntryKind.MESSAGE and text != msg.param(1) and state.buffer(target) is None:
        return  # the echo of a login the client sent NickServ (shown redacted): no window
    _live(state, _target_buffer(state, msg, target), kind, nick, text, msg)


def _ctcp(state: ClientState, msg: Message, command: str, rest: str) -> None:
    state.server_line(msg, f"CTCP {command} from {msg.nick}" + (f": {rest}" if rest else ""))


def _on_notice(state: ClientState, msg: Message) -> None:
    target, text = msg.param(0), msg.param(1)
    source = msg.source or ""
    if "!" not in source or target == "*" or text.startswith(CTCP):
        state.server_line(msg, strip_formatting(text).strip(CTCP))
        return
    if state.is_channel(target):
        buf = state.open(target, BufferKind.CHANNEL)
    elif state.is_mine(msg.nick):
        buf = state.buffers.get(casefold(target)) or state.active_buffer  # our echo
    else:
        buf = state.buffers.get(casefold(msg.nick or "")) or state.active_buffer
    _live(state, buf, EntryKind.NOTICE, msg.nick or "", text, msg)


def _on_join(state: ClientState, msg: Message) -> None:
    room, nick = msg.param(0), msg.nick or ""
    if len(msg.params) >= 3:  # extended-join: JOIN #room <account|*> :realname
        account = msg.param(1)
        state.set_account(nick, None if account == "*" else account)
    buf = state.open(room, BufferKind.CHANNEL)
    if state.is_mine(nick):
        buf.name = room  # the server's spelling
        buf.joined = True
        buf.members.clear()
        buf.names_pending = False
        state.dirty_list = True
    buf.members[casefold(nick)] = Member(nick)
    state.dirty_members.add(buf.key)
    state.add(buf, EntryKind.JOIN, nick, f"{nick} has joined {room}", when=message_time(msg))


def _on_part(state: ClientState, msg: Message) -> None:
    room, nick = msg.param(0), msg.nick or ""
    buf = state.buffers.get(casefold(room))
    if buf is None:
        return
    reason = msg.param(1)
    text = f"{nick} has left {buf.name}" + (f" ({strip_formatting(reason)})" if reason else "")
    _leave(state, buf, nick)
    state.add(buf, EntryKind.PART, nick, text, when=message_time(msg))


def _leave(state: ClientState, buf: Buffer, nick: str) -> None:
    buf.members.pop(casefold(nick), None)
    state.stop_typing(buf, nick)
    state.dirty_members.add(buf.key)
    if state.is_mine(nick):
        buf.joined = False
        buf.members.clear()
        state.dirty_list = True


def _on_kick(state: ClientState, msg: Message) -> None:
    room, victim, reason = msg.param(0), msg.param(1), msg.param(2)
    buf = state.buffers.get(casefold(room))
    if buf is None:
        return
    by = msg.nick or "server"
    you = "you" if state.is_mine(victim) else victim
    _leave(state, buf, victim)
    text = f"{by} has kicked {you} from {buf.name}" + (
        f" ({strip_formatting(reason)})" if reason else ""
    )
    state.add(buf, EntryKind.KICK, by, text, when=message_time(msg))


def _on_quit(state: ClientState, msg: Message) -> None:
    nick = msg.nick or ""
    folded = casefold(nick)
    reason = strip_formatting(msg.param(0))
    text = f"{nick} has quit" + (f" ({reason})" if reason else "")
    for buf in list(state.buffers.values()):
        state.stop_typing(buf, nick)
        if folded in buf.members or (buf.kind is BufferKind.QUERY and buf.key == folded):
            buf.members.pop(folded, None)
            state.dirty_members.add(buf.key)
            state.add(buf, EntryKind.QUIT, nick, text, when=message_time(msg))
    state.forget_account(nick)


def _on_nick(state: ClientState, msg: Message) -> None:
    old, new = msg.nick or "", msg.param(0)
    old_f, new_f = casefold(old), casefold(new)
    mine = state.is_mine(old)
    if old_f in state.accounts:  # the account goes with the person, not the nick
        state.accounts[new_f] = state.accounts.pop(old_f)
    if mine:
        state.nick = new
        state.dirty_list = True
    text = f"You are now known as {new}" if mine else f"{old} is now known as {new}"
    for buf in list(state.buffers.values()):
        state.stop_typing(buf, old)
        member = buf.members.pop(old_f, None)
        in_query = buf.kind is BufferKind.QUERY and buf.key == old_f
        if member is not None:
            buf.members[new_f] = Member(new, member.prefixes)
            state.dirty_members.add(buf.key)
        if old_f in buf.speakers:
            del buf.speakers[old_f]
            buf.speakers[new_f] = new
        if in_query:
            state.renamed[old_f] = (new_f, message_time(msg))
            if new_f not in state.buffers:
                _rename(state, buf, new)
        if member is not None or in_query or (mine and buf.kind is BufferKind.SERVER):
            state.add(buf, EntryKind.NICK, old, text, when=message_time(msg))


def _rename(state: ClientState, buf: Buffer, name: str) -> None:
    old_key = buf.key
    del state.buffers[old_key]
    buf.name = name
    state.buffers[buf.key] = buf
    if state.active == old_key:
        state.active = buf.key
    state.dirty_list = True


def _on_topic(state: ClientState, msg: Message) -> None:
    buf = state.open(msg.param(0), BufferKind.CHANNEL)
    buf.topic = msg.param(1)
    state.dirty_members.add(buf.key)
    text = f"{msg.nick} changed the topic to: {strip_formatting(buf.topic)}"
    state.add(buf, EntryKind.TOPIC, msg.nick, text, when=message_time(msg))


def _on_rpl_topic(state: ClientState, msg: Message) -> None:
    buf = state.open(msg.param(1), BufferKind.CHANNEL)
    buf.topic = msg.param(2)
    state.dirty_members.add(buf.key)
    state.add(buf, EntryKind.TOPIC, None, f"Topic: {strip_formatting(buf.topic)}", count=False)


def _on_rpl_notopic(state: ClientState, msg: Message) -> None:
    buf = state.buffers.get(casefold(msg.param(1)))
    if buf is not None:
        buf.topic = ""
        state.dirty_members.add(buf.key)
        state.add(buf, EntryKind.INFO, None, "No topic is set", count=False)


def _on_mode(state: ClientState, msg: Message) -> None:
    target = msg.param(0)
    if not state.is_channel(target):
        state.server_line(msg, f"Mode {' '.join(msg.params[1:])} for {target}")
        return
    buf = state.open(target, BufferKind.CHANNEL)
    modes = msg.param(1)
    args = list(msg.params[2:])
    adding = True
    for ch in modes:
        if ch in "+-":
            adding = ch == "+"
        elif ch in state.prefix_modes:
            nick = args.pop(0) if args else ""
            member = buf.members.get(casefold(nick))
            if member is not None:
                prefix = state.prefix_chars[state.prefix_modes.index(ch)]
                have = set(member.prefixes)
                (have.add if adding else have.discard)(prefix)
                member.prefixes = "".join(p for p in state.prefix_chars if p in have)
                state.dirty_members.add(buf.key)
        elif ch in "beIkl" and args and (adding or ch != "l"):
            args.pop(0)
    by = msg.nick or "server"
    text = f"{by} sets mode {' '.join(msg.params[1:])}"
    state.add(buf, EntryKind.MODE, by, text, when=message_time(msg))


def _on_account(state: ClientState, msg: Message) -> None:
    """account-notify: ``:nick!u@h ACCOUNT <account>`` logged in, ``ACCOUNT *`` out."""
    account = msg.param(0)
    state.set_account(msg.nick or "", None if account in ("", "*") else account)


def _our_nick(state: ClientState, msg: Message) -> str:
    nick = msg.param(0)
    return state.nick if nick in ("", "*") else nick


def _on_loggedin(state: ClientState, msg: Message) -> None:
    """900 <nick> <nick!user@host> <account> :You are now logged in as <account>."""
    account = msg.param(2)
    state.accounts_supported = True
    state.set_account(_our_nick(state, msg), account or None)
    state.dirty_list = True
    state.info(f"You are now logged in as {account}")


def _on_loggedout(state: ClientState, msg: Message) -> None:
    """901 <nick> <nick!user@host> :You are now logged out."""
    state.set_account(_our_nick(state, msg), None)
    state.dirty_list = True
    state.info("You are now logged out")


def _on_register(state: ClientState, msg: Message) -> None:
    """draft/account-registration: ``REGISTER SUCCESS <account> :message`` (or
    ``VERIFICATION_REQUIRED``: the server sent a code somewhere)."""
    outcome, account, text = msg.param(0), msg.param(1), strip_formatting(msg.param(-1))
    if outcome == "SUCCESS":
        state.info(f"Registered the account {account} ({text})")
    else:
        state.info(f"The account {account} needs verifying: {text}")


def _on_whox(state: ClientState, msg: Message) -> None:
    """354, a WHOX row: ours (our token) updates accounts and away flags quietly."""
    p = msg.params
    if msg.param(1) != WHOX_TOKEN or len(p) < 9:
        state.server_line(msg, " ".join(p[1:]))
        return
    room, nick, flags, account = p[2], p[5], p[6], p[7]
    state.set_account(nick, None if account == "0" else account)
    buf = state.buffers.get(casefold(room))
    member = buf.members.get(casefold(nick)) if buf is not None else None
    if buf is not None and member is not None and member.away != flags.startswith("G"):
        member.away = flags.startswith("G")
        state.dirty_members.add(buf.key)


def _on_error(state: ClientState, msg: Message) -> None:
    state.server_line(msg, f"Server: {msg.param(0)}", error=True)


def _on_invite(state: ClientState, msg: Message) -> None:
    state.add(
        state.active_buffer,
        EntryKind.INFO,
        None,
        f"{msg.nick} invites you to {msg.param(1)} (type /join {msg.param(1)})",
    )


def _on_welcome(state: ClientState, msg: Message) -> None:
    state.nick = msg.param(0, state.nick)
    state.chathistory_limit = None  # a new connection: ISUPPORT follows
    state.msgreftypes = frozenset()
    state.whox = False
    state.filehost = None
    server = state.buffers[SERVER_KEY]
    if msg.source:
        state.server_name = server.name = msg.source
    state.dirty_list = True
    state.server_line(msg, msg.param(-1))


def _on_isupport(state: ClientState, msg: Message) -> None:
    for token in msg.params[1:-1]:
        key, _, value = token.partition("=")
        if key == "PREFIX" and value.startswith("(") and ")" in value:
            modes, _, chars = value[1:].partition(")")
            if len(modes) == len(chars):
                state.prefix_modes, state.prefix_chars = modes, chars
        elif key == "CHANTYPES":
            state.chantypes = value or "#"
        elif key == "NETWORK" and value:
            state.buffers[SERVER_KEY].name = value
            state.dirty_list = True
        elif key == "CHATHISTORY":
            state.chathistory_limit = int(value) if value.isdigit() else 0
        elif key == "MSGREFTYPES":
            state.msgreftypes = frozenset(v for v in value.split(",") if v)
        elif key == "WHOX":
            state.whox = True
        elif key == FILEHOST_TOKEN:
            url = _ISUPPORT_ESCAPE.sub(lambda m: chr(int(m[1], 16)), value)
            state.filehost = url if url.lower().startswith(("http://", "https://")) else None


def _on_namreply(state: ClientState, msg: Message) -> None:
    # 353 me <=|*|@> #room :[prefixes]nick ...  (multi-prefix: several prefixes)
    buf = state.buffers.get(casefold(msg.param(2)))
    if buf is None:
        state.server_line(msg, f"Names {msg.param(2)}: {msg.param(3)}")
        return
    if not buf.names_pending:
        buf.names_pending = True
        if buf.joined:
            buf.members.clear()
    for item in msg.param(3).split():
        nick = item.lstrip(state.prefix_chars)
        prefixes = item[: len(item) - len(nick)]
        nick = split_source(nick)[0]  # userhost-in-names
        if nick:
            buf.members[casefold(nick)] = Member(nick, prefixes)
    state.dirty_members.add(buf.key)


def _on_endofnames(state: ClientState, msg: Message) -> None:
    buf = state.buffers.get(casefold(msg.param(1)))
    if buf is None:
        return
    buf.names_pending = False
    state.dirty_members.add(buf.key)
    members = buf.sorted_members(state.prefix_chars)
    ops = sum(1 for m in members if m.prefixes.startswith("@"))
    state.add(
        buf,
        EntryKind.INFO,
        None,
        f"{len(members)} in {buf.name} ({ops} op{'s' if ops != 1 else ''}): "
        + " ".join(m.prefixes[:1] + m.nick for m in members),
        count=False,
    )


def _on_away(state: ClientState, msg: Message) -> None:
    """away-notify: someone in our rooms went away (with a reason) or came back."""
    folded = casefold(msg.nick or "")
    away = bool(msg.params and msg.params[0])
    for buf in state.buffers.values():
        member = buf.members.get(folded)
        if member is not None and member.away != away:
            member.away = away
            state.dirty_members.add(buf.key)


def _on_standard_reply(state: ClientState, msg: Message) -> None:
    """IRCv3 standard replies: ``FAIL/WARN/NOTE <command> <code> [context...] :text``."""
    command, code = msg.param(0), msg.param(1)
    if command == "REDACT" and msg.command == "FAIL":
        # FAIL REDACT <code> <target> [msgid] :text -- in the window it was about
        buf = state.buffer(msg.param(2)) if len(msg.params) > 3 else None
        text = f"Could not delete the message: {msg.param(-1)} ({code})"
        state.add(buf or state.active_buffer, EntryKind.ERROR, None, text, count=False)
        return
    if command == "REGISTER" and msg.command == "FAIL":
        account = msg.param(2) if len(msg.params) > 3 and msg.param(2) != "*" else "the account"
        text = f"Could not register {account}: {msg.param(-1)} ({code})"
        if code == "ACCOUNT_EXISTS":
            text += "; if it is yours, log in instead: /login PASSWORD"
        state.info(text, error=True)
        return
    text = f"{command}: {msg.param(-1)} ({code})"
    state.info(text, error=msg.command == "FAIL")


def _on_unaway(state: ClientState, msg: Message) -> None:
    state.away = False
    state.dirty_list = True
    state.info("You are no longer marked as away")


def _on_nowaway(state: ClientState, msg: Message) -> None:
    state.away = True
    state.dirty_list = True
    state.info("You are now marked as away")


def _on_rpl_away(state: ClientState, msg: Message) -> None:
    nick = msg.param(1)
    buf = state.buffers.get(casefold(nick)) or state.active_buffer
    state.add(buf, EntryKind.INFO, None, f"{nick} is away: {msg.param(2)}", count=False)


def _on_channelmodeis(state: ClientState, msg: Message) -> None:
    buf = state.buffers.get(casefold(msg.param(1)))
    text = f"Modes of {msg.param(1)}: {' '.join(msg.params[2:])}"
    state.add(buf or state.buffers[SERVER_KEY], EntryKind.INFO, None, text, count=False)


def _on_nomotd(state: ClientState, msg: Message) -> None:
    """422: the server has no message of the day. An error numeric by number only."""
    state.server_line(msg, "No message of the day")


def _on_rpl_list(state: ClientState, msg: Message) -> None:
    room, users, topic = msg.param(1), msg.param(2), strip_formatting(msg.param(3))
    state.info(f"{room:<20} {users:>4}  {topic}")


def on_other(state: ClientState, msg: Message) -> None:
    """A line without a row: numerics (errors to where the user is, the rest to the
    server buffer), and commands we don't know (shown as they came)."""
    if not msg.command.isdigit():
        state.server_line(msg, " ".join((msg.command, *msg.params)))
        return
    text = " ".join(msg.params[1:])
    code = int(msg.command)
    if msg.command in _SEND_ERRORS:
        buf = state.buffers.get(casefold(msg.param(1)))
        if buf is not None and buf.pending:
            state.fail_pending(buf, 1)
    if 400 <= code < 600:
        state.info(_error_text(msg), error=True)
    elif 311 <= code <= 319 or code in (301, 330, 338, 378, 671, 276, 307, 320):
        state.info(_whois_text(msg))
    elif code in (321, 323, 366, 315, 368, 347):
        if code == 323:
            state.info("End of room list")
    else:
        state.server_line(msg, text)


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


HANDLERS: dict[str, Handler] = {
    "PRIVMSG": _on_privmsg,
    "NOTICE": _on_notice,
    "JOIN": _on_join,
    "PART": _on_part,
    "QUIT": _on_quit,
    "NICK": _on_nick,
    "KICK": _on_kick,
    "TOPIC": _on_topic,
    "MODE": _on_mode,
    "ERROR": _on_error,
    "INVITE": _on_invite,
    "CAP": _ignore,
    "PING": _ignore,
    "PONG": _ignore,
    "TAGMSG": _on_tagmsg,
    "REDACT": _on_redact,
    "MARKREAD": _on_markread,
    "BATCH": _ignore,  # framing; the session groups the lines
    "ACK": _ignore,  # labeled-response: a request with no reply
    "AWAY": _on_away,
    "ACCOUNT": _on_account,
    "REGISTER": _on_register,
    "FAIL": _on_standard_reply,
    "WARN": _on_standard_reply,
    "NOTE": _on_standard_reply,
    Numeric.RPL_WELCOME: _on_welcome,
    Numeric.RPL_ISUPPORT: _on_isupport,
    Numeric.RPL_TOPIC: _on_rpl_topic,
    Numeric.RPL_NOTOPIC: _on_rpl_notopic,
    Numeric.RPL_TOPICWHOTIME: _ignore,
    Numeric.RPL_NAMREPLY: _on_namreply,
    Numeric.RPL_ENDOFNAMES: _on_endofnames,
    Numeric.RPL_UNAWAY: _on_unaway,
    Numeric.RPL_NOWAWAY: _on_nowaway,
    Numeric.RPL_AWAY: _on_rpl_away,
    Numeric.RPL_CHANNELMODEIS: _on_channelmodeis,
    Numeric.RPL_CREATIONTIME: _ignore,
    Numeric.RPL_LIST: _on_rpl_list,
    Numeric.RPL_LISTSTART: _ignore,
    Numeric.RPL_ENDOFWHO: _ignore,
    Numeric.ERR_NOMOTD: _on_nomotd,  # an error by number only: no MOTD is fine
    RPL_WHOSPCRPL: _on_whox,
    Numeric.RPL_LOGGEDIN: _on_loggedin,
    Numeric.RPL_LOGGEDOUT: _on_loggedout,
    # The rest of SASL: the connection's authenticator tells the user how it went.
    Numeric.ERR_NICKLOCKED: _ignore,
    Numeric.RPL_SASLSUCCESS: _ignore,
    Numeric.ERR_SASLFAIL: _ignore,
    Numeric.ERR_SASLTOOLONG: _ignore,
    Numeric.ERR_SASLABORTED: _ignore,
    Numeric.ERR_SASLALREADY: _ignore,
    Numeric.RPL_SASLMECHS: _ignore,
}
