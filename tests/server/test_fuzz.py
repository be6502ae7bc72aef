"""Fuzz the real server over loopback: thousands of random and mutated IRC lines, fixed seed.

A few connections (one with every IRCv3 capability and operator rights, one plain
whose realname is long, one never registered) send lines made from a corpus of
valid commands (every command of the server's table) with their parameters swapped
for hostile ones, plus long lines, tags and random bytes. Every line is followed by
a PING with its own token, and the next line waits for its PONG (a loopback round
trip costs a third of a millisecond), so whatever goes wrong is pinned on one line
without bisecting. After every line the server must:

1. log no ERROR and no traceback (its stderr),
2. answer the PING within ``LINE_BOUND`` seconds,
3. send nothing our own client cannot read (``parse`` with the client's line limits),

and two bystanders in a room must still reach each other now and then and at the end.

The server runs as its own process (``chatroom-server``, history in a temporary
SQLite file, flood control off): a regex that backtracks holds the GIL, and only a
separate process can be stopped (``kill -9``, after a faulthandler stack dump of
the stuck thread) and replaced, so one run reports every distinct failure, each
with its line and its traceback or stack.

A longer hunt: ``CHATROOM_FUZZ_LINES=30000 CHATROOM_FUZZ_SECONDS=600
CHATROOM_FUZZ_SEED=7 python3 -m pytest tests/server/test_fuzz.py``.
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatroom.client.connection import SERVER_MESSAGE_BYTES, SERVER_TAGS_BYTES
from chatroom.protocol import (
    LineBuffer,
    LineTooLong,
    Message,
    PeerProtocolError,
    ProtocolError,
    RecvQExceeded,
    UnserializableMessage,
    casefold,
    parse,
    serialize,
)
from chatroom.server.commands import COMMANDS

# The default seed's 3000 lines meet every class of bug this fuzzer has found so far
# (in the server of commit 7e594eb); other seeds find them too, given more lines.
SEED = int(os.environ.get("CHATROOM_FUZZ_SEED", "11"))
LINES = int(os.environ.get("CHATROOM_FUZZ_LINES", "3000"))
# Wall-clock budget for sending lines; a healthy server takes about 2 s for 3000.
# Only a broken one (each hang costs LINE_BOUND and a restart) can run into it.
BUDGET_S = float(os.environ.get("CHATROOM_FUZZ_SECONDS", "20"))
BATCH = 20  # lines in a row from one connection
# A healthy server answers a line in about a millisecond; a hung one must fail fast,
# and a busy machine must not look like a hung server.
LINE_BOUND = 2.0
BYSTANDER_EVERY = 10  # batches between two bystander exchanges
BYSTANDER_BOUND = 3.0
OPER = ("fuzzop", "fuzzpw")
ALL_CAPS = (
    "message-tags",
    "server-time",
    "echo-message",
    "batch",
    "labeled-response",
    "draft/chathistory",
    "draft/event-playback",
    "draft/multiline",
    "multi-prefix",
    "away-notify",
    "setname",
)
BYSTANDERS = ("by1", "by2")
LOBBY = "#lobby"
# ERROR texts of a connection the server ends on purpose: not a failure.
_EXPECTED_CLOSE = re.compile(
    r"\((Quit: .*|Client Quit|Killed \(.*\)|SendQ exceeded|RecvQ exceeded)\)\Z"
    r"|not supported on this port|plain-text IRC server"
)
_LOG_PROBLEM = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) |^Traceback |^Exception in thread", re.M)


# --- the line generator -------------------------------------------------------------------

# str.isdigit() is True for superscripts (int() refuses them) and for Arabic-Indic,
# fullwidth and N'Ko digits (int() takes them): both kinds reach int() in handlers.
NUMBERS = [
    "0", "1", "2", "10", "-1", "-0", "+5", "007", "1000", "1001", "99999",
    "²", "³", "¹²", "1²", "\u0663", "\uff19", "\u07c1", "0x10", "1e3", "1_000", "3.5", " ",
    "2147483648", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
    "18446744073709551616", "1" + "0" * 40, "9" * 400,
]  # fmt: skip
NICKS = [
    "fzA", "fzB", "fzU", "by1", "by2", "nobody", "*", "?", "0", "a" * 40, "9lives",
    "[]\\`^{|}", "Ñandú", "-", "ni,ck", "FZA", "fza", "a", "x" * 31, "fz*", "*!*@*",
]  # fmt: skip
CHANNELS = [
    "#fuzz", "#r2", LOBBY, "#new", "#new2", "#", "##", "#" + "x" * 60, "#a,b", "#ü",
    "&local", "#\x07bell", "#FUZZ", "#lobby,#fuzz", "#*", "0", "#" + "é" * 30,
]  # fmt: skip
MASKS = [
    "*", "0", "?", "*a*a*a*a*a*a*a*a*b", "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c", "?" * 40,
    "*" * 60, "**a**b**", "*!*@*", "fz*", "by?", "*127.0.0.1", "a" * 200 + "*b",
    "[a-z]*", ".*", "(a+)+$", "\\",
]  # fmt: skip
TEXTS = [
    "", "hi", "a b c", ":colon", "ünïcödé 😀", "\x01ACTION waves\x01", "\x01VERSION\x01",
    "x" * 400, " leading", "trailing ", "  ", "\x02b\x0f\x1d\x03", "%s%n{0}", "'; DROP TABLE",
    "\\", "a\tb", "\u202eevil", "\U0001f600" * 60,
]  # fmt: skip
KEYS = ["key", "", "a b", ":x", "x" * 40, "k,e,y", "ключ", "*", "\x01"]
MODE_STRINGS = [
    "+l", "+k", "-k", "-l", "+ovovovov", "+imnst", "-imnst", "+lllllll", "+kl", "+lk",
    "+-+-", "+b", "+beI", "b", "e", "I", "+xyz", "+o-o+v-v", "+kkkkkk", "-ooooo",
    "+" + "ovklimnstbeIxyz" * 3, "+s-s+s-s+s", "", "+", "-",
]  # fmt: skip
USER_MODES = ["+i", "-i", "+w", "+o", "-o", "+iwo", "+x", "+", "-iw+iw", "i"]
SELECTORS = [
    "*", "msgid=x", "msgid=", "msgid=" + "A" * 30, "timestamp=2024-01-01T00:00:00.000Z",
    "timestamp=9999-12-31T23:59:59.999Z", "timestamp=0001-01-01T00:00:00.000Z",
    "timestamp=1970-01-01T00:00:00.000Z", "timestamp=", "timestamp=0", "timestamp=²",
    "timestamp=2024-13-45T99:99:99.999Z", "timestamp=2024-01-01", "foo=bar", "=", "msgid",
]  # fmt: skip
CAP_NAMES = [*ALL_CAPS, "bogus", "-batch", "-message-tags", "sasl", "draft/chathistory=1"]
TAGS = [
    "@label=L1", "@label=", "@label=a\\sb", "@+draft/react=x;+typing=active", "@a=b;a=c",
    "@" + ";".join(f"+k{i}=v" for i in range(300)), "@time=bogus", "@batch=zz", "@\\",
    "@=x", "@+=x", "@", "@label=" + "x" * 5000, "@+x=" + "\\" * 50, "@msgid=forged",
    "@label=" + "y" * 3900,
]  # fmt: skip
WORDS = ["FOO", "privmsg", "Join", "X", "12345", "CAP", "ÄÖÜ", "", "*", "ERROR", "001"]

# (template, placeholders): every command the server knows, with its subcommands.
TEMPLATES = [
    "CAP LS", "CAP LS 302", "CAP LS {num}", "CAP LIST", "CAP REQ :{cap}", "CAP REQ :{cap} {cap}",
    "CAP REQ {cap}", "CAP END", "CAP {word}", "CAP NEW :{cap}", "PASS {text}", "PASS :{text}",
    "NICK {nick}", "NICK :{text}", "NICK", "USER {word} 0 * :{text}", "USER {nick} {num} * {text}",
    "PING :{text}", "PING {word}", "PING", "PONG :{text}", "PONG", "QUIT :{text}", "QUIT",
    "JOIN {chan}", "JOIN {chan},{chan} {key},{key}", "JOIN {chan} {key}", "JOIN 0", "JOIN :",
    "PART {chan}", "PART {chan} :{text}", "PART {chan},{chan}",
    "PRIVMSG {chan} :{text}", "PRIVMSG {nick} :{text}", "PRIVMSG {chan},{nick},{chan} :{text}",
    "PRIVMSG {chan}", "PRIVMSG", "NOTICE {chan} :{text}", "NOTICE {nick} :{text}",
    "{tags} PRIVMSG {chan} :{text}", "{tags} TAGMSG {chan}", "{tags} TAGMSG {nick}", "TAGMSG",
    "BATCH +r draft/multiline {target}", "{tags} BATCH +{word} draft/multiline {chan}",
    "@batch=r PRIVMSG {chan} :{text}", "@batch=r;draft/multiline-concat NOTICE {nick} :{text}",
    "@batch=r PRIVMSG {target} :", "BATCH -r", "BATCH -{word}", "BATCH {word} {word}", "BATCH",
    "NAMES", "NAMES {chan}", "NAMES {chan},{chan}", "TOPIC {chan}", "TOPIC {chan} :{text}",
    "TOPIC {chan} :", "LIST", "LIST {chan},{chan}", "LIST {mask}",
    "WHO", "WHO {mask}", "WHO {chan}", "WHO {chan} o", "WHO {mask} {word}",
    "WHOIS {nick}", "WHOIS {nick},{nick}", "WHOIS {word} {nick}", "WHOWAS {nick}",
    "WHOWAS {nick} {num}", "WHOWAS {nick} {num} {word}",
    "USERHOST {nick} {nick} {nick} {nick} {nick} {nick}", "ISON {nick} {nick}", "ISON :{text}",
    "AWAY :{text}", "AWAY", "SETNAME :{text}", "SETNAME {word}", "SETNAME",
    "MONITOR + {nick},{nick}", "MONITOR - {nick}", "MONITOR + {mask}", "MONITOR {word}",
    "MONITOR C", "MONITOR L", "MONITOR S", "MONITOR +", "MODE {nick} +B",
    "REDACT {chan} {word}", "REDACT {nick} {word} :{text}", "REDACT {text}", "REDACT {chan}",
    "MARKREAD {target}", "MARKREAD {target} timestamp={word}", "MARKREAD {chan} {sel}",
    "MARKREAD {text}", "MARKREAD",
    "KICK {chan} {nick} :{text}", "KICK {chan} {nick},{nick}",
    "INVITE {nick} {chan}", "MODE {chan}", "MODE {chan} {modes}", "MODE {chan} {modes} {arg}",
    "MODE {chan} {modes} {arg} {arg} {arg} {arg} {arg}", "MODE {chan} +l {num}",
    "MODE {chan} +k {key}", "MODE {chan} -k {key}", "MODE {chan} +o {nick}",
    "MODE {oproom} +l {num}", "MODE {oproom} {modes} {arg} {arg} {arg}", "MODE {oproom} +k {key}",
    "TOPIC {oproom} :{text}", "KICK {oproom} {nick} :{text}", "INVITE {nick} {oproom}",
    "MODE {nick}", "MODE {nick} {umodes}", "OPER fuzzop fuzzpw", "OPER {word} {text}",
    "KILL {nick} :{text}", "KILL {nick}", "WALLOPS :{text}", "WALLOPS",
    "MOTD", "MOTD {word}", "LUSERS", "VERSION", "TIME", "INFO", "HELP", "HELP {word}",
    "HELP {cmd}", "CHATHISTORY LATEST {target} * {num}",
    "CHATHISTORY LATEST {target} {sel} {num}", "CHATHISTORY BEFORE {target} {sel} {num}",
    "CHATHISTORY AFTER {target} {sel} {num}", "CHATHISTORY AROUND {target} {sel} {num}",
    "CHATHISTORY BETWEEN {target} {sel} {sel} {num}", "CHATHISTORY TARGETS {sel} {sel} {num}",
    "CHATHISTORY {word} {target} {sel} {num}", "CHATHISTORY :{text}", "CHATHISTORY {word}",
    "SEARCH text={word}", "SEARCH :text={text}", "SEARCH in={target};text={word};limit={num}",
    "SEARCH :in={chan};from={nick};text={text}", "SEARCH after={sel};before={sel}",
    'SEARCH :text="{word}" OR "{word}"', "SEARCH :text=NEAR({word} {word}) ^{word}* {word}:x",
    "SEARCH :{text}", "SEARCH {word} {word}", "SEARCH",
    "AUTHENTICATE PLAIN", "AUTHENTICATE SCRAM-SHA-256", "AUTHENTICATE {word}", "AUTHENTICATE *",
    "AUTHENTICATE +", "AUTHENTICATE {text}", "AUTHENTICATE AGZ1enoAZnV6enB3MTIz",
    "AUTHENTICATE bj1mdXp6LHI9YWJjZGVmZ2hpams=", "REGISTER {nick} * {text}",
    "REGISTER * * fuzzpw123", "REGISTER {word}", "PRIVMSG NickServ :IDENTIFY {text}",
    "PRIVMSG ChanServ :{text}", "NICKSERV {word} {text}", "NS REGISTER fuzzpw123",
    "NS IDENTIFY {nick} {text}", "NS LOGOUT", "NS INFO {nick}", "NS DROP {text}",
    "NS PASSWD {text} {text}", "NS REGAIN {nick}", "NS", "CHANSERV {word}",
    "CS REGISTER {chan}", "CS REGISTER {oproom}", "CS AMODE {oproom} +o {nick}",
    "CS AMODE {oproom}", "CS INFO {chan}", "CS DROP {oproom}", "CS {word} {text}",
]  # fmt: skip
REGISTRATION_TEMPLATES = [t for t in TEMPLATES if t.split()[0] in {"CAP", "PASS", "NICK", "USER"}]


class LineMaker:
    """Random and mutated IRC lines (bytes, without CR-LF) from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pools: dict[str, list[str]] = {
            "num": NUMBERS,
            "nick": NICKS,
            "chan": CHANNELS,
            "oproom": ["#fuzz", "#r2", "#FUZZ"],  # made by the fuzzers: they are operators
            "target": CHANNELS + NICKS,
            "mask": MASKS,
            "text": TEXTS,
            "key": KEYS,
            "modes": MODE_STRINGS,
            "umodes": USER_MODES,
            "arg": NUMBERS + NICKS + KEYS,
            "sel": SELECTORS,
            "cap": CAP_NAMES,
            "tags": TAGS,
            "word": WORDS,
            "cmd": sorted(COMMANDS),
        }
        self.all_values = [v for pool in self.pools.values() for v in pool]

    def template(self, registering: bool = False) -> str:
        rng = self.rng
        text = rng.choice(REGISTRATION_TEMPLATES if registering else TEMPLATES)
        return re.sub(r"\{(\w+)\}", lambda m: rng.choice(self.pools[m.group(1)]), text)

    def mutate(self, line: str) -> str:
        rng = self.rng
        head, sep, trailing = line.partition(" :")
        words = head.split(" ")
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(12)
            i = rng.randrange(1, len(words)) if len(words) > 1 else None
            if op == 0 and i is not None:  # a parameter swapped for any hostile value
                words[i] = rng.choice(self.all_values)
            elif op == 1 and i is not None:  # one dropped
                del words[i]
            elif op == 2:  # many more
                words += rng.choices(self.all_values, k=rng.randint(1, 20))
            elif op == 3 and i is not None:  # an empty one (two spaces)
                words[i] = ""
            elif op == 4 and i is not None:  # ':'-prefixed in the middle: the rest is trailing
                words[i] = ":" + words[i]
            elif op == 5:  # trailing with spaces, or nothing but ':'
                sep, trailing = " :", rng.choice([" a  b ", "", " ", "x y", trailing + " z"])
            elif op == 6:
                words.insert(0, rng.choice(TAGS))
            elif op == 7:
                words.insert(0, rng.choice([":fzA!u@h", ":", ":x", ":irc.other", ":a b"]))
            elif op == 8:  # another command, same parameters
                words[0] = rng.choice([*self.pools["cmd"], *WORDS])
            elif op == 9:
                words[0] = words[0].lower()
            elif op == 10 and i is not None:  # unicode digits and huge numbers in place
                words[i] = rng.choice(NUMBERS)
            elif op == 11:
                words = words + words[1:]
            if not words:
                words = [rng.choice(self.pools["cmd"])]
        return " ".join(words) + (sep + trailing if sep else "")

    def long_line(self) -> str:
        rng = self.rng
        size = rng.choice([500, 509, 510, 511, 512, 513, 600, 4000, 9000, 18000])
        start = rng.choice(
            ["PRIVMSG #fuzz :", "PRIVMSG #lobby :", "TOPIC #fuzz :", "JOIN ", "WHO ", "@a="]
        )
        return start + rng.choice("xé😀,*a ") * max(0, size - len(start))

    def random_bytes(self) -> bytes:
        rng = self.rng
        kind = rng.randrange(5)
        if kind == 0:
            data = rng.randbytes(rng.randint(1, 300))
        elif kind == 1:
            data = "".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(1, 200))).encode()
        elif kind == 2:  # mostly 4-byte characters, many unassigned: up to 508 bytes
            data = "".join(
                chr(rng.randint(32, 0x10FFFF)) for _ in range(rng.randint(1, 127))
            ).encode("utf-8", "replace")
        elif kind == 3:  # a valid start, then invalid UTF-8, NUL or a bare CR
            data = self.template().encode() + rng.choice([b"\xff\xfe", b"\x00", b"\rX", b"\xc3"])
        else:
            data = rng.choice([b"\x16\x03\x01\x02\x00", b"GET / HTTP/1.1", b"\r", b" ", b":"])
        return data.replace(b"\n", b"")

    def line(self, registering: bool = False) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.40:
            text = self.template(registering and rng.random() < 0.6)
        elif roll < 0.78:
            text = self.mutate(self.template(registering and rng.random() < 0.5))
        elif roll < 0.86:
            text = self.long_line()
        else:
            return self.random_bytes()
        return _spare_bystanders(text).encode("utf-8", "surrogatepass")


