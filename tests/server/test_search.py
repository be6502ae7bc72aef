"""SEARCH (soju.im/search) over real sockets, and the full-text index under it.

Expectations come from soju's spec (doc/ext/search.md): ``SEARCH <attributes>`` with
``in``, ``from``, ``after``, ``before``, ``text`` and ``limit``, answered with a
``soju.im/search`` batch of PRIVMSG and NOTICE lines carrying their time and msgid, or
``FAIL SEARCH INVALID_PARAMS <attribute>``. What a user may search follows
CHATHISTORY's rules: the rooms they are in, and their own private conversations (those
of their account, or of this connection without one).

The store tests at the end check the FTS5 index against the table: rows indexed in bulk
after they are committed (a search has that done first, so it finds every line delivered
before it, even one a kill -9 left unindexed), triggers on delete and update that touch
only what is indexed, the migrations that index an older database, the time limit.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from chatroom.protocol import Message, escape_tag_value
from chatroom.server import pipeline as pipeline_mod
from chatroom.server import store as store_module
from chatroom.server.pipeline import HistoryPipeline
from chatroom.server.records import (
    ID_TIME_SHIFT,
    MAX_SEARCH_WORDS,
    SearchTarget,
    SearchTimeout,
    StoredMessage,
    dm_key,
)
from chatroom.server.store import MEMORY, MIGRATIONS, HistoryStore
from tests.conftest import read_until
from tests.server.test_store import RecordingWriter

TAGS = ("batch", "server-time", "message-tags", "soju.im/search")
PASSWORD = "secretpw"
_tokens = itertools.count()


# --- helpers ------------------------------------------------------------------------------


def client(connect, fx, nick: str, caps: Iterable[str] = TAGS, password: str | None = None):
    """A client registered with ``caps`` (and logged in to account ``nick``)."""
    c = connect(to=fx)
    c.nick = nick
    caps = " ".join(caps)
    if caps:
        c.send(f"CAP REQ :{caps}")
        assert c.expect("CAP").params[1] == "ACK"
    if password is not None:
        c.send(f"PASS {nick}:{password}")
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick} test")
    c.send("CAP END")
    c.expect("001")
    c.expect("376")
    return c


def search(c, attrs: str | dict[str, str]) -> list[Message]:
    """Send SEARCH; return the FAIL line, or the lines of the result batch (the BATCH
    lines left out, every line checked to be in it)."""
    if isinstance(attrs, dict):
        attrs = ";".join(f"{k}={escape_tag_value(v)}" for k, v in attrs.items())
    c.send(Message("SEARCH", (attrs,)))
    first = read_until(
        c, lambda m: m.command == "FAIL" or (m.command == "BATCH" and m.params[0][0] == "+")
    )[-1]
    if first.command == "FAIL":
        return [first]
    assert first.params[1:] == ("soju.im/search",), first
    ref = first.params[0][1:]
    lines = read_until(c, lambda m: m.command == "BATCH" and m.params[0] == "-" + ref)[:-1]
    assert all(m.tags.get("batch") == ref for m in lines), lines
    return lines


def texts(lines: Iterable[Message]) -> list[str]:
    return [m.params[-1] for m in lines]


def fail_of(lines: list[Message]) -> tuple[str, ...]:
    assert len(lines) == 1 and lines[0].command == "FAIL", lines
    return lines[0].params[:-1]


def sync(c) -> list[Message]:
    """What ``c`` got before the answer to a PING sent now: a line relayed to it
    earlier is in it, so what it says has been committed."""
    token = f"sync{next(_tokens)}"
    c.send(f"PING :{token}")
    return read_until(c, lambda m: m.command == "PONG" and m.params[-1] == token)[:-1]


def say(c, target: str, *lines: str) -> None:
    for line in lines:
        c.send(f"PRIVMSG {target} :{line}")
    sync(c)


def make_account(connect, fx, name: str) -> None:
    c = connect(name, to=fx)
    c.send(f"REGISTER * * {PASSWORD}")
    assert c.expect("REGISTER").params[:2] == ("SUCCESS", name)
    c.send("QUIT")
    assert c.wait_closed()
    c.close()


@pytest.fixture
def fx(server_factory):
    """History in memory, no flood control, cheap SCRAM for the account tests."""
    return server_factory(flood_limit=False, scram_iterations=4096)


@pytest.fixture
def lan(fx, connect):
    """alice (tags and search) and bob in #lan; bob has said three things."""
    alice = client(connect, fx, "alice")
    bob = connect("bob", to=fx)
    alice.join("#lan")
    bob.join("#lan")
    say(bob, "#lan", "the deploy failed again", "who broke the build?", "lunch at noon")
    return alice, bob


