"""The client's IRC connection: asyncio streams, registration, PING/lag, reconnects.

It runs as a task on whatever asyncio loop it is started in (the Textual app's, a
benchmark's, a test bot's) and reports everything through one callback taking small
frozen event dataclasses (:mod:`chatroom.client.events`). It never touches widgets and
knows nothing about rooms: those belong to :mod:`chatroom.client.session`.

Registration follows IRCv3 capability negotiation: ``CAP LS 302`` first, then
``PASS``/``NICK``/``USER``; the server's ``CAP LS`` is answered with one ``REQ`` for
what we want *and it offered* (a REQ is all-or-nothing: one unknown name and the
server NAKs the lot), then ``CAP END``. A server without CAP answers 421 and
registers us anyway. What the capabilities mean is the session's business
(:mod:`chatroom.client.history`, :mod:`chatroom.client.session`); here they are names.

Logging in is part of registration: the connection's
:class:`~chatroom.client.auth.Authenticator` speaks SASL (or REGISTER) between the
capabilities' ACK and ``CAP END``, which waits for it at most
:data:`~chatroom.client.auth.AUTH_TIMEOUT`, and NickServ after 001 where there is no
SASL. ``/login``, ``/register`` and ``/logout`` go through it too (:meth:`Connection.login`).

TLS (``settings.tls``): a certificate that validates against the system's authorities
and the host name is accepted as it is. Otherwise the connection connects again without
verifying, takes the certificate's fingerprint and asks :mod:`chatroom.client.trust`:
one trusted before (or given with ``--trust-fingerprint``) is accepted; one never seen
goes to ``ask_trust`` (the app's dialog) on first contact; any other is refused for good
(a :class:`~chatroom.client.events.TrustRefused` event, then CLOSED), reconnects
included: a changed certificate never turns into a reconnect loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatroom.client.auth import AUTH_TIMEOUT, Authenticator, Credentials, is_loopback
from chatroom.client.events import (
    TRANSITIONS,
    ConnState,
    Event,
    LagMeasured,
    LoggedIn,
    Notice,
    Received,
    Registered,
    StateChanged,
    TrustRefused,
)
from chatroom.client.trust import (
    KnownServers,
    TrustQuestion,
    Verdict,
    fingerprint_of,
    forget_command,
    judge,
    server_address,
)
from chatroom.protocol import (
    MAX_LINE_BYTES,
    MAX_TAGS_BYTES,
    Cap,
    LineBuffer,
    LineTooLong,
    Message,
    Numeric,
    PeerProtocolError,
    casefold,
    parse,
    serialize,
)

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "BASIC_CAPS",
    "CONNECT_TIMEOUT",
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "LAG_INTERVAL",
    "PING_TIMEOUT",
    "SERVER_LINE_BYTES",
    "SERVER_MESSAGE_BYTES",
    "SERVER_TAGS_BYTES",
    "WANTED_CAPS",
    "ConnState",
    "Connection",
    "ConnectionSettings",
    "Event",
    "LagMeasured",
    "Notice",
    "Received",
    "Registered",
    "StateChanged",
    "TrustAsker",
]

DEFAULT_PORT = 6667
# IRC over TLS (RFC 7194).
DEFAULT_TLS_PORT = 6697
# How long closing waits for the socket to close (TLS: the peer's close_notify) before
# it closes it abruptly; asyncio's own default for TLS is 30 s.
CLOSE_TIMEOUT = 2.0
# TLS older than 1.2 is refused (RFC 8996 deprecates 1.0 and 1.1).
TLS_MIN_VERSION = ssl.TLSVersion.TLSv1_2
# How long a TCP connect may take before we call the host unreachable (a LAN answers
# in milliseconds; a missing host would otherwise hang for the OS default of minutes).
CONNECT_TIMEOUT = 10.0
# How long registration may take before we give up and retry (servers allow 60 s+).
REGISTER_TIMEOUT = 30.0
# Send a lag-measuring PING this often once registered.
LAG_INTERVAL = 30.0
# No bytes at all for this long (our lag PINGs included) means the link is dead.
PING_TIMEOUT = 90.0
# Reconnect delays: BACKOFF_BASE * 2**attempt, capped at BACKOFF_MAX, times a jitter
# factor in [1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER] so a LAN full of clients does
# not reconnect in lockstep after a server restart.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
BACKOFF_JITTER = 0.25
# One read from the socket; lines are framed by LineBuffer whatever the chunk size.
READ_CHUNK = 65536
# What we accept from a server; a longer line is dropped, with a line in the log.
# The tag section (with its '@' and space): MAX_TAGS_BYTES, 8191 (IRCv3 message-tags).
SERVER_TAGS_BYTES = MAX_TAGS_BYTES
# The rest, with its CR-LF: RFC 1459 section 2.3 says 512 (MAX_LINE_BYTES), but a
# server relays a client's line of up to 512 bytes with ":nick!user@host " put in
# front (ours does, and so do others: nothing truncates it), so we allow another 512
# for that prefix: a host name is at most 253 bytes (RFC 1035), nick and user name
# a few dozen each.
SOURCE_PREFIX_BYTES = 512
SERVER_MESSAGE_BYTES = MAX_LINE_BYTES + SOURCE_PREFIX_BYTES
# A whole line: what LineBuffer holds of an unterminated one before it gives up on it
# (and skips to its end) rather than let a server grow our memory without bound.
SERVER_LINE_BYTES = SERVER_TAGS_BYTES + SERVER_MESSAGE_BYTES
# Capabilities we ask for when the server offers them: server-time (honour @time),
# message-tags (msgids), echo-message (our lines come back, confirmed), batch and
# draft/chathistory (history on join, scroll-back, gap fill), labeled-response (match
# replies to requests), away-notify and multi-prefix (member list); sasl and
# draft/account-registration (log in, register), account-notify, account-tag and
# extended-join (who is logged in, shown beside nicks); draft/event-playback (reactions
# in history) and draft/message-redaction (deleted messages).
WANTED_CAPS = frozenset(
    {
        Cap.ACCOUNT_NOTIFY,
        Cap.ACCOUNT_REGISTRATION,
        Cap.ACCOUNT_TAG,
        Cap.AWAY_NOTIFY,
        Cap.BATCH,
        Cap.CHATHISTORY,
        Cap.DRAFT_CHATHISTORY,
        Cap.DRAFT_EVENT_PLAYBACK,
        Cap.ECHO_MESSAGE,
        Cap.EXTENDED_JOIN,
        Cap.LABELED_RESPONSE,
        Cap.MESSAGE_REDACTION,
        Cap.MESSAGE_TAGS,
        Cap.MULTI_PREFIX,
        Cap.SASL,
        Cap.SEARCH,  # soju.im/search: Ctrl+F searches the server's history too
        Cap.SERVER_TIME,
        "draft/multiline",  # several lines as one message (with batch)
        "draft/read-marker",  # MARKREAD: what was read, shared by an account's clients
    }
)
# What a bare client asks for (tests' scripted users see every line as sent).
BASIC_CAPS = frozenset({Cap.SERVER_TIME, Cap.MULTI_PREFIX})
# Nick length assumed for nick_ retries until ISUPPORT says otherwise (RFC 2812: 9).
DEFAULT_NICKLEN = 9
LAG_TOKEN_PREFIX = "lag"

# Lines the authenticator follows (AUTHENTICATE itself is read apart: see _read_loop).
_AUTH_COMMANDS = frozenset(
    {
        "ACCOUNT",
        "FAIL",
        "REGISTER",
        Numeric.RPL_LOGGEDIN,
        Numeric.ERR_NICKLOCKED,
        Numeric.RPL_SASLSUCCESS,
        Numeric.ERR_SASLFAIL,
        Numeric.ERR_SASLTOOLONG,
        Numeric.ERR_SASLABORTED,
        Numeric.ERR_SASLALREADY,
        Numeric.RPL_SASLMECHS,
    }
)

_log = logging.getLogger(__name__)

# Asks the user whether to trust a certificate seen for the first time (True: trust).
TrustAsker = Callable[[TrustQuestion], Awaitable[bool]]
# (verifying, not verifying): made once, in a thread (loading the system's CAs takes a while).
_tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None = None


def _make_tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    verifying = ssl.create_default_context()
    verifying.minimum_version = TLS_MIN_VERSION
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.minimum_version = TLS_MIN_VERSION
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # the fingerprint is checked instead
    return verifying, unverified


async def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The client's SSL contexts: one that verifies against the system's CAs and the
    host name, one that takes any certificate (for pinning by fingerprint)."""
    global _tls_contexts
    if _tls_contexts is None:
        _tls_contexts = await asyncio.to_thread(_make_tls_contexts)
    return _tls_contexts


