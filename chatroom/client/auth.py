"""Logging in and registering accounts, without I/O: SASL, account registration, NickServ.

An :class:`Authenticator` lives as long as a
:class:`~chatroom.client.connection.Connection` and holds the credentials it logs in
with on every (re)connect. The connection tells it where registration is (capabilities
acknowledged, 001 received) and hands it the lines that concern it (``AUTHENTICATE``,
900-908, ``REGISTER``, ``FAIL REGISTER``); it answers with the lines to send and
collects :class:`~chatroom.client.events.Notice`\\ s for the user. While it is
:attr:`~Authenticator.busy` before registration, ``CAP END`` waits, never longer than
:data:`AUTH_TIMEOUT`.

How a login goes, in order of preference:

* IRCv3 SASL (https://ircv3.net/specs/extensions/sasl-3.1, 3.2): ``SCRAM-SHA-256``
  first, which never sends the password; ``PLAIN`` (the password itself) only over TLS
  or loopback, or when the user allowed it. Before registration when we have
  credentials; after it (``/login``) when the server acknowledged ``sasl``.
* ``draft/account-registration`` (https://ircv3.net/specs/extensions/account-registration)
  to create an account: before registration when the server says ``before-connect``.
* ``NickServ`` (``IDENTIFY``, ``REGISTER``, ``LOGOUT``) when the server has no SASL. It
  carries the password in the clear like PLAIN, so the same rule applies to logging in.

Registering sends the password once in the clear on any link (no mechanism avoids
that); it is what the user asked for, so it is not refused.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatroom.client.events import Notice
from chatroom.protocol import Cap, Message, Numeric, casefold
from chatroom.sasl import SaslError, ScramClient, plain_response

__all__ = [
    "AUTHENTICATE_CHUNK",
    "AUTH_TIMEOUT",
    "MECHANISMS",
    "PLAIN",
    "SCRAM",
    "SERVICES",
    "Authenticator",
    "Credentials",
    "SaslExchange",
    "authenticate_messages",
    "choose_mechanisms",
    "is_loopback",
    "redact_service_text",
]

# Longest a login or REGISTER may hold up registration (CAP END waits for it) or go
# unanswered after it; then we abort and carry on without being logged in. A LAN
# server answers in milliseconds; SCRAM's key stretching takes a fraction of a second.
AUTH_TIMEOUT = 15.0
# IRCv3 sasl-3.1: an AUTHENTICATE payload is base64 in chunks of 400 bytes; a chunk of
# exactly 400 means more follows, so a payload ending on a chunk boundary ends with "+".
AUTHENTICATE_CHUNK = 400
# Reassembled payloads from the server beyond this are refused (a SCRAM message is a
# few hundred bytes; chatroom.sasl bounds the decoded message at 4096 bytes too).
MAX_PAYLOAD_CHARS = 8192
SCRAM = "SCRAM-SHA-256"
PLAIN = "PLAIN"
# What we can do, best first.
MECHANISMS = (SCRAM, PLAIN)
# The services pseudo-user that logs people in where there is no SASL.
SERVICES = "NickServ"
_SERVICE_NAMES = frozenset({"nickserv", "ns"})
# NickServ commands whose arguments carry a password; ours are shown without them.
_SECRET_SERVICE_COMMANDS = frozenset(
    {"IDENTIFY", "ID", "LOGIN", "REGISTER", "GHOST", "RECOVER", "RELEASE", "REGAIN", "PASSWD"}
)
_HIDDEN = "••••••"
# draft/account-registration values (the capability's value, comma-separated flags).
_BEFORE_CONNECT = "before-connect"
_EMAIL_REQUIRED = "email-required"
_SASL_NUMERICS = frozenset(
    {
        Numeric.ERR_NICKLOCKED,
        Numeric.RPL_SASLSUCCESS,
        Numeric.ERR_SASLFAIL,
        Numeric.ERR_SASLTOOLONG,
        Numeric.ERR_SASLABORTED,
        Numeric.ERR_SASLALREADY,
        Numeric.RPL_SASLMECHS,
    }
)
PLAIN_REFUSED = (
    "the server offers only PLAIN, which would send your password unencrypted over this "
    "link (no TLS, not loopback); start with --allow-plain-sasl to allow it"
)
CLEARTEXT_REFUSED = (
    "the server has no SASL, and NickServ would get your password unencrypted over "
    "this link (no TLS, not loopback); start with --allow-plain-sasl to allow it"
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account and its password; ``register``: create the account first."""

    account: str
    password: str = field(repr=False)
    register: bool = False


