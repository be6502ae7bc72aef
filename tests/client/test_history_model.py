"""Socketless history tests: batches in, CHATHISTORY requests out, lines into the model."""

from __future__ import annotations

import doctest

import pytest

import chatroom.client.history as history_module
import chatroom.client.state as state_module
from chatroom.client.history import Batch, BatchCollector, HistoryFetcher
from chatroom.client.model import EntryKind, HistoryState
from chatroom.client.state import ClientState
from chatroom.protocol import Cap, Message, parse

CAPS = frozenset({Cap.BATCH, Cap.DRAFT_CHATHISTORY, Cap.LABELED_RESPONSE, Cap.MESSAGE_TAGS})


def feed(state: ClientState, *lines: str) -> None:
    for line in lines:
        state.handle(parse(line))


def said(state: ClientState, key: str) -> list[str]:
    return [e.text for e in state.buffers[key].entries if e.kind is EntryKind.MESSAGE]


def history_batch(target: str, *lines: tuple[str, str, str]) -> Batch:
    """A chathistory batch of (msgid, nick, text) PRIVMSGs to ``target``."""
    collector = BatchCollector()
    assert collector.feed(parse(f":srv BATCH +h chathistory {target}")) is None
    for i, (msgid, nick, text) in enumerate(lines):
        line = (
            f"@batch=h;msgid={msgid};time=2024-01-01T00:00:{i:02d}.000Z "
            f":{nick}!u@h PRIVMSG {target} :{text}"
        )
        assert collector.feed(parse(line)) is None
    batch = collector.feed(parse(":srv BATCH -h"))
    assert isinstance(batch, Batch)
    return batch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state() -> ClientState:
    s = ClientState("alice", "irc.test")
    feed(
        s,
        ":irc.test 001 alice :Welcome",
        ":irc.test 005 alice CHATHISTORY=50 MSGREFTYPES=msgid,timestamp :are supported",
    )
    return s


@pytest.fixture
def fetcher(state: ClientState, clock: Clock) -> HistoryFetcher:
    f = HistoryFetcher(state, page=100, timeout=10.0, clock=clock)
    f.configure(CAPS)
    return f


def join(state: ClientState, fetcher: HistoryFetcher, room: str = "#lan") -> list[Message]:
    feed(state, f"@msgid=j1 :alice!a@h JOIN {room}")
    return fetcher.joined(state.buffer(room))


# --- batches --------------------------------------------------------------------------


def test_unbatched_lines_pass_through() -> None:
    collector = BatchCollector()
    msg = parse(":bob!b@h PRIVMSG #lan :hi")
    assert collector.feed(msg) is msg
    assert collector.feed(parse("@batch=nope :bob!b@h PRIVMSG #lan :hi")) is not None
    assert collector.feed(parse(":srv BATCH -nope")) is None


def test_labeled_response_wraps_a_history_batch() -> None:
    collector = BatchCollector()
    lines = [
        "@label=hist1 :srv BATCH +L labeled-response",
        "@batch=L :srv BATCH +H chathistory #lan",
        "@batch=H;msgid=m1 :bob!b@h PRIVMSG #lan :one",
        "@batch=L :srv BATCH -H",
    ]
    assert all(collector.feed(parse(line)) is None for line in lines)
    outer = collector.feed(parse(":srv BATCH -L"))
    assert isinstance(outer, Batch)
    assert (outer.type, outer.label) == ("labeled-response", "hist1")
    (inner,) = outer.items
    assert isinstance(inner, Batch) and inner.type == "chathistory" and inner.params == ("#lan",)
    assert [m.param(1) for m in inner.messages] == ["one"]


def test_batches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_module, "MAX_BATCH_LINES", 3)
    monkeypatch.setattr(history_module, "MAX_OPEN_BATCHES", 1)
    collector = BatchCollector()
    collector.feed(parse(":srv BATCH +a chathistory #lan"))
    collector.feed(parse(":srv BATCH +b chathistory #other"))  # one too many: ignored
    for i in range(5):
        collector.feed(parse(f"@batch=a :bob!b@h PRIVMSG #lan :{i}"))
    assert collector.feed(parse("@batch=b :bob!b@h PRIVMSG #other :x")) is not None
    batch = collector.feed(parse(":srv BATCH -a"))
    assert isinstance(batch, Batch) and len(batch.messages) == 3


