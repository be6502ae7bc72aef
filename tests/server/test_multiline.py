"""draft/multiline over real sockets: a client's batch relayed as a batch to clients of
multiline and as lines to everyone else, stored as one message and replayed from
history, and every way a batch can be wrong refused with FAIL BATCH, nothing relayed,
nothing stored. Expectations come from the IRCv3 multiline spec and irctest's
multiline.py; where the spec leaves a choice, from Ergo.
"""

from __future__ import annotations

import time

import pytest

from chatroom.protocol import Cap, Message
from chatroom.server.config import Config
from chatroom.server.flood import FloodGuard
from tests.server.test_ircv3 import cap_client, cap_ls, chathistory, read_until, sync

ML = Cap.DRAFT_MULTILINE
TAGS = (Cap.MESSAGE_TAGS, Cap.BATCH, Cap.SERVER_TIME)
SENDER = (*TAGS, Cap.ECHO_MESSAGE, Cap.LABELED_RESPONSE, ML)
READER = (*TAGS, Cap.DRAFT_CHATHISTORY)
CONCAT = "draft/multiline-concat"


@pytest.fixture
def fx(server_factory):
    """History in memory, no flood control (tests send batches in one go)."""
    return server_factory(flood_limit=False)


pytestmark = pytest.mark.usefixtures("no_errors_logged")


def room_of(connect, fx, room: str = "#test", **clients):
    """Clients (nick -> caps) registered and joined to ``room``, their input drained."""
    made = {}
    for nick, caps in clients.items():
        c = cap_client(connect, fx, nick, caps)
        c.join(room)
        made[nick] = c
    for c in made.values():
        sync(c)
    return made


def send_batch(c, target: str, *lines: str, ref: str = "r1", opener: str = "") -> None:
    """``lines`` as a multiline batch; a line starting with '+' carries the concat tag."""
    c.send(f"{opener}BATCH +{ref} draft/multiline {target}")
    for line in lines:
        tag = f"batch={ref};{CONCAT}" if line.startswith("+") else f"batch={ref}"
        c.send(f"@{tag} PRIVMSG {target} :{line.removeprefix('+')}")
    c.send(f"BATCH -{ref}")


def batch_of(c) -> list[Message]:
    """The next draft/multiline batch ``c`` receives: BATCH +, its lines, BATCH -."""
    start = read_until(c, lambda m: m.command == "BATCH" and m.params[1:2] == ("draft/multiline",))[
        -1
    ]
    ref = start.params[0][1:]
    return [start, *read_until(c, lambda m: m.command == "BATCH" and m.params[0] == "-" + ref)]


def fails(c) -> list[Message]:
    return [m for m in sync(c) if m.command == "FAIL"]


def heard(sender, receiver) -> list[Message]:
    """What ``receiver`` got once everything ``sender`` sent has been handled."""
    sync(sender)
    return sync(receiver)


def said(msgs: list[Message]) -> list[str]:
    return [m.params[-1] for m in msgs if m.command in ("PRIVMSG", "NOTICE")]


# --- relaying -----------------------------------------------------------------------------------


def test_cap_ls_offers_multiline_with_its_limits(fx, connect):
    c = connect(to=fx)
    assert "draft/multiline=max-bytes=4096,max-lines=40" in cap_ls(c)


def test_room_gets_a_batch_or_lines_by_what_each_client_speaks(fx, connect):
    people = room_of(
        connect, fx, alice=SENDER, bob=(*TAGS, ML), carol=TAGS, dave=(), erin=(Cap.BATCH,)
    )
    alice = people["alice"]
    send_batch(alice, "#test", "hello", "", "how is ", "+everyone?", opener="@label=xyz ")

    echo = batch_of(alice)
    start, *lines, end = echo
    assert start.tags["label"] == "xyz" and start.tags["msgid"] and start.tags["time"]
    assert start.params == (start.params[0], "draft/multiline", "#test")
    assert said(lines) == ["hello", "", "how is ", "everyone?"]
    assert all("msgid" not in m.tags for m in lines)
    assert [CONCAT in m.tags for m in lines] == [False, False, False, True]
    assert end.params == ("-" + start.params[0][1:],)

    relay = batch_of(people["bob"])
    assert relay[0].tags["msgid"] == start.tags["msgid"]
    assert relay[0].tags["time"] == start.tags["time"]
    assert relay[0].source.startswith("alice!")
    ref = relay[0].params[0][1:]
    assert all(m.tags["batch"] == ref for m in relay[1:-1])
    assert said(relay) == ["hello", "", "how is ", "everyone?"]

    # without multiline: every line that is not blank, the msgid on the first only
    carol = [m for m in sync(people["carol"]) if m.command == "PRIVMSG"]
    assert said(carol) == ["hello", "how is ", "everyone?"]
    assert [m.tags.get("msgid") for m in carol] == [start.tags["msgid"], None, None]
    assert all(m.tags["time"] == start.tags["time"] for m in carol)
    assert all(CONCAT not in m.tags and "batch" not in m.tags for m in carol)
    dave = [m for m in sync(people["dave"]) if m.command == "PRIVMSG"]
    assert said(dave) == ["hello", "how is ", "everyone?"]
    assert all(not m.tags for m in dave)
    # batch alone is not multiline: lines too
    assert said(sync(people["erin"])) == ["hello", "how is ", "everyone?"]


