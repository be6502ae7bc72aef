"""Slash commands: what the user types, turned into IRC Messages and model changes.

Dispatch is an explicit table of :class:`Command`s. Handlers talk to a
:class:`CommandTarget` (the app), so they can be exercised without a UI. A bad
argument raises :class:`CommandError`, which the UI shows as a line in the log.

Passwords typed in a command (``/login``, ``/register``, ``/msg NickServ IDENTIFY``)
never reach the log or the input history: :func:`redact_input` is what history keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from chatroom.client.actions import last_message, react_message, react_problem
from chatroom.client.auth import Credentials, redact_service_text
from chatroom.client.formatting import strip_formatting
from chatroom.client.model import SERVER_KEY, Buffer, BufferKind, Entry, reply_of, valid_reaction
from chatroom.client.state import ClientState
from chatroom.protocol import (
    MAX_LINE_BYTES,
    Message,
    PeerProtocolError,
    casefold,
    is_valid_nick,
    parse,
)

__all__ = [
    "COMMANDS",
    "Command",
    "CommandError",
    "CommandTarget",
    "ban_mask",
    "complete",
    "complete_command",
    "normalise_room",
    "react",
    "redact_input",
    "run_input",
    "split_text",
]

# Bytes kept free in a PRIVMSG for the ":nick!user@host " prefix the server adds when
# relaying it (nick <= 30, user <= 10, host <= 63 on common servers).
SOURCE_RESERVE = 110
# Lines one /msg or paste may produce before we refuse (flood protection for the user).
MAX_SPLIT_LINES = 20


class CommandError(Exception):
    """The user's command was wrong; the message says how to fix it."""


class CommandTarget(Protocol):
    """What command handlers may do (the app implements it)."""

    state: ClientState

    def send(self, message: Message) -> bool:
        """Send to the server; False when not connected."""
        ...

    def switch_to(self, key: str) -> None:
        """Show buffer ``key``."""
        ...

    def expect_join(self, room: str) -> None:
        """Switch to ``room`` when the server confirms our JOIN."""
        ...

    def close_buffer(self, key: str) -> None:
        """Forget buffer ``key`` and its view."""
        ...

    def show_help(self) -> None:
        """Open the help screen."""
        ...

    def quit(self, reason: str) -> None:
        """Leave the server and exit."""
        ...

    def reconnect(self) -> None:
        """Reconnect now."""
        ...

    def default_account(self) -> str:
        """The account ``/login`` and ``/register`` mean when none is named."""
        ...

    def remembered_password(self, account: str) -> str | None:
        """The password remembered for ``account`` on this server, if any."""
        ...

    def login(self, credentials: Credentials) -> None:
        """Log in now (SASL, or NickServ); raises CommandError when it can't."""
        ...

    def register_account(self, credentials: Credentials) -> None:
        """Register an account now; raises CommandError when it can't."""
        ...

    def logout(self) -> None:
        """Log out (and stop logging in on reconnect)."""
        ...

    def server_caps(self) -> frozenset[str]:
        """The capabilities the server acknowledged (empty while offline)."""
        ...

    def selected_entry(self) -> Entry | None:
        """The message selected in the shown window's log, if any."""
        ...

    def upload(self, path: str) -> None:
        """Upload the file at ``path`` to the file host and send its link to the shown
        window; raises CommandError when it can't start."""
        ...


Handler = Callable[[CommandTarget, str], None]


@dataclass(frozen=True)
class Command:
    """A slash command: its usage line, a one-line summary and the handler."""

    name: str
    usage: str
    summary: str
    handler: Handler


def normalise_room(name: str) -> str:
    """A room as typed, with ``#`` added when left out.

    >>> normalise_room("lan"), normalise_room("#lan")
    ('#lan', '#lan')
    """
    return name if name[:1] in "#&" else "#" + name


def split_text(text: str, budget: int) -> list[str]:
    """Split ``text`` into pieces of at most ``budget`` UTF-8 bytes, at spaces when possible.

    >>> split_text("aaa bbb ccc", 7)
    ['aaa bbb', 'ccc']
    >>> split_text("é" * 5, 4)
    ['éé', 'éé', 'é']
    """
    pieces: list[str] = []
    while len(text.encode("utf-8")) > budget:
        cut = len(text.encode("utf-8")[:budget].decode("utf-8", "ignore"))
        space = text.rfind(" ", 0, cut + 1)
        if space > 0:
            cut = space
        pieces.append(text[:cut])
        text = text[cut:].lstrip(" ") if space > 0 else text[cut:]
    if text or not pieces:
        pieces.append(text)
    return pieces


