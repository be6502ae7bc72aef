"""Durable history in SQLite (WAL), and the store thread that commits before delivery.

Every line for every client passes through :class:`HistoryPipeline` on its way to the
writer (outbox.py). The pipeline's thread takes whatever has been posted, writes the
room messages among it to SQLite in one transaction (group commit), and only then
hands the whole batch, in order, to the writer. So a message that anyone has seen
(its echo, or its delivery) is already committed: it survives ``kill -9`` of the
server. WAL with ``synchronous=NORMAL`` is durable against a process crash; pass
``sync="full"`` to survive power loss too, at one fsync per commit.

The chat never stops because of its history. A batch that cannot be stored is still
delivered: when the database or the disk fails (full, I/O error, locked) the cause is
logged once, :attr:`HistoryPipeline.problem` says messages are not being saved, and the
server tells everyone (``on_health``), again when saving works again; a record SQLite
refuses on its own (a bug upstream) is skipped and logged with its traceback, and the
rest of its batch is stored. An exception escaping the store thread's loop itself stops
the server loudly (``on_death``) rather than leaving it mute.

A server holds ``PATH.lock`` (beside the database, ``flock``) for its life, so a second
server refuses to start on the same file; a database found damaged at start
(``PRAGMA quick_check``) is refused; and a database file deleted or replaced while the
server runs is reported. Reads raise :class:`HistoryReadError`, never a bare sqlite3 error.
"""

from __future__ import annotations

