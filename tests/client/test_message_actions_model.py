"""Socketless: typing notices, reactions, replies and deletions in the client model, the
lines the user's acts send, and how such lines are drawn."""

from __future__ import annotations

import pytest
from rich.console import Console

from chatroom.client.actions import (
    TypingNotifier,
    delete_problem,
    react_problem,
    reply_problem,
)
from chatroom.client.commands import CommandError, run_input
from chatroom.client.connection import WANTED_CAPS
from chatroom.client.events import ConnState, Registered, StateChanged
from chatroom.client.model import DELETED_TEXT, Entry, EntryKind
from chatroom.client.session import ClientSession
from chatroom.client.state import ClientState
from chatroom.client.widgets.log import EARLIER_MESSAGE, find_urls, render_entry
from chatroom.protocol import Cap, Message, parse

TAGS = frozenset({Cap.MESSAGE_TAGS, Cap.MESSAGE_REDACTION, Cap.BATCH, Cap.DRAFT_EVENT_PLAYBACK})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(state: ClientState, *lines: str) -> None:
    for line in lines:
        state.handle(parse(line))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> ClientState:
    s = ClientState("alice", "irc.test", clock=clock)
    feed(
        s,
        ":irc.test 001 alice :Welcome",
        ":irc.test 005 alice PREFIX=(ov)@+ CHANTYPES=# :are supported",
        ":alice!a@h JOIN #lan",
        ":irc.test 353 alice = #lan :alice +bob carol dave",
        ":irc.test 366 alice #lan :End of /NAMES list.",
        "@msgid=m1 :bob!b@h PRIVMSG #lan :hello there",
    )
    s.set_active("#lan")
    return s


def lan(state: ClientState):
    buf = state.buffer("#lan")
    assert buf is not None
    return buf


def by_msgid(state: ClientState, msgid: str) -> Entry:
    buf = lan(state)
    index = buf.find(msgid)
    assert index is not None
    return buf.entries[index]


# --- typing -------------------------------------------------------------------------------


def test_typing_shows_in_order_and_expires(state: ClientState, clock: Clock) -> None:
    feed(state, "@+typing=active :bob!b@h TAGMSG #lan")
    assert state.typing_nicks(lan(state)) == ["bob"]
    clock.now += 2
    feed(state, "@+typing=active :carol!c@h TAGMSG #lan")
    assert state.typing_nicks(lan(state)) == ["bob", "carol"]
    clock.now += 4.5  # bob's notice is 6.5 s old, carol's 4.5 s
    assert state.expire_typing()
    assert state.typing_nicks(lan(state)) == ["carol"]
    feed(state, "@+typing=active :carol!c@h TAGMSG #lan")  # news: 6 s more
    clock.now += 5
    assert not state.expire_typing() and state.typing_nicks(lan(state)) == ["carol"]


@pytest.mark.parametrize(
    "line",
    [
        "@+typing=done :bob!b@h TAGMSG #lan",
        "@+typing=paused :bob!b@h TAGMSG #lan",
        ":bob!b@h PRIVMSG #lan :there it is",
        ":bob!b@h PART #lan",
        ":bob!b@h QUIT :gone",
        ":alice!a@h KICK #lan bob",
        ":bob!b@h NICK robert",
    ],
)
def test_typing_ends(state: ClientState, line: str) -> None:
    feed(state, "@+typing=active :bob!b@h TAGMSG #lan")
    feed(state, line)
    assert state.typing_nicks(lan(state)) == []


def test_typing_never_opens_a_window_and_ignores_ourselves(state: ClientState) -> None:
    feed(
        state,
        "@+typing=active :zed!z@h TAGMSG alice",  # no private window with zed
        "@+typing=active :alice!a@h TAGMSG #lan",  # our own, echoed
        "@+typing=active :irc.test TAGMSG #lan",  # not a user
    )
    assert state.buffer("zed") is None
    assert state.typing_nicks(lan(state)) == []


