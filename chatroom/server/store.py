"""Durable history in SQLite (WAL): the schema, group-committed writes, reads for any thread.

Written only by the store thread (pipeline.py), which commits every batch before it
hands the batch to the writer, and adds what it committed to the full-text index later,
in bulk (:meth:`HistoryStore.index`). WAL with ``synchronous=NORMAL`` is durable against
a process crash; ``sync="full"`` survives power loss too, at one fsync per commit.

A server holds ``PATH.lock`` (beside the database, ``flock``) for its life, so a second
server refuses to start on the same file; a database found damaged at start
(``PRAGMA quick_check``) is refused; and a database file deleted or replaced while the
server runs is reported. Reads raise :class:`HistoryReadError`, never a bare sqlite3 error.
The record types live in records.py, which imports no sqlite3.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import operator
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from chatroom.server.records import (
    ID_TIME_SHIFT,
    MAX_SEARCH_WORDS,
    HistoryReadError,
    RoomState,
    SearchTarget,
    SearchTimeout,
    StoredMessage,
    first_id_at,
    search_words,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): no lock file
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MEMORY = ":memory:"
# The lock file a server holds beside its database (PATH + LOCK_SUFFIX), for its life.
LOCK_SUFFIX = ".lock"
# Problems PRAGMA quick_check reports at most, when a database is refused at start:
# enough to show what is wrong, short enough for one error message.
QUICK_CHECK_ERRORS = 3
# Rows per INSERT statement (9 parameters each; SQLite allows 32766 per statement).
ROWS_PER_INSERT = 500
# Most rows one full-text indexing transaction takes (HistoryStore.index): a backlog
# (rows left by a kill -9, or by a disk that was full) is indexed in parts of this size,
# 15 to 40 ms each (3 to 8 us a row), so the store thread never stalls delivery for long.
INDEX_ROWS_PER_TRANSACTION = 5000
# Seconds one search may run before SQLite is told to stop it (the soju spec asks for a
# bound). Searches take milliseconds (benchmarks/search_bench.py); this only stops a
# pathological one from holding the search connection.
SEARCH_TIMEOUT = 2.0
# SQLite virtual machine steps between two looks at that clock.
SEARCH_CLOCK_STEPS = 10_000

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
    # Accounts (accounts.py): SCRAM-SHA-256 credentials only, never a password; and
    # registered rooms with their founder, access list (account -> 'o' or 'v') and
    # mask lists (+b +e +I), which outlive restarts and the room emptying.
    """
    CREATE TABLE accounts (
        key        TEXT PRIMARY KEY,  -- casefolded name
        name       TEXT NOT NULL,
        salt       BLOB NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        created    REAL NOT NULL,
        dropped    REAL              -- when it was dropped: the name stays taken, so
                                     -- nobody reads the private history it left
    );
    CREATE TABLE registered_rooms (
        key        TEXT PRIMARY KEY,  -- casefolded room name
        name       TEXT NOT NULL,
        founder    TEXT NOT NULL,     -- account key
        registered REAL NOT NULL
    );
    CREATE TABLE room_access (
        room    TEXT NOT NULL,
        account TEXT NOT NULL,
        status  TEXT NOT NULL,        -- 'o' or 'v'
        PRIMARY KEY (room, account)
    );
    CREATE TABLE room_lists (
        room   TEXT NOT NULL,
        mode   TEXT NOT NULL,         -- b, e or I
        mask   TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at INTEGER NOT NULL,
        PRIMARY KEY (room, mode, mask)
    );
    """,
    # IRCv3 read-marker: where each account has read each conversation to (MARKREAD),
    # kept per account so that all its clients agree; only ever moves forward.
    """
    CREATE TABLE read_markers (
        account TEXT NOT NULL,        -- account key (casefolded)
        target  TEXT NOT NULL,        -- casefolded room name or nick
        time_ms INTEGER NOT NULL,     -- the last message read: its server time
        updated REAL NOT NULL,        -- when it last moved (the oldest go beyond the limit)
        PRIMARY KEY (account, target)
    ) WITHOUT ROWID;
    """,
    # Full-text search (SEARCH, soju.im/search): an FTS5 index of the PRIVMSG and NOTICE
    # lines, its content read from messages through the view (nothing stored twice).
    # Beside the text, `meta` holds tokens for where each line is and who said it:
    # c<hex of its conversation key>, p<hex of each side> of a private one, s<hex of the
    # sender's casefolded nick>. Hex makes any name one exact token, and a search asks
    # FTS5 for them with the words, so it only walks the lines of the conversations the
    # user may read (a common word in a small room: 1 ms, not 40, over a million lines).
    # The triggers keep the index in step with every insert, delete (REDACT, retention)
    # and update of the indexed columns; an FTS5 'delete' must be given the values once
    # indexed, which the view gives back while the row still has them.
    """
    CREATE VIEW messages_search(id, text, meta) AS
    SELECT id, text,
           'c' || hex(target)
           || CASE WHEN instr(target, ' ') > 0
                   THEN ' p' || hex(substr(target, 1, instr(target, ' ') - 1))
                        || ' p' || hex(substr(target, instr(target, ' ') + 1))
                   ELSE '' END
           || ' s' || hex(replace(replace(replace(replace(
                  lower(substr(sender, 1, instr(sender || '!', '!') - 1)),
                  '[', '{'), ']', '}'), char(92), '|'), '~', '^'))
    FROM messages WHERE command IN ('PRIVMSG', 'NOTICE');
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, meta, content = 'messages_search', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2', columnsize = 0
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, text, meta)
            SELECT id, text, meta FROM messages_search WHERE id = new.id;
    END;
    CREATE TRIGGER messages_fts_delete BEFORE DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, meta)
            SELECT 'delete', id, text, meta FROM messages_search WHERE id = old.id;
    END;
    CREATE TRIGGER messages_fts_unindex BEFORE UPDATE OF id, target, sender, command, text
    ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, meta)
            SELECT 'delete', id, text, meta FROM messages_search WHERE id = old.id;
    END;
    CREATE TRIGGER messages_fts_reindex AFTER UPDATE OF id, target, sender, command, text
    ON messages BEGIN
        INSERT INTO messages_fts(rowid, text, meta)
            SELECT id, text, meta FROM messages_search WHERE id = new.id;
    END;
    INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
    """,
    # Full-text indexing is deferred: the store thread indexes committed rows in large
    # batches (HistoryStore.index), not by an insert trigger run per row, which cost as
    # much as storing the row. fts_progress holds one row: every message with an id up
    # to it is indexed (it moves in the transaction that indexes), none above it is. The
    # delete and update triggers touch the index only up to it: an FTS5 'delete' of a
    # row that was never indexed would corrupt the index. All is indexed at this point.
    """
    CREATE TABLE fts_progress (id INTEGER NOT NULL);
    INSERT INTO fts_progress(id) SELECT COALESCE(MAX(id), 0) FROM messages;
    DROP TRIGGER messages_fts_insert;
    DROP TRIGGER messages_fts_delete;
    DROP TRIGGER messages_fts_unindex;
    DROP TRIGGER messages_fts_reindex;
    CREATE TRIGGER messages_fts_delete BEFORE DELETE ON messages
    WHEN old.id <= (SELECT id FROM fts_progress) BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, meta)
            SELECT 'delete', id, text, meta FROM messages_search WHERE id = old.id;
    END;
    CREATE TRIGGER messages_fts_unindex BEFORE UPDATE OF id, target, sender, command, text
    ON messages WHEN old.id <= (SELECT id FROM fts_progress) BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, meta)
            SELECT 'delete', id, text, meta FROM messages_search WHERE id = old.id;
    END;
    CREATE TRIGGER messages_fts_reindex AFTER UPDATE OF id, target, sender, command, text
    ON messages WHEN new.id <= (SELECT id FROM fts_progress) BEGIN
        INSERT INTO messages_fts(rowid, text, meta)
            SELECT id, text, meta FROM messages_search WHERE id = new.id;
    END;
    """,
]


class HistoryOpenError(RuntimeError):
    """The history database cannot be used at start (in use, damaged, newer, not
    writable). The message names the file and says what to do; the server refuses to
    start rather than run without the history its users expect."""


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
            # the search index's progress (see the last migration and index())
            self._indexed = self._write.execute("SELECT id FROM fts_progress").fetchone()[0]
            # Rows stored since the index last caught up, kept by write() and index().
            # What a kill -9 left counts as one: index() finds out (a COUNT would read
            # every page of the table, and fail on a damaged one that a reader opens).
            self.unindexed = int(self._last_id > self._indexed)
            self._read = _connect(self._uri)
            # searches have their own: a slow one never holds up CHATHISTORY or JOIN
            self._search = _connect(self._uri)
            if self.path == MEMORY:
                # Shared-cache connections lock whole tables: without this, a read that
                # meets the store thread's open transaction fails at once ("database
                # table is locked"; busy_timeout does not apply), and so does a commit
                # that meets a read in progress, which would be a storage failure. Rows
                # of an open transaction become visible microseconds early; a file
                # database (WAL) keeps its readers to committed rows.
                for conn in (self._read, self._search):
                    conn.execute("PRAGMA read_uncommitted = 1")
        except BaseException as e:
            # a refused database (in use, damaged, newer, not SQLite) leaks no fds
            if write is not None:
                write.close()
            self._unlock()
            if isinstance(e, sqlite3.Error):
                raise HistoryOpenError(f"history database {self.path}: {e}") from e
            raise
        self._read_lock = threading.Lock()
        self._search_lock = threading.Lock()
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
    def uri(self) -> str:
        """What another connection opens to reach this database (accounts.py)."""
        return self._uri

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

    def count(self) -> int:
        """How many messages are stored (store thread). It walks the smallest index, some
        tens of milliseconds for a million rows: the store thread does it once at start
        and keeps count from then on (HistoryPipeline.rows), never per /metrics scrape."""
        return self._write.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

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
        for conn in (self._search, self._read, self._write):
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._unlock()

    # --- writes (the store thread) -------------------------------------------------------

    def write(self, messages: Sequence[StoredMessage], rooms: Sequence[RoomState] = ()) -> None:
        """Commit messages and room states in one transaction, or none of them. A
        message whose id or msgid is already stored is an error, never skipped.

        The search index is not updated here (index() does it later, in bulk), except
        for a message older than what it already covers (none is, while ids are handed
        out in posting order): that one is indexed in this transaction."""
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
            if messages and min(map(_first, messages)) <= self._indexed:
                db.executemany(
                    "INSERT INTO messages_fts(rowid, text, meta)"
                    " SELECT id, text, meta FROM messages_search WHERE id = ?",
                    [(m.id,) for m in messages if m.id <= self._indexed],
                )
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
        self.unindexed += len(messages)

    @property
    def indexed(self) -> int:
        """Every stored message with an id up to this one is in the search index."""
        return self._indexed

    def index(self, limit: int | None = None) -> int:
        """Put every stored message the search index lacks into it (store thread), in
        transactions of at most INDEX_ROWS_PER_TRANSACTION rows that each move the
        progress row with them; ``limit``: the oldest so many at most (a step of the
        work under load). Returns how many rows were indexed.

        In bulk FTS5 costs 2.6 us (a short line, a small index) to 8 us (a chat line,
        an index of a million) a row, about half what an insert trigger costs in the
        store thread's batches of 10 to 40 rows.
        Until it runs, a search does not find those rows: HistoryPipeline.search has it
        run first."""
        db = self._write
        done = 0
        while self.unindexed and (limit is None or done < limit):
            step = (
                INDEX_ROWS_PER_TRANSACTION
                if limit is None
                else min(INDEX_ROWS_PER_TRANSACTION, limit - done)
            )
            # IMMEDIATE, and the progress read inside: even a second process indexing
            # at once (none should) could not index a row twice
            db.execute("BEGIN IMMEDIATE")
            try:
                (start,) = db.execute("SELECT id FROM fts_progress").fetchone()
                top, rows = db.execute(
                    "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM messages WHERE id > ?"
                    " ORDER BY id LIMIT ?)",
                    (start, step),
                ).fetchone()
                if top is not None:
                    db.execute(
                        "INSERT INTO messages_fts(rowid, text, meta) SELECT id, text, meta"
                        " FROM messages_search WHERE id > ? AND id <= ?",
                        (start, top),
                    )
                    db.execute("UPDATE fts_progress SET id = ?", (top,))
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            if top is None:
                self.unindexed = 0  # (it counted rows deleted since, too)
                break
            self._indexed = top
            done += rows
            if rows < step:
                self.unindexed = 0
            else:
                self.unindexed = max(self.unindexed - rows, 1)
        return done

    def delete(self, messages: Sequence[tuple[str, str]]) -> int:
        """Delete messages by (conversation key, msgid) in one transaction (REDACT);
        how many rows went (an unknown or already deleted one is no error)."""
        db = self._write
        db.execute("BEGIN")
        try:
            # rowcount, not total_changes: that counts the search index's trigger work too
            gone = db.executemany(
                "DELETE FROM messages WHERE target = ? AND msgid = ?", messages
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return gone

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete what is older than ``retention_days`` or beyond the newest
        ``retention_count`` of each conversation. Returns how many rows went."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        db = self._write
        gone = 0  # rowcount, not total_changes: that counts the search index's trigger work
        db.execute("BEGIN")
        try:
            if self.retention_days > 0:
                cutoff = now_ms - int(self.retention_days * 86_400_000)
                gone += db.execute(
                    "DELETE FROM messages WHERE id < ?", (cutoff << ID_TIME_SHIFT,)
                ).rowcount
            if self.retention_count > 0:
                for (target,) in db.execute(
                    "SELECT target FROM messages GROUP BY target HAVING COUNT(*) > ?",
                    (self.retention_count,),
                ).fetchall():
                    gone += db.execute(
                        "DELETE FROM messages WHERE target = ? AND id <= (SELECT id FROM"
                        " messages WHERE target = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                        (target, target, self.retention_count),
                    ).rowcount
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return gone

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

    def message(self, target: str, msgid: str) -> StoredMessage | None:
        """The stored message ``msgid`` of conversation ``target``, if it is kept."""
        rows = self._rows(
            f"SELECT {self._COLUMNS} FROM messages WHERE msgid = ? AND target = ?",
            (msgid, target),
        )
        return rows[0] if rows else None

    @staticmethod
    def first_id_at(target: str, time_ms: int) -> int:
        """The smallest id a message stamped at or after ``time_ms`` can have."""
        return first_id_at(time_ms)

    def window(
        self, target: str, lo: int, hi: int, limit: int, newest: bool, events: bool = False
    ) -> list[StoredMessage]:
        """Up to ``limit`` messages with ``lo < id < hi``: the newest of them when
        ``newest``, else the oldest; always returned oldest first. PRIVMSG and NOTICE
        only, unless ``events`` (draft/event-playback: TAGMSG and TOPIC rows too)."""
        if limit <= 0:
            return []
        kinds = "" if events else " AND command IN ('PRIVMSG', 'NOTICE')"
        rows = self._rows(
            f"SELECT {self._COLUMNS} FROM messages WHERE target = ? AND id > ? AND id < ?"
            f"{kinds} ORDER BY id {'DESC' if newest else 'ASC'} LIMIT ?",
            (target, lo, hi, limit),
        )
        if newest:
            rows.reverse()
        return rows

    def targets(
        self, keys: Sequence[str], start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, str, int]]:
        """(key, display, latest time) of conversations among ``keys`` whose latest
        message is strictly between two times (CHATHISTORY TARGETS: one with newer
        messages is not listed). As in BETWEEN (and Ergo), the ``limit`` nearest
        ``start_ms`` are chosen, and they come back oldest first."""
        if not keys:
            return []
        lo, hi = sorted((start_ms, end_ms))
        first, last = (lo + 1) << ID_TIME_SHIFT, hi << ID_TIME_SHIFT
        latest = []
        for key in keys:  # each the last entry of its index range: O(log n) apiece
            rows = self._fetch(
                "SELECT target, display, time_ms, id FROM messages WHERE target = ?"
                " ORDER BY id DESC LIMIT 1",
                (key,),
            )
            if rows and first <= rows[0][3] < last:
                latest.append(rows[0][:3])
        latest.sort(key=lambda row: row[2], reverse=start_ms > end_ms)
        chosen = latest[:limit]
        return chosen if start_ms <= end_ms else chosen[::-1]

    def dm_keys(self, prefix_key: str) -> list[str]:
        """Every direct-message conversation key involving casefolded nick ``prefix_key``."""
        rows = self._fetch(
            "SELECT DISTINCT target FROM messages WHERE target LIKE ? ESCAPE '\\'"
            " OR target LIKE ? ESCAPE '\\'",
            (_like_escape(prefix_key) + " %", "% " + _like_escape(prefix_key)),
        )
        return [r[0] for r in rows if prefix_key in r[0].split(" ")]

    def search(
        self,
        targets: Sequence[SearchTarget],
        text: str | None,
        before_ms: int | None,
        after_ms: int | None,
        sender: str | None,
        limit: int,
        newest: bool = True,
    ) -> list[StoredMessage]:
        """Full-text search (records.History.search): newest first. FTS5 finds the
        lines of ``targets`` (and ``sender``) with every word, walking its index from
        the newest (or oldest) end, so a search stops at ``limit``; each line found is
        checked against its conversation's floor, and against ``targets`` again."""
        match = _search_match(targets, text, sender)
        if match is None or limit <= 0:
            return []
        lo = first_id_at(after_ms) - 1 if after_ms is not None else 0
        hi = first_id_at(before_ms + 1) if before_ms is not None else 1 << 62
        # The floor of a line's conversation; a line of any other conversation gets one
        # no id passes (FTS5 finds only the asked ones: this says so a second time).
        floor, floors = "1 << 62", []
        sides = [t for t in targets if t.every_private]
        if sides:  # a private conversation of theirs: the identity is one side of its key
            floor = (
                "CASE"
                + " WHEN instr(' ' || m.target || ' ', ?) > 0 THEN ?" * len(sides)
                + f" ELSE {floor} END"
            )
            floors = [x for t in sides for x in (f" {t.key} ", t.floor)]
        places = [t for t in targets if not t.every_private]
        if places:
            floor = "CASE m.target" + " WHEN ? THEN ?" * len(places) + f" ELSE {floor} END"
            floors = [x for t in places for x in (t.key, t.floor)] + floors
        # CROSS JOIN: FTS5 drives (its rowid order is the result's), messages follows
        rows = self._search_rows(
            f"SELECT m.id, m.msgid, m.time_ms, m.target, m.display, m.sender, m.command,"
            f" m.text, m.tags FROM messages_fts f CROSS JOIN messages m ON m.id = f.rowid"
            f" WHERE messages_fts MATCH ? AND f.rowid > ? AND f.rowid < ? AND m.id > {floor}"
            f" ORDER BY f.rowid {'DESC' if newest else 'ASC'} LIMIT ?",
            [match, lo, hi, *floors, limit],
        )
        try:
            found = [
                StoredMessage(
                    r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]) if r[8] else {}
                )
                for r in rows
            ]
        except ValueError as e:  # a damaged tags column
            raise self._read_failed(e) from e
        return found if newest else found[::-1]

    def _search_rows(self, sql: str, args: Sequence[object]) -> list:
        """The rows of one search on the search connection, stopped after
        SEARCH_TIMEOUT (SearchTimeout); HistoryReadError on failure."""
        deadline = time.monotonic() + SEARCH_TIMEOUT
        with self._search_lock:
            db = self._search
            db.set_progress_handler(lambda: time.monotonic() > deadline, SEARCH_CLOCK_STEPS)
            try:
                return db.execute(sql, args).fetchall()
            except sqlite3.OperationalError as e:
                if time.monotonic() <= deadline:
                    raise self._read_failed(e) from e
                log.warning("history: a search ran past %s s and was stopped", SEARCH_TIMEOUT)
                raise SearchTimeout(f"the search took more than {SEARCH_TIMEOUT} s") from e
            except sqlite3.Error as e:
                raise self._read_failed(e) from e
            finally:
                db.set_progress_handler(None, 0)

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


