"""The client against a hostile or broken server: the real app, driven by Pilot, talking
over loopback to a scripted server (fake_server.py) that sends what a bad server might.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from client_helpers import TERMINAL_SIZE, log_text, run_client, wait_until
from fake_server import SERVER_NAME, FakeServer, fake_server
from textual import events

from chatroom.client.app import ChatApp, make_app
from chatroom.client.connection import SERVER_LINE_BYTES
from chatroom.client.model import SERVER_KEY, EntryKind
from chatroom.client.screens.dialogs import ConfirmScreen
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.panels import MemberList, RoomList, StatusLine, TopicBar
from chatroom.protocol import LineBuffer, casefold

# What must never reach the terminal from the network: ESC (and so every escape
# sequence), BEL (ends an OSC title change), the 8-bit CSI, and IRC's own codes.
TERMINAL_CONTROLS = ("\x1b", "\x07", "\x9b", "\x02", "\x03")
# An OSC title change and a clear-screen, with markup that must stay text.
EVIL = "\x1b]0;PWNED\x07\x1b[2J[b]not markup[/b] \x02bold\x02"


def assert_clean(shown: str, what: str) -> None:
    found = [c for c in TERMINAL_CONTROLS if c in shown]
    assert not found, f"{what} shows {found!r}: {shown!r}"
    assert "PWNED" not in shown, f"{what} shows an OSC's payload: {shown!r}"


def rendered(widget: object) -> str:
    """The plain text a widget renders."""
    visual = widget.render()  # type: ignore[attr-defined]
    return getattr(visual, "plain", str(visual))


async def joined(app: ChatApp, pilot, room: str = "#lan") -> None:
    await wait_until(pilot, lambda: app.state.active == room, what=f"{room} joined and shown")


# --- 15: every string from the network is sanitised, toasts included ---------------------


async def test_server_error_toast_is_sanitised(tmp_path: Path) -> None:
    async with fake_server() as server:
        app = make_app(server.host, server.port, "alice", config_dir=tmp_path / "config")
        # run_test() hides toasts unless asked: this test looks at the one on screen.
        async with app.run_test(size=TERMINAL_SIZE, notifications=True) as pilot:
            try:
                await toast_is_sanitised(app, pilot, server)
            finally:
                await app.connection.close("test over")


async def toast_is_sanitised(app: ChatApp, pilot, server: FakeServer) -> None:
    await wait_until(pilot, lambda: app.conn_state == "connected")
    # "password" in an ERROR makes it final: "Disconnected for good" and a toast.
    server.send(f"ERROR :Closing link (bad password) {EVIL}")
    await wait_until(pilot, lambda: app.conn_state == "closed", what="gave up")
    await wait_until(pilot, lambda: app._notifications, what="the toast")
    toast = list(app._notifications)[-1]
    assert toast.title == "Disconnected"
    assert_clean(toast.message, "the toast")
    assert "[b]not markup[/b]" in toast.message and not toast.markup
    await wait_until(pilot, lambda: "Disconnected for good" in log_text(app))
    assert_clean(log_text(app), "the log")
    await wait_until(pilot, lambda: app.screen.query("Toast"), what="the toast shown")
    for shown in [rendered(t) for t in app.screen.query("Toast")]:
        assert "[b]not markup[/b]" in shown
        assert_clean(shown, "the toast on screen")


async def test_hostile_names_are_sanitised_everywhere(tmp_path: Path) -> None:
    room = "#ev\x1b[2Jil"
    nick = "bad\x1b]0;PWNED\x07nick"
    async with (
        fake_server() as server,
        run_client(server, tmp_path, "alice") as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.conn_state == "connected")
        me = f":{SERVER_NAME}"
        server.send(
            # A prefix character that is ESC, then a room, a member and a topic with
            # escapes in them, a private message from that member, and our nick too.
            f"{me} 005 alice PREFIX=(ov)\x1b+ :are supported",
            f":alice!u@127.0.0.1 JOIN {room}",
            f"{me} 353 alice = {room} :\x1balice +{nick}",
            f"{me} 366 alice {room} :End of /NAMES list.",
            f"{me} 332 alice {room} :the topic {EVIL}",
            f":{nick}!u@127.0.0.1 PRIVMSG {room} :{EVIL}",
            f":{nick}!u@127.0.0.1 PRIVMSG alice :hi alice {EVIL}",
            ":alice!u@127.0.0.1 NICK :al\x1b[31mice",
        )
        key = casefold(room)
        await wait_until(pilot, lambda: app.state.buffer(nick) is not None, what="the query")
        await wait_until(pilot, lambda: app._notifications, what="the mention toast")
        app.switch_to(key)
        await wait_until(pilot, lambda: "the topic" in rendered(app.screen.query_one(TopicBar)))
        await pilot.pause()
        screen = app.screen
        assert "badnick" in screen.query_one(MemberList).plain
        assert_clean(screen.query_one(MemberList).plain, "the member list")
        assert_clean(rendered(screen.query_one(RoomList)), "the room list")
        assert_clean(rendered(screen.query_one(TopicBar)), "the topic bar")
        assert_clean(rendered(screen.query_one(StatusLine)), "the status line")
        assert_clean(log_text(app), "the log")
        for toast in app._notifications:
            assert_clean(toast.message, "a toast")
            assert_clean(toast.title, "a toast's title")
        # Tab never puts a name with controls into the input line.
        chat_input = screen.query_one(ChatInput)
        chat_input.focus()
        await pilot.press("b", "a", "tab")
        assert_clean(chat_input.value, "the input line")
        # A long paste asks first, naming the room.
        chat_input.value = ""
        chat_input.post_message(events.Paste("\n".join(f"row {i}" for i in range(7))))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = rendered(app.screen.query_one("#question"))
        assert "#evil" in question
        assert_clean(question, "the paste question")
        await pilot.press("n")


# --- 16: a wild time tag, and any exception in the connection task -----------------------


@pytest.fixture
def local_timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Switch the process's local time zone (TZ) for one test."""

    def switch(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield switch
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("zone", "stamp"),
    [
        ("Asia/Tokyo", "9999-12-31T23:59:59.999Z"),  # local time would be year 10000
        ("America/New_York", "0001-01-01T00:00:00.000Z"),  # local time would be year 0
        ("UTC", "9999-12-31T23:59:59.999Z"),  # converts, but no message is from 9999
        ("UTC", "2024-02-30T25:61:00Z"),  # not a time at all
    ],
)
async def test_wild_server_time_gets_arrival_time(
    tmp_path: Path, local_timezone: Callable[[str], None], zone: str, stamp: str
) -> None:
    local_timezone(zone)
    async with (
        fake_server() as server,
        run_client(server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await joined(app, pilot)
        before = datetime.now(UTC)
        server.send(
            f"@time={stamp} :bob!b@127.0.0.1 PRIVMSG #lan :from the end of time",
            ":bob!b@127.0.0.1 PRIVMSG #lan :and right now",
        )
        await wait_until(pilot, lambda: "and right now" in log_text(app), what="both lines")
        assert "from the end of time" in log_text(app)
        entry = next(e for e in app.state.buffer("#lan").entries if e.text.endswith("of time"))
        assert before - timedelta(seconds=1) <= entry.time <= datetime.now(UTC)
        assert app.conn_state == "connected"
        app.submit("still here")
        await wait_until(pilot, lambda: server.link.got("PRIVMSG"), what="a line sent")
        assert server.link.got("PRIVMSG")[-1].params == ("#lan", "still here")
        assert len(server.links) == 1


async def test_error_in_a_line_handler_reconnects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A real bug path: a FAIL with no parameters makes the standard-reply handler ask
    # for the last parameter of none (Message.param(-1) raises IndexError).
    async with (
        fake_server() as server,
        run_client(server, tmp_path, "alice", ("lan",), backoff_base=0.05) as (app, pilot),
    ):
        await joined(app, pilot)
        with caplog.at_level(logging.ERROR, logger="chatroom.client.connection"):
            server.send(f":{SERVER_NAME} FAIL")
            await wait_until(pilot, lambda: len(server.links) == 2, what="a reconnect")
        await wait_until(pilot, lambda: app.conn_state == "connected", what="registered again")
        await wait_until(pilot, lambda: server.link.got("JOIN"), what="#lan rejoined")
        errors = [e for e in app.state.buffers[SERVER_KEY].entries if e.kind is EntryKind.ERROR]
        assert any("Internal error" in e.text and "IndexError" in e.text for e in errors)
        assert any("Disconnected: internal error" in e.text for e in errors)
        assert "internal error" in caplog.text
        assert any(r.exc_info and r.exc_info[0] is IndexError for r in caplog.records)
        await wait_until(pilot, lambda: "alice" in app.state.buffer("#lan").members)
        app.submit("back again")
        await wait_until(pilot, lambda: server.link.got("PRIVMSG"), what="a line sent")
        assert server.link.got("PRIVMSG")[-1].params == ("#lan", "back again")
        assert "connected" in rendered(app.screen.query_one(StatusLine))


# --- 17: long lines ------------------------------------------------------------------------


def privmsg(text: str, source: str = "bob!b@127.0.0.1") -> str:
    return f":{source} PRIVMSG #lan :{text}"


async def test_long_lines_from_the_server(tmp_path: Path) -> None:
    # irssi sends a PRIVMSG of up to 510 bytes; relayed with the sender's prefix it is
    # longer than 512, and the server does not cut it.
    irssi_line = "PRIVMSG #lan :" + "i" * (490 - len("PRIVMSG #lan :") - 2)
    relayed = f":irssi_user!~irssi@lan-host-42.example.net {irssi_line}"
    tagged = "@+example/big=" + "t" * 7000 + ";time=2024-01-01T00:00:00.000Z " + relayed
    assert len(relayed) + 2 > 512
    huge = privmsg("h" * 12_000)  # whole, in one write, but over any limit of ours
    endless = privmsg("e" * (SERVER_LINE_BYTES * 3)).encode()  # arrives in pieces
    async with (
        fake_server() as server,
        run_client(server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await joined(app, pilot)
        lan = app.state.buffer("#lan")
        server.send(relayed, tagged)
        server.send(f"{privmsg('before huge')}\r\n{huge}\r\n{privmsg('after huge')}\r\n".encode())
        await wait_until(pilot, lambda: "after huge" in log_text(app), what="after huge")
        texts = [e.text for e in lan.entries]
        assert texts.count(irssi_line.partition(":")[2]) == 2
        assert "before huge" in texts and not any(t.startswith("hhh") for t in texts)
        assert len(dropped_notices(app)) == 1
        # The line before the endless one shares its read; the rest comes later.
        server.send(f"{privmsg('before endless')}\r\n".encode() + endless[: SERVER_LINE_BYTES * 2])
        await wait_until(pilot, lambda: "before endless" in log_text(app), what="before endless")
        server.send(
            endless[SERVER_LINE_BYTES * 2 :] + f"\r\n{privmsg('after endless')}\r\n".encode()
        )
        await wait_until(pilot, lambda: "after endless" in log_text(app), what="after endless")
        assert not any(e.text.startswith("eee") for e in lan.entries)
        assert len(dropped_notices(app)) == 2
        assert app.conn_state == "connected" and len(server.links) == 1


def dropped_notices(app: ChatApp) -> list[str]:
    """The log's system lines about lines from the server dropped for their length."""
    return [
        e.text
        for e in app.state.buffers[SERVER_KEY].entries
        if "line from the server was too long" in e.text and e.kind is EntryKind.ERROR
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 20, 64, 1000])
def test_line_buffer_skips_a_long_line_whatever_the_chunks(size: int) -> None:
    stream = b"A\r\n" + b"x" * 50 + b"\r\nB\r\n" + b"y" * 30 + b"\nC\n"
    buf = LineBuffer(limit=20, skip_long=True)
    lines = list(
        itertools.chain.from_iterable(
            buf.feed(stream[i : i + size]) for i in range(0, len(stream), size)
        )
    )
    # A long line is either returned whole (parse then refuses it) or skipped and
    # counted; it never spills into its neighbours.
    assert [line for line in lines if len(line) <= 20] == [b"A", b"B", b"C"]
    assert sorted(line for line in lines if len(line) > 20) in (
        [],
        [b"y" * 30],
        [b"x" * 50],
        [b"x" * 50, b"y" * 30],
    )
    assert buf.dropped + sum(1 for line in lines if len(line) > 20) == 2
