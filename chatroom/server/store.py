"""Durable history in SQLite (WAL), and the store thread that commits before delivery.

Every line for every client passes through :class:`HistoryPipeline` on its way to the
writer (outbox.py). The pipeline's thread takes whatever has been posted, writes the
room messages among it to SQLite in one transaction (group commit), and only then
hands the whole batch, in order, to the writer. So a message that anyone has seen
(its echo, or its delivery) is already committed: it survives ``kill -9`` of the
server. WAL with ``synchronous=NORMAL`` is durable against a process crash; pass
``sync="full"`` to survive power loss too, at one fsync per commit.

A database error (full disk, locked file) is logged; the batch is still delivered,
so the chat never stops because of its history.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from chatroom.server.outbox import _MULTICAST, Inbox, Writer

log = logging.getLogger(__name__)

MEMORY = ":memory:"
# Message ids carry their time: id = time_ms << ID_TIME_SHIFT (+1 per message in the same
# millisecond). A timestamp selector becomes an id bound, so no index on time is
# needed: each index costs every insert a B-tree update (measured: 3 indexes 16-19 us
# a row, 1 index 8-13 us, in batches of 50).
ID_TIME_SHIFT = 10
# Store-thread entry for a room's persistent state: (_ROOM_STATE, RoomState)
_ROOM_STATE = 10
# How often (seconds) the store thread applies the retention rules, and copies the
# write-ahead log into the database (which bounds the WAL to that much traffic).
RETENTION_INTERVAL = 60.0
CHECKPOINT_INTERVAL = 2.0
# Rows per INSERT statement (9 parameters each; SQLite allows 32766 per statement).
ROWS_PER_INSERT = 500

# Versioned schema: MIGRATIONS[i] takes the database from user_version i to i+1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE messages (
        id      INTEGER PRIMARY KEY,  -- time_ms << ID_TIME_SHIFT, made unique and increasing:
                                      -- posting order, and a timestamp is an id bound
        msgid   TEXT NOT NULL UNIQUE,
        time_ms INTEGER NOT NULL,     -- server time, ms since the epoch (UTC)
        target  TEXT NOT NULL,        -- conversation key: casefolded room, or 'a b' nick pair
        display TEXT NOT NULL,        -- the target as written (room name or recipient nick)
        sender  TEXT NOT NULL,        -- nick!user@host
        command TEXT NOT NULL,        -- PRIVMSG, NOTICE or TAGMSG
        text    TEXT NOT NULL,
        tags    TEXT NOT NULL DEFAULT ''  -- client-only tags (+foo), JSON object or ''
    );
    CREATE INDEX messages_target_id ON messages(target, id);
    CREATE TABLE rooms (
        key       TEXT PRIMARY KEY,   -- casefolded name
        name      TEXT NOT NULL,
        topic     TEXT NOT NULL DEFAULT '',
        topic_by  TEXT NOT NULL DEFAULT '',
        topic_at  REAL NOT NULL DEFAULT 0,
        modes     TEXT NOT NULL DEFAULT 'nt',
        room_key  TEXT,
        lim       INTEGER,
        created   REAL NOT NULL
    );
    """,
]


class StoredMessage(NamedTuple):
    """One history line, as stored and as served back by CHATHISTORY. (A NamedTuple:
    one is made for every chat line, under the registry lock.)"""

    id: int
    msgid: str
    time_ms: int
    target: str
    display: str
    sender: str
    command: str
    text: str
    tags: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RoomState:
    """What persists of a room across restarts: topic, modes, key, limit."""

    key: str
    name: str
    topic: str
    topic_by: str
    topic_at: float
    modes: str
    room_key: str | None
    limit: int | None
    created: float


# msgids: a random prefix per server run, then a counter. Unique across restarts
# (the prefix), cheap (no randomness per message), and tag-safe (no escaping needed).
_MSGID_PREFIX = secrets.token_urlsafe(9).replace("-", "A").replace("_", "B")
_msgid_counter = itertools.count(1)


