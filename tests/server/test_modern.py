"""Presence and message state over real sockets: MONITOR, bot mode, REDACT, MARKREAD.

Each feature's normal use and its bad input; no test may leave an ERROR in the log.
Expectations come from the IRCv3 specifications (monitor, extended-monitor, bot-mode,
message-redaction, read-marker) and, where they leave a choice, from irctest and Ergo.
"""

from __future__ import annotations

import base64
import doctest
import itertools
import time
from collections.abc import Iterable

import pytest

from chatroom.protocol import Cap, Message
from chatroom.server import tags as T
from chatroom.server.commands import monitor, readmarker, redact
from tests.conftest import read_until

WAIT = 5.0  # seconds; only a broken server waits this long
PASSWORD = "correct-horse"
REDACTORS = (Cap.MESSAGE_TAGS, Cap.ECHO_MESSAGE, Cap.MESSAGE_REDACTION)
HIST = (Cap.BATCH, Cap.SERVER_TIME, Cap.MESSAGE_TAGS, Cap.DRAFT_CHATHISTORY)
_tokens = itertools.count()


pytestmark = pytest.mark.usefixtures("no_errors_logged")


@pytest.fixture
def fx(server_factory):
    """A server with history in memory and no flood control (tests send in bursts)."""
    return server_factory(flood_limit=False)


# --- helpers ------------------------------------------------------------------------------


def sync(c) -> list[Message]:
    """What the server sent ``c`` before it answers a PING sent now (every line for a
    client leaves in posting order, so whatever was relayed before is in it)."""
    token = f"sync{next(_tokens)}"
    c.send(f"PING :{token}")
    return read_until(c, lambda m: m.command == "PONG" and m.params[-1] == token)[:-1]


def say(c, line: str) -> list[Message]:
    """Send one line and return everything up to the server's answer to a PING after it."""
    c.send(line)
    return sync(c)


def only(lines: Iterable[Message], command: str) -> list[Message]:
    return [m for m in lines if m.command == command]


def cap_client(connect, fx, nick: str, caps: Iterable[str] = (), password: str | None = None):
    """A client registered through CAP negotiation with ``caps`` (and PASS, if given)."""
    c = connect(to=fx)
    c.nick = nick
    wanted = " ".join(caps)
    if password is not None:
        c.send(f"PASS {password}")
    c.send("CAP LS 302")
    if wanted:
        c.send(f"CAP REQ :{wanted}")
        reply = c.expect("CAP", where=lambda m: m.params[1] in ("ACK", "NAK"))
        assert reply.params[1:] == ("ACK", wanted), reply
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick} test")
    c.send("CAP END")
    c.expect("001")
    c.expect("376")
    sync(c)
    return c


def sasl_client(connect, fx, nick: str, account: str, caps: Iterable[str] = ()):
    """A client logged in with SASL PLAIN before it registers as ``nick``."""
    c = connect(to=fx)
    c.nick = nick
    wanted = " ".join((Cap.SASL, *caps))
    c.send("CAP LS 302")
    c.send(f"CAP REQ :{wanted}")
    assert c.expect("CAP", where=lambda m: m.params[1] in ("ACK", "NAK")).params[1] == "ACK"
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE")
    secret = base64.b64encode(f"\0{account}\0{PASSWORD}".encode()).decode()
    c.send(f"AUTHENTICATE {secret}")
    c.expect("903")
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick} test")
    c.send("CAP END")
    c.expect("376")
    return c


def make_account(connect, fx, nick: str) -> None:
    c = connect(nick, to=fx)
    c.send(f"REGISTER {nick} * {PASSWORD}")
    c.expect("REGISTER", where=lambda m: m.params[0] == "SUCCESS")
    c.send("QUIT")
    assert c.wait_closed()


def chathistory_texts(c, room: str) -> list[str]:
    c.send(f"CHATHISTORY LATEST {room} * 50")
    start = read_until(c, lambda m: m.command == "BATCH" and m.params[0].startswith("+"))[-1]
    ref = start.params[0][1:]
    lines = read_until(c, lambda m: m.command == "BATCH" and m.params[0] == "-" + ref)
    return [m.params[-1] for m in lines if m.command in ("PRIVMSG", "NOTICE")]


# --- MONITOR ------------------------------------------------------------------------------------