def test_client_tags_of_the_batch_ride_on_its_batch_line_and_every_fallback_line(fx, connect):
    people = room_of(connect, fx, alice=SENDER, bob=(*TAGS, ML), carol=TAGS)
    send_batch(people["alice"], "#test", "one", "two", opener="@+draft/reply=abc ")
    assert batch_of(people["bob"])[0].tags["+draft/reply"] == "abc"
    carol = [m for m in sync(people["carol"]) if m.command == "PRIVMSG"]
    assert [m.tags["+draft/reply"] for m in carol] == ["abc", "abc"]


def test_private_multiline_to_each_kind_of_client(fx, connect):
    alice = cap_client(connect, fx, "alice", SENDER)
    bob = cap_client(connect, fx, "bob", (*TAGS, ML))
    dave = connect("dave", to=fx)
    send_batch(alice, "bob", "first", "second")
    assert said(batch_of(bob)) == ["first", "second"]
    assert said(batch_of(alice)) == ["first", "second"]  # the echo
    send_batch(alice, "dave", "first", "second", ref="r2")
    assert said(heard(alice, dave)) == ["first", "second"]


def test_a_multiline_notice_is_relayed_as_notices(fx, connect):
    people = room_of(connect, fx, alice=SENDER, dave=())
    alice = people["alice"]
    alice.send("BATCH +n draft/multiline #test")
    alice.send("@batch=n NOTICE #test :one")
    alice.send("@batch=n NOTICE #test :two")
    alice.send("BATCH -n")
    got = [m for m in heard(alice, people["dave"]) if m.command == "NOTICE"]
    assert said(got) == ["one", "two"]


def test_labeled_batch_without_echo_is_acknowledged(fx, connect):
    people = room_of(connect, fx, alice=(*TAGS, Cap.LABELED_RESPONSE, ML), bob=())
    send_batch(people["alice"], "#test", "hi", "there", opener="@label=L1 ")
    acks = [m for m in sync(people["alice"]) if m.command == "ACK"]
    assert [m.tags["label"] for m in acks] == ["L1"]
    assert said(heard(people["alice"], people["bob"])) == ["hi", "there"]


# --- history ------------------------------------------------------------------------------------


def test_stored_as_one_message_and_replayed_as_a_batch_or_as_lines(fx, connect):
    people = room_of(connect, fx, alice=SENDER)
    send_batch(people["alice"], "#test", "hello", "", "how is ", "+everyone?")
    msgid = batch_of(people["alice"])[0].tags["msgid"]

    reader = cap_client(connect, fx, "reader", (*READER, ML))
    reader.join("#test")
    outer, inner_start, *lines, inner_end, _ = chathistory(reader, "LATEST", "#test", "*", "10")
    assert outer.params[1] == "chathistory"
    assert inner_start.params[1:] == ("draft/multiline", "#test")
    assert inner_start.tags["msgid"] == msgid
    assert inner_start.tags["batch"] == outer.params[0][1:]
    assert inner_end.tags["batch"] == outer.params[0][1:]
    # one message, its text joined: the concatenated line comes back as one line
    assert said(lines) == ["hello", "", "how is everyone?"]

    plain_reader = cap_client(connect, fx, "plainreader", READER)
    plain_reader.join("#test")
    _, *lines, _ = chathistory(plain_reader, "LATEST", "#test", "*", "10")
    assert said(lines) == ["hello", "how is everyone?"]
    assert [m.tags.get("msgid") for m in lines] == [msgid, None]


def test_playback_on_join_marks_every_line_for_clients_without_server_time(server_factory, connect):
    fx = server_factory(flood_limit=False, playback_lines=5)
    people = room_of(connect, fx, alice=SENDER)
    send_batch(people["alice"], "#test", "one", "two")
    batch_of(people["alice"])
    irssi = connect("irssi", to=fx)
    irssi.send("JOIN #test")
    lines = said(sync(irssi))
    assert len(lines) == 2
    assert all(t.startswith("[history ") for t in lines)
    assert [t.split("] ", 1)[1] for t in lines] == ["one", "two"]