def test_module_doctests() -> None:
    assert doctest.testmod(history_module).failed == 0


# --- requests and where the answers go --------------------------------------------------


def test_join_fetches_latest_and_puts_it_before_the_join(
    state: ClientState, fetcher: HistoryFetcher
) -> None:
    (request,) = join(state, fetcher)
    assert request.tags == {"label": "hist1"}
    assert request.params == ("LATEST", "#lan", "*", "50")  # capped by ISUPPORT
    assert state.buffer("#lan").history is HistoryState.LOADING
    state.set_active("#lan")
    feed(state, "@msgid=m3 :bob!b@h PRIVMSG #lan :three")  # live, and in the batch too
    batch = history_batch(
        "#lan", ("m1", "bob", "one"), ("m2", "bob", "two"), ("m3", "bob", "three")
    )
    assert fetcher.batch(batch, "hist1") == []
    lan = state.buffer("#lan")
    assert [e.kind for e in lan.entries] == [
        EntryKind.MESSAGE,
        EntryKind.MESSAGE,
        EntryKind.JOIN,
        EntryKind.MESSAGE,
    ]
    assert said(state, "#lan") == ["one", "two", "three"]
    assert lan.history is HistoryState.COMPLETE  # fewer than asked for
    assert lan.unread == 0 and not state.alerts


def test_history_never_counts_as_unread(state: ClientState, fetcher: HistoryFetcher) -> None:
    join(state, fetcher)
    state.set_active("")
    fetcher.batch(history_batch("#lan", ("m1", "bob", "alice: hi")), "hist1")
    lan = state.buffer("#lan")
    assert (lan.unread, lan.mentions, lan.divider_seq) == (0, 0, None)
    assert lan.entries[0].mention and not state.alerts


def test_scroll_back_asks_before_the_oldest_line(
    state: ClientState, fetcher: HistoryFetcher
) -> None:
    join(state, fetcher)
    page = [(f"m{i}", "bob", f"line {i}") for i in range(50, 100)]
    fetcher.batch(history_batch("#lan", *page), "hist1")
    lan = state.buffer("#lan")
    assert lan.history is HistoryState.MORE  # a full page: there may be more
    (request,) = fetcher.older(lan.key)
    assert request.params == ("BEFORE", "#lan", "msgid=m50", "50")
    assert fetcher.older(lan.key) == []  # one request at a time
    older = [(f"m{i}", "bob", f"line {i}") for i in range(10, 50)]
    fetcher.batch(history_batch("#lan", *older), "hist2")
    assert said(state, "#lan") == [f"line {i}" for i in range(10, 100)]
    assert lan.history is HistoryState.COMPLETE


def test_rejoin_fills_the_gap_page_by_page(
    state: ClientState, fetcher: HistoryFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "GAP_FILL_MAX_PAGES", 3)
    fetcher.page = 2
    join(state, fetcher)
    fetcher.batch(history_batch("#lan", ("m1", "bob", "seen")), "hist1")
    state.disconnected("gone")
    fetcher.disconnected()
    fetcher.configure(CAPS)
    (request,) = join(state, fetcher)
    assert request.params == ("AFTER", "#lan", "msgid=m1", "2")
    feed(state, "@msgid=m6 :bob!b@h PRIVMSG #lan :live")
    (request,) = fetcher.batch(history_batch("#lan", ("m2", "bob", "a"), ("m3", "bob", "b")))
    assert request.params == ("AFTER", "#lan", "msgid=m3", "2")
    (request,) = fetcher.batch(history_batch("#lan", ("m4", "bob", "c"), ("m5", "bob", "d")))
    # The third page reaches a line that came live: caught up.
    assert fetcher.batch(history_batch("#lan", ("m6", "bob", "live"))) == []
    assert said(state, "#lan") == ["seen", "a", "b", "c", "d", "live"]
    lan = state.buffer("#lan")
    joins = [i for i, e in enumerate(lan.entries) if e.kind is EntryKind.JOIN]
    assert [e.text for e in lan.entries[joins[1] - 4 : joins[1]]] == ["a", "b", "c", "d"]


