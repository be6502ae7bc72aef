"""IRCv3 without sockets: capability negotiation, tags, echo, labels, batches, away-notify,
multi-prefix, setname and CHATHISTORY, through real Sessions (session_harness.py).

History is a real SQLite store in memory behind the server's own store pipeline, run by
the posting thread. What needs the real server's threads (history committed before a
JOIN reads it, history across restarts, export) stays in test_ircv3.py.

Expectations come from the IRCv3 specifications (ircv3/ircv3-specifications:
message-tags, server-time, echo-message, batch, labeled-response, away-notify,
multi-prefix, setname, chathistory) and, where a spec leaves the choice, from Ergo.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator

import pytest
from session_harness import Client, Net, commands, one

from chatroom.protocol import Cap, Message

TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
ALL_CAPS = (
    Cap.AWAY_NOTIFY,
    Cap.BATCH,
    Cap.CAP_NOTIFY,
    Cap.ECHO_MESSAGE,
    Cap.EXTENDED_MONITOR,
    Cap.LABELED_RESPONSE,
    Cap.MESSAGE_TAGS,
    Cap.MULTI_PREFIX,
    Cap.READ_MARKER,
    Cap.SERVER_TIME,
    Cap.SETNAME,
    Cap.USERHOST_IN_NAMES,
)
HIST = (Cap.BATCH, Cap.SERVER_TIME, Cap.MESSAGE_TAGS, Cap.DRAFT_CHATHISTORY)
LABELED = [Cap.LABELED_RESPONSE, Cap.BATCH, Cap.MESSAGE_TAGS]
EVER = ("timestamp=2000-01-01T00:00:00.000Z", "timestamp=2999-01-01T00:00:00.000Z")


@pytest.fixture
def net() -> Iterator[Net]:
    """A server that keeps history (SQLite in memory), without sockets or threads."""
    n = Net(keep_history=True)
    yield n
    n.close()


# --- helpers ------------------------------------------------------------------------------


def says(text: str) -> Callable[[Message], bool]:
    return lambda m: m.command in ("PRIVMSG", "NOTICE") and m.params[-1] == text


def texts(lines: Iterable[Message]) -> list[str]:
    return [m.params[-1] for m in lines if m.command in ("PRIVMSG", "NOTICE")]


def cap_ls(c: Client) -> set[str]:
    """CAP LS 302: the offered caps, gathered over every LS line."""
    return {cap for m in c.send("CAP LS 302") if m.command == "CAP" for cap in m.params[-1].split()}


def chathistory(c: Client, *args: str) -> list[Message]:
    """Send CHATHISTORY and return the batch (start, lines, end) or the FAIL line."""
    out = c.send("CHATHISTORY " + " ".join(args))
    fails = [m for m in out if m.command == "FAIL"]
    if fails:
        return fails
    start = next(i for i, m in enumerate(out) if m.command == "BATCH")
    ref = out[start].params[0][1:]
    end = next(i for i, m in enumerate(out) if m.command == "BATCH" and m.params[0] == "-" + ref)
    return out[start : end + 1]


def history_texts(batch: list[Message]) -> list[str]:
    start, *lines, _end = batch
    assert start.params[1] == "chathistory", start
    ref = start.params[0][1:]
    assert all(m.tags.get("batch") == ref for m in lines), lines
    return texts(lines)


def joined(room: str, *clients: Client) -> None:
    for c in clients:
        c.send(f"JOIN {room}")
    for c in clients:
        c.take()


# --- capability negotiation ------------------------------------------------------------------


def test_cap_ls_302_offers_every_cap_and_chathistory_only_with_history(net: Net) -> None:
    c = net.connect()
    history_caps = {Cap.DRAFT_CHATHISTORY, Cap.DRAFT_EVENT_PLAYBACK, Cap.MESSAGE_REDACTION}
    multiline = "draft/multiline=max-bytes=4096,max-lines=40"  # LS 302 gives its limits
    assert cap_ls(c) == {*ALL_CAPS, multiline, *history_caps, Cap.SEARCH}
    d = Net(history=False).connect()
    assert cap_ls(d) == {*ALL_CAPS, multiline}
    d.send("NICK dee")
    d.send("USER dee 0 * :Dee")
    isupport = " ".join(" ".join(m.params) for m in d.send("CAP END"))
    assert "CHATHISTORY=" not in isupport
    assert one(d.send("CHATHISTORY LATEST #lan * 10"), "421").params[1] == "CHATHISTORY"


def test_registration_waits_for_cap_end(net: Net) -> None:
    c = net.connect()
    cap_ls(c)
    c.send("NICK alice")
    assert "001" not in commands(c.send("USER alice 0 * :Alice")), "registered during CAP"
    assert one(c.send("CAP END"), "001").params[0] == "alice"


def test_cap_req_is_all_or_nothing_and_minus_removes(net: Net) -> None:
    c = net.cap_user("alice")
    nak = one(c.send(f"CAP REQ :{Cap.SERVER_TIME} no-such-cap"), "CAP")
    assert nak.params[1:] == ("NAK", f"{Cap.SERVER_TIME} no-such-cap")
    assert one(c.send("CAP LIST"), "CAP").params[-1] == ""
    ack = one(c.send(f"CAP REQ :{Cap.SERVER_TIME} {Cap.ECHO_MESSAGE}"), "CAP")
    assert ack.params[1:] == ("ACK", f"{Cap.SERVER_TIME} {Cap.ECHO_MESSAGE}")
    listed = one(c.send("CAP LIST"), "CAP").params[-1].split()
    assert sorted(listed) == [Cap.ECHO_MESSAGE, Cap.SERVER_TIME]
    c.send("JOIN #lan")
    echo = one(c.send("PRIVMSG #lan :echoed"), "PRIVMSG")
    assert says("echoed")(echo) and echo.tags.get("time")
    ack = one(c.send(f"CAP REQ :-{Cap.ECHO_MESSAGE}"), "CAP")
    assert ack.params[1:] == ("ACK", f"-{Cap.ECHO_MESSAGE}")
    assert one(c.send("CAP LIST"), "CAP").params[-1] == Cap.SERVER_TIME
    assert "not echoed" not in texts(c.send("PRIVMSG #lan :not echoed"))


# --- server-time, msgid, message-tags ---------------------------------------------------------


def test_tags_on_relayed_lines_follow_each_recipients_caps(net: Net) -> None:
    plain = net.user("plain")
    timed = net.cap_user("timed", [Cap.SERVER_TIME])
    tagged = net.cap_user("tagged", [Cap.MESSAGE_TAGS])
    joined("#lan", plain, timed, tagged)
    sender = net.user("sender")
    sender.send("JOIN #lan")
    join = one(timed.take(), "JOIN")  # JOIN is stamped too
    assert join.nick == "sender"
    assert set(join.tags) == {"time"} and TIME_RE.match(join.tags["time"])
    net.drain()
    before = time.time()
    sender.send("PRIVMSG #lan :hello")
    got_plain, got_timed, got_tagged = (one(c.take(), "PRIVMSG") for c in (plain, timed, tagged))
    assert got_plain.tags == {}
    assert set(got_timed.tags) == {"time"}
    assert set(got_tagged.tags) == {"time", "msgid"}
    assert got_timed.tags["time"] == got_tagged.tags["time"]
    stamp = got_timed.tags["time"]
    assert TIME_RE.match(stamp), stamp
    when = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 2 <= when <= time.time() + 2, stamp  # UTC, close to now
    sender.send("PRIVMSG #lan :again")
    again = one(tagged.take(), "PRIVMSG")
    assert again.tags["msgid"] != got_tagged.tags["msgid"]
    sender.send("PART #lan :bye")
    assert set(one(timed.take(), "PART").tags) == {"time"}
    assert one(plain.take(), "PART").tags == {}


def test_client_only_tags_reach_message_tags_clients_only(net: Net) -> None:
    sender = net.cap_user("sender", [Cap.MESSAGE_TAGS])
    tagged = net.cap_user("tagged", [Cap.MESSAGE_TAGS])
    timed = net.cap_user("timed", [Cap.SERVER_TIME])
    plain = net.user("plain")
    joined("#lan", sender, tagged, timed, plain)
    value = r"raw+:=,escaped\:\s\\"  # message-tags example: '; \' escaped on the wire
    sender.send(f"@+example={value};+flag;unprefixed=dropped PRIVMSG #lan :tagged text")
    got = one(tagged.take(), "PRIVMSG")
    assert got.params[-1] == "tagged text"
    assert got.tags["+example"] == "raw+:=,escaped; \\"
    assert "+flag" in got.tags
    assert "unprefixed" not in got.tags  # tags without '+' are never relayed
    assert set(one(timed.take(), "PRIVMSG").tags) == {"time"}
    assert one(plain.take(), "PRIVMSG").tags == {}


def test_tagmsg_reaches_only_message_tags_clients(net: Net) -> None:
    sender = net.cap_user("sender", [Cap.MESSAGE_TAGS, Cap.ECHO_MESSAGE])
    tagged = net.cap_user("tagged", [Cap.MESSAGE_TAGS])
    timed = net.cap_user("timed", [Cap.SERVER_TIME])
    plain = net.user("plain")
    joined("#lan", sender, tagged, timed, plain)
    echo = one(sender.send("@+typing=active TAGMSG #lan"), "TAGMSG")
    got = one(tagged.take(), "TAGMSG")
    assert got.params == ("#lan",) and got.tags["+typing"] == "active"
    assert got.nick == "sender" and got.tags["msgid"]
    assert echo.tags["msgid"] == got.tags["msgid"] and echo.tags["+typing"] == "active"
    for c in (timed, plain):
        assert "TAGMSG" not in commands(c.take()), c.nick
    # a TAGMSG is not a chat line: it does not go into history
    ack = one(sender.send(f"CAP REQ :{Cap.BATCH} {Cap.DRAFT_CHATHISTORY}"), "CAP")
    assert ack.params[1] == "ACK"
    batch = chathistory(sender, "LATEST", "#lan", "*", "10")
    assert commands(batch) == ["BATCH", "BATCH"]


def test_client_tag_data_over_4094_bytes_is_refused_with_417(net: Net) -> None:
    sender = net.cap_user("sender", [Cap.MESSAGE_TAGS])
    tagged = net.cap_user("tagged", [Cap.MESSAGE_TAGS])
    joined("#lan", sender, tagged)
    # tag data (between '@' and the space) of exactly 4094 bytes: allowed
    at_limit = "+a=" + "x" * (4094 - 3)
    sender.send(f"@{at_limit} PRIVMSG #lan :at the limit")
    assert one(tagged.take(), "PRIVMSG").tags["+a"] == "x" * 4091
    # one byte more: 417, nothing relayed
    refused = one(sender.send(f"@{at_limit}x PRIVMSG #lan :over the limit"), "417")
    assert refused.params[-1] == "Input line was too long"
    # the limit counts bytes: 2100 'é' are 4200 bytes though only 2100 characters
    assert "417" in commands(sender.send("@+b=" + "é" * 2100 + " PRIVMSG #lan :multibyte over"))
    # and it counts every tag the client sent, prefixed or not
    assert "417" in commands(sender.send(f"@label=x;{at_limit} PRIVMSG #lan :with label over"))
    sender.send("PRIVMSG #lan :after")
    assert texts(tagged.take()) == ["after"]


# --- echo-message ----------------------------------------------------------------------------


def test_echo_message_returns_privmsg_and_notice_with_the_recipients_msgid(net: Net) -> None:
    alice = net.cap_user("alice", [Cap.ECHO_MESSAGE, Cap.MESSAGE_TAGS])
    bob = net.cap_user("bob", [Cap.MESSAGE_TAGS])
    joined("#lan", alice, bob)
    for command in ("PRIVMSG", "NOTICE"):
        echo = one(alice.send(f"{command} #lan :{command} to room"), command)
        got = one(bob.take(), command)
        assert says(f"{command} to room")(got)
        assert echo.nick == "alice" and echo.params == got.params
        assert echo.tags["msgid"] == got.tags["msgid"]
        assert echo.tags["time"] == got.tags["time"]
    echo = one(alice.send("PRIVMSG bob :direct"), "PRIVMSG")
    got = one(bob.take(), "PRIVMSG")
    assert echo.params == ("bob", "direct") and echo.tags["msgid"] == got.tags["msgid"]
    # without echo-message the sender hears nothing back
    assert "no echo for bob" not in texts(bob.send("PRIVMSG #lan :no echo for bob"))
    assert texts(alice.take()) == ["no echo for bob"]


def test_message_to_yourself_is_delivered_and_only_the_echo_is_labeled(net: Net) -> None:
    plain = net.user("plain")
    got = one(plain.send("PRIVMSG plain :note to self"), "PRIVMSG")  # RFC 2812
    assert got.nick == "plain" and got.params == ("plain", "note to self")
    # labeled-response: "When a client sends a message to itself, the server MUST NOT
    # include the label tag, except for any acknowledgment sent with echo-message."
    me = net.cap_user("me", [Cap.ECHO_MESSAGE, Cap.LABELED_RESPONSE, Cap.BATCH, Cap.MESSAGE_TAGS])
    copies = [m for m in me.send("@label=L1 PRIVMSG me :hi me") if says("hi me")(m)]
    assert len(copies) == 2, copies
    assert sorted(m.tags.get("label", "") for m in copies) == ["", "L1"]
    assert copies[0].tags["msgid"] == copies[1].tags["msgid"]


# --- labeled-response ------------------------------------------------------------------------


def test_single_reply_carries_the_label(net: Net) -> None:
    c = net.cap_user("alice", LABELED)
    pong = one(c.send("@label=one PING :token"), "PONG")
    assert pong.tags == {"label": "one"} and pong.params[-1] == "token"
    assert one(c.send("@label=err PRIVMSG nobody :hello"), "401").tags["label"] == "err"


def test_multi_line_reply_is_a_labeled_response_batch(net: Net) -> None:
    c = net.cap_user("alice", LABELED)
    net.user("bob")
    start, *body, end = c.send("@label=who WHOIS bob")
    assert start.command == "BATCH" and start.params[1] == "labeled-response"
    assert start.tags == {"label": "who"}
    ref = start.params[0][1:]
    assert body[0].command == "311" and body[-1].command == "318"
    assert all(m.tags == {"batch": ref} for m in body), body
    assert end.params == ("-" + ref,) and "label" not in end.tags


def test_command_with_no_reply_gets_a_labeled_ack(net: Net) -> None:
    c = net.cap_user("alice", LABELED)
    ack = one(c.send("@label=quiet PONG :x"), "ACK")
    assert ack.tags == {"label": "quiet"} and ack.params == ()
    c.send("JOIN #lan")
    said = c.send("@label=said PRIVMSG #lan :nobody echoes this")  # no echo-message
    assert one(said, "ACK").tags == {"label": "said"}


def test_labeled_message_with_echo_labels_the_echo(net: Net) -> None:
    c = net.cap_user("alice", [*LABELED, Cap.ECHO_MESSAGE])
    bob = net.cap_user("bob", [Cap.MESSAGE_TAGS])
    joined("#lan", c, bob)
    echo = one(c.send("@label=e1 PRIVMSG #lan :labeled echo"), "PRIVMSG")
    assert echo.tags["label"] == "e1" and echo.tags["msgid"]
    assert "label" not in one(bob.take(), "PRIVMSG").tags


def test_labeled_join_is_one_batch_in_order(net: Net) -> None:
    c = net.cap_user("alice", LABELED)
    # nothing said here yet: no (empty) playback batch
    start, *body, end = c.send("@label=j JOIN #lan")
    assert start.tags["label"] == "j" and start.params[1] == "labeled-response"
    assert commands(body) == ["JOIN", "353", "366"]
    assert end.params[0] == "-" + start.params[0][1:] and "batch" not in end.tags
    # with history to replay, the playback batch nests inside the labeled one (bob
    # stays: a room that empties is gone, its history with it)
    bob = net.user("bob")
    bob.send("JOIN #lan")
    c.send("PRIVMSG #lan :said before")
    assert "PART" in commands(c.send("PART #lan"))
    start, *body, end = c.send("@label=k JOIN #lan")
    outer = start.params[0][1:]
    assert start.tags["label"] == "k"
    assert commands(body) == ["JOIN", "353", "366", "BATCH", "PRIVMSG", "BATCH"]
    inner = body[3].params[0][1:]
    assert body[3].params[1:] == ("chathistory", "#lan") and body[3].tags["batch"] == outer
    assert body[4].tags["batch"] == inner and body[4].params[-1] == "said before"
    assert end.params == ("-" + outer,) and "batch" not in end.tags


def test_labeled_chathistory_nests_its_batch_in_the_labeled_one(net: Net) -> None:
    c = net.cap_user("alice", [*LABELED, Cap.SERVER_TIME, Cap.DRAFT_CHATHISTORY])
    bob = net.user("bob")
    joined("#lan", c, bob)
    bob.send("PRIVMSG #lan :one")
    bob.send("PRIVMSG #lan :two")
    assert texts(c.take()) == ["one", "two"]
    lines = c.send("@label=h CHATHISTORY LATEST #lan * 10")
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


def test_away_changes_reach_away_notify_peers_only(net: Net) -> None:
    watcher = net.cap_user("watcher", [Cap.AWAY_NOTIFY])
    plain = net.user("plain")
    goer = net.user("goer")
    joined("#lan", watcher, plain, goer)
    assert "306" in commands(goer.send("AWAY :lunch"))
    away = one(watcher.take(), "AWAY")
    assert away.nick == "goer" and away.params == ("lunch",)
    assert "305" in commands(goer.send("AWAY"))
    back = one(watcher.take(), "AWAY")
    assert back.nick == "goer" and back.params == ()
    assert "AWAY" not in commands(plain.take())


def test_joining_while_away_sends_away_after_join_to_cap_holders(net: Net) -> None:
    watcher = net.cap_user("watcher", [Cap.AWAY_NOTIFY])
    plain = net.user("plain")
    joined("#lan", watcher, plain)
    late = net.user("late")
    assert "306" in commands(late.send("AWAY :gone fishing"))
    mine = late.send("JOIN #lan")
    lines = watcher.take()
    joins = [i for i, m in enumerate(lines) if m.command == "JOIN" and m.nick == "late"]
    assert joins and joins[0] < len(lines) - 1, "AWAY must follow the JOIN"
    assert lines[-1].command == "AWAY"
    assert lines[-1].nick == "late" and lines[-1].params == ("gone fishing",)
    assert "AWAY" not in commands(plain.take())
    assert "AWAY" not in commands(mine)  # not told about itself


# --- multi-prefix ----------------------------------------------------------------------------


def test_multi_prefix_in_names_and_who(net: Net) -> None:
    op = net.user("op")
    op.send("JOIN #lan")
    multi = net.cap_user("multi", [Cap.MULTI_PREFIX])
    multi.send("JOIN #lan")
    op.send("MODE #lan +v op")
    assert "MODE" in commands(multi.take())
    assert "@+op" in one(multi.send("NAMES #lan"), "353").params[-1].split()
    names = one(op.send("NAMES #lan"), "353").params[-1].split()
    assert "@op" in names and "@+op" not in names

    def who_flags(c: Client) -> str:
        row = next(m for m in c.send("WHO #lan") if m.command == "352" and m.params[5] == "op")
        return row.params[6]

    assert who_flags(multi) == "H@+"
    assert who_flags(op) == "H@"


# --- setname ---------------------------------------------------------------------------------


def test_setname_reaches_the_user_and_room_peers_with_the_cap(net: Net) -> None:
    alice = net.cap_user("alice", [Cap.SETNAME])
    watcher = net.cap_user("watcher", [Cap.SETNAME])
    plain = net.user("plain")
    stranger = net.cap_user("stranger", [Cap.SETNAME])  # shares no room with alice
    joined("#lan", alice, watcher, plain)
    mine = one(alice.send("SETNAME :Alice Liddell <alice@example.org>"), "SETNAME")
    assert mine.source == alice.source and mine.params == ("Alice Liddell <alice@example.org>",)
    assert str(mine).endswith(" SETNAME :Alice Liddell <alice@example.org>")
    assert one(watcher.take(), "SETNAME") == mine
    assert "SETNAME" not in commands(plain.take())  # never to a client without the cap
    assert stranger.take() == []
    row = one(plain.send("WHOIS alice"), "311")
    assert row.params[-1] == "Alice Liddell <alice@example.org>"
    single = one(alice.send("SETNAME Alice"), "SETNAME")
    assert str(single).endswith(" SETNAME :Alice")  # the realname is always trailing


def test_setname_without_the_cap_changes_the_realname_silently(net: Net) -> None:
    alice = net.user("alice")
    watcher = net.cap_user("watcher", [Cap.SETNAME])
    joined("#lan", alice, watcher)
    assert alice.send("SETNAME :New Name") == []
    assert one(watcher.take(), "SETNAME").params == ("New Name",)
    who = next(m for m in watcher.send("WHO #lan") if m.command == "352" and m.params[5] == "alice")
    assert who.params[-1] == "0 New Name"


@pytest.mark.parametrize("realname", ["", "x" * 151, "é" * 76])
def test_setname_refuses_an_empty_or_too_long_realname(net: Net, realname: str) -> None:
    alice = net.cap_user("alice", [Cap.SETNAME])
    fail = one(alice.send(f"SETNAME :{realname}"), "FAIL")
    assert fail.params == ("SETNAME", "INVALID_REALNAME", "Realname is not valid")
    assert alice.session.user.realname == "alice test"


def test_setname_limit_is_realnamelen_bytes() -> None:
    net = Net(realnamelen=10)
    alice = net.cap_user("alice", [Cap.SETNAME])
    assert one(alice.send("SETNAME :" + "x" * 10), "SETNAME").params == ("x" * 10,)
    assert one(alice.send("SETNAME :" + "x" * 11), "FAIL").params[1] == "INVALID_REALNAME"
    assert one(alice.send("SETNAME :" + "é" * 6), "FAIL").params[1] == "INVALID_REALNAME"


def test_setname_needs_a_parameter_and_registration(net: Net) -> None:
    alice = net.user("alice")
    assert one(alice.send("SETNAME"), "461").params[1] == "SETNAME"
    early = net.connect()
    assert commands(early.send("SETNAME :Too Early")) == ["451"]


def test_labeled_setname_is_the_one_labeled_line(net: Net) -> None:
    alice = net.cap_user("alice", [*LABELED, Cap.SETNAME])
    (line,) = alice.send("@label=s1 SETNAME :Labeled")
    assert line.command == "SETNAME" and line.tags["label"] == "s1"


# --- CHATHISTORY ------------------------------------------------------------------------------


def room_with_history(net: Net, n: int, room: str = "#lan") -> tuple[Client, list[Message]]:
    """A draft/chathistory reader in ``room`` and the ``n`` messages it saw live."""
    reader = net.cap_user("reader", HIST)
    talker = net.user("talker")
    joined(room, reader, talker)
    for i in range(n):
        talker.send(f"PRIVMSG {room} :m{i}")
        time.sleep(0.003)  # mostly distinct milliseconds; tests never rely on it
    live = [m for m in reader.take() if m.command == "PRIVMSG"]
    assert texts(live) == [f"m{i}" for i in range(n)]
    return reader, live


def stamped(live: list[Message], keep: Callable[[str], bool]) -> list[str]:
    """The texts of ``live`` whose server-time ``keep`` accepts (same format: sortable)."""
    return [m.params[-1] for m in live if keep(m.tags["time"])]


def test_latest_star_returns_everything_ascending_with_original_tags(net: Net) -> None:
    reader, live = room_with_history(net, 5)
    batch = chathistory(reader, "LATEST", "#lan", "*", "100")
    assert batch[0].params == (batch[0].params[0], "chathistory", "#lan")
    assert history_texts(batch) == ["m0", "m1", "m2", "m3", "m4"]
    replayed = batch[1:-1]
    assert [m.tags["msgid"] for m in replayed] == [m.tags["msgid"] for m in live]
    assert [m.tags["time"] for m in replayed] == [m.tags["time"] for m in live]
    assert all(m.nick == "talker" and m.params[0] == "#lan" for m in replayed)
    # the newest `limit` of them, still oldest first
    assert history_texts(chathistory(reader, "LATEST", "#lan", "*", "2")) == ["m3", "m4"]


def test_latest_after_a_msgid_or_timestamp_excludes_it(net: Net) -> None:
    reader, live = room_with_history(net, 5)
    mid = live[2].tags
    by_msgid = chathistory(reader, "LATEST", "#lan", f"msgid={mid['msgid']}", "10")
    assert history_texts(by_msgid) == ["m3", "m4"]
    by_time = chathistory(reader, "LATEST", "#lan", f"timestamp={mid['time']}", "10")
    # after that instant, exclusive: m2 and anything stamped in its millisecond are out
    assert history_texts(by_time) == stamped(live, lambda t: t > mid["time"])
    assert "m2" not in history_texts(by_time)
    last = live[-1].tags
    assert history_texts(chathistory(reader, "LATEST", "#lan", f"msgid={last['msgid']}", "9")) == []


def test_before_and_after_are_exclusive(net: Net) -> None:
    reader, live = room_with_history(net, 6)
    ref = live[3].tags["msgid"]
    before = chathistory(reader, "BEFORE", "#lan", f"msgid={ref}", "2")
    assert history_texts(before) == ["m1", "m2"]
    after = chathistory(reader, "AFTER", "#lan", f"msgid={ref}", "10")
    assert history_texts(after) == ["m4", "m5"]
    assert history_texts(chathistory(reader, "AFTER", "#lan", f"msgid={ref}", "1")) == ["m4"]
    stamp = live[3].tags["time"]
    before = chathistory(reader, "BEFORE", "#lan", f"timestamp={stamp}", "10")
    after = chathistory(reader, "AFTER", "#lan", f"timestamp={stamp}", "10")
    assert history_texts(before) == stamped(live, lambda t: t < stamp)
    assert history_texts(after) == stamped(live, lambda t: t > stamp)
    later = "2999-01-01T00:00:00.000Z"
    before_later = chathistory(reader, "BEFORE", "#lan", f"timestamp={later}", "3")
    assert history_texts(before_later) == ["m3", "m4", "m5"]
    assert history_texts(chathistory(reader, "AFTER", "#lan", f"timestamp={later}", "3")) == []
    earlier = "2000-01-01T00:00:00.000Z"
    after_earlier = chathistory(reader, "AFTER", "#lan", f"timestamp={earlier}", "2")
    assert history_texts(after_earlier) == ["m0", "m1"]


def test_around_centres_on_the_reference(net: Net) -> None:
    reader, live = room_with_history(net, 9)
    ref = live[4].tags["msgid"]
    got = history_texts(chathistory(reader, "AROUND", "#lan", f"msgid={ref}", "5"))
    assert len(got) == 5 and "m4" in got
    assert got == sorted(got) and got[0] in ("m2", "m3") and got[-1] in ("m5", "m6")
    assert history_texts(chathistory(reader, "AROUND", "#lan", f"msgid={ref}", "1")) == ["m4"]


def test_between_excludes_both_ends_in_either_direction(net: Net) -> None:
    reader, live = room_with_history(net, 8)
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


def test_limit_is_clamped_to_chathistory_max() -> None:
    net = Net(keep_history=True, chathistory_max=3)
    try:
        reader, _ = room_with_history(net, 5)
        batch = chathistory(reader, "LATEST", "#lan", "*", "1000")
        assert history_texts(batch) == ["m2", "m3", "m4"]
    finally:
        net.close()


def test_chathistory_isupport_advertises_the_maximum() -> None:
    net = Net(chathistory_max=7)
    c = net.connect()
    c.send("NICK alice")
    tokens = [p for m in c.send("USER alice 0 * :Alice") if m.command == "005" for p in m.params]
    assert "CHATHISTORY=7" in tokens and "MSGREFTYPES=msgid,timestamp" in tokens


def test_empty_history_is_an_empty_batch(net: Net) -> None:
    reader = net.cap_user("reader", HIST)
    reader.send("JOIN #quiet")
    batch = chathistory(reader, "LATEST", "#quiet", "*", "10")
    assert commands(batch) == ["BATCH", "BATCH"]
    assert batch[0].params[1:] == ("chathistory", "#quiet")


def test_direct_message_history_has_both_directions(net: Net) -> None:
    alice = net.cap_user("alice", HIST)
    bob = net.cap_user("bob", HIST)
    carol = net.user("carol")
    alice.send("PRIVMSG bob :hi bob")
    assert texts(bob.take()) == ["hi bob"]
    bob.send("PRIVMSG alice :hi alice")
    carol.send("PRIVMSG alice :carol here")
    assert texts(alice.take()) == ["hi alice", "carol here"]
    mine = chathistory(alice, "LATEST", "bob", "*", "10")
    assert mine[0].params[1:] == ("chathistory", "bob")
    assert history_texts(mine) == ["hi bob", "hi alice"]
    lines = mine[1:-1]
    assert [(m.nick, m.params[0]) for m in lines] == [("alice", "bob"), ("bob", "alice")]
    assert history_texts(chathistory(bob, "LATEST", "alice", "*", "10")) == ["hi bob", "hi alice"]
    assert history_texts(chathistory(alice, "LATEST", "carol", "*", "10")) == ["carol here"]
    # carol's conversation with alice is not bob's business
    assert history_texts(chathistory(bob, "LATEST", "carol", "*", "10")) == []


def chathistory_targets(c: Client, start: str, end: str, limit: int = 10) -> list[str]:
    out = c.send(f"CHATHISTORY TARGETS timestamp={start} timestamp={end} {limit}")
    return [m.params[1] for m in out if m.command == "CHATHISTORY"]


def test_targets_lists_rooms_and_correspondents_in_a_targets_batch(net: Net) -> None:
    alice = net.cap_user("alice", HIST)
    bob = net.user("bob")
    for room in ("#one", "#two"):
        joined(room, alice, bob)
    bob.send("PRIVMSG #one :first")
    time.sleep(0.01)  # distinct milliseconds, so the order is defined
    bob.send("PRIVMSG alice :private")
    time.sleep(0.01)
    assert texts(alice.take()) == ["first", "private"]
    alice.send("PRIVMSG #two :last")
    start, *lines, _end = alice.send("CHATHISTORY TARGETS " + " ".join(EVER) + " 10")
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
    everything = chathistory_targets(
        alice, "2000-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z", 1
    )
    assert everything == ["#one"]


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
def test_chathistory_errors_are_standard_replies(net: Net, args: str, code: str) -> None:
    other = net.user("other")
    other.send("JOIN #elsewhere")
    reader = net.cap_user("reader", HIST)
    reader.send("JOIN #lan")
    reply = chathistory(reader, *args.split())
    assert len(reply) == 1, reply
    fail = reply[0]
    assert fail.command == "FAIL" and fail.params[:2] == ("CHATHISTORY", code), fail
    if code == "INVALID_TARGET":
        assert fail.params[3] == args.split()[1]
    # the connection carries on
    assert history_texts(chathistory(reader, "LATEST", "#lan", "*", "1")) == []


def test_chathistory_without_batch_cap_sends_no_batch_lines(net: Net) -> None:
    # batch was never negotiated: no BATCH lines at all (Ergo issue #2066)
    c = net.cap_user("nobatch", [Cap.DRAFT_CHATHISTORY, Cap.SERVER_TIME])
    c.send("JOIN #lan")
    c.send("PRIVMSG #lan :remember me")
    got = c.send("CHATHISTORY LATEST #lan * 10")
    got += c.send("CHATHISTORY TARGETS " + " ".join(EVER) + " 5")
    assert "BATCH" not in commands(got), got
    line = next(m for m in got if says("remember me")(m))
    assert set(line.tags) == {"time"}
    targets = [m for m in got if m.command == "CHATHISTORY"]
    assert [m.params[:2] for m in targets] == [("TARGETS", "#lan")]