def is_loopback(address: str | None) -> bool:
    """True for a loopback IP address (IPv4-mapped and scoped IPv6 included).

    >>> [is_loopback(a) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.2", "10.0.0.5", None)]
    [True, True, True, False, False]
    """
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def authenticate_messages(payload: bytes) -> list[Message]:
    """``payload`` as AUTHENTICATE lines: base64 in 400-byte chunks, ``+`` when empty
    or when the last chunk is exactly 400 bytes.

    >>> [str(m) for m in authenticate_messages(b"")]
    ['AUTHENTICATE +']
    >>> [len(m.param(0)) for m in authenticate_messages(b"x" * 300)]
    [400, 1]
    """
    encoded = base64.b64encode(payload).decode("ascii")
    if not encoded:
        return [Message.of("AUTHENTICATE", "+")]
    size = AUTHENTICATE_CHUNK
    out = [Message.of("AUTHENTICATE", encoded[i : i + size]) for i in range(0, len(encoded), size)]
    if len(encoded) % size == 0:
        out.append(Message.of("AUTHENTICATE", "+"))
    return out


def choose_mechanisms(offered: frozenset[str] | None, cleartext_ok: bool) -> list[str]:
    """SASL mechanisms to try, best first. ``offered``: the server's list (``sasl=...``
    or 908), None when it gave none (try, and learn from 908). PLAIN only where a
    password may travel as it is (``cleartext_ok``).

    >>> choose_mechanisms(frozenset({"PLAIN", "SCRAM-SHA-256"}), False)
    ['SCRAM-SHA-256']
    >>> choose_mechanisms(None, True)
    ['SCRAM-SHA-256', 'PLAIN']
    >>> choose_mechanisms(frozenset({"PLAIN", "EXTERNAL"}), False)
    []
    """
    allowed = [m for m in MECHANISMS if m != PLAIN or cleartext_ok]
    if offered is None:
        return allowed
    return [m for m in allowed if m in offered]


def _mechanism_list(text: str) -> frozenset[str]:
    return frozenset(m.strip().upper() for m in text.split(",") if m.strip())


def _why_no_mechanism(offered: frozenset[str]) -> str:
    if PLAIN in offered:
        return PLAIN_REFUSED
    listed = ", ".join(sorted(offered)) or "none"
    return f"the server offers no login mechanism chatroom knows (it offers: {listed})"


def redact_service_text(target: str, text: str) -> str:
    """Our line to NickServ as it may be shown: a password-bearing command loses its
    arguments. Anything else is returned as it is.

    >>> redact_service_text("NickServ", "IDENTIFY alice hunter2")
    'IDENTIFY ••••••'
    >>> redact_service_text("NickServ", "set password hunter2")
    'set password ••••••'
    >>> redact_service_text("bob", "IDENTIFY alice hunter2")
    'IDENTIFY alice hunter2'
    """
    if casefold(target.partition("@")[0]) not in _SERVICE_NAMES:
        return text
    words = text.split()
    if not words:
        return text
    keep = 1
    if words[0].upper() == "SET" and len(words) > 1 and words[1].upper() == "PASSWORD":
        keep = 2
    elif words[0].upper() not in _SECRET_SERVICE_COMMANDS:
        return text
    if len(words) <= keep:
        return text
    return " ".join([*words[:keep], _HIDDEN])


