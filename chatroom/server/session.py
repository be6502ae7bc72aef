"""One connection's IRC state machine: lines in, replies and relays out. No sockets here.

The handler (handler.py) feeds received bytes to :meth:`Session.feed`-style calls and
the session writes replies through the connection's ``Sink``. Tests drive it the
same way with a list standing in for the socket.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from chatroom.protocol import (
    InvalidUTF8,
    LineBuffer,
    LineTooLong,
    Message,
    PeerProtocolError,
    casefold,
    is_channel,
    is_valid_channel,
    is_valid_nick,
    mask_matcher,
    parse,
    parse_int,
    serialize,
)
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.config import VERSION, Config
from chatroom.server.state import Channel, Registry, Sink, User
from chatroom.server.store import (
    ID_TIME_SHIFT,
    HistoryReadError,
    RoomState,
    StoredMessage,
    dm_key,
    new_msgid,
)

# Capabilities this server offers (IRCv3 capability negotiation); chathistory only
# when the server keeps history.
BASE_CAPS = (
    "away-notify",
    "batch",
    "echo-message",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "server-time",
)
HISTORY_CAPS = ("draft/chathistory",)
# IRCv3 message-tags: a client's tag data (between '@' and the space, every tag, as
# sent) is at most this many bytes; more gets 417 and the line is dropped.
MAX_CLIENT_TAG_BYTES = 4094
# Commands whose responses include relays to the sender itself (JOIN echo, NICK...):
# with labeled-response they run under the registry lock, so the labeled batch keeps
# its place among what the other members see.
_RELAYING = frozenset(
    {"JOIN", "PART", "NICK", "KICK", "TOPIC", "MODE", "PRIVMSG", "NOTICE", "TAGMSG", "AWAY"}
)

# Room modes without a parameter (CHANMODES group D) and the status modes (PREFIX);
# k and l, which take one, are handled by name.
_MODES_FLAG = "imnst"
_MODES_STATUS = "ov"
_LIST_MODES_END = {"b": N.RPL_ENDOFBANLIST, "e": N.RPL_ENDOFEXCEPTLIST, "I": N.RPL_ENDOFINVITELIST}
# Room names in a NAMES reply are split so each line stays within 512 bytes.
_NAMES_LINE_BUDGET = 400
_USERNAME_BAD = re.compile(r"[^A-Za-z0-9_.\-~\[\]\\`^{}|]")
# Ranges of numeric parameters (parse_int): counts and limits are 32-bit in every
# IRC server; CHATHISTORY's limit is capped at chathistory_max after parsing.
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


class IRCError(Exception):
    """Raised by a command handler to answer with an error numeric and stop."""

    def __init__(self, numeric: str, *params: str) -> None:
        super().__init__(numeric, *params)
        self.numeric = numeric
        self.params = params


class FloodGuard:
    """Token bucket with fake lag: a burst, then ``rate`` lines/s; too much owed lag kills.

    ``delay`` says how long to hold the next line; None means the client has
    already sent more than ``max_lag`` seconds' worth and is flooding.
    """

    def __init__(self, burst: int, rate: float, max_lag: float, enabled: bool = True) -> None:
        self.burst, self.rate, self.max_lag, self.enabled = burst, rate, max_lag, enabled
        self.tokens = float(burst)
        self.last: float | None = None

    def delay(self, now: float, queued: int = 1) -> float | None:
        """Seconds to wait before handling the next line, given ``queued`` lines received."""
        if not self.enabled:
            return 0.0
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= 1
        if self.tokens >= 0:
            return 0.0
        wait = -self.tokens / self.rate
        if wait + (queued - 1) / self.rate > self.max_lag:
            return None
        return wait


def truncate_utf8(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` bytes of UTF-8 without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.removeprefix("0")).is_loopback
    except ValueError:
        return False


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
        self.server = self.cfg.server_name
        self.user = User(conn=conn, host=host)
        self.clock = clock
        self.buffer = LineBuffer(self.cfg.recvq_bytes)
        self.flood = FloodGuard(
            self.cfg.flood_burst, self.cfg.flood_rate, self.cfg.flood_max_lag, self.cfg.flood_limit
        )
        self.connected_at = self.last_activity = clock()
        self.ping_sent_at: float | None = None
        self.cap_negotiating = False
        self.cap_version = 0
        self.password: str | None = None
        self.wanted_nick: str | None = None  # NICK before the server password was given
        self.variant = T.PLAIN  # which encoding of relayed lines this client gets
        self._capture: list[bytes] | None = None  # responses held for a labeled batch
        refusal = registry.add_connection(self.user, self.cfg.exempt_loopback and is_loopback(host))
        if refusal:
            self._send(Message.of("ERROR", f"Closing Link: {host} ({refusal})"))
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

    def _send(self, msg: Message) -> None:
        self._out(serialize(msg))

    def _out(self, data: bytes) -> None:
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
        self._send(Message(numeric, (*map(safe_param, middle), last), self.server))

    def _notice(self, text: str) -> None:
        """A server NOTICE to this client (what it should know, not an error)."""
        self._send(Message.of("NOTICE", self.user.nick, text, source=self.server))

    def _relay(self, users: Iterable[User], msg: Message) -> None:
        """One line to a set of users (call with the lock held, so order is global)."""
        self._relay_sinks(tuple(u.conn for u in users), msg)

    def _relay_channel(self, chan: Channel, msg: Message, exclude: Sink | None = None) -> None:
        """One line to a room's members: serialised once, fanned out by the writer."""
        self._relay_sinks(chan.sinks, msg, exclude)

    def _relay_sinks(
        self,
        sinks: tuple[Sink, ...],
        msg: Message,
        exclude: Sink | None = None,
        client_tags: dict[str, str] | None = None,
        history: tuple[str, str] | None = None,
    ) -> tuple[bytes, bytes, bytes]:
        """Stamp a relayed line (server-time, msgid), encode it once per variant and
        hand it to the writer; ``history=(key, display)`` also stores it (lock held)."""
        stamp, msgid, variants = self._stamp(msg, client_tags)
        self._post(sinks, variants, exclude, self._record(msg, stamp, msgid, client_tags, history))
        return variants

    @staticmethod
    def _stamp(
        msg: Message, client_tags: dict[str, str] | None = None
    ) -> tuple[int, str, tuple[bytes, bytes, bytes]]:
        """Server time and msgid for a relayed line, and its encodings (no lock needed)."""
        stamp = T.now_ms()
        msgid = new_msgid()
        return stamp, msgid, T.encode_variants(msg, T.server_time(stamp), msgid, client_tags)

    def _record(
        self,
        msg: Message,
        stamp: int,
        msgid: str,
        client_tags: dict[str, str] | None,
        history: tuple[str, str] | None,
    ) -> StoredMessage | None:
        """The history row of a relayed line; its id fixes its place (lock held)."""
        pipeline = self.reg.history
        if history is None or pipeline is None:
            return None
        record = StoredMessage(
            pipeline.store.next_id(stamp),
            msgid,
            stamp,
            history[0],
            history[1],
            msg.source or "",
            msg.command,
            msg.params[-1],
            client_tags or {},
        )
        self.reg.last_message_id = record.id
        return record

    def _post(
        self,
        sinks: tuple[Sink, ...],
        variants: tuple[bytes, bytes, bytes],
        exclude: Sink | None,
        record: StoredMessage | None,
    ) -> None:
        """Hand an encoded line to the writer (lock held); a labeled command keeps its
        own copy for the response batch."""
        me = self.user.conn
        if self._capture is not None and exclude is not me and me in sinks:
            self._capture.append(variants[self.variant])
            exclude = me
        self.reg.multicast(variants, sinks, exclude, record)

    # --- input ------------------------------------------------------------------------

    def handle_line(self, raw: bytes) -> None:
        """Parse one framed line and act on it; protocol errors become replies."""
        if self.closed:
            return
        self.last_activity = self.clock()
        self.ping_sent_at = None
        try:
            msg = parse(raw)
        except LineTooLong:
            self.reply(N.ERR_INPUTTOOLONG, "Input line was too long")
            return
        except InvalidUTF8 as e:
            self._send(
                Message.of(
                    "FAIL",
                    e.command,
                    "INVALID_UTF8",
                    "Message rejected, your message contained invalid UTF-8",
                    source=self.server,
                )
            )
            return
        except PeerProtocolError as e:
            self.reply(N.ERR_UNKNOWNERROR, e.command, f"Message rejected: {e}")
            return
        if msg.tags and _tag_data_bytes(raw) > MAX_CLIENT_TAG_BYTES:
            self.reply(N.ERR_INPUTTOOLONG, "Input line was too long")
            return
        label = msg.tags.get("label") if "labeled-response" in self.user.caps else None
        if label is None:
            self.handle(msg)
            return
        self._capture = []
        try:
            if msg.command in _RELAYING:
                with self.reg.lock:
                    self.handle(msg)
                    self._send_labeled(label)
            else:
                self.handle(msg)
                self._send_labeled(label)
        finally:
            self._capture = None

    def _send_labeled(self, label: str) -> None:
        """IRCv3 labeled-response: ACK, the one labeled line, or a labeled batch."""
        lines, self._capture = self._capture or [], None
        conn = self.user.conn
        if not lines:
            conn.send(serialize(Message("ACK", (), self.server, {"label": label})))
        elif len(lines) == 1 or "batch" not in self.user.caps:
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
        """Dispatch a parsed message through the command table."""
        entry = _COMMANDS.get(msg.command)
        if entry is None:
            if self.user.registered:
                self.reply(N.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
            else:
                self.reply(N.ERR_NOTREGISTERED, "You have not registered")
            return
        handler, min_params, before_registration = entry
        if not before_registration and not self.user.registered:
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

    def flood_delay(self, queued: int) -> float | None:
        """Fake lag for the next line (opers are exempt); None means Excess Flood."""
        if self.user.is_oper:
            return 0.0
        return self.flood.delay(self.clock(), queued)

    # --- life cycle ---------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Liveness: registration timeout, PING when idle, drop when PONG never comes."""
        if self.closed:
            return
        now = self.clock() if now is None else now
        if not self.user.registered:
            if now - self.connected_at > self.cfg.registration_timeout:
                self.terminate("Registration timeout")
        elif self.ping_sent_at is not None:
            if now - self.ping_sent_at > self.cfg.ping_timeout:
                self.terminate(f"Ping timeout: {int(now - self.last_activity)} seconds")
        elif now - self.last_activity > self.cfg.ping_interval:
            self.ping_sent_at = now
            self._send(Message.of("PING", self.server))

    def terminate(self, reason: str, error: str | None = None) -> None:
        """End this connection from the server side: ERROR to it, QUIT to its rooms."""
        end_user(self.reg, self.user, reason, error or f"Closing Link: {self.user.host} ({reason})")

    def disconnect(self, reason: str = "Connection closed") -> None:
        """The socket is gone: tell the rooms (no-op if QUIT/KILL already did)."""
        with self.reg.lock:
            peers = self.reg.remove_user(self.user)
            if self.user.registered and peers:
                self._relay(peers, Message.of("QUIT", reason, source=self.user.source))

    def reject_foreign(self, protocol: str) -> None:
        """A TLS or HTTP client on the plain IRC port: say so once and close."""
        self.terminate(
            f"{protocol} is not supported on this port",
            f"Closing Link: {self.user.host} (this is a plain-text IRC server, not {protocol})",
        )

    # --- registration -------------------------------------------------------------------

    def _cmd_cap(self, msg: Message) -> None:
        sub = msg.params[0].upper()
        if sub == "LS":
            if not self.user.registered:
                self.cap_negotiating = True
            version = parse_int(msg.param(1), 0, _INT32_MAX) or 0
            self.cap_version = max(self.cap_version, version)
            self._cap_reply("LS", sorted(self._offered_caps()))
        elif sub == "LIST":
            self._cap_reply("LIST", sorted(self.user.caps))
        elif sub == "REQ":
            if not self.user.registered:
                self.cap_negotiating = True
            wanted = msg.param(1).split()
            offered = self._offered_caps()
            ok = all(w.removeprefix("-") in offered for w in wanted) and wanted
            self._send(
                Message.of(
                    "CAP", self.user.nick, "ACK" if ok else "NAK", msg.param(1), source=self.server
                )
            )
            if ok:
                for w in wanted:
                    if w.startswith("-"):
                        self.user.caps.discard(w[1:])
                    else:
                        self.user.caps.add(w)
                self.variant = T.variant_for(self.user.caps)
                self.user.conn.variant = self.variant
        elif sub == "END":
            if not self.user.registered:
                self.cap_negotiating = False
                self._try_register()
        else:
            raise IRCError(N.ERR_INVALIDCAPCMD, msg.params[0], "Invalid CAP command")

    def _offered_caps(self) -> tuple[str, ...]:
        return BASE_CAPS + HISTORY_CAPS if self.reg.history is not None else BASE_CAPS

    def _cap_reply(self, sub: str, caps: list[str]) -> None:
        """CAP LS/LIST, split over several lines (``*`` marks more to come) when long."""
        lines: list[list[str]] = [[]]
        for cap in caps:
            if sum(len(c) + 1 for c in lines[-1]) + len(cap) > 380:
                lines.append([])
            lines[-1].append(cap)
        for i, chunk in enumerate(lines):
            more = i < len(lines) - 1 and self.cap_version >= 302
            params = (
                (self.user.nick, sub, "*", " ".join(chunk))
                if more
                else (self.user.nick, sub, " ".join(chunk))
            )
            self._send(Message("CAP", params, self.server))

    def _cmd_pass(self, msg: Message) -> None:
        if self.user.registered:
            raise IRCError(N.ERR_ALREADYREGISTERED, "You may not reregister")
        self.password = msg.params[0]

    def _cmd_nick(self, msg: Message) -> None:
        if not msg.params or not msg.params[0]:
            raise IRCError(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        nick = msg.params[0]
        if not is_valid_nick(nick, self.cfg.nicklen):
            raise IRCError(N.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
        user = self.user
        if nick == user.nick:
            return
        if not user.registered and not self._password_ok():
            # No nick is reserved before the server password is given: whoever lacks it
            # must not hold someone's nick for the registration timeout.
            self.wanted_nick = nick
            self._try_register()
            return
        with self.reg.lock:
            old_source = user.source
            if not self.reg.claim_nick(user, nick):
                raise IRCError(N.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
            if user.registered:
                peers = self.reg.peers_of(user)
                peers.add(user)
                self._relay(peers, Message.of("NICK", nick, source=old_source))
        if not user.registered:
            self._try_register()

    def _cmd_user(self, msg: Message) -> None:
        if self.user.registered or self.user.username:
            raise IRCError(N.ERR_ALREADYREGISTERED, "You may not reregister")
        username = _USERNAME_BAD.sub("", msg.params[0])[: self.cfg.userlen] or "user"
        if username.startswith(":"):
            username = "user"
        self.user.username = username
        self.user.realname = msg.params[3]
        self._try_register()

    def _password_ok(self) -> bool:
        """True when the server has no password or this client gave the right one."""
        return self.cfg.password is None or (
            self.password is not None
            and hmac.compare_digest(self.password.encode(), self.cfg.password.encode())
        )

    def _try_register(self) -> None:
        user = self.user
        if user.registered or self.cap_negotiating or not user.username:
            return
        if user.nick == "*" and self.wanted_nick is None:
            return
        if not self._password_ok():
            self.reply(N.ERR_PASSWDMISMATCH, "Password incorrect")
            self.terminate("Bad password")
            return
        if self.wanted_nick is not None:
            nick, self.wanted_nick = self.wanted_nick, None
            if not self.reg.claim_nick(user, nick):
                self.reply(N.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
                return
        self.reg.mark_registered(user)
        self._welcome()

    def _welcome(self) -> None:
        cfg = self.cfg
        created = datetime.fromtimestamp(self.reg.created, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.reply(N.RPL_WELCOME, f"Welcome to the {cfg.network} IRC Network {self.user.source}")
        self.reply(N.RPL_YOURHOST, f"Your host is {self.server}, running version {VERSION}")
        self.reply(N.RPL_CREATED, f"This server was created {created}")
        self.reply(N.RPL_MYINFO, self.server, VERSION, "iow", "iklmnostv", "klov")
        tokens = isupport_tokens(cfg)
        for i in range(0, len(tokens), 13):
            self.reply(N.RPL_ISUPPORT, *tokens[i : i + 13], "are supported by this server")
        self._lusers()
        self._motd()
        problem = self.reg.history.problem if self.reg.history is not None else None
        if problem:  # those already here were told when it began; tell the newcomer
            self._notice(f"*** {problem}")

    def _lusers(self) -> None:
        with self.reg.lock:
            total = self.reg.registered_count
            unknown = len(self.reg.connections) - total
            channels = len(self.reg.channels)
            max_users = self.reg.max_users
            invisible = self.reg.mode_counts["i"]
            opers = self.reg.mode_counts["o"]
        self.reply(
            N.RPL_LUSERCLIENT,
            f"There are {total - invisible} users and {invisible} invisible on 1 servers",
        )
        if opers:
            self.reply(N.RPL_LUSEROP, str(opers), "operator(s) online")
        if unknown:
            self.reply(N.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
        if channels:
            self.reply(N.RPL_LUSERCHANNELS, str(channels), "channels formed")
        self.reply(N.RPL_LUSERME, f"I have {total} clients and 0 servers")
        self.reply(
            N.RPL_LOCALUSERS,
            str(total),
            str(max_users),
            f"Current local users {total}, max {max_users}",
        )
        self.reply(
            N.RPL_GLOBALUSERS,
            str(total),
            str(max_users),
            f"Current global users {total}, max {max_users}",
        )

    def _motd(self) -> None:
        if not self.cfg.motd:
            self.reply(N.ERR_NOMOTD, "MOTD File is missing")
            return
        self.reply(N.RPL_MOTDSTART, f"- {self.server} Message of the day - ")
        for line in self.cfg.motd.splitlines() or [""]:
            self.reply(N.RPL_MOTD, f"- {truncate_utf8(line, 400)}")
        self.reply(N.RPL_ENDOFMOTD, "End of /MOTD command.")

    # --- connection-level commands ------------------------------------------------------

    def _cmd_ping(self, msg: Message) -> None:
        if not msg.params or msg.params[0] == "":
            raise IRCError(N.ERR_NOORIGIN, "No origin specified")
        self._send(Message.of("PONG", self.server, msg.params[0], source=self.server))

    def _cmd_pong(self, msg: Message) -> None:
        """Any line resets liveness (handle_line); nothing else to do."""

    def _cmd_quit(self, msg: Message) -> None:
        text = msg.param(0)
        reason = f"Quit: {text}" if text else "Client Quit"
        self.terminate(reason)

    # --- rooms ----------------------------------------------------------------------------

    def _cmd_join(self, msg: Message) -> None:
        if msg.params[0] == "0":
            for chan in list(self.user.channels.values()):
                self._part(chan.name, None)
            return
        names = msg.params[0].split(",")
        keys = msg.param(1).split(",") if len(msg.params) > 1 else []
        for i, name in enumerate(names):
            if not name:
                continue
            try:
                self._join(name, keys[i] if i < len(keys) else None)
            except IRCError as e:
                self.reply(e.numeric, *e.params)

    def _join(self, name: str, key: str | None) -> None:
        if not is_valid_channel(name, self.cfg.channellen):
            raise IRCError(N.ERR_NOSUCHCHANNEL, name, "No such channel")
        user = self.user
        folded = casefold(name)
        pipeline = self.reg.history
        saved = None
        if pipeline is not None and folded not in self.reg.channels:
            try:
                saved = pipeline.store.room_state(folded)  # read before taking the lock
            except HistoryReadError:
                saved = None  # logged by the store; the room starts afresh
            if saved is not None and not saved.created:
                saved = None  # it emptied: nothing of that room comes back
        with self.reg.lock:
            chan = self.reg.channels.get(folded)
            if chan is not None and user in chan.members:
                return
            if len(user.channels) >= self.cfg.chanlimit:
                raise IRCError(N.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
            if chan is None:
                # A new room, or one brought back from the database after a restart,
                # with its topic, modes and key. The key still guards it; +i and +l need
                # members to mean anything, so the first to return gets in (and is
                # operator). A new room gets none of the history of any room that had
                # its name before (it emptied; see Registry.leave).
                if saved is not None and saved.room_key is not None and key != saved.room_key:
                    raise IRCError(N.ERR_BADCHANNELKEY, saved.name, "Cannot join channel (+k)")
                if saved is not None:
                    chan = _restore(saved)
                else:
                    chan = Channel(name, history_from=self.reg.last_message_id)
                self.reg.channels[folded] = chan
                chan.add(user, "o")
                if saved is None:
                    self._save_room(chan)
            else:
                invited = user in chan.invited
                if "i" in chan.modes and not invited:
                    raise IRCError(N.ERR_INVITEONLYCHAN, chan.name, "Cannot join channel (+i)")
                if chan.key is not None and key != chan.key:
                    raise IRCError(N.ERR_BADCHANNELKEY, chan.name, "Cannot join channel (+k)")
                if chan.limit is not None and len(chan.members) >= chan.limit and not invited:
                    raise IRCError(N.ERR_CHANNELISFULL, chan.name, "Cannot join channel (+l)")
                chan.invited.discard(user)
                chan.add(user)
            user.channels[folded] = chan
            self._relay_channel(chan, Message.of("JOIN", chan.name, source=user.source))
            if user.away is not None:
                self._relay_sinks(
                    self._with_cap(chan.members, "away-notify", user),
                    Message.of("AWAY", user.away, source=user.source),
                )
            if chan.topic:
                self._topic_reply(chan)
            self._names(chan)
            point = self.reg.last_message_id
        if (
            pipeline is not None
            and self.cfg.playback_lines > 0
            and "draft/chathistory" not in user.caps
        ):
            pipeline.wait_committed(point)
            try:
                rows = pipeline.store.window(
                    folded, chan.history_from, point + 1, self.cfg.playback_lines, True
                )
            except HistoryReadError:
                self._notice(f"*** The history of {chan.name} cannot be read just now")
                return
            if rows:  # nothing to replay: no empty batch on every JOIN
                self._send_history(chan.name, rows, mark=True)

    def _with_cap(self, users: Iterable[User], cap: str, skip: User | None = None) -> tuple:
        """The sinks of those ``users`` (except ``skip``) that negotiated ``cap``."""
        return tuple(u.conn for u in users if cap in u.caps and u is not skip)

    def _save_room(self, chan: Channel) -> None:
        """Persist a room's topic, modes, key and limit (lock held)."""
        if self.reg.history is not None:
            self.reg.history.save_room(
                RoomState(
                    casefold(chan.name),
                    chan.name,
                    chan.topic,
                    chan.topic_by,
                    chan.topic_at,
                    "".join(sorted(chan.modes)),
                    chan.key,
                    chan.limit,
                    chan.created,
                    chan.history_from,
                )
            )

    def _send_history(self, display: str, rows: Iterable[StoredMessage], mark: bool) -> None:
        """History lines for this client: in a ``chathistory`` batch when it speaks
        batch, with their original time and msgid when it speaks the tags, and with the
        time written into the text (``mark``) when it has no other way to tell."""
        batch = "batch" in self.user.caps
        ref = T.new_batch_id()
        if batch:
            self._send(Message("BATCH", ("+" + ref, "chathistory", display), self.server))
        for m in rows:
            text = m.text
            if mark and self.variant == T.PLAIN:
                text = _mark_history(text, m.time_ms)
            line = serialize(Message(m.command, (m.display, text), m.sender))
            tags: dict[str, str] = {}
            if self.variant != T.PLAIN:
                tags["time"] = T.server_time(m.time_ms)
            if self.variant == T.ALL_TAGS:
                tags["msgid"] = m.msgid
                tags.update(m.tags)
            if batch:
                tags["batch"] = ref
            if tags:
                line = serialize(Message(m.command, (m.display, text), m.sender, tags))
            self._out(line)
        if batch:
            self._send(Message("BATCH", ("-" + ref,), self.server))

    def _cmd_part(self, msg: Message) -> None:
        reason = msg.param(1) or None
        for name in msg.params[0].split(","):
            if name:
                try:
                    self._part(name, reason)
                except IRCError as e:
                    self.reply(e.numeric, *e.params)

    def _part(self, name: str, reason: str | None) -> None:
        user = self.user
        with self.reg.lock:
            chan = self._find_room(name)
            if chan is None:
                raise IRCError(N.ERR_NOSUCHCHANNEL, name, "No such channel")
            if user not in chan.members:
                raise IRCError(N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
            params = (chan.name, reason) if reason else (chan.name,)
            self._relay_channel(chan, Message("PART", params, user.source))
            self._leave(user, chan)

    def _leave(self, user: User, chan: Channel) -> None:
        self.reg.leave(user, chan)

    def _cmd_names(self, msg: Message) -> None:
        with self.reg.lock:
            if not msg.params or not msg.params[0]:
                for chan in list(self.reg.channels.values()):
                    if self._visible(chan):
                        self._names(chan, end=False)
                self.reply(N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
                return
            for name in msg.params[0].split(","):
                chan = self.reg.find_channel(name)
                if chan is not None and self._visible(chan):
                    self._names(chan)
                else:
                    self.reply(N.RPL_ENDOFNAMES, name, "End of /NAMES list")

    def _visible(self, chan: Channel) -> bool:
        return "s" not in chan.modes or self.user in chan.members

    def _find_room(self, name: str) -> Channel | None:
        """A room this user may know of: a secret (+s) room looks like no room at all
        to those outside it (403, as Ergo), not like a room they may not use."""
        chan = self.reg.find_channel(name)
        return chan if chan is not None and self._visible(chan) else None

    def _names(self, chan: Channel, end: bool = True) -> None:
        multi = "multi-prefix" in self.user.caps
        symbol = "@" if "s" in chan.modes else "="
        show_all = self.user in chan.members
        entries = sorted(
            (
                chan.prefix_of(u, multi) + u.nick
                for u in chan.members
                if show_all or "i" not in u.modes
            ),
            key=casefold,
        )
        line: list[str] = []
        size = 0
        for entry in entries:
            if line and size + len(entry) + 1 > _NAMES_LINE_BUDGET - len(chan.name):
                self.reply(N.RPL_NAMREPLY, symbol, chan.name, " ".join(line))
                line, size = [], 0
            line.append(entry)
            size += len(entry.encode()) + 1
        if line:
            self.reply(N.RPL_NAMREPLY, symbol, chan.name, " ".join(line))
        if end:
            self.reply(N.RPL_ENDOFNAMES, chan.name, "End of /NAMES list")

    def _topic_reply(self, chan: Channel) -> None:
        if not chan.topic:
            self.reply(N.RPL_NOTOPIC, chan.name, "No topic is set")
            return
        self.reply(N.RPL_TOPIC, chan.name, chan.topic)
        self.reply(N.RPL_TOPICWHOTIME, chan.name, chan.topic_by, str(int(chan.topic_at)))

    def _cmd_topic(self, msg: Message) -> None:
        user = self.user
        with self.reg.lock:
            chan = self._find_room(msg.params[0])
            if chan is None:
                raise IRCError(N.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
            if len(msg.params) < 2:
                self._topic_reply(chan)
                return
            if user not in chan.members:
                raise IRCError(N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
            if "t" in chan.modes and not chan.is_op(user):
                raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
            chan.topic = truncate_utf8(msg.params[1], self.cfg.topiclen)
            chan.topic_by = user.source
            chan.topic_at = time.time()
            self._relay_channel(
                chan, Message.of("TOPIC", chan.name, chan.topic, source=user.source)
            )
            self._save_room(chan)

    def _cmd_list(self, msg: Message) -> None:
        wanted = {casefold(n) for n in msg.param(0).split(",") if n}
        with self.reg.lock:
            rows = [
                (c.name, str(len(c.members)), c.topic)
                for k, c in self.reg.channels.items()
                if self._visible(c) and (not wanted or k in wanted)
            ]
        self.reply(N.RPL_LISTSTART, "Channel", "Users  Name")
        for name, count, topic in sorted(rows, key=lambda r: casefold(r[0])):
            self.reply(N.RPL_LIST, name, count, topic)
        self.reply(N.RPL_LISTEND, "End of /LIST")

    def _cmd_kick(self, msg: Message) -> None:
        user = self.user
        reason = truncate_utf8(msg.param(2) or user.nick, self.cfg.kicklen)
        with self.reg.lock:
            chan = self._find_room(msg.params[0])
            if chan is None:
                raise IRCError(N.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
            if user not in chan.members:
                raise IRCError(N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
            if not chan.is_op(user):
                raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
            for nick in msg.params[1].split(","):
                target = self.reg.find_user(nick)
                if target is None or target not in chan.members:
                    self.reply(
                        N.ERR_USERNOTINCHANNEL, nick, chan.name, "They aren't on that channel"
                    )
                    continue
                self._relay_channel(
                    chan,
                    Message.of("KICK", chan.name, target.nick, reason, source=user.source),
                )
                self._leave(target, chan)
                if not chan.members:
                    break

    def _cmd_invite(self, msg: Message) -> None:
        user = self.user
        nick, name = msg.params[0], msg.params[1]
        with self.reg.lock:
            target = self.reg.find_user(nick)
            if target is None:
                raise IRCError(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
            chan = self._find_room(name)
            if chan is None:
                raise IRCError(N.ERR_NOSUCHCHANNEL, name, "No such channel")
            if user not in chan.members:
                raise IRCError(N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
            if target in chan.members:
                raise IRCError(N.ERR_USERONCHANNEL, target.nick, chan.name, "is already on channel")
            if "i" in chan.modes and not chan.is_op(user):
                raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
            chan.invited.add(target)
            self.reply(N.RPL_INVITING, target.nick, chan.name)
            target.send(serialize(Message.of("INVITE", target.nick, chan.name, source=user.source)))
            if target.away is not None:
                self.reply(N.RPL_AWAY, target.nick, target.away)

    # --- messages -------------------------------------------------------------------------

    def _cmd_privmsg(self, msg: Message) -> None:
        self._message(msg, notice=False)

    def _cmd_notice(self, msg: Message) -> None:
        self._message(msg, notice=True)

    def _cmd_tagmsg(self, msg: Message) -> None:
        self._message(msg, notice=True, tagmsg=True)

    def _message(self, msg: Message, notice: bool, tagmsg: bool = False) -> None:
        # The hot path of the server: every chat line comes through here, so the common
        # case (one target, no tags) avoids work it does not need.
        def error(numeric: str, *params: str) -> None:
            # RFC 2812 3.3.2: NOTICE never triggers automatic replies, errors included.
            if not notice:
                self.reply(numeric, *params)

        params = msg.params
        if not params or not params[0]:
            return error(N.ERR_NORECIPIENT, f"No recipient given ({msg.command})")
        if not tagmsg and (len(params) < 2 or not params[1]):
            return error(N.ERR_NOTEXTTOSEND, "No text to send")
        if "," in params[0]:
            given = [t for t in params[0].split(",") if t]
            if not given:
                return error(N.ERR_NORECIPIENT, f"No recipient given ({msg.command})")
            if len(given) > self.cfg.maxtargets:
                return error(N.ERR_TOOMANYTARGETS, params[0], "Too many recipients")
            targets: Iterable[str] = dict.fromkeys(given)  # "#a,#a" delivers once
        else:
            targets = (params[0],)
        user = self.user
        text = params[1] if not tagmsg else ""
        client_tags = (
            {k: v for k, v in msg.tags.items() if k[0] == "+"}
            if msg.tags and "message-tags" in user.caps
            else None
        )
        if tagmsg and not client_tags:
            return  # nothing to relay
        echo = "echo-message" in user.caps
        user.last_spoke = time.monotonic()
        for target in targets:
            # Look up and encode outside the registry lock; hold it only to check the
            # right to speak, fix the message's place and post it (short, uncontended).
            if is_channel(target):
                chan = self.reg.find_channel(target)
                if chan is None:
                    error(N.ERR_NOSUCHCHANNEL, target, "No such channel")
                    continue
                out = Message(
                    msg.command, (chan.name,) if tagmsg else (chan.name, text), user.source
                )
                stamp, msgid, variants = self._stamp(out, client_tags)
                history = None if tagmsg else (chan.folded, chan.name)
                with self.reg.lock:
                    if self.reg.channels.get(chan.folded) is not chan or not self._visible(chan):
                        error(N.ERR_NOSUCHCHANNEL, target, "No such channel")
                        continue
                    if not chan.can_speak(user):
                        error(N.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel")
                        continue
                    sinks = chan.sinks
                    if tagmsg:  # only clients that speak message-tags can see a TAGMSG
                        sinks = tuple(s for s in sinks if getattr(s, "variant", 0) == T.ALL_TAGS)
                    self._post(
                        sinks,
                        variants,
                        user.conn,
                        self._record(out, stamp, msgid, client_tags, history),
                    )
            else:
                with self.reg.lock:
                    peer = self.reg.find_user(target)
                    if peer is None:
                        error(N.ERR_NOSUCHNICK, target, "No such nick/channel")
                        continue
                    out = Message(
                        msg.command, (peer.nick,) if tagmsg else (peer.nick, text), user.source
                    )
                    history = (
                        None
                        if tagmsg
                        else (dm_key(casefold(user.nick), casefold(peer.nick)), peer.nick)
                    )
                    sinks = (peer.conn,)
                    if tagmsg and getattr(peer.conn, "variant", 0) != T.ALL_TAGS:
                        sinks = ()
                    variants = self._relay_sinks(sinks, out, user.conn, client_tags, history)
                    if peer is user and sinks:
                        # delivered like anyone's message (RFC 2812), apart from its echo:
                        # only the echo may carry a label (labeled-response)
                        self.reg.multicast(variants, sinks)
                    if peer.away is not None:
                        error(N.RPL_AWAY, peer.nick, peer.away)
            if echo:
                self._out(variants[self.variant])

    # --- queries --------------------------------------------------------------------------

    def _cmd_who(self, msg: Message) -> None:
        mask = msg.param(0, "*") or "*"
        opers_only = "o" in msg.param(1)
        multi = "multi-prefix" in self.user.caps
        # (room shown, nick, username, host, realname, flags) taken under the lock; a
        # mask is matched on that snapshot outside it, so a costly mask holds up no one
        rows: list[tuple[str, str, str, str, str, str]] = []
        masked = False
        with self.reg.lock:
            chan = self.reg.find_channel(mask) if is_channel(mask) else None
            if chan is not None:
                if self._visible(chan):
                    show_all = self.user in chan.members
                    rows = [
                        self._who_row(chan.name, u, chan.prefix_of(u, multi))
                        for u in chan.members
                        if show_all or "i" not in u.modes
                    ]
            elif not is_channel(mask) and len(mask) <= self.cfg.masklen:
                mine = self.reg.peers_of(self.user)
                rows = [
                    self._who_row("*", u, "")
                    for u in self.reg.registered_users()
                    if "i" not in u.modes or u is self.user or u in mine
                ]
                masked = True
        if masked:
            match = mask_matcher("*" if mask == "0" else mask)
            rows = [
                r
                for r in rows
                if match(casefold(r[1])) or match(casefold(r[3])) or match(casefold(r[4]))
            ]
        for name, nick, username, host, realname, flags in rows:
            if opers_only and "*" not in flags:
                continue
            self.reply(
                N.RPL_WHOREPLY, name, username, host, self.server, nick, flags, f"0 {realname}"
            )
        self.reply(N.RPL_ENDOFWHO, mask, "End of WHO list")

    @staticmethod
    def _who_row(name: str, u: User, prefix: str) -> tuple[str, str, str, str, str, str]:
        flags = ("G" if u.away is not None else "H") + ("*" if u.is_oper else "") + prefix
        return (name, u.nick, u.username, u.host, u.realname, flags)

    def _cmd_whois(self, msg: Message) -> None:
        nicks = msg.params[-1]
        if not nicks:
            raise IRCError(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        for nick in nicks.split(",")[: self.cfg.maxtargets]:
            with self.reg.lock:
                u = self.reg.find_user(nick)
                if u is None:
                    self.reply(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
                    self.reply(N.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
                    continue
                self.reply(N.RPL_WHOISUSER, u.nick, u.username, u.host, "*", u.realname)
                multi = "multi-prefix" in self.user.caps
                chans = [
                    c.prefix_of(u, multi) + c.name for c in u.channels.values() if self._visible(c)
                ]
                if chans:
                    self.reply(N.RPL_WHOISCHANNELS, u.nick, " ".join(chans))
                self.reply(N.RPL_WHOISSERVER, u.nick, self.server, self.cfg.network)
                if u.away is not None:
                    self.reply(N.RPL_AWAY, u.nick, u.away)
                if u.is_oper:
                    self.reply(N.RPL_WHOISOPERATOR, u.nick, "is an IRC operator")
                idle = int(time.monotonic() - u.last_spoke)
                self.reply(
                    N.RPL_WHOISIDLE,
                    u.nick,
                    str(idle),
                    str(int(u.signon)),
                    "seconds idle, signon time",
                )
                self.reply(N.RPL_ENDOFWHOIS, u.nick, "End of /WHOIS list")

    def _cmd_whowas(self, msg: Message) -> None:
        nick = msg.params[0]
        # RFC 2812 3.6.3: a count that is not positive (or none) means every entry
        count = parse_int(msg.param(1), -_INT32_MAX, _INT32_MAX) or 0
        with self.reg.lock:
            found = [e for e in reversed(self.reg.whowas) if casefold(e.nick) == casefold(nick)]
        if count > 0:
            found = found[:count]
        if not found:
            self.reply(N.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
        for e in found:
            self.reply(N.RPL_WHOWASUSER, e.nick, e.username, e.host, "*", e.realname)
            when = datetime.fromtimestamp(e.left, UTC).strftime("%a %b %d %H:%M:%S %Y")
            self.reply(N.RPL_WHOISSERVER, e.nick, self.server, when)
        self.reply(N.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")

    def _cmd_userhost(self, msg: Message) -> None:
        out = []
        for nick in msg.params[:5]:
            u = self.reg.find_user(nick)
            if u is not None:
                oper = "*" if u.is_oper else ""
                away = "-" if u.away is not None else "+"
                out.append(f"{u.nick}{oper}={away}{u.username}@{u.host}")
        self.reply(N.RPL_USERHOST, " ".join(out))

    def _cmd_ison(self, msg: Message) -> None:
        nicks = [n for p in msg.params for n in p.split()]
        online = [u.nick for n in nicks if (u := self.reg.find_user(n)) is not None]
        self.reply(N.RPL_ISON, " ".join(online))

    def _cmd_away(self, msg: Message) -> None:
        user = self.user
        text = msg.param(0)
        with self.reg.lock:
            user.away = truncate_utf8(text, self.cfg.awaylen) if text else None
            peers = self.reg.peers_of(user)
            params = (user.away,) if user.away is not None else ()
            self._relay_sinks(
                self._with_cap(peers, "away-notify"), Message("AWAY", params, user.source)
            )
        if text:
            self.reply(N.RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.reply(N.RPL_UNAWAY, "You are no longer marked as being away")

    # --- modes ------------------------------------------------------------------------------

    def _cmd_mode(self, msg: Message) -> None:
        target = msg.params[0]
        if is_channel(target):
            self._channel_mode(target, msg.params[1:])
        else:
            self._user_mode(target, msg.param(1))

    def _user_mode(self, nick: str, changes: str) -> None:
        user = self.user
        if casefold(nick) != casefold(user.nick):
            if self.reg.find_user(nick) is None:
                raise IRCError(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
            raise IRCError(N.ERR_USERSDONTMATCH, "Can't change mode for other users")
        if not changes:
            self.reply(N.RPL_UMODEIS, "+" + "".join(sorted(user.modes)))
            return
        adding, applied, unknown = True, [], False
        for ch in changes:
            if ch in "+-":
                adding = ch == "+"
            elif ch in "iw" or (ch == "o" and not adding):
                if self.reg.set_user_mode(user, ch, adding):
                    applied.append(("+" if adding else "-", ch))
            elif ch != "o":  # +o only through OPER
                unknown = True
        if unknown:
            self.reply(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
        if applied:
            self._send(Message.of("MODE", user.nick, _modestring(applied), source=user.source))

    def _channel_mode(self, name: str, args: tuple[str, ...]) -> None:
        user = self.user
        with self.reg.lock:
            chan = self._find_room(name)
            if chan is None:
                raise IRCError(N.ERR_NOSUCHCHANNEL, name, "No such channel")
            if not args or not args[0]:
                self.reply(N.RPL_CHANNELMODEIS, chan.name, *chan.mode_string(user in chan.members))
                self.reply(N.RPL_CREATIONTIME, chan.name, str(int(chan.created)))
                return
            modes, params = args[0], list(args[1:])
            bare = modes.lstrip("+")
            if bare and all(c in _LIST_MODES_END for c in bare) and not params:
                for c in dict.fromkeys(bare):
                    self.reply(_LIST_MODES_END[c], chan.name, "End of list")
                return
            if not chan.is_op(user):
                raise IRCError(N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
            applied: list[tuple[str, str]] = []
            out_params: list[str] = []
            adding, used = True, 0
            for ch in modes:
                if ch in "+-":
                    adding = ch == "+"
                    continue
                sign = "+" if adding else "-"
                takes_param = ch in _MODES_STATUS or ch == "k" or (ch == "l" and adding)
                if takes_param and used >= self.cfg.modes_per_line:
                    break
                if ch in _MODES_STATUS:
                    if not params:
                        continue
                    used += 1
                    nick = params.pop(0)
                    target = self.reg.find_user(nick)
                    if target is None:
                        self.reply(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
                        continue
                    if target not in chan.members:
                        self.reply(
                            N.ERR_USERNOTINCHANNEL,
                            target.nick,
                            chan.name,
                            "They aren't on that channel",
                        )
                        continue
                    status = chan.members[target]
                    if adding and ch not in status:
                        chan.members[target] = "".join(sorted(status + ch, key="ov".index))
                    elif not adding and ch in status:
                        chan.members[target] = status.replace(ch, "")
                    else:
                        continue
                    applied.append((sign, ch))
                    out_params.append(target.nick)
                elif ch == "k":
                    key = params.pop(0) if params else None
                    used += 1
                    if adding:
                        if key is None:
                            self.reply(N.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                            continue
                        if (
                            not key
                            or len(key) > self.cfg.keylen
                            or not key.isprintable()
                            or "," in key
                            or " " in key  # RFC 2812 key grammar; 324 sends it as a middle
                            or key[0] == ":"
                        ):
                            self.reply(N.ERR_INVALIDKEY, chan.name, "Key is not well-formed")
                            continue
                        chan.key = key
                        applied.append((sign, ch))
                        out_params.append(key)
                    elif chan.key is not None:
                        chan.key = None
                        applied.append((sign, ch))
                        out_params.append("*")
                elif ch == "l":
                    if adding:
                        raw = params.pop(0) if params else ""
                        used += 1
                        limit = parse_int(raw, 1, _INT32_MAX)
                        if limit is None:
                            self.reply(
                                N.ERR_INVALIDMODEPARAM, chan.name, "l", raw or "*", "Invalid limit"
                            )
                            continue
                        chan.limit = limit
                        applied.append((sign, ch))
                        out_params.append(str(limit))
                    elif chan.limit is not None:
                        chan.limit = None
                        applied.append((sign, ch))
                elif ch in _MODES_FLAG:
                    if adding != (ch in chan.modes):
                        (chan.modes.add if adding else chan.modes.discard)(ch)
                        applied.append((sign, ch))
                else:
                    self.reply(N.ERR_UNKNOWNMODE, ch, "is unknown mode char to me")
            if applied:
                self._relay_channel(
                    chan,
                    Message("MODE", (chan.name, _modestring(applied), *out_params), user.source),
                )
                if any(ch not in _MODES_STATUS for _, ch in applied):
                    self._save_room(chan)

    # --- history (IRCv3 draft/chathistory) -----------------------------------------------------

    def _cmd_chathistory(self, msg: Message) -> None:
        pipeline = self.reg.history
        if pipeline is None:
            raise IRCError(N.ERR_UNKNOWNCOMMAND, "CHATHISTORY", "Unknown command")
        sub = msg.params[0].upper()

        def fail(code: str, *context: str) -> None:
            text = {
                "INVALID_PARAMS": "Invalid parameters",
                "INVALID_TARGET": "Messages could not be retrieved",
                "MESSAGE_ERROR": "Messages could not be retrieved",
            }[code]
            context = tuple(map(safe_param, context))
            self._send(Message("FAIL", ("CHATHISTORY", code, *context, text), self.server))

        arity = {"LATEST": 4, "BEFORE": 4, "AFTER": 4, "AROUND": 4, "BETWEEN": 5, "TARGETS": 4}
        if sub not in arity:
            return fail("INVALID_PARAMS", msg.params[0])
        if len(msg.params) < arity[sub]:
            return fail("INVALID_PARAMS", sub)
        raw_limit = msg.params[arity[sub] - 1]
        limit = parse_int(raw_limit, 1, _INT64_MAX)
        if limit is None:
            return fail("INVALID_PARAMS", sub, raw_limit)
        limit = min(limit, self.cfg.chathistory_max)
        # what this client has sent may still be on its way to the disk; look after it
        pipeline.wait_committed(self.reg.last_message_id)
        try:
            if sub == "TARGETS":
                return self._chathistory_targets(msg.params[1], msg.params[2], limit, fail)
            self._chathistory(sub, msg.params[1:], limit, fail)
        except HistoryReadError:  # logged by the store; the client gets an answer
            fail("MESSAGE_ERROR", sub, msg.params[1])

    def _chathistory(
        self, sub: str, args: tuple[str, ...], limit: int, fail: Callable[..., None]
    ) -> None:
        store = self.reg.history.store  # type: ignore[union-attr]
        target = args[0]
        if is_channel(target):
            chan = self.reg.find_channel(target)
            if chan is None or self.user not in chan.members:
                return fail("INVALID_TARGET", sub, target)
            key, display, floor = chan.folded, chan.name, chan.history_from
        elif is_valid_nick(target, self.cfg.nicklen):
            key, display, floor = dm_key(casefold(self.user.nick), casefold(target)), target, 0
        else:
            return fail("INVALID_TARGET", sub, target)

        def window(lo: int, hi: int, count: int, newest: bool) -> list[StoredMessage]:
            # an earlier room of this name (one that emptied) keeps its history
            return store.window(key, max(lo, floor), hi, count, newest)

        def bounds(selector: str) -> tuple[int, int] | None:
            """A selector as (exclusive upper id for 'before', exclusive lower for 'after')."""
            kind, _, value = selector.partition("=")
            if kind == "msgid" and value:
                found = store.locate(key, value)
                return None if found is None else (found, found)
            if kind == "timestamp":
                ms = T.parse_server_time(value)
                if ms is not None:
                    return store.first_id_at(key, ms), store.first_id_at(key, ms + 1) - 1
            return None

        everything = (0, 1 << 62)
        first = everything if (sub == "LATEST" and args[1] == "*") else bounds(args[1])
        if first is None:
            return fail("INVALID_PARAMS", sub, args[1])
        if sub == "LATEST":
            rows = window(first[1] if first is not everything else 0, 1 << 62, limit, True)
        elif sub == "BEFORE":
            rows = window(0, first[0], limit, newest=True)
        elif sub == "AFTER":
            rows = window(first[1], 1 << 62, limit, newest=False)
        elif sub == "AROUND":
            older = window(0, first[0], limit // 2, newest=True)
            rows = older + window(first[0] - 1, 1 << 62, limit - len(older), newest=False)
        else:  # BETWEEN: from the first selector towards the second, both excluded
            second = bounds(args[2])
            if second is None:
                return fail("INVALID_PARAMS", sub, args[2])
            if first[0] <= second[0]:
                rows = window(first[1], second[0], limit, newest=False)
            else:
                rows = window(second[1], first[0], limit, newest=True)
        self._send_history(display, rows, mark=False)

    def _chathistory_targets(
        self, start: str, end: str, limit: int, fail: Callable[..., None]
    ) -> None:
        times = []
        for sel in (start, end):
            kind, _, value = sel.partition("=")
            ms = T.parse_server_time(value) if kind == "timestamp" else None
            if ms is None:
                return fail("INVALID_PARAMS", "TARGETS", sel)
            times.append(ms)
        store = self.reg.history.store  # type: ignore[union-attr]
        me = casefold(self.user.nick)
        # a room whose only messages belong to an earlier room of its name is not listed
        floors = {c.folded: c.history_from >> ID_TIME_SHIFT for c in self.user.channels.values()}
        keys = [*floors, *store.dm_keys(me)]
        found = [
            row
            for row in store.targets(keys, times[0], times[1], limit)
            if row[2] >= floors.get(row[0], 0)
        ]
        ref = T.new_batch_id()
        batch = "batch" in self.user.caps
        if batch:
            self._send(Message("BATCH", ("+" + ref, "draft/chathistory-targets"), self.server))
        for key, display, latest in found:
            name = (
                display if is_channel(display) else next((n for n in key.split(" ") if n != me), me)
            )
            tags = {"batch": ref} if batch else {}
            self._send(
                Message(
                    "CHATHISTORY",
                    ("TARGETS", name, T.server_time(latest)),
                    self.server,
                    tags,
                )
            )
        if batch:
            self._send(Message("BATCH", ("-" + ref,), self.server))

    # --- operators -------------------------------------------------------------------------

    def _cmd_oper(self, msg: Message) -> None:
        name, password = msg.params[0], msg.params[1]
        expected = self.cfg.opers.get(name)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            raise IRCError(N.ERR_PASSWDMISMATCH, "Password incorrect")
        if self.reg.set_user_mode(self.user, "o", True):
            self._send(Message.of("MODE", self.user.nick, "+o", source=self.user.source))
        self.reply(N.RPL_YOUREOPER, "You are now an IRC operator")

    def _require_oper(self) -> None:
        if not self.user.is_oper:
            raise IRCError(N.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")

    def _cmd_kill(self, msg: Message) -> None:
        self._require_oper()
        target = self.reg.find_user(msg.params[0])
        if target is None:
            raise IRCError(N.ERR_NOSUCHNICK, msg.params[0], "No such nick/channel")
        comment = msg.param(1) or "No reason given"
        reason = f"Killed ({self.user.nick} ({comment}))"
        end_user(self.reg, target, reason, f"Closing Link: {target.host} ({reason})")

    def _cmd_wallops(self, msg: Message) -> None:
        self._require_oper()
        if not msg.params[0]:
            raise IRCError(N.ERR_NEEDMOREPARAMS, "WALLOPS", "Not enough parameters")
        with self.reg.lock:
            readers = [u for u in self.reg.registered_users() if "w" in u.modes or u.is_oper]
            self._relay(readers, Message.of("WALLOPS", msg.params[0], source=self.user.source))

    # --- server information ---------------------------------------------------------------

    def _cmd_motd(self, msg: Message) -> None:
        self._motd()

    def _cmd_lusers(self, msg: Message) -> None:
        self._lusers()

    def _cmd_version(self, msg: Message) -> None:
        self.reply(N.RPL_VERSION, VERSION, self.server, "threaded IRC server for LAN chat")
        tokens = isupport_tokens(self.cfg)
        for i in range(0, len(tokens), 13):
            self.reply(N.RPL_ISUPPORT, *tokens[i : i + 13], "are supported by this server")

    def _cmd_time(self, msg: Message) -> None:
        now = datetime.now(UTC).astimezone()
        self.reply(N.RPL_TIME, self.server, now.strftime("%A %B %d %Y -- %H:%M:%S %z"))

    def _cmd_info(self, msg: Message) -> None:
        for line in (
            f"{VERSION}: group chat for a LAN, speaking IRC.",
            "One thread per connection on socketserver.ThreadingTCPServer;",
            "one writer loop drains every client's bounded send queue.",
            f"Server started {datetime.fromtimestamp(self.reg.created, UTC):%Y-%m-%d %H:%M UTC}.",
        ):
            self.reply(N.RPL_INFO, line)
        self.reply(N.RPL_ENDOFINFO, "End of /INFO list")

    def _cmd_help(self, msg: Message) -> None:
        subject = msg.param(0).upper() or "*"
        lines = HELP.get(subject)
        if lines is None:
            raise IRCError(N.ERR_HELPNOTFOUND, subject, "No help available on this topic")
        self.reply(N.RPL_HELPSTART, subject, lines[0])
        for line in lines[1:]:
            self.reply(N.RPL_HELPTXT, subject, line)
        self.reply(N.RPL_ENDOFHELP, subject, "End of /HELP")


def end_user(registry: Registry, user: User, reason: str, error: str) -> None:
    """Remove ``user`` from the server (any thread): ERROR to it, QUIT to its rooms."""
    with registry.lock:
        if user.gone:
            return
        user.send(serialize(Message.of("ERROR", error)))
        peers = registry.remove_user(user)
        if user.registered and peers:
            quit_msg = Message.of("QUIT", reason, source=user.source)
            _, _, variants = Session._stamp(quit_msg)
            registry.multicast(variants, tuple(p.conn for p in peers))
    user.conn.close(reason)


def _restore(saved: RoomState) -> Channel:
    return Channel(
        saved.name,
        created=saved.created,
        topic=saved.topic,
        topic_by=saved.topic_by,
        topic_at=saved.topic_at,
        modes=set(saved.modes),
        key=saved.room_key,
        limit=saved.limit,
        history_from=saved.history_from,
    )


def safe_param(param: str) -> str:
    """A peer's argument echoed in a middle position of a reply: ``*`` when IRC could
    not carry it there (empty, a space, a leading colon), so an error reply always
    serialises (Ergo's SafeErrorParam)."""
    return param if param and param[0] != ":" and " " not in param else "*"


def _mark_history(text: str, time_ms: int) -> str:
    """Write a replayed line's time into its text, for clients without server-time."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(time_ms / 1000))
    if text.startswith("\x01ACTION "):
        return f"\x01ACTION [history {stamp}] {text[8:]}"
    return f"[history {stamp}] {text}"


def _tag_data_bytes(raw: bytes) -> int:
    """Bytes of tag data in a received line: those between the '@' and the first space."""
    return raw.index(b" ") - 1 if raw.startswith(b"@") else 0


def _modestring(applied: list[tuple[str, str]]) -> str:
    """[("+","o"),("+","v"),("-","k")] -> "+ov-k"."""
    out, sign = [], ""
    for s, ch in applied:
        if s != sign:
            out.append(s)
            sign = s
        out.append(ch)
    return "".join(out)


def isupport_tokens(cfg: Config) -> list[str]:
    """The RPL_ISUPPORT (005) tokens, as advertised after registration and on VERSION."""
    return [
        f"AWAYLEN={cfg.awaylen}",
        "CASEMAPPING=rfc1459",
        f"CHANLIMIT=#:{cfg.chanlimit}",
        "CHANMODES=,k,l,imnst",
        f"CHANNELLEN={cfg.channellen}",
        "CHANTYPES=#",
        f"KEYLEN={cfg.keylen}",
        f"KICKLEN={cfg.kicklen}",
        f"MAXTARGETS={cfg.maxtargets}",
        f"MODES={cfg.modes_per_line}",
        f"NETWORK={cfg.network}",
        f"NICKLEN={cfg.nicklen}",
        "PREFIX=(ov)@+",
        f"TARGMAX=PRIVMSG:{cfg.maxtargets},NOTICE:{cfg.maxtargets},JOIN:,PART:,KICK:,WHOIS:"
        f"{cfg.maxtargets},NAMES:,LIST:",
        f"TOPICLEN={cfg.topiclen}",
        f"USERLEN={cfg.userlen}",
        "UTF8ONLY",
        *(
            [f"CHATHISTORY={cfg.chathistory_max}", "MSGREFTYPES=msgid,timestamp"]
            if cfg.history
            else []
        ),
    ]


Handler = Callable[[Session, Message], None]

# command -> (handler, minimum parameters, allowed before registration)
_COMMANDS: dict[str, tuple[Handler, int, bool]] = {
    "CAP": (Session._cmd_cap, 1, True),
    "PASS": (Session._cmd_pass, 1, True),
    "NICK": (Session._cmd_nick, 0, True),
    "USER": (Session._cmd_user, 4, True),
    "PING": (Session._cmd_ping, 0, True),
    "PONG": (Session._cmd_pong, 0, True),
    "QUIT": (Session._cmd_quit, 0, True),
    "JOIN": (Session._cmd_join, 1, False),
    "PART": (Session._cmd_part, 1, False),
    "PRIVMSG": (Session._cmd_privmsg, 0, False),
    "NOTICE": (Session._cmd_notice, 0, False),
    "TAGMSG": (Session._cmd_tagmsg, 0, False),
    "NAMES": (Session._cmd_names, 0, False),
    "TOPIC": (Session._cmd_topic, 1, False),
    "LIST": (Session._cmd_list, 0, False),
    "WHO": (Session._cmd_who, 0, False),
    "WHOIS": (Session._cmd_whois, 1, False),
    "WHOWAS": (Session._cmd_whowas, 1, False),
    "USERHOST": (Session._cmd_userhost, 1, False),
    "ISON": (Session._cmd_ison, 1, False),
    "AWAY": (Session._cmd_away, 0, False),
    "KICK": (Session._cmd_kick, 2, False),
    "INVITE": (Session._cmd_invite, 2, False),
    "MODE": (Session._cmd_mode, 1, False),
    "OPER": (Session._cmd_oper, 2, False),
    "KILL": (Session._cmd_kill, 1, False),
    "WALLOPS": (Session._cmd_wallops, 1, False),
    "MOTD": (Session._cmd_motd, 0, False),
    "LUSERS": (Session._cmd_lusers, 0, False),
    "VERSION": (Session._cmd_version, 0, False),
    "TIME": (Session._cmd_time, 0, False),
    "INFO": (Session._cmd_info, 0, False),
    "HELP": (Session._cmd_help, 0, False),
    "CHATHISTORY": (Session._cmd_chathistory, 1, False),
}


def _help_table() -> dict[str, list[str]]:
    usage = {
        "JOIN": "JOIN #room[,#room2] [key[,key2]] -- enter rooms (JOIN 0 leaves all)",
        "PART": "PART #room[,#room2] [:reason] -- leave rooms",
        "PRIVMSG": "PRIVMSG <#room|nick>[,...] :text -- say something",
        "NOTICE": "NOTICE <#room|nick> :text -- say something that gets no automatic reply",
        "NICK": "NICK <newnick> -- change your nickname",
        "TOPIC": "TOPIC #room [:new topic] -- show or set a room's topic",
        "NAMES": "NAMES [#room] -- who is in a room",
        "LIST": "LIST [#room,...] -- rooms with their member counts and topics",
        "WHO": "WHO <#room|mask> [o] -- details of matching users",
        "WHOIS": "WHOIS <nick> -- details of one user",
        "WHOWAS": "WHOWAS <nick> [count] -- who recently used a nickname",
        "AWAY": "AWAY [:message] -- mark yourself away (no message: back)",
        "KICK": "KICK #room nick [:reason] -- remove someone (room operators)",
        "INVITE": "INVITE nick #room -- invite someone into a room",
        "MODE": "MODE <#room|nick> [+-modes [params]] -- room: imnst k l o v; user: i w",
        "OPER": "OPER <name> <password> -- become a server operator",
        "KILL": "KILL <nick> :reason -- disconnect a user (operators)",
        "WALLOPS": "WALLOPS :text -- message all operators and +w users (operators)",
        "QUIT": "QUIT [:message] -- leave the server",
    }
    table = {cmd: [text] for cmd, text in usage.items()}
    table["*"] = [
        "chatroom IRC server. Commands:",
        " ".join(sorted(_COMMANDS)),
        "HELP <command> shows how to use one.",
    ]
    return table


HELP = _help_table()
