"""MODE, for rooms (a table of letters, one rule each) and for one's own user modes.

A room's mode letters are the rows of :data:`CHANNEL_MODES`: whether the letter takes
a parameter when set and when cleared (MODES= counts those), and the function that
applies it to the Channel and says what changed. A new room mode is one function and
one row; CHANMODES in ISUPPORT (Config.isupport_tokens) names them to clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from chatroom.protocol import Message, casefold, is_channel, parse_int
from chatroom.protocol import Numeric as N
from chatroom.server.records import AccountStoreError
from chatroom.server.registry import (
    FLAG_MODES,
    LIST_MODES,
    STATUS_MODES,
    Channel,
    ListEntry,
    canonical_mask,
)
from chatroom.server.session import INT32_MAX, IRCError

if TYPE_CHECKING:
    from chatroom.server.session import Session

# The mask lists: each entry's numeric, the list's end and what the end says.
LIST_REPLIES = {
    "b": (N.RPL_BANLIST, N.RPL_ENDOFBANLIST, "End of channel ban list"),
    "e": (N.RPL_EXCEPTLIST, N.RPL_ENDOFEXCEPTLIST, "End of channel exception list"),
    "I": (N.RPL_INVITELIST, N.RPL_ENDOFINVITELIST, "End of channel invite list"),
}
# User modes a user may set on itself; +o comes only through OPER (and -o drops it).
# B: IRCv3 bot mode (ISUPPORT BOT=B): WHOIS 335, WHO flag B, the bot tag on its lines.
USER_MODES = "iwB"


@dataclass
class _Change:
    """One MODE line being applied to a room (lock held)."""

    s: Session
    chan: Channel
    params: list[str]  # the line's parameters not yet taken
    applied: list[tuple[str, str]] = field(default_factory=list)  # ("+", "o"), ...
    out_params: list[str] = field(default_factory=list)  # parameters of the relayed MODE
    used: int = 0  # parameters taken (at most modes_per_line)
    # mask list changes (letter, entry, added), saved for a registered room after the lock
    list_changes: list[tuple[str, ListEntry, bool]] = field(default_factory=list)

    def take(self) -> str | None:
        return self.params.pop(0) if self.params else None

    def done(self, adding: bool, letter: str, param: str | None = None) -> None:
        self.applied.append(("+" if adding else "-", letter))
        if param is not None:
            self.out_params.append(param)


def _status(c: _Change, letter: str, adding: bool) -> None:
    """+o/-o, +v/-v nick: a member's status."""
    if not c.params:
        return
    c.used += 1
    nick = c.params.pop(0)
    target = c.s.reg.find_user(nick)
    if target is None:
        c.s.reply(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
    elif not c.chan.is_member(target):
        c.s.reply(N.ERR_USERNOTINCHANNEL, target.nick, c.chan.name, "They aren't on that channel")
    elif c.chan.set_status(target, letter, adding):
        c.done(adding, letter, target.nick)


def _key(c: _Change, letter: str, adding: bool) -> None:
    """+k key / -k [key]: the room key (RFC 2812 key grammar; 324 sends it as a middle)."""
    key = c.take()
    c.used += 1
    if not adding:
        if c.chan.set_key(None):
            c.done(adding, letter, "*")
        return
    if key is None:
        c.s.reply(N.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
    elif (
        not key
        or len(key) > c.s.cfg.keylen
        or not key.isprintable()
        or "," in key
        or " " in key
        or key[0] == ":"
    ):
        c.s.reply(N.ERR_INVALIDKEY, c.chan.name, "Key is not well-formed")
    else:
        c.chan.set_key(key)
        c.done(adding, letter, key)


def _limit(c: _Change, letter: str, adding: bool) -> None:
    """+l count / -l: the member limit (a 32-bit count, as in every IRC server)."""
    if not adding:
        if c.chan.set_limit(None):
            c.done(adding, letter)
        return
    raw = c.take() or ""
    c.used += 1
    limit = parse_int(raw, 1, INT32_MAX)
    if limit is None:
        c.s.reply(N.ERR_INVALIDMODEPARAM, c.chan.name, "l", raw or "*", "Invalid limit")
    else:
        c.chan.set_limit(limit)
        c.done(adding, letter, str(limit))


def send_list(s: Session, chan: Channel, letter: str) -> None:
    """367/346/348 for each mask on a list (with who set it and when), then its end."""
    entry_numeric, end_numeric, end_text = LIST_REPLIES[letter]
    for e in chan.lists[letter].values():
        s.reply(entry_numeric, chan.name, e.mask, e.set_by, str(e.set_at))
    s.reply(end_numeric, chan.name, end_text)


def _mask(c: _Change, letter: str, adding: bool) -> None:
    """+b/-b, +e/-e, +I/-I mask: a list entry; without a mask, the list itself."""
    raw = c.take()
    if raw is None:
        send_list(c.s, c.chan, letter)
        return
    c.used += 1
    mask = canonical_mask(raw)
    if not adding:
        removed = c.chan.remove_mask(letter, mask)
        if removed is not None:
            c.done(adding, letter, removed.mask)
            c.list_changes.append((letter, removed, False))
        return
    if len(mask) > c.s.cfg.masklen or casefold(mask) in c.chan.lists[letter]:
        return
    entry = c.chan.add_mask(letter, mask, c.s.user.source, c.s.cfg.listmodes_max)
    if entry is None:
        c.s.reply(N.ERR_BANLISTFULL, c.chan.name, letter, "Channel list is full")
    else:
        c.done(adding, letter, mask)
        c.list_changes.append((letter, entry, True))


def _flag(c: _Change, letter: str, adding: bool) -> None:
    """+i +m +n +s +t: on or off, no parameter."""
    if c.chan.set_flag(letter, adding):
        c.done(adding, letter)


class ModeRule(NamedTuple):
    param_when_set: bool  # counts towards modes_per_line when set
    param_when_cleared: bool  # ... and when cleared
    apply: Callable[[_Change, str, bool], None]


CHANNEL_MODES: dict[str, ModeRule] = {
    "o": ModeRule(True, True, _status),
    "v": ModeRule(True, True, _status),
    "k": ModeRule(True, True, _key),
    "l": ModeRule(True, False, _limit),
    **{letter: ModeRule(True, True, _mask) for letter in LIST_MODES},
    **{letter: ModeRule(False, False, _flag) for letter in FLAG_MODES},
}


def mode(s: Session, msg: Message) -> None:
    target = msg.params[0]
    if is_channel(target):
        _channel_mode(s, target, msg.params[1:])
    else:
        _user_mode(s, target, msg.param(1))


def _user_mode(s: Session, nick: str, changes: str) -> None:
    user = s.user
    if casefold(nick) != casefold(user.nick):
        if s.reg.find_user(nick) is None:
            raise IRCError(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
        raise IRCError(N.ERR_USERSDONTMATCH, "Can't change mode for other users")
    if not changes:
        s.reply(N.RPL_UMODEIS, "+" + "".join(sorted(user.modes)))
        return
    adding, applied, unknown = True, [], False
    for ch in changes:
        if ch in "+-":
            adding = ch == "+"
        elif ch in USER_MODES or (ch == "o" and not adding):
            if s.reg.set_user_mode(user, ch, adding):
                applied.append(("+" if adding else "-", ch))
        elif ch != "o":  # +o only through OPER
            unknown = True
    if unknown:
        s.reply(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
    if applied:
        s.send(Message.of("MODE", user.nick, modestring(applied), source=user.source))


def _channel_mode(s: Session, name: str, args: tuple[str, ...]) -> None:
    user, reg = s.user, s.reg
    with reg.lock:
        chan = reg.visible_channel(name, user)
        if chan is None:
            raise IRCError(N.ERR_NOSUCHCHANNEL, name, "No such channel")
        if not args or not args[0]:
            s.reply(N.RPL_CHANNELMODEIS, chan.name, *chan.mode_string(chan.is_member(user)))
            s.reply(N.RPL_CREATIONTIME, chan.name, str(int(chan.created)))
            return
        letters, params = args[0], list(args[1:])
        bare = letters.lstrip("+")
        if bare and all(c in LIST_REPLIES for c in bare) and not params:
            for c in dict.fromkeys(bare):  # anyone who can see the room may read them
                send_list(s, chan, c)
            return
        if not chan.is_op(user):
            raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
        change = _Change(s, chan, params)
        adding = True
        for ch in letters:
            if ch in "+-":
                adding = ch == "+"
                continue
            rule = CHANNEL_MODES.get(ch)
            if rule is None:
                s.reply(N.ERR_UNKNOWNMODE, ch, "is unknown mode char to me")
                continue
            takes_param = rule.param_when_set if adding else rule.param_when_cleared
            if takes_param and change.used >= s.cfg.modes_per_line:
                break
            rule.apply(change, ch, adding)
        if change.applied:
            s.relay_channel(
                chan,
                Message(
                    "MODE", (chan.name, modestring(change.applied), *change.out_params), user.source
                ),
            )
            if any(ch not in STATUS_MODES for _, ch in change.applied):
                reg.save_room(chan)
    if change.list_changes and chan.registration is not None and reg.accounts is not None:
        _save_lists(s, chan, change.list_changes)


def _save_lists(s: Session, chan: Channel, changes: list[tuple[str, ListEntry, bool]]) -> None:
    """A registered room keeps its mask lists (in the database, outside the lock)."""
    accounts = s.reg.accounts
    assert accounts is not None
    try:
        for letter, e, added in changes:
            accounts.set_list_entry(chan.folded, letter, e.mask, e.set_by, e.set_at, added)
    except AccountStoreError:
        s.notice(f"*** The lists of {chan.name} could not be saved: they last until a restart")


def modestring(applied: list[tuple[str, str]]) -> str:
    """The letters of a MODE change, signs merged.

    >>> modestring([("+", "o"), ("+", "v"), ("-", "k")])
    '+ov-k'
    """
    out, sign = [], ""
    for s, ch in applied:
        if s != sign:
            out.append(s)
            sign = s
        out.append(ch)
    return "".join(out)