class _Payload:
    """Reassembles one AUTHENTICATE payload from the server's 400-byte chunks."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def feed(self, chunk: str) -> bytes | None:
        """One AUTHENTICATE parameter; the decoded payload once complete, else None."""
        if chunk != "+":
            if len(chunk) > AUTHENTICATE_CHUNK:
                raise SaslError("malformed", "AUTHENTICATE chunk over 400 bytes")
            self._parts.append(chunk)
            self._size += len(chunk)
            if self._size > MAX_PAYLOAD_CHARS:
                raise SaslError("malformed", "AUTHENTICATE payload too long")
            if len(chunk) == AUTHENTICATE_CHUNK:
                return None
        encoded = "".join(self._parts)
        self._parts, self._size = [], 0
        try:
            return base64.b64decode(encoded.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise SaslError("malformed", "bad base64 from the server") from None


class SaslExchange:
    """One SASL login: AUTHENTICATE lines and SASL numerics in, lines to send out.

    Mechanisms are tried in order; the next only when the server's 908 says the one
    we tried is not among its own. ``result`` is None while it runs, then True
    (logged in) or False, with ``error`` saying why in words for the user.
    ``cleartext_ok`` decides whether PLAIN may be tried when 908 names it.
    """

    def __init__(
        self,
        credentials: Credentials,
        mechanisms: list[str],
        *,
        cleartext_ok: bool,
        nonce: str | None = None,
    ) -> None:
        if not mechanisms:
            raise ValueError("no mechanism to try")
        self.credentials = credentials
        self.mechanism = ""
        self.result: bool | None = None
        self.error = ""
        self._todo = list(mechanisms)
        self._tried: list[str] = []
        self._cleartext_ok = cleartext_ok
        self._nonce = nonce
        self._scram: ScramClient | None = None
        self._step = 0
        self._payload = _Payload()
        self._server_mechs: frozenset[str] | None = None

    def start(self) -> list[Message]:
        """Ask for the next mechanism."""
        self.mechanism = self._todo.pop(0)
        self._tried.append(self.mechanism)
        self._scram = None
        self._step = 0
        self._payload = _Payload()
        self._server_mechs = None
        return [Message.of("AUTHENTICATE", self.mechanism)]

    def receive(self, msg: Message) -> list[Message]:
        """A line from the server during the exchange; the lines to answer with."""
        if self.result is not None:
            return []
        command = msg.command
        text = msg.param(-1)
        if command == "AUTHENTICATE":
            return self._challenge(msg.param(0))
        if command == Numeric.RPL_SASLSUCCESS:
            self.result = True
        elif command == Numeric.RPL_SASLMECHS:
            self._server_mechs = _mechanism_list(msg.param(1))
        elif command == Numeric.ERR_SASLFAIL:
            return self._failed(text)
        elif command == Numeric.ERR_SASLTOOLONG:
            self._fail(f"the server found the login message too long ({text})")
        elif command in (
            Numeric.ERR_SASLABORTED,
            Numeric.ERR_SASLALREADY,
            Numeric.ERR_NICKLOCKED,
        ):
            self._fail(text)
        return []

    def abort(self, reason: str) -> list[Message]:
        """Give up (a timeout): the line that tells the server so."""
        if self.result is not None:
            return []
        self._fail(reason)
        return [Message.of("AUTHENTICATE", "*")]

    def _fail(self, error: str) -> None:
        if self.result is None:
            self.result = False
            self.error = error or "the server refused the login"

    def _failed(self, text: str) -> list[Message]:
        """904: another mechanism when the server said ours is not one of its own."""
        offered = self._server_mechs
        if offered is not None and self.mechanism not in offered:
            self._todo = [m for m in self._todo if m in offered]
            if self._todo:
                return self.start()
            usable = choose_mechanisms(offered, self._cleartext_ok)
            if not [m for m in usable if m not in self._tried]:
                self._fail(_why_no_mechanism(offered))
                return []
        self._fail(text)
        return []

    def _challenge(self, chunk: str) -> list[Message]:
        try:
            data = self._payload.feed(chunk)
            if data is None:
                return []
            return self._respond(data)
        except SaslError as exc:
            if exc.reason == "bad-server-signature":
                error = "the server could not prove that it knows your password"
            elif exc.reason == "weak-iterations":
                error = f"the server asked for too weak a key ({exc.detail} iterations)"
            else:
                error = f"the server's login reply was not understood ({exc.reason})"
        except ValueError as exc:  # a NUL in the account or password: ours to refuse
            error = str(exc)
        self._fail(error)
        return [Message.of("AUTHENTICATE", "*")]

    def _respond(self, data: bytes) -> list[Message]:
        creds = self.credentials
        step, self._step = self._step, self._step + 1
        if self.mechanism == PLAIN:
            if step == 0:
                return authenticate_messages(plain_response(creds.account, creds.password))
        elif step == 0:
            self._scram = ScramClient(creds.account, creds.password, nonce=self._nonce)
            return authenticate_messages(self._scram.first())
        elif step == 1 and self._scram is not None:
            return authenticate_messages(self._scram.final(data))
        elif step == 2 and self._scram is not None:
            self._scram.verify(data)
            return [Message.of("AUTHENTICATE", "+")]
        raise SaslError("malformed", "unexpected challenge")


class Authenticator:
    """Logs one connection in (and registers accounts), across its reconnects.

    ``credentials`` are used at every (re)connect; they change only when a login or a
    registration succeeded (so a reconnect logs in with what worked) or on logout.
    ``allow_plain``: the user's consent to PLAIN (and NickServ) over a link that is
    neither TLS nor loopback. Call :meth:`reset` at each new link, :meth:`caps_ready`
    when capability negotiation is over, :meth:`welcomed` at 001, and :meth:`handle`
    with every line; each returns the lines to send. Read and clear ``notices``, and
    ``confirmed`` (credentials the server just accepted).
    """

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        allow_plain: bool = False,
        nonce: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.allow_plain = allow_plain
        self.notices: list[Notice] = []
        self.confirmed: Credentials | None = None
        self.secure = False
        self.caps: frozenset[str] = frozenset()
        self.offered: dict[str, str] = {}
        self.exchange: SaslExchange | None = None
        self._nonce = nonce
        self._registered = False
        self._negotiated = False
        self._registering: Credentials | None = None
        # Credentials sent to NickServ: adopted once the server says we are logged in.
        self._candidate: Credentials | None = None

    # --- the link -----------------------------------------------------------------------

    @property
    def cleartext_ok(self) -> bool:
        """True when a password may be sent as it is: TLS, loopback, or allowed."""
        return self.secure or self.allow_plain

    @property
    def busy(self) -> bool:
        """A login or registration is waiting for the server."""
        running = self.exchange is not None and self.exchange.result is None
        return running or self._registering is not None

    def reset(self, *, secure: bool) -> None:
        """A new link (``secure``: TLS or loopback); nothing of the last one carries on."""
        self.secure = secure
        self.caps = frozenset()
        self.offered = {}
        self.exchange = None
        self._registered = False
        self._negotiated = False
        self._registering = None
        self._candidate = None

    def caps_ready(self, caps: frozenset[str], offered: Mapping[str, str]) -> list[Message]:
        """Capability negotiation is over (``caps`` acknowledged; ``offered``: every
        name the server listed, with its value): what to send before CAP END."""
        self._negotiated = True
        self.caps = caps
        self.offered = dict(offered)
        creds = self.credentials
        if creds is None:
            return []
        if creds.register:
            return self._register_at_connect(creds)
        if Cap.SASL in caps:
            return self._start_sasl(creds)
        return []  # no SASL: NickServ once registered

    def welcomed(self) -> list[Message]:
        """Registration is complete (001): what is left to do (registering after
        connect, NickServ where there is no SASL)."""
        self._registered = True
        creds = self.credentials
        if creds is None:
            return []
        if creds.register:
            if not self._negotiated:
                return self._register_at_connect(creds)  # no CAP at all: tells the user
            if self._registration_flags() is not None and self._registering is None:
                return self._send_register(creds)  # offered, but only after connecting
            return []
        if Cap.SASL in self.caps:
            return []  # done before registration, or told why not
        return self._identify(creds, at_connect=True)

    # --- what the user asks -------------------------------------------------------------

    def login(self, creds: Credentials) -> list[Message]:
        """``/login`` once registered: SASL when acknowledged, else NickServ."""
        if self.busy:
            self._tell("A login or registration is already waiting for the server", True)
            return []
        if Cap.SASL in self.caps:
            return self._start_sasl(creds)
        return self._identify(creds, at_connect=False)

    def register(self, creds: Credentials) -> list[Message]:
        """``/register`` once registered: REGISTER when offered, else NickServ's
        (which registers the nick in use: the caller checks the account is it)."""
        if self.busy:
            self._tell("A login or registration is already waiting for the server", True)
            return []
        flags = self._registration_flags()
        if flags is not None:
            if _EMAIL_REQUIRED in flags:
                self._tell(
                    "This server wants an email address to register, which chatroom "
                    "cannot send yet",
                    True,
                )
                return []
            return self._send_register(creds)
        self._candidate = replace(creds, register=False)
        self._tell(f"Registering {creds.account} with {SERVICES}…")
        return [Message.of("PRIVMSG", SERVICES, f"REGISTER {creds.password}")]

    def logout(self) -> list[Message]:
        """``/logout``: forget the credentials (no login on reconnect) and ask NickServ."""
        self.credentials = None
        self._candidate = None
        return [Message.of("PRIVMSG", SERVICES, "LOGOUT")]

    def expire(self) -> list[Message]:
        """The server did not answer within :data:`AUTH_TIMEOUT`: give up."""
        out: list[Message] = []
        exchange = self.exchange
        if exchange is not None and exchange.result is None:
            out += exchange.abort(f"no answer from the server within {AUTH_TIMEOUT:.0f} s")
            self._sasl_done(exchange)
        if self._registering is not None:
            account = self._registering.account
            self._registering = None
            self._tell(
                f"No answer to registering {account} within {AUTH_TIMEOUT:.0f} s"
                + self._carry_on(),
                True,
            )
        return out

    # --- lines from the server ----------------------------------------------------------

    def handle(self, msg: Message, nick: str) -> list[Message]:
        """A line from the server (``nick``: ours now); the lines to answer with."""
        command = msg.command
        if command == "AUTHENTICATE" or command in _SASL_NUMERICS:
            exchange = self.exchange
            if exchange is None or exchange.result is not None:
                return []
            out = exchange.receive(msg)
            if exchange.result is not None:
                self._sasl_done(exchange)
            return out
        if command == Numeric.RPL_LOGGEDIN:
            self._logged_in(msg.param(2))
        elif command == "ACCOUNT" and msg.nick and casefold(msg.nick) == casefold(nick):
            if msg.param(0) not in ("", "*"):
                self._logged_in(msg.param(0))
        elif command == "REGISTER" and self._registering is not None:
            creds = replace(self._registering, register=False)
            self._registering = None
            if msg.param(0) in ("SUCCESS", "VERIFICATION_REQUIRED"):
                self.credentials = creds  # log in with them from now on
            if msg.param(0) == "SUCCESS":
                self.confirmed = creds
        elif command == "FAIL" and msg.param(0) == "REGISTER" and self._registering is not None:
            self._registering = None
            if self.credentials is not None and self.credentials.register:
                self.credentials = None  # don't try again at every reconnect
        return []

    # --- internals ----------------------------------------------------------------------

    def _tell(self, text: str, error: bool = False) -> None:
        self.notices.append(Notice(text, error=error, active=self._registered))

    def _carry_on(self) -> str:
        return "" if self._registered else "; you are connected without being logged in"

    def _logged_in(self, account: str) -> None:
        candidate = self._candidate
        if candidate is not None and casefold(candidate.account) == casefold(account):
            self.credentials = self.confirmed = candidate
            self._candidate = None

    def _registration_flags(self) -> frozenset[str] | None:
        """The server's account-registration flags; None when it offers none."""
        if Cap.ACCOUNT_REGISTRATION not in self.caps:
            return None
        value = self.offered.get(Cap.ACCOUNT_REGISTRATION, "")
        return frozenset(v.strip() for v in value.split(",") if v.strip())

    def _register_at_connect(self, creds: Credentials) -> list[Message]:
        flags = self._registration_flags()
        if flags is None:
            self.credentials = None
            self._tell(
                f"This server does not support registering accounts from chatroom (no "
                f"{Cap.ACCOUNT_REGISTRATION}), so {creds.account} was not registered; "
                f"once connected, /register PASSWORD asks {SERVICES} instead",
                True,
            )
            return []
        if _EMAIL_REQUIRED in flags:
            self.credentials = None
            self._tell(
                "This server wants an email address to register an account, which "
                f"chatroom cannot send yet; {creds.account} was not registered",
                True,
            )
            return []
        if _BEFORE_CONNECT in flags or self._registered:
            return self._send_register(creds)
        return []  # after 001 (welcomed)

    def _send_register(self, creds: Credentials) -> list[Message]:
        self._registering = creds
        return [Message.of("REGISTER", creds.account, "*", creds.password)]

    def _start_sasl(self, creds: Credentials) -> list[Message]:
        value = self.offered.get(Cap.SASL, "")
        offered = _mechanism_list(value) if value else None
        mechanisms = choose_mechanisms(offered, self.cleartext_ok)
        if not mechanisms:
            assert offered is not None
            self._tell(
                f"Not logging in as {creds.account}: {_why_no_mechanism(offered)}"
                + self._carry_on(),
                True,
            )
            return []
        self.exchange = SaslExchange(
            creds, mechanisms, cleartext_ok=self.cleartext_ok, nonce=self._nonce
        )
        if self._registered:
            self._tell(f"Logging in as {creds.account}…")
        return self.exchange.start()

    def _sasl_done(self, exchange: SaslExchange) -> None:
        if exchange.result:
            self.credentials = self.confirmed = exchange.credentials
            return
        self._tell(
            f"Could not log in as {exchange.credentials.account}: {exchange.error}"
            + self._carry_on(),
            True,
        )

    def _identify(self, creds: Credentials, *, at_connect: bool) -> list[Message]:
        if not self.cleartext_ok:
            self._tell(f"Not logging in as {creds.account}: {CLEARTEXT_REFUSED}", True)
            return []
        self._candidate = creds
        how = "the server has no SASL" if at_connect else "no SASL on this server"
        self._tell(f"Logging in as {creds.account} with {SERVICES} ({how})…")
        return [Message.of("PRIVMSG", SERVICES, f"IDENTIFY {creds.account} {creds.password}")]
