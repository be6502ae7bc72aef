"""HistoryStore and HistoryPipeline without sockets: schema versions, windows over
history, retention, targets, room state, export; and the export command line."""

from __future__ import annotations

import json
import re
import sqlite3
import threading

import pytest

from chatroom.cli import server_main
from chatroom.server.config import Config
from chatroom.server.pipeline import HistoryPipeline
from chatroom.server.records import (
    ID_TIME_SHIFT,
    RoomState,
    SearchTarget,
    StoredMessage,
    dm_key,
)
from chatroom.server.server import ChatServer
from chatroom.server.store import MEMORY, MIGRATIONS, HistoryStore

DAY_MS = 86_400_000
NOW_MS = 1_800_000_000_000  # a fixed "now" for retention, far from the epoch


def msg(
    n: int,
    target: str = "#lan",
    time_ms: int | None = None,
    text: str | None = None,
    *,
    sender: str = "alice!al@10.0.0.1",
    command: str = "PRIVMSG",
    tags: dict[str, str] | None = None,
) -> StoredMessage:
    """Message number ``n``; its id follows the store's rule (time << ID_TIME_SHIFT)."""
    stamp = NOW_MS + n if time_ms is None else time_ms
    return StoredMessage(
        (stamp << ID_TIME_SHIFT) + n % 1024,
        f"id{n}",
        stamp,
        target,
        target,
        sender,
        command,
        f"text {n}" if text is None else text,
        tags or {},
    )


def nums(rows) -> list[int]:
    """The message numbers (see msg()) of some rows, in their order."""
    return [int(r.text.split()[1]) for r in rows]


@pytest.fixture
def store():
    s = HistoryStore(MEMORY)
    yield s
    s.close()


# --- schema --------------------------------------------------------------------------------


def test_a_new_database_gets_the_current_schema_version(tmp_path):
    path = tmp_path / "h.db"
    s = HistoryStore(path)
    try:
        assert s.schema_version == len(MIGRATIONS) >= 1
    finally:
        s.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    raw.close()
    assert {"messages", "rooms"} <= tables


def test_reopening_keeps_data_and_continues_ids(tmp_path):
    path = tmp_path / "h.db"
    s = HistoryStore(path)
    first = [s.next_id(NOW_MS) for _ in range(3)]
    assert first == sorted(set(first))  # same millisecond: still unique and increasing
    s.write([m._replace(id=i) for m, i in zip([msg(1), msg(2), msg(3)], first, strict=True)])
    s.close()
    again = HistoryStore(path)
    try:
        assert again.schema_version == len(MIGRATIONS)
        assert nums(again.window("#lan", 0, 1 << 62, 10, newest=False)) == [1, 2, 3]
        assert again.next_id(0) > first[-1]  # never reuses a stored id, clock or not
    finally:
        again.close()


