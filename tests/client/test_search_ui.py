"""Ctrl+F search in the real client: loaded lines at once, the server's history through
soju.im/search, and Enter jumping to a result (loading history around it when it is not
loaded); against ngircd (no search) the loaded lines are still searched (Pilot)."""

from __future__ import annotations

from pathlib import Path

from client_helpers import run_client, scripted_users, wait_until

from chatroom.client.model import HistoryState
from chatroom.client.screens.chat import ChatScreen
from chatroom.client.screens.search import SearchScreen
from chatroom.client.search import SEARCH_DEBOUNCE, SearchAnswer
from chatroom.client.session import ClientSession
from chatroom.client.widgets.log import MessageLog
from chatroom.protocol import Cap, parse


async def _type(pilot, text: str) -> None:
    await pilot.press(*("space" if c == " " else c for c in text))


async def test_search_loaded_and_server_then_jump(server_factory, tmp_path: Path) -> None:
    server = server_factory(flood_limit=False)
    async with scripted_users(server, "bob") as (bob,):
        await bob.join("#lan")
        bob.say("#lan", "the ancient zebra crossing")  # only the server will have it
        for i in range(30):
            bob.say("#lan", f"filler {i}")
        bob.say("#lan", "a fresh zebra sighting")  # loaded on join
        await bob.sync()
        async with run_client(server, tmp_path, "alice", ("lan",), history_page=10) as (
            app,
            pilot,
        ):
            await wait_until(pilot, lambda: app.state.active == "#lan")
            lan = app.state.buffer("#lan")
            await wait_until(pilot, lambda: lan.history is HistoryState.MORE, what="history")
            assert not any("ancient" in e.text for e in lan.entries)
            assert app.can_search()

            await pilot.press("ctrl+f")
            await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
            screen = app.screen
            assert isinstance(screen, SearchScreen)
            await _type(pilot, "zebra")
            # The loaded line at once, before the server is asked.
            assert [h.text for h in screen.hits] == ["a fresh zebra sighting"]
            await pilot.pause(SEARCH_DEBOUNCE)
            await wait_until(pilot, lambda: len(screen.hits) == 2, what="server results")
            texts = [h.text for h in screen.hits]
            assert texts == ["a fresh zebra sighting", "the ancient zebra crossing"]  # once each
            assert not any("ancient" in e.text for e in lan.entries)  # results are not lines
            old = screen.hits[1]
            assert old.seq is None and old.msgid and old.nick == "bob"
            # Plain text in the list, never markup.
            assert "zebra" in str(screen.query_one("#search-results").get_option_at_index(1).prompt)

            await pilot.press("down", "enter")
            await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
            await wait_until(pilot, lambda: lan.find(old.msgid) is not None, what="around")
            log = app.screen.query_one(MessageLog)
            await wait_until(pilot, lambda: log.selected_entry() is not None, what="jump")
            assert log.selected_entry().text == "the ancient zebra crossing"
            assert "ancient zebra" in log.visible_text()
            assert app.screen.focused is log

            # A loaded line: Enter selects it without asking the server again.
            await pilot.press("escape", "ctrl+f")
            await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
            await _type(pilot, "fresh")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
            await wait_until(pilot, lambda: log.selected_entry() is not None)
            assert log.selected_entry().text == "a fresh zebra sighting"
            # Escape closes the panel without jumping.
            await pilot.press("escape", "ctrl+f")
            await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))


async def test_search_against_ngircd_searches_loaded_lines(ngircd, tmp_path: Path) -> None:
    async with run_client(ngircd, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="join")
        async with scripted_users(ngircd, "bob") as (bob,):
            await bob.join("#lan")
            bob.say("#lan", "where is the walrus")
            await bob.sync()
            lan = app.state.buffer("#lan")
            await wait_until(pilot, lambda: any("walrus" in e.text for e in lan.entries))
            assert not app.can_search()
            sent = []
            original = app.send
            app.send = lambda m: sent.append(m) or original(m)  # type: ignore[method-assign]
            await pilot.press("ctrl+f")
            await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
            await _type(pilot, "WALRUS")
            await pilot.pause(SEARCH_DEBOUNCE + 0.2)
            screen = app.screen
            assert [h.text for h in screen.hits] == ["where is the walrus"]
            assert not any(m.command == "SEARCH" for m in sent)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
            log = app.screen.query_one(MessageLog)
            assert log.selected_entry() is not None
            assert log.selected_entry().text == "where is the walrus"


def test_session_files_search_answers_in_order() -> None:
    session = ClientSession("alice")
    session.search.configure(frozenset({Cap.SEARCH, Cap.BATCH}))
    sent = session.search.request("#lan", "two words") + session.search.request("#lan", "x")
    assert str(sent[0]) == r"SEARCH in=#lan;text=two\swords;limit=50"
    lines = [
        "BATCH +s1 soju.im/search",
        "@batch=s1;msgid=m1;time=2026-01-01T10:00:00.000Z :bob!b@h PRIVMSG #lan :two \x02words\x02",
        "BATCH -s1",
        ":srv FAIL SEARCH INVALID_PARAMS text :Nothing to search for",
    ]
    for line in lines:
        assert session.receive(parse(line.encode())) == []
    first, second = session.search.take("#LAN")
    assert first.text == "two words" and [(h.nick, h.text, h.msgid) for h in first.hits] == [
        ("bob", "two words", "m1")
    ]
    assert second == SearchAnswer("#lan", "x", error="Nothing to search for")
    assert session.state.buffer("#lan") is None  # neither became a line anywhere
    assert not any("search" in e.text.lower() for e in session.state.buffer("").entries)
    # No capability: nothing is asked.
    session.search.configure(frozenset({Cap.BATCH}))
    assert session.search.request("#lan", "words") == []
