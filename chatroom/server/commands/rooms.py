"""Room commands: JOIN PART NAMES TOPIC LIST KICK INVITE.

Who may do what is the Channel's to say (registry.py); these handlers ask it under
the registry lock, relay the result to the room, and give the RFC numerics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from chatroom.protocol import (
    Cap,
    Message,
    casefold,
    is_valid_channel,
    mask_matcher,
    parse_int,
)
from chatroom.protocol import Numeric as N
from chatroom.server.commands.history import events, send_history
from chatroom.server.commands.readmarker import join_marker
from chatroom.server.records import (
    AccountStoreError,
    HistoryReadError,
    RoomRegistration,
    RoomState,
)
from chatroom.server.registry import Channel, sinks_with
from chatroom.server.session import INT32_MAX, IRCError
from chatroom.server.text import truncate_utf8

if TYPE_CHECKING:
    from chatroom.server.session import Session

# Room names in a NAMES reply are split so each line stays within 512 bytes.
NAMES_LINE_BUDGET = 400
# The mode that keeps someone out of a room (Channel.join_refused): reply and text.
JOIN_REFUSALS = {
    "i": (N.ERR_INVITEONLYCHAN, "Cannot join channel (+i)"),
    "k": (N.ERR_BADCHANNELKEY, "Cannot join channel (+k)"),
    "l": (N.ERR_CHANNELISFULL, "Cannot join channel (+l)"),
    "b": (N.ERR_BANNEDFROMCHAN, "Cannot join channel (+b)"),
}


def join(s: Session, msg: Message) -> None:
    if msg.params[0] == "0":
        for chan in list(s.user.channels.values()):
            _part(s, chan.name, None)
        return
    names = msg.params[0].split(",")
    keys = msg.param(1).split(",") if len(msg.params) > 1 else []
    for i, name in enumerate(names):
        if not name:
            continue
        try:
            _join(s, name, keys[i] if i < len(keys) else None)
        except IRCError as e:
            s.reply(e.numeric, *e.params)


def _join(s: Session, name: str, key: str | None) -> None:
    if not is_valid_channel(name, s.cfg.channellen):
        raise IRCError(N.ERR_NOSUCHCHANNEL, name, "No such channel")
    user, reg, history = s.user, s.reg, s.history
    folded = casefold(name)
    marker = join_marker(s, name)  # draft/read-marker: read before the lock
    saved: RoomState | None = None
    registration: RoomRegistration | None = None
    if reg.find_channel(name) is None:  # read what the database keeps before locking
        if history is not None:
            try:
                saved = history.room_state(folded)
            except HistoryReadError:
                saved = None  # logged by the store; the room starts afresh
            if saved is not None and not saved.created:
                saved = None  # it emptied: nothing of that room comes back
        if reg.accounts is not None:
            try:
                registration = reg.accounts.room(folded)
            except AccountStoreError:  # logged; in doubt, nobody is made its operator
                registration = UNKNOWN_REGISTRATION
    with reg.lock:
        chan = reg.find_channel(name)
        if chan is not None and chan.is_member(user):
            return
        if len(user.channels) >= s.cfg.chanlimit:
            raise IRCError(N.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
        if chan is None:
            # A new room, or one brought back from the database after a restart, with
            # its topic, modes and key. The key still guards it, and a registered
            # room's bans and +i with its +I masks; +l needs members to mean anything.
            # An unregistered room's first to return gets in (and is operator).
            if saved is not None and saved.room_key is not None and key != saved.room_key:
                raise IRCError(N.ERR_BADCHANNELKEY, saved.name, "Cannot join channel (+k)")
            chan = reg.build_room(name, saved, registration)
            if registration is not None and registration is not UNKNOWN_REGISTRATION:
                refused = chan.join_refused(user, key)
                if refused is not None:
                    numeric, text = JOIN_REFUSALS[refused]
                    raise IRCError(numeric, chan.name, text)
            reg.open_room(chan, user, saved is not None)
            if chan.registration is UNKNOWN_REGISTRATION:  # nobody was made operator
                chan.registration = None
        else:
            refused = chan.join_refused(user, key)
            if refused is not None:
                numeric, text = JOIN_REFUSALS[refused]
                raise IRCError(numeric, chan.name, text)
            reg.join(user, chan)
        relay_join(s, chan)
        if marker is not None:
            s.send(Message.of("MARKREAD", chan.name, marker, source=s.server))
        if user.away is not None:
            s.relay_sinks(
                sinks_with(chan.members, Cap.AWAY_NOTIFY, user),
                Message.of("AWAY", user.away, source=user.source),
            )
        if chan.topic:
            topic_reply(s, chan)
        send_names(s, chan)
        point = reg.last_message_id
    if history is not None and s.cfg.playback_lines > 0 and Cap.DRAFT_CHATHISTORY not in user.caps:
        history.wait_committed(point)
        try:
            rows = history.window(
                folded, chan.history_from, point + 1, s.cfg.playback_lines, True, events(s)
            )
        except HistoryReadError:
            s.notice(f"*** The history of {chan.name} cannot be read just now")
            return
        if rows:  # nothing to replay: no empty batch on every JOIN
            send_history(s, chan.name, rows, mark=True)


# Stands in for a room's registration when it cannot be read (a failing database): the
# room is treated as registered to no one, so nobody gets operator status by joining.
UNKNOWN_REGISTRATION = RoomRegistration("", "", 0.0, {}, [])


def relay_join(s: Session, chan: Channel) -> None:
    """JOIN to the room; clients of extended-join also learn the account and realname."""
    user = s.user
    extended = sinks_with(chan.members, Cap.EXTENDED_JOIN)
    if not extended:
        s.relay_channel(chan, Message.of("JOIN", chan.name, source=user.source))
        return
    others = tuple(u.conn for u in chan.members if Cap.EXTENDED_JOIN not in u.caps)
    if others:
        s.relay_sinks(others, Message.of("JOIN", chan.name, source=user.source))
    long_form = Message.of(
        "JOIN", chan.name, user.account or "*", user.realname, source=user.source
    )
    s.relay_sinks(extended, long_form)


def part(s: Session, msg: Message) -> None:
    reason = msg.param(1) or None
    for name in msg.params[0].split(","):
        if name:
            try:
                _part(s, name, reason)
            except IRCError as e:
                s.reply(e.numeric, *e.params)


def _joined_room(s: Session, name: str) -> Channel:
    """The room ``name`` that this user is in (lock held): 403 when there is none it
    may know of (a secret room looks like none), 442 when it is not a member."""
    chan = s.reg.visible_channel(name, s.user)
    if chan is None:
        raise IRCError(N.ERR_NOSUCHCHANNEL, name, "No such channel")
    if not chan.is_member(s.user):
        raise IRCError(N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
    return chan


def _part(s: Session, name: str, reason: str | None) -> None:
    user, reg = s.user, s.reg
    with reg.lock:
        chan = _joined_room(s, name)
        params = (chan.name, reason) if reason else (chan.name,)
        s.relay_channel(chan, Message("PART", params, user.source))
        reg.leave(user, chan)


def names(s: Session, msg: Message) -> None:
    user, reg = s.user, s.reg
    with reg.lock:
        if not msg.params or not msg.params[0]:
            for chan in list(reg.channels.values()):
                if chan.visible_to(user):
                    send_names(s, chan, end=False)
            s.reply(N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        wanted = [n for n in msg.params[0].split(",") if n] or [msg.params[0]]
        if len(wanted) > 1:  # one 366 for them all, naming the list as given (Ergo)
            for name in wanted:
                chan = reg.visible_channel(name, user)
                if chan is not None:
                    send_names(s, chan, end=False)
            s.reply(N.RPL_ENDOFNAMES, msg.params[0], "End of /NAMES list")
            return
        chan = reg.visible_channel(wanted[0], user)
        if chan is not None:
            send_names(s, chan)
        else:
            s.reply(N.RPL_ENDOFNAMES, wanted[0], "End of /NAMES list")


def send_names(s: Session, chan: Channel, end: bool = True) -> None:
    """RPL_NAMREPLY lines (invisible users only to members), then RPL_ENDOFNAMES.
    With userhost-in-names each entry is ``nick!user@host``."""
    multi = Cap.MULTI_PREFIX in s.user.caps
    full = Cap.USERHOST_IN_NAMES in s.user.caps
    symbol = "@" if "s" in chan.modes else "="
    show_all = chan.is_member(s.user)
    entries = sorted(
        (
            chan.prefix_of(u, multi) + (u.source if full else u.nick)
            for u in chan.members
            if show_all or "i" not in u.modes
        ),
        key=casefold,
    )
    line: list[str] = []
    size = 0
    for entry in entries:
        if line and size + len(entry) + 1 > NAMES_LINE_BUDGET - len(chan.name):
            s.reply(N.RPL_NAMREPLY, symbol, chan.name, " ".join(line))
            line, size = [], 0
        line.append(entry)
        size += len(entry.encode()) + 1
    if line:
        s.reply(N.RPL_NAMREPLY, symbol, chan.name, " ".join(line))
    if end:
        s.reply(N.RPL_ENDOFNAMES, chan.name, "End of /NAMES list")


def topic_reply(s: Session, chan: Channel) -> None:
    if not chan.topic:
        s.reply(N.RPL_NOTOPIC, chan.name, "No topic is set")
        return
    s.reply(N.RPL_TOPIC, chan.name, chan.topic)
    s.reply(N.RPL_TOPICWHOTIME, chan.name, chan.topic_by, str(int(chan.topic_at)))


def topic(s: Session, msg: Message) -> None:
    user, reg = s.user, s.reg
    with reg.lock:
        chan = reg.visible_channel(msg.params[0], user)
        if chan is None:
            raise IRCError(N.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
        if len(msg.params) < 2:
            topic_reply(s, chan)
            return
        if not chan.is_member(user):
            raise IRCError(N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
        if not chan.may_set_topic(user):
            raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
        chan.set_topic(truncate_utf8(msg.params[1], s.cfg.topiclen), user.source)
        # kept in history too: draft/event-playback replays topic changes
        topic_line = Message.of("TOPIC", chan.name, chan.topic, source=user.source)
        s.relay_sinks(chan.sinks, topic_line, history=(chan.folded, chan.name))
        reg.save_room(chan)


def list_(s: Session, msg: Message) -> None:
    """LIST [#room,...|mask,...|!mask|>n|<n]: the rooms named, or matching a mask
    (ELIST M), matching no ``!mask`` (N), with more than / fewer than n users (U).
    Rooms are taken under the lock; masks are matched outside it, as WHO does."""
    keep = _list_filter(msg.param(0), s.cfg.masklen)
    with s.reg.lock:
        rows = [
            (k, c.name, len(c.members), c.topic)
            for k, c in s.reg.channels.items()
            if c.visible_to(s.user)
        ]
    s.reply(N.RPL_LISTSTART, "Channel", "Users  Name")
    for _, name, count, text in sorted(filter(keep, rows)):
        s.reply(N.RPL_LIST, name, str(count), text)
    s.reply(N.RPL_LISTEND, "End of /LIST")


def _list_filter(spec: str, masklen: int) -> Callable[[tuple[str, str, int, str]], bool]:
    """Whether a (casefolded name, name, users, topic) row passes LIST's conditions:
    it must be named or match one mask (when any is given), match no ``!mask``, and
    pass every ``>n``/``<n``. A mask longer than ``masklen`` matches nothing.

    >>> rows = [("#a", "#a", 1, ""), ("#ab", "#ab", 3, ""), ("#b", "#b", 2, "")]
    >>> [r[1] for r in rows if _list_filter("#a*,>1", 128)(r)]
    ['#ab']
    >>> [r[1] for r in rows if _list_filter("!#a*", 128)(r)]
    ['#b']
    >>> [r[1] for r in rows if _list_filter("#B,<3", 128)(r)]
    ['#b']
    """
    names: set[str] = set()
    masks: list[Callable[[str], bool]] = []
    excluded: list[Callable[[str], bool]] = []
    more, fewer = -1, INT32_MAX
    for item in filter(None, spec.split(",")):
        if item[0] in "<>":
            n = parse_int(item[1:], 0, INT32_MAX)
            if n is None:
                continue  # not a count: ignored, as an unknown condition is
            if item[0] == ">":
                more = max(more, n)
            else:
                fewer = min(fewer, n)
            continue
        negate = item[0] == "!"
        mask = item[1:] if negate else item
        if not mask:
            continue
        if "*" not in mask and "?" not in mask and not negate:
            names.add(casefold(mask))
            continue
        match = mask_matcher(mask) if len(mask) <= masklen else _nothing
        (excluded if negate else masks).append(match)
    chosen = bool(names or masks)

    def keep(row: tuple[str, str, int, str]) -> bool:
        folded, _, users, _ = row
        return (
            more < users < fewer
            and (not chosen or folded in names or any(m(folded) for m in masks))
            and not any(m(folded) for m in excluded)
        )

    return keep


def _nothing(text: str) -> bool:
    return False


def kick(s: Session, msg: Message) -> None:
    """KICK #room nick[,nick...], or rooms and nicks in pairs (RFC 2812 3.2.8); each
    removal is relayed as its own KICK of one user from one room."""
    rooms = msg.params[0].split(",")
    nicks = msg.params[1].split(",")
    if len(rooms) == 1:
        pairs = [(rooms[0], nick) for nick in nicks]
    elif len(rooms) == len(nicks):
        pairs = list(zip(rooms, nicks, strict=True))
    else:
        raise IRCError(N.ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters")
    reason = truncate_utf8(msg.param(2) or s.user.nick, s.cfg.kicklen)
    for name, nick in pairs:
        try:
            _kick(s, name, nick, reason)
        except IRCError as e:
            s.reply(e.numeric, *e.params)


def _kick(s: Session, name: str, nick: str, reason: str) -> None:
    user, reg = s.user, s.reg
    with reg.lock:
        chan = _joined_room(s, name)
        if not chan.is_op(user):
            raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
        target = reg.find_user(nick)
        if target is None or not chan.is_member(target):
            raise IRCError(N.ERR_USERNOTINCHANNEL, nick, chan.name, "They aren't on that channel")
        s.relay_channel(
            chan, Message.of("KICK", chan.name, target.nick, reason, source=user.source)
        )
        reg.leave(target, chan)


def invite(s: Session, msg: Message) -> None:
    user, reg = s.user, s.reg
    nick, name = msg.params[0], msg.params[1]
    with reg.lock:
        target = reg.find_user(nick)
        if target is None:
            raise IRCError(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
        chan = _joined_room(s, name)
        if chan.is_member(target):
            raise IRCError(N.ERR_USERONCHANNEL, target.nick, chan.name, "is already on channel")
        if not chan.may_invite(user):
            raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
        chan.invite(target)
        s.reply(N.RPL_INVITING, target.nick, chan.name)
        # relayed like a message: server-time, msgid and account-tag as the target takes them
        s.relay_sinks(
            (target.conn,), Message.of("INVITE", target.nick, chan.name, source=user.source)
        )
        if target.away is not None:
            s.reply(N.RPL_AWAY, target.nick, target.away)
