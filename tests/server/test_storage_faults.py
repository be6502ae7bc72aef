"""When storage fails, the chat goes on and everyone is told: a record SQLite refuses, a
thread that dies, a second server on the same file, a full disk, a deleted or damaged
database, an unwritable data directory.

Real servers on 127.0.0.1 port 0 (or ``chatroom-server`` processes), real SQLite files
in tmp_path, real sockets."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chatroom.server import pipeline as pipeline_mod
from chatroom.server.config import Config
from chatroom.server.pipeline import HistoryPipeline
from chatroom.server.records import (
    ID_TIME_SHIFT,
    HistoryReadError,
    Multicast,
    RoomState,
    StoredMessage,
)
from chatroom.server.server import ChatServer
from chatroom.server.store import LOCK_SUFFIX, HistoryOpenError, HistoryStore

NOW_MS = 1_800_000_000_000
SERVER_MAIN = "from chatroom.cli import server_main; raise SystemExit(server_main())"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(db: Path) -> Config:
    return Config(host="127.0.0.1", port=0, server_name="test.server", db=str(db), tls=False)


def msg(n: int, target: str = "#r", *, msgid: str | None = None, **changes) -> StoredMessage:
    m = StoredMessage(
        ((NOW_MS + n) << ID_TIME_SHIFT),
        msgid or f"id{n}",
        NOW_MS + n,
        target,
        target,
        "alice!al@127.0.0.1",
        "PRIVMSG",
        f"text {n}",
    )
    return m._replace(**changes)


def room(key: str = "#r", **changes) -> RoomState:
    fields = dict(
        key=key,
        name=key,
        topic="",
        topic_by="",
        topic_at=0.0,
        modes="nt",
        room_key=None,
        limit=None,
        created=1.0,
    )
    fields.update(changes)
    return RoomState(**fields)


def texts(store: HistoryStore, target: str = "#r") -> list[str]:
    return [m.text for m in store.window(target, 0, 1 << 62, 10_000, newest=False)]


def pair(server_factory, connect, **overrides):
    """A server with history in a file, and alice and bob in #r."""
    fx = server_factory(flood_limit=False, **overrides)
    alice, bob = connect("alice", to=fx), connect("bob", to=fx)
    alice.join("#r")
    bob.join("#r")
    return fx, alice, bob


def still_chatting(alice, bob, text: str) -> None:
    """Both directions deliver, and the server answers PING."""
    alice.send(f"PRIVMSG #r :{text}")
    bob.expect("PRIVMSG", where=lambda m: m.params[1] == text)
    bob.send(f"PRIVMSG #r :re: {text}")
    alice.expect("PRIVMSG", where=lambda m: m.params[1] == f"re: {text}")
    alice.send("PING :still-there")
    alice.expect("PONG", where=lambda m: m.params[-1] == "still-there")


