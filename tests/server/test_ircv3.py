"""IRCv3 over real sockets, where the server's threads matter: playback on JOIN (which
waits until what was said is committed by the store thread) and history across
restarts, and export once the server has stopped.

Everything else of IRCv3 (capability negotiation, tags, echo, labels, batches,
away-notify, multi-prefix, setname, CHATHISTORY) is tested without sockets in
test_session_ircv3.py. Expectations come from the IRCv3 specifications and, where a
spec leaves the choice, from Ergo.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable

import pytest

from chatroom.cli import server_main
from chatroom.protocol import Cap, Message
from tests.conftest import read_until

TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
HIST = (Cap.BATCH, Cap.SERVER_TIME, Cap.MESSAGE_TAGS, Cap.DRAFT_CHATHISTORY)
_tokens = itertools.count()


# --- helpers ------------------------------------------------------------------------------


def sync(c) -> list[Message]:
    """What the server sent ``c`` before answering a PING sent now (PONG excluded).

    Every line for a client leaves in posting order, so anything relayed to ``c``
    before this call is in the result."""
    token = f"sync{next(_tokens)}"
    c.send(f"PING :{token}")
    got = read_until(c, lambda m: m.command == "PONG" and m.params[-1] == token)
    return got[:-1]


def cap_ls(c) -> set[str]:
    """Send CAP LS 302 and gather the offered caps (over several lines if need be)."""
    c.send("CAP LS 302")
    offered: set[str] = set()
    while True:
        line = c.expect("CAP", where=lambda m: m.params[1] == "LS")
        offered.update(line.params[-1].split())
        if line.params[2] != "*":
            return offered


def cap_client(connect, fx, nick: str, caps: Iterable[str] = ()) -> object:
    """A client registered through CAP negotiation with ``caps`` acknowledged."""
    c = connect(to=fx)
    c.nick = nick
    cap_ls(c)
    caps = " ".join(caps)
    if caps:
        c.send(f"CAP REQ :{caps}")
        reply = c.expect("CAP", where=lambda m: m.params[1] in ("ACK", "NAK"))
        assert reply.params[1:] == ("ACK", caps), reply
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick} test")
    c.send("CAP END")
    c.expect("001")
    c.expect("376")
    return c


def says(text: str) -> Callable[[Message], bool]:
    return lambda m: m.command in ("PRIVMSG", "NOTICE") and m.params[-1] == text


def texts(lines: Iterable[Message]) -> list[str]:
    return [m.params[-1] for m in lines if m.command in ("PRIVMSG", "NOTICE")]


def chathistory(c, *args: str) -> list[Message]:
    """Send CHATHISTORY and return the batch (start, lines, end) or the FAIL line."""
    c.send("CHATHISTORY " + " ".join(args))
    first = read_until(
        c,
        lambda m: (m.command == "BATCH" and m.params[0].startswith("+")) or m.command == "FAIL",
    )[-1]
    if first.command == "FAIL":
        return [first]
    ref = first.params[0][1:]
    return [first, *read_until(c, lambda m: m.command == "BATCH" and m.params[0] == "-" + ref)]


def history_texts(batch: list[Message]) -> list[str]:
    start, *lines, _end = batch
    assert start.params[1] == "chathistory", start
    ref = start.params[0][1:]
    assert all(m.tags.get("batch") == ref for m in lines), lines
    return texts(lines)


def wait_delivered(watcher, *wanted: str) -> list[Message]:
    """Block until ``watcher`` has seen each text (so history has stored them)."""
    got = []
    for text in wanted:
        got.append(watcher.expect("PRIVMSG", where=lambda m, t=text: m.params[-1] == t))
    return got


@pytest.fixture
def fx(server_factory):
    """A server with history in memory and no flood control (tests send in bursts)."""
    return server_factory(flood_limit=False)


def _room_with_history(fx, connect, n: int, room: str = "#lan") -> tuple[object, list[Message]]:
    """A draft/chathistory reader in ``room`` and the ``n`` messages it saw live."""
    reader = cap_client(connect, fx, "reader", HIST)
    reader.join(room)
    talker = connect("talker", to=fx)
    talker.join(room)
    for i in range(n):
        talker.send(f"PRIVMSG {room} :m{i}")
        time.sleep(0.003)  # mostly distinct milliseconds; tests never rely on it
    return reader, wait_delivered(reader, *(f"m{i}" for i in range(n)))


# --- playback on JOIN ---------------------------------------------------------------------------


def _talk(fx, connect, room: str = "#lan") -> None:
    talker = connect("talker", to=fx)
    talker.join(room)
    talker.send(f"PRIVMSG {room} :line one")
    talker.send(f"PRIVMSG {room} :\x01ACTION waves\x01")
    talker.send(f"NOTICE {room} :a notice")
    talker.send(f"PRIVMSG {room} :line four")
    talker.send(f"PRIVMSG {room} :line five")
    sync(talker)  # the store commits before anyone hears of it; JOIN waits for commit


def test_plain_client_gets_marked_playback_on_join(server_factory, connect):
    fx = server_factory(flood_limit=False, playback_lines=4)
    _talk(fx, connect)
    plain = connect("plain", to=fx)
    plain.join("#lan")
    got = [m for m in sync(plain) if m.command in ("PRIVMSG", "NOTICE", "BATCH")]
    assert [m.command for m in got] == ["PRIVMSG", "NOTICE", "PRIVMSG", "PRIVMSG"]
    assert all(m.tags == {} and m.nick == "talker" and m.params[0] == "#lan" for m in got)
    mark = r"\[history \d{4}-\d\d-\d\d \d\d:\d\d\] "
    action, notice, four, five = (m.params[1] for m in got)
    assert re.fullmatch("\x01ACTION " + mark + "waves\x01", action), action  # still a /me
    assert re.fullmatch(mark + "a notice", notice)
    assert re.fullmatch(mark + "line four", four) and re.fullmatch(mark + "line five", five)


def test_server_time_batch_client_gets_a_chathistory_batch_on_join(server_factory, connect):
    fx = server_factory(flood_limit=False, playback_lines=3)
    _talk(fx, connect)
    c = cap_client(connect, fx, "timed", [Cap.SERVER_TIME, Cap.BATCH])
    c.join("#lan")
    start, *lines, end = read_until(c, lambda m: m.command == "BATCH" and m.params[0][0] == "-")
    assert start.params[1:] == ("chathistory", "#lan")
    ref = start.params[0][1:]
    assert texts(lines) == ["a notice", "line four", "line five"]  # text untouched
    for m in lines:
        assert set(m.tags) == {"time", "batch"} and m.tags["batch"] == ref
        assert TIME_RE.match(m.tags["time"])
    assert end.params == ("-" + ref,)


def test_chathistory_client_gets_no_automatic_playback(fx, connect):
    _talk(fx, connect)
    c = cap_client(connect, fx, "modern", HIST)
    c.join("#lan")
    assert not any(m.command in ("PRIVMSG", "NOTICE", "BATCH") for m in sync(c))
    assert history_texts(chathistory(c, "LATEST", "#lan", "*", "2")) == ["line four", "line five"]


def test_no_playback_when_playback_lines_is_zero(server_factory, connect):
    fx = server_factory(flood_limit=False, playback_lines=0)
    _talk(fx, connect)
    plain = connect("plain", to=fx)
    plain.join("#lan")
    assert not any(m.command in ("PRIVMSG", "NOTICE") for m in sync(plain))


# --- persistence ------------------------------------------------------------------------------


def test_history_survives_a_restart_and_ids_keep_increasing(server_factory, connect, tmp_path):
    fx = server_factory(flood_limit=False, db=str(tmp_path / "h.db"))
    reader, before = _room_with_history(fx, connect, 3)
    fx.restart()
    assert reader.wait_closed()
    again = cap_client(connect, fx, "again", HIST)
    again.join("#lan")
    batch = chathistory(again, "LATEST", "#lan", "*", "10")
    assert history_texts(batch) == ["m0", "m1", "m2"]
    assert [m.tags["msgid"] for m in batch[1:-1]] == [m.tags["msgid"] for m in before]
    talker = connect("talker2", to=fx)
    talker.join("#lan")
    talker.send("PRIVMSG #lan :after restart")
    after = again.expect("PRIVMSG", where=says("after restart"))
    assert after.tags["msgid"] not in {m.tags["msgid"] for m in before}
    batch = chathistory(again, "LATEST", "#lan", "*", "10")
    assert history_texts(batch) == ["m0", "m1", "m2", "after restart"]  # new id sorts last
    old = before[-1].tags["msgid"]
    assert history_texts(chathistory(again, "AFTER", "#lan", f"msgid={old}", "10")) == [
        "after restart"
    ]


def test_room_topic_modes_and_key_come_back_after_restart(server_factory, connect, tmp_path):
    fx = server_factory(flood_limit=False, db=str(tmp_path / "h.db"))
    alice = connect("alice", to=fx)
    alice.join("#keep")
    alice.send("TOPIC #keep :kept topic")
    alice.expect("TOPIC")
    alice.send("MODE #keep +ks secret")
    alice.expect("MODE")
    fx.restart()
    bob = connect("bob", to=fx)
    bob.send("JOIN #keep")
    assert bob.expect("475").params[1] == "#keep"
    bob.send("JOIN #keep wrong")
    bob.expect("475")
    bob.send("JOIN #keep secret")
    assert bob.expect("332").params[1:] == ("#keep", "kept topic")
    bob.expect("366")
    bob.send("MODE #keep")
    modes = bob.expect("324")
    assert set(modes.params[2].lstrip("+")) == set("knst") and "secret" in modes.params[3:]
    # the room is secret again: outsiders do not see it
    carol = connect("carol", to=fx)
    carol.send("LIST")
    carol.expect("321")
    assert not any(m.command == "322" for m in read_until(carol, lambda m: m.command == "323"))


def test_export_after_the_server_stops(server_factory, connect, tmp_path, capsys):
    path = tmp_path / "h.db"
    fx = server_factory(flood_limit=False, db=str(path))
    alice = connect("alice", to=fx)
    alice.join("#LAN")
    alice.send("PRIVMSG #lan :hello")
    alice.send("PRIVMSG #lan :\x01ACTION waves\x01")
    alice.send("NOTICE #lan :heads up")
    sync(alice)
    fx.stop()
    assert server_main(["export", "lan", "--db", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line[20:] for line in out] == ["<alice> hello", "* alice waves", "-alice- heads up"]
    assert server_main(["export", "#lan", "--db", str(path), "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == ["hello", "\x01ACTION waves\x01", "heads up"]
    assert {r["target"] for r in records} == {"#LAN"}