def test_typing_notifier_throttles_and_says_done() -> None:
    clock = Clock()
    notifier = TypingNotifier(interval=3.0, clock=clock)
    sent = [str(m) for m in notifier.update("#lan", "h")]
    assert sent == ["@+typing=active TAGMSG #lan"]
    for text in ("he", "hel", "hell"):
        clock.now += 0.5
        assert notifier.update("#lan", text) == []  # at most every 3 s
    clock.now += 2
    assert [str(m) for m in notifier.update("#lan", "hello")] == ["@+typing=active TAGMSG #lan"]
    assert [str(m) for m in notifier.update("#lan", "")] == ["@+typing=done TAGMSG #lan"]
    assert notifier.update("#lan", "") == []  # said once
    # Typing again starts at once; sending ends it; commands are not typing.
    assert [str(m) for m in notifier.update("#lan", "x")] == ["@+typing=active TAGMSG #lan"]
    assert [str(m) for m in notifier.sent()] == ["@+typing=done TAGMSG #lan"]
    assert notifier.update("#lan", "/join #x") == []
    # Another window: done to the one we left, active to this one.
    notifier.update("#lan", "a")
    moved = [str(m) for m in notifier.update("bob", "ab")]
    assert moved == ["@+typing=done TAGMSG #lan", "@+typing=active TAGMSG bob"]


def test_session_types_only_where_it_can(clock: Clock) -> None:
    def session(caps: frozenset[str]) -> ClientSession:
        s = ClientSession("alice", "irc.test", clock=clock)
        for step in (ConnState.CONNECTING, ConnState.REGISTERING, ConnState.CONNECTED):
            s.on_event(StateChanged(step))
        s.on_event(Registered("alice", "irc.test", caps))
        s.receive(parse(":alice!a@h JOIN #lan"))
        s.state.set_active("#lan")
        return s

    assert [str(m) for m in session(TAGS).typing("hi")] == ["@+typing=active TAGMSG #lan"]
    assert session(frozenset()).typing("hi") == []  # no message-tags: nothing
    tagged = session(TAGS)
    tagged.state.set_active("")
    assert tagged.typing("hi") == []  # the server window


def test_wanted_caps_include_playback_and_redaction() -> None:
    assert {Cap.DRAFT_EVENT_PLAYBACK, Cap.MESSAGE_REDACTION} <= WANTED_CAPS


# --- reactions ----------------------------------------------------------------------------


def test_reactions_count_each_person_once(state: ClientState) -> None:
    feed(
        state,
        "@+draft/react=👍;+draft/reply=m1 :carol!c@h TAGMSG #lan",
        "@+draft/react=👍;+reply=m1 :dave!d@h TAGMSG #lan",
        "@+draft/react=👍;+draft/reply=m1 :Carol!c@h TAGMSG #lan",  # carol again
        "@+draft/react=🎉;+draft/reply=m1 :alice!a@h TAGMSG #lan",  # ours (echoed)
    )
    reactions = by_msgid(state, "m1").reactions
    assert [(r.emoji, r.count, r.mine) for r in reactions] == [("👍", 2, False), ("🎉", 1, True)]
    assert lan(state).unread == 0  # a reaction is not a message


@pytest.mark.parametrize(
    "line",
    [
        "@+draft/react=" + "x" * 500 + ";+draft/reply=m1 :bob!b@h TAGMSG #lan",  # too long
        "@+draft/react=a\\sb;+draft/reply=m1 :bob!b@h TAGMSG #lan",  # a space
        "@+draft/react=\x1b[2J;+draft/reply=m1 :bob!b@h TAGMSG #lan",  # a terminal control
        "@+draft/react=\u202eevil;+draft/reply=m1 :bob!b@h TAGMSG #lan",  # a bidi override
        "@+draft/react=👍 :bob!b@h TAGMSG #lan",  # no message named
    ],
)
def test_bad_reactions_are_not_shown(state: ClientState, line: str) -> None:
    feed(state, line)
    assert by_msgid(state, "m1").reactions == ()


def test_reaction_before_its_message_waits_for_it(state: ClientState) -> None:
    feed(state, "@+draft/react=👍;+draft/reply=m0 :bob!b@h TAGMSG #lan")
    buf = lan(state)
    old = state.history_entry(buf, parse("@msgid=m0 :carol!c@h PRIVMSG #lan :older"))
    assert old is not None
    state.insert_history(buf, [old], None)
    assert [(r.emoji, r.count) for r in by_msgid(state, "m0").reactions] == [("👍", 1)]