def new_msgid() -> str:
    """A unique message id (IRCv3 message-ids), made of tag-safe characters."""
    # zero-padded, so that msgids sort in the order they are made: the msgid index
    # then grows at its end instead of touching random pages (about 1.5x cheaper)
    return f"{_MSGID_PREFIX}{next(_msgid_counter):012x}"


def _connect(path: str) -> sqlite3.Connection:
    uri = path.startswith("file:")
    conn = sqlite3.connect(path, uri=uri, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 2000")
    return conn


class HistoryStore:
    """The SQLite database: schema, writes (store thread only) and reads (any thread)."""

    def __init__(
        self,
        path: str | Path,
        *,
        retention_count: int = 100_000,
        retention_days: float = 365.0,
        sync: str = "normal",
    ) -> None:
        self.path = str(path)
        self.retention_count = retention_count
        self.retention_days = retention_days
        if self.path == MEMORY:
            # one private in-memory database shared by this store's two connections
            self._uri = f"file:chatroom-{secrets.token_hex(8)}?mode=memory&cache=shared"
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._uri = self.path
        self._write = _connect(self._uri)
        try:
            if self.path != MEMORY:
                self._write.execute("PRAGMA journal_mode = WAL")
                # The store thread checkpoints on its own schedule (checkpoint()), not
                # inside whichever commit crosses 1000 pages: about 30% off each commit.
                self._write.execute("PRAGMA wal_autocheckpoint = 0")
            self._write.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
            self._migrate()
        except BaseException:
            self._write.close()  # a refused database (newer schema, not SQLite) leaks no fds
            raise
        self._read = _connect(self._uri)
        self._read_lock = threading.Lock()
        self._last_id = self._write.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[
            0
        ]
        self._id_lock = threading.Lock()

    def _migrate(self) -> None:
        version = self._write.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.path}: database schema {version} is newer than this server"
                f" ({len(MIGRATIONS)})"
            )
        for target in range(version, len(MIGRATIONS)):
            self._write.executescript(
                "BEGIN;" + MIGRATIONS[target] + f"; PRAGMA user_version = {target + 1}; COMMIT;"
            )

    @property
    def schema_version(self) -> int:
        return self._write.execute("PRAGMA user_version").fetchone()[0]

    def next_id(self, time_ms: int) -> int:
        """The id of a message stamped ``time_ms``: increasing in the order they are
        handed out (call it where the message's place is fixed), and >= its time's bound."""
        with self._id_lock:
            self._last_id = max(self._last_id + 1, time_ms << ID_TIME_SHIFT)
            return self._last_id

    def checkpoint(self) -> None:
        """Copy the WAL into the database as far as readers allow (store thread)."""
        if self.path != MEMORY:
            self._write.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        if self.path != MEMORY:
            try:
                self._write.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
        for conn in (self._read, self._write):
            try:
                conn.close()
            except sqlite3.Error:
                pass

    # --- writes (the store thread) -------------------------------------------------------

    def write(self, messages: Sequence[StoredMessage], rooms: Sequence[RoomState] = ()) -> None:
        """Commit messages and room states in one transaction."""
        db = self._write
        db.execute("BEGIN")
        try:
            # Many rows per INSERT statement: the sqlite3 module lets go of the GIL
            # around every statement step, and each time it wants it back it may queue
            # behind busy reader threads; one step per ROWS_PER_INSERT rows, not per row.
            for start in range(0, len(messages), ROWS_PER_INSERT):
                chunk = messages[start : start + ROWS_PER_INSERT]
                params: list[object] = []
                for m in chunk:
                    params.extend(m[:8])
                    params.append(json.dumps(m.tags) if m.tags else "")
                db.execute(_insert_sql(len(chunk)), params)
            for r in rooms:
                db.execute(
                    "INSERT INTO rooms(key, name, topic, topic_by, topic_at, modes, room_key,"
                    " lim, created) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET"
                    " name=excluded.name, topic=excluded.topic, topic_by=excluded.topic_by,"
                    " topic_at=excluded.topic_at, modes=excluded.modes,"
                    " room_key=excluded.room_key, lim=excluded.lim",
                    (
                        r.key,
                        r.name,
                        r.topic,
                        r.topic_by,
                        r.topic_at,
                        r.modes,
                        r.room_key,
                        r.limit,
                        r.created,
                    ),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete what is older than ``retention_days`` or beyond the newest
        ``retention_count`` of each conversation. Returns how many rows went."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        db = self._write
        before = db.total_changes
        db.execute("BEGIN")
        try:
            if self.retention_days > 0:
                cutoff = now_ms - int(self.retention_days * 86_400_000)
                db.execute("DELETE FROM messages WHERE id < ?", (cutoff << ID_TIME_SHIFT,))
            if self.retention_count > 0:
                for (target,) in db.execute(
                    "SELECT target FROM messages GROUP BY target HAVING COUNT(*) > ?",
                    (self.retention_count,),
                ).fetchall():
                    db.execute(
                        "DELETE FROM messages WHERE target = ? AND id <= (SELECT id FROM"
                        " messages WHERE target = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                        (target, target, self.retention_count),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    # --- reads (any thread) ----------------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[object]) -> list[StoredMessage]:
        with self._read_lock:
            rows = self._read.execute(sql, args).fetchall()
        return [
            StoredMessage(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]) if r[8] else {}
            )
            for r in rows
        ]

    _COLUMNS = "id, msgid, time_ms, target, display, sender, command, text, tags"

    def locate(self, target: str, msgid: str) -> int | None:
        """The id of ``msgid`` within conversation ``target`` (None if unknown there)."""
        with self._read_lock:
            row = self._read.execute(
                "SELECT id FROM messages WHERE msgid = ? AND target = ?", (msgid, target)
            ).fetchone()
        return row[0] if row else None

    @staticmethod
    def first_id_at(target: str, time_ms: int) -> int:
        """The smallest id a message stamped at or after ``time_ms`` can have."""
        return time_ms << ID_TIME_SHIFT

    def window(
        self, target: str, lo: int, hi: int, limit: int, newest: bool
    ) -> list[StoredMessage]:
        """Up to ``limit`` messages with ``lo < id < hi``: the newest of them when
        ``newest``, else the oldest; always returned oldest first."""
        if limit <= 0:
            return []
        rows = self._rows(
            f"SELECT {self._COLUMNS} FROM messages WHERE target = ? AND id > ? AND id < ?"
            f" ORDER BY id {'DESC' if newest else 'ASC'} LIMIT ?",
            (target, lo, hi, limit),
        )
        if newest:
            rows.reverse()
        return rows

    def targets(
        self, keys: Sequence[str], start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, str, int]]:
        """(key, display, latest time) of conversations among ``keys`` with messages
        strictly between two times (CHATHISTORY TARGETS). As in BETWEEN (and Ergo), the
        ``limit`` nearest ``start_ms`` are chosen, and they come back oldest first."""
        if not keys:
            return []
        lo, hi = sorted((start_ms, end_ms))
        forward = start_ms <= end_ms
        marks = ",".join("?" * len(keys))
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT target, display, MAX(time_ms) AS t FROM messages WHERE target IN"
                f" ({marks}) AND id >= ? AND id < ? GROUP BY target"
                f" ORDER BY t {'ASC' if forward else 'DESC'} LIMIT ?",
                (*keys, (lo + 1) << ID_TIME_SHIFT, hi << ID_TIME_SHIFT, limit),
            ).fetchall()
        return rows if forward else rows[::-1]

    def dm_keys(self, prefix_key: str) -> list[str]:
        """Every direct-message conversation key involving casefolded nick ``prefix_key``."""
        with self._read_lock:
            rows = self._read.execute(
                "SELECT DISTINCT target FROM messages WHERE target LIKE ? ESCAPE '\\'"
                " OR target LIKE ? ESCAPE '\\'",
                (_like_escape(prefix_key) + " %", "% " + _like_escape(prefix_key)),
            ).fetchall()
        return [r[0] for r in rows if prefix_key in r[0].split(" ")]

    def room_state(self, key: str) -> RoomState | None:
        with self._read_lock:
            r = self._read.execute(
                "SELECT key, name, topic, topic_by, topic_at, modes, room_key, lim, created"
                " FROM rooms WHERE key = ?",
                (key,),
            ).fetchone()
        return RoomState(*r) if r else None

    def export(self, target: str) -> Iterator[StoredMessage]:
        """Every stored message of one conversation, oldest first, in pages."""
        last = 0
        while True:
            page = self.window(target, last, 1 << 62, 1000, newest=False)
            if not page:
                return
            yield from page
            last = page[-1].id


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    return (
        "INSERT OR IGNORE INTO messages"
        "(id, msgid, time_ms, target, display, sender, command, text, tags) VALUES "
        + ",".join(["(?,?,?,?,?,?,?,?,?)"] * rows)
    )


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def dm_key(a: str, b: str) -> str:
    """Conversation key of the direct messages between two casefolded nicks."""
    return " ".join(sorted((a, b)))


