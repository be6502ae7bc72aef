"""Hostile lines that used to stop the server, raise, or leak what a room hides.

Each test here failed on the code before the hardening issue: over real sockets, a
line from one client either froze everyone, raised (no reply at all), or gave an
outsider what a secret or invite-only room keeps to itself.
"""

from __future__ import annotations

import threading
import time

import pytest

from chatroom.protocol import Cap

# what a client that reads history asks for
HISTORY_CAPS = f"{Cap.BATCH} {Cap.SERVER_TIME} {Cap.MESSAGE_TAGS} {Cap.DRAFT_CHATHISTORY}"


@pytest.fixture
def fx(server_factory):
    return server_factory(flood_limit=False)


def _pong(c, token: str = "alive", timeout: float = 5.0) -> None:
    """The server still answers this client, and quickly."""
    c.send(f"PING {token}")
    c.expect("PONG", where=lambda m: m.params[-1] == token, timeout=timeout)


def _chat_works(a, b, room: str = "#bystanders") -> None:
    a.send(f"PRIVMSG {room} :still here?")
    got = b.expect("PRIVMSG", where=lambda m: m.params[0] == room)
    assert got.params[1] == "still here?"


# --- 1. one line stops everyone ---------------------------------------------------------


def test_huge_room_limit_is_refused_and_history_keeps_flowing(fx, connect):
    a, b = connect("alice", to=fx), connect("bob", to=fx)
    for c in (a, b):
        c.join("#bystanders")
    a.join("#r")
    a.send("MODE #r +l 9223372036854775808")
    err = a.expect("696")  # ERR_INVALIDMODEPARAM
    assert err.params[1:4] == ("#r", "l", "9223372036854775808")
    a.send("MODE #r +l 9223372036854775807")  # beyond any room: refused the same way
    a.expect("696")
    a.send("MODE #r")
    assert "l" not in a.expect("324").params[2]
    _pong(a)
    _chat_works(a, b)
    # a newcomer still gets welcomed: the pipeline in front of the writer is alive
    connect("carol", to=fx)


def test_sane_room_limit_still_works(fx, connect):
    a = connect("alice", to=fx)
    a.join("#r")
    a.send("MODE #r +l 25")
    mode = a.expect("MODE")
    assert mode.params[1:] == ("+l", "25")


# --- 2. a mask that backtracks ---------------------------------------------------------


def test_pathological_who_mask_freezes_nobody(fx, connect):
    victim = connect(to=fx)
    victim.nick = "victim"
    victim.send("NICK victim")
    victim.send("USER v 0 * :" + "a" * 60)
    victim.expect("376")
    a, b = connect("alice", to=fx), connect("bob", to=fx)
    for c in (a, b):
        c.join("#bystanders")
    asker = connect("asker", to=fx)
    started = time.monotonic()
    asker.send("WHO " + "*a" * 12 + "*b")
    asker.expect("315", timeout=5)  # end of WHO, nobody matched
    _chat_works(a, b)
    assert time.monotonic() - started < 5
    # and a mask that does match still finds the long realname
    asker.send("WHO " + "*a" * 12 + "*")
    row = asker.expect("352")
    assert row.params[5] == "victim"


def test_who_mask_longer_than_masklen_matches_nobody(server_factory, connect):
    fx = server_factory(flood_limit=False, masklen=16)
    a = connect("alice", to=fx)
    a.send("WHO " + "*" * 17)
    end = a.expect("315")
    assert not [m for m in a.collect(0.2) if m.command == "352"]
    assert end.params[1] == "*" * 17
    a.send("WHO al*")
    assert a.expect("352").params[5] == "alice"


# --- 3. numbers that isdigit() accepts and int() refuses ---------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("WHOWAS nobody ²", "406"),  # ERR_WASNOSUCHNICK, as for any unknown nick
        ("MODE #r +l ²", "696"),
        ("CHATHISTORY LATEST #r * ²", "FAIL"),
        ("CHATHISTORY LATEST #r * 99999999999999999999999", "FAIL"),
    ],
)
def test_unicode_digits_get_the_commands_normal_error(fx, connect, line, reply):
    a = connect("alice", to=fx)
    a.join("#r")
    a.send(line)
    got = a.expect(reply)
    if reply == "FAIL":
        assert got.params[:2] == ("CHATHISTORY", "INVALID_PARAMS")
    _pong(a)