_first = operator.itemgetter(0)  # a StoredMessage's id


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    return (
        "INSERT INTO messages"
        "(id, msgid, time_ms, target, display, sender, command, text, tags) VALUES "
        + ",".join(["(?,?,?,?,?,?,?,?,?)"] * rows)
    )


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search_match(
    targets: Sequence[SearchTarget], text: str | None, sender: str | None
) -> str | None:
    """The FTS5 query of a search (None: it can match nothing). Nothing the user wrote
    is read as query syntax: each word is a quoted phrase (quotes doubled), so AND, OR,
    NOT, NEAR, ``*``, ``^`` and ``column:`` are words like any other; places and the
    sender are tokens of the ``meta`` column (hex, as the view makes them).

    >>> print(_search_match([SearchTarget("#lan")], 'say OR a"b *', "bob"))
    meta : ("c236c616e") AND meta : "s626f62" AND text : "say" AND text : "OR" AND text : "a""b"
    """
    places = dict.fromkeys(
        ("p" if t.every_private else "c") + t.key.encode().hex() for t in targets
    )
    if not places:
        return None
    parts = ["meta : (" + " OR ".join(f'"{p}"' for p in places) + ")"]
    if sender is not None:
        parts.append(f'meta : "s{sender.encode().hex()}"')
    if text is not None:
        words = search_words(text)
        if len(words) > MAX_SEARCH_WORDS:
            raise ValueError(f"more than {MAX_SEARCH_WORDS} words")
        if not words:
            return None
        parts += ('text : "' + word.replace('"', '""') + '"' for word in words)
    return " AND ".join(parts)
