"""Sans-IO IRC codec shared by the server and the client: bytes in, Messages out, and back.

Grammar: RFC 1459/2812 message format with IRCv3 message tags::

    [@tags SPACE] [:source SPACE] COMMAND [params...] [SPACE :trailing] CRLF

Nothing here touches a socket, a thread or an event loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_TAGS_BYTES",
    "RECVQ_BYTES",
    "ForbiddenCharacter",
    "InvalidUTF8",
    "LineBuffer",
    "LineTooLong",
    "MalformedMessage",
    "Message",
    "Numeric",
    "PeerProtocolError",
    "ProtocolError",
    "RecvQExceeded",
    "UnserializableMessage",
    "casefold",
    "escape_tag_value",
    "is_channel",
    "is_valid_channel",
    "is_valid_nick",
    "parse",
    "serialize",
    "sniff_foreign_protocol",
    "split_source",
    "unescape_tag_value",
]

# RFC 1459 section 2.3: a message is at most 512 bytes including the CR-LF.
MAX_LINE_BYTES = 512
# IRCv3 message-tags: the tag section (with its '@' and trailing space) is at most
# 8191 bytes; clients may send at most 4094 bytes of it, servers add the rest.
MAX_TAGS_BYTES = 8191
# How far an unterminated line may grow before the peer is cut off: twice a legal
# line, so a long one gets 417 rather than being treated as hostile.
RECVQ_BYTES = 2 * (MAX_TAGS_BYTES + MAX_LINE_BYTES)


# --- errors -------------------------------------------------------------------------


class ProtocolError(Exception):
    """Base of everything this module raises about IRC traffic."""


class UnserializableMessage(ProtocolError, ValueError):
    """We tried to build a line that IRC cannot carry (a local bug, not the peer's)."""


class PeerProtocolError(ProtocolError):
    """The peer broke the protocol. Each kind hints its reply (h11's error_status_hint):
    ``fatal`` drops the connection; else ``fail_code`` names a ``FAIL``, ``numeric`` a
    numeric, and neither means 400 (ERR_UNKNOWNERROR) with the reason. ``command`` is
    the peer's command when it could be read."""

    numeric: str | None = None
    fail_code: str | None = None
    fatal = False

    def __init__(self, message: str, command: str = "*") -> None:
        super().__init__(message)
        self.command = command


class MalformedMessage(PeerProtocolError):
    """A line that does not follow the message grammar (no command, bad tags...)."""


class LineTooLong(PeerProtocolError):
    """Over 512 bytes without tags, or over the tag limit: 417, connection kept."""

    numeric = "417"


class InvalidUTF8(PeerProtocolError):
    """Text that is not UTF-8 on a UTF8ONLY server: ``FAIL <cmd> INVALID_UTF8``."""

    fail_code = "INVALID_UTF8"


class UnknownCommand(MalformedMessage):
    """A command word outside the grammar (not letters or digits): no such command, 421."""

    numeric = "421"


class ForbiddenCharacter(PeerProtocolError):
    """NUL, a bare CR or a stray LF inside a line: never relayed."""


class RecvQExceeded(PeerProtocolError):
    """An unterminated line grew past the receive limit: ERROR and close."""

    fatal = True


# --- casemapping and names -------------------------------------------------------------

# CASEMAPPING=rfc1459: ASCII letters plus []\~ fold to {}|^ (RFC 1459 section 2.2).
_RFC1459_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")


def casefold(name: str) -> str:
    """Fold a nick or room name for comparison; the one key every dict uses.

    >>> casefold("Nick[Away]~") == casefold("nick{away}^")
    True
    """
    return name.translate(_RFC1459_FOLD)


# RFC 2812 section 2.3.1: nickname = ( letter / special ) *( letter / digit / special / "-" )
_NICK_RE = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*\Z")
# RFC 2812 chanstring: any octet except NUL, BELL, CR, LF, space, comma and colon.
_CHANNEL_BAD = re.compile(r"[\x00\x07\r\n ,:]")
CHANNEL_PREFIXES = "#"


def is_valid_nick(nick: str, max_len: int = 30) -> bool:
    """RFC 2812 nickname syntax within ``max_len`` characters.

    >>> is_valid_nick("alice"), is_valid_nick("9lives"), is_valid_nick("a b")
    (True, False, False)
    """
    return 0 < len(nick) <= max_len and _NICK_RE.match(nick) is not None


def is_channel(name: str) -> bool:
    """True when ``name`` names a room rather than a person."""
    return bool(name) and name[0] in CHANNEL_PREFIXES


def is_valid_channel(name: str, max_len: int = 50) -> bool:
    """A room name: ``#`` then at least one allowed character, ``max_len`` in all.

    >>> is_valid_channel("#lan-party"), is_valid_channel("#a,b"), is_valid_channel("#")
    (True, False, False)
    """
    return 1 < len(name) <= max_len and is_channel(name) and _CHANNEL_BAD.search(name) is None


def split_source(source: str) -> tuple[str, str | None, str | None]:
    """Split ``nick!user@host`` into its parts; a server name comes back as the nick.

    >>> split_source("alice!al@10.0.0.5")
    ('alice', 'al', '10.0.0.5')
    >>> split_source("irc.example.net")
    ('irc.example.net', None, None)
    """
    nick, _, rest = source.partition("!")
    if not rest:
        nick, _, host = source.partition("@")
        return nick, None, host or None
    user, _, host = rest.partition("@")
    return nick, user, host or None


# --- numbers and masks from the wire -------------------------------------------------------

_ASCII_INT = re.compile(r"-?[0-9]+\Z")


def parse_int(text: str, low: int, high: int) -> int | None:
    """A decimal integer parameter within ``[low, high]``, or None.

    The one way numbers are read from peers: ``str.isdigit`` accepts ``"²"``, which
    ``int`` then refuses, and an unbounded ``int`` overflows SQLite's 64 bits.

    >>> parse_int("42", 1, 100), parse_int("²", 0, 9), parse_int(str(2**63), 0, 2**63 - 1)
    (42, None, None)
    >>> parse_int("-3", -5, 5), parse_int("+3", 0, 5), parse_int(" 3", 0, 5)
    (-3, None, None)
    """
    if len(text) > 20 or not _ASCII_INT.match(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def mask_matcher(mask: str) -> Callable[[str], bool]:
    """An IRC wildcard mask (``*`` any run, ``?`` one character) as a predicate over
    casefolded strings, in linear-ish time whatever the mask.

    A backtracking matcher (``fnmatch``, ``.*`` regexes) takes exponential time on
    ``*a*a*a*a*b`` against a long run of ``a``; here the parts between stars are
    found greedily left to right (the leftmost place of each is always the best),
    each search a quantifier-free scan done in C: O(len(text) * len(mask)) at worst.

    >>> m = mask_matcher("Al*ce?")
    >>> m(casefold("ALICE1")), m("alce1"), m("alice"), m("alXXXce22")
    (True, True, False, False)
    >>> mask_matcher("*a*a*a*a*a*a*a*a*b")("a" * 60)
    False
    """
    parts = casefold(mask).split("*")
    finders = [_part_finder(p) for p in parts]
    fixed = sum(len(p) for p in parts)
    if len(parts) == 1:
        only = finders[0]
        return lambda text: len(text) == fixed and only(text, 0, len(text)) == 0
    head, *middle, tail = finders
    head_len, tail_len = len(parts[0]), len(parts[-1])

    def match(text: str) -> bool:
        end = len(text) - tail_len
        if end < head_len or len(text) < fixed:
            return False
        if head(text, 0, head_len) != 0 or tail(text, end, len(text)) != end:
            return False
        pos = head_len
        for part, find in zip(parts[1:-1], middle, strict=True):
            found = find(text, pos, end)
            if found < 0:
                return False
            pos = found + len(part)
        return True

    return match


def _part_finder(part: str) -> Callable[[str, int, int], int]:
    """``find(text, start, end)``: where ``part`` (``?`` = any one character) first
    occurs wholly inside ``text[start:end]``, or -1."""
    if "?" not in part:
        return lambda text, start, end: text.find(part, start, end)
    pattern = re.compile(re.escape(part).replace(r"\?", "."), re.DOTALL)

    def find(text: str, start: int, end: int) -> int:
        found = pattern.search(text, start, end)
        return -1 if found is None else found.start()

    return find


# --- tags ---------------------------------------------------------------------------------

_TAG_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESCAPE_RE = re.compile(r"[; \\\r\n]")
_TAG_UNESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)
_TAG_KEY_RE = re.compile(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+\Z")


def escape_tag_value(value: str) -> str:
    r"""IRCv3 tag value escaping.

    >>> escape_tag_value("a b;c\\d")
    'a\\sb\\:c\\\\d'
    """
    return _TAG_ESCAPE_RE.sub(lambda m: _TAG_ESCAPES[m.group()], value)


def unescape_tag_value(raw: str) -> str:
    r"""Undo IRCv3 tag escaping; an unknown escape drops the backslash, a lone one is dropped.

    >>> unescape_tag_value(r"a\sb\:c\\d\x\\")
    'a b;c\\dx\\'
    """
    return _TAG_UNESCAPE_RE.sub(lambda m: _TAG_UNESCAPES.get(m.group(1), m.group(1)), raw)


def _parse_tags(raw: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if not _TAG_KEY_RE.match(key):
            raise MalformedMessage(f"invalid tag key {key!r}")
        tags[key] = unescape_tag_value(value) if "\\" in value else value
    return tags


# --- the message --------------------------------------------------------------------------

_NO_TAGS: Mapping[str, str] = MappingProxyType({})


class Message(NamedTuple):
    """One IRC line. Build outgoing lines with this too, never by concatenation.

    A NamedTuple: a frozen dataclass costs five times as much to create.
    """

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = _NO_TAGS

    @classmethod
    def of(
        cls,
        command: str,
        *params: str,
        source: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Message:
        """Shorthand: ``Message.of("PRIVMSG", "#lan", "hi", source="a!b@c")``."""
        return cls(command, params, source, tags or _NO_TAGS)

    @property
    def nick(self) -> str | None:
        """The nick part of the source, if any."""
        return split_source(self.source)[0] if self.source else None

    def param(self, index: int, default: str = "") -> str:
        """Parameter ``index`` or ``default`` when the peer left it out."""
        return self.params[index] if index < len(self.params) else default

    def __bytes__(self) -> bytes:
        return serialize(self)

    def __repr__(self) -> str:
        return (
            f"Message(command={self.command!r}, params={self.params!r},"
            f" source={self.source!r}, tags={dict(self.tags)!r})"
        )

    def __str__(self) -> str:
        return serialize(self)[:-2].decode("utf-8")


def _command_of(rest: str) -> str:
    """Best-effort command name of a raw line, for error replies about it."""
    text = rest
    if text.startswith("@"):
        text = text.partition(" ")[2].lstrip(" ")
    if text.startswith(":"):
        text = text.partition(" ")[2].lstrip(" ")
    word = text.partition(" ")[0].upper()
    return word if word.isascii() and word.isalnum() else "*"


def parse(
    line: bytes | str,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_tags_bytes: int = MAX_TAGS_BYTES,
) -> Message:
    """Parse one line (with or without its CR-LF) into a Message.

    Bytes are checked as a server must: NUL or bare CR, invalid UTF-8 and a tag
    section or rest of line over its limit raise a :class:`PeerProtocolError` naming
    the reply to give (clients pass larger limits than a server enforces).

    >>> parse(b":nick!u@h PRIVMSG #room :hello there\\r\\n")
    Message(command='PRIVMSG', params=('#room', 'hello there'), source='nick!u@h', tags={})
    """
    if isinstance(line, bytes):
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        # An LF left after the one terminator is a second line smuggled into this one.
        if b"\x00" in line or b"\r" in line or b"\n" in line:
            raise ForbiddenCharacter(
                "NUL, CR or LF inside a line", _command_of(line.decode("utf-8", "replace"))
            )
        _check_length(line, max_line_bytes, max_tags_bytes)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidUTF8(
                "line is not valid UTF-8", _command_of(line.decode("utf-8", "replace"))
            ) from None
    else:
        # Strip exactly one terminator, as for bytes; anything left over is inside the line.
        text = line.removesuffix("\n").removesuffix("\r") if line.endswith("\n") else line
        if "\x00" in text or "\r" in text or "\n" in text:
            raise ForbiddenCharacter("NUL, CR or LF inside a line", _command_of(text))
    return _parse_text(text)


def _check_length(line: bytes, max_line_bytes: int, max_tags_bytes: int) -> None:
    body = line
    if line.startswith(b"@"):
        tags, _, body = line.partition(b" ")
        if len(tags) + 1 > max_tags_bytes:
            raise LineTooLong("tag section too long")
    if len(body) + 2 > max_line_bytes:
        raise LineTooLong("line too long")


def _parse_text(text: str) -> Message:
    tags: Mapping[str, str] = _NO_TAGS
    rest = text
    if rest[:1] == "@":
        raw_tags, _, rest = rest.partition(" ")
        tags = _parse_tags(raw_tags[1:])
        rest = rest.lstrip(" ")
    source = None
    if rest[:1] == ":":
        source, _, rest = rest.partition(" ")
        source = source[1:]
        if not source:
            raise MalformedMessage("empty source")
        rest = rest.lstrip(" ")
    head, sep, trailing = rest.partition(" :")
    words = head.split(" ")
    if "" in words:  # runs of spaces: rare, so filter only then
        words = [w for w in words if w]
        if not words:
            raise MalformedMessage("no command")
    command = words[0].upper()
    if not (command.isascii() and command.isalnum()):
        raise UnknownCommand(f"invalid command {words[0]!r}", command)
    if sep:
        words.append(trailing)
    return Message(command, tuple(words[1:]), source, tags)


# Commands whose parameter at this index is free text: always sent with a ':'.
_TEXT_PARAM = {
    "PRIVMSG": 1,
    "NOTICE": 1,
    "TOPIC": 1,
    "PART": 1,
    "KICK": 2,
    "QUIT": 0,
    "ERROR": 0,
    "AWAY": 0,
    "WALLOPS": 0,
    "KILL": 1,
    "SETNAME": 0,
}


def serialize(msg: Message) -> bytes:
    """Encode a Message as one CR-LF terminated line.

    Refuses CR, LF and NUL anywhere, and middle parameters that would change meaning,
    so no caller can smuggle a second line or shift parameters.

    >>> serialize(Message("PRIVMSG", ("#room", "hi")))
    b'PRIVMSG #room :hi\\r\\n'
    """
    parts: list[str] = []
    if msg.tags:
        items = []
        for key, value in msg.tags.items():
            if not _TAG_KEY_RE.match(key):
                raise UnserializableMessage(f"invalid tag key {key!r}")
            # IRCv3 escaped values exclude NUL and there is no escape for it.
            if "\x00" in value:
                raise UnserializableMessage(f"NUL in value of tag {key!r}")
            items.append(f"{key}={escape_tag_value(value)}" if value else key)
        parts.append("@" + ";".join(items))
    if msg.source is not None:
        if not msg.source or " " in msg.source:
            raise UnserializableMessage(f"invalid source {msg.source!r}")
        parts.append(":" + msg.source)
    command = str(msg.command)
    if not command or not command.isalnum() or not command.isascii():
        raise UnserializableMessage(f"invalid command {command!r}")
    parts.append(command)
    params = msg.params
    if params:
        last = len(params) - 1
        for p in params[:last]:
            if not p or " " in p or p[0] == ":":
                raise UnserializableMessage(f"invalid middle parameter {p!r}")
            parts.append(p)
        p = params[last]
        text_at = _TEXT_PARAM.get(command)
        if (
            not p
            or " " in p
            or p[0] == ":"
            or text_at == last
            or (text_at is None and command.isdigit() and last > 0)
        ):
            p = ":" + p
        parts.append(p)
    line = " ".join(parts)
    # One scan of the whole line: cheaper than checking every part on the hot path.
    if "\r" in line or "\n" in line or "\x00" in line:
        raise UnserializableMessage(f"CR, LF or NUL in {line[:60]!r}")
    return (line + "\r\n").encode("utf-8")


# --- framing ------------------------------------------------------------------------------


class LineBuffer:
    """Frames a byte stream into lines; bounded, so a peer cannot grow it forever.

    Accepts CR-LF and bare LF; empty lines are skipped. An unterminated tail longer
    than ``limit`` raises :class:`RecvQExceeded` (a server cuts the peer off). With
    ``skip_long`` (a client: the server is still worth hearing) that line is thrown
    away up to its terminator, and ``dropped`` counts the lines thrown away.

    >>> buf = LineBuffer()
    >>> buf.feed(b"NICK a\\r\\nUSER a 0 * :A\\nPI"), buf.feed(b"NG x\\r\\n")
    ([b'NICK a', b'USER a 0 * :A'], [b'PING x'])
    >>> buf = LineBuffer(limit=8, skip_long=True)
    >>> buf.feed(b"PING a\\r\\nPRIVMSG #"), buf.feed(b"a :too long\\r\\nPING b\\n"), buf.dropped
    ([b'PING a'], [b'PING b'], 1)
    """

    __slots__ = ("_skipping", "_tail", "dropped", "limit", "skip_long")

    def __init__(self, limit: int = RECVQ_BYTES, *, skip_long: bool = False) -> None:
        self.limit = limit
        self.skip_long = skip_long
        self.dropped = 0
        self._tail = b""
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete lines, without their terminators."""
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return []
            self._skipping = False
            data = data[end + 1 :]
        if b"\n" not in data:
            self._tail += data
            if len(self._tail) > self.limit:
                self._tail = b""
                return self._overflow([])
            return []
        chunks = (self._tail + data).split(b"\n")
        self._tail = chunks.pop()
        if len(self._tail) > self.limit:
            self._tail = b""
            return self._overflow(chunks)
        return [c[:-1] if c.endswith(b"\r") else c for c in chunks if c and c != b"\r"]

    def _overflow(self, chunks: list[bytes]) -> list[bytes]:
        """The tail outgrew ``limit``: raise, or skip that line and keep ``chunks``."""
        if not self.skip_long:
            raise RecvQExceeded("RecvQ exceeded")
        self._skipping = True
        self.dropped += 1
        return [c[:-1] if c.endswith(b"\r") else c for c in chunks if c and c != b"\r"]

    def __len__(self) -> int:
        return len(self._tail)


_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ")


def sniff_foreign_protocol(first_bytes: bytes) -> str | None:
    """Name the protocol when a connection's first bytes are clearly not IRC.

    >>> sniff_foreign_protocol(b"\\x16\\x03\\x01\\x02\\x00")
    'TLS'
    >>> sniff_foreign_protocol(b"GET / HTTP/1.1")
    'HTTP'
    >>> sniff_foreign_protocol(b"NICK alice") is None
    True
    """
    if len(first_bytes) >= 2 and first_bytes[0] == 0x16 and first_bytes[1] == 0x03:
        return "TLS"
    if first_bytes.startswith(_HTTP_METHODS):
        return "HTTP"
    return None


# --- capabilities ---------------------------------------------------------------------------


class Cap(StrEnum):
    """IRCv3 capabilities by wire name, one list for server, client and tests (specs linked)."""

    ACCOUNT_NOTIFY = "account-notify"  # https://ircv3.net/specs/extensions/account-notify
    ACCOUNT_REGISTRATION = "draft/account-registration"  # .../extensions/account-registration
    ACCOUNT_TAG = "account-tag"  # https://ircv3.net/specs/extensions/account-tag
    AWAY_NOTIFY = "away-notify"  # https://ircv3.net/specs/extensions/away-notify
    BATCH = "batch"  # https://ircv3.net/specs/extensions/batch
    CAP_NOTIFY = "cap-notify"  # https://ircv3.net/specs/extensions/capability-negotiation
    CHATHISTORY = "chathistory"  # https://ircv3.net/specs/extensions/chathistory (ratified)
    DRAFT_CHATHISTORY = "draft/chathistory"  # the same spec, as most servers still name it
    DRAFT_EVENT_PLAYBACK = "draft/event-playback"  # .../extensions/chathistory (event playback)
    DRAFT_MULTILINE = "draft/multiline"  # https://ircv3.net/specs/extensions/multiline
    ECHO_MESSAGE = "echo-message"  # https://ircv3.net/specs/extensions/echo-message
    EXTENDED_JOIN = "extended-join"  # https://ircv3.net/specs/extensions/extended-join
    EXTENDED_MONITOR = "extended-monitor"  # https://ircv3.net/specs/extensions/extended-monitor
    LABELED_RESPONSE = "labeled-response"  # https://ircv3.net/specs/extensions/labeled-response
    MESSAGE_REDACTION = "draft/message-redaction"  # .../extensions/message-redaction
    MESSAGE_TAGS = "message-tags"  # https://ircv3.net/specs/extensions/message-tags
    MULTI_PREFIX = "multi-prefix"  # https://ircv3.net/specs/extensions/multi-prefix
    READ_MARKER = "draft/read-marker"  # https://ircv3.net/specs/extensions/read-marker
    SASL = "sasl"  # https://ircv3.net/specs/extensions/sasl-3.2
    SEARCH = "soju.im/search"  # https://soju.im/doc/ext/search.md (doc/ext/search.md in soju)
    SERVER_TIME = "server-time"  # https://ircv3.net/specs/extensions/server-time
    SETNAME = "setname"  # https://ircv3.net/specs/extensions/setname
    USERHOST_IN_NAMES = "userhost-in-names"  # https://ircv3.net/specs/extensions/userhost-in-names


# --- numerics -----------------------------------------------------------------------------


class Numeric(StrEnum):
    """Reply numerics (RFC 2812 section 5, plus modern ones from ircdocs and IRCv3)."""

    RPL_WELCOME = "001"
    RPL_YOURHOST = "002"
    RPL_CREATED = "003"
    RPL_MYINFO = "004"
    RPL_ISUPPORT = "005"
    RPL_UMODEIS = "221"
    RPL_LUSERCLIENT = "251"
    RPL_LUSEROP = "252"
    RPL_LUSERUNKNOWN = "253"
    RPL_LUSERCHANNELS = "254"
    RPL_LUSERME = "255"
    RPL_LOCALUSERS = "265"
    RPL_GLOBALUSERS = "266"
    RPL_AWAY = "301"
    RPL_USERHOST = "302"
    RPL_ISON = "303"
    RPL_UNAWAY = "305"
    RPL_NOWAWAY = "306"
    RPL_WHOISUSER = "311"
    RPL_WHOISSERVER = "312"
    RPL_WHOISOPERATOR = "313"
    RPL_WHOWASUSER = "314"
    RPL_ENDOFWHO = "315"
    RPL_WHOISIDLE = "317"
    RPL_ENDOFWHOIS = "318"
    RPL_WHOISCHANNELS = "319"
    RPL_LISTSTART = "321"
    RPL_LIST = "322"
    RPL_LISTEND = "323"
    RPL_CHANNELMODEIS = "324"
    RPL_CREATIONTIME = "329"
    RPL_WHOISBOT = "335"
    RPL_EXCEPTLIST = "348"
    RPL_ENDOFEXCEPTLIST = "349"
    RPL_WHOISACCOUNT = "330"
    RPL_NOTOPIC = "331"
    RPL_TOPIC = "332"
    RPL_TOPICWHOTIME = "333"
    RPL_INVITING = "341"
    RPL_INVITELIST = "346"
    RPL_ENDOFINVITELIST = "347"
    RPL_VERSION = "351"
    RPL_WHOREPLY = "352"
    RPL_NAMREPLY = "353"
    RPL_ENDOFNAMES = "366"
    RPL_BANLIST = "367"
    RPL_ENDOFBANLIST = "368"
    RPL_ENDOFWHOWAS = "369"
    RPL_INFO = "371"
    RPL_MOTD = "372"
    RPL_ENDOFINFO = "374"
    RPL_MOTDSTART = "375"
    RPL_ENDOFMOTD = "376"
    RPL_YOUREOPER = "381"
    RPL_TIME = "391"
    ERR_UNKNOWNERROR = "400"
    ERR_NOSUCHNICK = "401"
    ERR_NOSUCHSERVER = "402"
    ERR_NOSUCHCHANNEL = "403"
    ERR_CANNOTSENDTOCHAN = "404"
    ERR_TOOMANYCHANNELS = "405"
    ERR_WASNOSUCHNICK = "406"
    ERR_TOOMANYTARGETS = "407"
    ERR_NOORIGIN = "409"
    ERR_INVALIDCAPCMD = "410"
    ERR_NORECIPIENT = "411"
    ERR_NOTEXTTOSEND = "412"
    ERR_INPUTTOOLONG = "417"
    ERR_UNKNOWNCOMMAND = "421"
    ERR_NOMOTD = "422"
    ERR_NONICKNAMEGIVEN = "431"
    ERR_ERRONEUSNICKNAME = "432"
    ERR_NICKNAMEINUSE = "433"
    ERR_USERNOTINCHANNEL = "441"
    ERR_NOTONCHANNEL = "442"
    ERR_USERONCHANNEL = "443"
    ERR_NOTREGISTERED = "451"
    ERR_NEEDMOREPARAMS = "461"
    ERR_ALREADYREGISTERED = "462"
    ERR_PASSWDMISMATCH = "464"
    ERR_KEYSET = "467"
    ERR_CHANNELISFULL = "471"
    ERR_UNKNOWNMODE = "472"
    ERR_INVITEONLYCHAN = "473"
    ERR_BANNEDFROMCHAN = "474"
    ERR_BANLISTFULL = "478"
    ERR_BADCHANNELKEY = "475"
    ERR_BADCHANMASK = "476"
    ERR_NOPRIVILEGES = "481"
    ERR_CHANOPRIVSNEEDED = "482"
    ERR_NOOPERHOST = "491"
    ERR_UMODEUNKNOWNFLAG = "501"
    ERR_USERSDONTMATCH = "502"
    ERR_HELPNOTFOUND = "524"
    ERR_INVALIDKEY = "525"
    RPL_HELPSTART = "704"
    RPL_HELPTXT = "705"
    RPL_ENDOFHELP = "706"
    ERR_INVALIDMODEPARAM = "696"
    RPL_MONONLINE = "730"  # IRCv3 monitor
    RPL_MONOFFLINE = "731"
    RPL_MONLIST = "732"
    RPL_ENDOFMONLIST = "733"
    ERR_MONLISTFULL = "734"
    RPL_LOGGEDIN = "900"
    RPL_LOGGEDOUT = "901"
    ERR_NICKLOCKED = "902"
    RPL_SASLSUCCESS = "903"
    ERR_SASLFAIL = "904"
    ERR_SASLTOOLONG = "905"
    ERR_SASLABORTED = "906"
    ERR_SASLALREADY = "907"
    RPL_SASLMECHS = "908"