# --- the capability and the answer ----------------------------------------------------------


def test_the_capability_is_offered_with_history_only(server_factory, connect):
    with_history = server_factory()
    c = connect(to=with_history)
    c.send("CAP LS 302")
    assert "soju.im/search" in c.expect("CAP").params[-1].split()
    without = server_factory(history=False)
    c = connect(to=without)
    c.send("CAP LS 302")
    assert "soju.im/search" not in c.expect("CAP").params[-1].split()
    c = connect("alice", to=without)
    c.send("SEARCH text=hello")
    assert c.expect("421").params[1] == "SEARCH"


def test_finds_a_room_message_by_a_word_with_its_msgid_and_time(fx, connect):
    alice = client(connect, fx, "alice")
    bob = connect("bob", to=fx)
    alice.join("#lan")
    bob.join("#lan")
    say(bob, "#lan", "the deploy failed again", "lunch at noon")
    live = alice.expect("PRIVMSG", where=lambda m: m.params[-1] == "the deploy failed again")
    [found] = search(alice, "in=#lan;text=deploy")
    assert found.command == "PRIVMSG"
    assert found.source.startswith("bob!")
    assert found.params == ("#lan", "the deploy failed again")
    assert found.tags["msgid"] == live.tags["msgid"]
    assert found.tags["time"] == live.tags["time"]


