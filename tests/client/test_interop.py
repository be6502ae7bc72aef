"""The same client against ngircd: our expectations are the RFC's, not our server's."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_helpers import log_text, run_client, scripted_users, wait_until

from chatroom.client.app import ChatApp
from chatroom.client.model import EntryKind, HistoryState
from chatroom.client.widgets.log import HEADER_TEXT
from chatroom.client.widgets.panels import MemberList
from chatroom.protocol import Message

pytestmark = pytest.mark.interop


async def test_chat_against_ngircd(ngircd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    original = ChatApp.send

    def send(app: ChatApp, message: Message) -> bool:
        sent.append(message.command)
        return original(app, message)

    monkeypatch.setattr(ChatApp, "send", send)
    async with (
        scripted_users(ngircd, "bob") as (bob,),
        run_client(ngircd, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="joined #lan")
        await bob.join("#lan")
        await wait_until(pilot, lambda: "bob" in app.screen.query_one(MemberList).plain)
        assert "@alice" in app.screen.query_one(MemberList).plain
        bob.say("#lan", "hello from \x02ngircd\x02")
        await wait_until(pilot, lambda: "hello from ngircd" in log_text(app))
        await pilot.press(*"hi bob")
        await pilot.press("enter")
        await bob.wait_for(lambda m: m.command == "PRIVMSG" and m.param(1) == "hi bob")
        # No echo-message here: our line is shown locally, final, once.
        assert not app.state.echo_message
        own = [e for e in app.state.active_buffer.entries if e.own]
        assert [(e.kind, e.text, e.pending) for e in own] == [(EntryKind.MESSAGE, "hi bob", False)]
        bob.action("#lan", "waves")
        await wait_until(pilot, lambda: "bob waves" in log_text(app))
        app.submit("/topic LAN party tonight")
        await bob.wait_for(lambda m: m.command == "TOPIC")
        await wait_until(pilot, lambda: app.state.active_buffer.topic == "LAN party tonight")
        bob.send(Message.of("NICK", "robert"))
        await wait_until(pilot, lambda: "bob is now known as robert" in log_text(app))
        await wait_until(pilot, lambda: "robert" in app.screen.query_one(MemberList).plain)
        await wait_until(pilot, lambda: app.lag is not None, what="lag measured")
        # No chathistory capability: never a CHATHISTORY, and no history header.
        assert "CHATHISTORY" not in sent
        assert app.state.active_buffer.history is HistoryState.NONE
        assert not any(text in log_text(app) for text in HEADER_TEXT.values())


async def test_wrong_password_against_ngircd(ngircd_factory, tmp_path: Path) -> None:
    server = ngircd_factory(password="s3cret")
    async with run_client(server, tmp_path, "alice", password="wrong") as (app, pilot):
        await wait_until(pilot, lambda: app.conn_state == "closed", what="gave up")
        await wait_until(pilot, lambda: "wrong password" in log_text(app))
    async with run_client(server, tmp_path, "alice", ("lan",), password="s3cret") as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan")


async def test_reconnect_after_ngircd_restart(ngircd, tmp_path: Path) -> None:
    async with run_client(ngircd, tmp_path, "alice", ("lan",), backoff_base=0.1) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        ngircd.restart()
        await wait_until(pilot, lambda: app.conn_state == "waiting", what="drop noticed")
        await wait_until(pilot, lambda: "alice" in app.state.buffer("#lan").members)