def test_gap_fill_stops_at_its_page_cap(
    state: ClientState, fetcher: HistoryFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "GAP_FILL_MAX_PAGES", 2)
    fetcher.page = 1
    join(state, fetcher)
    fetcher.batch(history_batch("#lan", ("m1", "bob", "seen")), "hist1")
    fetcher.disconnected()
    fetcher.configure(CAPS)
    join(state, fetcher)
    assert len(fetcher.batch(history_batch("#lan", ("m2", "bob", "a")))) == 1
    assert fetcher.batch(history_batch("#lan", ("m3", "bob", "b"))) == []
    texts = [e.text for e in state.buffer("#lan").entries]
    assert texts.index("b") + 1 == texts.index("Some messages missed while away were not loaded")


def test_unknown_msgid_falls_back_to_a_timestamp(
    state: ClientState, fetcher: HistoryFetcher
) -> None:
    join(state, fetcher)
    fetcher.batch(history_batch("#lan", ("m1", "bob", "seen")), "hist1")
    fetcher.disconnected()
    fetcher.configure(CAPS)
    (first,) = join(state, fetcher)
    assert first.params[2] == "msgid=m1"
    fail = parse("@label=hist2 :srv FAIL CHATHISTORY INVALID_PARAMS AFTER msgid=m1 :Invalid")
    (retry,) = fetcher.failed(fail, "hist2")
    # One millisecond before the line's time: a line in the same millisecond is kept.
    assert retry.params == ("AFTER", "#lan", "timestamp=2023-12-31T23:59:59.999Z", "50")
    again = parse(":srv FAIL CHATHISTORY MESSAGE_ERROR AFTER #lan :Messages could not be retrieved")
    assert fetcher.failed(again) == []
    assert "Could not load missed messages" in state.buffer("#lan").entries[-2].text


def test_refused_history_is_not_asked_again(state: ClientState, fetcher: HistoryFetcher) -> None:
    join(state, fetcher)
    fail = parse(
        ":srv FAIL CHATHISTORY INVALID_TARGET LATEST #lan :Messages could not be retrieved"
    )
    assert fetcher.failed(fail) == []
    lan = state.buffer("#lan")
    assert lan.history is HistoryState.UNAVAILABLE
    assert fetcher.older(lan.key) == []
    assert fetcher.failed(parse(":srv FAIL CHATHISTORY INVALID_TARGET LATEST #x :no")) is None


def test_unanswered_requests_expire(
    state: ClientState, fetcher: HistoryFetcher, clock: Clock
) -> None:
    join(state, fetcher)
    lan = state.buffer("#lan")
    clock.now += 5
    fetcher.expire()
    assert fetcher.in_flight(lan.key)
    clock.now += 6
    fetcher.expire()
    assert not fetcher.in_flight(lan.key) and lan.history is HistoryState.MORE
    assert "No answer" in lan.entries[-1].text
    # The answer turns up after all: its place is unknown, so it is dropped.
    assert fetcher.batch(history_batch("#lan", ("m1", "bob", "late"))) == []
    assert said(state, "#lan") == []
    assert len(fetcher.older(lan.key)) == 1  # the user may try again


def test_playback_we_did_not_ask_for_goes_at_the_end(
    state: ClientState, fetcher: HistoryFetcher
) -> None:
    feed(state, ":alice!a@h JOIN #lan", "@msgid=m2 :bob!b@h PRIVMSG #lan :two")
    lan = state.buffer("#lan")
    fetcher.batch(history_batch("#lan", ("m1", "bob", "one"), ("m2", "bob", "two")))
    assert said(state, "#lan") == ["two", "one"]  # appended, the duplicate dropped
    assert lan.unread == 1  # the live line only


def test_no_history_without_the_caps(state: ClientState, clock: Clock) -> None:
    fetcher = HistoryFetcher(state, clock=clock)
    fetcher.configure(frozenset({Cap.DRAFT_CHATHISTORY}))  # no batch: can't tell replies apart
    assert join(state, fetcher) == []
    assert state.buffer("#lan").history is HistoryState.NONE
    assert fetcher.older("#lan") == []
    assert fetcher.reconnected() == []


