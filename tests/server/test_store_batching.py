"""The store thread's batching, without sockets: group commit that gathers under load,
and the full-text index filled in bulk after the commits (at a batch of rows, an idle
moment, a search, start and stop), whose failures never stop delivery.

A HistoryPipeline on a real SQLite file in tmp_path, a RecordingWriter in place of the
writer thread."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

from chatroom.server import pipeline as pipeline_mod
from chatroom.server.pipeline import HistoryPipeline
from chatroom.server.records import ID_TIME_SHIFT, SearchTarget, StoredMessage
from chatroom.server.store import HistoryStore
from tests.server.test_store import RecordingWriter

NOW_MS = 1_800_000_000_000
WAIT = 5.0  # the most any test waits for the store thread (it takes milliseconds)


def msg(n: int, text: str | None = None) -> StoredMessage:
    return StoredMessage(
        (NOW_MS + n) << ID_TIME_SHIFT,
        f"id{n}",
        NOW_MS + n,
        "#r",
        "#r",
        "alice!al@127.0.0.1",
        "PRIVMSG",
        f"deploy {n}" if text is None else text,
    )


def post(pipeline: HistoryPipeline, *numbers: int) -> None:
    for n in numbers:
        pipeline.multicast((b"%d" % n,) * 3, ("sink",), None, msg(n))


def found(pipeline: HistoryPipeline, text: str = "deploy") -> list[str]:
    """What a search finds, oldest first."""
    rows = pipeline.search([SearchTarget("#r")], text, None, None, None, 1000)
    return [m.msgid for m in reversed(rows)]


def until(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def check_index(store: HistoryStore) -> None:
    """FTS5's check of the index against the messages (raises when they differ)."""
    store._write.execute(
        "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)"
    )


@pytest.fixture
def store(tmp_path) -> Iterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s
    s.close()


@pytest.fixture
def writer() -> RecordingWriter:
    return RecordingWriter()


@pytest.fixture
def pipeline(store, writer) -> Iterator[HistoryPipeline]:
    p = HistoryPipeline(store, writer)  # type: ignore[arg-type]
    yield p
    p.stop()


@pytest.fixture
def no_timely_indexing(monkeypatch) -> None:
    """Neither a batch of rows nor an idle moment makes the store thread index."""
    monkeypatch.setattr(pipeline_mod, "FTS_BATCH_ROWS", 1_000_000)
    monkeypatch.setattr(pipeline_mod, "FTS_QUIET", 3600.0)


def forwarded(writer: RecordingWriter) -> list[bytes]:
    return [e.variants[0] for e in writer.entries]


# --- group commit ------------------------------------------------------------------------------


def slow_first_write(
    store: HistoryStore, monkeypatch, seconds: float
) -> tuple[list, threading.Event]:
    """Record the size of every batch written; the first write takes ``seconds``."""
    sizes: list[int] = []
    started = threading.Event()
    write = store.write

    def recording(messages, rooms=()):
        sizes.append(len(messages))
        if len(sizes) == 1:
            started.set()
            time.sleep(seconds)
        write(messages, rooms)

    monkeypatch.setattr(store, "write", recording)
    return sizes, started


def test_after_a_slow_commit_the_store_thread_gathers_and_is_not_woken(
    store, writer, pipeline, monkeypatch
):
    monkeypatch.setattr(pipeline_mod, "STORE_DUTY", 1.0)
    monkeypatch.setattr(pipeline_mod, "MAX_STORE_DELAY", 5.0)
    sizes, started = slow_first_write(store, monkeypatch, 0.3)
    wakes = 0
    wake = pipeline._wake

    def counting_wake() -> None:
        nonlocal wakes
        wakes += 1
        wake()

    monkeypatch.setattr(pipeline, "_wake", counting_wake)
    pipeline.start()
    post(pipeline, 1)  # a lone message on an idle thread: it goes at once
    assert started.wait(WAIT)
    wakes = 0
    post(pipeline, 2)  # while 1 is being written
    assert writer.seen.wait(WAIT)  # 1 is through; the thread gathers for ~0.3 s now
    post(pipeline, 3)
    assert pipeline.wait_committed(msg(3).id, WAIT)
    assert sizes == [1, 2]  # 2 and 3 in one commit
    assert wakes == 0  # posts to a busy or gathering thread do not wake it
    assert forwarded(writer) == [b"1", b"2", b"3"]


def gathering_long(store, writer, pipeline, monkeypatch) -> None:
    """1 committed (slowly: 0.2 s), so the thread now gathers for 20 s, 2 waiting."""
    monkeypatch.setattr(pipeline_mod, "STORE_DUTY", 100.0)
    monkeypatch.setattr(pipeline_mod, "MAX_STORE_DELAY", 30.0)  # a gathering of 20 s
    _sizes, started = slow_first_write(store, monkeypatch, 0.2)
    pipeline.start()
    post(pipeline, 1)
    assert started.wait(WAIT)
    post(pipeline, 2)
    assert writer.seen.wait(WAIT)


def test_stop_ends_the_gathering_and_commits_what_is_queued(store, writer, pipeline, monkeypatch):
    gathering_long(store, writer, pipeline, monkeypatch)
    begun = time.monotonic()
    pipeline.stop()
    assert time.monotonic() - begun < WAIT
    assert forwarded(writer) == [b"1", b"2"]
    assert [m.msgid for m in store.window("#r", 0, 1 << 62, 10, newest=False)] == ["id1", "id2"]


