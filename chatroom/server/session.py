"""One connection's IRC state machine: lines in, replies and relays out. No I/O here.

The handler (handler.py) frames received bytes with the session's ``buffer`` and
passes each line to :meth:`Session.handle_line`; every byte for the client leaves
through the connection's ``Sink``. Tests do the same with a list for the socket.

Here: sending and relaying (with labeled-response), dispatch through the command table
(commands/, one module per family), registration states, CAP, liveness and flood
control. No import does I/O (no sqlite3, socket or selectors; a test checks it):
history comes in as the records.History that the server injects.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from chatroom.protocol import (
    Cap,
    LineBuffer,
    LineTooLong,
    Message,
    PeerProtocolError,
    UnknownCommand,
    is_valid_nick,
    parse,
    parse_int,
    serialize,
)
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.config import VERSION, Config
from chatroom.server.flood import FloodGuard
from chatroom.server.records import NO_TAGS, StoredMessage
from chatroom.server.registry import Channel, Registry, Sink, User, with_bot_tag
from chatroom.server.text import raw_label, safe_param, truncate_utf8

# Capabilities this server offers (IRCv3 capability negotiation); chathistory,
# message-redaction (it needs the stored message to check who sent it) and soju's search
# only when the server keeps history.
BASE_CAPS = (
    Cap.AWAY_NOTIFY,
    Cap.BATCH,
    # nothing to notify: what is offered is fixed at start (no CAP NEW or DEL ever)
    Cap.CAP_NOTIFY,
    Cap.DRAFT_MULTILINE,
    Cap.ECHO_MESSAGE,
    Cap.EXTENDED_MONITOR,
    Cap.LABELED_RESPONSE,
    Cap.MESSAGE_TAGS,
    Cap.MULTI_PREFIX,
    Cap.READ_MARKER,
    Cap.SERVER_TIME,
    Cap.SETNAME,
    Cap.USERHOST_IN_NAMES,
)
HISTORY_CAPS = (
    Cap.DRAFT_CHATHISTORY,
    Cap.DRAFT_EVENT_PLAYBACK,
    Cap.MESSAGE_REDACTION,
    Cap.SEARCH,
)
# Looked up for every line: a module global costs a fraction of an Enum attribute.
_LABELED_RESPONSE, _BATCH = Cap.LABELED_RESPONSE, Cap.BATCH
# What a line starts with to be offered to messages.room_line, the hot path.
_ROOM_LINE = (b"PRIVMSG ", b"NOTICE ")
# IRCv3 message-tags: a client's tag data (between '@' and the space, every tag, as
# sent) is at most this many bytes; more gets 417 and the line is dropped.
MAX_CLIENT_TAG_BYTES = 4094
# The reason in a 400 reply quotes the peer's line: bounded, so the reply fits a line
# whatever it sent (a repr of 4-byte characters is ten times their size).
MAX_REASON_BYTES = 200
# What each protocol error hint (PeerProtocolError.fail_code, .numeric) says.
_REFUSAL_TEXT = {
    "INVALID_UTF8": "Message rejected, your message contained invalid UTF-8",
    N.ERR_INPUTTOOLONG: "Input line was too long",
}
_USERNAME_BAD = re.compile(r"[^A-Za-z0-9_.\-~\[\]\\`^{}|]")
# Ranges of numeric parameters (parse_int): counts and limits are 32-bit in every
# IRC server; CHATHISTORY's limit is capped at chathistory_max after parsing.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


# ISUPPORT token naming the file host (soju's extension, doc/ext/filehost.md)
FILEHOST_TOKEN = "soju.im/FILEHOST"


class IRCError(Exception):
    """Raised by a command handler to answer with an error numeric and stop."""

    def __init__(self, numeric: str, *params: str) -> None:
        super().__init__(numeric, *params)
        self.numeric = numeric
        self.params = params


class RegState(Enum):
    """Where a connection is in registration (RFC 2812 3.1, with IRCv3 CAP 302).

    Whether it is still part of the server is another matter (``Session.closed``):
    any thread may end a connection (KILL, a dropped socket, shutdown).
    """

    NEW = "new"  # taking CAP, PASS, NICK and USER
    NEGOTIATING = "negotiating"  # CAP LS or REQ came first: registration waits for CAP END
    REGISTERED = "registered"  # welcomed: every command is open


# The legal moves (Session._move refuses any other: that is a bug, not the peer's doing).
# NEW -> REGISTERED once NICK and USER are given and the password, if any, is right.
TRANSITIONS: dict[RegState, frozenset[RegState]] = {
    RegState.NEW: frozenset({RegState.NEGOTIATING, RegState.REGISTERED}),
    RegState.NEGOTIATING: frozenset({RegState.NEW}),
    RegState.REGISTERED: frozenset(),
}
_REGISTERED = RegState.REGISTERED  # read for every line


@dataclass(slots=True)
class Pending:
    """What a connection has said about itself before it registered (None: not yet)."""

    password: str | None = None  # PASS
    # NICK: claimed at once, so no one else can count on it; but not before the server
    # password is given (whoever lacks it must not hold a nick for the timeout), so
    # until then only wanted, and claimed when registration completes
    nick: str | None = None
    username: str | None = None  # USER, cleaned and cut to USERLEN
    realname: str = ""


class Session:
    """The server side of one client connection."""

    def __init__(
        self,
        registry: Registry,
        conn: Sink,
        host: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reg = registry
        self.cfg: Config = registry.config
        self.history = registry.history  # records.History, or None without history
        self.multicast = registry.multicast
        self.server = self.cfg.server_name
        self.user = User(conn=conn, host=host)
        self.clock = clock
        self.buffer = LineBuffer(self.cfg.recvq_bytes)
        self.flood = FloodGuard(
            self.cfg.flood_burst, self.cfg.flood_rate, self.cfg.flood_max_lag, self.cfg.flood_limit
        )
        self.connected_at = self.last_activity = clock()
        self.ping_sent_at: float | None = None
        self.state = RegState.NEW
        self.pending = Pending()
        self.cap_version = 0
        self.variant = T.PLAIN  # which encoding of relayed lines this client gets
        self._capture: list[bytes] | None = None  # responses held for a labeled batch
        self.sasl: A.SaslExchange | None = None  # AUTHENTICATE in progress
        # (deadline, casefolded nick): log in to the account of that name by then, or be
        # renamed (commands/accounts.py, nick ownership)
        self.nick_deadline: tuple[float, str] | None = None
        self.tried_nick: str | None = None  # the last NICK refused before registration
        self.open_batch: ML.OpenBatch | None = None  # a draft/multiline batch being sent
        # the file host's upload URL for this connection (the handler knows the address
        # and whether it is TLS; web/httpd.py); None: no file host
        self.filehost: str | None = None
        refusal = registry.add_connection(self.user)
        if refusal:
            self.send(Message.of("ERROR", f"Closing Link: {host} ({refusal})"))
            self.user.gone = True
            conn.close(refusal)

    # --- plumbing ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once this connection is no longer part of the server."""
        return self.user.gone

    @property
    def nick(self) -> str:
        return self.user.nick

    def send(self, msg: Message) -> None:
        self.out(serialize(msg))

    def out(self, data: bytes) -> None:
        """Every byte for this client goes through here (labeled-response captures it)."""
        if self._capture is not None:
            self._capture.append(data)
        else:
            self.user.conn.send(data)

    def reply(self, numeric: str, *params: str) -> None:
        """A numeric addressed to this client, from the server.

        A peer's argument echoed in a middle position (``TOPIC :``, ``NICK :a b``) is
        sent as ``*`` when IRC cannot carry it there, as Ergo's SafeErrorParam does.
        """
        *middle, last = (self.user.nick, *params)
        self.send(Message(numeric, (*map(safe_param, middle), last), self.server))

    def notice(self, text: str) -> None:
        """A server NOTICE to this client (what it should know, not an error)."""
        self.send(Message.of("NOTICE", self.user.nick, text, source=self.server))

    def fail(self, command: str, code: str, text: str, *context: str) -> None:
        """An IRCv3 standard reply: ``FAIL <command> <code> [context...] :text``."""
        self.send(Message("FAIL", (command, code, *map(safe_param, context), text), self.server))

    def relay(self, users: Iterable[User], msg: Message) -> None:
        """One line to a set of users (call with the lock held, so order is global)."""
        self.relay_sinks(tuple(u.conn for u in users), msg)

    def relay_channel(self, chan: Channel, msg: Message, exclude: Sink | None = None) -> None:
        """One line to a room's members: serialised once, fanned out by the writer."""
        self.relay_sinks(chan.sinks, msg, exclude)

    def relay_sinks(
        self,
        sinks: tuple[Sink, ...],
        msg: Message,
        exclude: Sink | None = None,
        client_tags: dict[str, str] | None = None,
        history: tuple[str, str] | None = None,
    ) -> T.Variants:
        """Stamp a relayed line (server-time, msgid, this user's account when it is
        theirs), encode it once per variant and hand it to the writer;
        ``history=(key, display)`` also stores it (lock held)."""
        user = self.user
        mine = msg.source == user.source
        account = user.account if user.account and mine else None
        tags = with_bot_tag(user, client_tags) if mine else client_tags
        time_ms, msgid, variants = T.stamp(msg, tags, account)
        self.post(sinks, variants, exclude, self.record(msg, time_ms, msgid, client_tags, history))
        return variants

    def record(
        self,
        msg: Message,
        time_ms: int,
        msgid: str,
        client_tags: dict[str, str] | None,
        history: tuple[str, str] | None,
    ) -> StoredMessage | None:
        """The history row of a relayed line; its id fixes its place (lock held)."""
        if history is None or self.history is None:
            return None
        return StoredMessage(
            self.reg.next_message_id(time_ms),
            msgid,
            time_ms,
            history[0],
            history[1],
            msg.source or "",
            msg.command,
            msg.params[-1] if msg.command != "TAGMSG" else "",  # a TAGMSG is all tags
            client_tags or NO_TAGS,
        )

    def post(
        self,
        sinks: tuple[Sink, ...],
        variants: T.Variants,
        exclude: Sink | None,
        record: StoredMessage | None,
    ) -> None:
        """Hand an encoded line to the writer (lock held); a labeled command keeps its
        own copy for the response batch."""
        me = self.user.conn
        if self._capture is not None and exclude is not me and me in sinks:
            self._capture.append(variants[self.variant])
            exclude = me
        self.multicast(variants, sinks, exclude, record)

    # --- input ------------------------------------------------------------------------

    def handle_line(self, raw: bytes) -> None:
        """Parse one framed line and act on it; protocol errors become replies."""
        if self.user.gone:
            return
        self.last_activity = self.clock()
        self.ping_sent_at = None
        if (
            raw.startswith(_ROOM_LINE)
            and self.state is _REGISTERED
            and self.open_batch is None
            and room_line(self, raw)
        ):
            return  # a plain line to a room: relayed without parse and dispatch
        try:
            try:
                msg = parse(raw)
            except LineTooLong:
                if not A.is_register_line(raw):
                    raise
                # a long passphrase: REGISTER alone may exceed 512 bytes (never relayed)
                msg = parse(raw, max_line_bytes=A.MAX_REGISTER_LINE_BYTES)
            # tag data: the bytes between the '@' and the first space
            if msg.tags and raw.index(b" ") - 1 > MAX_CLIENT_TAG_BYTES:
                raise LineTooLong("client tag data too long", msg.command)
        except PeerProtocolError as e:
            # the refusal of a labeled line carries its label too (421, 417, FAIL...)
            label = raw_label(raw) if _LABELED_RESPONSE in self.user.caps else None
            if label is None:
                self.refuse(e)
                return
            self._capture = []
            try:
                self.refuse(e)
                self._send_labeled(label)
            finally:
                self._capture = None
            return
        if self.open_batch is not None and ML.absorb(self, msg):
            return  # a line of the client's multiline batch (commands/multiline.py)
        label = msg.tags.get("label") if _LABELED_RESPONSE in self.user.caps else None
        if label is None:
            self.handle(msg)
            return
        if msg.command == "BATCH":  # a batch is answered when it ends, under this label
            ML.start_labeled(self, msg, label)
            return
        self._capture = []
        try:
            row = COMMANDS.get(msg.command)
            if row is not None and row.relays and not A.to_service(msg):
                # its relays include this client: run it under the registry lock, so
                # the labeled batch keeps its place among what the others see
                with self.reg.lock:
                    self.handle(msg)
                    self._send_labeled(label)
            else:
                self.handle(msg)
                self._send_labeled(label)
        finally:
            self._capture = None

    def refuse(self, e: PeerProtocolError) -> None:
        """Answer what breaks the protocol as the error hints (h11's error_status_hint):
        a fatal one ends the connection; else FAIL, its numeric, or 400 with the reason."""
        if e.fatal:
            self.terminate(str(e))
        elif isinstance(e, UnknownCommand):
            self.unknown_command(e.command)
        elif e.fail_code is not None:
            self.fail(e.command, e.fail_code, _REFUSAL_TEXT.get(e.fail_code, str(e)))
        elif e.numeric is not None:
            self.reply(e.numeric, _REFUSAL_TEXT.get(e.numeric, str(e)))
        else:
            reason = truncate_utf8(str(e), MAX_REASON_BYTES)
            self.reply(N.ERR_UNKNOWNERROR, e.command, f"Message rejected: {reason}")

    def _send_labeled(self, label: str) -> None:
        """IRCv3 labeled-response: ACK, the one labeled line, or a labeled batch."""
        lines, self._capture = self._capture or [], None
        conn = self.user.conn
        if not lines:
            conn.send(serialize(Message("ACK", (), self.server, {"label": label})))
        elif len(lines) == 1 or _BATCH not in self.user.caps:
            conn.send(T.add_tag(lines[0], "label", label))
            for line in lines[1:]:
                conn.send(line)
        else:
            ref = T.new_batch_id()
            start = Message("BATCH", ("+" + ref, "labeled-response"), self.server)
            conn.send(T.add_tag(serialize(start), "label", label))
            for line in lines:
                # lines of a nested batch (chathistory) stay in theirs; its BATCH +/- join ours
                conn.send(line if T.has_tag(line, "batch") else T.add_tag(line, "batch", ref))
            conn.send(serialize(Message("BATCH", ("-" + ref,), self.server)))

    def handle(self, msg: Message) -> None:
        """Dispatch a parsed message through the command table (commands/)."""
        row = COMMANDS.get(msg.command)
        if row is None:
            self.unknown_command(msg.command)
            return
        handler, min_params, before_registration, _relays, _help = row
        if not before_registration and self.state is not _REGISTERED:
            if msg.command == "JOIN" and not msg.param(0):
                return  # irssi probes with "JOIN :" before registering; ignore it quietly
            self.reply(N.ERR_NOTREGISTERED, "You have not registered")
            return
        if len(msg.params) < min_params:
            self.reply(N.ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")
            return
        try:
            handler(self, msg)
        except IRCError as e:
            self.reply(e.numeric, *e.params)

    def unknown_command(self, command: str) -> None:
        """421 for a command we do not have (451 before registration); the word is
        quoted cut short, so the reply fits a line."""
        if self.state is _REGISTERED:
            word = truncate_utf8(command, MAX_REASON_BYTES)
            self.reply(N.ERR_UNKNOWNCOMMAND, word, "Unknown command")
        else:
            self.reply(N.ERR_NOTREGISTERED, "You have not registered")

    def flood_delay(self, queued: int) -> float | None:
        """Fake lag for the next line (opers are exempt); None means Excess Flood."""
        if self.user.is_oper:
            return 0.0
        return self.flood.delay(self.clock(), queued)

    # --- life cycle ---------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Liveness: registration timeout, PING when idle, drop when PONG never comes."""
        if self.user.gone:
            return
        now = self.clock() if now is None else now
        if self.nick_deadline is not None:
            A.enforce_nick(self, now)
        if self.open_batch is not None:
            ML.expire(self, now)
        if self.state is not _REGISTERED:
            if now - self.connected_at > self.cfg.registration_timeout:
                self.terminate("Registration timeout")
        elif self.ping_sent_at is not None:
            if now - self.ping_sent_at > self.cfg.ping_timeout:
                self.terminate(f"Ping timeout: {int(now - self.last_activity)} seconds")
        elif now - self.last_activity > self.cfg.ping_interval:
            self.ping_sent_at = now
            self.send(Message.of("PING", self.server))

    def terminate(self, reason: str, error: str | None = None) -> None:
        """End this connection from the server side: ERROR to it, QUIT to its rooms."""
        end_user(self.reg, self.user, reason, error or f"Closing Link: {self.user.host} ({reason})")

    def disconnect(self, reason: str = "Connection closed") -> None:
        """The socket is gone: tell the rooms (no-op if QUIT/KILL already did)."""
        with self.reg.lock:
            peers = self.reg.remove_user(self.user)
            if self.user.registered and peers:
                self.relay(peers, Message.of("QUIT", reason, source=self.user.source))

    def reject_foreign(self, protocol: str) -> None:
        """A TLS or HTTP client on the plain IRC port: say so once and close."""
        self.terminate(
            f"{protocol} is not supported on this port",
            f"Closing Link: {self.user.host} (this is a plain-text IRC server, not {protocol})",
        )

    # --- registration -------------------------------------------------------------------

    def _move(self, state: RegState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal registration move {self.state} -> {state}")
        self.state = state
        if state is _REGISTERED:
            self.reg.mark_registered(self.user)

    def cmd_cap(self, msg: Message) -> None:
        sub = msg.params[0].upper()
        if sub == "LS":
            if self.state is RegState.NEW:
                self._move(RegState.NEGOTIATING)
            version = parse_int(msg.param(1), 0, INT32_MAX) or 0
            self.cap_version = max(self.cap_version, version)
            offered = self._offered_caps()
            values: dict[Cap, str | None] = {}
            if self.cap_version >= 302:  # CAP LS 302 gives values (SASL, multiline limits)
                values = {**A.offered(self), Cap.DRAFT_MULTILINE: ML.cap_value(self)}
            self._cap_reply(
                "LS", [f"{c}={values[c]}" if values.get(c) else c for c in sorted(offered)]
            )
        elif sub == "LIST":
            self._cap_reply("LIST", sorted(self.user.caps))
        elif sub == "REQ":
            if self.state is RegState.NEW:
                self._move(RegState.NEGOTIATING)
            wanted = msg.param(1).split()
            offered = self._offered_caps()
            ok = all(w.removeprefix("-") in offered for w in wanted) and wanted
            verdict = "ACK" if ok else "NAK"
            self.send(Message("CAP", (self.user.nick, verdict, msg.param(1)), self.server))
            if ok:
                for w in wanted:
                    if w.startswith("-"):
                        self.user.caps.discard(Cap(w[1:]))
                    else:
                        self.user.caps.add(Cap(w))
                self.variant = T.variant_for(self.user.caps)
                self.user.conn.variant = self.variant
        elif sub == "END":
            if self.state is RegState.NEGOTIATING:
                self._move(RegState.NEW)
                A.abort_sasl(self)
            self._try_register()
        else:
            raise IRCError(N.ERR_INVALIDCAPCMD, msg.params[0], "Invalid CAP command")

    def _offered_caps(self) -> frozenset[Cap]:
        caps = BASE_CAPS + HISTORY_CAPS if self.history is not None else BASE_CAPS
        return frozenset(caps).union(A.offered(self))

    def _cap_reply(self, sub: str, caps: list[str]) -> None:
        """CAP LS/LIST, split over several lines (``*`` marks more to come) when long."""
        lines: list[list[str]] = [[]]
        for cap in caps:
            if sum(len(c) + 1 for c in lines[-1]) + len(cap) > 380:
                lines.append([])
            lines[-1].append(cap)
        for i, chunk in enumerate(lines):
            more = ("*",) if i < len(lines) - 1 and self.cap_version >= 302 else ()
            self.send(Message("CAP", (self.user.nick, sub, *more, " ".join(chunk)), self.server))

    def cmd_pass(self, msg: Message) -> None:
        if self.state is _REGISTERED:
            raise IRCError(N.ERR_ALREADYREGISTERED, "You may not reregister")
        self.pending.password = msg.params[0]

    def cmd_nick(self, msg: Message) -> None:
        if not msg.params or not msg.params[0]:
            raise IRCError(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        nick = msg.params[0]
        if not is_valid_nick(nick, self.cfg.nicklen) or (
            self.reg.accounts is not None and A.is_service(nick)
        ):
            raise IRCError(N.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
        user = self.user
        if nick == user.nick:
            return
        if self.state is not _REGISTERED:
            if self._password_ok() and not self._claim(nick):
                other = A.beside_own(self, nick)  # the account's other connection has it
                if other is None:
                    self.tried_nick = nick
                    raise IRCError(N.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
                nick = other
            self.pending.nick = nick
            self._try_register()
            return
        with self.reg.lock:
            old_source = user.source
            if not self._claim(nick):
                raise IRCError(N.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
            peers = self.reg.peers_of(user)
            peers.add(user)
            self.relay(peers, Message.of("NICK", nick, source=old_source))
        A.guard_nick(self)

    def _claim(self, nick: str) -> bool:
        """Take ``nick``; its account's owner takes it from whoever else has it."""
        return self.reg.claim_nick(self.user, nick) or (
            A.take_back(self, nick) and self.reg.claim_nick(self.user, nick)
        )

    def cmd_user(self, msg: Message) -> None:
        if self.state is _REGISTERED or self.pending.username is not None:
            raise IRCError(N.ERR_ALREADYREGISTERED, "You may not reregister")
        if not msg.params[3]:  # modern-irc: an empty realname is refused
            raise IRCError(N.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        username = _USERNAME_BAD.sub("", msg.params[0])[: self.cfg.userlen] or "user"
        if username.startswith(":"):
            username = "user"
        self.pending.username = username
        self.pending.realname = msg.params[3]
        self._try_register()

    def _password_ok(self) -> bool:
        """True when the server has no password or this client gave the right one."""
        password = self.pending.password
        return self.cfg.password is None or (
            password is not None
            and hmac.compare_digest(password.encode(), self.cfg.password.encode())
        )

    def _try_register(self) -> None:
        """NEW -> REGISTERED once NICK and USER are in: the password is checked, a nick
        given before it is claimed, and the welcome burst goes out."""
        user, pending = self.user, self.pending
        if self.state is not RegState.NEW or pending.nick is None or pending.username is None:
            return
        if not self._password_ok():
            self.reply(N.ERR_PASSWDMISMATCH, "Password incorrect")
            self.terminate("Bad password")
            return
        if user.nick != pending.nick and not self.reg.claim_nick(user, pending.nick):
            self.reply(N.ERR_NICKNAMEINUSE, pending.nick, "Nickname is already in use")
            pending.nick = None
            return
        user.username, user.realname = pending.username, pending.realname
        if self.cfg.password is None and pending.password is not None:
            A.pass_login(self, pending.password)
        self._move(RegState.REGISTERED)
        self._welcome()
        A.guard_nick(self)

    def _welcome(self) -> None:
        """The registration burst, handed to the writer as one entry: fifteen posts
        (and as many wake-ups of the writer) made connection storms dearer."""
        if self._capture is not None:  # a labeled line completed registration
            self._welcome_lines()
            return
        self._capture = []
        try:
            self._welcome_lines()
        finally:
            lines, self._capture = self._capture, None
            if lines:
                self.user.conn.send(b"".join(lines))

    def _welcome_lines(self) -> None:
        cfg = self.cfg
        created = datetime.fromtimestamp(self.reg.created, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.reply(N.RPL_WELCOME, f"Welcome to the {cfg.network} IRC Network {self.user.source}")
        self.reply(N.RPL_YOURHOST, f"Your host is {self.server}, running version {VERSION}")
        self.reply(N.RPL_CREATED, f"This server was created {created}")
        self.reply(N.RPL_MYINFO, self.server, VERSION, "Biow", "Ibeiklmnostv", "Ibeklov")
        self.send_isupport()
        for command in ("LUSERS", "MOTD"):  # the burst ends as those commands answer
            COMMANDS[command].handler(self, Message(command))
        if self.user.is_oper:  # an operator account logged in before registering
            self.send(Message.of("MODE", self.user.nick, "+o", source=self.user.source))
            self.reply(N.RPL_YOUREOPER, "You are now an IRC operator")
        problem = self.history.problem if self.history is not None else None
        if problem:  # those already here were told when it began; tell the newcomer
            self.notice(f"*** {problem}")

    def send_isupport(self) -> None:
        tokens = self.cfg.isupport_tokens()
        if self.filehost:  # soju.im/FILEHOST: where this connection uploads files
            tokens.append(f"{FILEHOST_TOKEN}={self.filehost}")
        for i in range(0, len(tokens), 13):
            self.reply(N.RPL_ISUPPORT, *tokens[i : i + 13], "are supported by this server")

    # --- connection-level commands ------------------------------------------------------

    def cmd_ping(self, msg: Message) -> None:
        if not msg.params or msg.params[0] == "":
            raise IRCError(N.ERR_NOORIGIN, "No origin specified")
        self.send(Message.of("PONG", self.server, msg.params[0], source=self.server))

    def cmd_pong(self, msg: Message) -> None:
        """Any line resets liveness (handle_line); nothing else to do."""

    def cmd_quit(self, msg: Message) -> None:
        text = msg.param(0)
        self.terminate(f"Quit: {text}" if text else "Client Quit")


def end_user(registry: Registry, user: User, reason: str, error: str) -> None:
    """Remove ``user`` from the server (any thread): ERROR to it, QUIT to its rooms."""
    with registry.lock:
        if user.gone:
            return
        user.send(serialize(Message.of("ERROR", error)))
        peers = registry.remove_user(user)
        if user.registered and peers:
            quit_ = Message.of("QUIT", reason, source=user.source)
            _, _, variants = T.stamp(quit_, None, user.account)
            registry.multicast(variants, tuple(p.conn for p in peers))
    user.conn.close(reason)


# The command table names this module's own handlers (CAP, PASS, NICK, USER, PING, PONG,
# QUIT), so it is imported last, once Session exists. (commands/__init__.py creates the
# table before it imports this module, so either may be imported first.)
from chatroom.server.commands import COMMANDS  # noqa: E402
from chatroom.server.commands import accounts as A  # noqa: E402
from chatroom.server.commands import multiline as ML  # noqa: E402
from chatroom.server.commands.messages import room_line  # noqa: E402