def test_isupport_names_monitor_and_bot(fx, connect) -> None:
    c = connect(to=fx)
    c.send("NICK ann")
    c.send("USER ann 0 * :Ann")
    tokens = read_until(c, lambda m: m.command == "376")
    words = {w for m in only(tokens, "005") for w in m.params[1:-1]}
    assert {"MONITOR=100", "BOT=B"} <= words


def test_monitor_tells_when_a_nick_comes_changes_and_goes(fx, connect) -> None:
    alice = connect("alice", to=fx)
    got = say(alice, "MONITOR + Bob,carol")
    assert [(m.command, m.params[1]) for m in got] == [("731", "Bob,carol")]
    bob = connect("bob", to=fx)
    online = alice.expect("730")
    assert online.params == ("alice", bob.nick + "!bob@127.0.0.1")
    say(bob, "NICK BOB")  # a change of case: still the same nick, nothing to tell
    bob.send("NICK robert")
    assert alice.expect("731").params == ("alice", "BOB")
    bob.send("NICK carol")
    assert alice.expect("730").params[1].startswith("carol!")
    bob.send("QUIT :bye")
    assert alice.expect("731").params == ("alice", "carol")
    assert [m.command for m in sync(alice)] == []


def test_monitor_list_status_remove_and_clear(fx, connect) -> None:
    alice = connect("alice", to=fx)
    connect("bob", to=fx)
    say(alice, "MONITOR + bob,dave,eve")
    listed = say(alice, "MONITOR L")
    assert [m.command for m in listed] == ["732", "733"]
    assert set(listed[0].params[1].split(",")) == {"bob", "dave", "eve"}
    status = say(alice, "MONITOR S")
    assert {(m.command, m.params[1].split("!")[0]) for m in status} == {
        ("730", "bob"),
        ("731", "dave,eve"),
    }
    assert say(alice, "MONITOR - dave,EVE") == []  # casefolded, and silent
    assert say(alice, "MONITOR L")[0].params[1] == "bob"
    assert say(alice, "MONITOR C") == []
    assert [m.command for m in say(alice, "MONITOR L")] == ["733"]


def test_monitor_over_the_limit_gets_734_and_keeps_what_fitted(server_factory, connect) -> None:
    fx = server_factory(flood_limit=False, monitor_max=3)
    alice = connect("alice", to=fx)
    got = say(alice, "MONITOR + a1,a2,a3,a4,a5")
    full = only(got, "734")
    assert [m.params[1:3] for m in full] == [("3", "a4,a5")]
    assert only(got, "731")[0].params[1] == "a1,a2,a3"
    assert set(say(alice, "MONITOR L")[0].params[1].split(",")) == {"a1", "a2", "a3"}
    assert only(say(alice, "MONITOR + a1"), "734") == []  # already there: no room needed


def test_monitor_refuses_masks_and_bad_subcommands(fx, connect) -> None:
    alice = connect("alice", to=fx)
    got = say(alice, "MONITOR + *!user@127.0.0.1,bob")
    assert [m.command for m in got] == ["432", "731"]
    assert got[1].params[1] == "bob"
    assert [m.command for m in say(alice, "MONITOR X")] == ["400"]
    assert [m.command for m in say(alice, "MONITOR +")] == ["461"]
    assert [m.command for m in say(alice, "MONITOR")] == ["461"]
    huge = ",".join(f"n{i}" for i in range(120))
    got = say(alice, f"MONITOR + {huge}")  # one line in, every reply within 512 bytes
    assert only(got, "734") and all(len(str(m)) < 510 for m in got)


def test_a_watch_list_goes_with_its_connection(fx, connect) -> None:
    alice = connect("alice", to=fx)
    say(alice, "MONITOR + bob,carol")
    registry = fx.server.registry
    assert set(registry.watchers) == {"bob", "carol"}
    alice.send("QUIT")
    assert alice.wait_closed()
    deadline = time.monotonic() + WAIT
    while registry.watchers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.watchers == {}


