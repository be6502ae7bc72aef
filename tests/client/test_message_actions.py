"""The real client, driven by Pilot against our real server: typing notices, picking a
message in the log, replies, reactions, deletions, copying and links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from client_helpers import log_text, run_client, scripted_users, wait_until

from chatroom.client.app import ChatApp
from chatroom.client.model import DELETED_TEXT, EntryKind
from chatroom.client.screens.chat import ChatScreen
from chatroom.client.screens.dialogs import COMMON_REACTIONS, ConfirmScreen, ReactScreen
from chatroom.client.scripted import ScriptedUser
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.log import MessageLog
from chatroom.client.widgets.panels import MemberList, ReplyBar, TypingLine
from chatroom.protocol import Cap, Message

# What the scripted people speak: enough to send and see client tags and deletions.
PEER_CAPS = frozenset({Cap.MESSAGE_TAGS, Cap.SERVER_TIME, Cap.MESSAGE_REDACTION})


@asynccontextmanager
async def tagged_users(server: object, *nicks: str) -> AsyncIterator[list[ScriptedUser]]:
    users = []
    try:
        for nick in nicks:
            user = ScriptedUser(server.host, server.port, nick, caps=PEER_CAPS)  # type: ignore[attr-defined]
            users.append(await user.connect())
        yield users
    finally:
        await asyncio.gather(*(u.quit() for u in users), return_exceptions=True)


def tagmsgs(user: ScriptedUser, tag: str, nick: str = "alice") -> list[str]:
    """The values of ``tag`` on the TAGMSGs ``user`` received from ``nick``."""
    return [
        m.tags[tag]
        for m in user.messages
        if m.command == "TAGMSG" and tag in m.tags and m.nick == nick
    ]


def said(user: ScriptedUser, text: str) -> Message | None:
    return next((m for m in user.messages if m.command == "PRIVMSG" and m.param(1) == text), None)


async def setup_room(app: ChatApp, pilot, bob: ScriptedUser) -> None:
    await wait_until(pilot, lambda: app.state.active == "#lan", what="#lan shown")
    await bob.join("#lan")
    await wait_until(pilot, lambda: "bob" in app.screen.query_one(MemberList).plain)


async def bob_says(app: ChatApp, pilot, bob: ScriptedUser, text: str, **tags: str) -> str:
    """bob says ``text`` in #lan (with client tags); its msgid once alice has it."""
    bob.send(Message.of("PRIVMSG", "#lan", text, tags=tags or None))
    buf = app.state.buffer("#lan")
    assert buf is not None
    await wait_until(pilot, lambda: any(e.text == text for e in buf.entries), what=text)
    entry = next(e for e in buf.entries if e.text == text)
    return entry.msgid


def log(app: ChatApp) -> MessageLog:
    return app.screen.query_one(MessageLog)


async def type_text(pilot, text: str) -> None:
    await pilot.press(*(" " if c == " " else c for c in text))


