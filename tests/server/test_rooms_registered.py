"""Registered rooms (ChanServ) on real sockets, across a restart of the server.

A registered room keeps its founder, access list, mask lists, topic and modes in the
database: after a restart (or once it has emptied) whoever comes back first is not
made operator by being first; operator status comes from the account.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.server import test_accounts
from tests.server.test_accounts import (
    FAST,
    IRCClient,
    ServerFixture,
    from_service,
    login_client,
    make_account,
    say,
    until,
)

# the fixtures of test_accounts.py: its server class, and clients to its servers
chat_server_class = test_accounts.chat_server_class
connect = test_accounts.connect
REFUSALS = ("471", "473", "474", "475")


def join_lines(c: IRCClient, room: str = "#room") -> list:
    """JOIN ``room``: the replies up to its end of NAMES, or up to the refusal."""
    c.send(f"JOIN {room}")
    return until(c, lambda m: m.command in ("366", *REFUSALS))


def names(lines: list) -> list[str]:
    return [n for m in lines if m.command == "353" for n in m.params[-1].split()]


def refusal(lines: list) -> str | None:
    return lines[-1].command if lines[-1].command in REFUSALS else None


def chanserv(c: IRCClient, text: str) -> list[str]:
    return from_service(say(c, f"PRIVMSG ChanServ :{text}"), "ChanServ")


def set_modes(c: IRCClient, *changes: str) -> None:
    for change in changes:
        c.send(f"MODE #room {change}")
        c.expect("MODE")


def leave(c: IRCClient) -> None:
    """QUIT and wait for the close (a stopping server waits for connected clients)."""
    c.send("QUIT")
    assert c.wait_closed()
    c.close()


def found_room(
    connect: Callable[..., IRCClient], fx: ServerFixture, *, bans_after: bool = False
) -> IRCClient:
    """Accounts alice, carol, dave and mallory; alice made #room, gave it a topic, +m,
    two bans (a nick mask and $a:mallory) and registered it, with carol +o and dave +v
    on its access list. The bans are set before REGISTER unless ``bans_after``."""
    for name in ("alice", "carol", "dave", "mallory"):
        make_account(connect, name, to=fx)
    alice = login_client(connect, "alice", to=fx)
    alice.join("#room")
    alice.send("TOPIC #room :plans for the weekend")
    alice.expect("TOPIC")
    set_modes(alice, "+m")
    if not bans_after:
        set_modes(alice, "+b spammer!*@*", "+b $a:mallory")
    said = chanserv(alice, "REGISTER #room")
    assert said and said[0].startswith("#room is registered to alice."), said
    if bans_after:
        set_modes(alice, "+b spammer!*@*", "+b $a:mallory")
    assert chanserv(alice, "AMODE #room +o carol") == ["carol: +o on #room whenever they join."]
    assert chanserv(alice, "AMODE #room +v dave") == ["dave: +v on #room whenever they join."]
    return alice


def test_a_registered_room_comes_back_with_founder_access_list_bans_topic_and_modes(
    server_factory, connect, tmp_path: Path
) -> None:
    fx = server_factory(db=str(tmp_path / "chat.db"), **FAST)
    leave(found_room(connect, fx))
    fx.restart()

    bob = connect("bob", to=fx)  # first back, no account: not made operator for it
    lines = join_lines(bob)
    assert names(lines) == ["bob"]
    assert [m.params[-1] for m in lines if m.command == "332"] == ["plans for the weekend"]
    bob.send("MODE #room")
    assert bob.expect("324").params[2] == "+mnt"

    alice = login_client(connect, "alice", to=fx)
    assert "@alice" in names(join_lines(alice))
    carol = login_client(connect, "carol", to=fx)
    assert "@carol" in names(join_lines(carol))
    dave = login_client(connect, "dave", to=fx)
    assert "+dave" in names(join_lines(dave))
    assert "erin" in names(join_lines(connect("erin", to=fx)))  # no account: no status

    assert refusal(join_lines(login_client(connect, "mallory", to=fx))) == "474"
    assert refusal(join_lines(connect("spammer", to=fx))) == "474"
    bob.send("MODE #room +b")
    bans = [m.params[2] for m in until(bob, lambda m: m.command == "368") if m.command == "367"]
    assert bans == ["spammer!*@*", "$a:mallory"]


def test_an_unregistered_room_makes_its_first_member_after_a_restart_operator(
    server_factory, connect, tmp_path: Path
) -> None:
    fx = server_factory(db=str(tmp_path / "chat.db"), **FAST)
    make_account(connect, "alice", to=fx)
    alice = login_client(connect, "alice", to=fx)
    alice.join("#plain")
    alice.send("TOPIC #plain :not registered")
    alice.expect("TOPIC")
    alice.close()  # gone without a word: the room still had a member when the server stopped
    fx.restart()
    bob = connect("bob", to=fx)
    assert names(join_lines(bob, "#plain")) == ["@bob"]
    alice = login_client(connect, "alice", to=fx)
    assert sorted(names(join_lines(alice, "#plain"))) == ["@bob", "alice"]


def test_bans_set_after_registering_survive_a_restart(
    server_factory, connect, tmp_path: Path
) -> None:
    fx = server_factory(db=str(tmp_path / "chat.db"), **FAST)
    leave(found_room(connect, fx, bans_after=True))
    fx.restart()
    connect("bob", to=fx).join("#room")
    assert refusal(join_lines(login_client(connect, "mallory", to=fx))) == "474"
    assert refusal(join_lines(connect("spammer", to=fx))) == "474"


def test_a_banned_account_is_kept_out_even_when_it_comes_back_first(
    server_factory, connect, tmp_path: Path
) -> None:
    fx = server_factory(db=str(tmp_path / "chat.db"), **FAST)
    leave(found_room(connect, fx))
    fx.restart()
    assert refusal(join_lines(login_client(connect, "mallory", to=fx))) == "474"


def test_chanserv_info_register_and_drop(server_factory, connect) -> None:
    fx = server_factory(**FAST)
    alice = found_room(connect, fx)
    bob = connect("bob", to=fx)
    info = chanserv(bob, "INFO #room")
    assert info[0].startswith("#room: founder alice, registered ")
    assert info[1:] == ["  +o alice", "  +o carol", "  +v dave"]
    assert chanserv(bob, "INFO #elsewhere") == ["#elsewhere is not registered."]

    # registering needs an account and operator status, once
    bob.join("#bobs")
    assert chanserv(bob, "REGISTER #bobs") == [
        "Log in first: a room is registered to your account."
    ]
    dave = login_client(connect, "dave", to=fx)  # voiced by the access list, not operator
    dave.join("#room")
    assert chanserv(dave, "REGISTER #room") == ["You must be an operator of #room to register it."]
    carol = login_client(connect, "carol", to=fx)  # operator by the access list
    carol.join("#room")
    assert chanserv(carol, "REGISTER #room") == ["#room is registered already."]

    # only the founder drops it
    assert chanserv(carol, "DROP #room") == ["Only the founder of #room may drop it."]
    assert chanserv(carol, "AMODE #room +o bob") == [
        "Only the founder of #room may change its access list."
    ]
    assert chanserv(bob, "INFO #room")[0].startswith("#room: founder alice")
    assert chanserv(alice, "DROP #room") == ["#room is no longer registered."]
    assert chanserv(bob, "INFO #room") == ["#room is not registered."]