def test_extended_monitor_tells_a_watcher_of_away_and_setname(fx, connect) -> None:
    caps = (Cap.EXTENDED_MONITOR, Cap.AWAY_NOTIFY, Cap.SETNAME)
    alice = cap_client(connect, fx, "alice", caps)
    plain = connect("plain", to=fx)
    bob = cap_client(connect, fx, "bob", (Cap.SETNAME,))
    say(alice, "MONITOR + bob")
    say(plain, "MONITOR + bob")
    bob.send("AWAY :lunch")
    assert alice.expect("AWAY").params == ("lunch",)
    bob.send("SETNAME :Robert")
    assert alice.expect("SETNAME").params == ("Robert",)
    assert [m.command for m in sync(plain)] == []  # no extended-monitor: nothing


# --- bot mode -----------------------------------------------------------------------------------


def test_bot_mode_shows_in_whois_who_and_a_bot_tag(fx, connect) -> None:
    bot = connect("robo", to=fx)
    mode = say(bot, "MODE robo +B")
    assert [(m.command, m.params) for m in mode] == [("MODE", ("robo", "+B"))]
    tagged = cap_client(connect, fx, "tagged", (Cap.MESSAGE_TAGS,))
    plain = connect("plain", to=fx)
    for c in (bot, tagged, plain):
        c.join("#lan")
    whois = say(plain, "WHOIS robo")
    assert [m.params for m in only(whois, "335")] == [("plain", "robo", "is a bot")]
    who = {m.params[5]: m.params[6] for m in only(say(plain, "WHO #lan"), "352")}
    assert "B" in who["robo"] and "B" not in who["plain"]
    whox = only(say(plain, "WHO #lan %nf"), "354")
    assert ("robo", "HB@") in [m.params[1:] for m in whox]
    bot.send("PRIVMSG #lan :beep")
    assert "bot" in tagged.expect("PRIVMSG").tags
    assert plain.expect("PRIVMSG").tags == {}
    bot.send("PRIVMSG tagged :boop")  # private too
    assert tagged.expect("PRIVMSG").tags["bot"] == ""
    say(bot, "MODE robo -B")
    bot.send("PRIVMSG #lan :human now")
    assert "bot" not in tagged.expect("PRIVMSG").tags
    assert only(say(plain, "WHOIS robo"), "335") == []


def test_who_gives_away_and_bot_state_to_whoever_joins(fx, connect) -> None:
    alice = connect("alice", to=fx)
    alice.join("#lan")
    say(alice, "AWAY :out")
    say(alice, "MODE alice +B")
    bob = cap_client(connect, fx, "bob", (Cap.AWAY_NOTIFY,))
    bob.join("#lan")
    flags = {m.params[5]: m.params[6] for m in only(say(bob, "WHO #lan"), "352")}
    assert flags == {"alice": "GB@", "bob": "H"}
    carol = cap_client(connect, fx, "carol", (Cap.AWAY_NOTIFY,))
    carol.join("#lan")
    say(alice, "PART #lan")
    alice.send("JOIN #lan")
    assert carol.expect("AWAY").params == ("out",)  # away-notify on join


# --- REDACT -------------------------------------------------------------------------------------


def _room_of_three(fx, connect, room: str = "#lan"):
    """alice (the room's operator) and bob with redaction, carol without; all in ``room``."""
    alice = cap_client(connect, fx, "alice", (*REDACTORS, Cap.BATCH, Cap.DRAFT_CHATHISTORY))
    alice.join(room)
    bob = cap_client(connect, fx, "bob", (*REDACTORS, Cap.BATCH, Cap.DRAFT_CHATHISTORY))
    bob.join(room)
    carol = cap_client(connect, fx, "carol", (Cap.MESSAGE_TAGS,))
    carol.join(room)
    for c in (alice, bob, carol):
        sync(c)
    return alice, bob, carol


def _said(c, target: str, text: str) -> str:
    """Send a PRIVMSG with echo-message and return its msgid."""
    c.send(f"PRIVMSG {target} :{text}")
    return c.expect("PRIVMSG", where=lambda m: m.params[-1] == text).tags["msgid"]