def _require(args: str, usage: str) -> str:
    args = args.strip()
    if not args:
        raise CommandError(f"Missing argument. Usage: {usage}")
    return args


def _check_connected(target: CommandTarget, sent: bool) -> None:
    if not sent:
        raise CommandError("Not connected to the server; wait for the reconnect (or /reconnect)")


def say(
    target: CommandTarget,
    to: str,
    text: str,
    *,
    action: bool = False,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Send ``text`` to a room or nick, split to fit IRC's line limit, and show it.
    ``tags``: client tags for every line (a reply's ``+reply``)."""
    if not text:
        raise CommandError("Nothing to send")
    overhead = len(f"PRIVMSG {to} :\r\n".encode()) + SOURCE_RESERVE
    if action:
        overhead += len("\x01ACTION \x01")
    pieces = split_text(text, MAX_LINE_BYTES - overhead)
    if len(pieces) > MAX_SPLIT_LINES:
        raise CommandError(
            f"Message too long ({len(pieces)} lines); the limit is {MAX_SPLIT_LINES}"
        )
    for piece in pieces:
        body = f"\x01ACTION {piece}\x01" if action else piece
        _check_connected(target, target.send(Message.of("PRIVMSG", to, body, tags=tags)))
        reply_to = reply_of(tags) if tags else ""
        target.state.own_message(to, piece, action=action, reply_to=reply_to)


def _active_room(target: CommandTarget, what: str) -> str:
    buf = target.state.active_buffer
    if buf.kind is not BufferKind.CHANNEL:
        raise CommandError(f"{what} needs a room: switch to one or name it")
    return buf.name


def cmd_join(target: CommandTarget, args: str) -> None:
    rooms, _, key = _require(args, "/join ROOM [KEY]").partition(" ")
    names = [normalise_room(r) for r in rooms.split(",") if r]
    for name in names:
        if " " in name or len(name) < 2:
            raise CommandError(f"{name!r} is not a room name")
    key = key.strip()
    msg = Message.of("JOIN", ",".join(names), key) if key else Message.of("JOIN", ",".join(names))
    _check_connected(target, target.send(msg))
    target.expect_join(names[-1])
    existing = target.state.buffer(names[-1])
    if existing is not None:
        target.switch_to(existing.key)


def cmd_part(target: CommandTarget, args: str) -> None:
    args = args.strip()
    first, _, rest = args.partition(" ")
    if first and first[0] in "#&":
        room, reason = first, rest
    else:
        room, reason = _active_room(target, "/part"), args
    msg = Message.of("PART", room, reason) if reason else Message.of("PART", room)
    _check_connected(target, target.send(msg))


def cmd_msg(target: CommandTarget, args: str) -> None:
    to, _, text = _require(args, "/msg NICK|ROOM TEXT").partition(" ")
    if not text.strip():
        raise CommandError("Usage: /msg NICK|ROOM TEXT")
    say(target, to, text)


def cmd_query(target: CommandTarget, args: str) -> None:
    nick, _, text = _require(args, "/query NICK [TEXT]").partition(" ")
    if target.state.is_channel(nick) or not is_valid_nick(nick, 64):
        raise CommandError(f"{nick!r} is not a nick")
    buf = target.state.open(nick, BufferKind.QUERY)
    target.switch_to(buf.key)
    if text.strip():
        say(target, nick, text)


def cmd_me(target: CommandTarget, args: str) -> None:
    buf = target.state.active_buffer
    if buf.kind is BufferKind.SERVER:
        raise CommandError("/me needs a room or a private conversation")
    say(target, buf.name, _require(args, "/me ACTION"), action=True)


def cmd_nick(target: CommandTarget, args: str) -> None:
    nick = _require(args, "/nick NEWNICK")
    if not is_valid_nick(nick, 64):
        raise CommandError(f"{nick!r} is not a valid nick (letters, digits, -[]\\`_^{{|}})")
    _check_connected(target, target.send(Message.of("NICK", nick)))


def cmd_topic(target: CommandTarget, args: str) -> None:
    first, _, rest = args.strip().partition(" ")
    if first[:1] in ("#", "&"):
        room, text = first, rest
    else:
        room, text = _active_room(target, "/topic"), args.strip()
    msg = Message.of("TOPIC", room, text) if text else Message.of("TOPIC", room)
    _check_connected(target, target.send(msg))


def cmd_names(target: CommandTarget, args: str) -> None:
    room = args.strip() or _active_room(target, "/names")
    _check_connected(target, target.send(Message.of("NAMES", normalise_room(room))))


def cmd_list(target: CommandTarget, args: str) -> None:
    target.state.info("Rooms on this server (name, people, topic):")
    msg = Message.of("LIST", args.strip()) if args.strip() else Message.of("LIST")
    _check_connected(target, target.send(msg))


def cmd_whois(target: CommandTarget, args: str) -> None:
    nick = _require(args, "/whois NICK").split()[0]
    _check_connected(target, target.send(Message.of("WHOIS", nick)))


def cmd_away(target: CommandTarget, args: str) -> None:
    reason = args.strip()
    msg = Message.of("AWAY", reason) if reason else Message.of("AWAY")
    _check_connected(target, target.send(msg))


def cmd_close(target: CommandTarget, args: str) -> None:
    state = target.state
    name = args.strip()
    buf = state.buffer(name) if name else state.active_buffer
    if buf is None:
        raise CommandError(f"No open room or conversation called {name!r}")
    if buf.key == SERVER_KEY:
        raise CommandError("The server window can't be closed (use /quit to leave)")
    if buf.kind is BufferKind.CHANNEL and buf.joined:
        target.send(Message.of("PART", buf.name))
    target.close_buffer(buf.key)


def cmd_clear(target: CommandTarget, args: str) -> None:
    target.state.clear(target.state.active)


def cmd_help(target: CommandTarget, args: str) -> None:
    name = args.strip().lstrip("/").lower()
    if not name:
        target.show_help()
        return
    command = COMMANDS.get(name)
    if command is None:
        raise CommandError(f"No command /{name}; /help lists them all")
    target.state.info(f"{command.usage}  —  {command.summary}")


def cmd_quit(target: CommandTarget, args: str) -> None:
    target.quit(args.strip() or "Leaving")


def cmd_reconnect(target: CommandTarget, args: str) -> None:
    target.reconnect()


def _account_and_password(target: CommandTarget, args: str, usage: str) -> Credentials:
    """``[ACCOUNT] PASSWORD``: one word is the password (the account is the default
    one); with two or more, the first is the account and the rest the password."""
    words = args.split()
    if not words:
        raise CommandError(f"Usage: {usage}")
    if len(words) == 1:
        return Credentials(target.default_account(), words[0])
    account, _, password = args.strip().partition(" ")
    return Credentials(account, password.strip())


def cmd_login(target: CommandTarget, args: str) -> None:
    if args.strip():
        creds = _account_and_password(target, args, "/login [ACCOUNT] PASSWORD")
    else:
        account = target.default_account()
        password = target.remembered_password(account)
        if password is None:
            raise CommandError(
                f"No password remembered for {account} here. Usage: /login [ACCOUNT] PASSWORD"
            )
        creds = Credentials(account, password)
    target.login(creds)


def cmd_register(target: CommandTarget, args: str) -> None:
    creds = _account_and_password(target, args, "/register [ACCOUNT] PASSWORD")
    target.register_account(Credentials(creds.account, creds.password, register=True))


def cmd_logout(target: CommandTarget, args: str) -> None:
    target.logout()


def ban_mask(text: str) -> str:
    """What ``/ban`` bans: a nick becomes ``nick!*@*``; masks and extbans (``$a:acct``)
    stay as typed.

    >>> ban_mask("bob"), ban_mask("*!*@10.0.0.*"), ban_mask("$a:bob")
    ('bob!*@*', '*!*@10.0.0.*', '$a:bob')
    """
    if text.startswith("$") or any(c in text for c in "!@*?"):
        return text
    return f"{text}!*@*"


def _room_and_args(target: CommandTarget, args: str, usage: str) -> tuple[str, list[str]]:
    """``[#ROOM] ARGS...``: the room named first, else the one shown."""
    words = args.split()
    if words and target.state.is_channel(words[0]):
        room, words = words[0], words[1:]
    else:
        room = _active_room(target, usage.split()[0])
    if not words:
        raise CommandError(f"Missing argument. Usage: {usage}")
    return room, words


def _set_modes(target: CommandTarget, args: str, mode: str, usage: str) -> None:
    room, words = _room_and_args(target, args, usage)
    for word in words:
        param = ban_mask(word) if mode[1] == "b" else word
        _check_connected(target, target.send(Message.of("MODE", room, mode, param)))


def _mode_command(mode: str, usage: str) -> Handler:
    def handler(target: CommandTarget, args: str) -> None:
        _set_modes(target, args, mode, usage)

    return handler


def cmd_kick(target: CommandTarget, args: str) -> None:
    room, words = _room_and_args(target, args, "/kick NICK [REASON]")
    nick, reason = words[0], " ".join(words[1:])
    msg = Message.of("KICK", room, nick, reason) if reason else Message.of("KICK", room, nick)
    _check_connected(target, target.send(msg))


def react(target: CommandTarget, buf: Buffer, entry: Entry | None, emoji: str) -> None:
    """React to ``entry`` of ``buf`` with ``emoji``; shown at once unless the server
    echoes (then its echo shows it, as for our messages)."""
    problem = react_problem(target.server_caps(), entry)
    if problem is not None:
        raise CommandError(problem)
    assert entry is not None
    _check_connected(target, target.send(react_message(buf, entry, emoji)))
    if not target.state.echo_message:
        target.state.react(buf, entry.msgid, emoji, target.state.nick)


def cmd_react(target: CommandTarget, args: str) -> None:
    emoji = _require(args, "/react EMOJI")
    if not valid_reaction(emoji):
        raise CommandError("A reaction is one emoji (or one short word): /react 👍")
    buf = target.state.active_buffer
    if buf.kind is BufferKind.SERVER:
        raise CommandError("/react needs a room or a private conversation")
    react(target, buf, target.selected_entry() or last_message(buf), emoji)


def cmd_upload(target: CommandTarget, args: str) -> None:
    target.upload(_require(args, "/upload PATH"))


def cmd_quote(target: CommandTarget, args: str) -> None:
    try:
        msg = parse(_require(args, "/quote RAW IRC LINE"))
    except PeerProtocolError as exc:
        raise CommandError(f"Not an IRC line: {exc}") from None
    _check_connected(target, target.send(msg))


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("join", "/join ROOM [KEY]", "join a room (the # is optional)", cmd_join),
        Command("part", "/part [ROOM] [REASON]", "leave this room (or ROOM)", cmd_part),
        Command("msg", "/msg NICK TEXT", "send a private message", cmd_msg),
        Command("query", "/query NICK [TEXT]", "open a private conversation", cmd_query),
        Command("me", "/me ACTION", "describe what you are doing", cmd_me),
        Command("nick", "/nick NEWNICK", "change your nick", cmd_nick),
        Command("topic", "/topic [TEXT]", "show or set this room's topic", cmd_topic),
        Command("names", "/names [ROOM]", "list the people in a room", cmd_names),
        Command("list", "/list [PATTERN]", "list the rooms on the server", cmd_list),
        Command("whois", "/whois NICK", "show who someone is", cmd_whois),
        Command("away", "/away [MESSAGE]", "mark yourself away (no message: back)", cmd_away),
        Command("close", "/close [ROOM|NICK]", "leave and close a window", cmd_close),
        Command("clear", "/clear", "clear this window's messages", cmd_clear),
        Command("help", "/help [COMMAND]", "show help", cmd_help),
        Command("quit", "/quit [REASON]", "leave the server and exit", cmd_quit),
        Command("reconnect", "/reconnect", "reconnect to the server now", cmd_reconnect),
        Command("quote", "/quote LINE", "send a raw IRC line", cmd_quote),
        Command(
            "upload",
            "/upload PATH",
            "upload a file to the server and send its link here (Esc cancels)",
            cmd_upload,
        ),
        Command(
            "login",
            "/login [ACCOUNT] [PASSWORD]",
            "log in to your account (no password: the remembered one)",
            cmd_login,
        ),
        Command(
            "register",
            "/register [ACCOUNT] PASSWORD",
            "register an account (ACCOUNT: your nick if left out)",
            cmd_register,
        ),
        Command("logout", "/logout", "log out of your account", cmd_logout),
        Command(
            "op",
            "/op NICK...",
            "make people operators of this room",
            _mode_command("+o", "/op NICK..."),
        ),
        Command(
            "deop",
            "/deop NICK...",
            "take operator status away",
            _mode_command("-o", "/deop NICK..."),
        ),
        Command(
            "voice",
            "/voice NICK...",
            "let people speak in a moderated room",
            _mode_command("+v", "/voice NICK..."),
        ),
        Command(
            "devoice",
            "/devoice NICK...",
            "take voice away",
            _mode_command("-v", "/devoice NICK..."),
        ),
        Command(
            "ban",
            "/ban NICK|MASK...",
            "ban from this room (NICK: NICK!*@*; $a:ACCOUNT)",
            _mode_command("+b", "/ban NICK|MASK..."),
        ),
        Command("unban", "/unban MASK...", "lift a ban", _mode_command("-b", "/unban MASK...")),
        Command("kick", "/kick NICK [REASON]", "remove someone from this room", cmd_kick),
        Command(
            "react",
            "/react EMOJI",
            "react to the selected message (or the last one here)",
            cmd_react,
        ),
    )
}
ALIASES = {"j": "join", "leave": "part", "q": "query", "w": "whois", "exit": "quit", "raw": "quote"}


