"""Multiline messages in the real client against our real server (draft/multiline):
Shift+Enter / Ctrl+J, a pasted block, the server's limits, and a plain client that
sees the lines one by one (Pilot-driven)."""

from __future__ import annotations

from pathlib import Path

from client_helpers import log_text, run_client, scripted_users, wait_until
from textual import events

from chatroom.client import multiline
from chatroom.client.model import EntryKind, HistoryState
from chatroom.client.screens.dialogs import ConfirmScreen
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.draft import DraftLines
from chatroom.protocol import Message


def test_limits_and_batch_lines() -> None:
    limits = multiline.limits_of("max-bytes=20,max-lines=3")
    out = multiline.batch_lines("#lan", ["one", "two"], limits)
    assert [m.command for m in out] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    ref = out[0].params[0][1:]
    assert out[0].params[1:] == ("draft/multiline", "#lan")
    assert all(m.tags == {"batch": ref} for m in out[1:3])
    folded = multiline.combine("bob!b@h", {"msgid": "x", "batch": "outer"}, out[1:3])
    assert folded == Message("PRIVMSG", ("#lan", "one\ntwo"), "bob!b@h", {"msgid": "x"})
    for lines in (["a" * 21], ["a", "b", "c", "d"]):
        try:
            multiline.batch_lines("#lan", lines, limits)
        except ValueError:
            continue
        raise AssertionError(f"{lines} went over the limits unnoticed")
    long = multiline.batch_lines("#lan", ["word " * 200], multiline.Limits(0))
    pieces = long[1:-1]
    assert len(pieces) > 1 and all(multiline.CONCAT in m.tags for m in pieces[1:])
    assert multiline.combine(None, {}, pieces).params[1] == "word " * 200


async def test_typed_and_pasted_multiline(server_factory, tmp_path: Path) -> None:
    server = server_factory(scram_iterations=4096)
    async with scripted_users(server, "carol") as (carol,):
        await carol.join("#lan")
        async with (
            run_client(server, tmp_path / "a", "alice", ("lan",)) as (alice, pilot),
            run_client(server, tmp_path / "b", "bob", ("lan",)) as (bob, bob_pilot),
        ):
            await wait_until(pilot, lambda: alice.state.active == "#lan")
            assert multiline.CAP in alice.server_caps()
            await wait_until(bob_pilot, lambda: bob.state.active == "#lan")
            lan_b = bob.state.buffer("#lan")
            await wait_until(bob_pilot, lambda: lan_b.history is HistoryState.COMPLETE)
            start = len(carol.messages)
            await pilot.press(*"first")
            await pilot.press("shift+enter")
            assert alice.screen.query_one(DraftLines).lines == ["first"]
            await pilot.press(*"second", "ctrl+j", *"third", "enter")
            assert alice.screen.query_one(ChatInput).draft_lines == []
            # The plain client (no multiline) gets the lines one by one.
            for text in ("first", "second", "third"):
                await carol.wait_for(
                    lambda m, t=text: m.command == "PRIVMSG" and m.param(1) == t, start=start
                )
            # The app with the cap shows one block: one entry, one prefix.
            block = "first\nsecond\nthird"
            await wait_until(
                bob_pilot, lambda: any(e.text == block for e in lan_b.entries), what="block"
            )
            lan_a = alice.state.buffer("#lan")
            await wait_until(
                pilot, lambda: any(e.text == block and not e.pending for e in lan_a.entries)
            )
            shown = log_text(bob).splitlines()
            row = next(i for i, r in enumerate(shown) if "first" in r)
            assert "alice" in shown[row] and "second" in shown[row + 1]
            assert "alice" not in shown[row + 1] and "third" in shown[row + 2]
            # A pasted block is one message too.
            alice.screen.query_one(ChatInput).post_message(events.Paste("pasted one\npasted two"))
            pasted = "pasted one\npasted two"
            await wait_until(bob_pilot, lambda: any(e.text == pasted for e in lan_b.entries))
            # Over the server's limits: refused here, nothing sent.
            too_many = "\n".join(f"line {i}" for i in range(45))
            alice.screen.query_one(ChatInput).post_message(events.Paste(too_many))
            await wait_until(pilot, lambda: isinstance(alice.screen, ConfirmScreen))
            await pilot.press("y")  # the paste guard asks first
            await wait_until(pilot, lambda: "Not sent" in log_text(alice), what="refusal")
            assert not any("line 0" in e.text for e in lan_a.entries if e.own)
        # History replays a multiline message as one block.
        async with run_client(server, tmp_path / "c", "dave", ("lan",)) as (dave, pilot):
            await wait_until(pilot, lambda: dave.state.buffer("#lan") is not None)
            lan_d = dave.state.buffer("#lan")
            await wait_until(pilot, lambda: lan_d.history is HistoryState.COMPLETE)
            texts = [e.text for e in lan_d.entries if e.kind is EntryKind.MESSAGE]
            assert block in texts and pasted in texts


async def test_multiline_falls_back_to_lines_against_ngircd(ngircd, tmp_path: Path) -> None:
    async with (
        scripted_users(ngircd, "bob") as (bob,),
        run_client(ngircd, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await bob.join("#lan")
        await wait_until(pilot, lambda: app.state.active == "#lan")
        assert multiline.CAP not in app.server_caps()
        start = len(bob.messages)
        await pilot.press(*"one", "shift+enter", *"two", "enter")
        for text in ("one", "two"):
            await bob.wait_for(
                lambda m, t=text: m.command == "PRIVMSG" and m.param(1) == t, start=start
            )
        await wait_until(pilot, lambda: "two" in log_text(app))
        lan = app.state.buffer("#lan")
        assert [e.text for e in lan.entries if e.own] == ["one", "two"]
        assert not any(
            e.kind is EntryKind.ERROR for b in app.state.buffers.values() for e in b.entries
        )
