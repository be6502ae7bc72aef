"""Typing notifications, reactions and replies over real sockets: ``+typing`` relayed
on TAGMSG and never stored; ``+draft/react`` with ``+draft/reply`` (or ``+reply``)
relayed and kept, and given back by CHATHISTORY as TAGMSG only to clients of
draft/event-playback (with topic changes); oversized tags refused. Expectations come
from the IRCv3 specs (message-tags, client-tags typing/react/reply, chathistory's event
playback) and irctest's chathistory.py.
"""

from __future__ import annotations

import pytest

from chatroom.protocol import Cap, Message
from tests.server.test_ircv3 import cap_client, cap_ls, chathistory, sync

TAGS = (Cap.MESSAGE_TAGS, Cap.BATCH, Cap.SERVER_TIME, Cap.ECHO_MESSAGE)
READER = (Cap.MESSAGE_TAGS, Cap.BATCH, Cap.SERVER_TIME, Cap.DRAFT_CHATHISTORY)
EVENTS = (*READER, Cap.DRAFT_EVENT_PLAYBACK)


@pytest.fixture
def fx(server_factory):
    return server_factory(flood_limit=False)


pytestmark = pytest.mark.usefixtures("no_errors_logged")


def heard(sender, receiver) -> list[Message]:
    """What ``receiver`` got once everything ``sender`` sent has been handled."""
    sync(sender)
    return sync(receiver)


def tagmsgs(msgs: list[Message]) -> list[Message]:
    return [m for m in msgs if m.command == "TAGMSG"]


def history(c, target: str, count: int = 20) -> list[Message]:
    """The lines of a CHATHISTORY LATEST batch (its BATCH lines left out)."""
    got = chathistory(c, "LATEST", target, "*", str(count))
    assert got[0].command == "BATCH", got
    return got[1:-1]


def room(connect, fx, **clients):
    made = {}
    for nick, caps in clients.items():
        c = cap_client(connect, fx, nick, caps)
        c.join("#test")
        made[nick] = c
    for c in made.values():
        sync(c)
    return made


def test_cap_ls_offers_event_playback_with_history(fx, server_factory, connect):
    assert "draft/event-playback" in cap_ls(connect(to=fx))
    bare = server_factory(history=False)
    assert "draft/event-playback" not in cap_ls(connect(to=bare))


# --- typing ------------------------------------------------------------------------------------


def test_typing_reaches_tag_clients_in_rooms_and_private_and_is_never_stored(fx, connect):
    people = room(connect, fx, alice=TAGS, bob=TAGS, dave=(), tim=(Cap.SERVER_TIME,))
    alice, bob = people["alice"], people["bob"]
    alice.send("@+typing=active TAGMSG #test")
    (relayed,) = tagmsgs(heard(alice, bob))
    assert relayed.tags["+typing"] == "active" and relayed.params == ("#test",)
    assert relayed.tags["msgid"]
    assert heard(alice, people["dave"]) == [] and sync(people["tim"]) == []
    alice.send("@+typing=paused TAGMSG bob")
    (private,) = tagmsgs(heard(alice, bob))
    assert private.tags["+typing"] == "paused" and private.params == ("bob",)
    alice.send("@+typing=active TAGMSG dave")  # no message-tags: nothing at all
    assert heard(alice, people["dave"]) == []

    reader = cap_client(connect, fx, "reader", EVENTS)
    reader.join("#test")
    assert history(reader, "#test") == []  # even with event playback: nothing kept


def test_typing_in_private_is_not_stored(fx, connect):
    alice = cap_client(connect, fx, "alice", EVENTS)
    bob = cap_client(connect, fx, "bob", EVENTS)
    alice.send("@+typing=active TAGMSG bob")
    assert tagmsgs(heard(alice, bob))
    assert history(alice, "bob") == []


# --- reactions and replies ---------------------------------------------------------------------


