"""Socketless tests: Messages into the client model, safe rendering, command parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from chatroom.client.commands import CommandError, complete, run_input, split_text
from chatroom.client.formatting import irc_to_text, nick_colour, strip_controls
from chatroom.client.model import BufferKind, EntryKind
from chatroom.client.state import ClientState
from chatroom.client.widgets.log import render_entry
from chatroom.protocol import Message, parse


def feed(state: ClientState, *lines: str) -> None:
    for line in lines:
        state.handle(parse(line))


@pytest.fixture
def state() -> ClientState:
    s = ClientState("alice", "irc.test")
    feed(
        s,
        ":irc.test 001 alice :Welcome",
        ":irc.test 005 alice PREFIX=(ov)@+ CHANTYPES=# :are supported",
        ":alice!a@h JOIN #lan",
        ":irc.test 353 alice = #lan :@alice +bob carol",
        ":irc.test 366 alice #lan :End of /NAMES list.",
    )
    s.set_active("#lan")
    return s


# --- rendering safety ----------------------------------------------------------------

STRIP_CASES = [
    ("plain text", "plain text"),
    ("a\x1b[31mred\x1b[0m", "ared"),
    ("title\x1b]0;pwned\x07!", "title!"),
    ("osc st\x1b]8;;http://x\x1b\\link", "osc stlink"),
    ("c1 \x9b2J csi", "c1  csi"),
    ("bell\x07 bs\x08 del\x7f", "bell bs del"),
    ("tab\there", "tab here"),
    ("bidi \u202eevil", "bidi evil"),
    ("\x02bold\x02 kept", "\x02bold\x02 kept"),
]


@pytest.mark.parametrize(("raw", "expected"), STRIP_CASES)
def test_strip_controls(raw: str, expected: str) -> None:
    assert strip_controls(raw) == expected


FORMAT_CASES = [
    # raw, plain text, (start, end, attribute) expected to be set
    ("\x02b\x02 n", "b n", [(0, 1, "bold")]),
    ("\x1di\x1d", "i", [(0, 1, "italic")]),
    ("\x1fu\x0f n", "u n", [(0, 1, "underline")]),
    ("\x1es", "s", [(0, 1, "strike")]),
    ("\x16r", "r", [(0, 1, "reverse")]),
    ("\x0304red\x03 n", "red n", [(0, 3, "color")]),
    ("\x0304,12rb", "rb", [(0, 2, "bgcolor")]),
    ("\x04ff8800hex", "hex", [(0, 3, "color")]),
    ("\x0399,99dflt", "dflt", []),
    ("\x03,5 comma", ",5 comma", []),  # a comma without a foreground is text
]


@pytest.mark.parametrize(("raw", "plain", "styled"), FORMAT_CASES)
def test_irc_formatting_becomes_styles(raw: str, plain: str, styled: list) -> None:
    text = irc_to_text(raw)
    assert text.plain == plain
    for start, end, attr in styled:
        spans = [s for s in text.spans if s.start <= start and s.end >= end]
        assert any(getattr(s.style, attr) for s in spans), (raw, attr, text.spans)
    if not styled:
        assert not any(s.style for s in text.spans)


def test_markup_is_never_interpreted() -> None:
    text = irc_to_text("[bold]x[/bold] [link=file:///etc/passwd]y[/link] :smile:")
    assert text.plain == "[bold]x[/bold] [link=file:///etc/passwd]y[/link] :smile:"
    assert not text.spans


def test_rendered_rows_carry_no_escape_sequences() -> None:
    state = ClientState("alice")
    buf = state.open("#lan")
    entry = state.add(buf, EntryKind.MESSAGE, "bob\x1b[2J", "hi\x1b]0;x\x07 \x1b[31m" + "w " * 80)
    rows = render_entry(entry, 60, Console(width=60))
    assert len(rows) > 1
    for row in rows:
        assert row.cell_length <= 60
        assert "\x1b" not in row.text and "\x07" not in row.text


def test_nick_colour_is_stable() -> None:
    assert nick_colour("Bob") == nick_colour("bob")
    assert nick_colour("bob[1]") == nick_colour("BOB{1}")


# --- model ------------------------------------------------------------------------------


def test_names_and_modes(state: ClientState) -> None:
    lan = state.buffer("#lan")
    assert [m.prefixes + m.nick for m in lan.sorted_members("@+")] == ["@alice", "+bob", "carol"]
    feed(state, ":alice!a@h MODE #lan +o-v carol bob")
    assert [m.prefixes + m.nick for m in lan.sorted_members("@+")] == ["@alice", "@carol", "bob"]
    assert lan.entries[-1].kind is EntryKind.MODE


def test_join_part_quit_nick_are_system_lines(state: ClientState) -> None:
    lan = state.buffer("#lan")
    feed(
        state,
        ":dave!d@h JOIN #lan",
        ":dave!d@h NICK :david",
        ":david!d@h PART #lan :later",
        ":bob!b@h QUIT :Ping timeout",
    )
    kinds = [e.kind for e in list(lan.entries)[-4:]]
    assert kinds == [EntryKind.JOIN, EntryKind.NICK, EntryKind.PART, EntryKind.QUIT]
    assert "dave is now known as david" in lan.entries[-3].text
    assert set(lan.members) == {"alice", "carol"}


def test_unread_mentions_and_alerts(state: ClientState) -> None:
    feed(state, ":alice!a@h JOIN #games")
    state.set_active("#lan")
    games = state.buffer("#games")
    feed(
        state,
        ":bob!b@h PRIVMSG #games :gg",
        ":bob!b@h PRIVMSG #games :ALICE: you there?",
        ":bob!b@h JOIN #games",  # system lines don't count
        ":bob!b@h PRIVMSG #games :malice is not a mention",
    )
    assert (games.unread, games.mentions) == (3, 1)
    assert [a.text for a in state.alerts] == ["ALICE: you there?"]
    state.set_active("#games")
    assert (games.unread, games.mentions) == (0, 0)


def test_private_message_and_action(state: ClientState) -> None:
    feed(state, ":bob!b@h PRIVMSG alice :\x01ACTION waves\x01")
    query = state.buffer("bob")
    assert query.kind is BufferKind.QUERY
    assert query.entries[-1].kind is EntryKind.ACTION and query.entries[-1].text == "waves"
    assert query.mentions == 1 and state.alerts[-1].nick == "bob"


def test_server_time_tag_is_honoured(state: ClientState) -> None:
    feed(state, "@time=2024-01-02T03:04:05.678Z :bob!b@h PRIVMSG #lan :from the past")
    when = state.buffer("#lan").entries[-1].time
    assert when.astimezone(UTC) == datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_completion_prefers_recent_speakers(state: ClientState) -> None:
    feed(state, ":carol!c@h PRIVMSG #lan :one", ":bob!b@h PRIVMSG #lan :two")
    assert state.completion_candidates("#lan") == ["bob", "carol"]


def test_completion_folds_case_like_the_server(state: ClientState) -> None:
    # rfc1459: "[]\~" are the capitals of "{}|^" (str.lower() would find nothing here).
    feed(state, ":Bob[1]!b@h JOIN #lan", ":alice!a@h JOIN #Games[x]")
    state.set_active("#lan")
    assert complete(state, "bob{", False) == ["Bob[1]"]
    assert complete(state, "BOB[1", False) == ["Bob[1]"]
    assert complete(state, "#games{", False) == ["#Games[x]"]
    assert complete(state, "/JO", True) == ["/join"]


def test_help_keys_come_from_the_bindings() -> None:
    import doctest

    import chatroom.client.screens.dialogs as dialogs
    from chatroom.client.app import ChatApp
    from chatroom.client.screens.chat import ChatScreen
    from chatroom.client.widgets.chat_input import ChatInput

    assert doctest.testmod(dialogs).failed == 0
    bindings = [*ChatInput.BINDINGS, *ChatScreen.BINDINGS, *ChatApp.BINDINGS]
    rows = dict(dialogs.key_help(bindings))
    assert rows["Enter"] == "send the line"
    assert rows["Up / Down"].startswith("previous / next line you sent")
    assert "pick a message" in rows["Up / Down"]
    assert rows["Ctrl+N / Alt+Right"] == "next window"
    assert rows["PageUp / PageDown"] == "scroll the messages"
    assert rows["Alt+1..9"] == "window by number"
    assert rows["F1"] == "this help" and rows["Ctrl+Q"] == "quit"
    # Every binding with a description is there: a new key cannot be left out.
    shown = " / ".join(rows)
    for binding in bindings:
        if binding.description and not binding.group:
            assert dialogs.key_label(binding.key.split(",")) in shown, binding


def test_own_nick_change_and_numeric_errors(state: ClientState) -> None:
    feed(state, ":alice!a@h NICK alicia", ":irc.test 401 alicia zed :No such nick/channel")
    assert state.nick == "alicia"
    assert state.active_buffer.entries[-1].kind is EntryKind.ERROR
    assert "zed: No such nick/channel (401)" in state.active_buffer.entries[-1].text


# --- commands -------------------------------------------------------------------------------


class Target:
    """A CommandTarget that records what would go to the server."""

    def __init__(self, state: ClientState) -> None:
        self.state = state
        self.sent: list[Message] = []
        self.help = False

    def send(self, message: Message) -> bool:
        self.sent.append(message)
        return True

    def switch_to(self, key: str) -> None:
        self.state.set_active(key)

    def expect_join(self, room: str) -> None:
        pass

    def close_buffer(self, key: str) -> None:
        self.state.close(key)

    def show_help(self) -> None:
        self.help = True

    def quit(self, reason: str) -> None:
        pass

    def reconnect(self) -> None:
        pass


COMMAND_CASES = [
    ("/join games", "JOIN #games"),
    ("/JOIN #a,b key", "JOIN #a,#b key"),
    ("/part", "PART #lan"),
    ("/part see you", "PART #lan :see you"),
    ("/msg bob hi there", "PRIVMSG bob :hi there"),
    ("/me waves", "PRIVMSG #lan :\x01ACTION waves\x01"),
    ("/nick alicia", "NICK alicia"),
    ("/topic new topic", "TOPIC #lan :new topic"),
    ("/topic", "TOPIC #lan"),
    ("/names", "NAMES #lan"),
    ("/list", "LIST"),
    ("/whois bob", "WHOIS bob"),
    ("/away lunch", "AWAY :lunch"),
    ("/away", "AWAY"),
    ("hello", "PRIVMSG #lan :hello"),
    ("//not a command", "PRIVMSG #lan :/not a command"),
]


@pytest.mark.parametrize(("line", "expected"), COMMAND_CASES)
def test_command_sends(state: ClientState, line: str, expected: str) -> None:
    target = Target(state)
    run_input(target, line)
    assert str(target.sent[-1]) == expected


@pytest.mark.parametrize(
    "line",
    ["/bogus", "/join", "/msg bob", "/nick 1abc", "/query #room", "/whois", "/close nope"],
)
def test_bad_commands_raise_command_error(state: ClientState, line: str) -> None:
    with pytest.raises(CommandError):
        run_input(Target(state), line)


def test_text_in_server_window_is_refused(state: ClientState) -> None:
    state.set_active("")
    with pytest.raises(CommandError, match="server window"):
        run_input(Target(state), "hello")


def test_long_message_is_split_to_fit_a_line(state: ClientState) -> None:
    target = Target(state)
    run_input(target, "word " * 200)
    assert len(target.sent) > 1
    assert all(len(bytes(m)) + 110 <= 512 for m in target.sent)
    assert " ".join(m.param(1) for m in target.sent).split() == ["word"] * 200


def test_split_text_respects_utf8() -> None:
    assert all(len(p.encode()) <= 5 for p in split_text("ééééé", 5))
    assert "".join(split_text("ééééé", 5)) == "ééééé"


# --- command line -------------------------------------------------------------------------


def test_cli_arguments() -> None:
    from chatroom.client.cli import build_parser

    args = build_parser().parse_args(["10.0.0.5:7000", "--nick", "zed", "--join", "lan", "#games"])
    assert (args.address, args.nick, args.join) == ("10.0.0.5:7000", "zed", ["lan", "#games"])


@pytest.mark.parametrize("argv", [["host:0"], ["host", "--nick", "9x"]])
def test_cli_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from chatroom.client.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "chatroom-client" in capsys.readouterr().err
