"""NickServ and ChanServ: the pseudo-users every IRC user knows how to talk to.

``/msg NickServ IDENTIFY password`` works from any client, IRCv3 or not; both answer
with NOTICEs. They are part of the server (no services daemon), over the same
accounts as SASL and REGISTER (accounts.py). A registered room keeps its founder,
its access list (accounts made operator or voiced on joining), its mask lists,
topic and modes across restarts and while it is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chatroom import sasl
from chatroom.protocol import Message, casefold, is_channel
from chatroom.server.commands import accounts as A
from chatroom.server.records import AccountStoreError, RoomRegistration

if TYPE_CHECKING:
    from chatroom.server.session import Session

NICKSERV_HELP = {
    "REGISTER": "REGISTER <password> -- register your current nick as an account",
    "IDENTIFY": "IDENTIFY [account] <password> -- log in",
    "LOGOUT": "LOGOUT -- log out",
    "PASSWD": "PASSWD <old password> <new password> -- change your password",
    "DROP": "DROP <password> -- delete your account and the rooms it founded",
    "INFO": "INFO [account] -- when an account was registered, and whether it is on",
    "REGAIN": "REGAIN <nick> -- take your account's nick back from whoever uses it",
    "HELP": "HELP [command] -- this list, or one command",
}
CHANSERV_HELP = {
    "REGISTER": "REGISTER <#room> -- register a room you operate; you are its founder",
    "DROP": "DROP <#room> -- unregister a room (its founder or a server operator)",
    "INFO": "INFO <#room> -- founder, registration time and access list",
    "AMODE": "AMODE <#room> [+o|-o|+v|-v <account>] -- the access list (founder edits)",
    "HELP": "HELP [command] -- this list, or one command",
}


def dispatch(s: Session, service: str, text: str) -> None:
    """A PRIVMSG (or NS/CS command) to a service."""
    words = text.split()
    command = words[0].upper() if words else "HELP"
    nickserv = casefold(service) == "nickserv"
    table = NICKSERV if nickserv else CHANSERV
    name = "NickServ" if nickserv else "ChanServ"
    handler = table.get(command)
    if handler is None:
        A.service_notice(s, name, f"Unknown command {command}. /msg {name} HELP lists them.")
        return
    if s.reg.accounts is None:
        A.service_notice(s, name, "This server has no accounts.")
        return

    def say(line: str) -> None:
        A.service_notice(s, name, line)

    try:
        handler(s, words[1:], say)
    except AccountStoreError:
        say("Accounts cannot be reached just now; try again later.")


Say = Callable[[str], None]


def nickserv(s: Session, msg: Message) -> None:
    """``NS IDENTIFY pw`` (Ergo's NS and CS commands): the words after the command."""
    dispatch(s, "NickServ", " ".join(msg.params))


def chanserv(s: Session, msg: Message) -> None:
    dispatch(s, "ChanServ", " ".join(msg.params))


def _help(table: dict[str, str]) -> Callable[[Session, list[str], Say], None]:
    def help_(s: Session, args: list[str], say: Say) -> None:
        if args:
            say(table.get(args[0].upper(), f"No help for {args[0]}"))
            return
        for line in table.values():
            say(line)

    return help_


# --- NickServ -----------------------------------------------------------------------------


def ns_register(s: Session, args: list[str], say: Say) -> None:
    if not args:
        say("Usage: " + NICKSERV_HELP["REGISTER"])
        return
    error = A.create_account(s, s.user.nick, args[0])
    if error is not None:
        say(f"Not registered: {error[1]}.")
        return
    say(f"Account {s.user.nick} registered; you are logged in.")
    A.log_in(s, s.user.nick)


def ns_identify(s: Session, args: list[str], say: Say) -> None:
    if not args:
        say("Usage: " + NICKSERV_HELP["IDENTIFY"])
        return
    account, password = (args[0], args[1]) if len(args) > 1 else (s.user.nick, args[0])
    found = A.check_login(s, account, password)
    if isinstance(found, str):
        say(f"Not logged in: {found}.")
        return
    A.log_in(s, found.name)
    say(f"You are now logged in as {found.name}.")


def ns_logout(s: Session, args: list[str], say: Say) -> None:
    if s.user.account is None:
        say("You are not logged in.")
        return
    A.log_out(s)
    say("You are now logged out.")


def ns_passwd(s: Session, args: list[str], say: Say) -> None:
    account = s.user.account
    if account is None:
        say("Log in first.")
        return
    if len(args) < 2:
        say("Usage: " + NICKSERV_HELP["PASSWD"])
        return
    found = A.check_login(s, account, args[0])
    if isinstance(found, str):
        say(f"Password not changed: {found}.")
        return
    new = args[1]
    if not s.cfg.password_min_length <= len(new.encode()) <= A.MAX_PASSWORD_BYTES:
        say(
            f"Password not changed: it needs {s.cfg.password_min_length} to "
            f"{A.MAX_PASSWORD_BYTES} bytes."
        )
        return
    accounts = s.reg.accounts
    assert accounts is not None
    accounts.set_credentials(account, sasl.make_credentials(new, s.cfg.scram_iterations))
    say("Password changed.")


def ns_drop(s: Session, args: list[str], say: Say) -> None:
    account = s.user.account
    if account is None:
        say("Log in to the account you want to drop first.")
        return
    if not args:
        say("Usage: " + NICKSERV_HELP["DROP"] + " (this cannot be undone)")
        return
    found = A.check_login(s, account, args[0])
    if isinstance(found, str):
        say(f"Not dropped: {found}.")
        return
    accounts = s.reg.accounts
    assert accounts is not None
    accounts.drop(account)
    A.log_out_everywhere(s, account)
    key = casefold(account)
    with s.reg.lock:  # rooms it founded are no longer registered; it is off access lists
        for chan in s.reg.channels.values():
            reg = chan.registration
            if reg is not None and reg.founder == key:
                chan.registration = None
            elif reg is not None and key in reg.access:
                access = {k: v for k, v in reg.access.items() if k != key}
                chan.registration = reg._replace(access=access)
    A.log_out(s)
    say(f"Account {account} dropped.")


def ns_info(s: Session, args: list[str], say: Say) -> None:
    name = args[0] if args else (s.user.account or s.user.nick)
    accounts = s.reg.accounts
    assert accounts is not None
    info = accounts.get(name)
    if info is None:
        say(f"{name} is not registered.")
        return
    when = datetime.fromtimestamp(info.created, UTC).strftime("%Y-%m-%d %H:%M UTC")
    with s.reg.lock:
        online = sorted(
            u.nick
            for u in s.reg.registered_users()
            if u.account and casefold(u.account) == casefold(info.name)
        )
    say(f"Account {info.name}, registered {when}.")
    say(f"Logged in now as: {', '.join(online)}." if online else "Not logged in now.")


def ns_regain(s: Session, args: list[str], say: Say) -> None:
    nick = args[0] if args else (s.user.account or "")
    if not nick or not A.owns(s.user, nick):
        say("You may only regain the nick of the account you are logged in to.")
        return
    if not A.take_back(s, nick):
        say(f"{nick} is in use by your account's other connection.")
        return
    from chatroom.server.commands import COMMANDS  # the table imports this module

    COMMANDS["NICK"].handler(s, Message.of("NICK", nick))


NICKSERV: dict[str, Callable[[Session, list[str], Say], None]] = {
    "REGISTER": ns_register,
    "IDENTIFY": ns_identify,
    "LOGIN": ns_identify,
    "LOGOUT": ns_logout,
    "PASSWD": ns_passwd,
    "DROP": ns_drop,
    "INFO": ns_info,
    "REGAIN": ns_regain,
    "GHOST": ns_regain,
    "HELP": _help(NICKSERV_HELP),
}


# --- ChanServ -----------------------------------------------------------------------------


def _room_arg(s: Session, args: list[str], say: Say, usage: str) -> str | None:
    if not args or not is_channel(args[0]):
        say("Usage: " + usage)
        return None
    return args[0]


def cs_register(s: Session, args: list[str], say: Say) -> None:
    name = _room_arg(s, args, say, CHANSERV_HELP["REGISTER"])
    if name is None:
        return
    account = s.user.account
    if account is None:
        say("Log in first: a room is registered to your account.")
        return
    reg, accounts = s.reg, s.reg.accounts
    assert accounts is not None
    with reg.lock:
        chan = reg.find_channel(name)
        if chan is None or not chan.is_op(s.user):
            say(f"You must be an operator of {name} to register it.")
            return
        if chan.registration is not None:
            say(f"{chan.name} is registered already.")
            return
        lists = [
            (letter, e.mask, e.set_by, e.set_at)
            for letter, entries in chan.lists.items()
            for e in entries.values()
        ]
        room_name = chan.name
    if not accounts.register_room(room_name, account, lists):
        say(f"{room_name} is registered already.")
        return
    registration = accounts.room(room_name)
    with reg.lock:
        chan = reg.find_channel(room_name)
        if chan is not None:
            chan.registration = registration
            reg.save_room(chan)
    say(
        f"{room_name} is registered to {account}. /msg ChanServ AMODE {room_name} +o <account>"
        " makes someone an operator whenever they join."
    )


def cs_drop(s: Session, args: list[str], say: Say) -> None:
    name = _room_arg(s, args, say, CHANSERV_HELP["DROP"])
    if name is None:
        return
    registration = _registration(s, name, say)
    if registration is None:
        return
    if not (s.user.is_oper or A.owns(s.user, registration.founder)):
        say(f"Only the founder of {registration.name} may drop it.")
        return
    accounts = s.reg.accounts
    assert accounts is not None
    accounts.unregister_room(name)
    with s.reg.lock:
        chan = s.reg.find_channel(name)
        if chan is not None:
            chan.registration = None
    say(f"{registration.name} is no longer registered.")


def _registration(s: Session, name: str, say: Say) -> RoomRegistration | None:
    accounts = s.reg.accounts
    assert accounts is not None
    found = accounts.room(name)
    if found is None:
        say(f"{name} is not registered.")
    return found


def cs_info(s: Session, args: list[str], say: Say) -> None:
    name = _room_arg(s, args, say, CHANSERV_HELP["INFO"])
    if name is None:
        return
    with s.reg.lock:
        chan = s.reg.visible_channel(name, s.user)
        secret = chan is None and s.reg.find_channel(name) is not None
    if secret:
        say(f"{name} is not registered.")
        return
    registration = _registration(s, name, say)
    if registration is None:
        return
    when = datetime.fromtimestamp(registration.registered, UTC).strftime("%Y-%m-%d %H:%M UTC")
    say(f"{registration.name}: founder {registration.founder}, registered {when}.")
    for account, status in sorted(registration.access.items()):
        say(f"  {'+o' if status == 'o' else '+v'} {account}")


def cs_amode(s: Session, args: list[str], say: Say) -> None:
    name = _room_arg(s, args, say, CHANSERV_HELP["AMODE"])
    if name is None:
        return
    registration = _registration(s, name, say)
    if registration is None:
        return
    if len(args) < 3:
        cs_info(s, args[:1], say)
        return
    change, account = args[1], args[2]
    if change not in ("+o", "-o", "+v", "-v"):
        say("Usage: " + CHANSERV_HELP["AMODE"])
        return
    if not (s.user.is_oper or A.owns(s.user, registration.founder)):
        say(f"Only the founder of {registration.name} may change its access list.")
        return
    accounts = s.reg.accounts
    assert accounts is not None
    info = accounts.get(account)
    if info is None:
        say(f"{account} is not a registered account.")
        return
    key = casefold(info.name)
    if key == registration.founder:
        say("The founder is always an operator.")
        return
    status = change[1] if change[0] == "+" else None
    current = registration.access.get(key)
    if change[0] == "-" and current != change[1]:
        say(f"{info.name} does not have {change} there.")
        return
    accounts.set_access(name, info.name, status)
    with s.reg.lock:
        chan = s.reg.find_channel(name)
        if chan is not None and chan.registration is not None:
            access = dict(chan.registration.access)
            if status:
                access[key] = status
            else:
                access.pop(key, None)
            chan.registration = chan.registration._replace(access=access)
    say(f"{info.name}: {change} on {registration.name} whenever they join.")


CHANSERV: dict[str, Callable[[Session, list[str], Say], None]] = {
    "REGISTER": cs_register,
    "DROP": cs_drop,
    "INFO": cs_info,
    "AMODE": cs_amode,
    "ACCESS": cs_amode,
    "HELP": _help(CHANSERV_HELP),
}