# Raw lines whose parameters are secrets: /quote keeps them out of the input history.
_SECRET_RAW_COMMANDS = frozenset({"PASS", "AUTHENTICATE", "REGISTER", "OPER"})


def redact_input(line: str, active: str = "") -> str | None:
    """``line`` as the input history may keep it (``active``: the shown window's name,
    where plain text goes): no passwords; None to keep nothing of it.

    >>> redact_input("/login alice hunter2"), redact_input("/login hunter2")
    ('/login alice', '/login')
    >>> redact_input("/msg NickServ IDENTIFY alice pw"), redact_input("IDENTIFY pw", "NickServ")
    ('/msg NickServ IDENTIFY ••••••', 'IDENTIFY ••••••')
    >>> redact_input("/quote PASS secret") is None, redact_input("hello", "#lan")
    (True, 'hello')
    """
    if not line.startswith("/") or line.startswith("//"):
        return redact_service_text(active, line)
    word, _, args = line[1:].partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    if name in ("login", "register"):
        words = args.split()
        return f"/{word} {words[0]}" if len(words) >= 2 else f"/{word}"
    if name in ("msg", "query"):
        to, _, text = args.strip().partition(" ")
        shown = redact_service_text(to, text)
        return line if shown == text else f"/{word} {to} {shown}"
    if name == "quote":
        try:
            msg = parse(args.strip())
        except PeerProtocolError:
            return line
        if msg.command.upper() in _SECRET_RAW_COMMANDS:
            return None
        secret = redact_service_text(msg.param(0), msg.param(1)) != msg.param(1)
        if msg.command.upper() in ("PRIVMSG", "NOTICE") and secret:
            return None
    return line