def _spare_bystanders(text: str) -> str:
    """The fuzzer is an operator: it may KILL anyone but the bystanders."""
    try:
        msg = parse(text)
    except ProtocolError:
        return text
    if msg.command == "KILL" and msg.params and casefold(msg.params[0]) in BYSTANDERS:
        return text.replace(msg.params[0], "fzB")
    return text


def command_of(line: bytes) -> str:
    """The command of a line, however long or broken it is ("?" if there is none)."""
    try:
        return parse(line.decode("utf-8", "replace").replace("\r", "").replace("\x00", "")).command
    except ProtocolError:
        return "?"


# --- the server under test and the connections to it -----------------------------------------

_SERVER_MAIN = (
    "import faulthandler, signal; faulthandler.register(signal.SIGUSR1, all_threads=True); "
    "from chatroom.cli import server_main; raise SystemExit(server_main())"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FuzzServer:
    """``chatroom-server`` on 127.0.0.1 with its stderr in a file we read as it grows."""

    def __init__(self, workdir: Path, n: int) -> None:
        self.port = free_port()
        self.log_path = workdir / f"server-{n}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()/kill()
        self._offset = 0
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SERVER_MAIN,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--name",
                "fuzz.server",
                "--no-flood-limit",
                "--db",
                str(workdir / f"history-{n}.sqlite3"),
                "--oper",
                f"{OPER[0]}:{OPER[1]}",
                "--log-level",
                "WARNING",
                "--no-tls",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise AssertionError(f"server did not start: {self.log_path.read_text()}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def new_output(self) -> str:
        """What the server wrote to stderr since the last call."""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        return data.decode("utf-8", "replace")

    def stack_dump(self) -> str:
        """Every thread's stack (faulthandler, SIGUSR1), then what else it wrote."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(0.3)
        return self.new_output()

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        self._log.close()

    def stop(self) -> int:
        """SIGTERM, as a user stops it; kill -9 if that takes over 10 s."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        rc = self.proc.wait()
        self._log.close()
        return rc


@dataclass
class Wire:
    """One client connection, read without blocking; remembers what matters to the fuzzer."""

    port: int
    name: str
    sock: socket.socket = field(init=False)
    buffer: LineBuffer = field(default_factory=lambda: LineBuffer(limit=1 << 22))
    pongs: list[str] = field(default_factory=list)
    seen: list[Message] = field(default_factory=list)  # only kept while ``keep`` is set
    keep: bool = False
    error: str | None = None  # the server's ERROR text, once it sent one
    closed: bool = False
    registered: bool = False
    bad_output: list[tuple[bytes, str]] = field(default_factory=list)  # (line, why)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.sock.sendall(data)
        except OSError:  # a server that stopped reading, or closed on us
            self.closed = True

    def pump(self) -> None:
        """Take in what has arrived (call when the socket is readable)."""
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        try:
            lines = self.buffer.feed(data)
        except RecvQExceeded:
            self.bad_output.append((b"", "RecvQExceeded: 4 MiB without a line end"))
            self.closed = True
            return
        for raw in lines:
            try:
                msg = parse(
                    raw, max_line_bytes=SERVER_MESSAGE_BYTES, max_tags_bytes=SERVER_TAGS_BYTES
                )
            except PeerProtocolError as e:
                self.bad_output.append((raw, f"{type(e).__name__}: {e}"))
                try:
                    msg = parse(raw.decode("utf-8", "replace"))
                except ProtocolError:
                    continue
            if msg.command == "PONG" and msg.params:
                self.pongs.append(msg.params[-1])
            elif msg.command == "PING":
                self.send(serialize(Message("PONG", msg.params[-1:])))
            elif msg.command == "ERROR":
                self.error = msg.param(0)
            elif msg.command == "001":
                self.registered = True
            if self.keep:
                self.seen.append(msg)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass(frozen=True)
class Profile:
    nick: str
    caps: tuple[str, ...]
    realname: str
    rooms: tuple[str, ...]
    oper: bool
    register: bool


PROFILES = (
    Profile("fzA", ALL_CAPS, "fuzz A", ("#fuzz", LOBBY), oper=True, register=True),
    # WHO matches masks against realnames: a long one is where backtracking shows
    Profile("fzB", (), "a" * 300, ("#r2", "#fuzz", LOBBY), oper=False, register=True),
    Profile("fzU", (), "", (), oper=False, register=False),
)
PROFILE_WEIGHTS = (40, 35, 25)


@dataclass
class Failure:
    kind: str
    line: bytes
    detail: str
    count: int = 1


def _traceback_tail(log: str, lines: int = 10) -> str:
    """The end of the last traceback in ``log`` (or its last problem lines)."""
    start = max(log.rfind("Traceback "), log.rfind("Exception in thread"))
    text = log[start:] if start >= 0 else log
    return "\n".join(text.strip().splitlines()[-lines:])


def _hung_frames(dump: str) -> str:
    """From a faulthandler dump: the innermost frames of a thread stuck in a command
    ("" when no thread was handling a line: the server was slow, not hung)."""
    for block in re.split(r"\n(?=Thread 0x|Current thread 0x)", dump):
        if "handle_line" in block:
            frames = [ln.strip() for ln in block.splitlines()[1:] if ln.strip()]
            return "\n".join(frames[:6])
    return ""


def _blame(recent: list[bytes], raw: bytes) -> bytes:
    """Which recent line (newest first) another client's bad output came from: the
    one that carries a piece of its text, as a relay does; else the newest."""
    text = raw.rpartition(b" :")[2]
    piece = text[len(text) // 2 :][:16]
    return next((ln for ln in reversed(recent) if piece and piece in ln), recent[-1])


def _signature(kind: str, line: bytes, detail: str) -> tuple[str, ...]:
    """Failures that are the same bug: same kind, command and place in the code."""
    where = re.findall(r'File "([^"]+)", line (\d+),? in (\w+)', detail)
    if where:  # tracebacks put the innermost frame last, faulthandler first
        top = where[0] if "hung thread" in detail else where[-1]
        place = f"{Path(top[0]).name}:{top[2]}"
    else:
        place = ""
    last = detail.strip().splitlines()[-1] if detail.strip() else ""
    exc = re.match(r"[\w.]+(Error|Exception|Exceeded|Interrupt)\b", last)
    return (kind, command_of(line), place, exc.group(0) if exc else "")


class Fuzzer:
    """Drives the server through the generated lines; restarts it when it breaks."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.generation = 0
        self.server: FuzzServer | None = None
        self.wires: dict[str, Wire] = {}
        self.failures: dict[tuple[str, ...], Failure] = {}
        self.notes: list[str] = []
        self.tokens = 0
        self.lines_sent = 0
        self.restarts = 0
        self.recent: deque[bytes] = deque(maxlen=5)  # for blame, and bystander failures

    # --- bookkeeping -------------------------------------------------------------------------

    def record(self, kind: str, line: bytes, detail: str, key: tuple[str, ...] = ()) -> None:
        key = key or _signature(kind, line, detail)
        if key in self.failures:
            self.failures[key].count += 1
        else:
            self.failures[key] = Failure(kind, line, detail)

    def report(self) -> str:
        out = [f"{len(self.failures)} distinct failures (seed {SEED}):"]
        order = ["no reply", "bystanders cut off", "logged error", "at shutdown", "bad output"]
        for f in sorted(self.failures.values(), key=lambda f: order.index(f.kind)):
            shown = f.line if len(f.line) <= 160 else f.line[:160] + b"...(%d bytes)" % len(f.line)
            detail = "\n      ".join(f.detail.strip().splitlines())
            out.append(f"  [{f.kind}] x{f.count} line {shown!r}\n      {detail}")
        return "\n".join(out + self.notes)

    # --- the server and the connections --------------------------------------------------------

    def start_server(self) -> None:
        if self.server is not None:
            self.server.kill()
        for w in self.wires.values():
            w.close()
        self.wires.clear()
        self.generation += 1
        self.server = FuzzServer(self.workdir, self.generation)
        for nick in BYSTANDERS:  # first, so by1 creates #lobby and is its operator
            w = self._register(nick, ALL_CAPS if nick == "by1" else (), "bystander")
            assert self._sync(w, f"JOIN {LOBBY}"), f"a fresh server did not take {nick}"
            self.wires[nick] = w
        # Everyone is there from the start: a mask only backtracks when the long
        # realname it runs against is connected.
        for profile in PROFILES:
            if profile.register:
                w = self._connect(profile)
                assert not w.closed, f"a fresh server did not take {profile.nick}: {w.error}"
                self.wires[profile.nick] = w

    def _connect(self, profile: Profile) -> Wire:
        """A new connection for ``profile``: registered, in its rooms, operator if so
        (marked closed if the server would not have it)."""
        assert self.server is not None
        if not profile.register:
            return Wire(self.server.port, profile.nick)
        w = self._register(profile.nick, profile.caps, profile.realname)
        setup = [f"JOIN {','.join(profile.rooms)}"]
        if profile.oper:
            setup.append(f"OPER {OPER[0]} {OPER[1]}")
        if not (w.registered and self._sync(w, *setup)):
            w.closed = True
        return w

    def _register(self, nick: str, caps: tuple[str, ...], realname: str) -> Wire:
        assert self.server is not None
        w = Wire(self.server.port, nick)
        setup = [f"CAP LS 302\r\nCAP REQ :{' '.join(caps)}"] if caps else []
        setup += [f"NICK {nick}", f"USER {nick[:8]} 0 * :{realname}"]
        if caps:
            setup.append("CAP END")
        self._sync(w, *setup)
        for n in range(1, 10):
            if w.registered or w.closed:
                break
            self._sync(w, f"NICK {nick}{n}")  # taken by a fuzzer's NICK: take another
        return w

    def _sync(self, w: Wire, *lines: str, bound: float = 5.0) -> bool:
        token = self._token()
        w.send("".join(f"{ln}\r\n" for ln in lines).encode() + f"PING :{token}\r\n".encode())
        return self._wait(w, lambda: token in w.pongs, bound)

    def _token(self) -> str:
        self.tokens += 1
        return f"t{self.tokens}"

    def wire_for(self, profile: Profile) -> Wire:
        """The profile's connection, or a new one if it was closed (a QUIT, a KILL)."""
        w = self.wires.get(profile.nick)
        if w is None or w.closed:
            if w is not None:
                w.close()
            w = self.wires[profile.nick] = self._connect(profile)
        return w

    def _wait(self, active: Wire, done: Callable[[], bool], bound: float) -> bool:
        """Read every connection (so no SendQ fills up) until ``done()``; False if
        ``active`` closes or ``bound`` seconds pass."""
        deadline = time.monotonic() + bound
        while not done():
            now = time.monotonic()
            if active.closed or now >= deadline:
                return False
            socks = {w.sock: w for w in self.wires.values() if not w.closed}
            socks[active.sock] = active
            readable, _, _ = select.select(list(socks), [], [], min(0.05, deadline - now))
            for s in readable:
                socks[s].pump()
        return True

    def drain(self) -> None:
        """Take in whatever has arrived on any connection, without waiting."""
        while socks := {w.sock: w for w in self.wires.values() if not w.closed}:
            readable, _, _ = select.select(list(socks), [], [], 0)
            if not readable:
                break
            for s in readable:
                socks[s].pump()  # at EOF this marks it closed: it leaves the next select

    # --- fuzzing ---------------------------------------------------------------------------------

    def send_line(self, profile: Profile, line: bytes) -> tuple[bool, str, Wire]:
        """Send one line and a PING, and wait for the PONG: (answered, what the server
        logged meanwhile if it is a problem, the connection)."""
        assert self.server is not None
        w = self.wire_for(profile)
        token = self._token()
        w.send(line + b"\r\nPING :" + token.encode() + b"\r\n")
        answered = self._wait(w, lambda: token in w.pongs, LINE_BOUND)
        self.drain()  # relays of this line to the others, sent with the PONG
        self.lines_sent += 1
        self.recent.append(line)
        for wire in self.wires.values():
            for raw, why in wire.bad_output:
                blamed = line if wire is w else _blame(list(self.recent), raw)
                key = ("bad output", why.partition(":")[0], command_of(raw))
                detail = f"{why}: {len(raw)} bytes to {wire.name}: {raw[:160]!r}..."
                self.record("bad output", blamed, detail, key)
            wire.bad_output.clear()
        log = self.server.new_output()
        return answered, log if _LOG_PROBLEM.search(log) else "", w

    def breakdown(self, w: Wire, log: str) -> str | None:
        """A line got no PONG. None: its connection was ended on purpose. Otherwise
        the server is restarted, and the evidence is returned: its traceback, or the
        stack of the thread stuck in a command; "" if there is none (merely slow)."""
        assert self.server is not None
        if w.closed and w.error is not None and _EXPECTED_CLOSE.search(w.error):
            return None
        log += self.server.new_output()
        if not self.server.alive:
            evidence = f"server exited ({self.server.proc.returncode})\n" + _traceback_tail(log)
        elif _LOG_PROBLEM.search(log):
            evidence = _traceback_tail(log)
        elif frames := _hung_frames(self.server.stack_dump()):
            evidence = f"no reply within {LINE_BOUND} s; hung thread:\n{frames}"
        elif w.closed:
            evidence = f"connection closed for no reason we expect; ERROR {w.error!r}"
        else:
            evidence = ""
        self.restarts += 1
        self.start_server()
        return evidence

    def run_line(self, profile: Profile, line: bytes) -> None:
        answered, log, w = self.send_line(profile, line)
        if answered:
            if log:
                self.record("logged error", line, _traceback_tail(log))
            return
        evidence = self.breakdown(w, log)
        if evidence:
            self.record("no reply", line, evidence)
        elif evidence == "":
            self.notes.append(f"slow once (no hung thread, no error): {line[:200]!r}")

    def bystanders_talk(self, n: int) -> bool:
        by1, by2 = self.wires[BYSTANDERS[0]], self.wires[BYSTANDERS[1]]
        by1.keep = by2.keep = True
        by1.seen.clear()
        by2.seen.clear()

        def got(w: Wire, text: str) -> Callable[[], bool]:
            return lambda: any(m.command == "PRIVMSG" and m.param(1) == text for m in w.seen)

        try:
            by1.send(f"PRIVMSG {LOBBY} :tick {n}\r\n".encode())
            ok = self._wait(by2, got(by2, f"tick {n}"), BYSTANDER_BOUND)
            by2.send(f"PRIVMSG {BYSTANDERS[0]} :tock {n}\r\n".encode())
            return self._wait(by1, got(by1, f"tock {n}"), BYSTANDER_BOUND) and ok
        finally:
            by1.keep = by2.keep = False

    def check_bystanders(self, n: int) -> None:
        if self.bystanders_talk(n):
            return
        assert self.server is not None
        self.record(
            "bystanders cut off",
            b"\n".join(self.recent),
            f"by1/by2 in {LOBBY} could not exchange PRIVMSG after these lines; server log:\n"
            + _traceback_tail(self.server.new_output() + self.server.stack_dump()),
        )
        self.restarts += 1
        self.start_server()

    def run(self, batches: Iterator[tuple[Profile, list[bytes]]]) -> bool:
        """Every line, or as many as the time budget allows; False if it ran out."""
        self.start_server()
        started = time.monotonic()
        for n, (profile, lines) in enumerate(batches, 1):
            for line in lines:
                if time.monotonic() - started > BUDGET_S:
                    return False
                self.run_line(profile, line)
            if n % BYSTANDER_EVERY == 0:
                self.check_bystanders(n)
        self.check_bystanders(-1)
        return True


def make_batches(seed: int, total: int) -> Iterator[tuple[Profile, list[bytes]]]:
    """The whole run, from the seed alone: which connection sends which lines."""
    rng = random.Random(seed)
    maker = LineMaker(rng)
    made = 0
    while made < total:
        profile = rng.choices(PROFILES, PROFILE_WEIGHTS)[0]
        lines: list[bytes] = []
        for _ in range(BATCH):
            lines.append(maker.line(registering=not profile.register))
            if command_of(lines[-1]) == "QUIT":
                break  # the connection is gone: let another one have a turn
        made += len(lines)
        yield profile, lines


# --- the tests ---------------------------------------------------------------------------------


def test_corpus_covers_every_command() -> None:
    covered = {t.replace("{tags} ", "").split()[0] for t in TEMPLATES}
    assert set(COMMANDS) <= covered, f"add templates for {set(COMMANDS) - covered}"


def test_fuzz_real_server(tmp_path: Path) -> None:
    fuzzer = Fuzzer(tmp_path)
    try:
        finished = fuzzer.run(make_batches(SEED, LINES))
    finally:
        for w in fuzzer.wires.values():
            w.close()
        shutdown_log = ""
        if fuzzer.server is not None and fuzzer.server.alive:
            rc = fuzzer.server.stop()
            shutdown_log = fuzzer.server.new_output()
            if rc != 0:
                shutdown_log += f"\nexit status {rc} after SIGTERM"
    if _LOG_PROBLEM.search(shutdown_log) or "exit status" in shutdown_log:
        fuzzer.record("at shutdown", b"(SIGTERM)", _traceback_tail(shutdown_log))
    summary = f"{fuzzer.lines_sent} lines sent, {fuzzer.restarts} server restarts" + (
        "" if finished else f", stopped by the {BUDGET_S:.0f} s budget"
    )
    if fuzzer.failures:  # the report, not a repr of the dict behind it
        pytest.fail(f"{summary}\n{fuzzer.report()}", pytrace=False)
    if not finished:
        warnings.warn(f"fuzz run cut short: {summary}", stacklevel=1)


# --- the parser, property-based -------------------------------------------------------------------

_IRCISH = st.lists(
    st.sampled_from(
        [b"@", b":", b" ", b" :", b";", b"=", b"\\", b"+", b"/", b"#", b"!", b"*", b"\r", b"\n",
         b"\x00", b"\xff", b"\xc3\xa9", b"a", b"PRIVMSG", b"label", b"1", b"x" * 300]
    ),
    max_size=40,
).map(b"".join)  # fmt: skip
_FAST = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@_FAST
@given(st.one_of(st.binary(max_size=700), _IRCISH))
def test_parse_raises_only_protocol_errors(data: bytes) -> None:
    for line in (data, data.decode("utf-8", "replace")):
        try:
            msg = parse(line)
        except PeerProtocolError:
            continue
        assert msg.command.isascii() and msg.command.isalnum(), msg


_middle = st.text(
    st.characters(blacklist_characters=" \r\n\x00", blacklist_categories=("Cs",)), min_size=1
).filter(lambda p: p[0] != ":")
_trailing = st.text(st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)))
_messages = st.builds(
    Message,
    command=st.sampled_from([*sorted(COMMANDS), "001", "433", "BATCH", "FAIL"]),
    params=st.tuples(st.lists(_middle, max_size=4), _trailing).map(lambda t: (*t[0], t[1]))
    | st.just(()),
    source=st.none() | _middle,
    tags=st.dictionaries(
        st.from_regex(r"\+?([a-z0-9.-]+/)?[A-Za-z0-9-]+\Z", fullmatch=True),
        _trailing,
        max_size=3,
    ),
)


@_FAST
@given(_messages)
def test_serialize_then_parse_gives_the_message_back(msg: Message) -> None:
    try:
        line = serialize(msg)
    except UnserializableMessage:
        return
    try:
        back = parse(line)
    except LineTooLong:
        body = line.partition(b" ")[2] if line.startswith(b"@") else line
        assert len(body) > 512 or len(line) > 8191
        return
    assert back == msg._replace(tags=back.tags) and dict(back.tags) == dict(msg.tags)


@_FAST
@given(st.lists(st.binary(max_size=50), max_size=20))
def test_line_buffer_frames_the_same_whatever_the_chunks(chunks: list[bytes]) -> None:
    whole = LineBuffer(limit=1 << 16).feed(b"".join(chunks) + b"\n")
    buf = LineBuffer(limit=1 << 16)
    pieces = [line for c in chunks for line in buf.feed(c)] + buf.feed(b"\n")
    assert pieces == whole
