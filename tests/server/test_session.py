"""Session tests without sockets: IRC lines in, the Messages each connection receives out.

Every client here is a real ``Session`` on a shared ``Registry``; its socket is a
``FakeConn`` that records what the server sent and whether it hung up (the harness:
session_harness.py). Expected numerics and parameters follow RFC 1459/2812 and the
modern ircdocs numerics.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

import pytest
from session_harness import (
    SERVER,
    Net,
    all_of,
    channel_modes,
    commands,
    isupport,
    names_in,
    one,
)

from chatroom.protocol import Cap, Message, RecvQExceeded, parse
from chatroom.server import tags
from chatroom.server.commands import COMMANDS
from chatroom.server.session import TRANSITIONS, RegState


@pytest.fixture
def net() -> Net:
    return Net()


# --- registration -----------------------------------------------------------------------------


def test_nick_user_gives_the_welcome_burst_in_order(net: Net) -> None:
    c = net.connect("10.1.2.3")
    assert c.send("NICK alice") == []
    out = c.send("USER al 0 * :Alice Liddell")
    cmds = commands(out)
    assert cmds[:4] == ["001", "002", "003", "004"]
    assert "005" in cmds
    assert cmds.index("251") > cmds.index("005")
    assert cmds.index("255") > cmds.index("251")
    assert cmds[-3:] == ["375", "372", "376"]
    welcome = out[0]
    assert welcome.source == SERVER
    assert welcome.params[0] == "alice"
    assert welcome.params[-1].endswith("alice!al@10.1.2.3")
    assert one(out, "004").params[1] == SERVER
    assert one(out, "372").params[1] == "- Welcome to tests"
    assert all(m.params[0] == "alice" for m in out)


def test_isupport_advertises_the_server_limits() -> None:
    net = Net(nicklen=12, channellen=40, topiclen=100, chanlimit=7, network="lanparty")
    c = net.connect()
    c.send("NICK alice")
    tokens = isupport(c.send("USER alice 0 * :A"))
    assert tokens["CASEMAPPING"] == "rfc1459"
    assert tokens["CHANTYPES"] == "#"
    assert tokens["CHANLIMIT"] == "#:7"
    assert tokens["NICKLEN"] == "12"
    assert tokens["CHANNELLEN"] == "40"
    assert tokens["TOPICLEN"] == "100"
    assert tokens["PREFIX"] == "(ov)@+"
    assert tokens["CHANMODES"] == "beI,k,l,imnst"
    assert tokens["NETWORK"] == "lanparty"
    assert "UTF8ONLY" in tokens


def test_lusers_counts_registered_users(net: Net) -> None:
    net.user("alice")
    net.user("bob").send("MODE bob +i")
    c = net.connect()
    c.send("NICK carol")
    out = c.send("USER carol 0 * :C")
    assert one(out, "251").params[1] == "There are 2 users and 1 invisible on 1 servers"
    assert one(out, "255").params[1] == "I have 3 clients and 0 servers"


def test_no_motd_gives_422() -> None:
    net = Net(motd=None)
    c = net.connect()
    c.send("NICK alice")
    out = c.send("USER alice 0 * :A")
    assert one(out, "422").params == ("alice", "MOTD File is missing")
    assert "375" not in commands(out) and "376" not in commands(out)


@pytest.mark.parametrize("line", ["JOIN #r", "PRIVMSG bob :hi", "WHOIS bob", "FROB x"])
def test_commands_before_registration_get_451(net: Net, line: str) -> None:
    c = net.connect()
    out = c.send(line)
    assert commands(out) == ["451"]
    assert out[0].params[0] == "*"
    assert net.registry.find_channel("#r") is None


def test_ping_is_answered_before_registration(net: Net) -> None:
    out = net.connect().send("PING abc")
    assert one(out, "PONG").params == (SERVER, "abc")


def test_cap_ls_302_holds_registration_until_cap_end(net: Net) -> None:
    c = net.connect()
    ls = one(c.send("CAP LS 302"), "CAP")
    assert ls.params[:2] == ("*", "LS")
    assert Cap.MULTI_PREFIX in ls.params[-1].split()
    c.send("NICK alice")
    assert c.send("USER alice 0 * :A") == []
    ack = one(c.send(f"CAP REQ :{Cap.MULTI_PREFIX}"), "CAP")
    assert ack.params == ("alice", "ACK", Cap.MULTI_PREFIX)
    out = c.send("CAP END")
    assert commands(out)[0] == "001"


def test_cap_req_unknown_cap_is_naked_whole(net: Net) -> None:
    c = net.connect()
    c.send("CAP LS 302")
    nak = one(c.send(f"CAP REQ :{Cap.MULTI_PREFIX} sasl-of-doom"), "CAP")
    assert nak.params == ("*", "NAK", f"{Cap.MULTI_PREFIX} sasl-of-doom")
    lst = one(c.send("CAP LIST"), "CAP")
    assert lst.params == ("*", "LIST", "")  # nothing was enabled


def test_cap_list_shows_acked_caps(net: Net) -> None:
    c = net.connect()
    c.send(f"CAP REQ {Cap.MULTI_PREFIX}")
    assert one(c.send("CAP LIST"), "CAP").params == ("*", "LIST", Cap.MULTI_PREFIX)
    c.send(f"CAP REQ -{Cap.MULTI_PREFIX}")
    assert one(c.send("CAP LIST"), "CAP").params == ("*", "LIST", "")


def test_bad_cap_subcommand_gives_410(net: Net) -> None:
    out = net.connect().send("CAP FROB")
    assert one(out, "410").params[:2] == ("*", "FROB")


@pytest.mark.parametrize("password", [None, "wrong"])
def test_bad_or_missing_password_gives_464_and_closes(password: str | None) -> None:
    net = Net(password="sekrit")
    c = net.connect()
    if password:
        c.send(f"PASS {password}")
    c.send("NICK alice")
    out = c.send("USER alice 0 * :A")
    assert commands(out) == ["464", "ERROR"]
    assert out[1].params[0].startswith("Closing Link:")
    assert c.conn.closed
    assert net.registry.find_user("alice") is None
    assert c.send("JOIN #r") == []  # a closed session ignores late lines


def test_right_password_registers() -> None:
    net = Net(password="sekrit")
    c = net.connect()
    c.send("PASS sekrit")
    c.send("NICK alice")
    assert "001" in commands(c.send("USER alice 0 * :A"))
    assert not c.conn.closed


def test_pass_and_user_after_registration_give_462(net: Net) -> None:
    alice = net.user("alice")
    assert one(alice.send("PASS x"), "462").params[0] == "alice"
    assert commands(alice.send("USER again 0 * :Again")) == ["462"]
    assert alice.session.user.username == "alice"


def test_user_twice_before_nick_gives_462(net: Net) -> None:
    c = net.connect()
    c.send("USER one 0 * :One")
    assert commands(c.send("USER two 0 * :Two")) == ["462"]
    c.send("NICK alice")
    assert net.registry.find_user("alice").username == "one"


def test_nick_without_a_name_gives_431(net: Net) -> None:
    c = net.connect()
    assert commands(c.send("NICK")) == ["431"]
    assert commands(c.send("NICK :")) == ["431"]


@pytest.mark.parametrize("nick", ["9lives", "bad!nick", "#room", "a.b", "-dash"])
def test_invalid_nick_gives_432(net: Net, nick: str) -> None:
    c = net.connect()
    out = c.send(Message.of("NICK", nick))
    assert one(out, "432").params[:2] == ("*", nick)
    assert c.nick == "*"


def test_nick_longer_than_nicklen_gives_432() -> None:
    net = Net(nicklen=9)
    c = net.connect()
    assert one(c.send("NICK abcdefghij"), "432").params[1] == "abcdefghij"
    assert c.send("NICK abcdefghi") == []
    assert c.nick == "abcdefghi"


def test_nick_in_use_gives_433(net: Net) -> None:
    net.user("alice")
    c = net.connect()
    assert one(c.send("NICK alice"), "433").params[:2] == ("*", "alice")
    pending = net.connect()
    pending.send("NICK bob")  # not registered yet, but the nick is already held
    assert one(c.send("NICK bob"), "433").params[1] == "bob"


def test_nick_collision_follows_rfc1459_casemapping(net: Net) -> None:
    net.user("Nick[1]")
    c = net.connect()
    assert one(c.send("NICK nick{1}"), "433").params[1] == "nick{1}"
    assert one(c.send("NICK NICK[1]"), "433")
    assert one(c.send("NICK nick{1}"), "433")


def test_nick_is_freed_when_its_holder_quits_or_vanishes(net: Net) -> None:
    alice = net.user("alice")
    alice.send("QUIT")
    bob = net.user("bob")
    bob.session.disconnect("Connection reset by peer")
    c = net.connect()
    assert c.send("NICK alice") == []
    assert c.send("NICK bob") == []


def test_nick_change_reaches_room_peers_and_self_only(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    old = alice.source
    expected = Message.of("NICK", "alicia", source=old)
    assert alice.send("NICK alicia") == [expected]
    assert bob.take() == [expected]
    assert carol.take() == []
    assert net.registry.find_user("alice") is None
    assert net.registry.find_user("alicia") is alice.session.user
    assert names_in(bob.send("NAMES #r")) == {"@alicia", "bob"}


def test_nick_change_to_a_different_case_of_the_same_nick(net: Net) -> None:
    alice = net.user("alice")
    out = alice.send("NICK ALICE")
    assert out == [Message.of("NICK", "ALICE", source=f"alice!alice@{alice.host}")]
    assert one(alice.send("WHOIS alice"), "311").params[1] == "ALICE"
    assert alice.send("NICK ALICE") == []  # unchanged: nothing to say


# --- JOIN -------------------------------------------------------------------------------------


def test_join_echo_names_and_end_to_the_joiner(net: Net) -> None:
    alice = net.user("alice")
    out = alice.send("JOIN #Lan")
    assert out[0] == Message.of("JOIN", "#Lan", source=alice.source)
    namreply = one(out, "353")
    assert namreply.params == ("alice", "=", "#Lan", "@alice")
    assert one(out, "366").params[:2] == ("alice", "#Lan")
    assert commands(out) == ["JOIN", "353", "366"]


def test_members_see_a_join_and_the_joiner_gets_everyone(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    out = bob.send("JOIN #R")
    assert out[0] == Message.of("JOIN", "#r", source=bob.source)  # the room's own spelling
    assert names_in(out) == {"@alice", "bob"}
    assert alice.take() == [Message.of("JOIN", "#r", source=bob.source)]


def test_new_room_is_plus_nt_with_a_creation_time(net: Net) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    out = alice.send("MODE #r")
    assert one(out, "324").params[:2] == ("alice", "#r")
    assert channel_modes(out) == ({"n", "t"}, ())
    created = one(out, "329").params
    assert created[1] == "#r" and created[2].isdigit()


def test_join_a_list_of_rooms_with_keys(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#a", alice)
    net.room("#b", alice)
    alice.send("MODE #a +k alpha")
    alice.send("MODE #b +k beta")
    out = bob.send("JOIN #a,#b,#c alpha,beta")
    joins = [m.params[0] for m in all_of(out, "JOIN")]
    assert joins == ["#a", "#b", "#c"]
    assert len(all_of(out, "366")) == 3
    assert set(bob.session.user.channels) == {"#a", "#b", "#c"}


def test_join_0_parts_every_room(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#a", alice, bob)
    net.room("#b", alice, bob)
    out = alice.send("JOIN 0")
    assert sorted(m.params[0] for m in all_of(out, "PART")) == ["#a", "#b"]
    assert alice.session.user.channels == {}
    assert sorted(m.params[0] for m in bob.take()) == ["#a", "#b"]


@pytest.mark.parametrize("name", ["lan", "#", "#a:b", "#" + "x" * 50])
def test_join_an_invalid_room_name_gives_403(net: Net, name: str) -> None:
    alice = net.user("alice")
    out = alice.send(Message.of("JOIN", name))
    assert one(out, "403").params[1] == name
    assert net.registry.channels == {}


def test_joining_more_rooms_than_chanlimit_gives_405() -> None:
    net = Net(chanlimit=2)
    alice = net.user("alice")
    out = alice.send("JOIN #a,#b,#c")
    assert [m.params[0] for m in all_of(out, "JOIN")] == ["#a", "#b"]
    assert one(out, "405").params[1] == "#c"
    assert net.registry.find_channel("#c") is None


def test_wrong_key_gives_475(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    alice.send("MODE #r +k sesame")
    assert one(bob.send("JOIN #r"), "475").params[1] == "#r"
    assert one(bob.send("JOIN #r wrong"), "475")
    assert "JOIN" in commands(bob.send("JOIN #r sesame"))


def test_full_room_gives_471(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    alice.send("MODE #r +l 2")
    assert one(carol.send("JOIN #r"), "471").params[1] == "#r"
    bob.send("PART #r")
    assert "JOIN" in commands(carol.send("JOIN #r"))


def test_invite_only_room_gives_473_until_invited(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    alice.send("MODE #r +i")
    assert one(bob.send("JOIN #r"), "473").params[1] == "#r"
    alice.send("INVITE bob #r")
    assert "JOIN" in commands(bob.send("JOIN #r"))
    bob.send("PART #r")
    assert one(bob.send("JOIN #r"), "473")  # an invitation is good for one join


def test_join_shows_the_topic_when_one_is_set(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    alice.send("TOPIC #r :LAN party at 8")
    out = bob.send("JOIN #r")
    assert commands(out) == ["JOIN", "332", "333", "353", "366"]
    assert one(out, "332").params == ("bob", "#r", "LAN party at 8")
    who_time = one(out, "333").params
    assert who_time[1] == "#r" and who_time[2].startswith("alice") and who_time[3].isdigit()


def test_joining_a_room_twice_is_silent(net: Net) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    assert alice.send("JOIN #r") == []


# --- PART -------------------------------------------------------------------------------------


def test_part_relays_the_reason_and_empties_the_room(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    expected = Message.of("PART", "#r", "gone fishing", source=bob.source)
    assert bob.send("PART #r :gone fishing") == [expected]
    assert alice.take() == [expected]
    alice.send("PART #r")
    assert net.registry.find_channel("#r") is None


def test_part_errors(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    assert one(bob.send("PART #r"), "442").params[1] == "#r"
    assert one(bob.send("PART #nowhere"), "403").params[1] == "#nowhere"
    assert alice.take() == []


# --- PRIVMSG / NOTICE -------------------------------------------------------------------------


def test_room_message_reaches_others_but_not_the_sender(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    assert alice.send("PRIVMSG #r :hello all") == []
    assert bob.take() == [Message.of("PRIVMSG", "#r", "hello all", source=alice.source)]
    assert carol.take() == []
    alice.send("NOTICE #R :psst")
    assert bob.take() == [Message.of("NOTICE", "#r", "psst", source=alice.source)]


def test_private_message_to_a_nick(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    assert alice.send("PRIVMSG BOB :hi bob") == []
    assert bob.take() == [Message.of("PRIVMSG", "bob", "hi bob", source=alice.source)]


def test_message_to_several_targets(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, carol)
    alice.send("PRIVMSG #r,bob :both")
    assert bob.take() == [Message.of("PRIVMSG", "bob", "both", source=alice.source)]
    assert carol.take() == [Message.of("PRIVMSG", "#r", "both", source=alice.source)]


def test_privmsg_errors(net: Net) -> None:
    alice = net.user("alice")
    net.user("bob")
    assert commands(alice.send("PRIVMSG")) == ["411"]
    assert commands(alice.send("PRIVMSG bob")) == ["412"]
    assert commands(alice.send("PRIVMSG bob :")) == ["412"]
    assert one(alice.send("PRIVMSG nobody :hi"), "401").params[1] == "nobody"
    assert one(alice.send("PRIVMSG #nowhere :hi"), "403").params[1] == "#nowhere"


def test_too_many_targets_gives_407_and_delivers_nothing() -> None:
    net = Net(maxtargets=2)
    alice, bob = net.user("alice"), net.user("bob")
    out = alice.send("PRIVMSG bob,bob,bob :hi")
    assert one(out, "407").params[1] == "bob,bob,bob"
    assert bob.take() == []


def test_outsider_cannot_speak_in_a_plus_n_room(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    assert one(bob.send("PRIVMSG #r :let me in"), "404").params[1] == "#r"
    assert alice.take() == []
    alice.send("MODE #r -n")
    bob.send("PRIVMSG #r :from outside")
    assert alice.take() == [Message.of("PRIVMSG", "#r", "from outside", source=bob.source)]


def test_moderated_room_needs_voice(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob, carol)
    alice.send("MODE #r +m")
    net.drain()
    assert one(bob.send("PRIVMSG #r :hi"), "404").params[1] == "#r"
    assert carol.take() == []
    alice.send("MODE #r +v bob")
    net.drain()
    bob.send("PRIVMSG #r :now I can")
    assert carol.take() == [Message.of("PRIVMSG", "#r", "now I can", source=bob.source)]
    alice.send("PRIVMSG #r :ops always can")
    assert len(carol.take()) == 1


def test_privmsg_to_away_user_gets_301_but_notice_does_not(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    bob.send("AWAY :at lunch")
    out = alice.send("PRIVMSG bob :you there?")
    assert one(out, "301").params == ("alice", "bob", "at lunch")
    assert alice.send("NOTICE bob :fyi") == []
    assert commands(bob.take()) == ["PRIVMSG", "NOTICE"]


def test_notice_never_gets_error_replies(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", bob)
    for line in (
        "NOTICE",
        "NOTICE bob",
        "NOTICE nobody :x",
        "NOTICE #nowhere :x",
        "NOTICE #r :outsider",
        "NOTICE a,b,c,d,e :x",
    ):
        assert alice.send(line) == [], line
    assert bob.take() == []


# --- NAMES ------------------------------------------------------------------------------------


def test_names_hides_secret_rooms_from_outsiders(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#secret", alice)
    alice.send("MODE #secret +s")
    out = bob.send("NAMES #secret")
    assert commands(out) == ["366"]
    assert out[0].params[1] == "#secret"
    assert "353" not in commands(bob.send("NAMES"))
    mine = one(alice.send("NAMES #secret"), "353")
    assert mine.params[1:] == ("@", "#secret", "@alice")


def test_names_hides_invisible_users_from_outsiders(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    bob.send("MODE bob +i")
    assert names_in(carol.send("NAMES #r")) == {"@alice"}
    assert names_in(alice.send("NAMES #r")) == {"@alice", "bob"}


def test_names_with_multi_prefix_shows_every_status(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    alice.send("MODE #r +ov bob bob")
    assert names_in(alice.send("NAMES #r")) == {"@alice", "@bob"}
    alice.send(f"CAP REQ {Cap.MULTI_PREFIX}")
    assert names_in(alice.send("NAMES #r")) == {"@alice", "@+bob"}


# --- TOPIC ------------------------------------------------------------------------------------


def test_topic_query_set_and_query_again(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    assert one(bob.send("TOPIC #r"), "331").params[:2] == ("bob", "#r")
    expected = Message.of("TOPIC", "#r", "new topic", source=alice.source)
    assert alice.send("TOPIC #r :new topic") == [expected]
    assert bob.take() == [expected]
    out = bob.send("TOPIC #r")
    assert one(out, "332").params == ("bob", "#r", "new topic")
    assert one(out, "333").params[1] == "#r"


def test_plus_t_lets_only_operators_set_the_topic(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    assert one(bob.send("TOPIC #r :mine now"), "482").params[1] == "#r"
    assert alice.take() == []
    alice.send("MODE #r -t")
    net.drain()
    assert commands(bob.send("TOPIC #r :mine now")) == ["TOPIC"]


def test_topic_is_truncated_to_topiclen_bytes() -> None:
    net = Net(topiclen=10)
    alice = net.user("alice")
    net.room("#r", alice)
    out = alice.send("TOPIC #r :abcdefghé and more")  # é is two bytes, at bytes 9-10
    assert one(out, "TOPIC").params[1] == "abcdefghé"
    alice.send("TOPIC #r :abcdefghié")
    assert one(alice.send("TOPIC #r"), "332").params[2] == "abcdefghi"


def test_setting_the_topic_needs_membership(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    alice.send("MODE #r -t")
    assert one(bob.send("TOPIC #r :outsider"), "442").params[1] == "#r"
    assert one(bob.send("TOPIC #nowhere :x"), "403")


# --- LIST -------------------------------------------------------------------------------------


def test_list_shows_rooms_with_counts_and_topics_but_not_secret_ones(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#open", alice, bob)
    alice.send("TOPIC #open :come in")
    net.room("#hidden", alice)
    alice.send("MODE #hidden +s")
    out = bob.send("LIST")
    assert commands(out) == ["321", "322", "323"]
    assert one(out, "322").params == ("bob", "#open", "2", "come in")
    assert {m.params[1] for m in all_of(alice.send("LIST"), "322")} == {"#open", "#hidden"}
    assert [m.params[1] for m in all_of(alice.send("LIST #hidden"), "322")] == ["#hidden"]


# --- WHO / WHOIS / WHOWAS / USERHOST / ISON ---------------------------------------------------


def test_who_room_lists_members_with_here_gone_and_status(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob, carol)
    alice.send("MODE #r +v bob")
    bob.send("AWAY :brb")
    out = carol.send("WHO #r")
    assert commands(out)[-1] == "315"
    assert out[-1].params[1] == "#r"
    rows = {m.params[5]: m.params for m in all_of(out, "352")}
    assert rows["alice"][6] == "H@"
    assert rows["bob"][6] == "G+"
    assert rows["carol"][6] == "H"
    assert rows["bob"] == ("carol", "#r", "bob", bob.host, SERVER, "bob", "G+", "0 bob Realname")


def test_who_by_nick_mask(net: Net) -> None:
    alice = net.user("alice")
    net.user("alan")
    net.user("bob")
    out = alice.send("WHO al*")
    assert sorted(m.params[5] for m in all_of(out, "352")) == ["alan", "alice"]
    assert one(out, "315").params[1] == "al*"


def test_who_hides_invisible_strangers(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    bob.send("MODE bob +i")
    assert "352" not in commands(alice.send("WHO b*"))
    # a query for the very nick is answered (Ergo; irctest WhoInvisibleTestCase)
    assert one(alice.send("WHO bob"), "352").params[5] == "bob"
    net.room("#r", alice, bob)
    assert one(alice.send("WHO b*"), "352").params[5] == "bob"


def test_whois_a_user(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", bob)
    out = alice.send("WHOIS bob")
    assert commands(out) == ["311", "319", "312", "317", "318"]
    assert one(out, "311").params == ("alice", "bob", "bob", bob.host, "*", "bob Realname")
    assert one(out, "319").params == ("alice", "bob", "@#r")
    assert one(out, "312").params[:3] == ("alice", "bob", SERVER)
    idle = one(out, "317").params
    assert idle[1] == "bob" and idle[2].isdigit() and idle[3].isdigit()
    assert one(out, "318").params[1] == "bob"


def test_whois_hides_secret_rooms_from_outsiders(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#open", bob)
    net.room("#secret", bob)
    bob.send("MODE #secret +s")
    assert one(alice.send("WHOIS bob"), "319").params[2] == "@#open"
    assert set(one(bob.send("WHOIS bob"), "319").params[2].split()) == {"@#open", "@#secret"}


def test_whois_shows_away_and_oper() -> None:
    net = Net(opers={"root": "pw"})
    alice, bob = net.user("alice"), net.user("bob")
    bob.send("AWAY :gone")
    bob.send("OPER root pw")
    out = alice.send("WHOIS bob")
    assert one(out, "301").params == ("alice", "bob", "gone")
    assert one(out, "313").params[1] == "bob"


def test_whois_unknown_nick_gives_401_then_318(net: Net) -> None:
    out = net.user("alice").send("WHOIS ghost")
    assert commands(out) == ["401", "318"]
    assert out[0].params[1] == "ghost"


def test_whowas_after_a_user_leaves(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    bob.send("QUIT :bye")
    out = alice.send("WHOWAS bob")
    assert commands(out) == ["314", "312", "369"]
    assert one(out, "314").params == ("alice", "bob", "bob", bob.host, "*", "bob Realname")
    assert one(out, "312").params[2] == SERVER
    out = alice.send("WHOWAS nobody")
    assert commands(out) == ["406", "369"]
    assert out[0].params[1] == "nobody"


def test_userhost_marks_opers_and_away() -> None:
    net = Net(opers={"root": "pw"})
    alice, bob = net.user("alice"), net.user("bob")
    alice.send("OPER root pw")
    bob.send("AWAY :out")
    out = alice.send("USERHOST alice bob ghost")
    assert one(out, "302").params == (
        "alice",
        f"alice*=+alice@{alice.host} bob=-bob@{bob.host}",
    )


def test_ison_lists_the_online_nicks(net: Net) -> None:
    alice = net.user("alice")
    net.user("Bob")
    assert one(alice.send("ISON bob ghost alice"), "303").params == ("alice", "Bob alice")


def test_away_and_back(net: Net) -> None:
    alice = net.user("alice")
    assert one(alice.send("AWAY :lunch"), "306").params[0] == "alice"
    assert alice.session.user.away == "lunch"
    assert commands(alice.send("AWAY")) == ["305"]
    assert alice.session.user.away is None


# --- KICK / INVITE ----------------------------------------------------------------------------


def test_kick_removes_the_target_and_tells_the_room(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob, carol)
    expected = Message.of("KICK", "#r", "bob", "behave", source=alice.source)
    assert alice.send("KICK #r bob :behave") == [expected]
    assert bob.take() == [expected]
    assert carol.take() == [expected]
    assert names_in(alice.send("NAMES #r")) == {"@alice", "carol"}
    assert one(bob.send("PRIVMSG #r :hey"), "404")


def test_kick_errors(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    assert one(bob.send("KICK #r alice"), "482").params[1] == "#r"
    assert one(alice.send("KICK #r carol"), "441").params[1:3] == ("carol", "#r")
    assert one(carol.send("KICK #r bob"), "442")
    assert one(alice.send("KICK #nowhere bob"), "403")
    assert names_in(alice.send("NAMES #r")) == {"@alice", "bob"}


def test_invite_tells_both_sides(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    out = alice.send("INVITE bob #r")
    assert one(out, "341").params == ("alice", "bob", "#r")
    assert bob.take() == [Message.of("INVITE", "bob", "#r", source=alice.source)]


def test_invite_errors(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    assert one(alice.send("INVITE bob #r"), "443").params[1:3] == ("bob", "#r")
    assert one(carol.send("INVITE alice #r"), "442").params[1] == "#r"
    assert one(alice.send("INVITE ghost #r"), "401")
    alice.send("MODE #r +i")
    assert one(bob.send("INVITE carol #r"), "482").params[1] == "#r"
    assert carol.take() == []


# --- MODE: users ------------------------------------------------------------------------------


def test_user_modes_set_and_query(net: Net) -> None:
    alice = net.user("alice")
    assert alice.send("MODE alice +i") == [Message.of("MODE", "alice", "+i", source=alice.source)]
    assert alice.send("MODE alice +w") == [Message.of("MODE", "alice", "+w", source=alice.source)]
    assert one(alice.send("MODE alice"), "221").params == ("alice", "+iw")
    assert alice.send("MODE alice +i") == []  # already set: nothing changes
    assert alice.send("MODE alice -i") == [Message.of("MODE", "alice", "-i", source=alice.source)]


def test_user_mode_plus_o_is_ignored_but_minus_o_deopers() -> None:
    net = Net(opers={"root": "pw"})
    alice = net.user("alice")
    assert alice.send("MODE alice +o") == []
    assert not alice.session.user.is_oper
    alice.send("OPER root pw")
    assert alice.send("MODE alice -o") == [Message.of("MODE", "alice", "-o", source=alice.source)]
    assert not alice.session.user.is_oper


def test_user_mode_errors(net: Net) -> None:
    alice = net.user("alice")
    net.user("bob")
    assert commands(alice.send("MODE bob +i")) == ["502"]
    assert commands(alice.send("MODE bob")) == ["502"]
    assert one(alice.send("MODE ghost"), "401").params[1] == "ghost"
    out = alice.send("MODE alice +iZ")
    assert commands(out) == ["501", "MODE"]
    assert out[1].params == ("alice", "+i")


# --- MODE: rooms ------------------------------------------------------------------------------


def test_op_and_voice_in_one_line_are_broadcast_together(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    expected = Message.of("MODE", "#r", "+ov", "bob", "bob", source=alice.source)
    assert alice.send("MODE #r +ov bob bob") == [expected]
    assert bob.take() == [expected]
    expected = Message.of("MODE", "#r", "-o", "bob", source=alice.source)
    assert alice.send("MODE #r -o BOB") == [expected]
    assert names_in(alice.send("NAMES #r")) == {"@alice", "+bob"}


def test_status_mode_for_a_stranger_or_a_ghost(net: Net) -> None:
    alice, _bob = net.user("alice"), net.user("bob")
    net.room("#r", alice)
    assert one(alice.send("MODE #r +o bob"), "441").params[1:3] == ("bob", "#r")
    assert one(alice.send("MODE #r +v ghost"), "401").params[1] == "ghost"


def test_key_set_shown_and_removed(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    expected = Message.of("MODE", "#r", "+k", "sesame", source=alice.source)
    assert alice.send("MODE #r +k sesame") == [expected]
    assert bob.take() == [expected]
    assert channel_modes(bob.send("MODE #r")) == ({"k", "n", "t"}, ("sesame",))
    assert channel_modes(carol.send("MODE #r")) == ({"k", "n", "t"}, ("*",))  # outsider
    assert alice.send("MODE #r -k sesame") == [
        Message.of("MODE", "#r", "-k", "*", source=alice.source)
    ]
    assert channel_modes(alice.send("MODE #r")) == ({"n", "t"}, ())


@pytest.mark.parametrize("key", ["a,b", "x" * 33, "two words", ":colon"])
def test_malformed_key_gives_525(net: Net, key: str) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    assert one(alice.send(Message.of("MODE", "#r", "+k", key)), "525").params[1] == "#r"
    assert net.registry.find_channel("#r").key is None


def test_limit_set_and_removed(net: Net) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    assert alice.send("MODE #r +l 5") == [Message.of("MODE", "#r", "+l", "5", source=alice.source)]
    assert channel_modes(alice.send("MODE #r")) == ({"l", "n", "t"}, ("5",))
    assert alice.send("MODE #r -l") == [Message.of("MODE", "#r", "-l", source=alice.source)]
    assert net.registry.find_channel("#r").limit is None


@pytest.mark.parametrize("limit", ["abc", "0", "-3"])
def test_bad_limit_gives_696(net: Net, limit: str) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    out = alice.send(Message.of("MODE", "#r", "+l", limit))
    assert one(out, "696").params[1:4] == ("#r", "l", limit)
    assert "MODE" not in commands(out)


@pytest.mark.parametrize("flag", list("imst"))
def test_flag_modes_toggle(net: Net, flag: str) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    sign = "-" if flag in "nt" else "+"
    other = "+" if sign == "-" else "-"
    assert alice.send(f"MODE #r {sign}{flag}") == [
        Message.of("MODE", "#r", f"{sign}{flag}", source=alice.source)
    ]
    modes, _ = channel_modes(alice.send("MODE #r"))
    assert (flag in modes) == (sign == "+")
    assert alice.send(f"MODE #r {sign}{flag}") == []  # no change, no broadcast
    assert commands(alice.send(f"MODE #r {other}{flag}")) == ["MODE"]


def test_minus_n_then_plus_n(net: Net) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    assert one(alice.send("MODE #r -n+s"), "MODE").params == ("#r", "-n+s")
    assert channel_modes(alice.send("MODE #r")) == ({"s", "t"}, ())
    assert one(alice.send("MODE #r +n"), "MODE").params == ("#r", "+n")


def test_unknown_room_mode_gives_472_and_the_rest_applies(net: Net) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    out = alice.send("MODE #r +zm")
    assert one(out, "472").params[1] == "z"
    assert one(out, "MODE").params == ("#r", "+m")


def test_room_modes_need_an_operator(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    assert one(bob.send("MODE #r +m"), "482").params[1] == "#r"
    assert one(bob.send("MODE #r +o bob"), "482")
    assert alice.take() == []
    assert "m" not in net.registry.find_channel("#r").modes
    assert one(bob.send("MODE #nowhere +m"), "403")


def test_modes_limit_caps_parameter_modes_per_line() -> None:
    net = Net(modes_per_line=3)
    alice = net.user("alice")
    others = [net.user(n) for n in ("b1", "b2", "b3", "b4")]
    net.room("#r", alice, *others)
    out = alice.send("MODE #r +vvvv b1 b2 b3 b4")
    assert one(out, "MODE").params == ("#r", "+vvv", "b1", "b2", "b3")
    assert "+b4" not in names_in(alice.send("NAMES #r"))


def test_list_mode_query_ends_the_list_without_error(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    out = bob.send("MODE #r b")
    assert commands(out) == ["368"]
    assert out[0].params[1] == "#r"
    assert commands(bob.send("MODE #r +e")) == ["349"]
    assert commands(bob.send("MODE #r I")) == ["347"]


# --- operators --------------------------------------------------------------------------------


def test_oper_with_wrong_then_right_password() -> None:
    net = Net(opers={"root": "pw"})
    alice = net.user("alice")
    assert commands(alice.send("OPER root nope")) == ["464"]
    assert commands(alice.send("OPER nobody pw")) == ["464"]
    assert not alice.session.user.is_oper
    assert not alice.conn.closed
    out = alice.send("OPER root pw")
    assert out[0] == Message.of("MODE", "alice", "+o", source=alice.source)
    assert one(out, "381").params[0] == "alice"


def test_kill_needs_an_oper(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    assert commands(alice.send("KILL bob :go")) == ["481"]
    assert not bob.conn.closed


def test_kill_drops_the_victim_and_frees_its_nick() -> None:
    net = Net(opers={"root": "pw"})
    oper, bob, carol = net.user("oper"), net.user("bob"), net.user("carol")
    net.room("#r", bob, carol)
    oper.send("OPER root pw")
    assert oper.send("KILL bob :spamming") == []
    error = one(bob.take(), "ERROR")
    assert "Killed (oper (spamming))" in error.params[0]
    assert bob.conn.closed
    assert carol.take() == [Message.of("QUIT", "Killed (oper (spamming))", source=bob.source)]
    assert net.registry.find_user("bob") is None
    assert net.connect().send("NICK bob") == []
    assert one(oper.send("KILL ghost"), "401")


def test_wallops_reaches_plus_w_users_and_opers() -> None:
    net = Net(opers={"root": "pw"})
    oper, watcher, other = net.user("oper"), net.user("watcher"), net.user("other")
    assert commands(other.send("WALLOPS :hi")) == ["481"]
    watcher.send("MODE watcher +w")
    oper.send("OPER root pw")
    net.drain()
    expected = Message.of("WALLOPS", "server going down", source=oper.source)
    assert oper.send("WALLOPS :server going down") == [expected]
    assert watcher.take() == [expected]
    assert other.take() == []


# --- PING / QUIT / disconnect -----------------------------------------------------------------


def test_ping_gets_pong_with_the_token(net: Net) -> None:
    alice = net.user("alice")
    assert alice.send("PING :hello there") == [
        Message.of("PONG", SERVER, "hello there", source=SERVER)
    ]
    assert one(alice.send("PING"), "409").params[0] == "alice"


def test_quit_closes_and_tells_the_room(net: Net) -> None:
    alice, bob, carol = net.user("alice"), net.user("bob"), net.user("carol")
    net.room("#r", alice, bob)
    out = alice.send("QUIT :see you")
    assert commands(out) == ["ERROR"]
    assert out[0].params[0].startswith("Closing Link:")
    assert alice.conn.closed
    assert bob.take() == [Message.of("QUIT", "Quit: see you", source=alice.source)]
    assert carol.take() == []
    assert names_in(bob.send("NAMES #r")) == {"bob"}
    alice.session.disconnect()  # the handler notices the socket closing afterwards
    assert bob.take() == []


def test_vanished_socket_tells_the_room_once(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    alice.session.disconnect("Connection reset by peer")
    alice.session.disconnect("Connection reset by peer")
    assert bob.take() == [Message.of("QUIT", "Connection reset by peer", source=alice.source)]
    assert net.registry.find_channel("#r").members.keys() == {bob.session.user}


def test_unregistered_disconnect_frees_its_slot_quietly(net: Net) -> None:
    c = net.connect()
    c.send("NICK alice")
    c.session.disconnect()
    assert net.registry.connections == set()
    assert net.connect().send("NICK alice") == []


# --- bad bytes --------------------------------------------------------------------------------


def test_over_long_line_gives_417_and_the_session_carries_on(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    out = alice.send(b"PRIVMSG #r :" + b"x" * 600)
    assert commands(out) == ["417"]
    assert bob.take() == []
    alice.send("PRIVMSG #r :short")
    assert bob.take() == [Message.of("PRIVMSG", "#r", "short", source=alice.source)]


def test_invalid_utf8_is_failed_and_not_relayed(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    out = alice.send(b"PRIVMSG #r :caf\xe9")
    fail = one(out, "FAIL")
    assert fail.params[:2] == ("PRIVMSG", "INVALID_UTF8")
    assert bob.take() == []


@pytest.mark.parametrize("raw", [b"PRIVMSG #r :a\x00b", b"PRIVMSG #r :a\rb", b"PRIVMSG #r :a\r"])
def test_nul_or_bare_cr_gets_400_and_is_not_relayed(net: Net, raw: bytes) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    out = alice.send(raw)
    assert one(out, "400").params[1] == "PRIVMSG"
    assert bob.take() == []


def test_a_400_reply_stays_one_line_whatever_the_peer_sent(net: Net) -> None:
    # the reason quotes the peer's word: a repr of 4-byte characters is ten times their
    # size, and the reply must still fit a line (found by tests/server/test_fuzz.py)
    alice = net.user("alice")
    out = alice.conn.sent
    alice.session.handle_line(("@" + "\U0001b6d3" * 110 + "=x PING y").encode())  # bad tag key
    (line,) = out
    assert len(line) <= 512 and parse(line).command == "400"
    alice.take()
    # and a 421 quoting an unknown command word, valid or not
    for word in ("\U0001b6d3" * 125, "A" * 500):
        alice.session.handle_line(word.encode())
        (line,) = alice.conn.sent
        assert len(line) <= 512 and parse(line).command == "421"
        alice.take()


def test_one_error_path_uses_each_errors_hint() -> None:
    # RecvQExceeded is fatal: the handler passes it to the same refuse() as parse errors
    net = Net()
    alice = net.user("alice")
    alice.session.refuse(RecvQExceeded("RecvQ exceeded"))
    assert alice.conn.close_reason == "RecvQ exceeded"
    assert one(alice.take(), "ERROR").params[0].endswith("(RecvQ exceeded)")


def test_unknown_command_after_registration_gives_421(net: Net) -> None:
    out = net.user("alice").send("FROBNICATE now")
    assert one(out, "421").params == ("alice", "FROBNICATE", "Unknown command")


@pytest.mark.parametrize("line", ["JOIN", "KICK #r", "INVITE bob", "OPER root", "TOPIC", "WHOIS"])
def test_missing_parameters_give_461(net: Net, line: str) -> None:
    out = net.user("alice").send(line)
    assert commands(out) == ["461"]
    assert out[0].params[1] == line.split()[0]


@pytest.mark.parametrize(
    ("line", "numeric"),
    [
        ("NICK :a b", "432"),
        ("NICK ::x", "432"),
        ("JOIN :#a b", "403"),
        ("PART :#a b", "403"),
        ("TOPIC :", "403"),
        ("WHOIS :a b", "401"),
        ("WHOWAS :", "406"),
        ("KICK #r :", "441"),
        ("KICK #r ,bob", "441"),
        ("MODE :", "401"),
        ("MODE #r +v :", "401"),
        ("INVITE bob :", "403"),
        ("NAMES :#r x", "366"),
        ("CAP :", "410"),
    ],
)
def test_unsendable_echoed_argument_becomes_a_star(net: Net, line: str, numeric: str) -> None:
    # An empty argument, or one with a space or a leading colon, cannot be a middle
    # parameter of the reply; the client must still get its error (not silence).
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    out = alice.send(line)
    assert numeric in commands(out), out
    assert "*" in [p for m in all_of(out, numeric) for p in m.params[1:-1]]


# --- liveness (tick) --------------------------------------------------------------------------


def test_registration_timeout_drops_the_connection() -> None:
    net = Net(registration_timeout=30)
    c = net.connect()
    c.send("NICK slow")
    net.clock.advance(29)
    c.session.tick()
    assert c.take() == [] and not c.conn.closed
    net.clock.advance(2)
    c.session.tick()
    error = one(c.take(), "ERROR")
    assert "Registration timeout" in error.params[0]
    assert c.conn.closed
    assert net.connect().send("NICK slow") == []


def test_idle_client_is_pinged_then_dropped() -> None:
    net = Net(ping_interval=100, ping_timeout=20)
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    net.clock.advance(99)
    alice.session.tick()
    assert alice.take() == []
    net.clock.advance(2)
    alice.session.tick()
    assert alice.take() == [Message.of("PING", SERVER)]
    net.clock.advance(10)
    alice.session.tick()
    assert alice.take() == [] and not alice.conn.closed  # still within ping_timeout
    net.clock.advance(11)
    alice.session.tick()
    assert "Ping timeout" in one(alice.take(), "ERROR").params[0]
    assert alice.conn.closed
    quit_msg = one(bob.take(), "QUIT")
    assert quit_msg.nick == "alice" and quit_msg.params[0].startswith("Ping timeout")


def test_any_line_resets_the_ping_timer() -> None:
    net = Net(ping_interval=100, ping_timeout=20)
    alice = net.user("alice")
    net.clock.advance(101)
    alice.session.tick()
    assert commands(alice.take()) == ["PING"]
    net.clock.advance(15)
    alice.send(f"PONG :{SERVER}")
    net.clock.advance(15)
    alice.session.tick()
    assert alice.take() == [] and not alice.conn.closed
    net.clock.advance(90)  # 105 s since the PONG: idle again
    alice.session.tick()
    assert commands(alice.take()) == ["PING"]
    net.clock.advance(10)
    alice.send("PRIVMSG alice :any line counts")
    net.clock.advance(95)
    alice.session.tick()
    assert alice.take() == [] and not alice.conn.closed


# --- flood control ----------------------------------------------------------------------------


def test_flood_burst_then_steady_rate_then_excess_flood() -> None:
    net = Net(flood_burst=3, flood_rate=2.0, flood_max_lag=1.0)
    s = net.user("alice").session
    # the registration lines did not go through flood_delay; the bucket is full
    assert [s.flood_delay(queued=1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert s.flood_delay(queued=1) == pytest.approx(0.5)
    net.clock.advance(0.5)
    assert s.flood_delay(queued=1) == pytest.approx(0.5)  # one line per 1/rate seconds
    net.clock.advance(10)  # the bucket refills, up to the burst
    assert [s.flood_delay(queued=1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert s.flood_delay(queued=1) == pytest.approx(0.5)
    assert s.flood_delay(queued=4) is None  # 1 s owed plus 3 more lines queued: Excess Flood


def test_flood_limit_can_be_turned_off() -> None:
    net = Net(flood_limit=False, flood_burst=1)
    s = net.user("alice").session
    assert all(s.flood_delay(queued=1000) == 0.0 for _ in range(100))


def test_opers_are_exempt_from_flood_control() -> None:
    net = Net(flood_burst=1, flood_rate=1.0, flood_max_lag=1.0, opers={"root": "pw"})
    alice = net.user("alice")
    alice.send("OPER root pw")
    assert all(alice.session.flood_delay(queued=1000) == 0.0 for _ in range(100))


# --- connection limits ------------------------------------------------------------------------


def test_per_address_limit_refuses_the_third_connection() -> None:
    net = Net(max_per_address=2)
    first, second = net.connect("10.9.9.9"), net.connect("10.9.9.9")
    third = net.connect("10.9.9.9")
    error = one(third.take(), "ERROR")
    assert "Too many connections from your address" in error.params[0]
    assert third.conn.closed and not first.conn.closed and not second.conn.closed
    assert third.send("NICK late") == []
    assert net.connect("10.9.9.10").take() == []  # other hosts are fine
    first.session.disconnect()
    assert not net.connect("10.9.9.9").conn.closed  # the slot was given back


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_loopback_is_exempt_from_the_per_address_limit(host: str) -> None:
    net = Net(max_per_address=2)
    clients = [net.connect(host) for _ in range(5)]
    assert not any(c.conn.closed for c in clients)
    strict = Net(max_per_address=2, exempt_loopback=False)
    assert [strict.connect(host).conn.closed for _ in range(3)] == [False, False, True]


def test_max_clients_limits_the_total() -> None:
    net = Net(max_clients=3)
    clients = [net.connect() for _ in range(3)]
    late = net.connect("127.0.0.1")
    assert "Too many connections" in one(late.take(), "ERROR").params[0]
    assert late.conn.closed
    assert not any(c.conn.closed for c in clients)
    clients[0].session.disconnect()
    assert not net.connect().conn.closed


def test_empty_target_list_gets_411(net: Net) -> None:
    alice = net.user("alice")
    assert one(alice.send("PRIVMSG , :hi"), "411")


def test_repeated_target_delivers_once(net: Net) -> None:
    alice, bob = net.user("alice"), net.user("bob")
    net.room("#r", alice, bob)
    alice.send("PRIVMSG #r,#r :once")
    assert [m.params[1] for m in bob.take() if m.command == "PRIVMSG"] == ["once"]


def test_empty_modestring_answers_like_a_query(net: Net) -> None:
    alice = net.user("alice")
    net.room("#r", alice)
    assert one(alice.send("MODE #r :"), "324").params[2] == "+nt"


def test_wallops_without_text_is_461() -> None:
    net = Net(opers={"root": "pw"})
    alice = net.user("alice")
    alice.send("OPER root pw")
    assert one(alice.send("WALLOPS :"), "461")


def test_irssis_empty_join_probe_before_registration_is_ignored() -> None:
    net = Net()
    c = net.connect()
    assert c.send("JOIN :") == []
    assert one(c.send("JOIN #a"), "451")


# --- registration states ------------------------------------------------------------------------


def test_registration_moves_through_its_states(net: Net) -> None:
    c = net.connect()
    assert c.session.state is RegState.NEW
    c.send("CAP LS 302")
    assert c.session.state is RegState.NEGOTIATING
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice")
    assert c.session.state is RegState.NEGOTIATING  # CAP END still to come
    c.send("CAP END")
    assert c.session.state is RegState.REGISTERED
    assert net.registry.find_user("alice") is c.session.user
    with pytest.raises(RuntimeError):
        c.session._move(RegState.NEW)  # nothing leads back out of REGISTERED


def test_every_registration_state_has_its_moves() -> None:
    assert set(TRANSITIONS) == set(RegState)
    # registration completes only from NEW: never in the middle of CAP negotiation
    assert [s for s in RegState if RegState.REGISTERED in TRANSITIONS[s]] == [RegState.NEW]


def test_the_last_nick_given_before_the_password_is_the_one_claimed() -> None:
    net = Net(password="pw")
    c = net.connect()
    c.send("NICK first")
    c.send("PASS pw")
    c.send("NICK second")
    out = c.send("USER u 0 * :U")
    assert one(out, "001").params[0] == "second"
    assert net.registry.find_user("first") is None


# --- the command table ------------------------------------------------------------------------


def test_help_comes_from_the_command_table(net: Net) -> None:
    alice = net.user("alice")
    listed = all_of(alice.send("HELP"), "705")[0].params[-1].split()
    assert listed == sorted(COMMANDS)
    for name, row in COMMANDS.items():
        out = alice.send(f"HELP {name}")
        if row.help is None:
            assert commands(out) == ["524"], name
        else:
            assert one(out, "704").params[-1] == row.help


# --- layering and shared state ------------------------------------------------------------------


def test_importing_the_session_loads_no_io_module() -> None:
    code = (
        "import sys, chatroom.server.session\n"
        "assert not {'sqlite3', 'socket', 'selectors'} & set(sys.modules), sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_command_modules_can_be_imported_first() -> None:
    code = "import chatroom.server.commands.rooms as r, chatroom.server.session as s; " + (
        "assert 'JOIN' in s.COMMANDS"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def server_time_race_results(server_time: Callable[[int], str]) -> dict[int, str]:
    """What one thread's ``server_time`` gives while another thread, stamping the next
    second, is stopped at each line of it in turn (by a tracer): {line: result}."""
    code = server_time.__code__
    lines = sorted({n for *_, n in code.co_lines() if n and n > code.co_firstlineno})
    return {line: _stamp_while_another_stops(server_time, line) for line in lines}


def _stamp_while_another_stops(server_time: Callable[[int], str], stop_at: int) -> str:
    first, second = 1_700_000_000_000, 1_700_000_001_000
    server_time(first)  # the cache holds the first second
    code = server_time.__code__
    paused, resume = threading.Event(), threading.Event()

    def stop(frame: FrameType, event: str, arg: object) -> object:
        if event == "line" and frame.f_lineno == stop_at and not paused.is_set():
            paused.set()
            resume.wait(5)
        return stop

    def other() -> None:
        sys.settrace(lambda frame, event, arg: stop if frame.f_code is code else None)
        try:
            server_time(second + 7)
        finally:
            sys.settrace(None)

    t = threading.Thread(target=other)
    t.start()
    while not paused.wait(0.01) and t.is_alive():
        pass
    try:
        return server_time(first + 5)
    finally:
        resume.set()
        t.join()


def test_server_time_pairs_each_millisecond_with_its_own_second() -> None:
    # Every connection's thread stamps lines outside any lock: with the second and its
    # text cached in two globals, a thread could pair its milliseconds with the second
    # another thread had just written. Stop another thread at every point inside.
    right = time.strftime("%Y-%m-%dT%H:%M:%S.005Z", time.gmtime(1_700_000_000))
    results = server_time_race_results(tags.server_time)
    assert results and set(results.values()) == {right}, results