class _Refused(Exception):
    """The certificate is not to be trusted: the connection ends for good."""


async def open_stream(
    host: str, port: int, context: ssl.SSLContext | None, timeout: float, close_timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to ``host``:``port``, with TLS when ``context`` is given (its
    handshake within ``timeout`` too, its close within ``close_timeout``): the chat
    link's and the file host's (transfer.py) way of connecting."""
    if context is None:
        connecting = asyncio.open_connection(host, port)
    else:
        connecting = asyncio.open_connection(
            host,
            port,
            ssl=context,
            server_hostname=host,
            ssl_handshake_timeout=timeout,
            ssl_shutdown_timeout=close_timeout,
        )
    return await asyncio.wait_for(connecting, timeout=timeout)


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Who to connect to and as whom.

    ``password`` is the server's (PASS); ``credentials`` the account to log in to (or
    register) at every connect. ``allow_plain_sasl``: send a password as it is (SASL
    PLAIN, NickServ) even where the link is neither TLS nor loopback. ``tls``: connect
    with TLS. ``trust_fingerprint`` (normalised, see
    :func:`~chatroom.client.trust.normalise_fingerprint`): accept the certificate with
    this fingerprint and no other, without asking or looking at the authorities.
    ``expected_fingerprint``: the one the server announced on the network (discovery),
    shown beside the presented one when the user is asked.
    """

    host: str
    port: int = DEFAULT_PORT
    nick: str = "guest"
    password: str | None = None
    credentials: Credentials | None = None
    allow_plain_sasl: bool = False
    tls: bool = False
    trust_fingerprint: str | None = None
    expected_fingerprint: str | None = None
    auth_timeout: float = AUTH_TIMEOUT
    username: str | None = None
    realname: str = "chatroom user"
    reconnect: bool = True
    lag_interval: float = LAG_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    backoff_base: float = BACKOFF_BASE
    backoff_max: float = BACKOFF_MAX
    wanted_caps: frozenset[str] = WANTED_CAPS


class Connection:
    """One IRC connection that keeps itself alive until :meth:`close`.

    ``on_event`` is called on the loop's thread for every event, in order. It must not
    block; it may call :meth:`send`. ``ask_trust`` asks the user about a TLS certificate
    seen for the first time (None: such a certificate is refused); ``known`` keeps the
    fingerprints trusted (None: nothing is kept between runs).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        on_event: Callable[[Event], None],
        *,
        ask_trust: TrustAsker | None = None,
        known: KnownServers | None = None,
    ) -> None:
        self.settings = settings
        self.on_event = on_event
        self.ask_trust = ask_trust
        self.known = known
        # The fingerprint accepted for this server in this run (reconnects must match it
        # even when the trust file could not be written).
        self.accepted_fingerprint: str | None = None
        # The link in use is TLS (None: not connected yet).
        self.tls_version: str | None = None
        # The SHA-256 fingerprint of the certificate of the last TLS link: the server's
        # file host presents the same one (chatroom.client.transfer pins it).
        self.peer_fingerprint: str | None = None
        self.state = ConnState.IDLE
        self.nick = settings.nick
        # The nick to ask for on the next registration: the user's latest /nick.
        self.preferred_nick = settings.nick
        self.caps: frozenset[str] = frozenset()
        self.lag: float | None = None
        self.auth = Authenticator(settings.credentials, allow_plain=settings.allow_plain_sasl)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._attempt = 0
        self._nicklen = DEFAULT_NICKLEN
        self._cap_ls: dict[str, str] = {}  # offered capability -> its value ("" if none)
        self._cap_pending = False
        self._cap_ready = False  # negotiation over: CAP END may go once auth is not busy
        self._auth_deadline: float | None = None
        self._lag_sent: dict[str, float] = {}
        self._fatal: str | None = None
        self._nick_tries = 0

    # --- public API ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start connecting (and reconnecting) in the background on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="irc")
        return self._task

    @property
    def connected(self) -> bool:
        """True once registered and until the link drops."""
        return self.state is ConnState.CONNECTED

    def offered(self, cap: str) -> str:
        """The value the server gave ``cap`` in CAP LS ("" if none, or not offered)."""
        return self._cap_ls.get(cap, "")

    def send(self, message: Message) -> bool:
        """Queue one line for the server; False when there is no link to send it on.

        Raises :class:`~chatroom.protocol.UnserializableMessage` for a line IRC
        cannot carry (CR/LF/NUL, a bad middle parameter): the caller's bug to show.
        """
        data = serialize(message)
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    async def drain(self) -> None:
        """Wait until the kernel has taken what we queued (flow control for bulk sends)."""
        writer = self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    def login(self, credentials: Credentials) -> None:
        """``/login`` once registered (SASL, or NickServ where there is none)."""
        self._auth_flush(self.auth.login(credentials))

    def register(self, credentials: Credentials) -> None:
        """``/register`` once registered (REGISTER, or NickServ where there is none)."""
        self._auth_flush(self.auth.register(credentials))

    def logout(self) -> None:
        """``/logout``: NickServ LOGOUT; reconnects no longer log in."""
        self._auth_flush(self.auth.logout())

    def reconnect_now(self) -> None:
        """Skip the rest of a backoff delay (the user asked to reconnect)."""
        self._attempt = 0
        self._wakeup.set()

    async def close(self, reason: str = "Leaving") -> None:
        """Say QUIT (when connected), close the socket and stop reconnecting."""
        if self.state is ConnState.CLOSED:
            return
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(Exception):
                self._writer.write(serialize(Message.of("QUIT", reason)))
                await asyncio.wait_for(self._writer.drain(), timeout=1.0)
        self._set_state(ConnState.CLOSED, "closed")
        writer = self._writer
        self._close_socket()
        if writer is not None:
            # TLS says goodbye (close_notify) before the socket closes: give it a moment,
            # then close it anyway, so nothing is left open when the loop stops.
            try:
                await asyncio.wait_for(writer.wait_closed(), timeout=CLOSE_TIMEOUT)
            except Exception:
                writer.transport.abort()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def drop(self) -> None:
        """Close the socket abruptly (as a network failure would): we will reconnect."""
        self._close_socket()

    # --- state ----------------------------------------------------------------------------

    def _set_state(self, state: ConnState, reason: str = "", retry_in: float | None = None) -> None:
        if state is self.state:
            return
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal connection transition {self.state} -> {state}")
        self.state = state
        self.on_event(StateChanged(state, reason, retry_in))

    def _close_socket(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    def _backoff(self) -> float:
        s = self.settings
        delay = min(s.backoff_max, s.backoff_base * (2**self._attempt))
        return delay * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, and reconnect after every loss, until closed.

        This task must never die quietly while the app still shows "connected": an
        exception from a session (a bug of ours, or of a line handler that
        ``on_event`` runs) is logged, told to the user, and ends that session like
        any lost link, so the usual backoff and reconnect follow.
        """
        s = self.settings
        while self.state is not ConnState.CLOSED:
            try:
                self._set_state(ConnState.CONNECTING, f"connecting to {s.host}:{s.port}")
                reason = await self._session()
            except Exception as exc:
                reason = self._internal_error(exc)
            if self.state is ConnState.CLOSED:
                return
            if self._fatal is not None or not s.reconnect:
                self._set_state_safely(ConnState.CLOSED, self._fatal or reason)
                return
            delay = self._backoff()
            self._attempt += 1
            self._set_state_safely(ConnState.WAITING, reason, retry_in=delay)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    def _internal_error(self, exc: Exception) -> str:
        """A session raised: log it, tell the user, close the socket; the reason in words."""
        s = self.settings
        _log.error("internal error in the connection to %s:%s", s.host, s.port, exc_info=exc)
        self._close_socket()
        self._lag_sent.clear()
        name = exc.__class__.__name__
        detail = f"{name}: {exc}" if str(exc) else name
        with contextlib.suppress(Exception):  # the handler that failed may fail again
            self.on_event(Notice(f"Internal error in the connection ({detail})", error=True))
        return f"internal error ({name})"

    def _set_state_safely(
        self, state: ConnState, reason: str = "", retry_in: float | None = None
    ) -> None:
        """:meth:`_set_state` outside a session: a failing ``on_event`` is only logged
        (the state has moved already), so the loop goes on."""
        try:
            self._set_state(state, reason, retry_in)
        except Exception:
            _log.exception("connection state event %s failed", state)

    async def _session(self) -> str:
        """One connection from TCP connect to loss; returns why it ended, in words."""
        s = self.settings
        self.tls_version = None
        try:
            if s.tls:
                reader, writer = await self._open_tls()
            else:
                reader, writer = await self._open()
        except _Refused as exc:
            self._fatal = str(exc)
            return self._fatal
        except ConnectionRefusedError:
            return f"connection refused by {s.host}:{s.port} (is the server running?)"
        except TimeoutError:
            return f"no answer from {s.host}:{s.port} within {CONNECT_TIMEOUT:.0f} s"
        except ssl.SSLError as exc:
            return self._tls_failed(exc)
        except OSError as exc:
            return f"cannot connect to {s.host}:{s.port}: {exc.strerror or exc}"
        if self.state is ConnState.CLOSED:
            writer.close()
            return "closed"
        self._reader, self._writer = reader, writer
        peer = writer.get_extra_info("peername")
        secure = self.tls_version is not None or is_loopback(peer[0] if peer else None)
        self.auth.reset(secure=secure)
        self._auth_deadline = None
        pinger: asyncio.Task[None] | None = None
        try:
            self._set_state(ConnState.REGISTERING, "registering")
            self._begin_registration()
            pinger = asyncio.get_running_loop().create_task(self._lag_loop())
            return await self._read_loop(reader)
        finally:
            if pinger is not None:
                pinger.cancel()
            self._close_socket()
            self._lag_sent.clear()

    # --- opening the link -------------------------------------------------------------------

    async def _open(
        self, context: ssl.SSLContext | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        s = self.settings
        return await open_stream(s.host, s.port, context, CONNECT_TIMEOUT, CLOSE_TIMEOUT)

    async def _open_tls(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS link whose certificate is trusted, or :class:`_Refused`.

        The authorities first (unless ``--trust-fingerprint`` says which certificate):
        a valid certificate for the host name needs no question. Otherwise a second
        handshake that verifies nothing, and the certificate's fingerprint decides.
        """
        s = self.settings
        verifying, unverified = await tls_contexts()
        why = ""
        if s.trust_fingerprint is None:
            try:
                reader, writer = await self._open(verifying)
            except ssl.SSLCertVerificationError as exc:
                why = exc.verify_message or str(exc.reason or "")
            else:
                self._secured(writer, "valid for this host name (certificate authority)")
                return reader, writer
        reader, writer = await self._open(unverified)
        try:
            await self._trust(writer, why)
        except BaseException:
            writer.transport.abort()  # nothing to say to a server we do not trust
            raise
        return reader, writer

    async def _trust(self, writer: asyncio.StreamWriter, why: str) -> None:
        """Decide on the certificate of an unverified link; :class:`_Refused` if not."""
        s = self.settings
        address = server_address(s.host, s.port)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise _Refused(f"{address} sent no certificate")
        known = self.known

        def look() -> tuple[str, str | None, str]:
            presented = fingerprint_of(der)
            stored = known.get(address) if known is not None else None
            if stored is None:
                return presented, None, ""
            return presented, stored.fingerprint, stored.trusted

        presented, stored, since = await asyncio.to_thread(look)
        pinned = s.trust_fingerprint is not None
        trusted = s.trust_fingerprint or stored or self.accepted_fingerprint
        verdict = judge(presented, trusted)
        if verdict is Verdict.REFUSE:
            assert trusted is not None
            self.on_event(TrustRefused(address, presented, trusted, pinned, since))
            if pinned:
                raise _Refused(
                    f"the certificate of {address} is SHA-256 {presented}, not the "
                    f"{trusted} given with --trust-fingerprint"
                )
            raise _Refused(
                f"the certificate of {address} has changed: SHA-256 {presented}, not the "
                f"{trusted} trusted for it; if the new one is right: {forget_command(address)}"
            )
        if verdict is Verdict.ASK:
            if self.ask_trust is None:
                raise _Refused(
                    f"the certificate of {address} (SHA-256 {presented}) is not trusted "
                    "yet; --trust-fingerprint accepts it"
                )
            question = TrustQuestion(address, presented, s.expected_fingerprint, why)
            if not await self.ask_trust(question):
                raise _Refused(f"you did not trust the certificate of {address}")
            if known is not None:
                try:
                    await asyncio.to_thread(known.trust, address, presented)
                except OSError as exc:
                    self.on_event(
                        Notice(
                            f"Could not keep the fingerprint in {known.path} ({exc}); you "
                            "will be asked again next time",
                            error=True,
                        )
                    )
            how = "trusted by you now"
        elif pinned:
            how = "the one given with --trust-fingerprint"
        else:
            how = "trusted on first use" + (f" ({since})" if since else "")
        self.accepted_fingerprint = presented
        self._secured(writer, f"SHA-256 {presented}, {how}")

    def _secured(self, writer: asyncio.StreamWriter, how: str) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        self.tls_version = ssl_object.version() if ssl_object is not None else "TLS"
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.peer_fingerprint = fingerprint_of(der) if der else None
        self.on_event(Notice(f"Encrypted with {self.tls_version}; the certificate is {how}"))

    def _tls_failed(self, exc: ssl.SSLError) -> str:
        """A handshake that failed for another reason than trust, in words."""
        s = self.settings
        where = f"{s.host}:{s.port}"
        if isinstance(exc, ssl.SSLEOFError):
            return f"{where} closed the connection during the TLS handshake"
        reason = exc.reason or exc.__class__.__name__
        if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            # The port speaks plaintext: retrying will not change that.
            self._fatal = (
                f"{where} does not speak TLS ({reason}); plaintext IRC is usually on port "
                f"{DEFAULT_PORT}, TLS on {DEFAULT_TLS_PORT}"
            )
            return self._fatal
        return f"TLS handshake with {where} failed: {reason}"

    def _begin_registration(self) -> None:
        s = self.settings
        self.nick = self.preferred_nick
        self._nick_tries = 0
        self._cap_ls = {}
        self._cap_pending = True
        self._cap_ready = False
        self.caps = frozenset()
        self.send(Message.of("CAP", "LS", "302"))
        if s.password:
            self.send(Message.of("PASS", s.password))
        self.send(Message.of("NICK", self.nick))
        self.send(Message.of("USER", s.username or self.nick, "0", "*", s.realname))

    async def _read_loop(self, reader: asyncio.StreamReader) -> str:
        # A line too long for us is skipped, not fatal: the lines around it still count.
        buffer = LineBuffer(SERVER_LINE_BYTES, skip_long=True)
        register_deadline = time.monotonic() + REGISTER_TIMEOUT
        while True:
            now = time.monotonic()
            if self.state is ConnState.REGISTERING:
                timeout = max(0.0, register_deadline - now)
            else:
                timeout = self.settings.ping_timeout
            auth_deadline = self._auth_deadline
            if auth_deadline is not None:
                timeout = min(timeout, max(0.0, auth_deadline - now))
            try:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout=timeout)
            except TimeoutError:
                if auth_deadline is not None and time.monotonic() >= auth_deadline:
                    self._auth_flush(self.auth.expire())
                    continue
                if self.state is ConnState.REGISTERING:
                    return "the server did not finish registration in time"
                return f"no reply from the server for {timeout:.0f} s (ping timeout)"
            except (ConnectionError, OSError) as exc:
                return f"connection lost: {exc.strerror or exc.__class__.__name__}"
            if not data:
                return "the server closed the connection"
            for line in buffer.feed(data):
                try:
                    message = parse(
                        line, max_line_bytes=SERVER_MESSAGE_BYTES, max_tags_bytes=SERVER_TAGS_BYTES
                    )
                except LineTooLong:
                    self._dropped_long(f"{len(line) + 2} bytes")
                    continue
                except PeerProtocolError:
                    # A server we can't read one line of is still worth talking to.
                    continue
                if message.command == "AUTHENTICATE":
                    # SCRAM stretches the password (PBKDF2): off the loop, so the UI
                    # stays live; the read waits, so the exchange stays in order.
                    out = await asyncio.to_thread(self.auth.handle, message, self.nick)
                    self._auth_flush(out)
                    continue
                end = self._handle(message)
                if end is not None:
                    return end
                if self._writer is None:
                    return "closed"
            # Lines the framing skipped came after every line it returned from this read.
            for _ in range(buffer.dropped):
                self._dropped_long(f"over {SERVER_LINE_BYTES} bytes")
            buffer.dropped = 0

    def _dropped_long(self, size: str) -> None:
        self.on_event(
            Notice(f"A line from the server was too long ({size}) and was dropped", error=True)
        )

    # --- protocol ---------------------------------------------------------------------------

    def _handle(self, msg: Message) -> str | None:
        """Registration, CAP, PING/PONG; everything is also passed on. Returns a reason to end."""
        command = msg.command
        if command == "PING":
            self.send(Message.of("PONG", *msg.params[:1]))
            return None
        if command == "PONG":
            token = msg.params[-1] if msg.params else ""
            sent = self._lag_sent.pop(token, None)
            if sent is not None:
                self.lag = time.monotonic() - sent
                self.on_event(LagMeasured(self.lag))
                return None
        elif command == "CAP":
            self._handle_cap(msg)
        elif command == Numeric.RPL_WELCOME:
            self.nick = msg.param(0, self.nick)
            self._attempt = 0
            self._set_state(ConnState.CONNECTED, "connected")
            # NickServ and late REGISTER go before the session's JOINs; words after them.
            for line in self.auth.welcomed():
                self.send(line)
            self.on_event(Registered(self.nick, msg.source or self.settings.host, self.caps))
            self._auth_flush([])
            self._send_lag_ping()
        elif command == Numeric.RPL_ISUPPORT:
            for token in msg.params[1:-1]:
                key, _, value = token.partition("=")
                if key == "NICKLEN" and value.isdigit():
                    self._nicklen = int(value)
        elif command == "NICK" and msg.nick and casefold(msg.nick) == casefold(self.nick):
            self.nick = self.preferred_nick = msg.param(0, self.nick)
        elif self.state is ConnState.REGISTERING and command in (
            Numeric.ERR_NICKNAMEINUSE,
            Numeric.ERR_ERRONEUSNICKNAME,
            "437",  # ERR_UNAVAILRESOURCE (nick delay)
        ):
            self._retry_nick(msg)
        elif command == Numeric.ERR_PASSWDMISMATCH:
            self._fatal = "wrong password: the server refused it (use --password)"
        elif command in _AUTH_COMMANDS:
            self._auth_flush(self.auth.handle(msg, self.nick))
        elif command == "ERROR":
            self.on_event(Received(msg))
            text = msg.param(0, "closing link")
            if self._fatal is None and "password" in text.lower():
                self._fatal = f"wrong password: {text}"
            return self._fatal or f"the server closed the link: {text}"
        self.on_event(Received(msg))
        return None

    def _retry_nick(self, msg: Message) -> None:
        taken = msg.param(1, self.nick)
        self._nick_tries += 1
        if msg.command == Numeric.ERR_ERRONEUSNICKNAME and self._nick_tries == 1:
            candidate = "guest"
        else:
            base = self.nick[: max(1, self._nicklen - 1)]
            candidate = base + "_"
            if casefold(candidate) == casefold(self.nick):
                candidate = base[:-1] + str(self._nick_tries % 10)
        self.on_event(
            Notice(f"nick {taken} is not available ({msg.param(-1)}); trying {candidate}")
        )
        self.nick = candidate
        self.send(Message.of("NICK", candidate))

    def _handle_cap(self, msg: Message) -> None:
        sub = msg.param(1).upper()
        if sub == "LS":
            # Multi-line LS: "CAP * LS * :caps..." continues; the last line has no "*".
            more = len(msg.params) > 3 and msg.params[2] == "*"
            for item in msg.params[-1].split():
                name, _, value = item.partition("=")
                self._cap_ls[name] = value
            if more or not self._cap_pending:
                return
            wanted = sorted(self.settings.wanted_caps & self._cap_ls.keys())
            if wanted:
                self.send(Message.of("CAP", "REQ", " ".join(wanted)))
            else:
                self._caps_done()
        elif sub == "ACK":
            self.caps = self.caps | frozenset(msg.params[-1].split())
            self._caps_done()
        elif sub == "NAK":
            self._caps_done()
        elif sub == "NEW" or sub == "DEL":
            pass  # cap-notify: nothing we want changes at runtime yet

    def _caps_done(self) -> None:
        """Negotiation is over: log in (or register) first if we can, then CAP END."""
        if self._cap_ready or not self._cap_pending:
            return
        self._cap_ready = True
        self._auth_flush(self.auth.caps_ready(self.caps, self._cap_ls))

    def _end_cap(self) -> None:
        if self._cap_pending:
            self._cap_pending = False
            self.send(Message.of("CAP", "END"))

    def _auth_flush(self, out: list[Message]) -> None:
        """Send what the authenticator answered, pass its notices on, keep its deadline,
        and end capability negotiation once it no longer holds registration up."""
        for line in out:
            self.send(line)
        auth = self.auth
        notices, auth.notices = auth.notices, []
        for notice in notices:
            self.on_event(notice)
        if auth.confirmed is not None:
            confirmed, auth.confirmed = auth.confirmed, None
            self.on_event(LoggedIn(confirmed.account))
        if auth.busy:
            if self._auth_deadline is None:
                self._auth_deadline = time.monotonic() + self.settings.auth_timeout
            return
        self._auth_deadline = None
        if self._cap_ready:
            self._end_cap()

    # --- lag -------------------------------------------------------------------------------

    def _send_lag_ping(self) -> None:
        token = f"{LAG_TOKEN_PREFIX}{time.monotonic_ns()}"
        # Only the newest one matters; forget ones a server never answered.
        self._lag_sent = {token: time.monotonic()}
        self.send(Message.of("PING", token))

    async def _lag_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lag_interval)
            if self.state is ConnState.CONNECTED:
                self._send_lag_ping()
