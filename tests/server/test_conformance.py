"""What irctest and the specs check beyond the basics, without sockets (session_harness.py).

Each test names the irctest case or spec it follows; where a spec leaves the choice,
Ergo's behaviour is the model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from session_harness import Client, Net, all_of, commands, isupport, names_in, one

from chatroom.protocol import Cap

LABELED = [Cap.LABELED_RESPONSE, Cap.BATCH, Cap.MESSAGE_TAGS]


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net(keep_history=True)
    yield n
    n.close()


# --- item: userhost-in-names, unknown commands --------------------------------------------------


def test_userhost_in_names_is_offered_and_names_carries_nick_user_host(net: Net) -> None:
    # irctest cap.py testReqTwo / testReqOneThenOne / testReqPostRegistration
    full = net.cap_user("full", [Cap.MULTI_PREFIX, Cap.USERHOST_IN_NAMES])
    listed = one(full.send("CAP LIST"), "CAP").params[-1].split()
    assert sorted(listed) == [Cap.MULTI_PREFIX, Cap.USERHOST_IN_NAMES]
    plain = net.user("plain")
    net.room("#lan", full, plain)
    assert names_in(full.send("NAMES #lan")) == {f"@{full.source}", plain.source}
    assert names_in(plain.send("NAMES #lan")) == {"@full", "plain"}
    # on JOIN too
    late = net.cap_user("late", [Cap.USERHOST_IN_NAMES])
    assert late.source in names_in(late.send("JOIN #lan"))


@pytest.mark.parametrize("word", ["NONEXISTENT_COMMAND", "NO-SUCH", "NOSUCHCOMMAND"])
def test_unknown_command_gets_421_with_its_label(net: Net, word: str) -> None:
    # irctest labeled_responses.py testUnknownCommand: one line, 421, labeled
    c = net.cap_user("alice", LABELED)
    (reply,) = c.send(f"@label=deadbeef {word}")
    assert reply.command == "421" and reply.tags == {"label": "deadbeef"}
    assert reply.params[1] == word
    plain = net.user("plain")
    assert one(plain.send(f"{word} x"), "421").params[1:] == (word, "Unknown command")


def test_unknown_command_before_registration_is_451(net: Net) -> None:
    c = net.connect()
    assert commands(c.send("NONEXISTENT_COMMAND")) == ["451"]


# --- item: core conformance -----------------------------------------------------------------


def test_user_with_an_empty_realname_is_461(net: Net) -> None:
    # irctest ConnectionRegistrationTestCase::testEmptyRealname (modern-irc #85)
    c = net.connect()
    c.send("NICK foo")
    reply = one(c.send("USER username * * :"), "461")
    assert reply.params[1] == "USER"
    assert "001" in commands(c.send("USER username * * :Real Name"))


def test_names_of_several_rooms_ends_once_with_the_list_as_given(net: Net) -> None:
    # irctest NamesTestCase::testNamesMultipleChannels2812
    c = net.user("nick1")
    c.send("JOIN #chan1")
    c.send("JOIN #chan2")
    out = c.send("NAMES #chan1,#chan2,#nowhere")
    assert [(m.command, *m.params[1:]) for m in out] == [
        ("353", "=", "#chan1", "@nick1"),
        ("353", "=", "#chan2", "@nick1"),
        ("366", "#chan1,#chan2,#nowhere", "End of /NAMES list"),
    ]
    assert [m.params[1] for m in c.send("NAMES #CHAN1")] == ["=", "#chan1"]


def test_who_a_plain_nick_shows_an_invisible_user_but_a_mask_does_not(net: Net) -> None:
    # irctest WhoInvisibleTestCase::testWhoInvisible
    evan = net.user("evan")
    evan.send("MODE evan +i")
    shiv = net.user("shivaram")
    assert commands(shiv.send("WHO eva*")) == ["315"]
    assert commands(shiv.send("WHO evan")) == ["352", "315"]
    assert commands(shiv.send("WHO EVAN")) == ["352", "315"]
    net.room("#test", evan, shiv)
    assert commands(shiv.send("WHO eva*")) == ["352", "315"]


@pytest.mark.parametrize("line", ["KICK #chan,#chan bar,baz :bye", "KICK #chan bar,baz :bye"])
def test_kick_of_several_sends_one_kick_per_user(net: Net, line: str) -> None:
    # irctest KickTestCase::testDoubleKickMessages (RFC 2812 3.2.8: never several in one)
    foo, bar, baz, qux = (net.user(n) for n in ("foo", "bar", "baz", "qux"))
    net.room("#chan", foo, bar, baz, qux)
    foo.send(line)
    kicks = all_of(qux.take(), "KICK")
    assert [k.params for k in kicks] == [("#chan", "bar", "bye"), ("#chan", "baz", "bye")]


def test_kick_pairs_rooms_with_nicks_and_refuses_a_mismatch(net: Net) -> None:
    op, bar, baz = net.user("op"), net.user("bar"), net.user("baz")
    net.room("#a", op, bar)
    net.room("#b", op, baz)
    out = op.send("KICK #a,#b bar,baz")
    assert [m.params[:2] for m in all_of(out, "KICK")] == [("#a", "bar"), ("#b", "baz")]
    assert one(op.send("KICK #a,#b bar"), "461").params[1] == "KICK"
    # an error for one pair does not stop the next
    net.room("#a", op, bar)
    out = op.send("KICK #nowhere,#a bar,bar")
    assert commands(out) == ["403", "KICK"]


# --- item: chathistory and line-length gaps ---------------------------------------------------

HIST = (Cap.BATCH, Cap.SERVER_TIME, Cap.MESSAGE_TAGS, Cap.DRAFT_CHATHISTORY)
EVER = "timestamp=2000-01-01T00:00:00.000Z timestamp=2999-01-01T00:00:00.000Z"


def targets(c: Client) -> list[str]:
    return [
        m.params[1] for m in c.send(f"CHATHISTORY TARGETS {EVER} 10") if m.command == "CHATHISTORY"
    ]


def test_chathistory_targets_spells_a_correspondent_as_last_seen(net: Net) -> None:
    alice = net.cap_user("alice", HIST)
    bob = net.user("BoB")
    bob.send("PRIVMSG alice :from BoB")  # latest is to me: its sender's spelling
    assert targets(alice) == ["BoB"]
    time.sleep(0.002)
    alice.send("PRIVMSG bob :to bob")  # latest is mine: the addressee as it is now
    assert targets(alice) == ["BoB"]
    bob.send("NICK bob")  # same conversation, new spelling
    time.sleep(0.002)
    bob.send("PRIVMSG alice :now bob")
    assert targets(alice) == ["bob"]
    alice.send("PRIVMSG alice :note to self")
    assert set(targets(alice)) == {"bob", "alice"}


@pytest.mark.parametrize(
    "args",
    [
        "BEFORE #lan msgid=nosuchid 10",
        "AFTER #lan msgid=nosuchid 10",
        "AROUND #lan msgid=nosuchid 10",
        "LATEST #lan msgid=nosuchid 10",
        "BETWEEN #lan msgid=nosuchid timestamp=2999-01-01T00:00:00.000Z 10",
        "BETWEEN #lan timestamp=2000-01-01T00:00:00.000Z msgid=nosuchid 10",
    ],
)
def test_chathistory_with_an_unknown_msgid_is_an_empty_batch(net: Net, args: str) -> None:
    c = net.cap_user("reader", HIST)
    c.send("JOIN #lan")
    c.send("PRIVMSG #lan :something")
    start, end = c.send(f"CHATHISTORY {args}")
    assert start.command == "BATCH" and start.params[1:] == ("chathistory", "#lan")
    assert end.params == ("-" + start.params[0][1:],)


def test_417_for_a_labeled_line_carries_the_label(net: Net) -> None:
    c = net.cap_user("alice", LABELED)
    (reply,) = c.send("@label=long PRIVMSG #lan :" + "x" * 600)
    assert reply.command == "417" and reply.tags == {"label": "long"}
    (reply,) = c.send("@label=tags;+a=" + "y" * 5000 + " PRIVMSG #lan :hi")
    assert reply.command == "417" and reply.tags == {"label": "tags"}
    # a label that could not be echoed safely is left off, the reply is not
    (reply,) = c.send("@label=" + "z" * 65 + " PRIVMSG #lan :" + "x" * 600)
    assert reply.command == "417" and "label" not in reply.tags


def test_a_message_whose_relay_would_pass_512_bytes_is_refused_with_417(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#lan", alice, bob)
    prefix = len(f":{alice.source} ".encode())
    for target in ("#lan", "bob"):
        fits = "é" * ((512 - prefix - len(f"PRIVMSG {target} :\r\n")) // 2)
        if (512 - prefix - len(f"PRIVMSG {target} :\r\n")) % 2:
            fits += "x"
        assert alice.send(f"PRIVMSG {target} :{fits}") == []
        got = bob.conn.sent
        assert len(got) == 1 and len(got[0]) == 512, got
        bob.take()
        # one byte more: it would reach bob as 513 bytes
        reply = one(alice.send(f"PRIVMSG {target} :{fits}x"), "417")
        assert reply.params[-1] == "Input line was too long"
        assert bob.take() == []
    # NOTICE too: a line too long is refused whatever its command
    assert commands(alice.send("NOTICE #lan :" + "n" * 480)) == ["417"]
    assert bob.take() == []


# --- item: ban, exception and invite-exception lists ---------------------------------------------


def test_ban_keeps_a_matching_user_out_until_lifted(net: Net) -> None:
    # irctest BanModeTestCase::testBan
    op = net.user("chanop")
    op.send("JOIN #chan")
    relayed = one(op.send("MODE #chan +b bar!*@*"), "MODE")
    assert relayed.params == ("#chan", "+b", "bar!*@*")
    bar = net.user("Bar")  # masks compare casefolded
    assert one(bar.send("JOIN #chan"), "474").params[1:] == ("#chan", "Cannot join channel (+b)")
    assert one(op.send("MODE #chan -b BAR!*@*"), "MODE").params == ("#chan", "-b", "bar!*@*")
    assert "JOIN" in commands(bar.send("JOIN #chan"))


def test_ban_list_gives_each_mask_with_its_setter_then_its_end(net: Net) -> None:
    # irctest BanModeTestCase::testBanList (modern-irc RPL_BANLIST)
    op = net.user("chanop")
    op.send("JOIN #chan")
    op.send("MODE #chan +b bar!*@*")
    op.send("MODE #chan +b baz")  # completed to baz!*@*
    entry, second, end = op.send("MODE #chan +b")
    assert entry.command == "367" and entry.params[1:4] == ("#chan", "bar!*@*", op.source)
    assert entry.params[4].isdigit()
    assert second.params[2] == "baz!*@*"
    assert end.command == "368" and end.params[1] == "#chan"
    other = net.user("other")  # anyone who can see the room may read the lists
    assert commands(other.send("MODE #chan b")) == ["367", "367", "368"]
    assert commands(other.send("MODE #chan eI")) == ["349", "347"]


def test_a_banned_member_cannot_speak_unless_voiced_or_excepted(net: Net) -> None:
    op, bar, listener = net.user("op"), net.user("bar"), net.user("listener")
    net.room("#chan", op, bar, listener)
    op.send(f"MODE #chan +b *!*@{bar.host}")
    net.drain()
    assert one(bar.send("PRIVMSG #chan :hello"), "404").params[1] == "#chan"
    assert listener.take() == []
    op.send("MODE #chan +v bar")
    net.drain()
    assert bar.send("PRIVMSG #chan :voiced") == []
    assert [m.params[-1] for m in listener.take()] == ["voiced"]
    op.send("MODE #chan -v bar")
    op.send("MODE #chan +e bar!*@*")
    net.drain()
    assert bar.send("PRIVMSG #chan :excepted") == []
    assert [m.params[-1] for m in listener.take()] == ["excepted"]
    # the exception lets a banned user in too, and 348/349 list it
    bar.send("PART #chan")
    assert "JOIN" in commands(bar.send("JOIN #chan"))
    op.take()
    listed = op.send("MODE #chan +e")
    assert [(m.command, m.params[2]) for m in listed[:1]] == [("348", "bar!*@*")]
    assert listed[-1].command == "349"


def test_invitation_passes_a_ban_and_invex_passes_invite_only(net: Net) -> None:
    op, bar, carol = net.user("op"), net.user("bar"), net.user("carol")
    op.send("JOIN #chan")
    op.send("MODE #chan +b bar!*@*")
    op.send("INVITE bar #chan")
    assert "JOIN" in commands(bar.send("JOIN #chan"))
    op.send("MODE #chan +i")
    assert "473" in commands(carol.send("JOIN #chan"))
    op.send("MODE #chan +I carol!*@*")
    assert "JOIN" in commands(carol.send("JOIN #chan"))
    op.take()
    entry, end = op.send("MODE #chan I")
    assert (entry.command, entry.params[2], end.command) == ("346", "carol!*@*", "347")


def test_each_list_is_bounded_by_listmodes_max() -> None:
    net = Net(listmodes_max=2)
    op = net.user("op")
    op.send("JOIN #chan")
    op.send("MODE #chan +bb a b")
    op.send("MODE #chan +b a")  # already there: nothing, no error
    assert all_of(op.send("MODE #chan +b a"), "MODE") == []
    full = one(op.send("MODE #chan +b c"), "478")
    assert full.params[1:3] == ("#chan", "b")
    assert "MODE" in commands(op.send("MODE #chan +e c"))  # each list has its own bound
    # a mask longer than masklen is not kept
    assert op.send("MODE #chan -b a") and op.send("MODE #chan +b " + "x" * 200) == []


def test_list_masks_match_in_linear_time(net: Net) -> None:
    op = net.user("op")
    op.send("JOIN #chan")
    op.send("MODE #chan +b " + "*a" * 40 + "!*@*")
    victim = net.user("a" * 30)
    start = time.perf_counter()
    assert "JOIN" in commands(victim.send("JOIN #chan"))
    assert time.perf_counter() - start < 0.5


def test_isupport_names_the_list_modes() -> None:
    net = Net()
    c = net.connect()
    c.send("NICK alice")
    tokens = isupport(c.send("USER alice 0 * :Alice"))
    assert tokens["CHANMODES"] == "beI,k,l,imnst"
    assert "EXCEPTS" in tokens and "INVEX" in tokens
    assert tokens["MAXLIST"] == "b:100,e:100,I:100"
