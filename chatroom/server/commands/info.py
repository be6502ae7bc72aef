"""Operators and server information: OPER KILL WALLOPS, MOTD LUSERS VERSION TIME INFO HELP."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chatroom.protocol import Message
from chatroom.protocol import Numeric as N
from chatroom.server import commands
from chatroom.server.config import DEFAULT_MOTD, VERSION
from chatroom.server.session import IRCError, end_user
from chatroom.server.text import truncate_utf8

if TYPE_CHECKING:
    from chatroom.server.session import Session


def oper(s: Session, msg: Message) -> None:
    name, password = msg.params[0], msg.params[1]
    expected = s.cfg.opers.get(name)
    if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
        raise IRCError(N.ERR_PASSWDMISMATCH, "Password incorrect")
    if s.reg.set_user_mode(s.user, "o", True):
        s.send(Message.of("MODE", s.user.nick, "+o", source=s.user.source))
    s.reply(N.RPL_YOUREOPER, "You are now an IRC operator")


def _require_oper(s: Session) -> None:
    if not s.user.is_oper:
        raise IRCError(N.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")


def kill(s: Session, msg: Message) -> None:
    _require_oper(s)
    target = s.reg.find_user(msg.params[0])
    if target is None:
        raise IRCError(N.ERR_NOSUCHNICK, msg.params[0], "No such nick/channel")
    comment = msg.param(1) or "No reason given"
    reason = f"Killed ({s.user.nick} ({comment}))"
    end_user(s.reg, target, reason, f"Closing Link: {target.host} ({reason})")


def wallops(s: Session, msg: Message) -> None:
    _require_oper(s)
    if not msg.params[0]:
        raise IRCError(N.ERR_NEEDMOREPARAMS, "WALLOPS", "Not enough parameters")
    with s.reg.lock:
        readers = [u for u in s.reg.registered_users() if "w" in u.modes or u.is_oper]
        s.relay(readers, Message.of("WALLOPS", msg.params[0], source=s.user.source))


def motd(s: Session, msg: Message) -> None:
    """MOTD (also the end of the welcome burst). The built-in one names the server and
    says how many people are on; one given by the operator is sent as written."""
    text = s.cfg.motd
    if not text:
        s.reply(N.ERR_NOMOTD, "MOTD File is missing")
        return
    if text == DEFAULT_MOTD:
        with s.reg.lock:
            count = s.reg.registered_count
        people = "1 person" if count == 1 else f"{count} people"
        text = DEFAULT_MOTD.format(server=s.server, people=people)
    s.reply(N.RPL_MOTDSTART, f"- {s.server} Message of the day - ")
    for line in text.splitlines() or [""]:
        s.reply(N.RPL_MOTD, f"- {truncate_utf8(line, 400)}")
    s.reply(N.RPL_ENDOFMOTD, "End of /MOTD command.")


def lusers(s: Session, msg: Message) -> None:
    """LUSERS (also part of the welcome burst): counts kept by the registry."""
    reg = s.reg
    with reg.lock:
        total = reg.registered_count
        unknown = len(reg.connections) - total
        channels = len(reg.channels)
        max_users = reg.max_users
        invisible = reg.mode_counts["i"]
        opers = reg.mode_counts["o"]
    s.reply(
        N.RPL_LUSERCLIENT,
        f"There are {total - invisible} users and {invisible} invisible on 1 servers",
    )
    if opers:
        s.reply(N.RPL_LUSEROP, str(opers), "operator(s) online")
    if unknown:
        s.reply(N.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
    if channels:
        s.reply(N.RPL_LUSERCHANNELS, str(channels), "channels formed")
    s.reply(N.RPL_LUSERME, f"I have {total} clients and 0 servers")
    for numeric, scope in ((N.RPL_LOCALUSERS, "local"), (N.RPL_GLOBALUSERS, "global")):
        s.reply(
            numeric, str(total), str(max_users), f"Current {scope} users {total}, max {max_users}"
        )


def version(s: Session, msg: Message) -> None:
    s.reply(N.RPL_VERSION, VERSION, s.server, "threaded IRC server for LAN chat")
    s.send_isupport()


def time_(s: Session, msg: Message) -> None:
    now = datetime.now(UTC).astimezone()
    s.reply(N.RPL_TIME, s.server, now.strftime("%A %B %d %Y -- %H:%M:%S %z"))


def info(s: Session, msg: Message) -> None:
    for line in (
        f"{VERSION}: group chat for a LAN, speaking IRC.",
        "One thread per connection on socketserver.ThreadingTCPServer;",
        "one writer loop drains every client's bounded send queue.",
        f"Server started {datetime.fromtimestamp(s.reg.created, UTC):%Y-%m-%d %H:%M UTC}.",
    ):
        s.reply(N.RPL_INFO, line)
    s.reply(N.RPL_ENDOFINFO, "End of /INFO list")


def help_(s: Session, msg: Message) -> None:
    """HELP: the list of commands, or one command's usage (the table's help column)."""
    subject = msg.param(0).upper() or "*"
    if subject == "*":
        lines = [
            "chatroom IRC server. Commands:",
            " ".join(sorted(commands.COMMANDS)),
            "HELP <command> shows how to use one.",
        ]
    else:
        row = commands.COMMANDS.get(subject)
        if row is None or row.help is None:
            raise IRCError(N.ERR_HELPNOTFOUND, subject, "No help available on this topic")
        lines = [row.help]
    s.reply(N.RPL_HELPSTART, subject, lines[0])
    for line in lines[1:]:
        s.reply(N.RPL_HELPTXT, subject, line)
    s.reply(N.RPL_ENDOFHELP, subject, "End of /HELP")
