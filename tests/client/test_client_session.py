"""Socketless ClientSession tests: connection events and server lines in, lines to send
out, and what the model shows."""

from __future__ import annotations

import doctest

import pytest

import chatroom.client.model as model_module
import chatroom.client.session as session_module
from chatroom.client.events import (
    ConnState,
    LagMeasured,
    Notice,
    Registered,
    StateChanged,
)
from chatroom.client.model import SERVER_KEY, BufferKind, EntryKind, HistoryState
from chatroom.client.session import ClientSession
from chatroom.protocol import Cap, Message, parse

CAPS = frozenset({Cap.BATCH, Cap.DRAFT_CHATHISTORY, Cap.ECHO_MESSAGE, Cap.LABELED_RESPONSE})
BURST = (
    ":irc.test 001 alice :Welcome",
    ":irc.test 005 alice CHATHISTORY=50 MSGREFTYPES=msgid,timestamp :are supported",
    ":irc.test 376 alice :End of MOTD",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def receive(session: ClientSession, *lines: str) -> list[str]:
    """Feed server lines; the lines the session wants sent, as text."""
    out: list[Message] = []
    for line in lines:
        out += session.receive(parse(line))
    return [str(m) for m in out]


def link(session: ClientSession, *states: ConnState, reason: str = "", retry_in=None) -> None:
    for state in states:
        assert session.on_event(StateChanged(state, reason, retry_in)) == []


def register(session: ClientSession, caps: frozenset[str] = CAPS) -> list[str]:
    """Connect and register; the JOINs it sends, and what the burst makes it send."""
    link(session, ConnState.CONNECTING, ConnState.REGISTERING, ConnState.CONNECTED)
    joins = [str(m) for m in session.on_event(Registered("alice", "irc.test", caps))]
    return joins + receive(session, *BURST)


def server_lines(session: ClientSession) -> list[str]:
    return [e.text for e in session.state.buffers[SERVER_KEY].entries]


@pytest.fixture
def session() -> ClientSession:
    return ClientSession(
        "alice", "irc.test", label="irc.test:6667", rooms=["#lan", "#games"], clock=Clock()
    )


def test_module_doctests() -> None:
    assert doctest.testmod(session_module).failed == 0
    assert doctest.testmod(model_module).failed == 0


def test_the_session_imports_no_io() -> None:
    import subprocess
    import sys

    code = (
        "import sys, chatroom.client.session; "
        "print(sorted({'textual', 'asyncio', 'socket'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_registration_joins_the_first_rooms(session: ClientSession) -> None:
    link(session, ConnState.CONNECTING)
    assert server_lines(session) == ["Connecting to irc.test:6667…"]
    assert str(session.link) == "connecting" and not session.connected
    link(session, ConnState.REGISTERING, ConnState.CONNECTED)
    joins = session.on_event(Registered("alice", "irc.test", CAPS))
    assert [str(m) for m in joins] == ["JOIN #lan", "JOIN #games"]
    assert session.connected and session.state.echo_message
    assert server_lines(session)[-1] == "Connected to irc.test:6667 as alice"
    assert receive(session, *BURST) == []  # a first connection: nothing was missed
    session.on_event(LagMeasured(0.25))
    session.on_event(Notice("nick taken; trying alice_", error=True))
    assert session.lag == 0.25
    assert session.state.buffers[SERVER_KEY].entries[-1].kind is EntryKind.ERROR


def test_join_asks_for_history_and_files_the_batch(session: ClientSession) -> None:
    register(session)
    assert receive(session, "@msgid=j1 :alice!a@h JOIN #lan") == [
        "@label=hist1 CHATHISTORY LATEST #lan * 50"
    ]
    state = session.state
    assert state.active == "#lan"  # the first room is shown once joined
    lan = state.buffer("#lan")
    assert lan.history is HistoryState.LOADING
    sent = receive(
        session,
        "@label=hist1 :irc.test BATCH +L labeled-response",
        "@batch=L :irc.test BATCH +h chathistory #lan",
        "@batch=h;msgid=m1;time=2024-01-01T00:00:00.000Z :bob!b@h PRIVMSG #lan :one",
        "@batch=h;msgid=m2;time=2024-01-01T00:00:01.000Z :bob!b@h PRIVMSG #lan :alice: two",
        "@batch=L :irc.test BATCH -h",
    )
    assert sent == [] and [e.kind for e in lan.entries] == [EntryKind.JOIN]  # not finished
    assert receive(session, ":irc.test BATCH -L") == []
    assert [e.text for e in lan.entries if e.history] == ["one", "alice: two"]
    assert lan.entries[-1].kind is EntryKind.JOIN  # history goes before our JOIN
    assert lan.history is HistoryState.COMPLETE and lan.mentions == 0
    assert receive(session, "@msgid=j2 :alice!a@h JOIN #games") == [
        "@label=hist2 CHATHISTORY LATEST #games * 50"
    ]
    assert state.active == "#lan"  # only the first room takes the view


def test_without_history_caps_nothing_is_asked(session: ClientSession) -> None:
    assert register(session, frozenset({Cap.SERVER_TIME})) == ["JOIN #lan", "JOIN #games"]
    assert receive(session, ":alice!a@h JOIN #lan", ":bob!b@h PRIVMSG alice :hi") == []
    assert session.state.buffer("#lan").history is HistoryState.NONE
    assert session.older("#lan") == [] and not session.state.echo_message


def test_a_private_window_fetches_its_conversation(session: ClientSession) -> None:
    register(session)
    assert receive(session, "@msgid=p1 :bob!b@h PRIVMSG alice :psst") == [
        "@label=hist1 CHATHISTORY LATEST bob * 50"
    ]
    assert session.state.buffer("bob").kind is BufferKind.QUERY
    # A window the user opens (/query) is fetched when the app asks after the command.
    session.state.open("carol", BufferKind.QUERY)
    assert [str(m) for m in session.fetch_opened()] == [
        "@label=hist2 CHATHISTORY LATEST carol * 50"
    ]
    assert session.fetch_opened() == []


def test_offline_nothing_is_sent_and_the_reconnect_catches_up(session: ClientSession) -> None:
    register(session)
    receive(session, "@msgid=j1 :alice!a@h JOIN #lan")
    receive(
        session,
        ":irc.test BATCH +h chathistory #lan",
        "@batch=h;msgid=m1;time=2024-01-01T00:00:00.000Z :bob!b@h PRIVMSG #lan :seen",
        ":irc.test BATCH -h",
    )
    session.state.own_message("#lan", "on its way")
    link(session, ConnState.WAITING, reason="connection lost", retry_in=2.0)
    state = session.state
    lan = state.buffer("#lan")
    assert not session.connected and session.link_detail == "retry in 2 s"
    assert server_lines(session)[-1] == "Disconnected: connection lost; retrying in 2 s"
    assert lan.entries[-2].failed and not lan.members  # no echo will come now
    # While offline: a window opens, and the user scrolls up; nothing goes out.
    state.open("carol", BufferKind.QUERY)
    assert session.fetch_opened() == [] and session.older("#lan") == []
    link(session, ConnState.CONNECTING, ConnState.REGISTERING, ConnState.CONNECTED)
    assert [str(m) for m in session.on_event(Registered("alice", "irc.test", CAPS))] == [
        "JOIN #lan"  # the rooms we are in, not the first ones
    ]
    burst = receive(session, *BURST)
    assert burst[0].startswith("@label=hist2 CHATHISTORY TARGETS timestamp=")
    assert burst[1:] == ["@label=hist3 CHATHISTORY LATEST carol * 50"]
    assert receive(session, "@msgid=j2 :alice!a@h JOIN #lan") == [
        "@label=hist4 CHATHISTORY AFTER #lan msgid=m1 50"
    ]


def test_chathistory_fail_retries_or_is_shown(session: ClientSession) -> None:
    register(session)
    receive(session, "@msgid=j1 :alice!a@h JOIN #lan")
    fail = "@label=hist1 :irc.test FAIL CHATHISTORY INVALID_TARGET LATEST #lan :No history"
    assert receive(session, fail) == []
    lan = session.state.buffer("#lan")
    assert lan.history is HistoryState.UNAVAILABLE
    assert "History of #lan is unavailable: No history" in lan.entries[-1].text
    # A FAIL about no request of ours is an error line like any other.
    receive(session, ":irc.test FAIL CHATHISTORY MESSAGE_ERROR LATEST #x :Broken")
    assert session.state.active_buffer.entries[-1].text == "CHATHISTORY: Broken (MESSAGE_ERROR)"


def test_failing_to_connect_and_giving_up_are_told(session: ClientSession) -> None:
    link(session, ConnState.CONNECTING)
    link(session, ConnState.WAITING, reason="connection refused", retry_in=1.0)
    assert server_lines(session)[-1] == "Could not connect: connection refused; retrying in 1 s"
    link(session, ConnState.CLOSED, reason="wrong password")
    assert server_lines(session)[-1] == "Disconnected for good: wrong password"
    assert str(session.link) == "closed"


def test_history_requests_expire(session: ClientSession) -> None:
    register(session)
    receive(session, "@msgid=j1 :alice!a@h JOIN #lan")
    session.history.clock.now += session.history.timeout + 1  # type: ignore[attr-defined]
    session.expire()
    lan = session.state.buffer("#lan")
    assert lan.history is HistoryState.MORE and "No answer" in lan.entries[-1].text
    assert [str(m) for m in session.older("#lan")] == ["@label=hist2 CHATHISTORY LATEST #lan * 50"]