def test_redact_deletes_your_own_message_for_everyone(fx, connect) -> None:
    alice, bob, carol = _room_of_three(fx, connect)
    msgid = _said(alice, "#lan", "oops")
    _said(alice, "#lan", "kept")
    assert chathistory_texts(bob, "#lan") == ["oops", "kept"]
    alice.send(f"REDACT #lan {msgid}")
    mine = alice.expect("REDACT")
    theirs = bob.expect("REDACT")
    for m in (mine, theirs):
        assert m.params == ("#lan", msgid) and m.source.startswith("alice!")
        assert "msgid" in m.tags
    assert chathistory_texts(bob, "#lan") == ["kept"]
    assert only(sync(carol), "REDACT") == []  # no capability: not told
    # asked at once, on the same connection: the deletion is already done
    msgid = _said(alice, "#lan", "second thoughts")
    alice.send(f"REDACT #lan {msgid} :typo")
    assert chathistory_texts(alice, "#lan") == ["kept"]
    assert bob.expect("REDACT").params == ("#lan", msgid, "typo")


def test_a_labeled_redact_is_answered_by_its_own_relay(fx, connect) -> None:
    alice = cap_client(connect, fx, "alice", (*REDACTORS, Cap.LABELED_RESPONSE, Cap.BATCH))
    alice.join("#lan")
    msgid = _said(alice, "#lan", "hm")
    alice.send(f"@label=r1 REDACT #lan {msgid}")
    redact = alice.expect("REDACT")
    assert redact.tags["label"] == "r1" and redact.params == ("#lan", msgid)
    alice.send("@label=r2 REDACT #lan nosuchid")
    assert alice.expect("FAIL").tags["label"] == "r2"


def test_redact_of_someone_elses_message_is_refused_and_deletes_nothing(fx, connect) -> None:
    alice, bob, _carol = _room_of_three(fx, connect)
    msgid = _said(alice, "#lan", "mine")
    got = say(bob, f"REDACT #lan {msgid}")
    assert [m.params[:4] for m in only(got, "FAIL")] == [
        ("REDACT", "REDACT_FORBIDDEN", "#lan", msgid)
    ]
    assert only(sync(alice), "REDACT") == []
    assert chathistory_texts(bob, "#lan") == ["mine"]


def test_a_room_operator_may_redact_anyones_message(fx, connect) -> None:
    alice, bob, _carol = _room_of_three(fx, connect)
    msgid = _said(bob, "#lan", "spam spam")
    alice.send(f"REDACT #lan {msgid} :no spam here")
    assert bob.expect("REDACT").params == ("#lan", msgid, "no spam here")
    assert alice.expect("REDACT").source.startswith("alice!")
    assert chathistory_texts(alice, "#lan") == []


def test_redact_refusals(fx, connect) -> None:
    alice, _bob, _carol = _room_of_three(fx, connect)
    connect("dave", to=fx).join("#other")

    def fail(line: str) -> tuple[str, ...]:
        (found,) = only(say(alice, line), "FAIL")
        return found.params[:-1]

    assert fail("REDACT #lan nosuchid") == ("REDACT", "UNKNOWN_MSGID", "#lan", "nosuchid")
    assert fail("REDACT #other x") == ("REDACT", "INVALID_TARGET", "#other")
    assert fail("REDACT #nowhere x") == ("REDACT", "INVALID_TARGET", "#nowhere")
    assert fail("REDACT 9bad x") == ("REDACT", "INVALID_TARGET", "9bad")
    assert fail("REDACT #lan " + "x" * 300) == ("REDACT", "UNKNOWN_MSGID", "#lan", "*")
    # a msgid of another room is not this room's
    alice.join("#two")
    elsewhere = _said(alice, "#two", "there")
    assert fail(f"REDACT #lan {elsewhere}")[1] == "UNKNOWN_MSGID"
    assert only(say(alice, "REDACT #lan"), "461")


def test_redact_in_a_private_conversation_only_your_own(fx, connect) -> None:
    caps = (*REDACTORS, Cap.BATCH, Cap.DRAFT_CHATHISTORY)
    alice = cap_client(connect, fx, "alice", caps)
    bob = cap_client(connect, fx, "bob", caps)
    msgid = _said(alice, "bob", "psst")
    bob.expect("PRIVMSG")
    got = say(bob, f"REDACT alice {msgid}")
    assert only(got, "FAIL")[0].params[1] == "REDACT_FORBIDDEN"
    alice.send(f"REDACT bob {msgid}")
    for c in (alice, bob):
        assert c.expect("REDACT").params == ("bob", msgid)
    assert chathistory_texts(bob, "alice") == []