def test_cap_ls_with_unicode_digit_version_still_lists_caps(fx, connect):
    c = connect(to=fx)
    c.send("CAP LS ²")
    ls = c.expect("CAP")
    assert ls.params[1] == "LS" and Cap.BATCH in ls.params[-1].split()
    c.send("CAP END")
    c.register("alice")


# --- 4. error replies that could not be serialised ------------------------------------


@pytest.mark.parametrize("line", ["CHATHISTORY :a b", "CHATHISTORY :", "CHATHISTORY LATEST :a b"])
def test_chathistory_errors_always_serialise(fx, connect, line):
    a = connect("alice", to=fx)
    a.send(line)
    fail = a.expect("FAIL")
    assert fail.params[0] == "CHATHISTORY"
    assert all(p and " " not in p for p in fail.params[:-1])
    _pong(a)


# --- 7. an invitation belongs to the connection ---------------------------------------


def test_invitation_does_not_pass_with_the_nick(fx, connect):
    op, guest, thief = connect("op", to=fx), connect("guest", to=fx), connect("thief", to=fx)
    op.join("#club")
    op.send("MODE #club +i")
    op.expect("MODE")
    op.send("INVITE guest #club")
    op.expect("341")
    guest.expect("INVITE")
    guest.send("NICK guest2")
    guest.expect("NICK")
    thief.send("NICK guest")
    thief.expect("NICK")
    thief.send("JOIN #club")
    thief.expect("473")  # ERR_INVITEONLYCHAN: the invitation went with guest2
    guest.join("#club")  # ... who can still use it under the new nick


# --- 8. no nick is held before the server password --------------------------------------


def test_nick_is_not_reserved_before_the_password(server_factory, connect):
    fx = server_factory(flood_limit=False, password="sesame")
    squatter = connect(to=fx)
    squatter.send("NICK alice")
    squatter.collect(0.2)
    alice = connect(to=fx)
    alice.send("PASS sesame")
    alice.register("alice")  # gets 001 as alice, not 433
    # the squatter, if it ever gives the password, finds the nick taken
    squatter.send("PASS sesame")
    squatter.send("USER s 0 * :s")
    squatter.expect("433")
    squatter.send("NICK squatter")
    squatter.expect("001")


def test_wrong_password_still_ends_registration(server_factory, connect):
    fx = server_factory(flood_limit=False, password="sesame")
    c = connect(to=fx)
    c.send("PASS wrong")
    c.send("NICK alice")
    c.send("USER a 0 * :a")
    c.expect("464")
    assert c.wait_closed()


# --- 9. a secret room looks like no room -----------------------------------------------


def test_secret_room_looks_like_no_room_to_outsiders(fx, connect):
    member, outsider = connect("member", to=fx), connect("outsider", to=fx)
    member.join("#secret")
    member.send("MODE #secret +s")
    member.expect("MODE")
    for line in (
        "MODE #secret",
        "PRIVMSG #secret :hello?",
        "TOPIC #secret",
        "TOPIC #secret :mine now",
        "KICK #secret member",
        "INVITE outsider #secret",
        "PART #secret",
    ):
        outsider.send(line)
        got = outsider.expect("403", timeout=3)
        assert got.params[1] == "#secret", line
    # and not a trace of 324/329/442/404/482 in between
    leaked = [m for m in outsider.collect(0.2) if m.command in ("324", "329", "404", "442", "482")]
    assert not leaked
    # a member sees the room as it is
    member.send("MODE #secret")
    assert "s" in member.expect("324").params[2]


def test_a_public_room_still_says_why_an_outsider_cannot_speak(fx, connect):
    member, outsider = connect("member", to=fx), connect("outsider", to=fx)
    member.join("#public")  # +nt: outsiders cannot send to it
    outsider.send("PRIVMSG #public :hello?")
    outsider.expect("404")