def test_history_batch_brings_reactions(clock: Clock) -> None:
    session = ClientSession("alice", "irc.test", clock=clock)
    for step in (ConnState.CONNECTING, ConnState.REGISTERING, ConnState.CONNECTED):
        session.on_event(StateChanged(step))
    out = session.on_event(Registered("alice", "irc.test", TAGS | {Cap.DRAFT_CHATHISTORY}))
    out += session.receive(parse(":alice!a@h JOIN #lan"))
    assert any(m.command == "CHATHISTORY" for m in out)
    for line in (
        ":irc.test BATCH +h chathistory #lan",
        "@batch=h;msgid=p1 :bob!b@h PRIVMSG #lan :lunch?",
        "@batch=h;msgid=p2;+draft/reply=p1 :carol!c@h PRIVMSG #lan :yes",
        "@batch=h;msgid=p3;+draft/react=🍕;+draft/reply=p1 :carol!c@h TAGMSG #lan",
        ":irc.test BATCH -h",
    ):
        session.receive(parse(line))
    buf = session.state.buffer("#lan")
    assert buf is not None
    parent = buf.entries[buf.find("p1")]  # type: ignore[index]
    reply = buf.entries[buf.find("p2")]  # type: ignore[index]
    assert [(r.emoji, r.count) for r in parent.reactions] == [("🍕", 1)]
    assert reply.quote == "bob: lunch?"
    assert [e.text for e in buf.entries if e.kind is EntryKind.MESSAGE] == ["lunch?", "yes"]


# --- replies ------------------------------------------------------------------------------


def test_reply_quotes_its_parent_or_waits_for_it(state: ClientState) -> None:
    long = "word " * 30
    feed(
        state,
        f"@msgid=m2 :carol!c@h PRIVMSG #lan :{long}",
        "@msgid=m3;+reply=m2 :dave!d@h PRIVMSG #lan :agreed",
        "@msgid=m4;+draft/reply=m0 :dave!d@h PRIVMSG #lan :and that",
    )
    quote = by_msgid(state, "m3").quote
    assert quote.startswith("carol: word word") and quote.endswith("…")
    assert len(quote) <= len("carol: ") + 61
    assert by_msgid(state, "m4").quote == ""  # m0 is not loaded
    buf = lan(state)
    old = state.history_entry(buf, parse("@msgid=m0 :bob!b@h PRIVMSG #lan :the \x02start\x02"))
    assert old is not None
    state.insert_history(buf, [old], None)
    assert by_msgid(state, "m4").quote == "bob: the start"


def test_own_reply_is_sent_with_both_tags_and_quoted_at_once(state: ClientState) -> None:
    target = Target(state)
    tags = {"+reply": "m1", "+draft/reply": "m1"}
    assert run_input(target, "indeed", tags=tags)
    assert str(target.sent[-1]) == "@+reply=m1;+draft/reply=m1 PRIVMSG #lan :indeed"
    assert lan(state).entries[-1].quote == "bob: hello there"
    assert not run_input(target, "/me nods", tags=tags)  # a command: not text


# --- deletions ----------------------------------------------------------------------------


def test_redact_deletes_for_everyone(state: ClientState) -> None:
    feed(
        state,
        "@+draft/react=👍;+draft/reply=m1 :carol!c@h TAGMSG #lan",
        "@msgid=m2;+reply=m1 :carol!c@h PRIVMSG #lan :what?",
        ":bob!b@h REDACT #lan m1 :oops",
    )
    gone = by_msgid(state, "m1")
    assert gone.deleted and gone.text == "" and gone.reactions == ()
    assert gone.nick == "bob"  # its sender and time stay
    assert by_msgid(state, "m2").quote == f"bob: {DELETED_TEXT}"
    feed(state, "@+draft/react=👍;+draft/reply=m1 :dave!d@h TAGMSG #lan")
    assert by_msgid(state, "m1").reactions == ()  # nothing gathers on a deleted line


def test_private_redact_finds_its_window(state: ClientState) -> None:
    feed(
        state,
        "@msgid=q1 :bob!b@h PRIVMSG alice :psst",
        "@msgid=q2 :alice!a@h PRIVMSG bob :what",
        ":bob!b@h REDACT alice q1",
        ":alice!a@h REDACT bob q2",
    )
    buf = state.buffer("bob")
    assert buf is not None and [e.deleted for e in buf.entries] == [True, True]


def test_fail_redact_is_an_error_in_its_window(state: ClientState) -> None:
    state.set_active("")
    feed(state, "FAIL REDACT REDACT_FORBIDDEN #lan m1 :You are not authorised to delete this")
    last = lan(state).entries[-1]
    assert last.kind is EntryKind.ERROR
    assert last.text.startswith("Could not delete the message: You are not authorised")


def test_who_may_delete_what(state: ClientState) -> None:
    caps = frozenset({Cap.MESSAGE_TAGS, Cap.MESSAGE_REDACTION})
    buf = lan(state)
    theirs = by_msgid(state, "m1")
    assert "own messages" in (delete_problem(state, caps, buf, theirs) or "")
    feed(state, ":irc.test MODE #lan +o alice")
    assert delete_problem(state, caps, buf, theirs) is None  # an operator may
    assert "does not support deleting" in (delete_problem(state, frozenset(), buf, theirs) or "")
    assert "does not support reactions" in (react_problem(frozenset(), theirs) or "")
    assert "does not support replies" in (reply_problem(frozenset(), theirs) or "")
    feed(state, ":bob!b@h PRIVMSG #lan :from a server without msgids")
    assert "no id" in (react_problem(caps, lan(state).entries[-1]) or "")


