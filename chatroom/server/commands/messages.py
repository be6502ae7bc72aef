"""Message commands: PRIVMSG NOTICE TAGMSG, the hot path of the server.

Every chat line comes through :func:`_message`, so the common case (one target, no
tags) does no work it does not need: the line is looked up and encoded outside the
registry lock, which is held only to check the right to speak, fix the message's
place (its history id) and post it once for the whole room.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from chatroom.protocol import (
    CHANNEL_PREFIXES,
    MAX_LINE_BYTES,
    Cap,
    Message,
    is_channel,
    serialize,
)
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.commands import accounts as A  # a module: an import cycle via session
from chatroom.server.commands import services
from chatroom.server.records import NO_TAGS, StoredMessage, dm_key
from chatroom.server.registry import STATUS_PREFIXES, split_status, with_bot_tag
from chatroom.server.tags import stamp_body

if TYPE_CHECKING:
    from chatroom.server.session import Session

# Looked up for every message: a module global costs a fraction of an Enum attribute.
_MESSAGE_TAGS, _ECHO_MESSAGE = Cap.MESSAGE_TAGS, Cap.ECHO_MESSAGE
_ALL_TAGS = T.ALL_TAGS
# What a relayed PRIVMSG/NOTICE adds to its source, command, target and text:
# ':' and ' ' around the source, ' ' and ' :' around the target, and the CR-LF.
_RELAY_FRAMING = 7
# room_line: the bytes a room's name may start with; the longest line parse() takes
# (its CR-LF aside); each relayed command with the spaces around it.
_ROOM_FIRST = frozenset(CHANNEL_PREFIXES.encode())
_MAX_BODY = MAX_LINE_BYTES - 2
_SPACED = {c: f" {c} ".encode() for c in ("PRIVMSG", "NOTICE")}
# A StoredMessage made without its Python-level __new__ (tuple's own, in C), as
# outbox.py makes its Multicasts: one is made for every line kept.
_tuple_new = tuple.__new__
# A TAGMSG is kept in history (and replayed to clients of draft/event-playback) when it
# carries one of these: a reaction, or a client's request to keep it (+draft/persist, as
# in Ergo's tagmsg-storage list). Anything else, +typing above all, is never stored.
KEPT_TAGMSG_TAGS = frozenset({"+draft/react", "+react", "+draft/persist", "+persist"})


def _tags_only(variants: T.Variants) -> T.Variants:
    """A TAGMSG's encodings: none for the clients that do not speak message-tags."""
    return (b"", b"", variants[_ALL_TAGS], b"", b"", variants[_ALL_TAGS + T.WITH_ACCOUNT])


def privmsg(s: Session, msg: Message) -> None:
    _message(s, msg, notice=False)


def notice(s: Session, msg: Message) -> None:
    _message(s, msg, notice=True)


def tagmsg(s: Session, msg: Message) -> None:
    _message(s, msg, notice=True, tagmsg=True)


def _message(s: Session, msg: Message, notice: bool, tagmsg: bool = False) -> None:
    def error(numeric: str, *params: str) -> None:
        # RFC 2812 3.3.2: NOTICE never triggers automatic replies, errors included.
        if not notice:
            s.reply(numeric, *params)

    params = msg.params
    if not params or not params[0]:
        return error(N.ERR_NORECIPIENT, f"No recipient given ({msg.command})")
    if not tagmsg and (len(params) < 2 or not params[1]):
        return error(N.ERR_NOTEXTTOSEND, "No text to send")
    if "," in params[0]:
        given = [t for t in params[0].split(",") if t]
        if not given:
            return error(N.ERR_NORECIPIENT, f"No recipient given ({msg.command})")
        if len(given) > s.cfg.maxtargets:
            return error(N.ERR_TOOMANYTARGETS, params[0], "Too many recipients")
        targets: Iterable[str] = dict.fromkeys(given)  # "#a,#a" delivers once
    else:
        targets = (params[0],)
    user, reg = s.user, s.reg
    text = params[1] if not tagmsg else ""
    client_tags = (
        {k: v for k, v in msg.tags.items() if k[0] == "+"}
        if msg.tags and _MESSAGE_TAGS in user.caps
        else None
    )
    keep = True  # kept in history (a room's or a private conversation's)
    if tagmsg:
        if not client_tags:
            return  # nothing to relay
        keep = not KEPT_TAGMSG_TAGS.isdisjoint(client_tags)
    echo = _ECHO_MESSAGE in user.caps
    # The relayed line must fit in 512 bytes with our source prefix too, or some of
    # its receivers would cut it: refused with 417 (like Ergo without allow-truncation),
    # so the sender knows, rather than delivered and stored cut short.
    data = text.encode()
    room = MAX_LINE_BYTES - len(user.source) - len(msg.command) - len(data) - _RELAY_FRAMING
    user.last_spoke = time.monotonic()
    for target in targets:
        # STATUSMSG: "@#room" reaches its operators, "+#room" its voiced and operators
        prefix, name = split_status(target)
        if is_channel(name):
            variants = _to_room(s, msg.command, prefix, name, text, data, client_tags, keep)
            if variants is None:
                continue
        else:
            if reg.accounts is not None and A.is_service(target):
                if not notice and not tagmsg:  # a NOTICE to a service is dropped
                    services.dispatch(s, target, text)
                continue
            with reg.lock:
                peer = reg.find_user(target)
                if peer is None:
                    error(N.ERR_NOSUCHNICK, target, "No such nick/channel")
                    continue
                if len(peer.nick) > room:
                    s.reply(N.ERR_INPUTTOOLONG, "Input line was too long")
                    continue
                out = Message(
                    msg.command, (peer.nick,) if tagmsg else (peer.nick, text), user.source
                )
                # keyed by who both sides are: accounts, or nicks for this connection
                history = (dm_key(user.identity, peer.identity), peer.nick) if keep else None
                sinks = (peer.conn,)
                if tagmsg and not T.has_all_tags(getattr(peer.conn, "variant", 0)):
                    sinks = ()
                variants = s.relay_sinks(sinks, out, user.conn, client_tags, history)
                reg.stats.messages += 1
                if peer is user and sinks:
                    # delivered like anyone's message (RFC 2812), apart from its echo:
                    # only the echo may carry a label (labeled-response)
                    s.multicast(variants, sinks)
                if peer.away is not None:
                    error(N.RPL_AWAY, peer.nick, peer.away)
        if echo:
            s.out(variants[s.variant])