# --- what the server does with everyone watching: a bystander pair never stalls ---------


def test_bystanders_keep_talking_while_a_hostile_client_sends_everything(fx, connect):
    a, b = connect("alice", to=fx), connect("bob", to=fx)
    for c in (a, b):
        c.join("#bystanders")
    hostile = connect("mallory", to=fx)
    hostile.join("#r")
    stop = threading.Event()
    errors: list[str] = []

    def chatter() -> None:
        n = 0
        while not stop.is_set() and n < 50:
            try:
                _chat_works(a, b)
            except AssertionError as e:  # pragma: no cover - the failure being tested
                errors.append(str(e))
                return
            n += 1

    t = threading.Thread(target=chatter)
    t.start()
    for line in (
        "MODE #r +l 9223372036854775808",
        "WHO " + "*a" * 10 + "*b",
        "WHOWAS x ²",
        "CHATHISTORY :a b",
        "CAP LS ²",
        "CHATHISTORY LATEST #r * ²",
    ):
        hostile.send(line)
    _pong(hostile)
    stop.set()
    t.join(10)
    assert not errors


# --- 5. history on JOIN right after a restart ------------------------------------------


def test_plain_client_gets_history_on_join_right_after_a_restart(server_factory, connect, tmp_path):
    fx = server_factory(flood_limit=False, db=str(tmp_path / "h.sqlite3"))
    alice = connect("alice", to=fx)
    alice.join("#lan")
    alice.send("PRIVMSG #lan :said before the restart")
    alice.send("PING sync")
    alice.expect("PONG")
    fx.restart()
    bob = connect("bob", to=fx)  # no chathistory, and nobody has spoken since the start
    bob.send("JOIN #lan")
    replay = bob.expect("PRIVMSG", timeout=3)
    assert replay.params[1].endswith("said before the restart")
    assert replay.params[1].startswith("[history ")


# --- 6. a room that empties is gone ------------------------------------------------------


def test_a_secret_room_that_empties_gives_a_stranger_nothing(server_factory, connect, tmp_path):
    fx = server_factory(flood_limit=False, db=str(tmp_path / "h.sqlite3"))
    owner = connect("owner", to=fx)
    owner.join("#secret")
    owner.send("MODE #secret +si")
    owner.expect("MODE")
    owner.send("TOPIC #secret :plans")
    owner.expect("TOPIC")
    owner.send("PRIVMSG #secret :the password is swordfish")
    owner.send("PART #secret")
    owner.expect("PART")
    stranger = connect("stranger", to=fx)
    stranger.send("JOIN #secret")
    names = stranger.expect("353")
    assert names.params[-1] == "@stranger"  # a new room: its first member is operator
    seen = stranger.collect(0.3)
    assert not [m for m in seen if m.command == "PRIVMSG"], "old history was replayed"
    assert not [m for m in seen if m.command == "332"], "the old topic came back"
    stranger.send("MODE #secret")
    assert stranger.expect("324").params[2] == "+nt"  # the old +si went with the room
    stranger.send(f"CAP REQ :{HISTORY_CAPS}")
    stranger.expect("CAP")
    stranger.send("CHATHISTORY LATEST #secret * 100")
    batch = [m for m in stranger.collect(0.3) if m.command == "PRIVMSG"]
    assert batch == []
    # ... and so after a restart too: the cutoff is kept with the room's name
    fx.restart()
    again = connect("again", to=fx)
    again.send("JOIN #secret")
    again.expect("366")
    assert not [m for m in again.collect(0.3) if m.command in ("PRIVMSG", "332")]


def test_history_of_a_room_that_stays_alive_is_served(server_factory, connect, tmp_path):
    fx = server_factory(flood_limit=False, db=str(tmp_path / "h.sqlite3"))
    a, b = connect("alice", to=fx), connect("bob", to=fx)
    a.join("#lan")
    b.join("#lan")
    a.send("PRIVMSG #lan :bob stays, so this stays")
    b.expect("PRIVMSG")
    a.send("PART #lan")
    a.expect("PART")
    a.send("JOIN #lan")
    assert a.expect("PRIVMSG").params[1].endswith("bob stays, so this stays")


