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


# --- item: WHOX, STATUSMSG, ELIST ---------------------------------------------------------------


def test_isupport_advertises_whox_statusmsg_and_elist() -> None:
    net = Net()
    c = net.connect()
    c.send("NICK alice")
    tokens = isupport(c.send("USER alice 0 * :Alice"))
    assert tokens["WHOX"] == ""
    assert tokens["STATUSMSG"] == "@+"
    assert set(tokens["ELIST"]) >= {"M", "N", "U"}


def whox_pair(net: Net) -> tuple[Client, Client]:
    """irctest BaseWhoTestCase: coolNick makes #chan, otherNick joins it."""
    cool = net.connect()
    cool.send("NICK coolNick")
    cool.send("USER myusernam 0 * :My UniqueReal Name")
    other = net.user("otherNick")
    net.room("#chan", cool, other)
    return cool, other


@pytest.mark.parametrize("fields", ["tcuihsnfdlaor", "roaldfnshiuct"])
def test_whox_gives_the_fields_asked_for_in_the_standard_order(net: Net, fields: str) -> None:
    # irctest WhoTestCase::testWhoxFull / testWhoxFullReversed
    cool, other = whox_pair(net)
    reply, end = other.send(f"WHO coolNick %{fields},123")
    assert reply.command == "354"
    assert reply.params == (
        "otherNick",
        "123",  # t
        "*",  # c: no room in a query by nick
        "myusernam",  # u
        cool.host,  # i
        cool.host,  # h
        "test.server",  # s
        "coolNick",  # n
        "H",  # f
        "0",  # d
        "0",  # l: seconds idle
        "0",  # a: no accounts, so logged out
        "n/a",  # o
        "My UniqueReal Name",  # r
    )
    assert end.command == "315" and end.params[1] == "coolNick"


def test_whox_of_a_room_gives_each_member_with_the_room_and_status(net: Net) -> None:
    # what WeeChat and irssi scripts send on JOIN
    cool, other = whox_pair(net)
    out = other.send("WHO #chan %tcuhnfar,042")
    assert commands(out) == ["354", "354", "315"]
    rows = {m.params[5]: m.params[1:] for m in out[:2]}
    assert rows["coolNick"] == (
        "042",
        "#chan",
        "myusernam",
        cool.host,
        "coolNick",
        "H@",
        "0",
        "My UniqueReal Name",
    )
    assert rows["otherNick"][5] == "H"
    assert out[2].params[1] == "#chan"


@pytest.mark.parametrize("char", "cuihsnfdlaor")
def test_whox_with_one_field_gives_just_that_field(net: Net, char: str) -> None:
    # irctest WhoTestCase::testWhoxOneChar
    _, other = whox_pair(net)
    reply, end = other.send(f"WHO coolNick %{char}")
    assert reply.command == "354" and len(reply.params) == 2 and reply.params[1]
    assert end.command == "315"


def test_whox_token_and_flags_before_the_percent(net: Net) -> None:
    # irctest WhoTestCase::testWhoxToken
    _, other = whox_pair(net)
    assert other.send("WHO coolNick %tn,321")[0].params == ("otherNick", "321", "coolNick")
    # a token that is not 1-3 digits is not echoed (it could break the line)
    assert other.send("WHO coolNick %tn,12345")[0].params == ("otherNick", "0", "coolNick")
    # the 'o' among the fields is the op level, not "operators only"
    assert commands(other.send("WHO #chan %no")) == ["354", "354", "315"]
    assert commands(other.send("WHO #chan o%n")) == ["315"]
    # without a percent it is the plain 352 reply
    assert commands(other.send("WHO coolNick")) == ["352", "315"]


def statusmsg_room(net: Net) -> tuple[Client, Client, Client]:
    """irctest StatusmsgTestCase: chanop makes #chan, joe and schmoe join."""
    chanop, joe, schmoe = net.user("chanop"), net.user("joe"), net.user("schmoe")
    net.room("#chan", chanop, joe, schmoe)
    return chanop, joe, schmoe


def test_statusmsg_reaches_only_operators_with_the_target_as_sent(net: Net) -> None:
    # irctest StatusmsgTestCase::testStatusmsgFromOp
    chanop, joe, schmoe = statusmsg_room(net)
    chanop.send("MODE #chan +o schmoe")
    net.drain()
    assert schmoe.send("privmsg @#CHAN :this message is for operators") == []
    got = one(chanop.take(), "PRIVMSG")
    assert got.params == ("@#chan", "this message is for operators")
    assert got.source == schmoe.source
    assert joe.take() == []


def test_statusmsg_follows_status_changes_and_carries_tagmsg(net: Net) -> None:
    chanop, joe, schmoe = statusmsg_room(net)
    tagger = net.cap_user("tagger", [Cap.MESSAGE_TAGS])
    tagger.send("JOIN #chan")
    chanop.send("MODE #chan +o schmoe")
    chanop.send("MODE #chan +o tagger")
    net.drain()
    joe.send("PRIVMSG @#chan :one")
    assert [len(c.take()) for c in (chanop, schmoe, tagger)] == [1, 1, 1]
    chanop.send("MODE #chan -o schmoe")
    net.drain()
    joe.send("PRIVMSG @#chan :two")
    assert [len(c.take()) for c in (chanop, schmoe, tagger)] == [1, 0, 1]
    # a TAGMSG reaches only the operators that speak message-tags
    joe_tags = net.cap_user("joetags", [Cap.MESSAGE_TAGS])
    joe_tags.send("JOIN #chan")
    net.drain()
    assert joe_tags.send("@+typing=active TAGMSG @#chan") == []
    got = one(tagger.take(), "TAGMSG")
    assert got.params == ("@#chan",) and got.tags["+typing"] == "active"
    assert chanop.take() == [] and joe.take() == []