@pytest.mark.parametrize("where", ["memory", "file"])
def test_a_search_right_after_messages_finds_them_all(server_factory, connect, tmp_path, where):
    """The index is filled after the commits, in bulk: a search has it done first, so
    it finds every line delivered before it (here nothing else would have indexed)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(pipeline_mod, "FTS_BATCH_ROWS", 1_000_000)
        m.setattr(pipeline_mod, "FTS_QUIET", 3600.0)
        db = ":memory:" if where == "memory" else str(tmp_path / "h.sqlite3")
        fx = server_factory(flood_limit=False, db=db)
        alice = client(connect, fx, "alice")
        bob = connect("bob", to=fx)
        alice.join("#lan")
        bob.join("#lan")
        for n in range(50):
            bob.send(f"PRIVMSG #lan :deploy number {n}")
        alice.expect("PRIVMSG", where=lambda line: line.params[-1] == "deploy number 49")
        assert fx.server.store.unindexed > 0  # nothing indexed them yet
        found = texts(search(alice, "in=#lan;text=deploy;limit=100"))
        assert found == [f"deploy number {n}" for n in range(50)]
        alice.send("PRIVMSG #lan :deploy once more")  # her own, searched for at once
        assert texts(search(alice, "text=once")) == ["deploy once more"]


def test_words_match_whole_in_any_case_and_order_and_all_must_be_there(lan):
    alice, _bob = lan
    assert texts(search(alice, {"text": "FAILED deploy"})) == ["the deploy failed again"]
    assert texts(search(alice, {"text": "deploy lunch"})) == []
    assert texts(search(alice, "text=dep")) == []  # whole words, not prefixes
    assert texts(search(alice, "text=the")) == ["the deploy failed again", "who broke the build?"]


def test_no_match_is_an_empty_batch(lan):
    alice, _bob = lan
    assert search(alice, "in=#lan;text=nothinglikethis") == []


def test_results_come_oldest_first_and_limit_keeps_the_newest(lan):
    alice, bob = lan
    say(bob, "#lan", *(f"note {i}" for i in range(5)))
    assert texts(search(alice, "text=note")) == [f"note {i}" for i in range(5)]
    assert texts(search(alice, "text=note;limit=2")) == ["note 3", "note 4"]


def test_the_limit_is_capped_by_search_max(server_factory, connect):
    fx = server_factory(flood_limit=False, search_max=3)
    alice = client(connect, fx, "alice")
    alice.join("#lan")
    say(alice, "#lan", *(f"note {i}" for i in range(6)))
    assert texts(search(alice, "text=note;limit=100")) == ["note 3", "note 4", "note 5"]
    assert texts(search(alice, "text=note")) == ["note 3", "note 4", "note 5"]


def test_from_filters_by_the_senders_nick_in_any_case(lan, connect, fx):
    alice, _bob = lan
    carol = connect("Carol[x]", to=fx)
    carol.join("#lan")
    say(carol, "#lan", "the deploy is fixed")
    assert texts(search(alice, "text=deploy;from=carol{X}")) == ["the deploy is fixed"]
    assert texts(search(alice, "text=deploy;from=BOB")) == ["the deploy failed again"]
    assert texts(search(alice, "from=nobody")) == []


def test_after_and_before_include_their_time_and_after_searches_forward(lan):
    alice, bob = lan
    for i in range(5):
        say(bob, "#lan", f"step {i}")
        time.sleep(0.01)
    live = [
        alice.expect("PRIVMSG", where=lambda m, i=i: m.params[-1] == f"step {i}") for i in range(5)
    ]
    stamps = [m.tags["time"] for m in live]
    since = [f"step {i}" for i in range(5) if stamps[i] >= stamps[2]]
    until = [f"step {i}" for i in range(5) if stamps[i] <= stamps[1]]
    assert texts(search(alice, f"text=step;after={stamps[2]}")) == since
    assert texts(search(alice, f"text=step;before={stamps[1]}")) == until
    # from `after` on, the oldest first (the spec): a page forward
    assert texts(search(alice, f"text=step;after={stamps[0]};limit=2")) == ["step 0", "step 1"]
    window = f"text=step;after={stamps[1]};before={stamps[3]}"
    assert texts(search(alice, window)) == ["step 1", "step 2", "step 3"]
    assert search(alice, f"text=step;after={stamps[3]};before={stamps[1]}") == []


def test_a_search_without_text_lists_what_else_matches(lan):
    alice, _bob = lan
    assert texts(search(alice, "in=#lan;from=bob;limit=1")) == ["lunch at noon"]


def test_notices_and_actions_are_found_but_not_tagmsgs(lan):
    alice, bob = lan
    bob.send("NOTICE #lan :deploy notice")
    bob.send("PRIVMSG #lan :\x01ACTION deploys again\x01")
    bob.send("@+typing=active TAGMSG #lan")
    sync(bob)
    found = search(alice, "text=deploy")
    assert [(m.command, m.params[-1]) for m in found] == [
        ("PRIVMSG", "the deploy failed again"),
        ("NOTICE", "deploy notice"),
    ]
    assert texts(search(alice, "text=deploys")) == ["\x01ACTION deploys again\x01"]


def test_a_client_without_batch_or_server_time_gets_marked_lines(lan, fx, connect):
    _alice, _bob = lan
    plain = connect("plain", to=fx)
    plain.join("#lan")
    sync(plain)  # past the lines played back on JOIN
    plain.send("SEARCH text=deploy")
    line = plain.expect("PRIVMSG")
    assert "batch" not in line.tags and "time" not in line.tags
    assert line.params[0] == "#lan"
    assert line.params[1].startswith("[history ") and line.params[1].endswith("deploy failed again")


# --- who may search what ----------------------------------------------------------------------


def test_only_rooms_the_user_is_in(lan, fx, connect):
    alice, bob = lan
    bob.join("#secret")
    say(bob, "#secret", "the secret deploy plan")
    assert texts(search(alice, "text=deploy")) == ["the deploy failed again"]
    assert fail_of(search(alice, "in=#secret;text=deploy")) == (
        "SEARCH",
        "INVALID_PARAMS",
        "in",
    )
    assert fail_of(search(alice, "in=#nowhere"))[2] == "in"
    alice.send("PART #lan")
    sync(alice)
    assert search(alice, "text=deploy") == []
    assert fail_of(search(alice, "in=#lan;text=deploy"))[2] == "in"


def test_a_room_made_again_does_not_search_the_history_of_the_one_before(fx, connect):
    alice = client(connect, fx, "alice")
    alice.join("#tmp")
    say(alice, "#tmp", "old deploy words")
    alice.send("PART #tmp")
    sync(alice)
    alice.join("#tmp")  # a new room of that name: the old one's history stays with it
    say(alice, "#tmp", "new deploy words")
    assert texts(search(alice, "in=#tmp;text=deploy")) == ["new deploy words"]
    assert texts(search(alice, "text=deploy")) == ["new deploy words"]


def test_private_messages_are_found_by_their_two_sides_only(lan, fx, connect):
    alice, bob = lan
    carol = client(connect, fx, "carol")
    say(bob, "alice", "a private deploy note")
    say(bob, "carol", "another private deploy note for carol")
    assert texts(search(alice, "text=private")) == ["a private deploy note"]
    assert texts(search(alice, "in=bob;text=private")) == ["a private deploy note"]
    assert texts(search(alice, "in=carol;text=private")) == []
    [line] = search(alice, "in=bob;text=private")
    assert line.source.startswith("bob!") and line.params[0] == "alice"
    assert texts(search(carol, "text=private")) == ["another private deploy note for carol"]
    assert search(carol, "in=alice;text=private") == []


def test_without_an_account_only_this_connections_private_messages(lan, fx, connect):
    alice, bob = lan
    say(bob, "alice", "a private deploy note")
    alice.send("QUIT")
    alice.wait_closed()
    time.sleep(0.01)  # the new connection signs on in a later millisecond
    again = client(connect, fx, "alice")
    assert search(again, "text=private") == []
    assert search(again, "in=bob;text=private") == []
    say(bob, "alice", "a second private note")
    assert texts(search(again, "text=private")) == ["a second private note"]


def test_an_account_finds_its_private_messages_from_any_connection(fx, connect):
    make_account(connect, fx, "alice")
    alice = client(connect, fx, "alice", password=PASSWORD)
    bob = connect("bob", to=fx)
    say(bob, "alice", "a private deploy note")
    alice.expect("PRIVMSG")
    alice.send("QUIT")
    alice.wait_closed()
    again = client(connect, fx, "alice", password=PASSWORD)
    assert texts(search(again, "text=private")) == ["a private deploy note"]
    assert texts(search(again, "in=bob;text=deploy")) == ["a private deploy note"]
    # whoever has the nick without the account sees none of it
    again.send("QUIT")
    again.wait_closed()
    squatter = client(connect, fx, "alice")
    assert search(squatter, "text=private") == []
    assert search(squatter, "in=bob") == []


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs, name",
    [
        ("limit=0", "limit"),
        ("limit=-3", "limit"),
        ("limit=many", "limit"),
        ("before=yesterday", "before"),
        ("after=2024-13-45T99:00:00.000Z", "after"),
        ("from=#lan", "from"),
        ("from=", "from"),
        ("in=not!a!nick", "in"),
        ("text=", "text"),
        ("text=*", "text"),
        ('text="', "text"),
        ("text=-\\s^\\s()\\s:", "text"),
        ("text=" + "\\s".join(f"w{i}" for i in range(MAX_SEARCH_WORDS + 1)), "text"),
    ],
)
def test_bad_attributes_fail_naming_the_attribute(lan, attrs, name):
    alice, _bob = lan
    assert fail_of(search(alice, attrs)) == ("SEARCH", "INVALID_PARAMS", name)
    assert texts(search(alice, "text=lunch")) == ["lunch at noon"]  # and it goes on


BOTH = ["the deploy failed again", "not the deploy"]


@pytest.mark.parametrize(
    "text, found",
    [
        ('"a" OR "b"', ["a or b"]),  # OR is a word, quotes are not syntax
        ("a OR b", ["a or b"]),
        ("NOT deploy", ["not the deploy"]),
        ("deploy NOT failed", []),
        ("NEAR(deploy failed)", []),  # "near" is a word here, and nobody said it
        ("NEAR(deploy failed, 5)", []),
        ("text:deploy", []),  # a phrase "text deploy", not a column filter
        ("meta:deploy", []),
        ("{text meta}: deploy", []),
        ("- text : deploy", []),
        ("dep*", []),  # no prefix search
        ("^deploy", BOTH),  # no start-of-column anchor
        ("deploy*", BOTH),
        ("(deploy)", BOTH),
        ("deploy AND", []),
        ('deploy"', BOTH),
        ('"deploy', BOTH),
        ("''; DROP TABLE messages; --", []),
    ],
)
def test_search_syntax_is_never_interpreted(lan, text, found):
    """Every word is matched as written (its letters and digits, as one phrase): FTS5
    syntax is never read as such, and never causes an error."""
    alice, bob = lan
    say(bob, "#lan", "a or b", "a only", "b only", "not the deploy")
    assert texts(search(alice, {"text": text})) == found
    assert texts(search(alice, "text=lunch")) == ["lunch at noon"]  # and the store is fine


def test_a_quote_inside_a_word_is_matched_as_text(lan):
    alice, bob = lan
    say(bob, "#lan", 'she said "hi" there', "don't panic")
    assert texts(search(alice, {"text": '"hi"'})) == ['she said "hi" there']
    assert texts(search(alice, {"text": "don't"})) == ["don't panic"]


def test_oversized_and_odd_requests_are_refused_and_the_connection_stays(lan):
    alice, _bob = lan
    alice.send("SEARCH text=" + "x" * 10_000)  # 10 KB: past the line limit
    assert alice.expect("417")
    alice.send("SEARCH :text=" + " ".join(["deploy"] * 60))  # fits: repeats are one word
    assert alice.expect("BATCH")
    alice.send("SEARCH in=#lan text=deploy")  # spaces not escaped: two parameters
    assert alice.expect("FAIL").params[:2] == ("SEARCH", "INVALID_PARAMS")
    alice.send("SEARCH")
    assert alice.expect("461").params[1] == "SEARCH"
    assert texts(search(alice, "text=lunch")) == ["lunch at noon"]


def test_unknown_attributes_are_ignored_and_a_long_word_is_just_a_word(lan):
    alice, _bob = lan
    assert texts(search(alice, "text=lunch;colour=blue;x")) == ["lunch at noon"]
    assert search(alice, {"text": "y" * 400}) == []


def test_a_labeled_search_keeps_its_batch_inside_the_label(fx, connect):
    alice = client(connect, fx, "alice", caps=(*TAGS, "labeled-response"))
    alice.join("#lan")
    say(alice, "#lan", "deploy one", "deploy two")
    alice.send("@label=L1 SEARCH text=deploy")
    outer = alice.expect("BATCH", where=lambda m: m.tags.get("label") == "L1")
    assert outer.params[1] == "labeled-response"
    ref = outer.params[0][1:]
    lines = read_until(alice, lambda m: m.command == "BATCH" and m.params[0] == "-" + ref)
    inner = lines[0]
    assert inner.params[1] == "soju.im/search" and inner.tags["batch"] == ref
    assert texts(m for m in lines if m.command == "PRIVMSG") == ["deploy one", "deploy two"]


# --- the index (store level) ------------------------------------------------------------------

NOW_MS = 1_800_000_000_000


def row(
    n: int, text: str, target: str = "#lan", *, sender: str = "alice!a@h", command: str = "PRIVMSG"
) -> StoredMessage:
    return StoredMessage(
        ((NOW_MS + n) << ID_TIME_SHIFT), f"id{n}", NOW_MS + n, target, target, sender, command, text
    )


@pytest.fixture
def st():
    s = HistoryStore(MEMORY)
    yield s
    s.close()


def find(
    s: HistoryStore, text: str | None, *targets: str, sender: str | None = None, **kw
) -> list[str]:
    """The msgids a search finds, newest first, once everything stored is indexed (as
    HistoryPipeline.search has the store thread do first)."""
    s.index()
    places = [SearchTarget(t) for t in targets or ("#lan",)]
    return [
        m.msgid
        for m in s.search(
            places,
            text,
            kw.get("before"),
            kw.get("after"),
            sender,
            kw.get("limit", 100),
            kw.get("newest", True),
        )
    ]


def check_index(s: HistoryStore, content: bool = True) -> None:
    """FTS5's own check of the index (raises when it is corrupt), and against its content
    unless ``content`` is False (rows not yet indexed differ from it, rightly)."""
    s._write.execute(
        "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', ?)", (content,)
    )


def progress(s: HistoryStore) -> int:
    return s._write.execute("SELECT id FROM fts_progress").fetchone()[0]


def test_inserted_messages_are_indexed_and_found_newest_first(st):
    st.write([row(1, "hello world"), row(2, "Hello there"), row(3, "bye")])
    assert find(st, "hello") == ["id2", "id1"]
    assert find(st, "hello", newest=False, limit=1) == ["id1"]
    assert find(st, "hello", limit=1) == ["id2"]
    check_index(st)


def test_deleting_rows_takes_them_out_of_the_index(st):
    st.write([row(1, "deploy one"), row(2, "deploy two"), row(3, "deploy three")])
    st.index()
    st._write.execute("DELETE FROM messages WHERE msgid = 'id2'")  # as REDACT does
    assert find(st, "deploy") == ["id3", "id1"]
    assert find(st, "two") == []
    check_index(st)
    st.retention_count = 1
    assert st.apply_retention(NOW_MS) == 1  # the count is of messages, not index rows
    assert find(st, "deploy") == ["id3"]
    check_index(st)


def test_updating_a_text_reindexes_it_and_other_columns_leave_it(st):
    st.write([row(1, "deploy one")])
    st.index()
    st._write.execute("UPDATE messages SET text = 'rollback one' WHERE msgid = 'id1'")
    assert find(st, "deploy") == [] and find(st, "rollback") == ["id1"]
    st._write.execute("UPDATE messages SET tags = '{\"+x\": \"1\"}' WHERE msgid = 'id1'")
    assert find(st, "rollback") == ["id1"]
    check_index(st)


def test_only_privmsg_and_notice_are_indexed(st):
    st.write(
        [
            row(1, "deploy", command="NOTICE"),
            row(2, "deploy", command="TAGMSG"),
            row(3, "deploy", command="TOPIC"),
        ]
    )
    assert find(st, "deploy") == ["id1"]
    st._write.execute("DELETE FROM messages")
    assert find(st, "deploy") == []
    check_index(st)


def test_targets_floors_and_private_sides(st):
    st.write(
        [
            row(1, "deploy", "#lan"),
            row(2, "deploy", "#ops"),
            row(3, "deploy", dm_key("alice", "bob")),
            row(4, "deploy", dm_key("~alice", "carol")),
            row(5, "deploy", dm_key("alicex", "bob")),
            row(6, "deploy", "#lan"),
        ]
    )
    assert find(st, "deploy", "#lan") == ["id6", "id1"]
    assert find(st, "deploy", "#lan", "#ops") == ["id6", "id2", "id1"]
    floor = (NOW_MS + 1) << ID_TIME_SHIFT  # ids above it only
    assert [
        m.msgid for m in st.search([SearchTarget("#lan", floor)], "deploy", None, None, None, 10)
    ] == ["id6"]
    mine = [SearchTarget("alice", 0, every_private=True)]
    assert [m.msgid for m in st.search(mine, "deploy", None, None, None, 10)] == ["id3"]
    mine = [SearchTarget("~alice", 0, every_private=True), SearchTarget("#ops")]
    assert [m.msgid for m in st.search(mine, "deploy", None, None, None, 10)] == ["id4", "id2"]
    assert find(st, "deploy", dm_key("alice", "bob")) == ["id3"]
    assert find(st, "deploy", "#nowhere") == []
    assert st.search([], "deploy", None, None, None, 10) == []


def test_sender_is_matched_casefolded_as_rfc1459(st):
    st.write(
        [
            row(1, "hi", sender="Al[i]ce~!a@h"),
            row(2, "hi", sender="bob!b@h"),
            row(3, "hi", sender="server.name"),
        ]
    )
    assert find(st, "hi", sender="al{i}ce^") == ["id1"]
    assert find(st, None, sender="bob") == ["id2"]
    assert find(st, None, sender="server.name") == ["id3"]


def test_times_bound_the_search_both_included(st):
    st.write([row(i, "deploy") for i in range(1, 6)])
    assert find(st, "deploy", after=NOW_MS + 2, before=NOW_MS + 4) == ["id4", "id3", "id2"]
    assert find(st, "deploy", after=NOW_MS + 4, limit=1, newest=False) == ["id4"]
    assert find(st, "deploy", after=NOW_MS + 5, before=NOW_MS + 1) == []


@pytest.mark.parametrize(
    "text, found",
    [
        ('"', []),
        ('""', []),
        ("a OR b", ["id1"]),
        ('a" OR "b', ["id1"]),
        ("NEAR(a b)", []),
        ("*", []),
        ("^a", ["id1"]),
        ("text:a", []),
        ("meta : c236c616e", []),  # the place tokens cannot be reached from the text
        ("c236c616e", []),
        ("{text}:a", []),
        ("a AND", []),
        ("(", []),
        ("\\", []),
        ("\x01", []),
        ("É", ["id2"]),  # any case, any accent
        ("x" * 5000, []),
    ],
)
def test_no_text_is_an_error_or_syntax_at_the_store(st, text, found):
    st.write([row(1, "a or b"), row(2, "e x")])
    assert find(st, text) == found


def test_too_many_words_are_refused(st):
    with pytest.raises(ValueError):
        st.search(
            [SearchTarget("#lan")],
            " ".join(f"w{i}" for i in range(MAX_SEARCH_WORDS + 1)),
            None,
            None,
            None,
            10,
        )
    assert st.search([SearchTarget("#lan")], " ".join(["w"] * 50), None, None, None, 10) == []


def test_a_search_past_its_time_limit_is_stopped(st, monkeypatch):
    st.write([row(i, f"deploy {i}") for i in range(200)])
    monkeypatch.setattr(store_module, "SEARCH_TIMEOUT", -1.0)
    monkeypatch.setattr(store_module, "SEARCH_CLOCK_STEPS", 1)
    with pytest.raises(SearchTimeout):
        st.search([SearchTarget("#lan")], "deploy", None, None, None, 100)
    monkeypatch.undo()
    assert len(find(st, "deploy")) == 100  # the connection is fine afterwards


def test_rows_are_indexed_in_bulk_after_their_commit(st):
    st.write([row(1, "deploy one"), row(2, "deploy two")])
    st.write([row(3, "deploy three", command="TAGMSG")])
    assert (st.unindexed, st.indexed, progress(st)) == (3, 0, 0)
    assert st.search([SearchTarget("#lan")], "deploy", None, None, None, 10) == []
    check_index(st, content=False)
    assert st.index() == 3  # rows looked at; the TAGMSG is not in the index
    assert st.unindexed == 0 and st.indexed == progress(st) == row(3, "").id
    assert find(st, "deploy") == ["id2", "id1"]
    check_index(st)
    assert st.index() == 0


def progress_id(sql: str) -> int:
    return int(sql.rsplit("=", 1)[1])


def test_a_large_backlog_is_indexed_in_several_transactions(st, monkeypatch):
    monkeypatch.setattr(store_module, "INDEX_ROWS_PER_TRANSACTION", 2)
    st.write([row(i, f"deploy {i}") for i in range(1, 6)])
    seen: list[int] = []
    st._write.set_trace_callback(
        lambda sql: seen.append(progress_id(sql)) if sql.startswith("UPDATE fts_progress") else None
    )
    assert st.index() == 5
    st._write.set_trace_callback(None)
    assert len(seen) == 3 and st.indexed == row(5, "").id
    assert len(find(st, "deploy")) == 5
    check_index(st)


def test_redact_and_retention_of_rows_not_yet_indexed_keep_the_index_sound(st):
    """An FTS5 'delete' of a row never indexed would corrupt the index: the triggers
    leave such rows alone, and the indexing that comes later finds them gone."""
    st.write([row(1, "deploy one"), row(2, "deploy two")])
    st.index()
    st.write([row(3, "deploy three"), row(4, "deploy four"), row(5, "deploy five")])
    assert st.delete([("#lan", "id2"), ("#lan", "id4")]) == 2  # REDACT: one of each
    check_index(st, content=False)
    st._write.execute("UPDATE messages SET text = 'rollback five' WHERE msgid = 'id5'")
    check_index(st, content=False)
    assert find(st, "deploy") == ["id3", "id1"]
    assert find(st, "rollback") == ["id5"]
    check_index(st)
    st.write([row(6, "deploy six"), row(7, "deploy seven")])
    st.retention_count = 1  # keeps id7 alone: drops indexed and unindexed rows alike
    assert st.apply_retention(NOW_MS) == 4
    check_index(st, content=False)
    assert find(st, "deploy") == ["id7"]
    check_index(st)


def test_a_row_below_what_is_indexed_is_indexed_with_its_write(st):
    """Ids are handed out in posting order, so none should come after the index has
    passed it; if one did, it would never be indexed: its write indexes it."""
    st.write([row(1, "deploy one"), row(3, "deploy three")])
    st.index()
    st.write([row(2, "deploy two"), row(4, "deploy four")])
    check_index(st, content=False)
    assert st.search([SearchTarget("#lan")], "two", None, None, None, 10)[0].msgid == "id2"
    assert find(st, "deploy") == ["id4", "id3", "id2", "id1"]
    check_index(st)


KILLED_WRITER = """
import json, os, sys
from chatroom.server.records import StoredMessage
from chatroom.server.store import HistoryStore
store = HistoryStore(sys.argv[1])
store.write([StoredMessage(*json.loads(line)) for line in sys.stdin])
os.kill(os.getpid(), 9)
"""


def test_rows_a_kill_left_unindexed_are_found_after_the_next_start(tmp_path):
    path = tmp_path / "h.sqlite3"
    rows = [row(1, "deploy one"), row(2, "deploy two"), row(3, "lunch")]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        input="".join(json.dumps(r[:8]) + "\n" for r in rows),
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    s = HistoryStore(path)
    writer = RecordingWriter()
    pipeline = HistoryPipeline(s, writer)  # type: ignore[arg-type]
    try:
        assert s.unindexed and s.indexed == 0
        pipeline.start()  # indexes them before anything else
        found = pipeline.search([SearchTarget("#lan")], "deploy", None, None, None, 10)
        assert [m.msgid for m in found] == ["id2", "id1"]
        assert s.unindexed == 0
        check_index(s)
    finally:
        pipeline.stop()
        s.close()


def old_database(path: Path, version: int, rows: list[StoredMessage]) -> None:
    """A database as a server of schema ``version`` left it, holding ``rows``."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:
        for done, sql in enumerate(MIGRATIONS[:version], 1):
            raw.executescript(f"BEGIN; {sql}; PRAGMA user_version = {done}; COMMIT;")
        raw.executemany(
            "INSERT INTO messages(id, msgid, time_ms, target, display, sender, command, text)"
            " VALUES (?,?,?,?,?,?,?,?)",
            [r[:8] for r in rows],
        )


