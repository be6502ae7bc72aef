"""Accounts: SASL (AUTHENTICATE), REGISTER, logging in and out, and nick ownership.

Built into the server as Ergo does it, no services daemon: the accounts live in the
server's database (records.Accounts). Ways in: IRCv3 ``sasl`` (PLAIN and
SCRAM-SHA-256, before or after registration), ``draft/account-registration``
(``REGISTER``), ``PASS account:password`` and the NickServ pseudo-user (services.py).
Passwords are checked with PBKDF2 (tens of ms) in the connection's own thread and
never under the registry lock; failures are limited per account and per address.

A registered nick may be used only by whoever is logged in to the account of that
name: anyone else is asked to log in and renamed after ``nick_claim_timeout``, and
the owner can take the nick back at once.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatroom import sasl
from chatroom.protocol import Cap, Message, casefold, is_valid_nick, serialize
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.records import AccountInfo, AccountStoreError
from chatroom.server.registry import Registry, User, is_loopback, sinks_with
from chatroom.server.session import IRCError, RegState

if TYPE_CHECKING:
    from chatroom.server.session import Session

MECHANISMS = ("PLAIN", "SCRAM-SHA-256")
# IRCv3 sasl-3.1: AUTHENTICATE carries base64 in chunks of 400 bytes (a shorter one,
# or "+", ends the response). A response is at most this much base64 in all: room
# for sasl.MAX_MESSAGE_BYTES once decoded; more is refused (904) before it is kept.
SASL_CHUNK = 400
MAX_SASL_BASE64 = (sasl.MAX_MESSAGE_BYTES + 2) // 3 * 4
# The longest password REGISTER and PASSWD take, in bytes; a REGISTER line may be this
# much longer than IRC's 512 bytes (it is never relayed), so a long passphrase fits.
MAX_PASSWORD_BYTES = 600
MAX_REGISTER_LINE_BYTES = 512 + MAX_PASSWORD_BYTES
# Tries at a free GuestNNNNN nick before giving up on a rename (and retrying later).
GUEST_TRIES = 20
SERVICES_HOST = "services"


@dataclass(slots=True)
class SaslExchange:
    """One AUTHENTICATE exchange in progress on a connection."""

    mechanism: str
    scram: sasl.ScramServer | None = None
    chunks: list[str] = field(default_factory=list)
    size: int = 0
    account: str | None = None  # SCRAM: the account found at the first step
    verified: bool = False  # SCRAM: server-final sent, the client's "+" ends it


def offered(s: Session) -> dict[Cap, str | None]:
    """The account capabilities and their CAP LS 302 values (none without accounts)."""
    if s.reg.accounts is None:
        return {}
    return {
        Cap.ACCOUNT_NOTIFY: None,
        Cap.ACCOUNT_TAG: None,
        Cap.EXTENDED_JOIN: None,
        Cap.SASL: ",".join(MECHANISMS),
        Cap.ACCOUNT_REGISTRATION: "before-connect" if s.cfg.register_before_connect else "",
    }


# --- checking passwords -------------------------------------------------------------------


def _limit_keys(host: str, account: str) -> tuple[str, str]:
    return "account:" + casefold(account), "address:" + host


def login_wait(s: Session, account: str) -> float:
    """Seconds before this connection may try ``account`` again (brute-force limit)."""
    return wait_for_login(s.reg, s.user.host, account)


def wait_for_login(reg: Registry, host: str, account: str) -> float:
    """Seconds before ``host`` may try ``account`` again: the one brute-force limit of
    every way in (IRC and the file host's HTTP Basic)."""
    limiter = reg.login_failures
    return max(limiter.wait(key) for key in _limit_keys(host, account))


def login_failed(s: Session, account: str) -> None:
    record_failure(s.reg, s.user.host, account)


def record_failure(reg: Registry, host: str, account: str) -> None:
    for key in _limit_keys(host, account):
        reg.login_failures.record(key)


def too_many(wait: float) -> str:
    return f"Too many failed logins; try again in {int(wait) + 1} seconds"


def check_login(s: Session, account: str, password: str) -> AccountInfo | str:
    """The account if ``password`` is its password; else why not, for the user."""
    return verify_login(s.reg, s.user.host, account, password)


def verify_login(reg: Registry, host: str, account: str, password: str) -> AccountInfo | str:
    """check_login for a connection from ``host`` that is not a Session (HTTP)."""
    accounts = reg.accounts
    if accounts is None:
        return "This server has no accounts"
    wait = wait_for_login(reg, host, account)
    if wait > 0:
        return too_many(wait)
    try:
        info = accounts.get(account)
    except AccountStoreError:
        return "Accounts cannot be read just now; try again later"
    if info is None or not sasl.check_password(info.credentials, password):
        record_failure(reg, host, account)
        return "Invalid account name or password"
    return info


# --- logging in and out -------------------------------------------------------------------


def log_in(s: Session, account: str) -> None:
    """``account`` is now this connection's: 900, ACCOUNT to those who follow it, oper
    rights the config gives the account, and the nick guard lifted if it is its nick."""
    user, reg = s.user, s.reg
    # before registration there may be no nick or username yet
    source = f"{user.nick}!{user.username or '*'}@{user.host}"
    with reg.lock:
        changed = user.account != account
        user.account = account
        # 900 first: a client of account-notify hears of its own login after it
        s.reply(N.RPL_LOGGEDIN, source, account, f"You are now logged in as {account}")
        if changed:
            _notify_account(s, account)
    opers = {casefold(a) for a in s.cfg.oper_accounts}
    made_oper = casefold(account) in opers and reg.set_user_mode(user, "o", True)
    if made_oper and s.state is RegState.REGISTERED:  # else the welcome shows it
        s.send(Message.of("MODE", user.nick, "+o", source=user.source))
        s.reply(N.RPL_YOUREOPER, "You are now an IRC operator")
    guard_nick(s)


def log_out(s: Session) -> None:
    user, reg = s.user, s.reg
    with reg.lock:
        if user.account is None:
            return
        user.account = None
        _notify_account(s, "*")
    s.reply(N.RPL_LOGGEDOUT, user.source, "You are now logged out")
    guard_nick(s)


def log_out_everywhere(s: Session, account: str) -> None:
    """``account`` was dropped: this user's other connections logged in to it are
    logged out too (901, and ACCOUNT * to those who follow them)."""
    key, reg = casefold(account), s.reg
    with reg.lock:
        for u in list(reg.registered_users()):
            if u is s.user or u.account is None or casefold(u.account) != key:
                continue
            u.account = None
            text = "You are now logged out: the account was dropped"
            u.send(serialize(Message(N.RPL_LOGGEDOUT, (u.nick, u.source, text), s.server)))
            peers = reg.peers_of(u)
            peers.add(u)
            sinks = sinks_with(peers, Cap.ACCOUNT_NOTIFY)
            if sinks:
                _, _, variants = T.stamp(Message.of("ACCOUNT", "*", source=u.source))
                reg.multicast(variants, sinks)


def _notify_account(s: Session, account: str) -> None:
    """account-notify: ACCOUNT to those sharing a room, and (extended-monitor) to
    those watching the nick (lock held)."""
    user = s.user
    if not user.registered:
        return
    peers = s.reg.peers_of(user) | s.reg.watchers_with(user, Cap.ACCOUNT_NOTIFY)
    peers.add(user)
    sinks = sinks_with(peers, Cap.ACCOUNT_NOTIFY)
    if sinks:
        s.relay_sinks(sinks, Message.of("ACCOUNT", account, source=user.source))


# --- SASL ---------------------------------------------------------------------------------


def authenticate(s: Session, msg: Message) -> None:
    """AUTHENTICATE: IRCv3 sasl-3.1/3.2, before registration or after it."""
    arg = msg.params[0]
    if s.reg.accounts is None or Cap.SASL not in s.user.caps:
        s.reply(N.ERR_SASLFAIL, "SASL authentication failed: request the sasl capability first")
        return
    exchange = s.sasl
    if arg == "*":
        s.sasl = None
        s.reply(N.ERR_SASLABORTED, "SASL authentication aborted")
        return
    if exchange is None:
        _start(s, arg.upper())
        return
    if len(arg) > SASL_CHUNK:
        s.sasl = None
        s.reply(N.ERR_SASLTOOLONG, "SASL message too long")
        return
    if arg != "+":
        exchange.chunks.append(arg)
        exchange.size += len(arg)
        if exchange.size > MAX_SASL_BASE64:
            _fail(s, "SASL message too long")
            return
        if len(arg) == SASL_CHUNK:
            return  # more to come
    text, exchange.chunks, exchange.size = "".join(exchange.chunks), [], 0
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        _fail(s, "SASL authentication failed: invalid base64")
        return
    if exchange.mechanism == "PLAIN":
        _plain(s, data)
    else:
        _scram(s, exchange, data)


def _start(s: Session, mechanism: str) -> None:
    if mechanism not in MECHANISMS:
        s.reply(N.RPL_SASLMECHS, ",".join(MECHANISMS), "are available SASL mechanisms")
        s.reply(N.ERR_SASLFAIL, "SASL authentication failed: unknown mechanism")
        return
    exchange = SaslExchange(mechanism)
    if mechanism == "SCRAM-SHA-256":
        accounts = s.reg.accounts

        def lookup(name: str) -> sasl.Credentials | None:
            try:
                info = accounts.get(name) if accounts is not None else None
            except AccountStoreError:
                info = None
            if info is None:
                return None
            exchange.account = info.name
            return info.credentials

        exchange.scram = sasl.ScramServer(
            lookup, fake_secret=s.reg.fake_secret, fake_iterations=s.cfg.scram_iterations
        )
    s.sasl = exchange
    s.send(Message.of("AUTHENTICATE", "+"))


def _fail(s: Session, text: str = "SASL authentication failed") -> None:
    s.sasl = None
    s.reply(N.ERR_SASLFAIL, text)


def _success(s: Session, account: str) -> None:
    s.sasl = None
    log_in(s, account)
    s.reply(N.RPL_SASLSUCCESS, "SASL authentication successful")


def _plain(s: Session, data: bytes) -> None:
    try:
        authzid, authcid, password = sasl.parse_plain(data)
    except sasl.SaslError:
        _fail(s)
        return
    if authzid and casefold(authzid) != casefold(authcid):
        _fail(s, "SASL authentication failed: you may only log in as yourself")
        return
    found = check_login(s, authcid, password)
    if isinstance(found, str):
        _fail(s, f"SASL authentication failed: {found}")
    else:
        _success(s, found.name)


def _scram(s: Session, exchange: SaslExchange, data: bytes) -> None:
    scram = exchange.scram
    assert scram is not None
    if exchange.verified:  # the client's "+" after our server-final
        _success(s, exchange.account or scram.username)
        return
    try:
        if not scram.username:
            wait = login_wait(s, _scram_name(data))
            if wait > 0:
                _fail(s, f"SASL authentication failed: {too_many(wait)}")
                return
            reply = scram.first(data)
        else:
            reply = scram.final(data)
    except sasl.SaslError as e:
        if scram.username and e.reason in ("invalid-proof", "unknown-user"):
            login_failed(s, scram.username)
            _fail(s, "SASL authentication failed: Invalid account name or password")
        else:
            _fail(s)
        return
    if scram.authenticated:
        if exchange.account is None:  # cannot happen: a fake account never verifies
            _fail(s)
            return
        exchange.verified = True
    _send_chunked(s, reply)


def _scram_name(data: bytes) -> str:
    """The username of a SCRAM client-first message, for the brute-force limit (the
    exchange checks the message itself)."""
    for part in data.decode("utf-8", "replace").split(","):
        if part.startswith("n="):
            return part[2:].replace("=2C", ",").replace("=3D", "=")
    return ""


def _send_chunked(s: Session, data: bytes) -> None:
    text = base64.b64encode(data).decode("ascii")
    for i in range(0, len(text), SASL_CHUNK):
        s.send(Message.of("AUTHENTICATE", text[i : i + SASL_CHUNK]))
    if len(text) % SASL_CHUNK == 0:
        s.send(Message.of("AUTHENTICATE", "+"))


def abort_sasl(s: Session) -> None:
    """Registration completes while an exchange is open: it ends unfinished (906)."""
    if s.sasl is not None:
        s.sasl = None
        s.reply(N.ERR_SASLABORTED, "SASL authentication aborted")


def pass_login(s: Session, password: str) -> None:
    """``PASS account:password`` (or a password for the account named like the nick)
    on a server without a server password: logs in at registration, for clients
    that speak no SASL. A wrong one is said, and the connection goes on without."""
    if s.reg.accounts is None or s.user.account is not None:
        return
    account, sep, secret = password.partition(":")
    if not sep:
        account, secret = s.user.nick, password
    found = check_login(s, account, secret)
    if isinstance(found, str):
        s.notice(f"*** Login with PASS failed: {found}")
    else:
        log_in(s, found.name)


# --- REGISTER (draft/account-registration) --------------------------------------------------


def is_register_line(raw: bytes) -> bool:
    """Whether a raw line (tags and source allowed) is a REGISTER command."""
    words = raw.split(b" ", 3)
    while words and words[0][:1] in (b"@", b":"):
        words.pop(0)
    return bool(words) and words[0].upper() == b"REGISTER"


def register(s: Session, msg: Message) -> None:
    """``REGISTER <account> <email> <password>``; the e-mail is not used on a LAN."""
    accounts = s.reg.accounts
    if accounts is None:
        raise IRCError(N.ERR_UNKNOWNCOMMAND, "REGISTER", "Unknown command")
    name, password = msg.params[0], msg.params[2]
    if name == "*":
        name = s.user.nick if s.user.nick != "*" else (s.pending.nick or s.tried_nick or "*")
    if s.state is not RegState.REGISTERED and not s.cfg.register_before_connect:
        s.fail("REGISTER", "COMPLETE_CONNECTION_REQUIRED", "Register after connecting", name)
        return
    error = create_account(s, name, password)
    if error is not None:
        code, text = error
        s.fail("REGISTER", code, text, name)
        return
    s.send(Message("REGISTER", ("SUCCESS", name, "Account created"), s.server))
    log_in(s, name)


def create_account(s: Session, name: str, password: str) -> tuple[str, str] | None:
    """Register ``name`` (the user's nick) with ``password`` and say nothing; on
    failure, the REGISTER FAIL code and its text."""
    accounts = s.reg.accounts
    assert accounts is not None
    user = s.user
    if user.account is not None:
        return "ALREADY_AUTHENTICATED", f"You are already logged in as {user.account}"
    if name == "*" or not is_valid_nick(name, s.cfg.nicklen) or is_service(name):
        return "BAD_ACCOUNT_NAME", "That is not a valid account name"
    holder = s.reg.users.get(casefold(name))
    if holder is not None and holder is not user:
        return "ACCOUNT_EXISTS", "Someone else is using that name"
    if casefold(name) != casefold(user.nick):
        return "ACCOUNT_NAME_MUST_BE_NICK", "The account name must be your nick"
    size = len(password.encode())
    if size < s.cfg.password_min_length or password == "*":
        return "WEAK_PASSWORD", f"Passwords need at least {s.cfg.password_min_length} characters"
    if size > MAX_PASSWORD_BYTES:
        return "WEAK_PASSWORD", f"Passwords may have at most {MAX_PASSWORD_BYTES} bytes"
    limited = not (s.cfg.exempt_loopback and is_loopback(user.host))
    key = "address:" + user.host
    if limited and s.reg.registrations.wait(key) > 0:
        return "TEMPORARILY_UNAVAILABLE", "Too many accounts registered from here; try later"
    creds = sasl.make_credentials(password, s.cfg.scram_iterations)
    try:
        if not accounts.create(name, creds):
            return "ACCOUNT_EXISTS", "That name is taken: an account has it, or had it"
    except AccountStoreError:
        return "TEMPORARILY_UNAVAILABLE", "Accounts cannot be saved just now; try later"
    if limited:
        s.reg.registrations.record(key)
    return None


# --- nick ownership -----------------------------------------------------------------------


SERVICE_NICKS = frozenset({"nickserv", "chanserv"})


def is_service(nick: str) -> bool:
    return casefold(nick) in SERVICE_NICKS


def to_service(msg: Message) -> bool:
    """Whether ``msg`` is a PRIVMSG to NickServ or ChanServ (those take no lock)."""
    return msg.command == "PRIVMSG" and bool(msg.params) and is_service(msg.params[0])


def owns(user: User, nick: str) -> bool:
    return user.account is not None and casefold(user.account) == casefold(nick)


def guard_nick(s: Session) -> None:
    """Someone not logged in to the account of their nick's name gets
    ``nick_claim_timeout`` seconds to log in before being renamed (call outside the
    registry lock: it reads the database)."""
    s.nick_deadline = None
    accounts, timeout = s.reg.accounts, s.cfg.nick_claim_timeout
    user = s.user
    if accounts is None or timeout <= 0 or s.state is not RegState.REGISTERED:
        return
    if owns(user, user.nick):
        return
    try:
        if accounts.get(user.nick) is None:  # no account, or a dropped one: nobody's
            return
    except AccountStoreError:
        return  # unknown: leave them be rather than rename anyone by mistake
    s.nick_deadline = (s.clock() + timeout, casefold(user.nick))
    service_notice(
        s,
        "NickServ",
        f"{user.nick} is a registered nick. Log in within {int(timeout)} seconds"
        f" (/msg NickServ IDENTIFY <password>) or you will be renamed.",
    )


def enforce_nick(s: Session, now: float) -> None:
    """From the timer: rename whoever still squats a registered nick past the deadline."""
    deadline = s.nick_deadline
    if deadline is None or now < deadline[0]:
        return
    s.nick_deadline = None
    user = s.user
    if casefold(user.nick) == deadline[1] and not owns(user, user.nick):
        new = rename_to_guest(s.reg, user, s.cfg.guest_prefix)
        if new is not None:
            service_notice(s, "NickServ", f"You did not log in: you are now {new}.")


def take_back(s: Session, nick: str) -> bool:
    """The owner of ``nick``'s account wants it while someone else has it: that one is
    renamed at once. False when it is not this user's to take."""
    user = s.user
    if not owns(user, nick):
        return False
    with s.reg.lock:
        holder = s.reg.users.get(casefold(nick))
        if holder is None or holder is user:
            return True
        if owns(holder, nick):
            return False  # the owner's other connection keeps it
        return rename_to_guest(s.reg, holder, s.cfg.guest_prefix) is not None


def beside_own(s: Session, nick: str) -> str | None:
    """Before registration, a connection logged in to the account of ``nick`` asks for
    it while another connection of that account has it (a second device): it gets
    ``nick_`` (or ``nick_2``...) instead, claimed and said in a NOTICE, rather than a
    433 that a client which does not try another nick would wait on forever. None when
    that is not the case (the caller answers 433)."""
    user, reg = s.user, s.reg
    holder = reg.users.get(casefold(nick))
    if holder is None or holder is user or not owns(user, nick) or not owns(holder, nick):
        return None
    for suffix in ("_", *(f"_{i}" for i in range(2, 10))):
        other = nick[: s.cfg.nicklen - len(suffix)] + suffix
        if reg.claim_nick(user, other):
            s.notice(f"*** {nick} is in use by your other connection: this one is {other}")
            return other
    return None


def rename_to_guest(reg: Registry, user: User, prefix: str) -> str | None:
    """Rename ``user`` to a free ``GuestNNNNN`` and tell it and its rooms (any thread)."""
    with reg.lock:
        if user.gone:
            return None
        for _ in range(GUEST_TRIES):
            new = f"{prefix}{secrets.randbelow(100_000):05d}"
            old_source = user.source
            if reg.claim_nick(user, new):
                break
        else:
            return None
        if user.registered:
            peers = reg.peers_of(user)
            peers.add(user)
            nick = Message.of("NICK", new, source=old_source)
            _, _, variants = T.stamp(nick, None, user.account)
            reg.multicast(variants, tuple(p.conn for p in peers))
        return new


def service_notice(s: Session, service: str, text: str) -> None:
    """A NOTICE from NickServ or ChanServ to this user."""
    source = f"{service}!{service}@{SERVICES_HOST}"
    target = s.user.nick
    s.out(serialize(Message.of("NOTICE", target, text, source=source)))