def test_a_search_ends_the_gathering(store, writer, pipeline, monkeypatch, no_timely_indexing):
    gathering_long(store, writer, pipeline, monkeypatch)
    assert pipeline.wait_committed(msg(1).id, WAIT)
    begun = time.monotonic()
    # it wakes the thread, which commits 2 on the way, then indexes
    assert found(pipeline) == ["id1", "id2"]
    assert time.monotonic() - begun < pipeline_mod.SEARCH_INDEX_WAIT


# --- the full-text index, filled after the commits ----------------------------------------------


def test_a_batch_of_rows_is_indexed_at_once(store, pipeline, monkeypatch, no_timely_indexing):
    monkeypatch.setattr(pipeline_mod, "FTS_BATCH_ROWS", 5)
    pipeline.start()
    post(pipeline, 1, 2, 3)
    assert pipeline.wait_committed(msg(3).id, WAIT)
    time.sleep(0.05)
    assert store.unindexed == 3 and store.indexed == 0
    post(pipeline, 4, 5)
    assert until(lambda: store.unindexed == 0)
    assert store.indexed == msg(5).id
    check_index(store)


def test_under_load_a_backlog_is_indexed_a_step_at_a_time(
    store, pipeline, monkeypatch, no_timely_indexing
):
    # never quiet (no_timely_indexing); a backlog of 5 is indexed 2 rows a step, so
    # the commits around each step wait for a short step, never the whole backlog
    monkeypatch.setattr(pipeline_mod, "FTS_BATCH_ROWS", 5)
    monkeypatch.setattr(pipeline_mod, "FTS_STEP_ROWS", 2)
    pipeline.start()
    post(pipeline, 1, 2, 3, 4, 5)
    assert pipeline.wait_committed(msg(5).id, WAIT)
    assert until(lambda: store.indexed == msg(2).id)
    time.sleep(0.05)
    assert store.unindexed == 3  # below the backlog bound: it waits for a quiet moment
    assert found(pipeline) == [f"id{n}" for n in range(1, 6)]  # a search has it all done
    check_index(store)


def test_rows_are_indexed_once_the_thread_is_idle_for_a_moment(store, pipeline, monkeypatch):
    monkeypatch.setattr(pipeline_mod, "FTS_QUIET", 0.1)
    pipeline.start()
    post(pipeline, 1)
    assert pipeline.wait_committed(msg(1).id, WAIT)
    assert until(lambda: store.unindexed == 0)
    assert store.indexed == msg(1).id


def test_a_search_has_everything_committed_indexed_first(store, pipeline, no_timely_indexing):
    pipeline.start()
    post(pipeline, *range(1, 21))
    assert pipeline.wait_committed(msg(20).id, WAIT)
    assert store.unindexed == 20
    assert found(pipeline) == [f"id{n}" for n in range(1, 21)]
    assert store.unindexed == 0
    post(pipeline, 21)
    assert pipeline.wait_committed(msg(21).id, WAIT)
    assert found(pipeline, "21") == ["id21"]
    check_index(store)


def test_stop_indexes_what_is_left(store, pipeline, no_timely_indexing):
    pipeline.start()
    post(pipeline, 1, 2)
    assert pipeline.wait_committed(msg(2).id, WAIT)
    pipeline.stop()
    assert store.unindexed == 0 and store.indexed == msg(2).id
    check_index(store)


def test_a_redact_of_a_row_not_yet_indexed_leaves_the_index_sound(
    store, writer, pipeline, no_timely_indexing
):
    post(pipeline, 1, 2)
    pipeline.delete_message("#r", "id1", store.next_id(NOW_MS + 3))  # in the same batch
    pipeline.start()
    assert pipeline.wait_committed(msg(2).id, WAIT)
    post(pipeline, 3)
    pipeline.delete_message("#r", "id3", store.next_id(NOW_MS + 4))  # alone, after its commit
    assert until(lambda: pipeline.rows == 1)
    assert found(pipeline) == ["id2"]
    check_index(store)
    assert forwarded(writer) == [b"1", b"2", b"3"]


def test_indexing_failures_are_logged_once_and_delivery_goes_on(
    store, writer, pipeline, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(pipeline_mod, "FTS_BATCH_ROWS", 2)
    monkeypatch.setattr(pipeline_mod, "FTS_QUIET", 0.05)
    index = store.index

    def failing(limit: int | None = None) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "index", failing)
    pipeline.start()
    for n in range(1, 11):
        post(pipeline, n)
        assert pipeline.wait_committed(msg(n).id, WAIT)
    time.sleep(0.2)  # several more tries
    assert forwarded(writer) == [b"%d" % n for n in range(1, 11)]
    failed = [r for r in caplog.records if "search index failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert "disk I/O error" in failed[0].getMessage()
    begun = time.monotonic()
    assert found(pipeline) == []  # what is indexed, at once: not a wait for the store thread
    assert time.monotonic() - begun < pipeline_mod.SEARCH_INDEX_WAIT
    assert pipeline.problem is None  # messages are saved: only the search lags
    monkeypatch.setattr(store, "index", index)
    assert until(lambda: any("search index works again" in r.getMessage() for r in caplog.records))
    assert store.unindexed == 0
    assert found(pipeline) == [f"id{n}" for n in range(1, 11)]


def test_a_search_never_waits_for_a_store_thread_that_died(
    store, pipeline, monkeypatch, no_timely_indexing, caplog
):
    pipeline.start()
    post(pipeline, 1)
    assert pipeline.wait_committed(msg(1).id, WAIT)

    def broken(now: float) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "_index_if_due", broken)
    post(pipeline, 2)
    assert until(lambda: pipeline.dead)
    begun = time.monotonic()
    assert found(pipeline) == []  # nothing was indexed, and nothing will be
    assert time.monotonic() - begun < pipeline_mod.SEARCH_INDEX_WAIT