def test_a_redacted_message_stays_gone_after_a_restart(server_factory, connect, tmp_path) -> None:
    fx = server_factory(flood_limit=False, db=str(tmp_path / "h.db"))
    alice, bob, _carol = _room_of_three(fx, connect)
    gone = _said(alice, "#lan", "gone")
    _said(alice, "#lan", "stays")
    alice.send(f"REDACT #lan {gone}")
    bob.expect("REDACT")
    fx.restart()
    again = cap_client(connect, fx, "again", HIST)
    again.join("#lan")
    assert chathistory_texts(again, "#lan") == ["stays"]


def test_without_history_nothing_is_offered_and_redact_says_why(server_factory, connect) -> None:
    fx = server_factory(flood_limit=False, history=False)
    alice = connect("alice", to=fx)
    alice.join("#lan")
    (found,) = only(say(alice, "REDACT #lan abc"), "FAIL")
    assert found.params[:4] == ("REDACT", "UNKNOWN_MSGID", "#lan", "abc")
    alice.send("CAP LS 302")
    offered = alice.expect("CAP").params[-1].split()
    assert Cap.MESSAGE_REDACTION not in offered and Cap.READ_MARKER in offered


# --- MARKREAD -----------------------------------------------------------------------------------

TS1, TS2 = "2024-05-01T10:00:00.000Z", "2024-06-01T12:30:00.250Z"


def markread(c, line: str) -> tuple[str, ...]:
    """The MARKREAD (or FAIL) that answers ``line``."""
    (found,) = [m for m in say(c, line) if m.command in ("MARKREAD", "FAIL")]
    return (found.command, *found.params)


def test_markread_sets_gets_and_never_moves_back(fx, connect) -> None:
    alice = cap_client(connect, fx, "alice", (Cap.READ_MARKER,))
    assert markread(alice, "MARKREAD #lan") == ("MARKREAD", "#lan", "*")
    assert markread(alice, f"MARKREAD #lan timestamp={TS2}") == (
        "MARKREAD",
        "#lan",
        f"timestamp={TS2}",
    )
    assert markread(alice, f"MARKREAD #LAN timestamp={TS1}")[2] == f"timestamp={TS2}"
    assert markread(alice, "MARKREAD #Lan") == ("MARKREAD", "#Lan", f"timestamp={TS2}")
    assert markread(alice, f"MARKREAD bob timestamp={TS1}")[2] == f"timestamp={TS1}"
    future = T.server_time(T.now_ms() + 86_400_000)
    moved = markread(alice, f"MARKREAD bob timestamp={future}")[2]
    assert T.parse_server_time(moved.removeprefix("timestamp=")) <= T.now_ms()  # clamped


def test_markread_comes_after_join_before_the_end_of_names(fx, connect) -> None:
    alice = cap_client(connect, fx, "alice", (Cap.READ_MARKER,))
    bob = connect("bob", to=fx)
    alice.send("JOIN #lan")
    got = read_until(alice, lambda m: m.command == "366")
    assert [m.command for m in got if m.command in ("JOIN", "MARKREAD", "366")] == [
        "JOIN",
        "MARKREAD",
        "366",
    ]
    assert only(got, "MARKREAD")[0].params == ("#lan", "*")
    markread(alice, f"MARKREAD #lan timestamp={TS1}")
    say(alice, "PART #lan")
    alice.send("JOIN #LAN")  # the room emptied: a new one, its name as written now
    got = read_until(alice, lambda m: m.command == "366")
    assert only(got, "MARKREAD")[0].params == ("#LAN", f"timestamp={TS1}")
    bob.send("JOIN #lan")  # no capability: no MARKREAD
    assert only(read_until(bob, lambda m: m.command == "366"), "MARKREAD") == []