def run_input(target: CommandTarget, line: str, *, tags: Mapping[str, str] | None = None) -> bool:
    """Act on one line the user entered: a /command, or text for the shown buffer
    (with client ``tags``: a reply's). True when it was text, sent.

    ``//text`` sends ``/text`` literally. Raises :class:`CommandError` with advice.
    """
    if not line.strip():
        return False
    if line.startswith("/") and not line.startswith("//"):
        name, _, args = line[1:].partition(" ")
        name = name.lower()
        command = COMMANDS.get(ALIASES.get(name, name))
        if command is None:
            raise CommandError(f"Unknown command /{name}. Type /help for the list")
        command.handler(target, args)
        return False
    if line.startswith("//"):
        line = line[1:]
    buf = target.state.active_buffer
    if buf.kind is BufferKind.SERVER:
        raise CommandError("This is the server window: /join a room or /query someone to talk")
    if buf.kind is BufferKind.CHANNEL and not buf.joined:
        raise CommandError(f"You are not in {buf.name}; /join {buf.name} to rejoin")
    say(target, buf.name, line, tags=tags)
    return True


def complete_command(prefix: str) -> list[str]:
    """Command names starting with ``prefix`` (which starts with '/')."""
    word = casefold(prefix[1:])
    return ["/" + name for name in COMMANDS if name.startswith(word)]


def complete(state: ClientState, word: str, at_start: bool) -> list[str]:
    """Tab: what ``word`` may become, best first (a /command at the start of the line,
    a room for ``#...``, else a nick of the shown buffer). Names match by the server's
    case mapping: ``bob[`` finds ``Bob{1}``.

    Names come from the server and would go into the input line as they are, so only
    names the sanitiser leaves unchanged (no controls, no codes) are offered.
    """
    if at_start and word.startswith("/"):
        return complete_command(word)
    folded = casefold(word)
    if word[:1] in ("#", "&"):
        rooms = [b.name for b in state.ordered() if b.kind is BufferKind.CHANNEL]
        return [r for r in rooms if casefold(r).startswith(folded) and _typable(r)]
    nicks = [n for n in state.completion_candidates(state.active) if _typable(n)]
    if not word:
        return nicks
    return [n for n in nicks if casefold(n).startswith(folded)]


def _typable(name: str) -> bool:
    """True when ``name`` shows as it is (no controls, no IRC codes): safe to insert."""
    return strip_formatting(name) == name
