"""The real client app, driven by Pilot, against our real server over loopback."""

from __future__ import annotations

from pathlib import Path

from client_helpers import log_text, run_client, scripted_users, wait_until

from chatroom.client.model import BufferKind, EntryKind
from chatroom.client.screens.dialogs import ConfirmScreen, HelpScreen
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.log import MessageLog
from chatroom.client.widgets.panels import MemberList, RoomList, StatusLine
from chatroom.protocol import Message, casefold


def privmsgs_to(user, target: str) -> list[str]:
    return [
        m.param(1)
        for m in user.messages
        if m.command == "PRIVMSG" and casefold(m.param(0)) == casefold(target)
    ]


async def type_line(pilot, text: str) -> None:
    chat_input = pilot.app.screen.query_one(ChatInput)
    chat_input.value = text
    chat_input.cursor_position = len(text)
    await pilot.press("enter")


async def test_connect_join_and_member_list(irc_server, tmp_path: Path) -> None:
    async with run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="#lan shown")
        buf = app.state.active_buffer
        assert buf.kind is BufferKind.CHANNEL and buf.joined
        await wait_until(pilot, lambda: "@alice" in app.screen.query_one(MemberList).plain)
        status = str(app.screen.query_one(StatusLine).render())
        assert "connected" in status and "alice" in status
        assert "#lan" in str(app.screen.query_one(RoomList).render())


