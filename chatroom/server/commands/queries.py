"""Queries about users, and what a user says of itself: WHO WHOIS WHOWAS USERHOST ISON,
AWAY and SETNAME (the last two are relayed to the room peers that asked to hear them).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chatroom.protocol import Cap, Message, casefold, is_channel, mask_matcher, parse_int
from chatroom.protocol import Numeric as N
from chatroom.server.registry import User, sinks_with
from chatroom.server.session import INT32_MAX, IRCError
from chatroom.server.text import truncate_utf8

if TYPE_CHECKING:
    from chatroom.server.session import Session

# A WHO row: (room shown, nick, username, host, realname, flags, seconds idle)
WhoRow = tuple[str, str, str, str, str, str, int, str]

# IRCv3 WHOX (https://ircv3.net/specs/extensions/whox): `WHO <mask> [o]%<fields>[,<token>]`
# is answered with 354 lines giving the fields asked for, always in this order.
RPL_WHOSPCRPL = "354"
WHOX_FIELDS = "tcuihsnfdlaor"
# The client's token names its query in each reply: 1 to 3 digits (ircu's querytype).
WHOX_TOKEN_DIGITS = 3


def who(s: Session, msg: Message) -> None:
    mask = msg.param(0, "*") or "*"
    flags, percent, whox = msg.param(1).partition("%")
    opers_only = "o" in flags
    user, reg = s.user, s.reg
    multi = Cap.MULTI_PREFIX in user.caps
    # rows are taken under the lock; a mask is matched on that snapshot outside it,
    # so a costly mask holds up no one
    rows: list[WhoRow] = []
    masked = False
    with reg.lock:
        chan = reg.find_channel(mask) if is_channel(mask) else None
        if chan is not None:
            if chan.visible_to(user):
                show_all = chan.is_member(user)
                rows = [
                    _who_row(chan.name, u, chan.prefix_of(u, multi))
                    for u in chan.members
                    if show_all or "i" not in u.modes
                ]
        elif not is_channel(mask) and len(mask) <= s.cfg.masklen:
            mine = reg.peers_of(user)
            # +i hides a user from masks, not from a query for its very nick (Ergo)
            exact = casefold(mask) if "*" not in mask and "?" not in mask else None
            rows = [
                _who_row("*", u, "")
                for u in reg.registered_users()
                if "i" not in u.modes or u is user or u in mine or casefold(u.nick) == exact
            ]
            masked = True
    if masked:
        match = mask_matcher("*" if mask == "0" else mask)
        rows = [
            r
            for r in rows
            if match(casefold(r[1])) or match(casefold(r[3])) or match(casefold(r[4]))
        ]
    if opers_only:
        rows = [r for r in rows if "*" in r[5]]
    if percent:
        _whox_replies(s, rows, whox)
    else:
        for name, nick, username, host, realname, status, _, _ in rows:
            s.reply(N.RPL_WHOREPLY, name, username, host, s.server, nick, status, f"0 {realname}")
    s.reply(N.RPL_ENDOFWHO, mask, "End of WHO list")


def _who_row(name: str, u: User, prefix: str) -> WhoRow:
    flags = ("G" if u.away is not None else "H") + ("*" if u.is_oper else "")
    flags += ("B" if "B" in u.modes else "") + prefix  # B: a bot (ISUPPORT BOT=B)
    idle = int(time.monotonic() - u.last_spoke)
    return (name, u.nick, u.username, u.host, u.realname, flags, idle, u.account or "0")


def _whox_replies(s: Session, rows: list[WhoRow], spec: str) -> None:
    """One 354 per row with the fields of ``spec`` (``tcuhnfar,123``), in WHOX order.

    ``a`` is the account (``0``: not logged in); ``o`` (op level) is ``n/a``
    as in Solanum and Ergo; the host is an address, so ``i`` is the host too.
    """
    wanted, _, token = spec.partition(",")
    if not (token.isdigit() and token.isascii() and len(token) <= WHOX_TOKEN_DIGITS):
        token = "0"
    fields = [f for f in WHOX_FIELDS if f in wanted]
    for name, nick, username, host, realname, status, idle, account in rows:
        values = {
            "t": token,
            "c": name,
            "u": username,
            "i": host,
            "h": host,
            "s": s.server,
            "n": nick,
            "f": status,
            "d": "0",
            "l": str(idle),
            "a": account,
            "o": "n/a",
            "r": realname,
        }
        s.reply(RPL_WHOSPCRPL, *(values[f] for f in fields))


def whois(s: Session, msg: Message) -> None:
    nicks = msg.params[-1]
    if not nicks:
        raise IRCError(N.ERR_NONICKNAMEGIVEN, "No nickname given")
    reg = s.reg
    for nick in nicks.split(",")[: s.cfg.maxtargets]:
        with reg.lock:
            u = reg.find_user(nick)
            if u is None:
                s.reply(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
                s.reply(N.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
                continue
            s.reply(N.RPL_WHOISUSER, u.nick, u.username, u.host, "*", u.realname)
            multi = Cap.MULTI_PREFIX in s.user.caps
            chans = [
                c.prefix_of(u, multi) + c.name for c in u.channels.values() if c.visible_to(s.user)
            ]
            if chans:
                s.reply(N.RPL_WHOISCHANNELS, u.nick, " ".join(chans))
            s.reply(N.RPL_WHOISSERVER, u.nick, s.server, s.cfg.network)
            if u.account:
                s.reply(N.RPL_WHOISACCOUNT, u.nick, u.account, "is logged in as")
            if u.away is not None:
                s.reply(N.RPL_AWAY, u.nick, u.away)
            if u.is_oper:
                s.reply(N.RPL_WHOISOPERATOR, u.nick, "is an IRC operator")
            if "B" in u.modes:
                s.reply(N.RPL_WHOISBOT, u.nick, "is a bot")
            idle = int(time.monotonic() - u.last_spoke)
            s.reply(
                N.RPL_WHOISIDLE, u.nick, str(idle), str(int(u.signon)), "seconds idle, signon time"
            )
            s.reply(N.RPL_ENDOFWHOIS, u.nick, "End of /WHOIS list")


def whowas(s: Session, msg: Message) -> None:
    nick = msg.params[0]
    # RFC 2812 3.6.3: a count that is not positive (or none) means every entry
    count = parse_int(msg.param(1), -INT32_MAX, INT32_MAX) or 0
    with s.reg.lock:
        found = [e for e in reversed(s.reg.whowas) if casefold(e.nick) == casefold(nick)]
    if count > 0:
        found = found[:count]
    if not found:
        s.reply(N.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
    for e in found:
        s.reply(N.RPL_WHOWASUSER, e.nick, e.username, e.host, "*", e.realname)
        when = datetime.fromtimestamp(e.left, UTC).strftime("%a %b %d %H:%M:%S %Y")
        s.reply(N.RPL_WHOISSERVER, e.nick, s.server, when)
    s.reply(N.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")


def userhost(s: Session, msg: Message) -> None:
    out = []
    for nick in msg.params[:5]:
        u = s.reg.find_user(nick)
        if u is not None:
            oper = "*" if u.is_oper else ""
            away = "-" if u.away is not None else "+"
            out.append(f"{u.nick}{oper}={away}{u.username}@{u.host}")
    s.reply(N.RPL_USERHOST, " ".join(out))


def ison(s: Session, msg: Message) -> None:
    nicks = [n for p in msg.params for n in p.split()]
    online = [u.nick for n in nicks if (u := s.reg.find_user(n)) is not None]
    s.reply(N.RPL_ISON, " ".join(online))


def away(s: Session, msg: Message) -> None:
    user = s.user
    text = msg.param(0)
    with s.reg.lock:
        user.away = truncate_utf8(text, s.cfg.awaylen) if text else None
        params = (user.away,) if user.away is not None else ()
        # room peers, and with extended-monitor those watching this nick
        told = s.reg.peers_of(user) | s.reg.watchers_with(user, Cap.AWAY_NOTIFY)
        s.relay_sinks(sinks_with(told, Cap.AWAY_NOTIFY), Message("AWAY", params, user.source))
    if text:
        s.reply(N.RPL_NOWAWAY, "You have been marked as being away")
    else:
        s.reply(N.RPL_UNAWAY, "You are no longer marked as being away")


def setname(s: Session, msg: Message) -> None:
    """IRCv3 setname: a new realname, told to the user and to the room peers that
    negotiated ``setname`` (nobody else may be sent a SETNAME)."""
    realname = msg.params[0]
    if not realname or len(realname.encode()) > s.cfg.realnamelen:
        s.fail("SETNAME", "INVALID_REALNAME", "Realname is not valid")
        return
    user = s.user
    with s.reg.lock:
        user.realname = realname
        peers = s.reg.peers_of(user) | s.reg.watchers_with(user, Cap.SETNAME)
        peers.add(user)
        s.relay_sinks(
            sinks_with(peers, Cap.SETNAME), Message.of("SETNAME", realname, source=user.source)
        )