def room_line(s: Session, raw: bytes) -> bool:
    """``PRIVMSG #room :text`` (or NOTICE) without tags, from a registered client: by
    far the commonest line, relayed here without the general parse and dispatch
    (Session.handle_line offers every line starting so). False for anything else, and
    for anything parse() would refuse: the general path then answers it as always."""
    notice = raw[0] == 78  # "N"
    start = 7 if notice else 8
    end = raw.find(b" :", start)
    if end <= start or raw[start] not in _ROOM_FIRST or len(raw) > _MAX_BODY:
        return False
    target = raw[start:end]
    if b" " in target or b"," in target or b"\0" in raw or b"\r" in raw:
        return False
    data = raw[end + 2 :]
    try:
        name = target.decode()
        text = data.decode()
    except UnicodeDecodeError:
        return False
    if not text:
        return False
    user = s.user
    user.last_spoke = time.monotonic()
    variants = _to_room(s, "NOTICE" if notice else "PRIVMSG", "", name, text, data, None, True)
    if variants is not None and _ECHO_MESSAGE in user.caps:
        s.out(variants[s.variant])
    return True


def _to_room(
    s: Session,
    command: str,
    prefix: str,
    name: str,
    text: str,
    data: bytes,
    client_tags: dict[str, str] | None,
    keep: bool,
) -> T.Variants | None:
    """Relay a line to room ``name`` (``prefix``: STATUSMSG, to its operators or voiced);
    its encodings, or None when refused (the sender is told, unless it was a NOTICE or
    TAGMSG: RFC 2812 3.3.2). ``data`` is ``text`` encoded.

    Looked up and encoded outside the registry lock; the lock is held only to check the
    right to speak, fix the message's place (its history id) and post it once for the
    whole room (short, uncontended)."""
    reg, user = s.reg, s.user
    quiet = command != "PRIVMSG"
    chan = reg.find_channel(name)
    if chan is None:
        if not quiet:
            s.reply(N.ERR_NOSUCHCHANNEL, prefix + name, "No such channel")
        return None
    shown = prefix + chan.name  # relayed with the target as sent
    target = shown.encode()
    source = user.source
    # the relayed line must fit in 512 bytes with our source prefix (see _message)
    if len(source) + len(command) + len(target) + len(data) + _RELAY_FRAMING > MAX_LINE_BYTES:
        s.reply(N.ERR_INPUTTOOLONG, "Input line was too long")
        return None
    tagmsg = command == "TAGMSG"
    if tagmsg:
        body = serialize(Message(command, (shown,), source))
    else:
        # what serialize() makes of it, built directly: the text comes from a parsed
        # line (no NUL, CR or LF), the room's name and the source were checked on entry
        body = b":" + source.encode() + _SPACED[command] + target + b" :" + data + b"\r\n"
    time_ms, msgid, variants = stamp_body(body, with_bot_tag(user, client_tags), user.account)
    # history is for everyone in the room: not a STATUSMSG
    kept = keep and not prefix and s.history is not None
    with reg.lock:
        if reg.channels.get(chan.folded) is not chan or not chan.visible_to(user):
            if not quiet:
                s.reply(N.ERR_NOSUCHCHANNEL, shown, "No such channel")
            return None
        if not chan.can_speak(user):
            if not quiet:
                s.reply(N.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel")
            return None
        sinks = (
            chan.sinks_of_status("".join(STATUS_PREFIXES[p] for p in prefix))
            if prefix
            else chan.sinks
        )
        record = (
            _tuple_new(
                StoredMessage,
                (
                    reg.next_message_id(time_ms),
                    msgid,
                    time_ms,
                    chan.folded,
                    chan.name,
                    source,
                    command,
                    text,
                    client_tags or NO_TAGS,
                ),
            )
            if kept
            else None
        )
        # Only clients that speak message-tags can see a TAGMSG: the others'
        # encodings are empty, which the writer skips. (A filtered tuple of sinks
        # per TAGMSG would be a new fan-out group each time, churning the writer's
        # cache of the room's groups.)
        posted = _tags_only(variants) if tagmsg else variants
        if s._capture is None:  # the usual case: Session.post less its labeled-response part
            s.multicast(posted, sinks, user.conn, record)
        else:
            s.post(sinks, posted, user.conn, record)
        reg.stats.messages += 1  # under the lock: no update lost (stats.py)
    return variants