class HistoryPipeline(Inbox):
    """The store thread: group-commits history, then forwards everything to the writer.

    It has the writer's posting interface (post, post_many, multicast, throttle), and
    the server puts it in front of the writer, so order is kept end to end.
    """

    def __init__(self, store: HistoryStore, writer: Writer) -> None:
        super().__init__()
        self.store = store
        self.writer = writer
        self._wake_event = threading.Event()
        self._committed = 0  # highest message id known to be on disk
        self._committed_cv = threading.Condition()
        self.failures = 0  # transactions that failed (logged), for tests and operators
        self._thread = threading.Thread(target=self._run, name="chatroom-store", daemon=True)

    # --- the posting interface (any thread) ----------------------------------------------

    def _wake(self) -> None:
        self._sleeping = False
        self._wake_event.set()

    def variants_changed(self) -> None:
        self.writer.variants_changed()

    def save_room(self, state: RoomState) -> None:
        self.post((_ROOM_STATE, state))

    def throttle(self, timeout: float = 1.0) -> None:
        """Backpressure: wait while either this thread or the writer is far behind."""
        super().throttle(timeout)
        self.writer.throttle(timeout)

    @property
    def close_linger(self) -> float:
        return self.writer.close_linger

    def wait_committed(self, id_: int, timeout: float = 5.0) -> bool:
        """Block until message ``id_`` (and all before it) is on disk."""
        with self._committed_cv:
            return self._committed_cv.wait_for(
                lambda: self._committed >= id_ or self._stop, timeout
            )

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit and forward what is queued, then stop."""
        self._stop = True
        self._wake_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._release_producers()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the store thread -----------------------------------------------------------------------

    def _run(self) -> None:
        inbox = self._inbox
        next_retention = time.monotonic() + RETENTION_INTERVAL
        next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL
        while True:
            self._sleeping = True
            if not inbox:
                if self._stop:
                    break
                self._wake_event.wait(CHECKPOINT_INTERVAL)
            self._sleeping = False
            self._wake_event.clear()
            if inbox:
                self._commit_and_forward()
            self._release_producers()
            now = time.monotonic()
            if now >= next_checkpoint:
                next_checkpoint = now + CHECKPOINT_INTERVAL
                try:
                    self.store.checkpoint()
                except sqlite3.Error as e:
                    log.error("history checkpoint failed: %s", e)
            if now >= next_retention:
                next_retention = now + RETENTION_INTERVAL
                self._retention()

    def _commit_and_forward(self) -> None:
        inbox = self._inbox
        batch = [inbox.popleft() for _ in range(len(inbox))]
        messages = [e[4] for e in batch if e[0] == _MULTICAST and e[4] is not None]
        rooms = [e[1] for e in batch if e[0] == _ROOM_STATE]
        if messages or rooms:
            try:
                self.store.write(messages, rooms)
            except sqlite3.Error as e:
                self.failures += 1
                log.error("history not saved (%d messages): %s", len(messages), e)
            if messages:
                with self._committed_cv:
                    self._committed = max(self._committed, messages[-1].id)
                    self._committed_cv.notify_all()
        if rooms:
            batch = [e for e in batch if e[0] != _ROOM_STATE]
        self.writer.post_many(batch)

    def _retention(self) -> None:
        try:
            removed = self.store.apply_retention()
            if removed:
                log.info("history retention removed %d messages", removed)
        except sqlite3.Error as e:
            log.error("history retention failed: %s", e)