def test_private_windows_fetch_on_open_and_after_reconnect(
    state: ClientState, fetcher: HistoryFetcher
) -> None:
    feed(state, "@msgid=p2 :bob!b@h PRIVMSG alice :hey")
    query = state.buffer("bob")
    assert state.opened == [query]
    (request,) = fetcher.opened(query)
    assert request.params == ("LATEST", "bob", "*", "50")
    fetcher.batch(history_batch("bob", ("p1", "alice", "earlier"), ("p2", "bob", "hey")))
    assert said(state, "bob") == ["earlier", "hey"]
    fetcher.disconnected()
    fetcher.configure(CAPS)
    targets, request = fetcher.reconnected()
    assert targets.params[0] == "TARGETS"
    assert request.params == ("AFTER", "bob", "msgid=p2", "50")
    assert fetcher.reconnected() == []  # once per connection (a /motd ends with 376 too)


def test_reconnect_asks_which_conversations_went_on(
    state: ClientState, fetcher: HistoryFetcher
) -> None:
    assert fetcher.reconnected() == []  # a first connection: nothing was missed
    fetcher.disconnected()
    fetcher.configure(CAPS)
    (request,) = fetcher.reconnected()
    assert request.params[0] == "TARGETS" and request.params[3] == "50"
    assert all(p.startswith("timestamp=") for p in request.params[1:3])
    collector = BatchCollector()
    for line in [
        ":srv BATCH +t draft/chathistory-targets",
        "@batch=t :srv CHATHISTORY TARGETS #lan timestamp=2024-01-01T00:00:00.000Z",
        "@batch=t :srv CHATHISTORY TARGETS carol timestamp=2024-01-01T00:00:01.000Z",
    ]:
        collector.feed(parse(line))
    batch = collector.feed(parse(":srv BATCH -t"))
    assert isinstance(batch, Batch)
    fetcher.targets(batch)
    assert [b.name for b in state.opened] == ["carol"]  # rooms come back by JOIN


def test_backlog_full_stops_scroll_back(
    state: ClientState, fetcher: HistoryFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "BACKLOG_LINES", 3)
    join(state, fetcher)
    fetcher.batch(history_batch("#lan", *[(f"m{i}", "bob", str(i)) for i in range(50)]), "hist1")
    assert fetcher.older("#lan") == []
    assert state.buffer("#lan").history is HistoryState.FULL


# --- echo-message, pending lines, the divider ---------------------------------------------


def test_echo_confirms_the_pending_line_in_place(state: ClientState) -> None:
    state.echo_message = True
    feed(state, ":alice!a@h JOIN #lan")
    state.set_active("#lan")
    first = state.own_message("#lan", "one")
    state.own_message("#lan", "two")
    lan = state.buffer("#lan")
    assert first.pending and len(lan.pending) == 2
    feed(state, "@msgid=e1;time=2024-01-01T00:00:00.000Z :alice!a@h PRIVMSG #lan :one")
    confirmed = lan.entries[-2]
    assert (confirmed.seq, confirmed.msgid, confirmed.pending) == (first.seq, "e1", False)
    assert first.seq in lan.touched and len(lan.pending) == 1
    # The server changed the text: the oldest pending line is the one.
    feed(state, "@msgid=e2 :alice!a@h PRIVMSG #lan :TWO")
    assert said(state, "#lan") == ["one", "TWO"] and not lan.pending
    feed(state, "@msgid=e2 :alice!a@h PRIVMSG #lan :TWO")  # the same msgid again
    assert said(state, "#lan") == ["one", "TWO"]


def test_unechoed_lines_fail_and_history_settles_them(state: ClientState) -> None:
    state.echo_message = True
    feed(state, ":alice!a@h JOIN #lan")
    state.own_message("#lan", "refused")
    state.own_message("#lan", "in flight")
    feed(state, ":srv 404 alice #lan :Cannot send to channel")
    lan = state.buffer("#lan")
    assert [(e.pending, e.failed) for e in lan.entries[-2:]] == [(False, True), (True, False)]
    state.disconnected("gone")
    assert lan.entries[-1].failed is False  # the Disconnected line
    assert all(e.failed for e in lan.entries if e.own)
    # After the reconnect, history shows the line did get through: one copy, confirmed.
    entry = state.history_entry(lan, parse("@msgid=h1 :alice!a@h PRIVMSG #lan :in flight"))
    assert entry is not None
    state.insert_history(lan, [entry], lan.entries[-1].seq)
    own = [(e.text, e.failed) for e in lan.entries if e.own]
    assert own == [("refused", True), ("in flight", False)]