import errno
import functools
import itertools
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from chatroom.server.outbox import _MULTICAST, Inbox, Writer

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): no lock file
    fcntl = None  # type: ignore[assignment]

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
# write-ahead log into the database (which bounds the WAL to that much traffic); at
# each checkpoint it also checks that the database file is still the one it opened.
RETENTION_INTERVAL = 60.0
CHECKPOINT_INTERVAL = 2.0
# Seconds saving must work, without a failure, before users are told it works again:
# a nearly full disk takes some writes and refuses others, and nobody should get a
# NOTICE for each turn. (Failing is announced at the first failure.)
RECOVERY_GRACE = 10.0
# The lock file a server holds beside its database (PATH + LOCK_SUFFIX), for its life.
LOCK_SUFFIX = ".lock"
# Problems PRAGMA quick_check reports at most, when a database is refused at start:
# enough to show what is wrong, short enough for one error message.
QUICK_CHECK_ERRORS = 3
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
    # A room that empties is gone (its modes and topic with it), and its earlier history
    # is not served to whoever makes a new room of that name: only ids > history_from.
    # created = 0 marks such a row: nothing but the cutoff is left of the room.
    """
    ALTER TABLE rooms ADD COLUMN history_from INTEGER NOT NULL DEFAULT 0;
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
    """What persists of a room across restarts: topic, modes, key, limit, and from which
    message id on its history belongs to it (``history_from``). ``created == 0``: the
    room emptied and is gone; only its history cutoff is kept."""

    key: str
    name: str
    topic: str
    topic_by: str
    topic_at: float
    modes: str
    room_key: str | None
    limit: int | None
    created: float
    history_from: int = 0


class HistoryOpenError(RuntimeError):
    """The history database cannot be used at start (in use, damaged, newer, not
    writable). The message names the file and says what to do; the server refuses to
    start rather than run without the history its users expect."""


class HistoryReadError(Exception):
    """Reading history failed (a damaged page, an I/O error). Raised by every read
    method of HistoryStore in place of any sqlite3 error; the cause is logged once."""


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


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction. SQLite may already have rolled
    it back itself (SQLITE_FULL, SQLITE_IOERR): a ROLLBACK then raises "no transaction
    is active", which must not hide the error that matters."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("history: rollback after a failed transaction failed", exc_info=True)


def _lock(path: str) -> int | None:
    """Take ``path``'s lock file for this process's life: only one server per database.
    Returns the descriptor (closing it releases the lock)."""
    if fcntl is None:  # pragma: no cover
        return None
    lock_path = path + LOCK_SUFFIX
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise HistoryOpenError(
            f"history database {path}: cannot create its lock file {lock_path}: {e.strerror or e}"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        try:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
        except OSError:
            holder = ""
        os.close(fd)
        if isinstance(e, BlockingIOError):
            who = f" (process {holder})" if holder.isdigit() else ""
            raise HistoryOpenError(
                f"history database {path} is in use by another chatroom-server{who}:"
                f" stop that one first, or give this one another --db"
            ) from e
        raise HistoryOpenError(
            f"history database {path}: cannot lock {lock_path}: {e.strerror or e}"
        ) from e
    try:  # who holds it, for the message a second server prints
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass
    return fd


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class HistoryStore:
    """The SQLite database: schema, writes (store thread only) and reads (any thread)."""

    def __init__(
        self,
        path: str | Path,
        *,
        retention_count: int = 100_000,
        retention_days: float = 365.0,
        sync: str = "normal",
        exclusive: bool = True,
        check: bool = True,
    ) -> None:
        """Open (or create) the database. ``exclusive``: hold its lock file, as a
        server does (a reader such as ``export`` passes False); ``check``: refuse a
        damaged file (``PRAGMA quick_check``). Raises :class:`HistoryOpenError`."""
        self.path = str(path)
        self.retention_count = retention_count
        self.retention_days = retention_days
        self.read_errors = 0  # reads that failed (HistoryReadError), for tests and operators
        self._last_read_error = ""
        self._lock_fd: int | None = None
        if self.path == MEMORY:
            # one private in-memory database shared by this store's two connections
            self._uri = f"file:chatroom-{secrets.token_hex(8)}?mode=memory&cache=shared"
        else:
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                reason = e.strerror or str(e)
                if isinstance(e, FileExistsError):  # what is in the way is a file
                    reason = f"{os.strerror(errno.ENOTDIR)} (a file has that name)"
                raise HistoryOpenError(
                    f"history database {self.path}: cannot create its directory {parent}: {reason}"
                ) from e
            if exclusive:
                self._lock_fd = _lock(self.path)
            self._uri = self.path
        write: sqlite3.Connection | None = None
        try:
            self._write = write = _connect(self._uri)
            if self.path != MEMORY:
                if check:
                    self._quick_check()
                self._write.execute("PRAGMA journal_mode = WAL")
                # The store thread checkpoints on its own schedule (checkpoint()), not
                # inside whichever commit crosses 1000 pages: about 30% off each commit.
                self._write.execute("PRAGMA wal_autocheckpoint = 0")
            self._write.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
            self._migrate()
            self._last_id = self._write.execute(
                "SELECT COALESCE(MAX(id), 0) FROM messages"
            ).fetchone()[0]
            self._read = _connect(self._uri)
        except BaseException as e:
            # a refused database (in use, damaged, newer, not SQLite) leaks no fds
            if write is not None:
                write.close()
            self._unlock()
            if isinstance(e, sqlite3.Error):
                raise HistoryOpenError(f"history database {self.path}: {e}") from e
            raise
        self._read_lock = threading.Lock()
        self._id_lock = threading.Lock()
        # which file was opened: the store thread notices it deleted or replaced
        self._file = _identity(self.path) if self.path != MEMORY else None

    def _quick_check(self) -> None:
        """Refuse a damaged database. Starting on one would serve errors for every room
        it touches; starting without history would silently drop what users expect
        kept. The operator decides (the message says how)."""
        rows = self._write.execute(f"PRAGMA quick_check({QUICK_CHECK_ERRORS})").fetchall()
        found = "; ".join(
            str(r[0]).replace("*** in database main ***", "").strip().replace("\n", ", ")
            for r in rows
        )
        if found != "ok":
            raise HistoryOpenError(
                f"history database {self.path} is damaged (PRAGMA quick_check: {found}).\n"
                f"  The server will not start on it. Either move it aside to start a new"
                f" history (mv {self.path} {self.path}.damaged, and its -wal file if any),\n"
                f"  or save what can be saved (sqlite3 {self.path} .recover | sqlite3"
                f" recovered.sqlite3) and start with --db recovered.sqlite3,\n"
                f"  or start without history (--no-history)."
            )

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _migrate(self) -> None:
        version = self._write.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise HistoryOpenError(
                f"history database {self.path}: its schema ({version}) is newer than this"
                f" server's ({len(MIGRATIONS)}); run a newer chatroom-server on it"
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

    @property
    def last_id(self) -> int:
        """The newest message id handed out (or stored, at start)."""
        return self._last_id

    def checkpoint(self) -> None:
        """Copy the WAL into the database as far as readers allow (store thread)."""
        if self.path != MEMORY:
            self._write.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def file_problem(self) -> str | None:
        """What happened to the database file since it was opened (deleted, replaced),
        or None while it is still there. Writes to a deleted file still succeed, into a
        file nobody can open again: everything is lost when the server stops."""
        if self._file is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "was deleted"
        except OSError as e:
            return f"cannot be found ({e.strerror or e})"
        if (st.st_dev, st.st_ino) != self._file:
            return "was replaced by another file"
        return None

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
        self._unlock()

    # --- writes (the store thread) -------------------------------------------------------

    def write(self, messages: Sequence[StoredMessage], rooms: Sequence[RoomState] = ()) -> None:
        """Commit messages and room states in one transaction, or none of them. A
        message whose id or msgid is already stored is an error, never skipped."""
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
                    " lim, created, history_from) VALUES (?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(key) DO UPDATE SET"
                    " name=excluded.name, topic=excluded.topic, topic_by=excluded.topic_by,"
                    " topic_at=excluded.topic_at, modes=excluded.modes,"
                    " room_key=excluded.room_key, lim=excluded.lim, created=excluded.created,"
                    " history_from=excluded.history_from",
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
                        r.history_from,
                    ),
                )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
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
            _rollback(db)
            raise
        return db.total_changes - before

    # --- reads (any thread) ----------------------------------------------------------------

    def _fetch(self, sql: str, args: Sequence[object]) -> list:
        """Every row of one query on the read connection; HistoryReadError on failure."""
        try:
            with self._read_lock:
                return self._read.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise self._read_failed(e) from e

    def _read_failed(self, e: Exception) -> HistoryReadError:
        """Log a read failure (once per distinct cause: a damaged page fails every read
        that touches it) and make the one exception readers get."""
        self.read_errors += 1
        if str(e) != self._last_read_error:
            self._last_read_error = str(e)
            log.error("history: cannot read %s: %s", self.path, e, exc_info=e)
        return HistoryReadError(f"history database {self.path}: {e}")

    def _rows(self, sql: str, args: Sequence[object]) -> list[StoredMessage]:
        rows = self._fetch(sql, args)
        try:
            return [
                StoredMessage(
                    r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]) if r[8] else {}
                )
                for r in rows
            ]
        except ValueError as e:  # a damaged tags column
            raise self._read_failed(e) from e

    _COLUMNS = "id, msgid, time_ms, target, display, sender, command, text, tags"

    def locate(self, target: str, msgid: str) -> int | None:
        """The id of ``msgid`` within conversation ``target`` (None if unknown there)."""
        rows = self._fetch(
            "SELECT id FROM messages WHERE msgid = ? AND target = ?", (msgid, target)
        )
        return rows[0][0] if rows else None

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
        rows = self._fetch(
            f"SELECT target, display, MAX(time_ms) AS t FROM messages WHERE target IN"
            f" ({marks}) AND id >= ? AND id < ? GROUP BY target"
            f" ORDER BY t {'ASC' if forward else 'DESC'} LIMIT ?",
            (*keys, (lo + 1) << ID_TIME_SHIFT, hi << ID_TIME_SHIFT, limit),
        )
        return rows if forward else rows[::-1]

    def dm_keys(self, prefix_key: str) -> list[str]:
        """Every direct-message conversation key involving casefolded nick ``prefix_key``."""
        rows = self._fetch(
            "SELECT DISTINCT target FROM messages WHERE target LIKE ? ESCAPE '\\'"
            " OR target LIKE ? ESCAPE '\\'",
            (_like_escape(prefix_key) + " %", "% " + _like_escape(prefix_key)),
        )
        return [r[0] for r in rows if prefix_key in r[0].split(" ")]

    def room_state(self, key: str) -> RoomState | None:
        rows = self._fetch(
            "SELECT key, name, topic, topic_by, topic_at, modes, room_key, lim, created,"
            " history_from FROM rooms WHERE key = ?",
            (key,),
        )
        return RoomState(*rows[0]) if rows else None

    def export(self, target: str) -> Iterator[StoredMessage]:
        """Every stored message of one conversation, oldest first, in pages (a failed
        read raises HistoryReadError, like every read)."""
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
        "INSERT INTO messages"
        "(id, msgid, time_ms, target, display, sender, command, text, tags) VALUES "
        + ",".join(["(?,?,?,?,?,?,?,?,?)"] * rows)
    )


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def dm_key(a: str, b: str) -> str:
    """Conversation key of the direct messages between two casefolded nicks."""
    return " ".join(sorted((a, b)))


def _storage_failure(e: BaseException) -> bool:
    """The database or the disk under it failed (full, I/O error, locked, read-only,
    damaged): every write fails alike until that is fixed. Anything else (an integrity
    error, a value SQLite cannot take) is about the records themselves."""
    return isinstance(e, (sqlite3.OperationalError, sqlite3.InternalError)) or (
        type(e) is sqlite3.DatabaseError
    )


def _describe(record: object) -> str:
    """A record for the log: which one, never what was said."""
    if isinstance(record, StoredMessage):
        return f"message id={record.id!r} msgid={record.msgid!r} in {record.target!r}"
    if isinstance(record, RoomState):
        return f"room state of {record.key!r}"
    return f"a {type(record).__name__} record"


def _halves(ms: list, rs: list) -> list[tuple[list, list]]:
    """Two smaller parts of a batch of messages ``ms`` and room states ``rs``."""
    if ms and rs:
        return [(ms, []), ([], rs)]
    if ms:
        return [(ms[: len(ms) // 2], []), (ms[len(ms) // 2 :], [])]
    return [([], rs[: len(rs) // 2]), ([], rs[len(rs) // 2 :])]


# on_health(problem, unsaved): problem is what users are told while messages are not
# being saved, None once they are again; unsaved is how many went unsaved meanwhile.
HealthCallback = Callable[[str | None, int], None]


class HistoryPipeline(Inbox):
    """The store thread: group-commits history, then forwards everything to the writer.

    It has the writer's posting interface (post, post_many, multicast, throttle), and
    the server puts it in front of the writer, so order is kept end to end. It never
    stops for a batch: see the module docstring for what it does when storing fails.
    """

    def __init__(
        self,
        store: HistoryStore,
        writer: Writer,
        *,
        on_health: HealthCallback | None = None,
        on_death: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(on_death)
        self.store = store
        self.writer = writer
        self.on_health = on_health  # called from the store thread; must not block on it
        self._wake_event = threading.Event()
        self._committed = store.last_id  # highest message id known to be on disk
        self._committed_cv = threading.Condition()
        # for tests and operators
        self.failures = 0  # batches that could not be stored (whatever the cause)
        self.unsaved = 0  # messages delivered but not stored
        # Why messages are not being saved, as users are told it; None while they are.
        self.problem: str | None = None
        self._write_error: str | None = None  # the failure of the database or disk under way
        self._outage_unsaved = 0  # messages not saved since it began
        self._saving_since: float | None = None  # during it: writes work again since then
        self._file_error: str | None = None  # the database file deleted or replaced
        self._failing: dict[str, str] = {}  # upkeep task -> the error already logged
        self._thread = threading.Thread(target=self._run, name="chatroom-store", daemon=True)

    # --- the posting interface (any thread) ----------------------------------------------

    def _wake(self) -> None:
        self._sleeping = False
        self._wake_event.set()

    def variants_changed(self) -> None:
        self.writer.variants_changed()

    def save_room(self, state: RoomState) -> None:
        self.post((_ROOM_STATE, state))

    def forget_room(self, key: str, name: str, history_from: int) -> None:
        """A room emptied: it is gone with its modes and topic, and history up to
        ``history_from`` stays with the room that was (served to no later room)."""
        self.save_room(RoomState(key, name, "", "", 0.0, "nt", None, None, 0.0, history_from))

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
        if self._inbox and not self._thread.is_alive():
            # posted after the thread's last pass (or it died): closes must still
            # reach the writer, or their sockets would never be closed
            if self.dead:
                self.forward_unstored()
            else:
                self._commit_and_forward()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def forward_unstored(self) -> None:
        """Once the store thread has died: pass what is queued on to the writer (lines,
        closes), except history lines, which are not on disk and so reach nobody."""
        inbox = self._inbox
        keep = []
        for _ in range(len(inbox)):
            entry = inbox.popleft()
            kind = entry[0] if isinstance(entry, tuple) and entry else None
            if kind == _ROOM_STATE:
                continue
            if kind == _MULTICAST and len(entry) > 4 and entry[4] is not None:
                self.unsaved += 1
                continue
            keep.append(entry)
        self.writer.post_many(keep)

    def _died(self, stage: str) -> None:
        super()._died(stage)
        with self._committed_cv:  # nothing will be committed any more: stop waiting
            self._committed_cv.notify_all()

    # --- the store thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            self._died("the history store thread")

    def _loop(self) -> None:
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
            if self._saving_since is not None and now - self._saving_since >= RECOVERY_GRACE:
                self._recovered()
            if now >= next_checkpoint:
                next_checkpoint = now + CHECKPOINT_INTERVAL
                self._upkeep("checkpoint", self.store.checkpoint)
                self._upkeep("file check", self._check_file)
            if now >= next_retention:
                next_retention = now + RETENTION_INTERVAL
                self._upkeep("retention", self._retention)

    def _commit_and_forward(self) -> None:
        """Store one batch, then forward it: whatever happens while storing, it is
        forwarded (a failure is logged and counted, never fatal)."""
        inbox = self._inbox
        batch = [inbox.popleft() for _ in range(len(inbox))]
        deliver = batch
        messages: list[StoredMessage] = []
        try:
            messages = [e[4] for e in batch if e[0] == _MULTICAST and e[4] is not None]
            rooms = [e[1] for e in batch if e[0] == _ROOM_STATE]
            if rooms:
                deliver = [e for e in batch if e[0] != _ROOM_STATE]
            if messages or rooms:
                self._save(messages, rooms)
            if messages:
                with self._committed_cv:
                    self._committed = max(self._committed, messages[-1].id)
                    self._committed_cv.notify_all()
        except Exception:
            # a bug where something was posted, not the database: deliver all the same
            self.failures += 1
            log.exception("history: a batch of %d entries could not be stored", len(batch))
            deliver = [e for e in batch if not (isinstance(e, tuple) and e[:1] == (_ROOM_STATE,))]
        self.writer.post_many(deliver)

    def _save(self, messages: list[StoredMessage], rooms: list[RoomState]) -> None:
        try:
            self.store.write(messages, rooms)
        except Exception as e:
            self.failures += 1
            if _storage_failure(e):
                self._not_saved(e, len(messages))
                return
            log.warning(
                "history: SQLite refused a batch of %d messages, %d room states (%s: %s);"
                " storing it in parts to skip only what it refuses",
                len(messages),
                len(rooms),
                type(e).__name__,
                e,
            )
            self._salvage(messages, rooms)
            return
        if self._write_error is not None and self._saving_since is None:
            self._saving_since = time.monotonic()

    def _salvage(self, messages: list[StoredMessage], rooms: list[RoomState]) -> None:
        """Store every record of a refused batch that SQLite takes: halve the batch until
        each failing record fails alone (a few writes per bad record), and skip those."""
        parts = _halves(messages, rooms)[::-1]  # a stack: the older half on top
        while parts:
            ms, rs = parts.pop()
            try:
                self.store.write(ms, rs)
                continue
            except Exception as e:
                if _storage_failure(e):
                    self._not_saved(e, len(ms) + sum(len(p[0]) for p in parts))
                    return
                error = e
            if len(ms) + len(rs) > 1:
                parts.extend(_halves(ms, rs)[::-1])
                continue
            self.unsaved += len(ms)
            log.error(
                "history: skipped %s: SQLite refuses it",
                _describe(ms[0] if ms else rs[0]),
                exc_info=error,
            )
        if self._write_error is not None and self._saving_since is None:
            self._saving_since = time.monotonic()

    # --- health: what users and operators are told -------------------------------------------

    def _not_saved(self, e: Exception, count: int) -> None:
        """The database or disk failed: say so once, not once per batch."""
        self.unsaved += count
        self._outage_unsaved += count
        self._saving_since = None
        if self._write_error is None:
            self._write_error = str(e)
            log.error(
                "history: cannot save to %s: %s. Messages are delivered but not saved"
                " until this is fixed (logged again when saving works)",
                self.store.path,
                e,
                exc_info=e,
            )
            self._health_changed()

    def _recovered(self) -> None:
        """Saving has worked for RECOVERY_GRACE seconds: the outage is over."""
        lost, self._outage_unsaved = self._outage_unsaved, 0
        self._saving_since = None
        log.warning(
            "history: saving to %s works again; %d messages were not saved while it failed (%s)",
            self.store.path,
            lost,
            self._write_error,
        )
        self._write_error = None
        self._health_changed(lost)

    def _check_file(self) -> None:
        if self._file_error is not None:
            return  # reported; it stays so until a restart
        change = self.store.file_problem()
        if change is None:
            return
        self._file_error = change
        log.critical(
            "history database %s %s while the server runs: what is stored from now on is"
            " lost when the server stops. Restart the server to begin a new database there.",
            self.store.path,
            change,
        )
        self._health_changed()

    def _health_changed(self, unsaved: int = 0) -> None:
        if self._file_error is not None:
            problem: str | None = (
                f"Messages are not being saved to history: its database file {self._file_error}"
            )
        elif self._write_error is not None:
            problem = f"Messages are not being saved to history: {self._write_error}"
        else:
            problem = None
        if problem == self.problem:
            return
        self.problem = problem
        if self.on_health is not None:
            try:
                self.on_health(problem, unsaved)
            except Exception:
                log.exception("history: telling users about its state failed")

    # --- upkeep ---------------------------------------------------------------------------------

    def _upkeep(self, task: str, run: Callable[[], object]) -> None:
        """Run a periodic task; its failure is logged when it starts and when it ends,
        not every CHECKPOINT_INTERVAL."""
        try:
            run()
        except Exception as e:
            if self._failing.get(task) != str(e):
                self._failing[task] = str(e)
                log.error("history %s failed: %s", task, e, exc_info=e)
            return
        if self._failing.pop(task, None) is not None:
            log.info("history %s works again", task)

    def _retention(self) -> None:
        removed = self.store.apply_retention()
        if removed:
            log.info("history retention removed %d messages", removed)