def test_statusmsg_from_a_regular_member_and_to_voiced(net: Net) -> None:
    # irctest StatusmsgTestCase::testStatusmsgFromRegular
    chanop, joe, schmoe = statusmsg_room(net)
    assert schmoe.send("PRIVMSG @#chan :help") == []
    assert one(chanop.take(), "PRIVMSG").params == ("@#chan", "help")
    assert joe.take() == []
    chanop.send("MODE #chan +v joe")
    net.drain()
    assert schmoe.send("NOTICE +#chan :voiced and ops") == []
    assert one(chanop.take(), "NOTICE").params == ("+#chan", "voiced and ops")
    assert one(joe.take(), "NOTICE").params == ("+#chan", "voiced and ops")
    assert schmoe.take() == []


def test_statusmsg_is_refused_like_a_room_message_and_echoed_as_sent(net: Net) -> None:
    chanop, joe, _ = statusmsg_room(net)
    outsider = net.cap_user("outsider", [Cap.ECHO_MESSAGE])
    assert one(outsider.send("PRIVMSG @#nowhere :x"), "403").params[1] == "@#nowhere"
    assert one(outsider.send("PRIVMSG @#chan :x"), "404").params[1] == "#chan"  # +n
    assert outsider.send("NOTICE @#chan :x") == []
    chanop.send("MODE #chan -n")
    net.drain()
    echo = one(outsider.send("PRIVMSG @#chan :from outside"), "PRIVMSG")
    assert echo.params == ("@#chan", "from outside")
    assert one(chanop.take(), "PRIVMSG").params == ("@#chan", "from outside")
    assert joe.take() == []


def test_statusmsg_is_not_kept_in_history(net: Net) -> None:
    reader = net.cap_user("reader", HIST)
    joe = net.user("joe")
    net.room("#chan", reader, joe)
    joe.send("PRIVMSG @#chan :for ops only")
    joe.send("PRIVMSG #chan :for everyone")
    net.drain()
    out = reader.send("CHATHISTORY LATEST #chan * 10")
    assert [m.params[-1] for m in all_of(out, "PRIVMSG")] == ["for everyone"]


def listed(c: Client, line: str) -> list[str]:
    out = c.send(line)
    assert out[0].command == "321" and out[-1].command == "323"
    return [m.params[1] for m in all_of(out, "322")]


def test_list_with_masks(net: Net) -> None:
    # irctest ListTestCase::testListMask and testListNotMask (ELIST M and N)
    foo, bar = net.user("foo"), net.user("bar")
    foo.send("JOIN #chan1")
    foo.send("JOIN #chan2")
    assert listed(bar, "LIST *an1") == ["#chan1"]
    assert listed(bar, "LIST *an2") == ["#chan2"]
    assert listed(bar, "LIST #c*n2") == ["#chan2"]
    assert listed(bar, "LIST *an3") == []
    assert listed(bar, "LIST #CH*") == ["#chan1", "#chan2"]
    assert listed(bar, "LIST *an1,#chan2") == ["#chan1", "#chan2"]
    assert listed(bar, "LIST !*an1") == ["#chan2"]
    assert listed(bar, "LIST !#c*n2") == ["#chan1"]
    assert listed(bar, "LIST !*an3") == ["#chan1", "#chan2"]
    assert listed(bar, "LIST !#ch*") == []
    assert listed(bar, "LIST #chan1") == ["#chan1"]
    # a secret room matches no one's mask but its members'
    foo.send("MODE #chan2 +s")
    assert listed(bar, "LIST #ch*") == ["#chan1"]
    assert listed(foo, "LIST #ch*") == ["#chan1", "#chan2"]


def test_list_by_user_count(net: Net) -> None:
    # irctest ListTestCase::testListUsers (ELIST U)
    foo, bar, baz = net.user("foo"), net.user("bar"), net.user("baz")
    foo.send("JOIN #chan1")
    foo.send("JOIN #chan2")
    bar.send("JOIN #chan2")
    assert listed(baz, "LIST >0") == ["#chan1", "#chan2"]
    assert listed(baz, "LIST <1") == []
    assert listed(baz, "LIST <100") == ["#chan1", "#chan2"]
    assert listed(baz, "LIST >1") == ["#chan2"]
    assert listed(baz, "LIST <2") == ["#chan1"]
    assert listed(baz, "LIST >0,<2") == ["#chan1"]
    assert listed(baz, "LIST #chan*,>1") == ["#chan2"]
    assert listed(baz, "LIST >x") == ["#chan1", "#chan2"]  # not a count: ignored


def test_list_masks_are_bounded_and_match_in_linear_time() -> None:
    net = Net(masklen=40)
    foo = net.user("foo")
    foo.send("JOIN #" + "a" * 49)
    assert listed(foo, "LIST #a*") == ["#" + "a" * 49]
    assert listed(foo, "LIST #" + "a" * 40 + "*") == []  # longer than masklen
    start = time.perf_counter()
    assert listed(foo, "LIST " + "*a" * 19 + "b") == []
    assert listed(foo, "LIST " + ",".join(["*a*a*a*a*a*a*a*a*a*a*b"] * 20)) == []
    assert time.perf_counter() - start < 0.5


def test_list_filter_doctests() -> None:
    import doctest

    from chatroom.server.commands import rooms

    result = doctest.testmod(rooms)
    assert result.attempted and not result.failed