# --- commands -----------------------------------------------------------------------------


class Target:
    """A CommandTarget recording what it would send."""

    def __init__(self, state: ClientState, caps: frozenset[str] = TAGS) -> None:
        self.state = state
        self.caps = caps
        self.sent: list[Message] = []
        self.selected: Entry | None = None

    def send(self, message: Message) -> bool:
        self.sent.append(message)
        return True

    def server_caps(self) -> frozenset[str]:
        return self.caps

    def selected_entry(self) -> Entry | None:
        return self.selected


def test_react_command(state: ClientState) -> None:
    target = Target(state)
    run_input(target, "/react 👍")  # no selection: the last message here
    assert str(target.sent[-1]) == "@+draft/react=👍;+reply=m1;+draft/reply=m1 TAGMSG #lan"
    assert [(r.emoji, r.mine) for r in by_msgid(state, "m1").reactions] == [("👍", True)]
    for line, error in [
        ("/react", "Missing argument"),
        ("/react two words", "one emoji"),
    ]:
        with pytest.raises(CommandError, match=error):
            run_input(target, line)
    with pytest.raises(CommandError, match="does not support reactions"):
        run_input(Target(state, frozenset()), "/react 👍")


# --- drawing ------------------------------------------------------------------------------


def rows(entry: Entry, width: int = 100) -> list[str]:
    console = Console(width=width, color_system=None)
    return [strip.text.rstrip() for strip in render_entry(entry, width, console)]


def test_reply_reactions_and_deletion_are_drawn(state: ClientState) -> None:
    feed(
        state,
        "@msgid=m2;+reply=m1 :carol!c@h PRIVMSG #lan :[bold]agreed[/] https://example.com/x",
        "@msgid=m3;+reply=zz :carol!c@h PRIVMSG #lan :hm",
        "@+draft/react=👍;+draft/reply=m2 :dave!d@h TAGMSG #lan",
        "@+draft/react=👍;+draft/reply=m2 :alice!a@h TAGMSG #lan",
        "@+draft/react=🎉;+draft/reply=m2 :bob!b@h TAGMSG #lan",
    )
    quote, line, reactions = rows(by_msgid(state, "m2"))
    assert quote.strip() == "↪ bob: hello there"
    assert line.endswith("carol │ [bold]agreed[/] https://example.com/x")  # no markup
    assert reactions.strip() == "👍 2  🎉 1"
    assert rows(by_msgid(state, "m3"))[0].strip() == f"↪ {EARLIER_MESSAGE}"
    # Ours is highlighted: 👍 has our nick, 🎉 not.
    strip = render_entry(by_msgid(state, "m2"), 100, Console(width=100))[-1]
    styled = {seg.text.strip(): seg.style for seg in strip if seg.text.strip()}
    assert styled["👍 2"].bold and not styled["🎉 1"].bold
    feed(state, ":bob!b@h REDACT #lan m1")
    assert rows(by_msgid(state, "m1")) == [rows(by_msgid(state, "m1"))[0]]
    assert rows(by_msgid(state, "m1"))[0].endswith(f"bob │ {DELETED_TEXT}")


def test_links_carry_the_address_as_data(state: ClientState) -> None:
    text = "see https://example.com/a?b=1&c='x' and http://x.org/p). ftp://no javascript:alert(1)"
    assert [text[a:b] for a, b in find_urls(text)] == [
        "https://example.com/a?b=1&c=",
        "http://x.org/p",
    ]
    feed(state, f"@msgid=m9 :bob!b@h PRIVMSG #lan :{text}")
    strip = render_entry(by_msgid(state, "m9"), 200, Console(width=200))[0]
    actions = [seg.style.meta["@click"] for seg in strip if seg.style and seg.style.meta]
    assert [a for a in actions] == [
        ("open_link", ("https://example.com/a?b=1&c=",)),
        ("open_link", ("http://x.org/p",)),
    ]


def test_doctests() -> None:
    import doctest

    import chatroom.client.actions as actions_module
    import chatroom.client.widgets.log as log_module

    for module in (log_module, actions_module):
        assert doctest.testmod(module).failed == 0, module.__name__