async def test_typing_is_shown_expires_and_is_sent_throttled(irc_server, tmp_path: Path) -> None:
    async with (
        tagged_users(irc_server, "bob", "carol") as (bob, carol),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await setup_room(app, pilot, bob)
        await carol.join("#lan")
        line = app.screen.query_one(TypingLine)
        app.state.typing_timeout = 0.6  # 6 s in use; the rule is the same
        bob.send(Message.of("TAGMSG", "#lan", tags={"+typing": "active"}))
        await wait_until(pilot, lambda: line.text == "bob is typing...", what="bob typing")
        carol.send(Message.of("TAGMSG", "#lan", tags={"+typing": "active"}))
        await wait_until(pilot, lambda: line.text == "bob and carol are typing...")
        carol.say("#lan", "done typing")  # her message ends her notice
        await wait_until(pilot, lambda: line.text == "bob is typing...")
        await wait_until(pilot, lambda: line.text == "", what="bob's notice expired")

        # Ours: one "active" however fast we type, again after the interval, "done" when
        # the input is cleared and when the line is sent. The notifier's clock is stepped
        # by hand: on a loaded machine typing three keys can take longer than any interval.
        notifier, now = app.session.typing_notifier, [0.0]
        notifier.clock = lambda: now[0]
        await type_text(pilot, "hel")
        await wait_until(pilot, lambda: tagmsgs(bob, "+typing") == ["active"])
        now[0] += notifier.interval - 0.1  # not yet
        await type_text(pilot, "l")
        now[0] += 0.1
        await type_text(pilot, "o")
        await wait_until(pilot, lambda: tagmsgs(bob, "+typing") == ["active", "active"])
        app.screen.query_one(ChatInput).value = ""
        await wait_until(pilot, lambda: tagmsgs(bob, "+typing")[-1:] == ["done"])
        await type_text(pilot, "hi all")
        await pilot.press("enter")
        await bob.wait_for(lambda m: m.command == "PRIVMSG" and m.param(1) == "hi all")
        assert tagmsgs(bob, "+typing") == ["active", "active", "done", "active", "done"]
        # A command is not typing.
        await type_text(pilot, "/help")
        await bob.sync()
        assert tagmsgs(bob, "+typing")[-1] == "done"


async def test_select_copy_reply_and_react(irc_server, tmp_path: Path) -> None:
    async with (
        tagged_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await setup_room(app, pilot, bob)
        first = await bob_says(app, pilot, bob, "first message")
        second = await bob_says(app, pilot, bob, "second one")
        assert first and second
        # Up in the empty input selects the newest message; Up/Down move; Escape leaves.
        await pilot.press("up")
        assert log(app).has_focus and log(app).selected_entry().msgid == second
        await pilot.press("up")
        assert log(app).selected_entry().msgid == first
        await pilot.press("c")
        assert app.clipboard == "first message"
        await pilot.press("down")
        assert log(app).selected_entry().msgid == second
        await pilot.press("escape")
        assert log(app).selected is None and app.screen.query_one(ChatInput).has_focus
        await pilot.press("up", "down")  # Down past the newest: back to the input too
        assert log(app).selected is None and app.screen.query_one(ChatInput).has_focus
        await pilot.press("up", "x")  # typing goes to the input: no key is dead
        chat_input = app.screen.query_one(ChatInput)
        assert log(app).selected is None and chat_input.has_focus and chat_input.value == "x"
        chat_input.value = ""

        # r: reply. The bar says to what; Escape cancels; the line sent carries the tags.
        await pilot.press("up", "up", "r")
        bar = app.screen.query_one(ReplyBar)
        assert bar.display and bar.text == "replying to bob: first message"
        await pilot.press("escape")
        assert not bar.display
        await pilot.press("up", "up", "r")
        await type_text(pilot, "agreed")
        await pilot.press("enter")
        reply = await bob.wait_for(lambda m: m.command == "PRIVMSG" and m.param(1) == "agreed")
        assert reply.tags["+reply"] == first and reply.tags["+draft/reply"] == first
        assert not bar.display
        await wait_until(pilot, lambda: "↪ bob: first message" in log_text(app), what="quote")
        # bob answers our reply: its quote is ours.
        buf = app.state.active_buffer
        await wait_until(pilot, lambda: buf.entries[-1].msgid and not buf.entries[-1].pending)
        ours = buf.entries[-1].msgid
        await bob_says(app, pilot, bob, "glad you agree", **{"+reply": ours})
        await wait_until(pilot, lambda: "↪ alice: agreed" in log_text(app))

        # e: react with the picker (arrow keys and Enter); the echo shows it, ours.
        await pilot.press("up", "up", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, ReactScreen))
        await pilot.press("right", "enter")
        picked = COMMON_REACTIONS[1]
        sent = await bob.wait_for(lambda m: m.tags.get("+draft/react") == picked)
        assert sent.tags["+draft/reply"] == ours and sent.command == "TAGMSG"
        await wait_until(pilot, lambda: f"{picked} 1" in log_text(app), what="our reaction")
        assert isinstance(app.screen, ChatScreen) and log(app).has_focus  # still selected
        # bob reacts the same twice (counts once) and another; ours stays highlighted.
        for emoji in ("👍", "👍", picked):
            bob.send(
                Message.of("TAGMSG", "#lan", tags={"+draft/react": emoji, "+draft/reply": ours})
            )
        await wait_until(pilot, lambda: f"{picked} 2  👍 1" in log_text(app), what="counts")
        entry = next(e for e in buf.entries if e.msgid == ours)
        assert [(r.emoji, r.count, r.mine) for r in entry.reactions] == [
            (picked, 2, True),
            ("👍", 1, False),
        ]
        # Typing one of one's own in the picker.
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ReactScreen))
        await pilot.press("o", "k", "enter")
        await bob.wait_for(lambda m: m.tags.get("+draft/react") == "ok")
        await pilot.press("escape")

        # /react typed from a selection: about the selected message.
        await pilot.press("up", "up", "up")
        assert log(app).selected_entry().msgid == second
        await type_text(pilot, "/react ")  # "/" leaves the selection, into the input
        app.screen.query_one(ChatInput).insert_text_at_cursor("😮")  # as a paste would
        await pilot.press("enter")
        sent = await bob.wait_for(lambda m: m.tags.get("+draft/react") == "😮")
        assert sent.tags["+draft/reply"] == second
        # With no selection, the newest message here (bob's reply to us).
        app.submit("/react 🎉")
        sent = await bob.wait_for(lambda m: m.tags.get("+draft/react") == "🎉")
        assert sent.tags["+draft/reply"] == buf.entries[-1].msgid
        await wait_until(pilot, lambda: "🎉 1" in log_text(app))


