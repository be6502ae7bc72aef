"""History in the real client against our real server: on join, scroll-back, the
unread divider, gap fill after a reconnect, and echo-message (Pilot-driven)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from client_helpers import log_text, run_client, scripted_users, wait_until

from chatroom.client.app import ChatApp
from chatroom.client.model import Buffer, EntryKind, HistoryState
from chatroom.client.widgets.log import DIVIDER_TEXT, HEADER_TEXT, MessageLog
from chatroom.protocol import Message


def said(buf: Buffer) -> list[str]:
    """The conversation lines of a buffer, in display order."""
    return [e.text for e in buf.entries if e.kind is EntryKind.MESSAGE]


class HistoryGate:
    """Holds the app's CHATHISTORY requests until released, and counts them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold: bool = True) -> None:
        self.hold = hold
        self.sent: list[Message] = []
        self.held: list[tuple[ChatApp, Message]] = []
        original = ChatApp.send

        def send(app: ChatApp, message: Message) -> bool:
            if message.command == "CHATHISTORY":
                self.sent.append(message)
                if self.hold:
                    self.held.append((app, message))
                    return True
            return original(app, message)

        self._original = original
        monkeypatch.setattr(ChatApp, "send", send)

    def release(self) -> None:
        """Send what was held, and stop holding."""
        self.hold = False
        held, self.held = self.held, []
        for app, message in held:
            self._original(app, message)


async def test_history_appears_on_join(irc_server, tmp_path: Path) -> None:
    async with scripted_users(irc_server, "bob") as (bob,):
        await bob.join("#lan")
        await bob.join("#games")
        for i in range(5):
            bob.say("#lan", f"before {i}")
        bob.say("#lan", "alice: are you there?")
        bob.say("#games", "alice: a round later?")
        await bob.sync()
        async with run_client(irc_server, tmp_path, "alice", ("lan", "games")) as (app, pilot):
            await wait_until(pilot, lambda: app.state.active == "#lan")
            lan = app.state.buffer("#lan")
            await wait_until(pilot, lambda: lan.history is HistoryState.COMPLETE, what="history")
            assert said(lan) == [f"before {i}" for i in range(5)] + ["alice: are you there?"]
            history = [i for i, e in enumerate(lan.entries) if e.history]
            join = next(i for i, e in enumerate(lan.entries) if e.kind is EntryKind.JOIN)
            assert len(history) == 6 and max(history) < join  # before our JOIN line
            assert all(e.msgid for e in lan.entries if e.history)
            # The server's time, not the time we received them.
            assert all(e.time <= lan.entries[join].time for e in lan.entries if e.history)
            await wait_until(pilot, lambda: "before 4" in log_text(app))
            assert HEADER_TEXT[HistoryState.COMPLETE] in log_text(app)
            games = app.state.buffer("#games")
            await wait_until(pilot, lambda: games.history is HistoryState.COMPLETE)
            # Old lines: no unread counts, no mention counts, no toasts.
            assert said(games) == ["alice: a round later?"]
            assert (games.unread, games.mentions, lan.mentions) == (0, 0, 0)
            assert games.entries[0].mention  # still highlighted
            assert not app._notifications


async def test_live_lines_racing_the_batch_show_once(
    irc_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = HistoryGate(monkeypatch)
    async with scripted_users(irc_server, "bob") as (bob,):
        await bob.join("#lan")
        for i in range(3):
            bob.say("#lan", f"old {i}")
        async with run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot):
            await wait_until(pilot, lambda: gate.held, what="CHATHISTORY sent")
            lan = app.state.buffer("#lan")
            assert lan.history is HistoryState.LOADING
            await wait_until(pilot, lambda: HEADER_TEXT[HistoryState.LOADING] in log_text(app))
            for i in range(3):
                bob.say("#lan", f"live {i}")
            await wait_until(pilot, lambda: "live 2" in said(lan), what="live lines")
            gate.release()  # the batch now holds the live lines too
            await wait_until(pilot, lambda: lan.history is HistoryState.COMPLETE)
            assert said(lan) == ["old 0", "old 1", "old 2", "live 0", "live 1", "live 2"]
            fetched = [e.history for e in lan.entries if e.kind is EntryKind.MESSAGE]
            assert fetched == [True, True, True, False, False, False]
            assert len(gate.sent) == 1