def test_a_database_from_a_newer_server_is_refused(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.close()
    with pytest.raises(RuntimeError, match="newer"):
        HistoryStore(path)
    with sqlite3.connect(path) as raw:  # and left as it was
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    raw.close()


def test_two_memory_stores_do_not_share_history():
    a, b = HistoryStore(MEMORY), HistoryStore(MEMORY)
    try:
        a.write([msg(1)])
        assert nums(a.window("#lan", 0, 1 << 62, 10, newest=False)) == [1]
        assert b.window("#lan", 0, 1 << 62, 10, newest=False) == []
    finally:
        a.close()
        b.close()


def test_a_memory_store_reads_and_writes_at_once_without_lock_errors():
    """Its connections share one cache, which locks whole tables: a read meeting an
    open commit, or a commit meeting a read, must neither fail nor be a storage error."""
    s = HistoryStore(MEMORY)
    failures: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for n in range(1500):
                s.write([msg(n, text=f"text {n} hello")])
                if n % 10 == 0:
                    s.index()
        except BaseException as e:  # reported by the test, not lost in the thread
            failures.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    try:
        while not done.is_set() or reads < 10:
            s.window("#lan", 0, 1 << 62, 50, newest=True)
            s.search([SearchTarget("#lan", 0)], "hello", None, None, None, 10)
            reads += 1
    finally:
        thread.join()
        s.close()
    assert not failures
    assert s.read_errors == 0
    assert reads >= 10


# --- reading ------------------------------------------------------------------------------


def test_window_bounds_are_exclusive_and_results_oldest_first(store):
    store.write([msg(i) for i in range(1, 11)] + [msg(i, "#other") for i in range(11, 14)])
    three, eight = msg(3).id, msg(8).id
    assert nums(store.window("#lan", three, eight, 10, newest=False)) == [4, 5, 6, 7]
    assert nums(store.window("#lan", three, eight, 2, newest=False)) == [4, 5]  # oldest of them
    assert nums(store.window("#lan", three, eight, 2, newest=True)) == [6, 7]  # still ascending
    assert nums(store.window("#lan", 0, 1 << 62, 3, newest=True)) == [8, 9, 10]
    assert store.window("#lan", msg(5).id, msg(6).id, 10, newest=False) == []
    assert store.window("#lan", 0, 1 << 62, 0, newest=True) == []
    assert nums(store.window("#other", 0, 1 << 62, 10, newest=False)) == [11, 12, 13]
    assert store.window("#nowhere", 0, 1 << 62, 10, newest=False) == []


def test_rows_come_back_as_written_with_client_tags(store):
    tagged = msg(1, text="\x01ACTION waves\x01", tags={"+draft/react": "👍", "+flag": ""})
    store.write([tagged, msg(2, command="NOTICE")])
    first, second = store.window("#lan", 0, 1 << 62, 10, newest=False)
    assert first == tagged
    assert second.command == "NOTICE" and second.tags == {}


def test_locate_finds_a_msgid_only_in_its_own_conversation(store):
    store.write([msg(1), msg(2, "#other")])
    assert store.locate("#lan", "id1") == msg(1).id
    assert store.locate("#other", "id1") is None  # no peeking across conversations
    assert store.locate("#lan", "nope") is None


def test_first_id_at_turns_a_time_into_a_position(store):
    store.write(
        [msg(1, time_ms=100), msg(2, time_ms=200), msg(3, time_ms=200), msg(4, time_ms=300)]
    )

    def older_than(ms: int) -> list[int]:
        return nums(store.window("#lan", 0, store.first_id_at("#lan", ms), 10, newest=False))

    assert older_than(50) == []
    assert older_than(200) == [1]
    assert older_than(201) == [1, 2, 3]
    assert older_than(301) == [1, 2, 3, 4]
    assert store.next_id(150) >= store.first_id_at("#lan", 150)


def test_dm_key_is_symmetric():
    assert dm_key("alice", "bob") == dm_key("bob", "alice") == "alice bob"
    assert dm_key("a", "a") == "a a"


def test_dm_keys_matches_whole_nicks_even_with_like_wildcards(store):
    store.write(
        [
            msg(1, dm_key("a_c", "bob")),
            msg(2, dm_key("abc", "bob")),  # '_' must not match any character
            msg(3, dm_key("zed", "a_c")),
            msg(4, dm_key("a_cd", "x")),  # a longer nick that starts the same
            msg(5, "#a_c"),
        ]
    )
    assert sorted(store.dm_keys("a_c")) == ["a_c bob", "a_c zed"]
    assert store.dm_keys("a%") == []


def test_targets_are_the_limit_nearest_the_start_oldest_first(store):
    store.write(
        [
            msg(1, "#a", time_ms=100),
            msg(2, "#b", time_ms=200),
            msg(3, "#a", time_ms=300),
            msg(4, "alice bob", time_ms=400),
            msg(5, "#c", time_ms=500),
            msg(6, "#hidden", time_ms=350),  # not among the keys asked about
        ]
    )
    keys = ["#a", "#b", "#c", "alice bob"]
    rows = store.targets(keys, 0, 1000, 10)
    assert [(k, t) for k, _, t in rows] == [
        ("#b", 200),
        ("#a", 300),
        ("alice bob", 400),
        ("#c", 500),
    ]
    assert [k for k, _, _ in store.targets(keys, 0, 1000, 2)] == ["#b", "#a"]
    # backwards: the two nearest the start (1000), still listed oldest first
    assert [k for k, _, _ in store.targets(keys, 1000, 0, 2)] == ["alice bob", "#c"]
    # exclusive bounds; the time reported is the latest inside the window
    assert [(k, t) for k, _, t in store.targets(keys, 100, 300, 10)] == [("#b", 200)]
    assert store.targets([], 0, 1000, 10) == []


def test_room_state_round_trips_and_updates(store):
    assert store.room_state("#lan") is None
    state = RoomState("#lan", "#Lan", "topic", "al!a@h", 12.5, "knt", "sekrit", 5, 1.0)
    store.write([], [state])
    assert store.room_state("#lan") == state
    changed = RoomState("#lan", "#Lan", "new topic", "bo!b@h", 13.0, "nt", None, None, 99.0)
    store.write([], [changed])
    got = store.room_state("#lan")
    assert got.topic == "new topic" and got.room_key is None and got.limit is None
    assert got.modes == "nt"
    # a room that emptied and was made again is a new room: its creation time too
    assert got.created == 99.0


def test_export_pages_through_everything_in_order(store):
    store.write([msg(i, "#big" if i % 3 else "#small") for i in range(1, 3001)])
    exported = nums(store.export("#big"))
    assert exported == [i for i in range(1, 3001) if i % 3]  # 2000 rows: three pages
    assert list(store.export("#empty")) == []


# --- retention ------------------------------------------------------------------------------


def test_retention_by_count_keeps_the_newest_of_each_conversation():
    s = HistoryStore(MEMORY, retention_count=3, retention_days=0)
    try:
        s.write([msg(i, "#busy") for i in range(1, 7)] + [msg(i, "#calm") for i in (7, 8)])
        assert s.apply_retention(NOW_MS) == 3
        assert nums(s.window("#busy", 0, 1 << 62, 10, newest=False)) == [4, 5, 6]
        assert nums(s.window("#calm", 0, 1 << 62, 10, newest=False)) == [7, 8]
        assert s.apply_retention(NOW_MS) == 0
    finally:
        s.close()


def test_retention_by_age_drops_what_is_older_than_the_cutoff():
    s = HistoryStore(MEMORY, retention_count=0, retention_days=2)
    try:
        cutoff = NOW_MS - 2 * DAY_MS
        s.write(
            [
                msg(1, time_ms=cutoff - DAY_MS),
                msg(2, time_ms=cutoff - 1),
                msg(3, time_ms=cutoff),  # exactly two days old: kept
                msg(4, time_ms=NOW_MS),
            ]
        )
        assert s.apply_retention(NOW_MS) == 2
        assert nums(s.window("#lan", 0, 1 << 62, 10, newest=False)) == [3, 4]
    finally:
        s.close()


def test_zero_means_keep_forever():
    s = HistoryStore(MEMORY, retention_count=0, retention_days=0)
    try:
        s.write([msg(i, time_ms=i) for i in range(1, 50)])  # 1970: ancient
        assert s.apply_retention(NOW_MS) == 0
        assert len(s.window("#lan", 0, 1 << 62, 100, newest=False)) == 49
    finally:
        s.close()


# --- the store thread -----------------------------------------------------------------------


class RecordingWriter:
    """Stands in for the writer: remembers what the pipeline forwarded."""

    close_linger = 0.0

    def __init__(self) -> None:
        self.entries: list[tuple] = []
        self.seen = threading.Event()

    def post_many(self, entries) -> None:
        self.entries.extend(entries)
        self.seen.set()

    def throttle(self, timeout: float = 1.0) -> None:
        pass


def test_pipeline_commits_before_it_forwards(store):
    writer = RecordingWriter()
    pipeline = HistoryPipeline(store, writer)  # type: ignore[arg-type]
    committed_when_forwarded: list[list[int]] = []
    original = writer.post_many

    def post_many(entries) -> None:
        committed_when_forwarded.append(nums(store.window("#lan", 0, 1 << 62, 10, newest=False)))
        original(entries)

    writer.post_many = post_many  # type: ignore[method-assign]
    pipeline.start()
    try:
        pipeline.multicast((b"a", b"b", b"c"), ("sink",), None, msg(1))
        pipeline.save_room(RoomState("#lan", "#lan", "", "", 0.0, "nt", None, None, 1.0))
        pipeline.multicast((b"x", b"y", b"z"), ("sink",), None, None)  # not history
        assert pipeline.wait_committed(msg(1).id, timeout=5)
        assert writer.seen.wait(5)
    finally:
        pipeline.stop()
    assert committed_when_forwarded[0] == [1]
    forwarded = [e.variants[0] for e in writer.entries]
    assert forwarded == [b"a", b"x"]  # in order; the room state is not for clients
    assert store.room_state("#lan") is not None


# --- chatroom-server export -------------------------------------------------------------------


@pytest.fixture
def history_file(tmp_path):
    path = tmp_path / "h.db"
    s = HistoryStore(path)
    s.write(
        [
            msg(1, "#lan", text="hello there"),
            msg(2, "#lan", text="\x01ACTION waves\x01", sender="bob!b@10.0.0.2"),
            msg(3, "#lan", text="heads up", command="NOTICE"),
            msg(4, "#lan", text="with tag", tags={"+draft/reply": "id1"}),
            msg(5, "#other", text="elsewhere"),
            msg(6, "alice bob", text="private"),
        ]
    )
    s.close()
    return path


def test_export_text(history_file, capsys):
    assert server_main(["export", "#LAN", "--db", str(history_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    expected = ["<alice> hello there", "\\* bob waves", "-alice- heads up", "<alice> with tag"]
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected, strict=True):
        assert re.fullmatch(stamp + want, line), line


def test_export_jsonl(history_file, capsys):
    assert server_main(["export", "lan", "--db", str(history_file), "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["msgid"] for r in records] == ["id1", "id2", "id3", "id4"]
    first = records[0]
    assert first == {
        "time": "2027-01-15T08:00:00.001Z",
        "msgid": "id1",
        "target": "#lan",
        "from": "alice!al@10.0.0.1",
        "command": "PRIVMSG",
        "text": "hello there",
    }
    assert records[1]["text"] == "\x01ACTION waves\x01"
    assert records[3]["tags"] == {"+draft/reply": "id1"}


def test_export_works_while_a_server_holds_the_database(history_file, capsys):
    held = HistoryStore(history_file)  # as a running server does: it holds the lock
    try:
        assert server_main(["export", "#lan", "--db", str(history_file)]) == 0
    finally:
        held.close()
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_export_of_a_quiet_room_says_so(history_file, capsys):
    assert server_main(["export", "#silent", "--db", str(history_file)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no history for #silent" in captured.err


def test_export_without_a_database_fails_clearly(tmp_path, capsys):
    missing = tmp_path / "nope.db"
    assert server_main(["export", "#lan", "--db", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "no history database" in err and str(missing) in err
    assert not missing.exists()  # looking did not create one


def test_export_refuses_a_newer_database(tmp_path, capsys):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.close()
    assert server_main(["export", "#lan", "--db", str(path)]) == 1
    assert "newer" in capsys.readouterr().err


def test_export_of_a_file_that_is_not_a_database_fails_clearly(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("just some notes, not SQLite\n" * 100)
    assert server_main(["export", "#lan", "--db", str(path)]) == 1
    assert str(path) in capsys.readouterr().err


def test_a_server_refuses_a_newer_database_without_leaking(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.close()
    config = Config(host="127.0.0.1", port=0, server_name="test.server", db=str(path), tls=False)
    with pytest.raises(RuntimeError, match="newer"):
        ChatServer(config)