async def test_send_and_receive(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("#lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        await bob.join("#lan")
        await wait_until(pilot, lambda: "bob" in app.screen.query_one(MemberList).plain)
        await type_line(pilot, "hello everyone")
        await bob.wait_for(lambda m: m.command == "PRIVMSG" and m.param(1) == "hello everyone")
        bob.say("#lan", "hi alice, welcome")
        await wait_until(pilot, lambda: "hi alice, welcome" in log_text(app), what="bob's line")
        entry = app.state.active_buffer.entries[-1]
        assert entry.nick == "bob" and entry.mention  # our nick in it: highlighted
        bob.action("#lan", "waves")
        await wait_until(pilot, lambda: "bob waves" in log_text(app))
        assert app.state.active_buffer.entries[-1].kind is EntryKind.ACTION
        # Mention in the view we are looking at: no toast, no count.
        assert app.state.active_buffer.mentions == 0


async def test_switch_rooms_unread_and_mentions(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan", "games")) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.buffer("#games") is not None)
        await wait_until(pilot, lambda: app.state.buffer("#lan").joined)
        await wait_until(pilot, lambda: app.state.buffer("#games").joined)
        app.switch_to("#games")
        await bob.join("#lan")
        bob.say("#lan", "anyone here?")
        bob.say("#lan", "alice: ping")
        bells = []
        app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
        lan = app.state.buffer("#lan")
        await wait_until(pilot, lambda: lan.unread == 2 and lan.mentions == 1)
        await wait_until(pilot, lambda: "#lan @1 2" in str(app.screen.query_one(RoomList).render()))
        await wait_until(pilot, lambda: bells and app._notifications, what="toast and bell")
        toast = list(app._notifications)[-1]
        assert "alice: ping" in toast.message and "bob" in toast.title
        # Alt+A jumps to the room with the mention and clears its counts.
        await pilot.press("alt+a")
        await wait_until(pilot, lambda: app.state.active == "#lan")
        assert lan.unread == 0 and lan.mentions == 0
        await wait_until(pilot, lambda: "anyone here?" in log_text(app))
        # Ctrl+N cycles on to the next window.
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: app.state.active != "#lan")


async def test_private_message_opens_query(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        bob.say("alice", "psst, a secret")
        await wait_until(pilot, lambda: app.state.buffer("bob") is not None)
        query = app.state.buffer("bob")
        assert query.kind is BufferKind.QUERY and query.mentions == 1
        await wait_until(pilot, lambda: app._notifications)
        await type_line(pilot, "/query bob")
        assert app.state.active == "bob"
        await type_line(pilot, "tell me more")
        await bob.wait_for(lambda m: m.command == "PRIVMSG" and m.param(1) == "tell me more")
        await type_line(pilot, "/msg bob second line")
        await bob.wait_for(lambda m: m.param(1) == "second line")


async def test_tab_completion(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "bobby", "bob") as (bobby, bob),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        await bobby.join("#lan")
        await bob.join("#lan")
        bob.say("#lan", "first")
        await bob.sync()
        bobby.say("#lan", "second")  # bobby spoke last: offered first
        await wait_until(pilot, lambda: "second" in log_text(app))
        chat_input = app.screen.query_one(ChatInput)
        chat_input.focus()
        await pilot.press("b", "o", "tab")
        assert chat_input.value == "bobby: "
        await pilot.press("tab")
        assert chat_input.value == "bob: "
        chat_input.value = ""
        await pilot.press("/", "j", "o", "tab")
        assert chat_input.value == "/join "
        await pilot.press("#", "l", "tab")
        assert chat_input.value == "/join #lan "
        chat_input.value = ""
        await pilot.press("h", "i", "space", "b", "o", "b", "b", "tab")
        assert chat_input.value == "hi bobby "


async def test_input_history(irc_server, tmp_path: Path) -> None:
    async with run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        await type_line(pilot, "one")
        await type_line(pilot, "two")
        chat_input = app.screen.query_one(ChatInput)
        await pilot.press("d", "r", "a")
        await pilot.press("up")
        assert chat_input.value == "two"
        await pilot.press("up")
        assert chat_input.value == "one"
        await pilot.press("up")
        assert chat_input.value == "one"
        await pilot.press("down", "down")
        assert chat_input.value == "dra"  # the draft comes back


async def test_commands_errors_are_log_lines(irc_server, tmp_path: Path) -> None:
    async with run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        for line, expected in [
            ("/frobnicate", "Unknown command /frobnicate"),
            ("/join", "Usage: /join"),
            ("/msg bob", "Usage: /msg"),
            ("/nick 9lives", "not a valid nick"),
            ("/whois", "Usage: /whois"),
            ("/close nosuchroom", "No open room"),
        ]:
            await type_line(pilot, line)
            await wait_until(pilot, lambda e=expected: e in log_text(app), what=expected)
        assert app.state.active_buffer.entries[-1].kind is EntryKind.ERROR
        await type_line(pilot, "/topic Lunch at noon")
        await wait_until(pilot, lambda: app.state.active_buffer.topic == "Lunch at noon")
        await type_line(pilot, "/nick alice2")
        await wait_until(pilot, lambda: app.state.nick == "alice2")
        await type_line(pilot, "/me stretches")
        await wait_until(pilot, lambda: "alice2 stretches" in log_text(app))
        await type_line(pilot, "/clear")
        await wait_until(pilot, lambda: "stretches" not in log_text(app))
        await type_line(pilot, "/join #other")
        await wait_until(pilot, lambda: app.state.active == "#other")
        await type_line(pilot, "/part")
        await wait_until(pilot, lambda: not app.state.buffer("#other").joined)
        await type_line(pilot, "/close")
        await wait_until(pilot, lambda: app.state.buffer("#other") is None)
        await type_line(pilot, "/help")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_multiline_paste(irc_server, tmp_path: Path) -> None:
    from textual import events

    async with (
        scripted_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        await bob.join("#lan")
        chat_input = app.screen.query_one(ChatInput)
        chat_input.post_message(events.Paste("line 1\nline 2\nline 3\n"))
        await bob.wait_for(lambda m: m.param(1) == "line 3")
        assert privmsgs_to(bob, "#lan") == ["line 1", "line 2", "line 3"]
        many = "\n".join(f"row {i}" for i in range(7))
        chat_input.post_message(events.Paste(many))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await bob.wait_for(lambda m: m.param(1) == "row 6")
        assert privmsgs_to(bob, "#lan")[3:] == [f"row {i}" for i in range(7)]


async def test_injection_is_shown_as_text(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "mallory") as (mallory,),
        run_client(irc_server, tmp_path, "alice") as (app, pilot),
    ):
        await mallory.join("#lan")  # first in: mallory is op and may set the topic
        await wait_until(pilot, lambda: app.conn_state == "connected")
        await type_line(pilot, "/join lan")
        await wait_until(pilot, lambda: app.state.active == "#lan")
        evil = "[bold red]fake[/] [@click=app.quit]x[/] \x1b[2J\x1b]0;title\x07\x9b31m \x02b\x02"
        mallory.say("#lan", evil)
        mallory.send(Message.of("TOPIC", "#lan", "[blink]topic[/blink] \x1b[5m"))
        await wait_until(pilot, lambda: "[bold red]fake[/]" in log_text(app))
        shown = log_text(app)
        assert "[@click=app.quit]x[/]" in shown
        assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
        bar = app.screen.query_one("#topic")
        await wait_until(pilot, lambda: "[blink]topic[/blink]" in str(bar.render()))
        assert "\x1b" not in str(bar.render())
        # The IRC bold code became a style, not a character.
        log = app.screen.query_one(MessageLog)
        strip = next(s for s in log._current.strips if "fake" in s.text)
        bold = [seg.text for seg in strip if seg.style and seg.style.bold and seg.text == "b"]
        assert bold == ["b"]
        assert app.is_running


async def test_nick_in_use_retries_with_underscore(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "alice"),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.nick == "alice_", what="nick alice_")
        await wait_until(pilot, lambda: app.state.active == "#lan")
        assert any("alice is not available" in e.text for e in app.state.buffer("").entries)


async def test_connection_refused_is_explained(tmp_path: Path) -> None:
    from ngircd_proc import free_port

    class Nowhere:
        host, port = "127.0.0.1", free_port()

    async with run_client(Nowhere, tmp_path, "alice", backoff_base=30.0) as (app, pilot):
        await wait_until(pilot, lambda: "connection refused" in log_text(app))
        assert app.conn_state == "waiting"


async def test_reconnect_after_server_restart(irc_server, tmp_path: Path) -> None:
    async with run_client(irc_server, tmp_path, "alice", ("lan",), backoff_base=0.1) as (
        app,
        pilot,
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        irc_server.restart()
        await wait_until(pilot, lambda: app.conn_state == "waiting", what="drop noticed")
        await wait_until(pilot, lambda: app.conn_state == "connected", what="reconnected")
        lan = app.state.buffer("#lan")
        await wait_until(pilot, lambda: "alice" in lan.members, what="rejoined #lan")
        async with scripted_users(irc_server, "bob") as (bob,):
            await bob.join("#lan")
            bob.say("#lan", "welcome back")
            await wait_until(pilot, lambda: "welcome back" in log_text(app))
        assert "Disconnected" in "\n".join(e.text for e in lan.entries)


async def test_connect_screen_remembers_servers(irc_server, tmp_path: Path) -> None:
    from textual.widgets import Input, OptionList, Switch

    from chatroom.client.app import make_app
    from chatroom.client.screens.connect import ConnectScreen

    app = make_app(nick="carol", config_dir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen))
        screen = app.screen
        assert screen.query_one("#nick", Input).value == "carol"
        screen.query_one("#tls", Switch).value = False  # a plain-text test server
        screen.query_one("#host", Input).value = "nowhere:99999"
        await pilot.click("#connect")
        await wait_until(
            pilot, lambda: "not a port" in str(screen.query_one("#connect-error").render())
        )
        screen.query_one("#host", Input).value = f"{irc_server.host}:{irc_server.port}"
        screen.query_one("#host", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.conn_state == "connected")
        await app.connection.close()
    app = make_app(nick="someone", config_dir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen))
        screen = app.screen
        assert screen.query_one("#host", Input).value == irc_server.host
        assert screen.query_one("#nick", Input).value == "carol"
        recent = screen.query_one("#recent", OptionList)
        assert f"carol @ {irc_server.host}:{irc_server.port}" in str(
            recent.get_option_at_index(0).prompt
        )
        recent.focus()
        recent.highlighted = 0
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.conn_state == "connected")
        await app.connection.close()