async def test_scroll_to_top_loads_older_messages(
    server_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory(flood_limit=False)
    gate = HistoryGate(monkeypatch, hold=False)
    lines = [f"line {i:03d}" for i in range(150)]
    async with scripted_users(server, "bob") as (bob,):
        await bob.join("#lan")
        for line in lines:
            bob.say("#lan", line)
        await bob.sync()
        async with run_client(server, tmp_path, "alice", ("lan",), history_page=50) as (
            app,
            pilot,
        ):
            await wait_until(pilot, lambda: app.state.buffer("#lan") is not None)
            lan = app.state.buffer("#lan")
            await wait_until(pilot, lambda: lan.history is HistoryState.MORE, what="first page")
            assert said(lan) == lines[100:]  # LATEST: the newest page
            log = app.screen.query_one(MessageLog)
            await wait_until(pilot, lambda: "line 149" in log_text(app))
            gate.hold = True
            for _ in range(10):  # PageUp until the top: the request goes out by itself
                await pilot.press("pageup")
                if gate.held:
                    break
            assert len(gate.held) == 1
            request = gate.held[0][1]
            assert request.params[:2] == ("BEFORE", "#lan")
            assert request.params[2].startswith("msgid=")
            assert log.scroll_y == 0 and lan.history is HistoryState.LOADING
            await wait_until(pilot, lambda: HEADER_TEXT[HistoryState.LOADING] in log_text(app))
            for _ in range(3):  # more scrolling while loading: still one request
                await pilot.press("pageup")
            log.post_message(MessageLog.NeedOlder(lan.key))
            await pilot.pause()
            assert len(gate.held) == 1
            reading = log.visible_text().splitlines()
            row = next(i for i, text in enumerate(reading) if "line 100" in text)
            gate.release()
            await wait_until(pilot, lambda: "line 050" in said(lan), what="older page")
            assert said(lan) == lines[50:]  # in order, no duplicates
            await pilot.pause()
            # The line the user was reading has not moved on screen.
            now = log.visible_text().splitlines()
            assert "line 100" in now[row] and "line 099" in now[row - 1]
            # Back to the top with the log's own keys: another full page, then one that
            # finds nothing more.
            log.focus()
            for expected in (HistoryState.MORE, HistoryState.COMPLETE):
                await pilot.press("home")
                await pilot.press("up")
                await wait_until(pilot, lambda e=expected: lan.history is e, what=str(expected))
            await wait_until(pilot, lambda: HEADER_TEXT[HistoryState.COMPLETE] in log_text(app))
            assert said(lan) == lines
            assert [m.params[0] for m in gate.sent] == ["LATEST", "BEFORE", "BEFORE", "BEFORE"]


async def test_unread_divider(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan", "games")) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        await wait_until(pilot, lambda: getattr(app.state.buffer("#games"), "joined", False))
        await bob.join("#lan")
        bob.say("#lan", "seen already")
        await wait_until(pilot, lambda: "seen already" in log_text(app))
        assert DIVIDER_TEXT not in log_text(app)
        app.switch_to("#games")
        bob.say("#lan", "unread one")
        bob.say("#lan", "unread two")
        lan = app.state.buffer("#lan")
        await wait_until(pilot, lambda: lan.unread == 2)
        app.switch_to("#lan")
        await wait_until(pilot, lambda: "unread two" in log_text(app))
        shown = log_text(app).splitlines()
        divider = next(i for i, text in enumerate(shown) if DIVIDER_TEXT in text)
        assert "seen already" in shown[divider - 1] and "unread one" in shown[divider + 1]
        # Looked at, left and come back with nothing new: no divider.
        app.switch_to("#games")
        app.switch_to("#lan")
        await pilot.pause()
        assert DIVIDER_TEXT not in log_text(app)
        # Something new while away: the divider moves down to it.
        app.switch_to("#games")
        bob.say("#lan", "unread three")
        await wait_until(pilot, lambda: lan.unread == 1)
        app.switch_to("#lan")
        await wait_until(pilot, lambda: "unread three" in log_text(app))
        shown = log_text(app).splitlines()
        divider = next(i for i, text in enumerate(shown) if DIVIDER_TEXT in text)
        assert "unread two" in shown[divider - 1] and "unread three" in shown[divider + 1]
        assert sum(DIVIDER_TEXT in text for text in shown) == 1


async def test_reconnect_fills_the_gap(server_factory, tmp_path: Path) -> None:
    server = server_factory(db=str(tmp_path / "history.db"))
    async with (
        scripted_users(server, "bob") as (bob,),
        # A long backoff: the test says when to reconnect. A small page: the gap is
        # filled in several AFTER requests.
        run_client(server, tmp_path, "alice", ("lan",), backoff_base=30.0, history_page=2) as (
            app,
            pilot,
        ),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        await bob.join("#lan")
        bob.say("#lan", "before the restart")
        lan = app.state.buffer("#lan")
        await wait_until(pilot, lambda: "before the restart" in said(lan))
        server.restart()
        await wait_until(pilot, lambda: app.conn_state == "waiting", what="drop noticed")
        async with scripted_users(server, "bob") as (bob2,):
            await bob2.join("#lan")
            for i in range(3):
                bob2.say("#lan", f"missed {i}")
            await bob2.sync()
            app.reconnect()
            await wait_until(pilot, lambda: app.conn_state == "connected", what="reconnected")
            await wait_until(pilot, lambda: "missed 2" in said(lan), what="gap filled")
            bob2.say("#lan", "after the reconnect")
            await wait_until(pilot, lambda: "after the reconnect" in said(lan))
        assert said(lan) == [
            "before the restart",
            "missed 0",
            "missed 1",
            "missed 2",
            "after the reconnect",
        ]
        joins = [
            i for i, e in enumerate(lan.entries) if e.kind is EntryKind.JOIN and e.nick == "alice"
        ]
        missed = [i for i, e in enumerate(lan.entries) if e.text.startswith("missed")]
        assert joins[0] < min(missed) and max(missed) < joins[1]  # in the gap
        assert all(lan.entries[i].history for i in missed)
        assert lan.unread == 0


async def test_echo_message_shows_one_copy(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        assert app.state.echo_message
        await bob.join("#lan")
        lan = app.state.buffer("#lan")
        app.submit("hello everyone")
        entry = lan.entries[-1]
        assert entry.text == "hello everyone" and entry.own  # on screen at once
        app.submit("/me waves")
        await bob.wait_for(lambda m: m.param(1) == "\x01ACTION waves\x01")
        await wait_until(pilot, lambda: not lan.pending, what="echoes")
        own = [e for e in lan.entries if e.own]
        assert [(e.kind, e.text) for e in own] == [
            (EntryKind.MESSAGE, "hello everyone"),
            (EntryKind.ACTION, "waves"),
        ]
        assert all(e.msgid and not e.pending and not e.failed for e in own)
        await wait_until(pilot, lambda: "alice waves" in log_text(app))
        assert log_text(app).count("hello everyone") == 1
        # A private message: the echo and the conversation's history meet; one copy.
        app.submit("/msg bob psst")
        await bob.wait_for(lambda m: m.param(1) == "psst")
        query = app.state.buffer("bob")
        await wait_until(pilot, lambda: query.history is HistoryState.COMPLETE)
        await asyncio.sleep(0.1)
        assert said(query) == ["psst"] and query.entries[0].msgid


async def test_private_window_fetches_its_history(irc_server, tmp_path: Path) -> None:
    async with (
        scripted_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        bob.say("alice", "first")
        bob.say("alice", "second")
        await wait_until(pilot, lambda: app.state.buffer("bob") is not None)
        query = app.state.buffer("bob")
        await wait_until(pilot, lambda: query.history is HistoryState.COMPLETE)
        await wait_until(pilot, lambda: said(query) == ["first", "second"])
        app.submit("/close bob")
        assert app.state.buffer("bob") is None
        app.submit("/query bob")
        query = app.state.buffer("bob")
        await wait_until(pilot, lambda: query.history is HistoryState.COMPLETE)
        assert said(query) == ["first", "second"]
        assert all(e.history for e in query.entries)
        await wait_until(pilot, lambda: "second" in log_text(app))


async def test_reconnect_finds_conversations_that_went_on(server_factory, tmp_path: Path) -> None:
    # CHATHISTORY TARGETS after a reconnect: a private conversation from around the
    # time the link dropped, with no window open, gets one (and its history). Private
    # history outlives a connection only for an account: alice registers at connect
    # and logs in again on reconnecting.
    server = server_factory(db=str(tmp_path / "history.db"), scram_iterations=4096)
    login = {"account": "alice", "account_password": "alicepass1", "register": True}
    async with run_client(server, tmp_path, "alice", ("lan",), backoff_base=0.1, **login) as (
        app,
        pilot,
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        async with scripted_users(server, "bob") as (bob,):
            bob.say("alice", "psst")
            await wait_until(pilot, lambda: app.state.buffer("bob") is not None)
        app.submit("/close bob")
        server.restart()
        await wait_until(pilot, lambda: app.conn_state == "waiting", what="drop noticed")
        await wait_until(pilot, lambda: app.state.buffer("bob") is not None, what="reopened")
        query = app.state.buffer("bob")
        await wait_until(pilot, lambda: query.history is HistoryState.COMPLETE)
        assert said(query) == ["psst"] and query.entries[0].history


async def test_renamed_conversation_stays_one_window_after_reconnect(
    server_factory, tmp_path: Path
) -> None:
    # The server keys a private conversation by both nicks as they were: after
    # bob -> bobby, TARGETS still names "bob" for the lines before the change. Those
    # lines are already in the (renamed) bobby window: no second window for them.
    server = server_factory(db=str(tmp_path / "history.db"))
    async with run_client(server, tmp_path, "alice", ("lan",), backoff_base=0.1) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        async with scripted_users(server, "bob") as (bob,):
            await bob.join("#lan")  # a room in common: alice sees the NICK
            bob.say("alice", "psst")
            await wait_until(pilot, lambda: app.state.buffer("bob") is not None)
            query = app.state.buffer("bob")
            await wait_until(pilot, lambda: query.history is HistoryState.COMPLETE)
            bob.send(Message.of("NICK", "bobby"))
            await wait_until(pilot, lambda: app.state.buffer("bobby") is query, what="renamed")
            server.restart()
        await wait_until(pilot, lambda: app.conn_state == "waiting", what="drop noticed")
        await wait_until(pilot, lambda: app.conn_state == "connected", what="reconnected")
        server_buf = app.state.buffers[""]

        def motd_ends() -> int:
            return sum("End of /MOTD" in e.text for e in server_buf.entries)

        await wait_until(pilot, lambda: motd_ends() == 2, what="second welcome burst")
        app.submit("/whois alice")  # answered after TARGETS: a round trip behind it
        await wait_until(
            pilot,
            lambda: any(
                "End of WHOIS" in e.text for b in app.state.buffers.values() for e in b.entries
            ),
            what="WHOIS answered",
        )
        await pilot.pause(0.2)
        assert app.state.buffer("bob") is None
        assert app.state.buffer("bobby") is query
        assert said(query) == ["psst"]