def test_the_migration_indexes_what_an_older_database_holds(tmp_path):
    version = next(i for i, sql in enumerate(MIGRATIONS) if "messages_fts" in sql)
    path = tmp_path / "old.sqlite3"
    old_database(
        path,
        version,
        [row(1, "deploy before search"), row(2, "other"), row(3, "x", command="TAGMSG")],
    )
    s = HistoryStore(path)
    try:
        assert s.schema_version == len(MIGRATIONS)
        assert find(s, "deploy") == ["id1"]
        s.write([row(4, "deploy after search")])
        assert find(s, "deploy") == ["id4", "id1"]
        check_index(s)
    finally:
        s.close()


def test_the_migration_to_deferred_indexing_keeps_what_the_trigger_indexed(tmp_path):
    version = next(i for i, sql in enumerate(MIGRATIONS) if "fts_progress" in sql)
    path = tmp_path / "old.sqlite3"
    # indexed by the insert trigger of that schema
    old_database(
        path, version, [row(1, "deploy one"), row(2, "deploy two"), row(3, "x", command="TAGMSG")]
    )
    s = HistoryStore(path)
    try:
        assert s.schema_version == len(MIGRATIONS)
        assert (s.unindexed, s.indexed, progress(s)) == (0, row(3, "").id, row(3, "").id)
        triggers = s._write.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        ).fetchall()
        assert [t[0] for t in triggers] == [
            "messages_fts_delete",
            "messages_fts_reindex",
            "messages_fts_unindex",
        ]
        check_index(s)
        s.write([row(4, "deploy four"), row(5, "deploy five")])
        assert s.delete([("#lan", "id1"), ("#lan", "id5")]) == 2
        assert find(s, "deploy") == ["id4", "id2"]
        check_index(s)
    finally:
        s.close()
