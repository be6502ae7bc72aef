"""Read markers in the real client against our real server (draft/read-marker): reading
a room on one client of an account clears its unread count on the other; and the
pacing of MARKREAD (Pilot-driven, and a socketless table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from client_helpers import run_client, scripted_users, wait_until

from chatroom.client import readmarkers
from chatroom.client.model import Buffer, BufferKind, Entry, EntryKind, HistoryState
from chatroom.client.readmarkers import ReadMarkers

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _room(*offsets: int) -> Buffer:
    buf = Buffer("#lan", BufferKind.CHANNEL)
    for seq, s in enumerate(offsets, 1):
        buf.entries.append(
            Entry(T0 + timedelta(seconds=s), EntryKind.MESSAGE, "bob", "hi", seq=seq)
        )
    return buf


def test_paced_and_never_backwards() -> None:
    markers = ReadMarkers(interval=2.0)
    buf = _room(1, 2)
    [first] = markers.read(buf, now=10.0)
    assert first.params == ("#lan", "timestamp=2026-01-01T00:00:02.000Z")
    buf.entries += _room(0, 0, 3).entries[2:]
    assert markers.read(buf, now=11.0) == []  # held back: too soon
    [held] = markers.due(now=12.0)
    assert held.params[1] == "timestamp=2026-01-01T00:00:03.000Z"
    buf.read_marker = T0 + timedelta(seconds=3)  # the server's answer
    assert markers.read(buf, now=20.0) == []  # nothing newer


def test_marker_sets_unread_and_divider() -> None:
    buf = _room(1, 2, 3)
    buf.unread, buf.divider_seq = 3, 1
    assert readmarkers.apply(buf, T0 + timedelta(seconds=2), active=False)
    assert (buf.unread, buf.divider_seq) == (1, 3)
    assert not readmarkers.apply(buf, T0 + timedelta(seconds=1), active=False)  # backwards
    assert readmarkers.apply(buf, T0 + timedelta(seconds=3), active=False)
    assert (buf.unread, buf.divider_seq) == (0, None)


async def test_reading_on_one_client_clears_the_other(server_factory, tmp_path: Path) -> None:
    server = server_factory(scram_iterations=4096)
    login = {"account": "alice", "account_password": "alicepass1"}
    async with (
        scripted_users(server, "carol") as (carol,),
        run_client(server, tmp_path / "b", "alice", ("games", "lan"), register=True, **login) as (
            desk,
            desk_pilot,
        ),
    ):
        await carol.join("#lan")
        await wait_until(desk_pilot, lambda: desk.state.active == "#games")
        lan = desk.state.buffer("#lan")
        await wait_until(desk_pilot, lambda: lan is not None and lan.joined)
        assert readmarkers.CAP in desk.server_caps()
        carol.say("#lan", "lunch?")
        await wait_until(desk_pilot, lambda: lan.unread == 1, what="unread on the desk")
        assert lan.divider_seq is not None
        # The laptop, same account, shows #lan to its end: read there, read here.
        async with run_client(server, tmp_path / "a", "alice2", ("lan",), **login) as (
            laptop,
            pilot,
        ):
            await wait_until(pilot, lambda: laptop.state.active == "#lan")
            shown = laptop.state.buffer("#lan")
            await wait_until(pilot, lambda: shown.history is HistoryState.COMPLETE)
            await wait_until(pilot, lambda: any(e.text == "lunch?" for e in shown.entries))
            await wait_until(desk_pilot, lambda: lan.unread == 0, what="cleared by MARKREAD")
            assert lan.read_marker is not None and lan.divider_seq is None
            assert desk.state.active == "#games"
            # A line after the marker counts again.
            carol.say("#lan", "anyone?")
            await wait_until(desk_pilot, lambda: any(e.text == "anyone?" for e in lan.entries))
            await wait_until(desk_pilot, lambda: lan.unread == 0, what="the laptop read it too")
