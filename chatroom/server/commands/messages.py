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

from chatroom.protocol import MAX_LINE_BYTES, Cap, Message, is_channel
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.commands import services
from chatroom.server.commands.accounts import is_service
from chatroom.server.records import dm_key
from chatroom.server.registry import STATUS_PREFIXES, split_status, with_bot_tag
from chatroom.server.tags import stamp

if TYPE_CHECKING:
    from chatroom.server.session import Session

# Looked up for every message: a module global costs a fraction of an Enum attribute.
_MESSAGE_TAGS, _ECHO_MESSAGE = Cap.MESSAGE_TAGS, Cap.ECHO_MESSAGE
_ALL_TAGS = T.ALL_TAGS
# What a relayed PRIVMSG/NOTICE adds to its source, command, target and text:
# ':' and ' ' around the source, ' ' and ' :' around the target, and the CR-LF.
_RELAY_FRAMING = 7
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
    room = MAX_LINE_BYTES - len(user.source) - len(msg.command) - len(text.encode())
    room -= _RELAY_FRAMING
    user.last_spoke = time.monotonic()
    for target in targets:
        # Look up and encode outside the registry lock; hold it only to check the
        # right to speak, fix the message's place and post it (short, uncontended).
        # STATUSMSG: "@#room" reaches its operators, "+#room" its voiced and operators
        prefix, name = split_status(target)
        if is_channel(name):
            chan = reg.find_channel(name)
            if chan is None:
                error(N.ERR_NOSUCHCHANNEL, target, "No such channel")
                continue
            shown = prefix + chan.name  # relayed with the target as sent
            if len(shown.encode()) > room:
                s.reply(N.ERR_INPUTTOOLONG, "Input line was too long")
                continue
            out = Message(msg.command, (shown,) if tagmsg else (shown, text), user.source)
            time_ms, msgid, variants = stamp(out, with_bot_tag(user, client_tags), user.account)
            # history is for everyone in the room: not a STATUSMSG
            history = None if prefix or not keep else (chan.folded, chan.name)
            with reg.lock:
                if reg.channels.get(chan.folded) is not chan or not chan.visible_to(user):
                    error(N.ERR_NOSUCHCHANNEL, shown, "No such channel")
                    continue
                if not chan.can_speak(user):
                    error(N.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel")
                    continue
                sinks = (
                    chan.sinks_of_status("".join(STATUS_PREFIXES[p] for p in prefix))
                    if prefix
                    else chan.sinks
                )
                # Only clients that speak message-tags can see a TAGMSG: the others'
                # encodings are empty, which the writer skips. (A filtered tuple of
                # sinks per TAGMSG would be a new fan-out group each time, churning
                # the writer's cache of the room's groups.)
                s.post(
                    sinks,
                    _tags_only(variants) if tagmsg else variants,
                    user.conn,
                    s.record(out, time_ms, msgid, client_tags, history),
                )
                reg.stats.messages += 1  # under the lock: no update lost (stats.py)
        else:
            if reg.accounts is not None and is_service(target):
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