def test_a_long_joined_line_is_split_again_to_fit_on_replay(fx, connect):
    people = room_of(connect, fx, alice=SENDER)
    words = "word " * 80  # 400 bytes: two of them joined pass 512 with the prefix
    send_batch(people["alice"], "#test", words, "+" + words + "end")
    batch_of(people["alice"])
    reader = cap_client(connect, fx, "reader", (*READER, ML))
    reader.join("#test")
    _, _, *lines, _, _ = chathistory(reader, "LATEST", "#test", "*", "10")
    assert len(lines) == 2
    assert CONCAT not in lines[0].tags and CONCAT in lines[1].tags
    assert "".join(said(lines)) == words + words + "end"
    assert lines[0].params[1].endswith(" ")  # cut between words
    assert all(len(bytes(m)) <= 512 + len(bytes(m).partition(b" ")[0]) for m in lines)
    plain_reader = cap_client(connect, fx, "plainreader", READER)
    plain_reader.join("#test")
    _, *lines, _ = chathistory(plain_reader, "LATEST", "#test", "*", "10")
    assert "".join(said(lines)) == words + words + "end"


# --- bad input ----------------------------------------------------------------------------------


def nothing_kept(fx, connect, room: str = "#test") -> None:
    """Nothing of a refused batch reached the room's history."""
    reader = cap_client(connect, fx, f"r{time.monotonic_ns() % 10**6}", (*READER, ML))
    reader.join(room)
    start, end = chathistory(reader, "LATEST", room, "*", "10")
    assert start.command == end.command == "BATCH"


@pytest.mark.parametrize(
    ("lines", "code", "context"),
    [
        (["hi"] * 41, "MULTILINE_MAX_LINES", "40"),
        (["x" * 400] * 11, "MULTILINE_MAX_BYTES", "4096"),
    ],
)
def test_a_batch_over_the_limits_is_refused_and_nothing_relayed(fx, connect, lines, code, context):
    people = room_of(connect, fx, alice=SENDER, bob=(*TAGS, ML), dave=())
    send_batch(people["alice"], "#test", *lines)
    (fail,) = fails(people["alice"])  # one FAIL; the rest of the batch goes quietly
    assert fail.params[:3] == ("BATCH", code, context)
    assert sync(people["bob"]) == [] and sync(people["dave"]) == []
    nothing_kept(fx, connect)
    # the connection goes on
    people["alice"].send("PRIVMSG #test :after")
    assert said(heard(people["alice"], people["dave"])) == ["after"]


def test_the_byte_limit_counts_line_breaks_but_not_concatenation(server_factory, connect):
    fx = server_factory(flood_limit=False, multiline_max_bytes=10)
    people = room_of(connect, fx, alice=SENDER, dave=())
    send_batch(people["alice"], "#test", "abcde", "+fghij")  # 10 bytes: fits
    assert said(heard(people["alice"], people["dave"])) == ["abcde", "fghij"]
    send_batch(people["alice"], "#test", "abcde", "fghij", ref="r2")  # 11 with the \n
    assert fails(people["alice"])[0].params[1] == "MULTILINE_MAX_BYTES"
    assert sync(people["dave"]) == []


def test_a_line_to_another_target_is_refused(fx, connect):
    people = room_of(connect, fx, alice=SENDER, dave=())
    alice = people["alice"]
    alice.send("BATCH +r draft/multiline #test")
    alice.send("@batch=r PRIVMSG #test :one")
    alice.send("@batch=r PRIVMSG #other :two")
    alice.send("BATCH -r")
    (fail,) = fails(alice)
    assert fail.params[:4] == ("BATCH", "MULTILINE_INVALID_TARGET", "#test", "#other")
    assert sync(people["dave"]) == []
    nothing_kept(fx, connect)


@pytest.mark.parametrize(
    "inside",
    [
        "@batch=other PRIVMSG #test :wrong reference",
        "@batch=r;draft/multiline-concat PRIVMSG #test :",
        "BATCH +nested draft/multiline #test",
        "@batch=r NOTICE #test :a notice among privmsgs",
        "@batch=r PRIVMSG #test",
    ],
)
def test_a_malformed_batch_is_refused(fx, connect, inside):
    people = room_of(connect, fx, alice=SENDER, dave=())
    alice = people["alice"]
    alice.send("BATCH +r draft/multiline #test")
    alice.send("@batch=r PRIVMSG #test :one")
    alice.send(inside)
    alice.send("@batch=r PRIVMSG #test :two")
    alice.send("BATCH -r")
    (fail,) = fails(alice)
    assert fail.params[:2] == ("BATCH", "MULTILINE_INVALID")
    assert sync(people["dave"]) == []
    nothing_kept(fx, connect)