def notices(client, quiet: float = 0.5) -> list[str]:
    return [m.params[1] for m in client.collect(quiet) if m.command == "NOTICE"]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """``chatroom-server`` on loopback, expected to refuse to start."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            SERVER_MAIN,
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--no-tls",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class RecordingWriter:
    """Stands in for the writer: remembers what the pipeline forwarded."""

    close_linger = 0.0

    def __init__(self) -> None:
        self.entries: list[tuple] = []

    def post_many(self, entries) -> None:
        self.entries.extend(entries)

    def throttle(self, timeout: float = 1.0) -> None:
        pass


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "history.sqlite3"


# --- 1. no batch stops the store thread or the writer ------------------------------------------


def test_a_poison_room_state_is_skipped_and_the_chat_goes_on(server_factory, connect, db, caplog):
    fx, alice, bob = pair(server_factory, connect, db=str(db))
    pipeline = fx.server.pipeline
    # SQLite cannot take an integer of 64 bits or more: OverflowError, not sqlite3.Error
    pipeline.save_room(room("#poison", limit=2**63))
    still_chatting(alice, bob, "after the poison")
    assert pipeline.alive and pipeline.failures == 1
    skipped = [r for r in caplog.records if "skipped room state of '#poison'" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].exc_info[0] is OverflowError  # with its traceback
    assert pipeline.wait_committed(fx.server.registry.last_message_id)
    assert texts(fx.server.store)[-2:] == ["after the poison", "re: after the poison"]


def test_a_poison_message_is_still_delivered_and_the_rest_of_its_batch_stored(db, caplog):
    store = HistoryStore(db)
    writer = RecordingWriter()
    pipeline = HistoryPipeline(store, writer)  # type: ignore[arg-type]
    try:
        # posted before the thread starts: one batch, the bad record in the middle
        for n in range(1, 8):
            record = msg(n, time_ms=2**63) if n == 4 else msg(n)
            pipeline.multicast((b"%d" % n,) * 3, ("sink",), None, record)
        pipeline.start()
        assert pipeline.wait_committed(msg(7).id, timeout=5)
    finally:
        pipeline.stop()
    try:
        assert [e.variants[0] for e in writer.entries] == [b"%d" % n for n in range(1, 8)]
        assert texts(store) == [f"text {n}" for n in (1, 2, 3, 5, 6, 7)]
        assert (pipeline.failures, pipeline.unsaved) == (1, 1)
        assert pipeline.problem is None  # a bad record is not a storage problem
        skipped = [r for r in caplog.records if "skipped message" in r.getMessage()]
        assert len(skipped) == 1 and "msgid='id4'" in skipped[0].getMessage()
        assert "text 4" not in caplog.text  # the log never carries what was said
    finally:
        store.close()


def test_the_writer_skips_an_entry_it_cannot_deliver(server_factory, connect, db, caplog):
    fx, alice, bob = pair(server_factory, connect, db=str(db))
    writer = fx.server.writer
    writer.post(Multicast(("not an outbox",), (b"x\r\n",) * 3))
    writer.post(tuple.__new__(Multicast, ()))  # malformed
    still_chatting(alice, bob, "after the bad entries")
    assert writer.alive and writer.errors == 2
    assert len([r for r in caplog.records if "skipped an entry" in r.getMessage()]) == 2


def _fail_in(thread_name: str, method):
    """``method``, but raising when the thread named ``thread_name`` calls it."""

    def failing(*args, **kwargs):
        if threading.current_thread().name == thread_name:
            raise RuntimeError(f"injected failure in {thread_name}")
        return method(*args, **kwargs)

    return failing


@pytest.mark.parametrize(
    ("stage", "thread", "what"),
    [
        ("pipeline", "chatroom-store", "the history store thread"),
        ("writer", "chatroom-writer", "the writer thread"),
    ],
)
def test_a_stage_that_dies_stops_the_server_loudly(
    server_factory, connect, db, caplog, monkeypatch, stage, thread, what
):
    fx, alice, bob = pair(server_factory, connect, db=str(db))
    server = fx.server
    inbox = getattr(server, stage)
    # outside the per-batch guard: the loop itself fails
    monkeypatch.setattr(inbox, "_release_producers", _fail_in(thread, inbox._release_producers))
    alice.send("PRIVMSG #r :wake up")
    assert server.stopped.wait(15), "the server must stop itself"
    assert inbox.dead and server.fault is not None and what in server.fault
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any(what in m and "stopped" in m for m in critical), critical
    assert any("the server cannot deliver anything" in m for m in critical)
    assert bob.wait_closed(10)


def test_the_command_line_exits_non_zero_when_a_stage_dies(tmp_path):
    trigger = tmp_path / "fail-now"
    script = (
        "import os, sys, threading\n"
        "from chatroom.server.pipeline import HistoryPipeline\n"
        "trigger = sys.argv.pop(1)\n"
        "original = HistoryPipeline._release_producers\n"
        "def release(self):\n"
        "    if threading.current_thread().name == 'chatroom-store' and os.path.exists(trigger):\n"
        "        raise RuntimeError('injected failure of the store loop')\n"
        "    original(self)\n"
        "HistoryPipeline._release_producers = release\n" + SERVER_MAIN
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            str(trigger),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "h.sqlite3"),
            "--no-flood-limit",
            "--no-tls",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
        with client:
            client.sendall(b"NICK alice\r\nUSER a 0 * :a\r\n")
            welcome = b""
            while b" 001 " not in welcome:
                welcome += client.recv(4096)
            trigger.touch()
            client.sendall(b"PRIVMSG alice :wake up\r\n")
            assert proc.wait(20) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert "CRITICAL" in err and "the history store thread stopped" in err
    assert "injected failure of the store loop" in err  # with the traceback
    assert err.rstrip().splitlines()[-1].startswith("chatroom-server: the history store thread")


# --- 10. one server per database; a conflict is never silent -----------------------------------


def test_a_second_server_on_the_same_database_is_refused(server_factory, db):
    first = server_factory(db=str(db))
    assert Path(str(db) + LOCK_SUFFIX).exists()
    with pytest.raises(HistoryOpenError, match="in use by another chatroom-server") as refused:
        ChatServer(config(db))
    assert str(db) in str(refused.value) and f"process {os.getpid()}" in str(refused.value)
    first.stop()  # releases the lock: the next server starts
    again = ChatServer(config(db))
    again.start()
    again.stop()


def test_the_command_line_refuses_a_second_server(server_process, db):
    first = server_process("--db", str(db))
    second = run_cli("--db", str(db))
    assert second.returncode == 1
    assert f"history database {db} is in use by another chatroom-server" in second.stderr
    assert f"process {first.proc.pid}" in second.stderr
    assert "cannot listen" not in second.stderr


def test_memory_databases_need_no_lock(server_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server_factory(db=":memory:")
    server_factory(db=":memory:")
    assert list(tmp_path.iterdir()) == []


def test_a_msgid_conflict_is_logged_and_counted_not_ignored(db, caplog):
    store = HistoryStore(db)
    store.write([msg(1)])
    writer = RecordingWriter()
    pipeline = HistoryPipeline(store, writer)  # type: ignore[arg-type]
    clash = msg(3, msgid="id1")  # another message with a stored msgid
    for record in (msg(2), clash, msg(4)):
        pipeline.multicast((b"line",) * 3, ("sink",), None, record)
    pipeline.start()
    try:
        assert pipeline.wait_committed(msg(4).id, timeout=5)
    finally:
        pipeline.stop()
    try:
        assert texts(store) == ["text 1", "text 2", "text 4"]
        assert (pipeline.failures, pipeline.unsaved) == (1, 1)
        assert len(writer.entries) == 3
        assert "UNIQUE constraint failed: messages.msgid" in caplog.text
    finally:
        store.close()


# --- 11. a full disk ------------------------------------------------------------------------------


def _fill_up(store: HistoryStore) -> None:
    """A full disk, as SQLite sees one: the database may not grow (SQLITE_FULL)."""
    pages = store._write.execute("PRAGMA page_count").fetchone()[0]
    store._write.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_is_logged_once_told_to_everyone_and_recovers(
    server_factory, connect, db, caplog, monkeypatch
):
    monkeypatch.setattr(pipeline_mod, "RECOVERY_GRACE", 2.0)
    fx, alice, bob = pair(server_factory, connect, db=str(db), opers={"root": "pw"})
    alice.send("OPER root pw")
    alice.expect("381")
    server = fx.server
    pipeline, store = server.pipeline, server.store
    still_chatting(alice, bob, "before")
    _fill_up(store)
    # Lines of one length from here on: once one no longer fits, none of them does
    # (a shorter line might still fit in what is left of a page, as on a real disk).
    payload = "x" * 300
    told: list[str] = []
    for n in range(300):
        alice.send(f"PRIVMSG #r :while full {n:03d} {payload}")
        bob.expect("PRIVMSG")  # delivered, saved or not
        told = [t for t in notices(bob, quiet=0.05) if "not being saved" in t]
        if told:
            break
    assert told == ["*** Messages are not being saved to history: database or disk is full"]
    assert pipeline.problem == told[0].removeprefix("*** ")
    alice.expect("NOTICE", where=lambda m: m.params[1] == told[0])
    alice.expect(  # she is an operator: told where to look
        "NOTICE", where=lambda m: m.params[1] == f"*** History database {db}: see the server log"
    )
    for n in range(5):  # later batches fail too: nobody is told again
        still_chatting(alice, bob, f"still full {n:03d} {payload}")
    assert not [t for t in notices(bob) if "saved" in t]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "database or disk is full" in errors[0].getMessage()
    assert str(db) in errors[0].getMessage()
    assert "no transaction is active" not in caplog.text

    store._write.execute("PRAGMA max_page_count = 1073741823")  # space again
    alice.send("PRIVMSG #r :saved again")
    bob.expect("PRIVMSG", where=lambda m: m.params[1] == "saved again")
    back = bob.expect("NOTICE", where=lambda m: "again" in m.params[1], timeout=10).params[1]
    assert back.startswith("*** Messages are being saved to history again (")
    assert int(back.split("(")[1].split()[0]) == pipeline.unsaved >= 1
    assert pipeline.problem is None
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert pipeline.wait_committed(server.registry.last_message_id)
    stored = texts(store)
    assert stored[0] == "before" and stored[-1] == "saved again"


# --- 12. the database file deleted or replaced while the server runs ------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_database_is_reported(
    server_factory, connect, db, tmp_path, caplog, monkeypatch, how
):
    monkeypatch.setattr(pipeline_mod, "CHECKPOINT_INTERVAL", 0.1)
    fx, alice, bob = pair(server_factory, connect, db=str(db))
    if how == "deleted":
        db.unlink()
    else:
        other = tmp_path / "other.sqlite3"
        other.write_bytes(b"")
        os.replace(other, db)
    text = bob.expect("NOTICE", where=lambda m: "not being saved" in m.params[1]).params[1]
    expected = "was deleted" if how == "deleted" else "was replaced by another file"
    assert text == f"*** Messages are not being saved to history: its database file {expected}"
    assert fx.server.pipeline.problem == text.removeprefix("*** ")
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and str(db) in critical[0] and expected in critical[0]
    still_chatting(alice, bob, "into the void")  # writes still succeed: no false recovery
    time.sleep(0.3)
    assert fx.server.pipeline.problem is not None
    assert not [t for t in notices(bob) if "again" in t]


# --- 13. a damaged database ----------------------------------------------------------------------


@pytest.fixture
def damaged(db) -> Path:
    """A database of 5,000 messages, closed cleanly, then a third of its pages (in the
    middle of the file) overwritten with garbage, as a failing disk might."""
    store = HistoryStore(db)
    rows = [
        msg(n, "#r" if n % 2 else ("alice bob" if n % 4 == 0 else "#other"), text="x" * 100)
        for n in range(5000)
    ]
    store.write(rows[:2500], [room("#r", topic="kept")])
    store.write(rows[2500:])
    store.close()
    pages = db.stat().st_size // 4096
    with open(db, "r+b") as f:
        for page in range(pages // 3, 2 * pages // 3):
            f.seek(page * 4096)
            f.write(b"\xa5" * 4096)
    return db


def test_a_damaged_database_is_refused_with_advice(damaged):
    with pytest.raises(HistoryOpenError) as refused:
        HistoryStore(damaged)
    text = str(refused.value)
    assert f"history database {damaged} is damaged" in text
    assert "quick_check" in text and "Page " in text  # what SQLite found
    assert f"mv {damaged} {damaged}.damaged" in text
    assert ".recover" in text and "--no-history" in text
    with pytest.raises(HistoryOpenError, match="is damaged"):
        ChatServer(config(damaged))


def test_the_command_line_refuses_a_damaged_database(damaged):
    done = run_cli("--db", str(damaged))
    assert done.returncode == 1
    assert f"chatroom-server: history database {damaged} is damaged" in done.stderr
    assert "--no-history" in done.stderr and "cannot listen" not in done.stderr


def test_reads_of_a_damaged_database_raise_history_read_error_logged_once(damaged, caplog):
    store = HistoryStore(damaged, check=False)
    try:
        reads = {
            "window": lambda: store.window("#r", 0, 1 << 62, 10_000, newest=False),
            "export": lambda: list(store.export("#r")),
            # (targets reads only each conversation's newest row: the file's intact end)
            "dm_keys": lambda: store.dm_keys("alice"),
            "locate": lambda: store.locate("#r", "id2501"),
        }
        for read in reads.values():
            with pytest.raises(HistoryReadError, match="malformed"):
                read()
        assert store.read_errors == len(reads)
        # every read may fail; none with a bare sqlite3 error (this page is intact)
        assert store.room_state("#r").topic == "kept"
    finally:
        store.close()
    logged = [r for r in caplog.records if "cannot read" in r.getMessage()]
    assert len(logged) == 1 and str(damaged) in logged[0].getMessage()


def test_export_of_a_damaged_database_says_where_it_stopped(damaged, capsys):
    from chatroom.cli import server_main

    assert server_main(["export", "#r", "--db", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert "chatroom-server export: stopped after" in err and str(damaged) in err


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s.window("#r", 0, 1 << 62, 10, newest=True),
        lambda s: s.locate("#r", "id1"),
        lambda s: s.targets(["#r"], 0, 1 << 42, 10),
        lambda s: s.dm_keys("alice"),
        lambda s: s.room_state("#r"),
        lambda s: list(s.export("#r")),
    ],
    ids=["window", "locate", "targets", "dm_keys", "room_state", "export"],
)
def test_every_read_raises_history_read_error_on_any_sqlite_error(db, read):
    store = HistoryStore(db)
    store._read.close()  # any sqlite3.Error (here ProgrammingError: closed database)
    try:
        with pytest.raises(HistoryReadError, match=str(db)):
            read(store)
    finally:
        store.close()


# --- 14. an unwritable data directory -------------------------------------------------------------


def test_a_database_path_under_a_file_is_named_in_the_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a directory\n")
    path = blocker / "db.sqlite3"
    done = run_cli("--db", str(path))
    assert done.returncode == 1
    assert f"history database {path}: cannot create its directory {blocker}: Not a directory" in (
        done.stderr
    )
    assert "cannot listen" not in done.stderr


def _can_mount_read_only(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs '{where}'"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_a_read_only_file_system_is_named_in_the_error(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    if not _can_mount_read_only(readonly):
        pytest.skip("needs unshare and a private mount namespace for a read-only tmpfs")
    path = readonly / "history.sqlite3"
    port = str(free_port())
    cli = (
        f"'{sys.executable}' -c '{SERVER_MAIN}' --host 127.0.0.1 --port {port}"
        f" --db '{path}' --no-tls"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs '{readonly}' && exec {cli}"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 1, done.stderr
    assert f"history database {path}: cannot create its lock file" in done.stderr
    assert "Read-only file system" in done.stderr and "cannot listen" not in done.stderr


def test_the_port_is_still_named_when_it_is_the_port_that_fails(db):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                SERVER_MAIN,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                str(db),
                "--no-tls",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