@pytest.mark.parametrize("reply_tag", ["+draft/reply", "+reply"])
def test_a_reaction_is_relayed_and_stored_for_later(fx, connect, reply_tag):
    people = room(connect, fx, alice=TAGS, bob=TAGS, dave=())
    alice, bob = people["alice"], people["bob"]
    alice.send("PRIVMSG #test :lunch?")
    parent = bob.expect("PRIVMSG").tags["msgid"]
    bob.send(f"@+draft/react=👍;{reply_tag}={parent} TAGMSG #test")
    (relayed,) = tagmsgs(heard(bob, alice))
    assert relayed.tags["+draft/react"] == "👍" and relayed.tags[reply_tag] == parent
    react_id = relayed.tags["msgid"]
    assert [m.command for m in heard(bob, people["dave"])] == ["PRIVMSG"]  # the text only

    # a late joiner with event playback sees the message and the reaction to it
    late = cap_client(connect, fx, "late", EVENTS)
    late.join("#test")
    lines = history(late, "#test")
    assert [m.command for m in lines] == ["PRIVMSG", "TAGMSG"]
    react = lines[1]
    assert react.tags["msgid"] == react_id and react.source.startswith("bob!")
    assert react.tags["+draft/react"] == "👍" and react.tags[reply_tag] == parent
    assert react.params == ("#test",)
    # without event playback: the messages only, and the limit counts only them
    plain = cap_client(connect, fx, "plain", READER)
    plain.join("#test")
    assert [m.command for m in history(plain, "#test", 1)] == ["PRIVMSG"]


def test_a_private_reaction_is_stored_and_replayed_with_event_playback(fx, connect):
    alice = cap_client(connect, fx, "alice", (*TAGS, Cap.DRAFT_CHATHISTORY))
    bob = cap_client(connect, fx, "bob", EVENTS)
    alice.send("PRIVMSG bob :hello")
    parent = bob.expect("PRIVMSG").tags["msgid"]
    bob.send(f"@+draft/react=🎉;+reply={parent} TAGMSG alice")
    assert tagmsgs(heard(bob, alice))
    assert [m.command for m in history(bob, "alice")] == ["PRIVMSG", "TAGMSG"]
    assert [m.command for m in history(alice, "bob")] == ["PRIVMSG"]


def test_a_reply_keeps_its_tag_in_history(fx, connect):
    people = room(connect, fx, alice=TAGS, bob=TAGS)
    alice, bob = people["alice"], people["bob"]
    alice.send("PRIVMSG #test :question")
    parent = bob.expect("PRIVMSG").tags["msgid"]
    bob.send(f"@+reply={parent} PRIVMSG #test :answer")
    answer = alice.expect("PRIVMSG", where=lambda m: m.params[-1] == "answer")
    assert answer.tags["+reply"] == parent
    reader = cap_client(connect, fx, "reader", READER)
    reader.join("#test")
    lines = history(reader, "#test")
    assert [m.params[-1] for m in lines] == ["question", "answer"]
    assert lines[1].tags["+reply"] == parent


def test_playback_on_join_leaves_reactions_out(server_factory, connect):
    fx = server_factory(flood_limit=False, playback_lines=5)
    people = room(connect, fx, alice=TAGS)
    alice = people["alice"]
    alice.send("PRIVMSG #test :one")
    alice.send("@+draft/react=👍 TAGMSG #test")
    sync(alice)
    irssi = connect("irssi", to=fx)
    irssi.send("JOIN #test")
    got = sync(irssi)
    assert [m.command for m in got if m.command in ("PRIVMSG", "TAGMSG")] == ["PRIVMSG"]


def test_topic_changes_come_back_as_events_only_with_event_playback(fx, connect):
    people = room(connect, fx, alice=TAGS)
    alice = people["alice"]
    alice.send("TOPIC #test :the plan")
    alice.send("PRIVMSG #test :hi")
    sync(alice)
    events = cap_client(connect, fx, "ev", EVENTS)
    events.join("#test")
    lines = history(events, "#test")
    assert [(m.command, m.params[-1]) for m in lines] == [("TOPIC", "the plan"), ("PRIVMSG", "hi")]
    plain = cap_client(connect, fx, "pl", READER)
    plain.join("#test")
    assert [m.command for m in history(plain, "#test")] == ["PRIVMSG"]


# --- bad input ----------------------------------------------------------------------------------


def test_a_ten_kilobyte_reaction_is_refused_and_not_stored(fx, connect):
    people = room(connect, fx, alice=TAGS, bob=TAGS)
    alice, bob = people["alice"], people["bob"]
    alice.send("PRIVMSG #test :hello")
    parent = bob.expect("PRIVMSG").tags["msgid"]
    sync(alice)
    bob.send(f"@+draft/react={'x' * 10_000};+draft/reply={parent} TAGMSG #test")
    got = sync(bob)
    assert [m.command for m in got] == ["417"]
    # just over the client tag limit (4094 bytes of tag data) is refused the same way
    bob.send(f"@+draft/react={'x' * 4090};+draft/reply={parent} TAGMSG #test")
    assert [m.command for m in sync(bob)] == ["417"]
    assert tagmsgs(sync(alice)) == []
    reader = cap_client(connect, fx, "reader", EVENTS)
    reader.join("#test")
    assert [m.command for m in history(reader, "#test")] == ["PRIVMSG"]
