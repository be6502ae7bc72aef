"""Presence in the real client: MONITOR for the people of private windows, and the dot
beside them in the PEOPLE list (online, away, offline) as they quit and come back;
against ngircd (no MONITOR) nothing is sent and no dot is drawn (Pilot)."""

from __future__ import annotations

from pathlib import Path

from client_helpers import run_client, scripted_users, wait_until

from chatroom.client.presence import Presence, Status
from chatroom.client.scripted import ScriptedUser
from chatroom.client.widgets.panels import RoomList
from chatroom.protocol import Message


def people(app) -> str:
    """The room list as text."""
    return app.screen.query_one(RoomList).render().plain


def dot(app, nick: str) -> str:
    """The mark before ``nick`` in the PEOPLE list ("" for none)."""
    for line in people(app).splitlines():
        words = line.split()
        if words and words[-1] == nick:
            return words[1] if len(words) == 3 else ""
    raise AssertionError(f"{nick} not listed:\n{people(app)}")


async def test_presence_dot_follows_quit_and_return(irc_server, tmp_path: Path) -> None:
    async with run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="join")
        presence = app.session.presence
        assert presence.limit  # ISUPPORT MONITOR
        sent: list[Message] = []
        original = app.send
        app.send = lambda m: sent.append(m) or original(m)  # type: ignore[method-assign]
        async with scripted_users(irc_server, "bob") as (bob,):
            await bob.join("#lan")
            app.submit("/query bob")
            await wait_until(pilot, lambda: app.state.buffer("bob") is not None)
            await wait_until(pilot, lambda: dot(app, "bob") == "●", what="online dot")
            assert any(str(m) == "MONITOR + bob" for m in sent)
            assert presence.status("bob", app.state.buffers) is Status.ONLINE
            # Away (away-notify, in the room we share): the dot turns yellow.
            bob.send(Message.of("AWAY", "lunch"))
            await wait_until(
                pilot,
                lambda: presence.status("bob", app.state.buffers) is Status.AWAY,
                what="away",
            )
            await wait_until(pilot, lambda: dot(app, "bob") == "●")
        # bob quit: offline.
        await wait_until(pilot, lambda: dot(app, "bob") == "○", what="offline dot")
        assert presence.status("bob", app.state.buffers) is Status.OFFLINE
        # The MONITOR replies are dots, not lines in the server window.
        assert not any("bob!" in e.text for e in app.state.buffer("").entries)
        bob = await ScriptedUser(irc_server.host, irc_server.port, "bob").connect()
        try:
            await wait_until(pilot, lambda: dot(app, "bob") == "●", what="back online")
        finally:
            await bob.quit()
        # Closing the window stops watching.
        app.submit("/close bob")
        await wait_until(pilot, lambda: any(str(m) == "MONITOR - bob" for m in sent))
        assert "bob" not in presence.monitored


async def test_no_monitor_on_ngircd(ngircd, tmp_path: Path) -> None:
    async with run_client(ngircd, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="join")
        sent: list[Message] = []
        original = app.send
        app.send = lambda m: sent.append(m) or original(m)  # type: ignore[method-assign]
        async with scripted_users(ngircd, "bob"):
            app.submit("/query bob")
            await wait_until(pilot, lambda: app.state.buffer("bob") is not None)
            await pilot.pause(0.2)
            assert dot(app, "bob") == ""
            assert not any(m.command == "MONITOR" for m in sent)
            assert app.session.presence.status("bob", app.state.buffers) is Status.UNKNOWN


def test_monitor_respects_the_limit() -> None:
    presence = Presence()
    assert presence.sync(["a"]) == []  # no MONITOR: nothing
    presence.line(Message.of("005", "me", "MONITOR=2", "are supported"))
    assert [str(m) for m in presence.sync(["a", "b", "c"])] == ["MONITOR + a,b"]
    assert [str(m) for m in presence.sync(["b", "c"])] == ["MONITOR - a", "MONITOR + c"]
    presence.line(Message.of("730", "me", "b!u@h,c!u@h"))
    assert presence.status("B", []) is Status.ONLINE
    presence.line(Message.of("731", "me", "c"))
    assert presence.status("c", []) is Status.OFFLINE
    assert presence.status("zed", []) is Status.UNKNOWN
