"""IRCv3 over real sockets: capability negotiation, tags, echo, labels, batches,
away-notify, multi-prefix, CHATHISTORY, playback on JOIN and history across restarts.

Expectations come from the IRCv3 specifications (ircv3/ircv3-specifications:
message-tags, server-time, echo-message, batch, labeled-response, away-notify,
multi-prefix, chathistory) and, where a spec leaves the choice, from Ergo.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable

import pytest

from chatroom.cli import server_main
from chatroom.protocol import Message, parse

WAIT = 5.0  # seconds; generous, as in conftest: only a broken server waits this long
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
ALL_CAPS = (
    "away-notify",
    "batch",
    "echo-message",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "server-time",
)
_tokens = itertools.count()


# --- helpers ------------------------------------------------------------------------------


def read_until(c, done: Callable[[Message], bool], timeout: float = WAIT) -> list[Message]:
    """Every line up to and including the first one ``done`` accepts, in arrival order."""
    deadline = time.monotonic() + timeout
    got: list[Message] = []
    while True:
        while c.lines:
            msg = parse(c.lines.popleft())
            got.append(msg)
            if done(msg):
                return got
        if not c._fill(deadline):
            tail = [str(m) for m in got[-15:]]
            raise AssertionError(f"{c.nick}: expected line never came; got {tail!r}")


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


HIST = ("batch", "server-time", "message-tags", "draft/chathistory")


# --- capability negotiation ------------------------------------------------------------------


def test_cap_ls_302_offers_every_cap_and_chathistory_only_with_history(server_factory, connect):
    with_history = server_factory()
    c = connect(to=with_history)
    assert cap_ls(c) == {*ALL_CAPS, "draft/chathistory"}
    without = server_factory(history=False)
    d = connect(to=without)
    assert cap_ls(d) == set(ALL_CAPS)
    d.send("NICK dee")
    d.send("USER dee 0 * :Dee")
    d.send("CAP END")
    isupport = " ".join(" ".join(m.params) for m in read_until(d, lambda m: m.command == "376"))
    assert "CHATHISTORY=" not in isupport
    d.send("CHATHISTORY LATEST #lan * 10")
    assert d.expect("421").params[1] == "CHATHISTORY"


def test_registration_waits_for_cap_end(fx, connect):
    c = connect(to=fx)
    c.nick = "alice"
    cap_ls(c)
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice")
    assert not any(m.command == "001" for m in sync(c)), "registered during CAP negotiation"
    c.send("CAP END")
    assert c.expect("001").params[0] == "alice"


def test_cap_req_is_all_or_nothing_and_minus_removes(fx, connect):
    c = cap_client(connect, fx, "alice")
    c.send("CAP REQ :server-time no-such-cap")
    nak = c.expect("CAP", where=lambda m: m.params[1] in ("ACK", "NAK"))
    assert nak.params[1:] == ("NAK", "server-time no-such-cap")
    c.send("CAP LIST")
    assert c.expect("CAP", where=lambda m: m.params[1] == "LIST").params[-1] == ""
    c.send("CAP REQ :server-time echo-message")
    assert c.expect("CAP", where=lambda m: m.params[1] == "ACK").params[-1] == (
        "server-time echo-message"
    )
    c.send("CAP LIST")
    listed = c.expect("CAP", where=lambda m: m.params[1] == "LIST").params[-1].split()
    assert sorted(listed) == ["echo-message", "server-time"]
    c.join("#lan")
    c.send("PRIVMSG #lan :echoed")
    assert c.expect("PRIVMSG", where=says("echoed")).tags.get("time")
    c.send("CAP REQ :-echo-message")
    assert c.expect("CAP", where=lambda m: m.params[1] == "ACK").params[-1] == "-echo-message"
    c.send("CAP LIST")
    assert c.expect("CAP", where=lambda m: m.params[1] == "LIST").params[-1] == "server-time"
    c.send("PRIVMSG #lan :not echoed")
    assert "not echoed" not in texts(sync(c))


# --- server-time, msgid, message-tags ---------------------------------------------------------


def test_tags_on_relayed_lines_follow_each_recipients_caps(fx, connect):
    plain = connect("plain", to=fx)
    timed = cap_client(connect, fx, "timed", ["server-time"])
    tagged = cap_client(connect, fx, "tagged", ["message-tags"])
    for c in (plain, timed, tagged):
        c.join("#lan")
    sender = connect("sender", to=fx)
    sender.join("#lan")
    # JOIN is stamped too
    join = timed.expect("JOIN", where=lambda m: m.nick == "sender")
    assert set(join.tags) == {"time"} and TIME_RE.match(join.tags["time"])
    before = time.time()
    sender.send("PRIVMSG #lan :hello")
    got_plain = plain.expect("PRIVMSG", where=says("hello"))
    got_timed = timed.expect("PRIVMSG", where=says("hello"))
    got_tagged = tagged.expect("PRIVMSG", where=says("hello"))
    assert got_plain.tags == {}
    assert set(got_timed.tags) == {"time"}
    assert set(got_tagged.tags) == {"time", "msgid"}
    assert got_timed.tags["time"] == got_tagged.tags["time"]
    stamp = got_timed.tags["time"]
    assert TIME_RE.match(stamp), stamp
    when = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 2 <= when <= time.time() + 2, stamp  # UTC, close to now
    sender.send("PRIVMSG #lan :again")
    again = tagged.expect("PRIVMSG", where=says("again"))
    assert again.tags["msgid"] != got_tagged.tags["msgid"]
    sender.send("PART #lan :bye")
    assert set(timed.expect("PART").tags) == {"time"}
    assert plain.expect("PART").tags == {}


def test_client_only_tags_reach_message_tags_clients_only(fx, connect):
    sender = cap_client(connect, fx, "sender", ["message-tags"])
    tagged = cap_client(connect, fx, "tagged", ["message-tags"])
    timed = cap_client(connect, fx, "timed", ["server-time"])
    plain = connect("plain", to=fx)
    for c in (sender, tagged, timed, plain):
        c.join("#lan")
    value = r"raw+:=,escaped\:\s\\"  # message-tags example: '; \' escaped on the wire
    sender.send(f"@+example={value};+flag;unprefixed=dropped PRIVMSG #lan :tagged text")
    got = tagged.expect("PRIVMSG", where=says("tagged text"))
    assert got.tags["+example"] == "raw+:=,escaped; \\"
    assert "+flag" in got.tags
    assert "unprefixed" not in got.tags  # tags without '+' are never relayed
    assert set(timed.expect("PRIVMSG", where=says("tagged text")).tags) == {"time"}
    assert plain.expect("PRIVMSG", where=says("tagged text")).tags == {}


def test_tagmsg_reaches_only_message_tags_clients(fx, connect):
    sender = cap_client(connect, fx, "sender", ["message-tags", "echo-message"])
    tagged = cap_client(connect, fx, "tagged", ["message-tags"])
    timed = cap_client(connect, fx, "timed", ["server-time"])
    plain = connect("plain", to=fx)
    for c in (sender, tagged, timed, plain):
        c.join("#lan")
    sender.send("@+typing=active TAGMSG #lan")
    got = tagged.expect("TAGMSG")
    assert got.params == ("#lan",) and got.tags["+typing"] == "active"
    assert got.nick == "sender" and got.tags["msgid"]
    echo = sender.expect("TAGMSG")
    assert echo.tags["msgid"] == got.tags["msgid"] and echo.tags["+typing"] == "active"
    for c in (timed, plain):
        assert not any(m.command == "TAGMSG" for m in sync(c)), c.nick
    # a TAGMSG is not a chat line: it does not go into history
    sender.send("CAP REQ :batch draft/chathistory")
    sender.expect("CAP", where=lambda m: m.params[1] == "ACK")
    batch = chathistory(sender, "LATEST", "#lan", "*", "10")
    assert [m.command for m in batch] == ["BATCH", "BATCH"]


def test_client_tag_data_over_4094_bytes_is_refused_with_417(fx, connect):
    sender = cap_client(connect, fx, "sender", ["message-tags"])
    tagged = cap_client(connect, fx, "tagged", ["message-tags"])
    sender.join("#lan")
    tagged.join("#lan")
    # tag data (between '@' and the space) of exactly 4094 bytes: allowed
    at_limit = "+a=" + "x" * (4094 - 3)
    sender.send(f"@{at_limit} PRIVMSG #lan :at the limit")
    assert tagged.expect("PRIVMSG", where=says("at the limit")).tags["+a"] == "x" * 4091
    # one byte more: 417, nothing relayed
    sender.send(f"@{at_limit}x PRIVMSG #lan :over the limit")
    assert sender.expect("417").params[-1] == "Input line was too long"
    # the limit counts bytes: 2100 'é' are 4200 bytes though only 2100 characters
    sender.send("@+b=" + "é" * 2100 + " PRIVMSG #lan :multibyte over")
    sender.expect("417")
    # and it counts every tag the client sent, prefixed or not
    sender.send(f"@label=x;{at_limit} PRIVMSG #lan :with label over")
    sender.expect("417")
    sender.send("PRIVMSG #lan :after")
    seen = texts(read_until(tagged, says("after")))
    assert seen == ["after"], seen


# --- echo-message ----------------------------------------------------------------------------


def test_echo_message_returns_privmsg_and_notice_with_the_recipients_msgid(fx, connect):
    alice = cap_client(connect, fx, "alice", ["echo-message", "message-tags"])
    bob = cap_client(connect, fx, "bob", ["message-tags"])
    alice.join("#lan")
    bob.join("#lan")
    for command in ("PRIVMSG", "NOTICE"):
        alice.send(f"{command} #lan :{command} to room")
        echo = alice.expect(command, where=says(f"{command} to room"))
        got = bob.expect(command, where=says(f"{command} to room"))
        assert echo.nick == "alice" and echo.params == got.params
        assert echo.tags["msgid"] == got.tags["msgid"]
        assert echo.tags["time"] == got.tags["time"]
    alice.send("PRIVMSG bob :direct")
    echo = alice.expect("PRIVMSG", where=says("direct"))
    got = bob.expect("PRIVMSG", where=says("direct"))
    assert echo.params == ("bob", "direct") and echo.tags["msgid"] == got.tags["msgid"]
    # without echo-message the sender hears nothing back
    bob.send("PRIVMSG #lan :no echo for bob")
    alice.expect("PRIVMSG", where=says("no echo for bob"))
    assert "no echo for bob" not in texts(sync(bob))


def test_message_to_yourself_is_delivered_and_only_the_echo_is_labeled(fx, connect):
    plain = connect("plain", to=fx)
    plain.send("PRIVMSG plain :note to self")  # RFC 2812: a nick receives what is sent to it
    got = plain.expect("PRIVMSG", where=says("note to self"))
    assert got.nick == "plain" and got.params[0] == "plain"
    # labeled-response: "When a client sends a message to itself, the server MUST NOT
    # include the label tag, except for any acknowledgment sent with echo-message."
    me = cap_client(
        connect, fx, "me", ["echo-message", "labeled-response", "batch", "message-tags"]
    )
    me.send("@label=L1 PRIVMSG me :hi me")
    copies = [m for m in sync(me) if says("hi me")(m)]
    assert len(copies) == 2, copies
    assert sorted(m.tags.get("label", "") for m in copies) == ["", "L1"]
    assert copies[0].tags["msgid"] == copies[1].tags["msgid"]


# --- labeled-response ------------------------------------------------------------------------

LABELED = ["labeled-response", "batch", "message-tags"]


def test_single_reply_carries_the_label(fx, connect):
    c = cap_client(connect, fx, "alice", LABELED)
    c.send("@label=one PING :token")
    pong = c.expect("PONG")
    assert pong.tags == {"label": "one"} and pong.params[-1] == "token"
    c.send("@label=err PRIVMSG nobody :hello")
    assert c.expect("401").tags["label"] == "err"


def test_multi_line_reply_is_a_labeled_response_batch(fx, connect):
    c = cap_client(connect, fx, "alice", LABELED)
    connect("bob", to=fx)
    c.send("@label=who WHOIS bob")
    lines = read_until(c, lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    start, *body, end = lines
    assert start.command == "BATCH" and start.params[1] == "labeled-response"
    assert start.tags == {"label": "who"}
    ref = start.params[0][1:]
    assert body[0].command == "311" and body[-1].command == "318"
    assert all(m.tags == {"batch": ref} for m in body), body
    assert end.params == ("-" + ref,) and "label" not in end.tags


def test_command_with_no_reply_gets_a_labeled_ack(fx, connect):
    c = cap_client(connect, fx, "alice", LABELED)
    c.send("@label=quiet PONG :x")
    ack = c.expect("ACK")
    assert ack.tags == {"label": "quiet"} and ack.params == ()
    c.join("#lan")
    c.send("@label=said PRIVMSG #lan :nobody echoes this")  # no echo-message: no reply
    assert c.expect("ACK").tags == {"label": "said"}


def test_labeled_message_with_echo_labels_the_echo(fx, connect):
    c = cap_client(connect, fx, "alice", [*LABELED, "echo-message"])
    bob = cap_client(connect, fx, "bob", ["message-tags"])
    c.join("#lan")
    bob.join("#lan")
    c.send("@label=e1 PRIVMSG #lan :labeled echo")
    echo = c.expect("PRIVMSG", where=says("labeled echo"))
    assert echo.tags["label"] == "e1" and echo.tags["msgid"]
    assert "label" not in bob.expect("PRIVMSG", where=says("labeled echo")).tags


def test_labeled_join_is_one_batch_in_order(fx, connect):
    c = cap_client(connect, fx, "alice", LABELED)
    c.send("@label=j JOIN #lan")  # nothing said here yet: no (empty) playback batch
    start, *body, end = read_until(c, lambda m: m.command == "BATCH" and m.params[0][0] == "-")
    assert start.tags["label"] == "j" and start.params[1] == "labeled-response"
    assert [m.command for m in body] == ["JOIN", "353", "366"]
    assert end.params[0] == "-" + start.params[0][1:] and "batch" not in end.tags
    # with history to replay, the playback batch nests inside the labeled one (bob
    # stays: a room that empties is gone, its history with it)
    bob = connect("bob", to=fx)
    bob.join("#lan")
    c.send("PRIVMSG #lan :said before")
    c.send("PART #lan")
    c.expect("PART")
    c.send("@label=k JOIN #lan")
    start, *body, end = read_until(
        c, lambda m: m.command == "BATCH" and "batch" not in m.tags and m.params[0][0] == "-"
    )
    outer = start.params[0][1:]
    assert start.tags["label"] == "k"
    assert [m.command for m in body] == ["JOIN", "353", "366", "BATCH", "PRIVMSG", "BATCH"]
    inner = body[3].params[0][1:]
    assert body[3].params[1:] == ("chathistory", "#lan") and body[3].tags["batch"] == outer
    assert body[4].tags["batch"] == inner and body[4].params[-1] == "said before"
    assert end.params == ("-" + outer,)


def test_labeled_chathistory_nests_its_batch_in_the_labeled_one(fx, connect):
    c = cap_client(connect, fx, "alice", [*LABELED, "server-time", "draft/chathistory"])
    c.join("#lan")
    bob = connect("bob", to=fx)
    bob.join("#lan")
    bob.send("PRIVMSG #lan :one")
    bob.send("PRIVMSG #lan :two")
    wait_delivered(c, "one", "two")
    c.send("@label=h CHATHISTORY LATEST #lan * 10")
    lines = read_until(
        c,
        lambda m: (
            m.command == "BATCH"
            and "label" not in m.tags
            and m.params[0][0] == "-"
            and "batch" not in m.tags
        ),
    )
    outer, inner_start, *msgs, inner_end, outer_end = lines
    outer_ref, inner_ref = outer.params[0][1:], inner_start.params[0][1:]
    assert outer.params[1] == "labeled-response" and outer.tags == {"label": "h"}
    assert inner_start.params[1:] == ("chathistory", "#lan")
    assert inner_start.tags == {"batch": outer_ref}
    assert texts(msgs) == ["one", "two"]
    assert all(m.tags["batch"] == inner_ref for m in msgs)
    assert inner_end.params == ("-" + inner_ref,) and inner_end.tags == {"batch": outer_ref}
    assert outer_end.params == ("-" + outer_ref,)


# --- away-notify ----------------------------------------------------------------------------


def test_away_changes_reach_away_notify_peers_only(fx, connect):
    watcher = cap_client(connect, fx, "watcher", ["away-notify"])
    plain = connect("plain", to=fx)
    goer = connect("goer", to=fx)
    for c in (watcher, plain, goer):
        c.join("#lan")
    goer.send("AWAY :lunch")
    goer.expect("306")
    away = watcher.expect("AWAY")
    assert away.nick == "goer" and away.params == ("lunch",)
    goer.send("AWAY")
    goer.expect("305")
    back = watcher.expect("AWAY")
    assert back.nick == "goer" and back.params == ()
    assert not any(m.command == "AWAY" for m in sync(plain))


def test_joining_while_away_sends_away_after_join_to_cap_holders(fx, connect):
    watcher = cap_client(connect, fx, "watcher", ["away-notify"])
    plain = connect("plain", to=fx)
    watcher.join("#lan")
    plain.join("#lan")
    late = connect("late", to=fx)
    late.send("AWAY :gone fishing")
    late.expect("306")
    late.join("#lan")
    lines = read_until(watcher, lambda m: m.command == "AWAY")
    joins = [i for i, m in enumerate(lines) if m.command == "JOIN" and m.nick == "late"]
    assert joins and joins[0] < len(lines) - 1, "AWAY must follow the JOIN"
    assert lines[-1].nick == "late" and lines[-1].params == ("gone fishing",)
    assert not any(m.command == "AWAY" for m in sync(plain))
    assert not any(m.command == "AWAY" for m in sync(late))  # not told about itself


# --- multi-prefix ----------------------------------------------------------------------------


def test_multi_prefix_in_names_and_who(fx, connect):
    op = connect("op", to=fx)
    op.join("#lan")
    multi = cap_client(connect, fx, "multi", ["multi-prefix"])
    multi.join("#lan")
    op.send("MODE #lan +v op")
    op.expect("MODE")
    multi.expect("MODE")
    multi.send("NAMES #lan")
    assert "@+op" in multi.expect("353").params[-1].split()
    op.send("NAMES #lan")
    names = op.expect("353").params[-1].split()
    assert "@op" in names and "@+op" not in names
    multi.send("WHO #lan")
    who = multi.expect("352", where=lambda m: m.params[5] == "op")
    assert who.params[6] == "H@+"
    op.send("WHO #lan")
    assert op.expect("352", where=lambda m: m.params[5] == "op").params[6] == "H@"


# --- CHATHISTORY ------------------------------------------------------------------------------


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


def stamped(live: list[Message], keep: Callable[[str], bool]) -> list[str]:
    """The texts of ``live`` whose server-time ``keep`` accepts (same format: sortable)."""
    return [m.params[-1] for m in live if keep(m.tags["time"])]


def test_latest_star_returns_everything_ascending_with_original_tags(fx, connect):
    reader, live = _room_with_history(fx, connect, 5)
    batch = chathistory(reader, "LATEST", "#lan", "*", "100")
    assert batch[0].params == (batch[0].params[0], "chathistory", "#lan")
    assert history_texts(batch) == ["m0", "m1", "m2", "m3", "m4"]
    replayed = batch[1:-1]
    assert [m.tags["msgid"] for m in replayed] == [m.tags["msgid"] for m in live]
    assert [m.tags["time"] for m in replayed] == [m.tags["time"] for m in live]
    assert all(m.nick == "talker" and m.params[0] == "#lan" for m in replayed)
    # the newest `limit` of them, still oldest first
    assert history_texts(chathistory(reader, "LATEST", "#lan", "*", "2")) == ["m3", "m4"]


def test_latest_after_a_msgid_or_timestamp_excludes_it(fx, connect):
    reader, live = _room_with_history(fx, connect, 5)
    mid = live[2].tags
    by_msgid = chathistory(reader, "LATEST", "#lan", f"msgid={mid['msgid']}", "10")
    assert history_texts(by_msgid) == ["m3", "m4"]
    by_time = chathistory(reader, "LATEST", "#lan", f"timestamp={mid['time']}", "10")
    # after that instant, exclusive: m2 and anything stamped in its millisecond are out
    assert history_texts(by_time) == stamped(live, lambda t: t > mid["time"])
    assert "m2" not in history_texts(by_time)
    last = live[-1].tags
    assert history_texts(chathistory(reader, "LATEST", "#lan", f"msgid={last['msgid']}", "9")) == []


def test_before_and_after_are_exclusive(fx, connect):
    reader, live = _room_with_history(fx, connect, 6)
    ref = live[3].tags["msgid"]
    assert history_texts(chathistory(reader, "BEFORE", "#lan", f"msgid={ref}", "2")) == [
        "m1",
        "m2",
    ]
    assert history_texts(chathistory(reader, "AFTER", "#lan", f"msgid={ref}", "10")) == [
        "m4",
        "m5",
    ]
    assert history_texts(chathistory(reader, "AFTER", "#lan", f"msgid={ref}", "1")) == ["m4"]
    stamp = live[3].tags["time"]
    before = chathistory(reader, "BEFORE", "#lan", f"timestamp={stamp}", "10")
    after = chathistory(reader, "AFTER", "#lan", f"timestamp={stamp}", "10")
    assert history_texts(before) == stamped(live, lambda t: t < stamp)
    assert history_texts(after) == stamped(live, lambda t: t > stamp)
    later = "2999-01-01T00:00:00.000Z"
    assert history_texts(chathistory(reader, "BEFORE", "#lan", f"timestamp={later}", "3")) == [
        "m3",
        "m4",
        "m5",
    ]
    assert history_texts(chathistory(reader, "AFTER", "#lan", f"timestamp={later}", "3")) == []
    earlier = "2000-01-01T00:00:00.000Z"
    assert history_texts(chathistory(reader, "AFTER", "#lan", f"timestamp={earlier}", "2")) == [
        "m0",
        "m1",
    ]


def test_around_centres_on_the_reference(fx, connect):
    reader, live = _room_with_history(fx, connect, 9)
    ref = live[4].tags["msgid"]
    got = history_texts(chathistory(reader, "AROUND", "#lan", f"msgid={ref}", "5"))
    assert len(got) == 5 and "m4" in got
    assert got == sorted(got) and got[0] in ("m2", "m3") and got[-1] in ("m5", "m6")
    assert history_texts(chathistory(reader, "AROUND", "#lan", f"msgid={ref}", "1")) == ["m4"]


def test_between_excludes_both_ends_in_either_direction(fx, connect):
    reader, live = _room_with_history(fx, connect, 8)
    a, b = live[1].tags["msgid"], live[6].tags["msgid"]
    forward = chathistory(reader, "BETWEEN", "#lan", f"msgid={a}", f"msgid={b}", "10")
    assert history_texts(forward) == ["m2", "m3", "m4", "m5"]
    # limited: forwards starts next to the first selector ...
    limited = chathistory(reader, "BETWEEN", "#lan", f"msgid={a}", f"msgid={b}", "2")
    assert history_texts(limited) == ["m2", "m3"]
    # ... backwards too, and the result is still oldest first
    backward = chathistory(reader, "BETWEEN", "#lan", f"msgid={b}", f"msgid={a}", "2")
    assert history_texts(backward) == ["m4", "m5"]
    ta, tb = live[1].tags["time"], live[6].tags["time"]
    by_time = chathistory(reader, "BETWEEN", "#lan", f"timestamp={ta}", f"timestamp={tb}", "10")
    assert history_texts(by_time) == stamped(live, lambda t: ta < t < tb)
    assert "m1" not in history_texts(by_time) and "m6" not in history_texts(by_time)
    mixed = chathistory(
        reader, "BETWEEN", "#lan", f"msgid={a}", "timestamp=2999-01-01T00:00:00.000Z", "100"
    )
    assert history_texts(mixed) == ["m2", "m3", "m4", "m5", "m6", "m7"]


def test_limit_is_clamped_to_chathistory_max(server_factory, connect):
    fx = server_factory(flood_limit=False, chathistory_max=3)
    reader, _ = _room_with_history(fx, connect, 5)
    assert history_texts(chathistory(reader, "LATEST", "#lan", "*", "1000")) == ["m2", "m3", "m4"]


def test_chathistory_isupport_advertises_the_maximum(server_factory, connect):
    fx = server_factory(chathistory_max=7)
    c = connect(to=fx)
    c.nick = "alice"
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice")
    tokens = [
        p
        for m in read_until(c, lambda m: m.command == "376")
        if m.command == "005"
        for p in m.params[1:-1]
    ]
    assert "CHATHISTORY=7" in tokens and "MSGREFTYPES=msgid,timestamp" in tokens


def test_empty_history_is_an_empty_batch(fx, connect):
    reader = cap_client(connect, fx, "reader", HIST)
    reader.join("#quiet")
    batch = chathistory(reader, "LATEST", "#quiet", "*", "10")
    assert [m.command for m in batch] == ["BATCH", "BATCH"]
    assert batch[0].params[1:] == ("chathistory", "#quiet")


def test_direct_message_history_has_both_directions(fx, connect):
    alice = cap_client(connect, fx, "alice", HIST)
    bob = cap_client(connect, fx, "bob", HIST)
    carol = connect("carol", to=fx)
    alice.send("PRIVMSG bob :hi bob")
    bob.expect("PRIVMSG", where=says("hi bob"))
    bob.send("PRIVMSG alice :hi alice")
    alice.expect("PRIVMSG", where=says("hi alice"))
    carol.send("PRIVMSG alice :carol here")
    alice.expect("PRIVMSG", where=says("carol here"))
    mine = chathistory(alice, "LATEST", "bob", "*", "10")
    assert mine[0].params[1:] == ("chathistory", "bob")
    assert history_texts(mine) == ["hi bob", "hi alice"]
    lines = mine[1:-1]
    assert [(m.nick, m.params[0]) for m in lines] == [("alice", "bob"), ("bob", "alice")]
    assert history_texts(chathistory(bob, "LATEST", "alice", "*", "10")) == ["hi bob", "hi alice"]
    assert history_texts(chathistory(alice, "LATEST", "carol", "*", "10")) == ["carol here"]
    # carol's conversation with alice is not bob's business
    assert history_texts(chathistory(bob, "LATEST", "carol", "*", "10")) == []


def test_targets_lists_rooms_and_correspondents_in_a_targets_batch(fx, connect):
    alice = cap_client(connect, fx, "alice", HIST)
    bob = connect("bob", to=fx)
    alice.join("#one")
    alice.join("#two")
    bob.join("#one")
    bob.join("#two")
    bob.send("PRIVMSG #one :first")
    alice.expect("PRIVMSG", where=says("first"))
    time.sleep(0.01)  # distinct milliseconds, so the order is defined
    bob.send("PRIVMSG alice :private")
    alice.expect("PRIVMSG", where=says("private"))
    time.sleep(0.01)
    alice.send("PRIVMSG #two :last")  # no echo-message: ask straight away
    alice.send(
        "CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z "
        "timestamp=2999-01-01T00:00:00.000Z 10"
    )
    start, *lines, _end = read_until(
        alice, lambda m: m.command == "BATCH" and m.params[0][0] == "-"
    )
    assert start.command == "BATCH" and start.params[1] == "draft/chathistory-targets"
    assert all(m.command == "CHATHISTORY" and m.params[0] == "TARGETS" for m in lines)
    assert all(m.tags.get("batch") == start.params[0][1:] for m in lines)
    # CHATHISTORY TARGETS <target> <timestamp> (Ergo; clients parse a bare timestamp)
    assert all(TIME_RE.match(m.params[2]) for m in lines), lines
    assert [m.params[1] for m in lines] == ["#one", "bob", "#two"]  # oldest activity first
    assert [m.params[2] for m in lines] == sorted(m.params[2] for m in lines)
    # the window is exclusive and bounded
    only_recent = chathistory_targets(alice, lines[1].params[2], "2999-01-01T00:00:00.000Z")
    assert only_recent == ["#two"]
    assert chathistory_targets(
        alice, "2000-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z", 1
    ) == ["#one"]


def chathistory_targets(c, start: str, end: str, limit: int = 10) -> list[str]:
    c.send(f"CHATHISTORY TARGETS timestamp={start} timestamp={end} {limit}")
    _, *lines, _ = read_until(c, lambda m: m.command == "BATCH" and m.params[0][0] == "-")
    return [m.params[1] for m in lines]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ("SOMEDAY #lan * 10", "INVALID_PARAMS"),
        ("LATEST #lan * 0", "INVALID_PARAMS"),
        ("LATEST #lan * many", "INVALID_PARAMS"),
        ("LATEST #lan * -5", "INVALID_PARAMS"),
        ("BEFORE #lan timestamp=yesterday 10", "INVALID_PARAMS"),
        ("BEFORE #lan timestamp=2024-01-01T00:00:00.000 10", "INVALID_PARAMS"),
        ("BEFORE #lan msgid= 10", "INVALID_PARAMS"),
        ("AFTER #lan 2024-01-01T00:00:00.000Z 10", "INVALID_PARAMS"),
        ("BETWEEN #lan * * 10", "INVALID_PARAMS"),
        ("LATEST #lan *", "INVALID_PARAMS"),
        ("TARGETS timestamp=bad timestamp=2024-01-01T00:00:00.000Z 10", "INVALID_PARAMS"),
        ("LATEST #elsewhere * 10", "INVALID_TARGET"),
        ("LATEST #nosuchroom * 10", "INVALID_TARGET"),
    ],
)
def test_chathistory_errors_are_standard_replies(fx, connect, args, code):
    other = connect("other", to=fx)
    other.join("#elsewhere")
    reader = cap_client(connect, fx, "reader", HIST)
    reader.join("#lan")
    reply = chathistory(reader, *args.split())
    assert len(reply) == 1, reply
    fail = reply[0]
    assert fail.command == "FAIL" and fail.params[:2] == ("CHATHISTORY", code), fail
    if code == "INVALID_TARGET":
        assert fail.params[3] == args.split()[1]
    # the connection carries on
    assert history_texts(chathistory(reader, "LATEST", "#lan", "*", "1")) == []


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
    c = cap_client(connect, fx, "timed", ["server-time", "batch"])
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


def test_chathistory_without_batch_cap_sends_no_batch_lines(fx, connect):
    # batch was never negotiated: no BATCH lines at all (Ergo issue #2066)
    c = cap_client(connect, fx, "nobatch", ["draft/chathistory", "server-time"])
    c.join("#lan")
    c.send("PRIVMSG #lan :remember me")
    c.send("CHATHISTORY LATEST #lan * 10")
    c.send(
        "CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z"
        " timestamp=2999-01-01T00:00:00.000Z 5"
    )
    got = sync(c)
    assert not any(m.command == "BATCH" for m in got), got
    line = next(m for m in got if says("remember me")(m))
    assert set(line.tags) == {"time"}
    targets = [m for m in got if m.command == "CHATHISTORY"]
    assert [m.params[:2] for m in targets] == [("TARGETS", "#lan")]