def test_markread_bad_input_is_refused_and_stores_nothing(fx, connect) -> None:
    alice = cap_client(connect, fx, "alice", (Cap.READ_MARKER,))
    for bad in (
        "timestamp=not-a-timestamp",
        "*",
        "2024-05-01T10:00:00.000Z",
        "timestamp=2024-05-01",
        "timestamp=2024-13-01T10:00:00.000Z",
        "timestamp=\uff12\uff10\uff12\uff14-05-01T10:00:00.000Z",  # fullwidth digits
        "timestamp=0000-01-01T00:00:00.000Z",
    ):
        assert markread(alice, f"MARKREAD #lan {bad}")[1:3] == ("MARKREAD", "INVALID_PARAMS"), bad
    assert markread(alice, "MARKREAD #lan") == ("MARKREAD", "#lan", "*")
    assert markread(alice, "MARKREAD")[1:3] == ("MARKREAD", "NEED_MORE_PARAMS")
    assert markread(alice, "MARKREAD bad,target")[1:3] == ("MARKREAD", "INVALID_PARAMS")
    assert markread(alice, "MARKREAD #" + "x" * 60)[1:3] == ("MARKREAD", "INVALID_PARAMS")


def test_markread_without_an_account_is_bounded(server_factory, connect) -> None:
    fx = server_factory(flood_limit=False, read_markers_max=2)
    alice = cap_client(connect, fx, "alice", (Cap.READ_MARKER,))
    for room in ("#a", "#b", "#c"):
        markread(alice, f"MARKREAD {room} timestamp={TS1}")
    assert markread(alice, "MARKREAD #a")[2] == "*"  # the least recently moved went
    assert markread(alice, "MARKREAD #c")[2] == f"timestamp={TS1}"
    bob = cap_client(connect, fx, "bob", (Cap.READ_MARKER,))
    assert markread(bob, "MARKREAD #c")[2] == "*"  # another connection's own


def test_markread_is_the_accounts_and_reaches_its_other_connections(
    server_factory, connect, tmp_path
) -> None:
    fx = server_factory(flood_limit=False, db=str(tmp_path / "h.db"), password_min_length=1)
    make_account(connect, fx, "alice")
    one = cap_client(connect, fx, "alice", (Cap.READ_MARKER,), f"alice:{PASSWORD}")
    two = cap_client(connect, fx, "alice2", (Cap.READ_MARKER,), f"alice:{PASSWORD}")
    old = cap_client(connect, fx, "alice3", (), f"alice:{PASSWORD}")
    stranger = cap_client(connect, fx, "mallory", (Cap.READ_MARKER,))
    one.join("#lan")
    assert markread(one, f"MARKREAD #lan timestamp={TS2}")[2] == f"timestamp={TS2}"
    assert two.expect("MARKREAD").params == ("#lan", f"timestamp={TS2}")
    markread(one, f"MARKREAD #lan timestamp={TS1}")  # older: nothing moved, nobody told
    assert only(sync(two), "MARKREAD") == []
    assert only(sync(old), "MARKREAD") == []  # no capability
    assert only(sync(stranger), "MARKREAD") == []
    assert markread(stranger, "MARKREAD #lan")[2] == "*"
    fx.restart()
    again = cap_client(connect, fx, "alice", (Cap.READ_MARKER,), f"alice:{PASSWORD}")
    again.send("JOIN #lan")
    got = read_until(again, lambda m: m.command == "366")
    assert only(got, "MARKREAD")[0].params == ("#lan", f"timestamp={TS2}")


def test_a_second_device_of_the_account_gets_a_nick_beside_its_own(fx, connect) -> None:
    make_account(connect, fx, "alice")
    laptop = sasl_client(connect, fx, "alice", "alice", (Cap.READ_MARKER,))
    phone = connect(to=fx)
    phone.nick = "alice"
    phone.send("CAP LS 302")
    phone.send("CAP REQ :sasl draft/read-marker")
    phone.send("AUTHENTICATE PLAIN")
    phone.expect("AUTHENTICATE")
    phone.send("AUTHENTICATE " + base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode())
    phone.expect("903")
    phone.send("NICK alice")
    phone.send("USER alice 0 * :phone")
    phone.send("CAP END")
    burst = read_until(phone, lambda m: m.command == "376")
    assert only(burst, "001")[0].params[0] == "alice_"
    assert any("in use by your other connection" in m.params[-1] for m in only(burst, "NOTICE"))
    markread(laptop, f"MARKREAD #lan timestamp={TS1}")
    assert phone.expect("MARKREAD").params == ("#lan", f"timestamp={TS1}")
    stranger = connect(to=fx)  # not logged in: the nick is simply taken
    stranger.send("NICK alice")
    stranger.expect("433")


@pytest.mark.parametrize("module", [monitor, readmarker, redact])
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted and not result.failed