async def test_wrong_password_is_explained(server_factory, tmp_path: Path) -> None:
    server = server_factory(password="s3cret")
    async with run_client(server, tmp_path, "alice", password="nope") as (app, pilot):
        await wait_until(pilot, lambda: app.conn_state == "closed", what="gave up")
        await wait_until(pilot, lambda: "wrong password" in log_text(app))


async def test_nick_survives_reconnect(irc_server, tmp_path: Path) -> None:
    async with run_client(irc_server, tmp_path, "alice", ("lan",), backoff_base=0.1) as (
        app,
        pilot,
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        app.submit("/nick alicia")
        await wait_until(pilot, lambda: app.state.nick == "alicia")
        app.connection.drop()
        await wait_until(pilot, lambda: app.conn_state == "waiting")
        await wait_until(pilot, lambda: app.conn_state == "connected")
        assert app.state.nick == "alicia"
        await wait_until(pilot, lambda: "alicia" in app.state.buffer("#lan").members)


async def test_no_motd_is_plain_info_not_an_error(server_factory, tmp_path: Path) -> None:
    # 422 only says the server has no message of the day: nothing went wrong.
    server = server_factory(motd=None)
    async with run_client(server, tmp_path, "alice") as (app, pilot):
        server_buf = app.state.buffers[""]
        await wait_until(pilot, lambda: app.conn_state == "connected")
        await wait_until(
            pilot,
            lambda: any(
                "MOTD" in e.text or "message of the day" in e.text for e in server_buf.entries
            ),
            what="422 shown",
        )
        assert not [e.text for e in server_buf.entries if e.kind is EntryKind.ERROR]
        await wait_until(pilot, lambda: "No message of the day" in log_text(app))
        assert "!!" not in log_text(app)


async def test_default_motd_greets_and_counts(server_factory, tmp_path: Path) -> None:
    from chatroom.server.config import DEFAULT_MOTD, Config

    assert Config().motd == DEFAULT_MOTD  # what a server started without --motd sends
    server = server_factory(motd=DEFAULT_MOTD)
    async with (
        scripted_users(server, "bob"),
        run_client(server, tmp_path, "alice") as (app, pilot),
    ):
        await wait_until(pilot, lambda: "End of /MOTD" in log_text(app), what="the MOTD")
        text = log_text(app)
        assert "Welcome to test.server" in text
        assert "2 people here now, you included." in text
        assert "/help lists the commands" in text
        assert "!!" not in text