@pytest.mark.parametrize(
    "line",
    [
        "BATCH -nothing",
        "BATCH +r chathistory #test",
        "BATCH +r draft/multiline #a,#b",
        "BATCH +",
    ],
)
def test_a_bad_batch_line_is_refused(fx, connect, line):
    alice = cap_client(connect, fx, "alice", SENDER)
    alice.send(line)
    assert [m.params[:2] for m in fails(alice)] == [("BATCH", "MULTILINE_INVALID")]


def test_empty_and_blank_batches_are_refused(fx, connect):
    people = room_of(connect, fx, alice=SENDER, dave=())
    alice = people["alice"]
    alice.send("BATCH +r draft/multiline #test")
    alice.send("BATCH -r")
    send_batch(alice, "#test", "", "", ref="r2")
    assert [m.params[1] for m in fails(alice)] == ["MULTILINE_INVALID"] * 2
    assert sync(people["dave"]) == []


def test_a_batch_needs_the_capability(fx, connect):
    alice = cap_client(connect, fx, "alice", TAGS)
    alice.join("#test")
    send_batch(alice, "#test", "one", "two")
    got = fails(alice)
    assert got and got[0].params[:2] == ("BATCH", "MULTILINE_INVALID")


def test_another_command_ends_the_batch_and_still_runs(fx, connect):
    people = room_of(connect, fx, alice=SENDER, dave=())
    alice = people["alice"]
    alice.send("BATCH +r draft/multiline #test")
    alice.send("@batch=r PRIVMSG #test :one")
    alice.send("PING :still-here")  # a keepalive does not end it
    alice.send("TOPIC #test :new topic")
    alice.send("@batch=r PRIVMSG #test :two")
    alice.send("BATCH -r")
    got = sync(alice)
    assert [m.params[1] for m in got if m.command == "FAIL"] == ["MULTILINE_INVALID"]
    assert any(m.command == "PONG" and m.params[-1] == "still-here" for m in got)
    assert any(m.command == "TOPIC" for m in got)
    assert said(sync(people["dave"])) == []


def test_a_batch_left_open_is_dropped_after_the_timeout(server_factory, connect):
    fx = server_factory(flood_limit=False, multiline_timeout=0.2)
    people = room_of(connect, fx, alice=SENDER, dave=())
    alice = people["alice"]
    alice.send("@label=T BATCH +r draft/multiline #test")
    alice.send("@batch=r PRIVMSG #test :one")
    fail = alice.expect("FAIL", timeout=3)  # the timers thread, about once a second
    assert fail.params[:2] == ("BATCH", "MULTILINE_INVALID") and fail.tags["label"] == "T"
    alice.send("@batch=r PRIVMSG #test :two")
    alice.send("BATCH -r")
    assert fails(alice) == []  # the rest goes quietly
    assert sync(people["dave"]) == []
    nothing_kept(fx, connect)


def test_a_batch_never_closed_is_gone_with_its_connection(fx, connect):
    people = room_of(connect, fx, alice=SENDER, dave=())
    alice = people["alice"]
    alice.send("BATCH +r draft/multiline #test")
    alice.send("@batch=r PRIVMSG #test :one")
    sync(alice)
    alice.close()
    got = read_until(people["dave"], lambda m: m.command == "QUIT")
    assert said(got) == []
    nothing_kept(fx, connect)


def test_a_line_too_long_to_relay_is_refused(fx, connect):
    people = room_of(connect, fx, alice=SENDER, dave=())
    send_batch(people["alice"], "#test", "short", "y" * 490)
    (fail,) = fails(people["alice"])
    assert fail.params[:2] == ("BATCH", "MULTILINE_INVALID")
    assert sync(people["dave"]) == []


def test_refusals_of_the_room_are_the_usual_numerics(fx, connect):
    alice = cap_client(connect, fx, "alice", SENDER)
    send_batch(alice, "#nowhere", "one", "two")
    assert [m.command for m in sync(alice)] == ["403"]
    send_batch(alice, "nobody", "one", "two", ref="r2")
    assert [m.command for m in sync(alice)] == ["401"]


def test_a_full_batch_fits_the_default_flood_control():
    """Flood control counts a batch's lines like any others: with the defaults, a batch
    of max-lines (and its two BATCH lines) sent at once never reaches Excess Flood."""
    cfg = Config()
    guard = FloodGuard(cfg.flood_burst, cfg.flood_rate, cfg.flood_max_lag)
    total = cfg.multiline_max_lines + 2
    delays = [guard.delay(0.0, total - i) for i in range(total)]
    assert None not in delays