def test_an_invitation_ends_with_the_room(server_factory, connect):
    fx = server_factory(flood_limit=False)
    op, guest = connect("op", to=fx), connect("guest", to=fx)
    op.join("#club")
    op.send("MODE #club +i")
    op.expect("MODE")
    op.send("INVITE guest #club")
    guest.expect("INVITE")
    op.send("PART #club")
    op.expect("PART")
    guest.join("#club")  # a new, open room: the invitation was to the old one
    guest.send("MODE #club")
    assert guest.expect("324").params[2] == "+nt"


# --- 13. a history read that fails gets an answer --------------------------------------


def test_a_failing_history_read_gets_fail_message_error(server_factory, connect, tmp_path):
    from chatroom.server.records import ID_TIME_SHIFT, StoredMessage
    from chatroom.server.store import HistoryStore

    db = tmp_path / "h.sqlite3"
    store = HistoryStore(db)
    base = 1_700_000_000_000
    store.write(
        [
            StoredMessage(
                (base + n) << ID_TIME_SHIFT,
                f"m{n}",
                base + n,
                "#r",
                "#r",
                "a!a@h",
                "PRIVMSG",
                "x" * 200,
            )
            for n in range(4000)
        ]
    )
    store.close()
    fx = server_factory(flood_limit=False, db=str(db))  # intact at start: quick_check passes
    pages = db.stat().st_size // 4096
    with open(db, "r+b") as f:  # then the disk goes bad under the running server
        for page in range(2, pages - 1):
            f.seek(page * 4096)
            f.write(b"\xa5" * 4096)
    c = connect(to=fx)
    c.send(f"CAP REQ :{HISTORY_CAPS}")
    c.expect("CAP")
    c.send("CAP END")
    c.register("alice")
    c.join("#r")
    c.send("CHATHISTORY LATEST #r * 1000")
    fail = c.expect("FAIL")
    assert fail.params[:2] == ("CHATHISTORY", "MESSAGE_ERROR")
    plain = connect("bob", to=fx)  # playback on JOIN: a notice, not silence
    plain.send("JOIN #r")
    plain.expect("NOTICE", where=lambda m: "cannot be read" in m.params[-1])
    _pong(plain)


def test_reply_text_helpers_doctests():
    import doctest

    from chatroom.server import text

    result = doctest.testmod(text)
    assert result.attempted and not result.failed


# --- 18. memory under churn: a TAGMSG makes no new fan-out group -----------------------


def test_tagmsg_reaches_only_tag_speakers_and_adds_no_fanout_groups(server_factory, connect):
    fx = server_factory(flood_limit=False)
    taggers, plain = [], []
    for i in range(12):  # past the writer's GROUP_MIN: fanned out by variant group
        c = connect(to=fx)
        c.nick = f"u{i}"
        if i % 2 == 0:
            c.send("CAP REQ :message-tags")
            c.expect("CAP")
            c.send("CAP END")
            taggers.append(c)
        else:
            plain.append(c)
        c.register(f"u{i}")
        c.join("#big")
    sender = taggers[0]
    sender.collect(0.3)
    groups_before = len(fx.server.writer._groups)
    for n in range(40):  # one fan-out group each, before: the writer's cache churned
        sender.send("@+typing=active TAGMSG #big")
        sender.send(f"PRIVMSG #big :line {n}")
    for c in taggers[1:]:
        got = [m for m in c.collect(0.5) if m.command in ("TAGMSG", "PRIVMSG")]
        assert sum(m.command == "TAGMSG" for m in got) == 40
        assert got[-1].params[1] == "line 39"
    for c in plain:
        got = [m for m in c.collect(0.5) if m.command in ("TAGMSG", "PRIVMSG")]
        assert [m.command for m in got] == ["PRIVMSG"] * 40  # no TAGMSG, no empty line
    assert len(fx.server.writer._groups) <= groups_before + 1