async def test_delete_with_confirmation(irc_server, tmp_path: Path) -> None:
    async with (
        tagged_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await setup_room(app, pilot, bob)
        buf = app.state.active_buffer
        app.submit("oops, wrong room")
        await wait_until(pilot, lambda: buf.entries[-1].msgid and not buf.entries[-1].pending)
        mine = buf.entries[-1]
        # d asks first; n keeps the message.
        await pilot.press("up", "d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        assert not buf.entries[-1].deleted
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        redact = await bob.wait_for(lambda m: m.command == "REDACT")
        assert redact.params[:2] == ("#lan", mine.msgid)
        await wait_until(pilot, lambda: DELETED_TEXT in log_text(app), what="deleted line")
        gone = next(e for e in buf.entries if e.seq == mine.seq)
        assert gone.deleted and gone.text == "" and gone.time == mine.time and gone.nick == "alice"
        # bob's message: alice is the room's operator (its first member), so she may.
        theirs = await bob_says(app, pilot, bob, "spam spam spam")
        await pilot.press("escape", "up", "d", "y")
        await wait_until(pilot, lambda: next(e for e in buf.entries if e.msgid == theirs).deleted)
        # Not an operator any more: bob's next message is not hers to delete.
        app.submit("/deop alice")
        await wait_until(pilot, lambda: not app.state.is_op(buf), what="deopped")
        await bob_says(app, pilot, bob, "mine, all mine")
        await pilot.press("escape", "up", "d")
        await wait_until(pilot, lambda: "only your own messages" in log_text(app))
        assert isinstance(app.screen, ChatScreen)
        # The server's refusal (an unknown msgid) is a clear error line in the window.
        await pilot.press("escape")
        app.submit("/quote REDACT #lan nosuchmsgid")
        await wait_until(pilot, lambda: "Could not delete the message" in log_text(app))
        assert buf.entries[-1].kind is EntryKind.ERROR


async def test_links_open_the_browser(
    irc_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    async with (
        tagged_users(irc_server, "bob") as (bob,),
        run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await setup_room(app, pilot, bob)
        url = "https://example.com/page?q=1"
        await bob_says(app, pilot, bob, f"[link=file:///x]see[/link] {url} ok")
        await wait_until(pilot, lambda: url in log_text(app))
        rows = log_text(app).splitlines()
        y = next(i for i, row in enumerate(rows) if url in row)
        assert "[link=file:///x]see[/link]" in rows[y]  # peer text is never markup
        # A click on the address (the log has one cell of padding on the left).
        x = rows[y].index(url) + 3 + log(app).styles.padding.left
        await pilot.click(MessageLog, offset=(x, y))
        await wait_until(pilot, lambda: opened, what="the browser opened")
        assert opened == [url]
        # Elsewhere on the line: nothing opens.
        await pilot.click(MessageLog, offset=(x + len(url) + 2, y))
        await pilot.pause(0.1)
        assert opened == [url]


async def test_reactions_and_replies_come_back_with_history(irc_server, tmp_path: Path) -> None:
    async with tagged_users(irc_server, "bob", "carol") as (bob, carol):
        await bob.join("#lan")
        await carol.join("#lan")
        bob.say("#lan", "lunch at noon?")
        said = await carol.wait_for(lambda m: m.command == "PRIVMSG")
        msgid = said.tags["msgid"]
        carol.send(Message.of("TAGMSG", "#lan", tags={"+draft/react": "🍕", "+draft/reply": msgid}))
        carol.send(Message.of("PRIVMSG", "#lan", "count me in", tags={"+reply": msgid}))
        await carol.sync()
        async with run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot):
            await wait_until(pilot, lambda: "count me in" in log_text(app), what="history")
            await wait_until(pilot, lambda: "🍕 1" in log_text(app), what="the reaction")
            assert "↪ bob: lunch at noon?" in log_text(app)


@pytest.mark.interop
async def test_ngircd_offers_none_of_it(
    ngircd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Message] = []
    original = ChatApp.send

    def send(app: ChatApp, message: Message) -> bool:
        sent.append(message)
        return original(app, message)

    monkeypatch.setattr(ChatApp, "send", send)
    async with (
        scripted_users(ngircd, "bob") as (bob,),
        run_client(ngircd, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await setup_room(app, pilot, bob)
        bob.say("#lan", "hello from ngircd")
        await wait_until(pilot, lambda: "hello from ngircd" in log_text(app))
        await type_text(pilot, "typing away")  # no message-tags: nobody is told
        app.screen.query_one(ChatInput).value = ""
        # Selecting and copying work; the rest says plainly why not.
        await pilot.press("up")
        assert log(app).selected_entry().text == "hello from ngircd"
        await pilot.press("c")
        assert app.clipboard == "hello from ngircd"
        for key, why in (
            ("r", "This server does not support replies"),
            ("e", "This server does not support reactions"),
            ("d", "This server does not support deleting messages"),
        ):
            await pilot.press(key)
            await wait_until(pilot, lambda w=why: w in log_text(app), what=why)
            assert isinstance(app.screen, ChatScreen) and log(app).selected is not None
        await pilot.press("escape")
        app.submit("/react 👍")
        await wait_until(pilot, lambda: log_text(app).count("does not support reactions") == 2)
        assert not app.screen.query_one(ReplyBar).display
        assert app.screen.query_one(TypingLine).text == ""
        assert not [m for m in sent if m.command in ("TAGMSG", "REDACT")]