def test_without_echo_message_our_line_is_final(state: ClientState) -> None:
    entry = state.own_message("#lan", "hello")
    assert not entry.pending and not state.buffer("#lan").pending


def test_divider_marks_the_first_line_that_arrived_while_away(state: ClientState) -> None:
    feed(state, ":alice!a@h JOIN #lan", ":alice!a@h JOIN #games")
    state.set_active("#lan")
    feed(state, ":bob!b@h PRIVMSG #lan :seen")
    lan = state.buffer("#lan")
    assert lan.divider_seq is None
    state.set_active("#games")
    feed(state, ":bob!b@h JOIN #lan")  # system lines don't move it
    state.own_message("#lan", "mine")  # nor do our own
    assert lan.divider_seq is None
    feed(state, ":bob!b@h PRIVMSG #lan :new one", ":bob!b@h PRIVMSG #lan :new two")
    assert lan.divider_seq == lan.entries[-2].seq
    version = lan.version
    state.set_active("#lan")
    assert lan.divider_seq == lan.entries[-2].seq  # shown on return
    state.set_active("#games")
    assert lan.divider_seq is None and lan.version > version  # gone once left


def test_backlog_trims_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "BACKLOG_LINES", 10)
    monkeypatch.setattr(state_module, "BACKLOG_TRIM", 5)
    state = ClientState("alice")
    buf = state.open("#lan")
    state.set_active(buf.key)
    for i in range(15):
        state.add(buf, EntryKind.MESSAGE, "bob", str(i), msgid=f"m{i}")
    assert len(buf.entries) == 15 and buf.version == 0
    state.add(buf, EntryKind.MESSAGE, "bob", "15", msgid="m15")
    assert [e.text for e in buf.entries] == [str(i) for i in range(6, 16)]
    assert buf.version == 1 and "m5" not in buf.msgids and "m6" in buf.msgids


def test_pending_failed_and_marker_rows_render() -> None:
    from dataclasses import replace

    from rich.console import Console
    from rich.style import Style

    from chatroom.client.widgets.log import (
        DIVIDER_TEXT,
        FAILED_SUFFIX,
        Marker,
        entry_height,
        render_entry,
        render_marker,
    )

    console = Console(width=80)
    state = ClientState("alice")
    state.echo_message = True
    pending = state.own_message("#lan", "on its way")
    (row,) = render_entry(pending, 80, console)
    assert all(seg.style and seg.style.dim for seg in row if "way" in seg.text)
    failed = replace(pending, pending=False, failed=True)
    (row,) = render_entry(failed, 80, console)
    assert row.text.rstrip().endswith(FAILED_SUFFIX.strip())
    assert entry_height(failed, 80) == 1
    divider = render_marker(Marker(DIVIDER_TEXT, Style(), True), 40, console)
    assert divider.cell_length == 40 and DIVIDER_TEXT in divider.text
    assert divider.text.startswith("─")


def test_targets_fold_a_conversation_whose_peer_changed_nick(
    state: ClientState, fetcher: HistoryFetcher
) -> None:
    # The server files private lines under the nicks they were sent with: after
    # bob -> bobby it still lists "bob". Lines up to the change are in bobby's window;
    # a conversation with whoever took "bob" later gets a window of its own.
    feed(
        state,
        "@time=2024-01-01T00:00:05.000Z;msgid=m1 :bob!b@h PRIVMSG alice :psst",
        "@time=2024-01-01T00:00:10.000Z :bob!b@h NICK bobby",
    )
    assert state.buffer("bob") is None and said(state, "bobby") == ["psst"]
    state.opened.clear()
    collector = BatchCollector()
    for time in ("2024-01-01T00:00:05.000Z", "timestamp=2024-01-01T00:00:10.000Z"):
        collector.feed(parse(":srv BATCH +t draft/chathistory-targets"))
        collector.feed(parse(f"@batch=t :srv CHATHISTORY TARGETS bob {time}"))
        fetcher.targets(collector.feed(parse(":srv BATCH -t")))
    assert state.buffer("bob") is None and state.opened == []
    collector.feed(parse(":srv BATCH +t draft/chathistory-targets"))
    collector.feed(parse("@batch=t :srv CHATHISTORY TARGETS bob 2024-01-01T00:00:11.000Z"))
    fetcher.targets(collector.feed(parse(":srv BATCH -t")))
    assert [b.name for b in state.opened] == ["bob"]
